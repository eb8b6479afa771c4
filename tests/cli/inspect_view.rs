//! What crosses, visible to the officer: `airlock inspect` shows each artifact's resolved
//! identity (name as `import --only` takes it, kind, files, size, and what it resolved to), the
//! same rendering `verify` shows; `inspect --files` lists every file and blob with its size and
//! full SHA-256, as an aligned table, escaped, streamed for large bundles.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use airlock::format::{ArtifactKind, Digest};
use unicode_width::UnicodeWidthStr;

use crate::hub_emulator::{Hub, RepoDef};
use crate::images::build_image_set;
use crate::rejections::resign;
use crate::support::*;

/// The `artifacts` table's row for artifact `name` and the identity rows under it (up to the
/// next artifact's row or the end of the table).
fn artifact_block(stdout: &str, name: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("  ") && l[2..].starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no artifact row for {name}:\n{stdout}"));
    let mut block = vec![lines[start]];
    for l in &lines[start + 1..] {
        // Identity rows under an artifact have an empty NAME cell.
        if l.starts_with("   ") {
            block.push(l);
        } else {
            break;
        }
    }
    block.join("\n")
}

#[track_caller]
fn has_all(block: &str, parts: &[&str]) {
    for p in parts {
        assert!(block.contains(p), "lacks {p:?}:\n{block}");
    }
}

/// Serves `data` at `/files/NAME` on 127.0.0.1; returns the base URL.
fn serve_file(data: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                data.len()
            );
            let _ = s.write_all(&data);
        }
    });
    format!("http://{addr}")
}

#[test]
fn files_directories_and_downloads_show_path_or_url_digest_entries_and_size() {
    let env = Env::new();
    env.keygen("k");
    env.sample_tree("src");
    env.write("notes.txt", "hello\n");
    let data = pseudo_random(70_000, 8);
    let digest = Digest::of(&data);
    let url = format!(
        "{}/files/weights.bin#sha256={}",
        serve_file(data),
        digest.hex()
    );
    env.pack(&["src", "notes.txt", &url], "k", "b", &[]).ok();
    let r = env.run(&["inspect", "b", "--trust", "k.pub"]);
    let out = &r.ok().stdout;
    assert!(out.contains("NAME") && out.contains("IDENTITY"), "{out}");
    let src = std::fs::canonicalize(env.path("src")).unwrap();
    // The sample tree: 6 files (one empty), 3 directories.
    has_all(
        &artifact_block(out, "src"),
        &[
            "directory",
            " 6 ",
            &format!("path {}", src.display()),
            "9 entries: 6 files, 3 directories",
            "from src",
        ],
    );
    let notes = std::fs::canonicalize(env.path("notes.txt")).unwrap();
    has_all(
        &artifact_block(out, "notes.txt"),
        &[
            "file",
            &airlock::output::bytes(6),
            &format!("path {}", notes.display()),
            &format!("sha256 {}", Digest::of(b"hello\n").hex()),
        ],
    );
    has_all(
        &artifact_block(out, "weights.bin"),
        &[
            "file",
            &airlock::output::bytes(70_000),
            &format!("from {url}"),
            &format!("url {}", url.split('#').next().unwrap()),
            &format!("sha256 {}", digest.hex()),
        ],
    );
    // verify prints the same artifact summary (one rendering).
    let v = env.run(&["verify", "b", "--trust", "k.pub"]);
    let v = &v.ok().stdout;
    for name in ["src", "notes.txt", "weights.bin"] {
        assert_eq!(artifact_block(v, name), artifact_block(out, name), "{v}");
    }
}

