//! Zendesk Messaging through Sunshine Conversations (`zendesk_integration`).
//!
//! Start: find-or-create the user by external id, create a personal
//! conversation, take control with our switchboard integration, post the
//! hand-over note (business author), then `passControl` to the Agent Workspace
//! with routing hints as ticket metadata. Customer text: user-authored
//! messages. User end: a business note, then control back to us. Agent traffic
//! and the ticket closing arrive on the integration's webhook ([`webhook`]),
//! authenticated by `X-API-Key`. Spec: `shared/providers/zendesk.md`; sources
//! relied on: zendesk/sunshine-conversations-api-spec `openapi.yaml`,
//! botpress `zendesk-messaging-hitl`, Zendesk help-center articles.
//!
//! # Gaps of the platform (no client event is invented for them)
//! * No customer typing: a user-authored activity may only be `conversation:read`.
//! * No agent typing for personal conversations (a business `conversation:typing`
//!   is mapped if one ever arrives).
//! * No joined/left events: `LIVE_AGENT_JOINED` is derived once from the first
//!   agent message, and a message from another agent id is a transfer
//!   (`LIVE_AGENT_LEFT` then `LIVE_AGENT_JOINED`), in `service::inbound::decide`.
//!
//! # Uncertain choices ([U] in the spec), all here
//! * [`U_ROUTING_METADATA`]: routing hints go as `dataCapture.*` passControl
//!   metadata: `group_id`/`queue` → `dataCapture.systemField.group_id`, `tags`
//!   → `dataCapture.systemField.tags` (space separated), other keys through
//!   the tenant's `field_map` to `dataCapture.ticketField.<id>`.
//! * [`U_OWN_POSTS_BY_SOURCE`]: our own posts echo back with
//!   `source.type = api:conversations`; only business messages from another
//!   source are agent messages.
//! * `switchboard:releaseControl`, a passControl away from the Agent Workspace
//!   with `reason` `ticketClosed`/`transferToEmail`, a `ticket:closed` activity
//!   and `conversation:remove` all end the session; the first one wins.
//! * User end = business note + passControl back to our integration (an
//!   integration-scoped key may not release control it does not hold).

pub mod api;
pub mod webhook;

use serde_json::{json, Map, Value};

use crate::domain::IntegrationKey;
use crate::error::{HandoffError, Result};
use crate::providers::{
    handoff_summary, Capabilities, Provider, ProviderCtx, ProviderEvent, StartInput, StartOutcome,
    WebhookRejection, WebhookRequest,
};
use crate::request::CustomerMessage;
use crate::secrets::SecretJson;
use crate::store::SessionRecord;

use api::{SunshineApi, ZendeskCredentials};

/// [U] routing hints become `dataCapture.*` metadata.
pub const U_ROUTING_METADATA: bool = true;
/// [U] own posts are recognised by `source.type`.
pub const U_OWN_POSTS_BY_SOURCE: &str = "api:conversations";
/// Sunshine Conversations: text content at most 4,096 characters [V SPEC].
pub const MAX_TEXT_CHARS: usize = 4096;
/// Metadata values are flat and the object at most 4 KB [V SPEC].
pub const MAX_METADATA_VALUE_CHARS: usize = 512;

/// The adapter (stateless: Basic auth has nothing to refresh).
#[derive(Default)]
pub struct Zendesk;

impl Zendesk {
    pub fn new() -> Self {
        Self
    }
}

/// External id of the customer's user: one per session.
pub fn external_id(session: &str) -> String {
    format!("relay:{session}")
}

/// The passControl metadata that creates the ticket and routes it.
pub fn ticket_metadata(
    creds: &ZendeskCredentials,
    input: &StartInput<'_>,
    first_message_id: &str,
) -> Map<String, Value> {
    let mut meta = Map::new();
    let cut = |v: &Value| -> Value {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        };
        Value::String(s.chars().take(MAX_METADATA_VALUE_CHARS).collect())
    };
    meta.insert("first_message_id".into(), json!(first_message_id));
    let mut tags = vec!["ai_handoff".to_owned()];
    for (k, v) in input.routing.iter().chain(input.context.iter()) {
        match k.as_str() {
            "group_id" | "queue" | "group" => {
                meta.insert("dataCapture.systemField.group_id".into(), cut(v));
            }
            "tags" => {
                if let Value::String(s) = cut(v) {
                    tags.extend(
                        s.split([' ', ','])
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned),
                    );
                }
            }
            other => {
                if let Some(field) = creds.field_map.get(other).and_then(Value::as_str) {
                    meta.insert(format!("dataCapture.ticketField.{field}"), cut(v));
                }
            }
        }
    }
    meta.insert("dataCapture.systemField.tags".into(), json!(tags.join(" ")));
    if let Some(name) = &input.user.display_name {
        meta.insert(
            "dataCapture.systemField.requester.name".into(),
            cut(&json!(name)),
        );
    }
    meta
}

