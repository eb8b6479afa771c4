//! `--json` is a versioned contract: every document a command prints on stdout — the success
//! report of each command and the one failure report — validates against its schema in
//! `schemas/`, checked by an independent validator (Python's `jsonschema` in the test venv,
//! reading the committed schema files), and every error names its `kind`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::registry::{TestRegistry, HTPASSWD};
use crate::support::*;

/// The documents to check: (what ran, schema file, stdout as JSON).
#[derive(Default)]
struct Cases(Vec<Value>);

impl Cases {
    /// Records the JSON document `run` printed, for `schema`; returns it.
    #[track_caller]
    fn add(&mut self, name: &str, schema: &str, run: &Run) -> Value {
        let doc = run.json();
        assert_eq!(doc["schema_version"], 1, "{name}: {doc}");
        self.0
            .push(json!({ "name": name, "schema": schema, "doc": doc }));
        doc
    }

    /// Records a failure document and checks its exit code and `kind`.
    #[track_caller]
    fn failure(&mut self, name: &str, run: &Run, code: i32, kind: &str) -> Value {
        run.code(code);
        let doc = self.add(name, "error.schema.json", run);
        assert_eq!(doc["ok"], false, "{name}: {doc}");
        assert_eq!(doc["error"]["kind"], kind, "{name}: {doc}\n{}", run.stderr);
        assert_eq!(doc["error"]["exit_code"], code, "{name}: {doc}");
        doc
    }

    /// Runs the independent validator over every document recorded.
    fn validate(&self, env: &Env) {
        let python = hub_emulator::pyenv().join("bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/pyenv.sh (or set AIRLOCK_PYENV)",
            python.display()
        );
        let cases = env.write("json-cases.json", serde_json::to_vec(&self.0).unwrap());
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(python)
            .arg(root.join("tests/cli/json_contract.py"))
            .arg(root.join("schemas"))
            .arg(&cases)
            .output()
            .expect("run the validator");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "documents do not match their schemas:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("{} documents checked, 0 failures", self.0.len())),
            "{stdout}"
        );
    }
}

use crate::hub_emulator;

