//! The Hugging Face cache target (`--hf-cache DIR`): every `hf-repo` artifact becomes exactly
//! the layout `huggingface_hub` (2.4.0) writes when it downloads, so `from_pretrained`,
//! `hf_hub_download` and `snapshot_download` find it with `HF_HUB_OFFLINE=1`:
//!
//! ```text
//! DIR/CACHEDIR.TAG                                   (if absent; huggingface_hub's exact text)
//! DIR/{models|datasets}--ORG--NAME/blobs/<etag>      content (etag: git blob SHA-1, or SHA-256 for LFS)
//! DIR/…/snapshots/<commit>/<path>                    -> ../../blobs/<etag> (one more ../ per folder)
//! DIR/…/refs/<revision>                              the commit, 40 hex digits, no newline
//! ```
//!
//! Decisions (see `_create_symlink`, `_cache_commit_hash_for_specific_revision`, `_chmod_and_move`
//! and `utils/_cache_manager.py` in huggingface_hub):
//!
//! - `refs/<revision>` is written only when the revision is not the commit itself (as the client
//!   does); a revision naming a branch may move to a newer commit (that is how a newer bundle
//!   moves `main`); the old snapshot stays. A revision that looks like a commit but is not the
//!   commit is refused.
//! - `trees/<commit>.json` (the client's cached tree listing, trusted forever) is written only
//!   for a complete snapshot whose LFS files record their pointer's git id (airlock's `hf://`
//!   source records it), byte for byte as the client writes it — so the cache equals the one
//!   `hf download` makes. Never for a filtered snapshot: it would make offline
//!   `snapshot_download` raise `IncompleteSnapshotError`. An existing listing is kept. Without
//!   one, the client returns the snapshot folder as it is. `.locks/` and `.no_exist/` are not
//!   written either (both optional); an existing `.no_exist/<commit>/<path>` marker for a file
//!   the bundle carries is a conflict (the client would believe the marker).
//! - Modes follow the client: files are created 0666 and directories 0777, both less the umask
//!   (0644 / 0755 under the usual umask 022), exactly what `hf download` leaves.
//! - [`SnapshotLayout::Files`] is the client's own fallback where symlinks are unavailable
//!   (`HF_HUB_DISABLE_SYMLINKS=1`, Windows without developer mode): real files in
//!   `snapshots/<commit>/`, `blobs/` left empty.
//!
//! - Every git blob SHA-1 etag of a blob written is checked against the content while it is
//!   staged (the manifest validation can only check the SHA-256 ones), so no blob is filed
//!   under a wrong name.
//!
//! [`plan`] only reads and fails on the first conflict (a blob or snapshot file with other
//! content, a link pointing elsewhere, something that is not a directory where one must be, a
//! symlink on the way) before anything is written. The commit installs the staged blobs
//! (renamed without clobbering), then the snapshot links; after the flush of every target's
//! content, the tree listings and refs last, so a ref never names a snapshot that is not
//! complete on disk. If anything fails, the import's journal removes everything created (and
//! restores refs changed), so the cache is left as it was; re-importing is a no-op.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::{ArtifactKind, Digest, HfRepoType};

mod env;
mod plan;
mod target;
mod tree;

pub use env::{default_dir, symlinks_disabled};
pub use plan::plan;
use plan::{plan_routed, probe, Found};
pub use target::{execute, HfCacheTarget};
pub use tree::tree_cache;

/// The cache directory tag huggingface_hub writes (`_local_folder.py`, `CACHEDIR_TAG_CONTENT`).
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
pub const CACHEDIR_TAG_CONTENT: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
     # This file is a cache directory tag created by huggingface_hub.\n\
     # For information about cache directory tags, see:\n\
     #\thttps://bford.info/cachedir/\n";

/// Longest ref file read back (a ref holds 40 bytes).
const MAX_REF_BYTES: u64 = 4096;

/// How snapshot files are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotLayout {
    /// Content in `blobs/<etag>`, `snapshots/<commit>/<path>` relative symlinks to it (what the
    /// client writes wherever symlinks work).
    #[default]
    Symlinks,
    /// Real files in `snapshots/<commit>/<path>`, nothing in `blobs/` (the client's own layout
    /// where symlinks are unavailable).
    Files,
}

#[derive(Debug, Clone, Default)]
pub struct HfCacheOptions {
    pub layout: SnapshotLayout,
}

/// `{type}s--{repo_id with / replaced by --}` (`file_download.repo_folder_name`).
pub fn repo_folder_name(repo_type: HfRepoType, repo_id: &str) -> String {
    let mut parts = vec![format!("{}s", repo_type.as_str())];
    parts.extend(repo_id.split('/').map(str::to_string));
    parts.join("--")
}

