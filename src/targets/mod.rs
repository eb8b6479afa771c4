//! Where bytes go on the isolated side. Every target implements [`Target`]: it plans against an
//! [`Admitted`] bundle (reading, never writing, its destination: conflicts abort before
//! anything is staged), says what it needs staged on its own filesystem ([`Demand`]), and
//! commits from the staging area through [`crate::stage::Area::install`] — content first, names
//! (refs, manifests, tags, `index.json`) last — recording every step in the import's one
//! [`Journal`]. The import pipeline (`crate::import`) drives them all: every target stages
//! before any commits, and a failure anywhere rolls back every target already committed.
//!
//! Adding a target means one file here and one line in [`crate::import::choose`].

use crate::error::Result;
use crate::format::ArtifactKind;
use crate::progress::Progress;
use crate::stage::{Admitted, Demand, Journal, Staging};

pub mod files;
pub mod hf_cache;
pub mod modelfile;
pub mod models_dir;
pub mod oci_layout;
pub mod ollama;
pub mod registry;
pub mod writes;

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
    /// Fields of the `--json` report (the plan, and what was done).
    fn report(&self) -> Vec<(&'static str, serde_json::Value)>;
    /// Lines of the human report: the plan in a dry run, else what was done.
    fn summary(&self, dry_run: bool) -> String;
}
