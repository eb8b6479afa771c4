//! `hf://` sources: a Hugging Face repo snapshot at one commit, as one `hf-repo` artifact.
//!
//! The revision is resolved to a commit first, and everything after that is fetched at that
//! commit, so the files are consistent. LFS files (SHA-256 known from the tree listing) stream
//! from the CDN straight into the bundle, where the writer checks the digest. Regular files
//! (only their git blob SHA-1 known) are downloaded to the staging directory, several at once,
//! and checked against that SHA-1 while their SHA-256 is computed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::bundle::{Origin, PlannedBlob};
use crate::error::{Error, Result};
use crate::format::{Artifact, ArtifactKind, Digest, Entry, Hasher, HfFile, HfInfo};
use crate::hf::client::Ctx;
use crate::hf::glob::Filter;
use crate::hf::{GitBlobHasher, HfOptions, HfSpec, HubClient, RepoFile};
use crate::net::unwrap_io;
use crate::progress::Progress;

/// Regular files downloaded at once by default.
const PARALLEL: usize = 4;

/// Resolves `spec` into its artifact and blobs: regular files are staged under `staging`, LFS
/// files are streamed when the bundle is written.
pub fn resolve(
    spec: &HfSpec,
    opts: &HfOptions,
    name: Option<&str>,
    staging: &Path,
    staged: u64,
    progress: &dyn Progress,
) -> Result<(Artifact, Vec<PlannedBlob>)> {
    resolve_cached(spec, opts, name, staging, staged, None, progress)
}

