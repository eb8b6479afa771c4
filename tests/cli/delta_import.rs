//! Importing delta bundles (format version 5): where airlock records the blobs it imported
//! (`<state>/holdings.json`), the proof before anything is written that every external blob is
//! available to the target that needs it (in that store, or copied from a recorded place with
//! its digest re-checked), and the one missing-base error with the catch-up advice.

use std::fs;
use std::path::Path;

use airlock::format::Digest;
use serde_json::{json, Value};

use crate::hfcache::offline_check;
use crate::hub_emulator::{Hub, RepoDef};
use crate::support::tree::snapshot;
use crate::support::*;

/// `holdings.json` of the workspace's state (`Null` if absent).
fn holdings(env: &Env) -> Value {
    match fs::read(env.state_dir().join("holdings.json")) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => Value::Null,
    }
}

/// The locations recorded for `digest`: (store, root, path).
fn places(h: &Value, digest: &Digest) -> Vec<(String, String, String)> {
    h["blobs"][digest.to_string()]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        l["store"].as_str().unwrap().to_string(),
                        l["root"].as_str().unwrap().to_string(),
                        l["path"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn canon(p: &Path) -> String {
    fs::canonicalize(p).unwrap().to_str().unwrap().to_string()
}

#[test]
fn a_completed_import_records_where_each_blob_is() {
    let env = Env::new();
    let (b, _) = env.sample_bundle();
    // An old state directory (a previous release's: state.json, no holdings.json) keeps working.
    env.write("other", b"x");
    env.pack(&["other"], "k", "b0", &["--channel", "other"])
        .ok();
    env.run(&["import", "b0", "--trust", "k.pub", "--files", "d0"])
        .ok();
    fs::remove_file(env.state_dir().join("holdings.json")).unwrap();
    assert!(env.state_dir().join("state.json").exists());

    env.run(&[
        "import",
        b.to_str().unwrap(),
        "--trust",
        "k.pub",
        "--files",
        "dst",
    ])
    .ok();
    let h = holdings(&env);
    let m: Value = serde_json::from_slice(&env.read("b/manifest.json")).unwrap();
    let bundles = h["bundles"].as_array().unwrap();
    assert_eq!(bundles.len(), 1, "{h}");
    assert_eq!(bundles[0]["bundle_id"], m["bundle_id"]);
    let root = canon(&env.path("dst"));
    let weights = Digest::of(&pseudo_random(300_000, 1));
    assert_eq!(
        places(&h, &weights),
        [(
            "files".into(),
            root.clone(),
            "src/sub/deep/weights.bin".into()
        )]
    );
    // Two files of one content: both places recorded.
    let config = Digest::of(br#"{"model_type": "tiny"}"#);
    let mut p = places(&h, &config);
    p.sort();
    assert_eq!(
        p,
        [
            ("files".into(), root.clone(), "src/config.json".into()),
            ("files".into(), root, "src/sub/copy-of-config.json".into()),
        ]
    );
    // A re-import (everything kept) records the same places, once.
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dst"])
        .ok();
    assert_eq!(places(&holdings(&env), &weights).len(), 1);
}

#[test]
fn a_failed_import_records_nothing() {
    let env = Env::new();
    env.sample_bundle();
    env.write("dst/src/config.json", b"local edit");
    let tree = snapshot(&env.path("dst"));
    let before = fs::read(env.state_dir().join("holdings.json")).ok();
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dst"])
        .code(1)
        .stderr_has("already exists with other content");
    assert_eq!(fs::read(env.state_dir().join("holdings.json")).ok(), before);
    assert_eq!(snapshot(&env.path("dst")), tree);
}

/// Packs `src` into `out` on channel `nightly` (64 KiB chunks), a delta against `base` if given.
fn pack(env: &Env, src: &str, out: &str, base: Option<&str>) -> Value {
    let mut args = vec!["--channel", "nightly", "--chunk-size", "64KiB", "--json"];
    if let Some(b) = base {
        args.extend(["--base", b, "--trust", "k.pub"]);
    }
    env.pack(&[src], "k", out, &args).ok().json()
}

fn import(env: &Env, bundle: &str, target: &[&str]) -> Run {
    let mut args = vec!["import", bundle, "--trust", "k.pub"];
    args.extend_from_slice(target);
    env.run(&args)
}

/// `src/`: a large file, two small ones.
fn night(env: &Env, n: u8) {
    env.write("src/weights.bin", pseudo_random(300_000, 1));
    env.write("src/tokenizer.json", "{\"vocab\": [1, 2]}\n".repeat(2000));
    env.write("src/serving.yaml", format!("night: {n}\n"));
}

fn manifest(env: &Env, bundle: &str) -> Value {
    env.run(&["inspect", bundle, "--json"]).ok().json()["manifest"].clone()
}

fn external(env: &Env, bundle: &str) -> Vec<String> {
    manifest(env, bundle)["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["segments"].as_array().is_some_and(|s| s.is_empty()) && b["size"] != 0)
        .map(|b| b["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Everything of the workspace but its state directory (audit log, holdings) and the bundles.
fn visible(env: &Env) -> crate::support::tree::Snapshot {
    crate::support::tree::snapshot_except(
        env.dir.path(),
        &[STATE_DIR, "b1", "b2", "b3", "n4", "n5", "n6", "n6b", "n7"],
    )
}

#[test]
fn a_delta_into_a_new_files_destination_copies_the_unchanged_files_from_an_earlier_import() {
    let env = Env::new();
    env.keygen("k");
    night(&env, 1);
    pack(&env, "src", "b1", None);
    import(&env, "b1", &["--files", "d1"]).ok();
    night(&env, 2);
    let report = pack(&env, "src", "b2", Some("b1"));
    assert_eq!(manifest(&env, "b2")["version"], 5, "{report}");
    assert_eq!(external(&env, "b2").len(), 2, "{report}");
    import(&env, "b2", &["--files", "d2"]).ok();
    for f in ["weights.bin", "tokenizer.json", "serving.yaml"] {
        assert_eq!(
            env.read(&format!("d2/src/{f}")),
            env.read(&format!("src/{f}")),
            "{f}"
        );
    }
    // d1 untouched; the new places recorded beside the old ones.
    assert_eq!(env.read("d1/src/serving.yaml"), b"night: 1\n");
    let weights = Digest::of(&pseudo_random(300_000, 1));
    let mut p: Vec<String> = places(&holdings(&env), &weights)
        .into_iter()
        .map(|(_, root, _)| root)
        .collect();
    p.sort();
    assert_eq!(p, [canon(&env.path("d1")), canon(&env.path("d2"))]);
    // Into the same destination again: everything is in place, nothing is copied.
    let again = import(&env, "b2", &["--files", "d2", "--json"]).ok().json();
    assert_eq!(again["written"], 0, "{again}");
}

#[test]
fn a_delta_whose_base_this_enclave_lacks_is_refused_with_the_list_and_nothing_written() {
    let env = Env::new();
    env.keygen("k");
    night(&env, 1);
    pack(&env, "src", "b1", None);
    night(&env, 2);
    pack(&env, "src", "b2", Some("b1"));
    let m1 = manifest(&env, "b1");
    let before = visible(&env);
    let r = import(&env, "b2", &["--files", "d"]);
    r.code(3)
        .stderr_has("this delta bundle does not carry 2 blobs that this enclave does not hold")
        .stderr_has(&format!(
            "{} (300000 bytes, needed by src",
            Digest::of(&pseudo_random(300_000, 1))
        ))
        .stderr_has(&format!(
            "provided by base bundle {} (channel nightly, sequence {})",
            m1["bundle_id"].as_str().unwrap(),
            m1["sequence"]
        ))
        .stderr_has("a delta against a bundle this enclave imported")
        .stderr_has("or for a full bundle; nothing was written");
    assert_eq!(visible(&env), before);
    assert!(!env.state_dir().join("holdings.json").exists());
    // Audited as rejected, kind missing-base in --json.
    let log = String::from_utf8(env.read(&format!("{STATE_DIR}/audit.jsonl"))).unwrap();
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["outcome"], "rejected", "{last}");
    let j = import(&env, "b2", &["--files", "d", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&j.stdout).unwrap()["error"]["kind"],
        "missing-base",
        "{}",
        j.stdout
    );
    // A full bundle still applies (the channel is not wedged).
    night(&env, 3);
    pack(&env, "src", "b3", None);
    import(&env, "b3", &["--files", "d"]).ok();
}

#[test]
fn a_recorded_place_altered_on_disk_is_named_forgotten_and_treated_as_absent() {
    let env = Env::new();
    env.keygen("k");
    night(&env, 1);
    pack(&env, "src", "b1", None);
    import(&env, "b1", &["--files", "d1"]).ok();
    night(&env, 2);
    pack(&env, "src", "b2", Some("b1"));
    // Same size, other bytes: only hashing tells.
    let mut w = env.read("d1/src/weights.bin");
    w[1000] ^= 1;
    fs::write(env.path("d1/src/weights.bin"), &w).unwrap();
    let before = visible(&env);
    let r = import(&env, "b2", &["--files", "d2"]);
    r.code(3)
        .stderr_has("this delta bundle does not carry a blob")
        .stderr_has("d1/src/weights.bin (recorded for sha256:")
        .stderr_has("holds other bytes (SHA-256 sha256:")
        .stderr_has("not used, and forgotten");
    assert_eq!(visible(&env), before);
    // A failed import: the stores as they were; the holdings record no new bundle, only the
    // altered place forgotten.
    let weights = Digest::of(&pseudo_random(300_000, 1));
    let h = holdings(&env);
    assert!(places(&h, &weights).is_empty());
    assert_eq!(h["bundles"].as_array().unwrap().len(), 1);
    assert_eq!(places(&h, &Digest::of(b"night: 1\n")).len(), 1);
    // Another intact place is used instead of an altered one.
    fs::write(env.path("d1/src/weights.bin"), pseudo_random(300_000, 1)).unwrap();
    import(&env, "b1", &["--files", "d3"]).ok();
    import(&env, "b1", &["--files", "d1"]).ok();
    fs::write(env.path("d1/src/weights.bin"), &w).unwrap();
    let r = import(&env, "b2", &["--files", "d2"]);
    r.ok();
    assert!(r.stderr.contains("holds other bytes"), "{}", r.stderr);
    assert_eq!(env.read("d2/src/weights.bin"), pseudo_random(300_000, 1));
}

fn hf_pack(env: &Env, hub: &Hub, src: &str, out: &str, base: Option<&str>) -> Value {
    let mut args = vec![
        "pack",
        src,
        "--out",
        out,
        "--key",
        "k",
        "--channel",
        "hf",
        "--chunk-size",
        "64KiB",
        "--json",
    ];
    if let Some(b) = base {
        args.extend(["--base", b, "--trust", "k.pub"]);
    }
    let mut cmd = env.command(&args);
    cmd.env("HF_ENDPOINT", hub.url())
        .env("HF_HOME", env.path("hf-home"))
        .env_remove("HF_TOKEN");
    run_cmd(cmd).ok().json()
}

fn hf_import(env: &Env, bundle: &str, cache: &Path) -> Run {
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

fn shard(i: u64) -> Vec<u8> {
    pseudo_random(150_000, i)
}

fn shard_name(i: u64) -> String {
    format!("model-0000{i}-of-00004.safetensors")
}

const CONFIG: &[u8] = br#"{"architectures": ["LlamaForCausalLM"]}"#;
const TOKENIZER: &[u8] = br#"{"vocab": {"a": 0, "b": 1}}"#;

/// Revision 1 (tag `v1`): 4 LFS shards, a config and a README; revision 2 (`main`): shard 2
/// changed, a tokenizer added, the README removed.
fn llm() -> RepoDef {
    let mut r = RepoDef::model("acme/llm").file("config.json", CONFIG.to_vec());
    for i in 1..=4 {
        r = r.lfs(&shard_name(i), shard(i));
    }
    r.file("README.md", b"# llm\n".to_vec())
        .tag("v1")
        .next_commit()
        .lfs(&shard_name(2), shard(22))
        .file("tokenizer.json", TOKENIZER.to_vec())
        .remove("README.md")
}

fn hf_load(commit: &str, revision: &str, files: &[(String, Vec<u8>)]) -> Value {
    let files: serde_json::Map<String, Value> = files
        .iter()
        .map(|(p, d)| (p.clone(), json!(Digest::of(d).hex())))
        .collect();
    json!({"repo_id": "acme/llm", "repo_type": "model", "revision": revision,
           "commit": commit, "files": files})
}

#[test]
fn an_hf_delta_adds_revision_2_to_the_cache_beside_revision_1() {
    let hub = Hub::start(vec![llm()]);
    let env = Env::new();
    env.keygen("k");
    let (c1, c2) = (hub.commit("acme/llm", "v1"), hub.commit("acme/llm", "main"));
    hf_pack(&env, &hub, "hf://acme/llm@v1", "b1", None);
    let cache = env.path("cache");
    hf_import(&env, "b1", &cache).ok();
    let report = hf_pack(&env, &hub, "hf://acme/llm", "b2", Some("b1"));
    // The delta carries the changed shard and the new file, nothing else.
    assert_eq!(
        report["carried_bytes"],
        (shard(22).len() + TOKENIZER.len()) as u64,
        "{report}"
    );
    let r = hf_import(&env, "b2", &cache);
    r.ok();
    let blobs = r.json()["hf_cache"]["blobs"].clone();
    let written: Vec<&Value> = blobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["action"] == "write")
        .collect();
    assert_eq!(written.len(), 2, "{blobs}");
    let mut rev1: Vec<(String, Vec<u8>)> = (1..=4).map(|i| (shard_name(i), shard(i))).collect();
    rev1.push(("config.json".into(), CONFIG.to_vec()));
    rev1.push(("README.md".into(), b"# llm\n".to_vec()));
    let mut rev2: Vec<(String, Vec<u8>)> = [1, 22, 3, 4]
        .iter()
        .enumerate()
        .map(|(n, &i)| (shard_name(n as u64 + 1), shard(i)))
        .collect();
    rev2.push(("config.json".into(), CONFIG.to_vec()));
    rev2.push(("tokenizer.json".into(), TOKENIZER.to_vec()));
    offline_check(
        &env,
        &cache,
        vec![hf_load(&c2, "main", &rev2), hf_load(&c1, "v1", &rev1)],
        json!([{"repo_id": "acme/llm", "repo_type": "model",
                "revisions": {c1.clone(): ["v1"], c2.clone(): ["main"]}}]),
    );
    // Each blob recorded under its SHA-256, at blobs/<etag>: LFS by the SHA-256, the config by
    // its git blob SHA-1.
    let h = holdings(&env);
    let root = canon(&cache);
    let at = |d: &[u8]| places(&h, &Digest::of(d));
    assert_eq!(
        at(&shard(1)),
        [(
            "hf-cache".into(),
            root.clone(),
            format!("models--acme--llm/blobs/{}", Digest::of(&shard(1)).hex())
        )]
    );
    assert_eq!(
        at(CONFIG),
        [(
            "hf-cache".into(),
            root,
            format!(
                "models--acme--llm/blobs/{}",
                airlock::hf::git_blob_sha1(CONFIG)
            )
        )]
    );
}

/// Puts `data` in `layout`'s blobs; its descriptor's `"digest":…,"size":…` part.
fn put(layout: &Path, data: &[u8]) -> String {
    let d = Digest::of(data);
    let p = layout.join("blobs/sha256").join(d.hex());
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    format!(r#""digest":"{d}","size":{}"#, data.len())
}

fn gzip_like(seed: u64, len: usize) -> Vec<u8> {
    let mut v = b"\x1f\x8b\x08\x00".to_vec();
    v.extend(pseudo_random(len, seed));
    v
}

/// An OCI layout `app` with tags `1.0` (a base layer and an app layer) and `2.0` (the same base
/// layer, another app layer and config): the tops' bytes, and the layers of each.
/// An image: its top manifest's bytes and its layers' bytes.
type Image = (Vec<u8>, Vec<Vec<u8>>);

fn app_layout(root: &Path) -> (std::path::PathBuf, Vec<Image>) {
    let lay = root.join("app");
    fs::create_dir_all(&lay).unwrap();
    fs::write(
        lay.join("oci-layout"),
        br#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    let base = gzip_like(1, 200_000);
    let mut images = Vec::new();
    let mut refs = Vec::new();
    for (tag, seed) in [("1.0", 2), ("2.0", 3)] {
        let layers = vec![base.clone(), gzip_like(seed, 40_000)];
        let descs: Vec<String> = layers
            .iter()
            .map(|l| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",{}}}"#,
                    put(&lay, l)
                )
            })
            .collect();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"config":{{"Labels":{{"v":"{tag}"}}}}}}"#
        );
        let top = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json",{}}},"layers":[{}]}}"#,
            put(&lay, config.as_bytes()),
            descs.join(",")
        )
        .into_bytes();
        refs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json",{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}"#,
            put(&lay, &top)
        ));
        images.push((top, layers));
    }
    fs::write(
        lay.join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, refs.join(",")),
    )
    .unwrap();
    (lay, images)
}

