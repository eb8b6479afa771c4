//! Interrupting `pack` through the real binary: SIGINT, SIGTERM and Ctrl-C on a pseudo-terminal
//! during a download and during chunk writing; a stalled server; SIGKILL. Each stop must end
//! pack with 130 / 143, say what happened, and leave nothing that stops the same command, run
//! again without `rm -rf`, from producing a bundle that verifies. A directory holding anything
//! pack did not write, or a finished bundle, is still refused.

use std::fs;
use std::path::Path;

use crate::signals_support::*;
use crate::support::*;

const LAYER: usize = 8 << 20;

fn pack_cmd(env: &Env, src: &str) -> std::process::Command {
    env.command(&["pack", src, "--out", "b", "--key", "k"])
}

/// The re-run of the interrupted command succeeds without any cleaning by hand, and its bundle
/// verifies and holds none of pack's own working files.
#[track_caller]
fn rerun_succeeds(env: &Env, src: &str) {
    env.pack(&[src], "k", "b", &[]).ok();
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();
    let left: Vec<String> = names(&env.path("b"))
        .into_iter()
        .filter(|n| n.starts_with(".airlock"))
        .collect();
    assert!(left.is_empty(), "the finished bundle holds {left:?}");
}

/// What an interrupted pack leaves: no bundle (no manifest), and either nothing at all or pack's
/// own unfinished output.
#[track_caller]
fn no_bundle_left(out: &Path) {
    assert!(
        !out.join("manifest.json").exists(),
        "an interrupted pack left a manifest"
    );
}

#[test]
fn sigterm_during_a_download_stops_pack_and_the_rerun_succeeds() {
    let env = Env::new();
    env.keygen("k");
    let server = SlowServer::start();
    server.route(
        "/files/model.bin",
        "application/octet-stream",
        pseudo_random(LAYER, 7),
        TRICKLE,
        1,
    );
    let src = format!("{}/files/model.bin", server.base);
    let staged = env.path("b/.airlock-staging");
    let mut cmd = pack_cmd(&env, &src);
    cmd.arg("--json");
    let run = interrupt_at(cmd, Stop::Term, "the download", || {
        server.slow_sent() >= 512 << 10 && bytes_under(&staged) > 0
    });
    run.code(143)
        .stderr_has("interrupted by SIGTERM")
        .stderr_has("pack stopped");
    let v = run.json();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["kind"], "interrupted", "{v}");
    assert_eq!(v["error"]["exit_code"], 143, "{v}");
    no_bundle_left(&env.path("b"));
    rerun_succeeds(&env, &src);
}

#[test]
fn a_stalled_download_does_not_hold_off_sigint() {
    let env = Env::new();
    env.keygen("k");
    let server = SlowServer::start();
    server.route(
        "/files/model.bin",
        "application/octet-stream",
        pseudo_random(LAYER, 8),
        Pace::Stall { first: 256 << 10 },
        1,
    );
    let src = format!("{}/files/model.bin", server.base);
    let staged = env.path("b/.airlock-staging");
    // The server sends a little, then nothing: pack is blocked in a read of the body (the old
    // code waited out the 60 s inactivity timeout before it saw the signal).
    let run = interrupt_at(pack_cmd(&env, &src), Stop::Int, "the stall", || {
        server.slow_sent() >= 256 << 10 && bytes_under(&staged) > 0
    });
    run.code(130)
        .stderr_has("interrupted by SIGINT")
        .stderr_has("pack stopped");
    no_bundle_left(&env.path("b"));
    rerun_succeeds(&env, &src);
}

/// Pack of a registry image whose layer streams slowly into the chunks: stopped while the chunk
/// is being written.
fn stop_during_chunk_writing(how: Stop) {
    let env = Env::new();
    env.keygen("k");
    let image = SlowImage::start("test/slow", "v1", pseudo_random(LAYER, 9), TRICKLE, 1);
    let chunks = env.path("b/chunks");
    let run = interrupt_at(
        pack_cmd(&env, &image.reference),
        how,
        "chunk writing",
        || image.server.slow_sent() >= 2 << 20 && bytes_under(&chunks) >= 1 << 20,
    );
    run.code(how.exit_code())
        .stderr_has(&format!("interrupted by {}", how.signal_name()))
        .stderr_has("pack stopped");
    no_bundle_left(&env.path("b"));
    rerun_succeeds(&env, &image.reference);
}

#[test]
fn ctrl_c_on_a_terminal_during_chunk_writing() {
    stop_during_chunk_writing(Stop::CtrlC);
}

#[test]
fn sigint_during_chunk_writing() {
    stop_during_chunk_writing(Stop::Int);
}

