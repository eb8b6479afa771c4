//! Reading the log for people (`airlock audit show`): the records a filter selects, each with
//! the fields an officer reads, and whether the chain vouches for it.
//!
//! The log is opened and read exactly as [`verify`](super::verify) reads it (no link followed,
//! a regular file, lines bounded by [`MAX_LINE`]) and its chain is checked in the same pass;
//! only the displayed fields of a selected record are kept, each string bounded, so a large
//! log streams through in memory proportional to what is shown, never to the file. After the
//! first bad line the rest of the log is still read for records, but those are marked
//! `chained: false`: the chain does not vouch for them. A record of a later version than this
//! code knows is shown by its chain fields only (docs/AUDIT.md: not interpreted).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::line::{parse_line, Chained};
use super::verify::{next_line, verify_visiting, Anchor, AuditReport, BadKind};
use super::{MAX_LINE, MAX_MESSAGE, MAX_REASONS, RECORD_VERSION};
use crate::error::{Error, Result};
use crate::fsutil;

/// The longest string kept of a field other than a reason's message (a path is at most 4096
/// bytes; what airlock writes is never cut). A longer one, only in a log not written by
/// airlock, is cut and ends in `…`.
const MAX_FIELD: usize = 4096;

/// Which records to show.
#[derive(Debug, Clone, Default)]
pub struct ShowFilter {
    /// Records whose `time` is at or after this (records without a readable time are left out).
    pub since: Option<SystemTime>,
    /// Records about a bundle of this channel (as a verified manifest named it).
    pub channel: Option<String>,
    /// Keep only the first reason of each record, its message cut to [`BRIEF_MESSAGE`] bytes
    /// (the others counted in `reasons_omitted`): what a table shows, in memory bounded by
    /// the number of records shown whatever their size.
    pub brief: bool,
}

/// The longest reason message kept by a [`ShowFilter::brief`] read.
pub const BRIEF_MESSAGE: usize = 512;

/// One record, as `audit show` presents it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ShownRecord {
    /// Line of the log (1-based).
    pub line: u64,
    /// The record's position in the chain.
    pub seq: u64,
    /// The record's version.
    pub v: u32,
    /// When the decision was made (RFC 3339 UTC, as recorded).
    pub time: String,
    /// `verify` or `import` (null: a later version's record, not interpreted).
    pub action: Option<String>,
    /// `accepted`, `rejected`, `failed`, `interrupted` or `started` (as written).
    pub outcome: String,
    /// A `started` record no later record completes: an import interrupted by a crash (or
    /// still running). (`started` records that were completed are not shown.)
    pub unfinished: bool,
    /// The operator's user name (null: a later version's record).
    pub operator: Option<String>,
    /// `$SUDO_USER` of the run, when recorded.
    pub sudo_user: Option<String>,
    /// The bundle directory (absolute in records written since it was made so).
    pub bundle_dir: String,
    pub bundle_id: Option<String>,
    /// Whether the bundle fields come from a manifest a trusted signature verified.
    pub verified: Option<bool>,
    pub channel: Option<String>,
    /// The bundle's sequence number in its channel.
    pub sequence: Option<u64>,
    /// Where an import wrote.
    pub target: Option<String>,
    /// The `seq` of the `started` record whose outcome this record gives.
    pub completes: Option<u64>,
    /// Why it was rejected or failed (stable code, message).
    pub reasons: Vec<ShownReason>,
    /// Reasons the record holds beyond those listed (0 with `--json`).
    pub reasons_omitted: u64,
    /// False for a record of a later version than this airlock writes: only its chain fields
    /// were read.
    pub interpreted: bool,
    /// Whether the hash chain vouches for this record (false from the first bad line on).
    pub chained: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ShownReason {
    pub code: String,
    pub message: String,
}

/// What [`show`] found: the records selected, and the chain check of the whole log (its
/// [`AuditReport::bad`] says where the chain broke).
#[derive(Debug)]
pub struct Shown {
    pub records: Vec<ShownRecord>,
    pub report: AuditReport,
    /// Lines after the first bad one that are not records (not shown).
    pub unreadable_after_break: u64,
}

