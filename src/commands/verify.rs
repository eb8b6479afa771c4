use serde::Serialize;

use super::pack::BundleSummary;
use crate::audit::{self, Action, Event};
use crate::bundle::{self, SignerInfo};
use crate::cli::VerifyArgs;
use crate::error::{Error, Result};
use crate::output::Printer;
use crate::state::State;

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
    let (state_dir, log) = super::state_paths(&args.state)?;
    // verify writes nothing but its audit record, and only where an audit log is kept already
    // (or one was named): on the connected side there is none.
    let audited = args.state.audit_log.is_some() || log.parent().is_some_and(|d| d.is_dir());
    let audit = |e: Event| -> Result<()> {
        if audited {
            audit::append(&log, &e)?;
        }
        Ok(())
    };
    let progress = printer.progress();
    let vb = match bundle::verify::verify_policy(
        &args.dir,
        &policy,
        &super::verify_options(),
        &progress,
    ) {
        Ok(vb) => vb,
        Err(e) => {
            audit(Event::for_unverified(Action::Verify, &args.dir, &e))?;
            return Err(e);
        }
    };
    // Freshness against what this enclave accepted (read only: verify takes no lock).
    let st = State::open_read_only(&state_dir)?;
    let decision = st.check(vb.manifest(), &vb.manifest_digest());
    let event = Event::for_bundle(Action::Verify, &vb)
        .signer_names(&super::signer_name(vb.signers()))
        .freshness(&decision, false);
    if let Some(p) = super::freshness_problem(vb.manifest(), &decision) {
        let err = Error::Rejected {
            dir: args.dir.clone(),
            problems: vec![p],
        };
        audit(event.rejected_by(&err))?;
        return Err(err);
    }
    audit(event.accepted())?;
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
