//! Step 5 of verification: every chunk present, of its exact size, with the bytes the manifest
//! signed; and the files present exactly the bundle's.
//!
//! Version 3 ([`check_chunks_v3`]): every piece of every chunk is hashed as its own task on all
//! cores (positional reads, so one 2 GiB chunk keeps every core busy), and each zstd segment's
//! frame is walked by offset, reading only its frame and block headers. Versions 1 and 2: one
//! sequential SHA-256 per chunk (chunks in parallel), the zstd frames checked as it streams by.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::format::pieces::{piece_count, piece_range};
use crate::format::text::escape;
use crate::format::zstdframe::FrameCheck;
use crate::format::{
    self, Digest, Hasher, Manifest, CHUNKS_DIR, MANIFEST_FILE, SIGNATURES_DIR, SIGNATURE_FILE,
    SUMS_FILE,
};
use crate::fsutil;
use crate::problem::Problem;
use crate::progress::{Progress, ProgressReader};

/// Size of one positional read while a piece is hashed.
const READ_SIZE: usize = 1 << 20;

/// Checks every chunk of a validated manifest in `dir` (sorted problems, none if all is well).
pub(super) fn check_chunks(
    dir: &Path,
    manifest: &Manifest,
    which: std::ops::Range<usize>,
    progress: &dyn Progress,
) -> Vec<Problem> {
    progress.start(
        "verifying chunks",
        manifest.chunks[which.clone()].iter().map(|c| c.size).sum(),
    );
    let problems = if manifest.version >= 3 {
        let all: Vec<u32> = (which.start as u32..which.end as u32).collect();
        check_chunks_v3(dir, manifest, &all, progress)
    } else {
        check_chunks_sequential(dir, manifest, progress)
    };
    progress.finish();
    problems
}

/// The zstd segments of each chunk, sorted by offset.
fn frames_by_chunk(manifest: &Manifest) -> Vec<Vec<FrameRef>> {
    let mut frames: Vec<Vec<FrameRef>> = vec![Vec::new(); manifest.chunks.len()];
    for b in &manifest.blobs {
        for (segment, s) in b.segments.iter().enumerate() {
            if s.encoding == format::Encoding::Zstd {
                frames[s.chunk as usize].push(FrameRef {
                    offset: s.offset,
                    length: s.length,
                    size: s.size,
                    blob: b.digest,
                    segment,
                });
            }
        }
    }
    for f in &mut frames {
        f.sort_unstable_by_key(|r| r.offset);
    }
    frames
}

fn check_chunks_sequential(
    dir: &Path,
    manifest: &Manifest,
    progress: &dyn Progress,
) -> Vec<Problem> {
    let chunks_dir = dir.join(CHUNKS_DIR);
    let frames = frames_by_chunk(manifest);
    let mut chunk_problems: Vec<(usize, Problem)> = manifest
        .chunks
        .par_iter()
        .enumerate()
        .filter_map(|(i, c)| {
            check_chunk(&chunks_dir.join(&c.name), c, &frames[i], progress).map(|p| (i, p))
        })
        .collect();
    chunk_problems.sort_by_key(|(i, _)| *i);
    chunk_problems.into_iter().map(|(_, p)| p).collect()
}

/// Opens a chunk and checks its size: the handle, or the problem.
// The error is the one problem the caller reports, not boxed.
#[allow(clippy::result_large_err)]
pub fn open_chunk(path: &Path, c: &format::Chunk) -> Result<File, Problem> {
    let chunk = c.name.clone();
    if path.symlink_metadata().is_err() {
        return Err(Problem::MissingChunk { chunk });
    }
    // Opened without following a link or blocking on a FIFO, and checked on the handle.
    let f = fsutil::open_regular(path).map_err(|e| Problem::UnreadableChunk {
        chunk: chunk.clone(),
        reason: e.to_string(),
    })?;
    let len = f
        .metadata()
        .map_err(|e| Problem::UnreadableChunk {
            chunk: chunk.clone(),
            reason: e.to_string(),
        })?
        .len();
    if len < c.size {
        return Err(Problem::TruncatedChunk {
            chunk,
            expected_size: c.size,
            actual_size: len,
        });
    }
    if len > c.size {
        return Err(Problem::OversizedChunk {
            chunk,
            expected_size: c.size,
            actual_size: len,
        });
    }
    Ok(f)
}

