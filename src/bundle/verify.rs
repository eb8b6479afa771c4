//! Verification: the only way to obtain a [`VerifiedBundle`], which is all importers accept.
//!
//! Order (FORMAT.md §Reading): read the manifest bytes (bounded) and every signature; check each
//! signature against the trusted keys; only if a trusted key signed is the manifest parsed and
//! believed. Then its trusted comments, `SHA256SUMS`, expiry, the set of files present, and the
//! size and SHA-256 of every chunk. Every problem found is reported, not only the first. Nothing
//! is written.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::limits::{MAX_MANIFEST_BYTES, MAX_SIGNATURES, MAX_SIGNATURE_BYTES};
use crate::format::text::escape;
use crate::format::zstdframe::FrameCheck;
use crate::format::{
    self, Digest, Manifest, ParseError, CHUNKS_DIR, MANIFEST_FILE, SIGNATURES_DIR, SIGNATURE_FILE,
    SUMS_FILE,
};
use crate::fsutil;
use crate::policy::{KeyState, TrustPolicy};
use crate::progress::{Progress, ProgressReader};
use crate::sign::{comment_field, repeated_comment_field, PublicKey, Signature};

/// How far a bundle may be past its expiry before it is refused (clock skew between the packing
/// machine and the enclave).
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// One thing wrong with a bundle. `code()` is stable for `--json` consumers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum Problem {
    MissingManifest,
    UnreadableManifest {
        reason: String,
    },
    MissingSignature,
    BadSignature {
        file: String,
        reason: String,
    },
    UnknownSigner {
        file: String,
        key_id: String,
    },
    EditedManifest {
        file: String,
        key_id: String,
        reason: String,
    },
    UntrustedManifest,
    CommentMismatch {
        file: String,
        field: String,
        expected: String,
        found: String,
    },
    /// A trusted comment gives a field more than once (`minisign -V` shows every copy).
    AmbiguousComment {
        file: String,
        field: String,
    },
    UnsupportedVersion {
        reason: String,
    },
    InvalidManifest {
        reason: String,
    },
    Expired {
        expires: String,
    },
    SumsMismatch,
    MissingChunk {
        chunk: String,
    },
    TruncatedChunk {
        chunk: String,
        expected_size: u64,
        actual_size: u64,
    },
    OversizedChunk {
        chunk: String,
        expected_size: u64,
        actual_size: u64,
    },
    CorruptChunk {
        chunk: String,
        expected: String,
        actual: String,
    },
    UnreadableChunk {
        chunk: String,
        reason: String,
    },
    /// A zstd segment breaks a frame rule (FORMAT.md §Compression); import would refuse it.
    InvalidSegment {
        chunk: String,
        blob: String,
        segment: usize,
        reason: String,
    },
    UnexpectedFile {
        path: String,
    },
    /// The channel's rule was not met: fewer distinct counted keys signed than it needs.
    PolicyThreshold {
        policy: String,
        channel: String,
        /// The rule applied: the channel's own, or `*`.
        rule: String,
        needed: usize,
        /// Keys of the rule whose valid signature counted.
        counted: Vec<KeyRef>,
        /// Every key of the policy whose signature verified, counted or not.
        signed: Vec<KeyRef>,
        /// The keys the rule accepts.
        expected: Vec<KeyRef>,
    },
    /// The policy has no rule for the bundle's channel, and no `*` rule.
    UnknownChannel {
        policy: String,
        channel: String,
        known: Vec<String>,
    },
    /// A valid signature by a revoked key, not counted (reported when the bundle is rejected).
    RevokedKey {
        file: String,
        name: String,
        key_id: String,
    },
    /// A valid signature by a key past its policy expiry, not counted (reported when the bundle
    /// is rejected).
    ExpiredKey {
        file: String,
        name: String,
        key_id: String,
        expired: String,
    },
    /// The channel already accepted a higher sequence (the enclave's state says so).
    Rollback {
        channel: String,
        sequence: u64,
        last: u64,
    },
    /// Another bundle was already accepted at this channel and sequence.
    SequenceReused {
        channel: String,
        sequence: u64,
    },
}

/// A policy key, by name and key id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyRef {
    pub name: String,
    pub key_id: String,
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == self.key_id {
            write!(f, "{}", escape(&self.key_id))
        } else {
            write!(f, "{} ({})", escape(&self.name), escape(&self.key_id))
        }
    }
}

