//! Connect API operations (restJson1, spec §3–§4): StartChatContact,
//! StartContactStreaming, StopContactStreaming, StopContact.

use super::contacts::{Contact, EndReason, StreamingEndpoint, TEXT_MARKDOWN, TEXT_PLAIN};
use super::streaming;
use super::{instance_id_of, parse_object, parse_shape, ApiError, Connect, Service, SimState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Connect: InstanceId has 1–100 characters.
pub(super) const MAX_INSTANCE_ID_LEN: usize = 100;
/// Connect: ContactFlowId ≤ 500 characters.
const MAX_CONTACT_FLOW_ID_LEN: usize = 500;
/// Connect: ParticipantDetails.DisplayName has 1–256 characters.
const MAX_DISPLAY_NAME_LEN: usize = 256;
/// Connect: Attributes ≤ 32,768 UTF-8 bytes in total.
const MAX_ATTRIBUTES_BYTES: usize = 32_768;
/// Connect: InitialMessage.Content ≤ 16,384 bytes.
const MAX_INITIAL_MESSAGE_BYTES: usize = 16_384;
/// Connect: ClientToken ≤ 500 characters.
const MAX_CLIENT_TOKEN_LEN: usize = 500;
/// Connect: ChatDurationInMinutes 60–10,080, default 25 h.
const CHAT_DURATION_MINUTES: std::ops::RangeInclusive<u64> = 60..=10_080;
const DEFAULT_CHAT_DURATION_MINUTES: u64 = 25 * 60;
/// Connect: StreamingEndpointArn ≤ 350 characters.
const MAX_STREAMING_ARN_LEN: usize = 350;
/// Connect: at most 2 streaming endpoints per chat (MSE README).
const MAX_STREAMING_ENDPOINTS: usize = 2;

/// SupportedMessagingContentTypes values Connect accepts.
const SUPPORTED_CONTENT_TYPES: &[&str] = &[
    TEXT_PLAIN,
    TEXT_MARKDOWN,
    "application/json",
    "application/vnd.amazonaws.connect.message.interactive",
    "application/vnd.amazonaws.connect.message.interactive.response",
];

/// What a StartChatContact ClientToken replays.
#[derive(Debug, Clone)]
pub(super) struct StartReplay {
    /// The request without its ClientToken.
    request: Value,
    response: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ParticipantDetails {
    display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChatMessage {
    content_type: Option<String>,
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PersistentChat {
    rehydration_type: Option<String>,
    source_contact_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartChatContactRequest {
    instance_id: Option<String>,
    contact_flow_id: Option<String>,
    participant_details: Option<ParticipantDetails>,
    attributes: Option<BTreeMap<String, String>>,
    initial_message: Option<ChatMessage>,
    client_token: Option<String>,
    chat_duration_in_minutes: Option<u64>,
    supported_messaging_content_types: Option<Vec<String>>,
    persistent_chat: Option<PersistentChat>,
    related_contact_id: Option<String>,
    customer_id: Option<String>,
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Service::Connect.invalid(format!("{name} is required"))),
    }
}

fn max_len(value: &str, max: usize, name: &str) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(Service::Connect.invalid(format!("{name} must have at most {max} characters")));
    }
    Ok(())
}

/// Static checks of spec §3, before any lookup.
fn validate_start(r: &StartChatContactRequest) -> Result<(), ApiError> {
    let invalid = |m: String| Service::Connect.invalid(m);
    let instance = required(&r.instance_id, "InstanceId")?;
    max_len(instance_id_of(instance), MAX_INSTANCE_ID_LEN, "InstanceId")?;
    let flow = required(&r.contact_flow_id, "ContactFlowId")?;
    max_len(flow, MAX_CONTACT_FLOW_ID_LEN, "ContactFlowId")?;
    let name = r
        .participant_details
        .as_ref()
        .map(|p| &p.display_name)
        .ok_or_else(|| invalid("ParticipantDetails is required".into()))?;
    let name = required(name, "ParticipantDetails.DisplayName")?;
    max_len(name, MAX_DISPLAY_NAME_LEN, "ParticipantDetails.DisplayName")?;
    if let Some(attrs) = &r.attributes {
        let total: usize = attrs.iter().map(|(k, v)| k.len() + v.len()).sum();
        if total > MAX_ATTRIBUTES_BYTES {
            return Err(invalid(format!(
                "Attributes must not exceed {MAX_ATTRIBUTES_BYTES} bytes in total (got {total})"
            )));
        }
        if let Some(bad) = attrs.keys().find(|k| {
            k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }) {
            return Err(invalid(format!(
                "Attribute key '{bad}' may only contain letters, digits, '-' and '_'"
            )));
        }
    }
    if let Some(token) = &r.client_token {
        max_len(token, MAX_CLIENT_TOKEN_LEN, "ClientToken")?;
    }
    if let Some(d) = r.chat_duration_in_minutes {
        if !CHAT_DURATION_MINUTES.contains(&d) {
            return Err(invalid(format!(
                "ChatDurationInMinutes must be between {} and {}",
                CHAT_DURATION_MINUTES.start(),
                CHAT_DURATION_MINUTES.end()
            )));
        }
    }
    if let Some(types) = &r.supported_messaging_content_types {
        if let Some(bad) = types
            .iter()
            .find(|t| !SUPPORTED_CONTENT_TYPES.contains(&t.as_str()))
        {
            return Err(invalid(format!("Unsupported messaging content type {bad}")));
        }
        if !types.iter().any(|t| t == TEXT_PLAIN) {
            return Err(invalid(
                "SupportedMessagingContentTypes must include text/plain".into(),
            ));
        }
    }
    if let Some(m) = &r.initial_message {
        let content_type = required(&m.content_type, "InitialMessage.ContentType")?;
        let content = required(&m.content, "InitialMessage.Content")?;
        if content.len() > MAX_INITIAL_MESSAGE_BYTES {
            return Err(invalid(format!(
                "InitialMessage.Content must not exceed {MAX_INITIAL_MESSAGE_BYTES} bytes"
            )));
        }
        if ![TEXT_PLAIN, TEXT_MARKDOWN].contains(&content_type) {
            return Err(invalid(
                "InitialMessage.ContentType must be text/plain or text/markdown".into(),
            ));
        }
    }
    if let Some(p) = &r.persistent_chat {
        if r.related_contact_id.is_some() {
            return Err(invalid(
                "RelatedContactId cannot be combined with PersistentChat".into(),
            ));
        }
        match p.rehydration_type.as_deref() {
            None | Some("ENTIRE_PAST_SESSION") | Some("FROM_SEGMENT") => {}
            Some(other) => return Err(invalid(format!("Unknown RehydrationType {other}"))),
        }
        required(&p.source_contact_id, "PersistentChat.SourceContactId")?;
    }
    Ok(())
}

/// `PUT /contact/chat`.
pub(super) async fn start_chat_contact(
    State(sim): State<Arc<Connect>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut raw = parse_object(&body)?;
    let r: StartChatContactRequest = parse_shape(&raw, Service::Connect)?;
    validate_start(&r)?;
    if let Value::Object(m) = &mut raw {
        m.remove("ClientToken");
    }
    let instance_id = instance_id_of(r.instance_id.as_deref().unwrap_or_default()).to_string();
    let flow_id = r.contact_flow_id.clone().unwrap_or_default();

    let mut st = sim.lock();
    let instance = st
        .instances
        .get(&instance_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("Instance {instance_id} not found")))?;
    if !instance.contact_flow_ids.contains(&flow_id) {
        return Err(ApiError::not_found(format!(
            "ContactFlow {flow_id} not found in instance {instance_id}"
        )));
    }
    let token_key = r.client_token.clone().map(|t| (instance_id.clone(), t));
    if let Some(replay) = token_key.as_ref().and_then(|k| st.start_tokens.get(k)) {
        if replay.request != raw {
            return Err(ApiError::invalid_request(
                "The ClientToken was already used with different parameters.",
            ));
        }
        let response = replay.response.clone();
        st.stats
            .bump(Some(&instance_id), |s| &mut s.idempotent_replays);
        tracing::info!(instance = %instance_id, "StartChatContact replayed by ClientToken");
        return Ok(Json(response));
    }
    if let Some(max) = instance.max_active_chats {
        if st.active_contacts(&instance_id) >= max {
            return Err(ApiError::limit_exceeded(format!(
                "The concurrent active chats quota ({max}) of instance {instance_id} is reached."
            )));
        }
    }
    let continued_from = match &r.persistent_chat {
        Some(p) => {
            let source = p.source_contact_id.clone().unwrap_or_default();
            match st.contact_by_any_id(&source) {
                Some(c) if c.instance_id == instance_id && c.is_ended() => Some(source),
                Some(c) if c.instance_id == instance_id => {
                    return Err(ApiError::invalid_request(format!(
                        "Source contact {source} is still active"
                    )))
                }
                _ => {
                    return Err(ApiError::not_found(format!(
                        "Source contact {source} not found"
                    )))
                }
            }
        }
        None => None,
    };

    let display_name = r
        .participant_details
        .as_ref()
        .and_then(|p| p.display_name.clone())
        .unwrap_or_default();
    let mut contact = Contact::new(
        &instance_id,
        &flow_id,
        &instance.queue,
        &display_name,
        r.attributes.clone().unwrap_or_default(),
        r.supported_messaging_content_types
            .clone()
            .unwrap_or_else(|| vec![TEXT_PLAIN.to_string()]),
    );
    contact.customer_id = r.customer_id.clone();
    // Not streamed: no streaming endpoint exists yet (spec open question).
    if let Some(m) = &r.initial_message {
        let customer = contact.customer.clone();
        contact.message(
            customer,
            m.content_type.as_deref().unwrap_or(TEXT_PLAIN),
            m.content.as_deref().unwrap_or_default(),
            None,
        );
    }
    let participant_token = st
        .tokens
        .issue_participant_token(&contact.id, &contact.customer.id);
    let mut response = json!({
        "ContactId": contact.id,
        "ParticipantId": contact.customer.id,
        "ParticipantToken": participant_token,
    });
    if let Some(source) = continued_from {
        response["ContinuedFromContactId"] = json!(source);
    }
    let cid = contact.id.clone();
    st.add_contact(contact);
    if let Some(key) = token_key {
        st.start_tokens.insert(
            key,
            StartReplay {
                request: raw,
                response: response.clone(),
            },
        );
    }
    st.stats
        .bump(Some(&instance_id), |s| &mut s.contacts_started);
    let connect_timeout = Duration::from_secs(st.knobs.settings.customer_connect_timeout_secs);
    drop(st);
    let duration = Duration::from_secs(
        60 * r
            .chat_duration_in_minutes
            .unwrap_or(DEFAULT_CHAT_DURATION_MINUTES),
    );
    spawn_timers(&sim, &cid, connect_timeout, duration);
    tracing::info!(instance = %instance_id, contact = %cid, "chat contact started");
    Ok(Json(response))
}

