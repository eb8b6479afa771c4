//! Verification: the only way to obtain a [`VerifiedBundle`], which is all importers accept.
//!
//! Order (FORMAT.md §Reading): steps 1 to 4 (`authenticate`): the manifest file opened and the
//! signature files read (bounded), the `manifest_size` a trusted signer declared checked before
//! the manifest is read, every signature checked over the bytes; only if a trusted key signed is
//! the manifest parsed and believed. Then its trusted comments, `SHA256SUMS`, expiry, the set of
//! files present, and the size and SHA-256 of every chunk (version 3: of every piece, on all
//! cores; `chunks`). Every problem found is reported, not only the first. Nothing is written.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::volumes::{LABEL_FILE, VOLUME_FIELD};
use crate::format::{self, Digest, Manifest, ParseError, CHUNKS_DIR, SUMS_FILE};
use crate::policy::TrustPolicy;
use crate::progress::Progress;
use crate::sign::{comment_field, repeated_comment_field, PublicKey, MANIFEST_SIZE_FIELD};

mod authenticate;
pub(crate) mod chunks;
mod volumes;

pub use crate::problem::{KeyRef, Problem};
pub(crate) use authenticate::read_bounded;
pub use authenticate::{
    authenticate, check_bundle_dir, read_manifest_bytes, read_manifest_bytes_bounded,
    signature_files, Authenticated, SignatureFile,
};
pub use chunks::{check_chunks_v3, check_pieces, open_chunk};
pub use volumes::{
    damaged_chunk, expand_volume_dirs, verify_volumes, Sibling, VolumeOutcome, VolumeSet,
};

/// How far a bundle may be past its expiry before it is refused (clock skew between the packing
/// machine and the enclave).
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A bundle accepted although its `expires` has passed, because it passed by no more than
/// [`CLOCK_SKEW`] (the packing machine's clock may be ahead of the enclave's): the reports say so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ExpiredWithinSkew {
    /// The manifest's `expires` (RFC 3339 UTC).
    pub expires: String,
    /// The time of the check (RFC 3339 UTC, seconds).
    pub now: String,
    /// The allowance, in seconds ([`CLOCK_SKEW`]).
    pub skew_seconds: u64,
}

impl ExpiredWithinSkew {
    /// The note printed on stderr.
    pub fn note(&self) -> String {
        format!(
            "note: this bundle expired at {} (it is now {}); accepted within the {}-second clock-skew allowance",
            crate::format::text::escape(&self.expires),
            self.now,
            self.skew_seconds
        )
    }
}

/// A signature found on a bundle, and what became of it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
    expired_within_skew: Option<ExpiredWithinSkew>,
    /// Version 4: the volume this directory is (its comments' `volume`); `None` below.
    volume: Option<u32>,
    /// Version 4: where each volume (index n - 1) was found, once located (`volumes.rs`).
    volume_dirs: Vec<Option<PathBuf>>,
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
    /// Set when the bundle's `expires` had passed, by no more than [`CLOCK_SKEW`].
    pub fn expired_within_skew(&self) -> Option<&ExpiredWithinSkew> {
        self.expired_within_skew.as_ref()
    }
    /// Whether every chunk was hashed against the manifest (false after [`verify_manifest`]).
    pub fn chunks_checked(&self) -> bool {
        self.chunks_checked
    }
    /// Version 4: the volume [`VerifiedBundle::dir`] is (1-based); `None` for a bundle of one
    /// directory.
    pub fn volume(&self) -> Option<u32> {
        self.volume
    }
    /// Where chunk `index` is: in the directory of its volume once that was located (a
    /// volume not located: under [`VerifiedBundle::dir`], where it is not, so it reads as
    /// missing).
    pub fn chunk_path(&self, index: u32) -> PathBuf {
        let n = self.manifest.volume_of(index as usize);
        self.volume_dir(n)
            .unwrap_or(&self.dir)
            .join(CHUNKS_DIR)
            .join(&self.manifest.chunks[index as usize].name)
    }
}

