//! Source `docker-archive://FILE.tar[:REF]`: the output of `docker save` (or `skopeo copy …
//! docker-archive:…`). The tar is indexed once (member name → data offset and size); members are
//! read in place, layers never loaded into memory.
//!
//! Two layouts exist:
//! - **OCI in a tar** (docker ≥ 25): `oci-layout`, `index.json`, `blobs/sha256/…`. Read like an
//!   OCI layout directory; digests are the real ones. Preferred when present.
//! - **Legacy** (`manifest.json` = `[{"Config", "RepoTags", "Layers"}]`, layers uncompressed). No
//!   registry manifest is stored, so one is synthesised, the same shape docker ≥ 25 itself writes:
//!   an OCI image manifest (`schemaVersion` 2, `mediaType` OCI manifest) whose config descriptor
//!   is `application/vnd.oci.image.config.v1+json` with the sha256 and size of the config file,
//!   and whose layers are `application/vnd.oci.image.layer.v1.tar`, in order, with the digests
//!   the config's `rootfs.diff_ids` gives (by definition the sha256 of each uncompressed layer
//!   tar) and the member sizes. Serialised compactly with fixed field order, so the digest is a
//!   function of the archive's content alone. The layer digests are checked when the bundle
//!   writer copies the layers (a layer that does not match its diff_id fails there, naming it).
//!
//! REF selects among `RepoTags` (legacy) or the `org.opencontainers.image.ref.name` /
//! `io.containerd.image.name` annotations (OCI), compared as written or as normalised image
//! references (`busybox:1.36` = `docker.io/library/busybox:1.36`); a legacy image may also be
//! selected by its config digest (its image id, `sha256:…`). Without REF the archive must hold
//! one image.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::image::{check_manifest, ImageStore, Origin, MAX_MANIFEST};
use super::layout::{self, check_layout_file, full_reference, name_matches, Opened};
use super::model::{self, Descriptor};
use crate::error::{Error, Result};
use crate::format::json;
use crate::format::text::escape;
use crate::format::Digest;

/// Most members indexed (a docker save of even a large image has a few hundred).
pub const MAX_MEMBERS: usize = 1_000_000;
/// Largest image config read (they hold the history; usually a few KiB).
pub const MAX_CONFIG: u64 = 16 << 20;
/// Most symbolic or hard links followed to reach a member.
const MAX_LINKS: usize = 8;

#[derive(Debug, Clone)]
enum Kind {
    File,
    /// A symbolic link (target resolved against the member's directory) or a hard link.
    Link(Option<String>),
    Other(u8),
}

#[derive(Debug, Clone)]
struct Member {
    offset: u64,
    size: u64,
    kind: Kind,
}

/// A tar file's members by (normalised) name.
#[derive(Debug)]
pub struct TarIndex {
    path: PathBuf,
    members: HashMap<String, Member>,
}

