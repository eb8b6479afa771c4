//! One blob's staging state while its segments stream by ([`Sink`], [`Tee`]), and the table of
//! the blobs of one staging pass ([`Sinks`]): a sink exists from a blob's first segment to its
//! completion, so what an import holds per blob is bounded by the blobs in flight.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use crate::bundle::hashpipe::{self, Worker};
use crate::error::{Error, Result};
use crate::format::Blob;
use crate::fsutil;
use crate::hf::GitBlobHasher;

/// Blobs of at least this size are hashed on their own thread while they stream.
const THREADED_HASH: u64 = 1 << 20;

/// Where one blob's bytes go while its segments stream by: its staging files (one per area that
/// needs it), its SHA-256 (and git blob SHA-1 when asked), the count of bytes.
pub(super) struct Tee {
    pub(super) files: Vec<(File, PathBuf)>,
    pub(super) hash: BlobHash,
    pub(super) git: Option<Box<GitBlobHasher>>,
    pub(super) written: u64,
    /// Bytes of the staging files whose writeback was started (`fsutil::start_writeback`), so
    /// that the one `syncfs` before commit finds little left and writing back overlaps hashing.
    pub(super) kicked: u64,
    /// Decoded bytes the current segment may still yield, of its declared size.
    pub(super) segment_left: u64,
    pub(super) segment_size: u64,
    /// Total bytes the blob may hold.
    pub(super) size: u64,
    /// A write to a staging file failed (disk full, I/O): operational, whatever the decoder
    /// makes of it.
    pub(super) write_failed: Option<Error>,
}

pub(super) enum BlobHash {
    /// Not started, or small blobs hashed inline (boxed: a sink per needed blob lives for the
    /// whole import, so what it holds before its bytes come must be small).
    Inline(Option<Box<crate::format::Hasher>>),
    Thread(Worker<crate::format::Hasher>),
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.segment_left || self.written + buf.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "decodes to more than the {} bytes declared",
                    self.segment_size
                ),
            ));
        }
        for (f, p) in &mut self.files {
            if let Err(e) = f.write_all(buf) {
                let kind = e.kind();
                self.write_failed = Some(Error::io("write", &*p, e));
                return Err(io::Error::new(kind, "write failed"));
            }
        }
        match &mut self.hash {
            BlobHash::Inline(h) => h.get_or_insert_with(Default::default).update(buf),
            BlobHash::Thread(w) => w.update(hashpipe::owned(buf.to_vec())),
        }
        if let Some(g) = &mut self.git {
            g.update(buf);
        }
        self.written += buf.len() as u64;
        self.segment_left -= buf.len() as u64;
        if self.written - self.kicked >= fsutil::WRITEBACK_STEP {
            for (f, _) in &self.files {
                fsutil::start_writeback(f, self.kicked, self.written - self.kicked);
            }
            self.kicked = self.written;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One blob being staged.
pub(super) struct Sink<'b> {
    pub(super) blob: &'b Blob,
    pub(super) parts: Vec<(usize, PathBuf)>,
    git_sha1: Vec<(String, String)>,
    pub(super) tee: Tee,
    /// The segment expected next.
    pub(super) next: usize,
    /// A zstd segment being decoded (the tee moves into the decoder and back).
    pub(super) decoder: Option<Box<zstd::stream::write::Decoder<'static, Tee>>>,
    pub(super) frame: Option<crate::format::zstdframe::FrameCheck>,
    /// Raw bytes of the current segment still to come.
    pub(super) raw_left: u64,
    pub(super) failed: Option<Error>,
    pub(super) done: bool,
    opened: bool,
}