pub struct VerifyOptions {
    pub now: SystemTime,
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
    /// Size in bytes of the verified `manifest.json`.
    pub fn manifest_size(&self) -> u64 {
        self.0.manifest_size()
    }
    /// Version 4: the volume this directory is (1-based); `None` for a bundle of one
    /// directory.
    pub fn volume(&self) -> Option<u32> {
        self.0.volume()
    }
}

/// A manifest whose signatures checked out against a policy, read without its bundle's other
/// files: steps 1 to 3 of verification and the trusted comments (`bundle`, `channel`,
/// `sequence`, `sha256sums`, `manifest_size`, a volume's `volume`) and the channel's rule. No
/// chunk, `SHA256SUMS` or other file is read and expiry is not checked: what pack reads of a
/// base (`crate::bundle::base`), a record of what an earlier bundle carried, never something
/// to import. Only [`verify_signed_manifest`] makes one.
#[derive(Debug)]
pub struct SignedManifest {
    manifest: Manifest,
    manifest_digest: Digest,
    signers: Vec<SignerInfo>,
}

impl SignedManifest {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// SHA-256 of the exact signed `manifest.json` bytes.
    pub fn manifest_digest(&self) -> Digest {
        self.manifest_digest
    }
    pub fn signers(&self) -> &[SignerInfo] {
        &self.signers
    }
}

/// What steps 1–3 make of a directory's manifest and signatures (verify's and
/// [`verify_signed_manifest`]'s one way): the authenticated bytes, parsed and validated, the
/// volume its trusted comments name, and the problems of the comments and the policy.
struct Signed {
    bytes: Vec<u8>,
    manifest: Manifest,
    volume: Option<u32>,
    signers: Vec<SignerInfo>,
    problems: Vec<Problem>,
}

/// Steps 1–3: a trusted signature over the bytes (nothing is parsed before), the manifest parsed
/// and validated, the volume its trusted comments name, the comments checked and the policy
/// applied (their problems collected in [`Signed::problems`]). `Ok(Err(problems))`: the
/// manifest cannot be parsed or its volume not named, so nothing further can be checked.
fn signed_manifest(
    dir: &Path,
    policy: &TrustPolicy,
    now: SystemTime,
    require_threshold: bool,
) -> Result<std::result::Result<Signed, Vec<Problem>>> {
    let Authenticated {
        bytes,
        mut signers,
        valid,
        excluded,
        mut problems,
    } = authenticate(dir, policy, now)?;
    let manifest = match parse_manifest(&bytes) {
        Ok(m) => m,
        Err(p) => {
            problems.push(p);
            return Ok(Err(problems));
        }
    };
    // Version 4: this directory is one volume, the one its trusted comments name.
    let volume = match volume_of_comments(&manifest, &valid) {
        Ok(v) => v,
        Err(p) => {
            problems.extend(p);
            return Ok(Err(problems));
        }
    };
    comment_problems(&manifest, bytes.len(), &valid, volume, &mut problems);
    let valid_keys: Vec<usize> = valid.iter().map(|(_, _, i)| *i).collect();
    problems.extend(apply_policy(
        policy,
        &manifest.channel,
        &valid_keys,
        &mut signers,
        require_threshold,
        excluded,
    ));
    Ok(Ok(Signed {
        bytes,
        manifest,
        volume,
        signers,
        problems,
    }))
}

