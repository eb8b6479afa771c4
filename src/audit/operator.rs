//! Who ran a decision, and where the bundle was: the operator's user name from the effective uid
//! and the password database, `SUDO_USER` beside it, and the bundle directory made absolute.
//!
//! The name is read from `/etc/passwd` itself, never through `getpwuid`: the release binary is
//! static glibc, where `getpwuid` would need NSS modules at run time (which may be absent, or of
//! another glibc, inside the enclave). The file is opened without following a link (a regular
//! file, checked on the handle) and read bounded; a uid it does not name is `uid:N`. Environment
//! variables other than `SUDO_USER` (`USER`, `LOGNAME`) are not consulted: anyone can set them.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::fsutil;

/// The password database read for the operator's name.
pub const PASSWD: &str = "/etc/passwd";
/// Most bytes of [`PASSWD`] read (a larger file is read this far), and the longest line used.
const MAX_PASSWD: u64 = 16 << 20;
const MAX_PASSWD_LINE: usize = 64 << 10;
/// The longest user name recorded (longer ones, or ones with control characters, are not names).
const MAX_NAME: usize = 256;

/// The operator of a decision, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The effective uid's name in the password database, else `uid:N` (`unknown` where the
    /// platform has no uid).
    pub name: String,
    /// `$SUDO_USER`, when set (sudo names the user who invoked it): a claim of the environment.
    pub sudo_user: Option<String>,
}

/// The operator of this process (read once).
pub fn operator() -> Operator {
    static OP: OnceLock<Operator> = OnceLock::new();
    OP.get_or_init(|| {
        operator_from(
            &|k| std::env::var(k).ok(),
            crate::state::effective_uid(),
            &|uid| user_name(Path::new(PASSWD), uid),
        )
    })
    .clone()
}

/// [`operator`] with the environment, the uid and the password database given, for tests.
pub fn operator_from(
    env: &dyn Fn(&str) -> Option<String>,
    uid: Option<u32>,
    name_of: &dyn Fn(u32) -> Option<String>,
) -> Operator {
    let name = match uid {
        Some(u) => name_of(u).unwrap_or_else(|| format!("uid:{u}")),
        None => "unknown".into(),
    };
    Operator {
        name,
        sudo_user: env("SUDO_USER").filter(|v| is_name(v)),
    }
}

fn is_name(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_NAME && !v.chars().any(char::is_control)
}

/// The name of `uid` in the password database at `path` (the first line naming it), or `None`
/// when it cannot be read or does not name it.
pub fn user_name(path: &Path, uid: u32) -> Option<String> {
    let f = fsutil::open_regular(path).ok()?;
    name_in(BufReader::new(f.take(MAX_PASSWD)), uid)
}

/// The first `name:password:uid:…` line of `r` with `uid`; lines longer than the bound, NIS
/// compatibility entries (`+`, `-`) and names that are not names are skipped.
pub fn name_in(mut r: impl BufRead, uid: u32) -> Option<String> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r
            .by_ref()
            .take(MAX_PASSWD_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .ok()?;
        if n == 0 {
            return None;
        }
        if line.len() > MAX_PASSWD_LINE {
            // Skip the rest of an over-long line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let m = r
                    .by_ref()
                    .take(MAX_PASSWD_LINE as u64)
                    .read_until(b'\n', &mut rest)
                    .ok()?;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            continue;
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            continue;
        };
        let mut fields = text.trim_end_matches(['\n', '\r']).split(':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if name.starts_with(['+', '-']) || !is_name(name) {
            continue;
        }
        if id.parse::<u32>() == Ok(uid) {
            return Some(name.to_string());
        }
    }
}

/// The bundle directory as recorded: what the operator pointed at, made absolute. Its parent is
/// canonicalised where it exists (the directory's real place); the last component is kept as
/// given, so a symbolic link at it (on the media, say) is named, not followed. A path ending in
/// `..` (or the root) is canonicalised whole; a path whose parent does not exist is made
/// absolute with the working directory.
pub fn absolute_bundle_dir(dir: &Path) -> PathBuf {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => match std::fs::canonicalize(parent) {
            Ok(p) => p.join(name),
            Err(_) => abs,
        },
        _ => std::fs::canonicalize(&abs).unwrap_or(abs),
    }
}
