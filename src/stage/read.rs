//! The one pass over the media: each needed chunk read whole, once, its digests on their own
//! thread, its segments decoded and hashed into their blobs' staging files. Every byte read is
//! covered by a signed digest before anything commits: a version 3 chunk's pieces that lie
//! wholly inside a stored segment of a blob being staged by that blob's SHA-256 (their bytes are
//! the blob's), every other piece by its piece digest; a version 1/2 chunk by its whole SHA-256.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Admitted;
use crate::bundle::hashpipe::{self, Pool, Worker};
use crate::bundle::verify::chunks::{blobs_in, check_chunks_v3};
use crate::error::{Error, Result};
use crate::format::pieces::{piece_count, piece_range, PieceHasher, DEFAULT_PIECE_SIZE};
use crate::format::Blob;
use crate::fsutil::{self, BUF_SIZE};
use crate::hf::GitBlobHasher;
use crate::interrupt;
use crate::progress::Progress;

/// Blobs of at least this size are hashed on their own thread while they stream.
const THREADED_HASH: u64 = 1 << 20;

/// Where one blob's bytes go while its segments stream by: its staging files (one per area that
/// needs it), its SHA-256 (and git blob SHA-1 when asked), the count of bytes.
pub(super) struct Tee {
    pub(super) files: Vec<(File, PathBuf)>,
    pub(super) hash: BlobHash,
    pub(super) git: Option<Box<GitBlobHasher>>,
    pub(super) written: u64,
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
    fn start(&mut self, i: usize) -> Result<()> {
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
    fn feed(&mut self, raw: &[u8]) -> Result<()> {
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

    fn end_segment(&mut self) -> Result<()> {
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
    fn stop_writing(&mut self) {
        for s in &mut self.slots {
            if let Slot::Open(s) = s {
                s.tee.files.clear();
            }
        }
    }
}

/// A segment within a chunk: its byte range, whether stored as is, and the blob (and segment
/// index) it feeds.
struct Seg {
    offset: u64,
    length: u64,
    sink: u32,
    segment: u32,
    stored: bool,
}

/// Reads every chunk holding a segment of the waiting blobs of `sinks`, in order, each exactly
/// once and whole: its size checked on the handle, its digests computed on their own thread
/// (see [`read_chunk`]), its zstd frames checked, each segment's bytes fed to its sink. Returns
/// the chunk problems found (as `verify` names them), after reading every chunk, so that all are
/// reported at once; a blob problem in an intact chunk is left in its slot.
pub(super) fn read_chunks(
    bundle: &Admitted,
    sinks: &mut Sinks<'_, '_>,
    progress: &dyn Progress,
) -> Result<Vec<crate::bundle::Problem>> {
    let m = bundle.manifest();
    let mut by_chunk: BTreeMap<u32, Vec<Seg>> = BTreeMap::new();
    for (si, w) in sinks.wants.iter().enumerate() {
        if !matches!(sinks.slots[si], Slot::Waiting) {
            continue;
        }
        for (i, seg) in w.blob.segments.iter().enumerate() {
            by_chunk.entry(seg.chunk).or_default().push(Seg {
                offset: seg.offset,
                length: seg.length,
                sink: si as u32,
                segment: i as u32,
                stored: seg.encoding == crate::format::Encoding::None,
            });
        }
    }
    let total = by_chunk.keys().map(|&c| m.chunks[c as usize].size).sum();
    progress.start("reading the bundle", total);
    let mut problems = Vec::new();
    // Version 3 chunks with a damaged piece, re-checked below as verify checks them.
    let mut suspects = std::collections::BTreeSet::new();
    let mut in_stream = Vec::new();
    // The first content error of an intact chunk (a segment that does not decode, a blob that
    // does not hash to its digest): reported only if no chunk is damaged, which explains it.
    let mut broken = None;
    for (c, mut segs) in by_chunk {
        segs.sort_by_key(|p| p.offset);
        match read_chunk(bundle, c, &segs, sinks, progress) {
            Ok(found) if found.is_empty() => {}
            Ok(found) => {
                if found
                    .iter()
                    .any(|p| matches!(p, crate::bundle::Problem::CorruptPiece { .. }))
                {
                    suspects.insert(c);
                    in_stream.extend(found);
                } else {
                    problems.extend(found);
                }
                sinks.stop_writing();
            }
            Err(e) if e.exit_code() == crate::error::exit::REJECTED => {
                broken.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    progress.finish();
    if m.version >= 3 && m.piece_size == DEFAULT_PIECE_SIZE {
        // Stored data was covered by the blob digests alone: a blob that failed may sit on a
        // damaged byte no piece digest was computed for. Its chunks (and those found damaged)
        // are checked again as verify checks them, to name the damaged pieces.
        for (i, slot) in sinks.slots.iter().enumerate() {
            if let Slot::Failed(e) = slot {
                if e.exit_code() == crate::error::exit::REJECTED {
                    suspects.extend(sinks.wants[i].blob.segments.iter().map(|s| s.chunk));
                }
            }
        }
        if broken.is_some() {
            for (i, slot) in sinks.slots.iter().enumerate() {
                if matches!(slot, Slot::Open(_)) {
                    suspects.extend(sinks.wants[i].blob.segments.iter().map(|s| s.chunk));
                }
            }
        }
        if !suspects.is_empty() {
            let which: Vec<u32> = suspects.into_iter().collect();
            let again = check_chunks_v3(bundle.dir(), m, &which, &crate::progress::Silent);
            // What the stream found stands if the media changed since (a flaky device).
            problems.extend(if again.is_empty() { in_stream } else { again });
        }
    }
    match broken {
        Some(e) if problems.is_empty() => Err(e),
        _ => Ok(problems),
    }
}

/// Which pieces of chunk `c` the stream hashes: all of them, except those lying wholly inside
/// the data of a stored segment of a blob being staged (`segs`), whose bytes are exactly the
/// blob's and are covered by its signed digest, checked before it counts as staged.
fn hashed_pieces(size: u64, piece_size: u64, segs: &[Seg]) -> Vec<bool> {
    let n = piece_count(size, piece_size);
    let mut hashed = vec![true; n as usize];
    for s in segs.iter().filter(|s| s.stored) {
        let end = s.offset + s.length;
        let mut k = s.offset.div_ceil(piece_size);
        while k < n {
            let (ps, pe) = piece_range(k, piece_size, size);
            if pe > end || ps >= pe {
                break;
            }
            hashed[k as usize] = false;
            k += 1;
        }
    }
    hashed
}

/// Reads chunk `index` once, feeding `segs` to their sinks. Its digests on their own thread:
/// for a version 3 chunk (pack's piece size), the piece digests of [`hashed_pieces`] only (one
/// SHA-256 pass over the blob bytes, not two); otherwise the whole chunk's SHA-256.
fn read_chunk(
    bundle: &Admitted,
    index: u32,
    segs: &[Seg],
    sinks: &mut Sinks<'_, '_>,
    progress: &dyn Progress,
) -> Result<Vec<crate::bundle::Problem>> {
    use crate::bundle::Problem;
    let m = bundle.manifest();
    let c = &m.chunks[index as usize];
    let path = bundle.chunk_path(index);
    let chunk = c.name.clone();
    if path.symlink_metadata().is_err() {
        return Ok(vec![Problem::MissingChunk { chunk }]);
    }
    let unreadable = |reason: String| Problem::UnreadableChunk {
        chunk: c.name.clone(),
        reason,
    };
    let mut f = match fsutil::open_regular(&path) {
        Ok(f) => f,
        Err(e) => return Ok(vec![unreadable(e.to_string())]),
    };
    let len = match f.metadata() {
        Ok(m) => m.len(),
        Err(e) => return Ok(vec![unreadable(e.to_string())]),
    };
    if len < c.size {
        return Ok(vec![Problem::TruncatedChunk {
            chunk,
            expected_size: c.size,
            actual_size: len,
        }]);
    }
    if len > c.size {
        return Ok(vec![Problem::OversizedChunk {
            chunk,
            expected_size: c.size,
            actual_size: len,
        }]);
    }
    let pool = Pool::new(4, BUF_SIZE);
    let by_pieces = !c.pieces.is_empty() && m.piece_size == DEFAULT_PIECE_SIZE;
    let hashed = if by_pieces {
        hashed_pieces(c.size, m.piece_size, segs)
    } else {
        Vec::new()
    };
    let hasher = if by_pieces {
        ChunkHash::Pieces(Worker::spawn("chunk-pieces"))
    } else {
        ChunkHash::Plain(Worker::spawn("chunk-sha256"))
    };
    let mut pos = 0u64;
    let mut next = 0usize;
    // A segment of this chunk whose bytes broke a rule: reported only if the chunk is intact.
    let mut broken: Option<Error> = None;
    while pos < c.size {
        interrupt::check()?;
        let mut buf = pool.take();
        buf.resize(BUF_SIZE.min((c.size - pos) as usize), 0);
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Ok(vec![unreadable(e.to_string())]),
        };
        buf.truncate(n);
        let buf = pool.share(buf);
        let end = pos + n as u64;
        // Feed every segment overlapping [pos, end).
        while next < segs.len() && segs[next].offset < end {
            let p = &segs[next];
            let i = p.sink as usize;
            let from = p.offset.max(pos);
            let to = (p.offset + p.length).min(end);
            if let Some(s) = sinks.open(i) {
                let mut done = Ok(());
                if from == p.offset {
                    done = s.start(p.segment as usize);
                }
                if done.is_ok() && from < to {
                    let slice = &buf[(from - pos) as usize..(to - pos) as usize];
                    if let Err(e) = s.feed(slice) {
                        // A write that failed (disk full, I/O) stops the import at once.
                        if e.exit_code() != crate::error::exit::REJECTED {
                            return Err(e);
                        }
                        if broken.is_none() {
                            broken = Some(Error::Corrupt(format!(
                                "{e} (in chunk {})",
                                escape_path(&path)
                            )));
                        }
                        done = Err(e);
                    }
                } else if done.is_ok() && p.length == 0 {
                    done = s.end_segment();
                }
                match done {
                    Ok(()) => sinks.settle(i),
                    Err(e) => sinks.fail(i, e),
                }
            }
            if to == p.offset + p.length {
                next += 1;
            } else {
                break;
            }
        }
        progress.inc(n as u64);
        match &hasher {
            ChunkHash::Plain(w) => w.update(buf),
            ChunkHash::Pieces(w) => {
                // The parts of [pos, end) in hashed pieces, in order.
                let first = pos / m.piece_size;
                let last = (end - 1) / m.piece_size;
                for k in first..=last {
                    if !hashed[k as usize] {
                        continue;
                    }
                    let (ps, pe) = piece_range(k, m.piece_size, c.size);
                    let (from, to) = (ps.max(pos), pe.min(end));
                    w.update_part(Arc::clone(&buf), (from - pos) as usize..(to - pos) as usize);
                }
            }
        }
        pos = end;
    }
    let (whole, pieces) = hasher
        .finish()
        .map_err(|e| Error::Other(format!("hashing chunk {}: {e}", c.name)))?;
    if pos < c.size {
        return Ok(vec![Problem::TruncatedChunk {
            chunk,
            expected_size: c.size,
            actual_size: pos,
        }]);
    }
    if by_pieces {
        // Named as verify names it: each damaged piece (the caller adds the chunk's digest).
        let mut found = Vec::new();
        let checked = (0..hashed.len()).filter(|&k| hashed[k]);
        for (k, got) in checked.zip(&pieces) {
            let want = &c.pieces[k];
            if want != got {
                let (start, end) = piece_range(k as u64, m.piece_size, c.size);
                found.push(Problem::CorruptPiece {
                    chunk: c.name.clone(),
                    piece: k as u64,
                    start,
                    end,
                    expected: want.to_string(),
                    actual: got.to_string(),
                    blobs: blobs_in(m, index, start, end),
                });
            }
        }
        if !found.is_empty() {
            return Ok(found);
        }
    } else if let Some(d) = whole.filter(|d| *d != c.sha256) {
        return Ok(vec![Problem::CorruptChunk {
            chunk,
            expected: c.sha256.to_string(),
            actual: d.to_string(),
        }]);
    }
    if let Some(e) = broken {
        return Err(e);
    }
    Ok(Vec::new())
}

/// The digests of the hashed pieces of a chunk, in order (every piece but the chunk's last is
/// whole, so a [`PieceHasher`] fed only their bytes yields exactly their digests).
#[derive(Clone)]
struct SomePieces(PieceHasher);

impl Default for SomePieces {
    fn default() -> SomePieces {
        SomePieces(PieceHasher::new(DEFAULT_PIECE_SIZE))
    }
}

impl hashpipe::Sink for SomePieces {
    type Out = Vec<crate::format::Digest>;
    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes)
    }
    fn finish(self) -> Vec<crate::format::Digest> {
        self.0.finish()
    }
}

/// The digests of a chunk being read: its SHA-256, or some of its piece digests.
enum ChunkHash {
    Plain(Worker<crate::format::Hasher>),
    Pieces(Worker<SomePieces>),
}

impl ChunkHash {
    /// The whole chunk's SHA-256 (`Plain`), or the hashed pieces' digests (`Pieces`).
    fn finish(&self) -> io::Result<(Option<crate::format::Digest>, Vec<crate::format::Digest>)> {
        match self {
            ChunkHash::Plain(w) => w.finish().map(|d| (Some(d), Vec::new())),
            ChunkHash::Pieces(w) => w.finish().map(|p| (None, p)),
        }
    }
}

fn escape_path(p: &Path) -> String {
    crate::format::text::escape(&p.display().to_string()).to_string()
}
