//! NICE CXone Digital (DFO) through Bring Your Own Channel (`nice_integration`).
//!
//! Configured per tenant by Brand ID, Channel ID and Environment; the DFO
//! host comes from the environment ([`api::ENVIRONMENTS`], `base_url`
//! overrides it for the simulator). The relay is the channel's "middleware":
//! customer text and typing go into the channel thread with the DFO 3.0 API
//! (access-key token, refreshed on expiry and on 401); CXone calls us back
//! below the registered URL `…/webhooks/nice/{account}/{project}/{env}` —
//! `POST /1.0/token` for a bearer token, then `/2.0/channel/{channelId}/outbound`
//! (agent messages) and `/1.0/channel/{channelId}/thread/{thread}/sender-action`
//! (agent typing). BYOC has no joined / left / closed callback, so the poller
//! reads each open contact ([`poll`]). Spec: `shared/providers/nice-cxone.md`.
//! Sources checked with the project's search tool: community BYOC middleware
//! samples (Express apps serving `/1.0/token`, `/2.0/channel/:channelId/outbound`
//! with the `{message, thread, recipients}` answer, and
//! `/1.0/channel/:channelId/thread/:thread/sender-action` answering 204).
//!
//! # Authenticity of callbacks
//! CXone signs nothing. Authenticity is the bearer token we issue from our own
//! token endpoint to the client credentials we gave the tenant's admin
//! (`byoc_client_id` / `byoc_client_secret`, rotation via
//! `byoc_client_secret_previous`); see [`webhook`]. Both the client secret and
//! the token are checked in constant time ([`crate::signature::secret_matches`])
//! on the raw request, before any event is parsed.
//!
//! # Our answers to CXone
//! `parse_webhook` cannot return a body, so [`Nice::webhook_response`] gives
//! the answer each callback needs: the token JSON for `/1.0/token`, the
//! `{message:{idOnExternalPlatform…}, thread, endUserIdentities, recipients}`
//! receipt for outbound, 204 for sender actions.
//!
//! # Uncertain choices ([U] in the spec), all here
//! * [`U_BYOC_TOKEN_SECS`]: our bearer tokens live 30 min (NICE's sample uses
//!   30 s); they are stateless HMAC tokens, so nothing is stored per token.
//! * [`U_THREAD_IS_SESSION`]: `thread.idOnExternalPlatform` = our session id,
//!   so callbacks name the session; message `idOnExternalPlatform` = our
//!   message id; the customer is `user.id` (else the session id).
//! * [`U_CONTACT_FROM_RESPONSE`]: the contact id is read from the create-message
//!   answer (`contactId`, `contact.id`, `case.id`, `caseId`), else found by
//!   searching open contacts for our channel + thread (spec §2).
//! * [`U_SUMMARY_AS_ONE_MESSAGE`]: the hand-over note and transcript go as one
//!   customer-authored message (bot turns as `outbound` messages are unverified).
//! * [`U_CONTEXT_AS_CUSTOM_FIELDS`]: context and routing hints become contact
//!   custom fields (`PUT …/custom-fields`, `{"customFields":[{ident,value}]}`);
//!   a refusal (fields not defined on the tenant) is logged, not fatal.
//!   `skill_id` / numeric `skill` or `queue` (or a name in `skills`) re-routes
//!   with `PUT …/routing-queue {"skillId"}`, also best effort.
//! * [`U_CUSTOMER_TYPING`]: customer typing goes as `isTypingOn/Off`
//!   sender-actions on the thread (documented for agents; integrator use unverified).
//! * [`U_POLL_INTERVAL`]: contacts are polled every 3 s (`NICE_POLL_MS`);
//!   assignee null→user = joined, user→other user = transfer (left + joined),
//!   user→null = left, status `resolved|closed|trashed` = ended (`agent` when
//!   assigned, else `system`), 404 = ended (`system`).
//! * [`U_CLOSE_4XX_IS_DONE`]: closing answered 404 or another 4xx (already
//!   closed) counts as done (not 401/403/408/429: see `http::already_done`).
//! * Agent message id: no event id is documented, so
//!   [`webhook::outbound_message_id`] digests thread, author, time and text;
//!   two identical texts by one agent with no timestamp would collapse [U].
//! * Sender actions have no id: identical bodies within 10 s are one delivery.
//! * Both path variants seen in community samples are routed (`/oauth/token`,
//!   `/channels/{channelId}/outbound`), and the legacy v1 `/1.0/posts/{id}/messages`.
//! * The OAuth issuer is `https://cxone.{domain}` of the environment (V for
//!   `niceincontact.com` only); the token endpoint comes from its discovery document.
//! * [`U_TOKEN_MEDIA_TYPES`]: the token call may be a form [V S5] or JSON [V S6];
//!   every other callback is JSON. Other types are answered 415.

