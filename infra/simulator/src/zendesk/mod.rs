//! Zendesk Messaging simulator: the Sunshine Conversations v2 API (users,
//! personal conversations, messages, activity, switchboard and its control
//! actions), webhook delivery of a Conversations integration, an Agent
//! Workspace that turns a `passControl` into a ticket, an agent desktop page
//! and fault knobs. Faithful to `shared/providers/zendesk.md`; everything is
//! kept in memory.
//!
//! Base URL for the relay: `http://HOST:PORT/zendesk/sc` (stands for
//! `https://{subdomain}.zendesk.com/sc`), so routes are `/zendesk/sc/v2/apps/{appId}/…`.
//! Apps are isolated tenants; they are created by `POST /sim/zendesk/integrations`.

mod api;
mod desktop;
mod knobs;
mod switchboard;
#[cfg(test)]
mod tests;
mod webhook;
mod workspace;

use crate::faults::Faults;
use axum::extract::{Query, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use time::OffsetDateTime;

use api::{Conversation, User};
use knobs::Knobs;
use switchboard::{Switchboard, SwitchboardIntegration, AGENT_WORKSPACE, ANSWER_BOT};
use workspace::Agent;

/// JSON request bodies above this size are refused (spec §8).
const MAX_BODY_BYTES: usize = 100 * 1024;
/// Name of the relay's switchboard integration unless the config says otherwise.
const DEFAULT_RELAY_SWITCHBOARD_NAME: &str = "ai-relay";
/// Webhook triggers of the custom integration made by `POST /sim/zendesk/integrations`.
const DEFAULT_TRIGGERS: [&str; 10] = [
    "conversation:message",
    "conversation:typing",
    "conversation:remove",
    "switchboard:passControl",
    "switchboard:passControl:failure",
    "switchboard:offerControl",
    "switchboard:offerControl:failure",
    "switchboard:acceptControl",
    "switchboard:acceptControl:failure",
    "switchboard:releaseControl",
];
/// Triggers a webhook may subscribe to in the simulator.
const KNOWN_TRIGGERS: [&str; 12] = [
    "conversation:message",
    "conversation:typing",
    "conversation:read",
    "conversation:remove",
    "switchboard:passControl",
    "switchboard:passControl:failure",
    "switchboard:offerControl",
    "switchboard:offerControl:failure",
    "switchboard:acceptControl",
    "switchboard:acceptControl:failure",
    "switchboard:releaseControl",
    "*",
];

/// The simulator; shared by all handlers and background tasks.
pub struct Zendesk {
    state: Mutex<SimState>,
    http: reqwest::Client,
}

/// Everything the simulator knows. Locked briefly, never across an `.await`.
#[derive(Default)]
struct SimState {
    apps: HashMap<String, App>,
    /// API keys of every app, by key id.
    keys: HashMap<String, ApiKey>,
    conversations: HashMap<String, Conversation>,
    /// Conversation ids in creation order.
    conversation_order: Vec<String>,
    faults: Faults,
    knobs: Knobs,
    stats: StatsBook,
}

/// One Sunshine Conversations app (one test tenant).
#[derive(Debug)]
struct App {
    id: String,
    switchboard: Switchboard,
    /// Custom (Conversations) integrations, by integration id.
    integrations: BTreeMap<String, CustomIntegration>,
    users: HashMap<String, User>,
    user_ids_by_external: HashMap<String, String>,
    /// Agent Workspace agents, created on first use by name.
    agents: Vec<Agent>,
    next_ticket_id: u64,
}

impl App {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            switchboard: Switchboard::seeded(),
            integrations: BTreeMap::new(),
            users: HashMap::new(),
            user_ids_by_external: HashMap::new(),
            agents: Vec::new(),
            next_ticket_id: 1001,
        }
    }

    /// A user by id or external id.
    fn user(&self, id_or_external: &str) -> Option<&User> {
        self.users.get(id_or_external).or_else(|| {
            self.user_ids_by_external
                .get(id_or_external)
                .and_then(|id| self.users.get(id))
        })
    }

    fn agent_workspace(&self) -> &SwitchboardIntegration {
        self.switchboard
            .by_name(AGENT_WORKSPACE)
            .expect("the Agent Workspace is seeded and cannot be removed")
    }
}

