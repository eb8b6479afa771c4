//! Where bytes come from on the connected side. A source resolves into manifest artifacts plus
//! the blobs they need, each with a digest known before anything is written into a chunk
//! (local files are hashed, downloads are staged and checked against their pins).

pub mod hf;
pub mod image;
mod local;
pub mod ollama;
mod url;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::bundle::PlannedBlob;
use crate::error::{Error, Result};
use crate::format::{paths::validate_name, text, Artifact, Digest};
use crate::hf::{HfOptions, HfSpec};
use crate::oci::client::ConnectOptions;
use crate::progress::Progress;
pub use image::{ImageLocation, PlatformArgs};

/// A source as the operator named it.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A local file or directory (`file://PATH` or a plain path).
    Path {
        path: PathBuf,
        given: String,
        name: Option<String>,
    },
    /// An `http://` or `https://` URL, optionally pinned by SHA-256 and by size.
    Url {
        url: String,
        pin: Option<Digest>,
        /// The declared size: the download stops at the first byte beyond it, and a
        /// `Content-Length` that disagrees fails at once.
        size: Option<u64>,
        given: String,
        name: Option<String>,
    },
    /// A container image or OCI artifact.
    Image {
        location: ImageLocation,
        platforms: PlatformArgs,
        given: String,
        name: Option<String>,
    },
    /// An Ollama model (`ollama://[HOST/][NAMESPACE/]MODEL[:TAG]`).
    Ollama {
        model: ollama::OllamaName,
        given: String,
        name: Option<String>,
    },
    /// A Hugging Face repo snapshot (`hf://[datasets/]ORG/NAME[@REVISION]`, see
    /// [`HfSpec::parse`]).
    Hf { spec: HfSpec, name: Option<String> },
}

impl Source {
    /// Parses a command-line source: `file://PATH`, a plain path, `https://…[#sha256=HEX]`, an
    /// image (`oci://`, `oci-layout://`, `docker-archive://`) or `ollama://[HOST/][NS/]MODEL[:TAG]`.
    pub fn parse(arg: &str) -> Result<Source> {
        if let Some(rest) = arg.strip_prefix("file://") {
            return Ok(Source::Path {
                path: PathBuf::from(rest),
                given: arg.to_string(),
                name: None,
            });
        }
        if arg.starts_with("https://") || arg.starts_with("http://") {
            let (url, pin, size) = match arg.split_once('#') {
                None => (arg.to_string(), None, None),
                Some((u, frag)) => {
                    let (pin, size) = parse_url_fragment(arg, frag)?;
                    (u.to_string(), pin, size)
                }
            };
            return Ok(Source::Url {
                url,
                pin,
                size,
                given: arg.to_string(),
                name: None,
            });
        }
        let image = |location: ImageLocation| Source::Image {
            location,
            platforms: PlatformArgs::default(),
            given: arg.to_string(),
            name: None,
        };
        if let Some(rest) = arg.strip_prefix("oci://") {
            return Ok(image(ImageLocation::Registry(rest.to_string())));
        }
        if let Some(rest) = arg.strip_prefix("ollama://") {
            return Ok(Source::Ollama {
                model: ollama::OllamaName::parse(rest)?,
                given: arg.to_string(),
                name: None,
            });
        }
        if arg.starts_with("hf://") {
            return Ok(Source::Hf {
                spec: HfSpec::parse(arg)?,
                name: None,
            });
        }
        if let Some(rest) = arg.strip_prefix("oci-layout://") {
            return Ok(image(ImageLocation::Layout(rest.to_string())));
        }
        if let Some(rest) = arg.strip_prefix("docker-archive://") {
            return Ok(image(ImageLocation::Archive(rest.to_string())));
        }
        if let Some((scheme, _)) = arg.split_once("://") {
            return Err(Error::Usage(format!(
                "{arg}: unsupported source scheme {scheme}:// (airlock packs local paths, file://, http(s)://, oci://, oci-layout://, docker-archive://, ollama:// and hf:// sources)"
            )));
        }
        Ok(Source::Path {
            path: PathBuf::from(arg),
            given: arg.to_string(),
            name: None,
        })
    }

    pub fn with_name(mut self, n: Option<String>) -> Source {
        match &mut self {
            Source::Path { name, .. }
            | Source::Url { name, .. }
            | Source::Image { name, .. }
            | Source::Ollama { name, .. }
            | Source::Hf { name, .. } => *name = n,
        }
        self
    }

