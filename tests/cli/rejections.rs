//! Every rejection `verify` names, each checked for exit code, message, and that `import`
//! writes nothing.

use std::fs;
use std::path::Path;

use airlock::format::Manifest;
use airlock::sign::SigningKey;

use crate::support::*;

/// Asserts verify and import both reject with exit 3 and `msg`, and import wrote nothing.
#[track_caller]
pub(crate) fn rejected(env: &Env, trust: &str, msgs: &[&str]) {
    let v = env.run(&["verify", "b", "--trust", trust]);
    v.code(3);
    for m in msgs {
        v.stderr_has(m);
    }
    let i = env.run(&["import", "b", "--trust", trust, "--files", "dest"]);
    i.code(3);
    for m in msgs {
        i.stderr_has(m);
    }
    assert!(
        !env.path("dest").exists(),
        "a rejected import must write nothing"
    );
}

pub(crate) fn manifest(env: &Env) -> Manifest {
    Manifest::decode_unvalidated(&env.read("b/manifest.json")).unwrap()
}

/// Rewrites the manifest (after `edit`) and signs it properly with key `k`.
pub(crate) fn resign(env: &Env, edit: impl FnOnce(&mut Manifest)) {
    let mut m = manifest(env);
    edit(&mut m);
    let bytes = m.to_bytes();
    fs::write(env.path("b/manifest.json"), &bytes).unwrap();
    fs::write(env.path("b/SHA256SUMS"), m.sha256sums()).unwrap();
    let key = SigningKey::load(&env.path("k")).unwrap();
    let sig = airlock::bundle::sign_manifest(&m, &bytes, &key).unwrap();
    fs::write(env.path("b/manifest.json.minisig"), sig).unwrap();
}

pub(crate) fn flip_byte(path: &Path, at: u64) {
    let mut data = fs::read(path).unwrap();
    data[at as usize] ^= 0x01;
    fs::write(path, data).unwrap();
}

#[test]
fn missing_chunk() {
    let env = Env::new();
    env.sample_bundle();
    fs::remove_file(env.path("b/chunks/00000001.tar")).unwrap();
    rejected(&env, "k.pub", &["missing chunk: 00000001.tar"]);
}

#[test]
fn corrupt_chunk_names_both_digests() {
    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    flip_byte(&env.path("b/chunks/00000000.tar"), 5000);
    let expected = m.chunks[0].sha256.to_string();
    rejected(
        &env,
        "k.pub",
        &[
            "corrupt chunk: 00000000.tar has digest sha256:",
            &format!("expected {expected}"),
        ],
    );
}

#[test]
fn truncated_and_extended_chunks() {
    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    let p = env.path("b/chunks/00000000.tar");
    let data = fs::read(&p).unwrap();
    fs::write(&p, &data[..data.len() - 100]).unwrap();
    let mut longer = fs::read(env.path("b/chunks/00000001.tar")).unwrap();
    longer.extend_from_slice(b"appended");
    fs::write(env.path("b/chunks/00000001.tar"), longer).unwrap();
    rejected(
        &env,
        "k.pub",
        &[
            &format!(
                "truncated chunk: 00000000.tar has {} bytes, expected {}",
                m.chunks[0].size - 100,
                m.chunks[0].size
            ),
            &format!(
                "oversized chunk: 00000001.tar has {} bytes",
                m.chunks[1].size + 8
            ),
        ],
    );
}

