//! Salesforce Service Cloud Messaging (`salesforce_integration`), route A of
//! the spec: the Enhanced Chat / Messaging for In-App and Web (MIAW) API as a
//! custom client.
//!
//! Per handoff the relay is one end user: it mints an access token, creates
//! the conversation with `routingAttributes` (context and routing hints as
//! hidden pre-chat fields), sends the hand-over note and transcript as the
//! first message, then relays customer text and typing. Agent messages,
//! typing, joined / left and the session's end come from the SSE stream
//! (`/eventrouter/v1/sse`), held per conversation by the notification poller
//! ([`notifications`]); `reconcile()` reads *list entries*. User end: `DELETE
//! /conversation/{id}`. There are no webhooks: [`Provider::authenticate_webhook`]
//! refuses everything. Spec: `shared/providers/salesforce.md`; sources
//! relied on (via the project's search tool): the official
//! `Salesforce-Async-Messaging/messaging-web-api-sample-app`
//! (`messagingService.js`: endpoints, bodies, continuation token) and
//! third-party MIAW clients generated from Salesforce's Postman collection
//! (continuation "doesn't extend the JWT expiration time"; verified body
//! `authorizationType:"JWT"`, `customerIdentityToken`).
//!
//! # Tokens
//! The access token is per end user, i.e. per conversation. It is stored in
//! the session's provider data (`access_token`, renewed with
//! `ctx.remember`), like the Connect participant tokens: a bearer scoped to
//! this one chat, needed by every function, never logged. On 401 a call
//! renews once: in `verified` mode by signing a new `customerIdentityToken`
//! (RS256) for the same subject (`identity_subject` = our session id); in
//! `unauthenticated` mode with a continuation token, which keeps the old
//! `exp` and so cannot rescue an expired token — the stream then ends the
//! session (`ended_by: system`, spec §2.5). Handoffs that may outlive the
//! channel's token timeout (1 h by default) need `verified`.
//!
//! # Uncertain choices ([U] in the spec), all here
//! * [`U_VERIFIED_TOKEN_BODY`]: the verified-user token body is the
//!   unauthenticated one plus `authorizationType:"JWT"` and
//!   `customerIdentityToken` (seen in third-party clients, not in the spec).
//! * [`U_IDENTITY_TOKEN_TTL_SECS`]: our identity JWT lives 5 minutes (it is
//!   only exchanged at once).
//! * [`U_ATTRIBUTES_AS_PRECHAT_FIELDS`]: context and routing hints (flattened,
//!   routing keys prefixed `routing_`, plus `handoff_session_id` and
//!   `user_display_name`) go as `routingAttributes`; with `prechat_fields` in
//!   the secret only mapped names are sent, renamed, since unknown field
//!   names are likely refused. Values are cut to [`MAX_ATTRIBUTE_CHARS`].
//! * [`U_NO_SSE_BEFORE_CREATE`]: the conversation is created without first
//!   opening a stream (one third-party report says it may be needed).
//! * [`U_CLOSE_4XX_IS_DONE`]: closing answered 4xx (other than 401/403/408/429) means
//!   already closed; an anonymous token past its `exp` cannot close anything,
//!   so user end then counts as done (the platform's inactivity timeout ends it).
//! * [`U_TOKEN_EARLY_REFRESH_SECS`]: verified tokens are re-minted 60 s
//!   before `exp` (read from the JWT, never assumed).
//! * 417 on a send means the messaging session is over: `session_ended`.
//! * Ended by role: `SessionStatusChanged` `Ended` with `sessionEndedByRole`
//!   `Agent`/`Supervisor` → agent, `EndUser` → user, else system;
//!   `CloseConversation` → user; an Initial `RoutingResult` with a failure →
//!   system (no agent). A `RoutingResult` of type Transfer marks the next
//!   agent removal as a transfer. Chatbot messages are bot messages.
//! * Reconcile reads the newest 50 entries without `entryTypeFilter`, so it
//!   also sees `SessionStatusChanged` if the platform lists it.
//! * Customer typing off is sent (`TypingStoppedIndicator`).

pub mod api;
pub mod events;
pub mod notifications;
#[cfg(test)]
mod stub_tests;

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
use crate::time::now_ms;

use api::{jwt_exp, stable_uuid, AuthMode, ConversationAuth, SalesforceApi, TokenCache};