fn key_list(keys: &[KeyRef]) -> String {
    if keys.is_empty() {
        return "none".into();
    }
    keys.iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Problem {
    pub fn code(&self) -> &'static str {
        match self {
            Problem::MissingManifest => "missing-manifest",
            Problem::UnreadableManifest { .. } => "unreadable-manifest",
            Problem::MissingSignature => "missing-signature",
            Problem::BadSignature { .. } => "bad-signature",
            Problem::UnknownSigner { .. } => "unknown-signer",
            Problem::EditedManifest { .. } => "edited-manifest",
            Problem::UntrustedManifest => "untrusted-manifest",
            Problem::CommentMismatch { .. } => "comment-mismatch",
            Problem::AmbiguousComment { .. } => "ambiguous-comment",
            Problem::UnsupportedVersion { .. } => "unsupported-version",
            Problem::InvalidManifest { .. } => "invalid-manifest",
            Problem::Expired { .. } => "expired",
            Problem::SumsMismatch => "sums-mismatch",
            Problem::MissingChunk { .. } => "missing-chunk",
            Problem::TruncatedChunk { .. } => "truncated-chunk",
            Problem::OversizedChunk { .. } => "oversized-chunk",
            Problem::CorruptChunk { .. } => "corrupt-chunk",
            Problem::UnreadableChunk { .. } => "unreadable-chunk",
            Problem::InvalidSegment { .. } => "invalid-segment",
            Problem::UnexpectedFile { .. } => "unexpected-file",
            Problem::PolicyThreshold { .. } => "policy-threshold",
            Problem::UnknownChannel { .. } => "unknown-channel",
            Problem::RevokedKey { .. } => "revoked-key",
            Problem::ExpiredKey { .. } => "expired-key",
            Problem::Rollback { .. } => "rollback",
            Problem::SequenceReused { .. } => "sequence-reused",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingManifest => write!(f, "missing manifest: {MANIFEST_FILE} is not there"),
            Problem::UnreadableManifest { reason } => write!(f, "cannot read {MANIFEST_FILE}: {reason}"),
            Problem::MissingSignature => write!(f, "missing signature: no {SIGNATURE_FILE} and no {SIGNATURES_DIR}/*.minisig"),
            Problem::BadSignature { file, reason } => write!(f, "bad signature {}: {reason}", escape(file)),
            Problem::UnknownSigner { file, key_id } => {
                write!(f, "unknown signer: {} is signed by key {}, which is not among the trusted keys", escape(file), escape(key_id))
            }
            Problem::EditedManifest { file, key_id, reason } => write!(
                f,
                "edited manifest: {MANIFEST_FILE} does not match signature {} by trusted key {} ({reason}); \
                 it was changed after signing, or the signature belongs to another bundle",
                escape(file),
                escape(key_id)
            ),
            Problem::UntrustedManifest => write!(f, "no valid signature by a trusted key: the manifest cannot be believed"),
            Problem::CommentMismatch { file, field, expected, found } => write!(
                f,
                "signature {}: trusted comment says {field} \"{}\" but the manifest says \"{}\"",
                escape(file),
                escape(found),
                escape(expected)
            ),
            Problem::AmbiguousComment { file, field } => write!(
                f,
                "signature {}: trusted comment gives {} more than once; a comment with repeated fields is refused \
                 (minisign -V shows every copy)",
                escape(file),
                escape(field)
            ),
            Problem::UnsupportedVersion { reason } => write!(f, "unsupported version: {reason}"),
            Problem::InvalidManifest { reason } => write!(f, "invalid manifest: {reason}"),
            Problem::Expired { expires } => write!(f, "expired: the bundle expired at {}", escape(expires)),
            Problem::SumsMismatch => write!(f, "{SUMS_FILE} does not match the chunk list of the signed manifest"),
            Problem::MissingChunk { chunk } => write!(f, "missing chunk: {} is not there", escape(chunk)),
            Problem::TruncatedChunk { chunk, expected_size, actual_size } => {
                write!(f, "truncated chunk: {} has {actual_size} bytes, expected {expected_size}", escape(chunk))
            }
            Problem::OversizedChunk { chunk, expected_size, actual_size } => {
                write!(f, "oversized chunk: {} has {actual_size} bytes, expected {expected_size}", escape(chunk))
            }
            Problem::CorruptChunk { chunk, expected, actual } => {
                write!(f, "corrupt chunk: {} has digest {actual}, expected {expected}", escape(chunk))
            }
            Problem::UnreadableChunk { chunk, reason } => write!(f, "cannot read chunk {}: {reason}", escape(chunk)),
            Problem::InvalidSegment { chunk, blob, segment, reason } => {
                write!(f, "invalid segment: segment {segment} of blob {blob} in chunk {}: {reason}", escape(chunk))
            }
            Problem::UnexpectedFile { path } => write!(f, "unexpected file: {} is not part of the bundle", escape(path)),
            Problem::PolicyThreshold { policy, channel, rule, needed, counted, signed, expected } => {
                write!(
                    f,
                    "policy threshold not met: trust policy {} (rule \"{}\") needs signatures by {needed} distinct keys of \
                     [{}] for channel \"{}\"; {} counted: [{}]",
                    escape(policy),
                    escape(rule),
                    key_list(expected),
                    escape(channel),
                    counted.len(),
                    key_list(counted)
                )?;
                let others: Vec<KeyRef> = signed.iter().filter(|k| !counted.contains(k)).cloned().collect();
                if !others.is_empty() {
                    write!(f, "; also signed, not counted: [{}]", key_list(&others))?;
                }
                Ok(())
            }
            Problem::UnknownChannel { policy, channel, known } => write!(
                f,
                "unknown channel: trust policy {} has no rule for channel \"{}\" and no \"*\" rule (channels: {})",
                escape(policy),
                escape(channel),
                if known.is_empty() { "none".to_string() } else { escape(&known.join(", ")).to_string() }
            ),
            Problem::RevokedKey { file, name, key_id } => {
                write!(f, "revoked key: {} is signed by key {} ({}), which the policy revoked; not counted", escape(file), escape(name), escape(key_id))
            }
            Problem::ExpiredKey { file, name, key_id, expired } => write!(
                f,
                "expired key: {} is signed by key {} ({}), which expired at {}; not counted",
                escape(file),
                escape(name),
                escape(key_id),
                escape(expired)
            ),
            Problem::Rollback { channel, sequence, last } => write!(
                f,
                "rollback: channel \"{}\" already accepted sequence {last}; this bundle is sequence {sequence} \
                 (an older bundle, or a replay; --allow-rollback overrides, and is audited)",
                escape(channel)
            ),
            Problem::SequenceReused { channel, sequence } => write!(
                f,
                "sequence reused: channel \"{}\" already accepted another bundle at sequence {sequence} \
                 (--allow-rollback overrides, and is audited)",
                escape(channel)
            ),
        }
    }
}

