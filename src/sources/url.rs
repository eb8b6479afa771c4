//! `http://` and `https://` downloads: streamed to a staging file while hashed, never held in
//! memory, and refused if the bytes do not match the `#sha256=` pin.

use std::fs::File;
use std::path::Path;

use super::Needed;
use crate::error::{Error, Result};
use crate::format::{Artifact, ArtifactKind, Digest, Entry, EntryType};
use crate::fsutil::{self, CopyError};
use crate::net;
use crate::progress::Progress;

fn name_from_url(url: &reqwest::Url) -> Option<String> {
    url.path_segments()?
        .rfind(|s| !s.is_empty())
        .map(str::to_string)
}

pub(super) fn resolve(
    url: &str,
    pin: Option<Digest>,
    given: &str,
    name: Option<&str>,
    staging: &Path,
    progress: &dyn Progress,
) -> Result<(Artifact, Vec<Needed>)> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::Usage(format!("{url}: not a valid URL ({e})")))?;
    let name = match name {
        Some(n) => n.to_string(),
        None => name_from_url(&parsed).ok_or_else(|| {
            Error::Usage(format!(
                "{url}: cannot derive a file name from the URL; set a name"
            ))
        })?,
    };
    fsutil::create_dir_all(staging)?;
    let dest = staging.join("download");
    let http = |msg: String| Error::Http {
        url: url.to_string(),
        msg,
    };
    let mut resp = net::client()?
        .get(parsed)
        .send()
        .map_err(|e| http(error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(http(format!("server answered {}", resp.status())));
    }
    let final_url = resp.url().to_string();
    let expected_len = resp.content_length();
    let mut file = File::create(&dest).map_err(|e| Error::io("create", &dest, e))?;
    progress.start(&format!("downloading {name}"), expected_len.unwrap_or(0));
    let (digest, size) =
        fsutil::copy_hashed(&mut resp, &mut file, progress).map_err(|e| match e {
            CopyError::Read { after, source } => http(format!(
                "download failed after {after} bytes: {}",
                error_chain(&source)
            )),
            CopyError::Write(e) => Error::io("write", &dest, e),
        })?;
    progress.finish();
    if let Some(len) = expected_len {
        if len != size {
            return Err(http(format!("download ended after {size} of {len} bytes")));
        }
    }
    file.sync_all().map_err(|e| Error::io("sync", &dest, e))?;
    if let Some(expected) = pin {
        if expected != digest {
            return Err(Error::DigestMismatch {
                what: format!("download of {url}"),
                expected,
                actual: digest,
            });
        }
    }
    let entry = Entry {
        path: name.clone(),
        kind: EntryType::File,
        blob: Some(digest),
        size: Some(size),
        executable: false,
    };
    let artifact = Artifact {
        name,
        kind: ArtifactKind::File,
        source: given.to_string(),
        identity: format!("{final_url} {digest}"),
        entries: vec![entry],
        image: None,
        hf: None,
    };
    Ok((
        artifact,
        vec![Needed {
            digest,
            size,
            path: dest,
        }],
    ))
}

/// An error and its causes on one line (reqwest's top-level message alone is often vague).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}
