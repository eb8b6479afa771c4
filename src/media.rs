//! Import from one drive (`airlock import --media MOUNTPOINT`): the volumes of a bundle inserted
//! one after another at the same mount point.
//!
//! The import admits the volume found at the mount point (any volume of the bundle), then reads
//! the chunks it needs in order. Before it opens a chunk (the staging pass, and the few small
//! blobs planning reads) it asks its [`ChunkAccess`] for it: [`Media`] knows which volume is at
//! the mount point; for a chunk of another volume it prompts on the terminal ("Insert volume 2
//! of 4 (bundle …, channel …, sequence …) at /media/usb and press Enter"), then verifies what
//! was inserted (signatures, policy, manifest, its `SHA256SUMS`, `VOLUME` label and file set)
//! before any chunk of it is read: a volume of another bundle or another volume of this one is
//! named and asked for again. Ctrl-C (SIGINT) or SIGTERM at the prompt stops the import: what
//! was staged so far is kept, invisible, for the next run ([`ChunkAccess::stopped_waiting`]).
//!
//! A run that cannot prompt (no terminal on stdin and stderr, or `--json`) never waits: the
//! import checks before reading any chunk that every volume it needs is there.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::bundle::{self, VerifiedBundle, VerifyOptions};
use crate::error::{Error, Result};
use crate::format::text::escape;
use crate::format::Manifest;
use crate::interrupt;
use crate::output::Printer;
use crate::policy::TrustPolicy;

/// What the staging pass consults before it opens a chunk.
pub trait ChunkAccess: Send + Sync {
    /// Makes chunk `index` of `bundle` readable where [`VerifiedBundle::chunk_path`] looks for
    /// it (e.g. asks for its volume to be inserted, and verifies it).
    fn before_chunk(&self, bundle: &VerifiedBundle, index: u32) -> Result<()>;
    /// Whether chunk `index` can be opened now, without waiting for the operator (a progress
    /// bar is put away before a prompt).
    fn ready(&self, _bundle: &VerifiedBundle, _index: u32) -> bool {
        true
    }
    /// A line for the operator (stderr, through the printer).
    fn note(&self, text: &str);
    /// Whether the run was stopped (SIGINT/SIGTERM) while it waited for a volume: then what it
    /// staged is kept for the next run rather than removed.
    fn stopped_waiting(&self) -> bool;
}

/// "volume 2 of 4 (bundle ID, channel C, sequence S)", its strings escaped.
pub fn describe(m: &Manifest, n: u32) -> String {
    format!(
        "volume {n} of {} (bundle {}, channel {}, sequence {})",
        m.volume_count(),
        escape(&m.bundle_id),
        escape(&m.channel),
        m.sequence
    )
}

/// One drive at a mount point, volumes inserted one after another.
pub struct Media {
    mount: PathBuf,
    policy: TrustPolicy,
    now: SystemTime,
    printer: Printer,
    /// Whether it may prompt (stdin and stderr are terminals, not `--json`).
    interactive: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The volume verified at the mount point now.
    current: Option<u32>,
    stopped: bool,
}

