//! Crash safety and faults (issue 5): the real binary killed with SIGKILL at many points of an
//! import into the files target, the Hugging Face cache and the Ollama store; a destination
//! that runs out of space (a size-limited tmpfs, `RLIMIT_FSIZE`); chunks that vanish or shrink
//! after verification.
//!
//! What a store may show at any moment: every visible path is one the finished import has, with
//! exactly its final content (no half-written file), no HF ref names a snapshot that is not
//! complete, no Ollama manifest names a missing blob. A process killed outright cannot clean up:
//! temp files `.airlock-tmp-*` may remain. They are invisible to the consumers (dot files next
//! to the targets; the HF client only looks up `blobs/<etag>` through snapshot links; ollama
//! reads `blobs/sha256-<hex>` by name and prunes other names in `blobs/` at start-up), a re-run
//! ignores them, and they are the only difference allowed once a re-run has succeeded. A failure
//! the process sees (full disk, vanished media) leaves the store exactly as it was.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::bundle::VerifyOptions;
use airlock::bundle::{self, Origin, OutDir, PackOptions, PlannedBlob, VerifiedBundle};
use airlock::format::{Artifact, ArtifactKind, Digest, Entry, HfRepoType, ImageInfo};
use airlock::oci::model::DOCKER_MANIFEST;
use airlock::progress::Silent;
use airlock::sign::{PublicKey, SigningKey};
use airlock::stage::Admitted;
use airlock::targets::{files, hf_cache, ollama};

use crate::hfcache::{self, Repo};
use crate::support::tree::TMP_PREFIX;
use crate::support::*;

/// Kill points per target (each is one killed import and one re-run).
pub(crate) const KILL_POINTS: u32 = 12;
const MAX_KILL_POINTS: u32 = 24;

/// What a store shows ([`tree::visible`]): path → kind, mode and content digest.
pub(crate) type Tree = tree::Snapshot;

