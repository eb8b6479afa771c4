//! The models-directory target (`--models-dir DIR`): one plain directory per model, for servers
//! that take a path (vLLM `--model PATH`, NIM `NIM_MODEL_PATH`, llama.cpp `-m FILE`,
//! `ollama create NAME -f Modelfile`).
//!
//! Layout:
//!
//! ```text
//! DIR/hf/ORG/NAME/<repo files>              hf-repo model artifacts (NAME alone without an org)
//! DIR/hf-datasets/ORG/NAME/<repo files>     hf-repo dataset artifacts
//! DIR/ollama/HOST/NAMESPACE/MODEL/TAG/      ollama-model artifacts:
//!     model.gguf        the application/vnd.ollama.image.model layer
//!     projector.gguf    ...image.projector (multimodal projector)
//!     adapter.gguf      ...image.adapter (LoRA)
//!     template          ...image.template (or the legacy ...image.prompt), Go template text
//!     system            ...image.system
//!     params.json       ...image.params
//!     messages.json     ...image.messages
//!     license           ...image.license
//!     layers/sha256-<hex>  any other layer (tensor, json, draft, embed, unknown), by digest
//!     config.json       the config blob
//!     manifest.json     the registry manifest, byte for byte
//!     Modelfile         generated (when there is a model layer): FROM ./model.gguf, ADAPTER,
//!                       FROM ./projector.gguf, TEMPLATE, SYSTEM, RENDERER, PARSER, PARAMETER
//!                       (from params.json, keys sorted, one line per list element), LICENSE,
//!                       MESSAGE — each value quoted by ollama's grammar, or the import refused
//! ```
//!
//! Each kind has its own top-level directory (`hf`, `hf-datasets`, `ollama`), so no artifact
//! name can reach another kind's directory (an HF model `datasets/foo` is `DIR/hf/datasets/foo`,
//! one named `ollama/x` is `DIR/hf/ollama/x`); within one import, a model directory that would
//! lie inside another (`hf/gpt2` and `hf/gpt2/x`) is refused.
//!
//! The Modelfile is meant for `ollama create NAME -f Modelfile`, so nothing from the bundle may
//! add a directive to it: every value is written by ollama's own grammar (`parser/parser.go`:
//! a value ends at the first `\r` or `\n` once what precedes it is unquoted or a complete
//! `"…"` or `"""…"""`; there are no escapes) — raw when it can be, else `"…"` when it holds no
//! `"`, else `"""…"""` when it holds no `"""` — and a value none of these can carry, or holding
//! a character the parser would drop (a control or format character other than tab, CR and
//! LF, a non-ASCII space), refuses the import (exit 3). PARAMETER keys must be ones ollama
//! accepts ([`PARAMETERS`]) and MESSAGE roles `system`, `user` or `assistant`.
//! A kind that occurs several times is numbered from 1 in manifest order (`license-1`,
//! `license-2`, `projector-1.gguf`, ...). `HOST` keeps a port's `:` (`localhost:5000`), as
//! ollama's own store does on Linux.
//!
//! Files are 0644 (0755 for executable hf files), created directories 0755. The plan only reads
//! the destination: an existing file with the same content is kept, any other existing file is a
//! conflict that stops the import before anything is written. Each file is installed from the
//! staging area without replacing anything ([`super::writes`]); a failure anywhere in the
//! import removes what it wrote, so the directory is left as it was. The Modelfile is generated
//! by [`super::modelfile`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::modelfile::{layer_names, modelfile};
use super::ollama::{read_model, OllamaModel};
pub use super::writes::Action;
use super::writes::{self, Existing, Planner, Writes};
use super::{Local, LocalPlan, Target};
use crate::error::{Error, Result};
use crate::format::{Artifact, ArtifactKind, Digest, EntryType, HfRepoType};
use crate::oci::image::BlobSource;
use crate::oci::ollama::OllamaName;
use crate::output;
use crate::stage::{Admitted, Demand, Journal, Staging};

