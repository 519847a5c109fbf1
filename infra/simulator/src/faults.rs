//! Fault knobs of a provider simulator.
//!
//! Three kinds of knob:
//! * [`Settings`]: global values (ratios rolled with a seeded RNG for soak tests,
//!   latency, timings);
//! * [`Scoped`]: deterministic one-shots and switches for unit-style tests. They
//!   live in a global bucket and, because tests run in parallel against
//!   different integrations, in one bucket per integration. A one-shot fires
//!   from the caller's integration bucket first, then from the global one;
//! * immediate actions (`expire_tokens_now`, `evict_channels_now`) carried by a
//!   [`FaultUpdate`] and executed by the provider module.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `api_fail_next`: answer the next `count` API calls with `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiFail {
    pub status: u16,
    pub count: u32,
}

/// Global knobs.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Seed of the RNG used by the `*_ratio` knobs; setting it restarts the sequence.
    pub seed: u64,
    pub api_429_ratio: f64,
    pub api_5xx_ratio: f64,
    /// Every Nth API call (counted over all callers) answers 429; 0 = off.
    pub api_429_every_nth: u64,
    pub webhook_duplicate_ratio: f64,
    pub webhook_reorder_ratio: f64,
    /// Added before every API answer.
    pub latency_ms: u64,
    /// `Retry-After` sent with injected 429s.
    pub retry_after_secs: u64,
    /// Interval of the notification WebSocket heartbeat (Genesys: ~30 s).
    pub heartbeat_secs: f64,
    /// Pause between webhook retries (Genesys: 5 s).
    pub webhook_retry_delay_ms: u64,
    /// How long a webhook call may take before it counts as failed (Genesys: 10 s).
    pub webhook_timeout_ms: u64,
    /// Delay between `v2.system.socket_closing` and the close (Genesys: ~1 min).
    pub socket_closing_grace_ms: u64,
    /// Lifetime of a notification channel (Genesys: 24 h).
    pub channel_ttl_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            seed: 0,
            api_429_ratio: 0.0,
            api_5xx_ratio: 0.0,
            api_429_every_nth: 0,
            webhook_duplicate_ratio: 0.0,
            webhook_reorder_ratio: 0.0,
            latency_ms: 0,
            retry_after_secs: 1,
            heartbeat_secs: 30.0,
            webhook_retry_delay_ms: 5_000,
            webhook_timeout_ms: 10_000,
            socket_closing_grace_ms: 60_000,
            channel_ttl_secs: 24 * 3600,
        }
    }
}

/// One-shots and switches, global or per integration.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scoped {
    pub api_fail_next: Option<ApiFail>,
    /// Every API call answers 429 until then (set with `api_429_for_secs`).
    #[serde(skip)]
    pub api_429_until: Option<Instant>,
    /// The platform is down until then: every API call answers 503 and does
    /// nothing (set with `api_down_for_secs`).
    #[serde(skip)]
    pub api_down_until: Option<Instant>,
    pub webhook_duplicate_next: u32,
    pub webhook_out_of_order_next: u32,
    pub webhook_bad_signature_next: u32,
    pub webhook_missing_signature_next: u32,
    pub lose_next_notification: u32,
    /// Pending until a socket in scope is connected, then fires once.
    pub ws_drop_next: bool,
    /// Pending until a socket in scope is connected, then fires once.
    pub ws_socket_closing_next: bool,
    /// While set, sockets in scope send nothing (no heartbeat, pong or event).
    pub ws_silent: bool,
}

/// Body of `POST /sim/{provider}/faults`: every field optional, merged into the knobs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultUpdate {
    /// Scope the one-shots and switches to this integration.
    pub integration_id: Option<String>,
    /// Restore defaults first (of the scope's bucket, or of everything when unscoped).
    pub reset: Option<bool>,
    pub seed: Option<u64>,
    pub api_429_ratio: Option<f64>,
    pub api_5xx_ratio: Option<f64>,
    pub api_429_every_nth: Option<u64>,
    pub webhook_duplicate_ratio: Option<f64>,
    pub webhook_reorder_ratio: Option<f64>,
    pub latency_ms: Option<u64>,
    pub retry_after_secs: Option<u64>,
    pub heartbeat_secs: Option<f64>,
    pub webhook_retry_delay_ms: Option<u64>,
    pub webhook_timeout_ms: Option<u64>,
    pub socket_closing_grace_ms: Option<u64>,
    pub channel_ttl_secs: Option<u64>,
    pub api_fail_next: Option<ApiFail>,
    /// Answer every API call in scope with 429 for this many seconds from now.
    pub api_429_for_secs: Option<f64>,
    /// Take the platform down for this many seconds from now (0 = back up).
    pub api_down_for_secs: Option<f64>,
    pub webhook_duplicate_next: Option<u32>,
    pub webhook_out_of_order_next: Option<u32>,
    pub webhook_bad_signature_next: Option<u32>,
    pub webhook_missing_signature_next: Option<u32>,
    pub lose_next_notification: Option<u32>,
    pub ws_drop_next: Option<bool>,
    pub ws_socket_closing_next: Option<bool>,
    pub ws_silent: Option<bool>,
    pub expire_tokens_now: Option<bool>,
    pub evict_channels_now: Option<bool>,
}

