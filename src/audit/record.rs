//! What one record says: the decision about a bundle ([`Event`]) and the line around it
//! ([`Record`]), and how an event is filled in from a bundle, a rejection or an error.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{MAX_ARTIFACTS, MAX_FILES, MAX_MESSAGE, MAX_REASONS};
use crate::bundle::{Problem, VerifiedBundle};
use crate::error::Error;
use crate::format::{ArtifactKind, Digest, EntryType, Manifest};
use crate::sign::Signature;
use crate::state::Decision;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Verify,
    Import,
    /// `airlock rollback`: a kept version of an artifact swapped back (record version 3).
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Accepted,
    /// The content was refused: verification, trust policy, freshness, or bytes that did not
    /// decode or hash as declared (the errors that exit 3).
    Rejected,
    /// An import is about to write to its targets; a later record with `completes` set to this
    /// record's `seq` gives its outcome. Without one, the import was interrupted (or is running).
    Started,
    /// An operational failure, nothing said about the content: disk full, network, I/O, a
    /// conflict in a destination, a key that could not be read (record version 2).
    Failed,
    /// Stopped by a signal (SIGINT, SIGTERM) before it completed (record version 2).
    Interrupted,
}

impl Outcome {
    /// The outcome of a decision that ended in `error`, from its exit code: 3 (content
    /// rejected) is [`Outcome::Rejected`], [`Error::Interrupted`] is [`Outcome::Interrupted`],
    /// anything else (I/O, network, usage, conflicts) is [`Outcome::Failed`]. The one place
    /// this is decided.
    pub fn of(error: &Error) -> Outcome {
        match error {
            Error::Interrupted { .. } => Outcome::Interrupted,
            e if e.exit_code() == crate::error::exit::REJECTED => Outcome::Rejected,
            _ => Outcome::Failed,
        }
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position among the records, from 1.
    pub seq: u64,
    /// SHA-256 (hex) of the previous record's line, [`GENESIS`](super::GENESIS) for the first.
    pub prev: String,
    /// The record's version: [`RECORD_VERSION`](super::RECORD_VERSION) when written by this code; 1 when absent
    /// (lines written before versions existed).
    #[serde(default = "version_1")]
    pub v: u32,
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
    /// Who ran it: the effective uid's name in the password database, else `uid:N` (records
    /// written before this field's meaning was fixed: `$SUDO_USER`, `$USER` or `$LOGNAME`).
    pub operator: String,
    /// `$SUDO_USER` when set: the user who ran `sudo airlock …` (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
    /// The bundle directory, absolute: its parent canonicalised, its last component as given
    /// (older records: as given, possibly relative).
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
    /// A partial import (`--only`/`--skip`): which artifacts it took and which it left out
    /// (absent for a whole import, and in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<Partial>,
    /// Version 4: what the import rebuilt from parity volumes (absent when nothing was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt: Option<RebuiltRecord>,
    /// Version 3, `action: rollback`: which artifact, where, and the versions swapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRecord>,
}

/// What a rollback swapped: the artifact at `path` now holds the version `restored` (the
/// bundle id that wrote it, as its kept directory names it); the version it replaced
/// (`replaced`: the bundle that wrote it, when recorded) is kept at `kept`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub artifact: String,
    pub path: String,
    pub restored: String,
    pub replaced: Option<String>,
    pub kept: String,
    /// `--force`: a file changed since airlock wrote it was swapped anyway.
    pub forced: bool,
}

/// Data volumes an import rebuilt from parity, the chunks rebuilt (each checked against its
/// signed digests) and their bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebuiltRecord {
    pub volumes: Vec<u32>,
    pub chunks: u64,
    pub bytes: u64,
}

/// The artifacts a partial import took (`imported`) and left out (`skipped`), by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub imported: Vec<String>,
    pub skipped: Vec<String>,
}

fn version_1() -> u32 {
    1
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
        let op = super::operator::operator();
        Event {
            action,
            outcome: Outcome::Rejected,
            operator: op.name,
            sudo_user: op.sudo_user,
            bundle_dir: super::operator::absolute_bundle_dir(bundle_dir)
                .display()
                .to_string(),
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
            partial: None,
            rebuilt: None,
            rollback: None,
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

    /// The end of a bundle that did not verify (`error`, as `verify` returned it; its outcome
    /// from [`Outcome::of`]), with only what is safe to know without a trusted signature
    /// (`verified: false`): the bundle directory, the SHA-256 and size of whatever
    /// `manifest.json` is there (the one bounded read verify uses: no link followed, no FIFO
    /// waited on; never parsed), the key id of each signature file (whether the key is trusted
    /// and the signature valid as the problems say), and the reasons. Best effort: what cannot
    /// be read is absent.
    pub fn for_unverified(action: Action, bundle_dir: &Path, error: &Error) -> Event {
        let mut e = Event::new(action, bundle_dir);
        if let Ok(bytes) = crate::bundle::verify::read_manifest_bytes(bundle_dir) {
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
        e.outcome_of(error)
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

    /// Marks the decision as ended by `error`, with the outcome [`Outcome::of`] says
    /// (`rejected`, `failed` or `interrupted`): a bundle rejection lists each problem (its
    /// code and message); any other error is one reason with the error's kind.
    pub fn outcome_of(mut self, error: &Error) -> Event {
        self.outcome = Outcome::of(error);
        match error {
            Error::Rejected { problems, .. } => self.push_problems(problems),
            other => self.push_reason(Reason::new(other.kind(), other.to_string())),
        }
        self
    }

    /// The name [`Event::outcome_of`] had before outcomes were told apart; the same function
    /// (the outcome is still decided from the error).
    pub fn rejected_by(self, error: &Error) -> Event {
        self.outcome_of(error)
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

    /// Records what was rebuilt from parity volumes before the import read the bundle.
    pub fn rebuilt(mut self, rebuilt: &crate::bundle::parity::Rebuilt) -> Event {
        self.rebuilt = Some(RebuiltRecord {
            volumes: rebuilt.volumes.clone(),
            chunks: rebuilt.chunks.len() as u64,
            bytes: rebuilt.bytes,
        });
        self
    }

    /// Marks the import partial: it takes the artifacts `imported` and leaves out `skipped`
    /// (at most [`MAX_ARTIFACTS`] names each are kept).
    pub fn partial(mut self, imported: &[&str], skipped: &[&str]) -> Event {
        let names = |v: &[&str]| -> Vec<String> {
            v.iter()
                .take(MAX_ARTIFACTS)
                .map(|n| n.to_string())
                .collect()
        };
        self.partial = Some(Partial {
            imported: names(imported),
            skipped: names(skipped),
        });
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
