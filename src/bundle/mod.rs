//! Bundles on disk: writing one (`pack`), verifying one, reading blobs back, and adding
//! signatures. The layout is specified in `docs/FORMAT.md` and named in [`crate::format`].

pub(crate) mod hashpipe;
mod outdir;
pub mod reader;
pub mod verify;
pub mod writer;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use outdir::{OutDir, MARKER, STAGING_DIR};
pub use verify::{verify, ExpiredWithinSkew, Problem, SignerInfo, VerifiedBundle, VerifyOptions};
pub use writer::{Opener, Origin, PlannedBlob};

use crate::error::{Error, Result};
use crate::format::{
    self, Artifact, Digest, Manifest, CHUNKS_DIR, FORMAT_NAME, MANIFEST_FILE, SIGNATURES_DIR,
    SIGNATURE_FILE, SUMS_FILE,
};
use crate::fsutil;
use crate::progress::Progress;
use crate::sign::{self, SigningKey};

pub struct PackOptions {
    pub channel: String,
    pub sequence: u64,
    pub created: SystemTime,
    pub expires: Option<SystemTime>,
    pub chunk_size: u64,
}

/// Writes chunks, `SHA256SUMS`, the manifest and its signatures, in that order, into `out`.
pub fn pack(
    out: OutDir,
    artifacts: Vec<Artifact>,
    blobs: &[PlannedBlob],
    keys: &[SigningKey],
    opts: &PackOptions,
    progress: &dyn Progress,
) -> Result<Manifest> {
    pack_pending(out, artifacts, blobs, &HashSet::new(), keys, opts, progress)
}

/// [`pack`], where the blobs whose digests are in `pending` are local files not hashed yet:
/// their digests are placeholders, in the blobs and in the artifacts' entries, and the writer
/// learns the real ones in its single pass (see [`writer::write_blobs`]).
pub fn pack_pending(
    out: OutDir,
    mut artifacts: Vec<Artifact>,
    blobs: &[PlannedBlob],
    pending: &HashSet<Digest>,
    keys: &[SigningKey],
    opts: &PackOptions,
    progress: &dyn Progress,
) -> Result<Manifest> {
    if keys.is_empty() {
        return Err(Error::Usage("at least one signing key is needed".into()));
    }
    // Free text the manifest would refuse (control or format characters) is refused before
    // anything is written, naming the artifact.
    for a in &artifacts {
        let whose = format!("artifact {:?}", a.name);
        format::free_text(&whose, "source", &a.source)
            .and_then(|()| format::free_text(&whose, "identity", &a.identity))
            .map_err(|e| Error::Usage(format!("cannot pack {e}")))?;
    }
    // No wall-clock time in chunk bytes: 0, or SOURCE_DATE_EPOCH (reproducible chunks).
    let wopts = writer::WriterOptions {
        chunk_size: opts.chunk_size,
        mtime: writer::chunk_mtime()?,
    };
    let written = writer::write_blobs(
        &out.path().join(CHUNKS_DIR),
        blobs,
        pending,
        &wopts,
        progress,
    )?;
    fsutil::sync_dir(&out.path().join(CHUNKS_DIR))?;
    let (blob_list, chunks) = (written.blobs, written.chunks);
    for entry in artifacts.iter_mut().flat_map(|a| a.entries.iter_mut()) {
        if let Some(d) = entry.blob.and_then(|b| written.learned.get(&b)) {
            entry.blob = Some(*d);
        }
    }

    let mut id = [0u8; 16];
    getrandom::fill(&mut id)
        .map_err(|e| Error::Other(format!("no randomness for the bundle id: {e}")))?;
    let manifest = Manifest {
        format: FORMAT_NAME.to_string(),
        version: Manifest::required_version(&artifacts),
        bundle_id: hex::encode(id),
        channel: opts.channel.clone(),
        sequence: opts.sequence,
        created: format::format_time(opts.created),
        expires: opts.expires.map(format::format_time),
        generator: format!("airlock {}", env!("CARGO_PKG_VERSION")),
        chunk_size: opts.chunk_size,
        piece_size: format::pieces::DEFAULT_PIECE_SIZE,
        artifacts,
        blobs: blob_list,
        chunks,
    };
    manifest.validate().map_err(|e| {
        Error::Other(format!(
            "internal error: the manifest written would be invalid: {e}"
        ))
    })?;
    crate::interrupt::check()?;
    fs::remove_dir_all(out.staging())
        .map_err(|e| Error::io("remove staging directory", out.staging(), e))?;

    let bytes = manifest.to_bytes();
    fsutil::write_atomic(
        &out.path().join(SUMS_FILE),
        manifest.sha256sums().as_bytes(),
        0o644,
    )?;
    crate::interrupt::check()?;
    fsutil::write_atomic(&out.path().join(MANIFEST_FILE), &bytes, 0o644)?;
    for (i, key) in keys.iter().enumerate() {
        crate::interrupt::check()?;
        let text = sign_manifest(&manifest, &bytes, key)?;
        let path = signature_path(out.path(), i == 0, key);
        if let Some(parent) = path.parent() {
            fsutil::create_dir_all(parent)?;
        }
        fsutil::write_atomic(&path, text.as_bytes(), 0o644)?;
    }
    fsutil::sync_dir(out.path())?;
    crate::interrupt::check()?;
    out.commit()?;
    Ok(manifest)
}

/// Where a signature by `key` goes: the primary file, or `signatures/<KEYID>.minisig`.
pub fn signature_path(dir: &Path, primary: bool, key: &SigningKey) -> PathBuf {
    if primary {
        dir.join(SIGNATURE_FILE)
    } else {
        dir.join(SIGNATURES_DIR)
            .join(format!("{}.minisig", key.public.id))
    }
}

/// A minisign signature over the manifest bytes, with airlock's trusted comment.
pub fn sign_manifest(manifest: &Manifest, bytes: &[u8], key: &SigningKey) -> Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let sums = Digest::of(manifest.sha256sums().as_bytes());
    let comment = sign::trusted_comment(
        now,
        &[
            ("bundle", manifest.bundle_id.clone()),
            ("channel", manifest.channel.clone()),
            ("sequence", manifest.sequence.to_string()),
            ("sha256sums", sums.hex()),
            // Signed so that a reader can bound its read of the manifest by it before reading.
            (sign::MANIFEST_SIZE_FIELD, bytes.len().to_string()),
        ],
    );
    let untrusted = format!(
        "signature from airlock key {} over bundle {}",
        key.public.id, manifest.bundle_id
    );
    key.sign(bytes, &comment, &untrusted)
}
