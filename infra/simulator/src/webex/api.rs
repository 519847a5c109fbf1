//! The platform side: `POST /webex/v1/access_token` (refresh grant, W3), the
//! Tasks API of the BYO custom messaging channel (W1) under `v1` and `v2`,
//! and Subscriptions (W5).

use super::emit::{self, Target};
use super::{
    check_destination, now_iso, now_ms, AccessToken, ApiError, SimState, Subscription, Task,
    TaskMessage, Webex, EVENT_TYPES, MAX_EVENT_TYPES, SECRET_LEN,
};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Refresh tokens live ~90 days (W3).
const REFRESH_EXPIRES_IN: u64 = 7_776_000;

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `POST /webex/v1/access_token`, form `grant_type=refresh_token&client_id&client_secret&refresh_token`.
pub(super) async fn access_token(
    State(sim): State<Arc<Webex>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut st = sim.lock();
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only refresh_token is simulated",
        );
    }
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let Some(org_id) = st.refresh_tokens.get(&presented).cloned() else {
        st.stats.bump(None, |s| &mut s.token_refusals);
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The refresh token provided is expired, revoked, malformed, or invalid.",
        );
    };
    let org = &st.orgs[&org_id];
    if form.get("client_id") != Some(&org.client_id)
        || form.get("client_secret") != Some(&org.client_secret)
    {
        st.stats.bump(Some(&org_id), |s| &mut s.token_refusals);
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let expires_in = st.knobs.token_expires_in(&org_id);
    let access = format!("wxat-{}", uuid::Uuid::new_v4().simple());
    st.access_tokens.insert(
        access.clone(),
        AccessToken {
            org_id: org_id.clone(),
            expires: Instant::now() + Duration::from_secs(expires_in),
        },
    );
    let refresh = if st.knobs.rotate_refresh(&org_id) {
        let fresh = format!("wxrt-{}", uuid::Uuid::new_v4().simple());
        st.refresh_tokens.remove(&presented);
        st.refresh_tokens.insert(fresh.clone(), org_id.clone());
        fresh
    } else {
        presented
    };
    st.stats.bump(Some(&org_id), |s| &mut s.tokens_issued);
    Json(
        json!({"access_token": access, "expires_in": expires_in, "refresh_token": refresh,
        "refresh_token_expires_in": REFRESH_EXPIRES_IN, "token_type": "Bearer"}),
    )
    .into_response()
}

/// Latency, bearer token, call counting and injected failures; returns the org id.
async fn authorize(sim: &Webex, headers: &HeaderMap, version: &str) -> Result<String, ApiError> {
    if !matches!(version, "v1" | "v2") {
        return Err(ApiError::not_found("No such API version"));
    }
    let latency = sim.lock().faults.settings.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let mut st = sim.lock();
    let org_id = match st.access_tokens.get(&token) {
        Some(t) if Instant::now() < t.expires => t.org_id.clone(),
        _ => {
            st.stats.bump(None, |s| &mut s.api_calls);
            return Err(ApiError::invalid_token());
        }
    };
    st.stats.bump(Some(&org_id), |s| &mut s.api_calls);
    if let Some(status) = st.faults.take_api_failure(std::slice::from_ref(&org_id)) {
        st.stats.bump(Some(&org_id), |s| &mut s.api_errors_injected);
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut err = ApiError::new(code, "Simulated failure");
        if code == StatusCode::TOO_MANY_REQUESTS {
            err.message = "Too Many Requests".into();
            err.retry_after = Some(st.faults.settings.retry_after_secs);
        }
        return Err(err);
    }
    Ok(org_id)
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("The body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("Invalid JSON: {e}"))),
    }
}

