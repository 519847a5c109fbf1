//! Fault knobs of the Connect simulator: the shared [`crate::faults`] knobs
//! that apply to Connect (SNS deliveries reuse the `webhook_*` names), plus
//! Connect-only settings and one-shots (`sns_*`, `message_status_next`, …).

use super::{participant, websocket, ApiError, Connect, SimState};
use crate::faults::FaultUpdate;
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Knobs of the shared [`FaultUpdate`] that mean something here; the others
/// (Genesys heartbeats, webhook signatures, channels…) are refused.
const SHARED_KNOBS: &[&str] = &[
    "integration_id",
    "reset",
    "seed",
    "api_429_ratio",
    "api_5xx_ratio",
    "api_429_every_nth",
    "webhook_duplicate_ratio",
    "webhook_reorder_ratio",
    "latency_ms",
    "webhook_timeout_ms",
    "api_fail_next",
    "api_429_for_secs",
    "api_down_for_secs",
    "webhook_duplicate_next",
    "webhook_out_of_order_next",
    "lose_next_notification",
    "ws_drop_next",
    "ws_silent",
    "expire_tokens_now",
];

/// Connect-only global knobs.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ConnectSettings {
    /// Base pause of the SNS retry backoff (the three immediate retries do not wait).
    pub(super) sns_retry_delay_ms: u64,
    /// Lifetime of a ConnectionToken (Connect: 1 day).
    pub(super) connection_token_ttl_secs: u64,
    /// A contact whose customer never connects ends after this long (Connect: 5 min).
    pub(super) customer_connect_timeout_secs: u64,
    /// Refuse real-API calls without a SigV4 `Authorization` header.
    pub(super) require_sigv4: bool,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        Self {
            sns_retry_delay_ms: 1_000,
            connection_token_ttl_secs: 24 * 3600,
            customer_connect_timeout_secs: 300,
            require_sigv4: true,
        }
    }
}

/// Connect-only one-shots, global or per instance.
#[derive(Debug, Clone, Default, Serialize)]
struct ConnectScoped {
    /// The next N SNS delivery attempts fail before reaching the subscriber (then retried).
    sns_fail_next: u32,
    /// MessageProcessingStatus of the next SendMessage calls, one per call.
    message_status_next: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct ConnectKnobs {
    pub(super) settings: ConnectSettings,
    global: ConnectScoped,
    by_instance: BTreeMap<String, ConnectScoped>,
}

impl ConnectKnobs {
    fn buckets<'a>(
        &'a mut self,
        scopes: &'a [String],
    ) -> impl Iterator<Item = &'a mut ConnectScoped> {
        self.by_instance
            .iter_mut()
            .filter(|(id, _)| scopes.contains(id))
            .map(|(_, b)| b)
            .chain(std::iter::once(&mut self.global))
    }

    pub(super) fn take_sns_failure(&mut self, scopes: &[String]) -> bool {
        self.buckets(scopes).any(|b| {
            if b.sns_fail_next > 0 {
                b.sns_fail_next -= 1;
                true
            } else {
                false
            }
        })
    }

    pub(super) fn take_message_status(&mut self, scopes: &[String]) -> Option<String> {
        self.buckets(scopes).find_map(|b| {
            (!b.message_status_next.is_empty()).then(|| b.message_status_next.remove(0))
        })
    }
}

/// `message_status_next`: `"FAILED"`, or `{"status":"REJECTED","count":2}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MessageStatusNext {
    One(String),
    Many { status: String, count: u32 },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectFaultUpdate {
    sns_retry_delay_ms: Option<u64>,
    connection_token_ttl_secs: Option<u64>,
    customer_connect_timeout_secs: Option<u64>,
    require_sigv4: Option<bool>,
    sns_fail_next: Option<u32>,
    message_status_next: Option<MessageStatusNext>,
}

const CONNECT_KNOBS: &[&str] = &[
    "sns_retry_delay_ms",
    "connection_token_ttl_secs",
    "customer_connect_timeout_secs",
    "require_sigv4",
    "sns_fail_next",
    "message_status_next",
];

