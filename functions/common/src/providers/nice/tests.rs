//! The adapter against a scripted DFO on 127.0.0.1:0 (a minimal HTTP/1.1
//! responder, so the shared crate needs no web framework for tests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::domain::{ClientEnv, SessionId, Tenant};
use crate::providers::{NotificationSource, ProviderEventKind};
use crate::request::{TranscriptEntry, UserInfo};
use crate::secrets::SecretJson;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    auth: String,
    body: String,
}

type Handler = dyn Fn(&Seen, usize) -> (u16, Value) + Send + Sync;

/// Serves `handler(request, index)` for every request; records them.
async fn dfo(handler: Arc<Handler>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
                    if let Some(end) = head_end {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let mut first = head.lines().next().unwrap_or_default().split(' ');
                            let auth = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("authorization")
                                        .then(|| v.trim().to_owned())
                                })
                                .unwrap_or_default();
                            let req = Seen {
                                method: first.next().unwrap_or_default().to_owned(),
                                path: first.next().unwrap_or_default().to_owned(),
                                auth,
                                body: String::from_utf8_lossy(&buf[end + 4..end + 4 + len])
                                    .to_string(),
                            };
                            let index = {
                                let mut s = seen.lock().unwrap();
                                s.push(req.clone());
                                s.len() - 1
                            };
                            let (status, body) = handler(&req, index);
                            let text = if body.is_null() {
                                String::new()
                            } else {
                                body.to_string()
                            };
                            let resp = format!(
                                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                                text.len()
                            );
                            let _ = sock.write_all(resp.as_bytes()).await;
                            return;
                        }
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (base, log)
}

fn secret(base: &str) -> SecretJson {
    SecretJson::new(
        json!({"brand_id": 1234, "channel_id": "chat_abc", "environment": "na1",
        "base_url": base, "client_id": "cid", "client_secret": "csecret",
        "access_key_id": "ak", "access_key_secret": "aksecret",
        "byoc_client_id": "relay", "byoc_client_secret": "bsecret", "skills": {"billing": 77}}),
    )
}

fn tenant() -> Tenant {
    Tenant::new("acme", "support", ClientEnv::Live).unwrap()
}

/// Token endpoints every scripted DFO serves; `None` = not a token call.
fn auth_routes(req: &Seen, issued: &Mutex<u32>) -> Option<(u16, Value)> {
    if req.path == "/.well-known/openid-configuration" {
        return Some((200, json!({"issuer": "x", "token_endpoint": "TOKEN"})));
    }
    if req.path == "/auth/token" {
        let mut n = issued.lock().unwrap();
        *n += 1;
        return Some((
            200,
            json!({"access_token": format!("tok-{n}"), "token_type": "bearer", "expires_in": 3600}),
        ));
    }
    None
}

/// Rewrites the discovery answer to point at this server (the address is
/// only known after binding).
fn fix_token_endpoint(base: &str, body: Value) -> Value {
    if body["token_endpoint"] == "TOKEN" {
        json!({"issuer": base, "token_endpoint": format!("{base}/auth/token")})
    } else {
        body
    }
}

async fn scripted(
    f: impl Fn(&Seen, usize) -> (u16, Value) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let issued = Arc::new(Mutex::new(0));
    let base_cell: Arc<Mutex<String>> = Arc::default();
    let cell = base_cell.clone();
    let (base, log) = dfo(Arc::new(move |req, i| {
        if let Some((s, b)) = auth_routes(req, &issued) {
            return (s, fix_token_endpoint(&cell.lock().unwrap(), b));
        }
        f(req, i)
    }))
    .await;
    *base_cell.lock().unwrap() = base.clone();
    (base, log)
}

