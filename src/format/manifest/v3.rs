//! The version 3 wire form of the manifest (FORMAT.md §Version 3): the same content as
//! [`Manifest`] in a compact file table, plus piece digests. Converted to and from the in-memory
//! types, which the rest of the code uses unchanged; [`Manifest::validate`] then applies every
//! rule of earlier versions. `schemas/manifest-v3.schema.json` is generated from these types.
//!
//! Compact table: a blob is `[digest, size, [segment, …]]`; a segment is `[chunk, offset,
//! length]` (stored: it decodes to `length` bytes) or `[chunk, offset, length, size]` (one zstd
//! frame decoding to `size` bytes); an entry is `[parent, name]` (a directory), `[parent, name,
//! blob]` (a file) or `[parent, name, blob, true]` (an executable file), where `blob` indexes
//! `blobs` (the file's size is the blob's), and `parent` is 0 (the `name` is the whole path) or
//! `k` for the artifact's entry `k - 1`, an earlier directory (the path is that directory's path,
//! `/`, `name`). Chunk names are implied (`chunks/<index as 8 digits>.tar`). Version 5 adds
//! `bases` and the external blob `[digest, size, [], base]` (not carried; `base` indexes
//! `bases`).
//!
//! This file holds the wire types and their short forms; `convert` maps them to and from the
//! in-memory types, `table` lays out the bytes.

use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ArtifactKind, Base, HfInfo, ImageInfo, Manifest, ParseError};
use crate::format::Digest;

mod convert;
mod table;

pub use convert::{from_wire, to_wire};
use table::TableFormatter;

/// The version 3 manifest as written (`manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ManifestV3 {
    /// Always `"airlock-bundle"`.
    pub format: String,
    /// 3.
    pub version: u32,
    /// 128 random bits as 32 lowercase hex digits; unique per bundle.
    pub bundle_id: String,
    /// Release channel: `[A-Za-z0-9._-]{1,64}`.
    pub channel: String,
    /// Sequence number within the channel.
    pub sequence: u64,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// Expiry time, RFC 3339 UTC; `null` means the bundle does not expire.
    pub expires: Option<String>,
    /// The program that wrote the bundle. Informational.
    pub generator: String,
    /// The chunk size limit the bundle was packed with; no chunk is larger.
    pub chunk_size: u64,
    /// The size of the pieces whose digests each chunk lists: a power of two, 64 KiB to 1 GiB.
    pub piece_size: u64,
    /// Version 5 (required and non-empty there, absent below): the bases of a delta bundle,
    /// which its external blobs name by index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<Base>,
    /// What the bundle carries.
    pub artifacts: Vec<ArtifactV3>,
    /// Every distinct payload, once: `[digest, size, [segment, …]]`; version 5 also
    /// `[digest, size, [], base]`, an external blob.
    pub blobs: Vec<BlobV3>,
    /// The chunk files, in order; chunk `i` is `chunks/<i as 8 digits>.tar` (version 4: a parity
    /// chunk is `.par`).
    pub chunks: Vec<ChunkV3>,
    /// Version 4 (required there, absent in version 3): the volumes the chunks are spread over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<crate::format::Volumes>,
}

/// An artifact, its entries in the compact form.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArtifactV3 {
    pub name: String,
    pub kind: ArtifactKind,
    pub source: String,
    pub identity: String,
    /// `[parent, name]`, `[parent, name, blob]` or `[parent, name, blob, true]`.
    pub entries: Vec<EntryV3>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf: Option<HfInfo>,
}

/// A blob: `[digest, size, [segment, …]]` (carried), or in version 5 `[digest, size, [],
/// base]` (external: not carried, `base` indexes `bases`).
#[derive(Debug, Clone, PartialEq)]
pub struct BlobV3 {
    pub digest: Digest,
    pub size: u64,
    pub segments: Vec<SegmentV3>,
    /// Version 5: the index in `bases` of an external blob.
    pub external: Option<u32>,
}

