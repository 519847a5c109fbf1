//! Agent desktop: the page at `/salesforce/desktop` and the sim-only control
//! API under `/sim/salesforce/conversations` (spec §6.7).

use super::{
    agent_subject, entry, iso_now, Agent, ApiError, IntegrationFilter, Salesforce, SimState,
    ViewMessage,
};
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
        title: "Salesforce Enhanced Chat",
        prefix: "salesforce",
        bot_label: "as bot",
        agent_typing: true,
    }
    .render()
});
const DEFAULT_AGENT_NAME: &str = "Agent";

pub(super) async fn page() -> Html<&'static str> {
    Html(DESKTOP_PAGE.as_str())
}

pub(super) fn control_routes() -> Router<Arc<Salesforce>> {
    Router::new()
        .route("/sim/salesforce/conversations", get(list))
        .route("/sim/salesforce/conversations/{id}", get(one))
        .route("/sim/salesforce/conversations/{id}/accept", post(accept))
        .route("/sim/salesforce/conversations/{id}/messages", post(message))
        .route("/sim/salesforce/conversations/{id}/typing", post(typing))
        .route("/sim/salesforce/conversations/{id}/leave", post(leave))
        .route(
            "/sim/salesforce/conversations/{id}/transfer",
            post(transfer),
        )
        .route("/sim/salesforce/conversations/{id}/end", post(end))
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
    /// A bot turn (`Chatbot` role).
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
        .unwrap_or_else(|| DEFAULT_AGENT_NAME.to_owned()))
}

fn view_of(sim: &Salesforce, id: &str) -> Result<Json<Value>, ApiError> {
    let st = sim.lock();
    st.conversations
        .get(id)
        .map(|c| Json(c.view(Instant::now())))
        .ok_or_else(|| ApiError::not_found(format!("Conversation {id} not found")))
}

fn open<'a>(st: &'a mut SimState, id: &str) -> Result<&'a mut super::Conversation, ApiError> {
    let c = st
        .conversations
        .get_mut(id)
        .ok_or_else(|| ApiError::not_found(format!("Conversation {id} not found")))?;
    if c.state == "ended" {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "The messaging session has ended",
        ));
    }
    Ok(c)
}

fn participant(op: &str, a: &Agent) -> Value {
    entry(
        "ParticipantChanged",
        "System",
        "system",
        "System",
        json!({"entryType": "ParticipantChanged", "entries": [{"operation": op,
            "participant": {"role": "Agent", "appType": "agent", "subject": a.subject},
            "displayName": a.name}]}),
    )
}

fn join(st: &mut SimState, id: &str, name: &str) -> Result<(), ApiError> {
    let c = open(st, id)?;
    let agent = Agent {
        name: name.to_owned(),
        subject: agent_subject(name),
    };
    c.agent = Some(agent.clone());
    c.state = "active";
    c.routing_status = "ROUTED";
    st.publish(
        id,
        "CONVERSATION_PARTICIPANT_CHANGED",
        participant("add", &agent),
    );
    Ok(())
}

async fn list(
    State(sim): State<Arc<Salesforce>>,
    Query(filter): Query<IntegrationFilter>,
) -> Json<Value> {
    let st = sim.lock();
    let now = Instant::now();
    Json(Value::Array(
        st.order
            .iter()
            .filter_map(|id| st.conversations.get(id))
            .filter(|c| {
                filter
                    .integration_id
                    .as_ref()
                    .is_none_or(|i| *i == c.integration)
            })
            .map(|c| c.view(now))
            .collect(),
    ))
}

async fn one(
    State(sim): State<Arc<Salesforce>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    view_of(&sim, &id)
}

async fn accept(
    State(sim): State<Arc<Salesforce>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let name = agent_name(&body)?;
    {
        let mut st = sim.lock();
        if let Some(old) = open(&mut st, &id)?.agent.take() {
            st.publish(
                &id,
                "CONVERSATION_PARTICIPANT_CHANGED",
                participant("remove", &old),
            );
        }
        join(&mut st, &id, &name)?;
    }
    view_of(&sim, &id)
}

