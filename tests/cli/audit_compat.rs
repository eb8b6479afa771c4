//! The audit log survives upgrades: the golden logs under `fixtures/audit/` (written by an
//! earlier release, and by hand as later versions could write) verify with their anchors and
//! take new records; outcomes tell content rejections from operational failures.

use std::fs;
use std::path::Path;

use crate::support::*;

const V1_HEAD: &str = "631d3989b31157c6d2460c09dfb8085e462ad8b5fc3ea8a1384f96f8c9829f9b";
const V1_RECORDS: u64 = 13;
const FUTURE_HEAD: &str = "87b12f1e26b236be8e707f11c5df2ce6925d6bd670a212e2fa5f7ead873cab25";
const FUTURE_RECORDS: u64 = 15;

fn fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/audit")
        .join(rel);
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The golden log `rel` as the workspace's audit log.
fn install(env: &Env, rel: &str) -> Vec<u8> {
    let bytes = fixture(rel);
    fs::create_dir_all(env.state_dir()).unwrap();
    fs::write(env.audit_log(), &bytes).unwrap();
    bytes
}

fn audit_verify(env: &Env, extra: &[&str]) -> Run {
    env.run(&[&["audit", "verify", "--json"][..], extra].concat())
}

fn anchor<'a>(records: &'a str, head: &'a str) -> [&'a str; 4] {
    ["--expect-records", records, "--expect-head", head]
}

/// Each line of the workspace's log as JSON.
fn records(env: &Env) -> Vec<serde_json::Value> {
    fs::read_to_string(env.audit_log())
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn the_golden_v1_log_verifies_with_its_anchor() {
    let env = Env::new();
    install(&env, "v1/audit.jsonl");
    let r = audit_verify(&env, &anchor(&V1_RECORDS.to_string(), V1_HEAD));
    r.ok();
    let v = r.json();
    assert_eq!(v["records"], V1_RECORDS);
    assert_eq!(v["head"], V1_HEAD);
    assert_eq!(v["recovered"], serde_json::json!([8]));
    assert_eq!(v["anchor"]["record"], V1_RECORDS);
    // The import killed after its start, and only that one, is reported.
    let interrupted = v["interrupted"].as_array().unwrap();
    assert_eq!(interrupted.len(), 1, "{v}");
    assert_eq!(interrupted[0]["seq"], 13);
    // The text form too.
    env.run(&["audit", "verify"])
        .ok()
        .stdout_has("intact: 13 records")
        .stdout_has(V1_HEAD);
    // A wrong anchor is still caught on an old log.
    audit_verify(&env, &anchor("14", V1_HEAD)).code(3);
    audit_verify(&env, &anchor("12", V1_HEAD)).code(3);
}

#[test]
fn the_golden_v1_log_takes_new_records() {
    let env = Env::new();
    let old = install(&env, "v1/audit.jsonl");
    let (b, _) = env.sample_bundle();
    let b = b.to_str().unwrap();
    // An import checks the whole old chain before it writes, then appends its records.
    env.run(&["import", b, "--trust", "k.pub", "--files", "dest"])
        .ok();
    env.run(&["verify", b, "--trust", "k.pub"]).ok();
    let now = fs::read(env.audit_log()).unwrap();
    assert!(
        now.starts_with(&old),
        "the old lines are kept byte for byte"
    );
    let r = audit_verify(&env, &anchor(&V1_RECORDS.to_string(), V1_HEAD));
    r.ok();
    assert_eq!(r.json()["records"], V1_RECORDS + 3);
    let recs = records(&env);
    let new: Vec<_> = recs
        .iter()
        .filter(|r| r["seq"].as_u64() > Some(V1_RECORDS))
        .collect();
    let outcomes: Vec<_> = new.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["started", "accepted", "accepted"]);
    for r in &new {
        assert_eq!(r["v"], 3, "{r}");
    }
    // The first new record chains from the old log's head.
    assert_eq!(new[0]["prev"], V1_HEAD);
}

