//! The plain-directory target: `DEST/<artifact name>` for a file artifact,
//! `DEST/<artifact name>/<path>` for each entry of a directory artifact.
//!
//! **Updates in place.** An artifact already in `DEST` with other content is replaced as a
//! whole when airlock wrote what is there (the state's holdings record each file's digest at
//! its place) and the bundle is a newer one of the same channel as the bundle that wrote it:
//! its new version is built beside it in `DEST/.airlock/incoming/RUN/<artifact>` (new files
//! from the staging area, unchanged ones hard-linked from the current version), then swapped in
//! with one `renameat2(RENAME_EXCHANGE)` per artifact — a reader that opened the artifact's
//! directory sees the old tree or the new one, never a mix — and the replaced version moves to
//! `DEST/.airlock/previous/<artifact>/<NANOS>-<BUNDLE_ID>/` (`--keep N`, default 1, versions
//! kept per artifact; older ones removed once the import completed; `airlock rollback` swaps
//! one back). A file changed locally since airlock wrote it (its digest is not the recorded
//! one), or a file airlock has no record of that differs from the bundle's, is a conflict found
//! while planning: nothing is written.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Local, LocalPlan, Target};
use crate::error::{Error, Result};
use crate::format::{Artifact, ArtifactKind, Digest, EntryType};
use crate::fsutil;
use crate::output;
use crate::stage::{Admitted, Demand, Journal, Need, Staging};
use crate::state::{HoldingsFile, Location, StoreKind};

/// The directory in `DEST` where airlock keeps what updates need (never an artifact's name:
/// artifact names do not start with `.`).
pub const META_DIR: &str = ".airlock";
/// `DEST/.airlock/previous/<artifact>/<NANOS>-<BUNDLE_ID>/`: the versions kept for rollback.
pub const PREVIOUS_DIR: &str = "previous";
/// `DEST/.airlock/incoming/RUN/<artifact>`: a new version being built.
pub const INCOMING_DIR: &str = "incoming";
/// The name of a kept version whose bundle airlock has no record of.
pub const UNRECORDED: &str = "unrecorded";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Create the directory.
    Mkdir,
    /// Write the file.
    Write,
    /// Already present with the same content: nothing to do.
    Keep,
    /// Unchanged in an updated artifact: hard-linked from the current version into the new one.
    Link,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub action: Action,
    /// Where the step writes (for an updated artifact: inside its new version being built).
    pub path: PathBuf,
    pub artifact: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// For `link`: the file of the current version it is linked from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<PathBuf>,
    #[serde(skip)]
    executable: bool,
    /// The file's place relative to `DEST` once the import completed.
    #[serde(skip)]
    rel: String,
}

/// An artifact replaced by a newer version.
#[derive(Debug, Clone, Serialize)]
pub struct Swap {
    pub artifact: String,
    /// `DEST/<artifact>`.
    pub path: PathBuf,
    /// Where the new version is built before the swap.
    pub incoming: PathBuf,
    /// Where the replaced version goes.
    pub previous: PathBuf,
    /// The bundle that wrote the replaced version (`null`: no record).
    pub replaces: Option<String>,
    /// The replaced version's files: place relative to `DEST`, digest, size.
    #[serde(skip)]
    old_files: Vec<(String, Digest, u64)>,
}

/// What an import into a directory will do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub dest: PathBuf,
    pub steps: Vec<Step>,
    /// Artifacts replaced in place (each swapped atomically for its new version).
    pub swaps: Vec<Swap>,
    /// Versions kept per artifact (`--keep`).
    pub keep: usize,
    /// Kept versions removed after the commit (filled in then).
    pub removed: Vec<PathBuf>,
    #[serde(skip)]
    opts: FilesOptions,
    /// Files of the removed versions, relative to `DEST` (their records are forgotten).
    #[serde(skip)]
    removed_files: Vec<String>,
}

