//! outbound-relay: customer messages and typing to the platform, and the
//! outbound queue that keeps customer messages through a platform outage.
//!
//! A message is sent at once when it can be. When the platform stays
//! unavailable through the in-invocation retries (`provider_unavailable`), the
//! message is queued in the session's partition and the caller is answered
//! `{"status": "queued"}`: the relay owns it from then on. While a session has
//! queued messages (or its conversation is not open yet), every later message
//! queues behind them, so per-session order holds. The notification-poller
//! drains queues ([`drain_due`]); end-session drains before a user's end.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::domain::{IntegrationKey, Tenant};
use crate::error::{HandoffError, Result};
use crate::metrics::{Metric, Record};
use crate::request::{CustomerMessage, OutboundRelayRequest, RelayAction};
use crate::store::{Dequeue, Enqueued, MessageClaim, SessionRecord};
use crate::time::now_ms;
use crate::with_credentials;

use super::Deps;

/// How long a claimed message is ours before a retry may send it.
const MESSAGE_LEASE_MS: i64 = 30_000;
/// How long one drainer holds a session's queue. Longer than the slowest send
/// (in-invocation retries included), renewed before each message.
const DRAIN_LEASE_MS: i64 = 120_000;

#[tracing::instrument(name = "outbound_relay", skip_all, fields(tenant = tracing::field::Empty, session = tracing::field::Empty))]
pub async fn handle(deps: &Deps, request: &Value) -> Result<Value> {
    let req = OutboundRelayRequest::parse(request)?;
    let span = tracing::Span::current();
    span.record("tenant", tracing::field::display(&req.tenant));
    span.record("session", req.session_id.as_str());
    let session = deps
        .store
        .get_session(&req.tenant, &req.session_id)
        .await?
        .ok_or(HandoffError::SessionNotFound)?;
    if session.state.is_terminal() {
        return Err(HandoffError::SessionEnded);
    }
    let provider = deps.provider(session.provider)?;
    match &req.action {
        RelayAction::Typing(on) => {
            if !provider.capabilities().customer_typing {
                return Ok(json!({"session_id": req.session_id, "status": "not_supported"}));
            }
            let refreshed = Default::default();
            with_credentials!(deps, &req.tenant, session.provider, &refreshed, |ctx| {
                provider.send_typing(&ctx, &session, *on)
            })?;
            deps.store_refreshed(&req.tenant, &req.session_id, refreshed)
                .await?;
            Ok(json!({"session_id": req.session_id, "status": "sent"}))
        }
        RelayAction::Message(message) => send_or_queue(deps, &session, message).await,
    }
}

/// `MessagesRelayed{direction=to_agent}` for a message the platform took.
pub(crate) fn relayed(session: &SessionRecord) {
    Record::count(Metric::MessageRelayed)
        .provider(session.provider)
        .dimension("direction", "to_agent")
        .property("tenant", session.tenant.to_string())
        .property("session", session.session_id.as_str())
        .emit();
}

fn answer(session: &SessionRecord, message: &CustomerMessage, status: &str, dup: bool) -> Value {
    json!({"session_id": session.session_id, "message_id": message.id,
           "status": status, "duplicate": dup})
}

/// The answer for a message id that was known already.
fn known(session: &SessionRecord, message: &CustomerMessage, claim: MessageClaim) -> Result<Value> {
    match claim {
        MessageClaim::AlreadySent(_) => Ok(answer(session, message, "sent", true)),
        MessageClaim::Queued => Ok(answer(session, message, "queued", true)),
        MessageClaim::InFlight | MessageClaim::Claimed => Err(HandoffError::Conflict(
            "this message is being sent; retry".into(),
        )),
        MessageClaim::Failed(code) => Err(HandoffError::ProviderRejected(format!(
            "message {} was queued and then refused by the platform ({code})",
            message.id
        ))),
    }
}

