//! Notifications API (spec §7): channels, topic subscriptions, the streaming
//! WebSocket and publication of conversation detail events.

use super::conversations::NotificationRecord;
use super::{iso, now_iso, parse_json, request_host, ApiError, Caller, Genesys, SimState};
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::mpsc::{self, UnboundedSender};

/// Genesys: 20 notification channels per user / OAuth client.
const MAX_CHANNELS_PER_CLIENT: usize = 20;
/// Genesys: 1,000 topics per notification channel.
const MAX_TOPICS_PER_CHANNEL: usize = 1_000;
/// Conversation detail-event kinds that can be subscribed to.
const DETAIL_EVENT_KINDS: [&str; 13] = [
    "acd.start",
    "acd.end",
    "acw",
    "attributes",
    "customer.start",
    "customer.end",
    "flow.start",
    "flow.end",
    "outbound",
    "user.start",
    "user.end",
    "voicemail.start",
    "voicemail.end",
];

/// What the socket task of a channel is told to do.
#[derive(Debug)]
pub(super) enum WsCommand {
    Text(String),
    /// Close the TCP connection without a close frame.
    Drop,
    /// Announce `v2.system.socket_closing`, close after the grace period.
    SocketClosing,
    /// Close with a close frame.
    Close,
}

#[derive(Debug)]
struct WsConn {
    id: u64,
    tx: UnboundedSender<WsCommand>,
}

#[derive(Debug)]
pub(super) struct Channel {
    id: String,
    client_id: String,
    expires_at: Instant,
    expires_iso: String,
    last_used: Instant,
    topics: Vec<String>,
    conn: Option<WsConn>,
}

impl Channel {
    fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.tx.send(WsCommand::Close);
        }
    }
}

/// All notification channels, of every OAuth client.
#[derive(Debug, Default)]
pub(super) struct ChannelStore {
    channels: HashMap<String, Channel>,
    next_conn_id: u64,
}

impl ChannelStore {
    fn purge_expired(&mut self, now: Instant) {
        self.channels.retain(|_, c| {
            let alive = now < c.expires_at;
            if !alive {
                c.close();
            }
            alive
        });
    }

    /// Creates a channel; the 21st of a client evicts its least recently used
    /// unconnected channel (a connected one only if all are connected).
    fn create(&mut self, client_id: &str, ttl: Duration, now: Instant) -> &Channel {
        self.purge_expired(now);
        let mine = || self.channels.values().filter(|c| c.client_id == client_id);
        if mine().count() >= MAX_CHANNELS_PER_CLIENT {
            let victim = mine()
                .filter(|c| c.conn.is_none())
                .min_by_key(|c| c.last_used)
                .or_else(|| mine().min_by_key(|c| c.last_used))
                .map(|c| c.id.clone());
            if let Some(mut evicted) = victim.and_then(|id| self.channels.remove(&id)) {
                tracing::info!(channel = %evicted.id, client = client_id, "channel evicted (limit)");
                evicted.close();
            }
        }
        let id = format!("streaming-0-{}", uuid::Uuid::new_v4().simple());
        let expires_iso = iso(OffsetDateTime::now_utc() + ttl);
        self.channels.insert(
            id.clone(),
            Channel {
                id: id.clone(),
                client_id: client_id.to_string(),
                expires_at: now + ttl,
                expires_iso,
                last_used: now,
                topics: Vec::new(),
                conn: None,
            },
        );
        &self.channels[&id]
    }

    /// A live channel of this client, marked as used.
    fn get(&mut self, id: &str, client_id: &str, now: Instant) -> Option<&mut Channel> {
        self.purge_expired(now);
        let channel = self
            .channels
            .get_mut(id)
            .filter(|c| c.client_id == client_id)?;
        channel.last_used = now;
        Some(channel)
    }

