//! Registry credentials: explicit (`--creds USER:PASSWORD`, see [`parse_creds`]) first, then
//! the files the ecosystem's tools write, in the order containers/image (podman, skopeo) reads
//! them:
//!
//! 1. `$REGISTRY_AUTH_FILE`, else `${XDG_RUNTIME_DIR}/containers/auth.json`;
//! 2. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
//!
//! Each file is `{"auths": {KEY: {"auth": base64("user:pass")}}, "credHelpers": {HOST: NAME},
//! "credsStore": NAME}`. Keys are `HOST[:PORT]` or URLs such as `https://HOST/v1/`; Docker Hub
//! goes by several names (`docker.io`, `index.docker.io`, `registry-1.docker.io`,
//! `https://index.docker.io/v1/`). Within one file a `credHelpers` entry for the host wins, then
//! an `auths` entry with credentials, then `credsStore`. Helpers are `docker-credential-NAME`
//! programs run as `docker-credential-NAME get` with the server URL on stdin.
//!
//! Secrets never appear in errors or `Debug` output: JSON is parsed to values and walked by hand,
//! so parser messages cannot quote a password.
//!
//! This file reads the auth files; `helper` runs the credential helpers they name. How a
//! registry's challenges are answered with these credentials is [`super::client`]'s.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::error::{Error, Result};

mod helper;
#[cfg(test)]
mod tests;

use helper::run_helper;

/// A registry user name and password (or token). Never shown: `Debug` redacts the password.
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

/// Where credentials are looked up: the environment variables that matter, captured once so
/// lookups can be tested without touching the process environment.
#[derive(Debug, Clone, Default)]
pub struct AuthEnv {
    /// `$REGISTRY_AUTH_FILE`: replaces `${XDG_RUNTIME_DIR}/containers/auth.json`.
    pub registry_auth_file: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$DOCKER_CONFIG`: the directory holding `config.json` (replaces `~/.docker`).
    pub docker_config: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$PATH`, where `docker-credential-*` helpers are searched.
    pub path: Option<OsString>,
}

impl AuthEnv {
    /// The current process's environment (empty variables count as unset).
    pub fn from_process() -> AuthEnv {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        AuthEnv {
            registry_auth_file: var("REGISTRY_AUTH_FILE").map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            path: var("PATH"),
        }
    }

    /// The auth files consulted, in order (whether or not they exist).
    pub fn auth_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(f) = &self.registry_auth_file {
            files.push(f.clone());
        } else if let Some(d) = &self.xdg_runtime_dir {
            files.push(d.join("containers/auth.json"));
        }
        if let Some(d) = &self.docker_config {
            files.push(d.join("config.json"));
        } else if let Some(h) = &self.home {
            files.push(h.join(".docker/config.json"));
        }
        files
    }
}

/// Credentials for `host` (`name[:port]`) from the auth files of the process environment.
pub fn lookup(host: &str) -> Result<Option<Credentials>> {
    lookup_in(&AuthEnv::from_process(), host)
}

/// Credentials for `host` from the auth files `env` names: the first file that has any for it
/// wins. Missing files are skipped; a malformed one is an error naming it.
pub fn lookup_in(env: &AuthEnv, host: &str) -> Result<Option<Credentials>> {
    for file in env.auth_files() {
        let text = match std::fs::read(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read registry auth file", &file, e)),
        };
        if let Some(c) = lookup_in_file(env, &file, &text, host)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Parses `--creds USER:PASSWORD`: split at the first `:`, so the password may contain `:`.
pub fn parse_creds(s: &str) -> Result<Credentials> {
    match s.split_once(':') {
        Some((user, pass)) if !user.is_empty() => Ok(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
        }),
        Some(_) => Err(Error::Usage(
            "--creds: the user name is empty (expected USER:PASSWORD)".into(),
        )),
        None => Err(Error::Usage(
            "--creds: expected USER:PASSWORD (no ':' found)".into(),
        )),
    }
}

const DOCKER_HUB: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];
/// The key `docker login` uses for Docker Hub, and the server URL its helpers know.
const DOCKER_HUB_URL: &str = "https://index.docker.io/v1/";

fn is_docker_hub(host: &str) -> bool {
    DOCKER_HUB.contains(&host)
}

