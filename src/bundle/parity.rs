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
