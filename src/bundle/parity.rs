//! Reed–Solomon parity volumes (FORMAT.md §Version 4, Parity): written by pack over the data
//! volumes' chunk streams, and used to rebuild missing or damaged chunks.
//!
//! The scheme (`reed-solomon-gf16`): data volume k's **stream** is its chunk files
//! concatenated in order, zero-padded to `P` ([`Manifest::parity_stream_len`]). Stripe `s` is
//! bytes `[s*block, min((s+1)*block, P))` of every stream; each stripe is coded on its own with
//! `reed-solomon-simd` (the D data volumes' stripe bytes are the original shards, in volume
//! order; the N parity volumes' stream bytes of that stripe are the recovery shards). Each
//! parity volume's stream is cut into chunks of `min(max_chunk, remaining)` bytes. Memory is
//! bounded by one stripe of every volume (`(D+N) × block`) and the stripes in flight.
//!
//! Both directions run on two threads: one reads and codes, the other writes and hashes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use super::hashpipe::{ChunkHashers, Sink};
use crate::error::{Error, Result};
use crate::format::volumes::{
    parity_chunk_name, volume_dir_name, MAX_PARITY_BLOCK, MIN_PARITY_BLOCK, PARITY_ALIGN,
    PARITY_SCHEME,
};
use crate::format::{Chunk, Manifest, Parity, CHUNKS_DIR};
use crate::fsutil;
use crate::problem::Problem;
use crate::progress::Progress;

/// What pack lets one stripe of every volume take: `(D + N) × block` at most this.
pub const STRIPE_BUDGET: u64 = 256 << 20;
/// Writeback is started every this many bytes written to a parity or rebuilt chunk.
const KICK: u64 = 8 << 20;
/// Stripes in flight between the coding thread and the writing thread.
const IN_FLIGHT: usize = 2;

/// The stripe pack chooses: the largest power of two in 64 KiB..=16 MiB with
/// `volumes × block ≤ 256 MiB`, and no larger than needed for a stream of `stream` bytes.
pub fn choose_block(volumes: u64, stream: u64) -> u64 {
    let mut b = MAX_PARITY_BLOCK;
    while b > MIN_PARITY_BLOCK && (volumes * b > STRIPE_BUDGET || b / 2 >= stream) {
        b /= 2;
    }
    b
}

/// One chunk file within a volume's stream.
#[derive(Debug, Clone)]
struct Piece {
    index: usize,
    start: u64,
    size: u64,
}

impl Piece {
    fn end(&self) -> u64 {
        self.start + self.size
    }
}

/// The pieces of one stream, in order.
fn stream_of(sizes: impl Iterator<Item = (usize, u64)>) -> Vec<Piece> {
    let mut at = 0;
    sizes
        .map(|(index, size)| {
            let p = Piece {
                index,
                start: at,
                size,
            };
            at += size;
            p
        })
        .collect()
}

/// Reads stream bytes from a volume's chunk files (positional reads; the last file kept open).
struct StreamReader<'a> {
    dir: PathBuf,
    pieces: &'a [Piece],
    names: &'a dyn Fn(usize) -> String,
    open: Option<(usize, File, PathBuf)>,
}

impl StreamReader<'_> {
    /// Fills `buf` with stream bytes from `at` (zeros past the stream's end).
    fn read(&mut self, at: u64, buf: &mut [u8]) -> Result<()> {
        buf.fill(0);
        let end = at + buf.len() as u64;
        let first = self.pieces.partition_point(|p| p.end() <= at);
        for p in &self.pieces[first..] {
            if p.start >= end {
                break;
            }
            let from = p.start.max(at);
            let to = p.end().min(end);
            if self.open.as_ref().map(|o| o.0) != Some(p.index) {
                let path = self.dir.join(CHUNKS_DIR).join((self.names)(p.index));
                let f = fsutil::open_regular(&path)?;
                self.open = Some((p.index, f, path));
            }
            let (_, f, path) = self.open.as_ref().expect("opened above");
            f.read_exact_at(
                &mut buf[(from - at) as usize..(to - at) as usize],
                from - p.start,
            )
            .map_err(|e| Error::io("read chunk", path, e))?;
        }
        Ok(())
    }
}

fn coding_error(e: reed_solomon_simd::Error) -> Error {
    Error::Other(format!("internal error: Reed–Solomon coding: {e}"))
}

/// A chunk file being written: created exclusively, hashed as written, writeback started as it
/// goes, synced when complete.
struct OutChunk {
    path: PathBuf,
    file: File,
    hash: ChunkHashers,
    written: u64,
    kicked: u64,
}

