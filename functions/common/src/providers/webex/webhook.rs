//! The asset webhook (agent/flow messages) and the Subscriptions webhooks
//! (`task:*` lifecycle), one CloudEvents envelope (spec §3): hex HMAC-SHA256
//! `X-WebexCC-Signature` over the raw bytes, the V2 timestamp when present,
//! then each event mapped.

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::error::{HandoffError, Result};
use crate::events::EndedBy;
use crate::providers::{
    AgentInfo, ConversationRef, ProviderEvent, ProviderEventKind, WebhookRejection,
};
use crate::signature::verify_sha256_header;
use crate::time::now_ms;

use super::api::WebexCredentials;
use super::{U_AGENT_NAME_FIELDS, U_RONA_REASON};

/// `X-WebexCC-Signature: <hex HMAC-SHA256(secret, raw body)>` [V W2].
pub const SIGNATURE_HEADER: &str = "x-webexcc-signature";
/// `X-WebExCC-Timestamp` (epoch ms) on V2 subscription deliveries [V W2].
pub const TIMESTAMP_HEADER: &str = "x-webexcc-timestamp";
/// V2 deliveries outside ±5 min are refused [V W2].
pub const MAX_TIMESTAMP_SKEW_MS: i64 = 5 * 60 * 1000;
/// Shown to the customer for a flow (`senderType: system`) message without a name.
const SYSTEM_NAME: &str = "Webex Contact Center";

/// Verifies the signature with the current or previous secret, then the V2
/// timestamp (header within ±5 min and equal to the body's `comciscotimestamp`).
pub fn authenticate(
    creds: &WebexCredentials,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now_ms: i64,
) -> std::result::Result<(), WebhookRejection> {
    let Some(signature) = signature else {
        return Err(WebhookRejection::Unauthenticated(
            "missing X-WebexCC-Signature",
        ));
    };
    let hex = signature.trim();
    let hex = hex.strip_prefix("sha256=").unwrap_or(hex);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WebhookRejection::Unauthenticated(
            "X-WebexCC-Signature is not a hex SHA-256 digest",
        ));
    }
    let mut secrets = vec![creds.webhook_secret.expose_secret().as_bytes()];
    if let Some(prev) = &creds.webhook_secret_previous {
        secrets.push(prev.expose_secret().as_bytes());
    }
    if !verify_sha256_header(&format!("sha256={hex}"), body, secrets) {
        return Err(WebhookRejection::Unauthenticated("bad X-WebexCC-Signature"));
    }
    let Some(ts) = timestamp else {
        return Ok(()); // asset webhook and V1 subscriptions carry none [U W2]
    };
    let Ok(ts) = ts.trim().parse::<i64>() else {
        return Err(WebhookRejection::Unauthenticated(
            "X-WebExCC-Timestamp is not epoch ms",
        ));
    };
    // Checked: a header near i64::MIN must be refused, not overflow.
    let skew = now_ms.checked_sub(ts).and_then(i64::checked_abs);
    if skew.is_none_or(|s| s > MAX_TIMESTAMP_SKEW_MS) {
        return Err(WebhookRejection::Unauthenticated(
            "X-WebExCC-Timestamp outside 5 minutes",
        ));
    }
    // Signed body, so its timestamp binds the header to this delivery.
    let body_ts = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["comciscotimestamp"].as_i64());
    if body_ts != Some(ts) {
        return Err(WebhookRejection::Unauthenticated(
            "X-WebExCC-Timestamp differs from comciscotimestamp",
        ));
    }
    Ok(())
}

/// Authentication with the current clock.
pub fn authenticate_now(
    creds: &WebexCredentials,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
) -> std::result::Result<(), WebhookRejection> {
    authenticate(creds, signature, timestamp, body, now_ms())
}

fn agent_of(data: &Value) -> AgentInfo {
    let name = U_AGENT_NAME_FIELDS
        .iter()
        .find_map(|p| data.pointer(p).and_then(Value::as_str))
        .filter(|n| !n.trim().is_empty())
        .map(str::to_owned);
    let id = ["/agentId", "/senderId", "/agent/id"]
        .iter()
        .find_map(|p| data.pointer(p).and_then(Value::as_str))
        .map(str::to_owned);
    AgentInfo {
        id,
        display_name: name,
    }
}

