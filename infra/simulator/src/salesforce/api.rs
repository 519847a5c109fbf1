//! The MIAW REST routes (spec §2.2, §2.3, §6.1–5).

use super::auth::{self, Claims};
use super::{
    entry, is_lower_uuid, iso_now, now_ms, ApiError, AuthMode, Conversation, Integration,
    Salesforce, SimState, ViewMessage, TOKEN_REQUESTS_PER_MINUTE,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// MIAW: list entries / conversations return at most 50 (MWS).
const MAX_LIST_LIMIT: usize = 50;
/// Two equal customer texts this close together count as a duplicate delivery.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10);

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("Invalid JSON: {e}")))
}

fn token_answer(sim: &Salesforce, st: &mut SimState, i: &Integration, claims: &Claims) -> Value {
    st.stats.bump(Some(&i.id), |s| &mut s.tokens_issued);
    let last = st
        .subjects
        .get(&claims.sub)
        .map(|s| s.next_id - 1)
        .unwrap_or(0);
    let fields: Vec<Value> = i
        .prechat_fields
        .iter()
        .enumerate()
        .map(|(n, f)| json!({"name": f, "isHidden": true, "order": n, "required": false}))
        .collect();
    json!({
        "accessToken": auth::issue(&sim.token_key, claims),
        "lastEventId": last.to_string(),
        "context": {
            "deviceId": claims.client_id,
            "configuration": {"embeddedServiceConfig": {
                "name": i.es_developer_name,
                "deploymentType": "Custom",
                "embeddedServiceMessagingChannel": {
                    "channelAddressIdentifier": i.channel_address,
                    "authMode": i.auth_mode,
                },
                "forms": [{"formType": "PreChat", "formFields": fields}],
            }},
        },
    })
}

/// Finds the deployment of a token request, counting and rate-limiting it.
fn token_request(st: &mut SimState, body: &Value) -> Result<Integration, ApiError> {
    let org = body["orgId"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("orgId is required"))?;
    let esdn = body["esDeveloperName"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("esDeveloperName is required"))?;
    if body["capabilitiesVersion"].as_str().is_none() || body["platform"].as_str().is_none() {
        return Err(ApiError::bad_request(
            "capabilitiesVersion and platform are required",
        ));
    }
    let short = &org[..org.len().min(super::ORG_ID_SHORT)];
    let integration = st
        .integrations
        .values()
        .find(|i| i.org_short() == short && i.es_developer_name == esdn)
        .cloned()
        .ok_or_else(|| ApiError::not_found("No such org / Embedded Service deployment"))?;
    let now = Instant::now();
    let window = st.token_requests.entry(short.to_owned()).or_default();
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
    {
        window.pop_front();
    }
    if window.len() >= TOKEN_REQUESTS_PER_MINUTE {
        st.stats
            .bump(Some(&integration.id), |s| &mut s.token_requests_refused);
        return Err(ApiError::injected(429, 60));
    }
    window.push_back(now);
    let scope = [integration.id.clone()];
    if let Some(status) = st.faults.take_api_failure(&scope) {
        st.stats
            .bump(Some(&integration.id), |s| &mut s.api_errors_injected);
        return Err(ApiError::injected(
            status,
            st.faults.settings.retry_after_secs,
        ));
    }
    Ok(integration)
}

fn new_claims(i: &Integration, sub: String, exp: i64) -> Claims {
    let now = now_ms();
    Claims {
        sub,
        org_id: i.org_short().to_owned(),
        es_developer_name: i.es_developer_name.clone(),
        integration: i.id.clone(),
        client_id: uuid::Uuid::new_v4().to_string(),
        iat: now / 1000,
        iat_ms: now,
        exp,
    }
}

