//! What every function binary does at init, and how results become answers.

use std::sync::Arc;

use serde_json::Value;

use crate::config::Config;
use crate::error::Result;
use crate::service::Deps;

/// Tracing, config and clients, once per process.
pub async fn init() -> std::result::Result<Arc<Deps>, crate::config::ConfigError> {
    crate::telemetry::init();
    let config = Config::from_env()?;
    Ok(Deps::from_env(&config).await)
}

/// A direct-invoke answer: the result, or `{"error": {"code", "message"}}`.
pub fn respond(result: Result<Value>) -> Value {
    match result {
        Ok(v) => v,
        Err(e) => {
            if matches!(e, crate::error::HandoffError::Internal(_)) {
                tracing::error!(code = e.code(), error = %e, "request failed");
            } else {
                tracing::info!(code = e.code(), error = %e, "request refused");
            }
            e.to_response()
        }
    }
}