/// Message text plus one line per attachment, so the customer sees the link.
fn message_text(message: &Value) -> String {
    let mut parts: Vec<String> = message["text"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(|t| vec![t.to_owned()])
        .unwrap_or_default();
    for att in message["attachments"].as_array().into_iter().flatten() {
        let name = att["fileName"].as_str().unwrap_or("attachment");
        let url = att["url"].as_str().unwrap_or_default();
        parts.push(format!("[{name}] {url}").trim().to_owned());
    }
    parts.join("\n")
}

fn ended_by(party: Option<&str>) -> EndedBy {
    match party.map(str::to_ascii_lowercase).as_deref() {
        Some("agent") => EndedBy::Agent,
        Some("customer") => EndedBy::User,
        _ => EndedBy::System,
    }
}

/// Parses one delivery (already authenticated) into events.
pub fn parse(body: &[u8]) -> Result<Vec<ProviderEvent>> {
    let envelope: Value = serde_json::from_slice(body)
        .map_err(|e| HandoffError::invalid(format!("malformed Webex webhook: {e}")))?;
    let id = envelope["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| HandoffError::invalid("Webex webhook without id"))?;
    let kind = envelope["type"]
        .as_str()
        .ok_or_else(|| HandoffError::invalid("Webex webhook without type"))?;
    let data = &envelope["data"];
    let task = data["taskId"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| HandoffError::invalid("Webex webhook without data.taskId"))?;
    let conversation = ConversationRef::Provider(task.to_owned());
    let event = |dedupe_key: String, kind: ProviderEventKind| ProviderEvent {
        dedupe_key,
        conversation: conversation.clone(),
        kind,
    };
    let one = |kind: ProviderEventKind| Ok(vec![event(id.to_owned(), kind)]);
    match kind {
        "task-message:appended" => {
            let message = &data["channelParams"]["message"];
            // The same message may come from the asset webhook and a subscription.
            let key = message["aliasId"]
                .as_str()
                .map(|a| format!("message:{a}"))
                .unwrap_or_else(|| id.to_owned());
            let outbound = data["messageDirection"]
                .as_str()
                .is_some_and(|d| d.eq_ignore_ascii_case("outbound"));
            if !outbound {
                return Ok(vec![event(
                    key,
                    ProviderEventKind::Ignored("echo of a customer message"),
                )]);
            }
            let text = message_text(message);
            if text.is_empty() {
                return Ok(vec![event(key, ProviderEventKind::Ignored("no text"))]);
            }
            let from_bot = data["senderType"] != "agent";
            let mut agent = agent_of(data);
            if from_bot && agent.display_name.is_none() {
                agent.display_name = Some(SYSTEM_NAME.to_owned());
            }
            let message_id = message["aliasId"].as_str().unwrap_or(id).to_owned();
            Ok(vec![event(
                key,
                ProviderEventKind::AgentMessage {
                    message_id,
                    text,
                    agent,
                    from_bot,
                    // Epoch ms; the envelope's time when the message has none.
                    sent_at_ms: message["timestamp"]
                        .as_i64()
                        .or(envelope["comciscotimestamp"].as_i64()),
                },
            )])
        }
        "task:connected" => {
            // A second agent connected to an active task is a transfer; before
            // the first join the LEFT is dropped by the state machine.
            Ok(vec![
                event(
                    format!("{id}:left"),
                    ProviderEventKind::AgentLeft {
                        agent: AgentInfo::default(),
                        transfer: true,
                    },
                ),
                event(
                    id.to_owned(),
                    ProviderEventKind::AgentJoined(agent_of(data)),
                ),
            ])
        }
        "task:parked" => one(ProviderEventKind::AgentLeft {
            agent: AgentInfo::default(),
            transfer: false,
        }),
        "task:ended" => {
            let reason = data["reason"].as_str().unwrap_or_default();
            if reason.to_ascii_lowercase().contains(U_RONA_REASON) {
                // Not answered in time: the task goes back to the queue.
                return one(ProviderEventKind::AgentLeft {
                    agent: AgentInfo::default(),
                    transfer: false,
                });
            }
            one(ProviderEventKind::Ended(ended_by(
                data["terminatingParty"].as_str(),
            )))
        }
        "task:failed" => {
            tracing::warn!(task, reason = ?data["reason"].as_str(), "webex task failed");
            one(ProviderEventKind::Ended(EndedBy::System))
        }
        "task-message:append-failed" => {
            tracing::warn!(task, reason = ?data["reason"].as_str(), "webex refused a customer message");
            one(ProviderEventKind::Ignored("append failed"))
        }
        "task:new" | "task:connect" => one(ProviderEventKind::Ignored("task created or offered")),
        _ => one(ProviderEventKind::Ignored("event with no client event")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::hmac_sha256;
    use serde_json::json;

    const CURRENT: &str = "current-webhook-secret-0123456789abcdef";
    const PREVIOUS: &str = "previous-webhook-secret-0123456789abcdef";

    fn creds() -> WebexCredentials {
        serde_json::from_value(json!({
            "client_id": "c", "client_secret": "s", "refresh_token": "r", "org_id": "o",
            "api_base_url": "http://x", "business_address": "b", "channel_name": "ch",
            "webhook_secret": CURRENT, "webhook_secret_previous": PREVIOUS}))
        .unwrap()
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    }

    fn envelope(kind: &str, data: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"id": "ev-1", "specversion": "1.0", "type": kind,
            "source": "/com/cisco/wxcc/asset-1", "comciscoorgid": "o",
            "comciscotimestamp": 1_779_785_586_332_i64, "datacontenttype": "application/json",
            "data": data}))
        .unwrap()
    }

    fn agent_message(sender_type: &str) -> Vec<u8> {
        envelope(
            "task-message:appended",
            json!({"taskId": "t-1", "origin": "u-1", "destination": "support@x",
            "messageDirection": "OUTBOUND", "senderType": sender_type, "senderId": "ag-7",
            "channelType": "customMessaging", "channel": "ch",
            "channelParams": {"type": "text", "message": {"aliasId": "a-9", "text": "Hello Ada",
                "timestamp": 1, "attachments": [{"url": "https://f/x.pdf", "mimeType": "application/pdf", "fileName": "x.pdf"}]}}}),
        )
    }

    #[test]
    fn signature_current_previous_bad_missing() {
        let body = agent_message("agent");
        let now = 1_779_785_586_332;
        assert!(authenticate(&creds(), Some(&sign(CURRENT, &body)), None, &body, now).is_ok());
        assert!(authenticate(&creds(), Some(&sign(PREVIOUS, &body)), None, &body, now).is_ok());
        assert!(authenticate(
            &creds(),
            Some(&sign("someone-else", &body)),
            None,
            &body,
            now
        )
        .is_err());
        assert!(authenticate(&creds(), None, None, &body, now).is_err());
        assert!(authenticate(&creds(), Some("not-hex"), None, &body, now).is_err());
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert!(authenticate(&creds(), Some(&sign(CURRENT, &body)), None, &tampered, now).is_err());
    }

    #[test]
    fn v2_timestamp_must_be_fresh_and_match_the_body() {
        let body = agent_message("agent");
        let sig = sign(CURRENT, &body);
        let ts = "1779785586332";
        let now = 1_779_785_586_332;
        assert!(authenticate(&creds(), Some(&sig), Some(ts), &body, now + 1000).is_ok());
        assert!(authenticate(&creds(), Some(&sig), Some(ts), &body, now + 6 * 60_000).is_err());
        assert!(authenticate(&creds(), Some(&sig), Some("1779785586333"), &body, now).is_err());
        assert!(authenticate(&creds(), Some(&sig), Some("soon"), &body, now).is_err());
        // Regression for fuzz/corpus/webex_webhook/i64-min-timestamp: the
        // skew overflowed (a panic in debug builds).
        for extreme in [i64::MIN, i64::MAX] {
            let ts = extreme.to_string();
            assert!(authenticate(&creds(), Some(&sig), Some(&ts), &body, now).is_err());
        }
    }

    #[test]
    fn agent_and_flow_messages() {
        let evs = parse(&agent_message("agent")).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].dedupe_key, "message:a-9");
        assert_eq!(evs[0].conversation, ConversationRef::Provider("t-1".into()));
        match &evs[0].kind {
            ProviderEventKind::AgentMessage {
                message_id,
                text,
                agent,
                from_bot,
                sent_at_ms,
            } => {
                assert_eq!(*sent_at_ms, Some(1), "the message's own time");
                assert_eq!(message_id, "a-9");
                assert_eq!(text, "Hello Ada\n[x.pdf] https://f/x.pdf");
                assert_eq!(agent.id.as_deref(), Some("ag-7"));
                assert_eq!(agent.display_name, None, "name comes from the join");
                assert!(!from_bot);
            }
            other => panic!("{other:?}"),
        }
        match &parse(&agent_message("system")).unwrap()[0].kind {
            ProviderEventKind::AgentMessage {
                from_bot, agent, ..
            } => {
                assert!(from_bot);
                assert_eq!(agent.display_name.as_deref(), Some(SYSTEM_NAME));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inbound_echo_and_append_failure_are_ignored() {
        let echo = envelope(
            "task-message:appended",
            json!({"taskId": "t-1", "messageDirection": "INBOUND",
            "channelParams": {"message": {"aliasId": "our-1", "text": "hi"}}}),
        );
        let evs = parse(&echo).unwrap();
        assert_eq!(evs[0].dedupe_key, "message:our-1");
        assert!(matches!(evs[0].kind, ProviderEventKind::Ignored(_)));
        let failed = envelope(
            "task-message:append-failed",
            json!({"taskId": "t-1", "reason": "INVALID_CONTENT"}),
        );
        assert!(matches!(
            parse(&failed).unwrap()[0].kind,
            ProviderEventKind::Ignored(_)
        ));
    }

    #[test]
    fn lifecycle_events() {
        for kind in ["task:new", "task:connect", "task:something-new"] {
            let evs = parse(&envelope(kind, json!({"taskId": "t-1"}))).unwrap();
            assert!(
                matches!(evs[0].kind, ProviderEventKind::Ignored(_)),
                "{kind}"
            );
        }
        let connected = parse(&envelope(
            "task:connected",
            json!({"taskId": "t-1", "agentId": "ag-7", "agentName": "Sam"}),
        ))
        .unwrap();
        assert_eq!(connected.len(), 2);
        assert_eq!(connected[0].dedupe_key, "ev-1:left");
        assert!(matches!(
            connected[0].kind,
            ProviderEventKind::AgentLeft { transfer: true, .. }
        ));
        assert_eq!(connected[1].dedupe_key, "ev-1");
        assert_eq!(
            connected[1].kind,
            ProviderEventKind::AgentJoined(AgentInfo {
                id: Some("ag-7".into()),
                display_name: Some("Sam".into())
            })
        );
        let parked = parse(&envelope("task:parked", json!({"taskId": "t-1"}))).unwrap();
        assert!(matches!(
            parked[0].kind,
            ProviderEventKind::AgentLeft {
                transfer: false,
                ..
            }
        ));
        let ended = |party: &str, reason: &str| {
            parse(&envelope(
                "task:ended",
                json!({"taskId": "t-1", "terminatingParty": party, "reason": reason}),
            ))
            .unwrap()
            .remove(0)
            .kind
        };
        assert_eq!(
            ended("Agent", "Agent Left"),
            ProviderEventKind::Ended(EndedBy::Agent)
        );
        assert_eq!(
            ended("Customer", "Customer Left"),
            ProviderEventKind::Ended(EndedBy::User)
        );
        assert_eq!(
            ended("System", "Inactivity"),
            ProviderEventKind::Ended(EndedBy::System)
        );
        assert!(matches!(
            ended("System", "RONA Timer Expired"),
            ProviderEventKind::AgentLeft {
                transfer: false,
                ..
            }
        ));
        let failed = parse(&envelope(
            "task:failed",
            json!({"taskId": "t-1", "reason": "CONVERSATION_ALREADY_OPEN"}),
        ))
        .unwrap();
        assert_eq!(failed[0].kind, ProviderEventKind::Ended(EndedBy::System));
    }

    #[test]
    fn malformed_bodies_are_invalid() {
        for body in [
            &b"nope"[..],
            br#"{}"#,
            br#"{"id":"e","type":"task:new"}"#,
            br#"{"type":"task:new","data":{"taskId":"t"}}"#,
            br#"{"id":"e","data":{"taskId":"t"}}"#,
        ] {
            assert_eq!(
                parse(body).unwrap_err().code(),
                "invalid_request",
                "{body:?}"
            );
        }
    }
}
