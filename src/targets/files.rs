//! The plain-directory target: `DEST/<artifact name>` for a file artifact,
//! `DEST/<artifact name>/<path>` for each entry of a directory artifact.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

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

/// Carries out a plan: directories first, then each file through a verified temp file.
pub fn execute(bundle: &VerifiedBundle, plan: &Plan, progress: &dyn Progress) -> Result<()> {
    let blobs: HashMap<Digest, &Blob> = bundle
        .manifest()
        .blobs
        .iter()
        .map(|b| (b.digest, b))
        .collect();
    fsutil::create_dir_all(&plan.dest)?;
    for s in plan.steps.iter().filter(|s| s.action == Action::Mkdir) {
        fsutil::create_dir_all(&s.path)?;
    }
    progress.start("importing files", plan.bytes_to_write());
    // One file per core: each is read out of the chunks, re-hashed and written on its own.
    use rayon::prelude::*;
    let writes: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::Write)
        .collect();
    let result = writes.par_iter().try_for_each(|s| {
        let blob = blobs[&s.blob.expect("file steps carry a blob")];
        write_file(bundle, blob, &s.path, s.executable, progress)
    });
    progress.finish();
    result
}

fn write_file(
    bundle: &VerifiedBundle,
    blob: &Blob,
    path: &Path,
    executable: bool,
    progress: &dyn Progress,
) -> Result<()> {
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
    tmp.persist_noclobber(path)
        .map_err(|e| Error::io("move into place", path, e.error))?;
    fsutil::sync_dir(dir)
}

fn annotate(e: Error, path: &Path) -> Error {
    match e {
        Error::Other(msg) => Error::Other(format!("{msg} (while writing {})", path.display())),
        other => other,
    }
}
