//! The command line: clap types only. Commands turn these into library calls; library code
//! never sees clap.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// The flags whose value is optional. They take it only joined with `=` (`require_equals`), so
/// that no flag can swallow the next word, such as the bundle directory.
pub const OPTIONAL_VALUE_FLAGS: [&str; 2] = ["--hf-cache", "--ollama-models"];

/// Parses a command line (`args` with the program name first). An unexpected argument after a
/// bare optional-value flag and a word is explained: the word was not taken as the flag's value.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = Cli::try_parse_from(&args).map_err(|e| explain(e, &args))?;
    // `import` takes several BUNDLE directories (the volumes), so the word after a bare
    // optional-value flag is taken as one more: explained as when it was left over.
    if let Command::Import(a) = &cli.command {
        if let (Some((flag, word)), [.., last]) = (bare_flag_word(&args), a.dirs.as_slice()) {
            if a.dirs.len() > 1 && a.dirs.iter().any(|d| d.as_os_str() == word.as_str()) {
                let bad = last.to_string_lossy().into_owned();
                return Err(explained(&bad, &flag, &word, &args));
            }
        }
    }
    Ok(cli)
}

/// A bare optional-value flag followed by a word (not a flag).
fn bare_flag_word(args: &[OsString]) -> Option<(String, String)> {
    args.windows(2).find_map(|w| {
        let flag = w[0].to_str()?;
        let word = w[1].to_string_lossy();
        (OPTIONAL_VALUE_FLAGS.contains(&flag) && !word.starts_with('-'))
            .then(|| (flag.to_string(), word.into_owned()))
    })
}

