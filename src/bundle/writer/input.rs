//! Reading a blob's source: whole buffers, its end checked, and a local file's size and times
//! compared before and after it is read (a file changed while packed aborts the pack).

use std::fs::File;
use std::io::Read;

use crate::error::{Error, Result};
use crate::format::Digest;
use crate::fsutil;

use super::{Origin, PlannedBlob};

/// Reads until `buf` is full or the input ends; the number of bytes read.
fn read_up_to(f: &mut (impl Read + ?Sized), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Fills `buf` from the blob's origin; a short read means the file shrank since it was planned
/// (or the stream ended early).
pub(super) fn fill_from_blob(f: &mut dyn Read, buf: &mut [u8], blob: &PlannedBlob) -> Result<()> {
    crate::interrupt::check()?;
    let n = read_up_to(f, buf).map_err(|e| {
        Error::Other(format!(
            "blob {} from {}: {e}",
            blob.digest,
            blob.origin.describe()
        ))
    })?;
    if n < buf.len() {
        return Err(match blob.origin {
            Origin::Stream { .. } => Error::SizeMismatch {
                what: blob.origin.describe(),
                digest: blob.digest,
                declared: blob.size,
                detail: "ended early".into(),
            },
            _ => Error::Other(format!(
                "{} shrank while it was being packed (expected {} bytes); pack again",
                blob.origin.describe(),
                blob.size
            )),
        });
    }
    Ok(())
}

/// A stream must end exactly at the declared size: one more byte is a lie about the blob. A
/// pending file that has more bytes than it had when it was planned grew while it was packed.
pub(super) fn check_end(f: &mut dyn Read, blob: &PlannedBlob, pending: bool) -> Result<()> {
    let stream = matches!(blob.origin, Origin::Stream { .. });
    if stream || pending {
        let mut one = [0u8; 1];
        if matches!(f.read(&mut one), Ok(n) if n > 0) {
            if pending {
                return Err(Error::Other(format!(
                    "{} grew while it was being packed (planned {} bytes); pack again",
                    blob.origin.describe(),
                    blob.size
                )));
            }
            return Err(Error::SizeMismatch {
                what: blob.origin.describe(),
                digest: blob.digest,
                declared: blob.size,
                detail: "is longer".into(),
            });
        }
    }
    Ok(())
}

pub(super) fn changed(blob: &PlannedBlob, actual: Digest) -> Error {
    match blob.origin {
        Origin::File { .. } => Error::Other(format!(
            "{} changed while it was being packed: planned {}, read {}; pack again",
            blob.origin.describe(),
            blob.digest,
            actual
        )),
        _ => Error::DigestMismatch {
            what: format!("blob from {}", blob.origin.describe()),
            expected: blob.digest,
            actual,
        },
    }
}

pub(super) fn modified(blob: &PlannedBlob) -> Error {
    Error::Other(format!(
        "{} changed while it was being packed (its size, modification or change time moved); pack again",
        blob.origin.describe()
    ))
}

/// What identifies a file's content for as long as it is not written to: size, mtime, ctime
/// and inode (a write, truncation, `utime` or replacement moves at least one of them).
pub(super) fn stamp(f: &File, blob: &PlannedBlob) -> Result<(u64, i64, i64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = f
        .metadata()
        .map_err(|e| Error::Other(format!("{}: cannot stat: {e}", blob.origin.describe())))?;
    Ok((
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino(),
    ))
}

/// An open blob origin: a file (kept, to compare its stamp afterwards) or another reader.
pub(super) enum Input {
    File(File),
    Other(Box<dyn Read + Send>),
}

impl Input {
    pub(super) fn open(blob: &PlannedBlob) -> Result<Input> {
        match &blob.origin {
            Origin::File { path, offset } => {
                let mut f = fsutil::open_regular(path)?;
                if *offset > 0 {
                    use std::io::{Seek, SeekFrom};
                    f.seek(SeekFrom::Start(*offset))
                        .map_err(|e| Error::io("seek", path, e))?;
                }
                advise_sequential(&f);
                Ok(Input::File(f))
            }
            other => Ok(Input::Other(other.open()?)),
        }
    }

    pub(super) fn reader(&mut self) -> &mut dyn Read {
        match self {
            Input::File(f) => f,
            Input::Other(r) => r,
        }
    }
}

/// Tells the kernel a source file is read front to back (a larger readahead window).
fn advise_sequential(f: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor we own; failure only loses the hint.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = f;
}

/// The head already read from an input, then the rest of it.
pub(super) struct Resume<'a> {
    pub(super) head: &'a [u8],
    pub(super) rest: &'a mut dyn Read,
}

impl Read for Resume<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.head.is_empty() {
            let n = buf.len().min(self.head.len());
            buf[..n].copy_from_slice(&self.head[..n]);
            self.head = &self.head[n..];
            return Ok(n);
        }
        self.rest.read(buf)
    }
}
