//! The enclave's trust policy: which keys may sign which channels, and how many of them must.
//!
//! ```toml
//! [keys.ci]
//! key = "RWQ…"                        # or file = "ci.pub" (relative to the policy file)
//! expires = "2027-01-01T00:00:00Z"    # optional: signatures no longer count after this time
//! revoked = false                     # optional
//!
//! [keys.officer]
//! file = "officer.pub"
//!
//! [channels.nightly]
//! signers = ["ci", "officer"]
//! threshold = 2                       # m of n distinct signer keys
//!
//! [channels."*"]                      # optional: the rule for channels not listed
//! signers = ["ci"]
//! threshold = 1
//! ```
//!
//! `--trust PUBKEY` is the quick form: [`TrustPolicy::from_keys`] (any of these keys, any
//! channel, threshold 1). The file's JSON schema, `schemas/trust-policy.schema.json`, is
//! generated from [`PolicyFile`]. Parsing is strict (unknown fields refused) and bounded; every
//! error names the policy file. Verification applies the policy in `bundle::verify`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format;
use crate::fsutil;
use crate::sign::{KeyId, PublicKey};

/// Where the policy is read from when neither `--policy` nor `--trust` is given (if it exists).
pub const DEFAULT_POLICY: &str = "/etc/airlock/trust.toml";
/// The channel rule name that applies to channels the policy does not list.
pub const ANY_CHANNEL: &str = "*";
/// Largest policy file read.
pub const MAX_POLICY_BYTES: u64 = 1 << 20;
/// Most keys a policy may name.
pub const MAX_KEYS: usize = 256;
/// Most channel rules a policy may hold.
pub const MAX_CHANNELS: usize = 4096;

/// A trust policy file, as written (TOML).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The signer keys, by name (`[A-Za-z0-9._-]`, 1 to 64 characters).
    #[serde(default)]
    pub keys: BTreeMap<String, KeyEntry>,
    /// Per channel: who must sign. The rule named `"*"` applies to channels not listed; without
    /// it, bundles of unlisted channels are rejected.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelRule>,
}

/// One signer key. Exactly one of `key` and `file` is given.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The minisign public key itself (`RW…`, 56 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A minisign public key file; relative paths are resolved against the policy file's
    /// directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// RFC 3339 time after which this key's signatures are not counted (no clock-skew allowance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// A revoked key's signatures are never counted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
}

/// Who must sign bundles of a channel.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelRule {
    /// Names of the keys (from `[keys]`) whose signatures count.
    pub signers: Vec<String>,
    /// How many distinct keys of `signers` must have signed: 1 ≤ threshold ≤ len(signers).
    pub threshold: usize,
}

/// A key of a loaded policy.
#[derive(Debug, Clone)]
pub struct NamedKey {
    pub name: String,
    pub key: PublicKey,
    /// The expiry as written, and as a time.
    pub expires: Option<(String, SystemTime)>,
    pub revoked: bool,
}

/// Why a key's signatures do not count right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Usable,
    Revoked,
    /// Expired at this time (as written in the policy).
    Expired(String),
}

impl NamedKey {
    pub fn state(&self, now: SystemTime) -> KeyState {
        if self.revoked {
            KeyState::Revoked
        } else {
            match &self.expires {
                Some((text, t)) if now > *t => KeyState::Expired(text.clone()),
                _ => KeyState::Usable,
            }
        }
    }
}

/// A loaded channel rule: indices into [`TrustPolicy::keys`].
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name: a channel, or `"*"`.
    pub name: String,
    pub signers: Vec<usize>,
    pub threshold: usize,
}

/// A checked, ready-to-apply trust policy.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// Where it came from, for messages: the policy file, or `--trust`.
    pub origin: String,
    pub keys: Vec<NamedKey>,
    /// By channel name; `"*"` included when present.
    pub rules: BTreeMap<String, Rule>,
}

