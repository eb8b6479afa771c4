//! The minisign parsers in `airlock::sign` on arbitrary text: signature files
//! (`Signature::parse`), public keys (file text or the inline `RW…` line, `PublicKey::parse`)
//! and secret key files (`SigningKey::parse`, with no passphrase available so an encrypted key
//! is refused before any KDF runs). The first byte picks the parser; none may panic.
#![no_main]

use airlock::error::Error;
use airlock::sign::{comment_field, PublicKey, Signature, SigningKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 3 {
        0 => {
            if let Ok(sig) = Signature::parse(&text, "fuzz.minisig") {
                let _ = sig.key_id.to_string();
                let comment = sig.trusted_comment();
                let _ = comment_field(&comment, "bundle");
            }
        }
        1 => {
            if let Ok(pk) = PublicKey::parse(&text, "fuzz.pub") {
                let again = PublicKey::parse(&pk.to_file_text(), "again").expect("re-parses");
                assert_eq!(again.id, pk.id);
                assert_eq!(again.base64(), pk.base64());
            }
        }
        _ => {
            let no_passphrase = || Err(Error::Key("no passphrase while fuzzing".into()));
            if let Ok(sk) = SigningKey::parse(&text, "fuzz.key", no_passphrase) {
                let _ = sk.sign(b"data", "trusted", "untrusted");
            }
        }
    }
});
