//! Conversations and their participants; the conversation and user API
//! (spec §8, §12) and the agent actions the desktop triggers.

use super::webhook::{self, Delivery};
use super::{epoch_ms, iso, message_id, now_iso, parse_json, ApiError, Caller, Genesys, SimState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::mpsc::UnboundedSender;

/// The desktop shows "customer is typing…" this long after a Typing event.
const CUSTOMER_TYPING_WINDOW: Duration = Duration::from_secs(5);
/// Duration announced in outbound Typing events (ms).
const TYPING_DURATION_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ConversationState {
    Queued,
    Active,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Customer,
    Acd,
    Agent,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Customer => "customer",
            Purpose::Acd => "acd",
            Purpose::Agent => "agent",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DisconnectType {
    Client,
    Peer,
    Transfer,
    System,
}

impl DisconnectType {
    /// Spelling in detail events (`CLIENT`).
    fn detail(self) -> &'static str {
        match self {
            DisconnectType::Client => "CLIENT",
            DisconnectType::Peer => "PEER",
            DisconnectType::Transfer => "TRANSFER",
            DisconnectType::System => "SYSTEM",
        }
    }

    /// Spelling in the REST participant model (`client`).
    fn rest(self) -> &'static str {
        match self {
            DisconnectType::Client => "client",
            DisconnectType::Peer => "peer",
            DisconnectType::Transfer => "transfer",
            DisconnectType::System => "system",
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Participant {
    pub(super) id: String,
    pub(super) purpose: Purpose,
    pub(super) connected: bool,
    user_id: Option<String>,
    name: Option<String>,
    queue_id: Option<String>,
    session_id: String,
    connected_at: OffsetDateTime,
    started: Instant,
    ended_at: Option<OffsetDateTime>,
    disconnect_type: Option<DisconnectType>,
}

impl Participant {
    fn new(purpose: Purpose) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            purpose,
            connected: true,
            user_id: None,
            name: None,
            queue_id: None,
            session_id: uuid::Uuid::new_v4().to_string(),
            connected_at: OffsetDateTime::now_utc(),
            started: Instant::now(),
            ended_at: None,
            disconnect_type: None,
        }
    }

    fn disconnect(&mut self, how: DisconnectType) {
        self.connected = false;
        self.ended_at = Some(OffsetDateTime::now_utc());
        self.disconnect_type = Some(how);
    }
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
    pub(super) channel_message_id: Option<String>,
    pub(super) direction: Direction,
    pub(super) text: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) content: Vec<Value>,
    pub(super) at: String,
    /// `Human` or `Bot` for outbound messages.
    pub(super) originating_entity: Option<&'static str>,
    /// Agent name for outbound messages.
    pub(super) sender: Option<String>,
    #[serde(skip)]
    participant_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct WebhookAttempt {
    pub(super) message_id: String,
    /// 1 for the first try, then 2.. for retries.
    pub(super) attempt: u32,
    /// HTTP status of the answer; 0 when there was none (timeout, connection error).
    pub(super) status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    /// True for the extra copy sent by a duplicate fault.
    pub(super) duplicate: bool,
    pub(super) at: String,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct NotificationRecord {
    pub(super) topic: String,
    /// Sockets the event was written to.
    pub(super) delivered: usize,
    pub(super) lost: bool,
    pub(super) at: String,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ReceiptRecord {
    pub(super) message_id: String,
    pub(super) status: String,
    pub(super) at: String,
}

/// One Open Messaging conversation, owned by one integration.
#[derive(Debug)]
pub(super) struct Conversation {
    pub(super) id: String,
    pub(super) integration_id: String,
    /// The `channel.from` object of the customer's first message.
    pub(super) customer: Value,
    pub(super) customer_id: String,
    pub(super) customer_id_type: String,
    pub(super) custom_attributes: Map<String, Value>,
    pub(super) state: ConversationState,
    pub(super) participants: Vec<Participant>,
    pub(super) messages: Vec<MessageRecord>,
    inbound_counts: HashMap<String, u32>,
    duplicate_inbound_message_ids: Vec<String>,
    pub(super) customer_typing_at: Option<Instant>,
    pub(super) webhook_attempts: Vec<WebhookAttempt>,
    pub(super) notifications: Vec<NotificationRecord>,
    pub(super) receipts: Vec<ReceiptRecord>,
    pub(super) webhook_queue: Option<UnboundedSender<Delivery>>,
    queue_id: String,
    division_id: String,
    created_at: String,
}

/// A Genesys user the desktop acts as.
#[derive(Debug, Clone)]
pub(super) struct AgentUser {
    integration_id: String,
    name: String,
}

/// A notification to publish after a state change.
pub(super) struct DetailEvent {
    pub(super) suffix: &'static str,
    pub(super) body: Value,
}

impl Conversation {
    fn new(
        integration_id: &str,
        queue_id: &str,
        division_id: &str,
        customer: Value,
        customer_id: &str,
        customer_id_type: &str,
    ) -> Self {
        let mut acd = Participant::new(Purpose::Acd);
        acd.queue_id = Some(queue_id.to_string());
        acd.name = Some("Queue".into());
        let mut customer_participant = Participant::new(Purpose::Customer);
        customer_participant.name = customer
            .get("nickname")
            .and_then(Value::as_str)
            .map(str::to_owned);
        customer_participant.queue_id = Some(queue_id.to_string());
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            integration_id: integration_id.to_string(),
            customer,
            customer_id: customer_id.to_string(),
            customer_id_type: customer_id_type.to_string(),
            custom_attributes: Map::new(),
            state: ConversationState::Queued,
            participants: vec![customer_participant, acd],
            messages: Vec::new(),
            inbound_counts: HashMap::new(),
            duplicate_inbound_message_ids: Vec::new(),
            customer_typing_at: None,
            webhook_attempts: Vec::new(),
            notifications: Vec::new(),
            receipts: Vec::new(),
            webhook_queue: None,
            queue_id: queue_id.to_string(),
            division_id: division_id.to_string(),
            created_at: now_iso(),
        }
    }

    fn customer_participant(&self) -> Option<&Participant> {
        self.participants
            .iter()
            .find(|p| p.purpose == Purpose::Customer)
    }

    pub(super) fn customer_connected(&self) -> bool {
        self.customer_participant().is_some_and(|p| p.connected)
    }

    fn connected_agent_index(&self) -> Option<usize> {
        self.participants
            .iter()
            .position(|p| p.purpose == Purpose::Agent && p.connected)
    }

    fn disconnect_acd(&mut self, how: DisconnectType) {
        for p in &mut self.participants {
            if p.purpose == Purpose::Acd && p.connected {
                p.disconnect(how);
            }
        }
    }

    /// Records a customer message; repeated `channel.messageId`s are kept and counted.
    pub(super) fn record_inbound(
        &mut self,
        id: &str,
        channel_message_id: Option<&str>,
        text: Option<&str>,
        content: Vec<Value>,
    ) {
        if let Some(mid) = channel_message_id {
            let count = self.inbound_counts.entry(mid.to_string()).or_insert(0);
            *count += 1;
            if *count == 2 {
                self.duplicate_inbound_message_ids.push(mid.to_string());
            }
        }
        let customer_participant = self.customer_participant().map(|p| p.id.clone());
        self.messages.push(MessageRecord {
            id: id.to_string(),
            channel_message_id: channel_message_id.map(str::to_owned),
            direction: Direction::Inbound,
            text: text.map(str::to_owned),
            content,
            at: now_iso(),
            originating_entity: None,
            sender: None,
            participant_id: customer_participant,
        });
    }

    /// Body of a `v2.detail.events.conversation.{id}.*` event about one participant.
    fn detail_body(&self, p: &Participant, disconnect: Option<DisconnectType>) -> Value {
        let mut body = json!({
            "eventTime": epoch_ms(),
            "conversationId": self.id,
            "participantId": p.id,
            "sessionId": p.session_id,
            "mediaType": "MESSAGE",
            "provider": "Open",
            "direction": "INBOUND",
            "ani": self.customer_id,
            "addressFrom": self.customer_id,
            "addressTo": self.integration_id,
            "messageType": "OPEN",
            "queueId": self.queue_id,
            "divisionId": self.division_id,
        });
        if let Some(user_id) = &p.user_id {
            body["userId"] = json!(user_id);
        }
        if let Some(how) = disconnect {
            body["disconnectType"] = json!(how.detail());
            body["interactingDurationMs"] = json!(p.started.elapsed().as_millis() as u64);
        }
        body
    }

    /// Disconnects a participant and returns the event announcing it.
    fn end_participant(
        &mut self,
        index: usize,
        how: DisconnectType,
        suffix: &'static str,
    ) -> DetailEvent {
        self.participants[index].disconnect(how);
        let body = self.detail_body(&self.participants[index], Some(how));
        DetailEvent { suffix, body }
    }

    fn add_agent(&mut self, user_id: &str, name: &str) -> DetailEvent {
        let mut agent = Participant::new(Purpose::Agent);
        agent.user_id = Some(user_id.to_string());
        agent.name = Some(name.to_string());
        agent.queue_id = Some(self.queue_id.clone());
        let body = self.detail_body(&agent, None);
        self.participants.push(agent);
        DetailEvent {
            suffix: "user.start",
            body,
        }
    }

    fn current_agent(&self) -> Option<&Participant> {
        self.connected_agent_index().map(|i| &self.participants[i])
    }

    /// The sim-only view (`GET /sim/genesys/conversations/{id}`).
    pub(super) fn view(&self, now: Instant) -> Value {
        let agent = self
            .current_agent()
            .map(|a| json!({"user_id": a.user_id, "name": a.name, "participant_id": a.id}));
        let typing = self
            .customer_typing_at
            .is_some_and(|t| now.duration_since(t) < CUSTOMER_TYPING_WINDOW);
        json!({
            "id": self.id,
            "integration_id": self.integration_id,
            "customer": self.customer,
            "custom_attributes": self.custom_attributes,
            "context": self.custom_attributes,
            "state": self.state,
            "agent": agent,
            "customer_connected": self.customer_connected(),
            "customer_typing": typing,
            "created_at": self.created_at,
            "messages": self.messages,
            "duplicate_inbound_message_ids": self.duplicate_inbound_message_ids,
            "webhook_attempts": self.webhook_attempts,
            "notifications": self.notifications,
            "receipts": self.receipts,
            "participants": self.participants.iter().map(|p| json!({
                "id": p.id,
                "purpose": p.purpose.as_str(),
                "state": if p.connected { "connected" } else { "disconnected" },
                "name": p.name,
                "user_id": p.user_id,
                "disconnect_type": p.disconnect_type.map(DisconnectType::rest),
            })).collect::<Vec<_>>(),
        })
    }

    /// `MessageConversation` of `GET /api/v2/conversations/messages/{id}`.
    fn api_view(&self) -> Value {
        let participants: Vec<Value> = self
            .participants
            .iter()
            .map(|p| {
                let messages: Vec<Value> = self
                    .messages
                    .iter()
                    .filter(|m| m.participant_id.as_deref() == Some(p.id.as_str()))
                    .map(|m| {
                        json!({
                            "messageId": m.id,
                            "messageTime": m.at,
                            "messageStatus": match m.direction {
                                Direction::Inbound => "received",
                                Direction::Outbound => "sent",
                            },
                            "messageSegmentCount": 1,
                        })
                    })
                    .collect();
                let mut v = json!({
                    "id": p.id,
                    "name": p.name,
                    "purpose": p.purpose.as_str(),
                    "state": if p.connected { "connected" } else { "disconnected" },
                    "connectedTime": iso(p.connected_at),
                    "held": false,
                    "type": "Open",
                    "messages": messages,
                });
                if let Some(q) = &p.queue_id {
                    v["queue"] = json!({"id": q, "selfUri": format!("/api/v2/routing/queues/{q}")});
                }
                if let Some(u) = &p.user_id {
                    v["user"] = json!({"id": u, "selfUri": format!("/api/v2/users/{u}")});
                }
                if let Some(t) = p.ended_at {
                    v["endTime"] = json!(iso(t));
                }
                if let Some(d) = p.disconnect_type {
                    v["disconnectType"] = json!(d.rest());
                }
                if p.purpose == Purpose::Customer {
                    v["fromAddress"] = json!({"addressNormalized": self.customer_id});
                    v["toAddress"] = json!({"addressNormalized": self.integration_id});
                }
                v
            })
            .collect();
        json!({
            "id": self.id,
            "participants": participants,
            "selfUri": format!("/api/v2/conversations/messages/{}", self.id),
        })
    }
}

impl SimState {
    /// The open conversation of this customer, or a new queued one.
    pub(super) fn conversation_for_customer(
        &mut self,
        integration_id: &str,
        from: &Value,
        from_id: &str,
        id_type: &str,
    ) -> &mut Conversation {
        let key = (integration_id.to_string(), from_id.to_string());
        let open = self
            .open_by_customer
            .get(&key)
            .filter(|cid| {
                self.conversations
                    .get(*cid)
                    .is_some_and(|c| c.state != ConversationState::Ended)
            })
            .cloned();
        let cid = match open {
            Some(cid) => cid,
            None => {
                let (queue_id, division_id) = self
                    .integrations
                    .get(integration_id)
                    .map(|i| (i.queue_id.clone(), i.division_id.clone()))
                    .unwrap_or_default();
                let conv = Conversation::new(
                    integration_id,
                    &queue_id,
                    &division_id,
                    from.clone(),
                    from_id,
                    id_type,
                );
                let cid = conv.id.clone();
                tracing::info!(integration = integration_id, conversation = %cid, customer = from_id, "conversation created");
                self.conversations.insert(cid.clone(), conv);
                self.conversation_order.push(cid.clone());
                self.open_by_customer.insert(key, cid.clone());
                cid
            }
        };
        self.conversations
            .get_mut(&cid)
            .expect("conversation just looked up")
    }

    fn conversation_mut(&mut self, cid: &str) -> Result<&mut Conversation, ApiError> {
        self.conversations
            .get_mut(cid)
            .ok_or_else(|| ApiError::not_found(format!("Conversation {cid} not found")))
    }

    /// A conversation visible to this OAuth client.
    fn conversation_of_client(&self, cid: &str, client_id: &str) -> Option<&Conversation> {
        self.conversations.get(cid).filter(|c| {
            self.integrations
                .get(&c.integration_id)
                .is_some_and(|i| i.client_id == client_id)
        })
    }

    /// The Genesys user id of an agent name within an integration.
    fn agent_user_id(&mut self, integration_id: &str, name: &str) -> String {
        if let Some((id, _)) = self
            .users
            .iter()
            .find(|(_, u)| u.integration_id == integration_id && u.name == name)
        {
            return id.clone();
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.users.insert(
            id.clone(),
            AgentUser {
                integration_id: integration_id.to_string(),
                name: name.to_string(),
            },
        );
        id
    }

    fn publish_all(&mut self, cid: &str, events: Vec<DetailEvent>) {
        let Some(integration_id) = self
            .conversations
            .get(cid)
            .map(|c| c.integration_id.clone())
        else {
            return;
        };
        for e in events {
            super::notifications::publish(self, &integration_id, cid, e.suffix, e.body);
        }
    }

    /// Customer participant disconnected (relay PATCH): emits `customer.end`.
    fn disconnect_customer(&mut self, cid: &str, pid: &str) -> Result<(), ApiError> {
        let conv = self.conversation_mut(cid)?;
        let index = conv
            .participants
            .iter()
            .position(|p| p.id == pid)
            .ok_or_else(|| ApiError::not_found(format!("Participant {pid} not found")))?;
        if conv.participants[index].purpose != Purpose::Customer {
            return Err(ApiError::bad_request(
                "The simulator only disconnects the customer participant.",
            ));
        }
        if !conv.participants[index].connected {
            return Err(ApiError::bad_request(
                "The participant is already disconnected.",
            ));
        }
        conv.disconnect_acd(DisconnectType::System);
        let event = conv.end_participant(index, DisconnectType::Client, "customer.end");
        conv.state = ConversationState::Ended;
        let key = (conv.integration_id.clone(), conv.customer_id.clone());
        tracing::info!(conversation = cid, "customer disconnected");
        self.open_by_customer.remove(&key);
        self.publish_all(cid, vec![event]);
        Ok(())
    }

    pub(super) fn accept(&mut self, cid: &str, agent_name: &str) -> Result<(), ApiError> {
        let integration_id = self.conversation_mut(cid)?.integration_id.clone();
        let user_id = self.agent_user_id(&integration_id, agent_name);
        let conv = self.conversation_mut(cid)?;
        if conv.state != ConversationState::Queued {
            return Err(ApiError::conflict(format!(
                "Conversation is {:?}, not queued",
                conv.state
            )));
        }
        conv.disconnect_acd(DisconnectType::Transfer);
        let event = conv.add_agent(&user_id, agent_name);
        conv.state = ConversationState::Active;
        tracing::info!(conversation = cid, agent = agent_name, "agent accepted");
        self.publish_all(cid, vec![event]);
        Ok(())
    }

    pub(super) fn leave(&mut self, cid: &str) -> Result<(), ApiError> {
        let conv = self.conversation_mut(cid)?;
        let index = match (conv.state, conv.connected_agent_index()) {
            (ConversationState::Active, Some(i)) => i,
            _ => return Err(ApiError::conflict("No agent is connected")),
        };
        let event = conv.end_participant(index, DisconnectType::Client, "user.end");
        let mut acd = Participant::new(Purpose::Acd);
        acd.queue_id = Some(conv.queue_id.clone());
        acd.name = Some("Queue".into());
        conv.participants.push(acd);
        conv.state = ConversationState::Queued;
        tracing::info!(conversation = cid, "agent left, back to queue");
        self.publish_all(cid, vec![event]);
        Ok(())
    }

    pub(super) fn transfer(&mut self, cid: &str, agent_name: &str) -> Result<(), ApiError> {
        let integration_id = self.conversation_mut(cid)?.integration_id.clone();
        let user_id = self.agent_user_id(&integration_id, agent_name);
        let conv = self.conversation_mut(cid)?;
        let index = match (conv.state, conv.connected_agent_index()) {
            (ConversationState::Active, Some(i)) => i,
            _ => return Err(ApiError::conflict("No agent is connected")),
        };
        let ended = conv.end_participant(index, DisconnectType::Transfer, "user.end");
        let started = conv.add_agent(&user_id, agent_name);
        tracing::info!(conversation = cid, agent = agent_name, "transferred");
        self.publish_all(cid, vec![ended, started]);
        Ok(())
    }

    /// Agent ends the conversation: `user.end` (if an agent is connected) and `customer.end`.
    pub(super) fn end(&mut self, cid: &str) -> Result<(), ApiError> {
        let conv = self.conversation_mut(cid)?;
        let agent = conv.connected_agent_index();
        if conv.state == ConversationState::Ended && agent.is_none() {
            return Err(ApiError::conflict("Conversation already ended"));
        }
        let mut events = Vec::new();
        if let Some(i) = agent {
            events.push(conv.end_participant(i, DisconnectType::Client, "user.end"));
        }
        conv.disconnect_acd(DisconnectType::System);
        if let Some(i) = conv
            .participants
            .iter()
            .position(|p| p.purpose == Purpose::Customer && p.connected)
        {
            events.push(conv.end_participant(i, DisconnectType::Peer, "customer.end"));
        }
        conv.state = ConversationState::Ended;
        let key = (conv.integration_id.clone(), conv.customer_id.clone());
        if self.open_by_customer.get(&key).map(String::as_str) == Some(cid) {
            self.open_by_customer.remove(&key);
        }
        tracing::info!(conversation = cid, "conversation ended by agent");
        self.publish_all(cid, events);
        Ok(())
    }
}

/// Agent (or bot) text from the desktop → webhook `Text`. Returns the message id.
pub(super) fn send_agent_text(
    sim: &Arc<Genesys>,
    cid: &str,
    text: &str,
    bot: bool,
) -> Result<String, ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    let mut st = sim.lock();
    let conv = st.conversation_mut(cid)?;
    if conv.state == ConversationState::Ended {
        return Err(ApiError::conflict("Conversation ended"));
    }
    let agent = conv.current_agent().cloned();
    let (nickname, participant_id) = match (&agent, bot) {
        (_, true) => ("Bot".to_string(), None),
        (Some(a), false) => (a.name.clone().unwrap_or_default(), Some(a.id.clone())),
        (None, false) => return Err(ApiError::conflict("No agent is connected")),
    };
    let entity = if bot { "Bot" } else { "Human" };
    let id = message_id();
    let at = now_iso();
    conv.messages.push(MessageRecord {
        id: id.clone(),
        channel_message_id: Some(id.clone()),
        direction: Direction::Outbound,
        text: Some(text.to_string()),
        content: Vec::new(),
        at: at.clone(),
        originating_entity: Some(entity),
        sender: Some(nickname.clone()),
        participant_id,
    });
    let body = webhook::text_body(conv, &id, text, entity, &nickname, &at);
    webhook::enqueue(sim, &mut st, cid, &id, body)?;
    Ok(id)
}

/// Agent typing from the desktop → webhook `Event`/Typing when the integration enables it.
pub(super) fn send_agent_typing(sim: &Arc<Genesys>, cid: &str) -> Result<bool, ApiError> {
    let mut st = sim.lock();
    let conv = st.conversation_mut(cid)?;
    let Some(agent) = conv.current_agent().cloned() else {
        return Err(ApiError::conflict("No agent is connected"));
    };
    let integration_id = conv.integration_id.clone();
    let enabled = st
        .integrations
        .get(&integration_id)
        .is_some_and(|i| i.typing_outbound);
    if !enabled {
        return Ok(false);
    }
    let conv = st.conversation_mut(cid)?;
    let id = message_id();
    let body = webhook::typing_body(
        conv,
        &id,
        &agent.name.unwrap_or_default(),
        TYPING_DURATION_MS,
        &now_iso(),
    );
    webhook::enqueue(sim, &mut st, cid, &id, body)?;
    Ok(true)
}

pub(super) async fn get_conversation(
    State(sim): State<Arc<Genesys>>,
    Extension(caller): Extension<Caller>,
    Path(cid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let st = sim.lock();
    st.conversation_of_client(&cid, &caller.client_id)
        .map(|c| Json(c.api_view()))
        .ok_or_else(|| ApiError::not_found(format!("Conversation {cid} not found")))
}

pub(super) async fn patch_participant(
    State(sim): State<Arc<Genesys>>,
    Extension(caller): Extension<Caller>,
    Path((cid, pid)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_json(&body)?;
    match body.get("state").and_then(Value::as_str) {
        Some("disconnected") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Unsupported participant state '{other}'; the simulator supports 'disconnected'."
            )))
        }
        None => return Err(ApiError::bad_request("state is required")),
    }
    let mut st = sim.lock();
    if st.conversation_of_client(&cid, &caller.client_id).is_none() {
        return Err(ApiError::not_found(format!("Conversation {cid} not found")));
    }
    st.disconnect_customer(&cid, &pid)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(super) async fn get_user(
    State(sim): State<Arc<Genesys>>,
    Extension(caller): Extension<Caller>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let st = sim.lock();
    let user = st.users.get(&user_id).filter(|u| {
        st.integrations
            .get(&u.integration_id)
            .is_some_and(|i| i.client_id == caller.client_id)
    });
    let Some(user) = user else {
        return Err(ApiError::not_found(format!("User {user_id} not found")));
    };
    let division_id = st
        .integrations
        .get(&user.integration_id)
        .map(|i| i.division_id.clone())
        .unwrap_or_default();
    Ok(Json(json!({
        "id": user_id,
        "name": user.name,
        "state": "active",
        "division": {"id": division_id},
        "selfUri": format!("/api/v2/users/{user_id}"),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesys::Integration;

    fn state_with_integration(id: &str) -> SimState {
        let mut st = SimState::default();
        st.integrations.insert(
            id.into(),
            Integration {
                id: id.into(),
                client_id: format!("client-{id}"),
                client_secret: "s".into(),
                webhook_url: "http://127.0.0.1:9/".into(),
                webhook_secret: "0123456789abcdef".into(),
                webhook_headers: Default::default(),
                typing_outbound: true,
                token_ttl_secs: 60,
                queue_id: "q".into(),
                division_id: "d".into(),
            },
        );
        st
    }

    fn open(st: &mut SimState, integration: &str, from_id: &str) -> String {
        let from = json!({"id": from_id, "idType": "Opaque"});
        st.conversation_for_customer(integration, &from, from_id, "Opaque")
            .id
            .clone()
    }

    #[test]
    fn conversation_is_reused_per_customer_while_open() {
        let mut st = state_with_integration("i1");
        st.integrations.insert("i2".into(), {
            let mut i = st.integrations["i1"].clone();
            i.id = "i2".into();
            i
        });
        let a1 = open(&mut st, "i1", "ada");
        let a2 = open(&mut st, "i1", "ada");
        let b = open(&mut st, "i1", "bob");
        let other_integration = open(&mut st, "i2", "ada");
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_ne!(a1, other_integration);

        st.end(&a1).unwrap();
        let a3 = open(&mut st, "i1", "ada");
        assert_ne!(a1, a3, "an ended conversation is not reused");
    }

    #[test]
    fn duplicate_channel_message_ids_are_kept_and_listed() {
        let mut st = state_with_integration("i1");
        let cid = open(&mut st, "i1", "ada");
        let conv = st.conversations.get_mut(&cid).unwrap();
        conv.record_inbound("g1", Some("m1"), Some("hi"), vec![]);
        conv.record_inbound("g2", Some("m1"), Some("hi"), vec![]);
        conv.record_inbound("g3", Some("m1"), Some("hi"), vec![]);
        conv.record_inbound("g4", Some("m2"), Some("there"), vec![]);
        let view = conv.view(Instant::now());
        assert_eq!(view["messages"].as_array().unwrap().len(), 4);
        assert_eq!(view["duplicate_inbound_message_ids"], json!(["m1"]));
    }

    #[test]
    fn agent_lifecycle_moves_states_and_participants() {
        let mut st = state_with_integration("i1");
        let cid = open(&mut st, "i1", "ada");
        assert!(st.leave(&cid).is_err(), "nobody to leave yet");
        st.accept(&cid, "Sam").unwrap();
        assert!(st.accept(&cid, "Sam").is_err());
        st.transfer(&cid, "Kim").unwrap();
        let view = st.conversations[&cid].view(Instant::now());
        assert_eq!(view["state"], "active");
        assert_eq!(view["agent"]["name"], "Kim");
        st.leave(&cid).unwrap();
        assert_eq!(st.conversations[&cid].state, ConversationState::Queued);
        st.end(&cid).unwrap();
        let conv = &st.conversations[&cid];
        assert_eq!(conv.state, ConversationState::Ended);
        assert!(conv.participants.iter().all(|p| !p.connected));
        // Events went nowhere (no channel) and were counted as lost:
        // user.start, user.end, user.start, user.end, customer.end.
        assert_eq!(st.stats.total.notifications_lost, 5);
        assert!(st.end(&cid).is_err());
    }

    #[test]
    fn customer_disconnect_twice_fails() {
        let mut st = state_with_integration("i1");
        let cid = open(&mut st, "i1", "ada");
        let pid = st.conversations[&cid]
            .customer_participant()
            .unwrap()
            .id
            .clone();
        st.disconnect_customer(&cid, &pid).unwrap();
        assert_eq!(st.conversations[&cid].state, ConversationState::Ended);
        let err = st.disconnect_customer(&cid, &pid).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }
}