    /// Sets the file filters of a Hugging Face source (no effect on other sources).
    pub fn with_patterns(mut self, include: &[String], exclude: &[String]) -> Source {
        if let Source::Hf { spec, .. } = &mut self {
            *spec = spec
                .clone()
                .with_patterns(include.to_vec(), exclude.to_vec());
        }
        self
    }

    /// Sets the platform choice of an image source (no effect on other sources).
    pub fn with_platforms(mut self, p: PlatformArgs) -> Source {
        if let Source::Image { platforms, .. } = &mut self {
            *platforms = p;
        }
        self
    }

    pub fn given(&self) -> &str {
        match self {
            Source::Path { given, .. }
            | Source::Url { given, .. }
            | Source::Image { given, .. }
            | Source::Ollama { given, .. } => given,
            Source::Hf { spec, .. } => &spec.given,
        }
    }
}

/// The fragment of a URL source: `sha256=HEX`, `size=N` or both, joined by `&`, each once.
fn parse_url_fragment(arg: &str, frag: &str) -> Result<(Option<Digest>, Option<u64>)> {
    let (mut pin, mut size) = (None, None);
    for part in frag.split('&') {
        let bad = |msg: &str| Error::Usage(format!("{}: {msg}", text::escape(arg)));
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        match key {
            "sha256" if pin.is_none() => {
                pin =
                    Some(Digest::from_hex(value).map_err(|_| bad("#sha256= needs 64 hex digits"))?)
            }
            "size" if size.is_none() => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("size= needs a number of bytes"));
                }
                size = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| bad("size= is too large"))?,
                );
            }
            "sha256" | "size" => return Err(bad(&format!("{key}= is given twice"))),
            _ => {
                return Err(bad(
                    "the only URL fragment airlock understands is #sha256=HEX[&size=N]",
                ))
            }
        }
    }
    Ok((pin, size))
}

/// A file an artifact needs, before dedup.
pub(crate) struct Needed {
    pub digest: Digest,
    pub size: u64,
    pub path: PathBuf,
    /// `digest` is a [`placeholder`]: the file has not been read.
    pub pending: bool,
}

/// A digest standing for a local file not hashed yet: unpredictable (a random key, a counter),
/// so it never equals a real content digest, and unique within the process.
pub(crate) fn placeholder() -> Digest {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        if getrandom::fill(&mut k).is_err() {
            // No randomness: the time still keeps placeholders apart from real digests in
            // practice, and a collision would only fail the pack as "changed".
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            k[..16].copy_from_slice(&t.to_le_bytes());
        }
        k
    });
    let mut bytes = b"airlock placeholder digest\0".to_vec();
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    Digest::of(&bytes)
}

/// What the sources resolved to: the artifacts and the distinct blobs, in first-use order.
pub struct Resolved {
    pub artifacts: Vec<Artifact>,
    pub blobs: Vec<PlannedBlob>,
    /// Blobs whose digests are placeholders (local files the writer hashes as it copies them);
    /// empty after [`resolve`].
    pub pending: HashSet<Digest>,
}

impl Resolved {
    /// The most bytes `pack` writes for these blobs with `chunk_size`: every distinct blob
    /// stored (a compressed window is used only when smaller), a header and padding per
    /// segment, a trailer per chunk (a chunk holds at least one segment), and the manifest,
    /// `SHA256SUMS` and signatures (about a KiB per entry and segment, generously).
    pub fn bytes_to_write(&self, chunk_size: u64) -> u64 {
        use crate::format::tarframe::{room_at, BLOCK, TRAILER};
        let room = room_at(0, chunk_size).max(BLOCK);
        let window = crate::bundle::writer::WINDOW.min(room / 2).max(BLOCK);
        let (mut data, mut segments) = (0u64, 0u64);
        for b in &self.blobs {
            data = data.saturating_add(b.size);
            segments = segments.saturating_add(b.size / window + 2);
        }
        let entries: u64 = self.artifacts.iter().map(|a| a.entries.len() as u64).sum();
        let framing = segments.saturating_mul(2 * BLOCK + TRAILER);
        let documents = (64u64 << 10).saturating_add(entries.saturating_add(segments) << 10);
        data.saturating_add(framing).saturating_add(documents)
    }

    /// Hashes the pending blobs (in parallel), so that every digest is real.
    fn hash_pending(&mut self, progress: &dyn Progress) -> Result<()> {
        self.hash_pending_where(&|_| true, progress)
    }