/// A signature found on a bundle, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct SignerInfo {
    pub file: String,
    pub key_id: String,
    /// The key's name in the trust policy (with `--trust`, its key id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The key is among the trusted keys (named by the policy, even if revoked or expired).
    pub trusted: bool,
    /// The signature verified with that key.
    pub valid: bool,
    /// `revoked` or `expired` when the policy no longer accepts the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The signature counted towards the channel's threshold (a key counts once however many
    /// signatures it made).
    pub counted: bool,
    /// The trusted comment (shown only for valid signatures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A bundle whose signature and manifest checked out, and (from [`verify`], [`verify_policy`],
/// [`verify_for_countersign`]) every chunk; from [`verify_manifest`] the chunks are left to the
/// staged import, which checks each blob it reads. Only this module makes one.
#[derive(Debug)]
pub struct VerifiedBundle {
    chunks_checked: bool,
    dir: PathBuf,
    manifest: Manifest,
    manifest_digest: Digest,
    manifest_size: u64,
    signers: Vec<SignerInfo>,
    blob_index: std::collections::HashMap<Digest, usize>,
}

impl VerifiedBundle {
    /// The blob with this digest, if the bundle holds it.
    pub fn blob(&self, digest: &Digest) -> Option<&crate::format::Blob> {
        self.blob_index
            .get(digest)
            .map(|&i| &self.manifest.blobs[i])
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn manifest_digest(&self) -> Digest {
        self.manifest_digest
    }
    /// Size in bytes of the verified `manifest.json`.
    pub fn manifest_size(&self) -> u64 {
        self.manifest_size
    }
    pub fn signers(&self) -> &[SignerInfo] {
        &self.signers
    }
    /// Whether every chunk was hashed against the manifest (false after [`verify_manifest`]).
    pub fn chunks_checked(&self) -> bool {
        self.chunks_checked
    }
    pub fn chunk_path(&self, index: u32) -> PathBuf {
        self.dir
            .join(CHUNKS_DIR)
            .join(&self.manifest.chunks[index as usize].name)
    }
}

pub struct VerifyOptions {
    pub now: SystemTime,
}

/// Reads a bundle file of at most `max` bytes; it must be a regular file, not a link (checked on
/// the handle, opened without following links or blocking: `fsutil::open_regular`).
pub(crate) fn read_bounded(path: &Path, max: u64) -> std::result::Result<Vec<u8>, String> {
    fsutil::read_regular(path, max).map_err(|e| e.to_string())
}

/// A signature file's path relative to the bundle root, and its text (or why it is unreadable).
pub type SignatureFile = (String, std::result::Result<String, String>);

/// Signature files of a bundle, by their path relative to the bundle root.
pub fn signature_files(dir: &Path) -> (Vec<SignatureFile>, Vec<Problem>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let read = |path: &Path| {
        read_bounded(path, MAX_SIGNATURE_BYTES)
            .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8 text".to_string()))
    };
    let primary = dir.join(SIGNATURE_FILE);
    if primary.symlink_metadata().is_ok() {
        out.push((SIGNATURE_FILE.to_string(), read(&primary)));
    }
    let sigdir = dir.join(SIGNATURES_DIR);
    if let Ok(entries) = fs::read_dir(&sigdir) {
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let rel = format!("{SIGNATURES_DIR}/{}", name.to_string_lossy());
            let path = sigdir.join(&name);
            let is_file = path
                .symlink_metadata()
                .map(|m| m.is_file())
                .unwrap_or(false);
            let well_named = name.to_str().is_some_and(|n| n.ends_with(".minisig"));
            if !is_file || !well_named || out.len() >= MAX_SIGNATURES {
                problems.push(Problem::UnexpectedFile { path: rel });
                continue;
            }
            out.push((rel, read(&path)));
        }
    }
    (out, problems)
}