fn invalid(origin: &str, msg: impl std::fmt::Display) -> Error {
    Error::Usage(format!("trust policy {origin}: {msg}"))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl TrustPolicy {
    /// The quick form `--trust KEY...`: any of these keys, any channel, threshold 1. Keys are
    /// named by their key id.
    pub fn from_keys(keys: &[PublicKey]) -> TrustPolicy {
        let mut named: Vec<NamedKey> = Vec::new();
        for k in keys {
            if named.iter().any(|n| n.key.id == k.id) {
                continue;
            }
            named.push(NamedKey {
                name: k.id.to_string(),
                key: k.clone(),
                expires: None,
                revoked: false,
            });
        }
        let rule = Rule {
            name: ANY_CHANNEL.into(),
            signers: (0..named.len()).collect(),
            threshold: 1,
        };
        TrustPolicy {
            origin: "--trust".into(),
            keys: named,
            rules: BTreeMap::from([(ANY_CHANNEL.to_string(), rule)]),
        }
    }

    /// Reads and checks a policy file (at most 1 MiB): opened without following a symbolic
    /// link or blocking on a FIFO, a regular file (checked on the handle), and safe from
    /// others' hands like OpenSSH's `StrictModes` wants (owner, mode, every directory above).
    pub fn load(path: &Path) -> Result<TrustPolicy> {
        let origin = path.display().to_string();
        let f = fsutil::open_nofollow(path, fs::OpenOptions::new().read(true))?;
        let meta = fsutil::check_regular(&f, path).map_err(|e| invalid(&origin, e))?;
        fsutil::check_trusted(path, &meta, true).map_err(|e| invalid(&origin, e))?;
        let mut buf = Vec::new();
        f.take(MAX_POLICY_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("read trust policy", path, e))?;
        if buf.len() as u64 > MAX_POLICY_BYTES {
            return Err(invalid(
                &origin,
                format!("larger than {MAX_POLICY_BYTES} bytes"),
            ));
        }
        let text = String::from_utf8(buf).map_err(|_| invalid(&origin, "not UTF-8 text"))?;
        let base = path.parent().unwrap_or(Path::new("."));
        TrustPolicy::parse(&text, &origin, base)
    }

    /// Parses and checks policy text; key files are resolved against `base`.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<TrustPolicy> {
        // Only the message and position: toml's own rendering quotes the offending line, which
        // could hold key material pasted into the wrong place.
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("line {line}, column {col}: ")
                })
                .unwrap_or_default();
            invalid(origin, format!("{at}{}", e.message().trim_end()))
        })?;
        TrustPolicy::from_file(file, origin, base)
    }

    fn from_file(file: PolicyFile, origin: &str, base: &Path) -> Result<TrustPolicy> {
        if file.keys.len() > MAX_KEYS {
            return Err(invalid(origin, format!("more than {MAX_KEYS} keys")));
        }
        if file.channels.len() > MAX_CHANNELS {
            return Err(invalid(
                origin,
                format!("more than {MAX_CHANNELS} channels"),
            ));
        }
        if file.channels.is_empty() {
            return Err(invalid(
                origin,
                "no [channels.NAME] rule: every bundle would be rejected",
            ));
        }
        let mut keys: Vec<NamedKey> = Vec::new();
        for (name, entry) in &file.keys {
            if !valid_name(name) {
                return Err(invalid(
                    origin,
                    format!("key name {name:?} is not valid: use 1 to 64 letters, digits, '.', '_' or '-'"),
                ));
            }
            let what = format!("key {name}");
            let key = match (&entry.key, &entry.file) {
                (Some(k), None) => PublicKey::parse(k, "`key`")
                    .map_err(|e| invalid(origin, format!("{what}: {e}")))?,
                (None, Some(f)) => {
                    let path = if f.is_absolute() {
                        f.clone()
                    } else {
                        base.join(f)
                    };
                    load_key_file(&path).map_err(|e| invalid(origin, format!("{what}: {e}")))?
                }
                _ => {
                    return Err(invalid(
                        origin,
                        format!("{what}: give exactly one of `key` and `file`"),
                    ))
                }
            };
            if let Some(other) = keys.iter().find(|k| k.key.id == key.id) {
                return Err(invalid(
                    origin,
                    format!(
                        "keys {} and {name} are the same key {}: name each key once",
                        other.name, key.id
                    ),
                ));
            }
            let expires = match &entry.expires {
                None => None,
                Some(t) => Some((
                    t.clone(),
                    format::parse_time(t)
                        .map_err(|e| invalid(origin, format!("{what}: expires: {e}")))?,
                )),
            };
            keys.push(NamedKey {
                name: name.clone(),
                key,
                expires,
                revoked: entry.revoked,
            });
        }
        let mut rules = BTreeMap::new();
        for (channel, rule) in &file.channels {
            if channel != ANY_CHANNEL {
                format::validate_channel(channel).map_err(|e| invalid(origin, e))?;
            }
            let what = format!("channel {channel:?}");
            let mut signers = Vec::new();
            let mut seen = BTreeSet::new();
            for s in &rule.signers {
                let Some(i) = keys.iter().position(|k| &k.name == s) else {
                    return Err(invalid(
                        origin,
                        format!("{what}: signer {s:?} is not a key in [keys]"),
                    ));
                };
                if !seen.insert(s) {
                    return Err(invalid(
                        origin,
                        format!("{what}: signer {s:?} is listed twice"),
                    ));
                }
                signers.push(i);
            }
            if rule.threshold == 0 || rule.threshold > signers.len() {
                return Err(invalid(
                    origin,
                    format!(
                        "{what}: threshold {} is not between 1 and the number of signers ({})",
                        rule.threshold,
                        signers.len()
                    ),
                ));
            }
            rules.insert(
                channel.clone(),
                Rule {
                    name: channel.clone(),
                    signers,
                    threshold: rule.threshold,
                },
            );
        }
        Ok(TrustPolicy {
            origin: origin.to_string(),
            keys,
            rules,
        })
    }

    /// The key with this id, if the policy names it (whatever its state).
    pub fn key(&self, id: KeyId) -> Option<&NamedKey> {
        self.keys.iter().find(|k| k.key.id == id)
    }

    /// The rule that applies to `channel`: its own, else `"*"`, else none (rejected).
    pub fn rule(&self, channel: &str) -> Option<&Rule> {
        self.rules
            .get(channel)
            .or_else(|| self.rules.get(ANY_CHANNEL))
    }

    /// The channels the policy names (without `"*"`).
    pub fn channels(&self) -> Vec<String> {
        self.rules
            .keys()
            .filter(|c| *c != ANY_CHANNEL)
            .cloned()
            .collect()
    }
}