impl Plan {
    pub fn count(&self, a: Action) -> usize {
        self.steps.iter().filter(|s| s.action == a).count()
    }
    pub fn bytes_to_write(&self) -> u64 {
        self.steps
            .iter()
            .filter(|s| s.action == Action::Write)
            .filter_map(|s| s.size)
            .sum()
    }
}

/// What the files target is told besides its destination.
#[derive(Debug, Clone, Default)]
pub struct FilesOptions {
    /// Versions kept per artifact after an update (`--keep N`; `None`: 1).
    pub keep: Option<usize>,
    /// What the holdings record in this destination: place (relative to `DEST`) → digest and
    /// the bundle that wrote it.
    places: HashMap<String, (Digest, String)>,
    /// Accepted bundles: id → (channel, sequence).
    bundles: HashMap<String, (String, u64)>,
}

impl FilesOptions {
    /// Keeping `keep` previous versions per artifact.
    pub fn keep(keep: Option<usize>) -> FilesOptions {
        FilesOptions {
            keep,
            ..FilesOptions::default()
        }
    }

    /// Takes what `h` records under `dest`.
    pub fn with_holdings(mut self, dest: &Path, h: &HoldingsFile) -> FilesOptions {
        if let Some(root) = store_root(dest) {
            self.places = h
                .places(StoreKind::Files, &root)
                .into_iter()
                .map(|(p, (d, l))| (p.to_string(), (*d, l.bundle_id.clone())))
                .collect();
        }
        self.bundles = h
            .bundles
            .iter()
            .map(|b| (b.bundle_id.clone(), (b.channel.clone(), b.sequence)))
            .collect();
        self
    }

    fn kept(&self) -> usize {
        self.keep.unwrap_or(1)
    }
}

/// The root a destination is recorded under in the holdings: its absolute path (not resolved
/// through links), `None` if it is not UTF-8.
pub fn store_root(dest: &Path) -> Option<String> {
    super::store_root(dest)
}

/// Directories of an artifact's current version, relative to `DEST`.
type Dirs = Vec<String>;

/// What one file of an artifact's current version is, as the plan sees it.
struct Found {
    digest: Digest,
    size: u64,
    executable: bool,
    /// The holdings' record at its place: digest and bundle.
    recorded: Option<(Digest, String)>,
}

/// Works out every step, reading (never writing) the destination, with no holdings (every
/// existing file with other content is a conflict) and the default `--keep`.
/// Only artifacts for which `include` is true are planned.
pub fn plan(bundle: &Admitted, dest: &Path, include: &dyn Fn(&Artifact) -> bool) -> Result<Plan> {
    plan_with(bundle, dest, include, &FilesOptions::default())
}

/// [`plan`] with the holdings and `--keep`. Fails on the first conflict.
pub fn plan_with(
    bundle: &Admitted,
    dest: &Path,
    include: &dyn Fn(&Artifact) -> bool,
    opts: &FilesOptions,
) -> Result<Plan> {
    let mut steps = Vec::new();
    let mut swaps = Vec::new();
    let mut planned_dirs: HashMap<PathBuf, ()> = HashMap::new();
    let run = run_name();
    for a in bundle.manifest().artifacts.iter().filter(|a| include(a)) {
        let top = fsutil::safe_join(dest, &a.name)?;
        if let Some((swap, current)) = plan_update(bundle, dest, a, &top, opts, &run)? {
            plan_swapped(a, &swap, &current, &mut steps)?;
            swaps.push(swap);
            continue;
        }
        let mut push_dir = |path: PathBuf, steps: &mut Vec<Step>| -> Result<()> {
            if planned_dirs.insert(path.clone(), ()).is_some() {
                return Ok(());
            }
            let action = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => Action::Keep,
                Ok(_) => {
                    return Err(Error::Conflict(format!(
                        "{} exists and is not a directory",
                        path.display()
                    )))
                }
                Err(_) => Action::Mkdir,
            };
            steps.push(Step {
                action,
                path,
                artifact: a.name.clone(),
                blob: None,
                size: None,
                from: None,
                executable: false,
                rel: String::new(),
            });
            Ok(())
        };
        if a.kind != ArtifactKind::File {
            push_dir(top.clone(), &mut steps)?;
        }
        for e in &a.entries {
            let rel = entry_rel(a, &e.path);
            let path = fsutil::safe_join(dest, &rel)?;
            match e.kind {
                EntryType::Dir => push_dir(path, &mut steps)?,
                EntryType::File => {
                    let (blob, size) = (e.blob.expect("validated"), e.size.expect("validated"));
                    let action = match fs::symlink_metadata(&path) {
                        Err(_) => Action::Write,
                        Ok(m)
                            if m.is_file()
                                && m.len() == size
                                && fsutil::hash_file(&path)?.0 == blob =>
                        {
                            Action::Keep
                        }
                        Ok(_) => {
                            return Err(Error::Conflict(format!(
                                "{} already exists with other content (the bundle has {blob}); \
                                 move it away or import elsewhere",
                                path.display()
                            )))
                        }
                    };
                    steps.push(Step {
                        action,
                        path,
                        artifact: a.name.clone(),
                        blob: Some(blob),
                        size: Some(size),
                        from: None,
                        executable: e.executable,
                        rel,
                    });
                }
            }
        }
    }
    Ok(Plan {
        dest: dest.to_path_buf(),
        steps,
        swaps,
        keep: opts.kept(),
        removed: Vec::new(),
        opts: opts.clone(),
        removed_files: Vec::new(),
    })
}

