use std::fs;

use serde::Serialize;

use super::pack::BundleSummary;
use crate::bundle::verify::signature_files;
use crate::bundle::SignerInfo;
use crate::cli::InspectArgs;
use crate::error::{Error, Result};
use crate::format::{limits::MAX_MANIFEST_BYTES, Manifest, MANIFEST_FILE};
use crate::output::Printer;
use crate::sign::{PublicKey, Signature};

#[derive(Serialize)]
struct Report {
    /// Whether signatures were checked (only with --trust) and at least one trusted key signed.
    signature_verified: bool,
    #[serde(flatten)]
    bundle: BundleSummary,
    signers: Vec<SignerInfo>,
    manifest: Manifest,
}

pub fn run(args: InspectArgs, printer: &Printer) -> Result<()> {
    let trust: Vec<PublicKey> = args
        .trust
        .iter()
        .map(|a| PublicKey::load(a))
        .collect::<Result<_>>()?;
    let path = args.dir.join(MANIFEST_FILE);
    let len = fs::metadata(&path)
        .map_err(|e| Error::io("read", &path, e))?
        .len();
    if len > MAX_MANIFEST_BYTES {
        return Err(Error::Other(format!(
            "{}: {len} bytes is larger than a manifest may be",
            path.display()
        )));
    }
    let bytes = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let manifest =
        Manifest::parse(&bytes).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    let (files, _) = signature_files(&args.dir);
    let mut signers = Vec::new();
    for (file, text) in files {
        let Ok(sig) = text.and_then(|t| Signature::parse(&t, &file)) else {
            signers.push(SignerInfo {
                file,
                key_id: "?".into(),
                trusted: false,
                valid: false,
                comment: None,
            });
            continue;
        };
        let key = trust.iter().find(|k| k.id == sig.key_id);
        let valid = key.is_some_and(|k| sig.verify(k, &bytes).is_ok());
        let comment = valid.then(|| sig.trusted_comment());
        signers.push(SignerInfo {
            file,
            key_id: sig.key_id.to_string(),
            trusted: key.is_some(),
            valid,
            comment,
        });
    }
    let verified = signers.iter().any(|s| s.valid);
    let report = Report {
        signature_verified: verified,
        bundle: BundleSummary::new(&args.dir, &manifest),
        signers,
        manifest,
    };
    printer.report(&report, || {
        let banner = if verified {
            "signature verified with a trusted key (chunks not checked: run airlock verify)\n"
                .to_string()
        } else if trust.is_empty() {
            "UNVERIFIED: signatures not checked (pass --trust PUBKEY)\n".to_string()
        } else {
            "UNVERIFIED: no signature by a trusted key\n".to_string()
        };
        format!(
            "{banner}{}{}",
            super::verify::signer_lines(&report.signers),
            report.bundle.text()
        )
    });
    Ok(())
}
