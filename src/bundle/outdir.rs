//! The output directory of a pack in progress, and how a later pack recognises and replaces
//! what an interrupted or killed one left.
//!
//! The first thing pack writes into OUT is the marker [`MARKER`], naming the run; it holds an
//! exclusive lock on it (`flock`) for as long as it runs, and removes it last — after the
//! manifest and signatures are durable — when the bundle is finished. So a directory that holds
//! the marker is the output of a pack that never finished: killed, or stopped before its cleanup
//! ran. A later pack into it replaces it (removes everything in it, temp files included, and
//! starts afresh) when it holds nothing but pack's own files ([`ours`]); anything else, a
//! finished bundle (no marker), or a marker another running pack holds locked is refused.
//!
//! Why replace and not resume: chunk boundaries, segment offsets and the bundle id depend on the
//! whole plan, the chunk hashes of a partial chunk were never recorded, and sources may have
//! changed since; resuming would need a re-read of every byte already written to check it, as
//! costly as writing it again, and a new way to get it wrong. Replacing costs the work lost and
//! never carries a stale byte into a bundle.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::format::{self, CHUNKS_DIR, MANIFEST_FILE, SIGNATURES_DIR, SIGNATURE_FILE, SUMS_FILE};
use crate::fsutil;

/// Name of the staging directory used inside the output directory while packing.
pub const STAGING_DIR: &str = ".airlock-staging";
/// The marker of a pack in progress: written first, locked while the pack runs, removed last.
pub const MARKER: &str = ".airlock-pack";
/// The prefix of the temporary files `fsutil::write_atomic` creates.
const TEMP_PREFIX: &str = ".airlock-tmp-";

/// The output directory of a pack in progress. Unless [`OutDir::commit`] is called, dropping it
/// removes everything the pack created (the marker last, then the directory if pack made it), so
/// a failed or interrupted pack leaves no partial bundle behind; a pack that could not clean up
/// (SIGKILL, a forced stop) leaves output the next pack into the same directory replaces.
pub struct OutDir {
    path: PathBuf,
    created: bool,
    committed: bool,
    /// The open, locked marker; the lock ends with the process, however it ends.
    marker: Option<File>,
    /// Set when this run replaced what an earlier, unfinished pack left.
    replaced: Option<String>,
}

/// What a directory holding the marker holds, as far as pack is concerned.
enum Leftover {
    /// Only pack's own files: replace them.
    Ours,
    /// Something pack never writes (named).
    Foreign(String),
}

