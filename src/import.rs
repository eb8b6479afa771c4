//! The import pipeline, in the library: one function that every target goes through.
//!
//! Order (each step only after the previous one passed; ARCHITECTURE.md states it as an
//! invariant):
//!
//! 1. the audit log is checked (opened without following links, regular, whole chain intact);
//! 2. **admission**: signatures, trust policy, manifest, `SHA256SUMS` and the bundle's file set
//!    (`bundle::verify::verify_manifest`, which reads no chunk), then freshness against the
//!    state (locked until the import is recorded) → [`Admitted`];
//! 3. **selection, routing and plans**: `--only`/`--skip` ([`Selection`]) pick artifacts from
//!    the verified manifest (a pattern matching none is a usage error); every selected artifact
//!    goes to the targets made for its kind (the files target takes the rest); each target
//!    plans, reading its destination: conflicts abort here. Artifacts left out are planned by
//!    no target, so their blobs are not staged and their chunks not read;
//! 4. remote targets are **probed** (reachable, authenticated, push permitted);
//! 5. **preflight**: each target filesystem has room for what will be staged there;
//! 6. the `started` record (the final record proven to fit);
//! 7. **staging**: every blob needed read once from the media, verified as it streams, into a
//!    staging area on each target's filesystem, then one flush per filesystem; the registry
//!    uploads its blobs (unreferenced, they name nothing);
//! 8. **commit**: every target's content, one flush, every target's names (refs, manifests,
//!    tags, `index.json` — registry tags last), one flush. A failure (or SIGINT/SIGTERM) in 7
//!    or 8 rolls back every target and removes the staging;
//! 9. the state records the acceptance, then the `accepted` record.
//!
//! A rejection at any step is audited as `rejected` (the content) or `failed` (operational:
//! disk, network) — the audit module decides from the error.

use std::cell::Cell;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::audit::{Action as Audited, AuditLog, Event};
use crate::bundle::{self, Problem, SignerInfo, VerifyOptions};
use crate::error::{Error, Result};
use crate::format::text::escape;
use crate::format::{Artifact, Manifest};
use crate::fsutil;
use crate::interrupt;
use crate::media::{self, Media};
use crate::policy::TrustPolicy;
use crate::progress::Progress;
use crate::stage::{self, Admitted, Journal, Staging};
use crate::state::{Decision, State};
use crate::targets::Target;

/// What an import needs besides its targets.
pub struct Settings {
    /// The bundle directory (as reports name it: the directory given, the first of several
    /// volume directories, or the mount point).
    pub dir: PathBuf,
    /// Version 4: the volume directories given (any order; empty: `dir` alone).
    pub volumes: Vec<PathBuf>,
    /// `--media MOUNTPOINT`: the volumes inserted one after another at `dir`.
    pub media: Option<Arc<Media>>,
    /// Where notes to the operator go (resumed volumes); `None`: nowhere (library use).
    pub notes: Option<crate::output::Printer>,
    pub policy: TrustPolicy,
    pub verify: VerifyOptions,
    pub state_dir: PathBuf,
    pub audit_log: PathBuf,
    /// Create the state directory (private) if it is missing (the default location).
    pub create_state_dir: bool,
    pub dry_run: bool,
    pub allow_rollback: bool,
    /// Which artifacts to import (`--only` / `--skip`); empty: all of them.
    pub select: Selection,
}

/// `--only NAME` / `--skip NAME` patterns over artifact names (the manifest's `name`, as
/// `inspect` shows it), with the globs pack's Hugging Face `include` uses (`*`, `?`, `[...]`;
/// [`crate::hf::glob::Pattern`]). An artifact is selected when no `--only` is given or one
/// matches it, and no `--skip` matches it. A pattern that matches no artifact of the bundle is
/// a usage error naming it.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub only: Vec<String>,
    pub skip: Vec<String>,
}

/// Which artifacts an import takes: per artifact of the manifest, whether it is selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub chosen: Vec<bool>,
}

