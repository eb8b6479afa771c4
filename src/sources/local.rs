//! Local files and directories. Regular files and directories only: symlinks, devices, FIFOs
//! and sockets are refused by name, as are names that are not UTF-8 or not portable, and two
//! names that differ only in case or Unicode normalisation (before anything is hashed). Every
//! file is opened with `fsutil::open_regular` (no link followed, no wait on a FIFO, regular
//! file checked on the handle), here and again when the bundle writer copies it into a chunk,
//! so a file swapped after the walk is refused by name.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use super::Needed;
use crate::error::{Error, Result};
use crate::format::paths::{name_key, validate_name, validate_rel_path};
use crate::format::text::escape;
use crate::format::{Artifact, ArtifactKind, Entry, EntryType};
use crate::progress::Progress;

fn is_executable(meta: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o100 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

fn base_name(path: &Path, given: &str) -> Result<String> {
    let canon = fs::canonicalize(path).map_err(|e| Error::io("resolve", path, e))?;
    canon
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Usage(format!(
                "{given}: cannot derive an artifact name; set one in the spec file"
            ))
        })
}

pub(super) fn resolve(
    path: &Path,
    given: &str,
    name: Option<&str>,
    progress: &dyn Progress,
) -> Result<(Artifact, Vec<Needed>)> {
    let meta = fs::symlink_metadata(path).map_err(|e| Error::io("read source", path, e))?;
    let name = match name {
        Some(n) => n.to_string(),
        None => base_name(path, given)?,
    };
    // Refused before anything is hashed (sources::resolve checks every artifact name again).
    validate_name(&name).map_err(|why| {
        Error::Usage(format!(
            "{}: artifact name \"{}\" is not usable ({why}); set a name",
            escape(given),
            escape(&name)
        ))
    })?;
    let identity = fs::canonicalize(path)
        .map_err(|e| Error::io("resolve", path, e))?
        .display()
        .to_string();
    let ft = meta.file_type();
    if ft.is_file() {
        let files = vec![(
            path.to_path_buf(),
            meta.len(),
            name.clone(),
            is_executable(&meta),
        )];
        let (entries, needed) = plan_files(files, progress)?;
        let artifact = Artifact {
            name,
            kind: ArtifactKind::File,
            source: given.to_string(),
            identity,
            entries,
            image: None,
            hf: None,
        };
        return Ok((artifact, needed));
    }
    if !ft.is_dir() {
        return Err(Error::Usage(format!(
            "{}: not a regular file or directory (symlinks, devices, FIFOs and sockets are not carried)",
            path.display()
        )));
    }
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(path).min_depth(1).sort_by_file_name() {
        let e = e.map_err(|e| {
            let p = e
                .path()
                .map(|p| p.to_path_buf())
                .unwrap_or_else(|| path.to_path_buf());
            Error::io(
                "walk",
                &p,
                e.into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
            )
        })?;
        let rel = e
            .path()
            .strip_prefix(path)
            .expect("walkdir yields paths under its root");
        let rel = rel
            .to_str()
            .ok_or_else(|| Error::Usage(format!("{}: file name is not UTF-8", e.path().display())))?
            .replace(std::path::MAIN_SEPARATOR, "/");
        validate_rel_path(&rel).map_err(|why| {
            Error::Usage(format!(
                "{}: {why}",
                escape(&e.path().display().to_string())
            ))
        })?;
        let ft = e.file_type();
        if ft.is_dir() {
            dirs.push(rel);
        } else if ft.is_file() {
            let m = e
                .metadata()
                .map_err(|err| Error::io("stat", e.path(), err.into()))?;
            files.push((e.path().to_path_buf(), m.len(), rel, is_executable(&m)));
        } else {
            let what = if ft.is_symlink() {
                "a symbolic link"
            } else {
                "a special file"
            };
            return Err(Error::Usage(format!(
                "{} is {what}; airlock carries regular files and directories only",
                e.path().display()
            )));
        }
    }
    check_twins(path, dirs.iter().chain(files.iter().map(|f| &f.2)))?;
    let (mut entries, needed) = plan_files(files, progress)?;
    entries.extend(dirs.into_iter().map(|d| Entry {
        path: d,
        kind: EntryType::Dir,
        blob: None,
        size: None,
        executable: false,
    }));
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let artifact = Artifact {
        name,
        kind: ArtifactKind::Directory,
        source: given.to_string(),
        identity,
        entries,
        image: None,
        hf: None,
    };
    Ok((artifact, needed))
}

/// Refuses, before anything is hashed, two paths of the tree that would be one file on a
/// case-insensitive or normalising file system (`README` and `readme`, NFC and NFD spellings):
/// a manifest may not hold both ([`name_key`]).
fn check_twins<'a>(root: &Path, rels: impl Iterator<Item = &'a String>) -> Result<()> {
    let mut seen: HashMap<String, &String> = HashMap::new();
    for rel in rels {
        if let Some(first) = seen.insert(name_key(rel), rel) {
            return Err(Error::Usage(format!(
                "{} and {} are the same name when case and Unicode normalisation are ignored; \
                 airlock cannot carry both (they would be one file on macOS or Windows)",
                escape(&root.join(first).display().to_string()),
                escape(&root.join(rel).display().to_string())
            )));
        }
    }
    Ok(())
}

/// Plans files without reading them: each gets a placeholder digest, which the bundle writer
/// replaces with the real one as it copies the file into a chunk (one read of every byte).
fn plan_files(
    files: Vec<(std::path::PathBuf, u64, String, bool)>,
    _progress: &dyn Progress,
) -> Result<(Vec<Entry>, Vec<Needed>)> {
    let mut entries = Vec::with_capacity(files.len());
    let mut needed = Vec::with_capacity(files.len());
    for (path, size, rel, executable) in files {
        let digest = super::placeholder();
        entries.push(Entry {
            path: rel,
            kind: EntryType::File,
            blob: Some(digest),
            size: Some(size),
            executable,
        });
        needed.push(Needed {
            digest,
            size,
            path,
            pending: true,
        });
    }
    Ok((entries, needed))
}
