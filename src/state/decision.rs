//! What the state says about a bundle ([`Decision`]).

use std::fmt;

use serde::Serialize;

use super::Accepted;

/// What the state says about a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// A channel never seen, or a sequence above the last accepted one (`last`).
    Fresh { last: Option<u64> },
    /// This very bundle was already accepted at the channel's current sequence: an idempotent
    /// success (importing it again is harmless).
    SameAsAccepted { accepted: Accepted },
    /// The sequence is below the last accepted one.
    Rollback { sequence: u64, last: u64 },
    /// Another bundle (`accepted`) was already accepted at this sequence; this one has the same
    /// sequence but a different bundle id or manifest.
    SequenceReused {
        sequence: u64,
        accepted: Vec<Accepted>,
    },
}

impl Decision {
    /// A stable code for reports and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Decision::Fresh { .. } => "fresh",
            Decision::SameAsAccepted { .. } => "same-as-accepted",
            Decision::Rollback { .. } => "rollback",
            Decision::SequenceReused { .. } => "sequence-reused",
        }
    }

    /// A rollback or a replayed sequence: refused unless explicitly allowed.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Decision::Rollback { .. } | Decision::SequenceReused { .. }
        )
    }

    /// Whether the import may go on; `allow_rollback` (recovery) overrides both rejections.
    pub fn permits(&self, allow_rollback: bool) -> bool {
        allow_rollback || !self.is_rejection()
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Fresh { last: None } => write!(f, "fresh: first bundle accepted on this channel"),
            Decision::Fresh { last: Some(l) } => write!(f, "fresh: newer than sequence {l}, the last accepted"),
            Decision::SameAsAccepted { accepted } => write!(
                f,
                "already accepted: bundle {} was imported at {}; importing it again is harmless",
                accepted.bundle_id, accepted.time
            ),
            Decision::Rollback { sequence, last } => write!(
                f,
                "rollback: sequence {sequence} is older than sequence {last}, the last accepted on this channel (--allow-rollback to override)"
            ),
            Decision::SequenceReused { sequence, accepted } => write!(
                f,
                "sequence reused: bundle {} was already accepted at sequence {sequence} of this channel; a different bundle with the same sequence is a replay or a conflict (--allow-rollback to override)",
                accepted.last().map(|a| a.bundle_id.as_str()).unwrap_or("?")
            ),
        }
    }
}