fn start_input<'a>(
    session: &'a SessionId,
    user: &'a UserInfo,
    transcript: &'a [TranscriptEntry],
    context: &'a Map<String, Value>,
    routing: &'a Map<String, Value>,
) -> StartInput<'a> {
    StartInput {
        session_id: session,
        user,
        utterance: Some("I'll transfer you"),
        transcript,
        context,
        routing,
    }
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[tokio::test]
async fn start_posts_the_summary_finds_the_contact_and_sets_context() {
    let (base, log) = scripted(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/dfo/3.0/channels/chat_abc/messages") => (200, json!({"id": "msg-1"})),
        ("GET", p) if p.starts_with("/dfo/3.0/contacts?") && !p.contains("scrollToken") => (
            200,
            json!({
            "hits": 2, "scrollToken": "next", "data": [
                {"id": "9", "channelId": "chat_abc", "threadIdOnExternalPlatform": "other"}]}),
        ),
        ("GET", p) if p.contains("scrollToken=next") => (
            200,
            json!({"hits": 2, "scrollToken": "", "data": [
                {"id": 5001, "channelId": "chat_abc", "threadIdOnExternalPlatform": "conv-1"}]}),
        ),
        ("PUT", "/dfo/3.0/contacts/5001/custom-fields") => (400, json!({"error": "unknown field"})),
        ("PUT", "/dfo/3.0/contacts/5001/routing-queue") => (200, json!({})),
        _ => (404, json!({})),
    })
    .await;
    let creds = secret(&base);
    let http = reqwest::Client::new();
    let refreshed = Default::default();
    let t = tenant();
    let ctx = ProviderCtx {
        tenant: &t,
        credentials: &creds,
        http: &http,
        refreshed: &refreshed,
    };
    let session = SessionId::parse("conv-1").unwrap();
    let user = UserInfo {
        id: Some("u-1".into()),
        display_name: Some("Ada".into()),
        channel: None,
    };
    let transcript = vec![TranscriptEntry {
        role: "user".into(),
        text: "my parcel broke".into(),
        at: None,
    }];
    let context = object(json!({"customer_id": "C-42", "reason": "refund"}));
    let routing = object(json!({"queue": "billing"}));
    let out = Nice::new()
        .start(
            &ctx,
            &start_input(&session, &user, &transcript, &context, &routing),
        )
        .await
        .unwrap();
    assert_eq!(out.conversation_id, "5001");
    assert_eq!(out.provider_data["customer_id"], "u-1");
    let log = log.lock().unwrap().clone();
    let create = log.iter().find(|r| r.path.ends_with("/messages")).unwrap();
    assert_eq!(create.auth, "Bearer tok-1");
    let body: Value = serde_json::from_str(&create.body).unwrap();
    assert_eq!(body["thread"]["idOnExternalPlatform"], "conv-1");
    assert_eq!(body["idOnExternalPlatform"], "conv-1:handoff");
    assert_eq!(body["authorEndUserIdentity"]["idOnExternalPlatform"], "u-1");
    assert!(body["messageContent"]["payload"]["text"]
        .as_str()
        .unwrap()
        .contains("Customer: my parcel broke"));
    let fields = log
        .iter()
        .find(|r| r.path.ends_with("/custom-fields"))
        .unwrap();
    assert!(fields.body.contains("C-42") && fields.body.contains("routing_queue"));
    let skill = log
        .iter()
        .find(|r| r.path.ends_with("/routing-queue"))
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&skill.body).unwrap(),
        json!({"skillId": 77})
    );
    let token = log.iter().find(|r| r.path == "/auth/token").unwrap();
    assert!(token.body.contains("grant_type=password") && token.body.contains("username=ak"));
    assert!(token.auth.starts_with("Basic "));
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_message_sent_once() {
    // The second DFO call is refused as expired; then all is well.
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let (base, log) = scripted(move |req, _| {
        if req.path.starts_with("/dfo/3.0/channels/chat_abc/messages") {
            let mut n = c.lock().unwrap();
            *n += 1;
            if *n == 2 {
                return (401, json!({"error": "token expired"}));
            }
            return (201, json!({"id": format!("m{n}"), "contactId": "5001"}));
        }
        (404, Value::Null)
    })
    .await;
    let creds = secret(&base);
    let http = reqwest::Client::new();
    let refreshed = Default::default();
    let t = tenant();
    let ctx = ProviderCtx {
        tenant: &t,
        credentials: &creds,
        http: &http,
        refreshed: &refreshed,
    };
    let nice = Nice::new();
    let mut session = SessionRecord::new(
        t.clone(),
        SessionId::parse("conv-1").unwrap(),
        IntegrationKey::Nice,
        json!({"user": {"display_name": "Ada"}}),
    );
    session.provider_conversation_id = Some("5001".into());
    session.provider_data = json!({"customer_id": "u-1"});
    for (id, text) in [("m-1", "one"), ("m-2", "two")] {
        let msg = CustomerMessage {
            id: id.into(),
            text: text.into(),
        };
        nice.send_message(&ctx, &session, &msg).await.unwrap();
    }
    let log = log.lock().unwrap().clone();
    let posts: Vec<&Seen> = log
        .iter()
        .filter(|r| r.path.ends_with("/messages"))
        .collect();
    let auths: Vec<&str> = posts.iter().map(|r| r.auth.as_str()).collect();
    assert_eq!(auths, vec!["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]);
    let ids: Vec<Value> = posts
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["idOnExternalPlatform"].clone())
        .collect();
    assert_eq!(ids, vec![json!("m-1"), json!("m-2"), json!("m-2")]);
    assert_eq!(log.iter().filter(|r| r.path == "/auth/token").count(), 2);
}

#[tokio::test]
async fn refused_access_keys_are_an_auth_error() {
    let cell: Arc<Mutex<String>> = Arc::default();
    let c = cell.clone();
    let (base, _) = dfo(Arc::new(move |req: &Seen, _| match req.path.as_str() {
        "/.well-known/openid-configuration" => (
            200,
            json!({"token_endpoint": format!("{}/auth/token", c.lock().unwrap())}),
        ),
        _ => (401, json!({"error": "invalid_client"})),
    }))
    .await;
    *cell.lock().unwrap() = base.clone();
    let creds = secret(&base);
    let http = reqwest::Client::new();
    let refreshed = Default::default();
    let t = tenant();
    let ctx = ProviderCtx {
        tenant: &t,
        credentials: &creds,
        http: &http,
        refreshed: &refreshed,
    };
    let nice = Nice::new();
    let err = nice.api(&ctx).unwrap().token().await.err().unwrap();
    assert!(matches!(err, HandoffError::ProviderAuth(_)), "{err:?}");
}

/// Session `conv-1` on contact 5001.
fn on_contact_5001(t: &Tenant) -> SessionRecord {
    let mut session = SessionRecord::new(
        t.clone(),
        SessionId::parse("conv-1").unwrap(),
        IntegrationKey::Nice,
        json!({}),
    );
    session.provider_conversation_id = Some("5001".into());
    session
}

#[tokio::test]
async fn typing_end_and_reconcile() {
    let (base, log) = scripted(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/dfo/3.0/channels/chat_abc/threads/conv-1/sender-actions") => (200, json!({})),
        ("PUT", "/dfo/3.0/contacts/5001/status") => (409, json!({"error": "already closed"})),
        ("GET", "/dfo/3.0/contacts/5001") => (200, json!({"id": "5001", "status": "open",
            "inboxAssignee": 55, "inboxAssigneeUser": {"id": 55, "firstName": "Sam", "nickname": "Sam"}})),
        _ => (404, Value::Null),
    })
    .await;
    let fixture = crate::providers::TestCtx::new(secret(&base));
    let ctx = fixture.ctx();
    let nice = Nice::new();
    let session = on_contact_5001(&fixture.tenant);
    nice.send_typing(&ctx, &session, true).await.unwrap();
    nice.send_typing(&ctx, &session, false).await.unwrap();
    nice.end(&ctx, &session).await.unwrap();
    let evs = nice.reconcile(&ctx, &session).await.unwrap();
    assert!(
        matches!(&evs[..], [ev] if matches!(&ev.kind, ProviderEventKind::AgentJoined(a) if a.display_name.as_deref() == Some("Sam")))
    );
    let log = log.lock().unwrap().clone();
    let actions: Vec<String> = log
        .iter()
        .filter(|r| r.path.ends_with("/sender-actions"))
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(
        actions,
        vec![r#"{"action":"isTypingOn"}"#, r#"{"action":"isTypingOff"}"#]
    );
    let close = log.iter().find(|r| r.path.ends_with("/status")).unwrap();
    assert_eq!(close.body, r#"{"status":"closed"}"#);
}

/// A close the platform answered 429 to until the retries ran out did
/// nothing: the end must fail (and be retried), not count as closed.
#[tokio::test]
async fn a_close_refused_with_429_is_not_an_end() {
    let (base, log) = scripted(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("PUT", "/dfo/3.0/contacts/5001/status") => (429, json!({"error": "slow down"})),
        _ => (404, Value::Null),
    })
    .await;
    let fixture = crate::providers::TestCtx::new(secret(&base));
    let ctx = fixture.ctx();
    let session = on_contact_5001(&fixture.tenant);
    let err = Nice::new().end(&ctx, &session).await.unwrap_err();
    assert!(
        matches!(err, HandoffError::ProviderUnavailable(_)),
        "{err:?}"
    );
    let closes = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.ends_with("/status"))
        .count();
    assert!(
        closes > 1,
        "the close was retried before giving up: {closes}"
    );
}

