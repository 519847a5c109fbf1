//! Connect Participant API (spec §5): tokens, CreateParticipantConnection,
//! SendMessage, SendEvent, GetTranscript, DisconnectParticipant.

use super::contacts::Direction;
use super::contacts::{
    transcript_page, Contact, EndReason, ItemKind, MessageRecord, ReceiptRecord, Replay,
    StartPosition, TranscriptQuery, CONNECTION_ACKNOWLEDGED, MESSAGE_DELIVERED, MESSAGE_READ,
    TEXT_MARKDOWN, TEXT_PLAIN, TYPING,
};
use super::{
    iso, now_iso, parse_object, parse_shape, request_host, streaming, ApiError, Connect, Service,
    SimState, BEARER_HEADER,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// `MessageProcessingStatus` values (spec §5).
pub(super) const MESSAGE_STATUSES: &[&str] = &["PROCESSING", "FAILED", "REJECTED"];
/// Connect: a WebSocket URL must be opened within 100 s.
pub(super) const WEBSOCKET_OPEN_WINDOW: Duration = Duration::from_secs(100);
/// Connect: GetTranscript MaxResults 0–100 [default U].
const MAX_TRANSCRIPT_RESULTS: usize = 100;
const DEFAULT_TRANSCRIPT_RESULTS: usize = 15;
/// Connect: text/plain and text/markdown content has 1–1,024 characters.
const MAX_TEXT_CHARS: usize = 1_024;
/// Connect: application/json content ≤ 12,000 characters.
const MAX_JSON_CHARS: usize = 12_000;
/// Connect: interactive response content ≤ 12,288 characters.
const MAX_INTERACTIVE_CHARS: usize = 12_288;
const INTERACTIVE_RESPONSE: &str = "application/vnd.amazonaws.connect.message.interactive.response";

/// Who a token belongs to.
#[derive(Debug, Clone)]
pub(super) struct Owner {
    /// Initial ContactId.
    pub(super) contact_id: String,
    pub(super) participant_id: String,
}

#[derive(Debug, Clone)]
struct ConnectionGrant {
    owner: Owner,
    expires_at: Instant,
}

/// A WebSocket URL handed out by CreateParticipantConnection.
#[derive(Debug, Clone)]
pub(super) struct WebsocketGrant {
    pub(super) owner: Owner,
    pub(super) open_by: Instant,
    pub(super) expires_at: Instant,
    pub(super) opened: bool,
}

/// ParticipantTokens (participant lifetime), ConnectionTokens (expire) and WebSocket URLs.
#[derive(Debug, Default)]
pub(super) struct Tokens {
    participant: HashMap<String, Owner>,
    connection: HashMap<String, ConnectionGrant>,
    pub(super) websockets: HashMap<String, WebsocketGrant>,
}

/// An opaque random token.
fn random_token() -> String {
    let mut bytes = Vec::with_capacity(48);
    for _ in 0..3 {
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Tokens {
    pub(super) fn issue_participant_token(
        &mut self,
        contact_id: &str,
        participant_id: &str,
    ) -> String {
        let token = random_token();
        self.participant.insert(
            token.clone(),
            Owner {
                contact_id: contact_id.to_string(),
                participant_id: participant_id.to_string(),
            },
        );
        token
    }

    fn issue_connection_token(&mut self, owner: &Owner, expires_at: Instant) -> String {
        let token = random_token();
        self.connection.insert(
            token.clone(),
            ConnectionGrant {
                owner: owner.clone(),
                expires_at,
            },
        );
        token
    }

    /// The (initial) contact of a ParticipantToken or ConnectionToken.
    pub(super) fn contact_of(&self, token: &str) -> Option<&str> {
        self.participant
            .get(token)
            .or_else(|| self.connection.get(token).map(|g| &g.owner))
            .map(|o| o.contact_id.as_str())
    }

    /// Drops the ConnectionTokens of these contacts (all when `None`).
    fn expire(&mut self, contacts: Option<&[String]>) -> usize {
        let before = self.connection.len();
        self.connection
            .retain(|_, g| contacts.is_some_and(|cs| !cs.contains(&g.owner.contact_id)));
        before - self.connection.len()
    }
}

/// `expire_tokens_now`: every ConnectionToken of the instance's contacts
/// answers 403 afterwards; ParticipantTokens keep working, so a new
/// CreateParticipantConnection renews.
pub(super) fn expire_connection_tokens(st: &mut SimState, instance: Option<&str>) -> usize {
    let contacts: Option<Vec<String>> = instance.map(|id| {
        st.contacts
            .values()
            .filter(|c| c.instance_id == id)
            .map(|c| c.id.clone())
            .collect()
    });
    st.tokens.expire(contacts.as_deref())
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(BEARER_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::access_denied("The X-Amz-Bearer header is required."))
}

/// The contact of a ConnectionToken. Ended chats are refused unless `allow_ended`.
fn authorize_connection(
    st: &SimState,
    headers: &HeaderMap,
    allow_ended: bool,
) -> Result<Owner, ApiError> {
    let token = bearer(headers)?;
    let grant = st
        .tokens
        .connection
        .get(token)
        .ok_or_else(|| ApiError::access_denied("Invalid or expired ConnectionToken."))?;
    if Instant::now() >= grant.expires_at {
        return Err(ApiError::access_denied("The ConnectionToken has expired."));
    }
    let ended = st
        .contacts
        .get(&grant.owner.contact_id)
        .is_none_or(Contact::is_ended);
    if ended && !allow_ended {
        return Err(ApiError::access_denied(
            "The participant is no longer part of the chat.",
        ));
    }
    Ok(grant.owner.clone())
}

fn invalid(message: impl Into<String>) -> ApiError {
    Service::Participant.invalid(message)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateConnectionRequest {
    #[serde(rename = "Type")]
    types: Option<Vec<String>>,
    connect_participant: Option<bool>,
}

/// `POST /participant/connection` with `X-Amz-Bearer: <ParticipantToken>`.
pub(super) async fn create_participant_connection(
    State(sim): State<Arc<Connect>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let raw = parse_object(&body)?;
    let r: CreateConnectionRequest = parse_shape(&raw, Service::Participant)?;
    let token = bearer(&headers)?.to_string();
    let mut st = sim.lock();
    let owner = st
        .tokens
        .participant
        .get(&token)
        .cloned()
        .ok_or_else(|| ApiError::access_denied("Invalid ParticipantToken."))?;
    let types = r.types.unwrap_or_default();
    if types.is_empty() {
        return Err(invalid("Type must list at least one connection type"));
    }
    for t in &types {
        match t.as_str() {
            "WEBSOCKET" | "CONNECTION_CREDENTIALS" => {}
            "WEBRTC_CONNECTION" => {
                return Err(invalid(
                    "WEBRTC_CONNECTION is not available for this contact",
                ))
            }
            other => return Err(invalid(format!("Unknown connection Type {other}"))),
        }
    }
    let cid = owner.contact_id.clone();
    let contact = st.contact_mut(&cid)?;
    if contact.is_ended() {
        return Err(ApiError::access_denied(
            "The participant is no longer part of the chat.",
        ));
    }
    let connect = r.connect_participant == Some(true);
    if connect && contact.streaming.is_empty() {
        return Err(invalid(
            "ConnectParticipant requires message streaming to be enabled on the contact (StartContactStreaming).",
        ));
    }
    let instance = contact.instance_id.clone();
    let ttl = st.knobs.settings.connection_token_ttl_secs;
    let now = Instant::now();
    let expires_at = now + Duration::from_secs(ttl);
    let expiry = iso(OffsetDateTime::now_utc() + time::Duration::seconds(ttl as i64));
    let mut response = json!({});
    if types.iter().any(|t| t == "CONNECTION_CREDENTIALS") {
        let connection_token = st.tokens.issue_connection_token(&owner, expires_at);
        response["ConnectionCredentials"] =
            json!({"ConnectionToken": connection_token, "Expiry": expiry});
    }
    if types.iter().any(|t| t == "WEBSOCKET") {
        let ws_id = random_token();
        st.tokens.websockets.insert(
            ws_id.clone(),
            WebsocketGrant {
                owner: owner.clone(),
                open_by: now + WEBSOCKET_OPEN_WINDOW,
                expires_at,
                opened: false,
            },
        );
        // The socket lives as long as the connection credentials [U].
        response["Websocket"] = json!({
            "Url": format!("ws://{}/connectparticipant/websocket/{ws_id}", request_host(&headers)),
            "ConnectionExpiry": expiry,
        });
    }
    st.stats
        .bump(Some(&instance), |s| &mut s.connections_created);
    if connect {
        let items = st.contact_mut(&cid)?.connect_customer();
        if !items.is_empty() {
            tracing::info!(contact = %cid, "customer connected (ConnectParticipant)");
        }
        streaming::publish(&sim, &mut st, &cid, items);
    }
    Ok(Json(response))
}

/// Content limits of SendMessage by content type.
fn check_message_content(content_type: &str, content: &str) -> Result<(), ApiError> {
    let max = match content_type {
        TEXT_PLAIN | TEXT_MARKDOWN => MAX_TEXT_CHARS,
        "application/json" => MAX_JSON_CHARS,
        INTERACTIVE_RESPONSE => MAX_INTERACTIVE_CHARS,
        other => return Err(invalid(format!("Unsupported ContentType {other}"))),
    };
    let n = content.chars().count();
    if n == 0 || n > max {
        return Err(invalid(format!(
            "Content of type {content_type} must have 1 to {max} characters (got {n})"
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageRequest {
    content_type: Option<String>,
    content: Option<String>,
    client_token: Option<String>,
}

/// Replays a ClientToken: the same answer for the same request, 400 otherwise.
fn replay(
    tokens: &HashMap<String, Replay>,
    token: Option<&str>,
    request: &Value,
) -> Result<Option<Value>, ApiError> {
    match token.and_then(|t| tokens.get(t)) {
        Some(r) if r.request == *request => Ok(Some(r.response.clone())),
        Some(_) => Err(invalid(
            "The ClientToken was already used with different parameters.",
        )),
        None => Ok(None),
    }
}

/// The request members that decide idempotency (everything but ClientToken).
fn without_client_token(raw: &Value) -> Value {
    let mut v = raw.clone();
    if let Value::Object(m) = &mut v {
        m.remove("ClientToken");
    }
    v
}

/// `POST /participant/message`.
pub(super) async fn send_message(
    State(sim): State<Arc<Connect>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let raw = parse_object(&body)?;
    let r: SendMessageRequest = parse_shape(&raw, Service::Participant)?;
    let request = without_client_token(&raw);
    let token = r.client_token.as_deref();

    let mut st = sim.lock();
    let owner = authorize_connection(&st, &headers, false)?;
    let content_type = r
        .content_type
        .as_deref()
        .ok_or_else(|| invalid("ContentType is required"))?;
    let content = r
        .content
        .as_deref()
        .ok_or_else(|| invalid("Content is required"))?;
    check_message_content(content_type, content)?;
    let cid = owner.contact_id;
    let contact = st.contact_mut(&cid)?;
    if !contact
        .supported_content_types
        .iter()
        .any(|t| t == content_type)
    {
        return Err(invalid(format!(
            "ContentType {content_type} is not in the contact's SupportedMessagingContentTypes"
        )));
    }
    if let Some(response) = replay(&contact.message_tokens, token, &request)? {
        let t = token.unwrap_or_default().to_string();
        if !contact.duplicate_inbound_message_ids.contains(&t) {
            contact.duplicate_inbound_message_ids.push(t);
        }
        tracing::info!(contact = %cid, "SendMessage replayed by ClientToken");
        return Ok(Json(response));
    }
    let instance = contact.instance_id.clone();
    let status = st
        .knobs
        .take_message_status(std::slice::from_ref(&instance));
    let contact = st.contact_mut(&cid)?;
    let (response, items) = match status.as_deref() {
        Some(failed @ ("FAILED" | "REJECTED")) => {
            // Not delivered: no item, nothing streamed [U].
            let id = uuid::Uuid::new_v4().to_string();
            let at = now_iso();
            contact.messages.push(MessageRecord {
                id: id.clone(),
                direction: Direction::Inbound,
                text: content.to_string(),
                at: at.clone(),
                role: contact.customer.role,
                sender: contact.customer.display_name.clone(),
                content_type: content_type.to_string(),
                client_token: token.map(str::to_owned),
                status: Some(failed.to_string()),
            });
            let response = json!({"Id": id, "AbsoluteTime": at,
                "MessageMetadata": {"MessageId": id, "MessageProcessingStatus": failed}});
            (response, Vec::new())
        }
        other => {
            let customer = contact.customer.clone();
            let item = contact.message(customer, content_type, content, token);
            let mut response = json!({"Id": item.id, "AbsoluteTime": item.at});
            if let Some(s) = other {
                response["MessageMetadata"] =
                    json!({"MessageId": item.id, "MessageProcessingStatus": s});
            }
            (response, vec![item])
        }
    };
    if let Some(t) = token {
        contact.message_tokens.insert(
            t.to_string(),
            Replay {
                request,
                response: response.clone(),
            },
        );
    }
    st.stats.bump(Some(&instance), |s| &mut s.messages_sent);
    streaming::publish(&sim, &mut st, &cid, items);
    Ok(Json(response))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendEventRequest {
    content_type: Option<String>,
    content: Option<String>,
    client_token: Option<String>,
}

/// The `messageId` of a receipt's Content (`{"messageId":"<item Id>"}`).
fn receipt_message_id(content: Option<&str>) -> Result<String, ApiError> {
    content
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
        .and_then(|v| {
            v.get("messageId")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .ok_or_else(|| invalid("Content must be a JSON string {\"messageId\":\"…\"} for receipts"))
}

/// `POST /participant/event`.
pub(super) async fn send_event(
    State(sim): State<Arc<Connect>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let raw = parse_object(&body)?;
    let r: SendEventRequest = parse_shape(&raw, Service::Participant)?;
    let request = without_client_token(&raw);
    let token = r.client_token.as_deref();

    let mut st = sim.lock();
    let owner = authorize_connection(&st, &headers, false)?;
    let content_type = r
        .content_type
        .as_deref()
        .ok_or_else(|| invalid("ContentType is required"))?;
    let receipt = match content_type {
        TYPING | CONNECTION_ACKNOWLEDGED => None,
        MESSAGE_DELIVERED => Some(("delivered", receipt_message_id(r.content.as_deref())?)),
        MESSAGE_READ => Some(("read", receipt_message_id(r.content.as_deref())?)),
        other => return Err(invalid(format!("Unsupported event ContentType {other}"))),
    };
    let cid = owner.contact_id;
    let contact = st.contact_mut(&cid)?;
    if let Some(response) = replay(&contact.event_tokens, token, &request)? {
        return Ok(Json(response));
    }
    if let Some((status, message_id)) = &receipt {
        if !contact.transcript.iter().any(|i| i.id == *message_id) {
            return Err(invalid(format!(
                "messageId {message_id} is not a message of this chat"
            )));
        }
        contact.receipts.push(ReceiptRecord {
            message_id: message_id.clone(),
            status,
            at: now_iso(),
        });
    }
    if content_type == TYPING {
        contact.customer_typing_at = Some(Instant::now());
    }
    let customer = contact.customer.clone();
    let item = contact.item(
        ItemKind::Event,
        content_type,
        r.content.as_deref(),
        Some(customer),
    );
    let response = json!({"Id": item.id, "AbsoluteTime": item.at});
    if let Some(t) = token {
        contact.event_tokens.insert(
            t.to_string(),
            Replay {
                request,
                response: response.clone(),
            },
        );
    }
    let instance = contact.instance_id.clone();
    st.stats.bump(Some(&instance), |s| &mut s.events_sent);
    streaming::publish(&sim, &mut st, &cid, vec![item]);
    Ok(Json(response))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartPositionShape {
    id: Option<String>,
    absolute_time: Option<String>,
    most_recent: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetTranscriptRequest {
    contact_id: Option<String>,
    max_results: Option<usize>,
    next_token: Option<String>,
    scan_direction: Option<String>,
    sort_order: Option<String>,
    start_position: Option<StartPositionShape>,
}

/// NextToken: the contact, the cursor and the scan direction, opaque to clients.
fn encode_next_token(contact_id: &str, cursor: usize, forward: bool) -> String {
    let v = json!({"c": contact_id, "p": cursor, "f": forward});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn decode_next_token(token: &str, contact_id: &str) -> Result<(usize, bool), ApiError> {
    let bad = || invalid("Invalid NextToken");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if v["c"] != contact_id {
        return Err(bad());
    }
    let cursor = v["p"].as_u64().ok_or_else(bad)? as usize;
    let forward = v["f"].as_bool().ok_or_else(bad)?;
    Ok((cursor, forward))
}

fn transcript_query(r: &GetTranscriptRequest) -> Result<TranscriptQuery, ApiError> {
    let max_results = match r.max_results {
        None | Some(0) => DEFAULT_TRANSCRIPT_RESULTS,
        Some(n) if n <= MAX_TRANSCRIPT_RESULTS => n,
        Some(_) => {
            return Err(invalid(format!(
                "MaxResults must be between 0 and {MAX_TRANSCRIPT_RESULTS}"
            )))
        }
    };
    let forward = match r.scan_direction.as_deref() {
        None | Some("BACKWARD") => false,
        Some("FORWARD") => true,
        Some(other) => return Err(invalid(format!("Unknown ScanDirection {other}"))),
    };
    let ascending = match r.sort_order.as_deref() {
        None | Some("ASCENDING") => true,
        Some("DESCENDING") => false,
        Some(other) => return Err(invalid(format!("Unknown SortOrder {other}"))),
    };
    let start = match &r.start_position {
        None => StartPosition::Default,
        Some(p) => match (&p.id, &p.absolute_time, p.most_recent) {
            (Some(id), None, None) => StartPosition::Id(id.clone()),
            (None, Some(t), None) => StartPosition::Time(
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).map_err(
                    |_| invalid(format!("StartPosition.AbsoluteTime {t} is not ISO-8601")),
                )?,
            ),
            (None, None, Some(n)) if n <= MAX_TRANSCRIPT_RESULTS => StartPosition::MostRecent(n),
            (None, None, None) => StartPosition::Default,
            _ => {
                return Err(invalid(
                    "StartPosition takes exactly one of Id, AbsoluteTime, MostRecent (0–100)",
                ))
            }
        },
    };
    Ok(TranscriptQuery {
        max_results,
        forward,
        ascending,
        start,
        cursor: None,
    })
}

/// `POST /participant/transcript`.
pub(super) async fn get_transcript(
    State(sim): State<Arc<Connect>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let raw = parse_object(&body)?;
    let r: GetTranscriptRequest = parse_shape(&raw, Service::Participant)?;
    let mut st = sim.lock();
    let owner = authorize_connection(&st, &headers, false)?;
    let mut q = transcript_query(&r)?;
    let contact = st.contact_mut(&owner.contact_id)?;
    if let Some(asked) = &r.contact_id {
        if !contact.contact_ids.contains(asked) {
            return Err(ApiError::access_denied(format!(
                "Contact {asked} is not part of this participant's contact chain"
            )));
        }
    }
    if let Some(token) = &r.next_token {
        let (cursor, forward) = decode_next_token(token, &contact.id)?;
        q.cursor = Some(cursor);
        q.forward = forward;
    }
    let (page, next) = transcript_page(&contact.transcript, &q).map_err(invalid)?;
    let mut response = json!({
        "InitialContactId": contact.id,
        "Transcript": page.iter().map(|i| i.json()).collect::<Vec<_>>(),
    });
    if let Some(cursor) = next {
        response["NextToken"] = json!(encode_next_token(&contact.id, cursor, q.forward));
    }
    let instance = contact.instance_id.clone();
    st.stats.bump(Some(&instance), |s| &mut s.transcripts_read);
    Ok(Json(response))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DisconnectRequest {
    client_token: Option<String>,
}

/// `POST /participant/disconnect`: `participant.left` (CUSTOMER) then `chat.ended`.
pub(super) async fn disconnect_participant(
    State(sim): State<Arc<Connect>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let raw = parse_object(&body)?;
    let r: DisconnectRequest = parse_shape(&raw, Service::Participant)?;
    let mut st = sim.lock();
    let owner = authorize_connection(&st, &headers, true)?;
    let cid = owner.contact_id;
    let contact = st.contact_mut(&cid)?;
    if contact.is_ended() {
        // A retry with the ClientToken of the call that ended the chat succeeds again.
        let same_call = r.client_token.is_some() && contact.disconnect_token == r.client_token;
        return if same_call {
            Ok(Json(json!({})))
        } else {
            Err(ApiError::access_denied(
                "The participant is no longer part of the chat.",
            ))
        };
    }
    let items = contact.end(EndReason::Customer);
    contact.disconnect_token = r.client_token;
    tracing::info!(contact = %cid, participant = %owner.participant_id, "customer disconnected");
    streaming::publish(&sim, &mut st, &cid, items);
    Ok(Json(json!({})))
}
