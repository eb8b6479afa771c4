//! Hostile input (issue 5): crafted manifests, chunks, archive entries, destinations and keys,
//! each driven through the real binary. A refusal must name the problem and leave every file of
//! the workspace (bundle, destination, anything beside them) exactly as it was. docs/SECURITY.md
//! lists every case with the test that covers it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use airlock::format::{Digest, Encoding, Entry, Manifest};
use airlock::sign::SigningKey;

use crate::rejections::{flip_byte, manifest, resign};
use crate::support::*;

/// One edit of a manifest.
type Edit = Box<dyn Fn(&mut Manifest)>;

/// Every path under the workspace, links not followed: kind, mode and content digest (or link
/// target). FIFOs and devices are described, never opened. The test's state directory (where
/// each refusal is audited) is left out.
fn world(env: &Env) -> BTreeMap<String, String> {
    tree::snapshot_except(env.dir.path(), &[STATE_DIR])
}

/// Runs the binary with its address space capped at 1 GiB and a 60 s wall clock: a crafted
/// number that made it allocate or loop (or a FIFO that made it block) would kill it, and the
/// exit code (signal: -1, timeout: 124) would fail the test.
fn run_capped(env: &Env, args: &[&str]) -> Run {
    require("prlimit");
    // The test's own state and audit log (the one builder), never the machine's default.
    let c = env.wrapped(&["prlimit", "--as=1073741824", "--", "timeout", "60"], args);
    run_cmd(c)
}

/// The problem codes `verify --json` reports for bundle `dir`.
fn problem_codes(env: &Env, dir: &str) -> Vec<String> {
    let v = run_capped(env, &["verify", dir, "--trust", "k.pub", "--json"]);
    v.code(3);
    v.json()["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_string())
        .collect()
}

/// `verify` and `import` of bundle `dir` both exit 3 naming every one of `msgs`, `verify --json`
/// reports problem `code`, and no file anywhere in the workspace changed.
#[track_caller]
fn refused_in(env: &Env, dir: &str, code: &str, msgs: &[&str]) {
    let before = world(env);
    for args in [
        &["verify", dir, "--trust", "k.pub"][..],
        &["import", dir, "--trust", "k.pub", "--files", "dest"][..],
    ] {
        let r = run_capped(env, args);
        r.code(3);
        for m in msgs {
            r.stderr_has(m);
        }
    }
    let codes = problem_codes(env, dir);
    assert!(codes.iter().any(|c| c == code), "{code} not in {codes:?}");
    assert_eq!(
        world(env),
        before,
        "a refused bundle must leave every file as it was"
    );
}

#[track_caller]
fn refused(env: &Env, code: &str, msgs: &[&str]) {
    refused_in(env, "b", code, msgs)
}

/// Writes `bytes` as the manifest of `b` with a valid signature by `k` over them (trusted comment
/// taken from `like`), so that only the manifest's content can be refused.
fn sign_raw(env: &Env, like: &Manifest, bytes: &[u8]) {
    fs::write(env.path("b/manifest.json"), bytes).unwrap();
    let key = SigningKey::load(&env.path("k")).unwrap();
    let comment = airlock::sign::trusted_comment(
        1,
        &[
            ("bundle", like.bundle_id.clone()),
            ("channel", like.channel.clone()),
            ("sequence", like.sequence.to_string()),
            ("sha256sums", Digest::of(like.sha256sums().as_bytes()).hex()),
        ],
    );
    env.write(
        "b/manifest.json.minisig",
        key.sign(bytes, &comment, "x").unwrap(),
    );
}

/// Replaces the chunks of `b` by `chunks`, lets `edit` rewrite the manifest, fills in every
/// chunk's name, size and digest, and re-signs.
fn rebuild(env: &Env, chunks: Vec<Vec<u8>>, edit: impl FnOnce(&mut Manifest)) {
    fs::remove_dir_all(env.path("b/chunks")).unwrap();
    fs::create_dir(env.path("b/chunks")).unwrap();
    for (i, c) in chunks.iter().enumerate() {
        env.write(&format!("b/chunks/{}", airlock::format::chunk_name(i)), c);
    }
    resign(env, |m| {
        edit(m);
        let piece_size = m.piece_size;
        m.chunks = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| airlock::format::Chunk {
                name: airlock::format::chunk_name(i),
                size: c.len() as u64,
                sha256: Digest::of(c),
                pieces: pieces_of(c, piece_size),
            })
            .collect();
    });
}

/// `m` in the version 1 form (as the sample bundle was before version 3 became the default),
/// for the cases that edit the v1 field layout or make states the v3 form cannot express; the
/// v3 form's own rules are tested in `fmt_v3.rs`.
fn v1(mut m: Manifest) -> Manifest {
    m.version = 1;
    m.piece_size = 0;
    m.chunks.iter_mut().for_each(|c| c.pieces.clear());
    m
}

