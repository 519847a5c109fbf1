//! Agent Workspace simulation (spec §5, §7, §11.8): a `passControl` to
//! `zd-agentWorkspace` opens a ticket from its metadata; agents accept, reply,
//! leave, transfer and close; closing hands the conversation back.

use super::api::{message_json, ConversationState, Direction, MessageRecord};
use super::knobs::CloseMode;
use super::switchboard::{self, conversation_ref, AGENT_WORKSPACE_TYPE};
use super::webhook::{self, Audience};
use super::{now_iso, ApiError, SimState, Zendesk};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Messages copied into a ticket without `first_message_id` (spec §5, HC-FMI).
const DEFAULT_TRANSCRIPT_MESSAGES: usize = 10;
const TICKET_FIELD_PREFIX: &str = "dataCapture.ticketField.";
const SYSTEM_FIELD_PREFIX: &str = "dataCapture.systemField.";
const FIRST_MESSAGE_KEY: &str = "first_message_id";
/// `__zendesk_msg.agent.id` of trigger (automation) messages.
const TRIGGER_AGENT_ID: &str = "__trigger";
const AGENT_ID_KEY: &str = "__zendesk_msg.agent.id";
/// Author name of trigger messages and of the ticket-closed activity [U].
const BUSINESS_NAME: &str = "Support";
/// Zendesk user ids are numbers; agents of an app count up from here.
const FIRST_AGENT_ID: u64 = 360_000_000_001;
const MAX_TEXT_CHARS: usize = 4096;

#[derive(Debug, Clone)]
pub(super) struct Agent {
    pub(super) id: String,
    pub(super) name: String,
}

