//! The enclave's acceptance state: per channel, the highest sequence accepted and which bundles
//! were accepted at it. It is what turns a validly signed but old bundle into a rejected one.
//!
//! Decisions ([`State::check`], reads only):
//! - a channel never seen, or a sequence above the recorded one: [`Decision::Fresh`];
//! - the same bundle (bundle id **and** manifest digest) as one accepted at the recorded
//!   sequence: [`Decision::SameAsAccepted`], an idempotent success;
//! - a lower sequence: [`Decision::Rollback`];
//! - another bundle at the recorded sequence (a different id, or the same id with another
//!   manifest): [`Decision::SequenceReused`].
//!
//! The last two are rejections unless the operator explicitly allows a rollback (recovery), which
//! the caller records in the audit log. [`State::record_accepted`] is called only once an import
//! has completed; it never lowers a channel's sequence.
//!
//! On disk (`<dir>/state.json`, see [`StateFile`]) the state is replaced atomically (temp file →
//! fsync → rename → fsync of the directory), so a crash leaves either the old or the new file,
//! never a torn one; leftover temp files are ignored and removed. An import holds an exclusive
//! lock on `<dir>/lock` from [`State::open`] until the [`State`] is dropped, so two imports cannot
//! both pass the check for the same sequence. No file of the directory is opened through a
//! symbolic link: a planted `lock` or `state.json` link is refused, never followed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{json, validate_channel, Digest, Manifest};
use crate::fsutil;

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "lock";
/// The default audit log's name inside the state directory.
pub const AUDIT_FILE: &str = "audit.jsonl";
/// `format` of the state file.
pub const STATE_FORMAT: &str = "airlock-state";
/// The state file version this code writes and reads.
pub const STATE_VERSION: u32 = 1;
/// Largest state file read (16 MiB).
pub const MAX_STATE_BYTES: u64 = 16 << 20;
/// Most channels a state file may hold.
pub const MAX_CHANNELS: usize = 10_000;
/// Most bundles remembered at one channel's sequence (more only happen through explicit
/// `allow_rollback` overrides; the oldest are forgotten first).
pub const MAX_ACCEPTED_PER_SEQUENCE: usize = 16;

/// Where the state lives when `--state` is not given: `$XDG_STATE_HOME/airlock` if that is set
/// (and absolute), else `/var/lib/airlock` for root, else `~/.local/state/airlock`.
pub fn default_dir() -> Result<PathBuf> {
    default_dir_from(&|k| std::env::var_os(k), effective_uid())
}

/// [`default_dir`] with the environment and effective uid given, for tests.
pub fn default_dir_from(
    env: &dyn Fn(&str) -> Option<OsString>,
    euid: Option<u32>,
) -> Result<PathBuf> {
    let abs = |k: &str| {
        env(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(xdg) = abs("XDG_STATE_HOME") {
        return Ok(xdg.join("airlock"));
    }
    if euid == Some(0) {
        return Ok(PathBuf::from("/var/lib/airlock"));
    }
    match abs("HOME") {
        Some(home) => Ok(home.join(".local/state/airlock")),
        None => Err(Error::Usage(
            "cannot choose a state directory: neither XDG_STATE_HOME nor HOME is set (absolute); give --state DIR".into(),
        )),
    }
}

/// The process's effective uid, where the platform tells (Linux: the owner of `/proc/self`).
pub fn effective_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata("/proc/self").ok().map(|m| m.uid())
    }
    #[cfg(not(unix))]
    None
}

/// The state file (`state.json`). Strict: unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// Always `"airlock-state"`.
    pub format: String,
    /// [`STATE_VERSION`]; other versions are refused.
    pub version: u32,
    /// Per channel name.
    pub channels: BTreeMap<String, ChannelState>,
}

/// What a channel has accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelState {
    /// The highest sequence accepted.
    pub sequence: u64,
    /// The bundles accepted at that sequence, oldest first (normally exactly one).
    pub accepted: Vec<Accepted>,
}

/// One bundle accepted at a channel's sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    pub bundle_id: String,
    pub manifest_digest: Digest,
    /// When the import completed, RFC 3339 UTC.
    pub time: String,
}

