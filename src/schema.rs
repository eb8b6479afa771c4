//! JSON schemas of the public file formats and of every `--json` document, generated from the
//! Rust types. The committed copies in `schemas/` are checked by a test (`AIRLOCK_BLESS=1 cargo
//! test` rewrites them).
//!
//! A command's report schema is generated from [`Success`] around its report type, the very
//! type the printer prints: adding a command is one line in [`all`],
//! `report::<crate::commands::NAME::Report>("NAME")` (its report type deriving `JsonSchema`).

use crate::commands;
use crate::format::v3::ManifestV3;
use crate::format::Manifest;
use crate::output::{Failure, Success};
use crate::policy::PolicyFile;
use crate::spec::PackSpec;

fn render(s: schemars::Schema) -> String {
    serde_json::to_string_pretty(&s).expect("schemas serialise") + "\n"
}

/// The schema of `airlock COMMAND --json`'s success document: `report-COMMAND.schema.json`
/// (`command` with spaces as dashes: `report-audit-verify.schema.json`).
fn report<T: schemars::JsonSchema>(command: &str) -> (String, String) {
    let mut s = schemars::schema_for!(Success<T>);
    s.insert(
        "title".into(),
        format!("airlock {command} --json: success report").into(),
    );
    s.insert(
        "description".into(),
        format!(
            "What `airlock {command} --json` prints on stdout when it succeeds: \
             `schema_version`, `ok: true` and the report's fields. Fields are added without a \
             version bump: ignore the ones you do not know."
        )
        .into(),
    );
    (
        format!("report-{}.schema.json", command.replace(' ', "-")),
        render(s),
    )
}

/// `(file name, schema text)` for every published schema.
pub fn all() -> Vec<(String, String)> {
    let mut error = schemars::schema_for!(Failure<'static>);
    error.insert(
        "title".into(),
        "airlock --json: failure report (any command, usage errors included)".into(),
    );
    let mut all: Vec<(String, String)> = vec![
        report::<commands::keygen::Report>("keygen"),
        report::<commands::pack::Report>("pack"),
        report::<commands::inspect::Report>("inspect"),
        report::<commands::verify::Report>("verify"),
        report::<commands::import::Report<'static>>("import"),
        report::<commands::sign::Report>("sign"),
        report::<commands::repair::Report>("repair"),
        report::<commands::rollback::Report>("rollback"),
        report::<crate::audit::AuditReport>("audit verify"),
        report::<commands::audit::ShowReport>("audit show"),
        ("error.schema.json".into(), render(error)),
    ];
    let formats = vec![
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
    ];
    all.extend(formats.into_iter().map(|(n, s)| (n.to_string(), s)));
    all
}
