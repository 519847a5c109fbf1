//! The provider conformance suite: the same verify list for every platform,
//! against its simulator and the real local stack. A platform is one adapter
//! module plus one simulator that pass it. Capabilities a platform lacks are
//! printed as NOT SUPPORTED and checked to emit nothing, never skipped silently.

use std::time::Duration;

use e2e::{
    assert_gap_free, inbound_texts_of, items_text_of_tenant, session_id, stack_log, verdict,
    Platform, TestTenant,
};
use serde_json::json;

async fn conversation_appears_with_transcript_and_context(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let (session, cid) = t.handed_off().await;
    let conv = t
        .wait_conversation_id(&cid, "the transcript", |c| {
            inbound_texts_of(c)
                .iter()
                .any(|m| m.contains("Customer: my parcel arrived broken"))
        })
        .await;
    let context = conv["context"].to_string();
    assert!(
        context.contains("C-42"),
        "customer id handed over: {context}"
    );
    assert!(context.contains("refund"), "reason handed over: {context}");
    assert!(inbound_texts_of(&conv)
        .iter()
        .any(|m| m.contains("Assistant: Sorry to hear that!")));
    let ev = t
        .wait_event(&session, "POLY_AGENT_TRIGGERED_HANDOFF", |_| true)
        .await;
    assert_eq!(ev.seq, 1);
    assert_eq!(ev.data["provider_conversation_id"], cid);
}

async fn repeated_start_opens_nothing_new(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let session = session_id();
    let first = t.start(&session).await;
    let second = t.start(&session).await;
    assert_eq!(first, second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        t.conversations().await.len(),
        1,
        "one conversation on the platform"
    );
    assert_eq!(t.types(&session), vec!["POLY_AGENT_TRIGGERED_HANDOFF"]);
}

async fn agent_joins_types_and_replies(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let caps = p.capabilities();
    verdict(p, "agent_joined", caps.agent_joined);
    let (session, cid) = t.accepted().await;
    verdict(p, "agent_typing", caps.agent_typing);
    if caps.agent_typing {
        t.agent(&cid, "typing", json!({})).await;
        t.wait_event(&session, "LIVE_AGENT_TYPING", |_| true).await;
    }
    let sent = t
        .agent(&cid, "messages", json!({"text": "Hi Ada, I can help"}))
        .await;
    let msg = t
        .wait_event(&session, "LIVE_AGENT_MESSAGE", |e| {
            e.data["text"] == "Hi Ada, I can help"
        })
        .await;
    assert_eq!(msg.data["message_id"], sent["id"]);
    let types = t.types(&session);
    assert_eq!(
        types.iter().filter(|t| *t == "LIVE_AGENT_JOINED").count(),
        1,
        "{types:?}"
    );
    if !caps.agent_typing {
        assert!(
            !types.iter().any(|t| t == "LIVE_AGENT_TYPING"),
            "nothing invented: {types:?}"
        );
    }
}

async fn customer_messages_and_typing_reach_the_agent_once_in_order(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let (session, cid) = t.accepted().await;
    let caps = p.capabilities();
    verdict(p, "customer_typing", caps.customer_typing);
    let typing = t
        .invoke(
            "outbound-relay",
            &json!({"tenant": t.tenant_json(), "session_id": session, "typing": true}),
        )
        .await;
    if caps.customer_typing {
        assert_eq!(typing["status"], "sent", "{typing}");
        t.wait_conversation_id(&cid, "customer typing", |c| c["customer_typing"] == true)
            .await;
    } else {
        assert_eq!(typing["status"], "not_supported", "{typing}");
    }
    for i in 1..=4 {
        let r = t
            .send(&session, &format!("m-{i}"), &format!("message {i}"))
            .await;
        assert_eq!(r["status"], "sent", "{r}");
    }
    let again = t.send(&session, "m-2", "message 2").await;
    assert_eq!(again["duplicate"], true, "{again}");
    let reused = t.send(&session, "m-2", "something else").await;
    assert_eq!(reused["error"]["code"], "invalid_request", "{reused}");
    let conv = t.conversation_by_id(&cid).await.unwrap();
    let texts: Vec<String> = inbound_texts_of(&conv)
        .into_iter()
        .filter(|m| m.starts_with("message "))
        .collect();
    assert_eq!(
        texts,
        vec!["message 1", "message 2", "message 3", "message 4"]
    );
    assert_eq!(conv["duplicate_inbound_message_ids"], json!([]));
}

