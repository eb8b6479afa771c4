//! Delta bundles, the pack side (format version 5): `pack --base` carries only what its bases
//! do not show the enclave holds; the rest is listed as external. Against the Hub emulator, a
//! real docker-registry, an Ollama-style registry front and local directories; the refusals of
//! a base; the sequence rule; a delta spread over volumes with parity.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use airlock::format::{Digest, Manifest};

use crate::hub_emulator::{Hub, RepoDef};
use crate::registry::{skopeo_push, write_blob, TestRegistry};
use crate::support::*;

const SHARD: usize = 200_000;

fn shard(seed: u64) -> Vec<u8> {
    pseudo_random(SHARD, seed)
}

fn manifest(env: &Env, dir: &str) -> Manifest {
    Manifest::parse(&env.read(&format!("{dir}/manifest.json"))).unwrap()
}

fn inspect(env: &Env, dir: &str) -> serde_json::Value {
    env.run(&["inspect", dir, "--trust", "k.pub", "--json"])
        .ok()
        .json()
}

fn external_digests(m: &Manifest) -> BTreeSet<Digest> {
    m.external_blobs().map(|b| b.digest).collect()
}

fn carried_digests(m: &Manifest) -> BTreeSet<Digest> {
    m.blobs
        .iter()
        .filter(|b| !b.is_external())
        .map(|b| b.digest)
        .collect()
}

fn pack_hf(env: &Env, hub: &Hub, src: &str, out: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "pack",
        src,
        "--out",
        out,
        "--key",
        "k",
        "--channel",
        "nightly",
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

#[test]
fn an_hf_revision_with_one_shard_changed_carries_about_one_shard_and_fetches_no_other() {
    let env = Env::new();
    env.keygen("k");
    // Revision 1: four LFS shards, a config and a file revision 2 removes.
    let mut repo = RepoDef::model("org/model")
        .file("config.json", br#"{"model_type": "llama"}"#.to_vec())
        .file("notes.txt", b"revision 1 only\n".to_vec());
    for i in 1..=4u64 {
        repo = repo.lfs(&format!("model-0000{i}-of-00004.safetensors"), shard(i));
    }
    let new_file = b"added in revision 2\n".to_vec();
    let repo = repo
        .tag("v1")
        .next_commit()
        .lfs("model-00003-of-00004.safetensors", shard(33))
        .file("added.txt", new_file.clone())
        .remove("notes.txt");
    let hub = Hub::start(vec![repo]);
    pack_hf(&env, &hub, "hf://org/model@v1", "b1", &[]).ok();
    let full = inspect(&env, "b1");
    assert_eq!(full["external_bytes"], 0);
    assert_eq!(full["bases"], serde_json::json!([]));
    assert_eq!(
        manifest(&env, "b1").version,
        3,
        "a full bundle stays version 3"
    );

    hub.clear_log();
    let r = pack_hf(
        &env,
        &hub,
        "hf://org/model",
        "b2",
        &["--base", "b1", "--trust", "k.pub"],
    );
    r.ok()
        .stdout_has("delta     carries")
        .stdout_has("CARRIED")
        .stdout_has("EXTERNAL");
    let m = manifest(&env, "b2");
    assert_eq!(m.version, 5);
    let b1 = manifest(&env, "b1");
    assert_eq!(m.bases.len(), 1);
    assert_eq!(m.bases[0].id, b1.bundle_id);
    assert_eq!(
        m.bases[0].manifest_digest,
        Digest::of(&env.read("b1/manifest.json"))
    );
    assert!(m.sequence > b1.sequence);
    // Carried: the changed shard and the added file, exactly; the rest is external.
    let j = inspect(&env, "b2");
    let carried = (SHARD + new_file.len()) as u64;
    let external = (3 * SHARD + br#"{"model_type": "llama"}"#.len()) as u64;
    assert_eq!(j["carried_bytes"], carried, "{j}");
    assert_eq!(j["external_bytes"], external, "{j}");
    assert_eq!(j["artifacts"][0]["carried_bytes"], carried);
    assert_eq!(j["artifacts"][0]["external_bytes"], external);
    assert_eq!(j["external"].as_array().unwrap().len(), 4);
    assert_eq!(j["bases"][0]["id"], b1.bundle_id.as_str());
    assert_eq!(j["bases"][0]["kind"], "bundle");
    // Carried bytes ≤ 1.05 × the changed bytes (the issue's target).
    assert!(m.carried_bytes() * 100 <= SHARD as u64 * 105 + new_file.len() as u64 * 100);
    // The unchanged shards' bodies were never requested.
    for i in [1u64, 2, 4] {
        let hex = Digest::of(&shard(i)).hex();
        let asked: Vec<_> = hub
            .requests()
            .into_iter()
            .filter(|r| r.target.contains(&hex) || r.target.contains(&format!("model-0000{i}")))
            .filter(|r| r.method == "GET")
            .collect();
        assert!(asked.is_empty(), "shard {i} was fetched: {asked:?}");
    }
    let changed = Digest::of(&shard(33)).hex();
    assert!(hub
        .cdn_requests()
        .iter()
        .any(|r| r.target.contains(&changed)));
    // Verify checks what it carries and names what it does not.
    env.run(&["verify", "b2", "--trust", "k.pub"])
        .ok()
        .stdout_has("4 external blobs (")
        .stdout_has("are not carried, so not checked here");
    let v = env
        .run(&["verify", "b2", "--trust", "k.pub", "--json"])
        .ok()
        .json();
    assert_eq!(v["external_bytes"], external);
    assert_eq!(v["carried_bytes"], carried);
}

/// An OCI layout of one image tagged `t`: the shared base layer, its own layer.
fn image_layout(root: &Path, own: u64) -> (Digest, Digest, Digest) {
    let layout = root.to_path_buf();
    fs::create_dir_all(&layout).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    let base = layer_tar(&[("usr/lib/base.bin", pseudo_random(300_000, 5))]);
    let top = layer_tar(&[("app/weights.bin", pseudo_random(50_000, own))]);
    let (bd, bs) = write_blob(&layout, &base);
    let (td, ts) = write_blob(&layout, &top);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{bd}","{td}"]}},"config":{{}}}}"#
    )
    .into_bytes();
    let (cd, cs) = write_blob(&layout, &config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{bd}","size":{bs}}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{td}","size":{ts}}}]}}"#
    )
    .into_bytes();
    let (md, ms) = write_blob(&layout, &manifest);
    fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#
        ),
    )
    .unwrap();
    (bd, td, cd)
}

