//! Terminal safety (issue 9, defect 0): anyone who can write to the media, and a trusted but
//! hostile signer, must not be able to make the officer read something other than what the
//! bytes say. Every string from the media, a bundle, a registry, a hub or a policy reaches the
//! terminal escaped (`\r`, `\e`, `\u{202e}`…), never interpreted; names with Unicode format
//! characters are refused at pack and at verify; a signature that does not verify is never shown
//! under a trusted key's name. Each test drives the real binary.

use std::fs;
use std::path::Path;

use airlock::format::text::find_unsafe;
use airlock::format::Manifest;
use airlock::sign::SigningKey;

use crate::rejections::{manifest, resign};
use crate::support::*;

/// Text a hostile party would like the officer to read: it claims a trusted countersignature.
const FAKE_SIGNER: &str =
    "signer    officer (68ADC9597BC92CAC) [signatures\u{2215}officer.minisig] valid, trusted, counted";

/// Fails if a control or Unicode format character (other than the newlines that end lines)
/// reaches stdout or stderr: nothing the terminal would interpret or a renderer would reorder.
#[track_caller]
fn assert_safe(run: &Run, what: &str) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        for (i, line) in text.split('\n').enumerate() {
            if let Some(c) = find_unsafe(line) {
                panic!(
                    "{what}: {stream} line {} holds the unsafe character {:?}:\n{line:?}\nstdout:\n{}\nstderr:\n{}",
                    i + 1,
                    c,
                    run.stdout,
                    run.stderr
                );
            }
        }
    }
}

/// Runs `args`, then again with `--json`: both outputs must be safe, the JSON valid.
#[track_caller]
fn run_safe(env: &Env, args: &[&str]) -> Run {
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let j = env.run(&json_args);
    assert_safe(&j, &format!("{} --json", args.join(" ")));
    j.json();
    let r = env.run(args);
    assert_safe(&r, &args.join(" "));
    r
}

/// A valid signature over the bundle's manifest by key `key` (any key), written to `rel`.
fn sign_with(env: &Env, key: &str, rel: &str) {
    let bytes = env.read("b/manifest.json");
    let m = Manifest::decode_unvalidated(&bytes).unwrap();
    let key = SigningKey::load(&env.path(key)).unwrap();
    let sig = airlock::bundle::sign_manifest(&m, &bytes, &key).unwrap();
    env.write(rel, sig);
}

#[test]
fn forged_countersignature_line_is_shown_escaped() {
    let env = Env::new();
    env.sample_bundle();
    env.keygen("evil");
    // Signed by an untrusted key (tolerated), its file name carries the fake line.
    let name = format!("b/signatures/a\r\x1b[2K{FAKE_SIGNER}\x1b[?7l\x1b[999C.minisig");
    sign_with(&env, "evil", &name);
    for args in [
        &["verify", "b", "--trust", "k.pub"][..],
        &["inspect", "b", "--trust", "k.pub"][..],
    ] {
        let r = run_safe(&env, args);
        r.ok();
        // The file name is shown, escaped, after the signer's status and never as a line of
        // its own.
        r.stdout_has("unknown key, not checked: signatures/a\\r\\e[2Ksigner    officer");
        r.stdout_has("\\e[?7l\\e[999C.minisig");
        assert!(
            !r.stdout.lines().any(|l| l.starts_with("signer    officer")),
            "{}",
            r.stdout
        );
    }
    run_safe(
        &env,
        &[
            "import",
            "b",
            "--trust",
            "k.pub",
            "--files",
            "dest",
            "--dry-run",
        ],
    )
    .ok();
}

#[test]
fn stray_file_cannot_render_as_verified() {
    let env = Env::new();
    env.sample_bundle();
    let fake = "verified b: signatures, 6 chunks and 5 blobs check out";
    env.write(&format!("b/x\r\x1b[2K\x1b[1A{fake}"), "");
    env.write(&format!("b/chunks/y\n{fake}"), "");
    env.write("b/signatures/z\u{202e}gisinim.txt", "");
    for args in [
        &["verify", "b", "--trust", "k.pub"][..],
        &["import", "b", "--trust", "k.pub", "--files", "dest"][..],
    ] {
        let r = run_safe(&env, args);
        r.code(3);
        r.stderr_has("unexpected file: x\\r\\e[2K\\e[1Averified b: signatures");
        r.stderr_has("unexpected file: chunks/y\\nverified b: signatures");
        r.stderr_has("unexpected file: signatures/z\\u{202e}gisinim.txt");
        for out in [&r.stdout, &r.stderr] {
            assert!(!out.lines().any(|l| l.starts_with("verified")), "{out}");
        }
    }
    assert!(!env.path("dest").exists());
}

