//! THE retry policy of every request airlock sends (registries, their token servers, the Hub
//! API and its files, URL sources, pushes): which failures are transient, how long to wait
//! (`Retry-After` in seconds or as an HTTP-date, capped; else a doubling backoff without
//! jitter, capped), how many tries, and one re-authentication on a 401 per request
//! ([`Call::reauth`], which the OCI token code plugs into). [`RetryPolicy::send`] is the one
//! loop; [`super::RangedReader`] resumes broken bodies under the same policy. Every retry is
//! announced through [`on_retry`] (the binary prints it as a note) and counted ([`retries`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::HeaderMap;

use crate::error::{Error, NetKind, Result};
use crate::format::text::escape;

/// How often and how patiently transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per request, the first included (at least 1).
    pub attempts: u32,
    /// Delay before the first retry, doubled for each further one up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A server's `Retry-After` is honoured up to this long (a longer one waits this long).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 4 tries, waiting 0.5 s, 1 s, 2 s (at most 4 s); `Retry-After` honoured up to 10 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// Whether a request may be repeated after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// GET/HEAD: repeated after any transient transport error and on 408, 425, 429, 500, 502,
    /// 503, 504.
    Safe,
    /// PUT and upload-starting POSTs (repeating one at worst opens a spare upload session or
    /// consumes a finished one, which the push notices): as `Safe`, except a 500 (which a
    /// registry also answers for content it will never take).
    Idempotent,
    /// PATCH (the registry appends): repeated only when the connection could not be made.
    Once,
}

/// The re-authentication hook of a [`Call`].
pub type Reauth<'a> = dyn Fn(&Response) -> Result<bool> + 'a;

/// One request for [`RetryPolicy::send`]: what may be repeated, its URL for messages, the
/// re-authentication hook and how to word an answer that stayed transient.
pub struct Call<'a> {
    pub replay: Replay,
    /// The URL named in messages (without secrets: callers redact upload state).
    pub url: &'a str,
    /// Answers a 401: `Ok(true)` sends the request again (at most once per request), `Ok(false)`
    /// hands the 401 back to the caller.
    pub reauth: Option<&'a Reauth<'a>>,
    /// The error for an answer still transient after the last try (the try count is added).
    pub status_error: &'a dyn Fn(Response) -> Error,
}

