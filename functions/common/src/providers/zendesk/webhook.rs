//! The Conversations integration webhook (spec §6, §7, §10): `X-API-Key`
//! checked in constant time, then each event mapped.

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::error::{HandoffError, Result};
use crate::events::EndedBy;
use crate::providers::{
    AgentInfo, ConversationRef, ProviderEvent, ProviderEventKind, WebhookRejection,
};
use crate::signature::secret_matches;
use crate::time::parse_rfc3339_ms;

use super::api::ZendeskCredentials;
use super::U_OWN_POSTS_BY_SOURCE;

pub const API_KEY_HEADER: &str = "x-api-key";
const AGENT_WORKSPACE_TYPE: &str = "zd:agentWorkspace";
const AGENT_WORKSPACE_NAME: &str = "zd-agentWorkspace";

pub fn authenticate(
    creds: &ZendeskCredentials,
    presented: Option<&str>,
) -> std::result::Result<(), WebhookRejection> {
    let Some(key) = presented else {
        return Err(WebhookRejection::Unauthenticated("missing X-API-Key"));
    };
    let mut secrets = vec![creds.webhook_secret.expose_secret().as_bytes()];
    if let Some(prev) = &creds.webhook_secret_previous {
        secrets.push(prev.expose_secret().as_bytes());
    }
    if secret_matches(key.as_bytes(), secrets) {
        Ok(())
    } else {
        Err(WebhookRejection::Unauthenticated("bad X-API-Key"))
    }
}

fn is_agent_workspace(integration: &Value) -> bool {
    integration["integrationType"] == AGENT_WORKSPACE_TYPE
        || integration["name"] == AGENT_WORKSPACE_NAME
}

fn message_kind(message: &Value) -> ProviderEventKind {
    let author = &message["author"];
    if message["activity"]["type"] == "ticket:closed" {
        return ProviderEventKind::Ended(EndedBy::Agent);
    }
    if author["type"] != "business" {
        return ProviderEventKind::Ignored("customer echo");
    }
    if message["source"]["type"] == U_OWN_POSTS_BY_SOURCE {
        return ProviderEventKind::Ignored("our own post");
    }
    let agent_id = message["metadata"]["__zendesk_msg.agent.id"].as_str();
    let content = &message["content"];
    let text = match content["type"].as_str() {
        Some("text") => content["text"].as_str().unwrap_or_default().to_owned(),
        Some("image" | "file") => format!(
            "[{}] {}",
            content["altText"].as_str().unwrap_or("attachment"),
            content["mediaUrl"].as_str().unwrap_or_default()
        ),
        _ => String::new(),
    };
    if text.is_empty() {
        return ProviderEventKind::Ignored("no text");
    }
    ProviderEventKind::AgentMessage {
        message_id: message["id"].as_str().unwrap_or_default().to_owned(),
        text,
        agent: AgentInfo {
            id: agent_id.filter(|a| *a != "__trigger").map(str::to_owned),
            display_name: author["displayName"].as_str().map(str::to_owned),
        },
        // Triggers and automations are not a person.
        from_bot: agent_id.is_none_or(|a| a == "__trigger"),
        sent_at_ms: message["received"].as_str().and_then(parse_rfc3339_ms),
    }
}

