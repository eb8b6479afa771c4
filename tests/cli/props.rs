//! Property tests: the chunk writer and reader round-trip any mix of blob sizes and chunk sizes,
//! no mutation of a manifest makes the parser panic, and the chunk reader turns any corruption
//! of chunk bytes or segment descriptions into either the exact blob or a clean error.

use std::fs;
use std::io::Read;

use airlock::bundle::reader::BlobReader;
use airlock::bundle::{self, OutDir, PackOptions, PlannedBlob, VerifyOptions};
use airlock::format::{
    Artifact, ArtifactKind, Blob, Digest, Encoding, Entry, EntryType, Manifest, Segment,
};
use airlock::progress::Silent;
use airlock::sign::{PublicKey, SigningKey};
use proptest::prelude::*;

use crate::support::*;

fn blob_sizes() -> impl Strategy<Value = Vec<(usize, bool)>> {
    // (size, compressible): sizes around chunk boundaries and 512-byte blocks.
    prop::collection::vec(
        (
            prop_oneof![0usize..2048, 60_000usize..200_000],
            any::<bool>(),
        ),
        1..6,
    )
}

/// How one case damages the chunk or the blob description before reading.
#[derive(Debug, Clone)]
enum Damage {
    None,
    /// Flip one bit of the chunk (position taken modulo its length).
    BitFlip(prop::sample::Index, u8),
    /// Cut the chunk to this length (modulo its length).
    Truncate(prop::sample::Index),
    /// Append bytes to the chunk.
    Extend(Vec<u8>),
    /// Make one segment's stored length longer or shorter by up to 600 bytes.
    Length(prop::sample::Index, i16),
    /// Make one segment's declared decoded size larger or smaller.
    Size(prop::sample::Index, i16),
    /// Move one segment's offset.
    Offset(prop::sample::Index, i16),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        Just(Damage::None),
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Damage::BitFlip(i, b)),
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
        prop::collection::vec(any::<u8>(), 1..600).prop_map(Damage::Extend),
        (any::<prop::sample::Index>(), -600i16..600).prop_map(|(i, d)| Damage::Length(i, d)),
        (any::<prop::sample::Index>(), -600i16..600).prop_map(|(i, d)| Damage::Size(i, d)),
        (any::<prop::sample::Index>(), -600i16..600).prop_map(|(i, d)| Damage::Offset(i, d)),
    ]
}

fn nudge(v: u64, d: i16) -> u64 {
    v.saturating_add_signed(d.into())
}

