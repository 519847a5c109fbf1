//! WxCC REST for the BYO custom messaging channel (spec §1, §2): the Service
//! App refresh grant, Create Task, Append Message, End Task.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{HandoffError, Result};
use crate::http::{self, RetryPolicy};
use crate::providers::ProviderCtx;

use super::U_TASKS_API_VERSION;

/// Webex identity host of the refresh grant [V W3].
pub const DEFAULT_IDENTITY_BASE: &str = "https://webexapis.com";

/// One tenant's `webex_integration` secret (spec §1).
#[derive(Deserialize)]
pub struct WebexCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
    /// The Service App's refresh token for the org (rotated ones are cached in memory).
    pub refresh_token: SecretString,
    pub org_id: String,
    /// `https://api.wxcc-{dc}.cisco.com`.
    pub api_base_url: String,
    /// Host of `/v1/access_token`; `https://webexapis.com` unless set.
    pub identity_base_url: Option<String>,
    /// The custom messaging asset's business address (`destination.id`).
    pub business_address: String,
    /// The channel name configured on the asset (`channel`).
    pub channel_name: String,
    /// Asset webhook and subscription secret (one for both, spec §3.3).
    pub webhook_secret: SecretString,
    pub webhook_secret_previous: Option<SecretString>,
    /// `v1` (documented) or `v2` (what live testing needed); [`U_TASKS_API_VERSION`] unless set.
    pub tasks_api_version: Option<String>,
}

impl WebexCredentials {
    fn api_base(&self) -> String {
        self.api_base_url.trim_end_matches('/').to_owned()
    }

    fn token_url(&self) -> String {
        format!(
            "{}/v1/access_token",
            self.identity_base_url
                .as_deref()
                .unwrap_or(DEFAULT_IDENTITY_BASE)
                .trim_end_matches('/')
        )
    }

    fn tasks_path(&self) -> Result<String> {
        let v = self
            .tasks_api_version
            .as_deref()
            .unwrap_or(U_TASKS_API_VERSION);
        match v {
            "v1" | "v2" => Ok(format!("/{v}/tasks")),
            other => Err(HandoffError::NotConfigured(format!(
                "webex_integration tasks_api_version must be v1 or v2, not {other}"
            ))),
        }
    }
}

/// Refresh this long before the stated expiry (tokens live ~14 days).
const TOKEN_EARLY_REFRESH: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
    refresh_token: Option<String>,
}

struct CachedToken {
    access: Option<(SecretString, Instant)>,
    /// The newest refresh token the platform returned (it may rotate, spec §1).
    refresh: Option<SecretString>,
}

/// Access tokens (and rotated refresh tokens) per (tenant, client id).
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

impl TokenCache {
    fn access(&self, key: &(String, String)) -> Option<SecretString> {
        let tokens = self.tokens.lock().expect("token lock");
        tokens
            .get(key)
            .and_then(|t| t.access.as_ref())
            .filter(|(_, at)| Instant::now() < *at)
            .map(|(t, _)| t.clone())
    }

    fn rotated_refresh(&self, key: &(String, String)) -> Option<SecretString> {
        let tokens = self.tokens.lock().expect("token lock");
        tokens.get(key).and_then(|t| t.refresh.clone())
    }

    fn put(
        &self,
        key: (String, String),
        access: SecretString,
        expires_in: Duration,
        refresh: Option<SecretString>,
    ) {
        let early = TOKEN_EARLY_REFRESH.min(expires_in / 2);
        let mut tokens = self.tokens.lock().expect("token lock");
        let entry = tokens.entry(key).or_insert(CachedToken {
            access: None,
            refresh: None,
        });
        entry.access = Some((access, Instant::now() + expires_in - early));
        if refresh.is_some() {
            entry.refresh = refresh;
        }
    }

    fn drop_access(&self, key: &(String, String)) {
        if let Some(t) = self.tokens.lock().expect("token lock").get_mut(key) {
            t.access = None;
        }
    }

    fn drop_rotated(&self, key: &(String, String)) {
        if let Some(t) = self.tokens.lock().expect("token lock").get_mut(key) {
            t.refresh = None;
        }
    }
}

/// A WxCC client bound to one tenant's credentials.
pub struct WxccApi<'a> {
    ctx: &'a ProviderCtx<'a>,
    pub creds: WebexCredentials,
    tokens: &'a TokenCache,
    policy: RetryPolicy,
}

impl<'a> WxccApi<'a> {
    pub fn new(ctx: &'a ProviderCtx<'a>, tokens: &'a TokenCache) -> Result<Self> {
        Ok(Self {
            ctx,
            creds: ctx.credentials.parse("webex_integration")?,
            tokens,
            policy: RetryPolicy::default(),
        })
    }

    fn token_key(&self) -> (String, String) {
        (self.ctx.tenant.key(), self.creds.client_id.clone())
    }

