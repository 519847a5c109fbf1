//! Amazon Connect chat simulator: the restJson1 Connect API (StartChatContact,
//! contact streaming, StopContact), the Connect Participant API, SNS contact
//! streaming to Lambda subscriptions, the participant WebSocket, an agent
//! desktop page and fault knobs. Faithful to `shared/providers/amazon-connect.md`;
//! everything is kept in memory.
//!
//! Endpoints for the official SDKs: `AWS_ENDPOINT_URL_CONNECT=http://HOST:PORT/connect`,
//! `AWS_ENDPOINT_URL_CONNECTPARTICIPANT=http://HOST:PORT/connectparticipant`
//! (the endpoint path is prefixed to the operation path).

mod api;
mod contacts;
mod desktop;
mod knobs;
mod participant;
mod streaming;
#[cfg(test)]
mod tests;
mod websocket;

use crate::faults::Faults;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use time::OffsetDateTime;

use contacts::Contact;
use knobs::ConnectKnobs;
use participant::Tokens;
use streaming::Topic;

/// Account id used in SNS attributes when an instance does not name one.
const DEFAULT_ACCOUNT_ID: &str = "123456789012";
const DEFAULT_QUEUE: &str = "BasicQueue";
/// Largest request body the guard buffers (Attributes ≤ 32 KB, content ≤ 16 KB).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// SigV4 credential scope service of each API (spec §2).
const CONNECT_SIGNING_NAME: &str = "connect";
const PARTICIPANT_SIGNING_NAME: &str = "execute-api";
const BEARER_HEADER: &str = "x-amz-bearer";
const REQUEST_ID_HEADER: &str = "x-amzn-requestid";
const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// The simulator; shared by all handlers and background tasks.
pub struct Connect {
    state: Mutex<SimState>,
    http: reqwest::Client,
}

/// Everything the simulator knows. Locked briefly, never across an `.await`.
#[derive(Default)]
struct SimState {
    instances: HashMap<String, Instance>,
    /// Contacts by their initial ContactId.
    contacts: HashMap<String, Contact>,
    /// Initial ContactIds in creation order.
    contact_order: Vec<String>,
    /// Every ContactId of a chain (transfers create new ones) → initial ContactId.
    contact_alias: HashMap<String, String>,
    /// StartChatContact idempotency per (instance, ClientToken).
    start_tokens: HashMap<(String, String), api::StartReplay>,
    tokens: Tokens,
    topics: BTreeMap<String, Topic>,
    faults: Faults,
    knobs: ConnectKnobs,
    stats: StatsBook,
}

impl SimState {
    /// The contact a ContactId of its chain names.
    fn contact_by_any_id(&self, contact_id: &str) -> Option<&Contact> {
        self.contact_alias
            .get(contact_id)
            .and_then(|initial| self.contacts.get(initial))
    }

    fn contact_mut(&mut self, cid: &str) -> Result<&mut Contact, ApiError> {
        self.contacts
            .get_mut(cid)
            .ok_or_else(|| ApiError::not_found(format!("Contact {cid} not found")))
    }
}

/// One Connect instance (one test tenant).
#[derive(Debug, Clone)]
struct Instance {
    id: String,
    contact_flow_ids: Vec<String>,
    queue: String,
    account_id: String,
    /// Concurrent active chats quota; StartChatContact answers LimitExceededException beyond it.
    max_active_chats: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceConfig {
    instance_id: String,
    contact_flow_ids: Vec<String>,
    queue: Option<String>,
    account_id: Option<String>,
    max_active_chats: Option<usize>,
}

/// Counters of `GET /sim/connect/stats`.
#[derive(Debug, Clone, Default, Serialize)]
struct Stats {
    api_calls: u64,
    api_errors_injected: u64,
    contacts_started: u64,
    idempotent_replays: u64,
    connections_created: u64,
    messages_sent: u64,
    events_sent: u64,
    transcripts_read: u64,
    /// Items published to SNS topics (one per item and topic).
    sns_published: u64,
    /// Every delivery HTTP call, first tries and retries.
    sns_attempts: u64,
    sns_deliveries: u64,
    sns_retries: u64,
    /// Deliveries given up on after the last retry.
    sns_failures: u64,
    /// Publications nobody received (no subscription, or a `lose_next_notification` fault).
    sns_lost: u64,
    ws_connections: u64,
    ws_frames_sent: u64,
}

#[derive(Debug, Default)]
struct StatsBook {
    total: Stats,
    by_instance: HashMap<String, Stats>,
}

impl StatsBook {
    fn bump(&mut self, instance: Option<&str>, field: fn(&mut Stats) -> &mut u64) {
        *field(&mut self.total) += 1;
        if let Some(id) = instance {
            *field(self.by_instance.entry(id.to_string()).or_default()) += 1;
        }
    }
}

/// Which API a route belongs to: decides error names and the signing service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Connect,
    Participant,
}

