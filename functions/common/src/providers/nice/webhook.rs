//! BYOC callbacks CXone sends below our registered URL (spec §1.2, §3):
//! the token endpoint, outbound agent messages, sender actions.
//!
//! CXone signs nothing. It first calls `POST {base}/1.0/token` with the
//! client credentials we issued (`byoc_client_id` / `byoc_client_secret`),
//! and then sends `Authorization: Bearer <that token>` on every callback. Our
//! token is stateless — `nbt1.{expiry}.{HMAC-SHA256(byoc_client_secret,
//! "nice-byoc|{client_id}|{channel_id}|{expiry}")}` — so any Lambda can check
//! it from the tenant's secret alone; rotation accepts the previous secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::domain::SessionId;
use crate::error::{HandoffError, Result};
use crate::providers::{
    AgentInfo, ConversationRef, ProviderEvent, ProviderEventKind, WebhookRejection, WebhookRequest,
};
use crate::signature::{hmac_sha256, secret_matches};
use crate::time::{now_ms, parse_rfc3339_ms, rfc3339_ms};

use super::api::{decode_segment, id_string, NiceCredentials};
use super::U_BYOC_TOKEN_SECS;

/// Version prefix of the bearer tokens we issue.
const TOKEN_PREFIX: &str = "nbt1";
/// Clock skew tolerated on a token's expiry.
const TOKEN_SKEW_SECS: i64 = 30;

/// Which callback a request is, from the path below the registered URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// `/1.0/token` (or `/oauth/token`, one community variant [U]).
    Token,
    /// `/2.0/channel/{channelId}/outbound` (or `/channels/{channelId}/outbound` [U]).
    Outbound { channel_id: String },
    /// `/1.0/channel/{channelId}/thread/{thread}/sender-action`.
    SenderAction { channel_id: String, thread: String },
    /// `/1.0/posts/{postId}/messages` (legacy v1 outbound; post = thread).
    LegacyOutbound { thread: String },
}

/// Classifies a rest path; `None` for anything CXone does not send.
pub fn route(rest_path: &str) -> Option<Callback> {
    let path = rest_path.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let dec = |s: &str| decode_segment(s).filter(|d| !d.is_empty());
    match parts.as_slice() {
        ["1.0", "token"] | ["oauth", "token"] => Some(Callback::Token),
        ["2.0", "channel", ch, "outbound"] | ["channels", ch, "outbound"] => {
            Some(Callback::Outbound {
                channel_id: dec(ch)?,
            })
        }
        ["1.0", "channel", ch, "thread", thread, "sender-action"] => Some(Callback::SenderAction {
            channel_id: dec(ch)?,
            thread: dec(thread)?,
        }),
        ["1.0", "posts", post, "messages"] => Some(Callback::LegacyOutbound { thread: dec(post)? }),
        _ => None,
    }
}

fn signed_text(creds: &NiceCredentials, expiry: i64) -> Vec<u8> {
    format!(
        "nice-byoc|{}|{}|{expiry}",
        creds.byoc_client_id, creds.channel_id
    )
    .into_bytes()
}

/// A bearer token for CXone, valid until `now_secs + U_BYOC_TOKEN_SECS`.
pub fn mint_token(creds: &NiceCredentials, now_secs: i64) -> String {
    let expiry = now_secs + U_BYOC_TOKEN_SECS as i64;
    let mac = hmac_sha256(
        creds.byoc_client_secret.expose_secret().as_bytes(),
        &signed_text(creds, expiry),
    );
    format!("{TOKEN_PREFIX}.{expiry}.{}", B64URL.encode(mac))
}

fn byoc_secrets(creds: &NiceCredentials) -> Vec<&[u8]> {
    let mut secrets = vec![creds.byoc_client_secret.expose_secret().as_bytes()];
    if let Some(prev) = &creds.byoc_client_secret_previous {
        secrets.push(prev.expose_secret().as_bytes());
    }
    secrets
}

