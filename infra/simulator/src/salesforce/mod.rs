//! Salesforce Enhanced Chat (Messaging for In-App and Web) simulator, route A
//! of `shared/providers/salesforce.md`: access tokens (unauthenticated,
//! verified user, continuation), conversations, messages, typing, entries,
//! close, the per-subject SSE stream with `Last-Event-Id` replay, an agent
//! desktop and fault knobs. Everything is kept in memory.
//!
//! Base ("SCRT") URL: `http://HOST:PORT/salesforce`; REST under
//! `/salesforce/iamessage/api/v2`, the stream at `/salesforce/eventrouter/v1/sse`.

mod api;
mod auth;
mod desktop;
mod knobs;
mod sse;
#[cfg(test)]
mod tests;

use crate::faults::Faults;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::broadcast;

use auth::{Claims, Jwk};
use knobs::Knobs;

/// Unauthenticated token lifetime default: 1 h (HELP-EXP).
const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;
/// Access-token requests per minute per org (HELP-RL).
const TOKEN_REQUESTS_PER_MINUTE: usize = 200;
/// Events kept per subject for `Last-Event-Id` replay (knob `sse_buffer_size`).
const DEFAULT_SSE_BUFFER: usize = 1000;
/// Customer typing shows for 5 s without a new start (MWS).
const TYPING_VISIBLE: Duration = Duration::from_secs(5);
/// The 15-character org id.
const ORG_ID_SHORT: usize = 15;

/// The simulator; shared by all handlers and stream tasks.
pub struct Salesforce {
    state: Mutex<SimState>,
    /// Signs access tokens (HS256), fresh per process.
    token_key: [u8; 32],
}

#[derive(Default)]
struct SimState {
    integrations: HashMap<String, Integration>,
    conversations: HashMap<String, Conversation>,
    order: Vec<String>,
    subjects: HashMap<String, SubjectStream>,
    token_requests: HashMap<String, VecDeque<Instant>>,
    faults: Faults,
    knobs: Knobs,
    stats: StatsBook,
}

/// Channel auth mode of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
enum AuthMode {
    #[default]
    UnAuth,
    Auth,
}

/// One Embedded Service deployment (one test tenant).
#[derive(Debug, Clone)]
struct Integration {
    id: String,
    org_id: String,
    es_developer_name: String,
    auth_mode: AuthMode,
    identity_keys: Vec<Jwk>,
    identity_issuer: Option<String>,
    token_ttl_secs: u64,
    /// Hidden pre-chat field names (`routingAttributes` keys).
    prechat_fields: Vec<String>,
    /// Refuse routing attributes not in `prechat_fields`.
    strict_routing_attributes: bool,
    channel_address: String,
    /// `expire_tokens_now`: tokens issued before this are refused.
    revoked_before_ms: i64,
}

