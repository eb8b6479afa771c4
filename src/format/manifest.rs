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
    /// version 4 (optional in version 5). Not a field of the v1/v2 form.
    #[serde(skip)]
    pub volumes: Option<super::Volumes>,
    /// Version 5 (a delta bundle): what the packer knew the enclave already holds, each a
    /// previous bundle or an enclave inventory; external blobs name one by index. Non-empty
    /// exactly in version 5. Not a field of the v1/v2 form.
    #[serde(skip)]
    pub bases: Vec<Base>,
}

/// Version 5: a base of a delta bundle, the signed document that showed the packer which blobs
/// the enclave holds (FORMAT.md §Version 5).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// A previous bundle of the channel, or an enclave inventory.
    pub kind: BaseKind,
    /// The base bundle's `bundle_id`, or the inventory's id: 32 lowercase hex digits.
    pub id: String,
    /// The base's channel: the manifest's own.
    pub channel: String,
    /// The base bundle's sequence, or the inventory's last accepted sequence of the channel;
    /// lower than the manifest's.
    pub sequence: u64,
    /// SHA-256 of the base's signed bytes: the base bundle's `manifest.json`, or the inventory
    /// file.
    pub manifest_digest: Digest,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum BaseKind {
    /// A previous bundle (its signed `manifest.json`).
    Bundle,
    /// A signed enclave inventory.
    Inventory,
}

impl BaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BaseKind::Bundle => "bundle",
            BaseKind::Inventory => "inventory",
        }
    }
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
    /// Where the bytes live, in order; the decoded sizes add up to `size`. Empty for an
    /// external blob.
    pub segments: Vec<Segment>,
    /// Version 5: an external blob, not carried: the index in `bases` of the base that showed
    /// the enclave holds it. Not a field of the v1/v2 form.
    #[serde(skip)]
    pub external: Option<u32>,
}

