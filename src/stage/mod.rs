//! The staged import: one read of the media, and the one way a verified blob becomes a file in
//! a store.
//!
//! An import runs in three steps over the types of this module:
//!
//! 1. [`admit`] turns a bundle whose signatures, trust policy and manifest checked out
//!    (`bundle::verify::verify_manifest`) and which the enclave's state finds fresh into an
//!    [`Admitted`] bundle. Only `admit` makes one, and targets plan against nothing else. Small
//!    blobs read while planning (image manifests, configs, Modelfile parts) are read once,
//!    verified, and kept in memory for staging.
//! 2. [`Staging::stage`] reads every blob the chosen targets need exactly once from the media:
//!    each segment is decoded and hashed against the signed blob digest as it streams (the hash
//!    on its own core) and written into a staging area on each target's own filesystem
//!    (`ROOT/.airlock-staging/RUN/`), so that committing is a rename. A chunk holding nothing the
//!    import needs is never opened. The staged bytes are made durable together (`syncfs`, one
//!    flush per filesystem), not file by file.
//! 3. Each target commits from the staging area through [`Area::install`] (rename, or a copy
//!    for all but the last use of a blob), recording what it did in the one [`Journal`], which
//!    undoes everything if any later step of any target fails.
//!
//! A staging area is locked (`flock`) while its run lives. The next run on the same root removes
//! areas whose lock is free (a killed run), after adopting the complete staged blobs it needs
//! (re-hashed before use: the media are not read again for them). Nothing in a staging area is
//! visible in a store.

mod admit;
mod area;
mod read;
mod sink;

pub use admit::{admit, is_external, Admitted, Altered, Source};
pub use area::{rename_noclobber, Area, Installed, Journal};

use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::format::Digest;
use crate::fsutil;
use crate::interrupt;
use crate::oci::image::BlobSource;
use crate::progress::Progress;
use read::read_chunks;
use sink::{Sinks, Slot, Want};

/// The hidden directory under a target's root that holds staging areas.
pub const STAGING_DIR: &str = ".airlock-staging";

/// One use of a blob by a target: it will be installed once at some path under the target's
/// root.
#[derive(Debug, Clone)]
pub struct Need {
    pub digest: Digest,
    /// A git blob SHA-1 the content must have (a Hugging Face regular file's etag), checked
    /// while staging, and what to name if it does not (the artifact and path).
    pub git_sha1: Option<(String, String)>,
}

/// What a target stages: its root (the directory on whose filesystem its files land) and one
/// [`Need`] per file it will install from the bundle.
#[derive(Debug, Clone)]
pub struct Demand {
    pub root: PathBuf,
    pub needs: Vec<Need>,
}

/// Blobs for a target that reads rather than installs them (the registry pushes): the staged,
/// verified file when a local target staged it, else the bundle's chunks (verified as they
/// stream). Both are re-hashed while read.
pub struct Staged<'a> {
    staging: &'a Staging,
    bundle: &'a Admitted,
}

impl<'a> Staged<'a> {
    pub fn new(staging: &'a Staging, bundle: &'a Admitted) -> Staged<'a> {
        Staged { staging, bundle }
    }
}

impl BlobSource for Staged<'_> {
    fn size(&self, digest: &Digest) -> Option<u64> {
        self.bundle.size(digest)
    }
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        interrupt::check()?;
        match self.staging.staged(digest) {
            Some(path) => {
                let f = fsutil::open_regular(&path)?;
                Ok(Box::new(crate::format::CheckingReader::new(
                    f,
                    *digest,
                    path.display().to_string(),
                )))
            }
            None => self.bundle.open(digest),
        }
    }
    fn read_small(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.bundle.read_small(digest)
    }
}

/// The staging areas of one import, one per target root.
pub struct Staging {
    areas: Vec<Area>,
}

impl Staging {
    /// Opens a staging area under each distinct root (creating the root if needed, journaled in
    /// the area), after removing what killed runs left there (adopting their complete blobs
    /// that this import needs).
    pub fn open(demands: Vec<Demand>) -> Result<Staging> {
        // The demands are consumed (each area keeps a count per blob, not a list per file).
        let mut by_root: BTreeMap<PathBuf, Vec<Vec<Need>>> = BTreeMap::new();
        for d in demands {
            by_root.entry(d.root).or_default().push(d.needs);
        }
        let mut areas = Vec::new();
        let mut staging = Staging { areas: Vec::new() };
        for (root, needs) in by_root {
            let made = fsutil::create_dirs_recorded(&root)?;
            let area = open_area(&root, made, needs);
            match area {
                Ok(a) => areas.push(a),
                Err(e) => {
                    staging.areas = areas;
                    staging.remove();
                    return Err(e);
                }
            }
        }
        staging.areas = areas;
        Ok(staging)
    }

