//! A small client for the parts of the Hub API `snapshot_download` uses: revision → commit,
//! the recursive tree listing (with `Link` pagination), and `resolve` downloads that follow the
//! redirect to the LFS CDN and resume with `Range` after a dropped connection.
//!
//! The token goes only to the endpoint's origin: it is set on requests to endpoint URLs, and
//! reqwest drops `Authorization` when a redirect leaves the host (the CDN URLs are pre-signed).

use std::io::{self, Read};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::spec::{url_prefix, HfOptions};
use super::{is_hex, quote};
use crate::error::{Error, Result};
use crate::format::json;
use crate::format::paths::validate_rel_path;
use crate::format::HfRepoType;
use crate::net;

/// Reconnections allowed per file download without progress in between.
const MAX_RETRIES: u32 = 4;
/// Tree pages followed at most (the Hub pages by 1000 entries or so).
const MAX_PAGES: usize = 10_000;

/// A file of a repo at a commit, as the tree API lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoFile {
    pub path: String,
    pub size: u64,
    /// The git blob SHA-1 (of the LFS pointer, for an LFS file).
    pub oid: String,
    /// For an LFS file: the SHA-256 of its content (the tree's `lfs.oid`).
    pub lfs_sha256: Option<String>,
    /// The tree's `xetHash`, when given (64 hex).
    pub xet_hash: Option<String>,
}

impl RepoFile {
    /// The Hub's etag: the LFS SHA-256, else the git blob SHA-1.
    pub fn etag(&self) -> &str {
        self.lfs_sha256.as_deref().unwrap_or(&self.oid)
    }
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    lfs: Option<TreeLfs>,
    #[serde(default, rename = "xetHash")]
    xet_hash: Option<String>,
}

#[derive(Deserialize)]
struct TreeLfs {
    oid: String,
    size: u64,
}

#[derive(Deserialize)]
struct RevisionInfo {
    sha: Option<String>,
}

/// What a request was about, to turn the Hub's error codes into sentences.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    pub repo: String,
    pub revision: Option<String>,
    pub path: Option<String>,
}