/// A custom integration with its one webhook.
#[derive(Debug, Clone)]
struct CustomIntegration {
    id: String,
    display_name: String,
    webhook: Webhook,
}

#[derive(Debug, Clone)]
struct Webhook {
    id: String,
    target: String,
    secret: String,
    triggers: Vec<String>,
}

impl Webhook {
    fn subscribes(&self, event_type: &str) -> bool {
        self.triggers.iter().any(|t| t == event_type || t == "*")
    }
}

/// Scope of an API key (spec §2); `App` includes everything `Integration` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Scope {
    Integration,
    App,
}

#[derive(Debug, Clone)]
struct ApiKey {
    id: String,
    secret: String,
    app_id: String,
    scope: Scope,
    /// The custom integration owning an integration-scoped key.
    integration_id: Option<String>,
}

/// Who called a `/v2/apps/{appId}` route.
#[derive(Debug, Clone)]
struct Caller {
    app_id: String,
    scope: Scope,
    integration_id: Option<String>,
}

impl Caller {
    fn require_app_scope(&self) -> Result<(), ApiError> {
        match self.scope {
            Scope::App => Ok(()),
            Scope::Integration => Err(ApiError::forbidden()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntegrationConfig {
    app_id: String,
    key_id: String,
    key_secret: String,
    key_scope: Option<Scope>,
    integration_id: String,
    webhook_url: String,
    webhook_secret: String,
    switchboard_integration_name: Option<String>,
    deliver_standby_events: Option<bool>,
    webhook_triggers: Option<Vec<String>>,
    display_name: Option<String>,
}

/// Counters of `GET /sim/zendesk/stats`.
#[derive(Debug, Clone, Default, Serialize)]
struct Stats {
    api_calls: u64,
    api_errors_injected: u64,
    users_created: u64,
    conversations_created: u64,
    conversations_deleted: u64,
    /// Messages posted through the API (user or business author).
    messages_posted: u64,
    activities: u64,
    control_actions: u64,
    control_failures: u64,
    tickets_created: u64,
    tickets_closed: u64,
    agent_messages: u64,
    /// Event copies queued for a webhook (one per event and integration).
    webhook_events: u64,
    /// Webhook calls answered 2xx.
    webhook_deliveries: u64,
    /// Every webhook HTTP call, first tries and retries.
    webhook_attempts: u64,
    webhook_retries: u64,
    /// Webhook calls given up on (non-retryable status or attempts exhausted).
    webhook_failures: u64,
    /// Events never sent because of `webhook_drop_next`.
    webhook_dropped: u64,
}

#[derive(Debug, Default)]
struct StatsBook {
    total: Stats,
    by_app: HashMap<String, Stats>,
}

impl StatsBook {
    fn bump(&mut self, app: Option<&str>, field: fn(&mut Stats) -> &mut u64) {
        *field(&mut self.total) += 1;
        if let Some(id) = app {
            *field(self.by_app.entry(id.to_string()).or_default()) += 1;
        }
    }
}

/// Sunshine Conversations error (spec §8): `{"errors":[{"code","title"}]}`,
/// also used by the sim-only routes.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    title: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, title: impl Into<String>) -> Self {
        Self {
            status,
            code,
            title: title.into(),
            retry_after: None,
        }
    }

    fn bad_request(title: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", title)
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authorization is required",
        )
    }

    fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Cannot perform this action with the provided credentials",
        )
    }

    fn not_found(code: &'static str, title: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, title)
    }

    fn conversation_not_found() -> Self {
        Self::not_found("conversation_not_found", "Conversation not found")
    }

    fn user_not_found() -> Self {
        Self::not_found("user_not_found", "User not found")
    }

    fn conflict(title: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", title)
    }

    fn injected(status: u16, retry_after_secs: u64) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut err = match status {
            StatusCode::TOO_MANY_REQUESTS => {
                Self::new(status, "too_many_requests", "API rate limit exceeded")
            }
            StatusCode::INTERNAL_SERVER_ERROR => {
                Self::new(status, "internal_server_error", "Internal server error")
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                Self::new(status, "service_unavailable", "Service unavailable")
            }
            _ => Self::new(status, "simulated_error", "Simulated failure"),
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            err.retry_after = Some(retry_after_secs);
        }
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code, "title": self.title}]});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Parses a JSON object request body, with the size limit of the real API.
fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Request body exceeds 100 KB",
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("A JSON body is required"));
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("The body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("Invalid JSON: {e}"))),
    }
}

