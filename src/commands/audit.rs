//! `airlock audit verify` (the chain, against an anchor) and `airlock audit show` (the
//! decisions as a table, for an officer).

use std::time::SystemTime;

use schemars::JsonSchema;
use serde::Serialize;

use crate::audit::{self, Anchor, ShowFilter, ShownRecord};
use crate::cli::{AuditAction, AuditArgs, AuditShowArgs};
use crate::error::{Error, Result};
use crate::output::{self, escape, Printer};
use crate::table::{terminal_width, Table};

/// The report of `audit show` (only for a log whose chain is intact: a broken chain is an
/// error, exit 3, and with `--json` the error object alone).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ShowReport {
    /// The log read.
    pub audit_log: String,
    /// Records in the log (all of them chained).
    pub total_records: u64,
    /// SHA-256 (hex) of the last record's line: the head `audit verify` prints.
    pub head: Option<String>,
    /// The `--since` given, as the instant it selects (RFC 3339 UTC).
    pub since: Option<String>,
    /// The `--channel` given.
    pub channel: Option<String>,
    /// Records of a version later than this airlock writes: shown by their chain fields only.
    pub newer_records: u64,
    /// The records selected, in log order.
    pub records: Vec<ShownRecord>,
}

/// `--since`: an RFC 3339 time (UTC, `Z`; a date alone is its midnight) or a duration before
/// `now` (`24h`, `7d`, `1h 30m`).
pub fn parse_since(s: &str, now: SystemTime) -> Result<SystemTime> {
    let t = s.trim();
    if let Ok(at) = humantime::parse_rfc3339_weak(t) {
        return Ok(at);
    }
    if t.len() == 10 {
        if let Ok(at) = humantime::parse_rfc3339_weak(&format!("{t}T00:00:00Z")) {
            return Ok(at);
        }
    }
    if let Ok(d) = humantime::parse_duration(t) {
        return now.checked_sub(d).ok_or_else(|| {
            Error::Usage(format!(
                "--since {}: the duration reaches before 1970",
                escape(s)
            ))
        });
    }
    Err(Error::Usage(format!(
        "--since {}: not an RFC 3339 time in UTC (2026-12-01T08:00:00Z, or a date 2026-12-01) \
         or a duration before now (24h, 7d, 30min)",
        escape(s)
    )))
}

/// The longest reason shown in a table cell (the whole of it is in `--json`).
const REASON_CELL: usize = 120;

fn reason_cell(r: &ShownRecord) -> String {
    if !r.interpreted {
        return format!("(record version {}: not interpreted by this airlock)", r.v);
    }
    let Some(first) = r.reasons.first() else {
        return String::new();
    };
    let mut text = format!("{}: {}", first.code, first.message);
    if text.chars().count() > REASON_CELL {
        text = text.chars().take(REASON_CELL - 1).collect::<String>() + "…";
    }
    let mut cell = escape(&text).to_string();
    let more = r.reasons.len() as u64 - 1 + r.reasons_omitted;
    if more > 0 {
        cell += &format!(" (+{more} more)");
    }
    cell
}

fn table(records: &[&ShownRecord]) -> String {
    let mut t = Table::new(&[
        "#", "TIME", "OPERATOR", "ACTION", "BUNDLE", "CHANNEL", "SEQUENCE", "OUTCOME", "REASON",
    ])
    .right(0)
    .right(6)
    .flexible(4);
    for r in records {
        let operator = match (&r.operator, &r.sudo_user) {
            (Some(o), Some(s)) => format!("{} (sudo: {})", escape(o), escape(s)),
            (Some(o), None) => escape(o).to_string(),
            (None, _) => "?".into(),
        };
        let outcome = if r.unfinished {
            "started (no outcome)".to_string()
        } else {
            escape(&r.outcome).to_string()
        };
        t.row(vec![
            r.seq.to_string(),
            escape(&r.time).to_string(),
            operator,
            r.action.clone().unwrap_or_else(|| "?".into()),
            escape(&r.bundle_dir).to_string(),
            r.channel
                .as_deref()
                .map_or_else(|| "-".into(), |c| escape(c).to_string()),
            r.sequence.map_or_else(|| "-".into(), |n| n.to_string()),
            outcome,
            reason_cell(r),
        ]);
    }
    t.render(terminal_width())
}

