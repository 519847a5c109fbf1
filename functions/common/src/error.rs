//! Typed errors with the stable codes of the relay's contract.

use serde_json::json;

/// An error a caller can act on; `code()` is part of the API and never changes.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("unknown integration: {0}")]
    UnknownIntegration(String),
    #[error("not configured: {0}")]
    NotConfigured(String),
    #[error("session not found")]
    SessionNotFound,
    #[error("session has ended")]
    SessionEnded,
    #[error("provider unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("provider rejected the request: {0}")]
    ProviderRejected(String),
    /// The platform refused our credentials even with a fresh token.
    #[error("provider authentication failed: {0}")]
    ProviderAuth(String),
    #[error("busy: {0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl HandoffError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnknownIntegration(_) => "unknown_integration",
            Self::NotConfigured(_) => "not_configured",
            Self::SessionNotFound => "session_not_found",
            Self::SessionEnded => "session_ended",
            Self::ProviderUnavailable(_) => "provider_unavailable",
            Self::ProviderRejected(_) => "provider_rejected",
            Self::ProviderAuth(_) => "provider_auth_failed",
            Self::Conflict(_) => "conflict",
            Self::Internal(_) => "internal",
        }
    }

    /// Worth trying again later (the caller's retry, or our own backoff).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::ProviderUnavailable(_) | Self::Conflict(_))
    }

    /// The `{"error": {"code", "message"}}` body returned to the agent runtime.
    pub fn to_response(&self) -> serde_json::Value {
        json!({"error": {"code": self.code(), "message": self.to_string()}})
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest(message.into())
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::Internal(err.to_string())
    }
}

pub type Result<T, E = HandoffError> = std::result::Result<T, E>;