#[test]
fn an_image_sharing_its_base_layer_carries_only_its_new_layer_config_and_manifest() {
    let env = Env::new();
    env.keygen("k");
    let reg = TestRegistry::start();
    let (base1, _top1, _) = image_layout(&env.path("l1"), 1);
    let (base2, top2, config2) = image_layout(&env.path("l2"), 2);
    assert_eq!(base1, base2);
    skopeo_push(&env.path("l1"), &format!("{}/app:1", reg.addr));
    skopeo_push(&env.path("l2"), &format!("{}/app:2", reg.addr));
    let src = |t: &str| format!("oci://{}/app:{t}", reg.addr);
    env.pack(&[&src("1")], "k", "b1", &["--channel", "img"])
        .ok();
    env.pack(
        &[&src("2")],
        "k",
        "b2",
        &["--channel", "img", "--base", "b1", "--trust", "k.pub"],
    )
    .ok();
    let m = manifest(&env, "b2");
    let ext = external_digests(&m);
    assert!(ext.contains(&base1), "the shared layer is external");
    let carried = carried_digests(&m);
    let top_manifest = m.artifacts[0].image.as_ref().unwrap().digest;
    for d in [top2, config2, top_manifest] {
        assert!(carried.contains(&d), "{d} is carried");
    }
    // Nothing else is external but what bundle 1 held (the layer, and the identical
    // `oci-layout` file).
    let b1: BTreeSet<Digest> = manifest(&env, "b1")
        .blobs
        .iter()
        .map(|b| b.digest)
        .collect();
    assert!(ext.is_subset(&b1));
    assert!(ext.len() <= 2, "{ext:?}");
    assert!(m.carried_bytes() < 100_000, "{}", m.carried_bytes());
    env.run(&["verify", "b2", "--trust", "k.pub"]).ok();
}

