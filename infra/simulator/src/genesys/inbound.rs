//! Open Messaging inbound API (spec §5): message, event (typing), receipt.

use super::{message_id, now_iso, parse_json, ApiError, Caller, Genesys, SimState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Genesys `from.idType` values.
const ID_TYPES: [&str; 3] = ["Email", "Phone", "Opaque"];
/// Genesys attachment `mediaType` values.
const MEDIA_TYPES: [&str; 5] = ["Image", "Video", "Audio", "File", "Link"];
/// Genesys receipt `status` values accepted inbound.
const RECEIPT_STATUSES: [&str; 5] = ["Sent", "Delivered", "Failed", "Published", "Removed"];

/// A validated `OpenInboundNormalizedMessage`.
#[derive(Debug)]
struct InboundMessage {
    from: Value,
    from_id: String,
    id_type: String,
    message_id: Option<String>,
    time: String,
    text: Option<String>,
    content: Vec<Value>,
    custom_attributes: Option<Map<String, Value>>,
    metadata: Option<Value>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

fn required_str(v: &Value, path: &[&str]) -> Result<String, ApiError> {
    match str_at(v, path) {
        Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
        _ => Err(ApiError::bad_request(format!(
            "The request could not be understood by the server due to malformed syntax: {} is required.",
            path.join(".")
        ))),
    }
}

fn check_time(v: &Value, path: &[&str]) -> Result<String, ApiError> {
    let time = required_str(v, path)?;
    OffsetDateTime::parse(&time, &Rfc3339).map_err(|_| {
        ApiError::bad_request(format!(
            "{} must be an ISO-8601 date-time, e.g. 2026-11-23T10:01:02.123Z",
            path.join(".")
        ))
    })?;
    Ok(time)
}

/// `channel.from`: object with `id` and a valid `idType`.
fn check_from(body: &Value) -> Result<(Value, String, String), ApiError> {
    let from = body
        .get("channel")
        .and_then(|c| c.get("from"))
        .filter(|f| f.is_object())
        .ok_or_else(|| ApiError::bad_request("channel.from is required."))?;
    let from_id = required_str(body, &["channel", "from", "id"])?;
    let id_type = required_str(body, &["channel", "from", "idType"])?;
    if !ID_TYPES.contains(&id_type.as_str()) {
        return Err(ApiError::bad_request(format!(
            "channel.from.idType must be one of {ID_TYPES:?}, not '{id_type}'."
        )));
    }
    Ok((from.clone(), from_id, id_type))
}

fn validate_message(body: &Value) -> Result<InboundMessage, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("The body must be a JSON object."));
    }
    if !body.get("channel").is_some_and(Value::is_object) {
        return Err(ApiError::bad_request("channel is required."));
    }
    let (from, from_id, id_type) = check_from(body)?;
    let time = check_time(body, &["channel", "time"])?;
    let message_id = match body["channel"].get("messageId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("channel.messageId must be a string.")),
    };
    let text = match body.get("text") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("text must be a string.")),
    };
    let content = match body.get("content") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(ApiError::bad_request("content must be an array.")),
    };
    for (i, item) in content.iter().enumerate() {
        let attachment = item
            .get("attachment")
            .filter(|a| a.is_object())
            .ok_or_else(|| {
                ApiError::bad_request(format!("content[{i}].attachment is required."))
            })?;
        let media_type = attachment
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !MEDIA_TYPES.contains(&media_type) {
            return Err(ApiError::bad_request(format!(
                "content[{i}].attachment.mediaType must be one of {MEDIA_TYPES:?}."
            )));
        }
        if attachment
            .get("url")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(format!(
                "content[{i}].attachment.url is required."
            )));
        }
    }
    if text.as_deref().is_none_or(|t| t.is_empty()) && content.is_empty() {
        return Err(ApiError::bad_request(
            "The request body should have required property 'content' or '.text'.",
        ));
    }
    let custom_attributes = match body["channel"]
        .get("metadata")
        .and_then(|m| m.get("customAttributes"))
    {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => {
            if let Some((k, _)) = map.iter().find(|(_, v)| !v.is_string()) {
                return Err(ApiError::bad_request(format!(
                    "channel.metadata.customAttributes.{k} must be a string."
                )));
            }
            Some(map.clone())
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "channel.metadata.customAttributes must be an object of strings.",
            ))
        }
    };
    Ok(InboundMessage {
        from,
        from_id,
        id_type,
        message_id,
        time,
        text,
        content,
        custom_attributes,
        metadata: body.get("metadata").cloned(),
    })
}

