//! Chat items from contact streaming (spec §6, §7, §10): the SNS record's
//! `Message` is the item JSON; customer echoes and agent-only items are dropped.

use serde_json::Value;

use crate::error::{HandoffError, Result};
use crate::events::EndedBy;
use crate::providers::{AgentInfo, ConversationRef, ProviderEvent, ProviderEventKind};
use crate::time::parse_rfc3339_ms;

const EVENT_PREFIX: &str = "application/vnd.amazonaws.connect.event.";

/// Maps one item to an event; classification by `ContentType` first [V CJS].
pub fn parse_item(item: &Value, visibility: Option<&str>) -> Result<ProviderEvent> {
    let id = item["Id"]
        .as_str()
        .ok_or_else(|| HandoffError::invalid("chat item without Id"))?;
    // InitialContactId is stable across transfers; ContactId changes [V DOC-SNS].
    let contact = item["InitialContactId"]
        .as_str()
        .or_else(|| item["ContactId"].as_str())
        .ok_or_else(|| HandoffError::invalid("chat item without ContactId"))?;
    let role = item["ParticipantRole"].as_str().unwrap_or("");
    let content_type = item["ContentType"].as_str().unwrap_or("");
    let event = content_type.strip_prefix(EVENT_PREFIX);
    let agent = AgentInfo {
        id: item["ParticipantId"].as_str().map(str::to_owned),
        display_name: item["DisplayName"].as_str().map(str::to_owned),
    };
    let kind = match (event, role) {
        (Some("chat.ended"), _) => ProviderEventKind::Ended(EndedBy::Agent),
        (Some("participant.autodisconnection"), "CUSTOMER") => {
            ProviderEventKind::Ended(EndedBy::Timeout)
        }
        (_, "CUSTOMER") => ProviderEventKind::Ignored("customer echo"),
        _ if visibility == Some("AGENT") => ProviderEventKind::Ignored("agent-only item"),
        (Some("typing"), "AGENT") => ProviderEventKind::AgentTyping(agent),
        (Some("participant.joined"), "AGENT") => ProviderEventKind::AgentJoined(agent),
        (Some("participant.left"), "AGENT") => ProviderEventKind::AgentLeft {
            agent,
            transfer: false,
        },
        (Some(_), _) => ProviderEventKind::Ignored("event with no client event"),
        (None, "AGENT" | "SYSTEM" | "CUSTOM_BOT" | "SUPERVISOR") => {
            let text = match item["Type"].as_str() {
                Some("ATTACHMENT") => format!(
                    "[attachment] {}",
                    item["Attachments"][0]["AttachmentName"]
                        .as_str()
                        .unwrap_or("file")
                ),
                _ => item["Content"].as_str().unwrap_or_default().to_owned(),
            };
            if text.is_empty() {
                ProviderEventKind::Ignored("empty message")
            } else {
                ProviderEventKind::AgentMessage {
                    message_id: id.to_owned(),
                    text,
                    agent,
                    from_bot: role != "AGENT" && role != "SUPERVISOR",
                    sent_at_ms: item["AbsoluteTime"].as_str().and_then(parse_rfc3339_ms),
                }
            }
        }
        (None, _) => ProviderEventKind::Ignored("item from an unknown role"),
    };
    Ok(ProviderEvent {
        dedupe_key: id.to_owned(),
        conversation: ConversationRef::Provider(contact.to_owned()),
        kind,
    })
}

/// Parses the `Sns` object of a Lambda SNS record.
pub fn parse_sns(sns: &Value) -> Result<ProviderEvent> {
    let message = sns["Message"]
        .as_str()
        .ok_or_else(|| HandoffError::invalid("SNS record without Message"))?;
    let item: Value = serde_json::from_str(message)
        .map_err(|e| HandoffError::invalid(format!("SNS Message is not a chat item: {e}")))?;
    let visibility = sns["MessageAttributes"]["MessageVisibility"]["Value"].as_str();
    parse_item(&item, visibility)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sns(item: Value, visibility: &str) -> Value {
        json!({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t",
               "Message": item.to_string(),
               "MessageAttributes": {"MessageVisibility": {"Type": "String", "Value": visibility}}})
    }

    fn item(kind: &str, content_type: &str, role: &str) -> Value {
        json!({"AbsoluteTime": "2026-11-23T10:01:02.123Z", "Id": "i-1", "Type": kind,
               "ContentType": content_type, "Content": "Hi Ada", "ParticipantId": "p-9",
               "DisplayName": "Sam", "ParticipantRole": role, "InitialContactId": "c-1", "ContactId": "c-2"})
    }

    fn kind_of(v: Value) -> ProviderEventKind {
        parse_sns(&sns(v, "ALL")).unwrap().kind
    }

    #[test]
    fn agent_items_map_to_client_signals() {
        let msg = parse_sns(&sns(item("MESSAGE", "text/plain", "AGENT"), "ALL")).unwrap();
        assert_eq!(
            msg.conversation,
            ConversationRef::Provider("c-1".into()),
            "keyed on InitialContactId"
        );
        assert_eq!(msg.dedupe_key, "i-1");
        assert!(
            matches!(msg.kind, ProviderEventKind::AgentMessage { ref text, from_bot: false, .. } if text == "Hi Ada")
        );
        let ev = |s: &str| format!("{EVENT_PREFIX}{s}");
        assert!(matches!(
            kind_of(item("EVENT", &ev("typing"), "AGENT")),
            ProviderEventKind::AgentTyping(_)
        ));
        assert!(
            matches!(kind_of(item("EVENT", &ev("participant.joined"), "AGENT")),
            ProviderEventKind::AgentJoined(AgentInfo { display_name: Some(ref n), .. }) if n == "Sam")
        );
        assert!(matches!(
            kind_of(item("EVENT", &ev("participant.left"), "AGENT")),
            ProviderEventKind::AgentLeft { .. }
        ));
        assert_eq!(
            kind_of(item("EVENT", &ev("chat.ended"), "SYSTEM")),
            ProviderEventKind::Ended(EndedBy::Agent)
        );
        assert_eq!(
            kind_of(item(
                "EVENT",
                &ev("participant.autodisconnection"),
                "CUSTOMER"
            )),
            ProviderEventKind::Ended(EndedBy::Timeout)
        );
        assert!(matches!(
            kind_of(item("MESSAGE", "text/plain", "SYSTEM")),
            ProviderEventKind::AgentMessage { from_bot: true, .. }
        ));
    }

    #[test]
    fn echoes_and_agent_only_items_are_dropped() {
        assert_eq!(
            kind_of(item("MESSAGE", "text/plain", "CUSTOMER")),
            ProviderEventKind::Ignored("customer echo")
        );
        assert_eq!(
            kind_of(item("EVENT", &format!("{EVENT_PREFIX}typing"), "CUSTOMER")),
            ProviderEventKind::Ignored("customer echo")
        );
        assert_eq!(
            parse_sns(&sns(item("MESSAGE", "text/plain", "AGENT"), "AGENT"))
                .unwrap()
                .kind,
            ProviderEventKind::Ignored("agent-only item")
        );
    }

    #[test]
    fn malformed_records_are_invalid() {
        assert!(parse_sns(&json!({})).is_err());
        assert!(parse_sns(&json!({"Message": "not json"})).is_err());
        assert!(parse_sns(&json!({"Message": "{\"ContactId\":\"c\"}"})).is_err());
    }
}
