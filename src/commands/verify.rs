use std::path::{Path, PathBuf};

use serde::Serialize;

use super::pack::BundleSummary;
use super::StateReport;
use crate::audit::{self, Action, Event};
use crate::bundle::{self, SignerInfo};
use crate::cli::VerifyArgs;
use crate::error::{DirProblems, Error, Result};
use crate::format::volumes::VolumeKind;
use crate::format::Manifest;
use crate::output::{self, escape, Printer};
use crate::problem::Problem;
use crate::state::State;
use crate::table::Table;

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Report {
    /// The whole bundle verified: every volume given checked out and (version 4) every volume
    /// of the bundle was given. False only with `complete: false` (exit 4).
    verified: bool,
    /// Every volume of the bundle was given and checked out (always true for a bundle of one
    /// directory). False: every volume given is intact but `missing_volumes` were not given
    /// (exit 4, intact but incomplete).
    complete: bool,
    #[serde(flatten)]
    bundle: BundleSummary,
    signers: Vec<SignerInfo>,
    /// Set when `expires` had passed, within the clock-skew allowance.
    expired_within_skew: Option<bundle::ExpiredWithinSkew>,
    /// Version 4: every volume of the bundle, in order (absent for a bundle of one directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    volumes: Option<Vec<VolumeStatus>>,
    /// Version 4: the volumes (1-based) not given, in order (absent for a bundle of one
    /// directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_volumes: Option<Vec<u32>>,
    #[serde(flatten)]
    state: StateReport,
}

/// One volume of a version 4 bundle, in verify's report.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct VolumeStatus {
    /// The volume's number (1-based).
    volume: u32,
    kind: VolumeKind,
    /// The directory it was found in, or null when it was not given.
    dir: Option<String>,
    status: Status,
}

/// What became of a volume.
#[derive(Serialize, schemars::JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Status {
    /// Given, and every check passed.
    Intact,
    /// Given, and something is wrong with it (shown with the problems of a rejection).
    Damaged,
    /// Not among the directories given.
    NotGiven,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Intact => "intact",
            Status::Damaged => "damaged",
            Status::NotGiven => "not given",
        }
    }
}

/// One line per signature found: who signed and what became of it, then the signature's file
/// name last (it is named by the media: escaped, and after the status so that it cannot pose as
/// one). A signature that did not verify is never shown under a trusted key's name.
pub(super) fn signer_lines(signers: &[SignerInfo]) -> String {
    signers
        .iter()
        .map(|s| {
            let shown_id = escape(&s.key_id);
            let (who, state) = match (s.trusted, s.valid, s.state.as_deref()) {
                (true, true, Some(why)) => (
                    None,
                    format!("valid, but the key is {}: not counted", escape(why)),
                ),
                (true, true, None) if s.counted => (None, "valid, trusted, counted".to_string()),
                (true, true, None) => (
                    None,
                    "valid, trusted, not a signer of this channel".to_string(),
                ),
                (true, false, _) => (
                    Some("?".to_string()),
                    format!("INVALID: claims trusted key {shown_id} but does not verify with it"),
                ),
                (false, _, _) => (None, "unknown key, not checked".to_string()),
            };
            let who = who.unwrap_or_else(|| match &s.name {
                Some(name) if *name != s.key_id => format!("{} ({shown_id})", escape(name)),
                _ => shown_id.to_string(),
            });
            format!("signer    {who} {state}: {}\n", escape(&s.file))
        })
        .collect()
}