/// The piece digests of a chunk (none below format version 3, where `piece_size` is 0).
fn pieces_of(chunk: &[u8], piece_size: u64) -> Vec<Digest> {
    match piece_size {
        0 => Vec::new(),
        p => airlock::format::pieces::digests(chunk, p),
    }
}

/// A ustar header with raw `name`, `kind` and `link` fields, as a hostile packer would write.
fn raw_header(name: &[u8], kind: tar::EntryType, size: u64, link: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o777);
    h.set_entry_type(kind);
    h.set_mtime(0);
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_cksum();
    h.as_bytes().to_vec()
}

fn pad(v: &mut Vec<u8>) {
    v.resize(v.len().div_ceil(512) * 512, 0);
}

/// A bundle `b` holding one directory artifact `evil` with the single file `x`, whose blob is
/// `payload` stored by `segment` (offset, length, encoding, size) in the one chunk `chunk`.
fn one_file_bundle(env: &Env, chunk: Vec<u8>, blob: Digest, size: u64, seg: (u64, u64, Encoding)) {
    env.sample_bundle();
    rebuild(env, vec![chunk], |m| {
        m.chunk_size = 1 << 20;
        let mut a = m.artifacts[0].clone();
        a.name = "evil".into();
        a.entries = vec![Entry::file("x", blob, size)];
        m.artifacts = vec![a];
        let mut b = m.blobs[0].clone();
        b.digest = blob;
        b.size = size;
        b.segments.truncate(1);
        b.segments[0].chunk = 0;
        b.segments[0].offset = seg.0;
        b.segments[0].length = seg.1;
        b.segments[0].encoding = seg.2;
        b.segments[0].size = size;
        m.blobs = vec![b];
    });
}

// ---------------------------------------------------------------------------------------------
// Manifest

#[test]
fn signatures_swapped_between_two_bundles() {
    let env = Env::new();
    env.sample_bundle();
    env.write("other/x", "other content");
    env.pack(&["other"], "k", "b2", &[]).ok();
    let a = env.read("b/manifest.json.minisig");
    let b = env.read("b2/manifest.json.minisig");
    env.write("b/manifest.json.minisig", b);
    env.write("b2/manifest.json.minisig", a);
    for dir in ["b", "b2"] {
        refused_in(&env, dir, "edited-manifest", &["edited manifest"]);
    }
}

#[test]
fn unknown_versions_and_formats() {
    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    for v in [0u32, 6, u32::MAX] {
        resign(&env, |m| m.version = v);
        refused(
            &env,
            "unsupported-version",
            &[&format!("unsupported bundle format version {v}")],
        );
    }
    // The text edits below are of the version 1 form (as the sample bundle was before version
    // 3 became the default).
    let m = v1(m);
    let text = String::from_utf8(m.to_bytes()).unwrap();
    assert!(text.contains("\"version\": 1,"));
    for (version, why) in [
        ("4294967296", "invalid manifest"),
        ("-1", "invalid manifest"),
        ("1.0", "invalid manifest"),
        ("\"1\"", "invalid manifest"),
        ("null", "missing field `version`"),
    ] {
        let edited = text.replace("\"version\": 1,", &format!("\"version\": {version},"));
        sign_raw(&env, &m, edited.as_bytes());
        refused(&env, "invalid-manifest", &[why]);
    }
    let edited = text.replace("\"airlock-bundle\"", "\"airlock-bundle-v9\"");
    sign_raw(&env, &m, edited.as_bytes());
    refused(
        &env,
        "invalid-manifest",
        &["not an airlock bundle manifest (format Some(\"airlock-bundle-v9\"))"],
    );
}

#[test]
fn duplicate_artifacts_entries_and_json_keys() {
    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    let edits: Vec<(Edit, &str)> = vec![
        (
            Box::new(|m| {
                let a = m.artifacts[0].clone();
                m.artifacts.push(a);
            }),
            "artifact name \"src\" is used twice",
        ),
        (
            Box::new(|m| {
                let mut a = m.artifacts[0].clone();
                a.name = "SRC".into();
                m.artifacts.push(a);
            }),
            "artifact name \"SRC\" is used twice",
        ),
        (
            Box::new(|m| {
                let e = m.artifacts[0].entries[1].clone();
                m.artifacts[0].entries.push(e);
            }),
            "twice",
        ),
        (
            Box::new(|m| {
                let mut e = m.artifacts[0]
                    .entries
                    .iter()
                    .find(|e| e.path == "config.json")
                    .unwrap()
                    .clone();
                e.path = "CONFIG.JSON".into();
                m.artifacts[0].entries.push(e);
            }),
            "lists \"CONFIG.JSON\" twice",
        ),
    ];
    for (edit, msg) in edits {
        fs::write(env.path("b/manifest.json"), m.to_bytes()).unwrap();
        resign(&env, edit);
        refused(&env, "invalid-manifest", &["invalid manifest", msg]);
    }
    // The same key twice in one object: refused, so no two parsers can disagree on its value.
    let text = String::from_utf8(m.to_bytes()).unwrap();
    let edited = text.replacen(
        "\"channel\": \"default\",",
        "\"channel\": \"default\", \"channel\": \"evil\",",
        1,
    );
    sign_raw(&env, &m, edited.as_bytes());
    refused(&env, "invalid-manifest", &["duplicate field `channel`"]);
}

