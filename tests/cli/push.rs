//! Pushing images with `airlock::oci::push` to a real registry (Debian's docker-registry,
//! Distribution 2.8) and reading them back with skopeo; the client's retries and resumable
//! downloads against small in-process servers and proxies.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock::format::Digest;
use airlock::net::RetryPolicy;
use airlock::oci::client::{ConnectOptions, Registry};
use airlock::oci::image::{self, LayoutBlobs};
use airlock::oci::model::{descriptor_of, Descriptor};
use airlock::oci::push::{push_image, PushOptions, PushReport};
use airlock::progress::Silent;

use crate::registry::{read_request, write_blob, TestRegistry, HTPASSWD};
use crate::support::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Retries without real waiting, so failure paths stay quick.
fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(1),
    }
}

fn client(addr: &str) -> Registry {
    Registry::new(addr, &ConnectOptions::default())
        .unwrap()
        .with_retry(fast())
}

/// A deterministic OCI layout holding a single-arch image per architecture, a multi-arch index
/// over two of them, and an OCI 1.1 artifact.
struct Fixture {
    layout: PathBuf,
    amd64: Descriptor,
    arm64: Descriptor,
    index: Descriptor,
    artifact: Descriptor,
}

fn put(layout: &Path, data: &[u8], media_type: &str) -> Descriptor {
    write_blob(layout, data);
    descriptor_of(data, media_type)
}

/// An image manifest for `arch` with one tar layer of `layer_len` pseudo-random bytes.
fn image(layout: &Path, arch: &str, layer_len: usize, seed: u64) -> Descriptor {
    let layer = layer_tar(&[("model/weights.bin", pseudo_random(layer_len, seed))]);
    let l = put(layout, &layer, "application/vnd.oci.image.layer.v1.tar");
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{}}}}"#,
        l.digest
    );
    let c = put(
        layout,
        config.as_bytes(),
        "application/vnd.oci.image.config.v1+json",
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
        c.media_type, c.digest, c.size, l.media_type, l.digest, l.size
    );
    put(layout, manifest.as_bytes(), OCI_MANIFEST)
}

fn fixture(root: &Path, layer_len: usize) -> Fixture {
    let layout = root.join("layout");
    fs::create_dir_all(&layout).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    let amd64 = image(&layout, "amd64", layer_len, 1);
    let arm64 = image(&layout, "arm64", layer_len, 2);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}],"annotations":{{"org.opencontainers.image.source":"airlock-test"}}}}"#,
        amd64.digest, amd64.size, arm64.digest, arm64.size
    );
    let index = put(&layout, index.as_bytes(), OCI_INDEX);
    let empty = put(&layout, b"{}", EMPTY);
    assert_eq!(
        empty.digest.to_string(),
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    let data = put(
        &layout,
        &pseudo_random(5000, 3),
        "application/vnd.airlock.test.data",
    );
    let artifact = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.airlock.test.v1","config":{{"mediaType":"{EMPTY}","digest":"{}","size":2,"data":"e30="}},"layers":[{{"mediaType":"{}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.title":"data.bin"}}}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{}}},"annotations":{{"org.opencontainers.image.created":"2024-01-01T00:00:00Z"}}}}"#,
        empty.digest, data.media_type, data.digest, data.size, amd64.digest, amd64.size
    );
    let artifact = put(&layout, artifact.as_bytes(), OCI_MANIFEST);
    fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_INDEX}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"multi"}}}}]}}"#,
            index.digest, index.size
        ),
    )
    .unwrap();
    Fixture {
        layout,
        amd64,
        arm64,
        index,
        artifact,
    }
}

fn push(
    reg: &Registry,
    f: &Fixture,
    repo: &str,
    tag: &str,
    top: &Descriptor,
    opts: &PushOptions,
) -> airlock::Result<PushReport> {
    push_image(
        reg,
        repo,
        Some(tag),
        top,
        &LayoutBlobs(f.layout.clone()),
        opts,
        &Silent,
    )
}

/// skopeo reads `repo:tag` back byte-identical to the layout's manifest `top`.
#[track_caller]
fn assert_raw(addr: &str, repo: &str, tag: &str, f: &Fixture, top: &Descriptor) {
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{addr}/{repo}:{tag}"),
    ]);
    let want = fs::read(f.layout.join("blobs/sha256").join(top.digest.hex())).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&raw),
        String::from_utf8_lossy(&want),
        "{repo}:{tag} differs"
    );
}

