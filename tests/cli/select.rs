//! Choosing what to import (`import --only NAME` / `--skip NAME`), through the real binary:
//! names and globs, a pattern that matches nothing, targets needed only for the selected
//! artifacts, the chunks of the others never read, partial imports in the audit log and the
//! freshness rule for the rest of the same bundle; the past-tense summary; the note on a bundle
//! accepted within the clock-skew allowance after its expiry.

use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, SystemTime};

use crate::support::registry::build_layout;
use crate::support::*;

fn records(env: &Env) -> Vec<serde_json::Value> {
    fs::read_to_string(env.audit_log())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The bundle's own (signed) manifest, read straight from the media.
fn manifest(env: &Env, bundle: &str) -> serde_json::Value {
    serde_json::from_slice(&env.read(&format!("{bundle}/manifest.json"))).unwrap()
}

/// Three directory artifacts `model-a`, `model-b`, `patch` packed into `out` (key `k`).
fn three(env: &Env, out: &str, extra: &[&str]) {
    env.write("model-a/w.bin", pseudo_random(20_000, 1));
    env.write("model-b/w.bin", pseudo_random(20_000, 2));
    env.write("patch/fix.txt", "fix\n");
    env.pack(&["model-a", "model-b", "patch"], "k", out, extra)
        .ok();
}

#[test]
fn only_and_skip_choose_artifacts_by_name_and_glob() {
    let env = Env::new();
    env.keygen("k");
    three(&env, "b", &[]);

    let r = env.run(&[
        "import", "b", "--trust", "k.pub", "--files", "d", "--only", "model-*",
    ]);
    r.ok().stdout_has(
        "imported b: 2 of 3 artifacts (model-a, model-b); chunks of the others not read",
    );
    assert!(env.path("d/model-a/w.bin").is_file());
    assert!(env.path("d/model-b/w.bin").is_file());
    assert!(!env.path("d/patch").exists());

    // --skip, repeatable, with a set.
    let j = env
        .run(&[
            "import",
            "b",
            "--trust",
            "k.pub",
            "--files",
            "e",
            "--skip",
            "patch",
            "--skip",
            "model-[b]",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(j["imported_artifacts"], serde_json::json!(["model-a"]));
    assert_eq!(
        j["skipped_artifacts"],
        serde_json::json!(["model-b", "patch"])
    );
    assert!(env.path("e/model-a").is_dir());
    assert!(!env.path("e/model-b").exists() && !env.path("e/patch").exists());

    // --only and --skip together; `?` matches one character.
    env.run(&[
        "import", "b", "--trust", "k.pub", "--files", "f", "--only", "model-?", "--skip", "model-a",
    ])
    .ok()
    .stdout_has("1 of 3 artifacts (model-b)");
    assert!(env.path("f/model-b").is_dir() && !env.path("f/model-a").exists());

    // A whole import lists everything and skips nothing.
    let j = env
        .run(&["import", "b", "--trust", "k.pub", "--files", "g", "--json"])
        .ok()
        .json();
    assert_eq!(
        j["imported_artifacts"],
        serde_json::json!(["model-a", "model-b", "patch"])
    );
    assert_eq!(j["skipped_artifacts"], serde_json::json!([]));

    // A dry run plans only the selected artifacts.
    env.run(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--files",
        "h",
        "--only",
        "patch",
        "--dry-run",
    ])
    .ok()
    .stdout_has("Plan for 1 of 3 artifacts (patch):")
    .stdout_has("would write 1 file");
    assert!(!env.path("h").exists());
}

#[test]
fn a_pattern_that_matches_no_artifact_is_a_usage_error_naming_it() {
    let env = Env::new();
    env.keygen("k");
    three(&env, "b", &[]);
    env.run(&[
        "import", "b", "--trust", "k.pub", "--files", "d", "--only", "model-a", "--only", "modle-*",
    ])
    .code(2)
    .stderr_has("--only modle-*: no artifact of this bundle is named so")
    .stderr_has("model-a, model-b, patch");
    env.run(&[
        "import", "b", "--trust", "k.pub", "--files", "d", "--skip", "nope",
    ])
    .code(2)
    .stderr_has("--skip nope");
    env.run(&[
        "import", "b", "--trust", "k.pub", "--files", "d", "--only", "patch", "--skip", "p*",
    ])
    .code(2)
    .stderr_has("leave no artifact");
    // Usage errors: nothing written, nothing accepted.
    assert!(!env.path("d").exists());
    assert!(!env.state_dir().join("state.json").exists());
    // The refusals are on record as failures, not as content rejections.
    let log = records(&env);
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|r| r["outcome"] == "failed"), "{log:?}");
}

