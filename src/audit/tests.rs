use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::line::{record_head, sha256_hex};
use super::*;
use crate::error::Error;
use crate::format::Digest;
use crate::state::Decision;

fn event(i: u32) -> Event {
    let mut e = Event::new(Action::Import, Path::new("/media/usb/bundle"));
    e.operator = "alice".into();
    e.bundle_id = Some(format!("{i:032x}"));
    e.channel = Some("nightly".into());
    e.sequence = Some(i as u64);
    e.manifest_digest = Some(Digest::of(&i.to_le_bytes()));
    if i.is_multiple_of(2) {
        e.accepted()
    } else {
        e.reason("rollback", format!("rollback {i}"))
    }
}

fn log_with(n: u32) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("sub/audit.jsonl");
    for i in 1..=n {
        append_at(
            &p,
            &event(i),
            UNIX_EPOCH + Duration::from_secs(1_800_000_000 + i as u64),
        )
        .unwrap();
    }
    (t, p)
}

fn lines(p: &Path) -> Vec<String> {
    fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(p: &Path, ls: &[String]) {
    fs::write(p, ls.join("\n") + "\n").unwrap();
}

fn bad(p: &Path) -> BadLine {
    verify(p).unwrap().bad.expect("damage detected")
}

#[test]
fn chain_intact() {
    let (_t, p) = log_with(5);
    let rep = verify(&p).unwrap();
    assert!(rep.is_intact(), "{rep:?}");
    assert_eq!((rep.records, rep.lines), (5, 5));
    let ls = lines(&p);
    assert_eq!(
        rep.head.as_deref(),
        Some(sha256_hex(ls[4].as_bytes()).as_str())
    );
    let first: Record = serde_json::from_str(&ls[0]).unwrap();
    assert_eq!((first.seq, first.prev.as_str()), (1, GENESIS));
    assert_eq!(first.time, "2027-01-15T08:00:01Z");
    let second: Record = serde_json::from_str(&ls[1]).unwrap();
    assert_eq!(second.prev, sha256_hex(ls[0].as_bytes()));
    assert_eq!(second.event, event(2));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
    // Empty log: intact, no records.
    fs::write(&p, b"").unwrap();
    let rep = verify(&p).unwrap();
    assert!(rep.is_intact() && rep.records == 0 && rep.head.is_none());
}

#[test]
fn edit_in_the_middle_is_detected_at_that_line() {
    let (_t, p) = log_with(5);
    let orig = lines(&p);
    // A valid record with one value changed.
    let mut ls = orig.clone();
    ls[2] = ls[2].replace("\"alice\"", "\"mallory\"");
    write_lines(&p, &ls);
    let b = bad(&p);
    assert_eq!((b.line, b.kind), (3, BadKind::Edited), "{b:?}");
    // The outcome flipped.
    let mut ls = orig.clone();
    ls[2] = ls[2].replace("\"rejected\"", "\"accepted\"");
    write_lines(&p, &ls);
    assert_eq!(bad(&p).line, 3);
    // Its head reformatted (same JSON value): not the head every record line begins with.
    let mut ls = orig.clone();
    ls[2] = ls[2].replace(",\"prev\"", ", \"prev\"");
    write_lines(&p, &ls);
    assert_eq!((bad(&p).line, bad(&p).kind), (3, BadKind::Malformed));
    // An unknown field added before the head: not a record line.
    let mut ls = orig.clone();
    ls[1] = ls[1].replacen('{', "{\"x\":1,", 1);
    write_lines(&p, &ls);
    assert_eq!((bad(&p).line, bad(&p).kind), (2, BadKind::Malformed));
    // After the head it is a record (read leniently), but other bytes than the next one
    // chains from: edited.
    let mut ls = orig.clone();
    ls[1] = ls[1].replacen(",\"time\"", ",\"x\":1,\"time\"", 1);
    write_lines(&p, &ls);
    assert_eq!((bad(&p).line, bad(&p).kind), (2, BadKind::Edited));
    // Reformatted after the head: the same.
    let mut ls = orig.clone();
    ls[1] = ls[1].replacen(",\"time\"", ", \"time\"", 1);
    write_lines(&p, &ls);
    assert_eq!((bad(&p).line, bad(&p).kind), (2, BadKind::Edited));
    // A key named twice: never a record, whatever the next line chains from.
    let mut ls = orig.clone();
    ls[1] = ls[1].replacen(",\"time\"", ",\"operator\":\"x\",\"time\"", 1);
    write_lines(&p, &ls);
    assert_eq!((bad(&p).line, bad(&p).kind), (2, BadKind::Malformed));
    // The first record edited.
    let mut ls = orig.clone();
    ls[0] = ls[0].replace("\"alice\"", "\"mallory\"");
    write_lines(&p, &ls);
    assert_eq!(bad(&p).line, 1);
    // The last record edited: nothing chains from it, so only an anchor shows it.
    let head = verify(&p).unwrap().head;
    let mut ls = orig;
    ls[4] = ls[4].replace("\"alice\"", "\"mallory\"");
    write_lines(&p, &ls);
    let rep = verify(&p).unwrap();
    assert!(rep.is_intact());
    assert_ne!(rep.head, head);
}

#[test]
fn delete_reorder_insert_are_detected() {
    let (_t, p) = log_with(5);
    let orig = lines(&p);
    let mut ls = orig.clone();
    ls.remove(1);
    write_lines(&p, &ls);
    assert_eq!((bad(&p).line, bad(&p).kind), (2, BadKind::Sequence));
    let mut ls = orig.clone();
    ls.remove(0);
    write_lines(&p, &ls);
    assert_eq!((bad(&p).line, bad(&p).kind), (1, BadKind::Sequence));
    let mut ls = orig.clone();
    ls.swap(2, 3);
    write_lines(&p, &ls);
    assert_eq!((bad(&p).line, bad(&p).kind), (3, BadKind::Sequence));
    // A record duplicated.
    let mut ls = orig.clone();
    ls.insert(3, ls[2].clone());
    write_lines(&p, &ls);
    assert_eq!((bad(&p).line, bad(&p).kind), (4, BadKind::Sequence));
    // A garbage line inserted.
    let mut ls = orig;
    ls.insert(2, "hello".into());
    write_lines(&p, &ls);
    assert_eq!((bad(&p).line, bad(&p).kind), (3, BadKind::Malformed));
    // Over-long line.
    fs::write(&p, vec![b'x'; MAX_LINE + 5]).unwrap();
    assert_eq!(bad(&p).kind, BadKind::TooLong);
}

#[test]
fn truncation_is_a_torn_tail() {
    let (_t, p) = log_with(4);
    let bytes = fs::read(&p).unwrap();
    let len = bytes.len();
    fs::write(&p, &bytes[..len - 10]).unwrap();
    let b = bad(&p);
    assert_eq!((b.line, b.kind), (4, BadKind::TornTail), "{b:?}");
    assert_eq!(verify(&p).unwrap().records, 3);
    // Even the newline alone missing is a torn tail.
    fs::write(&p, &bytes[..len - 1]).unwrap();
    assert_eq!((bad(&p).line, bad(&p).kind), (4, BadKind::TornTail));
}

#[test]
fn append_after_a_torn_line_names_it_and_the_chain_holds() {
    let (_t, p) = log_with(3);
    let bytes = fs::read(&p).unwrap();
    // A crash mid-append: the beginning of a fourth record (chaining from the third).
    let head = record_head(4, &sha256_hex(lines(&p)[2].as_bytes()));
    let torn_text = format!("{head},\"time\":\"20");
    let torn = torn_text.as_bytes();
    // Junk instead, unterminated or not, is no crash: refused, and the log left as it is.
    for junk in [&b"{\"seq\":4,\"prev\":\"ab"[..], b"hello", b"hello\n"] {
        let mut b2 = bytes.clone();
        b2.extend_from_slice(junk);
        fs::write(&p, &b2).unwrap();
        let e = append(&p, &event(4)).unwrap_err();
        assert!(matches!(e, Error::AuditBroken(_)), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b2);
    }
    // Two lines torn: no crash leaves that.
    let mut b2 = bytes.clone();
    b2.extend_from_slice(b"{\"seq\":4,\n");
    b2.extend_from_slice(torn);
    fs::write(&p, &b2).unwrap();
    assert!(append(&p, &event(4)).is_err());
    // NULs a file system left after a crash are a torn line too.
    let mut b2 = bytes.clone();
    b2.extend_from_slice(&torn[..20]);
    b2.extend_from_slice(&[0; 30]);
    fs::write(&p, &b2).unwrap();
    assert_eq!(append(&p, &event(4)).unwrap().torn.len(), 1);
    assert!(verify(&p).unwrap().is_intact());
    let mut b2 = bytes.clone();
    b2.extend_from_slice(torn);
    fs::write(&p, &b2).unwrap();
    assert_eq!(bad(&p).kind, BadKind::TornTail);
    let r = append(&p, &event(4)).unwrap();
    assert_eq!(r.seq, 4);
    assert_eq!(r.torn, vec![sha256_hex(torn)]);
    assert_eq!(r.prev, sha256_hex(lines(&p)[2].as_bytes()));
    append(&p, &event(5)).unwrap();
    let rep = verify(&p).unwrap();
    assert!(rep.is_intact(), "{rep:?}");
    assert_eq!(
        (rep.records, rep.lines, rep.recovered.clone()),
        (5, 6, vec![4])
    );
    // Replacing the recovered torn line by other bytes is detected.
    let mut ls = lines(&p);
    ls[3] = "{\"seq\":4,\"prev\":\"cd".into();
    write_lines(&p, &ls);
    assert_eq!((bad(&p).line, bad(&p).kind), (4, BadKind::Malformed));
    // So is junk that the next record names as torn (it is not what a crash leaves).
    let mut ls = lines(&p);
    ls[3] = "junk".into();
    let mut r5: Record = serde_json::from_str(&ls[4]).unwrap();
    r5.torn = vec![sha256_hex(b"junk")];
    ls[4] = serde_json::to_string(&r5).unwrap();
    write_lines(&p, &ls);
    assert_eq!((bad(&p).line, bad(&p).kind), (4, BadKind::Malformed));
    // The first append torn: the next one starts the chain and names it.
    fs::write(&p, b"{\"seq\":1,").unwrap();
    let r = append(&p, &event(1)).unwrap();
    assert_eq!((r.seq, r.prev.as_str(), r.torn.len()), (1, GENESIS, 1));
    assert!(verify(&p).unwrap().is_intact());
    // A complete record that only lacks its newline is kept and chained from.
    let (_t2, q) = log_with(2);
    let b = fs::read(&q).unwrap();
    fs::write(&q, &b[..b.len() - 1]).unwrap();
    let r = append(&q, &event(3)).unwrap();
    assert_eq!((r.seq, r.torn.len()), (3, 0));
    let rep = verify(&q).unwrap();
    assert!(rep.is_intact() && rep.records == 3, "{rep:?}");
}

#[test]
fn links_are_refused() {
    let (t, p) = log_with(1);
    let before = fs::read(&p).unwrap();
    let hard = t.path().join("elsewhere");
    fs::hard_link(&p, &hard).unwrap();
    let e = append(&p, &event(2)).unwrap_err().to_string();
    assert!(e.contains("hard links"), "{e}");
    fs::remove_file(&hard).unwrap();
    #[cfg(unix)]
    {
        let link = t.path().join("link.jsonl");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let e = append(&link, &event(2)).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(AuditLog::open_checked(&link).is_err());
    }
    assert_eq!(fs::read(&p).unwrap(), before);
}

#[test]
fn long_records_chain_across_read_blocks() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("audit.jsonl");
    for i in 0..3 {
        let e = event(i).reason("big", "x".repeat(MAX_MESSAGE));
        let mut e2 = e.clone();
        for _ in 0..40 {
            e2 = e2.reason("big", "y".repeat(MAX_MESSAGE + 10));
        }
        append(&p, &e2).unwrap();
    }
    assert!(fs::metadata(&p).unwrap().len() > 3 * (64 << 10));
    let rep = verify(&p).unwrap();
    assert!(rep.is_intact() && rep.records == 3, "{rep:?}");
}

