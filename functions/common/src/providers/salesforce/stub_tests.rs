//! Adapter tests against a scripted HTTP server on 127.0.0.1:0: token renewal
//! on 401 (verified and anonymous), and the SSE holder resuming with
//! `Last-Event-Id` after a drop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::notifications::RESUME_KEY;
use super::*;
use crate::domain::{ClientEnv, SessionId, SessionState, Tenant};
use crate::events::EndedBy;
use crate::providers::ProviderEventKind;

const TEST_KEY: &str = include_str!("test_identity_key.pem");
const TEST_JWKS: &str = include_str!("test_identity_jwks.json");
const CID: &str = "5b0f4a2e-8a51-4d2b-9a43-2f1a4e0c7d11";

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    last_event_id: Option<String>,
    body: String,
}

/// `(status, content type, body)`; an `text/event-stream` answer is sent
/// without a length and the socket closed after it (a dropped stream).
type Script = Arc<dyn Fn(&Seen) -> (u16, &'static str, String) + Send + Sync>;

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

async fn stub(script: Script) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (script, log) = (script.clone(), log.clone());
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
                    let len = header(head, "content-length")
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let mut first = head.split(' ');
                    let req = Seen {
                        method: first.next().unwrap_or_default().to_owned(),
                        path: first.next().unwrap_or_default().to_owned(),
                        authorization: header(head, "authorization"),
                        last_event_id: header(head, "last-event-id"),
                        body: String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string(),
                    };
                    let (status, ctype, answer) = script(&req);
                    log.lock().unwrap().push(req);
                    let resp = if ctype == "text/event-stream" {
                        format!("HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\nconnection: close\r\n\r\n{answer}")
                    } else {
                        format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                            answer.len()
                        )
                    };
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                    return;
                }
            });
        }
    });
    (base, seen)
}

fn creds(base: &str, mode: &str) -> SecretJson {
    SecretJson::new(json!({
        "scrt_base_url": base, "org_id": "00D5g000000abcdEAA", "es_developer_name": "Relay",
        "auth_mode": mode, "identity_issuer": "relay", "identity_key_id": "relay-test-1",
        "identity_private_key_pem": TEST_KEY}))
}

fn session(token: &str) -> SessionRecord {
    let mut s = SessionRecord::new(
        Tenant::new("acme", "support", ClientEnv::Live).unwrap(),
        SessionId::parse("conv-1").unwrap(),
        IntegrationKey::Salesforce,
        json!({}),
    );
    s.state = SessionState::Active;
    s.provider_conversation_id = Some(CID.into());
    s.provider_data = json!({"access_token": token, "identity_subject": "conv-1"});
    s
}

/// A JWT-shaped token with `exp` (the adapter reads it; the stub does not check it).
fn fake_jwt(name: &str, exp: i64) -> String {
    let claims = URL_SAFE_NO_PAD.encode(json!({"sub": name, "exp": exp}).to_string());
    format!("h.{claims}.{name}")
}

fn verify_identity(token: &str) -> Option<Value> {
    let jwks: Value = serde_json::from_str(TEST_JWKS).unwrap();
    let key = &jwks["keys"][0];
    let n = URL_SAFE_NO_PAD.decode(key["n"].as_str()?).ok()?;
    let e = URL_SAFE_NO_PAD.decode(key["e"].as_str()?).ok()?;
    let (input, sig) = token.rsplit_once('.')?;
    aws_lc_rs::signature::RsaPublicKeyComponents { n, e }
        .verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &URL_SAFE_NO_PAD.decode(sig).ok()?,
        )
        .ok()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(input.split('.').nth(1)?).ok()?).ok()
}

#[tokio::test]
async fn a_refused_verified_token_is_reminted_for_the_same_subject_once() {
    let valid = Arc::new(Mutex::new(String::from("at-0")));
    let v = valid.clone();
    let far = crate::time::now_ms() / 1000 + 3600;
    let (base, seen) = stub(Arc::new(move |req: &Seen| {
        if req
            .path
            .ends_with("/authorization/authenticated/access-token")
        {
            let body: Value = serde_json::from_str(&req.body).unwrap();
            let claims = verify_identity(body["customerIdentityToken"].as_str().unwrap())
                .expect("identity token signed with the tenant key");
            assert_eq!(claims["sub"], "conv-1");
            assert_eq!(claims["iss"], "relay");
            assert_eq!(body["authorizationType"], "JWT");
            let token = fake_jwt("at-1", far);
            *v.lock().unwrap() = token.clone();
            return (
                200,
                "application/json",
                json!({"accessToken": token}).to_string(),
            );
        }
        let want = format!("Bearer {}", v.lock().unwrap());
        if req.authorization.as_deref() != Some(want.as_str()) {
            return (401, "application/json", "{}".into());
        }
        let body: Value = serde_json::from_str(&req.body).unwrap();
        (
            202,
            "application/json",
            json!({"conversationEntries": [{"id": body["message"]["id"]}]}).to_string(),
        )
    }))
    .await;
    let sf = Salesforce::new();
    let fixture = crate::providers::TestCtx::new(creds(&base, "verified"));
    let ctx = fixture.ctx();
    let stale = session(&fake_jwt("at-0-revoked", far));
    let msg = CustomerMessage {
        id: "m-1".into(),
        text: "hello".into(),
    };
    let out = sf.send_message(&ctx, &stale, &msg).await.unwrap();
    assert_eq!(
        out["salesforce_message_id"],
        stable_uuid("conv-1:m-1"),
        "message id is stable"
    );
    let remembered = fixture
        .refreshed
        .lock()
        .unwrap()
        .get("access_token")
        .cloned();
    assert_eq!(remembered, Some(json!(fake_jwt("at-1", far))));
    // The renewed token is used from now on, with no further minting.
    sf.send_message(&ctx, &stale, &msg).await.unwrap();
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    let msg_path = format!("POST /iamessage/api/v2/conversation/{CID}/message");
    assert_eq!(
        paths,
        vec![
            msg_path.clone(),
            "POST /iamessage/api/v2/authorization/authenticated/access-token".into(),
            msg_path.clone(),
            msg_path
        ]
    );
}