/// The records of the log at `path` that `filter` selects, in order, with the chain checked.
/// An `Err` is only for a log that cannot be opened or read.
pub fn show(path: &Path, filter: &ShowFilter) -> Result<Shown> {
    let file = fsutil::open_regular(path)?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut records = Vec::new();
    // The `started` records some later record gives the outcome of.
    let mut completed: HashSet<u64> = HashSet::new();
    let mut keep = |line: u64, bytes: &[u8], c: &Chained| {
        if let Some(s) = c.completes {
            completed.insert(s);
        }
        if let Some(s) = shown(line, bytes, c, filter.brief).filter(|s| selected(s, filter)) {
            records.push(s);
        }
    };
    let mut report = verify_visiting(&mut r, path, &Anchor::default(), &mut keep)?;
    let mut unreadable_after_break = 0;
    if let Some(bad) = &report.bad {
        // The rest of the log, for records the chain no longer vouches for.
        let read_err = |e| Error::io("read audit log", path, e);
        let mut buf = Vec::new();
        let mut line = report.lines;
        if bad.kind == BadKind::TooLong {
            skip_line(&mut r).map_err(read_err)?;
        }
        while let Some(terminated) = next_line(&mut r, &mut buf, MAX_LINE).map_err(read_err)? {
            line += 1;
            if buf.len() > MAX_LINE {
                skip_line(&mut r).map_err(read_err)?;
                unreadable_after_break += 1;
                continue;
            }
            match parse_line(&buf).filter(|_| terminated) {
                Some(c) => keep(line, &buf, &c),
                None => unreadable_after_break += 1,
            }
        }
        let from = bad.line;
        for s in records.iter_mut().filter(|s| s.line >= from) {
            s.chained = false;
        }
        report.lines = line;
    }
    // A `started` record is not a decision: it is shown only while no later record gives its
    // outcome (an import killed, or still running).
    records.retain_mut(|s| {
        s.unfinished = s.outcome == "started" && !completed.contains(&s.seq);
        s.outcome != "started" || s.unfinished
    });
    Ok(Shown {
        records,
        report,
        unreadable_after_break,
    })
}

/// Reads up to and including the next `\n`, in bounded pieces, discarding it.
fn skip_line(r: &mut impl BufRead) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        match next_line(r, &mut buf, MAX_LINE)? {
            Some(false) if buf.len() > MAX_LINE => continue,
            _ => return Ok(()),
        }
    }
}

fn selected(s: &ShownRecord, f: &ShowFilter) -> bool {
    if let Some(since) = f.since {
        match humantime::parse_rfc3339_weak(&s.time) {
            Ok(t) if t >= since => {}
            _ => return false,
        }
    }
    if let Some(ch) = &f.channel {
        if s.channel.as_deref() != Some(ch.as_str()) {
            return false;
        }
    }
    true
}

/// `s`, cut to at most `max` bytes (at a character boundary) and marked `…` when cut.
fn cap(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn cap_opt(s: Option<String>) -> Option<String> {
    s.map(|s| cap(s, MAX_FIELD))
}

/// The fields shown of a record of a version this code knows (as in [`Record`](super::Record));
/// the rest of the record (its artifacts, file digests, signers) is not kept.
#[derive(Deserialize)]
struct Fields {
    action: super::Action,
    operator: String,
    #[serde(default)]
    sudo_user: Option<String>,
    bundle_dir: String,
    verified: bool,
    channel: Option<String>,
    sequence: Option<u64>,
    target: Option<String>,
    reasons: Vec<super::Reason>,
    #[serde(default)]
    completes: Option<u64>,
}

fn shown(line: u64, bytes: &[u8], c: &Chained, brief: bool) -> Option<ShownRecord> {
    let mut s = ShownRecord {
        line,
        seq: c.seq,
        v: c.v,
        time: cap(c.time.clone(), MAX_FIELD),
        action: None,
        outcome: cap(c.outcome.clone(), MAX_FIELD),
        unfinished: false,
        operator: None,
        sudo_user: None,
        bundle_dir: cap(c.bundle_dir.clone(), MAX_FIELD),
        bundle_id: cap_opt(c.bundle_id.clone()),
        verified: None,
        channel: None,
        sequence: None,
        target: None,
        completes: c.completes,
        reasons: Vec::new(),
        reasons_omitted: 0,
        interpreted: c.v <= RECORD_VERSION,
        chained: true,
    };
    if !s.interpreted {
        return Some(s);
    }
    // The line is a valid record of a known version (parse_line checked it, strictly).
    let f: Fields = serde_json::from_slice(bytes).ok()?;
    s.action = Some(
        match f.action {
            super::Action::Verify => "verify",
            super::Action::Import => "import",
            super::Action::Rollback => "rollback",
        }
        .to_string(),
    );
    s.operator = Some(cap(f.operator, MAX_FIELD));
    s.sudo_user = cap_opt(f.sudo_user);
    s.bundle_dir = cap(f.bundle_dir, MAX_FIELD);
    s.verified = Some(f.verified);
    s.channel = cap_opt(f.channel);
    s.sequence = f.sequence;
    s.target = cap_opt(f.target);
    s.completes = f.completes;
    let (keep, message) = if brief {
        (1, BRIEF_MESSAGE)
    } else {
        (MAX_REASONS, MAX_MESSAGE)
    };
    s.reasons_omitted = f.reasons.len().saturating_sub(keep) as u64;
    s.reasons = f
        .reasons
        .into_iter()
        .take(keep)
        .map(|r| ShownReason {
            code: cap(r.code, MAX_FIELD),
            message: cap(r.message, message),
        })
        .collect();
    Some(s)
}
