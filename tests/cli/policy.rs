//! Trust policy (`--policy FILE`): named keys, per-channel m-of-n thresholds, revoked and
//! expired keys, unknown channels, strict policy files, and the quick form `--trust`.

use std::fs;

use serde_json::Value;

use crate::support::*;

/// The key id of `NAME.pub`, as its untrusted comment states it.
fn key_id(env: &Env, name: &str) -> String {
    let text = String::from_utf8(env.read(&format!("{name}.pub"))).unwrap();
    text.lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string()
}

/// Keys `ci`, `officer`, `release`; bundle `b` of a small tree, signed by `ci`, channel `channel`.
fn setup(channel: &str) -> Env {
    let env = Env::new();
    for k in ["ci", "officer", "release"] {
        env.keygen(k);
    }
    env.write("src/a.txt", "hello\n");
    env.pack(&["src"], "ci", "b", &["--channel", channel]).ok();
    env
}

const KEYS: &str = r#"
[keys.ci]
file = "ci.pub"
[keys.officer]
file = "officer.pub"
[keys.release]
file = "release.pub"
"#;

fn policy(env: &Env, channels: &str) {
    env.write("trust.toml", format!("{KEYS}{channels}"));
}

fn problems(run: &Run) -> Vec<Value> {
    run.json()["error"]["problems"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn codes(run: &Run) -> Vec<String> {
    problems(run)
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_string())
        .collect()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect()
}

const TWO_OF_THREE: &str = r#"
[channels.nightly]
signers = ["ci", "officer", "release"]
threshold = 2
"#;

#[test]
fn two_of_three_needs_a_countersignature() {
    let env = setup("nightly");
    policy(&env, TWO_OF_THREE);
    let ci = key_id(&env, "ci");

    let r = env.run(&["verify", "b", "--policy", "trust.toml"]);
    r.code(3)
        .stderr_has("policy threshold not met")
        .stderr_has(&format!("ci ({ci})"))
        .stderr_has("needs signatures by 2 distinct keys of [ci (");
    let r = env.run(&["verify", "b", "--policy", "trust.toml", "--json"]);
    r.code(3);
    assert_eq!(codes(&r), ["policy-threshold"]);
    let p = &problems(&r)[0];
    assert_eq!(p["channel"], "nightly");
    assert_eq!(p["rule"], "nightly");
    assert_eq!(p["needed"], 2);
    assert_eq!(names(&p["counted"]), ["ci"]);
    assert_eq!(p["counted"][0]["key_id"], ci.as_str());
    assert_eq!(names(&p["expected"]), ["ci", "officer", "release"]);
    assert!(p["policy"].as_str().unwrap().ends_with("trust.toml"));

    // The officer reviews, then countersigns: one counted signer suffices to sign.
    env.run(&["inspect", "b", "--policy", "trust.toml"])
        .ok()
        .stdout_has(&format!("ci ({ci})"))
        .stdout_has("policy threshold not met");
    env.run(&["sign", "b", "--key", "officer", "--policy", "trust.toml"])
        .ok();
    let r = env.run(&["verify", "b", "--policy", "trust.toml", "--json"]);
    r.ok();
    let signers = r.json()["signers"].as_array().unwrap().clone();
    let counted: Vec<&str> = signers
        .iter()
        .filter(|s| s["counted"] == true)
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(counted, ["ci", "officer"]);
    env.run(&["inspect", "b", "--policy", "trust.toml"])
        .ok()
        .stdout_has("officer (")
        .stdout_has("policy    met");
    env.run(&["import", "b", "--policy", "trust.toml", "--files", "dest"])
        .ok();
    assert_eq!(env.read("dest/src/a.txt"), b"hello\n");
}

#[test]
fn same_key_twice_counts_once() {
    let env = setup("nightly");
    policy(&env, TWO_OF_THREE);
    fs::create_dir_all(env.path("b/signatures")).unwrap();
    fs::copy(
        env.path("b/manifest.json.minisig"),
        env.path("b/signatures/again.minisig"),
    )
    .unwrap();
    let r = env.run(&["verify", "b", "--policy", "trust.toml", "--json"]);
    r.code(3);
    assert_eq!(codes(&r), ["policy-threshold"]);
    assert_eq!(names(&problems(&r)[0]["counted"]), ["ci"]);
    // And `sign` refuses a key that already signed.
    env.run(&["sign", "b", "--key", "ci", "--policy", "trust.toml"])
        .code(2)
        .stderr_has("already signed");
}

#[test]
fn revoked_key_does_not_count() {
    let env = setup("nightly");
    env.write(
        "trust.toml",
        format!(
            "{}\n[channels.nightly]\nsigners = [\"ci\", \"officer\"]\nthreshold = 1\n",
            KEYS.replace("file = \"ci.pub\"", "file = \"ci.pub\"\nrevoked = true")
        ),
    );
    let r = env.run(&["verify", "b", "--policy", "trust.toml", "--json"]);
    r.code(3);
    assert_eq!(codes(&r), ["revoked-key", "untrusted-manifest"]);
    assert_eq!(problems(&r)[0]["name"], "ci");
    env.run(&["verify", "b", "--policy", "trust.toml"])
        .code(3)
        .stderr_has("revoked key")
        .stderr_has("which the policy revoked");
    // Countersigning does not help a revoked key: it cannot vouch for the bundle.
    env.run(&["sign", "b", "--key", "officer", "--policy", "trust.toml"])
        .code(3);

    // Signed by ci (revoked) and officer with a 2-of-2 rule: one short.
    env.pack(
        &["src"],
        "ci",
        "b2",
        &["--channel", "nightly", "--key", "officer"],
    )
    .ok();
    env.write(
        "trust.toml",
        format!(
            "{}\n[channels.nightly]\nsigners = [\"ci\", \"officer\"]\nthreshold = 2\n",
            KEYS.replace("file = \"ci.pub\"", "file = \"ci.pub\"\nrevoked = true")
        ),
    );
    let r = env.run(&["verify", "b2", "--policy", "trust.toml", "--json"]);
    r.code(3);
    assert_eq!(codes(&r), ["policy-threshold", "revoked-key"]);
    assert_eq!(names(&problems(&r)[0]["counted"]), ["officer"]);

    // With a 1-of-2 rule the officer's signature suffices; the revoked one is shown, not counted.
    env.write(
        "trust.toml",
        format!(
            "{}\n[channels.nightly]\nsigners = [\"ci\", \"officer\"]\nthreshold = 1\n",
            KEYS.replace("file = \"ci.pub\"", "file = \"ci.pub\"\nrevoked = true")
        ),
    );
    let r = env.run(&["verify", "b2", "--policy", "trust.toml", "--json"]);
    r.ok();
    let signers = r.json()["signers"].as_array().unwrap().clone();
    assert_eq!(signers[0]["name"], "ci");
    assert_eq!(signers[0]["state"], "revoked");
    assert_eq!(signers[0]["counted"], false);
    assert_eq!(signers[1]["name"], "officer");
    assert_eq!(signers[1]["counted"], true);
    env.run(&["verify", "b2", "--policy", "trust.toml"])
        .ok()
        .stdout_has("valid, but the key is revoked: not counted");
}

#[test]
fn expired_key_does_not_count() {
    let env = setup("nightly");
    let rule = "\n[channels.nightly]\nsigners = [\"ci\"]\nthreshold = 1\n";
    let with_expiry = |t: &str| {
        format!(
            "{}{rule}",
            KEYS.replace(
                "file = \"ci.pub\"",
                &format!("file = \"ci.pub\"\nexpires = \"{t}\"")
            )
        )
    };
    env.write("trust.toml", with_expiry("2099-01-01T00:00:00Z"));
    env.run(&["verify", "b", "--policy", "trust.toml"]).ok();
    env.write("trust.toml", with_expiry("2020-01-01T00:00:00Z"));
    let r = env.run(&["verify", "b", "--policy", "trust.toml", "--json"]);
    r.code(3);
    assert_eq!(codes(&r), ["expired-key", "untrusted-manifest"]);
    assert_eq!(problems(&r)[0]["expired"], "2020-01-01T00:00:00Z");
    env.run(&["verify", "b", "--policy", "trust.toml"])
        .code(3)
        .stderr_has("expired at 2020-01-01T00:00:00Z");
}

#[test]
fn unknown_channel_rejected_unless_star() {
    let env = setup("experimental");
    policy(&env, TWO_OF_THREE);
    let r = env.run(&["verify", "b", "--policy", "trust.toml", "--json"]);
    r.code(3);
    assert_eq!(codes(&r), ["unknown-channel"]);
    assert_eq!(problems(&r)[0]["channel"], "experimental");
    assert_eq!(problems(&r)[0]["known"], serde_json::json!(["nightly"]));
    env.run(&["import", "b", "--policy", "trust.toml", "--files", "dest"])
        .code(3)
        .stderr_has("unknown channel");
    assert!(!env.path("dest").exists());

    policy(
        &env,
        &format!("{TWO_OF_THREE}\n[channels.\"*\"]\nsigners = [\"ci\"]\nthreshold = 1\n"),
    );
    env.run(&["verify", "b", "--policy", "trust.toml"]).ok();
}

#[test]
fn policy_file_errors_name_the_file() {
    let env = setup("nightly");
    let cases = [
        (
            format!("{KEYS}{TWO_OF_THREE}\nsurprise = true\n"),
            "unknown field",
        ),
        (
            format!("{KEYS}{TWO_OF_THREE}").replace("officer.pub", "missing.pub"),
            "missing.pub",
        ),
        (
            format!("{KEYS}{TWO_OF_THREE}").replace("threshold = 2", "threshold = 4"),
            "threshold 4 is not between 1 and the number of signers (3)",
        ),
        (
            format!("{KEYS}{TWO_OF_THREE}").replace("\"release\"]", "\"nobody\"]"),
            "signer \"nobody\" is not a key",
        ),
        (
            format!("{KEYS}{TWO_OF_THREE}").replace("file = \"ci.pub\"", "key = \"RWnotakey\""),
            "key ci",
        ),
        (KEYS.to_string(), "no [channels.NAME] rule"),
    ];
    for (text, says) in cases {
        env.write("trust.toml", &text);
        for cmd in ["verify", "inspect", "sign"] {
            let mut args = vec![cmd, "b", "--policy", "trust.toml"];
            if cmd == "sign" {
                args.extend(["--key", "officer"]);
            }
            env.run(&args)
                .code(2)
                .stderr_has("trust policy trust.toml")
                .stderr_has(says);
        }
    }
    // Files anyone may change would let anyone choose whom the enclave trusts.
    env.write("trust.toml", format!("{KEYS}{TWO_OF_THREE}"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["trust.toml", "release.pub"] {
            let p = env.path(f);
            fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
            env.run(&["verify", "b", "--policy", "trust.toml"])
                .code(2)
                .stderr_has("trust policy trust.toml")
                .stderr_has("anyone may change it");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    env.run(&["verify", "b", "--policy", "absent.toml"])
        .code(1)
        .stderr_has("absent.toml");
    // A secret key never shows up in an error, even where a public key was expected.
    let secret = String::from_utf8(env.read("officer")).unwrap();
    let line = secret.lines().nth(1).unwrap().to_string();
    env.write(
        "trust.toml",
        format!("{KEYS}{TWO_OF_THREE}").replace("file = \"ci.pub\"", "file = \"officer\""),
    );
    let r = env.run(&["verify", "b", "--policy", "trust.toml"]);
    r.code(2).stderr_has("key ci");
    assert!(!r.stderr.contains(&line), "{}", r.stderr);
}

#[test]
fn trust_still_works_and_excludes_policy() {
    let env = setup("nightly");
    policy(&env, TWO_OF_THREE);
    env.run(&["verify", "b", "--trust", "ci.pub"]).ok();
    env.run(&["verify", "b", "--trust", "officer.pub"])
        .code(3)
        .stderr_has("unknown signer");
    for cmd in ["verify", "inspect", "import", "sign"] {
        let mut args = vec![cmd, "b", "--policy", "trust.toml", "--trust", "ci.pub"];
        match cmd {
            "import" => args.extend(["--files", "dest"]),
            "sign" => args.extend(["--key", "officer"]),
            _ => {}
        }
        env.run(&args).code(2).stderr_has("--policy");
    }
    if !std::path::Path::new("/etc/airlock/trust.toml").exists() {
        env.run(&["verify", "b"])
            .code(2)
            .stderr_has("pass --policy FILE or --trust PUBKEY");
        env.run(&["inspect", "b"])
            .ok()
            .stdout_has("UNVERIFIED: signatures not checked");
    }
}

#[test]
fn import_refuses_before_writing_when_policy_fails() {
    let env = setup("nightly");
    policy(&env, TWO_OF_THREE);
    let r = env.run(&[
        "import",
        "b",
        "--policy",
        "trust.toml",
        "--files",
        "dest",
        "--json",
    ]);
    r.code(3);
    assert_eq!(codes(&r), ["policy-threshold"]);
    assert!(!env.path("dest").exists());
    // The same bundle imports with a 1-of-3 rule.
    policy(
        &env,
        &TWO_OF_THREE.replace("threshold = 2", "threshold = 1"),
    );
    env.run(&["import", "b", "--policy", "trust.toml", "--files", "dest"])
        .ok();
    assert_eq!(env.read("dest/src/a.txt"), b"hello\n");
}
