//! Importing delta bundles (format version 5): where airlock records the blobs it imported
//! (`<state>/holdings.json`), the proof before anything is written that every external blob is
//! available to the target that needs it (in that store, or copied from a recorded place with
//! its digest re-checked), and the one missing-base error with the catch-up advice.

use std::fs;
use std::path::Path;

use airlock::format::Digest;
use serde_json::Value;

use crate::support::tree::snapshot;
use crate::support::*;

/// `holdings.json` of the workspace's state (`Null` if absent).
fn holdings(env: &Env) -> Value {
    match fs::read(env.state_dir().join("holdings.json")) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => Value::Null,
    }
}

/// The locations recorded for `digest`: (store, root, path).
fn places(h: &Value, digest: &Digest) -> Vec<(String, String, String)> {
    h["blobs"][digest.to_string()]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        l["store"].as_str().unwrap().to_string(),
                        l["root"].as_str().unwrap().to_string(),
                        l["path"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn canon(p: &Path) -> String {
    fs::canonicalize(p).unwrap().to_str().unwrap().to_string()
}

#[test]
fn a_completed_import_records_where_each_blob_is() {
    let env = Env::new();
    let (b, _) = env.sample_bundle();
    // An old state directory (a previous release's: state.json, no holdings.json) keeps working.
    env.write("other", b"x");
    env.pack(&["other"], "k", "b0", &["--channel", "other"])
        .ok();
    env.run(&["import", "b0", "--trust", "k.pub", "--files", "d0"])
        .ok();
    fs::remove_file(env.state_dir().join("holdings.json")).unwrap();
    assert!(env.state_dir().join("state.json").exists());

    env.run(&[
        "import",
        b.to_str().unwrap(),
        "--trust",
        "k.pub",
        "--files",
        "dst",
    ])
    .ok();
    let h = holdings(&env);
    let m: Value = serde_json::from_slice(&env.read("b/manifest.json")).unwrap();
    let bundles = h["bundles"].as_array().unwrap();
    assert_eq!(bundles.len(), 1, "{h}");
    assert_eq!(bundles[0]["bundle_id"], m["bundle_id"]);
    let root = canon(&env.path("dst"));
    let weights = Digest::of(&pseudo_random(300_000, 1));
    assert_eq!(
        places(&h, &weights),
        [(
            "files".into(),
            root.clone(),
            "src/sub/deep/weights.bin".into()
        )]
    );
    // Two files of one content: both places recorded.
    let config = Digest::of(br#"{"model_type": "tiny"}"#);
    let mut p = places(&h, &config);
    p.sort();
    assert_eq!(
        p,
        [
            ("files".into(), root.clone(), "src/config.json".into()),
            ("files".into(), root, "src/sub/copy-of-config.json".into()),
        ]
    );
    // A re-import (everything kept) records the same places, once.
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dst"])
        .ok();
    assert_eq!(places(&holdings(&env), &weights).len(), 1);
}

#[test]
fn a_failed_import_records_nothing() {
    let env = Env::new();
    env.sample_bundle();
    env.write("dst/src/config.json", b"local edit");
    let tree = snapshot(&env.path("dst"));
    let before = fs::read(env.state_dir().join("holdings.json")).ok();
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dst"])
        .code(1)
        .stderr_has("already exists with other content");
    assert_eq!(fs::read(env.state_dir().join("holdings.json")).ok(), before);
    assert_eq!(snapshot(&env.path("dst")), tree);
}
