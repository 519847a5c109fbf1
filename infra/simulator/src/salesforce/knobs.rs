//! Salesforce-only knobs beside the shared [`Faults`] of `crate::faults`.
//!
//! `POST /sim/salesforce/faults` takes one body: the names below are handled
//! here, the rest goes to the shared knobs. On the SSE stream the shared
//! delivery knobs mean: `webhook_duplicate_next` = a frame written twice
//! (same `id`), `webhook_out_of_order_next` = a frame held back behind the
//! next one, `lose_next_notification` = a frame never written (only list
//! entries shows it). Shared knobs with no meaning here (WebSocket, webhook
//! signatures, Genesys timing) are refused. One-shots can be scoped with
//! `"integration_id"`.

use super::{ApiError, Salesforce};
use crate::faults::FaultUpdate;
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

const OWN: [&str; 7] = [
    "sse_drop_next",
    "sse_silent",
    "sse_ping_secs",
    "sse_buffer_size",
    "routing_failure_next",
    "message_417_next",
    "duplicate_message_409",
];

const NOT_FOR_SALESFORCE: [&str; 10] = [
    "heartbeat_secs",
    "webhook_retry_delay_ms",
    "webhook_timeout_ms",
    "socket_closing_grace_ms",
    "channel_ttl_secs",
    "ws_drop_next",
    "ws_socket_closing_next",
    "ws_silent",
    "evict_channels_now",
    "webhook_bad_signature_next",
];

const HIDDEN: [&str; 9] = [
    "heartbeat_secs",
    "webhook_retry_delay_ms",
    "webhook_timeout_ms",
    "socket_closing_grace_ms",
    "channel_ttl_secs",
    "ws_drop_next",
    "ws_socket_closing_next",
    "ws_silent",
    "webhook_bad_signature_next",
];

/// Global settings.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Settings {
    /// Keep-alive `ping` interval (MIAW ~30 s [U]).
    pub sse_ping_secs: f64,
    /// Events kept per subject for `Last-Event-Id` replay.
    pub sse_buffer_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sse_ping_secs: 30.0,
            sse_buffer_size: super::DEFAULT_SSE_BUFFER,
        }
    }
}

/// One-shots and switches, global or per integration.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Scoped {
    /// The next N frames about to be written end the stream instead (not written).
    pub sse_drop_next: u32,
    /// Streams send nothing, not even pings.
    pub sse_silent: bool,
    /// The next N conversations fail routing (`failureType: RoutingError`).
    pub routing_failure_next: u32,
    /// The next N messages answer 417.
    pub message_417_next: u32,
    /// A repeated `message.id` answers 409 instead of being accepted once.
    pub duplicate_message_409: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnobUpdate {
    sse_drop_next: Option<u32>,
    sse_silent: Option<bool>,
    sse_ping_secs: Option<f64>,
    sse_buffer_size: Option<usize>,
    routing_failure_next: Option<u32>,
    message_417_next: Option<u32>,
    duplicate_message_409: Option<bool>,
}

#[derive(Debug, Default)]
pub(super) struct Knobs {
    pub settings: Settings,
    global: Scoped,
    by_integration: BTreeMap<String, Scoped>,
}

impl Knobs {
    fn buckets<'a>(&'a mut self, id: &'a str) -> impl Iterator<Item = &'a mut Scoped> {
        self.by_integration
            .iter_mut()
            .filter(move |(k, _)| k.as_str() == id)
            .map(|(_, b)| b)
            .chain(std::iter::once(&mut self.global))
    }

    fn take(&mut self, id: &str, field: fn(&mut Scoped) -> &mut u32) -> bool {
        for b in self.buckets(id) {
            let n = field(b);
            if *n > 0 {
                *n -= 1;
                return true;
            }
        }
        false
    }

    pub fn take_sse_drop(&mut self, id: &str) -> bool {
        self.take(id, |s| &mut s.sse_drop_next)
    }
    pub fn take_routing_failure(&mut self, id: &str) -> bool {
        self.take(id, |s| &mut s.routing_failure_next)
    }
    pub fn take_message_417(&mut self, id: &str) -> bool {
        self.take(id, |s| &mut s.message_417_next)
    }
    pub fn sse_silent(&self, id: &str) -> bool {
        self.global.sse_silent || self.by_integration.get(id).is_some_and(|b| b.sse_silent)
    }
    pub fn duplicate_message_409(&self, id: &str) -> bool {
        self.global.duplicate_message_409
            || self
                .by_integration
                .get(id)
                .is_some_and(|b| b.duplicate_message_409)
    }

