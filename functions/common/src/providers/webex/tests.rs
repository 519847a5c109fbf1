//! Adapter tests: the Create Task body, `aliasId`, and the token life cycle
//! against a small scripted HTTP server on 127.0.0.1:0.

use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::domain::SessionId;
use crate::request::{TranscriptEntry, UserInfo};

fn creds_json(base: &str) -> Value {
    json!({"client_id": "cid", "client_secret": "csecret", "refresh_token": "rt-secret",
        "org_id": "org-1", "api_base_url": base, "identity_base_url": base,
        "business_address": "support@acme.example", "channel_name": "ai-handoff",
        "webhook_secret": "w".repeat(32)})
}

#[test]
fn create_task_carries_transcript_hints_and_context() {
    let creds: WebexCredentials = serde_json::from_value(creds_json("http://x")).unwrap();
    let session = SessionId::parse("conv-1").unwrap();
    let user = UserInfo {
        id: Some("u-1".into()),
        display_name: Some("Ada".into()),
        channel: None,
    };
    let transcript = vec![TranscriptEntry {
        role: "user".into(),
        text: "my parcel arrived broken".into(),
        at: None,
    }];
    let context: Map<String, Value> = serde_json::from_value(
        json!({"customer_id": "C-42", "reason": "refund", "verified": true, "queue": "ctx"}),
    )
    .unwrap();
    let routing: Map<String, Value> = serde_json::from_value(json!({"queue": "billing"})).unwrap();
    let input = StartInput {
        session_id: &session,
        user: &user,
        utterance: Some("I'll transfer you"),
        transcript: &transcript,
        context: &context,
        routing: &routing,
    };
    let body = create_task_body(&creds, &input);
    assert_eq!(body["origin"], json!({"id": "conv-1", "name": "Ada"}));
    assert_eq!(
        body["destination"],
        json!({"id": "support@acme.example", "type": "businessAddress"})
    );
    assert_eq!(body["channelType"], "customMessaging");
    assert_eq!(body["channel"], "ai-handoff");
    let vars = &body["globalVariables"];
    assert_eq!(vars["customer_id"], "C-42");
    assert_eq!(vars["verified"], "true");
    assert_eq!(vars["queue"], "billing", "a routing hint wins");
    assert_eq!(vars["customer_user_id"], "u-1");
    assert_eq!(vars["handoff_session_id"], "conv-1");
    let message = &body["channelParams"]["message"];
    assert_eq!(body["channelParams"]["type"], "text");
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains("Customer: my parcel arrived broken"),
        "{text}"
    );
    assert!(text.contains("Reason: refund"));
    assert_eq!(message["aliasId"], alias_id("conv-1", "handoff"));
    assert!(message["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
}

#[test]
fn alias_ids_are_stable_uuids_per_session_and_message() {
    let a = alias_id("conv-1", "m-17");
    assert_eq!(a, alias_id("conv-1", "m-17"));
    assert_ne!(a, alias_id("conv-2", "m-17"));
    assert_ne!(a, alias_id("conv-1", "m-18"));
    let parsed = uuid::Uuid::parse_str(&a).unwrap();
    assert_eq!(parsed.get_version_num(), 8);
}

#[test]
fn capabilities_say_no_typing() {
    let caps = Webex::new().capabilities();
    assert!(!caps.agent_typing && !caps.customer_typing);
    assert!(caps.agent_joined && caps.agent_left);
}

/// One request as the stub saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: String,
}

type Script = Arc<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

/// A scripted HTTP/1.1 server; returns its base URL and what it saw.
async fn stub(script: Script) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let script = script.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let head = &text[..end];
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    let authorization = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .starts_with("authorization:")
                            .then(|| l[14..].trim().to_owned())
                    });
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                    let req = Seen {
                        path,
                        authorization,
                        body,
                    };
                    let (status, answer) = script(&req);
                    log.lock().unwrap().push(req);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    return;
                }
            });
        }
    });
    (base, seen)
}

fn form_value(body: &str, key: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.to_owned())
    })
}

fn token_answer(access: &str, refresh: &str) -> (u16, String) {
    (
        200,
        json!({"access_token": access, "expires_in": 1_209_600, "refresh_token": refresh,
            "refresh_token_expires_in": 7_776_000, "token_type": "Bearer"})
        .to_string(),
    )
}

