//! Reads blobs back out of a verified bundle, re-checking each blob's size and SHA-256 as it
//! streams (the chunks could change on the media between verification and import).

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::verify::VerifiedBundle;
use crate::blob::BlobSource;
use crate::error::{Error, Result};
use crate::format::zstdframe::{FrameCheck, WINDOW_LOG_MAX};
use crate::format::{Blob, Digest, Encoding, Hasher};
use crate::fsutil::{self, BUF_SIZE};
use crate::progress::Progress;

type Decoded<'a> = io::Take<Box<dyn Read + Send + 'a>>;

/// Where a blob reader finds the chunks its segments point into.
#[derive(Clone, Copy)]
enum Chunks<'a> {
    /// The chunk files of a verified bundle.
    Bundle(&'a VerifiedBundle),
    /// Chunk contents in memory, indexed like the manifest's `chunks` (fuzzing and tests).
    Memory(&'a [Vec<u8>]),
}

impl Chunks<'_> {
    /// Names chunk `index` in messages.
    fn name(&self, index: u32) -> String {
        match self {
            Chunks::Bundle(b) => b.chunk_path(index).display().to_string(),
            Chunks::Memory(_) => format!("in-memory chunk {index}"),
        }
    }

    /// Names the bundle in messages.
    fn bundle_name(&self) -> String {
        match self {
            Chunks::Bundle(b) => b.dir().display().to_string(),
            Chunks::Memory(_) => "in memory".into(),
        }
    }
}

/// The raw bytes of a zstd segment on their way into the decoder, checked against the frame
/// rules `verify` applies ([`FrameCheck`]): the same refusal, with the same reason, if the media
/// changed after verification.
struct CheckedFrame<R> {
    inner: R,
    check: FrameCheck,
}

impl<R: Read> Read for CheckedFrame<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let checked = if n == 0 {
            self.check.finish()
        } else {
            self.check.feed(&buf[..n])
        };
        checked.map_err(|reason| io::Error::new(io::ErrorKind::InvalidData, reason))?;
        Ok(n)
    }
}

/// A reader over the decoded bytes of one blob. It fails (`InvalidData`, naming the blob, the
/// segment and the chunk) instead of reaching EOF if a segment is short, decodes to more or
/// fewer bytes than declared, or the whole does not hash to the blob's digest. A decompression
/// bomb stops one byte past the declared size.
pub struct BlobReader<'a> {
    chunks: Chunks<'a>,
    blob: &'a Blob,
    next: usize,
    /// The open segment: its index, its decoded bytes, how many were read so far.
    current: Option<(usize, Decoded<'a>, u64)>,
    hasher: Option<Hasher>,
    /// Set when the bytes read did not hash to the blob's digest: what they hashed to.
    pub mismatch: Option<Digest>,
}

