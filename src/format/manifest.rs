//! The manifest: the one signed document that commits to everything in a bundle.
//!
//! These types ARE the v1/v2 contract described in `docs/FORMAT.md`;
//! `schemas/manifest.schema.json` is generated from them. Version 3 writes the same content in a
//! compact wire form ([`v3`], `schemas/manifest-v3.schema.json`), converted to and from these
//! types. Parsing is strict (unknown fields are refused) and [`Manifest::validate`] enforces
//! every structural invariant and bound, so that code past this module can index, allocate and
//! build paths from a validated manifest without re-checking.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::limits;
use super::{Digest, FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE, SUPPORTED_VERSIONS};

pub mod v3;
mod validate;

pub use validate::{free_text, validate_repo_id, Invalid};

/// The bundle manifest (`manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `"airlock-bundle"`.
    pub format: String,
    /// Format version. Readers refuse versions they do not know.
    pub version: u32,
    /// 128 random bits as 32 lowercase hex digits; unique per bundle.
    pub bundle_id: String,
    /// Release channel (e.g. `nightly`, `models-prod`): `[A-Za-z0-9._-]{1,64}`.
    pub channel: String,
    /// Sequence number within the channel; packers raise it with every bundle so that importers
    /// keeping state can refuse rollbacks and replays.
    pub sequence: u64,
    /// Creation time, RFC 3339 UTC (`2026-11-24T01:02:03Z`).
    pub created: String,
    /// Expiry time, RFC 3339 UTC; `null` means the bundle does not expire.
    pub expires: Option<String>,
    /// The program that wrote the bundle, e.g. `airlock 0.1.0`. Informational.
    pub generator: String,
    /// The chunk size limit the bundle was packed with; no chunk is larger.
    pub chunk_size: u64,
    /// Version 3: the size of the pieces each chunk's piece digests cover (`format::pieces`);
    /// 0 below version 3. Not a field of the v1/v2 form.
    #[serde(skip)]
    pub piece_size: u64,
    /// What the bundle carries.
    pub artifacts: Vec<Artifact>,
    /// Every distinct payload, once, with where its bytes live.
    pub blobs: Vec<Blob>,
    /// The chunk files, in order; chunk `i` is `chunks/<i as 8 digits>.tar` (a parity chunk of
    /// version 4: `.par`).
    pub chunks: Vec<Chunk>,
    /// Version 4: how the chunks are spread over volumes (`format::volumes`); `None` below
    /// version 4. Not a field of the v1/v2 form.
    #[serde(skip)]
    pub volumes: Option<super::Volumes>,
}

/// One thing carried across: a file, a directory tree, ...
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Unique name within the bundle; one path component. Importers place the artifact under it.
    pub name: String,
    /// What kind of artifact this is; it decides which importers accept it.
    pub kind: ArtifactKind,
    /// The source exactly as the operator gave it (path, URL, reference). Informational.
    pub source: String,
    /// The resolved identity of the source: for URLs the URL fetched and its digest, for local
    /// paths the absolute path. Informational.
    pub identity: String,
    /// The files and directories that make up the artifact. For an image: an OCI image layout
    /// (`oci-layout`, `index.json`, `blobs/sha256/<hex>` named by their content's digest).
    pub entries: Vec<Entry>,
    /// For an image or an Ollama model (version 2): what it is and where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageInfo>,
    /// For a Hugging Face repository snapshot (version 2): repo, commit and each file's etag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf: Option<HfInfo>,
}

/// A Hugging Face repository snapshot: enough to rebuild the exact `huggingface_hub` cache.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HfInfo {
    /// The Hub it came from (`https://huggingface.co`, or `HF_ENDPOINT`). Informational.
    pub endpoint: String,
    /// `model` or `dataset`.
    pub repo_type: HfRepoType,
    /// `ORG/NAME` (or `NAME`): `[A-Za-z0-9_.-]{1,96}` parts, no `--` or `..`.
    pub repo_id: String,
    /// The revision as requested (`main`, a tag, or a commit).
    pub revision: String,
    /// The commit it resolved to: 40 lowercase hex digits.
    pub commit: String,
    /// False when `--include`/`--exclude` left files out (the snapshot is partial).
    pub complete: bool,
    /// One per file entry, same paths: the Hub's etag for it.
    pub files: Vec<HfFile>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HfRepoType {
    Model,
    Dataset,
}

impl HfRepoType {
    pub fn as_str(self) -> &'static str {
        match self {
            HfRepoType::Model => "model",
            HfRepoType::Dataset => "dataset",
        }
    }
}

