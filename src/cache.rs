//! The pack cache (`pack --cache DIR`): verified blobs kept between packs, so that a nightly
//! pack of unchanged sources downloads no payload again.
//!
//! Layout (directories mode 0700, files 0600):
//!
//! ```text
//! DIR/lock                 flock: shared while a pack uses the cache, exclusive to evict
//! DIR/blobs/sha256/<hex>   a blob, named by its SHA-256
//! DIR/keys/<hex>           upstream key → digest, where the digest is not known before the
//!                          download (an HF regular file, by its git blob SHA-1; a URL's final
//!                          address): small JSON, `<hex>` the SHA-256 of the key
//! DIR/tmp/                 blobs being written (temp file → fsync → rename into blobs/)
//! ```
//!
//! Nothing in the cache is believed: an entry is opened without following links, its size
//! checked on the handle, and its bytes hashed by the writer as they are packed (an HF regular
//! file's also against the Hub's git blob SHA-1). An entry that does not match is removed and
//! the pack is run again with that blob fetched from upstream ([`Cache::retry_after`]): a
//! corrupt entry is never packed and does not fail the pack. A blob fetched from upstream is
//! written into the cache only after its bytes hashed to the expected digest.
//!
//! Concurrency: entries appear only by rename of a complete, synced, verified temp file and are
//! never written in place, so two packs may fill one cache at once (the second rename replaces
//! identical bytes; an open reader keeps its inode). Each pack holds a shared lock on
//! `DIR/lock` while it runs; eviction, after a pack completes, takes it exclusively without
//! waiting and is skipped while another pack holds it, so no pack's blob is removed under it.
//! Least recently used first: an entry's mtime is set each time a pack uses it.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::blob::Origin;
use crate::bundle::PlannedBlob;
use crate::error::{Error, Result};
use crate::format::{Digest, Hasher};
use crate::fsutil;

/// Default of `--cache-max`: 50 GiB.
pub const DEFAULT_MAX: u64 = 50 << 30;

/// Largest key record read.
const MAX_KEY_RECORD: u64 = 64 << 10;

/// The cache directory when none is given: `$XDG_CACHE_HOME/airlock`, else
/// `$HOME/.cache/airlock` (relative values are ignored, as the XDG spec says).
pub fn default_dir() -> Option<PathBuf> {
    let abs = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").and_then(abs) {
        return Some(x.join("airlock"));
    }
    std::env::var_os("HOME")
        .and_then(abs)
        .map(|h| h.join(".cache").join("airlock"))
}

/// What a key record says: the digest of what was fetched, and (URLs) the identity it had.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// What the cache did for one pack: the numbers of its report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub hit_blobs: u64,
    pub hit_bytes: u64,
    pub fetched_blobs: u64,
    pub fetched_bytes: u64,
}

/// What an eviction removed, and what the cache holds after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evicted {
    pub blobs: u64,
    pub bytes: u64,
    /// Bytes of blobs the cache holds afterwards.
    pub held: u64,
    /// Another pack was using the cache: nothing was evicted.
    pub skipped: bool,
}

#[derive(Default)]
struct Run {
    /// Digests read from entries in this pack (size).
    hits: HashMap<Digest, u64>,
    /// Digests fetched from upstream in this pack (size).
    fetched: HashMap<Digest, u64>,
    /// Digests read from entries in this pack, whether or not fetched earlier in it.
    served: HashSet<Digest>,
    /// Entries found bad (missing, wrong size or wrong bytes) while packing, not yet handled.
    bad: Vec<Digest>,
    /// Entries found bad: never read again in this pack.
    bypass: HashSet<Digest>,
    /// Blobs [`Cache::planned`] made: read from the cache already, with their own checks, so
    /// [`Cache::wrap`] leaves them alone.
    planned: HashSet<Digest>,
}

/// An open cache directory, locked shared for as long as it lives.
pub struct Cache {
    dir: PathBuf,
    max: u64,
    lock: File,
    run: Mutex<Run>,
    /// Bytes kept free on the cache's filesystem beyond [`crate::sources::RESERVE`]: what the
    /// bundle still needs there when it is the output's ([`Cache::reserve_for`]).
    reserve: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({})", self.dir.display())
    }
}

fn mkdir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io("create directory", path, e))
}

