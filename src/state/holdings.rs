//! What the enclave holds, as airlock put it there: every bundle accepted (per channel, not only
//! the latest sequence) and, per blob digest, the store locations airlock imported it to
//! (`<state>/holdings.json`, see [`HoldingsFile`]).
//!
//! A delta import finds the blobs a bundle does not carry here instead of re-hashing whole
//! stores; the files and models-dir targets tell a file airlock wrote (and may update) from one
//! changed locally since; an enclave inventory lists what is held. A location is a claim, not a
//! proof: whoever uses one re-checks the bytes against the digest while reading them, and a
//! location whose bytes no longer match is treated as absent (and named).
//!
//! The file is written like `state.json`: under the state directory's lock (only a locked
//! [`super::State`] records), replaced atomically, read strictly (duplicate keys refused,
//! unknown fields refused, bounded), updated only after an import completed.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::file::validate_bundle_id;
use crate::error::{Error, Result};
use crate::format::{json, validate_channel, Digest};
use crate::fsutil;

/// The holdings file's name inside the state directory.
pub const HOLDINGS_FILE: &str = "holdings.json";
/// `format` of the holdings file.
pub const HOLDINGS_FORMAT: &str = "airlock-holdings";
/// The holdings file version this code writes and reads.
pub const HOLDINGS_VERSION: u32 = 1;
/// Largest holdings file read (512 MiB: a few million locations).
pub const MAX_HOLDINGS_BYTES: u64 = 512 << 20;
/// Most locations kept; past it the locations recorded by the oldest bundles are forgotten
/// first (they are hints: a forgotten blob is found again by scanning, or carried again).
pub const MAX_LOCATIONS: usize = 4_000_000;
/// Most accepted bundles remembered over all channels; the oldest are forgotten first.
pub const MAX_BUNDLES: usize = 100_000;

/// The kind of store a location is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// A plain directory (`--files`): `root` the destination, `path` relative to it.
    Files,
    /// A models directory (`--models-dir`): `root` the directory, `path` relative to it.
    ModelsDir,
    /// The Hugging Face cache (`--hf-cache`): `root` the cache, `path` relative to it.
    HfCache,
    /// The Ollama store (`--ollama-models`): `root` the models dir, `path` relative to it.
    Ollama,
    /// An OCI layout (`--oci-layout`): `root` the layout, `path` relative to it.
    OciLayout,
    /// A registry (`--registry`): `root` the registry (host[:port]), `path` the repository.
    Registry,
}

impl StoreKind {
    /// Whether `root`/`path` name a local file.
    pub fn is_local(self) -> bool {
        !matches!(self, StoreKind::Registry)
    }
}

/// One place a blob was imported to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub store: StoreKind,
    /// The store's root: an absolute path, or a registry's host[:port].
    pub root: String,
    /// Relative to `root` (never absolute, no `..`), or a registry repository.
    pub path: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// The bundle whose import put it there.
    pub bundle_id: String,
}

impl Location {
    /// The file, for a local store.
    pub fn local_path(&self) -> Option<PathBuf> {
        self.store
            .is_local()
            .then(|| Path::new(&self.root).join(&self.path))
    }

    fn same_place(&self, o: &Location) -> bool {
        self.store == o.store && self.root == o.root && self.path == o.path
    }
}

/// One accepted bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldBundle {
    pub channel: String,
    pub sequence: u64,
    pub bundle_id: String,
    pub manifest_digest: Digest,
    /// When the import completed, RFC 3339 UTC.
    pub time: String,
}

/// The holdings file (`holdings.json`). Strict: unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldingsFile {
    /// Always `"airlock-holdings"`.
    pub format: String,
    /// [`HOLDINGS_VERSION`].
    pub version: u32,
    /// Every bundle accepted, oldest first.
    pub bundles: Vec<HeldBundle>,
    /// Per blob digest, where airlock imported it, oldest first.
    pub blobs: BTreeMap<Digest, Vec<Location>>,
}

impl Default for HoldingsFile {
    fn default() -> Self {
        HoldingsFile {
            format: HOLDINGS_FORMAT.into(),
            version: HOLDINGS_VERSION,
            bundles: Vec::new(),
            blobs: BTreeMap::new(),
        }
    }
}