impl RetryPolicy {
    /// The policy with at least one try.
    pub fn normalized(self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.attempts.max(1),
            ..self
        }
    }

    /// The backoff before retry number `retry` (0-based): `base_delay` doubled per retry, at
    /// most `max_delay`. No jitter, so tests stay deterministic.
    pub fn delay(&self, retry: u32) -> Duration {
        self.base_delay
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_delay)
    }

    /// The wait before retry number `retry`: the server's `Retry-After` (at most
    /// `max_retry_after`), else [`RetryPolicy::delay`].
    pub fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(self.max_retry_after),
            None => self.delay(retry),
        }
    }

    /// Whether an answer with `status` is worth another try.
    pub fn transient_status(status: u16, replay: Replay) -> bool {
        match status {
            408 | 425 | 429 | 502 | 503 | 504 => replay != Replay::Once,
            500 => replay == Replay::Safe,
            _ => false,
        }
    }

    /// Whether a request that got no answer is worth another try: connect errors, timeouts,
    /// resets and broken bodies are; a malformed request, a redirect refused or looping, an
    /// untrusted certificate or a name that does not exist are not. A PATCH only when it never
    /// left (the connection could not be made).
    pub fn transient_transport(e: &reqwest::Error, replay: Replay) -> bool {
        if e.is_builder() || e.is_redirect() || is_certificate_error(e) || is_unresolvable(e) {
            return false;
        }
        match replay {
            Replay::Safe | Replay::Idempotent => true,
            Replay::Once => e.is_connect(),
        }
    }

    /// Announces retry number `retry` (0-based) of `url` and waits for it: the server's
    /// `retry_after` (capped) or the backoff.
    pub fn pause(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        what: Retrying<'_>,
    ) -> Result<()> {
        let wait = self.wait(retry, retry_after);
        let event = Retrying { wait, ..what };
        RETRIES.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = OBSERVER.get() {
            f(&event.to_string());
        }
        sleep(wait)
    }

    /// Sends the request `build` makes (called again for each try) until it gets an answer
    /// that is not transient, retrying as `call.replay` allows, answering one 401 through
    /// `call.reauth`. Returns that answer whatever its status (a 401 included when there is
    /// no hook or it already ran); a transport failure, or an answer still transient after the
    /// last try, is an error naming the URL and, after retries, the number of tries.
    pub fn send(
        &self,
        call: &Call<'_>,
        mut build: impl FnMut() -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let policy = self.normalized();
        let mut retries = 0u32;
        let mut reauthed = false;
        loop {
            // No stop check here: after SIGINT/SIGTERM the rollback still talks to registries.
            let tries = retries + 1;
            let more = tries < policy.attempts;
            match build()?.send() {
                Err(e) => {
                    let why = describe(&e);
                    if more && Self::transient_transport(&e, call.replay) {
                        policy.pause(
                            retries,
                            None,
                            Retrying::request(call.url, tries + 1, policy.attempts, &why),
                        )?;
                        retries += 1;
                        continue;
                    }
                    return Err(Error::Http {
                        kind: NetKind::of_transport(&e),
                        url: call.url.to_string(),
                        msg: format!("{why}{}", tries_note(tries)),
                    });
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if status == 401 && !reauthed {
                        if let Some(reauth) = call.reauth {
                            if reauth(&resp)? {
                                reauthed = true;
                                continue;
                            }
                        }
                    }
                    if !Self::transient_status(status, call.replay) {
                        return Ok(resp);
                    }
                    if more {
                        let after = retry_after(resp.headers(), SystemTime::now());
                        let why = format!("server answered {}", resp.status());
                        drop(resp);
                        policy.pause(
                            retries,
                            after,
                            Retrying::request(call.url, tries + 1, policy.attempts, &why),
                        )?;
                        retries += 1;
                        continue;
                    }
                    return Err(with_tries((call.status_error)(resp), tries));
                }
            }
        }
    }
}

impl RetryPolicy {
    /// The whole body of the answer `once` gets (`once` sends the request, with its own
    /// retries, and turns an unwanted status into its error), at most `limit` bytes (one
    /// more is an error naming `what`): a body that breaks off is a transient failure, and the
    /// request is made again, up to `attempts` times. Returns the answer's headers and body.
    pub fn read_whole(
        &self,
        url: &str,
        what: &str,
        limit: u64,
        mut once: impl FnMut() -> Result<Response>,
    ) -> Result<(HeaderMap, Vec<u8>)> {
        use std::io::Read;
        let policy = self.normalized();
        let mut retries = 0u32;
        loop {
            let resp = once()?;
            let headers = resp.headers().clone();
            let mut body = Vec::new();
            let read = resp.take(limit.saturating_add(1)).read_to_end(&mut body);
            let e = match read {
                Ok(_) if body.len() as u64 > limit => {
                    return Err(Error::Http {
                        kind: NetKind::Network,
                        url: super::redact(url).to_string(),
                        msg: format!("{what} larger than {limit} bytes"),
                    })
                }
                Ok(_) => return Ok((headers, body)),
                Err(e) => e,
            };
            if crate::interrupt::is_stop(&e) {
                return Err(unwrap_stop(e));
            }
            let why = format!("reading {what} failed: {}", error_chain(&e));
            let tries = retries + 1;
            if tries < policy.attempts && !super::is_final(&e) {
                policy.pause(
                    retries,
                    None,
                    Retrying::request(url, tries + 1, policy.attempts, &why),
                )?;
                retries += 1;
                continue;
            }
            return Err(Error::Http {
                kind: NetKind::Network,
                url: super::redact(url).to_string(),
                msg: format!("{why}{}", tries_note(tries)),
            });
        }
    }
}

