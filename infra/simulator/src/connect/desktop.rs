//! Agent desktop: the page at `/connect/desktop` and the sim-only control API
//! under `/sim/connect/conversations` that it (and the end-to-end tests) drive.
//! Same shape as the Genesys one, so one conformance suite drives both.

use super::contacts::{Contact, EndReason, Item, TEXT_PLAIN};
use super::{streaming, ApiError, Connect, InstanceFilter};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

const DESKTOP_PAGE: &str = include_str!("../../assets/connect-desktop.html");
const DEFAULT_AGENT_NAME: &str = "Agent";

pub(super) async fn page() -> Html<&'static str> {
    Html(DESKTOP_PAGE)
}

pub(super) fn control_routes() -> Router<Arc<Connect>> {
    Router::new()
        .route("/sim/connect/conversations", get(list))
        .route("/sim/connect/conversations/{id}", get(one))
        .route("/sim/connect/conversations/{id}/accept", post(accept))
        .route("/sim/connect/conversations/{id}/messages", post(message))
        .route("/sim/connect/conversations/{id}/typing", post(typing))
        .route("/sim/connect/conversations/{id}/leave", post(leave))
        .route("/sim/connect/conversations/{id}/transfer", post(transfer))
        .route("/sim/connect/conversations/{id}/end", post(end))
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
    /// `text/plain` (default) or `text/markdown`.
    content_type: Option<String>,
    /// Send as the SYSTEM participant (flow or bot text); allowed without an agent.
    #[serde(default)]
    system: bool,
    /// Genesys' name for the same thing.
    #[serde(default)]
    bot: bool,
}

/// Parses an optional JSON body (empty means defaults).
fn optional_json<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("Invalid body: {e}")))
}

fn agent_name(body: &[u8]) -> Result<String, ApiError> {
    let body: AgentBody = optional_json(body)?;
    Ok(body
        .agent_name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_AGENT_NAME.to_string()))
}

/// The contact named by a view id or any ContactId of its chain.
fn resolve(sim: &Connect, id: &str) -> Result<String, ApiError> {
    sim.lock()
        .contact_by_any_id(id)
        .map(|c| c.id.clone())
        .ok_or_else(|| ApiError::not_found(format!("Contact {id} not found")))
}

fn view_of(sim: &Connect, cid: &str) -> Result<Json<Value>, ApiError> {
    let st = sim.lock();
    st.contacts
        .get(cid)
        .map(|c| Json(c.view(Instant::now())))
        .ok_or_else(|| ApiError::not_found(format!("Contact {cid} not found")))
}

/// Runs an agent action, publishes what it created, returns the view.
fn act(
    sim: &Arc<Connect>,
    id: &str,
    action: impl FnOnce(&mut Contact) -> Result<Vec<Item>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let cid = resolve(sim, id)?;
    {
        let mut st = sim.lock();
        let items = st.agent_action(&cid, action)?;
        streaming::publish(sim, &mut st, &cid, items);
    }
    view_of(sim, &cid)
}

async fn list(
    State(sim): State<Arc<Connect>>,
    Query(filter): Query<InstanceFilter>,
) -> Json<Value> {
    let st = sim.lock();
    let now = Instant::now();
    let views: Vec<Value> = st
        .contact_order
        .iter()
        .filter_map(|id| st.contacts.get(id))
        .filter(|c| filter.instance().is_none_or(|i| i == c.instance_id))
        .map(|c| c.view(now))
        .collect();
    Json(Value::Array(views))
}

async fn one(
    State(sim): State<Arc<Connect>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cid = resolve(&sim, &id)?;
    view_of(&sim, &cid)
}

async fn accept(
    State(sim): State<Arc<Connect>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let name = agent_name(&body)?;
    let view = act(&sim, &id, |c| c.accept(&name))?;
    tracing::info!(contact = %id, agent = %name, "agent accepted");
    Ok(view)
}

async fn message(
    State(sim): State<Arc<Connect>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: MessageBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_request(format!("Invalid body: {e}")))?;
    let content_type = body.content_type.as_deref().unwrap_or(TEXT_PLAIN);
    let cid = resolve(&sim, &id)?;
    let mut st = sim.lock();
    let item =
        st.contact_mut(&cid)?
            .agent_message(&body.text, content_type, body.system || body.bot)?;
    let item_id = item.id.clone();
    streaming::publish(&sim, &mut st, &cid, vec![item]);
    Ok(Json(json!({ "id": item_id })))
}

async fn typing(
    State(sim): State<Arc<Connect>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cid = resolve(&sim, &id)?;
    let mut st = sim.lock();
    let item = st.contact_mut(&cid)?.agent_typing()?;
    let item_id = item.id.clone();
    streaming::publish(&sim, &mut st, &cid, vec![item]);
    Ok(Json(json!({ "sent": true, "id": item_id })))
}

async fn leave(
    State(sim): State<Arc<Connect>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    act(&sim, &id, Contact::leave)
}

async fn transfer(
    State(sim): State<Arc<Connect>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let name = agent_name(&body)?;
    act(&sim, &id, |c| c.transfer(&name))
}

async fn end(
    State(sim): State<Arc<Connect>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    act(&sim, &id, |c| {
        if c.is_ended() {
            return Err(ApiError::conflict("Contact already ended"));
        }
        Ok(c.end(EndReason::Agent))
    })
}
