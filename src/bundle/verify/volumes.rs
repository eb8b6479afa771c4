//! Version 4: the volumes of one bundle, found in several directories (given in any order),
//! each verified on its own as [`super::verify_policy`] verifies a directory (signatures,
//! policy, manifest, its `SHA256SUMS` and `VOLUME` label, its files, and — when asked — its
//! chunks), then put together: the same signed manifest on every one, each volume once.

use std::path::{Path, PathBuf};

use super::{
    check_bundle_dir, verify_inner, verify_noting, Problem, VerifiedBundle, VerifyOptions,
};
use crate::error::{Error, Result};
use crate::format::Digest;
use crate::policy::TrustPolicy;
use crate::progress::Progress;

/// The directories `verify` and `sign` check, from the paths given: a bundle or volume
/// directory is itself; a directory that is not one (no `manifest.json`, nothing of a
/// bundle) but whose subdirectories are (`OUT/` holding `vol-001/`, `vol-002/`, ...) stands
/// for those subdirectories, sorted by name (links are not followed). Anything else is the
/// usual "not a bundle" usage error ([`check_bundle_dir`]). Returns the directories and
/// whether a parent was expanded. Reads nothing but directory listings and file types.
pub fn expand_volume_dirs(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, bool)> {
    let mut out = Vec::new();
    let mut expanded = false;
    for path in paths {
        let not_a_bundle = match check_bundle_dir(path) {
            Ok(()) => {
                out.push(path.clone());
                continue;
            }
            Err(e @ Error::Usage(_)) => e,
            Err(e) => return Err(e),
        };
        let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
        let mut subs = Vec::new();
        if is_dir {
            let entries = std::fs::read_dir(path).map_err(|e| Error::io("read", path, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("read", path, e))?;
                let is_subdir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_subdir && check_bundle_dir(&entry.path()).is_ok() {
                    subs.push(entry.path());
                }
            }
        }
        if subs.is_empty() {
            return Err(not_a_bundle);
        }
        subs.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        expanded = true;
        out.extend(subs);
    }
    Ok((out, expanded))
}

/// What one directory given turned out to be.
#[derive(Debug)]
pub struct VolumeOutcome {
    pub dir: PathBuf,
    /// The volume it is (from its trusted comments), once its signatures verified (also when
    /// its content was then rejected).
    pub volume: Option<u32>,
    /// What is wrong with it (empty: this volume is intact, as far as it was checked).
    pub problems: Vec<Problem>,
    /// Its verification failed for another reason than its content (I/O, not a bundle).
    pub error: Option<String>,
}

/// The volumes of one bundle found in the directories given.
#[derive(Debug)]
pub struct VolumeSet {
    /// The bundle: the verification of the first intact volume (in the order given), with every
    /// intact volume of the same bundle located ([`VerifiedBundle::volume_dir`]). `None` when
    /// no directory verified.
    pub bundle: Option<VerifiedBundle>,
    /// Every directory given, in the order given.
    pub outcomes: Vec<VolumeOutcome>,
    /// Volumes of the bundle (1-based) no intact directory holds, in order.
    pub missing: Vec<u32>,
}

impl VolumeSet {
    /// Whether every directory given is an intact volume of the bundle and each volume is there.
    pub fn complete(&self) -> bool {
        self.bundle.is_some() && self.missing.is_empty() && self.problems().is_empty()
    }

    /// Every problem of every directory, in the order given.
    pub fn problems(&self) -> Vec<Problem> {
        self.outcomes
            .iter()
            .flat_map(|o| o.problems.iter().cloned())
            .collect()
    }

    /// The data volumes (1-based) still missing.
    pub fn missing_data(&self) -> Vec<u32> {
        match &self.bundle {
            Some(b) => {
                let d = b.manifest().data_volume_count();
                self.missing.iter().copied().filter(|&n| n <= d).collect()
            }
            None => Vec::new(),
        }
    }
}