/// One model directory of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDir {
    pub artifact: String,
    pub kind: ArtifactKind,
    /// The directory a server is pointed at.
    pub path: PathBuf,
}

/// What an import into a models directory will do.
#[derive(Debug, Clone, Serialize)]
pub struct ModelsDirPlan {
    pub dest: PathBuf,
    pub models: Vec<ModelDir>,
    #[serde(flatten)]
    pub writes: Writes,
}

/// The top-level directory of each kind in a models directory: nothing else is ever written
/// at the top level, and each kind's names stay below its own.
pub const HF_MODELS: &str = "hf";
pub const HF_DATASETS: &str = "hf-datasets";
pub const OLLAMA: &str = "ollama";

/// The directory (relative to `DIR`) an artifact goes to, or `None` for kinds this target
/// does not take. The name below the kind's own directory must be one of that kind's names
/// (an HF repo id `NAME` or `ORG/NAME`; an Ollama `HOST/NAMESPACE/MODEL/TAG`), each part a
/// plain name, so that it cannot reach another kind's directory.
pub fn model_rel_dir(a: &Artifact) -> Result<Option<String>> {
    let (ns, name) = match a.kind {
        ArtifactKind::HfRepo => {
            let hf =
                a.hf.as_ref()
                    .expect("validated: hf-repo artifacts carry hf");
            crate::format::validate_repo_id(&hf.repo_id).map_err(|e| {
                Error::Refused(format!(
                    "artifact {}: repo id {:?} cannot name a model directory: {e}",
                    a.name, hf.repo_id
                ))
            })?;
            let ns = match hf.repo_type {
                HfRepoType::Model => HF_MODELS,
                HfRepoType::Dataset => HF_DATASETS,
            };
            (ns, hf.repo_id.clone())
        }
        ArtifactKind::OllamaModel => {
            let info = a
                .image
                .as_ref()
                .expect("validated: ollama models carry image");
            let n = OllamaName::parse_reference(&info.reference)
                .map_err(|e| Error::Refused(format!("artifact {}: {e}", a.name)))?;
            (OLLAMA, n.manifest_rel_path())
        }
        _ => return Ok(None),
    };
    if name
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(Error::Refused(format!(
            "artifact {}: {name:?} cannot name a model directory",
            a.name
        )));
    }
    Ok(Some(format!("{ns}/{name}")))
}

