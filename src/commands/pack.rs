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

/// Media `--volume-size` (and the spec's `volume_size`) may name, case-insensitively: name,
/// exact usable capacity in bytes (whole 2048-byte sectors), what it is.
pub const MEDIA: &[(&str, u64, &str)] = &[
    ("cd700", 737_280_000, "CD-R 700 MB, 360,000 sectors"),
    (
        "dvd",
        4_700_372_992,
        "DVD+R single layer, the smaller of DVD±R",
    ),
    (
        "dvd-dl",
        8_543_666_176,
        "DVD-R dual layer, the smaller of DVD±R DL",
    ),
    ("bd25", 25_025_314_816, "BD-R single layer"),
    ("bd50", 50_050_629_632, "BD-R dual layer"),
    ("bd100", 100_103_356_416, "BDXL triple layer"),
];

/// The share of a named medium's capacity left for its filesystem (UDF / ISO 9660 metadata,
/// directories, each file's last partial sector): 1 %, rounded up to a byte.
pub const MEDIUM_MARGIN_PERCENT: u64 = 1;

/// A named medium's volume budget: its capacity less [`MEDIUM_MARGIN_PERCENT`].
pub fn medium_budget(capacity: u64) -> u64 {
    capacity - (capacity * MEDIUM_MARGIN_PERCENT).div_ceil(100)
}

/// What `--volume-size` said: the volume size pack uses, and the medium it was derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeSize {
    /// The most bytes one volume holds.
    pub bytes: u64,
    /// A named medium: its name and exact capacity (`bytes` is that less the margin).
    pub medium: Option<(&'static str, u64)>,
}

