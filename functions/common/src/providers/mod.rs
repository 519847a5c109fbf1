//! The provider trait every contact-centre platform implements, and the
//! platform-neutral shapes adapters produce. One module per platform.

pub mod amazon_connect;
pub mod genesys;
pub mod nice;
pub mod salesforce;
pub mod webex;
pub mod zendesk;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};

use crate::domain::{IntegrationKey, SessionId, Tenant};
use crate::error::Result;
use crate::events::EndedBy;
use crate::request::{CustomerMessage, TranscriptEntry, UserInfo};
use crate::secrets::SecretJson;
use crate::store::SessionRecord;

/// What a provider call needs: whose credentials, and the shared HTTP client.
pub struct ProviderCtx<'a> {
    pub tenant: &'a Tenant,
    pub credentials: &'a SecretJson,
    pub http: &'a reqwest::Client,
    /// Keys an adapter wants merged into the session's `provider_data` after the
    /// call (e.g. a renewed participant token); the service stores them.
    pub refreshed: &'a Mutex<Map<String, Value>>,
}

impl ProviderCtx<'_> {
    /// Asks the service to store `value` under `key` in the session's provider data.
    pub fn remember(&self, key: &str, value: Value) {
        self.refreshed
            .lock()
            .expect("refreshed lock")
            .insert(key.to_owned(), value);
    }
}

/// Everything handed to the platform when a conversation opens.
pub struct StartInput<'a> {
    pub session_id: &'a SessionId,
    pub user: &'a UserInfo,
    pub utterance: Option<&'a str>,
    pub transcript: &'a [TranscriptEntry],
    pub context: &'a Map<String, Value>,
    pub routing: &'a Map<String, Value>,
}

/// The platform's side of a newly opened conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct StartOutcome {
    pub conversation_id: String,
    /// Adapter state kept on the session (ids, never secrets).
    pub provider_data: Value,
}

/// Who the live agent is, as far as the platform says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentInfo {
    pub id: Option<String>,
    pub display_name: Option<String>,
}

/// A platform signal, already mapped into neutral terms.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEventKind {
    AgentJoined(AgentInfo),
    AgentTyping(AgentInfo),
    AgentMessage {
        message_id: String,
        text: String,
        agent: AgentInfo,
        /// Sent by a platform bot rather than a person.
        from_bot: bool,
        /// The platform's own time of the message (ms since the epoch), when
        /// it says: orders messages in the tenant's reorder window.
        sent_at_ms: Option<i64>,
    },
    AgentLeft {
        agent: AgentInfo,
        /// The agent left by transferring; another will join.
        transfer: bool,
    },
    Ended(EndedBy),
    /// Our own customer message, a receipt, or anything else with no client event.
    Ignored(&'static str),
    /// Where a notification stream got to, kept in the session's provider
    /// data under `key` so the next hold resumes there. No client event, and
    /// stored without a dedupe key (the same position may be reported again).
    Resume {
        key: &'static str,
        value: String,
    },
}

/// How a platform event names its conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum ConversationRef {
    /// The platform's conversation id (looked up in the index).
    Provider(String),
    /// Our session id, where the platform echoes it (e.g. Genesys `channel.to.id`).
    Session(SessionId),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderEvent {
    /// The platform's own id for this signal: deliveries with the same key are one.
    pub dedupe_key: String,
    pub conversation: ConversationRef,
    pub kind: ProviderEventKind,
}

pub const JSON_MEDIA_TYPE: &str = "application/json";

/// Whether a `Content-Type` header value names one of `allowed` (parameters
/// such as `charset` and letter case ignored).
pub fn media_type_allowed(allowed: &[&str], content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    allowed.iter().any(|a| a.eq_ignore_ascii_case(media))
}

/// A webhook as received: raw bytes, lower-cased header names, path after the tenant.
pub struct WebhookRequest<'a> {
    pub headers: &'a HashMap<String, String>,
    pub body: &'a [u8],
    pub rest_path: &'a str,
}

/// Why a webhook is refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookRejection {
    /// Missing or wrong signature/secret: 401.
    Unauthenticated(&'static str),
}

