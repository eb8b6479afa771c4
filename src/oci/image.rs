//! Images as airlock carries them: a top manifest (an index or an image manifest) and every
//! blob it reaches, collected from any [`ImageStore`] (a registry, an OCI layout, a docker
//! archive) with every digest checked, and pushed or written from any [`BlobSource`].

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use super::model::{self, Descriptor, Doc, Platform};
use crate::error::{Error, Result};
use crate::format::Digest;

pub use crate::blob::MAX_MANIFEST;
/// Deepest index nesting followed (index → index → … → manifest).
pub const MAX_DEPTH: usize = 4;

pub use crate::blob::{BlobSource, Opener, Origin};

/// One blob (manifest, config or layer) of a collected image.
#[derive(Debug, Clone)]
pub struct ImageBlob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub origin: Origin,
}

/// An image ready to pack: its top manifest and every blob it reaches (manifests included),
/// each once, children before parents.
#[derive(Debug, Clone)]
pub struct CollectedImage {
    /// Where it came from, normalised (`docker.io/library/nginx:1.27`, `oci-layout:…`).
    pub reference: String,
    /// The top manifest.
    pub top: Descriptor,
    pub blobs: Vec<ImageBlob>,
    /// Platforms of the manifests kept (empty for a single-platform image without platform info).
    pub platforms: Vec<String>,
}

/// Something images can be read from. Implementations verify what they return: `manifest`
/// returns bytes whose digest and size match `desc`; `blob` returns an origin whose bytes the
/// caller (the bundle writer) checks against `desc.digest` while copying.
pub trait ImageStore {
    /// A short name for messages (`registry.example.com/app`, `oci-layout:/path`).
    fn name(&self) -> String;
    fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>>;
    fn blob(&self, desc: &Descriptor) -> Result<Origin>;
}

/// Which children of an index to keep.
#[derive(Debug, Clone, Default)]
pub enum PlatformChoice {
    /// Keep the whole index, byte for byte (the default: digests stay identical to upstream).
    #[default]
    All,
    /// Keep only children matching these. One match: the image becomes that child manifest.
    /// Several: a new index over them is written (its digest differs from upstream's).
    Only(Vec<Platform>),
}

/// Checks manifest bytes against the descriptor that referenced them.
pub fn check_manifest(bytes: &[u8], desc: &Descriptor, what: &str) -> Result<()> {
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(Error::Corrupt(format!(
            "{what}: manifest {} is larger than {MAX_MANIFEST} bytes",
            desc.digest
        )));
    }
    let actual = Digest::of(bytes);
    if actual != desc.digest {
        return Err(Error::DigestMismatch {
            what: format!("manifest {what}"),
            expected: desc.digest,
            actual,
        });
    }
    if bytes.len() as u64 != desc.size {
        return Err(Error::SizeMismatch {
            what: format!("manifest from {what}"),
            digest: desc.digest,
            declared: desc.size,
            detail: format!("is {} bytes", bytes.len()),
        });
    }
    Ok(())
}

/// Walks the image graph from `top` (whose bytes are `top_bytes`, already verified), selecting
/// platforms, and returns every blob needed. Layers shared by several platforms appear once.
pub fn collect(
    store: &dyn ImageStore,
    reference: &str,
    top: Descriptor,
    top_bytes: Vec<u8>,
    choice: &PlatformChoice,
) -> Result<CollectedImage> {
    let mut c = Collector {
        store,
        seen: HashSet::new(),
        blobs: Vec::new(),
        platforms: Vec::new(),
    };
    let top_doc = Doc::parse(
        &top_bytes,
        &top.media_type,
        &format!("{} {}", store.name(), top.digest),
    )?;
    match (&top_doc, choice) {
        (Doc::Index { manifests }, PlatformChoice::Only(wanted)) => {
            let picked: Vec<&Descriptor> = manifests
                .iter()
                .filter(|d| {
                    d.platform
                        .as_ref()
                        .is_some_and(|p| wanted.iter().any(|w| w.selects(p)))
                })
                .collect();
            if picked.is_empty() {
                let have: Vec<String> = manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                    .collect();
                return Err(Error::Usage(format!(
                    "{reference}: no manifest for platform {} (the index has: {})",
                    wanted
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    if have.is_empty() {
                        "none with a platform".to_string()
                    } else {
                        have.join(", ")
                    }
                )));
            }
            if picked.len() == 1 {
                let child = picked[0].clone();
                let bytes = store.manifest(&child)?;
                check_manifest(&bytes, &child, &store.name())?;
                c.walk(&child, bytes, 1)?;
                let mut top = child;
                top.annotations.clear();
                return Ok(c.finish(reference, top));
            }
            // Several: a new index over the picked children, in the original order.
            let mut new_index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": top.media_type,
                "manifests": picked,
            });
            if top.media_type == model::DOCKER_LIST {
                new_index["mediaType"] = model::DOCKER_LIST.into();
            }
            let bytes = serde_json::to_vec(&new_index).expect("serialisable");
            for child in &picked {
                let cb = store.manifest(child)?;
                check_manifest(&cb, child, &store.name())?;
                c.walk(child, cb, 1)?;
            }
            let desc = model::descriptor_of(&bytes, &top.media_type);
            c.push_bytes(&desc, bytes);
            Ok(c.finish(reference, desc))
        }
        _ => {
            c.walk(&top, top_bytes, 0)?;
            Ok(c.finish(reference, top))
        }
    }
}

struct Collector<'a> {
    store: &'a dyn ImageStore,
    seen: HashSet<Digest>,
    blobs: Vec<ImageBlob>,
    platforms: Vec<String>,
}

