//! SIGINT and SIGTERM as a request to stop, not a kill.
//!
//! `pack` and `import` call [`install`] (commands that write nothing keep the default action:
//! a signal ends them at once). Long-running library loops (copying a blob, staging a chunk,
//! committing a target) call [`check`] between units of work and return
//! [`Error::Interrupted`], which unwinds through the same cleanup a failure takes: staging
//! removed or left resumable, committed targets rolled back. The process then exits with
//! 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells report a signal death.
//! The stop is prompt because every loop checks at least once per buffer (1 MiB). A second
//! SIGINT or SIGTERM while the first is being handled ends the process at once with the same
//! code (the escape hatch of every CLI; what it leaves is what SIGKILL leaves: staging that the
//! next run removes or reuses, never visible partial content).
//!
//! A loop that is blocked (a download whose server went silent, waiting out a 60 s inactivity
//! timeout; a connect; an `fsync` of a large chunk on a slow stick) cannot check. So [`install`]
//! also starts a watchdog thread, woken by the signal itself: if the process has not ended
//! [`GRACE`] after the stop was requested, it runs the command's [`on_forced_stop`] report (one
//! line saying what is left for the next run) and ends the process with 128 + the signal,
//! leaving what SIGKILL would. Readers of network bodies fail at once once a stop is requested
//! ([`io_error`], which no resuming reader retries).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::error::{Error, Result};

static SIGNAL: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicUsize> {
    SIGNAL.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// Routes SIGINT and SIGTERM to the stop flag. Without this (library use, tests) the signals keep
/// their default action; one that arrived ignored stays ignored ([`ignored`]).
pub fn install() -> std::io::Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.set(()).is_err() {
        return Ok(());
    }
    let seen = Arc::new(AtomicBool::new(false));
    let handled: Vec<i32> = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]
        .into_iter()
        .filter(|&sig| !ignored(sig))
        .collect();
    for &sig in &handled {
        // Registered first, so it runs before `seen` is set by this same delivery: only a
        // second signal finds it set.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&seen))?;
        signal_hook::flag::register_usize(sig, Arc::clone(flag()), sig as usize)?;
        signal_hook::flag::register(sig, Arc::clone(&seen))?;
    }
    start_watchdog(&handled)
}

/// Whether `sig` arrived ignored (`SIG_IGN` inherited across exec: a background job of a
/// non-interactive shell ignores SIGINT so that a Ctrl-C meant for the foreground leaves it
/// alone). Such a signal stays ignored, as the Unix convention for programs that catch it is.
fn ignored(sig: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the current disposition into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// How long the process may take to stop after SIGINT or SIGTERM before the watchdog ends it.
pub const GRACE: Duration = Duration::from_secs(1);

type Report = Arc<dyn Fn(i32) + Send + Sync>;
static FORCED: Mutex<Option<Report>> = Mutex::new(None);

/// What the watchdog runs before it ends a process that did not stop within [`GRACE`]: the
/// command's one-line account of what is left (e.g. "the unfinished bundle in OUT is replaced
/// by the next pack into it"). Replaces the previous report; `pack` and `import` set theirs
/// once they know what they write.
pub fn on_forced_stop(report: impl Fn(i32) + Send + Sync + 'static) {
    *FORCED.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(report));
}