/// A file of a Hugging Face snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HfFile {
    /// Path in the repository (equal to a file entry's path).
    pub path: String,
    /// The Hub's etag: the git blob SHA-1 (40 hex) of a regular file, the SHA-256 (64 hex) of
    /// an LFS file, which then MUST equal the entry's blob digest.
    pub etag: String,
    /// LFS files: the git blob SHA-1 of the LFS pointer (the tree API's `oid`). With it an
    /// importer can write the client's `trees/<commit>.json` truthfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer_oid: Option<String>,
    /// The Hub's Xet hash of the file (the tree API's `xetHash`), when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xet_hash: Option<String>,
}

/// What an image artifact is: its top manifest (an index or an image manifest) and the
/// reference it was mirrored from. The manifest's bytes are the entry `blobs/sha256/<hex>`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageInfo {
    /// The source reference, normalised: `registry/repository[:tag][@digest]`, e.g.
    /// `docker.io/library/nginx:1.27`. Importers derive the target repository and tag from it.
    pub reference: String,
    /// Digest of the top manifest, as pulled (equal to upstream's unless platforms were chosen).
    pub digest: Digest,
    /// Media type of the top manifest.
    pub media_type: String,
    /// Size in bytes of the top manifest.
    pub size: u64,
    /// Platforms carried (`linux/amd64`, ...); empty when the source did not say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// A single file (local file or URL download); exactly one entry of type `file`.
    File,
    /// A directory tree.
    Directory,
    /// A container image or OCI artifact (version 2): entries form an OCI image layout.
    Image,
    /// A Hugging Face model or dataset snapshot (version 2): entries are the repository's files
    /// at their paths; `hf` says which repo and commit.
    HfRepo,
    /// An Ollama model (version 2): an image (docker schema 2 manifest, `application/vnd.ollama.*`
    /// layers) whose entries form an OCI image layout, with `image` info.
    OllamaModel,
}

impl ArtifactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::File => "file",
            ArtifactKind::Directory => "directory",
            ArtifactKind::Image => "image",
            ArtifactKind::HfRepo => "hf-repo",
            ArtifactKind::OllamaModel => "ollama-model",
        }
    }
}

/// A file or directory inside an artifact.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative path with `/` separators; no `.`, `..`, empty or absolute components.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryType,
    /// For files: the blob holding the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<Digest>,
    /// For files: the size in bytes (equal to the blob's size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// For files: whether the owner-execute bit was set at the source.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
}

impl Entry {
    /// A directory entry.
    pub fn dir(path: &str) -> Entry {
        Entry {
            path: path.to_string(),
            kind: EntryType::Dir,
            blob: None,
            size: None,
            executable: false,
        }
    }

    /// A (non-executable) file entry.
    pub fn file(path: &str, blob: Digest, size: u64) -> Entry {
        Entry {
            path: path.to_string(),
            kind: EntryType::File,
            blob: Some(blob),
            size: Some(size),
            executable: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    File,
    Dir,
}

/// A distinct payload, named by its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Blob {
    pub digest: Digest,
    /// Size in bytes of the decoded payload.
    pub size: u64,
    /// Where the bytes live, in order; the decoded sizes add up to `size`.
    pub segments: Vec<Segment>,
}

/// A contiguous piece of a blob stored as one tar entry in one chunk.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Index into `chunks`.
    pub chunk: u32,
    /// Byte offset of the entry's data within the chunk file (a multiple of 512).
    pub offset: u64,
    /// Number of bytes the entry's data occupies in the chunk.
    pub length: u64,
    /// How the data is stored.
    pub encoding: Encoding,
    /// Number of blob bytes this segment decodes to.
    pub size: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Stored as is (`length == size`).
    None,
    /// One zstd frame.
    Zstd,
}

/// A chunk file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// File name under `chunks/`.
    pub name: String,
    /// Exact size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: Digest,
    /// Version 3: the SHA-256 of each `piece_size` piece of the file, in order; empty below
    /// version 3. Not a field of the v1/v2 form.
    #[serde(skip)]
    pub pieces: Vec<Digest>,
}

/// The canonical file name of chunk `index`.
pub fn chunk_name(index: usize) -> String {
    format!("{index:08}.tar")
}

/// The tar entry name of a blob segment (informational: readers locate data by offset).
pub fn segment_entry_name(digest: &Digest, index: usize, encoding: Encoding) -> String {
    match encoding {
        Encoding::None => format!("blobs/sha256/{}.{index:04}", digest.hex()),
        Encoding::Zstd => format!("blobs/sha256/{}.{index:04}.zst", digest.hex()),
    }
}

/// Reads only the `format` and `version` fields, to refuse unknown versions with a clear message
/// before a strict parse of fields this reader may not know.
#[derive(Deserialize)]
struct VersionProbe {
    format: Option<String>,
    version: Option<u32>,
}

