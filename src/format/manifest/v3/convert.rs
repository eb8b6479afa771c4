//! The version 3 wire form to and from the in-memory [`Manifest`]: the compact file table
//! expanded into paths (its parents checked as it goes) and built back from them.

use std::collections::HashMap;

use super::{ArtifactV3, BlobV3, ChunkV3, EntryV3, ManifestV3, SegmentV3};
use crate::format::limits::MAX_PATH_BYTES;
use crate::format::manifest::validate::invalid;
use crate::format::manifest::{
    chunk_name, Artifact, Blob, Chunk, Encoding, Entry, EntryType, Manifest, ParseError, Segment,
};
use crate::format::volumes::parity_chunk_name;
use crate::format::Digest;

fn bad(msg: String) -> ParseError {
    ParseError::Invalid(invalid(msg))
}

/// The in-memory manifest of a wire form (consumed, so that the two are not both held whole).
pub fn from_wire(w: ManifestV3) -> Result<Manifest, ParseError> {
    let mut blobs = Vec::with_capacity(w.blobs.len());
    for BlobV3 {
        digest,
        size,
        segments: segs,
        external,
    } in w.blobs
    {
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
            external,
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
    // Parity chunks (version 4) follow the data chunks: `.par`, not tar archives.
    let data_chunks: Option<usize> = w
        .volumes
        .as_ref()
        .filter(|v| v.parity.is_some())
        .map(|v| v.data.iter().map(|&c| c as usize).sum());
    let chunks = w
        .chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| Chunk {
            name: match data_chunks {
                Some(d) if i >= d => parity_chunk_name(i),
                _ => chunk_name(i),
            },
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
        volumes: w.volumes,
        bases: w.bases,
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
            BlobV3 {
                digest: b.digest,
                size: b.size,
                segments: segs,
                external: b.external,
            }
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
        bases: m.bases.clone(),
        artifacts,
        blobs,
        chunks,
        volumes: m.volumes.clone(),
    }
}
