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

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::{ArtifactKind, Digest, EntryType, HfRepoType};
use crate::fsutil;
use crate::stage::Admitted;

mod env;
mod target;
mod tree;

pub use env::{default_dir, symlinks_disabled};
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

/// What is at a path, without following a final symlink.
enum Found {
    Absent,
    /// A regular file, or a symlink resolving to one; its size.
    File {
        len: u64,
        link: Option<PathBuf>,
    },
    /// A symlink that does not resolve to a regular file.
    OtherLink(PathBuf),
    Other,
}

fn probe(path: &Path) -> Result<Found> {
    let m = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Absent),
        Err(e) => return Err(Error::io("inspect", path, e)),
        Ok(m) => m,
    };
    if m.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(|e| Error::io("read link", path, e))?;
        return Ok(match fs::metadata(path) {
            Ok(t) if t.is_file() => Found::File {
                len: t.len(),
                link: Some(target),
            },
            _ => Found::OtherLink(target),
        });
    }
    Ok(if m.is_file() {
        Found::File {
            len: m.len(),
            link: None,
        }
    } else {
        Found::Other
    })
}

/// Whether the (regular, or linked) file at `path` holds exactly the blob.
fn holds(path: &Path, len: u64, blob: &Digest, size: u64) -> Result<bool> {
    Ok(len == size && fsutil::hash_file(path)?.0 == *blob)
}

/// `dest/rel` for a leaf that may already exist (and may be a symlink); every folder on the way
/// must be a real directory or absent.
fn leaf_path(dest: &Path, rel: &str) -> Result<PathBuf> {
    let (dir, name) = rel.rsplit_once('/').expect("leaves live in a folder");
    let dir = dir_path(dest, dir)?;
    Ok(dir.join(name))
}

/// `dest/rel` for a directory: real directories (no symlinks) all the way, or absent.
fn dir_path(dest: &Path, rel: &str) -> Result<PathBuf> {
    let path = fsutil::safe_join(dest, rel)?;
    match fs::symlink_metadata(&path) {
        Ok(m) if !m.is_dir() => Err(Error::Conflict(format!(
            "{} exists and is not a directory",
            path.display()
        ))),
        _ => Ok(path),
    }
}