fn show(a: AuditShowArgs, printer: &Printer) -> Result<()> {
    let since = a
        .since
        .as_deref()
        .map(|s| parse_since(s, SystemTime::now()))
        .transpose()?;
    if let Some(c) = &a.channel {
        crate::format::validate_channel(c)
            .map_err(|e| Error::Usage(format!("--channel {}: {e}", escape(c))))?;
    }
    let log = super::state_paths(&a.state)?.log;
    let filter = ShowFilter {
        since,
        channel: a.channel.clone(),
        brief: !printer.json,
    };
    let shown = audit::show(&log, &filter)?;
    let rep = &shown.report;
    let selection = match (&a.since, &a.channel) {
        (None, None) => String::new(),
        (s, c) => {
            let mut parts = Vec::new();
            if let Some(at) = since {
                parts.push(format!(
                    "since {} ({})",
                    humantime::format_rfc3339_seconds(at),
                    escape(s.as_deref().unwrap_or_default())
                ));
            }
            if let Some(c) = c {
                parts.push(format!("channel {}", escape(c)));
            }
            format!(" ({})", parts.join(", "))
        }
    };
    if let Some(bad) = &rep.bad {
        let (chained, unchained): (Vec<&ShownRecord>, Vec<&ShownRecord>) =
            shown.records.iter().partition(|r| r.chained);
        let broken = format!(
            "audit log {}: hash chain BROKEN at line {}: {}",
            output::escape_path(&log),
            bad.line,
            escape(&bad.message)
        );
        if !printer.json {
            printer.report(&(), || {
                let mut s = format!("{broken}\n");
                s += &format!(
                    "{} record(s) before line {} are chained{selection}:\n",
                    chained.len(),
                    bad.line
                );
                if !chained.is_empty() {
                    s += &table(&chained);
                }
                if unchained.is_empty() {
                    s += &format!("no record selected from line {} on\n", bad.line);
                } else {
                    s += &format!(
                        "WARNING: the chain does not vouch for the {} record(s) below, from line {} on: \
                         any of them may have been edited, inserted, reordered or rewritten\n",
                        unchained.len(),
                        bad.line
                    );
                    s += &table(&unchained);
                }
                if shown.unreadable_after_break > 0 {
                    s += &format!(
                        "{} line(s) after the break are not records (not shown)\n",
                        shown.unreadable_after_break
                    );
                }
                s
            });
        }
        return Err(Error::AuditBroken(format!(
            "{broken} ({} intact records before it); check it with `airlock audit verify`",
            rep.records
        )));
    }
    let report = ShowReport {
        audit_log: log.display().to_string(),
        total_records: rep.records,
        head: rep.head.clone(),
        since: since.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        channel: a.channel.clone(),
        newer_records: rep.newer_records,
        records: shown.records,
    };
    printer.report(&report, || {
        let mut s = format!(
            "audit log {}: {} records, hash chain unbroken{}; {} shown{selection}\n",
            output::escape_path(&log),
            report.total_records,
            if rep.recovered.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} line(s) torn by a crash, named by the next record)",
                    rep.recovered.len()
                )
            },
            report.records.len(),
        );
        if !report.records.is_empty() {
            s += &table(&report.records.iter().collect::<Vec<_>>());
        }
        s
    });
    Ok(())
}

pub fn run(args: AuditArgs, printer: &Printer) -> Result<()> {
    match args.action {
        AuditAction::Show(a) => show(a, printer),
        AuditAction::Verify(a) => {
            let log = super::state_paths(&a.state)?.log;
            let anchor = Anchor {
                records: a.expect_records,
                head: a
                    .expect_head
                    .as_deref()
                    .map(Anchor::parse_head)
                    .transpose()
                    .map_err(|e| Error::Usage(format!("--expect-head: {e}")))?,
            };
            let report = audit::verify_anchored(&log, &anchor)?;
            if let Some(bad) = &report.bad {
                let at = if bad.kind == audit::BadKind::Anchor {
                    String::new()
                } else {
                    format!("line {}: ", bad.line)
                };
                return Err(Error::AuditBroken(format!(
                    "audit log {}: {at}{} ({} intact records before it)",
                    output::escape_path(&log),
                    bad.message,
                    report.records
                )));
            }
            printer.report(&report, || {
                let mut s = format!(
                    "audit log {} intact: {} records, hash chain unbroken{}\nhead {}\n",
                    output::escape_path(&log),
                    report.records,
                    if report.recovered.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({} line(s) torn by a crash, named by the next record)",
                            report.recovered.len()
                        )
                    },
                    escape(report.head.as_deref().unwrap_or("(empty log)"))
                );
                if report.newer_records > 0 {
                    s += &format!(
                        "{} record(s) of a later version than this airlock writes (v{}): chained, not interpreted\n",
                        report.newer_records,
                        audit::RECORD_VERSION
                    );
                }
                if let Some(m) = &report.anchor {
                    s += &format!("anchor held: record {} hashes to {}\n", m.record, escape(&m.head));
                }
                if !report.interrupted.is_empty() {
                    s += &format!(
                        "{} {} started without an outcome (interrupted by a crash or a failed append, or still running):\n",
                        report.interrupted.len(),
                        if report.interrupted.len() == 1 { "import" } else { "imports" }
                    );
                    for i in &report.interrupted {
                        s += &format!(
                            "  record {} (line {}) at {}: bundle {} from {}\n",
                            i.seq,
                            i.line,
                            i.time,
                            escape(i.bundle_id.as_deref().unwrap_or("?")),
                            escape(&i.bundle_dir)
                        );
                    }
                }
                s
            });
            Ok(())
        }
    }
}
