//! Files of N bytes for tests: deterministic incompressible bytes, a repeated pattern, or
//! zeros, written in 1 MiB pieces (so N may be far larger than memory).

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// What a blob is made of.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // a shared helper: not every test uses every kind
pub enum Fill<'a> {
    /// Deterministic incompressible bytes from this seed (the same as
    /// [`super::pseudo_random`] for the same length and seed).
    Random(u64),
    /// This pattern repeated (compressible).
    Pattern(&'a [u8]),
    Zeros,
}

/// Writes `len` bytes of `fill` to `path` (parents created); returns `path`.
pub fn write_blob_file(path: &Path, len: u64, fill: Fill) -> std::path::PathBuf {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    const PIECE: usize = 1 << 20;
    let mut buf = vec![0u8; PIECE];
    let mut x = match fill {
        Fill::Random(seed) => seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        _ => 0,
    };
    let mut written = 0u64;
    while written < len {
        let n = PIECE.min((len - written) as usize);
        match fill {
            Fill::Random(_) => {
                for b in &mut buf[..n] {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = (x >> 24) as u8;
                }
            }
            Fill::Pattern(p) => {
                assert!(!p.is_empty(), "an empty pattern");
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = p[((written as usize) + i) % p.len()];
                }
            }
            Fill::Zeros => buf[..n].fill(0),
        }
        f.write_all(&buf[..n]).unwrap();
        written += n as u64;
    }
    f.sync_all().unwrap();
    path.to_path_buf()
}

impl super::Env {
    /// A file `rel` in the workspace of `len` bytes of `fill`.
    pub fn blob(&self, rel: &str, len: u64, fill: Fill) -> std::path::PathBuf {
        write_blob_file(&self.path(rel), len, fill)
    }
}

/// A tar layer holding `files` (regular files, mode 644, mtime 0), as image tests build them.
pub fn layer_tar(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append(&h, &content[..]).unwrap();
    }
    tar.into_inner().unwrap()
}
