use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

use super::pack::BundleSummary;
use crate::bundle::SignerInfo;
use crate::cli::ImportArgs;
use crate::error::Result;
use crate::format::text::escape;
use crate::import::{self, Selection, Settings};
use crate::media::Media;
use crate::output::{self, Printer};
use crate::targets::files::{FilesOptions, FilesTarget};
use crate::targets::hf_cache::{self, HfCacheTarget, SnapshotLayout};
use crate::targets::models_dir::ModelsDirTarget;
use crate::targets::oci_layout::LayoutTarget;
use crate::targets::ollama::{self, OllamaTarget};
use crate::targets::registry::{Naming, RegistryTarget, Target as RegistryName};
use crate::targets::Target;
use std::sync::Arc;

/// The targets named on the command line, in commit order (the registry, whose tags cannot be
/// taken back, last). Adding a target: one line here.
fn choose(args: &ImportArgs) -> Result<Vec<Box<dyn Target>>> {
    let env = |k: &str| std::env::var_os(k);
    let mut t: Vec<Box<dyn Target>> = Vec::new();
    if let Some(d) = &args.files {
        t.push(Box::new(FilesTarget::with(
            d,
            FilesOptions::keep(args.keep),
        )));
    }
    if let Some(d) = &args.oci_layout {
        t.push(Box::new(LayoutTarget::new(d)));
    }
    if let Some(d) = &args.hf_cache {
        let dir = d.clone().unwrap_or_else(|| hf_cache::default_dir(&env));
        let layout = if args.hf_no_symlinks || hf_cache::symlinks_disabled(&env) {
            SnapshotLayout::Files
        } else {
            SnapshotLayout::Symlinks
        };
        t.push(Box::new(HfCacheTarget::new(&dir, layout)));
    }
    if let Some(d) = &args.ollama_models {
        let dir = match d {
            Some(d) => d.clone(),
            None => ollama::default_dir(env)?,
        };
        t.push(Box::new(OllamaTarget::new(&dir)));
    }
    if let Some(d) = &args.models_dir {
        t.push(Box::new(ModelsDirTarget::new(d)));
    }
    if let Some(r) = &args.registry {
        let naming = if args.strip_host {
            Naming::StripHost
        } else {
            Naming::KeepHost
        };
        let connect = super::connect_options(&args.registry_opts)?;
        t.push(Box::new(RegistryTarget::new(
            RegistryName::parse(r)?,
            naming,
            connect,
        )));
    }
    Ok(t)
}

/// The `--json` report: the bundle, its signers, and each target's fields.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Report<'a> {
    dry_run: bool,
    #[serde(flatten)]
    bundle: BundleSummary,
    signers: &'a [SignerInfo],
    /// Which artifacts were (or, in a dry run, would be) imported, and which were left out
    /// (`--only`/`--skip`; their chunks not read).
    imported_artifacts: Vec<&'a str>,
    skipped_artifacts: Vec<&'a str>,
    /// Set when `expires` had passed, within the clock-skew allowance.
    expired_within_skew: Option<crate::bundle::ExpiredWithinSkew>,
    #[serde(flatten)]
    targets: TargetReports<'a>,
    /// The state directory and audit log (null in a dry run: nothing appended).
    #[serde(flatten)]
    state: super::StateReport,
}

/// Each target's fields ([`Target::report`]), serialised only when printed (a plan of a million
/// files is large).
struct TargetReports<'a>(&'a [Box<dyn Target>]);

impl Serialize for TargetReports<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for t in self.0 {
            for (k, v) in t.report() {
                m.serialize_entry(k, &v)?;
            }
        }
        m.end()
    }
}

impl JsonSchema for TargetReports<'_> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TargetReports".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let plan = |d: &str| json!({ "type": "object", "description": d });
        let count = |d: &str| json!({ "type": "integer", "minimum": 0, "description": d });
        schemars::json_schema!({
            "type": "object",
            "description": "Each target given adds its fields (absent for a target not given).",
            "properties": {
                "plan": plan("--files: the plan (dest, steps)"),
                "written": count("--files: files written (to write, in a dry run)"),
                "kept": count("--files: files already present"),
                "linked": count("--files: unchanged files of an artifact updated in place, hard-linked into its new version"),
                "replaced": count("--files: artifacts updated in place (each swapped atomically for its new version; the replaced one kept under DEST/.airlock/previous/)"),
                "directories_created": count("--files: directories created"),
                "oci_layout": plan("--oci-layout: the plan"),
                "hf_cache": plan("--hf-cache: the plan"),
                "ollama": plan("--ollama-models: the plan"),
                "models_dir": plan("--models-dir: the plan"),
                "registry": plan("--registry: host, prefix, naming, images, pushed")
            }
        })
    }
}

