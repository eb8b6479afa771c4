//! The plain-directory target: `DEST/<artifact name>` for a file artifact,
//! `DEST/<artifact name>/<path>` for each entry of a directory artifact.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Local, LocalPlan, Target};
use crate::error::{Error, Result};
use crate::format::{Artifact, ArtifactKind, Digest, EntryType};
use crate::fsutil;
use crate::output;
use crate::stage::{Admitted, Demand, Journal, Need, Staging};

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
#[derive(Debug, Clone, Serialize)]
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
pub fn plan(bundle: &Admitted, dest: &Path, include: &dyn Fn(&Artifact) -> bool) -> Result<Plan> {
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

impl LocalPlan for Plan {
    type Options = ();
    fn dest(&self) -> &Path {
        &self.dest
    }
    fn options(&self) {}
    fn routed(bundle: &Admitted, artifacts: &[usize], dest: &Path, _: &()) -> Result<Plan> {
        let names = super::routed_names(bundle, artifacts);
        plan(bundle, dest, &|a| names.contains(&a.name))
    }
}

/// The files target: `--files DEST`.
pub type FilesTarget = Local<Plan>;

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
    /// Directories first, then each file from the staging area.
    fn commit_content(&mut self, staging: &Staging, j: &mut Journal) -> Result<()> {
        let plan = self.planned();
        let area = self.area(staging);
        j.mkdirs(&plan.dest)?;
        for s in plan.steps.iter().filter(|s| s.action == Action::Mkdir) {
            j.mkdirs(&s.path)?;
        }
        for s in plan.steps.iter().filter(|s| s.action == Action::Write) {
            let mode = if s.executable { 0o755 } else { 0o644 };
            area.install(
                &s.blob.expect("file steps carry a blob"),
                s.size.expect("file steps carry a size"),
                &s.path,
                Some(mode),
                j,
            )?;
        }
        Ok(())
    }
    /// Each file written or kept.
    fn locations(&self, bundle: &Admitted) -> Vec<(Digest, crate::state::Location)> {
        let p = self.planned();
        let files = p
            .steps
            .iter()
            .filter_map(|s| Some((s.blob?, s.size?, s.path.as_path())));
        super::local_locations(crate::state::StoreKind::Files, &p.dest, bundle, files)
    }
    fn report(&self) -> Vec<(&'static str, serde_json::Value)> {
        let p = self.planned();
        vec![
            ("plan", serde_json::to_value(p).expect("serialisable")),
            ("written", p.count(Action::Write).into()),
            ("kept", p.count(Action::Keep).into()),
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
                };
                let size = step
                    .size
                    .map(|n| format!(" ({})", output::bytes(n)))
                    .unwrap_or_default();
                s += &format!("  {what} {}{size}\n", output::escape_path(&step.path));
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
