//! THE resumable download: a [`Read`] over a GET that, when the body breaks off, asks again
//! for the rest (`Range: bytes=N-`, with `If-Range` and the first answer's strong `ETag` or
//! `Last-Modified` when it gave one), checks the `206`'s `Content-Range` (start N, the same
//! total), never yields more than the size it expects, and gives up after
//! [`RetryPolicy::attempts`] tries in a row without progress. Each body read follows the
//! transfer policy ([`Transfer`]: too slow is final, as is a stop request).
//!
//! A server that answers a resumed request with `200` (the whole file again) is read from the
//! start and the first N bytes discarded only when that is safe: the answer carries the same
//! strong validator as the first one, or the caller checks a digest over every byte it gets
//! ([`Ranged::pinned`]: registry blobs, Hub files, pinned URLs), so a changed file can only
//! fail that check, never be packed as a mix of two versions. Otherwise (an unpinned URL
//! without a validator) the download fails, naming the URL. A validator that changed is a file
//! that changed: always refused.

use std::io::{self, Read};

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::StatusCode;

use super::{error_chain, is_final, Guarded, RetryPolicy, Retrying, Transfer};
use crate::error::{Error, NetKind, Result};

/// What a reconnection asks for: the rest of the body from `offset`, if the file is still the
/// one `if_range` names.
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    pub offset: u64,
    pub if_range: Option<&'a str>,
}

impl Resume<'_> {
    /// `rb` with `Range` (and `If-Range`) set for a resumed request; unchanged for the first.
    pub fn apply(&self, rb: RequestBuilder) -> RequestBuilder {
        if self.offset == 0 {
            return rb;
        }
        let rb = rb.header(reqwest::header::RANGE, format!("bytes={}-", self.offset));
        match self.if_range {
            Some(v) => rb.header(reqwest::header::IF_RANGE, v),
            None => rb,
        }
    }
}

/// Makes one GET (through [`RetryPolicy::send`]) with [`Resume::apply`]'d headers; an answer
/// that is not a success must come back as the error describing it.
pub type Connect<'a> = Box<dyn FnMut(&Resume<'_>) -> Result<Response> + Send + 'a>;

/// How a [`RangedReader`] reads.
#[derive(Debug, Clone, Copy)]
pub struct Ranged {
    pub policy: RetryPolicy,
    pub transfer: Transfer,
    /// The exact size expected (a descriptor's, a tree listing's): a smaller
    /// `Content-Length` fails at once, and no byte beyond it is yielded (one more is an
    /// error). `None`: the first answer's
    /// length (if any) is the bound, and the caller bounds the rest.
    pub expected: Option<u64>,
    /// The caller checks a digest over every byte it reads (see the module text).
    pub pinned: bool,
}

/// A download that survives broken connections; see the module documentation.
pub struct RangedReader<'a> {
    url: String,
    connect: Connect<'a>,
    how: Ranged,
    /// The size of the whole body, once known.
    total: Option<u64>,
    first_length: Option<u64>,
    final_url: String,
    validator: Option<String>,
    offset: u64,
    resp: Option<Guarded<Response>>,
    /// Tries in a row without progress.
    failures: u32,
    failed_at: u64,
    resumes: u32,
}

/// The strong validator of an answer: an `ETag` that is not weak, else `Last-Modified`.
fn validator(resp: &Response) -> Option<String> {
    let h = |n| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    h(reqwest::header::ETAG)
        .filter(|e| !e.starts_with("W/"))
        .or_else(|| h(reqwest::header::LAST_MODIFIED))
}

/// `bytes A-B/T` → (A, B, T or None for `*`).
fn content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let (range, total) = v.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