/// A chunk file: exact size, SHA-256 of the whole file (as in `SHA256SUMS`), and the SHA-256 of
/// each piece.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChunkV3 {
    pub size: u64,
    pub sha256: Digest,
    /// `ceil(size / piece_size)` digests.
    pub pieces: Vec<Digest>,
}

/// An entry: `[parent, name]` (directory), `[parent, name, blob]` (file), `[parent, name, blob,
/// true]` (executable file).
#[derive(Debug, Clone, PartialEq)]
pub struct EntryV3 {
    pub parent: u32,
    pub name: String,
    pub blob: Option<u32>,
    pub executable: bool,
}

/// A segment: `[chunk, offset, length]` (stored) or `[chunk, offset, length, size]` (zstd).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentV3 {
    pub chunk: u32,
    pub offset: u64,
    pub length: u64,
    /// The decoded size of a zstd segment; `None` for a stored one.
    pub zstd_size: Option<u64>,
}

impl Serialize for EntryV3 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = match (self.blob, self.executable) {
            (None, _) => 2,
            (Some(_), false) => 3,
            (Some(_), true) => 4,
        };
        let mut seq = s.serialize_seq(Some(n))?;
        seq.serialize_element(&self.parent)?;
        seq.serialize_element(&self.name)?;
        if let Some(b) = self.blob {
            seq.serialize_element(&b)?;
            if self.executable {
                seq.serialize_element(&true)?;
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for EntryV3 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EntryV3;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an entry [parent, name], [parent, name, blob] or [parent, name, blob, true]",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EntryV3, A::Error> {
                let parent = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let name = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let blob: Option<u32> = seq.next_element()?;
                let executable = match blob {
                    Some(_) => seq.next_element::<bool>()?,
                    None => None,
                };
                if executable == Some(false) {
                    return Err(de::Error::custom(
                        "an entry's executable flag is `true` or absent, never `false`",
                    ));
                }
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(5, &self));
                }
                Ok(EntryV3 {
                    parent,
                    name,
                    blob,
                    executable: executable.is_some(),
                })
            }
        }
        d.deserialize_seq(V)
    }
}

impl JsonSchema for EntryV3 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EntryV3".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An entry: [parent, name] (a directory), [parent, name, blob] (a file) or [parent, name, blob, true] (an executable file). parent 0: name is the whole path; k: the path is entry k-1's path, '/', name (entry k-1 an earlier directory). blob indexes `blobs`.",
            "type": "array",
            "prefixItems": [
                {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                {"type": "string"},
                {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                {"const": true}
            ],
            "minItems": 2,
            "maxItems": 4,
            "items": false
        })
    }
}

impl Serialize for BlobV3 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(3 + usize::from(self.external.is_some())))?;
        seq.serialize_element(&self.digest)?;
        seq.serialize_element(&self.size)?;
        seq.serialize_element(&self.segments)?;
        if let Some(base) = self.external {
            seq.serialize_element(&base)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for BlobV3 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BlobV3;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a blob [digest, size, [segment, …]] or [digest, size, [], base]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BlobV3, A::Error> {
                let digest = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let size = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let segments = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                let external = seq.next_element()?;
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(5, &self));
                }
                Ok(BlobV3 {
                    digest,
                    size,
                    segments,
                    external,
                })
            }
        }
        d.deserialize_seq(V)
    }
}

impl JsonSchema for BlobV3 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BlobV3".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let digest = g.subschema_for::<Digest>();
        let segment = g.subschema_for::<SegmentV3>();
        json_schema!({
            "description": "A blob: [digest, size, [segment, …]] (carried: the segments decode to size bytes), or in version 5 [digest, size, [], base] (external: not carried; base indexes `bases`).",
            "type": "array",
            "prefixItems": [
                digest,
                {"type": "integer", "minimum": 0},
                {"type": "array", "items": segment},
                {"type": "integer", "minimum": 0, "maximum": u32::MAX}
            ],
            "minItems": 3,
            "maxItems": 4,
            "items": false
        })
    }
}

