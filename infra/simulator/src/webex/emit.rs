//! Webhook deliveries (spec §3, §7.4): CloudEvents envelopes, hex HMAC-SHA256
//! `X-WebexCC-Signature`, V2 timestamp headers on v2 subscriptions, one
//! ordered queue per task, a 5 s client timeout, a few retries on transport
//! errors and 5xx [U], and the webhook faults.

use super::{now_ms, SimState, Webex};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{self, UnboundedReceiver};

pub(super) const SIGNATURE_HEADER: &str = "X-WebexCC-Signature";
pub(super) const TIMESTAMP_HEADER: &str = "X-WebExCC-Timestamp";
pub(super) const VERSION_HEADER: &str = "X-WebexCC-Webhook-Version";
/// Version header of asset deliveries (W1).
const ASSET_VERSION: &str = "task-message:1.0.0";
/// Tries of one delivery [U: WxCC does not document its retries].
const MAX_ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// A held (out-of-order) event is released after the next one, or after this.
const MAX_HOLD: Duration = Duration::from_secs(3);
/// How old a `stale_timestamp_next` delivery claims to be.
const STALE_BY_MS: i64 = 10 * 60 * 1000;

/// Where an event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// The custom messaging asset's webhook (agent and flow messages).
    Asset,
    /// Every active subscription of the org naming the event type.
    Subscriptions,
}

#[derive(Debug)]
pub(super) struct Delivery {
    org_id: String,
    subscription_id: Option<String>,
    url: String,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    event_id: String,
    duplicate: bool,
    hold: bool,
}

pub(super) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex_lower(&mac.finalize().into_bytes())
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Queues one event for `task_id`'s destinations; returns the envelope id.
pub(super) fn emit(
    sim: &Arc<Webex>,
    st: &mut SimState,
    task_id: &str,
    event_type: &str,
    data: Value,
    target: Target,
) -> String {
    let event_id = uuid::Uuid::new_v4().to_string();
    let Some(org_id) = st.tasks.get(task_id).map(|t| t.org_id.clone()) else {
        return event_id;
    };
    let Some(org) = st.orgs.get(&org_id) else {
        return event_id;
    };
    // (url, secret, subscription id, version header, with timestamp header)
    let destinations: Vec<(String, String, Option<String>, String, bool)> = match target {
        Target::Asset => org
            .asset_webhook
            .iter()
            .map(|h| {
                (
                    h.url.clone(),
                    h.secret.clone(),
                    None,
                    ASSET_VERSION.to_string(),
                    false,
                )
            })
            .collect(),
        Target::Subscriptions => org
            .subscriptions
            .iter()
            .filter(|s| s.status == "active" && s.event_types.iter().any(|t| t == event_type))
            .map(|s| {
                (
                    s.destination_url.clone(),
                    s.secret.clone(),
                    Some(s.id.clone()),
                    s.resource_version.clone(),
                    s.api_version == "v2",
                )
            })
            .collect(),
    };
    let scope = [org_id.clone()];
    for (url, secret, subscription_id, version, with_ts) in destinations {
        st.stats.bump(Some(&org_id), |s| &mut s.webhook_events);
        if st.knobs.take(&org_id, |c| &mut c.drop_webhook_next) {
            st.stats.bump(Some(&org_id), |s| &mut s.webhook_dropped);
            tracing::info!(task = task_id, event_type, "webex webhook dropped (fault)");
            continue;
        }
        let mut ts = now_ms();
        if st.knobs.take(&org_id, |c| &mut c.stale_timestamp_next) {
            ts -= STALE_BY_MS;
        }
        let envelope = json!({
            "id": event_id, "specversion": "1.0", "type": event_type,
            "source": format!("/com/cisco/wxcc/{}", subscription_id.as_deref().unwrap_or("asset")),
            "comciscoorgid": org_id, "comciscotimestamp": ts,
            "datacontenttype": "application/json", "data": data,
        });
        let body = serde_json::to_vec(&envelope).expect("JSON");
        let bad = st
            .faults
            .take_count(&scope, |s| &mut s.webhook_bad_signature_next);
        let missing = st
            .faults
            .take_count(&scope, |s| &mut s.webhook_missing_signature_next);
        let mut headers = vec![(VERSION_HEADER, version)];
        if !missing {
            let key = if bad {
                "not-the-webhook-secret"
            } else {
                secret.as_str()
            };
            headers.push((SIGNATURE_HEADER, sign(key, &body)));
        }
        if with_ts {
            headers.push((TIMESTAMP_HEADER, ts.to_string()));
        }
        let duplicate = st
            .faults
            .take_count(&scope, |s| &mut s.webhook_duplicate_next)
            || {
                let r = st.faults.settings.webhook_duplicate_ratio;
                st.faults.roll(r)
            };
        let hold = st
            .faults
            .take_count(&scope, |s| &mut s.webhook_out_of_order_next)
            || {
                let r = st.faults.settings.webhook_reorder_ratio;
                st.faults.roll(r)
            };
        let delivery = Delivery {
            org_id: org_id.clone(),
            subscription_id,
            url,
            body,
            headers,
            event_id: event_id.clone(),
            duplicate,
            hold,
        };
        tracing::debug!(
            task = task_id,
            event_type,
            duplicate,
            hold,
            bad,
            "webex webhook queued"
        );
        enqueue(sim, st, task_id, delivery);
    }
    event_id
}

