//! Zendesk-only knobs, next to the shared [`Faults`] of `crate::faults`.
//!
//! `POST /sim/zendesk/faults` takes one body: the names below are handled
//! here, the rest goes to the shared knobs (same names as the Genesys
//! simulator). Knobs of the shared set that mean nothing here (WebSocket,
//! token and Genesys timing knobs) are refused. Like the shared one-shots,
//! every knob here can be scoped to one app with `"integration_id": "<app id>"`;
//! an app's value wins over the global one.

use crate::faults::{FaultUpdate, Faults};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Default pause before the first webhook retry; doubles for each next one.
const DEFAULT_RETRY_BASE_MS: u64 = 1_000;
/// Zendesk counts a webhook call unanswered after 20 s as failed (spec §6).
const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 20_000;
/// A conversation holds at most 30,000 messages, then 423 (spec §8).
const DEFAULT_LOCKED_AFTER: u64 = 30_000;

/// Names handled here.
const OWN: [&str; 8] = [
    "close_mode",
    "agent_typing_events",
    "webhook_retry_base_ms",
    "webhook_timeout_ms",
    "locked_after_messages",
    "deliver_standby_to_all",
    "webhook_batch_next",
    "webhook_drop_next",
];

/// Shared knobs without meaning for Zendesk.
const NOT_FOR_ZENDESK: [&str; 10] = [
    "heartbeat_secs",
    "webhook_retry_delay_ms",
    "socket_closing_grace_ms",
    "channel_ttl_secs",
    "lose_next_notification",
    "ws_drop_next",
    "ws_socket_closing_next",
    "ws_silent",
    "expire_tokens_now",
    "evict_channels_now",
];

/// Shared snapshot entries hidden from `GET /sim/zendesk/faults`.
const HIDDEN: [&str; 9] = [
    "heartbeat_secs",
    "webhook_retry_delay_ms",
    "webhook_timeout_ms",
    "socket_closing_grace_ms",
    "channel_ttl_secs",
    "lose_next_notification",
    "ws_drop_next",
    "ws_socket_closing_next",
    "ws_silent",
];

/// How the Agent Workspace hands a conversation back when the ticket closes (spec §7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum CloseMode {
    /// `switchboard:releaseControl` with `reason:"ticketClosed"`.
    #[default]
    Release,
    /// `switchboard:passControl` to the next integration with `reason:"ticketClosed"`.
    PassNext,
}

/// Zendesk settings; `None` = not set in this scope.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Options {
    #[serde(skip_serializing_if = "Option::is_none")]
    close_mode: Option<CloseMode>,
    /// Agent typing in the desktop emits business `conversation:typing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_typing_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_retry_base_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_timeout_ms: Option<u64>,
    /// Message count from which `POST …/messages` answers 423.
    #[serde(skip_serializing_if = "Option::is_none")]
    locked_after_messages: Option<u64>,
    /// Deliver to every subscribed integration, whatever its switchboard status.
    #[serde(skip_serializing_if = "Option::is_none")]
    deliver_standby_to_all: Option<bool>,
}

/// Counting one-shots.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Counters {
    /// The next N events (per conversation and webhook) travel in one POST.
    pub(super) webhook_batch_next: u32,
    /// The next N events are never sent.
    pub(super) webhook_drop_next: u32,
}

/// The part of a faults body handled here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KnobUpdate {
    close_mode: Option<CloseMode>,
    agent_typing_events: Option<bool>,
    webhook_retry_base_ms: Option<u64>,
    webhook_timeout_ms: Option<u64>,
    locked_after_messages: Option<u64>,
    deliver_standby_to_all: Option<bool>,
    webhook_batch_next: Option<u32>,
    webhook_drop_next: Option<u32>,
}

#[derive(Debug, Default)]
pub(super) struct Knobs {
    global: Options,
    global_counters: Counters,
    by_app: BTreeMap<String, (Options, Counters)>,
}