/// Small chunks so a few-hundred-KiB layer takes the chunked path with several PATCHes.
fn chunked() -> PushOptions {
    PushOptions {
        monolithic_max: 64 << 10,
        chunk_size: 40_000,
        ..Default::default()
    }
}

#[test]
fn pushes_images_indexes_and_artifacts_byte_exact() {
    let reg = TestRegistry::start();
    let env = Env::new();
    let f = fixture(env.dir.path(), 20_000);
    let c = client(&reg.addr);
    let opts = PushOptions::default();

    let r = push(&c, &f, "push/single", "v1", &f.amd64, &opts).unwrap();
    assert_eq!((r.blobs_uploaded, r.chunked_uploads), (2, 0), "{r:?}");
    assert_eq!((r.manifests_pushed, r.tag_updated), (1, true), "{r:?}");
    assert_eq!(r.digest, f.amd64.digest);

    let r = push(&c, &f, "push/multi", "v1", &f.index, &opts).unwrap();
    assert_eq!((r.blobs_uploaded, r.manifests_pushed), (4, 3), "{r:?}");

    let r = push(&c, &f, "push/art", "v1", &f.artifact, &opts).unwrap();
    assert_eq!((r.blobs_uploaded, r.manifests_pushed), (2, 1), "{r:?}");

    for (repo, top) in [
        ("push/single", &f.amd64),
        ("push/multi", &f.index),
        ("push/art", &f.artifact),
    ] {
        assert_raw(&reg.addr, repo, "v1", &f, top);
        assert_eq!(c.manifest_digest(repo, "v1").unwrap(), Some(top.digest));
        // skopeo pulls every image back (every platform of the index).
        let back = env
            .dir
            .path()
            .join(format!("back-{}", repo.replace('/', "-")));
        skopeo(&[
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            &format!("docker://{}/{repo}:v1", reg.addr),
            &format!("oci:{}:v1", back.display()),
        ]);
        assert!(
            back.join("blobs/sha256").join(top.digest.hex()).is_file(),
            "{repo}: skopeo's copy lacks manifest {}",
            top.digest
        );
    }
    assert_eq!(c.manifest_digest("push/multi", "nope").unwrap(), None);

    // Pushing again changes nothing: every blob and manifest is found by HEAD.
    let r = push(&c, &f, "push/multi", "v1", &f.index, &opts).unwrap();
    assert_eq!(
        (r.blobs_present, r.blobs_uploaded, r.blobs_mounted),
        (4, 0, 0),
        "{r:?}"
    );
    assert_eq!((r.manifests_present, r.manifests_pushed), (3, 0), "{r:?}");
    assert!(!r.tag_updated && r.bytes_uploaded == 0, "{r:?}");
    // A new tag for the same image only writes the tag.
    let r = push(&c, &f, "push/multi", "v2", &f.index, &opts).unwrap();
    assert!(r.tag_updated && r.manifests_pushed == 0, "{r:?}");
    assert_raw(&reg.addr, "push/multi", "v2", &f, &f.index);
}

#[test]
fn large_blobs_go_in_several_chunks() {
    let reg = TestRegistry::start();
    let env = Env::new();
    let f = fixture(env.dir.path(), 300_000);
    let c = client(&reg.addr);
    let r = push(&c, &f, "push/big", "v1", &f.index, &chunked()).unwrap();
    // Two ~300 KB layers in 40 000-byte PATCHes; the small configs go in one PUT.
    assert_eq!((r.blobs_uploaded, r.chunked_uploads), (4, 2), "{r:?}");
    assert!(r.bytes_uploaded > 600_000, "{r:?}");
    assert_raw(&reg.addr, "push/big", "v1", &f, &f.index);
    let layer = image::graph(&LayoutBlobs(f.layout.clone()), &f.amd64)
        .unwrap()
        .blobs
        .into_iter()
        .find(|d| d.size > 300_000)
        .unwrap();
    let mut out = Vec::new();
    assert_eq!(
        c.blob_to("push/big", &layer.digest, &mut out).unwrap(),
        layer.size
    );
    assert_eq!(Digest::of(&out), layer.digest);
}

