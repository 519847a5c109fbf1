//! NICE CXone Digital (DFO) simulator, BYOC route (`shared/providers/nice-cxone.md`):
//! OIDC discovery and the access-key token, the DFO 3.0 channel/contact API,
//! BYOC callbacks to the relay (token from the relay's `/1.0/token`, then
//! outbound messages and sender actions with that bearer), an agent desktop
//! and fault knobs. Everything is kept in memory.
//!
//! Base URL for the relay (`base_url` of the secret): `http://HOST:PORT/nice`,
//! standing for both `https://cxone.{domain}` and `https://api-de-{area}.{domain}`.
//! Tenants are channels, created by `POST /sim/nice/integrations`; the
//! channel id is the integration id of the control and fault APIs.

mod byoc;
mod desktop;
mod dfo;
#[cfg(test)]
mod tests;

use crate::faults::{FaultUpdate, Faults};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Lifetime of the DFO access tokens (spec §1.1: ≈ 1 h).
const TOKEN_SECS: u64 = 3600;
/// Contact search page size (spec §2 #3).
const SEARCH_PAGE: usize = 25;
/// Customer typing shows for this long after `isTypingOn`.
const TYPING_SHOWN: Duration = Duration::from_secs(5);
/// Statuses a contact may be set to (spec §2 #4).
const STATUSES: [&str; 7] = [
    "new",
    "open",
    "pending",
    "escalated",
    "resolved",
    "closed",
    "trashed",
];
const CLOSED: [&str; 3] = ["resolved", "closed", "trashed"];

/// The simulator; shared by all handlers and delivery tasks.
pub struct Nice {
    state: Mutex<SimState>,
    http: reqwest::Client,
}

#[derive(Default)]
struct SimState {
    tenants: HashMap<String, Tenant>,
    tokens: HashMap<String, AccessToken>,
    contacts: HashMap<String, Contact>,
    order: Vec<String>,
    /// (channel, thread) → the thread's current contact.
    threads: HashMap<(String, String), String>,
    next_contact: u64,
    next_message: u64,
    faults: Faults,
    knobs: Knobs,
    stats: StatsBook,
}

/// One channel of one brand (one test tenant).
#[derive(Debug, Clone)]
struct Tenant {
    channel_id: String,
    brand_id: u64,
    tenant_id: String,
    client_id: String,
    client_secret: String,
    access_key_id: String,
    access_key_secret: String,
    callback_base_url: String,
    byoc_client_id: String,
    byoc_client_secret: String,
    callback_style: CallbackStyle,
    default_skill_id: u64,
    /// Agents by name → numeric user id.
    agents: Vec<(u64, String)>,
    /// The relay's bearer token (CXone's cache) and until when to use it.
    relay_token: Option<(String, Instant)>,
}

impl Tenant {
    fn agent(&mut self, name: &str) -> (u64, String) {
        if let Some(a) = self.agents.iter().find(|(_, n)| n == name) {
            return a.clone();
        }
        let id = 1001 + self.agents.len() as u64;
        self.agents.push((id, name.to_string()));
        (id, name.to_string())
    }
}

/// Path templates of the callbacks (spec §3: one community variant differs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CallbackStyle {
    /// `/1.0/token`, `/2.0/channel/{ch}/outbound`.
    #[default]
    Byoc,
    /// `/oauth/token`, `/channels/{ch}/outbound`.
    Alt,
}

#[derive(Debug, Clone)]
struct AccessToken {
    channel_id: String,
    expires: Instant,
}

#[derive(Debug, Clone, Serialize)]
struct Message {
    id: String,
    direction: &'static str,
    text: String,
    at: String,
    /// `idOnExternalPlatform` of an inbound message.
    #[serde(skip_serializing_if = "Option::is_none")]
    id_on_external_platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender: Option<String>,
}

/// A contact ("case") on a thread.
#[derive(Debug)]
struct Contact {
    id: String,
    channel_id: String,
    thread_id: String,
    customer: Value,
    status: String,
    assignee: Option<(u64, String)>,
    routing_queue_id: u64,
    custom_fields: Map<String, Value>,
    messages: Vec<Message>,
    duplicates: Vec<String>,
    customer_typing_at: Option<Instant>,
    customer_connected: bool,
    created_at: String,
    deliveries: Vec<Value>,
    queue: Option<tokio::sync::mpsc::UnboundedSender<byoc::Delivery>>,
}

impl Contact {
    fn closed(&self) -> bool {
        CLOSED.contains(&self.status.as_str())
    }

