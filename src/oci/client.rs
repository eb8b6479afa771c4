//! A minimal OCI distribution client for pulling: manifests (with the full `Accept` list that
//! Docker Distribution 2.8 needs) and blobs (streamed, never held in memory), each checked
//! against its digest; anonymous-token, Bearer and Basic auth from `WWW-Authenticate`
//! challenges. reqwest drops `Authorization` when a redirect leaves the registry's origin.

use std::io::{Read, Write};
use std::sync::Mutex;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;

use super::challenge;
use crate::error::{Error, Result};
use crate::format::Digest;
use crate::fsutil::{self, CopyError};
use crate::net;
use crate::progress::Silent;

/// Every manifest type airlock accepts, in the order registries should prefer.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest accepted (Distribution's own limit is 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// A manifest as fetched: exact bytes, media type, and digest (verified).
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

enum Auth {
    None,
    Bearer(String),
    Basic,
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
    auth: Mutex<Auth>,
}

impl Registry {
    /// A client for `host` (`name[:port]`). HTTPS; for hosts that allow plain HTTP (see
    /// [`ConnectOptions::allows_plain_http`]) HTTPS is tried first and plain HTTP used when the
    /// TLS connection cannot be made, as docker does.
    pub fn new(host: &str, opts: &ConnectOptions) -> Result<Registry> {
        let http = net::client_with_roots(&opts.ca_certs)?;
        let creds = match &opts.creds {
            Some(c) => Some(c.clone()),
            None => super::auth::lookup(host)?,
        };
        let mut base = format!("https://{host}");
        if opts.allows_plain_http(host) {
            let probe = http.get(format!("{base}/v2/")).send();
            if matches!(&probe, Err(e) if e.is_connect() || e.is_request()) {
                base = format!("http://{host}");
            }
        }
        Ok(Registry {
            http,
            base,
            creds,
            auth: Mutex::new(Auth::None),
        })
    }

    /// The base URL in use (`https://host` or `http://host`).
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorize(&self, rb: RequestBuilder) -> RequestBuilder {
        match &*self.auth.lock().expect("not poisoned") {
            Auth::None => rb,
            Auth::Bearer(t) => rb.bearer_auth(t),
            Auth::Basic => match &self.creds {
                Some(c) => rb.basic_auth(&c.username, Some(&c.password)),
                None => rb,
            },
        }
    }

    /// Sends a request, answering one auth challenge if the registry asks for it.
    fn send(
        &self,
        url: &str,
        build: impl Fn(&Client) -> RequestBuilder,
        scope: &str,
    ) -> Result<Response> {
        let http_err = |e: reqwest::Error| Error::Http {
            url: url.to_string(),
            msg: e.to_string(),
        };
        let resp = self.authorize(build(&self.http)).send().map_err(http_err)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let header = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let challenges = challenge::parse(&header);
        if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = self.fetch_token(c, scope)?;
            *self.auth.lock().expect("not poisoned") = Auth::Bearer(token);
        } else if challenges.iter().any(|c| c.scheme == "basic") && self.creds.is_some() {
            *self.auth.lock().expect("not poisoned") = Auth::Basic;
        } else {
            return Err(Error::Http {
                url: url.to_string(),
                msg: "authentication required (401); give credentials".into(),
            });
        }
        let resp = self.authorize(build(&self.http)).send().map_err(http_err)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(Error::Http {
                url: url.to_string(),
                msg: "authentication failed (401)".into(),
            });
        }
        Ok(resp)
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
            q.append_pair("scope", scope);
            if let Some(service) = c.param("service") {
                q.append_pair("service", service);
            }
            if let Some(cr) = &self.creds {
                q.append_pair("account", &cr.username);
            }
        }
        let mut rb = self.http.get(token_url);
        if let Some(cr) = &self.creds {
            rb = rb.basic_auth(&cr.username, Some(&cr.password));
        }
        let resp = rb.send().map_err(|e| Error::Http {
            url: realm.to_string(),
            msg: e.to_string(),
        })?;
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
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| Error::Http {
            url: realm.to_string(),
            msg: format!("token response is not JSON: {e}"),
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
        let resp = self.send(
            &url,
            |c| c.get(&url).header("Accept", MANIFEST_ACCEPT),
            &format!("repository:{repo}:pull"),
        )?;
        if !resp.status().is_success() {
            return Err(Error::Http {
                url,
                msg: format!("registry answered {}", resp.status()),
            });
        }
        let media_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
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

    /// Streams blob `digest` into `out`, verifying it; returns its size. `out` must be
    /// discarded on error.
    pub fn blob_to(&self, repo: &str, digest: &Digest, out: &mut dyn Write) -> Result<u64> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let mut resp = self.send(&url, |c| c.get(&url), &format!("repository:{repo}:pull"))?;
        if !resp.status().is_success() {
            return Err(Error::Http {
                url,
                msg: format!("registry answered {}", resp.status()),
            });
        }
        let (actual, size) = fsutil::copy_hashed(&mut resp, out, &Silent).map_err(|e| match e {
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

    /// Opens blob `digest` for streaming; the caller checks the digest of what it reads.
    pub fn blob_stream(&self, repo: &str, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.send(&url, |c| c.get(&url), &format!("repository:{repo}:pull"))?;
        if !resp.status().is_success() {
            return Err(Error::Http {
                url,
                msg: format!("registry answered {}", resp.status()),
            });
        }
        Ok(Box::new(resp))
    }
}
