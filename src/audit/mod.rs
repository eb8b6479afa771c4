//! The audit trail: one JSON line per `verify` or `import` decision, hash-chained. The format is
//! specified in docs/AUDIT.md; a golden log written by an earlier release is under
//! `fixtures/audit/`, and every release must still verify it and append to it.
//!
//! Each line is a [`Record`] (serde_json, fields in declaration order, no whitespace) terminated
//! by `\n`, beginning `{"seq":N,"prev":"…"`. Record `n` (1-based, counting records, not lines)
//! carries `seq: n` and `prev`: the SHA-256 (hex) of the previous record's line bytes, exactly as
//! stored, without the `\n` (64 zeros for the first). Editing, deleting or reordering a record
//! therefore breaks the chain at the following record; [`verify`] names the first bad line.
//! Lines are never re-serialised to be checked: records are read leniently (fields this version
//! does not know are ignored, so a later release may add some; the JSON stays strict, a key named
//! twice is refused) and carry their version `v` ([`RECORD_VERSION`]; absent: version 1).
//!
//! Crashes: an append is one `O_APPEND` write followed by fsync, under an exclusive lock on the
//! log. A crash can still leave a torn last line (no `\n`): exactly one, and only the
//! beginning of the record being written (its `{"seq":N,"prev":"…"` prefix, or part of it,
//! possibly followed by NUL bytes a file system left). [`verify`] reports an unterminated last
//! line distinctly ([`BadKind::TornTail`]). The next [`append`] terminates the torn line and names
//! it in its record's `torn` list (its SHA-256), chaining from the last intact record; [`verify`]
//! accepts a non-record line only when it has that shape and the very next record names it.
//! Anything else — junk lines, several of them, a terminated non-record at the end — is damage:
//! [`verify`] names it and [`append`] refuses to write after it.
//!
//! Imports: [`AuditLog::open_checked`] verifies the whole chain through the handle the import
//! then appends to (never through a symbolic link); [`AuditLog::begin`] appends an
//! [`Outcome::Started`] record before any target is written, and the outcome record names it in
//! `completes`: `accepted`, `rejected` (the content: exit 3), `failed` (an operational error:
//! disk, network, I/O) or `interrupted` (a signal), decided from the error in one place,
//! [`Outcome::of`]. A `started` record no later record completes is an interrupted import
//! ([`AuditReport::interrupted`]).
//!
//! What the chain cannot show on its own: a whole number of records cut off the end (or the log
//! rewritten from some point on by someone who can write it). [`AuditReport::head`] is the hash
//! of the last record; keep it elsewhere (e.g. print it into the change ticket) with the record
//! count, and check the log against it later ([`verify_anchored`], [`Anchor`]).
//!
//! Records never carry secrets: only bundle metadata, key ids, problem codes and messages, and
//! the operator's user name (from the password database, [`operator`]) and `$SUDO_USER`.
//!
//! Reading for people: [`show`] streams the log through the same bounded, link- and FIFO-safe
//! reader and chain check as [`verify`], keeping only the displayed fields of the records a
//! filter selects, each marked whether the chain vouches for it.

mod line;
mod log;
mod operator;
mod record;
mod show;
#[cfg(test)]
mod tests;
mod verify;

use std::path::{Path, PathBuf};

use crate::state::AUDIT_FILE;

pub use log::{append, append_at, AuditLog};
pub use operator::{absolute_bundle_dir, name_in, operator, operator_from, user_name, Operator};
pub use record::{
    Action, ArtifactRecord, Event, FileDigest, Outcome, Partial, Reason, Record, RollbackRecord,
    SignerRecord,
};
pub use show::{show, ShowFilter, Shown, ShownRecord};
pub use verify::{
    verify, verify_anchored, Anchor, AnchorMatch, AuditReport, BadKind, BadLine, Interrupted,
};

/// The record version this code writes (`v`). A line without `v` is version 1 (the records
/// written before versions existed); version 2 added `v` itself and the outcomes `failed` and
/// `interrupted`; version 3 the action `rollback` and its `rollback` field. Records of later versions are accepted for their chain fields.
pub const RECORD_VERSION: u32 = 3;
/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Longest line [`verify`] and [`append`] read (4 MiB); records are kept far below it.
pub const MAX_LINE: usize = 4 << 20;
/// Most damaged lines one record may step over: one, the unterminated line a crash can leave.
pub const MAX_TORN: usize = 1;
/// Most artifacts listed in one record (the rest are counted in `artifacts_omitted`).
pub const MAX_ARTIFACTS: usize = 1000;
/// Most file digests listed in one record, over all its artifacts.
pub const MAX_FILES: usize = 200;
/// Most reasons in one record, and the longest message kept (longer ones are cut).
pub const MAX_REASONS: usize = 64;
pub const MAX_MESSAGE: usize = 2048;

/// The default log of a state directory: `<state dir>/audit.jsonl`.
pub fn default_path(state_dir: &Path) -> PathBuf {
    state_dir.join(AUDIT_FILE)
}