/// The manifest of the bundle (or volume) directory `dir` (which holds `manifest.json` and its
/// signatures; nothing else need be there), authenticated against `policy` as verify
/// authenticates it, its comments checked and the channel's rule met ([`SignedManifest`]). A
/// failure is [`Error::Rejected`] naming `dir` and every problem.
pub fn verify_signed_manifest(
    dir: &Path,
    policy: &TrustPolicy,
    now: SystemTime,
) -> Result<SignedManifest> {
    let reject = |problems: Vec<Problem>| Error::Rejected {
        dir: dir.to_path_buf(),
        problems,
    };
    let Signed {
        bytes,
        manifest,
        signers,
        problems,
        ..
    } = match signed_manifest(dir, policy, now, true)? {
        Ok(s) => s,
        Err(problems) => return Err(reject(problems)),
    };
    if !problems.is_empty() {
        return Err(reject(problems));
    }
    Ok(SignedManifest {
        manifest,
        manifest_digest: Digest::of(&bytes),
        signers,
    })
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
    let noted = std::cell::Cell::new(None);
    verify_noting(
        dir,
        policy,
        opts,
        require_threshold,
        check_chunks,
        progress,
        &noted,
    )
}

/// [`verify_inner`], noting in `volume` the volume the directory is as soon as its trusted
/// comments named it: a volume rejected for its content is still named by its number.
fn verify_noting(
    dir: &Path,
    policy: &TrustPolicy,
    opts: &VerifyOptions,
    require_threshold: bool,
    check_chunks: bool,
    progress: &dyn Progress,
    noted: &std::cell::Cell<Option<u32>>,
) -> Result<VerifiedBundle> {
    let reject = |problems: Vec<Problem>| Error::Rejected {
        dir: dir.to_path_buf(),
        problems,
    };
    // 1–3: the bytes and a trusted signature over them (nothing is parsed before), the manifest
    // parsed and validated, the volume its comments name, the comments and the policy checked.
    let Signed {
        bytes,
        manifest,
        volume,
        signers,
        mut problems,
    } = match signed_manifest(dir, policy, opts.now, require_threshold)? {
        Ok(s) => s,
        Err(problems) => return Err(reject(problems)),
    };
    noted.set(volume);
    let sums = manifest.volume_sums(volume.unwrap_or(1));
    let mut expired_within_skew = None;
    if let Some(exp) = &manifest.expires {
        let t = format::parse_time(exp).expect("validated");
        if opts.now > t + CLOCK_SKEW {
            problems.push(Problem::Expired {
                expires: exp.clone(),
            });
        } else if opts.now > t {
            expired_within_skew = Some(ExpiredWithinSkew {
                expires: exp.clone(),
                now: format::format_time(opts.now),
                skew_seconds: CLOCK_SKEW.as_secs(),
            });
        }
    }

    // 4. The files present: exactly the bundle's.
    let sums_path = dir.join(SUMS_FILE);
    // Bounded by the text it must equal (1,000,000 chunks take 86 MB, more than 64 MiB).
    match read_bounded(&sums_path, sums.len() as u64) {
        Ok(b) if b == sums.as_bytes() => {}
        Ok(_) => problems.push(Problem::SumsMismatch),
        Err(_) => problems.push(Problem::SumsMismatch),
    }
    let mine = manifest.volume_chunks(volume.unwrap_or(1));
    let chunk_names: HashSet<&str> = manifest.chunks[mine.clone()]
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for p in chunks::unexpected_files(dir, &chunk_names, volume.is_some()) {
        // A chunk of another volume of this bundle is named as such.
        let other = match (&p, volume) {
            (Problem::UnexpectedFile { path }, Some(n)) => path
                .strip_prefix(&format!("{CHUNKS_DIR}/"))
                .and_then(|name| manifest.chunks.iter().position(|c| c.name == name))
                .map(|i| Problem::MisplacedChunk {
                    chunk: manifest.chunks[i].name.clone(),
                    volume: n,
                    belongs_on: manifest.volume_of(i),
                }),
            _ => None,
        };
        problems.push(other.unwrap_or(p));
    }
    if let Some(n) = volume {
        let label = manifest.volume_label(n);
        match read_bounded(&dir.join(LABEL_FILE), label.len() as u64) {
            Ok(b) if b == label.as_bytes() => {}
            _ => problems.push(Problem::LabelMismatch { volume: n }),
        }
    }

    // 5. Every chunk: present, exact size, exact bytes (in parallel; zstd frames checked too,
    // so that verify refuses every frame import would). Admission for a staged import only
    // checks that every chunk is present as a regular file of its size (a stat, nothing read:
    // the import reads and hashes the chunks it needs once).
    if check_chunks {
        problems.extend(chunks::check_chunks(dir, &manifest, mine, progress));
    } else {
        let chunks_dir = dir.join(CHUNKS_DIR);
        problems.extend(
            manifest.chunks[mine]
                .iter()
                .filter_map(|c| chunks::stat_chunk(&chunks_dir.join(&c.name), c)),
        );
    }

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
        expired_within_skew,
        volume,
        volume_dirs: Vec::new(),
    })
}

