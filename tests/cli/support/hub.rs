//! An in-process Hugging Face Hub emulator: enough of the Hub's HTTP protocol, as
//! huggingface_hub 2.4.0 (`hf download`, `snapshot_download`) and airlock use it, to download
//! repos defined in memory (or from a local directory) — and hooks to make it lie.
//!
//! Served on the hub origin `http://127.0.0.1:PORT`:
//! - `GET /api/{models|datasets}/{id}[/revision/{rev}]` → `{"id", "sha", "siblings": [{"rfilename"}], …}`
//! - `GET /api/{models|datasets}/{id}/tree/{rev}[/{path}]?recursive=true|True&cursor=N` → the
//!   tree JSON (`type`, `path`, `size`, `oid`, `lfs: {oid, size, pointerSize}`), paged by
//!   [`Hub::set_page_size`] with a `Link: <…>; rel="next"` header
//! - `HEAD`/`GET /[datasets/]{id}/resolve/{rev}/{path}`: regular files answer 200 with a quoted
//!   `ETag` (git blob SHA-1), `X-Repo-Commit`, `Content-Length`, `Range` → 206 + `Content-Range`;
//!   LFS files answer 302 to the "CDN" origin `http://localhost:PORT2/cdn/{sha256}/{path}`
//!   (another host name, so clients must drop `Authorization`) with `X-Linked-Etag`,
//!   `X-Linked-Size`, `X-Repo-Commit`.
//! - Errors as the Hub sends them: 401 `X-Error-Code: RepoNotFound` (missing, or private
//!   without the right token), 404 `RevisionNotFound`, 404 `EntryNotFound` (+ `X-Repo-Commit`),
//!   401/403 `GatedRepo` on downloads of a gated repo without the right token.
//!
//! Standalone (benchmarks): `cargo run --release --example hub_emulator -- DIR ORG/NAME
//! [PORT [CDN_PORT]]` serves DIR as model ORG/NAME (files over 10 MB as LFS) and prints
//! `HF_ENDPOINT=http://127.0.0.1:PORT` and the commit.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha1::Digest as _;

/// Where a file's bytes are.
#[derive(Clone)]
pub enum Data {
    Bytes(Arc<Vec<u8>>),
    File(PathBuf),
}

/// A file of a commit.
#[derive(Clone)]
pub struct FileDef {
    pub data: Data,
    pub size: u64,
    pub lfs: bool,
    /// Git blob SHA-1 of the content (of the pointer file, for LFS).
    pub oid: String,
    pub sha256: String,
}

impl FileDef {
    fn new(data: Data, lfs: bool) -> FileDef {
        let mut s1 = sha1::Sha1::new();
        let mut s256 = sha2::Sha256::new();
        let size = match &data {
            Data::Bytes(b) => {
                s1.update(format!("blob {}\0", b.len()));
                s1.update(&b[..]);
                s256.update(&b[..]);
                b.len() as u64
            }
            Data::File(p) => {
                let size = std::fs::metadata(p).unwrap().len();
                s1.update(format!("blob {size}\0"));
                let mut f = std::fs::File::open(p).unwrap();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    s1.update(&buf[..n]);
                    s256.update(&buf[..n]);
                }
                size
            }
        };
        let sha256 = hex::encode(s256.finalize());
        let content_sha1 = hex::encode(s1.finalize());
        let oid = if lfs {
            let pointer = lfs_pointer(&sha256, size);
            let mut p = sha1::Sha1::new();
            p.update(format!("blob {}\0", pointer.len()));
            p.update(pointer.as_bytes());
            hex::encode(p.finalize())
        } else {
            content_sha1
        };
        FileDef {
            data,
            size,
            lfs,
            oid,
            sha256,
        }
    }

    /// Bytes `[start, start+len)`.
    fn read_range(&self, start: u64, len: u64) -> Vec<u8> {
        match &self.data {
            Data::Bytes(b) => b[start as usize..(start + len) as usize].to_vec(),
            Data::File(p) => {
                let mut f = std::fs::File::open(p).unwrap();
                f.seek(SeekFrom::Start(start)).unwrap();
                let mut v = vec![0u8; len as usize];
                f.read_exact(&mut v).unwrap();
                v
            }
        }
    }
}

fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

/// Who may read a repo.
#[derive(Clone, PartialEq)]
pub enum Access {
    Public,
    /// Invisible (401 RepoNotFound) without this token.
    Private(String),
    /// Metadata public; downloads need this token (401/403 GatedRepo otherwise).
    Gated(String),
}

/// A repository: commits (the last one is `main`), refs, access.
#[derive(Clone)]
pub struct RepoDef {
    pub dataset: bool,
    pub id: String,
    pub commits: Vec<BTreeMap<String, FileDef>>,
    pub refs: BTreeMap<String, usize>,
    pub access: Access,
}

impl RepoDef {
    pub fn model(id: &str) -> RepoDef {
        RepoDef {
            dataset: false,
            id: id.into(),
            commits: vec![BTreeMap::new()],
            refs: BTreeMap::new(),
            access: Access::Public,
        }
    }
    pub fn dataset(id: &str) -> RepoDef {
        RepoDef {
            dataset: true,
            ..RepoDef::model(id)
        }
    }
    /// A regular (git-stored) file in the current commit.
    pub fn file(mut self, path: &str, data: impl Into<Vec<u8>>) -> RepoDef {
        let f = FileDef::new(Data::Bytes(Arc::new(data.into())), false);
        self.commits.last_mut().unwrap().insert(path.into(), f);
        self
    }
    /// An LFS file in the current commit.
    pub fn lfs(mut self, path: &str, data: impl Into<Vec<u8>>) -> RepoDef {
        let f = FileDef::new(Data::Bytes(Arc::new(data.into())), true);
        self.commits.last_mut().unwrap().insert(path.into(), f);
        self
    }
    /// Removes a file from the current commit.
    pub fn remove(mut self, path: &str) -> RepoDef {
        self.commits.last_mut().unwrap().remove(path);
        self
    }
    /// Points a tag (or branch) at the current commit.
    pub fn tag(mut self, name: &str) -> RepoDef {
        let i = self.commits.len() - 1;
        self.refs.insert(name.into(), i);
        self
    }
    /// Starts a new commit with the current files; `main` moves to it.
    pub fn next_commit(mut self) -> RepoDef {
        let last = self.commits.last().unwrap().clone();
        self.commits.push(last);
        self
    }
    pub fn private(mut self, token: &str) -> RepoDef {
        self.access = Access::Private(token.into());
        self
    }
    pub fn gated(mut self, token: &str) -> RepoDef {
        self.access = Access::Gated(token.into());
        self
    }
    /// A model repo with the files under `dir`; files larger than `lfs_over` bytes are LFS.
    /// Bytes are read from disk when served.
    pub fn from_dir(id: &str, dir: &Path, lfs_over: u64) -> RepoDef {
        let mut r = RepoDef::model(id);
        for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let e = e.unwrap();
            if !e.file_type().is_file() {
                continue;
            }
            let rel = e.path().strip_prefix(dir).unwrap().to_str().unwrap();
            let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
            let size = e.metadata().unwrap().len();
            let f = FileDef::new(Data::File(e.path().to_path_buf()), size > lfs_over);
            r.commits.last_mut().unwrap().insert(rel, f);
        }
        r
    }
    /// The URL prefix and `api/{type}s` name.
    fn kind(&self) -> &'static str {
        if self.dataset {
            "datasets"
        } else {
            "models"
        }
    }
    fn commit_sha(&self, i: usize) -> String {
        let mut h = sha1::Sha1::new();
        h.update(format!("{}\0{}\0{i}\0", self.kind(), self.id));
        for (p, f) in &self.commits[i] {
            h.update(format!("{p}\0{}\0", f.oid));
        }
        hex::encode(h.finalize())
    }
    /// The commit index a revision names (ref, `main`, or a full commit SHA).
    fn find(&self, rev: &str) -> Option<usize> {
        if rev == "main" {
            return Some(self.commits.len() - 1);
        }
        if let Some(i) = self.refs.get(rev) {
            return Some(*i);
        }
        (0..self.commits.len()).find(|&i| self.commit_sha(i) == rev)
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `"hub"` or `"cdn"`.
    pub origin: &'static str,
    pub method: String,
    pub target: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Hooks {
    wrong_bytes: BTreeSet<String>,
    /// path → (bytes sent before the connection is cut, times left)
    truncate: HashMap<String, (u64, usize)>,
    redirect_loop: BTreeSet<String>,
}

struct State {
    /// Faults for any request (API or file, either origin) by target: [`Hub::fault`].
    faults: super::flaky::Faults,
    repos: Vec<RepoDef>,
    page_size: AtomicUsize,
    hooks: Mutex<Hooks>,
    log: Mutex<Vec<Recorded>>,
    cdn_base: String,
    stop: AtomicBool,
}

/// A running emulator (stops when dropped).
pub struct Hub {
    state: Arc<State>,
    hub_addr: std::net::SocketAddr,
    cdn_addr: std::net::SocketAddr,
}

impl Hub {
    /// Serves `repos` on ephemeral ports.
    pub fn start(repos: Vec<RepoDef>) -> Hub {
        Hub::start_on(repos, 0, 0)
    }

    /// Serves `repos` on 127.0.0.1:`port` (hub) and :`cdn_port` (CDN); 0 picks a free port.
    pub fn start_on(repos: Vec<RepoDef>, port: u16, cdn_port: u16) -> Hub {
        let hub_l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let cdn_l = TcpListener::bind(("127.0.0.1", cdn_port)).unwrap();
        let (hub_addr, cdn_addr) = (hub_l.local_addr().unwrap(), cdn_l.local_addr().unwrap());
        let state = Arc::new(State {
            faults: Default::default(),
            repos,
            page_size: AtomicUsize::new(1000),
            hooks: Mutex::new(Hooks::default()),
            log: Mutex::new(Vec::new()),
            cdn_base: format!("http://localhost:{}", cdn_addr.port()),
            stop: AtomicBool::new(false),
        });
        for (l, origin) in [(hub_l, "hub"), (cdn_l, "cdn")] {
            let st = state.clone();
            std::thread::spawn(move || {
                for conn in l.incoming() {
                    if st.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let st = st.clone();
                    std::thread::spawn(move || {
                        let _ = serve(&st, origin, conn);
                    });
                }
            });
        }
        Hub {
            state,
            hub_addr,
            cdn_addr,
        }
    }

    /// The endpoint (`HF_ENDPOINT`): `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.hub_addr)
    }
    /// The CDN origin LFS downloads are redirected to: `http://localhost:PORT2`.
    pub fn cdn_url(&self) -> String {
        self.state.cdn_base.clone()
    }
    /// The commit `rev` names in repo `id` (models and datasets alike).
    pub fn commit(&self, id: &str, rev: &str) -> String {
        let r = self.state.repos.iter().find(|r| r.id == id).unwrap();
        r.commit_sha(r.find(rev).unwrap())
    }
    /// Entries per tree page (default 1000).
    pub fn set_page_size(&self, n: usize) {
        self.state.page_size.store(n.max(1), Ordering::SeqCst);
    }
    /// Serve `path` (in any repo) with its first byte flipped.
    pub fn serve_wrong_bytes(&self, path: &str) {
        self.hooks().wrong_bytes.insert(path.into());
    }
    /// Cut the next `times` downloads of `path` after `at` bytes (Content-Length stays full).
    pub fn truncate(&self, path: &str, at: u64, times: usize) {
        self.hooks().truncate.insert(path.into(), (at, times));
    }
    /// The next `times` requests (either origin) whose target contains `target_contains` get
    /// `fault`: a 503 with `Retry-After`, or the answer cut after N bytes of its body.
    pub fn fault(&self, target_contains: &str, fault: super::flaky::Fault, times: usize) {
        self.state.faults.add(target_contains, fault, times);
    }
    /// Answer `resolve` of `path` with a redirect to itself.
    pub fn redirect_loop(&self, path: &str) {
        self.hooks().redirect_loop.insert(path.into());
    }
    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().unwrap().clone()
    }
    /// Requests the CDN origin saw.
    pub fn cdn_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.origin == "cdn")
            .collect()
    }
    pub fn clear_log(&self) {
        self.state.log.lock().unwrap().clear();
    }
    fn hooks(&self) -> std::sync::MutexGuard<'_, Hooks> {
        self.state.hooks.lock().unwrap()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.hub_addr);
        let _ = TcpStream::connect(self.cdn_addr);
    }
}

