//! Issue 9, the enclave's own files: state and audit files planted as symbolic links, a
//! `state.json` with a duplicated channel, a damaged or rewritten audit log, policy and key files
//! in directories anyone may write, a public key given as the secret key, a FIFO as a key.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use crate::support::*;

const STATE: &str = ".airlock-state";

fn pack_seq(env: &Env, out: &str, seq: &str) {
    env.pack(
        &["src"],
        "k",
        out,
        &["--channel", "nightly", "--sequence", seq],
    )
    .ok();
}

fn setup() -> Env {
    let env = Env::new();
    env.keygen("k");
    env.write("src/a.txt", "hello\n");
    env
}

fn log_lines(env: &Env) -> Vec<String> {
    fs::read_to_string(env.path(&format!("{STATE}/audit.jsonl")))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

// ---- defect 5: duplicate keys ------------------------------------------------------------

#[test]
fn state_json_with_a_duplicate_channel_is_refused() {
    let env = setup();
    pack_seq(&env, "b50", "50");
    let id = "0123456789abcdef0123456789abcdef";
    let digest = format!("sha256:{}", "ab".repeat(32));
    let entry = |seq: u64| {
        format!(
            r#"{{"sequence": {seq}, "accepted": [{{"bundle_id": "{id}", "manifest_digest": "{digest}", "time": "2026-01-02T03:04:05Z"}}]}}"#
        )
    };
    let state = format!(
        r#"{{"format": "airlock-state", "version": 1, "channels": {{"nightly": {}, "nightly": {}}}}}"#,
        entry(1000),
        entry(1)
    );
    let path = env.write(&format!("{STATE}/state.json"), &state);
    fs::set_permissions(env.path(STATE), fs::Permissions::from_mode(0o700)).unwrap();
    let r = env.run(&["import", "b50", "--trust", "k.pub", "--files", "dest"]);
    assert_ne!(
        r.code, 0,
        "a sequence-50 bundle imported over sequence 1000"
    );
    r.stderr_has("state.json")
        .stderr_has("duplicate field `nightly`");
    assert!(!env.path("dest").exists(), "nothing written");
    assert_eq!(fs::read_to_string(&path).unwrap(), state, "state unchanged");
    // verify reads the state too, and says the same.
    env.run(&["verify", "b50", "--trust", "k.pub"])
        .stderr_has("duplicate field `nightly`");
}

// ---- defect 4: state files planted as symlinks; the log checked before anything is written --

#[test]
fn planted_lock_and_audit_symlinks_are_refused_before_any_write() {
    let env = setup();
    pack_seq(&env, "b", "1");
    fs::create_dir_all(env.path("elsewhere")).unwrap();
    fs::create_dir(env.path(STATE)).unwrap();
    fs::set_permissions(env.path(STATE), fs::Permissions::from_mode(0o700)).unwrap();
    symlink(
        env.path("elsewhere/audit"),
        env.path(&format!("{STATE}/audit.jsonl")),
    )
    .unwrap();
    symlink(
        env.path("elsewhere/lock"),
        env.path(&format!("{STATE}/lock")),
    )
    .unwrap();
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"])
        .code(1)
        .stderr_has("symbolic link");
    assert!(!env.path("dest").exists(), "nothing imported");
    assert!(
        !env.path(&format!("{STATE}/state.json")).exists(),
        "nothing accepted"
    );
    assert!(
        !env.path("elsewhere/lock").exists(),
        "lock symlink followed"
    );
    assert!(
        !env.path("elsewhere/audit").exists(),
        "audit symlink followed"
    );

    // Only the lock planted: refused too, nothing written.
    fs::remove_file(env.path(&format!("{STATE}/audit.jsonl"))).unwrap();
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"])
        .code(1)
        .stderr_has("lock")
        .stderr_has("symbolic link");
    assert!(!env.path("dest").exists() && !env.path("elsewhere/lock").exists());
    assert!(!env.path(&format!("{STATE}/state.json")).exists());

    // state.json planted as a symlink: refused, the target neither read nor replaced.
    fs::remove_file(env.path(&format!("{STATE}/lock"))).unwrap();
    env.write("elsewhere/state.json", "{}");
    symlink(
        env.path("elsewhere/state.json"),
        env.path(&format!("{STATE}/state.json")),
    )
    .unwrap();
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"])
        .code(1)
        .stderr_has("state.json")
        .stderr_has("symbolic link");
    assert!(!env.path("dest").exists());
    assert_eq!(env.read("elsewhere/state.json"), b"{}");

    // The clean state dir: the import audits its start and its acceptance (after the two
    // refusals above, which are audited too: as operational failures, not content rejections
    // — the bundle was fine, the state directory was not).
    fs::remove_file(env.path(&format!("{STATE}/state.json"))).unwrap();
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"])
        .ok();
    let recs: Vec<serde_json::Value> = log_lines(&env)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outcomes: Vec<&str> = recs
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["failed", "failed", "started", "accepted"],
        "{recs:?}"
    );
    assert_eq!(recs[3]["completes"], 3);
    env.run(&["audit", "verify"]).ok().stdout_has("4 records");
}