    fn state(&self) -> &'static str {
        if self.closed() {
            "ended"
        } else if self.assignee.is_some() {
            "active"
        } else {
            "queued"
        }
    }

    fn assignee_user(&self) -> Value {
        match &self.assignee {
            Some((id, name)) => {
                json!({"id": id, "firstName": name, "surname": "", "nickname": name, "isBotUser": false})
            }
            None => Value::Null,
        }
    }

    /// The DFO shape (spec §2 #2).
    fn api(&self) -> Value {
        json!({
            "id": self.id,
            "threadId": format!("thread-{}", self.id),
            "threadIdOnExternalPlatform": self.thread_id,
            "channelId": self.channel_id,
            "status": self.status,
            "routingQueueId": self.routing_queue_id,
            "inboxAssignee": self.assignee.as_ref().map(|(id, _)| *id),
            "inboxAssigneeUser": self.assignee_user(),
            "endUserRecipients": [{"idOnExternalPlatform": self.customer["idOnExternalPlatform"],
                                   "name": self.customer["firstName"], "isPrimary": true, "isPrivate": true}],
            "customFields": self.custom_fields.iter()
                .map(|(k, v)| json!({"ident": k, "value": v})).collect::<Vec<_>>(),
            "createdAt": self.created_at,
        })
    }

    /// The control API view (common to every simulator).
    fn view(&self) -> Value {
        let mut context = self.custom_fields.clone();
        context.insert("routing_queue_id".into(), json!(self.routing_queue_id));
        json!({
            "id": self.id,
            "integration_id": self.channel_id,
            "thread_id": self.thread_id,
            "status": self.status,
            "customer": {"id": self.customer["idOnExternalPlatform"],
                         "display_name": self.customer["firstName"]},
            "context": context,
            "state": self.state(),
            "agent": self.assignee.as_ref().map(|(id, name)| json!({"id": id, "name": name})),
            "customer_connected": self.customer_connected,
            "customer_typing": self.customer_typing_at.is_some_and(|t| t.elapsed() < TYPING_SHOWN),
            "messages": self.messages,
            "duplicate_inbound_message_ids": self.duplicates,
            "deliveries": self.deliveries,
        })
    }
}

/// NICE-only knobs (counts), global or per channel.
#[derive(Debug, Clone, Default, Serialize)]
struct Counters {
    /// The next N DFO calls answer 401 even with a valid token (spec §8.7).
    token_expired: u32,
    /// The next N create-message answers carry no contact id.
    create_returns_no_contact: u32,
}

#[derive(Debug, Default)]
struct Knobs {
    global: Counters,
    by_channel: BTreeMap<String, Counters>,
}

impl Knobs {
    fn take(&mut self, channel: &str, field: fn(&mut Counters) -> &mut u32) -> bool {
        let buckets = self
            .by_channel
            .get_mut(channel)
            .into_iter()
            .chain(std::iter::once(&mut self.global));
        for b in buckets {
            let n = field(b);
            if *n > 0 {
                *n -= 1;
                return true;
            }
        }
        false
    }
}

/// Names handled here rather than by the shared knobs.
const OWN_KNOBS: [&str; 2] = ["token_expired", "create_returns_no_contact"];
/// Shared knobs with no meaning for NICE BYOC (no WebSocket in route A).
const NOT_FOR_NICE: [&str; 8] = [
    "heartbeat_secs",
    "socket_closing_grace_ms",
    "channel_ttl_secs",
    "lose_next_notification",
    "ws_drop_next",
    "ws_socket_closing_next",
    "ws_silent",
    "evict_channels_now",
];

#[derive(Debug, Clone, Default, Serialize)]
struct Stats {
    api_calls: u64,
    api_errors_injected: u64,
    tokens_issued: u64,
    token_refusals: u64,
    contacts_created: u64,
    messages_created: u64,
    agent_messages: u64,
    relay_tokens_fetched: u64,
    callback_attempts: u64,
    callback_deliveries: u64,
    callback_retries: u64,
    callback_failures: u64,
}

#[derive(Debug, Default)]
struct StatsBook {
    total: Stats,
    by_channel: HashMap<String, Stats>,
}

impl StatsBook {
    fn bump(&mut self, channel: Option<&str>, field: fn(&mut Stats) -> &mut u64) {
        *field(&mut self.total) += 1;
        if let Some(c) = channel {
            *field(self.by_channel.entry(c.to_string()).or_default()) += 1;
        }
    }
}

/// A DFO-style error `{"error","message"}`.
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

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        resp
    }
}

fn now_iso() -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::now_utc().format(FORMAT).unwrap_or_default()
}

