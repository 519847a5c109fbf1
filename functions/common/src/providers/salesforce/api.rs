//! Enhanced Chat (MIAW) REST: access tokens (unauthenticated, verified user,
//! continuation), conversations, messages, entries (spec §2.2, §2.3).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::{Method, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{HandoffError, Result};
use crate::http::{self, RetryPolicy};
use crate::providers::ProviderCtx;
use crate::store::SessionRecord;
use crate::time::now_ms;

use super::{U_IDENTITY_TOKEN_TTL_SECS, U_TOKEN_EARLY_REFRESH_SECS};

/// MIAW: `capabilitiesVersion` the sample app sends [V MWS].
pub const CAPABILITIES_VERSION: &str = "1";
/// MIAW: the SSE `X-Org-Id` header takes the 15-character org id [V DOC-SSE].
pub const ORG_ID_SHORT_LEN: usize = 15;
/// MIAW: list entries returns at most 50 per call [V MWS].
pub const MAX_ENTRIES_PER_PAGE: usize = 50;

/// How the relay authenticates as the end user (spec §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Anonymous JWT; cannot be renewed past its `exp` (1 h by default).
    #[default]
    Unauthenticated,
    /// User verification: we sign a `customerIdentityToken` and can re-mint
    /// an access token for the same subject at any time.
    Verified,
}

/// One tenant's `salesforce_integration` secret.
#[derive(Deserialize)]
pub struct SalesforceCredentials {
    /// The deployment's messaging URL, `https://{MyDomain}.my.salesforce-scrt.com`.
    pub scrt_base_url: String,
    /// `00D…`, 15 or 18 characters.
    pub org_id: String,
    /// The Embedded Service deployment (Custom Client) API name.
    pub es_developer_name: String,
    #[serde(default)]
    pub auth_mode: AuthMode,
    /// Verified mode: `iss` of our customerIdentityToken.
    pub identity_issuer: Option<String>,
    /// Verified mode: `kid` of the key uploaded to the org's keyset.
    pub identity_key_id: Option<String>,
    /// Verified mode: RSA private key, PKCS#8 PEM (RS256).
    pub identity_private_key_pem: Option<SecretString>,
    /// Our attribute name → the channel's hidden pre-chat field name. When
    /// set, only mapped attributes are sent (unknown field names are refused).
    pub prechat_fields: Option<HashMap<String, String>>,
    /// `language` sent with messages, e.g. `en_US`.
    pub language: Option<String>,
}

impl SalesforceCredentials {
    pub fn base(&self) -> String {
        self.scrt_base_url.trim_end_matches('/').to_owned()
    }

    /// The 15-character org id for `X-Org-Id`.
    pub fn org_id_short(&self) -> &str {
        let end = self.org_id.len().min(ORG_ID_SHORT_LEN);
        &self.org_id[..end]
    }

    fn validate(&self) -> Result<()> {
        if !self.org_id.starts_with("00D") || !matches!(self.org_id.len(), 15 | 18) {
            return Err(HandoffError::NotConfigured(
                "salesforce_integration org_id must be a 15 or 18 character 00D… id".into(),
            ));
        }
        if self.auth_mode == AuthMode::Verified
            && (self.identity_private_key_pem.is_none() || self.identity_issuer.is_none())
        {
            return Err(HandoffError::NotConfigured(
                "salesforce_integration verified mode needs identity_issuer and identity_private_key_pem".into(),
            ));
        }
        Ok(())
    }
}

/// A lowercase v4-shaped UUID derived from `seed`, so a retried call reuses it
/// (MIAW wants lowercase UUIDs for conversation and message ids [V DOC-SSE]).
pub fn stable_uuid(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The claims of a JWT we hold, read without verifying (we are its bearer).
pub fn jwt_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `exp` of a JWT in epoch seconds.
pub fn jwt_exp(token: &str) -> Option<i64> {
    jwt_claims(token)?.get("exp")?.as_i64()
}

fn pem_der(pem: &str) -> Result<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    STANDARD.decode(body).map_err(|_| {
        HandoffError::NotConfigured("salesforce identity_private_key_pem is not PEM".into())
    })
}