#[test]
fn import_refuses_a_broken_audit_chain_before_writing() {
    let env = setup();
    pack_seq(&env, "b1", "1");
    pack_seq(&env, "b2", "2");
    env.run(&["import", "b1", "--trust", "k.pub", "--files", "d1"])
        .ok();
    // A record in the middle edited: the next import must not add to a broken log.
    let path = env.path(&format!("{STATE}/audit.jsonl"));
    let text = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[0] = lines[0].replacen("\"import\"", "\"verify\"", 1);
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let state_before = env.read(&format!("{STATE}/state.json"));
    env.run(&["import", "b2", "--trust", "k.pub", "--files", "d2"])
        .code(3)
        .stderr_has("audit.jsonl")
        .stderr_has("line 1");
    assert!(!env.path("d2").exists(), "nothing imported");
    assert_eq!(env.read(&format!("{STATE}/state.json")), state_before);
}

#[test]
fn an_unterminated_last_record_that_breaks_the_chain_is_refused_before_writing() {
    let env = setup();
    pack_seq(&env, "b1", "1");
    pack_seq(&env, "b2", "2");
    env.run(&["import", "b1", "--trust", "k.pub", "--files", "d1"])
        .ok();
    // A well-formed record that does not continue the chain (seq 999), left unterminated as a
    // crash would leave a line: only the torn beginning of the *next* record is tolerated.
    let path = env.path(&format!("{STATE}/audit.jsonl"));
    let lines = log_lines(&env);
    let last = lines.last().unwrap();
    let seq = format!("\"seq\":{},", lines.len());
    assert!(last.contains(&seq), "{last}");
    let forged = last.replacen(&seq, "\"seq\":999,", 1);
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str(&forged);
    fs::write(&path, &text).unwrap();
    let state_before = env.read(&format!("{STATE}/state.json"));
    env.run(&["import", "b2", "--trust", "k.pub", "--files", "d2"])
        .code(3)
        .stderr_has("audit.jsonl")
        .stderr_has("does not continue the chain");
    assert!(!env.path("d2").exists(), "nothing imported");
    assert_eq!(env.read(&format!("{STATE}/state.json")), state_before);
    assert_eq!(fs::read_to_string(&path).unwrap(), text, "nothing appended");
}

#[test]
fn an_import_interrupted_after_its_start_record_is_reported() {
    let env = setup();
    pack_seq(&env, "b", "1");
    env.run(&["import", "b", "--trust", "k.pub", "--files", "d"])
        .ok();
    // What a crash between the state's commit and the final record leaves: the start record
    // without its outcome.
    let lines = log_lines(&env);
    assert_eq!(lines.len(), 2);
    fs::write(
        env.path(&format!("{STATE}/audit.jsonl")),
        format!("{}\n", lines[0]),
    )
    .unwrap();
    env.run(&["audit", "verify"])
        .ok()
        .stdout_has("1 import started without an outcome")
        .stdout_has("record 1");
    let j = env.run(&["audit", "verify", "--json"]).ok().json();
    assert_eq!(j["interrupted"][0]["seq"], 1);
    // The next import still works (the log is intact) and the report stays honest.
    env.run(&["import", "b", "--trust", "k.pub", "--files", "d"])
        .ok();
    env.run(&["audit", "verify"])
        .ok()
        .stdout_has("1 import started without an outcome");
}

