//! Keys: passphrase protection, file modes, secrets never printed.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::support::*;

#[test]
fn keygen_writes_a_private_secret_key_and_refuses_to_overwrite() {
    let env = Env::new();
    let (sk, pk) = env.keygen("k");
    assert_eq!(
        fs::metadata(&sk).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pub_text = fs::read_to_string(pk).unwrap();
    assert!(pub_text.starts_with("untrusted comment: minisign public key "));
    env.run(&["keygen", "--out", "k", "--unencrypted"])
        .code(2)
        .stderr_has("already exists");
}

#[test]
fn encrypted_keys_need_the_passphrase() {
    let env = Env::new();
    env.run(&["keygen", "--out", "k"])
        .code(1)
        .stderr_has("AIRLOCK_PASSPHRASE");
    let mut c = env.command(&["keygen", "--out", "k"]);
    c.env("AIRLOCK_PASSPHRASE", "correct horse");
    run_cmd(c).ok().stdout_has("passphrase-protected");
    env.write("src/a", "a");
    let mut wrong = env.command(&["pack", "src", "--out", "b", "--key", "k"]);
    wrong.env("AIRLOCK_PASSPHRASE", "wrong");
    let r = run_cmd(wrong);
    r.code(1).stderr_has("cannot decrypt secret key");
    assert!(!r.stderr.contains("correct horse"));
    env.run(&["pack", "src", "--out", "b", "--key", "k"])
        .code(1)
        .stderr_has("AIRLOCK_PASSPHRASE");
    let mut right = env.command(&["pack", "src", "--out", "b", "--key", "k"]);
    right.env("AIRLOCK_PASSPHRASE", "correct horse");
    run_cmd(right).ok();
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();
}

#[test]
fn secret_key_readable_by_others_is_refused() {
    let env = Env::new();
    let (sk, _) = env.keygen("k");
    fs::set_permissions(&sk, fs::Permissions::from_mode(0o644)).unwrap();
    env.write("src/a", "a");
    env.pack(&["src"], "k", "b", &[])
        .code(1)
        .stderr_has("accessible by group or others (mode 0644)")
        .stderr_has("chmod 600");
    let secret = fs::read_to_string(&sk).unwrap();
    let r = env.pack(&["src"], "k", "b", &[]);
    assert!(!r.stderr.contains(secret.lines().nth(1).unwrap()));
}

#[test]
fn public_key_can_be_given_inline() {
    let env = Env::new();
    env.sample_bundle();
    let pk = fs::read_to_string(env.path("k.pub")).unwrap();
    let b64 = pk.lines().nth(1).unwrap();
    env.run(&["verify", "b", "--trust", b64]).ok();
}

#[test]
fn countersigning_adds_a_signature_without_touching_chunks() {
    require("minisign");
    let env = Env::new();
    env.sample_bundle();
    env.keygen("officer");
    let chunks = contents(&env.path("b/chunks"));
    let manifest = env.read("b/manifest.json");
    let out = env
        .run(&[
            "sign", "b", "--key", "officer", "--trust", "k.pub", "--json",
        ])
        .ok()
        .json();
    // The signature written, named as pack and verify name signatures (was `signature`: the
    // path including the bundle directory).
    let sig = out["signers"][0]["file"].as_str().unwrap().to_string();
    assert!(
        sig.starts_with("signatures/") && sig.ends_with(".minisig"),
        "{sig}"
    );
    let sig = format!("b/{sig}");
    assert!(env.path(&sig).is_file(), "{sig}");
    assert_eq!(contents(&env.path("b/chunks")), chunks);
    assert_eq!(env.read("b/manifest.json"), manifest);
    // The officer's key alone now verifies the bundle, with airlock and with stock minisign.
    env.run(&["verify", "b", "--trust", "officer.pub"]).ok();
    let v = env
        .run(&[
            "verify",
            "b",
            "--trust",
            "k.pub",
            "--trust",
            "officer.pub",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(
        v["signers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["valid"] == true)
            .count(),
        2
    );
    let mut c = std::process::Command::new("minisign");
    c.args(["-Vm", "b/manifest.json", "-x", &sig, "-p", "officer.pub"])
        .current_dir(env.dir.path());
    run_cmd(c).ok();
    // Signing twice with one key is refused; a bundle that does not verify is never signed.
    env.run(&["sign", "b", "--key", "officer", "--trust", "k.pub"])
        .code(2)
        .stderr_has("already signed");
    env.keygen("third");
    std::fs::write(env.path("b/chunks/00000000.tar"), b"tampered").unwrap();
    env.run(&["sign", "b", "--key", "third", "--trust", "k.pub"])
        .code(3);
    assert_eq!(
        std::fs::read_dir(env.path("b/signatures")).unwrap().count(),
        1
    );
}