/// Why manifest bytes could not be turned into a [`Manifest`].
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("manifest.json is {size} bytes, larger than the {max} bytes a manifest may have")]
    TooLarge { size: u64, max: u64 },
    #[error("manifest.json is not an airlock bundle manifest (format {0:?})")]
    NotAirlock(Option<String>),
    #[error(
        "unsupported bundle format version {found}; this airlock reads versions {}..={}{}",
        SUPPORTED_VERSIONS.start(),
        SUPPORTED_VERSIONS.end(),
        if *found > *SUPPORTED_VERSIONS.end() { " (a newer airlock wrote this bundle: upgrade the importing side)" } else { "" }
    )]
    UnsupportedVersion { found: u32 },
    #[error("manifest.json is not valid: {0}")]
    Syntax(String),
    #[error("manifest.json is not valid: {0}")]
    Invalid(#[from] Invalid),
}

impl Manifest {
    /// Parses and validates manifest bytes. Call only on bytes whose signature has verified.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ParseError> {
        if bytes.len() as u64 > limits::MAX_DECLARED_MANIFEST_BYTES {
            return Err(ParseError::TooLarge {
                size: bytes.len() as u64,
                max: limits::MAX_DECLARED_MANIFEST_BYTES,
            });
        }
        // Strict JSON: the probe walks the whole document once and refuses a duplicated key
        // anywhere (the full parse below then reads no key twice).
        let probe: VersionProbe = super::json::from_slice(bytes, MANIFEST_FILE)
            .map_err(|e| ParseError::Syntax(e.detail().to_string()))?;
        if probe.format.as_deref() != Some(FORMAT_NAME) {
            return Err(ParseError::NotAirlock(probe.format));
        }
        let version = probe
            .version
            .ok_or_else(|| ParseError::Syntax("missing field `version`".into()))?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(ParseError::UnsupportedVersion { found: version });
        }
        let manifest: Manifest = if version >= 3 {
            v3::from_slice(bytes)?
        } else {
            serde_json::from_slice(bytes).map_err(|e| ParseError::Syntax(e.to_string()))?
        };
        manifest.validate()?;
        Ok(manifest)
    }

    /// Decodes manifest bytes of any known version into the in-memory types WITHOUT the strict
    /// checks of [`Manifest::parse`] (duplicate keys, version range, [`Manifest::validate`]): for
    /// tools and tests that edit a manifest they wrote. Never for bytes from media.
    pub fn decode_unvalidated(bytes: &[u8]) -> Result<Manifest, ParseError> {
        let probe: VersionProbe =
            serde_json::from_slice(bytes).map_err(|e| ParseError::Syntax(e.to_string()))?;
        if probe.version.unwrap_or(0) >= 3 {
            v3::from_slice(bytes)
        } else {
            serde_json::from_slice(bytes).map_err(|e| ParseError::Syntax(e.to_string()))
        }
    }

    /// Serialises the manifest as written to disk (pretty JSON, trailing newline; version 3 in
    /// its compact form, one blob or entry per line).
    pub fn to_bytes(&self) -> Vec<u8> {
        if self.version >= 3 {
            return v3::to_bytes(self);
        }
        let mut out = serde_json::to_vec_pretty(self).expect("manifest serialises");
        out.push(b'\n');
        out
    }

    /// The version pack writes: [`FORMAT_VERSION`] (3: piece digests and the compact file
    /// table), whatever the artifacts; 4 for a bundle spread over volumes. (Versions 1 and 2
    /// are still read.)
    pub fn required_version(_artifacts: &[Artifact], volumes: bool) -> u32 {
        if volumes {
            4
        } else {
            FORMAT_VERSION
        }
    }

    /// Total decoded payload bytes (each blob once).
    pub fn payload_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }

    /// Total bytes of chunk files.
    pub fn chunk_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.size).sum()
    }

    /// The lines of `SHA256SUMS`, in the format `sha256sum -c` reads.
    pub fn sha256sums(&self) -> String {
        self.chunks
            .iter()
            .map(|c| format!("{}  chunks/{}\n", c.sha256.hex(), c.name))
            .collect()
    }
}

/// Channel names: 1 to 64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub fn validate_channel(channel: &str) -> Result<(), String> {
    let ok = !channel.is_empty()
        && channel.len() <= 64
        && !channel.starts_with(['.', '-'])
        && channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "channel {channel:?} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        ))
    }
}

/// Parses an RFC 3339 timestamp as written in manifests.
pub fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    humantime::parse_rfc3339(s).map_err(|e| format!("{s:?} is not an RFC 3339 UTC time: {e}"))
}

/// Formats a time as written in manifests (seconds precision, UTC, `Z`).
pub fn format_time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::validate::entry_key;
    use crate::format::paths::name_key;

    #[test]
    fn entry_key_is_name_key() {
        for p in [
            "a/B/c.JSON",
            "Caf\u{e9}/x",
            "CAFE\u{301}/x",
            "\u{130}stanbul",
            "\u{3a3}\u{39f}\u{3a3}",
            "plain",
            "",
        ] {
            assert_eq!(entry_key(p), name_key(p), "{p:?}");
        }
    }
}
