//! The Hugging Face cache as an import target: demand, commit (content, then names), report.

use std::path::Path;

use super::*;
use crate::format::text::escape;
use crate::output;
use crate::stage::{Admitted, Demand, Journal, Need, Staging};
use crate::targets::{Local, LocalPlan, Target};

impl LocalPlan for HfCachePlan {
    type Options = HfCacheOptions;
    fn dest(&self) -> &Path {
        &self.dest
    }
    fn options(&self) -> HfCacheOptions {
        HfCacheOptions {
            layout: self.layout,
        }
    }
    fn routed(
        bundle: &Admitted,
        artifacts: &[usize],
        dest: &Path,
        opts: &HfCacheOptions,
    ) -> Result<Self> {
        plan_routed(bundle, artifacts, dest, opts)
    }
}

/// The Hugging Face cache target: `--hf-cache [DIR]`.
pub type HfCacheTarget = Local<HfCachePlan, HfCacheOptions>;

impl HfCacheTarget {
    /// The target for `dest`, its snapshots laid out as `layout`.
    pub fn new(dest: &Path, layout: SnapshotLayout) -> HfCacheTarget {
        Local::with(dest, HfCacheOptions { layout })
    }
}

pub use crate::targets::execute;

/// The git blob SHA-1 check of a use whose etag is one (40 hex digits).
fn git_check(etag: &str, what: impl FnOnce() -> String) -> Option<(String, String)> {
    (etag.len() == 40).then(|| (etag.to_string(), what()))
}