#[test]
fn every_command_s_json_matches_its_schema() {
    let env = Env::new();
    let mut cases = Cases::default();

    let keygen = env.run(&["keygen", "--out", "k", "--unencrypted", "--json"]);
    let k = cases.add("keygen", "report-keygen.schema.json", keygen.ok());
    assert_eq!(k["ok"], true);
    let key_id = k["key_id"].as_str().unwrap().to_string();
    env.sample_tree("src");

    let pack = env.pack(&["src"], "k", "b", &["--chunk-size", "64KiB", "--json"]);
    let p = cases.add("pack", "report-pack.schema.json", pack.ok());
    // pack names its signers as verify and inspect do (was `signed_by: ["KEYID"]`).
    assert_eq!(
        p["signers"],
        json!([{ "file": "manifest.json.minisig", "key_id": key_id }])
    );
    assert!(p.get("signed_by").is_none(), "{p}");
    assert!(
        p.get("volumes").is_none(),
        "one directory lists no volumes: {p}"
    );

    // Spread over volumes: the report lists them (and inspect of a volume too).
    env.write("big/a.bin", pseudo_random(2_500_000, 3));
    let packv = env.pack(
        &["big"],
        "k",
        "bv",
        &[
            "--volume-size",
            "1500000",
            "--chunk-size",
            "64KiB",
            "--json",
        ],
    );
    let pv = cases.add("pack --volume-size", "report-pack.schema.json", packv.ok());
    assert!(pv["volumes"].as_array().unwrap().len() >= 2, "{pv}");
    assert_eq!(pv["volume_size"]["bytes"], 1_500_000, "{pv}");
    let inspectv = env.run(&["inspect", "bv", "--json"]);
    let iv = cases.add(
        "inspect of volumes",
        "report-inspect.schema.json",
        inspectv.ok(),
    );
    // The same volumes; inspect names the one it read by its path, the others by pack's names.
    let strip = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| {
                let mut x = x.clone();
                x.as_object_mut().unwrap().remove("dir");
                x
            })
            .collect()
    };
    assert_eq!(strip(&iv["volumes"]), strip(&pv["volumes"]), "{iv}");
    assert_eq!(iv["volumes"][0]["dir"], "bv/vol-001", "{iv}");
    assert_eq!(iv["volumes"][1]["dir"], "vol-002", "{iv}");

    let inspect = env.run(&["inspect", "b", "--json"]);
    cases.add("inspect", "report-inspect.schema.json", inspect.ok());
    let inspect = env.run(&["inspect", "b", "--trust", "k.pub", "--json"]);
    let i = cases.add(
        "inspect --trust",
        "report-inspect.schema.json",
        inspect.ok(),
    );
    assert_eq!(i["signers"][0]["key_id"], key_id);

    let verify = env.run(&["verify", "b", "--trust", "k.pub", "--json"]);
    let v = cases.add("verify", "report-verify.schema.json", verify.ok());
    assert_eq!(v["signers"][0]["key_id"], key_id);
    assert_eq!(v["signers"][0]["file"], p["signers"][0]["file"]);

    let dry = env.run(&[
        "import",
        "b",
        "--trust",
        "k.pub",
        "--files",
        "out",
        "--dry-run",
        "--json",
    ]);
    let d = cases.add("import --dry-run", "report-import.schema.json", dry.ok());
    assert_eq!(d["dry_run"], true);
    let import = env.run(&[
        "import", "b", "--trust", "k.pub", "--files", "out", "--json",
    ]);
    let m = cases.add("import", "report-import.schema.json", import.ok());
    assert_eq!(m["dry_run"], false);

    // An update in place (a newer bundle of the channel into the same destination), and its
    // rollback.
    env.write("src/config.json", br#"{"model_type": "tiny2"}"#);
    env.pack(&["src"], "k", "b-next", &["--sequence", "99999999999"])
        .ok();
    let update = env.run(&[
        "import", "b-next", "--trust", "k.pub", "--files", "out", "--json",
    ]);
    let u = cases.add("import (update)", "report-import.schema.json", update.ok());
    assert_eq!(u["replaced"], 1, "{u}");
    let rollback = env.run(&["rollback", "src", "--files", "out", "--json"]);
    let rb = cases.add("rollback", "report-rollback.schema.json", rollback.ok());
    assert_eq!(rb["dry_run"], false, "{rb}");
    let none = env.run(&["rollback", "nope", "--files", "out", "--json"]);
    cases.failure("rollback of an unknown artifact", &none, 1, "other");

    env.keygen("officer");
    let sign = env.run(&[
        "sign", "b", "--key", "officer", "--trust", "k.pub", "--json",
    ]);
    let s = cases.add("sign", "report-sign.schema.json", sign.ok());
    let officer = s["signers"][0]["key_id"].as_str().unwrap();
    assert_eq!(
        s["signers"][0]["file"],
        format!("signatures/{officer}.minisig"),
        "{s}"
    );
    assert_eq!(s["dir"], "b");

    let audit = env.run(&["audit", "verify", "--json"]);
    let a = cases.add(
        "audit verify",
        "report-audit-verify.schema.json",
        audit.ok(),
    );
    assert!(
        a["audit_log"].as_str().unwrap().ends_with("audit.jsonl"),
        "{a}"
    );
    let show = env.run(&["audit", "show", "--json"]);
    let sh = cases.add("audit show", "report-audit-show.schema.json", show.ok());
    assert!(!sh["records"].as_array().unwrap().is_empty(), "{sh}");

    // Failures: a rejected bundle (a chunk changed), with its problems.
    let chunk = env.path("b/chunks/00000000.tar");
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[600] ^= 1;
    std::fs::write(&chunk, bytes).unwrap();
    let rejected = env.run(&["verify", "b", "--trust", "k.pub", "--json"]);
    let r = cases.failure("verify of a damaged bundle", &rejected, 3, "rejected");
    assert!(
        !r["error"]["problems"].as_array().unwrap().is_empty(),
        "{r}"
    );

    // A missing file: a key that is not there.
    let missing = env.pack(&["src"], "no-such.key", "b2", &["--json"]);
    cases.failure("pack with a missing key", &missing, 1, "io");
    assert!(
        missing.stderr.contains("no-such.key"),
        "the file is named: {}",
        missing.stderr
    );

    cases.validate(&env);
}