struct Req {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    }
    fn param(&self, n: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

enum Body {
    Bytes(Vec<u8>),
    /// A file range, possibly flipped at content offset 0, possibly cut after `cut` bytes.
    File {
        file: Box<FileDef>,
        start: u64,
        len: u64,
        flip: bool,
        cut: Option<u64>,
    },
}

impl Resp {
    fn new(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }
    fn h(mut self, k: &str, v: impl Into<String>) -> Resp {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn json(v: serde_json::Value) -> Resp {
        Resp {
            body: Body::Bytes(serde_json::to_vec(&v).unwrap()),
            ..Resp::new(200).h("Content-Type", "application/json")
        }
    }
    fn error(status: u16, code: &str, msg: &str) -> Resp {
        let mut r = Resp::json(serde_json::json!({ "error": msg }));
        r.status = status;
        r.h("X-Error-Code", code).h("X-Error-Message", msg)
    }
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn quote_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn serve(st: &State, origin: &'static str, mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    st.log.lock().unwrap().push(Recorded {
        origin,
        method: method.into(),
        target: target.into(),
        headers: headers.clone(),
    });
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let req = Req {
        method: method.into(),
        path: path.into(),
        query,
        headers,
    };
    let fault = st.faults.take(target);
    if let Some(head) = fault.and_then(|f| f.unavailable_head()) {
        conn.write_all(head.as_bytes())?;
        return conn.flush();
    }
    let resp = if origin == "cdn" {
        cdn(st, &req)
    } else {
        hub(st, &req)
    };
    match fault {
        Some(super::flaky::Fault::Cut(n)) => write_resp(&mut conn, &req, resp, Some(n)),
        _ => write_resp(&mut conn, &req, resp, None),
    }
}

fn write_resp(
    conn: &mut TcpStream,
    req: &Req,
    resp: Resp,
    fault_cut: Option<u64>,
) -> std::io::Result<()> {
    let len = match &resp.body {
        Body::Bytes(b) => b.len() as u64,
        Body::File { len, .. } => *len,
    };
    let mut head = format!("HTTP/1.1 {} X\r\n", resp.status);
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {len}\r\nConnection: close\r\n\r\n"
    ));
    conn.write_all(head.as_bytes())?;
    if req.method == "HEAD" {
        return conn.flush();
    }
    match resp.body {
        Body::Bytes(b) => match fault_cut {
            Some(n) => {
                conn.write_all(&b[..(n as usize).min(b.len())])?;
                conn.flush()?;
                let _ = conn.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            None => conn.write_all(&b)?,
        },
        Body::File {
            file,
            start,
            len,
            flip,
            cut,
        } => {
            let cut = match (cut, fault_cut) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let send = cut.map_or(len, |c| c.min(len));
            let mut off = 0;
            while off < send {
                let n = (send - off).min(1 << 20);
                let mut piece = file.read_range(start + off, n);
                if flip && start + off == 0 {
                    piece[0] ^= 0xff;
                }
                conn.write_all(&piece)?;
                off += n;
            }
            if cut.is_some() {
                conn.flush()?;
                let _ = conn.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
        }
    }
    conn.flush()
}

fn bearer(req: &Req) -> Option<&str> {
    req.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The repo and whether the request may see it (API: private needs the token).
fn find_repo<'a>(st: &'a State, dataset: bool, id: &str, req: &Req) -> Result<&'a RepoDef, Resp> {
    let not_found = || Resp::error(401, "RepoNotFound", "Repository not found");
    let r = st
        .repos
        .iter()
        .find(|r| r.dataset == dataset && r.id == id)
        .ok_or_else(not_found)?;
    if let Access::Private(t) = &r.access {
        if bearer(req) != Some(t.as_str()) {
            return Err(not_found());
        }
    }
    Ok(r)
}

