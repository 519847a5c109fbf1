//! Genesys Cloud simulator: OAuth client credentials, Open Messaging inbound API,
//! signed outbound webhook, Notifications API (REST + WebSocket), conversation
//! API, an agent desktop page and fault knobs. Faithful to
//! `shared/providers/genesys.md`; everything is kept in memory.
//!
//! Base URLs: login `http://HOST:PORT/genesys/login`, API `http://HOST:PORT/genesys`,
//! notification sockets `ws://HOST:PORT/genesys/streaming/channels/{id}`.

mod conversations;
mod desktop;
mod inbound;
mod notifications;
mod oauth;
#[cfg(test)]
mod tests;
mod webhook;

use crate::faults::{FaultUpdate, Faults};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, head, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use time::OffsetDateTime;

use conversations::{AgentUser, Conversation};
use notifications::ChannelStore;
use oauth::TokenStore;

/// Genesys: the webhook signature secret must be longer than 15 characters.
const MIN_WEBHOOK_SECRET_LEN: usize = 16;
const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;

/// The simulator; shared by all handlers and background tasks.
pub struct Genesys {
    state: Mutex<SimState>,
    http: reqwest::Client,
}

/// Everything the simulator knows. Locked briefly, never across an `.await`.
#[derive(Default)]
struct SimState {
    integrations: HashMap<String, Integration>,
    tokens: TokenStore,
    conversations: HashMap<String, Conversation>,
    /// Conversation ids in creation order.
    conversation_order: Vec<String>,
    /// Open conversation per (integration, customer `from.id`).
    open_by_customer: HashMap<(String, String), String>,
    users: HashMap<String, AgentUser>,
    channels: ChannelStore,
    faults: Faults,
    stats: StatsBook,
}

impl SimState {
    /// Integrations reachable with this OAuth client (the client's "org").
    fn integrations_of_client(&self, client_id: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .integrations
            .values()
            .filter(|i| i.client_id == client_id)
            .map(|i| i.id.clone())
            .collect();
        ids.sort();
        ids
    }
}

/// One Open Messaging integration (one test tenant).
#[derive(Debug, Clone)]
struct Integration {
    id: String,
    client_id: String,
    client_secret: String,
    webhook_url: String,
    webhook_secret: String,
    webhook_headers: BTreeMap<String, String>,
    typing_outbound: bool,
    token_ttl_secs: u64,
    /// The queue the inbound-message flow routes to.
    queue_id: String,
    division_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntegrationConfig {
    integration_id: String,
    client_id: String,
    client_secret: String,
    webhook_url: String,
    webhook_secret: String,
    #[serde(default)]
    webhook_headers: BTreeMap<String, String>,
    typing_outbound: Option<bool>,
    token_ttl_secs: Option<u64>,
}

/// Counters of `GET /sim/genesys/stats`.
#[derive(Debug, Clone, Default, Serialize)]
struct Stats {
    tokens_issued: u64,
    api_calls: u64,
    api_errors_injected: u64,
    inbound_messages: u64,
    inbound_events: u64,
    inbound_receipts: u64,
    /// Webhook calls answered 2xx.
    webhook_deliveries: u64,
    /// Every webhook HTTP call, first tries and retries.
    webhook_attempts: u64,
    webhook_retries: u64,
    /// Webhook messages given up on (non-retryable status or retries exhausted).
    webhook_failures: u64,
    ws_connections: u64,
    /// Frames with a topic event written to a socket.
    notifications_sent: u64,
    /// Topic events no socket received.
    notifications_lost: u64,
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
            *field(self.by_integration.entry(id.to_string()).or_default()) += 1;
        }
    }
}

/// Who called an `/api/v2` route, from the bearer token.
#[derive(Debug, Clone)]
struct Caller {
    client_id: String,
    /// Integrations of the caller's OAuth client, for fault scoping.
    integrations: Vec<String>,
}

impl Caller {
    fn first_integration(&self) -> Option<&str> {
        self.integrations.first().map(String::as_str)
    }
}