/// Verifies the bundle in `dir` against the trusted keys (any one of them suffices, for any
/// channel: the quick form `--trust`). Writes nothing.
pub fn verify(
    dir: &Path,
    trusted: &[PublicKey],
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifiedBundle> {
    verify_policy(dir, &TrustPolicy::from_keys(trusted), opts, progress)
}

/// Verifies the bundle in `dir` against a trust policy: signatures by the policy's keys, then
/// the channel's rule (enough distinct, unrevoked, unexpired signer keys). Writes nothing.
pub fn verify_policy(
    dir: &Path,
    policy: &TrustPolicy,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifiedBundle> {
    verify_inner(dir, policy, opts, true, true, progress)
}

/// As [`verify_policy`] — signatures, policy, manifest, `SHA256SUMS` and the set of files —
/// without reading the chunks: the admission step of a staged import, which checks every blob
/// it needs against its signed digest as it reads it once (`crate::stage`), and reads no
/// chunk it does not need. [`VerifiedBundle::chunks_checked`] is false on the result.
pub fn verify_manifest(
    dir: &Path,
    policy: &TrustPolicy,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifiedBundle> {
    verify_inner(dir, policy, opts, true, false, progress)
}

/// As [`verify_policy`], but one counted signer suffices instead of the channel's threshold:
/// the check before adding a countersignature, which is how a bundle reaches its threshold.
pub fn verify_for_countersign(
    dir: &Path,
    policy: &TrustPolicy,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<Countersignable> {
    verify_inner(dir, policy, opts, false, true, progress).map(Countersignable)
}

/// A bundle that may take a countersignature: intact and signed by at least one key its
/// channel's rule counts, perhaps below the rule's threshold. Its own type, so that it can never
/// be imported or admitted (a [`VerifiedBundle`] always met the threshold).
#[derive(Debug)]
pub struct Countersignable(VerifiedBundle);

impl Countersignable {
    pub fn manifest(&self) -> &Manifest {
        self.0.manifest()
    }
    pub fn manifest_digest(&self) -> Digest {
        self.0.manifest_digest()
    }
    pub fn signers(&self) -> &[SignerInfo] {
        self.0.signers()
    }
}

/// The manifest's bytes and what the signatures over them say, established before anything in
/// those bytes is parsed. Only [`authenticate`] makes one, and only when a usable trusted key's
/// signature verified over the exact bytes.
pub struct Authenticated {
    /// The manifest bytes, as read (bounded) from the media.
    pub bytes: Vec<u8>,
    /// Every signature file and what became of it.
    pub signers: Vec<SignerInfo>,
    /// Valid signatures by usable policy keys: (file, signature, key index in the policy).
    valid: Vec<(String, Signature, usize)>,
    /// Valid signatures that do not count (revoked or expired keys), reported on rejection.
    excluded: Vec<Problem>,
    /// Problems found so far (unreadable or invalid signatures, other keys' failures).
    problems: Vec<Problem>,
}

impl Authenticated {
    /// The policy indices of the usable keys whose signatures verified.
    pub fn valid_keys(&self) -> Vec<usize> {
        self.valid.iter().map(|(_, _, i)| *i).collect()
    }
}

/// Steps 1 and 2 of verification: the manifest's bytes (bounded, opened without following links
/// or blocking) and every signature over them, checked with the policy's keys. Nothing looks
/// inside the bytes here; without a valid signature by a usable trusted key the bundle is
/// rejected (`missing-signature`, `unknown-signer`, `edited-manifest`, …) unparsed.
pub fn authenticate(dir: &Path, policy: &TrustPolicy, now: SystemTime) -> Result<Authenticated> {
    let meta = fs::metadata(dir).map_err(|e| Error::io("open bundle", dir, e))?;
    if !meta.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a bundle directory",
            escape(&dir.display().to_string())
        )));
    }
    let reject = |problems: Vec<Problem>| Error::Rejected {
        dir: dir.to_path_buf(),
        problems,
    };
    let mut problems = Vec::new();

    // 1. Manifest bytes, untrusted.
    let bytes = read_manifest_bytes(dir).map_err(|p| reject(vec![p]))?;

    // 2. Signatures.
    let (sig_files, mut sig_problems) = signature_files(dir);
    problems.append(&mut sig_problems);
    if sig_files.is_empty() {
        problems.push(Problem::MissingSignature);
    }
    let mut signers = Vec::new();
    let mut valid: Vec<(String, Signature, usize)> = Vec::new();
    let mut excluded = Vec::new();
    for (file, text) in sig_files {
        let sig = match text.and_then(|t| Signature::parse(&t, &file)) {
            Ok(s) => s,
            Err(reason) => {
                problems.push(Problem::BadSignature { file, reason });
                continue;
            }
        };
        let key_id = sig.key_id.to_string();
        let index = policy.keys.iter().position(|k| k.key.id == sig.key_id);
        let named = index.map(|i| &policy.keys[i]);
        let mut info = SignerInfo {
            file: file.clone(),
            key_id: key_id.clone(),
            // A key's name is given only to a signature that verifies with that key.
            name: None,
            trusted: named.is_some(),
            valid: false,
            state: None,
            counted: false,
            comment: None,
        };
        if let (Some(i), Some(k)) = (index, named) {
            let state = k.state(now);
            info.state = match &state {
                KeyState::Usable => None,
                KeyState::Revoked => Some("revoked".into()),
                KeyState::Expired(_) => Some("expired".into()),
            };
            match sig.verify(&k.key, &bytes) {
                Ok(()) => {
                    info.valid = true;
                    info.name = Some(k.name.clone());
                    info.comment = Some(sig.trusted_comment());
                    let (name, key_id) = (k.name.clone(), key_id.clone());
                    match state {
                        // Every valid signature's trusted comment is checked below, including
                        // a second one by the same key.
                        KeyState::Usable => valid.push((file, sig, i)),
                        KeyState::Revoked => {
                            excluded.push(Problem::RevokedKey { file, name, key_id })
                        }
                        KeyState::Expired(expired) => excluded.push(Problem::ExpiredKey {
                            file,
                            name,
                            key_id,
                            expired,
                        }),
                    }
                }
                Err(reason) => problems.push(Problem::EditedManifest {
                    file,
                    key_id,
                    reason,
                }),
            }
        }
        signers.push(info);
    }
    if valid.is_empty() {
        problems.append(&mut excluded);
        for s in signers.iter().filter(|s| !s.trusted) {
            problems.push(Problem::UnknownSigner {
                file: s.file.clone(),
                key_id: s.key_id.clone(),
            });
        }
        problems.push(Problem::UntrustedManifest);
        return Err(reject(problems));
    }
    Ok(Authenticated {
        bytes,
        signers,
        valid,
        excluded,
        problems,
    })
}