/// Segments of a blob: (data, compressible, zstd) each.
fn segment_specs() -> impl Strategy<Value = Vec<(usize, bool, bool, usize)>> {
    // (decoded size, compressible content, zstd encoding, padding before it in the chunk)
    prop::collection::vec(
        (0usize..5000, any::<bool>(), any::<bool>(), 0usize..700),
        0..5,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn chunk_reader_yields_the_exact_blob_or_a_clean_error(
        specs in segment_specs(),
        damage in damage(),
        step in 1usize..9000,
        seed in any::<u64>(),
    ) {
        // Build the blob and its chunk: each segment's bytes (stored or one zstd frame) after
        // some padding, as a writer might lay them out.
        let mut chunk = Vec::new();
        let mut segments = Vec::new();
        let mut want = Vec::new();
        for (i, (size, text, zstd, pad)) in specs.iter().enumerate() {
            let data = if *text {
                "weights 0.25 0.5\n".repeat(size / 17 + 1).into_bytes()[..*size].to_vec()
            } else {
                pseudo_random(*size, seed.wrapping_add(i as u64))
            };
            chunk.extend(pseudo_random(*pad, seed ^ 0x5eed));
            let stored = if *zstd { zstd::bulk::compress(&data, 3).unwrap() } else { data.clone() };
            segments.push(Segment {
                chunk: 0,
                offset: chunk.len() as u64,
                length: stored.len() as u64,
                encoding: if *zstd { Encoding::Zstd } else { Encoding::None },
                size: data.len() as u64,
            });
            chunk.extend(&stored);
            want.extend(&data);
        }
        let mut blob = Blob { digest: Digest::of(&want), size: want.len() as u64, segments, external: None };
        let pick = |i: &prop::sample::Index, n: usize| if n == 0 { None } else { Some(i.index(n)) };
        match &damage {
            Damage::None => {}
            Damage::BitFlip(i, b) => {
                if let Some(p) = pick(i, chunk.len()) {
                    chunk[p] ^= 1 << b;
                }
            }
            Damage::Truncate(i) => chunk.truncate(pick(i, chunk.len()).unwrap_or(0)),
            Damage::Extend(extra) => chunk.extend(extra),
            Damage::Length(i, d) => {
                if let Some(s) = pick(i, blob.segments.len()) {
                    blob.segments[s].length = nudge(blob.segments[s].length, *d);
                }
            }
            Damage::Size(i, d) => {
                if let Some(s) = pick(i, blob.segments.len()) {
                    blob.segments[s].size = nudge(blob.segments[s].size, *d);
                }
            }
            Damage::Offset(i, d) => {
                if let Some(s) = pick(i, blob.segments.len()) {
                    blob.segments[s].offset = nudge(blob.segments[s].offset, *d);
                }
            }
        }
        let declared: u64 = blob.segments.iter().map(|s| s.size).sum();
        let chunks = vec![chunk];
        let mut r = BlobReader::from_memory(&chunks, &blob);
        let mut got = Vec::new();
        let mut buf = vec![0u8; step];
        let result = loop {
            match r.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    prop_assert!(got.len() as u64 <= declared, "yielded {} bytes, {} declared", got.len(), declared);
                }
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => prop_assert_eq!(&got, &want, "accepted bytes that are not the blob"),
            Err(e) => {
                prop_assert!(!matches!(damage, Damage::None), "undamaged blob refused: {}", e);
                prop_assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{}", e);
                prop_assert!(e.to_string().contains("in-memory chunk") || e.to_string().contains("digest mismatch"), "{}", e);
            }
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn blobs_round_trip_through_chunks(sizes in blob_sizes(), chunk_kib in 64u64..160) {
        let env = Env::new();
        env.keygen("k");
        let key = SigningKey::load(&env.path("k")).unwrap();
        let mut blobs = Vec::new();
        let mut entries = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, (size, text)) in sizes.iter().enumerate() {
            let data = if *text { "tensor 0.5 1.5\n".repeat(size / 15 + 1).into_bytes()[..*size].to_vec() } else { pseudo_random(*size, i as u64) };
            let path = env.write(&format!("in/{i}"), &data);
            let digest = Digest::of(&data);
            if seen.insert(digest) {
                blobs.push(PlannedBlob::file(digest, data.len() as u64, path));
            }
            entries.push(Entry { path: format!("f{i}"), kind: EntryType::File, blob: Some(digest), size: Some(data.len() as u64), executable: false });
        }
        let artifact = Artifact { name: "a".into(), kind: ArtifactKind::Directory, source: "in".into(), identity: "in".into(), entries, image: None, hf: None };
        let out = OutDir::prepare(&env.path("b")).unwrap();
        let opts = PackOptions { channel: "p".into(), sequence: 1, created: std::time::SystemTime::now(), expires: None, chunk_size: chunk_kib * 1024 ,    volumes: None,
    };
        let m = bundle::pack(out, vec![artifact], &blobs, &[key], &opts, &Silent).unwrap();
        for c in &m.chunks {
            prop_assert!(c.size <= chunk_kib * 1024);
        }
        let trust = PublicKey::load(env.path("k.pub").to_str().unwrap()).unwrap();
        let vb = bundle::verify(&env.path("b"), &[trust], &VerifyOptions { now: std::time::SystemTime::now() }, &Silent).unwrap();
        for b in &vb.manifest().blobs {
            let mut out = Vec::new();
            bundle::reader::copy_blob(&vb, b, &mut out, &Silent).unwrap();
            prop_assert_eq!(Digest::of(&out), b.digest);
        }
    }

    #[test]
    fn manifest_parser_never_panics_on_mutations(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let env = Env::new();
        let golden = fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden/v1/bundle/manifest.json")).unwrap();
        let mut m = golden.clone();
        let i = pos.index(m.len());
        m[i] = byte;
        let _ = Manifest::parse(&m);
        let _ = Manifest::parse(&golden[..cut.index(golden.len())]);
        drop(env);
    }
}

#[test]
fn a_file_that_changed_since_it_was_hashed_aborts_the_pack() {
    let env = Env::new();
    env.keygen("k");
    let key = SigningKey::load(&env.path("k")).unwrap();
    let path = env.write("in/x", pseudo_random(100_000, 1));
    let planned = Digest::of(b"what the file held when it was hashed");
    let blobs = vec![PlannedBlob::file(planned, 100_000, path)];
    let entries = vec![Entry {
        path: "x".into(),
        kind: EntryType::File,
        blob: Some(planned),
        size: Some(100_000),
        executable: false,
    }];
    let artifact = Artifact {
        name: "x".into(),
        kind: ArtifactKind::File,
        source: "in/x".into(),
        identity: "in/x".into(),
        entries,
        image: None,
        hf: None,
    };
    let out = OutDir::prepare(&env.path("b")).unwrap();
    let opts = PackOptions {
        channel: "p".into(),
        sequence: 1,
        created: std::time::SystemTime::now(),
        expires: None,
        chunk_size: 1 << 20,
        volumes: None,
    };
    let err = bundle::pack(out, vec![artifact], &blobs, &[key], &opts, &Silent).unwrap_err();
    assert!(
        err.to_string()
            .contains("changed while it was being packed"),
        "{err}"
    );
    assert!(
        !env.path("b").exists(),
        "the failed pack removed its output"
    );
}