pub fn run(args: ImportArgs, printer: &Printer) -> Result<()> {
    let policy = super::load_policy(&args.trust)?;
    // A path that is not a bundle is a usage error, before any state directory is created.
    let (shown, volumes, media) = match &args.media {
        Some(mount) => {
            crate::bundle::verify::check_bundle_dir(mount)?;
            let media = Media::new(
                mount,
                policy.clone(),
                &super::verify_options(),
                Printer {
                    json: printer.json,
                    quiet: printer.quiet,
                },
                Media::can_prompt(printer),
            );
            (mount.clone(), Vec::new(), Some(Arc::new(media)))
        }
        None => {
            let (dirs, _) = crate::bundle::verify::expand_volume_dirs(&args.dirs)?;
            // Reports name the directory given (the parent `OUT/` of the volumes), else the
            // first volume given.
            let shown = match args.dirs.as_slice() {
                [one] if dirs.len() > 1 => one.clone(),
                _ => dirs[0].clone(),
            };
            let volumes = if dirs.len() > 1 { dirs } else { Vec::new() };
            (shown, volumes, None)
        }
    };
    let targets = choose(&args)?;
    let paths = super::state_paths(&args.state)?;
    let settings = Settings {
        dir: shown.clone(),
        volumes,
        media,
        notes: Some(Printer {
            json: printer.json,
            quiet: printer.quiet,
        }),
        policy,
        verify: super::verify_options(),
        state_dir: paths.dir.clone(),
        audit_log: paths.log.clone(),
        create_state_dir: paths.log_chosen == super::Chosen::Default,
        dry_run: args.dry_run,
        allow_rollback: args.allow_rollback,
        select: Selection {
            only: args.only.clone(),
            skip: args.skip.clone(),
        },
    };
    let (json, quiet) = (printer.json, printer.quiet);
    crate::interrupt::on_forced_stop(move |signal| {
        let p = Printer { json, quiet };
        p.note(
            "import stopped before its cleanup finished: no store shows partial content; what \
             it staged is removed by the next import into the same targets",
        );
        p.error(&crate::error::Error::Interrupted { signal });
    });
    let progress = printer.progress();
    let done = crate::interrupt::classify(import::run(&settings, targets, &progress))?;
    // The targets' fields are serialised only when printed (--json): a plan of a million files
    // is large.
    let report = Report {
        dry_run: args.dry_run,
        bundle: BundleSummary::new(&shown, done.bundle.manifest()),
        signers: done.bundle.bundle().signers(),
        imported_artifacts: done.selected.names(done.bundle.manifest(), true),
        skipped_artifacts: done.selected.names(done.bundle.manifest(), false),
        expired_within_skew: done.bundle.bundle().expired_within_skew().cloned(),
        targets: TargetReports(&done.targets),
        state: super::StateReport::new(&paths, !args.dry_run),
    };
    if let Some(skew) = done.bundle.bundle().expired_within_skew() {
        printer.note(&skew.note());
    }
    printer.report(&report, || {
        let m = done.bundle.manifest();
        let sel = &done.selected;
        let part = if sel.is_whole() {
            String::new()
        } else {
            let names: Vec<String> = sel
                .names(m, true)
                .iter()
                .map(|n| escape(n).to_string())
                .collect();
            format!(
                "{} of {} artifacts ({})",
                sel.count(),
                m.artifacts.len(),
                names.join(", ")
            )
        };
        let mut s = match (args.dry_run, sel.is_whole()) {
            (true, true) => format!(
                "verified {}; dry run, nothing written. Plan:\n",
                output::escape_path(&shown)
            ),
            (true, false) => format!(
                "verified {}; dry run, nothing written. Plan for {part}:\n",
                output::escape_path(&shown)
            ),
            (false, true) => format!("imported {}\n", output::escape_path(&shown)),
            (false, false) => format!(
                "imported {}: {part}; chunks of the others not read\n",
                output::escape_path(&shown)
            ),
        };
        for t in &done.targets {
            s += &t.summary(args.dry_run);
        }
        s += &paths.lines(!args.dry_run, "dry run, nothing recorded");
        s
    });
    Ok(())
}
