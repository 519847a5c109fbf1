//! Contact streaming (spec §4, §7): the simulator is also SNS. Topics get
//! Lambda subscriptions (`POST /sim/connect/topics`); every chat item of a
//! streaming contact is published to its topics and delivered as a Lambda SNS
//! event (`Records[]`) to the subscription's invoke URL, per contact in order,
//! with SNS-like retries and the delivery fault knobs. Items also go to the
//! contact's subscribed WebSockets.

use super::contacts::Item;
use super::websocket::WsCommand;
use super::{now_iso, ApiError, Connect, SimState};
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{self, UnboundedReceiver};

/// SNS → Lambda: 3 immediate retries, then backoff (spec: "3 quick retries then backoff").
const IMMEDIATE_RETRIES: u32 = 3;
/// Retries after the immediate ones; real SNS keeps trying for days, the simulator stops here.
const BACKOFF_RETRIES: u32 = 12;
/// SNS caps the backoff at 20 s (with the default 1 s base).
const MAX_BACKOFF_FACTOR: u64 = 20;
/// A delivery held back by an out-of-order fault is released after the next
/// one, or after this long if nothing else comes.
const MAX_HOLD: Duration = Duration::from_secs(10);

/// An SNS topic with its Lambda subscriptions.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Topic {
    pub(super) topic_arn: String,
    pub(super) subscriptions: Vec<Subscription>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Subscription {
    pub(super) subscription_arn: String,
    pub(super) lambda_invoke_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicConfig {
    topic_arn: String,
    lambda_invoke_url: String,
}

/// `POST /sim/connect/topics`: registers a Lambda subscription (upsert by URL).
pub(super) async fn upsert_topic(
    State(sim): State<Arc<Connect>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let cfg: TopicConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_request(format!("Invalid topic config: {e}")))?;
    if !cfg.topic_arn.starts_with("arn:") || cfg.topic_arn.split(':').count() != 6 {
        return Err(ApiError::invalid_request(
            "topic_arn must look like arn:aws:sns:us-east-1:123456789012:name",
        ));
    }
    if reqwest::Url::parse(&cfg.lambda_invoke_url).is_err() {
        return Err(ApiError::invalid_request(
            "lambda_invoke_url is not a valid URL",
        ));
    }
    let mut st = sim.lock();
    let topic = st
        .topics
        .entry(cfg.topic_arn.clone())
        .or_insert_with(|| Topic {
            topic_arn: cfg.topic_arn.clone(),
            subscriptions: Vec::new(),
        });
    let subscription = match topic
        .subscriptions
        .iter()
        .find(|s| s.lambda_invoke_url == cfg.lambda_invoke_url)
    {
        Some(s) => s.clone(),
        None => {
            let s = Subscription {
                subscription_arn: format!("{}:{}", cfg.topic_arn, uuid::Uuid::new_v4()),
                lambda_invoke_url: cfg.lambda_invoke_url.clone(),
            };
            topic.subscriptions.push(s.clone());
            s
        }
    };
    tracing::info!(topic = %cfg.topic_arn, url = %cfg.lambda_invoke_url, "SNS Lambda subscription registered");
    Ok(Json(json!({
        "topic_arn": cfg.topic_arn,
        "subscription_arn": subscription.subscription_arn,
        "lambda_invoke_url": subscription.lambda_invoke_url,
    })))
}

pub(super) async fn list_topics(State(sim): State<Arc<Connect>>) -> Json<Value> {
    let st = sim.lock();
    Json(json!(st.topics.values().collect::<Vec<_>>()))
}

/// One SNS delivery attempt, in the conversation view.
#[derive(Debug, Clone, Serialize)]
pub(super) struct SnsAttempt {
    pub(super) item_id: String,
    pub(super) topic_arn: String,
    /// 1 for the first try, then 2.. for retries.
    pub(super) attempt: u32,
    /// HTTP status of the answer; 0 when there was none (timeout, connection error, fault).
    pub(super) status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    /// True for the extra copy sent by a duplicate fault.
    pub(super) duplicate: bool,
    pub(super) at: String,
}

