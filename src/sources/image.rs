//! Container images and OCI artifacts as sources: `oci://` registries, `oci-layout://`
//! directories and `docker-archive://` tars. Each resolves into one `image` artifact whose entries
//! form an OCI image layout; blobs stream straight into the bundle and are digest-checked there.

use std::sync::Arc;

use crate::bundle::{Origin, PlannedBlob};
use crate::error::{Error, Result};
use crate::format::{Artifact, ArtifactKind, Digest, Entry, ImageInfo};
use crate::oci::client::{ConnectOptions, Registry};
use crate::oci::image::{self, CollectedImage, ImageStore, PlatformChoice};
use crate::oci::model::{self, Descriptor, Platform};
use crate::oci::reference::Reference;
use crate::oci::{archive, layout};

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageLocation {
    /// `oci://[HOST/]REPO[:TAG][@DIGEST]`.
    Registry(String),
    /// `oci-layout://PATH[:TAG]`.
    Layout(String),
    /// `docker-archive://FILE[:REF]`.
    Archive(String),
}

/// Which platforms of a multi-platform image to carry, as the operator said it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlatformArgs {
    pub platforms: Vec<String>,
    pub all: bool,
}

impl PlatformArgs {
    pub fn choice(&self) -> Result<PlatformChoice> {
        if self.all && !self.platforms.is_empty() {
            return Err(Error::Usage(
                "--all-platforms and --platform exclude each other".into(),
            ));
        }
        if self.platforms.is_empty() {
            return Ok(PlatformChoice::All);
        }
        Ok(PlatformChoice::Only(
            self.platforms
                .iter()
                .map(|p| Platform::parse(p))
                .collect::<Result<_>>()?,
        ))
    }
}

/// The OCI layout file every image artifact carries.
pub const OCI_LAYOUT_BYTES: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";

/// An [`ImageStore`] over one repository of a registry (also used by the Ollama source).
pub(crate) struct RegistryStore {
    pub(crate) reg: Arc<Registry>,
    pub(crate) host: String,
    pub(crate) repo: String,
}

impl ImageStore for RegistryStore {
    fn name(&self) -> String {
        format!("{}/{}", self.host, self.repo)
    }
    fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        Ok(self
            .reg
            .manifest(&self.repo, &desc.digest.to_string())?
            .bytes)
    }
    fn blob(&self, desc: &Descriptor) -> Result<Origin> {
        let (reg, repo, d) = (self.reg.clone(), self.repo.clone(), desc.clone());
        Ok(Origin::Stream {
            open: Arc::new(move || {
                Ok(Box::new(reg.blob_reader(&repo, &d)?) as Box<dyn std::io::Read + Send>)
            }),
            what: format!("{}/{}@{}", self.host, self.repo, desc.digest),
        })
    }
}

/// Pulls the top manifest and walks the image in a registry.
fn collect_registry(
    given: &str,
    choice: &PlatformChoice,
    connect: &ConnectOptions,
) -> Result<CollectedImage> {
    let r = Reference::parse(given).map_err(|e| Error::Usage(e.to_string()))?;
    let reg = Arc::new(Registry::new(r.api_host(), connect)?);
    let top = reg.manifest(&r.repository, &r.manifest_ref())?;
    let media_type = if model::is_manifest(&top.media_type) {
        top.media_type.clone()
    } else {
        model::declared_media_type(&top.bytes).unwrap_or_default()
    };
    if !model::is_manifest(&media_type) {
        return Err(Error::Other(format!(
            "{given}: the registry served a manifest of type {:?}, which airlock cannot carry",
            top.media_type
        )));
    }
    let desc = model::descriptor_of(&top.bytes, &media_type);
    let store = RegistryStore {
        reg,
        host: r.host.clone(),
        repo: r.repository.clone(),
    };
    image::collect(&store, &r.to_string(), desc, top.bytes, choice)
}

/// Whether a layer of this media type is worth compressing: compressed layers are not,
/// uncompressed tars are; others are left to the writer's default.
fn compress_hint(media_type: &str) -> Option<bool> {
    let mt = media_type.to_ascii_lowercase();
    if ["gzip", "zstd", "+zip", "xz", "bzip2"]
        .iter()
        .any(|z| mt.ends_with(z))
    {
        Some(false)
    } else if mt.ends_with(".tar") || mt.ends_with("tar.diff") || mt.ends_with(".rootfs.diff.tar") {
        Some(true)
    } else {
        None
    }
}

