use crate::audit;
use crate::cli::{AuditAction, AuditArgs};
use crate::error::{Error, Result};
use crate::output::{self, escape, Printer};

pub fn run(args: AuditArgs, printer: &Printer) -> Result<()> {
    match args.action {
        AuditAction::Verify(a) => {
            let (_, log) = super::state_paths(&a.state)?;
            let report = audit::verify(&log)?;
            if let Some(bad) = &report.bad {
                return Err(Error::AuditBroken(format!(
                    "audit log {}: line {}: {} ({} intact records before it)",
                    output::escape_path(&log),
                    bad.line,
                    bad.message,
                    report.records
                )));
            }
            printer.report(&report, || {
                format!(
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
                )
            });
            Ok(())
        }
    }
}