    /// Hashes the pending blobs `which` selects (in parallel): their digests become real and
    /// they are pending no more (the writer then checks them against it); the others stay
    /// pending. A delta pack hashes the local files whose size a base's blob has, to learn
    /// whether the enclave holds them before anything is written (each read once; a file it
    /// holds is not written).
    pub fn hash_pending_where(
        &mut self,
        which: &(dyn Fn(&PlannedBlob) -> bool + Sync),
        progress: &dyn Progress,
    ) -> Result<()> {
        use rayon::prelude::*;
        let chosen = |b: &PlannedBlob| self.pending.contains(&b.digest) && which(b);
        if !self.blobs.iter().any(chosen) {
            return Ok(());
        }
        let total = self
            .blobs
            .iter()
            .filter(|b| chosen(b))
            .map(|b| b.size)
            .sum();
        progress.start("hashing files", total);
        let hashed: Vec<Result<Option<(Digest, Digest)>>> = self
            .blobs
            .par_iter()
            .map(|b| {
                if !chosen(b) {
                    return Ok(None);
                }
                let crate::bundle::Origin::File { path, .. } = &b.origin else {
                    return Ok(None);
                };
                let reader = crate::progress::ProgressReader {
                    inner: crate::fsutil::open_regular(path)?,
                    progress,
                };
                let (digest, _) = crate::fsutil::hash_reader(reader, path)?;
                Ok(Some((b.digest, digest)))
            })
            .collect();
        progress.finish();
        let mut real = std::collections::HashMap::new();
        for h in hashed {
            if let Some((placeholder, digest)) = h? {
                real.insert(placeholder, digest);
            }
        }
        for b in &mut self.blobs {
            if let Some(d) = real.get(&b.digest) {
                b.digest = *d;
            }
        }
        for e in self.artifacts.iter_mut().flat_map(|a| a.entries.iter_mut()) {
            if let Some(d) = e.blob.and_then(|b| real.get(&b)) {
                e.blob = Some(*d);
            }
        }
        let mut seen = HashSet::new();
        self.blobs.retain(|b| seen.insert(b.digest));
        self.pending.retain(|d| !real.contains_key(d));
        Ok(())
    }
}

/// Default of `--max-download`: the most a URL source without a declared size may download.
pub const DEFAULT_MAX_DOWNLOAD: u64 = 16 << 30;

/// How to reach network sources.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// Registry TLS roots, insecure hosts and credentials; the transfer limits of every download.
    pub connect: ConnectOptions,
    /// The most a URL source without a declared size may download (`--max-download`).
    pub max_download: u64,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            connect: ConnectOptions::default(),
            max_download: DEFAULT_MAX_DOWNLOAD,
        }
    }
}

/// How many bytes one more download may stage under `staging`: every staged byte is written
/// twice on the output filesystem (the staged file, then its copy in a chunk), `staged` bytes
/// already staged still need their copies, and [`url::RESERVE`] stays free.
pub(crate) fn staging_room(staging: &Path, staged: u64) -> Result<u64> {
    Ok(output_room(staging)?.saturating_sub(staged) / 2)
}

/// Bytes that may still be written on the filesystem holding `path`: its free space less
/// [`url::RESERVE`], which stays free.
pub fn output_room(path: &Path) -> Result<u64> {
    Ok(crate::fsutil::free_space(path)?.saturating_sub(url::RESERVE))
}

/// The space kept free on the output filesystem.
pub const RESERVE: u64 = url::RESERVE;

fn planned(files: Vec<Needed>, pending: &mut HashSet<Digest>) -> Vec<PlannedBlob> {
    files
        .into_iter()
        .map(|n| {
            if n.pending {
                pending.insert(n.digest);
            }
            PlannedBlob::file(n.digest, n.size, n.path)
        })
        .collect()
}

/// Resolves every source, with every digest real (local files are hashed here). Downloads go
/// under `staging`; image blobs are streamed later, when the bundle is written.
pub fn resolve(
    sources: &[Source],
    staging: &Path,
    opts: &ResolveOptions,
    progress: &dyn Progress,
) -> Result<Resolved> {
    let mut r = resolve_pending(sources, staging, opts, progress)?;
    r.hash_pending(progress)?;
    Ok(r)
}

