//! The pack cache (`pack --cache`, default `$XDG_CACHE_HOME/airlock`, the workspace's own in
//! these tests): a second pack of unchanged sources makes no payload request to the local Hub
//! emulator, the docker-registry (through a counting front), a URL server or an Ollama-style
//! registry, and gives a bundle of the same blobs; a corrupted entry is detected, removed and
//! fetched again (one payload request) and the bundle verifies; `--cache-max` evicts the least
//! recently used; `--no-cache` downloads everything.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use airlock::bundle::{self, VerifyOptions};
use airlock::format::Digest;
use airlock::oci::client::{ConnectOptions, Registry};
use airlock::oci::image::LayoutBlobs;
use airlock::oci::model::{descriptor_of, DOCKER_MANIFEST};
use airlock::oci::push::{push_image, PushOptions};
use airlock::progress::Silent;
use airlock::sign::PublicKey;

use crate::hub_emulator::{Hub, RepoDef};
use crate::registry::{build_layout, skopeo_push, TestRegistry};
use crate::rejections::flip_byte;
use crate::support::proxy::CountingProxy;
use crate::support::*;

/// The blob digests of bundle `dir`, verified with `k.pub`.
fn blobs(env: &Env, dir: &str) -> BTreeSet<Digest> {
    env.run(&["verify", dir, "--trust", "k.pub"]).ok();
    let trust = PublicKey::load(env.path("k.pub").to_str().unwrap()).unwrap();
    let v = bundle::verify(
        &env.path(dir),
        &[trust],
        &VerifyOptions {
            now: std::time::SystemTime::now(),
        },
        &Silent,
    )
    .unwrap();
    v.manifest().blobs.iter().map(|b| b.digest).collect()
}

/// `pack SOURCE --out OUT --key k --json EXTRA…` with the Hub at `hub` (if any); its report.
fn pack(env: &Env, hub: Option<&Hub>, src: &str, out: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["pack", src, "--out", out, "--key", "k", "--json"];
    args.extend(extra);
    let mut cmd = env.command(&args);
    if let Some(h) = hub {
        cmd.env("HF_ENDPOINT", h.url())
            .env("HF_HOME", env.path("hf-home"))
            .env_remove("HF_TOKEN");
    }
    run_cmd(cmd).ok().json()
}

fn counts(report: &serde_json::Value) -> (u64, u64) {
    let c = &report["cache"];
    (
        c["from_cache_blobs"].as_u64().unwrap(),
        c["downloaded_blobs"].as_u64().unwrap(),
    )
}

fn entry(env: &Env, d: &Digest) -> std::path::PathBuf {
    env.cache_dir().join("blobs/sha256").join(d.hex())
}

/// Files whose bodies the Hub was asked for: `GET …/resolve/…` (answered by a redirect to
/// the CDN for an LFS file) and the CDN's `GET`, counted once per file.
fn hub_payload(hub: &Hub) -> usize {
    hub.requests()
        .iter()
        .filter(|r| r.method == "GET" && (r.origin == "cdn" || r.target.contains("/resolve/")))
        .map(|r| r.target.rsplit('/').next().unwrap().to_string())
        .collect::<BTreeSet<_>>()
        .len()
}

