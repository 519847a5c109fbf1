//! Bad input, for every platform: each class gets its answer checked, and
//! afterwards the table, the widget and the platform are as they were —
//! nothing written, nothing delivered, nothing sent. A class that cannot
//! occur on a platform is printed as not applicable, never skipped silently.

use std::time::Duration;

use e2e::{items_of_tenant, not_applicable, session_id, sns_event, Platform, TestTenant, Webhook};
use serde_json::{json, Value};

/// What the table and the widget hold for a tenant's session.
async fn snapshot(t: &TestTenant, session: &str) -> (usize, usize) {
    (
        items_of_tenant(&t.tenant_key()).await,
        t.received
            .lock()
            .unwrap()
            .deliveries
            .iter()
            .filter(|e| e.session_id == session)
            .count(),
    )
}

/// The webhook URL with `from` (a path segment sequence) replaced by `to`.
fn with_path(w: &Webhook, from: &str, to: &str) -> Webhook {
    assert!(w.url.contains(from), "{} has no {from}", w.url);
    Webhook {
        url: w.url.replacen(from, to, 1),
        ..w.clone()
    }
}

fn route_name(p: Platform) -> &'static str {
    match p {
        Platform::AmazonConnect => "amazon-connect",
        p => p.sim_prefix(),
    }
}

/// Lets in-flight work of the handoff (joins, pushes, the poller) settle, so
/// a later count compares like with like.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

