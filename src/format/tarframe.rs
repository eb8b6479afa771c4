//! Chunk framing: each chunk is a plain POSIX (ustar) tar archive, so stock `tar` lists and
//! extracts it. Each entry holds one blob segment, stored raw or as one zstd frame.
//!
//! Readers never parse these headers: they read segment data at the offsets the signed manifest
//! gives. The headers exist for stock tools and humans.

/// Size of a tar header block.
pub const BLOCK: u64 = 512;
/// The end-of-archive marker: two zero blocks.
pub const TRAILER: u64 = 2 * BLOCK;

/// Bytes of padding after `len` data bytes to reach a block boundary.
pub fn padding(len: u64) -> u64 {
    (BLOCK - len % BLOCK) % BLOCK
}

/// A ustar header for a regular-file entry `name` of `size` bytes.
pub fn entry_header(name: &str, size: u64, mtime: u64) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)
        .expect("segment entry names are short ASCII");
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = [0u8; 512];
    out.copy_from_slice(h.as_bytes());
    out
}

/// Largest amount of data (a multiple of [`BLOCK`]) an entry starting at `pos` can hold so that
/// the chunk, with its trailer, stays within `limit` bytes. Zero when nothing more fits.
pub fn room_at(pos: u64, limit: u64) -> u64 {
    let avail = limit.saturating_sub(pos + BLOCK + TRAILER);
    avail - avail % BLOCK
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn stock_tar_reader_sees_our_entries() {
        let mut chunk = Vec::new();
        for (name, data) in [
            ("blobs/sha256/aa.0000", &b"hello"[..]),
            ("blobs/sha256/bb.0000", &[7u8; 1024][..]),
        ] {
            chunk.extend_from_slice(&entry_header(name, data.len() as u64, 1_700_000_000));
            chunk.extend_from_slice(data);
            chunk.resize(chunk.len() + padding(data.len() as u64) as usize, 0);
        }
        chunk.resize(chunk.len() + TRAILER as usize, 0);
        let mut ar = tar::Archive::new(&chunk[..]);
        let mut seen = vec![];
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut buf = vec![];
            e.read_to_end(&mut buf).unwrap();
            seen.push((e.path().unwrap().to_string_lossy().into_owned(), buf.len()));
        }
        assert_eq!(
            seen,
            vec![
                ("blobs/sha256/aa.0000".to_string(), 5),
                ("blobs/sha256/bb.0000".to_string(), 1024)
            ]
        );
    }

    #[test]
    fn room_respects_the_limit() {
        assert_eq!(room_at(0, 64 * 1024), 64 * 1024 - 1536);
        assert_eq!(room_at(0, 1536), 0);
        assert_eq!(room_at(0, 2047), 0);
        assert_eq!(room_at(0, 2048), 512);
    }
}
