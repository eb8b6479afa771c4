//! Digests computed on their own threads while the writer reads and writes: one worker for the
//! blob's SHA-256, one for the chunk's digests ([`ChunkSums`]). Data travels as shared,
//! read-only buffers ([`Shared`]) from a small bounded [`Pool`]: a buffer read once from the
//! source is written to the chunk and hashed by both workers, and returns to the pool when the
//! last of them is done with it, so memory stays bounded by the pool (`POOL` buffers) plus the
//! workers' queues.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::format::pieces::{PieceHasher, DEFAULT_PIECE_SIZE};
use crate::format::{Digest, Hasher};
use crate::fsutil::BUF_SIZE;

/// Pieces a worker's queue holds at most (pool buffers, headers, compressed frames).
const QUEUE: usize = 8;

/// Bytes shared between the writer and the hash workers. A pool buffer goes home when the last
/// reference drops.
pub struct Buf {
    data: Vec<u8>,
    home: Option<SyncSender<Vec<u8>>>,
}

impl Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            let mut data = std::mem::take(&mut self.data);
            data.clear();
            // At most as many pool buffers exist as the channel holds, so this never blocks;
            // the pool may be gone when the writer failed, and then there is nothing to do.
            let _ = home.try_send(data);
        }
    }
}

pub type Shared = Arc<Buf>;

/// Bytes that do not come from a pool (headers, padding, frames).
pub fn owned(data: Vec<u8>) -> Shared {
    Arc::new(Buf { data, home: None })
}

/// A fixed set of reusable buffers of one capacity.
pub struct Pool {
    back: Receiver<Vec<u8>>,
    home: SyncSender<Vec<u8>>,
    capacity: usize,
}

impl Pool {
    pub fn new(count: usize, capacity: usize) -> Pool {
        let (home, back) = mpsc::sync_channel(count);
        for _ in 0..count {
            home.send(Vec::with_capacity(capacity))
                .expect("the pool fits its channel");
        }
        Pool {
            back,
            home,
            capacity,
        }
    }

    /// An empty buffer (blocks while every buffer is in flight).
    pub fn take(&self) -> Vec<u8> {
        self.back
            .recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.capacity))
    }

    /// Shares a buffer from [`Pool::take`]; it comes back when the last holder drops it.
    pub fn share(&self, data: Vec<u8>) -> Shared {
        Arc::new(Buf {
            data,
            home: Some(self.home.clone()),
        })
    }
}

/// What a worker computes over the bytes it is fed, in order.
pub trait Sink: Default + Send + 'static {
    type Out: Send + 'static;
    fn update(&mut self, bytes: &[u8]);
    fn finish(self) -> Self::Out;
}

impl Sink for Hasher {
    type Out = Digest;
    fn update(&mut self, bytes: &[u8]) {
        Hasher::update(self, bytes)
    }
    fn finish(self) -> Digest {
        Hasher::finish(self)
    }
}

/// The digests of one chunk, computed over its bytes as they are written.
///
/// This is the one place a per-chunk digest is fed: a further digest of chunk bytes (the
/// format's piece digests) is one more field here, updated in [`ChunkHashers::update`] and
/// finished in [`ChunkHashers::finish`].
pub struct ChunkHashers {
    sha256: Hasher,
    /// The format's piece digests (version 3), over the same bytes.
    pieces: PieceHasher,
}

impl Default for ChunkHashers {
    fn default() -> ChunkHashers {
        ChunkHashers {
            sha256: Hasher::new(),
            pieces: PieceHasher::new(DEFAULT_PIECE_SIZE),
        }
    }
}

/// What [`ChunkHashers`] yields for a closed chunk.
pub struct ChunkSums {
    pub sha256: Digest,
    pub pieces: Vec<Digest>,
}

impl Sink for ChunkHashers {
    type Out = ChunkSums;
    fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.pieces.update(bytes);
    }
    fn finish(self) -> ChunkSums {
        ChunkSums {
            sha256: self.sha256.finish(),
            pieces: self.pieces.finish(),
        }
    }
}

enum Msg<S: Sink> {
    Data(Shared),
    /// Bytes `start..end` of a shared buffer.
    Part(Shared, usize, usize),
    /// Bytes `start..end` of a file this process wrote (and will not change again).
    ReadBack(PathBuf, u64, u64),
    Finish(SyncSender<io::Result<S::Out>>),
}