/// Checks a token we minted: shape, expiry, then the MAC in constant time
/// against the current and the previous client secret.
pub fn verify_token(
    creds: &NiceCredentials,
    token: &str,
    now_secs: i64,
) -> std::result::Result<(), WebhookRejection> {
    let mut parts = token.trim().splitn(3, '.');
    let (Some(TOKEN_PREFIX), Some(expiry), Some(mac)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(WebhookRejection::Unauthenticated("not a token we issued"));
    };
    let Ok(expiry) = expiry.parse::<i64>() else {
        return Err(WebhookRejection::Unauthenticated("not a token we issued"));
    };
    // Saturating: the expiry is the caller's text, checked before the MAC.
    if expiry.saturating_add(TOKEN_SKEW_SECS) < now_secs
        || expiry > now_secs.saturating_add(U_BYOC_TOKEN_SECS as i64 + TOKEN_SKEW_SECS)
    {
        return Err(WebhookRejection::Unauthenticated("token expired"));
    }
    let Ok(presented) = B64URL.decode(mac) else {
        return Err(WebhookRejection::Unauthenticated("not a token we issued"));
    };
    let text = signed_text(creds, expiry);
    let expected: Vec<[u8; 32]> = byoc_secrets(creds)
        .into_iter()
        .map(|s| hmac_sha256(s, &text))
        .collect();
    if secret_matches(&presented, expected.iter().map(|m| m.as_slice())) {
        Ok(())
    } else {
        Err(WebhookRejection::Unauthenticated("bad token"))
    }
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space).
fn form_decode(v: &str) -> Option<String> {
    decode_segment(&v.replace('+', " "))
}

/// The token request's fields, from a form body [V S5], a JSON body [V S6],
/// and/or `Authorization: Basic` (OAuth clients may use either).
pub fn token_request_fields(
    headers: &std::collections::HashMap<String, String>,
    body: &[u8],
) -> std::result::Result<Map<String, Value>, WebhookRejection> {
    let text = std::str::from_utf8(body)
        .map_err(|_| WebhookRejection::Unauthenticated("token request is not text"))?;
    let mut fields = Map::new();
    if text.trim_start().starts_with('{') {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => fields = m,
            _ => return Err(WebhookRejection::Unauthenticated("malformed token request")),
        }
    } else {
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(k), Some(v)) = (form_decode(k), form_decode(v)) else {
                return Err(WebhookRejection::Unauthenticated("malformed token request"));
            };
            fields.insert(k, Value::String(v));
        }
    }
    if let Some(basic) = headers.get("authorization").and_then(|h| {
        h.strip_prefix("Basic ")
            .or_else(|| h.strip_prefix("basic "))
    }) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(WebhookRejection::Unauthenticated(
                "malformed Basic credentials",
            ))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or(WebhookRejection::Unauthenticated(
                "malformed Basic credentials",
            ))?;
        fields
            .entry("client_id")
            .or_insert_with(|| Value::String(id.to_owned()));
        fields
            .entry("client_secret")
            .or_insert_with(|| Value::String(secret.to_owned()));
    }
    Ok(fields)
}

/// The token request: `grant_type=client_credentials`, our client id and a
/// current (or previous) client secret, compared in constant time.
pub fn authenticate_token_request(
    creds: &NiceCredentials,
    request: &WebhookRequest<'_>,
) -> std::result::Result<(), WebhookRejection> {
    let fields = token_request_fields(request.headers, request.body)?;
    if fields.get("grant_type").and_then(Value::as_str) != Some("client_credentials") {
        return Err(WebhookRejection::Unauthenticated(
            "grant_type must be client_credentials",
        ));
    }
    let (Some(id), Some(secret)) = (
        fields.get("client_id").and_then(Value::as_str),
        fields.get("client_secret").and_then(Value::as_str),
    ) else {
        return Err(WebhookRejection::Unauthenticated(
            "missing client credentials",
        ));
    };
    // Both checks always run, so timing does not say which one failed.
    let id_ok = secret_matches(id.as_bytes(), [creds.byoc_client_id.as_bytes()]);
    let secret_ok = secret_matches(secret.as_bytes(), byoc_secrets(creds));
    if id_ok & secret_ok {
        Ok(())
    } else {
        Err(WebhookRejection::Unauthenticated("bad client credentials"))
    }
}

