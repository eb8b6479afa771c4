//! Ollama models end to end: a small Ollama-style model (GGUF-like weights, template, params,
//! license; Docker schema 2 manifest in ollama's compact JSON) pushed under two tags sharing the
//! GGUF into Debian's docker-registry, reached through an in-process front on another host name
//! that answers blob GETs with 307 redirects (as registry.ollama.ai does with its CDN). The
//! `ollama://` source packs it, the real binary verifies the bundle, and the Ollama store and
//! models-directory targets write it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use airlock::bundle::{self, OutDir, PackOptions, PlannedBlob, VerifyOptions};
use airlock::format::{Artifact, ArtifactKind, Digest, Entry, HfFile, HfInfo, HfRepoType};
use airlock::oci::client::{ConnectOptions, Registry};
use airlock::oci::image::LayoutBlobs;
use airlock::oci::model::{descriptor_of, DOCKER_MANIFEST};
use airlock::oci::push::{push_image, PushOptions};
use airlock::progress::Silent;
use airlock::sign::{PublicKey, SigningKey};
use airlock::sources::{self, ResolveOptions, Source};
use airlock::stage::Admitted;
use airlock::targets::{models_dir, ollama};
use airlock::Error;

use crate::registry::{read_request, TestRegistry};
use crate::support::*;

const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";

/// One blob of the test model.
#[derive(Clone)]
pub(crate) struct Blob {
    media_type: &'static str,
    pub(crate) bytes: Vec<u8>,
}

impl Blob {
    pub(crate) fn new(media_type: &'static str, bytes: impl Into<Vec<u8>>) -> Blob {
        Blob {
            media_type,
            bytes: bytes.into(),
        }
    }
    pub(crate) fn digest(&self) -> Digest {
        Digest::of(&self.bytes)
    }
    fn descriptor_json(&self) -> String {
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
            self.media_type,
            self.digest(),
            self.bytes.len()
        )
    }
}

/// A tag of the test model: its config, layers and manifest bytes.
pub(crate) struct Tag {
    pub(crate) tag: &'static str,
    pub(crate) config: Blob,
    pub(crate) layers: Vec<Blob>,
    pub(crate) manifest: Vec<u8>,
}

impl Tag {
    pub(crate) fn new(tag: &'static str, config: Blob, layers: Vec<Blob>) -> Tag {
        // Exactly as ollama writes it: compact JSON, fields in this order, no trailing newline.
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{},"layers":[{}]}}"#,
            config.descriptor_json(),
            layers
                .iter()
                .map(Blob::descriptor_json)
                .collect::<Vec<_>>()
                .join(",")
        )
        .into_bytes();
        Tag {
            tag,
            config,
            layers,
            manifest,
        }
    }
    fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

fn gguf() -> Vec<u8> {
    let mut g = b"GGUF".to_vec();
    g.extend_from_slice(&3u32.to_le_bytes());
    g.extend_from_slice(&pseudo_random(300_000, 42));
    g
}

const TEMPLATE: &str = "{{ if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}<|user|>\n{{ .Prompt }}<|end|>\n<|assistant|>\n";
const LICENSE: &str = "Apache License\nVersion 2.0, January 2004\n";

