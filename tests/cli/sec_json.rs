//! Duplicate JSON keys are refused in every JSON document airlock reads, not only in bundle
//! manifests, state and audit records. serde's derived structs already refuse a repeated field,
//! but maps (annotations, Ollama params) and free-form values keep the last one, so a document
//! could mean one thing to airlock and another to a registry or runtime that keeps the first:
//! it is refused, naming the key.

use std::fs;

use airlock::format::Digest;

use crate::registry::build_layout;
use crate::support::*;

#[test]
fn an_image_manifest_with_a_duplicate_key_is_refused_at_pack() {
    let env = Env::new();
    env.keygen("k");
    let (lay, manifest, _blobs) = build_layout(env.dir.path());
    // The same manifest with a layer annotation named twice.
    let text = String::from_utf8(manifest).unwrap();
    let dup = text.replacen(
        "}]}",
        ",\"annotations\":{\"org.example.note\":\"a\",\"org.example.note\":\"b\"}}]}",
        1,
    );
    assert_ne!(dup, text);
    let d = Digest::of(dup.as_bytes());
    fs::write(lay.join("blobs/sha256").join(d.hex()), &dup).unwrap();
    fs::write(
        lay.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#,
            dup.len()
        ),
    )
    .unwrap();
    let src = format!("oci-layout://{}:t", lay.display());
    env.pack(&[&src], "k", "b", &[])
        .code(3)
        .stderr_has("duplicate")
        .stderr_has("org.example.note");
    assert!(!env.path("b").exists());

    // A layout index whose entry names its tag twice (`t`, then `u`) is refused too (exit 1: a
    // bad source file), not read as tag `u`.
    let (md, ms) = (Digest::of(text.as_bytes()), text.len());
    fs::write(lay.join("blobs/sha256").join(md.hex()), &text).unwrap();
    fs::write(
        lay.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms},"annotations":{{"org.opencontainers.image.ref.name":"t","org.opencontainers.image.ref.name":"u"}}}}]}}"#
        ),
    )
    .unwrap();
    env.pack(&[&src], "k", "b", &[])
        .code(1)
        .stderr_has("duplicate")
        .stderr_has("org.opencontainers.image.ref.name");
    assert!(!env.path("b").exists());
}