    /// The area of `root`.
    pub fn area(&self, root: &Path) -> &Area {
        self.areas
            .iter()
            .find(|a| a.root == root)
            .expect("every target's root has an area")
    }

    /// The staged, verified file of `digest` in any area.
    pub fn staged(&self, digest: &Digest) -> Option<PathBuf> {
        self.areas.iter().find_map(|a| a.staged(digest))
    }

    /// Reads every needed blob once from the bundle (or the small-blob cache), verifying its
    /// size and SHA-256 as it streams, into each area that needs it. Adopted blobs from a killed
    /// run are re-hashed instead of read from the media. On failure nothing is visible; the
    /// caller removes the staging.
    pub fn stage(&mut self, bundle: &Admitted, progress: &dyn Progress) -> Result<()> {
        // Adopted blobs first: re-hash them; those that match need no read of the media.
        let mut reused: HashSet<Digest> = HashSet::new();
        for a in &mut self.areas {
            let adopted = std::mem::take(&mut a.adopted);
            for (d, path) in adopted {
                let size = bundle.blob(&d).map_or(u64::MAX, |b| b.size);
                let ok = a.uses.lock().expect("not poisoned").contains_key(&d)
                    && !a.git_sha1.contains_key(&d)
                    && fsutil::hash_file(&path).is_ok_and(|(h, n)| h == d && n == size);
                let dest = a.dir.join(d.hex());
                if ok && fs::rename(&path, &dest).is_ok() {
                    a.staged.insert(d);
                    reused.insert(d);
                } else {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        if !reused.is_empty() {
            self.say_resumed(bundle, &reused);
        }
        // Which areas still need each blob (a bit per area).
        if self.areas.len() > 64 {
            return Err(Error::Other(format!(
                "internal: {} staging areas (at most 64)",
                self.areas.len()
            )));
        }
        let mut todo: BTreeMap<Digest, u64> = BTreeMap::new();
        for (i, a) in self.areas.iter().enumerate() {
            for d in a.uses.lock().expect("not poisoned").keys() {
                if !a.staged.contains(d) {
                    *todo.entry(*d).or_default() |= 1u64 << i;
                }
            }
        }
        let mut wants = Vec::with_capacity(todo.len());
        for (d, areas) in todo {
            let blob = bundle
                .blob(&d)
                .ok_or_else(|| Error::Corrupt(format!("the bundle holds no blob {d}")))?;
            wants.push(Want { blob, areas });
        }
        let mut sinks = Sinks::new(wants, &self.areas);
        // Version 5: external blobs (not carried) are copied from a place on this machine
        // airlock recorded them at, hashed against their signed digest as they stream (a place
        // that does not match is named and the next one tried); first, so that a missing one
        // fails before the media are read.
        for i in 0..sinks.wants.len() {
            let blob = sinks.wants[i].blob;
            if is_external(blob) && bundle.cached(&blob.digest).is_none() {
                stage_external(bundle, &mut sinks, i)?;
            }
        }
        // Blobs already read whole while planning come from memory (and empty ones from
        // nowhere); the rest from the chunks.
        for i in 0..sinks.wants.len() {
            let blob = sinks.wants[i].blob;
            let cached = bundle.cached(&blob.digest);
            if cached.is_none() && (!blob.segments.is_empty() || is_external(blob)) {
                continue;
            }
            let s = sinks.open(i).expect("a waiting blob");
            if let Some(bytes) = cached {
                s.open()?;
                if let Err(e) = s.tee.write_all(&bytes) {
                    return Err(s.write_failure().unwrap_or_else(|| s.io_error(e)));
                }
            }
            s.finish()?;
            sinks.settle(i);
        }
        let problems = read_chunks(bundle, &mut sinks, progress)?;
        if !problems.is_empty() {
            return Err(Error::Rejected {
                dir: bundle.dir().to_path_buf(),
                problems,
            });
        }
        let mut staged = Vec::with_capacity(sinks.wants.len());
        for (w, slot) in sinks.wants.iter().zip(std::mem::take(&mut sinks.slots)) {
            match slot {
                Slot::Done => staged.push((w.blob.digest, w.areas)),
                Slot::Failed(e) => return Err(*e),
                Slot::Waiting | Slot::Open(_) => {
                    return Err(Error::Corrupt(format!(
                        "blob {}: its segments were not all found in the chunks",
                        w.blob.digest
                    )))
                }
            }
        }
        drop(sinks);
        // Staged files are named by their digest from the start (a killed run's incomplete one
        // fails the re-hash of adoption), so that no rename in the staging directory is needed.
        for (d, areas) in staged {
            for (i, a) in self.areas.iter_mut().enumerate() {
                if areas & (1u64 << i) != 0 {
                    a.staged.insert(d);
                }
            }
        }
        Ok(())
    }

    /// Version 4: names each volume none of whose needed blobs is left to read because an
    /// interrupted run staged them (`reused`, re-hashed) — the volumes not read again.
    fn say_resumed(&self, bundle: &Admitted, reused: &HashSet<Digest>) {
        let m = bundle.manifest();
        let Some(access) = bundle.access() else {
            return;
        };
        if !m.is_multi_volume() {
            return;
        }
        let needed: HashSet<Digest> = self
            .areas
            .iter()
            .flat_map(|a| {
                let uses = a.uses.lock().expect("not poisoned");
                uses.keys().copied().collect::<Vec<_>>()
            })
            .collect();
        // Per data volume: the needed blobs with a segment on it still to read, and those reused.
        let count = m.data_volume_count() as usize;
        let (mut left, mut again) = (vec![0usize; count], vec![0usize; count]);
        for d in &needed {
            let Some(blob) = bundle.blob(d) else { continue };
            let mut on: Vec<u32> = blob
                .segments
                .iter()
                .map(|s| m.volume_of(s.chunk as usize))
                .collect();
            on.dedup();
            for n in on {
                let k = (n.max(1) - 1) as usize;
                if k >= count {
                    continue;
                }
                if reused.contains(d) {
                    again[k] += 1;
                } else if bundle.cached(d).is_none() {
                    left[k] += 1;
                }
            }
        }
        for k in 0..count {
            if again[k] == 0 {
                continue;
            }
            let n = k + 1;
            let blobs = if again[k] == 1 {
                "its 1 blob was".to_string()
            } else {
                format!("its {} blobs were", again[k])
            };
            if left[k] == 0 {
                access.note(&format!(
                    "volume {n}: {blobs} staged by an interrupted run and re-checked; not read again"
                ));
            } else {
                access.note(&format!(
                    "volume {n}: {} of its blobs staged by an interrupted run and re-checked; {} still to read from it",
                    again[k], left[k]
                ));
            }
        }
    }

    /// Makes everything written under each area's root so far durable: one `syncfs` per
    /// filesystem (instead of an fsync per file and per directory).
    pub fn sync(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for a in &self.areas {
            let dev = fs::metadata(&a.dir).map(|m| dev_of(&m)).unwrap_or(0);
            if seen.insert(dev) {
                syncfs(&a.dir)?;
            }
        }
        Ok(())
    }

    /// Removes every staging area of this run (and the roots it created, if still empty).
    pub fn remove(self) {
        for a in self.areas {
            let _ = fs::remove_dir_all(&a.dir);
            let _ = fs::remove_dir(a.root.join(STAGING_DIR));
            for d in a.made.iter().rev() {
                let _ = fs::remove_dir(d);
            }
        }
    }

    /// Leaves the staging areas as they are (an import stopped while waiting for a volume):
    /// their locks are released with this process, and the next run on the same roots adopts
    /// their complete blobs (re-hashed) and removes the rest. Nothing in them is visible.
    pub fn keep(self) {
        drop(self.areas);
    }

    /// Removes the staging areas but keeps the roots (after a successful commit).
    pub fn finish(self) -> Result<()> {
        let areas = self.areas;
        for a in &areas {
            fs::remove_dir_all(&a.dir).map_err(|e| Error::io("remove staging", &a.dir, e))?;
            let _ = fs::remove_dir(a.root.join(STAGING_DIR));
        }
        Ok(())
    }
}

/// Copies external blob `i` into its staging files from the first recorded place whose bytes
/// hash to its digest (each place that does not is marked altered); none: the missing-base
/// error for it.
fn stage_external(bundle: &Admitted, sinks: &mut Sinks<'_, '_>, i: usize) -> Result<()> {
    let digest = sinks.wants[i].blob.digest;
    for src in bundle.sources(&digest) {
        let s = sinks.open(i).expect("a waiting blob");
        s.open()?;
        let found = match copy_into(&src.path, s) {
            Ok(()) => match s.finish() {
                Ok(()) => {
                    sinks.settle(i);
                    return Ok(());
                }
                Err(Error::DigestMismatch { actual, .. }) => format!("SHA-256 {actual}"),
                Err(Error::SizeMismatch { detail, .. }) => detail,
                Err(e) => return Err(e),
            },
            Err(Copy::Write(e)) => return Err(e),
            Err(Copy::Source(why)) => why,
        };
        bundle.mark_altered(&digest, &src, found);
        sinks.reset(i);
    }
    Err(crate::import::missing_one(bundle, &digest))
}

enum Copy {
    /// Writing the staging file failed (operational).
    Write(Error),
    /// The source could not be read, or holds more bytes than the blob.
    Source(String),
}

fn copy_into(path: &Path, s: &mut sink::Sink<'_>) -> std::result::Result<(), Copy> {
    let mut f = fsutil::open_regular(path).map_err(|e| Copy::Source(e.to_string()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        interrupt::check().map_err(Copy::Write)?;
        let n = match f.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Source(format!("cannot be read: {e}"))),
        };
        if let Err(e) = s.tee.write_all(&buf[..n]) {
            return Err(match s.write_failure() {
                Some(w) => Copy::Write(w),
                None => Copy::Source(format!("more than the blob's bytes ({e})")),
            });
        }
    }
}

#[cfg(unix)]
fn dev_of(m: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.dev()
}
#[cfg(not(unix))]
fn dev_of(_m: &fs::Metadata) -> u64 {
    0
}

/// Flushes the filesystem holding `dir`.
pub fn syncfs(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the duration of the call.
        if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
            return Err(Error::io(
                "flush the filesystem of",
                dir,
                io::Error::last_os_error(),
            ));
        }
    }
    #[cfg(not(target_os = "linux"))]
    f.sync_all().map_err(|e| Error::io("sync", dir, e))?;
    Ok(())
}

