//! Pack in one read: local files are hashed as they are written into chunks, identical files
//! are found by size and head without a hashing pre-pass, a file that changes while it is
//! packed aborts the pack, and a bundle that cannot fit the output filesystem is refused before
//! a chunk is written. Through the real binary.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::crash::Tmpfs;
use crate::support::{pseudo_random, Env};

/// The manifest in the in-memory (v1-style) JSON form, whatever version the bundle is.
fn manifest(env: &Env, out: &str) -> serde_json::Value {
    let bytes = env.read(&format!("{out}/manifest.json"));
    serde_json::to_value(airlock::format::Manifest::parse(&bytes).unwrap()).unwrap()
}

/// Path → blob digest of every file entry of the first artifact.
fn entry_blobs(m: &serde_json::Value) -> BTreeMap<String, String> {
    m["artifacts"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "file")
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["blob"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    airlock::format::Digest::of(data).to_string()
}

/// Verify, the stock-tool check, tar entry names that carry the blob digests, and an import that
/// gives back the source tree byte for byte.
fn round_trip(env: &Env, out: &str, src: &str) {
    env.run(&["verify", out, "--trust", "k.pub"]).ok();
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(env.path(out))
        .status()
        .unwrap();
    assert!(sums.success(), "sha256sum -c over the chunks");
    let m = manifest(env, out);
    let mut want = Vec::new();
    for b in m["blobs"].as_array().unwrap() {
        let hex = b["digest"].as_str().unwrap().trim_start_matches("sha256:");
        for (i, s) in b["segments"].as_array().unwrap().iter().enumerate() {
            let zst = if s["encoding"] == "zstd" { ".zst" } else { "" };
            want.push(format!("blobs/sha256/{hex}.{i:04}{zst}"));
        }
    }
    let mut got = Vec::new();
    for c in m["chunks"].as_array().unwrap() {
        let path = env.path(&format!("{out}/chunks/{}", c["name"].as_str().unwrap()));
        let mut ar = tar::Archive::new(fs::File::open(path).unwrap());
        for e in ar.entries().unwrap() {
            got.push(e.unwrap().path().unwrap().display().to_string());
        }
    }
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "every segment's tar entry is named by its blob's digest"
    );
    let dest = format!("{out}-imported");
    env.run(&["import", out, "--trust", "k.pub", "--files", &dest])
        .ok();
    let name = Path::new(src).file_name().unwrap().to_str().unwrap();
    assert_eq!(
        crate::support::contents(&env.path(src)),
        crate::support::contents(&env.path(&format!("{dest}/{name}"))),
        "the import gives back the source tree"
    );
}

