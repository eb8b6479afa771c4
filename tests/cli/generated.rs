//! Generated files that are committed: JSON schemas and shell completions. A test fails when a
//! committed copy is stale; `AIRLOCK_BLESS=1 cargo test` rewrites them.

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
