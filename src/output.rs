//! The one place that writes to the terminal: reports on stdout (text, or JSON with `--json`),
//! messages and progress bars on stderr. Progress bars show only when stderr is a terminal and
//! `--quiet` is off.

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::error::Error;
use crate::progress::Progress;

pub struct Printer {
    pub json: bool,
    pub quiet: bool,
}

impl Printer {
    /// Prints a command's report: JSON (`{"ok": true, ...}`) or the text rendering.
    pub fn report<T: Serialize>(&self, report: &T, text: impl FnOnce() -> String) {
        let mut out = io::stdout().lock();
        if self.json {
            let mut v = serde_json::to_value(report).expect("reports serialise");
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("ok".into(), true.into());
            }
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&v).expect("json"));
        } else if !self.quiet {
            let _ = write!(out, "{}", text());
        }
        let _ = out.flush();
    }

    /// Prints an error: always on stderr, and as `{"ok": false, "error": ...}` on stdout with `--json`.
    pub fn error(&self, e: &Error) {
        let mut err = io::stderr().lock();
        let _ = writeln!(err, "error: {e}");
        if let Error::Rejected { problems, .. } = e {
            for p in problems {
                let _ = writeln!(err, "  - {p}");
            }
        }
        if self.json {
            let mut detail = serde_json::json!({ "kind": e.kind(), "message": e.to_string(), "exit_code": e.exit_code() });
            if let Error::Rejected { problems, .. } = e {
                detail["problems"] = serde_json::to_value(problems).expect("json");
            }
            let v = serde_json::json!({ "ok": false, "error": detail });
            let _ = writeln!(
                io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(&v).expect("json")
            );
        }
    }

    /// A message for the operator on stderr (suppressed by `--quiet`).
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            let _ = writeln!(io::stderr().lock(), "{msg}");
        }
    }

    pub fn progress(&self) -> Bars {
        Bars {
            enabled: !self.quiet && io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }
}

/// Progress bars on stderr.
pub struct Bars {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn start(&self, label: &str, total: u64) {
        if !self.enabled {
            return;
        }
        let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = if total > 0 {
            ProgressStyle::with_template(
                "{msg:20} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
        } else {
            ProgressStyle::with_template("{msg:20} {bytes} {binary_bytes_per_sec}")
        };
        pb.set_style(style.expect("valid template").progress_chars("=> "));
        pb.set_message(label.to_string());
        if let Some(old) = self.bar.lock().expect("not poisoned").replace(pb) {
            old.finish_and_clear();
        }
    }
    fn inc(&self, n: u64) {
        if let Some(pb) = self.bar.lock().expect("not poisoned").as_ref() {
            pb.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(pb) = self.bar.lock().expect("not poisoned").take() {
            pb.finish_and_clear();
        }
    }
}

/// Bytes for humans: `1.50 GiB`.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
