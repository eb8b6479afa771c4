//! Format version 3 (issue 10): piece digests checked on every core, a damaged piece named with
//! its byte range and the blobs it hit, the compact file table refused as strictly as the v1/v2
//! form, and the officer's stock-tool check still working.

use std::fs;
use std::process::Command;

use airlock::format::pieces::DEFAULT_PIECE_SIZE;
use airlock::format::{v3, Digest, Manifest};
use airlock::sign::SigningKey;

use crate::rejections::{flip_byte, manifest, resign};
use crate::support::*;

/// Signs raw manifest bytes `bytes` (describing `like`) with key `k` as bundle `b`'s manifest.
fn sign_bytes(env: &Env, like: &Manifest, bytes: &[u8]) {
    fs::write(env.path("b/manifest.json"), bytes).unwrap();
    fs::write(env.path("b/SHA256SUMS"), like.sha256sums()).unwrap();
    let key = SigningKey::load(&env.path("k")).unwrap();
    let sig = airlock::bundle::sign_manifest(like, bytes, &key).unwrap();
    fs::write(env.path("b/manifest.json.minisig"), sig).unwrap();
}

fn refused(env: &Env, msgs: &[&str]) {
    for args in [
        &["verify", "b", "--trust", "k.pub"][..],
        &["import", "b", "--trust", "k.pub", "--files", "dest"][..],
    ] {
        let r = env.run(args);
        r.code(3);
        for m in msgs {
            r.stderr_has(m);
        }
    }
    assert!(
        !env.path("dest").exists(),
        "a rejected import writes nothing"
    );
}

#[test]
fn pack_writes_v3_with_piece_digests_and_stock_tools_still_check_it() {
    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    assert_eq!(m.version, 3);
    assert_eq!(m.piece_size, DEFAULT_PIECE_SIZE);
    for c in &m.chunks {
        let data = fs::read(env.path(&format!("b/chunks/{}", c.name))).unwrap();
        assert_eq!(
            c.pieces,
            airlock::format::pieces::digests(&data, DEFAULT_PIECE_SIZE)
        );
        assert_eq!(c.sha256, Digest::of(&data));
    }
    // The compact form reads back to the same in-memory manifest, and writes the same bytes.
    let bytes = env.read("b/manifest.json");
    assert_eq!(Manifest::parse(&bytes).unwrap(), m);
    assert_eq!(m.to_bytes(), bytes);
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("\"version\": 3,") && text.contains("\"piece_size\": 16777216,"));
    // The officer's check with stock tools: sha256sum -c over SHA256SUMS.
    let out = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(env.path("b"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();
}

#[test]
fn a_corrupt_byte_in_the_middle_of_one_chunk_names_its_piece_range_and_blob() {
    let env = Env::new();
    env.keygen("k");
    let big = pseudo_random(40 << 20, 11);
    env.write("src/big.bin", &big);
    env.write("src/small.txt", "small\n");
    env.pack(&["src"], "k", "b", &[]).ok();
    let m = manifest(&env);
    assert_eq!(m.chunks.len(), 1, "one chunk");
    assert_eq!(m.chunks[0].pieces.len(), 3, "40 MiB in 16 MiB pieces");
    let b = m.blobs.iter().find(|b| b.size == big.len() as u64).unwrap();
    let at = b.segments[0].offset + (20 << 20);
    flip_byte(&env.path("b/chunks/00000000.tar"), at);
    let (start, end) = (DEFAULT_PIECE_SIZE, 2 * DEFAULT_PIECE_SIZE);
    let want = format!("corrupt piece: piece 1 of chunk 00000000.tar (bytes {start}..{end})");
    refused(&env, &[&want, &format!("blobs hit: {}", Digest::of(&big))]);
    let r = env.run(&["verify", "b", "--trust", "k.pub", "--json"]);
    r.code(3);
    let problems = r.json()["error"]["problems"].clone();
    let piece = problems
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "corrupt-piece")
        .unwrap_or_else(|| panic!("{problems:#}"));
    assert_eq!(piece["piece"], 1);
    assert_eq!(piece["start"], start);
    assert_eq!(piece["end"], end);
    assert_eq!(
        piece["blobs"],
        serde_json::json!([Digest::of(&big).to_string()])
    );
    // The whole-chunk digest is named too, as `sha256sum -c` sees it.
    assert!(problems
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["code"] == "corrupt-chunk"));
    // Only the damaged piece: the other two matched.
    assert_eq!(
        problems
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["code"] == "corrupt-piece")
            .count(),
        1
    );
}

