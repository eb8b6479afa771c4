//! One blob's way into a registry: `HEAD`, cross-repository mounts, then a monolithic or
//! chunked upload session (each `PATCH` to the `Location` the previous answer gave, then
//! `PUT ?digest=`), started again from a fresh session when the network or a transient answer
//! breaks it: which answers are transient and how long to wait come from the one
//! [`RetryPolicy`](crate::net::RetryPolicy); the restart itself is the upload protocol's.

use std::io::Read;
use std::sync::Arc;

use reqwest::blocking::Body;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;

use super::pipe::{feed, Pipe, PipeReader, PipeState};
use super::{context, put_manifest, PushOptions, PushReport};
use crate::error::{Error, Result};
use crate::format::Digest;
use crate::net::{RetryPolicy, Retrying};
use crate::oci::client::{header, redact, status_error, Registry, Replay};
use crate::oci::image::BlobSource;
use crate::oci::model::Descriptor;
use crate::progress::Progress;

const OCTET: &str = "application/octet-stream";

pub(super) struct Pusher<'a> {
    pub(super) reg: &'a Registry,
    pub(super) repo: &'a str,
    pub(super) scope: &'a str,
    pub(super) src: &'a dyn BlobSource,
    pub(super) opts: &'a PushOptions,
    pub(super) progress: &'a dyn Progress,
}

/// Why one upload attempt failed: worth starting again (network, 5xx, upload session lost), or
/// not (the source's bytes are wrong, the registry refuses the content).
enum Fail {
    Retry(Error),
    Fatal(Error),
}

