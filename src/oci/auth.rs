//! Registry credentials: explicit (`--creds`, environment) first, then the files the ecosystem's
//! tools write (`$REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json`,
//! `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`).

use super::client::Credentials;
use crate::error::Result;

/// Credentials for `host` from the auth files, if any. (Filled in by the auth work.)
pub fn lookup(_host: &str) -> Result<Option<Credentials>> {
    Ok(None)
}