/// One Lambda SNS event, ready to send.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    contact_id: String,
    instance_id: String,
    item_id: String,
    topic_arn: String,
    url: String,
    body: Bytes,
    /// Send a second, identical copy after this one.
    duplicate: bool,
    /// Deliver after the next one (out-of-order fault).
    hold: bool,
}

/// SNS `MessageAttributes` of an item (spec §7), all of `Type: String`.
pub(super) fn message_attributes(item: &Item, instance_id: &str, account_id: &str) -> Value {
    let mut attrs = Map::new();
    let mut put = |name: &str, value: &str| {
        attrs.insert(name.into(), json!({"Type": "String", "Value": value}));
    };
    put("InitialContactId", &item.initial_contact_id);
    put("ContactId", &item.contact_id);
    if let Some(role) = item.role() {
        put("ParticipantRole", role.as_str());
    }
    put("InstanceId", instance_id);
    put("AccountId", account_id);
    put("Type", item.kind.as_str());
    put("ContentType", &item.content_type);
    put("MessageVisibility", item.visibility());
    Value::Object(attrs)
}

/// The region of an ARN (`arn:aws:sns:{region}:…`).
fn region_of(arn: &str) -> &str {
    arn.split(':').nth(3).unwrap_or("us-east-1")
}

/// A Lambda event with one SNS `Notification` record.
pub(super) fn lambda_event(
    topic_arn: &str,
    subscription_arn: &str,
    message: &str,
    attributes: Value,
) -> Value {
    let message_id = uuid::Uuid::new_v4().to_string();
    let timestamp = now_iso();
    let region = region_of(topic_arn);
    // Not a real RSA signature: Lambda subscribers do not verify it [U].
    let signature = base64::engine::general_purpose::STANDARD.encode(
        Sha256::new()
            .chain_update(message_id.as_bytes())
            .chain_update(message.as_bytes())
            .chain_update(timestamp.as_bytes())
            .finalize(),
    );
    json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "Sns": {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": topic_arn,
            "Subject": null,
            "Message": message,
            "Timestamp": timestamp,
            "SignatureVersion": "1",
            "Signature": signature,
            "SigningCertUrl": format!("https://sns.{region}.amazonaws.com/SimpleNotificationService-provider-sim.pem"),
            "UnsubscribeUrl": format!("https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={subscription_arn}"),
            "MessageAttributes": attributes,
        },
    }]})
}

