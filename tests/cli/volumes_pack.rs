//! `pack --volume-size` (issue 12, the pack side): presets and explicit sizes, how chunk and
//! volume sizes combine, a chunk that exactly fills a volume, a blob over three volumes, the spec
//! file's keys, every volume checked alone with airlock and with stock tools (minisign,
//! sha256sum), the reports (pack and inspect), and an interrupted or killed pack into volumes.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::signals_support::*;
use crate::support::*;

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// The volume directories pack wrote under `out`, by name.
fn volume_dirs(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Chunk sizes on each data volume, from the manifest's layout.
fn layout(m: &Value) -> Vec<Vec<u64>> {
    let chunks = m["chunks"].as_array().unwrap();
    let mut at = 0usize;
    m["volumes"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let n = n.as_u64().unwrap() as usize;
            let sizes = chunks[at..at + n]
                .iter()
                .map(|c| c["size"].as_u64().unwrap())
                .collect();
            at += n;
            sizes
        })
        .collect()
}

fn pack_json(env: &Env, src: &str, out: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    env.pack(&[src], "k", out, &args).ok().json()
}

/// Each volume alone: `airlock verify VOLUME` and, inside it, the stock tools of FORMAT.md.
#[track_caller]
fn every_volume_checks_alone(env: &Env, out: &str) {
    require("minisign");
    require("sha256sum");
    let vols = volume_dirs(&env.path(out));
    assert!(!vols.is_empty());
    for (i, v) in vols.iter().enumerate() {
        let dir = env.path(&format!("{out}/{v}"));
        assert_eq!(*v, format!("vol-{:03}", i + 1));
        env.run(&["verify", &format!("{out}/{v}"), "--trust", "k.pub"])
            // Alone: the whole bundle if it has one volume, else intact but incomplete (4).
            .code(if vols.len() == 1 { 0 } else { 4 });
        let k = env.path("k.pub");
        let mut c = Command::new("minisign");
        c.args(["-Vm", "manifest.json", "-p"])
            .arg(&k)
            .current_dir(&dir);
        let mv = run_cmd(c);
        mv.ok()
            .stdout_has(&format!("volume:{}", i + 1))
            .stdout_has("Signature and comment signature verified");
        // (sha256sum -c refuses an empty list: a volume without chunks has nothing to check.)
        if !fs::read(dir.join("SHA256SUMS")).unwrap().is_empty() {
            let mut c = Command::new("sha256sum");
            c.args(["-c", "SHA256SUMS"]).current_dir(&dir);
            run_cmd(c).ok();
        }
        let mut c = Command::new("sha256sum");
        c.arg("SHA256SUMS").current_dir(&dir);
        let sum = run_cmd(c).ok().stdout.clone();
        let sum = sum.split_whitespace().next().unwrap();
        let sig = fs::read_to_string(dir.join("manifest.json.minisig")).unwrap();
        let comment = sig
            .lines()
            .find_map(|l| l.strip_prefix("trusted comment: "))
            .unwrap();
        assert!(
            comment
                .split('\t')
                .any(|f| f == format!("sha256sums:{sum}")),
            "{v}: comment {comment:?} does not carry sha256sums:{sum}"
        );
        // The label names the bundle, the volume and the count.
        let label = fs::read_to_string(dir.join("VOLUME")).unwrap();
        assert!(
            label.contains(&format!("volume: {} of {}", i + 1, vols.len())),
            "{label}"
        );
    }
}

