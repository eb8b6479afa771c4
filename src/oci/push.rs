//! Pushing an image from a [`BlobSource`] to a registry, byte-exact so every manifest keeps its
//! digest.
//!
//! Order: every blob (config, layer) first, then child manifests by digest, then the top
//! manifest by digest, and the tag **last**. A registry therefore never holds a tag pointing at
//! a manifest whose blobs or children are missing, whatever point a push fails at; running the
//! same push again completes it, because everything already present is skipped after a `HEAD`.
//!
//! Blobs: `HEAD` (present: skip), then a cross-repository mount from each of
//! [`PushOptions::mount_from`] (`201`: done; `202`: the upload session it opened is used), then
//! an upload: monolithic (`POST`, then `PUT ?digest=` with the whole body, held in memory) up to
//! [`PushOptions::monolithic_max`], chunked above it (`PATCH` with `Content-Range` per chunk of
//! [`PushOptions::chunk_size`], each to the `Location` the previous answer gave, verbatim with
//! Distribution's `_state` query, then `PUT ?digest=`), so memory stays bounded by one chunk.
//! The registry's `Docker-Content-Digest` must match. A blob upload broken by the network or a
//! 5xx is started again from a fresh session (after a `HEAD`, since it may have completed), at
//! most [`RetryPolicy::attempts`](super::client::RetryPolicy) times.

use std::io::Read;
use std::sync::Arc;

use reqwest::blocking::Body;

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;

use super::client::{header, redact, status_error, Registry, Replay};
use super::image::{self, BlobSource};
use super::model::Descriptor;
use crate::error::{Error, Result};
use crate::format::Digest;
use crate::progress::Progress;

/// Blobs up to this size are uploaded in one `PUT`.
pub const MONOLITHIC_MAX: u64 = 16 << 20;
/// Size of each `PATCH` of a chunked upload.
pub const CHUNK_SIZE: usize = 8 << 20;

const OCTET: &str = "application/octet-stream";

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Repositories on the same registry to try mounting blobs from before uploading them.
    pub mount_from: Vec<String>,
    /// Largest blob uploaded monolithically (held in memory); larger ones go in chunks.
    pub monolithic_max: u64,
    /// Bytes per `PATCH` of a chunked upload (memory use is about one chunk).
    pub chunk_size: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            mount_from: Vec::new(),
            monolithic_max: MONOLITHIC_MAX,
            chunk_size: CHUNK_SIZE,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PushReport {
    /// Base URL of the registry (`https://host`).
    pub registry: String,
    pub repo: String,
    pub tag: Option<String>,
    /// Digest of the top manifest.
    pub digest: Digest,
    /// Blobs the repository already had (`HEAD` 200).
    pub blobs_present: usize,
    /// Blobs mounted from another repository.
    pub blobs_mounted: usize,
    /// Blobs uploaded, and how many of those in chunks.
    pub blobs_uploaded: usize,
    pub chunked_uploads: usize,
    /// Bytes of blobs uploaded (not counting retried attempts).
    pub bytes_uploaded: u64,
    /// Upload attempts started again after a transient failure.
    pub upload_retries: usize,
    pub manifests_present: usize,
    pub manifests_pushed: usize,
    /// Whether the tag was written (false when it already pointed at `digest`, or no tag).
    pub tag_updated: bool,
}

/// The token scope for a push to `repo` mounting from `mount_from`.
pub fn push_scope(repo: &str, mount_from: &[String]) -> String {
    let mut scope = format!("repository:{repo}:pull,push");
    for from in mount_from.iter().filter(|f| *f != repo) {
        scope += &format!(" repository:{from}:pull");
    }
    scope
}