/// A public key file named by a policy: opened and checked like the policy itself
/// ([`crate::sign::load_public_key_file`]), bounded, and errors name the file.
fn load_key_file(path: &Path) -> Result<PublicKey, String> {
    crate::sign::load_public_key_file(path).map_err(|e| e.to_string())
}

/// Which policy applies, from `--policy` and `--trust`: exactly one of them, or the default
/// policy file when it exists and `--trust` is not given. `None` when nothing applies (callers
/// that need trust make that a usage error).
pub fn select(
    policy: Option<&Path>,
    trust: &[String],
    default: &Path,
) -> Result<Option<TrustPolicy>> {
    match (policy, trust.is_empty()) {
        (Some(_), false) => Err(Error::Usage(
            "--policy and --trust exclude each other: give a policy file or keys, not both".into(),
        )),
        (Some(p), true) => TrustPolicy::load(p).map(Some),
        (None, false) => {
            let keys = trust
                .iter()
                .map(|a| PublicKey::load(a))
                .collect::<Result<Vec<_>>>()?;
            Ok(Some(TrustPolicy::from_keys(&keys)))
        }
        (None, true) if default.is_file() => TrustPolicy::load(default).map(Some),
        (None, true) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "RWTKNRSrbY1xwX4ZKzzUN75s86qERLCkuXt4Nvakkc80l7sFECoDaIqa";

    #[test]
    fn strict_and_checked() {
        let base = Path::new(".");
        let ok = format!(
            "[keys.ci]\nkey = \"{K1}\"\n[channels.nightly]\nsigners = [\"ci\"]\nthreshold = 1\n"
        );
        let p = TrustPolicy::parse(&ok, "p.toml", base).unwrap();
        assert_eq!(p.rule("nightly").unwrap().threshold, 1);
        assert!(p.rule("other").is_none());
        for (bad, says) in [
            (ok.replace("threshold = 1", "threshold = 2"), "threshold 2"),
            (ok.replace("threshold = 1", "threshold = 0"), "threshold 0"),
            (
                ok.replace("[channels", "extra = 1\n[channels"),
                "unknown field",
            ),
            (ok.replace("[\"ci\"]", "[\"nobody\"]"), "not a key"),
            (ok.replace("[\"ci\"]", "[\"ci\", \"ci\"]"), "twice"),
            (ok.replace("nightly", "-x"), "not valid"),
            // TOML refuses a key or table given twice (no last-wins).
            (
                ok.replace("threshold = 1", "threshold = 1\nthreshold = 1"),
                "duplicate key",
            ),
            (
                format!("{ok}[channels.nightly]\nsigners = []\nthreshold = 0\n"),
                "duplicate key",
            ),
        ] {
            let e = TrustPolicy::parse(&bad, "p.toml", base).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("p.toml") && msg.contains(says), "{msg}");
        }
    }
}