#[test]
fn images_and_ollama_models_show_reference_manifest_digest_media_type_and_platforms() {
    let env = Env::new();
    env.keygen("k");
    let set = build_image_set(env.dir.path());
    let multi = format!("oci-layout://{}:multi", set.layout.display());
    let single = format!("oci-layout://{}:single", set.layout.display());
    env.pack(&[&multi, &single], "k", "b", &[]).ok();
    let json = env.run(&["inspect", "b", "--json"]).ok().json();
    let names: Vec<String> = json["manifest"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    let top =
        |tag: &str| Digest::of(&set.tops.iter().find(|(t, _)| t == tag).unwrap().1).to_string();
    let r = env.run(&["inspect", "b", "--trust", "k.pub"]);
    let out = &r.ok().stdout;
    has_all(
        &artifact_block(out, &names[0]),
        &[
            "image",
            &format!("manifest {}", top("multi")),
            "media type application/vnd.oci.image.index.v1+json",
            "platforms linux/amd64, linux/arm64/v8",
            "reference ",
        ],
    );
    has_all(
        &artifact_block(out, &names[1]),
        &[
            "image",
            &format!("manifest {}", top("single")),
            "media type application/vnd.oci.image.manifest.v1+json",
        ],
    );
    // An Ollama model is an image underneath: the same identity, under its own kind.
    resign(&env, |m| m.artifacts[1].kind = ArtifactKind::OllamaModel);
    let r = env.run(&["inspect", "b", "--trust", "k.pub"]);
    has_all(
        &artifact_block(&r.ok().stdout, &names[1]),
        &["ollama-model", &format!("manifest {}", top("single"))],
    );
}

#[test]
fn hugging_face_repos_show_repo_revision_commit_files_and_size() {
    let env = Env::new();
    env.keygen("k");
    let hub = Hub::start(vec![RepoDef::model("acme/tiny")
        .file("config.json", br#"{"a": 1}"#.to_vec())
        .lfs("model.safetensors", pseudo_random(100_000, 4))]);
    let mut cmd = env.command(&["pack", "hf://acme/tiny", "--out", "b", "--key", "k"]);
    cmd.env("HF_ENDPOINT", hub.url())
        .env("HF_HOME", env.path("hf-home"))
        .env_remove("HF_TOKEN");
    run_cmd(cmd).ok();
    let r = env.run(&["inspect", "b", "--trust", "k.pub"]);
    let out = &r.ok().stdout;
    let json = env.run(&["inspect", "b", "--json"]).ok().json();
    let name = json["manifest"]["artifacts"][0]["name"].as_str().unwrap();
    has_all(
        &artifact_block(out, name),
        &[
            "hf-repo",
            " 2 ",
            &airlock::output::bytes(100_008),
            &format!("model acme/tiny at {}", hub.url()),
            &format!("revision main → commit {}", hub.commit("acme/tiny", "main")),
            "from hf://acme/tiny",
        ],
    );
}

#[test]
fn files_lists_every_entry_aligned_with_long_and_wide_names_and_full_digests() {
    let env = Env::new();
    env.keygen("k");
    let long = format!("{}.safetensors", "a-very-long-shard-name".repeat(6));
    env.write(&format!("m/{long}"), "long\n");
    env.write("m/日本語のモデル.bin", "wide\n");
    env.write("m/x", "x");
    env.write("m/sub/y.json", "{}");
    env.pack(&["m"], "k", "b", &[]).ok();
    let r = env.run(&["inspect", "b", "--trust", "k.pub", "--files"]);
    let out = &r.ok().stdout;
    let at = out
        .find("files of m (directory, 5 entries)")
        .unwrap_or_else(|| panic!("no files section:\n{out}"));
    let table: Vec<&str> = out[at..].lines().skip(1).collect();
    assert!(
        table[0].starts_with("PATH") && table[0].ends_with("SHA256"),
        "{out}"
    );
    let rows = [
        (long.as_str(), "long\n".as_bytes()),
        ("x", b"x"),
        ("sub/y.json", b"{}"),
        ("日本語のモデル.bin", "wide\n".as_bytes()),
    ];
    // The SHA-256 column starts at the same display column on every line (piped: no wrap).
    let col = table[0].find("SHA256").unwrap();
    for (path, data) in rows {
        let hex = Digest::of(data).hex();
        let line = table
            .iter()
            .find(|l| l.starts_with(&format!("{path} ")))
            .unwrap_or_else(|| panic!("no row for {path}:\n{out}"));
        let at = line
            .find(&hex)
            .unwrap_or_else(|| panic!("full digest of {path}:\n{out}"));
        assert_eq!(line[..at].width(), table[0][..col].width(), "{out}");
        assert!(line.contains(&format!(" {} ", data.len())), "{line}");
    }
    assert!(table.contains(&"sub/"), "directories listed: {out}");
    // Without --files, no listing; the JSON keeps the manifest and nothing else is added.
    let plain = env.run(&["inspect", "b", "--trust", "k.pub"]);
    assert!(!plain.ok().stdout.contains("files of"), "{}", plain.stdout);
    let j = env
        .run(&["inspect", "b", "--trust", "k.pub", "--files", "--json"])
        .ok()
        .json();
    let j2 = env
        .run(&["inspect", "b", "--trust", "k.pub", "--json"])
        .ok()
        .json();
    assert_eq!(j, j2);
}

#[test]
fn hostile_names_are_escaped_in_the_summary_and_the_listing() {
    let env = Env::new();
    env.keygen("k");
    env.write("d/ok.txt", "ok");
    env.pack(&["d"], "k", "b", &[]).ok();
    // A trusted but hostile signer names things to move the cursor and reorder text.
    resign(&env, |m| {
        m.artifacts[0].source = "s\r\x1b[2K".into();
        m.artifacts[0].identity = "/i\x1b[1A".into();
    });
    let r = env.run(&["inspect", "b", "--trust", "k.pub", "--files"]);
    if r.code == 0 {
        for l in r.stdout.lines() {
            assert!(
                !l.chars().any(|c| c.is_control()),
                "raw control character: {l:?}"
            );
        }
        assert!(r.stdout.contains("from s\\r\\e[2K"), "{}", r.stdout);
        assert!(r.stdout.contains("path /i\\e[1A"), "{}", r.stdout);
    } else {
        // Refusing control characters in free-text fields is also right.
        r.code(3);
    }
}

#[test]
fn a_ten_thousand_file_bundle_lists_every_file() {
    let env = Env::new();
    env.keygen("k");
    let root = env.path("many");
    for i in 0..10_000 {
        let dir = root.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::write(dir.join(format!("f{i:05}.txt")), format!("{i}\n")).unwrap();
    }
    env.pack(&["many"], "k", "b", &[]).ok();
    let r = env.run_for(300, &["inspect", "b", "--trust", "k.pub", "--files"]);
    let out = &r.ok().stdout;
    let mut seen = 0;
    for l in out.lines() {
        if let Some(rest) = l.strip_prefix('d') {
            if let Some((path, tail)) = rest.split_once(' ') {
                if path.contains("/f") {
                    let i: usize = path.rsplit("/f").next().unwrap()[..5].parse().unwrap();
                    assert!(
                        tail.trim_end()
                            .ends_with(&Digest::of(format!("{i}\n").as_bytes()).hex()),
                        "{l}"
                    );
                    seen += 1;
                }
            }
        }
    }
    assert_eq!(seen, 10_000);
}