#[test]
fn names_that_differ_only_in_unicode_normalisation_are_one_name() {
    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    let nfc = "caf\u{e9}.json";
    let nfd = "cafe\u{301}.json";
    // Two entries, NFC and NFD spellings of one name.
    resign(&env, |m| {
        let e = m.artifacts[0]
            .entries
            .iter()
            .find(|e| e.path == "config.json")
            .unwrap()
            .clone();
        for p in [nfc, nfd] {
            let mut e = e.clone();
            e.path = p.into();
            m.artifacts[0].entries.push(e);
        }
    });
    refused(&env, "invalid-manifest", &[&format!("lists {nfd:?} twice")]);
    // Two artifacts, NFC and NFD (upper-case, even) spellings of one name.
    fs::write(env.path("b/manifest.json"), m.to_bytes()).unwrap();
    resign(&env, |m| {
        let a = m.artifacts[0].clone();
        m.artifacts.clear();
        for n in ["mod\u{e8}le", "MODE\u{300}LE"] {
            let mut a = a.clone();
            a.name = n.into();
            m.artifacts.push(a);
        }
    });
    refused(
        &env,
        "invalid-manifest",
        &[&format!(
            "artifact name {:?} is used twice",
            "MODE\u{300}LE"
        )],
    );
    // A parent directory spelled otherwise than its children's paths (case or normalisation):
    // the importer would create one and write into the other.
    for (dir, file) in [("Sub", "sub/x.json"), ("r\u{e9}p", "re\u{301}p/x.json")] {
        fs::write(env.path("b/manifest.json"), m.to_bytes()).unwrap();
        resign(&env, |m| {
            let mut e = m.artifacts[0]
                .entries
                .iter()
                .find(|e| e.path == "config.json")
                .unwrap()
                .clone();
            e.path = file.into();
            if dir == "Sub" {
                m.artifacts[0]
                    .entries
                    .retain(|e| !e.path.starts_with("sub"));
            }
            m.artifacts[0].entries.push(Entry::dir(dir));
            m.artifacts[0].entries.push(e);
            // Keep every blob used.
            let used: std::collections::HashSet<Digest> = m.artifacts[0]
                .entries
                .iter()
                .filter_map(|e| e.blob)
                .collect();
            m.blobs.retain(|b| used.contains(&b.digest));
        });
        refused(
            &env,
            "invalid-manifest",
            &[&format!(
                "the parent {:?} of {file:?}",
                &file[..file.len() - 7]
            )],
        );
    }
}

#[test]
fn absurd_numbers_are_refused_before_any_allocation() {
    let env = Env::new();
    env.sample_bundle();
    let m = v1(manifest(&env));
    let zstd_blob = m
        .blobs
        .iter()
        .position(|b| b.segments.iter().any(|s| s.encoding == Encoding::Zstd))
        .expect("the sample has a compressed blob");
    let cases: Vec<(Edit, String)> = vec![
        (
            Box::new(|m| {
                m.blobs[0].size = 1 << 60;
                for e in &mut m.artifacts[0].entries {
                    if e.blob == Some(m.blobs[0].digest) {
                        e.size = Some(1 << 60);
                    }
                }
            }),
            format!(
                "declares {} bytes, more than the {} allowed",
                1u64 << 60,
                1u64 << 52
            ),
        ),
        (
            Box::new(|m| m.blobs[0].size = u64::MAX),
            format!("declares {} bytes", u64::MAX),
        ),
        (
            Box::new(|m| m.chunk_size = 0),
            "chunk_size 0 is outside 65536..=1099511627776".into(),
        ),
        (
            Box::new(|m| m.chunk_size = 65535),
            "chunk_size 65535 is outside".into(),
        ),
        (
            Box::new(|m| m.chunk_size = (1 << 40) + 1),
            "chunk_size 1099511627777 is outside".into(),
        ),
        (
            Box::new(|m| m.chunk_size = u64::MAX),
            format!("chunk_size {} is outside", u64::MAX),
        ),
        (
            Box::new(|m| m.chunks[0].size = 1 << 60),
            format!("declares {} bytes, more than the chunk_size", 1u64 << 60),
        ),
        (
            Box::new(|m| m.blobs[0].segments[0].chunk = 1_000_000_000),
            "names chunk 1000000000, which does not exist".into(),
        ),
        (
            Box::new(|m| m.blobs[0].segments[0].chunk = u32::MAX),
            format!("names chunk {}, which does not exist", u32::MAX),
        ),
        (
            Box::new(|m| m.blobs[0].segments[0].offset = u64::MAX - 511),
            "runs past the end of chunk".into(),
        ),
        (
            Box::new(|m| m.blobs[0].segments[0].length = 1 << 60),
            "runs past the end of chunk".into(),
        ),
        (
            Box::new(move |m| {
                let s = m.blobs[zstd_blob]
                    .segments
                    .iter_mut()
                    .find(|s| s.encoding == Encoding::Zstd)
                    .unwrap();
                s.size = 1 << 40;
            }),
            "more than the 67108864 a zstd segment may".into(),
        ),
        (
            Box::new(|m| m.blobs[0].segments[0].size += 1 << 40),
            "is stored but length".into(),
        ),
    ];
    for (edit, msg) in cases {
        fs::write(env.path("b/manifest.json"), m.to_bytes()).unwrap();
        resign(&env, edit);
        refused(&env, "invalid-manifest", &["invalid manifest", &msg]);
    }
}

