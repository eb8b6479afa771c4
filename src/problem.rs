//! What can be wrong with a bundle: [`Problem`], one variant per finding, each with a stable
//! `code()` for `--json` consumers (FORMAT.md §Problems). A leaf module: it depends only on
//! `format`, so `error.rs` can carry problems without importing `bundle`.

use std::fmt;

use serde::Serialize;

use crate::format::text::escape;
use crate::format::volumes::LABEL_FILE;
use crate::format::{MANIFEST_FILE, SIGNATURES_DIR, SIGNATURE_FILE, SUMS_FILE};

/// One thing wrong with a bundle. `code()` is stable for `--json` consumers.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
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
    /// A trusted signer's comment (its global signature verified) declares a `manifest_size`
    /// other than the size of `manifest.json` on its open handle: refused before it is read.
    ManifestSizeMismatch {
        file: String,
        declared: u64,
        actual: u64,
    },
    /// A trusted signer's comment declares a `manifest_size` that is not a decimal size, or is
    /// above the ceiling (FORMAT.md §Limits): not believed.
    InvalidManifestSize {
        file: String,
        declared: String,
        max: u64,
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
    /// Version 3: a piece of a chunk does not hash to its signed piece digest. Names the byte
    /// range and every blob whose segment data overlaps it (none: only tar headers or padding).
    CorruptPiece {
        chunk: String,
        piece: u64,
        /// The piece's bytes within the chunk, `start..end`.
        start: u64,
        end: u64,
        expected: String,
        actual: String,
        blobs: Vec<String>,
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
    /// Version 4: the volume's `VOLUME` label is missing or differs from what the signed
    /// manifest implies for the volume its signatures name.
    LabelMismatch {
        volume: u32,
    },
    /// Version 4: a chunk file of another volume of the same bundle lies on this volume.
    MisplacedChunk {
        chunk: String,
        /// The volume this directory is.
        volume: u32,
        /// The volume the chunk belongs on.
        belongs_on: u32,
    },
    /// Version 4: a directory given as a volume of the bundle belongs to another bundle (or is
    /// a bundle of one directory): its signed manifest differs.
    ForeignVolume {
        dir: String,
        /// The bundle id of the bundle being checked.
        expected: String,
        /// That directory's bundle id (its manifest is signed by a trusted key).
        found: String,
    },
    /// Version 4: two directories given are the same volume.
    DuplicateVolume {
        volume: u32,
        dirs: Vec<String>,
    },
    /// Version 4: a volume needed was not given (and parity cannot stand in for it).
    MissingVolume {
        volume: u32,
    },
    /// Version 4: a chunk that is missing or damaged could not be rebuilt from parity (too many
    /// volumes of its stripe are missing or damaged).
    Unrecoverable {
        chunk: String,
        volume: u32,
        reason: String,
    },
}

/// A policy key, by name and key id.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
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
            Problem::ManifestSizeMismatch { .. } => "manifest-size-mismatch",
            Problem::InvalidManifestSize { .. } => "invalid-manifest-size",
            Problem::UnsupportedVersion { .. } => "unsupported-version",
            Problem::InvalidManifest { .. } => "invalid-manifest",
            Problem::Expired { .. } => "expired",
            Problem::SumsMismatch => "sums-mismatch",
            Problem::LabelMismatch { .. } => "label-mismatch",
            Problem::MisplacedChunk { .. } => "misplaced-chunk",
            Problem::ForeignVolume { .. } => "foreign-volume",
            Problem::DuplicateVolume { .. } => "duplicate-volume",
            Problem::MissingVolume { .. } => "missing-volume",
            Problem::Unrecoverable { .. } => "unrecoverable-chunk",
            Problem::MissingChunk { .. } => "missing-chunk",
            Problem::TruncatedChunk { .. } => "truncated-chunk",
            Problem::OversizedChunk { .. } => "oversized-chunk",
            Problem::CorruptChunk { .. } => "corrupt-chunk",
            Problem::UnreadableChunk { .. } => "unreadable-chunk",
            Problem::CorruptPiece { .. } => "corrupt-piece",
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
            Problem::ManifestSizeMismatch { file, declared, actual } => write!(
                f,
                "signature {}: trusted comment says manifest_size {declared} bytes but {MANIFEST_FILE} is \
                 {actual} bytes; it was changed after signing (not read beyond the bound)",
                escape(file)
            ),
            Problem::InvalidManifestSize { file, declared, max } => write!(
                f,
                "signature {}: trusted comment says manifest_size \"{}\", which is not a size of at most \
                 {max} bytes; not believed",
                escape(file),
                escape(declared)
            ),
            Problem::UnsupportedVersion { reason } => write!(f, "unsupported version: {reason}"),
            Problem::InvalidManifest { reason } => write!(f, "invalid manifest: {reason}"),
            Problem::Expired { expires } => write!(f, "expired: the bundle expired at {}", escape(expires)),
            Problem::SumsMismatch => write!(f, "{SUMS_FILE} does not match the chunk list of the signed manifest"),
            Problem::LabelMismatch { volume } => write!(f, "label mismatch: {LABEL_FILE} is missing or is not the label the signed manifest gives volume {volume}"),
            Problem::MisplacedChunk { chunk, volume, belongs_on } => write!(f, "misplaced chunk: {} belongs on volume {belongs_on}, not on volume {volume}", escape(chunk)),
            Problem::ForeignVolume { dir, expected, found } => write!(f, "foreign volume: {} is a volume of bundle {}, not of bundle {}", escape(dir), escape(found), escape(expected)),
            Problem::DuplicateVolume { volume, dirs } => write!(f, "duplicate volume: volume {volume} was given twice ({})", dirs.iter().map(|d| escape(d).to_string()).collect::<Vec<_>>().join(", ")),
            Problem::MissingVolume { volume } => write!(f, "missing volume: volume {volume} was not given"),
            Problem::Unrecoverable { chunk, volume, reason } => write!(f, "unrecoverable chunk: {} (volume {volume}) cannot be rebuilt: {}", escape(chunk), escape(reason)),
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
            Problem::CorruptPiece { chunk, piece, start, end, expected, actual, blobs } => {
                write!(
                    f,
                    "corrupt piece: piece {piece} of chunk {} (bytes {start}..{end}) has digest {actual}, expected {expected}; ",
                    escape(chunk)
                )?;
                if blobs.is_empty() {
                    write!(f, "it holds no blob data (tar headers or padding only)")
                } else {
                    write!(f, "blobs hit: {}", blobs.join(", "))
                }
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
