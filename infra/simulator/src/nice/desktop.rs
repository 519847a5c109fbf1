//! Agent desktop: the page at `/nice/desktop` and the sim-only control API
//! under `/sim/nice/conversations/{contactId}` (same shape as the other simulators).

use super::{agent_message_id, byoc, now_iso, ApiError, ChannelFilter, Message, Nice};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

static DESKTOP_PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    crate::desktop_page::DesktopPage {
        title: "NICE CXone",
        prefix: "nice",
        bot_label: "as bot",
        agent_typing: true,
    }
    .render()
});
const DEFAULT_AGENT_NAME: &str = "Agent";

pub(super) async fn page() -> Html<&'static str> {
    Html(DESKTOP_PAGE.as_str())
}

pub(super) fn control_routes() -> Router<Arc<Nice>> {
    Router::new()
        .route("/sim/nice/conversations", get(list))
        .route("/sim/nice/conversations/{id}", get(one))
        .route("/sim/nice/conversations/{id}/accept", post(accept))
        .route("/sim/nice/conversations/{id}/messages", post(message))
        .route("/sim/nice/conversations/{id}/typing", post(typing))
        .route("/sim/nice/conversations/{id}/leave", post(leave))
        .route("/sim/nice/conversations/{id}/transfer", post(transfer))
        .route("/sim/nice/conversations/{id}/end", post(end))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentBody {
    agent_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    text: String,
    /// A Studio bot message: no `authorUser`.
    #[serde(default)]
    bot: bool,
    agent_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypingBody {
    #[serde(default = "yes")]
    typing: bool,
}

fn yes() -> bool {
    true
}

impl Default for TypingBody {
    fn default() -> Self {
        Self { typing: true }
    }
}

fn optional_json<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))
}

fn name_of(name: Option<String>) -> String {
    name.filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_AGENT_NAME.to_string())
}

fn not_found() -> ApiError {
    ApiError::not_found("conversation not found")
}

fn view_of(sim: &Nice, id: &str) -> Result<Json<Value>, ApiError> {
    sim.lock()
        .contacts
        .get(id)
        .map(|c| Json(c.view()))
        .ok_or_else(not_found)
}

async fn list(State(sim): State<Arc<Nice>>, Query(f): Query<ChannelFilter>) -> Json<Value> {
    let st = sim.lock();
    Json(Value::Array(
        st.order
            .iter()
            .filter_map(|id| st.contacts.get(id))
            .filter(|c| f.integration_id.as_ref().is_none_or(|i| *i == c.channel_id))
            .map(|c| c.view())
            .collect(),
    ))
}

async fn one(
    State(sim): State<Arc<Nice>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    view_of(&sim, &id)
}

/// Assigns the contact (`inboxAssignee`), status `open`; `None` unassigns.
fn assign(sim: &Nice, id: &str, name: Option<&str>) -> Result<(), ApiError> {
    let mut st = sim.lock();
    let channel = st
        .contacts
        .get(id)
        .ok_or_else(not_found)?
        .channel_id
        .clone();
    let agent = match name {
        Some(n) => Some(st.tenants.get_mut(&channel).ok_or_else(not_found)?.agent(n)),
        None => None,
    };
    let c = st.contacts.get_mut(id).ok_or_else(not_found)?;
    if c.closed() {
        return Err(ApiError::bad_request("the contact is closed"));
    }
    if agent.is_some() {
        c.status = "open".into();
    }
    c.assignee = agent;
    Ok(())
}

async fn accept(
    State(sim): State<Arc<Nice>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: AgentBody = optional_json(&body)?;
    assign(&sim, &id, Some(&name_of(b.agent_name)))?;
    view_of(&sim, &id)
}

async fn transfer(
    State(sim): State<Arc<Nice>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: AgentBody = optional_json(&body)?;
    if sim
        .lock()
        .contacts
        .get(&id)
        .ok_or_else(not_found)?
        .assignee
        .is_none()
    {
        return Err(ApiError::bad_request("nobody to transfer from"));
    }
    assign(&sim, &id, Some(&name_of(b.agent_name)))?;
    view_of(&sim, &id)
}