/// What a platform supports, for the conformance suite and the README table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub customer_typing: bool,
    pub agent_typing: bool,
    pub agent_joined: bool,
    pub agent_left: bool,
}

/// One contact-centre platform.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    fn key(&self) -> IntegrationKey;

    fn capabilities(&self) -> Capabilities;

    /// Opens the conversation and hands over the transcript and context.
    async fn start(&self, ctx: &ProviderCtx<'_>, input: &StartInput<'_>) -> Result<StartOutcome>;

    /// Sends a customer message; returns the platform's reference to it.
    async fn send_message(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
        message: &CustomerMessage,
    ) -> Result<Value>;

    async fn send_typing(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
        typing: bool,
    ) -> Result<()>;

    /// Disconnects the customer; succeeds if already disconnected.
    async fn end(&self, ctx: &ProviderCtx<'_>, session: &SessionRecord) -> Result<()>;

    /// Checks authenticity on the raw bytes, before anything is parsed.
    fn authenticate_webhook(
        &self,
        credentials: &SecretJson,
        request: &WebhookRequest<'_>,
    ) -> std::result::Result<(), WebhookRejection>;

    /// Media types this platform sends its webhooks with (lower case, no
    /// parameters); any other `Content-Type` is refused with 415 before the
    /// body is read. A request without one goes on to the signature check.
    fn webhook_media_types(&self, _rest_path: &str) -> &'static [&'static str] {
        &[JSON_MEDIA_TYPE]
    }

    /// Parses an authenticated webhook into platform events.
    fn parse_webhook(&self, request: &WebhookRequest<'_>) -> Result<Vec<ProviderEvent>>;

    /// Long-lived notification channels (WebSocket, SSE) held by the poller.
    fn notifications(&self) -> Option<&dyn NotificationSource> {
        None
    }

    /// Events pushed through SNS to the webhook function.
    fn stream(&self) -> Option<&dyn StreamSource> {
        None
    }

    /// The answer a platform expects to an authenticated, stored webhook
    /// (e.g. NICE BYOC's token endpoint and outbound acknowledgements), instead
    /// of the default `{"ok": true, …}`. `Value::Null` means an empty body.
    fn webhook_response(
        &self,
        _credentials: &SecretJson,
        _request: &WebhookRequest<'_>,
    ) -> Option<(u16, Value)> {
        None
    }

    /// An operator's check (`infra/config-check.sh`): the credentials parse and
    /// the platform answers an authenticated call that changes nothing there.
    /// Returns what was verified, in one line.
    async fn check(&self, ctx: &ProviderCtx<'_>) -> Result<String>;
}

/// The sessions a notification holder should watch, refreshed by the poller.
pub type WatchedSessions = watch::Receiver<Vec<SessionRecord>>;

/// A platform whose lifecycle signals come over a channel we must hold open.
#[async_trait::async_trait]
pub trait NotificationSource: Send + Sync {
    /// Holds the tenant's channel(s) until `deadline`, sending events to `sink`.
    async fn hold(
        &self,
        ctx: &ProviderCtx<'_>,
        sessions: WatchedSessions,
        sink: mpsc::Sender<ProviderEvent>,
        deadline: Instant,
    ) -> Result<()>;

    /// Reads a conversation's current state and returns the events it implies,
    /// for signals missed while no channel was held.
    async fn reconcile(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
    ) -> Result<Vec<ProviderEvent>>;
}

/// A platform that pushes its events through SNS (Lambda subscription).
pub trait StreamSource: Send + Sync {
    /// Whether a record from `topic_arn` may speak for this tenant's integration.
    fn topic_allowed(&self, credentials: &SecretJson, topic_arn: &str) -> bool;

    /// Parses one SNS record (`Sns` object of a Lambda SNS event).
    fn parse_record(&self, sns: &Value) -> Result<ProviderEvent>;
}

/// The text an agent sees first: the AI's hand-over note and the transcript,
/// so they know why the customer is here without opening anything else.
pub fn handoff_summary(input: &StartInput<'_>, max_chars: usize) -> String {
    let mut text = String::from("[Handoff from AI assistant]");
    if let Some(reason) = input.context.get("reason").and_then(Value::as_str) {
        text.push_str(&format!("\nReason: {reason}"));
    }
    if let Some(u) = input.utterance {
        text.push_str(&format!("\nAssistant: {u}"));
    }
    if !input.transcript.is_empty() {
        text.push_str("\n--- transcript ---");
        for e in input.transcript {
            let who = match e.role.as_str() {
                "user" => "Customer",
                "system" => "System",
                _ => "Assistant",
            };
            text.push_str(&format!("\n{who}: {}", e.text));
        }
    }
    text.chars().take(max_chars).collect()
}

/// Context and routing hints flattened to string attributes (routing keys
/// prefixed `routing_`), plus our session id, each value cut to `max_value`.
pub fn flat_attributes(input: &StartInput<'_>, max_value: usize) -> Map<String, Value> {
    let mut attrs = Map::new();
    let mut put = |key: String, value: &Value| {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        attrs.insert(key, Value::String(text.chars().take(max_value).collect()));
    };
    for (k, v) in input.context {
        put(k.clone(), v);
    }
    for (k, v) in input.routing {
        put(format!("routing_{k}"), v);
    }
    put(
        "handoff_session_id".into(),
        &Value::String(input.session_id.to_string()),
    );
    attrs
}

/// All platforms this build supports.
#[derive(Clone)]
pub struct Registry {
    providers: HashMap<IntegrationKey, Arc<dyn Provider>>,
}

impl Registry {
    /// Every adapter; AWS-backed ones build their SDK clients from `aws` (no I/O).
    pub fn with_all(aws: &aws_config::SdkConfig) -> Self {
        let mut providers: HashMap<IntegrationKey, Arc<dyn Provider>> = HashMap::new();
        providers.insert(IntegrationKey::Genesys, Arc::new(genesys::Genesys::new()));
        providers.insert(
            IntegrationKey::Salesforce,
            Arc::new(salesforce::Salesforce::new()),
        );
        providers.insert(
            IntegrationKey::AmazonConnect,
            Arc::new(amazon_connect::AmazonConnect::new(aws)),
        );
        providers.insert(IntegrationKey::Zendesk, Arc::new(zendesk::Zendesk::new()));
        providers.insert(IntegrationKey::Nice, Arc::new(nice::Nice::new()));
        providers.insert(IntegrationKey::Webex, Arc::new(webex::Webex::new()));
        Self { providers }
    }

    pub fn get(&self, key: IntegrationKey) -> Option<Arc<dyn Provider>> {
        self.providers.get(&key).cloned()
    }

    pub fn keys(&self) -> impl Iterator<Item = IntegrationKey> + '_ {
        self.providers.keys().copied()
    }
}

