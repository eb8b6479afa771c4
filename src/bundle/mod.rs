//! Bundles on disk: writing one (`pack`), verifying one, reading blobs back, and adding
//! signatures. The layout is specified in `docs/FORMAT.md` and named in [`crate::format`].

pub mod base;
pub(crate) mod hashpipe;
mod outdir;
pub mod parity;
pub mod reader;
pub mod sequence;
pub mod verify;
pub mod writer;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use base::HeldBlobs;
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
    /// Spread the bundle over volumes (format version 4); `None`: one directory.
    pub volumes: Option<VolumeOptions>,
}

/// How pack spreads a bundle over volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeOptions {
    /// The most bytes one volume may hold (after any preset's filesystem margin): chunks and
    /// the bundle files every volume carries.
    pub size: u64,
    /// Parity volumes to add (Reed–Solomon): any that many lost data volumes can be rebuilt.
    pub parity: u32,
}

/// What a volume holds besides its chunks, reserved out of its size before chunks are laid out:
/// the manifest (estimated from the plan, generously), the signatures (pack's keys' and room
/// for [`COUNTERSIGNATURE_ROOM`] more), `SHA256SUMS` and `VOLUME`. Checked against the real
/// sizes once they are known ([`check_volume_sizes`]).
pub fn volume_reserve(
    artifacts: &[Artifact],
    blobs: &[PlannedBlob],
    v: &VolumeOptions,
    chunk: u64,
    keys: usize,
) -> u64 {
    let entries: u64 = artifacts.iter().map(|a| a.entries.len() as u64).sum();
    let text: u64 = artifacts
        .iter()
        .map(|a| (a.source.len() + a.identity.len()) as u64 + 1024)
        .sum();
    let hf: u64 = artifacts
        .iter()
        .filter_map(|a| a.hf.as_ref())
        .map(|h| h.files.len() as u64 * 256)
        .sum();
    let payload: u64 = blobs.iter().map(|b| b.size).sum();
    // Chunks: every volume may end one early, every blob may end one.
    let chunks = payload / chunk.max(1) + payload / v.size.max(1) + 2 + blobs.len() as u64 / 64;
    let pieces = payload / format::pieces::DEFAULT_PIECE_SIZE + chunks;
    let manifest = 16 * 1024
        + text
        + hf
        + entries * 160
        + blobs.len() as u64 * 128
        + chunks * 200
        + pieces * 80;
    let signatures = (keys as u64 + COUNTERSIGNATURE_ROOM) * SIGNATURE_ROOM;
    // SHA256SUMS, VOLUME, and the parity stream's padding (64 bytes).
    manifest + signatures + chunks * 100 + 1024
}

/// Refuses `data` data volumes and the parity volumes asked for when they are more than a bundle
/// may have (`vol-001` to `vol-999`).
fn check_volume_count(data: u64, v: &VolumeOptions) -> Result<()> {
    let all = data.saturating_add(u64::from(v.parity));
    if all > format::volumes::MAX_VOLUMES as u64 {
        return Err(Error::Usage(format!(
            "this bundle needs {data} data volumes of {} and {} parity volumes, {all} in all: \
             at most {} volumes; choose a larger --volume-size or fewer --parity volumes",
            crate::output::bytes(v.size),
            v.parity,
            format::volumes::MAX_VOLUMES
        )));
    }
    Ok(())
}
/// Signatures a volume has room for beyond pack's own (added later with `airlock sign`).
pub const COUNTERSIGNATURE_ROOM: u64 = 8;
/// Room reserved per signature file (airlock's are about 400 bytes).
const SIGNATURE_ROOM: u64 = 1024;

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
    artifacts: Vec<Artifact>,
    blobs: &[PlannedBlob],
    pending: &HashSet<Digest>,
    keys: &[SigningKey],
    opts: &PackOptions,
    progress: &dyn Progress,
) -> Result<Manifest> {
    pack_delta(
        out,
        artifacts,
        blobs,
        pending,
        &Delta::default(),
        keys,
        opts,
        progress,
    )
}

