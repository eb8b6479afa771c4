//! Source `oci-layout://PATH[:TAG]`: an OCI image layout directory (image-spec
//! `image-layout.md`): `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.
//!
//! PATH and TAG are split by [`split_location`]: the whole string if it is an existing directory,
//! else at the `:` that leaves the longest existing directory on the left (so paths containing
//! `:` and tags that are full references, `docker.io/library/nginx:1.27`, both work).
//!
//! Manifests are read bounded ([`MAX_MANIFEST`]) and checked against their descriptors; other
//! blobs are returned as [`Origin::File`] after checking that they are regular files of the
//! descriptor's size inside the layout (the bundle writer checks their digests while copying).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::image::{check_manifest, ImageStore, Origin, MAX_MANIFEST};
use super::model::{self, Descriptor, REF_NAME};
use super::reference::Reference;
use crate::error::{Error, Result};
use crate::format::json;

/// The `oci-layout` file's content for the only layout version there is.
pub const LAYOUT_FILE: &str = "oci-layout";
pub const LAYOUT_VERSION: &str = "1.0.0";
/// The annotation containerd (and docker ≥ 25 `docker save`) puts the full image name in.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// An image found in a layout or an archive, ready for [`super::image::collect`].
#[derive(Debug)]
pub struct Opened<S> {
    pub store: S,
    /// The top descriptor (from `index.json`, without its ref-name annotation).
    pub top: Descriptor,
    /// Its bytes, already checked against `top`.
    pub top_bytes: Vec<u8>,
    /// What to call the image: a normalised full reference when the source names one
    /// (`docker.io/library/busybox:1.36`), else `oci-layout:PATH:TAG` / `docker-archive:FILE`.
    pub reference: String,
}

/// Splits `PATH[:TAG]` (the part after `oci-layout://` or `docker-archive://`).
///
/// Rule: if the whole string names an existing entry of the wanted kind (a directory when
/// `want_dir`, else a regular file), there is no tag. Otherwise the string is cut at a `:`, trying
/// the rightmost first, and the first (longest) left part that exists with the wanted kind is the
/// path; everything after that `:` is the tag. A tag may thus contain `:` and `/`
/// (`/data/lay:docker.io/library/nginx:1.27` → `/data/lay` + `docker.io/library/nginx:1.27`), and
/// a path may contain `:` as long as it exists. Nothing existing → a usage error.
pub fn split_location(s: &str, want_dir: bool) -> Result<(PathBuf, Option<String>)> {
    let is_kind = |p: &str| {
        !p.is_empty()
            && fs::metadata(p).is_ok_and(|m| if want_dir { m.is_dir() } else { m.is_file() })
    };
    if is_kind(s) {
        return Ok((PathBuf::from(s), None));
    }
    for (i, _) in s.rmatch_indices(':') {
        if is_kind(&s[..i]) {
            let tag = &s[i + 1..];
            if tag.is_empty() {
                return Ok((PathBuf::from(&s[..i]), None));
            }
            return Ok((PathBuf::from(&s[..i]), Some(tag.to_string())));
        }
    }
    Err(Error::Usage(format!(
        "{s:?}: no {} found at this path (nor before any ':' in it)",
        if want_dir {
            "OCI layout directory"
        } else {
            "archive file"
        }
    )))
}

/// Checks the `oci-layout` file's bytes.
pub fn check_layout_file(bytes: &[u8], what: &str) -> Result<()> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LayoutFile {
        image_layout_version: String,
    }
    let f: LayoutFile = json::from_slice(bytes, what).map_err(|e| {
        Error::Other(format!(
            "{what}: not an OCI layout file ({}); expected {{\"imageLayoutVersion\": \"1.0.0\"}}",
            e.detail()
        ))
    })?;
    if f.image_layout_version != LAYOUT_VERSION {
        return Err(Error::Other(format!(
            "{what}: imageLayoutVersion {:?} is not supported (only {LAYOUT_VERSION})",
            f.image_layout_version
        )));
    }
    Ok(())
}

/// One `index.json` entry: its descriptor, or why it cannot be used (e.g. a digest algorithm
/// other than sha256), which only matters if it is the one selected.
pub(crate) struct Entry {
    pub desc: std::result::Result<Descriptor, String>,
    pub names: Vec<String>,
}

/// Parses `index.json` leniently: unknown media types and fields are fine, and an entry that is
/// not a usable descriptor only fails if it is selected.
pub(crate) fn parse_index(bytes: &[u8], what: &str) -> Result<Vec<Entry>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Index {
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Vec<serde_json::Value>,
    }
    let idx: Index = json::from_slice(bytes, what)
        .map_err(|e| Error::Other(format!("{what}: not an image index: {}", e.detail())))?;
    if idx.schema_version != Some(2) {
        return Err(Error::Other(format!(
            "{what}: schemaVersion {:?} is not supported (only 2)",
            idx.schema_version
        )));
    }
    Ok(idx
        .manifests
        .into_iter()
        .map(|v| {
            let names = [REF_NAME, CONTAINERD_NAME]
                .iter()
                .filter_map(|k| v.get("annotations")?.get(*k)?.as_str().map(String::from))
                .collect();
            let desc = serde_json::from_value::<Descriptor>(v).map_err(|e| e.to_string());
            Entry { desc, names }
        })
        .collect())
}