impl OutDir {
    /// Takes `path`: a directory that does not exist, is empty, or holds only what an unfinished
    /// pack left (which is removed). Anything else is refused (exit 2), touching nothing.
    pub fn prepare(path: &Path) -> Result<OutDir> {
        let created = match fs::read_dir(path) {
            Ok(mut rd) => {
                if rd.next().is_some() {
                    return OutDir::replace(path);
                }
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(path)
                    .map_err(|e| Error::io("create output directory", path, e))?;
                true
            }
            Err(e) => return Err(Error::io("open output directory", path, e)),
        };
        let marker_path = path.join(MARKER);
        let marker = fsutil::open_nofollow(
            &marker_path,
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true),
        )
        .map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
                busy(path, None)
            }
            e => e,
        })?;
        lock(&marker, path, &marker_path)?;
        let mut out = OutDir {
            path: path.to_path_buf(),
            created,
            committed: false,
            marker: Some(marker),
            replaced: None,
        };
        out.start()?;
        Ok(out)
    }

    /// `path` is not empty: replace it if it is the unfinished output of a pack.
    fn replace(path: &Path) -> Result<OutDir> {
        let not_empty = |why: String| {
            Error::Usage(format!(
                "{} is not empty{why}; pack writes a new bundle into an empty or new directory \
                 (or replaces the unfinished output of an interrupted pack)",
                fsutil_display(path)
            ))
        };
        let marker_path = path.join(MARKER);
        match fs::symlink_metadata(&marker_path) {
            Ok(m) if m.file_type().is_file() => {}
            Ok(_) => {
                return Err(not_empty(format!(
                    " and its {MARKER} is not a regular file"
                )))
            }
            Err(_) => {
                let why = if path.join(MANIFEST_FILE).exists() {
                    " (it holds a finished bundle)".to_string()
                } else {
                    String::new()
                };
                return Err(not_empty(why));
            }
        }
        if let Leftover::Foreign(name) = ours(path)? {
            return Err(not_empty(format!(
                ": it holds an unfinished pack's output but also {}, which pack did not write",
                format::text::escape(&name)
            )));
        }
        let marker =
            fsutil::open_nofollow(&marker_path, fs::OpenOptions::new().read(true).write(true))?;
        fsutil::check_regular(&marker, &marker_path)?;
        let mut previous = String::new();
        {
            use std::io::Read;
            let _ = (&marker).take(4096).read_to_string(&mut previous);
        }
        let run = field(&previous, "run").unwrap_or("?").to_string();
        lock(&marker, path, &marker_path).map_err(|e| match e {
            Error::Conflict(_) => busy(path, Some(&previous)),
            e => e,
        })?;
        // The marker may have been removed (that pack finished) or replaced between the look
        // and the lock: only the file still at the path counts.
        if !same_file(&marker, &marker_path) {
            return Err(busy(path, Some(&previous)));
        }
        // Checked again under the lock: nothing may have been added meanwhile.
        if let Leftover::Foreign(name) = ours(path)? {
            return Err(not_empty(format!(
                ": it holds an unfinished pack's output but also {}, which pack did not write",
                format::text::escape(&name)
            )));
        }
        let mut out = OutDir {
            path: path.to_path_buf(),
            created: field(&previous, "created-dir") == Some("yes"),
            committed: false,
            marker: Some(marker),
            replaced: Some(run),
        };
        out.clear()?;
        out.start()?;
        Ok(out)
    }

    /// Writes the marker's content (this run) and makes the working directories.
    fn start(&mut self) -> Result<()> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id)
            .map_err(|e| Error::Other(format!("no randomness for the run id: {e}")))?;
        let text = format!(
            "airlock pack in progress: this directory is the unfinished output of a pack; the \
             next pack into it replaces it\nrun {}\npid {}\nstarted {}\ncreated-dir {}\n",
            hex::encode(id),
            std::process::id(),
            format::format_time(SystemTime::now()),
            if self.created { "yes" } else { "no" }
        );
        let marker_path = self.path.join(MARKER);
        let f = self.marker.as_mut().expect("held until commit or drop");
        f.set_len(0)
            .and_then(|()| f.write_all(text.as_bytes()))
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("write", &marker_path, e))?;
        fsutil::sync_dir(&self.path)?;
        fsutil::create_dir_all(&self.staging())?;
        fsutil::create_dir_all(&self.path.join(CHUNKS_DIR))?;
        Ok(())
    }

    /// Removes everything but the marker.
    fn clear(&self) -> Result<()> {
        let rd = fs::read_dir(&self.path)
            .map_err(|e| Error::io("read output directory", &self.path, e))?;
        for e in rd {
            let e = e.map_err(|e| Error::io("read output directory", &self.path, e))?;
            if e.file_name() == MARKER {
                continue;
            }
            let p = e.path();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            }
            .map_err(|e| Error::io("remove", &p, e))?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where sources may stage downloads; removed before the manifest is written.
    pub fn staging(&self) -> PathBuf {
        self.path.join(STAGING_DIR)
    }

    /// The run id of the unfinished pack this one replaced, if it replaced one.
    pub fn replaced(&self) -> Option<&str> {
        self.replaced.as_deref()
    }

    /// Whether pack made the directory (so a failed pack removes it, not only its content).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The bundle is finished and durable: the marker goes (last), and the directory is kept.
    pub(crate) fn commit(mut self) -> Result<()> {
        self.committed = true;
        let marker_path = self.path.join(MARKER);
        fs::remove_file(&marker_path).map_err(|e| Error::io("remove", &marker_path, e))?;
        fsutil::sync_dir(&self.path)?;
        self.marker = None;
        Ok(())
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Everything but the marker first, so that a cleanup cut short still leaves a
        // directory the next pack recognises.
        if self.clear().is_err() {
            return;
        }
        if fs::remove_file(self.path.join(MARKER)).is_err() {
            return;
        }
        if self.created {
            let _ = fs::remove_dir(&self.path);
        }
        self.marker = None;
    }
}

