//! Import interrupted while it commits (issue 10): SIGINT, SIGTERM and a Ctrl-C typed on a
//! pseudo-terminal after the first target has committed, while the registry's tag is being set
//! (held by a proxy until the signal is in), and SIGINT while the files target renames files
//! into place. The commit is held against the watchdog and rolls back through the checks in
//! `Area::install`/`write_small` and between tags: exit 130/143, a message saying so, every
//! store as it was (files removed, a moved tag put back), the audit log says `interrupted`,
//! and a re-run completes. `staged.rs` covers the same signals while the import stages.

use std::path::Path;

use airlock::oci::client::{ConnectOptions, Registry};

use crate::crash_targets::{check_tag, image_layout, Image};
use crate::registry::TestRegistry;
use crate::signals_support::{stop_seen, HoldingProxy, Running, Stop, STOP_DEADLINE};
use crate::support::tree;
use crate::support::*;

/// The audit log's outcomes, in order.
fn outcomes(env: &Env) -> Vec<String> {
    let log = String::from_utf8_lossy(&env.read(".airlock-state/audit.jsonl")).into_owned();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["outcome"].as_str().map(str::to_string))
        .collect()
}

/// Nothing of the import is visible under `dest`, and no staging is left.
#[track_caller]
fn nothing_under(dest: &Path, what: &str) {
    let (now, hidden) = tree::visible(dest);
    assert!(
        now.is_empty() && hidden.is_empty(),
        "{what}: left {now:#?} {hidden:?}"
    );
}