/// Version 3: the chunks `which` of a validated manifest in `dir`, every piece hashed as its
/// own task and every zstd frame walked by offset, all in parallel. Sorted problems.
pub fn check_chunks_v3(
    dir: &Path,
    manifest: &Manifest,
    which: &[u32],
    progress: &dyn Progress,
) -> Vec<Problem> {
    let chunks_dir = dir.join(CHUNKS_DIR);
    let mut problems: Vec<(u32, u64, Problem)> = Vec::new();
    let mut open: Vec<(u32, File)> = Vec::new();
    for &i in which {
        let c = &manifest.chunks[i as usize];
        match open_chunk(&chunks_dir.join(&c.name), c) {
            Ok(f) => open.push((i, f)),
            Err(p) => problems.push((i, 0, p)),
        }
    }
    let all: Vec<(u32, &File, Range<u64>)> = open
        .iter()
        .map(|(i, f)| {
            let c = &manifest.chunks[*i as usize];
            (*i, f, 0..piece_count(c.size, manifest.piece_size))
        })
        .collect();
    problems.extend(check_pieces(manifest, &all, progress));
    // A chunk with a damaged piece is also named by its whole digest, as the officer's
    // `sha256sum -c` sees it (one more sequential pass, only over damaged chunks).
    let hit: Vec<u32> = problems
        .iter()
        .filter(|(_, _, p)| matches!(p, Problem::CorruptPiece { .. }))
        .map(|(i, _, _)| *i)
        .collect::<std::collections::BTreeSet<u32>>()
        .into_iter()
        .collect();
    let whole: Vec<(u32, u64, Problem)> = hit
        .par_iter()
        .filter_map(|&i| {
            let c = &manifest.chunks[i as usize];
            let f = &open.iter().find(|(j, _)| *j == i)?.1;
            let d = hash_range(f, 0, c.size, &crate::progress::Silent).ok()?;
            (d != c.sha256).then(|| {
                let problem = Problem::CorruptChunk {
                    chunk: c.name.clone(),
                    expected: c.sha256.to_string(),
                    actual: d.to_string(),
                };
                (i, 0, problem)
            })
        })
        .collect();
    // Before the chunk's pieces (the sort below is stable).
    problems.splice(0..0, whole);
    // Frame rules, for the chunks whose bytes all matched (a damaged byte is reported once, as
    // the piece it hit).
    let damaged: HashSet<u32> = problems.iter().map(|(i, _, _)| *i).collect();
    let frames = frames_by_chunk(manifest);
    let jobs: Vec<(u32, &File, &FrameRef)> = open
        .iter()
        .filter(|(i, _)| !damaged.contains(i))
        .flat_map(|(i, f)| frames[*i as usize].iter().map(move |r| (*i, f, r)))
        .collect();
    let frame_problems: Vec<(u32, u64, Problem)> = jobs
        .par_iter()
        .filter_map(|&(i, f, r)| {
            walk_frame(f, r).err().map(|reason| {
                let problem = Problem::InvalidSegment {
                    chunk: manifest.chunks[i as usize].name.clone(),
                    blob: r.blob.to_string(),
                    segment: r.segment,
                    reason,
                };
                (i, r.offset, problem)
            })
        })
        .collect();
    problems.extend(frame_problems);
    problems.sort_by_key(|(i, at, _)| (*i, *at));
    problems.into_iter().map(|(_, _, p)| p).collect()
}

/// Hashes the pieces `pieces` of each `(chunk, handle, pieces)` on all cores against the
/// manifest's piece digests; `(chunk, piece start, problem)` for each one that does not match or
/// cannot be read (one read failure per chunk). The handles must be of the chunks' exact sizes
/// ([`open_chunk`]).
///
/// For the staged import: a caller that holds a chunk's handle can check any range of its
/// pieces this way, and one that streams a chunk once can instead feed the bytes to a
/// `format::pieces::PieceHasher` and compare with `Chunk::pieces`.
pub fn check_pieces(
    manifest: &Manifest,
    chunks: &[(u32, &File, Range<u64>)],
    progress: &dyn Progress,
) -> Vec<(u32, u64, Problem)> {
    let tasks: Vec<(u32, &File, u64)> = chunks
        .iter()
        .flat_map(|(i, f, r)| r.clone().map(move |p| (*i, *f, p)))
        .collect();
    let mut out: Vec<(u32, u64, Problem)> = tasks
        .par_iter()
        .filter_map(|&(i, f, p)| {
            let c = &manifest.chunks[i as usize];
            let (start, end) = piece_range(p, manifest.piece_size, c.size);
            let problem = match hash_range(f, start, end, progress) {
                Ok(d) if Some(&d) == c.pieces.get(p as usize) => return None,
                Ok(d) => Problem::CorruptPiece {
                    chunk: c.name.clone(),
                    piece: p,
                    start,
                    end,
                    expected: c
                        .pieces
                        .get(p as usize)
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    actual: d.to_string(),
                    blobs: blobs_in(manifest, i, start, end),
                },
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    Problem::TruncatedChunk {
                        chunk: c.name.clone(),
                        expected_size: c.size,
                        actual_size: start,
                    }
                }
                Err(e) => Problem::UnreadableChunk {
                    chunk: c.name.clone(),
                    reason: e.to_string(),
                },
            };
            Some((i, start, problem))
        })
        .collect();
    out.sort_by_key(|(i, at, _)| (*i, *at));
    let mut unreadable: HashSet<u32> = HashSet::new();
    out.retain(|(i, _, p)| matches!(p, Problem::CorruptPiece { .. }) || unreadable.insert(*i));
    out
}