/// Splits a faults body into the shared update and the Connect-only one.
/// `instance_id` is accepted as a synonym of `integration_id`.
fn split_fault_update(body: &[u8]) -> Result<(FaultUpdate, ConnectFaultUpdate), String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid faults: {e}"))?;
    let Value::Object(mut map) = value else {
        return Err("faults must be a JSON object".into());
    };
    if let Some(id) = map.remove("instance_id") {
        if map.insert("integration_id".into(), id).is_some() {
            return Err("give instance_id or integration_id, not both".into());
        }
    }
    let mut shared = Map::new();
    let mut own = Map::new();
    for (k, v) in map {
        if SHARED_KNOBS.contains(&k.as_str()) {
            shared.insert(k, v);
        } else if CONNECT_KNOBS.contains(&k.as_str()) {
            own.insert(k, v);
        } else {
            return Err(format!(
                "unknown fault knob {k} (or it does not apply to the Connect simulator)"
            ));
        }
    }
    let shared: FaultUpdate = serde_json::from_value(Value::Object(shared))
        .map_err(|e| format!("Invalid faults: {e}"))?;
    let own: ConnectFaultUpdate =
        serde_json::from_value(Value::Object(own)).map_err(|e| format!("Invalid faults: {e}"))?;
    Ok((shared, own))
}

impl ConnectKnobs {
    /// Applies the Connect-only part of an update (after the shared part was accepted).
    fn apply(&mut self, scope: Option<&str>, reset: bool, u: &ConnectFaultUpdate) {
        if reset {
            match scope {
                Some(id) => {
                    self.by_instance.remove(id);
                }
                None => *self = Self::default(),
            }
        }
        let s = &mut self.settings;
        if let Some(v) = u.sns_retry_delay_ms {
            s.sns_retry_delay_ms = v;
        }
        if let Some(v) = u.connection_token_ttl_secs {
            s.connection_token_ttl_secs = v;
        }
        if let Some(v) = u.customer_connect_timeout_secs {
            s.customer_connect_timeout_secs = v;
        }
        if let Some(v) = u.require_sigv4 {
            s.require_sigv4 = v;
        }
        let bucket = match scope {
            Some(id) => self.by_instance.entry(id.to_string()).or_default(),
            None => &mut self.global,
        };
        if let Some(n) = u.sns_fail_next {
            bucket.sns_fail_next = n;
        }
        match &u.message_status_next {
            Some(MessageStatusNext::One(status)) => {
                bucket.message_status_next = vec![status.clone()]
            }
            Some(MessageStatusNext::Many { status, count }) => {
                bucket.message_status_next = vec![status.clone(); *count as usize]
            }
            None => {}
        }
    }
}

fn check_connect_update(u: &ConnectFaultUpdate) -> Result<(), String> {
    let status = match &u.message_status_next {
        Some(MessageStatusNext::One(s)) | Some(MessageStatusNext::Many { status: s, .. }) => s,
        None => return Ok(()),
    };
    if participant::MESSAGE_STATUSES.contains(&status.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "message_status_next must be one of {:?}",
            participant::MESSAGE_STATUSES
        ))
    }
}

/// The knobs that apply here, in the shape `POST` accepts plus `integrations`.
fn faults_snapshot(st: &SimState) -> Value {
    let keep = |m: &mut Map<String, Value>| m.retain(|k, _| SHARED_KNOBS.contains(&k.as_str()));
    let mut out = match st.faults.snapshot() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut integrations = match out.remove("integrations") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    keep(&mut out);
    let to_map = |v: Value| match v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    out.extend(to_map(json!(st.knobs.settings)));
    out.extend(to_map(json!(st.knobs.global)));
    for bucket in integrations.values_mut() {
        if let Value::Object(m) = bucket {
            keep(m);
        }
    }
    for (id, bucket) in &st.knobs.by_instance {
        let entry = integrations.entry(id.clone()).or_insert_with(|| json!({}));
        if let Value::Object(m) = entry {
            m.extend(to_map(json!(bucket)));
        }
    }
    out.insert("integrations".into(), Value::Object(integrations));
    Value::Object(out)
}

pub(super) async fn get_faults(State(sim): State<Arc<Connect>>) -> Json<Value> {
    Json(faults_snapshot(&sim.lock()))
}

pub(super) async fn post_faults(
    State(sim): State<Arc<Connect>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (shared, own) = split_fault_update(&body).map_err(ApiError::invalid_request)?;
    check_connect_update(&own).map_err(ApiError::invalid_request)?;
    let mut st = sim.lock();
    st.faults
        .apply(&shared)
        .map_err(ApiError::invalid_request)?;
    let scope = shared.integration_id.clone();
    st.knobs
        .apply(scope.as_deref(), shared.reset == Some(true), &own);
    if shared.expire_tokens_now == Some(true) {
        let n = participant::expire_connection_tokens(&mut st, scope.as_deref());
        tracing::info!(
            ?scope,
            expired = n,
            "connection tokens expired by fault knob"
        );
    }
    websocket::fire_pending_socket_faults(&mut st);
    tracing::info!(?scope, "faults updated");
    Ok(Json(faults_snapshot(&st)))
}
