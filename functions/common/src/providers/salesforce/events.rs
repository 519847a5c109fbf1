//! Conversation entries → platform-neutral events (spec §2.4, §5). The same
//! mapping serves SSE frames (`entryPayload` a JSON string) and list-entries
//! items (`entryPayload` an object), and both give an entry the same dedupe
//! key, so an event seen on the stream and again on reconciliation is one.

use serde_json::Value;

use crate::events::EndedBy;
use crate::providers::{AgentInfo, ConversationRef, ProviderEvent, ProviderEventKind};

/// SSE keep-alive event name [V TP parsers].
pub const PING_EVENT: &str = "ping";
/// What the stream says when the token has expired [V BP].
pub const JWT_EXPIRED_TEXT: &str = "Jwt is expired";

/// What the holder must remember between frames of one conversation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EntryState {
    /// A `RoutingResult` of type Transfer arrived: the next agent removal is a transfer.
    pub transfer_pending: bool,
}

/// An entry type, from an SSE event name or an entry's `entryType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Message,
    ParticipantChanged,
    TypingStarted,
    TypingStopped,
    RoutingResult,
    SessionStatusChanged,
    CloseConversation,
    Other,
}

impl EntryKind {
    pub fn from_event_name(name: &str) -> Self {
        match name {
            "CONVERSATION_MESSAGE" => Self::Message,
            "CONVERSATION_PARTICIPANT_CHANGED" => Self::ParticipantChanged,
            "CONVERSATION_TYPING_STARTED_INDICATOR" => Self::TypingStarted,
            "CONVERSATION_TYPING_STOPPED_INDICATOR" => Self::TypingStopped,
            "CONVERSATION_ROUTING_RESULT" => Self::RoutingResult,
            "CONVERSATION_SESSION_STATUS_CHANGED" => Self::SessionStatusChanged,
            "CONVERSATION_CLOSE_CONVERSATION" => Self::CloseConversation,
            _ => Self::Other,
        }
    }

    pub fn from_entry_type(entry_type: &str) -> Self {
        match entry_type {
            "Message" => Self::Message,
            "ParticipantChanged" => Self::ParticipantChanged,
            "TypingStartedIndicator" => Self::TypingStarted,
            "TypingStoppedIndicator" => Self::TypingStopped,
            "RoutingResult" => Self::RoutingResult,
            "SessionStatusChanged" => Self::SessionStatusChanged,
            "CloseConversation" => Self::CloseConversation,
            _ => Self::Other,
        }
    }
}

/// `entryPayload` as an object, whether sent as a string (SSE) or an object (list).
fn payload(entry: &Value) -> Value {
    match &entry["entryPayload"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    }
}

fn ended_by_role(role: &str) -> EndedBy {
    match role {
        "EndUser" => EndedBy::User,
        "Agent" | "Supervisor" => EndedBy::Agent,
        _ => EndedBy::System,
    }
}