fn open_area(root: &Path, made: Vec<PathBuf>, needs: Vec<Vec<Need>>) -> Result<Area> {
    let base = root.join(STAGING_DIR);
    match fs::symlink_metadata(&base) {
        Ok(m) if m.is_dir() => {}
        Ok(m) => {
            return Err(Error::Conflict(format!(
                "{} is {}, not airlock's staging directory; move it away",
                base.display(),
                fsutil::file_kind(&m.file_type())
            )))
        }
        Err(_) => {
            fs::create_dir(&base).map_err(|e| Error::io("create directory", &base, e))?;
        }
    }
    // A fresh run directory, locked for as long as this process holds it.
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| Error::Other(format!("random run id: {e}")))?;
    let dir = base.join(hex::encode(rnd));
    fs::create_dir(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
    let lock = lock_file(&dir.join("lock"), true)?.expect("a new lock is free");
    let mut uses: HashMap<Digest, usize> = HashMap::new();
    let mut git_sha1 = HashMap::new();
    for n in needs.into_iter().flatten() {
        *uses.entry(n.digest).or_insert(0) += 1;
        if let Some(g) = n.git_sha1 {
            git_sha1.entry(n.digest).or_insert_with(Vec::new).push(g);
        }
    }
    let mut area = Area {
        root: root.to_path_buf(),
        dir,
        _lock: lock,
        made,
        uses: Mutex::new(uses),
        git_sha1,
        staged: HashSet::new(),
        adopted: HashMap::new(),
        copies: AtomicUsize::new(0),
    };
    clean_abandoned(&base, &mut area)?;
    Ok(area)
}

