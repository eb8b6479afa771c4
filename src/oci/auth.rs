//! Registry credentials: explicit (`--creds`, environment) first, then the files the ecosystem's
//! tools write (`$REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json`,
//! `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`).

use super::client::Credentials;
use crate::error::{Error, Result};

/// Credentials for `host` from the auth files, if any. (Filled in by the auth work.)
pub fn lookup(_host: &str) -> Result<Option<Credentials>> {
    Ok(None)
}

/// Parses `USER:PASSWORD` (the password may contain `:`).
pub fn parse_creds(s: &str) -> Result<Credentials> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }),
        _ => Err(Error::Usage(
            "--creds must be USER:PASSWORD (the value is not shown)".into(),
        )),
    }
}