async fn webhook_bad_input_is_refused_and_changes_nothing(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    if !p.has_webhooks() {
        return webhooks_of_a_platform_without_them_are_refused(&t).await;
    }
    let other = TestTenant::on(p, "live").await;
    let (session, cid) = t.accepted().await;
    settle().await;
    let good = t
        .agent_webhook(&session, &cid, &session_id(), "the real agent message")
        .await
        .unwrap();
    let oversize = vec![b' '; 300 * 1024];
    let oversize_credential = t.webhook_credential(&oversize).await;
    let malformed_credential = t.webhook_credential(b"{not json").await;
    let prefix = format!("/webhooks/{}/", route_name(p));
    let tenant_path = format!("/{}/{}/live", t.account_id, t.project_id);
    let reserialised =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&good.body).unwrap()).unwrap();
    let (name, value) = good.credential.clone().unwrap();
    let mut cases: Vec<(&str, Webhook, u16, &str)> = vec![
        (
            "missing signature",
            Webhook {
                credential: None,
                ..good.clone()
            },
            401,
            "unauthenticated",
        ),
        (
            "another tenant's signature",
            Webhook {
                credential: other.webhook_credential(&good.body).await,
                ..good.clone()
            },
            401,
            "unauthenticated",
        ),
        (
            "truncated signature",
            Webhook {
                credential: Some((name.clone(), value[..value.len() / 2].to_owned())),
                ..good.clone()
            },
            401,
            "unauthenticated",
        ),
        (
            "unknown provider",
            with_path(&good, &prefix, "/webhooks/avaya/"),
            404,
            "not_found",
        ),
        (
            "unknown tenant",
            with_path(
                &good,
                &tenant_path,
                &format!("/nobody-{}/{}/live", t.account_id, t.project_id),
            ),
            404,
            "not_configured",
        ),
        (
            "wrong client_env (one the tenant does not have)",
            with_path(
                &good,
                &tenant_path,
                &format!("/{}/{}/sandbox", t.account_id, t.project_id),
            ),
            404,
            "not_configured",
        ),
        (
            "client_env that does not exist",
            with_path(
                &good,
                &tenant_path,
                &format!("/{}/{}/prod", t.account_id, t.project_id),
            ),
            404,
            "not_found",
        ),
        (
            "oversize body",
            Webhook {
                credential: oversize_credential,
                body: oversize,
                ..good.clone()
            },
            413,
            "payload_too_large",
        ),
        (
            "malformed JSON, correctly signed",
            Webhook {
                credential: malformed_credential,
                body: b"{not json".to_vec(),
                ..good.clone()
            },
            400,
            "malformed",
        ),
        (
            "wrong content type, correctly signed",
            Webhook {
                content_type: "text/plain".into(),
                ..good.clone()
            },
            415,
            "unsupported_media_type",
        ),
        (
            "form content type on a JSON callback",
            Webhook {
                content_type: "application/x-www-form-urlencoded".into(),
                ..good.clone()
            },
            415,
            "unsupported_media_type",
        ),
    ];
    if p.signs_body() {
        cases.push((
            "signature over a re-serialised body",
            Webhook {
                body: reserialised,
                ..good.clone()
            },
            401,
            "unauthenticated",
        ));
    } else {
        not_applicable(
            p,
            "signature over a re-serialised body",
            "the credential is a key or token, not a digest of the body",
        );
    }
    let before = snapshot(&t, &session).await;
    for (what, webhook, status, code) in &cases {
        let (got, answer) = t.post(webhook).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{what}: {answer}"
        );
        println!("bad input {} {what}: {got} {code}", p.integration_key());
    }
    settle().await;
    assert_eq!(
        snapshot(&t, &session).await,
        before,
        "a refused webhook wrote or delivered something"
    );
    assert!(!t
        .agent_texts(&session)
        .contains(&"the real agent message".to_owned()));

    // The genuine webhook is taken once; its replay changes nothing.
    let (status, answer) = t.post(&good).await;
    assert!(
        (200..300).contains(&status),
        "genuine webhook: {status} {answer}"
    );
    t.wait_event(&session, "LIVE_AGENT_MESSAGE", |e| {
        e.data["text"] == "the real agent message"
    })
    .await;
    settle().await;
    let after_first = snapshot(&t, &session).await;
    let (status, answer) = t.post(&good).await;
    assert!((200..300).contains(&status), "replay: {status} {answer}");
    if let Some(dups) = answer["duplicates"].as_u64() {
        assert_eq!(dups, 1, "{answer}");
    }
    settle().await;
    assert_eq!(
        snapshot(&t, &session).await,
        after_first,
        "a replayed webhook wrote or delivered something"
    );
    let delivered = t
        .agent_texts(&session)
        .iter()
        .filter(|x| *x == "the real agent message")
        .count();
    assert_eq!(delivered, 1, "replayed webhook delivered again");
    println!(
        "bad input {} replayed webhook: {status}, not delivered again",
        p.integration_key()
    );

    // After SESSION_END an agent message is acknowledged and never delivered.
    let ended = t.end(&session).await;
    assert_eq!(ended["status"], "ended", "{ended}");
    t.wait_event(&session, "SESSION_END", |_| true).await;
    let late = t
        .agent_webhook(&session, &cid, &session_id(), "after the end")
        .await
        .unwrap();
    let (status, answer) = t.post(&late).await;
    assert!((200..300).contains(&status), "after end: {status} {answer}");
    settle().await;
    assert!(
        !t.agent_texts(&session)
            .contains(&"after the end".to_owned()),
        "delivered after SESSION_END"
    );
    println!(
        "bad input {} agent message after SESSION_END: {status}, not delivered",
        p.integration_key()
    );
}

/// Connect and Salesforce send no HTTP webhooks: anything posted to their
/// route is refused, however it is dressed.
async fn webhooks_of_a_platform_without_them_are_refused(t: &TestTenant) {
    let p = t.platform;
    let (session, cid) = t.accepted().await;
    settle().await;
    let before = snapshot(t, &session).await;
    let body = serde_json::to_vec(&json!({"conversationId": cid, "text": "forged"})).unwrap();
    let forged = Webhook {
        url: t.webhook_url.clone(),
        credential: Some(("X-Hub-Signature-256".into(), t.sign(&body))),
        content_type: "application/json".into(),
        body,
    };
    let (status, answer) = t.post(&forged).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("unauthenticated")),
        "{answer}"
    );
    println!(
        "bad input {} any HTTP webhook: 401 unauthenticated",
        p.integration_key()
    );
    for class in [
        "missing, wrong or truncated signature",
        "signature over a re-serialised body",
        "malformed JSON",
    ] {
        not_applicable(
            p,
            class,
            "the platform sends no HTTP webhooks; every one is refused with 401",
        );
    }
    settle().await;
    assert_eq!(snapshot(t, &session).await, before);
}