pub(super) async fn unauthenticated_token(
    State(sim): State<Arc<Salesforce>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_json(&body)?;
    let mut st = sim.lock();
    let i = token_request(&mut st, &body)?;
    if i.auth_mode != AuthMode::UnAuth {
        return Err(ApiError::bad_request(
            "This deployment requires user verification",
        ));
    }
    let sub = format!("v2/iamessage/UNAUTH/NA/uid:{}", uuid::Uuid::new_v4());
    let claims = new_claims(&i, sub, now_ms() / 1000 + i.token_ttl_secs as i64);
    Ok(Json(token_answer(&sim, &mut st, &i, &claims)))
}

pub(super) async fn authenticated_token(
    State(sim): State<Arc<Salesforce>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_json(&body)?;
    let mut st = sim.lock();
    let i = token_request(&mut st, &body)?;
    if i.auth_mode != AuthMode::Auth {
        return Err(ApiError::bad_request(
            "User verification is not enabled for this deployment",
        ));
    }
    if body["authorizationType"] != "JWT" {
        return Err(ApiError::bad_request("authorizationType must be JWT"));
    }
    let identity = body["customerIdentityToken"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("customerIdentityToken is required"))?;
    let uid = auth::verify_identity(
        &i.identity_keys,
        i.identity_issuer.as_deref(),
        identity,
        now_ms() / 1000,
    )
    .map_err(ApiError::unauthorized)?;
    let sub = format!("v2/iamessage/AUTH/{}/uid:{uid}", i.es_developer_name);
    let claims = new_claims(&i, sub, now_ms() / 1000 + i.token_ttl_secs as i64);
    Ok(Json(token_answer(&sim, &mut st, &i, &claims)))
}

/// Same subject, same `exp`, new client id (does not extend the session).
pub(super) async fn continuation_token(
    State(sim): State<Arc<Salesforce>>,
    Extension(claims): Extension<Claims>,
) -> Result<Json<Value>, ApiError> {
    let mut st = sim.lock();
    let i = st
        .integrations
        .get(&claims.integration)
        .cloned()
        .ok_or_else(|| ApiError::unauthorized("Unknown deployment"))?;
    let fresh = new_claims(&i, claims.sub.clone(), claims.exp);
    Ok(Json(token_answer(&sim, &mut st, &i, &fresh)))
}

/// The caller's conversation, or 404.
fn owned<'a>(
    st: &'a mut SimState,
    claims: &Claims,
    cid: &str,
) -> Result<&'a mut Conversation, ApiError> {
    st.conversations
        .get_mut(cid)
        .filter(|c| c.subject == claims.sub)
        .ok_or_else(|| ApiError::not_found(format!("Conversation {cid} not found")))
}

pub(super) async fn create_conversation(
    State(sim): State<Arc<Salesforce>>,
    Extension(claims): Extension<Claims>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_json(&body)?;
    let cid = body["conversationId"].as_str().unwrap_or_default();
    if !is_lower_uuid(cid) {
        return Err(ApiError::bad_request(
            "conversationId must be a lowercase UUID",
        ));
    }
    if body["esDeveloperName"] != claims.es_developer_name.as_str() {
        return Err(ApiError::bad_request(
            "esDeveloperName does not match the token",
        ));
    }
    let routing: Map<String, Value> = match &body["routingAttributes"] {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        _ => return Err(ApiError::bad_request("routingAttributes must be an object")),
    };
    let mut st = sim.lock();
    let i = st
        .integrations
        .get(&claims.integration)
        .cloned()
        .ok_or_else(|| ApiError::unauthorized("Unknown deployment"))?;
    if i.strict_routing_attributes {
        if let Some(bad) = routing.keys().find(|k| !i.prechat_fields.contains(k)) {
            return Err(ApiError::bad_request(format!(
                "Unknown pre-chat field {bad}"
            )));
        }
    }
    if st.conversations.contains_key(cid) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conversation already exists",
        ));
    }
    let fail_routing = st.knobs.take_routing_failure(&i.id);
    st.conversations.insert(
        cid.to_owned(),
        Conversation {
            id: cid.to_owned(),
            integration: i.id.clone(),
            subject: claims.sub.clone(),
            routing_attributes: routing,
            state: if fail_routing { "ended" } else { "queued" },
            routing_status: if fail_routing {
                "INITIAL"
            } else {
                "NEEDS_ROUTING"
            },
            agent: None,
            customer_connected: !fail_routing,
            session_active: !fail_routing,
            customer_typing_at: None,
            messages: vec![],
            seen_message_ids: Default::default(),
            duplicate_inbound_message_ids: vec![],
            entries: vec![],
            created_ms: now_ms(),
        },
    );
    st.order.push(cid.to_owned());
    st.stats.bump(Some(&i.id), |s| &mut s.conversations_created);
    let routing_payload = if fail_routing {
        json!({"routingType": "Initial", "failureType": "RoutingError", "failureReason": "No agents available",
               "estimatedWaitTime": {"isEWTRequested": false}})
    } else {
        json!({"routingType": "Initial", "failureType": "None", "failureReason": null,
               "estimatedWaitTime": {"estimatedWaitTimeInSeconds": 30, "isEWTRequested": true},
               "recordId": format!("0Mw{}", &cid.replace('-', "")[..12]),
               "routingConfigurationDetails": {"routingConfigurationType": "Queue", "queueId": "00G000000000001"}})
    };
    st.publish(
        cid,
        "CONVERSATION_ROUTING_RESULT",
        entry(
            "RoutingResult",
            "Router",
            "router",
            "Omni-Channel",
            routing_payload,
        ),
    );
    Ok((StatusCode::CREATED, Json(json!({}))).into_response())
}

