//! The staged import of a version 3 bundle hashes each byte once (issue 10): a stored segment's
//! data is covered by its blob's signed digest alone, every other byte (tar headers, padding,
//! compressed frames, pieces straddling) by its signed piece digest. A damaged byte is refused
//! either way, named by piece and blob as `verify` names it, and leaves nothing behind.

use std::fs;

use airlock::format::pieces::DEFAULT_PIECE_SIZE;
use airlock::format::Digest;

use crate::rejections::{flip_byte, manifest};
use crate::support::tree;
use crate::support::*;

/// A bundle `b` (key `k`) of one 40 MiB stored blob and a small file, in one chunk: piece 1
/// lies wholly inside the big blob's data, pieces 0 and 2 hold tar headers too. Returns the
/// big blob's bytes and its data offset in the chunk.
fn big_bundle(env: &Env) -> (Vec<u8>, u64) {
    env.keygen("k");
    let big = pseudo_random(40 << 20, 23);
    env.write("src/big.bin", &big);
    env.write("src/small.txt", "small\n");
    env.pack(&["src"], "k", "b", &[]).ok();
    let m = manifest(env);
    assert_eq!(m.version, 3);
    assert_eq!(m.chunks.len(), 1, "one chunk");
    assert_eq!(m.chunks[0].pieces.len(), 3, "40 MiB in 16 MiB pieces");
    let b = m.blobs.iter().find(|b| b.size == big.len() as u64).unwrap();
    assert_eq!(b.segments.len(), 1);
    assert_eq!(b.segments[0].encoding, airlock::format::Encoding::None);
    let offset = b.segments[0].offset;
    assert!(offset < DEFAULT_PIECE_SIZE && offset + big.len() as u64 > 2 * DEFAULT_PIECE_SIZE);
    (big, offset)
}

/// Imports `b` into `dest` (which holds `keep.txt`): refused (exit 3) with every one of
/// `msgs`, and `dest` exactly as it was (no file, no staging).
fn refused_leaving_nothing(env: &Env, msgs: &[&str]) {
    env.write("dest/keep.txt", "mine");
    let before = tree::snapshot(&env.path("dest"));
    let r = env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"]);
    r.code(3);
    for m in msgs {
        r.stderr_has(m);
    }
    assert_eq!(
        tree::snapshot(&env.path("dest")),
        before,
        "the destination changed"
    );
    let left: Vec<String> = fs::read_dir(env.path("dest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["keep.txt".to_string()], "staging left behind");
}

#[test]
fn a_byte_flipped_inside_a_stored_segment_is_refused_naming_the_blob_and_piece() {
    let env = Env::new();
    let (big, offset) = big_bundle(&env);
    // Inside piece 1, which lies wholly inside the big blob's stored data: the stream does not
    // hash it as a piece (the blob digest covers it); the blob's failure names it.
    flip_byte(&env.path("b/chunks/00000000.tar"), offset + (20 << 20));
    let (start, end) = (DEFAULT_PIECE_SIZE, 2 * DEFAULT_PIECE_SIZE);
    refused_leaving_nothing(
        &env,
        &[
            &format!("corrupt piece: piece 1 of chunk 00000000.tar (bytes {start}..{end})"),
            &format!("blobs hit: {}", Digest::of(&big)),
            "corrupt chunk: 00000000.tar",
        ],
    );
    // Only the damaged piece is named, as verify names it.
    let r = env.run(&[
        "import", "b", "--trust", "k.pub", "--files", "dest", "--json",
    ]);
    r.code(3);
    let problems = r.json()["error"]["problems"].clone();
    let pieces: Vec<&serde_json::Value> = problems
        .as_array()
        .unwrap_or_else(|| panic!("{problems:#}"))
        .iter()
        .filter(|p| p["code"] == "corrupt-piece")
        .collect();
    assert_eq!(pieces.len(), 1, "{problems:#}");
    assert_eq!(pieces[0]["piece"], 1);
    assert_eq!(
        pieces[0]["blobs"],
        serde_json::json!([Digest::of(&big).to_string()])
    );
    // A later intact copy imports (nothing of the failed run is in the way).
    flip_byte(&env.path("b/chunks/00000000.tar"), offset + (20 << 20));
    env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"])
        .ok();
    assert_eq!(env.read("dest/src/big.bin"), big);
}

#[test]
fn a_flipped_tar_header_byte_is_refused_by_its_piece() {
    let env = Env::new();
    let (_, offset) = big_bundle(&env);
    // The mode field of the big file's tar header (the import reads no header: only the piece
    // digest over it catches this).
    let header = offset - 512;
    flip_byte(&env.path("b/chunks/00000000.tar"), header + 100);
    let (start, end) = (0, DEFAULT_PIECE_SIZE);
    refused_leaving_nothing(
        &env,
        &[
            &format!("corrupt piece: piece 0 of chunk 00000000.tar (bytes {start}..{end})"),
            "corrupt chunk: 00000000.tar",
        ],
    );
}

#[test]
fn a_flipped_byte_in_a_piece_straddling_a_stored_segment_is_refused() {
    let env = Env::new();
    let (big, offset) = big_bundle(&env);
    // Piece 2 holds the end of the big blob's data and what follows: hashed by the stream.
    let at = offset + big.len() as u64 - 1;
    assert!(at >= 2 * DEFAULT_PIECE_SIZE);
    flip_byte(&env.path("b/chunks/00000000.tar"), at);
    refused_leaving_nothing(
        &env,
        &[
            "corrupt piece: piece 2 of chunk 00000000.tar",
            &format!("blobs hit: {}", Digest::of(&big)),
        ],
    );
}