/// The SHA-256 of `start..end` of `f`, by positional reads.
fn hash_range(f: &File, start: u64, end: u64, progress: &dyn Progress) -> std::io::Result<Digest> {
    let mut h = Hasher::new();
    let mut buf = vec![0u8; READ_SIZE.min((end - start) as usize)];
    let mut at = start;
    while at < end {
        let n = ((end - at) as usize).min(buf.len());
        f.read_exact_at(&mut buf[..n], at)?;
        h.update(&buf[..n]);
        progress.inc(n as u64);
        at += n as u64;
    }
    Ok(h.finish())
}

/// The blobs whose segment data overlaps `start..end` of chunk `chunk`.
pub(crate) fn blobs_in(manifest: &Manifest, chunk: u32, start: u64, end: u64) -> Vec<String> {
    manifest
        .blobs
        .iter()
        .filter(|b| {
            b.segments
                .iter()
                .any(|s| s.chunk == chunk && s.offset < end && start < s.offset + s.length)
        })
        .map(|b| b.digest.to_string())
        .collect()
}

/// Checks one zstd segment's frame by reading only its headers, by offset.
fn walk_frame(f: &File, r: &FrameRef) -> Result<(), String> {
    let mut check = FrameCheck::new(r.length, r.size);
    let mut buf = [0u8; 32];
    let mut pos = 0u64;
    while pos < r.length {
        let skip = check.skippable().min(r.length - pos);
        if skip > 0 {
            check.skip(skip);
            pos += skip;
            continue;
        }
        let n = ((r.length - pos) as usize).min(buf.len());
        f.read_exact_at(&mut buf[..n], r.offset + pos)
            .map_err(|e| format!("cannot read the frame: {e}"))?;
        check.feed(&buf[..n])?;
        pos += n as u64;
    }
    check.finish()
}

/// A zstd segment within a chunk.
#[derive(Clone)]
struct FrameRef {
    offset: u64,
    length: u64,
    size: u64,
    blob: Digest,
    segment: usize,
}

/// Passes a chunk's bytes through, checking the zstd frames of `frames` (sorted by offset) as
/// they go by; the first broken one is kept.
struct FrameScan<'a, R> {
    inner: R,
    frames: &'a [FrameRef],
    pos: u64,
    next: usize,
    current: Option<FrameCheck>,
    broken: Option<(usize, String)>,
}

impl<R: Read> FrameScan<'_, R> {
    fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.broken.is_none() {
            let idx = self.next;
            let Some(f) = self.frames.get(idx) else {
                return;
            };
            if self.pos < f.offset {
                let skip = (f.offset - self.pos).min(data.len() as u64);
                self.pos += skip;
                data = &data[skip as usize..];
                continue;
            }
            let end = f.offset + f.length;
            let take = (end - self.pos).min(data.len() as u64) as usize;
            let check = self
                .current
                .get_or_insert_with(|| FrameCheck::new(f.length, f.size));
            let mut result = check.feed(&data[..take]);
            self.pos += take as u64;
            data = &data[take..];
            if result.is_ok() && self.pos == end {
                result = check.finish();
                self.current = None;
                self.next += 1;
            }
            if let Err(reason) = result {
                self.broken = Some((idx, reason));
            }
        }
    }
}

impl<R: Read> Read for FrameScan<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n]);
        Ok(n)
    }
}