/// An entry's place relative to `DEST`.
fn entry_rel(a: &Artifact, path: &str) -> String {
    match a.kind {
        ArtifactKind::File => a.name.clone(),
        _ => format!("{}/{path}", a.name),
    }
}

/// A name for this run's incoming directory, unique on this machine.
fn run_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos}-{}", std::process::id())
}

/// The name of a kept version: `<NANOS>-<BUNDLE_ID>` (the nanoseconds order the versions by
/// when they were replaced).
fn version_name(bundle_id: Option<&str>) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:020}-{}", bundle_id.unwrap_or(UNRECORDED))
}

/// The files (relative to `DEST`) and directories of what is at `top`, links not followed;
/// anything that is neither a regular file nor a directory is an error naming it.
fn current_tree(dest: &Path, top: &Path) -> Result<(Vec<(String, PathBuf)>, Dirs)> {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for e in walkdir::WalkDir::new(top)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e.map_err(|e| {
            let p = e.path().unwrap_or(top).to_path_buf();
            Error::io("read", &p, e.into())
        })?;
        let rel = e
            .path()
            .strip_prefix(dest)
            .ok()
            .and_then(|r| r.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "{} is not a UTF-8 name airlock wrote; move it away",
                    e.path().display()
                ))
            })?;
        let t = e.file_type();
        if t.is_dir() {
            dirs.push(rel);
        } else if t.is_file() {
            files.push((rel, e.path().to_path_buf()));
        } else if t.is_symlink() {
            return Err(Error::Conflict(format!(
                "{} is a symbolic link; airlock does not write through links",
                e.path().display()
            )));
        } else {
            return Err(Error::Conflict(format!(
                "{} is not a regular file or directory; airlock did not write it, and an update \
                 of {} would move it away: move it away first",
                e.path().display(),
                top.display()
            )));
        }
    }
    Ok((files, dirs))
}

