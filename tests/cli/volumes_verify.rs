//! Verify on insert (issue 12): `airlock verify` of one volume of a bundle over several (intact
//! but incomplete: exit 4, naming the volumes still to check), of every volume in any order or
//! of their parent (exit 0), and of volumes that are damaged, of another bundle or given twice
//! (exit 3, each problem named with its directory and volume); each volume checks with stock
//! `minisign` and `sha256sum`; `sign` countersigns each volume. Verify never writes.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::tree::{self, assert_unchanged};
use crate::support::*;

/// A bundle `out` over 3 data volumes (a 3 MB file and a small tree, 64 KiB chunks, volumes of
/// 1.5 MB), key `k`.
fn three_volumes() -> Env {
    let env = Env::new();
    env.keygen("k");
    env.write("big.bin", pseudo_random(3_000_000, 7));
    env.write("d/a.txt", "hello\n");
    env.pack(
        &["big.bin", "d"],
        "k",
        "out",
        &["--volume-size", "1500000", "--chunk-size", "64KiB"],
    )
    .ok();
    assert_eq!(
        volumes_in(&env.path("out")),
        ["vol-001", "vol-002", "vol-003"]
    );
    env
}

fn volumes_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn codes(run: &Run) -> Vec<String> {
    run.json()["error"]["problems"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_string())
        .collect()
}

/// Everything in the workspace but the state directory (where verify appends its audit record).
fn snapshot(env: &Env) -> tree::Snapshot {
    tree::snapshot_except(env.dir.path(), &[STATE_DIR, "json-cases.json", "empty"])
}

/// `cp -a SRC DST` inside the workspace.
fn copy(env: &Env, src: &str, dst: &str) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(env.path(src))
        .arg(env.path(dst))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {src} {dst}");
}

/// A chunk file name of volume `vol` of `bundle` (its first, or its last).
fn chunk_of(env: &Env, vol: &str, last: bool) -> String {
    let names = volumes_in(&env.path(&format!("{vol}/chunks")));
    if last {
        names.last().unwrap().clone()
    } else {
        names[0].clone()
    }
}

