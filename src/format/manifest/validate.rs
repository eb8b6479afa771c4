//! [`Manifest::validate`]: every structural invariant and bound of FORMAT.md §Invariants that
//! can be checked without the chunks, the same for every version.

use std::collections::{HashMap, HashSet};

use super::super::limits;
use super::super::paths::{name_key, validate_name, validate_rel_path};
use super::super::pieces::{piece_count, valid_piece_size};
use super::super::text::{escape, find_unsafe};
use super::super::{Digest, FORMAT_NAME, SUPPORTED_VERSIONS};
use super::*;

/// Largest image reference / media type accepted.
const MAX_REFERENCE: usize = 512;

/// Image artifacts: version 2 or later, `image` present exactly for them, entries forming an OCI
/// layout whose blob files are named by their content's digest, the top manifest among them.
fn validate_image(a: &Artifact, version: u32) -> Result<(), Invalid> {
    let is_image = matches!(a.kind, ArtifactKind::Image | ArtifactKind::OllamaModel);
    if a.kind != ArtifactKind::File && a.kind != ArtifactKind::Directory && version < 2 {
        return Err(invalid(format!(
            "artifact {:?} of kind {} needs format version 2, the manifest says {version}",
            a.name,
            a.kind.as_str()
        )));
    }
    validate_hf(a)?;
    let Some(info) = &a.image else {
        if is_image {
            return Err(invalid(format!(
                "{} artifact {:?} has no `image` field",
                a.kind.as_str(),
                a.name
            )));
        }
        return Ok(());
    };
    if !is_image {
        return Err(invalid(format!(
            "artifact {:?} of kind {} carries an `image` field",
            a.name,
            a.kind.as_str()
        )));
    }
    let printable = |s: &str| {
        !s.is_empty() && s.len() <= MAX_REFERENCE && s.bytes().all(|b| b.is_ascii_graphic())
    };
    if !printable(&info.reference) || !printable(&info.media_type) {
        return Err(invalid(format!(
            "image artifact {:?}: reference or media type is empty, too long or not printable ASCII",
            a.name
        )));
    }
    if info.platforms.len() > 256 || info.platforms.iter().any(|p| !printable(p)) {
        return Err(invalid(format!(
            "image artifact {:?}: bad platforms list",
            a.name
        )));
    }
    let mut top = false;
    for e in &a.entries {
        let ok = match (e.path.as_str(), e.kind) {
            ("blobs" | "blobs/sha256", EntryType::Dir) => true,
            ("oci-layout" | "index.json", EntryType::File) => !e.executable,
            (p, EntryType::File) => match (p.strip_prefix("blobs/sha256/"), e.blob) {
                (Some(hex), Some(blob)) if hex == blob.hex() && !e.executable => {
                    if blob == info.digest {
                        top = e.size == Some(info.size);
                    }
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !ok {
            return Err(invalid(format!(
                "image artifact {:?}: entry {:?} does not belong in an OCI layout (blob files must be named by their digest)",
                a.name, e.path
            )));
        }
    }
    if !top {
        return Err(invalid(format!(
            "image artifact {:?}: the top manifest {} ({} bytes) is not among its entries",
            a.name, info.digest, info.size
        )));
    }
    Ok(())
}

/// Hugging Face snapshots: `hf` present exactly for them, a valid repo id and commit, one etag
/// per file entry (same paths), LFS etags equal to the blob digest.
fn validate_hf(a: &Artifact) -> Result<(), Invalid> {
    let Some(hf) = &a.hf else {
        if a.kind == ArtifactKind::HfRepo {
            return Err(invalid(format!(
                "hf-repo artifact {:?} has no `hf` field",
                a.name
            )));
        }
        return Ok(());
    };
    if a.kind != ArtifactKind::HfRepo {
        return Err(invalid(format!(
            "artifact {:?} of kind {} carries an `hf` field",
            a.name,
            a.kind.as_str()
        )));
    }
    let bad = |m: String| invalid(format!("hf-repo artifact {:?}: {m}", a.name));
    validate_repo_id(&hf.repo_id).map_err(|e| bad(format!("repo_id {:?}: {e}", hf.repo_id)))?;
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !hex(&hf.commit, 40) {
        return Err(bad(format!(
            "commit {:?} is not 40 lowercase hex digits",
            hf.commit
        )));
    }
    let printable = |s: &str| {
        !s.is_empty() && s.len() <= MAX_REFERENCE && s.bytes().all(|b| b.is_ascii_graphic())
    };
    if !printable(&hf.revision) || !printable(&hf.endpoint) {
        return Err(bad(
            "revision or endpoint is empty, too long or not printable ASCII".into(),
        ));
    }
    validate_rel_path(&hf.revision).map_err(|e| bad(format!("revision {:?}: {e}", hf.revision)))?;
    let files: HashMap<&str, Option<Digest>> = a
        .entries
        .iter()
        .filter(|e| e.kind == EntryType::File)
        .map(|e| (e.path.as_str(), e.blob))
        .collect();
    if files.len() != hf.files.len() {
        return Err(bad(format!(
            "{} etags for {} file entries",
            hf.files.len(),
            files.len()
        )));
    }
    let mut seen = HashSet::new();
    for f in &hf.files {
        let Some(blob) = files.get(f.path.as_str()) else {
            return Err(bad(format!(
                "etag for {:?}, which is not a file entry",
                f.path
            )));
        };
        if !seen.insert(f.path.as_str()) {
            return Err(bad(format!("two etags for {:?}", f.path)));
        }
        let ok = (hex(&f.etag, 40) && f.pointer_oid.is_none())
            || (hex(&f.etag, 64)
                && blob.map(|b| b.hex()) == Some(f.etag.clone())
                && f.pointer_oid.as_deref().is_none_or(|p| hex(p, 40)));
        if f.xet_hash.as_deref().is_some_and(|x| !hex(x, 64)) {
            return Err(bad(format!(
                "xet_hash of {:?} is not 64 hex digits",
                f.path
            )));
        }
        if !ok {
            return Err(bad(format!(
                "etag {:?} of {:?} is neither a git SHA-1 nor the SHA-256 of its content (or a pointer_oid is not a git SHA-1 of an LFS file)",
                f.etag, f.path
            )));
        }
    }
    Ok(())
}

/// A Hugging Face repo id: `NAME` or `ORG/NAME`, parts of `[A-Za-z0-9_.-]{1,96}`, no `--` or
/// `..`, not ending in `.git` (huggingface_hub's own rule, which keeps `models--ORG--NAME`
/// reversible).
pub fn validate_repo_id(id: &str) -> Result<(), String> {
    let parts: Vec<&str> = id.split('/').collect();
    if parts.is_empty() || parts.len() > 2 {
        return Err("expected NAME or ORG/NAME".into());
    }
    for p in &parts {
        if p.is_empty()
            || p.len() > 96
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(format!("{p:?} is not 1 to 96 of [A-Za-z0-9_.-]"));
        }
        if *p == "." || *p == ".." {
            return Err(format!("{p:?} is not a name"));
        }
    }
    if id.contains("--") || id.contains("..") || id.ends_with(".git") {
        return Err("may not contain `--` or `..` or end in `.git`".into());
    }
    Ok(())
}

/// [`name_key`], without the Unicode machinery for ASCII (where lower-casing is ASCII
/// lower-casing and NFC changes nothing): the same key, an order of magnitude faster on the
/// long paths a large manifest holds.
pub(super) fn entry_key(path: &str) -> String {
    if path.is_ascii() {
        path.to_ascii_lowercase()
    } else {
        name_key(path)
    }
}

/// Free text of a manifest (`source`, `identity`, `generator`) is shown to the officer: it may
/// hold no control character (CR, ESC, ...) and no Unicode format character (bidi overrides,
/// zero-width characters), which would make a terminal show something other than its bytes.
/// (Every other string field is a validated name or path, hex, or printable ASCII.)
pub fn free_text(whose: &str, field: &str, value: &str) -> Result<(), Invalid> {
    match find_unsafe(value) {
        None => Ok(()),
        Some(c) => Err(invalid(format!(
            "{whose}: {field} holds the control or format character U+{:04X} (\"{}\"); free text may hold neither",
            c as u32,
            escape(value)
        ))),
    }
}

/// A structural problem in a manifest that parsed.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct Invalid(pub String);

pub(super) fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

impl Manifest {
    /// The version 5 rules on `bases` (FORMAT.md §Version 5): present (non-empty) exactly in
    /// version 5, at most [`limits::MAX_BASES`], each a valid id of its kind, the manifest's own
    /// channel and a lower sequence, none listed twice.
    fn validate_bases(&self) -> Result<(), Invalid> {
        match (self.bases.is_empty(), self.version) {
            (true, 5) => return Err(invalid("version 5 requires `bases`")),
            (true, _) => return Ok(()),
            (false, 5) => {}
            (false, n) => {
                return Err(invalid(format!(
                    "`bases` needs format version 5, the manifest says {n}"
                )))
            }
        }
        if self.bases.len() > limits::MAX_BASES {
            return Err(invalid(format!(
                "{} bases, more than the {} allowed",
                self.bases.len(),
                limits::MAX_BASES
            )));
        }
        let mut seen = HashSet::new();
        for (i, b) in self.bases.iter().enumerate() {
            let hex32 =
                b.id.len() == 32 && b.id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
            if !hex32 {
                return Err(invalid(format!(
                    "base {i}: {} id {:?} is not 32 lowercase hex digits",
                    b.kind.as_str(),
                    b.id
                )));
            }
            validate_channel(&b.channel).map_err(|e| invalid(format!("base {i}: {e}")))?;
            if b.channel != self.channel {
                return Err(invalid(format!(
                    "base {i} ({} {}) is of channel {:?}, the bundle of channel {:?}",
                    b.kind.as_str(),
                    b.id,
                    b.channel,
                    self.channel
                )));
            }
            if b.sequence >= self.sequence {
                return Err(invalid(format!(
                    "base {i} ({} {}) has sequence {}, not lower than the bundle's {}",
                    b.kind.as_str(),
                    b.id,
                    b.sequence,
                    self.sequence
                )));
            }
            if b.kind == BaseKind::Bundle && b.id == self.bundle_id {
                return Err(invalid(format!("base {i} is the bundle itself ({})", b.id)));
            }
            if !seen.insert((b.kind, b.id.as_str())) {
                return Err(invalid(format!(
                    "base {} {} is listed twice",
                    b.kind.as_str(),
                    b.id
                )));
            }
        }
        Ok(())
    }

    /// Checks every invariant of FORMAT.md §Invariants that can be checked without the chunks.
    pub fn validate(&self) -> Result<(), Invalid> {
        use limits::*;
        if self.format != FORMAT_NAME {
            return Err(invalid(format!(
                "format is {:?}, expected {FORMAT_NAME:?}",
                self.format
            )));
        }
        if !SUPPORTED_VERSIONS.contains(&self.version) {
            return Err(invalid(format!("unsupported version {}", self.version)));
        }
        if self.bundle_id.len() != 32
            || !self
                .bundle_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(invalid(format!(
                "bundle_id {:?} is not 32 lowercase hex digits",
                self.bundle_id
            )));
        }
        validate_channel(&self.channel).map_err(invalid)?;
        parse_time(&self.created).map_err(|e| invalid(format!("created: {e}")))?;
        if let Some(exp) = &self.expires {
            parse_time(exp).map_err(|e| invalid(format!("expires: {e}")))?;
        }
        if self.generator.len() > 256 {
            return Err(invalid("generator is longer than 256 bytes"));
        }
        free_text("the manifest", "generator", &self.generator)?;
        if self.chunk_size < MIN_CHUNK_SIZE || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(invalid(format!(
                "chunk_size {} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}",
                self.chunk_size
            )));
        }
        if self.chunks.len() > MAX_CHUNKS {
            return Err(invalid(format!(
                "{} chunks, more than the {MAX_CHUNKS} allowed",
                self.chunks.len()
            )));
        }
        if self.blobs.len() > MAX_BLOBS {
            return Err(invalid(format!(
                "{} blobs, more than the {MAX_BLOBS} allowed",
                self.blobs.len()
            )));
        }
        if self.artifacts.len() > MAX_ARTIFACTS {
            return Err(invalid(format!(
                "{} artifacts, more than the {MAX_ARTIFACTS} allowed",
                self.artifacts.len()
            )));
        }

        // Version 4 volumes first: chunk names depend on them (parity chunks are `.par`).
        self.validate_volumes().map_err(invalid)?;
        // Version 5 bases, before the blobs that name them.
        self.validate_bases()?;

        // Chunks: canonical names, sizes within the declared limit.
        for (i, c) in self.chunks.iter().enumerate() {
            if c.name != self.expected_chunk_name(i) {
                return Err(invalid(format!(
                    "chunk {i} is named {:?}, expected {:?}",
                    c.name,
                    self.expected_chunk_name(i)
                )));
            }
            if c.size > self.chunk_size {
                return Err(invalid(format!(
                    "chunk {} declares {} bytes, more than the chunk_size {}",
                    c.name, c.size, self.chunk_size
                )));
            }
        }

        // Piece digests: exactly version 3, one per piece of the declared size.
        if self.version >= 3 {
            if !valid_piece_size(self.piece_size) {
                return Err(invalid(format!(
                    "piece_size {} is not a power of two in {}..={}",
                    self.piece_size,
                    super::super::pieces::MIN_PIECE_SIZE,
                    super::super::pieces::MAX_PIECE_SIZE
                )));
            }
            for c in &self.chunks {
                let need = piece_count(c.size, self.piece_size);
                if c.pieces.len() as u64 != need {
                    return Err(invalid(format!(
                        "chunk {} lists {} piece digests; its {} bytes in pieces of {} need {need}",
                        c.name,
                        c.pieces.len(),
                        c.size,
                        self.piece_size
                    )));
                }
            }
        } else if self.piece_size != 0 || self.chunks.iter().any(|c| !c.pieces.is_empty()) {
            return Err(invalid(format!(
                "piece digests need format version 3, the manifest says {}",
                self.version
            )));
        }

        // Blobs: unique, bounded, fully and exactly covered by non-overlapping segments.
        let mut blob_sizes: HashMap<Digest, u64> = HashMap::with_capacity(self.blobs.len());
        let mut extents: Vec<(u32, u64, u64)> = Vec::new();
        let mut total_segments = 0usize;
        for b in &self.blobs {
            if b.size > MAX_BLOB_SIZE {
                return Err(invalid(format!(
                    "blob {} declares {} bytes, more than the {MAX_BLOB_SIZE} allowed",
                    b.digest, b.size
                )));
            }
            if blob_sizes.insert(b.digest, b.size).is_some() {
                return Err(invalid(format!("blob {} is listed twice", b.digest)));
            }
            if let Some(base) = b.external {
                if base as usize >= self.bases.len() {
                    return Err(invalid(format!(
                        "external blob {} names base {base}, which does not exist ({} bases)",
                        b.digest,
                        self.bases.len()
                    )));
                }
                if !b.segments.is_empty() {
                    return Err(invalid(format!(
                        "external blob {} has segments: an external blob is not carried",
                        b.digest
                    )));
                }
                continue;
            }
            total_segments += b.segments.len();
            if total_segments > MAX_SEGMENTS {
                return Err(invalid(format!("more than {MAX_SEGMENTS} segments in all")));
            }
            let mut covered: u64 = 0;
            for (si, s) in b.segments.iter().enumerate() {
                let chunk = self.chunks.get(s.chunk as usize).ok_or_else(|| {
                    invalid(format!(
                        "blob {} segment {si} names chunk {}, which does not exist",
                        b.digest, s.chunk
                    ))
                })?;
                if self.is_parity_chunk(s.chunk as usize) {
                    return Err(invalid(format!(
                        "blob {} segment {si} names parity chunk {}",
                        b.digest, chunk.name
                    )));
                }
                if s.size == 0 || s.length == 0 {
                    return Err(invalid(format!("blob {} segment {si} is empty", b.digest)));
                }
                if s.offset % 512 != 0 {
                    return Err(invalid(format!(
                        "blob {} segment {si} offset {} is not a multiple of 512",
                        b.digest, s.offset
                    )));
                }
                let end = s.offset.checked_add(s.length).filter(|&e| e <= chunk.size).ok_or_else(|| {
                    invalid(format!(
                        "blob {} segment {si} (offset {}, length {}) runs past the end of chunk {} ({} bytes)",
                        b.digest, s.offset, s.length, chunk.name, chunk.size
                    ))
                })?;
                match s.encoding {
                    Encoding::None if s.length != s.size => {
                        return Err(invalid(format!(
                            "blob {} segment {si} is stored but length {} != size {}",
                            b.digest, s.length, s.size
                        )));
                    }
                    Encoding::Zstd if s.size > MAX_ZSTD_SEGMENT => {
                        return Err(invalid(format!(
                            "blob {} segment {si} decodes to {} bytes, more than the {MAX_ZSTD_SEGMENT} a zstd segment may",
                            b.digest, s.size
                        )));
                    }
                    _ => {}
                }
                covered = covered
                    .checked_add(s.size)
                    .filter(|&c| c <= b.size)
                    .ok_or_else(|| {
                        invalid(format!(
                            "blob {} segments decode to more than its size {}",
                            b.digest, b.size
                        ))
                    })?;
                extents.push((s.chunk, s.offset, end));
            }
            if covered != b.size {
                return Err(invalid(format!(
                    "blob {} is not fully covered: segments hold {covered} of {} bytes",
                    b.digest, b.size
                )));
            }
        }
        extents.sort_unstable();
        for w in extents.windows(2) {
            if w[0].0 == w[1].0 && w[1].1 < w[0].2 {
                return Err(invalid(format!(
                    "two segments overlap in chunk {}",
                    chunk_name(w[0].0 as usize)
                )));
            }
        }

        // Artifacts: unique names, valid paths, entries consistent with blobs.
        let mut names = HashSet::new();
        let mut referenced: HashSet<Digest> = HashSet::new();
        let mut total_entries = 0usize;
        for a in &self.artifacts {
            validate_name(&a.name)
                .map_err(|e| invalid(format!("artifact name {:?}: {e}", a.name)))?;
            if !names.insert(name_key(&a.name)) {
                return Err(invalid(format!(
                    "artifact name {:?} is used twice (names are compared without case or Unicode normalisation)",
                    a.name
                )));
            }
            if a.source.len() > MAX_PATH_BYTES || a.identity.len() > MAX_PATH_BYTES {
                return Err(invalid(format!(
                    "artifact {:?}: source or identity is longer than {MAX_PATH_BYTES} bytes",
                    a.name
                )));
            }
            let whose = format!("artifact {:?}", a.name);
            free_text(&whose, "source", &a.source)?;
            free_text(&whose, "identity", &a.identity)?;
            total_entries += a.entries.len();
            if total_entries > MAX_ENTRIES {
                return Err(invalid(format!("more than {MAX_ENTRIES} entries in all")));
            }
            validate_image(a, self.version)?;
            if a.kind == ArtifactKind::File
                && !(a.entries.len() == 1 && a.entries[0].kind == EntryType::File)
            {
                return Err(invalid(format!(
                    "artifact {:?} of kind file must have exactly one file entry",
                    a.name
                )));
            }
            // Keyed by `name_key`, with the path as spelled; and by the path as spelled.
            let mut seen: HashMap<String, (EntryType, &str)> = HashMap::new();
            let mut exact: HashMap<&str, EntryType> = HashMap::with_capacity(a.entries.len());
            for e in &a.entries {
                validate_rel_path(&e.path).map_err(|err| {
                    invalid(format!("artifact {:?} entry {:?}: {err}", a.name, e.path))
                })?;
                if seen
                    .insert(entry_key(&e.path), (e.kind, e.path.as_str()))
                    .is_some()
                {
                    return Err(invalid(format!(
                        "artifact {:?} lists {:?} twice (paths are compared without case or Unicode normalisation)",
                        a.name, e.path
                    )));
                }
                exact.insert(e.path.as_str(), e.kind);
                match e.kind {
                    EntryType::File => {
                        let (Some(blob), Some(size)) = (e.blob, e.size) else {
                            return Err(invalid(format!(
                                "artifact {:?} file {:?} has no blob or size",
                                a.name, e.path
                            )));
                        };
                        match blob_sizes.get(&blob) {
                            Some(&s) if s == size => {}
                            Some(&s) => {
                                return Err(invalid(format!(
                                    "artifact {:?} file {:?} says {size} bytes but blob {blob} has {s}",
                                    a.name, e.path
                                )))
                            }
                            None => {
                                return Err(invalid(format!(
                                    "artifact {:?} file {:?} names blob {blob}, which the bundle does not hold",
                                    a.name, e.path
                                )))
                            }
                        }
                        referenced.insert(blob);
                    }
                    EntryType::Dir => {
                        if e.blob.is_some() || e.size.is_some() || e.executable {
                            return Err(invalid(format!(
                                "artifact {:?} directory {:?} carries file fields",
                                a.name, e.path
                            )));
                        }
                    }
                }
            }
            // Every parent of an entry is listed as a directory, spelled exactly as in the entry's
            // path (so importers create exactly the directories the manifest names, and never
            // write into one spelled otherwise), and a file is never a parent. Checking each
            // entry's immediate parent suffices: that parent is an entry too, so its own parent
            // is checked in turn, up to the root. (One key per entry: linear in the manifest's
            // size, where walking every ancestor of every entry was quadratic in the depth.)
            for e in &a.entries {
                if let Some(idx) = e.path.rfind('/') {
                    let parent = &e.path[..idx];
                    // The common case without a second key: the parent listed, spelled so.
                    if exact.get(parent) == Some(&EntryType::Dir) {
                        continue;
                    }
                    match seen.get(&entry_key(parent)) {
                        Some((EntryType::Dir, listed)) if *listed == parent => {}
                        Some((EntryType::Dir, listed)) => {
                            return Err(invalid(format!(
                                "artifact {:?}: the parent {:?} of {:?} is listed as {:?}, spelled otherwise",
                                a.name, parent, e.path, listed
                            )))
                        }
                        Some((EntryType::File, _)) => {
                            return Err(invalid(format!(
                                "artifact {:?}: {:?} is a file but also the parent of {:?}",
                                a.name, parent, e.path
                            )))
                        }
                        None => {
                            return Err(invalid(format!(
                                "artifact {:?}: the parent {:?} of {:?} is not listed as a directory",
                                a.name, parent, e.path
                            )))
                        }
                    }
                }
            }
        }
        if let Some(b) = self.blobs.iter().find(|b| !referenced.contains(&b.digest)) {
            return Err(invalid(format!(
                "blob {} is not used by any artifact",
                b.digest
            )));
        }
        Ok(())
    }
}