/// Pushes the image whose top manifest is `top` (an index or an image manifest; its bytes and
/// every blob it reaches are read from `src`) to `repo` on `reg`, then points `tag` at it (if
/// given; by digest only otherwise). Manifests are sent with their exact bytes and their
/// descriptor's media type as `Content-Type`. Errors name the registry URL, the repository, the
/// blob or manifest digest, and the HTTP status with the registry's `errors[]` code and message.
pub fn push_image(
    reg: &Registry,
    repo: &str,
    tag: Option<&str>,
    top: &Descriptor,
    src: &dyn BlobSource,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushReport> {
    let g = image::graph(src, top)?;
    let scope = push_scope(repo, &opts.mount_from);
    let mut report = PushReport {
        registry: reg.base().to_string(),
        repo: repo.to_string(),
        tag: tag.map(str::to_string),
        digest: top.digest,
        blobs_present: 0,
        blobs_mounted: 0,
        blobs_uploaded: 0,
        chunked_uploads: 0,
        bytes_uploaded: 0,
        upload_retries: 0,
        manifests_present: 0,
        manifests_pushed: 0,
        tag_updated: false,
    };
    let p = Pusher {
        reg,
        repo,
        scope: &scope,
        src,
        opts,
        progress,
    };
    progress.start(
        &format!("push {repo}"),
        g.blobs.iter().map(|d| d.size).sum(),
    );
    let result = (|| {
        for desc in &g.blobs {
            p.blob(desc, &mut report)?;
        }
        for (desc, bytes) in &g.manifests {
            let reference = desc.digest.to_string();
            if reg.manifest_digest_scoped(repo, &reference, &scope)? == Some(desc.digest) {
                report.manifests_present += 1;
            } else {
                p.put_manifest(&reference, desc, bytes)?;
                report.manifests_pushed += 1;
            }
        }
        if let Some(tag) = tag {
            if reg.manifest_digest_scoped(repo, tag, &scope)? != Some(top.digest) {
                let bytes = &g.manifests.last().expect("the top manifest").1;
                p.put_manifest(tag, top, bytes)?;
                report.tag_updated = true;
            }
        }
        Ok(())
    })();
    progress.finish();
    result.map(|()| report)
}

struct Pusher<'a> {
    reg: &'a Registry,
    repo: &'a str,
    scope: &'a str,
    src: &'a dyn BlobSource,
    opts: &'a PushOptions,
    progress: &'a dyn Progress,
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

/// Adds what was being pushed to an error's message.
fn context(e: Error, what: &str) -> Error {
    match e {
        Error::Http { url, msg } if !msg.starts_with(what) => Error::Http {
            url,
            msg: format!("{what}: {msg}"),
        },
        e => e,
    }
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

impl Pusher<'_> {
    fn what(&self, digest: &Digest) -> String {
        format!("pushing blob {digest}")
    }

    /// An unexpected answer to an upload request, classified.
    fn answer(&self, url: &str, digest: &Digest, resp: reqwest::blocking::Response) -> Fail {
        let status = resp.status();
        let e = status_error(url, &self.what(digest), resp);
        if status.is_server_error()
            || status == StatusCode::NOT_FOUND
            || status == StatusCode::RANGE_NOT_SATISFIABLE
            || status == StatusCode::TOO_MANY_REQUESTS
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
                Err(Fail::Retry(_)) if tries < policy.attempts => {
                    report.upload_retries += 1;
                    std::thread::sleep(policy.delay(tries - 1));
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
                Err(Fail::Retry(e)) | Err(Fail::Fatal(e)) => return Err(context(e, &what)),
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
            Fail::Fatal(Error::Other(format!(
                "{}: reading it from the source: {e}",
                self.what(d)
            )))
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
            // One byte more than expected, so the source's digest check at its end still runs.
            let mut reader = self.src.open(d).map_err(Fail::Fatal)?.take(desc.size + 1);
            let mut sent = 0u64;
            loop {
                let mut buf = vec![0u8; self.opts.chunk_size.max(1)];
                let n = read_full(&mut reader, &mut buf).map_err(source_err)?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                let end = sent + n as u64 - 1;
                let url = loc.clone();
                let chunk = Shared(Arc::new(buf));
                let resp = self.reg.request(
                    Replay::Once,
                    &url,
                    |c| {
                        c.patch(&url)
                            .header(CONTENT_TYPE, OCTET)
                            .header("Content-Range", format!("{sent}-{end}"))
                            .body(chunk.body())
                    },
                    self.scope,
                )?;
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
            self.check_size(d, desc.size, sent)?;
            Shared(Arc::new(Vec::new()))
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
        Err(Fail::Fatal(Error::Other(format!(
            "{}: the source has {got} bytes, the descriptor says {want}",
            self.what(d)
        ))))
    }

    /// Puts manifest `bytes` under `reference` (its digest or a tag).
    fn put_manifest(&self, reference: &str, desc: &Descriptor, bytes: &[u8]) -> Result<()> {
        let what = format!(
            "pushing manifest {}{}",
            desc.digest,
            if reference == desc.digest.to_string() {
                String::new()
            } else {
                format!(" as tag {reference}")
            }
        );
        let url = self
            .reg
            .url(&format!("/v2/{}/manifests/{reference}", self.repo));
        let resp = self
            .reg
            .request(
                Replay::Idempotent,
                &url,
                |c| {
                    c.put(&url)
                        .header(CONTENT_TYPE, &desc.media_type)
                        .body(bytes.to_vec())
                },
                self.scope,
            )
            .map_err(|e| context(e, &what))?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(&url, &what, resp));
        }
        let claimed = header(&resp, "docker-content-digest");
        if !claimed.is_empty() && claimed != desc.digest.to_string() {
            return Err(Error::Http {
                url,
                msg: format!("{what}: the registry stored it as {claimed}"),
            });
        }
        Ok(())
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
    fn body(&self) -> Body {
        Body::sized(std::io::Cursor::new(self.clone()), self.0.len() as u64)
    }
}

/// Fills `buf` as far as the reader allows; fewer bytes only at the end.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