    /// Removes every channel of these clients (all when `None`); returns how many.
    pub(super) fn evict_all(&mut self, clients: Option<&[String]>) -> usize {
        let before = self.channels.len();
        self.channels.retain(|_, c| {
            let keep = clients.is_some_and(|cl| !cl.contains(&c.client_id));
            if !keep {
                c.close();
            }
            keep
        });
        before - self.channels.len()
    }

    /// Registers a socket, replacing (closing) an earlier one. Returns the
    /// connection id and the channel's client.
    fn attach(
        &mut self,
        id: &str,
        tx: UnboundedSender<WsCommand>,
        now: Instant,
    ) -> Option<(u64, String)> {
        self.purge_expired(now);
        let channel = self.channels.get_mut(id)?;
        self.next_conn_id += 1;
        let conn_id = self.next_conn_id;
        channel.close();
        channel.conn = Some(WsConn { id: conn_id, tx });
        channel.last_used = now;
        Some((conn_id, channel.client_id.clone()))
    }

    fn detach(&mut self, id: &str, conn_id: u64) {
        if let Some(c) = self.channels.get_mut(id) {
            if c.conn.as_ref().is_some_and(|conn| conn.id == conn_id) {
                c.conn = None;
                c.last_used = Instant::now();
            }
        }
    }
}

/// Why a topic cannot be subscribed, if it cannot.
fn topic_rejection(topic: &str) -> Option<&'static str> {
    if let Some(rest) = topic.strip_prefix("v2.detail.events.conversation.") {
        return match rest.split_once('.') {
            Some((id, kind)) if !id.is_empty() && DETAIL_EVENT_KINDS.contains(&kind) => None,
            _ => Some("Invalid conversation detail-event topic"),
        };
    }
    if let Some(rest) = topic.strip_prefix("v2.routing.queues.") {
        return match rest.strip_suffix(".conversations.messages") {
            Some(id) if !id.is_empty() && !id.contains('.') => None,
            _ => Some("Invalid queue topic"),
        };
    }
    Some("Unknown topic")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubscribeMode {
    Add,
    Replace,
}

/// The topic list after a subscription request, and the rejected topics with reasons.
fn plan_topics(
    current: &[String],
    requested: &[String],
    mode: SubscribeMode,
) -> (Vec<String>, Vec<(String, &'static str)>) {
    let mut topics = match mode {
        SubscribeMode::Add => current.to_vec(),
        SubscribeMode::Replace => Vec::new(),
    };
    let mut rejected = Vec::new();
    for topic in requested {
        if let Some(reason) = topic_rejection(topic) {
            rejected.push((topic.clone(), reason));
        } else if topics.contains(topic) {
            continue;
        } else if topics.len() >= MAX_TOPICS_PER_CHANNEL {
            rejected.push((
                topic.clone(),
                "Channel topic limit reached (1000 topics per channel)",
            ));
        } else {
            topics.push(topic.clone());
        }
    }
    (topics, rejected)
}

fn topic_entities(topics: &[String], rejected: &[(String, &str)]) -> Value {
    let mut entities: Vec<Value> = topics
        .iter()
        .map(|t| json!({"id": t, "state": "Permitted"}))
        .collect();
    entities.extend(rejected.iter().map(|(t, reason)| {
        json!({"id": t, "state": "Rejected", "rejectionReason": reason, "missingPermissions": []})
    }));
    json!({ "entities": entities })
}

/// `[{"id": topic}, …]` (strings accepted too, as over the socket).
fn parse_topics(body: &Value) -> Result<Vec<String>, ApiError> {
    let items = body
        .as_array()
        .ok_or_else(|| ApiError::bad_request("The body must be an array of {\"id\": topic}."))?;
    items
        .iter()
        .map(|item| {
            item.get("id")
                .and_then(Value::as_str)
                .or_else(|| item.as_str())
                .map(str::to_owned)
                .ok_or_else(|| ApiError::bad_request("Every topic needs an \"id\"."))
        })
        .collect()
}

fn channel_json(c: &Channel, host: &str) -> Value {
    json!({
        "id": c.id,
        "connectUri": format!("ws://{host}/genesys/streaming/channels/{}", c.id),
        "expires": c.expires_iso,
    })
}

fn channel_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Channel {id} not found"))
}