impl Blob {
    /// Whether the bundle does not carry this blob (version 5: the enclave holds it).
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }
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
    /// table), whatever the artifacts; 4 for a bundle spread over volumes; 5 for a delta bundle
    /// (bases, external blobs; over volumes or not). (Versions 1 and 2 are still read.)
    pub fn required_version(_artifacts: &[Artifact], volumes: bool, bases: bool) -> u32 {
        if bases {
            5
        } else if volumes {
            4
        } else {
            FORMAT_VERSION
        }
    }

    /// Total decoded payload bytes (each blob once), carried and external.
    pub fn payload_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }

    /// Whether the blob `digest` is external (version 5: listed, not carried). False for a
    /// digest the manifest does not list.
    pub fn is_external(&self, digest: &Digest) -> bool {
        self.blobs
            .iter()
            .any(|b| b.digest == *digest && b.is_external())
    }

    /// Decoded bytes of the blobs the bundle carries (each once).
    pub fn carried_bytes(&self) -> u64 {
        self.blobs
            .iter()
            .filter(|b| !b.is_external())
            .map(|b| b.size)
            .sum()
    }

    /// Bytes of the external blobs (each once): what the enclave must already hold.
    pub fn external_bytes(&self) -> u64 {
        self.blobs
            .iter()
            .filter(|b| b.is_external())
            .map(|b| b.size)
            .sum()
    }

    /// The external blobs (version 5), in manifest order.
    pub fn external_blobs(&self) -> impl Iterator<Item = &Blob> {
        self.blobs.iter().filter(|b| b.is_external())
    }

    /// Artifact `i`'s distinct blobs split into (carried bytes, external bytes). A blob two of
    /// its files share counts once; one shared with another artifact counts for both.
    /// Panics if `i` is out of range.
    pub fn artifact_bytes(&self, i: usize) -> (u64, u64) {
        split_bytes(&self.artifacts[i], &self.external_index())
    }

    /// Every artifact's (carried, external) bytes, in artifact order
    /// ([`Manifest::artifact_bytes`] of each, from one index of the blobs).
    pub fn all_artifact_bytes(&self) -> Vec<(u64, u64)> {
        let index = self.external_index();
        self.artifacts
            .iter()
            .map(|a| split_bytes(a, &index))
            .collect()
    }

    fn external_index(&self) -> std::collections::HashSet<Digest> {
        self.external_blobs().map(|b| b.digest).collect()
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

/// An artifact's distinct blobs split into (carried, external) bytes.
fn split_bytes(a: &Artifact, external: &std::collections::HashSet<Digest>) -> (u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let (mut carried, mut ext) = (0u64, 0u64);
    for e in &a.entries {
        let (Some(d), Some(size)) = (e.blob, e.size) else {
            continue;
        };
        if !seen.insert(d) {
            continue;
        }
        if external.contains(&d) {
            ext = ext.saturating_add(size);
        } else {
            carried = carried.saturating_add(size);
        }
    }
    (carried, ext)
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
    use super::*;
    use crate::format::paths::name_key;

    /// A valid version 5 manifest: one directory artifact, `a` carried (3 bytes in chunk 0),
    /// `b` (10 bytes) and `c/d` (the same 3 bytes as `a`) — `b` external from base 0.
    fn delta() -> Manifest {
        let a = Digest::of(b"abc");
        let b = Digest::of(b"0123456789");
        Manifest {
            format: FORMAT_NAME.into(),
            version: 5,
            bundle_id: "1".repeat(32),
            channel: "nightly".into(),
            sequence: 10,
            created: "2026-12-01T00:00:00Z".into(),
            expires: None,
            generator: "test".into(),
            chunk_size: 1 << 16,
            piece_size: crate::format::pieces::DEFAULT_PIECE_SIZE,
            artifacts: vec![Artifact {
                name: "m".into(),
                kind: ArtifactKind::Directory,
                source: "m".into(),
                identity: "/m".into(),
                entries: vec![
                    Entry::file("a", a, 3),
                    Entry::file("b", b, 10),
                    Entry::dir("c"),
                    Entry::file("c/d", a, 3),
                ],
                image: None,
                hf: None,
            }],
            blobs: vec![
                Blob {
                    digest: a,
                    size: 3,
                    segments: vec![Segment {
                        chunk: 0,
                        offset: 512,
                        length: 3,
                        encoding: Encoding::None,
                        size: 3,
                    }],
                    external: None,
                },
                Blob {
                    digest: b,
                    size: 10,
                    segments: Vec::new(),
                    external: Some(0),
                },
            ],
            chunks: vec![Chunk {
                name: chunk_name(0),
                size: 2048,
                sha256: Digest::of(b"chunk"),
                pieces: vec![Digest::of(b"chunk")],
            }],
            volumes: None,
            bases: vec![Base {
                kind: BaseKind::Bundle,
                id: "2".repeat(32),
                channel: "nightly".into(),
                sequence: 9,
                manifest_digest: Digest::of(b"base manifest"),
            }],
        }
    }

    #[test]
    fn version_5_round_trips_in_the_compact_form() {
        let m = delta();
        m.validate().unwrap();
        let bytes = m.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"bases\": ["), "{text}");
        assert!(
            text.contains(&format!("[\"{}\",10,[],0]", Digest::of(b"0123456789"))),
            "{text}"
        );
        assert_eq!(Manifest::parse(&bytes).unwrap(), m);
        assert_eq!((m.carried_bytes(), m.external_bytes()), (3, 10));
        assert_eq!(m.artifact_bytes(0), (3, 10));
        assert_eq!(m.all_artifact_bytes(), vec![(3, 10)]);
        assert!(m.is_external(&Digest::of(b"0123456789")));
        assert!(!m.is_external(&Digest::of(b"abc")));
        assert_eq!(m.payload_bytes(), 13);
        assert_eq!(Manifest::required_version(&m.artifacts, false, true), 5);
        assert_eq!(Manifest::required_version(&m.artifacts, true, true), 5);
        assert_eq!(Manifest::required_version(&m.artifacts, true, false), 4);
        assert_eq!(Manifest::required_version(&m.artifacts, false, false), 3);
    }

    #[test]
    fn version_3_and_4_carry_no_bases() {
        let mut m = delta();
        m.bases.clear();
        m.blobs.truncate(1);
        m.artifacts[0].entries.remove(1);
        m.version = 3;
        m.validate().unwrap();
        let text = String::from_utf8(m.to_bytes()).unwrap();
        assert!(!text.contains("bases"), "{text}");
    }

    #[test]
    fn version_5_rules_are_enforced() {
        type Edit = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("version 5 requires `bases`", Box::new(|m| m.bases.clear())),
            (
                "`bases` needs format version 5, the manifest says 3",
                Box::new(|m| m.version = 3),
            ),
            (
                "names base 1, which does not exist (1 bases)",
                Box::new(|m| m.blobs[1].external = Some(1)),
            ),
            (
                "has segments: an external blob is not carried",
                Box::new(|m| {
                    m.blobs[1].segments = m.blobs[0].segments.clone();
                }),
            ),
            (
                "is not fully covered",
                Box::new(|m| m.blobs[1].external = None),
            ),
            (
                "is not 32 lowercase hex digits",
                Box::new(|m| m.bases[0].id = "2".repeat(31)),
            ),
            (
                "is not 32 lowercase hex digits",
                Box::new(|m| m.bases[0].id = "A".repeat(32)),
            ),
            (
                "is of channel \"other\", the bundle of channel \"nightly\"",
                Box::new(|m| m.bases[0].channel = "other".into()),
            ),
            (
                "channel \"-x\" is not valid",
                Box::new(|m| m.bases[0].channel = "-x".into()),
            ),
            (
                "has sequence 10, not lower than the bundle's 10",
                Box::new(|m| m.bases[0].sequence = 10),
            ),
            (
                "is the bundle itself",
                Box::new(|m| m.bases[0].id = m.bundle_id.clone()),
            ),
            (
                "is listed twice",
                Box::new(|m| m.bases.push(m.bases[0].clone())),
            ),
            (
                "65 bases, more than the 64 allowed",
                Box::new(|m| {
                    m.bases = (0..65)
                        .map(|i| Base {
                            id: format!("{i:032x}"),
                            ..m.bases[0].clone()
                        })
                        .collect()
                }),
            ),
            (
                "names blob",
                Box::new(|m| {
                    m.blobs.remove(1);
                }),
            ),
        ];
        for (want, edit) in cases {
            let mut m = delta();
            edit(&mut m);
            let e = m.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
    }

    #[test]
    fn a_newer_version_is_refused_by_version_with_upgrade_advice() {
        let text = String::from_utf8(delta().to_bytes())
            .unwrap()
            .replace("\"version\": 5,", "\"version\": 6,");
        let e = Manifest::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(
            e.contains("unsupported bundle format version 6")
                && e.contains("reads versions 1..=5")
                && e.contains("upgrade"),
            "{e}"
        );
    }

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