fn hub(st: &State, req: &Req) -> Resp {
    match hub_inner(st, req) {
        Ok(r) | Err(r) => r,
    }
}

fn hub_inner(st: &State, req: &Req) -> Result<Resp, Resp> {
    let host = req.header("host").unwrap_or("127.0.0.1").to_string();
    if let Some(rest) = req.path.strip_prefix("/api/") {
        let seg: Vec<&str> = rest.split('/').collect();
        let dataset = match seg.first() {
            Some(&"models") => false,
            Some(&"datasets") => true,
            _ => return Ok(Resp::new(404)),
        };
        // id is one or two segments, followed by nothing, `revision/…` or `tree/…`.
        let (id, tail) = match seg.get(2) {
            Some(&"revision") | Some(&"tree") => (seg[1].to_string(), &seg[2..]),
            None => (seg[1].to_string(), &seg[2..]),
            Some(_) => (format!("{}/{}", seg[1], seg[2]), &seg[3..]),
        };
        let repo = find_repo(st, dataset, &id, req)?;
        let rev_of = |s: Option<&&str>| percent_decode(s.copied().unwrap_or("main"));
        return match tail.first() {
            None | Some(&"revision") => {
                let rev = if tail.is_empty() {
                    "main".into()
                } else {
                    rev_of(tail.get(1))
                };
                let i = repo.find(&rev).ok_or_else(|| {
                    Resp::error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"))
                })?;
                let siblings: Vec<_> = repo.commits[i]
                    .keys()
                    .map(|p| serde_json::json!({ "rfilename": p }))
                    .collect();
                Ok(Resp::json(serde_json::json!({
                    "_id": "0123456789abcdef01234567",
                    "id": repo.id,
                    "private": matches!(repo.access, Access::Private(_)),
                    "gated": if matches!(repo.access, Access::Gated(_)) { serde_json::json!("manual") } else { serde_json::json!(false) },
                    "disabled": false,
                    "sha": repo.commit_sha(i),
                    "lastModified": "2025-01-01T00:00:00.000Z",
                    "tags": [],
                    "siblings": siblings,
                })))
            }
            Some(&"tree") => {
                let rev = rev_of(tail.get(1));
                let i = repo.find(&rev).ok_or_else(|| {
                    Resp::error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"))
                })?;
                let under = percent_decode(&tail.get(2..).unwrap_or(&[]).join("/"));
                let recursive = req
                    .param("recursive")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
                Ok(tree(st, repo, i, &under, recursive, req, &host))
            }
            _ => Ok(Resp::new(404)),
        };
    }
    // /[datasets/]{id}/resolve/{rev}/{path}
    let p = req.path.trim_start_matches('/');
    let (dataset, p) = match p.strip_prefix("datasets/") {
        Some(rest) => (true, rest),
        None => (false, p),
    };
    let Some((id, after)) = p.split_once("/resolve/") else {
        return Ok(Resp::new(404));
    };
    let (rev, file) = after.split_once('/').unwrap_or((after, ""));
    let (rev, file) = (percent_decode(rev), percent_decode(file));
    let repo = find_repo(st, dataset, id, req)?;
    if let Access::Gated(t) = &repo.access {
        match bearer(req) {
            Some(b) if b == t => {}
            Some(_) => return Err(Resp::error(403, "GatedRepo", &format!("Access to model {id} is restricted and you are not in the authorized list. Visit https://huggingface.co/{id} to ask for access."))),
            None => return Err(Resp::error(401, "GatedRepo", &format!("Access to model {id} is restricted. You must have access to it and be authenticated to access it. Please log in."))),
        }
    }
    let i = repo
        .find(&rev)
        .ok_or_else(|| Resp::error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}")))?;
    let commit = repo.commit_sha(i);
    let Some(f) = repo.commits[i].get(&file) else {
        return Err(Resp::error(404, "EntryNotFound", "Entry not found").h("X-Repo-Commit", commit));
    };
    if st.hooks.lock().unwrap().redirect_loop.contains(&file) {
        return Ok(Resp::new(302)
            .h("Location", format!("http://{host}{}", req.path))
            .h("X-Repo-Commit", commit));
    }
    if f.lfs {
        let loc = format!("{}/cdn/{}/{}", st.cdn_base, f.sha256, quote_path(&file));
        let body = format!("Found. Redirecting to {loc}").into_bytes();
        return Ok(Resp {
            body: Body::Bytes(body),
            ..Resp::new(302)
                .h("Location", loc)
                .h("ETag", format!("\"{}\"", f.oid))
                .h("X-Linked-Etag", format!("\"{}\"", f.sha256))
                .h("X-Linked-Size", f.size.to_string())
                .h("X-Repo-Commit", commit)
        });
    }
    Ok(content(st, req, f, &file)
        .h("ETag", format!("\"{}\"", f.oid))
        .h("X-Repo-Commit", commit))
}