impl Selected {
    /// Whether every artifact of the bundle is imported.
    pub fn is_whole(&self) -> bool {
        self.chosen.iter().all(|&c| c)
    }
    pub fn count(&self) -> usize {
        self.chosen.iter().filter(|&&c| c).count()
    }
    /// The names of the selected (`true`) or left-out (`false`) artifacts, in manifest order.
    pub fn names<'m>(&self, m: &'m Manifest, selected: bool) -> Vec<&'m str> {
        m.artifacts
            .iter()
            .zip(&self.chosen)
            .filter(|(_, &c)| c == selected)
            .map(|(a, _)| a.name.as_str())
            .collect()
    }
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.only.is_empty() && self.skip.is_empty()
    }

    /// Applies the patterns to the artifacts of `m`.
    pub fn apply(&self, m: &Manifest) -> Result<Selected> {
        use crate::hf::glob::Pattern;
        let compile = |ps: &[String]| ps.iter().map(|p| Pattern::new(p)).collect::<Vec<_>>();
        let (only, skip) = (compile(&self.only), compile(&self.skip));
        let names: Vec<&str> = m.artifacts.iter().map(|a| a.name.as_str()).collect();
        for (flag, pats) in [("--only", &only), ("--skip", &skip)] {
            if let Some(p) = pats.iter().find(|p| !names.iter().any(|n| p.matches(n))) {
                let known: Vec<String> = names.iter().map(|n| escape(n).to_string()).collect();
                return Err(Error::Usage(format!(
                    "{flag} {}: no artifact of this bundle is named so; its artifacts are: {}",
                    escape(p.as_str()),
                    known.join(", ")
                )));
            }
        }
        let chosen: Vec<bool> = names
            .iter()
            .map(|n| {
                (only.is_empty() || only.iter().any(|p| p.matches(n)))
                    && !skip.iter().any(|p| p.matches(n))
            })
            .collect();
        if !chosen.iter().any(|&c| c) {
            return Err(Error::Usage(
                "--only/--skip leave no artifact of this bundle to import".into(),
            ));
        }
        Ok(Selected { chosen })
    }
}

/// A finished (or, for a dry run, planned) import: the bundle and the targets with their plans
/// and what they did, for the report.
pub struct Outcome {
    pub bundle: Admitted,
    pub targets: Vec<Box<dyn Target>>,
    /// The artifacts imported (all of them unless `--only`/`--skip` was given).
    pub selected: Selected,
}

/// Names of the signers a policy knows, for audit records.
pub fn signer_name(signers: &[SignerInfo]) -> impl Fn(&str) -> Option<String> + '_ {
    move |id| {
        signers
            .iter()
            .find(|s| s.key_id == id)
            .and_then(|s| s.name.clone())
    }
}

/// The problem a freshness decision rejects a bundle for, if any.
pub fn freshness_problem(m: &Manifest, d: &Decision) -> Option<Problem> {
    match d {
        Decision::Rollback { sequence, last } => Some(Problem::Rollback {
            channel: m.channel.clone(),
            sequence: *sequence,
            last: *last,
        }),
        Decision::SequenceReused { sequence, .. } => Some(Problem::SequenceReused {
            channel: m.channel.clone(),
            sequence: *sequence,
        }),
        Decision::Fresh { .. } | Decision::SameAsAccepted { .. } => None,
    }
}

/// `event`, marked partial when the selection leaves artifacts out.
fn partial(event: Event, selection: &Result<Selected>, m: &Manifest) -> Event {
    match selection {
        Ok(sel) if !sel.is_whole() => event.partial(&sel.names(m, true), &sel.names(m, false)),
        _ => event,
    }
}

/// Which chosen targets take each selected artifact (indices into `manifest.artifacts`, per
/// target); a selected artifact no target takes is a usage error naming it. Artifacts left out
/// are routed nowhere: no target plans them, so none of their blobs is staged and their chunks
/// are not read.
fn route(m: &Manifest, targets: &[Box<dyn Target>], sel: &Selected) -> Result<Vec<Vec<usize>>> {
    let mut routed = vec![Vec::new(); targets.len()];
    let mut homeless = Vec::new();
    for (i, a) in m.artifacts.iter().enumerate() {
        if !sel.chosen[i] {
            continue;
        }
        let native: Vec<usize> = (0..targets.len())
            .filter(|&t| targets[t].accepts(a.kind))
            .collect();
        let chosen = if native.is_empty() {
            (0..targets.len())
                .filter(|&t| targets[t].fallback())
                .collect()
        } else {
            native
        };
        if chosen.is_empty() {
            homeless.push(a);
        }
        for t in chosen {
            routed[t].push(i);
        }
    }
    if !homeless.is_empty() {
        let names: Vec<String> = homeless
            .iter()
            .map(|a: &&Artifact| format!("{} ({})", escape(&a.name), a.kind.as_str()))
            .collect();
        return Err(Error::Usage(format!(
            "no target given for {}; name one (see --help) or give --files DEST",
            names.join(", ")
        )));
    }
    Ok(routed)
}

