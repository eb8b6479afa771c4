//! Version 4: a bundle spread over several volumes (discs, USB sticks), with optional
//! Reed–Solomon parity volumes (FORMAT.md §Version 4). Pure data: the layout the signed manifest
//! declares, and the texts each volume carries that a reader regenerates from it (`SHA256SUMS`
//! of the volume's own chunks, the `VOLUME` label) and compares byte for byte.

use std::ops::Range;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Manifest;

/// The label file every volume carries (regenerated from the manifest and compared).
pub const LABEL_FILE: &str = "VOLUME";
/// The one parity scheme: Reed–Solomon over GF(2^16) as `reed-solomon-simd` 3 computes it
/// (Leopard-RS's code), data volumes as original shards, parity volumes as recovery shards.
pub const PARITY_SCHEME: &str = "reed-solomon-gf16";
/// The trusted-comment field naming the volume a signature file sits on (version 4).
pub const VOLUME_FIELD: &str = "volume";
/// Most volumes (data and parity) of one bundle: `vol-001` to `vol-999`.
pub const MAX_VOLUMES: usize = 999;
/// Smallest volume size a bundle may declare (128 KiB; real media are far larger, small
/// volumes keep test fixtures small).
pub const MIN_VOLUME_SIZE: u64 = 128 << 10;
/// Smallest room for chunks pack leaves on a volume after its reserve for the bundle files.
pub const MIN_VOLUME_CHUNK_ROOM: u64 = 64 << 10;
/// Largest volume size a bundle may declare (1 PiB).
pub const MAX_VOLUME_SIZE: u64 = 1 << 50;
/// Parity stripes: `block` is a power of two in this range...
pub const MIN_PARITY_BLOCK: u64 = 64 << 10;
pub const MAX_PARITY_BLOCK: u64 = 16 << 20;
/// ...and one stripe of every volume together (`(data + parity) × block`) at most this (what
/// a reader holds in memory while it rebuilds).
pub const MAX_PARITY_STRIPE: u64 = 1 << 30;
/// A parity stream is the longest data volume's bytes, zero-padded to a multiple of this.
pub const PARITY_ALIGN: u64 = 64;

/// How the chunks are spread over volumes (version 4 only).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Volumes {
    /// The most bytes one volume holds: its chunk files and the bundle files every volume
    /// carries (manifest, signatures, `SHA256SUMS`, `VOLUME`).
    pub size: u64,
    /// The number of chunks on each data volume, in volume order: volume 1 holds chunks
    /// `0..data[0]`, volume 2 the next `data[1]`, and so on.
    pub data: Vec<u32>,
    /// The parity volumes, if any (they follow the data volumes).
    #[serde(default)]
    pub parity: Option<Parity>,
}

/// Reed–Solomon parity volumes over the data volumes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Parity {
    /// Always `"reed-solomon-gf16"`.
    pub scheme: String,
    /// How many parity volumes: any that many missing or damaged data volumes can be rebuilt.
    pub volumes: u32,
    /// The stripe: each volume's stream is coded in blocks of this many bytes (a power of two,
    /// 64 KiB to 16 MiB; the last stripe is shorter, a multiple of 64 bytes).
    pub block: u64,
    /// The number of chunks on each parity volume (the same on every one).
    pub chunks: u32,
}

/// What a volume holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VolumeKind {
    Data,
    Parity,
}

impl VolumeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeKind::Data => "data",
            VolumeKind::Parity => "parity",
        }
    }
}

/// The directory pack writes volume `n` (1-based) to: `vol-001`, `vol-002`, … Readers never rely
/// on it (a volume is whatever directory it is mounted at).
pub fn volume_dir_name(n: u32) -> String {
    format!("vol-{n:03}")
}

/// The name of a parity chunk file (data chunks are `NNNNNNNN.tar`).
pub fn parity_chunk_name(index: usize) -> String {
    format!("{index:08}.par")
}

impl Manifest {
    /// Volumes of the bundle, data and parity (1 for a bundle of one directory).
    pub fn volume_count(&self) -> u32 {
        match &self.volumes {
            None => 1,
            Some(v) => v.data.len() as u32 + v.parity.as_ref().map_or(0, |p| p.volumes),
        }
    }

    /// Data volumes of the bundle (1 for a bundle of one directory).
    pub fn data_volume_count(&self) -> u32 {
        self.volumes.as_ref().map_or(1, |v| v.data.len() as u32)
    }

    /// Whether this bundle is spread over volumes (version 4).
    pub fn is_multi_volume(&self) -> bool {
        self.volumes.is_some()
    }

    /// What volume `n` (1-based, at most [`Manifest::volume_count`]) holds.
    pub fn volume_kind(&self, n: u32) -> VolumeKind {
        if n <= self.data_volume_count() {
            VolumeKind::Data
        } else {
            VolumeKind::Parity
        }
    }