#[test]
fn a_signal_while_the_registry_tags_rolls_back_every_target_and_a_rerun_completes() {
    let registry = TestRegistry::start();
    let reg = Registry::new(&registry.addr, &ConnectOptions::default()).unwrap();
    let env = Env::new();
    env.keygen("k");
    for i in 0..6 {
        env.write(
            &format!("src/d{}/f{i}.bin", i % 2),
            pseudo_random(40_000, 70 + i),
        );
    }
    env.write("src/config.json", br#"{"model_type": "held"}"#);
    // Two images whose tags `t` name other (older) images in the registry beforehand.
    // (repository name, the image the bundle carries, the image its tag names before)
    let mut images: Vec<(String, Image, Image)> = Vec::new();
    let mut sources = vec!["src".to_string()];
    for (i, name) in ["alpha", "beta"].into_iter().enumerate() {
        let (layout, md, blobs) = image_layout(&env.path("img"), name, 96 << 10, 10 + i as u64);
        let (_, omd, oblobs) = image_layout(&env.path("old"), name, 32 << 10, 20 + i as u64);
        images.push((name.to_string(), (md, blobs), (omd, oblobs)));
        sources.push(format!("oci-layout://{}:t", layout.display()));
    }
    let srcs: Vec<&str> = sources.iter().map(String::as_str).collect();
    env.pack(&srcs, "k", "b", &["--chunk-size", "64KiB"]).ok();

    for (round, how) in Stop::ALL.into_iter().enumerate() {
        let what = format!("{how:?}");
        let prefix = format!("m{round}");
        for (name, _, _) in &images {
            registry.push(
                &env.path(&format!("old/{name}")),
                &format!("{prefix}/{name}:t"),
                None,
            );
        }
        // The first `PUT …/manifests/t` (the first tag set) waits until the signal is in.
        let proxy = HoldingProxy::start(&registry.addr, |line| {
            line.starts_with("PUT ") && line.ends_with("/manifests/t HTTP/1.1")
        });
        let dest = env.path(&format!("dest{round}"));
        let target = format!("{}/{prefix}", proxy.addr);
        let args = [
            "import",
            "b",
            "--trust",
            "k.pub",
            "--files",
            dest.to_str().unwrap(),
            "--registry",
            &target,
        ];
        let mut run = Running::start(env.command(&args), how);
        run.wait_until("the first tag is being set", || proxy.holding());
        // Commit is under way: the files target has committed everything.
        let (committed, _) = tree::visible(&dest);
        assert!(
            committed.contains_key("src/d1/f5.bin") && committed.contains_key("src/config.json"),
            "{what}: the files were not committed before the tags: {committed:#?}"
        );
        run.stop(how);
        let pid = run.pid();
        run.wait_until("the stop is taken in", || stop_seen(pid));
        proxy.release();
        let r = run.wait(STOP_DEADLINE);
        r.code(how.exit_code())
            .stderr_has(&format!("interrupted by {}", how.signal_name()));
        // Every store as it was: no file, each tag on its old image (the tag moved while the
        // signal came in was put back: two PUTs of a tag, the move and the restore).
        nothing_under(&dest, &what);
        assert_eq!(proxy.matched(), 2, "{what}: tag PUTs");
        for (name, new, old) in &images {
            let repo = format!("{prefix}/{name}");
            assert_eq!(
                check_tag(&reg, &repo, new, Some(old), &what),
                Some(old.0),
                "{what}: {repo}:t was not put back"
            );
        }
        assert_eq!(
            outcomes(&env).last().map(String::as_str),
            Some("interrupted"),
            "{what}"
        );
        // The re-run completes every target.
        env.run_for(120, &args).ok();
        let (after, hidden) = tree::visible(&dest);
        assert!(
            after == committed,
            "{what}: the re-run did not complete the files"
        );
        assert!(hidden.is_empty(), "{what}: the re-run left {hidden:?}");
        for (name, new, _) in &images {
            let repo = format!("{prefix}/{name}");
            assert_eq!(check_tag(&reg, &repo, new, None, &what), Some(new.0));
        }
        assert_eq!(outcomes(&env).last().map(String::as_str), Some("accepted"));
    }
}

#[test]
fn sigint_while_files_are_renamed_into_place_rolls_them_back_and_a_rerun_completes() {
    let env = Env::new();
    env.keygen("k");
    // Many small files: renaming them into place takes a while, and the signal comes as soon
    // as the first of them (or a folder) shows.
    for d in 0..20 {
        for f in 0..100 {
            env.write(
                &format!("src/d{d:02}/f{f:03}.bin"),
                pseudo_random(200, d * 1000 + f),
            );
        }
    }
    env.pack(&["src"], "k", "b", &[]).ok();
    let args = ["import", "b", "--trust", "k.pub", "--files", "dest"];
    let dest = env.path("dest");
    let (mut mid_commit, mut completed) = (0, 0);
    for attempt in 0..6 {
        if mid_commit > 0 && attempt >= 2 {
            break;
        }
        let _ = std::fs::remove_dir_all(&dest);
        let mut run = Running::start(env.command(&args), Stop::Int);
        // The first name that is not the staging area: commit has begun.
        let committing = || {
            std::fs::read_dir(&dest).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.file_name() != airlock::stage::STAGING_DIR)
            })
        };
        run.wait_until("the commit has begun", committing);
        run.stop(Stop::Int);
        let r = run.wait(STOP_DEADLINE);
        let when = format!("attempt {attempt}");
        if r.code == 0 {
            // The signal came after the last step of the commit: the import is complete.
            completed += 1;
            assert_eq!(outcomes(&env).last().map(String::as_str), Some("accepted"));
            assert_eq!(
                env.read("dest/src/d19/f099.bin"),
                pseudo_random(200, 19 * 1000 + 99)
            );
            continue;
        }
        mid_commit += 1;
        r.code(130).stderr_has("interrupted by SIGINT");
        nothing_under(&dest, &when);
        assert_eq!(
            outcomes(&env).last().map(String::as_str),
            Some("interrupted"),
            "{when}"
        );
        env.run_for(120, &args).ok();
        let (after, hidden) = tree::visible(&dest);
        assert!(hidden.is_empty(), "{when}: the re-run left {hidden:?}");
        assert_eq!(
            after.keys().filter(|k| k.ends_with(".bin")).count(),
            2000,
            "{when}"
        );
        assert_eq!(env.read("dest/src/d07/f042.bin"), pseudo_random(200, 7042));
    }
    eprintln!("signal during the rename of 2,000 files: {mid_commit} rolled back, {completed} completed first");
    assert!(
        mid_commit > 0,
        "no signal landed while the files were renamed into place"
    );
}