/// [`resolve`] without reading local files: their digests are placeholders listed in
/// [`Resolved::pending`], for [`crate::bundle::pack_pending`], which learns them in its one pass.
pub fn resolve_pending(
    sources: &[Source],
    staging: &Path,
    opts: &ResolveOptions,
    progress: &dyn Progress,
) -> Result<Resolved> {
    let mut pending = HashSet::new();
    let mut artifacts = Vec::new();
    let mut needed: Vec<PlannedBlob> = Vec::new();
    let mut names = HashSet::new();
    // Bytes staged so far, whose copies into chunks are still to be written.
    let mut staged = 0u64;
    for (i, src) in sources.iter().enumerate() {
        let (artifact, mut files) = match src {
            Source::Path { path, given, name } => {
                let (a, f) = local::resolve(path, given, name.as_deref(), progress)?;
                (a, planned(f, &mut pending))
            }
            Source::Url {
                url,
                pin,
                size,
                given,
                name,
            } => {
                let (a, f) = url::resolve(
                    &url::Download {
                        url,
                        pin: *pin,
                        size: *size,
                        given,
                        name: name.as_deref(),
                    },
                    &staging.join(format!("{i}")),
                    opts,
                    staged,
                    progress,
                )?;
                staged = f.iter().fold(staged, |t, n| t.saturating_add(n.size));
                (a, planned(f, &mut pending))
            }
            Source::Image {
                location,
                platforms,
                given,
                name,
            } => image::resolve(location, platforms, given, name.as_deref(), &opts.connect)?,
            Source::Ollama { model, given, name } => {
                ollama::resolve(model, given, name.as_deref(), &opts.connect)?
            }
            Source::Hf { spec, name } => {
                // Endpoint and token as huggingface_hub reads them (HF_ENDPOINT, HF_TOKEN, …).
                let mut hf_opts = HfOptions::from_env()?;
                hf_opts.ca_certs = opts.connect.ca_certs.clone();
                hf_opts.transfer = opts.connect.transfer;
                let (a, b) = hf::resolve(
                    spec,
                    &hf_opts,
                    name.as_deref(),
                    &staging.join(format!("{i}")),
                    staged,
                    progress,
                )?;
                staged = b
                    .iter()
                    .filter(|b| matches!(b.origin, crate::bundle::Origin::File { .. }))
                    .fold(staged, |t, b| t.saturating_add(b.size));
                (a, b)
            }
        };
        validate_name(&artifact.name).map_err(|e| {
            Error::Usage(format!(
                "{}: artifact name {:?} is not usable ({e}); set a name",
                src.given(),
                artifact.name
            ))
        })?;
        if !names.insert(crate::format::paths::name_key(&artifact.name)) {
            return Err(Error::Usage(format!(
                "two sources would both be named {:?} (names are compared without case); give one a name in the spec file",
                artifact.name
            )));
        }
        artifacts.push(artifact);
        needed.append(&mut files);
    }
    let mut seen: HashSet<Digest> = HashSet::new();
    let blobs = needed
        .into_iter()
        .filter(|n| seen.insert(n.digest))
        .collect();
    Ok(Resolved {
        artifacts,
        blobs,
        pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_source_forms() {
        assert!(matches!(Source::parse("./x").unwrap(), Source::Path { .. }));
        assert!(
            matches!(Source::parse("file:///tmp/x").unwrap(), Source::Path { path, .. } if path == Path::new("/tmp/x"))
        );
        let hex = "ab".repeat(32);
        match Source::parse(&format!("https://h/x.bin#sha256={hex}")).unwrap() {
            Source::Url { url, pin, size, .. } => {
                assert_eq!(url, "https://h/x.bin");
                assert_eq!(pin.unwrap().hex(), hex);
                assert_eq!(size, None);
            }
            other => panic!("{other:?}"),
        }
        match Source::parse(&format!("https://h/x.bin#sha256={hex}&size=17")).unwrap() {
            Source::Url { pin, size, .. } => {
                assert_eq!(pin.unwrap().hex(), hex);
                assert_eq!(size, Some(17));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Source::parse("https://h/x#size=5").unwrap(),
            Source::Url {
                pin: None,
                size: Some(5),
                ..
            }
        ));
        for bad in [
            "size=",
            "size=-1",
            "size=1k",
            "size=1&size=2",
            "size=99999999999999999999",
        ] {
            assert!(
                Source::parse(&format!("https://h/x#{bad}")).is_err(),
                "{bad}"
            );
        }
        assert!(Source::parse("https://h/x#md5=00").is_err());
        assert!(Source::parse("https://h/x#sha256=00").is_err());
        assert!(Source::parse("ftp://h/x").is_err());
        assert!(
            matches!(Source::parse("ollama://llama3.2").unwrap(), Source::Ollama { model, .. } if model.reference() == "registry.ollama.ai/library/llama3.2:latest")
        );
        assert!(Source::parse("ollama://a/b/c/d").is_err());
    }
}
