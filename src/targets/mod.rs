//! Where bytes go on the isolated side. Every target implements [`Target`]: it plans against an
//! [`Admitted`] bundle (reading, never writing, its destination: conflicts abort before
//! anything is staged), says what it needs staged on its own filesystem ([`Demand`]), and
//! commits from the staging area through [`crate::stage::Area::install`] — content first, names
//! (refs, manifests, tags, `index.json`) last — recording every step in the import's one
//! [`Journal`]. The import pipeline (`crate::import`) drives them all: every target stages
//! before any commits, and a failure anywhere rolls back every target already committed.
//!
//! Adding a target means one file here and one line in `commands/import.rs::choose`. A target
//! that writes a local directory is a [`Local`] over its plan type: the plan implements
//! [`LocalPlan`] (how it is made from the routed artifacts), the file implements [`Target`] for
//! `Local<ItsPlan>` with the helpers below, and [`execute`] runs one of its plans alone.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::format::{ArtifactKind, Digest};
use crate::progress::Progress;
use crate::stage::{Admitted, Area, Demand, Journal, Need, Staging};
use crate::state::{Location, StoreKind};

pub mod files;
pub mod hf_cache;
pub mod modelfile;
pub mod models_dir;
pub mod oci_layout;
pub mod ollama;
pub mod registry;
pub mod writes;

/// `count` and the noun (`"blob"`, plural `"blobs"`), for the summaries: `1 blob`, `3 blobs`.
pub(crate) fn counted(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// One line of a target's human summary: `  into WHERE: wrote A, B; N already present`
/// (past tense, what was done), or `would write …` in a dry run (the plan). `did` lists what
/// is (or would be) written, `present` how many items were already there; an empty `did` says
/// that nothing was (or would be) written.
pub(crate) fn summary_line(dry_run: bool, into: &str, did: &[String], present: usize) -> String {
    let mut s = format!("  into {into}: ");
    if did.is_empty() {
        s += if dry_run {
            "would write nothing"
        } else {
            "wrote nothing"
        };
    } else {
        s += if dry_run { "would write " } else { "wrote " };
        s += &did.join(", ");
    }
    if present > 0 {
        s += &format!("; {present} already present");
    }
    s.push('\n');
    s
}

/// The names of the artifacts at `indices` (to plan only those).
pub(crate) fn routed_names(
    bundle: &Admitted,
    indices: &[usize],
) -> std::collections::HashSet<String> {
    indices
        .iter()
        .map(|&i| bundle.manifest().artifacts[i].name.clone())
        .collect()
}

/// The locations (`holdings.json`) of blob files under a local store's root `dest`: each
/// `(digest, size, path)` with `path` under `dest`, recorded relative to the store's absolute
/// root. A path not under `dest`, or not UTF-8, is left out (a location is a hint).
/// How a local store's root is recorded in the holdings (and looked up): its canonical path
/// (symbolic links resolved, so two names of one directory are one root), else its absolute
/// path; `None` when not UTF-8 (not recorded).
pub(crate) fn store_root(dest: &Path) -> Option<String> {
    std::fs::canonicalize(dest)
        .or_else(|_| std::path::absolute(dest))
        .ok()
        .and_then(|p| p.into_os_string().into_string().ok())
}

pub(crate) fn local_locations<'p>(
    store: StoreKind,
    dest: &Path,
    bundle: &Admitted,
    files: impl IntoIterator<Item = (Digest, u64, &'p Path)>,
) -> Vec<(Digest, Location)> {
    let Some(root_s) = store_root(dest) else {
        return Vec::new();
    };
    let bundle_id = &bundle.manifest().bundle_id;
    files
        .into_iter()
        .filter_map(|(digest, size, path)| {
            let rel = path.strip_prefix(dest).ok()?.to_str()?;
            (!rel.is_empty()).then(|| {
                (
                    digest,
                    Location {
                        store,
                        root: root_s.to_string(),
                        path: rel.to_string(),
                        size,
                        bundle_id: bundle_id.clone(),
                    },
                )
            })
        })
        .collect()
}

/// The plan of a target that writes one local directory (files, HF cache, Ollama store, models
/// directory, OCI layout): serialisable for `--dry-run` and `--json`, and enough to execute.
pub trait LocalPlan: Clone + 'static {
    /// What the target is told besides its destination (`()` for most; the HF cache's layout).
    type Options;
    /// The directory this plan writes.
    fn dest(&self) -> &Path;
    /// The options it was made with (to execute it alone).
    fn options(&self) -> Self::Options;
    /// Works out every step for the artifacts routed here (indices into the manifest's
    /// `artifacts`), reading `dest` but never writing it; a conflict fails here.
    fn routed(
        bundle: &Admitted,
        artifacts: &[usize],
        dest: &Path,
        opts: &Self::Options,
    ) -> Result<Self>;
}

/// A local target: its destination, its options and, once planned, its plan. Each target file
/// names its own (`pub type FilesTarget = Local<Plan>;`) and implements [`Target`] for it.
pub struct Local<P, O = ()> {
    dest: PathBuf,
    opts: O,
    plan: Option<P>,
}

impl<P: LocalPlan<Options = ()>> Local<P, ()> {
    /// The target for `dest`, not planned yet.
    pub fn new(dest: &Path) -> Self {
        Local::with(dest, ())
    }
}

