//! The bounded pipe a chunked upload streams through: a reading thread feeds the blob's bytes
//! from the source in a few 1 MiB buffers, and each `PATCH` body takes the next chunk's worth,
//! so memory stays bounded whatever the chunk and blob sizes.

use std::io::Read;
use std::sync::Arc;

use crate::format::Digest;
use crate::oci::image::BlobSource;

/// Bytes per buffer of the pipe feeding a chunked upload, and buffers in flight.
const PIPE_BUF: usize = 1 << 20;
const PIPE_DEPTH: usize = 4;

pub(super) type Piece = std::io::Result<Vec<u8>>;

/// The sending end of the bounded pipe feeding a chunked upload.
pub(super) struct Pipe(std::sync::mpsc::SyncSender<Piece>);

impl Pipe {
    pub(super) fn new() -> (Pipe, std::sync::mpsc::Receiver<Piece>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(PIPE_DEPTH);
        (Pipe(tx), rx)
    }
}

/// Reads blob `d` (`size` bytes) from the source into the pipe, then checks that the source ends
/// there (its reader verifies the digest at its end). Returns what went wrong, if anything; the
/// upload stops when the pipe's reader goes away.
pub(super) fn feed(src: &dyn BlobSource, d: &Digest, size: u64, pipe: Pipe) -> std::io::Result<()> {
    let mut r = src
        .open(d)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut left = size;
    let fail = |pipe: &Pipe, e: std::io::Error| {
        let _ = pipe
            .0
            .send(Err(std::io::Error::new(e.kind(), e.to_string())));
        Err(e)
    };
    while left > 0 {
        if let Some(signal) = crate::interrupt::requested() {
            let why = format!("interrupted by {}", crate::interrupt::signal_name(signal));
            return fail(&pipe, std::io::Error::other(why));
        }
        let mut buf = vec![0u8; PIPE_BUF.min(left as usize)];
        match read_full(&mut r, &mut buf) {
            Ok(n) if n == buf.len() => {}
            Ok(n) => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the source has {} bytes, the descriptor says {size}",
                        size - left + n as u64
                    ),
                );
                return fail(&pipe, e);
            }
            Err(e) => return fail(&pipe, e),
        }
        left -= buf.len() as u64;
        if pipe.0.send(Ok(buf)).is_err() {
            return Ok(()); // the upload stopped; it reports why
        }
    }
    let mut one = [0u8; 1];
    match read_full(&mut r, &mut one) {
        Ok(0) => Ok(()),
        Ok(_) => fail(
            &pipe,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the source has more than the {size} bytes the descriptor says"),
            ),
        ),
        Err(e) => fail(&pipe, e),
    }
}

/// The receiving end of the pipe, shared by the chunks of one upload: the part of the last
/// piece a chunk did not take stays for the next one.
pub(super) struct PipeState {
    pub(super) rx: std::sync::mpsc::Receiver<Piece>,
    pub(super) piece: Vec<u8>,
    pub(super) pos: usize,
}

/// One chunk's body: the next `left` bytes of the pipe.
pub(super) struct PipeReader {
    pub(super) state: Arc<std::sync::Mutex<PipeState>>,
    pub(super) left: u64,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let mut st = self.state.lock().expect("not poisoned");
        if st.pos == st.piece.len() {
            match st.rx.recv() {
                Ok(Ok(piece)) => {
                    st.piece = piece;
                    st.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the source ended early",
                    ))
                }
            }
        }
        let n = buf
            .len()
            .min(st.piece.len() - st.pos)
            .min(self.left.min(usize::MAX as u64) as usize);
        let pos = st.pos;
        buf[..n].copy_from_slice(&st.piece[pos..pos + n]);
        st.pos += n;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Fills `buf` as far as the reader allows; fewer bytes only at the end.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
