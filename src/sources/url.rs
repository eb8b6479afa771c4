//! `http://` and `https://` downloads: streamed to a staging file while hashed, never held in
//! memory, and refused if the bytes do not match the `#sha256=` pin. Every download is bounded
//! before its first byte is written: by its declared size (`#size=N`, `size = N`; a
//! `Content-Length` that disagrees fails at once, the first byte beyond it stops the download),
//! else by `--max-download`; always by the free space of the output filesystem (the staged file
//! and its later copy into a chunk must both fit, less [`RESERVE`]); and in time by the shared
//! transfer policy ([`net::Transfer`]). Requests are retried under the one
//! [`net::RetryPolicy`]; a broken body resumes ([`net::RangedReader`]; unpinned, only where the
//! server shows the file unchanged).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::{Needed, ResolveOptions};
use crate::error::{Error, Result};
use crate::format::text::escape;
use crate::format::{Artifact, ArtifactKind, Digest, Entry, EntryType};
use crate::fsutil::{self, CopyError};
use crate::net;
use crate::progress::Progress;

/// Free space left untouched on the output filesystem by staged downloads.
pub const RESERVE: u64 = 64 << 20;

/// One URL source, as parsed.
pub(super) struct Download<'a> {
    pub url: &'a str,
    pub pin: Option<Digest>,
    pub size: Option<u64>,
    pub given: &'a str,
    pub name: Option<&'a str>,
}

pub(super) fn name_from_url(url: &reqwest::Url) -> Option<String> {
    url.path_segments()?
        .rfind(|s| !s.is_empty())
        .map(str::to_string)
}

/// What stops a download, checked before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// The declared size: exactly this many bytes.
    Declared(u64),
    /// No declared size: at most `--max-download` bytes.
    Cap(u64),
    /// No declared size, and the free space is smaller than the cap.
    Room(u64),
}

impl Bound {
    fn limit(self) -> u64 {
        match self {
            Bound::Declared(n) | Bound::Cap(n) | Bound::Room(n) => n,
        }
    }
}

/// Why a download may not even start.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The server's `Content-Length` is not the declared size (content mismatch).
    LengthMismatch { declared: u64, announced: u64 },
    /// The server announces more than `--max-download`.
    OverCap { announced: u64, cap: u64 },
    /// The known size does not fit in the free space.
    NoRoom { size: u64, room: u64 },
}

/// The bound of one download: `declared` size, the server's `announced` `Content-Length`, the
/// `cap` for downloads without a declared size, and the `room` on the output filesystem for
/// the staged copy.
fn bound(
    declared: Option<u64>,
    announced: Option<u64>,
    cap: u64,
    room: u64,
) -> Result<Bound, Refusal> {
    if let Some(declared) = declared {
        if let Some(announced) = announced {
            if announced != declared {
                return Err(Refusal::LengthMismatch {
                    declared,
                    announced,
                });
            }
        }
        if declared > room {
            return Err(Refusal::NoRoom {
                size: declared,
                room,
            });
        }
        return Ok(Bound::Declared(declared));
    }
    if let Some(announced) = announced {
        if announced > cap {
            return Err(Refusal::OverCap { announced, cap });
        }
        if announced > room {
            return Err(Refusal::NoRoom {
                size: announced,
                room,
            });
        }
    }
    Ok(if room < cap {
        Bound::Room(room)
    } else {
        Bound::Cap(cap)
    })
}

