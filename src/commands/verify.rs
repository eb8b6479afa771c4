use serde::Serialize;

use super::pack::BundleSummary;
use super::StateReport;
use crate::audit::{self, Action, Event};
use crate::bundle::{self, SignerInfo};
use crate::cli::VerifyArgs;
use crate::error::{Error, Result};
use crate::output::{self, escape, Printer};
use crate::state::State;

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Report {
    verified: bool,
    #[serde(flatten)]
    bundle: BundleSummary,
    signers: Vec<SignerInfo>,
    /// Set when `expires` had passed, within the clock-skew allowance.
    expired_within_skew: Option<bundle::ExpiredWithinSkew>,
    #[serde(flatten)]
    state: StateReport,
}

/// One line per signature found: who signed and what became of it, then the signature's file
/// name last (it is named by the media: escaped, and after the status so that it cannot pose as
/// one). A signature that did not verify is never shown under a trusted key's name.
pub(super) fn signer_lines(signers: &[SignerInfo]) -> String {
    signers
        .iter()
        .map(|s| {
            let shown_id = escape(&s.key_id);
            let (who, state) = match (s.trusted, s.valid, s.state.as_deref()) {
                (true, true, Some(why)) => (
                    None,
                    format!("valid, but the key is {}: not counted", escape(why)),
                ),
                (true, true, None) if s.counted => (None, "valid, trusted, counted".to_string()),
                (true, true, None) => (
                    None,
                    "valid, trusted, not a signer of this channel".to_string(),
                ),
                (true, false, _) => (
                    Some("?".to_string()),
                    format!("INVALID: claims trusted key {shown_id} but does not verify with it"),
                ),
                (false, _, _) => (None, "unknown key, not checked".to_string()),
            };
            let who = who.unwrap_or_else(|| match &s.name {
                Some(name) if *name != s.key_id => format!("{} ({shown_id})", escape(name)),
                _ => shown_id.to_string(),
            });
            format!("signer    {who} {state}: {}\n", escape(&s.file))
        })
        .collect()
}

pub fn run(args: VerifyArgs, printer: &Printer) -> Result<()> {
    let policy = super::load_policy(&args.trust)?;
    // A path that is not a bundle is a usage error, not a decision about a bundle: not audited.
    bundle::verify::check_bundle_dir(&args.dir)?;
    let paths = super::state_paths(&args.state)?;
    // verify writes nothing but its audit record, and only where an audit log is kept already
    // (or one was named): on the connected side there is none.
    let audited = paths.log_chosen != super::Chosen::Default
        || paths.log.parent().is_some_and(|d| d.is_dir());
    let log = &paths.log;
    let audit = |e: Event| -> Result<()> {
        if audited {
            audit::append(log, &e)?;
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
    let st = match State::open_read_only(&paths.dir) {
        Ok(st) => st,
        Err(e) => {
            let event = Event::for_bundle(Action::Verify, &vb);
            audit(
                event
                    .signer_names(&super::signer_name(vb.signers()))
                    .outcome_of(&e),
            )?;
            return Err(e);
        }
    };
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
        expired_within_skew: vb.expired_within_skew().cloned(),
        state: StateReport::new(&paths, audited),
    };
    if let Some(skew) = &report.expired_within_skew {
        printer.note(&skew.note());
    }
    printer.report(&report, || {
        format!(
            "verified {}: signatures, {} chunks and {} blobs check out\n{}{}{}",
            output::escape_path(&args.dir),
            report.bundle.chunks.len(),
            vb.manifest().blobs.len(),
            signer_lines(&report.signers),
            report.bundle.text(),
            paths.lines(
                audited,
                "no audit log is kept here (verify appends only to an existing log's directory, or to --audit-log)"
            )
        )
    });
    Ok(())
}