impl OutChunk {
    fn create(path: PathBuf) -> Result<OutChunk> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create chunk", &path, e))?;
        Ok(OutChunk {
            path,
            file,
            hash: ChunkHashers::default(),
            written: 0,
            kicked: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io("write chunk", &self.path, e))?;
        self.hash.update(bytes);
        self.written += bytes.len() as u64;
        if self.written - self.kicked >= KICK {
            fsutil::start_writeback(&self.file, self.kicked, self.written - self.kicked);
            self.kicked = self.written;
        }
        Ok(())
    }

    fn finish(self) -> Result<super::hashpipe::ChunkSums> {
        self.file
            .sync_all()
            .map_err(|e| Error::io("sync chunk", &self.path, e))?;
        Ok(self.hash.finish())
    }
}

/// Writes `parity` parity volumes (`ROOT/vol-NNN/chunks/NNNNNNNN.par`, numbered after the data
/// volumes and their chunks) over the data volumes whose chunks are `chunks` (`counts[k]` of
/// them on data volume k + 1), in parity chunks of at most `max_chunk` bytes. Returns the
/// manifest's parity record and the parity chunks (sizes and digests, in manifest order).
pub fn write_parity(
    root: &Path,
    chunks: &[Chunk],
    counts: &[u32],
    max_chunk: u64,
    parity: u32,
    progress: &dyn Progress,
) -> Result<(Parity, Vec<Chunk>)> {
    write_parity_striped(root, chunks, counts, max_chunk, parity, None, progress)
}

/// [`write_parity`] with the stripe given (tests: several stripes over small streams).
fn write_parity_striped(
    root: &Path,
    chunks: &[Chunk],
    counts: &[u32],
    max_chunk: u64,
    parity: u32,
    block: Option<u64>,
    progress: &dyn Progress,
) -> Result<(Parity, Vec<Chunk>)> {
    let d = counts.len();
    let n = parity as usize;
    if d == 0 || n == 0 || max_chunk == 0 {
        return Err(Error::Usage(
            "parity needs at least one data volume and one parity volume".into(),
        ));
    }
    let mut streams = Vec::with_capacity(d);
    let mut next = 0usize;
    for &c in counts {
        let range = next..next + c as usize;
        next = range.end;
        streams.push(stream_of(range.map(|i| (i, chunks[i].size))));
    }
    let longest = streams
        .iter()
        .map(|s| s.last().map_or(0, Piece::end))
        .max()
        .unwrap_or(0);
    let p = longest.div_ceil(PARITY_ALIGN) * PARITY_ALIGN;
    let block = block.unwrap_or_else(|| choose_block((d + n) as u64, p));
    let mut sizes = Vec::new();
    let mut left = p;
    while left > 0 {
        let s = left.min(max_chunk);
        sizes.push(s);
        left -= s;
    }
    let data_chunks = next;
    let mut dirs = Vec::with_capacity(n);
    for j in 0..n {
        let dir = root
            .join(volume_dir_name((d + 1 + j) as u32))
            .join(CHUNKS_DIR);
        fsutil::create_dir_all(&dir)?;
        dirs.push(dir);
    }
    let names = |i: usize| chunks[i].name.clone();
    progress.start("writing parity", p * n as u64);
    let result = std::thread::scope(|scope| -> Result<Vec<Chunk>> {
        let (tx, rx) = mpsc::sync_channel::<Vec<Vec<u8>>>(IN_FLIGHT);
        let (back_tx, back_rx) = mpsc::sync_channel::<Vec<Vec<u8>>>(IN_FLIGHT + 2);
        let sizes = &sizes;
        let dirs = &dirs;
        let writer = scope.spawn(move || -> Result<Vec<Chunk>> {
            let per = sizes.len();
            let mut done: Vec<Vec<Chunk>> = vec![Vec::new(); n];
            let mut open: Vec<Option<OutChunk>> = (0..n).map(|_| None).collect();
            for stripe in rx {
                for (j, bytes) in stripe.iter().enumerate() {
                    let mut rest = &bytes[..];
                    while !rest.is_empty() {
                        let c = done[j].len();
                        let index = data_chunks + j * per + c;
                        if open[j].is_none() {
                            open[j] =
                                Some(OutChunk::create(dirs[j].join(parity_chunk_name(index)))?);
                        }
                        let out = open[j].as_mut().expect("opened above");
                        let take = ((sizes[c] - out.written) as usize).min(rest.len());
                        out.write(&rest[..take])?;
                        rest = &rest[take..];
                        if out.written == sizes[c] {
                            let sums = open[j].take().expect("open").finish()?;
                            done[j].push(Chunk {
                                name: parity_chunk_name(index),
                                size: sizes[c],
                                sha256: sums.sha256,
                                pieces: sums.pieces,
                            });
                        }
                    }
                    progress.inc(bytes.len() as u64);
                }
                let _ = back_tx.try_send(stripe);
            }
            Ok(done.into_iter().flatten().collect())
        });
        let code = || -> Result<()> {
            let mut readers: Vec<StreamReader> = streams
                .iter()
                .enumerate()
                .map(|(k, s)| StreamReader {
                    dir: root.join(volume_dir_name(k as u32 + 1)),
                    pieces: s,
                    names: &names,
                    open: None,
                })
                .collect();
            let mut encoder: Option<ReedSolomonEncoder> = None;
            let mut shard = vec![0u8; block.min(p) as usize];
            let mut at = 0u64;
            while at < p {
                crate::interrupt::check()?;
                let len = block.min(p - at) as usize;
                match &mut encoder {
                    None => {
                        encoder = Some(ReedSolomonEncoder::new(d, n, len).map_err(coding_error)?)
                    }
                    Some(e) => e.reset(d, n, len).map_err(coding_error)?,
                }
                let enc = encoder.as_mut().expect("made above");
                for r in &mut readers {
                    r.read(at, &mut shard[..len])?;
                    enc.add_original_shard(&shard[..len])
                        .map_err(coding_error)?;
                }
                let coded = enc.encode().map_err(coding_error)?;
                let mut out = back_rx.try_recv().unwrap_or_default();
                out.resize_with(n, Vec::new);
                for (j, o) in out.iter_mut().enumerate() {
                    o.clear();
                    o.extend_from_slice(coded.recovery(j).expect("n recovery shards"));
                }
                drop(coded);
                if tx.send(out).is_err() {
                    break; // the writer failed: its error is returned
                }
                at += len as u64;
            }
            Ok(())
        };
        let coded = code();
        drop(tx);
        let written = writer.join().expect("parity writer does not panic");
        coded?;
        written
    });
    progress.finish();
    let parity_chunks = result?;
    for dir in &dirs {
        fsutil::sync_dir(dir)?;
    }
    Ok((
        Parity {
            scheme: PARITY_SCHEME.to_string(),
            volumes: parity,
            block,
            chunks: sizes.len() as u32,
        },
        parity_chunks,
    ))
}

