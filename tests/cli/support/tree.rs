//! One snapshot of a directory tree for "nothing changed" assertions: every path (links not
//! followed) with its kind, mode and content digest (or link target). FIFOs and devices are
//! described, never opened. [`visible`] is the same snapshot of a store as its consumers see
//! it (a killed run's temp files and staging area set apart), [`assert_subset`] the check that
//! nothing half-written is visible.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use airlock::format::Digest;
use airlock::stage::STAGING_DIR;

/// The prefix of the temp files a killed import may leave next to its targets.
pub const TMP_PREFIX: &str = ".airlock-tmp-";

/// Relative path → description (`file 644 sha256:…`, `dir 755`, `link -> T`, `fifo 600`, …).
pub type Snapshot = BTreeMap<String, String>;

/// Every path under `root` (empty if `root` does not exist).
pub fn snapshot(root: &Path) -> Snapshot {
    snapshot_except(root, &[])
}

/// [`snapshot`], leaving out the top-level entries named in `skip` (e.g. the workspace's state
/// directory, where each run is audited).
pub fn snapshot_except(root: &Path, skip: &[&str]) -> Snapshot {
    let mut out = Snapshot::new();
    if fs::symlink_metadata(root).is_err() {
        return out;
    }
    let keep = |e: &walkdir::DirEntry| {
        e.depth() != 1
            || !skip
                .iter()
                .any(|s| e.file_name() == std::ffi::OsStr::new(s))
    };
    for e in walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_entry(keep)
    {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap();
        out.insert(rel.to_string_lossy().into_owned(), describe(e.path()));
    }
    out
}

/// The content view of a tree: every path under `root` with a file's bytes (links followed) or
/// `None` for anything else. For comparing an imported copy with its source, where modes and
/// link-ness may legitimately differ (an HF snapshot's files are links into `blobs/`); for
/// "nothing changed" use [`snapshot`], which sees modes, links and special files.
pub fn contents(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap();
        let content = e.file_type().is_file().then(|| fs::read(e.path()).unwrap());
        out.insert(rel.to_string_lossy().into_owned(), content);
    }
    out
}

/// A store as its consumers see it: the [`snapshot`] of `root` without temp files
/// ([`TMP_PREFIX`]) and the staging area ([`STAGING_DIR`], whose contents are never visible in a
/// store), whose relative paths are returned apart.
pub fn visible(root: &Path) -> (Snapshot, Vec<String>) {
    let mut out = Snapshot::new();
    let mut hidden = Vec::new();
    for (rel, v) in snapshot(root) {
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        if name.starts_with(TMP_PREFIX) || rel.split('/').any(|c| c == STAGING_DIR) {
            hidden.push(rel);
        } else {
            out.insert(rel, v);
        }
    }
    (out, hidden)
}

/// How [`describe`] shows a regular file with `mode` holding `bytes` (for expected snapshots).
pub fn file(mode: u32, bytes: &[u8]) -> String {
    format!("file {mode:o} {}", Digest::of(bytes))
}

/// How [`describe`] shows a directory with `mode`.
pub fn dir(mode: u32) -> String {
    format!("dir {mode:o}")
}

/// Every path of `now` is in `want`, described the same (same kind, mode and content: nothing
/// half-written, nothing that is not part of the finished store).
#[track_caller]
pub fn assert_subset(now: &Snapshot, want: &Snapshot, when: &str) {
    for (k, v) in now {
        match want.get(k) {
            Some(w) => assert!(v == w, "{when}: {k} is visible as {v}, the store has {w}"),
            None => panic!("{when}: {k} ({v}) is visible but not part of the store"),
        }
    }
}

/// What one path is, without following it or opening anything but a regular file.
pub fn describe(path: &Path) -> String {
    let m = fs::symlink_metadata(path).unwrap();
    let ft = m.file_type();
    let mode = m.mode() & 0o7777;
    if ft.is_symlink() {
        format!("link -> {}", fs::read_link(path).unwrap().display())
    } else if ft.is_file() {
        file(mode, &fs::read(path).unwrap())
    } else if ft.is_dir() {
        dir(mode)
    } else if ft.is_fifo() {
        format!("fifo {mode:o}")
    } else if ft.is_char_device() || ft.is_block_device() {
        format!("device {mode:o} {}", m.rdev())
    } else {
        format!("other {mode:o}")
    }
}

/// Fails naming every path added, removed or changed between `before` and `after`.
#[track_caller]
pub fn assert_unchanged(before: &Snapshot, after: &Snapshot, what: &str) {
    let mut diff = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diff.push(format!("removed {k} ({v})")),
            Some(w) if w != v => diff.push(format!("changed {k}: {v} -> {w}")),
            _ => {}
        }
    }
    for (k, v) in after {
        if !before.contains_key(k) {
            diff.push(format!("added {k} ({v})"));
        }
    }
    assert!(diff.is_empty(), "{what}:\n  {}", diff.join("\n  "));
}
