//! One file per subcommand: glue from parsed arguments to library calls and a report. No
//! business logic lives here.

mod audit;
mod completions;
mod identity;
mod import;
mod inspect;
mod keygen;
mod pack;
mod sign;
mod verify;

use crate::oci::client::ConnectOptions;
use std::time::SystemTime;

use crate::cli::{Cli, Command};
use crate::error::{Error, Result};
use crate::output::Printer;
use crate::policy::{self, TrustPolicy};
use std::path::Path;

pub fn run(cli: Cli, printer: &Printer) -> Result<()> {
    match cli.command {
        Command::Keygen(a) => keygen::run(a, printer),
        Command::Pack(a) => pack::run(a, printer),
        Command::Inspect(a) => inspect::run(a, printer),
        Command::Verify(a) => verify::run(a, printer),
        Command::Import(a) => import::run(a, printer),
        Command::Sign(a) => sign::run(a, printer),
        Command::Audit(a) => audit::run(a, printer),
        Command::Completions(a) => completions::run(a),
    }
}

/// The trust that applies: `--policy FILE`, `--trust PUBKEY...`, or the default policy file.
fn load_policy(policy: Option<&Path>, trust: &[String]) -> Result<TrustPolicy> {
    policy::select(policy, trust, Path::new(policy::DEFAULT_POLICY))?.ok_or_else(|| {
        Error::Usage(format!(
            "no trust given: pass --policy FILE or --trust PUBKEY (or install {})",
            policy::DEFAULT_POLICY
        ))
    })
}

fn verify_options() -> crate::bundle::VerifyOptions {
    crate::bundle::VerifyOptions {
        now: SystemTime::now(),
    }
}

/// Registry connection options from the command line.
pub(crate) fn connect_options(args: &crate::cli::RegistryArgs) -> Result<ConnectOptions> {
    let creds = match &args.creds {
        None => None,
        Some(s) => Some(crate::oci::auth::parse_creds(s)?),
    };
    Ok(ConnectOptions {
        creds,
        ca_certs: args.ca_cert.clone(),
        insecure: args.insecure_registry.clone(),
        // Pushes keep the plain inactivity timeout; pack sets its download policy.
        transfer: crate::net::Transfer::off(),
    })
}

/// The state directory and audit log path from `--state` / `--audit-log` (or their defaults).
pub(crate) fn state_paths(
    args: &crate::cli::StateArgs,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let dir = match &args.state {
        Some(d) => d.clone(),
        None => crate::state::default_dir()?,
    };
    let log = args
        .audit_log
        .clone()
        .unwrap_or_else(|| crate::audit::default_path(&dir));
    Ok((dir, log))
}

pub(crate) use crate::import::{freshness_problem, signer_name};