#[test]
fn blobs_are_mounted_from_other_repositories() {
    let reg = TestRegistry::start();
    let env = Env::new();
    let f = fixture(env.dir.path(), 20_000);
    let c = client(&reg.addr);
    push(&c, &f, "team/base", "v1", &f.amd64, &PushOptions::default()).unwrap();
    let from = |repos: &[&str]| PushOptions {
        mount_from: repos.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    // The first candidate lacks the blobs (202: an upload session, dropped), the second has them.
    let r = push(
        &c,
        &f,
        "team/app",
        "v1",
        &f.amd64,
        &from(&["team/empty", "team/base"]),
    )
    .unwrap();
    assert_eq!((r.blobs_mounted, r.blobs_uploaded), (2, 0), "{r:?}");
    assert_raw(&reg.addr, "team/app", "v1", &f, &f.amd64);
    // Nothing to mount from: the session a 202 opened carries the upload.
    let r = push(&c, &f, "team/other", "v1", &f.arm64, &from(&["team/base"])).unwrap();
    assert_eq!((r.blobs_mounted, r.blobs_uploaded), (0, 2), "{r:?}");
    assert_raw(&reg.addr, "team/other", "v1", &f, &f.arm64);
}

/// A TCP proxy in front of `upstream` that forwards until `up` bytes went to the server or
/// `down` bytes came back, then cuts every connection and drops all new ones.
pub struct Proxy {
    pub addr: String,
    pub up: Arc<AtomicI64>,
    pub down: Arc<AtomicI64>,
    pub sent_up: Arc<AtomicU64>,
    pub sent_down: Arc<AtomicU64>,
    pub dead: Arc<AtomicBool>,
}

struct Links {
    dead: Arc<AtomicBool>,
    conns: Mutex<Vec<TcpStream>>,
}

impl Links {
    fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().iter() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    budget: Arc<AtomicI64>,
    count: Arc<AtomicU64>,
    links: Arc<Links>,
) {
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        if links.dead.load(Ordering::SeqCst) {
            return;
        }
        let left = budget.fetch_sub(n as i64, Ordering::SeqCst);
        let allowed = left.clamp(0, n as i64) as usize;
        if to.write_all(&buf[..allowed]).is_err() {
            return;
        }
        count.fetch_add(allowed as u64, Ordering::SeqCst);
        if allowed < n {
            links.kill();
            return;
        }
    }
}

pub fn proxy(upstream: &str) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let p = Proxy {
        addr,
        up: Arc::new(AtomicI64::new(i64::MAX)),
        down: Arc::new(AtomicI64::new(i64::MAX)),
        sent_up: Arc::default(),
        sent_down: Arc::default(),
        dead: Arc::default(),
    };
    let links = Arc::new(Links {
        dead: p.dead.clone(),
        conns: Mutex::new(Vec::new()),
    });
    let (up, down) = (p.up.clone(), p.down.clone());
    let (sent_up, sent_down) = (p.sent_up.clone(), p.sent_down.clone());
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            if links.dead.load(Ordering::SeqCst) {
                drop(client);
                continue;
            }
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            {
                let mut conns = links.conns.lock().unwrap();
                conns.push(client.try_clone().unwrap());
                conns.push(server.try_clone().unwrap());
            }
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (l1, l2) = (links.clone(), links.clone());
            let (b1, n1) = (up.clone(), sent_up.clone());
            let (b2, n2) = (down.clone(), sent_down.clone());
            std::thread::spawn(move || pump(client, server, b1, n1, l1));
            std::thread::spawn(move || pump(s2, c2, b2, n2, l2));
        }
    });
    p
}

