//! Agent desktop: the page at `/genesys/desktop` and the sim-only control API
//! under `/sim/genesys/conversations` that it (and the end-to-end tests) drive.

use super::conversations::{send_agent_text, send_agent_typing};
use super::{ApiError, Genesys, IntegrationFilter};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

static DESKTOP_PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    crate::desktop_page::DesktopPage {
        title: "Genesys Cloud",
        prefix: "genesys",
        bot_label: "as bot",
        agent_typing: true,
    }
    .render()
});
const DEFAULT_AGENT_NAME: &str = "Agent";

pub(super) async fn page() -> Html<&'static str> {
    Html(DESKTOP_PAGE.as_str())
}

pub(super) fn control_routes() -> Router<Arc<Genesys>> {
    Router::new()
        .route("/sim/genesys/conversations", get(list))
        .route("/sim/genesys/conversations/{id}", get(one))
        .route("/sim/genesys/conversations/{id}/accept", post(accept))
        .route("/sim/genesys/conversations/{id}/messages", post(message))
        .route("/sim/genesys/conversations/{id}/typing", post(typing))
        .route("/sim/genesys/conversations/{id}/leave", post(leave))
        .route("/sim/genesys/conversations/{id}/transfer", post(transfer))
        .route("/sim/genesys/conversations/{id}/end", post(end))
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
    #[serde(default)]
    bot: bool,
}

/// Parses an optional JSON body (empty means defaults).
fn optional_json<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))
}

fn agent_name(body: &[u8]) -> Result<String, ApiError> {
    let body: AgentBody = optional_json(body)?;
    Ok(body
        .agent_name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_AGENT_NAME.to_string()))
}

fn view_of(sim: &Genesys, cid: &str) -> Result<Json<Value>, ApiError> {
    let st = sim.lock();
    st.conversations
        .get(cid)
        .map(|c| Json(c.view(Instant::now())))
        .ok_or_else(|| ApiError::not_found(format!("Conversation {cid} not found")))
}

async fn list(
    State(sim): State<Arc<Genesys>>,
    Query(filter): Query<IntegrationFilter>,
) -> Json<Value> {
    let st = sim.lock();
    let now = Instant::now();
    let views: Vec<Value> = st
        .conversation_order
        .iter()
        .filter_map(|id| st.conversations.get(id))
        .filter(|c| {
            filter
                .integration_id
                .as_ref()
                .is_none_or(|i| *i == c.integration_id)
        })
        .map(|c| c.view(now))
        .collect();
    Json(Value::Array(views))
}

async fn one(
    State(sim): State<Arc<Genesys>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    view_of(&sim, &id)
}

async fn accept(
    State(sim): State<Arc<Genesys>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let name = agent_name(&body)?;
    sim.lock().accept(&id, &name)?;
    view_of(&sim, &id)
}

async fn message(
    State(sim): State<Arc<Genesys>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: MessageBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))?;
    let message_id = send_agent_text(&sim, &id, &body.text, body.bot)?;
    Ok(Json(json!({ "id": message_id })))
}

async fn typing(
    State(sim): State<Arc<Genesys>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sent = send_agent_typing(&sim, &id)?;
    Ok(Json(json!({ "sent": sent })))
}

async fn leave(
    State(sim): State<Arc<Genesys>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    sim.lock().leave(&id)?;
    view_of(&sim, &id)
}

async fn transfer(
    State(sim): State<Arc<Genesys>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let name = agent_name(&body)?;
    sim.lock().transfer(&id, &name)?;
    view_of(&sim, &id)
}

async fn end(
    State(sim): State<Arc<Genesys>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    sim.lock().end(&id)?;
    view_of(&sim, &id)
}
