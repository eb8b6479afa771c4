//! The Hugging Face cache target, checked with the real client: bundles of hand-made `hf-repo`
//! artifacts are imported, then huggingface_hub (the venv of scripts/pyenv.sh) loads them with
//! `HF_HUB_OFFLINE=1` and `scan_cache_dir` finds nothing wrong.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use airlock::bundle::{self, OutDir, PackOptions, PlannedBlob, VerifyOptions};
use airlock::format::{
    Artifact, ArtifactKind, Digest, Entry, EntryType, HfFile, HfInfo, HfRepoType,
};
use airlock::progress::Silent;
use airlock::sign::{PublicKey, SigningKey};
use airlock::stage::Admitted;
use airlock::targets::hf_cache::{
    self, Action, HfCacheOptions, HfCachePlan, RefAction, SnapshotLayout, CACHEDIR_TAG_CONTENT,
};
use serde_json::json;

use crate::support::*;

const CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/hf_offline_check.py");

/// The virtualenv's python: `$AIRLOCK_PYENV`, else `target/pyenv` of this repository.
fn python() -> PathBuf {
    let dir = std::env::var_os("AIRLOCK_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv"));
    let py = dir.join("bin/python");
    assert!(
        py.exists(),
        "no Python virtualenv with huggingface_hub at {}: run scripts/test.sh (it runs \
         scripts/pyenv.sh), or set AIRLOCK_PYENV",
        dir.display()
    );
    py
}

fn py(env: &Env, args: &[&str], cache: Option<&Path>) -> String {
    let (ok, out) = try_py(env, args, cache);
    assert!(ok, "{args:?} failed:\n{out}");
    out
}

/// Runs the helper; whether it succeeded, and its stdout (and stderr on failure).
fn try_py(env: &Env, args: &[&str], cache: Option<&Path>) -> (bool, String) {
    let mut c = Command::new(python());
    c.arg(CHECK).args(args).current_dir(env.path(""));
    c.env("HF_HOME", env.path("hf-home"))
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_UPDATE_CHECK", "1")
        .env_remove("HF_HUB_DISABLE_SYMLINKS")
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_TOKEN");
    if let Some(cache) = cache {
        c.env("HF_HUB_OFFLINE", "1").env("HF_HUB_CACHE", cache);
    }
    let out = c.output().expect("run python");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text += &String::from_utf8_lossy(&out.stderr);
    }
    (out.status.success(), text)
}