/// Runs an import of `s.dir` into `targets`.
pub fn run(
    s: &Settings,
    mut targets: Vec<Box<dyn Target>>,
    progress: &dyn Progress,
) -> Result<Outcome> {
    interrupt::install().map_err(|e| Error::Other(format!("cannot handle signals: {e}")))?;
    // 1. Every decision of a real import is audited; a dry run decides nothing. Before anything
    // is written anywhere, the log must be usable (it stays open: appends go to the file
    // checked).
    let log = if s.dry_run {
        None
    } else {
        if s.create_state_dir {
            crate::state::create_private_dir(&s.state_dir)?;
        }
        Some(AuditLog::open_checked(&s.audit_log)?)
    };
    let audit = |e: &Event| -> Result<()> {
        if let Some(l) = &log {
            l.append(e)?;
        }
        Ok(())
    };
    // 2. Admission: every directory given (each volume of a bundle over several) verified.
    // A dry run reads every chunk, so that "verified" in its report means what it says.
    let verified = if s.volumes.len() > 1 {
        verify_given(&s.volumes, s, progress)
    } else if s.dry_run {
        bundle::verify::verify_policy(&s.dir, &s.policy, &s.verify, progress)
    } else {
        bundle::verify::verify_manifest(&s.dir, &s.policy, &s.verify, progress)
    }
    .map(|mut vb| {
        // A single volume locates itself, so that its chunks are found and the others are
        // known to be missing.
        if vb.manifest().is_multi_volume() && vb.volume_dir(vb.volume().unwrap_or(1)).is_none() {
            let n = vb.volume().unwrap_or(1);
            let dir = vb.dir().to_path_buf();
            vb.relocate(n, dir);
        }
        vb
    });
    let vb = match verified {
        Ok(vb) => vb,
        Err(e) => {
            audit(&Event::for_unverified(Audited::Import, &s.dir, &e))?;
            return Err(e);
        }
    };
    let opened = if s.dry_run {
        State::open_read_only(&s.state_dir)
    } else {
        State::open(&s.state_dir)
    };
    let mut st = match opened {
        Ok(st) => st,
        Err(e) => {
            audit(
                &Event::for_bundle(Audited::Import, &vb)
                    .signer_names(&signer_name(vb.signers()))
                    .rejected_by(&e),
            )?;
            return Err(e);
        }
    };
    let mut bundle = match stage::admit(vb, &st, s.allow_rollback) {
        Ok(a) => a,
        Err(refused) => {
            let (vb, decision) = *refused;
            let problem = freshness_problem(vb.manifest(), &decision)
                .expect("a decision that does not permit is a rejection");
            let err = Error::Rejected {
                dir: s.dir.clone(),
                problems: vec![problem],
            };
            let event = Event::for_bundle(Audited::Import, &vb)
                .signer_names(&signer_name(vb.signers()))
                .freshness(&decision, s.allow_rollback);
            let selection = s.select.apply(vb.manifest());
            audit(&partial(event, &selection, vb.manifest()).rejected_by(&err))?;
            return Err(err);
        }
    };
    // Which artifacts: decided from the verified manifest, before any chunk is read.
    let selection = s.select.apply(bundle.manifest());
    let event = Event::for_bundle(Audited::Import, bundle.bundle())
        .signer_names(&signer_name(bundle.bundle().signers()))
        .freshness(bundle.decision(), s.allow_rollback);
    let mut event = partial(event, &selection, bundle.manifest());
    // Version 4 with parity volumes: needed data volumes not given are rebuilt from the others
    // into a scratch directory under the state directory (every rebuilt chunk checked against
    // its signed digests; removed when the import ends, whatever its outcome). From one drive
    // the volumes are not all at hand: they are asked for instead.
    let mut _scratch = None;
    if let (Ok(sel), None) = (&selection, &s.media) {
        let missing = missing_needed(bundle.bundle(), sel);
        let parity = bundle
            .manifest()
            .volumes
            .as_ref()
            .is_some_and(|v| v.parity.is_some());
        if !missing.is_empty() && parity {
            match bundle::parity::rebuild_for_import(
                bundle.bundle_mut(),
                &missing,
                &s.state_dir,
                progress,
            ) {
                Ok(Some((rebuilt, scratch))) => {
                    if let Some(p) = &s.notes {
                        p.note(&rebuilt_note(&rebuilt));
                    }
                    event = event.rebuilt(&rebuilt);
                    _scratch = Some(scratch);
                }
                Ok(None) => {}
                Err(e) => {
                    audit(&event.clone().rejected_by(&e))?;
                    return Err(e);
                }
            }
        }
    }
    let event = event;
    // Once the `started` record is written, the rejection names it.
    let started: Cell<Option<u64>> = Cell::new(None);
    let fail = |e: Error| -> Error {
        let _ = audit(&event.clone().rejected_by(&e).completing(started.get()));
        e
    };

    // 3. Selection, routing and plans; 4. probes.
    let selected = selection.map_err(fail)?;
    // Version 4: the data volumes holding chunks this import needs must all be there before
    // any chunk is read (planning reads some), unless one drive is prompted for them.
    let missing = missing_needed(bundle.bundle(), &selected);
    if let Some(m) = &s.media {
        m.admitted(bundle.bundle().volume().unwrap_or(1));
        bundle.set_access(Box::new(Arc::clone(m)));
    } else if let Some(p) = &s.notes {
        bundle.set_access(Box::new(media::Given(crate::output::Printer {
            json: p.json,
            quiet: p.quiet,
        })));
    }
    let interactive = s.media.as_ref().is_some_and(|m| m.interactive());
    if !missing.is_empty() && !interactive {
        return Err(fail(missing_error(
            bundle.bundle(),
            &missing,
            s.media.as_deref(),
        )));
    }
    let routed = route(bundle.manifest(), &targets, &selected).map_err(fail)?;
    {
        let held = st.holdings().map_err(fail)?;
        for t in targets.iter_mut() {
            t.recorded(held);
        }
    }
    // Version 5: where each external blob (not carried) was recorded on this machine, before
    // planning (which reads some blobs whole: image manifests, configs).
    let sources = external_sources(&bundle, &mut st, s).map_err(fail)?;
    bundle.set_sources(sources);
    let planned = (|| {
        for (t, arts) in targets.iter_mut().zip(&routed) {
            t.plan(&bundle, arts)?;
        }
        Ok(())
    })();
    if let Err(e) = planned {
        forget_altered(&bundle, &mut st, s);
        return Err(fail(e));
    }
    if s.dry_run {
        // Local targets know already what their stores lack (the registry only once probed).
        let local: Vec<&dyn Target> = targets
            .iter()
            .filter(|t| t.demand().is_some())
            .map(|t| t.as_ref())
            .collect();
        available(&bundle, &local)?;
        return Ok(Outcome {
            bundle,
            targets,
            selected,
        });
    }
    for t in targets.iter_mut() {
        t.probe().map_err(fail)?;
    }
    // Version 5: every external blob a target needs (its store lacks it) is at a recorded
    // place on this machine, else nothing is written.
    let all: Vec<&dyn Target> = targets.iter().map(|t| t.as_ref()).collect();
    if let Err(e) = available(&bundle, &all) {
        forget_altered(&bundle, &mut st, s);
        return Err(fail(e));
    }
    let log = log.as_ref().expect("a real import has a log");
    let mut demands: Vec<_> = targets.iter().filter_map(|t| t.demand()).collect();
    // A target that reads rather than stages (the registry) gets its external blobs staged
    // under the state directory: copied from their recorded places with their digests
    // re-checked, then pushed from there.
    {
        let have: HashSet<crate::format::Digest> = demands
            .iter()
            .flat_map(|d| d.needs.iter().map(|n| n.digest))
            .collect();
        let mut needs: Vec<stage::Need> = Vec::new();
        for t in targets.iter().filter(|t| t.demand().is_none()) {
            for d in t.reads() {
                if bundle.is_external(&d)
                    && !have.contains(&d)
                    && !needs.iter().any(|n| n.digest == d)
                {
                    needs.push(stage::Need {
                        digest: d,
                        git_sha1: None,
                    });
                }
            }
        }
        if !needs.is_empty() {
            demands.push(stage::Demand {
                root: s.state_dir.clone(),
                needs,
            });
        }
    }
    // From one drive, a target that reads blobs rather than staging them (the registry) would
    // read its volumes again after the staging pass: its blobs are staged too, under the
    // state directory.
    if s.media.is_some() && targets.iter().any(|t| t.demand().is_none()) {
        let have: HashSet<crate::format::Digest> = demands
            .iter()
            .flat_map(|d| d.needs.iter().map(|n| n.digest))
            .collect();
        let needs: Vec<stage::Need> = needed_blobs(bundle.manifest(), &selected)
            .into_iter()
            .filter(|d| !have.contains(d))
            .map(|digest| stage::Need {
                digest,
                git_sha1: None,
            })
            .collect();
        if !needs.is_empty() {
            demands.push(stage::Demand {
                root: s.state_dir.clone(),
                needs,
            });
        }
    }
    // 5. Preflight: staging takes the space the final files take.
    preflight(&bundle, &demands).map_err(fail)?;

    // 6. The start of the writes is on record, and the acceptance record is known to fit,
    // before any target is touched; a crash from here on leaves this `started` record without
    // an outcome, which `audit verify` reports.
    let done = event.clone().accepted();
    started.set(Some(log.begin(&event, &done).map_err(fail)?));

    // 7 and 8: stage, then commit; any failure rolls everything back. From the first commit
    // step (or the start of a rollback) to the audit record, a forced stop waits.
    let mut hold = None;
    let committed = commit(&bundle, &mut targets, demands, &mut hold, progress);
    if let Err(e) = committed {
        forget_altered(&bundle, &mut st, s);
        return Err(fail(e));
    }

    // 9. Commit, then its record (the order a crash must see: an advanced state with a
    // `started` record is detectable; an `accepted` record without the state is not).
    let m = bundle.manifest();
    st.record_accepted(
        &m.channel,
        m.sequence,
        &m.bundle_id,
        &bundle.bundle().manifest_digest(),
    )
    .map_err(fail)?;
    // Where every blob now lives (or was found), for later delta imports; a hint, so a failure
    // to record it does not undo the import.
    record_holdings(&bundle, &targets, &mut st, s);
    log.append(&done.completing(started.get())).map_err(|e| {
        Error::Other(format!(
            "the import completed and the state records it, but its audit record could not be appended ({e}); record {} of {} (`started`) stands without its outcome",
            started.get().unwrap_or_default(),
            escape(&log.path().display().to_string())
        ))
    })?;
    Ok(Outcome {
        bundle,
        targets,
        selected,
    })
}