/// What [`rebuild_volumes`] (or a repair) rebuilt.
#[derive(Debug, Clone, Default, serde::Serialize, schemars::JsonSchema)]
pub struct Rebuilt {
    /// The volumes rebuilt whole (1-based).
    pub volumes: Vec<u32>,
    /// The chunks rebuilt, each verified against its signed digests.
    pub chunks: Vec<String>,
    /// Bytes of chunks rebuilt.
    pub bytes: u64,
}

/// A rebuild of chunks from the other volumes of their stripes.
pub struct Job<'a> {
    pub manifest: &'a Manifest,
    /// Where each volume (index n - 1) is; `None`: not given.
    pub dirs: Vec<Option<PathBuf>>,
    /// Chunks known missing or damaged where they are (not used as sources).
    pub damaged: BTreeSet<usize>,
    /// Chunks to rebuild (each also unavailable as a source).
    pub targets: BTreeSet<usize>,
    /// The directory each rebuilt chunk of volume n goes to (its `chunks/` is created).
    pub out: &'a (dyn Fn(u32) -> PathBuf + Sync),
}

/// The layout of every stream of a bundle with parity.
struct Streams {
    d: usize,
    n: usize,
    p: u64,
    block: u64,
    /// The pieces of every volume's stream (data, then parity).
    pieces: Vec<Vec<Piece>>,
}

impl Streams {
    fn of(m: &Manifest) -> Option<Streams> {
        let v = m.volumes.as_ref()?;
        let par = v.parity.as_ref()?;
        let pieces = (1..=m.volume_count())
            .map(|vol| stream_of(m.volume_chunks(vol).map(|i| (i, m.chunks[i].size))))
            .collect();
        Some(Streams {
            d: v.data.len(),
            n: par.volumes as usize,
            p: m.parity_stream_len(),
            block: par.block,
            pieces,
        })
    }

    fn stripe(&self, s: u64) -> (u64, u64) {
        let a = s * self.block;
        (a, (a + self.block).min(self.p))
    }