#[test]
fn an_ollama_tag_sharing_the_weights_carries_only_its_manifest_and_small_layers() {
    let s = crate::ollama::setup(false);
    let env = &s.env;
    let src = |t: &str| format!("ollama://{}/library/tiny:{t}", s.front.addr);
    env.pack(&[&src("v1")], "k", "b1", &["--channel", "ollama"])
        .ok();
    let seen = s.front.log.lock().unwrap().len();
    env.pack(
        &[&src("latest")],
        "k",
        "b2",
        &["--channel", "ollama", "--base", "b1", "--trust", "k.pub"],
    )
    .ok();
    let weights = s.tags[0].layers[0].digest();
    assert_eq!(
        weights,
        s.tags[1].layers[0].digest(),
        "the tags share the GGUF"
    );
    let m = manifest(env, "b2");
    assert!(external_digests(&m).contains(&weights));
    let gguf = s.tags[0].layers[0].bytes.len() as u64;
    assert!(m.carried_bytes() < 10_000, "{}", m.carried_bytes());
    assert!(m.external_bytes() >= gguf);
    let carried = carried_digests(&m);
    assert!(carried.contains(&s.tags[1].config.digest()));
    assert!(carried.contains(&Digest::of(&s.tags[1].manifest)));
    // The weights blob was not requested by the second pack.
    let log = s.front.log.lock().unwrap()[seen..].to_vec();
    assert!(
        !log.iter().any(|l| l.contains(&weights.to_string())),
        "{log:?}"
    );
    env.run(&["verify", "b2", "--trust", "k.pub"]).ok();
}

/// A directory `src` of three files; `b1` its full bundle on channel `d`.
fn dir_and_base(env: &Env) {
    env.keygen("k");
    env.write("src/a.bin", pseudo_random(300_000, 1));
    env.write("src/sub/b.bin", pseudo_random(200_000, 2));
    env.write("src/c.txt", b"unchanged\n");
    env.pack(
        &["src"],
        "k",
        "b1",
        &["--channel", "d", "--chunk-size", "64KiB"],
    )
    .ok();
}

fn delta(env: &Env, out: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "--channel",
        "d",
        "--chunk-size",
        "64KiB",
        "--base",
        "b1",
        "--trust",
        "k.pub",
    ];
    args.extend(extra);
    env.pack(&["src"], "k", out, &args)
}

#[test]
fn a_directory_with_one_changed_file_carries_only_that_file() {
    let env = Env::new();
    dir_and_base(&env);
    // Same size, other content: hashed before it is packed, and carried.
    env.write("src/sub/b.bin", pseudo_random(200_000, 3));
    delta(&env, "b2", &[]).ok();
    let m = manifest(&env, "b2");
    assert_eq!(m.version, 5);
    assert_eq!(m.carried_bytes(), 200_000);
    assert_eq!(m.external_bytes(), 300_000 + 10);
    assert_eq!(
        carried_digests(&m),
        BTreeSet::from([Digest::of(&pseudo_random(200_000, 3))])
    );
    assert_eq!(m.artifact_bytes(0), (200_000, 300_010));
    env.run(&["verify", "b2", "--trust", "k.pub"]).ok();
    // The base may be given as its manifest.json alone (with its signature beside it).
    fs::create_dir_all(env.path("just")).unwrap();
    for f in ["manifest.json", "manifest.json.minisig"] {
        fs::copy(env.path(&format!("b1/{f}")), env.path(&format!("just/{f}"))).unwrap();
    }
    env.pack(
        &["src"],
        "k",
        "b3",
        &[
            "--channel",
            "d",
            "--base",
            "just/manifest.json",
            "--trust",
            "k.pub",
        ],
    )
    .ok();
    assert_eq!(manifest(&env, "b3").carried_bytes(), 200_000);
    // A base from a spec file.
    env.write(
        "spec.toml",
        "channel = \"d\"\nbases = [\"b1\"]\n[[files]]\npath = \"src\"\n",
    );
    env.run(&[
        "pack",
        "--spec",
        "spec.toml",
        "--out",
        "b4",
        "--key",
        "k",
        "--trust",
        "k.pub",
    ])
    .ok();
    assert_eq!(manifest(&env, "b4").carried_bytes(), 200_000);
    // Nothing changed at all: everything external, the bundle carries no payload.
    env.pack(
        &["src"],
        "k",
        "b5",
        &["--channel", "d", "--base", "b4", "--trust", "k.pub"],
    )
    .ok();
    assert_eq!(manifest(&env, "b5").carried_bytes(), 0);
    env.run(&["verify", "b5", "--trust", "k.pub"]).ok();
}

