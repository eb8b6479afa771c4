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

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::hashpipe::{self, ChunkHashers, Pool, Shared, Worker};
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
    /// Modification time recorded in tar headers (the bundle's creation time).
    pub mtime: u64,
}

/// What [`write_blobs`] wrote: the manifest's blob and chunk lists, and the digest each pending
/// blob turned out to have (placeholder → actual; a pending file identical to another blob maps
/// to that blob's digest).
pub struct Written {
    pub blobs: Vec<Blob>,
    pub chunks: Vec<Chunk>,
    pub learned: HashMap<Digest, Digest>,
}

/// Bytes read from a source per buffer (and written per `write`).
const IO_BUF: usize = BUF_SIZE;
/// Pool buffers in flight at most (memory: `POOL * IO_BUF`).
const POOL: usize = 4;
/// Head compared before a large pending blob whose size collides is hashed whole.
const PROBE: usize = BUF_SIZE;
/// Bytes after which the kernel is asked to start writing a chunk's dirty pages back.
const KICK: u64 = 8 << 20;

/// The chunk file being written.
struct OpenChunk {
    index: u32,
    path: PathBuf,
    file: File,
    pos: u64,
    /// Bytes of this chunk handed to the hash thread so far.
    sent: u64,
    /// Bytes handed to the kernel's writeback so far.
    kicked: u64,
}

/// A chunk written to its end whose digests are still to be finished.
struct Closed {
    index: u32,
    path: PathBuf,
    file: Option<File>,
    pos: u64,
    sent: u64,
}

/// A header written with a placeholder name, patched once its blob's digest is known.
struct Patch {
    path: PathBuf,
    at: u64,
    segment: usize,
    encoding: Encoding,
    len: u64,
}

/// Appends tar entries to a sequence of chunk files no larger than the limit.
struct ChunkWriter<'a> {
    dir: &'a Path,
    opts: &'a WriterOptions,
    open: Option<OpenChunk>,
    /// Closed chunks whose digests wait for the pending blob being written (by path: a blob may
    /// span many chunks).
    held: Vec<Closed>,
    /// A pending blob is being written: its bytes reach the hash thread only once its headers
    /// are final.
    holding: bool,
    patches: Vec<Patch>,
    done: Vec<Chunk>,
    next: u32,
    chunk_hash: Worker<ChunkHashers>,
    blob_hash: Worker<Hasher>,
    pool: Pool,
}

