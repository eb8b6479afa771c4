//! The manifest parser (`Manifest::parse`) on arbitrary bytes: it must return `Ok` or `Err`,
//! never panic, hang or allocate without bound. A manifest it accepts must survive a
//! serialise → parse round trip unchanged.
#![no_main]

use airlock::format::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        // Everything derived from a valid manifest must not panic either.
        let _ = m.payload_bytes();
        let _ = m.chunk_bytes();
        let _ = m.sha256sums();
        let again = Manifest::parse(&m.to_bytes()).expect("a valid manifest re-parses");
        assert_eq!(again, m);
    }
});