#[test]
fn targets_are_needed_only_for_the_selected_artifacts() {
    let env = Env::new();
    env.keygen("k");
    let (layout, _, _) = build_layout(env.dir.path());
    env.write("patch/fix.txt", "fix\n");
    let image = format!("oci-layout://{}:t", layout.display());
    env.pack(&["patch", &image], "k", "b", &[]).ok();
    let m = manifest(&env, "b");
    let names: Vec<String> = m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    let img = names.iter().find(|n| *n != "patch").unwrap().clone();

    // The whole bundle needs a target for the patch too.
    env.run(&["import", "b", "--trust", "k.pub", "--oci-layout", "L"])
        .code(2)
        .stderr_has("no target given for patch");
    assert!(!env.path("L").exists());
    // Only the image: its target suffices.
    env.run(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--oci-layout",
        "L",
        "--only",
        &img,
    ])
    .ok()
    .stdout_has("1 of 2 artifacts")
    .stdout_has("wrote 3 blobs")
    .stdout_has("1 image ref");
    assert!(env.path("L/index.json").is_file());
    // Only the patch: the files target, no image target.
    env.run(&[
        "import", "b", "--trust", "k.pub", "--files", "d", "--skip", &img,
    ])
    .ok();
    assert!(env.path("d/patch/fix.txt").is_file());
    assert!(!env.path(&format!("d/{img}")).exists());
}

#[test]
fn chunks_of_unselected_artifacts_are_not_read() {
    let env = Env::new();
    env.keygen("k");
    env.write("big/w.bin", pseudo_random(400_000, 7));
    env.write("small/s.txt", "small\n");
    env.pack(&["big", "small"], "k", "b", &["--chunk-size", "64KiB"])
        .ok();
    // The manifest (format version 3): an entry is `[type, path, blob index]`, a blob
    // `[digest, size, [[chunk, offset, length, ...], ...]]`, chunk N the file `chunks/N.tar`.
    let m = manifest(&env, "b");
    assert_eq!(m["version"], 3);
    let small = m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "small")
        .unwrap();
    let needed: BTreeSet<u64> = small["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get(2).and_then(|b| b.as_u64()))
        .flat_map(|b| m["blobs"][b as usize][2].as_array().unwrap().iter())
        .map(|seg| seg[0].as_u64().unwrap())
        .collect();
    assert!(!needed.is_empty());
    let mut chunks: Vec<_> = fs::read_dir(env.path("b/chunks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    chunks.sort();
    assert_eq!(chunks.len(), m["chunks"].as_array().unwrap().len());
    // Every chunk no blob of `small` lies in is overwritten with zeros of its size: present,
    // the right size (admission stats it), but never the bytes the manifest signed.
    let mut spoiled = 0;
    for (i, p) in chunks.iter().enumerate() {
        if needed.contains(&(i as u64)) {
            continue;
        }
        let len = fs::metadata(p).unwrap().len();
        fs::write(p, vec![0u8; len as usize]).unwrap();
        spoiled += 1;
    }
    assert!(spoiled >= 3, "big's chunks: {spoiled}");

    env.run(&[
        "import", "b", "--trust", "k.pub", "--files", "d", "--only", "small",
    ])
    .ok()
    .stdout_has("1 of 2 artifacts (small); chunks of the others not read");
    assert_eq!(env.read("d/small/s.txt"), b"small\n");
    // The spoiled chunks are what they look like: read, they reject the bundle.
    env.run(&[
        "import", "b", "--trust", "k.pub", "--files", "e", "--only", "big",
    ])
    .code(3);
    assert!(!env.path("e/big").exists());
    let log = records(&env);
    let first = &log[1];
    assert_eq!(first["outcome"], "accepted");
    assert_eq!(first["partial"]["imported"], serde_json::json!(["small"]));
    assert_eq!(first["partial"]["skipped"], serde_json::json!(["big"]));
    // The record of a partial import still lists (and so identifies) the whole signed bundle.
    assert_eq!(first["artifacts"].as_array().unwrap().len(), 2);
    env.run(&["audit", "verify"]).ok();
}

#[test]
fn the_rest_of_a_partially_imported_bundle_imports_later_until_a_newer_one_is_accepted() {
    let env = Env::new();
    env.keygen("k");
    three(&env, "a10", &["--channel", "prod", "--sequence", "10"]);
    let imp = |bundle: &str, dest: &str, extra: &[&str]| {
        let mut args = vec!["import", bundle, "--trust", "k.pub", "--files", dest];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    imp("a10", "d", &["--only", "model-a"]).ok();
    // The rest of the same bundle: allowed, no override.
    imp("a10", "d", &["--skip", "model-a"]).ok();
    assert!(env.path("d/model-b").is_dir() && env.path("d/patch").is_dir());
    // A different bundle at the same sequence: still refused.
    env.write("patch/fix.txt", "another fix\n");
    env.pack(
        &["patch"],
        "k",
        "other10",
        &["--channel", "prod", "--sequence", "10"],
    )
    .ok();
    imp("other10", "x", &[])
        .code(3)
        .stderr_has("sequence reused");

    // Partial A, then a newer B, then the rest of A: a rollback.
    env.pack(
        &["patch"],
        "k",
        "b11",
        &["--channel", "prod", "--sequence", "11"],
    )
    .ok();
    imp("b11", "e", &[]).ok();
    imp("a10", "f", &["--only", "model-b"])
        .code(3)
        .stderr_has("rollback");
    assert!(!env.path("f").exists());
    // Recovery: explicit, audited, and the channel stays at 11.
    imp("a10", "f", &["--only", "model-b", "--allow-rollback"]).ok();
    assert!(env.path("f/model-b").is_dir());

    let log = records(&env);
    let outcomes: Vec<(String, String, bool)> = log
        .iter()
        .filter(|r| r["outcome"] != "started")
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_string(),
                r["freshness"].as_str().unwrap().to_string(),
                r["partial"].is_object(),
            )
        })
        .collect();
    let want = [
        ("accepted", "fresh", true),
        ("accepted", "same-as-accepted", true),
        ("rejected", "sequence-reused", false),
        ("accepted", "fresh", false),
        ("rejected", "rollback", true),
        ("accepted", "rollback", true),
    ];
    let want: Vec<(String, String, bool)> = want
        .iter()
        .map(|(o, f, p)| (o.to_string(), f.to_string(), *p))
        .collect();
    assert_eq!(outcomes, want);
    let last = log.last().unwrap();
    assert_eq!(last["allow_rollback"], true);
    assert_eq!(last["partial"]["imported"], serde_json::json!(["model-b"]));

    // The state file keeps its version-1 shape: readable by an airlock that predates partial
    // imports (its fields are exactly the ones it knows).
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(env.state_dir().join("state.json")).unwrap()).unwrap();
    assert_eq!(state["version"], 1);
    let prod = &state["channels"]["prod"];
    assert_eq!(prod["sequence"], 11);
    let keys: BTreeSet<&str> = prod["accepted"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["bundle_id", "manifest_digest", "time"])
    );
}

