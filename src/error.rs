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
    /// Intact but incomplete: every volume of a multi-volume bundle given to `verify` checked
    /// out, but some volumes of the bundle were not given (README §Exit codes).
    pub const INCOMPLETE: i32 = 4;
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

    /// Version 4: volumes given to `verify` (or `sign`) that did not all check out: each
    /// directory with its volume (when its signatures told it) and its problems.
    #[error("bundle rejected: {}", volumes_summary(dirs))]
    VolumesRejected { dirs: Vec<DirProblems> },

    /// Version 4: every volume given checked out, but some volumes of the bundle were not
    /// given; the message says which (exit 4, `verify` only: its report is printed too).
    #[error("{0}")]
    Incomplete(String),

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

    /// Version 5: a delta bundle's external blobs (not carried) that are not available to the
    /// target that needs them — neither in that store nor at a location airlock recorded on
    /// this machine: the message lists each blob, the artifacts that need it, the base bundle
    /// that would provide it and how to catch up. Nothing was written: content rejected.
    #[error("{0}")]
    MissingBase(String),

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
        // Every error in the chain, and inside nested io::Errors (whose `source` skips the
        // error they wrap).
        let mut todo: Vec<&(dyn std::error::Error + 'static)> = vec![e];
        while let Some(c) = todo.pop() {
            if c.is::<rustls::Error>() {
                return NetKind::Tls;
            }
            if let Some(inner) = c.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
                todo.push(inner);
            }
            if let Some(next) = c.source() {
                todo.push(next);
            }
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

/// One directory given as a volume, and what is wrong with it ([`Error::VolumesRejected`]).
#[derive(Debug, Clone)]
pub struct DirProblems {
    pub dir: PathBuf,
    /// The volume it is, when its signatures verified (its trusted comments name it).
    pub volume: Option<u32>,
    pub problems: Vec<Problem>,
    /// It could not be checked for another reason than its content (an I/O error).
    pub error: Option<String>,
}

impl DirProblems {
    /// How a problem of this directory is introduced: `DIR (volume N)`, escaped.
    pub fn label(&self) -> String {
        let volume = match self.volume {
            Some(n) => n.to_string(),
            None => "unknown".to_string(),
        };
        format!(
            "{} (volume {volume})",
            escape(&self.dir.display().to_string())
        )
    }
}

/// Every problem of every directory, in order.
pub fn all_problems(dirs: &[DirProblems]) -> Vec<Problem> {
    dirs.iter()
        .flat_map(|d| d.problems.iter().cloned())
        .collect()
}

/// `2 problems in 1 of the 3 volume directories given` (`in out/vol-002` for one).
fn volumes_summary(dirs: &[DirProblems]) -> String {
    let bad: Vec<&DirProblems> = dirs
        .iter()
        .filter(|d| !d.problems.is_empty() || d.error.is_some())
        .collect();
    let problems = summary(&all_problems(dirs));
    match (dirs.len(), bad.as_slice()) {
        (1, [one]) => format!("{problems} in {}", one.label()),
        (n, bad) => format!(
            "{problems} in {} of the {n} volume directories given",
            bad.len()
        ),
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
            | Error::MissingBase(_)
            | Error::Rejected { .. }
            | Error::VolumesRejected { .. } => exit::REJECTED,
            Error::Incomplete(_) => exit::INCOMPLETE,
            Error::Interrupted { signal } => 128 + signal,
            _ => exit::OPERATIONAL,
        }
    }

    /// A short machine-readable class for `--json` output.
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }

    /// [`Error::kind`] as its type (the `kind` of `schemas/error.schema.json`).
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Usage(_) => ErrorKind::Usage,
            Error::Key(_) => ErrorKind::Key,
            Error::Http { kind, .. } => match kind {
                NetKind::NotFound => ErrorKind::NotFound,
                NetKind::Unreachable => ErrorKind::Unreachable,
                NetKind::Auth => ErrorKind::Auth,
                NetKind::Tls => ErrorKind::Tls,
                NetKind::Server => ErrorKind::Server,
                NetKind::Network => ErrorKind::Network,
            },
            Error::DigestMismatch { .. } => ErrorKind::DigestMismatch,
            Error::HashMismatch { .. } => ErrorKind::DigestMismatch,
            Error::SizeMismatch { .. } => ErrorKind::SizeMismatch,
            Error::Rejected { .. } | Error::VolumesRejected { .. } => ErrorKind::Rejected,
            Error::Incomplete(_) => ErrorKind::Incomplete,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::AuditBroken(_) => ErrorKind::AuditBroken,
            Error::Corrupt(_) => ErrorKind::Corrupt,
            Error::Refused(_) => ErrorKind::Refused,
            Error::MissingBase(_) => ErrorKind::MissingBase,
            Error::Interrupted { .. } => ErrorKind::Interrupted,
            Error::Other(_) => ErrorKind::Other,
        }
    }
}

