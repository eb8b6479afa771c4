use serde::Serialize;

use std::path::{Path, PathBuf};

use super::pack::SignatureWritten;
use crate::bundle::{self, signature_path};
use crate::cli::SignArgs;
use crate::error::{DirProblems, Error, Result};
use crate::format::{Digest, MANIFEST_FILE};
use crate::fsutil;
use crate::output::{self, escape, Printer};
use crate::problem::Problem;
use crate::sign::SigningKey;

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Report {
    /// The bundle directory (with several volumes: the path given, or the first volume's).
    dir: String,
    bundle_id: String,
    /// The signature written (as pack's `signers`: `file` relative to `dir`, and `key_id`);
    /// with several volumes, the same file in each volume's directory.
    signers: Vec<SignatureWritten>,
    /// Version 4: each volume countersigned, in the order given (absent for a bundle of one
    /// directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    volumes: Option<Vec<VolumeSigned>>,
}

/// One volume countersigned.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct VolumeSigned {
    /// The volume's number (1-based), as its trusted comments name it.
    volume: u32,
    /// The volume's directory; the signature is `dir/signatures/<KEYID>.minisig`.
    dir: String,
}

/// A directory checked and ready for its countersignature.
struct Checked {
    dir: PathBuf,
    volume: Option<u32>,
    vb: bundle::verify::Countersignable,
    bytes: Vec<u8>,
}

pub fn run(args: SignArgs, printer: &Printer) -> Result<()> {
    // Everything that can be checked without the passphrase is checked before it is asked for:
    // the trust, that each path is a bundle (or a directory of volumes), and the key file
    // (read, its mode, a minisign secret key: SigningKey::load parses it before it asks).
    let policy = super::load_policy(&args.trust)?;
    let (dirs, expanded) = bundle::verify::expand_volume_dirs(&args.dirs)?;
    let key = SigningKey::load(&args.key)?;
    let progress = printer.progress();
    let id = key.public.id.to_string();
    let several = dirs.len() > 1 || expanded;
    // Every directory is checked before anything is written: one that fails (damaged, another
    // bundle's, a volume given twice, already signed by this key) leaves every volume unsigned.
    let mut checked: Vec<Checked> = Vec::new();
    let mut failed: Vec<DirProblems> = Vec::new();
    for dir in &dirs {
        let vb = match bundle::verify::verify_for_countersign(
            dir,
            &policy,
            &super::verify_options(),
            &progress,
        ) {
            Ok(vb) => vb,
            Err(Error::Rejected { problems, .. }) if several => {
                failed.push(DirProblems {
                    dir: dir.clone(),
                    volume: None,
                    problems,
                    error: None,
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        if vb.signers().iter().any(|s| s.key_id == id) {
            return Err(Error::Usage(format!(
                "{} is already signed by key {id}",
                output::escape_path(dir)
            )));
        }
        // Sign exactly the bytes that were verified. Read as verify reads it: bounded (by
        // the size just verified), never through a link, never blocking on a FIFO.
        let path = dir.join(MANIFEST_FILE);
        let bytes =
            bundle::verify::read_manifest_bytes_bounded(dir, vb.manifest_size()).map_err(|p| {
                Error::Rejected {
                    dir: dir.clone(),
                    problems: vec![p],
                }
            })?;
        if Digest::of(&bytes) != vb.manifest_digest() {
            return Err(Error::Other(format!(
                "{} changed while it was being verified; not signing",
                output::escape_path(&path)
            )));
        }
        let volume = vb.volume();
        // Several directories: volumes of one bundle, each once.
        let mut problem = None;
        if let Some(first) = checked.first() {
            if first.vb.manifest_digest() != vb.manifest_digest() {
                problem = Some(Problem::ForeignVolume {
                    dir: dir.display().to_string(),
                    expected: first.vb.manifest().bundle_id.clone(),
                    found: vb.manifest().bundle_id.clone(),
                });
            } else if let Some(other) = checked.iter().find(|c| c.volume == volume) {
                problem = Some(Problem::DuplicateVolume {
                    volume: volume.unwrap_or(1),
                    dirs: vec![other.dir.display().to_string(), dir.display().to_string()],
                });
            }
        }
        match problem {
            Some(p) => failed.push(DirProblems {
                dir: dir.clone(),
                volume,
                problems: vec![p],
                error: None,
            }),
            None => checked.push(Checked {
                dir: dir.clone(),
                volume,
                vb,
                bytes,
            }),
        }
    }
    if !failed.is_empty() {
        return Err(Error::VolumesRejected { dirs: failed });
    }
    let mut written = Vec::new();
    for c in &checked {
        let text = bundle::sign_volume(c.vb.manifest(), &c.bytes, &key, c.volume.unwrap_or(1))?;
        let out = signature_path(&c.dir, false, &key);
        fsutil::create_dir_all(out.parent().expect("signatures dir"))?;
        fsutil::write_atomic(&out, text.as_bytes(), 0o644)?;
        fsutil::sync_dir(&c.dir)?;
        written.push(out);
    }
    let first = &checked[0];
    let report = Report {
        dir: match args.dirs.as_slice() {
            [one] => one.display().to_string(),
            _ => first.dir.display().to_string(),
        },
        bundle_id: first.vb.manifest().bundle_id.clone(),
        signers: vec![SignatureWritten {
            file: signature_path(Path::new(""), false, &key)
                .display()
                .to_string(),
            key_id: id.clone(),
        }],
        volumes: first.vb.manifest().is_multi_volume().then(|| {
            checked
                .iter()
                .map(|c| VolumeSigned {
                    volume: c.volume.unwrap_or(1),
                    dir: c.dir.display().to_string(),
                })
                .collect()
        }),
    };
    printer.report(&report, || {
        let mut s = String::new();
        for (c, out) in checked.iter().zip(&written) {
            let what = match c.volume {
                Some(n) => format!("volume {n} of {} of bundle", c.vb.manifest().volume_count()),
                None => "bundle".to_string(),
            };
            s += &format!(
                "countersigned {what} {} with key {}: {}\n",
                escape(&report.bundle_id),
                escape(&id),
                output::escape_path(out)
            );
        }
        s
    });
    Ok(())
}