/// A validated `channelParams` text message: `(aliasId, text)` (W1 rules).
fn channel_message(body: &Map<String, Value>) -> Result<(String, String), ApiError> {
    let params = body
        .get("channelParams")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_request("channelParams is required"))?;
    let kind = params
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !matches!(kind, "text" | "text-with-attachments") {
        return Err(ApiError::bad_request(
            "channelParams.type must be text or text-with-attachments",
        ));
    }
    let message = params
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_request("channelParams.message is required"))?;
    let alias = message
        .get("aliasId")
        .and_then(Value::as_str)
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("channelParams.message.aliasId is required"))?;
    if !message.get("timestamp").is_some_and(Value::is_i64) {
        return Err(ApiError::bad_request(
            "channelParams.message.timestamp must be epoch milliseconds",
        ));
    }
    let text = message
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut shown = text.to_string();
    if kind == "text-with-attachments" {
        let atts = message
            .get("attachments")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| ApiError::bad_request("attachments are required"))?;
        for a in atts {
            let url = a.get("url").and_then(Value::as_str).unwrap_or_default();
            if !url.starts_with("https://") {
                return Err(ApiError::bad_request(
                    "attachment URLs must be public HTTPS",
                ));
            }
            shown.push_str(&format!("\n[attachment] {url}"));
        }
    } else if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "channelParams.message.text is required",
        ));
    }
    Ok((alias.to_string(), shown.trim().to_string()))
}

fn accepted(status: StatusCode, org_id: &str, id: &str) -> Response {
    (
        status,
        Json(json!({"meta": {"orgId": org_id}, "data": {"id": id}})),
    )
        .into_response()
}

fn task_data(task: &Task, dest: &str, channel: &str) -> Value {
    json!({"taskId": task.id, "origin": task.origin_id, "destination": dest,
        "channelType": "customMessaging", "channel": channel, "createdTime": now_ms()})
}

/// `POST /webex/{v}/tasks`: 201 = accepted; `task:new` + `task:parked` or `task:failed` follow.
pub(super) async fn create_task(
    State(sim): State<Arc<Webex>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let org_id = authorize(&sim, &headers, &version).await?;
    let body = parse_object(&body)?;
    if body.get("channelType").and_then(Value::as_str) != Some("customMessaging") {
        return Err(ApiError::bad_request("channelType must be customMessaging"));
    }
    let origin = body.get("origin").and_then(Value::as_object);
    let origin_id = origin
        .and_then(|o| o.get("id"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("origin.id is required"))?
        .to_string();
    let origin_name = origin
        .and_then(|o| o.get("name"))
        .and_then(Value::as_str)
        .unwrap_or(&origin_id)
        .to_string();
    let destination = body.get("destination").and_then(Value::as_object);
    if destination
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
        != Some("businessAddress")
    {
        return Err(ApiError::bad_request(
            "destination.type must be businessAddress",
        ));
    }
    let dest_id = destination
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let channel = body
        .get("channel")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let globals = match body.get("globalVariables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) if m.values().all(|v| !v.is_object() && !v.is_array()) => m.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "globalVariables must be a flat object",
            ))
        }
    };
    let (alias, text) = channel_message(&body)?;

    let mut st = sim.lock();
    let org = st.orgs[&org_id].clone();
    // A retried create of the same first message is the same task [U].
    let open = st
        .tasks
        .values()
        .find(|t| t.org_id == org_id && t.origin_id == origin_id && t.state != "ended")
        .map(|t| (t.id.clone(), t.first_alias.clone()));
    if let Some((id, first)) = &open {
        if *first == alias {
            return Ok(accepted(StatusCode::CREATED, &org_id, id));
        }
    }
    let failure = if dest_id != org.business_address || channel != org.channel_name {
        Some((
            "CHANNEL_ASSET_UNDEFINED".to_string(),
            "No custom messaging asset for this destination/channel".to_string(),
        ))
    } else if let Some((id, _)) = &open {
        Some((
            "CONVERSATION_ALREADY_OPEN".to_string(),
            format!("Conversation already open with task {id}"),
        ))
    } else if st.knobs.take(&org_id, |c| &mut c.accept_then_fail_next) {
        Some((
            "CONVERSATION_ALREADY_OPEN".to_string(),
            "Conversation already open (simulated)".to_string(),
        ))
    } else {
        st.knobs
            .take_failed_reason(&org_id)
            .map(|r| (r, "Simulated failure".to_string()))
    };
    let id = uuid::Uuid::new_v4().to_string();
    let task = Task {
        id: id.clone(),
        org_id: org_id.clone(),
        origin_id,
        origin_name,
        first_alias: alias.clone(),
        global_variables: globals,
        state: if failure.is_some() {
            "ended"
        } else {
            "created"
        },
        agent: None,
        customer_connected: failure.is_none(),
        messages: vec![TaskMessage {
            id: alias,
            direction: "inbound",
            text,
            at: now_iso(),
            sender_type: "customer",
            sender: None,
        }],
        duplicate_inbound: Vec::new(),
        queue: None,
    };
    let data = task_data(&task, &dest_id, &channel);
    st.tasks.insert(id.clone(), task);
    st.task_order.push(id.clone());
    match failure {
        Some((reason, message)) => {
            st.stats.bump(Some(&org_id), |s| &mut s.tasks_failed);
            let mut data = data;
            data["reason"] = json!(reason);
            data["errorMessage"] = json!(message);
            emit::emit(
                &sim,
                &mut st,
                &id,
                "task:failed",
                data,
                Target::Subscriptions,
            );
        }
        None => {
            st.stats.bump(Some(&org_id), |s| &mut s.tasks_created);
            emit::emit(
                &sim,
                &mut st,
                &id,
                "task:new",
                data.clone(),
                Target::Subscriptions,
            );
            if let Some(t) = st.tasks.get_mut(&id) {
                t.state = "queued";
            }
            emit::emit(
                &sim,
                &mut st,
                &id,
                "task:parked",
                data,
                Target::Subscriptions,
            );
        }
    }
    Ok(accepted(StatusCode::CREATED, &org_id, &id))
}