#[test]
fn records_of_later_versions_are_accepted_and_chained_from() {
    let env = Env::new();
    let old = install(&env, "future/audit.jsonl");
    let r = audit_verify(&env, &anchor(&FUTURE_RECORDS.to_string(), FUTURE_HEAD));
    r.ok();
    assert_eq!(r.json()["newer_records"], 1);
    audit_verify(&env, &anchor(&V1_RECORDS.to_string(), V1_HEAD)).ok();
    env.run(&["audit", "verify"])
        .ok()
        .stdout_has("1 record(s) of a later version");
    // An import appends after them.
    let (b, _) = env.sample_bundle();
    env.run(&[
        "import",
        b.to_str().unwrap(),
        "--trust",
        "k.pub",
        "--files",
        "dest",
    ])
    .ok();
    assert!(fs::read(env.audit_log()).unwrap().starts_with(&old));
    let r = audit_verify(&env, &anchor(&FUTURE_RECORDS.to_string(), FUTURE_HEAD));
    r.ok();
    assert_eq!(r.json()["records"], FUTURE_RECORDS + 2);
    // Still strict JSON: the unknown field named twice is damage at that line.
    let text = String::from_utf8(old).unwrap();
    let twice = text.replacen("\"host\":{", "\"host\":1,\"host\":{", 1);
    fs::write(env.audit_log(), twice).unwrap();
    env.run(&["audit", "verify"]).code(3).stderr_has("line 15:");
}

#[test]
fn outcomes_tell_rejections_from_failures() {
    let env = Env::new();
    let (b, _) = env.sample_bundle();
    let b = b.to_str().unwrap();
    // An operational failure: the destination's parent is a file (exit 1), left as it was.
    env.blob("notadir", 4096, blob::Fill::Random(3));
    let before = tree::snapshot(&env.path("notadir"));
    env.run(&["import", b, "--trust", "k.pub", "--files", "notadir/sub"])
        .code(1);
    tree::assert_unchanged(&before, &tree::snapshot(&env.path("notadir")), "notadir");
    assert_eq!(env.read("notadir"), pseudo_random(4096, 3));
    // A content rejection: the manifest changed after signing (exit 3).
    fs::create_dir_all(env.path("bad")).unwrap();
    for e in walkdir::WalkDir::new(env.path("b")).min_depth(1) {
        let e = e.unwrap();
        let to = env
            .path("bad")
            .join(e.path().strip_prefix(env.path("b")).unwrap());
        if e.file_type().is_dir() {
            fs::create_dir_all(&to).unwrap();
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
    let m = env.read("bad/manifest.json");
    let mut m = String::from_utf8(m).unwrap();
    m = m.replacen("\"sequence\":", "\"sequence\": ", 1);
    env.write("bad/manifest.json", m);
    env.run(&["import", "bad", "--trust", "k.pub", "--files", "dest"])
        .code(3);
    let recs = records(&env);
    let ends: Vec<(String, String)> = recs
        .iter()
        .filter(|r| r["outcome"] != "started")
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_string(),
                r["reasons"][0]["code"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        ends[0],
        ("failed".to_string(), "io".to_string()),
        "{recs:?}"
    );
    assert_eq!(ends[1].0, "rejected", "{recs:?}");
    assert_eq!(ends.len(), 2, "{recs:?}");
    audit_verify(&env, &[]).ok();
}

#[test]
fn the_command_builder_always_isolates_the_state() {
    let env = Env::new();
    let script = "printf '%s|%s|%s' \"$AIRLOCK_STATE\" \"${AIRLOCK_AUDIT_LOG-unset}\" \"$0\"";
    for mut c in [
        env.wrapped(&["sh", "-c", script], &[]),
        env.wrapped(&["timeout", "60", "sh", "-c", script], &["x"]),
    ] {
        c.env("AIRLOCK_AUDIT_LOG", "/var/lib/airlock/audit.jsonl");
        env.isolate(&mut c);
        let r = run_cmd(c);
        r.ok();
        let want = format!("{}|unset|{BIN}", env.state_dir().display());
        assert_eq!(r.stdout, want);
    }
    // The plain builder: the binary sees the workspace's state (what `verify` reports reading).
    let c = env.command(&["--version"]);
    let envs: Vec<_> = c
        .get_envs()
        .map(|(k, v)| (k.to_os_string(), v.map(|v| v.to_os_string())))
        .collect();
    assert!(envs.contains(&(
        "AIRLOCK_STATE".into(),
        Some(env.state_dir().into_os_string())
    )));
    assert!(envs.contains(&("AIRLOCK_AUDIT_LOG".into(), None)));
}
