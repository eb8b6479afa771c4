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
            let state = match (s.trusted, s.valid) {
                (true, true) => "valid, trusted",
                (true, false) => "INVALID",
                (false, _) => "unknown key, not checked",
            };
            format!("signer    {} ({}) {}\n", s.key_id, s.file, state)
        })
        .collect()
}

pub fn run(args: VerifyArgs, printer: &Printer) -> Result<()> {
    let trust = super::load_trust(&args.trust)?;
    let progress = printer.progress();
    let vb = bundle::verify(&args.dir, &trust, &super::verify_options(), &progress)?;
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
