//! Webex Contact Center simulator, BYO custom messaging channel (Route A of
//! `shared/providers/webex.md`): the Service App refresh grant, the Tasks API
//! (create, append, end) under `/webex/v1` and `/webex/v2`, Subscriptions, the
//! custom messaging asset webhook, signed CloudEvents deliveries, an agent
//! desktop page and fault knobs. Everything is kept in memory.
//!
//! Base URLs for the relay: `http://HOST:PORT/webex` stands for both
//! `https://api.wxcc-{dc}.cisco.com` and `https://webexapis.com`. An org is a
//! tenant, created by `POST /sim/webex/integrations`; its id scopes faults.

mod api;
mod desktop;
mod emit;
mod knobs;
#[cfg(test)]
mod tests;

use crate::faults::Faults;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use knobs::Knobs;

/// Event types a subscription may name (W1, W7).
pub(crate) const EVENT_TYPES: [&str; 8] = [
    "task:new",
    "task:connect",
    "task:connected",
    "task:parked",
    "task:ended",
    "task:failed",
    "task-message:appended",
    "task-message:append-failed",
];
/// A subscription names at most 32 event types (W5).
const MAX_EVENT_TYPES: usize = 32;
/// Subscription secrets are 32–256 characters (W5).
const SECRET_LEN: std::ops::RangeInclusive<usize> = 32..=256;

pub struct Webex {
    state: Mutex<SimState>,
    http: reqwest::Client,
}

#[derive(Default)]
struct SimState {
    orgs: HashMap<String, Org>,
    /// Live refresh tokens → org id.
    refresh_tokens: HashMap<String, String>,
    /// Issued access tokens.
    access_tokens: HashMap<String, AccessToken>,
    tasks: HashMap<String, Task>,
    task_order: Vec<String>,
    faults: Faults,
    knobs: Knobs,
    stats: StatsBook,
}

struct AccessToken {
    org_id: String,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct Org {
    id: String,
    client_id: String,
    client_secret: String,
    business_address: String,
    channel_name: String,
    /// The custom messaging asset's webhook (agent and flow messages).
    asset_webhook: Option<Hook>,
    subscriptions: Vec<Subscription>,
    /// Desktop agents by name, with their user ids.
    agents: HashMap<String, String>,
}

#[derive(Debug, Clone)]
struct Hook {
    url: String,
    secret: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    id: String,
    name: String,
    description: String,
    event_types: Vec<String>,
    destination_url: String,
    #[serde(skip)]
    secret: String,
    resource_version: String,
    /// `v1` or `v2` (the API it was created through; v2 adds timestamp headers).
    api_version: String,
    status: String,
    #[serde(skip)]
    consecutive_failures: u32,
    created_time: i64,
}

#[derive(Debug, Clone, Serialize)]
struct TaskMessage {
    id: String,
    direction: &'static str,
    text: String,
    at: String,
    sender_type: &'static str,
    /// The agent's name on outbound agent messages.
    sender: Option<String>,
}

#[derive(Debug)]
struct Task {
    id: String,
    org_id: String,
    origin_id: String,
    origin_name: String,
    first_alias: String,
    global_variables: Map<String, Value>,
    state: &'static str,
    agent: Option<(String, String)>,
    customer_connected: bool,
    messages: Vec<TaskMessage>,
    duplicate_inbound: Vec<String>,
    /// The ordered delivery queue of this task's webhooks.
    queue: Option<mpsc::UnboundedSender<emit::Delivery>>,
}

impl Task {
    fn view(&self) -> Value {
        json!({
            "id": self.id,
            "integration_id": self.org_id,
            "customer": {"id": self.origin_id, "display_name": self.origin_name},
            "context": self.global_variables,
            "state": self.state,
            "agent": self.agent.as_ref().map(|(id, name)| json!({"name": name, "id": id})),
            "customer_connected": self.customer_connected,
            "customer_typing": false,
            "messages": self.messages,
            "duplicate_inbound_message_ids": self.duplicate_inbound,
        })
    }
}

#[derive(Debug, Clone, Default, Serialize)]
struct Stats {
    api_calls: u64,
    api_errors_injected: u64,
    tokens_issued: u64,
    token_refusals: u64,
    tasks_created: u64,
    tasks_failed: u64,
    messages_appended: u64,
    appends_failed: u64,
    tasks_ended_by_customer: u64,
    agent_messages: u64,
    webhook_events: u64,
    webhook_attempts: u64,
    webhook_deliveries: u64,
    webhook_failures: u64,
    webhook_dropped: u64,
}

#[derive(Debug, Default)]
struct StatsBook {
    total: Stats,
    by_org: HashMap<String, Stats>,
}

impl StatsBook {
    fn bump(&mut self, org: Option<&str>, field: fn(&mut Stats) -> &mut u64) {
        *field(&mut self.total) += 1;
        if let Some(id) = org {
            *field(self.by_org.entry(id.to_string()).or_default()) += 1;
        }
    }
}

/// WxCC-style error `{"trackingId","error":{"key","message":[{"description"}]}}` [U shape].
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

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    fn invalid_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Invalid Token")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let tracking = format!("SIM_{}", uuid::Uuid::new_v4());
        let body = if self.status == StatusCode::UNAUTHORIZED {
            json!({"message": self.message, "trackingId": tracking})
        } else {
            json!({"trackingId": tracking, "error": {"key": self.status.as_u16().to_string(),
                "message": [{"description": self.message}]}})
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&tracking) {
            resp.headers_mut().insert("trackingid", v);
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn now_iso() -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::now_utc().format(FORMAT).unwrap_or_default()
}

impl Webex {
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

/// Body of `POST /sim/webex/integrations` (upsert of one org).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntegrationConfig {
    org_id: String,
    client_id: String,
    client_secret: String,
    refresh_token: String,
    business_address: String,
    channel_name: String,
    /// Asset webhook URL; also the default subscription's destination.
    webhook_url: String,
    webhook_secret: String,
    /// Create a subscription to every task event (default true).
    subscribe: Option<bool>,
    /// `v1` or `v2` (default `v2`: timestamp headers).
    subscription_version: Option<String>,
}

/// Subscription rules of W5; HTTPS on 443 only with `require_https`.
fn check_destination(url: &str, require_https: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "destinationUrl is not a URL".to_string())?;
    if parsed.query().is_some() {
        return Err("destinationUrl must not have a query".into());
    }
    if parsed.path().trim_matches('/').is_empty() {
        return Err("destinationUrl needs a path".into());
    }
    if require_https && (parsed.scheme() != "https" || parsed.port().is_some_and(|p| p != 443)) {
        return Err("destinationUrl must be HTTPS on port 443".into());
    }
    Ok(())
}