/// Whether `wanted` (a TAG given by the user) names `name` (a ref name or RepoTag): equal, or
/// equal as image references after Docker normalisation (`busybox:1.36` =
/// `docker.io/library/busybox:1.36`) when both look like full references.
pub fn name_matches(wanted: &str, name: &str) -> bool {
    if wanted == name {
        return true;
    }
    let full = |s: &str| s.contains('/') || s.contains(':');
    if !(full(wanted) && full(name)) {
        return false;
    }
    match (Reference::parse(wanted), Reference::parse(name)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The normalised full reference a name stands for, if it is one (has a repository and a tag).
pub fn full_reference(name: &str) -> Option<String> {
    if !name.contains(':') || name.starts_with(':') {
        return None;
    }
    let r = Reference::parse(name).ok()?;
    // `1.36` alone parses as docker.io/library/1.36:latest: not a reference a user meant.
    r.tag.as_ref()?;
    Some(r.to_string())
}

/// Picks the entry named `tag`, or the only one when there is no tag.
pub(crate) fn select(entries: Vec<Entry>, tag: Option<&str>, what: &str) -> Result<Entry> {
    let available = || {
        let mut names: Vec<String> = entries
            .iter()
            // The fullest name: containerd's full reference if there is one.
            .flat_map(|e| e.names.last().cloned())
            .collect();
        names.dedup();
        if names.is_empty() {
            "none: no entry has a name".to_string()
        } else {
            names.join(", ")
        }
    };
    let pos = match tag {
        Some(t) => {
            let hits: Vec<usize> = (0..entries.len())
                .filter(|&i| entries[i].names.iter().any(|n| name_matches(t, n)))
                .collect();
            match hits.as_slice() {
                [] => {
                    return Err(Error::Usage(format!(
                        "{what}: no image named {t:?} (available: {})",
                        available()
                    )))
                }
                [i] => *i,
                [i, rest @ ..] => {
                    // The same image listed twice under one name is fine; two images are not.
                    let d = |k: usize| entries[k].desc.as_ref().ok().map(|d| d.digest);
                    if rest.iter().all(|&k| d(k) == d(*i)) {
                        *i
                    } else {
                        return Err(Error::Usage(format!(
                            "{what}: {} different images are named {t:?}",
                            hits.len()
                        )));
                    }
                }
            }
        }
        None => match entries.len() {
            0 => return Err(Error::Other(format!("{what}: index.json lists no image"))),
            1 => 0,
            n => {
                return Err(Error::Usage(format!(
                    "{what}: holds {n} images; say which one with :TAG (available: {})",
                    available()
                )))
            }
        },
    };
    Ok(entries.into_iter().nth(pos).expect("in range"))
}

/// The selected entry as a top descriptor (ref-name annotations dropped: a target sets its own).
pub(crate) fn top_descriptor(e: &Entry, what: &str) -> Result<Descriptor> {
    let mut d = e
        .desc
        .clone()
        .map_err(|m| Error::Other(format!("{what}: the selected index.json entry: {m}")))?;
    if !model::is_manifest(&d.media_type) {
        return Err(Error::Other(format!(
            "{what}: the selected entry {} has media type {:?}, not an image manifest or index",
            d.digest, d.media_type
        )));
    }
    d.annotations.remove(REF_NAME);
    d.annotations.remove(CONTAINERD_NAME);
    Ok(d)
}

/// An OCI image layout directory as an [`ImageStore`].
#[derive(Debug, Clone)]
pub struct LayoutStore {
    root: PathBuf,
    /// The canonical root: blob paths must resolve inside it.
    canon: PathBuf,
}

/// Opens `oci-layout://PATH[:TAG]` (already split, see [`split_location`]).
pub fn open(path: &Path, tag: Option<&str>) -> Result<Opened<LayoutStore>> {
    let store = LayoutStore::new(path)?;
    let what = store.name();
    let index_path = path.join("index.json");
    let index = read_bounded(&index_path, MAX_MANIFEST)?;
    from_index(store, &index, &index_path.display().to_string(), tag, &what)
}

/// Selects the image named `tag` in `index` (an OCI layout's `index.json`, read from `index_what`)
/// and reads its top manifest from `store`.
pub(crate) fn from_index<S: ImageStore>(
    store: S,
    index: &[u8],
    index_what: &str,
    tag: Option<&str>,
    what: &str,
) -> Result<Opened<S>> {
    let entry = select(parse_index(index, index_what)?, tag, what)?;
    let top = top_descriptor(&entry, what)?;
    let top_bytes = store.manifest(&top)?;
    let reference = entry
        .names
        .iter()
        .find_map(|n| full_reference(n))
        .unwrap_or_else(|| match entry.names.first() {
            Some(n) => format!("{what}:{n}"),
            None => what.to_string(),
        });
    Ok(Opened {
        store,
        top,
        top_bytes,
        reference,
    })
}

/// Reads a whole small file, refusing one larger than `max`.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    crate::fsutil::read_regular(path, max)
}

pub(crate) fn read_all_bounded(r: impl Read, max: u64, path: &Path) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    r.take(max + 1)
        .read_to_end(&mut v)
        .map_err(|e| Error::io("read", path, e))?;
    if v.len() as u64 > max {
        return Err(Error::Other(format!(
            "{}: larger than {max} bytes",
            path.display()
        )));
    }
    Ok(v)
}

