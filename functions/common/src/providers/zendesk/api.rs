//! Sunshine Conversations REST calls (spec §4, §5), Basic auth with an
//! integration-scoped key.

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{HandoffError, Result};
use crate::http::{self, RetryPolicy};
use crate::providers::ProviderCtx;

fn default_relay() -> String {
    "ai-relay".into()
}

fn default_workspace() -> String {
    "zd-agentWorkspace".into()
}

/// One tenant's `zendesk_integration` secret.
#[derive(Deserialize)]
pub struct ZendeskCredentials {
    /// `{subdomain}.zendesk.com`, or give `base_url` (`…/sc`) explicitly.
    pub subdomain: Option<String>,
    pub base_url: Option<String>,
    pub app_id: String,
    pub key_id: String,
    pub key_secret: SecretString,
    /// The Conversations integration's webhook shared secret (`X-API-Key`).
    pub webhook_secret: SecretString,
    pub webhook_secret_previous: Option<SecretString>,
    /// Our switchboard integration (name or id).
    #[serde(default = "default_relay")]
    pub relay_switchboard_integration: String,
    /// The Agent Workspace switchboard integration (name or id).
    #[serde(default = "default_workspace")]
    pub agent_workspace: String,
    /// Context/routing key -> ticket field id.
    #[serde(default)]
    pub field_map: Map<String, Value>,
}

impl ZendeskCredentials {
    pub fn base(&self) -> Result<String> {
        match (&self.base_url, &self.subdomain) {
            (Some(b), _) => Ok(b.trim_end_matches('/').to_owned()),
            (None, Some(s)) => Ok(format!("https://{s}.zendesk.com/sc")),
            _ => Err(HandoffError::NotConfigured(
                "zendesk_integration needs subdomain or base_url".into(),
            )),
        }
    }
}

pub struct SunshineApi<'a> {
    ctx: &'a ProviderCtx<'a>,
    pub creds: ZendeskCredentials,
    policy: RetryPolicy,
}

impl<'a> SunshineApi<'a> {
    pub fn new(ctx: &'a ProviderCtx<'a>) -> Result<Self> {
        Ok(Self {
            ctx,
            creds: ctx.credentials.parse("zendesk_integration")?,
            policy: RetryPolicy::default(),
        })
    }

    /// One call; returns the status and the JSON body.
    async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let url = format!(
            "{}/v2/apps/{}{}",
            self.creds.base()?,
            self.creds.app_id,
            path
        );
        let resp = http::send(what, self.policy, || {
            let mut rb = self.ctx.http.request(method.clone(), &url).basic_auth(
                &self.creds.key_id,
                Some(self.creds.key_secret.expose_secret()),
            );
            if let Some(b) = body {
                rb = rb.json(b);
            }
            rb
        })
        .await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, json))
    }

    async fn ok(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let (status, json) = self.call(what, method, path, body).await?;
        if status.is_success() {
            Ok(json)
        } else {
            Err(http::status_error(
                what,
                status,
                &json["errors"].to_string(),
            ))
        }
    }

    /// Creates the user, or finds it when it exists (409).
    pub async fn ensure_user(&self, external_id: &str, name: Option<&str>) -> Result<()> {
        let mut profile = json!({});
        if let Some(n) = name {
            profile["givenName"] = json!(n);
        }
        let body = json!({"externalId": external_id, "profile": profile});
        let (status, json) = self
            .call("zendesk create user", Method::POST, "/users", Some(&body))
            .await?;
        if status.is_success() || status == StatusCode::CONFLICT {
            return Ok(());
        }
        Err(http::status_error(
            "zendesk create user",
            status,
            &json["errors"].to_string(),
        ))
    }

    pub async fn find_conversation(&self, external_id: &str) -> Result<Option<String>> {
        let path = format!(
            "/conversations?filter[userExternalId]={}",
            urlencode(external_id)
        );
        let json = self
            .ok("zendesk list conversations", Method::GET, &path, None)
            .await?;
        Ok(json["conversations"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["type"] == "personal"))
            .and_then(|c| c["id"].as_str())
            .map(str::to_owned))
    }

    pub async fn create_conversation(&self, external_id: &str, session: &str) -> Result<String> {
        let body = json!({"type": "personal",
            "participants": [{"userExternalId": external_id, "subscribeSDKClient": false}],
            "displayName": "AI handoff", "metadata": {"handoff_session_id": session}});
        let json = self
            .ok(
                "zendesk create conversation",
                Method::POST,
                "/conversations",
                Some(&body),
            )
            .await?;
        json["conversation"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| {
                HandoffError::ProviderUnavailable("zendesk create conversation: no id".into())
            })
    }

    async fn post_message(&self, conversation: &str, author: Value, text: &str) -> Result<String> {
        let text: String = text.chars().take(super::MAX_TEXT_CHARS).collect();
        let body = json!({"author": author, "content": {"type": "text", "text": text}});
        let json = self
            .ok(
                "zendesk post message",
                Method::POST,
                &format!("/conversations/{conversation}/messages"),
                Some(&body),
            )
            .await?;
        json["messages"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| HandoffError::ProviderUnavailable("zendesk post message: no id".into()))
    }

    pub async fn post_business_message(&self, conversation: &str, text: &str) -> Result<String> {
        self.post_message(
            conversation,
            json!({"type": "business", "displayName": "AI assistant"}),
            text,
        )
        .await
    }

    pub async fn post_user_message(
        &self,
        conversation: &str,
        external_id: &str,
        text: &str,
    ) -> Result<String> {
        self.post_message(
            conversation,
            json!({"type": "user", "userExternalId": external_id}),
            text,
        )
        .await
    }

    pub async fn pass_control(
        &self,
        conversation: &str,
        target: &str,
        metadata: &Map<String, Value>,
    ) -> Result<()> {
        let mut body = json!({"switchboardIntegration": target});
        if !metadata.is_empty() {
            body["metadata"] = Value::Object(metadata.clone());
        }
        self.ok(
            "zendesk pass control",
            Method::POST,
            &format!("/conversations/{conversation}/passControl"),
            Some(&body),
        )
        .await?;
        Ok(())
    }
}

/// Percent-encodes a query value (ids are ASCII; `:` and the like are escaped).
fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