/// All knobs of one provider.
#[derive(Debug)]
pub struct Faults {
    pub settings: Settings,
    global: Scoped,
    by_integration: BTreeMap<String, Scoped>,
    rng: fastrand::Rng,
    /// API calls seen, for `api_429_every_nth`.
    api_calls: u64,
}

impl Default for Faults {
    fn default() -> Self {
        let settings = Settings::default();
        let rng = fastrand::Rng::with_seed(settings.seed);
        Self {
            settings,
            global: Scoped::default(),
            by_integration: BTreeMap::new(),
            rng,
            api_calls: 0,
        }
    }
}

fn check_ratio(name: &str, value: Option<f64>) -> Result<(), String> {
    match value {
        Some(r) if !(0.0..=1.0).contains(&r) => Err(format!("{name} must be between 0 and 1")),
        _ => Ok(()),
    }
}

impl Faults {
    /// Merges an update. Validation happens before anything changes.
    pub fn apply(&mut self, u: &FaultUpdate) -> Result<(), String> {
        check_ratio("api_429_ratio", u.api_429_ratio)?;
        check_ratio("api_5xx_ratio", u.api_5xx_ratio)?;
        check_ratio("webhook_duplicate_ratio", u.webhook_duplicate_ratio)?;
        check_ratio("webhook_reorder_ratio", u.webhook_reorder_ratio)?;
        if let Some(f) = &u.api_fail_next {
            if !(400..=599).contains(&f.status) {
                return Err("api_fail_next.status must be a 4xx or 5xx status".into());
            }
        }
        for (name, value) in [
            ("api_429_for_secs", u.api_429_for_secs),
            ("api_down_for_secs", u.api_down_for_secs),
        ] {
            if value.is_some_and(|t| !(t.is_finite() && t >= 0.0)) {
                return Err(format!("{name} must be a number of seconds"));
            }
        }
        if let Some(h) = u.heartbeat_secs {
            if !(h.is_finite() && h > 0.0) {
                return Err("heartbeat_secs must be a positive number".into());
            }
        }

        if u.reset == Some(true) {
            match &u.integration_id {
                Some(id) => {
                    self.by_integration.remove(id);
                }
                None => *self = Self::default(),
            }
        }

        let s = &mut self.settings;
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = u.$field { s.$field = v; } )* };
        }
        set!(
            api_429_ratio,
            api_5xx_ratio,
            api_429_every_nth,
            webhook_duplicate_ratio,
            webhook_reorder_ratio,
            latency_ms,
            retry_after_secs,
            heartbeat_secs,
            webhook_retry_delay_ms,
            webhook_timeout_ms,
            socket_closing_grace_ms,
            channel_ttl_secs
        );
        if let Some(seed) = u.seed {
            s.seed = seed;
            self.rng = fastrand::Rng::with_seed(seed);
        }

        let bucket = match &u.integration_id {
            Some(id) => self.by_integration.entry(id.clone()).or_default(),
            None => &mut self.global,
        };
        if let Some(f) = &u.api_fail_next {
            bucket.api_fail_next = (f.count > 0).then(|| f.clone());
        }
        if let Some(t) = u.api_429_for_secs {
            bucket.api_429_until = (t > 0.0).then(|| Instant::now() + Duration::from_secs_f64(t));
        }
        if let Some(t) = u.api_down_for_secs {
            bucket.api_down_until = (t > 0.0).then(|| Instant::now() + Duration::from_secs_f64(t));
        }
        macro_rules! set_scoped {
            ($($field:ident),*) => { $( if let Some(v) = u.$field { bucket.$field = v; } )* };
        }
        set_scoped!(
            webhook_duplicate_next,
            webhook_out_of_order_next,
            webhook_bad_signature_next,
            webhook_missing_signature_next,
            lose_next_notification,
            ws_drop_next,
            ws_socket_closing_next,
            ws_silent
        );
        Ok(())
    }

    /// Buckets a caller of these integrations draws from, most specific first.
    fn buckets<'a>(&'a mut self, scopes: &'a [String]) -> impl Iterator<Item = &'a mut Scoped> {
        self.by_integration
            .iter_mut()
            .filter(|(id, _)| scopes.contains(id))
            .map(|(_, b)| b)
            .chain(std::iter::once(&mut self.global))
    }

    /// Consumes one unit of a counting one-shot; true if it fired.
    pub fn take_count(&mut self, scopes: &[String], field: fn(&mut Scoped) -> &mut u32) -> bool {
        for bucket in self.buckets(scopes) {
            let n = field(bucket);
            if *n > 0 {
                *n -= 1;
                return true;
            }
        }
        false
    }

    /// Consumes a pending boolean one-shot; true if it fired.
    pub fn take_flag(&mut self, scopes: &[String], field: fn(&mut Scoped) -> &mut bool) -> bool {
        for bucket in self.buckets(scopes) {
            let flag = field(bucket);
            if *flag {
                *flag = false;
                return true;
            }
        }
        false
    }

    /// Whether a switch is on for any of these scopes (or globally).
    pub fn is_on(&self, scopes: &[String], field: fn(&Scoped) -> bool) -> bool {
        field(&self.global)
            || scopes
                .iter()
                .filter_map(|id| self.by_integration.get(id))
                .any(field)
    }

    /// The status an API call must fail with, if any: an outage window first
    /// (it consumes no one-shot), then `api_fail_next`, a 429 window,
    /// every-Nth, and the ratios. Every provider's API guard calls this
    /// before doing anything, so a failed call changes nothing.
    pub fn take_api_failure(&mut self, scopes: &[String]) -> Option<u16> {
        self.api_calls += 1;
        let now = Instant::now();
        for bucket in self.buckets(scopes) {
            match bucket.api_down_until {
                Some(until) if now < until => return Some(503),
                Some(_) => bucket.api_down_until = None,
                None => {}
            }
        }
        for bucket in self.buckets(scopes) {
            if let Some(fail) = &mut bucket.api_fail_next {
                let status = fail.status;
                fail.count -= 1;
                if fail.count == 0 {
                    bucket.api_fail_next = None;
                }
                return Some(status);
            }
        }
        for bucket in self.buckets(scopes) {
            match bucket.api_429_until {
                Some(until) if now < until => return Some(429),
                Some(_) => bucket.api_429_until = None,
                None => {}
            }
        }
        let nth = self.settings.api_429_every_nth;
        if nth > 0 && self.api_calls.is_multiple_of(nth) {
            return Some(429);
        }
        if self.roll(self.settings.api_429_ratio) {
            return Some(429);
        }
        if self.roll(self.settings.api_5xx_ratio) {
            return Some(503);
        }
        None
    }

    /// True with probability `ratio`, from the seeded RNG.
    pub fn roll(&mut self, ratio: f64) -> bool {
        ratio > 0.0 && self.rng.f64() < ratio
    }

    /// The knobs as JSON, in the shape `POST` accepts plus `integrations`.
    pub fn snapshot(&self) -> Value {
        let mut out = Map::new();
        if let Ok(Value::Object(m)) = serde_json::to_value(&self.settings) {
            out.extend(m);
        }
        out.extend(scoped_json(&self.global));
        let integrations: Map<String, Value> = self
            .by_integration
            .iter()
            .map(|(id, b)| (id.clone(), Value::Object(scoped_json(b))))
            .collect();
        out.insert("integrations".into(), Value::Object(integrations));
        Value::Object(out)
    }
}