    fn apply(&mut self, scope: Option<&str>, reset: bool, u: &KnobUpdate) -> Result<(), ApiError> {
        if let Some(p) = u.sse_ping_secs {
            if !(p.is_finite() && p > 0.0) {
                return Err(ApiError::bad_request("sse_ping_secs must be positive"));
            }
        }
        if u.sse_buffer_size == Some(0) {
            return Err(ApiError::bad_request("sse_buffer_size must be at least 1"));
        }
        if reset {
            match scope {
                Some(id) => {
                    self.by_integration.remove(id);
                }
                None => *self = Self::default(),
            }
        }
        if let Some(p) = u.sse_ping_secs {
            self.settings.sse_ping_secs = p;
        }
        if let Some(b) = u.sse_buffer_size {
            self.settings.sse_buffer_size = b;
        }
        let bucket = match scope {
            Some(id) => self.by_integration.entry(id.to_owned()).or_default(),
            None => &mut self.global,
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = u.$f { bucket.$f = v; } )* };
        }
        set!(
            sse_drop_next,
            sse_silent,
            routing_failure_next,
            message_417_next,
            duplicate_message_409
        );
        Ok(())
    }

    fn snapshot(&self) -> Map<String, Value> {
        let mut m = match serde_json::to_value(&self.settings) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        if let Ok(Value::Object(g)) = serde_json::to_value(&self.global) {
            m.extend(g);
        }
        m
    }

    fn scoped_snapshot(&self, id: &str) -> Map<String, Value> {
        match self.by_integration.get(id).map(serde_json::to_value) {
            Some(Ok(Value::Object(m))) => m,
            _ => Map::new(),
        }
    }
}

fn snapshot(sim: &Salesforce) -> Value {
    let st = sim.lock();
    let mut shared = st.faults.snapshot();
    if let Value::Object(m) = &mut shared {
        for h in HIDDEN {
            m.remove(h);
        }
        m.extend(st.knobs.snapshot());
        if let Some(Value::Object(ints)) = m.get_mut("integrations") {
            for (id, v) in ints.iter_mut() {
                if let Value::Object(b) = v {
                    for h in HIDDEN {
                        b.remove(h);
                    }
                    b.extend(st.knobs.scoped_snapshot(id));
                }
            }
        }
    }
    shared
}

pub(super) async fn get_faults(State(sim): State<Arc<Salesforce>>) -> Json<Value> {
    Json(snapshot(&sim))
}

pub(super) async fn post_faults(
    State(sim): State<Arc<Salesforce>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Value::Object(mut all) = serde_json::from_slice::<Value>(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid faults: {e}")))?
    else {
        return Err(ApiError::bad_request("faults must be a JSON object"));
    };
    if let Some(bad) = NOT_FOR_SALESFORCE.iter().find(|k| all.contains_key(**k)) {
        return Err(ApiError::bad_request(format!(
            "{bad} has no meaning for the Salesforce simulator"
        )));
    }
    let mut own = Map::new();
    for k in OWN {
        if let Some(v) = all.remove(k) {
            own.insert(k.to_owned(), v);
        }
    }
    let own: KnobUpdate = serde_json::from_value(Value::Object(own))
        .map_err(|e| ApiError::bad_request(format!("Invalid faults: {e}")))?;
    let shared: FaultUpdate = serde_json::from_value(Value::Object(all))
        .map_err(|e| ApiError::bad_request(format!("Invalid faults: {e}")))?;
    {
        let mut st = sim.lock();
        let scope = shared.integration_id.clone();
        // Validate both before changing either.
        let mut probe = Knobs {
            settings: st.knobs.settings.clone(),
            ..Default::default()
        };
        probe.apply(scope.as_deref(), false, &own)?;
        st.faults.apply(&shared).map_err(ApiError::bad_request)?;
        st.knobs
            .apply(scope.as_deref(), shared.reset == Some(true), &own)?;
        if shared.expire_tokens_now == Some(true) {
            let now = super::now_ms();
            let mut n = 0;
            for i in st.integrations.values_mut() {
                if scope.as_deref().is_none_or(|s| s == i.id) {
                    i.revoked_before_ms = now + 1;
                    n += 1;
                }
            }
            tracing::info!(
                ?scope,
                integrations = n,
                "salesforce tokens expired by fault knob"
            );
        }
    }
    Ok(Json(snapshot(&sim)))
}
