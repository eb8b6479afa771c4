//! The structural rules for a `zstd` segment (FORMAT.md §Compression), checked without
//! decoding: exactly one zstd data frame that fills the segment to its last byte, a window of at
//! most [`MAX_WINDOW`], no dictionary, blocks no larger than the frame allows, and a content
//! size (when the frame states one) equal to the segment's `size`.
//!
//! [`FrameCheck`] is fed the segment's bytes in order, in pieces of any size, and reads only the
//! frame and block headers, so `verify` applies it while it hashes the chunks (no extra read,
//! no decoding), `import` applies it to the bytes its decoder reads (the same rule and message),
//! and `pack` to every frame it writes. A verified bundle therefore never fails import on a
//! frame rule, and pack never writes a frame either would refuse.

/// Largest window a reader grants a frame (8 MiB = 2^23): the decoder's `window_log_max`.
/// Writers compress at most 8 MiB per frame, so their windows never exceed it.
pub const MAX_WINDOW: u64 = 1 << 23;
/// `log2(MAX_WINDOW)`, for the decoder.
pub const WINDOW_LOG_MAX: u32 = 23;
/// Largest block of a frame (zstd's `ZSTD_BLOCKSIZE_MAX`).
const MAX_BLOCK: u64 = 128 << 10;
const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the 4-byte magic number and the frame header descriptor.
    Magic,
    /// Collecting the rest of the frame header (`need` bytes in all).
    Header { need: usize },
    /// Collecting a 3-byte block header.
    BlockHeader,
    /// Skipping `left` bytes of block content; `last` if it is the last block.
    Content { left: u64, last: bool },
    /// Skipping the 4-byte checksum.
    Checksum { left: u64 },
    /// The frame ended exactly at the segment's end.
    Done,
}

/// A push checker of one segment's bytes against the frame rules. Errors are plain sentences
/// (the caller names the blob, segment and chunk); after an error, feed no more.
#[derive(Debug, Clone)]
pub struct FrameCheck {
    /// The segment's `length` and declared decoded `size`.
    length: u64,
    size: u64,
    /// Bytes fed so far.
    pos: u64,
    state: State,
    head: Vec<u8>,
    checksum: bool,
    block_max: u64,
}

impl FrameCheck {
    pub fn new(length: u64, size: u64) -> FrameCheck {
        FrameCheck {
            length,
            size,
            pos: 0,
            state: State::Magic,
            head: Vec::with_capacity(18),
            checksum: false,
            block_max: 0,
        }
    }

    /// Checks the whole segment `data` at once (for frames in memory).
    pub fn check(data: &[u8], size: u64) -> Result<(), String> {
        let mut c = FrameCheck::new(data.len() as u64, size);
        c.feed(data)?;
        c.finish()
    }

