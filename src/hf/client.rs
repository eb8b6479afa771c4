//! A small client for the parts of the Hub API `snapshot_download` uses: revision → commit,
//! the recursive tree listing (with `Link` pagination), and `resolve` downloads that follow the
//! redirect to the LFS CDN and resume with `Range` after a dropped connection. Every request
//! is retried under the one [`RetryPolicy`] and every download is a [`RangedReader`].
//!
//! The token goes only to the endpoint's origin: it is set on requests to endpoint URLs, and
//! reqwest drops `Authorization` when a redirect leaves the host (the CDN URLs are pre-signed).

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::spec::{url_prefix, HfOptions};
use super::{is_hex, quote};
use crate::error::{Error, Result};
use crate::format::json;
use crate::format::paths::validate_rel_path;
use crate::format::HfRepoType;
use crate::net::{self, RangedReader, RetryPolicy};

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
    retry: RetryPolicy,
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
            retry: RetryPolicy::default(),
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

    /// A GET of an API answer: its headers and its JSON (a body that breaks off is asked for
    /// again, [`RetryPolicy::read_whole`]).
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        ctx: &Ctx,
        what: &str,
    ) -> Result<(reqwest::header::HeaderMap, T)> {
        let (headers, body) = self.retry.read_whole(url, what, MAX_JSON, || {
            self.fetch(reqwest::Method::GET, url, ctx, None)
        })?;
        Ok((headers, parse_json(&body, url, what)?))
    }

    /// Replaces the retry policy (the default is [`RetryPolicy::default`]).
    pub fn with_retry(mut self, retry: RetryPolicy) -> HubClient {
        self.retry = retry.normalized();
        self
    }

    /// `method` on `url` under the retry policy (transient failures retried; no re-auth: the
    /// token is what it is); an answer that is not a success is the error naming it, with the
    /// Hub's `X-Error-Code` read into a sentence.
    fn fetch(
        &self,
        method: reqwest::Method,
        url: &str,
        ctx: &Ctx,
        resume: Option<&net::Resume<'_>>,
    ) -> Result<Response> {
        let status_error = |resp: Response| self.hub_error(&resp, url, ctx);
        let call = net::Call {
            replay: net::Replay::Safe,
            url,
            reauth: None,
            status_error: &status_error,
        };
        let resp = self.retry.send(&call, || {
            let rb = self.request(method.clone(), url)?;
            Ok(match resume {
                Some(r) => r.apply(rb),
                None => rb,
            })
        })?;
        self.check(resp, url, ctx)
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
        let info: RevisionInfo = self.get_json(&url, &ctx, "repo info")?.1;
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
            let (headers, entries): (_, Vec<TreeEntry>) =
                self.get_json(&url, &ctx, "a tree listing")?;
            let link = headers
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
        self.fetch(reqwest::Method::HEAD, url, ctx, None).map(drop)
    }

    /// A reader over a file's `size` bytes that reconnects with `Range` when the connection
    /// drops ([`RangedReader`]; the first request is made now). It does not check content:
    /// callers hash what it yields (LFS SHA-256, git blob SHA-1), so a server without Range
    /// support is read again from the start.
    pub fn open_file(&self, url: &str, size: u64, ctx: Ctx) -> Result<RangedReader<'static>> {
        let how = net::Ranged {
            policy: self.retry,
            transfer: self.transfer,
            expected: Some(size),
            pinned: true,
        };
        let (client, u) = (self.clone(), url.to_string());
        let connect: net::Connect<'static> =
            Box::new(move |resume| client.fetch(reqwest::Method::GET, &u, &ctx, Some(resume)));
        RangedReader::open(url, how, connect)
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

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], url: &str, what: &str) -> Result<T> {
    json::from_slice(body, what).map_err(|e| Error::Http {
        kind: crate::error::NetKind::Network,
        url: url.to_string(),
        msg: format!("the Hub's answer is not {what}: {}", e.detail()),
    })
}

fn repo_label(t: HfRepoType, id: &str) -> String {
    format!("{}{id}", url_prefix(t))
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