/// Whether artifact `a`, already at `top`, is to be replaced by its new version (`Some`), or
/// planned as today: absent, or every file the bundle has already there with its content
/// (`None`). A replacement must be allowed: every file there airlock wrote (holdings) and not
/// changed since, by a bundle of the same channel with a lower sequence.
fn plan_update(
    bundle: &Admitted,
    dest: &Path,
    a: &Artifact,
    top: &Path,
    opts: &FilesOptions,
    run: &str,
) -> Result<Option<(Swap, Current)>> {
    let meta = match fs::symlink_metadata(top) {
        Err(_) => return Ok(None),
        Ok(m) => m,
    };
    // Nothing of it recorded (a destination airlock did not write, or wrote before its
    // holdings existed): planned as before, where other content is a conflict.
    let prefix = format!("{}/", a.name);
    if !opts
        .places
        .keys()
        .any(|k| *k == a.name || k.starts_with(&prefix))
    {
        return Ok(None);
    }
    // What the bundle has: place → (digest, size); directories.
    let mut new_files: BTreeMap<String, (Digest, u64)> = BTreeMap::new();
    let mut new_dirs: Vec<String> = Vec::new();
    if a.kind != ArtifactKind::File {
        new_dirs.push(a.name.clone());
    }
    for e in &a.entries {
        let rel = entry_rel(a, &e.path);
        match e.kind {
            EntryType::Dir => new_dirs.push(rel),
            EntryType::File => {
                new_files.insert(
                    rel,
                    (e.blob.expect("validated"), e.size.expect("validated")),
                );
            }
        }
    }
    let want_dir = a.kind != ArtifactKind::File;
    // A file where a directory goes (or the reverse) that airlock has no record of: the
    // conflict as before, below.
    if meta.file_type().is_symlink() {
        return Err(Error::Conflict(format!(
            "{} is a symbolic link; airlock does not write through links",
            top.display()
        )));
    }
    let (files, dirs) = current_tree(dest, top)?;
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for (rel, path) in &files {
        let m = fs::symlink_metadata(path).map_err(|e| Error::io("read", path, e))?;
        let (digest, size) = fsutil::hash_file(path)?;
        found.insert(
            rel.clone(),
            Found {
                digest,
                size,
                executable: is_executable(&m),
                recorded: opts.places.get(rel).cloned(),
            },
        );
    }
    // Changed locally since airlock wrote it: always a conflict.
    for (rel, f) in &found {
        if let Some((recorded, _)) = &f.recorded {
            if *recorded != f.digest {
                return Err(Error::Conflict(format!(
                    "{} already exists with other content: it was changed since airlock wrote \
                     it (recorded {recorded}, found {}); move it away (or restore it) and \
                     import again",
                    dest.join(rel).display(),
                    f.digest
                )));
            }
        }
    }
    let same_type = meta.is_dir() == want_dir;
    let unchanged = same_type
        && new_files
            .iter()
            .all(|(rel, (d, _))| found.get(rel).is_some_and(|f| f.digest == *d))
        && new_dirs.iter().all(|d| dirs.contains(d))
        // A file airlock wrote that the new version no longer has: an update removes it.
        && found
            .iter()
            .all(|(rel, f)| new_files.contains_key(rel) || f.recorded.is_none());
    if unchanged {
        return Ok(None);
    }
    // A replacement. Anything airlock has no record of must already be what the bundle has.
    for (rel, f) in found.iter().filter(|(_, f)| f.recorded.is_none()) {
        let path = dest.join(rel);
        let wanted = new_files.get(rel).map(|(d, _)| *d);
        if wanted != Some(f.digest) {
            return Err(Error::Conflict(match wanted {
                Some(d) => format!(
                    "{} already exists with other content (found {}, the bundle has {d}) and \
                     airlock has no record of writing it; move it away or import elsewhere",
                    path.display(),
                    f.digest
                ),
                None => format!(
                    "{} is not part of the bundle's {} and airlock has no record of writing it; \
                     an update would move it away: move it away first",
                    path.display(),
                    a.name
                ),
            }));
        }
    }
    // Which bundle wrote it: a newer bundle of the same channel replaces it.
    let m = bundle.manifest();
    let mut replaces: Option<(String, u64)> = None;
    for f in found.values() {
        let Some((_, id)) = &f.recorded else { continue };
        match opts.bundles.get(id) {
            Some((channel, seq)) if *channel != m.channel || *seq >= m.sequence => {
                return Err(Error::Conflict(format!(
                    "{} was written by bundle {id} (channel {channel}, sequence {seq}); only a \
                     newer bundle of that channel replaces it (this one is channel {}, sequence \
                     {}); use `airlock rollback` to go back to a kept version",
                    top.display(),
                    m.channel,
                    m.sequence
                )))
            }
            Some((_, seq)) => {
                if replaces.as_ref().is_none_or(|(_, s)| seq > s) {
                    replaces = Some((id.clone(), *seq));
                }
            }
            None => {
                if replaces.is_none() {
                    replaces = Some((id.clone(), 0));
                }
            }
        }
    }
    let replaces = replaces.map(|(id, _)| id);
    let meta_dir = dest.join(META_DIR);
    check_meta_dirs(dest, &a.name)?;
    let incoming = meta_dir.join(INCOMING_DIR).join(run).join(&a.name);
    let previous = meta_dir
        .join(PREVIOUS_DIR)
        .join(&a.name)
        .join(version_name(replaces.as_deref()));
    let prev_rel = previous
        .strip_prefix(dest)
        .ok()
        .and_then(|p| p.to_str())
        .unwrap_or_default()
        .to_string();
    let old_files = found
        .iter()
        .map(|(rel, f)| {
            let inner = rel.strip_prefix(a.name.as_str()).unwrap_or("");
            (format!("{prev_rel}{inner}"), f.digest, f.size)
        })
        .collect();
    // Unchanged files are linked from the current version.
    let current = found
        .into_iter()
        .map(|(rel, f)| (rel, (f.digest, f.executable)))
        .collect();
    let swap = Swap {
        artifact: a.name.clone(),
        path: top.to_path_buf(),
        incoming,
        previous,
        replaces,
        old_files,
    };
    Ok(Some((swap, current)))
}

