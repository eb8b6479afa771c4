//! Image references as docker and skopeo read them: `[HOST[:PORT]/]PATH[:TAG][@sha256:HEX]`,
//! with Docker Hub's normalisation (`nginx` → `docker.io/library/nginx:latest`).

use std::fmt;

use crate::format::Digest;

pub const DOCKER_HUB: &str = "docker.io";
/// The API host behind `docker.io`.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub host: String,
    /// Repository path (`library/nginx`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let run = b[i..].iter().take_while(|&&x| alnum(x)).count();
        if run == 0 {
            return false;
        }
        i += run;
        if i == b.len() {
            return true;
        }
        let sep = b[i..].iter().take_while(|&&x| !alnum(x)).count();
        let ok = match &b[i..i + sep] {
            b"." | b"_" | b"__" => true,
            dashes => dashes.iter().all(|&x| x == b'-'),
        };
        if !ok {
            return false;
        }
        i += sep;
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// Checks a registry host as `--registry` and references name it: `NAME[:PORT]` or
/// `[IPV6][:PORT]`, where NAME is DNS labels (letters, digits, `-` inside) joined by dots, or an
/// IPv4 address, and PORT is 1..=65535. The error says what is wrong.
pub fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing ']'")?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("[{addr}] is not an IPv6 address"))?;
        match after {
            "" => (None, None),
            p => (
                None,
                Some(p.strip_prefix(':').ok_or("only :PORT may follow ']'")?),
            ),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        if name.is_empty() {
            return Err("the host name is empty".into());
        }
        if name.len() > 253 {
            return Err("the host name is longer than 253 characters".into());
        }
        for label in name.split('.') {
            let b = label.as_bytes();
            let ok = !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-';
            if !ok {
                return Err(format!(
                    "{:?} is not a host name label (1 to 63 letters, digits or '-', not starting or ending with '-')",
                    label
                ));
            }
        }
    }
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && matches!(p.parse::<u32>(), Ok(1..=65535));
        if !ok {
            return Err(format!("{p:?} is not a port number (1 to 65535)"));
        }
    }
    Ok(())
}

impl Reference {
    /// Parses a reference (without the `oci://` scheme).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        let (rest, digest) =
            match s.split_once('@') {
                Some((r, d)) => (
                    r,
                    Some(d.parse::<Digest>().map_err(|_| {
                        err("the digest must be sha256: and 64 lowercase hex digits")
                    })?),
                ),
                None => (s, None),
            };
        // A tag is the part after the last ':' if that ':' comes after the last '/'.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(err(
                    "tags are 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
                ));
            }
        }
        let (host, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let host = if host == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            host
        };
        let repository = if host == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repository.is_empty() || !repository.split('/').all(valid_component) {
            return Err(err("repository path components are lowercase letters and digits separated by '.', '_', '__' or dashes"));
        }
        if repository.len() > 255 {
            return Err(err("repository path longer than 255 characters"));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            host,
            repository,
            tag,
            digest,
        })
    }

    /// The host to talk to for API calls (`registry-1.docker.io` for `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.host == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.host
        }
    }

    /// What to request from `/manifests/`: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_are_checked() {
        for ok in [
            "localhost",
            "localhost:5000",
            "registry.enclave:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "[fe80::1]",
            "my-registry.example.com",
        ] {
            assert_eq!(check_host(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "reg\"istry:5000",
            "host:",
            "host:0",
            "host:65536",
            "host:50a",
            "-host",
            "a..b",
            "[::1",
            "[nope]:1",
            "[::1]x",
            "ho st",
            "h\u{1b}[2K",
        ] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
    }

    fn p(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(p("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(p("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(p("index.docker.io/nginx:1"), "docker.io/library/nginx:1");
        assert_eq!(
            p("vllm/vllm-openai:v0.6.0"),
            "docker.io/vllm/vllm-openai:v0.6.0"
        );
        assert_eq!(p("ghcr.io/org/img"), "ghcr.io/org/img:latest");
        assert_eq!(p("localhost/img:t"), "localhost/img:t");
        assert_eq!(
            p("127.0.0.1:5000/test/multi:1"),
            "127.0.0.1:5000/test/multi:1"
        );
        assert_eq!(
            Reference::parse("nginx").unwrap().api_host(),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn digests_and_tags() {
        let hex = "a".repeat(64);
        let r = Reference::parse(&format!("nvcr.io/nim/llm@sha256:{hex}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), format!("sha256:{hex}"));
        let r = Reference::parse(&format!("host:5000/a/b:t@sha256:{hex}")).unwrap();
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("host:5000", "a/b", Some("t"))
        );
    }

    #[test]
    fn refuses_malformed_references() {
        for bad in [
            "",
            "UPPER/case",
            "nginx:",
            "nginx:-x",
            "a//b",
            "nginx@sha256:12",
            "a/b_-c",
            "x/-y",
            "ns/img:tag!",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
