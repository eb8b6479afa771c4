//! A staging area on a target's filesystem, the one install-a-blob primitive, and the journal
//! that undoes an import.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::format::Digest;
use crate::fsutil;
use crate::interrupt;

/// A staging area: `ROOT/.airlock-staging/RUN/`, locked while this run lives.
pub struct Area {
    pub(super) root: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) _lock: File,
    /// Directories made for the area (the root and its missing parents, the staging dir).
    pub(super) made: Vec<PathBuf>,
    /// Uses left per blob: the last one renames the staged file, the others copy it.
    pub(super) uses: Mutex<HashMap<Digest, usize>>,
    pub(super) git_sha1: HashMap<Digest, Vec<(String, String)>>,
    /// Blobs staged (verified) in `dir`, each at `dir/HEX`.
    pub(super) staged: HashSet<Digest>,
    /// Complete blobs adopted from a killed run's area (re-hashed before use).
    pub(super) adopted: HashMap<Digest, PathBuf>,
    pub(super) copies: AtomicUsize,
}

/// What [`Area::install`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The file was put in place (and journaled).
    Written,
    /// An identical file was already there (another import): not this import's to remove.
    Present,
}

impl Area {
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The staged, verified file of `digest`, if this area staged it (the registry target
    /// uploads from it instead of reading the media again).
    pub fn staged(&self, digest: &Digest) -> Option<PathBuf> {
        self.staged
            .contains(digest)
            .then(|| self.dir.join(digest.hex()))
    }

    /// A fresh path in the area for a temp file (small generated files go through it).
    fn temp_path(&self) -> PathBuf {
        let n = self.copies.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("tmp-{n}"))
    }

    /// The one way a verified blob becomes a file in a store: the staged file (its digest and
    /// size checked while staging, durable after [`Staging::sync`]) is renamed to `dest` —
    /// never over an existing file — or, for all but the last use of the blob, copied there
    /// through a temp file in the area. `mode`: the file's permissions (`None`: 0666 less the
    /// umask). An identical file already at `dest` (same size and SHA-256) is left as it is
    /// ([`Installed::Present`]); anything else there is a conflict. `dest`'s directory must
    /// exist. Journaled.
    pub fn install(
        &self,
        digest: &Digest,
        size: u64,
        dest: &Path,
        mode: Option<u32>,
        j: &mut Journal,
    ) -> Result<Installed> {
        interrupt::check()?;
        let staged = self.staged(digest).ok_or_else(|| {
            Error::Other(format!(
                "internal: blob {digest} for {} was not staged",
                dest.display()
            ))
        })?;
        let last = {
            let mut uses = self.uses.lock().expect("not poisoned");
            let n = uses.entry(*digest).or_insert(0);
            *n = n.saturating_sub(1);
            *n == 0
        };
        let src = if last {
            staged.clone()
        } else {
            let tmp = self.temp_path();
            fs::copy(staged, &tmp).map_err(|e| Error::io("copy staged blob to", &tmp, e))?;
            tmp
        };
        if let Some(m) = mode {
            set_path_mode(&src, m)?;
        }
        match rename_noclobber(&src, dest) {
            Ok(()) => {
                j.undo.push(Undo::File(dest.to_path_buf()));
                Ok(Installed::Written)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !last {
                    let _ = fs::remove_file(&src);
                }
                let same = fs::symlink_metadata(dest).is_ok_and(|m| m.is_file() && m.len() == size)
                    && fsutil::hash_file(dest).is_ok_and(|(d, n)| d == *digest && n == size);
                if same {
                    Ok(Installed::Present)
                } else {
                    Err(Error::Conflict(format!(
                        "{} appeared while importing, with other content than blob {digest}; \
                         move it away and run the import again",
                        dest.display()
                    )))
                }
            }
            Err(e) => Err(Error::io("move into place", dest, e)),
        }
    }

