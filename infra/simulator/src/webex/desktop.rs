//! Agent desktop: the page at `/webex/desktop` and the sim-only control API
//! under `/sim/webex/conversations` (same shape as the other simulators).
//! Agent actions become the events WxCC would send (spec §7.5).

use super::emit::{self, Target};
use super::{now_iso, now_ms, ApiError, OrgFilter, SimState, TaskMessage, Webex};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

static DESKTOP_PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    crate::desktop_page::DesktopPage {
        title: "Webex Contact Center",
        prefix: "webex",
        bot_label: "as flow (system)",
        agent_typing: false,
    }
    .render()
});
const DEFAULT_AGENT_NAME: &str = "Agent";

pub(super) async fn page() -> Html<&'static str> {
    Html(DESKTOP_PAGE.as_str())
}

pub(super) fn control_routes() -> Router<Arc<Webex>> {
    Router::new()
        .route("/sim/webex/conversations", get(list))
        .route("/sim/webex/conversations/{id}", get(one))
        .route("/sim/webex/conversations/{id}/accept", post(accept))
        .route("/sim/webex/conversations/{id}/messages", post(message))
        .route("/sim/webex/conversations/{id}/typing", post(typing))
        .route("/sim/webex/conversations/{id}/leave", post(leave))
        .route("/sim/webex/conversations/{id}/transfer", post(transfer))
        .route("/sim/webex/conversations/{id}/end", post(end))
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
    /// A flow message (`senderType: system`).
    #[serde(default)]
    bot: bool,
}

fn agent_name(body: &[u8]) -> Result<String, ApiError> {
    let body: AgentBody = if body.iter().all(u8::is_ascii_whitespace) {
        AgentBody::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))?
    };
    Ok(body
        .agent_name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_AGENT_NAME.to_string()))
}

fn conflict(message: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}

fn view_of(sim: &Webex, id: &str) -> Result<Json<Value>, ApiError> {
    sim.lock()
        .tasks
        .get(id)
        .map(|t| Json(t.view()))
        .ok_or_else(|| ApiError::not_found("Task not found"))
}

async fn list(State(sim): State<Arc<Webex>>, Query(f): Query<OrgFilter>) -> Json<Value> {
    let st = sim.lock();
    Json(Value::Array(
        st.task_order
            .iter()
            .filter_map(|id| st.tasks.get(id))
            .filter(|t| f.integration_id.as_ref().is_none_or(|o| o == &t.org_id))
            .map(|t| t.view())
            .collect(),
    ))
}

async fn one(
    State(sim): State<Arc<Webex>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    view_of(&sim, &id)
}

impl SimState {
    /// The task's state, or 404.
    fn state_of(&self, id: &str) -> Result<&'static str, ApiError> {
        self.tasks
            .get(id)
            .map(|t| t.state)
            .ok_or_else(|| ApiError::not_found("Task not found"))
    }

    /// The user id of desktop agent `name` in the task's org (made on first use).
    fn agent_id(&mut self, task_id: &str, name: &str) -> String {
        let org_id = self.tasks[task_id].org_id.clone();
        let org = self.orgs.get_mut(&org_id).expect("task's org exists");
        org.agents
            .entry(name.to_string())
            .or_insert_with(|| uuid::Uuid::new_v4().to_string())
            .clone()
    }
}

/// `task:connect` (offer) then `task:connected`; with `rona_next` the offer
/// times out instead: `task:ended` RONA and `task:parked` (re-queued).
async fn accept(
    State(sim): State<Arc<Webex>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let name = agent_name(&body)?;
    {
        let mut st = sim.lock();
        match st.state_of(&id)? {
            "ended" => return Err(conflict("Task has ended")),
            "active" => return Err(conflict("Task is already accepted; use transfer")),
            _ => {}
        }
        let agent = st.agent_id(&id, &name);
        let org_id = st.tasks[&id].org_id.clone();
        let data = json!({"taskId": id, "agentId": agent, "agentName": name,
            "channelType": "customMessaging", "createdTime": now_ms()});
        emit::emit(
            &sim,
            &mut st,
            &id,
            "task:connect",
            data.clone(),
            Target::Subscriptions,
        );
        if st.knobs.take(&org_id, |c| &mut c.rona_next) {
            let mut ended = data.clone();
            ended["terminatingParty"] = json!("System");
            ended["reason"] = json!("RONA Timer Expired");
            emit::emit(
                &sim,
                &mut st,
                &id,
                "task:ended",
                ended,
                Target::Subscriptions,
            );
            emit::emit(
                &sim,
                &mut st,
                &id,
                "task:parked",
                json!({"taskId": id}),
                Target::Subscriptions,
            );
            if let Some(t) = st.tasks.get_mut(&id) {
                t.state = "queued";
            }
        } else {
            if let Some(t) = st.tasks.get_mut(&id) {
                t.state = "active";
                t.agent = Some((agent, name));
            }
            emit::emit(
                &sim,
                &mut st,
                &id,
                "task:connected",
                data,
                Target::Subscriptions,
            );
        }
    }
    view_of(&sim, &id)
}

