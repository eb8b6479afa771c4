//! The bases of a delta bundle (FORMAT.md §Version 5): what the packer knows the enclave
//! already holds, from signed documents only. [`HeldBlobs`] maps each blob digest a base showed
//! the enclave holds to its size and the base that showed it; pack writes such blobs as
//! external instead of carrying them.
//!
//! A base is a previous bundle ([`HeldBlobs::add_bundle`]: a bundle directory, one of its
//! volumes, the `OUT/` holding its volumes, or a `manifest.json` with its signature files
//! beside it), authenticated as verify authenticates a manifest (no chunk is read); an enclave
//! inventory adds its blobs through [`HeldBlobs::add`] the same way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::format::text::escape;
use crate::format::{limits, Base, BaseKind, Digest, MANIFEST_FILE};
use crate::policy::TrustPolicy;

/// The blobs the bases show the enclave holds.
#[derive(Debug, Default, Clone)]
pub struct HeldBlobs {
    /// Digest → (size, index in `bases` of the first base that listed it).
    pub by_digest: HashMap<Digest, (u64, u32)>,
    /// The bases, in the order they were added (the manifest's `bases`).
    pub bases: Vec<Base>,
}

impl HeldBlobs {
    pub fn new() -> HeldBlobs {
        HeldBlobs::default()
    }

    /// The held blobs of one previous bundle (see [`HeldBlobs::add_bundle`]).
    pub fn from_bundle(path: &Path, policy: &TrustPolicy, now: SystemTime) -> Result<HeldBlobs> {
        let mut held = HeldBlobs::new();
        held.add_bundle(path, policy, now)?;
        Ok(held)
    }

    /// Adds a base and the blobs (digest, size) it shows the enclave holds; a digest an
    /// earlier base listed keeps that base. Refuses more than [`limits::MAX_BASES`] bases and
    /// a base given twice (same kind and id). Returns the base's index.
    pub fn add(
        &mut self,
        base: Base,
        blobs: impl IntoIterator<Item = (Digest, u64)>,
    ) -> Result<u32> {
        if let Some(i) = self
            .bases
            .iter()
            .position(|b| b.kind == base.kind && b.id == base.id)
        {
            return Err(Error::Usage(format!(
                "{} {} is given twice as a base (base {} already)",
                base.kind.as_str(),
                escape(&base.id),
                i + 1
            )));
        }
        if self.bases.len() >= limits::MAX_BASES {
            return Err(Error::Usage(format!(
                "more than {} bases: a delta bundle names at most {}",
                limits::MAX_BASES,
                limits::MAX_BASES
            )));
        }
        let index = self.bases.len() as u32;
        for (digest, size) in blobs {
            self.by_digest.entry(digest).or_insert((size, index));
        }
        self.bases.push(base);
        Ok(index)
    }

    /// Adds a previous bundle as a base: `path` is a bundle directory, one volume of a bundle
    /// spread over several, the `OUT/` holding its `vol-NNN/` (the first volume found), or its
    /// `manifest.json` (with `manifest.json.minisig`, and `signatures/` if any, beside it). Its
    /// manifest is authenticated against `policy` exactly as verify authenticates one
    /// ([`super::verify::verify_signed_manifest`]; expiry aside: an expired base still records
    /// what the enclave was sent); no chunk is read. Every blob of its manifest counts as held,
    /// carried or external there (external there: the enclave held it when that base was made).
    /// Refused (exit 3, naming the directory and the problems): unsigned, signed by no trusted
    /// key, edited, unreadable.
    pub fn add_bundle(
        &mut self,
        path: &Path,
        policy: &TrustPolicy,
        now: SystemTime,
    ) -> Result<u32> {
        let dir = base_dir(path)?;
        let signed = super::verify::verify_signed_manifest(&dir, policy, now)?;
        let m = signed.manifest();
        let base = Base {
            kind: BaseKind::Bundle,
            id: m.bundle_id.clone(),
            channel: m.channel.clone(),
            sequence: m.sequence,
            manifest_digest: signed.manifest_digest(),
        };
        self.add(base, m.blobs.iter().map(|b| (b.digest, b.size)))
    }

