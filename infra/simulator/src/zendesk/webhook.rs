//! Webhook delivery of custom integrations (spec §6, §11.7): the v2 envelope
//! with `X-API-Key`, switchboard-aware fan-out, one ordered queue per
//! conversation and webhook, Zendesk's retry policy and the webhook faults.

use super::{now_iso, object_id, CustomIntegration, SimState, Zendesk};
use axum::body::Bytes;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, UnboundedReceiver};

/// Header carrying the webhook's shared secret.
pub(super) const API_KEY_HEADER: &str = "X-API-Key";
/// Zendesk tries a webhook call at most 5 times…
const MAX_ATTEMPTS: u32 = 5;
/// …within 15 minutes (spec §6).
const RETRY_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Answers Zendesk never retries.
const NOT_RETRIED: [u16; 5] = [400, 401, 403, 404, 406];
/// An event held back by an out-of-order fault is released after the next
/// POST, or after this long if nothing else comes.
const MAX_HOLD: Duration = Duration::from_secs(10);
/// How long a batch (`webhook_batch_next`) waits for its next event.
const BATCH_WAIT: Duration = Duration::from_secs(2);

/// Who an event goes to, besides the subscription (`triggers`) filter.
pub(super) enum Audience {
    /// Integrations active, pending, or standby with `deliverStandbyEvents`;
    /// these switchboard integration ids count as involved too (control just
    /// moved away from them).
    Switchboard(Vec<String>),
    /// Only the integration that made the failed request (`…:failure`); an
    /// app-scoped caller gets the switchboard rule instead.
    Caller(Option<String>),
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct WebhookAttempt {
    pub(super) integration_id: String,
    pub(super) event_ids: Vec<String>,
    pub(super) event_types: Vec<String>,
    /// 1 for the first try, then 2.. for retries; 0 for a dropped event.
    pub(super) attempt: u32,
    /// HTTP status of the answer; 0 when there was none.
    pub(super) status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    /// True for the extra POST of a duplicate fault.
    pub(super) duplicate: bool,
    /// `valid`, `wrong` or `missing` X-API-Key.
    pub(super) api_key: &'static str,
    /// Never sent (`webhook_drop_next`).
    pub(super) dropped: bool,
    pub(super) at: String,
}

/// One event for one webhook, with the faults drawn for it.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    app_id: String,
    integration_id: String,
    webhook_id: String,
    url: String,
    /// `None` when a fault removes the header.
    api_key: Option<String>,
    key_state: &'static str,
    event: Value,
    duplicate: bool,
    hold: bool,
    /// Gather this many events (this one included) into one POST.
    batch: u32,
}

/// One POST: the exact bytes and what they carry.
#[derive(Debug)]
struct Outgoing {
    conversation_id: String,
    app_id: String,
    integration_id: String,
    url: String,
    body: Bytes,
    api_key: Option<String>,
    key_state: &'static str,
    event_ids: Vec<String>,
    event_types: Vec<String>,
    duplicate: bool,
    hold: bool,
}

impl Outgoing {
    fn new(conversation_id: &str, batch: Vec<Delivery>) -> Self {
        let first = &batch[0];
        let events: Vec<Value> = batch.iter().map(|d| d.event.clone()).collect();
        let envelope = json!({
            "app": {"id": first.app_id},
            "webhook": {"id": first.webhook_id, "version": "v2"},
            "events": events,
        });
        Self {
            conversation_id: conversation_id.to_string(),
            app_id: first.app_id.clone(),
            integration_id: first.integration_id.clone(),
            url: first.url.clone(),
            body: Bytes::from(serde_json::to_vec(&envelope).expect("JSON value serializes")),
            api_key: first.api_key.clone(),
            key_state: first.key_state,
            event_ids: events
                .iter()
                .map(|e| e["id"].as_str().unwrap_or_default().to_string())
                .collect(),
            event_types: events
                .iter()
                .map(|e| e["type"].as_str().unwrap_or_default().to_string())
                .collect(),
            duplicate: batch.iter().any(|d| d.duplicate),
            hold: first.hold,
        }
    }
}

