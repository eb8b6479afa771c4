//! Planning an import into the cache: what is on disk at each path (never following a final
//! symlink), and each repository's blobs, snapshot files or links, tree listings and refs.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::*;
use crate::error::{Error, Result};
use crate::format::{ArtifactKind, Digest, EntryType};
use crate::fsutil;
use crate::stage::Admitted;

/// What is at a path, without following a final symlink.
pub(super) enum Found {
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

pub(super) fn probe(path: &Path) -> Result<Found> {
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
pub(super) fn plan_routed(
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