/// Connect's events come as SNS records: a record is taken only from the
/// topic configured for the contact's tenant, once.
async fn connect_stream_bad_input_is_dropped_and_changes_nothing() {
    let t = TestTenant::on(Platform::AmazonConnect, "live").await;
    let other = TestTenant::on(Platform::AmazonConnect, "live").await;
    let (session, cid) = t.accepted().await;
    settle().await;
    let item = |id: &str, contact: &str, text: &str| {
        json!({"Id": id, "InitialContactId": contact, "ContactId": contact, "Type": "MESSAGE",
            "ContentType": "text/plain", "ParticipantRole": "AGENT", "ParticipantId": "agent-7",
            "DisplayName": "Sam", "Content": text, "AbsoluteTime": "2026-11-23T10:01:02.120Z"})
        .to_string()
    };
    let id = session_id();
    let before = snapshot(&t, &session).await;
    let cases = [
        (
            "record from another tenant's topic",
            sns_event(&other.stream_topic, &item(&id, &cid, "forged")),
            "rejected",
        ),
        (
            "record whose Message is not a chat item",
            sns_event(&t.stream_topic, "{not json"),
            "rejected",
        ),
        (
            "record for a contact we did not open",
            sns_event(&t.stream_topic, &item(&id, "contact-nobody", "x")),
            "unknown",
        ),
    ];
    for (what, event, counter) in &cases {
        let answer = t.invoke("inbound-webhook", event).await;
        assert_eq!(answer["report"][counter], 1, "{what}: {answer}");
        assert_eq!(answer["report"]["stored"], 0, "{what}: {answer}");
        println!("bad input amazon_connect_integration {what}: acknowledged, {counter}");
    }
    let not_sns = t
        .invoke("inbound-webhook", &json!({"Records": "nope"}))
        .await;
    assert!(
        not_sns.get("errorType").is_some() || not_sns["error"].is_object(),
        "{not_sns}"
    );
    settle().await;
    assert_eq!(
        snapshot(&t, &session).await,
        before,
        "a dropped record wrote or delivered something"
    );

    let genuine = sns_event(&t.stream_topic, &item(&id, &cid, "the real agent message"));
    let first = t.invoke("inbound-webhook", &genuine).await;
    assert_eq!(first["report"]["stored"], 1, "{first}");
    t.wait_event(&session, "LIVE_AGENT_MESSAGE", |e| {
        e.data["text"] == "the real agent message"
    })
    .await;
    settle().await;
    let after_first = snapshot(&t, &session).await;
    let replay = t.invoke("inbound-webhook", &genuine).await;
    assert_eq!(replay["report"]["duplicates"], 1, "{replay}");
    settle().await;
    assert_eq!(snapshot(&t, &session).await, after_first);
    println!(
        "bad input amazon_connect_integration replayed record: duplicate, not delivered again"
    );
}

