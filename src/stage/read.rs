//! The one pass over the media: each needed chunk read whole, once, its digests on their own
//! thread, its segments decoded and hashed into their blobs' staging files. Every byte read is
//! covered by a signed digest before anything commits: a version 3 chunk's pieces that lie
//! wholly inside a stored segment of a blob being staged by that blob's SHA-256 (their bytes are
//! the blob's), every other piece by its piece digest; a version 1/2 chunk by its whole SHA-256.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use super::sink::{Sinks, Slot};
use super::Admitted;
use crate::bundle::hashpipe::{self, Pool, Worker};
use crate::bundle::verify::chunks::{blobs_in, check_chunks_v3};
use crate::error::{Error, Result};
use crate::format::pieces::{piece_count, piece_range, PieceHasher, DEFAULT_PIECE_SIZE};
use crate::fsutil::{self, BUF_SIZE};
use crate::interrupt;
use crate::progress::Progress;

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
    let mut done = 0u64;
    // Version 3 chunks with a damaged piece, re-checked below as verify checks them.
    let mut suspects = std::collections::BTreeSet::new();
    let mut in_stream = Vec::new();
    // The first content error of an intact chunk (a segment that does not decode, a blob that
    // does not hash to its digest): reported only if no chunk is damaged, which explains it.
    let mut broken = None;
    for (c, mut segs) in by_chunk {
        segs.sort_by_key(|p| p.offset);
        if !bundle.chunk_ready(c) {
            // A prompt for the next volume: the bar is put away, and comes back after it.
            progress.finish();
            bundle.before_chunk(c)?;
            progress.start("reading the bundle", total);
            progress.inc(done);
        }
        done += m.chunks[c as usize].size;
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
            // Each chunk is checked in its own volume's directory (one directory below v4).
            let mut by_dir: BTreeMap<std::path::PathBuf, Vec<u32>> = BTreeMap::new();
            for c in suspects {
                let path = bundle.chunk_path(c);
                let dir = path
                    .parent()
                    .and_then(Path::parent)
                    .unwrap_or(bundle.dir())
                    .to_path_buf();
                by_dir.entry(dir).or_default().push(c);
            }
            let again: Vec<crate::bundle::Problem> = by_dir
                .iter()
                .flat_map(|(dir, which)| check_chunks_v3(dir, m, which, &crate::progress::Silent))
                .collect();
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
