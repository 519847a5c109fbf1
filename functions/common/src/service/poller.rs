//! notification-poller (scheduled): holds platform notification channels per
//! tenant, sweeps undelivered client events, drains outbound queues
//! ([`super::outbound::drain_due`]), retries handoffs the platform could not
//! open yet ([`super::start::retry_due`]), ends sessions past their age.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::domain::{IntegrationKey, Tenant};
use crate::error::Result;
use crate::events::EndedBy;
use crate::providers::{Provider, ProviderCtx};
use crate::store::{AppendOutcome, SessionChange, SessionRecord};
use crate::time::now_ms;

use super::inbound::{apply_event, end_change, end_event, release_due, Applied, EventRules};
use super::Deps;

/// Sessions pushed per sweep.
const SWEEP_BATCH: usize = 200;
/// Events buffered between a socket and the store.
const SINK_CAPACITY: usize = 1024;

/// Timing of one poller invocation.
#[derive(Debug, Clone, Copy)]
pub struct PollerTuning {
    /// How long this invocation holds notification channels.
    pub hold: Duration,
    /// How often the list of watched sessions and the push sweep are refreshed.
    pub refresh: Duration,
    /// How long held agent messages are released (at least `hold`): past
    /// the hold, so they need not wait for the next scheduled invocation.
    pub release: Duration,
}

impl PollerTuning {
    /// `POLLER_HOLD_SECONDS` (default 50), `POLLER_REFRESH_MS` (default 2000),
    /// `POLLER_RELEASE_SECONDS` (default: the hold).
    pub fn from_env() -> Self {
        let num = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let hold = num("POLLER_HOLD_SECONDS", 50);
        Self {
            hold: Duration::from_secs(hold),
            refresh: Duration::from_millis(num("POLLER_REFRESH_MS", 2000).max(100)),
            release: Duration::from_secs(num("POLLER_RELEASE_SECONDS", hold)),
        }
    }
}

/// What one invocation did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PollReport {
    pub pushed: usize,
    pub expired: usize,
    pub tenants_held: usize,
    pub events_applied: usize,
    /// Queued customer messages sent.
    pub queued_sent: usize,
    /// Pending handoffs opened or given up on.
    pub starts_settled: usize,
    /// Held agent messages released (client events appended).
    pub released: usize,
}

/// Pushes every session's due backlog once.
pub async fn sweep_pushes(deps: &Deps) -> Result<usize> {
    let due = deps
        .store
        .sessions_with_due_pushes(now_ms(), SWEEP_BATCH)
        .await?;
    let mut pushed = 0;
    for (tenant, session) in due {
        let Some(rec) = deps.store.get_session(&tenant, &session).await? else {
            continue;
        };
        match deps
            .pusher
            .push_backlog(
                &deps.store,
                &deps.secrets,
                &tenant,
                &session,
                rec.delivered_seq,
            )
            .await
        {
            Ok(r) => pushed += r.pushed,
            Err(e) => {
                tracing::warn!(tenant = %tenant, session = %session, error = %e, "sweep push failed")
            }
        }
    }
    Ok(pushed)
}

/// Releases every session's due held agent messages once.
pub async fn release_holds(deps: &Deps) -> Result<usize> {
    let due = deps
        .store
        .sessions_with_due_holds(now_ms(), SWEEP_BATCH)
        .await?;
    let mut released = 0;
    for (tenant, session) in due {
        match release_due(deps, &tenant, &session).await {
            Ok(n) => released += n,
            Err(e) => {
                tracing::warn!(tenant = %tenant, session = %session, error = %e, "releasing held messages failed")
            }
        }
    }
    Ok(released)
}

/// Releases due holds every [`crate::reorder::RELEASE_TICK`] until `deadline`.
async fn release_holds_until(deps: Arc<Deps>, deadline: Instant) -> usize {
    repeat_until(
        "release held messages",
        deadline,
        crate::reorder::RELEASE_TICK,
        move || {
            let deps = deps.clone();
            async move { release_holds(&deps).await }
        },
    )
    .await
}