async fn agent_transfer_is_left_then_joined(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    verdict(p, "agent_left", p.capabilities().agent_left);
    let (session, cid) = t.accepted().await;
    t.agent(&cid, "transfer", json!({"agent_name": "Kim"}))
        .await;
    if !p.capabilities().agent_joined {
        t.agent(&cid, "messages", json!({"text": "Kim here"})).await;
    }
    let left = t.wait_event(&session, "LIVE_AGENT_LEFT", |_| true).await;
    t.wait_event(&session, "LIVE_AGENT_JOINED", |e| {
        e.seq > left.seq
            && e.data["agent"]["display_name"]
                .as_str()
                .unwrap_or_default()
                .contains("Kim")
    })
    .await;
}

async fn agent_end_closes_the_widget(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let (session, cid) = t.accepted().await;
    t.agent(&cid, "end", json!({})).await;
    let end = t.wait_event(&session, "SESSION_END", |_| true).await;
    assert_eq!(end.data["ended_by"], "agent");
    let after = t.send(&session, "m-late", "are you there?").await;
    assert_eq!(after["error"]["code"], "session_ended", "{after}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let types = t.types(&session);
    assert_eq!(
        types.last().map(String::as_str),
        Some("SESSION_END"),
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "SESSION_END").count(),
        1,
        "{types:?}"
    );
}

/// The user ends: answered as ended by the user, the customer is
/// disconnected on the platform, and the widget gets `SESSION_END`.
async fn user_ends_on_both_sides(t: &TestTenant, session: &str, cid: &str) {
    let ended = t.end(session).await;
    assert_eq!(
        (ended["status"].as_str(), ended["ended_by"].as_str()),
        (Some("ended"), Some("user")),
        "{ended}"
    );
    t.wait_conversation_id(cid, "customer disconnected", |c| {
        c["customer_connected"] == false
    })
    .await;
    let end = t.wait_event(session, "SESSION_END", |_| true).await;
    assert_eq!(end.data["ended_by"], "user");
}

async fn user_end_closes_on_the_platform(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let (session, cid) = t.accepted().await;
    user_ends_on_both_sides(&t, &session, &cid).await;
    assert_eq!(t.end(&session).await["status"], "ended", "idempotent");
    tokio::time::sleep(Duration::from_secs(2)).await; // the platform's echo of our end
    let types = t.types(&session);
    assert_eq!(
        types.iter().filter(|t| *t == "SESSION_END").count(),
        1,
        "{types:?}"
    );
}

/// The platform answers 429 to every call until the relay's retries run out:
/// the end fails (the runtime retries it) and nothing reads as ended, on
/// either side, until the platform has really closed the conversation.
async fn a_user_end_the_platform_refuses_is_not_reported_ended(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let (session, cid) = t.accepted().await;
    t.faults(json!({"api_429_for_secs": 60})).await;
    let request = json!({"tenant": t.tenant_json(), "session_id": session,
        "reason": "USER_END_SESSION"});
    let refused = t.try_invoke("end-session", &request).await.unwrap();
    t.faults(json!({"api_429_for_secs": 0})).await;
    assert_eq!(
        refused["error"]["code"], "provider_unavailable",
        "{refused}"
    );
    assert!(!t.types(&session).iter().any(|e| e == "SESSION_END"));
    let conv = t.conversation_by_id(&cid).await.unwrap();
    assert_ne!(conv["customer_connected"], false, "{conv}");
    // The runtime's retry, once the platform answers again.
    user_ends_on_both_sides(&t, &session, &cid).await;
}

async fn platform_faults_are_retried_without_duplicates(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let (session, cid) = t.accepted().await;
    t.faults(json!({"api_fail_next": {"status": 429, "count": 2}}))
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
    if p != Platform::Zendesk {
        // Zendesk uses Basic auth: no token to expire.
        t.faults(json!({"expire_tokens_now": true})).await;
    }
    assert_eq!(
        t.send(&session, "r-3", "after token expiry").await["status"],
        "sent"
    );
    assert_eq!(
        t.send(&session, "r-4", "and once more").await["status"],
        "sent"
    );
    let conv = t.conversation_by_id(&cid).await.unwrap();
    let texts: Vec<String> = inbound_texts_of(&conv)
        .into_iter()
        .filter(|m| m.starts_with("after") || m.starts_with("and once"))
        .collect();
    assert_eq!(
        texts,
        vec![
            "after 429s",
            "after a 503",
            "after token expiry",
            "and once more"
        ]
    );
    assert_eq!(conv["duplicate_inbound_message_ids"], json!([]));
}

async fn duplicate_and_reordered_deliveries_lose_and_duplicate_nothing(p: Platform) {
    let t = TestTenant::on(p, "live").await;
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
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ids: Vec<String> = t
        .events(&session)
        .iter()
        .filter(|e| e.event_type.as_str() == "LIVE_AGENT_MESSAGE")
        .filter_map(|e| e.data["message_id"].as_str().map(str::to_owned))
        .filter(|id| sent.contains(id))
        .collect();
    assert_eq!(ids.len(), 4, "each agent message exactly once: {ids:?}");
}

