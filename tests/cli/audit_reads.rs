//! One bounded, link- and FIFO-safe read of `manifest.json`, shared by verify, inspect and the
//! audit record of a rejection: a manifest that is a FIFO or a symbolic link is refused at once,
//! naming it, and never followed or waited on.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;

use crate::support::*;

/// The sample bundle with its manifest replaced by `make` (given the manifest's path).
fn with_manifest(env: &Env, make: &dyn Fn(&std::path::Path)) {
    env.sample_bundle();
    let m = env.path("b/manifest.json");
    fs::rename(&m, env.path("real-manifest.json")).unwrap();
    make(&m);
}

fn fifo(p: &std::path::Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn inspect_of_a_fifo_or_linked_manifest_fails_at_once() {
    for (what, make) in [
        ("FIFO", &fifo as &dyn Fn(&std::path::Path)),
        ("link", &|p: &std::path::Path| {
            std::os::unix::fs::symlink("../real-manifest.json", p).unwrap()
        }),
    ] {
        let env = Env::new();
        with_manifest(&env, make);
        let before = tree::snapshot_except(env.dir.path(), &[STATE_DIR]);
        // Without trust (the packing side's review), with trust, and as JSON: a guard of 20 s
        // (a FIFO read would block for ever), exit 3, the manifest named.
        for args in [
            &["inspect", "b"][..],
            &["inspect", "b", "--trust", "k.pub"],
            &["inspect", "b", "--json"],
            &["verify", "b", "--trust", "k.pub"],
        ] {
            let r = env.run_for(20, args);
            r.code(3).stderr_has("manifest");
            assert!(
                r.stderr.contains("not a regular file") || r.stderr.contains("symbolic link"),
                "{what} {args:?}: {}",
                r.stderr
            );
        }
        // An import audits the rejection with the same read: nothing followed, nothing waited
        // on, and no digest recorded of what is not a regular file.
        env.run_for(20, &["import", "b", "--trust", "k.pub", "--files", "dest"])
            .code(3);
        let log = fs::read_to_string(env.audit_log()).unwrap();
        let rec: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
        assert_eq!(rec["outcome"], "rejected", "{what}: {rec}");
        assert_eq!(rec["verified"], false);
        assert!(rec["manifest_digest"].is_null(), "{what}: {rec}");
        tree::assert_unchanged(
            &before,
            &tree::snapshot_except(env.dir.path(), &[STATE_DIR]),
            what,
        );
    }
}
