//! Pushing an image from a [`BlobSource`] to a registry, byte-exact so every manifest keeps its
//! digest.
//!
//! Order: every blob (config, layer) first, then child manifests by digest, then the top
//! manifest by digest, and the tag **last**. A registry therefore never holds a tag pointing at
//! a manifest whose blobs or children are missing, whatever point a push fails at; running the
//! same push again completes it, because everything already present is skipped after a `HEAD`.
//!
//! Blobs (up to [`PushOptions::parallel`] at once): `HEAD` (present: skip), then a
//! cross-repository mount from each of [`PushOptions::mount_from`] (`201`: done; `202`: the
//! upload session it opened is used), then an upload: monolithic (`POST`, then `PUT ?digest=`
//! with the whole body, held in memory) up to [`PushOptions::monolithic_max`], chunked above it
//! (`PATCH` with `Content-Range` per chunk of [`PushOptions::chunk_size`], each to the `Location`
//! the previous answer gave, verbatim with Distribution's `_state` query, then `PUT ?digest=`).
//! A chunk's bytes stream from the source through a small bounded pipe (a reading thread, four
//! 1 MiB buffers), so memory stays bounded whatever the chunk and blob sizes.
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
/// Size of each `PATCH` of a chunked upload (streamed: memory does not grow with it).
pub const CHUNK_SIZE: usize = 256 << 20;
/// Blobs uploaded at once.
pub const PARALLEL: usize = 3;
/// Bytes per buffer of the pipe feeding a chunked upload, and buffers in flight.
const PIPE_BUF: usize = 1 << 20;
const PIPE_DEPTH: usize = 4;

const OCTET: &str = "application/octet-stream";

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Repositories on the same registry to try mounting blobs from before uploading them.
    pub mount_from: Vec<String>,
    /// Largest blob uploaded monolithically (held in memory); larger ones go in chunks.
    pub monolithic_max: u64,
    /// Bytes per `PATCH` of a chunked upload.
    pub chunk_size: usize,
    /// Blobs uploaded at once (at least 1).
    pub parallel: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            mount_from: Vec::new(),
            monolithic_max: MONOLITHIC_MAX,
            chunk_size: CHUNK_SIZE,
            parallel: PARALLEL,
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

impl PushReport {
    /// A push of `digest` to `repo` (tag `tag`) at `registry`, nothing counted yet.
    fn new(registry: &str, repo: &str, tag: Option<&str>, digest: Digest) -> PushReport {
        PushReport {
            registry: registry.to_string(),
            repo: repo.to_string(),
            tag: tag.map(str::to_string),
            digest,
            blobs_present: 0,
            blobs_mounted: 0,
            blobs_uploaded: 0,
            chunked_uploads: 0,
            bytes_uploaded: 0,
            upload_retries: 0,
            manifests_present: 0,
            manifests_pushed: 0,
            tag_updated: false,
        }
    }

    /// The same push with every counter at zero.
    fn zeroed(&self) -> PushReport {
        PushReport::new(&self.registry, &self.repo, self.tag.as_deref(), self.digest)
    }

