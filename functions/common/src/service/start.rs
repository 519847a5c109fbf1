//! start-handoff: open a conversation with a live agent.

use serde_json::{json, Value};

use crate::domain::IntegrationKey;
use crate::error::{HandoffError, Result};
use crate::events::{ClientEventType, EndedBy};
use crate::metrics::{Metric, Record};
use crate::providers::StartInput;
use crate::request::{HandoffRoute, HandoffTarget, StartHandoffRequest};
use crate::store::{AppendOutcome, NewEvent, SessionChange, SessionRecord};
use crate::time::now_ms;
use crate::with_credentials;

use super::inbound::{end_change, end_event};
use super::Deps;

/// How long one invocation may hold the right to open a session's conversation.
const START_LEASE_MS: i64 = 30_000;

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
    let outcome = open(deps, &req, &route, provider.as_ref()).await;
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

async fn open(
    deps: &Deps,
    req: &StartHandoffRequest,
    route: &HandoffRoute,
    provider: &dyn crate::providers::Provider,
) -> Result<Value> {
    // Another invocation may have finished while we waited for the lease.
    if let Some(s) = deps.store.get_session(&req.tenant, &req.session_id).await? {
        if let Some(result) = s.start_result {
            return Ok(result);
        }
    }
    let input = StartInput {
        session_id: &req.session_id,
        user: &req.user,
        utterance: req.utterance.as_deref(),
        transcript: &req.transcript,
        context: &req.context,
        routing: &route.routing,
    };
    let refreshed = Default::default();
    let opened = with_credentials!(deps, &req.tenant, route.integration, &refreshed, |ctx| {
        provider.start(&ctx, &input)
    });
    let opened = match opened {
        Ok(o) => o,
        Err(e) if e.is_retryable() => return Err(e), // pending: a retry resumes
        Err(e) => {
            // Cannot be opened at all: tell the widget, end the session.
            tracing::error!(error = %e, "handoff could not be opened");
            let outcome = deps
                .store
                .append(&req.tenant, &req.session_id, None, |s| {
                    if s.state.is_terminal() {
                        return Ok((vec![], SessionChange::default()));
                    }
                    let mut ev = end_event(EndedBy::System);
                    ev.data["reason"] = json!("handoff_failed");
                    ev.data["error_code"] = json!(e.code());
                    Ok((vec![ev], end_change(EndedBy::System)))
                })
                .await?;
            if let AppendOutcome::Appended { session, .. } = outcome {
                deps.push_pending(&req.tenant, &req.session_id, session.delivered_seq)
                    .await;
            }
            return Err(e);
        }
    };
    let outcome = deps
        .store
        .append(&req.tenant, &req.session_id, None, |s| {
            if s.start_result.is_some() {
                // Someone else recorded it; keep theirs.
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
                        "provider": route.integration.as_str(),
                        "provider_conversation_id": opened.conversation_id,
                        "utterance": req.utterance,
                    }),
                )],
                SessionChange {
                    state: Some(crate::domain::SessionState::Queued),
                    provider_conversation_id: Some(opened.conversation_id.clone()),
                    provider_data: Some(opened.provider_data.clone()),
                    start_result: Some(result),
                    ended_by: None,
                },
            ))
        })
        .await?;
    let AppendOutcome::Appended { session, .. } = outcome else {
        return Err(HandoffError::internal(
            "start append without dedupe key was a duplicate",
        ));
    };
    deps.push_pending(&req.tenant, &req.session_id, session.delivered_seq)
        .await;
    tracing::info!(conversation = ?session.provider_conversation_id, "handoff opened");
    session
        .start_result
        .ok_or_else(|| HandoffError::internal("start result missing"))
}
