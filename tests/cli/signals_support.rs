//! The signal test harness: runs the real binary (any command: `pack`, `import`, ...), waits
//! until it reaches a point of its work, stops it with SIGINT, SIGTERM or a Ctrl-C typed on a
//! pseudo-terminal, and collects how it ended. Also slow HTTP sources that hold a command at a
//! point for as long as a test needs: a file server and a minimal OCI registry whose chosen
//! bodies trickle (or stall), with a counter of the bytes they have sent.
//!
//! Waiting is by polling a condition (a file appears, bytes sent pass a threshold), never by
//! sleeping a fixed time. Deadlines are generous guards against a hang, not timing assertions.
//!
//! Use:
//! ```ignore
//! let mut run = Running::start(env.command(&["pack", ...]), Stop::CtrlC);
//! run.wait_until("the download has begun", || server.slow_sent() > 256 << 10);
//! let done = run.stop_and_wait(Stop::CtrlC); // a support::Run; done.code == 130
//! ```

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use airlock::format::Digest;

use crate::support::Run;

/// How long a command may take to reach the point a test waits for (a guard against a hang).
pub const REACH_DEADLINE: Duration = Duration::from_secs(120);
/// How long a stopped command may take to exit. Generous (the machine is shared): it guards
/// against a command that ignores the signal, which the old code did for many seconds or for
/// ever; it is not a measure of speed.
pub const STOP_DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(10);

/// How to stop a running command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `kill -INT PID`.
    Int,
    /// `kill -TERM PID`.
    Term,
    /// Ctrl-C typed on the command's controlling terminal: `\x03` written to the master of the
    /// pseudo-terminal the command runs on (the terminal driver turns it into SIGINT for the
    /// foreground process group). Needs [`Running::start`] with `Stop::CtrlC`.
    CtrlC,
}

impl Stop {
    pub const ALL: [Stop; 3] = [Stop::CtrlC, Stop::Int, Stop::Term];

    /// The exit code a command stopped this way must end with: 128 + the signal.
    pub fn exit_code(self) -> i32 {
        match self {
            Stop::Int | Stop::CtrlC => 128 + libc::SIGINT,
            Stop::Term => 128 + libc::SIGTERM,
        }
    }

    pub fn signal_name(self) -> &'static str {
        match self {
            Stop::Int | Stop::CtrlC => "SIGINT",
            Stop::Term => "SIGTERM",
        }
    }
}

/// A command running in the background.
pub struct Running {
    child: Option<Child>,
    /// The master side of the pseudo-terminal, when the command runs on one.
    master: Option<File>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
    what: String,
}

