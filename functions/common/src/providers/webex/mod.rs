//! Webex Contact Center, Bring Your Own custom messaging channel (`webex_integration`).
//!
//! Route A of the spec (a **Beta** feature: the org must be enabled by Cisco).
//! Start: one Create Task whose first customer message is the hand-over note
//! and transcript, routing hints and context as `globalVariables`; the task id
//! is our conversation id. Customer text: Append Message. User end: End Task.
//! Agent and flow messages arrive on the custom messaging asset's webhook,
//! lifecycle (`task:*`) on Subscriptions webhooks; both are CloudEvents signed
//! with a hex HMAC-SHA256 `X-WebexCC-Signature` checked on the raw bytes with
//! the current or previous secret ([`webhook`]). Tokens: Service App refresh
//! grant, refreshed before expiry and on 401/403 ([`api`]).
//! Spec: `shared/providers/webex.md`. Sources checked with the search tool:
//! `wazquez/byoc-wxcc` (`src/core/wxcc/tasks-client.ts`, `token-manager.ts`),
//! developer.webex.com "Using Webhooks", public WxCC `task:connected` fixtures.
//!
//! # Gaps of the platform (no client event is invented for them)
//! * **No agent typing**: WxCC sends nothing while an agent types, so
//!   `agent_typing: false` and `LIVE_AGENT_TYPING` is never emitted.
//! * No customer typing API in the BYO channel: `send_typing` sends nothing
//!   (`customer_typing: false`).
//! * No failure event for agent messages that could not be delivered (W1).
//!
//! # Uncertain choices ([U] in the spec), all here
//! * [`U_TASKS_API_VERSION`]: `/v2/tasks`. The guide documents `/v1`, live
//!   testing (W4) needed `/v2` for Create Task; we follow the platform. Append
//!   and End use the same version; `tasks_api_version` in the secret overrides.
//! * [`U_ORIGIN_IS_SESSION`]: `origin.id` is our session id (one task per
//!   session, so an earlier session of the same customer left open cannot
//!   cause `CONVERSATION_ALREADY_OPEN`); the customer's own id and name go as
//!   `origin.name` and `globalVariables.customer_user_id`.
//! * [`U_GLOBAL_VARIABLES`]: context keys, then routing hints under their own
//!   names (a hint wins over a context key of the same name), plus
//!   `handoff_session_id`, all as strings of at most [`MAX_VARIABLE_CHARS`];
//!   the flow must define variables of these names to route on them.
//! * [`U_ALIAS_ID`]: `aliasId` is a name-based UUID (RFC 9562 version 8 over
//!   SHA-256 of `session:message id`), so a retried call reuses it; the guide
//!   asks only for a UUID (v5 needs SHA-1, which the crate does not carry).
//! * [`U_AGENT_NAME_FIELDS`]: WxCC payloads name agents by id only. The
//!   display name is taken from `data.agentName` / `data.agent.name` /
//!   `data.agent.displayName` when present (the simulator sends `agentName`),
//!   else the client event has no name (the widget shows a generic one).
//! * `task:connected` on an already active task is a transfer (LEFT then
//!   JOINED); `task:parked` after a join is LEFT (back to queued);
//!   [`U_RONA_REASON`]: a `task:ended` whose reason mentions RONA is a
//!   re-queue (LEFT), not an end. `task:failed` ends the session (`system`).
//! * Token 403 is treated like 401 (W4 saw expired Service App tokens as 403).
//!   A rotated refresh token is kept in this process's memory and a warning
//!   asks the operator to write it back; it is not stored in the session
//!   table (provider data holds no secrets). The secret's refresh token is
//!   tried again when a rotated one is refused.
//! * End Task answered 404/409 (task already closed) counts as done.
//! * Bad signatures are answered 401 as DESIGN requires, although Cisco's
//!   sample answers 200 to avoid subscriptions turning `inactive` (W2, W5).
//! * Route B (Webex Connect flow bridge) is not implemented here.
//! * [`U_WEBHOOK_MEDIA_TYPES`]: webhooks come as `application/json`; the
//!   structured CloudEvents type is accepted too, since the envelope is one.
//!   Anything else is answered 415.

pub mod api;
pub mod webhook;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::domain::IntegrationKey;
use crate::error::{HandoffError, Result};
use crate::providers::{
    handoff_summary, Capabilities, Provider, ProviderCtx, ProviderEvent, StartInput, StartOutcome,
    WebhookRejection, WebhookRequest,
};
use crate::request::CustomerMessage;
use crate::secrets::SecretJson;
use crate::store::SessionRecord;
use crate::time::now_ms;

use api::{TokenCache, WebexCredentials, WxccApi};

/// [U] media types of the asset and subscription webhooks.
pub const U_WEBHOOK_MEDIA_TYPES: &[&str] = &[
    crate::providers::JSON_MEDIA_TYPE,
    "application/cloudevents+json",
];
/// [U] tasks path version (see module docs).
pub const U_TASKS_API_VERSION: &str = "v2";
/// [U] `origin.id` is the session id.
pub const U_ORIGIN_IS_SESSION: bool = true;
/// [U] context and routing hints travel as `globalVariables`.
pub const U_GLOBAL_VARIABLES: bool = true;
/// [U] name-based `aliasId`.
pub const U_ALIAS_ID: &str = "uuid-v8-sha256";
/// [U] where an agent's display name may be found in an event's `data`.
pub const U_AGENT_NAME_FIELDS: [&str; 3] = ["/agentName", "/agent/name", "/agent/displayName"];
/// [U] a `task:ended` reason containing this (lower case) is a re-queue.
pub const U_RONA_REASON: &str = "rona";
/// Longest text we send in one message (the relay's own limit; W1 states none).
pub const MAX_TEXT_CHARS: usize = crate::request::MAX_TEXT_CHARS;
/// Longest `globalVariables` value we send (project limit).
pub const MAX_VARIABLE_CHARS: usize = 1024;