#[test]
fn hidden_artifact_source_is_shown_escaped() {
    let env = Env::new();
    env.keygen("k");
    env.sample_tree("src");
    env.write("backdoor.sh", "#!/bin/sh\necho owned\n");
    env.pack(&["src", "backdoor.sh"], "k", "b", &[]).ok();
    // A trusted but hostile signer erases the artifact's own line from the listing.
    resign(&env, |m| {
        for a in &mut m.artifacts {
            if a.name == "backdoor.sh" {
                a.source = "x\r\x1b[2K\x1b[1A".into();
            }
        }
    });
    for args in [
        &["inspect", "b", "--trust", "k.pub"][..],
        &["verify", "b", "--trust", "k.pub"][..],
        &[
            "import",
            "b",
            "--trust",
            "k.pub",
            "--files",
            "dest",
            "--dry-run",
        ][..],
    ] {
        let r = run_safe(&env, args);
        // Refusing control characters in free-text fields is also right; showing them raw
        // never is.
        if r.code == 0 {
            // inspect and verify list the artifact with its source; import's plan, its file.
            let listed = |l: &str| {
                l.contains("backdoor.sh")
                    && (args[0] == "import" || l.contains("from x\\r\\e[2K\\e[1A"))
            };
            assert!(r.stdout.lines().any(listed), "{}", r.stdout);
        } else {
            r.code(3);
        }
    }
}

#[test]
fn invalid_signature_is_never_shown_under_a_trusted_name() {
    let env = Env::new();
    env.sample_bundle();
    env.keygen("officer");
    env.write(
        "trust.toml",
        "[keys.ci]\nfile = \"k.pub\"\n[keys.officer]\nfile = \"officer.pub\"\n[channels.\"*\"]\nsigners = [\"ci\", \"officer\"]\nthreshold = 1\n",
    );
    // The officer's signature of other bytes, planted as a countersignature.
    let key = SigningKey::load(&env.path("officer")).unwrap();
    let m = manifest(&env);
    let other = b"{}";
    let sig = airlock::bundle::sign_manifest(&m, other, &key).unwrap();
    env.write("b/signatures/x.minisig", sig);
    let r = run_safe(&env, &["inspect", "b", "--policy", "trust.toml"]);
    r.ok();
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("signatures/x.minisig"))
        .unwrap_or_else(|| panic!("no line for the signature:\n{}", r.stdout));
    assert!(line.contains("INVALID"), "{line}");
    assert!(!line.contains("officer"), "{line}");
    // verify refuses the bundle, naming the signature and the key it claims.
    let r = run_safe(&env, &["verify", "b", "--policy", "trust.toml"]);
    r.code(3).stderr_has("signatures/x.minisig");
}