impl Target for HfCacheTarget {
    fn name(&self) -> &'static str {
        "hf-cache"
    }
    fn accepts(&self, kind: ArtifactKind) -> bool {
        kind == ArtifactKind::HfRepo
    }
    fn plan(&mut self, bundle: &Admitted, artifacts: &[usize]) -> Result<()> {
        self.plan_routed(bundle, artifacts)
    }
    /// Each blob (`blobs/<etag>`: LFS files by their SHA-256, regular files by their git
    /// SHA-1, each recorded under the file's SHA-256) written or kept; in the files layout,
    /// each snapshot file.
    fn locations(&self, bundle: &Admitted) -> Vec<(Digest, crate::state::Location)> {
        let p = self.planned();
        let files: Vec<(Digest, u64, &Path)> = match p.layout {
            SnapshotLayout::Symlinks => p
                .blobs
                .iter()
                .map(|b| (b.blob, b.size, b.path.as_path()))
                .collect(),
            SnapshotLayout::Files => p
                .files
                .iter()
                .map(|f| (f.blob, f.size, f.path.as_path()))
                .collect(),
        };
        crate::targets::local_locations(crate::state::StoreKind::HfCache, &p.dest, bundle, files)
    }
    /// Blobs (symlinks layout) or snapshot files (files layout) to write, each with its git
    /// blob SHA-1 etag checked while staging (the manifest validation can only check the
    /// SHA-256 ones), so no blob is filed under a wrong name.
    fn demand(&self) -> Option<Demand> {
        let p = self.planned();
        let mut needs = Vec::new();
        match p.layout {
            SnapshotLayout::Symlinks => {
                for b in p.blobs.iter().filter(|b| b.action == Action::Write) {
                    needs.push(Need {
                        digest: b.blob,
                        // Named by the (first) repository file that is this blob.
                        git_sha1: git_check(&b.etag, || {
                            match p.files.iter().find(|f| f.etag == b.etag) {
                                Some(f) => format!("file {}", escape(&f.file)),
                                None => format!("blob {}", escape(&b.path.display().to_string())),
                            }
                        }),
                    });
                }
            }
            SnapshotLayout::Files => {
                for f in p.files.iter().filter(|f| f.action == Action::Write) {
                    needs.push(Need {
                        digest: f.blob,
                        git_sha1: git_check(&f.etag, || format!("file {}", escape(&f.file))),
                    });
                }
            }
        }
        self.demand_of(needs)
    }
    /// `CACHEDIR.TAG`, blobs, snapshot links (or files).
    fn commit_content(&mut self, staging: &Staging, j: &mut Journal) -> Result<()> {
        let plan = self.planned();
        if plan.is_noop() {
            return Ok(());
        }
        let area = self.area(staging);
        j.mkdirs(&plan.dest)?;
        if plan.create_cachedir_tag {
            // Best effort, as the client: someone else may have written it meanwhile.
            let _ = area.write_small(
                &plan.dest.join(CACHEDIR_TAG),
                CACHEDIR_TAG_CONTENT.as_bytes(),
                None,
                None,
                j,
            );
        }
        for r in &plan.repos {
            j.mkdirs(&r.folder.join("blobs"))?;
            j.mkdirs(&r.snapshot)?;
        }
        for b in plan.blobs.iter().filter(|b| b.action == Action::Write) {
            area.install(&b.blob, b.size, &b.path, None, j)?;
        }
        for f in plan.files.iter().filter(|f| f.action == Action::Write) {
            j.mkdirs(parent(&f.path))?;
            match &f.link {
                Some(target) => {
                    symlink(target, &f.path)?;
                    j.created(&f.path);
                }
                None => {
                    area.install(&f.blob, f.size, &f.path, None, j)?;
                }
            }
        }
        Ok(())
    }
    /// Tree listings, then the refs, last: a ref never names a snapshot not complete on disk.
    fn commit_names(&mut self, staging: &Staging, j: &mut Journal) -> Result<()> {
        let plan = self.planned();
        let area = self.area(staging);
        for t in plan.trees.iter().filter(|t| t.action == Action::Write) {
            j.mkdirs(parent(&t.path))?;
            area.write_small(&t.path, t.content.as_bytes(), None, None, j)?;
        }
        for r in plan.refs.iter().filter(|r| r.action != RefAction::Keep) {
            j.mkdirs(parent(&r.path))?;
            // Refuse to lose a change made since planning.
            if !matches!(
                probe(&r.path)?,
                Found::Absent | Found::File { link: None, .. }
            ) {
                return Err(Error::Conflict(format!(
                    "{} is no longer a regular file; run the import again",
                    r.path.display()
                )));
            }
            let previous = r.previous.as_deref().map(str::as_bytes);
            area.write_small(&r.path, r.commit.as_bytes(), None, previous, j)?;
        }
        Ok(())
    }
    fn report(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![(
            "hf_cache",
            serde_json::to_value(self.planned()).expect("serialisable"),
        )]
    }
    fn summary(&self, dry_run: bool) -> String {
        let p = self.planned();
        let mut did = Vec::new();
        let snapshots = p.repos.iter().filter(|r| r.new_snapshot).count();
        if snapshots > 0 {
            did.push(crate::targets::counted(
                snapshots,
                "HF snapshot",
                "HF snapshots",
            ));
        }
        let blobs = p.blobs_to_write();
        let files = p.files_to_write();
        let bytes = output::bytes(p.bytes_to_write());
        match p.layout {
            SnapshotLayout::Symlinks if blobs > 0 => did.push(format!(
                "{} ({bytes})",
                crate::targets::counted(blobs, "blob", "blobs")
            )),
            SnapshotLayout::Files if files > 0 => did.push(format!(
                "{} ({bytes})",
                crate::targets::counted(files, "snapshot file", "snapshot files")
            )),
            _ => {}
        }
        if p.layout == SnapshotLayout::Symlinks && files > 0 {
            did.push(crate::targets::counted(
                files,
                "snapshot link",
                "snapshot links",
            ));
        }
        let refs = p.refs_to_write();
        if refs > 0 {
            did.push(crate::targets::counted(refs, "ref", "refs"));
        }
        let present = match p.layout {
            SnapshotLayout::Symlinks => p.blobs.len() - blobs,
            SnapshotLayout::Files => p.files.len() - files,
        };
        crate::targets::summary_line(
            dry_run,
            &format!("Hugging Face cache {}", output::escape_path(&p.dest)),
            &did,
            present,
        )
    }
}

fn parent(p: &Path) -> &Path {
    p.parent().expect("cache paths live in a folder")
}

#[cfg(unix)]
fn symlink(target: &str, path: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, path).map_err(|e| Error::io("create symbolic link", path, e))
}

#[cfg(not(unix))]
fn symlink(_target: &str, path: &Path) -> Result<()> {
    Err(Error::Usage(format!(
        "cannot create the symbolic link {} on this platform; use the plain-files layout",
        path.display()
    )))
}
