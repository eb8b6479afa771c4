//! Verification: the only way to obtain a [`VerifiedBundle`], which is all importers accept.
//!
//! Order (FORMAT.md §Reading): read the manifest bytes (bounded) and every signature; check each
//! signature against the trusted keys; only if a trusted key signed is the manifest parsed and
//! believed. Then its trusted comments, `SHA256SUMS`, expiry, the set of files present, and the
//! size and SHA-256 of every chunk (version 3: of every piece, on all cores; `chunks`). Every problem found is reported, not only the first. Nothing
//! is written.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::limits::{
    MAX_DECLARED_MANIFEST_BYTES, MAX_MANIFEST_BYTES, MAX_SIGNATURES, MAX_SIGNATURE_BYTES,
};
use crate::format::text::escape;
use crate::format::{
    self, Digest, Manifest, ParseError, CHUNKS_DIR, MANIFEST_FILE, SIGNATURES_DIR, SIGNATURE_FILE,
    SUMS_FILE,
};
use crate::fsutil;
use crate::policy::{KeyState, TrustPolicy};
use crate::progress::Progress;
use crate::sign::{
    comment_field, repeated_comment_field, PublicKey, Signature, MANIFEST_SIZE_FIELD,
};

pub(crate) mod chunks;

pub use crate::problem::{KeyRef, Problem};
pub use chunks::{check_chunks_v3, check_pieces, open_chunk};