#[test]
fn huge_counts_are_bounded_by_the_manifest_size() {
    let env = Env::new();
    env.sample_bundle();
    let m = v1(manifest(&env));
    // More than 64 MiB of manifest (10^9 chunks would need ~100 GB): refused unread.
    let mut big = m.to_bytes();
    big.resize((64 << 20) + 1, b' ');
    sign_raw(&env, &m, &big);
    refused(&env, "unreadable-manifest", &["67108864"]);

    // 200,000 chunks (a 21 MB manifest; 64 MiB holds about 600,000), none present: every one is
    // named missing, within the memory cap.
    let mut many = m.clone();
    let c0 = many.chunks[0].clone();
    many.chunks = (0..200_000)
        .map(|i| airlock::format::Chunk {
            name: airlock::format::chunk_name(i),
            ..c0.clone()
        })
        .collect();
    sign_raw(&env, &many, &serde_json::to_vec(&many).unwrap());
    refused(&env, "missing-chunk", &["missing chunk: 00199999.tar"]);

    // 450,000 segments in one blob, all on one chunk: each overlaps the next.
    let mut segs = m.clone();
    let s0 = segs.blobs[0].segments[0].clone();
    segs.blobs[0].segments = (0..450_000).map(|_| s0.clone()).collect();
    sign_raw(&env, &segs, &serde_json::to_vec(&segs).unwrap());
    refused(
        &env,
        "invalid-manifest",
        &["segments decode to more than its size"],
    );
}

#[test]
fn deeply_nested_json() {
    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    let deep = "[".repeat(100_000);
    sign_raw(&env, &m, deep.as_bytes());
    refused(&env, "invalid-manifest", &["invalid manifest"]);
    // The same nesting in a field the version probe skips reaches serde_json's depth limit.
    let skipped = format!(
        "{{\"format\": \"airlock-bundle\", \"version\": 1, \"x\": {deep}{}}}",
        "]".repeat(100_000)
    );
    sign_raw(&env, &m, skipped.as_bytes());
    refused(&env, "invalid-manifest", &["invalid manifest"]);
    // Nested inside a field the version probe skips.
    let text = String::from_utf8(m.to_bytes()).unwrap();
    let edited = text.replacen(
        "\"generator\": ",
        &format!("\"generator\": {}", "{\"a\":".repeat(100_000)),
        1,
    );
    sign_raw(&env, &m, edited.as_bytes());
    refused(&env, "invalid-manifest", &["invalid manifest"]);
    // Unsigned, the same bytes never reach the parser.
    fs::write(env.path("b/manifest.json"), deep).unwrap();
    let r = run_capped(&env, &["verify", "b", "--trust", "k.pub"]);
    r.code(3).stderr_has("edited manifest");
    assert!(!r.stderr.contains("invalid manifest"), "{}", r.stderr);
}

#[test]
fn non_utf8_json() {
    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    let text = String::from_utf8(m.to_bytes()).unwrap();
    let mut latin1 = text.clone().into_bytes();
    let at = text.find("\"default\"").unwrap() + 1;
    latin1[at] = 0xe9;
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let bom: Vec<u8> = b"\xef\xbb\xbf"
        .iter()
        .chain(text.as_bytes())
        .copied()
        .collect();
    let surrogate = text.replacen("\"default\"", "\"\\ud800\"", 1).into_bytes();
    for bytes in [latin1, utf16, bom, surrogate] {
        sign_raw(&env, &m, &bytes);
        refused(&env, "invalid-manifest", &["invalid manifest"]);
    }
}