/// An optional string property; present but not a string is a 400.
fn opt_str<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

/// `metadata`: a flat object of strings, numbers and booleans, ≤ 4 KB (spec §4).
fn check_metadata(m: &Map<String, Value>, key: &str) -> Result<Map<String, Value>, ApiError> {
    let meta = match m.get(key) {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(meta)) => meta,
        Some(_) => return Err(ApiError::bad_request(format!("{key} must be an object"))),
    };
    if let Some((k, _)) = meta
        .iter()
        .find(|(_, v)| !(v.is_string() || v.is_number() || v.is_boolean()))
    {
        return Err(ApiError::bad_request(format!(
            "{key}.{k}: only strings, numbers and booleans are supported (flat object)"
        )));
    }
    let size = serde_json::to_vec(meta).map(|v| v.len()).unwrap_or(0);
    if size > 4096 {
        return Err(ApiError::bad_request(format!(
            "{key} is limited to 4KB ({size} bytes)"
        )));
    }
    Ok(meta.clone())
}

/// `YYYY-MM-DDThh:mm:ss.SSSZ`, as Sunshine Conversations writes times.
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

/// A Sunshine Conversations style id (24 hex characters).
fn object_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..24].to_string()
}

/// Compares secrets without an early exit.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Host` of a request, for the absolute links of paged lists.
fn request_host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string()
}

impl Zendesk {
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

/// All Zendesk routes: the real API under `/zendesk/sc/v2`, the control API under `/sim/zendesk`.
pub fn router(sim: Arc<Zendesk>) -> Router {
    let api = Router::new()
        .route("/apps/{app_id}/users", post(api::create_user))
        .route("/apps/{app_id}/users/{user_id}", get(api::get_user))
        .route(
            "/apps/{app_id}/conversations",
            post(api::create_conversation).get(api::list_conversations),
        )
        .route(
            "/apps/{app_id}/conversations/{cid}",
            get(api::get_conversation).delete(api::delete_conversation),
        )
        .route(
            "/apps/{app_id}/conversations/{cid}/messages",
            post(api::post_message).get(api::list_messages),
        )
        .route(
            "/apps/{app_id}/conversations/{cid}/activity",
            post(api::post_activity),
        )
        .route(
            "/apps/{app_id}/conversations/{cid}/passControl",
            post(switchboard::pass_control),
        )
        .route(
            "/apps/{app_id}/conversations/{cid}/offerControl",
            post(switchboard::offer_control),
        )
        .route(
            "/apps/{app_id}/conversations/{cid}/acceptControl",
            post(switchboard::accept_control),
        )
        .route(
            "/apps/{app_id}/conversations/{cid}/releaseControl",
            post(switchboard::release_control),
        )
        .route(
            "/apps/{app_id}/switchboards",
            get(switchboard::list_switchboards).post(switchboard::create_switchboard),
        )
        .route(
            "/apps/{app_id}/switchboards/{sid}/switchboardIntegrations",
            get(switchboard::list_integrations).post(switchboard::create_integration),
        )
        .route(
            "/apps/{app_id}/switchboards/{sid}/switchboardIntegrations/{id}",
            axum::routing::patch(switchboard::update_integration),
        )
        .route_layer(middleware::from_fn_with_state(sim.clone(), api_guard))
        .fallback(|| async { ApiError::not_found("not_found", "Resource not found") });

    Router::new()
        .nest("/zendesk/sc/v2", api)
        .route("/zendesk/desktop", get(desktop::page))
        .route(
            "/sim/zendesk/integrations",
            post(upsert_integration).get(list_integrations),
        )
        .route("/sim/zendesk/faults", get(get_faults).post(post_faults))
        .route("/sim/zendesk/stats", get(get_stats))
        .merge(desktop::control_routes())
        .with_state(sim)
}

/// Credentials of a request: Basic `keyId:secret` or a `Bearer` JWT.
enum Credentials {
    Basic { key_id: String, secret: String },
    Jwt(String),
}

fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (key_id, secret) = decoded.split_once(':')?;
        Some(Credentials::Basic {
            key_id: key_id.to_string(),
            secret: secret.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Credentials::Jwt(rest.to_string()))
    } else {
        None
    }
}