fn explain(e: clap::Error, args: &[OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return e;
    }
    // Only a word left over (not an unknown flag) can be one a bare flag did not take.
    let Some(ContextValue::String(bad)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    if bad.starts_with('-') {
        return e;
    }
    let Some((flag, word)) = bare_flag_word(args) else {
        return e;
    };
    explained(bad, &flag, &word, args)
}

fn explained(bad: &str, flag: &str, word: &str, args: &[OsString]) -> clap::Error {
    use crate::format::text::escape;
    use clap::error::ErrorKind;
    let mut cmd = Cli::command();
    cmd.build();
    let usage = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|sub| cmd.find_subcommand_mut(sub))
        .map(|c| c.render_usage().to_string())
        .unwrap_or_default();
    let (bad, word) = (escape(bad), escape(word));
    clap::Error::raw(
        ErrorKind::UnknownArgument,
        format!(
            "unexpected argument '{bad}': {flag} takes a directory only as {flag}=DIR, so \
             '{word}' after it was not taken as its value (a bare {flag} means the default \
             directory); for that directory write {flag}={word}\n\n{usage}\n\nFor more \
             information, try '--help'.\n"
        ),
    )
}

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 operational error (I/O, network, keys), 2 usage error,
3 content rejected (bundle failed verification or trust; source bytes did not match their digest),
130 stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM.
A path that is not a bundle (missing, a file, a directory without manifest.json such as a
bundle's chunks/) is a usage error (2); a bundle that is damaged (manifest present, signatures
or chunks wrong; or a bundle's files without its manifest) is a rejection (3); an I/O failure
reading a bundle is 1.

Docs: README.md (quick start, officer's manual check), docs/FORMAT.md (bundle format).";

#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    about = "Carry AI artifacts across an air gap as signed, chunked bundles",
    long_about = "airlock packs files, directories and downloads into a signed, chunked bundle on \
transfer media (connected side), then verifies every signature and hash and imports the content \
(isolated side), writing nothing unless everything checks out.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Hide progress bars and summaries (errors are still printed)
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print a machine-readable JSON report on stdout
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run; boxing the larger variants buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    Keygen(KeygenArgs),
    Pack(PackArgs),
    Inspect(InspectArgs),
    Verify(VerifyArgs),
    Import(ImportArgs),
    Sign(SignArgs),
    Repair(RepairArgs),
    Audit(AuditArgs),
    Completions(CompletionsArgs),
}

/// Rebuild a bundle's missing or damaged volumes from its parity volumes
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  airlock repair /media/bundle --out fixed --trust ci.key.pub            # pack's OUT/ (every volume)
  airlock repair vol-001 vol-003 vol-004 --out fixed --trust ci.key.pub  # volume 2 lost
  airlock repair vol-001 fixed/vol-002 vol-003 vol-004 --out again --trust ci.key.pub  # nothing to repair

Verifies every volume given (signatures and every chunk), then rebuilds every missing volume
and every missing or damaged chunk from the parity volumes (pack --parity N: any N lost or
damaged volumes of a stripe), checks each rebuilt chunk against its signed digests, and writes
each volume that needed repair, complete, under --out/vol-NNN/. A repaired volume carries no
signature of its own (a volume's signatures name it and cannot be remade without the key): it
verifies beside a signed volume of its bundle. A chunk that cannot be rebuilt is named (exit 3)
and nothing is written. Nothing to repair: exit 0, nothing written.")]
pub struct RepairArgs {
    /// The bundle's volumes (directories, any order), or the directory holding them (pack's OUT)
    #[arg(value_name = "VOLUME", required = true)]
    pub dirs: Vec<PathBuf>,

    /// Where to write the repaired volumes (a new or empty directory)
    #[arg(long, value_name = "FIXED")]
    pub out: PathBuf,

    #[command(flatten)]
    pub trust: TrustArgs,
}

/// Check the audit log's hash chain
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  airlock audit verify                       # STATE/audit.jsonl
  airlock audit verify --audit-log /var/log/airlock/audit.jsonl --json
  airlock audit verify --expect-head 3f1c… --expect-records 42   # a head and count kept elsewhere
  airlock audit show --since 24h             # the decisions of the last day, as a table

Every verify and import decision is one JSON line carrying the SHA-256 of the line before it:
an edited, deleted, reordered or inserted record is reported with its line number (exit 3).
The chain alone cannot show records cut off its end, or a tail rewritten by someone who can
write the log: keep the printed head and record count elsewhere, and check them later with
--expect-head and --expect-records.")]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: AuditAction,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check that no record was edited, deleted, reordered or inserted
    Verify(AuditVerifyArgs),
    /// Show the decisions as a table: time, operator, bundle, channel, sequence, outcome, reason
    Show(AuditShowArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  airlock audit show                         # every decision in STATE/audit.jsonl
  airlock audit show --since 24h --channel nightly
  airlock audit show --since 2026-12-01T00:00:00Z --json

The chain is checked as the records are read. When it is broken, the records from the broken
line on are shown apart, under a warning that the chain does not vouch for them, and the exit
code is 3 (as for `audit verify`); with --json a broken chain is the error object alone.")]
pub struct AuditShowArgs {
    #[command(flatten)]
    pub state: StateArgs,

    /// Only decisions made at or after TIME: RFC 3339 (2026-12-01T08:00:00Z) or a duration
    /// before now (24h, 7d, 30min)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only decisions about bundles of channel NAME (as the verified manifest named it)
    #[arg(long, value_name = "NAME")]
    pub channel: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub state: StateArgs,

    /// The head hash printed by an earlier `audit verify` and kept elsewhere: some record (with
    /// --expect-records: record N) must still hash to it, so a rewritten tail is caught
    #[arg(long, value_name = "HASH")]
    pub expect_head: Option<String>,

    /// The record count printed with that head: the log must still hold at least N records,
    /// so records cut off its end are caught
    #[arg(long, value_name = "N")]
    pub expect_records: Option<u64>,
}

/// Generate a signing key pair (minisign format)
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  airlock keygen --out ~/.airlock/ci.key                 # asks for a passphrase
  AIRLOCK_PASSPHRASE=... airlock keygen --out ci.key     # passphrase from the environment
  airlock keygen --out ci.key --unencrypted              # no passphrase (CI secret stores)

Writes KEY (secret, mode 0600) and KEY.pub. Keys made by `minisign -G` work with airlock too.")]
pub struct KeygenArgs {
    /// Path of the secret key to write; the public key goes to PATH.pub
    #[arg(long, value_name = "KEY")]
    pub out: PathBuf,

    /// Do not protect the secret key with a passphrase
    #[arg(long)]
    pub unencrypted: bool,
}

/// Pack sources into a new signed bundle
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  airlock pack ./models/tiny ./patches/fix.bin --out /media/usb/bundle --key ci.key
  airlock pack 'https://example.com/tok.json#sha256=<64 hex>' --out b --key ci.key --chunk-size 700MiB
  airlock pack --spec nightly.toml --out /media/usb/nightly --key ci.key --channel nightly --json
  airlock pack oci://nvcr.io/nim/meta/llama:1.0 --platform linux/amd64 --out b --key ci.key
  airlock pack hf://Qwen/Qwen2.5-VL-7B-Instruct --include '*.safetensors' --include '*.json' --out b --key ci.key
  airlock pack ollama://llama3.2:1b --out b --key ci.key

Sources: a local file or directory (plain path or file://PATH), an http(s):// URL,
optionally pinned with #sha256=HEX[&size=N] (the pack fails if the download differs; it stops
at the first byte beyond a declared size, else at --max-download), a container
image oci://[HOST/]REPO[:TAG][@sha256:HEX] (Docker Hub short names work: oci://nginx:1.27),
an OCI image layout oci-layout://PATH[:TAG], a `docker save` tar docker-archive://FILE[:REF],
a Hugging Face repo hf://ORG/NAME[@REVISION] or hf://datasets/ORG/NAME[@REVISION] (HF_ENDPOINT,
HF_TOKEN or $HF_HOME/token are honoured), or an Ollama model ollama://[HOST/][NAMESPACE/]MODEL[:TAG].
Every manifest, blob and file is checked against its digest (LFS sha256, git blob sha1) as it
streams into the bundle.
The output directory must not exist or be empty. The manifest is written last:
a pack that fails leaves no bundle behind. Ctrl-C or SIGTERM stops it (exit 130/143) and removes
what it wrote; output a killed pack left behind is replaced by the next pack into it.")]
pub struct PackArgs {
    /// Files, directories or URLs to pack
    #[arg(value_name = "SOURCE")]
    pub sources: Vec<String>,

    /// A TOML spec file listing sources and options (see schemas/pack-spec.schema.json)
    #[arg(long, value_name = "FILE.toml")]
    pub spec: Option<PathBuf>,

    /// Directory to write the bundle into
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Secret key to sign with (repeat for several signatures)
    #[arg(long, value_name = "KEY", required = true)]
    pub key: Vec<PathBuf>,

    /// Release channel [default: default]
    #[arg(long, value_name = "NAME")]
    pub channel: Option<String>,

    /// Sequence number within the channel; with --base, above every base's [default: the current
    /// Unix time in seconds, but above the last this machine used for the channel (recorded in
    /// STATE/pack/sequences.json) and above every base's]
    #[arg(long, value_name = "N")]
    pub sequence: Option<u64>,

    /// Make a delta bundle: blobs this previous bundle of the channel holds (a bundle or volume
    /// directory, or its manifest.json with manifest.json.minisig beside it; checked against
    /// --trust/--policy, no chunk read) are listed as external, not carried (repeatable;
    /// replaces the spec's `bases`)
    #[arg(long, value_name = "BASE")]
    pub base: Vec<PathBuf>,

    /// The trust --base is checked against (as verify checks a bundle)
    #[command(flatten)]
    pub trust: TrustArgs,

    /// Validity, e.g. 30d, 12h, or `never` [default: 30d]
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,

    /// Largest chunk file, e.g. 700MiB, 4GiB, 25GB [default: 2GiB, fits FAT32]
    #[arg(long, value_name = "SIZE")]
    pub chunk_size: Option<String>,

    /// Spread the bundle over volumes of at most SIZE each (OUT/vol-001/, vol-002/, ...): a size
    /// used exactly, e.g. 64GB, 4GiB, or a medium: cd700, dvd, dvd-dl, bd25, bd50, bd100 (its
    /// exact capacity less 1% for the filesystem) [default: one directory]
    #[arg(long, value_name = "SIZE|MEDIUM")]
    pub volume_size: Option<String>,

    /// Add N parity volumes (Reed-Solomon): any N lost or damaged data volumes can be rebuilt
    /// (needs --volume-size; at most 998) [default: 0]
    #[arg(long, value_name = "N")]
    pub parity: Option<u32>,

    /// Carry only this platform of multi-platform images, e.g. linux/amd64 (repeatable)
    /// [default: all platforms, the index byte for byte]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Vec<String>,

    /// Hugging Face sources: carry only files matching this glob (repeatable; as
    /// huggingface_hub's allow_patterns, e.g. '*.safetensors', 'tokenizer/')
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,

    /// Hugging Face sources: leave out files matching this glob (repeatable)
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Carry every platform of multi-platform images (the default; excludes --platform)
    #[arg(long, conflicts_with = "platform")]
    pub all_platforms: bool,

    /// Most a URL download without a declared size (#size=N, size = N) may fetch, e.g. 500MiB
    /// [default: 16GiB]
    #[arg(long, value_name = "SIZE")]
    pub max_download: Option<String>,

    /// Abort a download slower than this many bytes per second over --min-speed-time, e.g.
    /// 1KiB; 0 turns the check off (as curl's --speed-limit) [default: 1KiB]
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub min_speed: Option<String>,

    /// The period of --min-speed, in seconds or e.g. 2m (as curl's --speed-time) [default: 60]
    #[arg(long, value_name = "SECS")]
    pub min_speed_time: Option<String>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// The trust a bundle is checked against: declared once, the same in inspect, verify, import
/// and sign.
#[derive(Debug, Clone, Default, Args)]
pub struct TrustArgs {
    /// Trusted public key: any one of them suffices, for any channel (repeatable; a .pub file
    /// or the RW... key itself)
    #[arg(id = "trust", long = "trust", value_name = "PUBKEY")]
    pub keys: Vec<String>,

    /// Trust policy file (TOML: named keys, per-channel signers and thresholds; see
    /// docs/POLICY.md) [default: /etc/airlock/trust.toml if it exists and no --trust is given]
    #[arg(long, value_name = "FILE", conflicts_with = "trust")]
    pub policy: Option<PathBuf>,
}

/// Where the enclave keeps its acceptance state and audit log.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// State directory: the highest sequence accepted per channel, and the audit log
    /// [env: AIRLOCK_STATE] [default: $XDG_STATE_HOME/airlock, else /var/lib/airlock as root,
    /// else ~/.local/state/airlock]
    // The environment variables are read by the command (commands::state_paths), not by clap:
    // clap would show a value from the environment in the usage line as if it had been typed.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,

    /// Audit log (hash-chained JSON lines) [env: AIRLOCK_AUDIT_LOG] [default: STATE/audit.jsonl]
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
}

/// How to reach OCI registries (pack: sources; import: the target).
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Registry credentials USER:PASSWORD [env: AIRLOCK_CREDS] [default: from
    /// $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, $DOCKER_CONFIG/config.json,
    /// ~/.docker/config.json]
    // AIRLOCK_CREDS is read by the command (commands::connect_options), not by clap, which would
    // show it in the usage line as if it had been typed.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,

    /// Trust this CA certificate (PEM) for registries, besides the system roots (repeatable)
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<PathBuf>,

    /// Allow plain HTTP to this registry HOST[:PORT] (repeatable; loopback hosts always may)
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
}

/// Show what a bundle holds, for review before import
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  airlock inspect /media/usb/bundle
  airlock inspect /media/usb/bundle --trust officer.key.pub --json
  airlock inspect /media/usb/bundle --policy /etc/airlock/trust.toml   # names who signed
  airlock inspect /media/usb/bundle --trust officer.key.pub --files   # every file, size, SHA-256

Each artifact is shown with its resolved identity: a Hugging Face commit, an image's manifest
digest, media type and platforms, a download's URL and SHA-256, file counts and sizes.
Without --trust or a policy the signatures are listed but not checked: the content shown is
UNVERIFIED.")]
pub struct InspectArgs {
    /// The bundle directory (holding manifest.json): one volume of a bundle spread over several,
    /// or the OUT/ holding its vol-NNN/ (the first volume found is read)
    #[arg(value_name = "BUNDLE")]
    pub dir: PathBuf,

    #[command(flatten)]
    pub trust: TrustArgs,

    /// Also list every file and blob of every artifact: path, size in bytes and SHA-256 (and,
    /// spread over volumes, the volume(s) its bytes lie on)
    #[arg(long)]
    pub files: bool,
}

/// Check signatures and every hash of a bundle, writing nothing
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  airlock verify /media/usb/bundle --trust ci.key.pub
  airlock verify /media/usb/bundle --trust ci.key.pub --trust officer.key.pub --json
  airlock verify /media/usb/bundle --policy trust.toml      # m-of-n signers per channel
  airlock verify /media/bd0/vol-002 --trust ci.key.pub      # one volume, on insert: exit 4
  airlock verify /mnt/a/vol-003 /mnt/b/vol-001 /mnt/c/vol-002 --trust ci.key.pub
  airlock verify out --trust ci.key.pub                     # out/vol-001 ... out/vol-NNN

Reports every problem found (missing, truncated or corrupt chunks, unexpected files,
bad or missing signatures, unknown signers, edited manifest, unsupported version, expiry),
and which trust policy rule failed (who signed, who was expected, how many were needed).
Give exactly one of --policy and --trust (or install /etc/airlock/trust.toml).

A bundle over several volumes: give any of its volume directories, in any order, or the
directory holding them. Every volume given intact and every volume there: exit 0. Every
volume given intact but some not given: exit 4 (intact but incomplete), naming the volumes
still to check. A volume damaged, of another bundle, or given twice: exit 3.")]
pub struct VerifyArgs {
    /// The bundle directory (holding manifest.json), or volume directories of one bundle
    /// (in any order), or a directory holding them (vol-001/, vol-002/, ...)
    #[arg(value_name = "BUNDLE", required = true, num_args = 1..)]
    pub dirs: Vec<PathBuf>,

    #[command(flatten)]
    pub trust: TrustArgs,

    #[command(flatten)]
    pub state: StateArgs,
}

/// Verify a bundle, then import its content
#[derive(Debug, Args)]
#[command(
    group(clap::ArgGroup::new("target").required(true).multiple(true).args(["files", "registry", "oci_layout", "ollama_models", "models_dir", "hf_cache"])),
    after_help = "\
Examples:
  airlock import /media/usb/bundle --trust ci.key.pub --files /srv/airlock --dry-run
  airlock import /media/usb/bundle --trust ci.key.pub --files /srv/airlock --json
  airlock import /media/usb/bundle --policy /etc/airlock/trust.toml --files /srv/airlock
  airlock import /media/usb/bundle --trust ci.key.pub --registry registry.enclave:5000/mirror
  airlock import /media/usb/bundle --trust ci.key.pub --oci-layout /srv/images
  airlock import /media/usb/models --trust ci.key.pub --ollama-models --models-dir /srv/models
  airlock import /media/usb/models --trust ci.key.pub --hf-cache            # ~/.cache/huggingface/hub
  airlock import /media/usb/models --trust ci.key.pub --hf-cache=/srv/hf    # another cache: with `=`
  airlock import /mnt/vol-003 /mnt/vol-001 /mnt/vol-002 --trust ci.key.pub --files /srv/airlock
  airlock import --media /media/usb --trust ci.key.pub --files /srv/airlock  # one drive: prompts

A bundle over several volumes: give its volume directories in any order (or the directory
holding them); only the volumes holding what the import needs (after --only/--skip) must be
there. With --media on a terminal, each further volume is asked for by number and label and
read once; an import stopped at the prompt (or killed) resumes without reading again the
volumes whose blobs it staged.

--hf-cache and --ollama-models take a directory only with `=` (--hf-cache=DIR): a word after
a space is never their value. The output names the state directory and audit log used.

Nothing is written unless the whole bundle verifies. Files land at DEST/<artifact>/...
through a temp file that is digest-checked, fsynced and renamed. Re-importing the same
bundle is a no-op; a file already present with other content stops the import before
anything is written.

Images go to --registry and/or --oci-layout; with neither, --files writes each image as an
OCI image layout directory DEST/<artifact>. In a registry, the image mirrored from
SRC_HOST/REPO:TAG lands at HOST/PREFIX/SRC_HOST/REPO:TAG (`:PORT` in SRC_HOST becomes
`-PORT`), or at HOST/PREFIX/REPO:TAG with --strip-host; --dry-run shows the mapping.
Blobs go first, then child manifests, then indexes, then the tag: a tag never points at
an incomplete image, and re-running an interrupted import finishes it.

Ollama models go to --ollama-models (blobs/sha256-<hex>, then the manifest byte for byte at
manifests/<host>/<namespace>/<model>/<tag>), --models-dir, or a registry/layout; Hugging Face
repos to --hf-cache (blobs/<etag>, snapshots/<commit>/<path> as relative symlinks, refs/<revision>
last, exactly as huggingface_hub writes them, so HF_HUB_OFFLINE=1 loads them) and/or
--models-dir. Every target is planned before any is written."
)]
pub struct ImportArgs {
    /// The bundle directory (holding manifest.json); for a bundle over several volumes, its
    /// volume directories in any order, or the directory holding them (`OUT/`)
    #[arg(value_name = "BUNDLE", required_unless_present = "media", num_args = 1..)]
    pub dirs: Vec<PathBuf>,