#[test]
fn an_unchanged_hf_repo_is_packed_again_without_downloading_and_a_corrupt_entry_is_fetched_again() {
    let env = Env::new();
    env.keygen("k");
    let shard = pseudo_random(300_000, 1);
    let config = br#"{"model_type":"tiny"}"#.to_vec();
    let hub = Hub::start(vec![RepoDef::model("acme/tiny")
        .file("config.json", config.clone())
        .file("tokenizer.json", "word\n".repeat(20_000).into_bytes())
        .lfs("model-1.safetensors", shard.clone())
        .lfs("model-2.safetensors", pseudo_random(200_000, 2))]);
    let src = "hf://acme/tiny";

    let first = pack(&env, Some(&hub), src, "b1", &[]);
    assert_eq!(counts(&first), (0, 4), "{first}");
    assert_eq!(
        first["cache"]["dir"].as_str().unwrap(),
        env.cache_dir().to_str().unwrap(),
        "the default cache is XDG_CACHE_HOME/airlock"
    );
    assert_eq!(hub_payload(&hub), 4);

    hub.clear_log();
    let second = pack(&env, Some(&hub), src, "b2", &[]);
    assert_eq!(hub_payload(&hub), 0, "{:?}", hub.requests());
    assert!(
        hub.requests().iter().any(|r| r.target.contains("/tree/")),
        "the listing is still fetched"
    );
    assert_eq!(counts(&second), (4, 0));
    assert_eq!(
        second["cache"]["from_cache_bytes"],
        600_000 + config.len() as u64
    );
    assert_eq!(blobs(&env, "b1"), blobs(&env, "b2"));
    // The same chunks, byte for byte (the regular files compressed as when staged).
    assert_eq!(env.read("b1/SHA256SUMS"), env.read("b2/SHA256SUMS"));

    // A flipped byte in an LFS entry: found while packed, removed, fetched again (once).
    let d = Digest::of(&shard);
    flip_byte(&entry(&env, &d), 1000);
    hub.clear_log();
    let run = {
        let mut cmd = env.command(&["pack", src, "--out", "b3", "--key", "k", "--json"]);
        cmd.env("HF_ENDPOINT", hub.url())
            .env("HF_HOME", env.path("hf-home"));
        run_cmd(cmd)
    };
    let third = run.ok().json();
    assert!(run.stderr.contains(&d.to_string()), "{}", run.stderr);
    assert_eq!(hub_payload(&hub), 1, "{:?}", hub.requests());
    assert_eq!(
        third["cache"]["refetched"],
        serde_json::json!([d.to_string()])
    );
    assert_eq!(counts(&third), (3, 1));
    assert_eq!(blobs(&env, "b3"), blobs(&env, "b1"));
    assert_eq!(
        fs::read(entry(&env, &d)).unwrap(),
        shard,
        "the entry is whole again"
    );

    // A flipped byte in a regular file's entry (known by its git SHA-1): the same.
    let cd = Digest::of(&config);
    flip_byte(&entry(&env, &cd), 3);
    hub.clear_log();
    let fourth = pack(&env, Some(&hub), src, "b4", &[]);
    assert_eq!(hub_payload(&hub), 1, "{:?}", hub.requests());
    assert_eq!(
        fourth["cache"]["refetched"],
        serde_json::json!([cd.to_string()])
    );
    assert_eq!(blobs(&env, "b4"), blobs(&env, "b1"));

    // --no-cache downloads every file again and reports no cache.
    hub.clear_log();
    let none = pack(&env, Some(&hub), src, "b5", &["--no-cache"]);
    assert!(none.get("cache").is_none());
    assert_eq!(hub_payload(&hub), 4);
}

#[test]
fn an_unchanged_image_is_packed_again_without_blob_requests() {
    require("skopeo");
    let env = Env::new();
    env.keygen("k");
    let reg = TestRegistry::start();
    let (layout, _, layout_blobs) = build_layout(env.dir.path());
    skopeo_push(&layout, &format!("{}/acme/img:t", reg.addr));
    let front = CountingProxy::start(&reg.addr);
    let src = format!("oci://{}/acme/img:t", front.addr);

    let first = pack(&env, None, &src, "b1", &[]);
    assert_eq!(front.blob_gets().len(), 2, "{:?}", front.requests());
    assert_eq!(counts(&first), (0, 2));

    front.clear();
    let second = pack(&env, None, &src, "b2", &[]);
    assert_eq!(front.blob_gets(), Vec::<String>::new());
    assert!(front.requests().iter().any(|l| l.contains("/manifests/")));
    assert_eq!(counts(&second), (2, 0));
    assert_eq!(blobs(&env, "b1"), blobs(&env, "b2"));

    // The layer's entry corrupted: one blob request, the bundle verifies.
    let (layer, _) = layout_blobs.iter().max_by_key(|(_, b)| b.len()).unwrap();
    flip_byte(&entry(&env, layer), 512);
    front.clear();
    let third = pack(&env, None, &src, "b3", &[]);
    assert_eq!(front.blob_gets().len(), 1, "{:?}", front.requests());
    assert!(front.blob_gets()[0].contains(&layer.to_string()));
    assert_eq!(
        third["cache"]["refetched"],
        serde_json::json!([layer.to_string()])
    );
    assert_eq!(blobs(&env, "b3"), blobs(&env, "b1"));

    front.clear();
    pack(&env, None, &src, "b4", &["--no-cache"]);
    assert_eq!(front.blob_gets().len(), 2);
}

