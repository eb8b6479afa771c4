//! The rules for one line of the log: its hash, how a record's line begins, what a crash can
//! leave of one, and how a line is read as a record (leniently, and by its version).
//!
//! The chain covers the exact bytes of each line, so a line is never re-serialised to be
//! checked: a record is read for its chain fields, and records of the versions this code knows
//! are also checked against their schema. Fields it does not know are ignored (a later version
//! may add them), but the JSON stays strict: a key named twice is refused.

use serde::Deserialize;

use super::{Outcome, Record, RECORD_VERSION};
use crate::format::{json, Digest};
use crate::state::AUDIT_FILE;

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    Digest::of(bytes).hex()
}

/// How a record's line begins: the part a line torn by a crash while writing record `seq`
/// (chaining from `prev`) shares with it. Every record line, of every version, begins so.
pub(super) fn record_head(seq: u64, prev: &str) -> String {
    format!("{{\"seq\":{seq},\"prev\":\"{prev}\"")
}

/// Whether `line` can be what a crash left of a record whose line begins with `head`: a
/// beginning of it (a write cut short), possibly followed by NUL bytes (space the file system
/// allocated but never wrote), or NULs alone. Anything else is not a crash.
pub(super) fn is_torn_record(line: &[u8], head: &str) -> bool {
    let end = line.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let t = &line[..end];
    let h = head.as_bytes();
    if t.len() <= h.len() {
        h.starts_with(t)
    } else {
        t.starts_with(h)
    }
}

/// What verification needs of a record line, whatever its version.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Chained {
    pub seq: u64,
    pub prev: String,
    /// The record's version (`v`; 1 when absent).
    pub v: u32,
    pub torn: Vec<String>,
    pub time: String,
    /// The outcome, as written (a later version may have outcomes this one does not know).
    pub outcome: String,
    pub completes: Option<u64>,
    pub bundle_id: Option<String>,
    pub bundle_dir: String,
}

impl Chained {
    pub fn is_started(&self) -> bool {
        self.outcome == "started"
    }
}

/// The chain fields every version keeps, with these meanings (see docs/AUDIT.md).
#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    prev: String,
    #[serde(default)]
    v: Option<u32>,
    #[serde(default)]
    torn: Vec<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    completes: Option<u64>,
    #[serde(default)]
    bundle_id: Option<String>,
    #[serde(default)]
    bundle_dir: Option<String>,
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `Some` if `line` is a record: strict JSON (no key twice) of an object whose line begins with
/// `{"seq":N,"prev":"<64 hex>"` (the head), with a version `v` of at least 1 (absent: 1) and
/// well-formed `torn` hashes. A record of a version this code knows (up to
/// [`RECORD_VERSION`]) must also be a valid [`Record`] (unknown fields ignored); a record of a
/// later version is read for its chain fields only.
pub(super) fn parse_line(line: &[u8]) -> Option<Chained> {
    let e: Envelope = json::from_slice(line, AUDIT_FILE).ok()?;
    let v = e.v.unwrap_or(1);
    if v == 0
        || !is_hash(&e.prev)
        || !e.torn.iter().all(|h| is_hash(h))
        || !line.starts_with(record_head(e.seq, &e.prev).as_bytes())
    {
        return None;
    }
    if v <= RECORD_VERSION {
        // Already checked for duplicate keys above.
        let r: Record = serde_json::from_slice(line).ok()?;
        return Some(Chained {
            seq: r.seq,
            prev: r.prev,
            v,
            torn: r.torn,
            time: r.time,
            outcome: outcome_name(r.event.outcome).to_string(),
            completes: r.event.completes,
            bundle_id: r.event.bundle_id,
            bundle_dir: r.event.bundle_dir,
        });
    }
    Some(Chained {
        seq: e.seq,
        prev: e.prev,
        v,
        torn: e.torn,
        time: e.time.unwrap_or_default(),
        outcome: e.outcome.unwrap_or_default(),
        completes: e.completes,
        bundle_id: e.bundle_id,
        bundle_dir: e.bundle_dir.unwrap_or_default(),
    })
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Accepted => "accepted",
        Outcome::Rejected => "rejected",
        Outcome::Started => "started",
        Outcome::Failed => "failed",
        Outcome::Interrupted => "interrupted",
    }
}
