//! The test harness: a temp workspace, the real `airlock` binary run inside it, and helpers to
//! make keys, sources and bundles.
//!
//! Every run of the binary goes through [`Env::command`] (or [`Env::wrapped`], for a binary run
//! under `prlimit`, `timeout` or `sh -c`), which always gives it the workspace's own state
//! directory and audit log (`AIRLOCK_STATE`), never the machine's. [`tree`] snapshots a
//! directory (listing and content digests), [`blob`] writes files of N bytes, [`registry`] and
//! [`hub`] are the registry and Hugging Face Hub harnesses.

pub mod blob;
pub mod hub;
pub mod pty;
pub mod registry;
pub mod tree;
pub use blob::layer_tar;
pub use tree::contents;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_airlock");
/// The workspace's state directory (relative to [`Env::path`]).
pub const STATE_DIR: &str = ".airlock-state";
/// The workspace's pack state (the sequences its packs used), beside [`STATE_DIR`].
pub const PACK_STATE_DIR: &str = ".airlock-pack-state";

pub struct Env {
    pub dir: tempfile::TempDir,
}

/// The outcome of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    pub fn code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    pub fn stderr_has(&self, s: &str) -> &Run {
        assert!(
            self.stderr.contains(s),
            "stderr lacks {s:?}:\n{}",
            self.stderr
        );
        self
    }
    #[track_caller]
    pub fn stdout_has(&self, s: &str) -> &Run {
        assert!(
            self.stdout.contains(s),
            "stdout lacks {s:?}:\n{}",
            self.stdout
        );
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        p
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// The one command builder: the binary with `args`, in the workspace, isolated.
    pub fn command(&self, args: &[&str]) -> Command {
        self.wrapped(&[], args)
    }

    /// The binary run through `wrapper` (e.g. `["prlimit", "--as=…", "--", "timeout", "60"]`,
    /// or `["sh", "-c", "… exec \"$0\" \"$@\""]`: the binary's path follows the wrapper's
    /// words), with `args`, isolated as [`Env::command`] is.
    pub fn wrapped(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let mut c = match wrapper.split_first() {
            None => Command::new(BIN),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
        };
        c.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        self.isolate(&mut c);
        c
    }

    /// The workspace's own enclave for `c`: its acceptance state and audit log
    /// (`AIRLOCK_STATE` = [`Env::state_dir`]), no audit log or passphrase from the caller's
    /// environment. Never the machine's default state directory (`/var/lib/airlock` as root),
    /// whose freshness records would make runs depend on what ran before.
    pub fn isolate(&self, c: &mut Command) {
        c.env("AIRLOCK_STATE", self.state_dir())
            .env("AIRLOCK_PACK_STATE", self.pack_state_dir())
            .env_remove("AIRLOCK_AUDIT_LOG")
            .env_remove("AIRLOCK_PASSPHRASE")
            .env_remove("XDG_STATE_HOME");
    }

    /// The state directory every run in this workspace uses.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join(STATE_DIR)
    }

    /// Where every pack in this workspace records the sequences it used (`AIRLOCK_PACK_STATE`).
    pub fn pack_state_dir(&self) -> PathBuf {
        self.dir.path().join(PACK_STATE_DIR)
    }

    /// The audit log every run in this workspace appends to.
    pub fn audit_log(&self) -> PathBuf {
        self.state_dir().join("audit.jsonl")
    }

    /// As [`Env::run`], but killed after `secs` (a hang fails the test instead of stalling it;
    /// a guard, not a timing assertion).
    pub fn run_for(&self, secs: u64, args: &[&str]) -> Run {
        run_cmd_for(self.command(args), secs)
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run_cmd(self.command(args))
    }

    /// An unencrypted key pair `NAME` / `NAME.pub`.
    pub fn keygen(&self, name: &str) -> (PathBuf, PathBuf) {
        self.run(&["keygen", "--out", name, "--unencrypted"]).ok();
        (self.path(name), self.path(&format!("{name}.pub")))
    }

    /// A source tree exercising the awkward cases: nesting, empty file and directory, a file
    /// larger than small chunks, duplicate content, unicode names, a compressible file.
    pub fn sample_tree(&self, root: &str) -> PathBuf {
        self.write(&format!("{root}/config.json"), br#"{"model_type": "tiny"}"#);
        self.write(&format!("{root}/empty.txt"), b"");
        self.write(
            &format!("{root}/sub/deep/weights.bin"),
            pseudo_random(300_000, 1),
        );
        self.write(
            &format!("{root}/sub/copy-of-config.json"),
            br#"{"model_type": "tiny"}"#,
        );
        self.write(
            &format!("{root}/tokenizer.json"),
            "{\"vocab\": [1, 2, 3]}\n".repeat(10_000),
        );
        self.write(&format!("{root}/ünïcödé ñame.txt"), "unicode\n");
        fs::create_dir_all(self.path(&format!("{root}/empty-dir"))).unwrap();
        self.path(root)
    }

    /// Packs `sources` with key `key` into `out`, with extra args.
    pub fn pack(&self, sources: &[&str], key: &str, out: &str, extra: &[&str]) -> Run {
        let mut args = vec!["pack"];
        args.extend_from_slice(sources);
        args.extend_from_slice(&["--out", out, "--key", key]);
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// A small signed bundle `b` of the sample tree, key `k`, chunk size 64 KiB (several chunks).
    pub fn sample_bundle(&self) -> (PathBuf, PathBuf) {
        self.keygen("k");
        self.sample_tree("src");
        self.pack(&["src"], "k", "b", &["--chunk-size", "64KiB"])
            .ok();
        (self.path("b"), self.path("k.pub"))
    }
}

pub fn run_cmd(mut c: Command) -> Run {
    let out = c.output().expect("run airlock");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `c`, killing it after `secs`: a run that hangs comes back with code -1 and says so.
pub fn run_cmd_for(mut c: Command, secs: u64) -> Run {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run airlock");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = e.join().unwrap();
    if code == -1 {
        stderr.push_str(&format!("\n[killed: still running after {secs} s]"));
    }
    Run {
        code,
        stdout: o.join().unwrap(),
        stderr,
    }
}

/// Deterministic incompressible bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// True if `tool` is on PATH (the test script installs it; a missing tool fails loudly in CI).
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run scripts/test.sh, which installs the test dependencies"
    );
}

/// Runs skopeo, which must succeed; its stdout.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    require("skopeo");
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An error's message with, for a rejected bundle, every problem (as the printer shows them).
pub fn error_text(e: &airlock::Error) -> String {
    match e {
        airlock::Error::Rejected { problems, .. } => {
            let all: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            format!("{e}: {}", all.join("; "))
        }
        _ => e.to_string(),
    }
}
