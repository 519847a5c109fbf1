//! Chat contacts: participants, chat items (spec §6), the state machine
//! (spec §9), the sim-only view and the agent actions the desktop triggers.
//!
//! State changes return the items they created; the caller hands them to
//! [`super::streaming::publish`] so they reach SNS and the WebSockets in order.

use super::streaming::{Delivery, SnsAttempt};
use super::websocket::WsCommand;
use super::{iso, ApiError, SimState};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::mpsc::UnboundedSender;

/// The desktop shows "customer is typing…" this long after a typing event.
const CUSTOMER_TYPING_WINDOW: Duration = Duration::from_secs(5);

pub(super) const TYPING: &str = "application/vnd.amazonaws.connect.event.typing";
pub(super) const PARTICIPANT_JOINED: &str =
    "application/vnd.amazonaws.connect.event.participant.joined";
pub(super) const PARTICIPANT_LEFT: &str =
    "application/vnd.amazonaws.connect.event.participant.left";
pub(super) const TRANSFER_SUCCEEDED: &str =
    "application/vnd.amazonaws.connect.event.transfer.succeeded";
pub(super) const CHAT_ENDED: &str = "application/vnd.amazonaws.connect.event.chat.ended";
pub(super) const MESSAGE_DELIVERED: &str =
    "application/vnd.amazonaws.connect.event.message.delivered";
pub(super) const MESSAGE_READ: &str = "application/vnd.amazonaws.connect.event.message.read";
pub(super) const CONNECTION_ACKNOWLEDGED: &str =
    "application/vnd.amazonaws.connect.event.connection.acknowledged";
pub(super) const TEXT_PLAIN: &str = "text/plain";
pub(super) const TEXT_MARKDOWN: &str = "text/markdown";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum Role {
    Agent,
    Customer,
    System,
}

impl Role {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "AGENT",
            Role::Customer => "CUSTOMER",
            Role::System => "SYSTEM",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ItemKind {
    Message,
    Event,
}

impl ItemKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ItemKind::Message => "MESSAGE",
            ItemKind::Event => "EVENT",
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Participant {
    pub(super) id: String,
    pub(super) display_name: String,
    pub(super) role: Role,
}

impl Participant {
    fn new(display_name: &str, role: Role) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            display_name: display_name.to_string(),
            role,
        }
    }
}

/// One chat item: SNS message body, WebSocket `content`, transcript entry.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) id: String,
    pub(super) time: OffsetDateTime,
    pub(super) at: String,
    pub(super) kind: ItemKind,
    pub(super) content_type: String,
    pub(super) content: Option<String>,
    /// None for `chat.ended` (spec §6: the role may be missing).
    pub(super) participant: Option<Participant>,
    pub(super) contact_id: String,
    pub(super) initial_contact_id: String,
}

impl Item {
    pub(super) fn role(&self) -> Option<Role> {
        self.participant.as_ref().map(|p| p.role)
    }