/// Signs the customerIdentityToken (RS256) for user verification [U body, spec §2.2].
pub fn identity_token(
    creds: &SalesforceCredentials,
    subject: &str,
    now_secs: i64,
) -> Result<String> {
    let (Some(pem), Some(iss)) = (&creds.identity_private_key_pem, &creds.identity_issuer) else {
        return Err(HandoffError::NotConfigured(
            "salesforce verified mode needs an identity key".into(),
        ));
    };
    let key = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&pem_der(pem.expose_secret())?)
        .map_err(|_| {
            HandoffError::NotConfigured("salesforce identity key is not an RSA PKCS#8 key".into())
        })?;
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &creds.identity_key_id {
        header["kid"] = json!(kid);
    }
    let claims = json!({
        "iss": iss, "sub": subject, "iat": now_secs,
        "exp": now_secs + U_IDENTITY_TOKEN_TTL_SECS,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| HandoffError::Internal("salesforce identity token signing failed".into()))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// Access tokens per (tenant, conversation), newest first; kept in memory
/// beside the copy in the session's provider data.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, String), String>>,
}

impl TokenCache {
    pub fn get(&self, tenant: &str, cid: &str) -> Option<String> {
        self.tokens
            .lock()
            .expect("token lock")
            .get(&(tenant.to_owned(), cid.to_owned()))
            .cloned()
    }

    pub fn put(&self, tenant: &str, cid: &str, token: &str) {
        self.tokens
            .lock()
            .expect("token lock")
            .insert((tenant.to_owned(), cid.to_owned()), token.to_owned());
    }

    pub fn forget(&self, tenant: &str, cid: &str) {
        self.tokens
            .lock()
            .expect("token lock")
            .remove(&(tenant.to_owned(), cid.to_owned()));
    }
}

/// A minted access token and what it says about itself.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: String,
    pub last_event_id: Option<String>,
}

/// What a conversation's calls authenticate with.
#[derive(Debug, Clone)]
pub struct ConversationAuth {
    pub conversation_id: String,
    /// Verified mode: the identity subject a token is re-minted for.
    pub identity_subject: Option<String>,
    /// The token stored on the session (may be older than the cache's).
    pub stored_token: Option<String>,
}

impl ConversationAuth {
    pub fn of(session: &SessionRecord) -> Option<Self> {
        let cid = session.provider_conversation_id.clone()?;
        let data = &session.provider_data;
        Some(Self {
            conversation_id: cid,
            identity_subject: data["identity_subject"].as_str().map(str::to_owned),
            stored_token: data["access_token"].as_str().map(str::to_owned),
        })
    }
}

/// A MIAW client bound to one tenant's credentials.
pub struct SalesforceApi<'a> {
    pub ctx: &'a ProviderCtx<'a>,
    pub creds: SalesforceCredentials,
    pub tokens: &'a TokenCache,
    pub policy: RetryPolicy,
}

