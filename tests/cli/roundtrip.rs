//! pack → verify → import round trips.

use std::fs;

use crate::support::*;

#[test]
fn directory_round_trip_is_byte_exact() {
    let env = Env::new();
    let (bundle, _) = env.sample_bundle();
    // Several chunks (64 KiB limit), none over the limit.
    let chunks: Vec<_> = fs::read_dir(bundle.join("chunks"))
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert!(chunks.len() >= 3, "expected the large file to span chunks");
    for c in &chunks {
        assert!(
            c.metadata().unwrap().len() <= 64 * 1024,
            "{:?} exceeds the chunk size",
            c.path()
        );
    }
    env.run(&["verify", "b", "--trust", "k.pub"])
        .ok()
        .stdout_has("verified b");
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"])
        .ok();
    assert_eq!(contents(&env.path("src")), contents(&env.path("dest/src")));
}

#[test]
fn duplicate_content_is_stored_once() {
    let env = Env::new();
    env.sample_bundle();
    let run = env.run(&["inspect", "b", "--json"]).ok().json();
    let blobs = run["manifest"]["blobs"].as_array().unwrap();
    let digests: std::collections::HashSet<_> = blobs
        .iter()
        .map(|b| b["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests.len(), blobs.len());
    // config.json and sub/copy-of-config.json share one blob; empty.txt is the empty blob.
    let files = run["manifest"]["artifacts"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "file")
        .count();
    assert_eq!(files, 6);
    assert_eq!(blobs.len(), 5);
}

#[test]
fn reimport_is_a_noop_and_conflicts_stop_before_writing() {
    let env = Env::new();
    env.sample_bundle();
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"])
        .ok();
    let before = contents(&env.path("dest"));
    let again = env
        .run(&[
            "import", "b", "--trust", "k.pub", "--files", "dest", "--json",
        ])
        .ok()
        .json();
    assert_eq!(again["written"], 0);
    assert_eq!(contents(&env.path("dest")), before);

    // A file with other content where the bundle wants one: refused, nothing else touched.
    fs::write(env.path("dest/src/config.json"), b"locally edited").unwrap();
    fs::remove_file(env.path("dest/src/empty.txt")).unwrap();
    let edited = contents(&env.path("dest"));
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"])
        .code(1)
        .stderr_has("dest/src/config.json already exists with other content");
    assert_eq!(
        contents(&env.path("dest")),
        edited,
        "a refused import must not write anything"
    );
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let env = Env::new();
    env.sample_bundle();
    env.run(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--files",
        "dest",
        "--dry-run",
    ])
    .ok()
    .stdout_has("write ")
    .stdout_has("weights.bin");
    assert!(!env.path("dest").exists());
}

#[test]
fn single_files_and_several_sources() {
    let env = Env::new();
    env.keygen("k");
    env.write("one.bin", pseudo_random(1000, 7));
    env.write("tree/a.txt", "a");
    let out = env
        .pack(
            &["one.bin", "file://tree"],
            "k",
            "b",
            &["--json", "--channel", "nightly", "--sequence", "7"],
        )
        .ok()
        .json();
    assert_eq!(out["channel"], "nightly");
    assert_eq!(out["sequence"], 7);
    assert_eq!(out["artifacts"].as_array().unwrap().len(), 2);
    env.run(&["import", "b", "--trust", "k.pub", "--files", "d"])
        .ok();
    assert_eq!(env.read("d/one.bin"), pseudo_random(1000, 7));
    assert_eq!(env.read("d/tree/a.txt"), b"a");
}

#[test]
fn executable_bit_survives() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.keygen("k");
    let p = env.write("t/run.sh", "#!/bin/sh\necho hi\n");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    env.pack(&["t"], "k", "b", &[]).ok();
    env.run(&["import", "b", "--trust", "k.pub", "--files", "d"])
        .ok();
    let mode = fs::metadata(env.path("d/t/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[test]
fn spec_file_lists_sources_and_options() {
    let env = Env::new();
    env.keygen("k");
    env.write("cfg/data/x.txt", "x");
    env.write(
        "cfg/spec.toml",
        "channel = \"ci\"\nsequence = 99\nexpires = \"2d\"\nchunk_size = \"1MiB\"\n\n[[files]]\npath = \"data\"\nname = \"payload\"\n",
    );
    let out = env
        .run(&[
            "pack",
            "--spec",
            "cfg/spec.toml",
            "--out",
            "b",
            "--key",
            "k",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(out["channel"], "ci");
    assert_eq!(out["sequence"], 99);
    assert_eq!(out["artifacts"][0]["name"], "payload");
    env.run(&["import", "b", "--trust", "k.pub", "--files", "d"])
        .ok();
    assert_eq!(env.read("d/payload/x.txt"), b"x");

    env.write("bad.toml", "chanel = \"typo\"\n");
    env.run(&["pack", "--spec", "bad.toml", "--out", "b2", "--key", "k"])
        .code(2)
        .stderr_has("unknown field `chanel`");
    assert!(!env.path("b2").exists());
}

#[test]
fn pack_refuses_a_non_empty_output_and_odd_sources() {
    let env = Env::new();
    env.keygen("k");
    env.write("src/a", "a");
    env.write("full/x", "x");
    env.pack(&["src"], "k", "full", &[])
        .code(2)
        .stderr_has("is not empty");
    env.pack(&["missing-dir"], "k", "b", &[])
        .code(1)
        .stderr_has("missing-dir");
    assert!(
        !env.path("b").exists(),
        "a failed pack leaves no output directory"
    );
    std::os::unix::fs::symlink("/etc/passwd", env.path("src/link")).unwrap();
    env.pack(&["src"], "k", "b", &[])
        .code(2)
        .stderr_has("src/link is a symbolic link");
    assert!(!env.path("b").exists());
    env.pack(&["src"], "k", "b", &["--chunk-size", "1KiB"])
        .code(2)
        .stderr_has("chunk size");
    env.pack(&["ftp://example.org/model"], "k", "b", &[])
        .code(2)
        .stderr_has("unsupported source scheme");
}

#[test]
fn json_reports_are_machine_readable() {
    let env = Env::new();
    env.sample_bundle();
    let v = env
        .run(&["verify", "b", "--trust", "k.pub", "--json"])
        .ok()
        .json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["verified"], true);
    assert_eq!(v["signers"][0]["valid"], true);
    let bad = env.run(&["verify", "b", "--trust", "nope.pub", "--json"]);
    bad.code(1);
    assert_eq!(bad.json()["ok"], false);
}

#[test]
fn large_compressible_file_spans_windows_and_chunks() {
    // 20 MiB of text: several 8 MiB zstd windows, with a chunk limit that forces a rollover.
    let env = Env::new();
    env.keygen("k");
    let line: String = (0..2000)
        .map(|i| format!("{{\"token\": \"t{i}\", \"id\": {i}}}\n"))
        .collect();
    let mut text = String::new();
    while text.len() < 20 << 20 {
        text.push_str(&line);
    }
    env.write("src/big.jsonl", &text);
    env.write("src/weights.bin", pseudo_random(12 << 20, 5));
    env.pack(&["src"], "k", "b", &["--chunk-size", "8MiB"]).ok();
    // Read through the library (format version 3 writes a compact table), in the v1/v2 names.
    let m = airlock::format::Manifest::parse(&env.read("b/manifest.json")).unwrap();
    let m = serde_json::to_value(&m).unwrap();
    let encodings: Vec<&str> = m["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["segments"].as_array().unwrap())
        .map(|s| s["encoding"].as_str().unwrap())
        .collect();
    assert!(
        encodings.contains(&"zstd") && encodings.contains(&"none"),
        "{encodings:?}"
    );
    env.run(&["import", "b", "--trust", "k.pub", "--files", "d"])
        .ok();
    assert_eq!(contents(&env.path("src")), contents(&env.path("d/src")));
}
