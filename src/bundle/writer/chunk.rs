//! Chunk files being written: tar entries appended up to the chunk size, each buffer handed to
//! the hash threads (held back while a pending blob's entry names are placeholders, then
//! patched and released), writeback kicked every 8 MiB, each chunk closed with its digests.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::bundle::hashpipe::{self, ChunkHashers, Pool, Shared, Worker};
use crate::error::{Error, Result};
use crate::format::tarframe::{self, BLOCK, TRAILER};
use crate::format::{chunk_name, segment_entry_name, Chunk, Digest, Encoding, Hasher};
use crate::fsutil;

use super::{WriterOptions, IO_BUF, POOL};

/// The chunk file being written.
struct OpenChunk {
    index: u32,
    path: PathBuf,
    file: File,
    /// The most bytes this chunk may have: the chunk size, or what is left on its volume.
    limit: u64,
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

/// Version 4: the data volume being filled (`ROOT/vol-NNN/chunks/`).
struct VolumeCursor {
    root: PathBuf,
    /// Chunk bytes a volume may hold.
    budget: u64,
    /// Chunk bytes on the current volume so far (closed chunks).
    used: u64,
    /// Chunks per volume so far (the last is the current volume).
    counts: Vec<u32>,
    /// The current volume's `chunks/`.
    dir: PathBuf,
}

/// A volume is not begun with less room than this left for a chunk's data: the next volume
/// takes the chunk (at most this much of a volume stays empty).
pub(super) const MIN_VOLUME_ROOM: u64 = 16 << 10;

/// Appends tar entries to a sequence of chunk files no larger than the limit (and, spread over
/// volumes, none straddling two).
pub(super) struct ChunkWriter<'a> {
    dir: &'a Path,
    vol: Option<VolumeCursor>,
    pub(super) opts: &'a WriterOptions,
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
    pub(super) blob_hash: Worker<Hasher>,
    pub(super) pool: Pool,
}

impl<'a> ChunkWriter<'a> {
    /// `dir`: where chunks go, or with `opts.volume_budget` the bundle root whose `vol-NNN/chunks/`
    /// they go to.
    pub(super) fn new(dir: &'a Path, opts: &'a WriterOptions) -> Self {
        ChunkWriter {
            dir,
            vol: opts.volume_budget.map(|budget| VolumeCursor {
                root: dir.to_path_buf(),
                budget,
                used: 0,
                counts: Vec::new(),
                dir: dir.to_path_buf(),
            }),
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

    /// The largest chunk this writer makes: the chunk size, or a volume's budget if smaller.
    pub(super) fn max_chunk(&self) -> u64 {
        self.opts
            .chunk_size
            .min(self.opts.volume_budget.unwrap_or(u64::MAX))
    }

    /// Data bytes a new entry can hold here, opening a new chunk if the current one is full.
    pub(super) fn room(&mut self) -> Result<u64> {
        if let Some(c) = &self.open {
            let r = tarframe::room_at(c.pos, c.limit);
            if r > 0 {
                return Ok(r);
            }
            self.close()?;
        }
        self.open_chunk(0)
    }

    /// Makes sure an entry of `len` data bytes fits here whole (a zstd frame is never split):
    /// in the current chunk, else a new one, on the next volume if this one has too little left.
    pub(super) fn room_for(&mut self, len: u64) -> Result<()> {
        if self.room()? >= len {
            return Ok(());
        }
        self.close()?;
        let room = self.open_chunk(len)?;
        if room < len {
            return Err(Error::Other(format!(
                "internal error: an entry of {len} bytes does not fit a new chunk ({room} bytes of room)"
            )));
        }
        Ok(())
    }

    /// Opens the next chunk (on the next volume when the current one has less than `need`, or
    /// [`MIN_VOLUME_ROOM`], of data room left); returns its data room.
    fn open_chunk(&mut self, need: u64) -> Result<u64> {
        let index = self.next;
        let mut limit = self.opts.chunk_size;
        if let Some(v) = &mut self.vol {
            let left = v.budget - v.used;
            if v.counts.is_empty() || tarframe::room_at(0, left) < need.max(MIN_VOLUME_ROOM) {
                v.counts.push(0);
                v.used = 0;
                let n = v.counts.len() as u32;
                v.dir = v
                    .root
                    .join(crate::format::volumes::volume_dir_name(n))
                    .join(crate::format::CHUNKS_DIR);
                fsutil::create_dir_all(&v.dir)?;
            }
            limit = limit.min(v.budget - v.used);
            *v.counts.last_mut().expect("pushed above") += 1;
        }
        self.next += 1;
        let dir = self.vol.as_ref().map_or(self.dir, |v| v.dir.as_path());
        let path = dir.join(chunk_name(index as usize));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create chunk", &path, e))?;
        self.open = Some(OpenChunk {
            index,
            path,
            file,
            limit,
            pos: 0,
            sent: 0,
            kicked: 0,
        });
        Ok(tarframe::room_at(0, limit))
    }

    fn cur(&mut self) -> &mut OpenChunk {
        self.open.as_mut().expect("room() opened a chunk")
    }

    /// Writes bytes and hands them to the chunk's hash thread (unless a hold is on).
    pub(super) fn write_shared(&mut self, bytes: Shared) -> Result<()> {
        let c = self.open.as_mut().expect("room() opened a chunk");
        if !self.holding {
            self.chunk_hash.update(bytes.clone());
            c.sent += bytes.len() as u64;
        }
        c.file
            .write_all(&bytes)
            .map_err(|e| Error::io("write chunk", &c.path, e))?;
        c.pos += bytes.len() as u64;
        if c.pos - c.kicked >= fsutil::WRITEBACK_STEP {
            kick(c);
        }
        Ok(())
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_shared(hashpipe::owned(bytes.to_vec()))
    }

    /// Starts an entry of `len` data bytes; returns (chunk index, data offset). The header of a
    /// pending blob's segment is patched when its digest is known.
    pub(super) fn begin_entry(
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

    pub(super) fn end_entry(&mut self, len: u64) -> Result<()> {
        let pad = tarframe::padding(len) as usize;
        if pad > 0 {
            self.write_bytes(&[0u8; BLOCK as usize][..pad])?;
        }
        Ok(())
    }

    pub(super) fn close(&mut self) -> Result<()> {
        if self.open.is_none() {
            return Ok(());
        }
        self.write_bytes(&[0u8; TRAILER as usize])?;
        let mut c = self.open.take().expect("checked above");
        if let Some(v) = &mut self.vol {
            v.used += c.pos;
        }
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
    pub(super) fn start_hold(&mut self) {
        self.holding = true;
    }

    /// Ends a hold once the pending blob's digest is known: patches its headers, then hands the
    /// held bytes to the hash thread.
    pub(super) fn release(&mut self, digest: &Digest) -> Result<()> {
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

    /// Closes the last chunk; returns the chunks and (spread over volumes) the number of chunks
    /// on each data volume.
    pub(super) fn finish(mut self) -> Result<(Vec<Chunk>, Vec<u32>)> {
        self.close()?;
        let mut counts = self.vol.take().map(|v| v.counts).unwrap_or_default();
        if self.opts.volume_budget.is_some() && counts.is_empty() {
            // A bundle without chunks still has its one (empty) volume.
            counts.push(0);
        }
        Ok((std::mem::take(&mut self.done), counts))
    }
}

/// Starts the writeback of what was written since the last kick.
fn kick(c: &mut OpenChunk) {
    fsutil::start_writeback(&c.file, c.kicked, c.pos - c.kicked);
    c.kicked = c.pos;
}
