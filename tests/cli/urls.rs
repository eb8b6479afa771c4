//! URL sources against a local HTTP server on 127.0.0.1: right digest, wrong digest, server
//! error, a connection dropped mid-download, a redirect.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;

use airlock::format::Digest;

use crate::support::*;

const GOOD_LEN: usize = 3 * 1024 * 1024 + 17;

/// Serves a few fixed routes until the test process ends; returns the base URL.
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut s) = stream else { continue };
            thread::spawn(move || {
                let mut line = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                r.read_line(&mut line).unwrap();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap() <= 2 {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let good = pseudo_random(GOOD_LEN, 3);
                let _ = match path.as_str() {
                    "/files/model.bin" => {
                        write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", good.len()).unwrap();
                        s.write_all(&good)
                    }
                    "/moved" => s.write_all(b"HTTP/1.1 302 Found\r\nLocation: /files/model.bin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                    "/broken" => s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                    "/files/drop.bin" => {
                        write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", good.len()).unwrap();
                        s.write_all(&good[..100_000])
                    }
                    _ => s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn pinned_download_round_trips() {
    let env = Env::new();
    env.keygen("k");
    let base = serve();
    let digest = Digest::of(&pseudo_random(GOOD_LEN, 3));
    let src = format!("{base}/files/model.bin#sha256={}", digest.hex());
    let out = env.pack(&[&src], "k", "b", &["--json"]).ok().json();
    assert_eq!(out["artifacts"][0]["name"], "model.bin");
    assert!(
        !env.path("b/.airlock-staging").exists(),
        "staging is removed"
    );
    env.run(&["import", "b", "--trust", "k.pub", "--files", "d"])
        .ok();
    assert_eq!(env.read("d/model.bin"), pseudo_random(GOOD_LEN, 3));
    // Redirects are followed; an unpinned URL is recorded with the digest it had.
    env.pack(&[&format!("{base}/moved")], "k", "b2", &[]).ok();
    let m: serde_json::Value = serde_json::from_slice(&env.read("b2/manifest.json")).unwrap();
    let identity = m["artifacts"][0]["identity"].as_str().unwrap();
    assert!(
        identity.contains("/files/model.bin") && identity.contains(&digest.to_string()),
        "{identity}"
    );
}

#[test]
fn wrong_pin_aborts_naming_url_and_both_digests() {
    let env = Env::new();
    env.keygen("k");
    let base = serve();
    let wrong = "ab".repeat(32);
    let actual = Digest::of(&pseudo_random(GOOD_LEN, 3));
    env.pack(
        &[&format!("{base}/files/model.bin#sha256={wrong}")],
        "k",
        "b",
        &[],
    )
    .code(3)
    .stderr_has(&format!("{base}/files/model.bin"))
    .stderr_has(&format!("expected sha256:{wrong}"))
    .stderr_has(&format!("got {actual}"));
    assert!(!env.path("b").exists(), "no bundle is left behind");
}

#[test]
fn server_errors_and_dropped_connections_fail_cleanly() {
    let env = Env::new();
    env.keygen("k");
    let base = serve();
    env.pack(&[&format!("{base}/broken")], "k", "b", &[])
        .code(1)
        .stderr_has("server answered 500");
    assert!(!env.path("b").exists());
    env.pack(&[&format!("{base}/files/drop.bin")], "k", "b", &[])
        .code(1)
        .stderr_has("/files/drop.bin");
    assert!(!env.path("b").exists());
}