/// A thread woken through a self-pipe by SIGINT or SIGTERM (nothing polls): waits [`GRACE`],
/// then reports and ends the process unless it ended meanwhile.
fn start_watchdog(signals: &[i32]) -> std::io::Result<()> {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let (mut wake, notify) = UnixStream::pair()?;
    for &sig in signals {
        signal_hook::low_level::pipe::register(sig, notify.try_clone()?)?;
    }
    drop(notify);
    std::thread::Builder::new()
        .name("interrupt-watchdog".into())
        .spawn(move || {
            let mut b = [0u8; 1];
            loop {
                match wake.read(&mut b) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                }
                let Some(signal) = requested() else { continue };
                std::thread::sleep(GRACE);
                // A commit, its rollback and the records after it are never cut short: wait
                // them out, then give the process its grace again to end on its own.
                if HOLDS.load(Ordering::SeqCst) > 0 {
                    while HOLDS.load(Ordering::SeqCst) > 0 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    std::thread::sleep(GRACE);
                }
                let report = FORCED.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if let Some(report) = report {
                    // On a thread of its own, waited for briefly: a terminal that does not take
                    // output (stopped with Ctrl-S) must not keep the process from ending.
                    let (done, said) = std::sync::mpsc::channel();
                    std::thread::spawn(move || {
                        report(signal);
                        let _ = done.send(());
                    });
                    let _ = said.recv_timeout(Duration::from_millis(500));
                }
                // `_exit`: no exit-time flushing that could block on that terminal either (the
                // printer writes whole lines, which its line-buffered stdout has flushed).
                signal_hook::low_level::exit(128 + signal);
            }
        })?;
    Ok(())
}

static HOLDS: AtomicUsize = AtomicUsize::new(0);

/// While a `Hold` lives, the watchdog does not end the process: import holds one from its first
/// commit step (or from the start of its rollback) until its audit record is written, so that a
/// forced stop never leaves a store half committed or half rolled back. A second signal still
/// ends the process at once (what that leaves is what SIGKILL leaves).
pub struct Hold(());

/// Holds off the watchdog until the returned guard is dropped.
pub fn hold() -> Hold {
    HOLDS.fetch_add(1, Ordering::SeqCst);
    Hold(())
}

impl Drop for Hold {
    fn drop(&mut self) {
        HOLDS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The error a reader returns once a stop is requested (kind `Other`, so that no read loop
/// retries it as it would `ErrorKind::Interrupted`); see [`is_stop`].
pub fn io_error(signal: i32) -> std::io::Error {
    std::io::Error::other(Error::Interrupted { signal })
}

/// Whether an I/O error is [`io_error`]'s.
pub fn is_stop(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .is_some_and(|e| matches!(e, Error::Interrupted { .. }))
}

/// `Err(io_error)` once a stop was requested: for `Read` implementations.
pub fn check_io() -> std::io::Result<()> {
    match requested() {
        None => Ok(()),
        Some(signal) => Err(io_error(signal)),
    }
}

/// Turns the operational failure of a run that was asked to stop into [`Error::Interrupted`]:
/// whatever a loop reported when the stop cut it short (a read that failed, a download that
/// "timed out"), the cause is the signal. A content rejection (exit 3) or a usage error stays
/// what it is; success passes through.
pub fn classify<T>(r: Result<T>) -> Result<T> {
    match (r, requested()) {
        (Err(e), Some(signal)) if e.exit_code() == crate::error::exit::OPERATIONAL => {
            Err(Error::Interrupted { signal })
        }
        (r, _) => r,
    }
}

/// The signal that asked us to stop, if one did.
pub fn requested() -> Option<i32> {
    match flag().load(Ordering::Relaxed) {
        0 => None,
        s => Some(s as i32),
    }
}

/// `Err(Error::Interrupted)` once a stop was requested.
pub fn check() -> Result<()> {
    match requested() {
        None => Ok(()),
        Some(signal) => Err(Error::Interrupted { signal }),
    }
}

/// The name shells and `kill -l` use for `signal`.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

#[doc(hidden)]
/// Requests a stop as a signal would (tests of the cleanup paths).
pub fn request(signal: i32) {
    flag().store(signal as usize, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    // No test here calls `request`: the flag is process-wide and other tests' loops check it.
    #[test]
    fn a_stop_is_recognised_through_io_errors_and_never_retried_as_eintr() {
        let e = io_error(libc::SIGINT);
        assert!(is_stop(&e));
        assert_ne!(e.kind(), std::io::ErrorKind::Interrupted);
        assert_eq!(e.to_string(), "interrupted by SIGINT");
        assert!(!is_stop(&std::io::Error::other("timed out")));
        assert_eq!(
            Error::Interrupted { signal: 15 }.exit_code(),
            crate::error::exit::SIGTERM
        );
    }
}