#[test]
fn format_characters_in_names_are_refused_at_verify() {
    let env = Env::new();
    env.sample_bundle();
    let original = env.read("b/manifest.json");
    let sig = env.read("b/manifest.json.minisig");
    let sums = env.read("b/SHA256SUMS");
    type Edit = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "\\u{202e}",
            Box::new(|m: &mut Manifest| {
                for e in &mut m.artifacts[0].entries {
                    if e.path == "config.json" {
                        e.path = "readme\u{202e}txt.sh".into();
                    }
                }
            }),
        ),
        (
            "\\u{200b}",
            Box::new(|m: &mut Manifest| m.artifacts[0].name = "mo\u{200b}del.bin".into()),
        ),
        (
            "\\u{2066}",
            Box::new(|m: &mut Manifest| {
                for e in &mut m.artifacts[0].entries {
                    if e.path == "sub" {
                        e.path = "s\u{2066}ub".into();
                    }
                    if let Some(rest) = e.path.strip_prefix("sub/") {
                        e.path = format!("s\u{2066}ub/{rest}");
                    }
                }
            }),
        ),
    ];
    for (shown, edit) in cases {
        fs::write(env.path("b/manifest.json"), &original).unwrap();
        fs::write(env.path("b/manifest.json.minisig"), &sig).unwrap();
        fs::write(env.path("b/SHA256SUMS"), &sums).unwrap();
        resign(&env, edit);
        for args in [
            &["verify", "b", "--trust", "k.pub"][..],
            &["import", "b", "--trust", "k.pub", "--files", "dest"][..],
        ] {
            let r = run_safe(&env, args);
            r.code(3)
                .stderr_has("invalid manifest")
                .stderr_has("format character")
                .stderr_has(shown);
        }
        let v = env
            .run(&["verify", "b", "--trust", "k.pub", "--json"])
            .json();
        let codes: Vec<&str> = v["error"]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["code"].as_str().unwrap())
            .collect();
        assert!(codes.contains(&"invalid-manifest"), "{codes:?}");
        assert!(!env.path("dest").exists());
    }
}

#[test]
fn format_characters_in_names_are_refused_at_pack() {
    let env = Env::new();
    env.keygen("k");
    env.write("tree/readme\u{202e}txt.sh", "#!/bin/sh\n");
    env.write("tree/ok.txt", "ok\n");
    let r = run_safe(&env, &["pack", "tree", "--out", "b", "--key", "k"]);
    r.code(2)
        .stderr_has("tree/readme\\u{202e}txt.sh")
        .stderr_has("format character");
    assert!(!env.path("b").exists());
    // A single-file source is named after its file: refused the same way.
    env.write("mo\u{200b}del.bin", "weights");
    let r = run_safe(
        &env,
        &["pack", "mo\u{200b}del.bin", "--out", "b", "--key", "k"],
    );
    r.code(2)
        .stderr_has("mo\\u{200b}del.bin")
        .stderr_has("format character");
    assert!(!env.path("b").exists());
}

#[test]
fn bundle_directory_names_are_shown_escaped() {
    // The bundle directory is on the media: `airlock verify /media/usb/*` names it from there.
    let env = Env::new();
    env.sample_bundle();
    let dir = "b\r\x1b[2Kfake\u{202e}";
    fs::rename(env.path("b"), env.path(dir)).unwrap();
    // inspect does not name the directory in its text (its JSON does).
    run_safe(&env, &["inspect", dir, "--trust", "k.pub"]).ok();
    for args in [
        &["verify", dir, "--trust", "k.pub"][..],
        &[
            "import",
            dir,
            "--trust",
            "k.pub",
            "--files",
            "dest",
            "--dry-run",
        ][..],
    ] {
        run_safe(&env, args)
            .ok()
            .stdout_has("b\\r\\e[2Kfake\\u{202e}");
    }
    // ... and in errors naming it. (inspect with trust refuses a manifest its signature does
    // not cover before parsing it: exit 3, as verify.)
    fs::remove_file(env.path(&format!("{dir}/SHA256SUMS"))).unwrap();
    fs::write(env.path(&format!("{dir}/manifest.json")), "x".repeat(100)).unwrap();
    run_safe(&env, &["inspect", dir, "--trust", "k.pub"])
        .code(3)
        .stderr_has("bundle b\\r\\e[2Kfake\\u{202e} rejected");
    // A path under it, in another error (a usage error: keygen will not overwrite).
    fs::remove_file(env.path(&format!("{dir}/manifest.json"))).unwrap();
    fs::create_dir(env.path(&format!("{dir}/manifest.json"))).unwrap();
    run_safe(
        &env,
        &[
            "keygen",
            "--out",
            &format!("{dir}/manifest.json"),
            "--unencrypted",
        ],
    )
    .code(2)
    .stderr_has("b\\r\\e[2Kfake\\u{202e}/manifest.json");
}

