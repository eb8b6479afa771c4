//! The Hugging Face Hub, as `huggingface_hub` talks to it: repo specs (`hf://…`), endpoint and
//! token configuration, the HTTP client (revision → commit, recursive tree listing, resolve
//! downloads with Range resumption), allow/ignore patterns and the git blob hash.

pub mod client;
pub mod glob;
pub mod spec;

pub use client::{HubClient, RepoFile};
pub use spec::{HfOptions, HfSpec};

use sha1::{Digest as _, Sha1};

/// Incremental git blob SHA-1 (`sha1("blob {len}\0" + data)`), the etag of a regular file.
pub struct GitBlobHasher {
    inner: Sha1,
}

impl GitBlobHasher {
    /// A hasher for a blob of exactly `len` bytes (git hashes the length first).
    pub fn new(len: u64) -> GitBlobHasher {
        let mut inner = Sha1::new();
        inner.update(format!("blob {len}\0").as_bytes());
        GitBlobHasher { inner }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// Lowercase hex.
    pub fn finish(self) -> String {
        hex::encode(self.inner.finalize())
    }
}

/// The git blob SHA-1 of `data`, lowercase hex.
pub fn git_blob_sha1(data: &[u8]) -> String {
    let mut h = GitBlobHasher::new(data.len() as u64);
    h.update(data);
    h.finish()
}

/// True for `n` lowercase hex digits.
pub fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Python's `urllib.parse.quote(s, safe=safe)`: everything but ASCII letters, digits, `_.-~`
/// and the `safe` bytes is percent-encoded (UTF-8).
pub fn quote(s: &str, safe: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_hash_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_sha1(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(
            git_blob_sha1(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }

    #[test]
    fn quotes_like_python() {
        assert_eq!(quote("refs/pr/1", ""), "refs%2Fpr%2F1");
        assert_eq!(quote("a b/ü.json", "/"), "a%20b/%C3%BC.json");
        assert_eq!(quote("v1.0-rc_2~x", ""), "v1.0-rc_2~x");
    }
}
