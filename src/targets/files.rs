//! The plain-directory target: `DEST/<artifact name>` for a file artifact,
//! `DEST/<artifact name>/<path>` for each entry of a directory artifact.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::bundle::{reader, VerifiedBundle};
use crate::error::{Error, Result};
use crate::format::{Artifact, ArtifactKind, Blob, Digest, EntryType};
use crate::fsutil;
use crate::progress::Progress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Create the directory.
    Mkdir,
    /// Write the file.
    Write,
    /// Already present with the same content: nothing to do.
    Keep,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub action: Action,
    pub path: PathBuf,
    pub artifact: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip)]
    executable: bool,
}

/// What an import into a directory will do.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub dest: PathBuf,
    pub steps: Vec<Step>,
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

/// Works out every step, reading (never writing) the destination. Fails on the first conflict:
/// an existing file with other content, or a file where a directory must go (or the reverse).
/// Only artifacts for which `include` is true are planned.
pub fn plan(
    bundle: &VerifiedBundle,
    dest: &Path,
    include: &dyn Fn(&Artifact) -> bool,
) -> Result<Plan> {
    let mut steps = Vec::new();
    let mut planned_dirs: HashMap<PathBuf, ()> = HashMap::new();
    for a in bundle.manifest().artifacts.iter().filter(|a| include(a)) {
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
                executable: false,
            });
            Ok(())
        };
        if a.kind != ArtifactKind::File {
            push_dir(fsutil::safe_join(dest, &a.name)?, &mut steps)?;
        }
        for e in &a.entries {
            let rel = match a.kind {
                ArtifactKind::File => a.name.clone(),
                _ => format!("{}/{}", a.name, e.path),
            };
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
                        executable: e.executable,
                    });
                }
            }
        }
    }
    Ok(Plan {
        dest: dest.to_path_buf(),
        steps,
    })
}

/// Carries out a plan: directories first, then each file through a verified temp file (one
/// file per core). If anything fails, the files and directories this call created are removed
/// again (directories only if empty), so the destination is left as it was.
///
/// A process killed outright (SIGKILL, power loss) cannot undo anything: every file it
/// completed is complete and verified, and it may leave `.airlock-tmp-*` temp files, which a
/// re-run ignores (re-importing writes only what is missing).
pub fn execute(bundle: &VerifiedBundle, plan: &Plan, progress: &dyn Progress) -> Result<()> {
    let mut journal = Journal::default();
    let result = run(bundle, plan, progress, &mut journal);
    if result.is_err() {
        journal.rollback();
    }
    result
}

/// What an execution created, removed again in reverse order if it fails.
#[derive(Default)]
struct Journal {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Journal {
    /// Creates `path` and any missing parents, recording each directory it made.
    fn mkdirs(&mut self, path: &Path) -> Result<()> {
        self.dirs.extend(fsutil::create_dirs_recorded(path)?);
        Ok(())
    }

    /// Best effort: removes the files written, then the directories made (if empty).
    fn rollback(self) {
        for f in self.files.iter().rev() {
            let _ = fs::remove_file(f);
        }
        for d in self.dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

fn run(
    bundle: &VerifiedBundle,
    plan: &Plan,
    progress: &dyn Progress,
    journal: &mut Journal,
) -> Result<()> {
    let blobs: HashMap<Digest, &Blob> = bundle
        .manifest()
        .blobs
        .iter()
        .map(|b| (b.digest, b))
        .collect();
    journal.mkdirs(&plan.dest)?;
    for s in plan.steps.iter().filter(|s| s.action == Action::Mkdir) {
        journal.mkdirs(&s.path)?;
    }
    progress.start("importing files", plan.bytes_to_write());
    // One file per core: each is read out of the chunks, re-hashed and written on its own. The
    // first failure stops further files from starting; every file that was completed is
    // journaled (the parallel loop returns only once all running writes have ended).
    use rayon::prelude::*;
    let writes: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::Write)
        .collect();
    let written = Mutex::new(Vec::new());
    let result = writes.par_iter().try_for_each(|s| {
        let blob = blobs[&s.blob.expect("file steps carry a blob")];
        if write_file(bundle, blob, &s.path, s.executable, progress)? {
            written.lock().expect("not poisoned").push(s.path.clone());
        }
        Ok(())
    });
    journal
        .files
        .extend(written.into_inner().expect("not poisoned"));
    progress.finish();
    result?;
    // New directories are entries of their parents: make them durable too.
    let mut synced = HashSet::new();
    for d in &journal.dirs {
        if let Some(p) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            if synced.insert(p.to_path_buf()) {
                fsutil::sync_dir(p)?;
            }
        }
    }
    Ok(())
}

/// Writes one file; false when an identical file appeared meanwhile (another import), which is
/// then not this import's to remove.
fn write_file(
    bundle: &VerifiedBundle,
    blob: &Blob,
    path: &Path,
    executable: bool,
    progress: &dyn Progress,
) -> Result<bool> {
    let dir = path.parent().expect("targets live under dest");
    let mut tmp = tempfile::Builder::new()
        .prefix(".airlock-tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create temporary file in", dir, e))?;
    reader::copy_blob(bundle, blob, tmp.as_file_mut(), progress).map_err(|e| annotate(e, path))?;
    fsutil::set_mode(tmp.as_file(), if executable { 0o755 } else { 0o644 })
        .map_err(|e| Error::io("set mode of", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("sync", tmp.path(), e))?;
    if let Err(e) = tmp.persist_noclobber(path) {
        let same = e.error.kind() == io::ErrorKind::AlreadyExists
            && fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
            && fsutil::hash_file(path).is_ok_and(|(d, n)| d == blob.digest && n == blob.size);
        if same {
            return Ok(false);
        }
        return Err(Error::io("move into place", path, e.error));
    }
    fsutil::sync_dir(dir)?;
    Ok(true)
}

fn annotate(e: Error, path: &Path) -> Error {
    match e {
        Error::Other(msg) => Error::Other(format!("{msg} (while writing {})", path.display())),
        other => other,
    }
}