    /// Writes small generated content (a ref, an index, a Modelfile) at `dest` through a temp
    /// file in the area: only where nothing is (`previous: None`), or replacing exactly the
    /// bytes the plan saw (`previous: Some(bytes)`; a change since is a conflict). Journaled:
    /// rollback removes it or puts the previous bytes back.
    pub fn write_small(
        &self,
        dest: &Path,
        bytes: &[u8],
        mode: Option<u32>,
        previous: Option<&[u8]>,
        j: &mut Journal,
    ) -> Result<()> {
        interrupt::check()?;
        let tmp = self.temp_path();
        let mut f = File::create_new(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| Error::io("write", &tmp, e))?;
        drop(f);
        if let Some(m) = mode {
            set_path_mode(&tmp, m)?;
        }
        match previous {
            None => match rename_noclobber(&tmp, dest) {
                Ok(()) => j.undo.push(Undo::File(dest.to_path_buf())),
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                        Error::Conflict(format!(
                            "{} appeared while importing; run the import again",
                            dest.display()
                        ))
                    } else {
                        Error::io("move into place", dest, e)
                    });
                }
            },
            Some(old) => {
                let now = fsutil::read_regular(dest, old.len() as u64 + 1).ok();
                if now.as_deref() != Some(old) {
                    let _ = fs::remove_file(&tmp);
                    return Err(Error::Conflict(format!(
                        "{} changed while importing; run the import again",
                        dest.display()
                    )));
                }
                let old_mode = fs::symlink_metadata(dest).ok().map(|m| mode_of(&m));
                fs::rename(&tmp, dest).map_err(|e| Error::io("rename into place", dest, e))?;
                j.undo.push(Undo::Restore(Box::new(Restore {
                    path: dest.to_path_buf(),
                    bytes: old.to_vec(),
                    mode: old_mode,
                })));
            }
        }
        Ok(())
    }
}

fn mode_of(m: &fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o7777
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        0o644
    }
}

fn set_path_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("set mode of", path, e))?;
    }
    let _ = (path, mode);
    Ok(())
}

/// Renames `from` to `to` unless something is at `to` (`AlreadyExists` then).
pub fn rename_noclobber(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let cstr = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
        };
        let (f, t) = (cstr(from)?, cstr(to)?);
        // SAFETY: both paths are NUL-terminated C strings that outlive the call.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // Filesystems without RENAME_NOREPLACE: the link-then-unlink fallback below.
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {}
            _ => return Err(e),
        }
    }
    fs::hard_link(from, to)?;
    fs::remove_file(from)
}

/// Everything an import did to the stores, undone in reverse order if any later step fails.
#[derive(Default)]
pub struct Journal {
    undo: Vec<Undo>,
}

struct Restore {
    path: PathBuf,
    bytes: Vec<u8>,
    mode: Option<u32>,
}

enum Undo {
    Dir(PathBuf),
    File(PathBuf),
    /// Boxed: rare, and the journal holds an entry per file an import writes.
    Restore(Box<Restore>),
    /// A remote step (a registry tag moved): how to put it back.
    Remote(Box<dyn FnOnce() -> Result<()> + Send>),
}

impl Journal {
    /// Creates `path` and its missing parents, journaling each directory made.
    pub fn mkdirs(&mut self, path: &Path) -> Result<()> {
        for d in fsutil::create_dirs_recorded(path)? {
            self.undo.push(Undo::Dir(d));
        }
        Ok(())
    }

    /// A directory this import created (removed on rollback if empty).
    pub fn created_dir(&mut self, path: &Path) {
        self.undo.push(Undo::Dir(path.to_path_buf()));
    }

    /// A file or link this import created (removed on rollback).
    pub fn created(&mut self, path: &Path) {
        self.undo.push(Undo::File(path.to_path_buf()));
    }

    /// How to undo a remote step.
    pub fn on_rollback(&mut self, undo: impl FnOnce() -> Result<()> + Send + 'static) {
        self.undo.push(Undo::Remote(Box::new(undo)));
    }

    /// Undoes everything, newest first (directories only if empty again). Returns what could not
    /// be undone, for the error message.
    pub fn rollback(self) -> Vec<String> {
        let mut failed = Vec::new();
        for u in self.undo.into_iter().rev() {
            match u {
                Undo::File(p) => {
                    if let Err(e) = fs::remove_file(&p) {
                        if e.kind() != io::ErrorKind::NotFound {
                            failed.push(format!("remove {}: {e}", p.display()));
                        }
                    }
                }
                Undo::Dir(p) => {
                    let _ = fs::remove_dir(&p);
                }
                Undo::Restore(r) => {
                    let Restore { path, bytes, mode } = *r;
                    let dir = path.parent().unwrap_or(Path::new("."));
                    if let Err(e) = fsutil::persist_bytes(dir, &path, &bytes, mode, true) {
                        failed.push(e.to_string());
                    }
                }
                Undo::Remote(f) => {
                    if let Err(e) = f() {
                        failed.push(e.to_string());
                    }
                }
            }
        }
        failed
    }
}