/// skopeo's view of an image: its raw manifest and its layer digests.
fn skopeo_view(image: &str) -> (Vec<u8>, Vec<String>) {
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", image]);
    let v: Value =
        serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", image])).unwrap();
    let layers = v["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    (raw, layers)
}

#[test]
fn an_image_delta_sharing_base_layers_goes_into_registries_and_an_oci_layout() {
    require("skopeo");
    let env = Env::new();
    env.keygen("k");
    let (lay, images) = app_layout(env.dir.path());
    let src = |tag: &str| format!("oci-layout://{}:{tag}", lay.display());
    env.pack(&[&src("1.0")], "k", "b1", &["--channel", "img"])
        .ok();
    let report = env
        .pack(
            &[&src("2.0")],
            "k",
            "b2",
            &[
                "--channel",
                "img",
                "--base",
                "b1",
                "--trust",
                "k.pub",
                "--json",
            ],
        )
        .ok()
        .json();
    // Carried: the new manifest, config and app layer (and the layout's index); the base layer
    // (and the layout's `oci-layout` file) external.
    let (top2, layers2) = &images[1];
    let external: Vec<&str> = report["external"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert!(
        external.contains(&Digest::of(&layers2[0]).to_string().as_str()),
        "{report}"
    );
    assert!(
        report["carried_bytes"].as_u64().unwrap() < 42_000,
        "{report}"
    );
    let reg1 = crate::registry::TestRegistry::start();
    let reg2 = crate::registry::TestRegistry::start();
    let to = |r: &crate::registry::TestRegistry| format!("{}/mirror", r.addr);
    import(&env, "b1", &["--registry", &to(&reg1), "--oci-layout", "L"]).ok();

    // Into the registry that holds the base layer (HEAD): nothing but the new blobs pushed.
    let r = import(&env, "b2", &["--registry", &to(&reg1), "--json"]);
    let j = r.ok().json();
    let target = j["registry"]["images"][0]["target"].as_str().unwrap();
    let tagged = target.split('@').next().unwrap().to_string();
    assert_eq!(j["registry"]["pushed"][0]["blobs_uploaded"], 2, "{j}");
    let upstream: Vec<String> = layers2.iter().map(|l| Digest::of(l).to_string()).collect();
    assert_eq!(
        skopeo_view(&format!("docker://{tagged}")),
        (top2.clone(), upstream.clone())
    );
    // Into the OCI layout that holds it.
    import(&env, "b2", &["--oci-layout", "L"]).ok();
    let l = env.path("L").display().to_string();
    assert_eq!(
        skopeo_view(&format!("oci:{l}:app:2.0")),
        (top2.clone(), upstream.clone())
    );
    // Into a registry that lacks it: copied from the layout where airlock put it (re-checked),
    // then pushed.
    let j = import(&env, "b2", &["--registry", &to(&reg2), "--json"])
        .ok()
        .json();
    assert_eq!(j["registry"]["pushed"][0]["blobs_uploaded"], 3, "{j}");
    let tagged2 = tagged.replace(&reg1.addr, &reg2.addr);
    assert_eq!(
        skopeo_view(&format!("docker://{tagged2}")),
        (top2.clone(), upstream)
    );
    // A fresh enclave lacking the base: refused before any push.
    let reg3 = crate::registry::TestRegistry::start();
    fs::remove_file(env.state_dir().join("holdings.json")).unwrap();
    import(&env, "b2", &["--registry", &to(&reg3)])
        .code(3)
        .stderr_has(&format!("{} (200004 bytes", Digest::of(&layers2[0])));
    let tagged3 = tagged.replace(&reg1.addr, &reg3.addr);
    let out = run_cmd({
        let mut c = std::process::Command::new("skopeo");
        c.args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{tagged3}"),
        ]);
        c
    });
    assert_ne!(out.code, 0, "nothing was pushed");
}

