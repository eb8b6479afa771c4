//! Container images end to end through the real binary: a source registry (Debian's
//! docker-registry) populated by skopeo from a deterministic OCI layout → `airlock pack oci://…`
//! → verify → import → the manifests skopeo reads back are byte-identical.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use airlock::format::Digest;

use crate::registry::TestRegistry;
use crate::support::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A deterministic OCI layout holding several images, with the digests of their top manifests.
pub struct ImageSet {
    pub layout: PathBuf,
    /// tag → top manifest bytes
    pub tops: Vec<(String, Vec<u8>)>,
    /// The layer shared by `single` and both platforms of `multi`.
    pub shared_layer: Digest,
}

fn blob(layout: &Path, data: &[u8]) -> String {
    let d = Digest::of(data);
    let p = layout.join("blobs/sha256").join(d.hex());
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    format!(r#""digest":"{d}","size":{}"#, data.len())
}

fn gzip_like(seed: u64, len: usize) -> Vec<u8> {
    // Layers in registries are gzip; random bytes behind a gzip magic stand in for one (nobody
    // decompresses them in these tests; the media type says gzip so airlock stores them raw).
    let mut v = b"\x1f\x8b\x08\x00".to_vec();
    v.extend(pseudo_random(len, seed));
    v
}

fn image_manifest(layout: &Path, arch: &str, layers: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (mt, data) in layers {
        layer_descs.push(format!(r#"{{"mediaType":"{mt}",{}}}"#, blob(layout, data)));
        diff_ids.push(format!("\"{}\"", Digest::of(data)));
    }
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{}}}}"#,
        diff_ids.join(",")
    );
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json",{}}},"layers":[{}]}}"#,
        blob(layout, config.as_bytes()),
        layer_descs.join(",")
    )
    .into_bytes()
}

/// Tags: `single` (one image), `multi` (index: linux/amd64 + linux/arm64/v8), `art` (an OCI 1.1
/// artifact: artifactType, empty config, a non-container layer). The shared layer appears in
/// `single` and both children of `multi`; `single` also has an uncompressed tar layer.
pub fn build_image_set(root: &Path) -> ImageSet {
    let layout = root.join("images");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
    let shared = gzip_like(1, 200_000);
    let shared_layer = Digest::of(&shared);
    let plain = layer_tar(&[("etc/app.conf", b"answer = 42\n".repeat(4000))]);
    let single = image_manifest(
        &layout,
        "amd64",
        &[
            (gz, shared.clone()),
            ("application/vnd.oci.image.layer.v1.tar", plain),
        ],
    );
    let amd = image_manifest(
        &layout,
        "amd64",
        &[(gz, shared.clone()), (gz, gzip_like(2, 50_000))],
    );
    let arm = image_manifest(
        &layout,
        "arm64",
        &[(gz, shared.clone()), (gz, gzip_like(3, 60_000))],
    );
    let multi = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}",{},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{OCI_MANIFEST}",{},"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
        blob(&layout, &amd),
        blob(&layout, &arm)
    )
    .into_bytes();
    let art = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sbom.v1","config":{{"mediaType":"application/vnd.oci.empty.v1+json",{}}},"layers":[{{"mediaType":"application/vnd.example.sbom.v1+json",{},"annotations":{{"org.opencontainers.image.title":"sbom.json"}}}}]}}"#,
        blob(&layout, b"{}"),
        blob(&layout, br#"{"packages":["airlock"]}"#)
    )
    .into_bytes();
    let tops = vec![
        ("single".to_string(), single),
        ("multi".to_string(), multi),
        ("art".to_string(), art),
    ];
    let descs: Vec<String> = tops
        .iter()
        .map(|(tag, bytes)| {
            let mt = if tag == "multi" { OCI_INDEX } else { OCI_MANIFEST };
            format!(
                r#"{{"mediaType":"{mt}",{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}"#,
                blob(&layout, bytes)
            )
        })
        .collect();
    fs::write(
        layout.join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, descs.join(",")),
    )
    .unwrap();
    ImageSet {
        layout,
        tops,
        shared_layer,
    }
}

/// Pushes every tag of the set to `registry/lib/<tag>:1` with skopeo (digests preserved).
pub fn populate(set: &ImageSet, registry: &str) {
    for (tag, _) in &set.tops {
        skopeo(&[
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", set.layout.display()),
            &format!("docker://{registry}/lib/{tag}:1"),
        ]);
    }
}

