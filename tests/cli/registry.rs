//! The OCI pull client against a real registry: Debian's docker-registry (Distribution 2.8)
//! on 127.0.0.1 with its own config, populated with skopeo from an OCI layout built here. The
//! harness is `support::registry`; it is re-exported here, where the tests name it.

use std::io::{BufRead, BufReader};

use airlock::format::Digest;
use airlock::oci::client::{ConnectOptions, Registry};
use airlock::Error;

pub use crate::support::registry::*;
use crate::support::*;

#[test]
fn pulls_manifests_and_blobs_byte_exact_and_verified() {
    let reg = TestRegistry::start();
    let env = Env::new();
    let (layout, manifest, blobs) = build_layout(env.dir.path());
    skopeo_push(&layout, &format!("{}/test/img:t", reg.addr));

    let client = Registry::new(&reg.addr, &ConnectOptions::default()).unwrap();
    let m = client.manifest("test/img", "t").unwrap();
    assert_eq!(
        m.bytes, manifest,
        "skopeo keeps OCI manifests byte-exact and so must the pull"
    );
    assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m.digest, Digest::of(&manifest));
    // By digest too.
    assert_eq!(
        client
            .manifest("test/img", &m.digest.to_string())
            .unwrap()
            .bytes,
        manifest
    );
    for (d, data) in &blobs {
        let mut out = Vec::new();
        assert_eq!(
            client.blob_to("test/img", d, &mut out).unwrap(),
            data.len() as u64
        );
        assert_eq!(&out, data);
    }
}

/// A hostile registry: serves bytes that do not match the digests asked for or announced.
fn hostile_registry() -> String {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            // A TLS probe (airlock tries HTTPS first on loopback) is not HTTP: drop it.
            if r.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let body: &[u8] = b"{\"schemaVersion\":2}";
            let header = if line.contains("/manifests/") {
                // Announces the digest of other bytes.
                format!("Content-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: {}\r\n", Digest::of(b"other"))
            } else {
                String::new()
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        }
    });
    addr
}

#[test]
fn wrong_bytes_are_refused_naming_the_digests() {
    let addr = hostile_registry();
    let client = Registry::new(&addr, &ConnectOptions::default()).unwrap();
    let asked = Digest::of(b"the real layer");
    match client.blob_to("x/y", &asked, &mut Vec::new()) {
        Err(Error::DigestMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, asked);
            assert_eq!(actual, Digest::of(b"{\"schemaVersion\":2}"));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    match client.manifest("x/y", "t") {
        Err(e @ Error::DigestMismatch { .. }) => assert!(
            e.to_string().contains(&Digest::of(b"other").to_string()),
            "{e}"
        ),
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    // Pinned by digest: the body must hash to that digest.
    let pinned = Digest::of(b"pinned");
    assert!(matches!(
        client.manifest("x/y", &pinned.to_string()),
        Err(Error::DigestMismatch { .. })
    ));
}

#[test]
fn missing_blobs_and_tags_are_clear_errors() {
    let reg = TestRegistry::start();
    let env = Env::new();
    let (layout, _, _) = build_layout(env.dir.path());
    skopeo_push(&layout, &format!("{}/test/img:t", reg.addr));
    let client = Registry::new(&reg.addr, &ConnectOptions::default()).unwrap();
    let missing = Digest::of(b"not in the registry");
    let err = client
        .blob_to("test/img", &missing, &mut Vec::new())
        .unwrap_err();
    assert!(
        err.to_string().contains(&missing.to_string()) && err.to_string().contains("404"),
        "{err}"
    );
    let err = client.manifest("test/img", "nope").unwrap_err();
    assert!(
        err.to_string().contains("/v2/test/img/manifests/nope"),
        "{err}"
    );
}

#[test]
fn basic_auth_registry() {
    use airlock::oci::client::Credentials;
    let reg = TestRegistry::start_with(Some(HTPASSWD));
    let env = Env::new();
    let (layout, manifest, _) = build_layout(env.dir.path());
    skopeo_push_as(
        &layout,
        &format!("{}/test/img:t", reg.addr),
        Some("testuser:testpass"),
    );
    let anonymous = Registry::new(&reg.addr, &ConnectOptions::default()).unwrap();
    let err = anonymous.manifest("test/img", "t").unwrap_err();
    assert!(err.to_string().contains("authentication required"), "{err}");
    let wrong = Credentials {
        username: "testuser".into(),
        password: "nope".into(),
    };
    let err = Registry::new(&reg.addr, &with_creds(wrong))
        .unwrap()
        .manifest("test/img", "t")
        .unwrap_err();
    assert!(err.to_string().contains("authentication failed"), "{err}");
    let right = Credentials {
        username: "testuser".into(),
        password: "testpass".into(),
    };
    let client = Registry::new(&reg.addr, &with_creds(right)).unwrap();
    assert_eq!(client.manifest("test/img", "t").unwrap().bytes, manifest);
}

#[test]
fn bearer_token_flow_and_no_credentials_on_cross_host_redirects() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    let blob = b"layer bytes".to_vec();
    let digest = Digest::of(&blob);
    // The "CDN": another host name (localhost vs 127.0.0.1) and port; records the headers it saw.
    let cdn = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cdn_port = cdn.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let cdn_seen = seen.clone();
    let cdn_blob = blob.clone();
    std::thread::spawn(move || {
        for stream in cdn.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            let (_, headers) = read_request(&s);
            cdn_seen.lock().unwrap().extend(headers);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                cdn_blob.len()
            );
            let _ = s.write_all(&cdn_blob);
        }
    });
    // The registry: 401 with a Bearer challenge unless the token is presented; a token
    // endpoint; blobs answered by a redirect to the CDN.
    let reg = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reg.local_addr().unwrap().to_string();
    let realm = format!("http://{addr}/token");
    std::thread::spawn(move || {
        for stream in reg.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            let (line, headers) = read_request(&s);
            let authed = headers.iter().any(|h| h == "authorization: bearer t0k3n");
            let reply = if line.starts_with("GET /token?") {
                assert!(
                    line.contains("scope=repository%3Aorg%2Fimg%3Apull")
                        && line.contains("service=test-registry"),
                    "{line}"
                );
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 19\r\nConnection: close\r\n\r\n{\"token\": \"t0k3n\"}\n".to_string()
            } else if !authed {
                format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"test-registry\",scope=\"repository:org/img:pull\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            } else {
                format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://localhost:{cdn_port}/blob\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            };
            let _ = s.write_all(reply.as_bytes());
        }
    });
    let client = Registry::new(&addr, &ConnectOptions::default()).unwrap();
    let mut out = Vec::new();
    client.blob_to("org/img", &digest, &mut out).unwrap();
    assert_eq!(out, blob);
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "the CDN was asked");
    assert!(
        !seen.iter().any(|h| h.starts_with("authorization")),
        "credentials leaked to another host: {seen:?}"
    );
}
