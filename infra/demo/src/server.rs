//! `demo-runtime serve`: the widget page, its API, and the `/events` endpoint the
//! relay pushes client events to.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use handoff_common::events::ClientEvent;
use handoff_common::signature::{
    verify_client_event, CLIENT_EVENT_SIGNATURE_HEADER, CLIENT_EVENT_TIMESTAMP_HEADER,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::bot::{self, BotTurn, HANDOFF_UTTERANCE};
use crate::relay_client::{
    integration_key, ErrorBody, HandoffContext, HandoffRequest, HandoffUser, RelayClient,
    RelayError,
};
use crate::sessions::{Recorded, Role, Session, Sessions, TranscriptEntry};

const WIDGET_PAGE: &str = include_str!("assets/widget.html");

/// Accepted clock difference on `X-Handoff-Timestamp` (design: replay window).
pub const EVENT_TIMESTAMP_TOLERANCE_SECS: i64 = 300;
/// Longest display name and message the widget API accepts.
const MAX_DISPLAY_NAME_CHARS: usize = 80;
const MAX_MESSAGE_CHARS: usize = 4_000;
/// Fixed demo values for start-handoff's `context`.
const DEMO_CUSTOMER_ID: &str = "C-42";
const WEBCHAT_CHANNEL: &str = "webchat";

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<AppInner>,
}

struct AppInner {
    sessions: Sessions,
    relay: RelayClient,
    events_secret: SecretString,
    faults: Mutex<Faults>,
}

/// Fault knobs, set through `POST /demo/faults`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Faults {
    /// Fraction of `/events` calls answered 503 without storing.
    #[serde(default)]
    events_fail_ratio: f64,
}

impl AppState {
    pub fn new(relay: RelayClient, events_secret: SecretString) -> Self {
        Self {
            inner: Arc::new(AppInner {
                sessions: Sessions::default(),
                relay,
                events_secret,
                faults: Mutex::new(Faults::default()),
            }),
        }
    }

    fn faults(&self) -> Faults {
        *self
            .inner
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn session(&self, id: &str) -> Result<Arc<Session>, ApiError> {
        self.inner.sessions.get(id).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "session_not_found",
                format!("no session {id}"),
            )
        })
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(widget_page))
        .route("/health", get(|| async { "ok" }))
        .route("/events", post(receive_event))
        .route("/demo/faults", get(get_faults).post(set_faults))
        .route("/api/sessions", post(create_session))
        .route("/api/sessions/{id}", get(get_session))
        .route("/api/sessions/{id}/messages", post(post_message))
        .route("/api/sessions/{id}/typing", post(post_typing))
        .route("/api/sessions/{id}/end", post(end_session))
        .route("/api/sessions/{id}/stream", get(stream_events))
        .with_state(state)
}

pub async fn serve(listen: SocketAddr, state: AppState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!("demo runtime on http://{}", listener.local_addr()?);
    axum::serve(listener, router(state)).await
}

/// `{"error":{"code","message"}}` with a status, like the relay's own errors.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn relay(error: &RelayError) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            body: error.to_body(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.body }))).into_response()
    }
}

async fn widget_page() -> Html<&'static str> {
    Html(WIDGET_PAGE)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `POST /events`: verify on the raw bytes, then parse, then store, then 200.
