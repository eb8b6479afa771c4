//! `airlock repair`: rebuilds the missing volumes and damaged chunks of a bundle from its
//! parity volumes, into complete volumes under `--out` (written through a temporary directory
//! renamed at the end, so that a failed repair leaves nothing there).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::parity::{self, Job, Rebuilt};
use crate::bundle::{self, Problem};
use crate::cli::RepairArgs;
use crate::error::{Error, Result};
use crate::format::volumes::{volume_dir_name, LABEL_FILE};
use crate::format::{Digest, CHUNKS_DIR, MANIFEST_FILE, SUMS_FILE};
use crate::fsutil;
use crate::output::{self, escape, escape_path, Printer};
use crate::table::Table;

/// One volume repair wrote.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct VolumeRepair {
    /// The volume (1-based).
    volume: u32,
    /// `data` or `parity`.
    kind: String,
    /// `missing` (no directory given held it) or `damaged` (found, with problems).
    was: String,
    /// Where it was found (absent when missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    found_in: Option<String>,
    /// What was wrong with it where it was found.
    problems: Vec<Problem>,
    /// Where the repaired volume was written.
    written_to: String,
    /// The chunks rebuilt from parity, each verified against its signed digests.
    chunks_rebuilt: Vec<String>,
    /// Bytes of chunks rebuilt.
    bytes_rebuilt: u64,
    /// Intact chunks copied from where the volume was found.
    chunks_copied: u64,
}

/// A directory given that is not used: not a volume of the bundle, or one given twice.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Ignored {
    dir: String,
    problems: Vec<Problem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Report {
    /// Whether anything was written (false: nothing needed repair).
    repaired: bool,
    bundle_id: String,
    /// The output directory (written only when `repaired`).
    out: String,
    /// Volumes of the bundle, data and parity.
    volume_count: u32,
    /// The volumes written, in order.
    volumes: Vec<VolumeRepair>,
    /// Totals: the volumes rebuilt whole, every chunk rebuilt, their bytes.
    rebuilt: Rebuilt,
    /// Directories given and not used.
    ignored: Vec<Ignored>,
}

/// The directories to check: each given one, or, for a directory holding volumes (pack's
/// `OUT/`), its subdirectories that hold a manifest, in name order.
fn expand(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for d in dirs {
        if d.join(MANIFEST_FILE).symlink_metadata().is_err() && d.is_dir() {
            let mut subs: Vec<PathBuf> = fs::read_dir(d)
                .map_err(|e| Error::io("read directory", d, e))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir() && p.join(MANIFEST_FILE).symlink_metadata().is_ok())
                .collect();
            if !subs.is_empty() {
                subs.sort();
                out.extend(subs);
                continue;
            }
        }
        out.push(d.clone());
    }
    Ok(out)
}

/// `--out` must be new (its parent existing) or an empty directory.
fn check_out(out: &Path) -> Result<()> {
    match out.symlink_metadata() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(Error::Usage(format!(
                    "--out {}: its parent directory does not exist",
                    escape_path(out)
                )));
            }
            Ok(())
        }
        Err(e) => Err(Error::io("inspect", out, e)),
        Ok(m) if m.is_dir() => {
            let empty = fs::read_dir(out)
                .map_err(|e| Error::io("read directory", out, e))?
                .next()
                .is_none();
            if empty {
                Ok(())
            } else {
                Err(Error::Usage(format!(
                    "--out {} is not empty: repair writes into a new or empty directory",
                    escape_path(out)
                )))
            }
        }
        Ok(_) => Err(Error::Usage(format!(
            "--out {} exists and is not a directory: repair writes into a new or empty directory",
            escape_path(out)
        ))),
    }
}

/// The temporary directory beside `--out`, removed unless committed.
struct Temp {
    path: PathBuf,
    keep: bool,
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Copies an intact chunk (exclusive create, synced).
/// Copies an intact chunk (checked whole by the verification before) and checks the copy's
/// SHA-256 against the signed one as it is written, so the volume written needs no second read.
fn copy_chunk(from: &Path, to: &Path, expected: &Digest) -> Result<()> {
    let src = fsutil::open_regular(from)?;
    let mut dst = File::options()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| Error::io("create chunk", to, e))?;
    let (got, _) =
        fsutil::copy_hashed(src, &mut dst, &crate::progress::Silent).map_err(|e| match e {
            fsutil::CopyError::Read { source, .. } => Error::io("read chunk", from, source),
            fsutil::CopyError::Write(source) => Error::io("write chunk", to, source),
        })?;
    if got != *expected {
        return Err(Error::Corrupt(format!(
            "chunk {} changed while repair copied it: SHA-256 {}, signed {}",
            escape_path(from),
            got.hex(),
            expected.hex()
        )));
    }
    dst.sync_all().map_err(|e| Error::io("sync chunk", to, e))
}

