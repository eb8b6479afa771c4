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

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;

use crate::error::{Error, Result};

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

/// Finds `docker-credential-NAME` on `env.path` (the process `PATH` when unset).
fn find_helper(env: &AuthEnv, program: &str) -> Option<PathBuf> {
    let path = env.path.clone().or_else(|| std::env::var_os("PATH"))?;
    std::env::split_paths(&path)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// Runs `docker-credential-NAME get` for `host`. "credentials not found" → `None`.
fn run_helper(env: &AuthEnv, file: &Path, name: &str, host: &str) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{name}");
    if name.is_empty() || name.contains(['/', '\\']) {
        return Err(malformed(
            file,
            &format!("credential helper name {name:?} is not a plain name"),
        ));
    }
    let origin = format!("credential helper {program} (named in {})", file.display());
    let exe = find_helper(env, &program).ok_or_else(|| {
        Error::Other(format!(
            "{origin}: {program} not found on PATH; install it or remove it from the auth file"
        ))
    })?;
    let server = if is_docker_hub(host) {
        DOCKER_HUB_URL
    } else {
        host
    };
    let spawn = || {
        Command::new(&exe)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    // ETXTBSY: the helper was just written (being updated, or in tests) and a concurrently
    // forked process still holds it open for writing; it goes away within moments.
    let mut tries = 0;
    let mut child = loop {
        match spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => break r,
        }
    }
    .map_err(|e| Error::Other(format!("{origin}: cannot run {}: {e}", exe.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is reported by its status below.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Other(format!("{origin}: {e}")))?;
    if !out.status.success() {
        // Helpers print their error on stdout (docker-credential-helpers) or stderr.
        let msg = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let msg = msg.trim();
        if msg.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        let short: String = msg.chars().take(200).collect();
        return Err(Error::Other(format!(
            "{origin}: `{program} get` for {server} failed ({}): {short}",
            out.status
        )));
    }
    let bad = |what: &str| Error::Other(format!("{origin}: answer for {server} {what}"));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|_| bad("is not JSON"))?;
    let user = v.get("Username").and_then(|u| u.as_str()).unwrap_or("");
    let secret = v
        .get("Secret")
        .and_then(|s| s.as_str())
        .ok_or_else(|| bad("has no \"Secret\""))?;
    if user == "<token>" {
        return Err(identity_token(&origin));
    }
    if user.is_empty() {
        return Err(bad("has no \"Username\""));
    }
    Ok(Some(Credentials {
        username: user.to_string(),
        password: secret.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    fn env_with(dir: &Path) -> AuthEnv {
        AuthEnv {
            path: Some(OsString::new()),
            home: Some(dir.join("home")),
            ..Default::default()
        }
    }

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn auth_json(key: &str, user: &str, pass: &str) -> String {
        format!(
            r#"{{"auths": {{"{key}": {{"auth": "{}"}}}}}}"#,
            B64.encode(format!("{user}:{pass}"))
        )
    }

    fn creds(c: Option<Credentials>) -> Option<(String, String)> {
        c.map(|c| (c.username, c.password))
    }

    fn pair(u: &str, p: &str) -> Option<(String, String)> {
        Some((u.into(), p.into()))
    }

    #[test]
    fn parse_creds_splits_at_the_first_colon() {
        let c = parse_creds("user:pa:ss:").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("user", "pa:ss:")
        );
        let c = parse_creds("user:").unwrap();
        assert_eq!(c.password, "");
        for bad in ["nocolon-secret", ":secret", ""] {
            let e = parse_creds(bad).unwrap_err();
            assert!(matches!(e, Error::Usage(_)), "{e:?}");
            assert!(e.to_string().contains("USER:PASSWORD"), "{e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
        assert!(!format!("{:?}", parse_creds("u:hunter2").unwrap()).contains("hunter2"));
    }

    #[test]
    fn file_order_and_precedence() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let mut env = env_with(d);
        // Nothing anywhere: None, not an error.
        assert!(lookup_in(&env, "r.example:5000").unwrap().is_none());
        // ~/.docker/config.json
        write(
            &d.join("home/.docker/config.json"),
            &auth_json("r.example:5000", "home", "h"),
        );
        assert_eq!(
            creds(lookup_in(&env, "r.example:5000").unwrap()),
            pair("home", "h")
        );
        // $DOCKER_CONFIG replaces ~/.docker.
        env.docker_config = Some(d.join("dc"));
        assert!(lookup_in(&env, "r.example:5000").unwrap().is_none());
        write(
            &d.join("dc/config.json"),
            &auth_json("r.example:5000", "dc", "d"),
        );
        assert_eq!(
            creds(lookup_in(&env, "r.example:5000").unwrap()),
            pair("dc", "d")
        );
        // The containers file comes first...
        env.xdg_runtime_dir = Some(d.join("run"));
        write(
            &d.join("run/containers/auth.json"),
            &auth_json("r.example:5000", "xdg", "x"),
        );
        assert_eq!(
            creds(lookup_in(&env, "r.example:5000").unwrap()),
            pair("xdg", "x")
        );
        // ...but only for hosts it has: others fall through to the docker file.
        write(
            &d.join("dc/config.json"),
            r#"{"auths": {"other.example": {"username": "o", "password": "p"}, "r.example:5000": {"auth": "ZGM6ZA=="}}}"#,
        );
        assert_eq!(
            creds(lookup_in(&env, "other.example").unwrap()),
            pair("o", "p")
        );
        // $REGISTRY_AUTH_FILE replaces the XDG file.
        env.registry_auth_file = Some(d.join("explicit.json"));
        assert_eq!(
            creds(lookup_in(&env, "r.example:5000").unwrap()),
            pair("dc", "d")
        );
        write(
            &d.join("explicit.json"),
            &auth_json("https://r.example:5000/v1/", "raf", "r:a:f"),
        );
        assert_eq!(
            creds(lookup_in(&env, "r.example:5000").unwrap()),
            pair("raf", "r:a:f")
        );
        assert_eq!(
            env.auth_files(),
            vec![d.join("explicit.json"), d.join("dc/config.json")]
        );
        // A port is part of the host: no match for another port or none.
        assert!(lookup_in(&env, "r.example").unwrap().is_none());
    }

    #[test]
    fn url_keys_and_docker_hub_aliases() {
        let t = tempfile::tempdir().unwrap();
        let mut env = env_with(t.path());
        let f = t.path().join("auth.json");
        env.registry_auth_file = Some(f.clone());
        write(&f, &auth_json("https://index.docker.io/v1/", "hub", "pw"));
        for h in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(creds(lookup_in(&env, h).unwrap()), pair("hub", "pw"), "{h}");
        }
        assert!(lookup_in(&env, "quay.io").unwrap().is_none());
        write(&f, &auth_json("docker.io", "hub2", "pw"));
        assert_eq!(
            creds(lookup_in(&env, "registry-1.docker.io").unwrap()),
            pair("hub2", "pw")
        );
        write(&f, &auth_json("http://Reg.Example:443/v2/", "u", "p"));
        assert_eq!(
            creds(lookup_in(&env, "reg.example:443").unwrap()),
            pair("u", "p")
        );
        assert!(lookup_in(&env, "reg.example").unwrap().is_none());
        // An exact key beats a URL-form key for the same host.
        write(
            &f,
            r#"{"auths": {"https://h.example/v1/": {"username": "url", "password": "1"}, "h.example": {"username": "exact", "password": "2"}}}"#,
        );
        assert_eq!(
            creds(lookup_in(&env, "h.example").unwrap()),
            pair("exact", "2")
        );
    }

    #[test]
    fn malformed_files_name_the_file_and_never_the_secret() {
        let t = tempfile::tempdir().unwrap();
        let mut env = env_with(t.path());
        let f = t.path().join("auth.json");
        env.registry_auth_file = Some(f.clone());
        let cases = [
            r#"{"auths": {"h": {"auth": "s3cr3t-not-base64!!"}}}"#.to_string(),
            format!(
                r#"{{"auths": {{"h": {{"auth": "{}"}}}}}}"#,
                B64.encode("s3cr3t")
            ),
            r#"{"auths": {"h": {"password": "s3cr3t"}}}"#.to_string(),
            r#"{"auths": {"h": {"auth": 12}}, "x": "s3cr3t"}"#.to_string(),
            r#"{"auths": "s3cr3t"}"#.to_string(),
            r#"{"auths": {"h": "s3cr3t"}}"#.to_string(),
            r#"{"auths": {"h": {"auth": "s3cr3t"#.to_string(),
            r#"["s3cr3t"]"#.to_string(),
            r#"{"credHelpers": {"h": 5}, "p": "s3cr3t"}"#.to_string(),
        ];
        for text in cases {
            write(&f, &text);
            let e = lookup_in(&env, "h").unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&f.display().to_string()), "{text}: {msg}");
            assert!(!msg.contains("s3cr3t"), "{text}: {msg}");
            assert!(!format!("{e:?}").contains("s3cr3t"), "{text}: {e:?}");
        }
        // Placeholders and unrelated entries are not errors.
        write(&f, r#"{"auths": {"h": {}, "other": {"auth": "!!"}}}"#);
        assert!(lookup_in(&env, "h").unwrap().is_none());
        // An unreadable path (a directory) is an I/O error naming it.
        std::fs::remove_file(&f).unwrap();
        std::fs::create_dir(&f).unwrap();
        let e = lookup_in(&env, "h").unwrap_err();
        assert!(e.to_string().contains(&f.display().to_string()), "{e}");
    }

    #[test]
    fn identity_tokens_are_refused_clearly() {
        let t = tempfile::tempdir().unwrap();
        let mut env = env_with(t.path());
        let f = t.path().join("auth.json");
        env.registry_auth_file = Some(f.clone());
        write(&f, r#"{"auths": {"h": {"identitytoken": "s3cr3t"}}}"#);
        let e = lookup_in(&env, "h").unwrap_err().to_string();
        assert!(e.contains("identity token") && e.contains("--creds"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[cfg(unix)]
    fn helper(dir: &Path, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(format!("docker-credential-{name}"));
        write(&p, &format!("#!/bin/sh\n{script}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn credential_helpers() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        // Echoes the server URL it was asked about as the user name; knows only two servers.
        helper(
            &bin,
            "test",
            r#"[ "$1" = get ] || exit 2
read -r server
case "$server" in
  reg.example:5000|https://index.docker.io/v1/) printf '{"ServerURL":"%s","Username":"%s","Secret":"p:w"}' "$server" "$server" ;;
  tok.example) printf '{"ServerURL":"tok.example","Username":"<token>","Secret":"s3cr3t"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac"#,
        );
        helper(&bin, "broken", "echo 'store locked'; exit 3");
        let mut env = env_with(t.path());
        env.path = Some(std::env::join_paths([t.path().join("nowhere"), bin.clone()]).unwrap());
        let f = t.path().join("auth.json");
        env.registry_auth_file = Some(f.clone());

        // credsStore for everything.
        write(
            &f,
            r#"{"auths": {"reg.example:5000": {}}, "credsStore": "test"}"#,
        );
        assert_eq!(
            creds(lookup_in(&env, "reg.example:5000").unwrap()),
            pair("reg.example:5000", "p:w")
        );
        assert_eq!(
            creds(lookup_in(&env, "index.docker.io").unwrap()),
            pair("https://index.docker.io/v1/", "p:w")
        );
        assert!(lookup_in(&env, "unknown.example").unwrap().is_none());
        let e = lookup_in(&env, "tok.example").unwrap_err().to_string();
        assert!(e.contains("identity token") && !e.contains("s3cr3t"), "{e}");

        // credHelpers beat inline auths and credsStore; inline auths beat credsStore.
        write(
            &f,
            &format!(
                r#"{{"auths": {{"reg.example:5000": {{"auth": "{}"}}, "inline.example": {{"auth": "{}"}}}},
                   "credHelpers": {{"reg.example:5000": "test", "gone.example": "missing"}},
                   "credsStore": "broken"}}"#,
                B64.encode("inline:x"),
                B64.encode("in:line")
            ),
        );
        assert_eq!(
            creds(lookup_in(&env, "reg.example:5000").unwrap()),
            pair("reg.example:5000", "p:w")
        );
        assert_eq!(
            creds(lookup_in(&env, "inline.example").unwrap()),
            pair("in", "line")
        );
        // A helper that fails: its message, the helper's and the file's names.
        let e = lookup_in(&env, "x.example").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-broken")
                && e.contains("store locked")
                && e.contains(&f.display().to_string()),
            "{e}"
        );
        // A helper that is not installed: named.
        let e = lookup_in(&env, "gone.example").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-missing") && e.contains("not found"),
            "{e}"
        );
        // A path-like helper name is refused, not run.
        write(&f, r#"{"credsStore": "../../bin/sh"}"#);
        assert!(lookup_in(&env, "x.example")
            .unwrap_err()
            .to_string()
            .contains("not a plain name"));
    }
}