#[test]
fn countersign_import_and_audit_output_is_safe() {
    let env = Env::new();
    env.sample_bundle();
    env.keygen("officer");
    let dir = "b\r\x1b[1A\u{200b}";
    fs::rename(env.path("b"), env.path(dir)).unwrap();
    let r = env.run(&["sign", dir, "--key", "officer", "--trust", "k.pub"]);
    assert_safe(&r, "sign");
    r.ok().stdout_has("b\\r\\e[1A\\u{200b}/signatures/");
    // Signing again is refused, naming the bundle escaped.
    let r = env.run(&["sign", dir, "--key", "officer", "--trust", "k.pub"]);
    assert_safe(&r, "sign again");
    r.code(2)
        .stderr_has("b\\r\\e[1A\\u{200b} is already signed");
    let r = run_safe(
        &env,
        &["import", dir, "--trust", "k.pub", "--files", "dest"],
    );
    r.ok().stdout_has("imported b\\r\\e[1A\\u{200b}");
    run_safe(&env, &["audit", "verify"]).ok();
}

/// Enforcement for code written later: only `src/output.rs` writes to the terminal (and it
/// passes everything through `format::text`), so no other code can print a string raw.
#[test]
fn only_the_printer_writes_to_the_terminal() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let forbidden = [
        "println!",
        "eprintln!",
        "print!(",
        "eprint!(",
        "dbg!(",
        "io::stdout(",
        "io::stderr(",
        "std::io::stdout",
        "std::io::stderr",
        "libc::write(",
    ];
    // The printer itself; shell completions are clap's static text.
    let allowed = ["output.rs", "commands/completions.rs"];
    let mut offenders = Vec::new();
    for e in walkdir::WalkDir::new(&root) {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if !rel.ends_with(".rs") || allowed.contains(&rel.as_str()) {
            continue;
        }
        let text = fs::read_to_string(e.path()).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if forbidden.iter().any(|f| code.contains(f)) {
                offenders.push(format!("src/{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "only src/output.rs may write to the terminal (it escapes what it writes):\n{}",
        offenders.join("\n")
    );
}

/// Names of fields and variables that carry strings from outside (media, bundle, registry, hub,
/// policy) in the code that renders them.
const OUTSIDE: &[&str] = &[
    "name",
    "source",
    "identity",
    "file",
    "path",
    "reference",
    "target",
    "channel",
    "dir",
    "dest",
    "url",
    "key_id",
    "rule",
    "policy",
    "expires",
    "expired",
    "created",
    "found",
    "known",
    "signature",
    "secret_key",
    "public_key",
    "head",
    "bundle_id",
];

/// Wrappers that render such a string safely.
const SAFE: &[&str] = &[
    "escape(",
    "output::escape(",
    "escape_path(",
    "output::escape_path(",
    "key_list(",
];

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("closing delimiter")
}

/// The macro invocations in `src`: each one's argument list, split at its top-level commas.
fn format_calls(src: &str) -> Vec<(usize, Vec<String>)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let starts = ["format!(", "write!(", "writeln!(", "#[error("];
    let mut i = 0;
    while i < b.len() {
        let Some(m) = starts.iter().find(|m| b[i..].starts_with(m.as_bytes())) else {
            i += 1;
            continue;
        };
        let line = src[..i].matches('\n').count() + 1;
        let mut j = i + m.len();
        let (mut depth, mut args, mut cur) = (1, Vec::new(), Vec::<u8>::new());
        while j < b.len() && depth > 0 {
            let c = b[j] as char;
            let ident_before = j > 0 && (b[j - 1].is_ascii_alphanumeric() || b[j - 1] == b'_');
            if c == '"' || (c == 'r' && !ident_before && (b[j + 1] == b'"' || b[j + 1] == b'#')) {
                // A string literal (raw or not), copied whole.
                let start = j;
                if c == 'r' {
                    let hashes = b[j + 1..].iter().take_while(|&&x| x == b'#').count();
                    let close = format!("\"{}", "#".repeat(hashes));
                    let body = j + 2 + hashes;
                    j = body + find(&b[body..], close.as_bytes()) + close.len();
                } else {
                    j += 1;
                    while b[j] != b'"' {
                        j += if b[j] == b'\\' { 2 } else { 1 };
                    }
                    j += 1;
                }
                cur.extend_from_slice(&b[start..j]);
                continue;
            }
            if c == '\'' && j + 3 < b.len() && (b[j + 2] == b'\'' || b[j + 1] == b'\\') {
                let end = j + 2 + find(&b[j + 2..], b"'") + 1;
                cur.extend_from_slice(&b[j..end]);
                j = end;
                continue;
            }
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                ',' if depth == 1 => {
                    args.push(std::mem::take(&mut cur));
                    j += 1;
                    continue;
                }
                _ => {}
            }
            if depth > 0 {
                cur.push(b[j]);
            }
            j += 1;
        }
        args.push(cur);
        let args: Vec<String> = args
            .into_iter()
            .map(|a| String::from_utf8(a).unwrap().trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        out.push((line, args));
        i = j;
    }
    out
}