/// A bucket as JSON, with the 429 and outage windows as the seconds left.
fn scoped_json(bucket: &Scoped) -> Map<String, Value> {
    let mut m = match serde_json::to_value(bucket) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let left = |until: Option<Instant>| {
        until
            .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64())
            .unwrap_or(0.0)
    };
    m.insert(
        "api_429_for_secs".into(),
        Value::from(left(bucket.api_429_until)),
    );
    m.insert(
        "api_down_for_secs".into(),
        Value::from(left(bucket.api_down_until)),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(json: &str) -> FaultUpdate {
        serde_json::from_str(json).expect("valid update")
    }

    fn scope(id: &str) -> Vec<String> {
        vec![id.to_string()]
    }

    #[test]
    fn api_fail_next_fires_exactly_count_times() {
        let mut f = Faults::default();
        f.apply(&update(r#"{"api_fail_next":{"status":503,"count":2}}"#))
            .unwrap();
        let got: Vec<_> = (0..4).map(|_| f.take_api_failure(&[])).collect();
        assert_eq!(got, vec![Some(503), Some(503), None, None]);
    }

    #[test]
    fn counting_one_shot_fires_exactly_n_times() {
        let mut f = Faults::default();
        f.apply(&update(r#"{"webhook_duplicate_next":3}"#)).unwrap();
        let fired = (0..10)
            .filter(|_| f.take_count(&[], |s| &mut s.webhook_duplicate_next))
            .count();
        assert_eq!(fired, 3);
    }

    #[test]
    fn scoped_one_shot_only_fires_for_its_integration() {
        let mut f = Faults::default();
        f.apply(&update(
            r#"{"integration_id":"a","api_fail_next":{"status":429,"count":1}}"#,
        ))
        .unwrap();
        assert_eq!(f.take_api_failure(&scope("b")), None);
        assert_eq!(f.take_api_failure(&[]), None);
        assert_eq!(f.take_api_failure(&scope("a")), Some(429));
        assert_eq!(f.take_api_failure(&scope("a")), None);
    }

    #[test]
    fn flag_one_shot_fires_once_and_switch_stays() {
        let mut f = Faults::default();
        f.apply(&update(
            r#"{"integration_id":"a","ws_drop_next":true,"ws_silent":true}"#,
        ))
        .unwrap();
        assert!(!f.take_flag(&scope("b"), |s| &mut s.ws_drop_next));
        assert!(f.take_flag(&scope("a"), |s| &mut s.ws_drop_next));
        assert!(!f.take_flag(&scope("a"), |s| &mut s.ws_drop_next));
        assert!(f.is_on(&scope("a"), |s| s.ws_silent));
        assert!(f.is_on(&scope("a"), |s| s.ws_silent));
        assert!(!f.is_on(&scope("b"), |s| s.ws_silent));
    }

    #[test]
    fn every_nth_and_window_answer_429() {
        let mut f = Faults::default();
        f.apply(&update(r#"{"api_429_every_nth":3}"#)).unwrap();
        let got: Vec<_> = (0..6).map(|_| f.take_api_failure(&[]).is_some()).collect();
        assert_eq!(got, vec![false, false, true, false, false, true]);

        let mut f = Faults::default();
        f.apply(&update(r#"{"integration_id":"a","api_429_for_secs":60}"#))
            .unwrap();
        assert_eq!(f.take_api_failure(&scope("a")), Some(429));
        assert_eq!(f.take_api_failure(&scope("a")), Some(429));
        assert_eq!(f.take_api_failure(&scope("b")), None);
        assert!(f.snapshot()["integrations"]["a"]["api_429_for_secs"].as_f64() > Some(59.0));
        f.apply(&update(r#"{"integration_id":"a","api_429_for_secs":0}"#))
            .unwrap();
        assert_eq!(f.take_api_failure(&scope("a")), None);
    }

    #[test]
    fn outage_window_answers_503_and_keeps_one_shots() {
        let mut f = Faults::default();
        f.apply(&update(
            r#"{"integration_id":"a","api_down_for_secs":60,"api_fail_next":{"status":429,"count":1}}"#,
        ))
        .unwrap();
        assert_eq!(f.take_api_failure(&scope("a")), Some(503));
        assert_eq!(f.take_api_failure(&scope("a")), Some(503));
        assert_eq!(
            f.take_api_failure(&scope("b")),
            None,
            "other integrations stay up"
        );
        assert!(f.snapshot()["integrations"]["a"]["api_down_for_secs"].as_f64() > Some(59.0));
        f.apply(&update(r#"{"integration_id":"a","api_down_for_secs":0}"#))
            .unwrap();
        assert_eq!(
            f.take_api_failure(&scope("a")),
            Some(429),
            "one-shot kept for after"
        );
        assert_eq!(f.take_api_failure(&scope("a")), None);
        assert!(f.apply(&update(r#"{"api_down_for_secs":-1}"#)).is_err());
    }

    #[test]
    fn same_seed_gives_same_sequence() {
        let run = || {
            let mut f = Faults::default();
            f.apply(&update(r#"{"seed":42,"api_429_ratio":0.5}"#))
                .unwrap();
            (0..64)
                .map(|_| f.take_api_failure(&[]).is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.contains(&true) && a.contains(&false));
    }

    #[test]
    fn invalid_values_change_nothing() {
        let mut f = Faults::default();
        assert!(f
            .apply(&update(r#"{"api_429_ratio":1.5,"latency_ms":9}"#))
            .is_err());
        assert_eq!(f.settings.latency_ms, 0);
        assert!(serde_json::from_str::<FaultUpdate>(r#"{"no_such_knob":1}"#).is_err());
    }
}
