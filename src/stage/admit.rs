//! Admission: the only constructor of [`Admitted`], and the small-blob cache planning fills.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::bundle::reader::BlobReader;
use crate::bundle::VerifiedBundle;
use crate::error::{Error, Result};
use crate::format::{Blob, Digest, Manifest};
use crate::media::ChunkAccess;
use crate::oci::image::{BlobSource, MAX_MANIFEST};
use crate::state::{Decision, State};

/// Small blobs kept in memory once read while planning, at most this much in total.
const SMALL_CACHE_BYTES: u64 = 64 << 20;

/// A bundle admitted for import: signatures, trust policy and manifest verified, and fresh
/// against the enclave's state. Targets plan only against this type. Its chunks have not been
/// read (they are, once, by [`Staging::stage`]); every blob read through it is verified against
/// its signed digest as it streams.
pub struct Admitted {
    bundle: VerifiedBundle,
    decision: Decision,
    small: Mutex<HashMap<Digest, Arc<Vec<u8>>>>,
    small_bytes: AtomicU64,
    /// Consulted before a chunk is opened (an import from one drive asks for its volume).
    access: Option<Box<dyn ChunkAccess>>,
}

/// Admits `bundle` if the state's decision permits it; otherwise hands both back (to be audited
/// as a rejection).
pub fn admit(
    bundle: VerifiedBundle,
    state: &State,
    allow_rollback: bool,
) -> std::result::Result<Admitted, Box<(VerifiedBundle, Decision)>> {
    let decision = state.check(bundle.manifest(), &bundle.manifest_digest());
    if !decision.permits(allow_rollback) {
        return Err(Box::new((bundle, decision)));
    }
    Ok(Admitted {
        bundle,
        decision,
        small: Mutex::new(HashMap::new()),
        small_bytes: AtomicU64::new(0),
        access: None,
    })
}

impl Admitted {
    /// Admits a bundle for a library caller that keeps no enclave state (embedding, tests):
    /// signatures and policy were checked by `bundle::verify`, but no freshness check is made
    /// and nothing is audited. `airlock import` never takes this path.
    pub fn without_state(bundle: VerifiedBundle) -> Admitted {
        Admitted {
            bundle,
            decision: Decision::Fresh { last: None },
            small: Mutex::new(HashMap::new()),
            small_bytes: AtomicU64::new(0),
            access: None,
        }
    }

    /// Every artifact of the bundle (indices for [`crate::targets::Target::plan`]).
    pub fn all_artifacts(&self) -> Vec<usize> {
        (0..self.manifest().artifacts.len()).collect()
    }

    pub fn bundle(&self) -> &VerifiedBundle {
        &self.bundle
    }
    /// The bundle, to locate volumes rebuilt from parity after admission.
    pub fn bundle_mut(&mut self) -> &mut VerifiedBundle {
        &mut self.bundle
    }
    pub fn manifest(&self) -> &Manifest {
        self.bundle.manifest()
    }
    pub fn dir(&self) -> &Path {
        self.bundle.dir()
    }
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
    pub fn blob(&self, digest: &Digest) -> Option<&Blob> {
        self.bundle.blob(digest)
    }

    /// Sets what is consulted before each chunk is opened ([`crate::media`]).
    pub fn set_access(&mut self, access: Box<dyn ChunkAccess>) {
        self.access = Some(access);
    }

    pub fn access(&self) -> Option<&dyn ChunkAccess> {
        self.access.as_deref()
    }

    /// Whether chunk `index` can be opened without waiting for the operator.
    pub fn chunk_ready(&self, index: u32) -> bool {
        self.access
            .as_ref()
            .is_none_or(|a| a.ready(&self.bundle, index))
    }

    /// Makes chunk `index` readable (asks for its volume, on one drive) before it is opened.
    pub fn before_chunk(&self, index: u32) -> Result<()> {
        match &self.access {
            Some(a) => a.before_chunk(&self.bundle, index),
            None => Ok(()),
        }
    }

    /// The whole of a blob of at most `max` bytes, verified; kept for staging (so its chunk bytes
    /// are not read twice) while the cache has room.
    pub fn read_verified(&self, digest: &Digest, max: u64) -> Result<Arc<Vec<u8>>> {
        if let Some(b) = self.small.lock().expect("not poisoned").get(digest) {
            return Ok(Arc::clone(b));
        }
        let blob = self
            .blob(digest)
            .ok_or_else(|| Error::Corrupt(format!("the bundle holds no blob {digest}")))?;
        if blob.size > max {
            return Err(Error::Corrupt(format!(
                "blob {digest}: {} bytes, more than the {max} expected here",
                blob.size
            )));
        }
        let mut seen = None;
        for seg in &blob.segments {
            if seen != Some(seg.chunk) {
                self.before_chunk(seg.chunk)?;
                seen = Some(seg.chunk);
            }
        }
        let mut v = Vec::with_capacity(blob.size as usize);
        BlobReader::new(&self.bundle, blob)
            .read_to_end(&mut v)
            .map_err(|e| Error::blob_read(format_args!("blob {digest}"), e))?;
        let v = Arc::new(v);
        if self.small_bytes.fetch_add(blob.size, Ordering::Relaxed) + blob.size <= SMALL_CACHE_BYTES
        {
            self.small
                .lock()
                .expect("not poisoned")
                .insert(*digest, Arc::clone(&v));
        }
        Ok(v)
    }

    pub(super) fn cached(&self, digest: &Digest) -> Option<Arc<Vec<u8>>> {
        self.small
            .lock()
            .expect("not poisoned")
            .get(digest)
            .cloned()
    }
}

impl std::ops::Deref for Admitted {
    type Target = VerifiedBundle;
    fn deref(&self) -> &VerifiedBundle {
        &self.bundle
    }
}

impl BlobSource for Admitted {
    fn size(&self, digest: &Digest) -> Option<u64> {
        self.blob(digest).map(|b| b.size)
    }
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        if let Some(b) = self.cached(digest) {
            return Ok(Box::new(io::Cursor::new(b.to_vec())));
        }
        let blob = self
            .blob(digest)
            .ok_or_else(|| Error::Corrupt(format!("the bundle holds no blob {digest}")))?;
        Ok(Box::new(BlobReader::new(&self.bundle, blob)))
    }
    fn read_small(&self, digest: &Digest) -> Result<Vec<u8>> {
        Ok(self.read_verified(digest, MAX_MANIFEST)?.to_vec())
    }
}