/// Either the tag is absent, or it points at `top` and every manifest and blob below it is
/// in the repository.
#[track_caller]
fn tag_absent_or_complete(direct: &Registry, f: &Fixture, repo: &str, top: &Descriptor) -> bool {
    match direct.manifest_digest(repo, "v1").unwrap() {
        None => false,
        Some(d) => {
            assert_eq!(d, top.digest, "{repo}:v1 points elsewhere");
            let g = image::graph(&LayoutBlobs(f.layout.clone()), top).unwrap();
            for (m, _) in &g.manifests {
                assert_eq!(
                    direct.manifest_digest(repo, &m.digest.to_string()).unwrap(),
                    Some(m.digest),
                    "{repo}:v1 exists but its manifest {} is missing",
                    m.digest
                );
            }
            for b in &g.blobs {
                assert!(
                    direct.blob_exists(repo, &b.digest).unwrap(),
                    "{repo}:v1 exists but blob {} is missing",
                    b.digest
                );
            }
            true
        }
    }
}

#[test]
fn a_dying_registry_never_leaves_a_broken_tag_and_a_rerun_completes() {
    let reg = TestRegistry::start();
    let env = Env::new();
    let f = fixture(env.dir.path(), 150_000);
    let direct = client(&reg.addr);
    let opts = chunked();

    // How much traffic a whole push makes.
    let p = proxy(&reg.addr);
    let r = push(&client(&p.addr), &f, "dying/measure", "v1", &f.index, &opts).unwrap();
    assert_eq!(r.chunked_uploads, 2, "{r:?}");
    let total_up = p.sent_up.load(Ordering::SeqCst) as f64;
    let total_down = p.sent_down.load(Ordering::SeqCst) as f64;

    let fractions = [0.001, 0.01, 0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99, 0.997];
    let mut failures = 0;
    for (i, (upward, frac)) in [true, false]
        .into_iter()
        .flat_map(|u| fractions.iter().map(move |f| (u, *f)))
        .enumerate()
    {
        let repo = format!("dying/k{i}");
        let p = proxy(&reg.addr);
        let via = client(&p.addr);
        let budget = (if upward { total_up } else { total_down } * frac) as i64;
        if upward {
            p.up.store(budget, Ordering::SeqCst);
        } else {
            p.down.store(budget, Ordering::SeqCst);
        }
        let what = format!(
            "{} cut after {budget} bytes",
            if upward { "upload" } else { "download" }
        );
        match push(&via, &f, &repo, "v1", &f.index, &opts) {
            Ok(_) => {
                assert!(
                    tag_absent_or_complete(&direct, &f, &repo, &f.index),
                    "{what}: the push succeeded without a tag"
                );
            }
            Err(e) => {
                failures += 1;
                let msg = e.to_string();
                assert!(
                    msg.contains(&p.addr) && msg.contains(&repo),
                    "{what}: the error names neither registry nor repository: {msg}"
                );
                assert!(p.dead.load(Ordering::SeqCst), "{what}: {msg}");
                tag_absent_or_complete(&direct, &f, &repo, &f.index);
            }
        }
        // Through a healthy connection the same push completes.
        let r = push(&direct, &f, &repo, "v1", &f.index, &opts).unwrap();
        assert!(
            tag_absent_or_complete(&direct, &f, &repo, &f.index),
            "{what}: {r:?}"
        );
        assert_raw(&reg.addr, &repo, "v1", &f, &f.index);
    }
    assert!(failures >= 15, "only {failures} cuts made the push fail");
}

/// Serves each connection with `answer` (request line, headers, stream); drops TLS probes.
fn serve(answer: impl Fn(&str, &[String], &mut TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut first = [0u8; 1];
            if s.peek(&mut first).unwrap_or(0) == 0 || first[0] == 0x16 {
                continue; // a TLS ClientHello: airlock probes HTTPS first on loopback
            }
            let (line, headers) = read_request(&s);
            answer(&line, &headers, &mut s);
        }
    });
    addr
}

