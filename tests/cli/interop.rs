//! Interop with stock tools: minisign verifies airlock's signatures, minisign's keys sign
//! bundles airlock accepts, sha256sum checks the chunks, tar lists them.

use std::process::Command;

use crate::support::*;

fn sh(env: &Env, script: &str) -> Run {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).current_dir(env.dir.path());
    run_cmd(c)
}

#[test]
fn minisign_and_sha256sum_verify_an_airlock_bundle() {
    require("minisign");
    let env = Env::new();
    env.sample_bundle();
    let r = sh(&env, "minisign -Vm b/manifest.json -p k.pub");
    r.ok().stdout_has("Trusted comment: timestamp:");
    // The trusted comment names the bundle, channel, sequence and the digest of SHA256SUMS.
    let sums = sh(&env, "sha256sum b/SHA256SUMS | cut -d' ' -f1")
        .ok()
        .stdout
        .trim()
        .to_string();
    r.stdout_has(&format!("sha256sums:{sums}"))
        .stdout_has("channel:default");
    sh(&env, "cd b && sha256sum -c SHA256SUMS").ok();
    // A prehashed signature: minisign -H (require prehashed) accepts it too.
    sh(&env, "minisign -H -Vm b/manifest.json -p k.pub").ok();
}

#[test]
fn minisign_rejects_an_edited_manifest() {
    require("minisign");
    let env = Env::new();
    env.sample_bundle();
    sh(&env, "sed -i 's/default/prod/' b/manifest.json").ok();
    assert_ne!(sh(&env, "minisign -Vm b/manifest.json -p k.pub").code, 0);
}

#[test]
fn a_minisign_generated_key_signs_bundles_airlock_accepts() {
    require("minisign");
    let env = Env::new();
    sh(&env, "minisign -G -W -p mk.pub -s mk.key").ok();
    sh(&env, "chmod 600 mk.key").ok();
    env.sample_tree("src");
    env.pack(&["src"], "mk.key", "b", &[]).ok();
    env.run(&["verify", "b", "--trust", "mk.pub"]).ok();
    sh(&env, "minisign -Vm b/manifest.json -p mk.pub").ok();
}

#[test]
fn chunks_open_with_stock_tar_and_zstd() {
    require("zstd");
    let env = Env::new();
    env.keygen("k");
    env.write(
        "src/tokenizer.json",
        "{\"vocab\": [1, 2, 3]}\n".repeat(10_000),
    );
    env.pack(&["src"], "k", "b", &[]).ok();
    let list = sh(&env, "tar -tf b/chunks/00000000.tar")
        .ok()
        .stdout
        .clone();
    let entry = list
        .lines()
        .find(|l| l.ends_with(".zst"))
        .expect("the JSON file is compressed");
    let out = sh(
        &env,
        &format!("tar -xOf b/chunks/00000000.tar {entry} | zstd -dc | cmp - src/tokenizer.json"),
    );
    out.ok();
}