/// An agent (or, with `bot`, a flow) message: asset webhook, OUTBOUND.
async fn message(
    State(sim): State<Arc<Webex>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: MessageBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))?;
    if body.text.trim().is_empty() {
        return Err(ApiError::bad_request("text is required"));
    }
    let mut st = sim.lock();
    let state = st.state_of(&id)?;
    if state == "ended" {
        return Err(conflict("Task has ended"));
    }
    let task = st.tasks.get_mut(&id).expect("checked above");
    let agent = task.agent.clone();
    if !body.bot && agent.is_none() {
        return Err(conflict(
            "Accept the task before replying (or send as flow)",
        ));
    }
    let alias = uuid::Uuid::new_v4().to_string();
    let mut data = json!({"taskId": id, "origin": task.origin_id, "messageDirection": "OUTBOUND",
        "senderType": if body.bot { "system" } else { "agent" }, "channelType": "customMessaging",
        "channelParams": {"type": "text", "message": {"aliasId": alias, "text": body.text,
            "timestamp": now_ms(), "attachments": []}},
        "createdTime": now_ms()});
    if !body.bot {
        if let Some((agent_id, _)) = &agent {
            data["senderId"] = json!(agent_id);
        }
    }
    task.messages.push(TaskMessage {
        id: alias.clone(),
        direction: "outbound",
        text: body.text,
        at: now_iso(),
        sender_type: if body.bot { "system" } else { "agent" },
        sender: agent.filter(|_| !body.bot).map(|(_, name)| name),
    });
    let org_id = task.org_id.clone();
    st.stats.bump(Some(&org_id), |s| &mut s.agent_messages);
    emit::emit(
        &sim,
        &mut st,
        &id,
        "task-message:appended",
        data,
        Target::Asset,
    );
    Ok(Json(json!({ "id": alias })))
}

/// WxCC has no agent typing event: nothing is sent.
async fn typing(
    State(sim): State<Arc<Webex>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    sim.lock().state_of(&id)?;
    Ok(Json(
        json!({"sent": false, "reason": "Webex Contact Center sends no agent typing event"}),
    ))
}

/// The agent leaves without closing: the task is parked (re-queued).
async fn leave(
    State(sim): State<Arc<Webex>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    {
        let mut st = sim.lock();
        if st.state_of(&id)? != "active" {
            return Err(conflict("No agent on this task"));
        }
        if let Some(t) = st.tasks.get_mut(&id) {
            t.state = "queued";
            t.agent = None;
        }
        emit::emit(
            &sim,
            &mut st,
            &id,
            "task:parked",
            json!({"taskId": id}),
            Target::Subscriptions,
        );
    }
    view_of(&sim, &id)
}

/// Another agent takes the task: `task:connected` with the new agent.
async fn transfer(
    State(sim): State<Arc<Webex>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let name = agent_name(&body)?;
    {
        let mut st = sim.lock();
        if st.state_of(&id)? != "active" {
            return Err(conflict("Only an accepted task can be transferred"));
        }
        let agent = st.agent_id(&id, &name);
        if let Some(t) = st.tasks.get_mut(&id) {
            t.agent = Some((agent.clone(), name.clone()));
        }
        let data = json!({"taskId": id, "agentId": agent, "agentName": name,
            "channelType": "customMessaging", "createdTime": now_ms()});
        emit::emit(
            &sim,
            &mut st,
            &id,
            "task:connected",
            data,
            Target::Subscriptions,
        );
    }
    view_of(&sim, &id)
}

/// The agent ends the task: `task:ended`, terminatingParty Agent.
async fn end(
    State(sim): State<Arc<Webex>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    {
        let mut st = sim.lock();
        if st.state_of(&id)? == "ended" {
            return Err(conflict("Task has ended"));
        }
        let agent = st.tasks[&id].agent.clone().map(|(a, _)| a);
        if let Some(t) = st.tasks.get_mut(&id) {
            t.state = "ended";
            t.customer_connected = false;
        }
        let data = json!({"taskId": id, "agentId": agent, "terminatingParty": "Agent",
            "reason": "Agent Left", "channelType": "customMessaging", "createdTime": now_ms()});
        emit::emit(
            &sim,
            &mut st,
            &id,
            "task:ended",
            data,
            Target::Subscriptions,
        );
    }
    view_of(&sim, &id)
}
