//! Driving the real binary on a pseudo-terminal, as an operator at a terminal would: its
//! stdin, stdout and stderr are the slave of a new pty (and its controlling terminal, in a
//! session of its own); the test reads what it printed so far, waits for a text to appear,
//! types on it, and collects how it ended. Waiting polls the output, never sleeps a fixed
//! time; the deadlines are guards against a hang.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(120);

pub struct Pty {
    child: Child,
    master: File,
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Pty {
    /// Starts `cmd` on a new pseudo-terminal.
    pub fn start(cmd: Command) -> Pty {
        let (child, master) = spawn_on_pty(cmd);
        let out = Arc::new(Mutex::new(Vec::new()));
        let (mut r, o) = (master.try_clone().unwrap(), Arc::clone(&out));
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // The master reads EIO once the last slave is closed: the end.
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            child,
            master,
            out,
            reader: Some(reader),
        }
    }

    /// What the command printed so far (stdout and stderr interleaved, `\r\n` line ends).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until `text` appeared at least `times` times in the output; returns the output.
    /// Panics with the output if the command exits first or the deadline passes.
    #[track_caller]
    pub fn wait_for(&mut self, text: &str, times: usize) -> String {
        let start = Instant::now();
        loop {
            let out = self.output();
            if out.matches(text).count() >= times {
                return out;
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "the command ended ({st}) before printing {text:?} {times} times:\n{}",
                    self.output()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {text:?} after {} s:\n{out}",
                DEADLINE.as_secs()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Types `bytes` on the terminal.
    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("type on the pty");
        self.master.flush().unwrap();
    }

    /// Waits for the command to exit: its exit code (128 + signal for a signal death) and
    /// its whole output.
    pub fn wait(mut self) -> (i32, String) {
        let start = Instant::now();
        let st = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "still running:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(10));
        };
        use std::os::unix::process::ExitStatusExt;
        let code = st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (code, self.output())
    }

    /// SIGKILL, as a crash would.
    pub fn kill(mut self) -> (i32, String) {
        let _ = self.child.kill();
        self.wait()
    }
}

/// Starts `cmd` in a session of its own whose controlling terminal, stdin, stdout and stderr is
/// a new pseudo-terminal (Linux defaults: ISIG on, VINTR = ^C); returns the child and the
/// terminal's master side. The one pty set-up of the test suite.
pub fn spawn_on_pty(mut cmd: Command) -> (Child, File) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into the out-parameters; the name, termios and
    // window-size arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just returned by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the pty slave"));
    cmd.stdin(stdio(&slave))
        .stdout(stdio(&slave))
        .stderr(stdio(&slave));
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // stdin is the slave by now: make it the controlling terminal of the new session.
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start the command on a pseudo-terminal");
    drop(cmd); // closes the parent's copies of the slave
    drop(slave);
    (child, File::from(master))
}