impl Default for StateFile {
    fn default() -> Self {
        StateFile {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            channels: BTreeMap::new(),
        }
    }
}

impl StateFile {
    /// Parses and validates state file bytes.
    pub fn parse(bytes: &[u8]) -> std::result::Result<StateFile, String> {
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(format!("larger than {MAX_STATE_BYTES} bytes"));
        }
        #[derive(Deserialize)]
        struct Probe {
            format: Option<String>,
            version: Option<u32>,
        }
        // Strict: a key named twice (a channel, say) is refused, never last-wins.
        let probe: Probe =
            json::from_slice(bytes, STATE_FILE).map_err(|e| e.detail().to_string())?;
        if probe.format.as_deref() != Some(STATE_FORMAT) {
            return Err(format!(
                "not an airlock state file (format {:?})",
                probe.format
            ));
        }
        if probe.version != Some(STATE_VERSION) {
            return Err(format!(
                "state file version {:?}, this airlock reads version {STATE_VERSION}",
                probe.version
            ));
        }
        let s: StateFile =
            json::from_slice(bytes, STATE_FILE).map_err(|e| e.detail().to_string())?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.channels.len() > MAX_CHANNELS {
            return Err(format!("more than {MAX_CHANNELS} channels"));
        }
        for (name, c) in &self.channels {
            validate_channel(name)?;
            if c.accepted.is_empty() || c.accepted.len() > MAX_ACCEPTED_PER_SEQUENCE {
                return Err(format!(
                    "channel {name:?}: {} accepted bundles at sequence {} (1 to {MAX_ACCEPTED_PER_SEQUENCE} allowed)",
                    c.accepted.len(),
                    c.sequence
                ));
            }
            for a in &c.accepted {
                validate_bundle_id(&a.bundle_id).map_err(|e| format!("channel {name:?}: {e}"))?;
                humantime::parse_rfc3339(&a.time)
                    .map_err(|e| format!("channel {name:?}: time {:?}: {e}", a.time))?;
            }
        }
        Ok(())
    }
}

fn validate_bundle_id(id: &str) -> std::result::Result<(), String> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!("bundle_id {id:?} is not 32 lowercase hex digits"))
    }
}

/// What the state says about a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// A channel never seen, or a sequence above the last accepted one (`last`).
    Fresh { last: Option<u64> },
    /// This very bundle was already accepted at the channel's current sequence: an idempotent
    /// success (importing it again is harmless).
    SameAsAccepted { accepted: Accepted },
    /// The sequence is below the last accepted one.
    Rollback { sequence: u64, last: u64 },
    /// Another bundle (`accepted`) was already accepted at this sequence; this one has the same
    /// sequence but a different bundle id or manifest.
    SequenceReused {
        sequence: u64,
        accepted: Vec<Accepted>,
    },
}

impl Decision {
    /// A stable code for reports and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Decision::Fresh { .. } => "fresh",
            Decision::SameAsAccepted { .. } => "same-as-accepted",
            Decision::Rollback { .. } => "rollback",
            Decision::SequenceReused { .. } => "sequence-reused",
        }
    }

    /// A rollback or a replayed sequence: refused unless explicitly allowed.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Decision::Rollback { .. } | Decision::SequenceReused { .. }
        )
    }

    /// Whether the import may go on; `allow_rollback` (recovery) overrides both rejections.
    pub fn permits(&self, allow_rollback: bool) -> bool {
        allow_rollback || !self.is_rejection()
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Fresh { last: None } => write!(f, "fresh: first bundle accepted on this channel"),
            Decision::Fresh { last: Some(l) } => write!(f, "fresh: newer than sequence {l}, the last accepted"),
            Decision::SameAsAccepted { accepted } => write!(
                f,
                "already accepted: bundle {} was imported at {}; importing it again is harmless",
                accepted.bundle_id, accepted.time
            ),
            Decision::Rollback { sequence, last } => write!(
                f,
                "rollback: sequence {sequence} is older than sequence {last}, the last accepted on this channel (--allow-rollback to override)"
            ),
            Decision::SequenceReused { sequence, accepted } => write!(
                f,
                "sequence reused: bundle {} was already accepted at sequence {sequence} of this channel; a different bundle with the same sequence is a replay or a conflict (--allow-rollback to override)",
                accepted.last().map(|a| a.bundle_id.as_str()).unwrap_or("?")
            ),
        }
    }
}

