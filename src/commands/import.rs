use serde::Serialize;

use super::pack::BundleSummary;
use std::cell::Cell;

use crate::audit::{Action as Audited, AuditLog, Event};
use crate::bundle::{self, SignerInfo};
use crate::cli::ImportArgs;
use crate::error::{Error, Result};
use crate::format::{Artifact, ArtifactKind};
use crate::oci::client::Registry;
use crate::oci::model::Descriptor;
use crate::oci::push::PushReport;
use crate::output::{self, escape, Printer};
use crate::state::State;
use crate::targets::files::{self, Action, Plan};
use crate::targets::hf_cache::{self, HfCacheOptions, HfCachePlan, SnapshotLayout};
use crate::targets::models_dir::{self, ModelsDirPlan};
use crate::targets::oci_layout::{self, LayoutPlan};
use crate::targets::ollama::{self, OllamaPlan};
use crate::targets::registry::{self, ImagePush, Naming, Target};

#[derive(Serialize)]
struct RegistryReport<'a> {
    host: &'a str,
    prefix: Option<&'a str>,
    naming: Naming,
    images: &'a [ImagePush],
    /// What each push did (absent in a dry run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pushed: Vec<PushReport>,
}

#[derive(Serialize)]
struct Report<'a> {
    dry_run: bool,
    #[serde(flatten)]
    bundle: BundleSummary,
    signers: Vec<SignerInfo>,
    /// The files target's plan (absent without --files).
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<&'a Plan>,
    written: usize,
    kept: usize,
    directories_created: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    registry: Option<RegistryReport<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oci_layout: Option<&'a LayoutPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hf_cache: Option<&'a HfCachePlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ollama: Option<&'a OllamaPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    models_dir: Option<&'a ModelsDirPlan>,
}

/// (ref name, top descriptor) of every image in the bundle, for the layout target. The ref name
/// is the source reference; for images from a local layout or archive without one, the same
/// `NAME[:TAG]` the registry target would use (`oci-layout:/srv/app:v1` → `app:v1`).
fn layout_images(vb: &bundle::VerifiedBundle) -> Vec<(String, Descriptor)> {
    vb.manifest()
        .artifacts
        .iter()
        .filter_map(|a| a.image.as_ref())
        .map(|i| {
            (
                match registry::local_name(&i.reference) {
                    Some((repo, Some(tag))) => format!("{repo}:{tag}"),
                    Some((repo, None)) => repo,
                    None => i.reference.clone(),
                },
                Descriptor {
                    media_type: i.media_type.clone(),
                    digest: i.digest,
                    size: i.size,
                    platform: None,
                    artifact_type: None,
                    annotations: Default::default(),
                },
            )
        })
        .collect()
}

fn plan_text(plan: &Plan) -> String {
    let mut s = String::new();
    for step in &plan.steps {
        let what = match step.action {
            Action::Mkdir => "mkdir",
            Action::Write => "write",
            Action::Keep => "keep ",
        };
        let size = step
            .size
            .map(|n| format!(" ({})", output::bytes(n)))
            .unwrap_or_default();
        s += &format!("  {what} {}{size}\n", output::escape_path(&step.path));
    }
    s
}

fn pushes_text(pushes: &[ImagePush]) -> String {
    pushes
        .iter()
        .map(|p| format!("  push  {} -> {}\n", escape(&p.source), escape(&p.target)))
        .collect()
}

/// Whether the operator named a target made for artifacts of this kind; if not, they go to
/// `--files` (an image as an OCI layout directory, a model as its files).
fn has_native_target(kind: ArtifactKind, args: &ImportArgs) -> bool {
    let image_targets = args.registry.is_some() || args.oci_layout.is_some();
    let models_dir = args.models_dir.is_some();
    match kind {
        ArtifactKind::File | ArtifactKind::Directory => false,
        ArtifactKind::Image => image_targets,
        ArtifactKind::OllamaModel => image_targets || args.ollama_models.is_some() || models_dir,
        ArtifactKind::HfRepo => models_dir || args.hf_cache.is_some(),
    }
}