async fn receive_event(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let ratio = state.faults().events_fail_ratio;
    if ratio > 0.0 && fastrand::f64() < ratio {
        tracing::info!("fault knob: answering /events with 503");
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "fault_injected",
            "events_fail_ratio",
        )
        .into_response();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let verified = verify_client_event(
        state.inner.events_secret.expose_secret().as_bytes(),
        header(CLIENT_EVENT_TIMESTAMP_HEADER),
        header(CLIENT_EVENT_SIGNATURE_HEADER),
        &body,
        unix_now(),
        EVENT_TIMESTAMP_TOLERANCE_SECS,
    );
    if !verified {
        tracing::warn!("rejected client event with a bad or missing signature");
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "missing or invalid X-Handoff-Signature / X-Handoff-Timestamp",
        )
        .into_response();
    }
    let event: ClientEvent = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(err) => return ApiError::invalid(format!("not a client event: {err}")).into_response(),
    };
    let (session_id, seq, event_type) = (event.session_id.clone(), event.seq, event.event_type);
    let recorded = state
        .inner
        .sessions
        .for_event(&session_id)
        .record_event(event);
    tracing::info!(session = %session_id, seq, r#type = event_type.as_str(), ?recorded, "client event");
    Json(json!({ "stored": true, "duplicate": recorded == Recorded::Duplicate })).into_response()
}

async fn get_faults(State(state): State<AppState>) -> Json<Faults> {
    Json(state.faults())
}

async fn set_faults(
    State(state): State<AppState>,
    Json(faults): Json<Faults>,
) -> Result<Json<Faults>, ApiError> {
    if !(0.0..=1.0).contains(&faults.events_fail_ratio) {
        return Err(ApiError::invalid("events_fail_ratio must be within 0..=1"));
    }
    *state
        .inner
        .faults
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = faults;
    tracing::info!(?faults, "fault knobs set");
    Ok(Json(faults))
}

#[derive(Deserialize)]
struct CreateSession {
    #[serde(default)]
    display_name: String,
    /// Where this conversation hands off to (`zendesk` or `zendesk_integration`);
    /// absent means the runtime's `--provider`.
    #[serde(default)]
    provider: Option<String>,
}

async fn create_session(
    State(state): State<AppState>,
    Json(request): Json<CreateSession>,
) -> Result<Json<Value>, ApiError> {
    let name = request.display_name.trim();
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(ApiError::invalid("display_name is too long"));
    }
    let provider = match request.provider.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(requested) => Some(integration_key(requested).ok_or_else(|| {
            ApiError::invalid(format!(
                "unknown provider {requested:?}: one of genesys, connect, zendesk, salesforce, nice, webex"
            ))
        })?),
    };
    let name = if name.is_empty() { "Guest" } else { name };
    let session = state.inner.sessions.create(name.to_owned());
    if let Some(provider) = provider {
        session.set_provider(provider);
    }
    tracing::info!(session = %session.id, provider = provider.unwrap_or("default"), "session created");
    Ok(Json(json!({ "session_id": session.id })))
}

async fn get_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<crate::sessions::SessionView>, ApiError> {
    Ok(Json(state.session(&id)?.view()))
}

#[derive(Deserialize)]
struct PostMessage {
    text: String,
}

/// What the widget gets back for a message.
#[derive(Debug, Default, Serialize)]
struct MessageOutcome {
    handed_off: bool,
    /// The bot's answer, before the handoff.
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<TranscriptEntry>,
    /// start-handoff's result when this message opened the handoff.
    #[serde(skip_serializing_if = "Option::is_none")]
    handoff: Option<Value>,
    /// The id the message was relayed under, after the handoff.
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

impl IntoResponse for MessageOutcome {
    fn into_response(self) -> Response {
        let status = if self.error.is_some() {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::OK
        };
        (status, Json(self)).into_response()
    }
}

fn session_ended() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "session_ended", "this chat has ended")
}