impl LayoutStore {
    /// Checks `PATH/oci-layout` and that `PATH/blobs` is a directory.
    pub fn new(root: &Path) -> Result<LayoutStore> {
        let layout_file = root.join(LAYOUT_FILE);
        let bytes = read_bounded(&layout_file, 4096)?;
        check_layout_file(&bytes, &layout_file.display().to_string())?;
        let canon = fs::canonicalize(root).map_err(|e| Error::io("resolve", root, e))?;
        Ok(LayoutStore {
            root: root.to_path_buf(),
            canon,
        })
    }

    /// The blob's path inside the layout, resolved, checked to stay inside the layout and to be
    /// a regular file; with its size.
    fn locate(&self, desc: &Descriptor) -> Result<(PathBuf, u64)> {
        let rel = format!("blobs/sha256/{}", desc.digest.hex());
        let path = self.root.join(&rel);
        let real = fs::canonicalize(&path).map_err(|e| {
            Error::Other(format!(
                "{}: blob {} is missing from the layout ({e})",
                path.display(),
                desc.digest
            ))
        })?;
        if !real.starts_with(&self.canon) {
            return Err(Error::Other(format!(
                "{}: blob {} is a link leading outside the layout (to {}); refused",
                path.display(),
                desc.digest,
                real.display()
            )));
        }
        let m = fs::metadata(&real).map_err(|e| Error::io("inspect", &real, e))?;
        if !m.is_file() {
            return Err(Error::Other(format!(
                "{}: blob {} is not a regular file",
                path.display(),
                desc.digest
            )));
        }
        Ok((real, m.len()))
    }
}

impl ImageStore for LayoutStore {
    fn name(&self) -> String {
        format!("oci-layout:{}", self.root.display())
    }

    fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        let (path, len) = self.locate(desc)?;
        if len > MAX_MANIFEST {
            return Err(Error::Other(format!(
                "{}: manifest {} is {len} bytes, more than the {MAX_MANIFEST} allowed",
                path.display(),
                desc.digest
            )));
        }
        let bytes = read_bounded(&path, MAX_MANIFEST)?;
        check_manifest(&bytes, desc, &path.display().to_string())?;
        Ok(bytes)
    }

    fn blob(&self, desc: &Descriptor) -> Result<Origin> {
        let (path, len) = self.locate(desc)?;
        check_size(len, desc, &path)?;
        Ok(Origin::File { path, offset: 0 })
    }
}

pub(crate) fn check_size(len: u64, desc: &Descriptor, path: &Path) -> Result<()> {
    if len != desc.size {
        return Err(Error::Other(format!(
            "{}: blob {} is {len} bytes, its descriptor says {}",
            path.display(),
            desc.digest,
            desc.size
        )));
    }
    Ok(())
}

/// Annotations of a new `index.json` entry naming an image `name`.
pub fn ref_annotations(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(REF_NAME.to_string(), name.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let lay = dir.path().join("a:b");
        fs::create_dir(&lay).unwrap();
        let s = lay.display().to_string();
        assert_eq!(split_location(&s, true).unwrap(), (lay.clone(), None));
        assert_eq!(
            split_location(&format!("{s}:t"), true).unwrap(),
            (lay.clone(), Some("t".into()))
        );
        assert_eq!(
            split_location(&format!("{s}:docker.io/library/nginx:1.27"), true).unwrap(),
            (lay.clone(), Some("docker.io/library/nginx:1.27".into()))
        );
        assert!(split_location(&format!("{s}x:t"), true).is_err());
        // A directory is not an archive file.
        assert!(split_location(&format!("{s}:t"), false).is_err());
    }

    #[test]
    fn names_match_normalised() {
        assert!(name_matches("t", "t"));
        assert!(name_matches(
            "busybox:1.36",
            "docker.io/library/busybox:1.36"
        ));
        assert!(!name_matches("busybox:1.36", "1.36"));
        assert!(!name_matches("1.36", "busybox:1.36"));
        assert_eq!(
            full_reference("busybox:1.36").as_deref(),
            Some("docker.io/library/busybox:1.36")
        );
        assert_eq!(full_reference("1.36"), None);
        assert_eq!(full_reference("t"), None);
    }
}
