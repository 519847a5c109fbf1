//! DFO 3.0 endpoints the relay calls (spec §2, §8.2–8.3).

use super::{
    now_iso, ApiError, Caller, Contact, Message, Nice, SimState, CLOSED, SEARCH_PAGE, STATUSES,
};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// Longest message text accepted.
const MAX_TEXT_CHARS: usize = 10_000;

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
    }
}

fn own_channel(caller: &Caller, channel: &str) -> Result<(), ApiError> {
    if caller.channel_id == channel {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("channel {channel} not found")))
    }
}

impl SimState {
    fn own_contact(&mut self, caller: &Caller, id: &str) -> Result<&mut Contact, ApiError> {
        self.contacts
            .get_mut(id)
            .filter(|c| c.channel_id == caller.channel_id)
            .ok_or_else(|| ApiError::not_found(format!("contact {id} not found")))
    }
}

pub(super) async fn list_channels(
    State(sim): State<Arc<Nice>>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let st = sim.lock();
    let t = &st.tenants[&caller.channel_id];
    let (box_id, ext) = t
        .channel_id
        .split_once('_')
        .unwrap_or(("chat", &t.channel_id));
    Json(
        json!([{"id": t.channel_id, "name": "AI handoff relay", "integrationBoxIdentifier": box_id,
        "idOnExternalPlatform": ext, "isPrivate": true, "brandId": t.brand_id}]),
    )
}

/// #1: create an inbound message; the first on a thread (or after its contact
/// closed) creates the contact.
pub(super) async fn create_message(
    State(sim): State<Arc<Nice>>,
    Extension(caller): Extension<Caller>,
    Path(channel): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    own_channel(&caller, &channel)?;
    let m = object(&body)?;
    let text = m
        .get("messageContent")
        .filter(|c| c["type"] == "TEXT")
        .and_then(|c| c["payload"]["text"].as_str())
        .ok_or_else(|| {
            ApiError::bad_request("messageContent.type must be TEXT with payload.text")
        })?;
    if text.trim().is_empty() || text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::bad_request(
            "payload.text must be 1..10000 characters",
        ));
    }
    let thread = m
        .get("thread")
        .and_then(|t| t["idOnExternalPlatform"].as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("thread.idOnExternalPlatform is required"))?
        .to_string();
    let author = m
        .get("authorEndUserIdentity")
        .filter(|a| {
            a["idOnExternalPlatform"]
                .as_str()
                .is_some_and(|i| !i.is_empty())
        })
        .ok_or_else(|| {
            ApiError::bad_request("authorEndUserIdentity.idOnExternalPlatform is required")
        })?
        .clone();
    let external_id = m
        .get("idOnExternalPlatform")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut st = sim.lock();
    let key = (channel.clone(), thread.clone());
    let current = st
        .threads
        .get(&key)
        .filter(|cid| st.contacts.get(*cid).is_some_and(|c| !c.closed()))
        .cloned();
    let contact_id = match current {
        Some(id) => id,
        None => {
            st.next_contact += 1;
            let id = format!("{}", 58_400_000 + st.next_contact);
            let skill = st.tenants[&channel].default_skill_id;
            st.contacts.insert(
                id.clone(),
                Contact {
                    id: id.clone(),
                    channel_id: channel.clone(),
                    thread_id: thread.clone(),
                    customer: author.clone(),
                    status: "new".into(),
                    assignee: None,
                    routing_queue_id: skill,
                    custom_fields: Map::new(),
                    messages: vec![],
                    duplicates: vec![],
                    customer_typing_at: None,
                    customer_connected: true,
                    created_at: now_iso(),
                    deliveries: vec![],
                    queue: None,
                },
            );
            st.order.push(id.clone());
            st.threads.insert(key, id.clone());
            st.stats.bump(Some(&channel), |s| &mut s.contacts_created);
            id
        }
    };
    st.next_message += 1;
    let message_id = format!("msg-{}", st.next_message);
    let at = now_iso();
    let c = st
        .contacts
        .get_mut(&contact_id)
        .expect("contact just found");
    // DFO has no idempotency: a repeated external id is a second message.
    if let Some(ext) = &external_id {
        if c.messages
            .iter()
            .any(|msg| msg.id_on_external_platform.as_deref() == Some(ext))
        {
            c.duplicates.push(ext.clone());
        }
    }
    c.messages.push(Message {
        id: message_id.clone(),
        direction: "inbound",
        text: text.to_string(),
        at: at.clone(),
        id_on_external_platform: external_id.clone(),
        sender: author["firstName"].as_str().map(str::to_string),
    });
    c.customer_typing_at = None;
    let status = c.status.clone();
    st.stats.bump(Some(&channel), |s| &mut s.messages_created);
    let mut answer = json!({
        "id": message_id, "idOnExternalPlatform": external_id, "direction": "inbound",
        "thread": {"idOnExternalPlatform": thread}, "createdAtWithMilliseconds": at,
        "messageContent": {"type": "TEXT", "payload": {"text": text}},
    });
    if !st
        .knobs
        .take(&channel, |k| &mut k.create_returns_no_contact)
    {
        answer["contactId"] = json!(contact_id);
        answer["contact"] = json!({"id": contact_id, "status": status});
    }
    Ok(Json(answer))
}

