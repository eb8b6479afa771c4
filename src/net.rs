//! The HTTP client shared by every network source: rustls with the ring provider, system trust
//! roots, bounded inactivity timeouts, redirects followed (reqwest drops credentials on
//! cross-host redirects), and the one transfer policy every download follows ([`Transfer`]:
//! curl's `--speed-limit`/`--speed-time`, applied by [`Guarded`]). Host names resolve through
//! [`HostResolver`] (hickory-resolver reading `/etc/hosts` and `/etc/resolv.conf`), never
//! through glibc's `getaddrinfo`: the release binary is static and must not need NSS modules.
//!
//! Every request that retries goes through the one [`RetryPolicy`] (`retry.rs`), every download
//! that resumes is a [`RangedReader`] (`ranged.rs`).

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::text::escape;

mod ranged;
mod retry;

pub use ranged::{unwrap_io, Connect, Ranged, RangedReader, Resume};
pub use retry::{
    describe, error_chain, is_certificate_error, is_unresolvable, on_retry, parse_http_date,
    retries, retry_after, tries_note, with_tries, Call, Replay, RetryPolicy, Retrying,
};

static PROVIDER: Once = Once::new();

/// `url` without its query (registry upload URLs carry Distribution's opaque `_state`), for
/// messages.
pub fn redact(url: &str) -> &str {
    url.split_once('?').map_or(url, |(u, _)| u)
}

/// A name that cannot resolve (no such host, or no name server to ask): not worth a retry.
#[derive(Debug)]
pub struct Unresolvable(pub String);

impl std::fmt::Display for Unresolvable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unresolvable {}

/// Inactivity timeout: a request or a body read that makes no progress for this long fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// Default of `--min-speed`: a download slower than this (bytes per second) ...
pub const DEFAULT_MIN_SPEED: u64 = 1024;
/// ... for this long (`--min-speed-time`) is aborted.
pub const DEFAULT_MIN_SPEED_TIME: Duration = Duration::from_secs(60);

/// How slow a download may be: curl's `--speed-limit` / `--speed-time`. A transfer whose
/// average rate over a period of `min_speed_time` stays below `min_speed` bytes per second is
/// aborted, and so is one that delivers nothing for `min_speed_time` (the read timeout of a
/// download is the shorter of that and [`IO_TIMEOUT`]). The abort is final: a resuming reader
/// does not retry a server that is too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes per second; 0 turns the check off (the inactivity timeout still applies).
    pub min_speed: u64,
    pub min_speed_time: Duration,
}

impl Default for Transfer {
    fn default() -> Self {
        Transfer {
            min_speed: DEFAULT_MIN_SPEED,
            min_speed_time: DEFAULT_MIN_SPEED_TIME,
        }
    }
}

impl Transfer {
    /// No speed check: only the inactivity timeout ([`IO_TIMEOUT`]) bounds a transfer.
    pub fn off() -> Transfer {
        Transfer {
            min_speed: 0,
            ..Transfer::default()
        }
    }

    /// The inactivity timeout of a client that follows this policy: how long a request or one
    /// read of a body may wait. (reqwest's blocking client applies its timeout to each wait; a
    /// per-request timeout would be a deadline for the whole body instead.)
    pub fn read_timeout(&self) -> Duration {
        if self.min_speed > 0 && !self.min_speed_time.is_zero() {
            self.min_speed_time.min(IO_TIMEOUT)
        } else {
            IO_TIMEOUT
        }
    }

    /// Wraps a response body (or any reader) in the speed check.
    pub fn guard<R: Read>(&self, inner: R) -> Guarded<R> {
        Guarded {
            inner,
            limits: *self,
            window_start: Instant::now(),
            window_bytes: 0,
        }
    }
}

/// The error a [`Guarded`] reader fails with when the transfer is too slow.
#[derive(Debug)]
pub struct TooSlow {
    pub limits: Transfer,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "transfer too slow: {} bytes in {:.1} s, below the minimum of {} bytes/s over {} s \
             (--min-speed, --min-speed-time)",
            self.bytes,
            self.elapsed.as_secs_f64(),
            self.limits.min_speed,
            self.limits.min_speed_time.as_secs_f64()
        )
    }
}

impl std::error::Error for TooSlow {}

/// Whether an I/O error is a [`TooSlow`] abort (not worth retrying).
pub fn is_too_slow(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TooSlow>())
}

/// Whether a failed read of a body must not be retried: too slow, or a stop was requested
/// (SIGINT, SIGTERM; [`crate::interrupt::io_error`]).
pub fn is_final(e: &io::Error) -> bool {
    is_too_slow(e) || crate::interrupt::is_stop(e)
}

