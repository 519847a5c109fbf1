//! start-handoff: open a conversation with a live agent.
//!
//! When the platform stays unavailable through the in-invocation retries,
//! the session stays `pending` and the caller is answered with that status
//! (no conversation id): the notification-poller tries again with
//! exponential due times ([`retry_due`]) until the tenant's
//! `start_retry_secs` (default 180) have passed since the request, then ends
//! the session with `SESSION_END` (`ended_by: system`, `reason:
//! handoff_failed`, `error_code: provider_unavailable`). Every attempt holds
//! the session's start lease and first re-reads the session, so a
//! conversation is opened at most once per attempt that the platform
//! accepted.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::domain::{IntegrationKey, SessionId, SessionState, Tenant};
use crate::error::{HandoffError, Result};
use crate::events::{ClientEventType, EndedBy};
use crate::metrics::{Metric, Record};
use crate::providers::StartInput;
use crate::request::{HandoffRoute, HandoffTarget, StartHandoffRequest, TranscriptEntry, UserInfo};
use crate::store::{backoff_ms, AppendOutcome, NewEvent, SessionChange, SessionRecord};
use crate::time::now_ms;
use crate::with_credentials;

use super::inbound::{end_change, end_event};
use super::Deps;

/// How long one invocation may hold the right to open a session's conversation.
const START_LEASE_MS: i64 = 30_000;
/// Longest wait between two poller attempts to open a conversation.
const MAX_START_RETRY_MS: i64 = 30_000;

/// What opening a conversation needs: from the request, or from the stored
/// session when the poller retries.
struct Opening {
    tenant: Tenant,
    session_id: SessionId,
    integration: IntegrationKey,
    user: UserInfo,
    utterance: Option<String>,
    transcript: Vec<TranscriptEntry>,
    context: Map<String, Value>,
    routing: Map<String, Value>,
}

/// The `handoff` value stored on the session by [`handle`].
#[derive(Deserialize)]
struct StoredHandoff {
    user: UserInfo,
    utterance: Option<String>,
    #[serde(default)]
    transcript: Vec<TranscriptEntry>,
    #[serde(default)]
    context: Map<String, Value>,
    #[serde(default)]
    routing: Map<String, Value>,
}

impl Opening {
    fn from_request(req: &StartHandoffRequest, route: &HandoffRoute) -> Self {
        Self {
            tenant: req.tenant.clone(),
            session_id: req.session_id.clone(),
            integration: route.integration,
            user: req.user.clone(),
            utterance: req.utterance.clone(),
            transcript: req.transcript.clone(),
            context: req.context.clone(),
            routing: route.routing.clone(),
        }
    }

    fn from_session(s: &SessionRecord) -> Result<Self> {
        let h: StoredHandoff = serde_json::from_value(s.handoff.clone())
            .map_err(|e| HandoffError::internal(format!("stored handoff unreadable: {e}")))?;
        Ok(Self {
            tenant: s.tenant.clone(),
            session_id: s.session_id.clone(),
            integration: s.provider,
            user: h.user,
            utterance: h.utterance,
            transcript: h.transcript,
            context: h.context,
            routing: h.routing,
        })
    }
}

/// When the poller may next try to open a pending session's conversation:
/// as scheduled after a failed attempt, else once an interrupted first
/// attempt's lease has lapsed.
fn start_due_ms(s: &SessionRecord) -> i64 {
    s.start_due_ms.unwrap_or(s.created_at_ms + START_LEASE_MS)
}

fn result_of(session: &SessionRecord) -> Value {
    json!({
        "session_id": session.session_id,
        "provider": session.provider.as_str(),
        "provider_conversation_id": session.provider_conversation_id,
        "status": session.state.as_str(),
    })
}

