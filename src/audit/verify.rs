//! Checking a whole log: the chain, the one torn line a crash may leave, interrupted imports,
//! and an anchor kept elsewhere.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::line::{is_torn_record, parse_line, record_head, sha256_hex, Chained};
use super::{GENESIS, MAX_LINE, RECORD_VERSION};
use crate::error::{Error, Result};
use crate::fsutil;

/// How a line is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BadKind {
    /// Not a record (strict JSON beginning with its `{"seq":N,"prev":"…"` head, valid for its
    /// version), and not the one line torn by a crash that the next record names: edited into
    /// something else, or inserted.
    Malformed,
    /// Longer than [`MAX_LINE`].
    TooLong,
    /// The line's bytes are not what the next record chains from: it was edited.
    Edited,
    /// `seq` is not the next number: records before it were deleted, or records reordered.
    Sequence,
    /// The log ends in an incomplete line (a crash during an append, or a truncation).
    TornTail,
    /// The chain is intact but does not hold the anchor given (`--expect-head`,
    /// `--expect-records`): records were cut off its end, or it was rewritten.
    Anchor,
}

/// The first bad line of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct BadLine {
    /// 1-based line number (for [`BadKind::Anchor`]: the line after the last one read).
    pub line: u64,
    pub kind: BadKind,
    pub message: String,
}

/// A point of the chain kept elsewhere (printed into a ticket, say): the log must still hold
/// record `records`, and its line must hash to `head`. Either may be given alone: `records`
/// alone asks for at least that many records, `head` alone for some record with that hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Anchor {
    pub records: Option<u64>,
    pub head: Option<String>,
}

impl Anchor {
    /// Checks the form of `--expect-head`: 64 lowercase hex digits.
    pub fn parse_head(s: &str) -> std::result::Result<String, String> {
        let h = s.strip_prefix("sha256:").unwrap_or(s);
        if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(h.to_ascii_lowercase())
        } else {
            Err(format!(
                "{:?} is not a head hash (64 hex digits, as `airlock audit verify` prints)",
                crate::format::text::escape(s)
            ))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_none() && self.head.is_none()
    }
}

/// Where the anchor was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AnchorMatch {
    /// The anchored record's `seq`.
    pub record: u64,
    /// Its line's SHA-256 (hex).
    pub head: String,
}

/// An import whose `started` record no later record completes: interrupted (a crash, or a
/// failure to append its outcome), or still running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Interrupted {
    pub line: u64,
    pub seq: u64,
    pub time: String,
    pub bundle_id: Option<String>,
    pub bundle_dir: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AuditReport {
    /// The audit log checked (`audit_log` in `--json`, as verify and import name it).
    #[serde(rename = "audit_log")]
    pub path: PathBuf,
    /// Intact, chained records before the first bad line (all of them when `bad` is `None`).
    pub records: u64,
    /// Lines read.
    pub lines: u64,
    /// SHA-256 (hex) of the last intact record's line: keep it to anchor the log.
    pub head: Option<String>,
    /// Line torn by a crash and named by the record after it (at most one per record).
    pub recovered: Vec<u64>,
    /// Imports started and never completed.
    pub interrupted: Vec<Interrupted>,
    /// Records of a version later than this airlock writes ([`RECORD_VERSION`]): their chain
    /// was checked, their other fields were not read.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub newer_records: u64,
    /// The anchor checked, when one was given and held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<AnchorMatch>,
    pub bad: Option<BadLine>,
}

impl AuditReport {
    pub fn is_intact(&self) -> bool {
        self.bad.is_none()
    }
}

/// Reads at most `max` bytes of the next line into `buf` (without its `\n`); returns
/// `Some(terminated)`, or `None` at the end. A longer line is cut at `max + 1` bytes.
pub(super) fn next_line(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    let n = r.by_ref().take(max as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        Ok(Some(true))
    } else {
        Ok(Some(false))
    }
}

/// Checks the whole chain of the log at `path`; names the first bad line. An `Err` is only
/// for a log that cannot be read.
pub fn verify(path: &Path) -> Result<AuditReport> {
    verify_anchored(path, &Anchor::default())
}

/// [`verify`], and the chain checked against `anchor`.
pub fn verify_anchored(path: &Path, anchor: &Anchor) -> Result<AuditReport> {
    let file = fsutil::open_regular(path)?;
    verify_reader(BufReader::with_capacity(1 << 16, file), path, anchor)
}

pub(super) fn verify_reader(r: impl BufRead, path: &Path, anchor: &Anchor) -> Result<AuditReport> {
    verify_visiting(r, path, anchor, &mut |_, _, _| {})
}