#[test]
fn identical_files_are_one_blob_large_and_small() {
    let env = Env::new();
    env.keygen("k");
    let big = pseudo_random(3 << 20, 7);
    env.write("src/a/weights.bin", &big);
    env.write("src/b/weights-copy.bin", &big);
    env.write("src/c.json", br#"{"same": true}"#);
    env.write("src/d.json", br#"{"same": true}"#);
    env.write("src/empty1", b"");
    env.write("src/empty2", b"");
    // Chunks smaller than the big file: its segments span chunks.
    env.pack(&["src"], "k", "out", &["--chunk-size", "1MiB"])
        .ok();
    let m = manifest(&env, "out");
    let e = entry_blobs(&m);
    assert_eq!(e["a/weights.bin"], sha256_hex(&big));
    assert_eq!(e["a/weights.bin"], e["b/weights-copy.bin"]);
    assert_eq!(e["c.json"], sha256_hex(br#"{"same": true}"#));
    assert_eq!(e["c.json"], e["d.json"]);
    assert_eq!(e["empty1"], sha256_hex(b""));
    assert_eq!(e["empty1"], e["empty2"]);
    assert_eq!(
        m["blobs"].as_array().unwrap().len(),
        3,
        "one blob per content"
    );
    round_trip(&env, "out", "src");
}

#[test]
fn files_of_equal_size_but_different_bytes_are_distinct_blobs() {
    let env = Env::new();
    env.keygen("k");
    let one = pseudo_random(3 << 20, 1);
    // The same size; one differs from `one` only after its first MiB (the head compared
    // before a full hash), one from its first byte; and two small ones of one size.
    let mut late = one.clone();
    let n = late.len();
    late[n - 1] ^= 0xff;
    let early = pseudo_random(3 << 20, 2);
    env.write("src/one.bin", &one);
    env.write("src/late.bin", &late);
    env.write("src/early.bin", &early);
    env.write("src/x.txt", b"xxxx");
    env.write("src/y.txt", b"yyyy");
    env.pack(&["src"], "k", "out", &["--chunk-size", "1MiB"])
        .ok();
    let m = manifest(&env, "out");
    let e = entry_blobs(&m);
    assert_eq!(e["one.bin"], sha256_hex(&one));
    assert_eq!(e["late.bin"], sha256_hex(&late));
    assert_eq!(e["early.bin"], sha256_hex(&early));
    assert_eq!(e["x.txt"], sha256_hex(b"xxxx"));
    assert_eq!(e["y.txt"], sha256_hex(b"yyyy"));
    assert_eq!(m["blobs"].as_array().unwrap().len(), 5);
    round_trip(&env, "out", "src");
}

#[test]
fn compressible_and_stored_files_round_trip_in_one_pass() {
    let env = Env::new();
    env.keygen("k");
    env.write(
        "src/tokenizer.json",
        "{\"vocab\": [1, 2, 3]}\n".repeat(200_000),
    );
    env.write("src/small.json", "{\"a\": 1}\n".repeat(1000));
    env.write("src/dense.bin", pseudo_random(2 << 20, 3));
    env.pack(&["src"], "k", "out", &["--chunk-size", "1MiB"])
        .ok();
    let m = manifest(&env, "out");
    let zstd = m["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["segments"].as_array().unwrap())
        .filter(|s| s["encoding"] == "zstd")
        .count();
    assert!(zstd >= 2, "the json files are compressed: {m}");
    round_trip(&env, "out", "src");
}

#[test]
fn a_file_changed_while_it_is_packed_aborts_the_pack() {
    let env = Env::new();
    env.keygen("k");
    let path = env.write("src/weights.bin", pseudo_random(64 << 20, 5));
    env.write("src/config.json", b"{}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Rewrites a byte in place (same size) every millisecond while the pack runs.
    let writer = {
        let stop = stop.clone();
        let path = path.clone();
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all_at(&[i as u8], (i * 7919) % (64 << 20)).unwrap();
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let r = env.run_for(120, &["pack", "src", "--out", "out", "--key", "k"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    // As before single-pass packing: an operational error (the operator packs again).
    r.code(1).stderr_has("changed while it was being packed");
    assert!(
        !env.path("out").exists(),
        "the failed pack removed its output"
    );
}

#[test]
fn a_file_that_grows_while_it_is_packed_aborts_the_pack() {
    let env = Env::new();
    env.keygen("k");
    let path = env.write("src/log.bin", pseudo_random(32 << 20, 6));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(b"more").unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let r = env.run_for(120, &["pack", "src", "--out", "out", "--key", "k"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    r.code(1);
    assert!(
        r.stderr.contains("while it was being packed"),
        "{}",
        r.stderr
    );
    assert!(
        !env.path("out").exists(),
        "the failed pack removed its output"
    );
}

#[test]
fn a_bundle_larger_than_the_output_filesystem_is_refused_before_a_chunk_is_written() {
    let env = Env::new();
    env.keygen("k");
    // 64 MiB stay free (the reserve); the tmpfs holds 80 MiB, the source is 24 MiB of dense
    // bytes: the bundle cannot fit.
    env.write("src/weights.bin", pseudo_random(24 << 20, 9));
    let disk = env.path("disk");
    let _fs = Tmpfs::mount(&disk, "80m");
    let r = env.run(&["pack", "src", "--out", "disk/out", "--key", "k"]);
    r.code(1)
        .stderr_has("disk/out")
        .stderr_has("available")
        .stderr_has("needs up to");
    assert!(
        r.stderr.contains(" bytes); free space or pack elsewhere"),
        "the exact bytes needed are named: {}",
        r.stderr
    );
    // Nothing was written: no chunk, no output directory left behind.
    assert!(
        !disk.join("out").exists(),
        "{:?}",
        fs::read_dir(&disk).unwrap().count()
    );
    // The same source fits a filesystem with room for it.
    env.write("src/weights.bin", pseudo_random(4 << 20, 9));
    env.run(&["pack", "src", "--out", "disk/out", "--key", "k"])
        .ok();
}