/// Whether a directory holding the marker holds only what pack writes there: the marker, the
/// staging directory, `chunks/` with chunk files, `SHA256SUMS`, the manifest, its signatures,
/// and write_atomic's temp files; real directories and regular files only (no links).
fn ours(path: &Path) -> Result<Leftover> {
    let rd = fs::read_dir(path).map_err(|e| Error::io("read output directory", path, e))?;
    for e in rd {
        let e = e.map_err(|e| Error::io("read output directory", path, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let t = e
            .file_type()
            .map_err(|err| Error::io("stat", e.path(), err))?;
        let foreign = match name.as_str() {
            STAGING_DIR => (!t.is_dir()).then(|| name.clone()),
            CHUNKS_DIR | SIGNATURES_DIR if t.is_dir() => {
                let inner = if name == CHUNKS_DIR {
                    only(&e.path(), is_chunk_name)?
                } else {
                    only(&e.path(), |n| n.ends_with(".minisig") || is_temp(n))?
                };
                inner.map(|n| format!("{name}/{n}"))
            }
            MARKER | SUMS_FILE | MANIFEST_FILE | SIGNATURE_FILE => {
                (!t.is_file()).then(|| name.clone())
            }
            n if is_volume_dir_name(n) && t.is_dir() => {
                ours_volume(&e.path())?.map(|inner| format!("{name}/{inner}"))
            }
            n => (!(is_temp(n) && t.is_file())).then(|| name.clone()),
        };
        if let Some(what) = foreign {
            return Ok(Leftover::Foreign(what));
        }
    }
    Ok(Leftover::Ours)
}

/// Within a volume directory pack writes (`vol-NNN`): its chunks (data and parity), bundle
/// files, label and signatures, and write_atomic's temp files; the first other entry.
fn ours_volume(dir: &Path) -> Result<Option<String>> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io("read", dir, e))?;
    for e in rd {
        let e = e.map_err(|e| Error::io("read", dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let t = e
            .file_type()
            .map_err(|err| Error::io("stat", e.path(), err))?;
        let foreign = match name.as_str() {
            CHUNKS_DIR if t.is_dir() => {
                only(&e.path(), |n| is_chunk_name(n) || is_parity_chunk_name(n))?
                    .map(|n| format!("{name}/{n}"))
            }
            SIGNATURES_DIR if t.is_dir() => {
                only(&e.path(), |n| n.ends_with(".minisig") || is_temp(n))?
                    .map(|n| format!("{name}/{n}"))
            }
            SUMS_FILE | MANIFEST_FILE | SIGNATURE_FILE | format::volumes::LABEL_FILE => {
                (!t.is_file()).then(|| name.clone())
            }
            n => (!(is_temp(n) && t.is_file())).then(|| name.clone()),
        };
        if foreign.is_some() {
            return Ok(foreign);
        }
    }
    Ok(None)
}

/// `vol-001` and the like, as `format::volumes::volume_dir_name` makes them.
fn is_volume_dir_name(n: &str) -> bool {
    n.strip_prefix("vol-")
        .is_some_and(|d| d.len() >= 3 && d.bytes().all(|b| b.is_ascii_digit()))
}

fn is_parity_chunk_name(n: &str) -> bool {
    n.strip_suffix(".par")
        .is_some_and(|d| d.len() >= 8 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The first entry of `dir` that is not a regular file whose name passes `allowed`.
fn only(dir: &Path, allowed: impl Fn(&str) -> bool) -> Result<Option<String>> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io("read", dir, e))?;
    for e in rd {
        let e = e.map_err(|e| Error::io("read", dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let file = e.file_type().is_ok_and(|t| t.is_file());
        if !file || !allowed(&name) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// `00000000.tar` and the like, as `format::chunk_name` makes them.
fn is_chunk_name(n: &str) -> bool {
    n.strip_suffix(".tar")
        .is_some_and(|d| d.len() >= 8 && d.bytes().all(|b| b.is_ascii_digit()))
}

fn is_temp(n: &str) -> bool {
    n.starts_with(TEMP_PREFIX)
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(str::trim)
}

fn fsutil_display(path: &Path) -> String {
    format::text::escape(&path.display().to_string()).to_string()
}

fn busy(path: &Path, marker: Option<&str>) -> Error {
    let who = marker
        .map(|m| {
            format!(
                " (run {}, pid {})",
                format::text::escape(field(m, "run").unwrap_or("?")),
                format::text::escape(field(m, "pid").unwrap_or("?"))
            )
        })
        .unwrap_or_default();
    Error::Conflict(format!(
        "another pack{who} is writing into {}; wait for it to finish or choose another --out",
        fsutil_display(path)
    ))
}

/// Takes the exclusive lock on the marker without waiting.
fn lock(marker: &File, dir: &Path, marker_path: &Path) -> Result<()> {
    match marker.try_lock() {
        Ok(()) => Ok(()),
        Err(fs::TryLockError::WouldBlock) => Err(busy(dir, None)),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("lock", marker_path, e)),
    }
}

/// Whether the open `f` is still the file at `path`.
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pack_writes() {
        assert!(is_chunk_name(&format::chunk_name(0)));
        assert!(is_chunk_name(&format::chunk_name(123_456_789)));
        assert!(!is_chunk_name("notes.tar"));
        assert!(!is_chunk_name("0000000.tar"));
        assert!(is_temp(".airlock-tmp-Ab12Cd"));
        assert_eq!(field("run abc\npid 12\n", "pid"), Some("12"));
        assert_eq!(field("runner x\n", "run"), None);
    }

    #[test]
    fn replaces_only_its_own_unfinished_output() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("b");
        let o = OutDir::prepare(&out).unwrap();
        assert!(out.join(MARKER).is_file());
        // A second pack while this one runs is refused (the lock is per open file, so this
        // holds within one process too).
        assert!(matches!(OutDir::prepare(&out), Err(Error::Conflict(_))));
        drop(o);
        assert!(!out.exists(), "a failed pack removes the directory it made");

        // What a killed pack leaves, made by hand.
        let c = d.path().join("c");
        fs::create_dir_all(c.join(CHUNKS_DIR)).unwrap();
        fs::create_dir_all(c.join(STAGING_DIR).join("0")).unwrap();
        fs::write(c.join(MARKER), "airlock pack\nrun 0123\ncreated-dir yes\n").unwrap();
        fs::write(c.join(CHUNKS_DIR).join(format::chunk_name(0)), b"partial").unwrap();
        fs::write(c.join(".airlock-tmp-x1"), b"{").unwrap();
        fs::write(c.join(MANIFEST_FILE), b"{").unwrap();
        fs::write(c.join("notes.txt"), b"mine").unwrap();
        let e = OutDir::prepare(&c).err().unwrap();
        assert!(e.to_string().contains("notes.txt"), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(c.join("notes.txt").exists() && c.join(".airlock-tmp-x1").exists());
        fs::remove_file(c.join("notes.txt")).unwrap();
        fs::write(c.join(CHUNKS_DIR).join("x"), b"").unwrap();
        let e = OutDir::prepare(&c).err().unwrap();
        assert!(e.to_string().contains("chunks/x"), "{e}");
        fs::remove_file(c.join(CHUNKS_DIR).join("x")).unwrap();

        let o = OutDir::prepare(&c).unwrap();
        assert_eq!(o.replaced(), Some("0123"));
        assert!(o.created(), "the directory pack made stays pack's");
        assert!(!c.join(".airlock-tmp-x1").exists());
        assert!(!c.join(MANIFEST_FILE).exists());
        assert!(!c.join(CHUNKS_DIR).join(format::chunk_name(0)).exists());
        assert!(c.join(STAGING_DIR).is_dir() && c.join(CHUNKS_DIR).is_dir());
        o.commit().unwrap();
        assert!(!c.join(MARKER).exists());
        // A finished bundle (no marker) is refused.
        fs::write(c.join(MANIFEST_FILE), b"{}").unwrap();
        let e = OutDir::prepare(&c).err().unwrap();
        assert!(e.to_string().contains("finished bundle"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}