/// Every callback: the path must be one CXone sends for this tenant's
/// channel, and the request must carry our bearer token (the token call
/// carries client credentials instead).
pub fn authenticate(
    creds: &NiceCredentials,
    request: &WebhookRequest<'_>,
    now_secs: i64,
) -> std::result::Result<(), WebhookRejection> {
    let callback = route(request.rest_path)
        .ok_or(WebhookRejection::Unauthenticated("unknown callback path"))?;
    let channel = match &callback {
        Callback::Token => return authenticate_token_request(creds, request),
        Callback::Outbound { channel_id } | Callback::SenderAction { channel_id, .. } => {
            Some(channel_id)
        }
        Callback::LegacyOutbound { .. } => None,
    };
    if channel.is_some_and(|c| *c != creds.channel_id) {
        return Err(WebhookRejection::Unauthenticated("another channel"));
    }
    let token = request
        .headers
        .get("authorization")
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .ok_or(WebhookRejection::Unauthenticated("missing bearer token"))?;
    verify_token(creds, token, now_secs)
}

/// Our id for an agent message: no event id is documented, so a digest of
/// what identifies it (thread, author, time, text) [U]; a redelivery of the
/// same message gets the same id. The simulator computes the same.
pub fn outbound_message_id(body: &Value) -> String {
    let mut h = Sha256::new();
    for part in [
        body["thread"]["idOnExternalPlatform"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        id_string(&body["authorUser"]["id"]).unwrap_or_default(),
        body["createdAtWithMilliseconds"]
            .as_str()
            .or(body["createdAt"].as_str())
            .unwrap_or_default()
            .to_owned(),
        message_text(body),
    ] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    format!("out-{}", &hex::encode(h.finalize())[..32])
}

/// Text of an outbound message: `messageContent.payload.text`, plus one
/// line per attachment (signed short-lived URLs, spec §3).
fn message_text(body: &Value) -> String {
    let mut text = body["messageContent"]["payload"]["text"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_owned();
    for a in body["attachments"].as_array().into_iter().flatten() {
        let name = a["friendlyName"]
            .as_str()
            .or(a["fileName"].as_str())
            .unwrap_or("attachment");
        let url = a["url"].as_str().unwrap_or_default();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("[{name}] {url}"));
    }
    text
}

fn agent_of(author: &Value) -> AgentInfo {
    let first = author["firstName"].as_str().unwrap_or_default();
    let last = author["surname"]
        .as_str()
        .or(author["lastName"].as_str())
        .unwrap_or_default();
    let full = format!("{first} {last}").trim().to_owned();
    let name = author["nickname"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .or((!full.is_empty()).then_some(full));
    AgentInfo {
        id: id_string(&author["id"]),
        display_name: name,
    }
}

fn conversation_of(thread: &str) -> ConversationRef {
    // Threads we open are named by our session id; anything else matches nothing.
    match SessionId::parse(thread) {
        Ok(s) => ConversationRef::Session(s),
        Err(_) => ConversationRef::Provider(format!("thread:{thread}")),
    }
}

fn parse_json(body: &[u8]) -> Result<Value> {
    match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(HandoffError::invalid("NICE callback body is not an object")),
        Err(e) => Err(HandoffError::invalid(format!(
            "malformed NICE callback: {e}"
        ))),
    }
}

fn outbound_event(body: &Value, thread: &str) -> ProviderEvent {
    let id = outbound_message_id(body);
    let author = &body["authorUser"];
    let text = message_text(body);
    let kind = if text.is_empty() {
        ProviderEventKind::Ignored("outbound message without text")
    } else {
        let from_bot = author.is_null() || author["isBotUser"] == true;
        let mut agent = agent_of(author);
        if from_bot && agent.display_name.is_none() {
            agent.display_name = Some("Bot".into());
        }
        ProviderEventKind::AgentMessage {
            message_id: id.clone(),
            text,
            agent,
            from_bot,
            sent_at_ms: body["createdAtWithMilliseconds"]
                .as_str()
                .or(body["createdAt"].as_str())
                .and_then(parse_rfc3339_ms),
        }
    };
    ProviderEvent {
        dedupe_key: format!("message:{id}"),
        conversation: conversation_of(thread),
        kind,
    }
}

/// Parses an authenticated callback. The token call carries no event.
pub fn parse(request: &WebhookRequest<'_>) -> Result<Vec<ProviderEvent>> {
    let callback = route(request.rest_path)
        .ok_or_else(|| HandoffError::invalid("unknown NICE callback path"))?;
    match callback {
        Callback::Token => Ok(vec![]),
        Callback::Outbound { .. } => {
            let body = parse_json(request.body)?;
            let thread = body["thread"]["idOnExternalPlatform"]
                .as_str()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| HandoffError::invalid("NICE outbound without thread"))?
                .to_owned();
            Ok(vec![outbound_event(&body, &thread)])
        }
        Callback::LegacyOutbound { thread } => {
            let mut body = parse_json(request.body)?;
            body["thread"] = json!({"idOnExternalPlatform": thread});
            Ok(vec![outbound_event(&body, &thread)])
        }
        Callback::SenderAction { thread, .. } => {
            let body = parse_json(request.body)?;
            let action = body["senderAction"]["action"]
                .as_str()
                .or(body["action"].as_str())
                .ok_or_else(|| HandoffError::invalid("NICE sender action without action"))?;
            let kind = match action {
                "isTypingOn" => ProviderEventKind::AgentTyping(agent_of(&body["authorUser"])),
                "isTypingOff" => ProviderEventKind::Ignored("agent stopped typing"),
                _ => ProviderEventKind::Ignored("sender action with no client event"),
            };
            // No event id: same bytes within ten seconds are one delivery [U].
            let digest = hex::encode(Sha256::digest(request.body));
            Ok(vec![ProviderEvent {
                dedupe_key: format!("action:{}:{}", &digest[..24], now_ms() / 10_000),
                conversation: conversation_of(&thread),
                kind,
            }])
        }
    }
}

