//! The one place that writes to the terminal: reports on stdout (text, or JSON with `--json`),
//! messages and progress bars on stderr. Progress bars show only when stderr is a terminal and
//! `--quiet` is off.
//!
//! Terminal safety: every string that came from outside (media, a bundle, a registry, a hub, a
//! policy) is embedded through [`escape`] where a report is assembled, and everything this
//! module writes passes through `format::text` as a last line of defence: report text through
//! [`sanitize_lines`], errors, problems and notes as single lines (a newline shown as `\n`), JSON
//! with every remaining control or format character as a `\u` escape. So no byte sequence from
//! outside can move the cursor, erase, recolour or reorder what the officer reads, whatever code
//! assembled the text. Nothing else in the crate writes to stdout or stderr (a test enforces it).

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, Serializer};

use crate::error::{Error, ErrorKind};
pub use crate::format::text::escape;
use crate::format::text::{is_unsafe_char, sanitize_lines};
use crate::problem::Problem;
use crate::progress::Progress;

/// The version of the `--json` contract (README §JSON output): every document printed carries
/// it as `schema_version`. Fields are added without a bump; a field renamed, removed or changed
/// in meaning bumps it.
pub const SCHEMA_VERSION: u32 = 1;

/// `schema_version`: always [`SCHEMA_VERSION`] (the schema says so with `const`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Version;

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(SCHEMA_VERSION)
    }
}

impl JsonSchema for Version {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SchemaVersion".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The version of the --json contract: fields are added without a bump; a field renamed, removed or changed in meaning bumps it.",
            "type": "integer",
            "const": SCHEMA_VERSION
        })
    }
}

/// `ok`: `true` on a success document, `false` on the failure document.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flag<const B: bool>;

impl<const B: bool> Serialize for Flag<B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(B)
    }
}

impl<const B: bool> JsonSchema for Flag<B> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        if B {
            "True".into()
        } else {
            "False".into()
        }
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "boolean", "const": B })
    }
}

/// Every success document of `--json`: the version, `ok: true`, and the command's report
/// flattened in. The printer prints exactly this type and `schemas/report-*.schema.json` are
/// generated from it, so the two cannot disagree.
#[derive(Serialize, JsonSchema)]
pub struct Success<T> {
    pub schema_version: Version,
    pub ok: Flag<true>,
    #[serde(flatten)]
    pub report: T,
}

/// The failure document of `--json` (`schemas/error.schema.json`), printed on stdout for every
/// error, usage errors from the command line included.
#[derive(Serialize, JsonSchema)]
pub struct Failure<'a> {
    pub schema_version: Version,
    pub ok: Flag<false>,
    pub error: ErrorReport<'a>,
}

/// What failed.
#[derive(Serialize, JsonSchema)]
pub struct ErrorReport<'a> {
    pub kind: ErrorKind,
    /// The message shown on stderr (there escaped to one line).
    pub message: String,
    /// The process's exit code (README §Exit codes).
    pub exit_code: i32,
    /// For `kind: rejected`: every problem found, each with its stable `code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<&'a [Problem]>,
    /// For `kind: rejected` from `verify` or `sign` of several volumes: every directory given,
    /// in the order given, with the volume it is and its own problems (`problems` has them all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<DirReport>>,
}

/// One directory given as a volume, in a rejection.
#[derive(Serialize, JsonSchema)]
pub struct DirReport {
    /// The directory, as given (or found under the parent given).
    pub dir: String,
    /// The volume it is (1-based), when its signatures verified; else null.
    pub volume: Option<u32>,
    /// What is wrong with it (empty: it checked out).
    pub problems: Vec<Problem>,
    /// It could not be checked for another reason than its content (an I/O error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct Printer {
    pub json: bool,
    pub quiet: bool,
}

impl Printer {
    /// Prints a command's report: JSON ([`Success`]: `{"schema_version": 1, "ok": true, ...}`)
    /// or the text rendering.
    pub fn report<T: Serialize>(&self, report: &T, text: impl FnOnce() -> String) {
        let mut out = io::stdout().lock();
        if self.json {
            let doc = Success {
                schema_version: Version,
                ok: Flag,
                report,
            };
            let v = serde_json::to_value(&doc).expect("reports serialise");
            let _ = writeln!(out, "{}", json_text(&v));
        } else if !self.quiet {
            let _ = write!(out, "{}", sanitize_lines(&text()));
        }
        let _ = out.flush();
    }

    /// As [`Printer::report`], for a text report written piece by piece (`inspect --files` over
    /// a million files is never one String): `text` hands each piece (whole lines) to the
    /// writer it is given, and each passes the same [`sanitize_lines`] as report text.
    pub fn report_stream<T: Serialize>(&self, report: &T, text: impl FnOnce(&mut dyn FnMut(&str))) {
        if self.json || self.quiet {
            return self.report(report, String::new);
        }
        let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
        text(&mut |piece| {
            let _ = write!(out, "{}", sanitize_lines(piece));
        });
        let _ = out.flush();
    }