/// Whether directory `inner` (relative, `/`-separated) lies strictly inside `outer`.
fn nested(inner: &str, outer: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Works out every step for the `hf-repo` and `ollama-model` artifacts `include` accepts,
/// reading (never writing) `dest`; fails on the first conflict.
pub fn plan(
    bundle: &Admitted,
    dest: &Path,
    include: &dyn Fn(&Artifact) -> bool,
) -> Result<ModelsDirPlan> {
    let mut p = Planner::new(dest)?;
    let mut models = Vec::new();
    let mut bases: Vec<(String, &str)> = Vec::new();
    for a in bundle.manifest().artifacts.iter().filter(|a| include(a)) {
        let Some(base) = model_rel_dir(a)? else {
            continue;
        };
        // One model's directory never lies inside another's.
        if let Some((other, name)) = bases
            .iter()
            .find(|(b, _)| nested(&base, b) || nested(b, &base))
        {
            return Err(Error::Refused(format!(
                "artifacts {name} and {}: model directory {base} and {other} would lie one \
                 inside the other in {}",
                a.name,
                dest.display()
            )));
        }
        bases.push((base.clone(), &a.name));
        let path = p.dir(&base)?;
        if a.kind == ArtifactKind::HfRepo {
            for e in &a.entries {
                let rel = format!("{base}/{}", e.path);
                match e.kind {
                    EntryType::Dir => {
                        p.dir(&rel)?;
                    }
                    EntryType::File => p.file(
                        &rel,
                        &a.name,
                        e.blob.expect("validated"),
                        e.size.expect("validated"),
                        None,
                        if e.executable { 0o755 } else { 0o644 },
                        Existing::Conflict,
                    )?,
                }
            }
        } else {
            let m = read_model(bundle, a)?;
            plan_ollama_dir(&mut p, &base, &a.name, bundle, &m)?;
        }
        models.push(ModelDir {
            artifact: a.name.clone(),
            kind: a.kind,
            path,
        });
    }
    Ok(ModelsDirPlan {
        dest: dest.to_path_buf(),
        models,
        writes: p.finish(),
    })
}

impl LocalPlan for ModelsDirPlan {
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

/// The models-directory target: `--models-dir DIR`.
pub type ModelsDirTarget = Local<ModelsDirPlan>;

pub use super::execute;

impl Target for ModelsDirTarget {
    fn name(&self) -> &'static str {
        "models-dir"
    }
    fn accepts(&self, kind: ArtifactKind) -> bool {
        matches!(kind, ArtifactKind::OllamaModel | ArtifactKind::HfRepo)
    }
    fn plan(&mut self, bundle: &Admitted, artifacts: &[usize]) -> Result<()> {
        self.plan_routed(bundle, artifacts)
    }
    /// Each blob file written or kept.
    fn locations(&self, bundle: &Admitted) -> Vec<(Digest, crate::state::Location)> {
        let p = self.planned();
        let files = p.writes.blob_files();
        super::local_locations(crate::state::StoreKind::ModelsDir, &p.dest, bundle, files)
    }
    fn demand(&self) -> Option<Demand> {
        self.demand_of(self.planned().writes.needs())
    }
    fn commit_content(&mut self, staging: &Staging, j: &mut Journal) -> Result<()> {
        writes::commit_content(&self.planned().writes, self.area(staging), j)
    }
    fn commit_names(&mut self, staging: &Staging, j: &mut Journal) -> Result<()> {
        writes::commit_names(&self.planned().writes, self.area(staging), j)
    }
    fn report(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![(
            "models_dir",
            serde_json::to_value(self.planned()).expect("serialisable"),
        )]
    }
    fn summary(&self, dry_run: bool) -> String {
        let p = self.planned();
        let mut did = Vec::new();
        let files = p.writes.count(Action::Write) + p.writes.count(Action::Replace);
        if files > 0 {
            did.push(format!(
                "{} of {} ({})",
                super::counted(files, "file", "files"),
                super::counted(p.models.len(), "model", "models"),
                output::bytes(p.writes.bytes_to_write())
            ));
        }
        super::summary_line(
            dry_run,
            &format!("models dir {}", output::escape_path(&p.dest)),
            &did,
            p.writes.count(Action::Keep),
        )
    }
}

fn plan_ollama_dir(
    p: &mut Planner,
    base: &str,
    artifact: &str,
    src: &dyn BlobSource,
    m: &OllamaModel,
) -> Result<()> {
    let names = layer_names(&m.layers);
    for (l, name) in m.layers.iter().zip(&names) {
        p.file(
            &format!("{base}/{name}"),
            artifact,
            l.digest,
            l.size,
            None,
            0o644,
            Existing::Conflict,
        )?;
    }
    p.file(
        &format!("{base}/config.json"),
        artifact,
        m.config.digest,
        m.config.size,
        None,
        0o644,
        Existing::Conflict,
    )?;
    // Files airlock writes from memory: the manifest's exact bytes, the generated Modelfile.
    let mut generated = |name: &str, bytes: Vec<u8>| {
        let bytes = Arc::new(bytes);
        p.file(
            &format!("{base}/{name}"),
            artifact,
            Digest::of(&bytes),
            bytes.len() as u64,
            Some(bytes),
            0o644,
            Existing::Conflict,
        )
    };
    generated("manifest.json", m.manifest.clone())?;
    let mf = modelfile(src, m, &names).map_err(|e| match e {
        Error::Refused(msg) => Error::Refused(format!("artifact {artifact}: Modelfile: {msg}")),
        Error::Corrupt(msg) => Error::Corrupt(format!("artifact {artifact}: {msg}")),
        e => e,
    })?;
    if let Some(mf) = mf {
        generated("Modelfile", mf.into_bytes())?;
    }
    Ok(())
}
