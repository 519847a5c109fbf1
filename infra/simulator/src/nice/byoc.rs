//! BYOC callbacks to the relay (spec §1.2, §3, §8.4): CXone fetches a token
//! from the relay's `/1.0/token` (form body), caches it until `expires_in`,
//! then POSTs outbound messages and sender actions with `Bearer`; on 401 it
//! fetches a new token once and retries; on 5xx / timeouts it retries 3×
//! with backoff. One ordered queue per contact; the webhook faults apply.

use super::{now_iso, CallbackStyle, Nice};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, UnboundedReceiver};

/// Retries after the first try on 5xx / timeouts (spec §8.4).
const RETRIES: u32 = 3;
const RETRY_BASE: Duration = Duration::from_millis(200);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// An event held back by `webhook_out_of_order_next` goes after the next one,
/// or after this long.
const MAX_HOLD: Duration = Duration::from_secs(3);

/// One callback to make.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    channel_id: String,
    contact_id: String,
    kind: &'static str,
    /// Path below the registered URL.
    path: String,
    body: Value,
    expected_id: Option<String>,
    duplicate: bool,
    hold: bool,
    bad_token: bool,
    no_token: bool,
}

/// Queues a callback behind the contact's earlier ones, drawing the webhook faults.
pub(super) fn queue(
    sim: &Arc<Nice>,
    contact_id: &str,
    kind: &'static str,
    body: Value,
    expected_id: Option<String>,
) {
    let mut st = sim.lock();
    let Some(c) = st.contacts.get(contact_id) else {
        return;
    };
    let channel = c.channel_id.clone();
    let Some(tenant) = st.tenants.get(&channel) else {
        return;
    };
    let path = match (kind, tenant.callback_style) {
        ("outbound", CallbackStyle::Byoc) => format!("/2.0/channel/{channel}/outbound"),
        ("outbound", CallbackStyle::Alt) => format!("/channels/{channel}/outbound"),
        _ => format!(
            "/1.0/channel/{channel}/thread/{}/sender-action",
            encode(&c.thread_id)
        ),
    };
    let scopes = [channel.clone()];
    let f = &mut st.faults;
    let (dup_ratio, reorder_ratio) = (
        f.settings.webhook_duplicate_ratio,
        f.settings.webhook_reorder_ratio,
    );
    let delivery = Delivery {
        channel_id: channel,
        contact_id: contact_id.to_string(),
        kind,
        path,
        body,
        expected_id,
        duplicate: f.take_count(&scopes, |s| &mut s.webhook_duplicate_next) || f.roll(dup_ratio),
        hold: f.take_count(&scopes, |s| &mut s.webhook_out_of_order_next) || f.roll(reorder_ratio),
        bad_token: f.take_count(&scopes, |s| &mut s.webhook_bad_signature_next),
        no_token: f.take_count(&scopes, |s| &mut s.webhook_missing_signature_next),
    };
    let c = st.contacts.get_mut(contact_id).expect("contact just found");
    let delivery = match &c.queue {
        Some(tx) => match tx.send(delivery) {
            Ok(()) => return,
            Err(mpsc::error::SendError(d)) => d,
        },
        None => delivery,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(delivery).expect("receiver alive");
    c.queue = Some(tx);
    tokio::spawn(run_queue(sim.clone(), rx));
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn run_queue(sim: Arc<Nice>, mut rx: UnboundedReceiver<Delivery>) {
    let mut held: Option<Delivery> = None;
    loop {
        let next = if held.is_some() {
            match tokio::time::timeout(MAX_HOLD, rx.recv()).await {
                Ok(n) => n,
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

async fn deliver(sim: &Arc<Nice>, d: &Delivery) {
    send(sim, d, false).await;
    if d.duplicate {
        send(sim, d, true).await;
    }
}

/// The relay's token (cached), fetched with the BYOC client credentials.
async fn relay_token(sim: &Arc<Nice>, channel: &str) -> Result<String, String> {
    let (url, form) = {
        let st = sim.lock();
        let t = st.tenants.get(channel).ok_or("channel gone")?;
        if let Some((token, until)) = &t.relay_token {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let path = match t.callback_style {
            CallbackStyle::Byoc => "/1.0/token",
            CallbackStyle::Alt => "/oauth/token",
        };
        (
            format!("{}{path}", t.callback_base_url),
            vec![
                ("grant_type", "client_credentials".to_string()),
                ("client_id", t.byoc_client_id.clone()),
                ("client_secret", t.byoc_client_secret.clone()),
            ],
        )
    };
    let resp = sim
        .http
        .post(&url)
        .timeout(CALL_TIMEOUT)
        .form(&form)
        .send()
        .await
        .map_err(|e| format!("token call failed: {e}"))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let token = body["access_token"]
        .as_str()
        .filter(|_| status == 200)
        .ok_or(format!("token call answered {status}"))?
        .to_string();
    let secs = body["expires_in"].as_u64().unwrap_or(30);
    let mut st = sim.lock();
    st.stats
        .bump(Some(channel), |s| &mut s.relay_tokens_fetched);
    if let Some(t) = st.tenants.get_mut(channel) {
        // Refresh a little early, as a careful client would.
        let life = Duration::from_secs(secs).saturating_sub(Duration::from_secs(5));
        t.relay_token = Some((token.clone(), Instant::now() + life));
    }
    Ok(token)
}

fn forget_token(sim: &Arc<Nice>, channel: &str) {
    if let Some(t) = sim.lock().tenants.get_mut(channel) {
        t.relay_token = None;
    }
}

/// One callback with CXone's retry behaviour; records every attempt.
async fn send(sim: &Arc<Nice>, d: &Delivery, duplicate: bool) {
    let Some(base) = sim
        .lock()
        .tenants
        .get(&d.channel_id)
        .map(|t| t.callback_base_url.clone())
    else {
        return;
    };
    let url = format!("{base}{}", d.path);
    let mut refreshed = false;
    let mut failures = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let token = match relay_token(sim, &d.channel_id).await {
            Ok(t) => Some(t),
            Err(e) => {
                record(sim, d, attempt, 0, Some(e), duplicate, None);
                None
            }
        };
        let (status, error, answer) = match &token {
            None => (0, Some("no token".to_string()), Value::Null),
            Some(token) => {
                let mut req = sim.http.post(&url).timeout(CALL_TIMEOUT).json(&d.body);
                if !(d.no_token && attempt == 1) {
                    let bearer = if d.bad_token && attempt == 1 {
                        format!("stale-{token}")
                    } else {
                        token.clone()
                    };
                    req = req.bearer_auth(bearer);
                }
                match req.send().await {
                    Ok(resp) => {
                        let s = resp.status().as_u16();
                        (s, None, resp.json().await.unwrap_or(Value::Null))
                    }
                    Err(e) if e.is_timeout() => (0, Some("timeout".into()), Value::Null),
                    Err(e) => (0, Some(format!("connection error: {e}")), Value::Null),
                }
            }
        };
        if token.is_some() {
            record(sim, d, attempt, status, error, duplicate, Some(&answer));
        }
        if (200..300).contains(&status) {
            sim.lock()
                .stats
                .bump(Some(&d.channel_id), |s| &mut s.callback_deliveries);
            return;
        }
        if status == 401 && !refreshed {
            refreshed = true;
            forget_token(sim, &d.channel_id);
            continue;
        }
        let retryable = status == 0 || status == 429 || status >= 500;
        if !retryable || failures >= RETRIES {
            sim.lock()
                .stats
                .bump(Some(&d.channel_id), |s| &mut s.callback_failures);
            tracing::warn!(kind = d.kind, status, "nice callback given up");
            return;
        }
        failures += 1;
        sim.lock()
            .stats
            .bump(Some(&d.channel_id), |s| &mut s.callback_retries);
        tokio::time::sleep(RETRY_BASE * (1 << (failures - 1))).await;
    }
}

fn record(
    sim: &Arc<Nice>,
    d: &Delivery,
    attempt: u32,
    status: u16,
    error: Option<String>,
    duplicate: bool,
    answer: Option<&Value>,
) {
    let mut st = sim.lock();
    st.stats
        .bump(Some(&d.channel_id), |s| &mut s.callback_attempts);
    let relay_id = answer
        .and_then(|a| a["message"]["idOnExternalPlatform"].as_str())
        .map(str::to_string);
    if let Some(c) = st.contacts.get_mut(&d.contact_id) {
        c.deliveries.push(json!({
            "kind": d.kind, "path": d.path, "attempt": attempt, "status": status,
            "error": error, "duplicate": duplicate, "at": now_iso(),
            "expected_message_id": d.expected_id, "relay_message_id": relay_id,
        }));
    }
}