impl HoldingsFile {
    /// Parses and validates holdings file bytes.
    pub fn parse(bytes: &[u8]) -> std::result::Result<HoldingsFile, String> {
        if bytes.len() as u64 > MAX_HOLDINGS_BYTES {
            return Err(format!("larger than {MAX_HOLDINGS_BYTES} bytes"));
        }
        #[derive(Deserialize)]
        struct Probe {
            format: Option<String>,
            version: Option<u32>,
        }
        let probe: Probe =
            json::from_slice(bytes, HOLDINGS_FILE).map_err(|e| e.detail().to_string())?;
        if probe.format.as_deref() != Some(HOLDINGS_FORMAT) {
            return Err(format!(
                "not an airlock holdings file (format {:?})",
                probe.format
            ));
        }
        if probe.version != Some(HOLDINGS_VERSION) {
            return Err(format!(
                "holdings file version {:?}, this airlock reads version {HOLDINGS_VERSION}",
                probe.version
            ));
        }
        let h: HoldingsFile =
            json::from_slice(bytes, HOLDINGS_FILE).map_err(|e| e.detail().to_string())?;
        h.validate()?;
        Ok(h)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.bundles.len() > MAX_BUNDLES {
            return Err(format!("more than {MAX_BUNDLES} bundles"));
        }
        for b in &self.bundles {
            validate_channel(&b.channel)?;
            validate_bundle_id(&b.bundle_id)?;
            humantime::parse_rfc3339(&b.time)
                .map_err(|e| format!("bundle {}: time {:?}: {e}", b.bundle_id, b.time))?;
        }
        let mut n = 0usize;
        for (d, locs) in &self.blobs {
            // No bound per blob (the same bytes — an empty file, a shared config — may be in
            // any number of places, and each place's record tells airlock's file from a local
            // edit); the total is bounded below.
            if locs.is_empty() {
                return Err(format!("blob {d}: no locations"));
            }
            for l in locs {
                validate_location(l).map_err(|e| format!("blob {d}: {e}"))?;
            }
            n += locs.len();
        }
        if n > MAX_LOCATIONS {
            return Err(format!("more than {MAX_LOCATIONS} locations"));
        }
        Ok(())
    }

    /// Whether the bundle (id and manifest digest) was accepted.
    pub fn accepted(&self, bundle_id: &str, manifest_digest: &Digest) -> Option<&HeldBundle> {
        self.bundles
            .iter()
            .rev()
            .find(|b| b.bundle_id == bundle_id && b.manifest_digest == *manifest_digest)
    }

    /// Where a blob was imported to, oldest first (empty if nowhere).
    pub fn locations(&self, digest: &Digest) -> &[Location] {
        self.blobs.get(digest).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The blob recorded at a place, if any. A scan: for many lookups use [`HoldingsFile::places`].
    pub fn at(&self, store: StoreKind, root: &str, path: &str) -> Option<(&Digest, &Location)> {
        self.blobs.iter().find_map(|(d, locs)| {
            locs.iter()
                .find(|l| l.store == store && l.root == root && l.path == path)
                .map(|l| (d, l))
        })
    }

    /// Every place recorded under one store root, by path.
    pub fn places(&self, store: StoreKind, root: &str) -> HashMap<&str, (&Digest, &Location)> {
        let mut m = HashMap::new();
        for (d, locs) in &self.blobs {
            for l in locs.iter().filter(|l| l.store == store && l.root == root) {
                m.insert(l.path.as_str(), (d, l));
            }
        }
        m
    }

    /// Records one accepted bundle and the locations its import wrote (or found its blobs at).
    /// A place recorded for another digest before is now this one's (the file was replaced);
    /// the same place for the same digest is recorded once (the newest bundle's).
    pub fn record(&mut self, bundle: HeldBundle, locations: Vec<(Digest, Location)>) {
        if !self
            .bundles
            .iter()
            .any(|b| b.bundle_id == bundle.bundle_id && b.manifest_digest == bundle.manifest_digest)
        {
            self.bundles.push(bundle);
            let excess = self.bundles.len().saturating_sub(MAX_BUNDLES);
            self.bundles.drain(..excess);
        }
        // A place now holding another digest than recorded: forget the old one there.
        let new: HashMap<(StoreKind, &str, &str), &Digest> = locations
            .iter()
            .map(|(d, l)| ((l.store, l.root.as_str(), l.path.as_str()), d))
            .collect();
        self.blobs.retain(|d, locs| {
            locs.retain(|o| {
                new.get(&(o.store, o.root.as_str(), o.path.as_str()))
                    .is_none_or(|nd| *nd == d)
            });
            !locs.is_empty()
        });
        for (d, l) in locations {
            self.add(d, l);
        }
        self.evict();
    }

    /// Records one more place of a blob (the same place recorded once: the newest).
    pub fn add(&mut self, digest: Digest, l: Location) {
        let locs = self.blobs.entry(digest).or_default();
        locs.retain(|o| !o.same_place(&l));
        locs.push(l);
    }

    /// Forgets whatever is recorded at a place (a file removed or replaced by airlock).
    pub fn forget(&mut self, store: StoreKind, root: &str, path: &str) {
        self.blobs.retain(|_, locs| {
            locs.retain(|o| !(o.store == store && o.root == root && o.path == path));
            !locs.is_empty()
        });
    }

    /// Past [`MAX_LOCATIONS`], forgets the locations recorded by the oldest bundles first.
    fn evict(&mut self) {
        let mut n: usize = self.blobs.values().map(Vec::len).sum();
        if n <= MAX_LOCATIONS {
            return;
        }
        let order: HashMap<&str, usize> = self
            .bundles
            .iter()
            .enumerate()
            .map(|(i, b)| (b.bundle_id.as_str(), i))
            .collect();
        let mut all: Vec<(usize, Digest, usize)> = Vec::with_capacity(n);
        for (d, locs) in &self.blobs {
            for (i, l) in locs.iter().enumerate() {
                let age = order.get(l.bundle_id.as_str()).copied().unwrap_or(0);
                all.push((age, *d, i));
            }
        }
        all.sort();
        let mut drop: BTreeMap<Digest, Vec<usize>> = BTreeMap::new();
        for (_, d, i) in all {
            if n <= MAX_LOCATIONS {
                break;
            }
            drop.entry(d).or_default().push(i);
            n -= 1;
        }
        for (d, idx) in drop {
            if let Some(locs) = self.blobs.get_mut(&d) {
                let mut i = 0;
                locs.retain(|_| {
                    let keep = !idx.contains(&i);
                    i += 1;
                    keep
                });
                if locs.is_empty() {
                    self.blobs.remove(&d);
                }
            }
        }
    }
}

fn validate_location(l: &Location) -> std::result::Result<(), String> {
    validate_bundle_id(&l.bundle_id)?;
    if l.root.is_empty() || l.path.is_empty() {
        return Err(format!("location {:?} {:?}: empty", l.root, l.path));
    }
    if l.store.is_local() {
        if !l.root.starts_with('/') {
            return Err(format!("location root {:?} is not absolute", l.root));
        }
        let rel = Path::new(&l.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "location path {:?} is not a plain relative path",
                l.path
            ));
        }
    }
    Ok(())
}

