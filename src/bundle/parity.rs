//! Reed–Solomon parity volumes (FORMAT.md §Version 4, Parity): written by pack over the data
//! volumes' chunk streams, and used to rebuild missing or damaged data chunks.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{Chunk, Parity};
use crate::progress::Progress;

/// Writes `parity` parity volumes (`ROOT/vol-NNN/chunks/NNNNNNNN.par`, numbered after the data
/// volumes and their chunks) over the data volumes whose chunks are `chunks` (`counts[k]` of
/// them on data volume k + 1), in parity chunks of at most `max_chunk` bytes. Returns the
/// manifest's parity record and the parity chunks (sizes and digests, in manifest order).
pub fn write_parity(
    _root: &Path,
    _chunks: &[Chunk],
    _counts: &[u32],
    _max_chunk: u64,
    _parity: u32,
    _progress: &dyn Progress,
) -> Result<(Parity, Vec<Chunk>)> {
    Err(Error::Usage("--parity is not implemented yet".into()))
}

/// What [`rebuild_volumes`] rebuilt.
#[derive(Debug, Clone, Default, serde::Serialize, schemars::JsonSchema)]
pub struct Rebuilt {
    /// The data volumes rebuilt (1-based).
    pub volumes: Vec<u32>,
    /// The chunks rebuilt, each verified against its signed digests.
    pub chunks: Vec<String>,
    /// Bytes of chunks rebuilt.
    pub bytes: u64,
}

/// Rebuilds the data volumes `volumes` of `bundle` (not located: missing) from the volumes
/// located and the parity volumes, into `scratch/vol-NNN/chunks/`, verifies every rebuilt chunk
/// against the signed manifest, and locates the rebuilt volumes there
/// ([`crate::bundle::VerifiedBundle::relocate`]). Names the chunks that cannot be rebuilt.
pub fn rebuild_volumes(
    _bundle: &mut crate::bundle::VerifiedBundle,
    _volumes: &[u32],
    _scratch: &Path,
    _progress: &dyn Progress,
) -> Result<Rebuilt> {
    Err(Error::Usage(
        "rebuilding volumes from parity is not implemented yet".into(),
    ))
}
