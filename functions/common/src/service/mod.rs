//! The relay's use cases, one module per function, over shared dependencies.
//! The Lambda binaries only convert events to these calls and back.

pub mod config_check;
pub mod end;
pub mod handoff_api;
pub mod inbound;
pub mod outbound;
pub mod poller;
pub mod start;

use std::sync::Arc;

use crate::config::Config;
use crate::delivery::EventPusher;
use crate::domain::{IntegrationKey, SessionId, Tenant};
use crate::error::{HandoffError, Result};
use crate::providers::{Provider, Registry};
use crate::secrets::Secrets;
use crate::store::Store;

/// Clients and caches built once per process.
pub struct Deps {
    pub store: Store,
    pub secrets: Secrets,
    pub http: reqwest::Client,
    pub registry: Registry,
    pub pusher: EventPusher,
}

impl Deps {
    /// Builds every client from the environment. No network calls happen here:
    /// SDK clients connect lazily on first use.
    pub async fn from_env(config: &Config) -> Arc<Self> {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let registry = Registry::with_all(&aws);
        let http = crate::http::client(config.http_timeout);
        Arc::new(Self {
            store: Store::new(aws_sdk_dynamodb::Client::new(&aws), &config.table_name),
            secrets: Secrets::new(
                aws_sdk_secretsmanager::Client::new(&aws),
                &config.secret_prefix,
                config.secret_ttl,
            ),
            pusher: EventPusher::new(http.clone()),
            http,
            registry,
        })
    }

    pub fn provider(&self, key: IntegrationKey) -> Result<Arc<dyn Provider>> {
        self.registry.get(key).ok_or_else(|| {
            HandoffError::UnknownIntegration(format!("{} is not supported yet", key.as_str()))
        })
    }

    /// Pushes whatever the session has not delivered yet. Failures are left for
    /// the sweep and never fail the caller: the events are stored.
    /// Pushes events just appended (see [`EventPusher::push_appended`]).
    pub async fn push_appended(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        delivered_seq: u64,
        appended: &[crate::store::StoredEvent],
    ) {
        crate::chaos::maybe_crash(crate::chaos::CrashPoint::AfterLogBeforePush);
        if let Err(e) = self
            .pusher
            .push_appended(
                &self.store,
                &self.secrets,
                tenant,
                session,
                delivered_seq,
                appended,
            )
            .await
        {
            tracing::warn!(error = %e, "client event push deferred");
        }
    }

    pub async fn push_pending(&self, tenant: &Tenant, session: &SessionId, after_seq: u64) {
        crate::chaos::maybe_crash(crate::chaos::CrashPoint::AfterLogBeforePush);
        if let Err(e) = self
            .pusher
            .push_backlog(&self.store, &self.secrets, tenant, session, after_seq)
            .await
        {
            tracing::warn!(error = %e, "client event push deferred");
        }
    }
}

impl Deps {
    /// Merges what an adapter asked to remember into the session's provider data.
    pub async fn store_refreshed(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        refreshed: std::sync::Mutex<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<()> {
        let keys = refreshed.into_inner().unwrap_or_default();
        if keys.is_empty() {
            return Ok(());
        }
        self.store
            .append(tenant, session, None, |s| {
                let mut data = s.provider_data.clone();
                for (k, v) in &keys {
                    data[k] = v.clone();
                }
                Ok((
                    vec![],
                    crate::store::SessionChange {
                        provider_data: Some(data),
                        ..Default::default()
                    },
                ))
            })
            .await?;
        Ok(())
    }
}

/// Runs a provider call with the tenant's credentials; if the platform refuses
/// them, reads the secret afresh once and tries again. `$refreshed` collects
/// provider data the adapter wants stored.
#[macro_export]
macro_rules! with_credentials {
    ($deps:expr, $tenant:expr, $key:expr, $refreshed:expr, |$ctx:ident| $call:expr) => {{
        let mut outcome = None;
        for attempt in 0..2 {
            let credentials = $deps.secrets.integration($tenant, $key).await?;
            let $ctx = $crate::providers::ProviderCtx {
                tenant: $tenant,
                credentials: &credentials,
                http: &$deps.http,
                refreshed: $refreshed,
            };
            match $call.await {
                Err($crate::error::HandoffError::ProviderAuth(m)) if attempt == 0 => {
                    tracing::info!(reason = %m, "credentials refused; re-reading secret");
                    $deps.secrets.invalidate($tenant, $key.as_str());
                }
                other => {
                    outcome = Some(other);
                    break;
                }
            }
        }
        outcome.expect("second attempt always sets the outcome")
    }};
}