    /// Import a bundle over several volumes from one drive: the volume at MOUNTPOINT first
    /// (any of them), then, on a terminal, a prompt for each further volume needed, inserted
    /// at the same MOUNTPOINT. Without a terminal (or with --json) it never prompts: the
    /// volumes needed must all be given
    #[arg(long, value_name = "MOUNTPOINT", conflicts_with = "dirs")]
    pub media: Option<PathBuf>,

    #[command(flatten)]
    pub trust: TrustArgs,

    /// Materialise file and directory artifacts (and images, if no image target is given) under DEST
    #[arg(long, value_name = "DEST")]
    pub files: Option<PathBuf>,

    /// Push images to this registry, under an optional repository prefix
    #[arg(long, value_name = "HOST[:PORT][/PREFIX]", value_parser = registry_target)]
    pub registry: Option<String>,

    /// Drop the source registry host from target repository names
    #[arg(long, requires = "registry")]
    pub strip_host: bool,

    /// Write images into this OCI image layout (created or merged; ref names are the source references)
    #[arg(long, value_name = "PATH")]
    pub oci_layout: Option<PathBuf>,

    /// Put Hugging Face repos into a huggingface_hub cache: --hf-cache for the default one,
    /// --hf-cache=DIR for another (with `=`: a word after a space is never taken as DIR)
    /// [default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub]
    #[arg(long, value_name = "DIR", num_args = 0..=1, require_equals = true)]
    pub hf_cache: Option<Option<PathBuf>>,