    /// Adds another report's blob counters to this one's.
    fn absorb(&mut self, o: &PushReport) {
        self.blobs_present += o.blobs_present;
        self.blobs_mounted += o.blobs_mounted;
        self.blobs_uploaded += o.blobs_uploaded;
        self.chunked_uploads += o.chunked_uploads;
        self.bytes_uploaded += o.bytes_uploaded;
        self.upload_retries += o.upload_retries;
    }
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
    let mut report = PushReport::new(reg.base(), repo, tag, top.digest);
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
        p.blobs(&g.blobs, &mut report)?;
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

/// Checks before anything is staged that `repo` on `reg` can be pushed to: the registry answers,
/// the credentials work, and it opens an upload session for the push scope (then abandoned).
pub fn probe(reg: &Registry, repo: &str) -> Result<()> {
    let scope = push_scope(repo, &[]);
    let what = format!("checking that {repo} can be pushed to");
    let url = reg.url(&format!("/v2/{repo}/blobs/uploads/"));
    let resp = reg
        .request(
            Replay::Once,
            &url,
            |c| c.post(&url).header(CONTENT_LENGTH, "0"),
            &scope,
        )
        .map_err(|e| context(e, &what))?;
    if resp.status() != StatusCode::ACCEPTED {
        return Err(status_error(&url, &what, resp));
    }
    let loc = header(&resp, "location");
    if !loc.is_empty() {
        if let Ok(loc) = reg.resolve(loc) {
            let _ = reg.request(Replay::Once, &loc, |c| c.delete(&loc), &scope);
        }
    }
    Ok(())
}

/// What a tag named before [`tag`] moved it.
pub enum Prior {
    /// It already named the manifest: nothing was written.
    Same,
    /// It did not exist.
    New,
    /// It named this manifest (exact bytes), which a rollback puts back.
    Was(Box<Descriptor>, Vec<u8>),
}

/// Points `tag` of `repo` at the manifest `top` (`bytes` its exact bytes; every blob and
/// manifest below it already pushed), and says what the tag named before.
pub fn tag(reg: &Registry, repo: &str, tag: &str, top: &Descriptor, bytes: &[u8]) -> Result<Prior> {
    let scope = push_scope(repo, &[]);
    let previous = reg.manifest_digest_scoped(repo, tag, &scope)?;
    if previous == Some(top.digest) {
        return Ok(Prior::Same);
    }
    let old = match previous {
        Some(d) => {
            let m = reg.manifest(repo, &d.to_string())?;
            Prior::Was(
                Box::new(Descriptor {
                    media_type: m.media_type,
                    digest: m.digest,
                    size: m.bytes.len() as u64,
                    platform: None,
                    artifact_type: None,
                    annotations: Default::default(),
                }),
                m.bytes,
            )
        }
        None => Prior::New,
    };
    put_manifest(reg, repo, &scope, tag, top, bytes)?;
    Ok(old)
}

/// Puts manifest `bytes` under `reference` (its digest or a tag) of `repo`.
pub fn put_manifest(
    reg: &Registry,
    repo: &str,
    scope: &str,
    reference: &str,
    desc: &Descriptor,
    bytes: &[u8],
) -> Result<()> {
    let what = format!(
        "pushing manifest {}{}",
        desc.digest,
        if reference == desc.digest.to_string() {
            String::new()
        } else {
            format!(" as tag {reference}")
        }
    );
    let url = reg.url(&format!("/v2/{repo}/manifests/{reference}"));
    let resp = reg
        .request(
            Replay::Idempotent,
            &url,
            |c| {
                c.put(&url)
                    .header(CONTENT_TYPE, &desc.media_type)
                    .body(bytes.to_vec())
            },
            scope,
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
    /// Pushes `blobs`, up to `parallel` at once; the first failure stops the others.
    fn blobs(&self, blobs: &[Descriptor], report: &mut PushReport) -> Result<()> {
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
    fn put_manifest(&self, reference: &str, desc: &Descriptor, bytes: &[u8]) -> Result<()> {
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

type Piece = std::io::Result<Vec<u8>>;

/// The sending end of the bounded pipe feeding a chunked upload.
struct Pipe(std::sync::mpsc::SyncSender<Piece>);

impl Pipe {
    fn new() -> (Pipe, std::sync::mpsc::Receiver<Piece>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(PIPE_DEPTH);
        (Pipe(tx), rx)
    }
}

/// Reads blob `d` (`size` bytes) from the source into the pipe, then checks that the source ends
/// there (its reader verifies the digest at its end). Returns what went wrong, if anything; the
/// upload stops when the pipe's reader goes away.
fn feed(src: &dyn BlobSource, d: &Digest, size: u64, pipe: Pipe) -> std::io::Result<()> {
    let mut r = src
        .open(d)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut left = size;
    let fail = |pipe: &Pipe, e: std::io::Error| {
        let _ = pipe
            .0
            .send(Err(std::io::Error::new(e.kind(), e.to_string())));
        Err(e)
    };
    while left > 0 {
        if let Some(signal) = crate::interrupt::requested() {
            let why = format!("interrupted by {}", crate::interrupt::signal_name(signal));
            return fail(&pipe, std::io::Error::other(why));
        }
        let mut buf = vec![0u8; PIPE_BUF.min(left as usize)];
        match read_full(&mut r, &mut buf) {
            Ok(n) if n == buf.len() => {}
            Ok(n) => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the source has {} bytes, the descriptor says {size}",
                        size - left + n as u64
                    ),
                );
                return fail(&pipe, e);
            }
            Err(e) => return fail(&pipe, e),
        }
        left -= buf.len() as u64;
        if pipe.0.send(Ok(buf)).is_err() {
            return Ok(()); // the upload stopped; it reports why
        }
    }
    let mut one = [0u8; 1];
    match read_full(&mut r, &mut one) {
        Ok(0) => Ok(()),
        Ok(_) => fail(
            &pipe,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the source has more than the {size} bytes the descriptor says"),
            ),
        ),
        Err(e) => fail(&pipe, e),
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

/// The receiving end of the pipe, shared by the chunks of one upload: the part of the last
/// piece a chunk did not take stays for the next one.
struct PipeState {
    rx: std::sync::mpsc::Receiver<Piece>,
    piece: Vec<u8>,
    pos: usize,
}

/// One chunk's body: the next `left` bytes of the pipe.
struct PipeReader {
    state: Arc<std::sync::Mutex<PipeState>>,
    left: u64,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let mut st = self.state.lock().expect("not poisoned");
        if st.pos == st.piece.len() {
            match st.rx.recv() {
                Ok(Ok(piece)) => {
                    st.piece = piece;
                    st.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the source ended early",
                    ))
                }
            }
        }
        let n = buf
            .len()
            .min(st.piece.len() - st.pos)
            .min(self.left.min(usize::MAX as u64) as usize);
        let pos = st.pos;
        buf[..n].copy_from_slice(&st.piece[pos..pos + n]);
        st.pos += n;
        self.left -= n as u64;
        Ok(n)
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