#[tokio::test]
async fn an_expired_anonymous_token_cannot_be_continued() {
    let (base, seen) = stub(Arc::new(|_req: &Seen| {
        (
            401,
            "application/json",
            r#"{"message":"Jwt is expired"}"#.into(),
        )
    }))
    .await;
    let sf = Salesforce::new();
    let fixture = crate::providers::TestCtx::new(creds(&base, "unauthenticated"));
    let ctx = fixture.ctx();
    let old = session(&fake_jwt("anon", 1));
    let msg = CustomerMessage {
        id: "m-1".into(),
        text: "hello".into(),
    };
    let err = sf.send_message(&ctx, &old, &msg).await.unwrap_err();
    assert!(matches!(err, HandoffError::ProviderAuth(_)), "{err:?}");
    assert!(fixture.refreshed.lock().unwrap().is_empty());
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(paths.len(), 2);
    assert!(paths[1].ends_with("/authorization/continuation-access-token"));
    // Closing with a dead anonymous token counts as done: the platform times it out.
    sf.end(&ctx, &old).await.unwrap();
}

fn frame(id: u64, event: &str, entry: Value) -> String {
    let data = json!({"conversationId": CID, "conversationEntry": entry});
    format!("id: {id}\nevent: {event}\ndata: {data}\n\n")
}

fn agent_message(identifier: &str, text: &str) -> Value {
    json!({"identifier": identifier, "entryType": "Message", "senderDisplayName": "Sam",
        "sender": {"role": "Agent", "subject": "005A"},
        "entryPayload": json!({"abstractMessage": {"messageType": "StaticContentMessage",
            "staticContent": {"formatType": "Text", "text": text}}}).to_string()})
}

/// Holds one anonymous session's stream against the stub until it ends.
async fn hold_until_ended(base: &str) -> Vec<ProviderEvent> {
    let sf = Salesforce::new();
    let fixture = crate::providers::TestCtx::new(creds(base, "unauthenticated"));
    let ctx = fixture.ctx();
    let (tx, rx) = watch::channel(vec![session(&fake_jwt("anon", i64::MAX / 2))]);
    let (sink, mut events) = mpsc::channel::<ProviderEvent>(16);
    let deadline = Instant::now() + Duration::from_secs(20);
    let collect = async {
        let mut got = Vec::new();
        while let Some(ev) = events.recv().await {
            let end = matches!(ev.kind, ProviderEventKind::Ended(_));
            got.push(ev);
            if end {
                drop(tx);
                break;
            }
        }
        got
    };
    let (held, got) = tokio::join!(sf.hold(&ctx, rx, sink, deadline), collect);
    held.unwrap();
    assert!(
        Instant::now() < deadline,
        "the hold ended with the watch list"
    );
    got
}

