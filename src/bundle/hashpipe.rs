//! A SHA-256 that runs on its own thread, fed with owned buffers from a small bounded pool, so
//! that hashing a chunk overlaps with reading, hashing and writing the data going into it.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use crate::format::pieces::{PieceHasher, DEFAULT_PIECE_SIZE};
use crate::format::{Digest, Hasher};
use crate::fsutil::BUF_SIZE;

/// Buffers in flight at most: memory is bounded by `POOL * BUF_SIZE`.
const POOL: usize = 4;

/// A piece of data to hash: a pool buffer (returned to the pool afterwards) or any other bytes.
enum Piece {
    Pooled(Vec<u8>),
    Owned(Vec<u8>),
}

pub struct HashPipe {
    tx: Option<SyncSender<Piece>>,
    back: Receiver<Vec<u8>>,
    handle: Option<JoinHandle<(Digest, Vec<Digest>)>>,
}

impl HashPipe {
    pub fn new() -> HashPipe {
        let (tx, rx) = mpsc::sync_channel::<Piece>(POOL);
        let (back_tx, back) = mpsc::sync_channel::<Vec<u8>>(POOL);
        for _ in 0..POOL {
            back_tx
                .send(Vec::with_capacity(BUF_SIZE))
                .expect("pool fits the channel");
        }
        let handle = thread::spawn(move || {
            let mut h = Hasher::new();
            // Format v3: the chunk's piece digests, from the same bytes (fmt).
            let mut p = PieceHasher::new(DEFAULT_PIECE_SIZE);
            for piece in rx {
                match piece {
                    Piece::Owned(bytes) => {
                        h.update(&bytes);
                        p.update(&bytes);
                    }
                    Piece::Pooled(mut buf) => {
                        h.update(&buf);
                        p.update(&buf);
                        buf.clear();
                        // At most POOL pool buffers exist, so this never blocks; the receiver
                        // may be gone when the writer failed, and then there is nothing to do.
                        let _ = back_tx.send(buf);
                    }
                }
            }
            (h.finish(), p.finish())
        });
        HashPipe {
            tx: Some(tx),
            back,
            handle: Some(handle),
        }
    }

    /// An empty buffer of capacity `BUF_SIZE` from the pool (blocks while all are in flight).
    pub fn buffer(&self) -> Vec<u8> {
        self.back
            .recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUF_SIZE))
    }

    /// Hashes a buffer obtained from [`HashPipe::buffer`] (asynchronously); it returns to the pool.
    pub fn update_pooled(&self, buf: Vec<u8>) {
        self.send(Piece::Pooled(buf));
    }

    /// Hashes other bytes (asynchronously).
    pub fn update(&self, bytes: Vec<u8>) {
        self.send(Piece::Owned(bytes));
    }

    fn send(&self, piece: Piece) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(piece);
        }
    }

    /// The chunk's SHA-256 and its piece digests.
    pub fn finish(mut self) -> (Digest, Vec<Digest>) {
        drop(self.tx.take());
        self.handle
            .take()
            .expect("finish once")
            .join()
            .expect("hash thread does not panic")
    }
}

impl Drop for HashPipe {
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
    fn matches_a_plain_hash() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let pipe = HashPipe::new();
        for piece in data.chunks(BUF_SIZE) {
            let mut b = pipe.buffer();
            b.extend_from_slice(piece);
            pipe.update_pooled(b);
        }
        pipe.update(vec![9u8; 3 * BUF_SIZE]);
        pipe.update(b"tail".to_vec());
        let mut all = data.clone();
        all.extend_from_slice(&vec![9u8; 3 * BUF_SIZE]);
        all.extend_from_slice(b"tail");
        let (d, pieces) = pipe.finish();
        assert_eq!(d, Digest::of(&all));
        assert_eq!(
            pieces,
            crate::format::pieces::digests(&all, DEFAULT_PIECE_SIZE)
        );
    }
}