/// An `airlock import b --trust k.pub ARGS` command, output discarded.
fn import_cmd(env: &Env, args: &[&str]) -> Command {
    let mut all = vec!["import", "b", "--trust", "k.pub"];
    all.extend_from_slice(args);
    let mut c = env.command(&all);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Runs the import to completion into `dest` (fresh), returning the store and how long it took.
pub(crate) fn clean_import(env: &Env, args: &[&str], dest: &Path) -> (Tree, Duration) {
    let t = Instant::now();
    let mut c = env.command(&[&["import", "b", "--trust", "k.pub"], args].concat());
    c.stdin(Stdio::null());
    let r = run_cmd(c);
    let took = t.elapsed();
    r.ok();
    let (store, temps) = tree::visible(dest);
    assert!(temps.is_empty(), "a clean import left {temps:?}");
    (store, took)
}

/// Kills the import into `dest` (fresh each time) with SIGKILL after `KILL_POINTS` delays spread
/// over a clean run's duration (mostly its writing phase); after each kill, checks the store
/// with `check`, then re-runs the import, which must succeed and give `want` (temp files aside).
pub(crate) fn kill_loop(
    env: &Env,
    args: &[&str],
    dest: &Path,
    want: &Tree,
    took: Duration,
    check: &dyn Fn(&Path, &str),
) {
    let mut killed_midway = 0;
    let started = Instant::now();
    // KILL_POINTS kills; if timing under load made none land while files were being written,
    // a few more, later ones (at most MAX_KILL_POINTS in all).
    for i in 0..MAX_KILL_POINTS {
        if i >= KILL_POINTS && killed_midway > 0 {
            break;
        }
        let _ = fs::remove_dir_all(dest);
        // From 30% (verification comes first and writes nothing) to just past the end.
        let (round, k) = (i / KILL_POINTS, i % KILL_POINTS);
        let delay = took * (30 + 80 * k / KILL_POINTS + 5 * round) / 100;
        let mut child = import_cmd(env, args).spawn().unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        let when = format!("killed after {delay:?} (status {status})");
        let (now, temps) = tree::visible(dest);
        // Killed while staging (only the staging area exists) or while committing.
        if !status.success() && (!now.is_empty() || !temps.is_empty()) {
            killed_midway += 1;
        }
        tree::assert_subset(&now, want, &when);
        check(dest, &when);
        // The re-run succeeds and completes the store.
        let r = run_cmd({
            let mut c = env.command(&[&["import", "b", "--trust", "k.pub"], args].concat());
            c.stdin(Stdio::null());
            c
        });
        assert_eq!(r.code, 0, "{when}: the re-run failed:\n{}", r.stderr);
        let (after, temps_after) = tree::visible(dest);
        assert!(
            &after == want,
            "{when}: the re-run did not complete the store"
        );
        // Temp files are never visible to the consumers; the re-run removes what the killed
        // run staged and leaves none of its own.
        assert!(
            temps_after.is_empty(),
            "{when}: the re-run left temp files {temps_after:?}"
        );
    }
    eprintln!(
        "{}: clean import {took:?}, {killed_midway} of {KILL_POINTS} kills mid-write, {:?} in all",
        dest.display(),
        started.elapsed()
    );
    // Timing varies; at least some kills must have landed while the store was being written.
    assert!(
        killed_midway > 0,
        "no kill point fell inside the writing phase (clean run took {took:?})"
    );
}

/// A files bundle of about 3 MiB in 64 KiB chunks: eight 320 KiB files in nested folders, a
/// compressible one, small ones.
fn files_bundle(env: &Env) {
    env.keygen("k");
    for i in 0..8 {
        env.write(
            &format!("src/part{}/shard-{i}.bin", i % 3),
            pseudo_random(320 * 1024, 100 + i),
        );
    }
    env.write("src/text.json", "{\"vocab\": [1, 2, 3]}\n".repeat(20_000));
    env.write("src/config.json", br#"{"model_type": "tiny"}"#);
    env.write("src/empty", b"");
    env.pack(&["src"], "k", "b", &["--chunk-size", "64KiB"])
        .ok();
}

#[test]
fn an_import_killed_at_any_point_leaves_no_partial_file_and_a_rerun_completes_it() {
    let env = Env::new();
    files_bundle(&env);
    let (want, took) = clean_import(&env, &["--files", "ref"], &env.path("ref"));
    assert!(want.contains_key("src/part2/shard-5.bin"));
    let dest = env.path("dest");
    kill_loop(&env, &["--files", "dest"], &dest, &want, took, &|_, _| {});
}

/// One HF model of about 2.6 MiB: LFS weights in shards, regular files in folders.
pub(crate) fn hf_repo() -> Repo {
    let mut files: Vec<(&'static str, Vec<u8>, bool)> = vec![
        (
            "config.json",
            br#"{"model_type": "crashy"}"#.to_vec(),
            false,
        ),
        ("tokenizer/vocab.txt", b"a\nb\nc\n".repeat(5000), false),
        ("README.md", b"# crashy\n".to_vec(), false),
    ];
    for (i, name) in [
        "model-00001-of-00004.safetensors",
        "model-00002-of-00004.safetensors",
        "model-00003-of-00004.safetensors",
        "model-00004-of-00004.safetensors",
        "onnx/model.onnx",
    ]
    .into_iter()
    .enumerate()
    {
        files.push((name, pseudo_random(512 * 1024, 300 + i as u64), true));
    }
    Repo {
        name: "crashy",
        repo_type: HfRepoType::Model,
        repo_id: "org/crashy",
        revision: "main",
        commit: hfcache::commit(0xc4),
        complete: true,
        files,
        bad_etag: None,
    }
}

/// No ref names a commit whose snapshot is not complete (every file present and resolving to
/// its content); no snapshot link dangles.
pub(crate) fn check_hf(cache: &Path, repo: &Repo, when: &str) {
    let folder = cache.join(hf_cache::repo_folder_name(repo.repo_type, repo.repo_id));
    let snaps = folder.join("snapshots");
    for e in walkdir::WalkDir::new(snaps).into_iter().flatten() {
        if e.path_is_symlink() {
            assert!(
                fs::metadata(e.path()).is_ok(),
                "{when}: {} dangles",
                e.path().display()
            );
        }
    }
    let refs = folder.join("refs");
    for e in walkdir::WalkDir::new(&refs)
        .min_depth(1)
        .into_iter()
        .flatten()
    {
        if !e.file_type().is_file() || e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            continue;
        }
        let commit = fs::read_to_string(e.path()).unwrap();
        assert_eq!(
            commit,
            repo.commit,
            "{when}: {} holds {commit:?}",
            e.path().display()
        );
        let snap = folder.join("snapshots").join(&commit);
        for (path, data, _) in &repo.files {
            let got = fs::read(snap.join(path)).unwrap_or_else(|err| {
                panic!("{when}: the ref names {commit}, whose {path} is unreadable: {err}")
            });
            assert!(
                got == *data,
                "{when}: {path} of the referenced snapshot differs"
            );
        }
    }
}

#[test]
fn an_hf_cache_import_killed_at_any_point_never_shows_a_ref_to_an_incomplete_snapshot() {
    let env = Env::new();
    let repo = hf_repo();
    hfcache::pack(&env, "b", std::slice::from_ref(&repo));
    let (want, took) = clean_import(&env, &["--hf-cache=ref"], &env.path("ref"));
    assert!(want.contains_key("models--org--crashy/refs/main"));
    let dest = env.path("cache");
    kill_loop(
        &env,
        &["--hf-cache=cache"],
        &dest,
        &want,
        took,
        &|d, when| check_hf(d, &repo, when),
    );
}

/// A model in the Ollama store shape: (tag, manifest bytes, [(digest, bytes)] of config+layers).
pub(crate) struct OllamaTag {
    tag: &'static str,
    manifest: Vec<u8>,
    blobs: Vec<(&'static str, Vec<u8>)>,
}

/// Two tags of `registry.ollama.ai/library/crashy` sharing 1.5 MiB of GGUF weights, each
/// with its own 512 KiB adapter, a template and params.
pub(crate) fn ollama_tags() -> Vec<OllamaTag> {
    let mut gguf = b"GGUF".to_vec();
    gguf.extend_from_slice(&pseudo_random(3 << 19, 51));
    ["v1", "latest"]
        .into_iter()
        .enumerate()
        .map(|(i, tag)| {
            let blobs: Vec<(&'static str, Vec<u8>)> = vec![
                (
                    "application/vnd.docker.container.image.v1+json",
                    format!(r#"{{"model_format":"gguf","model_family":"llama","file_type":"Q{i}"}}"#)
                        .into_bytes(),
                ),
                ("application/vnd.ollama.image.model", gguf.clone()),
                (
                    "application/vnd.ollama.image.adapter",
                    pseudo_random(1 << 19, 60 + i as u64),
                ),
                ("application/vnd.ollama.image.template", b"{{ .Prompt }}".to_vec()),
                (
                    "application/vnd.ollama.image.params",
                    format!(r#"{{"num_ctx":{}}}"#, 1024 * (i + 1)).into_bytes(),
                ),
            ];
            let desc = |(mt, b): &(&str, Vec<u8>)| {
                format!(r#"{{"mediaType":"{mt}","digest":"{}","size":{}}}"#, Digest::of(b), b.len())
            };
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{},"layers":[{}]}}"#,
                desc(&blobs[0]),
                blobs[1..].iter().map(desc).collect::<Vec<_>>().join(",")
            )
            .into_bytes();
            OllamaTag {
                tag,
                manifest,
                blobs,
            }
        })
        .collect()
}

/// Packs the tags as `ollama-model` artifacts into `env/b` (128 KiB chunks).
pub(crate) fn ollama_bundle(env: &Env, tags: &[OllamaTag]) {
    env.keygen("k");
    let mut planned: BTreeMap<Digest, Vec<u8>> = BTreeMap::new();
    let mut artifacts = Vec::new();
    for t in tags {
        let mut entries = vec![Entry::dir("blobs"), Entry::dir("blobs/sha256")];
        let all = std::iter::once(&t.manifest).chain(t.blobs.iter().map(|(_, b)| b));
        for b in all {
            let d = Digest::of(b);
            entries.push(Entry::file(
                &format!("blobs/sha256/{}", d.hex()),
                d,
                b.len() as u64,
            ));
            planned.insert(d, b.clone());
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let reference = format!("registry.ollama.ai/library/crashy:{}", t.tag);
        artifacts.push(Artifact {
            name: format!("crashy-{}", t.tag),
            kind: ArtifactKind::OllamaModel,
            source: format!("ollama://crashy:{}", t.tag),
            identity: format!("{reference}@{}", Digest::of(&t.manifest)),
            entries,
            image: Some(ImageInfo {
                reference,
                digest: Digest::of(&t.manifest),
                media_type: DOCKER_MANIFEST.into(),
                size: t.manifest.len() as u64,
                platforms: vec![],
            }),
            hf: None,
        });
    }
    let blobs: Vec<PlannedBlob> = planned
        .into_iter()
        .map(|(digest, b)| PlannedBlob {
            digest,
            size: b.len() as u64,
            origin: Origin::Bytes(Arc::new(b)),
            compress: Some(false),
        })
        .collect();
    let opts = PackOptions {
        channel: "models".into(),
        sequence: 1,
        created: std::time::SystemTime::now(),
        expires: None,
        chunk_size: 128 * 1024,
        volumes: None,
    };
    let key = SigningKey::load(&env.path("k")).unwrap();
    let out = OutDir::prepare(&env.path("b")).unwrap();
    bundle::pack(out, artifacts, &blobs, &[key], &opts, &Silent).unwrap();
}

/// Every manifest in the store parses and names blobs that are present with their content.
pub(crate) fn check_ollama(store: &Path, when: &str) {
    let manifests = store.join("manifests");
    for e in walkdir::WalkDir::new(&manifests)
        .min_depth(1)
        .into_iter()
        .flatten()
    {
        if !e.file_type().is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy();
        assert!(
            !name.starts_with(TMP_PREFIX),
            "{when}: a temp file under manifests/: {}",
            e.path().display()
        );
        let v: serde_json::Value = serde_json::from_slice(&fs::read(e.path()).unwrap())
            .unwrap_or_else(|err| panic!("{when}: {} is not JSON: {err}", e.path().display()));
        let config: ollama::Layer = serde_json::from_value(v["config"].clone()).unwrap();
        let layers: Vec<ollama::Layer> = serde_json::from_value(v["layers"].clone()).unwrap();
        for l in std::iter::once(&config).chain(&layers) {
            let blob = store.join(format!("blobs/sha256-{}", l.digest.hex()));
            let got = fs::read(&blob).unwrap_or_else(|err| {
                panic!(
                    "{when}: {} names {}, which is missing: {err}",
                    e.path().display(),
                    blob.display()
                )
            });
            assert_eq!(
                Digest::of(&got),
                l.digest,
                "{when}: {} is not complete",
                blob.display()
            );
        }
    }
}

#[test]
fn an_ollama_import_killed_at_any_point_never_shows_a_manifest_without_its_blobs() {
    let env = Env::new();
    let tags = ollama_tags();
    ollama_bundle(&env, &tags);
    let (want, took) = clean_import(&env, &["--ollama-models=ref"], &env.path("ref"));
    assert!(want.contains_key("manifests/registry.ollama.ai/library/crashy/latest"));
    let dest = env.path("store");
    kill_loop(
        &env,
        &["--ollama-models=store"],
        &dest,
        &want,
        took,
        &|d, when| check_ollama(d, when),
    );
}

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped. Mounting needs root (as in CI);
/// if it fails the test fails, saying so.
pub(crate) struct Tmpfs(PathBuf);

impl Tmpfs {
    pub(crate) fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Tmpfs(dir.to_path_buf()),
            Ok(o) => panic!(
                "cannot mount a {size} tmpfs at {} for the full-disk test (needs root): {}",
                dir.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run mount for the full-disk test: {e}"),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Imports with `args(dest)` into `dest` on a 1 MiB tmpfs (the bundles are larger) holding an
/// unrelated file: exit 1, an error naming a path under `dest` and saying the disk is full,
/// the store as it was, no temp file left.
fn full_disk(env: &Env, args: &dyn Fn(&str) -> Vec<String>) {
    let disk = env.path("disk");
    let _fs = Tmpfs::mount(&disk, "1m");
    let dest = disk.join("dest");
    env.write("disk/dest/unrelated.txt", "keep me\n");
    let before = tree::visible(&dest);
    let args = args("disk/dest");
    let mut all = vec!["import", "b", "--trust", "k.pub"];
    all.extend(args.iter().map(String::as_str));
    let r = env.run(&all);
    // Paths are named as the operator gave them.
    r.code(1)
        .stderr_has("disk/dest/")
        .stderr_has("No space left on device");
    assert!(
        tree::visible(&dest) == before,
        "the store changed:\n{}",
        r.stderr
    );
}

#[test]
fn a_full_disk_fails_clearly_and_leaves_every_store_as_it_was() {
    let env = Env::new();
    files_bundle(&env);
    full_disk(&env, &|d| vec!["--files".into(), d.into()]);

    let env = Env::new();
    hfcache::pack(&env, "b", &[hf_repo()]);
    full_disk(&env, &|d| vec![format!("--hf-cache={d}")]);

    let env = Env::new();
    ollama_bundle(&env, &ollama_tags());
    full_disk(&env, &|d| vec![format!("--ollama-models={d}")]);
}

/// `sh -c` running the import under `RLIMIT_FSIZE` of 256 KiB, with SIGXFSZ ignored first when
/// `ignore_xfsz` (the disposition survives `exec`).
fn fsize_limited(env: &Env, ignore_xfsz: bool) -> Command {
    let trap = if ignore_xfsz { "trap '' XFSZ; " } else { "" };
    let script = format!("{trap}exec \"$0\" \"$@\"");
    // The test's own state and audit log (the one builder: not the machine's default state
    // directory, whose log may be larger than the limit, or written by another airlock).
    env.wrapped(
        &["prlimit", "--fsize=262144", "--", "sh", "-c", &script],
        &["import", "b", "--trust", "k.pub", "--files", "dest"],
    )
}

#[test]
fn a_file_size_limit_fails_clearly_and_leaves_the_destination_as_it_was() {
    let env = Env::new();
    files_bundle(&env);
    env.write("dest/unrelated.txt", "keep me\n");
    let before = tree::visible(&env.path("dest"));
    // With SIGXFSZ ignored, a write past the limit fails with EFBIG.
    let r = run_cmd(fsize_limited(&env, true));
    r.code(1).stderr_has("dest/").stderr_has("File too large");
    assert!(tree::visible(&env.path("dest")) == before, "{}", r.stderr);

    // With the default disposition too: the binary ignores SIGXFSZ itself (main.rs), so the
    // write fails with EFBIG, the error is clear and the destination is as it was; a re-run
    // without the limit completes the import.
    let (want, _) = clean_import(&env, &["--files", "ref"], &env.path("ref"));
    let out = fsize_limited(&env, false).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("File too large"));
    assert!(tree::visible(&env.path("dest")) == before);
    let mut want_dest = want.clone();
    want_dest.insert("unrelated.txt".into(), before.0["unrelated.txt"].clone());
    import_cmd(&env, &["--files", "dest"]).status().unwrap();
    assert!(tree::visible(&env.path("dest")).0 == want_dest);
}

/// The chunk file holding the last segment of the largest blob.
fn chunk_of_largest_blob(vb: &VerifiedBundle) -> PathBuf {
    let b = vb.manifest().blobs.iter().max_by_key(|b| b.size).unwrap();
    vb.chunk_path(b.segments.last().unwrap().chunk)
}

fn verified(env: &Env) -> Admitted {
    let trust = PublicKey::load(env.path("k.pub").to_str().unwrap()).unwrap();
    let now = VerifyOptions {
        now: std::time::SystemTime::now(),
    };
    Admitted::without_state(bundle::verify(&env.path("b"), &[trust], &now, &Silent).unwrap())
}

/// A chunk's file name (problems name chunks by it, as `verify` does).
fn chunk_name(chunk: &Path) -> String {
    chunk.file_name().unwrap().to_string_lossy().into_owned()
}

/// Halves the chunk's length in place.
fn truncate(chunk: &Path) {
    let f = fs::OpenOptions::new().write(true).open(chunk).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
}

#[test]
fn media_that_shrink_or_vanish_after_verification_stop_the_import_and_leave_nothing() {
    // Files target: a chunk truncated, then another removed, after verification.
    let env = Env::new();
    files_bundle(&env);
    let vb = verified(&env);
    let dest = env.path("dest");
    let chunk = chunk_of_largest_blob(&vb);
    for vanish in [false, true] {
        let plan = files::plan(&vb, &dest, &|_| true).unwrap();
        if vanish {
            fs::remove_file(&chunk).unwrap();
        } else {
            truncate(&chunk);
        }
        let err = error_text(&files::execute(&vb, &plan, &Silent).unwrap_err());
        assert!(err.contains(&chunk_name(&chunk)), "{err}");
        assert!(
            !dest.exists(),
            "{err}: the import left {:?}",
            tree::visible(&dest)
        );
    }
    // And the binary re-verifies: the import is rejected before anything is written.
    let r = env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"]);
    r.code(3)
        .stderr_has(&chunk.file_name().unwrap().to_string_lossy());
    assert!(!dest.exists());

    // Hugging Face cache.
    let env = Env::new();
    let vb = hfcache::pack(&env, "b", &[hf_repo()]);
    let cache = env.path("cache");
    env.write("cache/CACHEDIR.TAG", hf_cache::CACHEDIR_TAG_CONTENT);
    let before = tree::visible(&cache);
    let plan = hf_cache::plan(&vb, &cache, &Default::default()).unwrap();
    let chunk = chunk_of_largest_blob(&vb);
    truncate(&chunk);
    let err = error_text(&hf_cache::execute(&vb, &plan, &Silent).unwrap_err());
    assert!(err.contains(&chunk_name(&chunk)), "{err}");
    assert!(tree::visible(&cache) == before, "{err}");

    // Ollama store.
    let env = Env::new();
    ollama_bundle(&env, &ollama_tags());
    let vb = verified(&env);
    let store = env.path("store");
    let plan = ollama::plan(&vb, &store, &|_| true).unwrap();
    let chunk = chunk_of_largest_blob(&vb);
    fs::remove_file(&chunk).unwrap();
    let err = error_text(&ollama::execute(&vb, &plan, &Silent).unwrap_err());
    assert!(err.contains(&chunk_name(&chunk)), "{err}");
    assert!(
        !store.exists(),
        "{err}: the import left {:?}",
        tree::visible(&store)
    );
}

#[test]
fn a_chunk_truncated_while_the_binary_imports_gives_a_clear_error_or_a_complete_import() {
    let env = Env::new();
    files_bundle(&env);
    let (want, took) = clean_import(&env, &["--files", "ref"], &env.path("ref"));
    let pristine = env.path("pristine");
    fs::rename(env.path("b"), &pristine).unwrap();
    let dest = env.path("dest");
    let (mut failed, mut succeeded) = (0, 0);
    for i in 0..6u32 {
        let _ = fs::remove_dir_all(env.path("b"));
        let _ = fs::remove_dir_all(&dest);
        copy_dir(&pristine, &env.path("b"));
        let vb_chunk = {
            let vb = verified(&env);
            chunk_of_largest_blob(&vb)
        };
        let child = env
            .command(&["import", "b", "--trust", "k.pub", "--files", "dest"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(took * (40 + 12 * i) / 100);
        truncate(&vb_chunk);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let (now, temps) = tree::visible(&dest);
        if out.status.success() {
            succeeded += 1;
            assert!(now == want, "a successful import is complete");
        } else {
            failed += 1;
            assert!(
                stderr.contains(&*vb_chunk.file_name().unwrap().to_string_lossy()),
                "the error names the chunk: {stderr}"
            );
            assert!(
                now.is_empty() && temps.is_empty(),
                "{stderr}: left {now:?} {temps:?}"
            );
        }
    }
    eprintln!("truncated during import: {failed} failed cleanly, {succeeded} completed first");
}

fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let t = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            fs::create_dir_all(&t).unwrap();
        } else {
            fs::copy(e.path(), &t).unwrap();
        }
    }
}
