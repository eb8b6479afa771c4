//! A flaky HTTP server on 127.0.0.1 (std::net threads, one per connection): it serves fixed
//! files (200 with a strong `ETag`, `Range: bytes=N-` → 206 with `Content-Range`) or forwards
//! every request to an upstream (a docker-registry), and injects [`Fault`]s into the requests
//! a rule matches: the connection dropped after N bytes of the body, or a 503 with
//! `Retry-After`. Every request is recorded with its `Range` and `If-Range` and the fault it
//! got. The Hub emulator ([`super::hub`]) takes the same faults.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a matching request gets instead of a normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The answer's head, then this many bytes of its body, then the connection closes (the
    /// `Content-Length` stays the full one).
    Cut(u64),
    /// `503 Service Unavailable` with `Retry-After: N` (seconds).
    Unavailable(u64),
    /// Files: the whole file with `200`, the request's `Range` ignored (same `ETag`).
    Whole,
    /// Files: the whole file with `200` and another `ETag`, as if it had changed.
    Changed,
}

impl Fault {
    /// The 503 this fault answers with, if it is one.
    pub fn unavailable_head(&self) -> Option<String> {
        match self {
            Fault::Unavailable(s) => Some(format!(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {s}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )),
            _ => None,
        }
    }
}

/// Faults for requests whose target contains a string, each for a number of requests; the
/// first rule with tries left that matches applies.
#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<(String, Fault, usize)>>,
}

impl Faults {
    pub fn add(&self, target_contains: &str, fault: Fault, times: usize) {
        self.rules
            .lock()
            .unwrap()
            .push((target_contains.to_string(), fault, times));
    }

    /// The fault for a request to `target`, used up.
    pub fn take(&self, target: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules
            .iter_mut()
            .find(|(t, _, left)| *left > 0 && target.contains(t.as_str()))?;
        rule.2 -= 1;
        Some(rule.1)
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub fault: Option<Fault>,
}

enum Upstream {
    Files(HashMap<String, Arc<Vec<u8>>>),
    Proxy(String),
}

struct State {
    upstream: Upstream,
    faults: Faults,
    log: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

/// A running flaky server (stops when dropped).
pub struct Flaky {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Flaky {
    /// Serves `files` (path → bytes), e.g. `("/model.bin", data)`.
    pub fn files(files: &[(&str, Vec<u8>)]) -> Flaky {
        let map = files
            .iter()
            .map(|(p, d)| (p.to_string(), Arc::new(d.clone())))
            .collect();
        Flaky::start(Upstream::Files(map))
    }

    /// Forwards every request to `upstream` (`host:port`, plain HTTP).
    pub fn proxy(upstream: &str) -> Flaky {
        Flaky::start(Upstream::Proxy(upstream.to_string()))
    }

    fn start(upstream: Upstream) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream,
            faults: Faults::default(),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve(&st, conn);
                });
            }
        });
        Flaky { addr, state }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `times` requests whose target contains `target_contains` get `fault`.
    pub fn fault(&self, target_contains: &str, fault: Fault, times: usize) {
        self.state.faults.add(target_contains, fault, times);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// The request line and header lines (as sent, without CRLF) of one request.
fn read_head(r: &mut BufReader<TcpStream>) -> std::io::Result<(String, Vec<String>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        headers.push(h.trim_end().to_string());
    }
    Ok((line.trim_end().to_string(), headers))
}

fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn serve(st: &State, mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut first = [0u8; 1];
    if conn.peek(&mut first)? == 0 || first[0] == 0x16 {
        return Ok(()); // a TLS ClientHello: airlock probes HTTPS first on loopback
    }
    let mut reader = BufReader::new(conn.try_clone()?);
    let (line, headers) = read_head(&mut reader)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("/").to_string(),
    );
    let fault = st.faults.take(&target);
    st.log.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        range: header(&headers, "range").map(str::to_string),
        if_range: header(&headers, "if-range").map(str::to_string),
        fault,
    });
    if let Some(head) = fault.and_then(|f| f.unavailable_head()) {
        conn.write_all(head.as_bytes())?;
        return conn.flush();
    }
    let cut = match fault {
        Some(Fault::Cut(n)) => Some(n),
        _ => None,
    };
    let (head, mut body): (String, Box<dyn Read>) = match &st.upstream {
        Upstream::Files(files) => file_answer(files, &method, &target, &headers, fault),
        Upstream::Proxy(up) => {
            let mut u = TcpStream::connect(up)?;
            let mut req = format!("{line}\r\n");
            for h in headers.iter().filter(|h| {
                let k = h.split_once(':').map_or("", |(k, _)| k.trim());
                !k.eq_ignore_ascii_case("connection")
            }) {
                req += &format!("{h}\r\n");
            }
            req += "Connection: close\r\n\r\n";
            u.write_all(req.as_bytes())?;
            let mut ur = BufReader::new(u);
            let (status, hs) = read_head(&mut ur)?;
            let mut head = format!("{status}\r\n");
            for h in hs {
                head += &format!("{h}\r\n");
            }
            head += "\r\n";
            (head, Box::new(ur))
        }
    };
    conn.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return conn.flush();
    }
    match cut {
        Some(n) => {
            std::io::copy(&mut (&mut body).take(n), &mut conn)?;
            conn.flush()?;
            let _ = conn.shutdown(Shutdown::Both);
        }
        None => {
            std::io::copy(&mut body, &mut conn)?;
            conn.flush()?;
        }
    }
    Ok(())
}

/// 200 with the file (strong ETag: its SHA-256), or 206 for `Range: bytes=N-`; 404 else.
fn file_answer(
    files: &HashMap<String, Arc<Vec<u8>>>,
    method: &str,
    target: &str,
    headers: &[String],
    fault: Option<Fault>,
) -> (String, Box<dyn Read>) {
    let path = target.split('?').next().unwrap_or(target);
    let Some(data) = files
        .get(path)
        .filter(|_| method == "GET" || method == "HEAD")
    else {
        let head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        return (head.into(), Box::new(std::io::empty()));
    };
    let etag = match fault {
        Some(Fault::Changed) => "\"changed\"".to_string(),
        _ => format!("\"{}\"", airlock::format::Digest::of(data).hex()),
    };
    let ranges = !matches!(fault, Some(Fault::Whole | Fault::Changed));
    let len = data.len() as u64;
    let start = header(headers, "range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<u64>().ok())
        .filter(|s| *s < len && ranges)
        .filter(|_| header(headers, "if-range").is_none_or(|v| v == etag));
    let body = Arc::clone(data);
    match start {
        Some(s) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                len - 1,
                len - s
            ),
            Box::new(std::io::Cursor::new(body[s as usize..].to_vec())),
        ),
        None => (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"
            ),
            Box::new(std::io::Cursor::new(body.to_vec())),
        ),
    }
}
