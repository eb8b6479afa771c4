//! Every command the README shows is exercised, so the README cannot drift from the CLI.
//!
//! The convention (also at the top of README.md, in a comment):
//! - a block fenced ```` ```sh ```` is **run**: each command (a line, with `\` continuations
//!   joined; comments and blank lines skipped) runs through `sh -c`, in order, in one scratch
//!   directory, and must exit 0. `airlock` is the built binary (first on `PATH`); the scratch
//!   directory holds `models/my-model`, `patches/fix.bin`, `images/hello` (an OCI layout) and
//!   `nightly.toml` from `fixtures/demo`; `AIRLOCK_PASSPHRASE` and `AIRLOCK_STATE` are set,
//!   `HOME` is inside it, and the absolute prefixes `/media/usb`, `/srv` and `/etc/airlock` are
//!   mapped into it (`/etc/airlock/trust.toml`: keys `ci` and `officer`, channel `nightly` needs
//!   both, `"*"` needs `ci`).
//! - a block fenced ```` ```sh no-run ```` needs the network, real media or a placeholder: each
//!   `airlock` command in it is **parsed** against the CLI definition (every flag and value must
//!   exist), not run.
//! - other blocks (`toml`, `text`) are not commands.
//!
//! The examples in every subcommand's `--help` (lines starting with `airlock`) are parsed too.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

use crate::support::*;

/// A fenced block: its info string, first line number (1-based) and its lines.
struct Block {
    info: String,
    line: usize,
    lines: Vec<String>,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, String, Vec<String>)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        let indent = raw.len() - trimmed.len();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some((
                        info.trim().to_string(),
                        i + 2,
                        " ".repeat(indent),
                        Vec::new(),
                    ));
                }
            }
            Some((info, line, pad, lines)) => {
                if trimmed.starts_with("```") {
                    out.push(Block {
                        info: std::mem::take(info),
                        line: *line,
                        lines: std::mem::take(lines),
                    });
                    open = None;
                } else {
                    lines.push(raw.strip_prefix(pad.as_str()).unwrap_or(raw).to_string());
                }
            }
        }
    }
    assert!(open.is_none(), "README.md: a code block is not closed");
    out
}

/// The commands of a block: `\` continuations joined, blank and comment lines skipped; each
/// with the README line it starts on.
fn commands(b: &Block) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, l) in b.lines.iter().enumerate() {
        let t = l.trim();
        if cur.is_none() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        let (start, mut text) = cur.take().unwrap_or((b.line + i, String::new()));
        match t.strip_suffix('\\') {
            Some(head) => {
                text.push_str(head);
                text.push(' ');
                cur = Some((start, text));
            }
            None => {
                text.push_str(t);
                out.push((start, text));
            }
        }
    }
    out
}

/// Shell words of `line`, up to an unquoted comment, pipe, redirect or separator; leading
/// `VAR=value` assignments dropped. Enough for the README's and `--help`'s examples.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            '#' if !in_word => break,
            '|' | '>' | '<' | ';' | '&' => break,
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    let first = out
        .iter()
        .position(|w| !(w.contains('=') && !w.starts_with('-') && w.find('=') > Some(0)))
        .unwrap_or(out.len());
    out.split_off(first)
}

/// Parses `line` (an `airlock` command) against the CLI; the error text if it does not parse.
fn parse_error(line: &str) -> Option<String> {
    use clap::error::ErrorKind;
    let w = words(line);
    if w.first().map(String::as_str) != Some("airlock") {
        return None;
    }
    match airlock::cli::parse_from(&w) {
        Ok(_) => None,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => None,
        Err(e) => Some(e.to_string()),
    }
}

fn readme() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

fn copy_all(from: &Path, to: &Path) {
    if from.is_dir() {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_all(&e.path(), &to.join(e.file_name()));
        }
    } else {
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, to).unwrap();
    }
}

/// The scratch directory the run blocks see (see the module comment).
fn workspace(env: &Env) -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo");
    copy_all(&fixtures.join("tiny-model"), &env.path("models/my-model"));
    copy_all(
        &fixtures.join("patches/raise-max-tokens.patch"),
        &env.path("patches/fix.bin"),
    );
    copy_all(&fixtures.join("hello-image"), &env.path("images/hello"));
    env.write(
        "nightly.toml",
        "channel = \"nightly\"\n\n[[files]]\npath = \"models/my-model\"\n",
    );
    let root = env.path("");
    env.write(
        "etc/airlock/trust.toml",
        format!(
            "[keys.ci]\nfile = \"{0}/ci.key.pub\"\n\n[keys.officer]\nfile = \"{0}/officer.key.pub\"\n\n\
             [channels.nightly]\nsigners = [\"ci\", \"officer\"]\nthreshold = 2\n\n\
             [channels.\"*\"]\nsigners = [\"ci\"]\nthreshold = 1\n",
            root.display()
        ),
    );
    for d in ["media/usb", "srv", "home"] {
        fs::create_dir_all(env.path(d)).unwrap();
    }
    root
}