#[test]
fn usage_errors_print_the_json_error_object_too() {
    let env = Env::new();
    let mut cases = Cases::default();
    for (name, args) in [
        (
            "unknown flag",
            &["verify", "b", "--trust", "k.pub", "--frobnicate", "--json"][..],
        ),
        ("--json first, missing argument", &["--json", "verify"][..]),
        ("unknown subcommand", &["--json", "frobnicate"][..]),
        (
            "bad value",
            &[
                "pack",
                "src",
                "--out",
                "b",
                "--key",
                "k",
                "--sequence",
                "x",
                "--json",
            ][..],
        ),
    ] {
        let run = env.run(args);
        let doc = cases.failure(name, &run, 2, "usage");
        // clap's message, on stderr as before and as the JSON message.
        assert!(run.stderr.starts_with("error: "), "{name}: {}", run.stderr);
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(
            !message.is_empty() && run.stderr.contains(message),
            "{name}: {doc}"
        );
    }
    cases.validate(&env);

    // Without --json, stdout stays empty; after `--` a "--json" is an argument, not the flag.
    let plain = env.run(&["verify", "--frobnicate"]);
    plain.code(2);
    assert_eq!(plain.stdout, "");
    let after = env.run(&["verify", "--frobnicate", "--", "--json"]);
    after.code(2);
    assert_eq!(after.stdout, "");
    // --help and --version stay plain text on stdout, exit 0.
    let help = env.run(&["verify", "--help", "--json"]);
    help.ok().stdout_has("Usage:");
    assert!(
        !help.stdout.trim_start().starts_with('{'),
        "{}",
        help.stdout
    );
    env.run(&["--version", "--json"]).ok().stdout_has("airlock");
}

/// A server answering every request with `status` (a tiny std TcpListener; one thread).
fn answer_with(status: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming().take(64) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    addr
}

#[test]
fn network_errors_say_what_kind_they_are() {
    let env = Env::new();
    env.keygen("k");
    let mut cases = Cases::default();
    let pack = |src: &str, extra: &[&str]| {
        let mut args = vec!["pack", src, "--out", "b", "--key", "k", "--json"];
        args.extend_from_slice(extra);
        env.run_for(120, &args)
    };

    // not-found: an image the registry does not hold (404, MANIFEST_UNKNOWN / NAME_UNKNOWN).
    let reg = TestRegistry::start();
    let run = pack(&format!("oci://{}/no/such:1", reg.addr), &[]);
    cases.failure("image not in the registry", &run, 1, "not-found");

    // auth: a registry demanding credentials, none given.
    let locked = TestRegistry::start_with(Some(HTPASSWD));
    let run = pack(&format!("oci://{}/lib/img:1", locked.addr), &[]);
    cases.failure("registry demanding credentials", &run, 1, "auth");
    let run = pack(
        &format!("oci://{}/lib/img:1", locked.addr),
        &["--creds", "testuser:wrong"],
    );
    cases.failure("registry refusing the credentials", &run, 1, "auth");

    // tls: a registry whose certificate chains to a CA not trusted here.
    let tls = TestRegistry::start_tls();
    let run = pack(&format!("oci://{}/lib/img:1", tls.addr), &[]);
    cases.failure("registry with an untrusted certificate", &run, 1, "tls");

    // unreachable: nothing listens on the port.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let run = pack(&format!("oci://{closed}/lib/img:1"), &[]);
    cases.failure("registry not listening", &run, 1, "unreachable");
    let url = format!("http://{closed}/f.bin");
    let run = pack(&url, &[]);
    cases.failure("download server not listening", &run, 1, "unreachable");

    // server: a 5xx answer; not-found: a 404 from a download server.
    let broken = answer_with("500 Internal Server Error");
    let run = pack(&format!("http://{broken}/f.bin"), &[]);
    cases.failure("download server failing", &run, 1, "server");
    let gone = answer_with("404 Not Found");
    let run = pack(&format!("http://{gone}/f.bin"), &[]);
    cases.failure("download not found", &run, 1, "not-found");

    // not-found on the Hub: a repository it does not have (404, RepoNotFound).
    let hub = hub_emulator::Hub::start(vec![
        hub_emulator::RepoDef::model("org/model").file("config.json", b"{}".to_vec())
    ]);
    let mut cmd = env.command(&[
        "pack",
        "hf://org/other",
        "--out",
        "b",
        "--key",
        "k",
        "--json",
    ]);
    cmd.env("HF_ENDPOINT", hub.url())
        .env("HF_HOME", env.path("hf-home"))
        .env_remove("HF_TOKEN");
    let run = run_cmd(cmd);
    cases.failure("repository not on the Hub", &run, 1, "not-found");

    cases.validate(&env);
}