    /// In the Hugging Face cache, write snapshot files as real files, not symlinks into blobs/
    /// (for filesystems or policies without symlinks) [default: on if HF_HUB_DISABLE_SYMLINKS]
    #[arg(long, requires = "hf_cache")]
    pub hf_no_symlinks: bool,

    /// Put Ollama models into an Ollama store: --ollama-models for the default one,
    /// --ollama-models=DIR for another (with `=`: a word after a space is never taken as DIR)
    /// [default: $OLLAMA_MODELS, else ~/.ollama/models]
    #[arg(long, value_name = "DIR", num_args = 0..=1, require_equals = true)]
    pub ollama_models: Option<Option<PathBuf>>,

    /// Put models as plain directories here (DIR/ORG/NAME for Hugging Face repos,
    /// DIR/ollama/HOST/NAMESPACE/MODEL/TAG for Ollama models), for servers that take a path
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,

    /// Import only the artifacts with this name, as `inspect` shows it (repeatable; globs `*`,
    /// `?`, `[...]`); the others' chunks are not read, and they need no target
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,

    /// Leave out the artifacts with this name (repeatable; globs as for --only)
    #[arg(long, value_name = "NAME")]
    pub skip: Vec<String>,

    /// Verify and print the plan, write nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub registry_opts: RegistryArgs,

