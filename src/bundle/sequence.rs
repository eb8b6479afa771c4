//! The sequence rule of pack (FORMAT.md §Version 5, README "Sequence numbers"): a channel's
//! default sequence never repeats or goes back on one packing machine, even for two packs in
//! the same second or after the clock stepped back, and a delta's is above its bases'.
//!
//! The default is `max(now in Unix seconds, last + 1, every base's sequence + 1)`, where `last`
//! is the highest sequence this machine's packs used for the channel, recorded in
//! `PACK_STATE/sequences.json` under an exclusive lock (`PACK_STATE/lock`) held from the read
//! to the atomic write. PACK_STATE is `AIRLOCK_PACK_STATE`, else `$XDG_STATE_HOME/airlock-pack`,
//! else `/var/lib/airlock-pack` as root, else `~/.local/state/airlock-pack`: not the enclave's
//! state directory, whose presence turns on verify's audit log. An explicit `--sequence` must
//! be above every base's (else refused, exit 2) and is recorded too, so the next default is
//! above it. The record is taken once the sources resolved, before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::text::escape;
use crate::fsutil;

/// The environment variable naming pack's state directory.
pub const PACK_STATE_ENV: &str = "AIRLOCK_PACK_STATE";
/// The record of the last sequence used per channel.
pub const SEQUENCES_FILE: &str = "sequences.json";
const LOCK_FILE: &str = "lock";
const FORMAT: &str = "airlock-pack-sequences";
/// Largest record read (1 MiB: far more channels than any machine packs).
const MAX_BYTES: u64 = 1 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    format: String,
    version: u32,
    /// Channel → the highest sequence a pack on this machine used.
    channels: BTreeMap<String, u64>,
}

/// Where pack records its sequences (see the module docs).
pub fn default_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os(PACK_STATE_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    // The enclave's default, with `-pack` added: `$XDG_STATE_HOME/airlock-pack`, ….
    let state = crate::state::default_dir().map_err(|_| {
        Error::Usage(format!(
            "cannot choose where pack records the sequences it used: neither {PACK_STATE_ENV}, XDG_STATE_HOME nor HOME is set (absolute)"
        ))
    })?;
    let name = format!(
        "{}-pack",
        state
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("airlock")
    );
    Ok(state.with_file_name(name))
}

/// An explicit sequence of a delta must be above every base's (`floor`, the highest).
pub fn check_explicit(sequence: u64, floor: u64) -> Result<()> {
    if sequence <= floor {
        return Err(Error::Usage(format!(
            "--sequence {sequence} is not above the base's sequence {floor}: a delta bundle follows its bases in the channel; give a higher --sequence or leave it out"
        )));
    }
    Ok(())
}

/// The sequence of a pack on `channel`, recorded in `dir` before it is returned.
///
/// `explicit`: `--sequence`, used as given (it must be above `floor`); else the default,
/// `max(now_secs, last + 1, floor + 1)`. `floor`: the highest sequence of the bases. Either way
/// the record becomes `max(last, sequence)`.
pub fn reserve(
    dir: &Path,
    channel: &str,
    explicit: Option<u64>,
    now_secs: u64,
    floor: Option<u64>,
) -> Result<u64> {
    if let (Some(s), Some(f)) = (explicit, floor) {
        check_explicit(s, f)?;
    }
    crate::state::create_private_dir(dir)?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = fsutil::lock_exclusive(&lock_path)?;
    let path = dir.join(SEQUENCES_FILE);
    let mut record = match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Record {
            format: FORMAT.into(),
            version: 1,
            channels: BTreeMap::new(),
        },
        _ => {
            let bytes = fsutil::read_regular(&path, MAX_BYTES)?;
            let r: Record = crate::format::json::from_slice(&bytes, &path.display().to_string())
                .map_err(|e| bad(&path, e.detail()))?;
            if r.format != FORMAT || r.version != 1 {
                return Err(bad(&path, "not a version 1 record of pack's sequences"));
            }
            r
        }
    };
    let last = record.channels.get(channel).copied();
    let sequence = match explicit {
        Some(s) => s,
        None => {
            let next = |s: Option<u64>| s.map(|s| s.saturating_add(1)).unwrap_or(0);
            now_secs.max(next(last)).max(next(floor))
        }
    };
    if sequence == u64::MAX && explicit.is_none() {
        return Err(Error::Usage(format!(
            "channel {} has used every sequence: give --sequence",
            escape(channel)
        )));
    }
    record
        .channels
        .insert(channel.to_string(), last.unwrap_or(0).max(sequence));
    let mut bytes = serde_json::to_vec_pretty(&record)
        .map_err(|e| Error::Other(format!("serialise pack sequences: {e}")))?;
    bytes.push(b'\n');
    fsutil::write_atomic(&path, &bytes, 0o600)?;
    drop(lock);
    Ok(sequence)
}

fn bad(path: &Path, detail: &str) -> Error {
    Error::Other(format!(
        "{}: {detail}; it records the last sequence pack used per channel: fix or remove it (the next pack then uses the clock, and its bases', again)",
        escape(&path.display().to_string())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_in_the_same_second_and_when_the_clock_steps_back() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("airlock-pack");
        assert_eq!(reserve(&dir, "c", None, 1000, None).unwrap(), 1000);
        assert_eq!(reserve(&dir, "c", None, 1000, None).unwrap(), 1001);
        assert_eq!(reserve(&dir, "c", None, 900, None).unwrap(), 1002);
        assert_eq!(reserve(&dir, "c", None, 2000, None).unwrap(), 2000);
        // Another channel is its own.
        assert_eq!(reserve(&dir, "d", None, 5, None).unwrap(), 5);
        // A base far in the future lifts the default above it.
        assert_eq!(
            reserve(&dir, "c", None, 2001, Some(9_000_000_000)).unwrap(),
            9_000_000_001
        );
        assert_eq!(reserve(&dir, "c", None, 2002, None).unwrap(), 9_000_000_002);
        // Explicit: used as given, recorded as the maximum.
        assert_eq!(reserve(&dir, "c", Some(7), 2003, None).unwrap(), 7);
        assert_eq!(reserve(&dir, "c", None, 2004, None).unwrap(), 9_000_000_003);
        assert!(matches!(
            reserve(&dir, "c", Some(10), 1, Some(10)),
            Err(Error::Usage(_))
        ));
        assert_eq!(reserve(&dir, "c", Some(11), 1, Some(10)).unwrap(), 11);
    }

    #[test]
    fn a_damaged_record_is_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(SEQUENCES_FILE), b"{").unwrap();
        let e = reserve(d.path(), "c", None, 1, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sequences.json"), "{e}");
    }
}
