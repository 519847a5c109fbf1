//! Typed configuration read from the environment at init; a missing variable
//! fails init with a message naming it.

use std::time::Duration;

use crate::secrets::DEFAULT_SECRET_TTL;

#[derive(Debug, Clone)]
pub struct Config {
    /// DynamoDB table (`TABLE_NAME`).
    pub table_name: String,
    /// Secret name prefix (`SECRET_PREFIX`, default `chat-handoff`).
    pub secret_prefix: String,
    /// Cache lifetime of secrets (`SECRET_TTL_SECS`, default 300).
    pub secret_ttl: Duration,
    /// Timeout of one outbound HTTP request (`HTTP_TIMEOUT_MS`, default 8000).
    pub http_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {0} is not a number")]
    NotANumber(&'static str),
}

fn number(name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| ConfigError::NotANumber(name)),
        Err(_) => Ok(default),
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: std::env::var("TABLE_NAME")
                .map_err(|_| ConfigError::Missing("TABLE_NAME"))?,
            secret_prefix: std::env::var("SECRET_PREFIX").unwrap_or_else(|_| "chat-handoff".into()),
            secret_ttl: Duration::from_secs(number(
                "SECRET_TTL_SECS",
                DEFAULT_SECRET_TTL.as_secs(),
            )?),
            http_timeout: Duration::from_millis(number("HTTP_TIMEOUT_MS", 8000)?),
        })
    }
}