/// Like [`populate`], for a registry with TLS (its CA trusted) and/or credentials.
pub fn populate_secure(set: &ImageSet, reg: &TestRegistry, creds: Option<&str>) {
    for (tag, _) in &set.tops {
        let mut args = vec!["copy", "--quiet", "--all", "--preserve-digests"];
        let cert_dir = reg.cert_dir.as_ref().map(|d| d.display().to_string());
        match &cert_dir {
            Some(d) => args.extend(["--dest-cert-dir", d.as_str()]),
            None => args.push("--dest-tls-verify=false"),
        }
        if let Some(c) = creds {
            args.extend(["--dest-creds", c]);
        }
        let from = format!("oci:{}:{tag}", set.layout.display());
        let to = format!("docker://{}/lib/{tag}:1", reg.addr);
        args.extend([from.as_str(), to.as_str()]);
        skopeo(&args);
    }
}

/// A source registry holding the image set, and bundle `b` packed from all of it (key `k`).
fn packed_image_set(extra: &[&str]) -> (Env, TestRegistry, ImageSet) {
    let src = TestRegistry::start();
    let env = Env::new();
    env.keygen("k");
    let set = build_image_set(env.dir.path());
    populate(&set, &src.addr);
    let refs: Vec<String> = set
        .tops
        .iter()
        .map(|(t, _)| format!("oci://{}/lib/{t}:1", src.addr))
        .collect();
    let mut args: Vec<&str> = refs.iter().map(String::as_str).collect();
    args.extend(extra);
    env.pack(&[], "k", "b", &args).ok();
    (env, src, set)
}

#[test]
fn registry_images_pack_verify_and_import_as_oci_layouts() {
    let (env, src, set) = packed_image_set(&["--chunk-size", "128KiB"]);
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();

    // The manifest records each image, and the shared layer is stored once. (Format version 3
    // writes a compact table; read here through the library, in the v1/v2 field names.)
    let m =
        airlock::format::Manifest::parse(&fs::read(env.path("b/manifest.json")).unwrap()).unwrap();
    let m = serde_json::to_value(&m).unwrap();
    assert_eq!(m["version"], 3);
    let arts = m["artifacts"].as_array().unwrap();
    assert_eq!(arts.len(), 3);
    for ((tag, top), a) in set.tops.iter().zip(arts) {
        assert_eq!(a["kind"], "image");
        assert_eq!(a["image"]["reference"], format!("{}/lib/{tag}:1", src.addr));
        assert_eq!(a["image"]["digest"], Digest::of(top).to_string());
    }
    let shared = set.shared_layer.to_string();
    let blobs = m["blobs"].as_array().unwrap();
    assert_eq!(blobs.iter().filter(|b| b["digest"] == shared).count(), 1);
    let users = arts
        .iter()
        .filter(|a| {
            a["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["blob"] == shared)
        })
        .count();
    assert_eq!(users, 2, "single and multi both use the shared layer");

    // Imported as plain files, each image is an OCI layout skopeo reads byte-identically.
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"])
        .ok();
    for ((tag, top), a) in set.tops.iter().zip(arts) {
        let dir = env.path(&format!("dest/{}", a["name"].as_str().unwrap()));
        let reference = format!("{}/lib/{tag}:1", src.addr);
        let raw = skopeo(&[
            "inspect",
            "--raw",
            &format!("oci:{}:{reference}", dir.display()),
        ]);
        assert_eq!(&raw, top, "{tag}");
        skopeo(&[
            "copy",
            "--quiet",
            "--all",
            &format!("oci:{}:{reference}", dir.display()),
            &format!("oci:{}:{tag}", env.path("back").display()),
        ]);
    }

    // Into a second registry: the dry run shows the mapping and pushes nothing.
    let dst = TestRegistry::start();
    let target = format!("{}/mirror", dst.addr);
    let src_host = src.addr.replace(':', "-");
    env.run(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--registry",
        &target,
        "--dry-run",
    ])
    .ok()
    .stdout_has(&format!("-> {target}/{src_host}/lib/single:1@"));
    let dry = env
        .run(&[
            "import",
            "b",
            "--trust",
            "k.pub",
            "--registry",
            &target,
            "--dry-run",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(dry["registry"]["images"].as_array().unwrap().len(), 3);
    let out = run_cmd({
        let mut c = Command::new("skopeo");
        c.args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{target}/{src_host}/lib/single:1"),
        ]);
        c
    });
    assert_ne!(out.code, 0, "a dry run pushes nothing");

    // The real push: skopeo reads byte-identical manifests and pulls every image back.
    let run = env
        .run(&[
            "import",
            "b",
            "--trust",
            "k.pub",
            "--registry",
            &target,
            "--json",
        ])
        .ok()
        .json();
    let pushed = run["registry"]["pushed"].as_array().unwrap();
    assert_eq!(pushed.len(), 3);
    // The layer `single` uploaded is mounted, not uploaded again, for `multi`.
    assert!(
        pushed[1]["blobs_mounted"].as_u64().unwrap() >= 1,
        "{pushed:?}"
    );
    for (tag, top) in &set.tops {
        let r = format!("docker://{target}/{src_host}/lib/{tag}:1");
        assert_eq!(
            &skopeo(&["inspect", "--raw", "--tls-verify=false", &r]),
            top,
            "{tag}"
        );
        skopeo(&[
            "copy",
            "--quiet",
            "--all",
            "--src-tls-verify=false",
            &r,
            &format!("oci:{}:{tag}", env.path("pulled").display()),
        ]);
    }
    // Re-import: everything present, nothing uploaded; --strip-host maps without the source host.
    let again = env
        .run(&[
            "import",
            "b",
            "--trust",
            "k.pub",
            "--registry",
            &target,
            "--json",
        ])
        .ok()
        .json();
    for p in again["registry"]["pushed"].as_array().unwrap() {
        assert_eq!(p["blobs_uploaded"], 0);
        assert_eq!(p["manifests_pushed"], 0);
    }
    env.run(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--registry",
        &target,
        "--strip-host",
    ])
    .ok();
    assert_eq!(
        &skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{target}/lib/multi:1")
        ]),
        &set.tops[1].1
    );
}

