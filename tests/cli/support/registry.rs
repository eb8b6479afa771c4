//! The registry harness: Debian's docker-registry (Distribution 2.8) on 127.0.0.1 with its own
//! config (plain, htpasswd, TLS, bearer tokens from [`TokenServer`]), OCI layouts built here and
//! pushed with skopeo, and a raw request reader for hand-rolled servers.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use airlock::format::Digest;
use airlock::oci::client::{ConnectOptions, Credentials};

pub fn with_creds(c: Credentials) -> ConnectOptions {
    ConnectOptions {
        creds: Some(c),
        ..Default::default()
    }
}
use super::*;

/// A docker-registry process on a random loopback port, stopped when dropped.
pub struct TestRegistry {
    child: Child,
    pub addr: String,
    /// TLS registries: the PEM CA certificate the server certificate chains to.
    pub ca_cert: Option<PathBuf>,
    /// TLS registries: a directory holding that CA as `ca.crt` (skopeo's `--cert-dir`).
    pub cert_dir: Option<PathBuf>,
    /// Token-auth registries: the in-process token server.
    pub token: Option<TokenServer>,
    _dir: tempfile::TempDir,
}

/// How to start a [`TestRegistry`]. Every combination works (token and htpasswd exclude each
/// other: Distribution takes one auth method).
#[derive(Debug, Default, Clone, Copy)]
pub struct RegistryOpts<'a> {
    /// A bcrypt `user:hash` line: the registry demands Basic auth.
    pub htpasswd: Option<&'a str>,
    /// Serve HTTPS with a certificate from a fresh test CA (`ca_cert`).
    pub tls: bool,
    /// Demand Bearer tokens from an in-process token server accepting
    /// [`TOKEN_USER`]:[`TOKEN_PASS`].
    pub token: bool,
}

/// The account the token server accepts (the password contains a `:` on purpose).
pub const TOKEN_USER: &str = "tokenuser";
pub const TOKEN_PASS: &str = "tok:en pass";

impl TestRegistry {
    pub fn start() -> TestRegistry {
        Self::start_with(None)
    }

    /// With `htpasswd` (a bcrypt `user:hash` line), the registry demands Basic auth.
    pub fn start_with(htpasswd: Option<&str>) -> TestRegistry {
        Self::start_opts(RegistryOpts {
            htpasswd,
            ..Default::default()
        })
    }

    /// HTTPS with a certificate (SAN `IP:127.0.0.1`, `DNS:localhost`) from a fresh CA.
    pub fn start_tls() -> TestRegistry {
        Self::start_opts(RegistryOpts {
            tls: true,
            ..Default::default()
        })
    }

    /// Bearer token auth (plain HTTP); credentials [`TOKEN_USER`]:[`TOKEN_PASS`].
    pub fn start_token() -> TestRegistry {
        Self::start_opts(RegistryOpts {
            token: true,
            ..Default::default()
        })
    }

    pub fn start_opts(opts: RegistryOpts) -> TestRegistry {
        require("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:0\n  secret: airlock-test\n",
            dir.path().join("data").display()
        );
        let (mut ca_cert, mut cert_dir) = (None, None);
        if opts.tls {
            let (ca, cert, key) = make_tls(&dir.path().join("tls"));
            yaml += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
            let d = dir.path().join("certs.d");
            fs::create_dir_all(&d).unwrap();
            fs::copy(&ca, d.join("ca.crt")).unwrap();
            ca_cert = Some(ca);
            cert_dir = Some(d);
        }
        assert!(
            !(opts.token && opts.htpasswd.is_some()),
            "one auth method per registry"
        );
        if let Some(line) = opts.htpasswd {
            let path = dir.path().join("htpasswd");
            fs::write(&path, format!("{line}\n")).unwrap();
            yaml += &format!(
                "auth:\n  htpasswd: {{realm: airlock-test, path: {}}}\n",
                path.display()
            );
        }
        let mut token = None;
        if opts.token {
            let t = TokenServer::start(&dir.path().join("token"));
            yaml += &format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm,
                t.service,
                t.issuer,
                t.cert.display()
            );
            token = Some(t);
        }
        fs::write(&cfg, yaml).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker-registry");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining the log so the registry never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // `listening on 127.0.0.1:41815` or, with TLS, `listening on 127.0.0.1:41815, tls`
                if let Some(i) = line.find("listening on ") {
                    let addr: String = line[i + 13..]
                        .chars()
                        .take_while(|c| *c != '"' && *c != ',' && !c.is_whitespace())
                        .collect();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("docker-registry printed no 'listening on' line");
        TestRegistry {
            child,
            addr,
            ca_cert,
            cert_dir,
            token,
            _dir: dir,
        }
    }

    /// Options reaching this registry: its CA trusted when it has one, and `creds`.
    pub fn connect_options(&self, creds: Option<Credentials>) -> ConnectOptions {
        ConnectOptions {
            creds,
            ca_certs: self.ca_cert.iter().cloned().collect(),
            ..Default::default()
        }
    }