/// The relative target of `snapshots/<commit>/<path>`: `../../blobs/<etag>` for a top-level
/// file, one more `../` per folder of `path` (`os.path.relpath` from the link's folder).
pub fn link_target(path: &str, etag: &str) -> String {
    let depth = 2 + path.matches('/').count();
    format!("{}blobs/{etag}", "../".repeat(depth))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Write the blob or file, or create the link.
    Write,
    /// Already present with the same content (or link): nothing to do.
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefAction {
    /// The ref is new.
    Create,
    /// The ref exists for another commit and moves to this one.
    Update,
    /// The ref already names this commit.
    Keep,
}

/// One repository snapshot the import writes.
#[derive(Debug, Clone, Serialize)]
pub struct RepoStep {
    pub artifact: String,
    pub repo_type: HfRepoType,
    pub repo_id: String,
    pub revision: String,
    pub commit: String,
    /// False for a filtered (partial) snapshot.
    pub complete: bool,
    /// `DIR/{models|datasets}--ORG--NAME`.
    pub folder: PathBuf,
    /// `…/snapshots/<commit>`.
    pub snapshot: PathBuf,
    /// The snapshot folder does not exist yet.
    pub new_snapshot: bool,
}

/// A blob `…/blobs/<etag>` (symlinks layout only).
#[derive(Debug, Clone, Serialize)]
pub struct BlobStep {
    pub action: Action,
    pub path: PathBuf,
    pub etag: String,
    pub blob: Digest,
    pub size: u64,
}

/// A file of a snapshot: a link to its blob, or (files layout) the file itself.
#[derive(Debug, Clone, Serialize)]
pub struct FileStep {
    pub action: Action,
    pub path: PathBuf,
    /// The path in the repository.
    pub file: String,
    pub etag: String,
    pub blob: Digest,
    pub size: u64,
    /// The symlink's target (symlinks layout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// `…/refs/<revision>`.
#[derive(Debug, Clone, Serialize)]
pub struct RefStep {
    pub action: RefAction,
    pub path: PathBuf,
    pub revision: String,
    pub commit: String,
    /// What the ref held before (for `update`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// What an import into a Hugging Face cache will do.
#[derive(Debug, Clone, Serialize)]
pub struct HfCachePlan {
    pub dest: PathBuf,
    pub layout: SnapshotLayout,
    /// `CACHEDIR.TAG` is absent and will be written.
    pub create_cachedir_tag: bool,
    pub repos: Vec<RepoStep>,
    pub blobs: Vec<BlobStep>,
    pub files: Vec<FileStep>,
    /// `…/trees/<commit>.json` for complete snapshots.
    pub trees: Vec<TreeStep>,
    pub refs: Vec<RefStep>,
}

/// `…/trees/<commit>.json`: the client's cached tree listing of a commit, written for complete
/// snapshots only (for a partial one it would make offline `snapshot_download` fail).
#[derive(Debug, Clone, Serialize)]
pub struct TreeStep {
    pub action: Action,
    pub path: PathBuf,
    #[serde(skip)]
    pub content: String,
}

impl HfCachePlan {
    /// Bytes to copy out of the bundle.
    pub fn bytes_to_write(&self) -> u64 {
        let blobs = self.blobs.iter().filter(|b| b.action == Action::Write);
        let files = self.files.iter().filter(|f| f.action == Action::Write);
        match self.layout {
            SnapshotLayout::Symlinks => blobs.map(|b| b.size).sum(),
            SnapshotLayout::Files => files.map(|f| f.size).sum(),
        }
    }
    pub fn blobs_to_write(&self) -> usize {
        self.blobs
            .iter()
            .filter(|b| b.action == Action::Write)
            .count()
    }
    pub fn files_to_write(&self) -> usize {
        self.files
            .iter()
            .filter(|f| f.action == Action::Write)
            .count()
    }
    pub fn refs_to_write(&self) -> usize {
        self.refs
            .iter()
            .filter(|r| r.action != RefAction::Keep)
            .count()
    }
    /// Whether executing the plan writes nothing.
    pub fn is_noop(&self) -> bool {
        !self.create_cachedir_tag
            && self.repos.iter().all(|r| !r.new_snapshot)
            && self.blobs_to_write() == 0
            && self.files_to_write() == 0
            && self.trees.iter().all(|t| t.action == Action::Keep)
            && self.refs_to_write() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_links_are_named_as_the_client_names_them() {
        assert_eq!(
            repo_folder_name(HfRepoType::Model, "org/name"),
            "models--org--name"
        );
        assert_eq!(repo_folder_name(HfRepoType::Model, "gpt2"), "models--gpt2");
        assert_eq!(
            repo_folder_name(HfRepoType::Dataset, "o/d"),
            "datasets--o--d"
        );
        assert_eq!(link_target("config.json", "ab"), "../../blobs/ab");
        assert_eq!(
            link_target("1_Pooling/config.json", "ab"),
            "../../../blobs/ab"
        );
        assert_eq!(link_target("a/b/c.txt", "ab"), "../../../../blobs/ab");
    }
}