/// `--volume-size`: a medium ([`MEDIA`], less [`MEDIUM_MARGIN_PERCENT`]) or a size used exactly
/// (e.g. `64GB`, `4GiB`, bytes), within [`crate::format::volumes::MIN_VOLUME_SIZE`] ..=
/// [`crate::format::volumes::MAX_VOLUME_SIZE`].
pub fn parse_volume_size(s: &str) -> Result<VolumeSize> {
    if let Some(&(name, capacity, _)) = MEDIA.iter().find(|m| m.0.eq_ignore_ascii_case(s.trim())) {
        return Ok(VolumeSize {
            bytes: medium_budget(capacity),
            medium: Some((name, capacity)),
        });
    }
    let names = MEDIA.iter().map(|m| m.0).collect::<Vec<_>>().join(", ");
    let n = parse_size::parse_size(s).map_err(|e| {
        Error::Usage(format!(
            "volume size {s:?}: {e} (use e.g. 64GB, 4GiB, or a medium: {names})"
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
    Ok(VolumeSize {
        bytes: n,
        medium: None,
    })
}

/// `--parity N`: 0 (none) up to one less than the most volumes a bundle may have (at least one
/// is a data volume).
pub fn check_parity(n: u32) -> Result<u32> {
    let max = crate::format::volumes::MAX_VOLUMES as u32 - 1;
    if n > max {
        return Err(Error::Usage(format!(
            "--parity {n}: at most {max} parity volumes (a bundle has at most {} volumes, one of them data)",
            crate::format::volumes::MAX_VOLUMES
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
    /// Bytes of the artifact's distinct blobs the bundle carries.
    pub(super) carried_bytes: u64,
    /// Bytes of the artifact's distinct blobs it does not carry (version 5, external: the
    /// enclave must hold them); 0 in a full bundle.
    pub(super) external_bytes: u64,
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
    /// Every distinct blob's bytes, carried and external.
    payload_bytes: u64,
    /// Bytes of the blobs the bundle carries (`payload_bytes` in a full bundle).
    carried_bytes: u64,
    /// Bytes of the external blobs (version 5): listed, not carried; the enclave must hold
    /// them, and verify cannot check them.
    external_bytes: u64,
    /// Version 5: the external blobs (digest, size, the index in `bases` of the base that
    /// showed the enclave holds it); empty in a full bundle.
    external: Vec<ExternalBlob>,
    /// Version 5: the bases of a delta bundle; empty in a full bundle.
    bases: Vec<format::Base>,
    pub(super) chunks: Vec<format::Chunk>,
    chunk_bytes: u64,
}

/// An external blob of a delta bundle, in the reports.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct ExternalBlob {
    digest: format::Digest,
    size: u64,
    /// Index in `bases`.
    base: u32,
}

impl BundleSummary {
    pub(super) fn new(dir: &Path, m: &Manifest) -> BundleSummary {
        let sizes: std::collections::HashMap<_, _> =
            m.blobs.iter().map(|b| (b.digest, b.size)).collect();
        let split = m.all_artifact_bytes();
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
                .zip(split)
                .map(|(a, (carried_bytes, external_bytes))| ArtifactSummary {
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
                    carried_bytes,
                    external_bytes,
                    identity: super::identity::rows(a),
                })
                .collect(),
            blobs: m.blobs.len(),
            payload_bytes: m.payload_bytes(),
            carried_bytes: m.carried_bytes(),
            external_bytes: m.external_bytes(),
            external: m
                .external_blobs()
                .map(|b| ExternalBlob {
                    digest: b.digest,
                    size: b.size,
                    base: b.external.unwrap_or(0),
                })
                .collect(),
            bases: m.bases.clone(),
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
        let delta = !self.bases.is_empty();
        if delta {
            s += &format!(
                "delta     carries {}; {} in {} external blobs not carried (the enclave must hold them; verify cannot check their bytes)\n",
                output::bytes(self.carried_bytes),
                output::bytes(self.external_bytes),
                self.external.len()
            );
            s += &bases_text(&self.bases);
        }
        s += "artifacts\n";
        // The one rendering of what crosses (pack, inspect, verify, import), indented by two.
        let width = crate::table::terminal_width().map(|w| w.saturating_sub(2));
        let table = super::identity::artifacts_table(&self.artifacts, delta);
        table.render_to(width, &mut |line| {
            s.push_str("  ");
            s.push_str(line);
        });
        s
    }
}

/// The `bases` lines and table of a delta bundle (indented by two).
fn bases_text(bases: &[format::Base]) -> String {
    let mut s = format!("bases     {}\n", bases.len());
    let mut t =
        crate::table::Table::new(&["#", "KIND", "ID", "CHANNEL", "SEQUENCE", "MANIFEST SHA256"])
            .right(0)
            .right(4)
            .flexible(5);
    for (i, b) in bases.iter().enumerate() {
        t.row(vec![
            i.to_string(),
            b.kind.as_str().to_string(),
            escape(&b.id).to_string(),
            escape(&b.channel).to_string(),
            b.sequence.to_string(),
            b.manifest_digest.hex(),
        ]);
    }
    let width = crate::table::terminal_width().map(|w| w.saturating_sub(2));
    t.render_to(width, &mut |line| {
        s.push_str("  ");
        s.push_str(line);
    });
    s
}

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Report {
    #[serde(flatten)]
    bundle: BundleSummary,
    /// The signatures written, one per `--key` (the first is `manifest.json.minisig`): the
    /// `key_id` and `file` of verify's and inspect's `signers`.
    signers: Vec<SignatureWritten>,
    /// With `--volume-size`: the volume size used (and the medium it came from).
    #[serde(skip_serializing_if = "Option::is_none")]
    volume_size: Option<VolumeSizeReport>,
    /// With `--volume-size`: every volume written, data volumes first (absent for a bundle of
    /// one directory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<VolumeSummary>,
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
/// Spread over volumes, every volume carries its copy of the manifest, signatures and sums, and
/// every parity volume is as large as the longest data volume.
fn preflight(
    out: &Path,
    resolved: &sources::Resolved,
    chunk_size: u64,
    volumes: Option<&bundle::VolumeOptions>,
    keys: usize,
) -> Result<()> {
    let needed = match volumes {
        None => resolved.bytes_to_write(chunk_size),
        Some(v) => volumes_to_write(resolved, chunk_size, v, keys),
    };
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

/// The most bytes pack writes spread over volumes: the chunks (each at most what a volume
/// holds), one copy of the manifest, signatures, `SHA256SUMS` and `VOLUME` per volume (as
/// [`bundle::volume_reserve`] estimates them), and the parity volumes' chunks.
fn volumes_to_write(
    resolved: &sources::Resolved,
    chunk_size: u64,
    v: &bundle::VolumeOptions,
    keys: usize,
) -> u64 {
    let chunks = resolved.bytes_to_write(chunk_size.min(v.size));
    let reserve = bundle::volume_reserve(&resolved.artifacts, &resolved.blobs, v, chunk_size, keys);
    let budget = v.size.saturating_sub(reserve).max(1);
    let data = chunks.div_ceil(budget).max(1);
    let parity = u64::from(v.parity);
    chunks
        .saturating_add(parity.saturating_mul(chunks.min(budget)))
        .saturating_add(data.saturating_add(parity).saturating_mul(reserve))
}

/// One volume of a bundle spread over several, as pack's and inspect's reports list it.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct VolumeSummary {
    /// 1-based.
    pub(super) volume: u32,
    pub(super) kind: format::volumes::VolumeKind,
    /// Where pack wrote it (`OUT/vol-NNN`); inspect: the standard name `vol-NNN` unless it is the
    /// directory read.
    pub(super) dir: String,
    /// Chunk files on it.
    pub(super) chunks: usize,
    /// Bytes of its chunk files (the manifest, signatures, `SHA256SUMS` and `VOLUME` come on
    /// top: see `volume_size`).
    pub(super) bytes: u64,
    /// The artifacts with bytes on it (data volumes; a parity volume protects them all).
    pub(super) artifacts: Vec<String>,
}

/// The volumes (data volumes first) each blob's segments lie on: first and last.
pub(super) fn blob_volumes(m: &Manifest) -> std::collections::HashMap<format::Digest, (u32, u32)> {
    m.blobs
        .iter()
        .filter_map(|b| {
            let vols = b.segments.iter().map(|s| m.volume_of(s.chunk as usize));
            Some((b.digest, (vols.clone().min()?, vols.max()?)))
        })
        .collect()
}

/// `2`, or `2-3` for a blob over several volumes.
pub(super) fn volume_span(span: Option<&(u32, u32)>) -> String {
    match span {
        None => String::new(),
        Some((a, b)) if a == b => a.to_string(),
        Some((a, b)) => format!("{a}-{b}"),
    }
}

/// The volumes of a bundle spread over several (empty for one directory); `dir(n)` names where
/// volume `n` is.
pub(super) fn volume_summaries(m: &Manifest, dir: &dyn Fn(u32) -> String) -> Vec<VolumeSummary> {
    if !m.is_multi_volume() {
        return Vec::new();
    }
    let spans = blob_volumes(m);
    (1..=m.volume_count())
        .map(|n| VolumeSummary {
            volume: n,
            kind: m.volume_kind(n),
            dir: dir(n),
            chunks: m.volume_chunks(n).len(),
            bytes: m.volume_chunk_bytes(n),
            artifacts: m
                .artifacts
                .iter()
                .filter(|a| {
                    a.entries.iter().any(|e| {
                        e.blob
                            .and_then(|b| spans.get(&b))
                            .is_some_and(|&(lo, hi)| (lo..=hi).contains(&n))
                    })
                })
                .map(|a| a.name.clone())
                .collect(),
        })
        .collect()
}

/// The VOLUMES table (with the DIR column when `dirs`), indented by two, after a `volumes` line.
pub(super) fn volumes_text(volumes: &[VolumeSummary], dirs: bool) -> String {
    let mut head = vec!["VOLUME", "KIND"];
    if dirs {
        head.push("DIR");
    }
    head.extend(["CHUNKS", "BYTES", "ARTIFACTS"]);
    let c = if dirs { 3 } else { 2 };
    let mut t = crate::table::Table::new(&head)
        .right(0)
        .right(c)
        .right(c + 1)
        .flexible(c + 2);
    for v in volumes {
        let mut row = vec![v.volume.to_string(), v.kind.as_str().to_string()];
        if dirs {
            row.push(escape(&v.dir).to_string());
        }
        row.push(v.chunks.to_string());
        row.push(output::bytes(v.bytes));
        row.push(match v.kind {
            format::volumes::VolumeKind::Parity => "(parity of every data volume)".to_string(),
            format::volumes::VolumeKind::Data => v
                .artifacts
                .iter()
                .map(|a| escape(a).to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
        t.row(row);
    }
    let mut s = String::new();
    let width = crate::table::terminal_width().map(|w| w.saturating_sub(2));
    t.render_to(width, &mut |line| {
        s.push_str("  ");
        s.push_str(line);
    });
    s
}

/// What `--volume-size` came to, in pack's report.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct VolumeSizeReport {
    /// The most bytes one volume holds (chunks, manifest, signatures, `SHA256SUMS`, `VOLUME`).
    bytes: u64,
    /// The medium named (`bd25`, …), if one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    medium: Option<String>,
    /// The medium's exact capacity in bytes; `bytes` is that less `margin_percent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity: Option<u64>,
    /// The share of a medium's capacity left for its filesystem (UDF / ISO 9660 metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    margin_percent: Option<u64>,
    /// The chunk bytes one volume may hold: `bytes` less the room reserved on every volume for
    /// the manifest, signatures, `SHA256SUMS` and `VOLUME`.
    chunk_budget: u64,
}

impl VolumeSizeReport {
    fn new(v: &VolumeSize, chunk_budget: u64) -> VolumeSizeReport {
        VolumeSizeReport {
            chunk_budget,
            bytes: v.bytes,
            medium: v.medium.map(|m| m.0.to_string()),
            capacity: v.medium.map(|m| m.1),
            margin_percent: v.medium.map(|_| MEDIUM_MARGIN_PERCENT),
        }
    }

    fn text(&self, m: &Manifest) -> String {
        let d = m.data_volume_count();
        let p = m.volume_count() - d;
        let size = match (&self.medium, self.capacity) {
            (Some(name), Some(cap)) => format!(
                "{} each ({}: {} ({cap} bytes) less {}% for the filesystem = {} bytes)",
                output::bytes(self.bytes),
                escape(name),
                output::bytes(cap),
                MEDIUM_MARGIN_PERCENT,
                self.bytes
            ),
            _ => format!("{} ({} bytes) each", output::bytes(self.bytes), self.bytes),
        };
        format!(
            "volumes   {d} data + {p} parity of at most {size}, {} of chunks\n",
            output::bytes(self.chunk_budget)
        )
    }
}

/// The bases of `--base` (or the spec's `bases`): each authenticated against the trust given
/// (`crate::bundle::base`), of the pack's channel. None given: no bases, and no trust needed.
fn load_bases(
    paths: &[std::path::PathBuf],
    trust: &crate::cli::TrustArgs,
    channel: &str,
) -> Result<bundle::HeldBlobs> {
    let mut held = bundle::HeldBlobs::new();
    if paths.is_empty() {
        return Ok(held);
    }
    let policy = super::select_policy(trust)?.ok_or_else(|| {
        Error::Usage(format!(
            "--base needs the trust to check it against: pass --trust PUBKEY or --policy FILE (or install {})",
            crate::policy::DEFAULT_POLICY
        ))
    })?;
    let now = SystemTime::now();
    for p in paths {
        let i = held.add_bundle(p, &policy, now)? as usize;
        let b = &held.bases[i];
        if b.channel != channel {
            return Err(Error::Usage(format!(
                "base {} is bundle {} of channel {}, not of this pack's channel {}: a delta's bases are earlier bundles of its own channel (give --channel {} or another base)",
                output::escape_path(p),
                escape(&b.id),
                escape(&b.channel),
                escape(channel),
                escape(&b.channel)
            )));
        }
    }
    Ok(held)
}

/// Takes the blobs the bases show the enclave holds (same digest and size) out of the plan: the
/// external blobs of the delta. A blob whose digest is known before it is fetched (an HF LFS
/// file's from the tree listing, an image layer's from its manifest) is thus never downloaded;
/// a local file whose size some held blob has is hashed first (read once; not written if held).
/// Empty blobs are always carried (they take no bytes).
fn split_held(
    resolved: &mut sources::Resolved,
    held: &bundle::HeldBlobs,
    progress: &dyn Progress,
) -> Result<bundle::Delta> {
    if held.is_empty() {
        return Ok(bundle::Delta::default());
    }
    let sizes = held.sizes();
    resolved.hash_pending_where(&|b| b.size > 0 && sizes.contains(&b.size), progress)?;
    let mut external = Vec::new();
    let pending = &resolved.pending;
    resolved.blobs.retain(|b| {
        if b.size == 0 || pending.contains(&b.digest) {
            return true;
        }
        match held.holds(&b.digest, b.size) {
            Some(base) => {
                external.push((b.digest, b.size, base));
                false
            }
            None => true,
        }
    });
    Ok(bundle::Delta {
        bases: held.bases.clone(),
        external,
    })
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
    let explicit_sequence = args.sequence.or(spec.sequence);
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
    let volume_size = match args.volume_size.as_deref().or(spec.volume_size.as_deref()) {
        Some(v) => Some(parse_volume_size(v)?),
        None => None,
    };
    let volumes = match (volume_size, check_parity(args.parity.or(spec.parity).unwrap_or(0))?) {
        (Some(v), parity) => Some(bundle::VolumeOptions {
            size: v.bytes,
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
    // The bases, authenticated before anything is fetched; then the sequence, above theirs.
    let spec_dir = args
        .spec
        .as_deref()
        .and_then(Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base_paths: Vec<std::path::PathBuf> = if !args.base.is_empty() {
        args.base.clone()
    } else {
        spec.bases.iter().map(|b| spec_dir.join(b)).collect()
    };
    let held = load_bases(&base_paths, &args.trust, &channel)?;
    if let (Some(s), Some(f)) = (explicit_sequence, held.max_sequence()) {
        bundle::sequence::check_explicit(s, f)?;
    }
    let sequence_dir = bundle::sequence::default_dir()?;

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
    let mut opts = PackOptions {
        channel,
        sequence: 0,
        created,
        expires,
        chunk_size,
        volumes,
    };
    // What pack_pending lays chunks out with (from the same plan), for the report.
    let chunk_budget = std::cell::Cell::new(0u64);
    let packed = interrupt::classify(
        sources::resolve_pending(&srcs, &out.staging(), &resolve_opts, &progress).and_then(
            |mut resolved| {
                let delta = split_held(&mut resolved, &held, &progress)?;
                // The sequence is taken (and recorded) once the sources resolved: a pack that
                // could not fetch them leaves the record as it was.
                opts.sequence = bundle::sequence::reserve(
                    &sequence_dir,
                    &opts.channel,
                    explicit_sequence,
                    now_secs,
                    held.max_sequence(),
                )?;
                preflight(
                    out.path(),
                    &resolved,
                    chunk_size,
                    opts.volumes.as_ref(),
                    keys.len(),
                )?;
                if let Some(v) = &opts.volumes {
                    let reserve = bundle::volume_reserve(
                        &resolved.artifacts,
                        &resolved.blobs,
                        v,
                        chunk_size,
                        keys.len(),
                    );
                    chunk_budget.set(v.size.saturating_sub(reserve));
                }
                bundle::pack_delta(
                    out,
                    resolved.artifacts,
                    &resolved.blobs,
                    &resolved.pending,
                    &delta,
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
        volume_size: volume_size
            .as_ref()
            .map(|v| VolumeSizeReport::new(v, chunk_budget.get())),
        volumes: volume_summaries(&manifest, &|n| {
            args.out
                .join(format::volumes::volume_dir_name(n))
                .display()
                .to_string()
        }),
    };
    printer.report(&report, || {
        let volumes = match &report.volume_size {
            Some(v) if !report.volumes.is_empty() => {
                v.text(&manifest) + &volumes_text(&report.volumes, true)
            }
            _ => String::new(),
        };
        format!(
            "packed {}\n{}{volumes}signed by {}\n",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_are_their_exact_capacities_less_one_percent() {
        let v = parse_volume_size("bd25").unwrap();
        assert_eq!(v.medium, Some(("bd25", 25_025_314_816)));
        // 1 % of 25,025,314,816 is 250,253,148.16: the margin rounds up to 250,253,149.
        assert_eq!(v.bytes, 25_025_314_816 - 250_253_149);
        assert_eq!(v.bytes, 24_775_061_667);
        for (name, capacity, sectors) in [
            ("cd700", 737_280_000u64, 360_000u64),
            ("dvd", 4_700_372_992, 2_295_104),
            ("dvd-dl", 8_543_666_176, 4_171_712),
            ("bd25", 25_025_314_816, 12_219_392),
            ("bd50", 50_050_629_632, 24_438_784),
            ("bd100", 100_103_356_416, 48_878_592),
        ] {
            assert_eq!(capacity, sectors * 2048, "{name}");
            for given in [name.to_string(), name.to_uppercase()] {
                let v = parse_volume_size(&given).unwrap();
                assert_eq!(v.medium, Some((name, capacity)), "{given}");
                assert_eq!(v.bytes, capacity - capacity.div_ceil(100), "{given}");
                assert!(v.bytes * 100 <= capacity * 99, "{given}: margin under 1 %");
            }
        }
        assert_eq!(parse_volume_size("cd700").unwrap().bytes, 729_907_200);
        // An exact multiple of 100: the margin is exactly 1 %.
        assert_eq!(medium_budget(100 << 20), (100 << 20) - (1 << 20));
    }

    #[test]
    fn explicit_sizes_are_used_exactly() {
        for (s, n) in [
            ("64GB", 64_000_000_000u64),
            ("4GiB", 4 << 30),
            ("1500000", 1_500_000),
            ("1MiB", 1 << 20),
            ("256KiB", 256 << 10),
        ] {
            assert_eq!(
                parse_volume_size(s).unwrap(),
                VolumeSize {
                    bytes: n,
                    medium: None
                },
                "{s}"
            );
        }
        for bad in ["131071", "0", "bd26", "2PiB", ""] {
            assert!(
                matches!(parse_volume_size(bad), Err(Error::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parity_is_bounded_by_the_volumes_a_bundle_may_have() {
        assert_eq!(check_parity(0).unwrap(), 0);
        assert_eq!(check_parity(1).unwrap(), 1);
        assert_eq!(check_parity(998).unwrap(), 998);
        assert!(matches!(check_parity(999), Err(Error::Usage(_))));
        assert!(matches!(check_parity(u32::MAX), Err(Error::Usage(_))));
    }

    #[test]
    fn volume_spans() {
        assert_eq!(volume_span(None), "");
        assert_eq!(volume_span(Some(&(2, 2))), "2");
        assert_eq!(volume_span(Some(&(2, 3))), "2-3");
    }
}