pub(super) async fn get_contact(
    State(sim): State<Arc<Nice>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut st = sim.lock();
    Ok(Json(st.own_contact(&caller, &id)?.api()))
}

/// #3: `status[]=…&scrollToken=…`, 25 per page, oldest first.
pub(super) async fn search_contacts(
    State(sim): State<Arc<Nice>>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut statuses = Vec::new();
    let mut offset = 0usize;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "status[]" | "status%5B%5D" => {
                if !STATUSES.contains(&v) {
                    return Err(ApiError::bad_request(format!("unknown status {v}")));
                }
                statuses.push(v.to_string());
            }
            "scrollToken" => {
                offset = v
                    .parse()
                    .map_err(|_| ApiError::bad_request("invalid scrollToken"))?
            }
            _ => {}
        }
    }
    let st = sim.lock();
    let hits: Vec<&Contact> = st
        .order
        .iter()
        .filter_map(|id| st.contacts.get(id))
        .filter(|c| c.channel_id == caller.channel_id)
        .filter(|c| statuses.is_empty() || statuses.contains(&c.status))
        .collect();
    let page: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(SEARCH_PAGE)
        .map(|c| c.api())
        .collect();
    let next = offset + page.len();
    Ok(Json(json!({
        "hits": hits.len(),
        "scrollToken": if next < hits.len() { next.to_string() } else { String::new() },
        "data": page,
    })))
}

/// #4: the relay closing the contact ends the customer's side.
pub(super) async fn set_status(
    State(sim): State<Arc<Nice>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let m = object(&body)?;
    let status = m
        .get("status")
        .and_then(Value::as_str)
        .filter(|s| STATUSES.contains(s))
        .ok_or_else(|| ApiError::bad_request(format!("status must be one of {STATUSES:?}")))?
        .to_string();
    let mut st = sim.lock();
    let c = st.own_contact(&caller, &id)?;
    if c.closed() && !CLOSED.contains(&status.as_str()) {
        return Err(ApiError::bad_request("a closed contact cannot be reopened"));
    }
    if CLOSED.contains(&status.as_str()) {
        c.customer_connected = false;
        c.customer_typing_at = None;
    }
    c.status = status;
    Ok(Json(c.api()))
}

/// #5 `{"skillId"}`.
pub(super) async fn set_routing_queue(
    State(sim): State<Arc<Nice>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let m = object(&body)?;
    let skill = m
        .get("skillId")
        .and_then(Value::as_u64)
        .ok_or_else(|| ApiError::bad_request("skillId must be a number"))?;
    let mut st = sim.lock();
    let c = st.own_contact(&caller, &id)?;
    if c.closed() {
        return Err(ApiError::bad_request("contact is closed"));
    }
    c.routing_queue_id = skill;
    Ok(Json(c.api()))
}

/// `{"customFields":[{"ident","value"}]}`, merged.
pub(super) async fn set_custom_fields(
    State(sim): State<Arc<Nice>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let m = object(&body)?;
    let items = m
        .get("customFields")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("customFields must be an array"))?;
    let mut fields = Map::new();
    for item in items {
        let (Some(ident), Some(value)) = (item["ident"].as_str(), item["value"].as_str()) else {
            return Err(ApiError::bad_request(
                "customFields items are {ident, value} strings",
            ));
        };
        fields.insert(ident.to_string(), json!(value));
    }
    let mut st = sim.lock();
    let c = st.own_contact(&caller, &id)?;
    c.custom_fields.extend(fields);
    Ok(Json(c.api()))
}

/// #6: customer typing on a thread.
pub(super) async fn sender_action(
    State(sim): State<Arc<Nice>>,
    Extension(caller): Extension<Caller>,
    Path((channel, thread)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    own_channel(&caller, &channel)?;
    let m = object(&body)?;
    let on = match m.get("action").and_then(Value::as_str) {
        Some("isTypingOn") => true,
        Some("isTypingOff") => false,
        _ => {
            return Err(ApiError::bad_request(
                "action must be isTypingOn or isTypingOff",
            ))
        }
    };
    let mut st = sim.lock();
    let cid = st
        .threads
        .get(&(channel, thread.clone()))
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("thread {thread} not found")))?;
    let c = st.own_contact(&caller, &cid)?;
    c.customer_typing_at = on.then(Instant::now);
    Ok(Json(json!({})))
}