pub mod api;
pub mod poll;
pub mod webhook;

use std::time::Duration;

use reqwest::StatusCode;
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

use api::{id_string, DfoApi, NiceCredentials, TokenCache};

/// [U] lifetime of the bearer tokens we issue to CXone, seconds.
pub const U_BYOC_TOKEN_SECS: u64 = 1800;
/// [U] the thread is named by our session id.
pub const U_THREAD_IS_SESSION: bool = true;
/// [U] answer fields that may carry the contact id, in order.
pub const U_CONTACT_FROM_RESPONSE: [&str; 4] = ["/contactId", "/contact/id", "/case/id", "/caseId"];
/// [U] one message carries the hand-over note and transcript.
pub const U_SUMMARY_AS_ONE_MESSAGE: bool = true;
/// [U] context travels as contact custom fields.
pub const U_CONTEXT_AS_CUSTOM_FIELDS: bool = true;
/// [U] customer typing as thread sender-actions.
pub const U_CUSTOMER_TYPING: bool = true;
/// [U] how often open contacts are read.
pub const U_POLL_INTERVAL: Duration = Duration::from_secs(3);
/// [U] media types of the token call (other callbacks: JSON only).
pub const U_TOKEN_MEDIA_TYPES: &[&str] = &[
    "application/x-www-form-urlencoded",
    crate::providers::JSON_MEDIA_TYPE,
];
/// [U] a 4xx on closing an already closed contact = done.
pub const U_CLOSE_4XX_IS_DONE: bool = true;
/// Longest custom field value we send (project limit).
pub const MAX_CUSTOM_FIELD_CHARS: usize = 1024;

/// The NICE adapter. Holds the DFO token cache shared by all tenants.
#[derive(Default)]
pub struct Nice {
    tokens: TokenCache,
}

impl Nice {
    pub fn new() -> Self {
        Self::default()
    }

    fn api<'a>(&'a self, ctx: &'a ProviderCtx<'a>) -> Result<DfoApi<'a>> {
        DfoApi::new(ctx, &self.tokens)
    }

    /// The HTTP answer CXone expects for an authenticated callback (token
    /// JSON, outbound receipt, 204), or `None` for the service's default.
    /// Proposed as `Provider::webhook_response`; see the module docs.
    pub fn webhook_response(
        &self,
        credentials: &SecretJson,
        request: &WebhookRequest<'_>,
    ) -> Option<(u16, Value)> {
        let creds: NiceCredentials = credentials.parse("nice_integration").ok()?;
        webhook::response(&creds, request, now_ms() / 1000)
    }
}

fn end_user(id: &str, name: Option<&str>) -> Value {
    let name = name.unwrap_or_default();
    json!({"idOnExternalPlatform": id, "firstName": name, "lastName": "", "nickname": name})
}

/// A DFO create-message body (spec §2 #1).
pub fn message_body(thread: &str, message_id: &str, text: &str, customer: &Value) -> Value {
    let text: String = text.chars().take(crate::request::MAX_TEXT_CHARS).collect();
    json!({
        "idOnExternalPlatform": message_id,
        "thread": {"idOnExternalPlatform": thread},
        "messageContent": {"type": "TEXT", "payload": {"text": text}},
        "createdAtWithMilliseconds": rfc3339_ms(now_ms()),
        "direction": "inbound",
        "authorEndUserIdentity": customer,
    })
}

/// The contact id in a create-message answer, if it has one [U].
pub fn contact_in_answer(answer: &Value) -> Option<String> {
    U_CONTACT_FROM_RESPONSE
        .iter()
        .find_map(|p| answer.pointer(p).and_then(id_string))
}

/// A skill id from the routing hints: `skill_id`, or a numeric / mapped `skill` or `queue`.
pub fn skill_of(
    routing: &Map<String, Value>,
    skills: &std::collections::HashMap<String, u64>,
) -> Option<u64> {
    ["skill_id", "skill", "queue"]
        .iter()
        .find_map(|k| match routing.get(*k)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s
                .trim()
                .parse()
                .ok()
                .or_else(|| skills.get(s.trim()).copied()),
            _ => None,
        })
}

fn best_effort(what: &str, outcome: Result<()>) -> Result<()> {
    match outcome {
        Err(HandoffError::ProviderRejected(e)) => {
            tracing::warn!(call = what, error = %e, "nice refused; continuing");
            Ok(())
        }
        other => other,
    }
}