/// The acceptance state of one state directory.
#[derive(Debug)]
pub struct State {
    dir: PathBuf,
    file: StateFile,
    /// Held (exclusive) from `open` until drop; `None` for a read-only view.
    lock: Option<File>,
}

impl State {
    /// Opens the state in `dir` for an import: creates the directory (0700) if missing, takes an
    /// exclusive lock (waiting while another import holds it), removes leftover temp files of an
    /// interrupted write, and loads `state.json` (absent: empty state). The lock is held until
    /// the `State` is dropped, so check → import → [`State::record_accepted`] is one window.
    ///
    /// No file in the directory is opened through a symbolic link (`O_NOFOLLOW`, and the kind
    /// checked on the open handle), and the directory is proven writable (a temp file created
    /// and removed) before the caller writes anything anywhere.
    pub fn open(dir: &Path) -> Result<State> {
        create_private_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let mut o = OpenOptions::new();
        o.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let lock = fsutil::open_nofollow(&lock_path, &mut o)?;
        fsutil::check_regular(&lock, &lock_path)?;
        lock.lock().map_err(|e| Error::io("lock", &lock_path, e))?;
        remove_stale_temps(dir);
        // Writable: the atomic replace of state.json will need a temp file here.
        tempfile::Builder::new()
            .prefix(".airlock-tmp-")
            .tempfile_in(dir)
            .map_err(|e| Error::io("create temporary file in state directory", dir, e))?;
        let file = load(dir)?;
        Ok(State {
            dir: dir.to_path_buf(),
            file,
            lock: Some(lock),
        })
    }

