//! Participant WebSocket (spec §8): the `Websocket.Url` of
//! CreateParticipantConnection. `aws/subscribe` to `aws/chat` (which also
//! connects the customer), `aws/heartbeat` echo, `aws/ping` → 200, chat items
//! as `aws/chat` frames, close at ConnectionExpiry or when the chat ends.
//! Faults: `ws_drop_next` (drop without a close frame), `ws_silent` (no frames).

use super::contacts::WsSink;
use super::participant::Owner;
use super::{streaming, ApiError, Connect, SimState};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

const CHAT_TOPIC: &str = "aws/chat";

/// What a socket task is told to do.
#[derive(Debug)]
pub(super) enum WsCommand {
    Frame(String),
    /// Drop the TCP stream without a close frame.
    Drop,
    Close,
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// `GET /connectparticipant/websocket/{id}`: opens once, within 100 s, while the chat lasts.
pub(super) async fn upgrade(
    State(sim): State<Arc<Connect>>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let grant = {
        let mut st = sim.lock();
        let now = Instant::now();
        let ended = |st: &SimState, owner: &Owner| {
            st.contacts
                .get(&owner.contact_id)
                .is_none_or(|c| c.is_ended())
        };
        match st.tokens.websockets.get(&id).cloned() {
            Some(g) if !g.opened && now < g.open_by && !ended(&st, &g.owner) => {
                if let Some(g) = st.tokens.websockets.get_mut(&id) {
                    g.opened = true;
                }
                g
            }
            _ => {
                return ApiError::access_denied(
                    "The WebSocket URL is unknown, already used, expired or its chat ended.",
                )
                .into_response()
            }
        }
    };
    ws.on_upgrade(move |socket| run_socket(sim, grant.owner, grant.expires_at, socket))
}

fn chat_frame(item_json: &str) -> String {
    json!({"topic": CHAT_TOPIC, "contentType": "application/json", "content": item_json})
        .to_string()
}

/// Writes an item to the contact's subscribed sockets (unless `ws_silent`).
pub(super) fn push_item(st: &mut SimState, cid: &str, item_json: &str) {
    let Some(contact) = st.contacts.get(cid) else {
        return;
    };
    let scopes = [contact.instance_id.clone()];
    if contact.ws_sinks.is_empty() || st.faults.is_on(&scopes, |s| s.ws_silent) {
        return;
    }
    let frame = chat_frame(item_json);
    let mut sent = 0;
    if let Some(contact) = st.contacts.get_mut(cid) {
        contact.ws_sinks.retain(|s| {
            !s.subscribed || {
                let ok = s.tx.send(WsCommand::Frame(frame.clone())).is_ok();
                sent += usize::from(ok);
                ok
            }
        });
    }
    for _ in 0..sent {
        st.stats.bump(Some(&scopes[0]), |s| &mut s.ws_frames_sent);
    }
}

/// Fires a pending `ws_drop_next` on the connected sockets of each contact in scope.
pub(super) fn fire_pending_socket_faults(st: &mut SimState) {
    let with_sockets: Vec<(String, String)> = st
        .contacts
        .values()
        .filter(|c| !c.ws_sinks.is_empty())
        .map(|c| (c.id.clone(), c.instance_id.clone()))
        .collect();
    for (cid, instance) in with_sockets {
        if !st.faults.take_flag(&[instance], |s| &mut s.ws_drop_next) {
            continue;
        }
        if let Some(c) = st.contacts.get_mut(&cid) {
            tracing::info!(contact = %cid, "fault: dropping participant sockets without close frame");
            for sink in c.ws_sinks.drain(..) {
                let _ = sink.tx.send(WsCommand::Drop);
            }
        }
    }
}

/// The reply to a client frame, and whether it subscribed to `aws/chat`.
fn client_frame(text: &str) -> (Option<String>, bool) {
    let frame: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    match frame.get("topic").and_then(Value::as_str) {
        Some("aws/subscribe") => {
            let topics: Vec<&str> = frame["content"]["topics"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let ok = topics.contains(&CHAT_TOPIC);
            let reply = json!({"topic": "aws/subscribe",
                "content": {"status": if ok { "success" } else { "failure" }, "topics": topics}});
            (Some(reply.to_string()), ok)
        }
        Some("aws/heartbeat") => (Some(json!({"topic": "aws/heartbeat"}).to_string()), false),
        Some("aws/ping") => (
            Some(
                json!({"topic": "aws/ping", "statusCode": 200, "statusContent": "OK"}).to_string(),
            ),
            false,
        ),
        _ => (None, false),
    }
}

async fn run_socket(sim: Arc<Connect>, owner: Owner, expires_at: Instant, mut socket: WebSocket) {
    let conn_id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let instance = {
        let mut st = sim.lock();
        let Some(contact) = st.contacts.get_mut(&owner.contact_id) else {
            return;
        };
        contact.ws_sinks.push(WsSink {
            conn_id,
            tx,
            subscribed: false,
        });
        let instance = contact.instance_id.clone();
        st.stats.bump(Some(&instance), |s| &mut s.ws_connections);
        fire_pending_socket_faults(&mut st);
        instance
    };
    tracing::info!(contact = %owner.contact_id, conn_id, "participant socket connected");
    let silent = || {
        sim.lock()
            .faults
            .is_on(std::slice::from_ref(&instance), |s| s.ws_silent)
    };
    let close = |reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code: 1000,
            reason: reason.into(),
        }))
    };
    let deadline = tokio::time::Instant::from_std(expires_at);
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if silent() {
                        continue;
                    }
                    let (reply, subscribed) = client_frame(text.as_str());
                    if subscribed {
                        subscribe(&sim, &owner, conn_id);
                    }
                    if let Some(reply) = reply {
                        if socket.send(Message::Text(reply.into())).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            command = rx.recv() => match command {
                Some(WsCommand::Frame(frame)) => {
                    if socket.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
                Some(WsCommand::Drop) => break,
                Some(WsCommand::Close) | None => {
                    let _ = socket.send(close("chat ended")).await;
                    break;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let _ = socket.send(close("connection expired")).await;
                break;
            },
        }
    }
    if let Some(c) = sim.lock().contacts.get_mut(&owner.contact_id) {
        c.ws_sinks.retain(|s| s.conn_id != conn_id);
    }
    tracing::info!(contact = %owner.contact_id, conn_id, "participant socket closed");
}

/// Marks the socket subscribed; the customer's first subscription connects them.
fn subscribe(sim: &Arc<Connect>, owner: &Owner, conn_id: u64) {
    let mut st = sim.lock();
    let Some(contact) = st.contacts.get_mut(&owner.contact_id) else {
        return;
    };
    for sink in contact.ws_sinks.iter_mut().filter(|s| s.conn_id == conn_id) {
        sink.subscribed = true;
    }
    let items = if owner.participant_id == contact.customer.id {
        contact.connect_customer()
    } else {
        Vec::new()
    };
    if !items.is_empty() {
        tracing::info!(contact = %owner.contact_id, "customer connected (WebSocket)");
    }
    let cid = owner.contact_id.clone();
    streaming::publish(sim, &mut st, &cid, items);
}