#[test]
fn the_summary_says_what_was_done_in_the_past_tense() {
    let env = Env::new();
    env.keygen("k");
    env.write("m/a.bin", pseudo_random(2048, 3));
    env.write("m/sub/b.txt", "b\n");
    env.pack(&["m"], "k", "b", &["--sequence", "1"]).ok();
    env.run(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--files",
        "d",
        "--dry-run",
    ])
    .ok()
    .stdout_has("into d: would write 2 files (2.00 KiB), 2 directories\n");
    env.run(&["import", "b", "--trust", "k.pub", "--files", "d"])
        .ok()
        .stdout_has("into d: wrote 2 files (2.00 KiB), 2 directories\n");
    let again = env.run(&["import", "b", "--trust", "k.pub", "--files", "d"]);
    again
        .ok()
        .stdout_has("into d: wrote nothing; 2 already present");
    assert!(!again.stdout.contains("to write"), "{}", again.stdout);

    // An image into an OCI layout: blobs and refs.
    let (layout, _, _) = build_layout(env.dir.path());
    let image = format!("oci-layout://{}:t", layout.display());
    env.pack(&[&image], "k", "img", &["--sequence", "2"]).ok();
    env.run(&["import", "img", "--trust", "k.pub", "--oci-layout", "L"])
        .ok()
        .stdout_has("into OCI layout L: wrote 3 blobs (")
        .stdout_has("), 1 image ref\n");
    env.run(&["import", "img", "--trust", "k.pub", "--oci-layout", "L"])
        .ok()
        .stdout_has("into OCI layout L: wrote nothing; 4 already present");
}

#[test]
fn a_bundle_accepted_within_the_clock_skew_allowance_says_so() {
    let env = Env::new();
    env.keygen("k");
    env.write("m/a.txt", "a\n");
    env.pack(&["m"], "k", "fresh", &["--sequence", "1"]).ok();
    env.pack(&["m"], "k", "b", &["--sequence", "2", "--expires", "1s"])
        .ok();
    // A bundle within its validity: no note, and the field is null.
    let r = env.run(&["verify", "fresh", "--trust", "k.pub", "--json"]);
    assert!(!r.stderr.contains("clock-skew"), "{}", r.stderr);
    assert!(r.ok().json()["expired_within_skew"].is_null());

    let expires = manifest(&env, "b")["expires"].as_str().unwrap().to_string();
    let t = airlock::format::parse_time(&expires).unwrap();
    // At most a second or so (the expiry has one-second precision); not a timing assertion.
    while SystemTime::now() <= t + Duration::from_millis(50) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let note = "accepted within the 300-second clock-skew allowance";
    env.run(&["verify", "b", "--trust", "k.pub"])
        .ok()
        .stderr_has(&format!("this bundle expired at {expires}"))
        .stderr_has(note);
    let j = env
        .run(&["verify", "b", "--trust", "k.pub", "--json"])
        .ok()
        .json();
    assert_eq!(j["expired_within_skew"]["expires"], expires.as_str());
    assert_eq!(j["expired_within_skew"]["skew_seconds"], 300);
    let now = airlock::format::parse_time(j["expired_within_skew"]["now"].as_str().unwrap());
    assert!(now.unwrap() >= t);
    let r = env.run(&["import", "b", "--trust", "k.pub", "--files", "d", "--json"]);
    assert!(r.stderr.contains(note), "{}", r.stderr);
    assert_eq!(
        r.ok().json()["expired_within_skew"]["expires"],
        expires.as_str()
    );
}