/// A repository snapshot to pack: files as (path, content, stored in LFS).
#[derive(Clone)]
pub struct Repo {
    pub name: &'static str,
    pub repo_type: HfRepoType,
    pub repo_id: &'static str,
    pub revision: &'static str,
    pub commit: String,
    pub complete: bool,
    pub files: Vec<(&'static str, Vec<u8>, bool)>,
    /// A wrong etag to put in the manifest for one path.
    pub bad_etag: Option<(&'static str, String)>,
}

pub fn commit(n: u8) -> String {
    format!("{:02x}", n).repeat(20)
}

impl Repo {
    /// The offline check's `load` for this snapshot, requested at `revision`.
    pub fn load(&self, revision: &str) -> serde_json::Value {
        let files: BTreeMap<&str, String> = self
            .files
            .iter()
            .map(|(p, d, _)| (*p, Digest::of(d).hex()))
            .collect();
        json!({"repo_id": self.repo_id, "repo_type": self.repo_type.as_str(),
               "revision": revision, "commit": self.commit, "files": files})
    }
}

/// A model with sub-folders, an LFS file and two paths sharing one content.
fn model(commit_no: u8, config: &str) -> Repo {
    Repo {
        name: "tiny-model",
        repo_type: HfRepoType::Model,
        repo_id: "org/tiny-model",
        revision: "main",
        commit: commit(commit_no),
        complete: true,
        files: vec![
            ("config.json", config.as_bytes().to_vec(), false),
            ("README.md", b"# tiny\n".to_vec(), false),
            ("a/b/c.txt", b"deep\n".to_vec(), false),
            ("a/copy-of-config.json", config.as_bytes().to_vec(), false),
            ("1_Pooling/config.json", b"{\"pooling\": 1}".to_vec(), false),
            ("model.safetensors", pseudo_random(300_000, 7), true),
        ],
        bad_etag: None,
    }
}

fn dataset() -> Repo {
    Repo {
        name: "tiny-data",
        repo_type: HfRepoType::Dataset,
        repo_id: "org/tiny-data",
        revision: "refs/pr/1",
        commit: commit(0xd1),
        complete: true,
        files: vec![
            ("data/train.csv", b"a,b\n1,2\n".to_vec(), false),
            ("data/big.parquet", pseudo_random(70_000, 9), true),
        ],
        bad_etag: None,
    }
}

/// No org, requested by its commit: no ref is written.
fn gpt2() -> Repo {
    let c = commit(0x62);
    Repo {
        name: "gpt2",
        repo_type: HfRepoType::Model,
        repo_id: "gpt2",
        revision: Box::leak(c.clone().into_boxed_str()),
        commit: c,
        complete: true,
        files: vec![("vocab.json", b"{\"a\": 0}".to_vec(), false)],
        bad_etag: None,
    }
}

/// Packs `repos` into `env/out` (64 KiB chunks) and verifies it.
pub fn pack(env: &Env, out: &str, repos: &[Repo]) -> Admitted {
    pack_seq(env, out, repos, 1)
}

/// [`pack`] at sequence `sequence` of channel `hf` (an update of the channel).
pub fn pack_seq(env: &Env, out: &str, repos: &[Repo], sequence: u64) -> Admitted {
    if !env.path("k").exists() {
        env.keygen("k");
    }
    let key = SigningKey::load(&env.path("k")).unwrap();
    let mut blobs = Vec::new();
    let mut seen = HashSet::new();
    let mut artifacts = Vec::new();
    for (ri, r) in repos.iter().enumerate() {
        // Git blob SHA-1s from Python's hashlib, independent of airlock.
        let paths: Vec<PathBuf> = r
            .files
            .iter()
            .enumerate()
            .map(|(i, (_, d, _))| env.write(&format!("in/{out}/{ri}/{i}"), d))
            .collect();
        let mut args = vec!["etags"];
        args.extend(paths.iter().map(|p| p.to_str().unwrap()));
        let sha1s: Vec<String> = py(env, &args, None).lines().map(str::to_string).collect();
        let mut entries = Vec::new();
        let mut dirs = BTreeSet::new();
        let mut files = Vec::new();
        for (((path, data, lfs), sha1), src) in r.files.iter().zip(sha1s).zip(&paths) {
            let digest = Digest::of(data);
            if seen.insert(digest) {
                blobs.push(PlannedBlob::file(digest, data.len() as u64, src));
            }
            let mut p = Path::new(path).parent();
            while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
                dirs.insert(d.to_str().unwrap().to_string());
                p = d.parent();
            }
            entries.push(Entry {
                path: path.to_string(),
                kind: EntryType::File,
                blob: Some(digest),
                size: Some(data.len() as u64),
                executable: false,
            });
            let etag = match &r.bad_etag {
                Some((p, etag)) if p == path => etag.clone(),
                _ if *lfs => digest.hex(),
                _ => sha1,
            };
            files.push(HfFile {
                path: path.to_string(),
                etag,
                pointer_oid: None,
                xet_hash: None,
            });
        }
        entries.extend(dirs.into_iter().map(|d| Entry {
            path: d,
            kind: EntryType::Dir,
            blob: None,
            size: None,
            executable: false,
        }));
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        artifacts.push(Artifact {
            name: r.name.into(),
            kind: ArtifactKind::HfRepo,
            source: format!("hf://{}", r.repo_id),
            identity: format!("{}@{}", r.repo_id, r.commit),
            entries,
            image: None,
            hf: Some(HfInfo {
                endpoint: "https://huggingface.co".into(),
                repo_type: r.repo_type,
                repo_id: r.repo_id.into(),
                revision: r.revision.into(),
                commit: r.commit.clone(),
                complete: r.complete,
                files,
            }),
        });
    }
    let opts = PackOptions {
        channel: "hf".into(),
        sequence,
        created: std::time::SystemTime::now(),
        expires: None,
        chunk_size: 64 * 1024,
        volumes: None,
    };
    let dir = OutDir::prepare(&env.path(out)).unwrap();
    bundle::pack(dir, artifacts, &blobs, &[key], &opts, &Silent).unwrap();
    let trust = PublicKey::load(env.path("k.pub").to_str().unwrap()).unwrap();
    let now = VerifyOptions {
        now: std::time::SystemTime::now(),
    };
    Admitted::without_state(bundle::verify(&env.path(out), &[trust], &now, &Silent).unwrap())
}

fn opts(layout: SnapshotLayout) -> HfCacheOptions {
    HfCacheOptions { layout }
}

fn import(vb: &Admitted, cache: &Path, layout: SnapshotLayout) -> HfCachePlan {
    let plan = hf_cache::plan(vb, cache, &opts(layout)).unwrap();
    hf_cache::execute(vb, &plan, &Silent).unwrap();
    plan
}

pub fn offline_check(
    env: &Env,
    cache: &Path,
    loads: Vec<serde_json::Value>,
    scan: serde_json::Value,
) {
    let (ok, out) = try_offline_check(env, cache, loads, scan);
    assert!(ok, "offline check failed:\n{out}");
}

fn try_offline_check(
    env: &Env,
    cache: &Path,
    loads: Vec<serde_json::Value>,
    scan: serde_json::Value,
) -> (bool, String) {
    let spec = env.write(
        "spec.json",
        serde_json::to_vec(&json!({"loads": loads, "scan": scan})).unwrap(),
    );
    try_py(env, &["check", spec.to_str().unwrap()], Some(cache))
}

/// The modes the client's files and directories get here: 0666 / 0777 less the umask.
fn umask_modes(env: &Env) -> (u32, u32) {
    use std::os::unix::fs::PermissionsExt;
    let f = env.write("probe/f", b"");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    (mode(&f), mode(&env.path("probe")))
}

#[test]
fn repos_load_offline_with_the_real_client() {
    let env = Env::new();
    let (m, d, g) = (model(1, "{\"v\": 1}"), dataset(), gpt2());
    let vb = pack(&env, "b", &[m.clone(), d.clone(), g.clone()]);
    let cache = env.path("cache");
    let plan = import(&vb, &cache, SnapshotLayout::Symlinks);
    assert!(plan.create_cachedir_tag);
    // config.json and a/copy-of-config.json share one blob.
    assert_eq!(plan.blobs_to_write(), 5 + 2 + 1);
    assert_eq!(plan.files_to_write(), 6 + 2 + 1);
    assert_eq!(
        plan.refs.len(),
        2,
        "no ref for a revision that is the commit"
    );

    offline_check(
        &env,
        &cache,
        vec![
            m.load("main"),
            m.load(&m.commit),
            d.load("refs/pr/1"),
            g.load(&g.commit),
        ],
        json!([
            {"repo_id": "org/tiny-model", "repo_type": "model", "revisions": {m.commit.clone(): ["main"]}},
            {"repo_id": "org/tiny-data", "repo_type": "dataset", "revisions": {d.commit.clone(): ["refs/pr/1"]}},
            {"repo_id": "gpt2", "repo_type": "model", "revisions": {g.commit.clone(): []}},
        ]),
    );

    // The exact layout.
    let t = tree::snapshot(&cache);
    let (file_mode, dir_mode) = umask_modes(&env);
    let mf = "models--org--tiny-model";
    let sha1 = |p: &str| {
        vb.manifest().artifacts[0]
            .hf
            .as_ref()
            .unwrap()
            .files
            .iter()
            .find(|f| f.path == p)
            .unwrap()
            .etag
            .clone()
    };
    let snap = format!("{mf}/snapshots/{}", m.commit);
    assert_eq!(
        t[&format!("{snap}/config.json")],
        format!("link -> ../../blobs/{}", sha1("config.json"))
    );
    assert_eq!(
        t[&format!("{snap}/a/b/c.txt")],
        format!("link -> ../../../../blobs/{}", sha1("a/b/c.txt"))
    );
    assert_eq!(
        t[&format!("{snap}/1_Pooling/config.json")],
        format!("link -> ../../../blobs/{}", sha1("1_Pooling/config.json"))
    );
    let lfs = Digest::of(&m.files[5].1).hex();
    assert_eq!(
        t[&format!("{snap}/model.safetensors")],
        format!("link -> ../../blobs/{lfs}")
    );
    assert_eq!(
        t[&format!("{mf}/blobs/{lfs}")],
        format!("file {file_mode:o} sha256:{lfs}")
    );
    for (path, v) in &t {
        if v.starts_with("dir") {
            assert_eq!(*v, format!("dir {dir_mode:o}"), "{path}");
        } else if v.starts_with("file") {
            assert!(
                v.starts_with(&format!("file {file_mode:o} ")),
                "{path}: {v}"
            );
        }
        // A tree listing only for the complete snapshot whose files all have their git ids
        // (gpt2: no LFS file; the hand-made LFS entries here carry no pointer id).
        assert!(
            (!path.contains("trees") || path.starts_with("models--gpt2/trees"))
                && !path.contains(".airlock-tmp"),
            "{path}"
        );
    }
    let trees: Vec<&String> = t.keys().filter(|p| p.contains("/trees/")).collect();
    assert_eq!(trees.len(), 1, "{trees:?}");
    let listing: serde_json::Value =
        serde_json::from_slice(&fs::read(cache.join(trees[0])).unwrap()).unwrap();
    assert_eq!(listing["format_version"], 1);
    assert!(listing["files"]
        .as_object()
        .unwrap()
        .values()
        .all(|f| f["blob_id"].as_str().unwrap().len() == 40));
    assert_eq!(
        fs::read(cache.join(format!("{mf}/refs/main"))).unwrap(),
        m.commit.as_bytes()
    );
    assert_eq!(
        fs::read(cache.join("datasets--org--tiny-data/refs/refs/pr/1")).unwrap(),
        d.commit.as_bytes(),
        "nested refs, as the client writes them; no newline"
    );
    assert!(!cache.join("models--gpt2/refs").exists());
    assert_eq!(
        fs::read_to_string(cache.join("CACHEDIR.TAG")).unwrap(),
        CACHEDIR_TAG_CONTENT
    );

    // Re-importing is a no-op.
    let again = hf_cache::plan(&vb, &cache, &opts(SnapshotLayout::Symlinks)).unwrap();
    assert!(again.is_noop(), "{again:#?}");
    hf_cache::execute(&vb, &again, &Silent).unwrap();
    assert_eq!(tree::snapshot(&cache), t);
}

#[test]
fn a_partial_snapshot_loads_offline() {
    let env = Env::new();
    let mut m = model(1, "{}");
    m.complete = false;
    m.files.retain(|(p, _, _)| p.ends_with(".json"));
    let vb = pack(&env, "b", std::slice::from_ref(&m));
    let cache = env.path("cache");
    let plan = import(&vb, &cache, SnapshotLayout::Symlinks);
    assert!(!cache.join("models--org--tiny-model/trees").exists());
    // The plan serialises for --json.
    let v = serde_json::to_value(&plan).unwrap();
    assert_eq!(v["layout"], "symlinks");
    assert_eq!(v["repos"][0]["complete"], false);
    assert_eq!(v["repos"][0]["repo_type"], "model");
    assert_eq!(v["refs"][0]["action"], "create");
    assert_eq!(v["files"][0]["action"], "write");
    assert!(v["files"][0]["link"]
        .as_str()
        .unwrap()
        .starts_with("../../"));
    offline_check(
        &env,
        &cache,
        vec![m.load("main")],
        json!([{"repo_id": "org/tiny-model", "repo_type": "model", "revisions": {m.commit.clone(): ["main"]}}]),
    );
}

#[test]
fn an_import_merges_into_a_cache_holding_other_revisions_and_repos() {
    let env = Env::new();
    let cache = env.path("cache");
    let (old, d) = (model(1, "{\"v\": 1}"), dataset());
    import(
        &pack(&env, "b1", &[old.clone(), d.clone()]),
        &cache,
        SnapshotLayout::Symlinks,
    );
    let new = model(2, "{\"v\": 2}");
    let vb = pack(&env, "b2", std::slice::from_ref(&new));
    let plan = hf_cache::plan(&vb, &cache, &opts(SnapshotLayout::Symlinks)).unwrap();
    // Only the changed config is a new blob; main moves.
    let written: Vec<&str> = plan
        .blobs
        .iter()
        .filter(|b| b.action == Action::Write)
        .map(|b| b.etag.as_str())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(plan.refs[0].action, RefAction::Update);
    assert_eq!(plan.refs[0].previous.as_deref(), Some(old.commit.as_str()));
    hf_cache::execute(&vb, &plan, &Silent).unwrap();
    offline_check(
        &env,
        &cache,
        vec![new.load("main"), old.load(&old.commit), d.load("refs/pr/1")],
        json!([
            {"repo_id": "org/tiny-model", "repo_type": "model",
             "revisions": {old.commit.clone(): [], new.commit.clone(): ["main"]}},
            {"repo_id": "org/tiny-data", "repo_type": "dataset", "revisions": {d.commit.clone(): ["refs/pr/1"]}},
        ]),
    );
    assert_eq!(
        fs::read(cache.join("models--org--tiny-model/refs/main")).unwrap(),
        new.commit.as_bytes()
    );
}

#[test]
fn the_plain_files_layout_loads_offline() {
    let env = Env::new();
    let (m, d) = (model(1, "{}"), dataset());
    let vb = pack(&env, "b", &[m.clone(), d.clone()]);
    let cache = env.path("cache");
    import(&vb, &cache, SnapshotLayout::Files);
    let t = tree::snapshot(&cache);
    assert!(t.values().all(|v| !v.starts_with("link")), "{t:#?}");
    assert!(!t.keys().any(|p| p.contains("/blobs/")), "{t:#?}");
    assert_eq!(
        t[&format!(
            "models--org--tiny-model/snapshots/{}/model.safetensors",
            m.commit
        )],
        format!(
            "file {:o} {}",
            umask_modes(&env).0,
            Digest::of(&m.files[5].1)
        )
    );
    offline_check(
        &env,
        &cache,
        vec![m.load("main"), d.load("refs/pr/1")],
        json!([
            {"repo_id": "org/tiny-model", "repo_type": "model", "revisions": {m.commit.clone(): ["main"]}},
            {"repo_id": "org/tiny-data", "repo_type": "dataset", "revisions": {d.commit.clone(): ["refs/pr/1"]}},
        ]),
    );
    let again = hf_cache::plan(&vb, &cache, &opts(SnapshotLayout::Files)).unwrap();
    assert!(again.is_noop(), "{again:#?}");
    // A symlinked snapshot of the same commit is kept as it is, too.
    let other = env.path("cache2");
    import(&vb, &other, SnapshotLayout::Symlinks);
    assert!(hf_cache::plan(&vb, &other, &opts(SnapshotLayout::Files))
        .unwrap()
        .is_noop());
}

#[test]
fn a_damaged_blob_stops_the_import_before_any_write() {
    let env = Env::new();
    let m = model(1, "{}");
    let vb = pack(&env, "b", &[m.clone(), dataset()]);
    let cache = env.path("cache");
    let lfs = Digest::of(&m.files[5].1).hex();
    env.write(
        &format!("cache/models--org--tiny-model/blobs/{lfs}"),
        b"not the weights",
    );
    let before = tree::snapshot(&cache);
    let err = hf_cache::plan(&vb, &cache, &opts(SnapshotLayout::Symlinks)).unwrap_err();
    assert!(matches!(err, airlock::Error::Conflict(_)), "{err}");
    assert!(err.to_string().contains(&lfs), "{err}");
    assert_eq!(tree::snapshot(&cache), before);
}

#[test]
fn a_git_etag_that_does_not_match_the_content_is_refused() {
    let env = Env::new();
    let mut m = model(1, "{}");
    m.bad_etag = Some((
        "a/b/c.txt",
        "0123456789abcdef0123456789abcdef01234567".into(),
    ));
    let vb = pack(&env, "b", std::slice::from_ref(&m));
    // Planning reads nothing from the chunks; the etag is checked as the blob is staged, and
    // the import writes nothing.
    let plan = hf_cache::plan(&vb, &env.path("cache"), &opts(SnapshotLayout::Symlinks)).unwrap();
    let err = hf_cache::execute(&vb, &plan, &Silent).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("a/b/c.txt"), "{msg}");
    assert!(
        msg.contains("git blob SHA-1 mismatch: expected 0123456789abcdef"),
        "{msg}"
    );
    assert_eq!(err.exit_code(), 3, "content rejected: {msg}");
    assert!(!env.path("cache").exists());
}