/// The README's absolute paths, mapped into the scratch directory.
fn mapped(cmd: &str, root: &Path) -> String {
    let r = root.display().to_string();
    let r = r.trim_end_matches('/');
    cmd.replace(" /media/usb", &format!(" {r}/media/usb"))
        .replace(" /srv/", &format!(" {r}/srv/"))
        .replace(" /etc/airlock/", &format!(" {r}/etc/airlock/"))
}

#[test]
fn every_readme_command_runs_or_parses() {
    let text = readme();
    let all = blocks(&text);
    let sh: Vec<&Block> = all
        .iter()
        .filter(|b| b.info.split_whitespace().next() == Some("sh"))
        .collect();
    assert!(
        sh.len() >= 8,
        "README.md: expected its sh blocks, found {}",
        sh.len()
    );
    for b in &sh {
        let kind = b.info.split_whitespace().nth(1);
        assert!(
            kind.is_none() || kind == Some("no-run"),
            "README.md line {}: unknown block marker {:?} (```sh or ```sh no-run)",
            b.line - 1,
            b.info
        );
    }

    // Every airlock command shown, run or not, parses.
    let mut bad = Vec::new();
    let mut parsed = 0;
    for b in &sh {
        for (line, cmd) in commands(b) {
            if let Some(e) = parse_error(&cmd) {
                bad.push(format!("README.md line {line}: {cmd}\n{e}"));
            }
            parsed += 1;
        }
    }
    assert!(
        bad.is_empty(),
        "README commands the CLI refuses:\n{}",
        bad.join("\n")
    );
    assert!(parsed > 20, "only {parsed} commands found");

    // The run blocks, in order, in one scratch directory.
    let env = Env::new();
    let root = workspace(&env);
    let bin_dir = Path::new(BIN).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for b in sh.iter().filter(|b| b.info == "sh") {
        for (line, cmd) in commands(b) {
            let cmd = mapped(&cmd, &root);
            let mut c = Command::new("sh");
            c.arg("-c").arg(&cmd);
            env.isolate(&mut c);
            c.current_dir(&root)
                .stdin(std::process::Stdio::null())
                .env("PATH", &path)
                .env("HOME", env.path("home"))
                .env("AIRLOCK_PASSPHRASE", "readme passphrase")
                .env_remove("HF_HUB_CACHE")
                .env_remove("HF_HOME")
                .env_remove("OLLAMA_MODELS");
            let r = run_cmd(c);
            assert_eq!(
                r.code, 0,
                "README.md line {line}: `{cmd}` failed (exit {})\nstdout:\n{}\nstderr:\n{}",
                r.code, r.stdout, r.stderr
            );
            ran += 1;
        }
    }
    assert!(ran >= 12, "only {ran} README commands ran");
    // What they promise happened.
    assert!(env.path("srv/airlock/my-model/config.json").is_file());
    assert!(env.path("srv/nightly/my-model/config.json").is_file());
    assert!(env.path("srv/images/index.json").is_file());
    assert!(env.path("ci.key.pub").is_file() && env.path("officer.key.pub").is_file());
}

#[test]
fn every_help_example_parses() {
    let mut cli = airlock::cli::Cli::command();
    cli.build();
    let mut bad = Vec::new();
    let mut parsed = 0;
    let mut stack = vec![&cli];
    while let Some(c) = stack.pop() {
        for help in [c.get_after_help(), c.get_after_long_help()]
            .into_iter()
            .flatten()
        {
            for l in help.to_string().lines() {
                let t = l.trim();
                let starts = words(t).first().map(String::as_str) == Some("airlock");
                if !starts {
                    continue;
                }
                if let Some(e) = parse_error(t) {
                    bad.push(format!("airlock {} --help: {t}\n{e}", c.get_name()));
                }
                parsed += 1;
            }
        }
        stack.extend(c.get_subcommands());
    }
    assert!(
        bad.is_empty(),
        "--help examples the CLI refuses:\n{}",
        bad.join("\n")
    );
    assert!(parsed > 20, "only {parsed} examples found");
}

#[test]
fn a_drifted_command_is_caught() {
    // The checker itself: a flag that does not exist, a missing value, a swallowing form.
    assert!(parse_error("airlock verify b --trust ci.key.pub").is_none());
    assert!(parse_error("airlock verify b --trusted ci.key.pub").is_some());
    assert!(parse_error("airlock import b --trust k --hf-cache /srv/hf").is_some());
    assert!(parse_error("AIRLOCK_PASSPHRASE=x airlock keygen --out k # c").is_none());
    assert_eq!(
        words("A=1 airlock pack 'x y' \"z\\\"\" --out b > log # c"),
        ["airlock", "pack", "x y", "z\"", "--out", "b"]
    );
}