/// Sends items to every sink of the contact: its SNS topics and subscribed sockets.
pub(super) fn publish(sim: &Arc<Connect>, st: &mut SimState, cid: &str, items: Vec<Item>) {
    if items.is_empty() {
        return;
    }
    let Some(contact) = st.contacts.get(cid) else {
        return;
    };
    let instance_id = contact.instance_id.clone();
    let topics: Vec<String> = contact
        .streaming
        .iter()
        .map(|s| s.topic_arn.clone())
        .collect();
    let ended = contact.is_ended();
    let account_id = st
        .instances
        .get(&instance_id)
        .map(|i| i.account_id.clone())
        .unwrap_or_else(|| super::DEFAULT_ACCOUNT_ID.to_string());
    let scopes = [instance_id.clone()];

    for item in &items {
        let message = item.json().to_string();
        super::websocket::push_item(st, cid, &message);
        for arn in &topics {
            st.stats.bump(Some(&instance_id), |s| &mut s.sns_published);
            let subscriptions = st
                .topics
                .get(arn)
                .map(|t| t.subscriptions.clone())
                .unwrap_or_default();
            let lost = st
                .faults
                .take_count(&scopes, |s| &mut s.lose_next_notification);
            if lost || subscriptions.is_empty() {
                st.stats.bump(Some(&instance_id), |s| &mut s.sns_lost);
                let error = if lost {
                    "lost (fault)"
                } else {
                    "no subscription"
                };
                if let Some(c) = st.contacts.get_mut(cid) {
                    c.sns_attempts.push(SnsAttempt {
                        item_id: item.id.clone(),
                        topic_arn: arn.clone(),
                        attempt: 0,
                        status: 0,
                        error: Some(error.into()),
                        duplicate: false,
                        at: now_iso(),
                    });
                }
                continue;
            }
            let attributes = message_attributes(item, &instance_id, &account_id);
            for sub in subscriptions {
                let event = lambda_event(arn, &sub.subscription_arn, &message, attributes.clone());
                let faults = &mut st.faults;
                let duplicate_ratio = faults.settings.webhook_duplicate_ratio;
                let reorder_ratio = faults.settings.webhook_reorder_ratio;
                let duplicate = faults.take_count(&scopes, |s| &mut s.webhook_duplicate_next)
                    || faults.roll(duplicate_ratio);
                let hold = faults.take_count(&scopes, |s| &mut s.webhook_out_of_order_next)
                    || faults.roll(reorder_ratio);
                let delivery = Delivery {
                    contact_id: cid.to_string(),
                    instance_id: instance_id.clone(),
                    item_id: item.id.clone(),
                    topic_arn: arn.clone(),
                    url: sub.lambda_invoke_url.clone(),
                    body: Bytes::from(event.to_string()),
                    duplicate,
                    hold,
                };
                tracing::debug!(contact = cid, item = %item.id, content_type = %item.content_type, duplicate, hold, "SNS delivery queued");
                enqueue(sim, st, delivery);
            }
        }
    }
    if ended {
        // The chat ending stops streaming and closes the sockets (after chat.ended).
        if let Some(c) = st.contacts.get_mut(cid) {
            c.streaming.clear();
            for sink in c.ws_sinks.drain(..) {
                let _ = sink.tx.send(WsCommand::Close);
            }
        }
    }
}

