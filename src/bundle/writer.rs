//! Writes blobs into chunk files: the data half of `pack`.
//!
//! Blobs go in plan order. A stored blob becomes one tar entry per chunk it touches; a blob
//! worth compressing is cut into windows of at most [`WINDOW`] bytes, each compressed (in
//! parallel) into one zstd frame and one tar entry. Every blob is re-hashed as it is written and
//! must match the digest the plan promised; each chunk is hashed on its own thread as it is
//! written, and fsynced when closed.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::hashpipe::HashPipe;
use crate::error::{Error, Result};
use crate::format::tarframe::{self, BLOCK, TRAILER};
use crate::format::{
    chunk_name, segment_entry_name, Blob, Chunk, Digest, Encoding, Hasher, Segment,
};
use crate::fsutil::{self, BUF_SIZE};
use crate::progress::Progress;

/// Largest input of one zstd frame.
pub const WINDOW: u64 = 8 << 20;
/// Compress only when sampled data shrinks to this fraction or less.
const WORTH_IT: f64 = 0.85;
const SAMPLE: usize = 64 << 10;
const LEVEL: i32 = 3;

/// Opens a fresh reader over a blob's bytes.
pub type Opener = Arc<dyn Fn() -> Result<Box<dyn Read + Send>> + Send + Sync>;

/// Where the bytes of a planned blob come from.
#[derive(Clone)]
pub enum Origin {
    /// Already in memory (manifests, small configs).
    Bytes(Arc<Vec<u8>>),
    /// A byte range of a local file, starting at `offset` (a whole file, an OCI layout blob, a
    /// member of a docker archive).
    File { path: PathBuf, offset: u64 },
    /// A stream (a registry download). Its bytes are trusted only once they hash to the digest.
    Stream { open: Opener, what: String },
}

impl Origin {
    /// A whole local file.
    pub fn file(path: impl Into<PathBuf>) -> Origin {
        Origin::File {
            path: path.into(),
            offset: 0,
        }
    }

    /// What to name in messages.
    pub fn describe(&self) -> String {
        match self {
            Origin::Bytes(_) => "generated document".to_string(),
            Origin::File { path, offset: 0 } => path.display().to_string(),
            Origin::File { path, offset } => format!("{} at byte {offset}", path.display()),
            Origin::Stream { what, .. } => what.clone(),
        }
    }

    fn open(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            Origin::Bytes(b) => Ok(Box::new(std::io::Cursor::new(b.clone().to_vec()))),
            Origin::File { path, offset } => {
                let mut f = fsutil::open_regular(path)?;
                if *offset > 0 {
                    use std::io::{Seek, SeekFrom};
                    f.seek(SeekFrom::Start(*offset))
                        .map_err(|e| Error::io("seek", path, e))?;
                }
                Ok(Box::new(f))
            }
            Origin::Stream { open, .. } => open(),
        }
    }
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Origin({})", self.describe())
    }
}

/// A blob the plan wants in the bundle: its promised digest and where to read it.
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
    /// Modification time recorded in tar headers (the bundle's creation time).
    pub mtime: u64,
}

struct OpenChunk {
    index: u32,
    path: PathBuf,
    file: File,
    pos: u64,
    hash: HashPipe,
}

/// Appends tar entries to a sequence of chunk files no larger than the limit.
struct ChunkWriter<'a> {
    dir: &'a Path,
    opts: &'a WriterOptions,
    open: Option<OpenChunk>,
    done: Vec<Chunk>,
}

impl<'a> ChunkWriter<'a> {
    fn new(dir: &'a Path, opts: &'a WriterOptions) -> Self {
        ChunkWriter {
            dir,
            opts,
            open: None,
            done: Vec::new(),
        }
    }

    /// Data bytes a new entry can hold here, opening a new chunk if the current one is full.
    fn room(&mut self) -> Result<u64> {
        if let Some(c) = &self.open {
            let r = tarframe::room_at(c.pos, self.opts.chunk_size);
            if r > 0 {
                return Ok(r);
            }
            self.close()?;
        }
        let index = self.done.len() as u32;
        let path = self.dir.join(chunk_name(index as usize));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create chunk", &path, e))?;
        self.open = Some(OpenChunk {
            index,
            path,
            file,
            pos: 0,
            hash: HashPipe::new(),
        });
        Ok(tarframe::room_at(0, self.opts.chunk_size))
    }

    fn cur(&mut self) -> &mut OpenChunk {
        self.open.as_mut().expect("room() opened a chunk")
    }

