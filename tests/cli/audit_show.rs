//! `airlock audit show`: the decisions as a table an officer reads (every string from the log
//! escaped, the bundle path whole), filtered by time and channel, as JSON, and never a broken
//! chain shown as if it were fine. Records name the operator from the password database (and
//! `SUDO_USER`) and the bundle by its absolute path.

use std::fs;
use std::path::Path;
use std::process::Command;

use airlock::format::Digest;

use crate::support::*;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A version-2 record's fields after the head and `v`, with these values.
fn body(
    time: &str,
    outcome: &str,
    channel: Option<&str>,
    dir: &str,
    reason: Option<&str>,
) -> String {
    let reasons = match reason {
        Some(m) => serde_json::json!([{ "code": "test-code", "message": m }]),
        None => serde_json::json!([]),
    };
    let v = serde_json::json!({
        "time": time,
        "action": "import",
        "outcome": outcome,
        "operator": "op\u{1b}[31m",
        "bundle_dir": dir,
        "verified": channel.is_some(),
        "bundle_id": channel.map(|_| "id1"),
        "channel": channel,
        "sequence": channel.map(|_| 7),
        "manifest_digest": null,
        "signers": [],
        "artifacts": [],
        "freshness": null,
        "allow_rollback": false,
        "target": "files:/srv",
        "reasons": reasons,
    });
    let s = serde_json::to_string(&v).unwrap();
    s[1..s.len() - 1].to_string()
}

/// Lines chained by the rules (docs/AUDIT.md) from the record bodies given.
fn chain(bodies: &[String]) -> String {
    let mut prev = GENESIS.to_string();
    let mut out = String::new();
    for (i, b) in bodies.iter().enumerate() {
        let line = format!("{{\"seq\":{},\"prev\":\"{prev}\",\"v\":2,{b}}}", i + 1);
        prev = Digest::of(line.as_bytes()).hex();
        out += &line;
        out.push('\n');
    }
    out
}

fn install(env: &Env, log: &str) {
    fs::create_dir_all(env.state_dir()).unwrap();
    fs::write(env.audit_log(), log).unwrap();
}

fn long_path() -> String {
    format!("/media/usb/{}/bundle", "deep-directory-name".repeat(8))
}

fn sample_log() -> String {
    chain(&[
        body(
            "2020-01-01T00:00:00Z",
            "accepted",
            Some("stable"),
            "/media/a",
            None,
        ),
        body(
            "2099-01-01T00:00:00Z",
            "rejected",
            Some("nightly"),
            &long_path(),
            Some("rollback\u{1b}[2J\r fake\u{202e}"),
        ),
        body(
            "2099-01-02T00:00:00Z",
            "failed",
            None,
            "/media/c",
            Some("disk full"),
        ),
    ])
}

/// The data rows of the table in `stdout` (piped: never wrapped).
fn rows(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("#  TIME"))
        .skip(1)
        .collect()
}

#[test]
fn the_table_shows_every_column_whole_and_escaped() {
    let env = Env::new();
    install(&env, &sample_log());
    let r = env.run(&["audit", "show"]);
    r.ok().stdout_has("3 records, hash chain unbroken; 3 shown");
    // A channel no manifest could carry (a log written by hand, or edited and re-chained)
    // is shown escaped as well.
    let env2 = Env::new();
    install(
        &env2,
        &chain(&[body(
            "2020-01-01T00:00:00Z",
            "accepted",
            Some("ch\u{1b}]0;owned\u{7}\u{202e}"),
            "/media/x\ny",
            None,
        )]),
    );
    let r2 = env2.run(&["audit", "show"]);
    r2.ok()
        .stdout_has("ch\\e]0;owned\\u{0007}\\u{202e}")
        .stdout_has("/media/x\\ny");
    assert!(
        !r2.stdout.contains('\u{1b}') && !r2.stdout.contains('\u{7}'),
        "{}",
        r2.stdout
    );
    assert!(
        !r.stdout.contains('\u{1b}') && !r.stdout.contains('\r'),
        "{}",
        r.stdout
    );
    let header = r.stdout.lines().nth(1).unwrap();
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        cols,
        ["#", "TIME", "OPERATOR", "ACTION", "BUNDLE", "CHANNEL", "SEQUENCE", "OUTCOME", "REASON"]
    );
    let rows = rows(&r.stdout);
    assert_eq!(rows.len(), 3, "{}", r.stdout);
    // Piped output is never wrapped: the long path is there whole, on its row.
    assert!(rows[1].contains(&long_path()), "{}", r.stdout);
    assert!(rows[1].contains("nightly") && rows[1].contains("rejected"));
    assert!(
        rows[1].contains("test-code: rollback\\e[2J\\r fake\\u{202e}"),
        "{}",
        r.stdout
    );
    assert!(rows[0].contains("op\\e[31m") && rows[0].contains("2020-01-01T00:00:00Z"));
    assert!(rows[2].contains("failed") && rows[2].contains("disk full"));
    // Columns align: every row's BUNDLE cell starts where the header's does.
    let at = header.find("BUNDLE").unwrap();
    for (row, dir) in rows.iter().zip(["/media/a", &long_path(), "/media/c"]) {
        assert_eq!(row.find(dir), Some(at), "{}", r.stdout);
    }
}

