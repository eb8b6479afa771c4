//! One integration-test binary driving the real `airlock` binary in temp directories.

mod generated;
mod golden;
mod interop;
mod keys;
mod props;
mod push;
mod registry;
mod rejections;
mod roundtrip;
mod support;
mod urls;