impl Media {
    /// `interactive`: whether it may prompt ([`Media::can_prompt`]).
    pub fn new(
        mount: &Path,
        policy: TrustPolicy,
        opts: &VerifyOptions,
        printer: Printer,
        interactive: bool,
    ) -> Media {
        Media {
            mount: mount.to_path_buf(),
            policy,
            now: opts.now,
            printer,
            interactive,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether this process may prompt: stdin and stderr are terminals and the output is not
    /// JSON.
    pub fn can_prompt(printer: &Printer) -> bool {
        // SAFETY: isatty only inspects the descriptor.
        let stderr_tty = unsafe { libc::isatty(2) } == 1;
        use std::io::IsTerminal;
        !printer.json && std::io::stdin().is_terminal() && stderr_tty
    }

    pub fn interactive(&self) -> bool {
        self.interactive
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// Records the volume admitted at the mount point.
    pub fn admitted(&self, volume: u32) {
        self.state.lock().expect("not poisoned").current = Some(volume);
    }

    /// Asks for volume `n` until it is verified at the mount point.
    fn ask_for(&self, bundle: &VerifiedBundle, n: u32) -> Result<()> {
        let m = bundle.manifest();
        let at = escape(&self.mount.display().to_string()).to_string();
        if !self.interactive {
            return Err(Error::Refused(format!(
                "{} is needed but not at {at}, and this run cannot prompt for it (no terminal, or --json)",
                describe(m, n)
            )));
        }
        let mut why = String::new();
        loop {
            self.printer.note(&format!(
                "{why}Insert {} at {at} and press Enter",
                describe(m, n)
            ));
            if let Err(e) = wait_for_enter() {
                if matches!(e, Error::Interrupted { .. }) {
                    self.state.lock().expect("not poisoned").stopped = true;
                    self.printer.note(
                        "stopped while waiting for a volume: the blobs staged so far are kept \
                         (invisible) for the next import, which does not read their volumes again",
                    );
                }
                return Err(e);
            }
            let opts = VerifyOptions { now: self.now };
            let found = bundle::verify::verify_manifest(
                &self.mount,
                &self.policy,
                &opts,
                &crate::progress::Silent,
            );
            why = match found {
                Ok(vb) if vb.manifest_digest() != bundle.manifest_digest() => format!(
                    "{at} holds {}, a volume of another bundle; ",
                    describe(vb.manifest(), vb.volume().unwrap_or(1))
                ),
                Ok(vb) if vb.volume() != Some(n) => format!(
                    "this is volume {}; volume {n} is needed. ",
                    vb.volume().unwrap_or(1)
                ),
                Ok(_) => {
                    self.state.lock().expect("not poisoned").current = Some(n);
                    self.printer
                        .note(&format!("volume {n} verified at {at}; reading it"));
                    return Ok(());
                }
                Err(Error::Interrupted { signal }) => return Err(Error::Interrupted { signal }),
                Err(Error::Rejected { problems, .. }) => {
                    let named: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                    format!("{at} does not verify ({}); ", named.join("; "))
                }
                Err(e) => format!("{e}; "),
            };
        }
    }
}

impl ChunkAccess for Media {
    fn ready(&self, bundle: &VerifiedBundle, index: u32) -> bool {
        let m = bundle.manifest();
        !m.is_multi_volume()
            || self.state.lock().expect("not poisoned").current == Some(m.volume_of(index as usize))
    }
    fn before_chunk(&self, bundle: &VerifiedBundle, index: u32) -> Result<()> {
        let m = bundle.manifest();
        if !m.is_multi_volume() {
            return Ok(());
        }
        let n = m.volume_of(index as usize);
        if self.state.lock().expect("not poisoned").current == Some(n) {
            return Ok(());
        }
        self.ask_for(bundle, n)
    }
    fn note(&self, text: &str) {
        self.printer.note(text);
    }
    fn stopped_waiting(&self) -> bool {
        self.state.lock().expect("not poisoned").stopped
    }
}

/// The volumes given as directories: every chunk is where it is; notes go to the printer.
pub struct Given(pub Printer);

impl ChunkAccess for Given {
    fn before_chunk(&self, _bundle: &VerifiedBundle, _index: u32) -> Result<()> {
        Ok(())
    }
    fn note(&self, text: &str) {
        self.0.note(text);
    }
    fn stopped_waiting(&self) -> bool {
        false
    }
}

/// Waits for a line on stdin (Enter), checking for a stop request meanwhile (the read is
/// polled, so that Ctrl-C, turned into SIGINT by the terminal, ends the wait at once).
fn wait_for_enter() -> Result<()> {
    use std::io::Read;
    let mut stdin = std::io::stdin().lock();
    loop {
        interrupt::check()?;
        let mut fds = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut fds, 1, 100) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::Other(format!("waiting for Enter: {e}")));
        }
        if rc == 0 {
            continue;
        }
        let mut b = [0u8; 1];
        match stdin.read(&mut b) {
            Ok(0) => {
                return Err(Error::Refused(
                    "the terminal closed while waiting for a volume".into(),
                ))
            }
            Ok(_) if b[0] == b'\n' || b[0] == b'\r' => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Other(format!("waiting for Enter: {e}"))),
        }
    }
}

impl<T: ChunkAccess> ChunkAccess for std::sync::Arc<T> {
    fn ready(&self, bundle: &VerifiedBundle, index: u32) -> bool {
        (**self).ready(bundle, index)
    }
    fn before_chunk(&self, bundle: &VerifiedBundle, index: u32) -> Result<()> {
        (**self).before_chunk(bundle, index)
    }
    fn note(&self, text: &str) {
        (**self).note(text)
    }
    fn stopped_waiting(&self) -> bool {
        (**self).stopped_waiting()
    }
}