/// `https://host:port/v1/` → `host:port`; `host/ns` → `host`; Hub names → `docker.io`.
fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    if is_docker_hub(&k) {
        "docker.io".to_string()
    } else {
        k
    }
}

fn malformed(file: &Path, what: &str) -> Error {
    Error::Other(format!("registry auth file {}: {what}", file.display()))
}

fn lookup_in_file(
    env: &AuthEnv,
    file: &Path,
    text: &[u8],
    host: &str,
) -> Result<Option<Credentials>> {
    // serde_json's syntax errors carry only a position, never the text.
    let v: serde_json::Value = serde_json::from_slice(text).map_err(|e| {
        malformed(
            file,
            &format!("not valid JSON (line {}, column {})", e.line(), e.column()),
        )
    })?;
    let obj = v
        .as_object()
        .ok_or_else(|| malformed(file, "not a JSON object"))?;
    let want = normalize_key(host);
    // Helper per registry.
    if let Some(helpers) = obj.get("credHelpers") {
        let helpers = helpers
            .as_object()
            .ok_or_else(|| malformed(file, "\"credHelpers\" is not an object"))?;
        let found = helpers
            .get(host)
            .or_else(|| {
                helpers
                    .iter()
                    .find(|(k, _)| normalize_key(k) == want)
                    .map(|(_, v)| v)
            })
            .map(|h| {
                h.as_str().ok_or_else(|| {
                    malformed(
                        file,
                        &format!("credHelpers entry for {host} is not a string"),
                    )
                })
            })
            .transpose()?;
        if let Some(name) = found {
            return run_helper(env, file, name, host);
        }
    }
    // Inline credentials.
    if let Some(auths) = obj.get("auths") {
        let auths = auths
            .as_object()
            .ok_or_else(|| malformed(file, "\"auths\" is not an object"))?;
        // Exact key first, then any key naming the same host.
        let entry = auths.get(host).map(|e| (host, e)).or_else(|| {
            auths
                .iter()
                .find(|(k, _)| normalize_key(k) == want)
                .map(|(k, e)| (k.as_str(), e))
        });
        if let Some((key, entry)) = entry {
            if let Some(c) = parse_entry(file, key, entry)? {
                return Ok(Some(c));
            }
        }
    }
    // One store for every registry.
    if let Some(store) = obj.get("credsStore") {
        let name = store
            .as_str()
            .ok_or_else(|| malformed(file, "\"credsStore\" is not a string"))?;
        if !name.is_empty() {
            return run_helper(env, file, name, host);
        }
    }
    Ok(None)
}

/// One `auths` entry: `auth` (base64 `user:pass`) or `username`/`password`; `{}` (a
/// placeholder next to a `credsStore`) gives `None`.
fn parse_entry(file: &Path, key: &str, entry: &serde_json::Value) -> Result<Option<Credentials>> {
    let bad = |what: &str| malformed(file, &format!("entry {key:?}: {what}"));
    let e = entry.as_object().ok_or_else(|| bad("not an object"))?;
    let field = |name: &str| -> Result<Option<&str>> {
        match e.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(bad(&format!("\"{name}\" is not a string"))),
        }
    };
    if let Some(auth) = field("auth")? {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("\"auth\" is not valid base64"))?;
        let s = String::from_utf8(raw).map_err(|_| bad("\"auth\" is not UTF-8"))?;
        let (user, pass) = s
            .split_once(':')
            .ok_or_else(|| bad("\"auth\" does not decode to USER:PASSWORD"))?;
        if user.is_empty() {
            return Err(bad("\"auth\" has an empty user name"));
        }
        return Ok(Some(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
        }));
    }
    match (field("username")?, field("password")?) {
        (Some(u), Some(p)) => {
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }))
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(bad("has only one of \"username\" and \"password\""))
        }
        (None, None) => {}
    }
    if field("identitytoken")?.is_some() || field("registrytoken")?.is_some() {
        return Err(identity_token(&format!(
            "registry auth file {}, entry {key:?}",
            file.display()
        )));
    }
    Ok(None)
}

fn identity_token(origin: &str) -> Error {
    Error::Other(format!(
        "{origin}: holds an identity token (OAuth refresh token), which airlock does not \
         support; log in with a user name and password or give --creds USER:PASSWORD"
    ))
}
