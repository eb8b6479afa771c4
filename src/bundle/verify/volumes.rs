//! Version 4: the volumes of one bundle, found in several directories (given in any order),
//! each verified on its own as [`super::verify_policy`] verifies a directory (signatures,
//! policy, manifest, its `SHA256SUMS` and `VOLUME` label, its files, and — when asked — its
//! chunks), then put together: the same signed manifest on every one, each volume once.

use std::collections::BTreeSet;
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
    /// Whether its own signatures verified; false for a volume accepted as a sibling (a volume
    /// rebuilt from parity by `airlock repair`, which carries no signature: see
    /// [`VerifiedBundle::check_sibling`]).
    pub signed: bool,
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
            signed: false,
        };
        let noted = std::cell::Cell::new(None);
        match verify_noting(dir, policy, opts, true, check_chunks, progress, &noted) {
            Ok(vb) => {
                out.volume = Some(vb.volume().unwrap_or(1));
                out.signed = true;
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
    // Directories without any signature file: a volume rebuilt from parity, accepted when it
    // carries the authenticated manifest's exact bytes (then checked like any volume).
    if let Some(b) = &mut bundle {
        for out in outcomes.iter_mut().filter(|o| o.volume.is_none()) {
            let (sigs, sig_problems) = super::signature_files(&out.dir);
            if !sigs.is_empty() || !sig_problems.is_empty() {
                continue;
            }
            let Some(sib) = b.check_sibling(&out.dir, check_chunks, progress) else {
                continue;
            };
            out.error = None;
            out.problems = sib.problems;
            if out.problems.is_empty() {
                out.volume = Some(sib.volume);
                if let Some(p) = b.add_sibling(sib.volume, &out.dir) {
                    out.problems.push(p);
                }
            }
        }
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
        let other = match verify_inner(dir, policy, opts, true, check_chunks, progress) {
            Ok(other) => other,
            Err(e) => {
                // A volume rebuilt from parity (no signature file at all): a sibling.
                let (sigs, sig_problems) = super::signature_files(dir);
                if !sigs.is_empty() || !sig_problems.is_empty() {
                    return Err(e);
                }
                let Some(sib) = self.check_sibling(dir, check_chunks, progress) else {
                    return Err(e);
                };
                if !sib.problems.is_empty() {
                    return Err(Error::Rejected {
                        dir: dir.to_path_buf(),
                        problems: sib.problems,
                    });
                }
                return match self.add_sibling(sib.volume, dir) {
                    None => Ok(sib.volume),
                    Some(p) => Err(Error::Rejected {
                        dir: dir.to_path_buf(),
                        problems: vec![p],
                    }),
                };
            }
        };
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

/// A directory checked against an authenticated bundle as one of its volumes without relying on
/// its own signatures ([`VerifiedBundle::check_sibling`]).
#[derive(Debug)]
pub struct Sibling {
    /// The volume its `VOLUME` label names.
    pub volume: u32,
    /// What is wrong with it (empty: intact).
    pub problems: Vec<Problem>,
    /// The chunks of that volume that are missing or damaged there (indices).
    pub damaged: BTreeSet<usize>,
}

/// The chunk a chunk-content problem names (missing, truncated, oversized, corrupt, unreadable,
/// a corrupt piece): what a rebuild from parity can replace.
pub fn damaged_chunk(p: &Problem) -> Option<&str> {
    match p {
        Problem::MissingChunk { chunk }
        | Problem::TruncatedChunk { chunk, .. }
        | Problem::OversizedChunk { chunk, .. }
        | Problem::CorruptChunk { chunk, .. }
        | Problem::UnreadableChunk { chunk, .. }
        | Problem::CorruptPiece { chunk, .. } => Some(chunk),
        _ => None,
    }
}

impl VerifiedBundle {
    /// Checks `dir` as a volume of this (authenticated) bundle without its own signatures: its
    /// `manifest.json` must be byte for byte the authenticated one (same size, same SHA-256,
    /// read bounded by that size), and its `VOLUME` label the label of exactly one volume n of
    /// the bundle; then its `SHA256SUMS`, its files and (with `check_chunks`) its chunks are
    /// checked as any volume's. `None` when `dir` does not carry this bundle's manifest or a
    /// label of it: it is not a sibling. A volume rebuilt from parity carries no signature (a
    /// volume's signatures name it and its `SHA256SUMS`, and cannot be remade without the key),
    /// so it verifies only beside a signed volume of its bundle.
    pub fn check_sibling(
        &self,
        dir: &Path,
        check_chunks: bool,
        progress: &dyn Progress,
    ) -> Option<Sibling> {
        use crate::format::volumes::LABEL_FILE;
        use crate::format::{CHUNKS_DIR, SUMS_FILE};
        let m = &self.manifest;
        if !m.is_multi_volume() {
            return None;
        }
        let bytes = super::read_manifest_bytes_bounded(dir, self.manifest_size).ok()?;
        if bytes.len() as u64 != self.manifest_size || Digest::of(&bytes) != self.manifest_digest {
            return None;
        }
        let longest = (1..=m.volume_count())
            .map(|n| m.volume_label(n).len())
            .max()
            .unwrap_or(0);
        let label = super::read_bounded(&dir.join(LABEL_FILE), longest as u64).ok()?;
        let n = (1..=m.volume_count()).find(|&n| m.volume_label(n).as_bytes() == label)?;
        let mut problems = Vec::new();
        let sums = m.volume_sums(n);
        match super::read_bounded(&dir.join(SUMS_FILE), sums.len() as u64) {
            Ok(b) if b == sums.as_bytes() => {}
            _ => problems.push(Problem::SumsMismatch),
        }
        let mine = m.volume_chunks(n);
        let names: std::collections::HashSet<&str> = m.chunks[mine.clone()]
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        for p in super::chunks::unexpected_files(dir, &names, true) {
            let other = match &p {
                Problem::UnexpectedFile { path } => path
                    .strip_prefix(&format!("{CHUNKS_DIR}/"))
                    .and_then(|name| m.chunks.iter().position(|c| c.name == name))
                    .map(|i| Problem::MisplacedChunk {
                        chunk: m.chunks[i].name.clone(),
                        volume: n,
                        belongs_on: m.volume_of(i),
                    }),
                _ => None,
            };
            problems.push(other.unwrap_or(p));
        }
        if check_chunks {
            problems.extend(super::chunks::check_chunks(dir, m, mine.clone(), progress));
        } else {
            let chunks_dir = dir.join(CHUNKS_DIR);
            problems.extend(
                m.chunks[mine.clone()]
                    .iter()
                    .filter_map(|c| super::chunks::stat_chunk(&chunks_dir.join(&c.name), c)),
            );
        }
        let index: std::collections::HashMap<&str, usize> = mine
            .clone()
            .map(|i| (m.chunks[i].name.as_str(), i))
            .collect();
        let damaged = problems
            .iter()
            .filter_map(damaged_chunk)
            .filter_map(|c| index.get(c).copied())
            .collect();
        Some(Sibling {
            volume: n,
            problems,
            damaged,
        })
    }

    /// Locates volume `n` in `dir` after [`VerifiedBundle::check_sibling`] found it intact
    /// there; `duplicate-volume` when it is located already.
    pub fn add_sibling(&mut self, n: u32, dir: &Path) -> Option<Problem> {
        if self.volume_dirs.is_empty() {
            self.locate_self();
        }
        let slot = self.volume_dirs.get_mut((n.max(1) - 1) as usize)?;
        match slot {
            Some(d) => Some(Problem::DuplicateVolume {
                volume: n,
                dirs: vec![d.display().to_string(), dir.display().to_string()],
            }),
            None => {
                *slot = Some(dir.to_path_buf());
                None
            }
        }
    }
}