    /// The chunk indices on volume `n` (1-based): consecutive. A bundle of one directory has all
    /// its chunks on volume 1.
    pub fn volume_chunks(&self, n: u32) -> Range<usize> {
        let Some(v) = &self.volumes else {
            return 0..self.chunks.len();
        };
        let d = v.data.len() as u32;
        if n <= d {
            let start: usize = v.data[..(n - 1) as usize].iter().map(|&c| c as usize).sum();
            start..start + v.data[(n - 1) as usize] as usize
        } else {
            let per = v.parity.as_ref().map_or(0, |p| p.chunks as usize);
            let data: usize = v.data.iter().map(|&c| c as usize).sum();
            let start = data + (n - d - 1) as usize * per;
            start..start + per
        }
    }

    /// Chunks on data volumes (all chunks of a bundle without parity); parity chunks follow.
    pub fn data_chunk_count(&self) -> usize {
        match &self.volumes {
            Some(v) if v.parity.is_some() => v.data.iter().map(|&c| c as usize).sum(),
            _ => self.chunks.len(),
        }
    }

    /// The volume (1-based) chunk `index` is on.
    pub fn volume_of(&self, index: usize) -> u32 {
        let Some(v) = &self.volumes else {
            return 1;
        };
        let mut end = 0usize;
        for (k, &c) in v.data.iter().enumerate() {
            end += c as usize;
            if index < end {
                return k as u32 + 1;
            }
        }
        let per = v.parity.as_ref().map_or(1, |p| p.chunks.max(1) as usize);
        v.data.len() as u32 + 1 + ((index - end) / per) as u32
    }

    /// Whether chunk `index` is a parity chunk (raw parity bytes, not a tar archive).
    pub fn is_parity_chunk(&self, index: usize) -> bool {
        index >= self.data_chunk_count() && index < self.chunks.len()
    }

    /// Bytes of chunk files on volume `n`.
    pub fn volume_chunk_bytes(&self, n: u32) -> u64 {
        self.chunks[self.volume_chunks(n)]
            .iter()
            .map(|c| c.size)
            .sum()
    }

    /// Length of each parity volume's stream: the longest data volume's chunk bytes, rounded up
    /// to [`PARITY_ALIGN`] (0 without parity).
    pub fn parity_stream_len(&self) -> u64 {
        match &self.volumes {
            Some(v) if v.parity.is_some() => {
                let max = (1..=v.data.len() as u32)
                    .map(|n| self.volume_chunk_bytes(n))
                    .max()
                    .unwrap_or(0);
                max.div_ceil(PARITY_ALIGN) * PARITY_ALIGN
            }
            _ => 0,
        }
    }

    /// The `SHA256SUMS` text volume `n` carries: its own chunks, in `sha256sum -c` format (the
    /// whole bundle's for a bundle of one directory). Its SHA-256 is the `sha256sums` field of
    /// the trusted comments on that volume.
    pub fn volume_sums(&self, n: u32) -> String {
        self.chunks[self.volume_chunks(n)]
            .iter()
            .map(|c| format!("{}  chunks/{}\n", c.sha256.hex(), c.name))
            .collect()
    }

    /// The `VOLUME` label text volume `n` carries (version 4).
    pub fn volume_label(&self, n: u32) -> String {
        let r = self.volume_chunks(n);
        let chunks = match (self.chunks.get(r.start), r.end.checked_sub(1)) {
            (Some(first), Some(last)) if !r.is_empty() => {
                format!("{} to {}", first.name, self.chunks[last].name)
            }
            _ => "none".to_string(),
        };
        let d = self.data_volume_count();
        let p = self.volume_count() - d;
        format!(
            "airlock bundle volume\nbundle: {}\nchannel: {}\nsequence: {}\nvolume: {n} of {}\nkind: {}\nlayout: {d} data, {p} parity\nchunks: {chunks}\nbytes: {}\n",
            self.bundle_id,
            self.channel,
            self.sequence,
            self.volume_count(),
            self.volume_kind(n).as_str(),
            self.volume_chunk_bytes(n),
        )
    }
}

impl Manifest {
    /// The name chunk `index` must have: `NNNNNNNN.tar`, or `NNNNNNNN.par` for a parity chunk.
    pub fn expected_chunk_name(&self, index: usize) -> String {
        if self.is_parity_chunk(index) {
            parity_chunk_name(index)
        } else {
            super::chunk_name(index)
        }
    }

