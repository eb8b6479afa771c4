//! Acceptance state and audit log at library level, with bundles packed by the real binary: the
//! order `commands/import.rs` follows (verify → state.check → import → record → audit), rollback,
//! replay and idempotent re-import, rejections audited, and crashes while writing both files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use airlock::audit::{self, Action, BadKind, Event, Outcome};
use airlock::bundle::{self, VerifiedBundle, VerifyOptions};
use airlock::progress::Silent;
use airlock::sign::PublicKey;
use airlock::state::{Decision, State};

use crate::support::*;

fn verify(env: &Env, dir: &str) -> airlock::Result<VerifiedBundle> {
    let trust = PublicKey::load(env.path("k.pub").to_str().unwrap()).unwrap();
    let opts = VerifyOptions {
        now: SystemTime::now(),
    };
    bundle::verify(&env.path(dir), &[trust], &opts, &Silent)
}

fn pack(env: &Env, out: &str, seq: u64) {
    env.pack(
        &["src"],
        "k",
        out,
        &["--channel", "nightly", "--sequence", &seq.to_string()],
    )
    .ok();
}

/// What `commands/import.rs` does around the target, the target itself left out.
fn import(state_dir: &Path, log: &Path, vb: &VerifiedBundle, allow_rollback: bool) -> Decision {
    let mut state = State::open(state_dir).unwrap();
    let m = vb.manifest();
    let decision = state.check(m, &vb.manifest_digest());
    let event = Event::for_bundle(Action::Import, vb)
        .freshness(&decision, allow_rollback)
        .target("files:/srv/models");
    if !decision.permits(allow_rollback) {
        audit::append(log, &event).unwrap();
        return decision;
    }
    // ... plan and execute the import here ...
    state
        .record_accepted(&m.channel, m.sequence, &m.bundle_id, &vb.manifest_digest())
        .unwrap();
    audit::append(log, &event.accepted()).unwrap();
    decision
}

#[test]
fn rollback_replay_and_reimport_with_real_bundles() {
    let env = Env::new();
    env.keygen("k");
    env.sample_tree("src");
    pack(&env, "b10", 10);
    pack(&env, "b11", 11);
    pack(&env, "b11-other", 11);
    let state_dir = env.path("state");
    let log = audit::default_path(&state_dir);
    let [b10, b11, b11_other] = ["b10", "b11", "b11-other"].map(|b| verify(&env, b).unwrap());

    assert_eq!(
        import(&state_dir, &log, &b10, false),
        Decision::Fresh { last: None }
    );
    assert!(matches!(
        import(&state_dir, &log, &b10, false),
        Decision::SameAsAccepted { .. }
    ));
    assert_eq!(
        import(&state_dir, &log, &b11, false),
        Decision::Fresh { last: Some(10) }
    );
    // Older: refused, and the refusal is audited.
    assert_eq!(
        import(&state_dir, &log, &b10, false),
        Decision::Rollback {
            sequence: 10,
            last: 11
        }
    );
    // Another bundle claiming sequence 11: refused.
    let reused = import(&state_dir, &log, &b11_other, false);
    assert!(
        matches!(reused, Decision::SequenceReused { sequence: 11, ref accepted } if accepted[0].bundle_id == b11.manifest().bundle_id),
        "{reused:?}"
    );
    // Recovery: an explicit override goes through, is audited, and does not lower the channel.
    import(&state_dir, &log, &b10, true);
    let state = State::open_read_only(&state_dir).unwrap();
    assert_eq!(state.channel("nightly").unwrap().sequence, 11);
    assert!(matches!(
        state.check(b11.manifest(), &b11.manifest_digest()),
        Decision::SameAsAccepted { .. }
    ));

    let rep = audit::verify(&log).unwrap();
    assert!(rep.is_intact(), "{rep:?}");
    assert_eq!(rep.records, 6);
    let records: Vec<audit::Record> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.event.outcome,
                r.event.freshness.clone().unwrap(),
                r.event.allow_rollback,
            )
        })
        .collect();
    use Outcome::*;
    let s = |x: &str| x.to_string();
    assert_eq!(
        summary,
        vec![
            (Accepted, s("fresh"), false),
            (Accepted, s("same-as-accepted"), false),
            (Accepted, s("fresh"), false),
            (Rejected, s("rollback"), false),
            (Rejected, s("sequence-reused"), false),
            (Accepted, s("rollback"), true),
        ]
    );
    let r = &records[0].event;
    let m = b10.manifest();
    assert!(r.verified);
    assert_eq!(r.action, Action::Import);
    assert_eq!(r.bundle_id.as_deref(), Some(m.bundle_id.as_str()));
    assert_eq!(
        (r.channel.as_deref(), r.sequence),
        (Some("nightly"), Some(10))
    );
    assert_eq!(r.manifest_digest, Some(b10.manifest_digest()));
    assert_eq!(r.signers.len(), 1);
    assert!(r.signers[0].trusted && r.signers[0].valid);
    assert_eq!(r.artifacts.len(), 1);
    let a = &r.artifacts[0];
    assert_eq!((a.name.as_str(), a.kind.as_str()), ("src", "directory"));
    assert_eq!(a.file_count, 6);
    assert_eq!(a.files.len(), 6);
    let blobs: Vec<_> = m.artifacts[0]
        .entries
        .iter()
        .filter_map(|e| e.blob)
        .collect();
    assert_eq!(a.files.iter().map(|f| f.digest).collect::<Vec<_>>(), blobs);
    assert_eq!(records[3].event.reasons[0].code, "rollback");
    // Nothing secret in the log: no key material.
    let text = fs::read_to_string(&log).unwrap();
    let secret = fs::read_to_string(env.path("k")).unwrap();
    for line in secret.lines().filter(|l| l.len() > 20) {
        assert!(!text.contains(line));
    }
}

