use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::bundle::{self, OutDir, PackOptions};
use crate::cli::PackArgs;
use crate::error::{Error, Result};
use crate::format::{self, limits, validate_channel, ArtifactKind, EntryType, Manifest};
use crate::interrupt;
use crate::output::{self, escape, Printer};
use crate::progress::Progress;
use crate::sign::SigningKey;
use crate::sources::{self, Source};
use crate::spec::PackSpec;

/// Default chunk size: 2 GiB, well under FAT32's 4 GiB - 1 file limit.
pub const DEFAULT_CHUNK_SIZE: u64 = 2 << 30;
pub const DEFAULT_EXPIRY: &str = "30d";

pub fn parse_chunk_size(s: &str) -> Result<u64> {
    let n = parse_size::parse_size(s).map_err(|e| {
        Error::Usage(format!(
            "chunk size {s:?}: {e} (use e.g. 700MiB, 4GiB, 25GB)"
        ))
    })?;
    if !(limits::MIN_CHUNK_SIZE..=limits::MAX_CHUNK_SIZE).contains(&n) {
        return Err(Error::Usage(format!(
            "chunk size {s:?} is outside {} ..= {}",
            output::bytes(limits::MIN_CHUNK_SIZE),
            output::bytes(limits::MAX_CHUNK_SIZE)
        )));
    }
    Ok(n)
}

/// `--volume-size`: a size (e.g. `64GB`), at least [`crate::format::volumes::MIN_VOLUME_SIZE`].
pub fn parse_volume_size(s: &str) -> Result<u64> {
    let n = parse_size::parse_size(s).map_err(|e| {
        Error::Usage(format!(
            "volume size {s:?}: {e} (use e.g. 64GB, 4GiB, or bd25)"
        ))
    })?;
    if !(crate::format::volumes::MIN_VOLUME_SIZE..=crate::format::volumes::MAX_VOLUME_SIZE)
        .contains(&n)
    {
        return Err(Error::Usage(format!(
            "volume size {s:?} is outside {} ..= {}",
            output::bytes(crate::format::volumes::MIN_VOLUME_SIZE),
            output::bytes(crate::format::volumes::MAX_VOLUME_SIZE)
        )));
    }
    Ok(n)
}

/// `--max-download` / `max_download`: a size, more than zero.
pub fn parse_max_download(s: &str) -> Result<u64> {
    let n = parse_size::parse_size(s)
        .map_err(|e| Error::Usage(format!("max download {s:?}: {e} (use e.g. 500MiB, 16GiB)")))?;
    if n == 0 {
        return Err(Error::Usage(format!(
            "max download {s:?} must be more than zero"
        )));
    }
    Ok(n)
}

/// `--min-speed` / `--min-speed-time` (or the spec's `min_speed` / `min_speed_time`): bytes
/// per second (`0` turns the check off) and a period in seconds or as `2m`.
pub fn parse_transfer(speed: Option<&str>, time: Option<&str>) -> Result<crate::net::Transfer> {
    let mut t = crate::net::Transfer::default();
    if let Some(s) = speed {
        t.min_speed = parse_size::parse_size(s).map_err(|e| {
            Error::Usage(format!(
                "min speed {s:?}: {e} (bytes per second, e.g. 1KiB, or 0 for no check)"
            ))
        })?;
    }
    if let Some(s) = time {
        let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u64>().ok().map(Duration::from_secs)
        } else {
            humantime::parse_duration(s).ok()
        };
        t.min_speed_time = match d {
            Some(d) if !d.is_zero() => d,
            _ => {
                return Err(Error::Usage(format!(
                    "min speed time {s:?}: use a number of seconds (e.g. 60) or a duration (2m), more than zero"
                )))
            }
        };
    }
    Ok(t)
}