    /// The base that shows the enclave holds this blob (same digest and size), if any.
    pub fn holds(&self, digest: &Digest, size: u64) -> Option<u32> {
        match self.by_digest.get(digest) {
            Some(&(s, base)) if s == size => Some(base),
            _ => None,
        }
    }

    /// Whether some held blob has this size (a local file of another size cannot be held, so it
    /// need not be hashed before it is packed).
    pub fn has_size(&self, size: u64) -> bool {
        self.by_digest.values().any(|&(s, _)| s == size)
    }

    /// The sizes of the held blobs.
    pub fn sizes(&self) -> std::collections::HashSet<u64> {
        self.by_digest.values().map(|&(s, _)| s).collect()
    }

    /// The highest sequence of the bases (`None` without bases).
    pub fn max_sequence(&self) -> Option<u64> {
        self.bases.iter().map(|b| b.sequence).max()
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }
}

/// The directory holding a base's `manifest.json`: `path` itself, the parent of a
/// `manifest.json` given, or the first `vol-NNN/` of an `OUT/` holding volumes.
fn base_dir(path: &Path) -> Result<PathBuf> {
    let shown = || escape(&path.display().to_string()).to_string();
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Usage(format!(
                "base {}: no such file or directory; expected a bundle directory or its manifest.json",
                shown()
            ))
        } else {
            Error::io("open base", path, e)
        }
    })?;
    if !meta.is_dir() {
        if path.file_name().is_some_and(|n| n == MANIFEST_FILE) {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            return Ok(parent.to_path_buf());
        }
        return Err(Error::Usage(format!(
            "base {} is not a bundle directory or a {MANIFEST_FILE}",
            shown()
        )));
    }
    if path.join(MANIFEST_FILE).symlink_metadata().is_ok() {
        return Ok(path.to_path_buf());
    }
    // The OUT/ of a bundle spread over volumes: the first volume holding a manifest.
    let first_volume = (1..=crate::format::volumes::MAX_VOLUMES as u32)
        .map(|n| path.join(crate::format::volumes::volume_dir_name(n)))
        .take_while(|d| d.is_dir())
        .find(|d| d.join(MANIFEST_FILE).symlink_metadata().is_ok());
    // Neither: verification names what is missing (or that it is no bundle at all).
    Ok(first_volume.unwrap_or_else(|| path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(id: char, sequence: u64) -> Base {
        Base {
            kind: BaseKind::Bundle,
            id: id.to_string().repeat(32),
            channel: "c".into(),
            sequence,
            manifest_digest: Digest::of(id.to_string().as_bytes()),
        }
    }

    #[test]
    fn the_first_base_listing_a_blob_keeps_it() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let mut h = HeldBlobs::new();
        assert_eq!(h.add(base('1', 5), [(a, 1)]).unwrap(), 0);
        assert_eq!(h.add(base('2', 9), [(a, 1), (b, 1)]).unwrap(), 1);
        assert_eq!(h.holds(&a, 1), Some(0));
        assert_eq!(h.holds(&b, 1), Some(1));
        assert_eq!(h.holds(&b, 2), None, "same digest, other size: not held");
        assert_eq!(h.max_sequence(), Some(9));
        assert!(h.has_size(1) && !h.has_size(2));
        assert!(matches!(h.add(base('1', 5), []), Err(Error::Usage(_))));
    }

    #[test]
    fn at_most_max_bases() {
        let mut h = HeldBlobs::new();
        for i in 0..limits::MAX_BASES {
            let mut b = base('0', 1);
            b.id = format!("{i:032x}");
            h.add(b, []).unwrap();
        }
        let mut b = base('0', 1);
        b.id = "f".repeat(32);
        assert!(matches!(h.add(b, []), Err(Error::Usage(_))));
    }
}