    /// The pieces of volume `v` (0-based) overlapping `[a, b)`.
    fn overlapping(&self, v: usize, a: u64, b: u64) -> &[Piece] {
        let ps = &self.pieces[v];
        let first = ps.partition_point(|p| p.end() <= a);
        let last = ps.partition_point(|p| p.start < b);
        &ps[first..last.max(first)]
    }
}

/// Rebuilds the job's target chunks: every stripe they cover is decoded from any D available
/// shards of it (a shard is available when its volume is given and no chunk of it in that
/// stripe is damaged or a target; a data volume's bytes past its end are zeros, always known),
/// each target written to `out(volume)/chunks/NAME`, hashed and checked against its signed
/// digests. Nothing is written when some target cannot be rebuilt: the error names each one
/// (`unrecoverable-chunk`, exit 3). A rebuilt chunk whose digest does not match (a source
/// chunk not known to be damaged was) is named the same way, after the others were written.
// Shards are indexed by volume throughout (original and recovery alike).
#[allow(clippy::needless_range_loop)]
pub fn rebuild(job: &Job, bundle_dir: &Path, progress: &dyn Progress) -> Result<Rebuilt> {
    let m = job.manifest;
    let reject = |problems: Vec<Problem>| Error::Rejected {
        dir: bundle_dir.to_path_buf(),
        problems,
    };
    if job.targets.is_empty() {
        return Ok(Rebuilt::default());
    }
    let Some(st) = Streams::of(m) else {
        return Err(reject(
            job.targets
                .iter()
                .map(|&i| Problem::Unrecoverable {
                    chunk: m.chunks[i].name.clone(),
                    volume: m.volume_of(i),
                    reason: "the bundle has no parity volumes".into(),
                })
                .collect(),
        ));
    };
    let vol_of: Vec<usize> = (0..m.chunks.len())
        .map(|i| m.volume_of(i) as usize - 1)
        .collect();
    let offset: HashMap<usize, u64> = st
        .pieces
        .iter()
        .flatten()
        .map(|p| (p.index, p.start))
        .collect();
    let unavailable = |i: usize| job.damaged.contains(&i) || job.targets.contains(&i);
    // The stripes to code, and whether each can be: any D shards known.
    let mut stripes: BTreeMap<u64, Vec<bool>> = BTreeMap::new();
    let mut failed: BTreeMap<usize, String> = BTreeMap::new();
    for &t in &job.targets {
        let (start, size) = (offset[&t], m.chunks[t].size);
        if size == 0 {
            continue;
        }
        for s in start / st.block..=(start + size - 1) / st.block {
            if stripes.contains_key(&s) {
                continue;
            }
            let (a, b) = st.stripe(s);
            let avail: Vec<bool> = (0..st.d + st.n)
                .map(|v| {
                    let over = st.overlapping(v, a, b);
                    over.is_empty()
                        || (job.dirs[v].is_some() && over.iter().all(|p| !unavailable(p.index)))
                })
                .collect();
            stripes.insert(s, avail);
        }
    }
    for (&s, avail) in &stripes {
        let known = avail.iter().filter(|&&x| x).count();
        if known < st.d {
            let (a, b) = st.stripe(s);
            let lost: Vec<String> = (0..st.d + st.n)
                .filter(|&v| !avail[v])
                .map(|v| (v + 1).to_string())
                .collect();
            for v in 0..st.d + st.n {
                for p in st.overlapping(v, a, b) {
                    if job.targets.contains(&p.index) {
                        failed.entry(p.index).or_insert_with(|| {
                            format!(
                                "volumes {} of its parity stripe are missing or damaged; {} parity volume(s) can rebuild at most {}",
                                lost.join(", "),
                                st.n,
                                st.n
                            )
                        });
                    }
                }
            }
        }
    }
    if !failed.is_empty() {
        return Err(reject(
            failed
                .into_iter()
                .map(|(i, reason)| Problem::Unrecoverable {
                    chunk: m.chunks[i].name.clone(),
                    volume: m.volume_of(i),
                    reason,
                })
                .collect(),
        ));
    }
    let total: u64 = job.targets.iter().map(|&i| m.chunks[i].size).sum();
    let mut out_dirs: BTreeSet<u32> = BTreeSet::new();
    for &t in &job.targets {
        out_dirs.insert(vol_of[t] as u32 + 1);
    }
    for &v in &out_dirs {
        fsutil::create_dir_all(&(job.out)(v).join(CHUNKS_DIR))?;
    }
    progress.start("rebuilding chunks", total);
    let names = |i: usize| m.chunks[i].name.clone();
    type Part = (usize, Vec<u8>);
    let result = std::thread::scope(|scope| -> Result<Vec<Problem>> {
        let (tx, rx) = mpsc::sync_channel::<Vec<Part>>(IN_FLIGHT);
        let writer = scope.spawn(move || -> Result<Vec<Problem>> {
            let mut open: HashMap<usize, OutChunk> = HashMap::new();
            let mut bad = Vec::new();
            for parts in rx {
                for (i, bytes) in parts {
                    let c = &m.chunks[i];
                    if let std::collections::hash_map::Entry::Vacant(e) = open.entry(i) {
                        let dir = (job.out)(vol_of[i] as u32 + 1).join(CHUNKS_DIR);
                        e.insert(OutChunk::create(dir.join(&c.name))?);
                    }
                    let o = open.get_mut(&i).expect("opened above");
                    o.write(&bytes)?;
                    progress.inc(bytes.len() as u64);
                    if o.written == c.size {
                        let sums = open.remove(&i).expect("open").finish()?;
                        if sums.sha256 != c.sha256 || (!c.pieces.is_empty() && sums.pieces != c.pieces) {
                            bad.push(Problem::Unrecoverable {
                                chunk: c.name.clone(),
                                volume: vol_of[i] as u32 + 1,
                                reason: format!(
                                    "the rebuilt bytes hash to {}, the manifest signed {}: a chunk of another volume in its parity stripe is damaged (check every volume with airlock verify)",
                                    sums.sha256.hex(),
                                    c.sha256.hex()
                                ),
                            });
                        }
                    }
                }
            }
            // Empty targets (none in practice: chunks are never empty) are made here.
            for &t in &job.targets {
                if m.chunks[t].size == 0 {
                    let dir = (job.out)(vol_of[t] as u32 + 1).join(CHUNKS_DIR);
                    OutChunk::create(dir.join(&m.chunks[t].name))?.finish()?;
                }
            }
            Ok(bad)
        });
        let code = || -> Result<()> {
            let mut readers: Vec<Option<StreamReader>> = (0..st.d + st.n)
                .map(|v| {
                    job.dirs[v].as_ref().map(|dir| StreamReader {
                        dir: dir.clone(),
                        pieces: &st.pieces[v],
                        names: &names,
                        open: None,
                    })
                })
                .collect();
            let mut shards: Vec<Vec<u8>> = vec![Vec::new(); st.d + st.n];
            for (&s, avail) in &stripes {
                crate::interrupt::check()?;
                let (a, b) = st.stripe(s);
                let len = (b - a) as usize;
                // Which shards to read: every available original, recovery ones to make up D.
                let missing_orig = (0..st.d).filter(|&v| !avail[v]).count();
                let parity_wanted = (st.d..st.d + st.n).any(|v| {
                    st.overlapping(v, a, b)
                        .iter()
                        .any(|p| job.targets.contains(&p.index))
                });
                let mut use_rec = Vec::new();
                for v in st.d..st.d + st.n {
                    if use_rec.len() < missing_orig && avail[v] {
                        use_rec.push(v);
                    }
                }
                for v in (0..st.d).chain(use_rec.iter().copied()) {
                    if !avail[v] {
                        continue;
                    }
                    shards[v].resize(len, 0);
                    match &mut readers[v] {
                        Some(r) => r.read(a, &mut shards[v])?,
                        // Not given, but nothing of it in this stripe: zeros.
                        None => shards[v].fill(0),
                    }
                }
                if missing_orig > 0 {
                    let mut dec = ReedSolomonDecoder::new(st.d, st.n, len).map_err(coding_error)?;
                    for v in 0..st.d {
                        if avail[v] {
                            dec.add_original_shard(v, &shards[v])
                                .map_err(coding_error)?;
                        }
                    }
                    for &v in &use_rec {
                        dec.add_recovery_shard(v - st.d, &shards[v])
                            .map_err(coding_error)?;
                    }
                    let res = dec.decode().map_err(coding_error)?;
                    for v in 0..st.d {
                        if !avail[v] {
                            let r = res.restored_original(v).expect("restored");
                            shards[v].clear();
                            shards[v].extend_from_slice(r);
                        }
                    }
                }
                if parity_wanted {
                    let mut enc = ReedSolomonEncoder::new(st.d, st.n, len).map_err(coding_error)?;
                    for v in 0..st.d {
                        enc.add_original_shard(&shards[v]).map_err(coding_error)?;
                    }
                    let res = enc.encode().map_err(coding_error)?;
                    for j in 0..st.n {
                        let v = st.d + j;
                        shards[v].clear();
                        shards[v].extend_from_slice(res.recovery(j).expect("n recovery shards"));
                    }
                }
                let mut parts = Vec::new();
                for v in 0..st.d + st.n {
                    for p in st.overlapping(v, a, b) {
                        if job.targets.contains(&p.index) {
                            let from = (p.start.max(a) - a) as usize;
                            let to = (p.end().min(b) - a) as usize;
                            parts.push((p.index, shards[v][from..to].to_vec()));
                        }
                    }
                }
                if tx.send(parts).is_err() {
                    break;
                }
            }
            Ok(())
        };
        let coded = code();
        drop(tx);
        let written = writer.join().expect("rebuild writer does not panic");
        coded?;
        written
    });
    progress.finish();
    let bad = result?;
    for &v in &out_dirs {
        fsutil::sync_dir(&(job.out)(v).join(CHUNKS_DIR))?;
    }
    if !bad.is_empty() {
        return Err(reject(bad));
    }
    let whole: Vec<u32> = (1..=m.volume_count())
        .filter(|&v| {
            let r = m.volume_chunks(v);
            !r.is_empty() && r.clone().all(|i| job.targets.contains(&i))
        })
        .collect();
    Ok(Rebuilt {
        volumes: whole,
        chunks: job
            .targets
            .iter()
            .map(|&i| m.chunks[i].name.clone())
            .collect(),
        bytes: total,
    })
}