    /// Feeds the next bytes of the segment (never more than its `length` in all).
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            match self.state {
                State::Magic | State::Header { .. } | State::BlockHeader => {
                    let need = match self.state {
                        State::Magic => 5,
                        State::Header { need } => need,
                        _ => 3,
                    };
                    let take = (need - self.head.len()).min(data.len());
                    self.head.extend_from_slice(&data[..take]);
                    self.advance(take as u64, &mut data);
                    if self.head.len() == need {
                        self.header_complete()?;
                    }
                }
                State::Content { left, last } => {
                    let take = left.min(data.len() as u64);
                    self.advance(take, &mut data);
                    self.after_content(left - take, last);
                }
                State::Checksum { left } => {
                    let take = left.min(data.len() as u64);
                    self.advance(take, &mut data);
                    self.state = match left - take {
                        0 => State::Done,
                        left => State::Checksum { left },
                    };
                }
                State::Done => {
                    // Unreachable: the last block header already proved the frame ends at
                    // `length`, and callers feed no more than `length` bytes.
                    return Err(self.trailing(self.pos));
                }
            }
        }
        Ok(())
    }

    /// How many of the next bytes the check does not look at (block content): a reader that
    /// reads by offset may pass over them with [`FrameCheck::skip`] instead of feeding them, and
    /// so check a frame by reading only its headers.
    pub fn skippable(&self) -> u64 {
        match self.state {
            State::Content { left, .. } => left,
            _ => 0,
        }
    }

    /// Passes over `n` bytes (at most [`FrameCheck::skippable`]) without looking at them.
    pub fn skip(&mut self, n: u64) {
        if let State::Content { left, last } = self.state {
            let n = n.min(left);
            self.pos += n;
            self.after_content(left - n, last);
        }
    }

    fn after_content(&mut self, left: u64, last: bool) {
        self.state = match (left, last) {
            (0, false) => State::BlockHeader,
            (0, true) if self.checksum => State::Checksum { left: 4 },
            (0, true) => State::Done,
            _ => State::Content { left, last },
        };
    }

    /// The segment's bytes are all fed: the frame must be complete.
    pub fn finish(&self) -> Result<(), String> {
        match self.state {
            State::Done => Ok(()),
            _ => Err(self.short()),
        }
    }

    fn advance(&mut self, n: u64, data: &mut &[u8]) {
        self.pos += n;
        *data = &data[n as usize..];
    }

    fn short(&self) -> String {
        format!(
            "the segment ends inside its zstd frame after {} bytes (truncated, or not one whole frame)",
            self.length
        )
    }

    fn trailing(&self, frame_end: u64) -> String {
        format!(
            "the segment holds {} bytes after its zstd frame (exactly one frame per segment)",
            self.length - frame_end
        )
    }

    fn header_complete(&mut self) -> Result<(), String> {
        let h = std::mem::take(&mut self.head);
        match self.state {
            State::Magic => {
                let magic = [h[0], h[1], h[2], h[3]];
                if magic != MAGIC {
                    let n = u32::from_le_bytes(magic);
                    return Err(if n & 0xffff_fff0 == 0x184d_2a50 {
                        "it starts with a skippable frame, not a zstd data frame (exactly one data frame per segment)".to_string()
                    } else {
                        format!(
                            "not a zstd frame (magic number {:02x} {:02x} {:02x} {:02x})",
                            h[0], h[1], h[2], h[3]
                        )
                    });
                }
                let fhd = h[4];
                if fhd & 0x08 != 0 {
                    return Err("the zstd frame header sets a reserved bit".into());
                }
                let single = fhd & 0x20 != 0;
                let fcs = match fhd >> 6 {
                    0 => usize::from(single),
                    1 => 2,
                    2 => 4,
                    _ => 8,
                };
                let dict = [0, 1, 2, 4][usize::from(fhd & 3)];
                let need = 1 + usize::from(!single) + dict + fcs;
                self.head.push(fhd);
                // At least one more byte: a window descriptor, or a single segment's content size.
                self.state = State::Header { need };
                Ok(())
            }
            State::Header { .. } => {
                let fhd = h[0];
                let single = fhd & 0x20 != 0;
                self.checksum = fhd & 0x04 != 0;
                let mut at = 1;
                let mut window = 0u64;
                if !single {
                    let wd = h[at];
                    at += 1;
                    let base = 1u64 << (10 + u32::from(wd >> 3));
                    window = base + (base / 8) * u64::from(wd & 7);
                }
                let dict_len = [0, 1, 2, 4][usize::from(fhd & 3)];
                let dict = h[at..at + dict_len]
                    .iter()
                    .rev()
                    .fold(0u64, |v, &b| v << 8 | u64::from(b));
                at += dict_len;
                if dict != 0 {
                    return Err(format!(
                        "the zstd frame needs dictionary {dict}; segments use none"
                    ));
                }
                let fcs_bytes = &h[at..];
                let content = match fcs_bytes.len() {
                    0 => None,
                    n => {
                        let v = fcs_bytes
                            .iter()
                            .rev()
                            .fold(0u64, |v, &b| v << 8 | u64::from(b));
                        Some(if n == 2 { v + 256 } else { v })
                    }
                };
                if single {
                    window = content.unwrap_or(0);
                }
                if window > MAX_WINDOW {
                    return Err(format!(
                        "the zstd frame asks for a window of {window} bytes, more than the {MAX_WINDOW} readers allow"
                    ));
                }
                if let Some(c) = content.filter(|&c| c != self.size) {
                    return Err(format!(
                        "the zstd frame's content size {c} bytes is not the segment's size {}",
                        self.size
                    ));
                }
                self.block_max = window.min(MAX_BLOCK);
                self.state = State::BlockHeader;
                Ok(())
            }
            State::BlockHeader => {
                let v = u32::from(h[0]) | u32::from(h[1]) << 8 | u32::from(h[2]) << 16;
                let last = v & 1 != 0;
                let size = u64::from(v >> 3);
                let content = match (v >> 1) & 3 {
                    0 | 2 => size,
                    1 => 1,
                    _ => return Err("the zstd frame has a block of the reserved type".into()),
                };
                if size > self.block_max {
                    return Err(format!(
                        "the zstd frame has a block of {size} bytes, more than the {} its window allows",
                        self.block_max
                    ));
                }
                let end = self.pos + content + if last && self.checksum { 4 } else { 0 };
                if end > self.length {
                    return Err(self.short());
                }
                if last && end < self.length {
                    return Err(self.trailing(end));
                }
                self.state = match (content, last) {
                    (0, false) => State::BlockHeader,
                    (0, true) if self.checksum => State::Checksum { left: 4 },
                    (0, true) => State::Done,
                    _ => State::Content {
                        left: content,
                        last,
                    },
                };
                Ok(())
            }
            _ => unreachable!("only headers are collected"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(data: &[u8]) -> Vec<u8> {
        zstd::bulk::compress(data, 3).unwrap()
    }

    #[test]
    fn frames_zstd_writes_pass_in_any_pieces() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        for d in [
            &data[..],
            &data[..1],
            &data[..300],
            &b"x".repeat(1 << 20)[..],
        ] {
            let f = frames(d);
            FrameCheck::check(&f, d.len() as u64).unwrap();
            for piece in [1, 3, 7, 4096] {
                let mut c = FrameCheck::new(f.len() as u64, d.len() as u64);
                for p in f.chunks(piece) {
                    c.feed(p).unwrap();
                }
                c.finish().unwrap();
            }
        }
        // With a checksum, and from the streaming encoder (no content size, a window).
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_checksum(true).unwrap();
        enc.include_contentsize(false).unwrap();
        enc.window_log(20).unwrap();
        std::io::Write::write_all(&mut enc, &data).unwrap();
        let f = enc.finish().unwrap();
        FrameCheck::check(&f, data.len() as u64).unwrap();
    }

    #[test]
    fn refuses_what_the_decoder_would() {
        let data = b"hello hello hello hello".repeat(100);
        let f = frames(&data);
        let size = data.len() as u64;
        let err = |b: &[u8]| FrameCheck::check(b, size).unwrap_err();
        assert!(err(&[&f[..], &f[..]].concat()).contains("after its zstd frame"));
        assert!(err(&f[..f.len() - 1]).contains("ends inside"));
        assert!(err(&[0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]).contains("skippable"));
        assert!(err(b"plain text").contains("not a zstd frame"));
        assert!(FrameCheck::check(&f, size + 1)
            .unwrap_err()
            .contains("content size"));
    }
}
