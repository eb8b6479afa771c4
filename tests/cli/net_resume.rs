//! One HTTP transport (issue 13): every source kind — a URL, the Hub API and an LFS file, a
//! registry blob — survives a 503 with `Retry-After` and a connection dropped mid-body (the
//! pack completes, the bundle verifies with the upstream digests, stderr shows the retry and
//! the resume), and a server that keeps failing fails the pack with exit 1 naming the URL and
//! the number of tries, nothing left in OUT. Servers: [`support::flaky`] (files, or a proxy in
//! front of the real docker-registry) and the Hub emulator's faults.

use airlock::format::Digest;

use crate::registry::{build_layout, skopeo_push, TestRegistry};
use crate::support::flaky::{Fault, Flaky};
use crate::support::hub::{Hub, RepoDef};
use crate::support::*;

const LEN: usize = 3 * 1024 * 1024 + 17;

#[track_caller]
fn nothing_left(env: &Env, out: &str) {
    assert!(!env.path(out).exists(), "{out} is left behind");
}

#[test]
fn a_url_source_survives_a_503_and_a_dropped_connection() {
    let data = pseudo_random(LEN, 31);
    let digest = Digest::of(&data);
    let server = Flaky::files(&[("/files/model.bin", data.clone())]);
    server.fault("/files/model.bin", Fault::Unavailable(1), 1);
    server.fault("/files/model.bin", Fault::Cut(1_000_000), 1);
    let env = Env::new();
    env.keygen("k");
    let src = format!("{}/files/model.bin#sha256={}", server.url(), digest.hex());
    let run = env.pack(&[&src], "k", "b", &[]);
    run.ok()
        .stderr_has(&format!(
            "retrying {}/files/model.bin in 1.0 s (try 2 of 4)",
            server.url()
        ))
        .stderr_has("503")
        .stderr_has(&format!(
            "resuming {}/files/model.bin at byte 1000000 of {LEN}",
            server.url()
        ));
    let seen = server.requests();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    assert_eq!(seen[2].range.as_deref(), Some("bytes=1000000-"));
    let etag = format!("\"{}\"", digest.hex());
    assert_eq!(
        seen[2].if_range.as_deref(),
        Some(etag.as_str()),
        "{seen:#?}"
    );
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();
    env.run(&["import", "b", "--trust", "k.pub", "--files", "d"])
        .ok();
    assert_eq!(env.read("d/model.bin"), data);

    // Unpinned: resumed too, as the server's ETag shows the file unchanged.
    server.fault("/files/model.bin", Fault::Cut(2_000_000), 1);
    let src = format!("{}/files/model.bin", server.url());
    env.pack(&[&src], "k", "b2", &[])
        .ok()
        .stderr_has("at byte 2000000");
    let m = String::from_utf8(env.read("b2/manifest.json")).unwrap();
    assert!(m.contains(&digest.to_string()), "{m}");
}

#[test]
fn a_restart_from_zero_is_taken_only_when_it_cannot_mix_two_versions() {
    let data = pseudo_random(LEN, 35);
    let digest = Digest::of(&data);
    let server = Flaky::files(&[("/m.bin", data.clone())]);
    let env = Env::new();
    env.keygen("k");
    // Range ignored (200, same ETag): read again from the start, the first bytes skipped.
    server.fault("/m.bin", Fault::Cut(500_000), 1);
    server.fault("/m.bin", Fault::Whole, 1);
    let url = format!("{}/m.bin", server.url());
    env.pack(&[&url], "k", "b", &[])
        .ok()
        .stderr_has("at byte 500000");
    let m = String::from_utf8(env.read("b/manifest.json")).unwrap();
    assert!(m.contains(&digest.to_string()), "{m}");
    // The file changed under the download (200 with another ETag): refused, pinned or not.
    for src in [url.clone(), format!("{url}#sha256={}", digest.hex())] {
        server.fault("/m.bin", Fault::Cut(500_000), 1);
        server.fault("/m.bin", Fault::Changed, 1);
        env.pack(&[&src], "k", "c", &[])
            .code(1)
            .stderr_has(&url)
            .stderr_has("it changed during the download");
        nothing_left(&env, "c");
    }
}

#[test]
fn a_url_that_keeps_failing_fails_naming_the_url_and_the_tries() {
    let data = pseudo_random(200_000, 32);
    let server = Flaky::files(&[("/x.bin", data.clone()), ("/y.bin", data.clone())]);
    server.fault("/x.bin", Fault::Unavailable(0), 100);
    server.fault("/y.bin", Fault::Cut(0), 100);
    let env = Env::new();
    env.keygen("k");
    let url = format!("{}/x.bin", server.url());
    env.pack(&[&url], "k", "b", &[])
        .code(1)
        .stderr_has(&format!(
            "{url}: server answered 503 Service Unavailable (after 4 tries)"
        ));
    nothing_left(&env, "b");
    let url = format!("{}/y.bin", server.url());
    env.pack(&[&url], "k", "b", &[])
        .code(1)
        .stderr_has(&url)
        .stderr_has("broke off at byte 0 of 200000 (after 4 tries)");
    nothing_left(&env, "b");
}

