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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

use crate::error::{Error, Result};

static SIGNAL: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicUsize> {
    SIGNAL.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// Routes SIGINT and SIGTERM to the stop flag. Without this (library use, tests) the signals keep
/// their default action.
pub fn install() -> std::io::Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.set(()).is_err() {
        return Ok(());
    }
    let seen = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it runs before `seen` is set by this same delivery: only a
        // second signal finds it set.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&seen))?;
        signal_hook::flag::register_usize(sig, Arc::clone(flag()), sig as usize)?;
        signal_hook::flag::register(sig, Arc::clone(&seen))?;
    }
    Ok(())
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