/// Pushes an Ollama-style model (Docker manifest, compact JSON) `library/tiny:TAG` with
/// `layers` (media type, bytes) to `reg`; its manifest bytes.
fn push_ollama(
    reg: &crate::registry::TestRegistry,
    dir: &Path,
    tag: &str,
    layers: &[(&str, Vec<u8>)],
) -> Vec<u8> {
    use airlock::oci::client::{ConnectOptions, Registry};
    use airlock::oci::image::LayoutBlobs;
    use airlock::oci::model::{descriptor_of, DOCKER_MANIFEST};
    use airlock::oci::push::{push_image, PushOptions};
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let desc = |mt: &str, b: &[u8]| {
        fs::write(blobs.join(Digest::of(b).hex()), b).unwrap();
        format!(
            r#"{{"mediaType":"{mt}","digest":"{}","size":{}}}"#,
            Digest::of(b),
            b.len()
        )
    };
    let config = format!(
        r#"{{"model_format":"gguf","model_family":"llama","file_type":"{tag}","architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    );
    let layers: Vec<String> = layers.iter().map(|(mt, b)| desc(mt, b)).collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{},"layers":[{}]}}"#,
        desc(
            "application/vnd.docker.container.image.v1+json",
            config.as_bytes()
        ),
        layers.join(",")
    )
    .into_bytes();
    fs::write(blobs.join(Digest::of(&manifest).hex()), &manifest).unwrap();
    let client = Registry::new(&reg.addr, &ConnectOptions::default()).unwrap();
    push_image(
        &client,
        "library/tiny",
        Some(tag),
        &descriptor_of(&manifest, DOCKER_MANIFEST),
        &LayoutBlobs(dir.to_path_buf()),
        &PushOptions::default(),
        &airlock::progress::Silent,
    )
    .unwrap();
    manifest
}