fn config(file_type: &str) -> Blob {
    Blob::new(
        CONFIG_TYPE,
        format!(
            r#"{{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"135M","file_type":"{file_type}","architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        ),
    )
}

/// Two tags sharing the GGUF: `v1` (template, params, license) and `latest` (same plus a
/// system prompt, other params).
pub(crate) fn model() -> Vec<Tag> {
    let weights = || Blob::new("application/vnd.ollama.image.model", gguf());
    let template = || Blob::new("application/vnd.ollama.image.template", TEMPLATE);
    let license = || Blob::new("application/vnd.ollama.image.license", LICENSE);
    vec![
        Tag::new(
            "v1",
            config("Q4_1"),
            vec![
                weights(),
                template(),
                license(),
                Blob::new(
                    "application/vnd.ollama.image.params",
                    r#"{"stop":["<|end|>","<|user|>"],"temperature":0.2}"#,
                ),
            ],
        ),
        Tag::new(
            "latest",
            config("Q4_K_M"),
            vec![
                weights(),
                template(),
                Blob::new("application/vnd.ollama.image.system", "You are terse."),
                Blob::new("application/vnd.ollama.image.params", r#"{"num_ctx":2048}"#),
                license(),
            ],
        ),
    ]
}

/// Pushes every tag into `library/tiny` of the registry from an OCI layout's blobs directory.
pub(crate) fn push_model(reg: &TestRegistry, tags: &[Tag], dir: &Path) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let client = Registry::new(&reg.addr, &ConnectOptions::default()).unwrap();
    for t in tags {
        for b in t.blobs() {
            fs::write(blobs.join(b.digest().hex()), &b.bytes).unwrap();
        }
        fs::write(blobs.join(Digest::of(&t.manifest).hex()), &t.manifest).unwrap();
        let top = descriptor_of(&t.manifest, DOCKER_MANIFEST);
        push_image(
            &client,
            "library/tiny",
            Some(t.tag),
            &top,
            &LayoutBlobs(dir.to_path_buf()),
            &PushOptions::default(),
            &Silent,
        )
        .unwrap();
        // The registry serves the manifest byte for byte.
        assert_eq!(
            client.manifest("library/tiny", t.tag).unwrap().bytes,
            t.manifest
        );
    }
}

/// An in-process front for the registry on another host name: manifests (and `/v2/`) are
/// forwarded, blob requests are answered `307` to the registry as `localhost:PORT`, except
/// that the `poison` digest (if any) is answered `200` with other bytes of the same length.
pub(crate) struct Front {
    pub(crate) addr: String,
    /// Request lines seen, with what was answered.
    pub(crate) log: Arc<Mutex<Vec<String>>>,
}

impl Front {
    pub(crate) fn start(registry: &str, poison: Option<(Digest, Vec<u8>)>) -> Front {
        let port = registry.rsplit_once(':').unwrap().1.to_string();
        let upstream = registry.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(s) = stream else { continue };
                let (upstream, port, seen, poison) =
                    (upstream.clone(), port.clone(), seen.clone(), poison.clone());
                std::thread::spawn(move || serve(s, &upstream, &port, &seen, poison));
            }
        });
        Front { addr, log }
    }

    fn saw(&self, what: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(what))
    }
}