#[test]
fn operator_names() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let passwd = |uid: u32| (uid == 0).then(|| "root".to_string());
    // The name comes from the uid; USER and LOGNAME, which anyone can set, are not read.
    let op = operator_from(
        &env(&[("SUDO_USER", "bob"), ("USER", "eve")]),
        Some(0),
        &passwd,
    );
    assert_eq!(
        (op.name.as_str(), op.sudo_user.as_deref()),
        ("root", Some("bob"))
    );
    let op = operator_from(
        &env(&[("USER", "carol"), ("LOGNAME", "x")]),
        Some(5),
        &passwd,
    );
    assert_eq!((op.name.as_str(), op.sudo_user), ("uid:5", None));
    let op = operator_from(&env(&[("SUDO_USER", "a\nb")]), None, &passwd);
    assert_eq!((op.name.as_str(), op.sudo_user), ("unknown", None));
    let op = operator_from(&env(&[("SUDO_USER", "")]), Some(0), &passwd);
    assert_eq!(op.sudo_user, None);
}

#[test]
fn passwd_lines() {
    let db = b"# comment\n+nis::0:0::/:/bin/sh\nroot:x:0:0:root:/root:/bin/bash\n\
bad line\nop\x07:x:7:7::/:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\ntwin:x:1000:1000::/:/bin/sh\n";
    assert_eq!(name_in(&db[..], 0).as_deref(), Some("root"));
    assert_eq!(name_in(&db[..], 1000).as_deref(), Some("alice"));
    assert_eq!(name_in(&db[..], 7), None, "a name with a control character");
    assert_eq!(name_in(&db[..], 42), None);
    // An over-long line is skipped, not read into memory whole, and what follows still counts.
    let mut long = b"x:x:5:".to_vec();
    long.extend(std::iter::repeat_n(b'a', 200 << 10));
    long.extend_from_slice(b"\nbob:x:5:5::/:/bin/sh\n");
    assert_eq!(name_in(&long[..], 5).as_deref(), Some("bob"));
    // A database that is a link is not read.
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("passwd");
    std::fs::write(&real, "me:x:3:3::/:/bin/sh\n").unwrap();
    assert_eq!(user_name(&real, 3).as_deref(), Some("me"));
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert_eq!(user_name(&link, 3), None);
}