// ---- defect 12: junk lines passed off as a crash; anchors --------------------------------

#[test]
fn junk_lines_before_an_append_are_not_a_crash() {
    let env = setup();
    pack_seq(&env, "b", "1");
    pack_seq(&env, "b2", "2");
    for _ in 0..3 {
        env.run(&[
            "verify",
            "b",
            "--trust",
            "k.pub",
            "--audit-log",
            "log.jsonl",
        ])
        .ok();
    }
    // The last two records replaced by 16 junk lines.
    let path = env.path("log.jsonl");
    let text = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines.truncate(1);
    for i in 0..16 {
        lines.push(format!("junk {i}"));
    }
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    // Appending over them is refused, and nothing hides them.
    env.run(&[
        "verify",
        "b",
        "--trust",
        "k.pub",
        "--audit-log",
        "log.jsonl",
    ])
    .code(3)
    .stderr_has("log.jsonl");
    env.run(&["audit", "verify", "--audit-log", "log.jsonl"])
        .code(3)
        .stderr_has("line 2");
    // One junk line is no crash either: a crash leaves an unterminated piece of a record.
    lines.truncate(2);
    fs::write(&path, lines.join("\n") + "\n").unwrap();
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
        .code(3)
        .stderr_has("line 2");
}

#[test]
fn one_line_torn_by_a_crash_is_still_repaired() {
    let env = setup();
    pack_seq(&env, "b", "1");
    for _ in 0..2 {
        env.run(&[
            "verify",
            "b",
            "--trust",
            "k.pub",
            "--audit-log",
            "log.jsonl",
        ])
        .ok();
    }
    let path = env.path("log.jsonl");
    let bytes = fs::read(&path).unwrap();
    // A crash in the middle of the second record's write.
    let cut = bytes.len() - 200;
    fs::write(&path, &bytes[..cut]).unwrap();
    env.run(&["audit", "verify", "--audit-log", "log.jsonl"])
        .code(3)
        .stderr_has("incomplete line 2");
    env.run(&[
        "verify",
        "b",
        "--trust",
        "k.pub",
        "--audit-log",
        "log.jsonl",
    ])
    .ok();
    env.run(&["audit", "verify", "--audit-log", "log.jsonl"])
        .ok()
        .stdout_has("2 records")
        .stdout_has("1 line(s) torn by a crash");
}