/// Validates, stores the session, opens the platform conversation, emits
/// `POLY_AGENT_TRIGGERED_HANDOFF`. A repeated call returns the first result.
/// A platform that is unavailable leaves the session `pending` for the
/// poller to retry (see the module docs); the answer then says `pending`.
#[tracing::instrument(name = "start_handoff", skip_all, fields(tenant = tracing::field::Empty, session = tracing::field::Empty, provider = tracing::field::Empty))]
pub async fn handle(deps: &Deps, request: &Value) -> Result<Value> {
    let req = StartHandoffRequest::parse(request)?;
    let span = tracing::Span::current();
    span.record("tenant", tracing::field::display(&req.tenant));
    span.record("session", req.session_id.as_str());

    let runtime = deps.secrets.runtime(&req.tenant).await?;
    let route = match &req.target {
        HandoffTarget::Route(r) => r.clone(),
        HandoffTarget::Destination(name) => {
            let configured = runtime.destinations.get(name).ok_or_else(|| {
                HandoffError::invalid(format!("unknown destination {name:?} for this tenant"))
            })?;
            HandoffRoute::from_text_chat(configured)
                .map_err(|e| HandoffError::NotConfigured(format!("destination {name:?}: {e}")))?
        }
    };
    span.record("provider", route.integration.as_str());
    let provider = deps.provider(route.integration)?;
    // Fail before writing anything when the integration has no credentials.
    deps.secrets
        .integration(&req.tenant, route.integration)
        .await?;

    let handoff = json!({
        "user": req.user,
        "utterance": req.utterance,
        "transcript": req.transcript,
        "context": req.context,
        "routing": route.routing,
    });
    let record = SessionRecord::new(
        req.tenant.clone(),
        req.session_id.clone(),
        route.integration,
        handoff,
    );
    let (existing, created) = deps.store.create_session(&record).await?;
    if !created {
        if existing.provider != route.integration {
            return Err(HandoffError::invalid(format!(
                "session was already handed off to {}",
                existing.provider
            )));
        }
        if let Some(result) = existing.start_result {
            return Ok(result);
        }
        if existing.state.is_terminal() {
            return Err(HandoffError::SessionEnded);
        }
    }

    let lease = format!("start#{}#{}", req.tenant.key(), req.session_id);
    let owner = uuid::Uuid::new_v4().to_string();
    if !deps
        .store
        .acquire_lease(&lease, &owner, now_ms() + START_LEASE_MS)
        .await?
    {
        return Err(HandoffError::Conflict(
            "this handoff is being opened; retry".into(),
        ));
    }
    let opening = Opening::from_request(&req, &route);
    let outcome = open(deps, &opening, provider.as_ref()).await;
    deps.store.release_lease(&lease, &owner).await?;
    record_outcome(&req, route.integration, &outcome);
    outcome
}

/// Metrics of one start: opened, or failed for good (a retryable error leaves
/// the session pending, so it is not a failure yet).
fn record_outcome(req: &StartHandoffRequest, provider: IntegrationKey, outcome: &Result<Value>) {
    let record = match outcome {
        Ok(_) => Record::count(Metric::HandoffStarted),
        Err(e) if e.is_retryable() => return,
        Err(e) => Record::count(Metric::HandoffFailed).dimension("reason", e.code()),
    };
    record
        .provider(provider)
        .property("tenant", req.tenant.to_string())
        .property("session", req.session_id.as_str())
        .emit();
}

/// Ends a session whose conversation cannot be opened, telling the widget:
/// `SESSION_END` with `reason: handoff_failed` and the error's code.
async fn give_up(deps: &Deps, tenant: &Tenant, session: &SessionId, code: &str) -> Result<()> {
    let outcome = deps
        .store
        .append(tenant, session, None, |s| {
            if s.state.is_terminal() || s.start_result.is_some() {
                return Ok((vec![], SessionChange::default()));
            }
            let mut ev = end_event(EndedBy::System);
            ev.data["reason"] = json!("handoff_failed");
            ev.data["error_code"] = json!(code);
            Ok((vec![ev], end_change(EndedBy::System)))
        })
        .await?;
    if let AppendOutcome::Appended { session: s, events } = outcome {
        if !events.is_empty() {
            deps.push_pending(tenant, session, s.delivered_seq).await;
        }
    }
    Ok(())
}