    /// The version 4 rules on `volumes` (FORMAT.md §Version 4): present exactly in version 4,
    /// bounded, the volumes partitioning the chunks, each volume within its size, parity volumes
    /// of one chunk layout covering the parity stream. Called by [`Manifest::validate`] after the
    /// chunks were checked; segments are checked to name data chunks there.
    pub(super) fn validate_volumes(&self) -> Result<(), String> {
        let v = match (&self.volumes, self.version) {
            (None, 4) => return Err("version 4 requires `volumes`".into()),
            (None, _) => return Ok(()),
            (Some(_), n) if n != 4 && n != 5 => {
                return Err(format!(
                    "`volumes` needs format version 4 or 5, the manifest says {n}"
                ))
            }
            (Some(v), _) => v,
        };
        if !(MIN_VOLUME_SIZE..=MAX_VOLUME_SIZE).contains(&v.size) {
            return Err(format!(
                "volumes.size {} is outside {MIN_VOLUME_SIZE}..={MAX_VOLUME_SIZE}",
                v.size
            ));
        }
        let parity = v.parity.as_ref().map_or(0, |p| p.volumes as usize);
        if v.data.is_empty() || v.data.len() + parity > MAX_VOLUMES {
            return Err(format!(
                "{} data and {parity} parity volumes: 1 to {MAX_VOLUMES} volumes in all, at least one of data",
                v.data.len()
            ));
        }
        let data_chunks: u64 = v.data.iter().map(|&c| u64::from(c)).sum();
        if v.data.contains(&0) && !(v.data.len() == 1 && data_chunks == 0) {
            return Err("a data volume holds no chunk (only a bundle without chunks may have an empty volume)".into());
        }
        let parity_chunks = v
            .parity
            .as_ref()
            .map_or(0, |p| u64::from(p.volumes) * u64::from(p.chunks));
        if data_chunks + parity_chunks != self.chunks.len() as u64 {
            return Err(format!(
                "volumes hold {data_chunks} data and {parity_chunks} parity chunks, the manifest lists {}",
                self.chunks.len()
            ));
        }
        if let Some(p) = &v.parity {
            if p.scheme != PARITY_SCHEME {
                return Err(format!(
                    "parity scheme {:?} is not {PARITY_SCHEME:?}",
                    p.scheme
                ));
            }
            if p.volumes == 0 || p.chunks == 0 || data_chunks == 0 {
                return Err(
                    "parity needs at least one parity volume, one parity chunk and one data chunk"
                        .into(),
                );
            }
            if !p.block.is_power_of_two()
                || !(MIN_PARITY_BLOCK..=MAX_PARITY_BLOCK).contains(&p.block)
            {
                return Err(format!(
                    "parity block {} is not a power of two in {MIN_PARITY_BLOCK}..={MAX_PARITY_BLOCK}",
                    p.block
                ));
            }
            let stripe = (v.data.len() as u64 + u64::from(p.volumes)) * p.block;
            if stripe > MAX_PARITY_STRIPE {
                return Err(format!(
                    "a parity stripe of {} volumes of {} bytes is {stripe} bytes, more than {MAX_PARITY_STRIPE}",
                    v.data.len() as u64 + u64::from(p.volumes),
                    p.block
                ));
            }
        }
        for n in 1..=self.volume_count() {
            let bytes = self.volume_chunk_bytes(n);
            if bytes > v.size {
                return Err(format!(
                    "volume {n} holds {bytes} bytes of chunks, more than volumes.size {}",
                    v.size
                ));
            }
        }
        if v.parity.is_some() {
            let want = self.parity_stream_len();
            let d = v.data.len() as u32;
            let first: Vec<u64> = self.chunks[self.volume_chunks(d + 1)]
                .iter()
                .map(|c| c.size)
                .collect();
            if first.iter().sum::<u64>() != want || first.contains(&0) {
                return Err(format!(
                    "parity volume {} holds {} bytes in its chunks, the parity stream is {want}",
                    d + 1,
                    first.iter().sum::<u64>()
                ));
            }
            for n in d + 2..=self.volume_count() {
                let sizes: Vec<u64> = self.chunks[self.volume_chunks(n)]
                    .iter()
                    .map(|c| c.size)
                    .collect();
                if sizes != first {
                    return Err(format!(
                        "parity volume {n}'s chunk sizes differ from parity volume {}'s",
                        d + 1
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Chunk, Digest, FORMAT_NAME};

    fn chunk(i: usize, size: u64, parity: bool) -> Chunk {
        let d = Digest::of(&i.to_le_bytes());
        Chunk {
            name: if parity {
                parity_chunk_name(i)
            } else {
                crate::format::chunk_name(i)
            },
            size,
            sha256: d,
            pieces: vec![d],
        }
    }

    /// Three data volumes (2, 1 and 2 chunks) and one parity volume of two chunks.
    fn manifest() -> Manifest {
        let data = [
            (0, 150_000),
            (1, 120_000),
            (2, 100_000),
            (3, 65_536),
            (4, 30_000),
        ];
        let mut chunks: Vec<Chunk> = data.iter().map(|&(i, s)| chunk(i, s, false)).collect();
        // Longest data volume: 1 (270,000 bytes) → the parity stream is 270,016 bytes.
        chunks.push(chunk(5, 200_000, true));
        chunks.push(chunk(6, 70_016, true));
        Manifest {
            format: FORMAT_NAME.into(),
            version: 4,
            bundle_id: "0123456789abcdef0123456789abcdef".into(),
            channel: "c".into(),
            sequence: 7,
            created: "2026-12-01T00:00:00Z".into(),
            expires: None,
            generator: "test".into(),
            chunk_size: 200_000,
            piece_size: crate::format::pieces::DEFAULT_PIECE_SIZE,
            artifacts: Vec::new(),
            blobs: Vec::new(),
            chunks,
            bases: Vec::new(),
            volumes: Some(Volumes {
                size: 300_000,
                data: vec![2, 1, 2],
                parity: Some(Parity {
                    scheme: PARITY_SCHEME.into(),
                    volumes: 1,
                    block: 1 << 20,
                    chunks: 2,
                }),
            }),
        }
    }

    #[test]
    fn layout_arithmetic() {
        let m = manifest();
        m.validate().unwrap();
        assert_eq!((m.volume_count(), m.data_volume_count()), (4, 3));
        assert_eq!(m.volume_chunks(1), 0..2);
        assert_eq!(m.volume_chunks(2), 2..3);
        assert_eq!(m.volume_chunks(3), 3..5);
        assert_eq!(m.volume_chunks(4), 5..7);
        let on: Vec<u32> = (0..7).map(|i| m.volume_of(i)).collect();
        assert_eq!(on, [1, 1, 2, 3, 3, 4, 4]);
        assert!(!m.is_parity_chunk(4) && m.is_parity_chunk(5));
        assert_eq!(m.volume_kind(4), VolumeKind::Parity);
        assert_eq!(m.parity_stream_len(), 270_016);
        assert_eq!(m.volume_sums(2).lines().count(), 1);
        assert!(m.volume_sums(4).contains("chunks/00000006.par"));
        let label = m.volume_label(2);
        assert!(label.contains("volume: 2 of 4\nkind: data\nlayout: 3 data, 1 parity\nchunks: 00000002.tar to 00000002.tar\nbytes: 100000\n"), "{label}");
        assert_eq!(volume_dir_name(12), "vol-012");
    }

    #[test]
    fn invalid_layouts_are_refused() {
        type Edit = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("requires `volumes`", Box::new(|m| m.volumes = None)),
            ("needs format version 4", Box::new(|m| m.version = 3)),
            (
                "hold 4 data and 2 parity",
                Box::new(|m| {
                    m.volumes.as_mut().unwrap().data = vec![2, 1, 1];
                }),
            ),
            (
                "holds no chunk",
                Box::new(|m| {
                    m.volumes.as_mut().unwrap().data = vec![2, 0, 3];
                }),
            ),
            (
                "more than volumes.size",
                Box::new(|m| m.volumes.as_mut().unwrap().size = 262_144),
            ),
            (
                "outside",
                Box::new(|m| m.volumes.as_mut().unwrap().size = 1000),
            ),
            (
                "parity scheme",
                Box::new(|m| {
                    m.volumes.as_mut().unwrap().parity.as_mut().unwrap().scheme = "xor".into();
                }),
            ),
            (
                "not a power of two",
                Box::new(|m| {
                    m.volumes.as_mut().unwrap().parity.as_mut().unwrap().block = 100_000;
                }),
            ),
            (
                "the parity stream is 270016",
                Box::new(|m| m.chunks[6].size = 70_000),
            ),
            (
                "expected \"00000005.par\"",
                Box::new(|m| m.chunks[5].name = "00000005.tar".into()),
            ),
        ];
        for (want, edit) in cases {
            let mut m = manifest();
            edit(&mut m);
            let e = m.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
    }

    #[test]
    fn a_segment_in_a_parity_chunk_is_refused() {
        let mut m = manifest();
        m.blobs.push(crate::format::Blob {
            digest: Digest::of(b"x"),
            size: 1,
            segments: vec![crate::format::Segment {
                chunk: 5,
                offset: 512,
                length: 1,
                encoding: crate::format::Encoding::None,
                size: 1,
            }],
            external: None,
        });
        let e = m.validate().unwrap_err().to_string();
        assert!(e.contains("names parity chunk 00000005.par"), "{e}");
    }

    #[test]
    fn the_wire_form_round_trips() {
        let m = manifest();
        let bytes = m.to_bytes();
        let back = Manifest::parse(&bytes).unwrap();
        assert_eq!(back, m);
        assert!(String::from_utf8_lossy(&bytes).contains("\"volumes\""));
    }
}