fn check_chunk(
    path: &Path,
    c: &format::Chunk,
    frames: &[FrameRef],
    progress: &dyn Progress,
) -> Option<Problem> {
    let chunk = c.name.clone();
    if path.symlink_metadata().is_err() {
        return Some(Problem::MissingChunk { chunk });
    }
    // Opened without following a link or blocking on a FIFO, and checked on the handle.
    let f = match fsutil::open_regular(path) {
        Ok(f) => f,
        Err(e) => {
            return Some(Problem::UnreadableChunk {
                chunk,
                reason: e.to_string(),
            })
        }
    };
    let meta = match f.metadata() {
        Ok(m) => m,
        Err(e) => {
            return Some(Problem::UnreadableChunk {
                chunk,
                reason: e.to_string(),
            })
        }
    };
    if meta.len() < c.size {
        return Some(Problem::TruncatedChunk {
            chunk,
            expected_size: c.size,
            actual_size: meta.len(),
        });
    }
    if meta.len() > c.size {
        return Some(Problem::OversizedChunk {
            chunk,
            expected_size: c.size,
            actual_size: meta.len(),
        });
    }
    let mut scan = FrameScan {
        inner: f.take(c.size),
        frames,
        pos: 0,
        next: 0,
        current: None,
        broken: None,
    };
    let reader = ProgressReader {
        inner: &mut scan,
        progress,
    };
    let hashed = fsutil::hash_reader(reader, path);
    if let (Ok((d, n)), Some((i, reason))) = (&hashed, scan.broken.take()) {
        if *n == c.size && *d == c.sha256 {
            let f = &frames[i];
            return Some(Problem::InvalidSegment {
                chunk,
                blob: f.blob.to_string(),
                segment: f.segment,
                reason,
            });
        }
    }
    match hashed {
        Ok((_, n)) if n != c.size => Some(Problem::TruncatedChunk {
            chunk,
            expected_size: c.size,
            actual_size: n,
        }),
        Ok((d, _)) if d != c.sha256 => Some(Problem::CorruptChunk {
            chunk,
            expected: c.sha256.to_string(),
            actual: d.to_string(),
        }),
        Ok(_) => None,
        Err(e) => Some(Problem::UnreadableChunk {
            chunk,
            reason: e.to_string(),
        }),
    }
}

/// Everything under `dir` that a bundle does not contain.
/// (`label`: a volume of a version 4 bundle, which carries its `VOLUME` label.)
pub(super) fn unexpected_files(
    dir: &Path,
    chunk_names: &HashSet<&str>,
    label: bool,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return problems;
    };
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in entries.filter_map(|e| e.ok()) {
        found.insert(e.file_name().to_string_lossy().into_owned(), e.path());
    }
    for (name, path) in found {
        let is_dir = path.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false);
        match name.as_str() {
            MANIFEST_FILE | SIGNATURE_FILE | SUMS_FILE => {}
            crate::format::volumes::LABEL_FILE if label => {}
            SIGNATURES_DIR if is_dir => {} // checked by signature_files
            CHUNKS_DIR if is_dir => {
                let mut inner: Vec<String> = fs::read_dir(&path)
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                inner.sort();
                for n in inner {
                    if !chunk_names.contains(n.as_str()) {
                        problems.push(Problem::UnexpectedFile {
                            path: format!("{CHUNKS_DIR}/{n}"),
                        });
                    }
                }
            }
            _ => problems.push(Problem::UnexpectedFile { path: name }),
        }
    }
    problems
}

/// A chunk's presence, kind and size, from its metadata alone (no link followed).
pub(super) fn stat_chunk(path: &Path, c: &format::Chunk) -> Option<Problem> {
    let chunk = c.name.clone();
    let m = match fs::symlink_metadata(path) {
        Err(_) => return Some(Problem::MissingChunk { chunk }),
        Ok(m) => m,
    };
    if !m.is_file() {
        return Some(Problem::UnreadableChunk {
            chunk,
            reason: format!(
                "{} is {}, not a regular file",
                escape(&path.display().to_string()),
                fsutil::file_kind(&m.file_type())
            ),
        });
    }
    match m.len() {
        n if n < c.size => Some(Problem::TruncatedChunk {
            chunk,
            expected_size: c.size,
            actual_size: n,
        }),
        n if n > c.size => Some(Problem::OversizedChunk {
            chunk,
            expected_size: c.size,
            actual_size: n,
        }),
        _ => None,
    }
}
