//! The one error type of the library, and the exit code each kind of failure maps to.
//!
//! Variants carry the evidence (path, URL, expected and actual digests) so that every message
//! names the file, chunk, blob or digest at fault. Paths and URLs (named by media, bundles,
//! registries and hubs) are shown through `format::text::escape`; the printer shows every message
//! as one line with anything unsafe escaped.

use std::io;
use std::path::{Path, PathBuf};

use crate::format::text::escape;
use crate::format::Digest;
use crate::problem::Problem;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Process exit codes (README §Exit codes).
pub mod exit {
    pub const OK: i32 = 0;
    /// I/O, network, key or other operational failure.
    pub const OPERATIONAL: i32 = 1;
    /// Bad command line or spec file.
    pub const USAGE: i32 = 2;
    /// Content refused: a bundle failed verification or trust checks, or a source's bytes did not
    /// match their pinned or upstream digest.
    pub const REJECTED: i32 = 3;
    /// Stopped by SIGINT (Ctrl-C): 128 + 2, as shells report it.
    pub const SIGINT: i32 = 130;
    /// Stopped by SIGTERM: 128 + 15.
    pub const SIGTERM: i32 = 143;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {op} {}: {source}", escape(&path.display().to_string()))]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("{0}")]
    Usage(String),

    #[error("{0}")]
    Key(String),

    /// A failure talking to a registry, hub or download server; `kind` says which kind
    /// (README §JSON output, error kinds), classified where the error is made.
    #[error("{}: {msg}", escape(url))]
    Http {
        url: String,
        msg: String,
        kind: NetKind,
    },

    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    /// A non-SHA-256 content hash that did not match (e.g. a git blob SHA-1 from the Hub).
    #[error("{what}: {algorithm} mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        what: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },

    #[error("{what}: blob {digest} {detail}, but its descriptor declares {declared} bytes")]
    SizeMismatch {
        what: String,
        digest: Digest,
        declared: u64,
        detail: String,
    },

    #[error("bundle {} rejected: {}", escape(&dir.display().to_string()), summary(problems))]
    Rejected {
        dir: PathBuf,
        problems: Vec<Problem>,
    },

    #[error("{0}")]
    Conflict(String),

    /// Bundle bytes that do not decode to what the verified manifest declares (a decompression
    /// bomb, a short or undecodable segment), or content that contradicts what references it (an
    /// image graph that lies: a child manifest missing, of another size or media type, nested
    /// beyond a limit): content rejected.
    #[error("{0}")]
    Corrupt(String),

    /// Well-formed content that a target refuses to write because it cannot be written safely
    /// (a Modelfile value ollama's grammar cannot quote, an unknown PARAMETER key or MESSAGE
    /// role, a name that would land in another kind's part of a models directory): content
    /// rejected.
    #[error("{0}")]
    Refused(String),

    /// The audit log's hash chain is broken (a record edited, deleted, reordered or inserted).
    #[error("{0}")]
    AuditBroken(String),

    /// SIGINT or SIGTERM asked the run to stop; what it wrote was rolled back or left as
    /// staging the next run reuses or removes. Exit 128 + `signal`.
    #[error("interrupted by {}", crate::interrupt::signal_name(*signal))]
    Interrupted { signal: i32 },

    #[error("{0}")]
    Other(String),
}

/// What kind of network failure an [`Error::Http`] is: its `kind` in `--json` (README §JSON
/// output). All exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    /// The server says the thing asked for does not exist: a 404, a registry's
    /// `MANIFEST_UNKNOWN`/`NAME_UNKNOWN`/`BLOB_UNKNOWN`, the Hub's `RepoNotFound`/... .
    NotFound,
    /// No connection could be made: refused, a name that does not resolve, a connect timeout.
    Unreachable,
    /// Credentials missing or refused: 401/403, a registry's `UNAUTHORIZED`/`DENIED`.
    Auth,
    /// The TLS handshake failed: an untrusted or invalid certificate, a protocol mismatch.
    Tls,
    /// The server failed: a 5xx answer.
    Server,
    /// Anything else: a connection reset or stalled mid-transfer, an answer that makes no sense.
    Network,
}

impl NetKind {
    /// The kind of an unexpected HTTP answer: its status and the registry's `errors[].code`s.
    pub fn of_status(status: u16, codes: &[&str]) -> NetKind {
        let has = |c: &[&str]| codes.iter().any(|x| c.contains(x));
        if status == 401 || status == 403 || has(&["UNAUTHORIZED", "DENIED"]) {
            NetKind::Auth
        } else if status == 404 || has(&["MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"]) {
            NetKind::NotFound
        } else if (500..600).contains(&status) {
            NetKind::Server
        } else {
            NetKind::Network
        }
    }

    /// The kind of a failed request (no answer): a TLS failure anywhere in its causes, a
    /// connection that could not be made (refused, unresolvable, connect timeout), or else
    /// `network`.
    pub fn of_transport(e: &reqwest::Error) -> NetKind {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            if c.is::<rustls::Error>() {
                return NetKind::Tls;
            }
            if let Some(io) = c.downcast_ref::<io::Error>() {
                if io.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
                    return NetKind::Tls;
                }
            }
            cause = c.source();
        }
        if e.is_connect() {
            NetKind::Unreachable
        } else {
            NetKind::Network
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NetKind::NotFound => "not-found",
            NetKind::Unreachable => "unreachable",
            NetKind::Auth => "auth",
            NetKind::Tls => "tls",
            NetKind::Server => "server",
            NetKind::Network => "network",
        }
    }
}

fn summary(problems: &[Problem]) -> String {
    match problems.len() {
        1 => "1 problem".to_string(),
        n => format!("{n} problems"),
    }
}

impl Error {
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A failed read of blob bytes from a [`BlobSource`](crate::oci::image::BlobSource) (a
    /// bundle's chunks, re-verified while they stream). Bytes that do not decode or hash to what
    /// was declared (`InvalidData`) or that end early (`UnexpectedEof`) are content rejected
    /// (exit 3), on every target; anything else (a chunk that vanished, a read error of the
    /// media) is operational. `what` names the blob and where it was going. Every target
    /// classifies its read errors through this one function.
    pub fn blob_read(what: impl std::fmt::Display, e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
                Error::Corrupt(format!("{what}: {e}"))
            }
            _ => Error::Other(format!("{what}: {e}")),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::DigestMismatch { .. }
            | Error::HashMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::AuditBroken(_)
            | Error::Corrupt(_)
            | Error::Refused(_)
            | Error::Rejected { .. } => exit::REJECTED,
            Error::Interrupted { signal } => 128 + signal,
            _ => exit::OPERATIONAL,
        }
    }

    /// A short machine-readable class for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Usage(_) => "usage",
            Error::Key(_) => "key",
            Error::Http { kind, .. } => kind.as_str(),
            Error::DigestMismatch { .. } => "digest-mismatch",
            Error::HashMismatch { .. } => "digest-mismatch",
            Error::SizeMismatch { .. } => "size-mismatch",
            Error::Rejected { .. } => "rejected",
            Error::Conflict(_) => "conflict",
            Error::AuditBroken(_) => "audit-broken",
            Error::Corrupt(_) => "corrupt",
            Error::Refused(_) => "refused",
            Error::Interrupted { .. } => "interrupted",
            Error::Other(_) => "other",
        }
    }
}
