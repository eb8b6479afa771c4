//! The pull side of the registry API: manifests (verified against their digest), HEAD checks
//! for manifests and blobs, and blob downloads — streamed and verified ([`Registry::blob_to`])
//! or resumable with `Range` after a broken connection ([`BlobReader`]).

use std::io::{self, Read, Write};
use std::ops::Deref;
use std::sync::Arc;

use reqwest::blocking::Response;
use reqwest::StatusCode;

use super::{
    header, status_error, FetchedManifest, Registry, Replay, MANIFEST_ACCEPT, MAX_MANIFEST,
};
use crate::error::{Error, Result};
use crate::format::Digest;
use crate::fsutil::{self, CopyError};
use crate::net;
use crate::oci::model::Descriptor;
use crate::progress::Silent;

impl Registry {
    /// Fetches a manifest by tag or digest and verifies its digest against the registry's
    /// `Docker-Content-Digest` and, when fetched by digest, against that digest.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self.request(
            Replay::Safe,
            &url,
            |c| c.get(&url).header("Accept", MANIFEST_ACCEPT),
            &format!("repository:{repo}:pull"),
        )?;
        if !resp.status().is_success() {
            return Err(status_error(&url, "", resp));
        }
        let media_type = header(&resp, "content-type").to_string();
        let claimed = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        resp.take(MAX_MANIFEST + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Http {
                kind: crate::error::NetKind::Network,
                url: url.clone(),
                msg: e.to_string(),
            })?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(Error::Http {
                kind: crate::error::NetKind::Network,
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
        let mut reader = BlobReader::open(self, repo, *digest, None)?;
        let url = reader.url.clone();
        let (actual, size) =
            fsutil::copy_hashed(&mut reader, out, &Silent).map_err(|e| match e {
                CopyError::Read { after, source } => Error::Http {
                    kind: crate::error::NetKind::Network,
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

    /// A reader over blob `desc` that survives broken connections: after an error mid-body it
    /// asks again with `Range: bytes=<received>-` and continues from a `206`; a registry
    /// answering `200` instead is read from the start and the bytes already delivered are
    /// skipped. It gives up after [`RetryPolicy::attempts`] consecutive tries without progress.
    /// It never yields more than `desc.size` bytes and reports a short body as an error, but it
    /// does not hash: **the caller checks the digest**.
    pub fn blob_reader(
        self: &Arc<Self>,
        repo: &str,
        desc: &Descriptor,
    ) -> Result<BlobReader<Arc<Registry>>> {
        BlobReader::open(self.clone(), repo, desc.digest, Some(desc.size))
    }
}

/// A resumable blob download; see [`Registry::blob_reader`].
pub struct BlobReader<R: Deref<Target = Registry>> {
    reg: R,
    url: String,
    scope: String,
    size: Option<u64>,
    offset: u64,
    resp: Option<net::Guarded<Response>>,
    /// Consecutive failed tries without progress.
    failures: u32,
    /// Offset at the last failure, to tell whether the next try made progress.
    failed_at: u64,
    resumes: u32,
}

impl<R: Deref<Target = Registry>> BlobReader<R> {
    fn open(reg: R, repo: &str, digest: Digest, size: Option<u64>) -> Result<Self> {
        let url = reg.url(&format!("/v2/{repo}/blobs/{digest}"));
        let mut r = BlobReader {
            reg,
            url,
            scope: format!("repository:{repo}:pull"),
            size,
            offset: 0,
            resp: None,
            failures: 0,
            failed_at: 0,
            resumes: 0,
        };
        r.connect()?;
        Ok(r)
    }

    /// How many times the download was resumed after a broken connection.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// Bytes delivered so far.
    pub fn position(&self) -> u64 {
        self.offset
    }

    fn connect(&mut self) -> Result<()> {
        let offset = self.offset;
        let url = self.url.clone();
        let transfer = self.reg.transfer;
        let mut resp = self.reg.request(
            Replay::Safe,
            &url,
            |c| {
                let rb = c.get(&url);
                if offset > 0 {
                    rb.header("Range", format!("bytes={offset}-"))
                } else {
                    rb
                }
            },
            &self.scope,
        )?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                // Content-Range: bytes <start>-<end>/<total|*>
                let cr = header(&resp, "content-range");
                let start = cr
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if start != Some(offset) {
                    return Err(Error::Http {
 kind: crate::error::NetKind::Network,
                        url,
                        msg: format!(
                            "asked to resume at byte {offset}, the registry sent Content-Range {cr:?}"
                        ),
                    });
                }
            }
            s if s.is_success() && s != StatusCode::PARTIAL_CONTENT => {
                if self.size.is_none() {
                    self.size = resp.content_length();
                }
                if offset > 0 {
                    // No Range support: read again from the start, dropping what we have.
                    let skipped = io::copy(&mut (&mut resp).take(offset), &mut io::sink())
                        .map_err(|e| Error::Http {
                            kind: crate::error::NetKind::Network,
                            url: url.clone(),
                            msg: format!("restarting the download (no Range support): {e}"),
                        })?;
                    if skipped != offset {
                        return Err(Error::Http {
                            kind: crate::error::NetKind::Network,
                            url,
                            msg: format!(
                                "restarting the download: the body ended after {skipped} bytes"
                            ),
                        });
                    }
                }
            }
            _ => return Err(status_error(&url, "", resp)),
        }
        self.resp = Some(transfer.guard(resp));
        Ok(())
    }
}

impl<R: Deref<Target = Registry>> Read for BlobReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.resp.is_none() {
                self.connect()
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
            let resp = self.resp.as_mut().expect("connected");
            let failure = match resp.read(buf) {
                Ok(0) => match self.size {
                    Some(s) if self.offset < s => io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("body ended after {} of {s} bytes", self.offset),
                    ),
                    _ => return Ok(0),
                },
                Ok(n) => {
                    self.offset += n as u64;
                    if let Some(s) = self.size {
                        if self.offset > s {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("{}: more than the {s} bytes expected", self.url),
                            ));
                        }
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Too slow is final (resuming would let a dripping server go on for ever), and so is a stop.
                Err(e) if net::is_final(&e) => {
                    return Err(io::Error::new(e.kind(), format!("{}: {e}", self.url)))
                }
                Err(e) => e,
            };
            self.resp = None;
            if self.offset > self.failed_at {
                self.failures = 0;
            }
            self.failed_at = self.offset;
            self.failures += 1;
            let policy = self.reg.retry;
            if self.failures >= policy.attempts {
                return Err(io::Error::new(
                    failure.kind(),
                    format!(
                        "{failure} (gave up at byte {} after {} resumes)",
                        self.offset, self.resumes
                    ),
                ));
            }
            std::thread::sleep(policy.delay(self.failures - 1));
            self.resumes += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_readers_can_move_to_other_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Registry>();
        send::<BlobReader<Arc<Registry>>>();
    }
}