/// Opens (creating if `create`) and locks `path` without waiting; `None` if another process
/// holds the lock.
fn lock_file(path: &Path, create: bool) -> Result<Option<File>> {
    let mut o = fs::OpenOptions::new();
    o.read(true).write(true);
    if create {
        o.create_new(true);
    }
    let f = fsutil::open_nofollow(path, &mut o)?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open; flock does not touch memory.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(Error::io("lock", path, e));
        }
    }
    Ok(Some(f))
}

/// Removes the run directories under `base` that no live run holds, adopting their complete
/// blobs that `area` needs (moved into it, re-hashed before use).
fn clean_abandoned(base: &Path, area: &mut Area) -> Result<()> {
    let entries = fs::read_dir(base).map_err(|e| Error::io("read directory", base, e))?;
    for e in entries.flatten() {
        let path = e.path();
        if path == area.dir {
            continue;
        }
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir {
            let _ = fs::remove_file(&path);
            continue;
        }
        // A run that still holds its lock is alive (another import): leave it alone.
        let held = match lock_file(&path.join("lock"), false) {
            Ok(Some(_lock)) => false,
            Ok(None) => true,
            Err(_) => false,
        };
        if held {
            continue;
        }
        if let Ok(files) = fs::read_dir(&path) {
            for f in files.flatten() {
                let name = f.file_name();
                let Some(name) = name.to_str() else { continue };
                let Ok(d) = Digest::from_hex(name) else {
                    continue;
                };
                let wanted = area.uses.lock().expect("not poisoned").contains_key(&d);
                if wanted && f.file_type().is_ok_and(|t| t.is_file()) {
                    let to = area.dir.join(format!("{name}.adopted"));
                    if fs::rename(f.path(), &to).is_ok() {
                        area.adopted.insert(d, to);
                    }
                }
            }
        }
        fs::remove_dir_all(&path).map_err(|e| Error::io("remove abandoned staging", &path, e))?;
    }
    Ok(())
}
