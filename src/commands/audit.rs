use crate::audit::{self, Anchor};
use crate::cli::{AuditAction, AuditArgs};
use crate::error::{Error, Result};
use crate::output::{self, escape, Printer};

pub fn run(args: AuditArgs, printer: &Printer) -> Result<()> {
    match args.action {
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