/// [`resolve`] with the pack cache: regular files it holds are read from it, those downloaded
/// are kept in it (LFS files go through it as every streamed blob does:
/// [`crate::cache::Cache::wrap`]).
pub fn resolve_cached(
    spec: &HfSpec,
    opts: &HfOptions,
    name: Option<&str>,
    staging: &Path,
    staged: u64,
    cache: Option<&Arc<crate::cache::Cache>>,
    progress: &dyn Progress,
) -> Result<(Artifact, Vec<PlannedBlob>)> {
    let client = HubClient::new(opts)?;
    let t = spec.repo_type;
    let id = spec.repo_id.as_str();
    let commit = client.resolve_revision(t, id, &spec.revision)?;
    let filter = Filter::new(&spec.include, &spec.exclude);
    let mut files: Vec<RepoFile> = client
        .list_files(t, id, &commit)?
        .into_iter()
        .filter(|f| filter.keeps(&f.path))
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if files.is_empty() && !filter.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no file at commit {commit} matches the include/exclude patterns",
            spec.given
        )));
    }
    check_paths(&files, &spec.given)?;

    let label = format!("{}/{}{id}@{commit}", client.endpoint(), spec.url_prefix());
    let ctx_for = |f: &RepoFile| Ctx {
        repo: format!("{}{id}", spec.url_prefix()),
        revision: Some(commit.clone()),
        path: Some(f.path.clone()),
    };

    // Fail on gated, private or missing files before anything streams into a bundle.
    if let Some(f) = files.iter().find(|f| f.lfs_sha256.is_some()) {
        client.probe(&client.resolve_url(t, id, &commit, &f.path), &ctx_for(f))?;
    }

    let mut regular: Vec<&RepoFile> = files.iter().filter(|f| f.lfs_sha256.is_none()).collect();
    // Regular files the pack cache holds (by repo and git blob SHA-1) are not downloaded.
    let key = |f: &RepoFile| {
        let repo = format!("{}{id}", spec.url_prefix());
        crate::cache::hf_key(client.endpoint(), &repo, &f.oid, f.size)
    };
    let hits: HashMap<String, Digest> = cache.map_or_else(HashMap::new, |c| {
        regular
            .iter()
            .filter_map(|f| {
                let r = c.key(&key(f)).filter(|r| r.size == f.size)?;
                c.holds(&r.digest, f.size)
                    .then(|| (f.path.clone(), r.digest))
            })
            .collect()
    });
    regular.retain(|f| !hits.contains_key(&f.path));
    let staged = if regular.is_empty() {
        HashMap::new()
    } else {
        crate::fsutil::create_dir_all(staging)?;
        // Sizes come from the Hub: summed without wrapping (a sum past u64 cannot fit anyway).
        let total = regular.iter().fold(0u64, |t, f| t.saturating_add(f.size));
        let room = super::staging_room(staging, staged)?;
        if total > room {
            return Err(Error::Other(format!(
                "{}: not enough free space to stage the {} regular files of {}: they need {total} \
                 bytes twice (staged, then copied into chunks), and {room} bytes may be staged \
                 (free space less {} bytes in reserve)",
                staging.display(),
                regular.len(),
                spec.given,
                super::url::RESERVE
            )));
        }
        progress.start(
            &format!("downloading {} files of {}", regular.len(), spec.given),
            total,
        );
        let r = download_all(&client, spec, &commit, &regular, staging, opts, progress);
        progress.finish();
        let r = r?;
        if let Some(c) = cache {
            for f in &regular {
                let (digest, path) = &r[&f.path];
                c.adopt(path, digest, f.size);
                let rec = crate::cache::KeyRecord {
                    digest: *digest,
                    size: f.size,
                    identity: None,
                };
                c.set_key(&key(f), &rec);
            }
        }
        r
    };

    let mut entries = Vec::new();
    let mut dirs = BTreeSet::new();
    let mut hf_files = Vec::new();
    let mut blobs = Vec::new();
    let mut seen = HashSet::new();
    for f in &files {
        let mut p = f.path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            dirs.insert(parent.to_string());
            p = parent;
        }
        let digest = match &f.lfs_sha256 {
            Some(hex) => {
                let digest = Digest::from_hex(hex).expect("checked by the client");
                if seen.insert(digest) {
                    let url = client.resolve_url(t, id, &commit, &f.path);
                    let (c, size, ctx) = (client.clone(), f.size, ctx_for(f));
                    blobs.push(PlannedBlob {
                        digest,
                        size,
                        origin: Origin::Stream {
                            open: Arc::new(move || {
                                Ok(Box::new(c.open_file(&url, size, ctx.clone())?)
                                    as Box<dyn Read + Send>)
                            }),
                            what: format!("{label}: {} (LFS)", f.path),
                        },
                        compress: None,
                    });
                }
                digest
            }
            None if hits.contains_key(&f.path) => {
                let (digest, c) = (hits[&f.path], cache.expect("a hit is in the cache"));
                if seen.insert(digest) {
                    let (oid, size) = (f.oid.clone(), f.size);
                    let check: Arc<dyn Fn() -> Box<dyn crate::cache::Check> + Send + Sync> =
                        Arc::new(move || Box::new(GitCheck(GitBlobHasher::new(size), oid.clone())));
                    let what = format!("{label}: {}", f.path);
                    blobs.push(c.planned(digest, f.size, what, Some(check)));
                }
                digest
            }
            None => {
                let (digest, path) = staged
                    .get(&f.path)
                    .cloned()
                    .expect("every regular file was staged");
                if seen.insert(digest) {
                    blobs.push(PlannedBlob::file(digest, f.size, path));
                }
                digest
            }
        };
        entries.push(Entry::file(&f.path, digest, f.size));
        hf_files.push(HfFile {
            path: f.path.clone(),
            etag: f.etag().to_string(),
            pointer_oid: f.lfs_sha256.as_ref().map(|_| f.oid.clone()),
            xet_hash: f.xet_hash.clone(),
        });
    }
    entries.extend(dirs.iter().map(|d| Entry::dir(d)));
    entries.sort_by(|a, b| a.path.cmp(&b.path));

    let artifact = Artifact {
        name: name
            .map(str::to_string)
            .unwrap_or_else(|| spec.default_name()),
        kind: ArtifactKind::HfRepo,
        source: spec.given.clone(),
        identity: format!("{}/{}{id}@{commit}", client.endpoint(), spec.url_prefix()),
        entries,
        image: None,
        hf: Some(HfInfo {
            endpoint: client.endpoint().to_string(),
            repo_type: t,
            repo_id: id.to_string(),
            revision: spec.revision.clone(),
            commit,
            complete: filter.is_empty(),
            files: hf_files,
        }),
    };
    Ok((artifact, blobs))
}

