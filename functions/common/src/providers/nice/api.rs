//! DFO REST (spec §1.1, §2): the environment → host table, the access-key
//! token (password grant, Basic client credentials) with caching and refresh
//! on 401, and the DFO 3.0 calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{HandoffError, Result};
use crate::http::{self, RetryPolicy};
use crate::providers::ProviderCtx;

/// CXone environments (area code, upper case as in the SDK) and their domain
/// [V S2 `EnvironmentName` table]; hosts are lower-cased.
pub const ENVIRONMENTS: [(&str, &str); 14] = [
    ("AE1", "nicecxone.com"),
    ("AU1", "niceincontact.com"),
    ("AU2", "nicecxone-sov1.au"),
    ("CA1", "niceincontact.com"),
    ("EU1", "niceincontact.com"),
    ("EU2", "nicecxone-sov1.eu"),
    ("JO1", "nicecxone.com"),
    ("JP1", "niceincontact.com"),
    ("KR1", "nicecxone.com"),
    ("NA1", "niceincontact.com"),
    ("NA2", "nicecxone-gov.com"),
    ("UK1", "niceincontact.com"),
    ("UK2", "nicecxone-sov1.uk"),
    ("ZA1", "nicecxone.com"),
];

/// One tenant's `nice_integration` secret.
#[derive(Deserialize)]
pub struct NiceCredentials {
    /// Business unit id.
    pub brand_id: u64,
    /// e.g. `chat_98a5…` (`{integrationBoxIdentifier}_{idOnExternalPlatform}`).
    pub channel_id: String,
    /// Area, e.g. `na1` (see [`ENVIRONMENTS`]); ignored when `base_url` is set.
    pub environment: Option<String>,
    /// Overrides both the DFO base and the OAuth issuer (the simulator).
    pub base_url: Option<String>,
    /// Overrides the OAuth issuer only (default `https://cxone.{domain}`).
    pub issuer: Option<String>,
    pub client_id: String,
    pub client_secret: SecretString,
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    /// Credentials we issued to CXone for the BYOC callbacks (`/1.0/token`).
    pub byoc_client_id: String,
    pub byoc_client_secret: SecretString,
    /// The BYOC client secret being rotated out, still accepted.
    pub byoc_client_secret_previous: Option<SecretString>,
    /// Routing hint name → skill id, for `queue`/`skill` hints that are not numbers.
    #[serde(default)]
    pub skills: HashMap<String, u64>,
}

impl NiceCredentials {
    fn area_domain(&self) -> Result<(String, &'static str)> {
        let env = self.environment.as_deref().unwrap_or_default().trim();
        ENVIRONMENTS
            .iter()
            .find(|(area, _)| area.eq_ignore_ascii_case(env))
            .map(|(area, domain)| (area.to_ascii_lowercase(), *domain))
            .ok_or_else(|| {
                HandoffError::NotConfigured(
                    "nice_integration needs a known environment (e.g. na1) or base_url".into(),
                )
            })
    }

    /// `https://api-de-{area}.{domain}` [V S3], or `base_url`.
    pub fn dfo_base(&self) -> Result<String> {
        if let Some(base) = &self.base_url {
            return Ok(base.trim_end_matches('/').to_owned());
        }
        let (area, domain) = self.area_domain()?;
        Ok(format!("https://api-de-{area}.{domain}"))
    }

    /// The OAuth issuer whose discovery document names the token endpoint.
    pub fn issuer(&self) -> Result<String> {
        if let Some(issuer) = self.issuer.as_ref().or(self.base_url.as_ref()) {
            return Ok(issuer.trim_end_matches('/').to_owned());
        }
        let (_, domain) = self.area_domain()?;
        Ok(format!("https://cxone.{domain}"))
    }
}

/// Refresh this long before the stated expiry.
const TOKEN_EARLY_REFRESH: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

/// Spec §1.1: lifetime ≈ 1 h when the answer omits `expires_in` [U].
const DEFAULT_TOKEN_SECS: u64 = 3600;

struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
}

/// Access tokens per (tenant, access key id).
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

/// A DFO client bound to one tenant's credentials.
pub struct DfoApi<'a> {
    ctx: &'a ProviderCtx<'a>,
    pub creds: NiceCredentials,
    tokens: &'a TokenCache,
    policy: RetryPolicy,
}

impl<'a> DfoApi<'a> {
    pub fn new(ctx: &'a ProviderCtx<'a>, tokens: &'a TokenCache) -> Result<Self> {
        Ok(Self {
            ctx,
            creds: ctx.credentials.parse("nice_integration")?,
            tokens,
            policy: RetryPolicy::default(),
        })
    }

    fn token_key(&self) -> (String, String) {
        (self.ctx.tenant.key(), self.creds.access_key_id.clone())
    }