#[test]
fn a_wrong_piece_count_or_piece_size_is_refused_at_validation() {
    let env = Env::new();
    env.sample_bundle();
    resign(&env, |m| {
        let d = m.chunks[0].sha256;
        m.chunks[0].pieces.push(d);
    });
    refused(
        &env,
        &[
            "invalid manifest",
            "chunk 00000000.tar lists 2 piece digests",
            "need 1",
        ],
    );
    let env = Env::new();
    env.sample_bundle();
    resign(&env, |m| m.chunks[0].pieces.clear());
    refused(&env, &["invalid manifest", "lists 0 piece digests"]);
    for (size, msg) in [
        (3 << 20, "piece_size 3145728 is not a power of two"),
        (
            1 << 15,
            "piece_size 32768 is not a power of two in 65536..=1073741824",
        ),
        (2 << 30, "piece_size 2147483648"),
        (0, "piece_size 0"),
    ] {
        let env = Env::new();
        env.sample_bundle();
        resign(&env, |m| m.piece_size = size);
        refused(&env, &["invalid manifest", msg]);
    }
    // Piece digests in a version 2 manifest (written in the v2 form, which has no field for
    // them, they cannot appear; the in-memory rule is checked through the library).
    let mut m = manifest(&env);
    m.version = 2;
    let err = m.validate().unwrap_err().to_string();
    assert!(err.contains("piece digests need format version 3"), "{err}");
}

#[test]
fn the_compact_table_is_refused_as_strictly_as_the_v1_form() {
    type Edit = Box<dyn Fn(&mut v3::ManifestV3)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|w| w.artifacts[0].entries[1].parent = 9_999),
            "parent 9999 is not an earlier entry",
        ),
        (
            // An entry naming itself (or a later one) as its parent.
            Box::new(|w| w.artifacts[0].entries[0].parent = 1),
            "parent 1 is not an earlier entry",
        ),
        (
            Box::new(|w| {
                let file = w.artifacts[0]
                    .entries
                    .iter()
                    .position(|e| e.blob.is_some())
                    .unwrap();
                let child = v3::EntryV3 {
                    parent: file as u32 + 1,
                    name: "x".into(),
                    blob: None,
                    executable: false,
                };
                w.artifacts[0].entries.push(child);
            }),
            "is not a directory",
        ),
        (
            Box::new(|w| {
                let e = w.artifacts[0]
                    .entries
                    .iter_mut()
                    .find(|e| e.blob.is_some())
                    .unwrap();
                e.blob = Some(70_000);
            }),
            "blob 70000 does not exist",
        ),
        (
            Box::new(|w| w.artifacts[0].entries[0].name = "../escape".into()),
            "invalid manifest",
        ),
    ];
    for (edit, msg) in cases {
        let env = Env::new();
        env.sample_bundle();
        let m = manifest(&env);
        let mut w = v3::to_wire(&m);
        edit(&mut w);
        sign_bytes(&env, &m, &serde_json::to_vec(&w).unwrap());
        refused(&env, &["invalid manifest", msg]);
    }
    // Unknown fields and wrong shapes, by text.
    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    let text = String::from_utf8(m.to_bytes()).unwrap();
    for (from, to, msg) in [
        (
            "\"piece_size\":",
            "\"x_future\": 1, \"piece_size\":",
            "unknown field `x_future`",
        ),
        (
            "\"pieces\":",
            "\"name\": \"00000000.tar\", \"pieces\":",
            "unknown field `name`",
        ),
        (",[[0,", ",[[0,-1,", "invalid manifest"),
        (
            "\"sha256\":",
            "\"sha256\": \"x\", \"y\":",
            "invalid manifest",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        sign_bytes(&env, &m, text.replacen(from, to, 1).as_bytes());
        refused(&env, &[msg]);
    }
    // An executable flag is `true` or absent.
    let mut w = v3::to_wire(&m);
    let e = w.artifacts[0]
        .entries
        .iter_mut()
        .find(|e| e.blob.is_some())
        .unwrap();
    e.executable = true;
    let edited = String::from_utf8(serde_json::to_vec(&w).unwrap())
        .unwrap()
        .replacen(",true]", ",false]", 1);
    sign_bytes(&env, &m, edited.as_bytes());
    refused(&env, &["executable flag is `true` or absent"]);
}

#[test]
fn a_small_file_costs_well_under_150_manifest_bytes() {
    let env = Env::new();
    env.keygen("k");
    for d in 0..20 {
        for f in 0..50 {
            env.write(
                &format!("src/d{d:04}/f{f:03}.bin"),
                pseudo_random(512, d * 100 + f),
            );
        }
    }
    env.pack(&["src"], "k", "b", &[]).ok();
    let len = env.read("b/manifest.json").len();
    assert!(len / 1000 <= 150, "{len} bytes for 1000 files");
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"])
        .ok();
    assert_eq!(contents(&env.path("src")), contents(&env.path("dest/src")));
}