#[test]
fn routing_hints_and_contact_ids() {
    let skills = HashMap::from([("billing".to_owned(), 77)]);
    assert_eq!(
        skill_of(&object(json!({"skill_id": 12})), &skills),
        Some(12)
    );
    assert_eq!(skill_of(&object(json!({"skill": "34"})), &skills), Some(34));
    assert_eq!(
        skill_of(&object(json!({"queue": "billing"})), &skills),
        Some(77)
    );
    assert_eq!(skill_of(&object(json!({"queue": "sales"})), &skills), None);
    assert_eq!(
        contact_in_answer(&json!({"contactId": 5})),
        Some("5".into())
    );
    assert_eq!(
        contact_in_answer(&json!({"case": {"id": "c7"}})),
        Some("c7".into())
    );
    assert_eq!(contact_in_answer(&json!({"id": "msg"})), None);
}

#[test]
fn webhook_response_needs_a_configured_secret() {
    let nice = Nice::new();
    let headers = HashMap::new();
    let req = WebhookRequest {
        headers: &headers,
        body: b"",
        rest_path: "/1.0/token",
    };
    assert!(nice
        .webhook_response(&SecretJson::new(json!({})), &req)
        .is_none());
    let (status, body) = nice.webhook_response(&secret("http://x"), &req).unwrap();
    assert_eq!(status, 200);
    assert!(body["access_token"].as_str().unwrap().starts_with("nbt1."));
    assert_eq!(
        nice.capabilities(),
        Capabilities {
            customer_typing: true,
            agent_typing: true,
            agent_joined: true,
            agent_left: true
        }
    );
}