/// A connection to one Hub endpoint.
#[derive(Clone)]
pub struct HubClient {
    endpoint: String,
    origin: Url,
    token: Option<String>,
    http: Client,
    transfer: net::Transfer,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HubClient({})", self.endpoint)
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

impl HubClient {
    pub fn new(opts: &HfOptions) -> Result<HubClient> {
        let endpoint = opts.endpoint().trim_end_matches('/').to_string();
        let origin = Url::parse(&endpoint)
            .map_err(|e| Error::Usage(format!("HF endpoint {endpoint:?} is not a URL ({e})")))?;
        if !matches!(origin.scheme(), "http" | "https") {
            return Err(Error::Usage(format!(
                "HF endpoint {endpoint:?} is not an http(s) URL"
            )));
        }
        Ok(HubClient {
            endpoint,
            origin,
            token: opts.token.clone().filter(|t| !t.is_empty()),
            http: net::client_with_roots(&opts.ca_certs, &opts.transfer)?,
            transfer: opts.transfer,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// A GET (or HEAD) carrying the token if, and only if, `url` is on the endpoint's origin.
    fn request(&self, method: reqwest::Method, url: &str) -> Result<RequestBuilder> {
        let parsed = Url::parse(url).map_err(|e| Error::Http {
            kind: crate::error::NetKind::Network,
            url: url.to_string(),
            msg: format!("not a URL: {e}"),
        })?;
        let mut rb = self.http.request(method, parsed.clone());
        if let Some(t) = &self.token {
            if same_origin(&parsed, &self.origin) {
                rb = rb.bearer_auth(t);
            }
        }
        Ok(rb)
    }

    fn send(&self, rb: RequestBuilder, url: &str) -> Result<Response> {
        rb.send().map_err(|e| transport_error(url, &e))
    }

    /// `GET /api/{type}s/{id}/revision/{rev}` → the commit (`sha`).
    pub fn resolve_revision(&self, t: HfRepoType, id: &str, rev: &str) -> Result<String> {
        let url = format!(
            "{}/api/{}s/{id}/revision/{}",
            self.endpoint,
            t.as_str(),
            quote(rev, "")
        );
        let ctx = Ctx {
            repo: repo_label(t, id),
            revision: Some(rev.to_string()),
            path: None,
        };
        let resp = self.send(self.request(reqwest::Method::GET, &url)?, &url)?;
        let resp = self.check(resp, &url, &ctx)?;
        let info: RevisionInfo = read_json(resp, &url, "repo info")?;
        let sha = info.sha.unwrap_or_default();
        if !is_hex(&sha, 40) {
            return Err(Error::Http {
                kind: crate::error::NetKind::Network,
                url,
                msg: format!("the Hub gave no usable commit for revision {rev:?} (sha {sha:?})"),
            });
        }
        if is_hex(rev, 40) && sha != rev {
            return Err(Error::Http {
                kind: crate::error::NetKind::Network,
                url,
                msg: format!("asked for commit {rev}, the Hub answered with {sha}"),
            });
        }
        Ok(sha)
    }

    /// `GET /api/{type}s/{id}/tree/{commit}?recursive=true`, every page; files only, in the
    /// order listed.
    pub fn list_files(&self, t: HfRepoType, id: &str, commit: &str) -> Result<Vec<RepoFile>> {
        let ctx = Ctx {
            repo: repo_label(t, id),
            revision: Some(commit.to_string()),
            path: None,
        };
        let mut next = Some(format!(
            "{}/api/{}s/{id}/tree/{}?recursive=true&expand=false",
            self.endpoint,
            t.as_str(),
            quote(commit, "")
        ));
        let mut files = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(Error::Http {
                    kind: crate::error::NetKind::Network,
                    url,
                    msg: format!("more than {MAX_PAGES} pages of tree listing"),
                });
            }
            let resp = self.send(self.request(reqwest::Method::GET, &url)?, &url)?;
            let resp = self.check(resp, &url, &ctx)?;
            let link = resp
                .headers()
                .get_all(reqwest::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link);
            if let Some(l) = link {
                let base = Url::parse(&url).expect("requested URLs parse");
                let joined = base.join(&l).map_err(|e| Error::Http {
                    kind: crate::error::NetKind::Network,
                    url: url.clone(),
                    msg: format!("bad Link header {l:?}: {e}"),
                })?;
                next = Some(joined.to_string());
            }
            let entries: Vec<TreeEntry> = read_json(resp, &url, "a tree listing")?;
            for e in entries {
                if e.kind != "file" {
                    continue;
                }
                let bad = |m: String| Error::Http {
                    kind: crate::error::NetKind::Network,
                    url: url.clone(),
                    msg: format!("tree entry {:?}: {m}", e.path),
                };
                validate_rel_path(&e.path).map_err(|w| bad(format!("unusable path ({w})")))?;
                let oid = e.oid.clone().unwrap_or_default();
                if !is_hex(&oid, 40) {
                    return Err(bad(format!("oid {oid:?} is not a git SHA-1")));
                }
                let (size, lfs_sha256) = match &e.lfs {
                    Some(l) => {
                        if !is_hex(&l.oid, 64) {
                            return Err(bad(format!("lfs.oid {:?} is not a SHA-256", l.oid)));
                        }
                        (l.size, Some(l.oid.clone()))
                    }
                    None => (e.size, None),
                };
                let xet_hash = e.xet_hash.filter(|x| is_hex(x, 64));
                files.push(RepoFile {
                    path: e.path,
                    size,
                    oid,
                    lfs_sha256,
                    xet_hash,
                });
            }
        }
        Ok(files)
    }

    /// `{endpoint}/{prefix}{id}/resolve/{commit}/{path}`.
    pub fn resolve_url(&self, t: HfRepoType, id: &str, commit: &str, path: &str) -> String {
        format!(
            "{}/{}{id}/resolve/{}/{}",
            self.endpoint,
            url_prefix(t),
            quote(commit, ""),
            quote(path, "/")
        )
    }

    /// A HEAD on a file (redirects followed): fails early, before anything is written, on a
    /// gated, private or missing file.
    pub fn probe(&self, url: &str, ctx: &Ctx) -> Result<()> {
        let resp = self.send(self.request(reqwest::Method::HEAD, url)?, url)?;
        self.check(resp, url, ctx).map(drop)
    }

    /// A reader over a file's bytes that reconnects with `Range` when the connection drops.
    /// It does not check content: callers hash what it yields.
    pub fn open_file(&self, url: &str, size: u64, ctx: Ctx) -> FileReader {
        FileReader {
            client: self.clone(),
            url: url.to_string(),
            size,
            ctx,
            pos: 0,
            resp: None,
            failures: 0,
        }
    }

    /// Passes a success through; turns anything else into an error naming the problem.
    fn check(&self, resp: Response, url: &str, ctx: &Ctx) -> Result<Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.hub_error(&resp, url, ctx))
    }

