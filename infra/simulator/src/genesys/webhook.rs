//! Outbound notification webhook (spec §6): normalized message bodies, the
//! `X-Hub-Signature-256` signature, and a per-conversation ordered delivery
//! queue with Genesys' retry policy and the webhook fault knobs.

use super::conversations::{Conversation, WebhookAttempt};
use super::{now_iso, ApiError, Genesys, SimState};
use axum::body::Bytes;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{self, UnboundedReceiver};

/// Header carrying the signature.
pub(super) const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
/// Genesys retries a failed webhook call up to 5 times.
const MAX_RETRIES: u32 = 5;
/// A message held back by an out-of-order fault is released after the next
/// delivery, or after this long if nothing else comes.
const MAX_HOLD: Duration = Duration::from_secs(10);

/// One webhook message, ready to send: the exact bytes and their signature.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    conversation_id: String,
    integration_id: String,
    message_id: String,
    url: String,
    body: Bytes,
    /// `None` when a fault removes the header.
    signature: Option<String>,
    headers: Vec<(String, String)>,
    /// Send a second, identical copy after this one.
    duplicate: bool,
    /// Deliver after the next message (out-of-order fault).
    hold: bool,
}

/// `sha256=<base64 HMAC-SHA256(secret, body)>`.
pub(super) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn channel(conv: &Conversation, message_id: &str, nickname: &str, time: &str) -> Value {
    json!({
        "id": conv.integration_id,
        "platform": "Open",
        "type": "Private",
        "messageId": message_id,
        "to": {"id": conv.customer_id, "idType": conv.customer_id_type},
        "from": {"id": conv.integration_id, "idType": "Opaque", "nickname": nickname},
        "metadata": {"subType": "None"},
        "time": time,
    })
}

/// An agent or bot `Text` message.
pub(super) fn text_body(
    conv: &Conversation,
    message_id: &str,
    text: &str,
    originating_entity: &str,
    nickname: &str,
    time: &str,
) -> Value {
    json!({
        "id": message_id,
        "type": "Text",
        "text": text,
        "direction": "Outbound",
        "originatingEntity": originating_entity,
        "conversationId": conv.id,
        "channel": channel(conv, message_id, nickname, time),
    })
}

/// An agent `Event` with one `Typing` event.
pub(super) fn typing_body(
    conv: &Conversation,
    message_id: &str,
    nickname: &str,
    duration_ms: u64,
    time: &str,
) -> Value {
    json!({
        "id": message_id,
        "type": "Event",
        "direction": "Outbound",
        "conversationId": conv.id,
        "channel": channel(conv, message_id, nickname, time),
        "events": [{"eventType": "Typing", "typing": {"type": "On", "duration": duration_ms}}],
    })
}

/// Signs `body`, applies the webhook faults and queues it behind the
/// conversation's earlier messages.
pub(super) fn enqueue(
    sim: &Arc<Genesys>,
    st: &mut SimState,
    cid: &str,
    message_id: &str,
    body: Value,
) -> Result<(), ApiError> {
    let integration_id = st
        .conversations
        .get(cid)
        .map(|c| c.integration_id.clone())
        .ok_or_else(|| ApiError::not_found(format!("Conversation {cid} not found")))?;
    let integration = st
        .integrations
        .get(&integration_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("Integration {integration_id} not found")))?;
    let scopes = [integration_id.clone()];
    let faults = &mut st.faults;
    let duplicate_ratio = faults.settings.webhook_duplicate_ratio;
    let reorder_ratio = faults.settings.webhook_reorder_ratio;
    let duplicate = faults.take_count(&scopes, |s| &mut s.webhook_duplicate_next)
        || faults.roll(duplicate_ratio);
    let hold = faults.take_count(&scopes, |s| &mut s.webhook_out_of_order_next)
        || faults.roll(reorder_ratio);
    let bad_signature = faults.take_count(&scopes, |s| &mut s.webhook_bad_signature_next);
    let missing_signature = faults.take_count(&scopes, |s| &mut s.webhook_missing_signature_next);

    let bytes = Bytes::from(serde_json::to_vec(&body).expect("JSON value serializes"));
    let signature = match (missing_signature, bad_signature) {
        (true, _) => None,
        (false, true) => Some(sign(
            &format!("wrong-{}", integration.webhook_secret),
            &bytes,
        )),
        (false, false) => Some(sign(&integration.webhook_secret, &bytes)),
    };
    let delivery = Delivery {
        conversation_id: cid.to_string(),
        integration_id,
        message_id: message_id.to_string(),
        url: integration.webhook_url.clone(),
        body: bytes,
        signature,
        headers: integration
            .webhook_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        duplicate,
        hold,
    };
    tracing::debug!(
        conversation = cid,
        message_id,
        duplicate,
        hold,
        bad_signature,
        missing_signature,
        "webhook queued"
    );

    let conv = st
        .conversations
        .get_mut(cid)
        .ok_or_else(|| ApiError::not_found(format!("Conversation {cid} not found")))?;
    let delivery = match &conv.webhook_queue {
        Some(tx) => match tx.send(delivery) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::SendError(d)) => d,
        },
        None => delivery,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(delivery).expect("receiver is alive");
    conv.webhook_queue = Some(tx);
    tokio::spawn(run_queue(sim.clone(), rx));
    Ok(())
}

