//! Pushing an image from a [`BlobSource`] to a registry, byte-exact so every manifest keeps its
//! digest.
//!
//! Order: every blob (config, layer) first, then child manifests by digest, then the top
//! manifest by digest, and the tag **last**. A registry therefore never holds a tag pointing at
//! a manifest whose blobs or children are missing, whatever point a push fails at; running the
//! same push again completes it, because everything already present is skipped after a `HEAD`.
//!
//! Blobs (up to [`PushOptions::parallel`] at once): `HEAD` (present: skip), then a
//! cross-repository mount from each of [`PushOptions::mount_from`] (`201`: done; `202`: the
//! upload session it opened is used), then an upload: monolithic (`POST`, then `PUT ?digest=`
//! with the whole body, held in memory) up to [`PushOptions::monolithic_max`], chunked above it
//! (`PATCH` with `Content-Range` per chunk of [`PushOptions::chunk_size`], each to the `Location`
//! the previous answer gave, verbatim with Distribution's `_state` query, then `PUT ?digest=`).
//! A chunk's bytes stream from the source through a small bounded pipe (a reading thread, four
//! 1 MiB buffers), so memory stays bounded whatever the chunk and blob sizes.
//! The registry's `Docker-Content-Digest` must match. A blob upload broken by the network or a
//! 5xx is started again from a fresh session (after a `HEAD`, since it may have completed), at
//! most [`RetryPolicy::attempts`](crate::net::RetryPolicy) times, waiting as that one policy says.
//!
//! This file holds the image's order (blobs, child manifests, top manifest, tag), the probe and
//! the tag; `upload` pushes one blob (mount, monolithic or chunked session, retries), `pipe`
//! streams a chunked upload's bytes from the source.

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;

use super::client::{header, status_error, Registry, Replay};
use super::image::{self, BlobSource};
use super::model::Descriptor;
use crate::error::{Error, Result};
use crate::format::Digest;
use crate::progress::Progress;

mod pipe;
mod upload;

use upload::Pusher;

/// Blobs up to this size are uploaded in one `PUT`.
pub const MONOLITHIC_MAX: u64 = 16 << 20;
/// Size of each `PATCH` of a chunked upload (streamed: memory does not grow with it).
pub const CHUNK_SIZE: usize = 256 << 20;
/// Blobs uploaded at once.
pub const PARALLEL: usize = 3;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Repositories on the same registry to try mounting blobs from before uploading them.
    pub mount_from: Vec<String>,
    /// Largest blob uploaded monolithically (held in memory); larger ones go in chunks.
    pub monolithic_max: u64,
    /// Bytes per `PATCH` of a chunked upload.
    pub chunk_size: usize,
    /// Blobs uploaded at once (at least 1).
    pub parallel: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            mount_from: Vec::new(),
            monolithic_max: MONOLITHIC_MAX,
            chunk_size: CHUNK_SIZE,
            parallel: PARALLEL,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PushReport {
    /// Base URL of the registry (`https://host`).
    pub registry: String,
    pub repo: String,
    pub tag: Option<String>,
    /// Digest of the top manifest.
    pub digest: Digest,
    /// Blobs the repository already had (`HEAD` 200).
    pub blobs_present: usize,
    /// Blobs mounted from another repository.
    pub blobs_mounted: usize,
    /// Blobs uploaded, and how many of those in chunks.
    pub blobs_uploaded: usize,
    pub chunked_uploads: usize,
    /// Bytes of blobs uploaded (not counting retried attempts).
    pub bytes_uploaded: u64,
    /// Upload attempts started again after a transient failure.
    pub upload_retries: usize,
    pub manifests_present: usize,
    pub manifests_pushed: usize,
    /// Whether the tag was written (false when it already pointed at `digest`, or no tag).
    pub tag_updated: bool,
}

impl PushReport {
    /// A push of `digest` to `repo` (tag `tag`) at `registry`, nothing counted yet.
    fn new(registry: &str, repo: &str, tag: Option<&str>, digest: Digest) -> PushReport {
        PushReport {
            registry: registry.to_string(),
            repo: repo.to_string(),
            tag: tag.map(str::to_string),
            digest,
            blobs_present: 0,
            blobs_mounted: 0,
            blobs_uploaded: 0,
            chunked_uploads: 0,
            bytes_uploaded: 0,
            upload_retries: 0,
            manifests_present: 0,
            manifests_pushed: 0,
            tag_updated: false,
        }
    }

    /// The same push with every counter at zero.
    fn zeroed(&self) -> PushReport {
        PushReport::new(&self.registry, &self.repo, self.tag.as_deref(), self.digest)
    }

    /// Adds another report's blob counters to this one's.
    fn absorb(&mut self, o: &PushReport) {
        self.blobs_present += o.blobs_present;
        self.blobs_mounted += o.blobs_mounted;
        self.blobs_uploaded += o.blobs_uploaded;
        self.chunked_uploads += o.chunked_uploads;
        self.bytes_uploaded += o.bytes_uploaded;
        self.upload_retries += o.upload_retries;
    }
}

/// The token scope for a push to `repo` mounting from `mount_from`.
pub fn push_scope(repo: &str, mount_from: &[String]) -> String {
    let mut scope = format!("repository:{repo}:pull,push");
    for from in mount_from.iter().filter(|f| *f != repo) {
        scope += &format!(" repository:{from}:pull");
    }
    scope
}

