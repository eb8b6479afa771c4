//! Piece digests (format version 3): the SHA-256 of each fixed-size piece of a chunk, so that a
//! reader can check one chunk on every core, and name the byte range a damage hit.
//!
//! Piece `i` of a chunk of `size` bytes is the bytes `i * piece_size .. min((i + 1) * piece_size,
//! size)`; a chunk has `ceil(size / piece_size)` pieces. The piece size is a power of two between
//! [`MIN_PIECE_SIZE`] and [`MAX_PIECE_SIZE`]; writers use [`DEFAULT_PIECE_SIZE`] (FORMAT.md
//! §Version 3 says why 16 MiB). Pure: [`PieceHasher`] is fed bytes and returns digests.

use super::{Digest, Hasher};

/// The piece size writers use: 16 MiB.
pub const DEFAULT_PIECE_SIZE: u64 = 16 << 20;
/// Smallest piece size a manifest may declare (64 KiB, the smallest chunk size).
pub const MIN_PIECE_SIZE: u64 = 64 << 10;
/// Largest piece size a manifest may declare (1 GiB).
pub const MAX_PIECE_SIZE: u64 = 1 << 30;

/// Whether `piece_size` is one a manifest may declare.
pub fn valid_piece_size(piece_size: u64) -> bool {
    piece_size.is_power_of_two() && (MIN_PIECE_SIZE..=MAX_PIECE_SIZE).contains(&piece_size)
}

/// How many pieces a chunk of `size` bytes has.
pub fn piece_count(size: u64, piece_size: u64) -> u64 {
    size.div_ceil(piece_size)
}

/// The byte range `start..end` of piece `index` in a chunk of `size` bytes.
pub fn piece_range(index: u64, piece_size: u64, size: u64) -> (u64, u64) {
    let start = index.saturating_mul(piece_size).min(size);
    (start, start.saturating_add(piece_size).min(size))
}

/// Incremental piece digests of one chunk: feed its bytes in order, in any slicing.
#[derive(Clone)]
pub struct PieceHasher {
    piece_size: u64,
    filled: u64,
    current: Hasher,
    done: Vec<Digest>,
}

impl PieceHasher {
    /// `piece_size` must satisfy [`valid_piece_size`].
    pub fn new(piece_size: u64) -> PieceHasher {
        assert!(valid_piece_size(piece_size), "piece size {piece_size}");
        PieceHasher {
            piece_size,
            filled: 0,
            current: Hasher::new(),
            done: Vec::new(),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (self.piece_size - self.filled).min(data.len() as u64) as usize;
            self.current.update(&data[..take]);
            self.filled += take as u64;
            data = &data[take..];
            if self.filled == self.piece_size {
                let h = std::mem::take(&mut self.current);
                self.done.push(h.finish());
                self.filled = 0;
            }
        }
    }

    /// The digests, one per piece (the last one may be short; none for no bytes).
    pub fn finish(mut self) -> Vec<Digest> {
        if self.filled > 0 {
            self.done.push(self.current.finish());
        }
        self.done
    }
}

/// The piece digests of `data` (for chunks in memory, e.g. tests).
pub fn digests(data: &[u8], piece_size: u64) -> Vec<Digest> {
    let mut h = PieceHasher::new(piece_size);
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_any_feeding_agree() {
        let p = MIN_PIECE_SIZE;
        let data: Vec<u8> = (0..(3 * p + 100)).map(|i| (i * 31 % 251) as u8).collect();
        let want: Vec<Digest> = data.chunks(p as usize).map(Digest::of).collect();
        assert_eq!(want.len(), 4);
        assert_eq!(digests(&data, p), want);
        let mut h = PieceHasher::new(p);
        for part in data.chunks(7777) {
            h.update(part);
        }
        assert_eq!(h.finish(), want);
        assert_eq!(piece_count(data.len() as u64, p), 4);
        assert_eq!(piece_range(3, p, data.len() as u64), (3 * p, 3 * p + 100));
        assert_eq!(digests(&data[..p as usize], p).len(), 1);
        assert!(digests(&[], p).is_empty());
        assert!(valid_piece_size(DEFAULT_PIECE_SIZE));
        assert!(
            !valid_piece_size(3 << 20) && !valid_piece_size(1 << 15) && !valid_piece_size(2 << 30)
        );
    }
}