/// The current version's files of an artifact being replaced: place → (digest, executable).
type Current = HashMap<String, (Digest, bool)>;

/// The steps that build the new version of `a` at `swap.incoming`: directories, each file
/// linked from the current version when its content and mode are unchanged, else written.
fn plan_swapped(a: &Artifact, swap: &Swap, current: &Current, steps: &mut Vec<Step>) -> Result<()> {
    let step = |action, path, rel: String| Step {
        action,
        path,
        artifact: a.name.clone(),
        blob: None,
        size: None,
        from: None,
        executable: false,
        rel,
    };
    if a.kind != ArtifactKind::File {
        steps.push(step(Action::Mkdir, swap.incoming.clone(), String::new()));
    }
    for e in &a.entries {
        let rel = entry_rel(a, &e.path);
        let path = match a.kind {
            ArtifactKind::File => swap.incoming.clone(),
            _ => {
                let mut p = swap.incoming.clone();
                p.extend(e.path.split('/'));
                p
            }
        };
        match e.kind {
            EntryType::Dir => steps.push(step(Action::Mkdir, path, String::new())),
            EntryType::File => {
                let (blob, size) = (e.blob.expect("validated"), e.size.expect("validated"));
                let unchanged = current
                    .get(&rel)
                    .is_some_and(|(d, x)| *d == blob && *x == e.executable);
                let mut s = step(
                    if unchanged {
                        Action::Link
                    } else {
                        Action::Write
                    },
                    path,
                    rel.clone(),
                );
                s.blob = Some(blob);
                s.size = Some(size);
                s.executable = e.executable;
                if unchanged {
                    let mut from = swap.path.clone();
                    if a.kind != ArtifactKind::File {
                        from.extend(e.path.split('/'));
                    }
                    s.from = Some(from);
                }
                steps.push(s);
            }
        }
    }
    Ok(())
}

fn is_executable(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

/// Swaps what is at `a` and at `b` atomically (`renameat2(RENAME_EXCHANGE)`): each name then
/// holds what the other held; both must exist, on one filesystem.
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
    };
    let (x, y) = (cstr(a)?, cstr(b)?);
    // SAFETY: both paths are NUL-terminated C strings that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            x.as_ptr(),
            libc::AT_FDCWD,
            y.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `DEST/.airlock` and the directories under it that updates write through must be real
