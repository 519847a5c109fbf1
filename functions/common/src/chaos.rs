//! Crash injection for the soak test (`infra/soak.sh`). With
//! `CHAOS_EXIT_AFTER_LOG_RATIO` set to a ratio in (0, 1], an invocation is cut
//! short at the points where a crash costs most: after client events are in
//! the log but before they are pushed, and after a customer message is
//! claimed but before it is sent. The soak then proves that retries, leases
//! and the push sweep lose nothing. Unset (as deployed), it never fires.
//!
//! The cut is a panic, not `process::exit`: the Lambda runtime reports it as a
//! failed invocation and the task's in-memory state (e.g. events a notification
//! holder had read but not stored) is gone, as after a crash. A process exit
//! is not survivable under `cargo lambda watch`, which neither restarts the
//! instance nor answers the request it held, so the local stack would stall.

use std::sync::OnceLock;

pub const CHAOS_ENV: &str = "CHAOS_EXIT_AFTER_LOG_RATIO";

/// Where an invocation may be cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    AfterLogBeforePush,
    AfterClaimBeforeSend,
}

impl CrashPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AfterLogBeforePush => "after_log_before_push",
            Self::AfterClaimBeforeSend => "after_claim_before_send",
        }
    }
}

/// The configured ratio: 0 unless the variable holds a number above 0.
pub fn parse_ratio(value: Option<&str>) -> f64 {
    value
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|r| r.is_finite() && *r > 0.0)
        .map_or(0.0, |r| r.min(1.0))
}

fn ratio() -> f64 {
    static RATIO: OnceLock<f64> = OnceLock::new();
    *RATIO.get_or_init(|| parse_ratio(std::env::var(CHAOS_ENV).ok().as_deref()))
}

/// A uniform draw in [0, 1): the top 48 bits of a v4 UUID are all random
/// (its version and variant bits sit lower). Also the soak's callback faults.
pub fn draw() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 80) as f64 / (1u64 << 48) as f64
}

/// Cuts the invocation short at `point` with the configured probability.
pub fn maybe_crash(point: CrashPoint) {
    let r = ratio();
    if r > 0.0 && draw() < r {
        tracing::warn!(point = point.as_str(), "chaos: invocation cut short");
        panic!("chaos: invocation cut short at {}", point.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_positive_number_turns_it_on() {
        assert_eq!(parse_ratio(None), 0.0);
        assert_eq!(parse_ratio(Some("")), 0.0);
        assert_eq!(parse_ratio(Some("abc")), 0.0);
        assert_eq!(parse_ratio(Some("-0.5")), 0.0);
        assert_eq!(parse_ratio(Some("NaN")), 0.0);
        assert_eq!(parse_ratio(Some(" 0.05 ")), 0.05);
        assert_eq!(parse_ratio(Some("7")), 1.0);
    }

    #[test]
    fn draws_fall_in_the_unit_interval_and_spread() {
        let draws: Vec<f64> = (0..2000).map(|_| draw()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let low = draws.iter().filter(|d| **d < 0.5).count();
        assert!((800..1200).contains(&low), "{low} of 2000 below 0.5");
    }
}