    /// A read-only view (for `verify`): creates nothing and takes no lock (writes are atomic
    /// renames, so the file read is always a complete one). A missing directory or file is an
    /// empty state.
    pub fn open_read_only(dir: &Path) -> Result<State> {
        let file = match fs::symlink_metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => StateFile::default(),
            _ => load(dir)?,
        };
        Ok(State {
            dir: dir.to_path_buf(),
            file,
            lock: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The default audit log of this state directory.
    pub fn audit_path(&self) -> PathBuf {
        self.dir.join(AUDIT_FILE)
    }

    /// What was loaded.
    pub fn file(&self) -> &StateFile {
        &self.file
    }

    /// The channel's state, if it accepted anything.
    pub fn channel(&self, channel: &str) -> Option<&ChannelState> {
        self.file.channels.get(channel)
    }

    /// Decides about a verified manifest (whose bytes have `manifest_digest`). Reads only.
    pub fn check(&self, manifest: &Manifest, manifest_digest: &Digest) -> Decision {
        self.check_parts(
            &manifest.channel,
            manifest.sequence,
            &manifest.bundle_id,
            manifest_digest,
        )
    }

    /// [`State::check`] from the parts.
    pub fn check_parts(
        &self,
        channel: &str,
        sequence: u64,
        bundle_id: &str,
        manifest_digest: &Digest,
    ) -> Decision {
        let Some(c) = self.file.channels.get(channel) else {
            return Decision::Fresh { last: None };
        };
        if sequence > c.sequence {
            return Decision::Fresh {
                last: Some(c.sequence),
            };
        }
        if sequence < c.sequence {
            return Decision::Rollback {
                sequence,
                last: c.sequence,
            };
        }
        match c
            .accepted
            .iter()
            .find(|a| a.bundle_id == bundle_id && a.manifest_digest == *manifest_digest)
        {
            Some(a) => Decision::SameAsAccepted {
                accepted: a.clone(),
            },
            None => Decision::SequenceReused {
                sequence,
                accepted: c.accepted.clone(),
            },
        }
    }

    /// Records a completed import, durably, before returning. A higher sequence replaces the
    /// channel's record; the same sequence adds the bundle to those accepted at it (unless it is
    /// already there); a lower one (an allowed rollback) leaves the state as it is — the channel
    /// never goes back. Returns whether the file changed.
    pub fn record_accepted(
        &mut self,
        channel: &str,
        sequence: u64,
        bundle_id: &str,
        manifest_digest: &Digest,
    ) -> Result<bool> {
        self.record_accepted_at(
            channel,
            sequence,
            bundle_id,
            manifest_digest,
            SystemTime::now(),
        )
    }

    /// [`State::record_accepted`] with the time given.
    pub fn record_accepted_at(
        &mut self,
        channel: &str,
        sequence: u64,
        bundle_id: &str,
        manifest_digest: &Digest,
        now: SystemTime,
    ) -> Result<bool> {
        if self.lock.is_none() {
            return Err(Error::Other(format!(
                "internal: the state in {} was opened read-only",
                self.dir.display()
            )));
        }
        validate_channel(channel).map_err(Error::Other)?;
        validate_bundle_id(bundle_id).map_err(Error::Other)?;
        let entry = Accepted {
            bundle_id: bundle_id.to_string(),
            manifest_digest: *manifest_digest,
            time: humantime::format_rfc3339_seconds(now).to_string(),
        };
        let mut next = self.file.clone();
        match next.channels.get_mut(channel) {
            None => {
                if next.channels.len() >= MAX_CHANNELS {
                    return Err(Error::Other(format!(
                        "state {}: already {MAX_CHANNELS} channels",
                        self.dir.display()
                    )));
                }
                next.channels.insert(
                    channel.to_string(),
                    ChannelState {
                        sequence,
                        accepted: vec![entry],
                    },
                );
            }
            Some(c) if sequence > c.sequence => {
                *c = ChannelState {
                    sequence,
                    accepted: vec![entry],
                }
            }
            Some(c) if sequence < c.sequence => return Ok(false),
            Some(c) => {
                if c.accepted.iter().any(|a| {
                    a.bundle_id == entry.bundle_id && a.manifest_digest == entry.manifest_digest
                }) {
                    return Ok(false);
                }
                c.accepted.push(entry);
                let excess = c.accepted.len().saturating_sub(MAX_ACCEPTED_PER_SEQUENCE);
                c.accepted.drain(..excess);
            }
        }
        let mut bytes = serde_json::to_vec_pretty(&next)
            .map_err(|e| Error::Other(format!("serialise state: {e}")))?;
        bytes.push(b'\n');
        fsutil::write_atomic(&self.dir.join(STATE_FILE), &bytes, 0o600)?;
        self.file = next;
        Ok(true)
    }
}

/// Creates the state directory (mode 0700, with missing parents) if it does not exist.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| Error::io("create state directory", dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::sync_dir(parent)?;
    }
    Ok(())
}