#[tokio::test]
async fn the_stream_resumes_with_last_event_id_after_a_drop() {
    let (base, seen) = stub(Arc::new(|req: &Seen| {
        if req.path.contains("/entries") {
            return (
                200,
                "application/json",
                json!({"conversationEntries": []}).to_string(),
            );
        }
        assert!(req.path.starts_with("/eventrouter/v1/sse"));
        match req.last_event_id.as_deref() {
            // First stream: one event, then the connection drops.
            None => (
                200,
                "text/event-stream",
                format!(
                    "event: ping\ndata: {{}}\n\n{}",
                    frame(
                        1,
                        "CONVERSATION_MESSAGE",
                        agent_message("e-1", "first")
                    )
                ),
            ),
            Some("1") => (
                200,
                "text/event-stream",
                frame(2, "CONVERSATION_MESSAGE", agent_message("e-2", "second"))
                    + &frame(
                        3,
                        "CONVERSATION_SESSION_STATUS_CHANGED",
                        json!({"identifier": "e-3", "entryType": "SessionStatusChanged",
                        "sender": {"role": "System"},
                        "entryPayload": r#"{"sessionStatus":"Ended","sessionEndedByRole":"Agent"}"#}),
                    ),
            ),
            Some(other) => panic!("unexpected Last-Event-Id {other}"),
        }
    }))
    .await;
    let got = hold_until_ended(&base).await;
    let keys: Vec<&str> = got.iter().map(|e| e.dedupe_key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            format!("entry:{CID}:e-1"),
            format!("entry:{CID}:e-2"),
            format!("entry:{CID}:e-3")
        ]
    );
    assert_eq!(got[2].kind, ProviderEventKind::Ended(EndedBy::Agent));
    let seen = seen.lock().unwrap().clone();
    let streams: Vec<Option<String>> = seen
        .iter()
        .filter(|s| s.path.starts_with("/eventrouter"))
        .map(|s| s.last_event_id.clone())
        .collect();
    assert_eq!(streams, vec![None, Some("1".to_owned())]);
    assert_eq!(
        seen.iter().filter(|s| s.path.contains("/entries")).count(),
        1,
        "reconciled once, on the stream opened without an id"
    );
}

#[tokio::test]
async fn a_failed_catch_up_is_retried_before_the_stream_is_read() {
    let entries_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = entries_calls.clone();
    let (base, seen) = stub(Arc::new(move |req: &Seen| {
        if req.path.contains("/entries") {
            // The first catch-up read fails every attempt of the retry policy;
            // the message it holds must still arrive.
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                < crate::http::RetryPolicy::default().attempts
            {
                return (503, "application/json", "{}".into());
            }
            return (
                200,
                "application/json",
                json!({"conversationEntries": [agent_message("e-0", "sent while no stream was held")]})
                    .to_string(),
            );
        }
        (
            200,
            "text/event-stream",
            frame(
                7,
                "CONVERSATION_SESSION_STATUS_CHANGED",
                json!({"identifier": "e-9", "entryType": "SessionStatusChanged",
                "sender": {"role": "System"},
                "entryPayload": r#"{"sessionStatus":"Ended","sessionEndedByRole":"Agent"}"#}),
            ),
        )
    }))
    .await;
    let got = hold_until_ended(&base).await;
    let keys: Vec<&str> = got.iter().map(|e| e.dedupe_key.as_str()).collect();
    assert_eq!(
        keys,
        vec![format!("entry:{CID}:e-0"), format!("entry:{CID}:e-9")]
    );
    let seen = seen.lock().unwrap().clone();
    let streams: Vec<Option<String>> = seen
        .iter()
        .filter(|s| s.path.starts_with("/eventrouter"))
        .map(|s| s.last_event_id.clone())
        .collect();
    assert_eq!(
        streams,
        vec![None, None],
        "reopened without an id after the failed read"
    );
}

#[tokio::test]
async fn a_hold_resumes_where_the_last_one_stopped_and_says_where_it_got_to() {
    let (base, seen) = stub(Arc::new(|req: &Seen| {
        if req.path.contains("/entries") {
            return (
                200,
                "application/json",
                json!({"conversationEntries": []}).to_string(),
            );
        }
        match req.last_event_id.as_deref() {
            // Kept by the previous hold: the platform replays what came since.
            Some("5") => (
                200,
                "text/event-stream",
                frame(
                    6,
                    "CONVERSATION_TYPING_STARTED_INDICATOR",
                    json!({"identifier": "e-6", "entryType": "TypingStartedIndicator",
                        "senderDisplayName": "Sam", "sender": {"role": "Agent", "subject": "005A"}}),
                ),
            ),
            Some("6") => (200, "text/event-stream", "event: ping\ndata: {}\n\n".into()),
            other => panic!("unexpected Last-Event-Id {other:?}"),
        }
    }))
    .await;
    let sf = Salesforce::new();
    let fixture = crate::providers::TestCtx::new(creds(&base, "unauthenticated"));
    let ctx = fixture.ctx();
    let mut watched = session(&fake_jwt("anon", i64::MAX / 2));
    watched.provider_data[RESUME_KEY] = json!("5");
    let (_tx, rx) = watch::channel(vec![watched]);
    let (sink, mut events) = mpsc::channel::<ProviderEvent>(16);
    let deadline = Instant::now() + Duration::from_millis(2500);
    sf.hold(&ctx, rx, sink, deadline).await.unwrap();
    let mut got = Vec::new();
    while let Ok(ev) = events.try_recv() {
        got.push(ev.kind);
    }
    assert!(
        matches!(got.first(), Some(ProviderEventKind::AgentTyping(_))),
        "typing replayed from the kept id: {got:?}"
    );
    assert_eq!(
        got.last(),
        Some(&ProviderEventKind::Resume {
            key: RESUME_KEY,
            value: "6".into()
        }),
        "the hold reports the last id it saw"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter()
            .filter(|s| s.path.starts_with("/eventrouter"))
            .map(|s| s.last_event_id.clone())
            .next(),
        Some(Some("5".to_owned()))
    );
    assert_eq!(
        seen.iter().filter(|s| s.path.contains("/entries")).count(),
        1,
        "still reconciled once: the kept id may be older than the replay"
    );
}