/// The [`Error::Interrupted`] inside a stop's I/O error.
fn unwrap_stop(e: std::io::Error) -> Error {
    super::unwrap_io(e, "")
}

/// ` (after N tries)` when there was more than one, else nothing.
pub fn tries_note(tries: u32) -> String {
    if tries > 1 {
        format!(" (after {tries} tries)")
    } else {
        String::new()
    }
}

/// `e` with the number of tries added to its message (an [`Error::Http`]; others unchanged).
pub fn with_tries(e: Error, tries: u32) -> Error {
    match e {
        Error::Http { kind, url, msg } if tries > 1 => Error::Http {
            kind,
            url,
            msg: format!("{msg}{}", tries_note(tries)),
        },
        e => e,
    }
}

/// Sleeps `d`. A stop request does not cut it short: the rollback that follows a stop may be
/// retrying its own requests, and the interrupt watchdog ends a run still going after its grace.
fn sleep(d: Duration) -> Result<()> {
    std::thread::sleep(d);
    Ok(())
}

/// One retry about to happen, as announced to [`on_retry`].
#[derive(Debug, Clone, Copy)]
pub struct Retrying<'a> {
    pub url: &'a str,
    /// The number of the try about to be made (2 for the first retry).
    pub next_try: u32,
    pub attempts: u32,
    pub why: &'a str,
    /// For a resumed body: the byte it resumes at and the total, when known.
    pub at_byte: Option<(u64, Option<u64>)>,
    /// Filled in by [`RetryPolicy::pause`].
    pub wait: Duration,
}

impl<'a> Retrying<'a> {
    pub fn request(url: &'a str, next_try: u32, attempts: u32, why: &'a str) -> Retrying<'a> {
        Retrying {
            url,
            next_try,
            attempts,
            why,
            at_byte: None,
            wait: Duration::ZERO,
        }
    }
}

impl std::fmt::Display for Retrying<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = escape(super::redact(self.url));
        match self.at_byte {
            None => write!(f, "retrying {url}")?,
            Some((at, Some(total))) => write!(f, "resuming {url} at byte {at} of {total}")?,
            Some((at, None)) => write!(f, "resuming {url} at byte {at}")?,
        }
        write!(
            f,
            " in {:.1} s (try {} of {}): {}",
            self.wait.as_secs_f64(),
            self.next_try,
            self.attempts,
            escape(self.why)
        )
    }
}

type Observer = Box<dyn Fn(&str) + Send + Sync>;
static OBSERVER: OnceLock<Observer> = OnceLock::new();
static RETRIES: AtomicU64 = AtomicU64::new(0);

/// Installs the one receiver of retry announcements (one line each, e.g. `retrying URL in 1.0 s
/// (try 2 of 4): server answered 503 Service Unavailable`); the first call wins. Library code
/// never prints: the binary passes them to its printer as notes.
pub fn on_retry(f: impl Fn(&str) + Send + Sync + 'static) {
    let _ = OBSERVER.set(Box::new(f));
}

/// Retries and resumes made so far by this process.
pub fn retries() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

/// A transport error with its causes (reqwest's own message hides them), without the URL. A
/// redirect that failed says so.
pub fn describe(e: &reqwest::Error) -> String {
    let top = e.to_string();
    // reqwest ends its own line with ` for url (URL)`: messages name the URL once, redacted.
    let mut s = match top.find(" for url (") {
        Some(i) => top[..i].to_string(),
        None => top.clone(),
    };
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    if e.is_redirect() && !s.contains("schemes other than") {
        format!("redirect loop or too many redirects ({s})")
    } else {
        s
    }
}

/// An error and its causes on one line (each cause once).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Every error in `e`'s chain, nested `io::Error`s opened (their `source` skips what they wrap).
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut todo = vec![e];
    while let Some(c) = todo.pop() {
        out.push(c);
        if let Some(inner) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            todo.push(inner);
        }
        if let Some(next) = c.source() {
            todo.push(next);
        }
    }
    out
}