/// Sends a customer message now, or queues it (see the module docs).
async fn send_or_queue(
    deps: &Deps,
    session: &SessionRecord,
    message: &CustomerMessage,
) -> Result<Value> {
    let (tenant, session_id) = (&session.tenant, &session.session_id);
    let digest = hex::encode(Sha256::digest(message.text.as_bytes()));
    if must_queue(session) {
        let reason = match session.provider_conversation_id {
            None => "handoff_pending",
            Some(_) => "behind_queue",
        };
        return queue(deps, session, message, &digest, false, reason).await;
    }
    let claim = deps
        .store
        .claim_message(tenant, session_id, &message.id, &digest, MESSAGE_LEASE_MS)
        .await?;
    if claim != MessageClaim::Claimed {
        return known(session, message, claim);
    }
    crate::chaos::maybe_crash(crate::chaos::CrashPoint::AfterClaimBeforeSend);
    let provider = deps.provider(session.provider)?;
    let refreshed = Default::default();
    let sent = with_credentials!(deps, tenant, session.provider, &refreshed, |ctx| {
        provider.send_message(&ctx, session, message)
    });
    deps.store_refreshed(tenant, session_id, refreshed).await?;
    match sent {
        Ok(platform_ref) => {
            deps.store
                .complete_message(tenant, session_id, &message.id, &platform_ref)
                .await?;
            relayed(session);
            Ok(answer(session, message, "sent", false))
        }
        Err(e @ HandoffError::ProviderUnavailable(_)) => {
            tracing::warn!(error = %e, message = %message.id, "platform unavailable; message queued");
            queue(
                deps,
                session,
                message,
                &digest,
                true,
                "provider_unavailable",
            )
            .await
        }
        Err(e) => {
            deps.store
                .release_message(tenant, session_id, &message.id)
                .await?;
            Err(e)
        }
    }
}

/// Later messages wait behind queued ones, and for the conversation to open.
fn must_queue(session: &SessionRecord) -> bool {
    !session.outq.is_empty() || session.provider_conversation_id.is_none()
}

async fn queue(
    deps: &Deps,
    session: &SessionRecord,
    message: &CustomerMessage,
    digest: &str,
    claimed: bool,
    reason: &str,
) -> Result<Value> {
    let queued = deps
        .store
        .enqueue_message(
            &session.tenant,
            &session.session_id,
            message,
            digest,
            claimed,
        )
        .await?;
    match queued {
        Enqueued::At(position) => {
            tracing::info!(message = %message.id, position, reason, "customer message queued");
            let mut out = answer(session, message, "queued", false);
            out["reason"] = json!(reason);
            Ok(out)
        }
        Enqueued::Exists(claim) => known(session, message, claim),
    }
}

/// What draining one session's queue did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    pub sent: usize,
    /// Given up for good (the platform refused them); logged.
    pub failed: usize,
    /// The platform was unavailable: the rest waits for the next due time.
    pub deferred: bool,
    /// Another drainer holds this queue.
    pub busy: bool,
}

/// Sends a session's queued messages in order, one at a time, under a lease
/// per session (so two pollers, or a poller and end-session, never send one
/// twice). Stops at the first `provider_unavailable` and defers the queue with
/// an exponential due time; a message the platform refuses for good is marked
/// `failed`, logged, and the queue goes on. Without `force` a queue whose due
/// time has not come is left alone.
pub async fn drain(deps: &Deps, session: &SessionRecord, force: bool) -> Result<Drained> {
    let (tenant, session_id) = (&session.tenant, &session.session_id);
    let lease = format!("outq#{}#{}", tenant.key(), session_id);
    let owner = uuid::Uuid::new_v4().to_string();
    let mut report = Drained::default();
    if !deps
        .store
        .acquire_lease(&lease, &owner, now_ms() + DRAIN_LEASE_MS)
        .await?
    {
        report.busy = true;
        return Ok(report);
    }
    let outcome = drain_held(deps, session, &lease, &owner, force, &mut report).await;
    deps.store.release_lease(&lease, &owner).await?;
    outcome.map(|()| report)
}