/// A reader that fails with [`TooSlow`] once the bytes delivered over a period of
/// `min_speed_time` average less than `min_speed` per second, and with
/// [`crate::interrupt::io_error`] once SIGINT or SIGTERM asked the run to stop.
pub struct Guarded<R> {
    inner: R,
    limits: Transfer,
    window_start: Instant,
    window_bytes: u64,
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::interrupt::check_io()?;
        let n = self.inner.read(buf)?;
        if n == 0 || self.limits.min_speed == 0 {
            return Ok(n);
        }
        self.window_bytes += n as u64;
        let elapsed = self.window_start.elapsed();
        if elapsed >= self.limits.min_speed_time {
            let rate = self.window_bytes as f64 / elapsed.as_secs_f64().max(1e-9);
            if rate < self.limits.min_speed as f64 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    TooSlow {
                        limits: self.limits,
                        bytes: self.window_bytes,
                        elapsed,
                    },
                ));
            }
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
        Ok(n)
    }
}

/// For a redirect reqwest did not follow: why. reqwest follows redirects to `http://` and
/// `https://` only; a `Location` with another scheme (`file://`, `ftp://`) comes back as the
/// 3xx response itself.
pub fn unfollowed_redirect(resp: &reqwest::blocking::Response) -> Option<String> {
    if !resp.status().is_redirection() {
        return None;
    }
    let Some(loc) = resp.headers().get(reqwest::header::LOCATION) else {
        return Some(format!(
            "server answered {} without a Location",
            resp.status()
        ));
    };
    let loc = String::from_utf8_lossy(loc.as_bytes()).into_owned();
    Some(match resp.url().join(&loc) {
        Ok(target) if !matches!(target.scheme(), "http" | "https") => format!(
            "server answered {} with a redirect to \"{}\": redirects to schemes other than \
             http:// and https:// are refused",
            resp.status(),
            escape(&loc)
        ),
        Ok(_) => format!(
            "server answered {} with a redirect to \"{}\" that was not followed",
            resp.status(),
            escape(&loc)
        ),
        Err(e) => format!(
            "server answered {} with a Location that is not a URL (\"{}\": {e})",
            resp.status(),
            escape(&loc)
        ),
    })
}

/// Why a redirect was not followed: its target is not `http://` or `https://`.
#[derive(Debug)]
struct SchemeRefused(String);

impl std::fmt::Display for SchemeRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "redirect to \"{}\" refused: redirects to schemes other than http:// and https:// are refused",
            escape(&self.0)
        )
    }
}

impl std::error::Error for SchemeRefused {}

/// Most redirects followed for one request (reqwest's default).
const MAX_REDIRECTS: usize = 10;

/// reqwest's default policy (at most [`MAX_REDIRECTS`]), refusing by name a redirect to any
/// scheme but `http` and `https` (reqwest would stop with "URL scheme is not allowed", or hand
/// back the 3xx response itself).
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if !matches!(attempt.url().scheme(), "http" | "https") {
            let target = attempt.url().to_string();
            attempt.error(SchemeRefused(target))
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    })
}

/// A client without CA certificates of its own and without the speed check.
pub fn client() -> Result<reqwest::blocking::Client> {
    client_with_roots(&[], &Transfer::off())
}