/// Pushes the image whose top manifest is `top` (an index or an image manifest; its bytes and
/// every blob it reaches are read from `src`) to `repo` on `reg`, then points `tag` at it (if
/// given; by digest only otherwise). Manifests are sent with their exact bytes and their
/// descriptor's media type as `Content-Type`. Errors name the registry URL, the repository, the
/// blob or manifest digest, and the HTTP status with the registry's `errors[]` code and message.
pub fn push_image(
    reg: &Registry,
    repo: &str,
    tag: Option<&str>,
    top: &Descriptor,
    src: &dyn BlobSource,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushReport> {
    let g = image::graph(src, top)?;
    let scope = push_scope(repo, &opts.mount_from);
    let mut report = PushReport::new(reg.base(), repo, tag, top.digest);
    let p = Pusher {
        reg,
        repo,
        scope: &scope,
        src,
        opts,
        progress,
    };
    progress.start(
        &format!("push {repo}"),
        g.blobs.iter().map(|d| d.size).sum(),
    );
    let result = (|| {
        p.blobs(&g.blobs, &mut report)?;
        for (desc, bytes) in &g.manifests {
            let reference = desc.digest.to_string();
            if reg.manifest_digest_scoped(repo, &reference, &scope)? == Some(desc.digest) {
                report.manifests_present += 1;
            } else {
                p.put_manifest(&reference, desc, bytes)?;
                report.manifests_pushed += 1;
            }
        }
        if let Some(tag) = tag {
            if reg.manifest_digest_scoped(repo, tag, &scope)? != Some(top.digest) {
                let bytes = &g.manifests.last().expect("the top manifest").1;
                p.put_manifest(tag, top, bytes)?;
                report.tag_updated = true;
            }
        }
        Ok(())
    })();
    progress.finish();
    result.map(|()| report)
}

/// Checks before anything is staged that `repo` on `reg` can be pushed to: the registry answers,
/// the credentials work, and it opens an upload session for the push scope (then abandoned).
pub fn probe(reg: &Registry, repo: &str) -> Result<()> {
    let scope = push_scope(repo, &[]);
    let what = format!("checking that {repo} can be pushed to");
    let url = reg.url(&format!("/v2/{repo}/blobs/uploads/"));
    let resp = reg
        .request(
            Replay::Once,
            &url,
            |c| c.post(&url).header(CONTENT_LENGTH, "0"),
            &scope,
        )
        .map_err(|e| context(e, &what))?;
    if resp.status() != StatusCode::ACCEPTED {
        return Err(status_error(&url, &what, resp));
    }
    let loc = header(&resp, "location");
    if !loc.is_empty() {
        if let Ok(loc) = reg.resolve(loc) {
            let _ = reg.request(Replay::Once, &loc, |c| c.delete(&loc), &scope);
        }
    }
    Ok(())
}

/// What a tag named before [`tag`] moved it.
pub enum Prior {
    /// It already named the manifest: nothing was written.
    Same,
    /// It did not exist.
    New,
    /// It named this manifest (exact bytes), which a rollback puts back.
    Was(Box<Descriptor>, Vec<u8>),
}

/// Points `tag` of `repo` at the manifest `top` (`bytes` its exact bytes; every blob and
/// manifest below it already pushed), and says what the tag named before.
pub fn tag(reg: &Registry, repo: &str, tag: &str, top: &Descriptor, bytes: &[u8]) -> Result<Prior> {
    let scope = push_scope(repo, &[]);
    let previous = reg.manifest_digest_scoped(repo, tag, &scope)?;
    if previous == Some(top.digest) {
        return Ok(Prior::Same);
    }
    let old = match previous {
        Some(d) => {
            let m = reg.manifest(repo, &d.to_string())?;
            Prior::Was(
                Box::new(Descriptor {
                    media_type: m.media_type,
                    digest: m.digest,
                    size: m.bytes.len() as u64,
                    platform: None,
                    artifact_type: None,
                    annotations: Default::default(),
                }),
                m.bytes,
            )
        }
        None => Prior::New,
    };
    put_manifest(reg, repo, &scope, tag, top, bytes)?;
    Ok(old)
}

/// Puts manifest `bytes` under `reference` (its digest or a tag) of `repo`.
pub fn put_manifest(
    reg: &Registry,
    repo: &str,
    scope: &str,
    reference: &str,
    desc: &Descriptor,
    bytes: &[u8],
) -> Result<()> {
    let what = format!(
        "pushing manifest {}{}",
        desc.digest,
        if reference == desc.digest.to_string() {
            String::new()
        } else {
            format!(" as tag {reference}")
        }
    );
    let url = reg.url(&format!("/v2/{repo}/manifests/{reference}"));
    let resp = reg
        .request(
            Replay::Idempotent,
            &url,
            |c| {
                c.put(&url)
                    .header(CONTENT_TYPE, &desc.media_type)
                    .body(bytes.to_vec())
            },
            scope,
        )
        .map_err(|e| context(e, &what))?;
    if resp.status() != StatusCode::CREATED {
        return Err(status_error(&url, &what, resp));
    }
    let claimed = header(&resp, "docker-content-digest");
    if !claimed.is_empty() && claimed != desc.digest.to_string() {
        return Err(Error::Http {
            kind: crate::error::NetKind::Network,
            url,
            msg: format!("{what}: the registry stored it as {claimed}"),
        });
    }
    Ok(())
}

/// Adds what was being pushed to an error's message.
fn context(e: Error, what: &str) -> Error {
    match e {
        Error::Http { url, msg, kind } if !msg.starts_with(what) => Error::Http {
            kind,
            url,
            msg: format!("{what}: {msg}"),
        },
        e => e,
    }
}
