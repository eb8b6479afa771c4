//! Getting airlock into the enclave: host names resolve without glibc's NSS (`/etc/hosts`,
//! `localhost`, `/etc/resolv.conf`). Tests that need root (mount namespaces) say so and skip
//! without it; CI runs as root.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::thread;

use crate::support::*;

/// Serves `body` at `/blob` on 127.0.0.1 until the test process ends; the port.
fn serve(body: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let body = body.clone();
            thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let _ = if line.split_whitespace().nth(1) == Some("/blob") {
                    write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .and_then(|_| s.write_all(&body))
                } else {
                    s.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                };
            });
        }
    });
    port
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when this process may make mount namespaces (root, and `unshare` allowed here);
/// otherwise says why the caller skips.
fn can_unshare(test: &str) -> bool {
    let ok = is_root()
        && Command::new("unshare")
            .args(["--mount", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED {test}: needs root and unshare --mount (CI runs as root)");
    }
    ok
}

/// The binary run with its own `/etc/hosts` and `/etc/resolv.conf` (bind-mounted in a private
/// mount namespace: the machine's files are untouched).
fn with_etc(env: &Env, hosts: &str, resolv: &str, args: &[&str]) -> Run {
    let h = env.write("etc/hosts", hosts);
    let r = env.write("etc/resolv.conf", resolv);
    let mut c = env.wrapped(
        &[
            "unshare",
            "--mount",
            "sh",
            "-c",
            r#"mount --bind "$H" /etc/hosts && mount --bind "$R" /etc/resolv.conf && exec "$0" "$@""#,
        ],
        args,
    );
    c.env("H", h).env("R", r);
    run_cmd_for(c, 120)
}

/// `localhost`, a name from `/etc/hosts` (dotted, and single-label while resolv.conf has search
/// domains: files before DNS, as glibc's `hosts: files dns`), each packed from an HTTP server on
/// 127.0.0.1; a name in neither file fails naming it, and with no name server configured it
/// says so instead of asking a public resolver.
#[test]
fn host_names_resolve_from_etc_hosts_and_localhost() {
    if !can_unshare("host_names_resolve_from_etc_hosts_and_localhost") {
        return;
    }
    let env = Env::new();
    env.keygen("k");
    let body = pseudo_random(10_000, 7);
    let port = serve(body.clone());
    let hosts = "127.0.0.1 mirror.enclave.test mirror\n::1 ip6-localhost\n";
    // A name server nobody listens on: a lookup that reached DNS would fail.
    let resolv =
        "nameserver 127.0.0.1\nsearch enclave.test example.org\noptions timeout:1 attempts:1\n";
    for (i, host) in ["localhost", "mirror.enclave.test", "mirror"]
        .iter()
        .enumerate()
    {
        let url = format!("http://{host}:{port}/blob");
        let out = format!("b{i}");
        with_etc(
            &env,
            hosts,
            resolv,
            &["pack", &url, "--out", &out, "--key", "k"],
        )
        .ok();
        env.run(&["import", &out, "--trust", "k.pub", "--files", "got"])
            .ok();
        assert_eq!(fs::read(env.path("got/blob")).unwrap(), body, "{host}");
        fs::remove_dir_all(env.path("got")).unwrap();
        fs::remove_dir_all(env.state_dir()).unwrap();
    }

    let url = format!("http://elsewhere.enclave.test:{port}/blob");
    with_etc(
        &env,
        hosts,
        "# no name server\n",
        &["pack", &url, "--out", "bx", "--key", "k"],
    )
    .code(1)
    .stderr_has("cannot resolve elsewhere.enclave.test: not in /etc/hosts, and no name server");
    assert!(!env.path("bx/manifest.json").exists());
}
