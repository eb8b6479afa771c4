//! A minimal OCI distribution client: manifests (with the full `Accept` list that Docker
//! Distribution 2.8 needs) and blobs (streamed, never held in memory), each checked against its
//! digest; anonymous-token, Bearer and Basic auth from `WWW-Authenticate` challenges, with one
//! token cached per scope. Transient failures (connect errors, timeouts, 429, 502/503/504, and
//! 500 on GET/HEAD) are retried with bounded exponential backoff ([`RetryPolicy`]); blob
//! downloads resume with `Range` after a broken connection ([`BlobReader`]). reqwest drops
//! `Authorization` when a redirect leaves the registry's origin. The push side lives in
//! [`super::push`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;

use super::challenge;
use super::model::Descriptor;
use crate::error::{Error, Result};
use crate::format::json;
use crate::format::Digest;
use crate::fsutil::{self, CopyError};
use crate::net;
use crate::progress::Silent;

/// Every manifest type airlock accepts, in the order registries should prefer.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

pub use crate::blob::MAX_MANIFEST;

pub use super::auth::Credentials;

/// A manifest as fetched: exact bytes, media type, and digest (verified).
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// How to reach registries: TLS roots, which hosts may use plain HTTP, credentials.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Explicit credentials (`--creds`); without them the auth files are consulted.
    pub creds: Option<Credentials>,
    /// Extra CA certificates (PEM files) trusted besides the system roots.
    pub ca_certs: Vec<std::path::PathBuf>,
    /// Hosts (`name[:port]`) that may be reached over plain HTTP. Loopback hosts always may.
    pub insecure: Vec<String>,
    /// The speed limit of every blob download ([`net::Transfer`]).
    pub transfer: net::Transfer,
}

impl ConnectOptions {
    /// Whether `host` may use plain HTTP: listed as insecure, or a loopback address.
    pub fn allows_plain_http(&self, host: &str) -> bool {
        if self.insecure.iter().any(|h| h == host) {
            return true;
        }
        let name = match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        name == "localhost"
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// How often and how patiently transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per request, the first included (at least 1).
    pub attempts: u32,
    /// Delay before the first retry, doubled for each further one up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` (in seconds) up to this long is honoured instead of the backoff delay.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 4 tries, waiting 0.5 s, 1 s, 2 s (at most 4 s); `Retry-After` honoured up to 10 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based).
    pub fn delay(&self, retry: u32) -> Duration {
        self.base_delay
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_delay)
    }
}

/// Whether a request may be repeated after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// GET/HEAD: repeated after any transport error, timeout, 429, 500, 502, 503, 504.
    Safe,
    /// PUT and upload-starting POSTs (repeating one at worst opens a spare upload session or
    /// consumes a finished one, which the push notices): repeated after any transport error
    /// and on 429/502/503/504, not on 500.
    Idempotent,
    /// PATCH (the registry appends): repeated only when the connection could not be made.
    Once,
}

/// Authentication learnt from challenges. Bearer tokens are cached per scope: a token for one
/// repository is never presented for another.
#[derive(Default)]
struct AuthState {
    basic: bool,
    bearer: Option<challenge::Challenge>,
    tokens: HashMap<String, String>,
}

enum Apply {
    None,
    Basic,
    Bearer(String),
}

pub struct Registry {
    http: Client,
    base: String,
    creds: Option<Credentials>,
    /// Why the auth files could not be read, told only if the registry asks for credentials (a
    /// broken `~/.docker/config.json` must not stop anonymous pulls).
    creds_problem: Option<String>,
    auth: Mutex<AuthState>,
    retry: RetryPolicy,
    transfer: net::Transfer,
}

/// `url` without its query (upload URLs carry Distribution's opaque `_state`), for messages.
pub(crate) fn redact(url: &str) -> &str {
    url.split_once('?').map_or(url, |(u, _)| u)
}