#[test]
fn unexpected_extra_files() {
    let env = Env::new();
    env.sample_bundle();
    env.write("b/README.txt", "hello");
    env.write("b/chunks/00000099.tar", "x");
    rejected(
        &env,
        "k.pub",
        &[
            "unexpected file: README.txt",
            "unexpected file: chunks/00000099.tar",
        ],
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let env = Env::new();
    env.sample_bundle();
    fs::remove_file(env.path("b/chunks/00000002.tar")).unwrap();
    flip_byte(&env.path("b/chunks/00000000.tar"), 700);
    env.write("b/stray", "x");
    let v = env.run(&["verify", "b", "--trust", "k.pub", "--json"]);
    v.code(3);
    let problems = v.json()["error"]["problems"].clone();
    let codes: Vec<&str> = problems
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    for c in ["missing-chunk", "corrupt-chunk", "unexpected-file"] {
        assert!(codes.contains(&c), "{c} not in {codes:?}");
    }
}

#[test]
fn missing_signature() {
    let env = Env::new();
    env.sample_bundle();
    fs::remove_file(env.path("b/manifest.json.minisig")).unwrap();
    rejected(
        &env,
        "k.pub",
        &["missing signature", "no valid signature by a trusted key"],
    );
}

#[test]
fn bad_signature_file() {
    let env = Env::new();
    env.sample_bundle();
    env.write(
        "b/manifest.json.minisig",
        "untrusted comment: x\nnot base64 at all\n",
    );
    rejected(&env, "k.pub", &["bad signature manifest.json.minisig"]);
}

#[test]
fn unknown_signer() {
    let env = Env::new();
    env.sample_bundle();
    env.keygen("other");
    let id = String::from_utf8(env.read("k.pub"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    rejected(
        &env,
        "other.pub",
        &[&format!(
            "unknown signer: manifest.json.minisig is signed by key {id}"
        )],
    );
}

#[test]
fn edited_manifest() {
    let env = Env::new();
    env.sample_bundle();
    let text = String::from_utf8(env.read("b/manifest.json")).unwrap();
    fs::write(
        env.path("b/manifest.json"),
        text.replace("\"channel\": \"default\"", "\"channel\": \"prod\""),
    )
    .unwrap();
    rejected(
        &env,
        "k.pub",
        &["edited manifest: manifest.json does not match signature manifest.json.minisig"],
    );
}

#[test]
fn signature_from_another_bundle_by_the_same_key() {
    let env = Env::new();
    env.sample_bundle();
    env.write("other/x", "other content");
    env.pack(&["other"], "k", "b2", &[]).ok();
    fs::copy(
        env.path("b2/manifest.json.minisig"),
        env.path("b/manifest.json.minisig"),
    )
    .unwrap();
    rejected(&env, "k.pub", &["edited manifest"]);
}

#[test]
fn chunk_from_another_bundle() {
    let env = Env::new();
    env.sample_bundle();
    env.write("src2/x", pseudo_random(200_000, 9));
    env.pack(&["src2"], "k", "b2", &["--chunk-size", "64KiB"])
        .ok();
    fs::copy(
        env.path("b2/chunks/00000000.tar"),
        env.path("b/chunks/00000000.tar"),
    )
    .unwrap();
    // Both chunks are full 64 KiB chunks: same size, other digest.
    rejected(&env, "k.pub", &["corrupt chunk: 00000000.tar"]);
}

#[test]
fn unsupported_version() {
    let env = Env::new();
    env.sample_bundle();
    // Version 3 is the current one (piece digests, compact file table), 4 the one spread over
    // volumes, 5 a delta bundle; 6 is from the future (a reader of 1..=4 refuses a version 5
    // bundle the same way).
    resign(&env, |m| m.version = 6);
    rejected(
        &env,
        "k.pub",
        &[
            "unsupported version",
            "unsupported bundle format version 6; this airlock reads versions 1..=5 (a newer airlock wrote this bundle: upgrade the importing side)",
        ],
    );
}

#[test]
fn expired_bundle() {
    let env = Env::new();
    env.sample_bundle();
    resign(&env, |m| m.expires = Some("2020-01-01T00:00:00Z".into()));
    rejected(
        &env,
        "k.pub",
        &["expired: the bundle expired at 2020-01-01T00:00:00Z"],
    );
}

#[test]
fn edited_sha256sums() {
    let env = Env::new();
    env.sample_bundle();
    let sums = String::from_utf8(env.read("b/SHA256SUMS")).unwrap();
    env.write("b/SHA256SUMS", sums.lines().next().unwrap());
    rejected(&env, "k.pub", &["SHA256SUMS does not match"]);
}

#[test]
fn trusted_comment_must_match_the_manifest() {
    let env = Env::new();
    env.sample_bundle();
    // A valid signature over this manifest whose trusted comment names another sequence.
    let m = manifest(&env);
    let bytes = env.read("b/manifest.json");
    let key = SigningKey::load(&env.path("k")).unwrap();
    let comment = airlock::sign::trusted_comment(
        1,
        &[
            ("bundle", m.bundle_id.clone()),
            ("channel", m.channel.clone()),
            ("sequence", "1".into()),
            ("sha256sums", "00".into()),
        ],
    );
    env.write(
        "b/manifest.json.minisig",
        key.sign(&bytes, &comment, "x").unwrap(),
    );
    rejected(&env, "k.pub", &["trusted comment says sequence \"1\""]);
}

#[test]
fn structurally_invalid_manifest_even_if_signed() {
    let env = Env::new();
    env.sample_bundle();
    resign(&env, |m| {
        let b = m.blobs[0].clone();
        m.blobs.push(b);
    });
    rejected(&env, "k.pub", &["invalid manifest", "is listed twice"]);
}

#[test]
fn every_signature_by_a_trusted_key_is_checked_not_only_the_first() {
    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    let bytes = env.read("b/manifest.json");
    let key = SigningKey::load(&env.path("k")).unwrap();
    let comment = airlock::sign::trusted_comment(
        1,
        &[("bundle", m.bundle_id.clone()), ("channel", "evil".into())],
    );
    env.write(
        "b/signatures/zzz.minisig",
        key.sign(&bytes, &comment, "x").unwrap(),
    );
    rejected(
        &env,
        "k.pub",
        &["signature signatures/zzz.minisig: trusted comment says channel \"evil\""],
    );
}

#[test]
fn bundle_files_must_not_be_symlinks() {
    let env = Env::new();
    env.sample_bundle();
    fs::rename(env.path("b/SHA256SUMS"), env.path("sums-elsewhere")).unwrap();
    std::os::unix::fs::symlink(env.path("sums-elsewhere"), env.path("b/SHA256SUMS")).unwrap();
    rejected(&env, "k.pub", &["SHA256SUMS does not match"]);
}

#[test]
fn entries_whose_parent_directory_is_not_listed() {
    let env = Env::new();
    env.sample_bundle();
    resign(&env, |m| {
        m.artifacts[0].entries.retain(|e| e.path != "sub/deep")
    });
    rejected(
        &env,
        "k.pub",
        &["the parent \"sub/deep\" of \"sub/deep/weights.bin\" is not listed as a directory"],
    );
}