fn hub_pack(env: &Env, hub: &Hub, out: &str) -> Run {
    let mut cmd = env.command(&["pack", "hf://org/model", "--out", out, "--key", "k"]);
    cmd.env("HF_ENDPOINT", hub.url())
        .env("HF_HOME", env.path("hf-home"))
        .env_remove("HF_TOKEN");
    run_cmd(cmd)
}

#[test]
fn the_hub_api_and_an_lfs_file_survive_faults() {
    let weights = pseudo_random(300_000, 33);
    let hub = Hub::start(vec![RepoDef::model("org/model")
        .file("config.json", br#"{"model_type": "bert"}"#.to_vec())
        .lfs("model.safetensors", weights.clone())]);
    hub.fault("/revision/", Fault::Unavailable(1), 1);
    hub.fault("/tree/", Fault::Cut(20), 1);
    hub.fault("/cdn/", Fault::Unavailable(1), 1);
    hub.truncate("model.safetensors", 70_000, 1);
    let env = Env::new();
    env.keygen("k");
    let run = hub_pack(&env, &hub, "b");
    run.ok()
        .stderr_has(
            "/api/models/org/model/revision/main in 1.0 s (try 2 of 4): server answered 503",
        )
        .stderr_has("/api/models/org/model/tree/")
        .stderr_has("at byte 70000 of 300000");
    let ranges: Vec<String> = hub
        .cdn_requests()
        .iter()
        .filter_map(|r| r.header("range").map(str::to_string))
        .collect();
    assert!(ranges.contains(&"bytes=70000-".to_string()), "{ranges:?}");
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();
    let m = String::from_utf8(env.read("b/manifest.json")).unwrap();
    assert!(m.contains(&Digest::of(&weights).to_string()), "{m}");
}

#[test]
fn a_hub_that_keeps_failing_fails_naming_the_url_and_the_tries() {
    let hub = Hub::start(vec![RepoDef::model("org/model")
        .file("config.json", b"{}".to_vec())
        .lfs("model.safetensors", pseudo_random(100_000, 34))]);
    hub.fault("/revision/", Fault::Unavailable(0), 100);
    let env = Env::new();
    env.keygen("k");
    hub_pack(&env, &hub, "b")
        .code(1)
        .stderr_has(&format!("{}/api/models/org/model/revision/main", hub.url()))
        .stderr_has("(after 4 tries)");
    nothing_left(&env, "b");
    // The LFS file keeps breaking off without progress.
    let hub = Hub::start(vec![RepoDef::model("org/model")
        .file("config.json", b"{}".to_vec())
        .lfs("model.safetensors", pseudo_random(100_000, 34))]);
    hub.truncate("model.safetensors", 0, 100);
    hub_pack(&env, &hub, "b")
        .code(1)
        .stderr_has("model.safetensors")
        .stderr_has("broke off at byte 0 of 100000 (after 4 tries)");
    nothing_left(&env, "b");
}

/// The layer of [`build_layout`]'s image.
fn layer(blobs: &[(Digest, Vec<u8>)]) -> Digest {
    blobs.iter().max_by_key(|(_, b)| b.len()).unwrap().0
}

#[test]
fn a_registry_blob_survives_faults() {
    let reg = TestRegistry::start();
    let env = Env::new();
    let (layout, _, blobs) = build_layout(env.dir.path());
    skopeo_push(&layout, &format!("{}/net/img:t", reg.addr));
    let layer = layer(&blobs);
    let proxy = Flaky::proxy(&reg.addr);
    proxy.fault("/manifests/", Fault::Unavailable(1), 1);
    proxy.fault(&format!("/blobs/{layer}"), Fault::Cut(100_000), 1);
    env.keygen("k");
    let src = format!("oci://{}/net/img:t", proxy.addr());
    env.pack(&[&src], "k", "b", &[])
        .ok()
        .stderr_has("/v2/net/img/manifests/t in 1.0 s (try 2 of 4): server answered 503")
        .stderr_has(&format!("/v2/net/img/blobs/{layer} at byte 100000"));
    let seen = proxy.requests();
    assert!(
        seen.iter().any(|s| s.target.contains(&layer.to_string())
            && s.range.as_deref() == Some("bytes=100000-")),
        "{seen:#?}"
    );
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();
    let m = String::from_utf8(env.read("b/manifest.json")).unwrap();
    for (d, _) in &blobs {
        assert!(m.contains(&d.to_string()), "{d} missing from {m}");
    }
}

#[test]
fn a_registry_that_keeps_dropping_a_blob_fails_naming_it_and_the_tries() {
    let reg = TestRegistry::start();
    let env = Env::new();
    let (layout, _, blobs) = build_layout(env.dir.path());
    skopeo_push(&layout, &format!("{}/net/img:t", reg.addr));
    let layer = layer(&blobs);
    let proxy = Flaky::proxy(&reg.addr);
    proxy.fault(&format!("/blobs/{layer}"), Fault::Cut(0), 100);
    env.keygen("k");
    let src = format!("oci://{}/net/img:t", proxy.addr());
    env.pack(&[&src], "k", "b", &[])
        .code(1)
        .stderr_has(&format!("{}/v2/net/img/blobs/{layer}", proxy.url()))
        .stderr_has("(after 4 tries)");
    nothing_left(&env, "b");
}