/// An error for an unexpected answer: the URL, what was being done, the HTTP status, and the
/// registry's `errors[]` (`CODE: message`) or a snippet of the body.
pub(crate) fn status_error(url: &str, what: &str, resp: Response) -> Error {
    if let Some(why) = net::unfollowed_redirect(&resp) {
        return Error::Http {
            url: redact(url).to_string(),
            msg: why,
        };
    }
    let status = resp.status();
    let mut body = Vec::new();
    let _ = resp.take(8 << 10).read_to_end(&mut body);
    let mut detail = String::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
            let parts: Vec<String> = errs
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("?");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    format!("{code}: {msg}")
                })
                .collect();
            detail = parts.join("; ");
        }
    }
    if detail.is_empty() {
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        detail = text.chars().take(200).collect();
    }
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    let what = if what.is_empty() {
        String::new()
    } else {
        format!("{what}: ")
    };
    Error::Http {
        url: redact(url).to_string(),
        msg: format!("{what}registry answered {status}{detail}"),
    }
}

/// A transport error with its causes (reqwest's own message hides them), without the URL.
pub(crate) fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg = format!("{msg}: {text}");
        }
        cause = c.source();
    }
    msg
}

/// Whether a request failed on the server's certificate (the TLS handshake got that far).
fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        // The rustls error may sit inside nested io::Errors (whose `source` skips it).
        let mut inner: &(dyn std::error::Error + 'static) = err;
        while let Some(next) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = next;
        }
        if matches!(
            inner.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        ) {
            return true;
        }
        cur = err.source();
    }
    false
}

fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A header value as a string ("" when absent or not ASCII).
pub(crate) fn header<'a>(resp: &'a Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

impl Registry {
    /// A client for `host` (`name[:port]`). HTTPS; for hosts that allow plain HTTP (see
    /// [`ConnectOptions::allows_plain_http`]) HTTPS is tried first and plain HTTP used when the
    /// TLS connection cannot be made, as docker does.
    pub fn new(host: &str, opts: &ConnectOptions) -> Result<Registry> {
        let http = net::client_with_roots(&opts.ca_certs, &opts.transfer)?;
        let (creds, creds_problem) = match &opts.creds {
            Some(c) => (Some(c.clone()), None),
            None => match super::auth::lookup(host) {
                Ok(c) => (c, None),
                Err(e) => (None, Some(e.to_string())),
            },
        };
        let mut base = format!("https://{host}");
        if opts.allows_plain_http(host) {
            let probe = http.get(format!("{base}/v2/")).send();
            // A server that presented a certificate speaks TLS: an untrusted one is an error to
            // report, never a reason to fall back to plain HTTP.
            if matches!(&probe, Err(e) if (e.is_connect() || e.is_request()) && !is_certificate_error(e))
            {
                base = format!("http://{host}");
            }
        }
        Ok(Registry {
            http,
            base,
            creds,
            creds_problem,
            auth: Mutex::new(AuthState::default()),
            retry: RetryPolicy::default(),
            transfer: opts.transfer,
        })
    }

    /// Why no credentials were found in the auth files, for messages.
    fn creds_note(&self) -> String {
        match &self.creds_problem {
            Some(p) => format!(" (the auth files could not be used: {p})"),
            None => String::new(),
        }
    }

    /// Replaces the retry policy (the default is [`RetryPolicy::default`]).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Registry {
        self.retry = RetryPolicy {
            attempts: retry.attempts.max(1),
            ..retry
        };
        self
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The base URL in use (`https://host` or `http://host`).
    pub fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Resolves a `Location` header (relative or absolute) against the base URL, keeping its
    /// query verbatim.
    pub(crate) fn resolve(&self, location: &str) -> Result<String> {
        let base = reqwest::Url::parse(&self.base).map_err(|e| Error::Http {
            url: self.base.clone(),
            msg: format!("bad base URL: {e}"),
        })?;
        base.join(location)
            .map(|u| u.to_string())
            .map_err(|e| Error::Http {
                url: self.base.clone(),
                msg: format!("registry sent an unusable Location {location:?}: {e}"),
            })
    }