impl<'a> BlobReader<'a> {
    pub fn new(bundle: &'a VerifiedBundle, blob: &'a Blob) -> BlobReader<'a> {
        BlobReader::with_chunks(Chunks::Bundle(bundle), blob)
    }

    /// A reader over chunks held in memory (`chunks[i]` is chunk `i`), with every check
    /// [`BlobReader::new`] makes. For fuzzing and tests: `blob` is taken as given, so bound its
    /// sizes as [`crate::format::Manifest::validate`] would.
    #[doc(hidden)]
    pub fn from_memory(chunks: &'a [Vec<u8>], blob: &'a Blob) -> BlobReader<'a> {
        BlobReader::with_chunks(Chunks::Memory(chunks), blob)
    }

    fn with_chunks(chunks: Chunks<'a>, blob: &'a Blob) -> BlobReader<'a> {
        BlobReader {
            chunks,
            blob,
            next: 0,
            current: None,
            hasher: Some(Hasher::new()),
            mismatch: None,
        }
    }

    fn fail(&self, i: usize, what: String) -> io::Error {
        let seg = &self.blob.segments[i];
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "blob {} segment {i} in {}: {what}",
                self.blob.digest,
                self.chunks.name(seg.chunk)
            ),
        )
    }

    fn open_segment(&mut self, i: usize) -> io::Result<()> {
        let seg = &self.blob.segments[i];
        let name = self.chunks.name(seg.chunk);
        let ctx = |op: &str, e: io::Error| io::Error::new(e.kind(), format!("{op} {name}: {e}"));
        let raw: Box<dyn Read + Send + 'a> = match self.chunks {
            Chunks::Bundle(bundle) => {
                // Never through a link, never blocking on a FIFO swapped in after verification:
                // anything but the regular file verified is content that changed (InvalidData).
                let path = bundle.chunk_path(seg.chunk);
                // A link or a non-regular file (open_regular's own refusals) is content that
                // changed; a missing chunk or an I/O error (EACCES, EIO, EMFILE) stays operational.
                let mut f = fsutil::open_regular(&path).map_err(|e| {
                    let kind = match &e {
                        crate::error::Error::Io { source, .. } => match source.kind() {
                            io::ErrorKind::Other => io::ErrorKind::InvalidData,
                            k => k,
                        },
                        _ => io::ErrorKind::Other,
                    };
                    io::Error::new(kind, e.to_string())
                })?;
                f.seek(SeekFrom::Start(seg.offset))
                    .map_err(|e| ctx("seek in chunk", e))?;
                Box::new(f.take(seg.length))
            }
            Chunks::Memory(chunks) => {
                let data = chunks
                    .get(seg.chunk as usize)
                    .ok_or_else(|| ctx("open chunk", io::Error::from(io::ErrorKind::NotFound)))?;
                let mut c = io::Cursor::new(data.as_slice());
                c.seek(SeekFrom::Start(seg.offset))
                    .map_err(|e| ctx("seek in chunk", e))?;
                Box::new(c.take(seg.length))
            }
        };
        let decoded: Box<dyn Read + Send + 'a> = match seg.encoding {
            Encoding::None => Box::new(raw),
            // Exactly one frame per segment (FORMAT.md §4).
            Encoding::Zstd => {
                let raw = CheckedFrame {
                    inner: raw,
                    check: FrameCheck::new(seg.length, seg.size),
                };
                let mut d = zstd::stream::read::Decoder::new(raw)
                    .map_err(|e| ctx("start decoding chunk", e))?
                    .single_frame();
                // Writers use windows of at most 8 MiB: refuse frames asking for more memory.
                d.window_log_max(WINDOW_LOG_MAX)
                    .map_err(|e| ctx("set up decoding of chunk", e))?;
                Box::new(d)
            }
        };
        // Read at most one byte more than declared: a decompression bomb stops right there.
        self.current = Some((i, decoded.take(seg.size + 1), 0));
        Ok(())
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.current.is_none() {
                if self.next == self.blob.segments.len() {
                    // End of the blob: it must hash to its digest (checked once).
                    if let Some(h) = self.hasher.take() {
                        let actual = h.finish();
                        if actual != self.blob.digest {
                            self.mismatch = Some(actual);
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "blob read from bundle {}: digest mismatch: expected {}, got {actual}",
                                    self.chunks.bundle_name(),
                                    self.blob.digest
                                ),
                            ));
                        }
                    }
                    return Ok(0);
                }
                let i = self.next;
                self.next += 1;
                self.open_segment(i)?;
            }
            let (i, r, got) = self.current.as_mut().expect("open");
            let (i, size) = (*i, self.blob.segments[*i].size);
            let n = match r.read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail(i, format!("cannot decode: {e}"))),
            };
            *got += n as u64;
            let got = *got;
            if got > size {
                return Err(self.fail(i, format!("decodes to more than the {size} bytes declared")));
            }
            if n == 0 {
                if got != size {
                    return Err(self.fail(
                        i,
                        format!("holds {got} bytes, {size} declared (truncated media?)"),
                    ));
                }
                self.current = None;
                continue;
            }
            if let Some(h) = &mut self.hasher {
                h.update(&buf[..n]);
            }
            return Ok(n);
        }
    }
}

/// Streams the decoded bytes of `blob` into `out`, checked as [`BlobReader`] does. `out` must be
/// discarded on error.
pub fn copy_blob(
    bundle: &VerifiedBundle,
    blob: &Blob,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<()> {
    let mut r = BlobReader::new(bundle, blob);
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(match r.mismatch {
                    Some(actual) => Error::DigestMismatch {
                        what: format!("blob read from bundle {}", bundle.dir().display()),
                        expected: blob.digest,
                        actual,
                    },
                    // Bytes that do not decode to what the signed manifest says: a rejection.
                    None if e.kind() == io::ErrorKind::InvalidData => Error::Corrupt(e.to_string()),
                    None => Error::Other(e.to_string()),
                });
            }
        };
        out.write_all(&buf[..n])
            .map_err(|e| Error::Other(format!("writing blob {}: {e}", blob.digest)))?;
        progress.inc(n as u64);
    }
}

impl BlobSource for VerifiedBundle {
    fn size(&self, digest: &Digest) -> Option<u64> {
        self.blob(digest).map(|b| b.size)
    }
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        let blob = self
            .blob(digest)
            .ok_or_else(|| Error::Other(format!("the bundle holds no blob {digest}")))?;
        Ok(Box::new(BlobReader::new(self, blob)))
    }
}