/// Runs `round` every `tick` until `deadline`, each round as its own task: a
/// round that dies (a crash cut it short, a bug) is logged and the next one
/// goes on, so one bad session cannot stop the work for the whole invocation.
/// Returns the sum of what the rounds reported; `what` names them in the log.
async fn repeat_until<F, Fut>(what: &str, deadline: Instant, tick: Duration, round: F) -> usize
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<usize>> + Send + 'static,
{
    let mut total = 0;
    while Instant::now() < deadline {
        match tokio::spawn(round()).await {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => tracing::warn!(round = what, error = %e, "round failed"),
            Err(e) => tracing::warn!(round = what, error = %e, "round died; the next goes on"),
        }
        tokio::time::sleep(tick).await;
    }
    total
}

/// Ends open sessions older than their tenant's maximum age (`ended_by: timeout`).
pub async fn expire_sessions(deps: &Deps, key: IntegrationKey, live: &[SessionRecord]) -> usize {
    let mut expired = 0;
    for s in live {
        let Ok(runtime) = deps.secrets.runtime(&s.tenant).await else {
            continue;
        };
        let age_ms = now_ms() - s.created_at_ms;
        if age_ms < runtime.max_session_age_secs as i64 * 1000 {
            continue;
        }
        // Best effort on the platform; the session ends here regardless.
        if let (Ok(provider), Ok(creds)) = (
            deps.provider(key),
            deps.secrets.integration(&s.tenant, key).await,
        ) {
            let refreshed = Default::default();
            let ctx = ProviderCtx {
                tenant: &s.tenant,
                credentials: &creds,
                http: &deps.http,
                refreshed: &refreshed,
            };
            if let Err(e) = provider.end(&ctx, s).await {
                tracing::warn!(session = %s.session_id, error = %e, "platform close on timeout failed");
            }
        }
        let outcome = deps
            .store
            .append(&s.tenant, &s.session_id, None, |cur| {
                if cur.state.is_terminal() {
                    return Ok((vec![], SessionChange::default()));
                }
                Ok((
                    vec![end_event(EndedBy::Timeout)],
                    end_change(EndedBy::Timeout),
                ))
            })
            .await;
        if let Ok(AppendOutcome::Appended { session, events }) = outcome {
            if !events.is_empty() {
                expired += 1;
                tracing::info!(tenant = %s.tenant, session = %s.session_id, "session expired");
                deps.push_pending(&s.tenant, &s.session_id, session.delivered_seq)
                    .await;
            }
        }
    }
    expired
}

struct Held {
    sessions: watch::Sender<Vec<SessionRecord>>,
    task: tokio::task::AbortHandle,
    started: Instant,
}

/// A tenant's holder is started again no sooner than this after its last
/// start, so one that keeps failing (say, revoked credentials) does not call
/// the platform every refresh.
const RESTART_GAP: Duration = Duration::from_secs(5);

/// Forgets holders whose task has ended before the deadline (it died, or
/// idled out with nothing to watch) and that started at least [`RESTART_GAP`]
/// before `now`, so the next refresh starts a new one for the tenant, which
/// catches up from the platform as after any reconnect. Returns how many were
/// forgotten.
fn forget_ended<K: Eq + std::hash::Hash>(held: &mut HashMap<K, Held>, now: Instant) -> usize {
    let before = held.len();
    held.retain(|_, h| !h.task.is_finished() || now.duration_since(h.started) < RESTART_GAP);
    before - held.len()
}

