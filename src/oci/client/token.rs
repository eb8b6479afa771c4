//! Authentication learnt from a registry's `WWW-Authenticate` challenges: Basic with the
//! configured credentials, or Bearer tokens fetched from the challenge's realm (anonymously or
//! with the credentials) and cached per scope. The credentials themselves come from
//! [`crate::oci::auth`]; [`Registry::request`] answers a 401 through here.

use std::collections::HashMap;
use std::io::Read;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;

use super::{header, redact, Registry};
use crate::error::{Error, Result};
use crate::format::json;
use crate::oci::challenge;

/// Authentication learnt from challenges. Bearer tokens are cached per scope: a token for one
/// repository is never presented for another.
#[derive(Default)]
pub(super) struct AuthState {
    basic: bool,
    bearer: Option<challenge::Challenge>,
    tokens: HashMap<String, String>,
}

pub(super) enum Apply {
    None,
    Basic,
    Bearer(String),
}

impl Registry {
    /// Why no credentials were found in the auth files, for messages.
    fn creds_note(&self) -> String {
        match &self.creds_problem {
            Some(p) => format!(" (the auth files could not be used: {p})"),
            None => String::new(),
        }
    }

    /// The credentials to present for `scope`, fetching a token when the registry is known to
    /// want Bearer auth and none is cached for this scope yet.
    pub(super) fn auth_for(&self, scope: &str) -> Result<Apply> {
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

    pub(super) fn apply(&self, rb: RequestBuilder, auth: &Apply) -> RequestBuilder {
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
    pub(super) fn answer_challenge(&self, resp: &Response, url: &str, scope: &str) -> Result<()> {
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
                kind: crate::error::NetKind::Auth,
                url: redact(url).to_string(),
                msg: format!(
                    "authentication required (401); give --creds USER:PASSWORD or log in with docker/podman login{}",
                    self.creds_note()
                ),
            })
        }
    }

    fn fetch_token(&self, c: &challenge::Challenge, scope: &str) -> Result<String> {
        let realm = c.param("realm").ok_or_else(|| {
            Error::Other(format!("{}: Bearer challenge without realm", self.base))
        })?;
        let mut token_url = reqwest::Url::parse(realm).map_err(|e| Error::Http {
            kind: crate::error::NetKind::Network,
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
        let status_error = |resp: Response| Error::Http {
            kind: crate::error::NetKind::of_status(resp.status().as_u16(), &[]),
            url: realm.to_string(),
            msg: format!("token server answered {}", resp.status()),
        };
        let call = crate::net::Call {
            replay: crate::net::Replay::Safe,
            url: realm,
            reauth: None,
            status_error: &status_error,
        };
        let resp = self.retry.send(&call, || Ok(build(&self.http)))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(Error::Http {
                kind: crate::error::NetKind::Auth,
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
                kind: crate::error::NetKind::of_status(resp.status().as_u16(), &[]),
                url: realm.to_string(),
                msg: format!("token server answered {}", resp.status()),
            });
        }
        let mut body = Vec::new();
        resp.take(1 << 20)
            .read_to_end(&mut body)
            .map_err(|e| Error::Http {
                kind: crate::error::NetKind::Network,
                url: realm.to_string(),
                msg: e.to_string(),
            })?;
        let v: serde_json::Value =
            json::from_slice(&body, "token response").map_err(|e| Error::Http {
                kind: crate::error::NetKind::Network,
                url: realm.to_string(),
                msg: format!("token response is not JSON: {}", e.detail()),
            })?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| Error::Http {
                kind: crate::error::NetKind::Network,
                url: realm.to_string(),
                msg: "token response has no token".into(),
            })
    }
}
