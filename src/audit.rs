//! The audit trail: one JSON line per `verify` or `import` decision, hash-chained.
//!
//! Each line is a [`Record`] serialised canonically (serde_json, fields in declaration order, no
//! whitespace) and terminated by `\n`. Record `n` (1-based, counting records, not lines) carries
//! `seq: n` and `prev`: the SHA-256 (hex) of the previous record's line bytes without the `\n`
//! (64 zeros for the first). Editing, deleting or reordering a record therefore breaks the chain
//! at the following record; [`verify`] names the first bad line.
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
//! `completes`. A `started` record no later record completes is an interrupted import
//! ([`AuditReport::interrupted`]).
//!
//! What the chain cannot show on its own: a whole number of records cut off the end (or the log
//! rewritten from some point on by someone who can write it). [`AuditReport::head`] is the hash
//! of the last record; keep it elsewhere (e.g. print it into the change ticket) with the record
//! count, and check the log against it later ([`verify_anchored`], [`Anchor`]).
//!
//! Records never carry secrets: only bundle metadata, key ids, problem codes and messages, and
//! the operator's user name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::bundle::{Problem, VerifiedBundle};
use crate::error::{Error, Result};
use crate::format::limits::MAX_MANIFEST_BYTES;
use crate::format::{ArtifactKind, Digest, EntryType, Manifest, MANIFEST_FILE};
use crate::fsutil;
use crate::sign::Signature;
use crate::state::{Decision, AUDIT_FILE};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Verify,
    Import,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Accepted,
    Rejected,
    /// An import is about to write to its targets; a later record with `completes` set to this
    /// record's `seq` gives its outcome. Without one, the import was interrupted (or is running).
    Started,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position among the records, from 1.
    pub seq: u64,
    /// SHA-256 (hex) of the previous record's line, [`GENESIS`] for the first.
    pub prev: String,
    /// SHA-256 (hex) of each damaged line (torn by a crash) between the previous record and
    /// this one, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub torn: Vec<String>,
    /// When the decision was made, RFC 3339 UTC.
    pub time: String,
    #[serde(flatten)]
    pub event: Event,
}

/// What was decided about a bundle; [`append`] adds `seq`, `prev` and `time`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub action: Action,
    pub outcome: Outcome,
    /// Who ran it: `$SUDO_USER`, else `$USER`, else `$LOGNAME`, else `uid:N`.
    pub operator: String,
    /// The bundle directory as given.
    pub bundle_dir: String,
    /// Whether the bundle fields below come from a manifest a trusted signature verified. When
    /// false, `bundle_id`, `channel`, `sequence` and `artifacts` are absent: nothing is taken
    /// from bytes no trusted signature vouched for (only their digest and size, and the key
    /// ids of the signature files).
    pub verified: bool,
    pub bundle_id: Option<String>,
    pub channel: Option<String>,
    pub sequence: Option<u64>,
    /// SHA-256 of the `manifest.json` bytes (a fact even when unverified).
    pub manifest_digest: Option<Digest>,
    /// Size in bytes of `manifest.json` (a fact even when unverified; absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_size: Option<u64>,
    pub signers: Vec<SignerRecord>,
    pub artifacts: Vec<ArtifactRecord>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub artifacts_omitted: u64,
    /// The state's decision ([`Decision::code`]) when it was consulted.
    pub freshness: Option<String>,
    /// The operator overrode a rollback or sequence-reuse rejection.
    pub allow_rollback: bool,
    /// Where the import wrote (e.g. `files:/srv/models`), when it is an import.
    pub target: Option<String>,
    /// Why it was rejected (empty when accepted, unless notes were added).
    pub reasons: Vec<Reason>,
    /// The `seq` of the `started` record whose outcome this record gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completes: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A signature on the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignerRecord {
    pub key_id: String,
    /// The key's name in the trust policy, when known.
    pub name: Option<String>,
    pub trusted: bool,
    pub valid: bool,
}

/// An artifact and the digests that identify its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub name: String,
    pub kind: String,
    /// Images and Ollama models: the top manifest's digest. Single files: the file's digest.
    pub digest: Option<Digest>,
    /// Hugging Face snapshots: `repo_id@commit`.
    pub hf: Option<String>,
    /// Number of files and their total size.
    pub file_count: u64,
    pub bytes: u64,
    /// The files' digests (the first few; `files_omitted` more are not listed).
    pub files: Vec<FileDigest>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub files_omitted: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileDigest {
    pub path: String,
    pub digest: Digest,
}

/// A reason for a rejection: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
}

impl Reason {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Reason {
        let mut message: String = message.into();
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        Reason {
            code: code.into(),
            message,
        }
    }
}

impl Event {
    /// A rejection of `bundle_dir` about which nothing is known yet; fill in with the methods.
    pub fn new(action: Action, bundle_dir: &Path) -> Event {
        Event {
            action,
            outcome: Outcome::Rejected,
            operator: operator(),
            bundle_dir: bundle_dir.display().to_string(),
            verified: false,
            bundle_id: None,
            channel: None,
            sequence: None,
            manifest_digest: None,
            manifest_size: None,
            signers: Vec::new(),
            artifacts: Vec::new(),
            artifacts_omitted: 0,
            freshness: None,
            allow_rollback: false,
            target: None,
            reasons: Vec::new(),
            completes: None,
        }
    }

