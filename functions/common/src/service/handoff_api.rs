//! handoff-api: the context handed over at start, for an agent desktop's
//! screen-pop or CRM enrichment.
//!
//! ```text
//! GET /handoffs/{account_id}/{project_id}/{client_env}/sessions/{session_id}
//! GET /handoffs/{account_id}/{project_id}/{client_env}/conversations/{provider}/{conversation_id}
//! ```
//! `{provider}` is the webhook path name (`genesys`, `amazon-connect`, ...).
//! Authentication: the tenant's API key from its `handoff_api` secret
//! (`{"api_key": "...", "previous_api_key": "..."}`, previous accepted while a
//! key is rotated), sent as `X-Api-Key` or `Authorization: Bearer`, compared in
//! constant time. A missing secret and a wrong key both answer 401, so the API
//! does not tell which tenants exist; a session of another tenant is not found
//! (404) because every read is keyed by the tenant of the path.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::domain::{ClientEnv, IntegrationKey, SessionId, Tenant};
use crate::error::HandoffError;
use crate::events::ClientEventType;
use crate::secrets::SecretJson;
use crate::signature::secret_matches;
use crate::store::{SessionRecord, StoredEvent};
use crate::time::rfc3339_ms;

use super::inbound::WebhookResponse;
use super::Deps;

/// The secret part holding a tenant's handoff API keys.
pub const SECRET_PART: &str = "handoff_api";

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Session(SessionId),
    Conversation(IntegrationKey, String),
}