/// Constant-time enough for a simulator: no early exit.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The relay's message id for an agent message: the adapter digests the same
/// fields (`thread`, `authorUser.id`, `createdAtWithMilliseconds`, text).
fn agent_message_id(thread: &str, author: Option<u64>, created_at: &str, text: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        thread.to_string(),
        author.map(|a| a.to_string()).unwrap_or_default(),
        created_at.to_string(),
        text.trim().to_string(),
    ] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("out-{}", &digest[..32])
}

fn issuer(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}/nice")
}

impl Nice {
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

/// The channel a DFO call is made for, put in the request by [`api_guard`].
#[derive(Debug, Clone)]
struct Caller {
    channel_id: String,
}

/// Latency, bearer auth, call counting and injected failures for `/nice/dfo/3.0`.
async fn api_guard(State(sim): State<Arc<Nice>>, mut req: Request, next: Next) -> Response {
    let latency = sim.lock().faults.settings.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_string);
    let outcome = {
        let mut st = sim.lock();
        let caller = token
            .and_then(|t| st.tokens.get(&t).cloned())
            .filter(|t| Instant::now() < t.expires)
            .map(|t| t.channel_id);
        match caller {
            None => {
                st.stats.bump(None, |s| &mut s.token_refusals);
                Err(ApiError::unauthorized("invalid or expired token"))
            }
            Some(channel) => {
                st.stats.bump(Some(&channel), |s| &mut s.api_calls);
                if st.knobs.take(&channel, |c| &mut c.token_expired) {
                    st.stats.bump(Some(&channel), |s| &mut s.token_refusals);
                    Err(ApiError::unauthorized("token expired"))
                } else if let Some(status) =
                    st.faults.take_api_failure(std::slice::from_ref(&channel))
                {
                    st.stats
                        .bump(Some(&channel), |s| &mut s.api_errors_injected);
                    let status =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    Err(ApiError::new(status, "simulated", "simulated failure"))
                } else {
                    Ok(channel)
                }
            }
        }
    };
    match outcome {
        Ok(channel_id) => {
            req.extensions_mut().insert(Caller { channel_id });
            next.run(req).await
        }
        Err(e) => {
            tracing::info!(path = %req.uri().path(), status = e.status.as_u16(), "nice api call refused");
            e.into_response()
        }
    }
}

/// All NICE routes.
pub fn router(sim: Arc<Nice>) -> Router {
    let dfo = Router::new()
        .route("/channels", get(dfo::list_channels))
        .route("/channels/{channel}/messages", post(dfo::create_message))
        .route(
            "/channels/{channel}/threads/{thread}/sender-actions",
            post(dfo::sender_action),
        )
        .route("/contacts", get(dfo::search_contacts))
        .route("/contacts/{id}", get(dfo::get_contact))
        .route("/contacts/{id}/status", put(dfo::set_status))
        .route("/contacts/{id}/routing-queue", put(dfo::set_routing_queue))
        .route("/contacts/{id}/custom-fields", put(dfo::set_custom_fields))
        .route_layer(middleware::from_fn_with_state(sim.clone(), api_guard))
        .fallback(|| async { ApiError::not_found("no such DFO resource") });
    Router::new()
        .nest("/nice/dfo/3.0", dfo)
        .route(
            "/nice/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route(
            "/nice/.well-known/cxone-configuration",
            get(cxone_configuration),
        )
        .route("/nice/auth/token", post(issue_token))
        .route("/nice/desktop", get(desktop::page))
        .route(
            "/sim/nice/integrations",
            post(upsert_integration).get(list_integrations),
        )
        .route("/sim/nice/faults", get(get_faults).post(post_faults))
        .route("/sim/nice/stats", get(get_stats))
        .merge(desktop::control_routes())
        .with_state(sim)
}

