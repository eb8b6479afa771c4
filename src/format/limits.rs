//! Bounds every reader enforces on a manifest before trusting its numbers (FORMAT.md §Limits).
//!
//! They are far above any real bundle and far below what could exhaust memory or overflow
//! arithmetic, so a crafted manifest cannot make a reader allocate, loop or compute absurdly.

/// Largest `manifest.json` a reader loads before authentication, when no trusted signature
/// declares its size (64 MiB): bundles without `manifest_size`, and unverified reads.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// Largest `manifest_size` a trusted comment may declare, and so the largest manifest a reader
/// loads or parses (1 GiB): 2,000,000 entries (MAX_ENTRIES) at ≈500 bytes each in version 2.
pub const MAX_DECLARED_MANIFEST_BYTES: u64 = 1 << 30;
/// Largest signature file a reader loads.
pub const MAX_SIGNATURE_BYTES: u64 = 4096;
/// Most signature files in one bundle.
pub const MAX_SIGNATURES: usize = 64;
/// Smallest chunk size a bundle may declare (64 KiB).
pub const MIN_CHUNK_SIZE: u64 = 64 << 10;
/// Largest chunk size a bundle may declare (1 TiB).
pub const MAX_CHUNK_SIZE: u64 = 1 << 40;
/// Largest blob (4 PiB).
pub const MAX_BLOB_SIZE: u64 = 1 << 52;
/// Largest decoded size of one zstd segment (64 MiB); writers use 8 MiB.
pub const MAX_ZSTD_SEGMENT: u64 = 64 << 20;
pub const MAX_CHUNKS: usize = 1_000_000;
/// Twice the 1,000,000-file dataset one bundle must hold (FORMAT.md §Limits): every file its
/// own blob, with room to spare.
pub const MAX_BLOBS: usize = 2_000_000;
pub const MAX_ARTIFACTS: usize = 100_000;
/// Files and directories (and symlinks) of all artifacts together: a 1,000,000-file dataset
/// and its directories fit twice over. The largest manifest a reader loads
/// ([`MAX_DECLARED_MANIFEST_BYTES`]) is sized for this many entries.
pub const MAX_ENTRIES: usize = 2_000_000;
/// Four per blob on average, as before.
pub const MAX_SEGMENTS: usize = 8_000_000;
pub const MAX_PATH_BYTES: usize = 4096;
pub const MAX_COMPONENT_BYTES: usize = 255;
pub const MAX_DEPTH: usize = 128;
/// Most bases of one delta bundle (version 5).
pub const MAX_BASES: usize = 64;
