//! Whether a blob is worth compressing: its magic number and a few samples.

use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil;

use super::{Origin, PlannedBlob};

/// Compress only when sampled data shrinks to this fraction or less.
const WORTH_IT: f64 = 0.85;
const SAMPLE: usize = 64 << 10;

/// Decides whether a blob is worth compressing, from its magic number and a few samples taken
/// away from the start (a safetensors header compresses; the tensors after it do not). Reads at
/// most four samples of 64 KiB, never the whole file.
pub fn worth_compressing(path: &Path, size: u64) -> Result<bool> {
    worth_compressing_at(path, 0, size)
}

fn worth_compressing_at(path: &Path, base: u64, size: u64) -> Result<bool> {
    if size < 4096 {
        return Ok(false);
    }
    use std::os::unix::fs::FileExt;
    let f = fsutil::open_regular(path)?;
    decide(size, |off, buf| {
        let mut n = 0;
        while n < buf.len() {
            match f.read_at(&mut buf[n..], base + off + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read", path, e)),
            }
        }
        Ok(n)
    })
    .map_err(|e| match e {
        Error::Other(m) => Error::Other(format!("{}: {m}", path.display())),
        e => e,
    })
}

/// The same decision over bytes in memory.
fn worth_compressing_bytes(data: &[u8]) -> bool {
    if data.len() < 4096 {
        return false;
    }
    decide(data.len() as u64, |off, buf| {
        let from = (off as usize).min(data.len());
        let n = buf.len().min(data.len() - from);
        buf[..n].copy_from_slice(&data[from..from + n]);
        Ok(n)
    })
    .unwrap_or(false)
}

/// Magic numbers of formats that are already dense, then zstd level 1 over samples at 1/8, 3/8,
/// 5/8 and 7/8 of the blob (one sample at 0 for a blob of at most 256 KiB).
fn decide(size: u64, mut read_at: impl FnMut(u64, &mut [u8]) -> Result<usize>) -> Result<bool> {
    let mut magic = [0u8; 8];
    if read_at(0, &mut magic)? < magic.len() {
        return Ok(false);
    }
    let known_dense: [&[u8]; 9] = [
        b"\x1f\x8b",           // gzip (container layers, .tar.gz)
        b"\x28\xb5\x2f\xfd",   // zstd
        b"\xfd7zXZ\x00",       // xz
        b"BZh",                // bzip2
        b"PK\x03\x04",         // zip, wheels, jars
        b"7z\xbc\xaf\x27\x1c", // 7z
        b"\x89PNG",            // png
        b"\xff\xd8\xff",       // jpeg
        b"GGUF",               // quantised weights
    ];
    if known_dense.iter().any(|m| magic.starts_with(m)) {
        return Ok(false);
    }
    let offsets: Vec<u64> = if size <= 4 * SAMPLE as u64 {
        vec![0]
    } else {
        (0..4)
            .map(|i| (size * (2 * i + 1) / 8).min(size - SAMPLE as u64))
            .collect()
    };
    let (mut raw, mut packed) = (0usize, 0usize);
    let mut buf = vec![0u8; SAMPLE.min(size as usize)];
    for off in offsets {
        let n = read_at(off, &mut buf)?;
        raw += n;
        packed += zstd::bulk::compress(&buf[..n], 1)
            .map_err(|e| Error::Other(format!("compressing a sample: {e}")))?
            .len();
    }
    Ok(raw > 0 && (packed as f64) <= WORTH_IT * raw as f64)
}

pub(super) fn should_compress(blob: &PlannedBlob, head: &[u8]) -> Result<bool> {
    let whole = head.len() as u64 == blob.size;
    match (blob.compress, &blob.origin) {
        (Some(c), _) => Ok(c && blob.size >= 4096),
        (None, Origin::Stream { .. }) => Ok(false),
        (None, Origin::Bytes(b)) => Ok(b.len() >= 4096),
        (None, _) if whole => Ok(worth_compressing_bytes(head)),
        (None, Origin::File { path, offset }) => worth_compressing_at(path, *offset, blob.size),
    }
}
