//! A counting HTTP front for a test server (the docker-registry): every request is forwarded
//! to the upstream as it came (with `Connection: close`) and its first line logged, so a test
//! can count what a run asked for (e.g. blob GETs).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use super::registry::read_request_raw;

/// A running front (its threads end with the test process).
pub struct CountingProxy {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl CountingProxy {
    /// Forwards to `upstream` (`HOST:PORT`, plain HTTP).
    pub fn start(upstream: &str) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (seen, upstream) = (log.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                let (seen, upstream) = (seen.clone(), upstream.clone());
                std::thread::spawn(move || forward(s, &upstream, &seen));
            }
        });
        CountingProxy { addr, log }
    }

    /// Request lines (`METHOD TARGET`) seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// `GET`s of blobs (`/v2/…/blobs/sha256:…`): the payload requests.
    pub fn blob_gets(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|l| l.starts_with("GET ") && l.contains("/blobs/"))
            .collect()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

fn forward(mut s: TcpStream, upstream: &str, log: &Mutex<Vec<String>>) {
    let (line, headers) = read_request_raw(&s);
    let mut it = line.split_whitespace();
    let (Some(method), Some(target)) = (it.next(), it.next()) else {
        return;
    };
    log.lock().unwrap().push(format!("{method} {target}"));
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n");
    for h in headers.iter().filter(|h| {
        let l = h.to_ascii_lowercase();
        !l.starts_with("host:") && !l.starts_with("connection:")
    }) {
        req += &format!("{h}\r\n");
    }
    req += "\r\n";
    if up.write_all(req.as_bytes()).is_ok() {
        let _ = std::io::copy(&mut up, &mut s);
    }
}
