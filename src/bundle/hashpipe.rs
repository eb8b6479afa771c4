//! A SHA-256 that runs on its own thread, fed with owned buffers from a small bounded pool, so
//! that hashing a chunk overlaps with reading, hashing and writing the data going into it.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use crate::format::{Digest, Hasher};
use crate::fsutil::BUF_SIZE;

/// Buffers in flight at most: memory is bounded by `POOL * BUF_SIZE`.
const POOL: usize = 4;

pub struct HashPipe {
    tx: Option<SyncSender<Vec<u8>>>,
    back: Receiver<Vec<u8>>,
    handle: Option<JoinHandle<Digest>>,
}

impl HashPipe {
    pub fn new() -> HashPipe {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(POOL);
        let (back_tx, back) = mpsc::sync_channel::<Vec<u8>>(POOL);
        for _ in 0..POOL {
            back_tx
                .send(Vec::with_capacity(BUF_SIZE))
                .expect("pool fits the channel");
        }
        let handle = thread::spawn(move || {
            let mut h = Hasher::new();
            for mut buf in rx {
                h.update(&buf);
                if buf.capacity() >= BUF_SIZE {
                    buf.clear();
                    // The receiver may be gone when the writer failed; nothing to do then.
                    let _ = back_tx.send(buf);
                }
            }
            h.finish()
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

    /// Hashes `buf` (asynchronously); pool buffers come back through [`HashPipe::buffer`].
    pub fn update(&self, buf: Vec<u8>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(buf);
        }
    }

    pub fn finish(mut self) -> Digest {
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
            pipe.update(b);
        }
        pipe.update(b"tail".to_vec());
        let mut all = data.clone();
        all.extend_from_slice(b"tail");
        assert_eq!(pipe.finish(), Digest::of(&all));
    }
}
