//! The client's `trees/<commit>.json`, byte for byte as huggingface_hub writes it.

use std::collections::HashMap;

use serde::Serialize;

use crate::format::Artifact;

/// The client's `trees/<commit>.json` for a complete snapshot whose LFS files all record their
/// pointer's git id (else a truthful listing cannot be written, and none is): huggingface_hub's
/// `write_tree_cache` format, `json.dump(indent=1)` with ASCII escapes, files sorted by path.
pub fn tree_cache(a: &Artifact) -> Option<String> {
    // Field order is the client's (`TreeCacheEntry.to_json`), hence structs, not maps.
    #[derive(Serialize)]
    struct Info {
        size: u64,
        blob_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        lfs_sha256: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        lfs_size: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        xet_hash: Option<String>,
    }
    #[derive(Serialize)]
    struct Doc {
        format_version: u32,
        files: std::collections::BTreeMap<String, Info>,
    }
    let hf = a.hf.as_ref()?;
    if !hf.complete {
        return None;
    }
    let sizes: HashMap<&str, u64> = a
        .entries
        .iter()
        .filter_map(|e| Some((e.path.as_str(), e.size?)))
        .collect();
    let mut files = std::collections::BTreeMap::new();
    for f in &hf.files {
        let size = *sizes.get(f.path.as_str())?;
        let lfs = f.etag.len() == 64;
        let info = Info {
            size,
            blob_id: if lfs {
                f.pointer_oid.clone()?
            } else {
                f.etag.clone()
            },
            lfs_sha256: lfs.then(|| f.etag.clone()),
            lfs_size: lfs.then_some(size),
            xet_hash: f.xet_hash.clone(),
        };
        files.insert(f.path.clone(), info);
    }
    let doc = Doc {
        format_version: 1,
        files,
    };
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    doc.serialize(&mut ser).ok()?;
    // Python's ensure_ascii: every non-ASCII character as \\uXXXX (UTF-16 units).
    let text = String::from_utf8(out).ok()?;
    let mut ascii = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    Some(ascii)
}