/// Rebuilds the data volumes `volumes` of `bundle` (not located: missing) from the volumes
/// located and the parity volumes, into `scratch/vol-NNN/chunks/`, verifies every rebuilt chunk
/// against the signed manifest, and locates the rebuilt volumes there
/// ([`crate::bundle::VerifiedBundle::relocate`]). Names the chunks that cannot be rebuilt
/// (`unrecoverable-chunk`); then nothing is written. The chunks read as sources are not hashed
/// first: a damaged one shows as a rebuilt chunk that fails its digest (named the same way).
pub fn rebuild_volumes(
    bundle: &mut crate::bundle::VerifiedBundle,
    volumes: &[u32],
    scratch: &Path,
    progress: &dyn Progress,
) -> Result<Rebuilt> {
    let m = bundle.manifest();
    let dirs: Vec<Option<PathBuf>> = (1..=m.volume_count())
        .map(|n| {
            if volumes.contains(&n) {
                None
            } else {
                bundle.volume_dir(n).map(Path::to_path_buf)
            }
        })
        .collect();
    let targets: BTreeSet<usize> = volumes.iter().flat_map(|&n| m.volume_chunks(n)).collect();
    let out = |n: u32| scratch.join(volume_dir_name(n));
    let job = Job {
        manifest: m,
        dirs,
        damaged: BTreeSet::new(),
        targets,
        out: &out,
    };
    let rebuilt = rebuild(&job, bundle.dir(), progress)?;
    for &n in volumes {
        bundle.relocate(n, scratch.join(volume_dir_name(n)));
    }
    Ok(Rebuilt {
        volumes: volumes.to_vec(),
        ..rebuilt
    })
}