#[test]
fn a_no_exist_marker_for_a_carried_file_is_a_conflict() {
    let env = Env::new();
    let m = model(1, "{}");
    let vb = pack(&env, "b", std::slice::from_ref(&m));
    env.write(
        &format!(
            "cache/models--org--tiny-model/.no_exist/{}/a/b/c.txt",
            m.commit
        ),
        b"",
    );
    let before = tree::snapshot(&env.path("cache"));
    let err = hf_cache::plan(&vb, &env.path("cache"), &opts(SnapshotLayout::Symlinks)).unwrap_err();
    assert!(
        err.to_string().contains("does not exist at commit"),
        "{err}"
    );
    assert_eq!(tree::snapshot(&env.path("cache")), before);
}

#[test]
fn a_snapshot_link_pointing_elsewhere_is_a_conflict() {
    let env = Env::new();
    let m = model(1, "{}");
    let vb = pack(&env, "b", std::slice::from_ref(&m));
    let cache = env.path("cache");
    let snap = cache.join(format!("models--org--tiny-model/snapshots/{}", m.commit));
    fs::create_dir_all(&snap).unwrap();
    std::os::unix::fs::symlink("../../blobs/0000", snap.join("README.md")).unwrap();
    let before = tree::snapshot(&cache);
    let err = hf_cache::plan(&vb, &cache, &opts(SnapshotLayout::Symlinks)).unwrap_err();
    assert!(
        err.to_string().contains("is a link to ../../blobs/0000"),
        "{err}"
    );
    assert_eq!(tree::snapshot(&cache), before);
}