/// Delivers one conversation's messages in order, honouring held messages.
async fn run_queue(sim: Arc<Genesys>, mut rx: UnboundedReceiver<Delivery>) {
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

async fn deliver(sim: &Arc<Genesys>, d: &Delivery) {
    send_with_retries(sim, d, false).await;
    if d.duplicate {
        send_with_retries(sim, d, true).await;
    }
}

/// One webhook message: first try plus up to [`MAX_RETRIES`] retries on
/// timeout, connection error, 429 or 5xx.
async fn send_with_retries(sim: &Arc<Genesys>, d: &Delivery, duplicate: bool) {
    for attempt in 1..=1 + MAX_RETRIES {
        let (timeout, retry_delay) = {
            let st = sim.lock();
            (
                Duration::from_millis(st.faults.settings.webhook_timeout_ms),
                Duration::from_millis(st.faults.settings.webhook_retry_delay_ms),
            )
        };
        let mut req = sim
            .http
            .post(&d.url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(d.body.clone());
        if let Some(sig) = &d.signature {
            req = req.header(SIGNATURE_HEADER, sig);
        }
        for (name, value) in &d.headers {
            req = req.header(name, value);
        }
        let (status, error) = match req.send().await {
            Ok(resp) => (resp.status().as_u16(), None),
            Err(e) if e.is_timeout() => (0, Some("timeout".to_string())),
            Err(e) => (0, Some(format!("connection error: {e}"))),
        };
        let delivered = (200..300).contains(&status);
        let retryable = status == 0 || status == 429 || status >= 500;
        let give_up = !delivered && (!retryable || attempt > MAX_RETRIES);
        {
            let mut st = sim.lock();
            let integration = Some(d.integration_id.as_str());
            st.stats.bump(integration, |s| &mut s.webhook_attempts);
            if delivered {
                st.stats.bump(integration, |s| &mut s.webhook_deliveries);
            } else if give_up {
                st.stats.bump(integration, |s| &mut s.webhook_failures);
            } else {
                st.stats.bump(integration, |s| &mut s.webhook_retries);
            }
            if let Some(conv) = st.conversations.get_mut(&d.conversation_id) {
                conv.webhook_attempts.push(WebhookAttempt {
                    message_id: d.message_id.clone(),
                    attempt,
                    status,
                    error: error.clone(),
                    duplicate,
                    at: now_iso(),
                });
            }
        }
        if delivered {
            tracing::debug!(message_id = %d.message_id, attempt, status, "webhook delivered");
            return;
        }
        if give_up {
            tracing::warn!(message_id = %d.message_id, attempt, status, ?error, "webhook given up");
            return;
        }
        tracing::info!(message_id = %d.message_id, attempt, status, ?error, "webhook failed, will retry");
        tokio::time::sleep(retry_delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HMAC-SHA256 written out from RFC 2104 on top of the plain hash, so the
    /// check does not reuse the code under test.
    fn reference_hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        const BLOCK: usize = 64;
        let mut k = [0u8; BLOCK];
        if key.len() > BLOCK {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize()
            .into()
    }

    #[test]
    fn signature_matches_independent_hmac_over_exact_bytes() {
        let secret = "a-webhook-secret-longer-than-15";
        let body = br#"{"id":"m1","type":"Text","text":"Hi \u00e9 \"quoted\""}"#;
        let expected = format!(
            "sha256={}",
            base64::engine::general_purpose::STANDARD
                .encode(reference_hmac_sha256(secret.as_bytes(), body))
        );
        assert_eq!(sign(secret, body), expected);
        // One changed byte changes the signature.
        let mut altered = body.to_vec();
        altered[2] = b'J';
        assert_ne!(sign(secret, &altered), expected);
    }

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2, base64 of the hex digest
        // 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }
}
