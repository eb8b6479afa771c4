//! Updates in place in the files target (issue 13): night 2 of a channel into night 1's
//! `--files` destination replaces the artifacts it changed, each swapped for its new version in
//! one atomic exchange (a reader holding the artifact's directory sees the old tree or the new
//! one, never a mix); the replaced version is kept under `DEST/.airlock/previous/` (`--keep`),
//! `airlock rollback` swaps it back (and a rollback back again), audited; a file changed
//! locally since airlock wrote it is a conflict with nothing written; a signal during the swaps
//! leaves every artifact whole in one version or the other.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::signals_support::{Running, Stop, STOP_DEADLINE};
use crate::support::tree;
use crate::support::*;

/// The version-carrying files of the `model` directory artifact.
const VERSIONED: [&str; 4] = ["serving.yaml", "a.txt", "sub/b.txt", "sub/deep/c.txt"];

/// `night/model/` at version `v`: a large file that never changes, and small ones that carry
/// the version (night 2 changes them).
fn night(env: &Env, v: u32) {
    let _ = fs::remove_dir_all(env.path("night"));
    env.write("night/model/weights.bin", pseudo_random(300_000, 7));
    for f in VERSIONED {
        env.write(&format!("night/model/{f}"), format!("version: {v}\n"));
    }
}

/// Packs night `v` of channel `nightly` into `n{v}`.
fn pack_night(env: &Env, v: u32) {
    night(env, v);
    env.pack(
        &["night/model"],
        "k",
        &format!("n{v}"),
        &["--channel", "nightly", "--sequence", &v.to_string()],
    )
    .ok();
}

fn import(env: &Env, v: u32, extra: &[&str]) -> Run {
    let b = format!("n{v}");
    let mut args = vec!["import", &b, "--trust", "k.pub", "--files", "dest"];
    args.extend_from_slice(extra);
    env.run_for(120, &args)
}

/// The version the artifact at `dir` holds: every versioned file must say the same.
#[track_caller]
fn version_of(dir: &Path) -> u32 {
    let vs: BTreeSet<String> = VERSIONED
        .iter()
        .map(|f| fs::read_to_string(dir.join(f)).unwrap())
        .map(|s| s.lines().next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(vs.len(), 1, "{}: a mix of versions {vs:?}", dir.display());
    let v = vs.into_iter().next().unwrap();
    v.trim().strip_prefix("version: ").unwrap().parse().unwrap()
}

/// The kept versions of `model` in `dest`, oldest first, by their version.
fn kept(env: &Env) -> Vec<u32> {
    let dir = env.path("dest/.airlock/previous/model");
    let mut names: Vec<_> = match fs::read_dir(&dir) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(_) => return Vec::new(),
    };
    names.sort();
    names.iter().map(|p| version_of(p)).collect()
}

fn bundle_id(env: &Env, v: u32) -> String {
    let m: serde_json::Value =
        serde_json::from_slice(&env.read(&format!("n{v}/manifest.json"))).unwrap();
    m["bundle_id"].as_str().unwrap().to_string()
}

