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
//! `/`, `name`). Chunk names are implied (`chunks/<index as 8 digits>.tar`).

use std::collections::HashMap;
use std::fmt;
use std::io;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::validate::invalid;
use super::{
    chunk_name, Artifact, ArtifactKind, Blob, Chunk, Encoding, Entry, EntryType, HfInfo, ImageInfo,
    Manifest, ParseError, Segment,
};
use crate::format::limits::MAX_PATH_BYTES;
use crate::format::Digest;

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
    /// What the bundle carries.
    pub artifacts: Vec<ArtifactV3>,
    /// Every distinct payload, once: `[digest, size, [segment, …]]`.
    pub blobs: Vec<BlobV3>,
    /// The chunk files, in order; chunk `i` is `chunks/<i as 8 digits>.tar`.
    pub chunks: Vec<ChunkV3>,
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

/// A blob: `[digest, size, [segment, …]]`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct BlobV3(pub Digest, pub u64, pub Vec<SegmentV3>);

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

fn bad(msg: String) -> ParseError {
    ParseError::Invalid(invalid(msg))
}

/// Parses version 3 manifest bytes (already checked for duplicate keys) into the in-memory
/// types; the caller validates.
pub fn from_slice(bytes: &[u8]) -> Result<Manifest, ParseError> {
    let w: ManifestV3 =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Syntax(e.to_string()))?;
    from_wire(w)
}

/// The in-memory manifest of a wire form (consumed, so that the two are not both held whole).
pub fn from_wire(w: ManifestV3) -> Result<Manifest, ParseError> {
    let mut blobs = Vec::with_capacity(w.blobs.len());
    for BlobV3(digest, size, segs) in w.blobs {
        let segments = segs
            .into_iter()
            .map(|s| Segment {
                chunk: s.chunk,
                offset: s.offset,
                length: s.length,
                encoding: if s.zstd_size.is_some() {
                    Encoding::Zstd
                } else {
                    Encoding::None
                },
                size: s.zstd_size.unwrap_or(s.length),
            })
            .collect();
        blobs.push(Blob {
            digest,
            size,
            segments,
        });
    }
    let mut artifacts = Vec::with_capacity(w.artifacts.len());
    for a in w.artifacts {
        let mut entries: Vec<Entry> = Vec::with_capacity(a.entries.len());
        for (i, e) in a.entries.into_iter().enumerate() {
            let at = || format!("artifact {:?} entry {i}", a.name);
            let path = match e.parent {
                0 => e.name,
                k => {
                    let p = entries
                        .get(k as usize - 1)
                        .filter(|_| (k as usize) <= i)
                        .ok_or_else(|| {
                            bad(format!(
                                "{}: parent {k} is not an earlier entry of the artifact",
                                at()
                            ))
                        })?;
                    if p.kind != EntryType::Dir {
                        return Err(bad(format!(
                            "{}: parent {k} ({:?}) is not a directory",
                            at(),
                            p.path
                        )));
                    }
                    // Bounded before it is built: a chain of parents cannot make long paths.
                    if p.path.len() + 1 + e.name.len() > MAX_PATH_BYTES {
                        return Err(bad(format!(
                            "{}: its path is longer than {MAX_PATH_BYTES} bytes",
                            at()
                        )));
                    }
                    format!("{}/{}", p.path, e.name)
                }
            };
            let entry = match e.blob {
                None => Entry::dir(&path),
                Some(b) => {
                    let blob = blobs.get(b as usize).ok_or_else(|| {
                        bad(format!(
                            "{} ({path:?}): blob {b} does not exist ({} blobs)",
                            at(),
                            blobs.len()
                        ))
                    })?;
                    Entry {
                        path,
                        kind: EntryType::File,
                        blob: Some(blob.digest),
                        size: Some(blob.size),
                        executable: e.executable,
                    }
                }
            };
            entries.push(entry);
        }
        artifacts.push(Artifact {
            name: a.name,
            kind: a.kind,
            source: a.source,
            identity: a.identity,
            entries,
            image: a.image,
            hf: a.hf,
        });
    }
    let chunks = w
        .chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| Chunk {
            name: chunk_name(i),
            size: c.size,
            sha256: c.sha256,
            pieces: c.pieces,
        })
        .collect();
    Ok(Manifest {
        format: w.format,
        version: w.version,
        bundle_id: w.bundle_id,
        channel: w.channel,
        sequence: w.sequence,
        created: w.created,
        expires: w.expires,
        generator: w.generator,
        chunk_size: w.chunk_size,
        piece_size: w.piece_size,
        artifacts,
        blobs,
        chunks,
    })
}

