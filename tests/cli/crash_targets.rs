//! The SIGKILL loops of `crash.rs` for the other targets (issue 10): an import into an OCI
//! layout, a models directory and a registry, killed at many points while it stages and while
//! it commits. No store ever shows partial content: every visible path is one the finished
//! import has, with its final content; an `index.json` never names a blob that is not there; a
//! `Modelfile` (written in the names step) never shows before its model's files; a registry tag
//! is the old one or the new one, and the manifest it names has every blob. The re-run completes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use airlock::format::Digest;
use airlock::oci::client::{ConnectOptions, Registry};

use crate::crash::{clean_import, kill_loop, ollama_bundle, ollama_tags, KILL_POINTS};
use crate::registry::{write_blob, TestRegistry};
use crate::support::tree::{self, Snapshot};
use crate::support::*;

/// An OCI layout at `root/NAME` with one image tagged `t`: a config and two tar layers of
/// `layer` pseudo-random bytes each. Returns the layout, the manifest's digest and the
/// digests of the config and layers.
pub(crate) fn image_layout(
    root: &Path,
    name: &str,
    layer: usize,
    seed: u64,
) -> (PathBuf, Digest, Vec<Digest>) {
    let layout = root.join(name);
    fs::create_dir_all(&layout).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    let mut layers = Vec::new();
    for i in 0..2 {
        let name = format!("data/part{i}.bin");
        let tar = layer_tar(&[(&name, pseudo_random(layer, seed * 10 + i))]);
        layers.push(write_blob(&layout, &tar));
    }
    let diff_ids: Vec<String> = layers.iter().map(|(d, _)| format!("\"{d}\"")).collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{}}}}"#,
        diff_ids.join(",")
    );
    let (cd, cs) = write_blob(&layout, config.as_bytes());
    let descs: Vec<String> = layers
        .iter()
        .map(|(d, s)| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{s}}}"#
            )
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{}]}}"#,
        descs.join(",")
    );
    let (md, ms) = write_blob(&layout, manifest.as_bytes());
    fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#
        ),
    )
    .unwrap();
    let mut blobs = vec![cd];
    blobs.extend(layers.iter().map(|(d, _)| *d));
    (layout, md, blobs)
}

/// Packs the layout's image `t` into `env/b` (key `k`, 128 KiB chunks: many chunks to stage).
fn image_bundle(env: &Env, layout: &Path) {
    env.keygen("k");
    env.pack(
        &[&format!("oci-layout://{}:t", layout.display())],
        "k",
        "b",
        &["--chunk-size", "128KiB"],
    )
    .ok();
}

/// Every `index.json` under `dest` parses, and every manifest it names is in the layout's
/// `blobs/` with its content, as are the config and layers that manifest names.
fn check_layout(dest: &Path, when: &str) {
    let (visible, _) = tree::visible(dest);
    for index in visible.keys().filter(|k| k.ends_with("index.json")) {
        let root = dest.join(index);
        let root = root.parent().unwrap();
        let blob = |d: &str| -> Vec<u8> {
            let hex = d.strip_prefix("sha256:").unwrap();
            let p = root.join("blobs/sha256").join(hex);
            let bytes = fs::read(&p)
                .unwrap_or_else(|e| panic!("{when}: {index} reaches {d}, which is missing ({e})"));
            assert_eq!(
                Digest::of(&bytes).to_string(),
                d,
                "{when}: blob {d} is not complete"
            );
            bytes
        };
        let v: serde_json::Value = serde_json::from_slice(&fs::read(dest.join(index)).unwrap())
            .unwrap_or_else(|e| panic!("{when}: {index} is not JSON: {e}"));
        for m in v["manifests"].as_array().unwrap() {
            let mv: serde_json::Value =
                serde_json::from_slice(&blob(m["digest"].as_str().unwrap())).unwrap();
            blob(mv["config"]["digest"].as_str().unwrap());
            for l in mv["layers"].as_array().unwrap() {
                blob(l["digest"].as_str().unwrap());
            }
        }
    }
}

#[test]
fn an_oci_layout_import_killed_at_any_point_never_shows_an_index_naming_a_missing_blob() {
    let env = Env::new();
    let (layout, _, _) = image_layout(&env.path("img"), "alpha", 768 << 10, 1);
    image_bundle(&env, &layout);
    let (want, took) = clean_import(&env, &["--oci-layout", "ref"], &env.path("ref"));
    assert!(want.contains_key("index.json"), "{want:#?}");
    check_layout(&env.path("ref"), "the clean import");
    let dest = env.path("layout");
    kill_loop(
        &env,
        &["--oci-layout", "layout"],
        &dest,
        &want,
        took,
        &check_layout,
    );
}

/// A `Modelfile` (generated, written in the names step) is visible only once every other file
/// the finished store has in its directory is.
fn check_models_dir(want: &Snapshot) -> impl Fn(&Path, &str) + '_ {
    move |dest, when| {
        let (now, _) = tree::visible(dest);
        for k in now.keys().filter(|k| k.ends_with("/Modelfile")) {
            let dir = &k[..k.len() - "Modelfile".len()];
            for w in want.keys().filter(|w| w.starts_with(dir)) {
                assert!(now.contains_key(w), "{when}: {k} is visible but {w} is not");
            }
        }
    }
}

