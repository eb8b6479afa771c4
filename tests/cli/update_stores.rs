//! Updates of the stores that version by design (issue 13): a newer bundle moves a name to new
//! content and leaves the old content intact and reachable. Hugging Face cache: a new commit
//! of the same repo and revision gets its own snapshot, and `refs/<revision>` moves to it
//! last — after every blob and snapshot file is in place — while the old snapshot still loads
//! with the real huggingface_hub. Registry: a tag moved to a new digest (skopeo sees the new
//! digest), the old manifest still pullable by digest. OCI layout: `index.json`'s ref
//! annotation moved, the old manifest and its blobs still in `blobs/`. Ollama store: a tag moved
//! to a new manifest — the manifest file replaced (renamed over), every old blob still there.

use std::fs;
use std::process::Command;

use serde_json::json;

use crate::crash_targets::image_layout;
use crate::hfcache::{commit, offline_check, pack_seq, Repo};
use crate::support::registry::TestRegistry;
use crate::support::*;
use airlock::format::HfRepoType;

/// Revision `n` of a model: four LFS shards and a config; revision 2 changes one shard, adds a
/// file and removes one.
fn revision(n: u8) -> Repo {
    let mut files = vec![
        (
            "config.json",
            format!("{{\"rev\": {n}}}").into_bytes(),
            false,
        ),
        ("model-1.safetensors", pseudo_random(70_000, 1), true),
        ("model-2.safetensors", pseudo_random(70_000, 2), true),
        ("model-3.safetensors", pseudo_random(70_000, 3), true),
        (
            "model-4.safetensors",
            pseudo_random(70_000, if n == 1 { 4 } else { 44 }),
            true,
        ),
    ];
    if n == 1 {
        files.push(("notes-v1.md", b"only in revision 1\n".to_vec(), false));
    } else {
        files.push(("added-v2.md", b"new in revision 2\n".to_vec(), false));
    }
    Repo {
        name: "shards",
        repo_type: HfRepoType::Model,
        repo_id: "org/shards",
        revision: "main",
        commit: commit(0x30 + n),
        complete: true,
        files,
        bad_etag: None,
    }
}

#[test]
fn a_new_commit_of_an_hf_revision_gets_its_snapshot_and_refs_main_moves_to_it_last() {
    let env = Env::new();
    let (r1, r2) = (revision(1), revision(2));
    pack_seq(&env, "b1", std::slice::from_ref(&r1), 1);
    pack_seq(&env, "b2", std::slice::from_ref(&r2), 2);
    let cache = env.path("cache");
    let import = |b: &str| -> Vec<String> {
        vec![
            "import".into(),
            b.into(),
            "--trust".into(),
            "k.pub".into(),
            format!("--hf-cache={}", cache.display()),
        ]
    };
    let args1 = import("b1");
    let a1: Vec<&str> = args1.iter().map(String::as_str).collect();
    env.run_for(120, &a1).ok();
    let repo = cache.join("models--org--shards");
    let old_snapshot = repo.join("snapshots").join(&r1.commit);
    let before = crate::support::tree::snapshot(&old_snapshot);

    // Revision 2, traced: every rename into the repository's blobs/ and snapshots/ precedes
    // the rename that moves refs/main.
    let args2 = import("b2");
    let a2: Vec<&str> = args2.iter().map(String::as_str).collect();
    let traced = Command::new("strace").arg("-V").output().is_ok();
    if traced {
        let trace = env.path("strace.out");
        let mut c = env.wrapped(
            &[
                "strace",
                "-f",
                "-qq",
                "-e",
                "trace=rename,renameat,renameat2,symlink,symlinkat",
                "-o",
                trace.to_str().unwrap(),
            ],
            &a2,
        );
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&env.read("strace.out")).into_owned();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("= 0")).collect();
        let refs = lines
            .iter()
            .rposition(|l| l.contains("models--org--shards/refs/main"))
            .unwrap_or_else(|| panic!("no rename of refs/main:\n{text}"));
        let last_content = lines
            .iter()
            .rposition(|l| {
                l.contains("models--org--shards/blobs/")
                    || l.contains("models--org--shards/snapshots/")
            })
            .unwrap_or_else(|| panic!("no blob or snapshot written:\n{text}"));
        assert!(
            last_content < refs,
            "refs/main moved before the content was in place:\n{}",
            lines.join("\n")
        );
    } else {
        eprintln!("strace not installed; the order of the ref is not traced");
        env.run_for(120, &a2).ok();
    }
    assert_eq!(
        fs::read(repo.join("refs/main")).unwrap(),
        r2.commit.as_bytes()
    );
    // The old snapshot is untouched and both load offline with the real client: revision 2 at
    // main, revision 1 by its commit.
    assert_eq!(crate::support::tree::snapshot(&old_snapshot), before);
    offline_check(
        &env,
        &cache,
        vec![r2.load("main"), r1.load(&r1.commit)],
        json!([{"repo_id": "org/shards", "repo_type": "model",
                "revisions": {r1.commit.clone(): [], r2.commit.clone(): ["main"]}}]),
    );
    // The unchanged shards are one blob each, shared by both snapshots.
    let blobs = fs::read_dir(repo.join("blobs")).unwrap().count();
    assert_eq!(
        blobs,
        5 + 4,
        "5 LFS blobs, 4 regular files (two configs, two notes)"
    );
}