/// The wire form of a manifest. A stored segment whose `length` differs from its `size` cannot
/// be written in it (the form makes that state unrepresentable); it is written as stored, of
/// `length` bytes. An entry's size is its blob's; a file naming a blob the manifest does not
/// hold is written as a directory, and an entry whose parent is not listed before it by its whole
/// path: such manifests are invalid anyway, and `validate` runs before anything is written.
pub fn to_wire(m: &Manifest) -> ManifestV3 {
    let index: HashMap<Digest, u32> = m
        .blobs
        .iter()
        .enumerate()
        .map(|(i, b)| (b.digest, i as u32))
        .collect();
    let artifacts = m
        .artifacts
        .iter()
        .map(|a| {
            let mut dirs: HashMap<&str, u32> = HashMap::new();
            let entries = a
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let split = e.path.rfind('/').and_then(|at| {
                        dirs.get(&e.path[..at])
                            .map(|&k| (k, e.path[at + 1..].to_string()))
                    });
                    let (parent, name) = split.unwrap_or((0, e.path.clone()));
                    let blob = match e.kind {
                        EntryType::File => e.blob.and_then(|d| index.get(&d).copied()),
                        EntryType::Dir => None,
                    };
                    if blob.is_none() {
                        dirs.entry(e.path.as_str()).or_insert(i as u32 + 1);
                    }
                    EntryV3 {
                        parent,
                        name,
                        blob,
                        executable: e.executable && blob.is_some(),
                    }
                })
                .collect();
            ArtifactV3 {
                name: a.name.clone(),
                kind: a.kind,
                source: a.source.clone(),
                identity: a.identity.clone(),
                entries,
                image: a.image.clone(),
                hf: a.hf.clone(),
            }
        })
        .collect();
    let blobs = m
        .blobs
        .iter()
        .map(|b| {
            let segs = b
                .segments
                .iter()
                .map(|s| SegmentV3 {
                    chunk: s.chunk,
                    offset: s.offset,
                    length: s.length,
                    zstd_size: (s.encoding == Encoding::Zstd).then_some(s.size),
                })
                .collect();
            BlobV3(b.digest, b.size, segs)
        })
        .collect();
    let chunks = m
        .chunks
        .iter()
        .map(|c| ChunkV3 {
            size: c.size,
            sha256: c.sha256,
            pieces: c.pieces.clone(),
        })
        .collect();
    ManifestV3 {
        format: m.format.clone(),
        version: m.version,
        bundle_id: m.bundle_id.clone(),
        channel: m.channel.clone(),
        sequence: m.sequence,
        created: m.created.clone(),
        expires: m.expires.clone(),
        generator: m.generator.clone(),
        chunk_size: m.chunk_size,
        piece_size: m.piece_size,
        artifacts,
        blobs,
        chunks,
    }
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

/// Pretty JSON, except that an array inside an array is written on one line, compactly.
#[derive(Default)]
struct TableFormatter {
    /// Per open container: compact, has a value.
    stack: Vec<(bool, bool, bool)>,
}

impl TableFormatter {
    fn open<W: ?Sized + io::Write>(&mut self, w: &mut W, array: bool) -> io::Result<()> {
        let compact = match self.stack.last() {
            Some(&(compact, is_array, _)) => compact || (array && is_array),
            None => false,
        };
        self.stack.push((compact, array, false));
        w.write_all(if array { b"[" } else { b"{" })
    }
    fn close<W: ?Sized + io::Write>(&mut self, w: &mut W, array: bool) -> io::Result<()> {
        let (compact, _, has_value) = self.stack.pop().unwrap_or_default();
        if !compact && has_value {
            w.write_all(b"\n")?;
            self.indent(w)?;
        }
        w.write_all(if array { b"]" } else { b"}" })
    }
    fn item<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        let compact = self.stack.last().is_some_and(|t| t.0);
        if compact {
            if !first {
                w.write_all(b",")?;
            }
            return Ok(());
        }
        w.write_all(if first { b"\n" } else { b",\n" })?;
        self.indent(w)
    }
    fn indent<W: ?Sized + io::Write>(&self, w: &mut W) -> io::Result<()> {
        for _ in 0..self.stack.len() {
            w.write_all(b"  ")?;
        }
        Ok(())
    }
    fn valued(&mut self) {
        if let Some(t) = self.stack.last_mut() {
            t.2 = true;
        }
    }
}

impl serde_json::ser::Formatter for TableFormatter {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, true)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, true)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.valued();
        Ok(())
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, false)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, false)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        let compact = self.stack.last().is_some_and(|t| t.0);
        w.write_all(if compact { b":" } else { b": " })
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.valued();
        Ok(())
    }
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
    }
}
