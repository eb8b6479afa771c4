//! Getting airlock into the enclave: host names resolve without glibc's NSS (`/etc/hosts`,
//! `localhost`, `/etc/resolv.conf`), and the release — a static binary built by
//! `scripts/release.sh` — runs in an empty chroot and installs as a Debian package whose man
//! pages `man` shows.
//!
//! The release build is the one expensive step (minutes): [`static_binary`] runs it once per
//! test process, into `target/release-static`, where cargo finds it up to date next time. Only
//! one test uses it. Tests that need root (mount namespaces, chroot) say so and skip without it;
//! CI runs as root.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;

use crate::support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

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

/// Runs `scripts/release.sh --build-only` once per test process: the static binary's path,
/// and how long the build took (cargo's up-to-date check when nothing changed).
fn static_binary() -> &'static (PathBuf, std::time::Duration) {
    static BIN: OnceLock<(PathBuf, std::time::Duration)> = OnceLock::new();
    BIN.get_or_init(|| {
        let start = std::time::Instant::now();
        let out = Command::new(Path::new(ROOT).join("scripts/release.sh"))
            .arg("--build-only")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run scripts/release.sh");
        assert!(
            out.status.success(),
            "scripts/release.sh --build-only failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8(out.stdout).unwrap();
        (PathBuf::from(path.trim()), start.elapsed())
    })
}

fn tool(program: &str, args: &[&str]) -> String {
    require(program);
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The release end to end, behind the one build: the binary is static (`file`, `ldd`), runs
/// `--version`, keygen, pack, verify and import --files in an empty chroot (root only), and
/// the .deb is reproducible, installs with `dpkg --root` into an empty dpkg database, puts
/// binary, man pages, completions and the trust.toml conffile where Debian keeps them, and
/// `man` shows `airlock-import`.
#[test]
fn release_is_static_runs_in_an_empty_chroot_and_installs_as_a_deb() {
    let (bin, took) = static_binary();
    eprintln!("static release build: {:.0?}", took);
    let file = tool("file", &[bin.to_str().unwrap()]);
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "{file}"
    );
    let ldd = Command::new("ldd").arg(bin).output().unwrap();
    let ldd =
        String::from_utf8_lossy(&ldd.stdout).into_owned() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd.contains("statically linked") || ldd.contains("not a dynamic executable"),
        "{ldd}"
    );
    let version = tool(bin.to_str().unwrap(), &["--version"]);
    assert_eq!(
        version.trim(),
        concat!("airlock ", env!("CARGO_PKG_VERSION"))
    );

    if is_root() {
        let out = Command::new(Path::new(ROOT).join("scripts/chroot-test.sh"))
            .arg(bin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/chroot-test.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("SKIPPED the empty-chroot part: chroot needs root (CI runs as root)");
    }

    // The package, twice: the same bytes.
    let env = Env::new();
    let deb = |dir: &str| -> PathBuf {
        let out = Command::new(Path::new(ROOT).join("scripts/release.sh"))
            .args(["--deb-only", "--out"])
            .arg(env.path(dir))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "release.sh --deb-only failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    };
    let first = deb("dist1");
    let second = deb("dist2");
    assert_eq!(
        first.file_name().unwrap().to_str().unwrap(),
        concat!("airlock_", env!("CARGO_PKG_VERSION"), "_amd64.deb")
    );
    assert!(
        fs::read(&first).unwrap() == fs::read(&second).unwrap(),
        "two packages of the same binary differ"
    );

    let info = tool("dpkg-deb", &["-I", first.to_str().unwrap()]);
    for field in [
        "Package: airlock",
        concat!("Version: ", env!("CARGO_PKG_VERSION")),
        "Architecture: amd64",
        "Maintainer: ",
        "Installed-Size: ",
        "Description: ",
        " conffiles",
    ] {
        assert!(info.contains(field), "dpkg-deb -I lacks {field:?}:\n{info}");
    }
    let list = tool("dpkg-deb", &["-c", first.to_str().unwrap()]);
    for line in list.lines() {
        assert!(line.contains("root/root"), "not root-owned: {line}");
    }

    // A real install into an empty root with its own dpkg database.
    let root = env.path("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let root_arg = format!("--root={}", root.display());
    tool(
        "dpkg",
        &[
            &root_arg,
            "--force-not-root",
            "--log=/dev/null",
            "-i",
            first.to_str().unwrap(),
        ],
    );
    let status = tool("dpkg", &[&root_arg, "-s", "airlock"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("/etc/airlock/trust.toml"), "{status}");
    let conffiles = fs::read_to_string(root.join("var/lib/dpkg/info/airlock.conffiles")).unwrap();
    assert_eq!(conffiles, "/etc/airlock/trust.toml\n");
    assert_eq!(
        fs::read(root.join("usr/bin/airlock")).unwrap(),
        fs::read(bin).unwrap()
    );
    for (installed, committed) in [
        (
            "usr/share/bash-completion/completions/airlock",
            "completions/airlock.bash",
        ),
        (
            "usr/share/zsh/vendor-completions/_airlock",
            "completions/_airlock",
        ),
        (
            "usr/share/fish/vendor_completions.d/airlock.fish",
            "completions/airlock.fish",
        ),
    ] {
        assert_eq!(
            fs::read(root.join(installed)).unwrap(),
            fs::read(Path::new(ROOT).join(committed)).unwrap(),
            "{installed}"
        );
    }
    for page in fs::read_dir(Path::new(ROOT).join("man")).unwrap() {
        let name = page.unwrap().file_name().into_string().unwrap();
        assert!(
            root.join("usr/share/man/man1")
                .join(format!("{name}.gz"))
                .is_file(),
            "{name} not installed"
        );
    }
    let manpath = format!("--manpath={}", root.join("usr/share/man").display());
    let page = Command::new("man")
        .args([&manpath, "airlock-import"])
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.status.success() && text.contains("airlock-import"),
        "man airlock-import:\n{text}{}",
        String::from_utf8_lossy(&page.stderr)
    );
    assert!(text.contains("--files"), "{text}");

    // The shipped trust.toml has no rule: nothing is trusted until the admin writes one.
    let run = env.run(&[
        "verify",
        "nowhere",
        "--policy",
        root.join("etc/airlock/trust.toml").to_str().unwrap(),
    ]);
    run.code(2)
        .stderr_has("trust.toml")
        .stderr_has("no [channels.NAME] rule");

    // dpkg -r keeps the conffile, as Debian does.
    tool(
        "dpkg",
        &[
            &root_arg,
            "--force-not-root",
            "--log=/dev/null",
            "-r",
            "airlock",
        ],
    );
    assert!(!root.join("usr/bin/airlock").exists());
    assert!(root.join("etc/airlock/trust.toml").exists());
}