/// Removes `.airlock-tmp-*` files an interrupted atomic write left behind (under the lock).
fn remove_stale_temps(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".airlock-tmp-") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn load(dir: &Path) -> Result<StateFile> {
    let path = dir.join(STATE_FILE);
    // Never through a symbolic link, never blocking on a FIFO; the kind checked on the handle.
    let bytes = match fsutil::read_regular(&path, MAX_STATE_BYTES) {
        Ok(b) => b,
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(StateFile::default())
        }
        Err(e) => return Err(e),
    };
    StateFile::parse(&bytes)
        .map_err(|e| Error::Other(format!("state file {} is damaged: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID_A: &str = "0123456789abcdef0123456789abcdef";
    const ID_B: &str = "fedcba9876543210fedcba9876543210";

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn default_dir_rules() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let both = env(&[("XDG_STATE_HOME", "/x/state"), ("HOME", "/home/u")]);
        assert_eq!(
            default_dir_from(&both, Some(1000)).unwrap(),
            Path::new("/x/state/airlock")
        );
        assert_eq!(
            default_dir_from(&both, Some(0)).unwrap(),
            Path::new("/x/state/airlock")
        );
        let home = env(&[("HOME", "/home/u")]);
        assert_eq!(
            default_dir_from(&home, Some(1000)).unwrap(),
            Path::new("/home/u/.local/state/airlock")
        );
        assert_eq!(
            default_dir_from(&home, Some(0)).unwrap(),
            Path::new("/var/lib/airlock")
        );
        let relative = env(&[("XDG_STATE_HOME", "rel"), ("HOME", "/home/u")]);
        assert_eq!(
            default_dir_from(&relative, None).unwrap(),
            Path::new("/home/u/.local/state/airlock")
        );
        let empty = env(&[("XDG_STATE_HOME", "")]);
        assert_eq!(
            default_dir_from(&empty, Some(0)).unwrap(),
            Path::new("/var/lib/airlock")
        );
        assert!(default_dir_from(&empty, Some(1000)).is_err());
    }

    #[test]
    fn every_decision() {
        let t = tempfile::tempdir().unwrap();
        let mut s = State::open(t.path()).unwrap();
        assert_eq!(
            s.check_parts("nightly", 5, ID_A, &d(1)),
            Decision::Fresh { last: None }
        );
        assert!(s.record_accepted("nightly", 5, ID_A, &d(1)).unwrap());
        // Idempotent: same id and digest at the recorded sequence.
        let same = s.check_parts("nightly", 5, ID_A, &d(1));
        assert!(
            matches!(same, Decision::SameAsAccepted { ref accepted } if accepted.bundle_id == ID_A)
        );
        assert!(same.permits(false));
        assert!(!s.record_accepted("nightly", 5, ID_A, &d(1)).unwrap());
        // Another bundle at the same sequence, or the same id with another manifest.
        for (id, dg) in [(ID_B, d(1)), (ID_B, d(2)), (ID_A, d(2))] {
            let r = s.check_parts("nightly", 5, id, &dg);
            assert!(
                matches!(r, Decision::SequenceReused { sequence: 5, .. }),
                "{r:?}"
            );
            assert!(!r.permits(false) && r.permits(true));
        }
        // Lower: rollback. Higher: fresh.
        let r = s.check_parts("nightly", 4, ID_B, &d(3));
        assert_eq!(
            r,
            Decision::Rollback {
                sequence: 4,
                last: 5
            }
        );
        assert!(!r.permits(false) && r.permits(true));
        assert_eq!(
            s.check_parts("nightly", 6, ID_B, &d(3)),
            Decision::Fresh { last: Some(5) }
        );
        // Channels are independent.
        assert_eq!(
            s.check_parts("prod", 1, ID_B, &d(3)),
            Decision::Fresh { last: None }
        );
        // An allowed rollback does not lower the channel.
        assert!(!s.record_accepted("nightly", 4, ID_B, &d(3)).unwrap());
        assert_eq!(s.channel("nightly").unwrap().sequence, 5);
        // An allowed reuse adds to the sequence's bundles; both are then "same".
        assert!(s.record_accepted("nightly", 5, ID_B, &d(4)).unwrap());
        assert!(matches!(
            s.check_parts("nightly", 5, ID_B, &d(4)),
            Decision::SameAsAccepted { .. }
        ));
        assert!(matches!(
            s.check_parts("nightly", 5, ID_A, &d(1)),
            Decision::SameAsAccepted { .. }
        ));
        // A newer sequence replaces; the old one is now a rollback.
        assert!(s.record_accepted("nightly", 9, ID_B, &d(5)).unwrap());
        assert_eq!(
            s.check_parts("nightly", 5, ID_A, &d(1)),
            Decision::Rollback {
                sequence: 5,
                last: 9
            }
        );
        for dec in [
            Decision::Fresh { last: None },
            s.check_parts("nightly", 1, ID_A, &d(1)),
            s.check_parts("nightly", 9, ID_A, &d(1)),
        ] {
            assert!(!dec.to_string().is_empty() && !dec.code().is_empty());
        }
    }

    #[test]
    fn persists_and_reloads() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b/state");
        {
            let mut s = State::open(&dir).unwrap();
            s.record_accepted("nightly", 3, ID_A, &d(1)).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(STATE_FILE)), 0o600);
        }
        let s = State::open_read_only(&dir).unwrap();
        assert_eq!(s.channel("nightly").unwrap().sequence, 3);
        assert!(matches!(
            s.check_parts("nightly", 3, ID_A, &d(1)),
            Decision::SameAsAccepted { .. }
        ));
        let mut ro = State::open_read_only(&dir).unwrap();
        assert!(ro.record_accepted("nightly", 4, ID_A, &d(1)).is_err());
        // A missing directory is an empty state and is not created.
        let none = t.path().join("none");
        assert!(State::open_read_only(&none)
            .unwrap()
            .file()
            .channels
            .is_empty());
        assert!(!none.exists());
    }

    #[test]
    fn leftover_temp_file_is_ignored_and_old_state_stays_valid() {
        let t = tempfile::tempdir().unwrap();
        State::open(t.path())
            .unwrap()
            .record_accepted("nightly", 3, ID_A, &d(1))
            .unwrap();
        // A write interrupted before its rename: a torn temp file next to the real one.
        let tmp = t.path().join(".airlock-tmp-XXXX");
        fs::write(&tmp, b"{\"format\":\"airlock-state\",\"version\":1,\"chan").unwrap();
        let ro = State::open_read_only(t.path()).unwrap();
        assert_eq!(ro.channel("nightly").unwrap().sequence, 3);
        let mut s = State::open(t.path()).unwrap();
        assert!(
            !tmp.exists(),
            "open under the lock removes stale temp files"
        );
        assert_eq!(s.channel("nightly").unwrap().sequence, 3);
        s.record_accepted("nightly", 4, ID_B, &d(2)).unwrap();
        assert_eq!(
            State::open_read_only(t.path())
                .unwrap()
                .channel("nightly")
                .unwrap()
                .sequence,
            4
        );
    }

    #[test]
    fn damaged_or_foreign_state_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let good = format!(
            r#"{{"format":"airlock-state","version":1,"channels":{{"nightly":{{"sequence":3,"accepted":[{{"bundle_id":"{ID_A}","manifest_digest":"{}","time":"2026-01-02T03:04:05Z"}}]}}}}}}"#,
            d(1)
        );
        assert!(StateFile::parse(good.as_bytes()).is_ok());
        let cases = [
            good.replace("\"version\":1", "\"version\":2"),
            good.replace("airlock-state", "other"),
            good.replace("\"sequence\":3", "\"sequence\":3,\"extra\":1"),
            good.replace("nightly", "-bad"),
            good.replace(ID_A, "XYZ"),
            good.replace("2026-01-02T03:04:05Z", "yesterday"),
            good.replace("\"sequence\":3", "\"sequence\":-1"),
            good[..good.len() - 3].to_string(),
            "[".repeat(100_000),
            // A channel named twice: serde_json alone would keep the last one.
            good.replace(
                "\"channels\":{",
                "\"channels\":{\"nightly\":{\"sequence\":1000,\"accepted\":[]},",
            ),
        ];
        for bad in &cases {
            assert!(StateFile::parse(bad.as_bytes()).is_err(), "{bad:.120}");
            fs::write(t.path().join(STATE_FILE), bad).unwrap();
            let e = State::open(t.path()).unwrap_err().to_string();
            assert!(e.contains("damaged"), "{e}");
        }
        let huge = vec![b' '; MAX_STATE_BYTES as usize + 10];
        fs::write(t.path().join(STATE_FILE), &huge).unwrap();
        assert!(State::open_read_only(t.path()).is_err());
    }

    #[test]
    fn lock_serialises_imports() {
        let t = tempfile::tempdir().unwrap();
        let s = State::open(t.path()).unwrap();
        let lock = File::open(t.path().join(LOCK_FILE)).unwrap();
        assert!(matches!(lock.try_lock(), Err(fs::TryLockError::WouldBlock)));
        drop(s);
        lock.try_lock().unwrap();
    }

    #[test]
    fn same_sequence_list_is_bounded() {
        let t = tempfile::tempdir().unwrap();
        let mut s = State::open(t.path()).unwrap();
        for i in 0..(MAX_ACCEPTED_PER_SEQUENCE as u8 + 3) {
            s.record_accepted("c", 1, ID_A, &d(i)).unwrap();
        }
        let c = s.channel("c").unwrap();
        assert_eq!(c.accepted.len(), MAX_ACCEPTED_PER_SEQUENCE);
        assert_eq!(c.accepted[0].manifest_digest, d(3));
        State::open_read_only(t.path()).unwrap();
    }
}
