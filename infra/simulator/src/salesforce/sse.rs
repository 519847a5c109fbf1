//! `GET /salesforce/eventrouter/v1/sse`: one stream per token subject, frames
//! `id:`/`event:`/`data:`, `ping` keep-alives, `Last-Event-Id` replay from a
//! per-subject ring buffer (an id older than the buffer replays nothing [U]),
//! and the delivery fault knobs. An expired token ends the stream after a
//! `Jwt is expired` error event.

use super::{bearer, now_ms, sleep_latency, ApiError, Salesforce, StreamEvent, SubjectStream};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

/// How often a stream checks its token, pings and held-back frames.
const TICK: Duration = Duration::from_millis(200);
/// A frame held back by `webhook_out_of_order_next` goes out after this at the latest.
const HOLD_BACK: Duration = Duration::from_millis(500);

fn frame(ev: &StreamEvent) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        ev.id, ev.event, ev.data
    ))
}

pub(super) async fn stream(State(sim): State<Arc<Salesforce>>, headers: HeaderMap) -> Response {
    sleep_latency(&sim).await;
    let token = bearer(&headers);
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let opened = {
        let mut st = sim.lock();
        let claims = match sim.authorize(&st, token.as_deref()) {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        };
        let Some(org) = headers.get("x-org-id").and_then(|v| v.to_str().ok()) else {
            return ApiError::bad_request("X-Org-Id header is required").into_response();
        };
        if org != claims.org_id {
            return ApiError::unauthorized("X-Org-Id does not match the token's org")
                .into_response();
        }
        let last = match last_event_id.as_deref().map(str::parse::<u64>) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                return ApiError::bad_request("Last-Event-Id is not an event id").into_response()
            }
        };
        let subject = st
            .subjects
            .entry(claims.sub.clone())
            .or_insert_with(|| SubjectStream::new(&claims.integration));
        let replay: Vec<StreamEvent> = match last {
            None => vec![],
            Some(n) => {
                let oldest = subject
                    .buffer
                    .front()
                    .map(|e| e.id)
                    .unwrap_or(subject.next_id);
                if n + 1 < oldest {
                    vec![] // older than the buffer: nothing can be replayed [U]
                } else {
                    subject
                        .buffer
                        .iter()
                        .filter(|e| e.id > n)
                        .cloned()
                        .collect()
                }
            }
        };
        let live = subject.live.subscribe();
        let integration = subject.integration.clone();
        st.stats
            .bump(Some(&integration), |s| &mut s.sse_connections);
        for _ in &replay {
            st.stats
                .bump(Some(&integration), |s| &mut s.sse_events_replayed);
        }
        (claims, integration, replay, live)
    };
    let (claims, integration, replay, live) = opened;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(run(sim.clone(), claims, integration, replay, live, tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// What the delivery knobs decide for one frame.
enum Delivery {
    Drop,
    Lose,
    Hold,
    Write { twice: bool },
}

fn decide(sim: &Salesforce, integration: &str) -> Delivery {
    let mut st = sim.lock();
    let scope = [integration.to_owned()];
    if st.knobs.take_sse_drop(integration) {
        st.stats.bump(Some(integration), |s| &mut s.sse_drops);
        return Delivery::Drop;
    }
    if st
        .faults
        .take_count(&scope, |s| &mut s.lose_next_notification)
    {
        st.stats.bump(Some(integration), |s| &mut s.sse_events_lost);
        return Delivery::Lose;
    }
    let reorder = st
        .faults
        .take_count(&scope, |s| &mut s.webhook_out_of_order_next)
        || {
            let r = st.faults.settings.webhook_reorder_ratio;
            st.faults.roll(r)
        };
    if reorder {
        return Delivery::Hold;
    }
    let twice = st
        .faults
        .take_count(&scope, |s| &mut s.webhook_duplicate_next)
        || {
            let r = st.faults.settings.webhook_duplicate_ratio;
            st.faults.roll(r)
        };
    Delivery::Write { twice }
}

async fn run(
    sim: Arc<Salesforce>,
    claims: super::auth::Claims,
    integration: String,
    replay: Vec<StreamEvent>,
    mut live: broadcast::Receiver<StreamEvent>,
    tx: mpsc::Sender<Bytes>,
) {
    let write = |b: Bytes| {
        let tx = tx.clone();
        let integration = integration.clone();
        let sim = sim.clone();
        async move {
            let ok = tx.send(b).await.is_ok();
            if ok {
                sim.lock()
                    .stats
                    .bump(Some(&integration), |s| &mut s.sse_events_written);
            }
            ok
        }
    };
    for ev in &replay {
        if !write(frame(ev)).await {
            return;
        }
    }
    let mut held: Option<(StreamEvent, Instant)> = None;
    let mut last_ping = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            got = live.recv() => {
                let ev = match got {
                    Ok(ev) => ev,
                    // Too far behind or gone: drop; the client resumes with Last-Event-Id.
                    Err(_) => return,
                };
                match decide(&sim, &integration) {
                    Delivery::Drop => return,
                    Delivery::Lose => {}
                    Delivery::Hold if held.is_none() => held = Some((ev, Instant::now())),
                    Delivery::Hold | Delivery::Write { twice: false } => {
                        if !write(frame(&ev)).await { return; }
                        if let Some((h, _)) = held.take() {
                            if !write(frame(&h)).await { return; }
                        }
                    }
                    Delivery::Write { twice: true } => {
                        if !write(frame(&ev)).await || !write(frame(&ev)).await { return; }
                        if let Some((h, _)) = held.take() {
                            if !write(frame(&h)).await { return; }
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let (expired, silent, ping_every) = {
                    let st = sim.lock();
                    let revoked = st.integrations.get(&claims.integration)
                        .is_none_or(|i| claims.iat_ms < i.revoked_before_ms);
                    (revoked || claims.exp <= now_ms() / 1000,
                     st.knobs.sse_silent(&integration),
                     Duration::from_secs_f64(st.knobs.settings.sse_ping_secs))
                };
                if expired {
                    let _ = tx.send(Bytes::from_static(
                        b"event: error\ndata: {\"message\":\"Jwt is expired\"}\n\n")).await;
                    return;
                }
                if held.as_ref().is_some_and(|(_, at)| at.elapsed() >= HOLD_BACK) {
                    if let Some((h, _)) = held.take() {
                        if !write(frame(&h)).await { return; }
                    }
                }
                if !silent && last_ping.elapsed() >= ping_every {
                    last_ping = Instant::now();
                    if tx.send(Bytes::from_static(b"event: ping\ndata: {}\n\n")).await.is_err() {
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        }
    }
}