/// Packs the image of `img/NAME` as tag `t` into `out`, channel `images`, sequence `seq`.
fn pack_image(env: &Env, img: &str, out: &str, seq: u64) {
    let src = format!("oci-layout://{}:t", env.path(img).display());
    env.pack(
        &[&src],
        "k",
        out,
        &["--channel", "images", "--sequence", &seq.to_string()],
    )
    .ok();
}

#[test]
fn a_moved_tag_names_the_new_digest_and_the_old_image_stays_pullable_by_digest() {
    let registry = TestRegistry::start();
    let env = Env::new();
    env.keygen("k");
    let (_, md1, _) = image_layout(&env.path("v1"), "alpha", 40_000, 1);
    let (_, md2, _) = image_layout(&env.path("v2"), "alpha", 40_000, 2);
    pack_image(&env, "v1/alpha", "b1", 1);
    pack_image(&env, "v2/alpha", "b2", 2);
    let target = format!("{}/up", registry.addr);
    let tagged = format!("docker://{}/up/alpha:t", registry.addr);
    let digest_of = |r: &str| -> String {
        let out = skopeo(&["inspect", "--tls-verify=false", "--raw", r]);
        airlock::format::Digest::of(&out).to_string()
    };
    for (b, md) in [("b1", md1), ("b2", md2)] {
        env.run_for(
            120,
            &[
                "import",
                b,
                "--trust",
                "k.pub",
                "--registry",
                &target,
                "--oci-layout",
                "layout",
            ],
        )
        .ok();
        assert_eq!(digest_of(&tagged), md.to_string(), "after {b}");
    }
    // The old image, by digest.
    let old = format!("docker://{}/up/alpha@{md1}", registry.addr);
    assert_eq!(digest_of(&old), md1.to_string());
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &old,
        &format!("dir:{}", env.path("pulled").display()),
    ]);
    // The OCI layout: the ref moved to the new manifest; the old one and its blobs remain.
    let index: serde_json::Value = serde_json::from_slice(&env.read("layout/index.json")).unwrap();
    let refs: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            Some((
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()?
                    .to_string(),
                m["digest"].as_str()?.to_string(),
            ))
        })
        .collect();
    let named: Vec<&(String, String)> = refs
        .iter()
        .filter(|(r, _)| r.ends_with(":t") || r == "t")
        .collect();
    assert_eq!(named.len(), 1, "one ref for the tag: {refs:?}");
    assert_eq!(named[0].1, md2.to_string(), "{refs:?}");
    assert!(env
        .path(&format!("layout/blobs/sha256/{}", md1.hex()))
        .exists());
}

#[test]
fn an_ollama_tag_moved_to_a_new_manifest_replaces_the_manifest_and_keeps_the_old_blobs() {
    use crate::ollama::{model, push_model, Front, Tag};
    let env = Env::new();
    env.keygen("k");
    let reg = TestRegistry::start();
    let front = Front::start(&reg.addr, None);
    let tags = model();
    // `latest` names the first manifest, then the second (sharing the weights).
    let first = Tag::new("latest", tags[0].config.clone(), tags[0].layers.clone());
    let second = Tag::new("latest", tags[1].config.clone(), tags[1].layers.clone());
    let src = format!("ollama://{}/library/tiny:latest", front.addr);
    let manifest = env.path(&format!(
        "store/manifests/{}/library/tiny/latest",
        front.addr
    ));
    for (i, t) in [&first, &second].into_iter().enumerate() {
        push_model(
            &reg,
            std::slice::from_ref(t),
            &env.path(&format!("pushed{i}")),
        );
        let out = format!("b{i}");
        env.pack(
            &[&src],
            "k",
            &out,
            &["--channel", "ollama", "--sequence", &(i + 1).to_string()],
        )
        .ok();
        env.run_for(
            120,
            &["import", &out, "--trust", "k.pub", "--ollama-models=store"],
        )
        .ok();
        assert_eq!(fs::read(&manifest).unwrap(), t.manifest, "after {out}");
    }
    // Every blob of the first manifest is still there (what names it may come back).
    for b in first.layers.iter().chain(std::iter::once(&first.config)) {
        let p = env.path(&format!("store/blobs/sha256-{}", b.digest().hex()));
        assert!(p.is_file(), "{} is gone", p.display());
    }
    // The manifest file was replaced, not edited in place: no temp file is left beside it.
    let dir = manifest.parent().unwrap();
    let names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["latest"], "{names:?}");
}
