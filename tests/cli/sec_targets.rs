//! Security hardening of the targets (issue 9, defects 7, 8, 10, 11 and 14), through the real
//! binary: the models directory gives each kind its own namespace, the generated Modelfile
//! never carries a directive airlock did not mean to write, an image graph beyond a limit is a
//! refusal, and every rejection of bundle content is exit 3 on every target and combination.
//!
//! The bundles are built with the library and correctly signed, as a trusted but hostile (or
//! careless) signer would make them; "poisoned" blobs have bytes changed inside their (re-signed)
//! chunk, so they pass `verify` (which checks chunk digests) and fail while streaming.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use airlock::bundle::{self, Origin, OutDir, PackOptions, PlannedBlob};
use airlock::format::{
    Artifact, ArtifactKind, Digest, Entry, HfFile, HfInfo, HfRepoType, ImageInfo, Manifest,
};
use airlock::oci::image::{CollectedImage, ImageBlob};
use airlock::oci::model::{descriptor_of, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use airlock::progress::Silent;
use airlock::sign::SigningKey;

use crate::registry::TestRegistry;
use crate::rejections::flip_byte;
use crate::support::*;

// ---------------------------------------------------------------------------------------------
// Building signed bundles

/// Packs `artifacts` whose blobs are `blobs` into `env/out`, signed by `env/k`.
fn pack_lib(env: &Env, out: &str, artifacts: Vec<Artifact>, blobs: Vec<(Digest, Vec<u8>)>) {
    let blobs: BTreeMap<Digest, Vec<u8>> = blobs.into_iter().collect();
    let planned: Vec<PlannedBlob> = blobs
        .into_iter()
        .map(|(digest, b)| PlannedBlob {
            digest,
            size: b.len() as u64,
            origin: Origin::Bytes(Arc::new(b)),
            compress: Some(false),
        })
        .collect();
    pack_planned(env, out, artifacts, &planned);
}

fn pack_planned(env: &Env, out: &str, artifacts: Vec<Artifact>, planned: &[PlannedBlob]) {
    if !env.path("k").exists() {
        env.keygen("k");
    }
    let opts = PackOptions {
        channel: "sec".into(),
        sequence: 1,
        created: std::time::SystemTime::now(),
        expires: None,
        chunk_size: 1 << 20,
        volumes: None,
    };
    let key = SigningKey::load(&env.path("k")).unwrap();
    let dir = OutDir::prepare(&env.path(out)).unwrap();
    bundle::pack(dir, artifacts, planned, &[key], &opts, &Silent).unwrap();
    env.run(&["verify", out, "--trust", "k.pub"]).ok();
}

/// An `hf-repo` artifact; every file is carried as an LFS file (etag = its SHA-256).
fn hf_artifact(
    name: &str,
    repo_type: HfRepoType,
    repo_id: &str,
    files: &[(&str, &[u8])],
) -> (Artifact, Vec<(Digest, Vec<u8>)>) {
    let mut entries = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    let mut blobs = Vec::new();
    let mut hf_files = Vec::new();
    for (path, data) in files {
        let mut p = Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_str().unwrap().to_string());
            p = d.parent();
        }
        let d = Digest::of(data);
        entries.push(Entry::file(path, d, data.len() as u64));
        blobs.push((d, data.to_vec()));
        hf_files.push(HfFile {
            path: path.to_string(),
            etag: d.hex(),
            pointer_oid: None,
            xet_hash: None,
        });
    }
    entries.extend(dirs.iter().map(|d| Entry::dir(d)));
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    hf_files.sort_by(|a, b| a.path.cmp(&b.path));
    let prefix = match repo_type {
        HfRepoType::Model => "",
        HfRepoType::Dataset => "datasets/",
    };
    let artifact = Artifact {
        name: name.into(),
        kind: ArtifactKind::HfRepo,
        source: format!("hf://{prefix}{repo_id}"),
        identity: format!(
            "https://huggingface.co/{prefix}{repo_id}@{}",
            "c".repeat(40)
        ),
        entries,
        image: None,
        hf: Some(HfInfo {
            endpoint: "https://huggingface.co".into(),
            repo_type,
            repo_id: repo_id.into(),
            revision: "main".into(),
            commit: "c".repeat(40),
            complete: true,
            files: hf_files,
        }),
    };
    (artifact, blobs)
}

