//! Import from a bundle over several volumes (issue 12): volumes given in any order (or their
//! parent) give the same stores (files, Hugging Face cache, registry) as a bundle of one
//! directory of the same sources; a needed volume missing is named
//! (number and label), nothing written; `--only` needs only the volumes of what it selects;
//! `--media` on one drive, driven through a pseudo-terminal (volumes appearing at the mount
//! point one by one, a wrong one and another bundle's inserted); the non-interactive failure
//! (no terminal; `--json`); an import killed while waiting for volume 2 resumes without
//! reading volume 1 again (it is not even there) and says so; the audit records of each run.

use std::fs;
use std::path::Path;

use airlock::oci::client::{ConnectOptions, Registry};

use crate::support::hub::{Hub, RepoDef};
use crate::support::pty::Pty;
use crate::support::registry::TestRegistry;
use crate::support::tree;
use crate::support::*;

const VOLUME: &str = "1250000";

/// 40 files of 64,000 bytes (one 64 KiB chunk each, so that no blob straddles two volumes)
/// under `big/`, and 3 small files under `small/` (packed first: on volume 1).
fn sources(env: &Env) {
    for i in 0..3 {
        env.write(&format!("small/s{i}.txt"), format!("small {i}\n"));
    }
    for i in 0..40 {
        env.write(
            &format!("big/f{i:02}.bin"),
            pseudo_random(64_000, 500 + i as u64),
        );
    }
}

fn pack_volumes(env: &Env, sources: &[&str], out: &str) {
    env.pack(
        sources,
        "k",
        out,
        &["--volume-size", VOLUME, "--chunk-size", "64KiB"],
    )
    .ok();
}

fn records(env: &Env) -> Vec<serde_json::Value> {
    fs::read_to_string(env.audit_log())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn outcomes(env: &Env) -> Vec<String> {
    records(env)
        .iter()
        .filter_map(|r| r["outcome"].as_str().map(str::to_string))
        .collect()
}

/// The manifest of a bundle over volumes (any volume's copy).
fn manifest_of(env: &Env, volume_dir: &str) -> airlock::format::Manifest {
    let bytes = fs::read(env.path(volume_dir).join("manifest.json")).unwrap();
    airlock::format::Manifest::decode_unvalidated(&bytes).unwrap()
}

/// `"chunks A to B"` as the label of volume `n` names them.
fn chunk_range(m: &airlock::format::Manifest, n: u32) -> String {
    let r = m.volume_chunks(n);
    format!(
        "chunks {} to {}",
        m.chunks[r.start].name,
        m.chunks[r.end - 1].name
    )
}

/// The blobs with a segment on volume `n`.
fn blobs_on(m: &airlock::format::Manifest, n: u32) -> usize {
    m.blobs
        .iter()
        .filter(|b| {
            b.segments
                .iter()
                .any(|s| m.volume_of(s.chunk as usize) == n)
        })
        .count()
}

fn volume_count(env: &Env, out: &str) -> usize {
    fs::read_dir(env.path(out))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("vol-")
        })
        .count()
}

/// The files a direct import of a one-directory bundle of the same sources (the same source
/// strings, run in `sources_in`) writes, into another workspace.
fn reference(sources_in: &Env, srcs: &[&str]) -> tree::Snapshot {
    let env = Env::new();
    let mut c = sources_in.command(&["pack"]);
    c.args(srcs)
        .args(["--out", &env.path("one").display().to_string()])
        .args(["--key", &sources_in.path("k").display().to_string()]);
    c.args(["--chunk-size", "64KiB"]);
    run_cmd(c).ok();
    let trust = sources_in.path("k.pub").display().to_string();
    env.run(&["import", "one", "--trust", &trust, "--files", "d"])
        .ok();
    tree::snapshot(&env.path("d"))
}

/// `pack SOURCES --out OUT --key k EXTRA…` in `env`, with the Hugging Face Hub emulator.
fn pack_hub(env: &Env, hub: &Hub, srcs: &[&str], out: &Path, extra: &[&str]) {
    let mut c = env.command(&["pack"]);
    c.args(srcs)
        .args(["--out", &out.display().to_string(), "--key", "k"])
        .args(["--chunk-size", "64KiB"])
        .args(extra)
        .env("HF_ENDPOINT", hub.url())
        .env("HF_HOME", env.path("hf-home"))
        .env_remove("HF_TOKEN");
    run_cmd(c).ok();
}

