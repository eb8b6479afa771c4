//! Writes blobs into chunk files: the data half of `pack`, in one read of every source byte.
//!
//! Blobs go in plan order. A stored blob becomes one tar entry per chunk it touches; a blob
//! worth compressing is cut into windows of at most [`WINDOW`] bytes, each compressed (in
//! parallel) into one zstd frame and one tar entry. Each buffer read from a source is written
//! once and hashed, on two other threads, for the blob's SHA-256 and the chunk's digests
//! ([`super::hashpipe`]).
//!
//! A blob whose digest the plan promised is checked against it. A *pending* blob (a local
//! file, see [`write_blobs`]) learns its digest here: a small one is read whole and hashed
//! before it is written; a large one is written under placeholder entry names, and the chunk
//! digests over its bytes wait ("hold") until its digest is known, its headers are patched, and
//! the hash thread reads those bytes back from the chunk file. Identical files are found without
//! a hashing pre-pass: a large pending blob whose size equals a blob already written has its
//! first MiB compared first, and only on a match is it hashed before it is written. A pending
//! file's size, mtime and ctime are compared before and after it is read, so one that changed
//! while it was packed aborts the pack. The kernel is asked to write each chunk back as it is
//! written (`sync_file_range` every 8 MiB), so the `fsync` when a chunk closes is short.
//!
//! This file lays blobs out as entries and segments (stored, or compressed windows); `chunk`
//! appends entries to chunk files and hands their bytes to the hash threads, `input` reads
//! sources (and checks they did not change), `probe` decides what is worth compressing.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::hashpipe::{self, Shared};
use crate::error::{Error, Result};
use crate::format::tarframe::{self, BLOCK};
use crate::format::{Blob, Chunk, Digest, Encoding, Hasher, Segment};
use crate::fsutil::BUF_SIZE;
use crate::progress::Progress;

mod chunk;
mod input;
mod probe;

use chunk::ChunkWriter;
use input::{changed, check_end, fill_from_blob, modified, stamp, Input, Resume};
use probe::should_compress;
pub use probe::worth_compressing;

/// Largest input of one zstd frame.
pub const WINDOW: u64 = 8 << 20;
const LEVEL: i32 = 3;

pub use crate::blob::{Opener, Origin};

#[derive(Debug, Clone)]
pub struct PlannedBlob {
    pub digest: Digest,
    pub size: u64,
    pub origin: Origin,
    /// Whether to compress: `None` decides by sampling (local files), `Some` when the source
    /// knows (a gzip layer is not worth it, an uncompressed tar layer is).
    pub compress: Option<bool>,
}

impl PlannedBlob {
    /// A whole local file, compression decided by sampling.
    pub fn file(digest: Digest, size: u64, path: impl Into<PathBuf>) -> PlannedBlob {
        PlannedBlob {
            digest,
            size,
            origin: Origin::file(path),
            compress: None,
        }
    }
}

pub struct WriterOptions {
    pub chunk_size: u64,
    /// Modification time recorded in tar headers: [`chunk_mtime`] (never the wall clock, so
    /// that the same sources packed twice give the same chunk bytes).
    pub mtime: u64,
    /// Version 4: the chunk bytes one volume may hold; chunks then go to `ROOT/vol-NNN/chunks/`
    /// and none straddles two volumes. `None`: one directory.
    pub volume_budget: Option<u64>,
}

/// The environment variable that sets the time in chunk headers (reproducible-builds.org).
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";
/// The largest time a ustar header holds (11 octal digits).
const MAX_USTAR_TIME: u64 = 0o77777777777;

/// The modification time every tar header of every chunk carries: `SOURCE_DATE_EPOCH` when set
/// (whole seconds since 1970, `0 ..= 8589934591`), else 0. Chunks thus hold no wall-clock time:
/// the same sources packed with the same options give byte-identical chunks. A malformed value
/// is a usage error naming the variable (an empty one counts as unset).
pub fn chunk_mtime() -> Result<u64> {
    match std::env::var_os(SOURCE_DATE_EPOCH) {
        None => Ok(0),
        Some(v) if v.is_empty() => Ok(0),
        Some(v) => parse_epoch(v.to_str()),
    }
}

fn parse_epoch(v: Option<&str>) -> Result<u64> {
    let bad = |shown: &str| {
        Error::Usage(format!(
            "{SOURCE_DATE_EPOCH}={shown} is not usable: give whole seconds since 1970-01-01 UTC, \
             0 ..= {MAX_USTAR_TIME} (the time chunk headers carry), or unset it"
        ))
    };
    let Some(s) = v else {
        return Err(bad("(not UTF-8)"));
    };
    let shown = format!("\"{}\"", crate::format::text::escape(s));
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(&shown));
    }
    match s.parse::<u64>() {
        Ok(n) if n <= MAX_USTAR_TIME => Ok(n),
        _ => Err(bad(&shown)),
    }
}

