use std::time::SystemTime;

use serde::Serialize;

use super::identity;
use super::pack::BundleSummary;
use crate::bundle::verify::{
    apply_policy, authenticate, parse_manifest, read_manifest_bytes, signature_files,
};
use crate::bundle::{Problem, SignerInfo};
use crate::cli::InspectArgs;
use crate::error::{Error, Result};
use crate::format::Manifest;
use crate::output::Printer;
use crate::sign::Signature;

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Report {
    /// Whether signatures were checked (only with --trust or a policy) and at least one trusted,
    /// unrevoked, unexpired key signed.
    signature_verified: bool,
    #[serde(flatten)]
    bundle: BundleSummary,
    signers: Vec<SignerInfo>,
    /// What the trust policy says of the signatures (empty: its rule for the channel is met;
    /// absent without trust). Chunks are not checked: run airlock verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_problems: Option<Vec<Problem>>,
    manifest: Manifest,
}

pub fn run(args: InspectArgs, printer: &Printer) -> Result<()> {
    let policy = super::select_policy(&args.trust)?;
    crate::bundle::verify::check_bundle_dir(&args.dir)?;
    // With a trust policy, nothing in the manifest is parsed before a trusted signature over its
    // bytes verified (as in verify); a bundle without one is refused, naming why. Without any
    // trust (the packing side, reviewing what it just wrote) the manifest is shown unverified.
    let now = SystemTime::now();
    let reject = |problems: Vec<Problem>| Error::Rejected {
        dir: args.dir.clone(),
        problems,
    };
    let (manifest, mut signers, valid_keys) = match &policy {
        Some(p) => {
            let auth = authenticate(&args.dir, p, now)?;
            let manifest = parse_manifest(&auth.bytes).map_err(|e| reject(vec![e]))?;
            let keys = auth.valid_keys();
            (manifest, auth.signers, keys)
        }
        None => {
            let bytes = read_manifest_bytes(&args.dir).map_err(|e| reject(vec![e]))?;
            let manifest = parse_manifest(&bytes).map_err(|e| reject(vec![e]))?;
            let (files, _) = signature_files(&args.dir);
            let signers = files
                .into_iter()
                .map(|(file, text)| SignerInfo {
                    key_id: text
                        .and_then(|t| Signature::parse(&t, &file))
                        .map(|s| s.key_id.to_string())
                        .unwrap_or_else(|_| "?".into()),
                    file,
                    name: None,
                    trusted: false,
                    valid: false,
                    state: None,
                    counted: false,
                    comment: None,
                })
                .collect();
            (manifest, signers, Vec::new())
        }
    };
    let verified = !valid_keys.is_empty();
    let policy_problems = policy.as_ref().map(|p| {
        apply_policy(
            p,
            &manifest.channel,
            &valid_keys,
            &mut signers,
            true,
            Vec::new(),
        )
    });
    let report = Report {
        signature_verified: verified,
        bundle: BundleSummary::new(&args.dir, &manifest),
        signers,
        policy_problems,
        manifest,
    };
    let head = || {
        let banner = if verified {
            "signature verified with a trusted key (chunks not checked: run airlock verify)\n"
                .to_string()
        } else {
            "UNVERIFIED: signatures not checked (pass --trust PUBKEY or --policy FILE)\n"
                .to_string()
        };
        let policy_lines = match (&report.policy_problems, verified) {
            (Some(p), true) if p.is_empty() => "policy    met\n".to_string(),
            (Some(p), true) => p.iter().map(|p| format!("policy    {p}\n")).collect(),
            _ => String::new(),
        };
        format!(
            "{banner}{}{policy_lines}{}",
            super::verify::signer_lines(&report.signers),
            report.bundle.text()
        )
    };
    if args.files {
        // Every file and blob, streamed: a million-file bundle is never one String.
        printer.report_stream(&report, |out| {
            out(&head());
            identity::write_files(&report.manifest, crate::table::terminal_width(), out);
        });
    } else {
        printer.report(&report, head);
    }
    Ok(())
}