    /// `MessageVisibility` attribute: every item the simulator creates is seen by all.
    pub(super) fn visibility(&self) -> &'static str {
        "ALL"
    }

    /// Typing and receipts are live-only; they are not kept in the transcript [U].
    fn in_transcript(&self) -> bool {
        !matches!(
            self.content_type.as_str(),
            TYPING | MESSAGE_DELIVERED | MESSAGE_READ | CONNECTION_ACKNOWLEDGED
        )
    }

    /// The item in Connect's PascalCase shape.
    pub(super) fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("AbsoluteTime".into(), json!(self.at));
        if let Some(c) = &self.content {
            m.insert("Content".into(), json!(c));
        }
        m.insert("ContentType".into(), json!(self.content_type));
        m.insert("Id".into(), json!(self.id));
        m.insert("Type".into(), json!(self.kind.as_str()));
        if let Some(p) = &self.participant {
            m.insert("ParticipantId".into(), json!(p.id));
            m.insert("DisplayName".into(), json!(p.display_name));
            m.insert("ParticipantRole".into(), json!(p.role.as_str()));
        }
        m.insert("InitialContactId".into(), json!(self.initial_contact_id));
        m.insert("ContactId".into(), json!(self.contact_id));
        Value::Object(m)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ContactState {
    /// Started, customer not connected yet: the flow has not run.
    Created,
    Queued,
    Active,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct MessageRecord {
    pub(super) id: String,
    pub(super) direction: Direction,
    pub(super) text: String,
    pub(super) at: String,
    pub(super) role: Role,
    pub(super) sender: String,
    pub(super) content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) client_token: Option<String>,
    /// MessageProcessingStatus when a fault made it FAILED or REJECTED (not delivered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) status: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ReceiptRecord {
    pub(super) message_id: String,
    pub(super) status: &'static str,
    pub(super) at: String,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct EventRecord {
    pub(super) id: String,
    pub(super) content_type: String,
    pub(super) role: Option<Role>,
    pub(super) name: Option<String>,
    pub(super) at: String,
}

/// One StartContactStreaming.
#[derive(Debug, Clone)]
pub(super) struct StreamingEndpoint {
    pub(super) id: String,
    pub(super) topic_arn: String,
    pub(super) client_token: String,
}

/// A ClientToken seen by a participant call: the request it came with and the answer.
#[derive(Debug, Clone)]
pub(super) struct Replay {
    pub(super) request: Value,
    pub(super) response: Value,
}

/// An open participant socket.
#[derive(Debug)]
pub(super) struct WsSink {
    pub(super) conn_id: u64,
    pub(super) tx: UnboundedSender<WsCommand>,
    /// Items are written only after `aws/subscribe` to `aws/chat`.
    pub(super) subscribed: bool,
}

/// Why a contact ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum EndReason {
    Customer,
    Agent,
    StopContact,
    CustomerNeverConnected,
    DurationExpired,
}

/// One chat contact (a chain of ContactIds after transfers), owned by one instance.
#[derive(Debug)]
pub(super) struct Contact {
    pub(super) id: String,
    pub(super) instance_id: String,
    pub(super) contact_flow_id: String,
    pub(super) queue: String,
    /// The chain: StartChatContact's ContactId, then one per transfer.
    pub(super) contact_ids: Vec<String>,
    pub(super) customer: Participant,
    pub(super) customer_id: Option<String>,
    pub(super) attributes: BTreeMap<String, String>,
    pub(super) supported_content_types: Vec<String>,
    pub(super) state: ContactState,
    pub(super) customer_connected: bool,
    pub(super) agent: Option<Participant>,
    system: Participant,
    pub(super) transcript: Vec<Item>,
    pub(super) messages: Vec<MessageRecord>,
    pub(super) events: Vec<EventRecord>,
    pub(super) receipts: Vec<ReceiptRecord>,
    pub(super) message_tokens: HashMap<String, Replay>,
    pub(super) event_tokens: HashMap<String, Replay>,
    pub(super) disconnect_token: Option<String>,
    pub(super) duplicate_inbound_message_ids: Vec<String>,
    pub(super) customer_typing_at: Option<Instant>,
    pub(super) streaming: Vec<StreamingEndpoint>,
    pub(super) sns_attempts: Vec<SnsAttempt>,
    pub(super) sns_queue: Option<UnboundedSender<Delivery>>,
    pub(super) ws_sinks: Vec<WsSink>,
    pub(super) created_at: String,
    pub(super) ended_at: Option<String>,
    pub(super) end_reason: Option<EndReason>,
}