/// Loads `<dir>/holdings.json` (absent: nothing held). Never through a symbolic link.
pub(super) fn load(dir: &Path) -> Result<HoldingsFile> {
    let path = dir.join(HOLDINGS_FILE);
    let bytes = match fsutil::read_regular(&path, MAX_HOLDINGS_BYTES) {
        Ok(b) => b,
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(HoldingsFile::default())
        }
        Err(e) => return Err(e),
    };
    HoldingsFile::parse(&bytes)
        .map_err(|e| Error::Other(format!("holdings file {} is damaged: {e}", path.display())))
}

/// Replaces `<dir>/holdings.json` atomically.
pub(super) fn store(dir: &Path, h: &HoldingsFile) -> Result<()> {
    let mut bytes =
        serde_json::to_vec(h).map_err(|e| Error::Other(format!("serialise holdings: {e}")))?;
    bytes.push(b'\n');
    fsutil::write_atomic(&dir.join(HOLDINGS_FILE), &bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }
    fn loc(path: &str, bundle: char) -> Location {
        Location {
            store: StoreKind::Files,
            root: "/srv/models".into(),
            path: path.into(),
            size: 1,
            bundle_id: std::iter::repeat_n(bundle, 32).collect(),
        }
    }
    fn bundle(id: char, seq: u64) -> HeldBundle {
        HeldBundle {
            channel: "nightly".into(),
            sequence: seq,
            bundle_id: std::iter::repeat_n(id, 32).collect(),
            manifest_digest: d(seq as u8),
            time: "2026-12-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_replaced_file_belongs_to_its_new_digest_only() {
        let mut h = HoldingsFile::default();
        h.record(bundle('a', 1), vec![(d(1), loc("x.yaml", 'a'))]);
        h.record(bundle('b', 2), vec![(d(2), loc("x.yaml", 'b'))]);
        assert!(h.locations(&d(1)).is_empty());
        assert_eq!(h.locations(&d(2)).len(), 1);
        assert_eq!(
            h.at(StoreKind::Files, "/srv/models", "x.yaml").unwrap().0,
            &d(2)
        );
        assert!(h.accepted(&bundle('a', 1).bundle_id, &d(1)).is_some());
        // The same place and digest again: recorded once, the newest bundle's.
        h.record(bundle('c', 3), vec![(d(2), loc("x.yaml", 'c'))]);
        assert_eq!(h.locations(&d(2)).len(), 1);
        assert!(h.locations(&d(2))[0].bundle_id.starts_with('c'));
        h.forget(StoreKind::Files, "/srv/models", "x.yaml");
        assert!(h.blobs.is_empty());
    }

    #[test]
    fn round_trips_strictly() {
        let mut h = HoldingsFile::default();
        h.record(bundle('a', 1), vec![(d(1), loc("dir/x.bin", 'a'))]);
        let bytes = serde_json::to_vec(&h).unwrap();
        assert_eq!(HoldingsFile::parse(&bytes).unwrap(), h);
        let text = String::from_utf8(bytes).unwrap();
        let dup = text.replacen("\"version\":1", "\"version\":1,\"version\":1", 1);
        assert!(HoldingsFile::parse(dup.as_bytes()).is_err());
        let escape = text.replace("dir/x.bin", "../x.bin");
        assert!(HoldingsFile::parse(escape.as_bytes())
            .unwrap_err()
            .contains("not a plain relative path"));
        let relative = text.replace("/srv/models", "srv");
        assert!(HoldingsFile::parse(relative.as_bytes()).is_err());
    }
}