async fn drain_held(
    deps: &Deps,
    session: &SessionRecord,
    lease: &str,
    owner: &str,
    force: bool,
    report: &mut Drained,
) -> Result<()> {
    let (tenant, session_id) = (&session.tenant, &session.session_id);
    let provider = deps.provider(session.provider)?;
    let mut first = true;
    loop {
        let Some(s) = deps.store.get_session(tenant, session_id).await? else {
            return Ok(());
        };
        if s.state.is_terminal() || s.outq.is_empty() || s.provider_conversation_id.is_none() {
            return Ok(());
        }
        if first && !force && !s.outq.is_due(now_ms()) {
            return Ok(()); // deferred by another drainer meanwhile
        }
        first = false;
        let position = s.outq.head;
        let Some(queued) = deps
            .store
            .queued_message(tenant, session_id, position)
            .await?
        else {
            // Only TTL removes an OQ item before its turn; nothing left to send.
            tracing::error!(session = %session_id, position, "queued message missing; skipped");
            deps.store
                .update_session(tenant, session_id, |cur| {
                    (cur.outq.head == position).then(|| {
                        let mut next = cur.clone();
                        next.outq = cur.outq.advanced(now_ms());
                        next
                    })
                })
                .await?;
            continue;
        };
        if !deps
            .store
            .acquire_lease(lease, owner, now_ms() + DRAIN_LEASE_MS)
            .await?
        {
            report.busy = true;
            return Ok(());
        }
        let refreshed = Default::default();
        let sent = with_credentials!(deps, tenant, s.provider, &refreshed, |ctx| {
            provider.send_message(&ctx, &s, &queued.message)
        });
        deps.store_refreshed(tenant, session_id, refreshed).await?;
        let message_id = &queued.message.id;
        match sent {
            Ok(platform_ref) => {
                deps.store
                    .dequeue_message(
                        tenant,
                        session_id,
                        position,
                        message_id,
                        &Dequeue::Sent(platform_ref),
                    )
                    .await?;
                report.sent += 1;
                tracing::info!(
                    session = %session_id,
                    message = %message_id,
                    queued_ms = now_ms() - queued.queued_at_ms,
                    "queued customer message sent"
                );
            }
            Err(e) if e.is_retryable() => {
                let after = deps.store.defer_queue(tenant, session_id).await?;
                report.deferred = true;
                tracing::warn!(
                    session = %session_id,
                    error = %e,
                    queued = after.outq.len(),
                    retry_in_ms = after.outq.due_ms - now_ms(),
                    "platform still unavailable; queue deferred"
                );
                return Ok(());
            }
            Err(e) => {
                // Holding the queue would block every later message for good.
                tracing::error!(
                    session = %session_id,
                    message = %message_id,
                    error = %e,
                    "queued customer message refused by the platform; given up"
                );
                deps.store
                    .dequeue_message(
                        tenant,
                        session_id,
                        position,
                        message_id,
                        &Dequeue::Failed(e.code().to_owned()),
                    )
                    .await?;
                report.failed += 1;
            }
        }
    }
}

/// Drains every due queue among `live` (the poller's list of open sessions
/// of one provider). After a tenant's platform was found unavailable, its
/// other queues wait for their own due time instead of being tried this round.
pub async fn drain_due(deps: &Deps, key: IntegrationKey, live: &[SessionRecord]) -> Drained {
    let now = now_ms();
    let mut total = Drained::default();
    let mut down: Vec<&Tenant> = Vec::new();
    for s in live {
        if !s.outq.is_due(now) || s.provider_conversation_id.is_none() || down.contains(&&s.tenant)
        {
            continue;
        }
        match drain(deps, s, false).await {
            Ok(d) => {
                total.sent += d.sent;
                total.failed += d.failed;
                total.busy |= d.busy;
                if d.deferred {
                    total.deferred = true;
                    down.push(&s.tenant);
                }
            }
            Err(e) => {
                tracing::warn!(provider = key.as_str(), session = %s.session_id, error = %e, "queue drain failed")
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientEnv, SessionId, SessionState};
    use crate::store::OutQueue;

    fn session() -> SessionRecord {
        let mut s = SessionRecord::new(
            Tenant::new("acme", "support", ClientEnv::Live).unwrap(),
            SessionId::parse("conv-1").unwrap(),
            IntegrationKey::Genesys,
            json!({}),
        );
        s.state = SessionState::Active;
        s.provider_conversation_id = Some("c1".into());
        s
    }

    fn message() -> CustomerMessage {
        CustomerMessage {
            id: "m-1".into(),
            text: "hello".into(),
        }
    }

    #[test]
    fn a_message_queues_behind_queued_ones_and_before_the_conversation_opens() {
        let mut s = session();
        assert!(!must_queue(&s), "empty queue, open conversation: send now");
        s.outq = OutQueue::default().pushed(0).0;
        assert!(must_queue(&s), "behind a queued message");
        s.outq = s.outq.advanced(0);
        assert!(!must_queue(&s), "drained: send now again");
        s.provider_conversation_id = None;
        assert!(must_queue(&s), "conversation not open yet");
    }

    #[test]
    fn a_known_message_id_answers_its_state() {
        let (s, m) = (session(), message());
        let queued = known(&s, &m, MessageClaim::Queued).unwrap();
        assert_eq!(
            (queued["status"].as_str(), queued["duplicate"].as_bool()),
            (Some("queued"), Some(true))
        );
        let sent = known(&s, &m, MessageClaim::AlreadySent(json!({}))).unwrap();
        assert_eq!(sent["status"], "sent");
        assert_eq!(
            known(&s, &m, MessageClaim::InFlight).unwrap_err().code(),
            "conflict"
        );
        let failed = known(&s, &m, MessageClaim::Failed("provider_rejected".into())).unwrap_err();
        assert_eq!(failed.code(), "provider_rejected");
        assert!(failed.to_string().contains("m-1"));
    }
}