fn top_of(m: &serde_json::Value, i: usize) -> String {
    m["artifacts"][i]["image"]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn platforms_select_children_of_an_index() {
    let src = TestRegistry::start();
    let env = Env::new();
    env.keygen("k");
    let set = build_image_set(env.dir.path());
    populate(&set, &src.addr);
    let multi = format!("oci://{}/lib/multi:1", src.addr);
    let index: serde_json::Value = serde_json::from_slice(&set.tops[1].1).unwrap();
    let child = |i: usize| {
        index["manifests"][i]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // One platform: the image becomes that child manifest, digest as upstream.
    env.pack(
        &[&multi],
        "k",
        "one",
        &["--platform", "linux/amd64", "--json"],
    )
    .ok();
    let m = env.run(&["inspect", "one", "--json"]).ok().json()["manifest"].clone();
    assert_eq!(top_of(&m, 0), child(0));
    assert_eq!(m["artifacts"][0]["image"]["platforms"][0], "linux/amd64");

    // Two platforms given, both match: a new index over them (all children kept).
    env.pack(
        &[&multi],
        "k",
        "two",
        &["--platform", "linux/amd64", "--platform", "linux/arm64"],
    )
    .ok();
    let m = env.run(&["inspect", "two", "--json"]).ok().json()["manifest"].clone();
    assert_ne!(top_of(&m, 0), Digest::of(&set.tops[1].1).to_string());
    assert_eq!(
        m["artifacts"][0]["image"]["platforms"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Default: the whole index, byte for byte.
    env.pack(&[&multi], "k", "all", &[]).ok();
    let m = env.run(&["inspect", "all", "--json"]).ok().json()["manifest"].clone();
    assert_eq!(top_of(&m, 0), Digest::of(&set.tops[1].1).to_string());

    // A platform the index lacks: a usage error naming what it has; no bundle left behind.
    env.pack(&[&multi], "k", "none", &["--platform", "linux/s390x"])
        .code(2)
        .stderr_has("no manifest for platform linux/s390x")
        .stderr_has("linux/amd64, linux/arm64/v8");
    assert!(!env.path("none").exists());
    env.pack(
        &[&multi],
        "k",
        "bad",
        &["--platform", "linux/amd64", "--all-platforms"],
    )
    .code(2);
}

/// An in-process registry that serves `manifest` for any manifest request and `blob_bytes`
/// for any blob request (whatever digest was asked for).
fn lying_registry(manifest: Vec<u8>, blob_bytes: Vec<u8>) -> String {
    fake_registry_on("127.0.0.1", manifest, blob_bytes)
}

/// Like [`lying_registry`], listening on `ip`.
fn fake_registry_on(ip: &str, manifest: Vec<u8>, blob_bytes: Vec<u8>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(32) {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue; // a TLS probe
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let (ct, body) = if line.contains("/manifests/") {
                (
                    format!(
                        "Content-Type: {OCI_MANIFEST}\r\nDocker-Content-Digest: {}\r\n",
                        Digest::of(&manifest)
                    ),
                    manifest.clone(),
                )
            } else if line.contains("/blobs/") {
                (String::new(), blob_bytes.clone())
            } else {
                (String::new(), b"{}".to_vec())
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\n{ct}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    addr
}

#[test]
fn a_blob_that_does_not_match_its_digest_fails_the_pack_and_leaves_nothing() {
    let env = Env::new();
    env.keygen("k");
    let good = pseudo_random(10_000, 5);
    let config = b"{}".to_vec();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":10000}}]}}"#,
        Digest::of(&config),
        Digest::of(&good)
    )
    .into_bytes();
    // Every blob request gets 10000 other bytes: the config (2 bytes declared) is too long.
    // Reads stop at the declared size, whose bytes then do not hash to the digest.
    let evil = pseudo_random(10_000, 6);
    let addr = lying_registry(manifest, evil.clone());
    env.pack(&[&format!("oci://{addr}/x/y:t")], "k", "b", &[])
        .code(3)
        .stderr_has("digest mismatch")
        .stderr_has(&format!("expected {}", Digest::of(&config)));
    assert!(!env.path("b").exists(), "a failed pack leaves no bundle");
}

#[test]
fn a_manifest_that_does_not_match_its_digest_fails_the_pack() {
    let env = Env::new();
    env.keygen("k");
    let addr = lying_registry(b"{}".to_vec(), Vec::new());
    // Pinned by digest: the served manifest hashes to something else.
    let pin = Digest::of(b"the manifest that was published");
    env.pack(&[&format!("oci://{addr}/x/y@{pin}")], "k", "b", &[])
        .code(3)
        .stderr_has(&pin.to_string());
    assert!(!env.path("b").exists());
}

#[test]
fn a_layer_with_wrong_bytes_of_the_right_size_fails_naming_both_digests() {
    let env = Env::new();
    env.keygen("k");
    let good = pseudo_random(10_000, 5);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/x-test","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":10000}},"layers":[]}}"#,
        Digest::of(&good)
    )
    .into_bytes();
    let evil = pseudo_random(10_000, 6);
    let addr = lying_registry(manifest, evil.clone());
    env.pack(&[&format!("oci://{addr}/x/y:t")], "k", "b", &[])
        .code(3)
        .stderr_has("digest mismatch")
        .stderr_has(&Digest::of(&good).to_string())
        .stderr_has(&Digest::of(&evil).to_string());
    assert!(!env.path("b").exists());
}

#[test]
fn pack_from_a_token_auth_registry_over_tls_with_creds_from_docker_config_or_flag() {
    use crate::registry::{RegistryOpts, TOKEN_PASS, TOKEN_USER};
    let reg = TestRegistry::start_opts(RegistryOpts {
        tls: true,
        token: true,
        ..Default::default()
    });
    let env = Env::new();
    env.keygen("k");
    let set = build_image_set(env.dir.path());
    let creds = format!("{TOKEN_USER}:{TOKEN_PASS}");
    populate_secure(&set, &reg, Some(&creds));
    let ca = reg.ca_cert.clone().unwrap();
    let ca = ca.to_str().unwrap();
    let src = format!("oci://{}/lib/single:1", reg.addr);

    // Credentials from a docker config file ($DOCKER_CONFIG), TLS via --ca-cert.
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(&creds);
    env.write(
        "docker/config.json",
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr),
    );
    let mut cmd = env.command(&["pack", &src, "--out", "b1", "--key", "k", "--ca-cert", ca]);
    cmd.env("DOCKER_CONFIG", env.path("docker"))
        .env("REGISTRY_AUTH_FILE", env.path("none.json"));
    run_cmd(cmd).ok();
    env.run(&["verify", "b1", "--trust", "k.pub"]).ok();

    // Explicit --creds.
    let mut cmd = env.command(&[
        "pack",
        &src,
        "--out",
        "b2",
        "--key",
        "k",
        "--ca-cert",
        ca,
        "--creds",
        &creds,
    ]);
    cmd.env("DOCKER_CONFIG", env.path("empty"));
    run_cmd(cmd).ok();

    // Wrong credentials: refused by the token server, the password never printed.
    let mut cmd = env.command(&[
        "pack",
        &src,
        "--out",
        "b3",
        "--key",
        "k",
        "--ca-cert",
        ca,
        "--creds",
        "tokenuser:wrong-secret",
    ]);
    cmd.env("DOCKER_CONFIG", env.path("empty"));
    let run = run_cmd(cmd);
    run.code(1);
    assert!(!run.stderr.contains("wrong-secret"), "{}", run.stderr);
    assert!(!env.path("b3").exists());

    // No CA: the TLS failure is an error, never a silent fall back.
    let mut cmd = env.command(&["pack", &src, "--out", "b4", "--key", "k", "--creds", &creds]);
    cmd.env("DOCKER_CONFIG", env.path("empty"));
    run_cmd(cmd).code(1).stderr_has("certificate");
    assert!(!env.path("b4").exists());
}

#[test]
fn oci_layout_and_docker_archive_sources_round_trip_into_an_oci_layout() {
    let env = Env::new();
    env.keygen("k");
    let set = build_image_set(env.dir.path());
    // A `docker save`-style archive, as skopeo writes it (a real tar layer: skopeo unpacks it).
    let archive = env.path("app.tar");
    let (plain, _, _) = crate::registry::build_layout(&env.path("plain"));
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}:t", plain.display()),
        &format!("docker-archive:{}:example.com/app:1.0", archive.display()),
    ]);
    let layout = set.layout.display().to_string();
    env.pack(
        &[
            &format!("oci-layout://{layout}:multi"),
            &format!("oci-layout://{layout}:art"),
            &format!("docker-archive://{}", archive.display()),
        ],
        "k",
        "b",
        &[],
    )
    .ok();
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();
    let run = env
        .run(&[
            "import",
            "b",
            "--trust",
            "k.pub",
            "--oci-layout",
            "L",
            "--json",
        ])
        .ok()
        .json();
    assert!(run["oci_layout"]["blobs"].as_array().unwrap().len() >= 6);
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(env.path("b/manifest.json")).unwrap()).unwrap();
    let refs: Vec<String> = m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["image"]["reference"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refs[2], "example.com/app:1.0");
    let l = env.path("L").display().to_string();
    // Layout images: byte-identical manifests; the archive's synthesised manifest is readable.
    for tag in ["multi", "art"] {
        let raw = skopeo(&["inspect", "--raw", &format!("oci:{l}:images:{tag}")]);
        let top = &set.tops.iter().find(|(t, _)| t == tag).unwrap().1;
        assert_eq!(&raw, top, "{tag}");
    }
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{l}:{}", refs[2]),
        &format!("oci:{}:x", env.path("back").display()),
    ]);
    // Re-import: nothing to write.
    let again = env
        .run(&[
            "import",
            "b",
            "--trust",
            "k.pub",
            "--oci-layout",
            "L",
            "--json",
        ])
        .ok()
        .json();
    assert!(again["oci_layout"]["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["action"] == "keep"));
}

#[test]
fn an_import_into_a_registry_that_dies_midway_leaves_no_dangling_tag_and_a_rerun_completes() {
    use std::sync::atomic::Ordering;
    let (env, src, set) = packed_image_set(&[]);
    let src_host = src.addr.replace(':', "-");

    // How many bytes a whole import sends.
    let probe = TestRegistry::start();
    let p = crate::push::proxy(&probe.addr);
    env.run(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--registry",
        &format!("{}/m", p.addr),
    ])
    .ok();
    let total = p.sent_up.load(Ordering::SeqCst) as i64;

    for fraction in [0.05, 0.3, 0.6, 0.95] {
        let dst = TestRegistry::start();
        let p = crate::push::proxy(&dst.addr);
        p.up.store((total as f64 * fraction) as i64, Ordering::SeqCst);
        let run = env.run(&[
            "import",
            "b",
            "--trust",
            "k.pub",
            "--registry",
            &format!("{}/m", p.addr),
        ]);
        run.code(1).stderr_has(&p.addr);
        // Every tag is absent, or complete: skopeo reads the manifest and pulls every blob.
        for (tag, top) in &set.tops {
            let r = format!("docker://{}/m/{src_host}/lib/{tag}:1", dst.addr);
            let raw = Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false", &r])
                .output()
                .unwrap();
            if raw.status.success() {
                assert_eq!(&raw.stdout, top, "{tag} after a cut at {fraction}");
                skopeo(&[
                    "copy",
                    "--quiet",
                    "--all",
                    "--src-tls-verify=false",
                    &r,
                    &format!(
                        "oci:{}:{tag}",
                        env.path(&format!("cut-{fraction}")).display()
                    ),
                ]);
            }
        }
        // Re-run against the registry itself: completes, every image byte-identical.
        env.run(&[
            "import",
            "b",
            "--trust",
            "k.pub",
            "--registry",
            &format!("{}/m", dst.addr),
        ])
        .ok();
        for (tag, top) in &set.tops {
            let r = format!("docker://{}/m/{src_host}/lib/{tag}:1", dst.addr);
            assert_eq!(
                &skopeo(&["inspect", "--raw", "--tls-verify=false", &r]),
                top
            );
        }
    }
}