/// Validated `events[]` of an `OpenInboundNormalizedEvent`: Typing only.
fn validate_events(body: &Value) -> Result<Vec<Value>, ApiError> {
    let events = body
        .get("events")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ApiError::bad_request("events is required and must not be empty."))?;
    for (i, e) in events.iter().enumerate() {
        match e.get("eventType").and_then(Value::as_str) {
            Some("Typing") => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "events[{i}].eventType must be 'Typing', not {other:?}."
                )))
            }
        }
        if let Some(typing) = e.get("typing") {
            match typing.get("type").and_then(Value::as_str) {
                None | Some("On") => {}
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "events[{i}].typing.type must be 'On', not '{other}'."
                    )))
                }
            }
        }
    }
    Ok(events.clone())
}

/// The integration of the path, if this caller's OAuth client owns it.
fn integration_of_caller(
    st: &SimState,
    integration_id: &str,
    caller: &Caller,
) -> Result<(), ApiError> {
    match st.integrations.get(integration_id) {
        Some(i) if i.client_id == caller.client_id => Ok(()),
        _ => Err(ApiError::not_found(format!(
            "Integration {integration_id} not found"
        ))),
    }
}

fn channel_echo(integration_id: &str, from: &Value, message_id: Option<&str>, time: &str) -> Value {
    let mut channel = json!({
        "id": integration_id,
        "platform": "Open",
        "type": "Private",
        "to": {"id": integration_id},
        "from": from,
        "time": time,
    });
    if let Some(mid) = message_id {
        channel["messageId"] = json!(mid);
    }
    channel
}

