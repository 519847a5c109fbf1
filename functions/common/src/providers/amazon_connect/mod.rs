//! Amazon Connect chat (`amazon_connect_integration`), streaming mode.
//!
//! Start: `StartChatContact` (attributes carry context and routing hints,
//! `ClientToken` from the session), `StartContactStreaming` to the tenant's SNS
//! topic, `CreateParticipantConnection` with `ConnectParticipant=true`, then the
//! hand-over note and transcript as the first customer message. Customer
//! messages and typing: `SendMessage` / `SendEvent`; user end:
//! `DisconnectParticipant`. Agent traffic arrives as chat items on SNS, which
//! invokes the webhook function ([`events`]). Spec:
//! `shared/providers/amazon-connect.md`; sources relied on: botocore
//! `connect/2017-08-08` and `connectparticipant/2018-09-07` service models,
//! the `aws-sdk-connect(participant)` crates, amazon-connect-chatjs constants,
//! amazon-connect-message-streaming-examples.
//!
//! # Uncertain choices ([U] in the spec), all here
//! * [`U_SUMMARY_AS_FIRST_MESSAGE`]: the transcript goes as a `SendMessage`
//!   after connecting, not as `InitialMessage`, so it is ordered with the rest.
//! * [`U_ACCESS_DENIED_IS_EXPIRED_TOKEN`]: a participant call answered
//!   `AccessDeniedException` means the ConnectionToken expired: renew it once
//!   with the ParticipantToken and store it; a second refusal means the
//!   participant has left (user end then counts as done).
//! * `participant.autodisconnection` of the customer ends the session with
//!   `ended_by: timeout`; `chat.ended` with any role ends it (`agent`).
//! * `transfer.succeeded` maps to nothing: the `participant.left` /
//!   `participant.joined` pair around it already says it.
//! * The ParticipantToken and ConnectionToken are bearer tokens scoped to this
//!   one chat; they are kept in the session item (they must outlive the
//!   invocation) and never logged.
//!
//! Cross-account tenants (the instance in the tenant's AWS account) would need
//! an assumed role per tenant; this build calls Connect with the function's
//! own credentials and region (or the secret's `region`).

pub mod events;

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_connect::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_connect::types::{ChatStreamingConfiguration, ParticipantDetails};
use aws_sdk_connectparticipant::types::ConnectionType;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::domain::IntegrationKey;
use crate::error::{HandoffError, Result};
use crate::providers::{
    flat_attributes, handoff_summary, Capabilities, Provider, ProviderCtx, ProviderEvent,
    StartInput, StartOutcome, StreamSource, WebhookRejection, WebhookRequest,
};
use crate::request::CustomerMessage;
use crate::secrets::SecretJson;
use crate::store::SessionRecord;

/// [U] the transcript is the first `SendMessage`, not `InitialMessage`.
pub const U_SUMMARY_AS_FIRST_MESSAGE: bool = true;
/// [U] `AccessDeniedException` on a participant call = expired ConnectionToken.
pub const U_ACCESS_DENIED_IS_EXPIRED_TOKEN: bool = true;
/// Connect: attribute values; the whole map is at most 32,768 bytes [V BC-C].
pub const MAX_ATTRIBUTE_CHARS: usize = 1024;
pub const MAX_ATTRIBUTES_BYTES: usize = 32 * 1024;
/// Connect: SendMessage content, 1..16,384 characters [V BC-CP].
pub const MAX_MESSAGE_CHARS: usize = 16 * 1024;
/// Connect: ClientToken, at most 500 characters [V BC-C].
pub const MAX_CLIENT_TOKEN: usize = 500;
pub const TYPING_CONTENT_TYPE: &str = "application/vnd.amazonaws.connect.event.typing";

/// One tenant's `amazon_connect_integration` secret (no secret values: the
/// calls are signed with the function's role).
#[derive(Deserialize)]
pub struct ConnectSettings {
    pub instance_id: String,
    pub contact_flow_id: String,
    /// Standard SNS topic the contact streams to (it invokes inbound-webhook).
    pub streaming_topic_arn: String,
    /// Region of the instance, if not the function's.
    pub region: Option<String>,
}

/// The adapter: SDK clients built once from the process' AWS config.
pub struct AmazonConnect {
    base: aws_config::SdkConfig,
    connect: Mutex<HashMap<String, aws_sdk_connect::Client>>,
    participant: Mutex<HashMap<String, aws_sdk_connectparticipant::Client>>,
}