    /// Writes bytes that are not a pool buffer (headers, padding, compressed frames).
    fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let c = self.cur();
        c.file
            .write_all(bytes)
            .map_err(|e| Error::io("write chunk", &c.path, e))?;
        c.pos += bytes.len() as u64;
        c.hash.update(bytes.to_vec());
        Ok(())
    }

    /// Starts an entry of `len` data bytes; returns (chunk index, data offset).
    fn begin_entry(&mut self, name: &str, len: u64) -> Result<(u32, u64)> {
        let header = tarframe::entry_header(name, len, self.opts.mtime);
        self.write_bytes(&header)?;
        let c = self.cur();
        Ok((c.index, c.pos))
    }

    /// Writes a pool buffer of entry data.
    fn write_buf(&mut self, buf: Vec<u8>) -> Result<()> {
        let c = self.cur();
        c.file
            .write_all(&buf)
            .map_err(|e| Error::io("write chunk", &c.path, e))?;
        c.pos += buf.len() as u64;
        c.hash.update_pooled(buf);
        Ok(())
    }

    fn end_entry(&mut self, len: u64) -> Result<()> {
        let pad = tarframe::padding(len) as usize;
        if pad > 0 {
            self.write_bytes(&[0u8; BLOCK as usize][..pad])?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if self.open.is_none() {
            return Ok(());
        }
        self.write_bytes(&[0u8; TRAILER as usize])?;
        let c = self.open.take().expect("checked above");
        c.file
            .sync_all()
            .map_err(|e| Error::io("sync chunk", &c.path, e))?;
        let sha256 = c.hash.finish();
        self.done.push(Chunk {
            name: chunk_name(c.index as usize),
            size: c.pos,
            sha256,
        });
        Ok(())
    }
}

/// Decides whether a blob is worth compressing, from its magic number and a few samples taken
/// away from the start (a safetensors header compresses; the tensors after it do not).
pub fn worth_compressing(path: &Path, size: u64) -> Result<bool> {
    worth_compressing_at(path, 0, size)
}

fn worth_compressing_at(path: &Path, base: u64, size: u64) -> Result<bool> {
    if size < 4096 {
        return Ok(false);
    }
    let mut f = fsutil::open_regular(path)?;
    {
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(base))
            .map_err(|e| Error::io("seek", path, e))?;
    }
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic)
        .map_err(|e| Error::io("read", path, e))?;
    let known_dense: [&[u8]; 9] = [
        b"\x1f\x8b",           // gzip (container layers, .tar.gz)
        b"\x28\xb5\x2f\xfd",   // zstd
        b"\xfd7zXZ\x00",       // xz
        b"BZh",                // bzip2
        b"PK\x03\x04",         // zip, wheels, jars
        b"7z\xbc\xaf\x27\x1c", // 7z
        b"\x89PNG",            // png
        b"\xff\xd8\xff",       // jpeg
        b"GGUF",               // quantised weights
    ];
    if known_dense.iter().any(|m| magic.starts_with(m)) {
        return Ok(false);
    }
    use std::io::{Seek, SeekFrom};
    let offsets: Vec<u64> = if size <= 4 * SAMPLE as u64 {
        vec![0]
    } else {
        (0..4)
            .map(|i| (size * (2 * i + 1) / 8).min(size - SAMPLE as u64))
            .collect()
    };
    let (mut raw, mut packed) = (0usize, 0usize);
    let mut buf = vec![0u8; SAMPLE.min(size as usize)];
    for off in offsets {
        f.seek(SeekFrom::Start(base + off))
            .map_err(|e| Error::io("seek", path, e))?;
        let n = read_full(&mut f, &mut buf, path)?;
        raw += n;
        packed += zstd::bulk::compress(&buf[..n], 1)
            .map_err(|e| Error::io("compress sample of", path, e))?
            .len();
    }
    Ok(raw > 0 && (packed as f64) <= WORTH_IT * raw as f64)
}

