//! The Ollama store target (`--ollama-models DIR`, default `$OLLAMA_MODELS`, else
//! `~/.ollama/models`): every `ollama-model` artifact of a verified bundle written into the
//! store exactly as `ollama pull` leaves it (ollama's `manifest/paths.go`, `server/images.go`):
//!
//! ```text
//! DIR/blobs/sha256-<hex>                          config and layers, 0644
//! DIR/manifests/HOST/NAMESPACE/MODEL/TAG          the registry's manifest, byte for byte, 0644
//! ```
//!
//! Directories are created 0755. A host with a port (`localhost:5000`) keeps its `:` in the
//! directory name, as ollama does on Linux (such a store does not copy to Windows).
//!
//! [`plan`] only reads: a blob file that exists with the right content is kept, one with other
//! content is a conflict that stops the import before anything is written; a tag's manifest
//! that exists with other bytes is replaced (as `ollama pull` replaces it when the tag moved),
//! one with the same bytes is kept, so re-importing writes nothing. The commit installs all
//! blobs first (from the staging area, renamed without replacing), then, once every target's
//! content is durable, each manifest (its temp file in the staging area, never under
//! `manifests/`, where ollama would list a stray file as a bad model name), so ollama never
//! sees a manifest whose blobs are missing. A failure anywhere in the import removes the blobs
//! and manifests it wrote and restores replaced manifests: the store is left as it was.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::writes::{self, Action, Existing, Planner, Writes};
use super::{Local, LocalPlan, Target};
use crate::error::{Error, Result};
use crate::format::json;
use crate::format::text::escape;
use crate::format::{Artifact, ArtifactKind, Digest};
use crate::oci::image::{check_manifest, BlobSource, MAX_MANIFEST};
use crate::oci::model::Descriptor;
use crate::oci::ollama::OllamaName;
use crate::output;
use crate::stage::{Admitted, Demand, Journal, Staging};

/// The store directory ollama uses: `OLLAMA_MODELS` if set and not empty, else
/// `HOME/.ollama/models` (ollama's `envconfig.Models`). `var` reads the environment
/// (`|k| std::env::var_os(k)`). Note that the Linux systemd service of ollama runs as user
/// `ollama` with `/usr/share/ollama/.ollama/models`.
pub fn default_dir(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    if let Some(d) = var("OLLAMA_MODELS").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    match var("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".ollama").join("models")),
        None => Err(Error::Usage(
            "neither OLLAMA_MODELS nor HOME is set: give --ollama-models DIR".into(),
        )),
    }
}

/// A config or layer descriptor of an Ollama manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: u32,
    config: Layer,
    #[serde(default)]
    layers: Vec<Layer>,
}

/// An Ollama model as a bundle carries it.
#[derive(Debug, Clone)]
pub struct OllamaModel {
    pub name: OllamaName,
    /// The manifest's exact bytes.
    pub manifest: Vec<u8>,
    pub digest: Digest,
    pub config: Layer,
    pub layers: Vec<Layer>,
}

/// Reads an `ollama-model` artifact's manifest from the bundle (checked against `image.digest`
/// and `image.size`) and checks that the bundle holds its config and every layer.
pub fn read_model(src: &dyn BlobSource, a: &Artifact) -> Result<OllamaModel> {
    let info = a
        .image
        .as_ref()
        .ok_or_else(|| Error::Other(format!("artifact {} carries no image info", a.name)))?;
    let name = OllamaName::parse_reference(&info.reference)?;
    let top = Descriptor {
        media_type: info.media_type.clone(),
        digest: info.digest,
        size: info.size,
        platform: None,
        artifact_type: None,
        annotations: Default::default(),
    };
    let bytes = src.read_small(&info.digest)?;
    check_manifest(&bytes, &top, "bundle")?;
    let raw: RawManifest = json::from_slice(&bytes, "manifest").map_err(|e| {
        Error::Corrupt(format!(
            "artifact {}: manifest {} is not an Ollama manifest: {}",
            escape(&a.name),
            info.digest,
            e.detail()
        ))
    })?;
    if raw.schema_version != 2 {
        return Err(Error::Corrupt(format!(
            "artifact {}: manifest {} has schemaVersion {}, not 2",
            a.name, info.digest, raw.schema_version
        )));
    }
    for l in std::iter::once(&raw.config).chain(&raw.layers) {
        match src.size(&l.digest) {
            Some(s) if s == l.size => {}
            _ => {
                return Err(Error::Corrupt(format!(
                    "artifact {} needs blob {} ({}, {} bytes), which the bundle does not hold",
                    a.name, l.digest, l.media_type, l.size
                )))
            }
        }
    }
    Ok(OllamaModel {
        name,
        manifest: bytes,
        digest: info.digest,
        config: raw.config,
        layers: raw.layers,
    })
}

/// One model (tag) of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStep {
    pub artifact: String,
    /// `HOST/NAMESPACE/MODEL:TAG`.
    pub name: String,
    /// The manifest's digest (ollama's model ID is its first 12 hex digits).
    pub digest: Digest,
    pub manifest: PathBuf,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Digest>,
}

/// What an import into an Ollama store will do.
#[derive(Debug, Clone, Serialize)]
pub struct OllamaPlan {
    pub dest: PathBuf,
    pub models: Vec<ModelStep>,
    #[serde(flatten)]
    pub writes: Writes,
}

impl OllamaPlan {
    pub fn is_noop(&self) -> bool {
        self.writes.is_noop()
    }
}