fn serve(
    mut s: TcpStream,
    upstream: &str,
    port: &str,
    log: &Mutex<Vec<String>>,
    poison: Option<(Digest, Vec<u8>)>,
) {
    let (line, headers) = read_request(&s);
    let mut it = line.split_whitespace();
    let (Some(method), Some(path)) = (it.next(), it.next()) else {
        return; // a TLS probe
    };
    if method != "GET" && method != "HEAD" {
        return;
    }
    if path.contains("/blobs/") {
        if let Some((d, bytes)) = poison.filter(|(d, _)| path.ends_with(&d.to_string())) {
            log.lock()
                .unwrap()
                .push(format!("{method} {path} -> 200 poisoned {d}"));
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = s.write_all(&bytes);
            return;
        }
        log.lock().unwrap().push(format!("{method} {path} -> 307"));
        let _ = write!(
            s,
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://localhost:{port}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    log.lock()
        .unwrap()
        .push(format!("{method} {path} -> forwarded"));
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n");
    for h in headers
        .iter()
        .filter(|h| !h.starts_with("host:") && !h.starts_with("connection:"))
    {
        req += &format!("{h}\r\n");
    }
    req += "\r\n";
    if up.write_all(req.as_bytes()).is_ok() {
        let _ = std::io::copy(&mut up, &mut s);
    }
}

/// Packs sources into `out` with key `k` (which must exist) at the library level.
fn pack(env: &Env, sources: &[Source], out: &str) -> airlock::Result<airlock::format::Manifest> {
    let key = SigningKey::load(&env.path("k")).unwrap();
    let r = sources::resolve(
        sources,
        &env.path("staging"),
        &ResolveOptions::default(),
        &Silent,
    )?;
    pack_artifacts(env, r.artifacts, &r.blobs, out, key)
}

fn pack_artifacts(
    env: &Env,
    artifacts: Vec<Artifact>,
    blobs: &[PlannedBlob],
    out: &str,
    key: SigningKey,
) -> airlock::Result<airlock::format::Manifest> {
    let opts = PackOptions {
        channel: "models".into(),
        sequence: 1,
        created: std::time::SystemTime::now(),
        expires: None,
        chunk_size: 128 * 1024,
        volumes: None,
    };
    bundle::pack(
        OutDir::prepare(&env.path(out)).unwrap(),
        artifacts,
        blobs,
        &[key],
        &opts,
        &Silent,
    )
}

fn verified(env: &Env, dir: &str) -> Admitted {
    env.run(&["verify", dir, "--trust", "k.pub"]).ok();
    let trust = PublicKey::load(env.path("k.pub").to_str().unwrap()).unwrap();
    Admitted::without_state(
        bundle::verify(
            &env.path(dir),
            &[trust],
            &VerifyOptions {
                now: std::time::SystemTime::now(),
            },
            &Silent,
        )
        .unwrap(),
    )
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

pub(crate) struct Setup {
    pub(crate) env: Env,
    _reg: TestRegistry,
    pub(crate) front: Front,
    pub(crate) tags: Vec<Tag>,
}

pub(crate) fn setup(poison: bool) -> Setup {
    let env = Env::new();
    env.keygen("k");
    let reg = TestRegistry::start();
    let tags = model();
    push_model(&reg, &tags, &env.path("pushed"));
    let poison = poison.then(|| {
        let g = &tags[0].layers[0];
        (g.digest(), pseudo_random(g.bytes.len(), 7))
    });
    let front = Front::start(&reg.addr, poison);
    Setup {
        env,
        _reg: reg,
        front,
        tags,
    }
}

impl Setup {
    fn sources(&self) -> Vec<Source> {
        self.tags
            .iter()
            .map(|t| {
                Source::parse(&format!(
                    "ollama://{}/library/tiny:{}",
                    self.front.addr, t.tag
                ))
                .unwrap()
            })
            .collect()
    }
    /// The expected store: `manifests/HOST/library/tiny/TAG` and `blobs/sha256-HEX`.
    fn expected_store(&self) -> tree::Snapshot {
        let mut m = BTreeMap::new();
        let host = &self.front.addr;
        for d in [
            "blobs".to_string(),
            "manifests".into(),
            format!("manifests/{host}"),
            format!("manifests/{host}/library"),
            format!("manifests/{host}/library/tiny"),
        ] {
            m.insert(d, tree::dir(0o755));
        }
        for t in &self.tags {
            m.insert(
                format!("manifests/{host}/library/tiny/{}", t.tag),
                tree::file(0o644, &t.manifest),
            );
            for b in t.blobs() {
                m.insert(
                    format!("blobs/sha256-{}", b.digest().hex()),
                    tree::file(0o644, &b.bytes),
                );
            }
        }
        m
    }
}

#[test]
fn ollama_models_travel_into_an_ollama_store_byte_for_byte() {
    let s = setup(false);
    let env = &s.env;
    let m = pack(env, &s.sources(), "b").unwrap();
    // Blobs went through the front's redirect; the manifests were forwarded.
    let gguf = s.tags[0].layers[0].digest();
    assert!(s.front.saw(&format!("/blobs/{gguf} -> 307")));
    assert!(s.front.saw("/manifests/v1 -> forwarded"));
    // Two ollama-model artifacts, named readably; the shared GGUF is stored once.
    let names: Vec<&str> = m.artifacts.iter().map(|a| a.name.as_str()).collect();
    let host_ = s.front.addr.replace(':', "_");
    assert_eq!(
        names,
        vec![
            format!("ollama_{host_}_library_tiny_v1"),
            format!("ollama_{host_}_library_tiny_latest")
        ]
    );
    for (a, t) in m.artifacts.iter().zip(&s.tags) {
        assert_eq!(a.kind, ArtifactKind::OllamaModel);
        let info = a.image.as_ref().unwrap();
        assert_eq!(
            info.reference,
            format!("{}/library/tiny:{}", s.front.addr, t.tag)
        );
        assert_eq!(info.digest, Digest::of(&t.manifest));
        assert_eq!(info.media_type, DOCKER_MANIFEST);
    }
    assert_eq!(m.blobs.iter().filter(|b| b.digest == gguf).count(), 1);
    // The binary's pack takes ollama:// sources too (Source::parse).
    let src = format!("ollama://{}/library/tiny:v1", s.front.addr);
    env.pack(&[&src], "k", "cli", &[]).ok();
    let cli = env
        .run(&["verify", "cli", "--trust", "k.pub", "--json"])
        .ok()
        .json();
    assert!(cli.to_string().contains("ollama-model"), "{cli}");

    let vb = verified(env, "b");
    let store = env.path("store");
    let plan = ollama::plan(&vb, &store, &|_| true).unwrap();
    assert_eq!(plan.models.len(), 2);
    assert!(plan
        .models
        .iter()
        .all(|m| m.action == models_dir::Action::Write));
    // Blobs first, manifests last; the plan serialises (for --dry-run --json).
    let kinds: Vec<bool> = plan
        .writes
        .files
        .iter()
        .map(|f| f.path.starts_with(store.join("manifests")))
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k).count(), 2);
    assert!(kinds.ends_with(&[true, true]));
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["models"][0]["action"], "write");
    assert!(!store.exists(), "planning writes nothing");
    ollama::execute(&vb, &plan, &Silent).unwrap();
    assert_eq!(tree::snapshot(&store), s.expected_store());

    // Re-import: nothing to do, nothing changes.
    let again = ollama::plan(&vb, &store, &|_| true).unwrap();
    assert!(again.is_noop(), "{again:?}");
    ollama::execute(&vb, &again, &Silent).unwrap();
    assert_eq!(tree::snapshot(&store), s.expected_store());

    // A tag that moved upstream: its manifest is replaced (as ollama pull does), atomically.
    let v1 = store.join(format!("manifests/{}/library/tiny/v1", s.front.addr));
    fs::write(&v1, b"{\"schemaVersion\":2}").unwrap();
    let p = ollama::plan(&vb, &store, &|_| true).unwrap();
    assert_eq!(p.models[0].action, models_dir::Action::Replace);
    assert_eq!(
        p.models[0].replaces,
        Some(Digest::of(b"{\"schemaVersion\":2}"))
    );
    ollama::execute(&vb, &p, &Silent).unwrap();
    assert_eq!(tree::snapshot(&store), s.expected_store());

    // The models directory: one directory per tag, with a Modelfile.
    let dir = env.path("models");
    let plan = models_dir::plan(&vb, &dir, &|_| true).unwrap();
    models_dir::execute(&vb, &plan, &Silent).unwrap();
    let base = dir.join(format!("ollama/{}/library/tiny", s.front.addr));
    assert_eq!(plan.models[0].path, base.join("v1"));
    let v1 = base.join("v1");
    let got: BTreeMap<String, Option<Vec<u8>>> = contents(&v1);
    let t = &s.tags[0];
    let modelfile = "FROM ./model.gguf\n\
         TEMPLATE \"{{ if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}<|user|>\n{{ .Prompt }}<|end|>\n<|assistant|>\n\"\n\
         PARAMETER stop <|end|>\n\
         PARAMETER stop <|user|>\n\
         PARAMETER temperature 0.2\n\
         LICENSE \"Apache License\nVersion 2.0, January 2004\n\"\n";
    let want: BTreeMap<String, Option<Vec<u8>>> = [
        ("model.gguf", t.layers[0].bytes.clone()),
        ("template", t.layers[1].bytes.clone()),
        ("license", t.layers[2].bytes.clone()),
        ("params.json", t.layers[3].bytes.clone()),
        ("config.json", t.config.bytes.clone()),
        ("manifest.json", t.manifest.clone()),
        ("Modelfile", modelfile.as_bytes().to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Some(v)))
    .collect();
    assert_eq!(
        got,
        want,
        "Modelfile:\n{}",
        String::from_utf8_lossy(&fs::read(v1.join("Modelfile")).unwrap())
    );
    let latest = fs::read_to_string(base.join("latest/Modelfile")).unwrap();
    assert!(
        latest.contains("SYSTEM You are terse.\nPARAMETER num_ctx 2048\nLICENSE"),
        "{latest}"
    );
    assert_eq!(mode(&v1.join("model.gguf")), 0o644);
    assert_eq!(mode(&v1), 0o755);
    let before = tree::snapshot(&dir);
    let again = models_dir::plan(&vb, &dir, &|_| true).unwrap();
    assert!(again.writes.is_noop());
    models_dir::execute(&vb, &again, &Silent).unwrap();
    assert_eq!(tree::snapshot(&dir), before);
}

