//! The log file: opened once without following links, appended to under a lock, its tail read
//! backwards to find the record to chain from (and the one line a crash may have torn).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::line::{is_torn_record, parse_line, record_head, sha256_hex};
use super::verify::{verify_reader, Anchor, BadKind};
use super::{Event, Outcome, Record, GENESIS, MAX_LINE, MAX_TORN, RECORD_VERSION};
use crate::error::{Error, Result};
use crate::fsutil;

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
            v: RECORD_VERSION,
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
            v: RECORD_VERSION,
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
    if let Some(r) = parse_line(last) {
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
        Some(line) => match parse_line(line) {
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
