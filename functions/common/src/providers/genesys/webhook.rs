//! The Open Messaging outbound webhook (spec §6): signature on the raw bytes,
//! then the normalized message mapped to platform-neutral events.

use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;

use crate::domain::SessionId;
use crate::error::{HandoffError, Result};
use crate::providers::{
    AgentInfo, ConversationRef, ProviderEvent, ProviderEventKind, WebhookRejection,
};
use crate::signature::verify_sha256_header;
use crate::time::parse_rfc3339_ms;

use super::api::GenesysCredentials;

/// `X-Hub-Signature-256: sha256=<base64 HMAC-SHA256(secret, raw body)>` [V DEV-validate].
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Verifies the signature with the current or the previous secret.
pub fn authenticate(
    creds: &GenesysCredentials,
    signature: Option<&str>,
    body: &[u8],
) -> std::result::Result<(), WebhookRejection> {
    let Some(signature) = signature else {
        return Err(WebhookRejection::Unauthenticated(
            "missing X-Hub-Signature-256",
        ));
    };
    let mut secrets = vec![creds.webhook_secret.expose_secret().as_bytes()];
    if let Some(prev) = &creds.webhook_secret_previous {
        secrets.push(prev.expose_secret().as_bytes());
    }
    if verify_sha256_header(signature, body, secrets) {
        Ok(())
    } else {
        Err(WebhookRejection::Unauthenticated("bad X-Hub-Signature-256"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Party {
    id: Option<String>,
    nickname: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Channel {
    message_id: Option<String>,
    to: Option<Party>,
    from: Option<Party>,
    /// When the message was sent (RFC 3339).
    time: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypingInfo {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageEvent {
    event_type: String,
    typing: Option<TypingInfo>,
}

/// `OpenNormalizedMessage` as Genesys sends it [V PY-SDK; DGM payload.txt].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutboundMessage {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    direction: Option<String>,
    originating_entity: Option<String>,
    conversation_id: Option<String>,
    channel: Option<Channel>,
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    events: Vec<MessageEvent>,
    status: Option<String>,
}

/// Parses one webhook body. The signature has already been checked.
pub fn parse(body: &[u8]) -> Result<Vec<ProviderEvent>> {
    let msg: OutboundMessage = serde_json::from_slice(body)
        .map_err(|e| HandoffError::invalid(format!("malformed Genesys webhook: {e}")))?;
    let channel = msg.channel.as_ref();
    let dedupe_key = msg
        .id
        .clone()
        .or_else(|| channel.and_then(|c| c.message_id.clone()))
        .ok_or_else(|| HandoffError::invalid("Genesys webhook without id"))?;
    let conversation = match (
        &msg.conversation_id,
        channel
            .and_then(|c| c.to.as_ref())
            .and_then(|t| t.id.as_deref()),
    ) {
        (Some(cid), _) => ConversationRef::Provider(cid.clone()),
        (None, Some(to)) => ConversationRef::Session(SessionId::parse(to)?),
        (None, None) => {
            return Err(HandoffError::invalid(
                "Genesys webhook names no conversation",
            ))
        }
    };
    let agent = AgentInfo {
        id: None,
        display_name: channel
            .and_then(|c| c.from.as_ref())
            .and_then(|f| f.nickname.clone()),
    };
    let outbound = msg.direction.as_deref().is_none_or(|d| d == "Outbound");
    let kind = match msg.kind.as_str() {
        _ if !outbound => ProviderEventKind::Ignored("inbound echo"),
        "Text" | "Structured" => {
            let text = message_text(&msg);
            if text.is_empty() {
                ProviderEventKind::Ignored("no text or attachment")
            } else {
                ProviderEventKind::AgentMessage {
                    message_id: dedupe_key.clone(),
                    text,
                    agent,
                    from_bot: msg.originating_entity.as_deref() == Some("Bot"),
                    sent_at_ms: channel
                        .and_then(|c| c.time.as_deref())
                        .and_then(parse_rfc3339_ms),
                }
            }
        }
        "Event" => {
            let typing_on = msg.events.iter().any(|e| {
                e.event_type == "Typing"
                    && e.typing
                        .as_ref()
                        .and_then(|t| t.kind.as_deref())
                        .unwrap_or("On")
                        == "On"
            });
            if typing_on {
                ProviderEventKind::AgentTyping(agent)
            } else {
                ProviderEventKind::Ignored("event other than typing")
            }
        }
        "Receipt" => {
            if msg.status.as_deref() == Some("Failed") {
                tracing::warn!(message = %dedupe_key, "Genesys reports a customer message failed");
            }
            ProviderEventKind::Ignored("receipt")
        }
        _ => ProviderEventKind::Ignored("unsupported message type"),
    };
    Ok(vec![ProviderEvent {
        dedupe_key,
        conversation,
        kind,
    }])
}

/// Text, plus one line per attachment (name and link) so the customer sees it.
fn message_text(msg: &OutboundMessage) -> String {
    let mut parts: Vec<String> = msg.text.iter().filter(|t| !t.is_empty()).cloned().collect();
    for item in &msg.content {
        if let Some(att) = item.get("attachment") {
            let name = att
                .get("filename")
                .and_then(Value::as_str)
                .unwrap_or("attachment");
            let url = att.get("url").and_then(Value::as_str).unwrap_or("");
            parts.push(format!("[{name}] {url}").trim().to_owned());
        }
    }
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::hmac_sha256;
    use base64::Engine as _;
    use secrecy::SecretString;

    fn creds() -> GenesysCredentials {
        GenesysCredentials {
            region_domain: Some("mypurecloud.com".into()),
            api_base: None,
            login_base: None,
            client_id: "c".into(),
            client_secret: SecretString::from("s"),
            integration_id: "i".into(),
            webhook_secret: SecretString::from("current-secret-0123456789"),
            webhook_secret_previous: Some(SecretString::from("previous-secret-0123456789")),
        }
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        format!(
            "sha256={}",
            base64::engine::general_purpose::STANDARD.encode(hmac_sha256(secret.as_bytes(), body))
        )
    }

    const AGENT_TEXT: &str = r#"{"id":"8085cbb3f778","type":"Text","text":"Hi Ada, I can help","direction":"Outbound","originatingEntity":"Human","conversationId":"1734d888","channel":{"id":"int-1","platform":"Open","type":"Private","messageId":"8085cbb3f778","to":{"id":"conv-8f2c","idType":"Opaque"},"from":{"id":"int-1","idType":"Opaque","nickname":"Sam"},"metadata":{"subType":"None"},"time":"2026-03-25T13:20:05.493Z"}}"#;

    #[test]
    fn signed_with_current_or_previous_secret_is_accepted() {
        let body = AGENT_TEXT.as_bytes();
        assert!(authenticate(
            &creds(),
            Some(&sign("current-secret-0123456789", body)),
            body
        )
        .is_ok());
        assert!(authenticate(
            &creds(),
            Some(&sign("previous-secret-0123456789", body)),
            body
        )
        .is_ok());
        assert!(authenticate(&creds(), Some(&sign("someone-else", body)), body).is_err());
        assert!(authenticate(&creds(), None, body).is_err());
    }

    #[test]
    fn agent_text_maps_to_message() {
        let events = parse(AGENT_TEXT.as_bytes()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].dedupe_key, "8085cbb3f778");
        assert_eq!(
            events[0].conversation,
            ConversationRef::Provider("1734d888".into())
        );
        match &events[0].kind {
            ProviderEventKind::AgentMessage {
                text,
                agent,
                from_bot,
                sent_at_ms,
                ..
            } => {
                assert_eq!(text, "Hi Ada, I can help");
                assert_eq!(agent.display_name.as_deref(), Some("Sam"));
                assert!(!from_bot);
                assert_eq!(*sent_at_ms, Some(1_774_444_805_493), "channel.time");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn typing_event_maps_to_typing() {
        let body = br#"{"id":"e1","type":"Event","direction":"Outbound","channel":{"to":{"id":"conv-1"}},"events":[{"eventType":"Typing","typing":{"type":"On","duration":5000}}]}"#;
        let events = parse(body).unwrap();
        assert_eq!(
            events[0].conversation,
            ConversationRef::Session(SessionId::parse("conv-1").unwrap())
        );
        assert!(matches!(events[0].kind, ProviderEventKind::AgentTyping(_)));
    }

    #[test]
    fn bot_attachment_receipt_and_echo() {
        let bot = br#"{"id":"b1","type":"Text","text":"Menu","direction":"Outbound","originatingEntity":"Bot","conversationId":"c"}"#;
        assert!(matches!(
            parse(bot).unwrap()[0].kind,
            ProviderEventKind::AgentMessage { from_bot: true, .. }
        ));
        let att = br#"{"id":"a1","type":"Text","direction":"Outbound","conversationId":"c","content":[{"contentType":"Attachment","attachment":{"filename":"x.png","url":"https://dl/x.png"}}]}"#;
        match &parse(att).unwrap()[0].kind {
            ProviderEventKind::AgentMessage { text, .. } => {
                assert_eq!(text, "[x.png] https://dl/x.png")
            }
            other => panic!("{other:?}"),
        }
        let receipt = br#"{"id":"r1","type":"Receipt","status":"Delivered","direction":"Outbound","conversationId":"c"}"#;
        assert_eq!(
            parse(receipt).unwrap()[0].kind,
            ProviderEventKind::Ignored("receipt")
        );
        let echo =
            br#"{"id":"x","type":"Text","text":"hi","direction":"Inbound","conversationId":"c"}"#;
        assert_eq!(
            parse(echo).unwrap()[0].kind,
            ProviderEventKind::Ignored("inbound echo")
        );
    }

    #[test]
    fn malformed_bodies_are_invalid_requests() {
        for body in [
            &b"not json"[..],
            b"{}",
            br#"{"type":"Text"}"#,
            br#"{"id":"x","type":"Text"}"#,
        ] {
            assert_eq!(
                parse(body).unwrap_err().code(),
                "invalid_request",
                "{body:?}"
            );
        }
    }
}