impl SimState {
    fn configure(&mut self, cfg: IntegrationConfig) -> Result<Value, ApiError> {
        for (name, value) in [
            ("org_id", &cfg.org_id),
            ("client_id", &cfg.client_id),
            ("client_secret", &cfg.client_secret),
            ("refresh_token", &cfg.refresh_token),
            ("business_address", &cfg.business_address),
            ("channel_name", &cfg.channel_name),
        ] {
            if value.trim().is_empty() {
                return Err(ApiError::bad_request(format!("{name} must not be empty")));
            }
        }
        if !SECRET_LEN.contains(&cfg.webhook_secret.chars().count()) {
            return Err(ApiError::bad_request(
                "webhook_secret must be 32 to 256 characters",
            ));
        }
        let require_https = self.knobs.require_https(&cfg.org_id);
        check_destination(&cfg.webhook_url, require_https).map_err(ApiError::bad_request)?;
        let version = cfg.subscription_version.as_deref().unwrap_or("v2");
        if !matches!(version, "v1" | "v2") {
            return Err(ApiError::bad_request(
                "subscription_version must be v1 or v2",
            ));
        }
        if let Some(other) = self.refresh_tokens.get(&cfg.refresh_token) {
            if other != &cfg.org_id {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("refresh_token belongs to org {other}"),
                ));
            }
        }
        if let Some(other) = self
            .orgs
            .values()
            .find(|o| o.id != cfg.org_id && o.business_address == cfg.business_address)
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("business_address belongs to org {}", other.id),
            ));
        }
        let org = self.orgs.entry(cfg.org_id.clone()).or_insert_with(|| Org {
            id: cfg.org_id.clone(),
            client_id: String::new(),
            client_secret: String::new(),
            business_address: String::new(),
            channel_name: String::new(),
            asset_webhook: None,
            subscriptions: Vec::new(),
            agents: HashMap::new(),
        });
        org.client_id = cfg.client_id;
        org.client_secret = cfg.client_secret;
        org.business_address = cfg.business_address;
        org.channel_name = cfg.channel_name;
        org.asset_webhook = Some(Hook {
            url: cfg.webhook_url.clone(),
            secret: cfg.webhook_secret.clone(),
        });
        org.subscriptions.retain(|s| s.name != "relay-task-events");
        if cfg.subscribe.unwrap_or(true) {
            org.subscriptions.push(Subscription {
                id: uuid::Uuid::new_v4().to_string(),
                name: "relay-task-events".into(),
                description: "Task lifecycle for the chat handoff relay".into(),
                event_types: EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
                destination_url: cfg.webhook_url,
                secret: cfg.webhook_secret,
                resource_version: "task:1.0.0".into(),
                api_version: version.to_string(),
                status: "active".into(),
                consecutive_failures: 0,
                created_time: now_ms(),
            });
        }
        self.refresh_tokens
            .insert(cfg.refresh_token, cfg.org_id.clone());
        tracing::info!(org = %cfg.org_id, "webex org configured");
        let org = &self.orgs[&cfg.org_id];
        Ok(json!({"org_id": org.id, "subscriptions": org.subscriptions}))
    }
}