#[tracing::instrument(skip(state, request))]
async fn post_message(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(request): Json<PostMessage>,
) -> Result<MessageOutcome, ApiError> {
    let session = state.session(&id)?;
    let text = request.text.trim();
    if text.is_empty() {
        return Err(ApiError::invalid("text is empty"));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::invalid("text is too long"));
    }
    let _turn = session.turn.lock().await;
    if session.is_ended() {
        return Err(session_ended());
    }
    session.push_transcript(Role::User, text);

    if session.is_handed_off() {
        let message_id = uuid::Uuid::new_v4().to_string();
        let outcome = MessageOutcome {
            handed_off: true,
            message_id: Some(message_id.clone()),
            ..MessageOutcome::default()
        };
        return Ok(
            match state.inner.relay.send_message(&id, &message_id, text).await {
                Ok(_) => outcome,
                Err(err) => MessageOutcome {
                    error: Some(err.to_body()),
                    ..outcome
                },
            },
        );
    }

    match bot::respond(&session.display_name(), text) {
        BotTurn::Reply(reply) => Ok(MessageOutcome {
            reply: Some(session.push_transcript(Role::Assistant, &reply)),
            ..MessageOutcome::default()
        }),
        BotTurn::Handoff => {
            let transcript = session.transcript();
            let reason = bot::handoff_reason(
                transcript
                    .iter()
                    .filter(|line| line.role == Role::User)
                    .map(|line| line.text.as_str()),
            );
            let request = HandoffRequest {
                session_id: id.clone(),
                provider: session.provider(),
                utterance: HANDOFF_UTTERANCE.to_owned(),
                user: HandoffUser {
                    id: session.user_id(),
                    display_name: session.display_name(),
                    channel: WEBCHAT_CHANNEL,
                },
                transcript,
                context: HandoffContext {
                    customer_id: DEMO_CUSTOMER_ID.to_owned(),
                    reason: reason.to_owned(),
                    verified: false,
                },
            };
            let reply = Some(session.push_transcript(Role::Assistant, HANDOFF_UTTERANCE));
            Ok(match state.inner.relay.start_handoff(&request).await {
                Ok(result) => {
                    session.mark_handed_off(result.clone());
                    MessageOutcome {
                        handed_off: true,
                        reply,
                        handoff: Some(result),
                        ..MessageOutcome::default()
                    }
                }
                // The customer may ask again; start-handoff is idempotent per session.
                Err(err) => MessageOutcome {
                    reply,
                    error: Some(err.to_body()),
                    ..MessageOutcome::default()
                },
            })
        }
    }
}

async fn post_typing(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let session = state.session(&id)?;
    if session.is_ended() {
        return Err(session_ended());
    }
    // The bot needs no typing indicator; only a live agent sees it.
    if !session.is_handed_off() {
        return Ok(Json(json!({ "sent": false })));
    }
    state
        .inner
        .relay
        .send_typing(&id)
        .await
        .map_err(|err| ApiError::relay(&err))?;
    Ok(Json(json!({ "sent": true })))
}

async fn end_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let session = state.session(&id)?;
    let _turn = session.turn.lock().await;
    let handed_off = session.is_handed_off();
    // end-session is idempotent, so ending again after SESSION_END is harmless.
    if handed_off {
        state
            .inner
            .relay
            .end_session(&id)
            .await
            .map_err(|err| ApiError::relay(&err))?;
    }
    session.mark_ended();
    Ok(Json(json!({ "ended": true, "handed_off": handed_off })))
}

