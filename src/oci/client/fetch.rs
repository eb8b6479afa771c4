//! The pull side of the registry API: manifests (verified against their digest), HEAD checks
//! for manifests and blobs, and blob downloads — streamed and verified ([`Registry::blob_to`])
//! or resumable with `Range` after a broken connection ([`net::RangedReader`]).

use std::io::Write;
use std::sync::Arc;

use reqwest::StatusCode;

use super::{
    header, status_error, FetchedManifest, Registry, Replay, MANIFEST_ACCEPT, MAX_MANIFEST,
};
use crate::error::{Error, Result};
use crate::format::Digest;
use crate::fsutil::{self, CopyError};
use crate::net::{self, RangedReader};
use crate::oci::model::Descriptor;
use crate::progress::Silent;

impl Registry {
    /// Fetches a manifest by tag or digest and verifies its digest against the registry's
    /// `Docker-Content-Digest` and, when fetched by digest, against that digest.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let (headers, bytes) = self.retry.read_whole(&url, "manifest", MAX_MANIFEST, || {
            let resp = self.request(
                Replay::Safe,
                &url,
                |c| c.get(&url).header("Accept", MANIFEST_ACCEPT),
                &format!("repository:{repo}:pull"),
            )?;
            if resp.status().is_success() {
                Ok(resp)
            } else {
                Err(status_error(&url, "", resp))
            }
        })?;
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let media_type = text("content-type").unwrap_or_default();
        let claimed = text("docker-content-digest");
        let digest = Digest::of(&bytes);
        let expected = [
            claimed.as_deref(),
            reference.starts_with("sha256:").then_some(reference),
        ];
        for e in expected.into_iter().flatten() {
            let e: Digest = e.parse().map_err(|_| Error::Http {
                kind: crate::error::NetKind::Network,
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

    /// The digest `reference` (a tag or digest) resolves to in `repo`, by HEAD; `None` when
    /// the registry does not have it (404). For plans and dry runs: is this tag already there?
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Result<Option<Digest>> {
        self.manifest_digest_scoped(repo, reference, &format!("repository:{repo}:pull"))
    }

    pub(crate) fn manifest_digest_scoped(
        &self,
        repo: &str,
        reference: &str,
        scope: &str,
    ) -> Result<Option<Digest>> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self.request(
            Replay::Safe,
            &url,
            |c| c.head(&url).header("Accept", MANIFEST_ACCEPT),
            scope,
        )?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let d = header(&resp, "docker-content-digest");
                d.parse().map(Some).map_err(|_| Error::Http {
                    kind: crate::error::NetKind::Network,
                    url,
                    msg: format!("HEAD answered without a valid Docker-Content-Digest ({d:?})"),
                })
            }
            _ => Err(status_error(&url, "", resp)),
        }
    }

    /// Whether `repo` has blob `digest` (HEAD: 200 yes, 404 no).
    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool> {
        self.blob_exists_scoped(repo, digest, &format!("repository:{repo}:pull"))
    }

    pub(crate) fn blob_exists_scoped(
        &self,
        repo: &str,
        digest: &Digest,
        scope: &str,
    ) -> Result<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.request(Replay::Safe, &url, |c| c.head(&url), scope)?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(status_error(&url, &format!("blob {digest}"), resp)),
        }
    }

    /// Streams blob `digest` into `out`, verifying it; returns its size. An interrupted
    /// download resumes with `Range` (see [`BlobReader`]), so `out` only ever receives each
    /// byte once, in order; it must be discarded on error.
    pub fn blob_to(&self, repo: &str, digest: &Digest, out: &mut dyn Write) -> Result<u64> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let mut reader = ranged(self, repo, *digest, None)?;
        let (actual, size) =
            fsutil::copy_hashed(&mut reader, out, &Silent).map_err(|e| match e {
                CopyError::Read { source, .. } => net::unwrap_io(source, &url),
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

    /// A reader over blob `desc` that survives broken connections ([`net::RangedReader`]:
    /// `Range` resumes, a registry answering `200` instead is read from the start and the
    /// bytes already delivered skipped — safe, as the blob is named by its digest). It never
    /// yields more than `desc.size` bytes and reports a short body as an error, but it does
    /// not hash: **the caller checks the digest**.
    pub fn blob_reader(
        self: &Arc<Self>,
        repo: &str,
        desc: &Descriptor,
    ) -> Result<RangedReader<'static>> {
        ranged(self.clone(), repo, desc.digest, Some(desc.size))
    }
}

/// The resumable download of blob `digest` of `repo`, each request through
/// [`Registry::request`] (retries, auth).
fn ranged<'a>(
    reg: impl std::ops::Deref<Target = Registry> + Send + 'a,
    repo: &str,
    digest: Digest,
    size: Option<u64>,
) -> Result<RangedReader<'a>> {
    let url = reg.url(&format!("/v2/{repo}/blobs/{digest}"));
    let scope = format!("repository:{repo}:pull");
    let how = net::Ranged {
        policy: reg.retry,
        transfer: reg.transfer,
        expected: size,
        pinned: true,
    };
    let u = url.clone();
    let connect: net::Connect<'a> = Box::new(move |resume| {
        let resp = reg.request(Replay::Safe, &u, |c| resume.apply(c.get(&u)), &scope)?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(status_error(&u, "", resp))
        }
    });
    RangedReader::open(&url, how, connect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_readers_can_move_to_other_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Registry>();
        send::<RangedReader<'static>>();
    }
}