/// The owned parts of a [`ProviderCtx`] (tenant `acme/support/live`), for
/// adapter tests.
#[cfg(test)]
pub(crate) struct TestCtx {
    pub tenant: Tenant,
    pub credentials: SecretJson,
    pub http: reqwest::Client,
    pub refreshed: Mutex<Map<String, Value>>,
}

#[cfg(test)]
impl TestCtx {
    pub fn new(credentials: SecretJson) -> Self {
        Self {
            tenant: Tenant::new("acme", "support", crate::domain::ClientEnv::Live).unwrap(),
            credentials,
            http: reqwest::Client::new(),
            refreshed: Default::default(),
        }
    }

    pub fn ctx(&self) -> ProviderCtx<'_> {
        ProviderCtx {
            tenant: &self.tenant,
            credentials: &self.credentials,
            http: &self.http,
            refreshed: &self.refreshed,
        }
    }
}

#[cfg(test)]
mod media_type_tests {
    use super::*;

    #[test]
    fn parameters_and_case_are_ignored_other_types_are_not() {
        let json = [JSON_MEDIA_TYPE];
        assert!(media_type_allowed(&json, "application/json"));
        assert!(media_type_allowed(&json, "Application/JSON; charset=utf-8"));
        assert!(media_type_allowed(
            &json,
            " application/json ;charset=UTF-8"
        ));
        assert!(!media_type_allowed(&json, "text/plain"));
        assert!(!media_type_allowed(&json, "application/jsonp"));
        assert!(!media_type_allowed(
            &json,
            "application/x-www-form-urlencoded"
        ));
        assert!(!media_type_allowed(&json, ""));
    }
}