#[test]
fn bundle_dirs_are_recorded_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir(base.join("real")).unwrap();
    std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
    // The parent canonicalised, the last component as given: a link is named, not followed.
    assert_eq!(absolute_bundle_dir(&base.join("link")), base.join("link"));
    assert_eq!(
        absolute_bundle_dir(&base.join("link/../real")),
        base.join("real")
    );
    assert_eq!(absolute_bundle_dir(&base.join("real/..")), base);
    assert_eq!(
        absolute_bundle_dir(&base.join("none/b")),
        base.join("none/b")
    );
    let rel = absolute_bundle_dir(std::path::Path::new("some/rel"));
    assert!(rel.is_absolute() && rel.ends_with("some/rel"), "{rel:?}");
}

#[test]
fn reasons_are_bounded() {
    let mut e = event(1);
    for _ in 0..(MAX_REASONS + 5) {
        e = e.reason("x", "m".repeat(MAX_MESSAGE * 2));
    }
    assert_eq!(e.reasons.len(), MAX_REASONS);
    assert!(e.reasons.iter().all(|r| r.message.len() <= MAX_MESSAGE + 3));
    let d = Decision::Rollback {
        sequence: 1,
        last: 2,
    };
    let e = event(2).accepted().freshness(&d, false);
    assert_eq!(e.outcome, Outcome::Rejected);
    assert_eq!(e.reasons.last().unwrap().code, "rollback");
    let e = event(2).accepted().freshness(&d, true);
    assert_eq!((e.outcome, e.allow_rollback), (Outcome::Accepted, true));
}