fn flock(f: &File, op: libc::c_int) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor we own; it does not touch memory.
    if unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Cache {
    /// Opens (creating) the cache at `dir`, bounded by `max` bytes, and locks it shared. The
    /// directory must be a real directory owned by the user and writable by nobody else.
    pub fn open(dir: &Path, max: u64) -> Result<Arc<Cache>> {
        mkdir(dir)?;
        let meta = fs::symlink_metadata(dir).map_err(|e| Error::io("stat", dir, e))?;
        {
            use std::os::unix::fs::MetadataExt;
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            if !meta.is_dir() {
                return Err(Error::io(
                    "use as the pack cache",
                    dir,
                    io::Error::other("it is not a directory (a link is not followed)"),
                ));
            }
            if meta.uid() != me || meta.mode() & 0o022 != 0 {
                return Err(Error::io(
                    "use as the pack cache",
                    dir,
                    io::Error::other(format!(
                        "it must be owned by you (uid {me}) and writable by nobody else (owner \
                         uid {}, mode {:04o}); run: chmod 700 {}",
                        meta.uid(),
                        meta.mode() & 0o7777,
                        dir.display()
                    )),
                ));
            }
        }
        for sub in ["blobs/sha256", "keys", "tmp"] {
            mkdir(&dir.join(sub))?;
        }
        let lock_path = dir.join("lock");
        let lock = fsutil::open_nofollow(
            &lock_path,
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode_0600(),
        )?;
        fsutil::check_regular(&lock, &lock_path)?;
        flock(&lock, libc::LOCK_SH).map_err(|e| Error::io("lock", &lock_path, e))?;
        Ok(Arc::new(Cache {
            dir: dir.to_path_buf(),
            max,
            lock,
            run: Mutex::new(Run::default()),
            reserve: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// A pack writing up to `bytes` into `out`: when `out` is on the cache's filesystem, those
    /// bytes stay free there (a blob is not kept in the cache if keeping it would eat into
    /// them), so the cache never takes the room the bundle was promised.
    pub fn reserve_for(&self, out: &Path, bytes: u64) {
        use std::os::unix::fs::MetadataExt;
        let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
        let same = dev(out).is_some() && dev(out) == dev(&self.dir);
        let r = if same { bytes } else { 0 };
        self.reserve.store(r, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `size` more bytes may be written into the cache.
    fn room_for(&self, size: u64) -> bool {
        let keep = self
            .reserve
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_add(crate::sources::RESERVE);
        fsutil::free_space(&self.dir).is_ok_and(|free| free.saturating_sub(keep) >= size)
    }

    fn run(&self) -> std::sync::MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the blob `d` is kept.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    fn key_path(&self, key: &str) -> PathBuf {
        self.dir.join("keys").join(Digest::of(key.as_bytes()).hex())
    }

    /// Whether the cache holds `d` with `size` bytes (a regular file, not found bad in this
    /// pack). Its bytes are checked when it is read.
    pub fn holds(&self, d: &Digest, size: u64) -> bool {
        if self.run().bypass.contains(d) {
            return false;
        }
        fs::symlink_metadata(self.blob_path(d)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// The size of the entry `d`, if the cache holds it.
    pub fn size_of(&self, d: &Digest) -> Option<u64> {
        if self.run().bypass.contains(d) {
            return None;
        }
        fs::symlink_metadata(self.blob_path(d))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Opens the entry `d` of `size` bytes: without following links, regular, size checked on
    /// the handle, marked used. A wrong size removes it; `None` when it is not usable.
    fn open_entry(&self, d: &Digest, size: u64) -> Option<File> {
        if self.run().bypass.contains(d) {
            return None;
        }
        let path = self.blob_path(d);
        let f = fsutil::open_regular(&path).ok()?;
        if f.metadata().ok()?.len() != size {
            let _ = fs::remove_file(&path);
            return None;
        }
        let _ = f.set_modified(std::time::SystemTime::now());
        Some(f)
    }

    fn hit(&self, d: Digest, size: u64) {
        let mut r = self.run();
        r.served.insert(d);
        if !r.fetched.contains_key(&d) {
            r.hits.insert(d, size);
        }
    }

    /// Counts a blob fetched from upstream in this pack.
    pub fn fetched(&self, d: Digest, size: u64) {
        let mut r = self.run();
        r.hits.remove(&d);
        r.fetched.insert(d, size);
    }

    fn bad(&self, d: Digest) {
        let mut r = self.run();
        r.bad.push(d);
        r.bypass.insert(d);
    }

    /// A planned blob read from the entry `d` (which [`Cache::holds`]) in place of a file
    /// downloaded to the staging area (a pinned URL, an HF regular file): compressed or not as
    /// that file would have been, so the bundle is the same either way. `check` sees its bytes
    /// and may refuse them at their end (an HF regular file's git SHA-1). An entry that cannot
    /// be opened or is refused fails the pack, which [`Cache::retry_after`] then runs again.
    pub fn planned(
        self: &Arc<Self>,
        d: Digest,
        size: u64,
        what: String,
        check: Option<Arc<dyn Fn() -> Box<dyn Check> + Send + Sync>>,
    ) -> PlannedBlob {
        self.run().planned.insert(d);
        let cache = self.clone();
        let shown = format!(
            "{what} (from the pack cache, {})",
            self.blob_path(&d).display()
        );
        let err_what = shown.clone();
        PlannedBlob {
            digest: d,
            size,
            origin: Origin::Stream {
                open: Arc::new(move || {
                    let Some(f) = cache.open_entry(&d, size) else {
                        cache.bad(d);
                        return Err(Error::Other(format!(
                            "{err_what}: the cache entry is gone or has the wrong size"
                        )));
                    };
                    cache.hit(d, size);
                    Ok(match &check {
                        None => Box::new(f) as Box<dyn Read + Send>,
                        Some(c) => Box::new(Checked {
                            inner: f,
                            check: Some(c()),
                            left: size,
                            cache: cache.clone(),
                            digest: d,
                        }),
                    })
                }),
                what: shown,
            },
            compress: Some(
                crate::bundle::writer::worth_compressing(&self.blob_path(&d), size)
                    .unwrap_or(false),
            ),
        }
    }

    /// A blob streamed from upstream with a known digest: read from the cache when it holds
    /// it (falling back to upstream if the entry cannot be used), else fetched through a tee
    /// into the cache that keeps the bytes only if they hash to the digest. Other origins are
    /// returned as they are.
    pub fn wrap(self: &Arc<Self>, b: PlannedBlob) -> PlannedBlob {
        let Origin::Stream { open, what } = &b.origin else {
            return b;
        };
        if self.run().planned.contains(&b.digest) {
            return b;
        }
        let (cache, upstream, d, size) = (self.clone(), open.clone(), b.digest, b.size);
        let shown = if self.holds(&d, size) {
            format!(
                "{what} (from the pack cache, {})",
                self.blob_path(&d).display()
            )
        } else {
            what.clone()
        };
        PlannedBlob {
            origin: Origin::Stream {
                open: Arc::new(move || {
                    if let Some(f) = cache.open_entry(&d, size) {
                        cache.hit(d, size);
                        return Ok(Box::new(f) as Box<dyn Read + Send>);
                    }
                    let inner = upstream()?;
                    cache.fetched(d, size);
                    Ok(Box::new(Tee::new(&cache, inner, d, size)))
                }),
                what: shown,
            },
            ..b
        }
    }

    /// Keeps a verified file (a staged download whose digest is `d`) in the cache: hard-linked
    /// when on the same filesystem, else copied; through a temp file, synced, renamed. Best
    /// effort: a failure leaves the cache without it.
    pub fn adopt(&self, path: &Path, d: &Digest, size: u64) {
        self.fetched(*d, size);
        if self.holds(d, size) {
            return;
        }
        let _ = self.adopt_inner(path, d, size);
    }

    fn adopt_inner(&self, path: &Path, d: &Digest, size: u64) -> io::Result<()> {
        let tmp = tempfile::Builder::new()
            .prefix("adopt-")
            .tempfile_in(self.dir.join("tmp"))?;
        let tmp_path = tmp.path().to_path_buf();
        // A hard link needs the name free: replace the empty temp file by the link.
        let linked = fs::remove_file(&tmp_path).is_ok() && fs::hard_link(path, &tmp_path).is_ok();
        let file = if linked {
            // The link's bytes are the staged file's: check them once more by size.
            let f = fsutil::open_regular(&tmp_path).map_err(io::Error::other)?;
            if f.metadata()?.len() != size {
                let _ = fs::remove_file(&tmp_path);
                return Err(io::Error::other("size changed"));
            }
            f
        } else {
            if !self.room_for(size) {
                return Err(io::Error::other("no room"));
            }
            let mut src = fsutil::open_regular(path).map_err(io::Error::other)?;
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode_0600()
                .open(&tmp_path)?;
            let mut h = Hasher::new();
            let mut buf = vec![0u8; fsutil::BUF_SIZE];
            loop {
                let n = src.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                out.write_all(&buf[..n])?;
            }
            if h.len() != size || h.finish() != *d {
                let _ = fs::remove_file(&tmp_path);
                return Err(io::Error::other("changed"));
            }
            out
        };
        let r = self.commit(&file, &tmp_path, d);
        if r.is_err() {
            let _ = fs::remove_file(&tmp_path);
        }
        drop(tmp);
        r
    }

    /// A complete, verified temp file `tmp` becomes the entry `d`: mode 0600, synced, renamed,
    /// the directory synced.
    fn commit(&self, file: &File, tmp: &Path, d: &Digest) -> io::Result<()> {
        fsutil::set_mode(file, 0o600)?;
        file.sync_all()?;
        let dest = self.blob_path(d);
        fs::rename(tmp, &dest)?;
        fsutil::sync_dir(&self.dir.join("blobs/sha256")).map_err(io::Error::other)
    }

    /// The record kept under `key`, if any (strict JSON; a bad record is ignored).
    pub fn key(&self, key: &str) -> Option<KeyRecord> {
        let bytes = fsutil::read_regular(&self.key_path(key), MAX_KEY_RECORD).ok()?;
        crate::format::json::from_slice(&bytes, "pack cache key record").ok()
    }

    /// Records `rec` under `key` (best effort).
    pub fn set_key(&self, key: &str, rec: &KeyRecord) {
        if let Ok(bytes) = serde_json::to_vec(rec) {
            let _ = fsutil::write_atomic(&self.key_path(key), &bytes, 0o600);
        }
    }

    /// After a failed pack: whether it failed on a cache entry that did not check out (a
    /// mismatch of a blob read from the cache, or an entry gone or refused). That entry is
    /// removed and never read again in this pack, and its digest returned: pack again.
    pub fn retry_after(&self, e: &Error) -> Option<Digest> {
        let mut r = self.run();
        let d = match e {
            Error::DigestMismatch { expected, .. } if r.served.contains(expected) => {
                Some(*expected)
            }
            Error::SizeMismatch { digest, .. } if r.served.contains(digest) => Some(*digest),
            _ => None,
        }
        .or_else(|| r.bad.pop())?;
        r.bad.clear();
        r.hits.remove(&d);
        r.served.remove(&d);
        r.bypass.insert(d);
        drop(r);
        let _ = fs::remove_file(self.blob_path(&d));
        Some(d)
    }

    /// What this pack read from the cache and fetched from upstream.
    pub fn counts(&self) -> Counts {
        let r = self.run();
        Counts {
            hit_blobs: r.hits.len() as u64,
            hit_bytes: r.hits.values().sum(),
            fetched_blobs: r.fetched.len() as u64,
            fetched_bytes: r.fetched.values().sum(),
        }
    }

    /// Evicts least recently used entries until the cache holds at most its bound, never one
    /// of `keep` (the blobs of the pack that just completed). Skipped, without waiting, while
    /// another pack holds the cache; then also removes temp files left by killed packs and key
    /// records whose blob is gone.
    pub fn evict(&self, keep: &HashSet<Digest>) -> Result<Evicted> {
        let lock_path = self.dir.join("lock");
        if flock(&self.lock, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            return Ok(Evicted {
                held: self.held()?.iter().map(|e| e.1).sum(),
                skipped: true,
                ..Evicted::default()
            });
        }
        let r = self.evict_locked(keep);
        flock(&self.lock, libc::LOCK_SH).map_err(|e| Error::io("lock", &lock_path, e))?;
        r
    }

    /// Every entry: digest, size, last use.
    fn held(&self) -> Result<Vec<(Digest, u64, std::time::SystemTime)>> {
        let dir = self.dir.join("blobs/sha256");
        let rd = fs::read_dir(&dir).map_err(|e| Error::io("read", &dir, e))?;
        let mut v = Vec::new();
        for e in rd.flatten() {
            let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            else {
                continue;
            };
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_file() {
                v.push((d, m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)));
            }
        }
        Ok(v)
    }

    fn evict_locked(&self, keep: &HashSet<Digest>) -> Result<Evicted> {
        // No pack is running: every temp file is a leftover.
        if let Ok(rd) = fs::read_dir(self.dir.join("tmp")) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        let mut held = self.held()?;
        held.sort_by_key(|e| (e.2, e.0.hex()));
        let mut total: u64 = held.iter().map(|e| e.1).sum();
        let mut out = Evicted::default();
        for (d, size, _) in &held {
            if total <= self.max {
                break;
            }
            if keep.contains(d) {
                continue;
            }
            let p = self.blob_path(d);
            if fs::remove_file(&p).is_ok() {
                total -= size;
                out.blobs += 1;
                out.bytes += size;
            }
        }
        if out.blobs > 0 {
            let _ = fsutil::sync_dir(&self.dir.join("blobs/sha256"));
            let keys = self.dir.join("keys");
            if let Ok(rd) = fs::read_dir(&keys) {
                for e in rd.flatten() {
                    let rec = fsutil::read_regular(&e.path(), MAX_KEY_RECORD)
                        .ok()
                        .and_then(|b| {
                            crate::format::json::from_slice::<KeyRecord>(
                                &b,
                                "pack cache key record",
                            )
                            .ok()
                        });
                    if rec.is_none_or(|r| !self.blob_path(&r.digest).exists()) {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
        }
        out.held = total;
        Ok(out)
    }
}

/// `OpenOptions::mode(0o600)`, spelled once.
trait Mode600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode600 for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// A check over a cache entry's bytes beyond its SHA-256 (which the writer checks).
pub trait Check: Send {
    fn update(&mut self, data: &[u8]);
    /// At the end: `Err(why)` refuses the bytes.
    fn finish(self: Box<Self>) -> std::result::Result<(), String>;
}

/// An entry read through a [`Check`], which is finished as the last byte is read: a refusal
/// is a read error instead of that last buffer (the writer never sees the whole blob), and
/// marks the entry bad.
struct Checked {
    inner: File,
    check: Option<Box<dyn Check>>,
    /// Bytes still to come.
    left: u64,
    cache: Arc<Cache>,
    digest: Digest,
}

impl Read for Checked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.saturating_sub(n as u64);
        if let Some(c) = &mut self.check {
            c.update(&buf[..n]);
        }
        if self.left == 0 {
            if let Some(c) = self.check.take() {
                if let Err(why) = c.finish() {
                    self.cache.bad(self.digest);
                    return Err(io::Error::other(format!(
                        "the pack cache's copy does not match: {why}"
                    )));
                }
            }
        }
        Ok(n)
    }
}

/// A stream from upstream copied into a cache temp file as it is read; the copy becomes an
/// entry at the stream's end only if exactly `size` bytes hashing to `digest` passed.
struct Tee {
    inner: Box<dyn Read + Send>,
    cache: Arc<Cache>,
    tmp: Option<tempfile::NamedTempFile>,
    hasher: Hasher,
    digest: Digest,
    size: u64,
}

impl Tee {
    fn new(cache: &Arc<Cache>, inner: Box<dyn Read + Send>, digest: Digest, size: u64) -> Tee {
        let tmp = if cache.room_for(size) {
            tempfile::Builder::new()
                .prefix("fetch-")
                .tempfile_in(cache.dir.join("tmp"))
                .ok()
        } else {
            None
        };
        Tee {
            inner,
            cache: cache.clone(),
            tmp,
            hasher: Hasher::new(),
            digest,
            size,
        }
    }

    fn finish(&mut self) {
        let Some(tmp) = self.tmp.take() else { return };
        let h = std::mem::replace(&mut self.hasher, Hasher::new());
        if h.len() != self.size || h.finish() != self.digest {
            return; // dropped: the temp file goes
        }
        let path = tmp.path().to_path_buf();
        if self
            .cache
            .commit(tmp.as_file(), &path, &self.digest)
            .is_ok()
        {
            // Renamed: nothing left for the temp file's drop to remove.
            let _ = tmp.into_temp_path().keep();
        }
    }
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.finish();
            return Ok(0);
        }
        if let Some(tmp) = &mut self.tmp {
            if self.hasher.len() + n as u64 > self.size || tmp.write_all(&buf[..n]).is_err() {
                self.tmp = None;
            } else {
                self.hasher.update(&buf[..n]);
            }
        }
        Ok(n)
    }
}

/// The key of an HF regular file: its repo and git blob SHA-1 (content-addressed; the repo
/// keeps one repo's records apart from another's).
pub fn hf_key(endpoint: &str, repo: &str, oid: &str, size: u64) -> String {
    format!("hf\0{endpoint}\0{repo}\0{oid}\0{size}")
}

/// The key of a URL download.
pub fn url_key(url: &str) -> String {
    format!("url\0{url}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(data: &[u8]) -> PlannedBlob {
        let v = Arc::new(data.to_vec());
        PlannedBlob {
            digest: Digest::of(data),
            size: data.len() as u64,
            origin: Origin::Stream {
                open: Arc::new(move || {
                    Ok(Box::new(io::Cursor::new(v.to_vec())) as Box<dyn Read + Send>)
                }),
                what: "upstream".into(),
            },
            compress: None,
        }
    }

    fn read_all(b: &PlannedBlob) -> Vec<u8> {
        let mut v = Vec::new();
        b.origin.open().unwrap().read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn a_stream_is_kept_once_read_whole_and_then_served_from_the_cache() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(&t.path().join("c"), DEFAULT_MAX).unwrap();
        let data = b"hello cache".repeat(1000);
        let b = c.wrap(blob(&data));
        assert!(!c.holds(&b.digest, b.size));
        assert_eq!(read_all(&b), data);
        assert!(c.holds(&b.digest, b.size));
        assert_eq!(c.counts().fetched_blobs, 1);
        let b2 = c.wrap(blob(&data));
        assert_eq!(read_all(&b2), data);
        assert_eq!(
            c.counts().hit_blobs,
            0,
            "fetched in this run counts as fetched"
        );
        let mode = fs::metadata(c.blob_path(&b.digest)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(c.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn wrong_bytes_are_never_kept() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(&t.path().join("c"), DEFAULT_MAX).unwrap();
        let mut b = blob(b"the real bytes");
        b.digest = Digest::of(b"other bytes");
        let b = c.wrap(b);
        read_all(&b);
        assert!(!c.blob_path(&b.digest).exists());
        assert_eq!(fs::read_dir(c.dir().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_corrupt_entry_is_removed_when_the_pack_fails_on_it() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("c");
        let data = b"x".repeat(5000);
        {
            let c = Cache::open(&dir, DEFAULT_MAX).unwrap();
            read_all(&c.wrap(blob(&data)));
        }
        let c = Cache::open(&dir, DEFAULT_MAX).unwrap();
        let d = Digest::of(&data);
        let mut bad = data.clone();
        bad[10] = b'y';
        fs::write(c.blob_path(&d), &bad).unwrap();
        assert_eq!(read_all(&c.wrap(blob(&data))), bad, "read as it is");
        let e = Error::DigestMismatch {
            what: "x".into(),
            expected: d,
            actual: Digest::of(&bad),
        };
        assert_eq!(c.retry_after(&e), Some(d));
        assert!(!c.blob_path(&d).exists());
        assert!(!c.holds(&d, data.len() as u64));
        assert_eq!(c.retry_after(&e), None);
    }

    #[test]
    fn eviction_removes_the_least_recently_used_except_what_the_pack_used() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(&t.path().join("c"), 2500).unwrap();
        let blobs: Vec<PlannedBlob> = (0..3u8).map(|i| c.wrap(blob(&[i; 1000]))).collect();
        for (i, b) in blobs.iter().enumerate() {
            read_all(b);
            let f = File::options()
                .write(true)
                .open(c.blob_path(&b.digest))
                .unwrap();
            f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64))
                .unwrap();
        }
        let keep: HashSet<Digest> = [blobs[0].digest].into();
        let e = c.evict(&keep).unwrap();
        assert_eq!((e.blobs, e.bytes, e.held), (1, 1000, 2000));
        assert!(c.blob_path(&blobs[0].digest).exists(), "kept: in use");
        assert!(!c.blob_path(&blobs[1].digest).exists(), "oldest not in use");
        assert!(c.blob_path(&blobs[2].digest).exists());
    }

    #[test]
    fn eviction_waits_for_no_one() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("c");
        let a = Cache::open(&dir, 0).unwrap();
        let _b = Cache::open(&dir, 0).unwrap();
        read_all(&a.wrap(blob(b"abc")));
        let e = a.evict(&HashSet::new()).unwrap();
        assert!(e.skipped);
        assert_eq!(e.held, 3);
    }
}