async fn start_once(base: &str, webex: &Webex) -> Result<StartOutcome> {
    let fixture = crate::providers::TestCtx::new(SecretJson::new(creds_json(base)));
    let ctx = fixture.ctx();
    let session = SessionId::parse("conv-1").unwrap();
    let user = UserInfo {
        id: None,
        display_name: None,
        channel: None,
    };
    let empty = Map::new();
    let input = StartInput {
        session_id: &session,
        user: &user,
        utterance: None,
        transcript: &[],
        context: &empty,
        routing: &empty,
    };
    webex.start(&ctx, &input).await
}

#[tokio::test]
async fn expired_token_is_refreshed_once_and_the_call_retried() {
    let issued = Arc::new(Mutex::new(0u32));
    let valid = Arc::new(Mutex::new(String::new()));
    let (i, v) = (issued.clone(), valid.clone());
    let (base, seen) = stub(Arc::new(move |req: &Seen| {
        if req.path == "/v1/access_token" {
            let mut n = i.lock().unwrap();
            *n += 1;
            let token = format!("at-{n}");
            *v.lock().unwrap() = token.clone();
            return token_answer(&token, "rt-secret");
        }
        let want = format!("Bearer {}", v.lock().unwrap());
        if req.authorization.as_deref() != Some(want.as_str()) {
            return (401, json!({"message": "Invalid Token"}).to_string());
        }
        (
            201,
            json!({"meta": {"orgId": "org-1"}, "data": {"id": "task-1"}}).to_string(),
        )
    }))
    .await;
    let webex = Webex::new();
    let out = start_once(&base, &webex).await.unwrap();
    assert_eq!(out.conversation_id, "task-1");
    assert_eq!(*issued.lock().unwrap(), 1);
    // The platform forgets the token: one refresh, one retry.
    *valid.lock().unwrap() = "something-else".into();
    assert_eq!(
        start_once(&base, &webex).await.unwrap().conversation_id,
        "task-1"
    );
    assert_eq!(*issued.lock().unwrap(), 2);
    let seen = seen.lock().unwrap().clone();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/v1/access_token",
            "/v2/tasks",
            "/v2/tasks",
            "/v1/access_token",
            "/v2/tasks"
        ]
    );
    let grant = &seen[0].body;
    assert_eq!(
        form_value(grant, "grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(form_value(grant, "client_id").as_deref(), Some("cid"));
    assert_eq!(
        form_value(grant, "refresh_token").as_deref(),
        Some("rt-secret")
    );
}

#[tokio::test]
async fn rotated_refresh_token_is_used_then_abandoned_when_refused() {
    let grants = Arc::new(Mutex::new(Vec::<String>::new()));
    let g = grants.clone();
    let (base, _) = stub(Arc::new(move |req: &Seen| {
        if req.path == "/v1/access_token" {
            let rt = form_value(&req.body, "refresh_token").unwrap_or_default();
            let mut log = g.lock().unwrap();
            log.push(rt.clone());
            return match (log.len(), rt.as_str()) {
                (1, "rt-secret") => token_answer("at-1", "rt-rotated"),
                (2, "rt-rotated") => (400, json!({"error": "invalid_grant"}).to_string()),
                (3, "rt-secret") => token_answer("at-2", "rt-secret"),
                _ => (400, json!({"error": "invalid_grant"}).to_string()),
            };
        }
        if req.authorization.as_deref() == Some("Bearer at-2") {
            return (201, json!({"data": {"id": "task-2"}}).to_string());
        }
        (401, json!({"message": "Invalid Token"}).to_string())
    }))
    .await;
    let webex = Webex::new();
    // at-1 is refused: refresh with the rotated token (refused), then the secret's.
    let out = start_once(&base, &webex).await.unwrap();
    assert_eq!(out.conversation_id, "task-2");
    assert_eq!(
        *grants.lock().unwrap(),
        vec!["rt-secret", "rt-rotated", "rt-secret"]
    );
}

#[tokio::test]
async fn a_dead_refresh_token_is_an_auth_error() {
    let (base, _) = stub(Arc::new(|_: &Seen| {
        (400, json!({"error": "invalid_grant"}).to_string())
    }))
    .await;
    let err = start_once(&base, &Webex::new()).await.unwrap_err();
    assert_eq!(err.code(), HandoffError::ProviderAuth(String::new()).code());
}
