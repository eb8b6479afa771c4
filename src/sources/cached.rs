//! The pack cache's hooks for URL sources: a pinned URL the cache holds is not requested at
//! all; a pinned download is kept in the cache once its pin checked.

use std::sync::Arc;

use super::url::{self, Download};
use super::Needed;
use crate::bundle::PlannedBlob;
use crate::cache::{self, Cache, KeyRecord};
use crate::format::{Artifact, ArtifactKind, Entry};

/// The artifact of a pinned URL whose blob the cache holds (`None`: download it). Its identity
/// is the one the download had (its final address after redirects), as the cache recorded it
/// for that pin, else the URL as given.
pub(super) fn url(d: &Download, c: &Arc<Cache>) -> Option<(Artifact, Vec<PlannedBlob>)> {
    let pin = d.pin?;
    let size = c.size_of(&pin)?;
    if d.size.is_some_and(|s| s != size) {
        return None;
    }
    let name = match d.name {
        Some(n) => n.to_string(),
        // No name: the download path says why.
        None => url::name_from_url(&reqwest::Url::parse(d.url).ok()?)?,
    };
    let suffix = format!(" {pin}");
    let identity = c
        .key(&cache::url_key(d.url))
        .filter(|r| r.digest == pin && r.size == size)
        .and_then(|r| r.identity)
        .filter(|i| i.ends_with(&suffix))
        .unwrap_or_else(|| format!("{}{suffix}", d.url));
    let artifact = Artifact {
        name: name.clone(),
        kind: ArtifactKind::File,
        source: d.given.to_string(),
        identity,
        entries: vec![Entry::file(&name, pin, size)],
        image: None,
        hf: None,
    };
    let blob = c.planned(pin, size, format!("download of {}", d.url), None);
    Some((artifact, vec![blob]))
}

/// Keeps a pinned download (checked against its pin by now) and the identity it had.
pub(super) fn keep_url(d: &Download, a: &Artifact, files: &[Needed], c: &Arc<Cache>) {
    if d.pin.is_none() {
        return;
    }
    for n in files {
        c.adopt(&n.path, &n.digest, n.size);
        c.set_key(
            &cache::url_key(d.url),
            &KeyRecord {
                digest: n.digest,
                size: n.size,
                identity: Some(a.identity.clone()),
            },
        );
    }
}
