//! THE ON-DISK CONTRACT: bundle layout names, manifest types, digests, limits, chunk framing.
//!
//! Pure data and byte formats. This module imports nothing from sources, targets, the network
//! or the CLI, and does no I/O beyond `Read`/`Write` it is handed. `docs/FORMAT.md` specifies
//! it in prose; `schemas/manifest.schema.json` is generated from these types.

mod digest;
pub mod json;
pub mod limits;
mod manifest;
pub mod paths;
pub mod pieces;
pub mod tarframe;
pub mod text;
pub mod volumes;
pub mod zstdframe;

pub use digest::{CheckingReader, Digest, DigestParseError, Hasher, HashingReader, HashingWriter};
pub use manifest::*;
pub use volumes::{Parity, VolumeKind, Volumes};

use std::ops::RangeInclusive;

/// Value of the manifest's `format` field.
pub const FORMAT_NAME: &str = "airlock-bundle";
/// The version this airlock writes (3: piece digests and the compact file table; see
/// [`Manifest::required_version`]).
pub const FORMAT_VERSION: u32 = 3;
/// The versions this airlock reads (4: version 3 spread over volumes, `volumes`; 5: a delta
/// bundle, `bases` and external blobs).
pub const SUPPORTED_VERSIONS: RangeInclusive<u32> = 1..=5;

/// File names inside a bundle directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The packer's signature: minisign reads it by default for `minisign -Vm manifest.json`.
pub const SIGNATURE_FILE: &str = "manifest.json.minisig";
/// Further signatures (countersignatures), one `<KEYID>.minisig` each.
pub const SIGNATURES_DIR: &str = "signatures";
pub const CHUNKS_DIR: &str = "chunks";
/// Chunk checksums in `sha256sum -c` format; must equal what the manifest implies.
pub const SUMS_FILE: &str = "SHA256SUMS";