/// Splits a faults body into the shared update and ours; validates both.
pub(super) fn split(mut body: Map<String, Value>) -> Result<(FaultUpdate, KnobUpdate), String> {
    if let Some(name) = NOT_FOR_ZENDESK.iter().find(|n| body.contains_key(**n)) {
        return Err(format!("{name} is not a Zendesk simulator knob"));
    }
    let own: Map<String, Value> = OWN
        .iter()
        .filter_map(|name| body.remove(*name).map(|v| (name.to_string(), v)))
        .collect();
    let own: KnobUpdate =
        serde_json::from_value(Value::Object(own)).map_err(|e| format!("Invalid faults: {e}"))?;
    if own.webhook_timeout_ms == Some(0) {
        return Err("webhook_timeout_ms must be positive".into());
    }
    let shared: FaultUpdate =
        serde_json::from_value(Value::Object(body)).map_err(|e| format!("Invalid faults: {e}"))?;
    Ok((shared, own))
}

impl Knobs {
    /// Merges an update (already validated by [`split`]).
    pub(super) fn apply(&mut self, scope: Option<&str>, reset: bool, u: &KnobUpdate) {
        if reset {
            match scope {
                Some(app) => {
                    self.by_app.remove(app);
                }
                None => *self = Self::default(),
            }
        }
        let (options, counters) = match scope {
            Some(app) => {
                let (o, c) = self.by_app.entry(app.to_string()).or_default();
                (o, c)
            }
            None => (&mut self.global, &mut self.global_counters),
        };
        macro_rules! merge {
            ($($field:ident),*) => { $( if u.$field.is_some() { options.$field = u.$field; } )* };
        }
        merge!(
            close_mode,
            agent_typing_events,
            webhook_retry_base_ms,
            webhook_timeout_ms,
            locked_after_messages,
            deliver_standby_to_all
        );
        if let Some(n) = u.webhook_batch_next {
            counters.webhook_batch_next = n;
        }
        if let Some(n) = u.webhook_drop_next {
            counters.webhook_drop_next = n;
        }
    }

    fn pick<T: Copy>(&self, app: &str, field: fn(&Options) -> Option<T>) -> Option<T> {
        self.by_app
            .get(app)
            .and_then(|(o, _)| field(o))
            .or_else(|| field(&self.global))
    }

    pub(super) fn close_mode(&self, app: &str) -> CloseMode {
        self.pick(app, |o| o.close_mode).unwrap_or_default()
    }

    pub(super) fn agent_typing_events(&self, app: &str) -> bool {
        self.pick(app, |o| o.agent_typing_events).unwrap_or(false)
    }

    pub(super) fn webhook_retry_base_ms(&self, app: &str) -> u64 {
        self.pick(app, |o| o.webhook_retry_base_ms)
            .unwrap_or(DEFAULT_RETRY_BASE_MS)
    }

    pub(super) fn webhook_timeout_ms(&self, app: &str) -> u64 {
        self.pick(app, |o| o.webhook_timeout_ms)
            .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_MS)
    }

    pub(super) fn locked_after_messages(&self, app: &str) -> u64 {
        self.pick(app, |o| o.locked_after_messages)
            .unwrap_or(DEFAULT_LOCKED_AFTER)
    }

    pub(super) fn deliver_standby_to_all(&self, app: &str) -> bool {
        self.pick(app, |o| o.deliver_standby_to_all)
            .unwrap_or(false)
    }

    /// Consumes one unit of a counter, the app's bucket first; true if it fired.
    pub(super) fn take_one(&mut self, app: &str, field: fn(&mut Counters) -> &mut u32) -> bool {
        let buckets = self
            .by_app
            .get_mut(app)
            .map(|(_, c)| c)
            .into_iter()
            .chain(std::iter::once(&mut self.global_counters));
        for bucket in buckets {
            let n = field(bucket);
            if *n > 0 {
                *n -= 1;
                return true;
            }
        }
        false
    }

    /// Consumes a whole counter (the app's bucket first); 0 if none is set.
    pub(super) fn take_all(&mut self, app: &str, field: fn(&mut Counters) -> &mut u32) -> u32 {
        let buckets = self
            .by_app
            .get_mut(app)
            .map(|(_, c)| c)
            .into_iter()
            .chain(std::iter::once(&mut self.global_counters));
        for bucket in buckets {
            let n = std::mem::take(field(bucket));
            if n > 0 {
                return n;
            }
        }
        0
    }

    /// Effective global values.
    fn global_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "close_mode".into(),
            serde_json::to_value(self.global.close_mode.unwrap_or_default()).unwrap_or(Value::Null),
        );
        m.insert(
            "agent_typing_events".into(),
            Value::from(self.global.agent_typing_events.unwrap_or(false)),
        );
        m.insert(
            "webhook_retry_base_ms".into(),
            Value::from(
                self.global
                    .webhook_retry_base_ms
                    .unwrap_or(DEFAULT_RETRY_BASE_MS),
            ),
        );
        m.insert(
            "webhook_timeout_ms".into(),
            Value::from(
                self.global
                    .webhook_timeout_ms
                    .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_MS),
            ),
        );
        m.insert(
            "locked_after_messages".into(),
            Value::from(
                self.global
                    .locked_after_messages
                    .unwrap_or(DEFAULT_LOCKED_AFTER),
            ),
        );
        m.insert(
            "deliver_standby_to_all".into(),
            Value::from(self.global.deliver_standby_to_all.unwrap_or(false)),
        );
        if let Ok(Value::Object(c)) = serde_json::to_value(&self.global_counters) {
            m.extend(c);
        }
        m
    }
}