pub(super) async fn message(
    State(sim): State<Arc<Genesys>>,
    Extension(caller): Extension<Caller>,
    Path(integration_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let prefetch = query
        .get("prefetchConversationId")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut st = sim.lock();
    integration_of_caller(&st, &integration_id, &caller)?;
    let msg = validate_message(&parse_json(&body)?)?;
    let id = message_id();
    let conv = st.conversation_for_customer(&integration_id, &msg.from, &msg.from_id, &msg.id_type);
    if let Some(attrs) = &msg.custom_attributes {
        conv.custom_attributes.extend(attrs.clone());
    }
    conv.record_inbound(
        &id,
        msg.message_id.as_deref(),
        msg.text.as_deref(),
        msg.content.clone(),
    );
    let cid = conv.id.clone();
    st.stats
        .bump(Some(&integration_id), |s| &mut s.inbound_messages);
    tracing::info!(integration = %integration_id, conversation = %cid, message_id = ?msg.message_id, "inbound message");

    let mut channel = channel_echo(
        &integration_id,
        &msg.from,
        msg.message_id.as_deref(),
        &msg.time,
    );
    if let Some(attrs) = &msg.custom_attributes {
        channel["metadata"] = json!({"customAttributes": attrs});
    }
    let mut response = json!({
        "id": id,
        "channel": channel,
        "type": "Text",
        "direction": "Inbound",
    });
    if let Some(text) = &msg.text {
        response["text"] = json!(text);
    }
    if !msg.content.is_empty() {
        response["content"] = json!(msg.content);
    }
    if let Some(metadata) = &msg.metadata {
        response["metadata"] = metadata.clone();
    }
    if prefetch {
        response["conversationId"] = json!(cid);
    }
    Ok(Json(response))
}

pub(super) async fn event(
    State(sim): State<Arc<Genesys>>,
    Extension(caller): Extension<Caller>,
    Path(integration_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut st = sim.lock();
    integration_of_caller(&st, &integration_id, &caller)?;
    let body = parse_json(&body)?;
    if !body.get("channel").is_some_and(Value::is_object) {
        return Err(ApiError::bad_request("channel is required."));
    }
    let (from, from_id, _) = check_from(&body)?;
    let time = check_time(&body, &["channel", "time"])?;
    let events = validate_events(&body)?;
    let key = (integration_id.clone(), from_id.clone());
    // An event without an open conversation is accepted and has no effect [U].
    if let Some(cid) = st.open_by_customer.get(&key).cloned() {
        if let Some(conv) = st.conversations.get_mut(&cid) {
            conv.customer_typing_at = Some(Instant::now());
        }
    }
    st.stats
        .bump(Some(&integration_id), |s| &mut s.inbound_events);
    let message_id_in = str_at(&body, &["channel", "messageId"]);
    Ok(Json(json!({
        "id": message_id(),
        "channel": channel_echo(&integration_id, &from, message_id_in, &time),
        "type": "Event",
        "events": events,
        "direction": "Inbound",
    })))
}

pub(super) async fn receipt(
    State(sim): State<Arc<Genesys>>,
    Extension(caller): Extension<Caller>,
    Path(integration_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut st = sim.lock();
    integration_of_caller(&st, &integration_id, &caller)?;
    let body = parse_json(&body)?;
    let id = required_str(&body, &["id"])?;
    if !body.get("channel").is_some_and(Value::is_object) {
        return Err(ApiError::bad_request("channel is required."));
    }
    let to_id = required_str(&body, &["channel", "to", "id"])?;
    let time = check_time(&body, &["channel", "time"])?;
    let status = required_str(&body, &["status"])?;
    if !RECEIPT_STATUSES.contains(&status.as_str()) {
        return Err(ApiError::bad_request(format!(
            "status must be one of {RECEIPT_STATUSES:?}."
        )));
    }
    // A receipt for an unknown message is accepted and recorded nowhere [U].
    if let Some(conv) = st
        .conversations
        .values_mut()
        .find(|c| c.integration_id == integration_id && c.messages.iter().any(|m| m.id == id))
    {
        conv.receipts.push(super::conversations::ReceiptRecord {
            message_id: id.clone(),
            status: status.clone(),
            at: now_iso(),
        });
    }
    st.stats
        .bump(Some(&integration_id), |s| &mut s.inbound_receipts);
    Ok(Json(json!({
        "id": id,
        "channel": {"id": integration_id, "platform": "Open", "type": "Private",
                    "to": {"id": to_id}, "time": time},
        "type": "Receipt",
        "status": status,
        "reasons": body.get("reasons").cloned().unwrap_or(json!([])),
        "isFinalReceipt": body.get("isFinalReceipt").cloned().unwrap_or(json!(false)),
        "direction": "Inbound",
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Value {
        json!({
            "channel": {
                "messageId": "m-1",
                "from": {"id": "session-1", "idType": "Opaque", "nickname": "Ada"},
                "time": "2026-11-23T10:01:02.123Z",
                "metadata": {"customAttributes": {"reason": "refund"}}
            },
            "text": "I need a human"
        })
    }

    fn message_of(err: ApiError) -> String {
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(err.code, "bad.request");
        err.message
    }

    #[test]
    fn valid_message_passes() {
        let m = validate_message(&valid()).unwrap();
        assert_eq!(m.from_id, "session-1");
        assert_eq!(m.message_id.as_deref(), Some("m-1"));
        assert_eq!(m.custom_attributes.unwrap()["reason"], "refund");
    }

    #[test]
    fn missing_or_bad_fields_are_rejected() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation, &str)> = vec![
            (
                "from.id",
                Box::new(|v| {
                    v["channel"]["from"].as_object_mut().unwrap().remove("id");
                }),
                "channel.from.id",
            ),
            (
                "idType",
                Box::new(|v| v["channel"]["from"]["idType"] = json!("Twitter")),
                "idType",
            ),
            (
                "time",
                Box::new(|v| {
                    v["channel"].as_object_mut().unwrap().remove("time");
                }),
                "channel.time",
            ),
            (
                "time format",
                Box::new(|v| v["channel"]["time"] = json!("yesterday")),
                "ISO-8601",
            ),
            (
                "text or content",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("text");
                }),
                "'content' or '.text'",
            ),
            (
                "media type",
                Box::new(|v| {
                    v["content"] =
                        json!([{"attachment": {"url": "http://x/a.png", "mediaType": "Gif"}}])
                }),
                "mediaType",
            ),
            (
                "attribute type",
                Box::new(|v| v["channel"]["metadata"]["customAttributes"]["n"] = json!(1)),
                "customAttributes.n",
            ),
            (
                "channel",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("channel");
                }),
                "channel is required",
            ),
        ];
        for (name, mutate, expected) in cases {
            let mut body = valid();
            mutate(&mut body);
            let msg = message_of(validate_message(&body).expect_err(name));
            assert!(msg.contains(expected), "{name}: {msg}");
        }
    }

    #[test]
    fn content_without_text_is_accepted() {
        let mut body = valid();
        body.as_object_mut().unwrap().remove("text");
        body["content"] = json!([{"attachment": {"url": "http://x/a.png", "mediaType": "Image"}}]);
        assert!(validate_message(&body).is_ok());
    }

    #[test]
    fn events_must_be_typing() {
        assert!(validate_events(
            &json!({"events": [{"eventType": "Typing", "typing": {"type": "On"}}]})
        )
        .is_ok());
        assert!(validate_events(&json!({"events": []})).is_err());
        assert!(validate_events(&json!({"events": [{"eventType": "Presence"}]})).is_err());
    }
}