impl Integration {
    fn org_short(&self) -> &str {
        &self.org_id[..self.org_id.len().min(ORG_ID_SHORT)]
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntegrationConfig {
    integration_id: String,
    org_id: String,
    es_developer_name: String,
    auth_mode: Option<AuthMode>,
    /// `{"keys":[{kid,n,e,…}]}` for verified users.
    identity_jwks: Option<Value>,
    identity_issuer: Option<String>,
    token_ttl_secs: Option<u64>,
    #[serde(default)]
    prechat_fields: Vec<String>,
    #[serde(default)]
    strict_routing_attributes: bool,
}

/// One event of a subject's stream.
#[derive(Debug, Clone)]
struct StreamEvent {
    id: u64,
    event: String,
    data: String,
}

/// A token subject's stream: monotonic ids, a ring buffer and live fan-out.
struct SubjectStream {
    integration: String,
    next_id: u64,
    buffer: VecDeque<StreamEvent>,
    live: broadcast::Sender<StreamEvent>,
}

impl SubjectStream {
    fn new(integration: &str) -> Self {
        Self {
            integration: integration.to_owned(),
            next_id: 1,
            buffer: VecDeque::new(),
            live: broadcast::channel(256).0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct ViewMessage {
    id: String,
    direction: &'static str,
    text: String,
    at: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    bot: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender: Option<String>,
    #[serde(skip)]
    at_instant: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Agent {
    name: String,
    subject: String,
}

struct Conversation {
    id: String,
    integration: String,
    subject: String,
    routing_attributes: Map<String, Value>,
    state: &'static str,
    routing_status: &'static str,
    agent: Option<Agent>,
    customer_connected: bool,
    session_active: bool,
    customer_typing_at: Option<Instant>,
    messages: Vec<ViewMessage>,
    seen_message_ids: HashSet<String>,
    duplicate_inbound_message_ids: Vec<String>,
    /// Entries as *list entries* returns them (object payloads).
    entries: Vec<Value>,
    created_ms: i64,
}

impl Conversation {
    fn view(&self, now: Instant) -> Value {
        json!({
            "id": self.id,
            "integration_id": self.integration,
            "customer": {
                "id": self.subject,
                "display_name": self.routing_attributes.get("user_display_name"),
            },
            "context": self.routing_attributes,
            "state": self.state,
            "routing_status": self.routing_status,
            "agent": self.agent.as_ref().map(|a| json!({"name": a.name})),
            "customer_connected": self.customer_connected,
            "session_active": self.session_active,
            "customer_typing": self.customer_typing_at.is_some_and(|t| now.duration_since(t) < TYPING_VISIBLE),
            "messages": self.messages,
            "duplicate_inbound_message_ids": self.duplicate_inbound_message_ids,
        })
    }
}

/// Counters of `GET /sim/salesforce/stats`.
#[derive(Debug, Clone, Default, Serialize)]
struct Stats {
    tokens_issued: u64,
    token_requests_refused: u64,
    api_calls: u64,
    api_errors_injected: u64,
    conversations_created: u64,
    messages_in: u64,
    sse_connections: u64,
    sse_events_written: u64,
    sse_events_replayed: u64,
    sse_drops: u64,
    sse_events_lost: u64,
}

#[derive(Debug, Default)]
struct StatsBook {
    total: Stats,
    by_integration: HashMap<String, Stats>,
}

impl StatsBook {
    fn bump(&mut self, integration: Option<&str>, field: fn(&mut Stats) -> &mut u64) {
        *field(&mut self.total) += 1;
        if let Some(id) = integration {
            *field(self.by_integration.entry(id.to_owned()).or_default()) += 1;
        }
    }
}

/// An error answer: `{"message","errorCode"}` [U real shape; logged raw by clients].
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, m)
    }
    fn injected(status: u16, retry_after: u64) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut e = Self::new(status, "Simulated failure.");
        if status == StatusCode::TOO_MANY_REQUESTS {
            e.retry_after = Some(retry_after);
        }
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"message": self.message, "errorCode": self.status.as_u16()});
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn iso_now() -> String {
    const F: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::now_utc().format(F).unwrap_or_default()
}

/// A lowercase hyphenated UUID, as MIAW wants conversation and message ids.
fn is_lower_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok() && s == s.to_lowercase()
}

/// A stable 15-character user id (`005…`) for an agent name.
fn agent_subject(name: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(name.as_bytes());
    format!("005{}", &hex_upper(&d)[..12])
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

impl Salesforce {
    pub fn new() -> Arc<Self> {
        let mut key = [0u8; 32];
        for b in key.iter_mut() {
            *b = fastrand::u8(..);
        }
        Arc::new(Self {
            state: Mutex::new(SimState::default()),
            token_key: key,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The claims of a bearer token still valid now, or 401.
    fn authorize(&self, st: &SimState, token: Option<&str>) -> Result<Claims, ApiError> {
        let token = token.ok_or_else(|| ApiError::unauthorized("Missing bearer token"))?;
        let claims = auth::verify(&self.token_key, token)
            .ok_or_else(|| ApiError::unauthorized("Invalid token"))?;
        let integration = st
            .integrations
            .get(&claims.integration)
            .ok_or_else(|| ApiError::unauthorized("Unknown deployment"))?;
        if claims.exp <= now_ms() / 1000 || claims.iat_ms < integration.revoked_before_ms {
            return Err(ApiError::unauthorized("Jwt is expired"));
        }
        Ok(claims)
    }
}

impl SimState {
    /// Appends an entry to a conversation and to its subject's stream.
    fn publish(&mut self, cid: &str, event: &str, entry: Value) {
        let Some(conv) = self.conversations.get_mut(cid) else {
            return;
        };
        // Typing is streamed only; list entries does not keep it [U].
        if !entry["entryType"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Typing")
        {
            conv.entries.push(entry.clone());
        }
        let channel = self
            .integrations
            .get(&conv.integration)
            .map(|i| i.channel_address.clone())
            .unwrap_or_default();
        let mut streamed = entry;
        streamed["entryPayload"] = Value::String(streamed["entryPayload"].to_string());
        let data = json!({
            "channelPlatformKey": conv.subject,
            "channelType": "embedded_messaging",
            "channelAddressIdentifier": channel,
            "conversationId": cid,
            "conversationEntry": streamed,
        })
        .to_string();
        let buffer_size = self.knobs.settings.sse_buffer_size.max(1);
        let stream = self
            .subjects
            .entry(conv.subject.clone())
            .or_insert_with(|| SubjectStream::new(&conv.integration));
        let ev = StreamEvent {
            id: stream.next_id,
            event: event.to_owned(),
            data,
        };
        stream.next_id += 1;
        stream.buffer.push_back(ev.clone());
        while stream.buffer.len() > buffer_size {
            stream.buffer.pop_front();
        }
        let _ = stream.live.send(ev);
    }
}

/// A conversation entry in list-entries shape.
fn entry(entry_type: &str, role: &str, subject: &str, display_name: &str, payload: Value) -> Value {
    let now = now_ms();
    json!({
        "identifier": uuid::Uuid::new_v4().to_string(),
        "entryType": entry_type,
        "senderDisplayName": display_name,
        "sender": {"role": role, "appType": match role { "EndUser" => "iamessage", "Agent" => "agent", "Chatbot" => "chatbot", _ => "system" }, "subject": subject, "clientIdentifier": ""},
        "entryPayload": payload,
        "clientTimestamp": now,
        "transcriptedTimestamp": now,
        "relatedRecords": [],
    })
}

/// All Salesforce routes.
pub fn router(sim: Arc<Salesforce>) -> Router {
    let conv_api = Router::new()
        .route("/conversation", post(api::create_conversation))
        .route("/conversation/list", get(api::list_conversations))
        .route(
            "/conversation/{cid}",
            get(api::routing_status).delete(api::close_conversation),
        )
        .route("/conversation/{cid}/message", post(api::send_message))
        .route("/conversation/{cid}/entry", post(api::send_entry))
        .route("/conversation/{cid}/entries", get(api::list_entries))
        .route(
            "/conversation/{cid}/acknowledge-entries",
            post(api::acknowledge),
        )
        .route("/conversation/{cid}/session", delete(api::end_session))
        .route(
            "/authorization/continuation-access-token",
            get(api::continuation_token),
        )
        .route_layer(middleware::from_fn_with_state(sim.clone(), api_guard));
    let token_api = Router::new()
        .route(
            "/authorization/unauthenticated/access-token",
            post(api::unauthenticated_token),
        )
        .route(
            "/authorization/authenticated/access-token",
            post(api::authenticated_token),
        )
        .route_layer(middleware::from_fn_with_state(sim.clone(), latency_only));
    Router::new()
        .nest(
            "/salesforce/iamessage/api/v2",
            conv_api
                .merge(token_api)
                .fallback(|| async { ApiError::not_found("Resource not found") }),
        )
        .route("/salesforce/eventrouter/v1/sse", get(sse::stream))
        .route("/salesforce/desktop", get(desktop::page))
        .route(
            "/sim/salesforce/integrations",
            post(upsert_integration).get(list_integrations),
        )
        .route(
            "/sim/salesforce/faults",
            get(knobs::get_faults).post(knobs::post_faults),
        )
        .route("/sim/salesforce/stats", get(get_stats))
        .merge(desktop::control_routes())
        .with_state(sim)
}

async fn sleep_latency(sim: &Salesforce) {
    let latency = sim.lock().faults.settings.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
}

async fn latency_only(State(sim): State<Arc<Salesforce>>, req: Request, next: Next) -> Response {
    sleep_latency(&sim).await;
    next.run(req).await
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_owned())
}

/// Latency, bearer auth, call counting and injected failures on `/iamessage` calls.
async fn api_guard(State(sim): State<Arc<Salesforce>>, mut req: Request, next: Next) -> Response {
    sleep_latency(&sim).await;
    let token = bearer(req.headers());
    let outcome = {
        let mut st = sim.lock();
        match sim.authorize(&st, token.as_deref()) {
            Err(e) => {
                st.stats.bump(None, |s| &mut s.api_calls);
                Err(e)
            }
            Ok(claims) => {
                let scope = [claims.integration.clone()];
                st.stats
                    .bump(Some(&claims.integration), |s| &mut s.api_calls);
                match st.faults.take_api_failure(&scope) {
                    Some(status) => {
                        st.stats
                            .bump(Some(&claims.integration), |s| &mut s.api_errors_injected);
                        Err(ApiError::injected(
                            status,
                            st.faults.settings.retry_after_secs,
                        ))
                    }
                    None => Ok(claims),
                }
            }
        }
    };
    match outcome {
        Ok(claims) => {
            req.extensions_mut().insert(claims);
            next.run(req).await
        }
        Err(e) => {
            tracing::info!(path = %req.uri().path(), status = e.status.as_u16(), "salesforce api call refused");
            e.into_response()
        }
    }
}

async fn upsert_integration(
    State(sim): State<Arc<Salesforce>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let cfg: IntegrationConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid integration config: {e}")))?;
    if cfg.integration_id.trim().is_empty() || cfg.es_developer_name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "integration_id and es_developer_name must not be empty",
        ));
    }
    if !cfg.org_id.starts_with("00D") || !matches!(cfg.org_id.len(), 15 | 18) {
        return Err(ApiError::bad_request(
            "org_id must be a 15 or 18 character id starting 00D",
        ));
    }
    let identity_keys: Vec<Jwk> = match &cfg.identity_jwks {
        None => vec![],
        Some(v) => serde_json::from_value(v["keys"].clone())
            .map_err(|e| ApiError::bad_request(format!("identity_jwks: {e}")))?,
    };
    let auth_mode = cfg.auth_mode.unwrap_or_default();
    if auth_mode == AuthMode::Auth && identity_keys.is_empty() {
        return Err(ApiError::bad_request(
            "auth_mode Auth needs identity_jwks with at least one key",
        ));
    }
    let mut st = sim.lock();
    let clash = st.integrations.values().any(|i| {
        i.id != cfg.integration_id
            && i.org_short() == &cfg.org_id[..ORG_ID_SHORT]
            && i.es_developer_name == cfg.es_developer_name
    });
    if clash {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "another integration uses this org_id and es_developer_name",
        ));
    }
    let (channel_address, revoked_before_ms) = match st.integrations.get(&cfg.integration_id) {
        Some(old) => (old.channel_address.clone(), old.revoked_before_ms),
        None => (uuid::Uuid::new_v4().to_string(), 0),
    };
    let integration = Integration {
        id: cfg.integration_id.clone(),
        org_id: cfg.org_id,
        es_developer_name: cfg.es_developer_name,
        auth_mode,
        identity_keys,
        identity_issuer: cfg.identity_issuer,
        token_ttl_secs: cfg.token_ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL_SECS).max(1),
        prechat_fields: cfg.prechat_fields,
        strict_routing_attributes: cfg.strict_routing_attributes,
        channel_address,
        revoked_before_ms,
    };
    let view = integration_view(&integration);
    tracing::info!(integration = %integration.id, "salesforce deployment configured");
    st.integrations.insert(integration.id.clone(), integration);
    Ok(Json(view))
}