/// What [`write_blobs`] wrote: the manifest's blob and chunk lists, and the digest each pending
/// blob turned out to have (placeholder → actual; a pending file identical to another blob maps
/// to that blob's digest).
pub struct Written {
    pub blobs: Vec<Blob>,
    pub chunks: Vec<Chunk>,
    /// Spread over volumes: the number of chunks on each data volume (empty otherwise).
    pub volumes: Vec<u32>,
    pub learned: HashMap<Digest, Digest>,
}

/// Bytes read from a source per buffer (and written per `write`).
const IO_BUF: usize = BUF_SIZE;
/// Pool buffers in flight at most (memory: `POOL * IO_BUF`).
const POOL: usize = 4;
/// Head compared before a large pending blob whose size collides is hashed whole.
const PROBE: usize = BUF_SIZE;

/// Writes every blob into chunks under `chunks_dir`; returns the manifest's blob and chunk lists.
///
/// A blob whose digest is in `pending` is a local file whose digest is not known yet: its
/// `digest` is a placeholder, and [`Written::learned`] maps it to the digest it had. Blobs are
/// written once per distinct digest.
/// Writes the blobs into chunks under `chunks_dir` (with [`WriterOptions::volume_budget`]: under
/// the bundle root `chunks_dir`'s `vol-NNN/chunks/`).
pub fn write_blobs(
    chunks_dir: &Path,
    blobs: &[PlannedBlob],
    pending: &HashSet<Digest>,
    opts: &WriterOptions,
    progress: &dyn Progress,
) -> Result<Written> {
    let mut w = ChunkWriter::new(chunks_dir, opts);
    let mut out: Vec<Blob> = Vec::with_capacity(blobs.len());
    let mut learned = HashMap::new();
    let mut written: HashSet<Digest> = HashSet::new();
    // The digest of the first MiB of every blob written, by size.
    let mut by_size: HashMap<u64, Vec<Digest>> = HashMap::new();
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    progress.start("writing chunks", total);
    for blob in blobs {
        crate::interrupt::check()?;
        let is_pending = pending.contains(&blob.digest);
        if !is_pending && written.contains(&blob.digest) {
            progress.inc(blob.size);
            continue;
        }
        let mut input = Input::open(blob)?;
        let before = match (&input, is_pending) {
            (Input::File(f), true) => Some(stamp(f, blob)?),
            _ => None,
        };
        let mut head = vec![0u8; (blob.size as usize).min(PROBE)];
        fill_from_blob(input.reader(), &mut head, blob)?;
        let small = head.len() as u64 == blob.size;
        let head_digest = Digest::of(&head);
        // The digest, if known before the blob is written: promised by the plan, or (a small
        // pending blob) the hash of the head, which is all of it.
        let mut known = if !is_pending {
            Some(blob.digest)
        } else if small {
            Some(head_digest)
        } else {
            None
        };
        let mut reread = false;
        if is_pending && !small {
            let twin = by_size
                .get(&blob.size)
                .is_some_and(|heads| heads.contains(&head_digest));
            if twin {
                // Same size and first MiB as a blob already written: hash it before writing.
                let mut h = Hasher::new();
                h.update(&head);
                let mut buf = vec![0u8; IO_BUF];
                let mut left = blob.size - head.len() as u64;
                while left > 0 {
                    let n = left.min(IO_BUF as u64) as usize;
                    fill_from_blob(input.reader(), &mut buf[..n], blob)?;
                    h.update(&buf[..n]);
                    left -= n as u64;
                }
                known = Some(h.finish());
                reread = true;
            }
        }
        if let Some(d) = known.filter(|d| is_pending && written.contains(d)) {
            // A pending file identical to a blob already written: read once, not written.
            check_end(input.reader(), blob, true)?;
            check_unchanged(&mut input, blob, before)?;
            learned.insert(blob.digest, d);
            progress.inc(blob.size);
            continue;
        }
        if reread {
            input = Input::open(blob)?;
            fill_from_blob(input.reader(), &mut head, blob)?;
        }
        let compress = should_compress(blob, &head)?;
        let name = known.unwrap_or(blob.digest);
        if known.is_none() {
            w.start_hold();
        }
        let mut reader = Resume {
            head: &head,
            rest: input.reader(),
        };
        // A blob read whole into `head` is hashed already; a larger one is hashed as it streams.
        let feed = !small;
        let segments = if compress {
            write_compressed(&mut w, blob, &name, &mut reader, feed, progress)?
        } else {
            write_stored(&mut w, blob, &name, &mut reader, feed, progress)?
        };
        check_end(&mut reader, blob, is_pending)?;
        let actual = if feed {
            w.blob_hash
                .finish()
                .map_err(|e| Error::Other(format!("hashing {}: {e}", blob.origin.describe())))?
        } else {
            head_digest
        };
        if is_pending {
            check_unchanged(&mut input, blob, before)?;
            if known.is_some_and(|k| k != actual) || written.contains(&actual) {
                return Err(modified(blob));
            }
            if known.is_none() {
                w.release(&actual)?;
            }
            learned.insert(blob.digest, actual);
        } else if actual != blob.digest {
            return Err(changed(blob, actual));
        }
        written.insert(actual);
        by_size.entry(blob.size).or_default().push(head_digest);
        out.push(Blob {
            digest: actual,
            size: blob.size,
            segments,
            external: None,
        });
    }
    let (chunks, volumes) = w.finish()?;
    progress.finish();
    Ok(Written {
        blobs: out,
        chunks,
        volumes,
        learned,
    })
}