async fn openid_configuration(headers: HeaderMap) -> Json<Value> {
    let iss = issuer(&headers);
    Json(json!({
        "issuer": iss,
        "token_endpoint": format!("{iss}/auth/token"),
        "authorization_endpoint": format!("{iss}/auth/authorize"),
        "grant_types_supported": ["password", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

#[derive(Deserialize)]
struct TenantQuery {
    #[serde(rename = "tenantId")]
    tenant_id: Option<String>,
}

async fn cxone_configuration(
    State(sim): State<Arc<Nice>>,
    headers: HeaderMap,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = q
        .tenant_id
        .ok_or_else(|| ApiError::bad_request("tenantId is required"))?;
    if !sim.lock().tenants.values().any(|t| t.tenant_id == id) {
        return Err(ApiError::not_found("unknown tenantId"));
    }
    Ok(Json(
        json!({"area": "na1", "api_endpoint": issuer(&headers),
        "domain": "niceincontact.com", "cluster": "C32", "tenantId": id}),
    ))
}

/// Form decoding (`+` = space, `%XX`).
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| -> String {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() + 1 {
                if let Some(b) = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).to_string()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// An unsigned-looking JWT carrying `tenantId` and `iss` (spec §8.1).
fn id_token(iss: &str, tenant_id: &str, secret: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let head = b64(&json!({"alg": "HS256", "typ": "JWT"}));
    let exp = OffsetDateTime::now_utc().unix_timestamp() + TOKEN_SECS as i64;
    let body = b64(&json!({"iss": iss, "tenantId": tenant_id, "exp": exp}));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{head}.{body}").as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{sig}")
}

/// `POST /nice/auth/token`: password grant with the access key, client by Basic.
async fn issue_token(
    State(sim): State<Arc<Nice>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let fields = form_fields(&body);
    if fields.get("grant_type").map(String::as_str) != Some("password") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be password",
        ));
    }
    let (client_id, client_secret) =
        basic(&headers).ok_or_else(|| ApiError::unauthorized("client authentication required"))?;
    let mut st = sim.lock();
    let tenant = st
        .tenants
        .values()
        .find(|t| {
            fields.get("username") == Some(&t.access_key_id)
                && same_secret(
                    fields.get("password").map(String::as_str).unwrap_or(""),
                    &t.access_key_secret,
                )
                && t.client_id == client_id
                && same_secret(&client_secret, &t.client_secret)
        })
        .cloned();
    let Some(tenant) = tenant else {
        st.stats.bump(None, |s| &mut s.token_refusals);
        return Err(ApiError::unauthorized("invalid_grant"));
    };
    let token = format!("nice-at-{}", uuid::Uuid::new_v4().simple());
    st.tokens.insert(
        token.clone(),
        AccessToken {
            channel_id: tenant.channel_id.clone(),
            expires: Instant::now() + Duration::from_secs(TOKEN_SECS),
        },
    );
    st.stats
        .bump(Some(&tenant.channel_id), |s| &mut s.tokens_issued);
    let iss = issuer(&headers);
    Ok(Json(json!({
        "access_token": token, "token_type": "Bearer", "expires_in": TOKEN_SECS,
        "id_token": id_token(&iss, &tenant.tenant_id, &tenant.client_secret),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntegrationConfig {
    brand_id: u64,
    channel_id: String,
    tenant_id: Option<String>,
    client_id: String,
    client_secret: String,
    access_key_id: String,
    access_key_secret: String,
    /// Our registered BYOC URL, e.g. `…/webhooks/nice/{account}/{project}/{env}`.
    callback_base_url: String,
    byoc_client_id: String,
    byoc_client_secret: String,
    callback_style: Option<CallbackStyle>,
    default_skill_id: Option<u64>,
}

impl SimState {
    fn configure(&mut self, cfg: IntegrationConfig) -> Result<Value, ApiError> {
        for (name, value) in [
            ("channel_id", &cfg.channel_id),
            ("client_id", &cfg.client_id),
            ("client_secret", &cfg.client_secret),
            ("access_key_id", &cfg.access_key_id),
            ("access_key_secret", &cfg.access_key_secret),
            ("byoc_client_id", &cfg.byoc_client_id),
            ("byoc_client_secret", &cfg.byoc_client_secret),
        ] {
            if value.trim().is_empty() {
                return Err(ApiError::bad_request(format!("{name} must not be empty")));
            }
        }
        if reqwest::Url::parse(&cfg.callback_base_url).is_err() {
            return Err(ApiError::bad_request(
                "callback_base_url is not a valid URL",
            ));
        }
        if let Some(other) = self
            .tenants
            .values()
            .find(|t| t.access_key_id == cfg.access_key_id && t.channel_id != cfg.channel_id)
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("access_key_id belongs to channel {}", other.channel_id),
            ));
        }
        let agents = self
            .tenants
            .get(&cfg.channel_id)
            .map(|t| t.agents.clone())
            .unwrap_or_default();
        let tenant = Tenant {
            channel_id: cfg.channel_id.clone(),
            brand_id: cfg.brand_id,
            tenant_id: cfg
                .tenant_id
                .unwrap_or_else(|| format!("tenant-{}", cfg.brand_id)),
            client_id: cfg.client_id,
            client_secret: cfg.client_secret,
            access_key_id: cfg.access_key_id,
            access_key_secret: cfg.access_key_secret,
            callback_base_url: cfg.callback_base_url.trim_end_matches('/').to_string(),
            byoc_client_id: cfg.byoc_client_id,
            byoc_client_secret: cfg.byoc_client_secret,
            callback_style: cfg.callback_style.unwrap_or_default(),
            default_skill_id: cfg.default_skill_id.unwrap_or(4001),
            agents,
            relay_token: None,
        };
        tracing::info!(channel = %tenant.channel_id, brand = tenant.brand_id, "nice channel configured");
        let view = tenant_view(&tenant);
        self.tenants.insert(tenant.channel_id.clone(), tenant);
        Ok(view)
    }
}

fn tenant_view(t: &Tenant) -> Value {
    json!({"integration_id": t.channel_id, "channel_id": t.channel_id, "brand_id": t.brand_id,
        "tenant_id": t.tenant_id, "callback_base_url": t.callback_base_url,
        "callback_style": t.callback_style, "default_skill_id": t.default_skill_id})
}

async fn upsert_integration(
    State(sim): State<Arc<Nice>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let cfg: IntegrationConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid integration config: {e}")))?;
    sim.lock().configure(cfg).map(Json)
}

async fn list_integrations(State(sim): State<Arc<Nice>>) -> Json<Value> {
    let st = sim.lock();
    let mut list: Vec<&Tenant> = st.tenants.values().collect();
    list.sort_by(|a, b| a.channel_id.cmp(&b.channel_id));
    Json(Value::Array(list.into_iter().map(tenant_view).collect()))
}

fn faults_snapshot(st: &SimState) -> Value {
    let mut out = match st.faults.snapshot() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if let Ok(Value::Object(m)) = serde_json::to_value(&st.knobs.global) {
        out.extend(m);
    }
    if let Some(Value::Object(scoped)) = out.get_mut("integrations") {
        for (ch, c) in &st.knobs.by_channel {
            let entry = scoped
                .entry(ch.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let (Value::Object(b), Ok(Value::Object(m))) = (entry, serde_json::to_value(c)) {
                b.extend(m);
            }
        }
    }
    Value::Object(out)
}

async fn get_faults(State(sim): State<Arc<Nice>>) -> Json<Value> {
    Json(faults_snapshot(&sim.lock()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnUpdate {
    token_expired: Option<u32>,
    create_returns_no_contact: Option<u32>,
}

async fn post_faults(
    State(sim): State<Arc<Nice>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut body: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(ApiError::bad_request("Invalid faults: expected an object")),
        Err(e) => return Err(ApiError::bad_request(format!("Invalid faults: {e}"))),
    };
    if let Some(name) = NOT_FOR_NICE.iter().find(|n| body.contains_key(**n)) {
        return Err(ApiError::bad_request(format!(
            "{name} is not a NICE simulator knob"
        )));
    }
    let own: Map<String, Value> = OWN_KNOBS
        .iter()
        .filter_map(|n| body.remove(*n).map(|v| (n.to_string(), v)))
        .collect();
    let own: OwnUpdate = serde_json::from_value(Value::Object(own))
        .map_err(|e| ApiError::bad_request(format!("Invalid faults: {e}")))?;
    let shared: FaultUpdate = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::bad_request(format!("Invalid faults: {e}")))?;
    let mut st = sim.lock();
    st.faults.apply(&shared).map_err(ApiError::bad_request)?;
    let scope = shared.integration_id.clone();
    if shared.reset == Some(true) {
        match &scope {
            Some(ch) => {
                st.knobs.by_channel.remove(ch);
            }
            None => st.knobs = Knobs::default(),
        }
    }
    let bucket = match &scope {
        Some(ch) => st.knobs.by_channel.entry(ch.clone()).or_default(),
        None => &mut st.knobs.global,
    };
    if let Some(n) = own.token_expired {
        bucket.token_expired = n;
    }
    if let Some(n) = own.create_returns_no_contact {
        bucket.create_returns_no_contact = n;
    }
    if shared.expire_tokens_now == Some(true) {
        let before = st.tokens.len();
        st.tokens
            .retain(|_, t| scope.as_ref().is_some_and(|ch| *ch != t.channel_id));
        tracing::info!(scope = ?scope, expired = before - st.tokens.len(), "nice tokens expired");
    }
    tracing::info!(scope = ?scope, "nice faults updated");
    Ok(Json(faults_snapshot(&st)))
}

#[derive(Deserialize)]
struct ChannelFilter {
    integration_id: Option<String>,
}

async fn get_stats(
    State(sim): State<Arc<Nice>>,
    Query(filter): Query<ChannelFilter>,
) -> Json<Stats> {
    let st = sim.lock();
    Json(match filter.integration_id {
        Some(ch) => st.stats.by_channel.get(&ch).cloned().unwrap_or_default(),
        None => st.stats.total.clone(),
    })
}
