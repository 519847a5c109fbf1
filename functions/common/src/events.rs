//! Client events: what the relay tells the agent runtime (and so the widget).

use serde::{Deserialize, Serialize};

/// The kinds of client event, as named in the design's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientEventType {
    PolyAgentTriggeredHandoff,
    LiveAgentJoined,
    LiveAgentTyping,
    LiveAgentMessage,
    LiveAgentLeft,
    SessionEnd,
}

impl ClientEventType {
    /// The wire name, e.g. `LIVE_AGENT_MESSAGE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PolyAgentTriggeredHandoff => "POLY_AGENT_TRIGGERED_HANDOFF",
            Self::LiveAgentJoined => "LIVE_AGENT_JOINED",
            Self::LiveAgentTyping => "LIVE_AGENT_TYPING",
            Self::LiveAgentMessage => "LIVE_AGENT_MESSAGE",
            Self::LiveAgentLeft => "LIVE_AGENT_LEFT",
            Self::SessionEnd => "SESSION_END",
        }
    }
}

/// Who ended a session, carried in `SESSION_END.data.ended_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndedBy {
    Agent,
    User,
    System,
    Timeout,
}

impl EndedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::User => "user",
            Self::System => "system",
            Self::Timeout => "timeout",
        }
    }
}

/// One client event as POSTed to the tenant's `events_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientEvent {
    pub session_id: String,
    /// Gap-free, increasing per session, starting at 1.
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: ClientEventType,
    /// RFC 3339 with milliseconds, UTC.
    pub at: String,
    pub data: serde_json::Value,
}