async fn request_bad_input_is_refused_and_changes_nothing(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let fresh = session_id();
    let base = t.start_request(&fresh);
    let mut variants: Vec<(&str, Value, &str)> = Vec::new();
    let mut zero = base.clone();
    zero["handoff"]["text_chat"] = json!({});
    variants.push((
        "start-handoff with zero integration keys",
        zero,
        "invalid_request",
    ));
    let mut two = base.clone();
    let other_key = if p == Platform::Genesys {
        "zendesk_integration"
    } else {
        "genesys_integration"
    };
    two["handoff"]["text_chat"][other_key] = json!({});
    variants.push((
        "start-handoff with two integration keys",
        two,
        "invalid_request",
    ));
    let mut unknown_key = base.clone();
    unknown_key["handoff"]["text_chat"] = json!({"avaya_integration": {}});
    variants.push((
        "start-handoff with an unknown integration key",
        unknown_key,
        "unknown_integration",
    ));
    let mut destination = base.clone();
    let obj = destination.as_object_mut().unwrap();
    obj.remove("handoff");
    obj.remove("context");
    obj.insert("destination".into(), json!("nowhere"));
    variants.push(("unknown destination", destination, "invalid_request"));
    let mut env = base.clone();
    env["tenant"]["client_env"] = json!("prod");
    variants.push(("client_env that does not exist", env, "invalid_request"));
    let mut no_session = base.clone();
    no_session["session_id"] = json!("");
    variants.push(("empty session id", no_session, "invalid_request"));
    for (what, request, code) in &variants {
        let answer = t.invoke("start-handoff", request).await;
        assert_eq!(answer["error"]["code"], *code, "{what}: {answer}");
        println!("bad input {} {what}: {code}", p.integration_key());
    }
    assert_eq!(
        items_of_tenant(&t.tenant_key()).await,
        0,
        "a refused start wrote something"
    );
    assert!(
        t.conversations().await.is_empty(),
        "a refused start opened a conversation"
    );

    // Messages: on a real session, refused ones reach neither table nor agent.
    let (session, cid) = t.handed_off().await;
    settle().await;
    let stranger = TestTenant::on(p, "live").await;
    let sandbox = t.sibling("sandbox").await;
    let items = items_of_tenant(&t.tenant_key()).await;
    let texts = t.inbound_texts(&cid).await;
    let messages = [
        (
            "empty message",
            t.send(&session, "m-empty", "").await,
            "invalid_request",
        ),
        (
            "whitespace-only message",
            t.send(&session, "m-blank", "  \n ").await,
            "invalid_request",
        ),
        (
            "huge message",
            t.send(&session, "m-huge", &"x".repeat(100_000)).await,
            "invalid_request",
        ),
        (
            "another tenant's session id",
            stranger.send(&session, "m-1", "hello").await,
            "session_not_found",
        ),
        (
            "the session id from another client_env",
            sandbox.send(&session, "m-1", "hello").await,
            "session_not_found",
        ),
        (
            "ending another tenant's session",
            stranger.end(&session).await,
            "session_not_found",
        ),
    ];
    for (what, answer, code) in &messages {
        assert_eq!(answer["error"]["code"], *code, "{what}: {answer}");
        println!("bad input {} {what}: {code}", p.integration_key());
    }
    settle().await;
    assert_eq!(
        items_of_tenant(&t.tenant_key()).await,
        items,
        "a refused message wrote something"
    );
    assert_eq!(
        t.inbound_texts(&cid).await,
        texts,
        "a refused message reached the agent"
    );
    assert_eq!(items_of_tenant(&stranger.tenant_key()).await, 0);
    assert_eq!(items_of_tenant(&sandbox.tenant_key()).await, 0);

    let ended = t.end(&session).await;
    assert_eq!(ended["status"], "ended", "{ended}");
    settle().await;
    let items = items_of_tenant(&t.tenant_key()).await;
    let texts = t.inbound_texts(&cid).await;
    let late = t.send(&session, "m-late", "are you still there?").await;
    assert_eq!(late["error"]["code"], "session_ended", "{late}");
    println!(
        "bad input {} message after SESSION_END: session_ended",
        p.integration_key()
    );
    settle().await;
    assert_eq!(items_of_tenant(&t.tenant_key()).await, items);
    assert_eq!(t.inbound_texts(&cid).await, texts);
}

macro_rules! bad_input {
    ($module:ident, $platform:expr) => {
        mod $module {
            use super::*;
            #[tokio::test]
            async fn webhook_bad_input_is_refused_and_changes_nothing() {
                super::webhook_bad_input_is_refused_and_changes_nothing($platform).await
            }
            #[tokio::test]
            async fn request_bad_input_is_refused_and_changes_nothing() {
                super::request_bad_input_is_refused_and_changes_nothing($platform).await
            }
        }
    };
}

bad_input!(genesys, Platform::Genesys);
bad_input!(amazon_connect, Platform::AmazonConnect);
bad_input!(zendesk, Platform::Zendesk);
bad_input!(salesforce, Platform::Salesforce);
bad_input!(nice, Platform::Nice);
bad_input!(webex, Platform::Webex);

#[tokio::test]
async fn connect_stream_records() {
    connect_stream_bad_input_is_dropped_and_changes_nothing().await
}
