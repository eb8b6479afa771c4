//! Filesystem primitives with the guarantees the rest of airlock relies on: every error names its
//! path, and content becomes visible only complete and durable (temp file → fsync → rename →
//! fsync of the directory).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{Digest, Hasher};
use crate::progress::{Progress, Silent};

/// Size of the buffers used for streaming copies and hashing.
pub const BUF_SIZE: usize = 1 << 20;

/// Opens a file for reading, naming it on failure.
pub fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io("open", path, e))
}

/// Opens a file that comes from media, the enclave's state, a policy or a source for reading:
/// never through a symbolic link in its last component (`O_NOFOLLOW`), never blocking on a FIFO
/// or device (`O_NONBLOCK`), and checked *on the open handle* to be a regular file, so a file
/// swapped after an earlier check cannot make airlock read elsewhere or hang. Every such open
/// goes through here.
pub fn open_regular(path: &Path) -> Result<File> {
    let f = open_nofollow(path, fs::OpenOptions::new().read(true))?;
    check_regular(&f, path)?;
    Ok(f)
}

/// Opens `path` with `opts` plus `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC`, then clears
/// `O_NONBLOCK` again (it only matters for the open itself). A symbolic link is named as such.
/// The caller checks the kind of file on the handle ([`check_regular`]).
pub fn open_nofollow(path: &Path, opts: &mut fs::OpenOptions) -> Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC);
        let f = opts.open(path).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::io(
                    "open",
                    path,
                    io::Error::other("it is a symbolic link, which airlock does not follow"),
                )
            } else {
                Error::io("open", path, e)
            }
        })?;
        // SAFETY: fcntl on a descriptor we own, with integer arguments only.
        unsafe {
            let fd = f.as_raw_fd();
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
        Ok(f)
    }
    #[cfg(not(unix))]
    {
        opts.open(path).map_err(|e| Error::io("open", path, e))
    }
}

/// Checks on an open handle that it is a regular file; names what it is otherwise.
/// Opens (creating it, mode 0600) a lock file without following a link, checks it is a regular
/// file on the handle, and takes an exclusive lock on it (waiting), held until it is dropped.
pub fn lock_exclusive(path: &Path) -> Result<File> {
    let mut o = fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let lock = open_nofollow(path, &mut o)?;
    check_regular(&lock, path)?;
    lock.lock().map_err(|e| Error::io("lock", path, e))?;
    Ok(lock)
}

pub fn check_regular(f: &File, path: &Path) -> Result<fs::Metadata> {
    let m = f.metadata().map_err(|e| Error::io("stat", path, e))?;
    if m.is_file() {
        return Ok(m);
    }
    let what = file_kind(&m.file_type());
    Err(Error::io(
        "open",
        path,
        io::Error::other(format!("it is {what}, not a regular file")),
    ))
}

/// "a directory", "a FIFO", …: what a non-regular file is, for messages.
pub fn file_kind(t: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_char_device() {
            return "a character device";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

pub fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io("create directory", path, e))
}

/// Bytes an unprivileged writer may still write on the filesystem holding `path` (`statvfs`:
/// `f_bavail * f_frsize`); `u64::MAX` where that is not known.
pub fn free_space(path: &Path) -> Result<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            Error::io(
                "check free space on",
                path,
                io::Error::other("the path holds a NUL byte"),
            )
        })?;
        // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(Error::io(
                "check free space on",
                path,
                io::Error::last_os_error(),
            ));
        }
        Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(u64::MAX)
    }
}

/// Bytes written between two [`start_writeback`] calls by pack's chunks and import's staging
/// files: measured (PERFORMANCE.md, pack at the write floor), not assumed.
pub const WRITEBACK_STEP: u64 = 8 << 20;

/// Asks the kernel to start writing back `len` bytes of `file` from `from`, so that the later
/// `fsync`/`syncfs` finds little left to do and the writeback overlaps reading and hashing
/// (Linux; elsewhere the sync does all of it). Failure only loses the hint.
pub fn start_writeback(file: &File, from: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor the caller owns; no memory is passed.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                from as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    let _ = (file, from, len);
}