/// A thread that feeds what it is sent into a fresh `S` until asked for the result, then
/// starts over: one thread for the whole pack, not one per blob or chunk.
pub struct Worker<S: Sink> {
    tx: Option<SyncSender<Msg<S>>>,
    handle: Option<JoinHandle<()>>,
}

impl<S: Sink> Worker<S> {
    pub fn spawn(name: &str) -> Worker<S> {
        let (tx, rx) = mpsc::sync_channel::<Msg<S>>(QUEUE);
        let handle = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut sink = S::default();
                let mut failed: Option<io::Error> = None;
                let mut buf = Vec::new();
                for msg in rx {
                    match msg {
                        Msg::Data(bytes) => sink.update(&bytes),
                        Msg::Part(bytes, start, end) => sink.update(&bytes[start..end]),
                        Msg::ReadBack(path, start, end) => {
                            if failed.is_none() {
                                if let Err(e) = read_back(&path, start, end, &mut buf, &mut sink) {
                                    failed = Some(e);
                                }
                            }
                        }
                        Msg::Finish(reply) => {
                            let out = std::mem::take(&mut sink).finish();
                            let _ = reply.send(match failed.take() {
                                None => Ok(out),
                                Some(e) => Err(e),
                            });
                        }
                    }
                }
            })
            .expect("spawn a hash thread");
        Worker {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// Queues bytes (blocks while the queue is full).
    pub fn update(&self, bytes: Shared) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Data(bytes));
        }
    }

    /// Queues bytes `range` of a shared buffer (no copy).
    pub fn update_part(&self, bytes: Shared, range: std::ops::Range<usize>) {
        assert!(range.start <= range.end && range.end <= bytes.len());
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Part(bytes, range.start, range.end));
        }
    }

    /// Queues bytes `start..end` of `path`, read back from the file by the worker.
    pub fn read_back(&self, path: PathBuf, start: u64, end: u64) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::ReadBack(path, start, end));
        }
    }

    /// The result over everything queued since the last call (an error if reading back failed);
    /// the worker starts over.
    pub fn finish(&self) -> io::Result<S::Out> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.tx
            .as_ref()
            .expect("worker running")
            .send(Msg::Finish(reply))
            .expect("hash thread running");
        rx.recv().expect("hash thread does not panic")
    }
}

fn read_back<S: Sink>(
    path: &Path,
    start: u64,
    end: u64,
    buf: &mut Vec<u8>,
    sink: &mut S,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = File::open(path)?;
    buf.resize(BUF_SIZE, 0);
    let mut at = start;
    while at < end {
        let want = (end - at).min(BUF_SIZE as u64) as usize;
        let n = f.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is shorter than written", path.display()),
            ));
        }
        sink.update(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

impl<S: Sink> Drop for Worker<S> {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_hash_and_starts_over() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let pool = Pool::new(4, BUF_SIZE);
        let chunk: Worker<ChunkHashers> = Worker::spawn("test-chunk");
        let blob: Worker<Hasher> = Worker::spawn("test-blob");
        for round in 0..2 {
            for piece in data.chunks(BUF_SIZE) {
                let mut b = pool.take();
                b.extend_from_slice(piece);
                let shared = pool.share(b);
                chunk.update(shared.clone());
                blob.update(shared);
            }
            chunk.update(owned(b"tail".to_vec()));
            let mut all = data.clone();
            all.extend_from_slice(b"tail");
            assert_eq!(
                chunk.finish().unwrap().sha256,
                Digest::of(&all),
                "round {round}"
            );
            assert_eq!(blob.finish().unwrap(), Digest::of(&data), "round {round}");
        }
        // Bytes read back from a file, between streamed ones.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        chunk.update(owned(b"head".to_vec()));
        chunk.read_back(path.clone(), 7, data.len() as u64);
        chunk.update(owned(b"tail".to_vec()));
        let mut all = b"head".to_vec();
        all.extend_from_slice(&data[7..]);
        all.extend_from_slice(b"tail");
        assert_eq!(chunk.finish().unwrap().sha256, Digest::of(&all));
        chunk.read_back(path, 0, data.len() as u64 + 1);
        assert!(chunk.finish().is_err(), "a short file is an error");
        // Every pool buffer came home.
        for _ in 0..4 {
            assert!(pool.take().capacity() >= BUF_SIZE);
        }
    }
}