fn enqueue(sim: &Arc<Webex>, st: &mut SimState, task_id: &str, delivery: Delivery) {
    let Some(task) = st.tasks.get_mut(task_id) else {
        return;
    };
    let delivery = match &task.queue {
        Some(tx) => match tx.send(delivery) {
            Ok(()) => return,
            Err(mpsc::error::SendError(d)) => d,
        },
        None => delivery,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(delivery).expect("receiver is alive");
    task.queue = Some(tx);
    tokio::spawn(run_queue(sim.clone(), rx));
}

/// Delivers one task's events in order; a held event goes after the next one.
async fn run_queue(sim: Arc<Webex>, mut rx: UnboundedReceiver<Delivery>) {
    let mut held: Option<Delivery> = None;
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
        let Some(d) = next else {
            if let Some(h) = held.take() {
                deliver(&sim, &h).await;
            }
            return;
        };
        if d.hold && held.is_none() {
            held = Some(d);
            continue;
        }
        deliver(&sim, &d).await;
        if let Some(h) = held.take() {
            deliver(&sim, &h).await;
        }
    }
}

async fn deliver(sim: &Arc<Webex>, d: &Delivery) {
    send(sim, d).await;
    if d.duplicate {
        send(sim, d).await;
    }
}

async fn send(sim: &Arc<Webex>, d: &Delivery) {
    let timeout = Duration::from_millis(sim.lock().knobs.webhook_timeout_ms(&d.org_id));
    let mut delivered = false;
    for attempt in 1..=MAX_ATTEMPTS {
        let mut req = sim
            .http
            .post(&d.url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(d.body.clone());
        for (k, v) in &d.headers {
            req = req.header(*k, v);
        }
        let status = match req.send().await {
            Ok(resp) => resp.status().as_u16(),
            Err(e) => {
                tracing::info!(event = %d.event_id, error = %e, "webex webhook transport error");
                0
            }
        };
        sim.lock()
            .stats
            .bump(Some(&d.org_id), |s| &mut s.webhook_attempts);
        delivered = (200..300).contains(&status);
        let retry = status == 0 || status >= 500;
        if delivered || !retry || attempt == MAX_ATTEMPTS {
            if !delivered {
                tracing::warn!(event = %d.event_id, status, "webex webhook not delivered");
            }
            break;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    let mut st = sim.lock();
    let limit = st.knobs.inactive_after_failures(&d.org_id);
    if delivered {
        st.stats
            .bump(Some(&d.org_id), |s| &mut s.webhook_deliveries);
    } else {
        st.stats.bump(Some(&d.org_id), |s| &mut s.webhook_failures);
    }
    let Some(sub_id) = &d.subscription_id else {
        return;
    };
    let Some(sub) = st
        .orgs
        .get_mut(&d.org_id)
        .and_then(|o| o.subscriptions.iter_mut().find(|s| &s.id == sub_id))
    else {
        return;
    };
    if delivered {
        sub.consecutive_failures = 0;
    } else {
        sub.consecutive_failures += 1;
        if limit > 0 && sub.consecutive_failures >= limit {
            tracing::warn!(subscription = %sub.id, "webex subscription is now inactive");
            sub.status = "inactive".into();
        }
    }
}