/// The manifest's bytes, bounded, from a regular file (a link, FIFO or directory is refused).
// The error is the one problem the caller reports (as verify's own steps do), not boxed.
#[allow(clippy::result_large_err)]
pub fn read_manifest_bytes(dir: &Path) -> std::result::Result<Vec<u8>, Problem> {
    let manifest_path = dir.join(MANIFEST_FILE);
    match manifest_path.symlink_metadata() {
        Err(_) => Err(Problem::MissingManifest),
        Ok(m) if !m.is_file() => Err(Problem::UnreadableManifest {
            reason: "not a regular file".into(),
        }),
        Ok(_) => read_bounded(&manifest_path, MAX_MANIFEST_BYTES)
            .map_err(|reason| Problem::UnreadableManifest { reason }),
    }
}

/// Step 3: parses and validates manifest bytes (authenticated ones, or, for `inspect` without
/// any trust, bytes shown as unverified); a failure is the problem verify reports.
#[allow(clippy::result_large_err)]
pub fn parse_manifest(bytes: &[u8]) -> std::result::Result<Manifest, Problem> {
    Manifest::parse(bytes).map_err(|e| match e {
        ParseError::UnsupportedVersion { .. } => Problem::UnsupportedVersion {
            reason: e.to_string(),
        },
        e => Problem::InvalidManifest {
            reason: e.to_string(),
        },
    })
}