/// Opens the conversation; the caller holds the session's start lease.
async fn open(
    deps: &Deps,
    op: &Opening,
    provider: &dyn crate::providers::Provider,
) -> Result<Value> {
    // Another invocation may have finished while we waited for the lease.
    if let Some(s) = deps.store.get_session(&op.tenant, &op.session_id).await? {
        if let Some(result) = s.start_result {
            return Ok(result);
        }
        if s.state.is_terminal() {
            return Err(HandoffError::SessionEnded);
        }
    }
    let input = StartInput {
        session_id: &op.session_id,
        user: &op.user,
        utterance: op.utterance.as_deref(),
        transcript: &op.transcript,
        context: &op.context,
        routing: &op.routing,
    };
    let refreshed = Default::default();
    let opened = with_credentials!(deps, &op.tenant, op.integration, &refreshed, |ctx| {
        provider.start(&ctx, &input)
    });
    let opened = match opened {
        Ok(o) => o,
        Err(e @ HandoffError::ProviderUnavailable(_)) => {
            // Pending: the poller tries again until the tenant's budget is spent.
            let s = deps
                .store
                .update_session(&op.tenant, &op.session_id, |s| {
                    (s.state == SessionState::Pending && s.start_result.is_none()).then(|| {
                        let mut next = s.clone();
                        next.start_due_ms =
                            Some(now_ms() + backoff_ms(s.start_attempts, MAX_START_RETRY_MS));
                        next.start_attempts = s.start_attempts + 1;
                        next
                    })
                })
                .await?;
            tracing::warn!(
                error = %e,
                attempts = s.start_attempts,
                retry_in_ms = s.start_due_ms.map(|d| d - now_ms()),
                "platform unavailable; the handoff stays pending and is retried"
            );
            return Ok(s.start_result.clone().unwrap_or_else(|| result_of(&s)));
        }
        Err(e) if e.is_retryable() => return Err(e), // pending: a retry resumes
        Err(e) => {
            // Cannot be opened at all: tell the widget, end the session.
            tracing::error!(error = %e, "handoff could not be opened");
            give_up(deps, &op.tenant, &op.session_id, e.code()).await?;
            return Err(e);
        }
    };
    let route_integration = op.integration;
    let utterance = op.utterance.clone();
    let outcome = deps
        .store
        .append(&op.tenant, &op.session_id, None, |s| {
            if s.start_result.is_some() || s.state.is_terminal() {
                // Someone else recorded it (keep theirs), or the session ended meanwhile.
                return Ok((vec![], SessionChange::default()));
            }
            let mut after = s.clone();
            after.state = crate::domain::SessionState::Queued;
            after.provider_conversation_id = Some(opened.conversation_id.clone());
            let result = result_of(&after);
            Ok((
                vec![NewEvent::new(
                    ClientEventType::PolyAgentTriggeredHandoff,
                    json!({
                        "provider": route_integration.as_str(),
                        "provider_conversation_id": opened.conversation_id,
                        "utterance": utterance,
                    }),
                )],
                SessionChange {
                    state: Some(crate::domain::SessionState::Queued),
                    provider_conversation_id: Some(opened.conversation_id.clone()),
                    provider_data: Some(opened.provider_data.clone()),
                    start_result: Some(result),
                    ..Default::default()
                },
            ))
        })
        .await?;
    let AppendOutcome::Appended { session, .. } = outcome else {
        return Err(HandoffError::internal(
            "start append without dedupe key was a duplicate",
        ));
    };
    if session.state.is_terminal() {
        // Ended while the platform was opening it: close what we just opened.
        tracing::warn!(conversation = %opened.conversation_id, "conversation opened after the session ended; closing it");
        let mut opened_session = session.clone();
        opened_session.provider_conversation_id = Some(opened.conversation_id.clone());
        opened_session.provider_data = opened.provider_data.clone();
        let refreshed = Default::default();
        let closed = with_credentials!(deps, &op.tenant, op.integration, &refreshed, |ctx| {
            provider.end(&ctx, &opened_session)
        });
        if let Err(e) = closed {
            tracing::warn!(error = %e, "closing the late conversation failed");
        }
        return Err(HandoffError::SessionEnded);
    }
    deps.push_pending(&op.tenant, &op.session_id, session.delivered_seq)
        .await;
    tracing::info!(conversation = ?session.provider_conversation_id, "handoff opened");
    session
        .start_result
        .ok_or_else(|| HandoffError::internal("start result missing"))
}

