//! Property tests: the chunk writer and reader round-trip any mix of blob sizes and chunk sizes,
//! and no mutation of a manifest makes the parser panic.

use std::fs;

use airlock::bundle::{self, OutDir, PackOptions, PlannedBlob, VerifyOptions};
use airlock::format::{Artifact, ArtifactKind, Digest, Entry, EntryType, Manifest};
use airlock::progress::Silent;
use airlock::sign::{PublicKey, SigningKey};
use proptest::prelude::*;

use crate::support::*;

fn blob_sizes() -> impl Strategy<Value = Vec<(usize, bool)>> {
    // (size, compressible): sizes around chunk boundaries and 512-byte blocks.
    prop::collection::vec(
        (
            prop_oneof![0usize..2048, 60_000usize..200_000],
            any::<bool>(),
        ),
        1..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn blobs_round_trip_through_chunks(sizes in blob_sizes(), chunk_kib in 64u64..160) {
        let env = Env::new();
        env.keygen("k");
        let key = SigningKey::load(&env.path("k")).unwrap();
        let mut blobs = Vec::new();
        let mut entries = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, (size, text)) in sizes.iter().enumerate() {
            let data = if *text { "tensor 0.5 1.5\n".repeat(size / 15 + 1).into_bytes()[..*size].to_vec() } else { pseudo_random(*size, i as u64) };
            let path = env.write(&format!("in/{i}"), &data);
            let digest = Digest::of(&data);
            if seen.insert(digest) {
                blobs.push(PlannedBlob::file(digest, data.len() as u64, path));
            }
            entries.push(Entry { path: format!("f{i}"), kind: EntryType::File, blob: Some(digest), size: Some(data.len() as u64), executable: false });
        }
        let artifact = Artifact { name: "a".into(), kind: ArtifactKind::Directory, source: "in".into(), identity: "in".into(), entries, image: None, hf: None };
        let out = OutDir::prepare(&env.path("b")).unwrap();
        let opts = PackOptions { channel: "p".into(), sequence: 1, created: std::time::SystemTime::now(), expires: None, chunk_size: chunk_kib * 1024 };
        let m = bundle::pack(out, vec![artifact], &blobs, &[key], &opts, &Silent).unwrap();
        for c in &m.chunks {
            prop_assert!(c.size <= chunk_kib * 1024);
        }
        let trust = PublicKey::load(env.path("k.pub").to_str().unwrap()).unwrap();
        let vb = bundle::verify(&env.path("b"), &[trust], &VerifyOptions { now: std::time::SystemTime::now() }, &Silent).unwrap();
        for b in &vb.manifest().blobs {
            let mut out = Vec::new();
            bundle::reader::copy_blob(&vb, b, &mut out, &Silent).unwrap();
            prop_assert_eq!(Digest::of(&out), b.digest);
        }
    }

    #[test]
    fn manifest_parser_never_panics_on_mutations(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let env = Env::new();
        let golden = fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden/v1/bundle/manifest.json")).unwrap();
        let mut m = golden.clone();
        let i = pos.index(m.len());
        m[i] = byte;
        let _ = Manifest::parse(&m);
        let _ = Manifest::parse(&golden[..cut.index(golden.len())]);
        drop(env);
    }
}

#[test]
fn a_file_that_changed_since_it_was_hashed_aborts_the_pack() {
    let env = Env::new();
    env.keygen("k");
    let key = SigningKey::load(&env.path("k")).unwrap();
    let path = env.write("in/x", pseudo_random(100_000, 1));
    let planned = Digest::of(b"what the file held when it was hashed");
    let blobs = vec![PlannedBlob::file(planned, 100_000, path)];
    let entries = vec![Entry {
        path: "x".into(),
        kind: EntryType::File,
        blob: Some(planned),
        size: Some(100_000),
        executable: false,
    }];
    let artifact = Artifact {
        name: "x".into(),
        kind: ArtifactKind::File,
        source: "in/x".into(),
        identity: "in/x".into(),
        entries,
        image: None,
        hf: None,
    };
    let out = OutDir::prepare(&env.path("b")).unwrap();
    let opts = PackOptions {
        channel: "p".into(),
        sequence: 1,
        created: std::time::SystemTime::now(),
        expires: None,
        chunk_size: 1 << 20,
    };
    let err = bundle::pack(out, vec![artifact], &blobs, &[key], &opts, &Silent).unwrap_err();
    assert!(
        err.to_string()
            .contains("changed while it was being packed"),
        "{err}"
    );
    assert!(
        !env.path("b").exists(),
        "the failed pack removed its output"
    );
}
