//! Hugging Face models end to end through the real binary: the Hub emulator (which the real
//! `hf download` accepts) → `airlock pack hf://…` → verify → `airlock import --hf-cache` → the
//! cache equals the one `hf download` makes from the same emulator, and the real
//! huggingface_hub loads every file from it offline.

use std::path::Path;

use serde_json::json;

use crate::hfcache::offline_check;
use crate::hub_emulator::{cache_listing, reference_cache, Hub, RepoDef};
use crate::support::*;

/// A repo with sub-folders, an LFS file larger than the 64 KiB chunks, regular files.
fn repo() -> RepoDef {
    RepoDef::model("acme/tiny-llm")
        .file(
            "config.json",
            br#"{"architectures": ["LlamaForCausalLM"]}"#.to_vec(),
        )
        .file(
            "tokenizer/tokenizer_config.json",
            br#"{"model_max_length": 512}"#.to_vec(),
        )
        .file(
            "tokenizer/special/added_tokens.json",
            br#"{"<eot>": 2}"#.to_vec(),
        )
        .lfs("model.safetensors", pseudo_random(300_000, 1))
        .lfs("onnx/model.onnx", pseudo_random(90_000, 2))
        .file("README.md", b"# tiny\n".to_vec())
}

fn pack(env: &Env, hub: &Hub, src: &str, out: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "pack",
        src,
        "--out",
        out,
        "--key",
        "k",
        "--chunk-size",
        "64KiB",
    ];
    args.extend(extra);
    let mut cmd = env.command(&args);
    cmd.env("HF_ENDPOINT", hub.url())
        .env("HF_HOME", env.path("hf-home"))
        .env_remove("HF_TOKEN");
    run_cmd(cmd)
}

fn import_hf(env: &Env, bundle: &str, cache: &Path) -> Run {
    let mut cmd = env.command(&[
        "import",
        bundle,
        "--trust",
        "k.pub",
        &format!("--hf-cache={}", cache.display()),
        "--json",
    ]);
    cmd.env_remove("HF_HUB_DISABLE_SYMLINKS");
    run_cmd(cmd)
}

/// The load spec of hf_offline_check.py for `files` of acme/tiny-llm at `commit`.
fn load(commit: &str, revision: &str, files: &[(&str, Vec<u8>)]) -> serde_json::Value {
    let files: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|(p, d)| (p.to_string(), json!(airlock::format::Digest::of(d).hex())))
        .collect();
    json!({"repo_id": "acme/tiny-llm", "repo_type": "model", "revision": revision,
           "commit": commit, "files": files})
}

fn all_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "config.json",
            br#"{"architectures": ["LlamaForCausalLM"]}"#.to_vec(),
        ),
        (
            "tokenizer/tokenizer_config.json",
            br#"{"model_max_length": 512}"#.to_vec(),
        ),
        (
            "tokenizer/special/added_tokens.json",
            br#"{"<eot>": 2}"#.to_vec(),
        ),
        ("model.safetensors", pseudo_random(300_000, 1)),
        ("onnx/model.onnx", pseudo_random(90_000, 2)),
        ("README.md", b"# tiny\n".to_vec()),
    ]
}