/// Ends the contact if the customer never connects, and when its duration is over.
fn spawn_timers(sim: &Arc<Connect>, cid: &str, connect_timeout: Duration, duration: Duration) {
    let sim = sim.clone();
    let cid = cid.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(connect_timeout).await;
        end_if(&sim, &cid, EndReason::CustomerNeverConnected, |c| {
            !c.customer_connected
        });
        tokio::time::sleep(duration.saturating_sub(connect_timeout)).await;
        end_if(&sim, &cid, EndReason::DurationExpired, |_| true);
    });
}

fn end_if(sim: &Arc<Connect>, cid: &str, reason: EndReason, cond: impl Fn(&Contact) -> bool) {
    let mut st = sim.lock();
    let items = match st.contacts.get_mut(cid) {
        Some(c) if !c.is_ended() && cond(c) => c.end(reason),
        _ => return,
    };
    tracing::info!(contact = cid, ?reason, "contact ended by timer");
    streaming::publish(sim, &mut st, cid, items);
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChatStreamingConfiguration {
    streaming_endpoint_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartStreamingRequest {
    instance_id: Option<String>,
    contact_id: Option<String>,
    chat_streaming_configuration: Option<ChatStreamingConfiguration>,
    client_token: Option<String>,
}

/// A standard SNS topic ARN: `arn:aws:sns:{region}:{account}:{name}`, not FIFO.
fn check_topic_arn(arn: &str) -> Result<(), ApiError> {
    max_len(arn, MAX_STREAMING_ARN_LEN, "StreamingEndpointArn")?;
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let well_formed = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && parts[3..].iter().all(|p| !p.is_empty());
    if !well_formed {
        return Err(Service::Connect.invalid(format!(
            "StreamingEndpointArn {arn} is not an SNS topic ARN"
        )));
    }
    if arn.ends_with(".fifo") {
        return Err(Service::Connect
            .invalid("StreamingEndpointArn must be a standard SNS topic, not a FIFO topic"));
    }
    Ok(())
}

/// The contact of `InstanceId` + `ContactId`, active or not.
fn contact_in_instance<'a>(
    st: &'a SimState,
    instance_id: &str,
    contact_id: &str,
) -> Result<&'a Contact, ApiError> {
    if !st.instances.contains_key(instance_id) {
        return Err(ApiError::not_found(format!(
            "Instance {instance_id} not found"
        )));
    }
    st.contact_by_any_id(contact_id)
        .filter(|c| c.instance_id == instance_id)
        .ok_or_else(|| ApiError::not_found(format!("Contact {contact_id} not found")))
}