fn is_commit_like(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Works out every step for every `hf-repo` artifact of the bundle, reading (never writing)
/// `dest`. Fails on the first conflict.
pub fn plan(bundle: &Admitted, dest: &Path, opts: &HfCacheOptions) -> Result<HfCachePlan> {
    plan_routed(bundle, &bundle.all_artifacts(), dest, opts)
}

/// [`plan`] for the artifacts routed here (indices into the manifest's `artifacts`).
fn plan_routed(
    bundle: &Admitted,
    artifacts: &[usize],
    dest: &Path,
    opts: &HfCacheOptions,
) -> Result<HfCachePlan> {
    fsutil::check_dest_dir(dest)?;
    let create_cachedir_tag = matches!(probe(&dest.join(CACHEDIR_TAG))?, Found::Absent);
    let mut out = HfCachePlan {
        dest: dest.to_path_buf(),
        layout: opts.layout,
        create_cachedir_tag,
        repos: Vec::new(),
        blobs: Vec::new(),
        files: Vec::new(),
        trees: Vec::new(),
        refs: Vec::new(),
    };
    // What earlier artifacts of this bundle already planned, to share and to cross-check.
    let mut blobs_seen: HashMap<PathBuf, Digest> = HashMap::new();
    let mut files_seen: HashMap<PathBuf, Digest> = HashMap::new();
    let mut refs_seen: HashMap<PathBuf, String> = HashMap::new();
    for a in artifacts.iter().map(|&i| &bundle.manifest().artifacts[i]) {
        if a.kind != ArtifactKind::HfRepo {
            continue;
        }
        let hf =
            a.hf.as_ref()
                .expect("validated: hf-repo artifacts carry hf");
        let folder_name = repo_folder_name(hf.repo_type, &hf.repo_id);
        let folder = dir_path(dest, &folder_name)?;
        let snap_rel = format!("{folder_name}/snapshots/{}", hf.commit);
        let snapshot = dir_path(dest, &snap_rel)?;
        out.repos.push(RepoStep {
            artifact: a.name.clone(),
            repo_type: hf.repo_type,
            repo_id: hf.repo_id.clone(),
            revision: hf.revision.clone(),
            commit: hf.commit.clone(),
            complete: hf.complete,
            folder,
            new_snapshot: fs::symlink_metadata(&snapshot).is_err(),
            snapshot,
        });
        let etags: HashMap<&str, &str> = hf
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.etag.as_str()))
            .collect();
        for e in a.entries.iter().filter(|e| e.kind == EntryType::File) {
            let (blob, size) = (e.blob.expect("validated"), e.size.expect("validated"));
            let etag = *etags
                .get(e.path.as_str())
                .expect("validated: one etag per file");
            let path = leaf_path(dest, &format!("{snap_rel}/{}", e.path))?;
            // try_to_load_from_cache (transformers, vLLM) believes such a marker before the
            // snapshot: the cache says the Hub has no such file at this commit.
            let marker = dest.join(format!("{folder_name}/.no_exist/{}/{}", hf.commit, e.path));
            if fs::symlink_metadata(&marker).is_ok() {
                return Err(Error::Conflict(format!(
                    "{} records that {} does not exist at commit {}, but the bundle has it; \
                     remove the marker if the bundle is right",
                    marker.display(),
                    e.path,
                    hf.commit
                )));
            }
            if let Some(prev) = files_seen.insert(path.clone(), blob) {
                if prev != blob {
                    return Err(Error::Conflict(format!(
                        "two artifacts of the bundle put different content at {}",
                        path.display()
                    )));
                }
                continue;
            }
            let (action, link) = match opts.layout {
                SnapshotLayout::Symlinks => {
                    let blob_path = leaf_path(dest, &format!("{folder_name}/blobs/{etag}"))?;
                    plan_blob(&mut out, &mut blobs_seen, &blob_path, etag, blob, size)?;
                    let target = link_target(&e.path, etag);
                    (
                        plan_link(&path, &target, &blob_path, blob, size)?,
                        Some(target),
                    )
                }
                SnapshotLayout::Files => (plan_file(&path, blob, size)?, None),
            };
            out.files.push(FileStep {
                action,
                path,
                file: e.path.clone(),
                etag: etag.to_string(),
                blob,
                size,
                link,
            });
        }
        if let Some(content) = tree_cache(a) {
            let path = leaf_path(dest, &format!("{folder_name}/trees/{}.json", hf.commit))?;
            // A listing already there is the client's own for this (immutable) commit: keep it.
            let action = match probe(&path)? {
                Found::Absent => Action::Write,
                _ => Action::Keep,
            };
            if !out.trees.iter().any(|t| t.path == path) {
                out.trees.push(TreeStep {
                    action,
                    path,
                    content,
                });
            }
        }
        if hf.revision != hf.commit {
            if is_commit_like(&hf.revision) {
                return Err(Error::Conflict(format!(
                    "artifact {:?}: revision {} looks like a commit but resolved to {}; not \
                     writing such a ref",
                    a.name, hf.revision, hf.commit
                )));
            }
            let path = leaf_path(dest, &format!("{folder_name}/refs/{}", hf.revision))?;
            if let Some(prev) = refs_seen.insert(path.clone(), hf.commit.clone()) {
                if prev != hf.commit {
                    return Err(Error::Conflict(format!(
                        "two artifacts of the bundle move {} to different commits ({prev} and {})",
                        path.display(),
                        hf.commit
                    )));
                }
                continue;
            }
            let (action, previous) = match probe(&path)? {
                Found::Absent => (RefAction::Create, None),
                Found::File { link: None, .. } => {
                    let now = read_ref(&path)?;
                    if now == hf.commit.as_bytes() {
                        (RefAction::Keep, None)
                    } else {
                        let previous = String::from_utf8_lossy(&now).into_owned();
                        (RefAction::Update, Some(previous))
                    }
                }
                _ => {
                    return Err(Error::Conflict(format!(
                        "{} exists and is not a regular file; the cache is damaged: move it away",
                        path.display()
                    )))
                }
            };
            out.refs.push(RefStep {
                action,
                path,
                revision: hf.revision.clone(),
                commit: hf.commit.clone(),
                previous,
            });
        }
    }
    Ok(out)
}

fn read_ref(path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    fsutil::open_regular(path)?
        .take(MAX_REF_BYTES)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(buf)
}

