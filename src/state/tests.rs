use std::ffi::OsString;
use std::fs::{self, File};
use std::path::Path;

use super::*;
use crate::format::Digest;

const ID_A: &str = "0123456789abcdef0123456789abcdef";
const ID_B: &str = "fedcba9876543210fedcba9876543210";

fn d(n: u8) -> Digest {
    Digest::of(&[n])
}

#[test]
fn default_dir_rules() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    };
    let both = env(&[("XDG_STATE_HOME", "/x/state"), ("HOME", "/home/u")]);
    assert_eq!(
        default_dir_from(&both, Some(1000)).unwrap(),
        Path::new("/x/state/airlock")
    );
    assert_eq!(
        default_dir_from(&both, Some(0)).unwrap(),
        Path::new("/x/state/airlock")
    );
    let home = env(&[("HOME", "/home/u")]);
    assert_eq!(
        default_dir_from(&home, Some(1000)).unwrap(),
        Path::new("/home/u/.local/state/airlock")
    );
    assert_eq!(
        default_dir_from(&home, Some(0)).unwrap(),
        Path::new("/var/lib/airlock")
    );
    let relative = env(&[("XDG_STATE_HOME", "rel"), ("HOME", "/home/u")]);
    assert_eq!(
        default_dir_from(&relative, None).unwrap(),
        Path::new("/home/u/.local/state/airlock")
    );
    let empty = env(&[("XDG_STATE_HOME", "")]);
    assert_eq!(
        default_dir_from(&empty, Some(0)).unwrap(),
        Path::new("/var/lib/airlock")
    );
    assert!(default_dir_from(&empty, Some(1000)).is_err());
}

#[test]
fn every_decision() {
    let t = tempfile::tempdir().unwrap();
    let mut s = State::open(t.path()).unwrap();
    assert_eq!(
        s.check_parts("nightly", 5, ID_A, &d(1)),
        Decision::Fresh { last: None }
    );
    assert!(s.record_accepted("nightly", 5, ID_A, &d(1)).unwrap());
    // Idempotent: same id and digest at the recorded sequence.
    let same = s.check_parts("nightly", 5, ID_A, &d(1));
    assert!(
        matches!(same, Decision::SameAsAccepted { ref accepted } if accepted.bundle_id == ID_A)
    );
    assert!(same.permits(false));
    assert!(!s.record_accepted("nightly", 5, ID_A, &d(1)).unwrap());
    // Another bundle at the same sequence, or the same id with another manifest.
    for (id, dg) in [(ID_B, d(1)), (ID_B, d(2)), (ID_A, d(2))] {
        let r = s.check_parts("nightly", 5, id, &dg);
        assert!(
            matches!(r, Decision::SequenceReused { sequence: 5, .. }),
            "{r:?}"
        );
        assert!(!r.permits(false) && r.permits(true));
    }
    // Lower: rollback. Higher: fresh.
    let r = s.check_parts("nightly", 4, ID_B, &d(3));
    assert_eq!(
        r,
        Decision::Rollback {
            sequence: 4,
            last: 5
        }
    );
    assert!(!r.permits(false) && r.permits(true));
    assert_eq!(
        s.check_parts("nightly", 6, ID_B, &d(3)),
        Decision::Fresh { last: Some(5) }
    );
    // Channels are independent.
    assert_eq!(
        s.check_parts("prod", 1, ID_B, &d(3)),
        Decision::Fresh { last: None }
    );
    // An allowed rollback does not lower the channel.
    assert!(!s.record_accepted("nightly", 4, ID_B, &d(3)).unwrap());
    assert_eq!(s.channel("nightly").unwrap().sequence, 5);
    // An allowed reuse adds to the sequence's bundles; both are then "same".
    assert!(s.record_accepted("nightly", 5, ID_B, &d(4)).unwrap());
    assert!(matches!(
        s.check_parts("nightly", 5, ID_B, &d(4)),
        Decision::SameAsAccepted { .. }
    ));
    assert!(matches!(
        s.check_parts("nightly", 5, ID_A, &d(1)),
        Decision::SameAsAccepted { .. }
    ));
    // A newer sequence replaces; the old one is now a rollback.
    assert!(s.record_accepted("nightly", 9, ID_B, &d(5)).unwrap());
    assert_eq!(
        s.check_parts("nightly", 5, ID_A, &d(1)),
        Decision::Rollback {
            sequence: 5,
            last: 9
        }
    );
    for dec in [
        Decision::Fresh { last: None },
        s.check_parts("nightly", 1, ID_A, &d(1)),
        s.check_parts("nightly", 9, ID_A, &d(1)),
    ] {
        assert!(!dec.to_string().is_empty() && !dec.code().is_empty());
    }
}