pub fn run(args: RepairArgs, printer: &Printer) -> Result<()> {
    let policy = super::load_policy(&args.trust)?;
    check_out(&args.out)?;
    let dirs = expand(&args.dirs)?;
    for d in &dirs {
        bundle::verify::check_bundle_dir(d)?;
    }
    let progress = printer.progress();
    let set =
        bundle::verify::verify_volumes(&dirs, &policy, &super::verify_options(), true, &progress)?;
    let Some(mut b) = set.bundle else {
        return Err(Error::Rejected {
            dir: dirs[0].clone(),
            problems: set.problems(),
        });
    };
    let m = b.manifest().clone();
    let count = m.volume_count();
    let mut found: Vec<Option<PathBuf>> = (1..=count)
        .map(|n| b.volume_dir(n).map(Path::to_path_buf))
        .collect();
    let mut damaged: BTreeSet<usize> = BTreeSet::new();
    let mut problems_of: Vec<Vec<Problem>> = vec![Vec::new(); count as usize];
    let mut rewrite: BTreeSet<u32> = BTreeSet::new();
    let mut ignored = Vec::new();
    for o in &set.outcomes {
        if o.volume.is_some() && o.problems.is_empty() {
            continue;
        }
        // A volume of this bundle with damage: its manifest is the authenticated one, its label
        // names it; its intact chunks are sources, the damaged ones rebuilt.
        match b.check_sibling(&o.dir, true, &progress) {
            Some(sib) if found[(sib.volume - 1) as usize].is_none() => {
                let n = sib.volume;
                found[(n - 1) as usize] = Some(o.dir.clone());
                damaged.extend(sib.damaged);
                problems_of[(n - 1) as usize] = sib.problems;
                rewrite.insert(n);
            }
            _ => ignored.push(Ignored {
                dir: o.dir.display().to_string(),
                problems: o.problems.clone(),
                error: o.error.clone(),
            }),
        }
    }
    let mut targets = damaged.clone();
    for n in 1..=count {
        if found[(n - 1) as usize].is_none() {
            rewrite.insert(n);
            targets.extend(m.volume_chunks(n));
        }
    }
    let mut report = Report {
        repaired: false,
        bundle_id: m.bundle_id.clone(),
        out: args.out.display().to_string(),
        volume_count: count,
        volumes: Vec::new(),
        rebuilt: Rebuilt::default(),
        ignored,
    };
    if rewrite.is_empty() {
        printer.report(&report, || {
            format!(
                "nothing to repair: all {count} volumes of bundle {} are intact (signatures and every chunk checked); nothing written\n{}",
                escape(&m.bundle_id),
                ignored_lines(&report.ignored)
            )
        });
        return Ok(());
    }

    // `.FIXED.airlock-repair-PID` beside FIXED (an OS string: FIXED's name as given).
    let mut name = std::ffi::OsString::from(".");
    name.push(args.out.file_name().unwrap_or("repaired".as_ref()));
    name.push(".airlock-repair-");
    name.push(std::process::id().to_string());
    let parent = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut temp = Temp {
        path: parent.join(name),
        keep: false,
    };
    if temp.path.symlink_metadata().is_ok() {
        fs::remove_dir_all(&temp.path).map_err(|e| Error::io("remove", &temp.path, e))?;
    }
    fsutil::create_dir_all(&temp.path)?;
    let tmp = temp.path.clone();
    let out_of = |n: u32| tmp.join(volume_dir_name(n));
    let sources: Vec<Option<PathBuf>> = found.clone();
    let job = Job {
        manifest: &m,
        dirs: sources,
        damaged: damaged.clone(),
        targets: targets.clone(),
        out: &out_of,
        durable: true,
    };
    let rebuilt = parity::rebuild(&job, b.dir(), &progress)?;

    // The manifest's exact bytes, as authenticated.
    let bytes = bundle::verify::read_manifest_bytes_bounded(b.dir(), b.manifest_size())
        .map_err(|p| Error::Other(format!("cannot read the manifest again: {p}")))?;
    if Digest::of(&bytes) != b.manifest_digest() {
        return Err(Error::Other(format!(
            "{} changed while repair ran",
            escape_path(&b.dir().join(MANIFEST_FILE))
        )));
    }
    for &n in &rewrite {
        crate::interrupt::check()?;
        let dir = out_of(n);
        fsutil::create_dir_all(&dir.join(CHUNKS_DIR))?;
        let mut copied = 0;
        let mut mine = Vec::new();
        for i in m.volume_chunks(n) {
            let c = &m.chunks[i];
            if targets.contains(&i) {
                mine.push(c.name.clone());
                continue;
            }
            let from = found[(n - 1) as usize]
                .as_ref()
                .expect("a volume with intact chunks was found")
                .join(CHUNKS_DIR)
                .join(&c.name);
            copy_chunk(&from, &dir.join(CHUNKS_DIR).join(&c.name), &c.sha256)?;
            copied += 1;
        }
        fsutil::sync_dir(&dir.join(CHUNKS_DIR))?;
        fsutil::write_atomic(&dir.join(SUMS_FILE), m.volume_sums(n).as_bytes(), 0o644)?;
        fsutil::write_atomic(&dir.join(LABEL_FILE), m.volume_label(n).as_bytes(), 0o644)?;
        fsutil::write_atomic(&dir.join(MANIFEST_FILE), &bytes, 0o644)?;
        fsutil::sync_dir(&dir)?;
        let bytes_rebuilt = m
            .volume_chunks(n)
            .filter(|i| targets.contains(i))
            .map(|i| m.chunks[i].size)
            .sum();
        let was_found = found[(n - 1) as usize].as_ref();
        report.volumes.push(VolumeRepair {
            volume: n,
            kind: m.volume_kind(n).as_str().to_string(),
            was: if was_found.is_some() {
                "damaged"
            } else {
                "missing"
            }
            .to_string(),
            found_in: was_found.map(|d| d.display().to_string()),
            problems: problems_of[(n - 1) as usize].clone(),
            written_to: args.out.join(volume_dir_name(n)).display().to_string(),
            chunks_rebuilt: mine,
            bytes_rebuilt,
            chunks_copied: copied,
        });
    }
    // What was written is checked as the volumes it must be, before it is put in place.
    // Every chunk written was checked as it was written (a rebuilt one against its signed piece
    // digests, a copied one against its signed SHA-256), so the volumes written are checked as
    // volumes here (manifest, label, SHA256SUMS, files and sizes), not read a second time.
    for &n in &rewrite {
        let dir = out_of(n);
        match b.check_sibling(&dir, false, &progress) {
            Some(sib) if sib.volume == n && sib.problems.is_empty() => {}
            other => {
                let why = other
                    .map(|s| {
                        s.problems
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_else(|| "not a volume of the bundle".into());
                return Err(Error::Other(format!(
                    "internal error: the repaired volume {n} does not verify: {why}"
                )));
            }
        }
    }
    fsutil::sync_dir(&temp.path)?;
    fs::rename(&temp.path, &args.out).map_err(|e| Error::io("rename", &args.out, e))?;
    temp.keep = true;
    fsutil::sync_dir(&parent)?;
    for &n in &rewrite {
        b.relocate(n, args.out.join(volume_dir_name(n)));
    }
    report.repaired = true;
    report.rebuilt = Rebuilt {
        volumes: rewrite
            .iter()
            .copied()
            .filter(|&n| found[(n - 1) as usize].is_none())
            .collect(),
        ..rebuilt
    };
    let check: Vec<String> = (1..=count)
        .filter_map(|n| b.volume_dir(n).map(escape_path))
        .collect();
    printer.report(&report, || {
        let mut t = Table::new(&[
            "VOLUME", "KIND", "WAS", "REBUILT", "BYTES", "COPIED", "WRITTEN TO",
        ])
        .right(0)
        .right(3)
        .right(4)
        .right(5)
        .flexible(6);
        for v in &report.volumes {
            t.row(vec![
                v.volume.to_string(),
                v.kind.clone(),
                v.was.clone(),
                v.chunks_rebuilt.len().to_string(),
                output::bytes(v.bytes_rebuilt),
                v.chunks_copied.to_string(),
                escape(&v.written_to).to_string(),
            ]);
        }
        let mut text = format!(
            "repaired bundle {} into {}: {} volume(s) written, {} chunk(s) rebuilt from parity ({}), each checked against its signed digests\n{}",
            escape(&m.bundle_id),
            escape_path(&args.out),
            report.volumes.len(),
            report.rebuilt.chunks.len(),
            output::bytes(report.rebuilt.bytes),
            t.render(output::terminal_width())
        );
        for v in &report.volumes {
            for p in &v.problems {
                text.push_str(&format!("volume {} was: {p}\n", v.volume));
            }
            if !v.chunks_rebuilt.is_empty() && v.was == "damaged" {
                text.push_str(&format!(
                    "volume {} rebuilt: {}\n",
                    v.volume,
                    v.chunks_rebuilt
                        .iter()
                        .map(|c| escape(c).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        text.push_str(&ignored_lines(&report.ignored));
        text.push_str(&format!(
            "the repaired volumes carry no signature of their own: they verify beside a signed volume of the bundle, e.g.\n  airlock verify {}\n",
            check.join(" ")
        ));
        text
    });
    Ok(())
}

fn ignored_lines(ignored: &[Ignored]) -> String {
    ignored
        .iter()
        .map(|i| {
            let why = i
                .problems
                .iter()
                .map(|p| p.to_string())
                .chain(i.error.iter().map(|e| escape(e).to_string()))
                .collect::<Vec<_>>()
                .join("; ");
            format!("ignored {}: {why}\n", escape(&i.dir))
        })
        .collect()
}