/// A scratch directory for chunks rebuilt during an import (`<state>/rebuild-<bundle_id>/`),
/// removed when dropped: the import ends, successfully or not.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `<state_dir>/rebuild-<bundle_id>/`, removing one a killed run left behind.
    pub fn create(state_dir: &Path, bundle_id: &str) -> Result<Scratch> {
        let path = state_dir.join(format!("rebuild-{bundle_id}"));
        if path.symlink_metadata().is_ok() {
            std::fs::remove_dir_all(&path)
                .map_err(|e| Error::io("remove stale rebuild directory", &path, e))?;
        }
        fsutil::create_dir_all(&path)?;
        Ok(Scratch { path })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The import's repair step: when data volumes the import needs are missing and the bundle has
/// parity volumes, rebuilds them into a [`Scratch`] under the state directory and locates them
/// there. `Ok(None)` when nothing is missing; keep the scratch alive until the import ends.
pub fn rebuild_for_import(
    bundle: &mut crate::bundle::VerifiedBundle,
    missing: &[u32],
    state_dir: &Path,
    progress: &dyn Progress,
) -> Result<Option<(Rebuilt, Scratch)>> {
    if missing.is_empty() {
        return Ok(None);
    }
    let scratch = Scratch::create(state_dir, &bundle.manifest().bundle_id.clone())?;
    let rebuilt = rebuild_volumes(bundle, missing, scratch.path(), progress)?;
    Ok(Some((rebuilt, scratch)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Digest, Volumes};
    use crate::progress::Silent as NoProgress;

    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Data volumes of the given chunk sizes written under `root`, parity over them, and the
    /// manifest that describes the lot (only what the parity code reads).
    fn bundle(root: &Path, volumes: &[&[usize]], parity: u32, max_chunk: u64) -> Manifest {
        bundle_striped(root, volumes, parity, max_chunk, None)
    }

    fn bundle_striped(
        root: &Path,
        volumes: &[&[usize]],
        parity: u32,
        max_chunk: u64,
        block: Option<u64>,
    ) -> Manifest {
        let mut chunks = Vec::new();
        let mut counts = Vec::new();
        for (k, sizes) in volumes.iter().enumerate() {
            let dir = root.join(volume_dir_name(k as u32 + 1)).join(CHUNKS_DIR);
            std::fs::create_dir_all(&dir).unwrap();
            for &size in sizes.iter() {
                let i = chunks.len();
                let data = bytes(size, i as u64 + 7);
                let name = crate::format::chunk_name(i);
                std::fs::write(dir.join(&name), &data).unwrap();
                chunks.push(Chunk {
                    name,
                    size: size as u64,
                    sha256: Digest::of(&data),
                    pieces: crate::format::pieces::digests(
                        &data,
                        crate::format::pieces::DEFAULT_PIECE_SIZE,
                    ),
                });
            }
            counts.push(sizes.len() as u32);
        }
        let (par, pchunks) = write_parity_striped(
            root,
            &chunks,
            &counts,
            max_chunk,
            parity,
            block,
            &NoProgress,
        )
        .unwrap();
        assert_eq!(par.scheme, PARITY_SCHEME);
        assert_eq!(pchunks.len() as u32, par.chunks * parity);
        chunks.extend(pchunks);
        Manifest {
            format: crate::format::FORMAT_NAME.into(),
            version: 4,
            bundle_id: "0".repeat(32),
            channel: "default".into(),
            sequence: 1,
            created: "2026-01-01T00:00:00Z".into(),
            expires: None,
            generator: "test".into(),
            chunk_size: max_chunk,
            piece_size: crate::format::pieces::DEFAULT_PIECE_SIZE,
            artifacts: Vec::new(),
            blobs: Vec::new(),
            chunks,
            bases: Vec::new(),
            volumes: Some(Volumes {
                size: 1 << 40,
                data: counts,
                parity: Some(par),
            }),
        }
    }

    /// Removes `lost` (chunk indices) and rebuilds them into `out`, compared byte for byte.
    fn lose_and_rebuild(root: &Path, m: &Manifest, lost: &[usize], missing_volumes: &[u32]) {
        let out_root = root.join("rebuilt");
        let mut keep = std::collections::HashMap::new();
        for &i in lost {
            let p = root
                .join(volume_dir_name(m.volume_of(i)))
                .join(CHUNKS_DIR)
                .join(&m.chunks[i].name);
            keep.insert(i, std::fs::read(&p).unwrap());
            std::fs::remove_file(&p).unwrap();
        }
        let dirs = (1..=m.volume_count())
            .map(|n| (!missing_volumes.contains(&n)).then(|| root.join(volume_dir_name(n))))
            .collect();
        let out = |n: u32| out_root.join(volume_dir_name(n));
        let job = Job {
            manifest: m,
            dirs,
            damaged: BTreeSet::new(),
            targets: lost.iter().copied().collect(),
            out: &out,
        };
        let r = rebuild(&job, root, &NoProgress).unwrap();
        assert_eq!(r.chunks.len(), lost.len());
        for &i in lost {
            let got = std::fs::read(out(m.volume_of(i)).join(CHUNKS_DIR).join(&m.chunks[i].name))
                .unwrap();
            assert_eq!(got, keep[&i], "chunk {i}");
        }
        std::fs::remove_dir_all(&out_root).unwrap();
        for (i, data) in keep {
            let p = root
                .join(volume_dir_name(m.volume_of(i)))
                .join(CHUNKS_DIR)
                .join(&m.chunks[i].name);
            std::fs::write(p, data).unwrap();
        }
    }

    #[test]
    fn volumes_of_different_lengths_and_a_short_last_stripe() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // P = 3 × 100,001 rounded up to 64, in one stripe (pack's choice); the third volume is
        // much shorter than the first (zeros past its end).
        let m = bundle(
            root,
            &[&[100_001, 100_001, 100_001], &[70_000, 1], &[5]],
            1,
            64 << 10,
        );
        let p = m.parity_stream_len();
        assert_eq!(p, 300_032);
        let par = m.volumes.as_ref().unwrap().parity.as_ref().unwrap();
        assert_eq!(par.block, 512 << 10, "no larger than the stream needs");
        // Each parity chunk at most max_chunk; they sum to P.
        let sizes: Vec<u64> = m.chunks[m.volume_chunks(4)]
            .iter()
            .map(|c| c.size)
            .collect();
        assert_eq!(sizes.iter().sum::<u64>(), p);
        assert!(sizes.iter().all(|&s| s <= 64 << 10));
        // Any one volume rebuilt whole, data or parity; single chunks anywhere.
        for v in 1..=4u32 {
            let lost: Vec<usize> = m.volume_chunks(v).collect();
            lose_and_rebuild(root, &m, &lost, &[v]);
        }
        lose_and_rebuild(root, &m, &[1], &[]);
        lose_and_rebuild(root, &m, &[0, 2], &[]);
        // Two volumes lost with one parity volume: named, nothing written.
        let dirs = vec![
            Some(root.join("vol-001")),
            None,
            None,
            Some(root.join("vol-004")),
        ];
        let out_root = root.join("nothing");
        let out = |n: u32| out_root.join(volume_dir_name(n));
        let job = Job {
            manifest: &m,
            dirs,
            damaged: BTreeSet::new(),
            targets: [3, 4, 5].into_iter().collect(),
            out: &out,
        };
        match rebuild(&job, root, &NoProgress) {
            Err(Error::Rejected { problems, .. }) => {
                assert!(!problems.is_empty());
                assert!(problems
                    .iter()
                    .all(|p| matches!(p, Problem::Unrecoverable { .. })));
            }
            other => panic!("expected unrecoverable chunks, got {other:?}"),
        }
        assert!(!out_root.exists(), "nothing written");
    }

    #[test]
    fn small_stripes_many_volumes_and_two_parity() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // 633,344-byte streams in 64 KiB stripes (the last one 43,520 bytes), two parity
        // volumes, odd chunk sizes straddling stripes.
        let m = bundle_striped(
            root,
            &[&[300_000, 333_333], &[633_334], &[1, 2, 3, 600_000]],
            2,
            200_000,
            Some(64 << 10),
        );
        assert_eq!(m.parity_stream_len(), 633_344);
        assert_eq!(m.parity_stream_len() % (64 << 10), 43_520);
        lose_and_rebuild(
            root,
            &m,
            &m.volume_chunks(1)
                .chain(m.volume_chunks(3))
                .collect::<Vec<_>>(),
            &[1, 3],
        );
        lose_and_rebuild(
            root,
            &m,
            &m.volume_chunks(2)
                .chain(m.volume_chunks(5))
                .collect::<Vec<_>>(),
            &[2, 5],
        );
        lose_and_rebuild(root, &m, &[0, 2], &[]);
        lose_and_rebuild(root, &m, &[1, 3, 6], &[]);
    }

    #[test]
    fn one_data_volume() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let m = bundle(root, &[&[65_537, 64]], 1, 1 << 20);
        // With D = 1 the parity stream is the data stream, zero-padded.
        let data: Vec<u8> = m
            .volume_chunks(1)
            .flat_map(|i| {
                std::fs::read(root.join("vol-001/chunks").join(&m.chunks[i].name)).unwrap()
            })
            .collect();
        let par = std::fs::read(root.join("vol-002/chunks").join(&m.chunks[2].name)).unwrap();
        assert_eq!(par.len() as u64, m.parity_stream_len());
        assert_eq!(&par[..data.len()], &data[..]);
        assert!(par[data.len()..].iter().all(|&b| b == 0));
        lose_and_rebuild(root, &m, &[0, 1], &[1]);
        lose_and_rebuild(root, &m, &[2], &[2]);
    }

    #[test]
    fn block_choice() {
        assert_eq!(choose_block(4, 1 << 40), 16 << 20);
        assert_eq!(choose_block(40, 1 << 40), 4 << 20);
        assert_eq!(choose_block(999, 1 << 40), 256 << 10);
        assert_eq!(choose_block(4, 1000), 64 << 10);
        assert_eq!(choose_block(4, 300 << 10), 512 << 10);
        for v in 2..999u64 {
            let b = choose_block(v, 1 << 40);
            assert!(b.is_power_of_two() && (MIN_PARITY_BLOCK..=MAX_PARITY_BLOCK).contains(&b));
            assert!(v * b <= STRIPE_BUDGET.max(v * MIN_PARITY_BLOCK));
        }
    }
}