#[test]
fn a_blob_larger_than_a_volume_spans_three_volumes_and_reads_back() {
    let env = Env::new();
    env.keygen("k");
    let data = pseudo_random(3_500_000, 21);
    env.write("src/big.bin", &data);
    env.write("src/small.txt", "small\n");
    let r = pack_json(
        &env,
        "src",
        "out",
        &["--volume-size", "1500000", "--chunk-size", "64KiB"],
    );
    assert_eq!(
        volume_dirs(&env.path("out")),
        ["vol-001", "vol-002", "vol-003"],
        "{r}"
    );
    let m = manifest(&env.path("out/vol-001"));
    assert_eq!(m["version"], 4);
    // The same manifest bytes on every volume.
    for v in ["vol-002", "vol-003"] {
        assert_eq!(
            env.read(&format!("out/{v}/manifest.json")),
            env.read("out/vol-001/manifest.json")
        );
    }
    let vol_of = |chunk: u64| -> usize {
        let mut end = 0;
        for (k, n) in m["volumes"]["data"].as_array().unwrap().iter().enumerate() {
            end += n.as_u64().unwrap();
            if chunk < end {
                return k + 1;
            }
        }
        panic!("chunk {chunk} on no volume")
    };
    let digest = |b: &[u8]| {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
    };
    let want = digest(&data);
    // The manifest's compact form: a blob is [digest, size, [[chunk, offset, length], ...]].
    let blob = m["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b[0] == want.as_str())
        .unwrap_or_else(|| panic!("no blob {want} in {m}"));
    // Segments on each of the three volumes; reading them back from the volume that holds each
    // chunk gives the file.
    let mut back = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for seg in blob[2].as_array().unwrap() {
        let s = seg.as_array().unwrap();
        assert_eq!(s.len(), 3, "stored, not compressed: {seg}");
        let c = s[0].as_u64().unwrap();
        let v = vol_of(c);
        seen.insert(v);
        let bytes = env.read(&format!("out/vol-{v:03}/chunks/{c:08}.tar"));
        let (o, n) = (
            s[1].as_u64().unwrap() as usize,
            s[2].as_u64().unwrap() as usize,
        );
        back.extend_from_slice(&bytes[o..o + n]);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
    assert!(back == data, "the segments do not read back as the file");
    // No chunk is on a volume it is not listed for, none exceeds the chunk size.
    for (k, sizes) in layout(&m).iter().enumerate() {
        let on: Vec<String> = fs::read_dir(env.path(&format!("out/vol-{:03}/chunks", k + 1)))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(on.len(), sizes.len());
        assert!(sizes.iter().all(|&s| s <= 64 << 10), "{sizes:?}");
        assert!(sizes.iter().sum::<u64>() <= 1_500_000);
    }
    // The report lists the volumes, their chunks and bytes, and the artifact on each.
    let vols = r["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 3, "{r}");
    for (k, v) in vols.iter().enumerate() {
        assert_eq!(v["volume"], k as u64 + 1);
        assert_eq!(v["kind"], "data");
        assert_eq!(v["dir"], format!("out/vol-{:03}", k + 1));
        assert_eq!(v["chunks"], layout(&m)[k].len() as u64);
        assert_eq!(v["bytes"], layout(&m)[k].iter().sum::<u64>());
        assert_eq!(v["artifacts"], serde_json::json!(["src"]));
    }
    every_volume_checks_alone(&env, "out");
    // The text report: the volume size and a VOLUMES table.
    let text = env.pack(
        &["src"],
        "k",
        "out2",
        &["--volume-size", "1500000", "--chunk-size", "64KiB"],
    );
    text.ok()
        .stdout_has("volumes   3 data + 0 parity of at most")
        .stdout_has("1500000 bytes")
        .stdout_has("VOLUME")
        .stdout_has("out2/vol-003");
    // inspect of OUT/ reads the first volume; --files names the volumes of each file.
    let i = env.run(&["inspect", "out", "--trust", "k.pub", "--files"]);
    i.ok()
        .stderr_has("reading the manifest of out/vol-001")
        .stdout_has("signature verified")
        .stdout_has("ARTIFACTS");
    let big = i.stdout.lines().find(|l| l.starts_with("big.bin")).unwrap();
    assert!(big.trim_end().ends_with(" 1-3"), "{big}");
    let small = i
        .stdout
        .lines()
        .find(|l| l.starts_with("small.txt"))
        .unwrap();
    let last = small.split_whitespace().last().unwrap();
    assert!(["1", "2", "3"].contains(&last), "{small}");
    // inspect of one volume shows the same table.
    env.run(&["inspect", "out/vol-002", "--trust", "k.pub"])
        .ok()
        .stdout_has("volumes   3 data + 0 parity");
    // Import of the three volumes, where import takes several (the import side of issue 12).
    env.run(&[
        "import",
        "out/vol-003",
        "out/vol-001",
        "out/vol-002",
        "--trust",
        "k.pub",
        "--files",
        "got",
    ])
    .ok();
    assert!(fs::read(env.path("got/src/big.bin")).unwrap() == data);
}

/// Sizes chosen so that the chunks of volume 1 end exactly at its chunk budget: the volume size
/// is the reserve pack reports plus a whole number of chunks.
#[test]
fn a_chunk_exactly_fills_a_volume() {
    let env = Env::new();
    env.keygen("k");
    env.write("src/big.bin", pseudo_random(3_000_000, 22));
    let chunk = 64u64 << 10;
    let mut size = 1_500_000u64;
    let mut budget = 0;
    let mut out = String::new();
    // The reserve depends a little on the volume size; it settles in a step or two.
    for round in 0..4 {
        out = format!("o{round}");
        let r = pack_json(
            &env,
            "src",
            &out,
            &["--volume-size", &size.to_string(), "--chunk-size", "64KiB"],
        );
        budget = r["volume_size"]["chunk_budget"].as_u64().unwrap();
        if budget % chunk == 0 {
            break;
        }
        size = size - budget + (budget / chunk + 1) * chunk;
    }
    assert_eq!(
        budget % chunk,
        0,
        "the budget did not settle on whole chunks"
    );
    let m = manifest(&env.path(&format!("{out}/vol-001")));
    assert_eq!(m["volumes"]["size"], size);
    let l = layout(&m);
    assert!(l.len() >= 2, "{l:?}");
    assert_eq!(
        l[0].iter().sum::<u64>(),
        budget,
        "volume 1's chunks end exactly at its budget: {l:?}"
    );
    assert!(l[0].iter().all(|&s| s == chunk), "{l:?}");
    // The files every volume carries fit what is left.
    for v in volume_dirs(&env.path(&out)) {
        assert!(bytes_under(&env.path(&format!("{out}/{v}"))) <= size, "{v}");
    }
    every_volume_checks_alone(&env, &out);
}

#[test]
fn presets_are_their_capacity_less_one_percent() {
    let env = Env::new();
    env.keygen("k");
    env.write("src/a.txt", "a\n");
    let r = pack_json(&env, "src", "out", &["--volume-size", "BD25"]);
    // 25,025,314,816 bytes less 1 % (250,253,149, rounded up).
    assert_eq!(r["volume_size"]["bytes"], 24_775_061_667u64, "{r}");
    assert_eq!(r["volume_size"]["medium"], "bd25");
    assert_eq!(r["volume_size"]["capacity"], 25_025_314_816u64);
    assert_eq!(r["volume_size"]["margin_percent"], 1);
    let m = manifest(&env.path("out/vol-001"));
    assert_eq!(m["volumes"]["size"], 24_775_061_667u64);
    assert_eq!(volume_dirs(&env.path("out")), ["vol-001"]);
    env.pack(&["src"], "k", "out2", &["--volume-size", "cd700"])
        .ok()
        .stdout_has("cd700")
        .stdout_has("less 1% for the filesystem = 729907200 bytes");
    // An explicit size is used exactly; an unknown medium is a usage error listing them.
    let r = pack_json(&env, "src", "out3", &["--volume-size", "64GB"]);
    assert_eq!(r["volume_size"]["bytes"], 64_000_000_000u64);
    assert!(r["volume_size"].get("medium").is_none());
    env.pack(&["src"], "k", "out4", &["--volume-size", "bd26"])
        .code(2)
        .stderr_has("bd25");
    assert!(!env.path("out4").exists());
    // --parity is bounded, and needs --volume-size.
    env.pack(
        &["src"],
        "k",
        "out4",
        &["--volume-size", "bd25", "--parity", "999"],
    )
    .code(2)
    .stderr_has("at most 998");
    env.pack(&["src"], "k", "out4", &["--parity", "1"])
        .code(2)
        .stderr_has("--volume-size");
    assert!(!env.path("out4").exists());
    let help = env.run(&["pack", "--help"]);
    help.ok().stdout_has("less 1% for the filesystem");
}

#[test]
fn chunk_size_smaller_and_larger_than_a_volume() {
    let env = Env::new();
    env.keygen("k");
    env.write("src/big.bin", pseudo_random(3_000_000, 23));
    // Larger (the default 2 GiB): every chunk is at most what a volume holds.
    let r = pack_json(&env, "src", "big", &["--volume-size", "1500000"]);
    let budget = r["volume_size"]["chunk_budget"].as_u64().unwrap();
    let l = layout(&manifest(&env.path("big/vol-001")));
    assert!(l.len() >= 3, "{l:?}");
    for sizes in &l {
        assert!(sizes.iter().all(|&s| s <= budget), "{l:?}");
        assert!(sizes.iter().sum::<u64>() <= budget, "{l:?}");
    }
    every_volume_checks_alone(&env, "big");
    // Smaller: every chunk is at most the chunk size.
    pack_json(
        &env,
        "src",
        "small",
        &["--volume-size", "1500000", "--chunk-size", "100000"],
    );
    let l = layout(&manifest(&env.path("small/vol-001")));
    assert!(
        l.iter()
            .all(|v| v.len() > 1 && v.iter().all(|&s| s <= 100_000)),
        "{l:?}"
    );
}

#[test]
fn a_volume_too_small_for_the_reserve_is_a_usage_error() {
    let env = Env::new();
    env.keygen("k");
    // 600 distinct files: every volume's manifest copy is large.
    for i in 0..600 {
        env.write(&format!("src/f{i:04}.txt"), format!("file {i}\n"));
    }
    let run = env.pack(&["src"], "k", "out", &["--volume-size", "256KiB"]);
    run.code(2)
        .stderr_has("a volume of 256.00 KiB cannot hold this bundle")
        .stderr_has("needs at least 64.00 KiB for chunks");
    assert!(!env.path("out").exists(), "a refused pack left its output");
    // Below the smallest volume size at all.
    env.pack(&["src"], "k", "out", &["--volume-size", "100KiB"])
        .code(2)
        .stderr_has("outside 128.00 KiB");
    assert!(!env.path("out").exists());
}

#[test]
fn the_spec_file_sets_volume_size_and_flags_override_it() {
    let env = Env::new();
    env.keygen("k");
    env.write("big.bin", pseudo_random(2_500_000, 25));
    env.write(
        "spec.toml",
        "chunk_size = \"64KiB\"\nvolume_size = \"1500000\"\n[[files]]\npath = \"big.bin\"\n",
    );
    let r = env
        .run(&[
            "pack",
            "--spec",
            "spec.toml",
            "--out",
            "a",
            "--key",
            "k",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["volume_size"]["bytes"], 1_500_000, "{r}");
    assert_eq!(
        manifest(&env.path("a/vol-001"))["volumes"]["size"],
        1_500_000
    );
    let r = env
        .run(&[
            "pack",
            "--spec",
            "spec.toml",
            "--out",
            "b",
            "--key",
            "k",
            "--json",
            "--volume-size",
            "2000000",
        ])
        .ok()
        .json();
    assert_eq!(r["volume_size"]["bytes"], 2_000_000, "{r}");
    // parity in the spec needs a volume size (spec or flag); bounded as the flag is.
    env.write("spec2.toml", "parity = 1\n[[files]]\npath = \"big.bin\"\n");
    env.run(&["pack", "--spec", "spec2.toml", "--out", "c", "--key", "k"])
        .code(2)
        .stderr_has("--volume-size");
    env.write(
        "spec3.toml",
        "volume_size = \"dvd\"\nparity = 5000\n[[files]]\npath = \"big.bin\"\n",
    );
    env.run(&["pack", "--spec", "spec3.toml", "--out", "c", "--key", "k"])
        .code(2)
        .stderr_has("at most 998");
    env.write(
        "spec4.toml",
        "volume_size = 12\n[[files]]\npath = \"big.bin\"\n",
    );
    env.run(&["pack", "--spec", "spec4.toml", "--out", "c", "--key", "k"])
        .code(2)
        .stderr_has("volume_size");
    assert!(!env.path("c").exists());
}

#[test]
fn an_empty_bundle_with_a_volume_size_is_one_volume() {
    let env = Env::new();
    env.keygen("k");
    fs::create_dir_all(env.path("empty")).unwrap();
    let r = pack_json(&env, "empty", "out", &["--volume-size", "dvd"]);
    assert_eq!(volume_dirs(&env.path("out")), ["vol-001"], "{r}");
    let m = manifest(&env.path("out/vol-001"));
    assert_eq!(m["volumes"]["data"], serde_json::json!([0]));
    assert_eq!(r["volumes"][0]["chunks"], 0);
    every_volume_checks_alone(&env, "out");
}

const LAYER: usize = 8 << 20;

/// Stopped by SIGTERM (or SIGINT) with chunks on two volumes: every volume is removed, and the
/// same command run again packs a bundle whose volumes each verify.
fn stop_a_pack_into_volumes(how: Stop) {
    let env = Env::new();
    env.keygen("k");
    let image = SlowImage::start("test/slow", "v1", pseudo_random(LAYER, 26), TRICKLE, 2);
    let args = [
        "pack",
        &image.reference,
        "--out",
        "b",
        "--key",
        "k",
        "--volume-size",
        "3MB",
        "--chunk-size",
        "64KiB",
    ];
    let vol2 = env.path("b/vol-002");
    let run = interrupt_at(env.command(&args), how, "chunks on volume 2", || {
        bytes_under(&vol2) >= 256 << 10
    });
    run.code(how.exit_code()).stderr_has("pack stopped");
    assert!(
        !env.path("b").exists(),
        "an interrupted pack left {:?}",
        names(&env.path("b"))
    );
    env.run(&args).ok();
    every_volume_checks_alone(&env, "b");
}

#[test]
fn sigterm_during_a_pack_into_volumes_removes_every_volume() {
    stop_a_pack_into_volumes(Stop::Term);
}

#[test]
fn sigint_during_a_pack_into_volumes_removes_every_volume() {
    stop_a_pack_into_volumes(Stop::Int);
}

/// Killed with chunks on two volumes: the next pack recognises the unfinished volumes as its own
/// and replaces them; a foreign file in a volume makes it refuse.
#[test]
fn what_a_killed_pack_into_volumes_leaves_is_replaced() {
    let env = Env::new();
    env.keygen("k");
    let image = SlowImage::start("test/slow", "v1", pseudo_random(LAYER, 27), TRICKLE, 3);
    let args = [
        "pack",
        &image.reference,
        "--out",
        "b",
        "--key",
        "k",
        "--volume-size",
        "3MB",
        "--chunk-size",
        "64KiB",
    ];
    let vol2 = env.path("b/vol-002");
    let mut run = Running::start(env.command(&args), Stop::Term);
    run.wait_until("chunks on volume 2", || bytes_under(&vol2) >= 256 << 10);
    run.kill();
    assert!(env.path("b/.airlock-pack").exists());
    assert!(env.path("b/vol-001/chunks").is_dir() && vol2.is_dir());
    // A kill while the volumes' files were written leaves these too (made by hand here).
    env.write("b/vol-001/SHA256SUMS", "0000  chunks/00000000.tar\n");
    env.write("b/vol-001/.airlock-tmp-Ab12Cd", "{\"format\": \"airl");
    env.write("b/vol-002/VOLUME", "airlock bundle volume\n");
    // A file pack did not write: refused, nothing touched.
    env.write("b/vol-002/notes.txt", "mine");
    let before = contents(&env.path("b"));
    env.run(&args).code(2).stderr_has("notes.txt");
    assert_eq!(
        contents(&env.path("b")),
        before,
        "a refused pack touched OUT"
    );
    fs::remove_file(env.path("b/vol-002/notes.txt")).unwrap();
    env.run(&args)
        .ok()
        .stderr_has("replacing the unfinished output of an interrupted pack");
    assert!(!env.path("b/.airlock-pack").exists());
    assert!(!env.path("b/vol-001/.airlock-tmp-Ab12Cd").exists());
    every_volume_checks_alone(&env, "b");
}

/// pack's disk preflight counts every volume's copy of the manifest, signatures and sums: a
/// source that fits the output filesystem as one directory is refused spread over 300 KiB volumes,
/// before a chunk is written.
#[test]
fn the_disk_preflight_counts_every_volume_s_copies() {
    let env = Env::new();
    env.keygen("k");
    // 64 MiB stay free (the reserve): the 80 MiB tmpfs has about 16 MiB for the bundle.
    env.write("src/weights.bin", pseudo_random(14_500 << 10, 28));
    let disk = env.path("disk");
    let _fs = crate::crash::Tmpfs::mount(&disk, "80m");
    let r = env.run(&[
        "pack",
        "src",
        "--out",
        "disk/out",
        "--key",
        "k",
        "--volume-size",
        "300KiB",
    ]);
    r.code(1).stderr_has("disk/out").stderr_has("needs up to");
    assert!(!disk.join("out").exists(), "a refused pack left its output");
    env.run(&["pack", "src", "--out", "disk/out", "--key", "k"])
        .ok();
}