    /// The credentials to present for `scope`, fetching a token when the registry is known to
    /// want Bearer auth and none is cached for this scope yet.
    fn auth_for(&self, scope: &str) -> Result<Apply> {
        let challenge = {
            let st = self.auth.lock().expect("not poisoned");
            if st.basic {
                return Ok(Apply::Basic);
            }
            if let Some(t) = st.tokens.get(scope) {
                return Ok(Apply::Bearer(t.clone()));
            }
            match &st.bearer {
                Some(c) => c.clone(),
                None => return Ok(Apply::None),
            }
        };
        let token = self.fetch_token(&challenge, scope)?;
        self.auth
            .lock()
            .expect("not poisoned")
            .tokens
            .insert(scope.to_string(), token.clone());
        Ok(Apply::Bearer(token))
    }

    fn apply(&self, rb: RequestBuilder, auth: &Apply) -> RequestBuilder {
        match auth {
            Apply::None => rb,
            Apply::Bearer(t) => rb.bearer_auth(t),
            Apply::Basic => match &self.creds {
                Some(c) => rb.basic_auth(&c.username, Some(&c.password)),
                None => rb,
            },
        }
    }

    /// Answers a 401: learns the scheme, fetches a fresh token for `scope` (replacing a cached
    /// one that no longer works).
    fn answer_challenge(&self, resp: &Response, url: &str, scope: &str) -> Result<()> {
        let challenges = challenge::parse(header(resp, "www-authenticate"));
        if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
            // An insufficient_scope answer names the scope it needs: ask for it as well.
            let mut want = scope.to_string();
            if let Some(extra) = c.param("scope") {
                for s in extra.split_whitespace() {
                    if !want.split_whitespace().any(|w| w == s) {
                        want = format!("{want} {s}");
                    }
                }
            }
            let token = self.fetch_token(c, &want)?;
            let mut st = self.auth.lock().expect("not poisoned");
            st.bearer = Some(c.clone());
            st.tokens.insert(scope.to_string(), token);
            Ok(())
        } else if challenges.iter().any(|c| c.scheme == "basic") && self.creds.is_some() {
            self.auth.lock().expect("not poisoned").basic = true;
            Ok(())
        } else {
            Err(Error::Http {
                url: redact(url).to_string(),
                msg: format!(
                    "authentication required (401); give --creds USER:PASSWORD or log in with docker/podman login{}",
                    self.creds_note()
                ),
            })
        }
    }

    /// Sends a request built by `build` (called again for each try), answering one auth
    /// challenge and retrying transient failures as `replay` allows (see [`RetryPolicy`]).
    /// `scope` is a space-separated list of token scopes (`repository:a/b:pull,push`).
    /// Returns the final response whatever its status, except 401 (an error).
    pub(crate) fn request(
        &self,
        replay: Replay,
        url: &str,
        build: impl Fn(&Client) -> RequestBuilder,
        scope: &str,
    ) -> Result<Response> {
        let policy = self.retry;
        let mut retries = 0u32;
        let mut reauthed = false;
        loop {
            let auth = self.auth_for(scope)?;
            let sent = self.apply(build(&self.http), &auth).send();
            let can_retry = retries + 1 < policy.attempts;
            match sent {
                Err(e) => {
                    let transient = match replay {
                        Replay::Safe | Replay::Idempotent => !e.is_builder() && !e.is_redirect(),
                        Replay::Once => e.is_connect(),
                    };
                    if transient && can_retry {
                        std::thread::sleep(policy.delay(retries));
                        retries += 1;
                        continue;
                    }
                    let tries = if retries > 0 {
                        format!(" (after {} tries)", retries + 1)
                    } else {
                        String::new()
                    };
                    return Err(Error::Http {
                        url: redact(url).to_string(),
                        msg: format!("{}{tries}", describe(e)),
                    });
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED {
                        if reauthed || matches!(auth, Apply::Basic) {
                            return Err(Error::Http {
                                url: redact(url).to_string(),
                                msg: "authentication failed (401)".into(),
                            });
                        }
                        reauthed = true;
                        self.answer_challenge(&resp, url, scope)?;
                        continue;
                    }
                    let transient = match status.as_u16() {
                        429 | 502 | 503 | 504 => replay != Replay::Once,
                        500 => replay == Replay::Safe,
                        _ => false,
                    };
                    if transient && can_retry {
                        let wait = retry_after(&resp)
                            .filter(|d| *d <= policy.max_retry_after)
                            .unwrap_or_else(|| policy.delay(retries));
                        drop(resp);
                        std::thread::sleep(wait);
                        retries += 1;
                        continue;
                    }
                    return Ok(resp);
                }
            }
        }
    }

    fn fetch_token(&self, c: &challenge::Challenge, scope: &str) -> Result<String> {
        let realm = c.param("realm").ok_or_else(|| {
            Error::Other(format!("{}: Bearer challenge without realm", self.base))
        })?;
        let mut token_url = reqwest::Url::parse(realm).map_err(|e| Error::Http {
            url: realm.to_string(),
            msg: format!("bad token realm: {e}"),
        })?;
        {
            let mut q = token_url.query_pairs_mut();
            for s in scope.split_whitespace() {
                q.append_pair("scope", s);
            }
            if let Some(service) = c.param("service") {
                q.append_pair("service", service);
            }
            if let Some(cr) = &self.creds {
                q.append_pair("account", &cr.username);
            }
        }
        let build = |http: &Client| {
            let mut rb = http.get(token_url.clone());
            if let Some(cr) = &self.creds {
                rb = rb.basic_auth(&cr.username, Some(&cr.password));
            }
            rb
        };
        let mut retries = 0;
        let resp = loop {
            match build(&self.http).send() {
                Ok(r)
                    if matches!(r.status().as_u16(), 429 | 500 | 502 | 503 | 504)
                        && retries + 1 < self.retry.attempts => {}
                Ok(r) => break r,
                Err(e) if retries + 1 >= self.retry.attempts || e.is_builder() => {
                    return Err(Error::Http {
                        url: realm.to_string(),
                        msg: e.to_string(),
                    })
                }
                Err(_) => {}
            }
            std::thread::sleep(self.retry.delay(retries));
            retries += 1;
        };
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(Error::Http {
                url: realm.to_string(),
                msg: match &self.creds {
                    Some(c) => format!(
                        "authentication failed: the token server refused the credentials of {} (401)",
                        c.username
                    ),
                    None => format!(
                        "authentication required: the token server wants credentials (401); give --creds USER:PASSWORD or log in with docker/podman login{}",
                        self.creds_note()
                    ),
                },
            });
        }
        if !resp.status().is_success() {
            return Err(Error::Http {
                url: realm.to_string(),
                msg: format!("token server answered {}", resp.status()),
            });
        }
        let mut body = Vec::new();
        resp.take(1 << 20)
            .read_to_end(&mut body)
            .map_err(|e| Error::Http {
                url: realm.to_string(),
                msg: e.to_string(),
            })?;
        let v: serde_json::Value =
            json::from_slice(&body, "token response").map_err(|e| Error::Http {
                url: realm.to_string(),
                msg: format!("token response is not JSON: {}", e.detail()),
            })?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| Error::Http {
                url: realm.to_string(),
                msg: "token response has no token".into(),
            })
    }

    /// Fetches a manifest by tag or digest and verifies its digest against the registry's
    /// `Docker-Content-Digest` and, when fetched by digest, against that digest.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self.request(
            Replay::Safe,
            &url,
            |c| c.get(&url).header("Accept", MANIFEST_ACCEPT),
            &format!("repository:{repo}:pull"),
        )?;
        if !resp.status().is_success() {
            return Err(status_error(&url, "", resp));
        }
        let media_type = header(&resp, "content-type").to_string();
        let claimed = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        resp.take(MAX_MANIFEST + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Http {
                url: url.clone(),
                msg: e.to_string(),
            })?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(Error::Http {
                url,
                msg: format!("manifest larger than {MAX_MANIFEST} bytes"),
            });
        }
        let digest = Digest::of(&bytes);
        let expected = [
            claimed.as_deref(),
            reference.starts_with("sha256:").then_some(reference),
        ];
        for e in expected.into_iter().flatten() {
            let e: Digest = e.parse().map_err(|_| Error::Http {
                url: url.clone(),
                msg: format!("malformed digest {e:?}"),
            })?;
            if e != digest {
                return Err(Error::DigestMismatch {
                    what: format!("manifest {url}"),
                    expected: e,
                    actual: digest,
                });
            }
        }
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// The digest `reference` (a tag or digest) resolves to in `repo`, by HEAD; `None` when
    /// the registry does not have it (404). For plans and dry runs: is this tag already there?
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Result<Option<Digest>> {
        self.manifest_digest_scoped(repo, reference, &format!("repository:{repo}:pull"))
    }

    pub(crate) fn manifest_digest_scoped(
        &self,
        repo: &str,
        reference: &str,
        scope: &str,
    ) -> Result<Option<Digest>> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self.request(
            Replay::Safe,
            &url,
            |c| c.head(&url).header("Accept", MANIFEST_ACCEPT),
            scope,
        )?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let d = header(&resp, "docker-content-digest");
                d.parse().map(Some).map_err(|_| Error::Http {
                    url,
                    msg: format!("HEAD answered without a valid Docker-Content-Digest ({d:?})"),
                })
            }
            _ => Err(status_error(&url, "", resp)),
        }
    }

    /// Whether `repo` has blob `digest` (HEAD: 200 yes, 404 no).
    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool> {
        self.blob_exists_scoped(repo, digest, &format!("repository:{repo}:pull"))
    }

    pub(crate) fn blob_exists_scoped(
        &self,
        repo: &str,
        digest: &Digest,
        scope: &str,
    ) -> Result<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.request(Replay::Safe, &url, |c| c.head(&url), scope)?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(status_error(&url, &format!("blob {digest}"), resp)),
        }
    }

    /// Streams blob `digest` into `out`, verifying it; returns its size. An interrupted
    /// download resumes with `Range` (see [`BlobReader`]), so `out` only ever receives each
    /// byte once, in order; it must be discarded on error.
    pub fn blob_to(&self, repo: &str, digest: &Digest, out: &mut dyn Write) -> Result<u64> {
        let mut reader = BlobReader::open(self, repo, *digest, None)?;
        let url = reader.url.clone();
        let (actual, size) =
            fsutil::copy_hashed(&mut reader, out, &Silent).map_err(|e| match e {
                CopyError::Read { after, source } => Error::Http {
                    url: url.clone(),
                    msg: format!("download failed after {after} bytes: {source}"),
                },
                CopyError::Write(e) => Error::Other(format!("writing blob {digest}: {e}")),
            })?;
        if actual != *digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {url}"),
                expected: *digest,
                actual,
            });
        }
        Ok(size)
    }

    /// A reader over blob `desc` that survives broken connections: after an error mid-body it
    /// asks again with `Range: bytes=<received>-` and continues from a `206`; a registry
    /// answering `200` instead is read from the start and the bytes already delivered are
    /// skipped. It gives up after [`RetryPolicy::attempts`] consecutive tries without progress.
    /// It never yields more than `desc.size` bytes and reports a short body as an error, but it
    /// does not hash: **the caller checks the digest**.
    pub fn blob_reader(
        self: &Arc<Self>,
        repo: &str,
        desc: &Descriptor,
    ) -> Result<BlobReader<Arc<Registry>>> {
        BlobReader::open(self.clone(), repo, desc.digest, Some(desc.size))
    }
}