/// `GET /sim/zendesk/faults`: shared knobs that apply here plus ours.
pub(super) fn snapshot(faults: &Faults, knobs: &Knobs) -> Value {
    let mut out = match faults.snapshot() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut scoped = match out.remove("integrations") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for name in HIDDEN {
        out.remove(name);
    }
    out.extend(knobs.global_json());
    for bucket in scoped.values_mut() {
        if let Value::Object(b) = bucket {
            for name in HIDDEN {
                b.remove(name);
            }
        }
    }
    for (app, (options, counters)) in &knobs.by_app {
        let entry = scoped
            .entry(app.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(b) = entry {
            for part in [
                serde_json::to_value(options),
                serde_json::to_value(counters),
            ] {
                if let Ok(Value::Object(m)) = part {
                    b.extend(m);
                }
            }
        }
    }
    out.insert("integrations".into(), Value::Object(scoped));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn split_routes_names_and_refuses_foreign_knobs() {
        let (shared, own) = split(body(json!({
            "integration_id": "app1", "webhook_duplicate_next": 1,
            "webhook_batch_next": 3, "close_mode": "pass_next"
        })))
        .unwrap();
        assert_eq!(shared.integration_id.as_deref(), Some("app1"));
        assert_eq!(shared.webhook_duplicate_next, Some(1));
        assert_eq!(own.webhook_batch_next, Some(3));
        assert_eq!(own.close_mode, Some(CloseMode::PassNext));

        assert!(split(body(json!({"ws_silent": true}))).is_err());
        assert!(split(body(json!({"close_mode": "sometimes"}))).is_err());
        assert!(split(body(json!({"no_such_knob": 1}))).is_err());
    }

    #[test]
    fn app_value_wins_and_reset_of_scope_restores_global() {
        let mut k = Knobs::default();
        let (_, u) = split(body(json!({"locked_after_messages": 5}))).unwrap();
        k.apply(None, false, &u);
        let (_, u) = split(body(json!({"locked_after_messages": 2}))).unwrap();
        k.apply(Some("a"), false, &u);
        assert_eq!(k.locked_after_messages("a"), 2);
        assert_eq!(k.locked_after_messages("b"), 5);
        k.apply(Some("a"), true, &KnobUpdate::default());
        assert_eq!(k.locked_after_messages("a"), 5);
        k.apply(None, true, &KnobUpdate::default());
        assert_eq!(k.locked_after_messages("a"), DEFAULT_LOCKED_AFTER);
    }

    #[test]
    fn counters_fire_from_the_app_first_then_globally() {
        let mut k = Knobs::default();
        let (_, u) = split(body(json!({"webhook_drop_next": 1}))).unwrap();
        k.apply(Some("a"), false, &u);
        k.apply(None, false, &u);
        assert!(k.take_one("a", |c| &mut c.webhook_drop_next));
        assert!(k.take_one("b", |c| &mut c.webhook_drop_next));
        assert!(!k.take_one("a", |c| &mut c.webhook_drop_next));
        let (_, u) = split(body(json!({"webhook_batch_next": 3}))).unwrap();
        k.apply(Some("a"), false, &u);
        assert_eq!(k.take_all("a", |c| &mut c.webhook_batch_next), 3);
        assert_eq!(k.take_all("a", |c| &mut c.webhook_batch_next), 0);
    }
}