/// An Ollama-style model (config + GGUF-like weights + template) pushed as `library/tiny:v1`.
fn push_ollama(reg: &TestRegistry, dir: &Path) -> Vec<(Digest, Vec<u8>)> {
    let blobs_dir = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs_dir).unwrap();
    let mut weights = b"GGUF".to_vec();
    weights.extend_from_slice(&pseudo_random(250_000, 9));
    let parts: Vec<(&str, Vec<u8>)> = vec![
        (
            "application/vnd.docker.container.image.v1+json",
            br#"{"model_format":"gguf","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec(),
        ),
        ("application/vnd.ollama.image.model", weights),
        (
            "application/vnd.ollama.image.template",
            b"{{ .Prompt }}".to_vec(),
        ),
    ];
    let desc = |(mt, b): &(&str, Vec<u8>)| {
        format!(
            r#"{{"mediaType":"{mt}","digest":"{}","size":{}}}"#,
            Digest::of(b),
            b.len()
        )
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{},"layers":[{}]}}"#,
        desc(&parts[0]),
        parts[1..].iter().map(desc).collect::<Vec<_>>().join(",")
    )
    .into_bytes();
    for (_, b) in &parts {
        fs::write(blobs_dir.join(Digest::of(b).hex()), b).unwrap();
    }
    fs::write(blobs_dir.join(Digest::of(&manifest).hex()), &manifest).unwrap();
    let client = Registry::new(&reg.addr, &ConnectOptions::default()).unwrap();
    push_image(
        &client,
        "library/tiny",
        Some("v1"),
        &descriptor_of(&manifest, DOCKER_MANIFEST),
        &LayoutBlobs(dir.to_path_buf()),
        &PushOptions::default(),
        &Silent,
    )
    .unwrap();
    parts
        .into_iter()
        .map(|(_, b)| (Digest::of(&b), b))
        .collect()
}

#[test]
fn an_unchanged_ollama_model_is_packed_again_without_blob_requests() {
    let env = Env::new();
    env.keygen("k");
    let reg = TestRegistry::start();
    let parts = push_ollama(&reg, &env.path("pushed"));
    let front = CountingProxy::start(&reg.addr);
    let src = format!("ollama://{}/library/tiny:v1", front.addr);

    let first = pack(&env, None, &src, "b1", &[]);
    assert_eq!(front.blob_gets().len(), 3, "{:?}", front.requests());
    assert_eq!(counts(&first), (0, 3));

    front.clear();
    let second = pack(&env, None, &src, "b2", &[]);
    assert_eq!(front.blob_gets(), Vec::<String>::new());
    assert_eq!(counts(&second), (3, 0));
    assert_eq!(blobs(&env, "b1"), blobs(&env, "b2"));

    let weights = parts[1].0;
    flip_byte(&entry(&env, &weights), 100_000);
    front.clear();
    pack(&env, None, &src, "b3", &[]);
    assert_eq!(front.blob_gets().len(), 1, "{:?}", front.requests());
    assert_eq!(blobs(&env, "b3"), blobs(&env, "b1"));
}

/// A server of `/f/N.bin` (N bytes of pseudo-random data, seeded by N) that counts its GETs.
fn serve_files() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let gets = Arc::new(AtomicUsize::new(0));
    let seen = gets.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let n: Option<usize> = path
                    .strip_prefix("/f/")
                    .and_then(|p| p.strip_suffix(".bin"))
                    .and_then(|n| n.parse().ok());
                let _ = match n {
                    Some(n) => {
                        let body = pseudo_random(n, n as u64);
                        write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
                        )
                        .and_then(|()| s.write_all(&body))
                    }
                    None => s.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            });
        }
    });
    (format!("http://{addr}"), gets)
}

fn url(base: &str, n: usize) -> (String, Digest) {
    let d = Digest::of(&pseudo_random(n, n as u64));
    (format!("{base}/f/{n}.bin#sha256={}", d.hex()), d)
}

#[test]
fn a_pinned_url_is_not_requested_again_and_a_corrupt_entry_is_fetched_again() {
    let env = Env::new();
    env.keygen("k");
    let (base, gets) = serve_files();
    let (src, d) = url(&base, 200_001);

    let first = pack(&env, None, &src, "b1", &[]);
    assert_eq!(gets.load(Ordering::SeqCst), 1);
    assert_eq!(counts(&first), (0, 1));
    let second = pack(&env, None, &src, "b2", &[]);
    assert_eq!(gets.load(Ordering::SeqCst), 1, "no request at all");
    assert_eq!(counts(&second), (1, 0));
    assert_eq!(blobs(&env, "b1"), blobs(&env, "b2"));
    // The officer sees the same identity either way.
    let ids = |dir: &str| {
        env.run(&["inspect", dir, "--json"]).ok().json()["manifest"]["artifacts"][0]["identity"]
            .clone()
    };
    assert_eq!(ids("b1"), ids("b2"));

    flip_byte(&entry(&env, &d), 7);
    let third = pack(&env, None, &src, "b3", &[]);
    assert_eq!(gets.load(Ordering::SeqCst), 2, "fetched once more");
    assert_eq!(
        third["cache"]["refetched"],
        serde_json::json!([d.to_string()])
    );
    assert_eq!(blobs(&env, "b3"), blobs(&env, "b1"));

    pack(&env, None, &src, "b4", &["--no-cache"]);
    assert_eq!(gets.load(Ordering::SeqCst), 3);
}