/// A resumable blob download; see [`Registry::blob_reader`].
pub struct BlobReader<R: Deref<Target = Registry>> {
    reg: R,
    url: String,
    scope: String,
    size: Option<u64>,
    offset: u64,
    resp: Option<net::Guarded<Response>>,
    /// Consecutive failed tries without progress.
    failures: u32,
    /// Offset at the last failure, to tell whether the next try made progress.
    failed_at: u64,
    resumes: u32,
}

impl<R: Deref<Target = Registry>> BlobReader<R> {
    fn open(reg: R, repo: &str, digest: Digest, size: Option<u64>) -> Result<Self> {
        let url = reg.url(&format!("/v2/{repo}/blobs/{digest}"));
        let mut r = BlobReader {
            reg,
            url,
            scope: format!("repository:{repo}:pull"),
            size,
            offset: 0,
            resp: None,
            failures: 0,
            failed_at: 0,
            resumes: 0,
        };
        r.connect()?;
        Ok(r)
    }

    /// How many times the download was resumed after a broken connection.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// Bytes delivered so far.
    pub fn position(&self) -> u64 {
        self.offset
    }

    fn connect(&mut self) -> Result<()> {
        let offset = self.offset;
        let url = self.url.clone();
        let transfer = self.reg.transfer;
        let mut resp = self.reg.request(
            Replay::Safe,
            &url,
            |c| {
                let rb = c.get(&url);
                if offset > 0 {
                    rb.header("Range", format!("bytes={offset}-"))
                } else {
                    rb
                }
            },
            &self.scope,
        )?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                // Content-Range: bytes <start>-<end>/<total|*>
                let cr = header(&resp, "content-range");
                let start = cr
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if start != Some(offset) {
                    return Err(Error::Http {
                        url,
                        msg: format!(
                            "asked to resume at byte {offset}, the registry sent Content-Range {cr:?}"
                        ),
                    });
                }
            }
            s if s.is_success() && s != StatusCode::PARTIAL_CONTENT => {
                if self.size.is_none() {
                    self.size = resp.content_length();
                }
                if offset > 0 {
                    // No Range support: read again from the start, dropping what we have.
                    let skipped = io::copy(&mut (&mut resp).take(offset), &mut io::sink())
                        .map_err(|e| Error::Http {
                            url: url.clone(),
                            msg: format!("restarting the download (no Range support): {e}"),
                        })?;
                    if skipped != offset {
                        return Err(Error::Http {
                            url,
                            msg: format!(
                                "restarting the download: the body ended after {skipped} bytes"
                            ),
                        });
                    }
                }
            }
            _ => return Err(status_error(&url, "", resp)),
        }
        self.resp = Some(transfer.guard(resp));
        Ok(())
    }
}

