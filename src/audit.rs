//! The audit trail: one JSON line per `verify` or `import` decision, hash-chained.
//!
//! Each line is a [`Record`] serialised canonically (serde_json, fields in declaration order, no
//! whitespace) and terminated by `\n`. Record `n` (1-based, counting records, not lines) carries
//! `seq: n` and `prev`: the SHA-256 (hex) of the previous record's line bytes without the `\n`
//! (64 zeros for the first). Editing, deleting or reordering a record therefore breaks the chain
//! at the following record; [`verify`] names the first bad line.
//!
//! Crashes: an append is one `O_APPEND` write followed by fsync, under an exclusive lock on the
//! log. A crash can still leave a torn last line (no `\n`). [`verify`] reports that distinctly
//! ([`BadKind::TornTail`]). The next [`append`] terminates the torn line and names it in its
//! record's `torn` list (SHA-256 of each damaged line it steps over), chaining from the last
//! intact record; [`verify`] accepts a damaged line only when the very next record names it
//! that way, so a line damaged or inserted later is still detected.
//!
//! What the chain cannot show on its own: a whole number of records cut off the end (or the log
//! rewritten from some point on by someone who can write it). [`AuditReport::head`] is the hash
//! of the last record; keep it elsewhere (e.g. print it into the change ticket) to anchor the log.
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
/// Most damaged lines one record may step over.
pub const MAX_TORN: usize = 16;
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
    let r: Record = serde_json::from_slice(line).ok()?;
    let again = serde_json::to_vec(&r).ok()?;
    (again == line).then_some(r)
}

/// Appends `event` to the log at `path` (created, mode 0640, with its directory if missing).
pub fn append(path: &Path, event: &Event) -> Result<Record> {
    append_at(path, event, SystemTime::now())
}

/// [`append`] with the time given.
pub fn append_at(path: &Path, event: &Event, now: SystemTime) -> Result<Record> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::create_dir_all(dir)?;
    }
    let existed = match fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() => {
            return Err(Error::Other(format!(
                "audit log {} is not a regular file",
                path.display()
            )))
        }
        Ok(_) => true,
        Err(_) => false,
    };
    let mut o = OpenOptions::new();
    o.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o640);
    }
    let mut file = o
        .open(path)
        .map_err(|e| Error::io("open audit log", path, e))?;
    file.lock()
        .map_err(|e| Error::io("lock audit log", path, e))?;
    let tail = read_tail(&mut file).map_err(|e| match e {
        TailError::Io(e) => Error::io("read audit log", path, e),
        TailError::Damaged(m) => Error::Other(format!(
            "audit log {}: {m}; check it with `airlock audit verify` and repair it by hand",
            path.display()
        )),
    })?;
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
    serde_json::to_writer(&mut out, &record)
        .map_err(|e| Error::Other(format!("serialise audit record: {e}")))?;
    if out.len() >= MAX_LINE {
        return Err(Error::Other(format!(
            "audit record of {} bytes exceeds {MAX_LINE}",
            out.len()
        )));
    }
    out.push(b'\n');
    file.write_all(&out)
        .and_then(|_| file.sync_data())
        .map_err(|e| Error::io("append to audit log", path, e))?;
    if !existed {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsutil::sync_dir(dir)?;
        }
    }
    Ok(record)
}

struct Tail {
    /// `seq` of the last intact record (0: none).
    seq: u64,
    prev: String,
    torn: Vec<String>,
    unterminated: bool,
}

enum TailError {
    Io(io::Error),
    Damaged(String),
}