/// The poller's part: retries opening the conversation of every pending
/// session among `live` whose retry is due, or ends it once the tenant's
/// `start_retry_secs` have passed. Returns how many were opened or ended.
///
/// After one attempt of a tenant found the platform still unavailable, that
/// tenant's other pending sessions wait for the next round.
pub async fn retry_due(deps: &Deps, live: &[SessionRecord]) -> usize {
    let now = now_ms();
    let mut settled = 0;
    let mut down: Vec<&Tenant> = Vec::new();
    for s in live {
        if s.state != SessionState::Pending
            || s.start_result.is_some()
            || start_due_ms(s) > now
            || down.contains(&&s.tenant)
        {
            continue;
        }
        match resume(deps, s).await {
            Ok(true) => settled += 1,
            Ok(false) => down.push(&s.tenant),
            Err(e) => {
                tracing::warn!(tenant = %s.tenant, session = %s.session_id, error = %e, "start retry failed")
            }
        }
    }
    settled
}

/// One retry of a pending session, under its start lease. True if the
/// session is now opened or ended.
#[tracing::instrument(name = "start_retry", skip_all, fields(tenant = %s.tenant, session = %s.session_id, provider = s.provider.as_str()))]
async fn resume(deps: &Deps, s: &SessionRecord) -> Result<bool> {
    let runtime = deps.secrets.runtime(&s.tenant).await?;
    let lease = format!("start#{}#{}", s.tenant.key(), s.session_id);
    let owner = uuid::Uuid::new_v4().to_string();
    if !deps
        .store
        .acquire_lease(&lease, &owner, now_ms() + START_LEASE_MS)
        .await?
    {
        return Ok(false); // an attempt is in flight
    }
    let outcome = async {
        let Some(cur) = deps.store.get_session(&s.tenant, &s.session_id).await? else {
            return Ok(false);
        };
        if cur.start_result.is_some() || cur.state.is_terminal() {
            return Ok(false);
        }
        let budget_ms = runtime.start_retry_secs.saturating_mul(1000) as i64;
        if now_ms() >= cur.created_at_ms.saturating_add(budget_ms) {
            // A first attempt that died mid-call never learned why.
            let code = if cur.start_attempts > 0 {
                "provider_unavailable"
            } else {
                "start_interrupted"
            };
            tracing::error!(
                attempts = cur.start_attempts,
                code,
                "handoff could not be opened in time; session ended"
            );
            give_up(deps, &cur.tenant, &cur.session_id, code).await?;
            return Ok(true);
        }
        let opening = match Opening::from_session(&cur) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "pending handoff cannot be retried; session ended");
                give_up(deps, &cur.tenant, &cur.session_id, e.code()).await?;
                return Ok(true);
            }
        };
        let provider = deps.provider(cur.provider)?;
        let result = open(deps, &opening, provider.as_ref()).await?;
        Ok(result["status"] != SessionState::Pending.as_str())
    }
    .await;
    deps.store.release_lease(&lease, &owner).await?;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClientEnv;

    fn pending(handoff: Value) -> SessionRecord {
        SessionRecord::new(
            Tenant::new("acme", "support", ClientEnv::Live).unwrap(),
            SessionId::parse("conv-1").unwrap(),
            IntegrationKey::Genesys,
            handoff,
        )
    }

    #[test]
    fn a_stored_handoff_rebuilds_the_start_input() {
        let s = pending(json!({
            "user": {"id": "u-1", "display_name": "Ada", "channel": "webchat"},
            "utterance": "transferring you",
            "transcript": [{"role": "user", "text": "hi", "at": null}],
            "context": {"reason": "refund"},
            "routing": {"queue": "billing"},
        }));
        let op = Opening::from_session(&s).unwrap();
        assert_eq!(op.user.display_name.as_deref(), Some("Ada"));
        assert_eq!(op.utterance.as_deref(), Some("transferring you"));
        assert_eq!(op.transcript.len(), 1);
        assert_eq!(op.context["reason"], "refund");
        assert_eq!(op.routing["queue"], "billing");
        assert_eq!(op.integration, IntegrationKey::Genesys);
        assert!(Opening::from_session(&pending(json!({"user": 7}))).is_err());
    }

    #[test]
    fn a_start_retry_is_due_as_scheduled_or_after_an_interrupted_attempt() {
        let mut s = pending(json!({}));
        assert_eq!(start_due_ms(&s), s.created_at_ms + START_LEASE_MS);
        s.start_due_ms = Some(42);
        assert_eq!(start_due_ms(&s), 42);
    }

    #[test]
    fn a_pending_answer_has_no_conversation_yet() {
        let s = pending(json!({}));
        let r = result_of(&s);
        assert_eq!(r["status"], "pending");
        assert!(r["provider_conversation_id"].is_null());
    }
}