const OLLAMA_LAYER: &str = "application/vnd.ollama.image.";

/// An `ollama-model` artifact `registry.ollama.ai/library/tiny:latest`: a config and `layers`
/// (kind after `application/vnd.ollama.image.`, bytes), in that order.
fn ollama_artifact(layers: &[(&str, Vec<u8>)]) -> (Artifact, Vec<(Digest, Vec<u8>)>) {
    let config = br#"{"model_format":"gguf","model_family":"llama"}"#.to_vec();
    let desc = |mt: &str, b: &[u8]| {
        format!(
            r#"{{"mediaType":"{mt}","digest":"{}","size":{}}}"#,
            Digest::of(b),
            b.len()
        )
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{},"layers":[{}]}}"#,
        desc("application/vnd.docker.container.image.v1+json", &config),
        layers
            .iter()
            .map(|(k, b)| desc(&format!("{OLLAMA_LAYER}{k}"), b))
            .collect::<Vec<_>>()
            .join(",")
    )
    .into_bytes();
    let mut blobs: Vec<(Digest, Vec<u8>)> = vec![
        (Digest::of(&manifest), manifest.clone()),
        (Digest::of(&config), config),
    ];
    blobs.extend(layers.iter().map(|(_, b)| (Digest::of(b), b.clone())));
    let mut entries = vec![Entry::dir("blobs"), Entry::dir("blobs/sha256")];
    let mut seen = std::collections::BTreeSet::new();
    for (d, b) in &blobs {
        if seen.insert(*d) {
            entries.push(Entry::file(
                &format!("blobs/sha256/{}", d.hex()),
                *d,
                b.len() as u64,
            ));
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let reference = "registry.ollama.ai/library/tiny:latest".to_string();
    let artifact = Artifact {
        name: "tiny".into(),
        kind: ArtifactKind::OllamaModel,
        source: "ollama://tiny".into(),
        identity: format!("{reference}@{}", Digest::of(&manifest)),
        entries,
        image: Some(ImageInfo {
            reference,
            digest: Digest::of(&manifest),
            media_type: DOCKER_MANIFEST.into(),
            size: manifest.len() as u64,
            platforms: vec![],
        }),
        hf: None,
    };
    (artifact, blobs)
}

fn gguf() -> Vec<u8> {
    let mut g = b"GGUF".to_vec();
    g.extend_from_slice(&pseudo_random(5000, 9));
    g
}

/// A directory artifact `name` holding one file.
fn dir_artifact(name: &str, file: &str, data: &[u8]) -> (Artifact, Vec<(Digest, Vec<u8>)>) {
    let d = Digest::of(data);
    let artifact = Artifact {
        name: name.into(),
        kind: ArtifactKind::Directory,
        source: format!("/src/{name}"),
        identity: format!("/src/{name}"),
        entries: vec![Entry::file(file, d, data.len() as u64)],
        image: None,
        hf: None,
    };
    (artifact, vec![(d, data.to_vec())])
}

/// An image artifact whose top is `top` (bytes, media type) and whose bundle holds `blobs`
/// (bytes, media type), exactly those: a hostile signer's graph.
fn image_bundle(
    env: &Env,
    out: &str,
    reference: &str,
    top: (&[u8], &str),
    blobs: &[(&[u8], &str)],
) {
    let top_desc = descriptor_of(top.0, top.1);
    let mut all: Vec<ImageBlob> = blobs
        .iter()
        .map(|(b, mt)| ImageBlob {
            digest: Digest::of(b),
            size: b.len() as u64,
            media_type: mt.to_string(),
            origin: Origin::Bytes(Arc::new(b.to_vec())),
        })
        .collect();
    all.push(ImageBlob {
        digest: top_desc.digest,
        size: top_desc.size,
        media_type: top.1.into(),
        origin: Origin::Bytes(Arc::new(top.0.to_vec())),
    });
    let img = CollectedImage {
        reference: reference.into(),
        top: top_desc,
        blobs: all,
        platforms: vec![],
    };
    let (artifact, planned) = airlock::sources::image::to_artifact(img, "test", None);
    pack_planned(env, out, vec![artifact], &planned);
}

fn desc_json(b: &[u8], mt: &str) -> String {
    format!(
        r#"{{"mediaType":"{mt}","digest":"{}","size":{}}}"#,
        Digest::of(b),
        b.len()
    )
}

/// A small image: (config, layer, manifest).
fn small_image(seed: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let layer = pseudo_random(20_000, seed);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
        desc_json(&config, "application/vnd.oci.image.config.v1+json"),
        desc_json(&layer, "application/vnd.oci.image.layer.v1.tar")
    )
    .into_bytes();
    (config, layer, manifest)
}