#[test]
fn a_models_dir_import_killed_at_any_point_never_shows_a_modelfile_before_its_model() {
    let env = Env::new();
    let tags = ollama_tags();
    ollama_bundle(&env, &tags);
    let (want, took) = clean_import(&env, &["--models-dir", "ref"], &env.path("ref"));
    assert!(
        want.keys().filter(|k| k.ends_with("/Modelfile")).count() == 2
            && want.keys().any(|k| k.ends_with("/model.gguf")),
        "{want:#?}"
    );
    let dest = env.path("models");
    kill_loop(
        &env,
        &["--models-dir", "models"],
        &dest,
        &want,
        took,
        &check_models_dir(&want),
    );
}

/// An image in a registry: its manifest's digest and the digests of its config and layers.
pub(crate) type Image = (Digest, Vec<Digest>);

/// What a registry repository shows for tag `t`: `None`, or the manifest digest it names
/// (checked to be `old` or `new`), after checking that the manifest and every blob of that
/// image are in the repository.
pub(crate) fn check_tag(
    reg: &Registry,
    repo: &str,
    new: &Image,
    old: Option<&Image>,
    when: &str,
) -> Option<Digest> {
    let d = reg.manifest_digest(repo, "t").unwrap()?;
    let image = if d == new.0 {
        new
    } else {
        match old {
            Some(o) if o.0 == d => o,
            _ => panic!("{when}: {repo}:t names {d}, neither the old nor the new manifest"),
        }
    };
    assert_eq!(
        reg.manifest_digest(repo, &d.to_string()).unwrap(),
        Some(d),
        "{when}: {repo}:t names {d}, which the repository does not hold"
    );
    for b in &image.1 {
        assert!(
            reg.blob_exists(repo, b).unwrap(),
            "{when}: {repo}:t names {d}, whose blob {b} is missing"
        );
    }
    Some(d)
}

#[test]
fn a_registry_import_killed_at_any_point_leaves_every_tag_old_or_new_and_complete() {
    let registry = TestRegistry::start();
    let reg = Registry::new(&registry.addr, &ConnectOptions::default()).unwrap();
    let env = Env::new();
    let (layout, md, blobs) = image_layout(&env.path("img"), "alpha", 768 << 10, 2);
    let new = (md, blobs);
    // The image the tag names before the import, in the odd rounds.
    let (old_layout, omd, oblobs) = image_layout(&env.path("old"), "alpha", 64 << 10, 3);
    let old = (omd, oblobs);
    image_bundle(&env, &layout);
    let import = |prefix: &str| {
        let target = format!("{}/{prefix}", registry.addr);
        let mut c = env.command(&["import", "b", "--trust", "k.pub", "--registry", &target]);
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c
    };
    let t = Instant::now();
    run_cmd(import("ref")).ok();
    let took = t.elapsed();
    assert_eq!(
        check_tag(&reg, "ref/alpha", &new, None, "the clean import"),
        Some(new.0)
    );

    let started = Instant::now();
    let (mut killed_midway, mut tagged) = (0, 0);
    for i in 0..2 * KILL_POINTS {
        if i >= KILL_POINTS && killed_midway > 0 {
            break;
        }
        let prefix = format!("k{i}");
        let repo = format!("{prefix}/alpha");
        let before = (i % 2 == 1).then(|| {
            registry.push(&old_layout, &format!("{repo}:t"), None);
            &old
        });
        let (round, k) = (i / KILL_POINTS, i % KILL_POINTS);
        let delay: Duration = took * (20 + 90 * k / KILL_POINTS + 5 * round) / 100;
        let mut child = import(&prefix).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        let when = format!("killed after {delay:?} (status {status})");
        // Absent (or old), or new and whole: a kill after the tag was set finds it complete.
        let tag = check_tag(&reg, &repo, &new, before, &when);
        if !status.success() && tag == Some(new.0) {
            tagged += 1;
        }
        // Killed while pushing blobs (staging) or while tagging (commit).
        let pushed = new.1.iter().any(|b| reg.blob_exists(&repo, b).unwrap());
        if !status.success() && pushed {
            killed_midway += 1;
        }
        // The re-run completes: the tag names the new image, which is whole.
        let r = run_cmd(import(&prefix));
        assert_eq!(r.code, 0, "{when}: the re-run failed:\n{}", r.stderr);
        assert_eq!(
            check_tag(&reg, &repo, &new, None, &format!("{when}, re-run")),
            Some(new.0)
        );
    }
    eprintln!(
        "registry: clean import {took:?}, {killed_midway} kills mid-push ({tagged} after the tag \
         was set), {:?} in all",
        started.elapsed()
    );
    assert!(
        killed_midway > 0,
        "no kill point fell inside the push (clean run took {took:?})"
    );
}
