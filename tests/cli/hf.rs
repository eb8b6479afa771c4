//! `hf://` sources against the Hub emulator: packed through the library (`airlock::sources::hf`)
//! and verified with the real binary; the emulator itself is checked against the real
//! `hf download` (huggingface_hub 2.4.0).

use std::path::Path;

use airlock::bundle::{self, OutDir, PackOptions};
use airlock::format::{ArtifactKind, EntryType, Manifest};
use airlock::hf::{HfOptions, HfSpec};
use airlock::progress::Silent;
use airlock::sign::SigningKey;
use airlock::sources::hf;

use crate::hub_emulator::{cache_listing, hf_download, reference_cache, Hub, RepoDef};
use crate::support::*;

const CHUNK: u64 = 64 * 1024;

fn big(seed: u64) -> Vec<u8> {
    pseudo_random(200_000, seed)
}

/// A model with sub-folders, two LFS files (one larger than the chunk size), a tag `v1` on the
/// first commit, and a second commit on `main`.
fn sample_repo() -> RepoDef {
    RepoDef::model("org/model")
        .file("config.json", br#"{"model_type": "bert"}"#.to_vec())
        .file("README.md", b"# a model\n".to_vec())
        .file("1_Pooling/config.json", br#"{"pooling": "mean"}"#.to_vec())
        .file("onnx/sub/deep.txt", b"deep\n".to_vec())
        .file("empty.txt", Vec::new())
        .lfs("model.safetensors", big(1))
        .lfs("onnx/model.onnx", big(2))
        .tag("v1")
        .tag("refs/pr/1")
        .next_commit()
        .file("config.json", br#"{"model_type": "bert", "v": 2}"#.to_vec())
}

fn opts(hub: &Hub) -> HfOptions {
    HfOptions::new(&hub.url(), None)
}

/// Resolves and packs `spec` into `env/out`, then verifies it with the real binary.
fn pack(env: &Env, spec: &HfSpec, o: &HfOptions) -> airlock::Result<Manifest> {
    if !env.path("k").exists() {
        env.keygen("k");
    }
    let key = SigningKey::load(&env.path("k")).unwrap();
    let out = OutDir::prepare(&env.path("out")).unwrap();
    let (artifact, blobs) = hf::resolve(spec, o, None, &out.staging(), 0, &Silent)?;
    let popts = PackOptions {
        channel: "hf".into(),
        sequence: 1,
        created: std::time::SystemTime::now(),
        expires: None,
        chunk_size: CHUNK,
        volumes: None,
    };
    let m = bundle::pack(out, vec![artifact], &blobs, &[key], &popts, &Silent)?;
    env.run(&["verify", "out", "--trust", "k.pub"]).ok();
    Ok(m)
}

fn spec(s: &str) -> HfSpec {
    HfSpec::parse(s).unwrap()
}

fn file_paths(m: &Manifest) -> Vec<String> {
    m.artifacts[0]
        .entries
        .iter()
        .filter(|e| e.kind == EntryType::File)
        .map(|e| e.path.clone())
        .collect()
}

fn assert_no_bundle(env: &Env) {
    assert!(!env.path("out/manifest.json").exists());
    assert!(
        !env.path("out").exists() || std::fs::read_dir(env.path("out")).unwrap().next().is_none(),
        "a failed pack left files behind"
    );
}

#[test]
fn packs_a_repo_with_folders_and_lfs_files() {
    let hub = Hub::start(vec![sample_repo()]);
    hub.set_page_size(3); // 7 files + 3 directories: four pages
    let env = Env::new();
    let m = pack(&env, &spec("hf://org/model"), &opts(&hub)).unwrap();
    let a = &m.artifacts[0];
    assert_eq!(a.kind, ArtifactKind::HfRepo);
    assert_eq!(a.name, "models--org--model");
    let commit = hub.commit("org/model", "main");
    assert_eq!(a.identity, format!("{}/org/model@{commit}", hub.url()));
    let hf = a.hf.as_ref().unwrap();
    assert_eq!(
        (hf.commit.as_str(), hf.revision.as_str()),
        (commit.as_str(), "main")
    );
    assert!(hf.complete);
    let dirs: Vec<&str> = a
        .entries
        .iter()
        .filter(|e| e.kind == EntryType::Dir)
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(dirs, ["1_Pooling", "onnx", "onnx/sub"]);
    assert_eq!(file_paths(&m).len(), 7);
    // The LFS etag is the SHA-256 of the content; regular ones are git blob SHA-1s.
    let etag = |p: &str| hf.files.iter().find(|f| f.path == p).unwrap().etag.clone();
    assert_eq!(
        etag("model.safetensors"),
        airlock::format::Digest::of(&big(1)).hex()
    );
    assert_eq!(
        etag("README.md"),
        airlock::hf::git_blob_sha1(b"# a model\n")
    );
    assert!(m.chunks.len() > 3, "the LFS files span chunks");
    // Pagination was followed.
    let pages = hub
        .requests()
        .iter()
        .filter(|r| r.target.contains("/tree/"))
        .count();
    assert_eq!(pages, 4);
    // Import the bundle and compare bytes.
    env.run(&["import", "out", "--trust", "k.pub", "--files", "dst"])
        .ok();
    let got = std::fs::read(find_file(&env.path("dst"), "model.safetensors")).unwrap();
    assert_eq!(got, big(1));
}

fn find_file(root: &Path, name: &str) -> std::path::PathBuf {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .find(|p| p.file_name().is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!("{name} not found under {}", root.display()))
}

#[test]
fn include_patterns_make_a_partial_snapshot() {
    let hub = Hub::start(vec![sample_repo()]);
    let env = Env::new();
    let s = spec("hf://org/model").with_patterns(vec!["*.json".into()], vec!["1_Pooling/*".into()]);
    let m = pack(&env, &s, &opts(&hub)).unwrap();
    assert_eq!(file_paths(&m), ["config.json"]);
    assert!(!m.artifacts[0].hf.as_ref().unwrap().complete);
    // Nothing matched: a usage error.
    let env2 = Env::new();
    let s = spec("hf://org/model").with_patterns(vec!["*.gguf".into()], vec![]);
    let e = pack(&env2, &s, &opts(&hub)).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
}

#[test]
fn revisions_as_tag_and_as_commit() {
    let hub = Hub::start(vec![sample_repo()]);
    let v1 = hub.commit("org/model", "v1");
    assert_ne!(v1, hub.commit("org/model", "main"));
    for rev in ["v1".to_string(), v1.clone()] {
        let env = Env::new();
        let m = pack(&env, &spec(&format!("hf://org/model@{rev}")), &opts(&hub)).unwrap();
        let hf = m.artifacts[0].hf.as_ref().unwrap();
        assert_eq!(hf.commit, v1);
        assert_eq!(hf.revision, rev);
        let cfg = m.artifacts[0]
            .entries
            .iter()
            .find(|e| e.path == "config.json")
            .unwrap();
        assert_eq!(cfg.size, Some(br#"{"model_type": "bert"}"#.len() as u64));
    }
}

#[test]
fn a_pr_revision_is_percent_encoded() {
    let hub = Hub::start(vec![sample_repo()]);
    let env = Env::new();
    let m = pack(&env, &spec("hf://org/model@refs/pr/1"), &opts(&hub)).unwrap();
    assert_eq!(m.artifacts[0].name, "models--org--model@refs_pr_1");
    assert_eq!(
        m.artifacts[0].hf.as_ref().unwrap().commit,
        hub.commit("org/model", "v1")
    );
    assert!(hub
        .requests()
        .iter()
        .any(|r| r.target.ends_with("/revision/refs%2Fpr%2F1")));
}

#[test]
fn datasets_are_distinct() {
    let hub = Hub::start(vec![
        RepoDef::dataset("org/set").file("data/train.csv", b"a,b\n1,2\n".to_vec())
    ]);
    let env = Env::new();
    let m = pack(&env, &spec("hf://datasets/org/set"), &opts(&hub)).unwrap();
    assert_eq!(m.artifacts[0].name, "datasets--org--set");
    let hf = m.artifacts[0].hf.as_ref().unwrap();
    assert_eq!(hf.repo_type, airlock::format::HfRepoType::Dataset);
    assert!(m.artifacts[0].identity.contains("/datasets/org/set@"));
    // A model of that name does not exist.
    let e = pack(&Env::new(), &spec("hf://org/set"), &opts(&hub)).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
}

#[test]
fn private_repo_needs_the_token_which_never_reaches_the_cdn() {
    let hub = Hub::start(vec![sample_repo().private("hf_secret")]);
    let e = pack(&Env::new(), &spec("hf://org/model"), &opts(&hub)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("not found") && msg.contains("token"), "{msg}");
    hub.clear_log();
    let env = Env::new();
    pack(
        &env,
        &spec("hf://org/model"),
        &HfOptions::new(&hub.url(), Some("hf_secret")),
    )
    .unwrap();
    let cdn = hub.cdn_requests();
    assert!(!cdn.is_empty(), "LFS files came from the CDN");
    assert!(
        cdn.iter().all(|r| r.header("authorization").is_none()),
        "the token leaked to the CDN: {cdn:?}"
    );
    assert!(hub
        .requests()
        .iter()
        .filter(|r| r.origin == "hub")
        .all(|r| r.header("authorization") == Some("Bearer hf_secret")));
}

#[test]
fn gated_repo_is_a_clear_error_and_no_bundle() {
    let hub = Hub::start(vec![sample_repo().gated("hf_ok")]);
    let env = Env::new();
    let e = pack(&env, &spec("hf://org/model"), &opts(&hub)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("gated repo") && msg.contains("accept the terms"),
        "{msg}"
    );
    assert_no_bundle(&env);
    let e = pack(
        &env,
        &spec("hf://org/model"),
        &HfOptions::new(&hub.url(), Some("hf_other")),
    )
    .unwrap_err();
    assert!(e.to_string().contains("gated repo"), "{e}");
    pack(
        &env,
        &spec("hf://org/model"),
        &HfOptions::new(&hub.url(), Some("hf_ok")),
    )
    .unwrap();
}

#[test]
fn missing_revision_and_repo() {
    let hub = Hub::start(vec![sample_repo()]);
    let env = Env::new();
    let e = pack(&env, &spec("hf://org/model@nope"), &opts(&hub)).unwrap_err();
    assert!(e.to_string().contains("revision \"nope\" not found"), "{e}");
    assert_no_bundle(&env);
    let e = pack(&env, &spec("hf://org/other"), &opts(&hub)).unwrap_err();
    assert!(
        e.to_string().contains("repository org/other not found"),
        "{e}"
    );
}

#[test]
fn wrong_lfs_bytes_abort_the_pack() {
    let hub = Hub::start(vec![sample_repo()]);
    hub.serve_wrong_bytes("model.safetensors");
    let env = Env::new();
    let e = pack(&env, &spec("hf://org/model"), &opts(&hub)).unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("digest mismatch"),
        "{msg}"
    );
    assert_no_bundle(&env);
}

#[test]
fn a_regular_file_whose_sha1_does_not_match_aborts() {
    let hub = Hub::start(vec![sample_repo()]);
    hub.serve_wrong_bytes("1_Pooling/config.json");
    let env = Env::new();
    let e = pack(&env, &spec("hf://org/model"), &opts(&hub)).unwrap_err();
    let msg = e.to_string();
    let expected = airlock::hf::git_blob_sha1(br#"{"pooling": "mean"}"#);
    assert!(
        msg.contains("1_Pooling/config.json")
            && msg.contains("SHA-1 mismatch")
            && msg.contains(&expected),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 3, "content rejected: {msg}");
    assert_no_bundle(&env);
}

#[test]
fn truncated_downloads_resume_with_range() {
    let hub = Hub::start(vec![sample_repo()]);
    hub.truncate("model.safetensors", 70_000, 2);
    hub.truncate("README.md", 3, 1);
    let env = Env::new();
    pack(&env, &spec("hf://org/model"), &opts(&hub)).unwrap();
    let ranges: Vec<String> = hub
        .cdn_requests()
        .iter()
        .filter_map(|r| r.header("range").map(str::to_string))
        .collect();
    assert!(ranges.contains(&"bytes=70000-".to_string()), "{ranges:?}");
    // A download that keeps breaking without progress fails, naming the file, and leaves no
    // bundle.
    hub.truncate("onnx/model.onnx", 0, 100);
    let env = Env::new();
    let e = pack(&env, &spec("hf://org/model"), &opts(&hub)).unwrap_err();
    assert!(e.to_string().contains("onnx/model.onnx"), "{e}");
    assert_no_bundle(&env);
}

#[test]
fn a_redirect_loop_is_an_error() {
    let hub = Hub::start(vec![sample_repo()]);
    hub.redirect_loop("config.json");
    let env = Env::new();
    let e = pack(&env, &spec("hf://org/model"), &opts(&hub)).unwrap_err();
    assert!(e.to_string().contains("redirect"), "{e}");
    assert_no_bundle(&env);
}

// ---- the emulator is faithful: the real client downloads from it ----

fn hf_ok(hub: &Hub, args: &[&str], env: &Env, dir: &str) -> std::path::PathBuf {
    reference_cache(hub, args, &env.path(dir))
}

#[test]
fn real_hf_download_works_against_the_emulator() {
    let hub = Hub::start(vec![
        sample_repo(),
        RepoDef::dataset("org/set").file("data/train.csv", b"a,b\n1,2\n".to_vec()),
    ]);
    hub.set_page_size(2);
    let env = Env::new();
    let commit = hub.commit("org/model", "main");
    let cache = hf_ok(&hub, &["org/model"], &env, "c1");
    let snap = cache.join(format!("models--org--model/snapshots/{commit}"));
    assert_eq!(
        std::fs::read(snap.join("model.safetensors")).unwrap(),
        big(1)
    );
    assert_eq!(std::fs::read(snap.join("onnx/model.onnx")).unwrap(), big(2));
    assert_eq!(
        std::fs::read(snap.join("1_Pooling/config.json")).unwrap(),
        br#"{"pooling": "mean"}"#
    );
    assert_eq!(
        std::fs::read(cache.join("models--org--model/refs/main")).unwrap(),
        commit.as_bytes()
    );
    let listing = cache_listing(&cache);
    let blob = airlock::format::Digest::of(&big(1)).hex();
    assert!(
        listing.contains(&format!(
            "l models--org--model/snapshots/{commit}/model.safetensors ../../blobs/{blob}"
        )),
        "{listing:#?}"
    );
    // The token-less CDN got the LFS bytes.
    assert!(hub.cdn_requests().iter().any(|r| r.method == "GET"));

    // --include, a tag, a dataset.
    let cache = hf_ok(&hub, &["org/model", "--include", "*.json"], &env, "c2");
    let snap = cache.join(format!("models--org--model/snapshots/{commit}"));
    assert!(snap.join("1_Pooling/config.json").exists());
    assert!(!snap.join("model.safetensors").exists());
    let v1 = hub.commit("org/model", "v1");
    let cache = hf_ok(&hub, &["org/model", "--revision", "v1"], &env, "c3");
    assert_eq!(
        std::fs::read(cache.join("models--org--model/refs/v1")).unwrap(),
        v1.as_bytes()
    );
    assert_eq!(
        std::fs::read(cache.join(format!("models--org--model/snapshots/{v1}/config.json")))
            .unwrap(),
        br#"{"model_type": "bert"}"#
    );
    let cache = hf_ok(&hub, &["org/set", "--repo-type", "dataset"], &env, "c4");
    let dc = hub.commit("org/set", "main");
    assert_eq!(
        std::fs::read(cache.join(format!("datasets--org--set/snapshots/{dc}/data/train.csv")))
            .unwrap(),
        b"a,b\n1,2\n"
    );
}

#[test]
fn real_hf_download_sees_the_emulators_errors() {
    let hub = Hub::start(vec![sample_repo().gated("hf_ok")]);
    let env = Env::new();
    let out = hf_download(&hub, &["org/model"], &env.path("c"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("requires approval"), "{err}");
    let out = hf_download(&hub, &["org/model", "--revision", "nope"], &env.path("c2"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope") || err.to_lowercase().contains("revision"),
        "{err}"
    );
}