/// Paths must be carried portably: no two equal without case, none below a file.
fn check_paths(files: &[RepoFile], given: &str) -> Result<()> {
    let mut lower = HashSet::new();
    let all: HashSet<String> = files.iter().map(|f| f.path.to_lowercase()).collect();
    for f in files {
        let l = f.path.to_lowercase();
        if !lower.insert(l.clone()) {
            return Err(Error::Other(format!(
                "{given}: two files are named {:?} when case is ignored; airlock cannot carry both",
                f.path
            )));
        }
        let mut p = l.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            if all.contains(parent) {
                return Err(Error::Other(format!(
                    "{given}: {:?} lies below a file of the same name",
                    f.path
                )));
            }
            p = parent;
        }
    }
    Ok(())
}

/// Downloads the regular files into `staging` (named by index), checking each against its git
/// blob SHA-1; path in repo → (SHA-256, staged file).
fn download_all(
    client: &HubClient,
    spec: &HfSpec,
    commit: &str,
    files: &[&RepoFile],
    staging: &Path,
    opts: &HfOptions,
    progress: &dyn Progress,
) -> Result<HashMap<String, (Digest, PathBuf)>> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(HashMap::new());
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let workers = match opts.parallel {
        0 => PARALLEL,
        n => n,
    }
    .min(files.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if failed.lock().expect("not poisoned").is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(f) = files.get(i) else { return };
                let dest = staging.join(format!("hf-{i}"));
                match download_one(client, spec, commit, f, &dest, progress) {
                    Ok(d) => {
                        results
                            .lock()
                            .expect("not poisoned")
                            .insert(f.path.clone(), (d, dest));
                    }
                    Err(e) => {
                        failed.lock().expect("not poisoned").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("not poisoned") {
        return Err(e);
    }
    Ok(results.into_inner().expect("not poisoned"))
}

fn download_one(
    client: &HubClient,
    spec: &HfSpec,
    commit: &str,
    f: &RepoFile,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<Digest> {
    let (t, id) = (spec.repo_type, spec.repo_id.as_str());
    let url = client.resolve_url(t, id, commit, &f.path);
    let ctx = Ctx {
        repo: format!("{}{id}", spec.url_prefix()),
        revision: Some(commit.to_string()),
        path: Some(f.path.clone()),
    };
    let mut reader = client.open_file(&url, f.size, ctx)?;
    let mut out = File::create(dest).map_err(|e| Error::io("create", dest, e))?;
    let mut sha256 = Hasher::new();
    let mut sha1 = GitBlobHasher::new(f.size);
    let mut buf = vec![0u8; crate::fsutil::BUF_SIZE];
    let mut len = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unwrap_io(e, &url)),
        };
        len += n as u64;
        if len > f.size {
            return Err(Error::Other(format!(
                "{}{id}@{commit}: {}: the server sent more than the {} bytes the tree listing gives",
                spec.url_prefix(),
                f.path,
                f.size
            )));
        }
        sha256.update(&buf[..n]);
        sha1.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("write", dest, e))?;
        progress.inc(n as u64);
    }
    if len != f.size {
        return Err(Error::Other(format!(
            "{}{id}@{commit}: {}: got {len} bytes, the tree listing gives {}",
            spec.url_prefix(),
            f.path,
            f.size
        )));
    }
    let actual = sha1.finish();
    if actual != f.oid {
        return Err(Error::HashMismatch {
            what: format!("{}{id}@{commit}: {}", spec.url_prefix(), f.path),
            algorithm: "git blob SHA-1",
            expected: f.oid.clone(),
            actual,
        });
    }
    out.sync_all().map_err(|e| Error::io("sync", dest, e))?;
    Ok(sha256.finish())
}

/// A regular file read from the pack cache must still have the Hub's git blob SHA-1.
struct GitCheck(GitBlobHasher, String);

impl crate::cache::Check for GitCheck {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finish(self: Box<Self>) -> std::result::Result<(), String> {
        let actual = self.0.finish();
        if actual == self.1 {
            Ok(())
        } else {
            Err(format!("git blob SHA-1 {actual}, the Hub says {}", self.1))
        }
    }
}