/// Genesys `ErrorBody` (spec §9), also used by the sim-only routes.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad.request", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not.found", message)
    }

    fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "bad.credentials", message)
    }

    fn injected(status: u16, retry_after_secs: u64) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut err = match status {
            StatusCode::TOO_MANY_REQUESTS => Self::new(
                status,
                "too.many.requests",
                format!(
                    "Rate limit exceeded the maximum. Retry the request in [{retry_after_secs}] seconds"
                ),
            ),
            StatusCode::INTERNAL_SERVER_ERROR => Self::new(
                status,
                "internal.server.error",
                "The server encountered an unexpected condition.",
            ),
            StatusCode::SERVICE_UNAVAILABLE => Self::new(
                status,
                "service.unavailable",
                "Service is currently unavailable.",
            ),
            _ => Self::new(status, "simulated.error", "Simulated failure."),
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            err.retry_after = Some(retry_after_secs);
        }
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "message": self.message,
            "code": self.code,
            "status": self.status.as_u16(),
            "contextId": uuid::Uuid::new_v4().to_string(),
            "details": [],
            "errors": [],
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Parses a JSON request body ourselves so errors keep the ErrorBody shape.
fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("Invalid JSON: {e}")))
}

/// ISO-8601 UTC with milliseconds, as Genesys writes times.
fn iso(t: OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_default()
}

fn now_iso() -> String {
    iso(OffsetDateTime::now_utc())
}

fn epoch_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A Genesys-style message id (32 hex characters).
fn message_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Genesys {
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

/// All Genesys routes: the real API under `/genesys`, the control API under `/sim/genesys`.
pub fn router(sim: Arc<Genesys>) -> Router {
    let api = Router::new()
        .route(
            "/conversations/messages/{id}/inbound/open/message",
            post(inbound::message),
        )
        .route(
            "/conversations/messages/{id}/inbound/open/event",
            post(inbound::event),
        )
        .route(
            "/conversations/messages/{id}/inbound/open/receipt",
            post(inbound::receipt),
        )
        .route(
            "/conversations/messages/{id}",
            get(conversations::get_conversation),
        )
        .route(
            "/conversations/messages/{id}/participants/{participant_id}",
            patch(conversations::patch_participant),
        )
        .route("/users/{id}", get(conversations::get_user))
        .route(
            "/notifications/channels",
            post(notifications::create_channel).get(notifications::list_channels),
        )
        .route(
            "/notifications/channels/{id}",
            head(notifications::head_channel),
        )
        .route(
            "/notifications/channels/{id}/subscriptions",
            get(notifications::get_subscriptions)
                .post(notifications::add_subscriptions)
                .put(notifications::replace_subscriptions)
                .delete(notifications::delete_subscriptions),
        )
        .route_layer(middleware::from_fn_with_state(sim.clone(), api_guard))
        .fallback(|| async { ApiError::not_found("Resource not found.") });

    Router::new()
        .nest("/genesys/api/v2", api)
        .route("/genesys/login/oauth/token", post(oauth::token))
        .route(
            "/genesys/streaming/channels/{id}",
            get(notifications::websocket),
        )
        .route("/genesys/desktop", get(desktop::page))
        .route(
            "/sim/genesys/integrations",
            post(upsert_integration).get(list_integrations),
        )
        .route("/sim/genesys/faults", get(get_faults).post(post_faults))
        .route("/sim/genesys/stats", get(get_stats))
        .merge(desktop::control_routes())
        .with_state(sim)
}

/// Latency, bearer auth, call counting and injected failures for every `/api/v2` route.
async fn api_guard(State(sim): State<Arc<Genesys>>, mut req: Request, next: Next) -> Response {
    let latency = sim.lock().faults.settings.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .map(str::to_owned);

    let outcome = {
        let mut st = sim.lock();
        let client_id = token
            .as_deref()
            .and_then(|t| st.tokens.client_of(t, std::time::Instant::now()));
        match (token.is_some(), client_id) {
            (false, _) => {
                st.stats.bump(None, |s| &mut s.api_calls);
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "authentication.required",
                    "No authentication bearer token specified in authorization header.",
                ))
            }
            (true, None) => {
                st.stats.bump(None, |s| &mut s.api_calls);
                Err(ApiError::unauthorized("Invalid login credentials."))
            }
            (true, Some(client_id)) => {
                let caller = Caller {
                    integrations: st.integrations_of_client(&client_id),
                    client_id,
                };
                st.stats
                    .bump(caller.first_integration(), |s| &mut s.api_calls);
                match st.faults.take_api_failure(&caller.integrations) {
                    Some(status) => {
                        st.stats
                            .bump(caller.first_integration(), |s| &mut s.api_errors_injected);
                        let retry_after = st.faults.settings.retry_after_secs;
                        Err(ApiError::injected(status, retry_after))
                    }
                    None => Ok(caller),
                }
            }
        }
    };
    match outcome {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            tracing::info!(path = %req.uri().path(), status = e.status.as_u16(), "api call refused");
            e.into_response()
        }
    }
}

