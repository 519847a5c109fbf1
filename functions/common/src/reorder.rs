//! The agent-message reorder window (per tenant, `agent_reorder_window_ms`).
//!
//! Platforms give agent messages no sequence number, and deliver webhooks late
//! or out of order (a retry, a delivery that overtakes another). With a window
//! `W > 0`, an agent message that carries the platform's own time is not given
//! its `seq` at once: it waits in the session item ([`HeldEvent`]) until `W`
//! after it arrived, and leaves together with every held message the platform
//! sent before it, in the platform's time order. So a message that arrives up
//! to `W` late still reaches the widget before the ones sent after it.
//!
//! A held message is released by whichever comes first: the next write to its
//! session (a webhook, a customer message, an end), or the notification
//! poller, which looks for due holds every [`RELEASE_TICK`]. An agent leaving
//! and every end releases all held messages first, so none is lost and none
//! comes after `SESSION_END`. A message that implies a join or a transfer
//! releases what was held before it, its join goes out at once, and the
//! message itself is held behind it (the agent's first message overtaken by
//! the second still reaches the widget first). A dedupe key is stored when the
//! message is held, so a redelivery during the window is a duplicate as usual.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::store::NewEvent;

/// How often the notification poller releases due holds.
pub const RELEASE_TICK: Duration = Duration::from_millis(100);
/// Most messages held at once in one session; beyond it they are released
/// (keeps the session item and its transaction small).
pub const MAX_HELD: usize = 25;
/// Largest window a tenant may set.
pub const MAX_WINDOW_MS: u64 = 10_000;

/// An agent message waiting for its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldEvent {
    /// The platform's time of the message (ms since the epoch).
    pub sent_at_ms: i64,
    /// When the window of this message closes.
    pub release_at_ms: i64,
    pub event: NewEvent,
}

/// Splits `held` into what leaves now, in the platform's order, and what stays.
///
/// With `all`, everything leaves. Otherwise the messages whose window has
/// closed leave, together with every message sent before the latest of them
/// (it is known to belong before).
pub fn release(held: &[HeldEvent], now_ms: i64, all: bool) -> (Vec<HeldEvent>, Vec<HeldEvent>) {
    let cutoff = if all {
        Some(i64::MAX)
    } else {
        held.iter()
            .filter(|h| h.release_at_ms <= now_ms)
            .map(|h| h.sent_at_ms)
            .max()
    };
    let Some(cutoff) = cutoff else {
        return (Vec::new(), held.to_vec());
    };
    let (mut out, keep): (Vec<_>, Vec<_>) =
        held.iter().cloned().partition(|h| h.sent_at_ms <= cutoff);
    // Stable: equal platform times keep their arrival order.
    out.sort_by_key(|h| h.sent_at_ms);
    (out, keep)
}

/// When the first of `held` is due, if any is held.
pub fn next_due(held: &[HeldEvent]) -> Option<i64> {
    held.iter().map(|h| h.release_at_ms).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ClientEventType;
    use serde_json::json;

    fn held(text: &str, sent: i64, release: i64) -> HeldEvent {
        HeldEvent {
            sent_at_ms: sent,
            release_at_ms: release,
            event: NewEvent::new(ClientEventType::LiveAgentMessage, json!({"text": text})),
        }
    }

    fn texts(h: &[HeldEvent]) -> Vec<&str> {
        h.iter()
            .map(|h| h.event.data["text"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn nothing_leaves_before_its_window_closes() {
        let h = [held("a", 10, 500), held("b", 20, 510)];
        let (out, keep) = release(&h, 499, false);
        assert!(out.is_empty());
        assert_eq!(keep, h);
        assert_eq!(next_due(&h), Some(500));
    }

    #[test]
    fn a_late_arrival_sent_earlier_leaves_first() {
        // "b" arrived first (window to 500); "a", sent before it, came 50 ms later.
        let h = [held("b", 20, 500), held("a", 10, 550), held("c", 30, 900)];
        let (out, keep) = release(&h, 500, false);
        assert_eq!(texts(&out), ["a", "b"]);
        assert_eq!(texts(&keep), ["c"]);
    }

    #[test]
    fn all_releases_everything_in_platform_order_and_ties_keep_arrival_order() {
        let h = [held("c", 30, 900), held("x", 10, 950), held("y", 10, 990)];
        let (out, keep) = release(&h, 0, true);
        assert_eq!(texts(&out), ["x", "y", "c"]);
        assert!(keep.is_empty());
        assert_eq!(next_due(&[]), None);
    }

    #[test]
    fn held_events_round_trip_as_json() {
        let h = vec![held("a", 1, 2)];
        let text = serde_json::to_string(&h).unwrap();
        let back: Vec<HeldEvent> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, h);
    }
}
