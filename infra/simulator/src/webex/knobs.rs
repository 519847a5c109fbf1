//! Webex-only knobs, next to the shared [`Faults`] (spec §7.8). Each is global
//! or scoped to one org with `"integration_id": "<org id>"`; an org's value
//! wins, and its one-shots fire before the global ones. Shared knobs without
//! meaning here (WebSocket and Genesys timing knobs) are refused.

use crate::faults::{FaultUpdate, Faults};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Access tokens live ~14 days (W3).
pub(super) const DEFAULT_TOKEN_EXPIRES_IN: u64 = 1_209_600;
/// Answer within 5 s or the delivery failed (W2).
pub(super) const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 5_000;

const OWN: [&str; 11] = [
    "rotate_refresh",
    "token_expires_in",
    "require_https",
    "inactive_after_failures",
    "webhook_timeout_ms",
    "task_failed_next",
    "accept_then_fail_next",
    "append_fail_next",
    "stale_timestamp_next",
    "drop_webhook_next",
    "rona_next",
];

const NOT_FOR_WEBEX: [&str; 9] = [
    "heartbeat_secs",
    "webhook_retry_delay_ms",
    "socket_closing_grace_ms",
    "channel_ttl_secs",
    "lose_next_notification",
    "ws_drop_next",
    "ws_socket_closing_next",
    "ws_silent",
    "evict_channels_now",
];

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

#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Options {
    /// Every refresh grant returns a new refresh token and revokes the old one.
    #[serde(skip_serializing_if = "Option::is_none")]
    rotate_refresh: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_expires_in: Option<u64>,
    /// Subscriptions must be HTTPS on 443 (W5); off so local URLs work.
    #[serde(skip_serializing_if = "Option::is_none")]
    require_https: Option<bool>,
    /// A subscription turns `inactive` after this many failed deliveries in a row (0 = never).
    #[serde(skip_serializing_if = "Option::is_none")]
    inactive_after_failures: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Counters {
    /// The next Create Task answers 201, then `task:failed` with this reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) task_failed_next: Option<String>,
    /// The next N Create Tasks: 201, then `task:failed` CONVERSATION_ALREADY_OPEN.
    pub(super) accept_then_fail_next: u32,
    /// The next N appends: accepted, then `task-message:append-failed` INVALID_CONTENT.
    pub(super) append_fail_next: u32,
    /// The next N deliveries carry a timestamp 10 minutes old (body and header, validly signed).
    pub(super) stale_timestamp_next: u32,
    /// The next N deliveries are never sent.
    pub(super) drop_webhook_next: u32,
    /// The next N accepts time out: `task:ended` RONA, then `task:parked` (re-queued).
    pub(super) rona_next: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KnobUpdate {
    rotate_refresh: Option<bool>,
    token_expires_in: Option<u64>,
    require_https: Option<bool>,
    inactive_after_failures: Option<u32>,
    webhook_timeout_ms: Option<u64>,
    task_failed_next: Option<String>,
    accept_then_fail_next: Option<u32>,
    append_fail_next: Option<u32>,
    stale_timestamp_next: Option<u32>,
    drop_webhook_next: Option<u32>,
    rona_next: Option<u32>,
}

#[derive(Debug, Default)]
pub(super) struct Knobs {
    global: (Options, Counters),
    by_org: BTreeMap<String, (Options, Counters)>,
}

/// Splits a faults body into the shared update and ours; validates both.
pub(super) fn split(mut body: Map<String, Value>) -> Result<(FaultUpdate, KnobUpdate), String> {
    if let Some(name) = NOT_FOR_WEBEX.iter().find(|n| body.contains_key(**n)) {
        return Err(format!("{name} is not a Webex simulator knob"));
    }
    let own: Map<String, Value> = OWN
        .iter()
        .filter_map(|name| body.remove(*name).map(|v| (name.to_string(), v)))
        .collect();
    let own: KnobUpdate =
        serde_json::from_value(Value::Object(own)).map_err(|e| format!("Invalid faults: {e}"))?;
    if own.webhook_timeout_ms == Some(0) || own.token_expires_in == Some(0) {
        return Err("webhook_timeout_ms and token_expires_in must be positive".into());
    }
    let shared: FaultUpdate =
        serde_json::from_value(Value::Object(body)).map_err(|e| format!("Invalid faults: {e}"))?;
    Ok((shared, own))
}

impl Knobs {
    pub(super) fn apply(&mut self, scope: Option<&str>, reset: bool, u: &KnobUpdate) {
        if reset {
            match scope {
                Some(org) => {
                    self.by_org.remove(org);
                }
                None => *self = Self::default(),
            }
        }
        let (o, c) = match scope {
            Some(org) => self.by_org.entry(org.to_string()).or_default(),
            None => &mut self.global,
        };
        macro_rules! merge {
            ($($f:ident),*) => { $( if u.$f.is_some() { o.$f = u.$f; } )* };
        }
        merge!(
            rotate_refresh,
            token_expires_in,
            require_https,
            inactive_after_failures,
            webhook_timeout_ms
        );
        if let Some(reason) = &u.task_failed_next {
            c.task_failed_next = (!reason.is_empty()).then(|| reason.clone());
        }
        macro_rules! count {
            ($($f:ident),*) => { $( if let Some(n) = u.$f { c.$f = n; } )* };
        }
        count!(
            accept_then_fail_next,
            append_fail_next,
            stale_timestamp_next,
            drop_webhook_next,
            rona_next
        );
    }

    fn pick<T: Copy>(&self, org: &str, f: fn(&Options) -> Option<T>) -> Option<T> {
        self.by_org
            .get(org)
            .and_then(|(o, _)| f(o))
            .or_else(|| f(&self.global.0))
    }

    pub(super) fn rotate_refresh(&self, org: &str) -> bool {
        self.pick(org, |o| o.rotate_refresh).unwrap_or(false)
    }

    pub(super) fn token_expires_in(&self, org: &str) -> u64 {
        self.pick(org, |o| o.token_expires_in)
            .unwrap_or(DEFAULT_TOKEN_EXPIRES_IN)
    }

    pub(super) fn require_https(&self, org: &str) -> bool {
        self.pick(org, |o| o.require_https).unwrap_or(false)
    }

    pub(super) fn inactive_after_failures(&self, org: &str) -> u32 {
        self.pick(org, |o| o.inactive_after_failures).unwrap_or(0)
    }

    pub(super) fn webhook_timeout_ms(&self, org: &str) -> u64 {
        self.pick(org, |o| o.webhook_timeout_ms)
            .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_MS)
    }

    fn buckets<'a>(&'a mut self, org: &str) -> impl Iterator<Item = &'a mut Counters> {
        self.by_org
            .get_mut(org)
            .map(|(_, c)| c)
            .into_iter()
            .chain(std::iter::once(&mut self.global.1))
    }

    /// Consumes one unit of a counter, the org's first; true if it fired.
    pub(super) fn take(&mut self, org: &str, f: fn(&mut Counters) -> &mut u32) -> bool {
        for c in self.buckets(org) {
            let n = f(c);
            if *n > 0 {
                *n -= 1;
                return true;
            }
        }
        false
    }

    pub(super) fn take_failed_reason(&mut self, org: &str) -> Option<String> {
        self.buckets(org).find_map(|c| c.task_failed_next.take())
    }
}