impl Contact {
    pub(super) fn new(
        instance_id: &str,
        contact_flow_id: &str,
        queue: &str,
        display_name: &str,
        attributes: BTreeMap<String, String>,
        supported_content_types: Vec<String>,
    ) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        Self {
            contact_ids: vec![id.clone()],
            id,
            instance_id: instance_id.to_string(),
            contact_flow_id: contact_flow_id.to_string(),
            queue: queue.to_string(),
            customer: Participant::new(display_name, Role::Customer),
            customer_id: None,
            attributes,
            supported_content_types,
            state: ContactState::Created,
            customer_connected: false,
            agent: None,
            system: Participant::new("SYSTEM_MESSAGE", Role::System),
            transcript: Vec::new(),
            messages: Vec::new(),
            events: Vec::new(),
            receipts: Vec::new(),
            message_tokens: HashMap::new(),
            event_tokens: HashMap::new(),
            disconnect_token: None,
            duplicate_inbound_message_ids: Vec::new(),
            customer_typing_at: None,
            streaming: Vec::new(),
            sns_attempts: Vec::new(),
            sns_queue: None,
            ws_sinks: Vec::new(),
            created_at: super::now_iso(),
            ended_at: None,
            end_reason: None,
        }
    }

    pub(super) fn current_contact_id(&self) -> &str {
        self.contact_ids.last().unwrap_or(&self.id)
    }

    pub(super) fn is_ended(&self) -> bool {
        self.state == ContactState::Ended
    }

    /// Creates an item stamped with the current ContactId and records it.
    pub(super) fn item(
        &mut self,
        kind: ItemKind,
        content_type: &str,
        content: Option<&str>,
        participant: Option<Participant>,
    ) -> Item {
        let time = OffsetDateTime::now_utc();
        let item = Item {
            id: uuid::Uuid::new_v4().to_string(),
            at: iso(time),
            time,
            kind,
            content_type: content_type.to_string(),
            content: content.map(str::to_owned),
            participant,
            contact_id: self.current_contact_id().to_string(),
            initial_contact_id: self.id.clone(),
        };
        if item.in_transcript() {
            self.transcript.push(item.clone());
        }
        if kind == ItemKind::Event && content_type != TYPING {
            self.events.push(EventRecord {
                id: item.id.clone(),
                content_type: content_type.to_string(),
                role: item.role(),
                name: item.participant.as_ref().map(|p| p.display_name.clone()),
                at: item.at.clone(),
            });
        }
        item
    }

    fn event(&mut self, content_type: &str, participant: Option<Participant>) -> Item {
        self.item(ItemKind::Event, content_type, None, participant)
    }

    /// A MESSAGE item from anyone, recorded for the view.
    pub(super) fn message(
        &mut self,
        participant: Participant,
        content_type: &str,
        text: &str,
        client_token: Option<&str>,
    ) -> Item {
        let item = self.item(
            ItemKind::Message,
            content_type,
            Some(text),
            Some(participant.clone()),
        );
        self.messages.push(MessageRecord {
            id: item.id.clone(),
            direction: match participant.role {
                Role::Customer => Direction::Inbound,
                _ => Direction::Outbound,
            },
            text: text.to_string(),
            at: item.at.clone(),
            role: participant.role,
            sender: participant.display_name,
            content_type: content_type.to_string(),
            client_token: client_token.map(str::to_owned),
            status: None,
        });
        item
    }

    /// The customer connects (ConnectParticipant or WebSocket): the flow runs
    /// and the contact is queued. No-op when already connected.
    pub(super) fn connect_customer(&mut self) -> Vec<Item> {
        if self.customer_connected || self.is_ended() {
            return Vec::new();
        }
        self.customer_connected = true;
        self.state = ContactState::Queued;
        let customer = self.customer.clone();
        vec![self.event(PARTICIPANT_JOINED, Some(customer))]
    }

    pub(super) fn customer_typing(&self, now: Instant) -> bool {
        self.customer_typing_at
            .is_some_and(|t| now.duration_since(t) < CUSTOMER_TYPING_WINDOW)
    }

    /// Ends the contact: `participant.left` of whoever leaves, then `chat.ended`.
    pub(super) fn end(&mut self, reason: EndReason) -> Vec<Item> {
        if self.is_ended() {
            return Vec::new();
        }
        let mut items = Vec::new();
        match reason {
            EndReason::Customer => {
                let customer = self.customer.clone();
                items.push(self.event(PARTICIPANT_LEFT, Some(customer)));
            }
            _ => {
                if let Some(agent) = self.agent.clone() {
                    items.push(self.event(PARTICIPANT_LEFT, Some(agent)));
                }
            }
        }
        self.agent = None;
        items.push(self.event(CHAT_ENDED, None));
        self.state = ContactState::Ended;
        self.customer_connected = false;
        self.ended_at = Some(super::now_iso());
        self.end_reason = Some(reason);
        items
    }

    /// Agent or system text (desktop). `system` sends as the SYSTEM participant.
    pub(super) fn agent_message(
        &mut self,
        text: &str,
        content_type: &str,
        system: bool,
    ) -> Result<Item, ApiError> {
        if text.trim().is_empty() {
            return Err(ApiError::invalid_request("text must not be empty"));
        }
        if ![TEXT_PLAIN, TEXT_MARKDOWN].contains(&content_type) {
            return Err(ApiError::invalid_request(
                "content_type must be text/plain or text/markdown",
            ));
        }
        if self.is_ended() {
            return Err(ApiError::conflict("Contact ended"));
        }
        let sender = if system {
            self.system.clone()
        } else {
            self.agent
                .clone()
                .ok_or_else(|| ApiError::conflict("No agent is connected"))?
        };
        Ok(self.message(sender, content_type, text, None))
    }

    pub(super) fn agent_typing(&mut self) -> Result<Item, ApiError> {
        let agent = self
            .agent
            .clone()
            .ok_or_else(|| ApiError::conflict("No agent is connected"))?;
        Ok(self.event(TYPING, Some(agent)))
    }

    pub(super) fn accept(&mut self, agent_name: &str) -> Result<Vec<Item>, ApiError> {
        match self.state {
            ContactState::Queued => {}
            ContactState::Created => {
                return Err(ApiError::conflict(
                    "The customer is not connected yet, so the contact is not queued",
                ))
            }
            other => {
                return Err(ApiError::conflict(format!(
                    "Contact is {other:?}, not queued"
                )))
            }
        }
        let agent = Participant::new(agent_name, Role::Agent);
        self.agent = Some(agent.clone());
        self.state = ContactState::Active;
        Ok(vec![self.event(PARTICIPANT_JOINED, Some(agent))])
    }

    pub(super) fn leave(&mut self) -> Result<Vec<Item>, ApiError> {
        let agent = match (self.state, self.agent.clone()) {
            (ContactState::Active, Some(a)) => a,
            _ => return Err(ApiError::conflict("No agent is connected")),
        };
        let item = self.event(PARTICIPANT_LEFT, Some(agent));
        self.agent = None;
        self.state = ContactState::Queued;
        Ok(vec![item])
    }

    /// `participant.left` and `transfer.succeeded` on the old ContactId, then
    /// `participant.joined` of the new agent on a new ContactId of the chain
    /// (spec §6: ContactId changes on transfer, InitialContactId stays).
    pub(super) fn transfer(&mut self, agent_name: &str) -> Result<Vec<Item>, ApiError> {
        let old = match (self.state, self.agent.clone()) {
            (ContactState::Active, Some(a)) => a,
            _ => return Err(ApiError::conflict("No agent is connected")),
        };
        let left = self.event(PARTICIPANT_LEFT, Some(old));
        let system = self.system.clone();
        let transferred = self.event(TRANSFER_SUCCEEDED, Some(system));
        self.contact_ids.push(uuid::Uuid::new_v4().to_string());
        let agent = Participant::new(agent_name, Role::Agent);
        self.agent = Some(agent.clone());
        let joined = self.event(PARTICIPANT_JOINED, Some(agent));
        Ok(vec![left, transferred, joined])
    }

    /// The sim-only view (`GET /sim/connect/conversations/{id}`).
    pub(super) fn view(&self, now: Instant) -> Value {
        json!({
            "id": self.id,
            "instance_id": self.instance_id,
            "contact_flow_id": self.contact_flow_id,
            "queue": self.queue,
            "contact_ids": self.contact_ids,
            "current_contact_id": self.current_contact_id(),
            "customer": {
                "id": self.customer.id,
                "display_name": self.customer.display_name,
                "customer_id": self.customer_id,
            },
            "context": self.attributes,
            "state": self.state,
            "agent": self.agent.as_ref().map(|a| json!({"name": a.display_name, "participant_id": a.id})),
            "customer_connected": self.customer_connected,
            "customer_typing": self.customer_typing(now),
            "supported_content_types": self.supported_content_types,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "messages": self.messages,
            "events": self.events,
            "receipts": self.receipts,
            "duplicate_inbound_message_ids": self.duplicate_inbound_message_ids,
            "streaming": self.streaming.iter().map(|s| s.topic_arn.clone()).collect::<Vec<_>>(),
            "sns_attempts": self.sns_attempts,
        })
    }
}