pub fn parse_expiry(s: &str, created: SystemTime) -> Result<Option<SystemTime>> {
    if s == "never" {
        return Ok(None);
    }
    let d = humantime::parse_duration(s)
        .map_err(|e| Error::Usage(format!("expiry {s:?}: {e} (use e.g. 30d, 12h, or never)")))?;
    if d.is_zero() {
        return Err(Error::Usage(format!(
            "expiry {s:?} must be longer than zero"
        )));
    }
    created
        .checked_add(d)
        .map(Some)
        .ok_or_else(|| Error::Usage(format!("expiry {s:?} is too far in the future")))
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct ArtifactSummary {
    pub(super) name: String,
    pub(super) kind: ArtifactKind,
    source: String,
    pub(super) files: usize,
    pub(super) bytes: u64,
    /// What the officer signs off on, as text rows ([`super::identity::rows`]); not in the JSON
    /// (which carries the whole manifest for inspect).
    #[serde(skip)]
    pub(super) identity: Vec<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct BundleSummary {
    dir: String,
    bundle_id: String,
    channel: String,
    sequence: u64,
    created: String,
    expires: Option<String>,
    artifacts: Vec<ArtifactSummary>,
    blobs: usize,
    payload_bytes: u64,
    pub(super) chunks: Vec<format::Chunk>,
    chunk_bytes: u64,
}

impl BundleSummary {
    pub(super) fn new(dir: &Path, m: &Manifest) -> BundleSummary {
        let sizes: std::collections::HashMap<_, _> =
            m.blobs.iter().map(|b| (b.digest, b.size)).collect();
        BundleSummary {
            dir: dir.display().to_string(),
            bundle_id: m.bundle_id.clone(),
            channel: m.channel.clone(),
            sequence: m.sequence,
            created: m.created.clone(),
            expires: m.expires.clone(),
            artifacts: m
                .artifacts
                .iter()
                .map(|a| ArtifactSummary {
                    name: a.name.clone(),
                    kind: a.kind,
                    source: a.source.clone(),
                    files: a
                        .entries
                        .iter()
                        .filter(|e| e.kind == EntryType::File)
                        .count(),
                    bytes: a
                        .entries
                        .iter()
                        .filter_map(|e| e.blob.map(|b| sizes[&b]))
                        .sum(),
                    identity: super::identity::rows(a),
                })
                .collect(),
            blobs: m.blobs.len(),
            payload_bytes: m.payload_bytes(),
            chunks: m.chunks.clone(),
            chunk_bytes: m.chunk_bytes(),
        }
    }

    pub(super) fn text(&self) -> String {
        let mut s = format!(
            "bundle    {}\nchannel   {}\nsequence  {}\ncreated   {}\nexpires   {}\n",
            escape(&self.bundle_id),
            escape(&self.channel),
            self.sequence,
            escape(&self.created),
            escape(self.expires.as_deref().unwrap_or("never"))
        );
        s += &format!(
            "payload   {} in {} distinct blobs; {} chunks, {} on media\n",
            output::bytes(self.payload_bytes),
            self.blobs,
            self.chunks.len(),
            output::bytes(self.chunk_bytes)
        );
        s += "artifacts\n";
        // The one rendering of what crosses (pack, inspect, verify, import), indented by two.
        let width = crate::table::terminal_width().map(|w| w.saturating_sub(2));
        let table = super::identity::artifacts_table(&self.artifacts);
        table.render_to(width, &mut |line| {
            s.push_str("  ");
            s.push_str(line);
        });
        s
    }
}

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Report {
    #[serde(flatten)]
    bundle: BundleSummary,
    /// The signatures written, one per `--key` (the first is `manifest.json.minisig`): the
    /// `key_id` and `file` of verify's and inspect's `signers`.
    signers: Vec<SignatureWritten>,
}

/// A signature pack or sign wrote: the fields of [`crate::bundle::SignerInfo`] that are known
/// before any trust is applied.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct SignatureWritten {
    /// The signature file, relative to the bundle directory.
    pub(super) file: String,
    pub(super) key_id: String,
}

/// Refuses, before a chunk is written, a bundle that would not fit the output filesystem
/// (an operational error naming the filesystem, the bytes needed and the bytes available).
fn preflight(out: &Path, resolved: &sources::Resolved, chunk_size: u64) -> Result<()> {
    let needed = resolved.bytes_to_write(chunk_size);
    let room = sources::output_room(out)?;
    if needed > room {
        return Err(Error::io(
            "pack onto",
            out,
            std::io::Error::other(format!(
                "the filesystem holding it has {} available ({} free, less {} kept free), \
                 but the bundle needs up to {} ({needed} bytes); free space or pack elsewhere",
                output::bytes(room),
                output::bytes(room.saturating_add(sources::RESERVE)),
                output::bytes(sources::RESERVE),
                output::bytes(needed),
            )),
        ));
    }
    Ok(())
}

/// What an interrupted pack left, said once its cleanup has run.
fn stopped(out: &Path, shown: &str) -> String {
    if !out.exists() {
        format!("pack stopped: removed {shown}, the unfinished bundle it was writing")
    } else if out.join(bundle::MARKER).exists() {
        format!(
            "pack stopped: {shown} holds an unfinished bundle, which the next pack into it replaces"
        )
    } else {
        format!("pack stopped: removed the unfinished bundle from {shown}")
    }
}

pub fn run(args: PackArgs, printer: &Printer) -> Result<()> {
    let spec = match &args.spec {
        Some(p) => PackSpec::load(p)?,
        None => PackSpec::default(),
    };
    let mut srcs: Vec<Source> = match &args.spec {
        Some(p) => spec.sources(
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )?,
        None => Vec::new(),
    };
    let platforms = sources::PlatformArgs {
        platforms: args.platform.clone(),
        all: args.all_platforms,
    };
    platforms.choice()?;
    for s in &args.sources {
        // Platforms apply to image sources, filters to hf:// sources; others ignore them.
        srcs.push(
            Source::parse(s)?
                .with_platforms(platforms.clone())
                .with_patterns(&args.include, &args.exclude),
        );
    }
    let mut connect = super::connect_options(&args.registry)?;
    connect.transfer = parse_transfer(
        args.min_speed.as_deref().or(spec.min_speed.as_deref()),
        args.min_speed_time
            .as_deref()
            .or(spec.min_speed_time.as_deref()),
    )?;
    let max_download = match args
        .max_download
        .as_deref()
        .or(spec.max_download.as_deref())
    {
        Some(s) => parse_max_download(s)?,
        None => sources::DEFAULT_MAX_DOWNLOAD,
    };
    let resolve_opts = sources::ResolveOptions {
        connect,
        max_download,
    };
    if srcs.is_empty() {
        return Err(Error::Usage(
            "nothing to pack: give SOURCE arguments or a --spec file".into(),
        ));
    }
    let channel = args
        .channel
        .or(spec.channel)
        .unwrap_or_else(|| "default".to_string());
    validate_channel(&channel).map_err(Error::Usage)?;
    // A malformed SOURCE_DATE_EPOCH is refused before a passphrase is asked or a byte fetched.
    bundle::writer::chunk_mtime()?;
    // Whole seconds: the manifest records times at seconds precision.
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let created = UNIX_EPOCH + Duration::from_secs(now_secs);
    let sequence = args.sequence.or(spec.sequence).unwrap_or(now_secs);
    let expires = parse_expiry(
        args.expires
            .as_deref()
            .or(spec.expires.as_deref())
            .unwrap_or(DEFAULT_EXPIRY),
        created,
    )?;
    let chunk_size = match args.chunk_size.as_deref().or(spec.chunk_size.as_deref()) {
        Some(s) => parse_chunk_size(s)?,
        None => DEFAULT_CHUNK_SIZE,
    };
    let volumes = match (args.volume_size.as_deref(), args.parity.unwrap_or(0)) {
        (Some(v), parity) => Some(bundle::VolumeOptions {
            size: parse_volume_size(v)?,
            parity,
        }),
        (None, 0) => None,
        (None, _) => {
            return Err(Error::Usage(
                "--parity needs --volume-size: parity volumes protect the volumes of a bundle spread over several".into(),
            ))
        }
    };
    // Keys first: a wrong passphrase should fail before any download.
    let keys: Vec<SigningKey> = args
        .key
        .iter()
        .map(|k| SigningKey::load(k))
        .collect::<Result<_>>()?;

    // From here on pack writes: SIGINT and SIGTERM stop it through its cleanup (before this,
    // their default action ends it with nothing written).
    interrupt::install()
        .map_err(|e| Error::Other(format!("cannot handle SIGINT and SIGTERM: {e}")))?;
    let out = interrupt::classify(OutDir::prepare(&args.out))?;
    let shown = output::escape_path(&args.out);
    if let Some(run) = out.replaced() {
        printer.note(&format!(
            "replacing the unfinished output of an interrupted pack (run {}) in {shown}",
            escape(run)
        ));
    }
    let (json, quiet) = (printer.json, printer.quiet);
    let left = shown.clone();
    interrupt::on_forced_stop(move |signal| {
        let p = Printer { json, quiet };
        p.note(&format!(
            "pack stopped before its cleanup finished: {left} holds an unfinished bundle, \
             which the next pack into it replaces"
        ));
        p.error(&Error::Interrupted { signal });
    });
    let progress = printer.progress();
    let opts = PackOptions {
        channel,
        sequence,
        created,
        expires,
        chunk_size,
        volumes,
    };
    let packed = interrupt::classify(
        sources::resolve_pending(&srcs, &out.staging(), &resolve_opts, &progress).and_then(
            |resolved| {
                preflight(out.path(), &resolved, chunk_size)?;
                bundle::pack_pending(
                    out,
                    resolved.artifacts,
                    &resolved.blobs,
                    &resolved.pending,
                    &keys,
                    &opts,
                    &progress,
                )
            },
        ),
    );
    let manifest = match packed {
        Ok(m) => m,
        Err(e) => {
            progress.finish();
            if let Error::Interrupted { .. } = e {
                printer.note(&stopped(&args.out, &shown));
            }
            return Err(e);
        }
    };
    let report = Report {
        bundle: BundleSummary::new(&args.out, &manifest),
        signers: keys
            .iter()
            .enumerate()
            .map(|(i, k)| SignatureWritten {
                file: bundle::signature_path(Path::new(""), i == 0, k)
                    .display()
                    .to_string(),
                key_id: k.public.id.to_string(),
            })
            .collect(),
    };
    printer.report(&report, || {
        format!(
            "packed {}\n{}signed by {}\n",
            output::escape_path(&args.out),
            report.bundle.text(),
            report
                .signers
                .iter()
                .map(|s| s.key_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    Ok(())
}