fn b64url(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}

/// Verifies an HS256 JWT signed with an API key (spec §2); returns the key and
/// the scope it claims. Unsigned tokens and other algorithms are refused.
fn verify_jwt<'a>(keys: &'a HashMap<String, ApiKey>, token: &str) -> Option<(&'a ApiKey, Scope)> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&b64url(h)?).ok()?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    let key = keys.get(header.get("kid")?.as_str()?)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.secret.as_bytes()).ok()?;
    mac.update(format!("{h}.{p}").as_bytes());
    mac.verify_slice(&b64url(s)?).ok()?;
    let payload: Value = serde_json::from_slice(&b64url(p)?).ok()?;
    let claimed = match payload.get("scope")?.as_str()? {
        "app" => Scope::App,
        "integration" => Scope::Integration,
        _ => return None,
    };
    Some((key, claimed))
}

impl SimState {
    /// The caller of an app route, or 401 (missing, bad, or another app's key).
    fn authenticate(&self, creds: Option<Credentials>, app_id: &str) -> Result<Caller, ApiError> {
        let (key, scope) = match creds.ok_or_else(ApiError::unauthorized)? {
            Credentials::Basic { key_id, secret } => {
                let key = self
                    .keys
                    .get(&key_id)
                    .filter(|k| same_secret(&k.secret, &secret))
                    .ok_or_else(ApiError::unauthorized)?;
                (key, key.scope)
            }
            Credentials::Jwt(token) => {
                let (key, claimed) =
                    verify_jwt(&self.keys, &token).ok_or_else(ApiError::unauthorized)?;
                (key, claimed.min(key.scope))
            }
        };
        if key.app_id != app_id || !self.apps.contains_key(app_id) {
            return Err(ApiError::unauthorized());
        }
        Ok(Caller {
            app_id: key.app_id.clone(),
            scope,
            integration_id: key.integration_id.clone(),
        })
    }
}