#[test]
fn anchors_detect_truncation_and_a_recomputed_tail() {
    let env = setup();
    pack_seq(&env, "b", "1");
    let verify = || {
        env.run(&[
            "verify",
            "b",
            "--trust",
            "k.pub",
            "--audit-log",
            "log.jsonl",
        ])
        .ok();
    };
    for _ in 0..3 {
        verify();
    }
    let path = env.path("log.jsonl");
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let head = sha256_hex(lines[2].as_bytes());
    let audit = |anchor: &[&str]| {
        let mut a = vec!["audit", "verify", "--audit-log", "log.jsonl"];
        a.extend_from_slice(anchor);
        env.run(&a)
    };
    audit(&["--expect-head", &head, "--expect-records", "3"])
        .ok()
        .stdout_has("anchor")
        .stdout_has("record 3");
    // The log grows: the anchor still holds.
    verify();
    audit(&["--expect-head", &head, "--expect-records", "3"]).ok();
    audit(&["--expect-head", &head]).ok().stdout_has("record 3");
    // Cut back to two records: the chain alone is intact, the anchor is not.
    fs::write(&path, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    audit(&[]).ok();
    audit(&["--expect-records", "3"])
        .code(3)
        .stderr_has("2 records")
        .stderr_has("3");
    audit(&["--expect-head", &head, "--expect-records", "3"]).code(3);
    // A tail recomputed by appending anew: record 3 exists again, but is not the anchored one.
    pack_seq(&env, "b2", "2");
    env.run(&[
        "verify",
        "b2",
        "--trust",
        "k.pub",
        "--audit-log",
        "log.jsonl",
    ])
    .ok();
    audit(&["--expect-head", &head, "--expect-records", "3"])
        .code(3)
        .stderr_has("record 3");
    audit(&["--expect-head", &head]).code(3).stderr_has(&head);
    // A malformed anchor is a usage error.
    audit(&["--expect-head", "xyz"]).code(2);
}

// ---- defect 13: directories on the path of a policy or key ------------------------------

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn policy_and_keys_in_a_directory_anyone_may_write_are_refused() {
    let env = setup();
    pack_seq(&env, "b", "1");
    let open = env.path("open");
    fs::create_dir(&open).unwrap();
    fs::copy(env.path("k.pub"), open.join("k.pub")).unwrap();
    let policy =
        "[keys.ci]\nfile = \"k.pub\"\n[channels.nightly]\nsigners = [\"ci\"]\nthreshold = 1\n";
    fs::write(open.join("trust.toml"), policy).unwrap();
    chmod(&open.join("trust.toml"), 0o644);
    chmod(&open, 0o777);
    env.run(&["verify", "b", "--policy", "open/trust.toml"])
        .code(2)
        .stderr_has(&format!("directory {}", open.display()))
        .stderr_has("0777");
    env.run(&["verify", "b", "--trust", "open/k.pub"])
        .code(1)
        .stderr_has(&format!("directory {}", open.display()));
    // The policy in a safe directory naming a key file in the open one: refused too.
    fs::write(
        env.path("trust.toml"),
        policy.replace("k.pub", "open/k.pub"),
    )
    .unwrap();
    env.run(&["verify", "b", "--policy", "trust.toml"])
        .code(2)
        .stderr_has(&format!("directory {}", open.display()));
    // A secret key there (a replaced key would sign for someone else).
    fs::copy(env.path("k"), open.join("k")).unwrap();
    chmod(&open.join("k"), 0o600);
    env.pack(&["src"], "open/k", "b2", &[])
        .code(1)
        .stderr_has(&format!("directory {}", open.display()));
    // Group-writable is as bad.
    chmod(&open, 0o775);
    env.run(&["verify", "b", "--policy", "open/trust.toml"])
        .code(2)
        .stderr_has("0775");
    // Sticky and owned by us or root (like /tmp): fine.
    chmod(&open, 0o1777);
    env.run(&["verify", "b", "--policy", "open/trust.toml"])
        .ok();
    env.run(&["verify", "b", "--trust", "open/k.pub"]).ok();
    chmod(&open, 0o755);
    env.run(&["verify", "b", "--policy", "open/trust.toml"])
        .ok();
}

// ---- key loading ----------------------------------------------------------------------------

#[test]
fn a_public_key_given_as_the_secret_key_is_named_as_such() {
    let env = setup();
    env.pack(&["src"], "k.pub", "b", &[])
        .code(1)
        .stderr_has("k.pub is a public key")
        .stderr_has("secret key");
    let r = env.pack(&["src"], "k.pub", "b", &[]);
    assert!(!r.stderr.contains("chmod"), "{}", r.stderr);
    assert!(!env.path("b").exists());
}

#[test]
fn a_fifo_as_a_key_or_policy_fails_at_once() {
    let env = setup();
    pack_seq(&env, "b", "1");
    for name in ["fifo.pub", "fifo.toml", "fifo-sk"] {
        let p = env.path(name);
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
    env.run_for(20, &["verify", "b", "--trust", "fifo.pub"])
        .code(1)
        .stderr_has("fifo.pub")
        .stderr_has("FIFO");
    env.run_for(20, &["verify", "b", "--policy", "fifo.toml"])
        .code(2)
        .stderr_has("fifo.toml")
        .stderr_has("FIFO");
    let r = env.run_for(20, &["pack", "src", "--out", "b2", "--key", "fifo-sk"]);
    r.code(1).stderr_has("fifo-sk").stderr_has("FIFO");
}
