//! end-session: the user ended the chat; disconnect them on the platform.
//! Customer messages still queued for the platform are sent first (an end by
//! the agent, the platform or a timeout drops them instead: see the store).

use serde_json::{json, Value};

use crate::error::{HandoffError, Result};
use crate::events::EndedBy;
use crate::request::EndSessionRequest;
use crate::store::{AppendOutcome, SessionChange};
use crate::with_credentials;

use super::inbound::{end_change, end_event};
use super::Deps;

#[tracing::instrument(name = "end_session", skip_all, fields(tenant = tracing::field::Empty, session = tracing::field::Empty))]
pub async fn handle(deps: &Deps, request: &Value) -> Result<Value> {
    let req = EndSessionRequest::parse(request)?;
    let span = tracing::Span::current();
    span.record("tenant", tracing::field::display(&req.tenant));
    span.record("session", req.session_id.as_str());
    let session = deps
        .store
        .get_session(&req.tenant, &req.session_id)
        .await?
        .ok_or(HandoffError::SessionNotFound)?;
    let ended = |by: Option<EndedBy>| {
        json!({"session_id": req.session_id, "status": "ended",
               "ended_by": by.map(EndedBy::as_str)})
    };
    if session.state.is_terminal() {
        return Ok(ended(session.ended_by));
    }
    // The user wrote these before ending: they reach the agent first. While
    // the platform is still down the end is refused, as its close would be.
    if !session.outq.is_empty() && session.provider_conversation_id.is_some() {
        let drained = super::outbound::drain(deps, &session, true).await?;
        if drained.busy {
            return Err(HandoffError::Conflict(
                "queued customer messages are being sent; retry".into(),
            ));
        }
        if drained.deferred {
            return Err(HandoffError::ProviderUnavailable(
                "customer messages are still queued for the platform".into(),
            ));
        }
    }
    // Mark first, so the platform's echo of our disconnect reads as the user's end.
    let marked = deps
        .store
        .append(&req.tenant, &req.session_id, None, |s| {
            let mut data = s.provider_data.clone();
            data["end_requested"] = json!(true);
            Ok((
                vec![],
                SessionChange {
                    provider_data: Some(data),
                    ..Default::default()
                },
            ))
        })
        .await?;
    let AppendOutcome::Appended { session, .. } = marked else {
        return Err(HandoffError::internal("unexpected duplicate"));
    };
    if !session.state.is_terminal() {
        let provider = deps.provider(session.provider)?;
        let refreshed = Default::default();
        let closed = with_credentials!(deps, &req.tenant, session.provider, &refreshed, |ctx| {
            provider.end(&ctx, &session)
        });
        if let Err(e) = closed {
            // Not ended on the platform: a later agent end must read as the agent's.
            deps.store
                .append(&req.tenant, &req.session_id, None, |s| {
                    let mut data = s.provider_data.clone();
                    if let Some(map) = data.as_object_mut() {
                        map.remove("end_requested");
                    }
                    Ok((
                        vec![],
                        SessionChange {
                            provider_data: Some(data),
                            ..Default::default()
                        },
                    ))
                })
                .await?;
            return Err(e);
        }
    }
    let outcome = deps
        .store
        .append(&req.tenant, &req.session_id, None, |s| {
            if s.state.is_terminal() {
                return Ok((vec![], SessionChange::default()));
            }
            Ok((vec![end_event(EndedBy::User)], end_change(EndedBy::User)))
        })
        .await?;
    let AppendOutcome::Appended { session, .. } = outcome else {
        return Err(HandoffError::internal("unexpected duplicate"));
    };
    deps.push_pending(&req.tenant, &req.session_id, session.delivered_seq)
        .await;
    Ok(ended(session.ended_by))
}