/// Latency, auth, call counting and injected failures for every `/v2/apps/{appId}` route.
async fn api_guard(
    State(sim): State<Arc<Zendesk>>,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    let latency = sim.lock().faults.settings.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let app_id = params
        .iter()
        .find(|(name, _)| *name == "app_id")
        .map(|(_, value)| value.to_string())
        .unwrap_or_default();
    let creds = credentials(req.headers());
    let outcome = {
        let mut st = sim.lock();
        match st.authenticate(creds, &app_id) {
            Err(e) => {
                st.stats.bump(None, |s| &mut s.api_calls);
                Err(e)
            }
            Ok(caller) => {
                st.stats.bump(Some(&caller.app_id), |s| &mut s.api_calls);
                match st
                    .faults
                    .take_api_failure(std::slice::from_ref(&caller.app_id))
                {
                    Some(status) => {
                        st.stats
                            .bump(Some(&caller.app_id), |s| &mut s.api_errors_injected);
                        Err(ApiError::injected(
                            status,
                            st.faults.settings.retry_after_secs,
                        ))
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

/// `name` of a switchboard integration: alphanumerics, `-`, `_`, ≤ 128 (spec §3).
fn valid_switchboard_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl SimState {
    /// Upserts an app, its API key, the custom integration with its webhook and
    /// the integration's switchboard integration.
    fn configure(&mut self, cfg: IntegrationConfig) -> Result<Value, ApiError> {
        for (name, value) in [
            ("app_id", &cfg.app_id),
            ("key_id", &cfg.key_id),
            ("key_secret", &cfg.key_secret),
            ("integration_id", &cfg.integration_id),
            ("webhook_url", &cfg.webhook_url),
            ("webhook_secret", &cfg.webhook_secret),
        ] {
            if value.trim().is_empty() {
                return Err(ApiError::bad_request(format!("{name} must not be empty")));
            }
        }
        if reqwest::Url::parse(&cfg.webhook_url).is_err() {
            return Err(ApiError::bad_request("webhook_url is not a valid URL"));
        }
        let sb_name = cfg
            .switchboard_integration_name
            .clone()
            .unwrap_or_else(|| DEFAULT_RELAY_SWITCHBOARD_NAME.to_string());
        if !valid_switchboard_name(&sb_name) {
            return Err(ApiError::bad_request(
                "switchboard_integration_name: alphanumerics, '-' and '_' only, at most 128",
            ));
        }
        let triggers = match &cfg.webhook_triggers {
            Some(t) => {
                if let Some(bad) = t.iter().find(|t| !KNOWN_TRIGGERS.contains(&t.as_str())) {
                    return Err(ApiError::bad_request(format!(
                        "webhook_triggers: unknown trigger {bad}"
                    )));
                }
                t.clone()
            }
            None => DEFAULT_TRIGGERS.iter().map(|t| t.to_string()).collect(),
        };
        if let Some(key) = self.keys.get(&cfg.key_id) {
            if key.app_id != cfg.app_id {
                return Err(ApiError::conflict(format!(
                    "key_id {} belongs to app {}",
                    cfg.key_id, key.app_id
                )));
            }
        }
        if let Some(other) = self
            .apps
            .values()
            .find(|a| a.id != cfg.app_id && a.integrations.contains_key(&cfg.integration_id))
        {
            return Err(ApiError::conflict(format!(
                "integration_id {} belongs to app {}",
                cfg.integration_id, other.id
            )));
        }

        let app = self
            .apps
            .entry(cfg.app_id.clone())
            .or_insert_with(|| App::new(&cfg.app_id));
        let sb = &app.switchboard;
        let existing = sb.of_integration(&cfg.integration_id).map(|s| s.id.clone());
        if sb
            .by_name(&sb_name)
            .is_some_and(|s| Some(&s.id) != existing.as_ref())
        {
            return Err(ApiError::conflict(format!(
                "switchboard_integration_name {sb_name} is taken in this app"
            )));
        }
        if existing.is_none() && sb.integrations.len() >= switchboard::MAX_SWITCHBOARD_INTEGRATIONS
        {
            return Err(ApiError::bad_request(
                "A switchboard holds at most 10 switchboard integrations",
            ));
        }

        let webhook_id = app
            .integrations
            .get(&cfg.integration_id)
            .map(|i| i.webhook.id.clone())
            .unwrap_or_else(object_id);
        app.integrations.insert(
            cfg.integration_id.clone(),
            CustomIntegration {
                id: cfg.integration_id.clone(),
                display_name: cfg
                    .display_name
                    .clone()
                    .unwrap_or_else(|| "AI handoff relay".to_string()),
                webhook: Webhook {
                    id: webhook_id.clone(),
                    target: cfg.webhook_url.clone(),
                    secret: cfg.webhook_secret.clone(),
                    triggers,
                },
            },
        );
        let deliver_standby = cfg.deliver_standby_events.unwrap_or(true);
        let aw_id = app.agent_workspace().id.clone();
        let relay_sb_id = match existing {
            Some(id) => {
                let s = app
                    .switchboard
                    .get_mut(&id)
                    .expect("switchboard integration just found");
                s.name = sb_name.clone();
                s.deliver_standby_events = deliver_standby;
                id
            }
            None => {
                let s = SwitchboardIntegration {
                    id: object_id(),
                    name: sb_name.clone(),
                    integration_id: cfg.integration_id.clone(),
                    integration_type: "custom".to_string(),
                    deliver_standby_events: deliver_standby,
                    next_id: Some(aw_id.clone()),
                    message_history_count: None,
                };
                let id = s.id.clone();
                app.switchboard.integrations.push(s);
                id
            }
        };
        let scope = cfg.key_scope.unwrap_or(Scope::Integration);
        self.keys.insert(
            cfg.key_id.clone(),
            ApiKey {
                id: cfg.key_id.clone(),
                secret: cfg.key_secret.clone(),
                app_id: cfg.app_id.clone(),
                scope,
                integration_id: (scope == Scope::Integration).then(|| cfg.integration_id.clone()),
            },
        );
        tracing::info!(app = %cfg.app_id, integration = %cfg.integration_id, key = %cfg.key_id, ?scope, "zendesk integration configured");
        let app = &self.apps[&cfg.app_id];
        Ok(json!({
            "app_id": app.id,
            "integration_id": cfg.integration_id,
            "webhook_id": webhook_id,
            "switchboard_id": app.switchboard.id,
            "relay_switchboard_integration_id": relay_sb_id,
            "agent_workspace_switchboard_integration_id": aw_id,
            "answer_bot_switchboard_integration_id": app.switchboard.by_name(ANSWER_BOT).map(|s| s.id.clone()),
        }))
    }

    /// Apps and integrations without secrets.
    fn integrations_view(&self) -> Value {
        let mut apps: Vec<&App> = self.apps.values().collect();
        apps.sort_by(|a, b| a.id.cmp(&b.id));
        let mut out = Vec::new();
        for app in apps {
            for i in app.integrations.values() {
                let keys: Vec<Value> = {
                    let mut keys: Vec<&ApiKey> = self
                        .keys
                        .values()
                        .filter(|k| {
                            k.app_id == app.id
                                && (k.integration_id.as_deref() == Some(i.id.as_str())
                                    || k.scope == Scope::App)
                        })
                        .collect();
                    keys.sort_by(|a, b| a.id.cmp(&b.id));
                    keys.into_iter()
                        .map(|k| json!({"key_id": k.id, "scope": k.scope}))
                        .collect()
                };
                out.push(json!({
                    "app_id": app.id,
                    "integration_id": i.id,
                    "display_name": i.display_name,
                    "webhook": {"id": i.webhook.id, "target": i.webhook.target, "triggers": i.webhook.triggers},
                    "keys": keys,
                    "switchboard_integration": app.switchboard.of_integration(&i.id).map(SwitchboardIntegration::api),
                }));
            }
        }
        Value::Array(out)
    }
}

async fn upsert_integration(
    State(sim): State<Arc<Zendesk>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let cfg: IntegrationConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid integration config: {e}")))?;
    sim.lock().configure(cfg).map(Json)
}

async fn list_integrations(State(sim): State<Arc<Zendesk>>) -> Json<Value> {
    Json(sim.lock().integrations_view())
}

async fn get_faults(State(sim): State<Arc<Zendesk>>) -> Json<Value> {
    let st = sim.lock();
    Json(knobs::snapshot(&st.faults, &st.knobs))
}

async fn post_faults(
    State(sim): State<Arc<Zendesk>>,
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
    tracing::info!(scope = ?shared.integration_id, "zendesk faults updated");
    Ok(Json(knobs::snapshot(&st.faults, &st.knobs)))
}

#[derive(Deserialize)]
struct AppFilter {
    /// The app id (named like the other simulators' filter).
    integration_id: Option<String>,
    app_id: Option<String>,
}

impl AppFilter {
    fn app(&self) -> Option<&str> {
        self.integration_id.as_deref().or(self.app_id.as_deref())
    }
}

async fn get_stats(
    State(sim): State<Arc<Zendesk>>,
    Query(filter): Query<AppFilter>,
) -> Json<Stats> {
    let st = sim.lock();
    Json(match filter.app() {
        Some(id) => st.stats.by_app.get(id).cloned().unwrap_or_default(),
        None => st.stats.total.clone(),
    })
}