/// Every `kind` an error can have in `--json` (README §JSON output, error kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// A file or directory could not be read or written (exit 1).
    Io,
    /// A bad command line, spec or path (exit 2).
    Usage,
    /// A key could not be loaded or used (exit 1).
    Key,
    /// The registry, hub or server says what was asked for does not exist (exit 1).
    NotFound,
    /// No connection could be made: refused, unresolvable name, connect timeout (exit 1).
    Unreachable,
    /// Credentials missing or refused (exit 1).
    Auth,
    /// The TLS handshake or the server's certificate failed (exit 1).
    Tls,
    /// The server answered with a 5xx error (exit 1).
    Server,
    /// Any other network failure: reset or stalled mid-transfer, a nonsensical answer (exit 1).
    Network,
    /// Bytes that do not hash to their pinned or declared digest (exit 3).
    DigestMismatch,
    /// A blob of another size than declared (exit 3).
    SizeMismatch,
    /// The bundle failed verification or trust checks; `problems` says why (exit 3).
    Rejected,
    /// Every volume given is intact but some volumes of the bundle were not given (exit 4;
    /// `verify` prints its report, `complete: false`, not an error document).
    Incomplete,
    /// A target already holds something else under the name (exit 1).
    Conflict,
    /// The audit log's hash chain is broken (exit 3).
    AuditBroken,
    /// Bundle content that does not decode to what the manifest declares (exit 3).
    Corrupt,
    /// Content a target refuses to write (exit 3).
    Refused,
    /// A delta bundle's external blobs are not available to the target that needs them: the
    /// enclave lacks its base (exit 3).
    MissingBase,
    /// Stopped by SIGINT or SIGTERM (exit 130 or 143).
    Interrupted,
    /// Anything else (exit 1).
    Other,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Usage => "usage",
            ErrorKind::Key => "key",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Auth => "auth",
            ErrorKind::Tls => "tls",
            ErrorKind::Server => "server",
            ErrorKind::Network => "network",
            ErrorKind::DigestMismatch => "digest-mismatch",
            ErrorKind::SizeMismatch => "size-mismatch",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Incomplete => "incomplete",
            ErrorKind::Conflict => "conflict",
            ErrorKind::AuditBroken => "audit-broken",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Refused => "refused",
            ErrorKind::MissingBase => "missing-base",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_their_json_names() {
        use ErrorKind::*;
        for k in [
            Io,
            Usage,
            Key,
            NotFound,
            Unreachable,
            Auth,
            Tls,
            Server,
            Network,
            DigestMismatch,
            SizeMismatch,
            Rejected,
            Incomplete,
            Conflict,
            AuditBroken,
            Corrupt,
            Refused,
            MissingBase,
            Interrupted,
            Other,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn http_answers_are_classified() {
        assert_eq!(NetKind::of_status(404, &[]), NetKind::NotFound);
        assert_eq!(
            NetKind::of_status(400, &["NAME_UNKNOWN"]),
            NetKind::NotFound
        );
        assert_eq!(NetKind::of_status(401, &[]), NetKind::Auth);
        assert_eq!(NetKind::of_status(403, &["DENIED"]), NetKind::Auth);
        assert_eq!(NetKind::of_status(400, &["UNAUTHORIZED"]), NetKind::Auth);
        assert_eq!(NetKind::of_status(500, &[]), NetKind::Server);
        assert_eq!(NetKind::of_status(503, &[]), NetKind::Server);
        assert_eq!(
            NetKind::of_status(400, &["DIGEST_INVALID"]),
            NetKind::Network
        );
    }
}