#[test]
fn sigterm_during_chunk_writing() {
    stop_during_chunk_writing(Stop::Term);
}

/// SIGKILL mid-chunk: pack cannot clean up; what it leaves is recognised as its own unfinished
/// output by the next run and replaced, temp files included.
#[test]
fn what_a_killed_pack_leaves_is_replaced_by_the_next_run() {
    let env = Env::new();
    env.keygen("k");
    let image = SlowImage::start("test/slow", "v1", pseudo_random(LAYER, 10), TRICKLE, 2);
    let chunks = env.path("b/chunks");
    let mut run = Running::start(pack_cmd(&env, &image.reference), Stop::Term);
    run.wait_until("chunk writing", || bytes_under(&chunks) >= 1 << 20);
    run.kill();
    assert!(bytes_under(&chunks) > 0, "SIGKILL leaves the partial chunk");
    // A kill while the manifest and signatures were being written leaves these as well (the
    // window is too short to hit from outside; the state it leaves is made by hand here).
    env.write("b/SHA256SUMS", "0000  chunks/chunk-0000.tar\n");
    env.write("b/.airlock-tmp-Ab12Cd", "{\"format\": \"airl");
    env.write("b/signatures/.airlock-tmp-Zz99Yy", "untrusted comment");
    let before = names(&env.path("b"));
    assert!(
        before.iter().any(|n| n.starts_with(".airlock")),
        "{before:?}"
    );
    rerun_succeeds(&env, &image.reference);
    assert!(!env.path("b/.airlock-tmp-Ab12Cd").exists());
    assert!(!env.path("b/signatures/.airlock-tmp-Zz99Yy").exists());
}

/// Pack replaces only its own unfinished output: a file it did not write, or a finished bundle,
/// still makes it refuse (exit 2), touching nothing.
#[test]
fn unfinished_output_with_foreign_files_or_a_finished_bundle_is_refused() {
    let env = Env::new();
    env.keygen("k");
    let image = SlowImage::start("test/slow", "v1", pseudo_random(LAYER, 11), TRICKLE, 2);
    let chunks = env.path("b/chunks");
    let mut run = Running::start(pack_cmd(&env, &image.reference), Stop::Term);
    run.wait_until("chunk writing", || bytes_under(&chunks) >= 1 << 20);
    run.kill();
    env.write("b/notes.txt", "mine");
    let before = contents(&env.path("b"));
    env.pack(&[&image.reference], "k", "b", &[])
        .code(2)
        .stderr_has("is not empty")
        .stderr_has("notes.txt");
    assert_eq!(
        contents(&env.path("b")),
        before,
        "a refused pack touched OUT"
    );

    fs::remove_file(env.path("b/notes.txt")).unwrap();
    rerun_succeeds(&env, &image.reference);
    let finished = contents(&env.path("b"));
    env.pack(&[&image.reference], "k", "b", &[])
        .code(2)
        .stderr_has("is not empty");
    assert_eq!(contents(&env.path("b")), finished);
}

/// Two packs into one directory: while the first runs, the second is refused and leaves the
/// first's work alone.
#[test]
fn a_pack_into_the_output_of_a_running_pack_is_refused() {
    let env = Env::new();
    env.keygen("k");
    let image = SlowImage::start("test/slow", "v1", pseudo_random(LAYER, 12), TRICKLE, 1);
    let chunks = env.path("b/chunks");
    let mut first = Running::start(pack_cmd(&env, &image.reference), Stop::Term);
    first.wait_until("chunk writing", || bytes_under(&chunks) >= 1 << 20);
    env.write("src/a", "a");
    env.pack(&["src"], "k", "b", &[])
        .code(1)
        .stderr_has("another pack");
    assert!(!first.exited(), "the second pack stopped the first");
    let run = first.stop_and_wait(Stop::Term);
    run.code(143);
}

/// A SIGINT that arrives ignored (a background job of a non-interactive shell, so that a Ctrl-C
/// meant for the foreground leaves it alone) stays ignored: pack finishes its bundle.
#[test]
fn an_inherited_ignored_sigint_stays_ignored() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    env.keygen("k");
    let image = SlowImage::start("test/slow", "v1", pseudo_random(LAYER, 13), TRICKLE, 1);
    let chunks = env.path("b/chunks");
    let mut cmd = pack_cmd(&env, &image.reference);
    // SAFETY: only signal(2), async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut run = Running::start(cmd, Stop::Int);
    run.wait_until("chunk writing", || bytes_under(&chunks) >= 1 << 20);
    run.stop(Stop::Int);
    run.wait(REACH_DEADLINE).ok();
    env.run(&["verify", "b", "--trust", "k.pub"]).ok();
}