fn customer_of(session: &SessionRecord) -> Value {
    let id = session.provider_data["customer_id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| session.session_id.to_string());
    end_user(&id, session.handoff["user"]["display_name"].as_str())
}

#[async_trait::async_trait]
impl Provider for Nice {
    fn key(&self) -> IntegrationKey {
        IntegrationKey::Nice
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            customer_typing: U_CUSTOMER_TYPING,
            agent_typing: true,
            agent_joined: true,
            agent_left: true,
        }
    }

    async fn start(&self, ctx: &ProviderCtx<'_>, input: &StartInput<'_>) -> Result<StartOutcome> {
        let api = self.api(ctx)?;
        let thread = input.session_id.as_str();
        let customer_id = input.user.id.clone().unwrap_or_else(|| thread.to_owned());
        let customer = end_user(&customer_id, input.user.display_name.as_deref());
        let handoff_id = format!("{thread}:handoff");
        let summary = handoff_summary(input, crate::request::MAX_TEXT_CHARS);
        let answer = api
            .create_message(&message_body(thread, &handoff_id, &summary, &customer))
            .await?;
        let contact_id = match contact_in_answer(&answer) {
            Some(id) => id,
            None => api.find_contact(thread).await?.ok_or_else(|| {
                HandoffError::ProviderUnavailable("nice: no contact for the new thread".into())
            })?,
        };
        let fields = flat_attributes(input, MAX_CUSTOM_FIELD_CHARS);
        best_effort(
            "nice custom fields",
            api.set_custom_fields(&contact_id, &fields).await,
        )?;
        if let Some(skill) = skill_of(input.routing, &api.creds.skills) {
            best_effort(
                "nice routing queue",
                api.route_to_skill(&contact_id, skill).await,
            )?;
        }
        Ok(StartOutcome {
            conversation_id: contact_id.clone(),
            provider_data: json!({
                "contact_id": contact_id,
                "thread_id": thread,
                "channel_id": api.creds.channel_id,
                "customer_id": customer_id,
                "handoff_message_id": id_string(&answer["id"]),
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
        let body = message_body(
            session.session_id.as_str(),
            &message.id,
            &message.text,
            &customer_of(session),
        );
        let answer = api.create_message(&body).await?;
        Ok(json!({"nice_message_id": id_string(&answer["id"])}))
    }

    async fn send_typing(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
        typing: bool,
    ) -> Result<()> {
        self.api(ctx)?
            .sender_action(session.session_id.as_str(), typing)
            .await
    }

    async fn end(&self, ctx: &ProviderCtx<'_>, session: &SessionRecord) -> Result<()> {
        let Some(cid) = session.provider_conversation_id.as_deref() else {
            return Ok(()); // nothing was opened on the platform
        };
        let status = self.api(ctx)?.set_status(cid, "closed").await?;
        if status.is_success() || status == StatusCode::NOT_FOUND || U_CLOSE_4XX_IS_DONE {
            Ok(())
        } else {
            Err(crate::http::status_error("nice close contact", status, ""))
        }
    }

    async fn check(&self, ctx: &ProviderCtx<'_>) -> Result<String> {
        let api = self.api(ctx)?;
        api.token().await?;
        Ok(format!("DFO token obtained for {}", api.creds.dfo_base()?))
    }

    fn authenticate_webhook(
        &self,
        credentials: &SecretJson,
        request: &WebhookRequest<'_>,
    ) -> std::result::Result<(), WebhookRejection> {
        let creds: NiceCredentials = credentials
            .parse("nice_integration")
            .map_err(|_| WebhookRejection::Unauthenticated("integration not configured"))?;
        webhook::authenticate(&creds, request, now_ms() / 1000)
    }

    fn webhook_media_types(&self, rest_path: &str) -> &'static [&'static str] {
        match webhook::route(rest_path) {
            Some(webhook::Callback::Token) => U_TOKEN_MEDIA_TYPES,
            _ => &[crate::providers::JSON_MEDIA_TYPE],
        }
    }

    fn parse_webhook(&self, request: &WebhookRequest<'_>) -> Result<Vec<ProviderEvent>> {
        webhook::parse(request)
    }

    fn webhook_response(
        &self,
        credentials: &SecretJson,
        request: &WebhookRequest<'_>,
    ) -> Option<(u16, Value)> {
        Nice::webhook_response(self, credentials, request)
    }

    fn notifications(&self) -> Option<&dyn NotificationSource> {
        Some(self)
    }
}

#[cfg(test)]
mod tests;