async fn read_json(what: &str, resp: Response) -> Result<Value> {
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

impl<'a> SalesforceApi<'a> {
    pub fn new(ctx: &'a ProviderCtx<'a>, tokens: &'a TokenCache) -> Result<Self> {
        let creds: SalesforceCredentials = ctx.credentials.parse("salesforce_integration")?;
        creds.validate()?;
        Ok(Self {
            ctx,
            creds,
            tokens,
            policy: RetryPolicy::default(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/iamessage/api/v2{path}", self.creds.base())
    }

    fn token_body(&self) -> Value {
        json!({
            "orgId": self.creds.org_id,
            "esDeveloperName": self.creds.es_developer_name,
            "capabilitiesVersion": CAPABILITIES_VERSION,
            "platform": "Web",
            "context": {"appName": "chat-handoff-relay", "clientVersion": env!("CARGO_PKG_VERSION")},
        })
    }

    async fn mint(&self, what: &str, path: &str, body: Value) -> Result<AccessToken> {
        let url = self.url(path);
        let resp = http::send(what, self.policy, || self.ctx.http.post(&url).json(&body)).await?;
        let status = resp.status();
        let v = read_json(what, resp).await.map_err(|e| match status {
            // A refused deployment or identity token: the secret is wrong.
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => {
                HandoffError::ProviderAuth(format!("{what}: {status}"))
            }
            _ => e,
        })?;
        let token = v["accessToken"]
            .as_str()
            .ok_or_else(|| HandoffError::ProviderUnavailable(format!("{what}: no accessToken")))?;
        Ok(AccessToken {
            token: token.to_owned(),
            last_event_id: v["lastEventId"].as_str().map(str::to_owned),
        })
    }

    /// A token for a new end user: anonymous, or verified as `identity_subject`.
    pub async fn new_token(&self, identity_subject: Option<&str>) -> Result<AccessToken> {
        match (self.creds.auth_mode, identity_subject) {
            (AuthMode::Verified, Some(subject)) => {
                let mut body = self.token_body();
                body["authorizationType"] = json!("JWT");
                body["customerIdentityToken"] =
                    json!(identity_token(&self.creds, subject, now_ms() / 1000)?);
                self.mint(
                    "salesforce authenticated access token",
                    "/authorization/authenticated/access-token",
                    body,
                )
                .await
            }
            (AuthMode::Verified, None) => Err(HandoffError::NotConfigured(
                "salesforce verified mode: session has no identity subject".into(),
            )),
            (AuthMode::Unauthenticated, _) => {
                self.mint(
                    "salesforce unauthenticated access token",
                    "/authorization/unauthenticated/access-token",
                    self.token_body(),
                )
                .await
            }
        }
    }

    /// The best token we know for a conversation.
    pub async fn current_token(&self, auth: &ConversationAuth) -> Result<String> {
        let tenant = self.ctx.tenant.key();
        if let Some(t) = self.tokens.get(&tenant, &auth.conversation_id) {
            return Ok(t);
        }
        if let Some(t) = &auth.stored_token {
            let fresh = jwt_exp(t).is_none_or(|exp| {
                exp - U_TOKEN_EARLY_REFRESH_SECS > now_ms() / 1000
                    || self.creds.auth_mode == AuthMode::Unauthenticated
            });
            if fresh {
                return Ok(t.clone());
            }
        }
        self.renew(auth, None).await
    }

    /// A new token for the conversation's end user. Verified: re-minted for
    /// the same subject. Unauthenticated: a continuation token (same `exp`),
    /// which fails once the old one has expired (spec §2.2).
    pub async fn renew(&self, auth: &ConversationAuth, refused: Option<&str>) -> Result<String> {
        let tenant = self.ctx.tenant.key();
        self.tokens.forget(&tenant, &auth.conversation_id);
        // Another function may have stored a newer token meanwhile.
        if let (Some(stored), Some(bad)) = (&auth.stored_token, refused) {
            if stored != bad {
                self.tokens.put(&tenant, &auth.conversation_id, stored);
                return Ok(stored.clone());
            }
        }
        let token = match self.creds.auth_mode {
            AuthMode::Verified => {
                self.new_token(auth.identity_subject.as_deref())
                    .await?
                    .token
            }
            AuthMode::Unauthenticated => {
                let old = refused
                    .map(str::to_owned)
                    .or_else(|| auth.stored_token.clone())
                    .ok_or_else(|| {
                        HandoffError::ProviderAuth("salesforce: no token to continue".into())
                    })?;
                let url = self.url("/authorization/continuation-access-token");
                let what = "salesforce continuation access token";
                let resp = http::send(what, self.policy, || {
                    self.ctx.http.get(&url).bearer_auth(&old)
                })
                .await?;
                let v = read_json(what, resp).await?;
                v["accessToken"]
                    .as_str()
                    .ok_or_else(|| {
                        HandoffError::ProviderUnavailable(format!("{what}: no accessToken"))
                    })?
                    .to_owned()
            }
        };
        self.tokens.put(&tenant, &auth.conversation_id, &token);
        self.ctx.remember("access_token", json!(token));
        Ok(token)
    }

    /// Sends with `token`; no auth retry (used during start, token in hand).
    pub async fn send_with(
        &self,
        what: &str,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Response> {
        let url = self.url(path);
        http::send(what, self.policy, || {
            let rb = self
                .ctx
                .http
                .request(method.clone(), &url)
                .bearer_auth(token);
            match body {
                Some(b) => rb.json(b),
                None => rb,
            }
        })
        .await
    }

    /// An authenticated call for a conversation; on 401 renews the token once.
    pub async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        auth: &ConversationAuth,
        body: Option<&Value>,
    ) -> Result<Response> {
        let mut token = self.current_token(auth).await?;
        for attempt in 0..2 {
            let resp = self
                .send_with(what, method.clone(), path, &token, body)
                .await?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                tracing::info!(call = what, "salesforce token refused; renewing");
                token = self.renew(auth, Some(&token)).await?;
                continue;
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second pass")
    }

    /// `POST /conversation` (201; 409 = this id exists, which a retried start means).
    pub async fn create_conversation(
        &self,
        token: &str,
        conversation_id: &str,
        routing: &Map<String, Value>,
    ) -> Result<()> {
        let what = "salesforce create conversation";
        let body = json!({
            "conversationId": conversation_id,
            "esDeveloperName": self.creds.es_developer_name,
            "routingAttributes": routing,
        });
        let resp = self
            .send_with(what, Method::POST, "/conversation", token, Some(&body))
            .await?;
        if resp.status() == StatusCode::CONFLICT {
            return Ok(());
        }
        read_json(what, resp).await.map(|_| ())
    }

    /// The body of `POST /conversation/{cid}/message` [V MWS].
    pub fn message_body(&self, message_id: &str, text: &str) -> Value {
        let mut body = json!({
            "message": {
                "id": message_id,
                "messageType": "StaticContentMessage",
                "inReplyToMessageId": null,
                "staticContent": {"formatType": "Text", "text": text},
            },
            "esDeveloperName": self.creds.es_developer_name,
            "isNewMessagingSession": false,
        });
        if let Some(lang) = &self.creds.language {
            body["language"] = json!(lang);
        }
        body
    }

    /// Sends a text; 417 (no active messaging session) means the session is over.
    pub async fn send_text(
        &self,
        auth: &ConversationAuth,
        message_id: &str,
        text: &str,
    ) -> Result<Value> {
        let what = "salesforce send message";
        let path = format!("/conversation/{}/message", auth.conversation_id);
        let body = self.message_body(message_id, text);
        let resp = self
            .call(what, Method::POST, &path, auth, Some(&body))
            .await?;
        if resp.status() == StatusCode::EXPECTATION_FAILED {
            return Err(HandoffError::SessionEnded);
        }
        read_json(what, resp).await
    }

    /// `POST /conversation/{cid}/entry` typing started/stopped.
    pub async fn send_typing(&self, auth: &ConversationAuth, typing: bool) -> Result<()> {
        let what = "salesforce typing";
        let body = json!({
            "entryType": if typing { "TypingStartedIndicator" } else { "TypingStoppedIndicator" },
            "id": uuid::Uuid::new_v4().to_string(),
        });
        let path = format!("/conversation/{}/entry", auth.conversation_id);
        let resp = self
            .call(what, Method::POST, &path, auth, Some(&body))
            .await?;
        if resp.status() == StatusCode::EXPECTATION_FAILED {
            return Err(HandoffError::SessionEnded);
        }
        read_json(what, resp).await.map(|_| ())
    }

    /// `DELETE /conversation/{cid}?esDeveloperName=`; returns the final status.
    pub async fn close_conversation(&self, auth: &ConversationAuth) -> Result<StatusCode> {
        let path = format!(
            "/conversation/{}?esDeveloperName={}",
            auth.conversation_id, self.creds.es_developer_name
        );
        let resp = self
            .call(
                "salesforce close conversation",
                Method::DELETE,
                &path,
                auth,
                None,
            )
            .await?;
        Ok(resp.status())
    }

    /// The latest entries (newest page, `direction=FromEnd`), oldest first.
    pub async fn recent_entries(&self, auth: &ConversationAuth) -> Result<Vec<Value>> {
        let path = format!(
            "/conversation/{}/entries?limit={MAX_ENTRIES_PER_PAGE}&direction=FromEnd",
            auth.conversation_id
        );
        let v = read_json(
            "salesforce list entries",
            self.call("salesforce list entries", Method::GET, &path, auth, None)
                .await?,
        )
        .await?;
        let mut entries: Vec<Value> = v["conversationEntries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        entries.sort_by_key(|e| {
            e["transcriptedTimestamp"]
                .as_i64()
                .or_else(|| e["clientTimestamp"].as_i64())
                .unwrap_or(0)
        });
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_uuids_are_lowercase_v4_shaped_and_repeatable() {
        let a = stable_uuid("conv-1:m-1");
        assert_eq!(a, stable_uuid("conv-1:m-1"));
        assert_ne!(a, stable_uuid("conv-1:m-2"));
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(a, a.to_lowercase());
    }

    #[test]
    fn jwt_exp_is_read_from_the_payload() {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"x","exp":1700000000}"#);
        assert_eq!(jwt_exp(&format!("h.{payload}.s")), Some(1_700_000_000));
        assert_eq!(jwt_exp("not-a-jwt"), None);
    }

    #[test]
    fn org_id_short_form() {
        let creds: SalesforceCredentials = serde_json::from_value(json!({
            "scrt_base_url": "https://x.my.salesforce-scrt.com/",
            "org_id": "00D5g000000abcdEAA", "es_developer_name": "Relay"}))
        .unwrap();
        assert_eq!(creds.org_id_short(), "00D5g000000abcd");
        assert_eq!(creds.base(), "https://x.my.salesforce-scrt.com");
        assert!(creds.validate().is_ok());
        let bad: SalesforceCredentials = serde_json::from_value(json!({
            "scrt_base_url": "x", "org_id": "12345", "es_developer_name": "Relay",
            "auth_mode": "verified"}))
        .unwrap();
        assert!(bad.validate().is_err());
    }
}