fn reader(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        // A pseudo-terminal master reads EIO once the last slave is closed: that is the end.
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

impl Running {
    /// Starts `cmd` (built by the caller, e.g. `Env::command`, so its isolation applies). With
    /// `Stop::CtrlC` it runs in a session of its own with a new pseudo-terminal as controlling
    /// terminal and as stdin, stdout and stderr (the output then is the terminal's: stdout and
    /// stderr interleaved, `\r\n` line ends; both fields of the [`Run`] hold it). Otherwise its
    /// output goes to pipes and stdin is null.
    pub fn start(mut cmd: Command, how: Stop) -> Running {
        let what = format!("{cmd:?}");
        if how != Stop::CtrlC {
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the command");
            let out = reader(child.stdout.take().unwrap());
            let err = reader(child.stderr.take().unwrap());
            return Running {
                child: Some(child),
                master: None,
                stdout: Some(out),
                stderr: Some(err),
                what,
            };
        }
        let (child, master) = crate::support::pty::spawn_on_pty(cmd);
        let out = reader(master.try_clone().expect("dup the pty master"));
        Running {
            child: Some(child),
            master: Some(master),
            stdout: Some(out),
            stderr: None,
            what,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Whether the command has exited (it stays reapable by [`Running::wait`]).
    pub fn exited(&mut self) -> bool {
        let c = self.child.as_mut().expect("running");
        // SAFETY: waitid with WNOWAIT only peeks at the child's state; it stays a zombie.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                c.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        rc == 0 && unsafe { info.si_pid() } != 0
    }

    /// Polls `reached` until it holds. Panics, with the command's output, if the command exits
    /// first or [`REACH_DEADLINE`] passes.
    #[track_caller]
    pub fn wait_until(&mut self, point: &str, mut reached: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            if reached() {
                return;
            }
            if self.exited() {
                let run = self.wait(Duration::from_secs(5));
                panic!(
                    "the command ended before {point}: {}\nexit {}\nstdout:\n{}\nstderr:\n{}",
                    self.what, run.code, run.stdout, run.stderr
                );
            }
            if start.elapsed() > REACH_DEADLINE {
                let run = self.kill();
                panic!(
                    "the command did not reach {point} in {} s: {}\nstdout:\n{}\nstderr:\n{}",
                    REACH_DEADLINE.as_secs(),
                    self.what,
                    run.stdout,
                    run.stderr
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Sends the stop: a signal to the command's process, or `\x03` typed on its terminal.
    pub fn stop(&mut self, how: Stop) {
        match how {
            Stop::CtrlC => {
                let m = self
                    .master
                    .as_mut()
                    .expect("Ctrl-C needs a command started with Stop::CtrlC");
                m.write_all(b"\x03").expect("type Ctrl-C");
                m.flush().unwrap();
            }
            Stop::Int | Stop::Term => {
                let sig = if how == Stop::Int {
                    libc::SIGINT
                } else {
                    libc::SIGTERM
                };
                // SAFETY: kill(2) on our own child's pid (not reaped yet, so not reused).
                let rc = unsafe { libc::kill(self.pid(), sig) };
                assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
            }
        }
    }

    /// Waits up to `deadline` for the command to exit; one that is still running then is
    /// killed (SIGKILL) and comes back with code -1 and a note in its stderr.
    pub fn wait(&mut self, deadline: Duration) -> Run {
        let start = Instant::now();
        let mut child = self.child.take().expect("running");
        let code = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break exit_code(st);
            }
            if start.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
            thread::sleep(POLL);
        };
        self.master = None;
        let stdout = self
            .stdout
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        let mut stderr = match self.stderr.take() {
            Some(h) => h.join().unwrap(),
            None => stdout.clone(),
        };
        if code == -1 {
            stderr.push_str(&format!(
                "\n[killed: still running {} s after it was asked to stop]",
                deadline.as_secs()
            ));
        }
        Run {
            code,
            stdout,
            stderr,
        }
    }

    /// Stops the command and waits ([`STOP_DEADLINE`]) for it to exit.
    pub fn stop_and_wait(&mut self, how: Stop) -> Run {
        self.stop(how);
        self.wait(STOP_DEADLINE)
    }

    /// SIGKILL, as a crash or the OOM killer would; what it leaves is for the next run.
    pub fn kill(&mut self) -> Run {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
        self.wait(STOP_DEADLINE)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An exit status as a shell reports it: the code, or 128 + the signal that ended the process
/// (so a command killed by SIGINT's default action reads 130 too; tests that need to tell the
/// two apart check the output as well).
fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code()
        .or_else(|| st.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Starts `cmd`, waits until `reached`, stops it with `how`, and returns how it ended.
#[track_caller]
pub fn interrupt_at(cmd: Command, how: Stop, point: &str, reached: impl FnMut() -> bool) -> Run {
    let mut run = Running::start(cmd, how);
    run.wait_until(point, reached);
    run.stop_and_wait(how)
}

/// How a slow route sends its body.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// All at once.
    Fast,
    /// `piece` bytes, then a pause of `pause`, and so on.
    Trickle { piece: usize, pause: Duration },
    /// `first` bytes, then nothing: the connection stays open, silent, until the server is
    /// dropped (a stalled server; the client's reads block).
    Stall { first: usize },
}

/// The default trickle: about 1.3 MB/s, in pieces small enough that a reader sees data often.
pub const TRICKLE: Pace = Pace::Trickle {
    piece: 64 << 10,
    pause: Duration::from_millis(50),
};

struct Route {
    content_type: String,
    headers: Vec<(String, String)>,
    body: Arc<Vec<u8>>,
    /// The pace of the first `slow_times` requests of this route; later ones are fast (the
    /// re-run after an interruption finishes quickly).
    pace: Pace,
    slow_times: usize,
    hits: AtomicUsize,
}

/// A plain-HTTP server on 127.0.0.1 serving fixed routes (GET and HEAD), each at its own pace.
pub struct SlowServer {
    pub base: String,
    pub host: String,
    routes: Arc<Mutex<HashMap<String, Arc<Route>>>>,
    slow_sent: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl SlowServer {
    pub fn start() -> SlowServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Arc<Route>>>> = Arc::default();
        let slow_sent = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (r, s, d) = (routes.clone(), slow_sent.clone(), done.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if d.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (r, s, d) = (r.clone(), s.clone(), d.clone());
                thread::spawn(move || serve_conn(stream, &r, &s, &d));
            }
        });
        SlowServer {
            base: format!("http://{addr}"),
            host: addr.to_string(),
            routes,
            slow_sent,
            done,
        }
    }

    /// Serves `body` at `path`; the first `slow_times` requests at `pace`.
    pub fn route(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        pace: Pace,
        slow_times: usize,
    ) {
        self.route_with(path, content_type, vec![], body, pace, slow_times)
    }

    pub fn route_with(
        &self,
        path: &str,
        content_type: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        pace: Pace,
        slow_times: usize,
    ) {
        self.routes.lock().unwrap().insert(
            path.to_string(),
            Arc::new(Route {
                content_type: content_type.to_string(),
                headers,
                body: Arc::new(body),
                pace,
                slow_times,
                hits: AtomicUsize::new(0),
            }),
        );
    }

    /// Body bytes sent so far by requests served at a slow pace.
    pub fn slow_sent(&self) -> u64 {
        self.slow_sent.load(Ordering::SeqCst)
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees `done`.
        let _ = TcpStream::connect(self.host.as_str());
    }
}

fn serve_conn(
    s: TcpStream,
    routes: &Mutex<HashMap<String, Arc<Route>>>,
    slow_sent: &AtomicU64,
    done: &AtomicBool,
) {
    let mut r = BufReader::new(match s.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut w = s;
    loop {
        let mut line = String::new();
        // A TLS ClientHello (a client probing for HTTPS first) is not a request line: close.
        if r.read_line(&mut line).unwrap_or(0) == 0 || !line.ends_with("HTTP/1.1\r\n") {
            return;
        }
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) <= 2 {
                break;
            }
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("/").to_string();
        let route = routes.lock().unwrap().get(&path).cloned();
        let Some(route) = route else {
            let _ = w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            continue;
        };
        let mut head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            route.content_type,
            route.body.len()
        );
        for (k, v) in &route.headers {
            head += &format!("{k}: {v}\r\n");
        }
        head += "\r\n";
        if w.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method == "HEAD" {
            continue;
        }
        let hit = route.hits.fetch_add(1, Ordering::SeqCst);
        let pace = if hit < route.slow_times {
            route.pace
        } else {
            Pace::Fast
        };
        let body = &route.body[..];
        match pace {
            Pace::Fast => {
                if w.write_all(body).is_err() {
                    return;
                }
            }
            Pace::Trickle { piece, pause } => {
                for p in body.chunks(piece) {
                    if done.load(Ordering::Relaxed) || w.write_all(p).is_err() {
                        return;
                    }
                    slow_sent.fetch_add(p.len() as u64, Ordering::SeqCst);
                    thread::sleep(pause);
                }
            }
            Pace::Stall { first } => {
                let first = first.min(body.len());
                if w.write_all(&body[..first]).is_err() {
                    return;
                }
                slow_sent.fetch_add(first as u64, Ordering::SeqCst);
                // Hold the connection open, silent, until the server is dropped or the client
                // goes away.
                let _ = w.set_read_timeout(Some(Duration::from_millis(100)));
                let mut probe = [0u8; 1];
                while !done.load(Ordering::Relaxed) {
                    match r.get_mut().read(&mut probe) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return,
                    }
                }
                return;
            }
        }
    }
}

/// A one-layer OCI image served by a [`SlowServer`] as a registry would (`/v2/`, the manifest by
/// tag and digest, the config and layer blobs): `oci://HOST/REPO:TAG`. The layer (the large blob,
/// streamed into the chunks while pack writes them) is served at `pace` for its first
/// `slow_times` requests.
pub struct SlowImage {
    pub server: SlowServer,
    pub reference: String,
    pub layer: Vec<u8>,
}

impl SlowImage {
    pub fn start(
        repo: &str,
        tag: &str,
        layer: Vec<u8>,
        pace: Pace,
        slow_times: usize,
    ) -> SlowImage {
        let server = SlowServer::start();
        let layer_digest = Digest::of(&layer);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
        )
        .into_bytes();
        let config_digest = Digest::of(&config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        )
        .into_bytes();
        let manifest_digest = Digest::of(&manifest);
        let mt = "application/vnd.oci.image.manifest.v1+json";
        let dcd = |d: &Digest| vec![("Docker-Content-Digest".to_string(), d.to_string())];
        server.route("/v2/", "application/json", b"{}".to_vec(), Pace::Fast, 0);
        for r in [tag.to_string(), manifest_digest.to_string()] {
            server.route_with(
                &format!("/v2/{repo}/manifests/{r}"),
                mt,
                dcd(&manifest_digest),
                manifest.clone(),
                Pace::Fast,
                0,
            );
        }
        server.route_with(
            &format!("/v2/{repo}/blobs/{config_digest}"),
            "application/octet-stream",
            dcd(&config_digest),
            config,
            Pace::Fast,
            0,
        );
        server.route_with(
            &format!("/v2/{repo}/blobs/{layer_digest}"),
            "application/octet-stream",
            dcd(&layer_digest),
            layer.clone(),
            pace,
            slow_times,
        );
        let reference = format!("oci://{}/{repo}:{tag}", server.host);
        SlowImage {
            server,
            reference,
            layer,
        }
    }
}

/// The names directly under `dir` (empty if it does not exist), sorted.
pub fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Total size of the regular files under `dir` (0 if it does not exist).
pub fn bytes_under(dir: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Whether the process `pid` has taken in a SIGINT or SIGTERM it handles: its
/// `interrupt-watchdog` thread, blocked reading its self-pipe until a stop signal wakes it, is
/// no longer in `read(2)` (`/proc/PID/task/TID/syscall`). The signal handlers set the stop flag
/// before they wake the watchdog, so from then on the command's next check sees the stop.
pub fn stop_seen(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("interrupt-watch") {
            continue;
        }
        let syscall = std::fs::read_to_string(t.path().join("syscall")).unwrap_or_default();
        let nr = syscall.split_whitespace().next().unwrap_or("");
        return !nr.is_empty() && nr != libc::SYS_read.to_string();
    }
    false
}

/// A TCP forwarder to `upstream` that holds the first request whose request line satisfies
/// `hold` (e.g. a registry's `PUT …/manifests/TAG`): its bytes are not forwarded until
/// [`HoldingProxy::release`]. Every other request, before and after, passes straight through;
/// [`HoldingProxy::matched`] counts the requests the rule matched (the held one included).
pub struct HoldingProxy {
    pub addr: String,
    held: Arc<AtomicBool>,
    released: Arc<AtomicBool>,
    matched: Arc<AtomicUsize>,
}

impl HoldingProxy {
    pub fn start(upstream: &str, hold: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let held = Arc::new(AtomicBool::new(false));
        let released = Arc::new(AtomicBool::new(false));
        let matched = Arc::new(AtomicUsize::new(0));
        let (h, r, m) = (held.clone(), released.clone(), matched.clone());
        let hold: Arc<dyn Fn(&str) -> bool + Send + Sync> = Arc::new(hold);
        let upstream = upstream.to_string();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (h, r, m, hold) = (h.clone(), r.clone(), m.clone(), hold.clone());
                thread::spawn(move || forward(client, server, Some((&*hold, &h, &r, &m))));
                thread::spawn(move || forward(s2, c2, None));
            }
        });
        HoldingProxy {
            addr,
            held,
            released,
            matched,
        }
    }

    /// How many requests the rule has matched so far.
    pub fn matched(&self) -> usize {
        self.matched.load(Ordering::SeqCst)
    }

    /// Whether the request to hold has come (and is being held, unless released).
    pub fn holding(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets the held request (and any later one) through.
    pub fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.release();
    }
}

type HoldRule<'a> = (
    &'a (dyn Fn(&str) -> bool + Send + Sync),
    &'a AtomicBool,
    &'a AtomicBool,
    &'a AtomicUsize,
);

fn forward(mut from: TcpStream, mut to: TcpStream, rule: Option<HoldRule>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        if let Some((hold, held, released, matched)) = rule {
            // A request line starts the data a client writes for a request (its head is
            // written at once): look at each line of what came.
            let text = String::from_utf8_lossy(&buf[..n]);
            let matches = text.split("\r\n").filter(|l| hold(l)).count();
            matched.fetch_add(matches, Ordering::SeqCst);
            if matches > 0 && !released.load(Ordering::SeqCst) && !held.swap(true, Ordering::SeqCst)
            {
                while !released.load(Ordering::SeqCst) {
                    thread::sleep(POLL);
                }
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