/// `a/./b/../c` → `a/c`; `None` if it leaves the archive root or is absolute.
fn normalise(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

impl TarIndex {
    /// Reads every header once (skipping over the data).
    pub fn build(path: &Path) -> Result<TarIndex> {
        let bad = |e: std::io::Error| {
            Error::Other(format!(
                "{}: not a readable tar archive: {e}",
                path.display()
            ))
        };
        let f = crate::fsutil::open_regular(path)?;
        let mut ar = tar::Archive::new(f);
        let mut members = HashMap::new();
        for entry in ar.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            if members.len() >= MAX_MEMBERS {
                return Err(Error::Other(format!(
                    "{}: more than {MAX_MEMBERS} members; not a docker archive",
                    path.display()
                )));
            }
            let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
            let Some(name) = normalise(&name) else {
                continue;
            };
            let et = entry.header().entry_type();
            let kind = if et.is_file() {
                Kind::File
            } else if et.is_symlink() || et.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(bad)?
                    .map(|t| t.to_string_lossy().into_owned());
                let resolved = target.and_then(|t| {
                    if et.is_hard_link() {
                        normalise(&t)
                    } else {
                        let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        normalise(&format!("{dir}/{t}"))
                    }
                });
                Kind::Link(resolved)
            } else {
                Kind::Other(et.as_byte())
            };
            members.insert(
                name,
                Member {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                    kind,
                },
            );
        }
        Ok(TarIndex {
            path: path.to_path_buf(),
            members,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// Offset and size of a member's data, following links; it must be a regular file.
    pub fn locate(&self, name: &str) -> Result<(u64, u64)> {
        let mut cur = name.to_string();
        for _ in 0..=MAX_LINKS {
            let m = self.members.get(&cur).ok_or_else(|| {
                Error::Other(format!(
                    "{}: no member {cur:?} in the archive",
                    self.path.display()
                ))
            })?;
            match &m.kind {
                Kind::File => return Ok((m.offset, m.size)),
                Kind::Link(Some(t)) => cur = t.clone(),
                Kind::Link(None) => {
                    return Err(Error::Other(format!(
                        "{}: member {cur:?} is a link leading outside the archive",
                        self.path.display()
                    )))
                }
                Kind::Other(t) => {
                    return Err(Error::Other(format!(
                        "{}: member {cur:?} is not a regular file (tar type {:?})",
                        self.path.display(),
                        *t as char
                    )))
                }
            }
        }
        Err(Error::Other(format!(
            "{}: member {name:?}: more than {MAX_LINKS} links deep",
            self.path.display()
        )))
    }

    /// A reader over a member's bytes.
    pub fn open(&self, name: &str) -> Result<impl Read> {
        let (offset, size) = self.locate(name)?;
        let mut f = crate::fsutil::open_regular(&self.path)?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("seek in", &self.path, e))?;
        Ok(f.take(size))
    }

    /// A small member read whole (refused above `max` bytes).
    pub fn read(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        let (_, size) = self.locate(name)?;
        if size > max {
            return Err(Error::Other(format!(
                "{}: member {name:?} is {size} bytes, more than the {max} allowed",
                self.path.display()
            )));
        }
        let what = self.path.join(name);
        layout::read_all_bounded(self.open(name)?, max, &what)
    }
}

/// A `docker save` archive as an [`ImageStore`].
#[derive(Debug)]
pub struct ArchiveStore {
    tar: TarIndex,
    /// Legacy archives: where each config and layer digest lives.
    by_digest: HashMap<Digest, String>,
    /// Legacy archives: the synthesised manifest.
    synthesised: Option<(Digest, Arc<Vec<u8>>)>,
}

impl ArchiveStore {
    fn member_of(&self, digest: &Digest) -> String {
        self.by_digest
            .get(digest)
            .cloned()
            .unwrap_or_else(|| format!("blobs/sha256/{}", digest.hex()))
    }
}

impl ImageStore for ArchiveStore {
    fn name(&self) -> String {
        format!("docker-archive:{}", self.tar.path.display())
    }

    fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        if let Some((d, bytes)) = &self.synthesised {
            if *d == desc.digest {
                return Ok(bytes.to_vec());
            }
        }
        let name = self.member_of(&desc.digest);
        let bytes = self.tar.read(&name, MAX_MANIFEST)?;
        check_manifest(
            &bytes,
            desc,
            &format!("{} member {name}", self.tar.path.display()),
        )?;
        Ok(bytes)
    }

    fn blob(&self, desc: &Descriptor) -> Result<Origin> {
        let name = self.member_of(&desc.digest);
        let (offset, size) = self
            .tar
            .locate(&name)
            .map_err(|e| Error::Other(format!("{e} (blob {} of {})", desc.digest, self.name())))?;
        layout::check_size(size, desc, &self.tar.path.join(&name))?;
        Ok(Origin::File {
            path: self.tar.path.clone(),
            offset,
        })
    }
}

#[derive(Deserialize)]
struct LegacyEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SynthManifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
}

