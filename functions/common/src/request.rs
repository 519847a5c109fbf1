//! Requests from the agent runtime, validated at the edge into domain types.
//! Everything here is pure: nothing is read, written or sent while validating.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{ClientEnv, IntegrationKey, SessionId, Tenant};
use crate::error::{HandoffError, Result};

/// Longest customer message or utterance we relay (project limit; every
/// platform we target accepts at least this much text in one message).
pub const MAX_TEXT_CHARS: usize = 4096;
/// Most transcript entries handed to an agent at start.
pub const MAX_TRANSCRIPT_ENTRIES: usize = 200;
/// Largest serialised `context` / `data` object.
pub const MAX_CONTEXT_BYTES: usize = 16 * 1024;
/// Largest serialised routing hints object.
pub const MAX_ROUTING_BYTES: usize = 4 * 1024;
/// Longest message id the runtime may use for idempotency.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

#[derive(Deserialize)]
struct WireTenant {
    account_id: String,
    project_id: String,
    client_env: String,
}

impl WireTenant {
    fn parse(self) -> Result<Tenant> {
        Tenant::new(
            &self.account_id,
            &self.project_id,
            ClientEnv::parse(&self.client_env)?,
        )
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(value: &Value) -> Result<T> {
    T::deserialize(value).map_err(|e| HandoffError::invalid(format!("malformed request: {e}")))
}

fn check_text(what: &str, text: &str, allow_empty: bool) -> Result<()> {
    if !allow_empty && text.trim().is_empty() {
        return Err(HandoffError::invalid(format!("{what} must not be empty")));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(HandoffError::invalid(format!(
            "{what} is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(())
}

/// Where a handoff goes: one integration and its routing hints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoffRoute {
    pub integration: IntegrationKey,
    /// Routing hints (queue, skill, department, …) passed to the platform's
    /// native routing fields.
    pub routing: Map<String, Value>,
}

impl HandoffRoute {
    /// Parses `{"<integration_key>": {hints}}`: exactly one key.
    pub fn from_text_chat(text_chat: &Value) -> Result<Self> {
        let Some(obj) = text_chat.as_object() else {
            return Err(HandoffError::invalid(
                "handoff.text_chat must be an object with one integration key",
            ));
        };
        if obj.len() != 1 {
            return Err(HandoffError::invalid(format!(
                "handoff.text_chat must name exactly one integration, found {}",
                obj.len()
            )));
        }
        let (key, hints) = obj.iter().next().expect("one entry");
        let integration = IntegrationKey::parse(key)?;
        let routing = match hints {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            _ => {
                return Err(HandoffError::invalid(format!(
                    "routing hints of {key} must be an object"
                )))
            }
        };
        if serde_json::to_vec(&routing).map_or(0, |v| v.len()) > MAX_ROUTING_BYTES {
            return Err(HandoffError::invalid("routing hints are too large"));
        }
        Ok(Self {
            integration,
            routing,
        })
    }
}

/// The handoff target as the request names it, before tenant config is read.
#[derive(Debug, Clone, PartialEq)]
pub enum HandoffTarget {
    Route(HandoffRoute),
    /// A destination name configured for the tenant (the `conv.call_handoff` form).
    Destination(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: Option<String>,
    pub display_name: Option<String>,
    pub channel: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    pub role: String,
    pub text: String,
    pub at: Option<String>,
}

/// A validated start-handoff request.
#[derive(Debug, Clone, PartialEq)]
pub struct StartHandoffRequest {
    pub tenant: Tenant,
    pub session_id: SessionId,
    pub utterance: Option<String>,
    pub target: HandoffTarget,
    pub user: UserInfo,
    pub transcript: Vec<TranscriptEntry>,
    pub context: Map<String, Value>,
}

#[derive(Deserialize)]
struct WireStart {
    tenant: WireTenant,
    session_id: String,
    utterance: Option<String>,
    handoff: Option<WireHandoff>,
    destination: Option<String>,
    data: Option<Value>,
    user: Option<UserInfo>,
    #[serde(default)]
    transcript: Vec<TranscriptEntry>,
    context: Option<Value>,
}

#[derive(Deserialize)]
struct WireHandoff {
    text_chat: Value,
}

impl StartHandoffRequest {
    pub fn parse(value: &Value) -> Result<Self> {
        let wire: WireStart = parse_json(value)?;
        let tenant = wire.tenant.parse()?;
        let session_id = SessionId::parse(&wire.session_id)?;
        if let Some(u) = &wire.utterance {
            check_text("utterance", u, true)?;
        }
        let (target, context) = match (wire.handoff, wire.destination) {
            (Some(h), None) => {
                if wire.data.is_some() {
                    return Err(HandoffError::invalid(
                        "data goes with destination; use context with handoff",
                    ));
                }
                (
                    HandoffTarget::Route(HandoffRoute::from_text_chat(&h.text_chat)?),
                    wire.context,
                )
            }
            (None, Some(dest)) => {
                if dest.trim().is_empty() || dest.len() > MAX_MESSAGE_ID_LEN {
                    return Err(HandoffError::invalid(
                        "destination must be a configured name",
                    ));
                }
                if wire.context.is_some() {
                    return Err(HandoffError::invalid(
                        "context goes with handoff; use data with destination",
                    ));
                }
                (HandoffTarget::Destination(dest), wire.data)
            }
            (Some(_), Some(_)) => {
                return Err(HandoffError::invalid(
                    "give either handoff or destination, not both",
                ))
            }
            (None, None) => {
                return Err(HandoffError::invalid(
                    "handoff.text_chat or destination is required",
                ))
            }
        };
        let context = match context {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(HandoffError::invalid("context/data must be an object")),
        };
        if serde_json::to_vec(&context).map_or(0, |v| v.len()) > MAX_CONTEXT_BYTES {
            return Err(HandoffError::invalid(format!(
                "context is larger than {MAX_CONTEXT_BYTES} bytes"
            )));
        }
        if wire.transcript.len() > MAX_TRANSCRIPT_ENTRIES {
            return Err(HandoffError::invalid(format!(
                "transcript has more than {MAX_TRANSCRIPT_ENTRIES} entries"
            )));
        }
        for entry in &wire.transcript {
            check_text("transcript text", &entry.text, true)?;
            if !matches!(entry.role.as_str(), "user" | "assistant" | "bot" | "system") {
                return Err(HandoffError::invalid(format!(
                    "transcript role must be user, assistant, bot or system, not {:?}",
                    entry.role
                )));
            }
        }
        let user = wire.user.unwrap_or(UserInfo {
            id: None,
            display_name: None,
            channel: None,
        });
        if let Some(name) = &user.display_name {
            if name.chars().count() > 256 {
                return Err(HandoffError::invalid("user.display_name is too long"));
            }
        }
        Ok(Self {
            tenant,
            session_id,
            utterance: wire.utterance,
            target,
            user,
            transcript: wire.transcript,
            context,
        })
    }
}

/// A customer message to relay, idempotent on `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerMessage {
    pub id: String,
    pub text: String,
}

/// What the runtime asks outbound-relay to do.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayAction {
    Message(CustomerMessage),
    Typing(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRelayRequest {
    pub tenant: Tenant,
    pub session_id: SessionId,
    pub action: RelayAction,
}

#[derive(Deserialize)]
struct WireRelay {
    tenant: WireTenant,
    session_id: String,
    message: Option<CustomerMessage>,
    typing: Option<bool>,
}

impl OutboundRelayRequest {
    pub fn parse(value: &Value) -> Result<Self> {
        let wire: WireRelay = parse_json(value)?;
        let tenant = wire.tenant.parse()?;
        let session_id = SessionId::parse(&wire.session_id)?;
        let action = match (wire.message, wire.typing) {
            (Some(m), None) => {
                if m.id.is_empty()
                    || m.id.len() > MAX_MESSAGE_ID_LEN
                    || m.id.chars().any(char::is_control)
                {
                    return Err(HandoffError::invalid(format!(
                        "message.id must be 1 to {MAX_MESSAGE_ID_LEN} printable characters"
                    )));
                }
                check_text("message.text", &m.text, false)?;
                RelayAction::Message(m)
            }
            (None, Some(t)) => RelayAction::Typing(t),
            (Some(_), Some(_)) => {
                return Err(HandoffError::invalid(
                    "give either message or typing, not both",
                ))
            }
            (None, None) => return Err(HandoffError::invalid("message or typing is required")),
        };
        Ok(Self {
            tenant,
            session_id,
            action,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndSessionRequest {
    pub tenant: Tenant,
    pub session_id: SessionId,
    pub reason: String,
}

#[derive(Deserialize)]
struct WireEnd {
    tenant: WireTenant,
    session_id: String,
    reason: Option<String>,
}

/// End reasons the runtime may send.
pub const END_REASONS: [&str; 1] = ["USER_END_SESSION"];

impl EndSessionRequest {
    pub fn parse(value: &Value) -> Result<Self> {
        let wire: WireEnd = parse_json(value)?;
        let tenant = wire.tenant.parse()?;
        let session_id = SessionId::parse(&wire.session_id)?;
        let reason = wire.reason.unwrap_or_else(|| "USER_END_SESSION".into());
        if !END_REASONS.contains(&reason.as_str()) {
            return Err(HandoffError::invalid(format!(
                "reason must be one of {END_REASONS:?}"
            )));
        }
        Ok(Self {
            tenant,
            session_id,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn start_body() -> Value {
        json!({"tenant": {"account_id": "acme", "project_id": "support", "client_env": "live"},
               "session_id": "conv-8f2c",
               "utterance": "No problem, I'll transfer you to a live agent now.",
               "handoff": {"text_chat": {"genesys_integration": {"queue": "billing"}}},
               "user": {"id": "u-1", "display_name": "Ada", "channel": "webchat"},
               "transcript": [{"role": "user", "text": "hi", "at": "2026-11-23T10:00:00Z"}],
               "context": {"customer_id": "C-42", "reason": "refund", "verified": true}})
    }

    fn err_of(v: Value) -> String {
        match StartHandoffRequest::parse(&v) {
            Err(e) => format!("{}: {e}", e.code()),
            Ok(_) => panic!("expected an error for {v}"),
        }
    }

    #[test]
    fn design_example_parses() {
        let req = StartHandoffRequest::parse(&start_body()).unwrap();
        assert_eq!(req.tenant.key(), "acme/support/live");
        assert_eq!(req.session_id.as_str(), "conv-8f2c");
        let HandoffTarget::Route(route) = &req.target else {
            panic!()
        };
        assert_eq!(route.integration, IntegrationKey::Genesys);
        assert_eq!(route.routing["queue"], "billing");
        assert_eq!(req.context["customer_id"], "C-42");
        assert_eq!(req.transcript.len(), 1);
    }

    #[test]
    fn destination_form_parses_with_data_as_context() {
        let mut v = start_body();
        let obj = v.as_object_mut().unwrap();
        obj.remove("handoff");
        obj.remove("context");
        obj.insert("destination".into(), json!("billing-desk"));
        obj.insert("data".into(), json!({"reason": "refund"}));
        let req = StartHandoffRequest::parse(&v).unwrap();
        assert_eq!(
            req.target,
            HandoffTarget::Destination("billing-desk".into())
        );
        assert_eq!(req.context["reason"], "refund");
    }

    #[test]
    fn zero_or_two_integration_keys_are_rejected() {
        let mut v = start_body();
        v["handoff"]["text_chat"] = json!({});
        assert!(err_of(v.clone()).contains("exactly one integration, found 0"));
        v["handoff"]["text_chat"] = json!({"genesys_integration": {}, "zendesk_integration": {}});
        assert!(err_of(v).contains("found 2"));
    }

    #[test]
    fn unknown_integration_has_its_own_code() {
        let mut v = start_body();
        v["handoff"]["text_chat"] = json!({"avaya_integration": {}});
        assert!(err_of(v).starts_with("unknown_integration"));
    }

    #[test]
    fn both_or_neither_target_is_rejected() {
        let mut v = start_body();
        v["destination"] = json!("x");
        assert!(err_of(v.clone()).contains("not both"));
        v.as_object_mut().unwrap().remove("destination");
        v.as_object_mut().unwrap().remove("handoff");
        assert!(err_of(v).contains("required"));
    }

    #[test]
    fn bad_tenant_and_session_are_rejected() {
        let mut v = start_body();
        v["tenant"]["client_env"] = json!("production");
        assert!(err_of(v).starts_with("invalid_request"));
        let mut v = start_body();
        v["session_id"] = json!("");
        assert!(err_of(v).contains("session_id"));
        let mut v = start_body();
        v.as_object_mut().unwrap().remove("tenant");
        assert!(err_of(v).contains("malformed request"));
    }

    #[test]
    fn oversize_context_and_transcript_are_rejected() {
        let mut v = start_body();
        v["context"] = json!({"blob": "x".repeat(MAX_CONTEXT_BYTES)});
        assert!(err_of(v).contains("context is larger"));
        let mut v = start_body();
        v["transcript"] = Value::Array(
            (0..=MAX_TRANSCRIPT_ENTRIES)
                .map(|_| json!({"role": "user", "text": "x"}))
                .collect(),
        );
        assert!(err_of(v).contains("transcript has more"));
        let mut v = start_body();
        v["transcript"] = json!([{"role": "hacker", "text": "x"}]);
        assert!(err_of(v).contains("role"));
    }

    fn relay(v: Value) -> Result<OutboundRelayRequest> {
        OutboundRelayRequest::parse(&v)
    }

    #[test]
    fn relay_message_and_typing() {
        let t = json!({"account_id": "acme", "project_id": "support", "client_env": "live"});
        let m =
            relay(json!({"tenant": t, "session_id": "s", "message": {"id": "m-17", "text": "hi"}}))
                .unwrap();
        assert_eq!(
            m.action,
            RelayAction::Message(CustomerMessage {
                id: "m-17".into(),
                text: "hi".into()
            })
        );
        let ty = relay(json!({"tenant": t, "session_id": "s", "typing": true})).unwrap();
        assert_eq!(ty.action, RelayAction::Typing(true));
    }

    #[test]
    fn relay_rejects_empty_huge_and_ambiguous() {
        let t = json!({"account_id": "acme", "project_id": "support", "client_env": "live"});
        let empty =
            relay(json!({"tenant": t, "session_id": "s", "message": {"id": "m", "text": "  "}}));
        assert!(empty.unwrap_err().to_string().contains("must not be empty"));
        let huge = relay(json!({"tenant": t, "session_id": "s",
            "message": {"id": "m", "text": "é".repeat(MAX_TEXT_CHARS + 1)}}));
        assert!(huge.unwrap_err().to_string().contains("longer than"));
        let at_limit = relay(json!({"tenant": t, "session_id": "s",
            "message": {"id": "m", "text": "é".repeat(MAX_TEXT_CHARS)}}));
        assert!(at_limit.is_ok());
        let both = relay(json!({"tenant": t, "session_id": "s", "typing": true,
            "message": {"id": "m", "text": "x"}}));
        assert!(both.is_err());
        let no_id =
            relay(json!({"tenant": t, "session_id": "s", "message": {"id": "", "text": "x"}}));
        assert!(no_id.is_err());
    }

    #[test]
    fn end_session_reason_is_checked() {
        let t = json!({"account_id": "acme", "project_id": "support", "client_env": "live"});
        let ok = EndSessionRequest::parse(&json!({"tenant": t, "session_id": "s",
            "reason": "USER_END_SESSION"}))
        .unwrap();
        assert_eq!(ok.reason, "USER_END_SESSION");
        assert!(
            EndSessionRequest::parse(&json!({"tenant": t, "session_id": "s",
            "reason": "BECAUSE"}))
            .is_err()
        );
    }
}