pub(super) async fn send_message(
    State(sim): State<Arc<Salesforce>>,
    Extension(claims): Extension<Claims>,
    Path(cid): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_json(&body)?;
    let m = &body["message"];
    let id = m["id"].as_str().unwrap_or_default();
    if !is_lower_uuid(id) {
        return Err(ApiError::bad_request("message.id must be a lowercase UUID"));
    }
    if m["messageType"] != "StaticContentMessage" || m["staticContent"]["formatType"] != "Text" {
        return Err(ApiError::bad_request(
            "only StaticContentMessage with formatType Text is supported",
        ));
    }
    let text = m["staticContent"]["text"].as_str().unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::bad_request("staticContent.text is required"));
    }
    let new_session = body["isNewMessagingSession"] == true;
    let mut st = sim.lock();
    let integration = claims.integration.clone();
    let force_417 = st.knobs.take_message_417(&integration);
    let dup_409 = st.knobs.duplicate_message_409(&integration);
    let conv = owned(&mut st, &claims, &cid)?;
    if force_417 || (!conv.session_active && !new_session) {
        return Err(ApiError::new(
            StatusCode::EXPECTATION_FAILED,
            "No active messaging session; resend with isNewMessagingSession",
        ));
    }
    let answer = json!({"conversationEntries": [{"id": id, "clientTimestamp": now_ms()}]});
    if conv.seen_message_ids.contains(id) {
        if dup_409 {
            return Err(ApiError::new(StatusCode::CONFLICT, "Duplicate message id"));
        }
        return Ok((StatusCode::ACCEPTED, Json(answer)).into_response());
    }
    if new_session && !conv.session_active {
        conv.session_active = true;
        conv.customer_connected = true;
        conv.state = "queued";
        conv.agent = None;
    }
    conv.seen_message_ids.insert(id.to_owned());
    let now = Instant::now();
    let is_dup = conv
        .messages
        .iter()
        .rev()
        .find(|v| v.direction == "inbound")
        .is_some_and(|prev| {
            prev.text == text && prev.at_instant.is_some_and(|t| now - t < DUPLICATE_WINDOW)
        });
    if is_dup {
        conv.duplicate_inbound_message_ids.push(id.to_owned());
    }
    conv.customer_typing_at = None;
    conv.messages.push(ViewMessage {
        id: id.to_owned(),
        direction: "inbound",
        text: text.to_owned(),
        at: iso_now(),
        bot: false,
        sender: None,
        at_instant: Some(now),
    });
    let subject = conv.subject.clone();
    let mut e = entry(
        "Message",
        "EndUser",
        &subject,
        "Guest",
        json!({"entryType": "Message", "id": id, "abstractMessage": {
            "messageType": "StaticContentMessage", "id": id,
            "staticContent": {"formatType": "Text", "text": text}}, "messageReason": null}),
    );
    e["identifier"] = json!(id);
    st.stats.bump(Some(&integration), |s| &mut s.messages_in);
    st.publish(&cid, "CONVERSATION_MESSAGE", e);
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