/// Emits an event of a conversation to the app's subscribed, eligible webhooks.
pub(super) fn publish(
    sim: &Arc<Zendesk>,
    st: &mut SimState,
    cid: &str,
    event_type: &str,
    payload: Value,
    audience: Audience,
) {
    let Some(conv) = st.conversations.get(cid) else {
        return;
    };
    let Some(app) = st.apps.get(&conv.app_id) else {
        return;
    };
    let to_all = st.knobs.deliver_standby_to_all(&app.id);
    let mut involved: Vec<&str> = conv
        .active
        .iter()
        .chain(conv.pending.iter())
        .map(String::as_str)
        .collect();
    let only = match &audience {
        Audience::Switchboard(extra) => {
            involved.extend(extra.iter().map(String::as_str));
            None
        }
        Audience::Caller(caller) => caller.as_deref(),
    };
    let eligible = |i: &CustomIntegration| match only {
        Some(id) => i.id == id,
        // Integrations outside the switchboard receive everything [U].
        None => app.switchboard.of_integration(&i.id).is_none_or(|s| {
            to_all || s.deliver_standby_events || involved.contains(&s.id.as_str())
        }),
    };
    let recipients: Vec<CustomIntegration> = app
        .integrations
        .values()
        .filter(|i| i.webhook.subscribes(event_type) && eligible(i))
        .cloned()
        .collect();
    if recipients.is_empty() {
        tracing::debug!(conversation = cid, event_type, "event has no recipient");
        return;
    }
    let app_id = app.id.clone();
    let event = json!({
        "id": object_id(),
        "type": event_type,
        "createdAt": now_iso(),
        "payload": payload,
    });
    for integration in recipients {
        queue(sim, st, cid, &app_id, &integration, &event);
    }
}