pub fn run(args: VerifyArgs, printer: &Printer) -> Result<()> {
    let policy = super::load_policy(&args.trust)?;
    // A path that is not a bundle is a usage error, not a decision about a bundle: not audited.
    // A directory holding volumes (OUT/ with vol-001/ ...) stands for them.
    let (dirs, _) = bundle::verify::expand_volume_dirs(&args.dirs)?;
    let paths = super::state_paths(&args.state)?;
    // verify writes nothing but its audit record, and only where an audit log is kept already
    // (or one was named): on the connected side there is none.
    let audited = paths.log_chosen != super::Chosen::Default
        || paths.log.parent().is_some_and(|d| d.is_dir());
    let log = &paths.log;
    let audit = |e: Event| -> Result<()> {
        if audited {
            audit::append(log, &e)?;
        }
        Ok(())
    };
    let progress = printer.progress();
    let opts = super::verify_options();
    // One directory (a bundle, or one volume of a bundle over several), or several volumes.
    let (vb, located) = {
        let set = match bundle::verify::verify_volumes(&dirs, &policy, &opts, true, &progress) {
            Ok(set) => set,
            Err(e) => {
                audit(Event::for_unverified(Action::Verify, &dirs[0], &e))?;
                return Err(e);
            }
        };
        let damaged: Vec<DirProblems> = set
            .outcomes
            .iter()
            .map(|o| DirProblems {
                dir: o.dir.clone(),
                volume: o.volume,
                problems: o.problems.clone(),
                error: o.error.clone(),
            })
            .collect();
        let problems = set.problems();
        let Some(vb) = set.bundle else {
            // No directory verified; verify_volumes returned an error if none was damaged.
            let first = damaged
                .iter()
                .find(|d| !d.problems.is_empty())
                .map_or(&dirs[0], |d| &d.dir)
                .clone();
            let rejected = Error::Rejected {
                dir: first.clone(),
                problems,
            };
            audit(Event::for_unverified(Action::Verify, &first, &rejected))?;
            // One directory that is no known volume (a bundle of one directory, or one whose
            // signatures did not verify): the rejection of that bundle, as for any bundle.
            return Err(match damaged.as_slice() {
                [one] if one.volume.is_none() => rejected,
                _ => Error::VolumesRejected { dirs: damaged },
            });
        };
        if !problems.is_empty() || damaged.iter().any(|d| d.error.is_some()) {
            printer.note(&damaged_table(vb.manifest(), &damaged));
            let event = Event::for_bundle(Action::Verify, &vb)
                .signer_names(&super::signer_name(vb.signers()));
            let err = if problems.is_empty() {
                // Only I/O errors: an operational failure, not a rejection.
                let d = damaged.iter().find(|d| d.error.is_some()).expect("one");
                Error::Other(format!(
                    "cannot check {}: {}",
                    d.label(),
                    d.error.as_deref().unwrap_or("")
                ))
            } else {
                Error::VolumesRejected { dirs: damaged }
            };
            audit(if problems.is_empty() {
                event.outcome_of(&err)
            } else {
                event.rejected_for(&problems)
            })?;
            return Err(err);
        }
        let located: Vec<Option<PathBuf>> = (1..=vb.manifest().volume_count())
            .map(|n| vb.volume_dir(n).map(Path::to_path_buf))
            .collect();
        (vb, located)
    };
    // The directory the report names: the one path given, else the first volume verified.
    let shown_dir = match args.dirs.as_slice() {
        [one] => one.clone(),
        _ => vb.dir().to_path_buf(),
    };
    // Freshness against what this enclave accepted (read only: verify takes no lock).
    let st = match State::open_read_only(&paths.dir) {
        Ok(st) => st,
        Err(e) => {
            let event = Event::for_bundle(Action::Verify, &vb);
            audit(
                event
                    .signer_names(&super::signer_name(vb.signers()))
                    .outcome_of(&e),
            )?;
            return Err(e);
        }
    };
    let decision = st.check(vb.manifest(), &vb.manifest_digest());
    let event = Event::for_bundle(Action::Verify, &vb)
        .signer_names(&super::signer_name(vb.signers()))
        .freshness(&decision, false);
    if let Some(p) = super::freshness_problem(vb.manifest(), &decision) {
        let err = Error::Rejected {
            dir: shown_dir.clone(),
            problems: vec![p],
        };
        audit(event.rejected_by(&err))?;
        return Err(err);
    }
    let m = vb.manifest();
    let multi = m.is_multi_volume();
    let missing: Vec<u32> = (1..=m.volume_count())
        .filter(|&n| located[(n - 1) as usize].is_none())
        .collect();
    let complete = missing.is_empty();
    let incomplete = (!complete).then(|| {
        Error::Incomplete(format!(
            "intact but incomplete (exit 4): still to check: {}",
            volume_list(m.data_volume_count(), &missing)
        ))
    });
    audit(match &incomplete {
        None => event.accepted(),
        Some(e) => event.outcome_of(e),
    })?;
    let volumes: Option<Vec<VolumeStatus>> = multi.then(|| {
        (1..=m.volume_count())
            .map(|n| {
                let dir = located[(n - 1) as usize].as_ref();
                VolumeStatus {
                    volume: n,
                    kind: m.volume_kind(n),
                    dir: dir.map(|d| d.display().to_string()),
                    status: if dir.is_some() {
                        Status::Intact
                    } else {
                        Status::NotGiven
                    },
                }
            })
            .collect()
    });
    let report = Report {
        verified: complete,
        complete,
        bundle: BundleSummary::new(&shown_dir, m),
        signers: vb.signers().to_vec(),
        expired_within_skew: vb.expired_within_skew().cloned(),
        volumes,
        missing_volumes: multi.then(|| missing.clone()),
        state: StateReport::new(&paths, audited),
    };
    if let Some(skew) = &report.expired_within_skew {
        printer.note(&skew.note());
    }
    printer.report(&report, || {
        let intact: Vec<u32> = (1..=m.volume_count())
            .filter(|n| !missing.contains(n))
            .collect();
        // A delta (version 5): the external blobs are listed, not carried, so not checked.
        let external = m.external_blobs().count();
        let carried = m.blobs.len() - external;
        let not_checked = if external > 0 {
            format!(
                "; {external} external blobs ({}) are not carried, so not checked here",
                output::bytes(m.external_bytes())
            )
        } else {
            String::new()
        };
        let headline = match (&report.volumes, complete) {
            (None, _) => format!(
                "verified {}: signatures, {} chunks and {carried} blobs check out{not_checked}\n",
                output::escape_path(&shown_dir),
                report.bundle.chunks.len(),
            ),
            (Some(_), true) => format!(
                "bundle intact: all {} volumes verified (signatures, {} chunks and {carried} blobs check out{not_checked})\n",
                m.volume_count(),
                report.bundle.chunks.len(),
            ),
            (Some(_), false) => {
                incomplete_headline(m.data_volume_count(), m.volume_count(), &intact, &missing)
            }
        };
        let table = report.volumes.as_deref().map_or(String::new(), volume_table);
        format!(
            "{headline}{table}{}{}{}",
            signer_lines(&report.signers),
            report.bundle.text(),
            paths.lines(
                audited,
                "no audit log is kept here (verify appends only to an existing log's directory, or to --audit-log)"
            )
        )
    });
    match incomplete {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// `volume 2 (data)`, `volumes 1, 3 (data) and 4 (parity)`: volumes `ns` of a bundle whose
/// first `data` volumes are data volumes.
pub(super) fn volume_list(data: u32, ns: &[u32]) -> String {
    let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    let (d, p): (Vec<u32>, Vec<u32>) = ns.iter().partition(|&&n| n <= data);
    let mut parts = Vec::new();
    if !d.is_empty() {
        parts.push(format!("{} (data)", join(&d)));
    }
    if !p.is_empty() {
        parts.push(format!("{} (parity)", join(&p)));
    }
    let noun = if ns.len() == 1 { "volume" } else { "volumes" };
    format!("{noun} {}", parts.join(" and "))
}

/// The first line of an intact but incomplete verify: which volumes are intact, which are still
/// to check, and whether the data volumes are all there (the bundle can be imported then).
fn incomplete_headline(data: u32, total: u32, intact: &[u32], missing: &[u32]) -> String {
    let list = volume_list(data, intact);
    let (noun, rest) = list.split_once(' ').unwrap_or((&list, ""));
    let data_complete = missing.iter().all(|&n| n > data);
    format!(
        "{noun} {} intact; still to check: {}{}\n",
        rest.replacen(" (", &format!(" of {total} ("), 1),
        volume_list(data, missing),
        if data_complete {
            "\nthe data volumes are complete: the bundle can be imported without the parity volumes"
        } else {
            ""
        }
    )
}

/// The per-volume table (VOLUME, KIND, DIRECTORY, STATUS); every directory escaped.
fn volume_table(volumes: &[VolumeStatus]) -> String {
    let mut t = Table::new(&["VOLUME", "KIND", "DIRECTORY", "STATUS"])
        .right(0)
        .flexible(2);
    for v in volumes {
        t.row(vec![
            v.volume.to_string(),
            v.kind.as_str().to_string(),
            v.dir
                .as_deref()
                .map_or("-".to_string(), |d| escape(d).to_string()),
            v.status.as_str().to_string(),
        ]);
    }
    t.render(crate::table::terminal_width())
}

/// The table of a rejection of several directories, for stderr: every volume of the bundle
/// (intact, damaged or not given), then each damaged directory whose volume is unknown.
fn damaged_table(m: &Manifest, dirs: &[DirProblems]) -> String {
    let bad = |d: &DirProblems| !d.problems.is_empty() || d.error.is_some();
    let foreign = |d: &DirProblems| {
        d.problems
            .iter()
            .any(|p| matches!(p, Problem::ForeignVolume { .. }))
    };
    let mut t = Table::new(&["VOLUME", "KIND", "DIRECTORY", "STATUS"])
        .right(0)
        .flexible(2);
    let mut shown: Vec<PathBuf> = Vec::new();
    for n in 1..=m.volume_count() {
        let here: Vec<&DirProblems> = dirs
            .iter()
            .filter(|d| d.volume == Some(n) && !foreign(d))
            .collect();
        if here.is_empty() {
            t.row(vec![
                n.to_string(),
                m.volume_kind(n).as_str().to_string(),
                "-".into(),
                Status::NotGiven.as_str().into(),
            ]);
        }
        for d in here {
            shown.push(d.dir.clone());
            let status = if !bad(d) {
                Status::Intact.as_str()
            } else if d
                .problems
                .iter()
                .all(|p| matches!(p, Problem::DuplicateVolume { .. }))
            {
                "given twice"
            } else {
                Status::Damaged.as_str()
            };
            t.row(vec![
                n.to_string(),
                m.volume_kind(n).as_str().to_string(),
                output::escape_path(&d.dir),
                status.into(),
            ]);
        }
    }
    for d in dirs.iter().filter(|d| !shown.contains(&d.dir)) {
        let foreign = foreign(d);
        t.row(vec![
            "?".into(),
            "-".into(),
            output::escape_path(&d.dir),
            if foreign {
                "another bundle's".into()
            } else {
                Status::Damaged.as_str().into()
            },
        ]);
    }
    format!(
        "volumes of bundle {}:\n{}",
        escape(&m.bundle_id),
        t.render(crate::table::terminal_width()).trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_names_the_volumes_still_to_check_and_their_kinds() {
        assert_eq!(
            incomplete_headline(3, 4, &[2], &[1, 3, 4]),
            "volume 2 of 4 (data) intact; still to check: volumes 1, 3 (data) and 4 (parity)\n"
        );
        assert_eq!(
            incomplete_headline(3, 3, &[1, 3], &[2]),
            "volumes 1, 3 of 3 (data) intact; still to check: volume 2 (data)\n"
        );
        assert_eq!(
            incomplete_headline(3, 5, &[1, 2, 3, 5], &[4]),
            "volumes 1, 2, 3 of 5 (data) and 5 (parity) intact; still to check: volume 4 (parity)\n\
             the data volumes are complete: the bundle can be imported without the parity volumes\n"
        );
        assert_eq!(
            incomplete_headline(2, 3, &[3], &[1, 2]),
            "volume 3 of 3 (parity) intact; still to check: volumes 1, 2 (data)\n"
        );
    }
}