    /// An event about a bundle that verified: id, channel, sequence, manifest digest, signers
    /// and artifacts from the verified manifest. Outcome still `rejected` until [`Event::accepted`].
    pub fn for_bundle(action: Action, bundle: &VerifiedBundle) -> Event {
        let mut e = Event::new(action, bundle.dir());
        e.verified = true;
        e.fill_from_manifest(bundle.manifest());
        e.manifest_digest = Some(bundle.manifest_digest());
        e.manifest_size = Some(bundle.manifest_size());
        e.signers = bundle
            .signers()
            .iter()
            .map(|s| SignerRecord {
                key_id: s.key_id.clone(),
                name: None,
                trusted: s.trusted,
                valid: s.valid,
            })
            .collect();
        e
    }

    /// The rejection of a bundle that did not verify (`error`, as `verify` returned it), with
    /// only what is safe to know without a trusted signature (`verified: false`): the bundle
    /// directory, the SHA-256 and size of whatever `manifest.json` is there (read bounded, never
    /// parsed), the key id of each signature file (whether the key is trusted and the signature
    /// valid as the problems say), and the reasons. Best effort: what cannot be read is absent.
    pub fn for_unverified(action: Action, bundle_dir: &Path, error: &Error) -> Event {
        let mut e = Event::new(action, bundle_dir);
        let path = bundle_dir.join(MANIFEST_FILE);
        if let Ok(bytes) = crate::bundle::verify::read_bounded(&path, MAX_MANIFEST_BYTES) {
            e.manifest_digest = Some(Digest::of(&bytes));
            e.manifest_size = Some(bytes.len() as u64);
        }
        let problems: &[Problem] = match error {
            Error::Rejected { problems, .. } => problems,
            _ => &[],
        };
        let (files, _) = crate::bundle::verify::signature_files(bundle_dir);
        for (file, text) in files {
            let Ok(sig) = text.and_then(|t| Signature::parse(&t, &file)) else {
                continue;
            };
            let key_id = sig.key_id.to_string();
            // What verify found out about this signature file, from its problems.
            let (mut trusted, mut valid) = (false, false);
            for p in problems {
                match p {
                    Problem::EditedManifest { file: f, .. } if *f == file => trusted = true,
                    Problem::RevokedKey { file: f, .. } | Problem::ExpiredKey { file: f, .. }
                        if *f == file =>
                    {
                        (trusted, valid) = (true, true)
                    }
                    _ => {}
                }
            }
            e.signers.push(SignerRecord {
                key_id,
                name: None,
                trusted,
                valid,
            });
        }
        e.rejected_by(error)
    }

    fn fill_from_manifest(&mut self, m: &Manifest) {
        self.bundle_id = Some(m.bundle_id.clone());
        self.channel = Some(m.channel.clone());
        self.sequence = Some(m.sequence);
        let mut budget = MAX_FILES;
        for a in m.artifacts.iter().take(MAX_ARTIFACTS) {
            let files: Vec<_> = a
                .entries
                .iter()
                .filter(|e| e.kind == EntryType::File)
                .collect();
            let listed: Vec<FileDigest> = files
                .iter()
                .filter_map(|e| {
                    e.blob.map(|d| FileDigest {
                        path: e.path.clone(),
                        digest: d,
                    })
                })
                .take(budget)
                .collect();
            budget -= listed.len();
            let digest = match a.kind {
                ArtifactKind::Image | ArtifactKind::OllamaModel => {
                    a.image.as_ref().map(|i| i.digest)
                }
                ArtifactKind::File => files.first().and_then(|e| e.blob),
                _ => None,
            };
            self.artifacts.push(ArtifactRecord {
                name: a.name.clone(),
                kind: a.kind.as_str().to_string(),
                digest,
                hf: a.hf.as_ref().map(|h| format!("{}@{}", h.repo_id, h.commit)),
                file_count: files.len() as u64,
                bytes: files
                    .iter()
                    .filter_map(|e| e.size)
                    .fold(0u64, u64::saturating_add),
                files_omitted: (files.len() - listed.len()) as u64,
                files: listed,
            });
        }
        self.artifacts_omitted = m.artifacts.len().saturating_sub(MAX_ARTIFACTS) as u64;
    }

    /// Names the `started` record (its `seq`) whose outcome this event gives.
    pub fn completing(mut self, started: Option<u64>) -> Event {
        self.completes = started;
        self
    }

    /// Marks the decision an acceptance.
    pub fn accepted(mut self) -> Event {
        self.outcome = Outcome::Accepted;
        self
    }

    /// Marks the decision a rejection for `error`: a bundle rejection lists each problem (its
    /// code and message); any other error is one reason with the error's kind.
    pub fn rejected_by(mut self, error: &Error) -> Event {
        self.outcome = Outcome::Rejected;
        match error {
            Error::Rejected { problems, .. } => self.push_problems(problems),
            other => self.push_reason(Reason::new(other.kind(), other.to_string())),
        }
        self
    }

    /// Marks the decision a rejection for these problems.
    pub fn rejected_for(mut self, problems: &[Problem]) -> Event {
        self.outcome = Outcome::Rejected;
        self.push_problems(problems);
        self
    }

    /// Adds a reason (a rejection's, or a note on an acceptance).
    pub fn reason(mut self, code: &str, message: impl Into<String>) -> Event {
        self.push_reason(Reason::new(code, message));
        self
    }

    /// Records the state's decision; a rejecting one is also added as a reason unless
    /// `allow_rollback` overrode it (which is recorded too).
    pub fn freshness(mut self, decision: &Decision, allow_rollback: bool) -> Event {
        self.freshness = Some(decision.code().to_string());
        self.allow_rollback = allow_rollback;
        if decision.is_rejection() && !allow_rollback {
            self.outcome = Outcome::Rejected;
            self.push_reason(Reason::new(decision.code(), decision.to_string()));
        }
        self
    }

    /// Where the import wrote.
    pub fn target(mut self, target: impl Into<String>) -> Event {
        self.target = Some(target.into());
        self
    }

