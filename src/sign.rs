//! Keys and signatures in minisign's file formats, so officers can check bundles with stock
//! `minisign -V` and keys made by `minisign -G` work here.
//!
//! The cryptography is the `minisign` crate (by minisign's author). This module adds file
//! handling (modes, refusing world-readable secret keys, passphrases) and keeps secret material
//! out of every `Debug`, `Display` and error message.

use std::fmt;
use std::fs;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::limits::MAX_SIGNATURE_BYTES;
use crate::fsutil;

/// Environment variable holding the secret-key passphrase for non-interactive use.
pub const PASSPHRASE_ENV: &str = "AIRLOCK_PASSPHRASE";

/// A minisign key id: 8 bytes, shown as 16 uppercase hex digits of their little-endian value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn from_slice(b: &[u8]) -> KeyId {
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A public key the operator trusts (or that a signature names).
#[derive(Clone)]
pub struct PublicKey {
    inner: minisign::PublicKey,
    pub id: KeyId,
    /// Where it came from, for messages (a path, or "inline").
    pub origin: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} from {})", self.id, self.origin)
    }
}

impl PublicKey {
    /// Parses a minisign public key: a `.pub` file's text, or the bare base64 line (`RWQ...`).
    pub fn parse(text: &str, origin: &str) -> Result<PublicKey> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .unwrap_or("");
        let inner = minisign::PublicKey::from_base64(line)
            .map_err(|e| Error::Key(format!("{origin}: not a minisign public key ({e})")))?;
        let id = KeyId::from_slice(inner.keynum());
        Ok(PublicKey {
            inner,
            id,
            origin: origin.to_string(),
        })
    }

    /// Reads a public key file, or takes the argument itself when it is a base64 key.
    pub fn load(arg: &str) -> Result<PublicKey> {
        let path = Path::new(arg);
        if !path.exists() && arg.starts_with("RW") && arg.len() == 56 {
            return PublicKey::parse(arg, "inline key");
        }
        // Not a file: never echo the argument if it could be key material (someone pasting a
        // secret key where a public key belongs must not see it printed, or logged).
        if !path.exists() && looks_like_key_material(arg) {
            return Err(Error::Key(
                "the trusted key given is neither a file nor a minisign public key (RW…, 56 \
                 characters); it is not shown in case it is secret"
                    .into(),
            ));
        }
        load_public_key_file(path)
    }

    /// The public key file text, as `minisign -G` writes it.
    pub fn to_file_text(&self) -> String {
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.id,
            self.inner.to_base64()
        )
    }

    pub fn base64(&self) -> String {
        self.inner.to_base64()
    }
}

/// Reads a key file (at most 4 KiB): opened without following a symbolic link or blocking on
/// a FIFO, a regular file checked on the handle, and checked like OpenSSH's `StrictModes`
/// ([`fsutil::check_trusted`]: owner, and every directory above it; the file's own mode too
/// when `file_mode`). `what` names the kind of key in messages.
fn read_key_file(path: &Path, what: &str, file_mode: bool) -> Result<(String, fs::Metadata)> {
    let f = fsutil::open_nofollow(path, fs::OpenOptions::new().read(true))?;
    let meta = fsutil::check_regular(&f, path)?;
    fsutil::check_trusted(path, &meta, file_mode)
        .map_err(|e| Error::Key(format!("{what} {}: {e}", path.display())))?;
    if meta.len() > 4096 {
        return Err(Error::Key(format!(
            "{}: too large to be a minisign {what}",
            path.display()
        )));
    }
    let mut buf = Vec::new();
    f.take(4097)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("read", path, e))?;
    if buf.len() > 4096 {
        return Err(Error::Key(format!(
            "{}: too large to be a minisign {what}",
            path.display()
        )));
    }
    let text = String::from_utf8(buf).map_err(|_| {
        Error::Key(format!(
            "{}: not a minisign {what} (not text)",
            path.display()
        ))
    })?;
    Ok((text, meta))
}

/// A trusted public key file (`--trust FILE`, or `file =` in a trust policy): nobody but its
/// owner (root or the user) may be able to change it or the directories above it.
pub fn load_public_key_file(path: &Path) -> Result<PublicKey> {
    let (text, _) = read_key_file(path, "public key", true)?;
    PublicKey::parse(&text, &path.display().to_string())
}

/// Whether a command-line value looks like base64 key material rather than a path.
fn looks_like_key_material(arg: &str) -> bool {
    // Base64 (minisign keys) or the text of a key file; paths have dots or are short.
    arg.len() >= 40
        && (arg.contains("minisign")
            || arg.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r')
            }))
}