    /// Import even if the channel already accepted a higher sequence (or another bundle at this
    /// sequence): for recovery only; recorded in the audit log
    #[arg(long)]
    pub allow_rollback: bool,

    #[command(flatten)]
    pub state: StateArgs,
}

/// `--registry` is checked as it is parsed (host, port, prefix): a usage error names what is
/// wrong before anything else happens.
fn registry_target(s: &str) -> Result<String, String> {
    crate::targets::registry::Target::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// Add a countersignature to a bundle that verifies (the two-person rule)
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  airlock inspect /media/usb/bundle --trust ci.key.pub           # review first
  airlock sign /media/usb/bundle --key officer.key --trust ci.key.pub
  airlock sign /media/usb/bundle --key officer.key --policy /etc/airlock/trust.toml

The bundle must verify against the --trust keys (or the policy, where one counted signer
suffices: the countersignature is how it reaches the channel's threshold) before it is signed. The signature goes to
signatures/<KEYID>.minisig; chunks and manifest are not touched. Check it with stock tools:
  minisign -Vm manifest.json -x signatures/<KEYID>.minisig -p officer.key.pub

A bundle over several volumes: give volume directories, or the directory holding them.
Each volume given is checked, then gets its own countersignature (its trusted comment names
that volume and its SHA256SUMS): sign every volume, on every medium.")]
pub struct SignArgs {
    /// The bundle directory (holding manifest.json), or volume directories of one bundle, or
    /// a directory holding them (vol-001/, vol-002/, ...)
    #[arg(value_name = "BUNDLE", required = true, num_args = 1..)]
    pub dirs: Vec<PathBuf>,

    /// Secret key to countersign with
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,

    #[command(flatten)]
    pub trust: TrustArgs,
}

/// Print shell completions
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  airlock completions bash > /etc/bash_completion.d/airlock
  airlock completions zsh > \"${fpath[1]}/_airlock\"
  airlock completions fish > ~/.config/fish/completions/airlock.fish")]
pub struct CompletionsArgs {
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}