/// `line` with `prev` replaced so that it chains from `before`'s bytes.
fn chained(before: &str, line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let old = v["prev"].as_str().unwrap().to_string();
    line.replacen(&old, &sha256_hex(before.as_bytes()), 1)
}

#[test]
fn records_are_versioned_and_read_leniently() {
    let (_t, p) = log_with(2);
    let ls = lines(&p);
    assert!(
        ls[0].starts_with(&format!(
            "{},\"v\":{RECORD_VERSION},",
            record_head(1, GENESIS)
        )),
        "{}",
        ls[0]
    );
    // A record of this version with a field it does not know, at the end: intact.
    let extra = chained(
        &ls[1],
        &ls[1].replacen("\"seq\":2", "\"seq\":3", 1).replacen(
            ",\"time\"",
            ",\"host\":{\"name\":\"enclave-3\"},\"time\"",
            1,
        ),
    );
    // A record of a later version: unknown action and outcome, only the chain fields read.
    let future = format!(
        "{},\"v\":9,\"time\":\"2030-01-01T00:00:00Z\",\"action\":\"promote\",\"outcome\":\"quarantined\",\"attestation\":[1,2]}}",
        record_head(4, &sha256_hex(extra.as_bytes()))
    );
    // A version 1 record (no `v`, as written before versions existed).
    let v1 = chained(
        &future,
        &ls[1].replacen("\"seq\":2", "\"seq\":5", 1).replacen(
            &format!(",\"v\":{RECORD_VERSION}"),
            "",
            1,
        ),
    );
    let all = [ls.clone(), vec![extra, future.clone(), v1]].concat();
    write_lines(&p, &all);
    let rep = verify(&p).unwrap();
    assert!(rep.is_intact(), "{rep:?}");
    assert_eq!((rep.records, rep.newer_records), (5, 1));
    // Appending chains from the last line's bytes as stored.
    let r = append(&p, &event(6)).unwrap();
    assert_eq!((r.seq, r.v), (6, RECORD_VERSION));
    assert_eq!(r.prev, sha256_hex(all[4].as_bytes()));
    assert!(verify(&p).unwrap().is_intact());
    // A later version's record still needs its chain fields in form.
    for bad_line in [
        future.replace("\"v\":9", "\"v\":0"),
        future.replace("\"v\":9", "\"v\":9,\"v\":9"),
        future.replace("\"v\":9", "\"v\":\"9\""),
        future.replace("\"v\":9", "\"v\":9,\"torn\":[\"xyz\"]"),
        future.replacen("\"seq\":4", "\"seq\":-4", 1),
    ] {
        let mut ls2 = all[..3].to_vec();
        ls2.push(bad_line.clone());
        write_lines(&p, &ls2);
        assert_eq!(
            (bad(&p).line, bad(&p).kind),
            (4, BadKind::Malformed),
            "{bad_line}"
        );
    }
    // A record of a version this code knows must be valid for it.
    let mut ls2 = all[..4].to_vec();
    ls2.push(all[4].replacen("\"verified\":false", "\"verified\":\"no\"", 1));
    write_lines(&p, &ls2);
    assert_eq!((bad(&p).line, bad(&p).kind), (5, BadKind::Malformed));
}