async fn upsert_integration(
    State(sim): State<Arc<Webex>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let cfg: IntegrationConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid integration config: {e}")))?;
    sim.lock().configure(cfg).map(Json)
}

async fn list_integrations(State(sim): State<Arc<Webex>>) -> Json<Value> {
    let st = sim.lock();
    let mut orgs: Vec<&Org> = st.orgs.values().collect();
    orgs.sort_by(|a, b| a.id.cmp(&b.id));
    Json(Value::Array(
        orgs.iter()
            .map(|o| {
                json!({"org_id": o.id, "client_id": o.client_id, "business_address": o.business_address,
                "channel_name": o.channel_name, "asset_webhook_url": o.asset_webhook.as_ref().map(|h| h.url.clone()),
                "subscriptions": o.subscriptions})
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct OrgFilter {
    integration_id: Option<String>,
}

async fn get_stats(State(sim): State<Arc<Webex>>, Query(f): Query<OrgFilter>) -> Json<Stats> {
    let st = sim.lock();
    Json(match f.integration_id {
        Some(id) => st.stats.by_org.get(&id).cloned().unwrap_or_default(),
        None => st.stats.total.clone(),
    })
}

async fn get_faults(State(sim): State<Arc<Webex>>) -> Json<Value> {
    let st = sim.lock();
    Json(knobs::snapshot(&st.faults, &st.knobs))
}

async fn post_faults(
    State(sim): State<Arc<Webex>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(ApiError::bad_request("Invalid faults: expected an object")),
        Err(e) => return Err(ApiError::bad_request(format!("Invalid faults: {e}"))),
    };
    let (shared, own) = knobs::split(body).map_err(ApiError::bad_request)?;
    let mut st = sim.lock();
    st.faults.apply(&shared).map_err(ApiError::bad_request)?;
    st.knobs.apply(
        shared.integration_id.as_deref(),
        shared.reset == Some(true),
        &own,
    );
    if shared.expire_tokens_now == Some(true) {
        let scope = shared.integration_id.clone();
        st.access_tokens
            .retain(|_, t| scope.as_ref().is_some_and(|s| s != &t.org_id));
    }
    tracing::info!(scope = ?shared.integration_id, "webex faults updated");
    Ok(Json(knobs::snapshot(&st.faults, &st.knobs)))
}

/// All Webex routes: the platform under `/webex`, control under `/sim/webex`.
pub fn router(sim: Arc<Webex>) -> Router {
    Router::new()
        .route("/webex/v1/access_token", post(api::access_token))
        .route("/webex/{version}/tasks", post(api::create_task))
        .route(
            "/webex/{version}/tasks/{task_id}/messages",
            post(api::append),
        )
        .route("/webex/{version}/tasks/{task_id}/end", post(api::end_task))
        .route(
            "/webex/{version}/subscriptions",
            post(api::create_subscription).get(api::list_subscriptions),
        )
        .route(
            "/webex/{version}/subscriptions/{sub_id}",
            get(api::get_subscription).delete(api::delete_subscription),
        )
        .route("/webex/desktop", get(desktop::page))
        .route(
            "/sim/webex/integrations",
            post(upsert_integration).get(list_integrations),
        )
        .route("/sim/webex/faults", get(get_faults).post(post_faults))
        .route("/sim/webex/stats", get(get_stats))
        .merge(desktop::control_routes())
        .with_state(sim)
}
