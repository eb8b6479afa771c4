//! Golden bundles from earlier format versions: every later airlock must still read them.
//! `fixtures/golden/v1/` was written by airlock 0.1.0 from `fixtures/demo/tiny-model` and must
//! never be regenerated.

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
