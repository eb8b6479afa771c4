//! Golden bundles from earlier format versions: every later airlock must still read them.
//! `fixtures/golden/v1/` was written by airlock 0.1.0 from `fixtures/demo/tiny-model` and must
//! never be regenerated; likewise `fixtures/golden/v2/` (format version 2: an image, a file, an hf-repo).

use std::path::Path;

use crate::support::*;

#[test]
fn v1_golden_bundle_verifies_and_imports() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let bundle = fixtures.join("golden/v1/bundle");
    let key = fixtures.join("golden/v1/key.pub");
    let env = Env::new();
    let (b, k) = (bundle.to_str().unwrap(), key.to_str().unwrap());
    env.run(&["verify", b, "--trust", k]).ok();
    env.run(&["import", b, "--trust", k, "--files", "dest"])
        .ok();
    assert_eq!(
        contents(&fixtures.join("demo/tiny-model")),
        contents(&env.path("dest/tiny-model"))
    );
}

#[test]
fn v2_golden_bundle_with_an_image_and_an_hf_repo_verifies_and_imports() {
    // Written by airlock 0.1.0 from fixtures/demo/hello-image, a patch file, and
    // fixtures/demo/tiny-model served as hf://demo/tiny-model by examples/hub_emulator (files over
    // 100 kB as LFS); never regenerate.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let bundle = fixtures.join("golden/v2/bundle");
    let key = fixtures.join("golden/v2/key.pub");
    let env = Env::new();
    let (b, k) = (bundle.to_str().unwrap(), key.to_str().unwrap());
    env.run(&["verify", b, "--trust", k]).ok();
    env.run(&[
        "import",
        b,
        "--trust",
        k,
        "--files",
        "dest",
        "--oci-layout",
        "images",
        "--hf-cache=hf",
    ])
    .ok();
    assert_eq!(
        contents(&fixtures.join("demo/hello-image/blobs")),
        contents(&env.path("images/blobs"))
    );
    assert!(env.path("dest/raise-max-tokens.patch").is_file());
    let repo = env.path("hf/models--demo--tiny-model");
    let commit = String::from_utf8(std::fs::read(repo.join("refs/main")).unwrap()).unwrap();
    let snap = repo.join("snapshots").join(&commit);
    for (rel, content) in contents(&fixtures.join("demo/tiny-model")) {
        if let Some(bytes) = content {
            // Snapshot entries are relative symlinks into blobs/; reading follows them.
            let got = std::fs::read(snap.join(&rel)).unwrap();
            assert!(got == bytes, "{rel} differs in the imported snapshot");
        }
    }
    assert!(repo.join(format!("trees/{commit}.json")).is_file());
}

#[test]
fn v3_golden_bundle_with_piece_digests_verifies_inspects_imports_and_passes_stock_tools() {
    // Format version 3 (piece digests, compact file table), written once from the repository
    // root by airlock 0.1.0 (issue 10) with a throwaway key, never to be regenerated:
    //   AIRLOCK_STATE=$(mktemp -d) airlock keygen --out /tmp/g3/key --unencrypted
    //   airlock pack fixtures/demo/tiny-model --out fixtures/golden/v3/bundle --key /tmp/g3/key \
    //     --expires never --sequence 1 --chunk-size 64KiB --channel golden
    //   cp /tmp/g3/key.pub fixtures/golden/v3/key.pub
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let bundle = fixtures.join("golden/v3/bundle");
    let key = fixtures.join("golden/v3/key.pub");
    let env = Env::new();
    let (b, k) = (bundle.to_str().unwrap(), key.to_str().unwrap());
    let m = airlock::format::Manifest::parse(&std::fs::read(bundle.join("manifest.json")).unwrap())
        .unwrap();
    assert_eq!(m.version, 3);
    assert!(m.chunks.iter().all(|c| c.pieces.len() == 1));
    env.run(&["verify", b, "--trust", k])
        .ok()
        .stdout_has("3 chunks and 6 blobs check out");
    env.run(&["inspect", b, "--trust", k])
        .ok()
        .stdout_has("tiny-model")
        .stdout_has("6 files")
        .stdout_has("expires   never");
    env.run(&["import", b, "--trust", k, "--files", "dest"])
        .ok();
    assert_eq!(
        contents(&fixtures.join("demo/tiny-model")),
        contents(&env.path("dest/tiny-model"))
    );
    // The officer's check with stock tools: minisign -V, then sha256sum -c.
    let run = |cmd: &str, args: &[&str]| {
        let out = std::process::Command::new(cmd)
            .args(args)
            .current_dir(&bundle)
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {out:?}");
    };
    run("minisign", &["-Vm", "manifest.json", "-p", k]);
    run("sha256sum", &["-c", "SHA256SUMS"]);
}