/// Maps one entry of `conversation_id`; `System`/`Router` messages map to nothing.
pub fn map_entry(
    conversation_id: &str,
    kind: EntryKind,
    entry: &Value,
    state: &mut EntryState,
) -> Vec<ProviderEvent> {
    let identifier = entry["identifier"]
        .as_str()
        .or_else(|| entry["id"].as_str())
        .unwrap_or("-");
    let role = entry["sender"]["role"].as_str().unwrap_or_default();
    let sender = AgentInfo {
        id: entry["sender"]["subject"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        display_name: entry["senderDisplayName"].as_str().map(str::to_owned),
    };
    let p = payload(entry);
    let sent_at_ms = entry["transcriptedTimestamp"]
        .as_i64()
        .or(entry["clientTimestamp"].as_i64());
    let one = |suffix: &str, kind: ProviderEventKind| ProviderEvent {
        dedupe_key: format!("entry:{conversation_id}:{identifier}{suffix}"),
        conversation: ConversationRef::Provider(conversation_id.to_owned()),
        kind,
    };
    let kind = match kind {
        EntryKind::Message => {
            let static_content = &p["abstractMessage"]["staticContent"];
            let text = static_content["text"].as_str().map(str::to_owned);
            match (role, text) {
                ("EndUser", _) => ProviderEventKind::Ignored("our own message echoed"),
                ("Agent" | "Supervisor" | "Chatbot", Some(text)) => {
                    ProviderEventKind::AgentMessage {
                        message_id: identifier.to_owned(),
                        text,
                        agent: sender,
                        from_bot: role == "Chatbot",
                        sent_at_ms,
                    }
                }
                ("Agent" | "Supervisor" | "Chatbot", None) => ProviderEventKind::AgentMessage {
                    message_id: identifier.to_owned(),
                    text: format!(
                        "[{} message not shown here]",
                        static_content["formatType"]
                            .as_str()
                            .or_else(|| p["abstractMessage"]["messageType"].as_str())
                            .unwrap_or("unsupported")
                    ),
                    agent: sender,
                    from_bot: role == "Chatbot",
                    sent_at_ms,
                },
                _ => ProviderEventKind::Ignored("system or router message"),
            }
        }
        EntryKind::ParticipantChanged => {
            let changes = p["entries"].as_array().cloned().unwrap_or_default();
            let mut out = Vec::new();
            for (i, change) in changes.iter().enumerate() {
                let participant = &change["participant"];
                if participant["role"] != "Agent" && participant["role"] != "Supervisor" {
                    continue; // bots and routers joining are not a live agent
                }
                let agent = AgentInfo {
                    id: participant["subject"].as_str().map(str::to_owned),
                    display_name: change["displayName"].as_str().map(str::to_owned),
                };
                let kind = match change["operation"].as_str() {
                    Some("add") => ProviderEventKind::AgentJoined(agent),
                    Some("remove") => {
                        let transfer = std::mem::take(&mut state.transfer_pending);
                        ProviderEventKind::AgentLeft { agent, transfer }
                    }
                    _ => continue,
                };
                out.push(one(&format!(":{i}"), kind));
            }
            return out;
        }
        EntryKind::TypingStarted if matches!(role, "Agent" | "Supervisor") => {
            ProviderEventKind::AgentTyping(sender)
        }
        EntryKind::TypingStarted | EntryKind::TypingStopped => {
            ProviderEventKind::Ignored("typing off or not an agent")
        }
        EntryKind::RoutingResult => {
            let failure = p["failureType"].as_str().unwrap_or("None");
            match p["routingType"].as_str() {
                Some("Initial") if failure != "None" => ProviderEventKind::Ended(EndedBy::System),
                Some("Transfer") if failure == "None" => {
                    state.transfer_pending = true;
                    ProviderEventKind::Ignored("transfer routed")
                }
                _ => ProviderEventKind::Ignored("routing result"),
            }
        }
        EntryKind::SessionStatusChanged => match p["sessionStatus"].as_str() {
            Some("Ended") => ProviderEventKind::Ended(ended_by_role(
                p["sessionEndedByRole"].as_str().unwrap_or_default(),
            )),
            _ => ProviderEventKind::Ignored("session status"),
        },
        EntryKind::CloseConversation => ProviderEventKind::Ended(EndedBy::User),
        EntryKind::Other => ProviderEventKind::Ignored("entry type not mapped"),
    };
    vec![one("", kind)]
}

/// What one SSE event says.
#[derive(Debug, PartialEq)]
pub enum Frame {
    KeepAlive,
    /// The token behind the stream expired: renew and reconnect.
    TokenExpired,
    Events(Vec<ProviderEvent>),
    /// Another conversation of the same subject, or something unparseable.
    Other,
}

/// Parses one SSE event (`event:` name and `data:` JSON) for `conversation_id`.
pub fn parse_sse(conversation_id: &str, event: &str, data: &str, state: &mut EntryState) -> Frame {
    if event == PING_EVENT {
        return Frame::KeepAlive;
    }
    if data.contains(JWT_EXPIRED_TEXT) {
        return Frame::TokenExpired;
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return Frame::Other;
    };
    if v["conversationId"].as_str() != Some(conversation_id) {
        return Frame::Other;
    }
    Frame::Events(map_entry(
        conversation_id,
        EntryKind::from_event_name(event),
        &v["conversationEntry"],
        state,
    ))
}

/// Events implied by a conversation's recent entries (oldest first).
pub fn reconcile_entries(conversation_id: &str, entries: &[Value]) -> Vec<ProviderEvent> {
    let mut state = EntryState::default();
    entries
        .iter()
        .flat_map(|e| {
            let kind = EntryKind::from_entry_type(e["entryType"].as_str().unwrap_or_default());
            map_entry(conversation_id, kind, e, &mut state)
        })
        .filter(|ev| !matches!(ev.kind, ProviderEventKind::Ignored(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CID: &str = "5b0f4a2e-8a51-4d2b-9a43-2f1a4e0c7d11";

    fn sse(entry_type: &str, role: &str, payload: Value) -> String {
        json!({
            "channelPlatformKey": "k", "channelType": "embedded_messaging",
            "conversationId": CID,
            "conversationEntry": {
                "identifier": "e-1", "entryType": entry_type, "senderDisplayName": "Ada (Agent)",
                "sender": {"role": role, "appType": "agent", "subject": "005A"},
                "entryPayload": payload.to_string(),
                "clientTimestamp": 1, "transcriptedTimestamp": 2, "relatedRecords": []
            }
        })
        .to_string()
    }

    fn kinds(frame: Frame) -> Vec<ProviderEventKind> {
        match frame {
            Frame::Events(evs) => evs.into_iter().map(|e| e.kind).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn message(text: &str) -> Value {
        json!({"entryType": "Message", "id": "e-1", "abstractMessage": {
            "messageType": "StaticContentMessage", "id": "e-1",
            "staticContent": {"formatType": "Text", "text": text}}})
    }

    #[test]
    fn agent_bot_and_echoed_messages() {
        let mut st = EntryState::default();
        let data = sse("Message", "Agent", message("Hi, I'm Ada"));
        let Frame::Events(evs) = parse_sse(CID, "CONVERSATION_MESSAGE", &data, &mut st) else {
            panic!()
        };
        assert_eq!(evs[0].dedupe_key, format!("entry:{CID}:e-1"));
        assert_eq!(evs[0].conversation, ConversationRef::Provider(CID.into()));
        assert!(
            matches!(&evs[0].kind, ProviderEventKind::AgentMessage { message_id, text, agent, from_bot: false, .. }
            if message_id == "e-1" && text == "Hi, I'm Ada" && agent.display_name.as_deref() == Some("Ada (Agent)"))
        );

        let bot = sse("Message", "Chatbot", message("beep"));
        assert!(matches!(
            kinds(parse_sse(CID, "CONVERSATION_MESSAGE", &bot, &mut st))[0],
            ProviderEventKind::AgentMessage { from_bot: true, .. }
        ));
        let echo = sse("Message", "EndUser", message("mine"));
        assert!(matches!(
            kinds(parse_sse(CID, "CONVERSATION_MESSAGE", &echo, &mut st))[0],
            ProviderEventKind::Ignored(_)
        ));
        let attachment = sse(
            "Message",
            "Agent",
            json!({"abstractMessage": {"messageType": "StaticContentMessage",
                "staticContent": {"formatType": "Attachments"}}}),
        );
        assert!(
            matches!(&kinds(parse_sse(CID, "CONVERSATION_MESSAGE", &attachment, &mut st))[0],
            ProviderEventKind::AgentMessage { text, .. } if text.contains("Attachments"))
        );
    }

    #[test]
    fn participants_typing_and_transfer() {
        let mut st = EntryState::default();
        let add = sse(
            "ParticipantChanged",
            "System",
            json!({"entries": [
                {"operation": "add", "participant": {"role": "Chatbot", "subject": "bot"}, "displayName": "Bot"},
                {"operation": "add", "participant": {"role": "Agent", "subject": "005A"}, "displayName": "Sam"}]}),
        );
        let Frame::Events(evs) = parse_sse(CID, "CONVERSATION_PARTICIPANT_CHANGED", &add, &mut st)
        else {
            panic!()
        };
        assert_eq!(evs.len(), 1, "the bot is not a live agent");
        assert_eq!(evs[0].dedupe_key, format!("entry:{CID}:e-1:1"));
        assert!(
            matches!(&evs[0].kind, ProviderEventKind::AgentJoined(a) if a.display_name.as_deref() == Some("Sam"))
        );

        let typing = sse("TypingStartedIndicator", "Agent", json!({}));
        assert!(matches!(
            kinds(parse_sse(
                CID,
                "CONVERSATION_TYPING_STARTED_INDICATOR",
                &typing,
                &mut st
            ))[0],
            ProviderEventKind::AgentTyping(_)
        ));
        let stopped = sse("TypingStoppedIndicator", "Agent", json!({}));
        assert!(matches!(
            kinds(parse_sse(
                CID,
                "CONVERSATION_TYPING_STOPPED_INDICATOR",
                &stopped,
                &mut st
            ))[0],
            ProviderEventKind::Ignored(_)
        ));

        let routed = sse(
            "RoutingResult",
            "Router",
            json!({"routingType": "Transfer", "failureType": "None"}),
        );
        parse_sse(CID, "CONVERSATION_ROUTING_RESULT", &routed, &mut st);
        let remove = sse(
            "ParticipantChanged",
            "System",
            json!({"entries": [{"operation": "remove", "participant": {"role": "Agent", "subject": "005A"}, "displayName": "Sam"}]}),
        );
        assert!(matches!(
            kinds(parse_sse(
                CID,
                "CONVERSATION_PARTICIPANT_CHANGED",
                &remove,
                &mut st
            ))[0],
            ProviderEventKind::AgentLeft { transfer: true, .. }
        ));
        assert!(matches!(
            kinds(parse_sse(
                CID,
                "CONVERSATION_PARTICIPANT_CHANGED",
                &remove,
                &mut st
            ))[0],
            ProviderEventKind::AgentLeft {
                transfer: false,
                ..
            }
        ));
    }

    #[test]
    fn session_end_close_and_routing_failure() {
        let mut st = EntryState::default();
        let ended = |role: &str| {
            sse(
                "SessionStatusChanged",
                "System",
                json!({"sessionStatus": "Ended", "sessionEndedByRole": role}),
            )
        };
        for (role, by) in [
            ("Agent", EndedBy::Agent),
            ("EndUser", EndedBy::User),
            ("System", EndedBy::System),
        ] {
            assert_eq!(
                kinds(parse_sse(
                    CID,
                    "CONVERSATION_SESSION_STATUS_CHANGED",
                    &ended(role),
                    &mut st
                )),
                vec![ProviderEventKind::Ended(by)]
            );
        }
        let waiting = sse(
            "SessionStatusChanged",
            "System",
            json!({"sessionStatus": "Waiting"}),
        );
        assert!(matches!(
            kinds(parse_sse(
                CID,
                "CONVERSATION_SESSION_STATUS_CHANGED",
                &waiting,
                &mut st
            ))[0],
            ProviderEventKind::Ignored(_)
        ));
        let close = sse("CloseConversation", "EndUser", json!({}));
        assert_eq!(
            kinds(parse_sse(
                CID,
                "CONVERSATION_CLOSE_CONVERSATION",
                &close,
                &mut st
            )),
            vec![ProviderEventKind::Ended(EndedBy::User)]
        );
        let failed = sse(
            "RoutingResult",
            "Router",
            json!({"routingType": "Initial", "failureType": "RoutingError"}),
        );
        assert_eq!(
            kinds(parse_sse(
                CID,
                "CONVERSATION_ROUTING_RESULT",
                &failed,
                &mut st
            )),
            vec![ProviderEventKind::Ended(EndedBy::System)]
        );
        let ok = sse(
            "RoutingResult",
            "Router",
            json!({"routingType": "Initial", "failureType": "None"}),
        );
        assert!(matches!(
            kinds(parse_sse(CID, "CONVERSATION_ROUTING_RESULT", &ok, &mut st))[0],
            ProviderEventKind::Ignored(_)
        ));
    }

    #[test]
    fn pings_expiry_unknown_and_foreign_frames() {
        let mut st = EntryState::default();
        assert_eq!(parse_sse(CID, "ping", "", &mut st), Frame::KeepAlive);
        assert_eq!(
            parse_sse(CID, "error", "Jwt is expired", &mut st),
            Frame::TokenExpired
        );
        assert_eq!(parse_sse(CID, "x", "not json", &mut st), Frame::Other);
        let other = sse("Message", "Agent", message("hi")).replace(CID, "another");
        assert_eq!(
            parse_sse(CID, "CONVERSATION_MESSAGE", &other, &mut st),
            Frame::Other
        );
        let unknown = sse("QueuePosition", "System", json!({"queuePosition": 3}));
        assert!(matches!(
            kinds(parse_sse(
                CID,
                "CONVERSATION_QUEUE_POSITION",
                &unknown,
                &mut st
            ))[0],
            ProviderEventKind::Ignored(_)
        ));
    }

    #[test]
    fn listed_entries_map_like_the_stream_with_the_same_keys() {
        let entries = vec![
            json!({"identifier": "e-1", "entryType": "ParticipantChanged",
                   "sender": {"role": "System"},
                   "entryPayload": {"entries": [{"operation": "add", "participant": {"role": "Agent", "subject": "005A"}, "displayName": "Sam"}]}}),
            json!({"identifier": "e-2", "entryType": "Message", "senderDisplayName": "Sam",
                   "sender": {"role": "Agent", "subject": "005A"}, "entryPayload": message("hello")}),
            json!({"identifier": "e-3", "entryType": "Message",
                   "sender": {"role": "EndUser"}, "entryPayload": message("mine")}),
        ];
        let evs = reconcile_entries(CID, &entries);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].dedupe_key, format!("entry:{CID}:e-1:0"));
        assert_eq!(evs[1].dedupe_key, format!("entry:{CID}:e-2"));
        let mut st = EntryState::default();
        let streamed = sse("Message", "Agent", message("hello")).replace("\"e-1\"", "\"e-2\"");
        let Frame::Events(s) = parse_sse(CID, "CONVERSATION_MESSAGE", &streamed, &mut st) else {
            panic!()
        };
        assert_eq!(s[0].dedupe_key, evs[1].dedupe_key);
    }
}