/// The trusted comment of every valid signature checked against the manifest: `bundle`,
/// `channel`, `sequence`, `sha256sums` (of the volume's `SHA256SUMS` text the manifest implies)
/// and `manifest_size` when given; a field given twice is `ambiguous-comment`.
fn comment_problems(
    manifest: &Manifest,
    bytes_len: usize,
    valid: &[(String, crate::sign::Signature, usize)],
    volume: Option<u32>,
    problems: &mut Vec<Problem>,
) {
    let sums = manifest.volume_sums(volume.unwrap_or(1));
    let sums_digest = Digest::of(sums.as_bytes());
    for (file, sig, _) in valid {
        let comment = sig.trusted_comment();
        if let Some(field) = repeated_comment_field(&comment) {
            let p = Problem::AmbiguousComment {
                file: file.clone(),
                field: field.to_string(),
            };
            // A repeated `manifest_size` was already named before the manifest was read.
            if !problems.contains(&p) {
                problems.push(p);
            }
            continue;
        }
        let expect = [
            ("bundle", manifest.bundle_id.clone()),
            ("channel", manifest.channel.clone()),
            ("sequence", manifest.sequence.to_string()),
            ("sha256sums", sums_digest.hex()),
        ];
        // `manifest_size` is optional (bundles before it lack it); given, it must be the size.
        if let Some(found) = comment_field(&comment, MANIFEST_SIZE_FIELD) {
            let expected = bytes_len.to_string();
            if found != expected {
                problems.push(Problem::CommentMismatch {
                    file: file.clone(),
                    field: MANIFEST_SIZE_FIELD.into(),
                    expected,
                    found: found.to_string(),
                });
            }
        }
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
}

/// Version 4: the volume a directory is, as every valid trusted signature's comment names it
/// (`volume:<n>`, 1 to the bundle's volume count, the same in all). `None` below version 4.
#[allow(clippy::result_large_err)]
fn volume_of_comments(
    manifest: &Manifest,
    valid: &[(String, crate::sign::Signature, usize)],
) -> std::result::Result<Option<u32>, Vec<Problem>> {
    if !manifest.is_multi_volume() {
        return Ok(None);
    }
    let count = manifest.volume_count();
    let expected = format!("1 to {count}");
    let mut problems = Vec::new();
    let mut seen: Option<u32> = None;
    for (file, sig, _) in valid {
        let comment = sig.trusted_comment();
        let found = comment_field(&comment, VOLUME_FIELD).unwrap_or("");
        let n = found
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=count).contains(n) && n.to_string() == found);
        match (n, seen) {
            (None, _) => problems.push(Problem::CommentMismatch {
                file: file.clone(),
                field: VOLUME_FIELD.into(),
                expected: expected.clone(),
                found: found.to_string(),
            }),
            (Some(n), Some(first)) if n != first => problems.push(Problem::CommentMismatch {
                file: file.clone(),
                field: VOLUME_FIELD.into(),
                expected: first.to_string(),
                found: found.to_string(),
            }),
            (Some(n), _) => seen = Some(n),
        }
    }
    match seen {
        Some(n) if problems.is_empty() => Ok(Some(n)),
        _ => Err(problems),
    }
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
