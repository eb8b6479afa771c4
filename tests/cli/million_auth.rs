//! Issue 10, a 1,000,000-file bundle: the manifest read before authentication is bounded by the
//! `manifest_size` a trusted signer declared in its trusted comment (whose global signature is
//! checked before a byte of the manifest is read), up to 1 GiB; without such a declaration the
//! bound stays 64 MiB. Nothing of the manifest is parsed before a trusted signature verifies.

use std::fs;
use std::process::Command;

use airlock::format::limits::{MAX_DECLARED_MANIFEST_BYTES, MAX_MANIFEST_BYTES};
use airlock::format::{Digest, Manifest};
use airlock::sign::SigningKey;

use crate::sec_verify::{deep_manifest, problem_codes, sign_as};
use crate::support::*;

/// Signs the manifest of `b` with key `key` and the trusted comment airlock writes, but for
/// `manifest_size`: `sizes` are the values given for it, in order (none, one, or a repeat).
fn sign_declaring(env: &Env, key: &str, m: &Manifest, sizes: &[String]) {
    let bytes = env.read("b/manifest.json");
    let sums = Digest::of(m.sha256sums().as_bytes()).hex();
    let mut fields = vec![
        ("bundle", m.bundle_id.clone()),
        ("channel", m.channel.clone()),
        ("sequence", m.sequence.to_string()),
        ("sha256sums", sums),
    ];
    fields.extend(sizes.iter().map(|s| ("manifest_size", s.clone())));
    let comment = airlock::sign::trusted_comment(1, &fields);
    let key = SigningKey::load(&env.path(key)).unwrap();
    env.write(
        "b/manifest.json.minisig",
        key.sign(&bytes, &comment, "x").unwrap(),
    );
}

fn verify(env: &Env) -> Run {
    env.run_for(300, &["verify", "b", "--trust", "k.pub", "--json"])
}

/// The 64 MiB bound refused the read: the manifest was not read past it, nor parsed.
fn refused_at_64_mib(r: &Run) {
    r.code(3);
    let text = r.stdout.clone();
    assert!(
        text.contains(&format!(
            "larger than the {MAX_MANIFEST_BYTES} bytes read before authentication"
        )),
        "{text}"
    );
    assert!(!text.contains("invalid-manifest\""), "{text}");
}

#[test]
fn a_manifest_above_64_mib_verifies_by_its_signed_size_and_only_by_a_trusted_one() {
    let env = Env::new();
    let m = deep_manifest(&env, MAX_MANIFEST_BYTES + (4 << 20));
    let bytes = sign_as(&env, "k", &m);
    assert!(bytes.len() as u64 > MAX_MANIFEST_BYTES);
    let size = bytes.len().to_string();
    fs::create_dir(env.path(".airlock-state")).unwrap();

    // Signed by the trusted key, which declares its size: verifies.
    let r = verify(&env);
    r.ok();
    let comment = r.json()["signers"][0]["comment"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        comment.ends_with(&format!("\tmanifest_size:{size}")),
        "{comment}"
    );

    // The trusted key's signature without `manifest_size` (as bundles before it were signed):
    // the 64 MiB bound stays.
    sign_declaring(&env, "k", &m, &[]);
    refused_at_64_mib(&verify(&env));

    // A trusted key's signature whose trusted comment was edited after signing (its global
    // signature fails): its size is not believed.
    sign_as(&env, "k", &m);
    let sig = env.read("b/manifest.json.minisig");
    let edited = String::from_utf8(sig)
        .unwrap()
        .replacen("timestamp:", "timestamp:1", 1);
    env.write("b/manifest.json.minisig", edited);
    refused_at_64_mib(&verify(&env));

    // An untrusted key declares the size: not believed either.
    env.keygen("other");
    sign_as(&env, "other", &m);
    let r = verify(&env);
    refused_at_64_mib(&r);
    assert_eq!(problem_codes(&r), ["unreadable-manifest"]);

    // A trusted key declares a size above the ceiling: named, and the 64 MiB bound applies.
    let above = (MAX_DECLARED_MANIFEST_BYTES + 1).to_string();
    sign_declaring(&env, "k", &m, std::slice::from_ref(&above));
    let r = verify(&env);
    refused_at_64_mib(&r);
    assert_eq!(
        problem_codes(&r),
        ["invalid-manifest-size", "unreadable-manifest"]
    );
    r.stdout_has(&above).stdout_has("manifest.json.minisig");
    for bad in ["+1", "0x10", "01", ""] {
        sign_declaring(&env, "k", &m, &[bad.to_string()]);
        let r = verify(&env);
        refused_at_64_mib(&r);
        assert_eq!(
            problem_codes(&r),
            ["invalid-manifest-size", "unreadable-manifest"],
            "{bad:?}"
        );
    }

    // `manifest_size` given twice (even the right size twice): ambiguous, not believed.
    sign_declaring(&env, "k", &m, &[size.clone(), size.clone()]);
    let r = verify(&env);
    refused_at_64_mib(&r);
    assert_eq!(
        problem_codes(&r),
        ["ambiguous-comment", "unreadable-manifest"]
    );
    r.stdout_has("manifest_size");

    // A byte appended after signing: the size on the handle differs from the signed one.
    sign_as(&env, "k", &m);
    let mut longer = bytes.clone();
    longer.push(b' ');
    env.write("b/manifest.json", &longer);
    let r = verify(&env);
    refused_at_64_mib(&r);
    assert_eq!(
        problem_codes(&r),
        ["manifest-size-mismatch", "unreadable-manifest"]
    );

    // With a trust policy: the size is believed from a usable key the rule of the comment's
    // channel counts, and from no other.
    env.write("b/manifest.json", &bytes);
    sign_as(&env, "k", &m);
    let policy = |revoked: bool, signers: &str| {
        let revoked = if revoked { "revoked = true\n" } else { "" };
        env.write(
            "trust.toml",
            format!(
                "[keys.k]\nfile = \"k.pub\"\n{revoked}[keys.other]\nfile = \"other.pub\"\n\
                 [channels.{}]\nsigners = [{signers}]\nthreshold = 1\n",
                m.channel
            ),
        );
        env.run_for(300, &["verify", "b", "--policy", "trust.toml", "--json"])
    };
    policy(false, "\"k\"").ok();
    let r = policy(true, "\"k\"");
    refused_at_64_mib(&r);
    assert_eq!(problem_codes(&r), ["unreadable-manifest"], "revoked");
    let r = policy(false, "\"other\"");
    refused_at_64_mib(&r);
    assert_eq!(problem_codes(&r), ["unreadable-manifest"], "not counted");

    // No rejection's audit record carries anything parsed from the manifest.
    let log = fs::read_to_string(env.path(".airlock-state/audit.jsonl")).unwrap();
    for line in log.lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        if rec["verified"] != true {
            assert!(rec["bundle_id"].is_null(), "{rec:#}");
        }
    }
}