fn index_of(children: &[(&[u8], &str)]) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        children
            .iter()
            .map(|(b, mt)| desc_json(b, mt))
            .collect::<Vec<_>>()
            .join(",")
    )
    .into_bytes()
}

/// Changes one byte inside blob `digest`'s first segment in bundle `dir` and re-signs the
/// manifest over the new chunk digests: the bundle verifies, the blob fails while streaming.
fn poison(env: &Env, dir: &str, digest: Digest) {
    let mpath = env.path(&format!("{dir}/manifest.json"));
    let mut m = Manifest::decode_unvalidated(&fs::read(&mpath).unwrap()).unwrap();
    let b = m.blobs.iter().find(|b| b.digest == digest).expect("blob");
    let seg = b.segments[0].clone();
    let chunk = env.path(&format!(
        "{dir}/chunks/{}",
        m.chunks[seg.chunk as usize].name
    ));
    flip_byte(&chunk, seg.offset + seg.length / 2);
    for c in &mut m.chunks {
        let data = fs::read(env.path(&format!("{dir}/chunks/{}", c.name))).unwrap();
        c.size = data.len() as u64;
        c.sha256 = Digest::of(&data);
        if m.piece_size > 0 {
            c.pieces = airlock::format::pieces::digests(&data, m.piece_size);
        }
    }
    let bytes = m.to_bytes();
    fs::write(&mpath, &bytes).unwrap();
    fs::write(env.path(&format!("{dir}/SHA256SUMS")), m.sha256sums()).unwrap();
    let key = SigningKey::load(&env.path("k")).unwrap();
    let sig = airlock::bundle::sign_manifest(&m, &bytes, &key).unwrap();
    fs::write(env.path(&format!("{dir}/manifest.json.minisig")), sig).unwrap();
    env.run(&["verify", dir, "--trust", "k.pub"]).ok();
}

fn import(env: &Env, dir: &str, targets: &[&str]) -> Run {
    let mut args = vec!["import", dir, "--trust", "k.pub"];
    args.extend_from_slice(targets);
    env.run(&args)
}

