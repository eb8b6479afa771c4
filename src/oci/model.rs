//! The few OCI / Docker document fields airlock needs to walk an image graph. Documents are
//! never re-serialised: these types are read-only views of bytes that travel untouched, so
//! unknown fields are ignored here (they pass through in the original bytes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::json;
use crate::format::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// The annotation an OCI image layout uses to name a manifest (a tag or a full reference).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Whether `media_type` is one of the index (multi-platform) types.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Whether `media_type` is a manifest or index type airlock can walk.
pub fn is_manifest(media_type: &str) -> bool {
    is_index(media_type) || media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`, e.g. `linux/amd64`, `linux/arm64/v8`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(Error::Usage(format!(
                "platform {s:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64"
            )));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
            os_version: None,
        })
    }

    /// Whether this (wanted) platform selects `other` (a descriptor's): OS and architecture
    /// equal, and the variant equal when the wanted one names a variant.
    pub fn selects(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor (OCI image-spec `descriptor.md`; Docker schema2 uses the same fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDoc {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    blobs: Option<Vec<Descriptor>>,
}

/// A parsed manifest or index: what it points at. (Short-lived; the size difference is fine.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    /// An index / manifest list: child manifests.
    Index { manifests: Vec<Descriptor> },
    /// An image (or artifact) manifest: config and layers.
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

impl Doc {
    /// Parses manifest bytes. `media_type` is the type the referrer (registry `Content-Type`,
    /// parent descriptor) gave; the document's own `mediaType`, when present, must agree.
    pub fn parse(bytes: &[u8], media_type: &str, what: &str) -> Result<Doc> {
        // Bytes that are not the manifest their referrer says: content refused (exit 3).
        let bad = |m: String| Error::Corrupt(format!("{what}: {m}"));
        let raw: RawDoc = json::from_slice(bytes, what)
            .map_err(|e| bad(format!("not a valid manifest: {}", e.detail())))?;
        if raw.schema_version != Some(2) {
            return Err(bad(format!(
                "schemaVersion {:?} is not supported (only 2; Docker schema 1 is deprecated)",
                raw.schema_version
            )));
        }
        let mt = match (&raw.media_type, media_type) {
            (Some(own), given) if !given.is_empty() && own != given => {
                return Err(bad(format!(
                    "says it is {own} but was served or referenced as {given}"
                )))
            }
            (Some(own), _) => own.clone(),
            (None, given) => given.to_string(),
        };
        if is_index(&mt) || (mt.is_empty() && raw.manifests.is_some()) {
            return Ok(Doc::Index {
                manifests: raw.manifests.unwrap_or_default(),
            });
        }
        if mt == OCI_MANIFEST || mt == DOCKER_MANIFEST || (mt.is_empty() && raw.config.is_some()) {
            let config = raw
                .config
                .ok_or_else(|| bad("image manifest without config".into()))?;
            let mut layers = raw.layers.unwrap_or_default();
            // Old OCI artifact manifests list `blobs` instead of `layers`.
            layers.extend(raw.blobs.unwrap_or_default());
            return Ok(Doc::Image { config, layers });
        }
        Err(bad(format!("unsupported manifest media type {mt:?}")))
    }
}

/// Descriptor of a manifest from its bytes.
pub fn descriptor_of(bytes: &[u8], media_type: &str) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        platform: None,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

/// The media type a manifest declares in its own `mediaType` field, if any.
pub fn declared_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Mt {
        media_type: Option<String>,
    }
    json::from_slice::<Mt>(bytes, "manifest").ok()?.media_type
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_select() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        let any_arm = Platform::parse("linux/arm64").unwrap();
        assert!(any_arm.selects(&p));
        assert!(!p.selects(&Platform::parse("linux/arm64/v7").unwrap()));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v8").is_err());
    }

    #[test]
    fn docs_parse() {
        let d = Digest::of(b"x");
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        match Doc::parse(idx.as_bytes(), OCI_INDEX, "t").unwrap() {
            Doc::Index { manifests } => assert_eq!(manifests.len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(Doc::parse(idx.as_bytes(), OCI_MANIFEST, "t").is_err());
        assert!(Doc::parse(br#"{"schemaVersion":1}"#, "", "t").is_err());
    }
}