/// [U] verified token body: `authorizationType` + `customerIdentityToken`.
pub const U_VERIFIED_TOKEN_BODY: bool = true;
/// [U] lifetime of our customerIdentityToken.
pub const U_IDENTITY_TOKEN_TTL_SECS: i64 = 300;
/// [U] context and routing hints travel as routingAttributes (pre-chat fields).
pub const U_ATTRIBUTES_AS_PRECHAT_FIELDS: bool = true;
/// [U] no SSE stream is opened before creating the conversation.
pub const U_NO_SSE_BEFORE_CREATE: bool = true;
/// [U] close answered 4xx (not 401/403) = already closed.
pub const U_CLOSE_4XX_IS_DONE: bool = true;
/// [U] re-mint verified tokens this long before `exp`.
pub const U_TOKEN_EARLY_REFRESH_SECS: i64 = 60;
/// [U] longest routing attribute value we send.
pub const MAX_ATTRIBUTE_CHARS: usize = 255;

/// The Salesforce adapter. Holds the access tokens renewed in this process.
#[derive(Default)]
pub struct Salesforce {
    tokens: TokenCache,
}

impl Salesforce {
    pub fn new() -> Self {
        Self::default()
    }

    fn api<'a>(&'a self, ctx: &'a ProviderCtx<'a>) -> Result<SalesforceApi<'a>> {
        SalesforceApi::new(ctx, &self.tokens)
    }
}

/// The first message: hand-over note and transcript.
pub fn handoff_text(input: &StartInput<'_>) -> String {
    handoff_summary(input, crate::request::MAX_TEXT_CHARS)
}

/// `routingAttributes`: flat context and hints, optionally mapped to the
/// channel's pre-chat field names.
pub fn routing_attributes(
    input: &StartInput<'_>,
    prechat_fields: Option<&std::collections::HashMap<String, String>>,
) -> Map<String, Value> {
    let mut attrs = flat_attributes(input, MAX_ATTRIBUTE_CHARS);
    if let Some(name) = &input.user.display_name {
        let name: String = name.chars().take(MAX_ATTRIBUTE_CHARS).collect();
        attrs.insert("user_display_name".into(), json!(name));
    }
    match prechat_fields {
        None => attrs,
        Some(map) => attrs
            .into_iter()
            .filter_map(|(k, v)| map.get(&k).map(|field| (field.clone(), v)))
            .collect(),
    }
}

fn auth_of(session: &SessionRecord) -> Option<ConversationAuth> {
    ConversationAuth::of(session)
}