fn verify_inner(
    dir: &Path,
    policy: &TrustPolicy,
    opts: &VerifyOptions,
    require_threshold: bool,
    check_chunks: bool,
    progress: &dyn Progress,
) -> Result<VerifiedBundle> {
    let reject = |problems: Vec<Problem>| Error::Rejected {
        dir: dir.to_path_buf(),
        problems,
    };
    // 1 and 2: the bytes and a trusted signature over them; nothing is parsed before.
    let Authenticated {
        bytes,
        mut signers,
        valid,
        excluded,
        mut problems,
    } = authenticate(dir, policy, opts.now)?;

    // 3. The manifest is authentic: parse and validate it.
    let manifest = match parse_manifest(&bytes) {
        Ok(m) => m,
        Err(p) => {
            problems.push(p);
            return Err(reject(problems));
        }
    };
    let sums = manifest.sha256sums();
    let sums_digest = Digest::of(sums.as_bytes());
    for (file, sig, _) in &valid {
        let comment = sig.trusted_comment();
        if let Some(field) = repeated_comment_field(&comment) {
            problems.push(Problem::AmbiguousComment {
                file: file.clone(),
                field: field.to_string(),
            });
            continue;
        }
        let expect = [
            ("bundle", manifest.bundle_id.clone()),
            ("channel", manifest.channel.clone()),
            ("sequence", manifest.sequence.to_string()),
            ("sha256sums", sums_digest.hex()),
        ];
        for (field, expected) in expect {
            let found = comment_field(&comment, field).unwrap_or("").to_string();
            if found != expected {
                problems.push(Problem::CommentMismatch {
                    file: file.clone(),
                    field: field.into(),
                    expected,
                    found,
                });
            }
        }
    }
    let valid_keys: Vec<usize> = valid.iter().map(|(_, _, i)| *i).collect();
    problems.extend(apply_policy(
        policy,
        &manifest.channel,
        &valid_keys,
        &mut signers,
        require_threshold,
        excluded,
    ));
    if let Some(exp) = &manifest.expires {
        let t = format::parse_time(exp).expect("validated");
        if opts.now > t + CLOCK_SKEW {
            problems.push(Problem::Expired {
                expires: exp.clone(),
            });
        }
    }

    // 4. The files present: exactly the bundle's.
    let sums_path = dir.join(SUMS_FILE);
    match read_bounded(&sums_path, MAX_MANIFEST_BYTES) {
        Ok(b) if b == sums.as_bytes() => {}
        Ok(_) => problems.push(Problem::SumsMismatch),
        Err(_) => problems.push(Problem::SumsMismatch),
    }
    let chunk_names: HashSet<&str> = manifest.chunks.iter().map(|c| c.name.as_str()).collect();
    problems.extend(unexpected_files(dir, &chunk_names));

    // 5. Every chunk: present, exact size, exact SHA-256 (in parallel).
    // The zstd segments of each chunk, by offset: their frames are checked as the chunk is
    // hashed, so that verify refuses every frame import would.
    let chunks_dir = dir.join(CHUNKS_DIR);
    let mut frames: Vec<Vec<FrameRef>> = vec![Vec::new(); manifest.chunks.len()];
    for b in &manifest.blobs {
        for (segment, s) in b.segments.iter().enumerate() {
            if s.encoding == format::Encoding::Zstd {
                frames[s.chunk as usize].push(FrameRef {
                    offset: s.offset,
                    length: s.length,
                    size: s.size,
                    blob: b.digest,
                    segment,
                });
            }
        }
    }
    for f in &mut frames {
        f.sort_unstable_by_key(|r| r.offset);
    }
    progress.start("verifying chunks", manifest.chunk_bytes());
    let chunks_to_check = if check_chunks {
        &manifest.chunks[..]
    } else {
        &[]
    };
    let mut chunk_problems: Vec<(usize, Problem)> = chunks_to_check
        .par_iter()
        .enumerate()
        .filter_map(|(i, c)| {
            check_chunk(&chunks_dir.join(&c.name), c, &frames[i], progress).map(|p| (i, p))
        })
        .collect();
    progress.finish();
    if !check_chunks {
        // Admission for a staged import: every chunk present as a regular file of its size
        // (a stat, nothing read; the import reads and hashes the chunks it needs once).
        chunk_problems.extend(
            manifest
                .chunks
                .iter()
                .enumerate()
                .filter_map(|(i, c)| stat_chunk(&chunks_dir.join(&c.name), c).map(|p| (i, p))),
        );
    }
    chunk_problems.sort_by_key(|(i, _)| *i);
    problems.extend(chunk_problems.into_iter().map(|(_, p)| p));

    if !problems.is_empty() {
        return Err(reject(problems));
    }
    let blob_index = manifest
        .blobs
        .iter()
        .enumerate()
        .map(|(i, b)| (b.digest, i))
        .collect();
    Ok(VerifiedBundle {
        dir: dir.to_path_buf(),
        manifest,
        manifest_digest: Digest::of(&bytes),
        manifest_size: bytes.len() as u64,
        signers,
        blob_index,
        chunks_checked: check_chunks,
    })
}

