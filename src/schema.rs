//! JSON schemas of the public file formats, generated from the Rust types. The committed copies
//! in `schemas/` are checked by a test (`AIRLOCK_BLESS=1 cargo test` rewrites them).

use crate::format::v3::ManifestV3;
use crate::format::Manifest;
use crate::policy::PolicyFile;
use crate::spec::PackSpec;

/// `(file name, schema text)` for every published schema.
pub fn all() -> Vec<(&'static str, String)> {
    let render =
        |s: schemars::Schema| serde_json::to_string_pretty(&s).expect("schemas serialise") + "\n";
    vec![
        (
            "manifest.schema.json",
            render(schemars::schema_for!(Manifest)),
        ),
        (
            "manifest-v3.schema.json",
            render(schemars::schema_for!(ManifestV3)),
        ),
        (
            "pack-spec.schema.json",
            render(schemars::schema_for!(PackSpec)),
        ),
        (
            "trust-policy.schema.json",
            render(schemars::schema_for!(PolicyFile)),
        ),
    ]
}
