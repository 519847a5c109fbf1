//! Per-tenant credentials from AWS Secrets Manager, cached in memory.
//!
//! Names: `{prefix}/{account}/{project}/{client_env}/{integration_key|runtime}`.
//! Values are JSON objects. A cached value lives `ttl` (default 300 s) and is
//! dropped on an auth failure so the next call reads it afresh. The cache key is
//! the full name, so one environment's credentials never serve another's.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::{IntegrationKey, Tenant};
use crate::error::{HandoffError, Result};

/// Default lifetime of a cached secret.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(300);

/// A secret's JSON value. `Debug` never shows it.
#[derive(Clone)]
pub struct SecretJson(Arc<Value>);

impl SecretJson {
    pub fn new(value: Value) -> Self {
        Self(Arc::new(value))
    }

    /// Deserialises into a provider's typed credentials.
    pub fn parse<T: for<'de> Deserialize<'de>>(&self, what: &str) -> Result<T> {
        T::deserialize(&*self.0).map_err(|e| {
            // serde's message names the field, never its value.
            HandoffError::NotConfigured(format!("{what} credentials are malformed: {e}"))
        })
    }
}

impl fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretJson(<redacted>)")
    }
}

/// The `runtime` secret: where and how to push client events, plus tenant config.
#[derive(Clone, Deserialize)]
pub struct RuntimeConfig {
    pub events_url: String,
    pub events_secret: SecretString,
    /// `conv.call_handoff` destinations: name -> `{"<integration_key>": {hints}}`.
    #[serde(default)]
    pub destinations: Map<String, Value>,
    /// Sessions older than this are ended with `ended_by: timeout`.
    #[serde(default = "default_max_age")]
    pub max_session_age_secs: u64,
    /// Forward platform bot messages (e.g. Genesys Architect) to the widget.
    #[serde(default = "default_true")]
    pub forward_bot_messages: bool,
    /// How long the relay keeps trying to open a conversation the platform is
    /// unavailable for, from the start request; then `SESSION_END`.
    #[serde(default = "default_start_retry")]
    pub start_retry_secs: u64,
    /// Agent messages wait this long for ones the platform sent before them
    /// (see `reorder`); 0 (default) gives each its `seq` on arrival.
    #[serde(default)]
    pub agent_reorder_window_ms: u64,
}

fn default_max_age() -> u64 {
    24 * 3600
}

fn default_start_retry() -> u64 {
    180
}

fn default_true() -> bool {
    true
}