pub(super) fn resolve(
    d: &Download,
    staging: &Path,
    opts: &ResolveOptions,
    staged: u64,
    progress: &dyn Progress,
) -> Result<(Artifact, Vec<Needed>)> {
    let url = d.url;
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::Usage(format!("{}: not a valid URL ({e})", escape(url))))?;
    let name = match d.name {
        Some(n) => n.to_string(),
        None => name_from_url(&parsed).ok_or_else(|| {
            Error::Usage(format!(
                "{}: cannot derive a file name from the URL; set a name",
                escape(url)
            ))
        })?,
    };
    fsutil::create_dir_all(staging)?;
    let room = super::staging_room(staging, staged)?;
    let dest = staging.join("download");
    let http_kind = |kind: crate::error::NetKind, msg: String| Error::Http {
        kind,
        url: url.to_string(),
        msg,
    };
    let http = |msg: String| http_kind(crate::error::NetKind::Network, msg);
    let transfer = opts.connect.transfer;
    let client = net::client_with_roots(&opts.connect.ca_certs, &transfer)?;
    let how = net::Ranged {
        policy: net::RetryPolicy::default(),
        transfer,
        // The bounds below are this source's own (a declared size is checked as content).
        expected: None,
        pinned: d.pin.is_some(),
    };
    let connect: net::Connect<'_> = Box::new(|resume| {
        let answered = |resp: reqwest::blocking::Response| status_error(url, &resp);
        let call = net::Call {
            replay: net::Replay::Safe,
            url,
            reauth: None,
            status_error: &answered,
        };
        let resp = how
            .policy
            .send(&call, || Ok(resume.apply(client.get(parsed.clone()))))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(status_error(url, &resp))
        }
    });
    let reader = net::RangedReader::open(url, how, connect)?;
    let final_url = reader.final_url().to_string();
    let announced = reader.content_length();
    let what = format!("download of {url}");
    let bound = bound(d.size, announced, opts.max_download, room).map_err(|r| match r {
        Refusal::LengthMismatch {
            declared,
            announced,
        } => Error::HashMismatch {
            what: what.clone(),
            algorithm: "size",
            expected: format!("{declared} bytes (the declared size)"),
            actual: format!("{announced} bytes (the server's Content-Length)"),
        },
        Refusal::OverCap { announced, cap } => http(format!(
            "the server announces {announced} bytes, more than the {} a download without a \
             declared size may have (raise --max-download, or declare the size: #size=N, size = N)",
            bytes(cap)
        )),
        Refusal::NoRoom { size, room } => no_room(staging, url, size, room),
    })?;
    let mut file = File::create(&dest).map_err(|e| Error::io("create", &dest, e))?;
    progress.start(
        &format!("downloading {}", escape(&name)),
        announced.or(d.size).unwrap_or(0),
    );
    let limit = bound.limit();
    let body = reader.take(limit.saturating_add(1));
    let (digest, size) = fsutil::copy_hashed(body, &mut file, progress).map_err(|e| match e {
        CopyError::Read { after, source } => match net::unwrap_io(source, url) {
            Error::Http { kind, url, msg } => Error::Http {
                kind,
                url,
                msg: format!("download failed after {after} bytes: {msg}"),
            },
            e => e,
        },
        CopyError::Write(e) => Error::io("write", &dest, e),
    })?;
    progress.finish();
    if size > limit {
        // Stopped at the first byte beyond the bound.
        return Err(match bound {
            Bound::Declared(n) => Error::HashMismatch {
                what,
                algorithm: "size",
                expected: format!("{n} bytes (the declared size)"),
                actual: "more (the download was stopped at the first byte beyond it)".into(),
            },
            Bound::Cap(cap) => http(format!(
                "the download was stopped after {} bytes: more than the {} a download without a \
                 declared size may have (raise --max-download, or declare the size: #size=N, \
                 size = N)",
                limit,
                bytes(cap)
            )),
            Bound::Room(room) => no_room(staging, url, size, room),
        });
    }
    if let Some(len) = announced {
        if len != size {
            return Err(http(format!("download ended after {size} of {len} bytes")));
        }
    }
    if let Bound::Declared(n) = bound {
        if size != n {
            return Err(Error::HashMismatch {
                what,
                algorithm: "size",
                expected: format!("{n} bytes (the declared size)"),
                actual: format!("{size} bytes"),
            });
        }
    }
    file.sync_all().map_err(|e| Error::io("sync", &dest, e))?;
    if let Some(expected) = d.pin {
        if expected != digest {
            return Err(Error::DigestMismatch {
                what: format!("download of {url}"),
                expected,
                actual: digest,
            });
        }
    }
    let entry = Entry {
        path: name.clone(),
        kind: EntryType::File,
        blob: Some(digest),
        size: Some(size),
        executable: false,
    };
    let artifact = Artifact {
        name,
        kind: ArtifactKind::File,
        source: d.given.to_string(),
        identity: format!("{final_url} {digest}"),
        entries: vec![entry],
        image: None,
        hf: None,
    };
    Ok((
        artifact,
        vec![Needed {
            digest,
            size,
            path: dest,
            pending: false,
        }],
    ))
}

/// `N bytes`, for messages.
fn bytes(n: u64) -> String {
    format!("{n} bytes")
}

fn no_room(staging: &Path, url: &str, size: u64, room: u64) -> Error {
    Error::Other(format!(
        "{}: not enough free space for the download of {}: it needs {} twice (the staged file and \
         its copy in a chunk), and {} may be staged (free space less {} in reserve)",
        staging.display(),
        escape(url),
        bytes(size),
        bytes(room),
        bytes(RESERVE)
    ))
}

/// The error for an answer that is not a success: a redirect not followed, or the status.
fn status_error(url: &str, resp: &reqwest::blocking::Response) -> Error {
    if let Some(why) = net::unfollowed_redirect(resp) {
        return Error::Http {
            kind: crate::error::NetKind::Network,
            url: url.to_string(),
            msg: why,
        };
    }
    Error::Http {
        kind: crate::error::NetKind::of_status(resp.status().as_u16(), &[]),
        url: url.to_string(),
        msg: format!("server answered {}", resp.status()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_come_from_the_declared_size_else_the_cap_and_the_room() {
        let big = u64::MAX;
        assert_eq!(bound(Some(5), None, 1, big), Ok(Bound::Declared(5)));
        assert_eq!(bound(Some(5), Some(5), 1, big), Ok(Bound::Declared(5)));
        assert_eq!(
            bound(Some(5), Some(6), 100, big),
            Err(Refusal::LengthMismatch {
                declared: 5,
                announced: 6
            })
        );
        assert_eq!(bound(None, None, 100, big), Ok(Bound::Cap(100)));
        assert_eq!(bound(None, Some(100), 100, big), Ok(Bound::Cap(100)));
        assert_eq!(
            bound(None, Some(101), 100, big),
            Err(Refusal::OverCap {
                announced: 101,
                cap: 100
            })
        );
        assert_eq!(bound(None, None, 100, 40), Ok(Bound::Room(40)));
        assert_eq!(
            bound(None, Some(50), 100, 40),
            Err(Refusal::NoRoom { size: 50, room: 40 })
        );
        assert_eq!(
            bound(Some(50), None, 100, 40),
            Err(Refusal::NoRoom { size: 50, room: 40 })
        );
    }
}