/// Verifies each directory of `dirs` as a volume (its chunks too when `check_chunks`), then
/// puts the volumes together: a directory whose signed manifest is another bundle's is a
/// `foreign-volume`, a volume given twice a `duplicate-volume`; volumes not given are
/// [`VolumeSet::missing`]. Writes nothing. Errors only when no directory can be checked at all
/// for another reason than its content (the first directory's error).
pub fn verify_volumes(
    dirs: &[PathBuf],
    policy: &TrustPolicy,
    opts: &VerifyOptions,
    check_chunks: bool,
    progress: &dyn Progress,
) -> Result<VolumeSet> {
    let mut outcomes = Vec::new();
    let mut bundle: Option<VerifiedBundle> = None;
    let mut first_error = None;
    for dir in dirs {
        let mut out = VolumeOutcome {
            dir: dir.clone(),
            volume: None,
            problems: Vec::new(),
            error: None,
        };
        let noted = std::cell::Cell::new(None);
        match verify_noting(dir, policy, opts, true, check_chunks, progress, &noted) {
            Ok(vb) => {
                out.volume = Some(vb.volume().unwrap_or(1));
                match &mut bundle {
                    None => {
                        let mut vb = vb;
                        vb.locate_self();
                        bundle = Some(vb);
                    }
                    Some(b) => {
                        if let Some(p) = b.add_verified(vb) {
                            out.problems.push(p);
                        }
                    }
                }
            }
            Err(Error::Rejected { problems, .. }) => {
                // Its signatures verified and named its volume; its content did not.
                out.volume = noted.get();
                out.problems = problems;
            }
            Err(e) => {
                out.error = Some(e.to_string());
                first_error.get_or_insert(e);
            }
        }
        outcomes.push(out);
    }
    let Some(b) = bundle else {
        if let (Some(e), true) = (first_error, outcomes.iter().all(|o| o.problems.is_empty())) {
            return Err(e);
        }
        return Ok(VolumeSet {
            bundle: None,
            outcomes,
            missing: Vec::new(),
        });
    };
    // A directory that verified but whose volume an earlier one already is, or another
    // bundle's: named on the directory (add_verified returned the problem).
    let missing = (1..=b.manifest().volume_count())
        .filter(|&n| b.volume_dir(n).is_none())
        .collect();
    Ok(VolumeSet {
        bundle: Some(b),
        outcomes,
        missing,
    })
}

impl VerifiedBundle {
    /// The directory volume `n` (1-based) was found in; for a bundle of one directory, that
    /// directory for volume 1.
    pub fn volume_dir(&self, n: u32) -> Option<&Path> {
        if !self.manifest.is_multi_volume() {
            return (n == 1).then_some(self.dir.as_path());
        }
        self.volume_dirs
            .get(n.checked_sub(1)? as usize)
            .and_then(|d| d.as_deref())
    }

    /// Records this verification's own directory as its volume's.
    fn locate_self(&mut self) {
        let count = self.manifest.volume_count() as usize;
        self.volume_dirs = vec![None; count];
        if let Some(n) = self.volume {
            self.volume_dirs[(n - 1) as usize] = Some(self.dir.clone());
        }
    }

    /// Adds another directory verified as a volume: it must carry the same signed manifest
    /// (else `foreign-volume`) and be a volume not located yet (else `duplicate-volume`).
    /// Returns the problem, or `None` when it was added.
    pub fn add_verified(&mut self, other: VerifiedBundle) -> Option<Problem> {
        if other.manifest_digest == self.manifest_digest && self.volume.is_none() {
            // A bundle of one directory, given twice.
            return Some(Problem::DuplicateVolume {
                volume: 1,
                dirs: vec![
                    self.dir.display().to_string(),
                    other.dir.display().to_string(),
                ],
            });
        }
        if other.manifest_digest != self.manifest_digest || self.volume.is_none() {
            return Some(Problem::ForeignVolume {
                dir: other.dir.display().to_string(),
                expected: self.manifest.bundle_id.clone(),
                found: other.manifest.bundle_id.clone(),
            });
        }
        let n = other.volume.expect("a version 4 manifest names its volume");
        if self.volume_dirs.is_empty() {
            self.locate_self();
        }
        match &self.volume_dirs[(n - 1) as usize] {
            Some(d) => Some(Problem::DuplicateVolume {
                volume: n,
                dirs: vec![d.display().to_string(), other.dir.display().to_string()],
            }),
            None => {
                self.volume_dirs[(n - 1) as usize] = Some(other.dir);
                None
            }
        }
    }

    /// Verifies `dir` as a further volume of this bundle (with `check_chunks`, its chunks
    /// too) and locates it: the step of an import from one drive, volume after volume. Returns
    /// the volume number. A volume of another bundle, or one already located, is rejected.
    pub fn add_volume(
        &mut self,
        dir: &Path,
        policy: &TrustPolicy,
        opts: &VerifyOptions,
        check_chunks: bool,
        progress: &dyn Progress,
    ) -> Result<u32> {
        let other = verify_inner(dir, policy, opts, true, check_chunks, progress)?;
        let n = other.volume().unwrap_or(1);
        match self.add_verified(other) {
            None => Ok(n),
            Some(p) => Err(Error::Rejected {
                dir: dir.to_path_buf(),
                problems: vec![p],
            }),
        }
    }

    /// Locates volume `n` in `dir` without verifying it there: for chunks rebuilt from parity
    /// (each already checked against its signed digests by the rebuild).
    pub fn relocate(&mut self, n: u32, dir: PathBuf) {
        if self.volume_dirs.is_empty() {
            self.locate_self();
        }
        if let Some(d) = self.volume_dirs.get_mut((n.max(1) - 1) as usize) {
            *d = Some(dir);
        }
    }

    /// Forgets where volume `n` was found (its medium was taken out).
    pub fn unlocate(&mut self, n: u32) {
        if let Some(d) = self.volume_dirs.get_mut((n.max(1) - 1) as usize) {
            *d = None;
        }
    }

    /// The SHA-256 of the verified `manifest.json` bytes every volume carries.
    pub fn bundle_digest(&self) -> Digest {
        self.manifest_digest
    }
}