/// Version 5: per external blob of the bundle, the places on this machine `holdings.json`
/// records it at (local stores only) whose file is still a regular file of its size. Not
/// hashed here: each is re-hashed when read, and one that does not match is named and not used.
///
/// A base bundle this enclave never accepted is no reason to refuse: every external blob is
/// found in place or at a recorded place and checked against the digest the signed manifest
/// gives, so where it came from does not matter (a note says so).
fn external_sources(
    bundle: &Admitted,
    st: &mut State,
    s: &Settings,
) -> Result<std::collections::HashMap<crate::format::Digest, Vec<stage::Source>>> {
    let mut out = std::collections::HashMap::new();
    if let Some(p) = &s.notes {
        let holdings = st.holdings()?;
        for base in &bundle.manifest().bases {
            if base.kind == crate::format::BaseKind::Bundle
                && holdings.accepted(&base.id, &base.manifest_digest).is_none()
            {
                p.note(&format!(
                    "this delta's {} is not among the bundles this enclave recorded accepting; its blobs are taken from wherever they are found here, each checked against this bundle's signed digests",
                    describe_base(base)
                ));
            }
        }
    }
    let externals: Vec<&crate::format::Blob> = bundle
        .manifest()
        .blobs
        .iter()
        .filter(|b| stage::is_external(b))
        .collect();
    if externals.is_empty() {
        return Ok(out);
    }
    let holdings = st.holdings()?;
    for b in externals {
        let found: Vec<stage::Source> = holdings
            .locations(&b.digest)
            .iter()
            .rev()
            .filter(|l| l.size == b.size)
            .filter_map(|l| {
                let path = l.local_path()?;
                let m = std::fs::symlink_metadata(&path).ok()?;
                (m.is_file() && m.len() == b.size).then(|| stage::Source {
                    path,
                    location: l.clone(),
                })
            })
            .collect();
        if !found.is_empty() {
            out.insert(b.digest, found);
        }
    }
    Ok(out)
}