impl Serialize for SegmentV3 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(3 + usize::from(self.zstd_size.is_some())))?;
        seq.serialize_element(&self.chunk)?;
        seq.serialize_element(&self.offset)?;
        seq.serialize_element(&self.length)?;
        if let Some(size) = self.zstd_size {
            seq.serialize_element(&size)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for SegmentV3 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SegmentV3;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a segment [chunk, offset, length] or [chunk, offset, length, size]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SegmentV3, A::Error> {
                let chunk = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let offset = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let length = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                let zstd_size = seq.next_element()?;
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(5, &self));
                }
                Ok(SegmentV3 {
                    chunk,
                    offset,
                    length,
                    zstd_size,
                })
            }
        }
        d.deserialize_seq(V)
    }
}

impl JsonSchema for SegmentV3 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SegmentV3".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A segment: [chunk, offset, length] (stored as is: decodes to length bytes) or [chunk, offset, length, size] (one zstd frame decoding to size bytes). offset: of the tar entry's data in the chunk, a multiple of 512.",
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "minItems": 3,
            "maxItems": 4
        })
    }
}

/// Parses version 3 manifest bytes (already checked for duplicate keys) into the in-memory
/// types; the caller validates.
pub fn from_slice(bytes: &[u8]) -> Result<Manifest, ParseError> {
    let w: ManifestV3 =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Syntax(e.to_string()))?;
    from_wire(w)
}

/// The bytes of a version 3 manifest: pretty JSON down to the tables, each blob, entry and
/// piece digest on a line of its own, written compactly (trailing newline).
pub fn to_bytes(m: &Manifest) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, TableFormatter::default());
    to_wire(m).serialize(&mut ser).expect("manifest serialises");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_segments_in_their_short_forms() {
        let e: EntryV3 = serde_json::from_str(r#"[3,"a.bin",7,true]"#).unwrap();
        assert_eq!((e.parent, e.blob, e.executable), (3, Some(7), true));
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"[3,"a.bin",7,true]"#);
        let d: EntryV3 = serde_json::from_str(r#"[0,"dir"]"#).unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), r#"[0,"dir"]"#);
        for bad in [
            r#"[0]"#,
            r#"[0,"a",1,false]"#,
            r#"[0,"a",1,true,1]"#,
            r#"[0,"a",null]"#,
        ] {
            assert!(serde_json::from_str::<EntryV3>(bad).is_err(), "{bad}");
        }
        let s: SegmentV3 = serde_json::from_str("[0,512,100,300]").unwrap();
        assert_eq!(s.zstd_size, Some(300));
        assert_eq!(serde_json::to_string(&s).unwrap(), "[0,512,100,300]");
        assert!(serde_json::from_str::<SegmentV3>("[0,512]").is_err());
        assert!(serde_json::from_str::<SegmentV3>("[0,512,1,2,3]").is_err());
        let digest = format!("\"sha256:{}\"", "ab".repeat(32));
        let b: BlobV3 = serde_json::from_str(&format!("[{digest},7,[],2]")).unwrap();
        assert_eq!((b.size, b.external, b.segments.len()), (7, Some(2), 0));
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            format!("[{digest},7,[],2]")
        );
        let c: BlobV3 = serde_json::from_str(&format!("[{digest},3,[[0,512,3]]]")).unwrap();
        assert_eq!(c.external, None);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            format!("[{digest},3,[[0,512,3]]]")
        );
        for bad in [
            format!("[{digest},7]"),
            format!("[{digest},7,[],2,3]"),
            format!("[{digest},7,[],null]"),
            format!("[{digest},7,[],-1]"),
        ] {
            assert!(serde_json::from_str::<BlobV3>(&bad).is_err(), "{bad}");
        }
    }
}
