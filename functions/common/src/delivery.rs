//! Delivery of client events: each event is already in the session's log
//! (written by [`crate::store::Store::append`]); here it is POSTed, signed, to
//! the tenant's `events_url`. A failed push is retried with backoff in the
//! invocation, then left for the poller's sweep. Nothing is dropped.

use std::time::Duration;

use crate::domain::{SessionId, Tenant};
use crate::error::Result;
use crate::http::{self, RetryPolicy};
use crate::secrets::{RuntimeConfig, Secrets};
use crate::signature::{
    sign_client_event, CLIENT_EVENT_SIGNATURE_HEADER, CLIENT_EVENT_TIMESTAMP_HEADER,
};
use crate::store::{Store, StoredEvent};
use crate::time::now_ms;

/// In-invocation retries of one push.
const PUSH_POLICY: RetryPolicy = RetryPolicy {
    attempts: 3,
    min_delay: Duration::from_millis(50),
    max_delay: Duration::from_millis(500),
    max_retry_after: Duration::from_secs(1),
};
/// Longest wait before the sweep tries an event again.
const MAX_SWEEP_DELAY_MS: i64 = 5 * 60 * 1000;

/// Result of pushing a session's backlog.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushReport {
    pub pushed: usize,
    pub deferred: usize,
}

/// True when `appended` is the run of seqs right after `delivered_seq`.
fn follows(delivered_seq: u64, appended: &[StoredEvent]) -> bool {
    appended
        .iter()
        .zip(delivered_seq + 1..)
        .all(|(e, want)| e.event.seq == want)
        && !appended.is_empty()
}

/// Pushes client events to the agent runtime.
#[derive(Clone, Debug)]
pub struct EventPusher {
    http: reqwest::Client,
}

impl EventPusher {
    pub fn new(http: reqwest::Client) -> Self {
        Self { http }
    }

    /// POSTs one event body, signed. True when the runtime answered 2xx.
    pub async fn push(&self, runtime: &RuntimeConfig, event: &StoredEvent) -> bool {
        let body = event.body.as_bytes();
        let outcome = http::send("client event push", PUSH_POLICY, || {
            let ts = now_ms() / 1000;
            self.http
                .post(&runtime.events_url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(CLIENT_EVENT_TIMESTAMP_HEADER, ts.to_string())
                .header(
                    CLIENT_EVENT_SIGNATURE_HEADER,
                    sign_client_event(runtime.events_secret_bytes(), ts, body),
                )
                .body(event.body.clone())
        })
        .await;
        matches!(outcome, Ok(resp) if resp.status().is_success())
    }

    /// Pushes every not-yet-pushed event after `after_seq`, in `seq` order.
    /// Stops at the first failure, deferring it and the rest to the sweep, so
    /// the runtime sees events in order whenever it is reachable.
    pub async fn push_backlog(
        &self,
        store: &Store,
        secrets: &Secrets,
        tenant: &Tenant,
        session: &SessionId,
        after_seq: u64,
    ) -> Result<PushReport> {
        let backlog: Vec<StoredEvent> = store
            .events_after(tenant, session, after_seq)
            .await?
            .into_iter()
            .filter(|e| !e.pushed)
            .collect();
        self.push_events(store, secrets, tenant, session, &backlog)
            .await
    }

    /// Pushes events an invocation has just appended. When they directly follow
    /// `delivered_seq` nothing older can be waiting, so the log is not read
    /// again (one DynamoDB query less per relayed message); otherwise the
    /// whole backlog goes, in order.
    pub async fn push_appended(
        &self,
        store: &Store,
        secrets: &Secrets,
        tenant: &Tenant,
        session: &SessionId,
        delivered_seq: u64,
        appended: &[StoredEvent],
    ) -> Result<PushReport> {
        if follows(delivered_seq, appended) {
            self.push_events(store, secrets, tenant, session, appended)
                .await
        } else if appended.is_empty() {
            Ok(PushReport::default())
        } else {
            self.push_backlog(store, secrets, tenant, session, delivered_seq)
                .await
        }
    }

    /// Pushes `backlog` in order, stopping at the first failure.
    async fn push_events(
        &self,
        store: &Store,
        secrets: &Secrets,
        tenant: &Tenant,
        session: &SessionId,
        backlog: &[StoredEvent],
    ) -> Result<PushReport> {
        let mut report = PushReport::default();
        if backlog.is_empty() {
            return Ok(report);
        }
        let runtime = secrets.runtime(tenant).await?;
        let mut failed = false;
        for event in backlog {
            if !failed && self.push(&runtime, event).await {
                store.mark_pushed(tenant, session, event.event.seq).await?;
                report.pushed += 1;
                continue;
            }
            failed = true;
            let delay = (1000i64 << event.attempts.min(12)).min(MAX_SWEEP_DELAY_MS);
            store
                .defer_push(tenant, session, event.event.seq, now_ms() + delay)
                .await?;
            report.deferred += 1;
        }
        if report.deferred > 0 {
            crate::metrics::Record::new(
                crate::metrics::Metric::DeliveryRetry,
                report.deferred as f64,
            )
            .property("tenant", tenant.to_string())
            .property("session", session.as_str())
            .emit();
            tracing::warn!(
                tenant = %tenant,
                session = %session,
                deferred = report.deferred,
                "client event push failed; left for the sweep"
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ClientEvent, ClientEventType};

    fn stored(seq: u64) -> StoredEvent {
        StoredEvent {
            event: ClientEvent {
                session_id: "s".into(),
                seq,
                event_type: ClientEventType::LiveAgentMessage,
                at: String::new(),
                data: serde_json::Value::Null,
            },
            body: String::new(),
            pushed: false,
            attempts: 0,
        }
    }

    #[test]
    fn appended_events_skip_the_log_read_only_when_nothing_older_waits() {
        assert!(follows(3, &[stored(4)]));
        assert!(follows(3, &[stored(4), stored(5)]));
        // seq 4 is still unpushed (or being pushed by another invocation).
        assert!(!follows(3, &[stored(5)]));
        assert!(!follows(3, &[stored(4), stored(6)]));
        assert!(!follows(3, &[]));
    }
}