/// The channel's rule against the valid signatures by usable keys (`valid_keys`: their indices in
/// the policy, repeats allowed): marks the signers that count and returns what failed (with
/// `excluded`, the revoked or expired keys' signatures that did not count, if anything did).
pub fn apply_policy(
    policy: &TrustPolicy,
    channel: &str,
    valid_keys: &[usize],
    signers: &mut [SignerInfo],
    require_threshold: bool,
    excluded: Vec<Problem>,
) -> Vec<Problem> {
    let Some(rule) = policy.rule(channel) else {
        return vec![Problem::UnknownChannel {
            policy: policy.origin.clone(),
            channel: channel.to_string(),
            known: policy.channels(),
        }];
    };
    let key_ref = |i: usize| KeyRef {
        name: policy.keys[i].name.clone(),
        key_id: policy.keys[i].key.id.to_string(),
    };
    // Distinct keys, in policy order: a key that signed twice counts once.
    let signed: BTreeSet<usize> = valid_keys.iter().copied().collect();
    let counted: BTreeSet<usize> = signed
        .iter()
        .copied()
        .filter(|i| rule.signers.contains(i))
        .collect();
    for s in signers.iter_mut() {
        s.counted = s.valid
            && s.state.is_none()
            && counted
                .iter()
                .any(|&i| policy.keys[i].key.id.to_string() == s.key_id);
    }
    let needed = if require_threshold { rule.threshold } else { 1 };
    if counted.len() >= needed {
        return Vec::new();
    }
    let mut out = vec![Problem::PolicyThreshold {
        policy: policy.origin.clone(),
        channel: channel.to_string(),
        rule: rule.name.clone(),
        needed,
        counted: counted.iter().map(|&i| key_ref(i)).collect(),
        signed: signed.iter().map(|&i| key_ref(i)).collect(),
        expected: rule.signers.iter().map(|&i| key_ref(i)).collect(),
    }];
    out.extend(excluded);
    out
}

/// A zstd segment within a chunk.
#[derive(Clone)]
struct FrameRef {
    offset: u64,
    length: u64,
    size: u64,
    blob: Digest,
    segment: usize,
}

/// Passes a chunk's bytes through, checking the zstd frames of `frames` (sorted by offset) as
/// they go by; the first broken one is kept.
struct FrameScan<'a, R> {
    inner: R,
    frames: &'a [FrameRef],
    pos: u64,
    next: usize,
    current: Option<FrameCheck>,
    broken: Option<(usize, String)>,
}

impl<R: Read> FrameScan<'_, R> {
    fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.broken.is_none() {
            let idx = self.next;
            let Some(f) = self.frames.get(idx) else {
                return;
            };
            if self.pos < f.offset {
                let skip = (f.offset - self.pos).min(data.len() as u64);
                self.pos += skip;
                data = &data[skip as usize..];
                continue;
            }
            let end = f.offset + f.length;
            let take = (end - self.pos).min(data.len() as u64) as usize;
            let check = self
                .current
                .get_or_insert_with(|| FrameCheck::new(f.length, f.size));
            let mut result = check.feed(&data[..take]);
            self.pos += take as u64;
            data = &data[take..];
            if result.is_ok() && self.pos == end {
                result = check.finish();
                self.current = None;
                self.next += 1;
            }
            if let Err(reason) = result {
                self.broken = Some((idx, reason));
            }
        }
    }
}

