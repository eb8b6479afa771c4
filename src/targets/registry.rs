//! The registry target: pushes every image artifact of a verified bundle into an OCI registry,
//! keeping manifest digests (blobs, then child manifests, then the index, then the tag).
//!
//! Repository naming: `--registry HOST[:PORT][/PREFIX]` puts the image mirrored from
//! `SRC_HOST/REPO:TAG` at `HOST/PREFIX/SRC_HOST/REPO:TAG` (the source host keeps images from
//! different registries apart; a `:PORT` in it becomes `-PORT`, as `:` cannot appear in a
//! repository name), or at `HOST/PREFIX/REPO:TAG` with `--strip-host`.

use serde::Serialize;

use crate::bundle::VerifiedBundle;
use crate::error::{Error, Result};
use crate::format::{ArtifactKind, Digest};
use crate::oci::client::Registry;
use crate::oci::image;
use crate::oci::model::Descriptor;
use crate::oci::push::{self, PushOptions, PushReport};
use crate::oci::reference::Reference;

/// Where images go: a registry host and an optional repository prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub host: String,
    pub prefix: Option<String>,
}

impl Target {
    /// Parses `HOST[:PORT][/PREFIX]`.
    pub fn parse(s: &str) -> Result<Target> {
        let s = s.trim_end_matches('/');
        let (host, prefix) = match s.split_once('/') {
            Some((h, p)) => (h, Some(p.to_string())),
            None => (s, None),
        };
        if host.is_empty() || s.contains("://") {
            return Err(Error::Usage(format!(
                "--registry {s:?}: expected HOST[:PORT][/PREFIX], without a scheme"
            )));
        }
        crate::oci::reference::check_host(host).map_err(|why| {
            Error::Usage(format!(
                "--registry {s:?}: expected HOST[:PORT][/PREFIX]: {why}"
            ))
        })?;
        let t = Target {
            host: host.to_string(),
            prefix,
        };
        if let Some(p) = &t.prefix {
            // A prefix must itself be a valid repository path.
            Reference::parse(&format!("{}/{p}", t.host)).map_err(|e| {
                Error::Usage(format!(
                    "--registry prefix {p:?} is not a valid repository path: {e}"
                ))
            })?;
        }
        Ok(t)
    }
}

/// How source references map to target repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Naming {
    /// `HOST/PREFIX/SRC_HOST/REPO` (the default).
    KeepHost,
    /// `HOST/PREFIX/REPO`.
    StripHost,
}

/// One image to push.
#[derive(Debug, Clone, Serialize)]
pub struct ImagePush {
    pub artifact: String,
    /// The reference the image was mirrored from.
    pub source: String,
    /// Repository in the target registry.
    pub repository: String,
    /// Tag to set last (none when the source was pinned by digest only).
    pub tag: Option<String>,
    pub digest: Digest,
    /// `HOST/REPOSITORY[:TAG]@DIGEST`, what to pull inside the enclave.
    pub target: String,
    #[serde(skip)]
    pub top: Descriptor,
}

/// For an image from a local layout or archive whose name is not a registry reference
/// (`oci-layout:PATH:TAG`, `docker-archive:FILE@DIGEST`): the file or directory name as the
/// repository, and the tag if there is one.
pub fn local_name(reference: &str) -> Option<(String, Option<String>)> {
    let rest = reference
        .strip_prefix("oci-layout:")
        .or_else(|| reference.strip_prefix("docker-archive:"))?;
    let (path, tag) = match rest.rsplit_once('@') {
        Some((p, _digest)) => (p, None),
        None => match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, Some(t.to_string())),
            _ => (rest, None),
        },
    };
    let stem = std::path::Path::new(path).file_stem()?.to_str()?;
    let repo: String = stem
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let repo = repo.trim_matches('-').to_string();
    (!repo.is_empty()).then_some((repo, tag))
}

/// Maps a source reference to (repository, tag) in the target.
pub fn map(reference: &str, target: &Target, naming: Naming) -> Result<(String, Option<String>)> {
    let mut parts = Vec::new();
    if let Some(p) = &target.prefix {
        parts.push(p.clone());
    }
    let tag = if let Some((repo, tag)) = local_name(reference) {
        parts.push(repo);
        tag
    } else {
        let r = Reference::parse(reference).map_err(|e| {
            Error::Other(format!("image reference {reference:?} in the bundle: {e}"))
        })?;
        if naming == Naming::KeepHost {
            parts.push(r.host.to_ascii_lowercase().replace(':', "-"));
        }
        parts.push(r.repository.clone());
        r.tag
    };
    let repo = parts.join("/");
    Reference::parse(&format!("{}/{repo}", target.host)).map_err(|e| {
        Error::Usage(format!(
            "{reference} would be pushed as {}/{repo}, which is not a valid name ({e}); try --strip-host or another prefix",
            target.host
        ))
    })?;
    Ok((repo, tag))
}