impl Service {
    fn signing_name(self) -> &'static str {
        match self {
            Service::Connect => CONNECT_SIGNING_NAME,
            Service::Participant => PARTICIPANT_SIGNING_NAME,
        }
    }

    /// Connect: InvalidParameterException; Participant: ValidationException (spec §9).
    fn invalid(self, message: impl Into<String>) -> ApiError {
        match self {
            Service::Connect => ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidParameterException",
                message,
            ),
            Service::Participant => {
                ApiError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
            }
        }
    }

    fn internal_error(self) -> &'static str {
        match self {
            Service::Connect => "InternalServiceException",
            Service::Participant => "InternalServerException",
        }
    }
}

/// A restJson1 error (spec §2): status, `x-amzn-ErrorType`, `x-amzn-RequestId`,
/// body `{"__type","message"}`. Also used by the sim-only routes.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequestException", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    fn access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDeniedException", message)
    }

    fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "ConflictException", message)
    }

    fn limit_exceeded(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            message,
        )
    }

    fn unknown_operation() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "The requested operation is not recognized by the service.",
        )
    }

    /// A malformed JSON body.
    fn serialization(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "SerializationException", message)
    }

    /// A failure injected by `api_fail_next` or the ratios.
    fn injected(status: u16, service: Service) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let (code, message) = match status.as_u16() {
            429 => ("ThrottlingException", "Rate exceeded"),
            500 => (service.internal_error(), "Request processing failed."),
            503 => ("ServiceUnavailableException", "Service is unavailable."),
            400 => match service {
                Service::Connect => ("InvalidRequestException", "The request is not valid."),
                Service::Participant => ("ValidationException", "The request is not valid."),
            },
            403 => ("AccessDeniedException", "Access denied."),
            404 => ("ResourceNotFoundException", "Resource not found."),
            409 => ("ConflictException", "Conflict."),
            _ => ("SimulatedException", "Simulated failure."),
        };
        Self::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"__type": self.code, "message": self.message});
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            HeaderName::from_static(ERROR_TYPE_HEADER),
            HeaderValue::from_static(self.code),
        );
        insert_request_id(headers);
        response
    }
}

fn insert_request_id(headers: &mut HeaderMap) {
    if !headers.contains_key(REQUEST_ID_HEADER) {
        if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
        }
    }
}

/// Parses a JSON object body (empty means `{}`, as the SDK sends for no members).
fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::serialization(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(ApiError::serialization(format!("Invalid JSON: {e}"))),
    }
}

/// Parses a body into a request shape; wrong member types are validation errors.
fn parse_shape<T: for<'de> Deserialize<'de>>(
    body: &Value,
    service: Service,
) -> Result<T, ApiError> {
    T::deserialize(body).map_err(|e| service.invalid(format!("Invalid request: {e}")))
}

const ISO_FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

/// ISO-8601 UTC with milliseconds, as Connect writes times (`2019-11-08T02:41:28.172Z`).
fn iso(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(ISO_FORMAT)
        .unwrap_or_default()
}

fn now_iso() -> String {
    iso(OffsetDateTime::now_utc())
}