/// fsyncs a directory so that renames and creations in it are durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(path)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("sync directory", path, e))?;
    }
    let _ = path;
    Ok(())
}

/// An import destination: absent (it will be created), a directory, or a symlink to one;
/// anything else is a conflict named by its path.
pub fn check_dest_dir(dest: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m)
            if m.file_type().is_symlink() && std::fs::metadata(dest).is_ok_and(|m| m.is_dir()) =>
        {
            Ok(())
        }
        Ok(_) => Err(Error::Conflict(format!(
            "{} exists and is not a directory",
            dest.display()
        ))),
        Err(_) => Ok(()),
    }
}

/// Creates `path` and any missing parents; returns the directories it created, outermost first
/// (so a failed import can remove exactly those).
pub fn create_dirs_recorded(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut missing = Vec::new();
    let mut p = path;
    while std::fs::symlink_metadata(p).is_err() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => break,
        }
    }
    let mut made = Vec::new();
    for dir in missing.into_iter().rev() {
        match std::fs::create_dir(&dir) {
            Ok(()) => made.push(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(Error::io("create directory", &dir, e)),
        }
    }
    Ok(made)
}

/// Writes `data` to `path` atomically: a temp file in the same directory, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    persist_bytes(dir, path, data, Some(mode), true)?;
    sync_dir(dir)
}

/// Writes `data` to `path` through a temp file created in `temp_dir` (same file system): write,
/// fsync, rename — replacing what is at `path` if `replace`, else only if nothing is. `mode`
/// `None` leaves the mode a new file gets (0666 less the umask). The caller syncs directories.
pub fn persist_bytes(
    temp_dir: &Path,
    path: &Path,
    data: &[u8],
    mode: Option<u32>,
    replace: bool,
) -> Result<()> {
    let mut b = tempfile::Builder::new();
    b.prefix(".airlock-tmp-");
    #[cfg(unix)]
    if mode.is_none() {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = b
        .tempfile_in(temp_dir)
        .map_err(|e| Error::io("create temporary file in", temp_dir, e))?;
    tmp.write_all(data)
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    if let Some(m) = mode {
        set_mode(tmp.as_file(), m).map_err(|e| Error::io("set mode of", tmp.path(), e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("sync", tmp.path(), e))?;
    if replace {
        tmp.persist(path)
            .map_err(|e| Error::io("rename into place", path, e.error))?;
    } else {
        tmp.persist_noclobber(path)
            .map_err(|e| Error::io("move into place", path, e.error))?;
    }
    Ok(())
}

pub fn set_mode(f: &File, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    let _ = (f, mode);
    Ok(())
}

/// Where a streaming copy failed.
#[derive(Debug)]
pub enum CopyError {
    /// Reading failed after `after` bytes had been copied.
    Read {
        after: u64,
        source: io::Error,
    },
    Write(io::Error),
}

/// Copies `reader` to its end into `writer` in `BUF_SIZE` pieces, hashing as it goes and
/// reporting progress; returns the SHA-256 and length of what was copied.
pub fn copy_hashed(
    mut reader: impl Read,
    writer: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<(Digest, u64), CopyError> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        if let Err(source) = crate::interrupt::check_io() {
            let after = hasher.len();
            return Err(CopyError::Read { after, source });
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(CopyError::Read {
                    after: hasher.len(),
                    source,
                })
            }
        };
        hasher.update(&buf[..n]);
        writer.write_all(&buf[..n]).map_err(CopyError::Write)?;
        progress.inc(n as u64);
    }
    let len = hasher.len();
    Ok((hasher.finish(), len))
}

/// Streams `reader` to its end, returning its SHA-256 and length.
pub fn hash_reader(reader: impl Read, what: &Path) -> Result<(Digest, u64)> {
    copy_hashed(reader, &mut io::sink(), &Silent).map_err(|e| match e {
        CopyError::Read { source, .. } | CopyError::Write(source) => {
            Error::io("read", what, source)
        }
    })
}

/// The bytes of a regular file (opened as [`open_regular`] does), at most `max` of them: a larger
/// file is an error naming it.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    open_regular(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("read", path, e))?;
    if buf.len() as u64 > max {
        return Err(Error::io(
            "read",
            path,
            io::Error::other(format!("larger than the {max} bytes expected")),
        ));
    }
    Ok(buf)
}