#[test]
fn since_takes_times_and_durations_and_channel_selects() {
    let env = Env::new();
    install(&env, &sample_log());
    let shown = |args: &[&str]| {
        let mut all = vec!["audit", "show"];
        all.extend_from_slice(args);
        let r = env.run(&all);
        r.ok();
        rows(&r.stdout).len()
    };
    assert_eq!(shown(&["--since", "24h"]), 2);
    assert_eq!(shown(&["--since", "7d"]), 2);
    assert_eq!(shown(&["--since", "2021-06-01T00:00:00Z"]), 2);
    assert_eq!(shown(&["--since", "2099-01-01T12:00:00Z"]), 1);
    assert_eq!(shown(&["--since", "2019-12-31"]), 3);
    assert_eq!(shown(&["--channel", "nightly"]), 1);
    assert_eq!(shown(&["--channel", "stable", "--since", "24h"]), 0);
    env.run(&["audit", "show", "--channel", "stable", "--since", "24h"])
        .ok()
        .stdout_has("0 shown (since ")
        .stdout_has("channel stable");
    env.run(&["audit", "show", "--since", "yesterday"])
        .code(2)
        .stderr_has("--since yesterday: not an RFC 3339 time")
        .stderr_has("24h");
}

#[test]
fn json_lists_the_records_with_their_fields() {
    let env = Env::new();
    install(&env, &sample_log());
    let v = env
        .run(&["audit", "show", "--json", "--since", "24h"])
        .ok()
        .json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["total_records"], 3);
    assert_eq!(v["audit_log"], env.audit_log().display().to_string());
    assert!(v["head"].as_str().unwrap().len() == 64);
    assert!(v["since"].as_str().unwrap().ends_with('Z'));
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    let r = &recs[0];
    for key in [
        "line",
        "seq",
        "v",
        "time",
        "action",
        "outcome",
        "unfinished",
        "operator",
        "sudo_user",
        "bundle_dir",
        "bundle_id",
        "verified",
        "channel",
        "sequence",
        "target",
        "completes",
        "reasons",
        "reasons_omitted",
        "interpreted",
        "chained",
    ] {
        assert!(r.get(key).is_some(), "{key} missing: {r}");
    }
    assert_eq!(r["seq"], 2);
    assert_eq!(r["bundle_dir"], long_path());
    assert_eq!(
        r["reasons"][0]["message"],
        "rollback\u{1b}[2J\r fake\u{202e}"
    );
    assert_eq!(r["chained"], true);
    assert_eq!(recs[1]["outcome"], "failed");
}

#[test]
fn a_broken_chain_is_shown_as_broken_and_exits_3() {
    let env = Env::new();
    // Record 2's message edited after the fact: the chain breaks at line 2.
    let log = sample_log();
    let edited = {
        let mut lines: Vec<String> = log.lines().map(String::from).collect();
        lines[1] = lines[1].replacen("\"message\":\"rollback", "\"message\":\"approved", 1);
        lines.join("\n") + "\n"
    };
    install(&env, &edited);
    let r = env.run(&["audit", "show"]);
    r.code(3)
        .stdout_has("hash chain BROKEN at line 2")
        .stdout_has("WARNING: the chain does not vouch for the 2 record(s) below, from line 2 on")
        .stderr_has("line 2");
    // Both parts are tables; the edited record is below the warning, never above it.
    let (before, after) = r.stdout.split_once("WARNING").unwrap();
    assert!(
        before.contains("/media/a") && !before.contains("approved"),
        "{}",
        r.stdout
    );
    assert!(
        after.contains("approved") && after.contains("/media/c"),
        "{}",
        r.stdout
    );
    // With --json: the error object alone, no records a program could take as fine.
    let r = env.run(&["audit", "show", "--json"]);
    r.code(3);
    let v = r.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "audit-broken");
    assert!(v.get("records").is_none());
    // audit verify agrees.
    env.run(&["audit", "verify"]).code(3).stderr_has("line 2");
}