/// An InstanceId, or the id inside an instance ARN (`arn:aws:connect:…:instance/{id}`).
fn instance_id_of(value: &str) -> &str {
    match value.strip_prefix("arn:") {
        Some(_) => value.rsplit('/').next().unwrap_or(value),
        None => value,
    }
}

impl Connect {
    pub fn new() -> Arc<Self> {
        let http = crate::delivery::client();
        Arc::new(Self {
            state: Mutex::new(SimState::default()),
            http,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// All Connect routes: the Connect API under `/connect`, the participant API
/// under `/connectparticipant`, the control API under `/sim/connect`.
pub fn router(sim: Arc<Connect>) -> Router {
    let unknown = || async { ApiError::unknown_operation() };
    let connect_api = Router::new()
        .route("/contact/chat", put(api::start_chat_contact))
        .route(
            "/contact/start-streaming",
            post(api::start_contact_streaming),
        )
        .route("/contact/stop-streaming", post(api::stop_contact_streaming))
        .route("/contact/stop", post(api::stop_contact))
        .route_layer(middleware::from_fn_with_state(
            (sim.clone(), Service::Connect),
            api_guard,
        ))
        .route("/desktop", get(desktop::page))
        .fallback(unknown)
        .method_not_allowed_fallback(unknown);
    let participant_api = Router::new()
        .route(
            "/participant/connection",
            post(participant::create_participant_connection),
        )
        .route("/participant/message", post(participant::send_message))
        .route("/participant/event", post(participant::send_event))
        .route("/participant/transcript", post(participant::get_transcript))
        .route(
            "/participant/disconnect",
            post(participant::disconnect_participant),
        )
        .route_layer(middleware::from_fn_with_state(
            (sim.clone(), Service::Participant),
            api_guard,
        ))
        .route("/websocket/{id}", get(websocket::upgrade))
        .fallback(unknown)
        .method_not_allowed_fallback(unknown);

    Router::new()
        .nest("/connect", connect_api)
        .nest("/connectparticipant", participant_api)
        .route(
            "/sim/connect/instances",
            post(upsert_instance).get(list_instances),
        )
        .route(
            "/sim/connect/topics",
            post(streaming::upsert_topic).get(streaming::list_topics),
        )
        .route(
            "/sim/connect/faults",
            get(knobs::get_faults).post(knobs::post_faults),
        )
        .route("/sim/connect/stats", get(get_stats))
        .merge(desktop::control_routes())
        .with_state(sim)
}

/// The SigV4 `Authorization` header must be present (not verified); its
/// credential scope, when readable, must name the API's signing service.
fn check_sigv4(headers: &HeaderMap, service: Service) -> Result<(), ApiError> {
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ApiError::access_denied(
            "Missing Authentication Token: the request must be signed with AWS SigV4.",
        ));
    };
    let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(ApiError::access_denied(
            "Authorization header requires the AWS4-HMAC-SHA256 scheme.",
        ));
    };
    // Credential=AKID/20261123/us-east-1/connect/aws4_request
    let scope_service = rest
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("Credential="))
        .next()
        .and_then(|cred| cred.split('/').nth(3));
    match scope_service {
        Some(name) if name != service.signing_name() => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to correct service: '{}'.",
                service.signing_name()
            ),
        )),
        _ => Ok(()),
    }
}

/// The instance a call belongs to, for fault scoping: the body's InstanceId
/// (Connect) or the bearer token's contact (participant API).
fn call_scope(st: &SimState, service: Service, headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    let instance = match service {
        Service::Connect => serde_json::from_slice::<Value>(body).ok().and_then(|v| {
            v.get("InstanceId")
                .and_then(Value::as_str)
                .map(|s| instance_id_of(s).to_string())
        }),
        Service::Participant => headers
            .get(BEARER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|token| st.tokens.contact_of(token))
            .and_then(|cid| st.contacts.get(cid))
            .map(|c| c.instance_id.clone()),
    };
    instance.into_iter().collect()
}