/// A secret key, decrypted and ready to sign. Never printed.
pub struct SigningKey {
    sk: minisign::SecretKey,
    pub public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public.id)
    }
}

/// A passphrase from `AIRLOCK_PASSPHRASE`, else asked for on the terminal.
fn get_passphrase(prompt: &str, confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Key(format!(
            "a passphrase is needed and there is no terminal to ask on: set {PASSPHRASE_ENV}"
        )));
    }
    let p = rpassword::prompt_password(prompt)
        .map_err(|e| Error::Key(format!("reading passphrase: {e}")))?;
    if confirm {
        let again = rpassword::prompt_password("Passphrase (again): ")
            .map_err(|e| Error::Key(format!("reading passphrase: {e}")))?;
        if again != p {
            return Err(Error::Key("the two passphrases differ".into()));
        }
    }
    if p.is_empty() {
        return Err(Error::Key(
            "empty passphrase: use --unencrypted for a key without one".into(),
        ));
    }
    Ok(p)
}

impl SigningKey {
    /// Reads a minisign secret key file, refusing one that group or others can read. An
    /// encrypted key is decrypted with `AIRLOCK_PASSPHRASE` or a passphrase asked on the terminal.
    pub fn load(path: &Path) -> Result<SigningKey> {
        let (text, meta) = read_key_file(path, "secret key", false)?;
        // A public key given by mistake: say so, rather than advise a chmod.
        if PublicKey::parse(&text, "").is_ok() {
            let stem = path
                .to_str()
                .and_then(|p| p.strip_suffix(".pub"))
                .map(|p| format!(" (its secret key is usually {p})"))
                .unwrap_or_default();
            return Err(Error::Key(format!(
                "{} is a public key; signing needs the secret key{stem}",
                path.display()
            )));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Error::Key(format!(
                    "secret key {} is accessible by group or others (mode {mode:04o}); run: chmod 600 {}",
                    path.display(),
                    path.display()
                )));
            }
        }
        let origin = path.display().to_string();
        SigningKey::parse(&text, &origin, || {
            get_passphrase(&format!("Passphrase for {origin}: "), false)
        })
    }

    /// Parses minisign secret key file text (`origin` names it in errors). `passphrase` is
    /// called only for an encrypted key.
    pub fn parse(
        text: &str,
        origin: &str,
        passphrase: impl FnOnce() -> Result<String>,
    ) -> Result<SigningKey> {
        let not_a_key = || Error::Key(format!("{origin}: not a minisign secret key"));
        // The layout is checked before any passphrase is asked for: the crate's box parses
        // nothing until it is opened, so a file that is no key would otherwise ask first.
        if !is_secret_key_layout(text) {
            return Err(not_a_key());
        }
        let sk_box = minisign::SecretKeyBox::from_string(text).map_err(|_| not_a_key())?;
        let sk = match sk_box.clone().into_unencrypted_secret_key() {
            Ok(sk) => sk,
            // The crate answers `Io` for a key whose KDF is not "none" (encrypted) and `Verify`
            // for an unencrypted key whose checksum fails (damaged).
            Err(e) if matches!(e.kind(), minisign::ErrorKind::Io) => {
                let pass = passphrase()?;
                sk_box
                    .into_secret_key(Some(pass))
                    .map_err(|e| Error::Key(format!("{origin}: cannot decrypt secret key ({e})")))?
            }
            Err(_) => unencrypted_without_checksum(text).ok_or_else(not_a_key)?,
        };
        let pk = minisign::PublicKey::from_secret_key(&sk).map_err(|_| not_a_key())?;
        let id = KeyId::from_slice(pk.keynum());
        Ok(SigningKey {
            sk,
            public: PublicKey {
                inner: pk,
                id,
                origin: origin.to_string(),
            },
        })
    }

    /// Signs `data` in minisign's prehashed (`ED`) format; returns the `.minisig` file text.
    pub fn sign(
        &self,
        data: &[u8],
        trusted_comment: &str,
        untrusted_comment: &str,
    ) -> Result<String> {
        let sig = minisign::sign(
            Some(&self.public.inner),
            &self.sk,
            data,
            Some(trusted_comment),
            Some(untrusted_comment),
        )
        .map_err(|e| Error::Key(format!("signing with key {}: {e}", self.public.id)))?;
        Ok(sig.into_string())
    }
}

/// Whether `text` is laid out as a minisign secret key file, as the crate reads one: a comment
/// line, then the base64 of at least 158 bytes whose KDF is scrypt ("Sc") or none. Nothing is
/// decrypted.
fn is_secret_key_layout(text: &str) -> bool {
    use base64::Engine as _;
    let Some(line) = text.lines().nth(1) else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(line.trim()) else {
        return false;
    };
    bytes.len() >= 158 && (&bytes[2..4] == b"Sc" || bytes[2..4] == [0, 0])
}