/// One invocation: sweep, expire, retry starts, drain queues, then hold
/// channels until the deadline (repeating all but the holds every refresh).
#[tracing::instrument(name = "notification_poller", skip_all)]
pub async fn run(deps: Arc<Deps>, tuning: PollerTuning) -> Result<PollReport> {
    let deadline = Instant::now() + tuning.hold;
    let owner = uuid::Uuid::new_v4().to_string();
    let mut report = PollReport::default();
    let mut held: HashMap<(IntegrationKey, Tenant), Held> = HashMap::new();
    let mut tasks = JoinSet::new();
    let applied = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Start retries and queue drains wait on platforms that may be down: they
    // run beside the loop (one round at a time) so sweeps and holds go on.
    let mut outage_work: Option<tokio::task::JoinHandle<(usize, usize)>> = None;
    // Held agent messages must not wait for the next refresh.
    let releaser = tokio::spawn(release_holds_until(
        deps.clone(),
        Instant::now() + tuning.release.max(tuning.hold),
    ));

    loop {
        let ended = forget_ended(&mut held, Instant::now());
        if ended > 0 {
            tracing::info!(
                ended,
                "notification holders ended early; starting them again"
            );
        }
        while tasks.try_join_next().is_some() {}
        let mut retry_lists = Vec::new();
        report.pushed += sweep_pushes(&deps).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "sweep failed");
            0
        });
        for key in deps.registry.keys().collect::<Vec<_>>() {
            let live = match deps.store.live_sessions(key).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "listing live sessions failed");
                    continue;
                }
            };
            report.expired += expire_sessions(&deps, key, &live).await;
            retry_lists.push((key, live.clone()));
            let Ok(provider) = deps.provider(key) else {
                continue;
            };
            if provider.notifications().is_none() {
                continue;
            }
            let mut by_tenant: HashMap<Tenant, Vec<SessionRecord>> = HashMap::new();
            for s in live
                .into_iter()
                .filter(|s| s.provider_conversation_id.is_some())
            {
                by_tenant.entry(s.tenant.clone()).or_default().push(s);
            }
            // Tenants with nothing left to watch get an empty list (their holder idles out).
            for ((k, t), h) in &held {
                if *k == key && !by_tenant.contains_key(t) {
                    h.sessions.send_if_modified(|v| {
                        let changed = !v.is_empty();
                        v.clear();
                        changed
                    });
                }
            }
            for (tenant, sessions) in by_tenant {
                if let Some(h) = held.get(&(key, tenant.clone())) {
                    h.sessions.send_if_modified(|v| {
                        let changed = *v != sessions;
                        if changed {
                            *v = sessions.clone();
                        }
                        changed
                    });
                    continue;
                }
                let lease = format!("notify#{}#{}", key.as_str(), tenant.key());
                let until = deadline_ms(deadline) + 5_000;
                match deps.store.acquire_lease(&lease, &owner, until).await {
                    Ok(true) => {}
                    Ok(false) => continue, // another invocation holds this tenant
                    Err(e) => {
                        tracing::warn!(error = %e, "lease failed");
                        continue;
                    }
                }
                let (tx, rx) = watch::channel(sessions);
                report.tenants_held += 1;
                let task = tasks.spawn(hold_tenant(
                    deps.clone(),
                    provider.clone(),
                    tenant.clone(),
                    rx,
                    deadline,
                    applied.clone(),
                ));
                let started = Instant::now();
                held.insert(
                    (key, tenant),
                    Held {
                        sessions: tx,
                        task,
                        started,
                    },
                );
            }
        }
        if outage_work.as_ref().is_none_or(|h| h.is_finished()) {
            if let Some(h) = outage_work.take() {
                let (settled, sent) = h.await.unwrap_or_default();
                report.starts_settled += settled;
                report.queued_sent += sent;
            }
            outage_work = Some(tokio::spawn(outage_round(deps.clone(), retry_lists)));
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep_until((now + tuning.refresh).min(deadline).into()).await;
        if Instant::now() >= deadline {
            break;
        }
    }
    drop(held);
    while tasks.join_next().await.is_some() {}
    report.released += releaser.await.unwrap_or_default();
    if let Some(h) = outage_work.take() {
        let (settled, sent) = h.await.unwrap_or_default();
        report.starts_settled += settled;
        report.queued_sent += sent;
    }
    // Leases are per tenant; they lapse by themselves shortly after the deadline.
    report.events_applied = applied.load(std::sync::atomic::Ordering::SeqCst);
    report.pushed += sweep_pushes(&deps).await.unwrap_or(0);
    Ok(report)
}

/// One round of start retries and queue drains over the live sessions of
/// each provider; (handoffs settled, queued messages sent).
async fn outage_round(
    deps: Arc<Deps>,
    lists: Vec<(IntegrationKey, Vec<SessionRecord>)>,
) -> (usize, usize) {
    let (mut settled, mut sent) = (0, 0);
    for (key, live) in lists {
        settled += super::start::retry_due(&deps, &live).await;
        sent += super::outbound::drain_due(&deps, key, &live).await.sent;
    }
    (settled, sent)
}