impl<P: LocalPlan<Options = O>, O> Local<P, O> {
    /// The target for `dest` with `opts`, not planned yet.
    pub fn with(dest: &Path, opts: O) -> Self {
        Local {
            dest: dest.to_path_buf(),
            opts,
            plan: None,
        }
    }
    /// The target that carries out `plan` as it stands.
    fn of(plan: P) -> Self {
        Local {
            dest: plan.dest().to_path_buf(),
            opts: plan.options(),
            plan: Some(plan),
        }
    }
    /// [`Target::plan`] of every local target.
    fn plan_routed(&mut self, bundle: &Admitted, artifacts: &[usize]) -> Result<()> {
        self.plan = Some(P::routed(bundle, artifacts, &self.dest, &self.opts)?);
        Ok(())
    }
    fn planned(&self) -> &P {
        self.plan.as_ref().expect("planned")
    }
    /// [`Target::demand`]: `needs` staged on this target's filesystem.
    fn demand_of(&self, needs: Vec<Need>) -> Option<Demand> {
        Some(Demand {
            root: self.dest.clone(),
            needs,
        })
    }
    /// This target's staging area.
    fn area<'s>(&self, staging: &'s Staging) -> &'s Area {
        staging.area(&self.dest)
    }
}

/// Stages and commits one local target's `plan` alone (library use; `airlock import` drives
/// every target through [`crate::import::run`]).
pub fn execute<P: LocalPlan>(bundle: &Admitted, plan: &P, progress: &dyn Progress) -> Result<()>
where
    Local<P, P::Options>: Target + 'static,
{
    let t = Local::of(plan.clone());
    crate::import::execute(bundle, vec![Box::new(t)], progress).map(drop)
}

/// One import target (a plain directory, a Hugging Face cache, an Ollama store, a models
/// directory, an OCI layout, a registry).
pub trait Target {
    /// Its name in messages and `--json` (`files`, `hf-cache`, …).
    fn name(&self) -> &'static str;
    /// Whether artifacts of `kind` belong here.
    fn accepts(&self, kind: ArtifactKind) -> bool;
    /// Whether this target also takes the artifacts no other chosen target accepts (the files
    /// target: an image as an OCI layout directory, a model as its files).
    fn fallback(&self) -> bool {
        false
    }
    /// Works out every step for the artifacts routed here (indices into the manifest's
    /// `artifacts`), reading the destination but never writing it; a conflict fails here.
    fn plan(&mut self, bundle: &Admitted, artifacts: &[usize]) -> Result<()>;
    /// A remote target checks that it is reachable, that its credentials work and that pushing
    /// is permitted, before anything is staged anywhere.
    fn probe(&mut self) -> Result<()> {
        Ok(())
    }
    /// What must be staged on this target's filesystem (`None`: nothing local).
    fn demand(&self) -> Option<Demand>;
    /// Runs once every local staging area holds its verified blobs, before any target commits
    /// (the registry uploads its blobs here: unreferenced, they name nothing).
    fn stage(&mut self, _bundle: &Admitted, _staging: &Staging, _p: &dyn Progress) -> Result<()> {
        Ok(())
    }
    /// Puts the content in place (blobs, files, links); nothing names it yet.
    fn commit_content(&mut self, staging: &Staging, j: &mut Journal) -> Result<()>;
    /// Names the content (refs, manifests, tags, `index.json`), after every target's content
    /// is in place and durable.
    fn commit_names(&mut self, _staging: &Staging, _j: &mut Journal) -> Result<()> {
        Ok(())
    }
    /// What airlock's state records this target's store as holding (`holdings.json`), given
    /// before [`Target::plan`]: the files target tells a file airlock wrote (which an update may
    /// replace) from one changed locally (a conflict).
    fn recorded(&mut self, _holdings: &crate::state::HoldingsFile) {}
    /// After a completed import: where this target wrote, or found already in place, each blob
    /// of the artifacts routed to it (recorded in `holdings.json`, so that a later delta import
    /// finds them without scanning the store, and an update tells a file airlock wrote from one
    /// changed since). Empty: nothing recorded.
    fn locations(&self, _bundle: &Admitted) -> Vec<(Digest, Location)> {
        Vec::new()
    }
    /// After a completed commit: the places this target no longer holds anything at.
    fn forgotten(&self) -> Vec<(crate::state::StoreKind, String, String)> {
        Vec::new()
    }
    /// Once every target committed (nothing will be rolled back): removes what the commit
    /// replaced beyond what is kept (the files target's `--keep`). Best effort.
    fn cleanup(&mut self) {}
    /// After planning and probing: the blobs this target will read from the bundle (staged for
    /// it, or pushed) because its store does not hold them. A delta bundle's external blobs
    /// among them must be available elsewhere on this machine, or the import is refused.
    fn reads(&self) -> Vec<Digest> {
        self.demand()
            .map(|d| d.needs.into_iter().map(|n| n.digest).collect())
            .unwrap_or_default()
    }
    /// Fields of the `--json` report (the plan, and what was done).
    fn report(&self) -> Vec<(&'static str, serde_json::Value)>;
    /// Lines of the human report: the plan in a dry run (`would write …`), else what was done,
    /// in the past tense (`wrote 12 blobs (93.8 MiB), …; 3 already present`; see
    /// [`summary_line`]).
    fn summary(&self, dry_run: bool) -> String;
}