    fn hub_error(&self, resp: &Response, url: &str, ctx: &Ctx) -> Error {
        if let Some(why) = net::unfollowed_redirect(resp) {
            return Error::Http {
                kind: crate::error::NetKind::Network,
                url: url.to_string(),
                msg: why,
            };
        }
        let status = resp.status();
        let header = |k: &str| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let code = header("x-error-code").unwrap_or_default();
        let server_msg = header("x-error-message")
            .map(|m| format!(" (the Hub says: {m})"))
            .unwrap_or_default();
        let token_hint = if self.has_token() {
            "the token given has no access to it"
        } else {
            "if it is private, give a token (HF_TOKEN or $HF_HOME/token)"
        };
        let repo = &ctx.repo;
        let repo_page = format!("{}/{}", self.endpoint, repo);
        let msg = match code.as_str() {
            "GatedRepo" => format!(
                "{repo} is a gated repo: accept the terms at {repo_page} and give a token of that account (HF_TOKEN or $HF_HOME/token){server_msg}"
            ),
            "RepoNotFound" => {
                format!("repository {repo} not found on {} ({token_hint}){server_msg}", self.endpoint)
            }
            "RevisionNotFound" => format!(
                "revision {:?} not found in {repo}{server_msg}",
                ctx.revision.as_deref().unwrap_or("?")
            ),
            "EntryNotFound" => format!(
                "{:?} not found in {repo} at {}{server_msg}",
                ctx.path.as_deref().unwrap_or("?"),
                ctx.revision.as_deref().unwrap_or("?")
            ),
            _ => match status {
                StatusCode::UNAUTHORIZED if self.has_token() => format!(
                    "401 Unauthorized: the token was refused; check HF_TOKEN or $HF_HOME/token{server_msg}"
                ),
                StatusCode::UNAUTHORIZED => format!(
                    "401 Unauthorized: {repo} needs a token (HF_TOKEN or $HF_HOME/token){server_msg}"
                ),
                StatusCode::FORBIDDEN => format!(
                    "403 Forbidden: {}{server_msg}",
                    if self.has_token() {
                        "the token has no access to this repo (a fine-grained token needs read access to it)"
                    } else {
                        "access denied; give a token (HF_TOKEN or $HF_HOME/token)"
                    }
                ),
                s => format!("server answered {s}{server_msg}"),
            },
        };
        let kind = match code.as_str() {
            "GatedRepo" => crate::error::NetKind::Auth,
            "RepoNotFound" | "RevisionNotFound" | "EntryNotFound" => {
                crate::error::NetKind::NotFound
            }
            _ => crate::error::NetKind::of_status(status.as_u16(), &[]),
        };
        Error::Http {
            kind,
            url: url.to_string(),
            msg,
        }
    }
}

/// Largest API answer read (a tree page of the Hub is well below this).
const MAX_JSON: u64 = 256 << 20;

fn read_json<T: serde::de::DeserializeOwned>(resp: Response, url: &str, what: &str) -> Result<T> {
    let mut body = Vec::new();
    resp.take(MAX_JSON)
        .read_to_end(&mut body)
        .map_err(|e| Error::Http {
            kind: crate::error::NetKind::Network,
            url: url.to_string(),
            msg: format!("reading {what} failed: {}", chain(&e)),
        })?;
    json::from_slice(&body, what).map_err(|e| Error::Http {
        kind: crate::error::NetKind::Network,
        url: url.to_string(),
        msg: format!("the Hub's answer is not {what}: {}", e.detail()),
    })
}

fn repo_label(t: HfRepoType, id: &str) -> String {
    format!("{}{id}", url_prefix(t))
}

fn transport_error(url: &str, e: &reqwest::Error) -> Error {
    let msg = if e.is_redirect() {
        format!("redirect loop or too many redirects ({})", chain(e))
    } else {
        chain(e)
    };
    Error::Http {
        kind: crate::error::NetKind::of_transport(e),
        url: url.to_string(),
        msg,
    }
}

/// The `rel="next"` URL of one `Link` header value, if any.
fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        is_next.then(|| target.to_string())
    })
}

