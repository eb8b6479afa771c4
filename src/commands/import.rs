use serde::Serialize;

use super::pack::BundleSummary;
use crate::bundle::{self, SignerInfo};
use crate::cli::ImportArgs;
use crate::error::Result;
use crate::output::{self, Printer};
use crate::targets::files::{self, Action, Plan};

#[derive(Serialize)]
struct Report<'a> {
    dry_run: bool,
    #[serde(flatten)]
    bundle: BundleSummary,
    signers: Vec<SignerInfo>,
    plan: &'a Plan,
    written: usize,
    kept: usize,
    directories_created: usize,
}

fn plan_text(plan: &Plan) -> String {
    let mut s = String::new();
    for step in &plan.steps {
        let what = match step.action {
            Action::Mkdir => "mkdir",
            Action::Write => "write",
            Action::Keep => "keep ",
        };
        let size = step
            .size
            .map(|n| format!(" ({})", output::bytes(n)))
            .unwrap_or_default();
        s += &format!("  {what} {}{size}\n", step.path.display());
    }
    s
}

pub fn run(args: ImportArgs, printer: &Printer) -> Result<()> {
    let trust = super::load_trust(&args.trust)?;
    let progress = printer.progress();
    let vb = bundle::verify(&args.dir, &trust, &super::verify_options(), &progress)?;
    let plan = files::plan(&vb, &args.files)?;
    if !args.dry_run {
        files::execute(&vb, &plan, &progress)?;
    }
    let report = Report {
        dry_run: args.dry_run,
        bundle: BundleSummary::new(&args.dir, vb.manifest()),
        signers: vb.signers().to_vec(),
        plan: &plan,
        written: plan.count(Action::Write),
        kept: plan.count(Action::Keep),
        directories_created: plan.count(Action::Mkdir),
    };
    printer.report(&report, || {
        let head = if args.dry_run {
            format!("verified {}; dry run, nothing written. Plan:\n", args.dir.display())
        } else {
            format!(
                "imported {} into {}: {} files written ({}), {} already present, {} directories created\n",
                args.dir.display(),
                args.files.display(),
                report.written,
                output::bytes(plan.bytes_to_write()),
                report.kept,
                report.directories_created
            )
        };
        if args.dry_run {
            head + &plan_text(&plan)
        } else {
            head
        }
    });
    Ok(())
}
