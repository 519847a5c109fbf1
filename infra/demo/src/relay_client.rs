//! Calls the relay's functions the way an agent runtime does: a direct Lambda
//! invoke with a JSON event (`cargo lambda watch` serves the Invoke API locally).

use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::sessions::TranscriptEntry;

pub const START_HANDOFF: &str = "start-handoff";
pub const OUTBOUND_RELAY: &str = "outbound-relay";
pub const END_SESSION: &str = "end-session";

/// end-session's reason when the customer closes the chat.
const USER_END_SESSION: &str = "USER_END_SESSION";
/// How much of an unexpected invoke response to quote in an error.
const QUOTED_RESPONSE_CHARS: usize = 200;

/// The tenant every request carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub account_id: String,
    pub project_id: String,
    pub client_env: String,
}

/// A domain error as the relay's functions return it, and as the widget shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The function ran and answered `{"error":{...}}`.
    #[error("{function} answered {}: {}", .error.code, .error.message)]
    Domain {
        function: &'static str,
        error: ErrorBody,
    },
    #[error("could not reach {function}: {source}")]
    Unreachable {
        function: &'static str,
        source: reqwest::Error,
    },
    /// The invoke itself failed: the function panicked or returned a Lambda error.
    #[error("{function} failed: {detail}")]
    FunctionFailed {
        function: &'static str,
        detail: String,
    },
}

impl RelayError {
    /// What the widget is told.
    pub fn to_body(&self) -> ErrorBody {
        match self {
            Self::Domain { error, .. } => error.clone(),
            Self::Unreachable { .. } => ErrorBody {
                code: "relay_unreachable".into(),
                message: self.to_string(),
            },
            Self::FunctionFailed { .. } => ErrorBody {
                code: "relay_function_failed".into(),
                message: self.to_string(),
            },
        }
    }
}

/// The customer as start-handoff's `user` names them.
#[derive(Debug, Clone, Serialize)]
pub struct HandoffUser {
    pub id: String,
    pub display_name: String,
    pub channel: &'static str,
}

/// start-handoff's `context`: what the bot learnt, for the live agent.
#[derive(Debug, Clone, Serialize)]
pub struct HandoffContext {
    pub customer_id: String,
    pub reason: String,
    pub verified: bool,
}

/// The integration keys a handoff may name, with the short names the widget's
/// `?provider=` uses (the simulator's path prefixes).
const INTEGRATIONS: &[(&str, &str)] = &[
    ("genesys", "genesys_integration"),
    ("connect", "amazon_connect_integration"),
    ("zendesk", "zendesk_integration"),
    ("salesforce", "salesforce_integration"),
    ("nice", "nice_integration"),
    ("webex", "webex_integration"),
];

/// The integration key for a short name (`zendesk`) or a key (`zendesk_integration`).
pub fn integration_key(name: &str) -> Option<&'static str> {
    INTEGRATIONS
        .iter()
        .find(|(short, key)| name == *short || name == *key)
        .map(|(_, key)| *key)
}

/// The parts of a start-handoff request that come from the conversation.
#[derive(Debug, Clone)]
pub struct HandoffRequest {
    pub session_id: String,
    /// The integration chosen for this conversation; `None` is the runtime's default.
    pub provider: Option<&'static str>,
    pub utterance: String,
    pub user: HandoffUser,
    pub transcript: Vec<TranscriptEntry>,
    pub context: HandoffContext,
}

/// Invokes start-handoff, outbound-relay and end-session for one tenant.
#[derive(Debug, Clone)]
pub struct RelayClient {
    http: reqwest::Client,
    /// e.g. `http://127.0.0.1:9000`, no trailing slash.
    lambda_url: String,
    tenant: Tenant,
    /// Integration key used in `handoff.text_chat`, e.g. `genesys_integration`.
    provider: String,
    queue: String,
}

