//! One file per subcommand: glue from parsed arguments to library calls and a report. No
//! business logic lives here.

// `pub(crate)`: `schema::all` names each command's report type.
pub(crate) mod audit;
mod completions;
mod identity;
pub(crate) mod import;
pub(crate) mod inspect;
pub(crate) mod keygen;
pub(crate) mod pack;
pub(crate) mod repair;
pub(crate) mod rollback;
pub(crate) mod sign;
pub(crate) mod verify;

use crate::oci::client::ConnectOptions;
use std::time::SystemTime;

use crate::cli::{Cli, Command, TrustArgs};
use crate::error::{Error, Result};
use crate::output::{self, Printer};
use crate::policy::{self, TrustPolicy};
use serde::Serialize;
use std::path::Path;
use std::path::PathBuf;

pub fn run(cli: Cli, printer: &Printer) -> Result<()> {
    match cli.command {
        Command::Keygen(a) => keygen::run(a, printer),
        Command::Pack(a) => pack::run(a, printer),
        Command::Inspect(a) => inspect::run(a, printer),
        Command::Verify(a) => verify::run(a, printer),
        Command::Import(a) => import::run(a, printer),
        Command::Sign(a) => sign::run(a, printer),
        Command::Repair(a) => repair::run(a, printer),
        Command::Audit(a) => audit::run(a, printer),
        Command::Rollback(a) => rollback::run(a, printer),
        Command::Completions(a) => completions::run(a),
    }
}

/// The trust that applies: `--policy FILE`, `--trust PUBKEY...`, or the default policy file;
/// `None` when none is given (inspect then shows the bundle unverified).
fn select_policy(args: &TrustArgs) -> Result<Option<TrustPolicy>> {
    policy::select(
        args.policy.as_deref(),
        &args.keys,
        Path::new(policy::DEFAULT_POLICY),
    )
}

/// As [`select_policy`], where trust is required (verify, import, sign): none is a usage error.
fn load_policy(args: &TrustArgs) -> Result<TrustPolicy> {
    select_policy(args)?.ok_or_else(|| {
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
    let from_env = std::env::var("AIRLOCK_CREDS")
        .ok()
        .filter(|v| !v.is_empty());
    let creds = match args.creds.as_ref().or(from_env.as_ref()) {
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

/// How the state directory (or the audit log) was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Chosen {
    /// `--state DIR` / `--audit-log FILE`.
    Option,
    /// `AIRLOCK_STATE` / `AIRLOCK_AUDIT_LOG`.
    Environment,
    /// The default (`$XDG_STATE_HOME/airlock`, `/var/lib/airlock` as root,
    /// `~/.local/state/airlock`; the log: `STATE/audit.jsonl`).
    Default,
}

/// The state directory and audit log a verify or import uses, and how each was chosen.
#[derive(Clone, Debug)]
pub(crate) struct StatePaths {
    pub dir: PathBuf,
    pub dir_chosen: Chosen,
    pub log: PathBuf,
    pub log_chosen: Chosen,
}

impl StatePaths {
    /// Why the state directory is this one, for the human output.
    fn dir_why(&self) -> String {
        match self.dir_chosen {
            Chosen::Option => "--state".into(),
            Chosen::Environment => "AIRLOCK_STATE".into(),
            Chosen::Default if self.dir == Path::new("/var/lib/airlock") => {
                "the default as root; --state DIR or AIRLOCK_STATE to change".into()
            }
            Chosen::Default => "the default; --state DIR or AIRLOCK_STATE to change".into(),
        }
    }

    fn log_why(&self) -> &'static str {
        match self.log_chosen {
            Chosen::Option => "--audit-log",
            Chosen::Environment => "AIRLOCK_AUDIT_LOG",
            Chosen::Default => "default: STATE/audit.jsonl",
        }
    }

    /// The human lines naming the state directory and the audit log; `appended`: whether this
    /// run's decision went to the log (else `not_appended` says why).
    pub fn lines(&self, appended: bool, not_appended: &str) -> String {
        let log = output::escape_path(&self.log);
        let audit = if appended {
            format!("audit     {log} ({})\n", self.log_why())
        } else {
            format!("audit     none written: {not_appended} ({log})\n")
        };
        format!(
            "state     {} ({})\n{audit}",
            output::escape_path(&self.dir),
            self.dir_why()
        )
    }
}

/// The `--json` fields naming the state directory and audit log a verify or import used:
/// `audit_log` is null when nothing was appended to one.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct StateReport {
    pub state_dir: String,
    pub state_dir_chosen: Chosen,
    pub audit_log: Option<String>,
}

impl StateReport {
    pub fn new(p: &StatePaths, appended: bool) -> StateReport {
        StateReport {
            state_dir: p.dir.display().to_string(),
            state_dir_chosen: p.dir_chosen,
            audit_log: appended.then(|| p.log.display().to_string()),
        }
    }
}

/// A path from the environment, if set and not empty.
fn env_path(key: &str) -> Option<PathBuf> {
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The state directory and audit log path from `--state` / `--audit-log`, else
/// `AIRLOCK_STATE` / `AIRLOCK_AUDIT_LOG`, else their defaults.
pub(crate) fn state_paths(args: &crate::cli::StateArgs) -> Result<StatePaths> {
    let (dir, dir_chosen) = match (&args.state, env_path("AIRLOCK_STATE")) {
        (Some(d), _) => (d.clone(), Chosen::Option),
        (None, Some(d)) => (d, Chosen::Environment),
        (None, None) => (crate::state::default_dir()?, Chosen::Default),
    };
    let (log, log_chosen) = match (&args.audit_log, env_path("AIRLOCK_AUDIT_LOG")) {
        (Some(l), _) => (l.clone(), Chosen::Option),
        (None, Some(l)) => (l, Chosen::Environment),
        (None, None) => (crate::audit::default_path(&dir), Chosen::Default),
    };
    Ok(StatePaths {
        dir,
        dir_chosen,
        log,
        log_chosen,
    })
}

pub(crate) use crate::import::{freshness_problem, signer_name};