/// Back to the queue: `inboxAssignee` null, status unchanged (spec §8.3).
async fn leave(
    State(sim): State<Arc<Nice>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    assign(&sim, &id, None)?;
    view_of(&sim, &id)
}

/// The agent closes the contact.
async fn end(
    State(sim): State<Arc<Nice>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    {
        let mut st = sim.lock();
        let c = st.contacts.get_mut(&id).ok_or_else(not_found)?;
        c.status = "closed".into();
    }
    view_of(&sim, &id)
}

fn author_user(agent: Option<&(u64, String)>) -> Value {
    match agent {
        Some((id, name)) => json!({"id": id, "firstName": name, "surname": "", "nickname": name,
                                   "isBotUser": false}),
        None => Value::Null,
    }
}

/// An agent (or bot) reply: delivered to the relay's outbound callback.
async fn message(
    State(sim): State<Arc<Nice>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: MessageBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))?;
    if b.text.trim().is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    let (message_id, outbound) = {
        let mut st = sim.lock();
        let c = st.contacts.get(&id).ok_or_else(not_found)?;
        if c.closed() {
            return Err(ApiError::bad_request("the contact is closed"));
        }
        let channel = c.channel_id.clone();
        let assignee = c.assignee.clone();
        let agent = match (b.bot, assignee) {
            (true, _) => None,
            (false, Some(a)) => Some(a),
            (false, None) => Some(
                st.tenants
                    .get_mut(&channel)
                    .ok_or_else(not_found)?
                    .agent(&name_of(b.agent_name.clone())),
            ),
        };
        let brand = st.tenants.get(&channel).map(|t| t.brand_id).unwrap_or(0);
        let c = st.contacts.get_mut(&id).ok_or_else(not_found)?;
        let at = now_iso();
        let mid = agent_message_id(&c.thread_id, agent.as_ref().map(|a| a.0), &at, &b.text);
        let outbound = json!({
            "brand": {"id": brand},
            "thread": {"idOnExternalPlatform": c.thread_id},
            "messageContent": {"type": "TEXT", "payload": {"text": b.text}},
            "endUserRecipients": [{"idOnExternalPlatform": c.customer["idOnExternalPlatform"],
                "name": c.customer["firstName"], "isPrimary": true, "isPrivate": true}],
            "authorUser": author_user(agent.as_ref()),
            "attachments": [],
            "createdAtWithMilliseconds": at,
        });
        c.messages.push(Message {
            id: mid.clone(),
            direction: "outbound",
            text: b.text.clone(),
            at,
            id_on_external_platform: None,
            sender: Some(agent.map(|a| a.1).unwrap_or_else(|| "Bot".into())),
        });
        st.stats.bump(Some(&channel), |s| &mut s.agent_messages);
        (mid, outbound)
    };
    byoc::queue(&sim, &id, "outbound", outbound, Some(message_id.clone()));
    Ok(Json(json!({"id": message_id})))
}

/// Agent typing on/off: a sender-action callback.
async fn typing(
    State(sim): State<Arc<Nice>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: TypingBody = optional_json(&body)?;
    let action = {
        let st = sim.lock();
        let c = st.contacts.get(&id).ok_or_else(not_found)?;
        if c.closed() {
            return Err(ApiError::bad_request("the contact is closed"));
        }
        let brand = st
            .tenants
            .get(&c.channel_id)
            .map(|t| t.brand_id)
            .unwrap_or(0);
        json!({"brand": {"id": brand},
            "senderAction": {"action": if b.typing { "isTypingOn" } else { "isTypingOff" }},
            "authorUser": author_user(c.assignee.as_ref()),
            "createdAtWithMilliseconds": now_iso()})
    };
    byoc::queue(&sim, &id, "sender-action", action, None);
    Ok(Json(json!({"sent": true})))
}
