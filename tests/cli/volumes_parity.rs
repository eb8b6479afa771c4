//! Parity volumes (`pack --parity N`), `airlock repair`, and rebuilt (unsigned) volumes accepted
//! beside a signed one.

use std::fs;
use std::path::Path;

use crate::support::*;

/// A bundle `out` of a 3 MB file and the sample tree over 3 data volumes and `parity` parity
/// volumes (key `k`).
fn parity_bundle(env: &Env, parity: u32) {
    env.keygen("k");
    env.write("big.bin", pseudo_random(3_000_000, 12));
    env.sample_tree("src");
    env.pack(
        &["big.bin", "src"],
        "k",
        "out",
        &[
            "--volume-size",
            "1500000",
            "--chunk-size",
            "64KiB",
            "--parity",
            &parity.to_string(),
        ],
    )
    .ok();
    let vols: Vec<String> = fs::read_dir(env.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(vols.len() as u32, 3 + parity, "{vols:?}");
}

fn chunk_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("chunks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Leaves nothing beside `FIXED` in its parent (the temporary directory is gone).
fn no_temp_left(env: &Env) {
    let left: Vec<String> = fs::read_dir(env.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("airlock-repair"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn every_volume_of_a_parity_bundle_verifies_alone_with_airlock_and_stock_tools() {
    let env = Env::new();
    parity_bundle(&env, 1);
    let k = env.path("k.pub");
    for n in 1..=4 {
        let vol = format!("out/vol-{n:03}");
        // One volume alone: intact, the others still to check (exit 4).
        env.run(&["verify", &vol, "--trust", "k.pub"]).code(4);
        let label = String::from_utf8(env.read(&format!("{vol}/VOLUME"))).unwrap();
        assert!(label.contains(&format!("volume: {n} of 4")), "{label}");
        assert!(label.contains(if n == 4 { "kind: parity" } else { "kind: data" }));
        let run = |cmd: &str, args: &[&str]| {
            let out = std::process::Command::new(cmd)
                .args(args)
                .current_dir(env.path(&vol))
                .output()
                .unwrap();
            assert!(out.status.success(), "{cmd} in {vol}: {out:?}");
        };
        run(
            "minisign",
            &["-Vm", "manifest.json", "-p", k.to_str().unwrap()],
        );
        run("sha256sum", &["-c", "--strict", "SHA256SUMS"]);
    }
    // The parity volume holds parity chunks only, and as many bytes as the longest data
    // volume rounded up to 64.
    let m: serde_json::Value =
        serde_json::from_slice(&env.read("out/vol-001/manifest.json")).unwrap();
    let parity = &m["volumes"]["parity"];
    assert_eq!(parity["scheme"], "reed-solomon-gf16");
    assert_eq!(parity["volumes"], 1);
    assert!(chunk_names(&env.path("out/vol-004"))
        .iter()
        .all(|c| c.ends_with(".par")));
}

#[test]
fn repair_rebuilds_exactly_the_corrupt_chunk_and_the_result_verifies_beside_the_others() {
    let env = Env::new();
    parity_bundle(&env, 1);
    let names = chunk_names(&env.path("out/vol-002"));
    let victim = names[names.len() / 2].clone();
    let path = env.path(&format!("out/vol-002/chunks/{victim}"));
    let good = fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[1000] ^= 0x40;
    fs::write(&path, &bad).unwrap();

    let r = env
        .run(&[
            "repair", "out", "--out", "fixed", "--trust", "k.pub", "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["repaired"], true);
    let vols = r["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 1, "{r}");
    assert_eq!(vols[0]["volume"], 2);
    assert_eq!(vols[0]["was"], "damaged");
    assert_eq!(vols[0]["chunks_rebuilt"], serde_json::json!([victim]));
    assert_eq!(vols[0]["bytes_rebuilt"], good.len() as u64);
    assert_eq!(vols[0]["chunks_copied"], names.len() as u64 - 1);
    assert!(
        vols[0]["problems"].to_string().contains(&victim),
        "the problem names the chunk: {r}"
    );
    assert_eq!(r["rebuilt"]["chunks"], serde_json::json!([victim]));
    // FIXED holds the repaired volume only: every chunk, the manifest, label and sums, no
    // signature of its own.
    let fixed: Vec<String> = fs::read_dir(env.path("fixed"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(fixed, vec!["vol-002".to_string()]);
    assert_eq!(
        fs::read(env.path(&format!("fixed/vol-002/chunks/{victim}"))).unwrap(),
        good
    );
    assert_eq!(chunk_names(&env.path("fixed/vol-002")), names);
    for f in ["manifest.json", "VOLUME", "SHA256SUMS"] {
        assert_eq!(
            env.read(&format!("fixed/vol-002/{f}")),
            env.read(&format!("out/vol-002/{f}")),
            "{f}"
        );
    }
    assert!(!env.path("fixed/vol-002/manifest.json.minisig").exists());
    no_temp_left(&env);
    // The stock check of the rebuilt volume's chunks still works.
    let out = std::process::Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(env.path("fixed/vol-002"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // Beside the signed volumes, the repaired one is accepted: nothing left to repair.
    env.run(&[
        "repair",
        "out/vol-001",
        "fixed/vol-002",
        "out/vol-003",
        "out/vol-004",
        "--out",
        "again",
        "--trust",
        "k.pub",
    ])
    .ok()
    .stdout_has("nothing to repair");
    assert!(!env.path("again").exists());
    // Alone, it does not verify: it has no signature.
    env.run(&["verify", "fixed/vol-002", "--trust", "k.pub"])
        .code(3)
        .stderr_has("signature");
}

#[test]
fn repair_rebuilds_a_missing_volume_byte_for_byte() {
    let env = Env::new();
    parity_bundle(&env, 1);
    let before = contents(&env.path("out/vol-002"));
    fs::rename(env.path("out/vol-002"), env.path("kept")).unwrap();
    let r = env
        .run(&[
            "repair", "out", "--out", "fixed", "--trust", "k.pub", "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["rebuilt"]["volumes"], serde_json::json!([2]));
    assert_eq!(r["volumes"][0]["was"], "missing");
    assert_eq!(r["volumes"][0]["chunks_copied"], 0);
    // Everything but the signature.
    let mut want = before;
    want.remove("manifest.json.minisig");
    assert_eq!(contents(&env.path("fixed/vol-002")), want);
    // The text report names the volume and what to verify next.
    fs::remove_dir_all(env.path("fixed")).unwrap();
    env.run(&["repair", "out", "--out", "fixed", "--trust", "k.pub"])
        .ok()
        .stdout_has("missing")
        .stdout_has("fixed/vol-002");
}

#[test]
fn two_parity_volumes_rebuild_two_lost_data_volumes() {
    let env = Env::new();
    parity_bundle(&env, 2);
    let two = contents(&env.path("out/vol-002"));
    let three = contents(&env.path("out/vol-003"));
    fs::remove_dir_all(env.path("out/vol-002")).unwrap();
    fs::remove_dir_all(env.path("out/vol-003")).unwrap();
    let r = env
        .run(&[
            "repair", "out", "--out", "fixed", "--trust", "k.pub", "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["rebuilt"]["volumes"], serde_json::json!([2, 3]));
    for (n, want) in [(2, two), (3, three)] {
        let mut want = want;
        want.remove("manifest.json.minisig");
        assert_eq!(contents(&env.path(&format!("fixed/vol-{n:03}"))), want);
    }
}

#[test]
fn repair_names_the_unrecoverable_chunks_and_writes_nothing() {
    let env = Env::new();
    parity_bundle(&env, 1);
    fs::remove_dir_all(env.path("out/vol-002")).unwrap();
    fs::remove_dir_all(env.path("out/vol-003")).unwrap();
    let r = env.run(&["repair", "out", "--out", "fixed", "--trust", "k.pub"]);
    r.code(3)
        .stderr_has("unrecoverable chunk")
        .stderr_has("(volume 2)")
        .stderr_has("(volume 3)");
    assert!(!env.path("fixed").exists());
    no_temp_left(&env);
    // A corrupt chunk with its volume's parity partner also lost: named the same way.
    let env = Env::new();
    parity_bundle(&env, 1);
    fs::remove_dir_all(env.path("out/vol-004")).unwrap();
    let victim = chunk_names(&env.path("out/vol-001"))[0].clone();
    fs::write(env.path(&format!("out/vol-001/chunks/{victim}")), b"x").unwrap();
    fs::create_dir(env.path("fixed")).unwrap();
    env.run(&["repair", "out", "--out", "fixed", "--trust", "k.pub"])
        .code(3)
        .stderr_has(&format!("unrecoverable chunk: {victim} (volume 1)"));
    assert_eq!(fs::read_dir(env.path("fixed")).unwrap().count(), 0);
    no_temp_left(&env);
}

#[test]
fn repair_with_nothing_wrong_writes_nothing() {
    let env = Env::new();
    parity_bundle(&env, 1);
    let r = env
        .run(&[
            "repair", "out", "--out", "fixed", "--trust", "k.pub", "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["repaired"], false);
    assert_eq!(r["volumes"], serde_json::json!([]));
    assert!(!env.path("fixed").exists());
    env.run(&["repair", "out", "--out", "fixed", "--trust", "k.pub"])
        .ok()
        .stdout_has("nothing to repair");
    // --out must be new or empty.
    env.write("full/x", b"x");
    env.run(&["repair", "out", "--out", "full", "--trust", "k.pub"])
        .code(2)
        .stderr_has("not empty");
}

#[test]
fn an_unsigned_volume_with_another_manifest_is_not_taken_for_a_rebuilt_one() {
    let env = Env::new();
    parity_bundle(&env, 1);
    // A copy of volume 2 without its signature, its manifest edited by one byte.
    fs::rename(env.path("out/vol-002"), env.path("v2")).unwrap();
    fs::remove_file(env.path("v2/manifest.json.minisig")).unwrap();
    let mut m = env.read("v2/manifest.json");
    let at = m.len() / 2;
    m[at] = if m[at] == b'a' { b'b' } else { b'a' };
    fs::write(env.path("v2/manifest.json"), &m).unwrap();
    let r = env
        .run(&[
            "repair",
            "out/vol-001",
            "v2",
            "out/vol-003",
            "out/vol-004",
            "--out",
            "fixed",
            "--trust",
            "k.pub",
            "--json",
        ])
        .ok()
        .json();
    // Not used: volume 2 counts as missing, rebuilt from parity; the copy is named as ignored.
    assert_eq!(r["volumes"][0]["was"], "missing", "{r}");
    assert_eq!(r["ignored"][0]["dir"], "v2");
    assert!(
        r["ignored"][0]["problems"]
            .to_string()
            .contains("missing-signature"),
        "{r}"
    );
}

/// `airlock verify` of several volumes (the verify engineer's half) with a repaired volume.
#[test]
fn verify_accepts_a_repaired_volume_beside_signed_ones() {
    let env = Env::new();
    parity_bundle(&env, 1);
    let victim = chunk_names(&env.path("out/vol-002"))[1].clone();
    fs::write(env.path(&format!("out/vol-002/chunks/{victim}")), b"x").unwrap();
    env.run(&["repair", "out", "--out", "fixed", "--trust", "k.pub"])
        .ok();
    env.run(&[
        "verify",
        "out/vol-001",
        "fixed/vol-002",
        "out/vol-003",
        "out/vol-004",
        "--trust",
        "k.pub",
    ])
    .ok();
}

/// Import with a data volume missing and the parity volume present (the import engineer's
/// volume import, with the parity hook `bundle::parity::rebuild_for_import`).
#[test]
fn import_rebuilds_a_missing_volume_and_audits_it() {
    let env = Env::new();
    parity_bundle(&env, 1);
    env.pack(
        &["big.bin", "src"],
        "k",
        "single",
        // Another channel: this later pack's sequence must not make the volumes a rollback.
        &["--chunk-size", "64KiB", "--channel", "reference"],
    )
    .ok();
    env.run(&["import", "single", "--trust", "k.pub", "--files", "want"])
        .ok();
    fs::remove_dir_all(env.path("out/vol-002")).unwrap();
    env.run(&[
        "import",
        "out/vol-003",
        "out/vol-001",
        "out/vol-004",
        "--trust",
        "k.pub",
        "--files",
        "got",
    ])
    .ok();
    assert_eq!(contents(&env.path("got")), contents(&env.path("want")));
    let log = fs::read_to_string(env.audit_log()).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["rebuilt"]["volumes"], serde_json::json!([2]), "{last}");
    // The scratch directory is gone.
    assert!(!fs::read_dir(env.state_dir()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("rebuild-")));
    // Two volumes lost with one parity volume: named, nothing written.
    fs::remove_dir_all(env.path("out/vol-003")).unwrap();
    env.run(&[
        "import",
        "out/vol-001",
        "out/vol-004",
        "--trust",
        "k.pub",
        "--files",
        "none",
    ])
    .code(3)
    .stderr_has("unrecoverable chunk");
    assert!(!env.path("none").exists());
}
