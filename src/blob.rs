//! Where blob bytes come from, in a leaf module both sides share (`bundle` and `oci` import it;
//! it imports neither): [`Origin`], how the packer opens a planned blob's bytes, and
//! [`BlobSource`], how the isolated side reads verified blobs (an admitted bundle, a staging
//! area).

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::Digest;
use crate::fsutil;

/// Largest manifest or index accepted (Distribution's own limit is 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Opens a fresh reader over a blob's bytes.
pub type Opener = Arc<dyn Fn() -> Result<Box<dyn Read + Send>> + Send + Sync>;

/// Where the bytes of a planned blob come from.
#[derive(Clone)]
pub enum Origin {
    /// Already in memory (manifests, small configs).
    Bytes(Arc<Vec<u8>>),
    /// A byte range of a local file, starting at `offset` (a whole file, an OCI layout blob, a
    /// member of a docker archive).
    File { path: PathBuf, offset: u64 },
    /// A stream (a registry download). Its bytes are trusted only once they hash to the digest.
    Stream { open: Opener, what: String },
}

impl Origin {
    /// A whole local file.
    pub fn file(path: impl Into<PathBuf>) -> Origin {
        Origin::File {
            path: path.into(),
            offset: 0,
        }
    }

    /// What to name in messages.
    pub fn describe(&self) -> String {
        match self {
            Origin::Bytes(_) => "generated document".to_string(),
            Origin::File { path, offset: 0 } => path.display().to_string(),
            Origin::File { path, offset } => format!("{} at byte {offset}", path.display()),
            Origin::Stream { what, .. } => what.clone(),
        }
    }

    pub(crate) fn open(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            Origin::Bytes(b) => Ok(Box::new(std::io::Cursor::new(b.clone().to_vec()))),
            Origin::File { path, offset } => {
                let mut f = fsutil::open_regular(path)?;
                if *offset > 0 {
                    use std::io::{Seek, SeekFrom};
                    f.seek(SeekFrom::Start(*offset))
                        .map_err(|e| Error::io("seek", path, e))?;
                }
                Ok(Box::new(f))
            }
            Origin::Stream { open, .. } => open(),
        }
    }
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Origin({})", self.describe())
    }
}

/// A blob the plan wants in the bundle: its promised digest and where to read it.
/// Reads blobs for a push or a layout write (the isolated side: a verified bundle; in tests an
/// OCI layout directory). Readers must fail if the bytes do not match the digest.
pub trait BlobSource: Sync {
    /// Size of the blob, if this source has it.
    fn size(&self, digest: &Digest) -> Option<u64>;
    /// A reader over the blob's bytes, digest-checked at its end (an error instead of EOF).
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>>;
    /// A small blob (a manifest) read whole; bounded by [`MAX_MANIFEST`].
    fn read_small(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut r = self.open(digest)?.take(MAX_MANIFEST + 1);
        let mut v = Vec::new();
        r.read_to_end(&mut v)
            .map_err(|e| Error::blob_read(format_args!("reading {digest}"), e))?;
        if v.len() as u64 > MAX_MANIFEST {
            return Err(Error::Corrupt(format!(
                "{digest}: larger than {MAX_MANIFEST} bytes, not a manifest"
            )));
        }
        Ok(v)
    }
}