    /// Names the signers' keys (e.g. from the trust policy).
    pub fn signer_names(mut self, name_of: &dyn Fn(&str) -> Option<String>) -> Event {
        for s in &mut self.signers {
            s.name = name_of(&s.key_id);
        }
        self
    }

    fn push_problems(&mut self, problems: &[Problem]) {
        for p in problems {
            self.push_reason(Reason::new(p.code(), p.to_string()));
        }
    }

    fn push_reason(&mut self, r: Reason) {
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(r);
        }
    }
}

/// The operator's user name from the process environment.
pub fn operator() -> String {
    operator_from(&|k| std::env::var(k).ok(), crate::state::effective_uid())
}

/// [`operator`] with the environment given, for tests.
pub fn operator_from(env: &dyn Fn(&str) -> Option<String>, uid: Option<u32>) -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .filter_map(|k| env(k))
        .find(|v| !v.is_empty() && v.len() <= 256 && !v.chars().any(char::is_control))
        .unwrap_or_else(|| match uid {
            Some(u) => format!("uid:{u}"),
            None => "unknown".into(),
        })
}

fn sha256_hex(bytes: &[u8]) -> String {
    Digest::of(bytes).hex()
}

/// `Some(record)` if `line` is a record in its canonical serialisation (so that unknown fields,
/// reformatting or any other change to the bytes count as damage).
fn parse_record(line: &[u8]) -> Option<Record> {
    let r: Record = crate::format::json::from_slice(line, AUDIT_FILE).ok()?;
    let again = serde_json::to_vec(&r).ok()?;
    (again == line).then_some(r)
}

/// Appends `event` to the log at `path` (created, mode 0640, with its directory if missing).
pub fn append(path: &Path, event: &Event) -> Result<Record> {
    AuditLog::open(path)?.append(event)
}

/// [`append`] with the time given.
pub fn append_at(path: &Path, event: &Event, now: SystemTime) -> Result<Record> {
    AuditLog::open(path)?.append_at(event, now)
}

/// An audit log opened for appending. The file is opened once, never through a symbolic link
/// (`O_NOFOLLOW`, checked to be a regular file on the handle), and every append goes to that
/// same file under an exclusive lock, so what was checked is what is written.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
}

fn damaged(path: &Path, m: impl std::fmt::Display) -> Error {
    Error::AuditBroken(format!(
        "audit log {}: {m}; nothing was appended: check it with `airlock audit verify` and repair it by hand",
        path.display()
    ))
}

