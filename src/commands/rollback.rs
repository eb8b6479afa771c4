//! `airlock rollback ARTIFACT --files DEST [--to BUNDLE_ID]`: swaps a version of an artifact
//! that an update in place kept (`DEST/.airlock/previous/ARTIFACT/<NANOS>-<BUNDLE_ID>/`) back
//! in one atomic exchange; the version it replaces is kept in its turn (so a rollback can be
//! rolled back). Both versions are checked against the digests the holdings record first (a
//! file changed since airlock wrote it is a conflict unless `--force`), the holdings follow the
//! swap, and the decision is audited (`action: rollback`, record version 3).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::audit::{Action, AuditLog, Event, RollbackRecord};
use crate::cli::RollbackArgs;
use crate::error::{Error, Result};
use crate::format::text::escape;
use crate::format::Digest;
use crate::fsutil;
use crate::output::{escape_path, Printer};
use crate::state::{HoldingsFile, Location, State, StoreKind};
use crate::targets::files::{self, kept_versions, version_bundle};

/// One kept version of the artifact.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct KeptVersion {
    /// Its directory name, `<NANOS>-<BUNDLE_ID>` (the nanoseconds: when it was replaced).
    name: String,
    /// The bundle that wrote it (`unrecorded`: airlock had no record).
    bundle_id: String,
    path: String,
}

/// The `--json` report of a rollback.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Report {
    dry_run: bool,
    artifact: String,
    /// `DEST/ARTIFACT`.
    path: String,
    /// The version swapped in (would be, in a dry run).
    restored: KeptVersion,
    /// The bundle that wrote the version swapped out (null: no record).
    replaced: Option<String>,
    /// Where the version swapped out is kept now (would be, in a dry run).
    kept_at: String,
    /// Whether `--force` swapped despite a file changed since airlock wrote it.
    forced: bool,
    /// The files changed since airlock wrote them (what `--force` overrode).
    changed: Vec<String>,
    /// The versions kept before the rollback, oldest first.
    kept_versions: Vec<KeptVersion>,
    #[serde(flatten)]
    state: super::StateReport,
}

pub fn run(args: RollbackArgs, printer: &Printer) -> Result<()> {
    crate::format::paths::validate_name(&args.artifact).map_err(|e| {
        Error::Usage(format!(
            "{}: not an artifact name: {e}",
            escape(&args.artifact)
        ))
    })?;
    let paths = super::state_paths(&args.state)?;
    let dest = &args.files;
    let top = dest.join(&args.artifact);
    if std::fs::symlink_metadata(&top).is_err() {
        return Err(Error::Other(format!(
            "{}: no artifact {} in {} to roll back",
            escape_path(&top),
            escape(&args.artifact),
            escape_path(dest)
        )));
    }
    files::check_meta_dirs(dest, &args.artifact)?;
    let versions = kept_versions(dest, &args.artifact);
    let listed: Vec<KeptVersion> = versions.iter().map(|(n, p)| kept(n, p)).collect();
    if versions.is_empty() {
        return Err(Error::Other(format!(
            "no previous version of {} is kept in {} (an update in place keeps them: import \
             --keep N, default 1)",
            escape(&args.artifact),
            escape_path(&dest.join(files::META_DIR).join(files::PREVIOUS_DIR))
        )));
    }
    let chosen = match &args.to {
        None => versions.last(),
        Some(id) => versions.iter().rev().find(|(n, _)| version_bundle(n) == id),
    };
    let Some((name, path)) = chosen.cloned() else {
        let ids: Vec<String> = versions
            .iter()
            .map(|(n, _)| escape(version_bundle(n)).to_string())
            .collect();
        return Err(Error::Other(format!(
            "no kept version of {} was written by bundle {}; kept: {}",
            escape(&args.artifact),
            escape(args.to.as_deref().unwrap_or_default()),
            ids.join(", ")
        )));
    };

    // The log must be usable before anything is changed; the state is locked throughout.
    let log = (!args.dry_run)
        .then(|| AuditLog::open_checked(&paths.log))
        .transpose()?;
    let mut st = if args.dry_run {
        State::open_read_only(&paths.dir)?
    } else {
        State::open(&paths.dir)?
    };
    let root = files::store_root(dest)
        .ok_or_else(|| Error::Other(format!("{}: not a UTF-8 path", escape_path(dest))))?;
    let event = Event::new(Action::Rollback, &top).target(format!("files:{root}"));
    let result = swap(&args, &mut st, dest, &root, &top, &name, &path, listed);
    let (report, record) = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(l) = &log {
                l.append(&event.outcome_of(&e))?;
            }
            return Err(e);
        }
    };
    let mut event = event;
    event.rollback = Some(record);
    if let Some(l) = &log {
        l.append(&event.accepted())?;
    }
    let report = Report {
        state: super::StateReport::new(&paths, !args.dry_run),
        ..report
    };
    printer.report(&report, || {
        let verb = if report.dry_run {
            "would swap"
        } else {
            "swapped"
        };
        let mut s = format!(
            "{verb} {} back to the version of bundle {} ({})\n",
            escape_path(&top),
            escape(&report.restored.bundle_id),
            escape(&report.restored.path)
        );
        s += &format!(
            "  the version it replaces (bundle {}) {} kept at {}\n",
            escape(report.replaced.as_deref().unwrap_or(files::UNRECORDED)),
            if report.dry_run { "would be" } else { "is" },
            escape(&report.kept_at)
        );
        if report.dry_run {
            for k in &report.kept_versions {
                s += &format!(
                    "  kept: bundle {} at {}\n",
                    escape(&k.bundle_id),
                    escape(&k.path)
                );
            }
        }
        for c in &report.changed {
            s += &format!(
                "  changed since airlock wrote it (--force): {}\n",
                escape(c)
            );
        }
        s += &paths.lines(!report.dry_run, "dry run, nothing recorded");
        s
    });
    Ok(())
}

