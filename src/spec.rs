//! The pack spec file (TOML): the form CI uses to describe a bundle. Its JSON schema,
//! `schemas/pack-spec.schema.json`, is generated from these types.
//!
//! ```toml
//! channel = "nightly"
//! sequence = 42
//! expires = "30d"
//! chunk_size = "2GiB"
//! volume_size = "bd25"     # spread over volumes: a size or a medium (overridden by `--volume-size`)
//! parity = 1               # parity volumes (needs volume_size; overridden by `--parity`)
//!
//! max_download = "16GiB"   # URLs without a declared size (overridden by `--max-download`)
//!
//! [[files]]
//! path = "patches/fix-1234.bin"   # relative to this file's directory, and inside it
//!
//! [[urls]]
//! url = "https://example.com/tokenizer.json"
//! sha256 = "…64 hex…"
//! size = 2113710                  # bytes; the download stops at the first byte beyond
//! name = "tokenizer.json"
//!
//! [[images]]
//! ref = "oci://docker.io/vllm/vllm-openai:v0.6.4"   # or oci-layout://…, docker-archive://…
//! platforms = ["linux/amd64"]                       # default: all platforms
//!
//! [[models]]
//! ref = "hf://Qwen/Qwen2.5-VL-7B-Instruct@main"      # or hf://datasets/…, ollama://llama3.2:1b
//! include = ["*.safetensors", "*.json"]             # hf:// only; default: every file
//! ```

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::Digest;
use crate::sources::Source;

/// A pack spec file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PackSpec {
    /// Release channel (overridden by `--channel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Sequence number (overridden by `--sequence`); default: the creation time in Unix
    /// seconds, above the last this machine used for the channel and above every base's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// Make a delta bundle against these previous bundles of the channel (directories or
    /// `manifest.json` files, relative to this file's directory; replaced by `--base`): blobs
    /// they hold are listed as external, not carried. Checked against `--trust`/`--policy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<String>,
    /// How long the bundle stays valid, e.g. `30d`, `12h`, or `never` (overridden by `--expires`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Largest chunk file, e.g. `700MiB`, `4GiB`, `25GB` (overridden by `--chunk-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<String>,
    /// Spread the bundle over volumes of at most this size each (`OUT/vol-001/`, …): a size used
    /// exactly, e.g. `64GB`, `4GiB`, or a medium, `cd700`, `dvd`, `dvd-dl`, `bd25`, `bd50`,
    /// `bd100` (its exact capacity less 1 % for the filesystem) (overridden by `--volume-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<String>,
    /// Parity volumes to add (Reed–Solomon): any that many lost or damaged data volumes can be
    /// rebuilt; needs `volume_size` (overridden by `--parity`; default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parity: Option<u32>,
    /// Most a URL download without a declared `size` may fetch, e.g. `500MiB` (overridden by
    /// `--max-download`; default 16GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_download: Option<String>,
    /// Abort a download slower than this many bytes per second over `min_speed_time`, e.g.
    /// `1KiB`; `0` turns the check off (overridden by `--min-speed`; default 1KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_speed: Option<String>,
    /// The period of `min_speed`, e.g. `60s`, `2m` (overridden by `--min-speed-time`; default
    /// 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_speed_time: Option<String>,
    /// Allow `[[files]]` paths, `oci-layout://` and `docker-archive://` refs that are absolute
    /// or leave this file's directory with `..` (default: refused).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_paths_outside: bool,
    /// Local files and directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSource>,
    /// Downloads over http(s).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<UrlSource>,
    /// Container images and OCI artifacts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageSource>,
    /// Models: Hugging Face repositories and Ollama models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelSource>,
}

