//! Agent desktop: the page at `/zendesk/desktop` and the sim-only control API
//! under `/sim/zendesk/conversations` that it (and the end-to-end tests) drive.
//! Same shape as the Genesys simulator's.

use super::{api, workspace, ApiError, AppFilter, Zendesk};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

const DESKTOP_PAGE: &str = include_str!("../../assets/zendesk-desktop.html");
const DEFAULT_AGENT_NAME: &str = "Agent";

pub(super) async fn page() -> Html<&'static str> {
    Html(DESKTOP_PAGE)
}

pub(super) fn control_routes() -> Router<Arc<Zendesk>> {
    Router::new()
        .route("/sim/zendesk/conversations", get(list))
        .route("/sim/zendesk/conversations/{id}", get(one))
        .route("/sim/zendesk/conversations/{id}/accept", post(accept))
        .route("/sim/zendesk/conversations/{id}/messages", post(message))
        .route("/sim/zendesk/conversations/{id}/typing", post(typing))
        .route("/sim/zendesk/conversations/{id}/leave", post(leave))
        .route("/sim/zendesk/conversations/{id}/transfer", post(transfer))
        .route("/sim/zendesk/conversations/{id}/end", post(end))
        .route("/sim/zendesk/conversations/{id}/remove", post(remove))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentBody {
    agent_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    text: String,
    /// A trigger (automation) message, `__zendesk_msg.agent.id: "__trigger"`.
    #[serde(default)]
    bot: bool,
    #[serde(default)]
    trigger: bool,
    /// Who replies when nobody accepted the ticket yet.
    agent_name: Option<String>,
}

/// Parses an optional JSON body (empty means defaults).
fn optional_json<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))
}

fn name_or_default(name: Option<String>) -> String {
    name.filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_AGENT_NAME.to_string())
}

fn agent_name(body: &[u8]) -> Result<String, ApiError> {
    let body: AgentBody = optional_json(body)?;
    Ok(name_or_default(body.agent_name))
}

fn view_of(sim: &Zendesk, cid: &str) -> Result<Json<Value>, ApiError> {
    let st = sim.lock();
    st.conversations
        .get(cid)
        .map(|c| Json(c.view(st.apps.get(&c.app_id))))
        .ok_or_else(ApiError::conversation_not_found)
}

async fn list(State(sim): State<Arc<Zendesk>>, Query(filter): Query<AppFilter>) -> Json<Value> {
    let st = sim.lock();
    let views: Vec<Value> = st
        .conversation_order
        .iter()
        .filter_map(|id| st.conversations.get(id))
        .filter(|c| filter.app().is_none_or(|a| a == c.app_id))
        .map(|c| c.view(st.apps.get(&c.app_id)))
        .collect();
    Json(Value::Array(views))
}

async fn one(
    State(sim): State<Arc<Zendesk>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    view_of(&sim, &id)
}

async fn accept(
    State(sim): State<Arc<Zendesk>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let name = agent_name(&body)?;
    sim.lock().accept(&id, &name)?;
    view_of(&sim, &id)
}

async fn message(
    State(sim): State<Arc<Zendesk>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: MessageBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))?;
    let name = name_or_default(body.agent_name);
    let mut st = sim.lock();
    let message_id = workspace::agent_message(
        &sim,
        &mut st,
        &id,
        &body.text,
        &name,
        body.bot || body.trigger,
    )?;
    Ok(Json(json!({ "id": message_id })))
}

async fn typing(
    State(sim): State<Arc<Zendesk>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut st = sim.lock();
    let sent = workspace::agent_typing(&sim, &mut st, &id)?;
    Ok(Json(json!({ "sent": sent })))
}

async fn leave(
    State(sim): State<Arc<Zendesk>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    sim.lock().leave(&id)?;
    view_of(&sim, &id)
}

async fn transfer(
    State(sim): State<Arc<Zendesk>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let name = agent_name(&body)?;
    sim.lock().transfer(&id, &name)?;
    view_of(&sim, &id)
}

async fn end(
    State(sim): State<Arc<Zendesk>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    {
        let mut st = sim.lock();
        workspace::end(&sim, &mut st, &id)?;
    }
    view_of(&sim, &id)
}

/// The conversation is deleted under the relay (fault scenario): `conversation:remove`.
async fn remove(
    State(sim): State<Arc<Zendesk>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    {
        let mut st = sim.lock();
        match st.conversations.get(&id) {
            Some(c) if !c.deleted => {}
            _ => return Err(ApiError::conversation_not_found()),
        }
        api::remove_conversation(&sim, &mut st, &id);
    }
    view_of(&sim, &id)
}