#[test]
fn a_conflicting_blob_stops_the_import_before_any_write_and_failures_roll_back() {
    let s = setup(false);
    let env = &s.env;
    pack(env, &s.sources(), "b").unwrap();
    let vb = verified(env, "b");

    // A blob file with the wrong bytes: conflict at planning, nothing written.
    let store = env.path("store");
    let gguf = s.tags[0].layers[0].digest();
    let planted = store.join(format!("blobs/sha256-{}", gguf.hex()));
    fs::create_dir_all(planted.parent().unwrap()).unwrap();
    fs::write(&planted, b"GGUF but not this one").unwrap();
    let before = tree::snapshot(&store);
    let err = ollama::plan(&vb, &store, &|_| true).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert!(
        err.to_string().contains(&planted.display().to_string()),
        "{err}"
    );
    assert_eq!(tree::snapshot(&store), before);

    // Same in the models directory.
    let dir = env.path("models");
    let tiny = dir.join(format!("ollama/{}/library/tiny/v1", s.front.addr));
    fs::create_dir_all(&tiny).unwrap();
    fs::write(tiny.join("template"), b"other").unwrap();
    let before_dir = tree::snapshot(&dir);
    assert!(matches!(
        models_dir::plan(&vb, &dir, &|_| true),
        Err(Error::Conflict(_))
    ));
    assert_eq!(tree::snapshot(&dir), before_dir);

    // A failure while executing (the second manifest's place is taken after planning):
    // the blobs and the first manifest written are removed again.
    let store2 = env.path("store2");
    let plan = ollama::plan(&vb, &store2, &|_| true).unwrap();
    let blocker = store2.join(format!("manifests/{}/library/tiny/latest", s.front.addr));
    fs::create_dir_all(blocker.join("x")).unwrap();
    let before = tree::snapshot(&store2);
    let err = ollama::execute(&vb, &plan, &Silent).unwrap_err();
    assert!(err.to_string().contains("latest"), "{err}");
    assert_eq!(tree::snapshot(&store2), before, "the store is as it was");
}