impl<'a> ChunkWriter<'a> {
    fn new(dir: &'a Path, opts: &'a WriterOptions) -> Self {
        ChunkWriter {
            dir,
            opts,
            open: None,
            held: Vec::new(),
            holding: false,
            patches: Vec::new(),
            done: Vec::new(),
            next: 0,
            chunk_hash: Worker::spawn("airlock-chunk-sha"),
            blob_hash: Worker::spawn("airlock-blob-sha"),
            pool: Pool::new(POOL, IO_BUF),
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
        let index = self.next;
        self.next += 1;
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
            sent: 0,
            kicked: 0,
        });
        Ok(tarframe::room_at(0, self.opts.chunk_size))
    }

    fn cur(&mut self) -> &mut OpenChunk {
        self.open.as_mut().expect("room() opened a chunk")
    }

    /// Writes bytes and hands them to the chunk's hash thread (unless a hold is on).
    fn write_shared(&mut self, bytes: Shared) -> Result<()> {
        let c = self.open.as_mut().expect("room() opened a chunk");
        if !self.holding {
            self.chunk_hash.update(bytes.clone());
            c.sent += bytes.len() as u64;
        }
        c.file
            .write_all(&bytes)
            .map_err(|e| Error::io("write chunk", &c.path, e))?;
        c.pos += bytes.len() as u64;
        if c.pos - c.kicked >= KICK {
            kick(c);
        }
        Ok(())
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_shared(hashpipe::owned(bytes.to_vec()))
    }

    /// Starts an entry of `len` data bytes; returns (chunk index, data offset). The header of a
    /// pending blob's segment is patched when its digest is known.
    fn begin_entry(
        &mut self,
        blob: &Digest,
        segment: usize,
        encoding: Encoding,
        len: u64,
    ) -> Result<(u32, u64)> {
        let name = segment_entry_name(blob, segment, encoding);
        let header = tarframe::entry_header(&name, len, self.opts.mtime);
        if self.holding {
            let c = self.cur();
            let patch = Patch {
                path: c.path.clone(),
                at: c.pos,
                segment,
                encoding,
                len,
            };
            self.patches.push(patch);
        }
        self.write_bytes(&header)?;
        let c = self.cur();
        Ok((c.index, c.pos))
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
        let mut c = self.open.take().expect("checked above");
        kick(&mut c);
        let closed = Closed {
            index: c.index,
            path: c.path,
            // A held chunk is reopened when its hold ends: a blob may span many chunks.
            file: (!self.holding).then_some(c.file),
            pos: c.pos,
            sent: c.sent,
        };
        if self.holding {
            self.held.push(closed);
            Ok(())
        } else {
            self.finish_chunk(closed)
        }
    }

    /// Makes a chunk durable (its writeback was started as it was written, so little is left),
    /// hands the rest of it to the hash thread (read back from the file) and records its digests.
    fn finish_chunk(&mut self, c: Closed) -> Result<()> {
        let file = match c.file {
            Some(f) => f,
            None => File::open(&c.path).map_err(|e| Error::io("open chunk", &c.path, e))?,
        };
        file.sync_all()
            .map_err(|e| Error::io("sync chunk", &c.path, e))?;
        if c.sent < c.pos {
            self.chunk_hash.read_back(c.path.clone(), c.sent, c.pos);
        }
        let sums = self
            .chunk_hash
            .finish()
            .map_err(|e| Error::io("read back chunk", &c.path, e))?;
        self.done.push(Chunk {
            name: chunk_name(c.index as usize),
            size: c.pos,
            sha256: sums.sha256,
            pieces: sums.pieces,
        });
        Ok(())
    }

    /// Starts a hold: the chunk bytes of a pending blob wait for its digest.
    fn start_hold(&mut self) {
        self.holding = true;
    }

    /// Ends a hold once the pending blob's digest is known: patches its headers, then hands the
    /// held bytes to the hash thread.
    fn release(&mut self, digest: &Digest) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let mut patched: Option<(PathBuf, File)> = None;
        for p in std::mem::take(&mut self.patches) {
            let name = segment_entry_name(digest, p.segment, p.encoding);
            let header = tarframe::entry_header(&name, p.len, self.opts.mtime);
            if patched.as_ref().map(|(path, _)| path) != Some(&p.path) {
                let f = File::options()
                    .write(true)
                    .open(&p.path)
                    .map_err(|e| Error::io("open chunk", &p.path, e))?;
                patched = Some((p.path.clone(), f));
            }
            let (_, f) = patched.as_ref().expect("opened above");
            f.write_all_at(&header, p.at)
                .map_err(|e| Error::io("write chunk", &p.path, e))?;
        }
        self.holding = false;
        for c in std::mem::take(&mut self.held) {
            self.finish_chunk(c)?;
        }
        if let Some(c) = self.open.as_mut() {
            if c.sent < c.pos {
                self.chunk_hash.read_back(c.path.clone(), c.sent, c.pos);
                c.sent = c.pos;
            }
        }
        Ok(())
    }

    /// Closes the last chunk.
    fn finish(mut self) -> Result<Vec<Chunk>> {
        self.close()?;
        Ok(std::mem::take(&mut self.done))
    }
}