pub fn run(args: ImportArgs, printer: &Printer) -> Result<()> {
    let policy = super::load_policy(args.policy.as_deref(), &args.trust)?;
    let target = args.registry.as_deref().map(Target::parse).transpose()?;
    let naming = if args.strip_host {
        Naming::StripHost
    } else {
        Naming::KeepHost
    };
    let connect = super::connect_options(&args.registry_opts)?;
    let (state_dir, log) = super::state_paths(&args.state)?;
    let progress = printer.progress();
    // Every decision of a real import is audited; a dry run decides nothing. Before anything
    // is written anywhere, the log must be usable: opened without following a link, a regular
    // file, its whole chain intact (it stays open: later appends go to the file checked).
    let log = if args.dry_run {
        None
    } else {
        if args.state.audit_log.is_none() {
            crate::state::create_private_dir(&state_dir)?;
        }
        Some(AuditLog::open_checked(&log)?)
    };
    let audit = |e: &Event| -> Result<()> {
        if let Some(l) = &log {
            l.append(e)?;
        }
        Ok(())
    };
    let vb = match bundle::verify::verify_policy(
        &args.dir,
        &policy,
        &super::verify_options(),
        &progress,
    ) {
        Ok(vb) => vb,
        Err(e) => {
            audit(&Event::for_unverified(Audited::Import, &args.dir, &e))?;
            return Err(e);
        }
    };
    // Freshness: the state is locked until the import is recorded (or refused).
    let opened = if args.dry_run {
        State::open_read_only(&state_dir)
    } else {
        State::open(&state_dir)
    };
    let mut st = match opened {
        Ok(st) => st,
        Err(e) => {
            audit(
                &Event::for_bundle(Audited::Import, &vb)
                    .signer_names(&super::signer_name(vb.signers()))
                    .rejected_by(&e),
            )?;
            return Err(e);
        }
    };
    let decision = st.check(vb.manifest(), &vb.manifest_digest());
    let event = Event::for_bundle(Audited::Import, &vb)
        .signer_names(&super::signer_name(vb.signers()))
        .freshness(&decision, args.allow_rollback);
    if !decision.permits(args.allow_rollback) {
        let problem = super::freshness_problem(vb.manifest(), &decision)
            .expect("a decision that does not permit is a rejection");
        let err = Error::Rejected {
            dir: args.dir.clone(),
            problems: vec![problem],
        };
        audit(&event.rejected_by(&err))?;
        return Err(err);
    }
    // Nothing is recorded as accepted unless every target completed. Once the `started`
    // record is written, the rejection names it.
    let started: Cell<Option<u64>> = Cell::new(None);
    let fail = |e: Error| -> Error {
        let _ = audit(&event.clone().rejected_by(&e).completing(started.get()));
        e
    };

    // Which target takes which artifact; refuse before any write if something has no place.
    let to_files = |a: &Artifact| !has_native_target(a.kind, &args);
    if args.files.is_none() {
        let homeless: Vec<String> = vb
            .manifest()
            .artifacts
            .iter()
            .filter(|a| to_files(a))
            .map(|a| format!("{} ({})", escape(&a.name), a.kind.as_str()))
            .collect();
        if !homeless.is_empty() {
            return Err(fail(Error::Usage(format!(
                "no target given for {}; name one (see --help) or give --files DEST",
                homeless.join(", ")
            ))));
        }
    }
    let plan = args
        .files
        .as_deref()
        .map(|dest| files::plan(&vb, dest, &to_files))
        .transpose()
        .map_err(fail)?;
    let pushes = target
        .as_ref()
        .map(|t| registry::plan(&vb, t, naming))
        .transpose()
        .map_err(fail)?;
    let layout_plan = args
        .oci_layout
        .as_deref()
        .map(|dest| oci_layout::plan(dest, &layout_images(&vb), &vb))
        .transpose()
        .map_err(fail)?;
    let env = |k: &str| std::env::var_os(k);
    let hf_plan = match &args.hf_cache {
        None => None,
        Some(dir) => {
            let dir = dir.clone().unwrap_or_else(|| hf_cache::default_dir(&env));
            let layout = if args.hf_no_symlinks || hf_cache::symlinks_disabled(&env) {
                SnapshotLayout::Files
            } else {
                SnapshotLayout::Symlinks
            };
            Some(hf_cache::plan(&vb, &dir, &HfCacheOptions { layout }).map_err(fail)?)
        }
    };
    let ollama_dir = match &args.ollama_models {
        Some(None) => Some(ollama::default_dir(|k| std::env::var_os(k)).map_err(fail)?),
        Some(Some(d)) => Some(d.clone()),
        None => None,
    };
    let is_ollama = |a: &Artifact| a.kind == ArtifactKind::OllamaModel;
    let ollama_plan = ollama_dir
        .as_deref()
        .map(|dest| ollama::plan(&vb, dest, &is_ollama))
        .transpose()
        .map_err(fail)?;
    let is_model =
        |a: &Artifact| matches!(a.kind, ArtifactKind::OllamaModel | ArtifactKind::HfRepo);
    let models_plan = args
        .models_dir
        .as_deref()
        .map(|dest| models_dir::plan(&vb, dest, &is_model))
        .transpose()
        .map_err(fail)?;
    let mut pushed = Vec::new();
    if let Some(l) = &log {
        // The start of the writes is on record, and the acceptance record is known to fit,
        // before any target is touched; a crash from here on leaves this `started` record
        // without an outcome, which `audit verify` reports.
        let done = event.clone().accepted();
        started.set(Some(l.begin(&event, &done).map_err(fail)?));
        if let Some(p) = &plan {
            files::execute(&vb, p, &progress).map_err(fail)?;
        }
        if let Some(p) = &layout_plan {
            oci_layout::execute(p, &vb, &progress).map_err(fail)?;
        }
        if let Some(p) = &hf_plan {
            hf_cache::execute(&vb, p, &progress).map_err(fail)?;
        }
        if let Some(p) = &ollama_plan {
            ollama::execute(&vb, p, &progress).map_err(fail)?;
        }
        if let Some(p) = &models_plan {
            models_dir::execute(&vb, p, &progress).map_err(fail)?;
        }
        if let (Some(t), Some(pushes)) = (&target, &pushes) {
            let reg = Registry::new(&t.host, &connect).map_err(fail)?;
            pushed = registry::execute(&vb, &reg, pushes, &progress).map_err(fail)?;
        }
        // Commit, then its record (the order a crash must see: an advanced state with a
        // `started` record is detectable; an `accepted` record without the state is not).
        let m = vb.manifest();
        st.record_accepted(&m.channel, m.sequence, &m.bundle_id, &vb.manifest_digest())
            .map_err(fail)?;
        l.append(&done.completing(started.get())).map_err(|e| {
            Error::Other(format!(
                "the import completed and the state records it, but its audit record could not be appended ({e}); record {} of {} (`started`) stands without its outcome",
                started.get().unwrap_or_default(),
                output::escape_path(l.path())
            ))
        })?;
    }
    let count = |a| plan.as_ref().map(|p| p.count(a)).unwrap_or(0);
    let report = Report {
        dry_run: args.dry_run,
        bundle: BundleSummary::new(&args.dir, vb.manifest()),
        signers: vb.signers().to_vec(),
        plan: plan.as_ref(),
        written: count(Action::Write),
        kept: count(Action::Keep),
        directories_created: count(Action::Mkdir),
        registry: target.as_ref().map(|t| RegistryReport {
            host: &t.host,
            prefix: t.prefix.as_deref(),
            naming,
            images: pushes.as_deref().unwrap_or(&[]),
            pushed,
        }),
        oci_layout: layout_plan.as_ref(),
        hf_cache: hf_plan.as_ref(),
        ollama: ollama_plan.as_ref(),
        models_dir: models_plan.as_ref(),
    };
    printer.report(&report, || {
        let mut s = if args.dry_run {
            format!(
                "verified {}; dry run, nothing written. Plan:\n",
                output::escape_path(&args.dir)
            )
        } else {
            format!("imported {}\n", output::escape_path(&args.dir))
        };
        if let (Some(p), Some(dest)) = (&plan, &args.files) {
            if args.dry_run {
                s += &plan_text(p);
            } else {
                s += &format!(
                    "  into {}: {} files written ({}), {} already present, {} directories created\n",
                    output::escape_path(dest),
                    report.written,
                    output::bytes(p.bytes_to_write()),
                    report.kept,
                    report.directories_created
                );
            }
        }
        if let (Some(p), Some(dest)) = (&layout_plan, &args.oci_layout) {
            s += &format!(
                "  into OCI layout {}: {} blobs to write ({}), {} image refs\n",
                output::escape_path(dest),
                p.blobs_to_write(),
                output::bytes(p.bytes_to_write()),
                p.refs.len()
            );
        }
        if let Some(p) = &hf_plan {
            s += &format!(
                "  into Hugging Face cache {}: {} repos, {} blobs ({}), {} snapshot files, {} refs to write\n",
                output::escape_path(&p.dest),
                p.repos.len(),
                p.blobs_to_write(),
                output::bytes(p.bytes_to_write()),
                p.files_to_write(),
                p.refs_to_write()
            );
        }
        if let Some(p) = &ollama_plan {
            s += &format!(
                "  into Ollama store {}: {} models{}\n",
                output::escape_path(&p.dest),
                p.models.len(),
                if p.is_noop() { ", all present" } else { "" }
            );
        }
        if let Some(p) = &models_plan {
            s += &format!(
                "  into models dir {}: {} models, {} files to write ({})\n",
                output::escape_path(&p.dest),
                p.models.len(),
                p.writes.count(models_dir::Action::Write) + p.writes.count(models_dir::Action::Replace),
                output::bytes(p.writes.bytes_to_write())
            );
        }
        if let Some(pushes) = &pushes {
            s += &pushes_text(pushes);
            if let Some(r) = &report.registry {
                let sum = |f: fn(&PushReport) -> usize| r.pushed.iter().map(f).sum::<usize>();
                if !r.pushed.is_empty() {
                    s += &format!(
                        "  blobs: {} uploaded, {} mounted, {} already present; {} manifests pushed\n",
                        sum(|p| p.blobs_uploaded),
                        sum(|p| p.blobs_mounted),
                        sum(|p| p.blobs_present),
                        sum(|p| p.manifests_pushed)
                    );
                }
            }
        }
        s
    });
    Ok(())
}