/// The image `--registry` pushed, as the JSON report names it: its manifest bytes.
fn pushed(reg: &TestRegistry, report: &serde_json::Value) -> Vec<u8> {
    let target = report["registry"]["images"][0]["target"].as_str().unwrap();
    // HOST/PREFIX/REPO:TAG, perhaps with @DIGEST.
    let name = target.split('@').next().unwrap();
    let (repo, tag) = name.split_once('/').unwrap().1.rsplit_once(':').unwrap();
    let client = Registry::new(&reg.addr, &ConnectOptions::default()).unwrap();
    client.manifest(repo, tag).unwrap().bytes
}

#[test]
fn volumes_in_any_order_give_the_same_stores_as_one_directory() {
    let reg = TestRegistry::start();
    let hub = Hub::start(vec![RepoDef::model("acme/tiny")
        .file("config.json", br#"{"a": 1}"#.to_vec())
        .lfs("model.safetensors", pseudo_random(400_000, 4))]);
    let env = Env::new();
    env.keygen("k");
    sources(&env);
    let (layout, manifest, _) = crate::support::registry::build_layout(&env.path("img"));
    let img = format!("oci-layout://{}:t", layout.display());
    let srcs = ["small", "big", "hf://acme/tiny", img.as_str()];
    pack_hub(
        &env,
        &hub,
        &srcs,
        &env.path("vb"),
        &["--volume-size", VOLUME],
    );
    pack_hub(&env, &hub, &srcs, &env.path("one"), &[]);
    let n = volume_count(&env, "vb");
    assert!(n >= 3, "at least 3 data volumes");
    let import = |ws: &Env, dirs: &[String], tag: &str| -> serde_json::Value {
        let mut c = ws.command(&["import"]);
        c.args(dirs)
            .args(["--trust", &env.path("k.pub").display().to_string()])
            .args([
                "--files",
                &ws.path(&format!("d-{tag}")).display().to_string(),
            ])
            .arg(format!(
                "--hf-cache={}",
                ws.path(&format!("h-{tag}")).display()
            ))
            .args(["--registry", &format!("{}/{tag}", reg.addr), "--json"]);
        run_cmd(c).ok().json()
    };
    // The bundle of one directory, imported in a workspace of its own (its own state).
    let other = Env::new();
    let one = import(&other, &[env.path("one").display().to_string()], "one");
    // Order 3, 1, 2, then the rest.
    let order: Vec<String> = [3, 1, 2]
        .into_iter()
        .chain(4..=n)
        .map(|k| env.path(&format!("vb/vol-{k:03}")).display().to_string())
        .collect();
    let vols = import(&env, &order, "vol");
    let snap = |ws: &Env, p: &str| tree::snapshot(&ws.path(p));
    assert_eq!(snap(&env, "d-vol"), snap(&other, "d-one"), "the same files");
    assert!(snap(&env, "d-vol").contains_key("big/f39.bin"));
    assert_eq!(
        snap(&env, "h-vol"),
        snap(&other, "h-one"),
        "the same HF cache"
    );
    assert!(!snap(&env, "h-vol").is_empty());
    assert_eq!(pushed(&reg, &vols), pushed(&reg, &one), "the same image");
    assert_eq!(pushed(&reg, &vols), manifest);
    // The parent directory stands for its volumes.
    env.run(&[
        "import", "vb", "--trust", "k.pub", "--files", "d2", "--only", "big",
    ])
    .ok();
    assert_eq!(
        tree::snapshot(&env.path("d2/big")),
        tree::snapshot(&other.path("d-one/big"))
    );
    assert_eq!(
        outcomes(&env),
        ["started", "accepted", "started", "accepted"]
    );
}

#[test]
fn a_needed_volume_missing_is_named_and_nothing_is_written_but_only_needs_its_volumes() {
    let env = Env::new();
    env.keygen("k");
    sources(&env);
    pack_volumes(&env, &["small", "big"], "vb");
    assert_eq!(volume_count(&env, "vb"), 3);
    fs::create_dir_all(env.path("d")).unwrap();
    env.write("d/keep.txt", "kept\n");
    let before = tree::snapshot(&env.path("d"));
    let r = env.run(&[
        "import",
        "vb/vol-001",
        "vb/vol-003",
        "--trust",
        "k.pub",
        "--files",
        "d",
    ]);
    let range = chunk_range(&manifest_of(&env, "vb/vol-001"), 2);
    r.code(3)
        .stderr_has("volume 2 of 3 (bundle ")
        .stderr_has(&range)
        .stderr_has("nothing was written");
    assert!(!r.stderr.contains("volume 3 of 3"), "{}", r.stderr);
    assert_eq!(tree::snapshot(&env.path("d")), before, "nothing written");
    // --json: the same refusal, as the error object.
    let j = env.run(&[
        "import",
        "vb/vol-001",
        "--trust",
        "k.pub",
        "--files",
        "d",
        "--json",
    ]);
    j.code(3);
    assert!(j.stdout.contains("volume 2 of 3") && j.stdout.contains("volume 3 of 3"));
    assert_eq!(tree::snapshot(&env.path("d")), before, "nothing written");
    // Only `small` (on volume 1): volume 1 alone suffices.
    env.run(&[
        "import",
        "vb/vol-001",
        "--trust",
        "k.pub",
        "--files",
        "d",
        "--only",
        "small",
    ])
    .ok();
    assert_eq!(env.read("d/small/s1.txt"), b"small 1\n");
    assert!(!env.path("d/big").exists());
    let recs = records(&env);
    let outs: Vec<&str> = recs
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outs, ["rejected", "rejected", "started", "accepted"]);
    assert!(
        recs[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("volume 2")
            || recs[0].to_string().contains("volume 2"),
        "{}",
        recs[0]
    );
}

/// Moves the volume at `mount` back to `vb/vol-NNN` and volume `n` to `mount`.
fn insert(env: &Env, mount: &Path, current: &mut Option<String>, dir: &str) {
    if let Some(c) = current.take() {
        fs::rename(mount, env.path(&c)).unwrap();
    }
    fs::rename(env.path(dir), mount).unwrap();
    *current = Some(dir.to_string());
}

/// The volume number the last prompt asks for.
fn asked(out: &str) -> u32 {
    let at = out.rfind("Insert volume ").expect("a prompt") + "Insert volume ".len();
    out[at..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn media_prompts_for_each_volume_on_a_terminal_and_names_a_wrong_one() {
    let env = Env::new();
    env.keygen("k");
    sources(&env);
    pack_volumes(&env, &["small", "big"], "vb");
    // Another bundle by the same key, for a foreign volume.
    env.write("other/x.bin", pseudo_random(1_500_000, 9));
    pack_volumes(&env, &["other"], "ob");
    let want = reference(&env, &["small", "big"]);
    let mount = env.path("usb");
    let mut current = None;
    insert(&env, &mount, &mut current, "vb/vol-002");

    // Without a terminal: no prompt, an error listing the volumes missing, nothing written.
    let r = env.run(&[
        "import", "--media", "usb", "--trust", "k.pub", "--files", "d",
    ]);
    r.code(3)
        .stderr_has("volume 1 of 3")
        .stderr_has("volume 3 of 3")
        .stderr_has("cannot prompt");
    assert!(!env.path("d").exists(), "nothing written");

    let mut pty = Pty::start(env.command(&[
        "import", "--media", "usb", "--trust", "k.pub", "--files", "d",
    ]));
    let out = pty.wait_for("and press Enter", 1);
    assert_eq!(asked(&out), 1);
    assert!(out.contains("Insert volume 1 of 3 (bundle "), "{out}");
    // A wrong volume of this bundle, then another bundle's volume.
    insert(&env, &mount, &mut current, "vb/vol-003");
    pty.send(b"\n");
    let out = pty.wait_for("and press Enter", 2);
    assert!(
        out.contains("this is volume 3; volume 1 is needed"),
        "{out}"
    );
    insert(&env, &mount, &mut current, "ob/vol-001");
    pty.send(b"\n");
    let out = pty.wait_for("and press Enter", 3);
    assert!(out.contains("a volume of another bundle"), "{out}");
    // Then each volume asked for.
    let mut prompts = 3;
    let mut seen = Vec::new();
    loop {
        let n = asked(&pty.output());
        seen.push(n);
        insert(&env, &mount, &mut current, &format!("vb/vol-{n:03}"));
        pty.send(b"\n");
        let out = loop {
            let out = pty.output();
            if out.matches("and press Enter").count() > prompts || out.contains("imported ") {
                break out;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        if out.matches("and press Enter").count() > prompts {
            prompts += 1;
            continue;
        }
        break;
    }
    let (code, out) = pty.wait();
    assert_eq!(code, 0, "{out}");
    // Volume 2 was at the mount point first, but was taken out for the wrong ones.
    assert_eq!(seen, [1, 2, 3], "{out}");
    assert_eq!(tree::snapshot(&env.path("d")), want);
    assert_eq!(outcomes(&env), ["rejected", "started", "accepted"]);
}

#[test]
fn media_with_json_never_prompts() {
    let env = Env::new();
    env.keygen("k");
    sources(&env);
    pack_volumes(&env, &["small", "big"], "vb");
    fs::rename(env.path("vb/vol-001"), env.path("usb")).unwrap();
    let mut pty = Pty::start(env.command(&[
        "import", "--media", "usb", "--trust", "k.pub", "--files", "d", "--json",
    ]));
    let (code, out) = {
        let p = &mut pty;
        let _ = p;
        pty.wait()
    };
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("volume 2 of 3") && !out.contains("press Enter"),
        "{out}"
    );
    assert!(!env.path("d").exists());
}

#[test]
fn an_import_killed_at_the_prompt_resumes_without_reading_volume_1_again() {
    let env = Env::new();
    env.keygen("k");
    sources(&env);
    pack_volumes(&env, &["big"], "vb");
    let want = reference(&env, &["big"]);
    let mount = env.path("usb");
    let mut current = None;
    insert(&env, &mount, &mut current, "vb/vol-001");
    let pty = {
        let mut p = Pty::start(env.command(&[
            "import", "--media", "usb", "--trust", "k.pub", "--files", "d",
        ]));
        let out = p.wait_for("and press Enter", 1);
        assert_eq!(asked(&out), 2, "{out}");
        p
    };
    let (code, _) = pty.kill();
    assert_eq!(code, 128 + 9);
    let (visible, _hidden) = tree::visible(&env.path("d"));
    assert!(visible.values().all(|v| v.starts_with('d')), "{visible:?}");
    // Volume 1 is gone: the next run starts from volume 2 and never asks for volume 1.
    fs::rename(&mount, env.path("gone-vol-001")).unwrap();
    fs::remove_dir_all(env.path("gone-vol-001")).unwrap();
    current = None;
    insert(&env, &mount, &mut current, "vb/vol-002");
    let mut pty = Pty::start(env.command(&[
        "import", "--media", "usb", "--trust", "k.pub", "--files", "d",
    ]));
    let out = pty.wait_for("and press Enter", 1);
    let on_1 = blobs_on(&manifest_of(&env, "usb"), 1);
    assert!(
        out.contains(&format!(
            "volume 1: its {on_1} blobs were staged by an interrupted run and re-checked; not read again"
        )),
        "{out}"
    );
    assert_eq!(asked(&out), 3, "{out}");
    insert(&env, &mount, &mut current, "vb/vol-003");
    pty.send(b"\n");
    let (code, out) = pty.wait();
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("Insert volume 1"), "{out}");
    assert_eq!(tree::snapshot(&env.path("d")), want);
    let (_, hidden) = tree::visible(&env.path("d"));
    assert!(hidden.is_empty(), "staging left: {hidden:?}");
    // The killed run's `started` stands without an outcome; the resumed run completes.
    assert_eq!(outcomes(&env), ["started", "started", "accepted"]);
}

#[test]
fn ctrl_c_at_the_prompt_stops_and_keeps_what_was_staged() {
    let env = Env::new();
    env.keygen("k");
    sources(&env);
    pack_volumes(&env, &["big"], "vb");
    let want = reference(&env, &["big"]);
    let mount = env.path("usb");
    let mut current = None;
    insert(&env, &mount, &mut current, "vb/vol-001");
    let mut pty = Pty::start(env.command(&[
        "import", "--media", "usb", "--trust", "k.pub", "--files", "d",
    ]));
    pty.wait_for("and press Enter", 1);
    pty.send(b"\x03");
    let (code, out) = pty.wait();
    assert_eq!(code, 130, "{out}");
    assert!(out.contains("the blobs staged so far are kept"), "{out}");
    let (visible, hidden) = tree::visible(&env.path("d"));
    assert!(visible.values().all(|v| v.starts_with('d')), "{visible:?}");
    assert!(!hidden.is_empty(), "the staged blobs are kept");
    // Resumed from volume 2: volume 1 not read again.
    insert(&env, &mount, &mut current, "vb/vol-002");
    let mut pty = Pty::start(env.command(&[
        "import", "--media", "usb", "--trust", "k.pub", "--files", "d",
    ]));
    let out = pty.wait_for("and press Enter", 1);
    let on_1 = blobs_on(&manifest_of(&env, "usb"), 1);
    assert!(
        out.contains(&format!("volume 1: its {on_1} blobs were staged")),
        "{out}"
    );
    insert(&env, &mount, &mut current, "vb/vol-003");
    pty.send(b"\n");
    let (code, out) = pty.wait();
    assert_eq!(code, 0, "{out}");
    assert_eq!(tree::snapshot(&env.path("d")), want);
    assert_eq!(
        outcomes(&env),
        ["started", "interrupted", "started", "accepted"]
    );
}

/// The hostile cases of issue 12 at import: a volume of another bundle signed by the same key, a
/// volume given twice, a corrupt chunk on volume 2 — each named, nothing visible written.
#[test]
fn a_foreign_a_duplicated_volume_and_a_corrupt_chunk_on_volume_2_are_named_and_nothing_is_written()
{
    let env = Env::new();
    env.keygen("k");
    sources(&env);
    pack_volumes(&env, &["small", "big"], "vb");
    pack_volumes(&env, &["big", "small"], "other");
    fs::create_dir_all(env.path("d")).unwrap();
    env.write("d/keep.txt", "kept\n");
    let before = tree::snapshot(&env.path("d"));
    let import = |dirs: &[&str]| {
        let mut args = vec!["import"];
        args.extend_from_slice(dirs);
        args.extend_from_slice(&["--trust", "k.pub", "--files", "d"]);
        env.run(&args)
    };
    // Volume 2 of another bundle in place of this one's.
    import(&["vb/vol-001", "other/vol-002", "vb/vol-003"])
        .code(3)
        .stderr_has("foreign volume")
        .stderr_has("other/vol-002");
    assert_eq!(tree::snapshot(&env.path("d")), before);
    // Volume 1 given twice (a copy of the disc).
    fs::create_dir_all(env.path("copy")).unwrap();
    let cp = std::process::Command::new("cp")
        .args(["-a", "vb/vol-001", "copy/vol-001"])
        .current_dir(env.path(""))
        .status()
        .unwrap();
    assert!(cp.success());
    import(&["vb/vol-001", "copy/vol-001", "vb/vol-002", "vb/vol-003"])
        .code(3)
        .stderr_has("duplicate volume: volume 1 was given twice");
    assert_eq!(tree::snapshot(&env.path("d")), before);
    // One byte flipped in a chunk of volume 2: found while staging, named, rolled back.
    let m = manifest_of(&env, "vb/vol-002");
    let first = m.volume_chunks(2).start;
    let name = m.chunks[first].name.clone();
    let path = env.path(&format!("vb/vol-002/chunks/{name}"));
    let mut bytes = fs::read(&path).unwrap();
    bytes[1000] ^= 0x55;
    fs::write(&path, bytes).unwrap();
    import(&["vb/vol-003", "vb/vol-001", "vb/vol-002"])
        .code(3)
        .stderr_has(&name);
    assert_eq!(tree::snapshot(&env.path("d")), before, "nothing written");
}