#[test]
fn a_failure_while_writing_leaves_the_cache_as_it_was() {
    let env = Env::new();
    let cache = env.path("cache");
    let old = model(1, "{\"v\": 1}");
    import(&pack(&env, "b1", &[old]), &cache, SnapshotLayout::Symlinks);
    let before = tree::snapshot(&cache);
    let vb = pack(&env, "b2", &[model(2, "{\"v\": 2}"), dataset()]);
    let plan = hf_cache::plan(&vb, &cache, &opts(SnapshotLayout::Symlinks)).unwrap();
    assert!(plan.blobs_to_write() >= 3);
    // The media change after verification: the last chunk no longer holds what it did.
    let last = vb.chunk_path(vb.manifest().chunks.len() as u32 - 1);
    let mut bytes = fs::read(&last).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x55;
    }
    fs::write(&last, bytes).unwrap();
    let copied = Counter::default();
    let err = hf_cache::execute(&vb, &plan, &copied).unwrap_err();
    // The staged import reads each chunk whole: the damage is named by its chunk.
    let name = last.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        error_text(&err).contains(&format!("corrupt chunk: {name}")),
        "{err}"
    );
    let copied = copied.0.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        copied > 70_000,
        "failed only after writing blobs ({copied} bytes)"
    );
    assert_eq!(
        tree::snapshot(&cache),
        before,
        "created files removed, main restored"
    );
}

