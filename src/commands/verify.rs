use serde::Serialize;

use super::pack::BundleSummary;
use crate::bundle::{self, SignerInfo};
use crate::cli::VerifyArgs;
use crate::error::Result;
use crate::output::Printer;

#[derive(Serialize)]
struct Report {
    verified: bool,
    #[serde(flatten)]
    bundle: BundleSummary,
    signers: Vec<SignerInfo>,
}

pub(super) fn signer_lines(signers: &[SignerInfo]) -> String {
    signers
        .iter()
        .map(|s| {
            let state = match (s.trusted, s.valid, s.state.as_deref()) {
                (true, true, Some(why)) => format!("valid, but the key is {why}: not counted"),
                (true, true, None) if s.counted => "valid, trusted, counted".to_string(),
                (true, true, None) => "valid, trusted, not a signer of this channel".to_string(),
                (true, false, _) => "INVALID".to_string(),
                (false, _, _) => "unknown key, not checked".to_string(),
            };
            let who = match &s.name {
                Some(name) if *name != s.key_id => format!("{name} ({})", s.key_id),
                _ => s.key_id.clone(),
            };
            format!("signer    {who} [{}] {state}\n", s.file)
        })
        .collect()
}

pub fn run(args: VerifyArgs, printer: &Printer) -> Result<()> {
    let policy = super::load_policy(args.policy.as_deref(), &args.trust)?;
    let progress = printer.progress();
    let vb =
        bundle::verify::verify_policy(&args.dir, &policy, &super::verify_options(), &progress)?;
    let report = Report {
        verified: true,
        bundle: BundleSummary::new(&args.dir, vb.manifest()),
        signers: vb.signers().to_vec(),
    };
    printer.report(&report, || {
        format!(
            "verified {}: signatures, {} chunks and {} blobs check out\n{}{}",
            args.dir.display(),
            report.bundle.chunks.len(),
            vb.manifest().blobs.len(),
            signer_lines(&report.signers),
            report.bundle.text()
        )
    });
    Ok(())
}
