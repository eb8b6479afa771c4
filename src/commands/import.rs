use serde_json::{Map, Value};

use super::pack::BundleSummary;
use crate::cli::ImportArgs;
use crate::error::Result;
use crate::format::text::escape;
use crate::import::{self, Selection, Settings};
use crate::output::{self, Printer};
use crate::targets::files::FilesTarget;
use crate::targets::hf_cache::{self, HfCacheTarget, SnapshotLayout};
use crate::targets::models_dir::ModelsDirTarget;
use crate::targets::oci_layout::LayoutTarget;
use crate::targets::ollama::{self, OllamaTarget};
use crate::targets::registry::{Naming, RegistryTarget, Target as RegistryName};
use crate::targets::Target;

/// The targets named on the command line, in commit order (the registry, whose tags cannot be
/// taken back, last). Adding a target: one line here.
fn choose(args: &ImportArgs) -> Result<Vec<Box<dyn Target>>> {
    let env = |k: &str| std::env::var_os(k);
    let mut t: Vec<Box<dyn Target>> = Vec::new();
    if let Some(d) = &args.files {
        t.push(Box::new(FilesTarget::new(d)));
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
struct Report<'a> {
    dry_run: bool,
    dir: &'a std::path::Path,
    done: &'a import::Outcome,
}

impl serde::Serialize for Report<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut report = Map::new();
        report.insert("dry_run".into(), self.dry_run.into());
        let summary = BundleSummary::new(self.dir, self.done.bundle.manifest());
        if let Value::Object(m) =
            serde_json::to_value(&summary).map_err(serde::ser::Error::custom)?
        {
            report.extend(m);
        }
        report.insert(
            "signers".into(),
            serde_json::to_value(self.done.bundle.bundle().signers())
                .map_err(serde::ser::Error::custom)?,
        );
        // Which artifacts were (or, in a dry run, would be) imported, and which were left out
        // (`--only`/`--skip`; their chunks not read).
        let m = self.done.bundle.manifest();
        let sel = &self.done.selected;
        report.insert("imported_artifacts".into(), sel.names(m, true).into());
        report.insert("skipped_artifacts".into(), sel.names(m, false).into());
        report.insert(
            "expired_within_skew".into(),
            serde_json::to_value(self.done.bundle.bundle().expired_within_skew())
                .map_err(serde::ser::Error::custom)?,
        );
        for t in &self.done.targets {
            for (k, v) in t.report() {
                report.insert(k.into(), v);
            }
        }
        Value::Object(report).serialize(s)
    }
}

pub fn run(args: ImportArgs, printer: &Printer) -> Result<()> {
    let policy = super::load_policy(args.policy.as_deref(), &args.trust)?;
    let targets = choose(&args)?;
    let (state_dir, audit_log) = super::state_paths(&args.state)?;
    let settings = Settings {
        dir: args.dir.clone(),
        policy,
        verify: super::verify_options(),
        state_dir,
        audit_log,
        create_state_dir: args.state.audit_log.is_none(),
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
    // Built only when it is printed (--json): a plan of a million files is large.
    let report = Report {
        dry_run: args.dry_run,
        dir: &args.dir,
        done: &done,
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
                output::escape_path(&args.dir)
            ),
            (true, false) => format!(
                "verified {}; dry run, nothing written. Plan for {part}:\n",
                output::escape_path(&args.dir)
            ),
            (false, true) => format!("imported {}\n", output::escape_path(&args.dir)),
            (false, false) => format!(
                "imported {}: {part}; chunks of the others not read\n",
                output::escape_path(&args.dir)
            ),
        };
        for t in &done.targets {
            s += &t.summary(args.dry_run);
        }
        s
    });
    Ok(())
}