#[test]
fn a_base_that_does_not_authenticate_or_belongs_elsewhere_is_refused_and_nothing_written() {
    let env = Env::new();
    dir_and_base(&env);
    env.keygen("other");
    // Signed by a key the pack does not trust.
    let r = env.pack(
        &["src"],
        "k",
        "out",
        &["--channel", "d", "--base", "b1", "--trust", "other.pub"],
    );
    r.code(3).stderr_has("b1").stderr_has("rejected");
    assert!(!env.path("out").exists());
    // Edited after it was signed.
    let text = String::from_utf8(env.read("b1/manifest.json")).unwrap();
    fs::write(
        env.path("b1/manifest.json"),
        text.replacen("\"channel\": \"d\"", "\"channel\": \"e\"", 1),
    )
    .unwrap();
    delta(&env, "out", &[])
        .code(3)
        .stderr_has("b1")
        .stderr_has("edited");
    assert!(!env.path("out").exists());
    fs::write(env.path("b1/manifest.json"), text).unwrap();
    // Not there: a usage error naming it.
    delta(&env, "out", &["--base", "nowhere"])
        .code(2)
        .stderr_has("nowhere");
    // Unreadable as a signed manifest: no signature beside it.
    fs::create_dir_all(env.path("unsigned")).unwrap();
    fs::copy(
        env.path("b1/manifest.json"),
        env.path("unsigned/manifest.json"),
    )
    .unwrap();
    delta(&env, "out", &["--base", "unsigned/manifest.json"])
        .code(3)
        .stderr_has("unsigned")
        .stderr_has("missing signature");
    assert!(!env.path("out").exists());
    // Of another channel.
    env.pack(&["src"], "k", "other-channel", &["--channel", "e"])
        .ok();
    env.pack(
        &["src"],
        "k",
        "out",
        &[
            "--channel",
            "d",
            "--base",
            "other-channel",
            "--trust",
            "k.pub",
        ],
    )
    .code(2)
    .stderr_has("of channel e, not of this pack's channel d");
    assert!(!env.path("out").exists());
    // No trust to check it against.
    env.pack(&["src"], "k", "out", &["--channel", "d", "--base", "b1"])
        .code(2)
        .stderr_has("--base needs the trust");
    // An explicit sequence not above the base's.
    let base_seq = manifest(&env, "b1").sequence.to_string();
    delta(&env, "out", &["--sequence", &base_seq])
        .code(2)
        .stderr_has("is not above the base's sequence");
    assert!(!env.path("out").exists());
}

#[test]
fn default_sequences_increase_in_the_same_second_and_stay_above_a_far_future_base() {
    let env = Env::new();
    env.keygen("k");
    env.write("src/a.txt", b"a\n");
    let mut last = 0;
    for i in 0..3 {
        let out = format!("s{i}");
        env.pack(&["src"], "k", &out, &["--channel", "c"]).ok();
        let s = manifest(&env, &out).sequence;
        assert!(s > last, "pack {i}: sequence {s} after {last}");
        last = s;
    }
    // A base far in the future: the delta's default sequence is above it, and so is the next
    // pack's of the channel.
    let future = 9_000_000_000u64;
    env.pack(
        &["src"],
        "k",
        "far",
        &["--channel", "c", "--sequence", &future.to_string()],
    )
    .ok();
    env.write("src/b.txt", b"b\n");
    env.pack(
        &["src"],
        "k",
        "d1",
        &["--channel", "c", "--base", "far", "--trust", "k.pub"],
    )
    .ok();
    assert_eq!(manifest(&env, "d1").sequence, future + 1);
    env.pack(&["src"], "k", "next", &["--channel", "c"]).ok();
    assert_eq!(manifest(&env, "next").sequence, future + 2);
}

#[test]
fn a_delta_over_volumes_with_parity_verifies() {
    let env = Env::new();
    dir_and_base(&env);
    env.write("src/sub/b.bin", pseudo_random(200_000, 4));
    env.write("src/new.bin", pseudo_random(150_000, 5));
    delta(&env, "out", &["--volume-size", "256KiB", "--parity", "1"]).ok();
    let m = manifest(&env, "out/vol-001");
    assert_eq!(m.version, 5);
    assert!(
        m.is_multi_volume() && m.volume_count() >= 3,
        "{}",
        m.volume_count()
    );
    assert_eq!(m.carried_bytes(), 350_000);
    env.run(&["verify", "out", "--trust", "k.pub"])
        .ok()
        .stdout_has("are not carried, so not checked here");
    let j = inspect(&env, "out");
    assert_eq!(j["external_bytes"], 300_010);
    // A later delta may take this one as its base, given as its volumes' OUT/.
    env.write("src/c.txt", b"changed\n");
    delta(&env, "d2", &["--base", "out"]).ok();
    let d2 = manifest(&env, "d2");
    assert_eq!(d2.bases.len(), 2);
    assert_eq!(d2.carried_bytes(), 8);
}
