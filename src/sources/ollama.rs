//! Ollama models as sources: `ollama://[HOST/][NAMESPACE/]MODEL[:TAG]`.
//!
//! Names follow ollama's `types/model/name.go`: the defaults are `registry.ollama.ai`, `library`
//! and `latest`; a tag is the text after the last `:` when that comes after the last `/`; the
//! rest splits from the right on `/` into model, namespace and host. Each part starts with a
//! letter, digit or `_` and continues with letters, digits, `_`, `-`, `.` (not in a namespace)
//! and `:` (only in a host); host 1 to 350 bytes, the others 1 to 80. Case is kept as given,
//! as ollama keeps it.
//!
//! The registry speaks OCI distribution with Docker schema 2 manifests whose layers are
//! `application/vnd.ollama.image.*` blobs; blobs may be answered with a redirect to a CDN on
//! another host. The manifest bytes are kept exactly (ollama's model ID is the SHA-256 of
//! them); the manifest is checked against the registry's `Docker-Content-Digest` when it sends
//! one, and every blob is hashed while it streams into the bundle. The result is an
//! `ollama-model` artifact: an OCI image layout like an `image` artifact, with
//! `image.reference` = `HOST/NAMESPACE/MODEL:TAG`.

use std::sync::Arc;

use crate::bundle::PlannedBlob;
use crate::error::{Error, Result};
use crate::format::{Artifact, ArtifactKind};
use crate::oci::client::{ConnectOptions, Registry};
use crate::oci::image::{self as oci_image, CollectedImage, PlatformChoice};
use crate::oci::model::{self, Doc};

use super::image::{to_artifact, RegistryStore};

pub use crate::oci::ollama::{
    OllamaName, DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, LAYER_PREFIX,
};

/// Pulls the manifest of `name` and walks its config and layers (nothing is downloaded yet:
/// blobs stream into the bundle later and are checked there).
pub fn collect(name: &OllamaName, connect: &ConnectOptions) -> Result<CollectedImage> {
    let reg = Arc::new(Registry::new(&name.host, connect)?);
    let repo = name.repository();
    let reference = name.reference();
    let top = reg.manifest(&repo, &name.tag)?;
    let media_type = model::declared_media_type(&top.bytes)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| top.media_type.clone());
    if media_type != model::DOCKER_MANIFEST && media_type != model::OCI_MANIFEST {
        return Err(Error::Other(format!(
            "ollama://{reference}: the registry served a manifest of type {media_type:?}; an \
             Ollama model is a Docker schema 2 image manifest"
        )));
    }
    match Doc::parse(&top.bytes, &media_type, &format!("ollama://{reference}"))? {
        Doc::Image { layers, .. } if layers.iter().any(|l| l.media_type.starts_with(LAYER_PREFIX)) => {}
        _ => {
            return Err(Error::Other(format!(
                "ollama://{reference}: not an Ollama model (no {LAYER_PREFIX}* layer); use oci:// for container images"
            )))
        }
    }
    let desc = model::descriptor_of(&top.bytes, &media_type);
    let store = RegistryStore {
        reg,
        host: name.host.clone(),
        repo,
    };
    oci_image::collect(&store, &reference, desc, top.bytes, &PlatformChoice::All)
}

/// Resolves an `ollama://` source into its `ollama-model` artifact and the blobs it needs.
pub fn resolve(
    name: &OllamaName,
    given: &str,
    artifact_name: Option<&str>,
    connect: &ConnectOptions,
) -> Result<(Artifact, Vec<PlannedBlob>)> {
    let img = collect(name, connect)?;
    let default = name.artifact_name();
    let (mut artifact, blobs) = to_artifact(img, given, Some(artifact_name.unwrap_or(&default)));
    artifact.kind = ArtifactKind::OllamaModel;
    Ok((artifact, blobs))
}