    /// Prints an error: always on stderr, and as `{"ok": false, "error": ...}` on stdout with `--json`.
    ///
    /// [`Error::Incomplete`] is not a failure document: `verify` printed its report (with
    /// `complete: false`) already, so the message goes to stderr alone, as a note.
    pub fn error(&self, e: &Error) {
        let mut err = io::stderr().lock();
        if let Error::Incomplete(msg) = e {
            if !self.quiet {
                let _ = writeln!(err, "{}", one_line(msg));
            }
            return;
        }
        let _ = writeln!(err, "error: {}", one_line(&e.to_string()));
        if let Error::Rejected { problems, .. } = e {
            for p in problems {
                let _ = writeln!(err, "  - {}", one_line(&p.to_string()));
            }
        }
        let mut flat = None;
        let mut volumes = None;
        if let Error::VolumesRejected { dirs } = e {
            for d in dirs {
                for p in &d.problems {
                    let _ = writeln!(err, "  - {}: {}", d.label(), one_line(&p.to_string()));
                }
                if let Some(why) = &d.error {
                    let _ = writeln!(err, "  - {}: {}", d.label(), one_line(why));
                }
            }
            flat = Some(crate::error::all_problems(dirs));
            volumes = Some(
                dirs.iter()
                    .map(|d| DirReport {
                        dir: d.dir.display().to_string(),
                        volume: d.volume,
                        problems: d.problems.clone(),
                        error: d.error.clone(),
                    })
                    .collect(),
            );
        }
        if self.json {
            self.failure(ErrorReport {
                kind: e.error_kind(),
                message: e.to_string(),
                exit_code: e.exit_code(),
                problems: match e {
                    Error::Rejected { problems, .. } => Some(problems),
                    _ => flat.as_deref(),
                },
                volumes,
            });
        }
    }

    /// Prints a command-line error from clap as clap does (on stderr), and with `--json` the
    /// [`Failure`] document (`kind: usage`) on stdout too. Returns the exit code.
    pub fn usage_error(&self, e: &clap::Error) -> i32 {
        let _ = e.print();
        if self.json {
            let text = e.render().to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let message = first.strip_prefix("error: ").unwrap_or(first).to_string();
            self.failure(ErrorReport {
                kind: ErrorKind::Usage,
                message,
                exit_code: e.exit_code(),
                problems: None,
                volumes: None,
            });
        }
        e.exit_code()
    }

    fn failure(&self, error: ErrorReport<'_>) {
        let doc = Failure {
            schema_version: Version,
            ok: Flag,
            error,
        };
        let v = serde_json::to_value(&doc).expect("errors serialise");
        let _ = writeln!(io::stdout().lock(), "{}", json_text(&v));
    }

    /// A message for the operator on stderr (suppressed by `--quiet`).
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            let _ = writeln!(io::stderr().lock(), "{}", sanitize_lines(msg));
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
        pb.set_message(escape(label).to_string());
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

/// A path for a message or report, escaped as [`escape`] does (a bundle's directory and the files
/// under it are named by the media).
pub fn escape_path(p: &std::path::Path) -> String {
    escape(&p.display().to_string()).to_string()
}

/// One line of a message: every control or format character escaped, the newline too (`\n`), so
/// an error or problem can never render as more than its own line.
fn one_line(s: &str) -> String {
    let s = sanitize_lines(s);
    if s.contains('\n') {
        s.replace('\n', "\\n")
    } else {
        s.into_owned()
    }
}

/// Pretty JSON in which no control or Unicode format character appears raw: serde_json already
/// escapes C0 controls inside strings; DEL, C1 controls and format characters (bidi overrides,
/// zero-width characters) become `\uXXXX` escapes too, so the document means the same and shows
/// the same on every terminal. (Outside strings, pretty JSON holds only spaces and newlines.)
fn json_text(v: &serde_json::Value) -> String {
    let s = serde_json::to_string_pretty(v).expect("reports serialise");
    if !s.chars().any(|c| c != '\n' && is_unsafe_char(c)) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c != '\n' && is_unsafe_char(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The width of the terminal on stdout, or `None` when stdout is not a terminal (a pipe, a
/// file): reports for programs are never wrapped (`crate::table::terminal_width`).
pub fn terminal_width() -> Option<usize> {
    if !io::stdout().is_terminal() {
        return None;
    }
    terminal_size::terminal_size().map(|(w, _)| w.0 as usize)
}

/// Bytes for humans: `1.50 GiB`.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_on_one_line() {
        assert_eq!(one_line("a\nb\r\x1b[1A\\c"), "a\\nb\\r\\e[1A\\c");
    }

    #[test]
    fn json_escapes_format_characters_and_keeps_its_meaning() {
        let v = serde_json::json!({"name": "a\u{202e}b\u{200b}c\u{7f}\u{9b}\x1b\u{e0041}", "n": 1});
        let text = json_text(&v);
        assert!(
            crate::format::text::find_unsafe(&text.replace('\n', "")).is_none(),
            "{text}"
        );
        assert!(text.contains("a\\u202eb\\u200bc"), "{text}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
    }
}