impl SimState {
    /// Registers a new contact and its ContactId.
    pub(super) fn add_contact(&mut self, contact: Contact) {
        self.contact_alias
            .insert(contact.id.clone(), contact.id.clone());
        self.contact_order.push(contact.id.clone());
        self.contacts.insert(contact.id.clone(), contact);
    }

    /// Runs an agent action and indexes any new ContactId it created.
    pub(super) fn agent_action(
        &mut self,
        cid: &str,
        action: impl FnOnce(&mut Contact) -> Result<Vec<Item>, ApiError>,
    ) -> Result<Vec<Item>, ApiError> {
        let contact = self.contact_mut(cid)?;
        let items = action(contact)?;
        let ids = contact.contact_ids.clone();
        for id in ids {
            self.contact_alias.insert(id, cid.to_string());
        }
        Ok(items)
    }

    /// Active contacts of an instance (for the concurrent-chats quota).
    pub(super) fn active_contacts(&self, instance_id: &str) -> usize {
        self.contacts
            .values()
            .filter(|c| c.instance_id == instance_id && !c.is_ended())
            .count()
    }
}

/// Where a transcript read starts (GetTranscript `StartPosition`).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum StartPosition {
    Default,
    Id(String),
    Time(OffsetDateTime),
    MostRecent(usize),
}