/// Finds the last intact record by reading backwards, and the damaged lines after it.
fn read_tail(file: &mut File) -> std::result::Result<Tail, TailError> {
    const BLOCK: u64 = 64 << 10;
    let len = file.seek(SeekFrom::End(0)).map_err(TailError::Io)?;
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let unterminated = buf.last().is_some_and(|&b| b != b'\n');
        // Lines fully inside `buf`: all but a first piece that may have begun before `start`.
        let body = match buf.strip_suffix(b"\n") {
            Some(b) => b,
            None => &buf[..],
        };
        if !buf.is_empty() {
            let mut pieces: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
            let first_complete = start == 0;
            if !first_complete {
                pieces.remove(0);
            }
            let mut torn = Vec::new();
            for (i, line) in pieces.iter().enumerate().rev() {
                if let Some(r) = parse_record(line) {
                    torn.reverse();
                    return Ok(Tail {
                        seq: r.seq,
                        prev: sha256_hex(line),
                        torn,
                        unterminated,
                    });
                }
                torn.push(sha256_hex(line));
                if torn.len() > MAX_TORN {
                    return Err(TailError::Damaged(format!(
                        "more than {MAX_TORN} damaged lines at its end"
                    )));
                }
                if i == 0 && first_complete {
                    // Nothing intact at all (e.g. the very first append was torn).
                    torn.reverse();
                    return Ok(Tail {
                        seq: 0,
                        prev: GENESIS.into(),
                        torn,
                        unterminated,
                    });
                }
            }
        }
        if start == 0 {
            return Ok(Tail {
                seq: 0,
                prev: GENESIS.into(),
                torn: Vec::new(),
                unterminated: false,
            });
        }
        if buf.len() > (MAX_TORN + 1) * MAX_LINE {
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
}

/// How a line is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BadKind {
    /// Not a record in canonical form, and not a torn line named by the next record: edited
    /// into something else, or inserted.
    Malformed,
    /// Longer than [`MAX_LINE`].
    TooLong,
    /// The line's bytes are not what the next record chains from: it was edited.
    Edited,
    /// `seq` is not the next number: records before it were deleted, or records reordered.
    Sequence,
    /// The log ends in an incomplete line (a crash during an append, or a truncation) or in
    /// damaged lines no record names.
    TornTail,
}

/// The first bad line of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u64,
    pub kind: BadKind,
    pub message: String,
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
    /// Lines torn by a crash and named by the record after them.
    pub recovered: Vec<u64>,
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
    let file = fsutil::open(path)?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut rep = AuditReport {
        path: path.to_path_buf(),
        records: 0,
        lines: 0,
        head: None,
        recovered: Vec::new(),
        bad: None,
    };
    let mut prev = GENESIS.to_string();
    let mut prev_line = 0u64;
    let mut pending: Vec<(u64, String)> = Vec::new();
    let mut buf = Vec::new();
    let bad = |line: u64, kind: BadKind, message: String| {
        Some(BadLine {
            line,
            kind,
            message,
        })
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
        if !terminated {
            let first = pending.first().map_or(n, |p| p.0);
            rep.bad = bad(
                first,
                BadKind::TornTail,
                format!("the log ends in an incomplete line {n} (a crash during an append, or a truncation)"),
            );
            return Ok(rep);
        }
        let Some(rec) = parse_record(&buf) else {
            pending.push((n, sha256_hex(&buf)));
            if pending.len() > MAX_TORN {
                let first = pending[0].0;
                rep.bad = bad(
                    first,
                    BadKind::Malformed,
                    format!("line {first} is not an audit record"),
                );
                return Ok(rep);
            }
            continue;
        };
        let claimed: Vec<&String> = pending.iter().map(|p| &p.1).collect();
        if rec.torn.iter().collect::<Vec<_>>() != claimed {
            rep.bad = match pending.first() {
                Some(&(first, _)) => bad(
                    first,
                    BadKind::Malformed,
                    format!("line {first} is not an audit record (edited or inserted)"),
                ),
                None => bad(
                    n,
                    BadKind::Edited,
                    format!("line {n} names torn lines before it that are not there"),
                ),
            };
            return Ok(rep);
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
        rep.recovered.extend(pending.drain(..).map(|p| p.0));
        prev = sha256_hex(&buf);
        prev_line = n;
        rep.records += 1;
        rep.head = Some(prev.clone());
    }
    if let Some(&(first, _)) = pending.first() {
        rep.bad = bad(
            first,
            BadKind::TornTail,
            format!("the log ends in damaged lines from line {first} on that no record names (a crash during an append, or damage)"),
        );
    }
    Ok(rep)
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
        // A crash mid-append: half of a fourth record.
        let torn = br#"{"seq":4,"prev":"ab"#;
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