#[test]
fn a_manifest_of_another_size_than_signed_is_refused_unparsed_naming_both_sizes() {
    let env = Env::new();
    env.sample_bundle();
    let bytes = env.read("b/manifest.json");
    let signed = bytes.len();
    // Longer (not even JSON any more), and shorter: both refused before parsing.
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"garbage that no parser may see");
    for (edited, what) in [
        (longer, "longer"),
        (bytes[..signed - 1].to_vec(), "shorter"),
    ] {
        env.write("b/manifest.json", &edited);
        let r = env.run(&["verify", "b", "--trust", "k.pub", "--json"]);
        r.code(3);
        assert_eq!(
            problem_codes(&r),
            [
                "manifest-size-mismatch",
                "edited-manifest",
                "untrusted-manifest"
            ],
            "{what}"
        );
        let p = &r.json()["error"]["problems"][0];
        assert_eq!(p["file"], "manifest.json.minisig");
        assert_eq!(p["declared"], signed as u64);
        assert_eq!(p["actual"], edited.len() as u64);
        env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"])
            .code(3)
            .stderr_has(&format!(
                "signature manifest.json.minisig: trusted comment says manifest_size {signed} \
                 bytes but manifest.json is {} bytes",
                edited.len()
            ));
        assert!(!env.path("dest").exists());
    }
}

#[test]
fn countersignatures_declare_the_size_and_stock_minisign_still_verifies() {
    let env = Env::new();
    env.sample_bundle();
    let size = env.read("b/manifest.json").len();
    env.keygen("officer");
    env.run(&["sign", "b", "--key", "officer", "--trust", "k.pub"])
        .ok();
    let r = env.run(&[
        "verify",
        "b",
        "--trust",
        "k.pub",
        "--trust",
        "officer.pub",
        "--json",
    ]);
    r.ok();
    let signers = r.json()["signers"].as_array().unwrap().clone();
    assert_eq!(signers.len(), 2);
    for s in &signers {
        let comment = s["comment"].as_str().unwrap();
        assert!(
            comment.contains(&format!("\tmanifest_size:{size}")),
            "{comment}"
        );
    }
    require("minisign");
    let mut c = Command::new("minisign");
    c.args(["-Vm", "b/manifest.json", "-p", "k.pub"])
        .current_dir(env.dir.path());
    run_cmd(c).ok().stdout_has(&format!("manifest_size:{size}"));
}