impl RelayClient {
    pub fn new(
        lambda_url: &str,
        tenant: Tenant,
        provider: String,
        queue: String,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder().timeout(timeout).build()?,
            lambda_url: lambda_url.trim_end_matches('/').to_owned(),
            tenant,
            provider,
            queue,
        })
    }

    pub async fn start_handoff(&self, request: &HandoffRequest) -> Result<Value, RelayError> {
        let mut text_chat = serde_json::Map::new();
        let provider = request.provider.unwrap_or(self.provider.as_str());
        text_chat.insert(provider.to_owned(), json!({ "queue": self.queue }));
        let event = json!({
            "tenant": self.tenant,
            "session_id": request.session_id,
            "utterance": request.utterance,
            "handoff": { "text_chat": text_chat },
            "user": request.user,
            "transcript": request.transcript,
            "context": request.context,
        });
        self.invoke(START_HANDOFF, &event).await
    }

    pub async fn send_message(
        &self,
        session_id: &str,
        message_id: &str,
        text: &str,
    ) -> Result<Value, RelayError> {
        let event = json!({
            "tenant": self.tenant,
            "session_id": session_id,
            "message": { "id": message_id, "text": text },
        });
        self.invoke(OUTBOUND_RELAY, &event).await
    }

    pub async fn send_typing(&self, session_id: &str) -> Result<Value, RelayError> {
        let event = json!({ "tenant": self.tenant, "session_id": session_id, "typing": true });
        self.invoke(OUTBOUND_RELAY, &event).await
    }

    pub async fn end_session(&self, session_id: &str) -> Result<Value, RelayError> {
        let event = json!({
            "tenant": self.tenant,
            "session_id": session_id,
            "reason": USER_END_SESSION,
        });
        self.invoke(END_SESSION, &event).await
    }

    #[tracing::instrument(skip(self, event))]
    async fn invoke(&self, function: &'static str, event: &Value) -> Result<Value, RelayError> {
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.lambda_url
        );
        let unreachable = |source| RelayError::Unreachable { function, source };
        let response = self
            .http
            .post(url)
            .json(event)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = response.text().await.map_err(unreachable)?;
        let result = interpret_invoke_response(function, status, &body);
        if let Err(error) = &result {
            tracing::warn!(%error, "relay call failed");
        }
        result
    }
}

/// Splits an invoke response into the function's result, its domain error, or a
/// failed invocation (non-2xx, not JSON, or a Lambda `errorType`/`errorMessage`).
fn interpret_invoke_response(
    function: &'static str,
    status: StatusCode,
    body: &str,
) -> Result<Value, RelayError> {
    let failed = |detail: String| RelayError::FunctionFailed { function, detail };
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return Err(failed(format!("HTTP {status}: {}", quote(body))));
    };
    if let Some(error) = value
        .get("error")
        .and_then(|e| serde_json::from_value::<ErrorBody>(e.clone()).ok())
    {
        return Err(RelayError::Domain { function, error });
    }
    if let Some(message) = value.get("errorMessage").and_then(Value::as_str) {
        return Err(failed(quote(message)));
    }
    if !status.is_success() {
        return Err(failed(format!("HTTP {status}: {}", quote(body))));
    }
    Ok(value)
}

fn quote(text: &str) -> String {
    let mut quoted: String = text.chars().take(QUOTED_RESPONSE_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_and_keys_name_integrations() {
        assert_eq!(integration_key("zendesk"), Some("zendesk_integration"));
        assert_eq!(
            integration_key("amazon_connect_integration"),
            Some("amazon_connect_integration")
        );
        assert_eq!(
            integration_key("connect"),
            Some("amazon_connect_integration")
        );
        for unknown in ["", "five9", "Genesys", "genesys_integration "] {
            assert_eq!(integration_key(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn result_passes_through() {
        let value = interpret_invoke_response(
            START_HANDOFF,
            StatusCode::OK,
            r#"{"session_id":"conv-1","status":"queued"}"#,
        )
        .unwrap();
        assert_eq!(value["status"], "queued");
    }

    #[test]
    fn error_object_is_a_domain_error() {
        let err = interpret_invoke_response(
            START_HANDOFF,
            StatusCode::OK,
            r#"{"error":{"code":"not_configured","message":"no genesys credentials"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_body(),
            ErrorBody {
                code: "not_configured".into(),
                message: "no genesys credentials".into()
            }
        );
    }

    #[test]
    fn lambda_errors_and_garbage_are_failed_invocations() {
        let err = interpret_invoke_response(
            OUTBOUND_RELAY,
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"errorType":"Panic","errorMessage":"boom"}"#,
        )
        .unwrap_err();
        assert_eq!(err.to_body().code, "relay_function_failed");
        assert!(err.to_body().message.contains("boom"));

        let err =
            interpret_invoke_response(END_SESSION, StatusCode::BAD_GATEWAY, "<html>").unwrap_err();
        assert_eq!(err.to_body().code, "relay_function_failed");
    }
}