/// Queues a delivery behind the contact's earlier ones.
fn enqueue(sim: &Arc<Connect>, st: &mut SimState, delivery: Delivery) {
    let Some(contact) = st.contacts.get_mut(&delivery.contact_id) else {
        return;
    };
    let delivery = match &contact.sns_queue {
        Some(tx) => match tx.send(delivery) {
            Ok(()) => return,
            Err(mpsc::error::SendError(d)) => d,
        },
        None => delivery,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(delivery).expect("receiver is alive");
    contact.sns_queue = Some(tx);
    tokio::spawn(run_queue(sim.clone(), rx));
}

/// Delivers one contact's items in order, honouring held deliveries.
async fn run_queue(sim: Arc<Connect>, mut rx: UnboundedReceiver<Delivery>) {
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

async fn deliver(sim: &Arc<Connect>, d: &Delivery) {
    send_with_retries(sim, d, false).await;
    if d.duplicate {
        send_with_retries(sim, d, true).await;
    }
}

/// Pause after failed attempt `attempt` (1-based), or None to give up:
/// three immediate retries, two at the base delay, then doubling up to 20×.
pub(super) fn retry_delay(attempt: u32, base_ms: u64) -> Option<Duration> {
    match attempt {
        a if a <= IMMEDIATE_RETRIES => Some(Duration::ZERO),
        a if a > IMMEDIATE_RETRIES + BACKOFF_RETRIES => None,
        a if a <= IMMEDIATE_RETRIES + 2 => Some(Duration::from_millis(base_ms)),
        a => {
            let factor = 1u64 << (a - IMMEDIATE_RETRIES - 2).min(16);
            Some(Duration::from_millis(
                base_ms.saturating_mul(factor.min(MAX_BACKOFF_FACTOR)),
            ))
        }
    }
}

/// A Lambda answer counts as failed when not 2xx or when its JSON body is a
/// function error (`{"errorType","errorMessage"}` or `{"error":…}`).
pub(super) fn is_failure(status: u16, body: &[u8]) -> bool {
    if !(200..300).contains(&status) {
        return true;
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.as_object()
                .map(|m| m.contains_key("error") || m.contains_key("errorType"))
        })
        .unwrap_or(false)
}

/// One delivery: first try plus the SNS retries.
async fn send_with_retries(sim: &Arc<Connect>, d: &Delivery, duplicate: bool) {
    let scopes = [d.instance_id.clone()];
    for attempt in 1.. {
        let (timeout, base_delay, injected) = {
            let mut st = sim.lock();
            (
                Duration::from_millis(st.faults.settings.webhook_timeout_ms),
                st.knobs.settings.sns_retry_delay_ms,
                st.knobs.take_sns_failure(&scopes),
            )
        };
        let (status, error) = if injected {
            (0, Some("injected failure (sns_fail_next)".to_string()))
        } else {
            let req = sim
                .http
                .post(&d.url)
                .timeout(timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(d.body.clone());
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await.unwrap_or_default();
                    let error = is_failure(status, &body).then(|| {
                        let text = String::from_utf8_lossy(&body);
                        format!(
                            "function error: {}",
                            text.chars().take(200).collect::<String>()
                        )
                    });
                    (status, error)
                }
                Err(e) if e.is_timeout() => (0, Some("timeout".to_string())),
                Err(e) => (0, Some(format!("connection error: {e}"))),
            }
        };
        let delivered = error.is_none();
        let next_delay = if delivered {
            None
        } else {
            retry_delay(attempt, base_delay)
        };
        {
            let mut st = sim.lock();
            let instance = Some(d.instance_id.as_str());
            st.stats.bump(instance, |s| &mut s.sns_attempts);
            if delivered {
                st.stats.bump(instance, |s| &mut s.sns_deliveries);
            } else if next_delay.is_none() {
                st.stats.bump(instance, |s| &mut s.sns_failures);
            } else {
                st.stats.bump(instance, |s| &mut s.sns_retries);
            }
            if let Some(c) = st.contacts.get_mut(&d.contact_id) {
                c.sns_attempts.push(SnsAttempt {
                    item_id: d.item_id.clone(),
                    topic_arn: d.topic_arn.clone(),
                    attempt,
                    status,
                    error: error.clone(),
                    duplicate,
                    at: now_iso(),
                });
            }
        }
        match next_delay {
            _ if delivered => {
                tracing::debug!(item = %d.item_id, attempt, status, "SNS delivered");
                return;
            }
            None => {
                tracing::warn!(item = %d.item_id, attempt, status, ?error, "SNS delivery given up");
                return;
            }
            Some(delay) => {
                tracing::info!(item = %d.item_id, attempt, status, ?error, "SNS delivery failed, will retry");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedule_is_three_immediate_then_backoff_then_gives_up() {
        let delays: Vec<Option<u64>> = (1..=17)
            .map(|a| retry_delay(a, 1000).map(|d| d.as_millis() as u64))
            .collect();
        assert_eq!(
            delays,
            [
                Some(0),
                Some(0),
                Some(0),
                Some(1000),
                Some(1000),
                Some(2000),
                Some(4000),
                Some(8000),
                Some(16000),
                Some(20000),
                Some(20000),
                Some(20000),
                Some(20000),
                Some(20000),
                Some(20000),
                None,
                None
            ]
        );
    }

    #[test]
    fn function_errors_count_as_failures() {
        assert!(!is_failure(200, b"null"));
        assert!(!is_failure(200, br#"{"statusCode":200}"#));
        assert!(!is_failure(202, b""));
        assert!(is_failure(
            200,
            br#"{"errorType":"Handler","errorMessage":"boom"}"#
        ));
        assert!(is_failure(200, br#"{"error":"boom"}"#));
        assert!(is_failure(503, b""));
        assert!(is_failure(404, br#"{"ok":true}"#));
    }
}
