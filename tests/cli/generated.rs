//! Generated files that are committed: JSON schemas, shell completions and man pages. A test
//! fails when a committed copy is stale; `AIRLOCK_BLESS=1 cargo test` rewrites them.

use std::fs;
use std::path::Path;

use crate::support::*;

fn check(path: &Path, fresh: &str) {
    if std::env::var_os("AIRLOCK_BLESS").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, fresh).unwrap();
        return;
    }
    let committed = fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: regenerate with AIRLOCK_BLESS=1 cargo test --test cli generated",
        path.display()
    );
}

#[test]
fn schemas_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for (name, text) in airlock::schema::all() {
        check(&root.join(name), &text);
    }
}

#[test]
fn completions_are_current() {
    let env = Env::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    for (shell, file) in [
        ("bash", "airlock.bash"),
        ("zsh", "_airlock"),
        ("fish", "airlock.fish"),
    ] {
        let out = env.run(&["completions", shell]);
        out.ok();
        check(&root.join(file), &out.stdout);
    }
}

/// `man/airlock.1` and one page per subcommand, nested ones included (`airlock-audit-verify.1`),
/// rendered by clap_mangen from the clap definitions. The directory holds nothing else: a page
/// left over from a removed command is stale too.
#[test]
fn man_pages_are_current() {
    use clap::CommandFactory;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let pages = man_pages(airlock::cli::Cli::command());
    let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["airlock.1", "airlock-import.1", "airlock-audit-verify.1"] {
        assert!(names.contains(&want), "no {want} among {names:?}");
    }
    for (name, text) in &pages {
        check(&root.join(name), text);
    }
    let extra: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| !names.contains(&f.as_str()))
        .collect();
    if std::env::var_os("AIRLOCK_BLESS").is_some() {
        for f in &extra {
            fs::remove_file(root.join(f)).unwrap();
        }
        return;
    }
    assert!(
        extra.is_empty(),
        "man/ holds pages of no command: {extra:?}: regenerate with AIRLOCK_BLESS=1 cargo test --test cli generated"
    );
}

/// Every page as (file name, roff text): the command, then its subcommands depth first. The
/// footer names the package and, where a date would go, its version: no build date, so the
/// same definitions give the same bytes (and an empty date would shift the `.TH` fields).
fn man_pages(cmd: clap::Command) -> Vec<(String, String)> {
    fn walk(cmd: clap::Command, out: &mut Vec<(String, String)>) {
        let man = clap_mangen::Man::new(cmd.clone())
            .date(env!("CARGO_PKG_VERSION"))
            .source("airlock")
            .manual("airlock manual");
        let mut text = Vec::new();
        man.render(&mut text).unwrap();
        out.push((man.get_filename(), String::from_utf8(text).unwrap()));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), out);
        }
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, &mut out);
    out
}

#[test]
fn every_command_has_help_with_examples() {
    let env = Env::new();
    for cmd in [
        "keygen",
        "pack",
        "inspect",
        "verify",
        "import",
        "completions",
    ] {
        env.run(&[cmd, "--help"]).ok().stdout_has("Examples:");
    }
    env.run(&["--help"]).ok().stdout_has("Exit codes:");
    env.run(&["frobnicate"]).code(2);
}