fn kept(name: &str, path: &Path) -> KeptVersion {
    KeptVersion {
        name: name.to_string(),
        bundle_id: version_bundle(name).to_string(),
        path: path.display().to_string(),
    }
}

/// Each regular file under `at` (itself, if a file): its place relative to `dest` and digest.
/// Anything else (a link, a FIFO) is a conflict naming it.
fn files_of(dest: &Path, at: &Path) -> Result<Vec<(String, Digest, u64)>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(at)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e.map_err(|e| {
            let p = e.path().unwrap_or(at).to_path_buf();
            Error::io("read", &p, e.into())
        })?;
        let t = e.file_type();
        if t.is_dir() {
            continue;
        }
        if !t.is_file() {
            return Err(Error::Conflict(format!(
                "{} is not a regular file; airlock did not write it: move it away",
                escape_path(e.path())
            )));
        }
        let rel = e
            .path()
            .strip_prefix(dest)
            .ok()
            .and_then(|r| r.to_str())
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "{} is not a UTF-8 name airlock wrote",
                    escape_path(e.path())
                ))
            })?;
        let (d, n) = fsutil::hash_file(e.path())?;
        out.push((rel.to_string(), d, n));
    }
    Ok(out)
}

/// The files of `found` whose digest is not the one recorded at their place (or that have
/// no record), each as `PATH (recorded R, found F)`.
fn changed(
    dest: &Path,
    found: &[(String, Digest, u64)],
    places: &HashMap<&str, (&Digest, &Location)>,
) -> Vec<String> {
    found
        .iter()
        .filter_map(|(rel, d, _)| {
            let shown = escape_path(&dest.join(rel));
            match places.get(rel.as_str()) {
                Some((r, _)) if *r == d => None,
                Some((r, _)) => Some(format!("{shown} (recorded {r}, found {d})")),
                None => Some(format!("{shown} (no record, found {d})")),
            }
        })
        .collect()
}

/// The bundle most of the files at these places were recorded by (the newest on a tie).
fn writer(
    found: &[(String, Digest, u64)],
    places: &HashMap<&str, (&Digest, &Location)>,
    h: &HoldingsFile,
) -> Option<String> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (rel, _, _) in found {
        if let Some((_, l)) = places.get(rel.as_str()) {
            *count.entry(l.bundle_id.as_str()).or_default() += 1;
        }
    }
    let order = |id: &str| h.bundles.iter().position(|b| b.bundle_id == id);
    count
        .into_iter()
        .max_by_key(|(id, n)| (*n, order(id)))
        .map(|(id, _)| id.to_string())
}