    /// `GET {issuer}/.well-known/openid-configuration` → `token_endpoint` [V S4].
    async fn token_endpoint(&self) -> Result<String> {
        let url = format!("{}/.well-known/openid-configuration", self.creds.issuer()?);
        let resp = http::send("nice oidc discovery", self.policy, || {
            self.ctx.http.get(&url)
        })
        .await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(http::status_error("nice oidc discovery", status, ""));
        }
        let doc: Value = resp.json().await.map_err(|_| {
            HandoffError::ProviderUnavailable("nice oidc discovery: bad JSON".into())
        })?;
        doc["token_endpoint"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| {
                HandoffError::ProviderUnavailable("nice oidc discovery: no token_endpoint".into())
            })
    }

    /// A bearer token: cached, or fetched with the access key (password grant).
    pub async fn token(&self) -> Result<SecretString> {
        let key = self.token_key();
        if let Some(t) = self.tokens.get(&key) {
            return Ok(t);
        }
        let url = self.token_endpoint().await?;
        let resp = http::send("nice token", self.policy, || {
            self.ctx
                .http
                .post(&url)
                .basic_auth(
                    &self.creds.client_id,
                    Some(self.creds.client_secret.expose_secret()),
                )
                .form(&[
                    ("grant_type", "password"),
                    ("username", self.creds.access_key_id.as_str()),
                    ("password", self.creds.access_key_secret.expose_secret()),
                ])
        })
        .await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(match status {
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    HandoffError::ProviderAuth(format!("nice token: {status}"))
                }
                _ => http::status_error("nice token", status, ""),
            });
        }
        let body: TokenResponse = resp
            .json()
            .await
            .map_err(|_| HandoffError::ProviderUnavailable("nice token: bad JSON".into()))?;
        let token = SecretString::from(body.access_token);
        let secs = body.expires_in.unwrap_or(DEFAULT_TOKEN_SECS).max(1);
        self.tokens
            .put(key, token.clone(), Duration::from_secs(secs));
        Ok(token)
    }

    /// One DFO call; on 401 a new token and one more try. Returns status and JSON.
    pub async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let url = format!("{}{}", self.creds.dfo_base()?, path);
        for attempt in 0..2 {
            let token = self.token().await?;
            let resp = http::send(what, self.policy, || {
                let mut rb = self
                    .ctx
                    .http
                    .request(method.clone(), &url)
                    .bearer_auth(token.expose_secret());
                if let Some(b) = body {
                    rb = rb.json(b);
                }
                rb
            })
            .await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                tracing::info!(call = what, "nice token refused; refreshing");
                self.tokens.drop_token(&self.token_key());
                continue;
            }
            let text = resp.text().await.unwrap_or_default();
            let json = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Ok((status, json));
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Calls and requires 2xx.
    pub async fn ok(
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
            Err(http::status_error(what, status, &json.to_string()))
        }
    }

    fn channel(&self) -> String {
        path_segment(&self.creds.channel_id)
    }

    /// #1 `POST /dfo/3.0/channels/{channelId}/messages`.
    pub async fn create_message(&self, message: &Value) -> Result<Value> {
        let path = format!("/dfo/3.0/channels/{}/messages", self.channel());
        self.ok("nice create message", Method::POST, &path, Some(message))
            .await
    }

    /// #2 `GET /dfo/3.0/contacts/{contactId}`; `None` on 404.
    pub async fn contact(&self, contact_id: &str) -> Result<Option<Value>> {
        let path = format!("/dfo/3.0/contacts/{}", path_segment(contact_id));
        let (status, json) = self
            .call("nice get contact", Method::GET, &path, None)
            .await?;
        match status {
            s if s.is_success() => Ok(Some(json)),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(http::status_error("nice get contact", s, &json.to_string())),
        }
    }

    /// #3 search of open contacts, matched on channel and thread (25 per page).
    pub async fn find_contact(&self, thread_id: &str) -> Result<Option<String>> {
        let mut scroll: Option<String> = None;
        for _ in 0..MAX_SEARCH_PAGES {
            let mut path = String::from(
                "/dfo/3.0/contacts?status[]=new&status[]=open&status[]=pending&status[]=escalated",
            );
            if let Some(s) = &scroll {
                path.push_str(&format!("&scrollToken={}", path_segment(s)));
            }
            let page = self
                .ok("nice search contacts", Method::GET, &path, None)
                .await?;
            let hit = page["data"].as_array().into_iter().flatten().find(|c| {
                c["threadIdOnExternalPlatform"] == thread_id
                    && c["channelId"] == self.creds.channel_id.as_str()
            });
            if let Some(id) = hit.and_then(|c| id_string(&c["id"])) {
                return Ok(Some(id));
            }
            match page["scrollToken"].as_str() {
                Some(s)
                    if !s.is_empty() && page["data"].as_array().is_some_and(|d| !d.is_empty()) =>
                {
                    scroll = Some(s.to_owned())
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// #4 `PUT /dfo/3.0/contacts/{id}/status`. Returns the final status code.
    pub async fn set_status(&self, contact_id: &str, status: &str) -> Result<StatusCode> {
        let path = format!("/dfo/3.0/contacts/{}/status", path_segment(contact_id));
        let (code, json) = self
            .call(
                "nice set contact status",
                Method::PUT,
                &path,
                Some(&json!({"status": status})),
            )
            .await?;
        if code.is_success() || http::already_done(code) {
            return Ok(code);
        }
        Err(http::status_error(
            "nice set contact status",
            code,
            &json.to_string(),
        ))
    }

    /// #5 `PUT /dfo/3.0/contacts/{id}/routing-queue` `{"skillId"}`.
    pub async fn route_to_skill(&self, contact_id: &str, skill_id: u64) -> Result<()> {
        let path = format!(
            "/dfo/3.0/contacts/{}/routing-queue",
            path_segment(contact_id)
        );
        self.ok(
            "nice routing queue",
            Method::PUT,
            &path,
            Some(&json!({"skillId": skill_id})),
        )
        .await?;
        Ok(())
    }

    /// `PUT /dfo/3.0/contacts/{id}/custom-fields` [V path S3; U method, body].
    pub async fn set_custom_fields(
        &self,
        contact_id: &str,
        fields: &Map<String, Value>,
    ) -> Result<()> {
        let path = format!(
            "/dfo/3.0/contacts/{}/custom-fields",
            path_segment(contact_id)
        );
        let items: Vec<Value> = fields
            .iter()
            .map(|(k, v)| json!({"ident": k, "value": v}))
            .collect();
        self.ok(
            "nice custom fields",
            Method::PUT,
            &path,
            Some(&json!({"customFields": items})),
        )
        .await?;
        Ok(())
    }

    /// #6 `POST …/threads/{thread}/sender-actions` `{"action":"isTypingOn|Off"}`.
    pub async fn sender_action(&self, thread_id: &str, typing: bool) -> Result<()> {
        let path = format!(
            "/dfo/3.0/channels/{}/threads/{}/sender-actions",
            self.channel(),
            path_segment(thread_id)
        );
        let action = if typing { "isTypingOn" } else { "isTypingOff" };
        self.ok(
            "nice sender action",
            Method::POST,
            &path,
            Some(&json!({"action": action})),
        )
        .await?;
        Ok(())
    }
}

/// Pages of contact search read before giving up (25 contacts each).
const MAX_SEARCH_PAGES: usize = 8;

/// A contact id given as a string or a number.
pub fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Percent-encodes one path segment (thread ids are caller-chosen) [V S3: URL-encoded].
pub fn path_segment(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes a percent-encoded path segment; `None` if malformed.
pub fn decode_segment(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = v.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(extra: Value) -> NiceCredentials {
        let mut v = json!({"brand_id": 1234, "channel_id": "chat_x", "client_id": "c",
            "client_secret": "s", "access_key_id": "ak", "access_key_secret": "aks",
            "byoc_client_id": "b", "byoc_client_secret": "bs"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn environment_selects_the_hosts() {
        let na1 = creds(json!({"environment": "na1"}));
        assert_eq!(
            na1.dfo_base().unwrap(),
            "https://api-de-na1.niceincontact.com"
        );
        assert_eq!(na1.issuer().unwrap(), "https://cxone.niceincontact.com");
        let au2 = creds(json!({"environment": "AU2"}));
        assert_eq!(
            au2.dfo_base().unwrap(),
            "https://api-de-au2.nicecxone-sov1.au"
        );
        let sim = creds(json!({"environment": "na1", "base_url": "http://127.0.0.1:8900/nice/"}));
        assert_eq!(sim.dfo_base().unwrap(), "http://127.0.0.1:8900/nice");
        assert_eq!(sim.issuer().unwrap(), "http://127.0.0.1:8900/nice");
        assert!(creds(json!({"environment": "xx9"})).dfo_base().is_err());
        assert!(creds(json!({})).issuer().is_err());
    }

    #[test]
    fn path_segments_round_trip() {
        assert_eq!(path_segment("conv 8/f"), "conv%208%2Ff");
        assert_eq!(decode_segment("conv%208%2Ff").as_deref(), Some("conv 8/f"));
        assert_eq!(decode_segment("bad%2"), None);
        assert_eq!(id_string(&json!(42)).as_deref(), Some("42"));
        assert_eq!(id_string(&json!("")), None);
    }
}