#[test]
fn a_blob_with_wrong_bytes_from_the_source_fails_the_pack_naming_its_digest() {
    let s = setup(true);
    let env = &s.env;
    let gguf = s.tags[0].layers[0].digest();
    let err = pack(env, &s.sources()[..1], "b").unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&gguf.to_string()), "{err}");
    assert!(s.front.saw("poisoned"));
    assert!(!env.path("b").exists(), "a failed pack leaves no bundle");
}

#[test]
fn hf_repos_go_to_org_name_in_the_models_directory() {
    let env = Env::new();
    env.keygen("k");
    let files: Vec<(&str, Vec<u8>, bool)> = vec![
        ("config.json", br#"{"model_type":"bert"}"#.to_vec(), false),
        ("model.safetensors", pseudo_random(70_000, 3), false),
        (
            "1_Pooling/config.json",
            br#"{"word_embedding_dimension":384}"#.to_vec(),
            false,
        ),
    ];
    let mut entries = vec![Entry::dir("1_Pooling")];
    let mut blobs = Vec::new();
    let mut hf_files = Vec::new();
    for (i, (path, data, _)) in files.iter().enumerate() {
        let p = env.write(&format!("in/{i}"), data);
        let d = Digest::of(data);
        entries.push(Entry::file(path, d, data.len() as u64));
        blobs.push(PlannedBlob::file(d, data.len() as u64, p));
        hf_files.push(HfFile {
            path: path.to_string(),
            pointer_oid: None,
            xet_hash: None,
            etag: if path.ends_with(".safetensors") {
                d.hex()
            } else {
                format!("{:040x}", i + 1)
            },
        });
    }
    let artifact = Artifact {
        name: "minilm".into(),
        kind: ArtifactKind::HfRepo,
        source: "hf://sentence-transformers/all-MiniLM-L6-v2".into(),
        identity: "x".into(),
        entries,
        image: None,
        hf: Some(HfInfo {
            endpoint: "https://huggingface.co".into(),
            repo_type: HfRepoType::Model,
            repo_id: "sentence-transformers/all-MiniLM-L6-v2".into(),
            revision: "main".into(),
            commit: "c9745ed1d9f207416be6d2e6f8de32d1f16199bf".into(),
            complete: true,
            files: hf_files,
        }),
    };
    let key = SigningKey::load(&env.path("k")).unwrap();
    pack_artifacts(&env, vec![artifact], &blobs, "b", key).unwrap();
    let vb = verified(&env, "b");
    let dir = env.path("models");
    let plan = models_dir::plan(&vb, &dir, &|_| true).unwrap();
    let root = dir.join("hf/sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(plan.models[0].path, root);
    models_dir::execute(&vb, &plan, &Silent).unwrap();
    let mut want: BTreeMap<String, Option<Vec<u8>>> = files
        .iter()
        .map(|(p, d, _)| (p.to_string(), Some(d.clone())))
        .collect();
    want.insert("1_Pooling".into(), None);
    assert_eq!(contents(&root), want);
    assert_eq!(
        contents(&dir)
            .keys()
            .filter(|k| !k.starts_with("hf/sentence-transformers/all-MiniLM-L6-v2/"))
            .collect::<Vec<_>>(),
        vec![
            "hf",
            "hf/sentence-transformers",
            "hf/sentence-transformers/all-MiniLM-L6-v2"
        ]
    );
    let again = models_dir::plan(&vb, &dir, &|_| true).unwrap();
    assert!(again.writes.is_noop());
}

#[test]
fn the_binary_imports_ollama_models_into_the_default_store_and_a_models_dir() {
    let s = setup(false);
    let env = &s.env;
    let srcs: Vec<String> = s
        .tags
        .iter()
        .map(|t| format!("ollama://{}/library/tiny:{}", s.front.addr, t.tag))
        .collect();
    let srcs: Vec<&str> = srcs.iter().map(String::as_str).collect();
    env.pack(&srcs, "k", "b", &[]).ok();
    // Dry run: plans printed, nothing written.
    let mut dry = env.command(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--ollama-models",
        "--models-dir",
        "md",
        "--dry-run",
        "--json",
    ]);
    dry.env("OLLAMA_MODELS", env.path("store"));
    let plan = run_cmd(dry).ok().json();
    assert_eq!(plan["ollama"]["models"].as_array().unwrap().len(), 2);
    assert!(!env.path("store").exists() && !env.path("md").exists());
    // `--ollama-models` without a value: $OLLAMA_MODELS.
    let mut real = env.command(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--ollama-models",
        "--models-dir",
        "md",
    ]);
    real.env("OLLAMA_MODELS", env.path("store"));
    run_cmd(real).ok().stdout_has("into Ollama store");
    assert_eq!(tree::snapshot(&env.path("store")), s.expected_store());
    assert!(env
        .path(&format!(
            "md/ollama/{}/library/tiny/v1/Modelfile",
            s.front.addr
        ))
        .is_file());
    // Only an Ollama target, and the bundle has nothing else: fine; re-import writes nothing.
    let before = tree::snapshot(&env.path("store"));
    env.run(&["import", "b", "--trust", "k.pub", "--ollama-models=store"])
        .ok();
    assert_eq!(tree::snapshot(&env.path("store")), before);
}