/// directories where they exist: a link planted there would redirect the new and the kept
/// versions out of `DEST`.
pub fn check_meta_dirs(dest: &Path, artifact: &str) -> Result<()> {
    let meta = dest.join(META_DIR);
    for d in [
        meta.clone(),
        meta.join(INCOMING_DIR),
        meta.join(PREVIOUS_DIR),
        meta.join(PREVIOUS_DIR).join(artifact),
    ] {
        match fs::symlink_metadata(&d) {
            Ok(m) if !m.is_dir() => {
                return Err(Error::Conflict(format!(
                    "{} is not a directory (a link?); airlock keeps previous versions there and \
                     does not write through links: move it away",
                    d.display()
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The kept versions of `artifact` in `dest`, oldest first: (name, path).
pub fn kept_versions(dest: &Path, artifact: &str) -> Vec<(String, PathBuf)> {
    let dir = dest.join(META_DIR).join(PREVIOUS_DIR).join(artifact);
    let mut v: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                .filter(|(n, _)| n.split_once('-').is_some())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The bundle id of a kept version's name (`<NANOS>-<BUNDLE_ID>`).
pub fn version_bundle(name: &str) -> &str {
    name.split_once('-').map_or(name, |(_, b)| b)
}

/// Removes the oldest kept versions of `artifact` beyond `keep`; returns the removed ones and
/// the files they held (relative to `dest`). Empty directories left are removed.
pub fn prune(dest: &Path, artifact: &str, keep: usize) -> (Vec<PathBuf>, Vec<String>) {
    let versions = kept_versions(dest, artifact);
    let excess = versions.len().saturating_sub(keep);
    let (mut removed, mut files) = (Vec::new(), Vec::new());
    for (_, path) in versions.into_iter().take(excess) {
        for e in walkdir::WalkDir::new(&path).into_iter().flatten() {
            if e.file_type().is_file() {
                if let Some(rel) = e.path().strip_prefix(dest).ok().and_then(|r| r.to_str()) {
                    files.push(rel.to_string());
                }
            }
        }
        let gone = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed.push(path);
        }
    }
    remove_empty_meta(dest, artifact);
    (removed, files)
}

/// Removes `DEST/.airlock/previous/<artifact>`, `previous/`, `incoming/` and `.airlock/` where
/// they are empty.
pub fn remove_empty_meta(dest: &Path, artifact: &str) {
    let meta = dest.join(META_DIR);
    let _ = fs::remove_dir(meta.join(PREVIOUS_DIR).join(artifact));
    let _ = fs::remove_dir(meta.join(PREVIOUS_DIR));
    let _ = fs::remove_dir(meta.join(INCOMING_DIR));
    let _ = fs::remove_dir(&meta);
}

impl LocalPlan for Plan {
    type Options = FilesOptions;
    fn dest(&self) -> &Path {
        &self.dest
    }
    fn options(&self) -> FilesOptions {
        self.opts.clone()
    }
    fn routed(
        bundle: &Admitted,
        artifacts: &[usize],
        dest: &Path,
        o: &FilesOptions,
    ) -> Result<Plan> {
        let names = super::routed_names(bundle, artifacts);
        plan_with(bundle, dest, &|a| names.contains(&a.name), o)
    }
}

/// The files target: `--files DEST`.
pub type FilesTarget = Local<Plan, FilesOptions>;

impl FilesTarget {
    /// The target for `dest`, with the default `--keep`, not planned yet.
    pub fn new(dest: &Path) -> Self {
        Local::with(dest, FilesOptions::default())
    }
}

pub use super::execute;

impl Target for FilesTarget {
    fn name(&self) -> &'static str {
        "files"
    }
    fn accepts(&self, kind: ArtifactKind) -> bool {
        matches!(kind, ArtifactKind::File | ArtifactKind::Directory)
    }
    fn fallback(&self) -> bool {
        true
    }
    fn recorded(&mut self, holdings: &HoldingsFile) {
        let opts = std::mem::take(&mut self.opts);
        self.opts = opts.with_holdings(&self.dest, holdings);
    }
    fn plan(&mut self, bundle: &Admitted, artifacts: &[usize]) -> Result<()> {
        self.plan_routed(bundle, artifacts)
    }
    fn demand(&self) -> Option<Demand> {
        self.demand_of(
            self.planned()
                .steps
                .iter()
                .filter(|s| s.action == Action::Write)
                .map(|s| Need {
                    digest: s.blob.expect("file steps carry a blob"),
                    git_sha1: None,
                })
                .collect(),
        )
    }
    /// Directories first, then each file from the staging area (or linked from the current
    /// version of an updated artifact); updated artifacts are built beside their current
    /// version, which nothing has touched yet.
    fn commit_content(&mut self, staging: &Staging, j: &mut Journal) -> Result<()> {
        let plan = self.planned();
        let area = self.area(staging);
        j.mkdirs(&plan.dest)?;
        for s in plan.steps.iter().filter(|s| s.action == Action::Mkdir) {
            j.mkdirs(&s.path)?;
        }
        for s in plan.steps.iter() {
            match s.action {
                Action::Write => {
                    if let Some(parent) = s.path.parent() {
                        j.mkdirs(parent)?;
                    }
                    let mode = if s.executable { 0o755 } else { 0o644 };
                    area.install(
                        &s.blob.expect("file steps carry a blob"),
                        s.size.expect("file steps carry a size"),
                        &s.path,
                        Some(mode),
                        j,
                    )?;
                }
                Action::Link => {
                    crate::interrupt::check()?;
                    if let Some(parent) = s.path.parent() {
                        j.mkdirs(parent)?;
                    }
                    let from = s.from.as_deref().expect("link steps have a source");
                    fs::hard_link(from, &s.path).map_err(|e| Error::io("link", &s.path, e))?;
                    j.created(&s.path);
                }
                Action::Mkdir | Action::Keep => {}
            }
        }
        Ok(())
    }
    /// Each updated artifact swapped for its new version (one atomic exchange each), the
    /// replaced version moved to where it is kept; all undone on rollback.
    fn commit_names(&mut self, _staging: &Staging, j: &mut Journal) -> Result<()> {
        let plan = self.planned();
        for s in &plan.swaps {
            crate::interrupt::check()?;
            exchange(&s.incoming, &s.path).map_err(|e| Error::io("swap in", &s.path, e))?;
            let (a, b) = (s.incoming.clone(), s.path.clone());
            j.on_rollback(move || {
                exchange(&a, &b).map_err(|e| Error::io("swap back", &b, e))?;
                Ok(())
            });
            if let Some(parent) = s.previous.parent() {
                j.mkdirs(parent)?;
            }
            fs::rename(&s.incoming, &s.previous)
                .map_err(|e| Error::io("keep the replaced version at", &s.previous, e))?;
            let (a, b) = (s.previous.clone(), s.incoming.clone());
            j.on_rollback(move || {
                fs::rename(&a, &b).map_err(|e| Error::io("move back", &b, e))?;
                Ok(())
            });
            if let Some(parent) = s.path.parent() {
                fsutil::sync_dir(parent)?;
            }
        }
        Ok(())
    }
    fn cleanup(&mut self) {
        let Some(plan) = self.plan.as_mut() else {
            return;
        };
        for s in &plan.swaps {
            if let Some(run) = s.incoming.parent() {
                let _ = fs::remove_dir(run);
            }
        }
        let names: Vec<String> = plan.swaps.iter().map(|s| s.artifact.clone()).collect();
        for name in names {
            let (removed, files) = prune(&plan.dest, &name, plan.keep);
            plan.removed.extend(removed);
            plan.removed_files.extend(files);
        }
    }
    /// Each file written or kept, and the files of the versions kept for rollback.
    fn locations(&self, bundle: &Admitted) -> Vec<(Digest, Location)> {
        let bundle_id = bundle.manifest().bundle_id.as_str();
        let plan = self.planned();
        let Some(root) = store_root(&plan.dest) else {
            return Vec::new();
        };
        let loc = |path: &str, size: u64, bundle: &str| Location {
            store: StoreKind::Files,
            root: root.clone(),
            path: path.to_string(),
            size,
            bundle_id: bundle.to_string(),
        };
        let mut out: Vec<(Digest, Location)> = plan
            .steps
            .iter()
            .filter(|s| s.action != Action::Mkdir && !s.rel.is_empty())
            .filter_map(|s| Some((s.blob?, loc(&s.rel, s.size?, bundle_id))))
            .collect();
        // The replaced versions, where they are kept (unless removed already).
        for s in &plan.swaps {
            if plan.removed.contains(&s.previous) {
                continue;
            }
            let by = s.replaces.clone().unwrap_or_else(|| bundle_id.to_string());
            for (rel, d, size) in &s.old_files {
                out.push((*d, loc(rel, *size, &by)));
            }
        }
        out
    }
    fn forgotten(&self) -> Vec<(StoreKind, String, String)> {
        let plan = self.planned();
        let Some(root) = store_root(&plan.dest) else {
            return Vec::new();
        };
        let mut out: Vec<(StoreKind, String, String)> = plan
            .removed_files
            .iter()
            .map(|f| (StoreKind::Files, root.clone(), f.clone()))
            .collect();
        // Files of a replaced version that the new one no longer has.
        let now: std::collections::HashSet<&str> =
            plan.steps.iter().map(|s| s.rel.as_str()).collect();
        for s in &plan.swaps {
            let prefix = format!("{}/", s.artifact);
            for (rel, _) in plan.opts.places.iter() {
                let mine = rel == &s.artifact || rel.starts_with(&prefix);
                if mine && !now.contains(rel.as_str()) {
                    out.push((StoreKind::Files, root.clone(), rel.clone()));
                }
            }
        }
        out
    }
    fn report(&self) -> Vec<(&'static str, serde_json::Value)> {
        let p = self.planned();
        vec![
            ("plan", serde_json::to_value(p).expect("serialisable")),
            ("written", p.count(Action::Write).into()),
            ("kept", p.count(Action::Keep).into()),
            ("linked", p.count(Action::Link).into()),
            ("replaced", p.swaps.len().into()),
            ("directories_created", p.count(Action::Mkdir).into()),
        ]
    }
    fn summary(&self, dry_run: bool) -> String {
        let p = self.planned();
        let mut s = String::new();
        if dry_run {
            for step in &p.steps {
                let what = match step.action {
                    Action::Mkdir => "mkdir",
                    Action::Write => "write",
                    Action::Keep => "keep ",
                    Action::Link => "link ",
                };
                let size = step
                    .size
                    .map(|n| format!(" ({})", output::bytes(n)))
                    .unwrap_or_default();
                s += &format!("  {what} {}{size}\n", output::escape_path(&step.path));
            }
            for sw in &p.swaps {
                s += &format!(
                    "  swap {} (the replaced version kept at {})\n",
                    output::escape_path(&sw.path),
                    output::escape_path(&sw.previous)
                );
            }
        }
        let mut did = Vec::new();
        let files = p.count(Action::Write);
        if files > 0 {
            did.push(format!(
                "{} ({})",
                super::counted(files, "file", "files"),
                output::bytes(p.bytes_to_write())
            ));
        }
        let dirs = p.count(Action::Mkdir);
        if dirs > 0 {
            did.push(super::counted(dirs, "directory", "directories"));
        }
        if !p.swaps.is_empty() {
            let names: Vec<String> = p
                .swaps
                .iter()
                .map(|s| crate::format::text::escape(&s.artifact).to_string())
                .collect();
            did.push(format!(
                "{} in place ({}; {} unchanged files linked; {} kept per artifact)",
                super::counted(p.swaps.len(), "artifact updated", "artifacts updated"),
                names.join(", "),
                p.count(Action::Link),
                p.keep
            ));
        }
        s += &super::summary_line(
            dry_run,
            &output::escape_path(&p.dest).to_string(),
            &did,
            // Files (and single-file artifacts) found in place; directories are not counted.
            p.steps
                .iter()
                .filter(|s| s.action == Action::Keep && s.size.is_some())
                .count(),
        );
        s
    }
}