fn tree(
    st: &State,
    repo: &RepoDef,
    i: usize,
    under: &str,
    recursive: bool,
    req: &Req,
    host: &str,
) -> Resp {
    let files = &repo.commits[i];
    let prefix = if under.is_empty() {
        String::new()
    } else {
        format!("{under}/")
    };
    let mut dirs = BTreeSet::new();
    for p in files.keys() {
        let mut d = p.as_str();
        while let Some((parent, _)) = d.rsplit_once('/') {
            dirs.insert(parent.to_string());
            d = parent;
        }
    }
    let visible =
        |p: &str| p.starts_with(&prefix) && (recursive || !p[prefix.len()..].contains('/'));
    let mut entries: Vec<(String, serde_json::Value)> = Vec::new();
    for d in dirs.iter().filter(|d| visible(d)) {
        let mut h = sha1::Sha1::new();
        h.update(d.as_bytes());
        entries.push((
            d.clone(),
            serde_json::json!({"type": "directory", "oid": hex::encode(h.finalize()), "size": 0, "path": d}),
        ));
    }
    for (p, f) in files.iter().filter(|(p, _)| visible(p)) {
        let mut v = serde_json::json!({"type": "file", "oid": f.oid, "size": f.size, "path": p});
        if f.lfs {
            v["lfs"] = serde_json::json!({"oid": f.sha256, "size": f.size,
                "pointerSize": lfs_pointer(&f.sha256, f.size).len()});
        }
        entries.push((p.clone(), v));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let page = st.page_size.load(Ordering::SeqCst);
    let start: usize = req
        .param("cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let items: Vec<_> = entries
        .iter()
        .skip(start)
        .take(page)
        .map(|e| e.1.clone())
        .collect();
    let mut resp = Resp::json(serde_json::Value::Array(items));
    if start + page < entries.len() {
        let q: Vec<String> = req
            .query
            .iter()
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| format!("{k}={v}"))
            .chain([format!("cursor={}", start + page)])
            .collect();
        resp = resp.h(
            "Link",
            format!("<http://{host}{}?{}>; rel=\"next\"", req.path, q.join("&")),
        );
    }
    resp
}

fn cdn(st: &State, req: &Req) -> Resp {
    let Some(rest) = req.path.strip_prefix("/cdn/") else {
        return Resp::new(404);
    };
    let (sha, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = percent_decode(path);
    let found = st
        .repos
        .iter()
        .flat_map(|r| r.commits.iter())
        .flat_map(|c| c.values())
        .find(|f| f.sha256 == sha)
        .cloned();
    match found {
        Some(f) => content(st, req, &f, &path).h("ETag", format!("\"{}\"", f.sha256)),
        None => Resp::new(404),
    }
}

/// 200 with the file, or 206 for a `Range: bytes=A-[B]`; hooks applied.
fn content(st: &State, req: &Req, f: &FileDef, path: &str) -> Resp {
    let total = f.size;
    let (mut start, mut end) = (0, total.saturating_sub(1));
    let mut status = 200;
    if let Some(r) = req.header("range").and_then(|r| r.strip_prefix("bytes=")) {
        let (a, b) = r.split_once('-').unwrap_or((r, ""));
        let a: u64 = a.parse().unwrap_or(0);
        let b: u64 = b
            .parse()
            .unwrap_or(total.saturating_sub(1))
            .min(total.saturating_sub(1));
        if a >= total || a > b {
            return Resp::new(416).h("Content-Range", format!("bytes */{total}"));
        }
        (start, end, status) = (a, b, 206);
    }
    let len = if total == 0 { 0 } else { end - start + 1 };
    let (flip, cut) = if req.method == "GET" {
        let mut hooks = st.hooks.lock().unwrap();
        let flip = hooks.wrong_bytes.contains(path);
        let cut = match hooks.truncate.get_mut(path) {
            Some((at, n)) if *n > 0 => {
                *n -= 1;
                Some(*at)
            }
            _ => None,
        };
        (flip, cut)
    } else {
        (false, None)
    };
    let mut r = Resp::new(status)
        .h("Content-Type", "application/octet-stream")
        .h("Accept-Ranges", "bytes");
    if status == 206 {
        r = r.h("Content-Range", format!("bytes {start}-{end}/{total}"));
    }
    r.body = Body::File {
        file: Box::new(f.clone()),
        start,
        len,
        flip,
        cut,
    };
    r
}

/// The virtualenv with the real huggingface_hub (`AIRLOCK_PYENV`, default `target/pyenv`).
pub fn pyenv() -> PathBuf {
    std::env::var_os("AIRLOCK_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv"))
}

/// Runs the real `hf download ARGS --cache-dir CACHE` against the emulator (no token, no
/// telemetry, no update check, a private HF_HOME).
pub fn hf_download(hub: &Hub, args: &[&str], cache: &Path) -> Output {
    let hf = pyenv().join("bin/hf");
    assert!(
        hf.exists(),
        "{} is missing: run scripts/pyenv.sh (or set AIRLOCK_PYENV)",
        hf.display()
    );
    let home = cache.with_extension("hf-home");
    Command::new(hf)
        .arg("download")
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .env("HF_ENDPOINT", hub.url())
        .env("HF_HOME", &home)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_UPDATE_CHECK", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("NO_PROXY", "*")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap()
}

/// The cache `hf download ARGS` builds in `cache` (which must succeed): the reference that
/// airlock's imported cache is compared against with [`cache_listing`].
pub fn reference_cache(hub: &Hub, args: &[&str], cache: &Path) -> PathBuf {
    let out = hf_download(hub, args, cache);
    assert!(
        out.status.success(),
        "hf download {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    cache.to_path_buf()
}

/// `find DIR -printf '%y %p %l\n'` with paths relative to `dir`, sorted; `.locks` left out.
pub fn cache_listing(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        if rel.starts_with(".locks") {
            continue;
        }
        let ft = e.file_type();
        let (y, l) = if ft.is_symlink() {
            (
                'l',
                std::fs::read_link(e.path()).unwrap().display().to_string(),
            )
        } else if ft.is_dir() {
            ('d', String::new())
        } else {
            ('f', String::new())
        };
        v.push(format!("{y} {rel} {l}"));
    }
    v.sort();
    v
}