#[async_trait::async_trait]
impl Provider for Salesforce {
    fn key(&self) -> IntegrationKey {
        IntegrationKey::Salesforce
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
        let identity_subject = (api.creds.auth_mode == AuthMode::Verified)
            .then(|| input.session_id.as_str().to_owned());
        let token = api.new_token(identity_subject.as_deref()).await?.token;
        // Derived from the session, so a retried start targets the same conversation.
        let conversation_id = stable_uuid(&format!(
            "{}:{}:conversation",
            ctx.tenant.key(),
            input.session_id
        ));
        let routing = routing_attributes(input, api.creds.prechat_fields.as_ref());
        api.create_conversation(&token, &conversation_id, &routing)
            .await?;
        api.tokens.put(&ctx.tenant.key(), &conversation_id, &token);
        let auth = ConversationAuth {
            conversation_id: conversation_id.clone(),
            identity_subject: identity_subject.clone(),
            stored_token: Some(token.clone()),
        };
        let handoff_message_id = stable_uuid(&format!("{}:handoff", input.session_id));
        api.send_text(&auth, &handoff_message_id, &handoff_text(input))
            .await?;
        // A renewal during the first send would have been remembered; keep the newest.
        let token = api
            .tokens
            .get(&ctx.tenant.key(), &conversation_id)
            .unwrap_or(token);
        Ok(StartOutcome {
            conversation_id,
            provider_data: json!({
                "access_token": token,
                "identity_subject": identity_subject,
                "auth_mode": match api.creds.auth_mode {
                    AuthMode::Verified => "verified",
                    AuthMode::Unauthenticated => "unauthenticated",
                },
                "handoff_message_id": handoff_message_id,
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
        let auth = auth_of(session).ok_or(HandoffError::SessionEnded)?;
        // Stable per (session, message id): a retry is recognisable as a resend.
        let id = stable_uuid(&format!("{}:{}", session.session_id, message.id));
        let answer = api.send_text(&auth, &id, &message.text).await?;
        let entry = answer["conversationEntries"][0]["id"]
            .as_str()
            .unwrap_or(&id)
            .to_owned();
        Ok(json!({"salesforce_message_id": id, "salesforce_entry_id": entry}))
    }

    async fn send_typing(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
        typing: bool,
    ) -> Result<()> {
        let api = self.api(ctx)?;
        let auth = auth_of(session).ok_or(HandoffError::SessionEnded)?;
        api.send_typing(&auth, typing).await
    }

    async fn end(&self, ctx: &ProviderCtx<'_>, session: &SessionRecord) -> Result<()> {
        let Some(auth) = auth_of(session) else {
            return Ok(()); // nothing was opened on the platform
        };
        let api = self.api(ctx)?;
        let status = match api.close_conversation(&auth).await {
            Ok(s) => s,
            Err(HandoffError::ProviderAuth(_))
                if api.creds.auth_mode == AuthMode::Unauthenticated
                    && auth
                        .stored_token
                        .as_deref()
                        .and_then(jwt_exp)
                        .is_some_and(|exp| exp <= now_ms() / 1000) =>
            {
                tracing::info!(session = %session.session_id, "salesforce token expired; the platform ends the session itself");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if status.is_success() || (U_CLOSE_4XX_IS_DONE && crate::http::already_done(status)) {
            Ok(())
        } else {
            Err(crate::http::status_error(
                "salesforce close conversation",
                status,
                "",
            ))
        }
    }

    async fn check(&self, ctx: &ProviderCtx<'_>) -> Result<String> {
        let api = self.api(ctx)?;
        // A verified-mode token needs a subject; this one is never used for a chat.
        api.new_token(Some("config-check")).await?;
        Ok(format!(
            "MIAW access token obtained from {}",
            api.creds.base()
        ))
    }

    fn authenticate_webhook(
        &self,
        _credentials: &SecretJson,
        _request: &WebhookRequest<'_>,
    ) -> std::result::Result<(), WebhookRejection> {
        // Route A has no callbacks: everything arrives on the SSE stream.
        Err(WebhookRejection::Unauthenticated(
            "salesforce (MIAW) sends no webhooks",
        ))
    }

    fn parse_webhook(&self, _request: &WebhookRequest<'_>) -> Result<Vec<ProviderEvent>> {
        Err(HandoffError::invalid("salesforce (MIAW) sends no webhooks"))
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
    use std::collections::HashMap;

    fn with_input<R>(f: impl FnOnce(&StartInput<'_>) -> R) -> R {
        let session = SessionId::parse("conv-1").unwrap();
        let user = UserInfo {
            id: None,
            display_name: Some("Ada".into()),
            channel: None,
        };
        let transcript = vec![TranscriptEntry {
            role: "user".into(),
            text: "my order broke".into(),
            at: None,
        }];
        let context: Map<String, Value> =
            serde_json::from_value(json!({"reason": "refund", "customer_id": "C-42"})).unwrap();
        let routing: Map<String, Value> =
            serde_json::from_value(json!({"queue": "billing"})).unwrap();
        f(&StartInput {
            session_id: &session,
            user: &user,
            utterance: Some("I'll transfer you"),
            transcript: &transcript,
            context: &context,
            routing: &routing,
        })
    }

    #[test]
    fn routing_attributes_carry_context_and_can_be_mapped() {
        with_input(|input| {
            let all = routing_attributes(input, None);
            assert_eq!(all["customer_id"], "C-42");
            assert_eq!(all["routing_queue"], "billing");
            assert_eq!(all["user_display_name"], "Ada");
            let map: HashMap<String, String> =
                [("customer_id".to_owned(), "Customer_Id".to_owned())].into();
            let mapped = routing_attributes(input, Some(&map));
            assert_eq!(mapped.len(), 1);
            assert_eq!(mapped["Customer_Id"], "C-42");
            assert!(handoff_text(input).contains("Customer: my order broke"));
        });
    }

    #[test]
    fn webhooks_are_refused() {
        let headers = HashMap::new();
        let req = WebhookRequest {
            headers: &headers,
            body: b"{}",
            rest_path: "",
        };
        let creds = SecretJson::new(json!({}));
        assert!(Salesforce::new()
            .authenticate_webhook(&creds, &req)
            .is_err());
        assert!(Salesforce::new().parse_webhook(&req).is_err());
    }
}
