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

#[test]
fn v4_golden_bundle_over_volumes_with_parity_verifies_imports_and_rebuilds() {
    // Format version 4 (volumes, parity), written once from the repository root by airlock
    // 0.1.0 (issue 12) with a throwaway key, never to be regenerated:
    //   AIRLOCK_STATE=$(mktemp -d) airlock keygen --out /tmp/g4/key --unencrypted
    //   airlock pack fixtures/demo/tiny-model --out fixtures/golden/v4/bundle --key /tmp/g4/key \
    //     --expires never --sequence 1 --chunk-size 64KiB --channel golden \
    //     --volume-size 160KiB --parity 1
    //   cp /tmp/g4/key.pub fixtures/golden/v4/key.pub
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let bundle = fixtures.join("golden/v4/bundle");
    let key = fixtures.join("golden/v4/key.pub");
    let env = Env::new();
    let (b, k) = (bundle.to_str().unwrap(), key.to_str().unwrap());
    let vol = |n: u32| bundle.join(format!("vol-{n:03}"));
    let m = airlock::format::Manifest::parse(&std::fs::read(vol(1).join("manifest.json")).unwrap())
        .unwrap();
    assert_eq!(m.version, 4);
    let layout = m.volumes.clone().unwrap();
    assert_eq!(layout.data.len(), 2, "two data volumes");
    assert_eq!(
        layout.parity.as_ref().unwrap().volumes,
        1,
        "one parity volume"
    );
    // The whole bundle (the parent), then each volume alone: intact, the others still to check.
    env.run(&["verify", b, "--trust", k]).ok();
    for n in 1..=3 {
        let v = vol(n);
        env.run(&["verify", v.to_str().unwrap(), "--trust", k])
            .code(4);
        let run = |cmd: &str, args: &[&str]| {
            let out = std::process::Command::new(cmd)
                .args(args)
                .current_dir(&v)
                .output()
                .unwrap();
            assert!(out.status.success(), "{cmd} in volume {n}: {out:?}");
        };
        run("minisign", &["-Vm", "manifest.json", "-p", k]);
        run("sha256sum", &["-c", "SHA256SUMS"]);
    }
    env.run(&["import", b, "--trust", k, "--files", "dest"])
        .ok();
    assert_eq!(
        contents(&fixtures.join("demo/tiny-model")),
        contents(&env.path("dest/tiny-model"))
    );
    // Data volume 1 lost: rebuilt from volume 2 and the parity volume (the exact parity bytes
    // of this version are pinned here), imported into a fresh state and destination.
    let state = env.path("state2");
    let out = env
        .command(&[
            "import",
            vol(3).to_str().unwrap(),
            vol(2).to_str().unwrap(),
            "--trust",
            k,
            "--files",
            "dest2",
        ])
        .env("AIRLOCK_STATE", &state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        contents(&fixtures.join("demo/tiny-model")),
        contents(&env.path("dest2/tiny-model"))
    );
}

#[test]
fn v5_golden_delta_bundle_verifies_and_imports_beside_its_base() {
    // Format version 5 (a delta: bases, external blobs), written once from the repository root
    // by airlock 0.1.0 (issue 13) with a throwaway key, never to be regenerated:
    //   airlock keygen --out /tmp/g5/key --unencrypted
    //   airlock pack fixtures/demo/tiny-model --out fixtures/golden/v5/base --key /tmp/g5/key \
    //     --expires never --sequence 1 --chunk-size 64KiB --channel golden
    //   cp -r fixtures/demo/tiny-model /tmp/g5/tiny-model   # config.json replaced by NIGHT_2
    //   airlock pack /tmp/g5/tiny-model --out fixtures/golden/v5/delta --key /tmp/g5/key \
    //     --expires never --sequence 2 --chunk-size 64KiB --channel golden \
    //     --base fixtures/golden/v5/base --trust /tmp/g5/key.pub
    //   cp /tmp/g5/key.pub fixtures/golden/v5/key.pub
    const NIGHT_2: &str =
        "{\n  \"architectures\": [\"TinyForCausalLM\"],\n  \"hidden_size\": 64,\n  \"night\": 2\n}\n";
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let (base, delta) = (
        fixtures.join("golden/v5/base"),
        fixtures.join("golden/v5/delta"),
    );
    let key = fixtures.join("golden/v5/key.pub");
    let (b, d, k) = (
        base.to_str().unwrap(),
        delta.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let m = airlock::format::Manifest::parse(&std::fs::read(delta.join("manifest.json")).unwrap())
        .unwrap();
    assert_eq!(m.version, 5);
    assert_eq!(m.bases.len(), 1);
    assert!(m.blobs.iter().any(|b| b.external.is_some()));
    // Only the changed file (and the empty one, always carried) is in the delta's chunks.
    assert_eq!(m.carried_bytes(), NIGHT_2.len() as u64);
    let env = Env::new();
    env.run(&["verify", d, "--trust", k]).ok();
    let out = std::process::Command::new("minisign")
        .args(["-Vm", "manifest.json", "-p", k])
        .current_dir(&delta)
        .output()
        .unwrap();
    assert!(out.status.success(), "minisign: {out:?}");
    // A fresh enclave lacks the base: refused, nothing written.
    env.run(&["import", d, "--trust", k, "--files", "fresh"])
        .code(3)
        .stderr_has("does not carry 4 blobs that this enclave does not hold");
    assert!(!env.path("fresh").exists());
    // After the base, the delta imports into a new destination: the unchanged files copied
    // from where the base's import put them, the changed one from the delta.
    env.run(&["import", b, "--trust", k, "--files", "night1"])
        .ok();
    env.run(&["import", d, "--trust", k, "--files", "night2"])
        .ok();
    let mut want = contents(&fixtures.join("demo/tiny-model"));
    want.insert("config.json".into(), Some(NIGHT_2.as_bytes().to_vec()));
    assert_eq!(want, contents(&env.path("night2/tiny-model")));
    assert_eq!(
        contents(&fixtures.join("demo/tiny-model")),
        contents(&env.path("night1/tiny-model"))
    );
}
