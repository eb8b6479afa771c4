//! What crosses, as the officer signs off on it: each artifact's resolved identity (the one
//! rendering `pack`, `inspect`, `verify` and `import` show under "artifacts"), and
//! `inspect --files`, every file and blob with its size and SHA-256.
//!
//! Everything here is read from the manifest (nothing from chunks), and every string from the
//! bundle is escaped before it becomes a cell or a line.

use super::pack::ArtifactSummary;
use crate::format::{Artifact, ArtifactKind, EntryType, Manifest};
use crate::output::{self, escape};
use crate::table::Table;

/// The identity rows of artifact `a`: first where it came from (the source as the packer gave
/// it), then what that resolved to — a Hugging Face repo's revision and commit, an image's (or
/// an Ollama model's) reference, manifest digest, media type and platforms, a download's URL
/// and SHA-256, a local file's path and SHA-256, a directory's path and entry counts.
pub(super) fn rows(a: &Artifact) -> Vec<String> {
    let mut out = vec![format!("from {}", escape(&a.source))];
    match a.kind {
        ArtifactKind::HfRepo => {
            if let Some(hf) = &a.hf {
                out.push(format!(
                    "{} {} at {}",
                    hf.repo_type.as_str(),
                    escape(&hf.repo_id),
                    escape(&hf.endpoint)
                ));
                out.push(format!(
                    "revision {} → commit {}{}",
                    escape(&hf.revision),
                    escape(&hf.commit),
                    if hf.complete {
                        ""
                    } else {
                        " (partial: --include/--exclude left files out)"
                    }
                ));
            }
        }
        ArtifactKind::Image | ArtifactKind::OllamaModel => {
            if let Some(i) = &a.image {
                out.push(format!("reference {}", escape(&i.reference)));
                out.push(format!("manifest {} ({})", i.digest, output::bytes(i.size)));
                out.push(format!("media type {}", escape(&i.media_type)));
                if !i.platforms.is_empty() {
                    let shown: Vec<String> =
                        i.platforms.iter().map(|p| escape(p).to_string()).collect();
                    out.push(format!("platforms {}", shown.join(", ")));
                }
            }
        }
        ArtifactKind::File => {
            // A download's identity is "URL DIGEST" (the URL fetched, after redirects).
            let download = a.source.starts_with("http://") || a.source.starts_with("https://");
            match a.identity.rsplit_once(' ') {
                Some((fetched, _)) if download => out.push(format!("url {}", escape(fetched))),
                _ => out.push(format!("path {}", escape(&a.identity))),
            }
            if let Some(d) = a.entries.first().and_then(|e| e.blob) {
                out.push(format!("sha256 {}", d.hex()));
            }
        }
        ArtifactKind::Directory => {
            out.push(format!("path {}", escape(&a.identity)));
            let dirs = a
                .entries
                .iter()
                .filter(|e| e.kind == EntryType::Dir)
                .count();
            let files = a.entries.len() - dirs;
            out.push(format!(
                "{} entries: {files} file{}, {dirs} director{}",
                a.entries.len(),
                if files == 1 { "" } else { "s" },
                if dirs == 1 { "y" } else { "ies" }
            ));
        }
    }
    out
}

/// The artifacts table: one row per artifact (name, kind, files, size), its identity rows under
/// it in the last column. Names wrap on a narrow terminal; digests are never cut.
pub(super) fn artifacts_table(artifacts: &[ArtifactSummary], delta: bool) -> Table {
    // A delta bundle (version 5): what each artifact carries and what the enclave must hold.
    let mut head = vec!["NAME", "KIND", "FILES", "SIZE"];
    if delta {
        head.extend(["CARRIED", "EXTERNAL"]);
    }
    head.push("IDENTITY");
    let last = head.len() - 1;
    let mut t = Table::new(&head).right(2).right(3).flexible(0);
    if delta {
        t = t.right(4).right(5);
    }
    for a in artifacts {
        let mut first = true;
        for line in &a.identity {
            let mut row = vec![String::new(); last];
            if first {
                row[0] = escape(&a.name).to_string();
                row[1] = a.kind.as_str().to_string();
                row[2] = a.files.to_string();
                row[3] = output::bytes(a.bytes);
                if delta {
                    row[4] = output::bytes(a.carried_bytes);
                    row[5] = output::bytes(a.external_bytes);
                }
                first = false;
            }
            row.push(line.clone());
            t.row(row);
        }
    }
    t
}

/// `inspect --files`: for each artifact, a table of every entry (path, size in bytes, SHA-256;
/// a directory as `path/`), written line by line through `out` so that a bundle of a million
/// files is never one String. At most one artifact's rows are held at a time.
pub(super) fn write_files(m: &Manifest, width: Option<usize>, out: &mut dyn FnMut(&str)) {
    // Spread over volumes: a VOLUME column names the volume(s) each file's blob lies on.
    let spans = m.is_multi_volume().then(|| super::pack::blob_volumes(m));
    for a in &m.artifacts {
        out(&format!(
            "\nfiles of {} ({}, {} entries)\n",
            escape(&a.name),
            a.kind.as_str(),
            a.entries.len()
        ));
        let mut head = vec!["PATH", "BYTES", "SHA256"];
        if spans.is_some() {
            head.push("VOLUME");
        }
        let mut t = Table::new(&head).right(1).flexible(0);
        for e in &a.entries {
            match e.kind {
                EntryType::File => {
                    let mut row = vec![
                        escape(&e.path).to_string(),
                        e.size.map(|s| s.to_string()).unwrap_or_default(),
                        e.blob.map(|d| d.hex()).unwrap_or_default(),
                    ];
                    if let Some(spans) = &spans {
                        row.push(super::pack::volume_span(
                            e.blob.as_ref().and_then(|b| spans.get(b)),
                        ));
                    }
                    t.row(row)
                }
                EntryType::Dir => t.row(vec![format!("{}/", escape(&e.path))]),
            }
        }
        t.render_to(width, &mut |line| out(line));
    }
}