impl From<Error> for Fail {
    /// A request that failed even after [`Registry`]'s own retries: the network.
    fn from(e: Error) -> Fail {
        match e {
            e @ Error::Http { .. } => Fail::Retry(e),
            e => Fail::Fatal(e),
        }
    }
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

impl Pusher<'_> {
    /// Pushes `blobs`, up to `parallel` at once; the first failure stops the others.
    pub(super) fn blobs(&self, blobs: &[Descriptor], report: &mut PushReport) -> Result<()> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Mutex;
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let template = report.zeroed();
        let shared = Mutex::new((report.zeroed(), None));
        let workers = self.opts.parallel.clamp(1, blobs.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= blobs.len() || failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let mut mine = template.zeroed();
                    let r = self.blob(&blobs[i], &mut mine);
                    let mut g = shared.lock().expect("not poisoned");
                    g.0.absorb(&mine);
                    if let Err(e) = r {
                        failed.store(true, Ordering::SeqCst);
                        g.1.get_or_insert(e);
                    }
                });
            }
        });
        let (merged, err) = shared.into_inner().expect("not poisoned");
        report.absorb(&merged);
        err.map_or(Ok(()), Err)
    }

    fn what(&self, digest: &Digest) -> String {
        format!("pushing blob {digest}")
    }

    /// An unexpected answer to an upload request, classified: transient for the retry policy
    /// (as a GET would be), any other 5xx, or the upload session lost (404, 416) is worth a
    /// fresh session.
    fn answer(&self, url: &str, digest: &Digest, resp: reqwest::blocking::Response) -> Fail {
        let status = resp.status();
        let e = status_error(url, &self.what(digest), resp);
        if RetryPolicy::transient_status(status.as_u16(), Replay::Safe)
            || status.is_server_error()
            || status == StatusCode::NOT_FOUND
            || status == StatusCode::RANGE_NOT_SATISFIABLE
        {
            Fail::Retry(e)
        } else {
            Fail::Fatal(e)
        }
    }

    fn blob(&self, desc: &Descriptor, report: &mut PushReport) -> Result<()> {
        let d = &desc.digest;
        let what = self.what(d);
        if self
            .reg
            .blob_exists_scoped(self.repo, d, self.scope)
            .map_err(|e| context(e, &what))?
        {
            report.blobs_present += 1;
            self.progress.inc(desc.size);
            return Ok(());
        }
        let mut session = None;
        for from in self.opts.mount_from.iter().filter(|f| *f != self.repo) {
            let url = self.reg.url(&format!(
                "/v2/{}/blobs/uploads/?mount={d}&from={from}",
                self.repo
            ));
            let resp = self
                .reg
                .request(
                    Replay::Idempotent,
                    &url,
                    |c| c.post(&url).header(CONTENT_LENGTH, 0),
                    self.scope,
                )
                .map_err(|e| context(e, &what))?;
            match resp.status() {
                StatusCode::CREATED => {
                    self.check_digest(&url, d, &resp)?;
                    report.blobs_mounted += 1;
                    self.progress.inc(desc.size);
                    return Ok(());
                }
                StatusCode::ACCEPTED => {
                    // Not mountable from there; the registry opened an upload session instead.
                    let loc = self.location(&url, d, &resp)?;
                    if let Some(old) = session.replace(loc) {
                        self.cancel(&old);
                    }
                }
                _ => {
                    return Err(status_error(
                        &url,
                        &format!("{what} (mount from {from})"),
                        resp,
                    ))
                }
            }
        }
        let policy = self.reg.retry_policy();
        let mut reported = 0u64;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.upload(desc, session.take(), &mut reported) {
                Ok(chunked) => {
                    report.blobs_uploaded += 1;
                    report.chunked_uploads += usize::from(chunked);
                    report.bytes_uploaded += desc.size;
                    return Ok(());
                }
                Err(Fail::Retry(e)) if tries < policy.attempts => {
                    report.upload_retries += 1;
                    let why = e.to_string();
                    let url = self.reg.url(&format!("/v2/{}/blobs/{d}", self.repo));
                    let event = Retrying::request(&url, tries + 1, policy.attempts, &why);
                    policy
                        .pause(tries - 1, None, event)
                        .map_err(|e| context(e, &what))?;
                    // The upload may have completed with only the answer lost.
                    if self
                        .reg
                        .blob_exists_scoped(self.repo, d, self.scope)
                        .map_err(|e| context(e, &what))?
                    {
                        report.blobs_uploaded += 1;
                        report.bytes_uploaded += desc.size;
                        self.progress.inc(desc.size.saturating_sub(reported));
                        return Ok(());
                    }
                }
                Err(Fail::Retry(e)) => {
                    let e = match e {
                        Error::Http { kind, url, msg } if tries > 1 => Error::Http {
                            kind,
                            url,
                            msg: format!("{msg} (upload started {tries} times)"),
                        },
                        e => e,
                    };
                    return Err(context(e, &what));
                }
                Err(Fail::Fatal(e)) => return Err(context(e, &what)),
            }
        }
    }

    fn location(
        &self,
        url: &str,
        digest: &Digest,
        resp: &reqwest::blocking::Response,
    ) -> Result<String> {
        let loc = header(resp, "location");
        if loc.is_empty() {
            return Err(Error::Http {
                kind: crate::error::NetKind::Network,
                url: redact(url).to_string(),
                msg: format!(
                    "{}: registry answered {} without a Location",
                    self.what(digest),
                    resp.status()
                ),
            });
        }
        self.reg.resolve(loc)
    }

    fn check_digest(
        &self,
        url: &str,
        digest: &Digest,
        resp: &reqwest::blocking::Response,
    ) -> Result<()> {
        let claimed = header(resp, "docker-content-digest");
        if claimed.is_empty() || claimed == digest.to_string() {
            return Ok(());
        }
        Err(Error::Http {
            kind: crate::error::NetKind::Network,
            url: redact(url).to_string(),
            msg: format!(
                "{}: the registry stored it as {claimed} (Docker-Content-Digest)",
                self.what(digest)
            ),
        })
    }

    /// Best effort: abandons an upload session.
    fn cancel(&self, location: &str) {
        let _ = self
            .reg
            .request(Replay::Once, location, |c| c.delete(location), self.scope);
    }

    /// Reports progress up to `pos` bytes of the current blob, never twice for the same bytes.
    fn advance(&self, reported: &mut u64, pos: u64) {
        if pos > *reported {
            self.progress.inc(pos - *reported);
            *reported = pos;
        }
    }

    /// One upload attempt; returns whether it was chunked.
    fn upload(
        &self,
        desc: &Descriptor,
        session: Option<String>,
        reported: &mut u64,
    ) -> Result<bool, Fail> {
        let d = &desc.digest;
        let mut loc = match session {
            Some(l) => l,
            None => {
                let url = self.reg.url(&format!("/v2/{}/blobs/uploads/", self.repo));
                let resp = self.reg.request(
                    Replay::Idempotent,
                    &url,
                    |c| c.post(&url).header(CONTENT_LENGTH, 0),
                    self.scope,
                )?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(self.answer(&url, d, resp));
                }
                self.location(&url, d, &resp)?
            }
        };
        let chunked = desc.size > self.opts.monolithic_max;
        let source_err = |e: std::io::Error| {
            Fail::Fatal(Error::blob_read(
                format_args!("{}: reading it from the source", self.what(d)),
                e,
            ))
        };
        let body = if !chunked {
            let mut body = Vec::with_capacity(desc.size as usize);
            self.src
                .open(d)
                .map_err(Fail::Fatal)?
                .take(desc.size + 1)
                .read_to_end(&mut body)
                .map_err(source_err)?;
            self.check_size(d, desc.size, body.len() as u64)?;
            Shared(Arc::new(body))
        } else {
            std::thread::scope(|scope| -> Result<Shared, Fail> {
                let (pipe, rx) = Pipe::new();
                let src = self.src;
                let size = desc.size;
                let feeder = scope.spawn(move || feed(src, d, size, pipe));
                let rx = Arc::new(std::sync::Mutex::new(PipeState {
                    rx,
                    piece: Vec::new(),
                    pos: 0,
                }));
                let mut sent = 0u64;
                let step = self.opts.chunk_size.max(1) as u64;
                while sent < desc.size {
                    let n = step.min(desc.size - sent);
                    let end = sent + n - 1;
                    let url = loc.clone();
                    let body = PipeReader {
                        state: rx.clone(),
                        left: n,
                    };
                    let once = std::sync::Mutex::new(Some(body));
                    let resp = self.reg.request(
                        Replay::Once,
                        &url,
                        |c| {
                            let body = once.lock().expect("not poisoned").take();
                            let rb = c
                                .patch(&url)
                                .header(CONTENT_TYPE, OCTET)
                                .header("Content-Range", format!("{sent}-{end}"));
                            match body {
                                Some(b) => rb.body(Body::sized(b, n)),
                                None => rb,
                            }
                        },
                        self.scope,
                    );
                    drop(once);
                    let resp = match resp {
                        Ok(r) => r,
                        Err(e) => {
                            // A source failure (wrong bytes) explains a broken request best.
                            drop(rx);
                            return Err(source_failure(feeder.join(), d).unwrap_or(Fail::from(e)));
                        }
                    };
                    if resp.status() != StatusCode::ACCEPTED {
                        return Err(self.answer(&url, d, resp));
                    }
                    // The registry tells what it holds: it must be everything sent so far.
                    let range = header(&resp, "range").to_string();
                    let held = range
                        .rsplit_once('-')
                        .and_then(|(_, e)| e.trim().parse::<u64>().ok());
                    if !range.is_empty() && held != Some(end) {
                        return Err(Fail::Retry(Error::Http {
 kind: crate::error::NetKind::Network,
                            url: redact(&url).to_string(),
                            msg: format!(
                                "{}: after sending bytes {sent}-{end} the registry holds Range {range:?}",
                                self.what(d)
                            ),
                        }));
                    }
                    loc = self.location(&url, d, &resp)?;
                    sent = end + 1;
                    self.advance(reported, sent);
                }
                // Every byte went out; the source must also end there and match its digest.
                drop(rx);
                if let Some(f) = source_failure(feeder.join(), d) {
                    return Err(f);
                }
                Ok(Shared(Arc::new(Vec::new())))
            })?
        };
        let url = with_digest(&loc, d);
        let len = body.0.len() as u64;
        let resp = self.reg.request(
            Replay::Idempotent,
            &url,
            |c| c.put(&url).header(CONTENT_TYPE, OCTET).body(body.body()),
            self.scope,
        )?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.answer(&url, d, resp));
        }
        self.check_digest(&url, d, &resp).map_err(Fail::Fatal)?;
        if !chunked {
            self.advance(reported, len);
        }
        Ok(chunked)
    }

    fn check_size(&self, d: &Digest, want: u64, got: u64) -> Result<(), Fail> {
        if want == got {
            return Ok(());
        }
        Err(Fail::Fatal(Error::SizeMismatch {
            what: self.what(d),
            digest: *d,
            declared: want,
            detail: format!("has {got} bytes in the source"),
        }))
    }

    /// Puts manifest `bytes` under `reference` (its digest or a tag).
    pub(super) fn put_manifest(
        &self,
        reference: &str,
        desc: &Descriptor,
        bytes: &[u8],
    ) -> Result<()> {
        put_manifest(self.reg, self.repo, self.scope, reference, desc, bytes)
    }
}

/// Bytes shared between the tries of one request, so a retry does not copy them.
#[derive(Clone)]
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Shared {
    /// The bytes as one buffer (reqwest then writes them at once, not 8 KiB at a time).
    fn body(&self) -> Body {
        Body::from(self.0.as_ref().clone())
    }
}

/// A source failure reported by the feeding thread, as the upload's error.
fn source_failure(joined: std::thread::Result<std::io::Result<()>>, d: &Digest) -> Option<Fail> {
    match joined {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(Fail::Fatal(Error::blob_read(
            format_args!("pushing blob {d}: reading it from the source"),
            e,
        ))),
        Err(_) => Some(Fail::Fatal(Error::Other(format!(
            "pushing blob {d}: the reading thread panicked"
        )))),
    }
}