/// The HTTP answer CXone expects for an authenticated callback (spec §1.2, §3).
pub fn response(
    creds: &NiceCredentials,
    request: &WebhookRequest<'_>,
    now_secs: i64,
) -> Option<(u16, Value)> {
    match route(request.rest_path)? {
        Callback::Token => Some((
            200,
            json!({"access_token": mint_token(creds, now_secs), "token_type": "bearer",
                   "expires_in": U_BYOC_TOKEN_SECS}),
        )),
        Callback::Outbound { .. } => {
            let body: Value = serde_json::from_slice(request.body).ok()?;
            let recipients = body["endUserRecipients"].clone();
            let identities: Vec<Value> = recipients
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    json!({"idOnExternalPlatform": r["idOnExternalPlatform"],
                                "firstName": r["name"], "lastName": ""})
                })
                .collect();
            Some((
                200,
                json!({
                    "message": {"idOnExternalPlatform": outbound_message_id(&body),
                                "createdAtWithMilliseconds": rfc3339_ms(now_secs * 1000),
                                "url": Value::Null},
                    "thread": {"idOnExternalPlatform": body["thread"]["idOnExternalPlatform"]},
                    "endUserIdentities": identities,
                    "recipients": if recipients.is_array() { recipients } else { json!([]) },
                }),
            ))
        }
        Callback::LegacyOutbound { thread } => {
            // An object, as `parse` requires: indexing a number would panic.
            let mut body = parse_json(request.body).ok()?;
            body["thread"] = json!({"idOnExternalPlatform": thread});
            Some((
                200,
                json!({"idOnExternalPlatform": outbound_message_id(&body)}),
            ))
        }
        Callback::SenderAction { .. } => Some((204, Value::Null)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NOW: i64 = 1_800_000_000;

    fn creds() -> NiceCredentials {
        serde_json::from_value(json!({"brand_id": 1234, "channel_id": "chat_abc",
            "base_url": "http://x", "client_id": "c", "client_secret": "s",
            "access_key_id": "ak", "access_key_secret": "aks",
            "byoc_client_id": "relay-client", "byoc_client_secret": "current-secret",
            "byoc_client_secret_previous": "old-secret"}))
        .unwrap()
    }

    fn req<'a>(
        headers: &'a HashMap<String, String>,
        body: &'a [u8],
        path: &'a str,
    ) -> WebhookRequest<'a> {
        WebhookRequest {
            headers,
            body,
            rest_path: path,
        }
    }

    fn bearer(token: &str) -> HashMap<String, String> {
        HashMap::from([("authorization".to_owned(), format!("Bearer {token}"))])
    }

    fn outbound_body(text: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"brand": {"id": 1234},
            "thread": {"idOnExternalPlatform": "conv-8f2c"},
            "messageContent": {"type": "TEXT", "payload": {"text": text}},
            "endUserRecipients": [{"idOnExternalPlatform": "u-1", "name": "Ada", "isPrimary": true, "isPrivate": true}],
            "authorUser": {"id": 55, "firstName": "Sam", "surname": "Lee", "nickname": "Sam"},
            "createdAtWithMilliseconds": "2026-11-23T10:01:02.123Z", "attachments": []}))
        .unwrap()
    }

    #[test]
    fn paths_are_classified() {
        assert_eq!(route("/1.0/token"), Some(Callback::Token));
        assert_eq!(route("/oauth/token"), Some(Callback::Token));
        assert_eq!(
            route("/2.0/channel/chat_abc/outbound"),
            Some(Callback::Outbound {
                channel_id: "chat_abc".into()
            })
        );
        assert_eq!(
            route("/channels/chat_abc/outbound"),
            Some(Callback::Outbound {
                channel_id: "chat_abc".into()
            })
        );
        assert_eq!(
            route("/1.0/channel/chat_abc/thread/conv%2D1/sender-action"),
            Some(Callback::SenderAction {
                channel_id: "chat_abc".into(),
                thread: "conv-1".into()
            })
        );
        assert_eq!(
            route("/1.0/posts/conv-1/messages"),
            Some(Callback::LegacyOutbound {
                thread: "conv-1".into()
            })
        );
        assert_eq!(route(""), None);
        assert_eq!(route("/2.0/channel/x/inbound"), None);
    }

    #[test]
    fn token_request_with_form_json_or_basic_and_rotation() {
        let c = creds();
        let none = HashMap::new();
        let form =
            b"grant_type=client_credentials&client_id=relay-client&client_secret=current-secret";
        assert!(authenticate(&c, &req(&none, form, "/1.0/token"), NOW).is_ok());
        let json = br#"{"grant_type":"client_credentials","client_id":"relay-client","client_secret":"old-secret"}"#;
        assert!(authenticate(&c, &req(&none, json, "/1.0/token"), NOW).is_ok());
        let basic = HashMap::from([(
            "authorization".to_owned(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("relay-client:current-secret")
            ),
        )]);
        assert!(authenticate(
            &c,
            &req(&basic, b"grant_type=client_credentials", "/1.0/token"),
            NOW
        )
        .is_ok());
        for bad in [
            &b"grant_type=client_credentials&client_id=relay-client&client_secret=wrong"[..],
            b"grant_type=client_credentials&client_id=other&client_secret=current-secret",
            b"grant_type=password&client_id=relay-client&client_secret=current-secret",
            b"grant_type=client_credentials&client_id=relay-client",
            b"",
            b"{not json",
        ] {
            assert!(authenticate(&c, &req(&none, bad, "/1.0/token"), NOW).is_err());
        }
    }

    #[test]
    fn the_token_we_issue_authenticates_callbacks_until_it_expires() {
        let c = creds();
        let none = HashMap::new();
        let form =
            b"grant_type=client_credentials&client_id=relay-client&client_secret=current-secret";
        let (status, answer) = response(&c, &req(&none, form, "/1.0/token"), NOW).unwrap();
        assert_eq!(status, 200);
        assert_eq!(answer["token_type"], "bearer");
        assert_eq!(answer["expires_in"], U_BYOC_TOKEN_SECS);
        let token = answer["access_token"].as_str().unwrap();
        let body = outbound_body("hi");
        let path = "/2.0/channel/chat_abc/outbound";
        assert!(authenticate(&c, &req(&bearer(token), &body, path), NOW).is_ok());
        let later = NOW + U_BYOC_TOKEN_SECS as i64 + TOKEN_SKEW_SECS + 1;
        assert!(authenticate(&c, &req(&bearer(token), &body, path), later).is_err());
        // Missing, garbage, or another channel's path.
        assert!(authenticate(&c, &req(&none, &body, path), NOW).is_err());
        assert!(authenticate(&c, &req(&bearer("nbt1.x.y"), &body, path), NOW).is_err());
        assert!(authenticate(
            &c,
            &req(&bearer(token), &body, "/2.0/channel/chat_other/outbound"),
            NOW
        )
        .is_err());
        assert!(authenticate(&c, &req(&bearer(token), &body, "/2.0/unknown"), NOW).is_err());
    }

    /// Regression for fuzz/corpus/nice_byoc/i64-max-expiry: an unauthenticated
    /// caller's expiry overflowed before the MAC check (a panic in debug builds).
    #[test]
    fn extreme_token_expiries_are_refused_without_overflow() {
        for expiry in [i64::MAX, i64::MIN] {
            let token = format!("nbt1.{expiry}.AAAA");
            assert_eq!(
                verify_token(&creds(), &token, NOW),
                Err(WebhookRejection::Unauthenticated("token expired"))
            );
        }
    }

    /// Regression for fuzz/corpus/nice_byoc/legacy-outbound-number (found by
    /// the fuzzer): answering a legacy outbound whose body is not an object panicked.
    #[test]
    fn answers_to_bodies_that_are_not_objects_are_none() {
        let none = HashMap::new();
        for body in [&b"0"[..], b"[1]", b"\"x\"", b"null"] {
            for path in [
                "/1.0/posts/conv-8f2c/messages",
                "/2.0/channel/chat_abc/outbound",
            ] {
                assert!(parse(&req(&none, body, path)).is_err());
                let answer = response(&creds(), &req(&none, body, path), NOW);
                assert!(
                    answer.is_none() || path.starts_with("/2.0"),
                    "{path} {body:?}"
                );
            }
        }
    }

    #[test]
    fn tokens_follow_secret_rotation() {
        let mut old = creds();
        old.byoc_client_secret = "old-secret".to_owned().into();
        old.byoc_client_secret_previous = None;
        let token = mint_token(&old, NOW);
        // Minted under the secret now being rotated out: still accepted.
        assert!(verify_token(&creds(), &token, NOW).is_ok());
        // After rotation completes (no previous), refused.
        let mut done = creds();
        done.byoc_client_secret_previous = None;
        assert!(verify_token(&done, &token, NOW).is_err());
        // A token for another tenant's channel is refused even with the same secret.
        let mut other = creds();
        other.channel_id = "chat_other".into();
        assert!(verify_token(&other, &mint_token(&creds(), NOW), NOW).is_err());
        // A tampered expiry breaks the MAC.
        let t = mint_token(&creds(), NOW);
        let mac = t.rsplit('.').next().unwrap();
        assert!(verify_token(&creds(), &format!("nbt1.{}.{mac}", NOW + 10), NOW).is_err());
    }

    #[test]
    fn outbound_maps_to_an_agent_message_with_a_stable_id() {
        let none = HashMap::new();
        let body = outbound_body("Hi Ada, I can help");
        let path = "/2.0/channel/chat_abc/outbound";
        let evs = parse(&req(&none, &body, path)).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(
            evs[0].conversation,
            ConversationRef::Session(SessionId::parse("conv-8f2c").unwrap())
        );
        let ProviderEventKind::AgentMessage {
            message_id,
            text,
            agent,
            from_bot,
            sent_at_ms,
        } = &evs[0].kind
        else {
            panic!("{:?}", evs[0].kind)
        };
        assert_eq!(text, "Hi Ada, I can help");
        assert_eq!(agent.id.as_deref(), Some("55"));
        assert_eq!(agent.display_name.as_deref(), Some("Sam"));
        assert!(!from_bot);
        assert_eq!(
            *sent_at_ms,
            Some(1_795_428_062_123),
            "createdAtWithMilliseconds"
        );
        assert!(sent_at_ms.is_some());
        assert_eq!(evs[0].dedupe_key, format!("message:{message_id}"));
        // A redelivery is the same message; our answer names the same id.
        assert_eq!(parse(&req(&none, &body, path)).unwrap(), evs);
        let (status, answer) = response(&creds(), &req(&none, &body, path), NOW).unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            answer["message"]["idOnExternalPlatform"],
            message_id.as_str()
        );
        assert_eq!(answer["thread"]["idOnExternalPlatform"], "conv-8f2c");
        assert_eq!(answer["recipients"][0]["idOnExternalPlatform"], "u-1");
        // Another text is another message.
        let other = parse(&req(&none, &outbound_body("Anything else?"), path)).unwrap();
        assert_ne!(other[0].dedupe_key, evs[0].dedupe_key);
    }

    #[test]
    fn message_id_matches_the_simulator_vector() {
        // Same vector in infra/simulator/src/nice/tests.rs.
        let body = json!({"thread": {"idOnExternalPlatform": "conv-1"}, "authorUser": {"id": 1001},
            "createdAtWithMilliseconds": "2026-11-23T10:01:02.123Z",
            "messageContent": {"type": "TEXT", "payload": {"text": "Hi Ada"}}});
        assert_eq!(
            outbound_message_id(&body),
            "out-ec7173296474b8226f4f57b1006656aa"
        );
    }

    #[test]
    fn bots_attachments_legacy_and_bad_bodies() {
        let none = HashMap::new();
        let path = "/2.0/channel/chat_abc/outbound";
        let bot = serde_json::to_vec(&json!({"thread": {"idOnExternalPlatform": "conv-1"},
            "messageContent": {"type": "TEXT", "payload": {"text": "queue position 2"}}}))
        .unwrap();
        assert!(matches!(&parse(&req(&none, &bot, path)).unwrap()[0].kind,
            ProviderEventKind::AgentMessage { from_bot: true, agent, .. } if agent.display_name.as_deref() == Some("Bot")));
        let file = serde_json::to_vec(&json!({"thread": {"idOnExternalPlatform": "conv-1"},
            "authorUser": {"id": 7, "firstName": "Kim"},
            "messageContent": {"type": "FILE", "payload": {"text": ""}},
            "attachments": [{"friendlyName": "invoice.pdf", "url": "https://files/x"}]}))
        .unwrap();
        assert!(matches!(&parse(&req(&none, &file, path)).unwrap()[0].kind,
            ProviderEventKind::AgentMessage { text, agent, .. } if text == "[invoice.pdf] https://files/x" && agent.display_name.as_deref() == Some("Kim")));
        let empty = serde_json::to_vec(&json!({"thread": {"idOnExternalPlatform": "conv-1"},
            "messageContent": {"type": "TEXT", "payload": {"text": " "}}}))
        .unwrap();
        assert!(matches!(
            parse(&req(&none, &empty, path)).unwrap()[0].kind,
            ProviderEventKind::Ignored(_)
        ));
        let legacy = serde_json::to_vec(
            &json!({"messageContent": {"type": "TEXT", "payload": {"text": "v1"}},
            "authorUser": {"id": 55}}),
        )
        .unwrap();
        let evs = parse(&req(&none, &legacy, "/1.0/posts/conv-1/messages")).unwrap();
        assert_eq!(
            evs[0].conversation,
            ConversationRef::Session(SessionId::parse("conv-1").unwrap())
        );
        let (_, answer) = response(
            &creds(),
            &req(&none, &legacy, "/1.0/posts/conv-1/messages"),
            NOW,
        )
        .unwrap();
        assert!(answer["idOnExternalPlatform"]
            .as_str()
            .unwrap()
            .starts_with("out-"));
        assert!(parse(&req(&none, b"nope", path)).is_err());
        assert!(parse(&req(&none, b"[]", path)).is_err());
        assert!(parse(&req(&none, br#"{"messageContent":{}}"#, path)).is_err());
        assert!(parse(&req(&none, b"{}", "/2.0/elsewhere")).is_err());
        assert_eq!(
            parse(&req(&none, b"grant_type=x", "/1.0/token")).unwrap(),
            vec![]
        );
    }

    #[test]
    fn sender_actions_map_to_typing() {
        let none = HashMap::new();
        let path = "/1.0/channel/chat_abc/thread/conv-1/sender-action";
        let on = br#"{"brand":{"id":1234},"senderAction":{"action":"isTypingOn"},"authorUser":{"id":55,"nickname":"Sam"}}"#;
        let evs = parse(&req(&none, on, path)).unwrap();
        assert!(
            matches!(&evs[0].kind, ProviderEventKind::AgentTyping(a) if a.id.as_deref() == Some("55"))
        );
        assert_eq!(
            parse(&req(&none, on, path)).unwrap()[0].dedupe_key,
            evs[0].dedupe_key
        );
        let off = br#"{"senderAction":{"action":"isTypingOff"}}"#;
        assert!(matches!(
            parse(&req(&none, off, path)).unwrap()[0].kind,
            ProviderEventKind::Ignored(_)
        ));
        assert!(parse(&req(&none, b"{}", path)).is_err());
        assert_eq!(
            response(&creds(), &req(&none, on, path), NOW),
            Some((204, Value::Null))
        );
        // A thread we did not open matches no session.
        let evs = parse(&req(
            &none,
            on,
            "/1.0/channel/chat_abc/thread/x%20y%2Fz/sender-action",
        ))
        .unwrap();
        assert!(matches!(evs[0].conversation, ConversationRef::Provider(_)));
    }
}