/// Works out every push, without contacting the registry; fails if an image reaches a blob the
/// bundle does not hold.
pub fn plan(bundle: &VerifiedBundle, target: &Target, naming: Naming) -> Result<Vec<ImagePush>> {
    let mut out: Vec<ImagePush> = Vec::new();
    for a in &bundle.manifest().artifacts {
        if !matches!(a.kind, ArtifactKind::Image | ArtifactKind::OllamaModel) {
            continue;
        }
        let info = a
            .image
            .as_ref()
            .expect("validated: images carry image info");
        let (repository, tag) = map(&info.reference, target, naming)?;
        if let Some(other) = out
            .iter()
            .find(|p| p.repository == repository && p.tag.is_some() && p.tag == tag)
        {
            return Err(Error::Conflict(format!(
                "artifacts {} and {} would both be pushed to {}:{}",
                other.artifact,
                a.name,
                repository,
                tag.as_deref().unwrap_or("")
            )));
        }
        // Everything the image reaches must be in the bundle, checked before any push.
        let top = Descriptor {
            media_type: info.media_type.clone(),
            digest: info.digest,
            size: info.size,
            platform: None,
            artifact_type: None,
            annotations: Default::default(),
        };
        let g = image::graph(bundle, &top)?;
        for d in &g.blobs {
            match bundle.blob(&d.digest) {
                Some(b) if b.size == d.size => {}
                _ => {
                    return Err(Error::Corrupt(format!(
                        "image {} needs blob {} ({} bytes), which the bundle does not hold",
                        a.name, d.digest, d.size
                    )))
                }
            }
        }
        let target_ref = match &tag {
            Some(t) => format!("{}/{repository}:{t}@{}", target.host, info.digest),
            None => format!("{}/{repository}@{}", target.host, info.digest),
        };
        out.push(ImagePush {
            artifact: a.name.clone(),
            source: info.reference.clone(),
            repository,
            tag,
            digest: info.digest,
            target: target_ref,
            top,
        });
    }
    Ok(out)
}

/// Pushes every planned image, in bundle order; a blob an earlier image already pushed to
/// another repository is mounted from there rather than uploaded again.
pub fn execute(
    bundle: &VerifiedBundle,
    reg: &Registry,
    plan: &[ImagePush],
    progress: &dyn crate::progress::Progress,
) -> Result<Vec<PushReport>> {
    let mut reports = Vec::with_capacity(plan.len());
    let mut pushed_repos: Vec<String> = Vec::new();
    for p in plan {
        let opts = PushOptions {
            // Distribution mounts only within one registry; the most recent repositories first.
            mount_from: pushed_repos
                .iter()
                .rev()
                .filter(|r| **r != p.repository)
                .take(4)
                .cloned()
                .collect(),
            ..Default::default()
        };
        let report = push::push_image(
            reg,
            &p.repository,
            p.tag.as_deref(),
            &p.top,
            bundle,
            &opts,
            progress,
        )
        .map_err(|e| annotate(e, p))?;
        if !pushed_repos.contains(&p.repository) {
            pushed_repos.push(p.repository.clone());
        }
        reports.push(report);
    }
    Ok(reports)
}

fn annotate(e: Error, p: &ImagePush) -> Error {
    let ctx = format!("pushing {} to {}", p.artifact, p.target);
    match e {
        Error::Other(m) => Error::Other(format!("{ctx}: {m}")),
        Error::Corrupt(m) => Error::Corrupt(format!("{ctx}: {m}")),
        Error::Http { url, msg } => Error::Http {
            url,
            msg: format!("{msg} ({ctx})"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_references() {
        let t = Target::parse("registry.enclave:5000/mirror").unwrap();
        assert_eq!(
            map("docker.io/library/nginx:1.27", &t, Naming::KeepHost).unwrap(),
            ("mirror/docker.io/library/nginx".into(), Some("1.27".into()))
        );
        assert_eq!(
            map("127.0.0.1:5000/lib/app:1", &t, Naming::KeepHost)
                .unwrap()
                .0,
            "mirror/127.0.0.1-5000/lib/app"
        );
        assert_eq!(
            map("docker.io/library/nginx:1.27", &t, Naming::StripHost)
                .unwrap()
                .0,
            "mirror/library/nginx"
        );
        let bare = Target::parse("reg.local").unwrap();
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            map(&format!("quay.io/org/x@{d}"), &bare, Naming::StripHost).unwrap(),
            ("org/x".into(), None)
        );
        assert_eq!(
            map("oci-layout:/srv/My Images:v1", &bare, Naming::KeepHost).unwrap(),
            ("my-images".into(), Some("v1".into()))
        );
        assert_eq!(
            map(
                &format!("docker-archive:/tmp/app.tar@{d}"),
                &t,
                Naming::KeepHost
            )
            .unwrap(),
            ("mirror/app".into(), None)
        );
        assert!(Target::parse("https://reg").is_err());
        assert!(Target::parse("reg/UPPER").is_err());
    }
}