#[test]
fn a_503_is_retried_and_the_pull_succeeds() {
    let reg = TestRegistry::start();
    let env = Env::new();
    let f = fixture(env.dir.path(), 20_000);
    push(
        &client(&reg.addr),
        &f,
        "flaky/img",
        "v1",
        &f.amd64,
        &PushOptions::default(),
    )
    .unwrap();

    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let upstream = reg.addr.clone();
    let addr = serve(move |line, headers, s| {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        // Forward this one request (headers re-sent as read, lower-cased).
        let mut up = TcpStream::connect(&upstream).unwrap();
        let mut req = line.to_string();
        for h in headers.iter().filter(|h| !h.starts_with("connection:")) {
            req += &format!("{h}\r\n");
        }
        req += "connection: close\r\n\r\n";
        up.write_all(req.as_bytes()).unwrap();
        let _ = std::io::copy(&mut up, s);
    });
    // Default policy: the registry's Retry-After: 0 is honoured.
    let c = Registry::new(&addr, &ConnectOptions::default()).unwrap();
    let m = c.manifest("flaky/img", "v1").unwrap();
    assert_eq!(m.digest, f.amd64.digest);
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    for b in image::graph(&LayoutBlobs(f.layout.clone()), &f.amd64)
        .unwrap()
        .blobs
    {
        let mut out = Vec::new();
        c.blob_to("flaky/img", &b.digest, &mut out).unwrap();
        assert_eq!(Digest::of(&out), b.digest);
    }
}

#[test]
fn a_registry_that_stays_unavailable_is_a_clear_error() {
    let addr = serve(|_, _, s| {
        let body = br#"{"errors":[{"code":"UNAVAILABLE","message":"maintenance"}]}"#;
        let _ = write!(
            s,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(body);
    });
    let err = client(&addr).manifest("x/y", "t").unwrap_err().to_string();
    assert!(
        err.contains("/v2/x/y/manifests/t")
            && err.contains("503")
            && err.contains("UNAVAILABLE: maintenance"),
        "{err}"
    );
}

/// A blob server whose first answer breaks off after `cut` bytes; later requests get a `206`
/// for their `Range` (or, with `ranges` false, the whole blob again). Records the ranges asked.
fn breaking_server(data: Vec<u8>, cut: usize, ranges: bool) -> (String, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let first = AtomicBool::new(true);
    let addr = serve(move |_, headers, s| {
        let range = headers
            .iter()
            .find_map(|h| h.strip_prefix("range: bytes="))
            .map(|r| r.trim_end_matches('-').parse::<usize>().unwrap());
        seen.lock()
            .unwrap()
            .push(range.map_or("-".into(), |r| r.to_string()));
        let len = data.len();
        match range {
            Some(start) if ranges => {
                let _ = write!(
                    s,
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    len - 1,
                    len - start
                );
                let _ = s.write_all(&data[start..]);
            }
            _ => {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                );
                let end = if first.swap(false, Ordering::SeqCst) {
                    cut
                } else {
                    len
                };
                let _ = s.write_all(&data[..end]);
            }
        }
        let _ = s.flush();
        let _ = s.shutdown(Shutdown::Both);
    });
    (addr, asked)
}

#[test]
fn an_interrupted_download_resumes_with_range() {
    let data = pseudo_random(200_000, 9);
    let desc = descriptor_of(&data, "application/octet-stream");
    let (addr, asked) = breaking_server(data.clone(), 70_000, true);
    let c = Arc::new(client(&addr));
    let mut r = c.blob_reader("org/model", &desc).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    assert_eq!(Digest::of(&out), desc.digest);
    assert_eq!(r.resumes(), 1);
    assert_eq!(*asked.lock().unwrap(), ["-", "70000"]);

    // blob_to resumes the same way.
    let (addr, asked) = breaking_server(data.clone(), 123_456, true);
    let mut out = Vec::new();
    assert_eq!(
        client(&addr)
            .blob_to("org/model", &desc.digest, &mut out)
            .unwrap(),
        200_000
    );
    assert_eq!(Digest::of(&out), desc.digest);
    assert_eq!(*asked.lock().unwrap(), ["-", "123456"]);
}

#[test]
fn without_range_support_the_download_restarts_and_skips_what_it_has() {
    let data = pseudo_random(150_000, 10);
    let desc = descriptor_of(&data, "application/octet-stream");
    let (addr, asked) = breaking_server(data.clone(), 50_000, false);
    let c = Arc::new(client(&addr));
    let mut out = Vec::new();
    c.blob_reader("org/model", &desc)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(Digest::of(&out), desc.digest);
    assert_eq!(*asked.lock().unwrap(), ["-", "50000"]);
}