async fn upsert_integration(
    State(sim): State<Arc<Genesys>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let cfg: IntegrationConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid integration config: {e}")))?;
    for (name, value) in [
        ("integration_id", &cfg.integration_id),
        ("client_id", &cfg.client_id),
        ("client_secret", &cfg.client_secret),
        ("webhook_url", &cfg.webhook_url),
    ] {
        if value.trim().is_empty() {
            return Err(ApiError::bad_request(format!("{name} must not be empty")));
        }
    }
    if cfg.webhook_secret.chars().count() < MIN_WEBHOOK_SECRET_LEN {
        return Err(ApiError::bad_request(
            "webhook_secret must be longer than 15 characters (Genesys rule)",
        ));
    }
    if reqwest::Url::parse(&cfg.webhook_url).is_err() {
        return Err(ApiError::bad_request("webhook_url is not a valid URL"));
    }
    for (name, value) in &cfg.webhook_headers {
        if header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || HeaderValue::from_str(value).is_err()
        {
            return Err(ApiError::bad_request(format!(
                "webhook_headers: invalid header {name}"
            )));
        }
    }
    let mut st = sim.lock();
    let (queue_id, division_id) = match st.integrations.get(&cfg.integration_id) {
        Some(old) => (old.queue_id.clone(), old.division_id.clone()),
        None => (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        ),
    };
    let integration = Integration {
        id: cfg.integration_id.clone(),
        client_id: cfg.client_id,
        client_secret: cfg.client_secret,
        webhook_url: cfg.webhook_url,
        webhook_secret: cfg.webhook_secret,
        webhook_headers: cfg.webhook_headers,
        typing_outbound: cfg.typing_outbound.unwrap_or(true),
        token_ttl_secs: cfg.token_ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL_SECS),
        queue_id,
        division_id,
    };
    tracing::info!(integration = %integration.id, client = %integration.client_id, "integration configured");
    let view = integration_view(&integration);
    st.integrations.insert(integration.id.clone(), integration);
    Ok(Json(view))
}

/// An integration without its secrets.
fn integration_view(i: &Integration) -> Value {
    json!({
        "integration_id": i.id,
        "client_id": i.client_id,
        "webhook_url": i.webhook_url,
        "webhook_headers": i.webhook_headers.keys().collect::<Vec<_>>(),
        "typing_outbound": i.typing_outbound,
        "token_ttl_secs": i.token_ttl_secs,
        "queue_id": i.queue_id,
        "division_id": i.division_id,
    })
}

async fn list_integrations(State(sim): State<Arc<Genesys>>) -> Json<Value> {
    let st = sim.lock();
    let mut list: Vec<&Integration> = st.integrations.values().collect();
    list.sort_by(|a, b| a.id.cmp(&b.id));
    Json(Value::Array(
        list.into_iter().map(integration_view).collect(),
    ))
}

async fn get_faults(State(sim): State<Arc<Genesys>>) -> Json<Value> {
    Json(sim.lock().faults.snapshot())
}

async fn post_faults(
    State(sim): State<Arc<Genesys>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let update: FaultUpdate = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid faults: {e}")))?;
    let mut st = sim.lock();
    st.faults.apply(&update).map_err(ApiError::bad_request)?;
    let scope = update.integration_id.as_deref();
    let clients: Option<Vec<String>> = scope.map(|id| {
        st.integrations
            .get(id)
            .map(|i| vec![i.client_id.clone()])
            .unwrap_or_default()
    });
    if update.expire_tokens_now == Some(true) {
        let n = st.tokens.revoke(clients.as_deref());
        tracing::info!(?scope, revoked = n, "tokens expired by fault knob");
    }
    if update.evict_channels_now == Some(true) {
        let n = st.channels.evict_all(clients.as_deref());
        tracing::info!(?scope, evicted = n, "channels evicted by fault knob");
    }
    notifications::fire_pending_socket_faults(&mut st);
    tracing::info!(?scope, "faults updated");
    Ok(Json(st.faults.snapshot()))
}

#[derive(Deserialize)]
struct IntegrationFilter {
    integration_id: Option<String>,
}

async fn get_stats(
    State(sim): State<Arc<Genesys>>,
    Query(filter): Query<IntegrationFilter>,
) -> Json<Stats> {
    let st = sim.lock();
    Json(match filter.integration_id {
        Some(id) => st
            .stats
            .by_integration
            .get(&id)
            .cloned()
            .unwrap_or_default(),
        None => st.stats.total.clone(),
    })
}

/// `Host` of a request, to build absolute URIs such as `connectUri`.
fn request_host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string()
}