/// Works out every step for the `ollama-model` artifacts `include` accepts, reading (never
/// writing) `dest`; fails on the first conflict.
pub fn plan(
    bundle: &Admitted,
    dest: &Path,
    include: &dyn Fn(&Artifact) -> bool,
) -> Result<OllamaPlan> {
    let models: Vec<(String, OllamaModel)> = bundle
        .manifest()
        .artifacts
        .iter()
        .filter(|a| a.kind == ArtifactKind::OllamaModel && include(a))
        .map(|a| Ok((a.name.clone(), read_model(bundle, a)?)))
        .collect::<Result<_>>()?;
    plan_models(dest, &models)
}

/// [`plan`] for models already read with [`read_model`] (from any [`BlobSource`]), each with
/// its artifact name.
pub fn plan_models(dest: &Path, models: &[(String, OllamaModel)]) -> Result<OllamaPlan> {
    let mut p = Planner::new(dest)?;
    p.dir("blobs")?;
    p.dir("manifests")?;
    // Blobs first, for every model; then the manifests.
    for (artifact, m) in models {
        for l in std::iter::once(&m.config).chain(&m.layers) {
            p.file(
                &format!("blobs/sha256-{}", l.digest.hex()),
                artifact,
                l.digest,
                l.size,
                None,
                0o644,
                Existing::Conflict,
            )?;
        }
    }
    let mut steps = Vec::new();
    for (artifact, m) in models {
        let rel = format!("manifests/{}", m.name.manifest_rel_path());
        let bytes = Arc::new(m.manifest.clone());
        p.file(
            &rel,
            artifact,
            m.digest,
            bytes.len() as u64,
            Some(bytes),
            0o644,
            Existing::Replace(MAX_MANIFEST),
        )?;
        let path = crate::fsutil::safe_join(p.root(), &rel)?;
        steps.push((artifact.clone(), m.name.reference(), m.digest, path));
    }
    let writes = p.finish();
    let models = steps
        .into_iter()
        .map(|(artifact, name, digest, manifest)| {
            let f = writes
                .files
                .iter()
                .find(|f| f.path == manifest)
                .expect("planned above");
            ModelStep {
                artifact,
                name,
                digest,
                action: f.action,
                replaces: f.replaces,
                manifest,
            }
        })
        .collect();
    Ok(OllamaPlan {
        dest: dest.to_path_buf(),
        models,
        writes,
    })
}

impl LocalPlan for OllamaPlan {
    type Options = ();
    fn dest(&self) -> &Path {
        &self.dest
    }
    fn options(&self) {}
    fn routed(bundle: &Admitted, artifacts: &[usize], dest: &Path, _: &()) -> Result<Self> {
        let names = super::routed_names(bundle, artifacts);
        plan(bundle, dest, &|a| names.contains(&a.name))
    }
}

/// The Ollama store target: `--ollama-models [DIR]`.
pub type OllamaTarget = Local<OllamaPlan>;

pub use super::execute;

impl Target for OllamaTarget {
    fn name(&self) -> &'static str {
        "ollama"
    }
    fn accepts(&self, kind: ArtifactKind) -> bool {
        kind == ArtifactKind::OllamaModel
    }
    fn plan(&mut self, bundle: &Admitted, artifacts: &[usize]) -> Result<()> {
        self.plan_routed(bundle, artifacts)
    }
    /// Each blob file written or kept.
    fn locations(&self, bundle: &Admitted) -> Vec<(Digest, crate::state::Location)> {
        let p = self.planned();
        let files = p.writes.blob_files();
        super::local_locations(crate::state::StoreKind::Ollama, &p.dest, bundle, files)
    }
    fn demand(&self) -> Option<Demand> {
        self.demand_of(self.planned().writes.needs())
    }
    /// Every blob into `blobs/`.
    fn commit_content(&mut self, staging: &Staging, j: &mut Journal) -> Result<()> {
        writes::commit_content(&self.planned().writes, self.area(staging), j)
    }
    /// The manifests, after every blob is in place and durable: ollama never sees a manifest
    /// whose blobs are missing. Their temp files live in the staging area, never under
    /// `manifests/` (where ollama would list a stray file as a bad model name).
    fn commit_names(&mut self, staging: &Staging, j: &mut Journal) -> Result<()> {
        writes::commit_names(&self.planned().writes, self.area(staging), j)
    }
    fn report(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![(
            "ollama",
            serde_json::to_value(self.planned()).expect("serialisable"),
        )]
    }
    fn summary(&self, dry_run: bool) -> String {
        let p = self.planned();
        let mut did = Vec::new();
        let models = p.models.iter().filter(|m| m.action != Action::Keep).count();
        if models > 0 {
            did.push(super::counted(models, "model", "models"));
        }
        let files = p.writes.count(Action::Write) + p.writes.count(Action::Replace);
        if files > 0 {
            did.push(format!(
                "{} ({})",
                super::counted(files, "file", "files"),
                output::bytes(p.writes.bytes_to_write())
            ));
        }
        super::summary_line(
            dry_run,
            &format!("Ollama store {}", output::escape_path(&p.dest)),
            &did,
            p.writes.count(Action::Keep),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_store_follows_ollama() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(*v))
            }
        };
        assert_eq!(
            default_dir(env(&[("OLLAMA_MODELS", "/srv/m"), ("HOME", "/home/u")])).unwrap(),
            PathBuf::from("/srv/m")
        );
        assert_eq!(
            default_dir(env(&[("OLLAMA_MODELS", ""), ("HOME", "/home/u")])).unwrap(),
            PathBuf::from("/home/u/.ollama/models")
        );
        assert!(default_dir(env(&[])).is_err());
    }
}