#[test]
fn unknown_fields_are_refused_everywhere() {
    let env = Env::new();
    env.sample_bundle();
    let m = v1(manifest(&env));
    let base = serde_json::to_value(&m).unwrap();
    for pointer in [
        "",
        "/artifacts/0",
        "/artifacts/0/entries/0",
        "/blobs/0",
        "/blobs/0/segments/0",
        "/chunks/0",
    ] {
        let mut v = base.clone();
        v.pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert("x_future".into(), serde_json::json!(true));
        sign_raw(&env, &m, &serde_json::to_vec_pretty(&v).unwrap());
        refused(&env, "invalid-manifest", &["unknown field `x_future`"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Chunks and bundle files

#[test]
fn flips_outside_segment_data_and_swapped_chunks() {
    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    // A flip in a tar header and one in the end-of-archive trailer: bytes no reader decodes.
    flip_byte(&env.path("b/chunks/00000000.tar"), 0);
    flip_byte(&env.path("b/chunks/00000002.tar"), m.chunks[2].size - 1);
    refused(
        &env,
        "corrupt-chunk",
        &["corrupt chunk: 00000000.tar", "corrupt chunk: 00000002.tar"],
    );

    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    assert_eq!(m.chunks[0].size, m.chunks[1].size, "two full chunks");
    fs::rename(env.path("b/chunks/00000000.tar"), env.path("b/swap")).unwrap();
    fs::rename(
        env.path("b/chunks/00000001.tar"),
        env.path("b/chunks/00000000.tar"),
    )
    .unwrap();
    fs::rename(env.path("b/swap"), env.path("b/chunks/00000001.tar")).unwrap();
    refused(
        &env,
        "corrupt-chunk",
        &["corrupt chunk: 00000000.tar", "corrupt chunk: 00000001.tar"],
    );
}

#[test]
fn bundle_files_that_are_links_fifos_or_directories() {
    let env = Env::new();
    env.sample_bundle();
    // A chunk that is a symlink to its own (correct) bytes.
    fs::rename(env.path("b/chunks/00000000.tar"), env.path("elsewhere.tar")).unwrap();
    std::os::unix::fs::symlink(env.path("elsewhere.tar"), env.path("b/chunks/00000000.tar"))
        .unwrap();
    refused(&env, "unreadable-chunk", &["00000000.tar"]);

    // FIFOs where a chunk, the manifest or a signature should be: nothing blocks on them.
    for (file, code) in [
        ("b/chunks/00000001.tar", "unreadable-chunk"),
        ("b/SHA256SUMS", "sums-mismatch"),
        ("b/signatures/x.minisig", "unexpected-file"),
        ("b/manifest.json", "unreadable-manifest"),
    ] {
        let env = Env::new();
        env.sample_bundle();
        let _ = fs::remove_file(env.path(file));
        fs::create_dir_all(env.path(file).parent().unwrap()).unwrap();
        mkfifo(&env, file);
        refused(&env, code, &[]);
    }

    // A directory where a chunk should be, and a stray directory.
    let env = Env::new();
    env.sample_bundle();
    fs::remove_file(env.path("b/chunks/00000001.tar")).unwrap();
    fs::create_dir(env.path("b/chunks/00000001.tar")).unwrap();
    fs::create_dir(env.path("b/chunks/extra")).unwrap();
    refused(&env, "unexpected-file", &["chunks/extra"]);
}

fn mkfifo(env: &Env, rel: &str) {
    let mut c = Command::new("mkfifo");
    c.arg(env.path(rel));
    run_cmd(c).ok();
}

/// A zstd frame of `n` zero bytes.
fn zstd_zeros(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = zstd::stream::Encoder::new(&mut out, 1).unwrap();
    std::io::copy(&mut std::io::repeat(0).take(n), &mut enc).unwrap();
    enc.finish().unwrap();
    out
}

#[test]
fn decompression_bomb_stops_at_once() {
    // One segment declared as 1 MiB that decodes to 1 GiB of zeros. The blob digest is that of
    // the declared 1 MiB, so only the size check can catch it.
    let declared = 1u64 << 20;
    let frame = zstd_zeros(1 << 30);
    assert!(frame.len() < 1 << 20, "{}", frame.len());
    let mut chunk = raw_header(
        b"bomb.zst",
        tar::EntryType::Regular,
        frame.len() as u64,
        b"",
    );
    chunk.extend_from_slice(&frame);
    pad(&mut chunk);
    chunk.resize(chunk.len() + 1024, 0);
    let env = Env::new();
    let blob = Digest::of(&vec![0u8; declared as usize]);
    one_file_bundle(
        &env,
        chunk,
        blob,
        declared,
        (512, frame.len() as u64, Encoding::Zstd),
    );
    // verify checks chunk digests, not decoded blobs: the signed chunk is intact.
    run_capped(&env, &["verify", "b", "--trust", "k.pub"]).ok();
    let before = world(&env);
    let r = run_capped(
        &env,
        &["import", "b", "--trust", "k.pub", "--files", "dest"],
    );
    assert_ne!(r.code, 0);
    r.stderr_has(&format!(
        "decodes to more than the {declared} bytes declared"
    ));
    // Not a signal or timeout: content rejected (bytes that do not decode as declared).
    assert_eq!(r.code, 3, "{}", r.stderr);
    let after = world(&env);
    let new: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        new.iter().all(|k| *k == "dest" || *k == "dest/evil"),
        "only the (empty) directories may appear, no file: {new:?}"
    );
    assert!(!after.keys().any(|k| k.contains(".airlock-tmp")));

    // And one that decodes to fewer bytes than declared.
    let env = Env::new();
    let short = zstd_zeros(1000);
    let mut chunk = raw_header(
        b"short.zst",
        tar::EntryType::Regular,
        short.len() as u64,
        b"",
    );
    chunk.extend_from_slice(&short);
    pad(&mut chunk);
    chunk.resize(chunk.len() + 1024, 0);
    let blob = Digest::of(&vec![0u8; 5000]);
    one_file_bundle(
        &env,
        chunk,
        blob,
        5000,
        (512, short.len() as u64, Encoding::Zstd),
    );
    let r = run_capped(
        &env,
        &["import", "b", "--trust", "k.pub", "--files", "dest"],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    r.stderr_has("holds 1000 bytes, 5000 declared");
    assert!(!env.path("dest/evil/x").exists());
}

// ---------------------------------------------------------------------------------------------
// Archive entries

#[test]
fn crafted_tar_entries_are_never_extracted() {
    // A chunk whose tar headers name `..` paths, absolute paths, symlinks, hard links, a device
    // and a FIFO around the one segment the manifest points at. airlock reads the segment by
    // offset and writes only the manifest's (validated) path.
    let payload = b"the real content\n";
    let mut chunk = Vec::new();
    let hostile: [(&[u8], tar::EntryType, &[u8]); 6] = [
        (b"x", tar::EntryType::Symlink, b"/etc/passwd"),
        (b"evil", tar::EntryType::Symlink, b"../outside"),
        (b"hard", tar::EntryType::Link, b"../../outside/victim"),
        (b"/abs/victim", tar::EntryType::Regular, b""),
        (b"dev", tar::EntryType::Char, b""),
        (b"fifo", tar::EntryType::Fifo, b""),
    ];
    for (name, kind, link) in hostile {
        chunk.extend(raw_header(name, kind, 0, link));
    }
    chunk.extend(raw_header(
        b"../../outside/victim",
        tar::EntryType::Regular,
        payload.len() as u64,
        b"",
    ));
    let offset = chunk.len() as u64;
    chunk.extend_from_slice(payload);
    pad(&mut chunk);
    chunk.resize(chunk.len() + 1024, 0);

    let env = Env::new();
    env.write("outside/victim", "untouched");
    one_file_bundle(
        &env,
        chunk,
        Digest::of(payload),
        payload.len() as u64,
        (offset, payload.len() as u64, Encoding::None),
    );
    let before = world(&env);
    run_capped(
        &env,
        &["import", "b", "--trust", "k.pub", "--files", "dest"],
    )
    .ok();
    let mut after = world(&env);
    assert!(after
        .remove("dest/evil/x")
        .unwrap()
        .starts_with("file 644 "));
    assert!(after.remove("dest/evil").unwrap().starts_with("dir "));
    assert!(after.remove("dest").unwrap().starts_with("dir "));
    assert_eq!(after, before, "nothing but dest/evil/x was written");
    assert_eq!(env.read("dest/evil/x"), payload);
    assert_eq!(env.read("outside/victim"), b"untouched");
}

#[test]
fn escaping_and_odd_manifest_paths_are_refused() {
    let env = Env::new();
    env.sample_bundle();
    let m = manifest(&env);
    let long_component = "x".repeat(256);
    let long_path = vec!["d"; 2100].join("/");
    let deep = vec!["d"; 129].join("/");
    for (path, why) in [
        ("../config.json", "\"..\" component"),
        ("sub/../../config.json", "\"..\" component"),
        ("./config.json", "\".\" component"),
        ("/etc/passwd", "absolute path"),
        ("sub//config.json", "empty path component"),
        ("sub/", "empty path component"),
        ("", "empty path"),
        ("a\\..\\b", "forbidden character '\\\\'"),
        ("a\0b", "forbidden character '\\0'"),
        ("a\nb", "forbidden character '\\n'"),
        ("a\u{85}b", "forbidden character '\\u{85}'"),
        (long_component.as_str(), "component longer than 255 bytes"),
        (long_path.as_str(), "longer than 4096 bytes"),
        (deep.as_str(), "deeper than 128 levels"),
    ] {
        fs::write(env.path("b/manifest.json"), m.to_bytes()).unwrap();
        resign(&env, |m| {
            for e in &mut m.artifacts[0].entries {
                if e.path == "config.json" {
                    e.path = path.to_string();
                }
            }
        });
        refused(&env, "invalid-manifest", &["invalid manifest", why]);
    }
    for (name, why) in [
        ("..", "\"..\" component"),
        (".", "\".\" component"),
        ("/", "names may not contain '/'"),
        ("a/b", "names may not contain '/'"),
        (".hidden", "names may not start with '.'"),
    ] {
        fs::write(env.path("b/manifest.json"), m.to_bytes()).unwrap();
        resign(&env, |m| m.artifacts[0].name = name.to_string());
        refused(&env, "invalid-manifest", &["invalid manifest", why]);
    }
}

#[test]
fn longest_allowed_names_import() {
    let env = Env::new();
    env.keygen("k");
    let name = "n".repeat(255);
    env.write(&format!("src/{name}"), "long");
    env.pack(&["src"], "k", "b", &[]).ok();
    run_capped(
        &env,
        &["import", "b", "--trust", "k.pub", "--files", "dest"],
    )
    .ok();
    assert_eq!(env.read(&format!("dest/src/{name}")), b"long");
}

// ---------------------------------------------------------------------------------------------
// The destination

/// Import into `dest` (prepared by `setup`) exits 1 with a conflict naming `msg`, and nothing in
/// the workspace changed.
#[track_caller]
fn conflict(setup: impl FnOnce(&Env), msg: &str) {
    let env = Env::new();
    env.sample_bundle();
    env.write("outside/victim", "untouched");
    fs::create_dir_all(env.path("dest/src/sub/deep")).unwrap();
    setup(&env);
    let before = world(&env);
    let r = run_capped(
        &env,
        &["import", "b", "--trust", "k.pub", "--files", "dest"],
    );
    r.code(1).stderr_has(msg);
    assert_eq!(world(&env), before, "a conflict must stop before any write");
}

#[test]
fn links_fifos_and_devices_already_in_the_destination() {
    use std::os::unix::fs::symlink;
    conflict(
        |env| {
            fs::remove_dir_all(env.path("dest/src")).unwrap();
            symlink(env.path("outside"), env.path("dest/src")).unwrap();
        },
        "dest/src is a symbolic link; airlock does not write through links",
    );
    conflict(
        |env| {
            fs::remove_dir_all(env.path("dest/src/sub/deep")).unwrap();
            symlink("../../../outside", env.path("dest/src/sub/deep")).unwrap();
        },
        "dest/src/sub/deep is a symbolic link",
    );
    conflict(
        |env| {
            // A link between two names the bundle itself writes.
            fs::remove_dir_all(env.path("dest/src/sub/deep")).unwrap();
            symlink("..", env.path("dest/src/sub/deep")).unwrap();
        },
        "dest/src/sub/deep is a symbolic link",
    );
    conflict(
        |env| symlink(env.path("outside/victim"), env.path("dest/src/config.json")).unwrap(),
        "dest/src/config.json is a symbolic link",
    );
    conflict(
        |env| symlink("/dev/zero", env.path("dest/src/empty.txt")).unwrap(),
        "dest/src/empty.txt is a symbolic link",
    );
    // A FIFO where the empty file goes: same size (0), and must not be opened (it would block).
    conflict(
        |env| mkfifo(env, "dest/src/empty.txt"),
        "dest/src/empty.txt",
    );
    conflict(
        |env| mkfifo(env, "dest/src/sub/deep/weights.bin"),
        "weights.bin",
    );
    // A character device (/dev/null's numbers) where a file goes; needs root for mknod.
    if is_root() {
        conflict(
            |env| {
                let mut c = Command::new("mknod");
                c.arg(env.path("dest/src/empty.txt")).args(["c", "1", "3"]);
                run_cmd(c).ok();
            },
            "dest/src/empty.txt",
        );
    }
    // A file where a directory goes, and a directory where a file goes.
    conflict(
        |env| {
            fs::remove_dir_all(env.path("dest/src/sub/deep")).unwrap();
            env.write("dest/src/sub/deep", "a file");
        },
        "dest/src/sub/deep",
    );
    conflict(
        |env| fs::create_dir(env.path("dest/src/config.json")).unwrap(),
        "dest/src/config.json",
    );
    // A file already there with other content (the other files are new: none is written).
    conflict(
        |env| {
            env.write("dest/src/tokenizer.json", "mine");
        },
        "dest/src/tokenizer.json already exists with other content",
    );
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

// ---------------------------------------------------------------------------------------------
// Keys

#[test]
fn secret_keys_with_any_group_or_other_bit_are_refused() {
    let env = Env::new();
    env.sample_bundle();
    env.keygen("officer");
    env.write("src2/a", "a");
    for mode in [0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o660, 0o666] {
        for key in ["k", "officer"] {
            fs::set_permissions(env.path(key), fs::Permissions::from_mode(mode)).unwrap();
        }
        let before = world(&env);
        env.pack(&["src2"], "k", "b2", &[])
            .code(1)
            .stderr_has(&format!("accessible by group or others (mode {mode:04o})"));
        env.run(&["sign", "b", "--key", "officer", "--trust", "k.pub"])
            .code(1)
            .stderr_has("accessible by group or others");
        assert_eq!(world(&env), before, "mode {mode:o}: nothing written");
    }
}

#[test]
fn secret_material_never_appears_in_output_or_files() {
    let env = Env::new();
    // An unencrypted key (its file holds the raw secret) and a passphrase-protected one.
    let (sk, _) = env.keygen("k");
    let passphrase = "correct horse battery staple 7731";
    let mut c = env.command(&["keygen", "--out", "enc"]);
    c.env("AIRLOCK_PASSPHRASE", passphrase);
    let mut runs = vec![run_cmd(c).ok().stdout.clone()];
    let b64 = fs::read_to_string(&sk)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let enc_b64 = fs::read_to_string(env.path("enc"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .unwrap();
    // minisign layout: 2+2+2 algorithms, 32 salt, 8+8 limits, then key id (8) and the ed25519
    // secret (64: the 32-byte seed, then the public key, which is no secret).
    let secret = &raw[62..94];
    let mut needles: Vec<String> = vec![
        b64.clone(),
        enc_b64.clone(),
        passphrase.into(),
        hex::encode(secret),
        hex::encode_upper(secret),
        base64::engine::general_purpose::STANDARD.encode(secret),
        format!("{:?}", &secret[..8]),
    ];
    // Any 24-character piece of the key lines' (plain or encrypted) seed, characters 84..124,
    // so a truncated echo is caught too.
    for line in [&b64, &enc_b64] {
        for i in (84..100).step_by(4) {
            needles.push(line[i..i + 24].to_string());
        }
    }

    env.sample_tree("src");
    let with_pass = |args: &[&str], pass: &str| {
        let mut c = env.command(args);
        c.env("AIRLOCK_PASSPHRASE", pass).env("RUST_BACKTRACE", "1");
        run_cmd(c)
    };
    let mut all = vec![
        env.pack(&["src"], "k", "b", &["--json"]),
        with_pass(&["pack", "src", "--out", "b2", "--key", "enc"], passphrase),
        with_pass(&["pack", "src", "--out", "b3", "--key", "enc"], "wrong"),
        with_pass(
            &["sign", "b", "--key", "enc", "--trust", "k.pub", "--json"],
            passphrase,
        ),
        env.run(&["verify", "b", "--trust", "k.pub", "--trust", "enc.pub"]),
        env.run(&["inspect", "b", "--trust", "k.pub", "--json"]),
        env.run(&["import", "b", "--trust", "k.pub", "--files", "dest"]),
        // The secret key file given where a public key goes (inline: see the test below).
        env.run(&["verify", "b", "--trust", "k"]),
        env.run(&["verify", "b", "--trust", "enc"]),
        // A public key given where the secret key goes.
        env.pack(&["src"], "k.pub", "b4", &[]),
    ];
    // A damaged secret key file (one character changed): the error must not echo it.
    let mut damaged = fs::read_to_string(&sk).unwrap();
    let at = damaged.find(&b64).unwrap() + 40;
    damaged.replace_range(
        at..at + 1,
        if &damaged[at..at + 1] == "A" {
            "B"
        } else {
            "A"
        },
    );
    env.write("damaged", &damaged);
    fs::set_permissions(env.path("damaged"), fs::Permissions::from_mode(0o600)).unwrap();
    all.push(env.pack(&["src"], "damaged", "b5", &[]));
    env.write("truncated", &damaged[..at]);
    fs::set_permissions(env.path("truncated"), fs::Permissions::from_mode(0o600)).unwrap();
    all.push(env.pack(&["src"], "truncated", "b6", &[]));
    // Readable by others: refused without echoing the key.
    fs::set_permissions(&sk, fs::Permissions::from_mode(0o644)).unwrap();
    all.push(env.pack(&["src"], "k", "b7", &[]));
    fs::set_permissions(&sk, fs::Permissions::from_mode(0o600)).unwrap();

    assert!(all.iter().any(|r| r.code == 0) && all.iter().any(|r| r.code != 0));
    for r in all {
        runs.push(r.stdout);
        runs.push(r.stderr);
    }
    for (i, out) in runs.iter().enumerate() {
        for n in &needles {
            assert!(
                !out.contains(n.as_str()),
                "output {i} holds secret material {n:?}:\n{out}"
            );
        }
    }
    // Nor does any file written (bundles, signatures, the import), except the key files.
    for (path, desc) in world(&env) {
        if !desc.starts_with("file ")
            || ["k", "enc", "damaged", "truncated"].contains(&path.as_str())
        {
            continue;
        }
        let data = fs::read(env.path(&path)).unwrap();
        for n in &needles {
            assert!(
                !data.windows(n.len()).any(|w| w == n.as_bytes()),
                "{path} holds secret material"
            );
        }
        assert!(
            !data.windows(secret.len()).any(|w| w == secret),
            "{path} holds the raw secret key"
        );
    }
}

/// FOUND: `--trust` with an argument that is neither a readable file nor a public key echoes
/// the argument in its error, so a secret key pasted there (`--trust "$(sed -n 2p key)"`) is
/// printed to stderr and whatever logs it. The fix belongs in `sign.rs` (`PublicKey::load`),
/// outside this test's files: name the problem without the argument's text.
#[test]
fn secret_key_pasted_as_trusted_key_is_not_echoed() {
    let env = Env::new();
    env.sample_bundle();
    let b64 = fs::read_to_string(env.path("k"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let r = env.run(&["verify", "b", "--trust", &b64]);
    assert_ne!(r.code, 0);
    assert!(!r.stderr.contains(&b64[..24]), "{}", r.stderr);
}