#[test]
fn an_hf_repo_round_trips_into_the_same_cache_hf_download_makes() {
    let hub = Hub::start(vec![repo()]);
    let commit = hub.commit("acme/tiny-llm", "main");
    let env = Env::new();
    env.keygen("k");
    pack(&env, &hub, "hf://acme/tiny-llm", "b", &[]).ok();
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();
    let m = env.run(&["inspect", "b", "--json"]).ok().json()["manifest"].clone();
    assert_eq!(m["artifacts"][0]["kind"], "hf-repo");
    assert_eq!(m["artifacts"][0]["hf"]["commit"], commit.as_str());
    let chunks = m["chunks"].as_array().unwrap().len();
    assert!(chunks > 4, "the LFS file spans chunks ({chunks})");

    let ours = env.path("cache");
    let report = import_hf(&env, "b", &ours).ok().json();
    assert!(report["hf_cache"]["blobs"].as_array().unwrap().len() == 6);
    let theirs = reference_cache(&hub, &["acme/tiny-llm"], &env.path("reference"));
    assert_eq!(cache_listing(&ours), cache_listing(&theirs));
    // Same refs bytes and tree listing bytes as the client writes.
    for rel in [
        "models--acme--tiny-llm/refs/main".to_string(),
        format!("models--acme--tiny-llm/trees/{commit}.json"),
    ] {
        assert_eq!(
            std::fs::read(ours.join(&rel)).unwrap(),
            std::fs::read(theirs.join(&rel)).unwrap(),
            "{rel}"
        );
    }
    offline_check(
        &env,
        &ours,
        vec![load(&commit, "main", &all_files())],
        json!([{"repo_id": "acme/tiny-llm", "repo_type": "model", "revisions": {commit.clone(): ["main"]}}]),
    );
    // Re-import writes nothing.
    let again = import_hf(&env, "b", &ours).ok().json();
    assert!(again["hf_cache"]["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["action"] == "keep"));
    assert_eq!(cache_listing(&ours), cache_listing(&theirs));
}

#[test]
fn a_filtered_pack_imports_a_partial_snapshot_without_a_tree_listing() {
    let hub = Hub::start(vec![repo()]);
    let commit = hub.commit("acme/tiny-llm", "main");
    let env = Env::new();
    env.keygen("k");
    pack(
        &env,
        &hub,
        "hf://acme/tiny-llm",
        "b",
        &["--include", "*.json", "--exclude", "tokenizer/special/*"],
    )
    .ok();
    let ours = env.path("cache");
    import_hf(&env, "b", &ours).ok();
    let theirs = reference_cache(
        &hub,
        &[
            "acme/tiny-llm",
            "--include",
            "*.json",
            "--exclude",
            "tokenizer/special/*",
        ],
        &env.path("reference"),
    );
    // hf download writes the full tree listing even for a filtered download; airlock never does
    // for a partial snapshot (offline snapshot_download() would then call it incomplete).
    let without_trees = |v: Vec<String>| -> Vec<String> {
        v.into_iter().filter(|l| !l.contains("/trees")).collect()
    };
    assert!(!cache_listing(&ours).iter().any(|l| l.contains("/trees")));
    assert_eq!(cache_listing(&ours), without_trees(cache_listing(&theirs)));
    let files: Vec<(&str, Vec<u8>)> = all_files()
        .into_iter()
        .filter(|(p, _)| p.ends_with(".json") && !p.starts_with("tokenizer/special/"))
        .collect();
    offline_check(
        &env,
        &ours,
        vec![load(&commit, "main", &files)],
        json!([{"repo_id": "acme/tiny-llm", "repo_type": "model", "revisions": {commit.clone(): ["main"]}}]),
    );
}

#[test]
fn a_newer_revision_merges_into_a_cache_holding_an_older_one() {
    // v1 is tagged; then main moves on with a changed config and a new file.
    let repo = repo()
        .tag("v1")
        .next_commit()
        .file(
            "config.json",
            br#"{"architectures": ["LlamaForCausalLM"], "v": 2}"#.to_vec(),
        )
        .file(
            "generation_config.json",
            br#"{"max_new_tokens": 64}"#.to_vec(),
        );
    let hub = Hub::start(vec![repo]);
    let (old, new) = (
        hub.commit("acme/tiny-llm", "v1"),
        hub.commit("acme/tiny-llm", "main"),
    );
    assert_ne!(old, new);
    let env = Env::new();
    env.keygen("k");
    // The enclave's cache already holds v1, as hf download made it.
    let cache = reference_cache(
        &hub,
        &["acme/tiny-llm", "--revision", "v1"],
        &env.path("cache"),
    );
    pack(&env, &hub, "hf://acme/tiny-llm", "b", &[]).ok();
    import_hf(&env, "b", &cache).ok();
    let mut new_files = all_files();
    new_files[0].1 = br#"{"architectures": ["LlamaForCausalLM"], "v": 2}"#.to_vec();
    new_files.push((
        "generation_config.json",
        br#"{"max_new_tokens": 64}"#.to_vec(),
    ));
    offline_check(
        &env,
        &cache,
        vec![
            load(&new, "main", &new_files),
            load(&old, "v1", &all_files()),
        ],
        json!([{"repo_id": "acme/tiny-llm", "repo_type": "model",
                "revisions": {old.clone(): ["v1"], new.clone(): ["main"]}}]),
    );
}