/// Ids of the agent messages the widget got, in `seq` order, among `sent`.
fn agent_message_ids(t: &TestTenant, session: &str, sent: &[String]) -> Vec<String> {
    t.events(session)
        .iter()
        .filter(|e| e.event_type.as_str() == "LIVE_AGENT_MESSAGE")
        .filter_map(|e| e.data["message_id"].as_str().map(str::to_owned))
        .filter(|id| sent.contains(id))
        .collect()
}

/// Agent messages `1..=n`; the platform's ids in send order.
async fn agent_sends(t: &TestTenant, cid: &str, n: usize) -> Vec<String> {
    let mut sent = Vec::new();
    for i in 1..=n {
        let r = t
            .agent(cid, "messages", json!({"text": format!("agent {i}")}))
            .await;
        sent.push(r["id"].as_str().unwrap().to_owned());
        // Platform times are in ms: two sends within one ms tie, and ties
        // keep arrival order. No agent types that fast.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sent
}

/// Three agent messages, the first delivered after the second: the widget
/// gets them in the platform's order.
async fn first_delivered_after_second_still_goes_first(t: &TestTenant, session: &str, cid: &str) {
    t.faults(json!({"webhook_out_of_order_next": 1})).await;
    let sent = agent_sends(t, cid, 3).await;
    for id in &sent {
        t.wait_event(session, "LIVE_AGENT_MESSAGE", |e| {
            e.data["message_id"] == id.as_str()
        })
        .await;
    }
    assert_eq!(agent_message_ids(t, session, &sent), sent);
}

async fn held_back_deliveries_reach_the_widget_in_the_platforms_order(p: Platform) {
    let t = TestTenant::with_runtime(p, "live", json!({"agent_reorder_window_ms": 1500})).await;
    let (session, cid) = t.accepted().await;
    first_delivered_after_second_still_goes_first(&t, &session, &cid).await;
    assert_gap_free(&t.events(&session));
}

/// The agent's first message is overtaken by the second, which then implies
/// the join (Zendesk has no join signal; elsewhere the signal may come later):
/// the widget still gets the join first, then the messages in the platform's order.
async fn an_agents_first_messages_keep_their_order_behind_an_implied_join(p: Platform) {
    let t = TestTenant::with_runtime(p, "live", json!({"agent_reorder_window_ms": 1500})).await;
    let (session, cid) = t.handed_off().await;
    t.agent(&cid, "accept", json!({"agent_name": "Sam"})).await;
    first_delivered_after_second_still_goes_first(&t, &session, &cid).await;
    let events = t.events(&session);
    let seq_of = |ty: &str| {
        events
            .iter()
            .find(|e| e.event_type.as_str() == ty)
            .unwrap_or_else(|| panic!("no {ty}: {events:?}"))
            .seq
    };
    assert!(
        seq_of("LIVE_AGENT_JOINED") < seq_of("LIVE_AGENT_MESSAGE"),
        "join first: {events:?}"
    );
    assert_gap_free(&events);
}

async fn an_end_releases_held_messages_before_session_end(p: Platform) {
    // A window far longer than the test waits: only the end can release them.
    let t = TestTenant::with_runtime(p, "live", json!({"agent_reorder_window_ms": 10_000})).await;
    let (session, cid) = t.accepted().await;
    let sent = agent_sends(&t, &cid, 2).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // All of these: the session may hold others too.
    loop {
        let held = t.held_ids(&session).await;
        if sent.iter().all(|id| held.contains(id)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never all held: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        agent_message_ids(&t, &session, &sent).is_empty(),
        "held, not delivered"
    );
    t.end(&session).await;
    let end = t.wait_event(&session, "SESSION_END", |_| true).await;
    let events = t.events(&session);
    assert_eq!(agent_message_ids(&t, &session, &sent), sent);
    let last_message = events
        .iter()
        .filter(|e| e.event_type.as_str() == "LIVE_AGENT_MESSAGE")
        .map(|e| e.seq)
        .max()
        .unwrap();
    assert!(
        last_message < end.seq,
        "messages before SESSION_END: {events:?}"
    );
    assert_gap_free(&events);
}

async fn failed_pushes_are_retried_until_the_runtime_accepts(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    t.received.lock().unwrap().fail_next = 4;
    let (session, _cid) = t.accepted().await;
    let types = t.types(&session);
    assert_eq!(types[0], "POLY_AGENT_TRIGGERED_HANDOFF");
    assert!(types.contains(&"LIVE_AGENT_JOINED".to_owned()));
}

async fn another_tenants_session_is_not_found(p: Platform) {
    let a = TestTenant::on(p, "live").await;
    let b = TestTenant::on(p, "live").await;
    let (session, _) = a.handed_off().await;
    assert_eq!(
        b.send(&session, "m-1", "hello").await["error"]["code"],
        "session_not_found"
    );
    assert_eq!(b.end(&session).await["error"]["code"], "session_not_found");
}

async fn secrets_never_reach_logs_events_or_the_table(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let (session, cid) = t.accepted().await;
    assert_eq!(
        t.send(&session, "c-1", "a customer line").await["status"],
        "sent"
    );
    t.agent(&cid, "messages", json!({"text": "an agent line"}))
        .await;
    t.wait_event(&session, "LIVE_AGENT_MESSAGE", |e| {
        e.data["text"] == "an agent line"
    })
    .await;
    // A forged webhook is logged as rejected: the log line must not carry secrets either.
    let _ = t
        .post_webhook(
            &t.webhook_url,
            b"{\"forged\":true}",
            Some("sha256=AAAA".into()),
        )
        .await;
    assert_eq!(t.end(&session).await["status"], "ended");
    t.wait_event(&session, "SESSION_END", |_| true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = stack_log();
    let items = items_text_of_tenant(&format!(
        "{}/{}/{}",
        t.account_id, t.project_id, t.client_env
    ))
    .await;
    assert!(
        items.contains(&session),
        "the scan reads this tenant's items"
    );
    let events = format!("{:?}", t.received.lock().unwrap().deliveries);
    for canary in &t.canaries {
        assert!(!canary.is_empty());
        assert!(
            !logs.contains(canary.as_str()),
            "a secret value reached the logs"
        );
        assert!(
            !items.contains(canary.as_str()),
            "a secret value reached a stored item"
        );
        assert!(
            !events.contains(canary.as_str()),
            "a secret value reached a client event"
        );
    }
}

macro_rules! conformance {
    ($module:ident, $platform:expr) => {
        mod $module {
            use super::*;
            const P: Platform = $platform;
            #[tokio::test]
            async fn conversation_appears_with_transcript_and_context() {
                super::conversation_appears_with_transcript_and_context(P).await
            }
            #[tokio::test]
            async fn repeated_start_opens_nothing_new() {
                super::repeated_start_opens_nothing_new(P).await
            }
            #[tokio::test]
            async fn agent_joins_types_and_replies() {
                super::agent_joins_types_and_replies(P).await
            }
            #[tokio::test]
            async fn customer_messages_and_typing_reach_the_agent_once_in_order() {
                super::customer_messages_and_typing_reach_the_agent_once_in_order(P).await
            }
            #[tokio::test]
            async fn agent_transfer_is_left_then_joined() {
                super::agent_transfer_is_left_then_joined(P).await
            }
            #[tokio::test]
            async fn agent_end_closes_the_widget() {
                super::agent_end_closes_the_widget(P).await
            }
            #[tokio::test]
            async fn user_end_closes_on_the_platform() {
                super::user_end_closes_on_the_platform(P).await
            }
            #[tokio::test]
            async fn a_user_end_the_platform_refuses_is_not_reported_ended() {
                super::a_user_end_the_platform_refuses_is_not_reported_ended(P).await
            }
            #[tokio::test]
            async fn platform_faults_are_retried_without_duplicates() {
                super::platform_faults_are_retried_without_duplicates(P).await
            }
            #[tokio::test]
            async fn duplicate_and_reordered_deliveries_lose_and_duplicate_nothing() {
                super::duplicate_and_reordered_deliveries_lose_and_duplicate_nothing(P).await
            }
            #[tokio::test]
            async fn held_back_deliveries_reach_the_widget_in_the_platforms_order() {
                super::held_back_deliveries_reach_the_widget_in_the_platforms_order(P).await
            }
            #[tokio::test]
            async fn an_agents_first_messages_keep_their_order_behind_an_implied_join() {
                super::an_agents_first_messages_keep_their_order_behind_an_implied_join(P).await
            }
            #[tokio::test]
            async fn an_end_releases_held_messages_before_session_end() {
                super::an_end_releases_held_messages_before_session_end(P).await
            }
            #[tokio::test]
            async fn failed_pushes_are_retried_until_the_runtime_accepts() {
                super::failed_pushes_are_retried_until_the_runtime_accepts(P).await
            }
            #[tokio::test]
            async fn secrets_never_reach_logs_events_or_the_table() {
                super::secrets_never_reach_logs_events_or_the_table(P).await
            }
            #[tokio::test]
            async fn another_tenants_session_is_not_found() {
                super::another_tenants_session_is_not_found(P).await
            }
        }
    };
}

conformance!(genesys, Platform::Genesys);
conformance!(amazon_connect, Platform::AmazonConnect);
conformance!(zendesk, Platform::Zendesk);
conformance!(salesforce, Platform::Salesforce);
conformance!(nice, Platform::Nice);
conformance!(webex, Platform::Webex);
