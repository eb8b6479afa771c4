//! The state file (`state.json`): its types, strict parse and validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    MAX_ACCEPTED_PER_SEQUENCE, MAX_CHANNELS, MAX_STATE_BYTES, STATE_FILE, STATE_FORMAT,
    STATE_VERSION,
};
use crate::format::{json, validate_channel, Digest};

/// The state file (`state.json`). Strict: unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// Always `"airlock-state"`.
    pub format: String,
    /// [`STATE_VERSION`]; other versions are refused.
    pub version: u32,
    /// Per channel name.
    pub channels: BTreeMap<String, ChannelState>,
}

/// What a channel has accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelState {
    /// The highest sequence accepted.
    pub sequence: u64,
    /// The bundles accepted at that sequence, oldest first (normally exactly one).
    pub accepted: Vec<Accepted>,
}

/// One bundle accepted at a channel's sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    pub bundle_id: String,
    pub manifest_digest: Digest,
    /// When the import completed, RFC 3339 UTC.
    pub time: String,
}

impl Default for StateFile {
    fn default() -> Self {
        StateFile {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            channels: BTreeMap::new(),
        }
    }
}

impl StateFile {
    /// Parses and validates state file bytes.
    pub fn parse(bytes: &[u8]) -> std::result::Result<StateFile, String> {
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(format!("larger than {MAX_STATE_BYTES} bytes"));
        }
        #[derive(Deserialize)]
        struct Probe {
            format: Option<String>,
            version: Option<u32>,
        }
        // Strict: a key named twice (a channel, say) is refused, never last-wins.
        let probe: Probe =
            json::from_slice(bytes, STATE_FILE).map_err(|e| e.detail().to_string())?;
        if probe.format.as_deref() != Some(STATE_FORMAT) {
            return Err(format!(
                "not an airlock state file (format {:?})",
                probe.format
            ));
        }
        if probe.version != Some(STATE_VERSION) {
            return Err(format!(
                "state file version {:?}, this airlock reads version {STATE_VERSION}",
                probe.version
            ));
        }
        let s: StateFile =
            json::from_slice(bytes, STATE_FILE).map_err(|e| e.detail().to_string())?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.channels.len() > MAX_CHANNELS {
            return Err(format!("more than {MAX_CHANNELS} channels"));
        }
        for (name, c) in &self.channels {
            validate_channel(name)?;
            if c.accepted.is_empty() || c.accepted.len() > MAX_ACCEPTED_PER_SEQUENCE {
                return Err(format!(
                    "channel {name:?}: {} accepted bundles at sequence {} (1 to {MAX_ACCEPTED_PER_SEQUENCE} allowed)",
                    c.accepted.len(),
                    c.sequence
                ));
            }
            for a in &c.accepted {
                validate_bundle_id(&a.bundle_id).map_err(|e| format!("channel {name:?}: {e}"))?;
                humantime::parse_rfc3339(&a.time)
                    .map_err(|e| format!("channel {name:?}: time {:?}: {e}", a.time))?;
            }
        }
        Ok(())
    }
}

pub(super) fn validate_bundle_id(id: &str) -> std::result::Result<(), String> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!("bundle_id {id:?} is not 32 lowercase hex digits"))
    }
}