impl AmazonConnect {
    pub fn new(aws: &aws_config::SdkConfig) -> Self {
        Self {
            base: aws.clone(),
            connect: Mutex::new(HashMap::new()),
            participant: Mutex::new(HashMap::new()),
        }
    }

    fn region_key(&self, region: &Option<String>) -> String {
        region.clone().unwrap_or_default()
    }

    fn connect_client(&self, region: &Option<String>) -> aws_sdk_connect::Client {
        let key = self.region_key(region);
        let mut clients = self.connect.lock().expect("client lock");
        clients
            .entry(key)
            .or_insert_with(|| {
                let mut b = aws_sdk_connect::config::Builder::from(&self.base);
                if let Some(r) = region {
                    b = b.region(aws_sdk_connect::config::Region::new(r.clone()));
                }
                aws_sdk_connect::Client::from_conf(b.build())
            })
            .clone()
    }

    fn participant_client(&self, region: &Option<String>) -> aws_sdk_connectparticipant::Client {
        let key = self.region_key(region);
        let mut clients = self.participant.lock().expect("client lock");
        clients
            .entry(key)
            .or_insert_with(|| {
                let mut b = aws_sdk_connectparticipant::config::Builder::from(&self.base);
                if let Some(r) = region {
                    b = b.region(aws_sdk_connectparticipant::config::Region::new(r.clone()));
                }
                aws_sdk_connectparticipant::Client::from_conf(b.build())
            })
            .clone()
    }

    async fn connection_token(
        &self,
        settings: &ConnectSettings,
        participant_token: &str,
    ) -> Result<String> {
        let out = self
            .participant_client(&settings.region)
            .create_participant_connection()
            .participant_token(participant_token)
            .r#type(ConnectionType::ConnectionCredentials)
            .connect_participant(true)
            .send()
            .await
            .map_err(|e| sdk_error("CreateParticipantConnection", e))?;
        out.connection_credentials()
            .and_then(|c| c.connection_token())
            .map(str::to_owned)
            .ok_or_else(|| HandoffError::ProviderUnavailable("no ConnectionToken".into()))
    }

    /// Runs a participant call with the stored ConnectionToken; on an expired
    /// token renews it once (and asks the service to store the new one).
    async fn with_connection<T, F, Fut>(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
        call: F,
    ) -> Result<T>
    where
        F: Fn(aws_sdk_connectparticipant::Client, String) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let settings: ConnectSettings = ctx.credentials.parse("amazon_connect_integration")?;
        let client = self.participant_client(&settings.region);
        let data = &session.provider_data;
        let token = data["connection_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match call(client.clone(), token).await {
            Err(HandoffError::ProviderAuth(_)) if U_ACCESS_DENIED_IS_EXPIRED_TOKEN => {
                let participant = data["participant_token"].as_str().unwrap_or_default();
                let fresh = self.connection_token(&settings, participant).await?;
                ctx.remember("connection_token", json!(fresh));
                tracing::info!("renewed Amazon Connect connection token");
                call(client, fresh).await.map_err(|e| match e {
                    HandoffError::ProviderAuth(m) => HandoffError::ProviderRejected(format!(
                        "participant no longer in the chat: {m}"
                    )),
                    other => other,
                })
            }
            other => other,
        }
    }
}

/// Maps an SDK error to ours by the modeled error code.
pub fn sdk_error<E, R>(what: &str, err: SdkError<E, R>) -> HandoffError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown");
            let message = se.err().message().unwrap_or("");
            match code {
                "AccessDeniedException" => HandoffError::ProviderAuth(format!("{what}: {code}")),
                "ThrottlingException"
                | "TooManyRequestsException"
                | "LimitExceededException"
                | "InternalServiceException"
                | "InternalServerException"
                | "ServiceUnavailableException" => {
                    HandoffError::ProviderUnavailable(format!("{what}: {code}"))
                }
                _ => HandoffError::ProviderRejected(format!("{what}: {code}: {message}")),
            }
        }
        _ => HandoffError::ProviderUnavailable(format!(
            "{what}: {}",
            aws_sdk_connect::error::DisplayErrorContext(&err)
        )),
    }
}

/// A ClientToken derived from stable ids, within Connect's 500-character limit.
pub fn client_token(parts: &[&str]) -> String {
    let digest = hex::encode(Sha256::digest(parts.join("\u{1f}").as_bytes()));
    digest.chars().take(MAX_CLIENT_TOKEN).collect()
}