/// Opens `docker-archive://FILE[:REF]` (already split, see [`layout::split_location`]).
pub fn open(file: &Path, reference: Option<&str>) -> Result<Opened<ArchiveStore>> {
    let tar = TarIndex::build(file)?;
    let mut store = ArchiveStore {
        tar,
        by_digest: HashMap::new(),
        synthesised: None,
    };
    let what = store.name();
    if store.tar.contains("index.json") && store.tar.contains(layout::LAYOUT_FILE) {
        let lf = store.tar.read(layout::LAYOUT_FILE, 4096)?;
        check_layout_file(&lf, &format!("{what} member oci-layout"))?;
        let index = store.tar.read("index.json", MAX_MANIFEST)?;
        let index_what = format!("{what} member index.json");
        return layout::from_index(store, &index, &index_what, reference, &what);
    }
    if !store.tar.contains("manifest.json") {
        return Err(Error::Other(format!(
            "{what}: neither manifest.json nor index.json + oci-layout: not a docker save archive"
        )));
    }
    let raw = store.tar.read("manifest.json", MAX_MANIFEST)?;
    let entries: Vec<LegacyEntry> = json::from_slice(&raw, "manifest.json")
        .map_err(|e| Error::Other(format!("{what}: member {e}")))?;
    let entry = select_legacy(entries, reference, &store, &what)?;

    let config_name = normalise(&entry.config).unwrap_or(entry.config.clone());
    let config_bytes = store.tar.read(&config_name, MAX_CONFIG)?;
    let config_digest = Digest::of(&config_bytes);
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<Digest>,
    }
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    let cfg: Config = json::from_slice(&config_bytes, "config").map_err(|e| {
        Error::Other(format!(
            "{what}: config {} ({config_digest}): no usable rootfs.diff_ids: {}",
            escape(&entry.config),
            e.detail()
        ))
    })?;
    if cfg.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(Error::Other(format!(
            "{what}: config {config_digest} lists {} layer digests but manifest.json {} layers",
            cfg.rootfs.diff_ids.len(),
            entry.layers.len()
        )));
    }
    let mut layers = Vec::new();
    for (name, diff_id) in entry.layers.iter().zip(&cfg.rootfs.diff_ids) {
        let name = normalise(name).unwrap_or_else(|| name.clone());
        let (_, size) = store.tar.locate(&name)?;
        let mut magic = [0u8; 2];
        if size >= 2 {
            store
                .tar
                .open(&name)?
                .read_exact(&mut magic)
                .map_err(|e| Error::io("read", store.tar.path.join(&name), e))?;
        }
        if magic == [0x1f, 0x8b] {
            return Err(Error::Other(format!(
                "{what}: layer {name} ({diff_id}) is gzip-compressed; docker archives hold \
                 uncompressed layers"
            )));
        }
        store.by_digest.insert(*diff_id, name);
        layers.push(plain(model::OCI_LAYER_TAR, *diff_id, size));
    }
    store.by_digest.insert(config_digest, config_name);
    let config = plain(model::OCI_CONFIG, config_digest, config_bytes.len() as u64);
    let bytes = serde_json::to_vec(&SynthManifest {
        schema_version: 2,
        media_type: model::OCI_MANIFEST,
        config: &config,
        layers: &layers,
    })
    .expect("serialisable");
    let top = model::descriptor_of(&bytes, model::OCI_MANIFEST);
    store.synthesised = Some((top.digest, Arc::new(bytes.clone())));
    let reference = entry
        .repo_tags
        .iter()
        .flatten()
        .find_map(|t| full_reference(t))
        .unwrap_or_else(|| format!("{what}@{config_digest}"));
    Ok(Opened {
        store,
        top,
        top_bytes: bytes,
        reference,
    })
}

fn plain(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest,
        size,
        platform: None,
        artifact_type: None,
        annotations: Default::default(),
    }
}

fn select_legacy(
    entries: Vec<LegacyEntry>,
    reference: Option<&str>,
    store: &ArchiveStore,
    what: &str,
) -> Result<LegacyEntry> {
    let available = |entries: &[LegacyEntry]| {
        let tags: Vec<String> = entries
            .iter()
            .map(|e| match e.repo_tags.as_deref() {
                Some(t) if !t.is_empty() => t.join(", "),
                _ => format!("untagged {}", e.config),
            })
            .collect();
        if tags.is_empty() {
            "none".to_string()
        } else {
            tags.join(", ")
        }
    };
    let pos = match reference {
        None => match entries.len() {
            0 => {
                return Err(Error::Other(format!(
                    "{what}: manifest.json lists no image"
                )))
            }
            1 => 0,
            n => {
                return Err(Error::Usage(format!(
                    "{what}: holds {n} images; say which one with :REF (available: {})",
                    available(&entries)
                )))
            }
        },
        Some(r) => {
            let by_id = |e: &LegacyEntry| {
                r.starts_with(Digest::PREFIX)
                    && store
                        .tar
                        .read(&normalise(&e.config).unwrap_or_default(), MAX_CONFIG)
                        .is_ok_and(|b| Digest::of(&b).to_string() == r)
            };
            let by_tag = |e: &LegacyEntry| e.repo_tags.iter().flatten().any(|t| name_matches(r, t));
            match entries
                .iter()
                .position(by_tag)
                .or_else(|| entries.iter().position(by_id))
            {
                Some(i) => i,
                None => {
                    return Err(Error::Usage(format!(
                        "{what}: no image tagged {r:?} (available: {})",
                        available(&entries)
                    )))
                }
            }
        }
    };
    Ok(entries.into_iter().nth(pos).expect("in range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_inside_the_archive() {
        assert_eq!(normalise("./a/b").as_deref(), Some("a/b"));
        assert_eq!(normalise("a/../b").as_deref(), Some("b"));
        assert_eq!(normalise("a/../../b"), None);
        assert_eq!(normalise("/etc/passwd"), None);
        assert_eq!(normalise("."), None);
    }
}
