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

mod decision;
mod file;
pub mod holdings;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::format::{validate_channel, Digest, Manifest};
use crate::fsutil;

pub use decision::Decision;
use file::validate_bundle_id;
pub use file::{Accepted, ChannelState, StateFile};
pub use holdings::{HeldBundle, HoldingsFile, Location, StoreKind};

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

/// The process's effective uid (`geteuid`), where the platform has one.
pub fn effective_uid() -> Option<u32> {
    #[cfg(unix)]
    // SAFETY: geteuid has no preconditions and cannot fail.
    {
        Some(unsafe { libc::geteuid() })
    }
    #[cfg(not(unix))]
    None
}

/// The acceptance state of one state directory.
#[derive(Debug)]
pub struct State {
    dir: PathBuf,
    file: StateFile,
    /// `holdings.json`, loaded on first use.
    holdings: Option<HoldingsFile>,
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
        let lock = fsutil::lock_exclusive(&lock_path)?;
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
            holdings: None,
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
            holdings: None,
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

    /// What the enclave holds as airlock put it there (`holdings.json`; absent: nothing),
    /// loaded on first use. A damaged file is an error, never an empty holding.
    pub fn holdings(&mut self) -> Result<&HoldingsFile> {
        if self.holdings.is_none() {
            self.holdings = Some(holdings::load(&self.dir)?);
        }
        Ok(self.holdings.as_ref().expect("loaded"))
    }

    /// Records, durably, a completed import's bundle and the locations it wrote its blobs to
    /// (or found them at). Call after [`State::record_accepted`], once the import completed.
    pub fn record_holdings(
        &mut self,
        bundle: HeldBundle,
        locations: Vec<(Digest, Location)>,
    ) -> Result<()> {
        self.write_holdings(|h| h.record(bundle, locations))
    }

    /// Changes the holdings under the lock and replaces the file atomically (e.g. forgetting a
    /// place airlock removed).
    pub fn write_holdings(&mut self, change: impl FnOnce(&mut HoldingsFile)) -> Result<()> {
        if self.lock.is_none() {
            return Err(Error::Other(format!(
                "internal: the state in {} was opened read-only",
                self.dir.display()
            )));
        }
        let mut next = self.holdings()?.clone();
        change(&mut next);
        holdings::store(&self.dir, &next)?;
        self.holdings = Some(next);
        Ok(())
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
