//! The HTTP client shared by every network source: rustls with the ring provider, system trust
//! roots, bounded inactivity timeouts, redirects followed (reqwest drops credentials on
//! cross-host redirects).

use std::sync::Once;
use std::time::Duration;

use crate::error::{Error, Result};

static PROVIDER: Once = Once::new();

/// Inactivity timeout: a request or a body read that makes no progress for this long fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(120);

pub fn client() -> Result<reqwest::blocking::Client> {
    client_with_roots(&[])
}

/// Like [`client`], also trusting the CA certificates in the given PEM files (`--ca-cert`).
pub fn client_with_roots(ca_files: &[std::path::PathBuf]) -> Result<reqwest::blocking::Client> {
    let mut certs = Vec::new();
    for path in ca_files {
        let pem = std::fs::read(path).map_err(|e| Error::io("read CA certificate", path, e))?;
        let found = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::Usage(format!(
                "{}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
        if found.is_empty() {
            return Err(Error::Usage(format!(
                "{}: no PEM certificate in this file",
                path.display()
            )));
        }
        certs.extend(found);
    }
    PROVIDER.call_once(|| {
        // Fails only if another provider was installed first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::blocking::Client::builder()
        .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .timeout(IO_TIMEOUT)
        .tls_certs_merge(certs)
        .build()
        .map_err(|e| Error::Other(format!("cannot set up the HTTP client: {e}")))
}
