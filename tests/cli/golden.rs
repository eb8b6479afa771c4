//! Golden bundles from earlier format versions: every later airlock must still read them.
//! `fixtures/golden/v1/` was written by airlock 0.1.0 from `fixtures/demo/tiny-model` and must
//! never be regenerated; likewise `fixtures/golden/v2/` (an image artifact, format version 2).

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
        snapshot(&fixtures.join("demo/tiny-model")),
        snapshot(&env.path("dest/tiny-model"))
    );
}

#[test]
fn v2_golden_bundle_with_an_image_verifies_and_imports() {
    // Written by airlock 0.1.0 from fixtures/demo/hello-image (+ a patch file); never regenerate.
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
    ])
    .ok();
    assert_eq!(
        snapshot(&fixtures.join("demo/hello-image/blobs")),
        snapshot(&env.path("images/blobs"))
    );
    assert!(env.path("dest/raise-max-tokens.patch").is_file());
}