/// Version 5: every external blob some target reads (its store does not hold it) has a
/// recorded place to be copied from; otherwise the one missing-base error listing them all.
fn available(bundle: &Admitted, targets: &[&dyn Target]) -> Result<()> {
    let mut missing: BTreeSet<crate::format::Digest> = BTreeSet::new();
    for t in targets {
        for d in t.reads() {
            if bundle.is_external(&d) && bundle.sources(&d).is_empty() {
                missing.insert(d);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(missing_base(
        bundle,
        &missing.into_iter().collect::<Vec<_>>(),
    ))
}

/// The missing-base error for one external blob that no recorded place holds.
pub(crate) fn missing_one(bundle: &Admitted, digest: &crate::format::Digest) -> Error {
    missing_base(bundle, &[*digest])
}

/// The catch-up advice of every missing-base error.
pub const CATCH_UP: &str = "ask the connected side for a delta against a bundle this enclave imported (`airlock audit show` lists them), or for a full bundle";

/// One error naming each missing external blob (digest, size), the artifacts that need it and
/// the base that showed the packer the enclave holds it, then every recorded place found
/// altered, and how to catch up. Nothing was written (exit 3).
fn missing_base(bundle: &Admitted, missing: &[crate::format::Digest]) -> Error {
    let m = bundle.manifest();
    let list: Vec<String> = missing
        .iter()
        .map(|d| {
            let size = bundle.blob(d).map_or(0, |b| b.size);
            let needed: Vec<String> = m
                .artifacts
                .iter()
                .filter(|a| a.entries.iter().any(|e| e.blob == Some(*d)))
                .map(|a| escape(&a.name).to_string())
                .collect();
            let needed = if needed.is_empty() {
                String::new()
            } else {
                format!(", needed by {}", needed.join(", "))
            };
            let base = bundle
                .blob(d)
                .and_then(|b| base_of(m, b))
                .map(|b| format!("; provided by {b}"))
                .unwrap_or_default();
            format!("{d} ({size} bytes{needed}{base})")
        })
        .collect();
    let altered: Vec<String> = bundle
        .altered()
        .iter()
        .map(|a| {
            format!(
                "{} (recorded for {}) holds other bytes ({}): not used, and forgotten",
                escape(&a.path.display().to_string()),
                a.digest,
                escape(&a.found)
            )
        })
        .collect();
    let altered = if altered.is_empty() {
        String::new()
    } else {
        format!("; {}", altered.join("; "))
    };
    Error::MissingBase(format!(
        "this delta bundle does not carry {} that this enclave does not hold (not in the target's store, nor at a place airlock recorded on this machine): {}{altered}; {CATCH_UP}; nothing was written",
        if missing.len() == 1 {
            "a blob".to_string()
        } else {
            format!("{} blobs", missing.len())
        },
        list.join("; ")
    ))
}

/// The base an external blob names: `base bundle ID (channel C, sequence N)` or `the
/// inventory ID …`.
fn base_of(m: &Manifest, b: &crate::format::Blob) -> Option<String> {
    let base = m.bases.get(b.external? as usize)?;
    Some(describe_base(base))
}

/// `base bundle ID (channel C, sequence N)`, or `the inventory ID (…)`.
fn describe_base(base: &crate::format::Base) -> String {
    let what = match base.kind {
        crate::format::BaseKind::Bundle => "base bundle",
        crate::format::BaseKind::Inventory => "the enclave inventory",
    };
    format!(
        "{what} {} (channel {}, sequence {})",
        escape(&base.id),
        escape(&base.channel),
        base.sequence
    )
}

/// Recorded places found altered during this import are forgotten (under the state's lock) and
/// named to the operator.
fn forget_altered(bundle: &Admitted, st: &mut State, s: &Settings) {
    let altered = bundle.altered();
    if altered.is_empty() || s.dry_run {
        return;
    }
    if let Some(p) = &s.notes {
        for a in &altered {
            p.note(&format!(
                "{} was recorded as blob {} but holds other bytes ({}): not used, and forgotten",
                escape(&a.path.display().to_string()),
                a.digest,
                escape(&a.found)
            ));
        }
    }
    let _ = st.write_holdings(|h| {
        for a in &altered {
            h.forget(a.location.store, &a.location.root, &a.location.path);
        }
    });
}

/// After a completed import: the bundle and where each target put (or found) its blobs, in
/// `holdings.json`; altered places found on the way forgotten. A failure to write it is a
/// note, not a failure of the import (a location is a hint).
fn record_holdings(bundle: &Admitted, targets: &[Box<dyn Target>], st: &mut State, s: &Settings) {
    forget_altered(bundle, st, s);
    let m = bundle.manifest();
    let held = crate::state::HeldBundle {
        channel: m.channel.clone(),
        sequence: m.sequence,
        bundle_id: m.bundle_id.clone(),
        manifest_digest: bundle.bundle().manifest_digest(),
        time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    let locations: Vec<_> = targets.iter().flat_map(|t| t.locations(bundle)).collect();
    let forgotten: Vec<_> = targets.iter().flat_map(|t| t.forgotten()).collect();
    let recorded = st.write_holdings(|h| {
        for (store, root, path) in &forgotten {
            h.forget(*store, root, path);
        }
        h.record(held, locations);
    });
    if let Err(e) = recorded {
        if let Some(p) = &s.notes {
            p.note(&format!(
                "the import completed, but where its blobs are could not be recorded ({e}); a later delta import may not find them"
            ));
        }
    }
}

/// Steps 7 and 8 for planned (and probed) targets: stage every blob they need, then commit them
/// all; on any failure (or SIGINT/SIGTERM) every target is rolled back and the staging removed.
fn commit(
    bundle: &Admitted,
    targets: &mut [Box<dyn Target>],
    demands: Vec<stage::Demand>,
    hold: &mut Option<interrupt::Hold>,
    progress: &dyn Progress,
) -> Result<()> {
    let mut staging = Staging::open(demands)?;
    let mut journal = Journal::default();
    let result = stage_and_commit(bundle, targets, &mut staging, &mut journal, hold, progress);
    if let Err(mut e) = result {
        hold.get_or_insert_with(interrupt::hold);
        // A stop request wins: whatever failed after it was asked for is its consequence.
        if let Some(signal) = interrupt::requested() {
            e = Error::Interrupted { signal };
        }
        let unrolled = journal.rollback();
        // Stopped while waiting for a volume (nothing committed): what was staged stays,
        // invisible, for the next run to adopt (re-hashed) instead of reading its volumes again.
        if bundle.access().is_some_and(|a| a.stopped_waiting()) && unrolled.is_empty() {
            staging.keep();
            return Err(e);
        }
        staging.remove();
        if unrolled.is_empty() {
            return Err(e);
        }
        return Err(Error::Other(format!(
            "{e}; rolling back, these could not be undone: {}",
            unrolled.join("; ")
        )));
    }
    staging.finish()?;
    for t in targets.iter_mut() {
        t.cleanup();
    }
    Ok(())
}

/// Stages and commits targets already planned, without the state or the audit log (library
/// use and tests; `airlock import` goes through [`run`]): probes, preflight, staging, commit,
/// all or nothing.
pub fn execute(
    bundle: &Admitted,
    mut targets: Vec<Box<dyn Target>>,
    progress: &dyn Progress,
) -> Result<Vec<Box<dyn Target>>> {
    for t in targets.iter_mut() {
        t.probe()?;
    }
    let demands: Vec<_> = targets.iter().filter_map(|t| t.demand()).collect();
    preflight(bundle, &demands)?;
    commit(bundle, &mut targets, demands, &mut None, progress)?;
    Ok(targets)
}

fn stage_and_commit(
    bundle: &Admitted,
    targets: &mut [Box<dyn Target>],
    staging: &mut Staging,
    j: &mut Journal,
    hold: &mut Option<interrupt::Hold>,
    progress: &dyn Progress,
) -> Result<()> {
    staging.stage(bundle, progress)?;
    staging.sync()?;
    for t in targets.iter_mut() {
        t.stage(bundle, staging, progress)?;
    }
    interrupt::check()?;
    *hold = Some(interrupt::hold());
    for t in targets.iter_mut() {
        t.commit_content(staging, j)?;
    }
    staging.sync()?;
    for t in targets.iter_mut() {
        t.commit_names(staging, j)?;
    }
    staging.sync()?;
    Ok(())
}

/// Every target filesystem has room for what will be staged on it (staging takes the space the
/// final files take; a rename then costs nothing). A shortfall names the filesystem (by the
/// target directory on it), the bytes needed and the bytes available.
fn preflight(bundle: &Admitted, demands: &[stage::Demand]) -> Result<()> {
    use std::collections::HashMap;
    let mut by_fs: HashMap<u64, (PathBuf, u64)> = HashMap::new();
    for d in demands {
        let bytes: u64 = d
            .needs
            .iter()
            .map(|n| bundle.blob(&n.digest).map_or(0, |b| b.size))
            .sum();
        let probe = existing_ancestor(&d.root);
        let dev = device(&probe);
        by_fs.entry(dev).or_insert((probe, 0)).1 += bytes;
    }
    for (path, needed) in by_fs.values() {
        // Room for the directories and small files too.
        let needed = needed + (1 << 20);
        let available = fsutil::free_space(path)?;
        if available < needed {
            return Err(Error::Other(format!(
                "{}/: No space left on device for this import: it needs {} ({} bytes) on that filesystem, {} ({} bytes) are available",
                escape(&path.display().to_string()),
                crate::output::bytes(needed),
                needed,
                crate::output::bytes(available),
                available
            )));
        }
    }
    Ok(())
}

fn existing_ancestor(p: &Path) -> PathBuf {
    let mut cur = p;
    loop {
        if cur.exists() {
            return cur.to_path_buf();
        }
        match cur.parent() {
            Some(q) if !q.as_os_str().is_empty() => cur = q,
            _ => return PathBuf::from("."),
        }
    }
}

fn device(p: &Path) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).map(|m| m.dev()).unwrap_or(0)
    }
    #[cfg(not(unix))]
    {
        let _ = p;
        0
    }
}

/// Verifies the volume directories given and puts them together: any problem of any of them
/// (a volume of another bundle, one given twice, a damaged or misplaced file) rejects the
/// bundle; a directory that cannot be checked at all is an error naming it.
fn verify_given(
    dirs: &[PathBuf],
    s: &Settings,
    progress: &dyn Progress,
) -> Result<bundle::VerifiedBundle> {
    let set = bundle::verify::verify_volumes(dirs, &s.policy, &s.verify, s.dry_run, progress)?;
    let problems = set.problems();
    if !problems.is_empty() {
        let dir = set
            .outcomes
            .iter()
            .find(|o| !o.problems.is_empty())
            .map_or_else(|| s.dir.clone(), |o| o.dir.clone());
        return Err(Error::Rejected { dir, problems });
    }
    if let Some(o) = set.outcomes.iter().find(|o| o.error.is_some()) {
        return Err(Error::Other(format!(
            "{}: {}",
            escape(&o.dir.display().to_string()),
            o.error.as_deref().unwrap_or_default()
        )));
    }
    set.bundle
        .ok_or_else(|| Error::Other("no volume given verified".into()))
}

/// The blobs the selected artifacts' files are made of.
pub fn needed_blobs(m: &Manifest, selected: &Selected) -> BTreeSet<crate::format::Digest> {
    m.artifacts
        .iter()
        .zip(&selected.chosen)
        .filter(|(_, &c)| c)
        .flat_map(|(a, _)| a.entries.iter().filter_map(|e| e.blob))
        .collect()
}

/// The data volumes (1-based, in order) holding a chunk of a blob the selected artifacts need
/// that no directory given holds: what must still be inserted, or rebuilt from parity. Empty
/// for a bundle of one directory.
/// What a rebuild from parity did, said before the import goes on.
fn rebuilt_note(r: &bundle::parity::Rebuilt) -> String {
    let vols: Vec<String> = r.volumes.iter().map(|v| v.to_string()).collect();
    format!(
        "rebuilt volume{} {} from parity: {} chunk{} ({}), each checked against its signed digests",
        if vols.len() == 1 { "" } else { "s" },
        vols.join(", "),
        r.chunks.len(),
        if r.chunks.len() == 1 { "" } else { "s" },
        crate::output::bytes(r.bytes)
    )
}

pub fn missing_needed(b: &bundle::VerifiedBundle, selected: &Selected) -> Vec<u32> {
    let m = b.manifest();
    if !m.is_multi_volume() {
        return Vec::new();
    }
    let mut volumes = BTreeSet::new();
    for d in needed_blobs(m, selected) {
        if let Some(blob) = b.blob(&d) {
            volumes.extend(blob.segments.iter().map(|s| m.volume_of(s.chunk as usize)));
        }
    }
    volumes
        .into_iter()
        .filter(|&n| b.volume_dir(n).is_none())
        .collect()
}

/// The error for needed volumes not given: each by number and label.
fn missing_error(b: &bundle::VerifiedBundle, missing: &[u32], media: Option<&Media>) -> Error {
    let m = b.manifest();
    let list: Vec<String> = missing
        .iter()
        .map(|&n| {
            let r = m.volume_chunks(n);
            let chunks = match (m.chunks.get(r.start), r.end.checked_sub(1)) {
                (Some(f), Some(l)) if !r.is_empty() => {
                    format!(
                        "chunks {} to {}",
                        escape(&f.name),
                        escape(&m.chunks[l].name)
                    )
                }
                _ => "no chunks".to_string(),
            };
            format!("{} [{chunks}]", media::describe(m, n))
        })
        .collect();
    let how = match media {
        Some(md) => format!(
            "{} holds volume {}, and this run cannot prompt for the others (no terminal, or --json): run it on a terminal, or give every volume needed as a directory",
            escape(&md.mount().display().to_string()),
            b.volume().unwrap_or(1)
        ),
        None => "give their directories too (in any order), or import from one drive with --media MOUNTPOINT on a terminal".to_string(),
    };
    Error::Refused(format!(
        "this import needs {} not given: {}; {how}; nothing was written",
        if missing.len() == 1 {
            "a volume"
        } else {
            "volumes"
        },
        list.join("; ")
    ))
}
