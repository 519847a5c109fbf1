//! Genesys Cloud REST: OAuth client credentials, Open Messaging inbound,
//! conversations, users and notification channels (spec §3, §5, §7, §8).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{HandoffError, Result};
use crate::http::{self, RetryPolicy};
use crate::providers::ProviderCtx;

/// One tenant's `genesys_integration` secret.
#[derive(Deserialize)]
pub struct GenesysCredentials {
    /// e.g. `mypurecloud.com`, `usw2.pure.cloud`; or give both bases explicitly.
    pub region_domain: Option<String>,
    pub api_base: Option<String>,
    pub login_base: Option<String>,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The Open Messaging integration id.
    pub integration_id: String,
    /// `outboundNotificationWebhookSignatureSecretToken`.
    pub webhook_secret: SecretString,
    /// The token being rotated out, still accepted.
    pub webhook_secret_previous: Option<SecretString>,
}

impl GenesysCredentials {
    pub fn api_base(&self) -> Result<String> {
        match (&self.api_base, &self.region_domain) {
            (Some(base), _) => Ok(base.trim_end_matches('/').to_owned()),
            (None, Some(domain)) => Ok(format!("https://api.{domain}")),
            _ => Err(HandoffError::NotConfigured(
                "genesys_integration needs region_domain or api_base".into(),
            )),
        }
    }

    /// The login host is the API host with `api.` replaced by `login.` [V PY-SDK api_client.py].
    pub fn login_base(&self) -> Result<String> {
        match (&self.login_base, &self.region_domain) {
            (Some(base), _) => Ok(base.trim_end_matches('/').to_owned()),
            (None, Some(domain)) => Ok(format!("https://login.{domain}")),
            _ => Err(HandoffError::NotConfigured(
                "genesys_integration needs region_domain or login_base".into(),
            )),
        }
    }
}

/// Refresh this long before the token's stated expiry (MSA uses 60 s).
const TOKEN_EARLY_REFRESH: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
}

/// OAuth tokens per (tenant, client id), kept until shortly before expiry.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

impl TokenCache {
    fn get(&self, key: &(String, String)) -> Option<SecretString> {
        let tokens = self.tokens.lock().expect("token lock");
        tokens
            .get(key)
            .filter(|t| Instant::now() < t.refresh_at)
            .map(|t| t.token.clone())
    }

    fn put(&self, key: (String, String), token: SecretString, expires_in: Duration) {
        let early = TOKEN_EARLY_REFRESH.min(expires_in / 2);
        self.tokens.lock().expect("token lock").insert(
            key,
            CachedToken {
                token,
                refresh_at: Instant::now() + expires_in - early,
            },
        );
    }

    fn drop_token(&self, key: &(String, String)) {
        self.tokens.lock().expect("token lock").remove(key);
    }
}

/// A Genesys client bound to one tenant's credentials.
pub struct GenesysApi<'a> {
    pub ctx: &'a ProviderCtx<'a>,
    pub creds: GenesysCredentials,
    pub tokens: &'a TokenCache,
    pub policy: RetryPolicy,
}

impl<'a> GenesysApi<'a> {
    pub fn new(ctx: &'a ProviderCtx<'a>, tokens: &'a TokenCache) -> Result<Self> {
        Ok(Self {
            ctx,
            creds: ctx.credentials.parse("genesys_integration")?,
            tokens,
            policy: RetryPolicy::default(),
        })
    }

    fn token_key(&self) -> (String, String) {
        (self.ctx.tenant.key(), self.creds.client_id.clone())
    }