#[allow(clippy::too_many_arguments)]
fn swap(
    args: &RollbackArgs,
    st: &mut State,
    dest: &Path,
    root: &str,
    top: &Path,
    name: &str,
    kept_path: &Path,
    listed: Vec<KeptVersion>,
) -> Result<(Report, RollbackRecord)> {
    let h = st.holdings()?;
    let places = h.places(StoreKind::Files, root);
    let current = files_of(dest, top)?;
    let restored = files_of(dest, kept_path)?;
    let mut bad = changed(dest, &current, &places);
    bad.extend(changed(dest, &restored, &places));
    if !bad.is_empty() && !args.force {
        return Err(Error::Conflict(format!(
            "changed since airlock wrote them: {}; restore them, or give --force to swap anyway",
            bad.join("; ")
        )));
    }
    let replaced = writer(&current, &places, h);
    let new_name = format!(
        "{:020}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        replaced.as_deref().unwrap_or(files::UNRECORDED)
    );
    let new_kept: PathBuf = kept_path.with_file_name(&new_name);
    let record = RollbackRecord {
        artifact: args.artifact.clone(),
        path: top.display().to_string(),
        restored: version_bundle(name).to_string(),
        replaced: replaced.clone(),
        kept: new_kept.display().to_string(),
        forced: !bad.is_empty(),
    };
    let report = Report {
        dry_run: args.dry_run,
        artifact: args.artifact.clone(),
        path: top.display().to_string(),
        restored: kept(name, kept_path),
        replaced: replaced.clone(),
        kept_at: new_kept.display().to_string(),
        forced: !bad.is_empty(),
        changed: bad,
        kept_versions: listed,
        state: super::StateReport {
            state_dir: String::new(),
            state_dir_chosen: super::Chosen::Option,
            audit_log: None,
        },
    };
    if args.dry_run {
        return Ok((report, record));
    }
    // What the places hold once swapped: the restored files at the artifact's places, the
    // replaced ones where they are now kept.
    let top_rel = args.artifact.as_str();
    let kept_rel = kept_path
        .strip_prefix(dest)
        .ok()
        .and_then(|p| p.to_str())
        .unwrap_or_default()
        .to_string();
    let new_kept_rel = new_kept
        .strip_prefix(dest)
        .ok()
        .and_then(|p| p.to_str())
        .unwrap_or_default()
        .to_string();
    let restored_by = version_bundle(name).to_string();
    let moved = |from: &str, to: &str, list: &[(String, Digest, u64)], by: &str| {
        list.iter()
            .map(|(rel, d, n)| {
                let inner = rel.strip_prefix(from).unwrap_or(rel);
                let bundle_id = places
                    .get(rel.as_str())
                    .map(|(_, l)| l.bundle_id.clone())
                    .unwrap_or_else(|| by.to_string());
                (
                    rel.clone(),
                    *d,
                    Location {
                        store: StoreKind::Files,
                        root: root.to_string(),
                        path: format!("{to}{inner}"),
                        size: *n,
                        bundle_id,
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    let fallback = replaced.clone().unwrap_or_else(|| restored_by.clone());
    let mut changes = moved(top_rel, &new_kept_rel, &current, &fallback);
    changes.extend(moved(&kept_rel, top_rel, &restored, &restored_by));
    // Holdings validate bundle ids: a version airlock had no record of is not recorded.
    changes.retain(|(_, _, l)| {
        l.bundle_id.len() == 32 && l.bundle_id.bytes().all(|b| b.is_ascii_hexdigit())
    });

    files::exchange(kept_path, top).map_err(|e| Error::io("swap in", top, e))?;
    if let Err(e) = std::fs::rename(kept_path, &new_kept) {
        let back = files::exchange(kept_path, top);
        return Err(Error::io(
            if back.is_ok() {
                "keep the replaced version at (swapped back)"
            } else {
                "keep the replaced version at (could not swap back: see the kept versions)"
            },
            &new_kept,
            e,
        ));
    }
    if let Some(parent) = top.parent() {
        fsutil::sync_dir(parent)?;
    }
    if let Some(parent) = new_kept.parent() {
        fsutil::sync_dir(parent)?;
    }
    st.write_holdings(|h| {
        for (old, _, l) in &changes {
            h.forget(StoreKind::Files, root, old);
            h.forget(StoreKind::Files, root, &l.path);
        }
        for (_, d, l) in changes {
            h.add(d, l);
        }
    })?;
    Ok((report, record))
}
