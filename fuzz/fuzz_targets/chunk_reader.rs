//! The chunk reader (`bundle::reader::BlobReader`, the code `copy_blob` and every import target
//! use) over attacker-controlled chunk bytes and a blob description taken from the input.
//!
//! Input: `n` (1 byte, up to 8 segments), then per segment 14 bytes — chunk (1 byte, even =
//! chunk 0, odd = a chunk that does not exist), offset (u32 LE), length (u32 LE), encoding
//! (1 byte, odd = zstd), size (u32 LE, at most 1 MiB) — then the bytes of chunk 0.
//!
//! Checked: the reader never panics, never yields more bytes than the segments declare, and
//! when it accepts a blob the bytes are exactly the declared size, hash to the digest, and
//! stored segments are the chunk bytes verbatim.
#![no_main]

use std::io::Read;

use airlock::bundle::reader::BlobReader;
use airlock::format::{Blob, Digest, Encoding, Segment};
use libfuzzer_sys::fuzz_target;

const MAX_SEGMENTS: usize = 8;
const MAX_SEGMENT_SIZE: u64 = 1 << 20;

fn u32_at(b: &[u8]) -> u64 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64
}

/// Reads `blob` through a `BlobReader` in reads of varying sizes; returns what was read and
/// whether it ended cleanly, and the digest the bytes had if the only problem was the digest.
fn read_all(chunks: &[Vec<u8>], blob: &Blob, step: usize) -> (Vec<u8>, bool, Option<Digest>) {
    let declared: u64 = blob.segments.iter().map(|s| s.size).sum();
    let mut r = BlobReader::from_memory(chunks, blob);
    let mut out = Vec::new();
    let mut buf = vec![0u8; step];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, true, None),
            Ok(n) => {
                assert!(n <= buf.len());
                out.extend_from_slice(&buf[..n]);
                assert!(
                    out.len() as u64 <= declared,
                    "read {} bytes, {declared} declared",
                    out.len()
                );
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return (out, false, r.mismatch);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, mut rest)) = data.split_first() else {
        return;
    };
    let n = n as usize % (MAX_SEGMENTS + 1);
    let mut segments = Vec::new();
    for _ in 0..n {
        if rest.len() < 14 {
            return;
        }
        let (h, tail) = rest.split_at(14);
        rest = tail;
        segments.push(Segment {
            chunk: u32::from(h[0] & 1),
            offset: u32_at(&h[1..5]),
            length: u32_at(&h[5..9]),
            encoding: if h[9] & 1 == 1 {
                Encoding::Zstd
            } else {
                Encoding::None
            },
            size: u32_at(&h[10..14]).min(MAX_SEGMENT_SIZE),
        });
    }
    let chunks = vec![rest.to_vec()];
    let size = segments.iter().map(|s| s.size).sum();
    // Pass 1 with a digest nothing hashes to (all zeros); if the bytes were fine otherwise, the
    // reader reports what they hashed to, and pass 2 must accept them with that digest.
    let mut blob = Blob {
        digest: Digest::from_bytes([0; 32]),
        size,
        segments,
        external: None,
    };
    let step = 1 + (data.len() * 7919) % 70_000;
    let (first, ok, mismatch) = read_all(&chunks, &blob, step);
    if ok {
        // Only the empty blob could hash to all zeros: no SHA-256 preimage is known.
        unreachable!(
            "accepted a blob whose digest is all zeros ({} bytes)",
            first.len()
        );
    }
    let Some(actual) = mismatch else { return };
    assert_eq!(
        first.len() as u64,
        size,
        "digest checked before all bytes were read"
    );
    assert_eq!(Digest::of(&first), actual);
    blob.digest = actual;
    let (second, ok, _) = read_all(&chunks, &blob, 4096);
    assert!(ok, "the same bytes with their digest were refused");
    assert_eq!(first, second);
    // Stored segments are the chunk bytes verbatim; a zstd segment that decodes on its own
    // decodes to the same bytes.
    let mut pos = 0usize;
    for s in &blob.segments {
        let got = &second[pos..pos + s.size as usize];
        // The reader may have seen fewer than `length` bytes if the chunk ends early.
        let c = &chunks[0];
        let raw =
            &c[(s.offset as usize).min(c.len())..((s.offset + s.length) as usize).min(c.len())];
        match s.encoding {
            Encoding::None => assert_eq!(got, &raw[..s.size as usize]),
            Encoding::Zstd => {
                if let Ok(d) = zstd::bulk::decompress(raw, s.size as usize) {
                    assert_eq!(got, &d[..]);
                }
            }
        }
        pos += s.size as usize;
    }
});