/// Draws the webhook faults for one event copy and queues it behind the
/// conversation's earlier events for that webhook.
fn queue(
    sim: &Arc<Zendesk>,
    st: &mut SimState,
    cid: &str,
    app_id: &str,
    integration: &CustomIntegration,
    event: &Value,
) {
    let scopes = [app_id.to_string()];
    let app = Some(app_id);
    st.stats.bump(app, |s| &mut s.webhook_events);
    if st.knobs.take_one(app_id, |c| &mut c.webhook_drop_next) {
        st.stats.bump(app, |s| &mut s.webhook_dropped);
        tracing::info!(conversation = cid, event = %event["id"], "webhook event dropped by fault knob");
        if let Some(conv) = st.conversations.get_mut(cid) {
            conv.webhook_attempts.push(WebhookAttempt {
                integration_id: integration.id.clone(),
                event_ids: vec![event["id"].as_str().unwrap_or_default().to_string()],
                event_types: vec![event["type"].as_str().unwrap_or_default().to_string()],
                attempt: 0,
                status: 0,
                error: Some("dropped by webhook_drop_next".into()),
                duplicate: false,
                api_key: "valid",
                dropped: true,
                at: now_iso(),
            });
        }
        return;
    }
    let faults = &mut st.faults;
    let duplicate_ratio = faults.settings.webhook_duplicate_ratio;
    let reorder_ratio = faults.settings.webhook_reorder_ratio;
    let duplicate = faults.take_count(&scopes, |s| &mut s.webhook_duplicate_next)
        || faults.roll(duplicate_ratio);
    let hold = faults.take_count(&scopes, |s| &mut s.webhook_out_of_order_next)
        || faults.roll(reorder_ratio);
    let bad_key = faults.take_count(&scopes, |s| &mut s.webhook_bad_signature_next);
    let missing_key = faults.take_count(&scopes, |s| &mut s.webhook_missing_signature_next);
    let batch = st.knobs.take_all(app_id, |c| &mut c.webhook_batch_next);
    let (api_key, key_state) = match (missing_key, bad_key) {
        (true, _) => (None, "missing"),
        (false, true) => (
            Some(format!("wrong-{}", integration.webhook.secret)),
            "wrong",
        ),
        (false, false) => (Some(integration.webhook.secret.clone()), "valid"),
    };
    let delivery = Delivery {
        app_id: app_id.to_string(),
        integration_id: integration.id.clone(),
        webhook_id: integration.webhook.id.clone(),
        url: integration.webhook.target.clone(),
        api_key,
        key_state,
        event: event.clone(),
        duplicate,
        hold,
        batch,
    };
    tracing::debug!(conversation = cid, event = %event["id"], event_type = %event["type"], duplicate, hold, key_state, batch, "webhook event queued");
    let Some(conv) = st.conversations.get_mut(cid) else {
        return;
    };
    let delivery = match conv.webhook_queues.get(&integration.id) {
        Some(tx) => match tx.send(delivery) {
            Ok(()) => return,
            Err(mpsc::error::SendError(d)) => d,
        },
        None => delivery,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(delivery).expect("receiver is alive");
    conv.webhook_queues.insert(integration.id.clone(), tx);
    tokio::spawn(run_queue(sim.clone(), cid.to_string(), rx));
}

/// Delivers one conversation's events to one webhook, in order, honouring
/// batches and held events.
async fn run_queue(sim: Arc<Zendesk>, cid: String, mut rx: UnboundedReceiver<Delivery>) {
    let mut held: Option<Outgoing> = None;
    loop {
        let next = if held.is_some() {
            match tokio::time::timeout(MAX_HOLD, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    if let Some(h) = held.take() {
                        deliver(&sim, &h).await;
                    }
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(first) = next else {
            if let Some(h) = held.take() {
                deliver(&sim, &h).await;
            }
            return;
        };
        let want = first.batch.max(1) as usize;
        let mut batch = vec![first];
        while batch.len() < want {
            match tokio::time::timeout(BATCH_WAIT, rx.recv()).await {
                Ok(Some(d)) => batch.push(d),
                _ => break,
            }
        }
        let out = Outgoing::new(&cid, batch);
        if out.hold && held.is_none() {
            held = Some(out);
            continue;
        }
        deliver(&sim, &out).await;
        if let Some(h) = held.take() {
            deliver(&sim, &h).await;
        }
    }
}

async fn deliver(sim: &Arc<Zendesk>, out: &Outgoing) {
    send_with_retries(sim, out, false).await;
    if out.duplicate {
        send_with_retries(sim, out, true).await;
    }
}

/// One POST: up to [`MAX_ATTEMPTS`] tries with exponential spacing on
/// timeouts, connection errors and non-2xx answers other than [`NOT_RETRIED`].
async fn send_with_retries(sim: &Arc<Zendesk>, out: &Outgoing, duplicate: bool) {
    let started = Instant::now();
    for attempt in 1..=MAX_ATTEMPTS {
        let (timeout, base_ms) = {
            let st = sim.lock();
            (
                Duration::from_millis(st.knobs.webhook_timeout_ms(&out.app_id)),
                st.knobs.webhook_retry_base_ms(&out.app_id),
            )
        };
        let mut req = sim
            .http
            .post(&out.url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(out.body.clone());
        if let Some(key) = &out.api_key {
            req = req.header(API_KEY_HEADER, key);
        }
        let (status, error) = match req.send().await {
            Ok(resp) => (resp.status().as_u16(), None),
            Err(e) if e.is_timeout() => (0, Some("timeout".to_string())),
            Err(e) => (0, Some(format!("connection error: {e}"))),
        };
        let delivered = (200..300).contains(&status);
        let delay = Duration::from_millis(base_ms.saturating_mul(1 << (attempt - 1)));
        let give_up = !delivered
            && (NOT_RETRIED.contains(&status)
                || attempt == MAX_ATTEMPTS
                || started.elapsed() + delay > RETRY_WINDOW);
        {
            let mut st = sim.lock();
            let app = Some(out.app_id.as_str());
            st.stats.bump(app, |s| &mut s.webhook_attempts);
            if delivered {
                st.stats.bump(app, |s| &mut s.webhook_deliveries);
            } else if give_up {
                st.stats.bump(app, |s| &mut s.webhook_failures);
            } else {
                st.stats.bump(app, |s| &mut s.webhook_retries);
            }
            if let Some(conv) = st.conversations.get_mut(&out.conversation_id) {
                conv.webhook_attempts.push(WebhookAttempt {
                    integration_id: out.integration_id.clone(),
                    event_ids: out.event_ids.clone(),
                    event_types: out.event_types.clone(),
                    attempt,
                    status,
                    error: error.clone(),
                    duplicate,
                    api_key: out.key_state,
                    dropped: false,
                    at: now_iso(),
                });
            }
        }
        if delivered {
            tracing::debug!(events = ?out.event_ids, attempt, status, "webhook delivered");
            return;
        }
        if give_up {
            tracing::warn!(events = ?out.event_ids, attempt, status, ?error, "webhook given up");
            return;
        }
        tracing::info!(events = ?out.event_ids, attempt, status, ?error, ?delay, "webhook failed, will retry");
        tokio::time::sleep(delay).await;
    }
}