fn audit_actions(env: &Env) -> Vec<(String, String)> {
    let log = String::from_utf8_lossy(&env.read(".airlock-state/audit.jsonl")).into_owned();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["action"].as_str().unwrap_or_default().to_string(),
                v["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn night_two_into_night_ones_destination_swaps_the_changed_artifact_and_a_reader_never_sees_a_mix()
{
    let env = Env::new();
    env.keygen("k");
    pack_night(&env, 1);
    import(&env, 1, &[]).ok();
    assert_eq!(version_of(&env.path("dest/model")), 1);
    pack_night(&env, 2);

    // A reader opening the artifact's directory once per pass (as a server loading a model
    // does) and reading every versioned file through it, over and over during the import.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, dir) = (Arc::clone(&stop), env.path("dest/model"));
        std::thread::spawn(move || {
            let (mut passes, mut seen) = (0u64, BTreeSet::new());
            while !stop.load(Ordering::Relaxed) || passes == 0 {
                let Ok(d) = fs::File::open(&dir) else {
                    continue;
                };
                let base = format!("/proc/self/fd/{}", d.as_raw_fd());
                let mut versions = BTreeSet::new();
                for f in VERSIONED {
                    let mut s = String::new();
                    fs::File::open(format!("{base}/{f}"))
                        .and_then(|mut h| h.read_to_string(&mut s))
                        .unwrap_or_else(|e| panic!("pass {passes}: {f}: {e}"));
                    versions.insert(s);
                }
                assert_eq!(versions.len(), 1, "pass {passes} saw a mix: {versions:?}");
                seen.extend(versions);
                passes += 1;
            }
            (passes, seen)
        })
    };
    let r = import(&env, 2, &["--json"]);
    stop.store(true, Ordering::Relaxed);
    let (passes, seen) = reader.join().expect("the reader never saw a mix");
    r.ok();
    eprintln!("reader: {passes} passes, saw {seen:?}");
    let j = r.json();
    assert_eq!(j["replaced"], 1, "{j}");
    assert_eq!(
        j["written"],
        VERSIONED.len(),
        "only the changed files are written"
    );
    assert_eq!(
        j["linked"], 1,
        "the unchanged weights are linked, not rewritten"
    );
    assert_eq!(version_of(&env.path("dest/model")), 2);
    assert_eq!(
        env.read("dest/model/weights.bin"),
        pseudo_random(300_000, 7)
    );
    // Night 1's version is kept (the default --keep 1), named by its bundle.
    assert_eq!(kept(&env), vec![1]);
    let prev = fs::read_dir(env.path("dest/.airlock/previous/model"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    assert!(prev.ends_with(&bundle_id(&env, 1)), "{prev}");
    // Nothing else is left: no staging, no incoming tree.
    let (_, hidden) = tree::visible(&env.path("dest"));
    assert!(hidden.is_empty(), "{hidden:?}");
    assert!(!env.path("dest/.airlock/incoming").exists());
    // A re-import of night 2 changes nothing.
    let before = tree::snapshot(&env.path("dest"));
    import(&env, 2, &[]).ok();
    assert_eq!(tree::snapshot(&env.path("dest")), before);
}

#[test]
fn keep_n_keeps_that_many_previous_versions_per_artifact() {
    let env = Env::new();
    env.keygen("k");
    for v in 1..=4 {
        pack_night(&env, v);
    }
    for (keep, expect) in [("0", vec![]), ("1", vec![3]), ("2", vec![2, 3])] {
        let _ = fs::remove_dir_all(env.path("dest"));
        let _ = fs::remove_dir_all(env.state_dir());
        for v in 1..=4 {
            import(&env, v, &["--keep", keep]).ok();
        }
        assert_eq!(version_of(&env.path("dest/model")), 4, "--keep {keep}");
        assert_eq!(kept(&env), expect, "--keep {keep}");
        if keep == "0" {
            assert!(
                !env.path("dest/.airlock").exists(),
                "--keep 0 leaves nothing of the update behind"
            );
        }
    }
}

#[test]
fn rollback_swaps_the_kept_version_back_and_a_rollback_of_it_goes_forward_again_audited() {
    let env = Env::new();
    env.keygen("k");
    pack_night(&env, 1);
    pack_night(&env, 2);
    // Nothing to roll back yet.
    import(&env, 1, &[]).ok();
    env.run(&["rollback", "model", "--files", "dest"])
        .code(1)
        .stderr_has("no previous version of model is kept");
    import(&env, 2, &[]).ok();
    env.run(&["rollback", "nothing", "--files", "dest"])
        .code(1)
        .stderr_has("no artifact nothing");
    env.run(&["rollback", "model", "--files", "dest", "--to", "0123"])
        .code(1)
        .stderr_has("no kept version of model was written by bundle 0123");
    // A dry run lists and changes nothing.
    let before = tree::snapshot(&env.path("dest"));
    let dry = env.run(&[
        "rollback",
        "model",
        "--files",
        "dest",
        "--dry-run",
        "--json",
    ]);
    dry.ok();
    assert_eq!(dry.json()["restored"]["bundle_id"], bundle_id(&env, 1));
    assert_eq!(tree::snapshot(&env.path("dest")), before);

    let r = env.run(&["rollback", "model", "--files", "dest", "--json"]);
    r.ok();
    let j = r.json();
    assert_eq!(j["restored"]["bundle_id"], bundle_id(&env, 1), "{j}");
    assert_eq!(j["replaced"], bundle_id(&env, 2), "{j}");
    assert_eq!(version_of(&env.path("dest/model")), 1);
    assert_eq!(kept(&env), vec![2]);
    // The rollback of the rollback: forward again, to night 2.
    env.run(&["rollback", "model", "--files", "dest"])
        .ok()
        .stdout_has("swapped");
    assert_eq!(version_of(&env.path("dest/model")), 2);
    assert_eq!(kept(&env), vec![1]);
    // By bundle id.
    let to = bundle_id(&env, 1);
    env.run(&["rollback", "model", "--files", "dest", "--to", &to])
        .ok();
    assert_eq!(version_of(&env.path("dest/model")), 1);
    // Audited, and the chain still verifies.
    let rollbacks: Vec<_> = audit_actions(&env)
        .into_iter()
        .filter(|(a, _)| a == "rollback")
        .collect();
    assert_eq!(
        rollbacks.iter().filter(|(_, o)| o == "accepted").count(),
        3,
        "{rollbacks:?}"
    );
    env.run(&["audit", "verify"]).ok();
    env.run(&["audit", "show"]).ok().stdout_has("rollback");
    // The holdings follow the swaps: night 2 (newer than what is there now, night 1) updates
    // in place again.
    import(&env, 2, &[]).ok();
    assert_eq!(version_of(&env.path("dest/model")), 2);
}

#[test]
fn a_file_changed_locally_is_a_conflict_naming_it_and_both_digests_with_nothing_written() {
    let env = Env::new();
    env.keygen("k");
    pack_night(&env, 1);
    pack_night(&env, 2);
    import(&env, 1, &[]).ok();
    env.write("dest/model/sub/b.txt", "edited in the enclave\n");
    let recorded = airlock::format::Digest::of(b"version: 1\n");
    let found = airlock::format::Digest::of(b"edited in the enclave\n");
    let before = tree::snapshot(&env.path("dest"));
    let holdings = env.read(".airlock-state/holdings.json");
    import(&env, 2, &[])
        .code(1)
        .stderr_has(
            "sub/b.txt already exists with other content: it was changed since airlock wrote it",
        )
        .stderr_has(&format!("recorded {recorded}, found {found}"));
    assert_eq!(tree::snapshot(&env.path("dest")), before);
    assert_eq!(env.read(".airlock-state/holdings.json"), holdings);
    // A file added locally inside the artifact would be moved away by the update: a conflict.
    env.write("dest/model/sub/b.txt", "version: 1\n");
    env.write("dest/model/notes.txt", "mine\n");
    import(&env, 2, &[])
        .code(1)
        .stderr_has("notes.txt is not part of the bundle's model");
    fs::remove_file(env.path("dest/model/notes.txt")).unwrap();
    // Without any record (a destination airlock did not write), other content is a conflict
    // as before.
    let other = Env::new();
    other.keygen("k");
    fs::copy(env.path("k"), other.path("k")).unwrap();
    fs::copy(env.path("k.pub"), other.path("k.pub")).unwrap();
    pack_night(&other, 2);
    night(&other, 1);
    fs::create_dir_all(other.path("dest")).unwrap();
    fs::rename(other.path("night/model"), other.path("dest/model")).unwrap();
    import(&other, 2, &[])
        .code(1)
        .stderr_has("model/a.txt already exists with other content");
    // A link planted where the kept versions go would redirect them: a conflict.
    std::os::unix::fs::symlink(env.path("elsewhere"), env.path("dest/.airlock")).unwrap();
    fs::create_dir_all(env.path("elsewhere")).unwrap();
    import(&env, 2, &[])
        .code(1)
        .stderr_has(".airlock is not a directory");
    assert_eq!(fs::read_dir(env.path("elsewhere")).unwrap().count(), 0);
    fs::remove_file(env.path("dest/.airlock")).unwrap();
    // The same bundle of another channel, or an older one, does not replace what night 1 wrote.
    import(&env, 2, &[]).ok();
    night(&env, 3);
    env.pack(
        &["night/model"],
        "k",
        "other-channel",
        &["--channel", "weekly", "--sequence", "9"],
    )
    .ok();
    env.run(&[
        "import",
        "other-channel",
        "--trust",
        "k.pub",
        "--files",
        "dest",
    ])
    .code(1)
    .stderr_has("only a newer bundle of that channel replaces it");
    // A rollback whose current version was edited: a conflict unless --force.
    env.write("dest/model/a.txt", "edited\n");
    env.run(&["rollback", "model", "--files", "dest"])
        .code(1)
        .stderr_has("changed since airlock wrote them");
    env.run(&["rollback", "model", "--files", "dest", "--force"])
        .ok();
    assert_eq!(version_of(&env.path("dest/model")), 1);
    assert_eq!(
        audit_actions(&env)
            .iter()
            .filter(|(a, o)| a == "rollback" && o == "failed")
            .count(),
        1
    );
}

#[test]
fn a_signal_during_the_swaps_leaves_every_artifact_whole_in_one_version() {
    let env = Env::new();
    env.keygen("k");
    let n = 150;
    let make = |v: u32| {
        let _ = fs::remove_dir_all(env.path("many"));
        for i in 0..n {
            for f in VERSIONED {
                // Contents differ per artifact: the holdings keep at most 16 places per digest.
                env.write(&format!("many/m{i:03}/{f}"), format!("version: {v}\n{i}\n"));
            }
        }
    };
    let sources: Vec<String> = (0..n).map(|i| format!("many/m{i:03}")).collect();
    let srcs: Vec<&str> = sources.iter().map(String::as_str).collect();
    for v in 1..=2 {
        make(v);
        let seq = v.to_string();
        env.pack(
            &srcs,
            "k",
            &format!("n{v}"),
            &["--channel", "nightly", "--sequence", &seq],
        )
        .ok();
    }
    let args = ["import", "n2", "--trust", "k.pub", "--files", "dest"];
    let (mut stopped, mut completed) = (0, 0);
    for attempt in 0..6 {
        if stopped > 0 && attempt >= 2 {
            break;
        }
        let _ = fs::remove_dir_all(env.path("dest"));
        let _ = fs::remove_dir_all(env.state_dir());
        import(&env, 1, &[]).ok();
        let before = tree::snapshot(&env.path("dest"));
        let mut run = Running::start(env.command(&args), Stop::Int);
        // The first kept version: the swaps have begun.
        let prev = env.path("dest/.airlock/previous");
        run.wait_until("the swaps have begun", || {
            fs::read_dir(&prev).is_ok_and(|mut rd| rd.next().is_some())
        });
        run.stop(Stop::Int);
        let r = run.wait(STOP_DEADLINE);
        for i in 0..n {
            let v = version_of(&env.path(&format!("dest/m{i:03}")));
            assert_eq!(
                v,
                if r.code == 0 { 2 } else { 1 },
                "attempt {attempt}: m{i:03}"
            );
        }
        if r.code == 0 {
            completed += 1;
            continue;
        }
        stopped += 1;
        r.code(130).stderr_has("interrupted by SIGINT");
        // Rolled back: the destination as night 1 left it, nothing of the update behind.
        assert_eq!(
            tree::snapshot(&env.path("dest")),
            before,
            "attempt {attempt}"
        );
        // And a re-run completes.
        env.run_for(120, &args).ok();
        for i in 0..n {
            assert_eq!(version_of(&env.path(&format!("dest/m{i:03}"))), 2);
        }
    }
    eprintln!("signal during {n} swaps: {stopped} rolled back, {completed} completed first");
    assert!(stopped > 0, "no signal landed during the swaps");
}