impl Collector<'_> {
    fn push_bytes(&mut self, desc: &Descriptor, bytes: Vec<u8>) {
        if self.seen.insert(desc.digest) {
            self.blobs.push(ImageBlob {
                digest: desc.digest,
                size: bytes.len() as u64,
                media_type: desc.media_type.clone(),
                origin: Origin::Bytes(Arc::new(bytes)),
            });
        }
    }

    fn walk(&mut self, desc: &Descriptor, bytes: Vec<u8>, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(too_deep(&self.store.name(), desc));
        }
        if self.seen.contains(&desc.digest) {
            return Ok(());
        }
        if let Some(p) = &desc.platform {
            let p = p.to_string();
            if !self.platforms.contains(&p) {
                self.platforms.push(p);
            }
        }
        let what = format!("{} {}", self.store.name(), desc.digest);
        match Doc::parse(&bytes, &desc.media_type, &what)? {
            Doc::Index { manifests } => {
                for child in &manifests {
                    if !model::is_manifest(&child.media_type) {
                        // An artifact index may list non-manifest blobs: carry them as blobs.
                        self.blob(child)?;
                        continue;
                    }
                    let cb = self.store.manifest(child)?;
                    check_manifest(&cb, child, &self.store.name())?;
                    self.walk(child, cb, depth + 1)?;
                }
            }
            Doc::Image { config, layers } => {
                self.blob(&config)?;
                for l in &layers {
                    self.blob(l)?;
                }
            }
        }
        self.push_bytes(desc, bytes);
        Ok(())
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<()> {
        if self.seen.insert(desc.digest) {
            let origin = self.store.blob(desc)?;
            self.blobs.push(ImageBlob {
                digest: desc.digest,
                size: desc.size,
                media_type: desc.media_type.clone(),
                origin,
            });
        }
        Ok(())
    }

    fn finish(self, reference: &str, top: Descriptor) -> CollectedImage {
        CollectedImage {
            reference: reference.to_string(),
            top,
            blobs: self.blobs,
            platforms: self.platforms,
        }
    }
}

/// Every manifest reachable from `top` in a [`BlobSource`], children before parents, with
/// their bytes; and every non-manifest blob descriptor (configs, layers), each once.
pub struct Graph {
    pub manifests: Vec<(Descriptor, Vec<u8>)>,
    pub blobs: Vec<Descriptor>,
}

/// The refusal of an index nested deeper than [`MAX_DEPTH`] (pack and import alike).
fn too_deep(store: &str, desc: &Descriptor) -> Error {
    Error::Corrupt(format!(
        "{store}: image indexes nested deeper than {MAX_DEPTH} levels, at manifest {}; refused",
        desc.digest
    ))
}

/// Walks an image held in a [`BlobSource`] (the push and layout targets use it), with the
/// limits [`collect`] applies when packing: indexes nested at most [`MAX_DEPTH`] deep,
/// manifests of at most [`MAX_MANIFEST`] bytes. A limit exceeded, a manifest the source does
/// not hold or holds with another size, or one that is not what its descriptor says is a
/// refusal (exit 3), never a shorter graph.
pub fn graph(src: &dyn BlobSource, top: &Descriptor) -> Result<Graph> {
    fn go(
        src: &dyn BlobSource,
        name: &str,
        desc: &Descriptor,
        depth: usize,
        seen: &mut HashSet<Digest>,
        g: &mut Graph,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(too_deep(name, desc));
        }
        if !seen.insert(desc.digest) {
            return Ok(());
        }
        match src.size(&desc.digest) {
            None => {
                return Err(Error::Corrupt(format!(
                    "{name}: manifest {} ({}) is not in the bundle",
                    desc.digest, desc.media_type
                )))
            }
            Some(s) if s != desc.size => {
                return Err(Error::SizeMismatch {
                    what: format!("{name}: manifest"),
                    digest: desc.digest,
                    declared: desc.size,
                    detail: format!("is {s} bytes in the bundle"),
                })
            }
            Some(_) => {}
        }
        let bytes = src.read_small(&desc.digest)?;
        check_manifest(&bytes, desc, name)?;
        match Doc::parse(
            &bytes,
            &desc.media_type,
            &format!("{name}: manifest {}", desc.digest),
        )? {
            Doc::Index { manifests } => {
                for child in &manifests {
                    if model::is_manifest(&child.media_type) {
                        go(src, name, child, depth + 1, seen, g)?;
                    } else if seen.insert(child.digest) {
                        g.blobs.push(child.clone());
                    }
                }
            }
            Doc::Image { config, layers } => {
                for d in std::iter::once(&config).chain(layers.iter()) {
                    if seen.insert(d.digest) {
                        g.blobs.push(d.clone());
                    }
                }
            }
        }
        g.manifests.push((desc.clone(), bytes));
        Ok(())
    }
    let mut g = Graph {
        manifests: Vec::new(),
        blobs: Vec::new(),
    };
    let name = format!("image {}", top.digest);
    go(src, &name, top, 0, &mut HashSet::new(), &mut g)?;
    Ok(g)
}

/// A [`BlobSource`] over an OCI image layout's `blobs/sha256/` directory, each blob checked
/// against its digest as it is read: for tests and tools that push a layout with
/// [`crate::oci::push::push_image`]. No import target takes a `BlobSource`; they take only an
/// admitted bundle and its staging area (`crate::stage`).
#[doc(hidden)]
pub struct LayoutBlobs(pub PathBuf);

impl BlobSource for LayoutBlobs {
    fn size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.0.join("blobs/sha256").join(digest.hex()))
            .ok()
            .map(|m| m.len())
    }
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        let path = self.0.join("blobs/sha256").join(digest.hex());
        let f = crate::fsutil::open_regular(&path)?;
        Ok(Box::new(crate::format::CheckingReader::new(
            f,
            *digest,
            path.display().to_string(),
        )))
    }
}