    /// Pushes tag `t` of an OCI layout to `repo_tag` (`name:tag`) with skopeo, verifying TLS
    /// against this registry's CA when it has one, with `creds` (`user:pass`) if given.
    pub fn push(&self, layout: &Path, repo_tag: &str, creds: Option<&str>) {
        require("skopeo");
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--preserve-digests"]);
        match &self.cert_dir {
            Some(d) => cmd.arg("--dest-cert-dir").arg(d),
            None => cmd.arg("--dest-tls-verify=false"),
        };
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd
            .arg(format!("oci:{}:t", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.addr))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub fn openssl(args: &[&str]) {
    require("openssl");
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh CA and a server certificate it signed (SAN `IP:127.0.0.1`, `DNS:localhost`), P-256
/// keys: (CA certificate, server certificate, server key), all PEM.
pub fn make_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    fs::create_dir_all(dir).unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
    args.extend(ec);
    let (ca_key, ca) = (p("ca.key"), p("ca.crt"));
    args.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-subj",
        "/CN=airlock test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&args);
    let (key, csr, cert, ext) = (p("server.key"), p("server.csr"), p("server.crt"), p("ext"));
    let mut args = vec!["req", "-nodes"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
    openssl(&args);
    fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    (ca.into(), cert.into(), key.into())
}

/// One request the token server answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The `service` parameter.
    pub service: Option<String>,
    /// Every `scope` parameter (each may hold several space-separated scopes).
    pub scopes: Vec<String>,
    /// The Basic user name, if any was sent.
    pub user: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
}

/// A Docker token-auth server (distribution `docs/spec/auth/token.md`) on 127.0.0.1: checks
/// HTTP Basic credentials ([`TOKEN_USER`]:[`TOKEN_PASS`]) and the `service`, and answers with
/// an RS256 JWT (signed by the `openssl` CLI, `kid` = the libtrust key id) granting exactly
/// the requested scopes. Anonymous or wrong credentials get a 401. Stopped when dropped.
pub struct TokenServer {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// The issuer certificate (PEM): the registry's `rootcertbundle`.
    pub cert: PathBuf,
    /// Every request answered, in order.
    pub requests: Arc<Mutex<Vec<TokenRequest>>>,
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    pub fn start(dir: &Path) -> TokenServer {
        fs::create_dir_all(dir).unwrap();
        let key = dir.join("key.pem");
        let cert = dir.join("cert.pem");
        openssl(&[
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-days",
            "2",
            "-subj",
            "/CN=airlock test token issuer",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        let spki = Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(spki.status.success());
        let kid = libtrust_key_id(&spki.stdout);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = TokenServer {
            realm: format!("http://{addr}/token"),
            service: "airlock-test-registry".into(),
            issuer: "airlock-test-issuer".into(),
            cert,
            requests: Arc::default(),
            addr,
            stop: Arc::default(),
        };
        let ctx = TokenCtx {
            key,
            kid,
            service: server.service.clone(),
            issuer: server.issuer.clone(),
            requests: server.requests.clone(),
        };
        let stop = server.stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(s) = stream else { continue };
                ctx.serve(s);
            }
        });
        server
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

struct TokenCtx {
    key: PathBuf,
    kid: String,
    service: String,
    issuer: String,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// libtrust's key id: base32 of the first 240 bits of SHA-256(DER SubjectPublicKeyInfo), in
/// groups of four separated by `:` (what Distribution matches a JWT's `kid` against).
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(spki_der);
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    // 30 bytes = 240 bits = 48 base32 characters, no padding.
    for chunk in hash[..30].chunks(5) {
        let n = chunk.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        for i in (0..8).rev() {
            out.push(ALPHABET[((n >> (i * 5)) & 31) as usize] as char);
        }
    }
    out.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

impl TokenCtx {
    fn serve(&self, mut s: std::net::TcpStream) {
        use std::io::Write;
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let (line, headers) = read_request_raw(&s);
        let target = line.split_whitespace().nth(1).unwrap_or("");
        let url = reqwest::Url::parse(&format!("http://token{target}"));
        let (status, body, extra) = match url {
            Ok(url) if url.path() == "/token" && line.starts_with("GET ") => {
                self.answer(&url, &headers)
            }
            _ => (404, r#"{"errors":[{"code":"NOT_FOUND"}]}"#.to_string(), ""),
        };
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            _ => "Not Found",
        };
        let _ = write!(
            s,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    fn answer(&self, url: &reqwest::Url, headers: &[String]) -> (u16, String, &'static str) {
        let mut req = TokenRequest {
            service: None,
            scopes: Vec::new(),
            user: None,
            status: 0,
        };
        for (k, v) in url.query_pairs() {
            match &*k {
                "service" => req.service = Some(v.into_owned()),
                "scope" => req.scopes.push(v.into_owned()),
                _ => {}
            }
        }
        use base64::Engine;
        // (user, password) from `Authorization: Basic ...`; undecodable counts as wrong.
        let basic = headers.iter().find_map(|h| {
            let (name, value) = h.split_once(':')?;
            if !name.trim().eq_ignore_ascii_case("authorization") {
                return None;
            }
            let value = value.trim();
            let (scheme, cred) = value.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(cred.trim())
                .unwrap_or_default();
            let s = String::from_utf8(raw).unwrap_or_default();
            let (u, p) = s.split_once(':').unwrap_or((&s, ""));
            Some((u.to_string(), p.to_string()))
        });
        if let Some((u, _)) = &basic {
            req.user = Some(u.clone());
        }
        let (status, body, extra) = match basic {
            None => (
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                    .to_string(),
                "WWW-Authenticate: Basic realm=\"airlock-test-token\"\r\n",
            ),
            Some((u, p)) if u != TOKEN_USER || p != TOKEN_PASS => (
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid credentials"}]}"#
                    .to_string(),
                "WWW-Authenticate: Basic realm=\"airlock-test-token\"\r\n",
            ),
            Some(_) if req.service.as_deref() != Some(&self.service) => (
                400,
                r#"{"errors":[{"code":"UNSUPPORTED","message":"unknown service"}]}"#.to_string(),
                "",
            ),
            Some(_) => match self.token(&req.scopes) {
                Some(jwt) => (
                    200,
                    format!(r#"{{"token":"{jwt}","access_token":"{jwt}","expires_in":300}}"#),
                    "",
                ),
                None => (
                    400,
                    r#"{"errors":[{"code":"UNSUPPORTED","message":"malformed scope"}]}"#
                        .to_string(),
                    "",
                ),
            },
        };
        req.status = status;
        self.requests.lock().unwrap().push(req);
        (status, body, extra)
    }

    /// A JWT granting exactly `scopes` (`type:name:action,action`; `name` may hold a `:port`).
    fn token(&self, scopes: &[String]) -> Option<String> {
        let mut access = Vec::new();
        for scope in scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter(|s| !s.is_empty())
        {
            let (rest, actions) = scope.rsplit_once(':')?;
            let (typ, name) = rest.split_once(':')?;
            access.push(serde_json::json!({
                "type": typ,
                "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": self.kid});
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": TOKEN_USER,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{}", access.len()),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        // RS256 = RSASSA-PKCS1-v1_5 over SHA-256: exactly what `openssl dgst -sign` writes.
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl dgst -sign failed");
        Some(format!("{input}.{}", b64url(&out.stdout)))
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_blob(layout: &Path, data: &[u8]) -> (Digest, usize) {
    let d = Digest::of(data);
    let p = layout.join("blobs/sha256").join(d.hex());
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    (d, data.len())
}

/// (layout directory, manifest bytes, blobs with their bytes)
pub type Layout = (PathBuf, Vec<u8>, Vec<(Digest, Vec<u8>)>);

/// A deterministic single-image OCI layout tagged `t`.
pub fn build_layout(root: &Path) -> Layout {
    let layout = root.join("layout");
    fs::create_dir_all(&layout).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    let layer = super::layer_tar(&[("data/weights.bin", pseudo_random(300_000, 11))]);
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:LAYER"]},"config":{}}"#
        .to_vec();
    let config = String::from_utf8(config)
        .unwrap()
        .replace("sha256:LAYER", &Digest::of(&layer).to_string())
        .into_bytes();
    let (ld, ls) = write_blob(&layout, &layer);
    let (cd, cs) = write_blob(&layout, &config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{ls}}}]}}"#
    )
    .into_bytes();
    let (md, ms) = write_blob(&layout, &manifest);
    fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#
        ),
    )
    .unwrap();
    (layout, manifest, vec![(cd, config), (ld, layer)])
}

pub fn skopeo_push(layout: &Path, dest: &str) {
    skopeo_push_as(layout, dest, None)
}

pub fn skopeo_push_as(layout: &Path, dest: &str, creds: Option<&str>) {
    require("skopeo");
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ]);
    if let Some(c) = creds {
        cmd.args(["--dest-creds", c]);
    }
    let out = cmd
        .arg(format!("oci:{}:t", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// bcrypt of `testpass` (cost 5), as Distribution's htpasswd auth needs.
pub const HTPASSWD: &str = "testuser:$2b$05$3zR42Gef36Rvb4mjlHD7bOOB1AipiX3ApzK2JLkn6YvtlFbyFKTcq";

/// Reads one request's first line and headers; a TLS probe (not HTTP) reads as an empty line.
pub fn read_request(s: &std::net::TcpStream) -> (String, Vec<String>) {
    let (line, headers) = read_request_raw(s);
    (
        line,
        headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
    )
}

/// Like [`read_request`], header lines trimmed but with their case kept.
pub fn read_request_raw(s: &std::net::TcpStream) -> (String, Vec<String>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return (String::new(), Vec::new());
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) <= 2 {
            break;
        }
        headers.push(h.trim().to_string());
    }
    (line, headers)
}