impl<'b> Sink<'b> {
    /// A sink for `blob`; its staging files are created (and its hash thread started) only
    /// when its first bytes come, and closed when it is complete, so that the files open at
    /// once are those of the blobs in the chunk being read, never one per blob of the bundle.
    pub(super) fn new(
        blob: &'b Blob,
        parts: Vec<(usize, PathBuf)>,
        git_sha1: Vec<(String, String)>,
    ) -> Sink<'b> {
        let files = Vec::new();
        let hash = BlobHash::Inline(None);
        Sink {
            blob,
            parts,
            tee: Tee {
                files,
                hash,
                git: (!git_sha1.is_empty()).then(|| Box::new(GitBlobHasher::new(blob.size))),
                written: 0,
                kicked: 0,
                segment_left: blob.size,
                segment_size: blob.size,
                size: blob.size,
                write_failed: None,
            },
            git_sha1,
            next: 0,
            decoder: None,
            frame: None,
            raw_left: 0,
            failed: None,
            done: false,
            opened: false,
        }
    }

    /// Creates the staging files and the hash, once.
    pub(super) fn open(&mut self) -> Result<()> {
        if self.opened {
            return Ok(());
        }
        self.opened = true;
        for (_, p) in &self.parts {
            let f = File::create_new(p).map_err(|e| Error::io("create", p, e))?;
            self.tee.files.push((f, p.clone()));
        }
        if self.blob.size >= THREADED_HASH {
            self.tee.hash = BlobHash::Thread(Worker::spawn("blob-sha256"));
        }
        Ok(())
    }

    pub(super) fn what(&self) -> String {
        format!("blob {}", self.blob.digest)
    }

    /// The write error the tee recorded, if the failure was one.
    pub(super) fn write_failure(&mut self) -> Option<Error> {
        match &mut self.decoder {
            Some(d) => d.get_mut().write_failed.take(),
            None => self.tee.write_failed.take(),
        }
    }

    pub(super) fn io_error(&self, e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
                Error::Corrupt(format!("{}: {e}", self.what()))
            }
            _ => Error::Other(format!("staging {}: {e}", self.what())),
        }
    }

    /// Starts segment `i` (raw bytes follow through [`Sink::feed`]).
    pub(super) fn start(&mut self, i: usize) -> Result<()> {
        if i != self.next {
            return Err(Error::Corrupt(format!(
                "{}: its segments are not in the order of the chunks (segment {i} before {})",
                self.what(),
                self.next
            )));
        }
        self.open()?;
        let seg = &self.blob.segments[i];
        self.raw_left = seg.length;
        self.tee.segment_left = seg.size;
        self.tee.segment_size = seg.size;
        if seg.encoding == crate::format::Encoding::Zstd {
            let tee = std::mem::replace(&mut self.tee, placeholder_tee());
            let mut d = zstd::stream::write::Decoder::new(tee)
                .map_err(|e| Error::Other(format!("zstd: {e}")))?;
            d.window_log_max(crate::format::zstdframe::WINDOW_LOG_MAX)
                .map_err(|e| Error::Other(format!("zstd: {e}")))?;
            self.decoder = Some(Box::new(d));
            self.frame = Some(crate::format::zstdframe::FrameCheck::new(
                seg.length, seg.size,
            ));
        }
        Ok(())
    }

    /// Raw bytes of the current segment.
    pub(super) fn feed(&mut self, raw: &[u8]) -> Result<()> {
        self.raw_left -= raw.len() as u64;
        if let Some(f) = &mut self.frame {
            f.feed(raw).map_err(|why| self.segment_error(why))?;
        }
        let written = match &mut self.decoder {
            Some(d) => d.write_all(raw),
            None => self.tee.write_all(raw),
        };
        if let Err(e) = written {
            if let Some(w) = self.write_failure() {
                return Err(w);
            }
            return Err(match self.decoder {
                Some(_) => self.decode_error(e),
                None => self.io_error(e),
            });
        }
        if self.raw_left == 0 {
            self.end_segment()?;
        }
        Ok(())
    }

    fn segment_error(&self, why: String) -> Error {
        Error::Corrupt(format!("{} segment {}: {why}", self.what(), self.next))
    }

    fn decode_error(&self, e: io::Error) -> Error {
        self.segment_error(format!("cannot decode: {e}"))
    }

    pub(super) fn end_segment(&mut self) -> Result<()> {
        let i = self.next;
        if let Some(f) = self.frame.take() {
            f.finish().map_err(|why| self.segment_error(why))?;
        }
        if let Some(mut d) = self.decoder.take() {
            let flushed = d.flush();
            self.tee = (*d).into_inner();
            if let Err(e) = flushed {
                if let Some(w) = self.tee.write_failed.take() {
                    return Err(w);
                }
                return Err(self.decode_error(e));
            }
        }
        if self.tee.segment_left != 0 {
            let size = self.blob.segments[i].size;
            return Err(self.segment_error(format!(
                "holds {} bytes, {size} declared",
                size - self.tee.segment_left
            )));
        }
        self.next += 1;
        if self.next == self.blob.segments.len() {
            self.finish()?;
        }
        Ok(())
    }

    /// All bytes are in: check size, SHA-256 and git blob SHA-1.
    pub(super) fn finish(&mut self) -> Result<()> {
        self.open()?;
        self.done = true;
        let tee = std::mem::replace(&mut self.tee, placeholder_tee());
        let what = self.what();
        if tee.written != self.blob.size {
            return Err(Error::SizeMismatch {
                what,
                digest: self.blob.digest,
                declared: self.blob.size,
                detail: format!("decodes to {} bytes", tee.written),
            });
        }
        let digest = match tee.hash {
            BlobHash::Inline(h) => h.unwrap_or_default().finish(),
            BlobHash::Thread(w) => w
                .finish()
                .map_err(|e| Error::Other(format!("hashing {what}: {e}")))?,
        };
        if digest != self.blob.digest {
            return Err(Error::DigestMismatch {
                what: format!("{what} read from the bundle"),
                expected: self.blob.digest,
                actual: digest,
            });
        }
        if let Some(g) = tee.git {
            let actual = g.finish();
            if let Some((expected, named)) = self.git_sha1.iter().find(|(e, _)| *e != actual) {
                return Err(Error::HashMismatch {
                    what: format!(
                        "{named} (content {}); refusing to put it in the cache under a wrong name",
                        self.blob.digest
                    ),
                    algorithm: "git blob SHA-1",
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

fn placeholder_tee() -> Tee {
    Tee {
        files: Vec::new(),
        hash: BlobHash::Inline(None),
        git: None,
        written: 0,
        kicked: 0,
        segment_left: 0,
        segment_size: 0,
        size: 0,
        write_failed: None,
    }
}

/// One blob to stage: its manifest entry and the staging areas that need it (a bit each).
pub(super) struct Want<'b> {
    pub(super) blob: &'b Blob,
    pub(super) areas: u64,
}

/// A blob's staging state. Its [`Sink`] exists only while its segments stream by: created at
/// its first segment, dropped (files closed, hash finished) when it is complete or has failed,
/// so that what an import holds per blob is bounded by the blobs in flight, not by the bundle.
pub(super) enum Slot<'b> {
    Waiting,
    Open(Box<Sink<'b>>),
    Done,
    Failed(Box<Error>),
}

/// The blobs of one staging pass and their states, indexed as `wants`.
pub(super) struct Sinks<'b, 'a> {
    pub(super) wants: Vec<Want<'b>>,
    pub(super) slots: Vec<Slot<'b>>,
    areas: &'a [super::Area],
}

impl<'b, 'a> Sinks<'b, 'a> {
    pub(super) fn new(wants: Vec<Want<'b>>, areas: &'a [super::Area]) -> Sinks<'b, 'a> {
        let slots = wants.iter().map(|_| Slot::Waiting).collect();
        Sinks {
            wants,
            slots,
            areas,
        }
    }

    /// The sink of blob `i`, created if it was waiting; `None` once it is done or has failed.
    pub(super) fn open(&mut self, i: usize) -> Option<&mut Sink<'b>> {
        if matches!(self.slots[i], Slot::Waiting) {
            let w = &self.wants[i];
            let digest = &w.blob.digest;
            let mine = |a: &usize| w.areas & (1u64 << *a) != 0;
            let parts = (0..self.areas.len())
                .filter(mine)
                .map(|a| (a, self.areas[a].dir.join(digest.hex())))
                .collect();
            let git = (0..self.areas.len())
                .filter(mine)
                .filter_map(|a| self.areas[a].git_sha1.get(digest))
                .flatten()
                .cloned()
                .collect();
            self.slots[i] = Slot::Open(Box::new(Sink::new(w.blob, parts, git)));
        }
        match &mut self.slots[i] {
            Slot::Open(s) => Some(s),
            _ => None,
        }
    }

    /// Blob `i` failed: its sink (and open files) go.
    pub(super) fn fail(&mut self, i: usize, e: Error) {
        self.slots[i] = Slot::Failed(Box::new(e));
    }

    /// Blob `i` back to waiting, its partial staging files removed (an external blob's
    /// recorded place did not match: the next one is tried).
    pub(super) fn reset(&mut self, i: usize) {
        if let Slot::Open(s) = &self.slots[i] {
            for (_, p) in &s.parts {
                let _ = std::fs::remove_file(p);
            }
        }
        self.slots[i] = Slot::Waiting;
    }

    /// Drops blob `i`'s sink once it is complete.
    pub(super) fn settle(&mut self, i: usize) {
        if let Slot::Open(s) = &mut self.slots[i] {
            if let Some(e) = s.failed.take() {
                self.fail(i, e);
            } else if s.done {
                self.slots[i] = Slot::Done;
            }
        }
    }

    /// Nothing more is written once the bundle is known to be refused.
    pub(super) fn stop_writing(&mut self) {
        for s in &mut self.slots {
            if let Slot::Open(s) = s {
                s.tee.files.clear();
            }
        }
    }
}