async fn message(
    State(sim): State<Arc<Salesforce>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: MessageBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))?;
    if body.text.trim().is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    let mut st = sim.lock();
    let c = open(&mut st, &id)?;
    let (role, name, subject) = match (&c.agent, body.bot) {
        (_, true) => ("Chatbot", "Bot".to_owned(), "bot".to_owned()),
        (Some(a), false) => ("Agent", a.name.clone(), a.subject.clone()),
        (None, false) => (
            "Agent",
            DEFAULT_AGENT_NAME.to_owned(),
            agent_subject(DEFAULT_AGENT_NAME),
        ),
    };
    let e = entry(
        "Message",
        role,
        &subject,
        &name,
        json!({"entryType": "Message", "id": uuid::Uuid::new_v4().to_string(), "abstractMessage": {
            "messageType": "StaticContentMessage", "id": uuid::Uuid::new_v4().to_string(),
            "staticContent": {"formatType": "Text", "text": body.text}}, "messageReason": null}),
    );
    let identifier = e["identifier"].as_str().unwrap_or_default().to_owned();
    c.messages.push(ViewMessage {
        id: identifier.clone(),
        direction: "outbound",
        text: body.text.clone(),
        at: iso_now(),
        bot: body.bot,
        sender: Some(name),
        at_instant: Some(Instant::now()),
    });
    st.publish(&id, "CONVERSATION_MESSAGE", e);
    Ok(Json(json!({"id": identifier})))
}

async fn typing(
    State(sim): State<Arc<Salesforce>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut st = sim.lock();
    let c = open(&mut st, &id)?;
    let Some(a) = c.agent.clone() else {
        return Ok(Json(json!({"sent": false})));
    };
    st.publish(
        &id,
        "CONVERSATION_TYPING_STARTED_INDICATOR",
        entry(
            "TypingStartedIndicator",
            "Agent",
            &a.subject,
            &a.name,
            json!({"entryType": "TypingStartedIndicator", "id": uuid::Uuid::new_v4().to_string()}),
        ),
    );
    Ok(Json(json!({"sent": true})))
}

async fn leave(
    State(sim): State<Arc<Salesforce>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    {
        let mut st = sim.lock();
        let c = open(&mut st, &id)?;
        let Some(a) = c.agent.take() else {
            return Err(ApiError::bad_request("No agent on this conversation"));
        };
        c.state = "queued";
        c.routing_status = "NEEDS_ROUTING";
        st.publish(
            &id,
            "CONVERSATION_PARTICIPANT_CHANGED",
            participant("remove", &a),
        );
    }
    view_of(&sim, &id)
}

async fn transfer(
    State(sim): State<Arc<Salesforce>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let name = agent_name(&body)?;
    {
        let mut st = sim.lock();
        let c = open(&mut st, &id)?;
        let old = c.agent.take();
        c.routing_status = "TRANSFER";
        st.publish(
            &id,
            "CONVERSATION_ROUTING_RESULT",
            entry(
                "RoutingResult",
                "Router",
                "router",
                "Omni-Channel",
                json!({"entryType": "RoutingResult", "routingType": "Transfer", "failureType": "None",
                       "estimatedWaitTime": {"isEWTRequested": false}}),
            ),
        );
        if let Some(old) = old {
            st.publish(
                &id,
                "CONVERSATION_PARTICIPANT_CHANGED",
                participant("remove", &old),
            );
        }
        join(&mut st, &id, &name)?;
    }
    view_of(&sim, &id)
}

async fn end(
    State(sim): State<Arc<Salesforce>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    {
        let mut st = sim.lock();
        let c = open(&mut st, &id)?;
        c.state = "ended";
        c.session_active = false;
        c.agent = None;
        st.publish(
            &id,
            "CONVERSATION_SESSION_STATUS_CHANGED",
            entry(
                "SessionStatusChanged",
                "System",
                "system",
                "System",
                json!({"entryType": "SessionStatusChanged", "sessionStatus": "Ended", "sessionEndedByRole": "Agent"}),
            ),
        );
    }
    view_of(&sim, &id)
}