/// This machine's first non-loopback IPv4 address, if it has one.
fn outside_ip() -> Option<String> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_string)
}

#[test]
fn plain_http_only_for_insecure_registries_and_loopback() {
    let env = Env::new();
    env.keygen("k");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/x-test","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[]}}"#,
        Digest::of(b"{}")
    )
    .into_bytes();
    // Loopback: plain HTTP is allowed (after HTTPS was tried).
    let local = fake_registry_on("127.0.0.1", manifest.clone(), b"{}".to_vec());
    env.pack(&[&format!("oci://{local}/x/y:t")], "k", "b1", &[])
        .ok();
    // Another address speaking plain HTTP: refused unless named with --insecure-registry.
    let ip = outside_ip().expect("this test needs a non-loopback IPv4 address (hostname -I)");
    let remote = fake_registry_on(&ip, manifest, b"{}".to_vec());
    let src = format!("oci://{remote}/x/y:t");
    env.pack(&[&src], "k", "b2", &[]).code(1);
    assert!(!env.path("b2").exists());
    env.pack(&[&src], "k", "b3", &["--insecure-registry", &remote])
        .ok();
}

#[test]
fn spec_images_and_a_push_with_bearer_auth_over_tls() {
    use crate::registry::{RegistryOpts, TOKEN_PASS, TOKEN_USER};
    let env = Env::new();
    env.keygen("k");
    let set = build_image_set(env.dir.path());
    env.write(
        "spec.toml",
        "[[images]]\nref = \"oci-layout://images:multi\"\nplatforms = [\"linux/arm64\"]\nname = \"multi-arm\"\n\n[[images]]\nref = \"oci-layout://images:art\"\n",
    );
    env.run(&["pack", "--spec", "spec.toml", "--out", "b", "--key", "k"])
        .ok();
    let m = env.run(&["inspect", "b", "--json"]).ok().json()["manifest"].clone();
    assert_eq!(m["artifacts"][0]["name"], "multi-arm");
    let index: serde_json::Value = serde_json::from_slice(&set.tops[1].1).unwrap();
    assert_eq!(
        m["artifacts"][0]["image"]["digest"],
        index["manifests"][1]["digest"]
    );

    // The target registry wants Bearer tokens and speaks TLS with its own CA.
    let dst = TestRegistry::start_opts(RegistryOpts {
        tls: true,
        token: true,
        ..Default::default()
    });
    let ca = dst.ca_cert.clone().unwrap();
    let creds = format!("{TOKEN_USER}:{TOKEN_PASS}");
    let base = [
        "import",
        "b",
        "--trust",
        "k.pub",
        "--registry",
        &dst.addr,
        "--ca-cert",
        ca.to_str().unwrap(),
    ];
    let mut no_creds = env.command(&base);
    no_creds
        .env("DOCKER_CONFIG", env.path("empty"))
        .env("REGISTRY_AUTH_FILE", env.path("none"));
    run_cmd(no_creds)
        .code(1)
        .stderr_has("authentication required");
    let mut with = env.command(&[&base[..], &["--creds", &creds]].concat());
    with.env("DOCKER_CONFIG", env.path("empty"));
    run_cmd(with).ok();
    let cert_dir = dst.cert_dir.clone().unwrap();
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--creds",
        &creds,
        "--cert-dir",
        cert_dir.to_str().unwrap(),
        &format!("docker://{}/images:art", dst.addr),
    ]);
    assert_eq!(out, set.tops[2].1);
}