    /// One refresh grant with `refresh_token`; `Ok(None)` when the grant is refused.
    async fn refresh_with(&self, refresh_token: &SecretString) -> Result<Option<TokenResponse>> {
        let url = self.creds.token_url();
        let resp = http::send("webex refresh token", self.policy, || {
            self.ctx.http.post(&url).form(&[
                ("grant_type", "refresh_token"),
                ("client_id", self.creds.client_id.as_str()),
                ("client_secret", self.creds.client_secret.expose_secret()),
                ("refresh_token", refresh_token.expose_secret()),
            ])
        })
        .await?;
        let status = resp.status();
        if matches!(
            status,
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(http::status_error("webex refresh token", status, ""));
        }
        resp.json()
            .await
            .map(Some)
            .map_err(|_| HandoffError::ProviderUnavailable("webex refresh token: bad JSON".into()))
    }

    /// A bearer token: cached, or from the refresh grant (newest refresh token
    /// first, then the one in the secret).
    pub async fn token(&self) -> Result<SecretString> {
        let key = self.token_key();
        if let Some(t) = self.tokens.access(&key) {
            return Ok(t);
        }
        let rotated = self.tokens.rotated_refresh(&key);
        let mut answer = None;
        if let Some(r) = &rotated {
            answer = self.refresh_with(r).await?;
            if answer.is_none() {
                self.tokens.drop_rotated(&key);
            }
        }
        if answer.is_none() {
            answer = self.refresh_with(&self.creds.refresh_token).await?;
        }
        let Some(body) = answer else {
            // The refresh token itself is dead: the service re-reads the secret once.
            return Err(HandoffError::ProviderAuth(
                "webex refresh token refused".into(),
            ));
        };
        let rotated_now = body
            .refresh_token
            .filter(|r| r != self.creds.refresh_token.expose_secret())
            .map(SecretString::from);
        if rotated_now.is_some() {
            tracing::warn!(
                "webex returned a new refresh token; kept in memory only: write it back to the secret"
            );
        }
        let token = SecretString::from(body.access_token);
        self.tokens.put(
            key,
            token.clone(),
            Duration::from_secs(body.expires_in.max(1)),
            rotated_now,
        );
        Ok(token)
    }

    /// Sends an authenticated JSON request; on 401/403 refreshes the token and
    /// tries once more (an expired Service App token has been seen as 403, W4).
    async fn call(&self, what: &str, method: Method, path: &str, body: &Value) -> Result<Response> {
        let url = format!("{}{}", self.creds.api_base(), path);
        for attempt in 0..2 {
            let token = self.token().await?;
            let resp = http::send(what, self.policy, || {
                self.ctx
                    .http
                    .request(method.clone(), &url)
                    .bearer_auth(token.expose_secret())
                    .json(body)
            })
            .await?;
            let refused = matches!(
                resp.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            );
            if refused && attempt == 0 {
                tracing::info!(call = what, status = %resp.status(), "webex token refused; refreshing");
                self.tokens.drop_access(&self.token_key());
                continue;
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second pass")
    }

    async fn call_json(&self, what: &str, path: &str, body: &Value) -> Result<Value> {
        let resp = self.call(what, Method::POST, path, body).await?;
        let status = resp.status();
        let tracking = resp
            .headers()
            .get("trackingid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            tracing::warn!(call = what, %status, tracking_id = ?tracking, "webex call failed");
            return Err(http::status_error(what, status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|_| HandoffError::ProviderUnavailable(format!("{what}: bad JSON")))
    }

    /// `POST /v{1|2}/tasks` → the task id (`data.id`). 201 only means accepted.
    pub async fn create_task(&self, body: &Value) -> Result<String> {
        let path = self.creds.tasks_path()?;
        let answer = self.call_json("webex create task", &path, body).await?;
        answer["data"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| HandoffError::ProviderUnavailable("webex create task: no id".into()))
    }

    /// `POST …/tasks/{id}/messages`.
    pub async fn append_message(&self, task_id: &str, body: &Value) -> Result<Value> {
        let path = format!("{}/{task_id}/messages", self.creds.tasks_path()?);
        self.call_json("webex append message", &path, body).await
    }

    /// `POST …/tasks/{id}/end`; a task already closed or gone counts as done.
    pub async fn end_task(&self, task_id: &str) -> Result<()> {
        let path = format!("{}/{task_id}/end", self.creds.tasks_path()?);
        let resp = self
            .call(
                "webex end task",
                Method::POST,
                &path,
                &Value::Object(Default::default()),
            )
            .await?;
        let status = resp.status();
        if status.is_success() || matches!(status, StatusCode::NOT_FOUND | StatusCode::CONFLICT) {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(http::status_error("webex end task", status, &text))
    }
}