/// How far a bundle may be past its expiry before it is refused (clock skew between the packing
/// machine and the enclave).
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

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
    /// Size in bytes of the verified `manifest.json`.
    pub fn manifest_size(&self) -> u64 {
        self.0.manifest_size()
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

/// Steps 1 to 3 of verification: the manifest file opened (bounded, without following links or
/// blocking) and its size taken on the handle; every signature file read (bounded) and parsed;
/// the trusted comments of the policy's keys checked alone (their global signatures), so that a
/// `manifest_size` a trusted signer declared bounds the manifest read (else 64 MiB); the
/// manifest bytes read; every signature checked over them. Nothing looks inside the bytes here;
/// without a valid signature by a usable trusted key the bundle is rejected
/// (`missing-signature`, `unknown-signer`, `edited-manifest`, …) unparsed.
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

    // 1. The manifest file, untrusted: opened, its size on the handle; nothing read yet.
    let (file, size) = open_manifest(dir).map_err(|p| reject(vec![p]))?;

    // 2. Signatures, parsed.
    let (sig_files, mut sig_problems) = signature_files(dir);
    problems.append(&mut sig_problems);
    if sig_files.is_empty() {
        problems.push(Problem::MissingSignature);
    }
    let sigs: Vec<(String, std::result::Result<Signature, String>)> = sig_files
        .into_iter()
        .map(|(file, text)| {
            let sig = text.and_then(|t| Signature::parse(&t, &file));
            (file, sig)
        })
        .collect();

    // 3. The bound of the manifest read: what a trusted signer declared, checked before a byte
    // of the manifest is read.
    let bound = match declared_size(&sigs, policy, now, size) {
        Ok(Some(declared)) => declared,
        Ok(None) => MAX_MANIFEST_BYTES,
        Err(mut size_problems) => {
            problems.append(&mut size_problems);
            MAX_MANIFEST_BYTES
        }
    };
    let bytes = match read_manifest_from(file, dir, bound) {
        Ok(b) => b,
        Err(p) => {
            problems.push(p);
            return Err(reject(problems));
        }
    };

    // 4. Every signature over the bytes.
    let mut signers = Vec::new();
    let mut valid: Vec<(String, Signature, usize)> = Vec::new();
    let mut excluded = Vec::new();
    for (file, sig) in sigs {
        let sig = match sig {
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

/// The `manifest_size` declared by the trusted comments that may bound the manifest read: those
/// of signatures by usable policy keys that the rule of the comment's own `channel` counts, whose
/// global signature (over the comment alone) verifies. Every such declaration must equal `size`,
/// the manifest's size on its handle, and lie within [`MAX_DECLARED_MANIFEST_BYTES`]; one that
/// does not is a problem (and no declaration is then believed). `None`: nobody declared a size
/// (bundles before `manifest_size`; untrusted, tampered or revoked signers are not listened to).
fn declared_size(
    sigs: &[(String, std::result::Result<Signature, String>)],
    policy: &TrustPolicy,
    now: SystemTime,
    size: u64,
) -> std::result::Result<Option<u64>, Vec<Problem>> {
    let mut declared = None;
    let mut problems = Vec::new();
    for (file, sig) in sigs {
        let Ok(sig) = sig else { continue };
        let Some(i) = policy.keys.iter().position(|k| k.key.id == sig.key_id) else {
            continue;
        };
        let key = &policy.keys[i];
        if !matches!(key.state(now), KeyState::Usable) || sig.verify_comment(&key.key).is_err() {
            // Not listened to; the full check over the bytes names what is wrong.
            continue;
        }
        let comment = sig.trusted_comment();
        if let Some(field) = repeated_comment_field(&comment) {
            if field == MANIFEST_SIZE_FIELD {
                problems.push(Problem::AmbiguousComment {
                    file: file.clone(),
                    field: field.to_string(),
                });
            }
            // Any other repeated field is refused after the parse (as before); its size is
            // not believed.
            continue;
        }
        let counts = comment_field(&comment, "channel")
            .and_then(|c| policy.rule(c))
            .is_some_and(|r| r.signers.contains(&i));
        if !counts {
            continue;
        }
        let Some(text) = comment_field(&comment, MANIFEST_SIZE_FIELD) else {
            continue;
        };
        match parse_size(text) {
            Some(n) if n <= MAX_DECLARED_MANIFEST_BYTES && n == size => declared = Some(n),
            Some(n) if n <= MAX_DECLARED_MANIFEST_BYTES => {
                problems.push(Problem::ManifestSizeMismatch {
                    file: file.clone(),
                    declared: n,
                    actual: size,
                })
            }
            _ => problems.push(Problem::InvalidManifestSize {
                file: file.clone(),
                declared: text.to_string(),
                max: MAX_DECLARED_MANIFEST_BYTES,
            }),
        }
    }
    if problems.is_empty() {
        Ok(declared)
    } else {
        Err(problems)
    }
}

/// A decimal size as airlock writes it: digits only, no sign, no leading zero.
fn parse_size(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// The manifest file opened as every bundle file is (regular, no link, no FIFO, checked on the
/// handle), and its size on that handle.
#[allow(clippy::result_large_err)]
fn open_manifest(dir: &Path) -> std::result::Result<(fs::File, u64), Problem> {
    let manifest_path = dir.join(MANIFEST_FILE);
    match manifest_path.symlink_metadata() {
        Err(_) => return Err(Problem::MissingManifest),
        Ok(m) if !m.is_file() => {
            return Err(Problem::UnreadableManifest {
                reason: "not a regular file".into(),
            })
        }
        Ok(_) => {}
    }
    let unreadable = |e: Error| Problem::UnreadableManifest {
        reason: e.to_string(),
    };
    let file = fsutil::open_regular(&manifest_path).map_err(unreadable)?;
    let size = file
        .metadata()
        .map_err(|e| unreadable(Error::io("stat", &manifest_path, e)))?
        .len();
    Ok((file, size))
}

/// Reads at most `max` bytes of the opened manifest; more is refused unread.
#[allow(clippy::result_large_err)]
fn read_manifest_from(
    file: fs::File,
    dir: &Path,
    max: u64,
) -> std::result::Result<Vec<u8>, Problem> {
    use std::io::Read as _;
    let path = dir.join(MANIFEST_FILE);
    let mut buf = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Problem::UnreadableManifest {
            reason: Error::io("read", &path, e).to_string(),
        })?;
    if buf.len() as u64 > max {
        let why = if max == MAX_MANIFEST_BYTES {
            format!(
                "larger than the {max} bytes read before authentication, and no trusted \
                 signature declares its size ({MANIFEST_SIZE_FIELD})"
            )
        } else {
            format!("larger than the {max} bytes its trusted signature declares")
        };
        return Err(Problem::UnreadableManifest { reason: why });
    }
    Ok(buf)
}

/// The manifest's bytes, at most 64 MiB, from a regular file (a link, FIFO or directory is
/// refused): the read of a manifest no signature has vouched for (`inspect` without trust, the
/// audit record of a rejection).
// The error is the one problem the caller reports (as verify's own steps do), not boxed.
#[allow(clippy::result_large_err)]
pub fn read_manifest_bytes(dir: &Path) -> std::result::Result<Vec<u8>, Problem> {
    read_manifest_bytes_bounded(dir, MAX_MANIFEST_BYTES)
}

/// As [`read_manifest_bytes`], bounded by `max` (the size of a manifest already verified).
#[allow(clippy::result_large_err)]
pub fn read_manifest_bytes_bounded(dir: &Path, max: u64) -> std::result::Result<Vec<u8>, Problem> {
    let (file, _) = open_manifest(dir)?;
    read_manifest_from(file, dir, max)
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
            let expected = bytes.len().to_string();
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
    // Bounded by the text it must equal (1,000,000 chunks take 86 MB, more than 64 MiB).
    match read_bounded(&sums_path, sums.len() as u64) {
        Ok(b) if b == sums.as_bytes() => {}
        Ok(_) => problems.push(Problem::SumsMismatch),
        Err(_) => problems.push(Problem::SumsMismatch),
    }
    let chunk_names: HashSet<&str> = manifest.chunks.iter().map(|c| c.name.as_str()).collect();
    problems.extend(chunks::unexpected_files(dir, &chunk_names));

    // 5. Every chunk: present, exact size, exact bytes (in parallel; zstd frames checked too,
    // so that verify refuses every frame import would). Admission for a staged import only
    // checks that every chunk is present as a regular file of its size (a stat, nothing read:
    // the import reads and hashes the chunks it needs once).
    if check_chunks {
        problems.extend(chunks::check_chunks(dir, &manifest, progress));
    } else {
        let chunks_dir = dir.join(CHUNKS_DIR);
        problems.extend(
            manifest
                .chunks
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
