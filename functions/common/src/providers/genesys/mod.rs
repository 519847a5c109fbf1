//! Genesys Cloud Open Messaging (`genesys_integration`).
//!
//! Customer text and typing go in through the Open Messaging inbound API; agent
//! text and typing come back on the integration's signed outbound webhook;
//! joined / left / ended come from the Notifications API WebSocket, held by the
//! poller. Spec: `shared/providers/genesys.md`. Sources relied on (via the
//! project's search tool): MyPureCloud platform-client-sdk-python (models
//! `OpenInboundNormalizedMessage`, `OpenNormalizedMessage`, `NotificationsApi`),
//! developer.genesys.cloud "Validate webhook notifications", microsoft/Agents
//! `genesys-handoff` sample.
//!
//! # Uncertain choices ([U] in the spec), all here
//! * [`U_FROM_ID_IS_SESSION`]: `channel.from.id` = our session id, so Genesys
//!   threads one conversation per session and the webhook's `channel.to.id`
//!   names the session.
//! * [`U_CONTEXT_AS_CUSTOM_ATTRIBUTES`]: context and routing hints go as
//!   `channel.metadata.customAttributes` (participant data an Architect
//!   inbound-message flow routes on); the transcript goes as the first message.
//! * [`U_TYPING_OFF_IS_NOOP`]: Genesys has no "typing off" event; `typing:false` sends nothing.
//! * [`U_DISCONNECT_4XX_IS_DONE`]: a 4xx on disconnecting an already-ended
//!   conversation counts as done (not 401/403/408/429: see `http::already_done`).
//! * Agent display name from `GET /api/v2/users/{id}`; typing `duration` ignored.
//! * `customer.end` after our own disconnect is reported as `ended_by: user`
//!   (we mark the session `end_requested` before disconnecting).

pub mod api;
pub mod notifications;
pub mod webhook;

use serde_json::{json, Map, Value};

use crate::domain::IntegrationKey;
use crate::error::{HandoffError, Result};
use crate::providers::{
    flat_attributes, handoff_summary, Capabilities, NotificationSource, Provider, ProviderCtx,
    ProviderEvent, StartInput, StartOutcome, WebhookRejection, WebhookRequest,
};
use crate::request::CustomerMessage;
use crate::secrets::SecretJson;
use crate::store::SessionRecord;
use crate::time::{now_ms, rfc3339_ms};

use api::{GenesysApi, GenesysCredentials, TokenCache};

/// [U] `from.id` is the session id (see module docs).
pub const U_FROM_ID_IS_SESSION: bool = true;
/// [U] context and routing hints travel as customAttributes.
pub const U_CONTEXT_AS_CUSTOM_ATTRIBUTES: bool = true;
/// [U] there is no typing-off signal to send.
pub const U_TYPING_OFF_IS_NOOP: bool = true;
/// [U] disconnect answered 4xx on an ended conversation = done.
pub const U_DISCONNECT_4XX_IS_DONE: bool = true;
/// Longest customAttribute value we send; longer values are cut (project limit).
pub const MAX_ATTRIBUTE_CHARS: usize = 1024;

/// The Genesys adapter. Holds the OAuth token cache shared by all tenants.
#[derive(Default)]
pub struct Genesys {
    tokens: TokenCache,
}

impl Genesys {
    pub fn new() -> Self {
        Self::default()
    }

    fn api<'a>(&'a self, ctx: &'a ProviderCtx<'a>) -> Result<GenesysApi<'a>> {
        GenesysApi::new(ctx, &self.tokens)
    }
}

/// The first inbound message: hand-over note and transcript.
pub fn handoff_text(input: &StartInput<'_>) -> String {
    handoff_summary(input, crate::request::MAX_TEXT_CHARS)
}

/// Context and routing hints flattened to string customAttributes.
pub fn custom_attributes(input: &StartInput<'_>) -> Map<String, Value> {
    flat_attributes(input, MAX_ATTRIBUTE_CHARS)
}

fn from_party(session: &str, nickname: Option<&str>) -> Value {
    let mut from = json!({"id": session, "idType": "Opaque"});
    if let Some(n) = nickname {
        from["nickname"] = json!(n);
        from["firstName"] = json!(n);
    }
    from
}