/// Whether `expr` mentions an outside string (`a.name`, `path.display()`, `file`...).
fn mentions_outside(expr: &str) -> bool {
    if expr.contains(".display()") {
        return true;
    }
    let words: Vec<&str> = expr
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    // The last identifier of a path expression is what is shown: `a.kind.as_str()` is not a
    // name, `s.file` is.
    let shown = expr
        .trim_end_matches("()")
        .trim_end_matches(".clone")
        .trim_end_matches(".as_str")
        .trim_end_matches(".as_deref")
        .rsplit(['.', '&', '*', ' ', '('])
        .next()
        .unwrap_or("");
    OUTSIDE.contains(&shown) || (words.len() == 1 && OUTSIDE.contains(&words[0]))
}

/// Enforcement for code written later: in the code that renders text (commands, the printer,
/// the error and problem messages), every string from outside is formatted through `escape`:
/// a `{}` or `{:?}` of a name, path, source, file, channel... (as an argument or captured in
/// the format string) fails this test.
#[test]
fn rendering_code_formats_outside_strings_through_escape() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<(String, String)> = Vec::new();
    let read = |rel: &str| fs::read_to_string(root.join(rel)).unwrap();
    for e in fs::read_dir(root.join("src/commands")).unwrap() {
        let rel = format!("src/commands/{}", e.unwrap().file_name().to_string_lossy());
        files.push((rel.clone(), read(&rel)));
    }
    files.push(("src/output.rs".into(), read("src/output.rs")));
    files.push(("src/error.rs".into(), read("src/error.rs")));
    // The Display impls of Problem and KeyRef, which every rejection is rendered through (in
    // the leaf module `problem.rs` since format v3; they were in `bundle/verify.rs`).
    let verify = read("src/problem.rs");
    for start in [
        "impl fmt::Display for KeyRef",
        "impl fmt::Display for Problem",
    ] {
        let at = verify
            .find(start)
            .unwrap_or_else(|| panic!("{start} moved"));
        let end = at + verify[at..].find("\n}\n").unwrap();
        files.push((
            format!("src/problem.rs ({start})"),
            verify[at..end].to_string(),
        ));
    }
    let mut offenders = Vec::new();
    for (rel, src) in &files {
        // Unit tests in these files are not rendering code.
        let src = src.split("#[cfg(test)]").next().unwrap();
        for (line, args) in format_calls(src) {
            let Some(fmt_at) = args
                .iter()
                .position(|a| a.starts_with('"') || a.starts_with("r\"") || a.starts_with("r#"))
            else {
                continue;
            };
            let fmt = args[fmt_at].replace("{{", "").replace("}}", "");
            for cap in fmt.split('{').skip(1) {
                let ident = cap.split([':', '}']).next().unwrap_or("");
                // thiserror's `source` in src/error.rs is the io::Error, not a source string.
                let io_source = rel == "src/error.rs" && ident == "source";
                if OUTSIDE.contains(&ident) && !io_source {
                    offenders.push(format!("{rel}:{line}: {{{ident}}} in {fmt}"));
                }
            }
            for a in &args[fmt_at + 1..] {
                let expr = a.split_once(" = ").map(|(_, e)| e).unwrap_or(a).trim();
                if mentions_outside(expr) && !SAFE.iter().any(|s| expr.starts_with(s)) {
                    offenders.push(format!("{rel}:{line}: {expr}"));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "strings from outside formatted without escape (use format::text::escape / output::escape_path):\n{}",
        offenders.join("\n")
    );
}
