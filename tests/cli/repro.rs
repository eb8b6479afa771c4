//! Reproducible chunks: packing the same sources with the same options twice writes
//! byte-identical chunk files (files and directories, an image from an OCI layout, a Hugging Face
//! repo from the Hub emulator), so an officer can re-pack independently and compare with `cmp`
//! or `sha256sum`. Tar headers carry no wall-clock time: mtime 0, or `SOURCE_DATE_EPOCH`.

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::hub_emulator::{Hub, RepoDef};
use crate::images::build_image_set;
use crate::support::*;

/// The chunk files of bundle `dir`: name → bytes, in name order.
fn chunks(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir.join("chunks"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Every tar header of every chunk of `dir`: (name, mtime, uid, gid, mode, uname, gname).
fn headers(dir: &Path) -> Vec<(String, u64, u64, u64, u32, String, String)> {
    let mut out = Vec::new();
    for (_, bytes) in chunks(dir) {
        let mut ar = tar::Archive::new(&bytes[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut sink = Vec::new();
            e.read_to_end(&mut sink).unwrap();
            out.push((
                e.path().unwrap().to_string_lossy().into_owned(),
                h.mtime().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mode().unwrap(),
                String::from_utf8_lossy(h.username_bytes().unwrap_or(b"")).into_owned(),
                String::from_utf8_lossy(h.groupname_bytes().unwrap_or(b"")).into_owned(),
            ));
        }
    }
    assert!(!out.is_empty(), "no tar entries in {}", dir.display());
    out
}

#[track_caller]
fn same_chunks(a: &Path, b: &Path) {
    let (ca, cb) = (chunks(a), chunks(b));
    assert!(ca.len() > 1, "expected several chunks, got {}", ca.len());
    let names = |c: &[(String, Vec<u8>)]| c.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ca), names(&cb), "chunk names differ");
    for ((name, x), (_, y)) in ca.iter().zip(&cb) {
        assert!(
            x == y,
            "chunk {name} differs between two packs of the same sources"
        );
    }
    // And SHA256SUMS, which lists them, is identical too.
    assert_eq!(
        fs::read(a.join("SHA256SUMS")).unwrap(),
        fs::read(b.join("SHA256SUMS")).unwrap()
    );
}

#[track_caller]
fn headers_carry(dir: &Path, mtime: u64) {
    for (name, t, uid, gid, mode, uname, gname) in headers(dir) {
        assert_eq!(t, mtime, "{name}: mtime");
        assert_eq!((uid, gid, mode), (0, 0, 0o644), "{name}: owner and mode");
        assert_eq!((uname.as_str(), gname.as_str()), ("", ""), "{name}: names");
    }
}

fn pack_with(env: &Env, sources: &[&str], out: &str, epoch: Option<&str>) -> Run {
    let mut args = vec!["pack"];
    args.extend_from_slice(sources);
    args.extend_from_slice(&[
        "--out",
        out,
        "--key",
        "k",
        "--chunk-size",
        "64KiB",
        "--channel",
        "repro",
        "--sequence",
        "7",
    ]);
    let mut cmd = env.command(&args);
    match epoch {
        Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    run_cmd(cmd)
}

#[test]
fn files_and_directories_pack_to_identical_chunks_with_no_wall_clock_in_them() {
    let env = Env::new();
    env.keygen("k");
    env.sample_tree("src");
    // A large file (written as a pending blob under placeholder names, then patched).
    env.write("big.bin", pseudo_random(3 << 20, 9));
    env.write("notes.txt", "notes\n".repeat(100));
    let srcs = ["src", "big.bin", "notes.txt"];
    pack_with(&env, &srcs, "one", None).ok();
    pack_with(&env, &srcs, "two", None).ok();
    same_chunks(&env.path("one"), &env.path("two"));
    headers_carry(&env.path("one"), 0);

    pack_with(&env, &srcs, "three", Some("1700000000")).ok();
    pack_with(&env, &srcs, "four", Some("1700000000")).ok();
    same_chunks(&env.path("three"), &env.path("four"));
    headers_carry(&env.path("three"), 1_700_000_000);
    // The manifest still says when the bundle was made (freshness is judged by it).
    let m = env.run(&["inspect", "three", "--json"]).ok().json();
    assert_ne!(m["manifest"]["created"], "2023-11-14T22:13:20Z", "{m}");
}

#[test]
fn an_image_from_an_oci_layout_packs_to_identical_chunks() {
    let env = Env::new();
    env.keygen("k");
    let set = build_image_set(env.dir.path());
    let multi = format!("oci-layout://{}:multi", set.layout.display());
    let single = format!("oci-layout://{}:single", set.layout.display());
    let srcs = [multi.as_str(), single.as_str()];
    pack_with(&env, &srcs, "one", None).ok();
    pack_with(&env, &srcs, "two", None).ok();
    same_chunks(&env.path("one"), &env.path("two"));
    headers_carry(&env.path("one"), 0);
    pack_with(&env, &srcs, "three", Some("86400")).ok();
    headers_carry(&env.path("three"), 86400);
}

#[test]
fn a_hugging_face_repo_packs_to_identical_chunks() {
    let env = Env::new();
    env.keygen("k");
    let hub = Hub::start(vec![RepoDef::model("acme/tiny")
        .file("config.json", br#"{"a": 1}"#.to_vec())
        .file("tokenizer/vocab.txt", "word\n".repeat(30_000).into_bytes())
        .lfs("model.safetensors", pseudo_random(300_000, 4))
        .lfs("onnx/model.onnx", pseudo_random(90_000, 5))]);
    let pack = |out: &str, epoch: Option<&str>| {
        let mut args = vec!["pack", "hf://acme/tiny", "--out", out, "--key", "k"];
        args.extend(["--chunk-size", "64KiB", "--sequence", "3"]);
        let mut cmd = env.command(&args);
        cmd.env("HF_ENDPOINT", hub.url())
            .env("HF_HOME", env.path("hf-home"))
            .env_remove("HF_TOKEN");
        match epoch {
            Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
            None => cmd.env_remove("SOURCE_DATE_EPOCH"),
        };
        run_cmd(cmd)
    };
    pack("one", None).ok();
    pack("two", None).ok();
    same_chunks(&env.path("one"), &env.path("two"));
    headers_carry(&env.path("one"), 0);
    pack("three", Some("1")).ok();
    pack("four", Some("1")).ok();
    same_chunks(&env.path("three"), &env.path("four"));
    headers_carry(&env.path("three"), 1);
}

#[test]
fn a_bad_source_date_epoch_is_a_usage_error_naming_it_before_anything_is_written() {
    let env = Env::new();
    env.keygen("k");
    env.write("f.txt", "x");
    for bad in [
        "yesterday",
        "-1",
        "1.5",
        " 12",
        "99999999999999999999",
        "8589934592",
    ] {
        let r = pack_with(&env, &["f.txt"], "out", Some(bad));
        r.code(2).stderr_has("SOURCE_DATE_EPOCH");
        assert!(!env.path("out").exists(), "{bad:?}: nothing is written");
    }
    // The largest time a ustar header holds is accepted.
    pack_with(&env, &["f.txt"], "out", Some("8589934591")).ok();
    headers_carry(&env.path("out"), 8_589_934_591);
}