/// Latency, SigV4 presence, call counting and injected failures for every real route.
async fn api_guard(
    State((sim, service)): State<(Arc<Connect>, Service)>,
    req: Request,
    next: Next,
) -> Response {
    let latency = sim.lock().faults.settings.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return service
                .invalid("The request body is too large.")
                .into_response()
        }
    };
    let outcome = {
        let mut st = sim.lock();
        let scopes = call_scope(&st, service, &parts.headers, &bytes);
        let instance = scopes.first().cloned();
        st.stats.bump(instance.as_deref(), |s| &mut s.api_calls);
        let signed = if st.knobs.settings.require_sigv4 {
            check_sigv4(&parts.headers, service)
        } else {
            Ok(())
        };
        signed.and_then(|()| match st.faults.take_api_failure(&scopes) {
            Some(status) => {
                st.stats
                    .bump(instance.as_deref(), |s| &mut s.api_errors_injected);
                Err(ApiError::injected(status, service))
            }
            None => Ok(()),
        })
    };
    if let Err(e) = outcome {
        tracing::info!(path = %parts.uri.path(), status = e.status.as_u16(), code = e.code, "api call refused");
        return e.into_response();
    }
    let mut response = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    insert_request_id(response.headers_mut());
    response
}

async fn upsert_instance(
    State(sim): State<Arc<Connect>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let cfg: InstanceConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_request(format!("Invalid instance config: {e}")))?;
    if cfg.instance_id.trim().is_empty() || cfg.instance_id.len() > api::MAX_INSTANCE_ID_LEN {
        return Err(ApiError::invalid_request(
            "instance_id must have 1 to 100 characters",
        ));
    }
    if cfg.contact_flow_ids.is_empty() || cfg.contact_flow_ids.iter().any(|f| f.trim().is_empty()) {
        return Err(ApiError::invalid_request(
            "contact_flow_ids must list at least one non-empty flow id",
        ));
    }
    let instance = Instance {
        id: cfg.instance_id,
        contact_flow_ids: cfg.contact_flow_ids,
        queue: cfg
            .queue
            .filter(|q| !q.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_QUEUE.to_string()),
        account_id: cfg
            .account_id
            .unwrap_or_else(|| DEFAULT_ACCOUNT_ID.to_string()),
        max_active_chats: cfg.max_active_chats,
    };
    tracing::info!(instance = %instance.id, flows = ?instance.contact_flow_ids, "instance configured");
    let view = instance_view(&instance);
    sim.lock().instances.insert(instance.id.clone(), instance);
    Ok(Json(view))
}

fn instance_view(i: &Instance) -> Value {
    json!({
        "instance_id": i.id,
        "contact_flow_ids": i.contact_flow_ids,
        "queue": i.queue,
        "account_id": i.account_id,
        "max_active_chats": i.max_active_chats,
    })
}

async fn list_instances(State(sim): State<Arc<Connect>>) -> Json<Value> {
    let st = sim.lock();
    let mut list: Vec<&Instance> = st.instances.values().collect();
    list.sort_by(|a, b| a.id.cmp(&b.id));
    Json(Value::Array(list.into_iter().map(instance_view).collect()))
}

/// `?instance_id=` (or `?integration_id=`, the name the conformance suite uses).
#[derive(Deserialize)]
struct InstanceFilter {
    instance_id: Option<String>,
    integration_id: Option<String>,
}

impl InstanceFilter {
    fn instance(&self) -> Option<&str> {
        self.instance_id
            .as_deref()
            .or(self.integration_id.as_deref())
    }
}

async fn get_stats(
    State(sim): State<Arc<Connect>>,
    Query(filter): Query<InstanceFilter>,
) -> Json<Stats> {
    let st = sim.lock();
    Json(match filter.instance() {
        Some(id) => st.stats.by_instance.get(id).cloned().unwrap_or_default(),
        None => st.stats.total.clone(),
    })
}

/// `Host` of a request, to build absolute URLs such as the WebSocket URL.
fn request_host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string()
}