#[test]
fn outcomes_tell_content_from_operations_and_signals() {
    use crate::bundle::Problem;
    let rejected = Error::Rejected {
        dir: "b".into(),
        problems: vec![Problem::MissingManifest],
    };
    let io = Error::io(
        "write",
        Path::new("dest/f"),
        std::io::Error::other("No space left"),
    );
    let cases = [
        (rejected, Outcome::Rejected),
        (Error::Corrupt("bad chunk".into()), Outcome::Rejected),
        (io, Outcome::Failed),
        (Error::Other("network".into()), Outcome::Failed),
        (Error::Conflict("dest/f exists".into()), Outcome::Failed),
        (Error::Interrupted { signal: 2 }, Outcome::Interrupted),
    ];
    for (err, want) in cases {
        assert_eq!(Outcome::of(&err), want, "{err}");
        let e = event(1).accepted().outcome_of(&err);
        assert_eq!(e.outcome, want);
        assert_eq!(event(1).rejected_by(&err).outcome, want);
        assert!(!e.reasons.is_empty());
    }
    let s = serde_json::to_string(&Outcome::Interrupted).unwrap();
    assert_eq!(s, "\"interrupted\"");
    assert_eq!(
        serde_json::to_string(&Outcome::Failed).unwrap(),
        "\"failed\""
    );
}