#[test]
fn an_ollama_delta_of_a_new_tag_carries_only_its_manifest_and_small_layers() {
    let env = Env::new();
    env.keygen("k");
    let reg = crate::registry::TestRegistry::start();
    let mut gguf = b"GGUF".to_vec();
    gguf.extend(pseudo_random(300_000, 42));
    let weights = ("application/vnd.ollama.image.model", gguf.clone());
    let template = (
        "application/vnd.ollama.image.template",
        b"{{ .Prompt }}".to_vec(),
    );
    let params = |p: &str| ("application/vnd.ollama.image.params", p.as_bytes().to_vec());
    push_ollama(
        &reg,
        &env.path("up"),
        "v1",
        &[
            weights.clone(),
            template.clone(),
            params(r#"{"temperature":0.2}"#),
        ],
    );
    let m2 = push_ollama(
        &reg,
        &env.path("up"),
        "v2",
        &[weights, template, params(r#"{"num_ctx":2048}"#)],
    );
    let src = |t: &str| format!("ollama://{}/library/tiny:{t}", reg.addr);
    env.pack(&[&src("v1")], "k", "b1", &["--channel", "ollama"])
        .ok();
    import(&env, "b1", &["--ollama-models=store"]).ok();
    let report = env
        .pack(
            &[&src("v2")],
            "k",
            "b2",
            &[
                "--channel",
                "ollama",
                "--base",
                "b1",
                "--trust",
                "k.pub",
                "--json",
            ],
        )
        .ok()
        .json();
    assert!(
        report["carried_bytes"].as_u64().unwrap() < 2_000,
        "{report}"
    );
    assert_eq!(
        report["external_bytes"].as_u64().unwrap(),
        gguf.len() as u64 + 13 + 30, // the weights, the template, `oci-layout`
        "{report}"
    );
    let weights_blob = format!("blobs/sha256-{}", Digest::of(&gguf).hex());
    let before = fs::metadata(env.path("store").join(&weights_blob)).unwrap();
    import(&env, "b2", &["--ollama-models=store"]).ok();
    let host = reg.addr.clone();
    assert_eq!(
        env.read(&format!("store/manifests/{host}/library/tiny/v2")),
        m2
    );
    assert!(env
        .path(&format!("store/manifests/{host}/library/tiny/v1"))
        .is_file());
    // The weights were referenced where they were, not copied.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(env.path("store").join(&weights_blob))
            .unwrap()
            .ino(),
        before.ino()
    );
    // Into a new store: copied from the first (re-checked).
    import(&env, "b2", &["--ollama-models=store2"]).ok();
    assert_eq!(env.read(&format!("store2/{weights_blob}")), gguf);
    assert_eq!(
        env.read(&format!("store2/manifests/{host}/library/tiny/v2")),
        m2
    );
}

#[test]
fn a_lost_night_never_wedges_the_channel() {
    let env = Env::new();
    env.keygen("k");
    // Night 4: full, imported. Night 5: serving.yaml changed, a delta against night 4 — its
    // medium is lost. Night 6: the tokenizer changed, a delta against night 5.
    night(&env, 4);
    pack(&env, "src", "n4", None);
    import(&env, "n4", &["--files", "d4"]).ok();
    env.write("src/serving.yaml", "night: 5\n");
    let n5 = pack(&env, "src", "n5", Some("n4"));
    env.write("src/tokenizer.json", "{\"vocab\": [6]}\n");
    pack(&env, "src", "n6", Some("n5"));
    let before = visible(&env);
    import(&env, "n6", &["--files", "d6"])
        .code(3)
        .stderr_has("does not carry a blob that this enclave does not hold")
        .stderr_has(&format!(
            "{} (9 bytes, needed by src; provided by base bundle {} (channel nightly, sequence {}))",
            Digest::of(b"night: 5\n"),
            n5["bundle_id"].as_str().unwrap(),
            n5["sequence"]
        ))
        .stderr_has("ask the connected side for a delta against a bundle this enclave imported");
    assert_eq!(visible(&env), before);
    // The catch-up: night 6 again, against what the enclave holds (night 4): applies, its
    // sequence above the refused one's.
    pack(&env, "src", "n6b", Some("n4"));
    import(&env, "n6b", &["--files", "d6"]).ok();
    assert_eq!(env.read("d6/src/serving.yaml"), b"night: 5\n");
    // A delta against the lost night 5 whose blobs the enclave now holds anyway: accepted (each
    // blob checked against the signed digests), with a note that its base was never accepted.
    pack(&env, "src", "n7", Some("n5"));
    let r = import(&env, "n7", &["--files", "d7"]);
    r.ok().stderr_has(&format!(
        "base bundle {} (channel nightly, sequence {}) is not among the bundles this enclave recorded accepting",
        n5["bundle_id"].as_str().unwrap(),
        n5["sequence"]
    ));
    assert_eq!(env.read("d7/src/tokenizer.json"), b"{\"vocab\": [6]}\n");
}