fn integration_view(i: &Integration) -> Value {
    json!({
        "integration_id": i.id,
        "org_id": i.org_id,
        "es_developer_name": i.es_developer_name,
        "auth_mode": i.auth_mode,
        "identity_key_ids": i.identity_keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
        "identity_issuer": i.identity_issuer,
        "token_ttl_secs": i.token_ttl_secs,
        "prechat_fields": i.prechat_fields,
        "strict_routing_attributes": i.strict_routing_attributes,
        "channel_address_identifier": i.channel_address,
    })
}

async fn list_integrations(State(sim): State<Arc<Salesforce>>) -> Json<Value> {
    let st = sim.lock();
    let sorted: BTreeMap<&String, &Integration> = st.integrations.iter().collect();
    Json(Value::Array(
        sorted.values().map(|i| integration_view(i)).collect(),
    ))
}

#[derive(Deserialize)]
struct IntegrationFilter {
    integration_id: Option<String>,
}

async fn get_stats(
    State(sim): State<Arc<Salesforce>>,
    Query(f): Query<IntegrationFilter>,
) -> Json<Stats> {
    let st = sim.lock();
    Json(match f.integration_id {
        Some(id) => st
            .stats
            .by_integration
            .get(&id)
            .cloned()
            .unwrap_or_default(),
        None => st.stats.total.clone(),
    })
}