/// Connect attribute keys allow letters, digits, `-` and `_`.
fn attribute_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Context and routing hints as contact attributes, within the total limit.
pub fn contact_attributes(input: &StartInput<'_>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut total = 0;
    for (k, v) in flat_attributes(input, MAX_ATTRIBUTE_CHARS) {
        let value = v.as_str().unwrap_or_default().to_owned();
        let key = attribute_key(&k);
        total += key.len() + value.len();
        if total > MAX_ATTRIBUTES_BYTES {
            break;
        }
        out.insert(key, value);
    }
    out
}

#[async_trait::async_trait]
impl Provider for AmazonConnect {
    fn key(&self) -> IntegrationKey {
        IntegrationKey::AmazonConnect
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
        let settings: ConnectSettings = ctx.credentials.parse("amazon_connect_integration")?;
        let connect = self.connect_client(&settings.region);
        let tenant = ctx.tenant.key();
        let display_name = input
            .user
            .display_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "Customer".into());
        let started = connect
            .start_chat_contact()
            .instance_id(&settings.instance_id)
            .contact_flow_id(&settings.contact_flow_id)
            .participant_details(
                ParticipantDetails::builder()
                    .display_name(display_name)
                    .build()
                    .map_err(HandoffError::internal)?,
            )
            .set_attributes(Some(contact_attributes(input)))
            .supported_messaging_content_types("text/plain")
            .supported_messaging_content_types("text/markdown")
            .client_token(client_token(&[&tenant, input.session_id.as_str(), "start"]))
            .send()
            .await
            .map_err(|e| sdk_error("StartChatContact", e))?;
        let contact_id = started.contact_id().unwrap_or_default().to_owned();
        let participant_token = started.participant_token().unwrap_or_default().to_owned();
        if contact_id.is_empty() || participant_token.is_empty() {
            return Err(HandoffError::ProviderUnavailable(
                "StartChatContact: no ContactId/ParticipantToken".into(),
            ));
        }
        let streaming = connect
            .start_contact_streaming()
            .instance_id(&settings.instance_id)
            .contact_id(&contact_id)
            .chat_streaming_configuration(
                ChatStreamingConfiguration::builder()
                    .streaming_endpoint_arn(&settings.streaming_topic_arn)
                    .build()
                    .map_err(HandoffError::internal)?,
            )
            .client_token(client_token(&[
                &tenant,
                input.session_id.as_str(),
                "stream",
            ]))
            .send()
            .await
            .map_err(|e| sdk_error("StartContactStreaming", e))?;
        let connection_token = self.connection_token(&settings, &participant_token).await?;
        let summary: String = handoff_summary(input, MAX_MESSAGE_CHARS);
        self.participant_client(&settings.region)
            .send_message()
            .connection_token(&connection_token)
            .content_type("text/plain")
            .content(summary)
            .client_token(client_token(&[
                &tenant,
                input.session_id.as_str(),
                "summary",
            ]))
            .send()
            .await
            .map_err(|e| sdk_error("SendMessage", e))?;
        Ok(StartOutcome {
            conversation_id: contact_id.clone(),
            provider_data: json!({
                "contact_id": contact_id,
                "participant_id": started.participant_id(),
                "participant_token": participant_token,
                "connection_token": connection_token,
                "instance_id": settings.instance_id,
                "streaming_id": streaming.streaming_id(),
            }),
        })
    }

    async fn send_message(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
        message: &CustomerMessage,
    ) -> Result<Value> {
        let token = client_token(&[&ctx.tenant.key(), session.session_id.as_str(), &message.id]);
        let sent = self
            .with_connection(ctx, session, |client, connection| {
                let token = token.clone();
                async move {
                    client
                        .send_message()
                        .connection_token(connection)
                        .content_type("text/plain")
                        .content(&message.text)
                        .client_token(token)
                        .send()
                        .await
                        .map_err(|e| sdk_error("SendMessage", e))
                }
            })
            .await?;
        if let Some(status) = sent
            .message_metadata()
            .and_then(|m| m.message_processing_status())
        {
            let status = status.as_str();
            if status == "FAILED" || status == "REJECTED" {
                return Err(HandoffError::ProviderRejected(format!(
                    "SendMessage: message {status}"
                )));
            }
        }
        Ok(json!({"connect_item_id": sent.id()}))
    }

    async fn send_typing(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
        typing: bool,
    ) -> Result<()> {
        if !typing {
            return Ok(()); // Connect has no typing-stopped event
        }
        self.with_connection(ctx, session, |client, connection| async move {
            client
                .send_event()
                .connection_token(connection)
                .content_type(TYPING_CONTENT_TYPE)
                .send()
                .await
                .map_err(|e| sdk_error("SendEvent", e))
        })
        .await?;
        Ok(())
    }

    async fn end(&self, ctx: &ProviderCtx<'_>, session: &SessionRecord) -> Result<()> {
        if session.provider_conversation_id.is_none() {
            return Ok(());
        }
        let token = client_token(&[&ctx.tenant.key(), session.session_id.as_str(), "disconnect"]);
        let outcome = self
            .with_connection(ctx, session, |client, connection| {
                let token = token.clone();
                async move {
                    client
                        .disconnect_participant()
                        .connection_token(connection)
                        .client_token(token)
                        .send()
                        .await
                        .map_err(|e| sdk_error("DisconnectParticipant", e))
                }
            })
            .await;
        match outcome {
            Ok(_) => Ok(()),
            // The participant is gone already: the chat has ended.
            Err(HandoffError::ProviderRejected(m)) if m.contains("no longer in the chat") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn check(&self, ctx: &ProviderCtx<'_>) -> Result<String> {
        let settings: ConnectSettings = ctx.credentials.parse("amazon_connect_integration")?;
        if !settings.streaming_topic_arn.starts_with("arn:") {
            return Err(HandoffError::NotConfigured(
                "streaming_topic_arn is not an ARN".into(),
            ));
        }
        // No Connect call here: the only read-only ones need IAM actions the
        // functions are not granted; StartChatContact would open a chat.
        Ok(format!(
            "settings well-formed (instance {}, flow {}); platform not called",
            settings.instance_id, settings.contact_flow_id
        ))
    }

    fn authenticate_webhook(
        &self,
        _credentials: &SecretJson,
        _request: &WebhookRequest<'_>,
    ) -> std::result::Result<(), WebhookRejection> {
        // Connect has no HTTP webhook here: its events come through SNS.
        Err(WebhookRejection::Unauthenticated(
            "Amazon Connect events arrive through SNS",
        ))
    }

    fn parse_webhook(&self, _request: &WebhookRequest<'_>) -> Result<Vec<ProviderEvent>> {
        Err(HandoffError::invalid("Amazon Connect has no webhook"))
    }

    fn stream(&self) -> Option<&dyn StreamSource> {
        Some(self)
    }
}

impl StreamSource for AmazonConnect {
    fn topic_allowed(&self, credentials: &SecretJson, topic_arn: &str) -> bool {
        credentials
            .parse::<ConnectSettings>("amazon_connect_integration")
            .is_ok_and(|s| s.streaming_topic_arn == topic_arn)
    }

    fn parse_record(&self, sns: &Value) -> Result<ProviderEvent> {
        events::parse_sns(sns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SessionId;
    use crate::request::UserInfo;
    use serde_json::Map;

    #[test]
    fn attributes_have_valid_keys_and_fit_the_limit() {
        let session = SessionId::parse("conv-1").unwrap();
        let user = UserInfo {
            id: None,
            display_name: None,
            channel: None,
        };
        let mut context = Map::new();
        context.insert("customer id".into(), json!("C-42"));
        context.insert("blob".into(), json!("x".repeat(5000)));
        let routing: Map<String, Value> =
            serde_json::from_value(json!({"queue": "billing"})).unwrap();
        let input = StartInput {
            session_id: &session,
            user: &user,
            utterance: None,
            transcript: &[],
            context: &context,
            routing: &routing,
        };
        let attrs = contact_attributes(&input);
        assert_eq!(attrs["customer_id"], "C-42");
        assert_eq!(attrs["routing_queue"], "billing");
        assert_eq!(attrs["blob"].len(), MAX_ATTRIBUTE_CHARS);
        assert_eq!(attrs["handoff_session_id"], "conv-1");
    }

    #[test]
    fn client_tokens_are_stable_and_distinct() {
        let a = client_token(&["t", "s", "m-1"]);
        assert_eq!(a, client_token(&["t", "s", "m-1"]));
        assert_ne!(a, client_token(&["t", "s", "m-2"]));
        assert_ne!(
            client_token(&["t", "s1", "m"]),
            client_token(&["t", "s", "1m"])
        );
        assert!(a.len() <= MAX_CLIENT_TOKEN);
    }
}