/// One GetTranscript page request, validated.
#[derive(Debug, Clone)]
pub(super) struct TranscriptQuery {
    pub(super) max_results: usize,
    pub(super) forward: bool,
    pub(super) ascending: bool,
    pub(super) start: StartPosition,
    /// From a NextToken: FORWARD → first index to return; BACKWARD → end (exclusive).
    pub(super) cursor: Option<usize>,
}

/// One page of `items`: the entries and the cursor of the next page, if any.
/// The StartPosition item itself is included [U].
pub(super) fn transcript_page<'a>(
    items: &'a [Item],
    q: &TranscriptQuery,
) -> Result<(Vec<&'a Item>, Option<usize>), String> {
    let len = items.len();
    let position_of = |id: &str| {
        items
            .iter()
            .position(|i| i.id == id)
            .ok_or_else(|| format!("StartPosition.Id {id} is not an item of this chat"))
    };
    let (page, next): (Vec<&Item>, Option<usize>) = if q.forward {
        let start = match (&q.cursor, &q.start) {
            (Some(c), _) => *c,
            (None, StartPosition::Default) => 0,
            (None, StartPosition::Id(id)) => position_of(id)?,
            (None, StartPosition::Time(t)) => {
                items.iter().position(|i| i.time >= *t).unwrap_or(len)
            }
            (None, StartPosition::MostRecent(n)) => len.saturating_sub(n + 1),
        }
        .min(len);
        let end = (start + q.max_results).min(len);
        (
            items[start..end].iter().collect(),
            (end < len).then_some(end),
        )
    } else {
        let end = match (&q.cursor, &q.start) {
            (Some(c), _) => *c,
            (None, StartPosition::Default) => len,
            (None, StartPosition::Id(id)) => position_of(id)? + 1,
            (None, StartPosition::Time(t)) => items.iter().filter(|i| i.time <= *t).count(),
            (None, StartPosition::MostRecent(n)) => len.saturating_sub(*n),
        }
        .min(len);
        let start = end.saturating_sub(q.max_results);
        (
            items[start..end].iter().collect(),
            (start > 0).then_some(start),
        )
    };
    let mut page = page;
    if !q.ascending {
        page.reverse();
    }
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact_with_messages(n: usize) -> Contact {
        let mut c = Contact::new(
            "i1",
            "f1",
            "q",
            "Ada",
            BTreeMap::new(),
            vec![TEXT_PLAIN.into()],
        );
        let customer = c.customer.clone();
        for k in 0..n {
            c.message(customer.clone(), TEXT_PLAIN, &format!("m{k}"), None);
        }
        c
    }

    fn texts(page: &[&Item]) -> Vec<String> {
        page.iter().map(|i| i.content.clone().unwrap()).collect()
    }

    fn query(max: usize, forward: bool, ascending: bool, start: StartPosition) -> TranscriptQuery {
        TranscriptQuery {
            max_results: max,
            forward,
            ascending,
            start,
            cursor: None,
        }
    }

    #[test]
    fn forward_pages_cover_everything_once() {
        let c = contact_with_messages(5);
        let mut q = query(2, true, true, StartPosition::Default);
        let mut seen = Vec::new();
        loop {
            let (page, next) = transcript_page(&c.transcript, &q).unwrap();
            seen.extend(texts(&page));
            match next {
                Some(cursor) => q.cursor = Some(cursor),
                None => break,
            }
        }
        assert_eq!(seen, ["m0", "m1", "m2", "m3", "m4"]);
    }

    #[test]
    fn backward_default_reads_most_recent_first_page() {
        let c = contact_with_messages(5);
        let q = query(2, false, true, StartPosition::Default);
        let (page, next) = transcript_page(&c.transcript, &q).unwrap();
        assert_eq!(texts(&page), ["m3", "m4"]);
        let q2 = TranscriptQuery {
            cursor: next,
            ..q.clone()
        };
        let (page, next) = transcript_page(&c.transcript, &q2).unwrap();
        assert_eq!(texts(&page), ["m1", "m2"]);
        let (page, next) = transcript_page(
            &c.transcript,
            &TranscriptQuery {
                cursor: next,
                ..q.clone()
            },
        )
        .unwrap();
        assert_eq!(texts(&page), ["m0"]);
        assert_eq!(next, None);

        let desc = query(3, false, false, StartPosition::Default);
        let (page, _) = transcript_page(&c.transcript, &desc).unwrap();
        assert_eq!(texts(&page), ["m4", "m3", "m2"]);
    }

    #[test]
    fn start_positions_anchor_the_page() {
        let c = contact_with_messages(5);
        let id2 = c.transcript[2].id.clone();
        let (page, _) = transcript_page(
            &c.transcript,
            &query(10, true, true, StartPosition::Id(id2.clone())),
        )
        .unwrap();
        assert_eq!(texts(&page), ["m2", "m3", "m4"]);
        let (page, _) = transcript_page(
            &c.transcript,
            &query(10, false, true, StartPosition::Id(id2)),
        )
        .unwrap();
        assert_eq!(texts(&page), ["m0", "m1", "m2"]);
        let (page, _) = transcript_page(
            &c.transcript,
            &query(10, false, true, StartPosition::MostRecent(1)),
        )
        .unwrap();
        assert_eq!(texts(&page), ["m0", "m1", "m2", "m3"]);
        let t = c.transcript[0].time;
        let (page, _) = transcript_page(
            &c.transcript,
            &query(10, true, true, StartPosition::Time(t)),
        )
        .unwrap();
        assert_eq!(page.len(), 5);
        assert!(transcript_page(
            &c.transcript,
            &query(10, true, true, StartPosition::Id("nope".into()))
        )
        .is_err());
    }

    #[test]
    fn lifecycle_emits_connect_items_in_order() {
        let mut c = contact_with_messages(0);
        assert!(
            c.accept("Sam").is_err(),
            "not queued before the customer connects"
        );
        assert_eq!(c.connect_customer().len(), 1);
        assert!(
            c.connect_customer().is_empty(),
            "connecting twice is a no-op"
        );
        let joined = c.accept("Sam").unwrap();
        assert_eq!(joined[0].content_type, PARTICIPANT_JOINED);
        assert_eq!(joined[0].role(), Some(Role::Agent));
        let first_id = c.current_contact_id().to_string();
        let t = c.transfer("Kim").unwrap();
        let types: Vec<_> = t.iter().map(|i| i.content_type.as_str()).collect();
        assert_eq!(
            types,
            [PARTICIPANT_LEFT, TRANSFER_SUCCEEDED, PARTICIPANT_JOINED]
        );
        assert_eq!(t[0].contact_id, first_id);
        assert_ne!(
            t[2].contact_id, first_id,
            "a transfer starts a new ContactId"
        );
        assert_eq!(t[2].initial_contact_id, first_id);
        assert_eq!(c.leave().unwrap().len(), 1);
        assert_eq!(c.state, ContactState::Queued);
        let end = c.end(EndReason::Customer);
        let types: Vec<_> = end.iter().map(|i| i.content_type.as_str()).collect();
        assert_eq!(types, [PARTICIPANT_LEFT, CHAT_ENDED]);
        assert_eq!(end[0].role(), Some(Role::Customer));
        assert_eq!(end[1].json().get("ParticipantRole"), None);
        assert!(c.end(EndReason::Agent).is_empty());
        assert!(c.agent_message("late", TEXT_PLAIN, false).is_err());
    }
}