/// Reads until `buf` is full or the input ends; the number of bytes read.
fn read_up_to(f: &mut (impl Read + ?Sized), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_full(f: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize> {
    read_up_to(f, buf).map_err(|e| Error::io("read", path, e))
}

/// Fills `buf` from the blob's origin; a short read means the file shrank since it was planned
/// (or the stream ended early).
fn fill_from_blob(f: &mut dyn Read, buf: &mut [u8], blob: &PlannedBlob) -> Result<()> {
    let n = read_up_to(f, buf).map_err(|e| {
        Error::Other(format!(
            "blob {} from {}: {e}",
            blob.digest,
            blob.origin.describe()
        ))
    })?;
    if n < buf.len() {
        return Err(match blob.origin {
            Origin::Stream { .. } => Error::SizeMismatch {
                what: blob.origin.describe(),
                digest: blob.digest,
                declared: blob.size,
                detail: "ended early".into(),
            },
            _ => Error::Other(format!(
                "{} shrank while it was being packed (expected {} bytes); pack again",
                blob.origin.describe(),
                blob.size
            )),
        });
    }
    Ok(())
}

/// A stream must end exactly at the declared size: one more byte is a lie about the blob.
fn check_end(f: &mut dyn Read, blob: &PlannedBlob) -> Result<()> {
    if let Origin::Stream { .. } = blob.origin {
        let mut one = [0u8; 1];
        if matches!(f.read(&mut one), Ok(n) if n > 0) {
            return Err(Error::SizeMismatch {
                what: blob.origin.describe(),
                digest: blob.digest,
                declared: blob.size,
                detail: "is longer".into(),
            });
        }
    }
    Ok(())
}

fn changed(blob: &PlannedBlob, actual: Digest) -> Error {
    match blob.origin {
        Origin::File { .. } => Error::Other(format!(
            "{} changed while it was being packed: planned {}, read {}; pack again",
            blob.origin.describe(),
            blob.digest,
            actual
        )),
        _ => Error::DigestMismatch {
            what: format!("blob from {}", blob.origin.describe()),
            expected: blob.digest,
            actual,
        },
    }
}

fn should_compress(blob: &PlannedBlob) -> Result<bool> {
    match (blob.compress, &blob.origin) {
        (Some(c), _) => Ok(c && blob.size >= 4096),
        (None, Origin::File { path, offset }) => worth_compressing_at(path, *offset, blob.size),
        (None, Origin::Bytes(b)) => Ok(b.len() >= 4096),
        (None, Origin::Stream { .. }) => Ok(false),
    }
}

/// Writes every blob into chunks under `chunks_dir`; returns the manifest's blob and chunk lists.
pub fn write_blobs(
    chunks_dir: &Path,
    blobs: &[PlannedBlob],
    opts: &WriterOptions,
    progress: &dyn Progress,
) -> Result<(Vec<Blob>, Vec<Chunk>)> {
    let mut w = ChunkWriter::new(chunks_dir, opts);
    let mut out = Vec::with_capacity(blobs.len());
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    progress.start("writing chunks", total);
    for blob in blobs {
        let segments = if should_compress(blob)? {
            write_compressed(&mut w, blob, progress)?
        } else {
            write_stored(&mut w, blob, progress)?
        };
        out.push(Blob {
            digest: blob.digest,
            size: blob.size,
            segments,
        });
    }
    w.close()?;
    progress.finish();
    Ok((out, w.done))
}

/// Streams a blob as stored entries, one per chunk it touches.
fn write_stored(
    w: &mut ChunkWriter,
    blob: &PlannedBlob,
    progress: &dyn Progress,
) -> Result<Vec<Segment>> {
    let mut f = blob.origin.open()?;
    let mut hasher = Hasher::new();
    let mut segments = Vec::new();
    let mut left = blob.size;
    while left > 0 {
        let len = left.min(w.room()?);
        let name = segment_entry_name(&blob.digest, segments.len(), Encoding::None);
        let (chunk, offset) = w.begin_entry(&name, len)?;
        let mut todo = len;
        while todo > 0 {
            crate::interrupt::check()?;
            let mut buf = w.cur().hash.buffer();
            let want = todo.min(BUF_SIZE as u64) as usize;
            buf.resize(want, 0);
            fill_from_blob(&mut *f, &mut buf, blob)?;
            hasher.update(&buf);
            w.write_buf(buf)?;
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
    check_end(&mut *f, blob)?;
    let actual = hasher.finish();
    if actual != blob.digest {
        return Err(changed(blob, actual));
    }
    Ok(segments)
}

/// Compresses a blob window by window (several windows in parallel) into zstd entries.
fn write_compressed(
    w: &mut ChunkWriter,
    blob: &PlannedBlob,
    progress: &dyn Progress,
) -> Result<Vec<Segment>> {
    let window = WINDOW
        .min(tarframe::room_at(0, w.opts.chunk_size) / 2)
        .max(BLOCK);
    let batch = rayon::current_num_threads().max(1) * 2;
    let mut f = blob.origin.open()?;
    let mut hasher = Hasher::new();
    let mut segments = Vec::new();
    let mut left = blob.size;
    while left > 0 {
        crate::interrupt::check()?;
        // Read up to `batch` windows, compress them in parallel, then write them in order.
        let mut inputs = Vec::with_capacity(batch);
        while inputs.len() < batch && left > 0 {
            let want = left.min(window) as usize;
            let mut buf = vec![0u8; want];
            fill_from_blob(&mut *f, &mut buf, blob)?;
            hasher.update(&buf);
            left -= want as u64;
            inputs.push(buf);
        }
        let frames: Vec<std::io::Result<Vec<u8>>> = inputs
            .par_iter()
            .map(|raw| zstd::bulk::compress(raw, LEVEL))
            .collect();
        for (raw, frame) in inputs.into_iter().zip(frames) {
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
                (frame, Encoding::Zstd)
            } else {
                (raw, Encoding::None)
            };
            let len = data.len() as u64;
            if w.room()? < len {
                w.close()?;
                w.room()?;
            }
            let name = segment_entry_name(&blob.digest, segments.len(), encoding);
            let (chunk, offset) = w.begin_entry(&name, len)?;
            w.write_bytes(&data)?;
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
    check_end(&mut *f, blob)?;
    let actual = hasher.finish();
    if actual != blob.digest {
        return Err(changed(blob, actual));
    }
    Ok(segments)
}