#[test]
fn bearer_tokens_are_cached_per_scope() {
    // Tokens name their scope; the registry accepts a token only for its own repository.
    let tokens_issued = Arc::new(AtomicUsize::new(0));
    let challenges = Arc::new(AtomicUsize::new(0));
    let (issued, challenged) = (tokens_issued.clone(), challenges.clone());
    let realm = Arc::new(Mutex::new(String::new()));
    let realm2 = realm.clone();
    let addr = serve(move |line, headers, s| {
        let path = line.split_whitespace().nth(1).unwrap_or("");
        if let Some(q) = path.strip_prefix("/token?") {
            issued.fetch_add(1, Ordering::SeqCst);
            let scope = q
                .split('&')
                .find_map(|kv| kv.strip_prefix("scope="))
                .unwrap();
            let body = format!(r#"{{"token":"t-{scope}"}}"#);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            return;
        }
        let repo = path
            .strip_prefix("/v2/")
            .and_then(|p| p.split_once("/manifests/"))
            .map(|(r, _)| r.replace('/', "%2F"))
            .unwrap_or_default();
        // (read_request lower-cases header lines)
        let want =
            format!("authorization: bearer t-repository%3A{repo}%3Apull").to_ascii_lowercase();
        if !headers.contains(&want) {
            challenged.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                s,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{}\",service=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                realm2.lock().unwrap()
            );
            return;
        }
        let body = br#"{"schemaVersion":2}"#;
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\nDocker-Content-Digest: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            Digest::of(body),
            body.len()
        );
        let _ = s.write_all(body);
    });
    *realm.lock().unwrap() = format!("http://{addr}/token");
    let c = client(&addr);
    c.manifest("team/a", "v1").unwrap();
    c.manifest("team/b", "v1").unwrap();
    c.manifest("team/a", "v2").unwrap();
    c.manifest("team/b", "v2").unwrap();
    // One token per repository; only the first request met a challenge (afterwards the
    // token for a new scope is fetched before asking).
    assert_eq!(tokens_issued.load(Ordering::SeqCst), 2);
    assert_eq!(challenges.load(Ordering::SeqCst), 1);
}

#[test]
fn pushes_with_basic_auth() {
    use airlock::oci::client::Credentials;
    let reg = TestRegistry::start_with(Some(HTPASSWD));
    let env = Env::new();
    let f = fixture(env.dir.path(), 100_000);
    let anonymous = client(&reg.addr);
    let err = push(&anonymous, &f, "auth/img", "v1", &f.index, &chunked()).unwrap_err();
    assert!(err.to_string().contains("authentication required"), "{err}");
    let opts = ConnectOptions {
        creds: Some(Credentials {
            username: "testuser".into(),
            password: "testpass".into(),
        }),
        ..Default::default()
    };
    let c = Registry::new(&reg.addr, &opts).unwrap().with_retry(fast());
    let r = push(&c, &f, "auth/img", "v1", &f.index, &chunked()).unwrap();
    assert_eq!((r.blobs_uploaded, r.chunked_uploads), (4, 2), "{r:?}");
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "testuser:testpass",
        &format!("docker://{}/auth/img:v1", reg.addr),
    ]);
    assert_eq!(Digest::of(&raw), f.index.digest);
}

#[test]
fn a_corrupt_source_blob_stops_the_push_before_any_manifest() {
    let reg = TestRegistry::start();
    let env = Env::new();
    let c = client(&reg.addr);
    for (layer_len, opts) in [(20_000, PushOptions::default()), (200_000, chunked())] {
        let f = fixture(&env.dir.path().join(layer_len.to_string()), layer_len);
        let g = image::graph(&LayoutBlobs(f.layout.clone()), &f.amd64).unwrap();
        let layer = g.blobs.iter().find(|d| d.size > 10_000).unwrap();
        let path = f.layout.join("blobs/sha256").join(layer.digest.hex());
        let mut bytes = fs::read(&path).unwrap();
        bytes[5000] ^= 1;
        fs::write(&path, bytes).unwrap();
        let repo = format!("corrupt/l{layer_len}");
        let err = push(&c, &f, &repo, "v1", &f.amd64, &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&layer.digest.to_string()), "{err}");
        assert_eq!(c.manifest_digest(&repo, "v1").unwrap(), None);
        assert_eq!(
            c.manifest_digest(&repo, &f.amd64.digest.to_string())
                .unwrap(),
            None
        );
        assert!(!c.blob_exists(&repo, &layer.digest).unwrap());
    }
}