#[async_trait::async_trait]
impl Provider for Genesys {
    fn key(&self) -> IntegrationKey {
        IntegrationKey::Genesys
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            customer_typing: true,
            agent_typing: true,
            agent_joined: true,
            agent_left: true,
        }
    }

    async fn start(&self, ctx: &ProviderCtx<'_>, input: &StartInput<'_>) -> Result<StartOutcome> {
        let api = self.api(ctx)?;
        let body = json!({
            "channel": {
                "messageId": format!("{}:handoff", input.session_id),
                "from": from_party(input.session_id.as_str(), input.user.display_name.as_deref()),
                "time": rfc3339_ms(now_ms()),
                "metadata": {"customAttributes": custom_attributes(input)},
            },
            "text": handoff_text(input),
        });
        let answer = api.send_inbound_message(&body, true).await?;
        let conversation_id = answer
            .get("conversationId")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                HandoffError::ProviderUnavailable(
                    "genesys inbound message: no conversationId".into(),
                )
            })?
            .to_owned();
        Ok(StartOutcome {
            conversation_id,
            provider_data: json!({
                "from_id": input.session_id.as_str(),
                "integration_id": api.creds.integration_id,
                "handoff_message_id": answer.get("id"),
            }),
        })
    }

    async fn send_message(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
        message: &CustomerMessage,
    ) -> Result<Value> {
        let api = self.api(ctx)?;
        let nickname = session.handoff["user"]["display_name"].as_str();
        let body = json!({
            "channel": {
                "messageId": message.id,
                "from": from_party(session.session_id.as_str(), nickname),
                "time": rfc3339_ms(now_ms()),
            },
            "text": message.text,
        });
        let answer = api.send_inbound_message(&body, false).await?;
        Ok(json!({"genesys_message_id": answer.get("id")}))
    }

    async fn send_typing(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
        typing: bool,
    ) -> Result<()> {
        if !typing && U_TYPING_OFF_IS_NOOP {
            return Ok(());
        }
        let api = self.api(ctx)?;
        let body = json!({
            "channel": {
                "from": from_party(session.session_id.as_str(), None),
                "time": rfc3339_ms(now_ms()),
            },
            "events": [{"eventType": "Typing", "typing": {"type": "On"}}],
        });
        api.send_inbound_event(&body).await?;
        Ok(())
    }

    async fn end(&self, ctx: &ProviderCtx<'_>, session: &SessionRecord) -> Result<()> {
        let Some(cid) = &session.provider_conversation_id else {
            return Ok(()); // nothing was opened on the platform
        };
        let api = self.api(ctx)?;
        let conversation = api.conversation(cid).await?;
        let customer = conversation["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["purpose"] == "customer");
        let Some(customer) = customer else {
            return Err(HandoffError::ProviderRejected(
                "genesys conversation has no customer participant".into(),
            ));
        };
        if customer["state"] == "disconnected" {
            return Ok(());
        }
        let pid = customer["id"].as_str().unwrap_or_default();
        let status = api.disconnect_participant(cid, pid).await?;
        if status.is_success() || (U_DISCONNECT_4XX_IS_DONE && crate::http::already_done(status)) {
            Ok(())
        } else {
            Err(crate::http::status_error(
                "genesys disconnect participant",
                status,
                "",
            ))
        }
    }

    async fn check(&self, ctx: &ProviderCtx<'_>) -> Result<String> {
        let api = self.api(ctx)?;
        api.token().await?;
        Ok(format!(
            "OAuth client-credentials token obtained from {}",
            api.creds.login_base()?
        ))
    }

    fn authenticate_webhook(
        &self,
        credentials: &SecretJson,
        request: &WebhookRequest<'_>,
    ) -> std::result::Result<(), WebhookRejection> {
        let creds: GenesysCredentials = credentials
            .parse("genesys_integration")
            .map_err(|_| WebhookRejection::Unauthenticated("integration not configured"))?;
        webhook::authenticate(
            &creds,
            request
                .headers
                .get(webhook::SIGNATURE_HEADER)
                .map(String::as_str),
            request.body,
        )
    }

    fn parse_webhook(&self, request: &WebhookRequest<'_>) -> Result<Vec<ProviderEvent>> {
        webhook::parse(request.body)
    }

    fn notifications(&self) -> Option<&dyn NotificationSource> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SessionId;
    use crate::request::{TranscriptEntry, UserInfo};

    #[test]
    fn handoff_text_and_attributes_carry_context() {
        let session = SessionId::parse("conv-1").unwrap();
        let user = UserInfo {
            id: None,
            display_name: Some("Ada".into()),
            channel: None,
        };
        let transcript = vec![
            TranscriptEntry {
                role: "user".into(),
                text: "my order broke".into(),
                at: None,
            },
            TranscriptEntry {
                role: "assistant".into(),
                text: "sorry!".into(),
                at: None,
            },
        ];
        let context: Map<String, Value> = serde_json::from_value(
            json!({"reason": "refund", "customer_id": "C-42", "verified": true}),
        )
        .unwrap();
        let routing: Map<String, Value> =
            serde_json::from_value(json!({"queue": "billing"})).unwrap();
        let input = StartInput {
            session_id: &session,
            user: &user,
            utterance: Some("I'll transfer you"),
            transcript: &transcript,
            context: &context,
            routing: &routing,
        };
        let text = handoff_text(&input);
        assert!(text.contains("Reason: refund"));
        assert!(text.contains("Customer: my order broke"));
        assert!(text.contains("Assistant: sorry!"));
        let attrs = custom_attributes(&input);
        assert_eq!(attrs["customer_id"], "C-42");
        assert_eq!(attrs["verified"], "true");
        assert_eq!(attrs["routing_queue"], "billing");
        assert_eq!(attrs["handoff_session_id"], "conv-1");
    }
}