#[test]
fn rejected_verification_is_audited_with_only_what_is_safe_to_know() {
    let env = Env::new();
    let (b, _) = env.sample_bundle();
    let manifest = b.join("manifest.json");
    let text = fs::read_to_string(&manifest).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["sequence"] = serde_json::json!(v["sequence"].as_u64().unwrap() + 1_000_000);
    let bumped = serde_json::to_string_pretty(&v).unwrap();
    fs::write(&manifest, &bumped).unwrap();
    let err = verify(&env, "b").unwrap_err();
    let log = env.path("audit/audit.jsonl");
    let ev = Event::for_unverified(Action::Verify, &b, &err);
    let rec = audit::append(&log, &ev).unwrap();
    assert_eq!(rec.event.outcome, Outcome::Rejected);
    assert!(!rec.event.verified);
    // Nothing from the unauthenticated manifest (issue 9, defect 1): only its digest and size.
    assert!(rec.event.bundle_id.is_none(), "{rec:?}");
    assert!(rec.event.sequence.is_none(), "{rec:?}");
    assert_eq!(rec.event.manifest_size, Some(bumped.len() as u64));
    assert_eq!(
        rec.event.manifest_digest,
        Some(airlock::format::Digest::of(bumped.as_bytes()))
    );
    assert!(
        rec.event
            .reasons
            .iter()
            .any(|r| r.code == "edited-manifest"),
        "{:?}",
        rec.event.reasons
    );
    // A bundle directory without any manifest still gets a record.
    let ev = Event::for_unverified(
        Action::Verify,
        &env.path("nowhere"),
        &airlock::error::Error::Rejected {
            dir: env.path("nowhere"),
            problems: vec![airlock::bundle::Problem::MissingManifest],
        },
    );
    audit::append(&log, &ev).unwrap();
    assert!(audit::verify(&log).unwrap().is_intact());
}

const CRASH_DIR: &str = "AIRLOCK_TEST_CRASH_DIR";
/// Channels in the state besides the child's, so that each state write is large (hundreds of
/// KB) and a write that is not atomic has a window a reader or a kill can hit.
const FILLER_CHANNELS: u64 = 2000;

/// Not a test on its own (ignored, so it never counts as one that passed): the child
/// [`crash_while_writing_state_and_audit`] runs and kills. Records ever higher sequences in the
/// state, then an audit record of each, printing each sequence once both are written, until
/// killed.
#[test]
#[ignore = "the child process of state::crash_while_writing_state_and_audit"]
fn crash_child() {
    let dir = std::env::var_os(CRASH_DIR)
        .map(PathBuf::from)
        .expect("crash_child is run by state::crash_while_writing_state_and_audit, which sets AIRLOCK_TEST_CRASH_DIR");
    let vb_event = |i: u64| {
        let mut e = Event::new(Action::Import, Path::new("/media/b"));
        e.sequence = Some(i);
        e.channel = Some("c".into());
        e.accepted()
    };
    let digest = airlock::format::Digest::of(b"x");
    let mut out = std::io::stdout();
    loop {
        let mut s = State::open(&dir).unwrap();
        let next = s.channel("c").map_or(1, |c| c.sequence + 1);
        s.record_accepted("c", next, &format!("{next:032x}"), &digest)
            .unwrap();
        drop(s);
        audit::append(&dir.join("audit.jsonl"), &vb_event(next)).unwrap();
        use std::io::Write;
        writeln!(out, "{next}").unwrap();
        out.flush().unwrap();
    }
}

/// The sequences of the child's audit records (the parent's probes have none), in log order.
fn child_sequences(log: &Path) -> Vec<u64> {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|r| r["sequence"].as_u64())
        .collect()
}