#[derive(Default)]
struct Counter(std::sync::atomic::AtomicU64);

impl airlock::progress::Progress for Counter {
    fn start(&self, _: &str, _: u64) {}
    fn inc(&self, n: u64) {
        self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    fn finish(&self) {}
}

/// The checks have teeth: a ref with a trailing newline (as `echo $SHA > refs/main` leaves)
/// breaks the real client offline, and a dangling link makes scan_cache_dir warn.
#[test]
fn the_offline_check_catches_what_breaks_the_client() {
    let env = Env::new();
    let m = model(1, "{}");
    let vb = pack(&env, "b", std::slice::from_ref(&m));
    let cache = env.path("cache");
    import(&vb, &cache, SnapshotLayout::Symlinks);
    let scan = || json!([{"repo_id": "org/tiny-model", "repo_type": "model", "revisions": {m.commit.clone(): ["main"]}}]);
    let main = cache.join("models--org--tiny-model/refs/main");
    fs::write(&main, format!("{}\n", m.commit)).unwrap();
    let (ok, out) = try_offline_check(&env, &cache, vec![m.load("main")], json!([]));
    assert!(!ok, "a ref with a newline passed:\n{out}");
    fs::write(&main, &m.commit).unwrap();
    offline_check(&env, &cache, vec![m.load("main")], scan());
    let lfs = Digest::of(&m.files[5].1).hex();
    fs::remove_file(cache.join(format!("models--org--tiny-model/blobs/{lfs}"))).unwrap();
    let (ok, out) = try_offline_check(&env, &cache, vec![], scan());
    assert!(!ok && out.contains("broken symlink"), "{out}");
}

/// huggingface_hub 2.x may keep Xet payloads in a cache-wide store (`DIR/blobs/<2 hex>/<hash>`,
/// marked by `.huggingface-shared-blobs`) with `blobs/<etag>` a link into it: such a blob is
/// kept, not a conflict.
#[test]
fn a_blob_linked_into_the_shared_store_is_kept() {
    let env = Env::new();
    let m = model(1, "{}");
    let vb = pack(&env, "b", std::slice::from_ref(&m));
    let cache = env.path("cache");
    import(&vb, &cache, SnapshotLayout::Symlinks);
    let lfs = Digest::of(&m.files[5].1).hex();
    let repo_blob = cache.join(format!("models--org--tiny-model/blobs/{lfs}"));
    let store = cache.join(format!("blobs/{}", &lfs[..2]));
    fs::create_dir_all(&store).unwrap();
    fs::write(cache.join("blobs/.huggingface-shared-blobs"), "1\n").unwrap();
    fs::rename(&repo_blob, store.join(&lfs)).unwrap();
    std::os::unix::fs::symlink(format!("../../blobs/{}/{lfs}", &lfs[..2]), &repo_blob).unwrap();
    let plan = hf_cache::plan(&vb, &cache, &opts(SnapshotLayout::Symlinks)).unwrap();
    assert!(plan.is_noop(), "{plan:#?}");
    offline_check(
        &env,
        &cache,
        vec![m.load("main")],
        json!([{"repo_id": "org/tiny-model", "repo_type": "model", "revisions": {m.commit.clone(): ["main"]}}]),
    );
}

/// One bundle carrying two revisions of a repo (a tag and `main`): two snapshots sharing the
/// unchanged blobs, two refs.
#[test]
fn two_revisions_of_a_repo_in_one_bundle_share_blobs() {
    let env = Env::new();
    let mut v1 = model(1, "{\"v\": 1}");
    (v1.name, v1.revision) = ("tiny-model-v1", "v1.0");
    let main = model(2, "{\"v\": 2}");
    let vb = pack(&env, "b", &[v1.clone(), main.clone()]);
    let cache = env.path("cache");
    let plan = import(&vb, &cache, SnapshotLayout::Symlinks);
    assert_eq!(
        plan.blobs.len(),
        5 + 1,
        "only the changed config is a second blob"
    );
    assert_eq!(plan.files.len(), 12);
    offline_check(
        &env,
        &cache,
        vec![main.load("main"), v1.load("v1.0")],
        json!([{"repo_id": "org/tiny-model", "repo_type": "model",
                "revisions": {v1.commit.clone(): ["v1.0"], main.commit.clone(): ["main"]}}]),
    );
}

/// A revision that looks like a commit hash but is not the commit would be a ref the client
/// never reads (it takes such revisions as commits): refused.
#[test]
fn a_revision_that_looks_like_another_commit_is_refused() {
    let env = Env::new();
    let mut m = model(1, "{}");
    m.revision = "0202020202020202020202020202020202020202";
    let vb = pack(&env, "b", std::slice::from_ref(&m));
    let err = hf_cache::plan(&vb, &env.path("cache"), &opts(SnapshotLayout::Symlinks)).unwrap_err();
    assert!(err.to_string().contains("looks like a commit"), "{err}");
}
