//! Freshness and the audit trail through the real binary: rollbacks and reused sequences are
//! refused before anything is written, the same bundle imports again as a no-op, an override is
//! audited, and `airlock audit verify` catches an edited log.

use std::fs;

use crate::support::*;

fn pack_seq(env: &Env, out: &str, seq: &str) {
    env.pack(
        &["src"],
        "k",
        out,
        &["--channel", "prod", "--sequence", seq],
    )
    .ok();
}

fn records(env: &Env) -> Vec<serde_json::Value> {
    fs::read_to_string(env.path(".airlock-state/audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn rollbacks_and_reused_sequences_are_refused_and_every_decision_is_audited() {
    let env = Env::new();
    env.keygen("k");
    env.sample_tree("src");
    pack_seq(&env, "b10", "10");
    pack_seq(&env, "b11", "11");
    pack_seq(&env, "b11bis", "11");
    pack_seq(&env, "b9", "9");

    env.run(&["import", "b10", "--trust", "k.pub", "--files", "d10"])
        .ok();
    env.run(&["import", "b11", "--trust", "k.pub", "--files", "d11"])
        .ok();
    // The same bundle again: an idempotent success.
    env.run(&["import", "b11", "--trust", "k.pub", "--files", "d11"])
        .ok();
    // An older bundle: a rollback, refused before anything is written.
    env.run(&["import", "b9", "--trust", "k.pub", "--files", "d9"])
        .code(3)
        .stderr_has(
            "rollback: channel \"prod\" already accepted sequence 11; this bundle is sequence 9",
        );
    assert!(!env.path("d9").exists());
    // Another bundle with an accepted sequence: refused.
    env.run(&["import", "b11bis", "--trust", "k.pub", "--files", "dx"])
        .code(3)
        .stderr_has("sequence reused");
    assert!(!env.path("dx").exists());
    // verify says so too (reading the state, writing no state).
    env.run(&["verify", "b9", "--trust", "k.pub", "--json"])
        .code(3)
        .stdout_has("\"code\": \"rollback\"");
    // Recovery: the override works and is recorded.
    env.run(&[
        "import",
        "b9",
        "--trust",
        "k.pub",
        "--files",
        "d9",
        "--allow-rollback",
    ])
    .ok();
    assert!(env.path("d9").is_dir());

    let log = records(&env);
    let summary: Vec<(String, String, Option<String>)> = log
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
                r["freshness"].as_str().map(str::to_string),
            )
        })
        .collect();
    // An import that writes records its start first, then its outcome (issue 9, defect 4).
    let want = [
        ("import", "started", Some("fresh")),
        ("import", "accepted", Some("fresh")),
        ("import", "started", Some("fresh")),
        ("import", "accepted", Some("fresh")),
        ("import", "started", Some("same-as-accepted")),
        ("import", "accepted", Some("same-as-accepted")),
        ("import", "rejected", Some("rollback")),
        ("import", "rejected", Some("sequence-reused")),
        ("verify", "rejected", Some("rollback")),
        ("import", "started", Some("rollback")),
        ("import", "accepted", Some("rollback")),
    ];
    let want: Vec<(String, String, Option<String>)> = want
        .iter()
        .map(|(a, o, f)| (a.to_string(), o.to_string(), f.map(str::to_string)))
        .collect();
    assert_eq!(summary, want);
    assert_eq!(log[10]["allow_rollback"], true);
    // Each outcome names its start.
    for i in [1, 3, 5, 10] {
        assert_eq!(log[i]["completes"], log[i - 1]["seq"], "record {i}");
    }
    assert!(log
        .iter()
        .all(|r| !r["operator"].as_str().unwrap().is_empty()));
    env.run(&["audit", "verify"]).ok().stdout_has("11 records");

    // An edited record breaks the chain, named by its line.
    let path = env.path(".airlock-state/audit.jsonl");
    let text = fs::read_to_string(&path).unwrap();
    let edited = text.replacen("\"rejected\"", "\"accepted\"", 1);
    fs::write(&path, edited).unwrap();
    env.run(&["audit", "verify"]).code(3).stderr_has("line 7");
}

#[test]
fn verify_audits_only_where_an_audit_log_is_kept() {
    let env = Env::new();
    env.keygen("k");
    env.sample_tree("src");
    pack_seq(&env, "b", "1");
    // Connected side: no state directory yet, so verify writes nothing at all.
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();
    assert!(!env.path(".airlock-state").exists());
    // Named explicitly: appended.
    env.run(&[
        "verify",
        "b",
        "--trust",
        "k.pub",
        "--audit-log",
        "log.jsonl",
    ])
    .ok();
    let line = fs::read_to_string(env.path("log.jsonl")).unwrap();
    assert!(
        line.contains("\"action\":\"verify\"") && line.contains("\"outcome\":\"accepted\""),
        "{line}"
    );
    // A rejected bundle is audited with what it claims.
    fs::write(env.path("b/manifest.json"), b"{}").unwrap();
    env.run(&[
        "verify",
        "b",
        "--trust",
        "k.pub",
        "--audit-log",
        "log.jsonl",
    ])
    .code(3);
    env.run(&["audit", "verify", "--audit-log", "log.jsonl"])
        .ok()
        .stdout_has("2 records");
}