pub(super) async fn send_entry(
    State(sim): State<Arc<Salesforce>>,
    Extension(claims): Extension<Claims>,
    Path(cid): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_json(&body)?;
    let (event, started) = match body["entryType"].as_str() {
        Some("TypingStartedIndicator") => ("CONVERSATION_TYPING_STARTED_INDICATOR", true),
        Some("TypingStoppedIndicator") => ("CONVERSATION_TYPING_STOPPED_INDICATOR", false),
        _ => {
            return Err(ApiError::bad_request(
                "entryType must be TypingStartedIndicator or TypingStoppedIndicator",
            ))
        }
    };
    let mut st = sim.lock();
    let conv = owned(&mut st, &claims, &cid)?;
    if !conv.session_active {
        return Err(ApiError::new(
            StatusCode::EXPECTATION_FAILED,
            "No active messaging session",
        ));
    }
    conv.customer_typing_at = started.then(Instant::now);
    let subject = conv.subject.clone();
    let entry_type = body["entryType"].as_str().unwrap_or_default().to_owned();
    st.publish(
        &cid,
        event,
        entry(
            &entry_type,
            "EndUser",
            &subject,
            "Guest",
            json!({"entryType": entry_type, "id": body["id"]}),
        ),
    );
    Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response())
}

pub(super) async fn acknowledge(
    State(sim): State<Arc<Salesforce>>,
    Extension(claims): Extension<Claims>,
    Path(cid): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_json(&body)?;
    if !body["acks"].is_array() {
        return Err(ApiError::bad_request("acks must be an array"));
    }
    let mut st = sim.lock();
    owned(&mut st, &claims, &cid)?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response())
}

pub(super) async fn routing_status(
    State(sim): State<Arc<Salesforce>>,
    Extension(claims): Extension<Claims>,
    Path(cid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut st = sim.lock();
    let conv = owned(&mut st, &claims, &cid)?;
    Ok(Json(
        json!({"conversationId": conv.id, "routingStatus": conv.routing_status}),
    ))
}

pub(super) async fn list_entries(
    State(sim): State<Arc<Salesforce>>,
    Extension(claims): Extension<Claims>,
    Path(cid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let limit = match q.get("limit") {
        None => MAX_LIST_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIST_LIMIT).contains(l))
            .ok_or_else(|| ApiError::bad_request("limit must be 1..50"))?,
    };
    let filter: Option<Vec<&str>> = q.get("entryTypeFilter").map(|f| f.split(',').collect());
    let ts = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
    let (start, end) = (ts("startTimestamp"), ts("endTimestamp"));
    let from_end = q.get("direction").map(String::as_str) == Some("FromEnd");
    let mut st = sim.lock();
    let conv = owned(&mut st, &claims, &cid)?;
    let matching: Vec<&Value> = conv
        .entries
        .iter()
        .filter(|e| {
            filter
                .as_ref()
                .is_none_or(|f| f.contains(&e["entryType"].as_str().unwrap_or_default()))
        })
        .filter(|e| {
            let t = e["transcriptedTimestamp"].as_i64().unwrap_or(0);
            start.is_none_or(|s| t >= s) && end.is_none_or(|x| t <= x)
        })
        .collect();
    let page: Vec<Value> = if from_end {
        matching
            .iter()
            .rev()
            .take(limit)
            .map(|e| (*e).clone())
            .collect()
    } else {
        matching.iter().take(limit).map(|e| (*e).clone()).collect()
    };
    Ok(Json(json!({"conversationEntries": page})))
}

