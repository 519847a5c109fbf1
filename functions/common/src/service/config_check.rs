//! An operator's check of one tenant's configuration (`infra/config-check.sh`):
//! every secret the relay would read is present and well-formed, and each
//! configured platform answers an authenticated call that changes nothing.
//! Secret values are never printed; lengths and names are.

use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::domain::{IntegrationKey, Tenant};
use crate::error::HandoffError;
use crate::providers::ProviderCtx;
use crate::request::HandoffRoute;
use crate::secrets::RuntimeConfig;

use super::handoff_api;
use super::Deps;

/// Shortest webhook/events/API secret we call well-formed.
const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but something deserves a look.
    Warn,
    Failed,
    NotConfigured,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Failed => "FAILED",
            Self::NotConfigured => "-",
        }
    }
}

/// One checked part of the tenant.
#[derive(Debug, Clone)]
pub struct Line {
    pub part: String,
    pub status: Status,
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Report {
    pub tenant: Tenant,
    pub lines: Vec<Line>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.count(Status::Failed)
    }

    pub fn count(&self, status: Status) -> usize {
        self.lines.iter().filter(|l| l.status == status).count()
    }

    fn push(&mut self, part: &str, status: Status, detail: impl Into<String>) {
        self.lines.push(Line {
            part: part.to_owned(),
            status,
            detail: detail.into(),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Configuration of tenant {}", self.tenant)?;
        let width = self.lines.iter().map(|l| l.part.len()).max().unwrap_or(0);
        for l in &self.lines {
            writeln!(
                f,
                "  {:<width$}  {:<6}  {}",
                l.part,
                l.status.label(),
                l.detail
            )?;
        }
        write!(
            f,
            "{} ok, {} warnings, {} failed, {} not configured",
            self.count(Status::Ok),
            self.count(Status::Warn),
            self.failed(),
            self.count(Status::NotConfigured)
        )
    }
}

/// Checks of the `runtime` secret that need no network.
pub fn check_runtime(runtime: &RuntimeConfig, configured: &[IntegrationKey]) -> Vec<String> {
    let mut problems = Vec::new();
    let url = runtime.events_url.as_str();
    if !(url.starts_with("https://") || url.starts_with("http://127.0.0.1")) {
        problems.push(format!(
            "events_url {url:?} is not https (only loopback may be http)"
        ));
    }
    let secret_len = runtime.events_secret.expose_secret().len();
    if secret_len < MIN_SECRET_LEN {
        problems.push(format!(
            "events_secret has {secret_len} characters; at least {MIN_SECRET_LEN} expected"
        ));
    }
    for (name, target) in &runtime.destinations {
        match HandoffRoute::from_text_chat(target) {
            Ok(route) if !configured.contains(&route.integration) => problems.push(format!(
                "destination {name:?} routes to {} which has no credentials",
                route.integration
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("destination {name:?}: {e}")),
        }
    }
    problems
}

/// Runs every check for `tenant`.
pub async fn run(deps: &Deps, tenant: &Tenant) -> Report {
    let mut report = Report {
        tenant: tenant.clone(),
        lines: Vec::new(),
    };
    let mut configured = Vec::new();
    let keys: Vec<IntegrationKey> = deps.registry.keys().collect();
    let mut integrations = Vec::new();
    for key in IntegrationKey::ALL {
        match deps.secrets.integration(tenant, key).await {
            Ok(secret) => {
                configured.push(key);
                integrations.push((key, Ok(secret)));
            }
            Err(HandoffError::NotConfigured(m)) if m.contains("is not configured") => {
                integrations.push((key, Err(None)));
            }
            Err(e) => integrations.push((key, Err(Some(e)))),
        }
    }

    match deps.secrets.runtime(tenant).await {
        Ok(runtime) => {
            let problems = check_runtime(&runtime, &configured);
            if problems.is_empty() {
                report.push(
                    "runtime",
                    Status::Ok,
                    format!(
                        "events_url {}; events_secret set; {} destination(s)",
                        runtime.events_url,
                        runtime.destinations.len()
                    ),
                );
            } else {
                report.push("runtime", Status::Failed, problems.join("; "));
            }
        }
        Err(e) => report.push(
            "runtime",
            Status::Failed,
            format!("{e} (events cannot be delivered)"),
        ),
    }

    match deps.secrets.get(tenant, handoff_api::SECRET_PART).await {
        Ok(secret) => {
            let len = secret_field_len(&secret, "api_key");
            if len >= MIN_SECRET_LEN {
                report.push(
                    handoff_api::SECRET_PART,
                    Status::Ok,
                    "api_key set (screen-pop reads enabled)",
                );
            } else {
                report.push(
                    handoff_api::SECRET_PART,
                    Status::Failed,
                    format!("api_key missing or under {MIN_SECRET_LEN} characters"),
                );
            }
        }
        Err(HandoffError::NotConfigured(m)) if m.contains("is not configured") => report.push(
            handoff_api::SECRET_PART,
            Status::NotConfigured,
            "no handoff_api secret: screen-pop reads are refused",
        ),
        Err(e) => report.push(handoff_api::SECRET_PART, Status::Failed, e.to_string()),
    }

    for (key, secret) in integrations {
        let part = key.as_str();
        let secret = match secret {
            Ok(s) => s,
            Err(None) => {
                report.push(part, Status::NotConfigured, "no secret");
                continue;
            }
            Err(Some(e)) => {
                report.push(part, Status::Failed, e.to_string());
                continue;
            }
        };
        if !keys.contains(&key) {
            report.push(
                part,
                Status::Warn,
                "secret present but this platform is not supported yet",
            );
            continue;
        }
        let provider = match deps.provider(key) {
            Ok(p) => p,
            Err(e) => {
                report.push(part, Status::Failed, e.to_string());
                continue;
            }
        };
        let refreshed = Mutex::new(Default::default());
        let ctx = ProviderCtx {
            tenant,
            credentials: &secret,
            http: &deps.http,
            refreshed: &refreshed,
        };
        let started = Instant::now();
        match provider.check(&ctx).await {
            Ok(what) => report.push(
                part,
                Status::Ok,
                format!("{what} ({} ms)", started.elapsed().as_millis()),
            ),
            Err(e) => report.push(part, Status::Failed, format!("{}: {e}", e.code())),
        }
    }
    report
}

fn secret_field_len(secret: &crate::secrets::SecretJson, field: &str) -> usize {
    secret
        .parse::<Value>("handoff_api")
        .ok()
        .and_then(|v| v.get(field).and_then(Value::as_str).map(str::len))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClientEnv;
    use serde_json::json;

    fn runtime(v: Value) -> RuntimeConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn runtime_problems_are_named() {
        let good = runtime(json!({"events_url": "https://rt.example/events",
            "events_secret": "0123456789abcdef0123",
            "destinations": {"billing": {"genesys_integration": {"queue": "b"}}}}));
        assert!(check_runtime(&good, &[IntegrationKey::Genesys]).is_empty());
        let problems = check_runtime(&good, &[IntegrationKey::Zendesk]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("billing"), "{problems:?}");

        let bad = runtime(json!({"events_url": "http://rt.example/events",
            "events_secret": "short",
            "destinations": {"x": {"nosuch_integration": {}}}}));
        let problems = check_runtime(&bad, &[]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        // The secret's value never appears in a problem.
        assert!(problems
            .iter()
            .all(|p| !p.contains("short\"") && !p.contains(": short")));
    }

    #[test]
    fn report_renders_and_counts() {
        let mut r = Report {
            tenant: Tenant::new("acme", "support", ClientEnv::Live).unwrap(),
            lines: vec![],
        };
        r.push("runtime", Status::Ok, "fine");
        r.push(
            "genesys_integration",
            Status::Failed,
            "provider_auth_failed: 401",
        );
        r.push("zendesk_integration", Status::NotConfigured, "no secret");
        let text = r.to_string();
        assert_eq!(r.failed(), 1);
        assert!(text.starts_with("Configuration of tenant acme/support/live\n"));
        assert!(text.contains("genesys_integration  FAILED  provider_auth_failed: 401"));
        assert!(text.ends_with("1 ok, 0 warnings, 1 failed, 1 not configured"));
    }
}