impl fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("events_url", &self.events_url)
            .field(
                "destinations",
                &self.destinations.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RuntimeConfig {
    pub fn events_secret_bytes(&self) -> &[u8] {
        self.events_secret.expose_secret().as_bytes()
    }
}

/// Where secret values come from; Secrets Manager in the functions.
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync {
    /// The secret string, `None` if no such secret.
    async fn fetch(&self, name: &str) -> Result<Option<String>>;
}

#[async_trait::async_trait]
impl SecretSource for aws_sdk_secretsmanager::Client {
    async fn fetch(&self, name: &str) -> Result<Option<String>> {
        match self.get_secret_value().secret_id(name).send().await {
            Ok(out) => Ok(out.secret_string),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(HandoffError::ProviderUnavailable(format!(
                "secrets manager: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
            ))),
        }
    }
}

struct Cached {
    fetched: Instant,
    value: SecretJson,
}

/// The credentials cache.
pub struct Secrets {
    source: Box<dyn SecretSource>,
    prefix: String,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Secrets {
    pub fn new(
        source: impl SecretSource + 'static,
        prefix: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        Self {
            source: Box::new(source),
            prefix: prefix.into(),
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The secret name of one part (`runtime` or an integration key) of a tenant.
    pub fn name(&self, tenant: &Tenant, part: &str) -> String {
        format!("{}/{}/{}", self.prefix, tenant.key(), part)
    }

    /// Reads (through the cache) one part of a tenant's configuration.
    pub async fn get(&self, tenant: &Tenant, part: &str) -> Result<SecretJson> {
        let name = self.name(tenant, part);
        if let Some(hit) = self.cached(&name) {
            return Ok(hit);
        }
        let Some(text) = self.source.fetch(&name).await? else {
            return Err(HandoffError::NotConfigured(format!(
                "{part} is not configured for tenant {tenant}"
            )));
        };
        let value: Value = serde_json::from_str(&text).map_err(|_| {
            HandoffError::NotConfigured(format!("secret {name} is not a JSON object"))
        })?;
        if !value.is_object() {
            return Err(HandoffError::NotConfigured(format!(
                "secret {name} is not a JSON object"
            )));
        }
        // A secret that says which environment it is for must match.
        if let Some(env) = value.get("client_env").and_then(Value::as_str) {
            if env != tenant.client_env.as_str() {
                return Err(HandoffError::NotConfigured(format!(
                    "secret {name} is for environment {env}, not {}",
                    tenant.client_env.as_str()
                )));
            }
        }
        let value = SecretJson::new(value);
        self.cache.lock().expect("cache lock").insert(
            name,
            Cached {
                fetched: Instant::now(),
                value: value.clone(),
            },
        );
        Ok(value)
    }

    fn cached(&self, name: &str) -> Option<SecretJson> {
        let cache = self.cache.lock().expect("cache lock");
        cache
            .get(name)
            .filter(|c| c.fetched.elapsed() < self.ttl)
            .map(|c| c.value.clone())
    }

    /// Drops a cached value, e.g. after the platform refused the credentials.
    pub fn invalidate(&self, tenant: &Tenant, part: &str) {
        self.cache
            .lock()
            .expect("cache lock")
            .remove(&self.name(tenant, part));
    }

    pub async fn runtime(&self, tenant: &Tenant) -> Result<RuntimeConfig> {
        self.get(tenant, "runtime").await?.parse("runtime")
    }

    pub async fn integration(&self, tenant: &Tenant, key: IntegrationKey) -> Result<SecretJson> {
        self.get(tenant, key.as_str()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClientEnv;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fake {
        values: HashMap<String, String>,
        calls: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl SecretSource for Fake {
        async fn fetch(&self, name: &str) -> Result<Option<String>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(self.values.get(name).cloned())
        }
    }

    fn secrets(ttl: Duration) -> (Secrets, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut values = HashMap::new();
        values.insert(
            "chat-handoff/acme/support/live/runtime".to_owned(),
            r#"{"events_url":"http://x/events","events_secret":"CANARY-live"}"#.to_owned(),
        );
        values.insert(
            "chat-handoff/acme/support/sandbox/runtime".to_owned(),
            r#"{"events_url":"http://x/sandbox","events_secret":"CANARY-sandbox"}"#.to_owned(),
        );
        values.insert(
            "chat-handoff/acme/support/pre-release/genesys_integration".to_owned(),
            r#"{"client_env":"live","client_id":"x"}"#.to_owned(),
        );
        let s = Secrets::new(
            Fake {
                values,
                calls: calls.clone(),
            },
            "chat-handoff",
            ttl,
        );
        (s, calls)
    }

    fn tenant(env: ClientEnv) -> Tenant {
        Tenant::new("acme", "support", env).unwrap()
    }

    #[tokio::test]
    async fn cached_within_ttl_and_refetched_after_invalidate() {
        let (s, calls) = secrets(DEFAULT_SECRET_TTL);
        let t = tenant(ClientEnv::Live);
        assert_eq!(s.runtime(&t).await.unwrap().events_url, "http://x/events");
        s.runtime(&t).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        s.invalidate(&t, "runtime");
        s.runtime(&t).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn expired_entries_are_refetched() {
        let (s, calls) = secrets(Duration::from_millis(0));
        let t = tenant(ClientEnv::Live);
        s.runtime(&t).await.unwrap();
        s.runtime(&t).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn environments_never_share_credentials() {
        let (s, _) = secrets(DEFAULT_SECRET_TTL);
        let live = s.runtime(&tenant(ClientEnv::Live)).await.unwrap();
        let sandbox = s.runtime(&tenant(ClientEnv::Sandbox)).await.unwrap();
        assert_eq!(live.events_secret.expose_secret(), "CANARY-live");
        assert_eq!(sandbox.events_secret.expose_secret(), "CANARY-sandbox");
        let missing = s.runtime(&tenant(ClientEnv::PreRelease)).await.unwrap_err();
        assert_eq!(missing.code(), "not_configured");
        // A secret tagged for another environment is refused even under the right name.
        let wrong = s
            .integration(&tenant(ClientEnv::PreRelease), IntegrationKey::Genesys)
            .await
            .unwrap_err();
        assert!(wrong.to_string().contains("for environment live"));
    }

    #[tokio::test]
    async fn debug_output_never_shows_values() {
        let (s, _) = secrets(DEFAULT_SECRET_TTL);
        let t = tenant(ClientEnv::Live);
        let runtime = s.runtime(&t).await.unwrap();
        let json = s.get(&t, "runtime").await.unwrap();
        let printed = format!("{runtime:?} {json:?} {s:?}");
        assert!(!printed.contains("CANARY"), "{printed}");
    }
}
