//! A standalone Hugging Face Hub emulator for benchmarks and manual tests:
//!
//! ```text
//! cargo run --release --example hub_emulator -- DIR ORG/NAME [PORT [CDN_PORT]]
//! ```
//!
//! serves the files under DIR as model ORG/NAME (files over 10 MB, or `HUB_LFS_OVER` bytes, as LFS, redirected to a CDN
//! origin on `localhost:CDN_PORT`), prints `HF_ENDPOINT=http://127.0.0.1:PORT` and the commit,
//! and runs until killed. Then e.g. `HF_ENDPOINT=… airlock pack hf://ORG/NAME …` or
//! `HF_ENDPOINT=… hf download ORG/NAME`.

#[path = "../tests/cli/support/flaky.rs"]
mod flaky;
#[path = "../tests/cli/support/hub.rs"]
mod hub_emulator;

use hub_emulator::{Hub, RepoDef};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: hub_emulator DIR ORG/NAME [PORT [CDN_PORT]]");
        std::process::exit(2);
    }
    let port = |i: usize| args.get(i).map_or(0, |p| p.parse().expect("a port number"));
    // HUB_LFS_OVER=BYTES changes which files are LFS (default: over 10 MB).
    let lfs_over = std::env::var("HUB_LFS_OVER").ok().map_or(10_000_000, |v| {
        v.parse().expect("HUB_LFS_OVER: a byte count")
    });
    let repo = RepoDef::from_dir(&args[1], std::path::Path::new(&args[0]), lfs_over);
    let hub = Hub::start_on(vec![repo], port(2), port(3));
    println!("HF_ENDPOINT={}", hub.url());
    println!("commit {}", hub.commit(&args[1], "main"));
    loop {
        std::thread::park();
    }
}