/// The bundle's channel was not recorded as accepted.
fn not_accepted(env: &Env) {
    let state = env.path(".airlock-state/state.json");
    if let Ok(s) = fs::read_to_string(&state) {
        assert!(
            !s.contains("\"sec\""),
            "the refused bundle was recorded: {s}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Defect 7: models-dir namespaces

#[test]
fn models_dir_gives_each_kind_its_own_namespace() {
    let env = Env::new();
    // An HF model named like the Ollama part of the models dir, carrying a Modelfile that
    // reads a host path, and an HF model named like the dataset part.
    let (fake_ollama, b1) = hf_artifact(
        "fake-ollama",
        HfRepoType::Model,
        "ollama/registry.ollama.ai",
        &[
            ("library/llama3/latest/Modelfile", b"FROM /etc/passwd\n"),
            ("library/llama3/latest/model.gguf", b"GGUF-not-really"),
        ],
    );
    let (fake_dataset, b2) = hf_artifact(
        "fake-dataset",
        HfRepoType::Model,
        "datasets/foo",
        &[("bar/README.md", b"# posing as dataset foo/bar\n")],
    );
    let (dataset, b3) = hf_artifact(
        "real-dataset",
        HfRepoType::Dataset,
        "foo/bar",
        &[("data.csv", b"a,b\n1,2\n")],
    );
    pack_lib(
        &env,
        "b",
        vec![fake_ollama, fake_dataset, dataset],
        [b1, b2, b3].concat(),
    );
    import(&env, "b", &["--models-dir", "md"]).ok();
    let md = env.path("md");
    // Each kind below its own top-level directory; nothing reaches another kind's.
    assert!(
        !md.join("ollama").exists(),
        "an HF model wrote into the Ollama part: {:?}",
        contents(&md).keys().collect::<Vec<_>>()
    );
    assert!(md
        .join("hf/ollama/registry.ollama.ai/library/llama3/latest/Modelfile")
        .is_file());
    assert!(md.join("hf/datasets/foo/bar/README.md").is_file());
    assert_eq!(
        fs::read(md.join("hf-datasets/foo/bar/data.csv")).unwrap(),
        b"a,b\n1,2\n"
    );
    assert!(!md.join("hf-datasets/foo/bar/README.md").exists());
    let top: Vec<String> = fs::read_dir(&md)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(top, vec!["hf", "hf-datasets"]);

    // Within a kind, one model's directory may not lie inside another's: refused, nothing written.
    let env = Env::new();
    let (outer, b1) = hf_artifact("outer", HfRepoType::Model, "gpt2", &[("README.md", b"x")]);
    let (inner, b2) = hf_artifact(
        "inner",
        HfRepoType::Model,
        "gpt2/evil",
        &[("config.json", b"{}")],
    );
    pack_lib(&env, "b", vec![outer, inner], [b1, b2].concat());
    import(&env, "b", &["--models-dir", "md"])
        .code(3)
        .stderr_has("inner")
        .stderr_has("outer");
    assert!(!env.path("md").exists());
    not_accepted(&env);
}

// ---------------------------------------------------------------------------------------------
// Defect 10: Modelfile injection

/// One directive of a Modelfile as ollama's parser (`parser/parser.go`, `ParseFile`) reads it:
/// the command (`model` for FROM, the key for PARAMETER) and its value (`role: content` for
/// MESSAGE).
#[derive(Debug, Clone, PartialEq)]
struct Directive {
    name: String,
    args: String,
}

fn d(name: &str, args: &str) -> Directive {
    Directive {
        name: name.into(),
        args: args.into(),
    }
}

/// ollama's `unquote`: `"""…"""` or `"…"` (no escapes), or the text as it is; `None` for an
/// opened quote that is not closed.
fn unquote(s: &str) -> Option<String> {
    if let Some(rest) = s.strip_prefix("\"\"\"") {
        return (s.len() >= 6 && s.ends_with("\"\"\"")).then(|| rest[..rest.len() - 3].to_string());
    }
    if let Some(rest) = s.strip_prefix('"') {
        return (s.len() >= 2 && s.ends_with('"')).then(|| rest[..rest.len() - 1].to_string());
    }
    Some(s.to_string())
}

/// Go's `strconv.IsPrint`, for the characters these tests use: controls, format characters and
/// spaces other than U+0020 are not printable.
fn is_print(c: char) -> bool {
    c == ' ' || !(c.is_control() || c.is_whitespace() || airlock::format::text::is_format_char(c))
}

/// A parser that follows ollama's Modelfile grammar (a state machine over runes: a command name
/// of letters, then a value that ends at the first CR or LF once the text before it, trimmed,
/// unquotes; `#` comments; PARAMETER keys of letters, digits and `_`; MESSAGE roles of letters,
/// one of system, user, assistant).
fn parse_modelfile(text: &str) -> Result<Vec<Directive>, String> {
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum S {
        Nil,
        Name,
        Value,
        Param,
        Msg,
        Comment,
    }
    let space = |c: char| c == ' ' || c == '\t';
    let newline = |c: char| c == '\r' || c == '\n';
    let mut out = Vec::new();
    let mut cur = S::Nil;
    let mut buf = String::new();
    let mut role = String::new();
    let mut name = String::new();
    for r in text.chars() {
        // The next state and the rune carried into it (None: nothing to write).
        let (next, carried) = match cur {
            S::Nil if r == '#' => (S::Comment, None),
            S::Nil if space(r) || newline(r) => (S::Nil, None),
            S::Nil => (S::Name, Some(r)),
            S::Name if r.is_ascii_alphabetic() => (S::Name, Some(r)),
            S::Name if space(r) => (S::Value, None),
            S::Name => return Err(format!("invalid command at {r:?} after {buf:?}")),
            S::Value if newline(r) || space(r) => (S::Nil, Some(r)),
            S::Value => (S::Value, Some(r)),
            S::Param if r.is_ascii_alphanumeric() || r == '_' => (S::Param, Some(r)),
            S::Param if space(r) => (S::Value, None),
            S::Param => return Err(format!("bad parameter name at {r:?}")),
            S::Msg if r.is_ascii_alphabetic() => (S::Msg, Some(r)),
            S::Msg if space(r) => (S::Value, None),
            S::Msg => return Err(format!("bad message role at {r:?}")),
            S::Comment if newline(r) => (S::Nil, None),
            S::Comment => (S::Comment, None),
        };
        let mut next = next;
        if next != cur {
            match cur {
                S::Name => {
                    let cmd = buf.to_lowercase();
                    if ![
                        "from",
                        "license",
                        "template",
                        "system",
                        "adapter",
                        "draft",
                        "renderer",
                        "parser",
                        "parameter",
                        "message",
                        "requires",
                    ]
                    .contains(&cmd.as_str())
                    {
                        return Err(format!("invalid command {buf:?}"));
                    }
                    match cmd.as_str() {
                        "from" => name = "model".into(),
                        "parameter" => next = S::Param,
                        "message" => {
                            next = S::Msg;
                            name = cmd;
                        }
                        _ => name = cmd,
                    }
                }
                S::Param => name = buf.clone(),
                S::Msg => {
                    if !["system", "user", "assistant"].contains(&buf.as_str()) {
                        return Err(format!("invalid message role {buf:?}"));
                    }
                    role = buf.clone();
                }
                S::Value => {
                    let r = carried.expect("a value ends on a rune");
                    match unquote(buf.trim()) {
                        Some(s) if !space(r) => {
                            let args = if role.is_empty() {
                                s
                            } else {
                                format!("{}: {s}", std::mem::take(&mut role))
                            };
                            out.push(Directive {
                                name: name.clone(),
                                args,
                            });
                        }
                        _ => {
                            buf.push(r);
                            continue;
                        }
                    }
                }
                S::Nil | S::Comment => {}
            }
            buf.clear();
            cur = next;
        }
        if let Some(c) = carried.filter(|&c| is_print(c)) {
            buf.push(c);
        }
    }
    match cur {
        S::Nil | S::Comment => {}
        S::Value => {
            let s = unquote(buf.trim()).ok_or("unexpected EOF in a quoted value")?;
            let args = if role.is_empty() {
                s
            } else {
                format!("{role}: {s}")
            };
            out.push(Directive { name, args });
        }
        _ => return Err("unexpected EOF".into()),
    }
    if !out.iter().any(|d| d.name == "model") {
        return Err("no FROM line".into());
    }
    Ok(out)
}

#[test]
fn the_test_parser_reads_modelfiles_as_ollama_does() {
    // The cases of ollama's own parser tests that matter here.
    assert_eq!(
        parse_modelfile("FROM foo\nTEMPLATE \"\"\"a\n\"b\"\n\"\"\"\nPARAMETER stop <x>\n").unwrap(),
        vec![
            d("model", "foo"),
            d("template", "a\n\"b\"\n"),
            d("stop", "<x>")
        ]
    );
    // The injections of the issue, as ollama would read them.
    assert_eq!(
        parse_modelfile("FROM ./m\nTEMPLATE \"\"\"x\"\"\"\nFROM /etc/passwd\n").unwrap(),
        vec![
            d("model", "./m"),
            d("template", "x"),
            d("model", "/etc/passwd")
        ]
    );
    assert!(parse_modelfile("FROM ./m\nSYSTEM \"open\nPARAMETER stop x\n").is_err());
    assert_eq!(
        parse_modelfile("FROM ./m\nTEMPLATE x\rFROM /etc/passwd\n").unwrap(),
        vec![
            d("model", "./m"),
            d("template", "x"),
            d("model", "/etc/passwd")
        ]
    );
    assert_eq!(
        parse_modelfile("FROM ./m\nMESSAGE user \" a \"\n# c\n").unwrap(),
        vec![d("model", "./m"), d("message", "user:  a ")]
    );
}

/// Imports an Ollama model with these layers (besides a GGUF model layer) into a models dir.
fn modelfile_case(layers: &[(&str, Vec<u8>)]) -> (Env, Run) {
    let env = Env::new();
    let mut all = vec![("model", gguf())];
    all.extend(layers.iter().cloned());
    let (a, blobs) = ollama_artifact(&all);
    pack_lib(&env, "b", vec![a], blobs);
    let r = import(&env, "b", &["--models-dir", "md"]);
    (env, r)
}

const MODELFILE: &str = "md/ollama/registry.ollama.ai/library/tiny/latest/Modelfile";

#[test]
fn no_bundle_value_adds_a_directive_to_the_generated_modelfile() {
    // Values the grammar can carry, however hostile: written so that ollama's parser reads
    // exactly the directives airlock means, with exactly these values.
    let template = "{{ .Prompt }}\rFROM /root/.ssh/id_rsa\rADAPTER /etc/shadow";
    let system = "\"quoted\" start";
    let stop1 = "\"\nFROM /etc/passwd";
    let license = "Apache-2.0\nsee \"LICENSE\"";
    let messages = serde_json::json!([
        {"role": "user", "content": "hi\rFROM /etc/passwd"},
        {"role": "assistant", "content": " hello "},
    ]);
    let params = serde_json::json!({"stop": [stop1, "<|end|>"], "temperature": 0.5});
    let (env, r) = modelfile_case(&[
        ("template", template.as_bytes().to_vec()),
        ("system", system.as_bytes().to_vec()),
        ("params", params.to_string().into_bytes()),
        ("license", license.as_bytes().to_vec()),
        ("messages", messages.to_string().into_bytes()),
    ]);
    r.ok();
    let text = String::from_utf8(env.read(MODELFILE)).unwrap();
    assert_eq!(
        parse_modelfile(&text).unwrap_or_else(|e| panic!("{e}:\n{text}")),
        vec![
            d("model", "./model.gguf"),
            d("template", template),
            d("system", system),
            d("stop", stop1),
            d("stop", "<|end|>"),
            d("temperature", "0.5"),
            d("license", license),
            d("message", "user: hi\rFROM /etc/passwd"),
            d("message", "assistant:  hello "),
        ],
        "the Modelfile:\n{text}"
    );

    // Values it cannot carry, keys and roles ollama does not accept: the import is refused
    // (exit 3, naming the layer), and nothing is written.
    type Case<'a> = (Vec<(&'a str, Vec<u8>)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![(
                "template",
                b"{{ .Prompt }}\"\"\"\nFROM /etc/passwd\nADAPTER /etc/shadow\n\"\"\"".to_vec(),
            )],
            "template layer",
        ),
        (
            vec![("system", b"be nice\x1b[2K\"\"\"\n".to_vec())],
            "system layer",
        ),
        (
            vec![(
                "params",
                br#"{"stop\nFROM /etc/passwd\nPARAMETER stop": "x"}"#.to_vec(),
            )],
            "params layer",
        ),
        (
            vec![("params", br#"{"num_ctx /etc/passwd": 1}"#.to_vec())],
            "params layer",
        ),
        (
            vec![(
                "messages",
                br#"[{"role": "user x\nFROM /etc/passwd\nMESSAGE user", "content": "hi"}]"#
                    .to_vec(),
            )],
            "messages layer",
        ),
        (
            vec![(
                "messages",
                br#"[{"role": "tool", "content": "hi"}]"#.to_vec(),
            )],
            "messages layer",
        ),
    ];
    for (layers, named) in cases {
        let (env, r) = modelfile_case(&layers);
        r.code(3).stderr_has(named).stderr_has("Modelfile");
        assert!(
            !env.path("md").exists(),
            "a refused import wrote {:?}",
            contents(&env.path("md")).keys().collect::<Vec<_>>()
        );
        not_accepted(&env);
    }
}

// ---------------------------------------------------------------------------------------------
// Defect 11: image graphs beyond a limit

/// An image under six nested indexes: (top index, every other blob with its media type).
fn deep_image() -> (Vec<u8>, Vec<(Vec<u8>, &'static str)>) {
    let (config, layer, manifest) = small_image(11);
    let mut blobs = vec![
        (config, "application/vnd.oci.image.config.v1+json"),
        (layer, "application/vnd.oci.image.layer.v1.tar"),
        (manifest.clone(), OCI_MANIFEST),
    ];
    let mut child = (manifest, OCI_MANIFEST);
    for _ in 0..6 {
        let idx = index_of(&[(&child.0, child.1)]);
        blobs.push(child.clone());
        child = (idx, OCI_INDEX);
    }
    blobs.dedup();
    (child.0, blobs)
}

#[test]
fn an_image_graph_deeper_than_the_limit_is_refused_by_pack_and_import() {
    let env = Env::new();
    env.keygen("k");
    let (top, blobs) = deep_image();
    // Pack refuses it from an OCI layout (exit 3, named).
    let lay = env.path("deep-layout");
    for (b, _) in blobs.iter().chain([&(top.clone(), OCI_INDEX)]) {
        env.write(
            &format!("deep-layout/blobs/sha256/{}", Digest::of(b).hex()),
            b,
        );
    }
    env.write(
        "deep-layout/oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    env.write("deep-layout/index.json", index_of(&[(&top, OCI_INDEX)]));
    let src = format!("oci-layout://{}", lay.display());
    env.pack(&[&src], "k", "p", &[])
        .code(3)
        .stderr_has("nested deeper than 4");
    assert!(!env.path("p").exists());

    // A signed bundle holding it: every target refuses it, nothing written or pushed.
    let refs: Vec<(&[u8], &str)> = blobs.iter().map(|(b, m)| (b.as_slice(), *m)).collect();
    image_bundle(&env, "b", "example.com/deep:1", (&top, OCI_INDEX), &refs);
    import(&env, "b", &["--oci-layout", "L"])
        .code(3)
        .stderr_has("nested deeper than 4");
    assert!(!env.path("L").exists());
    let reg = TestRegistry::start();
    import(&env, "b", &["--registry", &reg.addr])
        .code(3)
        .stderr_has("nested deeper than 4");
    for (b, _) in &blobs {
        let out = Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{}/example.com/deep@{}", reg.addr, Digest::of(b)),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "a manifest was pushed");
    }
    not_accepted(&env);
}

// ---------------------------------------------------------------------------------------------
// Defects 8 and 14: content errors are exit 3 on every target and combination

#[test]
fn bad_bundle_content_is_exit_3_on_every_target_and_combination() {
    // An Ollama model whose template blob is also a file of a directory artifact; the blob
    // fails while streaming.
    let env = Env::new();
    let template = b"{{ .System }} {{ .Prompt }}".to_vec();
    let (model, b1) = ollama_artifact(&[("model", gguf()), ("template", template.clone())]);
    let (notes, b2) = dir_artifact("notes", "template.txt", &template);
    pack_lib(
        &env,
        "b",
        vec![model.clone(), notes],
        [b1.clone(), b2].concat(),
    );
    poison(&env, "b", Digest::of(&template));
    // The model alone, for targets without --files.
    pack_lib(&env, "c", vec![model], b1);
    poison(&env, "c", Digest::of(&template));
    for targets in [
        &["--files", "F"][..],
        &["--models-dir", "M"],
        &["--ollama-models=S"],
        &["--oci-layout", "L"],
        &["--oci-layout", "L", "--files", "F"],
        &["--files", "F", "--models-dir", "M"],
        &["--files", "F", "--ollama-models=S"],
        &["--files", "F", "--ollama-models=S", "--models-dir", "M"],
    ] {
        let dir = if targets.contains(&"--files") {
            "b"
        } else {
            "c"
        };
        let r = import(&env, dir, targets);
        r.code(3);
        assert!(
            r.stderr.contains(&Digest::of(&template).to_string()) || r.stderr.contains("chunks/"),
            "{targets:?}: the problem is not named:\n{}",
            r.stderr
        );
        for d in ["M", "S"] {
            assert!(!env.path(d).exists(), "{targets:?} left {d}");
        }
        not_accepted(&env);
    }

    // An HF repo whose weights fail while streaming.
    let env = Env::new();
    let weights = pseudo_random(40_000, 5);
    let (repo, blobs) = hf_artifact(
        "repo",
        HfRepoType::Model,
        "org/repo",
        &[("config.json", b"{}"), ("model.safetensors", &weights)],
    );
    pack_lib(&env, "b", vec![repo], blobs);
    poison(&env, "b", Digest::of(&weights));
    for targets in [
        &["--files", "F"][..],
        &["--hf-cache=C"],
        &["--models-dir", "M"],
        &["--hf-cache=C", "--models-dir", "M"],
    ] {
        import(&env, "b", targets).code(3);
        assert!(!env.path("M").exists(), "{targets:?} left M");
        not_accepted(&env);
    }

    // An image whose layer fails while streaming.
    let env = Env::new();
    let (config, layer, manifest) = small_image(1);
    image_bundle(
        &env,
        "b",
        "example.com/app:1",
        (&manifest, OCI_MANIFEST),
        &[
            (&config, "application/vnd.oci.image.config.v1+json"),
            (&layer, "application/vnd.oci.image.layer.v1.tar"),
        ],
    );
    poison(&env, "b", Digest::of(&layer));
    let reg = TestRegistry::start();
    for targets in [
        &["--files", "F"][..],
        &["--oci-layout", "L"],
        &["--registry", &reg.addr],
    ] {
        import(&env, "b", targets)
            .code(3)
            .stderr_has(&Digest::of(&layer).to_string());
        assert!(!env.path("L/index.json").exists());
        not_accepted(&env);
    }

    // Image graphs that lie: a child manifest missing, a layer size and a media type that
    // disagree with their descriptors. Refused before anything is written or pushed.
    let (config, layer, manifest) = small_image(2);
    let cfg = (
        config.as_slice(),
        "application/vnd.oci.image.config.v1+json",
    );
    let lay = (layer.as_slice(), "application/vnd.oci.image.layer.v1.tar");
    let missing_child = index_of(&[(&manifest, OCI_MANIFEST)]);
    let wrong_size = String::from_utf8(manifest.clone())
        .unwrap()
        .replace(
            &format!("\"size\":{}", layer.len()),
            &format!("\"size\":{}", layer.len() + 1),
        )
        .into_bytes();
    assert_ne!(wrong_size, manifest);
    let wrong_type = index_of(&[(&manifest, DOCKER_MANIFEST)]);
    type Lie<'a> = (&'a str, Vec<u8>, &'a str, Vec<(&'a [u8], &'a str)>);
    let lies: Vec<Lie> = vec![
        ("missing child", missing_child, OCI_INDEX, vec![cfg, lay]),
        ("layer size", wrong_size, OCI_MANIFEST, vec![cfg, lay]),
        (
            "media type",
            wrong_type,
            OCI_INDEX,
            vec![cfg, lay, (manifest.as_slice(), OCI_MANIFEST)],
        ),
    ];
    for (what, top, mt, blobs) in lies {
        let env = Env::new();
        image_bundle(&env, "b", "example.com/liar:1", (&top, mt), &blobs);
        for targets in [&["--oci-layout", "L"][..], &["--registry", &reg.addr]] {
            let r = import(&env, "b", targets);
            assert_eq!(r.code, 3, "{what} {targets:?}: {}", r.stderr);
            assert!(!env.path("L").exists(), "{what}: L written");
            not_accepted(&env);
        }
        let out = Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{}/example.com/liar:1", reg.addr),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}: the tag was pushed");
    }
}

#[test]
fn a_failed_import_leaves_the_oci_layout_as_it_was() {
    // A layout holding one image already; the next bundle's layer fails while streaming after
    // its config was written: the layout must be left exactly as it was.
    let env = Env::new();
    let (config, layer, manifest) = small_image(3);
    let blobs = [
        (
            config.as_slice(),
            "application/vnd.oci.image.config.v1+json",
        ),
        (layer.as_slice(), "application/vnd.oci.image.layer.v1.tar"),
    ];
    image_bundle(
        &env,
        "ok",
        "example.com/first:1",
        (&manifest, OCI_MANIFEST),
        &blobs,
    );
    import(&env, "ok", &["--oci-layout", "L"]).ok();
    let listing = |root: &Path| -> BTreeMap<String, Option<Digest>> {
        contents(root)
            .into_iter()
            .map(|(k, v)| (k, v.map(|b| Digest::of(&b))))
            .collect()
    };
    let before = listing(&env.path("L"));

    let env2 = Env::new();
    let (config, layer, manifest) = small_image(4);
    let blobs = [
        (
            config.as_slice(),
            "application/vnd.oci.image.config.v1+json",
        ),
        (layer.as_slice(), "application/vnd.oci.image.layer.v1.tar"),
    ];
    image_bundle(
        &env2,
        "b",
        "example.com/second:1",
        (&manifest, OCI_MANIFEST),
        &blobs,
    );
    poison(&env2, "b", Digest::of(&layer));
    // (Imported with env2's own acceptance state: the channel is fresh there.)
    let lay = env.path("L");
    let r = import(&env2, "b", &["--oci-layout", lay.to_str().unwrap()]);
    r.code(3).stderr_has(&Digest::of(&layer).to_string());
    assert_eq!(listing(&env.path("L")), before, "the layout changed");

    // Into a new layout: nothing is left at all.
    env2.run(&["import", "b", "--trust", "k.pub", "--oci-layout", "L2"])
        .code(3);
    assert!(
        !env2.path("L2").exists(),
        "left {:?}",
        contents(&env2.path("L2")).keys().collect::<Vec<_>>()
    );
}
