use std::fs;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use super::pack::BundleSummary;
use crate::bundle::verify::{apply_policy, signature_files};
use crate::bundle::{Problem, SignerInfo};
use crate::cli::InspectArgs;
use crate::error::{Error, Result};
use crate::format::{limits::MAX_MANIFEST_BYTES, Manifest, MANIFEST_FILE};
use crate::output::{self, Printer};
use crate::policy::{self, KeyState};
use crate::sign::Signature;

#[derive(Serialize)]
struct Report {
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
    let policy = policy::select(
        args.policy.as_deref(),
        &args.trust,
        Path::new(policy::DEFAULT_POLICY),
    )?;
    let path = args.dir.join(MANIFEST_FILE);
    let len = fs::metadata(&path)
        .map_err(|e| Error::io("read", &path, e))?
        .len();
    if len > MAX_MANIFEST_BYTES {
        return Err(Error::Other(format!(
            "{}: {len} bytes is larger than a manifest may be",
            output::escape_path(&path)
        )));
    }
    let bytes = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let manifest = Manifest::parse(&bytes)
        .map_err(|e| Error::Other(format!("{}: {e}", output::escape_path(&path))))?;
    let (files, _) = signature_files(&args.dir);
    let now = SystemTime::now();
    let mut signers = Vec::new();
    let mut valid_keys = Vec::new();
    for (file, text) in files {
        let Ok(sig) = text.and_then(|t| Signature::parse(&t, &file)) else {
            signers.push(SignerInfo {
                file,
                key_id: "?".into(),
                name: None,
                trusted: false,
                valid: false,
                state: None,
                counted: false,
                comment: None,
            });
            continue;
        };
        let index = policy
            .as_ref()
            .and_then(|p| p.keys.iter().position(|k| k.key.id == sig.key_id));
        let named = index.and_then(|i| policy.as_ref().map(|p| &p.keys[i]));
        let valid = named.is_some_and(|k| sig.verify(&k.key, &bytes).is_ok());
        let state = named.and_then(|k| match k.state(now) {
            KeyState::Usable => None,
            KeyState::Revoked => Some("revoked".to_string()),
            KeyState::Expired(_) => Some("expired".to_string()),
        });
        if let (true, None, Some(i)) = (valid, &state, index) {
            valid_keys.push(i);
        }
        signers.push(SignerInfo {
            file,
            key_id: sig.key_id.to_string(),
            name: named.map(|k| k.name.clone()),
            trusted: named.is_some(),
            valid,
            state,
            counted: false,
            comment: valid.then(|| sig.trusted_comment()),
        });
    }
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
    printer.report(&report, || {
        let banner = if verified {
            "signature verified with a trusted key (chunks not checked: run airlock verify)\n"
                .to_string()
        } else if policy.is_none() {
            "UNVERIFIED: signatures not checked (pass --trust PUBKEY or --policy FILE)\n"
                .to_string()
        } else {
            "UNVERIFIED: no signature by a trusted key\n".to_string()
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
    });
    Ok(())
}