/// The adapter; holds the token cache shared by all tenants.
#[derive(Default)]
pub struct Webex {
    tokens: TokenCache,
}

impl Webex {
    pub fn new() -> Self {
        Self::default()
    }

    fn api<'a>(&'a self, ctx: &'a ProviderCtx<'a>) -> Result<WxccApi<'a>> {
        WxccApi::new(ctx, &self.tokens)
    }
}

/// A stable UUID for one of our messages (see [`U_ALIAS_ID`]).
pub fn alias_id(session: &str, message_id: &str) -> String {
    let digest = Sha256::digest(format!("{session}:{message_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// `globalVariables` of the Create Task (see [`U_GLOBAL_VARIABLES`]).
pub fn global_variables(input: &StartInput<'_>) -> Map<String, Value> {
    let mut vars = Map::new();
    let mut put = |key: &str, value: &Value| {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        vars.insert(
            key.to_owned(),
            Value::String(text.chars().take(MAX_VARIABLE_CHARS).collect()),
        );
    };
    for (k, v) in input.context {
        put(k, v);
    }
    for (k, v) in input.routing {
        put(k, v);
    }
    if let Some(id) = &input.user.id {
        put("customer_user_id", &json!(id));
    }
    put("handoff_session_id", &json!(input.session_id.as_str()));
    vars
}

fn text_message(alias: &str, text: &str) -> Value {
    json!({"type": "text", "message": {
        "aliasId": alias,
        "text": text.chars().take(MAX_TEXT_CHARS).collect::<String>(),
        "timestamp": now_ms(),
    }})
}

/// The Create Task body (spec §2).
pub fn create_task_body(creds: &WebexCredentials, input: &StartInput<'_>) -> Value {
    let session = input.session_id.as_str();
    let name = input
        .user
        .display_name
        .clone()
        .unwrap_or_else(|| "Customer".to_owned());
    json!({
        "origin": {"id": session, "name": name},
        "destination": {"id": creds.business_address, "type": "businessAddress"},
        "channelType": "customMessaging",
        "channel": creds.channel_name,
        "globalVariables": global_variables(input),
        "channelParams": text_message(&alias_id(session, "handoff"), &handoff_summary(input, MAX_TEXT_CHARS)),
    })
}

fn task_id(session: &SessionRecord) -> Result<&str> {
    session
        .provider_conversation_id
        .as_deref()
        .ok_or_else(|| HandoffError::internal("webex session without a task id"))
}

#[async_trait::async_trait]
impl Provider for Webex {
    fn key(&self) -> IntegrationKey {
        IntegrationKey::Webex
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            customer_typing: false,
            agent_typing: false,
            agent_joined: true,
            agent_left: true,
        }
    }

    async fn start(&self, ctx: &ProviderCtx<'_>, input: &StartInput<'_>) -> Result<StartOutcome> {
        let api = self.api(ctx)?;
        let body = create_task_body(&api.creds, input);
        let task = api.create_task(&body).await?;
        Ok(StartOutcome {
            conversation_id: task.clone(),
            provider_data: json!({
                "task_id": task,
                "org_id": api.creds.org_id,
                "origin_id": input.session_id.as_str(),
                "handoff_alias_id": body["channelParams"]["message"]["aliasId"],
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
        let alias = alias_id(session.session_id.as_str(), &message.id);
        let body = json!({"mediaType": "customMessaging",
            "channelParams": text_message(&alias, &message.text)});
        api.append_message(task_id(session)?, &body).await?;
        Ok(json!({"webex_alias_id": alias}))
    }

    async fn send_typing(&self, _: &ProviderCtx<'_>, _: &SessionRecord, _: bool) -> Result<()> {
        // The BYO channel has no typing API (spec §2 [U]).
        Ok(())
    }

    async fn end(&self, ctx: &ProviderCtx<'_>, session: &SessionRecord) -> Result<()> {
        let Some(task) = session.provider_conversation_id.as_deref() else {
            return Ok(()); // nothing was opened on the platform
        };
        self.api(ctx)?.end_task(task).await
    }

    async fn check(&self, ctx: &ProviderCtx<'_>) -> Result<String> {
        self.api(ctx)?.token().await?;
        Ok("Webex access token obtained".into())
    }

    fn authenticate_webhook(
        &self,
        credentials: &SecretJson,
        request: &WebhookRequest<'_>,
    ) -> std::result::Result<(), WebhookRejection> {
        let creds: WebexCredentials = credentials
            .parse("webex_integration")
            .map_err(|_| WebhookRejection::Unauthenticated("integration not configured"))?;
        webhook::authenticate_now(
            &creds,
            request
                .headers
                .get(webhook::SIGNATURE_HEADER)
                .map(String::as_str),
            request
                .headers
                .get(webhook::TIMESTAMP_HEADER)
                .map(String::as_str),
            request.body,
        )
    }

    fn webhook_media_types(&self, _rest_path: &str) -> &'static [&'static str] {
        U_WEBHOOK_MEDIA_TYPES
    }

    fn parse_webhook(&self, request: &WebhookRequest<'_>) -> Result<Vec<ProviderEvent>> {
        webhook::parse(request.body)
    }
}

#[cfg(test)]
mod tests;
