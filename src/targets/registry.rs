//! The registry target: pushes every image artifact of an admitted bundle into an OCI registry,
//! keeping manifest digests: blobs, then child manifests, then the index — all while staging,
//! by digest, so they name nothing — and the tags last of every target's commit.
//!
//! Blobs stream to the registry from the staging area when a local target staged them, else
//! straight from the bundle's chunks as they are read and verified. That cannot expose
//! unverified content under a tag: the registry stores an upload only under the digest the
//! signed manifest gives (`PUT …?digest=`, checked by the registry, and by airlock's reader,
//! which fails the upload before its last byte on a mismatch), nothing references those blobs
//! until manifests are pushed (themselves verified bytes, by digest), and no tag is written
//! before every target has staged and committed its content. What a failed import leaves in
//! the registry is unreferenced blobs and untagged manifests, which name nothing and which the
//! registry's garbage collection removes.
//!
//! Repository naming: `--registry HOST[:PORT][/PREFIX]` puts the image mirrored from
//! `SRC_HOST/REPO:TAG` at `HOST/PREFIX/SRC_HOST/REPO:TAG` (the source host keeps images from
//! different registries apart; a `:PORT` in it becomes `-PORT`, as `:` cannot appear in a
//! repository name), or at `HOST/PREFIX/REPO:TAG` with `--strip-host`.

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::text::escape;
use crate::format::{ArtifactKind, Digest};
use crate::oci::client::{ConnectOptions, Registry};
use crate::oci::image::{self, BlobSource};
use crate::oci::model::Descriptor;
use crate::oci::push::{self, PushOptions, PushReport};
use crate::oci::reference::Reference;
use crate::output;
use crate::progress::Progress;
use crate::stage::{Admitted, Demand, Journal, Staged, Staging};

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
    /// Every blob (config, layer) the image reaches: digest and size.
    #[serde(skip)]
    pub blobs: Vec<(Digest, u64)>,
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
pub fn plan(
    bundle: &Admitted,
    artifacts: &[usize],
    target: &Target,
    naming: Naming,
) -> Result<Vec<ImagePush>> {
    let mut out: Vec<ImagePush> = Vec::new();
    for a in artifacts.iter().map(|&i| &bundle.manifest().artifacts[i]) {
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
            blobs: g.blobs.iter().map(|d| (d.digest, d.size)).collect(),
        });
    }
    Ok(out)
}

#[derive(Serialize)]
struct RegistryReport<'a> {
    host: &'a str,
    prefix: Option<&'a str>,
    naming: Naming,
    images: &'a [ImagePush],
    /// What each push did (absent in a dry run).
    #[serde(skip_serializing_if = "<[PushReport]>::is_empty")]
    pushed: &'a [PushReport],
}

/// The registry target: `--registry HOST[:PORT][/PREFIX]`.
pub struct RegistryTarget {
    target: Target,
    naming: Naming,
    connect: ConnectOptions,
    pushes: Vec<ImagePush>,
    reg: Option<Arc<Registry>>,
    /// Each push's report, and its top manifest's bytes (read while staging).
    pushed: Vec<PushReport>,
    tops: Vec<Vec<u8>>,
    /// Version 5: the external blobs (not carried) each repository already holds (`HEAD` at
    /// the probe): not pushed, so not needed from elsewhere.
    present: std::collections::HashSet<(String, Digest)>,
    /// The external blobs the images reach.
    externals: std::collections::HashSet<Digest>,
}

impl RegistryTarget {
    pub fn new(target: Target, naming: Naming, connect: ConnectOptions) -> RegistryTarget {
        RegistryTarget {
            target,
            naming,
            connect,
            pushes: Vec::new(),
            reg: None,
            pushed: Vec::new(),
            tops: Vec::new(),
            present: Default::default(),
            externals: Default::default(),
        }
    }
    fn registry(&mut self) -> Result<Arc<Registry>> {
        if self.reg.is_none() {
            self.reg = Some(Arc::new(Registry::new(&self.target.host, &self.connect)?));
        }
        Ok(Arc::clone(self.reg.as_ref().expect("set")))
    }
}