    /// A bearer token: cached, or fetched with client credentials.
    pub async fn token(&self) -> Result<SecretString> {
        let key = self.token_key();
        if let Some(t) = self.tokens.get(&key) {
            return Ok(t);
        }
        let url = format!("{}/oauth/token", self.creds.login_base()?);
        let resp = http::send("genesys oauth token", self.policy, || {
            self.ctx
                .http
                .post(&url)
                .basic_auth(
                    &self.creds.client_id,
                    Some(self.creds.client_secret.expose_secret()),
                )
                .form(&[("grant_type", "client_credentials")])
        })
        .await?;
        let status = resp.status();
        if !status.is_success() {
            // Bad credentials: the caller re-reads the secret once.
            return Err(match status {
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    HandoffError::ProviderAuth(format!("genesys oauth token: {status}"))
                }
                _ => http::status_error("genesys oauth token", status, ""),
            });
        }
        let body: TokenResponse = resp.json().await.map_err(|_| {
            HandoffError::ProviderUnavailable("genesys oauth token: bad JSON".into())
        })?;
        let token = SecretString::from(body.access_token);
        self.tokens.put(
            key,
            token.clone(),
            Duration::from_secs(body.expires_in.max(1)),
        );
        Ok(token)
    }

    /// Sends an authenticated request; on 401 fetches a new token and tries once more.
    pub async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response> {
        let url = format!("{}{}", self.creds.api_base()?, path);
        for attempt in 0..2 {
            let token = self.token().await?;
            let build = || -> RequestBuilder {
                let mut rb = self
                    .ctx
                    .http
                    .request(method.clone(), &url)
                    .bearer_auth(token.expose_secret());
                if let Some(b) = body {
                    rb = rb.json(b);
                }
                rb
            };
            let resp = http::send(what, self.policy, build).await?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                tracing::info!(call = what, "genesys token refused; refreshing");
                self.tokens.drop_token(&self.token_key());
                continue;
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Calls and requires 2xx; returns the JSON body (or null when empty).
    pub async fn call_json(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let resp = self.call(what, method, path, body).await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(http::status_error(what, status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|_| HandoffError::ProviderUnavailable(format!("{what}: bad JSON")))
    }

    fn inbound_path(&self, kind: &str) -> String {
        format!(
            "/api/v2/conversations/messages/{}/inbound/open/{kind}",
            self.creds.integration_id
        )
    }

    /// `POST …/inbound/open/message`; with `prefetch` the answer carries `conversationId`.
    pub async fn send_inbound_message(&self, message: &Value, prefetch: bool) -> Result<Value> {
        let mut path = self.inbound_path("message");
        if prefetch {
            path.push_str("?prefetchConversationId=true");
        }
        self.call_json(
            "genesys inbound message",
            Method::POST,
            &path,
            Some(message),
        )
        .await
    }

    /// `POST …/inbound/open/event` (customer typing).
    pub async fn send_inbound_event(&self, event: &Value) -> Result<Value> {
        let path = self.inbound_path("event");
        self.call_json("genesys inbound event", Method::POST, &path, Some(event))
            .await
    }

    /// `GET /api/v2/conversations/messages/{id}`.
    pub async fn conversation(&self, conversation_id: &str) -> Result<Value> {
        self.call_json(
            "genesys get conversation",
            Method::GET,
            &format!("/api/v2/conversations/messages/{conversation_id}"),
            None,
        )
        .await
    }

    /// `PATCH …/participants/{pid}` `{"state":"disconnected"}`. A 4xx on a
    /// conversation already ended counts as done (spec §8 [U]).
    pub async fn disconnect_participant(
        &self,
        conversation_id: &str,
        participant_id: &str,
    ) -> Result<StatusCode> {
        let resp = self
            .call(
                "genesys disconnect participant",
                Method::PATCH,
                &format!(
                    "/api/v2/conversations/messages/{conversation_id}/participants/{participant_id}"
                ),
                Some(&json!({"state": "disconnected"})),
            )
            .await?;
        Ok(resp.status())
    }

    /// An agent's display name, `GET /api/v2/users/{id}` [U].
    pub async fn user_name(&self, user_id: &str) -> Result<Option<String>> {
        let user = self
            .call_json(
                "genesys get user",
                Method::GET,
                &format!("/api/v2/users/{user_id}"),
                None,
            )
            .await?;
        Ok(user.get("name").and_then(Value::as_str).map(str::to_owned))
    }

    /// `POST /api/v2/notifications/channels` → `(id, connectUri)`.
    pub async fn create_channel(&self) -> Result<(String, String)> {
        let v = self
            .call_json(
                "genesys create channel",
                Method::POST,
                "/api/v2/notifications/channels",
                Some(&json!({})),
            )
            .await?;
        match (
            v.get("id").and_then(Value::as_str),
            v.get("connectUri").and_then(Value::as_str),
        ) {
            (Some(id), Some(uri)) => Ok((id.to_owned(), uri.to_owned())),
            _ => Err(HandoffError::ProviderUnavailable(
                "genesys create channel: no id/connectUri".into(),
            )),
        }
    }

    /// `PUT …/channels/{id}/subscriptions`: replaces the channel's whole topic list.
    pub async fn replace_subscriptions(
        &self,
        channel_id: &str,
        topics: &[String],
    ) -> Result<Value> {
        let body = Value::Array(topics.iter().map(|t| json!({"id": t})).collect());
        self.call_json(
            "genesys subscribe",
            Method::PUT,
            &format!("/api/v2/notifications/channels/{channel_id}/subscriptions"),
            Some(&body),
        )
        .await
    }
}
