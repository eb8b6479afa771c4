//! Credential helpers: `docker-credential-NAME get`, found on `PATH`, given the server URL on
//! stdin, answering `{"Username": …, "Secret": …}` (or "credentials not found").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{identity_token, is_docker_hub, malformed, AuthEnv, Credentials, DOCKER_HUB_URL};
use crate::error::{Error, Result};

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
pub(super) fn run_helper(
    env: &AuthEnv,
    file: &Path,
    name: &str,
    host: &str,
) -> Result<Option<Credentials>> {
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