impl<R: Deref<Target = Registry>> Read for BlobReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.resp.is_none() {
                self.connect()
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
            let resp = self.resp.as_mut().expect("connected");
            let failure = match resp.read(buf) {
                Ok(0) => match self.size {
                    Some(s) if self.offset < s => io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("body ended after {} of {s} bytes", self.offset),
                    ),
                    _ => return Ok(0),
                },
                Ok(n) => {
                    self.offset += n as u64;
                    if let Some(s) = self.size {
                        if self.offset > s {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("{}: more than the {s} bytes expected", self.url),
                            ));
                        }
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Too slow is final (resuming would let a dripping server go on for ever), and so is a stop.
                Err(e) if net::is_final(&e) => {
                    return Err(io::Error::new(e.kind(), format!("{}: {e}", self.url)))
                }
                Err(e) => e,
            };
            self.resp = None;
            if self.offset > self.failed_at {
                self.failures = 0;
            }
            self.failed_at = self.offset;
            self.failures += 1;
            let policy = self.reg.retry;
            if self.failures >= policy.attempts {
                return Err(io::Error::new(
                    failure.kind(),
                    format!(
                        "{failure} (gave up at byte {} after {} resumes)",
                        self.offset, self.resumes
                    ),
                ));
            }
            std::thread::sleep(policy.delay(self.failures - 1));
            self.resumes += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_readers_can_move_to_other_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Registry>();
        send::<BlobReader<Arc<Registry>>>();
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let d: Vec<u64> = (0..6).map(|i| p.delay(i).as_millis() as u64).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 4000, 4000]);
    }

    #[test]
    fn redact_drops_the_upload_state() {
        assert_eq!(
            redact("http://h/v2/r/blobs/uploads/u?_state=abc&digest=x"),
            "http://h/v2/r/blobs/uploads/u"
        );
    }
}
