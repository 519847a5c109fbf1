//! Genesys end to end: the real functions under cargo lambda watch, DynamoDB
//! Local, moto and the Genesys simulator. One scenario per test.

use std::time::Duration;

use e2e::{items_of_tenant, session_id, TestTenant};
use serde_json::{json, Value};

#[tokio::test]
async fn conversation_appears_in_agent_desktop_with_transcript_and_context() {
    let t = TestTenant::new("live").await;
    let (session, cid) = t.handed_off().await;
    let conv = t
        .wait_conversation(&session, "handoff message", |c| {
            !c["messages"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(conv["id"], cid);
    assert_eq!(conv["state"], "queued");
    assert_eq!(conv["customer"]["nickname"], "Ada");
    let attrs = &conv["custom_attributes"];
    assert_eq!(attrs["customer_id"], "C-42");
    assert_eq!(attrs["reason"], "refund");
    assert_eq!(attrs["verified"], "true");
    assert_eq!(attrs["routing_queue"], "billing");
    let first = conv["messages"][0]["text"].as_str().unwrap();
    assert!(
        first.contains("Customer: my parcel arrived broken"),
        "{first}"
    );
    assert!(first.contains("Assistant: Sorry to hear that!"), "{first}");
    let ev = t
        .wait_event(&session, "POLY_AGENT_TRIGGERED_HANDOFF", |_| true)
        .await;
    assert_eq!(ev.seq, 1);
    assert_eq!(ev.data["provider_conversation_id"], cid);
}

#[tokio::test]
async fn repeated_start_returns_the_same_result_and_opens_nothing_new() {
    let t = TestTenant::new("live").await;
    let session = session_id();
    let first = t.start(&session).await;
    let second = t.start(&session).await;
    assert_eq!(first, second);
    let conv = t.conversation(&session).await.unwrap();
    assert_eq!(
        conv["messages"].as_array().unwrap().len(),
        1,
        "handoff sent once"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.types(&session), vec!["POLY_AGENT_TRIGGERED_HANDOFF"]);
}

#[tokio::test]
async fn destination_form_routes_through_tenant_config() {
    let t = TestTenant::new("sandbox").await;
    let session = session_id();
    let mut req = t.start_request(&session);
    let obj = req.as_object_mut().unwrap();
    obj.remove("handoff");
    obj.remove("context");
    obj.insert("destination".into(), json!("billing-desk"));
    obj.insert("data".into(), json!({"customer_id": "C-7"}));
    let started = t.invoke("start-handoff", &req).await;
    assert_eq!(started["status"], "queued", "{started}");
    let conv = t.conversation(&session).await.unwrap();
    assert_eq!(conv["custom_attributes"]["routing_queue"], "billing");
    assert_eq!(conv["custom_attributes"]["customer_id"], "C-7");

    let mut unknown = t.start_request(&session_id());
    let obj = unknown.as_object_mut().unwrap();
    obj.remove("handoff");
    obj.remove("context");
    obj.insert("destination".into(), json!("nowhere"));
    let refused = t.invoke("start-handoff", &unknown).await;
    assert_eq!(refused["error"]["code"], "invalid_request", "{refused}");
}

#[tokio::test]
async fn agent_reply_and_typing_reach_the_widget() {
    let t = TestTenant::new("live").await;
    let (session, cid) = t.accepted().await;
    t.agent(&cid, "typing", json!({})).await;
    t.wait_event(&session, "LIVE_AGENT_TYPING", |_| true).await;
    let sent = t
        .agent(&cid, "messages", json!({"text": "Hi Ada, I can help"}))
        .await;
    let msg = t.wait_event(&session, "LIVE_AGENT_MESSAGE", |_| true).await;
    assert_eq!(msg.data["text"], "Hi Ada, I can help");
    assert_eq!(msg.data["agent"]["display_name"], "Sam");
    assert_eq!(msg.data["message_id"], sent["id"]);
    assert_eq!(
        t.types(&session),
        vec![
            "POLY_AGENT_TRIGGERED_HANDOFF",
            "LIVE_AGENT_JOINED",
            "LIVE_AGENT_TYPING",
            "LIVE_AGENT_MESSAGE"
        ]
    );
}

#[tokio::test]
async fn customer_messages_and_typing_reach_the_agent_once_in_order() {
    let t = TestTenant::new("live").await;
    let (session, _cid) = t.accepted().await;
    let typing = t
        .invoke(
            "outbound-relay",
            &json!({"tenant": t.tenant_json(), "session_id": session, "typing": true}),
        )
        .await;
    assert_eq!(typing["status"], "sent", "{typing}");
    t.wait_conversation(&session, "customer typing", |c| {
        c["customer_typing"] == true
    })
    .await;
    for i in 1..=5 {
        let r = t
            .send(&session, &format!("m-{i}"), &format!("message {i}"))
            .await;
        assert_eq!(r["status"], "sent", "{r}");
    }
    // A retry of m-3 is answered as sent and not sent again.
    let again = t.send(&session, "m-3", "message 3").await;
    assert_eq!(again["duplicate"], true, "{again}");
    let reused = t.send(&session, "m-3", "something else").await;
    assert_eq!(reused["error"]["code"], "invalid_request", "{reused}");
    let conv = t.conversation(&session).await.unwrap();
    let texts: Vec<&str> = conv["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "inbound")
        .skip(1) // the handoff note
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        vec![
            "message 1",
            "message 2",
            "message 3",
            "message 4",
            "message 5"
        ]
    );
    assert_eq!(conv["duplicate_inbound_message_ids"], json!([]));
}

#[tokio::test]
async fn agent_ending_closes_the_widget_and_later_traffic_is_not_delivered() {
    let t = TestTenant::new("live").await;
    let (session, cid) = t.accepted().await;
    t.agent(&cid, "end", json!({})).await;
    let end = t.wait_event(&session, "SESSION_END", |_| true).await;
    assert_eq!(end.data["ended_by"], "agent");
    let after = t.send(&session, "m-late", "are you there?").await;
    assert_eq!(after["error"]["code"], "session_ended", "{after}");
    // A late agent webhook is acknowledged, stored, and never delivered.
    let late = serde_json::to_vec(
        &json!({"id": "late-1", "type": "Text", "text": "one more thing",
        "direction": "Outbound", "originatingEntity": "Human", "conversationId": cid,
        "channel": {"to": {"id": session, "idType": "Opaque"}, "from": {"nickname": "Sam"}}}),
    )
    .unwrap();
    let (status, _) = t
        .post_webhook(&t.webhook_url, &late, Some(t.sign(&late)))
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let types = t.types(&session);
    assert_eq!(types.last().unwrap(), "SESSION_END", "{types:?}");
    assert_eq!(types.iter().filter(|t| *t == "SESSION_END").count(), 1);
}

#[tokio::test]
async fn user_ending_disconnects_the_customer_in_genesys() {
    let t = TestTenant::new("live").await;
    let (session, _cid) = t.accepted().await;
    let ended = t.end(&session).await;
    assert_eq!(ended["status"], "ended", "{ended}");
    assert_eq!(ended["ended_by"], "user");
    t.wait_conversation(&session, "customer disconnected", |c| {
        c["customer_connected"] == false
    })
    .await;
    let end = t.wait_event(&session, "SESSION_END", |_| true).await;
    assert_eq!(end.data["ended_by"], "user");
    // Idempotent: a second end changes nothing and emits nothing.
    let again = t.end(&session).await;
    assert_eq!(again["status"], "ended");
    tokio::time::sleep(Duration::from_secs(2)).await; // customer.end echo from Genesys
    let types = t.types(&session);
    assert_eq!(
        types.iter().filter(|t| *t == "SESSION_END").count(),
        1,
        "{types:?}"
    );
}

#[tokio::test]
async fn agent_leaving_returns_to_queue_and_a_new_agent_joins() {
    let t = TestTenant::new("live").await;
    let (session, cid) = t.accepted().await;
    t.agent(&cid, "transfer", json!({"agent_name": "Kim"}))
        .await;
    let left = t.wait_event(&session, "LIVE_AGENT_LEFT", |_| true).await;
    assert_eq!(left.data["reason"], "transfer");
    t.wait_event(&session, "LIVE_AGENT_JOINED", |e| {
        e.data["agent"]["display_name"] == "Kim"
    })
    .await;
}

#[tokio::test]
async fn duplicate_and_out_of_order_webhooks_lose_and_duplicate_nothing() {
    let t = TestTenant::new("live").await;
    let (session, cid) = t.accepted().await;
    t.faults(json!({"webhook_duplicate_next": 3, "webhook_out_of_order_next": 1}))
        .await;
    let mut sent = Vec::new();
    for i in 1..=4 {
        let r = t
            .agent(&cid, "messages", json!({"text": format!("agent {i}")}))
            .await;
        sent.push(r["id"].as_str().unwrap().to_owned());
    }
    for id in &sent {
        t.wait_event(&session, "LIVE_AGENT_MESSAGE", |e| {
            e.data["message_id"] == id.as_str()
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages: Vec<String> = t
        .events(&session)
        .iter()
        .filter(|e| e.event_type.as_str() == "LIVE_AGENT_MESSAGE")
        .map(|e| e.data["message_id"].as_str().unwrap().to_owned())
        .collect();
    let mut unique = messages.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(messages.len(), 4, "each agent message once: {messages:?}");
    assert_eq!(unique.len(), 4);
}

#[tokio::test]
async fn platform_429_5xx_and_expired_tokens_are_retried_without_duplicates() {
    let t = TestTenant::new("live").await;
    let (session, _cid) = t.accepted().await;
    t.faults(json!({"api_fail_next": {"status": 429, "count": 2}, "retry_after_secs": 1}))
        .await;
    assert_eq!(
        t.send(&session, "r-1", "after 429s").await["status"],
        "sent"
    );
    t.faults(json!({"api_fail_next": {"status": 503, "count": 1}}))
        .await;
    assert_eq!(
        t.send(&session, "r-2", "after a 503").await["status"],
        "sent"
    );
    t.faults(json!({"expire_tokens_now": true})).await;
    assert_eq!(
        t.send(&session, "r-3", "after token expiry").await["status"],
        "sent"
    );
    let conv = t.conversation(&session).await.unwrap();
    let texts: Vec<&str> = conv["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .filter(|s| s.starts_with("after"))
        .collect();
    assert_eq!(
        texts,
        vec!["after 429s", "after a 503", "after token expiry"]
    );
    assert_eq!(conv["duplicate_inbound_message_ids"], json!([]));
}

#[tokio::test]
async fn dropped_socket_reconnects_and_missed_joins_are_reconciled() {
    let t = TestTenant::new("live").await;
    let (session, cid) = t.handed_off().await;
    // Let the poller subscribe, then drop its socket and accept while it is down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    t.faults(json!({"ws_drop_next": true, "lose_next_notification": 1}))
        .await;
    t.agent(&cid, "accept", json!({"agent_name": "Sam"})).await;
    t.wait_event(&session, "LIVE_AGENT_JOINED", |_| true).await;
    t.agent(&cid, "end", json!({})).await;
    t.wait_event(&session, "SESSION_END", |e| e.data["ended_by"] == "agent")
        .await;
}

/// What, URL, body, signature header, expected status.
type BadCase = (&'static str, String, Vec<u8>, Option<String>, u16);

#[tokio::test]
async fn bad_webhooks_are_refused_and_write_nothing() {
    let t = TestTenant::new("live").await;
    let (session, cid) = t.accepted().await;
    let tenant_key = format!("{}/{}/{}", t.account_id, t.project_id, t.client_env);
    let before_items = items_of_tenant(&tenant_key).await;
    let before_events = t.events(&session).len();
    let body = serde_json::to_vec(&json!({"id": "forged-1", "type": "Text", "text": "forged",
        "direction": "Outbound", "conversationId": cid}))
    .unwrap();
    let base = t
        .webhook_url
        .rsplit_once("/webhooks/")
        .unwrap()
        .0
        .to_owned();
    let cases: Vec<BadCase> = vec![
        (
            "missing signature",
            t.webhook_url.clone(),
            body.clone(),
            None,
            401,
        ),
        (
            "wrong secret",
            t.webhook_url.clone(),
            body.clone(),
            Some("sha256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
            401,
        ),
        (
            "truncated signature",
            t.webhook_url.clone(),
            body.clone(),
            Some(t.sign(&body)[..30].to_owned()),
            401,
        ),
        (
            "signature over a re-serialised body",
            t.webhook_url.clone(),
            serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap(),
            Some(t.sign(&body)),
            401,
        ),
        (
            "unknown provider",
            format!("{base}/webhooks/avaya/{tenant_key}"),
            body.clone(),
            Some(t.sign(&body)),
            404,
        ),
        (
            "unknown tenant",
            format!("{base}/webhooks/genesys/nobody/support/live"),
            body.clone(),
            Some(t.sign(&body)),
            404,
        ),
        (
            "wrong client_env",
            format!(
                "{base}/webhooks/genesys/{}/{}/sandbox",
                t.account_id, t.project_id
            ),
            body.clone(),
            Some(t.sign(&body)),
            404,
        ),
        (
            "oversize body",
            t.webhook_url.clone(),
            vec![b' '; 300 * 1024],
            None,
            413,
        ),
        (
            "malformed JSON, correctly signed",
            t.webhook_url.clone(),
            b"{not json".to_vec(),
            Some(t.sign(b"{not json")),
            400,
        ),
    ];
    for (what, url, body, sig, want) in cases {
        let (status, answer) = t.post_webhook(&url, &body, sig).await;
        assert_eq!(status, want, "{what}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{what}: {answer}");
    }
    assert_eq!(
        items_of_tenant(&tenant_key).await,
        before_items,
        "nothing written"
    );
    assert_eq!(t.events(&session).len(), before_events, "nothing delivered");
    // The same body, signed right, is accepted once and a replay is a duplicate.
    let (status, first) = t
        .post_webhook(&t.webhook_url, &body, Some(t.sign(&body)))
        .await;
    assert_eq!(
        (status, first["stored"].as_u64()),
        (200, Some(1)),
        "{first}"
    );
    let (status, replay) = t
        .post_webhook(&t.webhook_url, &body, Some(t.sign(&body)))
        .await;
    assert_eq!(
        (status, replay["duplicates"].as_u64()),
        (200, Some(1)),
        "{replay}"
    );
}

#[tokio::test]
async fn another_tenants_session_is_not_found() {
    let a = TestTenant::new("live").await;
    let b = TestTenant::new("live").await;
    let (session, _) = a.handed_off().await;
    let r = b.send(&session, "m-1", "hello").await;
    assert_eq!(r["error"]["code"], "session_not_found", "{r}");
    let r = b.end(&session).await;
    assert_eq!(r["error"]["code"], "session_not_found", "{r}");
}

#[tokio::test]
async fn failed_pushes_are_retried_until_the_runtime_accepts() {
    let t = TestTenant::new("live").await;
    t.received.lock().unwrap().fail_next = 4;
    let (session, cid) = t.handed_off().await;
    t.agent(&cid, "accept", json!({"agent_name": "Sam"})).await;
    t.agent(&cid, "messages", json!({"text": "still there?"}))
        .await;
    t.wait_event(&session, "LIVE_AGENT_MESSAGE", |_| true).await;
    assert_eq!(
        t.types(&session),
        vec![
            "POLY_AGENT_TRIGGERED_HANDOFF",
            "LIVE_AGENT_JOINED",
            "LIVE_AGENT_MESSAGE"
        ]
    );
}

#[tokio::test]
async fn invalid_requests_are_refused_before_anything_is_written() {
    let t = TestTenant::new("live").await;
    let session = session_id();
    let mut two = t.start_request(&session);
    two["handoff"]["text_chat"] = json!({"genesys_integration": {}, "zendesk_integration": {}});
    assert_eq!(
        t.invoke("start-handoff", &two).await["error"]["code"],
        "invalid_request"
    );
    let mut none = t.start_request(&session);
    none["handoff"]["text_chat"] = json!({});
    assert_eq!(
        t.invoke("start-handoff", &none).await["error"]["code"],
        "invalid_request"
    );
    let mut unconfigured = t.start_request(&session);
    unconfigured["handoff"]["text_chat"] = json!({"zendesk_integration": {}});
    let r = t.invoke("start-handoff", &unconfigured).await;
    assert!(
        matches!(
            r["error"]["code"].as_str(),
            Some("unknown_integration" | "not_configured")
        ),
        "{r}"
    );
    let empty = t.send(&session, "m", "").await;
    assert_eq!(empty["error"]["code"], "invalid_request");
    let huge = t.send(&session, "m", &"x".repeat(5000)).await;
    assert_eq!(huge["error"]["code"], "invalid_request");
    let tenant_key = format!("{}/{}/{}", t.account_id, t.project_id, t.client_env);
    assert_eq!(items_of_tenant(&tenant_key).await, 0);
    assert!(t.conversation(&session).await.is_none());
}
