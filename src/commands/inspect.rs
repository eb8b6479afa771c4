use std::path::{Path, PathBuf};
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
use crate::format::{Manifest, MANIFEST_FILE};
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
    /// A bundle spread over volumes: every volume, what it holds and which artifacts have bytes
    /// on it (absent for a bundle of one directory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<super::pack::VolumeSummary>,
    manifest: Manifest,
}

/// The directory inspect reads: `dir` itself when it holds a manifest, else (the parent `OUT/`
/// of a bundle spread over volumes) its first `vol-*` subdirectory, by name, that holds one.
fn bundle_dir(dir: &Path) -> PathBuf {
    if dir.join(MANIFEST_FILE).symlink_metadata().is_ok() {
        return dir.to_path_buf();
    }
    let Ok(read) = std::fs::read_dir(dir) else {
        return dir.to_path_buf();
    };
    let mut vols: Vec<PathBuf> = read
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("vol-"))
                && e.file_type().is_ok_and(|t| t.is_dir())
                && e.path().join(MANIFEST_FILE).symlink_metadata().is_ok()
        })
        .map(|e| e.path())
        .collect();
    vols.sort();
    vols.into_iter().next().unwrap_or_else(|| dir.to_path_buf())
}

pub fn run(mut args: InspectArgs, printer: &Printer) -> Result<()> {
    let policy = super::select_policy(&args.trust)?;
    let dir = bundle_dir(&args.dir);
    if dir != args.dir {
        printer.note(&format!(
            "{} holds volumes: reading the manifest of {}",
            crate::output::escape_path(&args.dir),
            crate::output::escape_path(&dir)
        ));
        args.dir = dir;
    }
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
        volumes: super::pack::volume_summaries(&manifest, &|n| {
            // The volume read is named by where it is; the others by the name pack gives them.
            let name = crate::format::volumes::volume_dir_name(n);
            match args.dir.file_name() {
                Some(f) if f.to_str() == Some(name.as_str()) => args.dir.display().to_string(),
                _ => name,
            }
        }),
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
        let volumes = if report.volumes.is_empty() {
            String::new()
        } else {
            format!(
                "volumes   {} data + {} parity, at most {} each\n{}",
                report.manifest.data_volume_count(),
                report.manifest.volume_count() - report.manifest.data_volume_count(),
                crate::output::bytes(report.manifest.volumes.as_ref().map_or(0, |v| v.size)),
                super::pack::volumes_text(&report.volumes, false)
            )
        };
        format!(
            "{banner}{}{policy_lines}{}{volumes}",
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