/// Kills a child that writes the state and the audit log at points spread over its loop, while
/// this process reads both all the time. Every read, during the writes and after each kill,
/// sees a complete state file whose sequence never goes back, and a log that is intact or ends
/// in the one torn line the next append repairs; the log never runs ahead of the state. The
/// test fails if the child stops on its own, makes no progress in a round, or any read sees a
/// partial state (as a state written in place, not replaced atomically, shows).
#[test]
fn crash_while_writing_state_and_audit() {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc, Mutex};

    let env = Env::new();
    let dir = env.path("state");
    let log = dir.join("audit.jsonl");
    let exe = std::env::current_exe().unwrap();
    // Channels besides the child's, so that each state write is large (hundreds of KB).
    let mut filler = airlock::state::StateFile::default();
    for f in 0..FILLER_CHANNELS {
        filler.channels.insert(
            format!("filler-{f}"),
            airlock::state::ChannelState {
                sequence: 1,
                accepted: vec![airlock::state::Accepted {
                    bundle_id: format!("{f:032x}"),
                    manifest_digest: airlock::format::Digest::of(b"x"),
                    time: "2026-01-02T03:04:05Z".into(),
                }],
            },
        );
    }
    fs::create_dir_all(&dir).unwrap();
    let mut bytes = serde_json::to_vec_pretty(&filler).unwrap();
    bytes.push(b'\n'); // as State writes it
    fs::write(dir.join("state.json"), bytes).unwrap();
    assert!(fs::metadata(dir.join("state.json")).unwrap().len() > 200_000);
    let mut last = 0;
    for round in 0..12u64 {
        let mut child = Command::new(&exe)
            .args([
                "state::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The child's progress: each sequence it completed (state and audit record written).
        let (tx, rx) = mpsc::channel::<u64>();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(n) = line.trim().parse() {
                    let _ = tx.send(n);
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        // A reader, all the time the child writes: every state read is a complete file whose
        // sequence never goes back (a missing file once one was written is going back too).
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new((last, 0u64, Vec::<String>::new())));
        let reader = {
            let (stop, seen, dir) = (stop.clone(), seen.clone(), dir.clone());
            std::thread::spawn(move || {
                let path = dir.join("state.json");
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    // Quick reads (the whole file there, as written), and every so often a
                    // full load and parse.
                    if !i.is_multiple_of(16) {
                        let bytes = fs::read(&path).unwrap_or_default();
                        if !bytes.ends_with(b"}\n") {
                            let mut g = seen.lock().unwrap();
                            g.2.push(format!("read a state file of {} bytes, cut", bytes.len()));
                        }
                        continue;
                    }
                    let r = State::open_read_only(&dir);
                    let mut g = seen.lock().unwrap();
                    match r {
                        Ok(s) => {
                            let seq = s.channel("c").map_or(0, |c| c.sequence);
                            let before = g.0;
                            if seq < before {
                                g.2.push(format!("read sequence {seq} after {before}"));
                            }
                            g.0 = g.0.max(seq);
                            g.1 += 1;
                        }
                        Err(e) => g.2.push(format!("read failed: {e}")),
                    }
                }
            })
        };
        // Wait for progress in this round (the child got past its start), then a little more,
        // different each round, so the kill lands at another point of the loop.
        let first_round = rx.recv_timeout(Duration::from_secs(120));
        let mut done = first_round.ok();
        for _ in 0..(round % 3) {
            done = rx.recv_timeout(Duration::from_secs(60)).ok().or(done);
        }
        std::thread::sleep(Duration::from_millis((round * 7) % 23));
        let alive = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        let stderr = err.join().unwrap();
        assert!(
            alive && done.is_some(),
            "round {round}: the child stopped on its own or made no progress:\n{stderr}"
        );
        let (max_seen, reads, failures) = seen.lock().unwrap().clone();
        assert!(
            failures.is_empty(),
            "round {round} ({reads} reads): {failures:?}"
        );
        assert!(
            reads > 0,
            "round {round}: the state was never read while written"
        );
        // After the kill: the state is a complete file, and never went back.
        let s = State::open(&dir).unwrap();
        let seq = s.channel("c").map_or(0, |c| c.sequence);
        assert!(
            seq >= max_seen.max(last),
            "round {round}: {seq} < {max_seen}/{last}"
        );
        assert!(
            seq >= done.unwrap(),
            "round {round}: the state lost a completed sequence"
        );
        assert_eq!(s.file().channels.len() as u64, FILLER_CHANNELS + 1);
        last = seq;
        drop(s);
        // The log is intact, or ends in a torn line that the next append repairs; it never
        // runs ahead of the state (the state is written first), and at most one behind.
        let rep = audit::verify(&log).unwrap();
        if let Some(bad) = &rep.bad {
            assert_eq!(bad.kind, BadKind::TornTail, "round {round}: {rep:?}");
        }
        audit::append(&log, &Event::new(Action::Verify, Path::new("probe"))).unwrap();
        let rep = audit::verify(&log).unwrap();
        assert!(rep.is_intact(), "round {round}: {rep:?}");
        let seqs = child_sequences(&log);
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "round {round}: {seqs:?}"
        );
        let logged = seqs.last().copied().unwrap_or(0);
        assert!(
            logged == seq || logged + 1 == seq,
            "round {round}: state at {seq}, log at {logged}"
        );
    }
    assert!(
        last >= 12,
        "every round completed at least one sequence: {last}"
    );
}