/// SHA-256 and length of a file in an import destination (which targets may reach through the
/// links they accept, as the Hugging Face cache's shared blob store; they check what is there
/// before they hash it).
pub fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    hash_reader(open(path)?, path)
}

/// Joins a validated relative manifest path under `root`, refusing to pass through anything
/// that already exists under `root` and is not a real directory (a symlink planted in the
/// destination could otherwise redirect writes outside it).
pub fn safe_join(root: &Path, rel: &str) -> Result<PathBuf> {
    let mut out = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let comp = Path::new(part);
        if !matches!(comp.components().next(), Some(Component::Normal(_)))
            || comp.components().count() != 1
        {
            return Err(Error::Other(format!(
                "refusing path {rel:?}: component {part:?} is not a plain name"
            )));
        }
        out.push(part);
        let last = i + 1 == parts.len();
        match fs::symlink_metadata(&out) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::Conflict(format!(
                    "{} is a symbolic link; airlock does not write through links",
                    out.display()
                )))
            }
            Ok(m) if !last && !m.is_dir() => {
                return Err(Error::Conflict(format!(
                    "{} exists and is not a directory",
                    out.display()
                )))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Checks a file that decides whom the enclave trusts or what it signs with (a trust policy, a
/// key) the way OpenSSH's `StrictModes` checks `authorized_keys`: the file (`meta`, from its
/// open handle) owned by root or the effective user and, when `file_mode` is set, writable by
/// neither group nor others; and every directory above it, up to `/` (of the path as given,
/// made absolute, and of its canonical form), owned by root or the user and not writable by
/// group or others unless it is sticky (like `/tmp`). Otherwise someone else could replace the
/// file. The message names the file or directory at fault and the fix.
pub fn check_trusted(path: &Path, meta: &fs::Metadata, file_mode: bool) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let ours = |uid: u32| uid == 0 || uid == me;
        if !ours(meta.uid()) {
            return Err(format!(
                "{} is owned by uid {}, neither root nor you (uid {me}): someone else could change it",
                path.display(),
                meta.uid()
            ));
        }
        let mode = meta.mode() & 0o7777;
        if file_mode && mode & 0o002 != 0 {
            return Err(format!(
                "anyone may change it (mode {mode:04o}); run: chmod o-w {}",
                path.display()
            ));
        }
        if file_mode && mode & 0o020 != 0 {
            return Err(format!(
                "its group may change it (mode {mode:04o}); run: chmod g-w {}",
                path.display()
            ));
        }
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?
                .join(path)
        };
        let canonical = fs::canonicalize(path).ok();
        let mut dirs: Vec<PathBuf> = abs.ancestors().skip(1).map(Path::to_path_buf).collect();
        if let Some(c) = &canonical {
            dirs.extend(c.ancestors().skip(1).map(Path::to_path_buf));
        }
        let mut seen = std::collections::HashSet::new();
        for d in dirs {
            if d.as_os_str().is_empty() || !seen.insert(d.clone()) {
                continue;
            }
            let m = fs::metadata(&d)
                .map_err(|e| format!("cannot check directory {}: {e}", d.display()))?;
            let mode = m.mode() & 0o7777;
            if !ours(m.uid()) {
                return Err(format!(
                    "directory {} is owned by uid {}, neither root nor you (uid {me}): its owner could replace {}",
                    d.display(),
                    m.uid(),
                    path.display()
                ));
            }
            if mode & 0o022 != 0 && mode & 0o1000 == 0 {
                return Err(format!(
                    "directory {} is writable by {} (mode {mode:04o}), so {} could be replaced; run: chmod go-w {}",
                    d.display(),
                    if mode & 0o002 != 0 { "anyone" } else { "its group" },
                    path.display(),
                    d.display()
                ));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta, file_mode);
    Ok(())
}