#[test]
fn golden_logs_of_older_and_later_versions_show() {
    let env = Env::new();
    for rel in ["v1/audit.jsonl", "future/audit.jsonl"] {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/audit")
            .join(rel);
        install(&env, &fs::read_to_string(src).unwrap());
        let r = env.run(&["audit", "show"]);
        r.ok().stdout_has("hash chain unbroken");
        let rows = rows(&r.stdout);
        // 13 records; the 4 `started` records another completes are not decisions.
        assert!(rows.len() >= 9, "{rel}: {}", r.stdout);
        assert!(r.stdout.contains("accepted") && r.stdout.contains("rejected"));
        // The import killed after its start: started, no outcome.
        assert!(
            r.stdout.contains("started (no outcome)"),
            "{rel}: {}",
            r.stdout
        );
        if rel.starts_with("future") {
            assert!(
                r.stdout
                    .contains("(record version 7: not interpreted by this airlock)"),
                "{}",
                r.stdout
            );
        }
        let v = env.run(&["audit", "show", "--json"]).ok().json();
        assert!(v["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["chained"] == true && r["operator"] != ""));
    }
}

fn passwd_name() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn records_name_the_operator_and_the_absolute_bundle_path() {
    let env = Env::new();
    env.sample_bundle();
    let mut c = env.command(&["import", "./b", "--trust", "k.pub", "--files", "dest"]);
    c.env("SUDO_USER", "bob")
        .env("USER", "mallory")
        .env("LOGNAME", "mallory");
    run_cmd(c).ok();
    let mut c = env.command(&["verify", "b/", "--trust", "k.pub"]);
    c.env_remove("SUDO_USER").env("USER", "mallory");
    run_cmd(c).ok();
    let log = fs::read_to_string(env.audit_log()).unwrap();
    let recs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dir = fs::canonicalize(env.dir.path()).unwrap().join("b");
    let me = passwd_name();
    assert_eq!(recs.len(), 3, "{log}");
    for r in &recs {
        assert_eq!(r["operator"], me.as_str(), "{r}");
        assert_eq!(r["bundle_dir"], dir.display().to_string(), "{r}");
    }
    assert_eq!(recs[1]["sudo_user"], "bob");
    assert!(recs[2].get("sudo_user").is_none(), "{}", recs[2]);
    let r = env.run(&["audit", "show"]);
    r.ok()
        .stdout_has(&format!("{me} (sudo: bob)"))
        .stdout_has(&dir.display().to_string());
}

#[test]
fn outcomes_tell_rejections_from_failures() {
    let env = Env::new();
    env.sample_bundle();
    // failed: the destination is under a file (operational).
    env.write("file", "x");
    env.run(&["import", "b", "--trust", "k.pub", "--files", "file/dest"])
        .code(1);
    // failed: verify cannot read the state (state.json a directory), after the bundle verified.
    fs::create_dir_all(env.state_dir().join("state.json")).unwrap();
    env.run(&["verify", "b", "--trust", "k.pub"])
        .code(1)
        .stderr_has("state.json");
    fs::remove_dir(env.state_dir().join("state.json")).unwrap();
    // rejected: a chunk changed (content).
    let chunk = fs::read_dir(env.path("b/chunks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&chunk).unwrap();
    bytes[10] ^= 1;
    fs::write(&chunk, bytes).unwrap();
    env.run(&["verify", "b", "--trust", "k.pub"]).code(3);
    let v = env.run(&["audit", "show", "--json"]).ok().json();
    let outcomes: Vec<(&str, &str)> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("import", "failed"),
            ("verify", "failed"),
            ("verify", "rejected")
        ],
        "{v}"
    );
    let r = env.run(&["audit", "show"]);
    r.ok();
    let rows = rows(&r.stdout);
    assert!(
        rows[0].contains("failed") && rows[2].contains("rejected"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_64_mib_log_streams_in_bounded_memory() {
    require("prlimit");
    let env = Env::new();
    // 4096 records of 16 KiB (their reasons long), 64 MiB: shown under a 64 MiB address-space
    // limit, which holding the file (or its records) whole would exceed.
    let filler = "r".repeat(2000);
    let bodies: Vec<String> = (0..4096)
        .map(|i| {
            let mut b = body(
                "2099-01-01T00:00:00Z",
                "rejected",
                Some(if i % 2 == 0 { "even" } else { "odd" }),
                "/media/usb/b",
                Some("short"),
            );
            let more: Vec<String> = (0..8)
                .map(|_| format!("{{\"code\":\"c\",\"message\":\"{filler}\"}}"))
                .collect();
            b = b.replacen(
                "\"reasons\":[",
                &format!("\"reasons\":[{},", more.join(",")),
                1,
            );
            b
        })
        .collect();
    let log = chain(&bodies);
    assert!(log.len() >= 56 << 20, "{}", log.len());
    install(&env, &log);
    let r = run_cmd(env.wrapped(
        &["prlimit", "--as=67108864", "--", "timeout", "120"],
        &["audit", "show", "--channel", "odd"],
    ));
    r.ok()
        .stdout_has("4096 records, hash chain unbroken; 2048 shown");
}