/// The org's task `id`, or 404 (another org's task is not found either).
fn task_of<'a>(st: &'a mut SimState, org_id: &str, id: &str) -> Result<&'a mut Task, ApiError> {
    st.tasks
        .get_mut(id)
        .filter(|t| t.org_id == org_id)
        .ok_or_else(|| ApiError::not_found("Task not found"))
}

/// `POST /webex/{v}/tasks/{id}/messages`: a later customer message.
pub(super) async fn append(
    State(sim): State<Arc<Webex>>,
    Path((version, task_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let org_id = authorize(&sim, &headers, &version).await?;
    let body = parse_object(&body)?;
    if body.get("mediaType").and_then(Value::as_str) != Some("customMessaging") {
        return Err(ApiError::bad_request("mediaType must be customMessaging"));
    }
    let (alias, text) = channel_message(&body)?;
    let mut st = sim.lock();
    let task = task_of(&mut st, &org_id, &task_id)?;
    if task.state == "ended" {
        return Err(ApiError::new(StatusCode::CONFLICT, "Task has ended"));
    }
    if task
        .messages
        .iter()
        .any(|m| m.direction == "inbound" && m.id == alias)
    {
        task.duplicate_inbound.push(alias.clone());
        return Ok(accepted(StatusCode::ACCEPTED, &org_id, &alias));
    }
    let data = json!({"taskId": task_id, "origin": task.origin_id, "messageDirection": "INBOUND",
        "senderType": "customer", "channelType": "customMessaging",
        "channelParams": {"type": "text", "message": {"aliasId": alias, "text": text, "timestamp": now_ms()}},
        "createdTime": now_ms()});
    if st.knobs.take(&org_id, |c| &mut c.append_fail_next) {
        st.stats.bump(Some(&org_id), |s| &mut s.appends_failed);
        let data = json!({"taskId": task_id, "reason": "INVALID_CONTENT",
            "channelParams": {"message": {"aliasId": alias}}});
        emit::emit(
            &sim,
            &mut st,
            &task_id,
            "task-message:append-failed",
            data,
            Target::Subscriptions,
        );
        return Ok(accepted(StatusCode::ACCEPTED, &org_id, &alias));
    }
    let task = task_of(&mut st, &org_id, &task_id)?;
    task.messages.push(TaskMessage {
        id: alias.clone(),
        direction: "inbound",
        text,
        at: now_iso(),
        sender_type: "customer",
        sender: None,
    });
    st.stats.bump(Some(&org_id), |s| &mut s.messages_appended);
    emit::emit(
        &sim,
        &mut st,
        &task_id,
        "task-message:appended",
        data,
        Target::Subscriptions,
    );
    Ok(accepted(StatusCode::ACCEPTED, &org_id, &alias))
}

/// `POST /webex/{v}/tasks/{id}/end`: the customer side closes; `task:ended` (Customer).
pub(super) async fn end_task(
    State(sim): State<Arc<Webex>>,
    Path((version, task_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let org_id = authorize(&sim, &headers, &version).await?;
    let mut st = sim.lock();
    let task = task_of(&mut st, &org_id, &task_id)?;
    if task.state == "ended" {
        return Err(ApiError::new(StatusCode::CONFLICT, "Task has ended"));
    }
    task.state = "ended";
    task.customer_connected = false;
    st.stats
        .bump(Some(&org_id), |s| &mut s.tasks_ended_by_customer);
    let data = json!({"taskId": task_id, "terminatingParty": "Customer", "reason": "Customer Left",
        "channelType": "customMessaging", "createdTime": now_ms()});
    emit::emit(
        &sim,
        &mut st,
        &task_id,
        "task:ended",
        data,
        Target::Subscriptions,
    );
    Ok(accepted(StatusCode::ACCEPTED, &org_id, &task_id))
}

/// `POST /webex/{v}/subscriptions` (W5 rules).
pub(super) async fn create_subscription(
    State(sim): State<Arc<Webex>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let org_id = authorize(&sim, &headers, &version).await?;
    let body = parse_object(&body)?;
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let name = text("name");
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("name is required"));
    }
    let event_types: Vec<String> = body
        .get("eventTypes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if event_types.is_empty() || event_types.len() > MAX_EVENT_TYPES {
        return Err(ApiError::bad_request("eventTypes: 1 to 32 event types"));
    }
    if let Some(bad) = event_types
        .iter()
        .find(|t| !EVENT_TYPES.contains(&t.as_str()))
    {
        return Err(ApiError::bad_request(format!("Unknown event type {bad}")));
    }
    let secret = text("secret");
    if !SECRET_LEN.contains(&secret.chars().count()) {
        return Err(ApiError::bad_request("secret must be 32 to 256 characters"));
    }
    let resource_version = text("resourceVersion");
    if resource_version.is_empty() {
        return Err(ApiError::bad_request("resourceVersion is required"));
    }
    let url = text("destinationUrl");
    let mut st = sim.lock();
    check_destination(&url, st.knobs.require_https(&org_id)).map_err(ApiError::bad_request)?;
    let sub = Subscription {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        description: text("description"),
        event_types,
        destination_url: url,
        secret,
        resource_version,
        api_version: version,
        status: "active".into(),
        consecutive_failures: 0,
        created_time: now_ms(),
    };
    let view = serde_json::to_value(&sub).unwrap_or(Value::Null);
    if let Some(org) = st.orgs.get_mut(&org_id) {
        org.subscriptions.push(sub);
    }
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub(super) async fn list_subscriptions(
    State(sim): State<Arc<Webex>>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let org_id = authorize(&sim, &headers, &version).await?;
    let st = sim.lock();
    let data: Vec<&Subscription> = st.orgs[&org_id]
        .subscriptions
        .iter()
        .filter(|s| s.api_version == version)
        .collect();
    Ok(Json(json!({"meta": {"orgId": org_id}, "data": data})))
}

pub(super) async fn get_subscription(
    State(sim): State<Arc<Webex>>,
    Path((version, sub_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let org_id = authorize(&sim, &headers, &version).await?;
    let st = sim.lock();
    st.orgs[&org_id]
        .subscriptions
        .iter()
        .find(|s| s.id == sub_id && s.api_version == version)
        .map(|s| Json(serde_json::to_value(s).unwrap_or(Value::Null)))
        .ok_or_else(|| ApiError::not_found("Subscription not found"))
}

pub(super) async fn delete_subscription(
    State(sim): State<Arc<Webex>>,
    Path((version, sub_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let org_id = authorize(&sim, &headers, &version).await?;
    let mut st = sim.lock();
    let org = st.orgs.get_mut(&org_id).expect("authorized org exists");
    let before = org.subscriptions.len();
    org.subscriptions
        .retain(|s| !(s.id == sub_id && s.api_version == version));
    if org.subscriptions.len() == before {
        return Err(ApiError::not_found("Subscription not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}