fn deadline_ms(deadline: Instant) -> i64 {
    now_ms()
        + deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as i64
}

/// Holds one tenant's channels and applies what arrives, in order.
#[tracing::instrument(name = "hold", skip_all, fields(tenant = %tenant, provider = provider.key().as_str()))]
async fn hold_tenant(
    deps: Arc<Deps>,
    provider: Arc<dyn Provider>,
    tenant: Tenant,
    sessions: watch::Receiver<Vec<SessionRecord>>,
    deadline: Instant,
    applied: Arc<std::sync::atomic::AtomicUsize>,
) {
    let key = provider.key();
    let (sink, mut events) = mpsc::channel(SINK_CAPACITY);
    let rules = EventRules::of(&deps, &tenant).await;
    let consumer = {
        let deps = deps.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                // A failed store is retried: the platform will not send it again.
                for attempt in 0..5u32 {
                    match apply_event(&deps, &tenant, key, &ev, rules).await {
                        Ok(Applied::Stored(_)) | Ok(Applied::UnknownConversation) => {
                            applied.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            break;
                        }
                        Ok(Applied::Duplicate) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, attempt, "notification event not stored yet");
                            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                        }
                    }
                }
            }
        })
    };
    let outcome = async {
        let creds = deps.secrets.integration(&tenant, key).await?;
        let refreshed = Default::default();
        let ctx = ProviderCtx {
            tenant: &tenant,
            credentials: &creds,
            http: &deps.http,
            refreshed: &refreshed,
        };
        match provider.notifications() {
            Some(source) => source.hold(&ctx, sessions, sink, deadline).await,
            None => Ok(()),
        }
    }
    .await;
    if let Err(e) = outcome {
        tracing::warn!(tenant = %tenant, error = %e, "notification hold ended with an error");
    }
    let _ = consumer.await;
}

/// The scheduled event's answer.
pub fn report_json(report: &PollReport) -> Value {
    json!({"ok": true, "report": report})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HandoffError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_round_that_dies_does_not_stop_the_rounds_after_it() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let deadline = Instant::now() + Duration::from_millis(300);
        let total = repeat_until("test", deadline, Duration::from_millis(10), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    1 => panic!("cut short"),
                    2 => Err(HandoffError::internal("store down")),
                    _ => Ok(1),
                }
            }
        })
        .await;
        let calls = calls.load(Ordering::SeqCst);
        assert!(calls > 5, "rounds went on after the dead one: {calls}");
        assert_eq!(
            total,
            calls - 2,
            "every round but the two failed ones counted"
        );
    }

    #[tokio::test]
    async fn holders_that_ended_are_forgotten_and_live_ones_kept() {
        let mut tasks = JoinSet::new();
        let done = tasks.spawn(async {});
        let dead = tasks.spawn(async { panic!("cut short") });
        let just_died = tasks.spawn(async { panic!("cut short") });
        let live = tasks.spawn(std::future::pending::<()>());
        while !(done.is_finished() && dead.is_finished() && just_died.is_finished()) {
            tokio::task::yield_now().await;
        }
        let now = Instant::now();
        let long_ago = now - RESTART_GAP - Duration::from_secs(1);
        let mut held = HashMap::new();
        for (name, task, started) in [
            ("done", done, long_ago),
            ("dead", dead, long_ago),
            ("just_died", just_died, now - Duration::from_secs(1)),
            ("live", live, long_ago),
        ] {
            let sessions = watch::channel(Vec::new()).0;
            held.insert(
                name,
                Held {
                    sessions,
                    task,
                    started,
                },
            );
        }
        assert_eq!(forget_ended(&mut held, now), 2);
        let mut kept: Vec<_> = held.keys().copied().collect();
        kept.sort();
        // One that died within the gap waits before it is started again.
        assert_eq!(kept, vec!["just_died", "live"]);
        tasks.abort_all();
    }
}
