//! One integration-test binary driving the real `airlock` binary in temp directories.

mod audit_compat;
mod audit_reads;
mod crash;
mod fmt_v3;
mod freshness;
mod generated;
mod golden;
mod hf;
mod hfcache;
mod hostile;
mod images;
mod interop;
mod keys;
mod layouts;
mod models;
mod ollama;
mod pack_floor;
mod policy;
mod props;
mod push;
mod regauth;
mod registry;
mod rejections;
mod roundtrip;
mod sec_fs;
mod sec_json;
mod sec_net;
mod sec_render;
mod sec_targets;
mod sec_verify;
mod staged;
mod state;
mod support;
/// The Hub emulator, now `support::hub`, under the name the tests use.
use support::hub as hub_emulator;
mod urls;