pub(super) async fn list_conversations(
    State(sim): State<Arc<Salesforce>>,
    Extension(claims): Extension<Claims>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let closed = q.get("inclClosedConvs").map(String::as_str) == Some("true");
    let st = sim.lock();
    let convs: Vec<Value> = st
        .order
        .iter()
        .filter_map(|id| st.conversations.get(id))
        .filter(|c| c.subject == claims.sub && (closed || c.state != "ended"))
        .take(MAX_LIST_LIMIT)
        .map(|c| json!({"conversationId": c.id, "startTimestamp": c.created_ms, "routingStatus": c.routing_status, "isClosed": c.state == "ended"}))
        .collect();
    let open = convs.iter().filter(|c| c["isClosed"] == false).count();
    Ok(Json(
        json!({"openConversationsFound": open, "closedConversationsFound": convs.len() - open, "conversations": convs}),
    ))
}

#[derive(Deserialize)]
pub(super) struct EsQuery {
    #[serde(rename = "esDeveloperName")]
    es_developer_name: Option<String>,
}

fn check_es(q: &EsQuery, claims: &Claims) -> Result<(), ApiError> {
    match &q.es_developer_name {
        Some(n) if *n == claims.es_developer_name => Ok(()),
        _ => Err(ApiError::bad_request(
            "esDeveloperName query parameter missing or wrong",
        )),
    }
}

/// Ends the session as the end user: status Ended (conversation stays open).
fn end_by_user(st: &mut SimState, cid: &str, close: bool) {
    let Some(conv) = st.conversations.get_mut(cid) else {
        return;
    };
    let was_active = conv.session_active;
    let agent = conv.agent.take();
    let subject = conv.subject.clone();
    conv.session_active = false;
    conv.customer_connected = false;
    conv.state = "ended";
    conv.customer_typing_at = None;
    if close {
        st.publish(
            cid,
            "CONVERSATION_CLOSE_CONVERSATION",
            entry(
                "CloseConversation",
                "EndUser",
                &subject,
                "Guest",
                json!({"entryType": "CloseConversation"}),
            ),
        );
    }
    if let Some(a) = agent {
        st.publish(
            cid,
            "CONVERSATION_PARTICIPANT_CHANGED",
            entry("ParticipantChanged", "System", "system", "System",
                json!({"entryType": "ParticipantChanged", "entries": [{"operation": "remove",
                    "participant": {"role": "Agent", "appType": "agent", "subject": a.subject}, "displayName": a.name}]})),
        );
    }
    if was_active {
        st.publish(
            cid,
            "CONVERSATION_SESSION_STATUS_CHANGED",
            entry(
                "SessionStatusChanged",
                "System",
                "system",
                "System",
                json!({"entryType": "SessionStatusChanged", "sessionStatus": "Ended", "sessionEndedByRole": "EndUser"}),
            ),
        );
    }
}

pub(super) async fn end_session(
    State(sim): State<Arc<Salesforce>>,
    Extension(claims): Extension<Claims>,
    Path(cid): Path<String>,
    Query(q): Query<EsQuery>,
) -> Result<Response, ApiError> {
    check_es(&q, &claims)?;
    let mut st = sim.lock();
    owned(&mut st, &claims, &cid)?;
    end_by_user(&mut st, &cid, false);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn close_conversation(
    State(sim): State<Arc<Salesforce>>,
    Extension(claims): Extension<Claims>,
    Path(cid): Path<String>,
    Query(q): Query<EsQuery>,
) -> Result<Response, ApiError> {
    check_es(&q, &claims)?;
    let mut st = sim.lock();
    let conv = owned(&mut st, &claims, &cid)?;
    if conv.state == "ended" && !conv.customer_connected && !conv.session_active {
        let already_closed = conv
            .entries
            .iter()
            .any(|e| e["entryType"] == "CloseConversation");
        if already_closed {
            return Err(ApiError::not_found("Conversation already closed"));
        }
    }
    end_by_user(&mut st, &cid, true);
    Ok(StatusCode::NO_CONTENT.into_response())
}
