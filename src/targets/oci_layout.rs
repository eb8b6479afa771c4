//! The OCI image layout target (`--oci-layout PATH`): every blob of every image under
//! `blobs/sha256/`, then `oci-layout` if absent, then `index.json` last, merged with what is
//! there: existing entries are kept, an entry with the same `org.opencontainers.image.ref.name`
//! is replaced, new images are added under their ref name. Re-importing writes nothing.
//!
//! [`plan`] only reads (which blobs exist, verified by size and digest; which names are new or
//! replaced) and fails on the first conflict before anything is written; the commit installs
//! each staged blob in `blobs/sha256/` without clobbering, then replaces `index.json` in one
//! rename, last.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Local, LocalPlan, Target};
use crate::error::{Error, Result};
use crate::format::json;
use crate::format::text::escape;
use crate::format::{ArtifactKind, Digest};
use crate::fsutil;
use crate::oci::image::{graph, BlobSource, MAX_MANIFEST};
use crate::oci::layout::{check_layout_file, read_bounded, LAYOUT_FILE, LAYOUT_VERSION};
use crate::oci::model::{self, Descriptor, REF_NAME};
use crate::output;
use crate::stage::{Admitted, Demand, Journal, Need, Staging};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlobAction {
    /// Write the blob.
    Write,
    /// Already present with the same digest: nothing to do.
    Keep,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlobStep {
    pub action: BlobAction,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefAction {
    /// A new name in `index.json`.
    Add,
    /// The name exists for another manifest: its entry is replaced.
    Replace,
    /// The name already points at this manifest.
    Keep,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefStep {
    pub action: RefAction,
    /// The `org.opencontainers.image.ref.name` annotation.
    pub name: String,
    pub digest: Digest,
    pub media_type: String,
    /// The manifest the name pointed at before (for `replace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Digest>,
    #[serde(skip)]
    top: Descriptor,
}

/// What an import into an OCI layout will do.
#[derive(Debug, Clone, Serialize)]
pub struct LayoutPlan {
    pub dest: PathBuf,
    /// `oci-layout` is absent and will be written.
    pub create_layout_file: bool,
    pub blobs: Vec<BlobStep>,
    pub refs: Vec<RefStep>,
    /// The `index.json` found (None: absent), to merge into; and its digest, checked again
    /// before it is replaced so a concurrent change is not lost.
    #[serde(skip)]
    index: Option<(serde_json::Value, Digest)>,
}

impl LayoutPlan {
    pub fn blobs_to_write(&self) -> usize {
        self.blobs
            .iter()
            .filter(|b| b.action == BlobAction::Write)
            .count()
    }
    pub fn bytes_to_write(&self) -> u64 {
        self.blobs
            .iter()
            .filter(|b| b.action == BlobAction::Write)
            .map(|b| b.size)
            .sum()
    }
    /// Whether executing the plan writes nothing.
    pub fn is_noop(&self) -> bool {
        !self.create_layout_file
            && self.blobs_to_write() == 0
            && self.refs.iter().all(|r| r.action == RefAction::Keep)
    }
}

/// Checks a ref name against image-layout.md's grammar:
/// `component ("/" component)*`, `component = alphanum (separator alphanum)*`,
/// `alphanum = [A-Za-z0-9]+`, `separator = [-._:@+] | "--"`.
pub fn valid_ref_name(name: &str) -> bool {
    let sep = |c: char| matches!(c, '-' | '.' | '_' | ':' | '@' | '+');
    !name.is_empty()
        && name.len() <= 4096
        && name.split('/').all(|comp| {
            let b: Vec<char> = comp.chars().collect();
            if b.is_empty()
                || !b[0].is_ascii_alphanumeric()
                || !b[b.len() - 1].is_ascii_alphanumeric()
            {
                return false;
            }
            let mut i = 0;
            while i < b.len() {
                if b[i].is_ascii_alphanumeric() {
                    i += 1;
                } else if b[i] == '-'
                    && b.get(i + 1) == Some(&'-')
                    && b.get(i + 2).is_some_and(|c| c.is_ascii_alphanumeric())
                {
                    i += 2;
                } else if sep(b[i]) && b.get(i + 1).is_some_and(|c| c.is_ascii_alphanumeric()) {
                    i += 1;
                } else {
                    return false;
                }
            }
            true
        })
}

fn ref_name_of(v: &serde_json::Value) -> Option<&str> {
    v.get("annotations")?.get(REF_NAME)?.as_str()
}

/// Works out every step, reading (never writing) `dest`. `images` are (ref name, top manifest)
/// pairs whose blobs `src` holds.
pub fn plan(dest: &Path, images: &[(String, Descriptor)], src: &Admitted) -> Result<LayoutPlan> {
    // The destination itself, its layout file and index.
    fsutil::check_dest_dir(dest)?;
    let layout_file = fsutil::safe_join(dest, LAYOUT_FILE)?;
    let create_layout_file = match fs::symlink_metadata(&layout_file) {
        Err(_) => true,
        Ok(m) if m.is_file() => {
            let what = layout_file.display().to_string();
            check_layout_file(&read_bounded(&layout_file, 4096)?, &what)
                .map_err(|e| Error::Conflict(format!("{e}; not importing into it")))?;
            false
        }
        Ok(_) => {
            return Err(Error::Conflict(format!(
                "{} exists and is not a regular file",
                layout_file.display()
            )))
        }
    };
    let index_path = fsutil::safe_join(dest, "index.json")?;
    let index = match fs::symlink_metadata(&index_path) {
        Err(_) => None,
        Ok(m) if m.is_file() => {
            let bytes = read_bounded(&index_path, MAX_MANIFEST)?;
            let v: serde_json::Value = json::from_slice(&bytes, "index.json").map_err(|e| {
                Error::Conflict(format!(
                    "{}: not a JSON image index ({}); not importing into it",
                    escape(&index_path.display().to_string()),
                    e.detail()
                ))
            })?;
            if v.get("schemaVersion").and_then(|s| s.as_u64()) != Some(2)
                || !v.get("manifests").is_some_and(|m| m.is_array())
            {
                return Err(Error::Conflict(format!(
                    "{}: not an image index (schemaVersion 2 with a manifests list)",
                    index_path.display()
                )));
            }
            Some((v, Digest::of(&bytes)))
        }
        Ok(_) => {
            return Err(Error::Conflict(format!(
                "{} exists and is not a regular file",
                index_path.display()
            )))
        }
    };
    // Names.
    let mut refs = Vec::new();
    let mut names = HashSet::new();
    for (name, top) in images {
        if !valid_ref_name(name) {
            return Err(Error::Usage(format!(
                "{name:?} cannot name an image in an OCI layout (image-layout.md: components of \
                 letters and digits separated by '-', '.', '_', ':', '@', '+', joined by '/')"
            )));
        }
        if !names.insert(name.clone()) {
            return Err(Error::Usage(format!(
                "two images would both be named {name:?} in {}",
                dest.display()
            )));
        }
        let existing: Vec<&serde_json::Value> = index
            .iter()
            .flat_map(|(v, _)| v["manifests"].as_array().into_iter().flatten())
            .filter(|e| ref_name_of(e) == Some(name))
            .collect();
        let same = |e: &&serde_json::Value| {
            e.get("digest").and_then(|d| d.as_str()) == Some(&top.digest.to_string())
                && e.get("mediaType").and_then(|m| m.as_str()) == Some(&top.media_type)
        };
        let (action, replaces) = match existing.as_slice() {
            [] => (RefAction::Add, None),
            [e] if same(e) => (RefAction::Keep, None),
            [e, ..] => (
                RefAction::Replace,
                e.get("digest").and_then(|d| d.as_str()?.parse().ok()),
            ),
        };
        let mut top = top.clone();
        top.annotations.insert(REF_NAME.to_string(), name.clone());
        refs.push(RefStep {
            action,
            name: name.clone(),
            digest: top.digest,
            media_type: top.media_type.clone(),
            replaces,
            top,
        });
    }

    // Blobs: layers and configs first, then manifests children before parents.
    let mut blobs = Vec::new();
    let mut seen = HashSet::new();
    for (_, top) in images {
        let g = graph(src, top)?;
        let all = g
            .blobs
            .iter()
            .chain(g.manifests.iter().map(|(d, _)| d))
            .filter(|d| seen.insert(d.digest))
            .cloned()
            .collect::<Vec<_>>();
        for d in all {
            let path = fsutil::safe_join(dest, &format!("blobs/sha256/{}", d.digest.hex()))?;
            let action = match fs::symlink_metadata(&path) {
                Err(_) => BlobAction::Write,
                Ok(m) if m.is_file() && m.len() == d.size => {
                    let (actual, _) = fsutil::hash_file(&path)?;
                    if actual != d.digest {
                        return Err(Error::Conflict(format!(
                            "{} holds other bytes than blob {} (they hash to {actual}); the \
                             layout is damaged: move it away or import elsewhere",
                            path.display(),
                            d.digest
                        )));
                    }
                    BlobAction::Keep
                }
                Ok(m) => {
                    return Err(Error::Conflict(format!(
                        "{} exists but is not blob {} ({}); the layout is damaged: move it away \
                         or import elsewhere",
                        path.display(),
                        d.digest,
                        if m.is_file() {
                            format!("{} bytes instead of {}", m.len(), d.size)
                        } else {
                            "not a regular file".to_string()
                        }
                    )))
                }
            };
            match src.size(&d.digest) {
                None => {
                    return Err(Error::Corrupt(format!(
                        "image {}: blob {} ({}) is not in the bundle",
                        top.digest, d.digest, d.media_type
                    )))
                }
                Some(s) if s != d.size => {
                    return Err(Error::SizeMismatch {
                        what: format!("image {}", top.digest),
                        digest: d.digest,
                        declared: d.size,
                        detail: format!("is {s} bytes in the bundle"),
                    })
                }
                Some(_) => {}
            }
            blobs.push(BlobStep {
                action,
                digest: d.digest,
                size: d.size,
                media_type: d.media_type.clone(),
                path,
            });
        }
    }
    Ok(LayoutPlan {
        dest: dest.to_path_buf(),
        create_layout_file,
        blobs,
        refs,
        index,
    })
}

/// (ref name, top descriptor) of every image routed here. The ref name is the source
/// reference; for images from a local layout or archive without one, the same `NAME[:TAG]` the
/// registry target would use (`oci-layout:/srv/app:v1` → `app:v1`).
fn layout_images(bundle: &Admitted, artifacts: &[usize]) -> Vec<(String, Descriptor)> {
    artifacts
        .iter()
        .filter_map(|&i| bundle.manifest().artifacts[i].image.as_ref())
        .map(|i| {
            (
                match super::registry::local_name(&i.reference) {
                    Some((repo, Some(tag))) => format!("{repo}:{tag}"),
                    Some((repo, None)) => repo,
                    None => i.reference.clone(),
                },
                Descriptor {
                    media_type: i.media_type.clone(),
                    digest: i.digest,
                    size: i.size,
                    platform: None,
                    artifact_type: None,
                    annotations: Default::default(),
                },
            )
        })
        .collect()
}

impl LocalPlan for LayoutPlan {
    type Options = ();
    fn dest(&self) -> &Path {
        &self.dest
    }
    fn options(&self) {}
    fn routed(bundle: &Admitted, artifacts: &[usize], dest: &Path, _: &()) -> Result<Self> {
        plan(dest, &layout_images(bundle, artifacts), bundle)
    }
}

/// The OCI layout target: `--oci-layout PATH`.
pub type LayoutTarget = Local<LayoutPlan>;

pub use super::execute;

impl Target for LayoutTarget {
    fn name(&self) -> &'static str {
        "oci-layout"
    }
    fn accepts(&self, kind: ArtifactKind) -> bool {
        matches!(kind, ArtifactKind::Image | ArtifactKind::OllamaModel)
    }
    fn plan(&mut self, bundle: &Admitted, artifacts: &[usize]) -> Result<()> {
        self.plan_routed(bundle, artifacts)
    }
    /// Each blob (`blobs/sha256/…`) written or kept.
    fn locations(&self, bundle: &Admitted) -> Vec<(Digest, crate::state::Location)> {
        let p = self.planned();
        let files = p.blobs.iter().map(|b| (b.digest, b.size, b.path.as_path()));
        super::local_locations(crate::state::StoreKind::OciLayout, &p.dest, bundle, files)
    }
    fn demand(&self) -> Option<Demand> {
        self.demand_of(
            self.planned()
                .blobs
                .iter()
                .filter(|b| b.action == BlobAction::Write)
                .map(|b| Need {
                    digest: b.digest,
                    git_sha1: None,
                })
                .collect(),
        )
    }
    /// Every blob into `blobs/sha256/` (never over an existing file).
    fn commit_content(&mut self, staging: &Staging, j: &mut Journal) -> Result<()> {
        let plan = self.planned();
        if plan.is_noop() {
            return Ok(());
        }
        let area = self.area(staging);
        j.mkdirs(&plan.dest.join("blobs/sha256"))?;
        for b in plan.blobs.iter().filter(|b| b.action == BlobAction::Write) {
            area.install(&b.digest, b.size, &b.path, Some(0o644), j)?;
        }
        Ok(())
    }
    /// `oci-layout` if absent, then `index.json` replaced in one rename, last.
    fn commit_names(&mut self, staging: &Staging, j: &mut Journal) -> Result<()> {
        let plan = self.planned();
        let area = self.area(staging);
        if plan.create_layout_file {
            let body = format!("{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}");
            area.write_small(
                &plan.dest.join(LAYOUT_FILE),
                body.as_bytes(),
                Some(0o644),
                None,
                j,
            )?;
        }
        if plan.refs.iter().all(|r| r.action == RefAction::Keep) {
            return Ok(());
        }
        let index_path = plan.dest.join("index.json");
        let (mut index, previous) = match &plan.index {
            Some((v, digest)) => {
                let now = read_bounded(&index_path, MAX_MANIFEST)?;
                if Digest::of(&now) != *digest {
                    return Err(Error::Conflict(format!(
                        "{} changed while importing; run the import again",
                        index_path.display()
                    )));
                }
                (v.clone(), Some(now))
            }
            None => (
                serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": model::OCI_INDEX,
                    "manifests": [],
                }),
                None,
            ),
        };
        let manifests = index["manifests"].as_array_mut().expect("checked in plan");
        for r in plan.refs.iter().filter(|r| r.action != RefAction::Keep) {
            let entry = serde_json::to_value(&r.top).expect("serialisable");
            match manifests
                .iter()
                .position(|e| ref_name_of(e) == Some(&r.name))
            {
                Some(i) => {
                    manifests[i] = entry;
                    // Drop any further entries carrying the same name.
                    let mut k = i + 1;
                    while k < manifests.len() {
                        if ref_name_of(&manifests[k]) == Some(&r.name) {
                            manifests.remove(k);
                        } else {
                            k += 1;
                        }
                    }
                }
                None => manifests.push(entry),
            }
        }
        let bytes = serde_json::to_vec(&index).expect("serialisable");
        area.write_small(&index_path, &bytes, Some(0o644), previous.as_deref(), j)
    }
    fn report(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![(
            "oci_layout",
            serde_json::to_value(self.planned()).expect("serialisable"),
        )]
    }
    fn summary(&self, dry_run: bool) -> String {
        let p = self.planned();
        let mut did = Vec::new();
        let blobs = p.blobs_to_write();
        if blobs > 0 {
            did.push(format!(
                "{} ({})",
                super::counted(blobs, "blob", "blobs"),
                output::bytes(p.bytes_to_write())
            ));
        }
        let refs = p
            .refs
            .iter()
            .filter(|r| r.action != RefAction::Keep)
            .count();
        if refs > 0 {
            did.push(super::counted(refs, "image ref", "image refs"));
        }
        let present = p.blobs.len() - blobs + (p.refs.len() - refs);
        super::summary_line(
            dry_run,
            &format!("OCI layout {}", output::escape_path(&p.dest)),
            &did,
            present,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_follow_the_layout_grammar() {
        for ok in ["t", "1.0", "docker.io/library/nginx:1.27", "a--b", "a@b+c"] {
            assert!(valid_ref_name(ok), "{ok}");
        }
        for bad in ["", "a b", "/a", "a/", "-a", "a-", "a..b", "a---b", "é"] {
            assert!(!valid_ref_name(bad), "{bad}");
        }
    }
}