/// `POST /contact/start-streaming`.
pub(super) async fn start_contact_streaming(
    State(sim): State<Arc<Connect>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let raw = parse_object(&body)?;
    let r: StartStreamingRequest = parse_shape(&raw, Service::Connect)?;
    let instance_id = instance_id_of(required(&r.instance_id, "InstanceId")?).to_string();
    let contact_id = required(&r.contact_id, "ContactId")?.to_string();
    let arn = r
        .chat_streaming_configuration
        .as_ref()
        .map(|c| &c.streaming_endpoint_arn)
        .ok_or_else(|| Service::Connect.invalid("ChatStreamingConfiguration is required"))?;
    let arn = required(arn, "ChatStreamingConfiguration.StreamingEndpointArn")?.to_string();
    let client_token = required(&r.client_token, "ClientToken")?.to_string();
    max_len(&client_token, MAX_CLIENT_TOKEN_LEN, "ClientToken")?;
    check_topic_arn(&arn)?;

    let mut st = sim.lock();
    let cid = contact_in_instance(&st, &instance_id, &contact_id)?
        .id
        .clone();
    if !st.topics.contains_key(&arn) {
        return Err(ApiError::not_found(format!(
            "SNS topic {arn} does not exist (register it with POST /sim/connect/topics)"
        )));
    }
    let contact = st.contact_mut(&cid)?;
    if contact.is_ended() {
        return Err(ApiError::invalid_request(format!(
            "Contact {contact_id} is not active"
        )));
    }
    if let Some(s) = contact
        .streaming
        .iter()
        .find(|s| s.client_token == client_token)
    {
        if s.topic_arn != arn {
            return Err(ApiError::invalid_request(
                "The ClientToken was already used with different parameters.",
            ));
        }
        return Ok(Json(json!({"StreamingId": s.id})));
    }
    // Streaming to the same topic again keeps the existing endpoint [U].
    if let Some(s) = contact.streaming.iter().find(|s| s.topic_arn == arn) {
        return Ok(Json(json!({"StreamingId": s.id})));
    }
    if contact.streaming.len() >= MAX_STREAMING_ENDPOINTS {
        return Err(ApiError::limit_exceeded(format!(
            "A chat streams to at most {MAX_STREAMING_ENDPOINTS} endpoints."
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    contact.streaming.push(StreamingEndpoint {
        id: id.clone(),
        topic_arn: arn.clone(),
        client_token,
    });
    tracing::info!(contact = %cid, topic = %arn, "streaming started");
    Ok(Json(json!({"StreamingId": id})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StopStreamingRequest {
    instance_id: Option<String>,
    contact_id: Option<String>,
    streaming_id: Option<String>,
}

/// `POST /contact/stop-streaming`.
pub(super) async fn stop_contact_streaming(
    State(sim): State<Arc<Connect>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let raw = parse_object(&body)?;
    let r: StopStreamingRequest = parse_shape(&raw, Service::Connect)?;
    let instance_id = instance_id_of(required(&r.instance_id, "InstanceId")?).to_string();
    let contact_id = required(&r.contact_id, "ContactId")?.to_string();
    let streaming_id = required(&r.streaming_id, "StreamingId")?.to_string();
    let mut st = sim.lock();
    let cid = contact_in_instance(&st, &instance_id, &contact_id)?
        .id
        .clone();
    let contact = st.contact_mut(&cid)?;
    let before = contact.streaming.len();
    contact.streaming.retain(|s| s.id != streaming_id);
    // After the chat ended streaming is already stopped; stopping again is harmless.
    if contact.streaming.len() == before && !contact.is_ended() {
        return Err(ApiError::not_found(format!(
            "Streaming {streaming_id} not found on contact {contact_id}"
        )));
    }
    tracing::info!(contact = %cid, streaming = %streaming_id, "streaming stopped");
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StopContactRequest {
    instance_id: Option<String>,
    contact_id: Option<String>,
}

/// `POST /contact/stop`: ends the chat (`participant.left` of the agent, `chat.ended`).
pub(super) async fn stop_contact(
    State(sim): State<Arc<Connect>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let raw = parse_object(&body)?;
    let r: StopContactRequest = parse_shape(&raw, Service::Connect)?;
    let instance_id = instance_id_of(required(&r.instance_id, "InstanceId")?).to_string();
    let contact_id = required(&r.contact_id, "ContactId")?.to_string();
    let mut st = sim.lock();
    let not_found = || {
        ApiError::new(
            StatusCode::GONE,
            "ContactNotFoundException",
            format!("Contact {contact_id} is not active or does not exist"),
        )
    };
    if !st.instances.contains_key(&instance_id) {
        return Err(ApiError::not_found(format!(
            "Instance {instance_id} not found"
        )));
    }
    let cid = st
        .contact_by_any_id(&contact_id)
        .filter(|c| c.instance_id == instance_id && !c.is_ended())
        .map(|c| c.id.clone())
        .ok_or_else(not_found)?;
    let items = st.contact_mut(&cid)?.end(EndReason::StopContact);
    tracing::info!(contact = %cid, "contact stopped");
    streaming::publish(&sim, &mut st, &cid, items);
    Ok(Json(json!({})))
}
