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
use crate::state::{Decision, Location, State};

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
    /// Version 5: per external blob (not carried), the places on this machine airlock recorded
    /// it at (`holdings.json`) whose file still has its size; each is re-hashed when read.
    sources: HashMap<Digest, Vec<Source>>,
    /// Recorded places whose bytes turned out not to be the blob (named, then forgotten).
    altered: Mutex<Vec<Altered>>,
}

/// A place on this machine holding (as recorded) an external blob: a claim, re-checked against
/// the blob's signed digest whenever it is read.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: std::path::PathBuf,
    pub location: Location,
}

/// A recorded place whose bytes are not the blob recorded there.
#[derive(Debug, Clone)]
pub struct Altered {
    pub digest: Digest,
    pub location: Location,
    pub path: std::path::PathBuf,
    /// What was found (`SHA-256 …`, `N bytes`, or the read error).
    pub found: String,
}

/// Whether a blob is external: listed by a version 5 (delta) manifest, not carried.
pub fn is_external(blob: &Blob) -> bool {
    blob.is_external()
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
        sources: HashMap::new(),
        altered: Mutex::new(Vec::new()),
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
            sources: HashMap::new(),
            altered: Mutex::new(Vec::new()),
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

    /// Version 5: where each external blob may be read from on this machine (recorded places,
    /// each re-hashed when read). Set before planning.
    pub fn set_sources(&mut self, sources: HashMap<Digest, Vec<Source>>) {
        self.sources = sources;
    }

    /// Whether the bundle lists `digest` as external (not carried).
    pub fn is_external(&self, digest: &Digest) -> bool {
        self.blob(digest).is_some_and(is_external)
    }

    /// The recorded places of an external blob not found altered so far.
    pub fn sources(&self, digest: &Digest) -> Vec<Source> {
        let altered = self.altered.lock().expect("not poisoned");
        self.sources
            .get(digest)
            .into_iter()
            .flatten()
            .filter(|s| {
                !altered
                    .iter()
                    .any(|a| a.digest == *digest && a.path == s.path)
            })
            .cloned()
            .collect()
    }

    /// A recorded place of `digest` holds other bytes: it is not used again.
    pub fn mark_altered(&self, digest: &Digest, source: &Source, found: String) {
        let mut altered = self.altered.lock().expect("not poisoned");
        if !altered
            .iter()
            .any(|a| a.digest == *digest && a.path == source.path)
        {
            altered.push(Altered {
                digest: *digest,
                location: source.location.clone(),
                path: source.path.clone(),
                found,
            });
        }
    }

    /// Every recorded place found altered during this import.
    pub fn altered(&self) -> Vec<Altered> {
        self.altered.lock().expect("not poisoned").clone()
    }

    /// An external blob of at most `max` bytes read whole from the first recorded place whose
    /// bytes hash to its digest (the others are marked altered).
    fn read_external(&self, blob: &Blob, max: u64) -> Result<Vec<u8>> {
        let digest = &blob.digest;
        for s in self.sources(digest) {
            match crate::fsutil::read_regular(&s.path, max) {
                Ok(v) if v.len() as u64 == blob.size && Digest::of(&v) == *digest => return Ok(v),
                Ok(v) => self.mark_altered(
                    digest,
                    &s,
                    format!("{} bytes, SHA-256 {}", v.len(), Digest::of(&v)),
                ),
                Err(e) => self.mark_altered(digest, &s, e.to_string()),
            }
        }
        Err(crate::import::missing_one(self, digest))
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
        if is_external(blob) {
            let v = Arc::new(self.read_external(blob, max)?);
            self.keep_small(digest, &v);
            return Ok(v);
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
        self.keep_small(digest, &v);
        Ok(v)
    }

    fn keep_small(&self, digest: &Digest, v: &Arc<Vec<u8>>) {
        let size = v.len() as u64;
        if self.small_bytes.fetch_add(size, Ordering::Relaxed) + size <= SMALL_CACHE_BYTES {
            self.small
                .lock()
                .expect("not poisoned")
                .insert(*digest, Arc::clone(v));
        }
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
        if is_external(blob) {
            // A recorded place, re-hashed as it is read (a mismatch fails the read at its end).
            let s = self
                .sources(digest)
                .into_iter()
                .next()
                .ok_or_else(|| crate::import::missing_one(self, digest))?;
            let f = crate::fsutil::open_regular(&s.path)?;
            return Ok(Box::new(crate::format::CheckingReader::new(
                f,
                *digest,
                s.path.display().to_string(),
            )));
        }
        Ok(Box::new(BlobReader::new(&self.bundle, blob)))
    }
    fn read_small(&self, digest: &Digest) -> Result<Vec<u8>> {
        Ok(self.read_verified(digest, MAX_MANIFEST)?.to_vec())
    }
}