#[test]
fn persists_and_reloads() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("a/b/state");
    {
        let mut s = State::open(&dir).unwrap();
        s.record_accepted("nightly", 3, ID_A, &d(1)).unwrap();
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(STATE_FILE)), 0o600);
    }
    let s = State::open_read_only(&dir).unwrap();
    assert_eq!(s.channel("nightly").unwrap().sequence, 3);
    assert!(matches!(
        s.check_parts("nightly", 3, ID_A, &d(1)),
        Decision::SameAsAccepted { .. }
    ));
    let mut ro = State::open_read_only(&dir).unwrap();
    assert!(ro.record_accepted("nightly", 4, ID_A, &d(1)).is_err());
    // A missing directory is an empty state and is not created.
    let none = t.path().join("none");
    assert!(State::open_read_only(&none)
        .unwrap()
        .file()
        .channels
        .is_empty());
    assert!(!none.exists());
}

#[test]
fn leftover_temp_file_is_ignored_and_old_state_stays_valid() {
    let t = tempfile::tempdir().unwrap();
    State::open(t.path())
        .unwrap()
        .record_accepted("nightly", 3, ID_A, &d(1))
        .unwrap();
    // A write interrupted before its rename: a torn temp file next to the real one.
    let tmp = t.path().join(".airlock-tmp-XXXX");
    fs::write(&tmp, b"{\"format\":\"airlock-state\",\"version\":1,\"chan").unwrap();
    let ro = State::open_read_only(t.path()).unwrap();
    assert_eq!(ro.channel("nightly").unwrap().sequence, 3);
    let mut s = State::open(t.path()).unwrap();
    assert!(
        !tmp.exists(),
        "open under the lock removes stale temp files"
    );
    assert_eq!(s.channel("nightly").unwrap().sequence, 3);
    s.record_accepted("nightly", 4, ID_B, &d(2)).unwrap();
    assert_eq!(
        State::open_read_only(t.path())
            .unwrap()
            .channel("nightly")
            .unwrap()
            .sequence,
        4
    );
}

#[test]
fn damaged_or_foreign_state_files_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let good = format!(
        r#"{{"format":"airlock-state","version":1,"channels":{{"nightly":{{"sequence":3,"accepted":[{{"bundle_id":"{ID_A}","manifest_digest":"{}","time":"2026-01-02T03:04:05Z"}}]}}}}}}"#,
        d(1)
    );
    assert!(StateFile::parse(good.as_bytes()).is_ok());
    let cases = [
        good.replace("\"version\":1", "\"version\":2"),
        good.replace("airlock-state", "other"),
        good.replace("\"sequence\":3", "\"sequence\":3,\"extra\":1"),
        good.replace("nightly", "-bad"),
        good.replace(ID_A, "XYZ"),
        good.replace("2026-01-02T03:04:05Z", "yesterday"),
        good.replace("\"sequence\":3", "\"sequence\":-1"),
        good[..good.len() - 3].to_string(),
        "[".repeat(100_000),
        // A channel named twice: serde_json alone would keep the last one.
        good.replace(
            "\"channels\":{",
            "\"channels\":{\"nightly\":{\"sequence\":1000,\"accepted\":[]},",
        ),
    ];
    for bad in &cases {
        assert!(StateFile::parse(bad.as_bytes()).is_err(), "{bad:.120}");
        fs::write(t.path().join(STATE_FILE), bad).unwrap();
        let e = State::open(t.path()).unwrap_err().to_string();
        assert!(e.contains("damaged"), "{e}");
    }
    let huge = vec![b' '; MAX_STATE_BYTES as usize + 10];
    fs::write(t.path().join(STATE_FILE), &huge).unwrap();
    assert!(State::open_read_only(t.path()).is_err());
}

#[test]
fn lock_serialises_imports() {
    let t = tempfile::tempdir().unwrap();
    let s = State::open(t.path()).unwrap();
    let lock = File::open(t.path().join(LOCK_FILE)).unwrap();
    assert!(matches!(lock.try_lock(), Err(fs::TryLockError::WouldBlock)));
    drop(s);
    lock.try_lock().unwrap();
}

#[test]
fn same_sequence_list_is_bounded() {
    let t = tempfile::tempdir().unwrap();
    let mut s = State::open(t.path()).unwrap();
    for i in 0..(MAX_ACCEPTED_PER_SEQUENCE as u8 + 3) {
        s.record_accepted("c", 1, ID_A, &d(i)).unwrap();
    }
    let c = s.channel("c").unwrap();
    assert_eq!(c.accepted.len(), MAX_ACCEPTED_PER_SEQUENCE);
    assert_eq!(c.accepted[0].manifest_digest, d(3));
    State::open_read_only(t.path()).unwrap();
}