/// Whether a request failed on the server's certificate (the TLS handshake got that far).
pub fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).into_iter().any(|c| {
        matches!(
            c.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        )
    })
}

/// Whether a request failed because its host name does not exist (or there is no name server):
/// not transient.
pub fn is_unresolvable(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).into_iter().any(|c| c.is::<super::Unresolvable>())
}

/// The wait a `Retry-After` header asks for: delay-seconds, or an HTTP-date (a date in the past
/// is no wait). `None` without a usable header.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An HTTP-date (RFC 9110 §5.6.7): IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, and the
/// obsolete RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` and asctime `Sun Nov  6 08:49:37 1994`.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split([' ', ',', '-']).filter(|p| !p.is_empty()).collect();
    let (day, mon, year, time) = match parts.as_slice() {
        [_, d, m, y, t, "GMT"] => (*d, *m, *y, *t),
        [_, m, d, t, y] => (*d, *m, *y, *t),
        _ => return None,
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == mon)? as i64 + 1;
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let day = num(day).filter(|d| (1..=31).contains(d))?;
    let mut year = num(year)?;
    if year < 100 {
        // RFC 850's two digits: the nearest century not more than 50 years ahead.
        year += if year < 50 { 2000 } else { 1900 };
    }
    let hms: Vec<i64> = time.split(':').map(num).collect::<Option<_>>()?;
    let [h, m, sec] = hms[..] else { return None };
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let d: Vec<u64> = (0..6).map(|i| p.delay(i).as_millis() as u64).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 4000, 4000]);
        // Retry-After wins over the backoff, capped.
        assert_eq!(
            p.wait(0, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(p.wait(5, Some(Duration::ZERO)), Duration::ZERO);
        assert_eq!(
            p.wait(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(10)
        );
        assert_eq!(p.wait(1, None), Duration::from_secs(1));
    }

    #[test]
    fn transient_classes() {
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(RetryPolicy::transient_status(s, Replay::Safe), "{s}");
            assert!(!RetryPolicy::transient_status(s, Replay::Once), "{s}");
        }
        assert!(!RetryPolicy::transient_status(500, Replay::Idempotent));
        assert!(RetryPolicy::transient_status(503, Replay::Idempotent));
        for s in [200, 206, 301, 400, 401, 403, 404, 416, 501, 505] {
            assert!(!RetryPolicy::transient_status(s, Replay::Safe), "{s}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let mut h = HeaderMap::new();
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:40 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3)));
        h.insert(
            "retry-after",
            "Sunday, 06-Nov-94 08:49:47 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(10)));
        h.insert("retry-after", "Sun Nov  6 08:50:37 1994".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(60)));
        // In the past: no wait. Garbage: ignored.
        h.insert(
            "retry-after",
            "Thu, 01 Jan 1970 00:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after", "-5".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
        assert_eq!(
            parse_http_date("Sat, 29 Feb 2020 23:59:59 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(1_583_020_799))
        );
        assert_eq!(parse_http_date("Sat, 29 Foo 2020 23:59:59 GMT"), None);
    }

    #[test]
    fn announcements_name_the_url_the_try_and_why() {
        let r = Retrying {
            wait: Duration::from_millis(1500),
            ..Retrying::request(
                "http://h/v2/x/blobs/uploads/u?_state=s",
                2,
                4,
                "server answered 503",
            )
        };
        assert_eq!(
            r.to_string(),
            "retrying http://h/v2/x/blobs/uploads/u in 1.5 s (try 2 of 4): server answered 503"
        );
        let r = Retrying {
            at_byte: Some((70, Some(200))),
            ..r
        };
        assert!(r
            .to_string()
            .starts_with("resuming http://h/v2/x/blobs/uploads/u at byte 70 of 200"));
    }
}