impl<'a> RangedReader<'a> {
    /// Makes the first request now, so that a missing file or refused access fails here.
    pub fn open(url: &str, how: Ranged, connect: Connect<'a>) -> Result<RangedReader<'a>> {
        let mut r = RangedReader {
            url: url.to_string(),
            connect,
            how: Ranged {
                policy: how.policy.normalized(),
                ..how
            },
            total: how.expected,
            first_length: None,
            final_url: url.to_string(),
            validator: None,
            offset: 0,
            resp: None,
            failures: 0,
            failed_at: 0,
            resumes: 0,
        };
        // At offset 0 nothing is skipped: an answer always comes back.
        if let Some(resp) = r.connect()? {
            r.resp = Some(r.how.transfer.guard(resp));
        }
        Ok(r)
    }

    /// The first answer's `Content-Length`.
    pub fn content_length(&self) -> Option<u64> {
        self.first_length
    }

    /// The URL the first answer came from (after redirects).
    pub fn final_url(&self) -> &str {
        &self.final_url
    }

    /// How many times the body was resumed after breaking off.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// Bytes delivered so far.
    pub fn position(&self) -> u64 {
        self.offset
    }

    fn error(&self, msg: String) -> Error {
        Error::Http {
            kind: NetKind::Network,
            url: super::redact(&self.url).to_string(),
            msg,
        }
    }

    /// One request at the current offset. `Ok(None)`: the answer broke off while the bytes
    /// already delivered were being skipped (worth another try).
    fn connect(&mut self) -> Result<Option<Response>> {
        let offset = self.offset;
        let if_range = self.validator.clone();
        let resume = Resume {
            offset,
            if_range: if_range.as_deref(),
        };
        let mut resp = (self.connect)(&resume)?;
        let status = resp.status();
        let announced = resp.content_length();
        if offset == 0 {
            if status != StatusCode::OK {
                return Err(self.error(format!("server answered {status} to a download")));
            }
            self.validator = validator(&resp);
            self.first_length = announced;
            self.final_url = resp.url().to_string();
            // Fewer bytes than expected cannot be the file. More are read up to the expected
            // size only: the caller's digest check then names the content at fault.
            if let (Some(e), Some(l)) = (self.how.expected, announced) {
                if l < e {
                    return Err(
                        self.error(format!("the server announces {l} bytes, {e} were expected"))
                    );
                }
            }
            self.total = self.total.or(announced);
            return Ok(Some(resp));
        }
        let of = match self.total {
            Some(t) => format!(" of {t}"),
            None => String::new(),
        };
        match status {
            StatusCode::PARTIAL_CONTENT => {
                let cr = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let Some((start, _end, total)) = content_range(&cr) else {
                    return Err(self.error(format!(
                        "asked to resume at byte {offset}, the server answered 206 with Content-Range {cr:?}"
                    )));
                };
                if start != offset {
                    return Err(self.error(format!(
                        "asked to resume at byte {offset}, the server sent Content-Range {cr:?}"
                    )));
                }
                match (self.total, total) {
                    (Some(t), Some(got)) if t != got => {
                        return Err(self.error(format!(
                            "resumed at byte {offset}: Content-Range {cr:?} gives a total of {got} bytes, the download has {t}"
                        )))
                    }
                    (None, Some(got)) => self.total = Some(got),
                    _ => {}
                }
                Ok(Some(resp))
            }
            StatusCode::OK => {
                let now = validator(&resp);
                if let (Some(was), Some(is)) = (&self.validator, &now) {
                    if was != is {
                        return Err(self.error(format!(
                            "resuming at byte {offset}{of}: the server sent the whole file again with another validator ({was} then {is}): it changed during the download"
                        )));
                    }
                }
                let same = now.is_some() && now == self.validator;
                if !same && !self.how.pinned {
                    return Err(self.error(format!(
                        "the download broke off at byte {offset}{of} and the server cannot resume it (it answered 200 to a Range request) nor shows that the file is unchanged (no ETag or Last-Modified): reading it again from the start could mix two versions; pin the URL (#sha256=) to allow that"
                    )));
                }
                if let (Some(t), Some(l)) = (self.total, announced) {
                    if t != l {
                        return Err(self.error(format!(
                            "resuming at byte {offset}{of}: the server sent the whole file again, with {l} bytes"
                        )));
                    }
                }
                // Read again from the start, dropping what was delivered.
                let skipped = io::copy(&mut (&mut resp).take(offset), &mut io::sink());
                if matches!(skipped, Ok(n) if n == offset) {
                    Ok(Some(resp))
                } else {
                    Ok(None)
                }
            }
            s => Err(self.error(format!(
                "asked to resume at byte {offset}, the server answered {s}"
            ))),
        }
    }

    /// Counts a failed try and waits before the next; the error once tries run out.
    fn failed(&mut self, why: String) -> io::Result<()> {
        self.resp = None;
        if self.offset > self.failed_at {
            self.failures = 0;
        }
        self.failed_at = self.offset;
        self.failures += 1;
        let policy = self.how.policy;
        let at = match self.total {
            Some(t) => format!("byte {} of {t}", self.offset),
            None => format!("byte {}", self.offset),
        };
        if self.failures >= policy.attempts {
            let tries = self.failures;
            return Err(io::Error::other(self.error(format!(
                "download broke off at {at}{} ({} resumed before): {why}",
                super::tries_note(tries),
                self.resumes
            ))));
        }
        let event = Retrying {
            at_byte: Some((self.offset, self.total)),
            ..Retrying::request(&self.url, self.failures + 1, policy.attempts, &why)
        };
        policy
            .pause(self.failures - 1, None, event)
            .map_err(|e| match e {
                Error::Interrupted { signal } => crate::interrupt::io_error(signal),
                e => io::Error::other(e),
            })?;
        self.resumes += 1;
        Ok(())
    }
}

impl Read for RangedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.resp.is_none() {
                if self.total.is_some_and(|t| self.offset >= t) {
                    return Ok(0);
                }
                match self.connect() {
                    Ok(Some(r)) => self.resp = Some(self.how.transfer.guard(r)),
                    Ok(None) => {
                        self.failed("the answer broke off while restarting".into())?;
                        continue;
                    }
                    Err(Error::Interrupted { signal }) => {
                        return Err(crate::interrupt::io_error(signal))
                    }
                    Err(e) => return Err(io::Error::other(e)),
                }
            }
            let resp = self.resp.as_mut().expect("connected above");
            // Never past the expected end: the bytes up to it are the caller's to check.
            let room = match self.total {
                Some(t) => (t.saturating_sub(self.offset).max(1)).min(buf.len() as u64) as usize,
                None => buf.len(),
            };
            match resp.read(&mut buf[..room]) {
                Ok(0) => match self.total {
                    Some(t) if self.offset < t => {
                        let why = format!("connection closed at byte {} of {t}", self.offset);
                        self.failed(why)?;
                    }
                    _ => return Ok(0),
                },
                Ok(n) => {
                    self.offset += n as u64;
                    if let Some(t) = self.total {
                        if self.offset > t {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                self.error(format!("more than the {t} bytes expected")),
                            ));
                        }
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if crate::interrupt::is_stop(&e) => return Err(e),
                // Too slow is final: resuming would let a dripping server go on for ever.
                Err(e) if is_final(&e) => {
                    return Err(io::Error::new(e.kind(), self.error(error_chain(&e))))
                }
                Err(e) => self.failed(error_chain(&e))?,
            }
        }
    }
}

/// The library error inside an I/O error from a [`RangedReader`], or one naming `url`.
pub fn unwrap_io(e: io::Error, url: &str) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return *e
            .into_inner()
            .expect("checked above")
            .downcast::<Error>()
            .expect("checked above");
    }
    Error::Http {
        kind: NetKind::Network,
        url: super::redact(url).to_string(),
        msg: error_chain(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(content_range("bytes 5-9/10"), Some((5, 9, Some(10))));
        assert_eq!(content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(content_range("bytes */10"), None);
        assert_eq!(content_range("5-9/10"), None);
    }

    #[test]
    fn readers_can_move_to_other_threads() {
        fn send<T: Send>() {}
        send::<RangedReader<'static>>();
    }
}