/// Runs `program args` in `dir`; its stdout (asserting success).
#[track_caller]
fn stock(dir: &Path, program: &str, args: &[&str]) -> String {
    require(program);
    let o = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{program} {args:?} in {}:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The documents recorded validate against their committed schemas (the independent validator
/// of json_contract.rs).
fn validate(env: &Env, cases: &[Value]) {
    let python = crate::hub_emulator::pyenv().join("bin/python");
    assert!(python.exists(), "{} is missing", python.display());
    let file = env.write("json-cases.json", serde_json::to_vec(cases).unwrap());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg(root.join("tests/cli/json_contract.py"))
        .arg(root.join("schemas"))
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{} documents checked, 0 failures", cases.len())),
        "{stdout}"
    );
}

#[test]
fn each_volume_alone_is_intact_but_incomplete_and_checks_with_stock_tools() {
    let env = three_volumes();
    let before = snapshot(&env);
    let mut cases = Vec::new();
    for (n, others) in [(1, "2, 3"), (2, "1, 3"), (3, "1, 2")] {
        let vol = format!("out/vol-00{n}");
        let r = env.run(&["verify", &vol, "--trust", "k.pub"]);
        r.code(4)
            .stdout_has(&format!(
                "volume {n} of 3 (data) intact; still to check: volumes {others} (data)"
            ))
            .stdout_has("VOLUME  KIND  DIRECTORY    STATUS")
            .stdout_has(&format!("{vol}  intact"))
            .stdout_has("not given")
            .stderr_has("intact but incomplete (exit 4)");
        let r = env.run(&["verify", &vol, "--trust", "k.pub", "--json"]);
        r.code(4);
        let doc = r.json();
        assert_eq!(doc["ok"], true, "{doc}");
        assert_eq!(doc["complete"], false, "{doc}");
        assert_eq!(doc["verified"], false, "{doc}");
        let missing: Vec<u64> = [1, 2, 3].into_iter().filter(|&m| m != n).collect();
        assert_eq!(doc["missing_volumes"], json!(missing), "{doc}");
        let volumes = doc["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 3);
        for v in volumes {
            let m = v["volume"].as_u64().unwrap();
            assert_eq!(v["kind"], "data");
            if m == n {
                assert_eq!(v["status"], "intact", "{v}");
                assert_eq!(v["dir"], vol.as_str(), "{v}");
            } else {
                assert_eq!(v["status"], "not-given", "{v}");
                assert_eq!(v["dir"], Value::Null, "{v}");
            }
        }
        cases.push(json!({"name": format!("verify {vol}"), "schema": "report-verify.schema.json", "doc": doc}));

        // Stock tools, inside the volume: the signature over the manifest, the volume's own
        // chunks, and the signed comment's `sha256sums` is this volume's SHA256SUMS.
        let dir = env.path(&vol);
        let shown = stock(
            &dir,
            "minisign",
            &["-Vm", "manifest.json", "-p", "../../k.pub"],
        );
        let comment = shown
            .lines()
            .find_map(|l| l.strip_prefix("Trusted comment: "))
            .unwrap_or_else(|| panic!("no trusted comment in {shown}"));
        assert!(comment.contains(&format!("\tvolume:{n}")), "{comment}");
        let checked = stock(&dir, "sha256sum", &["-c", "SHA256SUMS"]);
        let listed = fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
        assert_eq!(checked.lines().count(), listed.lines().count(), "{checked}");
        assert_eq!(
            listed.lines().count(),
            volumes_in(&dir.join("chunks")).len(),
            "SHA256SUMS lists this volume's chunks only"
        );
        let sums = stock(&dir, "sha256sum", &["SHA256SUMS"]);
        let digest = sums.split_whitespace().next().unwrap();
        assert!(
            comment.contains(&format!("sha256sums:{digest}")),
            "{comment} / {digest}"
        );
    }
    validate(&env, &cases);
    assert_unchanged(&before, &snapshot(&env), "verify of one volume");
}

#[test]
fn every_volume_in_any_order_or_their_parent_is_the_full_check() {
    let env = three_volumes();
    let before = snapshot(&env);
    let order = ["out/vol-003", "out/vol-001", "out/vol-002"];
    let mut args = vec!["verify"];
    args.extend(order);
    args.extend(["--trust", "k.pub"]);
    env.run(&args)
        .ok()
        .stdout_has("bundle intact: all 3 volumes verified")
        .stdout_has("out/vol-001  intact");
    env.run(&["verify", "out", "--trust", "k.pub"])
        .ok()
        .stdout_has("bundle intact: all 3 volumes verified");
    args.push("--json");
    let r = env.run(&args);
    r.ok();
    let doc = r.json();
    assert_eq!(doc["complete"], true, "{doc}");
    assert_eq!(doc["verified"], true, "{doc}");
    assert_eq!(doc["missing_volumes"], json!([]), "{doc}");
    let dirs: Vec<&str> = doc["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["status"], "intact", "{v}");
            v["dir"].as_str().unwrap()
        })
        .collect();
    assert_eq!(dirs, ["out/vol-001", "out/vol-002", "out/vol-003"]);
    let parent = env.run(&["verify", "out", "--trust", "k.pub", "--json"]);
    parent.ok();
    assert_eq!(parent.json()["dir"], "out");
    // Two of three, the parent holding nothing of a bundle: usage errors as ever.
    env.run(&["verify", "out/vol-001", "out/vol-003", "--trust", "k.pub"])
        .code(4)
        .stdout_has("volumes 1, 3 of 3 (data) intact; still to check: volume 2 (data)");
    fs::create_dir_all(env.path("empty/sub")).unwrap();
    env.run(&["verify", "empty", "--trust", "k.pub"])
        .code(2)
        .stderr_has("is not a bundle directory");
    validate(
        &env,
        &[
            json!({"name": "verify 3 1 2", "schema": "report-verify.schema.json", "doc": doc}),
            json!({"name": "verify out", "schema": "report-verify.schema.json", "doc": parent.json()}),
        ],
    );
    assert_unchanged(&before, &snapshot(&env), "verify of every volume");
}

#[test]
fn a_foreign_volume_and_a_duplicated_volume_are_named() {
    let env = three_volumes();
    // Another bundle of the same sources, signed by the same key.
    env.pack(
        &["big.bin", "d"],
        "k",
        "other",
        &["--volume-size", "1500000", "--chunk-size", "64KiB"],
    )
    .ok();
    copy(&env, "out/vol-002", "copy-of-2");
    let before = snapshot(&env);
    let r = env.run(&[
        "verify",
        "out/vol-001",
        "out/vol-002",
        "other/vol-003",
        "--trust",
        "k.pub",
    ]);
    r.code(3)
        .stderr_has("other/vol-003 (volume 3): foreign volume: other/vol-003 is a volume of bundle")
        .stderr_has("another bundle's");
    let r = env.run(&[
        "verify",
        "out/vol-001",
        "out/vol-002",
        "other/vol-003",
        "--trust",
        "k.pub",
        "--json",
    ]);
    assert_eq!(codes(&r), ["foreign-volume"]);
    let doc = r.json();
    assert_eq!(doc["error"]["volumes"][2]["dir"], "other/vol-003", "{doc}");
    assert_eq!(doc["error"]["volumes"][2]["volume"], 3, "{doc}");
    assert_eq!(doc["error"]["volumes"][0]["problems"], json!([]), "{doc}");

    let r = env.run(&[
        "verify",
        "out/vol-001",
        "out/vol-002",
        "copy-of-2",
        "out/vol-003",
        "--trust",
        "k.pub",
    ]);
    r.code(3).stderr_has(
        "copy-of-2 (volume 2): duplicate volume: volume 2 was given twice (out/vol-002, copy-of-2)",
    );
    let dup = env.run(&[
        "verify",
        "out/vol-001",
        "out/vol-002",
        "copy-of-2",
        "--trust",
        "k.pub",
        "--json",
    ]);
    dup.code(3);
    assert_eq!(codes(&dup), ["duplicate-volume"]);
    validate(
        &env,
        &[
            json!({"name": "foreign", "schema": "error.schema.json", "doc": doc}),
            json!({"name": "duplicate", "schema": "error.schema.json", "doc": dup.json()}),
        ],
    );
    assert_unchanged(
        &before,
        &snapshot(&env),
        "verify of a foreign or duplicated volume",
    );
}

/// Damage to volume 2 of a fresh copy `case` of the bundle, then `verify case` (the parent).
#[track_caller]
fn damaged(env: &Env, case: &str, damage: impl FnOnce(&Path), want: &[&str]) -> Run {
    damaged_with(env, case, damage, want, &["--trust", "k.pub"])
}

/// [`damaged`], with this trust.
#[track_caller]
fn damaged_with(
    env: &Env,
    case: &str,
    damage: impl FnOnce(&Path),
    want: &[&str],
    trust: &[&str],
) -> Run {
    copy(env, "out", case);
    damage(&env.path(case));
    let before = snapshot(env);
    let mut args = vec!["verify", case];
    args.extend(trust);
    args.push("--json");
    let r = env.run(&args);
    r.code(3);
    let got = codes(&r);
    for w in want {
        assert!(
            got.iter().any(|c| c == w),
            "{case}: {w} not in {got:?}\n{}",
            r.stdout
        );
    }
    args.pop();
    let text = env.run(&args);
    text.code(3)
        .stderr_has("bundle rejected:")
        .stderr_has("damaged");
    assert_unchanged(&before, &snapshot(env), case);
    text
}

#[test]
fn damage_on_one_volume_is_named_with_its_directory_and_volume() {
    let env = three_volumes();
    let c2 = chunk_of(&env, "out/vol-002", false);
    let c1 = chunk_of(&env, "out/vol-001", true);

    let r = damaged(
        &env,
        "corrupt",
        |d| {
            let p = d.join("vol-002/chunks").join(&c2);
            let mut b = fs::read(&p).unwrap();
            b[100] ^= 1;
            fs::write(&p, b).unwrap();
        },
        &["corrupt-chunk"],
    );
    r.stderr_has(&format!("corrupt/vol-002 (volume 2): corrupt chunk: {c2}"));

    damaged(
        &env,
        "missing",
        |d| fs::remove_file(d.join("vol-002/chunks").join(&c2)).unwrap(),
        &["missing-chunk"],
    )
    .stderr_has(&format!("missing/vol-002 (volume 2): missing chunk: {c2}"));

    damaged(
        &env,
        "misplaced",
        |d| {
            fs::copy(
                d.join("vol-001/chunks").join(&c1),
                d.join("vol-002/chunks").join(&c1),
            )
            .unwrap();
        },
        &["misplaced-chunk"],
    )
    .stderr_has(&format!(
        "misplaced/vol-002 (volume 2): misplaced chunk: {c1} belongs on volume 1, not on volume 2"
    ));

    damaged(
        &env,
        "label",
        |d| {
            let p = d.join("vol-002/VOLUME");
            let text = fs::read_to_string(&p).unwrap().replacen('2', "3", 1);
            fs::write(&p, text).unwrap();
        },
        &["label-mismatch"],
    )
    .stderr_has("label/vol-002 (volume 2): label mismatch");

    damaged(
        &env,
        "sums",
        |d| {
            let (a, b) = (d.join("vol-001/SHA256SUMS"), d.join("vol-002/SHA256SUMS"));
            let (ta, tb) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
            fs::write(&a, tb).unwrap();
            fs::write(&b, ta).unwrap();
        },
        &["sums-mismatch"],
    )
    .stderr_has("sums/vol-001 (volume 1): SHA256SUMS does not match")
    .stderr_has("sums/vol-002 (volume 2): SHA256SUMS does not match");
}

#[test]
fn a_signature_copied_from_another_volume_is_caught() {
    let env = three_volumes();
    env.keygen("k2");
    env.run(&["sign", "out", "--key", "k2", "--trust", "k.pub"])
        .ok();
    let id = fs::read_to_string(env.path("k2.pub"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    // Volume 2 carrying volume 1's countersignature: its comment names volume 1 (and volume 1's
    // SHA256SUMS), the primary signature's volume 2.
    let sig = format!("signatures/{id}.minisig");
    damaged_with(
        &env,
        "sig",
        |d| {
            fs::copy(d.join("vol-001").join(&sig), d.join("vol-002").join(&sig)).unwrap();
        },
        &["comment-mismatch"],
        &["--trust", "k.pub", "--trust", "k2.pub"],
    )
    .stderr_has("sig/vol-002")
    .stderr_has(&sig);
    // The primary signature alone, copied from volume 1: the directory claims to be volume 1
    // and holds none of its content.
    damaged(
        &env,
        "primary",
        |d| {
            fs::remove_dir_all(d.join("vol-002/signatures")).unwrap();
            fs::copy(
                d.join("vol-001/manifest.json.minisig"),
                d.join("vol-002/manifest.json.minisig"),
            )
            .unwrap();
        },
        &["sums-mismatch", "label-mismatch", "misplaced-chunk"],
    );
}

#[test]
fn each_volume_takes_its_own_countersignature_for_a_two_of_two_policy() {
    let env = three_volumes();
    env.keygen("k2");
    env.write(
        "trust.toml",
        r#"
[keys.ci]
file = "k.pub"
[keys.officer]
file = "k2.pub"
[channels.default]
signers = ["ci", "officer"]
threshold = 2
"#,
    );
    let r = env.run(&["verify", "out", "--policy", "trust.toml", "--json"]);
    r.code(3);
    assert_eq!(codes(&r), ["policy-threshold"; 3]);

    // A damaged volume: nothing is signed, on any volume.
    copy(&env, "out", "bad");
    let c = chunk_of(&env, "bad/vol-003", false);
    fs::remove_file(env.path("bad/vol-003/chunks").join(&c)).unwrap();
    let before = snapshot(&env);
    env.run(&["sign", "bad", "--key", "k2", "--policy", "trust.toml"])
        .code(3)
        .stderr_has("bad/vol-003")
        .stderr_has("missing chunk");
    assert_unchanged(&before, &snapshot(&env), "sign of a damaged volume set");

    // One volume alone, then the rest through the parent... which already has volume 2's.
    let one = env.run(&[
        "sign",
        "out/vol-002",
        "--key",
        "k2",
        "--policy",
        "trust.toml",
        "--json",
    ]);
    one.ok();
    let doc = one.json();
    assert_eq!(
        doc["volumes"],
        json!([{"volume": 2, "dir": "out/vol-002"}]),
        "{doc}"
    );
    env.run(&["verify", "out/vol-002", "--policy", "trust.toml"])
        .code(4);
    env.run(&["verify", "out", "--policy", "trust.toml"])
        .code(3)
        .stderr_has("out/vol-001 (volume 1): policy threshold not met");
    env.run(&["sign", "out", "--key", "k2", "--policy", "trust.toml"])
        .code(2)
        .stderr_has("out/vol-002 is already signed by key");
    let all = env.run(&[
        "sign",
        "out/vol-003",
        "out/vol-001",
        "--key",
        "k2",
        "--policy",
        "trust.toml",
        "--json",
    ]);
    all.ok();
    let signed = all.json();
    assert_eq!(signed["volumes"][0]["volume"], 3, "{signed}");
    assert_eq!(signed["volumes"][1]["volume"], 1, "{signed}");
    env.run(&["verify", "out", "--policy", "trust.toml"])
        .ok()
        .stdout_has("bundle intact: all 3 volumes verified");
    let key_file = signed["signers"][0]["file"].as_str().unwrap().to_string();
    for n in 1..=3 {
        env.run(&[
            "verify",
            &format!("out/vol-00{n}"),
            "--policy",
            "trust.toml",
        ])
        .code(4);
        // Stock minisign: the countersignature's comment names this volume.
        let dir = env.path(&format!("out/vol-00{n}"));
        let shown = stock(
            &dir,
            "minisign",
            &[
                "-Vm",
                "manifest.json",
                "-x",
                &key_file,
                "-p",
                "../../k2.pub",
            ],
        );
        assert!(shown.contains(&format!("\tvolume:{n}")), "{shown}");
    }
    validate(
        &env,
        &[
            json!({"name": "sign one volume", "schema": "report-sign.schema.json", "doc": doc}),
            json!({"name": "sign two volumes", "schema": "report-sign.schema.json", "doc": signed}),
        ],
    );
}
