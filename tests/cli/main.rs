//! One integration-test binary driving the real `airlock` binary in temp directories.

mod crash;
mod freshness;
mod generated;
mod golden;
mod hf;
mod hfcache;
mod hostile;
mod hub_emulator;
mod images;
mod interop;
mod keys;
mod layouts;
mod models;
mod ollama;
mod policy;
mod props;
mod push;
mod regauth;
mod registry;
mod rejections;
mod roundtrip;
mod sec_verify;
mod state;
mod support;
mod urls;