/// `GET /sim/webex/faults`: the shared knobs that apply here plus ours.
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
    let (o, c) = &knobs.global;
    out.insert(
        "rotate_refresh".into(),
        o.rotate_refresh.unwrap_or(false).into(),
    );
    out.insert(
        "token_expires_in".into(),
        o.token_expires_in
            .unwrap_or(DEFAULT_TOKEN_EXPIRES_IN)
            .into(),
    );
    out.insert(
        "require_https".into(),
        o.require_https.unwrap_or(false).into(),
    );
    out.insert(
        "inactive_after_failures".into(),
        o.inactive_after_failures.unwrap_or(0).into(),
    );
    out.insert(
        "webhook_timeout_ms".into(),
        o.webhook_timeout_ms
            .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_MS)
            .into(),
    );
    if let Ok(Value::Object(m)) = serde_json::to_value(c) {
        out.extend(m);
    }
    for bucket in scoped.values_mut() {
        if let Value::Object(b) = bucket {
            for name in HIDDEN {
                b.remove(name);
            }
        }
    }
    for (org, (o, c)) in &knobs.by_org {
        let entry = scoped
            .entry(org.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(b) = entry {
            for part in [serde_json::to_value(o), serde_json::to_value(c)] {
                if let Ok(Value::Object(m)) = part {
                    b.extend(m);
                }
            }
        }
    }
    out.insert("integrations".into(), Value::Object(scoped));
    Value::Object(out)
}