/// Parses the route; `None` is not a route of this API.
pub fn parse_path(path: &str) -> Option<(Tenant, Lookup)> {
    let rest = path.strip_prefix("/handoffs/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let tenant = |a: &str, p: &str, e: &str| Tenant::new(a, p, ClientEnv::parse(e).ok()?).ok();
    match parts.as_slice() {
        [a, p, e, "sessions", id] => Some((
            tenant(a, p, e)?,
            Lookup::Session(SessionId::parse(id).ok()?),
        )),
        [a, p, e, "conversations", provider, id] if !id.is_empty() => Some((
            tenant(a, p, e)?,
            Lookup::Conversation(IntegrationKey::from_path_name(provider)?, (*id).to_owned()),
        )),
        _ => None,
    }
}

#[derive(Deserialize)]
struct ApiKeys {
    api_key: String,
    #[serde(default)]
    previous_api_key: Option<String>,
}

/// The key presented: `X-Api-Key`, else `Authorization: Bearer <key>`.
fn presented_key(headers: &HashMap<String, String>) -> Option<&str> {
    headers.get("x-api-key").map(String::as_str).or_else(|| {
        headers
            .get("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    })
}

/// True when `presented` is the tenant's current or previous key.
pub fn key_matches(secret: &SecretJson, presented: &str) -> bool {
    let Ok(keys) = secret.parse::<ApiKeys>(SECRET_PART) else {
        return false;
    };
    if keys.api_key.len() < 16 {
        // A short key is a configuration error; refuse rather than accept it.
        return false;
    }
    let mut valid: Vec<&[u8]> = vec![keys.api_key.as_bytes()];
    if let Some(prev) = keys.previous_api_key.as_deref().filter(|p| p.len() >= 16) {
        valid.push(prev.as_bytes());
    }
    secret_matches(presented.as_bytes(), valid)
}

fn error(status: u16, code: &str, message: &str) -> WebhookResponse {
    WebhookResponse {
        status,
        body: json!({"error": {"code": code, "message": message}}),
    }
}

/// Answers one request.
#[tracing::instrument(name = "handoff_api", skip_all, fields(tenant = tracing::field::Empty, session = tracing::field::Empty))]
pub async fn handle(
    deps: &Deps,
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
) -> WebhookResponse {
    let Some((tenant, lookup)) = parse_path(path) else {
        return error(404, "not_found", "unknown route");
    };
    if method != "GET" {
        return error(405, "method_not_allowed", "only GET is supported");
    }
    let span = tracing::Span::current();
    span.record("tenant", tracing::field::display(&tenant));
    let Some(presented) = presented_key(headers) else {
        return error(401, "unauthenticated", "an API key is required");
    };
    match deps.secrets.get(&tenant, SECRET_PART).await {
        Ok(secret) if key_matches(&secret, presented) => {}
        Ok(_) => {
            tracing::warn!(reason = "wrong key", "handoff api request refused");
            return error(401, "unauthenticated", "API key not accepted");
        }
        Err(HandoffError::NotConfigured(_)) => {
            tracing::warn!(
                reason = "no handoff_api secret",
                "handoff api request refused"
            );
            return error(401, "unauthenticated", "API key not accepted");
        }
        Err(e) => return error(503, e.code(), "credentials unavailable"),
    }
    let found = match &lookup {
        Lookup::Session(id) => deps.store.get_session(&tenant, id).await,
        Lookup::Conversation(key, cid) => deps.store.find_by_conversation(&tenant, *key, cid).await,
    };
    let session = match found {
        Ok(Some(s)) => s,
        Ok(None) => return error(404, "session_not_found", "no such handoff for this tenant"),
        Err(e) => {
            tracing::error!(error = %e, "handoff api read failed");
            return error(503, e.code(), "store unavailable; retry");
        }
    };
    span.record("session", session.session_id.as_str());
    let log = match deps
        .store
        .events_after(&tenant, &session.session_id, 0)
        .await
    {
        Ok(log) => log,
        Err(e) => return error(503, e.code(), "store unavailable; retry"),
    };
    WebhookResponse {
        status: 200,
        body: view(&session, &log),
    }
}

/// The screen-pop view of a session: what was handed over, and where it is now.
pub fn view(session: &SessionRecord, log: &[StoredEvent]) -> Value {
    let handoff = &session.handoff;
    let context = handoff.get("context").cloned().unwrap_or(Value::Null);
    let first_at = |t: ClientEventType| {
        log.iter()
            .find(|e| e.event.event_type == t)
            .map(|e| e.event.at.clone())
    };
    // The agent now: the latest JOINED, unless a LEFT or the end came after it.
    let agent = log
        .iter()
        .rev()
        .find(|e| {
            matches!(
                e.event.event_type,
                ClientEventType::LiveAgentJoined
                    | ClientEventType::LiveAgentLeft
                    | ClientEventType::SessionEnd
            )
        })
        .filter(|e| e.event.event_type == ClientEventType::LiveAgentJoined)
        .and_then(|e| e.event.data.get("agent").cloned());
    json!({
        "session_id": session.session_id,
        "tenant": {
            "account_id": session.tenant.account_id,
            "project_id": session.tenant.project_id,
            "client_env": session.tenant.client_env.as_str(),
        },
        "provider": session.provider.as_str(),
        "provider_conversation_id": session.provider_conversation_id,
        "state": session.state.as_str(),
        "ended_by": session.ended_by,
        "customer": {
            "customer_id": context.get("customer_id"),
            "verified": context.get("verified"),
            "user": handoff.get("user"),
        },
        "reason": context.get("reason"),
        "context": context,
        "utterance": handoff.get("utterance"),
        "transcript": handoff.get("transcript").cloned().unwrap_or_else(|| json!([])),
        "routing": handoff.get("routing"),
        "agent": agent,
        "timestamps": {
            "created_at": rfc3339_ms(session.created_at_ms),
            "updated_at": rfc3339_ms(session.updated_at_ms),
            "agent_joined_at": first_at(ClientEventType::LiveAgentJoined),
            "ended_at": first_at(ClientEventType::SessionEnd),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ClientEvent;

    #[test]
    fn routes() {
        let (t, l) = parse_path("/handoffs/acme/support/live/sessions/conv-1").unwrap();
        assert_eq!(t.key(), "acme/support/live");
        assert_eq!(l, Lookup::Session(SessionId::parse("conv-1").unwrap()));
        let (_, l) =
            parse_path("/handoffs/acme/support/sandbox/conversations/amazon-connect/c-9").unwrap();
        assert_eq!(
            l,
            Lookup::Conversation(IntegrationKey::AmazonConnect, "c-9".into())
        );
        for bad in [
            "/handoffs/acme/support/prod/sessions/conv-1",
            "/handoffs/acme/support/live/sessions",
            "/handoffs/acme/support/live/sessions/a/b",
            "/handoffs/acme/support/live/conversations/nosuch/c-1",
            "/handoffs/acme/support/live/conversations/genesys/",
            "/webhooks/genesys/acme/support/live",
        ] {
            assert!(parse_path(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn keys_current_previous_and_short() {
        let secret = SecretJson::new(json!({
            "api_key": "current-key-0123456789", "previous_api_key": "previous-key-0123456789"}));
        assert!(key_matches(&secret, "current-key-0123456789"));
        assert!(key_matches(&secret, "previous-key-0123456789"));
        assert!(!key_matches(&secret, "current-key-012345678"));
        assert!(!key_matches(&secret, ""));
        let short = SecretJson::new(json!({"api_key": "short"}));
        assert!(!key_matches(&short, "short"));
        let malformed = SecretJson::new(json!({"key": "current-key-0123456789"}));
        assert!(!key_matches(&malformed, "current-key-0123456789"));
        let mut headers = HashMap::new();
        headers.insert("authorization".into(), "Bearer k".into());
        assert_eq!(presented_key(&headers), Some("k"));
        headers.insert("x-api-key".into(), "x".into());
        assert_eq!(presented_key(&headers), Some("x"));
    }

    fn stored(seq: u64, t: ClientEventType, data: Value) -> StoredEvent {
        StoredEvent {
            event: ClientEvent {
                session_id: "conv-1".into(),
                seq,
                event_type: t,
                at: format!("2026-12-01T10:00:0{seq}.000Z"),
                data,
            },
            body: String::new(),
            pushed: true,
            attempts: 0,
        }
    }

    #[test]
    fn view_shows_context_and_the_current_agent() {
        let mut session = SessionRecord::new(
            Tenant::new("acme", "support", ClientEnv::Live).unwrap(),
            SessionId::parse("conv-1").unwrap(),
            IntegrationKey::Genesys,
            json!({"user": {"id": "u-1", "display_name": "Ada"},
                   "transcript": [{"role": "user", "text": "hi"}],
                   "context": {"customer_id": "C-42", "reason": "refund", "verified": true},
                   "routing": {"queue": "billing"}}),
        );
        session.provider_conversation_id = Some("g-1".into());
        let sam = json!({"display_name": "Sam"});
        let kim = json!({"display_name": "Kim"});
        let mut log = vec![
            stored(1, ClientEventType::PolyAgentTriggeredHandoff, json!({})),
            stored(2, ClientEventType::LiveAgentJoined, json!({"agent": sam})),
            stored(3, ClientEventType::LiveAgentLeft, json!({"agent": sam})),
            stored(4, ClientEventType::LiveAgentJoined, json!({"agent": kim})),
        ];
        let v = view(&session, &log);
        assert_eq!(v["customer"]["customer_id"], "C-42");
        assert_eq!(v["customer"]["verified"], true);
        assert_eq!(v["reason"], "refund");
        assert_eq!(v["transcript"][0]["text"], "hi");
        assert_eq!(v["routing"]["queue"], "billing");
        assert_eq!(v["agent"]["display_name"], "Kim");
        assert_eq!(
            v["timestamps"]["agent_joined_at"],
            "2026-12-01T10:00:02.000Z"
        );
        assert!(v["timestamps"]["ended_at"].is_null());
        assert_eq!(v["provider_conversation_id"], "g-1");
        log.push(stored(
            5,
            ClientEventType::SessionEnd,
            json!({"ended_by": "agent"}),
        ));
        let v = view(&session, &log);
        assert!(v["agent"].is_null());
        assert_eq!(v["timestamps"]["ended_at"], "2026-12-01T10:00:05.000Z");
    }
}