impl Agent {
    fn avatar_url(&self) -> String {
        format!("https://simulator.zendesk.invalid/avatars/{}.png", self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum TicketStatus {
    Open,
    Closed,
}

/// A messaging ticket made from the `passControl` metadata.
#[derive(Debug, Clone)]
pub(super) struct Ticket {
    id: u64,
    status: TicketStatus,
    subject: String,
    requester_name: Option<String>,
    requester_email: Option<String>,
    group_id: Option<String>,
    assignee_id: Option<String>,
    tags: Vec<String>,
    /// `dataCapture.ticketField.<id>` values by field id.
    fields: BTreeMap<String, Value>,
    /// Other `dataCapture.systemField.*` values.
    system_fields: BTreeMap<String, Value>,
    /// Metadata keys outside `dataCapture.*`.
    other: BTreeMap<String, Value>,
    first_message_id: Option<String>,
    transcript: Vec<Value>,
    created_at: String,
    closed_at: Option<String>,
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Ticket {
    fn from_metadata(
        id: u64,
        metadata: &Map<String, Value>,
        messages: &[MessageRecord],
        history: usize,
        customer: (String, Option<String>),
    ) -> Self {
        let mut t = Ticket {
            id,
            status: TicketStatus::Open,
            subject: String::new(),
            requester_name: None,
            requester_email: None,
            group_id: None,
            assignee_id: None,
            tags: Vec::new(),
            fields: BTreeMap::new(),
            system_fields: BTreeMap::new(),
            other: BTreeMap::new(),
            first_message_id: None,
            transcript: Vec::new(),
            created_at: now_iso(),
            closed_at: None,
        };
        for (key, value) in metadata {
            if let Some(field) = key.strip_prefix(TICKET_FIELD_PREFIX) {
                t.fields.insert(field.to_string(), value.clone());
            } else if let Some(system) = key.strip_prefix(SYSTEM_FIELD_PREFIX) {
                match system {
                    // Both separators are seen in the wild (spec §5) [U].
                    "tags" => {
                        t.tags = as_text(value)
                            .split([' ', ','])
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    }
                    "group_id" => t.group_id = Some(as_text(value)),
                    "requester.name" => t.requester_name = Some(as_text(value)),
                    "requester.email" => t.requester_email = Some(as_text(value)),
                    "assignee_id" => t.assignee_id = Some(as_text(value)),
                    "subject" => t.subject = as_text(value),
                    _ => {
                        t.system_fields.insert(system.to_string(), value.clone());
                    }
                }
            } else if key == FIRST_MESSAGE_KEY {
                t.first_message_id = Some(as_text(value));
            } else {
                t.other.insert(key.clone(), value.clone());
            }
        }
        t.requester_name.get_or_insert(customer.0);
        if t.requester_email.is_none() {
            t.requester_email = customer.1;
        }
        if t.subject.is_empty() {
            t.subject = format!(
                "Conversation with {}",
                t.requester_name.as_deref().unwrap_or("customer")
            );
        }
        let lines: Vec<&MessageRecord> = messages.iter().filter(|m| m.activity.is_none()).collect();
        let start = t
            .first_message_id
            .as_deref()
            .and_then(|id| lines.iter().position(|m| m.id == id))
            .unwrap_or_else(|| lines.len().saturating_sub(history));
        t.transcript = lines[start..]
            .iter()
            .map(|m| json!({"id": m.id, "author_type": m.author_type, "text": m.text, "at": m.at}))
            .collect();
        t
    }

    pub(super) fn view(&self) -> Value {
        json!({
            "id": self.id,
            "status": self.status,
            "subject": self.subject,
            "requester": {"name": self.requester_name, "email": self.requester_email},
            "group_id": self.group_id,
            "assignee_id": self.assignee_id,
            "tags": self.tags,
            "fields": self.fields,
            "custom_fields": self.fields.iter().map(|(id, value)| json!({"id": id, "value": value})).collect::<Vec<_>>(),
            "system_fields": self.system_fields,
            "metadata": self.other,
            "first_message_id": self.first_message_id,
            "transcript": self.transcript,
            "created_at": self.created_at,
            "closed_at": self.closed_at,
        })
    }

    fn is_open(&self) -> bool {
        self.status == TicketStatus::Open
    }
}

/// Control reached the Agent Workspace: open a ticket (or return to the open one).
pub(super) fn handed_to_agents(st: &mut SimState, cid: &str, metadata: &Map<String, Value>) {
    let SimState {
        conversations,
        apps,
        stats,
        ..
    } = st;
    let Some(conv) = conversations.get_mut(cid) else {
        return;
    };
    let Some(app) = apps.get_mut(&conv.app_id) else {
        return;
    };
    conv.customer_connected = true;
    if conv.ticket.as_ref().is_some_and(Ticket::is_open) {
        // Fields can only be set when the ticket is created (spec §5).
        conv.state = if conv.agent.is_some() {
            ConversationState::Active
        } else {
            ConversationState::Queued
        };
        return;
    }
    let history = app
        .agent_workspace()
        .message_history_count
        .map_or(DEFAULT_TRANSCRIPT_MESSAGES, |n| n as usize);
    let customer = app
        .users
        .get(&conv.user_id)
        .map(|u| (u.display_name(), u.email().map(str::to_owned)))
        .unwrap_or_else(|| ("Customer".to_string(), None));
    let id = app.next_ticket_id;
    app.next_ticket_id += 1;
    let ticket = Ticket::from_metadata(id, metadata, &conv.messages, history, customer);
    tracing::info!(conversation = cid, ticket = id, tags = ?ticket.tags, "ticket created");
    conv.ticket = Some(ticket);
    conv.context = metadata.clone();
    conv.agent = None;
    conv.state = ConversationState::Queued;
    stats.bump(Some(&app.id), |s| &mut s.tickets_created);
}

/// Control left the Agent Workspace by an API call while the ticket is open:
/// the customer side is gone (the relay's user-end); the ticket stays open.
pub(super) fn taken_from_agents(st: &mut SimState, cid: &str) {
    if let Some(conv) = st.conversations.get_mut(cid) {
        if conv.ticket.as_ref().is_some_and(Ticket::is_open) {
            conv.state = ConversationState::Ended;
            conv.customer_connected = false;
            tracing::info!(
                conversation = cid,
                "control taken back from the Agent Workspace"
            );
        }
    }
}

impl SimState {
    fn live_conversation(&mut self, cid: &str) -> Result<&mut super::api::Conversation, ApiError> {
        self.conversations
            .get_mut(cid)
            .filter(|c| !c.deleted)
            .ok_or_else(ApiError::conversation_not_found)
    }

    /// The agent of this name in the conversation's app, created on first use.
    fn agent_named(&mut self, cid: &str, name: &str) -> Result<Agent, ApiError> {
        let app_id = self.live_conversation(cid)?.app_id.clone();
        let app = self
            .apps
            .get_mut(&app_id)
            .ok_or_else(ApiError::conversation_not_found)?;
        if let Some(a) = app.agents.iter().find(|a| a.name == name) {
            return Ok(a.clone());
        }
        let agent = Agent {
            id: (FIRST_AGENT_ID + app.agents.len() as u64).to_string(),
            name: name.to_string(),
        };
        app.agents.push(agent.clone());
        Ok(agent)
    }

    /// Agent accepts the queued ticket: assigned, no webhook (as the real platform).
    pub(super) fn accept(&mut self, cid: &str, agent_name: &str) -> Result<(), ApiError> {
        let agent = self.agent_named(cid, agent_name)?;
        let conv = self.live_conversation(cid)?;
        if conv.state != ConversationState::Queued {
            return Err(ApiError::conflict(format!(
                "Conversation is {:?}, not queued",
                conv.state
            )));
        }
        if let Some(t) = conv.ticket.as_mut() {
            t.assignee_id = Some(agent.id.clone());
        }
        tracing::info!(conversation = cid, agent = %agent.name, "agent accepted");
        conv.agent = Some(agent);
        conv.state = ConversationState::Active;
        Ok(())
    }

    /// Agent unassigns themself: back to queued, no webhook.
    pub(super) fn leave(&mut self, cid: &str) -> Result<(), ApiError> {
        let conv = self.live_conversation(cid)?;
        if conv.state != ConversationState::Active || conv.agent.is_none() {
            return Err(ApiError::conflict("No agent is assigned"));
        }
        conv.agent = None;
        if let Some(t) = conv.ticket.as_mut() {
            t.assignee_id = None;
        }
        conv.state = ConversationState::Queued;
        tracing::info!(conversation = cid, "agent left, back to queue");
        Ok(())
    }

    /// Reassigns the ticket; the next agent message carries the new agent id.
    pub(super) fn transfer(&mut self, cid: &str, agent_name: &str) -> Result<(), ApiError> {
        let agent = self.agent_named(cid, agent_name)?;
        let conv = self.live_conversation(cid)?;
        match &conv.agent {
            Some(current) if conv.state == ConversationState::Active => {
                if current.id == agent.id {
                    return Err(ApiError::conflict(
                        "The ticket is already assigned to that agent",
                    ));
                }
            }
            _ => return Err(ApiError::conflict("No agent is assigned")),
        }
        if let Some(t) = conv.ticket.as_mut() {
            t.assignee_id = Some(agent.id.clone());
        }
        tracing::info!(conversation = cid, agent = %agent.name, "ticket transferred");
        conv.agent = Some(agent);
        Ok(())
    }
}

/// A message the Agent Workspace writes into the conversation.
struct WorkspaceMessage {
    author: Value,
    content: Value,
    metadata: Map<String, Value>,
    agent_name: Option<String>,
    activity: Option<&'static str>,
}

/// Records a message from the Agent Workspace and sends `conversation:message`.
fn emit_workspace_message(
    sim: &Arc<Zendesk>,
    st: &mut SimState,
    cid: &str,
    m: WorkspaceMessage,
) -> String {
    let WorkspaceMessage {
        author,
        content,
        metadata,
        agent_name,
        activity,
    } = m;
    let conv = &st.conversations[cid];
    let aw_integration = st.apps[&conv.app_id]
        .agent_workspace()
        .integration_id
        .clone();
    let source = json!({"type": AGENT_WORKSPACE_TYPE, "integrationId": aw_integration});
    let mut message = message_json(author, content, source, &metadata);
    if let Some(kind) = activity {
        message["activity"] = json!({"type": kind});
    }
    let id = message["id"].as_str().unwrap_or_default().to_string();
    let conv = st.conversations.get_mut(cid).expect("conversation checked");
    conv.record(MessageRecord::new(
        message.clone(),
        Direction::Outbound,
        agent_name,
        activity,
    ));
    let payload = json!({"conversation": conversation_ref(st, cid), "message": message});
    webhook::publish(
        sim,
        st,
        cid,
        "conversation:message",
        payload,
        Audience::Switchboard(Vec::new()),
    );
    id
}

/// Agent (or trigger, `bot`) reply from the desktop. Returns the message id.
pub(super) fn agent_message(
    sim: &Arc<Zendesk>,
    st: &mut SimState,
    cid: &str,
    text: &str,
    agent_name: &str,
    trigger: bool,
) -> Result<String, ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::bad_request("text is limited to 4096 characters"));
    }
    let conv = st.live_conversation(cid)?;
    if !matches!(
        conv.state,
        ConversationState::Queued | ConversationState::Active
    ) {
        return Err(ApiError::conflict(format!(
            "Conversation is {:?}: no open ticket in the Agent Workspace",
            conv.state
        )));
    }
    let (author, agent_id, name) = if trigger {
        (
            json!({"type": "business", "displayName": BUSINESS_NAME}),
            TRIGGER_AGENT_ID.to_string(),
            None,
        )
    } else {
        // Replying to an unassigned ticket assigns it [U].
        let agent = match conv.agent.clone() {
            Some(a) => a,
            None => {
                let a = st.agent_named(cid, agent_name)?;
                let conv = st.live_conversation(cid)?;
                if let Some(t) = conv.ticket.as_mut() {
                    t.assignee_id = Some(a.id.clone());
                }
                conv.agent = Some(a.clone());
                conv.state = ConversationState::Active;
                a
            }
        };
        (
            json!({"type": "business", "displayName": agent.name, "avatarUrl": agent.avatar_url()}),
            agent.id.clone(),
            Some(agent.name.clone()),
        )
    };
    let mut metadata = Map::new();
    metadata.insert(AGENT_ID_KEY.to_string(), json!(agent_id));
    let message = WorkspaceMessage {
        author,
        content: json!({"type": "text", "text": text}),
        metadata,
        agent_name: name,
        activity: None,
    };
    let id = emit_workspace_message(sim, st, cid, message);
    let app = st.conversations[cid].app_id.clone();
    st.stats.bump(Some(&app), |s| &mut s.agent_messages);
    Ok(id)
}

/// Agent typing: a business `conversation:typing` only with `agent_typing_events`
/// (the real platform sends none for personal conversations).
pub(super) fn agent_typing(
    sim: &Arc<Zendesk>,
    st: &mut SimState,
    cid: &str,
) -> Result<bool, ApiError> {
    let conv = st.live_conversation(cid)?;
    let agent = match (&conv.agent, conv.state) {
        (Some(a), ConversationState::Active) => a.clone(),
        _ => return Err(ApiError::conflict("No agent is assigned")),
    };
    let app = conv.app_id.clone();
    if !st.knobs.agent_typing_events(&app) {
        return Ok(false);
    }
    let payload = json!({
        "conversation": conversation_ref(st, cid),
        "activity": {
            "type": "typing:start",
            "author": {"type": "business", "displayName": agent.name, "avatarUrl": agent.avatar_url()},
            "source": {"type": AGENT_WORKSPACE_TYPE},
        },
    });
    webhook::publish(
        sim,
        st,
        cid,
        "conversation:typing",
        payload,
        Audience::Switchboard(Vec::new()),
    );
    Ok(true)
}

/// Agent solves and closes the ticket: a `ticket:closed` activity message, then
/// the Agent Workspace hands control back (`close_mode`).
pub(super) fn end(sim: &Arc<Zendesk>, st: &mut SimState, cid: &str) -> Result<(), ApiError> {
    let conv = st.live_conversation(cid)?;
    let ticket = conv
        .ticket
        .as_mut()
        .filter(|t| t.is_open())
        .ok_or_else(|| ApiError::conflict("No open ticket"))?;
    ticket.status = TicketStatus::Closed;
    ticket.closed_at = Some(now_iso());
    conv.state = ConversationState::Ended;
    conv.agent = None;
    let app_id = conv.app_id.clone();
    let active = conv.active.clone();
    tracing::info!(conversation = cid, "ticket closed");
    st.stats.bump(Some(&app_id), |s| &mut s.tickets_closed);

    let closed = WorkspaceMessage {
        author: json!({"type": "business", "subtypes": ["activity"], "displayName": BUSINESS_NAME}),
        content: json!({"type": "text", "text": "Ticket closed"}),
        metadata: Map::new(),
        agent_name: None,
        activity: Some("ticket:closed"),
    };
    emit_workspace_message(sim, st, cid, closed);
    let app = &st.apps[&app_id];
    let aw = app.agent_workspace().clone();
    if active.as_deref() != Some(aw.id.as_str()) {
        // Control already left the Agent Workspace (e.g. the relay took it back).
        return Ok(());
    }
    let reason = Some("ticketClosed");
    match st.knobs.close_mode(&app_id) {
        CloseMode::Release => switchboard::release(sim, st, cid, &Map::new(), reason),
        CloseMode::PassNext => {
            // The Agent Workspace's next, else the switchboard default [U].
            let target = aw
                .next_id
                .clone()
                .unwrap_or_else(|| app.switchboard.default_id.clone());
            let workspace = super::Caller {
                app_id: app_id.clone(),
                scope: super::Scope::App,
                integration_id: Some(aw.integration_id.clone()),
            };
            switchboard::pass(sim, st, &workspace, cid, &target, &Map::new(), reason)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, author: &str, text: &str) -> MessageRecord {
        let mut m = message_json(
            json!({"type": author}),
            json!({"type": "text", "text": text}),
            json!({"type": "api:conversations"}),
            &Map::new(),
        );
        m["id"] = json!(id);
        MessageRecord::new(m, Direction::Inbound, None, None)
    }

    #[test]
    fn metadata_becomes_ticket_fields_tags_group_and_requester() {
        let messages: Vec<MessageRecord> = (0..15)
            .map(|i| record(&format!("m{i}"), "user", &format!("line {i}")))
            .collect();
        let meta: Map<String, Value> = serde_json::from_value(json!({
            "first_message_id": "m12",
            "dataCapture.ticketField.360012345678": "billing",
            "dataCapture.ticketField.42": 7,
            "dataCapture.systemField.tags": "ai_handoff vip,refund",
            "dataCapture.systemField.group_id": "6510394394139",
            "dataCapture.systemField.requester.name": "Ada",
            "dataCapture.systemField.requester.email": "ada@example.com",
            "dataCapture.systemField.priority": "high",
            "session": "s-1",
        }))
        .unwrap();
        let t = Ticket::from_metadata(1001, &meta, &messages, 10, ("Fallback".into(), None));
        let v = t.view();
        assert_eq!(v["fields"]["360012345678"], "billing");
        assert_eq!(v["fields"]["42"], 7);
        assert_eq!(v["tags"], json!(["ai_handoff", "vip", "refund"]));
        assert_eq!(v["group_id"], "6510394394139");
        assert_eq!(
            v["requester"],
            json!({"name": "Ada", "email": "ada@example.com"})
        );
        assert_eq!(v["system_fields"]["priority"], "high");
        assert_eq!(v["metadata"]["session"], "s-1");
        let transcript: Vec<&str> = v["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap())
            .collect();
        assert_eq!(transcript, ["m12", "m13", "m14"]);
    }

    #[test]
    fn transcript_defaults_to_the_last_ten_and_requester_to_the_user() {
        let messages: Vec<MessageRecord> = (0..15)
            .map(|i| record(&format!("m{i}"), "user", "x"))
            .collect();
        let t = Ticket::from_metadata(
            1,
            &Map::new(),
            &messages,
            10,
            ("Ada Lovelace".into(), Some("ada@example.com".into())),
        );
        let v = t.view();
        assert_eq!(v["transcript"].as_array().unwrap().len(), 10);
        assert_eq!(v["transcript"][0]["id"], "m5");
        assert_eq!(v["requester"]["name"], "Ada Lovelace");
        assert_eq!(v["subject"], "Conversation with Ada Lovelace");
    }
}
