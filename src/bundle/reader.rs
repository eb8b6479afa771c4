//! Reads blobs back out of a verified bundle, re-checking each blob's size and SHA-256 as it
//! streams (the chunks could change on the media between verification and import).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use super::verify::VerifiedBundle;
use crate::error::{Error, Result};
use crate::format::{Blob, Encoding, Hasher};
use crate::fsutil::BUF_SIZE;
use crate::progress::Progress;

/// Streams the decoded bytes of `blob` into `out`. Fails, naming the blob and chunk, if a segment
/// is short, decodes to more or fewer bytes than declared, or the whole does not hash to the
/// blob's digest. `out` must be discarded on error.
pub fn copy_blob(
    bundle: &VerifiedBundle,
    blob: &Blob,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<()> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; BUF_SIZE];
    for (i, seg) in blob.segments.iter().enumerate() {
        let path = bundle.chunk_path(seg.chunk);
        let fail = |what: String| {
            Error::Other(format!(
                "blob {} segment {i} in {}: {what}",
                blob.digest,
                path.display()
            ))
        };
        let mut f = File::open(&path).map_err(|e| Error::io("open chunk", &path, e))?;
        f.seek(SeekFrom::Start(seg.offset))
            .map_err(|e| Error::io("seek in chunk", &path, e))?;
        let raw = f.take(seg.length);
        let mut decoded: Box<dyn Read> = match seg.encoding {
            Encoding::None => Box::new(raw),
            Encoding::Zstd => Box::new(
                // Exactly one frame per segment (FORMAT.md §4).
                zstd::stream::read::Decoder::new(raw)
                    .map_err(|e| Error::io("start decoding chunk", &path, e))?
                    .single_frame(),
            ),
        };
        // Read at most one byte more than declared: a decompression bomb stops right there.
        let mut limited = (&mut decoded).take(seg.size + 1);
        let mut got: u64 = 0;
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail(format!("cannot decode: {e}"))),
            };
            got += n as u64;
            if got > seg.size {
                return Err(fail(format!(
                    "decodes to more than the {} bytes declared",
                    seg.size
                )));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| Error::Other(format!("writing blob {}: {e}", blob.digest)))?;
            progress.inc(n as u64);
        }
        if got != seg.size {
            return Err(fail(format!(
                "holds {got} bytes, {} declared (truncated media?)",
                seg.size
            )));
        }
    }
    let actual = hasher.finish();
    if actual != blob.digest {
        return Err(Error::DigestMismatch {
            what: format!("blob read from bundle {}", bundle.dir().display()),
            expected: blob.digest,
            actual,
        });
    }
    Ok(())
}