/// [`verify_reader`], calling `visit` with the line number, the bytes and the chain fields of
/// every line read that is a record, before its place in the chain is checked (so the record
/// at a break is visited too; [`BadLine::line`] says from which line on the chain does not
/// vouch for what was visited). Reading stops at the first bad line.
pub(super) fn verify_visiting(
    mut r: impl BufRead,
    path: &Path,
    anchor: &Anchor,
    visit: &mut dyn FnMut(u64, &[u8], &Chained),
) -> Result<AuditReport> {
    let mut rep = AuditReport {
        path: path.to_path_buf(),
        records: 0,
        lines: 0,
        head: None,
        recovered: Vec::new(),
        interrupted: Vec::new(),
        newer_records: 0,
        anchor: None,
        bad: None,
    };
    let mut prev = GENESIS.to_string();
    let mut prev_line = 0u64;
    // The one line a crash may have torn, waiting for the record that names it.
    let mut pending: Option<(u64, Vec<u8>)> = None;
    let mut head_at_anchor: Option<String> = None;
    let mut buf = Vec::new();
    let bad = |line: u64, kind: BadKind, message: String| {
        Some(BadLine {
            line,
            kind,
            message,
        })
    };
    let not_a_record = |line: u64| {
        bad(
            line,
            BadKind::Malformed,
            format!("line {line} is not an audit record (edited or inserted; a crash tears at most one line, which the next record names)"),
        )
    };
    while let Some(terminated) =
        next_line(&mut r, &mut buf, MAX_LINE).map_err(|e| Error::io("read audit log", path, e))?
    {
        rep.lines += 1;
        let n = rep.lines;
        if buf.len() > MAX_LINE {
            rep.bad = bad(
                n,
                BadKind::TooLong,
                format!("line {n} is longer than {MAX_LINE} bytes"),
            );
            return Ok(rep);
        }
        if let Some((p, _)) = &pending {
            if !terminated || parse_line(&buf).is_none() {
                rep.bad = not_a_record(*p);
                return Ok(rep);
            }
        }
        if !terminated {
            rep.bad = bad(
                n,
                BadKind::TornTail,
                format!("the log ends in an incomplete line {n} (a crash during an append, or a truncation)"),
            );
            return Ok(rep);
        }
        let Some(rec) = parse_line(&buf) else {
            pending = Some((n, buf.clone()));
            continue;
        };
        visit(n, &buf, &rec);
        match (pending.take(), rec.torn.as_slice()) {
            (None, []) => {}
            (Some((p, torn)), [h])
                if *h == sha256_hex(&torn)
                    && is_torn_record(&torn, &record_head(rec.seq, &rec.prev)) =>
            {
                rep.recovered.push(p);
            }
            (Some((p, _)), _) => {
                rep.bad = not_a_record(p);
                return Ok(rep);
            }
            (None, _) => {
                rep.bad = bad(
                    n,
                    BadKind::Edited,
                    format!("line {n} names torn lines before it that are not there"),
                );
                return Ok(rep);
            }
        }
        let expected = rep.records + 1;
        if rec.seq != expected {
            rep.bad = bad(
                n,
                BadKind::Sequence,
                format!(
                    "line {n} is record {} where record {expected} was expected: records were deleted or reordered",
                    rec.seq
                ),
            );
            return Ok(rep);
        }
        if rec.prev != prev {
            rep.bad = if prev_line == 0 {
                bad(
                    n,
                    BadKind::Edited,
                    format!("line {n}, the first record, does not start the chain: it was edited"),
                )
            } else {
                bad(
                    prev_line,
                    BadKind::Edited,
                    format!("line {prev_line} is not what line {n} chains from: it was edited"),
                )
            };
            return Ok(rep);
        }
        prev = sha256_hex(&buf);
        prev_line = n;
        rep.records += 1;
        rep.head = Some(prev.clone());
        if rec.v > RECORD_VERSION {
            rep.newer_records += 1;
        }
        if rec.is_started() {
            rep.interrupted.push(Interrupted {
                line: n,
                seq: rec.seq,
                time: rec.time.clone(),
                bundle_id: rec.bundle_id.clone(),
                bundle_dir: rec.bundle_dir.clone(),
            })
        } else if let Some(s) = rec.completes {
            rep.interrupted.retain(|i| i.seq != s);
        }
        if anchor.records == Some(rec.seq) {
            head_at_anchor = Some(prev.clone());
        }
        if anchor.records.is_none() && anchor.head.as_deref() == Some(prev.as_str()) {
            head_at_anchor = Some(prev.clone());
            rep.anchor = Some(AnchorMatch {
                record: rec.seq,
                head: prev.clone(),
            });
        }
    }
    if let Some((p, _)) = pending {
        rep.bad = not_a_record(p);
        return Ok(rep);
    }
    check_anchor(&mut rep, anchor, head_at_anchor);
    Ok(rep)
}

fn check_anchor(rep: &mut AuditReport, anchor: &Anchor, found: Option<String>) {
    let line = rep.lines + 1;
    let fail = |message: String| {
        Some(BadLine {
            line,
            kind: BadKind::Anchor,
            message,
        })
    };
    match (anchor.records, &anchor.head) {
        (None, None) => {}
        (Some(n), _) if rep.records < n => {
            rep.bad = fail(format!(
                "the log holds {} records, the anchor expects at least {n}: records were cut off its end",
                rep.records
            ));
        }
        (Some(n), Some(h)) => match found {
            Some(f) if f == *h => {
                rep.anchor = Some(AnchorMatch {
                    record: n,
                    head: f,
                })
            }
            f => {
                rep.bad = fail(format!(
                    "record {n} hashes to {}, not to the anchored head {h}: the log was rewritten from record {n} or before",
                    f.unwrap_or_default()
                ))
            }
        },
        (Some(n), None) => {
            rep.anchor = Some(AnchorMatch {
                record: n,
                head: found.unwrap_or_default(),
            })
        }
        (None, Some(h)) => {
            if rep.anchor.is_none() {
                rep.bad = fail(format!(
                    "no record hashes to the anchored head {h}: the anchored record was removed, or the log rewritten"
                ));
            }
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