/// A model: a Hugging Face repository snapshot or an Ollama model.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// `hf://ORG/NAME[@REVISION]`, `hf://datasets/ORG/NAME[@REVISION]` or
    /// `ollama://[HOST/][NAMESPACE/]MODEL[:TAG]`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Hugging Face only: glob patterns of the files to carry (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Hugging Face only: glob patterns of files to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Artifact name (default: from the reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A container image or OCI artifact.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageSource {
    /// `oci://[HOST/]REPO[:TAG][@sha256:HEX]` (a bare reference means `oci://`),
    /// `oci-layout://PATH[:TAG]` (relative to this file's directory) or
    /// `docker-archive://FILE[:REF]`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Platforms to carry from a multi-platform image (`linux/amd64`, `linux/arm64/v8`);
    /// empty or absent: all of them, the index byte for byte.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Carry every platform (the default; may not be combined with `platforms`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_platforms: bool,
    /// Artifact name (default: from the reference, e.g. `docker.io_library_nginx_1.27`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A local file or directory.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// Path to the file or directory, relative to the spec file's directory and inside it (no
    /// absolute path, no `..` leaving it) unless `allow_paths_outside = true`.
    pub path: String,
    /// Artifact name (default: the file or directory name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A file downloaded over http(s).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UrlSource {
    /// `https://` or `http://` URL.
    pub url: String,
    /// Expected SHA-256 (64 hex digits); the pack fails if the download differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Expected size in bytes: the download stops at the first byte beyond it, and fails at
    /// once if the server's `Content-Length` differs. Without it, `max_download` applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Artifact name (default: the last path segment of the URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl PackSpec {
    /// Reads and parses a spec file.
    pub fn load(path: &Path) -> Result<PackSpec> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("read spec file", path, e))?;
        toml::from_str(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
    }

    /// A local path of the spec must stay in the spec file's directory: not absolute, and no
    /// `..` that climbs above it (`a/../b` is fine), unless `allow_paths_outside`.
    fn check_inside(&self, given: &str, p: &Path) -> Result<()> {
        if self.allow_paths_outside {
            return Ok(());
        }
        let why = if p.is_absolute() || p.has_root() {
            Some("is absolute")
        } else {
            let mut depth = 0i64;
            let mut out = false;
            for c in p.components() {
                match c {
                    std::path::Component::ParentDir => depth -= 1,
                    std::path::Component::Normal(_) => depth += 1,
                    _ => {}
                }
                out |= depth < 0;
            }
            out.then_some("leaves the spec file's directory with '..'")
        };
        match why {
            Some(why) => Err(Error::Usage(format!(
                "{}: path {why}; spec paths are relative to the spec file's directory and stay \
                 inside it (set allow_paths_outside = true in the spec to allow this)",
                crate::format::text::escape(given)
            ))),
            None => Ok(()),
        }
    }

    /// The sources the spec lists; relative paths are resolved against `base`.
    pub fn sources(&self, base: &Path) -> Result<Vec<Source>> {
        let mut out = Vec::new();
        for f in &self.files {
            let p = Path::new(f.path.strip_prefix("file://").unwrap_or(&f.path));
            self.check_inside(&f.path, p)?;
            let path = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            };
            out.push(Source::Path {
                path,
                given: f.path.clone(),
                name: f.name.clone(),
            });
        }
        for u in &self.urls {
            if u.url.contains('#') {
                return Err(Error::Usage(format!(
                    "{}: in a spec file, pin with sha256 = \"…\" rather than #sha256=",
                    u.url
                )));
            }
            let src = Source::parse(&u.url)?;
            let Source::Url { url, given, .. } = src else {
                return Err(Error::Usage(format!(
                    "{}: not an http:// or https:// URL",
                    u.url
                )));
            };
            let pin =
                match &u.sha256 {
                    None => None,
                    Some(h) => Some(Digest::from_hex(h).map_err(|_| {
                        Error::Usage(format!("{}: sha256 needs 64 hex digits", u.url))
                    })?),
                };
            out.push(Source::Url {
                url,
                pin,
                size: u.size,
                given,
                name: u.name.clone(),
            });
        }
        for i in &self.images {
            let given = if i.reference.contains("://") {
                i.reference.clone()
            } else {
                format!("oci://{}", i.reference)
            };
            for scheme in ["oci-layout://", "docker-archive://"] {
                if let Some(rest) = given.strip_prefix(scheme) {
                    // The path, without a :TAG or :REF (which holds no '/').
                    let path = match rest.rsplit_once(':') {
                        Some((p, r)) if !r.contains('/') => p,
                        _ => rest,
                    };
                    self.check_inside(&i.reference, Path::new(path))?;
                }
            }
            let rel = |scheme: &str| -> Option<String> {
                let rest = given.strip_prefix(scheme)?;
                (!Path::new(rest).is_absolute())
                    .then(|| format!("{scheme}{}", base.join(rest).display()))
            };
            let resolved = rel("oci-layout://")
                .or_else(|| rel("docker-archive://"))
                .unwrap_or_else(|| given.clone());
            let src = Source::parse(&resolved)?;
            if !matches!(src, Source::Image { .. }) {
                return Err(Error::Usage(format!(
                    "{}: [[images]] ref must be oci://, oci-layout:// or docker-archive://",
                    i.reference
                )));
            }
            out.push(
                src.with_name(i.name.clone())
                    .with_platforms(crate::sources::PlatformArgs {
                        platforms: i.platforms.clone(),
                        all: i.all_platforms,
                    }),
            );
        }
        for m in &self.models {
            let src = Source::parse(&m.reference)?;
            let src = match src {
                Source::Hf { .. } => src.with_patterns(&m.include, &m.exclude),
                Source::Ollama { .. } if m.include.is_empty() && m.exclude.is_empty() => src,
                Source::Ollama { .. } => {
                    return Err(Error::Usage(format!(
                        "{}: include/exclude apply to hf:// models only",
                        m.reference
                    )))
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "{}: [[models]] ref must be hf:// or ollama://",
                        m.reference
                    )))
                }
            };
            out.push(src.with_name(m.name.clone()));
        }
        Ok(out)
    }
}
