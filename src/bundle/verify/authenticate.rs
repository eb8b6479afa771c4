//! Steps 1 to 4 of verification: the manifest file and the signature files read (bounded, no
//! links, no FIFOs), the size a trusted signer declared checked before the manifest is read, and
//! every signature checked over the bytes. Nothing here parses the manifest.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use super::{Problem, SignerInfo};
use crate::error::{Error, Result};
use crate::format::limits::{
    MAX_DECLARED_MANIFEST_BYTES, MAX_MANIFEST_BYTES, MAX_SIGNATURES, MAX_SIGNATURE_BYTES,
};
use crate::format::text::escape;
use crate::format::{CHUNKS_DIR, MANIFEST_FILE, SIGNATURES_DIR, SIGNATURE_FILE, SUMS_FILE};
use crate::fsutil;
use crate::policy::{KeyState, TrustPolicy};
use crate::sign::{comment_field, repeated_comment_field, Signature, MANIFEST_SIZE_FIELD};

/// Reads a bundle file of at most `max` bytes; it must be a regular file, not a link (checked on
/// the handle, opened without following links or blocking: `fsutil::open_regular`).
pub(crate) fn read_bounded(path: &Path, max: u64) -> std::result::Result<Vec<u8>, String> {
    fsutil::read_regular(path, max).map_err(|e| e.to_string())
}

/// The one rule for a path given as a bundle: what is not a bundle at all is a usage error
/// (exit 2) naming the path, what was expected and, where it helps, the directory meant; a
/// bundle that is damaged is left to verification (a rejection, exit 3); an I/O failure reading
/// a real bundle is an I/O error (exit 1).
///
/// Not a bundle: a missing path; a file (a bundle's `manifest.json` or chunk included); a
/// directory without `manifest.json` that holds none of a bundle's other files (an empty
/// directory, a bundle's `chunks/` or `signatures/`). A directory holding a bundle's signature,
/// sums or chunks without its manifest is a damaged bundle (`missing-manifest`: a pack killed
/// before it wrote the manifest leaves exactly that).
pub fn check_bundle_dir(dir: &Path) -> Result<()> {
    let shown = || escape(&dir.display().to_string()).to_string();
    let expected = "expected a bundle directory (holding manifest.json, as airlock pack writes it)";
    let meta = match fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Usage(format!(
                "{}: no such file or directory; {expected}",
                shown()
            )))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(Error::Usage(format!(
                "{}: a path through a file, not a directory; {expected}",
                shown()
            )))
        }
        Err(e) => return Err(Error::io("open bundle", dir, e)),
    };
    // The bundle this path lies inside, if any: its parent directory holds a manifest.
    let parent_hint = || {
        let parent = match dir.parent() {
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
            None => return String::new(),
        };
        if parent.join(MANIFEST_FILE).symlink_metadata().is_ok() {
            format!(
                "; did you mean the bundle directory {}?",
                escape(&parent.display().to_string())
            )
        } else {
            String::new()
        }
    };
    if !meta.is_dir() {
        return Err(Error::Usage(format!(
            "{} is {}, not a bundle directory; {expected}{}",
            shown(),
            fsutil::file_kind(&meta.file_type()),
            parent_hint()
        )));
    }
    match dir.join(MANIFEST_FILE).symlink_metadata() {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io("open bundle", dir.join(MANIFEST_FILE), e))
        }
        Err(_) => {}
    }
    let looks_like_bundle = [SIGNATURE_FILE, SIGNATURES_DIR, SUMS_FILE, CHUNKS_DIR]
        .iter()
        .any(|f| dir.join(f).symlink_metadata().is_ok());
    if looks_like_bundle {
        // Damaged: verification names `missing-manifest`.
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{} is not a bundle directory: it holds no {MANIFEST_FILE}; {expected}{}",
        shown(),
        parent_hint()
    )))
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

/// The manifest's bytes and what the signatures over them say, established before anything in
/// those bytes is parsed. Only [`authenticate`] makes one, and only when a usable trusted key's
/// signature verified over the exact bytes.
pub struct Authenticated {
    /// The manifest bytes, as read (bounded) from the media.
    pub bytes: Vec<u8>,
    /// Every signature file and what became of it.
    pub signers: Vec<SignerInfo>,
    /// Valid signatures by usable policy keys: (file, signature, key index in the policy).
    pub(super) valid: Vec<(String, Signature, usize)>,
    /// Valid signatures that do not count (revoked or expired keys), reported on rejection.
    pub(super) excluded: Vec<Problem>,
    /// Problems found so far (unreadable or invalid signatures, other keys' failures).
    pub(super) problems: Vec<Problem>,
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
    check_bundle_dir(dir)?;
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