fn plan_blob(
    out: &mut HfCachePlan,
    seen: &mut HashMap<PathBuf, Digest>,
    path: &Path,
    etag: &str,
    blob: Digest,
    size: u64,
) -> Result<()> {
    if let Some(prev) = seen.insert(path.to_path_buf(), blob) {
        if prev != blob {
            return Err(Error::Conflict(format!(
                "the bundle gives etag {etag} to two different contents ({prev} and {blob})"
            )));
        }
        return Ok(());
    }
    let action = match probe(path)? {
        Found::Absent => Action::Write,
        Found::File { len, .. } if holds(path, len, &blob, size)? => Action::Keep,
        _ => {
            return Err(Error::Conflict(format!(
                "{} exists but does not hold the bundle's content for etag {etag} ({blob}, \
                 {size} bytes); the cache is damaged: remove it (or run `hf cache verify`) \
                 and import again",
                path.display()
            )))
        }
    };
    out.blobs.push(BlobStep {
        action,
        path: path.to_path_buf(),
        etag: etag.to_string(),
        blob,
        size,
    });
    Ok(())
}

fn plan_link(
    path: &Path,
    target: &str,
    blob_path: &Path,
    blob: Digest,
    size: u64,
) -> Result<Action> {
    let conflict = |what: String| {
        Error::Conflict(format!(
            "{} {what}, not {target}; move it away or import elsewhere",
            path.display()
        ))
    };
    match probe(path)? {
        Found::Absent => Ok(Action::Write),
        // Our link, even if its blob is still to be written.
        Found::File { link: Some(t), .. } | Found::OtherLink(t) if t == Path::new(target) => {
            Ok(Action::Keep)
        }
        // Another link to the same blob file (say an absolute one).
        Found::File { link: Some(_), .. } if same_file(path, blob_path) => Ok(Action::Keep),
        // The client's no-symlink fallback: a real file with the same content.
        Found::File { len, link: None } if holds(path, len, &blob, size)? => Ok(Action::Keep),
        Found::File { link: Some(t), .. } | Found::OtherLink(t) => {
            Err(conflict(format!("is a link to {}", t.display())))
        }
        Found::File { .. } => Err(conflict("holds other content".into())),
        Found::Other => Err(conflict("exists and is not a file or link".into())),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

fn plan_file(path: &Path, blob: Digest, size: u64) -> Result<Action> {
    match probe(path)? {
        Found::Absent => Ok(Action::Write),
        Found::File { len, .. } if holds(path, len, &blob, size)? => Ok(Action::Keep),
        _ => Err(Error::Conflict(format!(
            "{} exists but does not hold {blob} ({size} bytes); move it away or import elsewhere",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_default_dir_follows_huggingface_hub() {
        let d = |vars: &[(&str, &str)]| default_dir(&env(vars));
        assert_eq!(
            d(&[("HOME", "/h")]),
            PathBuf::from("/h/.cache/huggingface/hub")
        );
        assert_eq!(
            d(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]),
            PathBuf::from("/x/huggingface/hub")
        );
        assert_eq!(
            d(&[
                ("HOME", "/h"),
                ("XDG_CACHE_HOME", "/x"),
                ("HF_HOME", "~/hf")
            ]),
            PathBuf::from("/h/hf/hub")
        );
        assert_eq!(
            d(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy")]),
            PathBuf::from("/legacy")
        );
        assert_eq!(
            d(&[
                ("HF_HOME", "/hf"),
                ("HF_HUB_CACHE", "$BASE/c"),
                ("BASE", "/b")
            ]),
            PathBuf::from("/b/c")
        );
        assert_eq!(
            d(&[("HF_HUB_CACHE", "${BASE}/c/$NOPE"), ("BASE", "/b")]),
            PathBuf::from("/b/c/$NOPE")
        );
        assert_eq!(
            d(&[("HF_HUB_CACHE", ""), ("HF_HOME", "/hf")]),
            PathBuf::from("/hf/hub")
        );
    }

    #[test]
    fn symlinks_can_be_disabled_as_in_the_client() {
        assert!(symlinks_disabled(&env(&[(
            "HF_HUB_DISABLE_SYMLINKS",
            "yes"
        )])));
        assert!(symlinks_disabled(&env(&[("HF_HUB_DISABLE_SYMLINKS", "1")])));
        assert!(!symlinks_disabled(&env(&[(
            "HF_HUB_DISABLE_SYMLINKS",
            "0"
        )])));
        assert!(!symlinks_disabled(&env(&[])));
    }

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
