//! The command line's rules: no flag swallows an argument, `--trust`/`--policy` are one group,
//! the usage line shows what was typed, verify and import name the state they used, one
//! exit-code rule for a path that is not a bundle, and `sign` checks before it asks.

use std::fs;

use clap::CommandFactory;

use crate::support::*;

/// The bundle-taking commands, each with what it needs besides the bundle and the trust.
const BUNDLE_COMMANDS: [(&str, &[&str]); 4] = [
    ("inspect", &[]),
    ("verify", &[]),
    ("import", &["--files", "dest"]),
    ("sign", &["--key", "officer"]),
];

fn bundle_command(cmd: &str, extra: &[&str], dir: &str, trust: &[&str]) -> Vec<String> {
    let mut v = vec![cmd.to_string(), dir.to_string()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v.extend(trust.iter().map(|s| s.to_string()));
    v
}

fn run_v(env: &Env, args: &[String]) -> Run {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = env.command(&a);
    // No store outside the workspace, ever.
    c.env("HF_HUB_CACHE", env.path("hf-cache"))
        .env("OLLAMA_MODELS", env.path("ollama"));
    run_cmd(c)
}

#[test]
fn every_optional_value_flag_takes_its_value_only_with_equals() {
    let mut cli = airlock::cli::Cli::command();
    cli.build();
    let mut found = Vec::new();
    let mut stack = vec![&cli];
    while let Some(c) = stack.pop() {
        for a in c.get_arguments() {
            let optional = a.get_num_args().is_some_and(|n| n.min_values() == 0)
                && a.get_action().takes_values();
            if optional {
                assert!(
                    a.is_require_equals_set(),
                    "{} --{}: an optional value must require `=`",
                    c.get_name(),
                    a.get_long().unwrap_or("?")
                );
                found.push(format!("--{}", a.get_long().unwrap()));
            }
        }
        stack.extend(c.get_subcommands());
    }
    found.sort();
    found.dedup();
    let mut known = airlock::cli::OPTIONAL_VALUE_FLAGS.to_vec();
    known.sort();
    assert_eq!(found, known);
}

#[test]
fn hf_cache_and_ollama_models_never_swallow_the_bundle() {
    let env = Env::new();
    let (_, _) = env.sample_bundle();
    let before = contents(&env.path("b"));
    // The bundle after a bare --hf-cache is the bundle, not the cache directory.
    for flag in airlock::cli::OPTIONAL_VALUE_FLAGS {
        let args: Vec<String> = ["import", "--files", "fx", flag, "b", "--trust", "k.pub"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let r = run_v(&env, &args);
        r.ok().stdout_has("imported b");
        assert_eq!(
            contents(&env.path("b")),
            before,
            "{flag} wrote into the bundle"
        );
        assert!(env.path("fx/src/config.json").is_file());
    }
    assert!(env.path("hf-cache").is_dir(), "the default cache was used");
}

#[test]
fn a_value_after_a_space_is_explained() {
    let env = Env::new();
    env.sample_bundle();
    for flag in airlock::cli::OPTIONAL_VALUE_FLAGS {
        // After the bundle: the word is left over.
        let args: Vec<String> = ["import", "b", "--trust", "k.pub", flag, "mystore"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        run_v(&env, &args)
            .code(2)
            .stderr_has(&format!("{flag} takes a directory only as {flag}=DIR"))
            .stderr_has(&format!("write {flag}=mystore"))
            .stderr_has("Usage: airlock import");
        // Before it: the word is taken as the bundle, and the bundle is left over.
        let args: Vec<String> = ["import", flag, "mystore", "b", "--trust", "k.pub"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        run_v(&env, &args)
            .code(2)
            .stderr_has("unexpected argument 'b'")
            .stderr_has(&format!("write {flag}=mystore"));
        assert!(!env.path("mystore").exists());
    }
    // An unknown flag is reported as such, not as a value the bare flag did not take.
    let r = run_v(
        &env,
        &["import", "--hf-cache", "b", "--files", "d", "--bogus"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    );
    r.code(2).stderr_has("unexpected argument '--bogus'");
    assert!(!r.stderr.contains("takes a directory only"), "{}", r.stderr);
    // With `=`, the directory is the flag's.
    let args: Vec<String> = [
        "import",
        "b",
        "--trust",
        "k.pub",
        "--files",
        "d",
        "--hf-cache=mystore",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run_v(&env, &args).ok();
    assert!(env.path("mystore").is_dir());
}

#[test]
fn trust_and_policy_are_one_group_in_every_command() {
    let cli = airlock::cli::Cli::command();
    let help = |cmd: &str, id: &str| {
        let c = cli.find_subcommand(cmd).unwrap();
        let a = c.get_arguments().find(|a| a.get_id() == id).unwrap();
        (
            a.get_long().map(str::to_string),
            a.get_help().map(|h| h.to_string()),
            a.get_value_names().map(|v| v.to_vec()),
        )
    };
    for id in ["trust", "policy"] {
        let first = help("inspect", id);
        for (cmd, _) in BUNDLE_COMMANDS {
            assert_eq!(help(cmd, id), first, "{cmd} --{id} differs from inspect's");
        }
    }
    let env = Env::new();
    env.sample_bundle();
    env.keygen("officer");
    env.write("p.toml", "");
    for (cmd, extra) in BUNDLE_COMMANDS {
        run_v(
            &env,
            &bundle_command(cmd, extra, "b", &["--trust", "k.pub", "--policy", "p.toml"]),
        )
        .code(2)
        .stderr_has("cannot be used with");
        // --trust is repeatable everywhere, and any one key suffices.
        let r = run_v(
            &env,
            &bundle_command(
                cmd,
                extra,
                "b",
                &["--trust", "officer.pub", "--trust", "k.pub"],
            ),
        );
        r.ok();
    }
}

#[test]
fn the_usage_line_shows_what_was_typed_not_the_environment() {
    let env = Env::new();
    for (cmd, var) in [
        ("verify", "AIRLOCK_STATE"),
        ("verify", "AIRLOCK_AUDIT_LOG"),
        ("import", "AIRLOCK_STATE"),
        ("import", "AIRLOCK_CREDS"),
    ] {
        let mut c = env.command(&[cmd]);
        c.env(var, "x:y");
        let r = run_cmd(c);
        r.code(2).stderr_has(&format!("Usage: airlock {cmd} "));
        let usage = r.stderr.lines().find(|l| l.starts_with("Usage:")).unwrap();
        for flag in ["--state", "--audit-log", "--creds"] {
            assert!(!usage.contains(flag), "{var}: {usage}");
        }
    }
    // The environment still counts.
    env.sample_bundle();
    let mut c = env.command(&["verify", "b", "--trust", "k.pub", "--json"]);
    c.env("AIRLOCK_STATE", env.path("elsewhere"));
    let v = run_cmd(c).ok().json();
    assert_eq!(v["state_dir"], env.path("elsewhere").display().to_string());
    assert_eq!(v["state_dir_chosen"], "environment");
}

#[test]
fn verify_and_import_name_the_state_directory_and_audit_log() {
    let env = Env::new();
    env.sample_bundle();
    let state = env.state_dir().display().to_string();
    let log = env.audit_log().display().to_string();
    // The connected side: no state directory, so verify writes no audit record, and says so.
    let r = env.run(&["verify", "b", "--trust", "k.pub"]);
    r.ok()
        .stdout_has(&format!("state     {state} (AIRLOCK_STATE)\n"))
        .stdout_has("audit     none written: no audit log is kept here");
    let v = env
        .run(&["verify", "b", "--trust", "k.pub", "--json"])
        .json();
    assert_eq!(v["state_dir"], state);
    assert_eq!(v["state_dir_chosen"], "environment");
    assert!(v["audit_log"].is_null(), "{v}");
    assert!(!env.state_dir().exists());

    // A dry run records nothing.
    let v = env
        .run(&[
            "import",
            "b",
            "--trust",
            "k.pub",
            "--files",
            "d",
            "--dry-run",
            "--json",
        ])
        .json();
    assert_eq!(v["state_dir"], state);
    assert!(v["audit_log"].is_null(), "{v}");
    env.run(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--files",
        "d",
        "--dry-run",
    ])
    .ok()
    .stdout_has(&format!("state     {state} (AIRLOCK_STATE)\n"))
    .stdout_has("audit     none written: dry run, nothing recorded");

    // An import: both named, in text and JSON.
    env.run(&["import", "b", "--trust", "k.pub", "--files", "d"])
        .ok()
        .stdout_has(&format!("state     {state} (AIRLOCK_STATE)\n"))
        .stdout_has(&format!("audit     {log} (default: STATE/audit.jsonl)\n"));
    let v = env
        .run(&["import", "b", "--trust", "k.pub", "--files", "d", "--json"])
        .json();
    assert_eq!(v["state_dir"], state);
    assert_eq!(v["audit_log"], log);
    // Now the enclave keeps a log: verify appends to it, and names it.
    let v = env
        .run(&["verify", "b", "--trust", "k.pub", "--json"])
        .json();
    assert_eq!(v["audit_log"], log);

    // --state and --audit-log given: named as such.
    let other = env.path("st2").display().to_string();
    let other_log = env.path("log2.jsonl").display().to_string();
    let r = env.run(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--files",
        "d",
        "--state",
        &other,
        "--audit-log",
        &other_log,
    ]);
    r.ok()
        .stdout_has(&format!("state     {other} (--state)\n"))
        .stdout_has(&format!("audit     {other_log} (--audit-log)\n"));

    // The default, chosen silently before: named, with how to change it.
    let mut c = env.command(&["verify", "b", "--trust", "k.pub"]);
    c.env_remove("AIRLOCK_STATE")
        .env("XDG_STATE_HOME", env.path("xdg"));
    let xdg_state = env.path("xdg/airlock").display().to_string();
    run_cmd(c).ok().stdout_has(&format!(
        "state     {xdg_state} (the default; --state DIR or AIRLOCK_STATE to change)\n"
    ));
    let mut c = env.command(&["verify", "b", "--trust", "k.pub", "--json"]);
    c.env_remove("AIRLOCK_STATE")
        .env("XDG_STATE_HOME", env.path("xdg"));
    let v = run_cmd(c).ok().json();
    assert_eq!(v["state_dir_chosen"], "default");
    assert_eq!(v["state_dir"], xdg_state);
}

/// Every way of pointing at something that is not a bundle: (path, what the message says).
fn not_bundles(env: &Env) -> Vec<(&'static str, &'static str)> {
    fs::create_dir_all(env.path("empty")).unwrap();
    env.write("plain.txt", "x");
    vec![
        (
            "nope",
            "nope: no such file or directory; expected a bundle directory",
        ),
        (
            "plain.txt/b",
            "plain.txt/b: a path through a file, not a directory",
        ),
        (
            "plain.txt",
            "plain.txt is a regular file, not a bundle directory",
        ),
        (
            "b/manifest.json",
            "b/manifest.json is a regular file, not a bundle directory; expected a bundle \
             directory (holding manifest.json, as airlock pack writes it); did you mean the \
             bundle directory b?",
        ),
        (
            "b/chunks",
            "b/chunks is not a bundle directory: it holds no manifest.json; expected a bundle \
             directory (holding manifest.json, as airlock pack writes it); did you mean the \
             bundle directory b?",
        ),
        (
            "b/chunks/00000000.tar",
            "b/chunks/00000000.tar is a regular file, not a bundle directory",
        ),
        (
            "empty",
            "empty is not a bundle directory: it holds no manifest.json",
        ),
    ]
}

#[test]
fn not_a_bundle_is_a_usage_error_in_every_command() {
    let env = Env::new();
    env.sample_bundle();
    env.keygen("officer");
    let cases = not_bundles(&env);
    for (cmd, extra) in BUNDLE_COMMANDS {
        let trusts: &[&[&str]] = if cmd == "inspect" {
            &[&[], &["--trust", "k.pub"]]
        } else {
            &[&["--trust", "k.pub"]]
        };
        for trust in trusts {
            for (path, says) in &cases {
                let args = bundle_command(cmd, extra, path, trust);
                let r = run_v(&env, &args);
                r.code(2).stderr_has(says);
                // ... in --json too, with the usage kind.
                let mut args = args.clone();
                args.push("--json".into());
                let v = run_v(&env, &args).json();
                assert_eq!(v["error"]["exit_code"], 2, "{args:?}: {v}");
            }
        }
    }
    // Not audited: a usage error decides nothing about a bundle.
    assert!(!env.audit_log().exists());
    assert!(!env.path("dest").exists());
}

#[test]
fn a_damaged_bundle_is_a_rejection_in_every_command() {
    let env = Env::new();
    env.sample_bundle();
    env.keygen("officer");
    // A bundle's files without its manifest (a pack killed before it wrote it): damaged.
    copy_all(&env.path("b"), &env.path("nm"));
    fs::remove_file(env.path("nm/manifest.json")).unwrap();
    // A manifest its signature does not cover: damaged.
    copy_all(&env.path("b"), &env.path("edited"));
    let m = fs::read_to_string(env.path("edited/manifest.json")).unwrap();
    fs::write(
        env.path("edited/manifest.json"),
        m.replacen("\"default\"", "\"defaulu\"", 1),
    )
    .unwrap();
    for (cmd, extra) in BUNDLE_COMMANDS {
        let trust = ["--trust", "k.pub"];
        run_v(&env, &bundle_command(cmd, extra, "nm", &trust))
            .code(3)
            .stderr_has("missing manifest");
        run_v(&env, &bundle_command(cmd, extra, "edited", &trust)).code(3);
    }
    // Without trust, inspect cannot tell an edit, but a missing manifest is still damage.
    run_v(&env, &bundle_command("inspect", &[], "nm", &[]))
        .code(3)
        .stderr_has("missing manifest");
    // The real bundle passes all four.
    for (cmd, extra) in BUNDLE_COMMANDS {
        run_v(
            &env,
            &bundle_command(cmd, extra, "b", &["--trust", "k.pub"]),
        )
        .ok();
    }
}

fn copy_all(from: &std::path::Path, to: &std::path::Path) {
    if from.is_dir() {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_all(&e.path(), &to.join(e.file_name()));
        }
    } else {
        fs::copy(from, to).unwrap();
    }
}

#[test]
fn sign_checks_everything_before_it_asks_for_a_passphrase() {
    let env = Env::new();
    env.sample_bundle();
    // An encrypted key: loading it would need a passphrase (none in the environment, stdin is
    // not a terminal, so asking would fail with "set AIRLOCK_PASSPHRASE").
    let mut c = env.command(&["keygen", "--out", "enc"]);
    c.env("AIRLOCK_PASSPHRASE", "correct horse");
    run_cmd(c).ok();
    let no_prompt = |r: &Run| {
        assert!(
            !r.stderr.to_lowercase().contains("passphrase"),
            "asked for a passphrase first:\n{}",
            r.stderr
        );
    };
    // No trust: a usage error, before any passphrase.
    let r = env.run(&["sign", "b", "--key", "enc"]);
    r.code(2).stderr_has("no trust given");
    no_prompt(&r);
    // A policy that does not load.
    env.write("bad.toml", "[keys.x]\nkey = 1\n");
    let r = env.run(&["sign", "b", "--key", "enc", "--policy", "bad.toml"]);
    r.code(2).stderr_has("bad.toml");
    no_prompt(&r);
    // Not a bundle.
    let r = env.run(&["sign", "b/chunks", "--key", "enc", "--trust", "k.pub"]);
    r.code(2).stderr_has("did you mean the bundle directory b?");
    no_prompt(&r);
    // The key: missing, a public key, not a key.
    let r = env.run(&["sign", "b", "--key", "missing.key", "--trust", "k.pub"]);
    r.code(1).stderr_has("missing.key");
    no_prompt(&r);
    let r = env.run(&["sign", "b", "--key", "enc.pub", "--trust", "k.pub"]);
    r.code(1).stderr_has("is a public key");
    no_prompt(&r);
    env.write("junk.key", "not a key\n");
    fs::set_permissions(
        env.path("junk.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let r = env.run(&["sign", "b", "--key", "junk.key", "--trust", "k.pub"]);
    r.code(1).stderr_has("not a minisign secret key");
    no_prompt(&r);
    // Everything right: only now is the passphrase needed.
    env.run(&["sign", "b", "--key", "enc", "--trust", "k.pub"])
        .code(1)
        .stderr_has("AIRLOCK_PASSPHRASE");
    let mut c = env.command(&["sign", "b", "--key", "enc", "--trust", "k.pub"]);
    c.env("AIRLOCK_PASSPHRASE", "correct horse");
    run_cmd(c).ok().stdout_has("countersigned bundle");
}