/// `minisign -G -W` (0.11) leaves the checksum of an unencrypted key zeroed, which the crate
/// refuses. Accept such a key when its KDF is "none", the checksum is all zeros, and a test
/// signature verifies with the public key it embeds (so a damaged key is still refused).
fn unencrypted_without_checksum(text: &str) -> Option<minisign::SecretKey> {
    use base64::Engine as _;
    let line = text.lines().nth(1)?.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line)
        .ok()?;
    // "Ed" ‖ kdf ‖ "B2" ‖ salt[32] ‖ opslimit[8] ‖ memlimit[8] ‖ keynum[8] ‖ sk[64] ‖ chk[32]
    if bytes.len() != 158
        || &bytes[0..2] != b"Ed"
        || bytes[2..4] != [0, 0]
        || bytes[126..].iter().any(|&b| b != 0)
    {
        return None;
    }
    let sk = minisign::SecretKey::from_bytes(&bytes).ok()?;
    let pk = minisign::PublicKey::from_secret_key(&sk).ok()?;
    minisign::sign(Some(&pk), &sk, &b"airlock key self-test"[..], None, None).ok()?;
    Some(sk)
}

/// Generates a key pair at `out` (secret, mode 0600) and `out.pub`. Refuses to overwrite.
pub fn generate(out: &Path, encrypted: bool) -> Result<(PathBuf, PublicKey)> {
    let pub_path = PathBuf::from(format!("{}.pub", out.display()));
    for p in [out, pub_path.as_path()] {
        if p.symlink_metadata().is_ok() {
            return Err(Error::Usage(format!(
                "{} already exists; refusing to overwrite a key",
                p.display()
            )));
        }
    }
    let kp = if encrypted {
        let pass = get_passphrase("Passphrase for the new key: ", true)?;
        minisign::KeyPair::generate_encrypted_keypair(Some(pass))
    } else {
        minisign::KeyPair::generate_unencrypted_keypair()
    }
    .map_err(|e| Error::Key(format!("generating key: {e}")))?;
    let id = KeyId::from_slice(kp.pk.keynum());
    let public = PublicKey {
        inner: kp.pk.clone(),
        id,
        origin: pub_path.display().to_string(),
    };
    let sk_text = kp
        .sk
        .to_box(Some("minisign encrypted secret key"))
        .map_err(|e| Error::Key(format!("encoding key: {e}")))?
        .into_string();
    write_new(out, sk_text.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&pub_path, public.to_file_text().as_bytes(), 0o644) {
        let _ = fs::remove_file(out);
        return Err(e);
    }
    Ok((pub_path, public))
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let _ = mode;
    let mut f = opts.open(path).map_err(|e| Error::io("create", path, e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io("write", path, e))
}

/// A parsed `.minisig` file (untrusted until [`Signature::verify`] succeeds).
pub struct Signature {
    sig: minisign::SignatureBox,
    pub key_id: KeyId,
}

impl Signature {
    /// Parses signature file text. `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> std::result::Result<Signature, String> {
        if text.len() as u64 > MAX_SIGNATURE_BYTES {
            return Err(format!("{origin}: larger than {MAX_SIGNATURE_BYTES} bytes"));
        }
        let sig = minisign::SignatureBox::from_string(text)
            .map_err(|e| format!("{origin}: malformed minisign signature ({e})"))?;
        if !sig.is_prehashed() {
            return Err(format!("{origin}: legacy (non-prehashed) minisign signature; airlock requires the prehashed ED format"));
        }
        let key_id = KeyId::from_slice(sig.keynum());
        Ok(Signature { sig, key_id })
    }

    /// The trusted comment. Only meaningful after [`Signature::verify`] succeeded.
    pub fn trusted_comment(&self) -> String {
        self.sig.trusted_comment().unwrap_or_default()
    }

    /// Checks the global signature over the trusted comment alone, without the data: what a
    /// reader may do before it reads the signed data, to learn what the signer declared about it
    /// (`manifest_size`). [`Signature::verify`] must still run over the data afterwards.
    ///
    /// minisign's global signature is plain Ed25519 over `signature ‖ trusted comment`, which is
    /// what a legacy (`Ed`, not prehashed) minisign signature is over its data; so the check is
    /// the crate's own `verify` of a legacy signature whose bytes are the global signature, over
    /// `signature ‖ trusted comment` as data (no cryptography here).
    pub fn verify_comment(&self, key: &PublicKey) -> std::result::Result<(), String> {
        use base64::Engine as _;
        let comment = self
            .sig
            .trusted_comment()
            .map_err(|e| format!("trusted comment: {e}"))?;
        // The crate's own encoding of the global signature it parsed: the box's last line.
        let text = self.sig.to_string();
        let global = text
            .lines()
            .last()
            .and_then(|l| {
                base64::engine::general_purpose::STANDARD
                    .decode(l.trim())
                    .ok()
            })
            .ok_or("no global signature")?;
        // alg[2] ‖ keynum[8] ‖ signature[64]
        let bones = minisign::SignatureBones::from(self.sig.clone()).to_bytes();
        if bones.len() != minisign::SignatureBones::BYTES || global.len() != 64 {
            return Err("malformed global signature".into());
        }
        let mut legacy = Vec::with_capacity(bones.len());
        legacy.extend_from_slice(b"Ed");
        legacy.extend_from_slice(&bones[2..10]);
        legacy.extend_from_slice(&global);
        let check: minisign::SignatureBox = minisign::SignatureBones::from_bytes(&legacy)
            .map_err(|e| e.to_string())?
            .into();
        let mut signed = bones[10..].to_vec();
        signed.extend_from_slice(comment.as_bytes());
        minisign::verify(
            &key.inner,
            &check,
            std::io::Cursor::new(signed),
            true,
            false,
            true,
        )
        .map_err(|_| "the trusted comment's global signature does not verify".to_string())
    }

    /// Checks the signature over `data` and the global signature over the trusted comment.
    pub fn verify(&self, key: &PublicKey, data: &[u8]) -> std::result::Result<(), String> {
        minisign::verify(
            &key.inner,
            &self.sig,
            std::io::Cursor::new(data),
            true,
            false,
            false,
        )
        .map_err(|e| e.to_string())
    }
}

