//! `POST /genesys/login/oauth/token`: OAuth client credentials (spec §3).

use super::Genesys;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Above this many tokens, expired ones are dropped when a new one is issued.
const TOKEN_PURGE_THRESHOLD: usize = 10_000;

#[derive(Debug)]
struct Token {
    client_id: String,
    expires_at: Instant,
    revoked: bool,
}

/// Issued bearer tokens.
#[derive(Debug, Default)]
pub(super) struct TokenStore {
    tokens: HashMap<String, Token>,
}

impl TokenStore {
    pub(super) fn issue(&mut self, client_id: &str, ttl: Duration, now: Instant) -> String {
        if self.tokens.len() > TOKEN_PURGE_THRESHOLD {
            self.tokens.retain(|_, t| !t.revoked && t.expires_at > now);
        }
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.tokens.insert(
            token.clone(),
            Token {
                client_id: client_id.to_string(),
                expires_at: now + ttl,
                revoked: false,
            },
        );
        token
    }

    /// The OAuth client of a live token.
    pub(super) fn client_of(&self, token: &str, now: Instant) -> Option<String> {
        self.tokens
            .get(token)
            .filter(|t| !t.revoked && now < t.expires_at)
            .map(|t| t.client_id.clone())
    }

    /// Revokes every token of these clients (all clients when `None`); returns how many.
    pub(super) fn revoke(&mut self, clients: Option<&[String]>) -> usize {
        let mut n = 0;
        for t in self.tokens.values_mut() {
            if !t.revoked && clients.is_none_or(|c| c.contains(&t.client_id)) {
                t.revoked = true;
                n += 1;
            }
        }
        n
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "description": description, "error_description": description})),
    )
        .into_response()
}

/// `client_id:client_secret` of a Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// Value of one field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.replace('+', " "))
    })
}

pub(super) async fn token(
    State(sim): State<Arc<Genesys>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = sim.lock().faults.settings.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let Some((client_id, secret)) = basic_credentials(&headers) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client credentials missing: use HTTP Basic authentication",
        );
    };
    match form_field(&body, "grant_type").as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials",
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            )
        }
    }
    let mut st = sim.lock();
    let integration = st
        .integrations
        .values()
        .filter(|i| i.client_id == client_id && i.client_secret == secret)
        .min_by(|a, b| a.id.cmp(&b.id))
        .map(|i| (i.id.clone(), i.token_ttl_secs));
    let Some((integration_id, ttl_secs)) = integration else {
        tracing::info!(client = %client_id, "token refused: bad client credentials");
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client not found or bad credentials",
        );
    };
    let access_token = st
        .tokens
        .issue(&client_id, Duration::from_secs(ttl_secs), Instant::now());
    st.stats
        .bump(Some(&integration_id), |s| &mut s.tokens_issued);
    tracing::info!(client = %client_id, ttl_secs, "token issued");
    Json(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": ttl_secs,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_valid_until_its_ttl() {
        let mut store = TokenStore::default();
        let t0 = Instant::now();
        let token = store.issue("client-a", Duration::from_secs(60), t0);
        assert_eq!(store.client_of(&token, t0).as_deref(), Some("client-a"));
        assert_eq!(
            store
                .client_of(&token, t0 + Duration::from_secs(59))
                .as_deref(),
            Some("client-a")
        );
        assert_eq!(store.client_of(&token, t0 + Duration::from_secs(60)), None);
        assert_eq!(store.client_of("unknown", t0), None);
    }

    #[test]
    fn revoking_a_client_leaves_other_clients_valid() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        let a = store.issue("a", Duration::from_secs(60), now);
        let b = store.issue("b", Duration::from_secs(60), now);
        assert_eq!(store.revoke(Some(&["a".to_string()])), 1);
        assert_eq!(store.client_of(&a, now), None);
        assert_eq!(store.client_of(&b, now).as_deref(), Some("b"));
        // A token issued after the revocation works.
        let a2 = store.issue("a", Duration::from_secs(60), now);
        assert_eq!(store.client_of(&a2, now).as_deref(), Some("a"));
        assert_eq!(store.revoke(None), 2);
        assert_eq!(store.client_of(&b, now), None);
    }

    #[test]
    fn basic_header_and_form_are_parsed() {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode("id:se:cret");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {encoded}").parse().unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("id".into(), "se:cret".into()))
        );
        assert_eq!(
            form_field(b"a=1&grant_type=client_credentials", "grant_type").as_deref(),
            Some("client_credentials")
        );
        assert_eq!(form_field(b"a=1", "grant_type"), None);
    }
}