/// `GET /api/sessions/{id}/stream`: the session's client events in seq order,
/// stored ones first, then live. An event is held back until every lower seq has
/// arrived, so the page never sees a gap. `Last-Event-ID` resumes after a seq.
async fn stream_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let session = state.session(&id)?;
    let next_seq = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(1, |seen| seen.saturating_add(1));
    let changes = session.subscribe_events();
    let stream = futures_util::stream::unfold(
        (session, changes, next_seq),
        |(session, mut changes, next_seq)| async move {
            loop {
                // Mark the current version seen before looking, so an event stored
                // right after the look still wakes `changed()`.
                changes.borrow_and_update();
                if let Some(event) = session.event(next_seq) {
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    let sse = Event::default().id(next_seq.to_string()).data(data);
                    return Some((Ok(sse), (session, changes, next_seq + 1)));
                }
                if changes.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay_client::Tenant;
    use axum::body::Body;
    use axum::http::Request;
    use futures_util::StreamExt;
    use handoff_common::signature::sign_client_event;
    use std::time::Duration;
    use tower::ServiceExt;

    const SECRET: &str = "test-events-secret";

    fn tenant() -> Tenant {
        Tenant {
            account_id: "demo".into(),
            project_id: "support".into(),
            client_env: "sandbox".into(),
        }
    }

    fn app_with_relay(lambda_url: &str) -> (AppState, Router) {
        let relay = RelayClient::new(
            lambda_url,
            tenant(),
            "genesys_integration".into(),
            "billing".into(),
            Duration::from_secs(5),
        )
        .unwrap();
        let state = AppState::new(relay, SecretString::from(SECRET.to_owned()));
        (state.clone(), router(state))
    }

    /// For tests that never reach the relay.
    fn app() -> (AppState, Router) {
        app_with_relay("http://127.0.0.1:9")
    }

    fn event_body(session: &str, seq: u64, kind: &str, data: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "session_id": session, "seq": seq, "type": kind,
            "at": "2026-11-23T10:01:02.123Z", "data": data,
        }))
        .unwrap()
    }

    fn signed_event_request(secret: &str, timestamp: i64, body: Vec<u8>) -> Request<Body> {
        let signature = sign_client_event(secret.as_bytes(), timestamp, &body);
        Request::post("/events")
            .header("content-type", "application/json")
            .header(CLIENT_EVENT_TIMESTAMP_HEADER, timestamp.to_string())
            .header(CLIENT_EVENT_SIGNATURE_HEADER, signature)
            .body(Body::from(body))
            .unwrap()
    }

    async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn post_json(router: &Router, uri: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        send(router, request).await
    }

    async fn post_event(router: &Router, seq: u64, text: &str) -> StatusCode {
        let body = event_body("conv-1", seq, "LIVE_AGENT_MESSAGE", json!({ "text": text }));
        send(router, signed_event_request(SECRET, unix_now(), body))
            .await
            .0
    }

    fn stored_seqs(state: &AppState, session: &str) -> Vec<u64> {
        state
            .inner
            .sessions
            .get(session)
            .map(|s| s.view().events.iter().map(|e| e.seq).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn events_with_bad_or_missing_signature_are_rejected_and_not_stored() {
        let (state, router) = app();
        let body = || event_body("conv-1", 1, "LIVE_AGENT_JOINED", json!({}));

        let unsigned = Request::post("/events").body(Body::from(body())).unwrap();
        assert_eq!(send(&router, unsigned).await.0, StatusCode::UNAUTHORIZED);

        let wrong_secret = signed_event_request("another-secret", unix_now(), body());
        assert_eq!(
            send(&router, wrong_secret).await.0,
            StatusCode::UNAUTHORIZED
        );

        let stale = signed_event_request(SECRET, unix_now() - 301, body());
        assert_eq!(send(&router, stale).await.0, StatusCode::UNAUTHORIZED);

        // Signed body, then altered on the way.
        let mut tampered = signed_event_request(SECRET, unix_now(), body());
        *tampered.body_mut() = Body::from(event_body("conv-1", 2, "LIVE_AGENT_JOINED", json!({})));
        assert_eq!(send(&router, tampered).await.0, StatusCode::UNAUTHORIZED);

        assert!(state.inner.sessions.get("conv-1").is_none());
    }

    #[tokio::test]
    async fn signed_event_is_stored_and_shown() {
        let (state, router) = app();
        let session = state.inner.sessions.create("Ada".into());
        let body = event_body(
            &session.id,
            1,
            "LIVE_AGENT_JOINED",
            json!({ "agent": { "display_name": "Sam" } }),
        );
        let (status, answer) = send(&router, signed_event_request(SECRET, unix_now(), body)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["duplicate"], false);

        let request = Request::get(format!("/api/sessions/{}", session.id))
            .body(Body::empty())
            .unwrap();
        let (status, view) = send(&router, request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(view["events"][0]["type"], "LIVE_AGENT_JOINED");
        assert_eq!(view["events"][0]["data"]["agent"]["display_name"], "Sam");
        assert_eq!(view["handed_off"], false);
    }

    #[tokio::test]
    async fn malformed_signed_event_is_400_and_not_stored() {
        let (state, router) = app();
        let body = br#"{"session_id":"conv-1","seq":"one"}"#.to_vec();
        let (status, answer) = send(&router, signed_event_request(SECRET, unix_now(), body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["error"]["code"], "invalid_request");
        assert!(state.inner.sessions.get("conv-1").is_none());
    }

    #[tokio::test]
    async fn duplicate_seq_is_stored_once_and_events_are_kept_in_seq_order() {
        let (state, router) = app();
        for (seq, text) in [
            (3, "third"),
            (1, "first"),
            (2, "second"),
            (1, "redelivered"),
        ] {
            assert_eq!(post_event(&router, seq, text).await, StatusCode::OK);
        }
        assert_eq!(stored_seqs(&state, "conv-1"), [1, 2, 3]);
        let view = state.inner.sessions.get("conv-1").unwrap().view();
        assert_eq!(view.events[0].data["text"], "first");
    }

    #[tokio::test]
    async fn fault_knob_answers_503_and_stores_nothing() {
        let (state, router) = app();
        let (status, _) =
            post_json(&router, "/demo/faults", json!({ "events_fail_ratio": 1.0 })).await;
        assert_eq!(status, StatusCode::OK);
        for seq in 1..=5 {
            assert_eq!(
                post_event(&router, seq, "x").await,
                StatusCode::SERVICE_UNAVAILABLE
            );
        }
        assert!(stored_seqs(&state, "conv-1").is_empty());

        let (status, _) =
            post_json(&router, "/demo/faults", json!({ "events_fail_ratio": 1.5 })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        post_json(&router, "/demo/faults", json!({ "events_fail_ratio": 0.0 })).await;
        assert_eq!(post_event(&router, 1, "x").await, StatusCode::OK);
        assert_eq!(stored_seqs(&state, "conv-1"), [1]);
    }

    /// The seqs of the SSE frames in `chunk`.
    fn frame_seqs(chunk: &[u8]) -> Vec<u64> {
        String::from_utf8_lossy(chunk)
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|data| {
                serde_json::from_str::<Value>(data).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn stream_replays_stored_events_then_live_in_seq_order() {
        let (state, router) = app();
        let session = state.inner.sessions.create("Ada".into());
        let post = |seq: u64| {
            let body = event_body(&session.id, seq, "LIVE_AGENT_TYPING", json!({}));
            send(&router, signed_event_request(SECRET, unix_now(), body))
        };
        post(1).await;
        post(3).await;

        let request = Request::get(format!("/api/sessions/{}/stream", session.id))
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut frames = response.into_body().into_data_stream();
        let mut next_seqs = async || {
            let chunk = tokio::time::timeout(Duration::from_secs(5), frames.next())
                .await
                .expect("a frame in time")
                .unwrap()
                .unwrap();
            frame_seqs(&chunk)
        };

        assert_eq!(next_seqs().await, [1]);
        // 3 waits for 2; both follow once 2 arrives.
        post(2).await;
        let mut seen = next_seqs().await;
        if seen.len() < 2 {
            seen.extend(next_seqs().await);
        }
        assert_eq!(seen, [2, 3]);
    }

    #[tokio::test]
    async fn widget_page_has_the_test_ids() {
        let (_, router) = app();
        let response = router
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let page = String::from_utf8(bytes.to_vec()).unwrap();
        for id in [
            r#"id="name""#,
            r#"id="input""#,
            r#"id="send""#,
            r#"id="end""#,
            r#"id="messages""#,
            r#"id="agent-typing""#,
            r#"id="status""#,
            r#"data-testid="widget""#,
            r#""handoff-notice""#,
            r#""agent-joined-notice""#,
            r#""closed-notice""#,
            r#"`${role}-message`"#,
        ] {
            assert!(page.contains(id), "{id}");
        }
    }

    /// A stand-in for `cargo lambda watch` that records invocations and answers
    /// with `answers[function]`.
    struct RelayStub {
        url: String,
        invocations: Arc<Mutex<Vec<(String, Value)>>>,
    }

    impl RelayStub {
        async fn start(answers: Value) -> Self {
            let invocations = Arc::new(Mutex::new(Vec::new()));
            let recorded = Arc::clone(&invocations);
            let app = Router::new().route(
                "/2015-03-31/functions/{function}/invocations",
                post(
                    move |Path(function): Path<String>, Json(event): Json<Value>| {
                        let recorded = Arc::clone(&recorded);
                        let answer = answers.get(&function).cloned().unwrap_or(json!({}));
                        async move {
                            recorded.lock().unwrap().push((function, event));
                            Json(answer)
                        }
                    },
                ),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self { url, invocations }
        }

        fn calls_to(&self, function: &str) -> Vec<Value> {
            self.invocations
                .lock()
                .unwrap()
                .iter()
                .filter(|(f, _)| f == function)
                .map(|(_, event)| event.clone())
                .collect()
        }
    }

    async fn new_session(router: &Router) -> String {
        let (status, created) =
            post_json(router, "/api/sessions", json!({ "display_name": "Ada" })).await;
        assert_eq!(status, StatusCode::OK);
        let id = created["session_id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("conv-"), "{id}");
        id
    }

    async fn say(router: &Router, session: &str, text: &str) -> (StatusCode, Value) {
        post_json(
            router,
            &format!("/api/sessions/{session}/messages"),
            json!({ "text": text }),
        )
        .await
    }

    #[tokio::test]
    async fn asking_for_a_human_starts_exactly_one_handoff_then_messages_are_relayed() {
        let stub = RelayStub::start(json!({
            "start-handoff": {"session_id": "x", "provider": "genesys_integration",
                              "provider_conversation_id": "gc-1", "status": "queued"},
            "outbound-relay": {"status": "sent"},
            "end-session": {"status": "ended"},
        }))
        .await;
        let (_, router) = app_with_relay(&stub.url);
        let session = new_session(&router).await;

        let (status, hi) = say(&router, &session, "hi").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(hi["reply"]["role"], "assistant");
        assert_eq!(hi["handed_off"], false);
        say(&router, &session, "my order arrived broken").await;
        assert!(stub.calls_to("start-handoff").is_empty());

        let (status, handoff) = say(&router, &session, "I want to talk to a human").await;
        assert_eq!(status, StatusCode::OK, "{handoff}");
        assert_eq!(handoff["handed_off"], true);
        assert_eq!(handoff["reply"]["text"], HANDOFF_UTTERANCE);
        assert_eq!(handoff["handoff"]["provider_conversation_id"], "gc-1");

        // After the handoff even "human" goes to the agent, not to start-handoff.
        let (status, relayed) = say(&router, &session, "It's 1234, a human please").await;
        assert_eq!(status, StatusCode::OK, "{relayed}");
        assert!(relayed.get("reply").is_none());
        let request = Request::post(format!("/api/sessions/{session}/typing"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&router, request).await.0, StatusCode::OK);
        let (status, _) =
            post_json(&router, &format!("/api/sessions/{session}/end"), json!({})).await;
        assert_eq!(status, StatusCode::OK);

        let starts = stub.calls_to("start-handoff");
        assert_eq!(starts.len(), 1);
        let start = &starts[0];
        assert_eq!(
            start["tenant"],
            json!({"account_id": "demo", "project_id": "support", "client_env": "sandbox"})
        );
        assert_eq!(start["session_id"], session.as_str());
        assert_eq!(start["utterance"], HANDOFF_UTTERANCE);
        assert_eq!(
            start["handoff"],
            json!({"text_chat": {"genesys_integration": {"queue": "billing"}}})
        );
        assert_eq!(start["user"]["display_name"], "Ada");
        assert_eq!(start["user"]["channel"], "webchat");
        assert!(start["user"]["id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()));
        let lines: Vec<(&str, &str)> = start["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["role"].as_str().unwrap(), l["text"].as_str().unwrap()))
            .collect();
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert_eq!(lines[0], ("user", "hi"));
        assert_eq!(lines[1].0, "assistant");
        assert_eq!(lines[4], ("user", "I want to talk to a human"));
        assert!(start["transcript"][0]["at"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
        assert_eq!(
            start["context"],
            json!({"customer_id": "C-42", "reason": "damaged_order", "verified": false})
        );

        let outbound = stub.calls_to("outbound-relay");
        assert_eq!(outbound.len(), 2);
        assert_eq!(outbound[0]["session_id"], session.as_str());
        assert_eq!(outbound[0]["message"]["text"], "It's 1234, a human please");
        assert_eq!(
            outbound[0]["message"]["id"].as_str(),
            relayed["message_id"].as_str()
        );
        assert_eq!(outbound[1]["typing"], true);
        let ends = stub.calls_to("end-session");
        assert_eq!(ends.len(), 1);
        assert_eq!(ends[0]["reason"], "USER_END_SESSION");
        assert_eq!(ends[0]["tenant"]["client_env"], "sandbox");

        let (status, after_end) = say(&router, &session, "hello?").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(after_end["error"]["code"], "session_ended");
    }

    #[tokio::test]
    async fn relay_domain_error_reaches_the_widget_and_handoff_can_be_retried() {
        let stub = RelayStub::start(json!({
            "start-handoff": {"error": {"code": "not_configured", "message": "no credentials"}},
        }))
        .await;
        let (state, router) = app_with_relay(&stub.url);
        let session = new_session(&router).await;

        let (status, answer) = say(&router, &session, "agent please").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(answer["error"]["code"], "not_configured");
        assert_eq!(answer["reply"]["text"], HANDOFF_UTTERANCE);
        assert_eq!(answer["handed_off"], false);
        assert!(!state.inner.sessions.get(&session).unwrap().is_handed_off());

        say(&router, &session, "agent please").await;
        assert_eq!(stub.calls_to("start-handoff").len(), 2);
    }

    #[tokio::test]
    async fn a_session_can_choose_its_provider_and_unknown_ones_are_refused() {
        let stub = RelayStub::start(json!({
            "start-handoff": {"session_id": "x", "provider": "zendesk_integration",
                              "provider_conversation_id": "zd-1", "status": "queued"},
        }))
        .await;
        let (state, router) = app_with_relay(&stub.url);
        let (status, created) = post_json(
            &router,
            "/api/sessions",
            json!({ "display_name": "Ada", "provider": "zendesk" }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let session = created["session_id"].as_str().unwrap().to_owned();
        let (status, _) = say(&router, &session, "a human please").await;
        assert_eq!(status, StatusCode::OK);
        let starts = stub.calls_to("start-handoff");
        assert_eq!(
            starts[0]["handoff"],
            json!({"text_chat": {"zendesk_integration": {"queue": "billing"}}})
        );

        for bad in ["five9", "Zendesk", "zendesk_integration_x"] {
            let (status, answer) = post_json(
                &router,
                "/api/sessions",
                json!({ "display_name": "Ada", "provider": bad }),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(answer["error"]["code"], "invalid_request");
        }
        // Only the valid session was created.
        assert_eq!(state.inner.sessions.count(), 1);
    }

    #[tokio::test]
    async fn unreachable_relay_is_reported() {
        let (_, router) = app();
        let session = new_session(&router).await;
        let (status, answer) = say(&router, &session, "human").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(answer["error"]["code"], "relay_unreachable");
    }
}