/// A default artifact name from a reference: `docker.io/library/nginx:1.27` →
/// `docker.io_library_nginx_1.27`; a digest is shortened to 12 hex digits.
pub fn default_name(reference: &str) -> String {
    let (base, digest) = match reference.split_once("@sha256:") {
        Some((b, d)) => (b, Some(&d[..d.len().min(12)])),
        None => (reference, None),
    };
    let mut n: String = base
        .chars()
        .map(|c| if c == '/' || c == ':' { '_' } else { c })
        .collect();
    if let Some(d) = digest {
        n = format!("{n}@{d}");
    }
    n
}

/// Resolves an image source into its artifact and the blobs it needs.
pub fn resolve(
    location: &ImageLocation,
    platforms: &PlatformArgs,
    given: &str,
    name: Option<&str>,
    connect: &ConnectOptions,
) -> Result<(Artifact, Vec<PlannedBlob>)> {
    let choice = platforms.choice()?;
    let img = match location {
        ImageLocation::Registry(r) => collect_registry(r, &choice, connect)?,
        ImageLocation::Layout(spec) => {
            let (path, tag) = layout::split_location(spec, true)?;
            let o = layout::open(&path, tag.as_deref())?;
            image::collect(&o.store, &o.reference, o.top, o.top_bytes, &choice)?
        }
        ImageLocation::Archive(spec) => {
            let (path, reference) = layout::split_location(spec, false)?;
            let o = archive::open(&path, reference.as_deref())?;
            image::collect(&o.store, &o.reference, o.top, o.top_bytes, &choice)?
        }
    };
    Ok(to_artifact(img, given, name))
}

/// The artifact (an OCI layout of the image) and its blobs.
pub fn to_artifact(
    img: CollectedImage,
    given: &str,
    name: Option<&str>,
) -> (Artifact, Vec<PlannedBlob>) {
    let mut top = img.top.clone();
    top.annotations
        .insert(model::REF_NAME.to_string(), img.reference.clone());
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": model::OCI_INDEX,
        "manifests": [top],
    }))
    .expect("serialisable");
    let mut entries = vec![Entry::dir("blobs"), Entry::dir("blobs/sha256")];
    let mut needed = Vec::new();
    for (path, bytes) in [
        ("oci-layout", OCI_LAYOUT_BYTES.to_vec()),
        ("index.json", index),
    ] {
        let digest = Digest::of(&bytes);
        entries.push(Entry::file(path, digest, bytes.len() as u64));
        needed.push(PlannedBlob {
            digest,
            size: bytes.len() as u64,
            origin: Origin::Bytes(Arc::new(bytes)),
            compress: None,
        });
    }
    for b in &img.blobs {
        entries.push(Entry::file(
            &format!("blobs/sha256/{}", b.digest.hex()),
            b.digest,
            b.size,
        ));
        needed.push(PlannedBlob {
            digest: b.digest,
            size: b.size,
            origin: b.origin.clone(),
            compress: compress_hint(&b.media_type),
        });
    }
    let identity = match img.reference.split_once('@') {
        Some((base, _)) => format!("{base}@{}", img.top.digest),
        None => format!("{}@{}", img.reference, img.top.digest),
    };
    let artifact = Artifact {
        name: name
            .map(str::to_string)
            .unwrap_or_else(|| default_name(&img.reference)),
        kind: ArtifactKind::Image,
        source: given.to_string(),
        identity,
        entries,
        image: Some(ImageInfo {
            reference: img.reference,
            digest: img.top.digest,
            media_type: img.top.media_type,
            size: img.top.size,
            platforms: img.platforms,
        }),
        hf: None,
    };
    (artifact, needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hints() {
        assert_eq!(
            default_name("docker.io/library/nginx:1.27"),
            "docker.io_library_nginx_1.27"
        );
        assert_eq!(
            default_name(&format!("127.0.0.1:5000/a/b@sha256:{}", "ab".repeat(32))),
            "127.0.0.1_5000_a_b@abababababab"
        );
        assert_eq!(
            compress_hint("application/vnd.oci.image.layer.v1.tar+gzip"),
            Some(false)
        );
        assert_eq!(
            compress_hint("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(false)
        );
        assert_eq!(
            compress_hint("application/vnd.oci.image.layer.v1.tar"),
            Some(true)
        );
        assert_eq!(
            compress_hint("application/vnd.oci.image.config.v1+json"),
            None
        );
    }
}