#[test]
fn cache_max_evicts_the_least_recently_used_but_never_what_the_pack_used() {
    let env = Env::new();
    env.keygen("k");
    let (base, _) = serve_files();
    let cache = env.path("ci-cache");
    let c = cache.to_str().unwrap();
    let (a, da) = url(&base, 100_000);
    let (b, db) = url(&base, 100_001);
    let (x, dx) = url(&base, 100_002);
    let at = |d: &Digest| cache.join("blobs/sha256").join(d.hex());
    pack(&env, None, &a, "pa", &["--cache", c]);
    pack(&env, None, &b, "pb", &["--cache", c]);
    // a is used again: now b is the least recently used.
    pack(&env, None, &a, "pa2", &["--cache", c]);
    let r = pack(
        &env,
        None,
        &x,
        "px",
        &["--cache", c, "--cache-max", "250KB"],
    );
    assert_eq!(r["cache"]["evicted_blobs"], 1, "{r}");
    assert_eq!(r["cache"]["evicted_bytes"], 100_001);
    assert_eq!(r["cache"]["held_bytes"], 200_002);
    assert!(!at(&db).exists() && at(&da).exists() && at(&dx).exists());
    // A bound of 0 keeps only what the pack used.
    let r = pack(&env, None, &a, "pa3", &["--cache", c, "--cache-max", "0"]);
    assert_eq!(r["cache"]["evicted_blobs"], 1);
    assert!(at(&da).exists() && !at(&dx).exists());
    // The text report says it in one line.
    let text = env
        .run(&["pack", &a, "--out", "pa4", "--key", "k", "--cache", c])
        .ok()
        .stdout
        .clone();
    assert!(
        text.contains("cache     1 blobs (") && text.contains("from the cache, 0 ("),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        fs::metadata(at(&da)).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_forged_record_for_an_hf_regular_file_is_caught_by_the_hubs_git_sha1() {
    let env = Env::new();
    env.keygen("k");
    let config = br#"{"model_type":"tiny","layers":2}"#.to_vec();
    let hub = Hub::start(vec![
        RepoDef::model("acme/tiny").file("config.json", config.clone())
    ]);
    pack(&env, Some(&hub), "hf://acme/tiny", "b1", &[]);
    // Someone with write access to the cache points the file's record at other bytes of the
    // same size, stored under their own (correct) SHA-256.
    let mut other = config.clone();
    other[20] = b'X';
    let od = Digest::of(&other);
    fs::write(entry(&env, &od), &other).unwrap();
    let key = airlock::cache::hf_key(
        &hub.url(),
        "acme/tiny",
        &airlock::hf::git_blob_sha1(&config),
        config.len() as u64,
    );
    let record = env
        .cache_dir()
        .join("keys")
        .join(Digest::of(key.as_bytes()).hex());
    assert!(record.is_file(), "the record is where the cache keeps it");
    fs::write(
        &record,
        format!(r#"{{"digest":"{od}","size":{}}}"#, other.len()),
    )
    .unwrap();
    hub.clear_log();
    let r = pack(&env, Some(&hub), "hf://acme/tiny", "b2", &[]);
    assert_eq!(
        r["cache"]["refetched"],
        serde_json::json!([od.to_string()]),
        "{r}"
    );
    assert_eq!(hub_payload(&hub), 1, "fetched from the Hub again");
    assert_eq!(blobs(&env, "b2"), blobs(&env, "b1"));
    assert!(blobs(&env, "b2").contains(&Digest::of(&config)));
}

#[test]
fn two_packs_sharing_one_cache_at_once_both_complete_and_leave_it_intact() {
    let env = Env::new();
    env.keygen("k");
    let (base, _) = serve_files();
    let srcs: Vec<(String, Digest)> = (0..4).map(|i| url(&base, 150_000 + i)).collect();
    let args = |out: &'static str| {
        let mut a = vec!["pack", "--out", out, "--key", "k", "--json"];
        a.extend(srcs.iter().map(|(s, _)| s.as_str()));
        env.command(&a)
    };
    let (mut one, mut two) = (args("c1"), args("c2"));
    let (h1, h2) = (
        one.stdout(std::process::Stdio::null()).spawn().unwrap(),
        two.stdout(std::process::Stdio::null()).spawn().unwrap(),
    );
    for mut h in [h1, h2] {
        assert!(h.wait().unwrap().success());
    }
    assert_eq!(blobs(&env, "c1"), blobs(&env, "c2"));
    for (_, d) in &srcs {
        let (digest, _) = airlock::fsutil::hash_file(&entry(&env, d)).unwrap();
        assert_eq!(&digest, d, "every entry holds its digest's bytes");
    }
    assert_eq!(
        fs::read_dir(env.cache_dir().join("tmp")).unwrap().count(),
        0
    );
    // And a third pack reads them all from the cache.
    let r = run_cmd(args("c3")).ok().json();
    assert_eq!(counts(&r), (4, 0));
}