/// Parses a webhook body into events (one POST may carry several).
pub fn parse(body: &[u8]) -> Result<Vec<ProviderEvent>> {
    let envelope: Value = serde_json::from_slice(body)
        .map_err(|e| HandoffError::invalid(format!("malformed Zendesk webhook: {e}")))?;
    let events = envelope["events"]
        .as_array()
        .ok_or_else(|| HandoffError::invalid("Zendesk webhook without events"))?;
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let id = event["id"]
            .as_str()
            .ok_or_else(|| HandoffError::invalid("Zendesk event without id"))?;
        let payload = &event["payload"];
        let cid = payload["conversation"]["id"]
            .as_str()
            .ok_or_else(|| HandoffError::invalid("Zendesk event without conversation"))?;
        let mut dedupe_key = id.to_owned();
        let kind = match event["type"].as_str().unwrap_or_default() {
            "conversation:message" => {
                if let Some(mid) = payload["message"]["id"].as_str() {
                    // The same message may come in two events: one client event.
                    dedupe_key = format!("message:{mid}");
                }
                message_kind(&payload["message"])
            }
            "switchboard:releaseControl" => ProviderEventKind::Ended(EndedBy::Agent),
            "switchboard:passControl" => {
                let active = &payload["conversation"]["activeSwitchboardIntegration"];
                let reason = payload["reason"].as_str();
                if is_agent_workspace(active) {
                    ProviderEventKind::Ignored("queued in the agent workspace")
                } else if matches!(reason, Some("ticketClosed" | "transferToEmail")) {
                    ProviderEventKind::Ended(EndedBy::Agent)
                } else {
                    ProviderEventKind::Ignored("control passed to us")
                }
            }
            "conversation:remove" => ProviderEventKind::Ended(EndedBy::System),
            "conversation:typing" => {
                let activity = &payload["activity"];
                if activity["author"]["type"] == "business" && activity["type"] == "typing:start" {
                    ProviderEventKind::AgentTyping(AgentInfo {
                        id: None,
                        display_name: activity["author"]["displayName"]
                            .as_str()
                            .map(str::to_owned),
                    })
                } else {
                    ProviderEventKind::Ignored("user typing")
                }
            }
            _ => ProviderEventKind::Ignored("event with no client event"),
        };
        out.push(ProviderEvent {
            dedupe_key,
            conversation: ConversationRef::Provider(cid.to_owned()),
            kind,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(events: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"app": {"id": "app1"}, "webhook": {"id": "wh1", "version": "v2"}, "events": events})).unwrap()
    }

    fn agent_message(id: &str, agent: &str, source: &str) -> Value {
        json!({"id": format!("evt-{id}"), "type": "conversation:message", "createdAt": "2026-11-23T10:01:02.120Z",
            "payload": {"conversation": {"id": "c1", "type": "personal"},
                "message": {"id": id, "author": {"type": "business", "displayName": "Sam (Support)"},
                    "content": {"type": "text", "text": "Hi Ada"}, "source": {"type": source},
                    "metadata": {"__zendesk_msg.agent.id": agent}}}})
    }

    #[test]
    fn agent_messages_are_mapped_and_our_posts_dropped() {
        let evs = parse(&body(json!([
            agent_message("m1", "12345", "zd:agentWorkspace"),
            agent_message("m2", "12345", "api:conversations"),
            agent_message("m3", "__trigger", "zd:agentWorkspace")
        ])))
        .unwrap();
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].dedupe_key, "message:m1");
        assert_eq!(evs[0].conversation, ConversationRef::Provider("c1".into()));
        assert!(
            matches!(&evs[0].kind, ProviderEventKind::AgentMessage { agent, from_bot: false, .. }
            if agent.id.as_deref() == Some("12345") && agent.display_name.as_deref() == Some("Sam (Support)"))
        );
        assert_eq!(evs[1].kind, ProviderEventKind::Ignored("our own post"));
        assert!(matches!(
            evs[2].kind,
            ProviderEventKind::AgentMessage { from_bot: true, .. }
        ));
    }

    #[test]
    fn control_changes_and_closing() {
        let pass = |name: &str, reason: Option<&str>| {
            json!({"id": "e", "type": "switchboard:passControl",
            "payload": {"conversation": {"id": "c1", "activeSwitchboardIntegration": {"name": name,
                "integrationType": if name == "zd-agentWorkspace" { "zd:agentWorkspace" } else { "custom" }}}, "reason": reason}})
        };
        let evs = parse(&body(json!([pass("zd-agentWorkspace", None), pass("ai-relay", None),
            pass("ai-relay", Some("ticketClosed")),
            {"id": "r", "type": "switchboard:releaseControl", "payload": {"conversation": {"id": "c1"}}},
            {"id": "x", "type": "conversation:remove", "payload": {"conversation": {"id": "c1"}}}]))).unwrap();
        assert!(matches!(evs[0].kind, ProviderEventKind::Ignored(_)));
        assert!(matches!(evs[1].kind, ProviderEventKind::Ignored(_)));
        assert_eq!(evs[2].kind, ProviderEventKind::Ended(EndedBy::Agent));
        assert_eq!(evs[3].kind, ProviderEventKind::Ended(EndedBy::Agent));
        assert_eq!(evs[4].kind, ProviderEventKind::Ended(EndedBy::System));
    }

    #[test]
    fn user_messages_are_echoes_and_bad_bodies_are_invalid() {
        let user = json!({"id": "e", "type": "conversation:message", "payload": {"conversation": {"id": "c1"},
            "message": {"id": "u1", "author": {"type": "user"}, "content": {"type": "text", "text": "hi"}}}});
        assert_eq!(
            parse(&body(json!([user]))).unwrap()[0].kind,
            ProviderEventKind::Ignored("customer echo")
        );
        assert!(parse(b"nope").is_err());
        assert!(parse(br#"{"events":[{"type":"conversation:message"}]}"#).is_err());
        assert!(parse(br#"{"app":{}}"#).is_err());
    }

    #[test]
    fn api_key_is_checked_with_rotation() {
        let creds: ZendeskCredentials = serde_json::from_value(json!({"base_url": "http://x/sc", "app_id": "a",
            "key_id": "k", "key_secret": "s", "webhook_secret": "current", "webhook_secret_previous": "old"})).unwrap();
        assert!(authenticate(&creds, Some("current")).is_ok());
        assert!(authenticate(&creds, Some("old")).is_ok());
        assert!(authenticate(&creds, Some("curren")).is_err());
        assert!(authenticate(&creds, None).is_err());
    }
}
