use serde::Serialize;

use std::path::Path;

use super::pack::SignatureWritten;
use crate::bundle::{self, signature_path};
use crate::cli::SignArgs;
use crate::error::{Error, Result};
use crate::format::{Digest, MANIFEST_FILE};
use crate::fsutil;
use crate::output::{self, escape, Printer};
use crate::sign::SigningKey;

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Report {
    /// The bundle directory.
    dir: String,
    bundle_id: String,
    /// The signature written (as pack's `signers`: `file` relative to `dir`, and `key_id`).
    signers: Vec<SignatureWritten>,
}

pub fn run(args: SignArgs, printer: &Printer) -> Result<()> {
    // Everything that can be checked without the passphrase is checked before it is asked for:
    // the trust, that the path is a bundle, and the key file (read, its mode, a minisign secret
    // key: SigningKey::load parses it before it asks).
    let policy = super::load_policy(&args.trust)?;
    bundle::verify::check_bundle_dir(&args.dir)?;
    let key = SigningKey::load(&args.key)?;
    let progress = printer.progress();
    let vb = bundle::verify::verify_for_countersign(
        &args.dir,
        &policy,
        &super::verify_options(),
        &progress,
    )?;
    let id = key.public.id.to_string();
    if vb.signers().iter().any(|s| s.key_id == id) {
        return Err(Error::Usage(format!(
            "{} is already signed by key {id}",
            output::escape_path(&args.dir)
        )));
    }
    // Sign exactly the bytes that were verified.
    let path = args.dir.join(MANIFEST_FILE);
    // Read as verify reads it: bounded (by the size just verified), never through a link,
    // never blocking on a FIFO.
    let bytes = bundle::verify::read_manifest_bytes_bounded(&args.dir, vb.manifest_size())
        .map_err(|p| Error::Rejected {
            dir: args.dir.clone(),
            problems: vec![p],
        })?;
    if Digest::of(&bytes) != vb.manifest_digest() {
        return Err(Error::Other(format!(
            "{} changed while it was being verified; not signing",
            output::escape_path(&path)
        )));
    }
    let text = bundle::sign_manifest(vb.manifest(), &bytes, &key)?;
    let out = signature_path(&args.dir, false, &key);
    fsutil::create_dir_all(out.parent().expect("signatures dir"))?;
    fsutil::write_atomic(&out, text.as_bytes(), 0o644)?;
    fsutil::sync_dir(&args.dir)?;
    let report = Report {
        dir: args.dir.display().to_string(),
        bundle_id: vb.manifest().bundle_id.clone(),
        signers: vec![SignatureWritten {
            file: signature_path(Path::new(""), false, &key)
                .display()
                .to_string(),
            key_id: id.clone(),
        }],
    };
    printer.report(&report, || {
        format!(
            "countersigned bundle {} with key {}: {}\n",
            escape(&report.bundle_id),
            escape(&id),
            output::escape_path(&out)
        )
    });
    Ok(())
}