/// A file download that resumes from where it stopped (`Range: bytes=N-`; a server that answers
/// 200 instead of 206 is read from the start and the first N bytes skipped).
pub struct FileReader {
    client: HubClient,
    url: String,
    size: u64,
    ctx: Ctx,
    pos: u64,
    resp: Option<net::Guarded<Response>>,
    failures: u32,
}

impl FileReader {
    fn fail(&self, msg: String) -> io::Error {
        io::Error::other(Error::Http {
            kind: crate::error::NetKind::Network,
            url: self.url.clone(),
            msg,
        })
    }

    /// Connects at `pos`; `Ok(None)` for a failure worth retrying.
    fn connect(&mut self) -> io::Result<Option<Response>> {
        let mut rb = self
            .client
            .request(reqwest::Method::GET, &self.url)
            .map_err(io::Error::other)?;
        if self.pos > 0 {
            rb = rb.header(reqwest::header::RANGE, format!("bytes={}-", self.pos));
        }
        let resp = match rb.send() {
            Ok(r) => r,
            Err(e) if e.is_redirect() => {
                return Err(io::Error::other(transport_error(&self.url, &e)))
            }
            Err(_) => return Ok(None),
        };
        let status = resp.status();
        if status.is_server_error() {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(io::Error::other(
                self.client.hub_error(&resp, &self.url, &self.ctx),
            ));
        }
        let announced = resp.content_length();
        let mut resp = resp;
        if status == StatusCode::PARTIAL_CONTENT {
            let range = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let start = range
                .strip_prefix("bytes ")
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<u64>().ok());
            if start != Some(self.pos) {
                return Err(self.fail(format!(
                    "asked to resume at byte {}, the server sent Content-Range {range:?}",
                    self.pos
                )));
            }
        } else {
            if let Some(len) = announced {
                if len != self.size {
                    return Err(self.fail(format!(
                        "the server announces {len} bytes, the tree listing says {}",
                        self.size
                    )));
                }
            }
            if self.pos > 0 {
                // No range support: read again from the start, dropping what we have.
                let skipped = io::copy(&mut (&mut resp).take(self.pos), &mut io::sink());
                if !matches!(skipped, Ok(n) if n == self.pos) {
                    return Ok(None);
                }
            }
        }
        Ok(Some(resp))
    }

    fn retry(&mut self, why: String) -> io::Result<()> {
        self.resp = None;
        self.failures += 1;
        if self.failures > MAX_RETRIES {
            return Err(self.fail(format!(
                "download failed after {} of {} bytes and {MAX_RETRIES} retries: {why}",
                self.pos, self.size
            )));
        }
        std::thread::sleep(Duration::from_millis(100 << self.failures.min(5)));
        Ok(())
    }
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.resp.is_none() {
                if self.pos >= self.size && self.pos > 0 {
                    return Ok(0);
                }
                match self.connect()? {
                    Some(r) => self.resp = Some(self.client.transfer.guard(r)),
                    None => {
                        self.retry("cannot connect".into())?;
                        continue;
                    }
                }
            }
            let resp = self.resp.as_mut().expect("connected above");
            match resp.read(buf) {
                Ok(0) if self.pos < self.size && !buf.is_empty() => {
                    let why = format!("connection closed at byte {}", self.pos);
                    self.retry(why)?;
                }
                Ok(n) => {
                    if n > 0 {
                        self.failures = 0;
                    }
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Too slow is final (resuming would let a dripping server go on for ever), and so is a stop.
                Err(e) if net::is_final(&e) => return Err(self.fail(chain(&e))),
                Err(e) => {
                    let why = chain(&e);
                    self.retry(why)?;
                }
            }
        }
    }
}

/// The library error inside an I/O error from a [`FileReader`], or a generic one.
pub fn unwrap_io(e: io::Error, url: &str) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return *e
            .into_inner()
            .expect("checked above")
            .downcast::<Error>()
            .expect("checked above");
    }
    Error::Http {
        kind: crate::error::NetKind::Network,
        url: url.to_string(),
        msg: chain(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        assert_eq!(
            next_link("<https://h/api/models/x/tree/main?cursor=abc>; rel=\"next\""),
            Some("https://h/api/models/x/tree/main?cursor=abc".into())
        );
        assert_eq!(
            next_link("<https://h/a>; rel=\"prev\", <https://h/b>; rel=\"next\""),
            Some("https://h/b".into())
        );
        assert_eq!(next_link("<https://h/a>; rel=\"prev\""), None);
    }
}