/// The trusted-comment field that declares the size of `manifest.json` in bytes, so that a
/// reader can bound its read of the manifest by what a trusted signer declared (FORMAT.md
/// §Trusted comment).
pub const MANIFEST_SIZE_FIELD: &str = "manifest_size";

/// The trusted comment airlock writes: minisign's `key:value` pairs separated by tabs.
pub fn trusted_comment(timestamp: u64, fields: &[(&str, String)]) -> String {
    let mut s = format!("timestamp:{timestamp}\tfile:manifest.json");
    for (k, v) in fields {
        s.push('\t');
        s.push_str(k);
        s.push(':');
        s.push_str(v);
    }
    s
}

/// Reads a field of a trusted comment written by [`trusted_comment`].
pub fn comment_field<'a>(comment: &'a str, key: &str) -> Option<&'a str> {
    comment
        .split('\t')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix(':'))
}

/// The first field a trusted comment gives more than once, if any. [`comment_field`] reads the
/// first copy while `minisign -V` shows them all, so a comment with repeated fields is refused.
pub fn repeated_comment_field(comment: &str) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    comment
        .split('\t')
        .map(|kv| kv.split_once(':').map_or(kv, |(k, _)| k))
        .find(|k| !seen.insert(*k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let id = KeyId::from_slice(kp.pk.keynum());
        SigningKey {
            sk: kp.sk,
            public: PublicKey {
                inner: kp.pk,
                id,
                origin: "test".into(),
            },
        }
    }

    #[test]
    fn the_trusted_comment_verifies_alone_and_only_as_signed() {
        let (k, other) = (key(), key());
        let text = k
            .sign(b"manifest", "timestamp:1\tmanifest_size:8", "u")
            .unwrap();
        let sig = Signature::parse(&text, "s").unwrap();
        sig.verify_comment(&k.public).unwrap();
        sig.verify(&k.public, b"manifest").unwrap();
        assert!(sig.verify_comment(&other.public).is_err());
        // The comment changed, the data signature kept: the global signature fails.
        let edited = text.replace("manifest_size:8", "manifest_size:9");
        let sig = Signature::parse(&edited, "s").unwrap();
        assert!(sig.verify_comment(&k.public).is_err());
        // The global signature of another signature (same key, same comment): it covers the
        // data signature too, so it fails.
        let second = k
            .sign(b"other data", "timestamp:1\tmanifest_size:8", "u")
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let spliced = format!(
            "{}\n{}\n{}\n{}\n",
            lines[0],
            second.lines().nth(1).unwrap(),
            lines[2],
            lines[3]
        );
        let sig = Signature::parse(&spliced, "s").unwrap();
        assert!(sig.verify_comment(&k.public).is_err());
    }
}