/// A pending file must look as it did when it was opened: same size, mtime, ctime and inode.
fn check_unchanged(
    input: &mut Input,
    blob: &PlannedBlob,
    before: Option<(u64, i64, i64, i64, i64, u64)>,
) -> Result<()> {
    if let (Input::File(f), Some(before)) = (input, before) {
        if stamp(f, blob)? != before || before.0 != blob.size {
            return Err(modified(blob));
        }
    }
    Ok(())
}

/// Streams a blob as stored entries, one per chunk it touches.
fn write_stored(
    w: &mut ChunkWriter,
    blob: &PlannedBlob,
    name: &Digest,
    f: &mut dyn Read,
    feed: bool,
    progress: &dyn Progress,
) -> Result<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut left = blob.size;
    while left > 0 {
        let len = left.min(w.room()?);
        let (chunk, offset) = w.begin_entry(name, segments.len(), Encoding::None, len)?;
        let mut todo = len;
        while todo > 0 {
            crate::interrupt::check()?;
            let mut buf = w.pool.take();
            let want = todo.min(IO_BUF as u64) as usize;
            buf.resize(want, 0);
            fill_from_blob(f, &mut buf, blob)?;
            let buf = w.pool.share(buf);
            if feed {
                w.blob_hash.update(buf.clone());
            }
            w.write_shared(buf)?;
            todo -= want as u64;
            progress.inc(want as u64);
        }
        w.end_entry(len)?;
        segments.push(Segment {
            chunk,
            offset,
            length: len,
            encoding: Encoding::None,
            size: len,
        });
        left -= len;
    }
    Ok(segments)
}

/// Compresses a blob window by window (several windows in parallel) into zstd entries.
fn write_compressed(
    w: &mut ChunkWriter,
    blob: &PlannedBlob,
    name: &Digest,
    f: &mut dyn Read,
    feed: bool,
    progress: &dyn Progress,
) -> Result<Vec<Segment>> {
    let window = WINDOW
        .min(tarframe::room_at(0, w.max_chunk()) / 2)
        .max(BLOCK);
    let batch = rayon::current_num_threads().max(1) * 2;
    let mut segments = Vec::new();
    let mut left = blob.size;
    while left > 0 {
        crate::interrupt::check()?;
        // Read up to `batch` windows, compress them in parallel, then write them in order.
        let mut inputs: Vec<Shared> = Vec::with_capacity(batch);
        while inputs.len() < batch && left > 0 {
            let want = left.min(window) as usize;
            let mut buf = vec![0u8; want];
            fill_from_blob(f, &mut buf, blob)?;
            let buf = hashpipe::owned(buf);
            if feed {
                w.blob_hash.update(buf.clone());
            }
            left -= want as u64;
            inputs.push(buf);
        }
        let frames: Vec<std::io::Result<Vec<u8>>> = inputs
            .par_iter()
            .map(|raw| zstd::bulk::compress(raw, LEVEL))
            .collect();
        for (raw, frame) in inputs.into_iter().zip(frames) {
            crate::interrupt::check()?;
            let frame = frame.map_err(|e| {
                Error::Other(format!("compressing {}: {e}", blob.origin.describe()))
            })?;
            let size = raw.len() as u64;
            // Pack never writes a frame that verify or import would refuse.
            crate::format::zstdframe::FrameCheck::check(&frame, size).map_err(|e| {
                Error::Other(format!(
                    "internal error: a zstd frame written for {} breaks the frame rules: {e}",
                    blob.origin.describe()
                ))
            })?;
            let (data, encoding) = if frame.len() < raw.len() {
                (hashpipe::owned(frame), Encoding::Zstd)
            } else {
                (raw, Encoding::None)
            };
            let len = data.len() as u64;
            w.room_for(len)?;
            let (chunk, offset) = w.begin_entry(name, segments.len(), encoding, len)?;
            w.write_shared(data)?;
            w.end_entry(len)?;
            segments.push(Segment {
                chunk,
                offset,
                length: len,
                encoding,
                size,
            });
            progress.inc(size);
        }
    }
    Ok(segments)
}