impl super::Target for RegistryTarget {
    fn name(&self) -> &'static str {
        "registry"
    }
    fn accepts(&self, kind: ArtifactKind) -> bool {
        matches!(kind, ArtifactKind::Image | ArtifactKind::OllamaModel)
    }
    fn plan(&mut self, bundle: &Admitted, artifacts: &[usize]) -> Result<()> {
        self.pushes = plan(bundle, artifacts, &self.target, self.naming)?;
        self.externals = self
            .pushes
            .iter()
            .flat_map(|p| p.blobs.iter().map(|(d, _)| *d))
            .filter(|d| bundle.is_external(d))
            .collect();
        Ok(())
    }
    /// Every repository: the registry answers, the credentials work, pushing is permitted;
    /// and (a delta bundle) which external blobs each repository already holds (`HEAD`).
    fn probe(&mut self) -> Result<()> {
        let reg = self.registry()?;
        let mut seen = std::collections::HashSet::new();
        for p in &self.pushes {
            if seen.insert(p.repository.clone()) {
                push::probe(&reg, &p.repository).map_err(|e| annotate(e, p))?;
            }
            let scope = push::push_scope(&p.repository, &[]);
            for (d, _) in p.blobs.iter().filter(|(d, _)| self.externals.contains(d)) {
                let key = (p.repository.clone(), *d);
                if !self.present.contains(&key)
                    && reg
                        .blob_exists_scoped(&p.repository, d, &scope)
                        .map_err(|e| annotate(e, p))?
                {
                    self.present.insert(key);
                }
            }
        }
        Ok(())
    }
    /// Every blob an image reaches that its repository does not hold (as far as the probe
    /// asked: the external ones).
    fn reads(&self) -> Vec<Digest> {
        let mut out: Vec<Digest> = self
            .pushes
            .iter()
            .flat_map(|p| {
                p.blobs
                    .iter()
                    .filter(|(d, _)| !self.present.contains(&(p.repository.clone(), *d)))
                    .map(|(d, _)| *d)
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
    /// Each blob of each image pushed: the registry's host, the repository.
    fn locations(&self, bundle: &Admitted) -> Vec<(Digest, crate::state::Location)> {
        self.pushes
            .iter()
            .flat_map(|p| {
                p.blobs.iter().map(|(d, size)| {
                    (
                        *d,
                        crate::state::Location {
                            store: crate::state::StoreKind::Registry,
                            root: self.target.host.clone(),
                            path: p.repository.clone(),
                            size: *size,
                            bundle_id: bundle.manifest().bundle_id.clone(),
                        },
                    )
                })
            })
            .collect()
    }
    fn demand(&self) -> Option<Demand> {
        None
    }
    /// Blobs and manifests by digest, for every image, in bundle order; a blob an earlier image
    /// already pushed to another repository is mounted from there rather than uploaded again.
    fn stage(
        &mut self,
        bundle: &Admitted,
        staging: &Staging,
        progress: &dyn Progress,
    ) -> Result<()> {
        let reg = self.registry()?;
        let src = Staged::new(staging, bundle);
        let mut pushed_repos: Vec<String> = Vec::new();
        for p in &self.pushes {
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
            let mut report =
                push::push_image(&reg, &p.repository, None, &p.top, &src, &opts, progress)
                    .map_err(|e| annotate(e, p))?;
            report.tag = p.tag.clone();
            self.pushed.push(report);
            self.tops.push(src.read_small(&p.digest)?);
            if !pushed_repos.contains(&p.repository) {
                pushed_repos.push(p.repository.clone());
            }
        }
        Ok(())
    }
    fn commit_content(&mut self, _staging: &Staging, _j: &mut Journal) -> Result<()> {
        Ok(())
    }
    /// The tags, last of every target. A tag moved from another manifest is put back if a
    /// later step fails; a new tag cannot be removed (Distribution has no tag deletion) and is
    /// named in the rollback's message.
    fn commit_names(&mut self, _staging: &Staging, j: &mut Journal) -> Result<()> {
        let reg = self.registry()?;
        for (i, p) in self.pushes.iter().enumerate() {
            let Some(tag) = &p.tag else { continue };
            crate::interrupt::check()?;
            let prior = push::tag(&reg, &p.repository, tag, &p.top, &self.tops[i])
                .map_err(|e| annotate(e, p))?;
            let moved = !matches!(prior, push::Prior::Same);
            self.pushed[i].tag_updated = moved;
            let (reg, repo, tag, target) = (
                Arc::clone(&reg),
                p.repository.clone(),
                tag.clone(),
                p.target.clone(),
            );
            match prior {
                push::Prior::Same => {}
                push::Prior::Was(desc, bytes) => j.on_rollback(move || {
                    let scope = push::push_scope(&repo, &[]);
                    push::put_manifest(&reg, &repo, &scope, &tag, &desc, &bytes)
                }),
                push::Prior::New => j.on_rollback(move || {
                    Err(Error::Other(format!(
                        "tag {} stays (a registry cannot remove a tag; push the intended image to it)",
                        escape(&target)
                    )))
                }),
            }
        }
        Ok(())
    }
    fn report(&self) -> Vec<(&'static str, serde_json::Value)> {
        let r = RegistryReport {
            host: &self.target.host,
            prefix: self.target.prefix.as_deref(),
            naming: self.naming,
            images: &self.pushes,
            pushed: &self.pushed,
        };
        vec![("registry", serde_json::to_value(r).expect("serialisable"))]
    }
    fn summary(&self, dry_run: bool) -> String {
        let verb = if dry_run || self.pushed.is_empty() {
            "would push"
        } else {
            "pushed"
        };
        let mut s: String = self
            .pushes
            .iter()
            .map(|p| format!("  {verb} {} -> {}\n", escape(&p.source), escape(&p.target)))
            .collect();
        if !self.pushed.is_empty() {
            let sum = |f: fn(&PushReport) -> usize| self.pushed.iter().map(f).sum::<usize>();
            let bytes: u64 = self.pushed.iter().map(|p| p.bytes_uploaded).sum();
            let mut did = vec![format!(
                "uploaded {} ({})",
                super::counted(sum(|p| p.blobs_uploaded), "blob", "blobs"),
                output::bytes(bytes)
            )];
            let mounted = sum(|p| p.blobs_mounted);
            if mounted > 0 {
                did.push(format!(
                    "mounted {}",
                    super::counted(mounted, "blob", "blobs")
                ));
            }
            did.push(format!(
                "pushed {}",
                super::counted(sum(|p| p.manifests_pushed), "manifest", "manifests")
            ));
            let tags = self.pushed.iter().filter(|p| p.tag_updated).count();
            did.push(format!(
                "set {}",
                super::counted(tags, "image tag", "image tags")
            ));
            s += &format!(
                "  into registry {}: {}",
                escape(&self.target.host),
                did.join(", ")
            );
            let present = sum(|p| p.blobs_present) + sum(|p| p.manifests_present);
            if present > 0 {
                s += &format!("; {present} already present");
            }
            s.push('\n');
        }
        s
    }
}

fn annotate(e: Error, p: &ImagePush) -> Error {
    let ctx = format!("pushing {} to {}", p.artifact, p.target);
    match e {
        Error::Other(m) => Error::Other(format!("{ctx}: {m}")),
        Error::Corrupt(m) => Error::Corrupt(format!("{ctx}: {m}")),
        Error::Http { url, msg, kind } => Error::Http {
            kind,
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
