//! A minimal OCI distribution client: manifests (with the full `Accept` list that Docker
//! Distribution 2.8 needs) and blobs (streamed, never held in memory), each checked against its
//! digest; anonymous-token, Bearer and Basic auth from `WWW-Authenticate` challenges, with one
//! token cached per scope. Transient failures are retried under the one policy of
//! [`net::RetryPolicy`] (a 401 answered once per request through `token`); blob downloads
//! resume with `Range` after a broken connection ([`net::RangedReader`]). reqwest drops
//! `Authorization` when a redirect leaves the registry's origin. The push side lives in
//! [`super::push`].
//!
//! This file holds the registry's use of the transport: connecting, [`Registry::request`] and
//! the error texts; `token` answers auth challenges, `fetch` holds the manifest and blob
//! endpoints.

use std::io::Read;
use std::sync::Mutex;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;

use crate::error::{Error, Result};
use crate::format::Digest;
use crate::net;

mod fetch;
mod token;

pub(crate) use crate::net::Replay;
use crate::net::RetryPolicy;
use token::{Apply, AuthState};

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

pub(crate) use crate::net::redact;

/// An error for an unexpected answer: the URL, what was being done, the HTTP status, and the
/// registry's `errors[]` (`CODE: message`) or a snippet of the body.
pub(crate) fn status_error(url: &str, what: &str, resp: Response) -> Error {
    if let Some(why) = net::unfollowed_redirect(&resp) {
        return Error::Http {
            kind: crate::error::NetKind::Network,
            url: redact(url).to_string(),
            msg: why,
        };
    }
    let status = resp.status();
    let mut body = Vec::new();
    let _ = resp.take(8 << 10).read_to_end(&mut body);
    let mut detail = String::new();
    let mut codes: Vec<String> = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
            let parts: Vec<String> = errs
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("?");
                    codes.push(code.to_string());
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
    let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
    Error::Http {
        kind: crate::error::NetKind::of_status(status.as_u16(), &codes),
        url: redact(url).to_string(),
        msg: format!("{what}registry answered {status}{detail}"),
    }
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
            if matches!(&probe, Err(e) if (e.is_connect() || e.is_request()) && !net::is_certificate_error(e))
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

    /// Replaces the retry policy (the default is [`RetryPolicy::default`]).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Registry {
        self.retry = retry.normalized();
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
            kind: crate::error::NetKind::Network,
            url: self.base.clone(),
            msg: format!("bad base URL: {e}"),
        })?;
        base.join(location)
            .map(|u| u.to_string())
            .map_err(|e| Error::Http {
                kind: crate::error::NetKind::Network,
                url: self.base.clone(),
                msg: format!("registry sent an unusable Location {location:?}: {e}"),
            })
    }

    /// Sends a request built by `build` (called again for each try) under the retry policy
    /// ([`RetryPolicy::send`]: transient failures retried as `replay` allows), answering one
    /// auth challenge per request. `scope` is a space-separated list of token scopes
    /// (`repository:a/b:pull,push`). Returns the final response whatever its status, except
    /// 401 (an error) and an answer still transient after the last try (an error naming the
    /// tries).
    pub(crate) fn request(
        &self,
        replay: Replay,
        url: &str,
        build: impl Fn(&Client) -> RequestBuilder,
        scope: &str,
    ) -> Result<Response> {
        let basic = std::cell::Cell::new(false);
        let reauth = |resp: &Response| -> Result<bool> {
            if basic.get() {
                return Ok(false);
            }
            self.answer_challenge(resp, url, scope)?;
            Ok(true)
        };
        let status_error = |resp: Response| status_error(url, "", resp);
        let call = net::Call {
            replay,
            url: redact(url),
            reauth: Some(&reauth),
            status_error: &status_error,
        };
        let resp = self.retry.send(&call, || {
            let auth = self.auth_for(scope)?;
            basic.set(matches!(auth, Apply::Basic));
            Ok(self.apply(build(&self.http), &auth))
        })?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(Error::Http {
                kind: crate::error::NetKind::Auth,
                url: redact(url).to_string(),
                msg: "authentication failed (401)".into(),
            });
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_the_upload_state() {
        assert_eq!(
            redact("http://h/v2/r/blobs/uploads/u?_state=abc&digest=x"),
            "http://h/v2/r/blobs/uploads/u"
        );
    }
}