impl AuditLog {
    /// Opens (creating it, mode 0640, and its directory if missing) the log at `path`.
    pub fn open(path: &Path) -> Result<AuditLog> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = dir {
            fsutil::create_dir_all(dir)?;
        }
        let existed = fs::symlink_metadata(path).is_ok();
        let mut o = OpenOptions::new();
        o.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o640);
        }
        let file = fsutil::open_nofollow(path, &mut o)?;
        let meta = fsutil::check_regular(&file, path)?;
        // Appended in place: a second name (a hard link planted in the state directory) could
        // make the records land in another file.
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if meta.nlink() > 1 {
                return Err(Error::Other(format!(
                    "audit log {} has {} hard links: it may be another file's too; refusing to append to it",
                    path.display(),
                    meta.nlink()
                )));
            }
        }
        let _ = meta;
        if !existed {
            if let Some(dir) = dir {
                fsutil::sync_dir(dir)?;
            }
        }
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// [`AuditLog::open`], then the whole chain checked through the open handle: what an import
    /// does before it writes anything. Refused: a broken chain, or a damaged end other than the
    /// one unterminated line a crash can leave (which the next append repairs).
    pub fn open_checked(path: &Path) -> Result<AuditLog> {
        let log = AuditLog::open(path)?;
        log.file
            .lock()
            .map_err(|e| Error::io("lock audit log", path, e))?;
        let checked = log.check();
        let _ = log.file.unlock();
        checked?;
        Ok(log)
    }

    fn check(&self) -> Result<()> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("read audit log", &self.path, e))?;
        let rep = verify_reader(
            BufReader::with_capacity(1 << 16, f),
            &self.path,
            &Anchor::default(),
        )?;
        match &rep.bad {
            None => Ok(()),
            // One unterminated last line: repairable if it is a complete record or the torn
            // beginning of the next one (the same rule the append applies).
            // The tail must also continue the chain verified up to it: a complete but
            // unterminated record is the next one (its seq and prev), a torn one begins it.
            Some(b) if b.kind == BadKind::TornTail => {
                let tail = read_tail(&self.file).map_err(|e| self.tail_error(e))?;
                let head = rep.head.clone().unwrap_or_else(|| GENESIS.to_string());
                let continues = if tail.torn.is_empty() {
                    tail.seq == rep.records + 1 && tail.chained_from == head
                } else {
                    tail.seq == rep.records && tail.prev == head
                };
                if continues {
                    Ok(())
                } else {
                    Err(damaged(
                        &self.path,
                        format!(
                            "line {}: its unterminated last line does not continue the chain of the {} intact records before it",
                            b.line, rep.records
                        ),
                    ))
                }
            }
            Some(b) => Err(damaged(
                &self.path,
                format!("line {}: {}", b.line, b.message),
            )),
        }
    }

    fn tail_error(&self, e: TailError) -> Error {
        match e {
            TailError::Io(e) => Error::io("read audit log", &self.path, e),
            TailError::Damaged(m) => damaged(&self.path, m),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event`; returns the record written.
    pub fn append(&self, event: &Event) -> Result<Record> {
        self.append_at(event, SystemTime::now())
    }

    /// [`AuditLog::append`] with the time given.
    pub fn append_at(&self, event: &Event, now: SystemTime) -> Result<Record> {
        self.file
            .lock()
            .map_err(|e| Error::io("lock audit log", &self.path, e))?;
        let r = self.append_locked(event, now);
        let _ = self.file.unlock();
        r
    }

    fn append_locked(&self, event: &Event, now: SystemTime) -> Result<Record> {
        let tail = read_tail(&self.file).map_err(|e| self.tail_error(e))?;
        let record = Record {
            seq: tail.seq + 1,
            prev: tail.prev,
            torn: tail.torn,
            time: humantime::format_rfc3339_seconds(now).to_string(),
            event: event.clone(),
        };
        let mut out = Vec::new();
        if tail.unterminated {
            out.push(b'\n');
        }
        out.extend_from_slice(&serialise(&record)?);
        out.push(b'\n');
        let mut f = &self.file;
        f.write_all(&out)
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::io("append to audit log", &self.path, e))?;
        Ok(record)
    }

    /// Records that an import is about to write (outcome `started`) and proves that its final
    /// record fits: `done` is the event the import will append once it has completed; it is
    /// serialised here as the largest record it can become. Returns the `started` record's
    /// `seq`, which the completing record names in `completes`.
    pub fn begin(&self, started: &Event, done: &Event) -> Result<u64> {
        let worst = Record {
            seq: u64::MAX,
            prev: GENESIS.into(),
            torn: vec![GENESIS.into(); MAX_TORN],
            time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            event: done.clone().completing(Some(u64::MAX)),
        };
        serialise(&worst)?;
        let mut e = started.clone();
        e.outcome = Outcome::Started;
        e.completes = None;
        Ok(self.append(&e)?.seq)
    }
}

/// A record's line (without the `\n`), refused when longer than [`MAX_LINE`].
fn serialise(record: &Record) -> Result<Vec<u8>> {
    let out = serde_json::to_vec(record)
        .map_err(|e| Error::Other(format!("serialise audit record: {e}")))?;
    if out.len() >= MAX_LINE {
        return Err(Error::Other(format!(
            "audit record of {} bytes exceeds {MAX_LINE}",
            out.len()
        )));
    }
    Ok(out)
}

/// How a record's line begins: the part a line torn by a crash while writing record `seq`
/// (chaining from `prev`) shares with it.
fn record_head(seq: u64, prev: &str) -> String {
    format!("{{\"seq\":{seq},\"prev\":\"{prev}\"")
}

/// Whether `line` can be what a crash left of a record whose line begins with `head`: a
/// beginning of it (a write cut short), possibly followed by NUL bytes (space the file system
/// allocated but never wrote), or NULs alone. Anything else is not a crash.
fn is_torn_record(line: &[u8], head: &str) -> bool {
    let end = line.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let t = &line[..end];
    let h = head.as_bytes();
    if t.len() <= h.len() {
        h.starts_with(t)
    } else {
        t.starts_with(h)
    }
}

struct Tail {
    /// `seq` of the last intact record (0: none).
    seq: u64,
    prev: String,
    /// What that record chains from (its `prev` field; GENESIS for none).
    chained_from: String,
    torn: Vec<String>,
    unterminated: bool,
}

enum TailError {
    Io(io::Error),
    Damaged(String),
}

/// Finds the last record by reading backwards. A crash can leave exactly one unterminated last
/// line: a complete record without its `\n` (kept), or the torn beginning of the next record
/// (named in the next record's `torn`). Anything else at the end is damage, refused.
fn read_tail(mut file: &File) -> std::result::Result<Tail, TailError> {
    const BLOCK: u64 = 64 << 10;
    let len = file.seek(SeekFrom::End(0)).map_err(TailError::Io)?;
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Enough read: the last line and the complete line before it, or the file's start.
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf[..]);
        let newlines = body.iter().filter(|&&b| b == b'\n').count();
        if start == 0 || newlines >= 2 {
            break;
        }
        if buf.len() > 2 * MAX_LINE + 2 {
            return Err(TailError::Damaged(format!(
                "no intact record in its last {} bytes",
                buf.len()
            )));
        }
        let n = BLOCK.min(start);
        start -= n;
        let mut block = vec![0u8; n as usize];
        file.seek(SeekFrom::Start(start)).map_err(TailError::Io)?;
        file.read_exact(&mut block).map_err(TailError::Io)?;
        block.extend_from_slice(&buf);
        buf = block;
    }
    if buf.is_empty() {
        return Ok(Tail {
            seq: 0,
            prev: GENESIS.into(),
            chained_from: GENESIS.into(),
            torn: Vec::new(),
            unterminated: false,
        });
    }
    let unterminated = buf.last() != Some(&b'\n');
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf[..]);
    let mut pieces: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    if start != 0 {
        pieces.remove(0);
    }
    let last = pieces.pop().unwrap_or_default();
    if let Some(r) = parse_record(last) {
        return Ok(Tail {
            seq: r.seq,
            prev: sha256_hex(last),
            chained_from: r.prev.clone(),
            torn: Vec::new(),
            unterminated,
        });
    }
    if !unterminated {
        return Err(TailError::Damaged(
            "its last line is not an audit record (a crash leaves at most one unterminated line)"
                .into(),
        ));
    }
    let (seq, prev, chained_from) = match pieces.last() {
        None => (0, GENESIS.to_string(), GENESIS.to_string()),
        Some(line) => match parse_record(line) {
            Some(r) => (r.seq, sha256_hex(line), r.prev.clone()),
            None => {
                return Err(TailError::Damaged(
                    "the line before its unterminated last line is not an audit record".into(),
                ))
            }
        },
    };
    if !is_torn_record(last, &record_head(seq + 1, &prev)) {
        return Err(TailError::Damaged(format!(
            "its unterminated last line is not the beginning of record {} (what a crash during an append leaves)",
            seq + 1
        )));
    }
    Ok(Tail {
        seq,
        prev,
        chained_from,
        torn: vec![sha256_hex(last)],
        unterminated,
    })
}

/// How a line is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BadKind {
    /// Not a record in canonical form, and not the one line torn by a crash that the next
    /// record names: edited into something else, or inserted.
    Malformed,
    /// Longer than [`MAX_LINE`].
    TooLong,
    /// The line's bytes are not what the next record chains from: it was edited.
    Edited,
    /// `seq` is not the next number: records before it were deleted, or records reordered.
    Sequence,
    /// The log ends in an incomplete line (a crash during an append, or a truncation).
    TornTail,
    /// The chain is intact but does not hold the anchor given (`--expect-head`,
    /// `--expect-records`): records were cut off its end, or it was rewritten.
    Anchor,
}

/// The first bad line of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadLine {
    /// 1-based line number (for [`BadKind::Anchor`]: the line after the last one read).
    pub line: u64,
    pub kind: BadKind,
    pub message: String,
}

/// A point of the chain kept elsewhere (printed into a ticket, say): the log must still hold
/// record `records`, and its line must hash to `head`. Either may be given alone: `records`
/// alone asks for at least that many records, `head` alone for some record with that hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Anchor {
    pub records: Option<u64>,
    pub head: Option<String>,
}

impl Anchor {
    /// Checks the form of `--expect-head`: 64 lowercase hex digits.
    pub fn parse_head(s: &str) -> std::result::Result<String, String> {
        let h = s.strip_prefix("sha256:").unwrap_or(s);
        if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(h.to_ascii_lowercase())
        } else {
            Err(format!(
                "{:?} is not a head hash (64 hex digits, as `airlock audit verify` prints)",
                crate::format::text::escape(s)
            ))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_none() && self.head.is_none()
    }
}

/// Where the anchor was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchorMatch {
    /// The anchored record's `seq`.
    pub record: u64,
    /// Its line's SHA-256 (hex).
    pub head: String,
}

/// An import whose `started` record no later record completes: interrupted (a crash, or a
/// failure to append its outcome), or still running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interrupted {
    pub line: u64,
    pub seq: u64,
    pub time: String,
    pub bundle_id: Option<String>,
    pub bundle_dir: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub path: PathBuf,
    /// Intact, chained records before the first bad line (all of them when `bad` is `None`).
    pub records: u64,
    /// Lines read.
    pub lines: u64,
    /// SHA-256 (hex) of the last intact record's line: keep it to anchor the log.
    pub head: Option<String>,
    /// Line torn by a crash and named by the record after it (at most one per record).
    pub recovered: Vec<u64>,
    /// Imports started and never completed.
    pub interrupted: Vec<Interrupted>,
    /// The anchor checked, when one was given and held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<AnchorMatch>,
    pub bad: Option<BadLine>,
}

impl AuditReport {
    pub fn is_intact(&self) -> bool {
        self.bad.is_none()
    }
}

/// Reads at most `max` bytes of the next line into `buf` (without its `\n`); returns
/// `Some(terminated)`, or `None` at the end. A longer line is cut at `max + 1` bytes.
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<bool>> {
    buf.clear();
    let n = r.by_ref().take(max as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        Ok(Some(true))
    } else {
        Ok(Some(false))
    }
}

/// Checks the whole chain of the log at `path`; names the first bad line. An `Err` is only
/// for a log that cannot be read.
pub fn verify(path: &Path) -> Result<AuditReport> {
    verify_anchored(path, &Anchor::default())
}

/// [`verify`], and the chain checked against `anchor`.
pub fn verify_anchored(path: &Path, anchor: &Anchor) -> Result<AuditReport> {
    let file = fsutil::open_regular(path)?;
    verify_reader(BufReader::with_capacity(1 << 16, file), path, anchor)
}

fn verify_reader(mut r: impl BufRead, path: &Path, anchor: &Anchor) -> Result<AuditReport> {
    let mut rep = AuditReport {
        path: path.to_path_buf(),
        records: 0,
        lines: 0,
        head: None,
        recovered: Vec::new(),
        interrupted: Vec::new(),
        anchor: None,
        bad: None,
    };
    let mut prev = GENESIS.to_string();
    let mut prev_line = 0u64;
    // The one line a crash may have torn, waiting for the record that names it.
    let mut pending: Option<(u64, Vec<u8>)> = None;
    let mut head_at_anchor: Option<String> = None;
    let mut buf = Vec::new();
    let bad = |line: u64, kind: BadKind, message: String| {
        Some(BadLine {
            line,
            kind,
            message,
        })
    };
    let not_a_record = |line: u64| {
        bad(
            line,
            BadKind::Malformed,
            format!("line {line} is not an audit record (edited or inserted; a crash tears at most one line, which the next record names)"),
        )
    };
    while let Some(terminated) =
        next_line(&mut r, &mut buf, MAX_LINE).map_err(|e| Error::io("read audit log", path, e))?
    {
        rep.lines += 1;
        let n = rep.lines;
        if buf.len() > MAX_LINE {
            rep.bad = bad(
                n,
                BadKind::TooLong,
                format!("line {n} is longer than {MAX_LINE} bytes"),
            );
            return Ok(rep);
        }
        if let Some((p, _)) = &pending {
            if !terminated || parse_record(&buf).is_none() {
                rep.bad = not_a_record(*p);
                return Ok(rep);
            }
        }
        if !terminated {
            rep.bad = bad(
                n,
                BadKind::TornTail,
                format!("the log ends in an incomplete line {n} (a crash during an append, or a truncation)"),
            );
            return Ok(rep);
        }
        let Some(rec) = parse_record(&buf) else {
            pending = Some((n, buf.clone()));
            continue;
        };
        match (pending.take(), rec.torn.as_slice()) {
            (None, []) => {}
            (Some((p, torn)), [h])
                if *h == sha256_hex(&torn)
                    && is_torn_record(&torn, &record_head(rec.seq, &rec.prev)) =>
            {
                rep.recovered.push(p);
            }
            (Some((p, _)), _) => {
                rep.bad = not_a_record(p);
                return Ok(rep);
            }
            (None, _) => {
                rep.bad = bad(
                    n,
                    BadKind::Edited,
                    format!("line {n} names torn lines before it that are not there"),
                );
                return Ok(rep);
            }
        }
        let expected = rep.records + 1;
        if rec.seq != expected {
            rep.bad = bad(
                n,
                BadKind::Sequence,
                format!(
                    "line {n} is record {} where record {expected} was expected: records were deleted or reordered",
                    rec.seq
                ),
            );
            return Ok(rep);
        }
        if rec.prev != prev {
            rep.bad = if prev_line == 0 {
                bad(
                    n,
                    BadKind::Edited,
                    format!("line {n}, the first record, does not start the chain: it was edited"),
                )
            } else {
                bad(
                    prev_line,
                    BadKind::Edited,
                    format!("line {prev_line} is not what line {n} chains from: it was edited"),
                )
            };
            return Ok(rep);
        }
        prev = sha256_hex(&buf);
        prev_line = n;
        rep.records += 1;
        rep.head = Some(prev.clone());
        match rec.event.outcome {
            Outcome::Started => rep.interrupted.push(Interrupted {
                line: n,
                seq: rec.seq,
                time: rec.time.clone(),
                bundle_id: rec.event.bundle_id.clone(),
                bundle_dir: rec.event.bundle_dir.clone(),
            }),
            _ => {
                if let Some(s) = rec.event.completes {
                    rep.interrupted.retain(|i| i.seq != s);
                }
            }
        }
        if anchor.records == Some(rec.seq) {
            head_at_anchor = Some(prev.clone());
        }
        if anchor.records.is_none() && anchor.head.as_deref() == Some(prev.as_str()) {
            head_at_anchor = Some(prev.clone());
            rep.anchor = Some(AnchorMatch {
                record: rec.seq,
                head: prev.clone(),
            });
        }
    }
    if let Some((p, _)) = pending {
        rep.bad = not_a_record(p);
        return Ok(rep);
    }
    check_anchor(&mut rep, anchor, head_at_anchor);
    Ok(rep)
}

fn check_anchor(rep: &mut AuditReport, anchor: &Anchor, found: Option<String>) {
    let line = rep.lines + 1;
    let fail = |message: String| {
        Some(BadLine {
            line,
            kind: BadKind::Anchor,
            message,
        })
    };
    match (anchor.records, &anchor.head) {
        (None, None) => {}
        (Some(n), _) if rep.records < n => {
            rep.bad = fail(format!(
                "the log holds {} records, the anchor expects at least {n}: records were cut off its end",
                rep.records
            ));
        }
        (Some(n), Some(h)) => match found {
            Some(f) if f == *h => {
                rep.anchor = Some(AnchorMatch {
                    record: n,
                    head: f,
                })
            }
            f => {
                rep.bad = fail(format!(
                    "record {n} hashes to {}, not to the anchored head {h}: the log was rewritten from record {n} or before",
                    f.unwrap_or_default()
                ))
            }
        },
        (Some(n), None) => {
            rep.anchor = Some(AnchorMatch {
                record: n,
                head: found.unwrap_or_default(),
            })
        }
        (None, Some(h)) => {
            if rep.anchor.is_none() {
                rep.bad = fail(format!(
                    "no record hashes to the anchored head {h}: the anchored record was removed, or the log rewritten"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn event(i: u32) -> Event {
        let mut e = Event::new(Action::Import, Path::new("/media/usb/bundle"));
        e.operator = "alice".into();
        e.bundle_id = Some(format!("{i:032x}"));
        e.channel = Some("nightly".into());
        e.sequence = Some(i as u64);
        e.manifest_digest = Some(Digest::of(&i.to_le_bytes()));
        if i.is_multiple_of(2) {
            e.accepted()
        } else {
            e.reason("rollback", format!("rollback {i}"))
        }
    }

    fn log_with(n: u32) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sub/audit.jsonl");
        for i in 1..=n {
            append_at(
                &p,
                &event(i),
                UNIX_EPOCH + Duration::from_secs(1_800_000_000 + i as u64),
            )
            .unwrap();
        }
        (t, p)
    }

    fn lines(p: &Path) -> Vec<String> {
        fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    fn write_lines(p: &Path, ls: &[String]) {
        fs::write(p, ls.join("\n") + "\n").unwrap();
    }

    fn bad(p: &Path) -> BadLine {
        verify(p).unwrap().bad.expect("damage detected")
    }

    #[test]
    fn chain_intact() {
        let (_t, p) = log_with(5);
        let rep = verify(&p).unwrap();
        assert!(rep.is_intact(), "{rep:?}");
        assert_eq!((rep.records, rep.lines), (5, 5));
        let ls = lines(&p);
        assert_eq!(
            rep.head.as_deref(),
            Some(sha256_hex(ls[4].as_bytes()).as_str())
        );
        let first: Record = serde_json::from_str(&ls[0]).unwrap();
        assert_eq!((first.seq, first.prev.as_str()), (1, GENESIS));
        assert_eq!(first.time, "2027-01-15T08:00:01Z");
        let second: Record = serde_json::from_str(&ls[1]).unwrap();
        assert_eq!(second.prev, sha256_hex(ls[0].as_bytes()));
        assert_eq!(second.event, event(2));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o640
            );
        }
        // Empty log: intact, no records.
        fs::write(&p, b"").unwrap();
        let rep = verify(&p).unwrap();
        assert!(rep.is_intact() && rep.records == 0 && rep.head.is_none());
    }

    #[test]
    fn edit_in_the_middle_is_detected_at_that_line() {
        let (_t, p) = log_with(5);
        let orig = lines(&p);
        // A valid record with one value changed.
        let mut ls = orig.clone();
        ls[2] = ls[2].replace("\"alice\"", "\"mallory\"");
        write_lines(&p, &ls);
        let b = bad(&p);
        assert_eq!((b.line, b.kind), (3, BadKind::Edited), "{b:?}");
        // The outcome flipped.
        let mut ls = orig.clone();
        ls[2] = ls[2].replace("\"rejected\"", "\"accepted\"");
        write_lines(&p, &ls);
        assert_eq!(bad(&p).line, 3);
        // Reformatted (same JSON value): not canonical, so damage.
        let mut ls = orig.clone();
        ls[2] = ls[2].replace(",\"prev\"", ", \"prev\"");
        write_lines(&p, &ls);
        assert_eq!((bad(&p).line, bad(&p).kind), (3, BadKind::Malformed));
        // An unknown field added.
        let mut ls = orig.clone();
        ls[1] = ls[1].replacen('{', "{\"x\":1,", 1);
        write_lines(&p, &ls);
        assert_eq!((bad(&p).line, bad(&p).kind), (2, BadKind::Malformed));
        // The first record edited.
        let mut ls = orig.clone();
        ls[0] = ls[0].replace("\"alice\"", "\"mallory\"");
        write_lines(&p, &ls);
        assert_eq!(bad(&p).line, 1);
        // The last record edited: nothing chains from it, so only an anchor shows it.
        let head = verify(&p).unwrap().head;
        let mut ls = orig;
        ls[4] = ls[4].replace("\"alice\"", "\"mallory\"");
        write_lines(&p, &ls);
        let rep = verify(&p).unwrap();
        assert!(rep.is_intact());
        assert_ne!(rep.head, head);
    }

    #[test]
    fn delete_reorder_insert_are_detected() {
        let (_t, p) = log_with(5);
        let orig = lines(&p);
        let mut ls = orig.clone();
        ls.remove(1);
        write_lines(&p, &ls);
        assert_eq!((bad(&p).line, bad(&p).kind), (2, BadKind::Sequence));
        let mut ls = orig.clone();
        ls.remove(0);
        write_lines(&p, &ls);
        assert_eq!((bad(&p).line, bad(&p).kind), (1, BadKind::Sequence));
        let mut ls = orig.clone();
        ls.swap(2, 3);
        write_lines(&p, &ls);
        assert_eq!((bad(&p).line, bad(&p).kind), (3, BadKind::Sequence));
        // A record duplicated.
        let mut ls = orig.clone();
        ls.insert(3, ls[2].clone());
        write_lines(&p, &ls);
        assert_eq!((bad(&p).line, bad(&p).kind), (4, BadKind::Sequence));
        // A garbage line inserted.
        let mut ls = orig;
        ls.insert(2, "hello".into());
        write_lines(&p, &ls);
        assert_eq!((bad(&p).line, bad(&p).kind), (3, BadKind::Malformed));
        // Over-long line.
        fs::write(&p, vec![b'x'; MAX_LINE + 5]).unwrap();
        assert_eq!(bad(&p).kind, BadKind::TooLong);
    }

    #[test]
    fn truncation_is_a_torn_tail() {
        let (_t, p) = log_with(4);
        let bytes = fs::read(&p).unwrap();
        let len = bytes.len();
        fs::write(&p, &bytes[..len - 10]).unwrap();
        let b = bad(&p);
        assert_eq!((b.line, b.kind), (4, BadKind::TornTail), "{b:?}");
        assert_eq!(verify(&p).unwrap().records, 3);
        // Even the newline alone missing is a torn tail.
        fs::write(&p, &bytes[..len - 1]).unwrap();
        assert_eq!((bad(&p).line, bad(&p).kind), (4, BadKind::TornTail));
    }

    #[test]
    fn append_after_a_torn_line_names_it_and_the_chain_holds() {
        let (_t, p) = log_with(3);
        let bytes = fs::read(&p).unwrap();
        // A crash mid-append: the beginning of a fourth record (chaining from the third).
        let head = record_head(4, &sha256_hex(lines(&p)[2].as_bytes()));
        let torn_text = format!("{head},\"time\":\"20");
        let torn = torn_text.as_bytes();
        // Junk instead, unterminated or not, is no crash: refused, and the log left as it is.
        for junk in [&b"{\"seq\":4,\"prev\":\"ab"[..], b"hello", b"hello\n"] {
            let mut b2 = bytes.clone();
            b2.extend_from_slice(junk);
            fs::write(&p, &b2).unwrap();
            let e = append(&p, &event(4)).unwrap_err();
            assert!(matches!(e, Error::AuditBroken(_)), "{e}");
            assert_eq!(fs::read(&p).unwrap(), b2);
        }
        // Two lines torn: no crash leaves that.
        let mut b2 = bytes.clone();
        b2.extend_from_slice(b"{\"seq\":4,\n");
        b2.extend_from_slice(torn);
        fs::write(&p, &b2).unwrap();
        assert!(append(&p, &event(4)).is_err());
        // NULs a file system left after a crash are a torn line too.
        let mut b2 = bytes.clone();
        b2.extend_from_slice(&torn[..20]);
        b2.extend_from_slice(&[0; 30]);
        fs::write(&p, &b2).unwrap();
        assert_eq!(append(&p, &event(4)).unwrap().torn.len(), 1);
        assert!(verify(&p).unwrap().is_intact());
        let mut b2 = bytes.clone();
        b2.extend_from_slice(torn);
        fs::write(&p, &b2).unwrap();
        assert_eq!(bad(&p).kind, BadKind::TornTail);
        let r = append(&p, &event(4)).unwrap();
        assert_eq!(r.seq, 4);
        assert_eq!(r.torn, vec![sha256_hex(torn)]);
        assert_eq!(r.prev, sha256_hex(lines(&p)[2].as_bytes()));
        append(&p, &event(5)).unwrap();
        let rep = verify(&p).unwrap();
        assert!(rep.is_intact(), "{rep:?}");
        assert_eq!(
            (rep.records, rep.lines, rep.recovered.clone()),
            (5, 6, vec![4])
        );
        // Replacing the recovered torn line by other bytes is detected.
        let mut ls = lines(&p);
        ls[3] = "{\"seq\":4,\"prev\":\"cd".into();
        write_lines(&p, &ls);
        assert_eq!((bad(&p).line, bad(&p).kind), (4, BadKind::Malformed));
        // So is junk that the next record names as torn (it is not what a crash leaves).
        let mut ls = lines(&p);
        ls[3] = "junk".into();
        let mut r5: Record = serde_json::from_str(&ls[4]).unwrap();
        r5.torn = vec![sha256_hex(b"junk")];
        ls[4] = serde_json::to_string(&r5).unwrap();
        write_lines(&p, &ls);
        assert_eq!((bad(&p).line, bad(&p).kind), (4, BadKind::Malformed));
        // The first append torn: the next one starts the chain and names it.
        fs::write(&p, b"{\"seq\":1,").unwrap();
        let r = append(&p, &event(1)).unwrap();
        assert_eq!((r.seq, r.prev.as_str(), r.torn.len()), (1, GENESIS, 1));
        assert!(verify(&p).unwrap().is_intact());
        // A complete record that only lacks its newline is kept and chained from.
        let (_t2, q) = log_with(2);
        let b = fs::read(&q).unwrap();
        fs::write(&q, &b[..b.len() - 1]).unwrap();
        let r = append(&q, &event(3)).unwrap();
        assert_eq!((r.seq, r.torn.len()), (3, 0));
        let rep = verify(&q).unwrap();
        assert!(rep.is_intact() && rep.records == 3, "{rep:?}");
    }

    #[test]
    fn links_are_refused() {
        let (t, p) = log_with(1);
        let before = fs::read(&p).unwrap();
        let hard = t.path().join("elsewhere");
        fs::hard_link(&p, &hard).unwrap();
        let e = append(&p, &event(2)).unwrap_err().to_string();
        assert!(e.contains("hard links"), "{e}");
        fs::remove_file(&hard).unwrap();
        #[cfg(unix)]
        {
            let link = t.path().join("link.jsonl");
            std::os::unix::fs::symlink(&p, &link).unwrap();
            let e = append(&link, &event(2)).unwrap_err().to_string();
            assert!(e.contains("symbolic link"), "{e}");
            assert!(AuditLog::open_checked(&link).is_err());
        }
        assert_eq!(fs::read(&p).unwrap(), before);
    }

    #[test]
    fn long_records_chain_across_read_blocks() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("audit.jsonl");
        for i in 0..3 {
            let e = event(i).reason("big", "x".repeat(MAX_MESSAGE));
            let mut e2 = e.clone();
            for _ in 0..40 {
                e2 = e2.reason("big", "y".repeat(MAX_MESSAGE + 10));
            }
            append(&p, &e2).unwrap();
        }
        assert!(fs::metadata(&p).unwrap().len() > 3 * (64 << 10));
        let rep = verify(&p).unwrap();
        assert!(rep.is_intact() && rep.records == 3, "{rep:?}");
    }

    #[test]
    fn operator_names() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            operator_from(&env(&[("SUDO_USER", "bob"), ("USER", "root")]), Some(0)),
            "bob"
        );
        assert_eq!(
            operator_from(&env(&[("USER", "carol"), ("LOGNAME", "x")]), Some(5)),
            "carol"
        );
        assert_eq!(operator_from(&env(&[("LOGNAME", "dave")]), Some(5)), "dave");
        assert_eq!(operator_from(&env(&[("USER", "")]), Some(1001)), "uid:1001");
        assert_eq!(operator_from(&env(&[("USER", "a\nb")]), None), "unknown");
    }

    #[test]
    fn reasons_are_bounded() {
        let mut e = event(1);
        for _ in 0..(MAX_REASONS + 5) {
            e = e.reason("x", "m".repeat(MAX_MESSAGE * 2));
        }
        assert_eq!(e.reasons.len(), MAX_REASONS);
        assert!(e.reasons.iter().all(|r| r.message.len() <= MAX_MESSAGE + 3));
        let d = Decision::Rollback {
            sequence: 1,
            last: 2,
        };
        let e = event(2).accepted().freshness(&d, false);
        assert_eq!(e.outcome, Outcome::Rejected);
        assert_eq!(e.reasons.last().unwrap().code, "rollback");
        let e = event(2).accepted().freshness(&d, true);
        assert_eq!((e.outcome, e.allow_rollback), (Outcome::Accepted, true));
    }
}