/// Asks the kernel to start writing back what was written since the last kick, so that the
/// sync finds little left to do (Linux; elsewhere the sync does all of it).
fn kick(c: &mut OpenChunk) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor we own; failure only loses the hint.
        unsafe {
            libc::sync_file_range(
                c.file.as_raw_fd(),
                c.kicked as libc::off64_t,
                (c.pos - c.kicked) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    c.kicked = c.pos;
}

/// Decides whether a blob is worth compressing, from its magic number and a few samples taken
/// away from the start (a safetensors header compresses; the tensors after it do not). Reads at
/// most four samples of 64 KiB, never the whole file.
pub fn worth_compressing(path: &Path, size: u64) -> Result<bool> {
    worth_compressing_at(path, 0, size)
}

fn worth_compressing_at(path: &Path, base: u64, size: u64) -> Result<bool> {
    if size < 4096 {
        return Ok(false);
    }
    use std::os::unix::fs::FileExt;
    let f = fsutil::open_regular(path)?;
    decide(size, |off, buf| {
        let mut n = 0;
        while n < buf.len() {
            match f.read_at(&mut buf[n..], base + off + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read", path, e)),
            }
        }
        Ok(n)
    })
    .map_err(|e| match e {
        Error::Other(m) => Error::Other(format!("{}: {m}", path.display())),
        e => e,
    })
}

/// The same decision over bytes in memory.
fn worth_compressing_bytes(data: &[u8]) -> bool {
    if data.len() < 4096 {
        return false;
    }
    decide(data.len() as u64, |off, buf| {
        let from = (off as usize).min(data.len());
        let n = buf.len().min(data.len() - from);
        buf[..n].copy_from_slice(&data[from..from + n]);
        Ok(n)
    })
    .unwrap_or(false)
}

/// Magic numbers of formats that are already dense, then zstd level 1 over samples at 1/8, 3/8,
/// 5/8 and 7/8 of the blob (one sample at 0 for a blob of at most 256 KiB).
fn decide(size: u64, mut read_at: impl FnMut(u64, &mut [u8]) -> Result<usize>) -> Result<bool> {
    let mut magic = [0u8; 8];
    if read_at(0, &mut magic)? < magic.len() {
        return Ok(false);
    }
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
        let n = read_at(off, &mut buf)?;
        raw += n;
        packed += zstd::bulk::compress(&buf[..n], 1)
            .map_err(|e| Error::Other(format!("compressing a sample: {e}")))?
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

/// Fills `buf` from the blob's origin; a short read means the file shrank since it was planned
/// (or the stream ended early).
fn fill_from_blob(f: &mut dyn Read, buf: &mut [u8], blob: &PlannedBlob) -> Result<()> {
    crate::interrupt::check()?;
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

/// A stream must end exactly at the declared size: one more byte is a lie about the blob. A
/// pending file that has more bytes than it had when it was planned grew while it was packed.
fn check_end(f: &mut dyn Read, blob: &PlannedBlob, pending: bool) -> Result<()> {
    let stream = matches!(blob.origin, Origin::Stream { .. });
    if stream || pending {
        let mut one = [0u8; 1];
        if matches!(f.read(&mut one), Ok(n) if n > 0) {
            if pending {
                return Err(Error::Other(format!(
                    "{} grew while it was being packed (planned {} bytes); pack again",
                    blob.origin.describe(),
                    blob.size
                )));
            }
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

fn modified(blob: &PlannedBlob) -> Error {
    Error::Other(format!(
        "{} changed while it was being packed (its size, modification or change time moved); pack again",
        blob.origin.describe()
    ))
}

/// What identifies a file's content for as long as it is not written to: size, mtime, ctime
/// and inode (a write, truncation, `utime` or replacement moves at least one of them).
fn stamp(f: &File, blob: &PlannedBlob) -> Result<(u64, i64, i64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = f
        .metadata()
        .map_err(|e| Error::Other(format!("{}: cannot stat: {e}", blob.origin.describe())))?;
    Ok((
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino(),
    ))
}

/// An open blob origin: a file (kept, to compare its stamp afterwards) or another reader.
enum Input {
    File(File),
    Other(Box<dyn Read + Send>),
}

impl Input {
    fn open(blob: &PlannedBlob) -> Result<Input> {
        match &blob.origin {
            Origin::File { path, offset } => {
                let mut f = fsutil::open_regular(path)?;
                if *offset > 0 {
                    use std::io::{Seek, SeekFrom};
                    f.seek(SeekFrom::Start(*offset))
                        .map_err(|e| Error::io("seek", path, e))?;
                }
                advise_sequential(&f);
                Ok(Input::File(f))
            }
            other => Ok(Input::Other(other.open()?)),
        }
    }

    fn reader(&mut self) -> &mut dyn Read {
        match self {
            Input::File(f) => f,
            Input::Other(r) => r,
        }
    }
}

/// Tells the kernel a source file is read front to back (a larger readahead window).
fn advise_sequential(f: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor we own; failure only loses the hint.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = f;
}

/// The head already read from an input, then the rest of it.
struct Resume<'a> {
    head: &'a [u8],
    rest: &'a mut dyn Read,
}

impl Read for Resume<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.head.is_empty() {
            let n = buf.len().min(self.head.len());
            buf[..n].copy_from_slice(&self.head[..n]);
            self.head = &self.head[n..];
            return Ok(n);
        }
        self.rest.read(buf)
    }
}

fn should_compress(blob: &PlannedBlob, head: &[u8]) -> Result<bool> {
    let whole = head.len() as u64 == blob.size;
    match (blob.compress, &blob.origin) {
        (Some(c), _) => Ok(c && blob.size >= 4096),
        (None, Origin::Stream { .. }) => Ok(false),
        (None, Origin::Bytes(b)) => Ok(b.len() >= 4096),
        (None, _) if whole => Ok(worth_compressing_bytes(head)),
        (None, Origin::File { path, offset }) => worth_compressing_at(path, *offset, blob.size),
    }
}

/// Writes every blob into chunks under `chunks_dir`; returns the manifest's blob and chunk lists.
///
/// A blob whose digest is in `pending` is a local file whose digest is not known yet: its
/// `digest` is a placeholder, and [`Written::learned`] maps it to the digest it had. Blobs are
/// written once per distinct digest.
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
        });
    }
    let chunks = w.finish()?;
    progress.finish();
    Ok(Written {
        blobs: out,
        chunks,
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
        .min(tarframe::room_at(0, w.opts.chunk_size) / 2)
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
            if w.room()? < len {
                w.close()?;
                w.room()?;
            }
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