#[test]
fn a_broken_auth_file_does_not_stop_anonymous_pulls_but_is_named_when_creds_are_needed() {
    let env = Env::new();
    env.keygen("k");
    env.write("docker/config.json", "{ not json");
    let set = build_image_set(env.dir.path());
    let open = TestRegistry::start();
    populate(&set, &open.addr);
    let mut cmd = env.command(&[
        "pack",
        &format!("oci://{}/lib/art:1", open.addr),
        "--out",
        "b1",
        "--key",
        "k",
    ]);
    cmd.env("DOCKER_CONFIG", env.path("docker"))
        .env("REGISTRY_AUTH_FILE", env.path("none"));
    run_cmd(cmd).ok();

    let locked = TestRegistry::start_with(Some(crate::registry::HTPASSWD));
    let mut cmd = env.command(&[
        "pack",
        &format!("oci://{}/lib/art:1", locked.addr),
        "--out",
        "b2",
        "--key",
        "k",
    ]);
    cmd.env("DOCKER_CONFIG", env.path("docker"))
        .env("REGISTRY_AUTH_FILE", env.path("none"));
    run_cmd(cmd)
        .code(1)
        .stderr_has("authentication required")
        .stderr_has(&env.path("docker/config.json").display().to_string());
}

#[test]
fn an_image_missing_a_blob_in_a_signed_bundle_is_refused_before_any_push() {
    use airlock::bundle::{self, OutDir, PackOptions};
    use airlock::oci::image::CollectedImage;
    use airlock::oci::model::descriptor_of;
    use airlock::progress::Silent;
    use airlock::sign::SigningKey;
    // A correctly signed bundle whose image lists only its manifest: config and layer absent.
    let env = Env::new();
    env.keygen("k");
    let set = build_image_set(env.dir.path());
    let single = set.tops[0].1.clone();
    let top = descriptor_of(&single, OCI_MANIFEST);
    let img = CollectedImage {
        reference: "example.com/broken:1".into(),
        top: top.clone(),
        blobs: vec![airlock::oci::image::ImageBlob {
            digest: top.digest,
            size: top.size,
            media_type: OCI_MANIFEST.into(),
            origin: airlock::bundle::Origin::Bytes(std::sync::Arc::new(single)),
        }],
        platforms: vec![],
    };
    let (artifact, blobs) = airlock::sources::image::to_artifact(img, "test", None);
    let opts = PackOptions {
        channel: "p".into(),
        sequence: 1,
        created: std::time::SystemTime::now(),
        expires: None,
        chunk_size: 1 << 20,
        volumes: None,
    };
    let key = SigningKey::load(&env.path("k")).unwrap();
    let out = OutDir::prepare(&env.path("b")).unwrap();
    bundle::pack(out, vec![artifact], &blobs, &[key], &opts, &Silent).unwrap();
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();
    let dst = TestRegistry::start();
    env.run(&["import", "b", "--trust", "k.pub", "--registry", &dst.addr])
        .code(3)
        .stderr_has("which the bundle does not hold");
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/example.com/broken:1", dst.addr),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "nothing was pushed");
    // The layout target refuses it too, before writing.
    env.run(&["import", "b", "--trust", "k.pub", "--oci-layout", "L"])
        .code(3);
    assert!(!env.path("L").exists());
}

#[test]
fn artifacts_without_a_target_stop_the_import_before_anything_is_written() {
    let env = Env::new();
    env.keygen("k");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo");
    let image = format!("oci-layout://{}", fixtures.join("hello-image").display());
    let patch = fixtures.join("patches/raise-max-tokens.patch");
    env.pack(&[&image, patch.to_str().unwrap()], "k", "b", &[])
        .ok();
    // Only an image target: the patch has nowhere to go (usage error, exit 2), nothing written.
    env.run(&["import", "b", "--trust", "k.pub", "--oci-layout", "L"])
        .code(2)
        .stderr_has("no target given for raise-max-tokens.patch (file)");
    assert!(!env.path("L").exists());
    // No target at all: clap says one is required.
    env.run(&["import", "b", "--trust", "k.pub"]).code(2);
    // With --files too, the image goes to the layout and the patch to the directory.
    env.run(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--oci-layout",
        "L",
        "--files",
        "F",
    ])
    .ok();
    assert!(env.path("F/raise-max-tokens.patch").is_file());
    assert!(!env.path("F/demo.example_tools_hello_1.0").exists());
    assert!(env.path("L/index.json").is_file());
}
