//! outbound-relay: customer messages and typing to the platform.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{HandoffError, Result};
use crate::metrics::{Metric, Record};
use crate::request::{OutboundRelayRequest, RelayAction};
use crate::store::MessageClaim;
use crate::with_credentials;

use super::Deps;

/// How long a claimed message is ours before a retry may send it.
const MESSAGE_LEASE_MS: i64 = 30_000;

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
        RelayAction::Message(message) => {
            let digest = hex::encode(Sha256::digest(message.text.as_bytes()));
            let claim = deps
                .store
                .claim_message(
                    &req.tenant,
                    &req.session_id,
                    &message.id,
                    &digest,
                    MESSAGE_LEASE_MS,
                )
                .await?;
            match claim {
                MessageClaim::AlreadySent(_) => Ok(json!({
                    "session_id": req.session_id, "message_id": message.id,
                    "status": "sent", "duplicate": true})),
                MessageClaim::InFlight => Err(HandoffError::Conflict(
                    "this message is being sent; retry".into(),
                )),
                MessageClaim::Claimed => {
                    let refreshed = Default::default();
                    let sent =
                        with_credentials!(deps, &req.tenant, session.provider, &refreshed, |ctx| {
                            provider.send_message(&ctx, &session, message)
                        });
                    deps.store_refreshed(&req.tenant, &req.session_id, refreshed)
                        .await?;
                    match sent {
                        Ok(platform_ref) => {
                            deps.store
                                .complete_message(
                                    &req.tenant,
                                    &req.session_id,
                                    &message.id,
                                    &platform_ref,
                                )
                                .await?;
                            Record::count(Metric::MessageRelayed)
                                .provider(session.provider)
                                .dimension("direction", "to_agent")
                                .property("tenant", req.tenant.to_string())
                                .property("session", req.session_id.as_str())
                                .emit();
                            Ok(
                                json!({"session_id": req.session_id, "message_id": message.id,
                                      "status": "sent", "duplicate": false}),
                            )
                        }
                        Err(e) => {
                            deps.store
                                .release_message(&req.tenant, &req.session_id, &message.id)
                                .await?;
                            Err(e)
                        }
                    }
                }
            }
        }
    }
}