pub(super) async fn create_channel(
    State(sim): State<Arc<Genesys>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Json<Value> {
    let mut st = sim.lock();
    let ttl = Duration::from_secs(st.faults.settings.channel_ttl_secs);
    let channel = st.channels.create(&caller.client_id, ttl, Instant::now());
    tracing::info!(channel = %channel.id, client = %caller.client_id, "channel created");
    Json(channel_json(channel, &request_host(&headers)))
}

pub(super) async fn list_channels(
    State(sim): State<Arc<Genesys>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Json<Value> {
    let mut st = sim.lock();
    st.channels.purge_expired(Instant::now());
    let host = request_host(&headers);
    let entities: Vec<Value> = st
        .channels
        .channels
        .values()
        .filter(|c| c.client_id == caller.client_id)
        .map(|c| channel_json(c, &host))
        .collect();
    Json(json!({ "entities": entities }))
}

pub(super) async fn head_channel(
    State(sim): State<Arc<Genesys>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> StatusCode {
    let mut st = sim.lock();
    match st.channels.get(&id, &caller.client_id, Instant::now()) {
        Some(_) => StatusCode::OK,
        None => StatusCode::NOT_FOUND,
    }
}

pub(super) async fn get_subscriptions(
    State(sim): State<Arc<Genesys>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut st = sim.lock();
    let channel = st
        .channels
        .get(&id, &caller.client_id, Instant::now())
        .ok_or_else(|| channel_not_found(&id))?;
    Ok(Json(topic_entities(&channel.topics, &[])))
}

pub(super) async fn add_subscriptions(
    sim: State<Arc<Genesys>>,
    caller: Extension<Caller>,
    path: Path<String>,
    query: Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    subscribe(sim, caller, path, query, body, SubscribeMode::Add)
}

pub(super) async fn replace_subscriptions(
    sim: State<Arc<Genesys>>,
    caller: Extension<Caller>,
    path: Path<String>,
    query: Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    subscribe(sim, caller, path, query, body, SubscribeMode::Replace)
}

/// Without `ignoreErrors=true` any rejected topic fails the whole request
/// (400, nothing changes) [U]; with it, permitted topics are applied and the
/// rejected ones listed as `Rejected`.
fn subscribe(
    State(sim): State<Arc<Genesys>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
    mode: SubscribeMode,
) -> Result<Json<Value>, ApiError> {
    let requested = parse_topics(&parse_json(&body)?)?;
    let ignore_errors = query
        .get("ignoreErrors")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut st = sim.lock();
    let channel = st
        .channels
        .get(&id, &caller.client_id, Instant::now())
        .ok_or_else(|| channel_not_found(&id))?;
    let (topics, rejected) = plan_topics(&channel.topics, &requested, mode);
    if !rejected.is_empty() && !ignore_errors {
        let (topic, reason) = &rejected[0];
        return Err(ApiError::bad_request(format!(
            "{} topic(s) rejected, first {topic}: {reason}",
            rejected.len()
        )));
    }
    channel.topics = topics;
    tracing::debug!(channel = %id, topics = channel.topics.len(), ?mode, "subscriptions updated");
    Ok(Json(topic_entities(&channel.topics, &rejected)))
}

pub(super) async fn delete_subscriptions(
    State(sim): State<Arc<Genesys>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut st = sim.lock();
    let channel = st
        .channels
        .get(&id, &caller.client_id, Instant::now())
        .ok_or_else(|| channel_not_found(&id))?;
    channel.topics.clear();
    Ok(StatusCode::NO_CONTENT)
}

/// Writes a conversation detail event to every connected socket subscribed to
/// it. With no such socket the event is lost, as in Genesys.
pub(super) fn publish(
    st: &mut SimState,
    integration_id: &str,
    cid: &str,
    suffix: &str,
    body: Value,
) {
    let topic = format!("v2.detail.events.conversation.{cid}.{suffix}");
    let scopes = [integration_id.to_string()];
    let lost_by_fault = st
        .faults
        .take_count(&scopes, |s| &mut s.lose_next_notification);
    let client_id = st
        .integrations
        .get(integration_id)
        .map(|i| i.client_id.clone());
    let mut delivered = 0;
    if let (false, Some(client_id)) = (lost_by_fault, client_id) {
        let client_scopes = st.integrations_of_client(&client_id);
        let silent = st.faults.is_on(&client_scopes, |s| s.ws_silent);
        let frame = json!({
            "topicName": topic,
            "version": "2",
            "eventBody": body,
            "metadata": {"CorrelationId": uuid::Uuid::new_v4().to_string()},
        })
        .to_string();
        st.channels.purge_expired(Instant::now());
        for channel in st.channels.channels.values() {
            if channel.client_id != client_id || !channel.topics.contains(&topic) || silent {
                continue;
            }
            if let Some(conn) = &channel.conn {
                if conn.tx.send(WsCommand::Text(frame.clone())).is_ok() {
                    delivered += 1;
                }
            }
        }
    }
    for _ in 0..delivered {
        st.stats
            .bump(Some(integration_id), |s| &mut s.notifications_sent);
    }
    let lost = delivered == 0;
    if lost {
        st.stats
            .bump(Some(integration_id), |s| &mut s.notifications_lost);
    }
    tracing::info!(%topic, delivered, lost_by_fault, "notification");
    if let Some(conv) = st.conversations.get_mut(cid) {
        conv.notifications.push(NotificationRecord {
            topic,
            delivered,
            lost,
            at: now_iso(),
        });
    }
}

/// Fires pending `ws_drop_next` / `ws_socket_closing_next` on connected sockets in scope.
pub(super) fn fire_pending_socket_faults(st: &mut SimState) {
    let connected: Vec<(String, String)> = st
        .channels
        .channels
        .values()
        .filter(|c| c.conn.is_some())
        .map(|c| (c.id.clone(), c.client_id.clone()))
        .collect();
    for (channel_id, client_id) in connected {
        let scopes = st.integrations_of_client(&client_id);
        let drop = st.faults.take_flag(&scopes, |s| &mut s.ws_drop_next);
        let closing = st
            .faults
            .take_flag(&scopes, |s| &mut s.ws_socket_closing_next);
        let Some(conn) = st
            .channels
            .channels
            .get(&channel_id)
            .and_then(|c| c.conn.as_ref())
        else {
            continue;
        };
        if closing {
            tracing::info!(channel = %channel_id, "fault: socket_closing");
            let _ = conn.tx.send(WsCommand::SocketClosing);
        }
        if drop {
            tracing::info!(channel = %channel_id, "fault: dropping socket without close frame");
            let _ = conn.tx.send(WsCommand::Drop);
        }
    }
}

/// `GET /genesys/streaming/channels/{id}`: the channel's WebSocket (no auth,
/// the channel id is the capability, as with Genesys' `connectUri`).
pub(super) async fn websocket(
    State(sim): State<Arc<Genesys>>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let exists = {
        let mut st = sim.lock();
        st.channels.purge_expired(Instant::now());
        st.channels.channels.contains_key(&id)
    };
    if !exists {
        return channel_not_found(&id).into_response();
    }
    ws.on_upgrade(move |socket| run_socket(sim, id, socket))
}

fn heartbeat_interval(sim: &Genesys) -> Duration {
    Duration::from_secs_f64(sim.lock().faults.settings.heartbeat_secs.max(0.01))
}

fn metadata_frame(message: &str) -> String {
    json!({"topicName": "channel.metadata", "eventBody": {"message": message}}).to_string()
}

async fn run_socket(sim: Arc<Genesys>, channel_id: String, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (conn_id, client_id) = {
        let mut st = sim.lock();
        let Some((conn_id, client_id)) = st.channels.attach(&channel_id, tx, Instant::now()) else {
            return;
        };
        let scopes = st.integrations_of_client(&client_id);
        st.stats.bump(scopes.first().map(String::as_str), |s| {
            &mut s.ws_connections
        });
        fire_pending_socket_faults(&mut st);
        (conn_id, client_id)
    };
    tracing::info!(channel = %channel_id, conn_id, "socket connected");
    let silent = || {
        let st = sim.lock();
        let scopes = st.integrations_of_client(&client_id);
        st.faults.is_on(&scopes, |s| s.ws_silent)
    };

    let mut next_heartbeat = tokio::time::Instant::now() + heartbeat_interval(&sim);
    let mut closing_at: Option<tokio::time::Instant> = None;
    let far_future = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let close_frame = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if silent() {
                        continue;
                    }
                    let reply = client_frame(&sim, &channel_id, &client_id, text.as_str());
                    if socket.send(Message::Text(reply.into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            command = rx.recv() => match command {
                Some(WsCommand::Text(frame)) => {
                    if socket.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
                Some(WsCommand::SocketClosing) => {
                    let grace = Duration::from_millis(sim.lock().faults.settings.socket_closing_grace_ms);
                    closing_at = Some(tokio::time::Instant::now() + grace);
                    let frame = json!({
                        "topicName": "v2.system.socket_closing",
                        "version": "2",
                        "eventBody": {"message": "The socket will be closed soon; reconnect."},
                        "metadata": {"CorrelationId": uuid::Uuid::new_v4().to_string()},
                    });
                    if socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                        break;
                    }
                }
                // Dropping the socket closes the TCP stream without a close frame.
                Some(WsCommand::Drop) => break,
                Some(WsCommand::Close) | None => {
                    let _ = socket.send(close_frame(1000, "channel closed")).await;
                    break;
                }
            },
            _ = tokio::time::sleep_until(next_heartbeat) => {
                next_heartbeat = tokio::time::Instant::now() + heartbeat_interval(&sim);
                if !silent()
                    && socket
                        .send(Message::Text(metadata_frame("WebSocket Heartbeat").into()))
                        .await
                        .is_err()
                {
                    break;
                }
            },
            _ = tokio::time::sleep_until(closing_at.unwrap_or(far_future)), if closing_at.is_some() => {
                let _ = socket.send(close_frame(1001, "socket closing")).await;
                break;
            },
        }
    }
    sim.lock().channels.detach(&channel_id, conn_id);
    tracing::info!(channel = %channel_id, conn_id, "socket closed");
}

/// Answer to a client frame: ping, or subscribe over the socket.
fn client_frame(sim: &Genesys, channel_id: &str, client_id: &str, text: &str) -> String {
    let frame: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    match frame.get("message").and_then(Value::as_str) {
        Some("ping") => metadata_frame("pong"),
        Some("subscribe") => {
            let correlation = frame.get("correlationId").cloned().unwrap_or(Value::Null);
            let requested = frame
                .get("topics")
                .map(parse_topics)
                .unwrap_or_else(|| Err(ApiError::bad_request("topics is required")));
            let requested = match requested {
                Ok(r) => r,
                Err(e) => {
                    return json!({"result": "400", "status": "error", "message": e.message,
                                  "correlationId": correlation})
                    .to_string()
                }
            };
            let mut st = sim.lock();
            let Some(channel) = st.channels.get(channel_id, client_id, Instant::now()) else {
                return json!({"result": "404", "message": "Channel not found",
                              "correlationId": correlation})
                .to_string();
            };
            let (topics, rejected) = plan_topics(&channel.topics, &requested, SubscribeMode::Add);
            if let Some((topic, reason)) = rejected.first() {
                return json!({"result": "400", "status": "failure",
                              "message": format!("{topic}: {reason}"), "correlationId": correlation})
                .to_string();
            }
            channel.topics = topics;
            json!({"result": "200", "status": "subscribed", "correlationId": correlation})
                .to_string()
        }
        _ => json!({"result": "400", "status": "error", "message": "Unsupported message"})
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3600);

    #[test]
    fn twenty_first_channel_evicts_least_recently_used_unconnected() {
        let mut store = ChannelStore::default();
        let t0 = Instant::now();
        let ids: Vec<String> = (0..20)
            .map(|i| {
                store
                    .create("client", TTL, t0 + Duration::from_secs(i))
                    .id
                    .clone()
            })
            .collect();
        // Another client's channels never count or get evicted.
        let other = store.create("other", TTL, t0).id.clone();
        // The oldest is connected, so the second oldest is the victim.
        let (tx, _rx) = mpsc::unbounded_channel();
        store.attach(&ids[0], tx, t0).unwrap();
        // Using the third refreshes it, it is not next either.
        assert!(store
            .get(&ids[2], "client", t0 + Duration::from_secs(30))
            .is_some());

        store.create("client", TTL, t0 + Duration::from_secs(40));
        let now = t0 + Duration::from_secs(41);
        assert!(
            store.get(&ids[1], "client", now).is_none(),
            "LRU unconnected evicted"
        );
        assert!(
            store.get(&ids[0], "client", now).is_some(),
            "connected kept"
        );
        assert!(store.get(&ids[2], "client", now).is_some());
        assert!(store.get(&other, "other", now).is_some());
        let count = store
            .channels
            .values()
            .filter(|c| c.client_id == "client")
            .count();
        assert_eq!(count, 20);
    }

    #[test]
    fn channel_of_another_client_or_expired_is_not_found() {
        let mut store = ChannelStore::default();
        let t0 = Instant::now();
        let id = store.create("a", TTL, t0).id.clone();
        assert!(store.get(&id, "b", t0).is_none());
        assert!(store.get(&id, "a", t0 + TTL).is_none(), "expired after 24h");
    }

    #[test]
    fn thousand_and_first_topic_is_rejected() {
        let topics: Vec<String> = (0..1000)
            .map(|i| format!("v2.detail.events.conversation.c{i}.user.end"))
            .collect();
        let (kept, rejected) = plan_topics(&[], &topics, SubscribeMode::Replace);
        assert_eq!(kept.len(), 1000);
        assert!(rejected.is_empty());

        let extra = vec![
            "v2.detail.events.conversation.c0.user.end".to_string(), // already there: fine
            "v2.detail.events.conversation.c1000.user.end".to_string(),
        ];
        let (kept, rejected) = plan_topics(&kept, &extra, SubscribeMode::Add);
        assert_eq!(kept.len(), 1000);
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            rejected[0].0,
            "v2.detail.events.conversation.c1000.user.end"
        );
        let entities = topic_entities(&kept, &rejected);
        assert_eq!(entities["entities"][1000]["state"], "Rejected");
        assert_eq!(entities["entities"][0]["state"], "Permitted");

        // Replacing with a smaller list makes room again.
        let (kept, rejected) = plan_topics(&kept, &extra, SubscribeMode::Replace);
        assert_eq!((kept.len(), rejected.len()), (2, 0));
    }

    #[test]
    fn topic_names_are_checked() {
        assert_eq!(
            topic_rejection("v2.detail.events.conversation.abc.customer.end"),
            None
        );
        assert_eq!(
            topic_rejection("v2.routing.queues.q1.conversations.messages"),
            None
        );
        assert!(topic_rejection("v2.detail.events.conversation.abc.nope").is_some());
        assert!(topic_rejection("v2.detail.events.conversation..user.end").is_some());
        assert!(topic_rejection("something.else").is_some());
    }
}