/// A client trusting the system roots and the CA certificates in the given PEM files
/// (`--ca-cert`), with the inactivity timeout of `transfer` ([`Transfer::read_timeout`]).
/// Downloads also wrap their bodies in [`Transfer::guard`].
pub fn client_with_roots(
    ca_files: &[std::path::PathBuf],
    transfer: &Transfer,
) -> Result<reqwest::blocking::Client> {
    let mut certs = Vec::new();
    for path in ca_files {
        let pem = std::fs::read(path).map_err(|e| Error::io("read CA certificate", path, e))?;
        let found = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::Usage(format!(
                "{}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
        if found.is_empty() {
            return Err(Error::Usage(format!(
                "{}: no PEM certificate in this file",
                path.display()
            )));
        }
        certs.extend(found);
    }
    PROVIDER.call_once(|| {
        // Fails only if another provider was installed first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::blocking::Client::builder()
        .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .timeout(transfer.read_timeout())
        .redirect(redirect_policy())
        .dns_resolver(Arc::new(HostResolver::default()))
        .tls_certs_merge(certs)
        .build()
        .map_err(|e| Error::Other(format!("cannot set up the HTTP client: {e}")))
}

/// Name resolution as glibc's `hosts: files dns`, without glibc: `/etc/hosts` first (every name
/// as written, search domains or not), then the name servers of `/etc/resolv.conf` (with its
/// `search`, `ndots`, `timeout` and `attempts`). `localhost` always resolves to the loopback
/// addresses. Both files are read once per client, on its first lookup.
///
/// Unlike reqwest's own `hickory-dns` resolver, a missing or server-less `/etc/resolv.conf`
/// does not fall back to a public resolver (Google's): inside an enclave that would send the
/// names being looked up towards the outside, so names outside `/etc/hosts` fail, saying why.
#[derive(Default)]
pub struct HostResolver {
    state: Arc<OnceLock<Resolvers>>,
}

struct Resolvers {
    hosts: hickory_resolver::Hosts,
    /// The DNS resolver, or why there is none.
    dns: std::result::Result<hickory_resolver::TokioResolver, String>,
}

impl Resolvers {
    fn load() -> Resolvers {
        use hickory_resolver::config::{LookupIpStrategy, ResolveHosts};
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let hosts = hickory_resolver::Hosts::from_system().unwrap_or_default();
        let dns = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| {
                format!(
                    "no name server (/etc/resolv.conf: {})",
                    e.to_string().trim_start_matches("io error: ")
                )
            })
            .and_then(|(config, mut options)| {
                // Both families, IPv4 first (the connector tries them in turn).
                options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
                options.use_hosts_file = ResolveHosts::Never;
                hickory_resolver::TokioResolver::builder_with_config(
                    config,
                    TokioRuntimeProvider::default(),
                )
                .with_options(options)
                .build()
                .map_err(|e| format!("cannot set up the DNS resolver: {e}"))
            });
        Resolvers { hosts, dns }
    }

    /// The addresses `/etc/hosts` gives `host` (IPv4 first), if any.
    fn in_hosts(&self, host: &str) -> Vec<IpAddr> {
        use hickory_resolver::proto::op::Query;
        use hickory_resolver::proto::rr::{Name, RecordType};
        let Ok(mut name) = Name::from_str(host) else {
            return Vec::new();
        };
        name.set_fqdn(true);
        let found: Vec<IpAddr> = [RecordType::A, RecordType::AAAA]
            .into_iter()
            .filter_map(|t| {
                self.hosts
                    .lookup_static_host(&Query::query(name.clone(), t))
            })
            .flat_map(|l| l.answers().to_vec())
            .filter_map(|r| r.data.ip_addr())
            .collect();
        if found.is_empty() && name.is_localhost() {
            // RFC 6761: localhost and *.localhost are the loopback host, hosts file or not.
            return vec![
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ];
        }
        found
    }
}

impl reqwest::dns::Resolve for HostResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let state = self.state.clone();
        Box::pin(async move {
            let r = state.get_or_init(Resolvers::load);
            let host = name.as_str();
            let mut found = r.in_hosts(host);
            if found.is_empty() {
                let dns = r.dns.as_ref().map_err(|why| {
                    Box::new(Unresolvable(format!(
                        "cannot resolve {}: not in /etc/hosts, and {why}",
                        escape(host)
                    ))) as Box<dyn std::error::Error + Send + Sync>
                })?;
                let lookup = dns.lookup_ip(host).await.map_err(|e| {
                    if e.is_no_records_found() {
                        // NXDOMAIN, or a name without A/AAAA records (the error's own text
                        // is a debug dump of the query).
                        Box::new(Unresolvable(format!("cannot resolve {}: no such host (not in /etc/hosts, no address from DNS)", escape(host))))
                            as Box<dyn std::error::Error + Send + Sync>
                    } else {
                        format!("cannot resolve {}: {e}", escape(host)).into()
                    }
                })?;
                found = lookup.iter().collect();
            }
            let addrs: reqwest::dns::Addrs =
                Box::new(found.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields one byte per read, sleeping before each.
    struct Drip(Duration);
    impl Read for Drip {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(self.0);
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn a_slow_reader_is_aborted_after_the_period() {
        let t = Transfer {
            min_speed: 1000,
            min_speed_time: Duration::from_millis(100),
        };
        let mut g = t.guard(Drip(Duration::from_millis(10)));
        let mut buf = [0u8; 16];
        let err = (0..100).find_map(|_| g.read(&mut buf).err()).unwrap();
        assert!(is_too_slow(&err), "{err}");
        assert!(err.to_string().contains("--min-speed"), "{err}");
    }

    #[test]
    fn a_fast_reader_or_a_disabled_check_passes() {
        let fast = Transfer {
            min_speed: 1,
            min_speed_time: Duration::from_millis(20),
        };
        let mut g = fast.guard(io::repeat(7).take(10 << 20));
        assert_eq!(io::copy(&mut g, &mut io::sink()).unwrap(), 10 << 20);
        let off = Transfer {
            min_speed: 0,
            min_speed_time: Duration::from_millis(1),
        };
        let mut g = off.guard(Drip(Duration::from_millis(2)));
        let mut buf = [0u8; 4];
        for _ in 0..10 {
            assert_eq!(g.read(&mut buf).unwrap(), 1);
        }
        assert_eq!(off.read_timeout(), IO_TIMEOUT);
        assert_eq!(
            Transfer::default().read_timeout(),
            DEFAULT_MIN_SPEED_TIME.min(IO_TIMEOUT)
        );
    }
}