impl<R: Read> Read for FrameScan<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n]);
        Ok(n)
    }
}

fn check_chunk(
    path: &Path,
    c: &format::Chunk,
    frames: &[FrameRef],
    progress: &dyn Progress,
) -> Option<Problem> {
    let chunk = c.name.clone();
    if path.symlink_metadata().is_err() {
        return Some(Problem::MissingChunk { chunk });
    }
    // Opened without following a link or blocking on a FIFO, and checked on the handle.
    let f = match fsutil::open_regular(path) {
        Ok(f) => f,
        Err(e) => {
            return Some(Problem::UnreadableChunk {
                chunk,
                reason: e.to_string(),
            })
        }
    };
    let meta = match f.metadata() {
        Ok(m) => m,
        Err(e) => {
            return Some(Problem::UnreadableChunk {
                chunk,
                reason: e.to_string(),
            })
        }
    };
    if meta.len() < c.size {
        return Some(Problem::TruncatedChunk {
            chunk,
            expected_size: c.size,
            actual_size: meta.len(),
        });
    }
    if meta.len() > c.size {
        return Some(Problem::OversizedChunk {
            chunk,
            expected_size: c.size,
            actual_size: meta.len(),
        });
    }
    let mut scan = FrameScan {
        inner: f.take(c.size),
        frames,
        pos: 0,
        next: 0,
        current: None,
        broken: None,
    };
    let reader = ProgressReader {
        inner: &mut scan,
        progress,
    };
    let hashed = fsutil::hash_reader(reader, path);
    if let (Ok((d, n)), Some((i, reason))) = (&hashed, scan.broken.take()) {
        if *n == c.size && *d == c.sha256 {
            let f = &frames[i];
            return Some(Problem::InvalidSegment {
                chunk,
                blob: f.blob.to_string(),
                segment: f.segment,
                reason,
            });
        }
    }
    match hashed {
        Ok((_, n)) if n != c.size => Some(Problem::TruncatedChunk {
            chunk,
            expected_size: c.size,
            actual_size: n,
        }),
        Ok((d, _)) if d != c.sha256 => Some(Problem::CorruptChunk {
            chunk,
            expected: c.sha256.to_string(),
            actual: d.to_string(),
        }),
        Ok(_) => None,
        Err(e) => Some(Problem::UnreadableChunk {
            chunk,
            reason: e.to_string(),
        }),
    }
}

/// A chunk's presence, kind and size, from its metadata alone (no link followed).
fn stat_chunk(path: &Path, c: &format::Chunk) -> Option<Problem> {
    let chunk = c.name.clone();
    let m = match fs::symlink_metadata(path) {
        Err(_) => return Some(Problem::MissingChunk { chunk }),
        Ok(m) => m,
    };
    if !m.is_file() {
        return Some(Problem::UnreadableChunk {
            chunk,
            reason: format!(
                "{} is {}, not a regular file",
                escape(&path.display().to_string()),
                fsutil::file_kind(&m.file_type())
            ),
        });
    }
    match m.len() {
        n if n < c.size => Some(Problem::TruncatedChunk {
            chunk,
            expected_size: c.size,
            actual_size: n,
        }),
        n if n > c.size => Some(Problem::OversizedChunk {
            chunk,
            expected_size: c.size,
            actual_size: n,
        }),
        _ => None,
    }
}

/// Everything under `dir` that a bundle does not contain.
fn unexpected_files(dir: &Path, chunk_names: &HashSet<&str>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return problems;
    };
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in entries.filter_map(|e| e.ok()) {
        found.insert(e.file_name().to_string_lossy().into_owned(), e.path());
    }
    for (name, path) in found {
        let is_dir = path.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false);
        match name.as_str() {
            MANIFEST_FILE | SIGNATURE_FILE | SUMS_FILE => {}
            SIGNATURES_DIR if is_dir => {} // checked by signature_files
            CHUNKS_DIR if is_dir => {
                let mut inner: Vec<String> = fs::read_dir(&path)
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                inner.sort();
                for n in inner {
                    if !chunk_names.contains(n.as_str()) {
                        problems.push(Problem::UnexpectedFile {
                            path: format!("{CHUNKS_DIR}/{n}"),
                        });
                    }
                }
            }
            _ => problems.push(Problem::UnexpectedFile { path: name }),
        }
    }
    problems
}