/// What a delta bundle does not carry (format version 5): its bases and the blobs they show the
/// enclave holds. Empty: a full bundle (version 3 or 4).
#[derive(Debug, Default, Clone)]
pub struct Delta {
    /// The manifest's `bases`.
    pub bases: Vec<format::Base>,
    /// The external blobs: digest, size, index in `bases`. None of them is among the planned
    /// blobs; every one is used by an entry of the artifacts.
    pub external: Vec<(Digest, u64, u32)>,
}

/// [`pack_pending`] of a delta bundle: the planned `blobs` are carried, `delta.external` listed
/// as external blobs of `delta.bases` (format version 5 when there are bases).
#[allow(clippy::too_many_arguments)]
pub fn pack_delta(
    out: OutDir,
    mut artifacts: Vec<Artifact>,
    blobs: &[PlannedBlob],
    pending: &HashSet<Digest>,
    delta: &Delta,
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
    let budget = match &opts.volumes {
        None => None,
        Some(v) => {
            let reserve = volume_reserve(&artifacts, blobs, v, opts.chunk_size, keys.len());
            let budget = v.size.saturating_sub(reserve);
            if budget < format::volumes::MIN_VOLUME_CHUNK_ROOM {
                return Err(Error::Usage(format!(
                    "a volume of {} cannot hold this bundle: every volume carries the manifest and \
                     signatures (about {} here) and needs at least {} for chunks; choose a larger --volume-size",
                    crate::output::bytes(v.size),
                    crate::output::bytes(reserve),
                    crate::output::bytes(format::volumes::MIN_VOLUME_CHUNK_ROOM)
                )));
            }
            // Every volume holds at most `budget` bytes of chunks: fewer volumes than this the
            // bundle cannot take (refused before a byte is written; the layout is checked again).
            let payload: u64 = blobs.iter().map(|b| b.size).sum();
            check_volume_count(payload.div_ceil(budget).max(1), v)?;
            Some(budget)
        }
    };
    let wopts = writer::WriterOptions {
        chunk_size: opts.chunk_size,
        mtime: writer::chunk_mtime()?,
        volume_budget: budget,
    };
    let chunks_root = match budget {
        None => {
            let dir = out.path().join(CHUNKS_DIR);
            fsutil::create_dir_all(&dir)?;
            dir
        }
        Some(_) => out.path().to_path_buf(),
    };
    let written = writer::write_blobs(&chunks_root, blobs, pending, &wopts, progress)?;
    match budget {
        None => fsutil::sync_dir(&chunks_root)?,
        Some(_) => {
            // Volumes hold the chunks; the output directory itself holds only the volumes.
            fs::remove_dir(out.path().join(CHUNKS_DIR))
                .map_err(|e| Error::io("remove", out.path().join(CHUNKS_DIR), e))?;
            for n in 1..=written.volumes.len() as u32 {
                let dir = out.path().join(format::volumes::volume_dir_name(n));
                fsutil::create_dir_all(&dir.join(CHUNKS_DIR))?;
                fsutil::sync_dir(&dir.join(CHUNKS_DIR))?;
            }
        }
    }
    if let Some(v) = &opts.volumes {
        check_volume_count(written.volumes.len() as u64, v)?;
    }
    let (mut blob_list, mut chunks) = (written.blobs, written.chunks);
    blob_list.extend(
        delta
            .external
            .iter()
            .map(|&(digest, size, base)| format::Blob {
                digest,
                size,
                segments: Vec::new(),
                external: Some(base),
            }),
    );
    let volumes = match (&opts.volumes, budget) {
        (Some(v), Some(budget)) => {
            let mut layout = format::Volumes {
                size: v.size,
                data: written.volumes.clone(),
                parity: None,
            };
            if v.parity > 0 && !chunks.is_empty() {
                let (parity, parity_chunks) = parity::write_parity(
                    out.path(),
                    &chunks,
                    &layout.data,
                    opts.chunk_size.min(budget),
                    v.parity,
                    progress,
                )?;
                layout.parity = Some(parity);
                chunks.extend(parity_chunks);
            }
            Some(layout)
        }
        _ => None,
    };
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
        version: Manifest::required_version(&artifacts, volumes.is_some(), !delta.bases.is_empty()),
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
        volumes,
        bases: delta.bases.clone(),
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
    // One directory, or every volume: each carries its SHA256SUMS (and label), the manifest and
    // the signatures, written in that order on all volumes (the signatures last of all).
    let dirs: Vec<(u32, PathBuf)> = if manifest.is_multi_volume() {
        (1..=manifest.volume_count())
            .map(|n| (n, out.path().join(format::volumes::volume_dir_name(n))))
            .collect()
    } else {
        vec![(1, out.path().to_path_buf())]
    };
    if let Some(v) = &manifest.volumes {
        check_volume_sizes(&manifest, bytes.len() as u64, keys.len() as u64, v.size)?;
    }
    for (n, dir) in &dirs {
        crate::interrupt::check()?;
        fsutil::write_atomic(
            &dir.join(SUMS_FILE),
            manifest.volume_sums(*n).as_bytes(),
            0o644,
        )?;
        if manifest.is_multi_volume() {
            fsutil::write_atomic(
                &dir.join(format::volumes::LABEL_FILE),
                manifest.volume_label(*n).as_bytes(),
                0o644,
            )?;
        }
    }
    for (_, dir) in &dirs {
        crate::interrupt::check()?;
        fsutil::write_atomic(&dir.join(MANIFEST_FILE), &bytes, 0o644)?;
    }
    for (n, dir) in &dirs {
        for (i, key) in keys.iter().enumerate() {
            crate::interrupt::check()?;
            let text = sign_volume(&manifest, &bytes, key, *n)?;
            let path = signature_path(dir, i == 0, key);
            if let Some(parent) = path.parent() {
                fsutil::create_dir_all(parent)?;
            }
            fsutil::write_atomic(&path, text.as_bytes(), 0o644)?;
        }
        fsutil::sync_dir(dir)?;
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
/// Every volume's files must fit its size: chunks, manifest, signatures (at most 1 KiB each),
/// `SHA256SUMS`, `VOLUME`. The layout reserved room for them from an estimate; a manifest
/// larger than estimated is refused here, before anything is signed.
fn check_volume_sizes(m: &Manifest, manifest: u64, keys: u64, size: u64) -> Result<()> {
    for n in 1..=m.volume_count() {
        let total = m.volume_chunk_bytes(n)
            + manifest
            + keys * SIGNATURE_ROOM
            + m.volume_sums(n).len() as u64
            + m.volume_label(n).len() as u64;
        if total > size {
            return Err(Error::Other(format!(
                "volume {n} would hold {total} bytes, more than the volume size {size} (its manifest \
                 is {manifest} bytes, more than pack reserved): choose a larger --volume-size"
            )));
        }
    }
    Ok(())
}

pub fn sign_manifest(manifest: &Manifest, bytes: &[u8], key: &SigningKey) -> Result<String> {
    sign_volume(manifest, bytes, key, 1)
}

/// The signature of volume `volume` (1-based) of a bundle: its trusted comment's `sha256sums`
/// is that volume's `SHA256SUMS` (the whole bundle's for a bundle of one directory) and, in
/// version 4, `volume:<n>` names the volume.
pub fn sign_volume(
    manifest: &Manifest,
    bytes: &[u8],
    key: &SigningKey,
    volume: u32,
) -> Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let sums = Digest::of(manifest.volume_sums(volume).as_bytes());
    let mut fields = vec![
        ("bundle", manifest.bundle_id.clone()),
        ("channel", manifest.channel.clone()),
        ("sequence", manifest.sequence.to_string()),
        ("sha256sums", sums.hex()),
        // Signed so that a reader can bound its read of the manifest by it before reading.
        (sign::MANIFEST_SIZE_FIELD, bytes.len().to_string()),
    ];
    if manifest.is_multi_volume() {
        fields.push((format::volumes::VOLUME_FIELD, volume.to_string()));
    }
    let comment = sign::trusted_comment(now, &fields);
    let untrusted = format!(
        "signature from airlock key {} over bundle {}",
        key.public.id, manifest.bundle_id
    );
    key.sign(bytes, &comment, &untrusted)
}