#[async_trait::async_trait]
impl Provider for Zendesk {
    fn key(&self) -> IntegrationKey {
        IntegrationKey::Zendesk
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            customer_typing: false,
            agent_typing: false,
            agent_joined: false,
            agent_left: false,
        }
    }

    async fn start(&self, ctx: &ProviderCtx<'_>, input: &StartInput<'_>) -> Result<StartOutcome> {
        let api = SunshineApi::new(ctx)?;
        let external = external_id(input.session_id.as_str());
        api.ensure_user(&external, input.user.display_name.as_deref())
            .await?;
        let conversation_id = match api.find_conversation(&external).await? {
            Some(id) => id, // a retried start reuses what a failed one created
            None => {
                api.create_conversation(&external, input.session_id.as_str())
                    .await?
            }
        };
        api.pass_control(
            &conversation_id,
            &api.creds.relay_switchboard_integration,
            &Map::new(),
        )
        .await?;
        let summary = handoff_summary(input, MAX_TEXT_CHARS);
        let first = api
            .post_business_message(&conversation_id, &summary)
            .await?;
        let metadata = ticket_metadata(&api.creds, input, &first);
        api.pass_control(&conversation_id, &api.creds.agent_workspace, &metadata)
            .await?;
        Ok(StartOutcome {
            conversation_id: conversation_id.clone(),
            provider_data: json!({
                "conversation_id": conversation_id,
                "user_external_id": external,
                "summary_message_id": first,
            }),
        })
    }

    async fn send_message(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
        message: &CustomerMessage,
    ) -> Result<Value> {
        let api = SunshineApi::new(ctx)?;
        let cid = session
            .provider_conversation_id
            .as_deref()
            .unwrap_or_default();
        let id = api
            .post_user_message(
                cid,
                &external_id(session.session_id.as_str()),
                &message.text,
            )
            .await?;
        Ok(json!({"zendesk_message_id": id}))
    }

    async fn send_typing(&self, _: &ProviderCtx<'_>, _: &SessionRecord, _: bool) -> Result<()> {
        // Users may only send conversation:read activities [V SPEC].
        Ok(())
    }

    async fn end(&self, ctx: &ProviderCtx<'_>, session: &SessionRecord) -> Result<()> {
        let Some(cid) = session.provider_conversation_id.as_deref() else {
            return Ok(());
        };
        let api = SunshineApi::new(ctx)?;
        api.post_business_message(cid, "The customer left the chat.")
            .await?;
        api.pass_control(cid, &api.creds.relay_switchboard_integration, &Map::new())
            .await
    }

    async fn check(&self, ctx: &ProviderCtx<'_>) -> Result<String> {
        let api = SunshineApi::new(ctx)?;
        // A read: lists the conversations of a user id no session ever has.
        // "user not found" is an authenticated answer, so the key works.
        match api.find_conversation("relay:config-check").await {
            Ok(_) => {}
            Err(HandoffError::ProviderRejected(m)) if m.contains("user_not_found") => {}
            Err(e) => return Err(e),
        }
        Ok(format!(
            "Sunshine Conversations API answered at {}",
            api.creds.base()?
        ))
    }

    fn authenticate_webhook(
        &self,
        credentials: &SecretJson,
        request: &WebhookRequest<'_>,
    ) -> std::result::Result<(), WebhookRejection> {
        let creds: ZendeskCredentials = credentials
            .parse("zendesk_integration")
            .map_err(|_| WebhookRejection::Unauthenticated("integration not configured"))?;
        webhook::authenticate(
            &creds,
            request
                .headers
                .get(webhook::API_KEY_HEADER)
                .map(String::as_str),
        )
    }

    fn parse_webhook(&self, request: &WebhookRequest<'_>) -> Result<Vec<ProviderEvent>> {
        webhook::parse(request.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SessionId;
    use crate::request::UserInfo;

    #[test]
    fn routing_hints_become_ticket_metadata() {
        let creds: ZendeskCredentials = serde_json::from_value(json!({
            "base_url": "http://x/sc", "app_id": "a", "key_id": "k", "key_secret": "s",
            "webhook_secret": "w", "field_map": {"reason": "360012345678"}}))
        .unwrap();
        let session = SessionId::parse("conv-1").unwrap();
        let user = UserInfo {
            id: None,
            display_name: Some("Ada".into()),
            channel: None,
        };
        let context: Map<String, Value> =
            serde_json::from_value(json!({"reason": "refund", "customer_id": "C-42"})).unwrap();
        let routing: Map<String, Value> =
            serde_json::from_value(json!({"group_id": "6510", "tags": ["vip", "billing"]}))
                .unwrap();
        let input = StartInput {
            session_id: &session,
            user: &user,
            utterance: None,
            transcript: &[],
            context: &context,
            routing: &routing,
        };
        let meta = ticket_metadata(&creds, &input, "M1");
        assert_eq!(meta["first_message_id"], "M1");
        assert_eq!(meta["dataCapture.systemField.group_id"], "6510");
        assert_eq!(
            meta["dataCapture.systemField.tags"],
            "ai_handoff vip billing"
        );
        assert_eq!(meta["dataCapture.ticketField.360012345678"], "refund");
        assert_eq!(meta["dataCapture.systemField.requester.name"], "Ada");
        assert!(
            !meta.keys().any(|k| k.contains("customer_id")),
            "unmapped keys stay in the summary"
        );
    }
}
