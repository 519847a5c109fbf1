//! Platform outages, for every platform: customer messages sent while the
//! platform is down are queued (answered `queued`, never dropped) and reach
//! the agent once each, in order, when it is back; a handoff the platform
//! cannot open within the tenant's start retry budget ends with a clear
//! `SESSION_END`; one that opens late opens once.
//!
//! `OUTAGE_SECS` sets how long the platform is down in the message test
//! (default 4, so CI stays quick; `OUTAGE_SECS=60` is the one-minute run).

use std::time::{Duration, Instant};

use e2e::{inbound_texts_of, session_id, Platform, TestTenant};
use serde_json::{json, Value};

fn outage() -> Duration {
    let secs = std::env::var("OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(4.0);
    Duration::from_secs_f64(secs)
}

/// Longest wait for a queue to drain after the platform is back: the
/// deferred queue's next due time (at most 30 s) plus a send round.
const DRAIN_GRACE: Duration = Duration::from_secs(60);

/// The customer texts of our test that reached the platform, in order.
fn ours(conv: &Value) -> Vec<String> {
    inbound_texts_of(conv)
        .into_iter()
        .filter(|m| m.starts_with("msg "))
        .collect()
}

async fn down(t: &TestTenant, secs: f64) {
    t.faults(json!({"api_down_for_secs": secs})).await;
}

/// Waits until the platform conversation holds `want` of our texts (or the deadline).
async fn wait_texts(t: &TestTenant, cid: &str, want: usize, deadline: Instant) -> Value {
    loop {
        let conv = t.conversation_by_id(cid).await.unwrap_or(Value::Null);
        if ours(&conv).len() >= want || Instant::now() > deadline {
            return conv;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn messages_queue_through_an_outage_and_arrive_once_in_order(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let (session, cid) = t.accepted().await;
    let r = t.send(&session, "m-0", "msg 0 before").await;
    assert_eq!(r["status"], "sent", "{r}");

    let window = outage();
    let back_at = Instant::now() + window;
    down(&t, window.as_secs_f64()).await;
    let first = t.send(&session, "m-1", "msg 1 during").await;
    assert_eq!(first["status"], "queued", "{first}");
    assert_eq!(first["reason"], "provider_unavailable", "{first}");
    for i in 2..=4 {
        let r = t
            .send(&session, &format!("m-{i}"), &format!("msg {i} during"))
            .await;
        assert_eq!(r["status"], "queued", "{r}");
        assert_eq!(r["duplicate"], false, "{r}");
    }
    let again = t.send(&session, "m-2", "msg 2 during").await;
    assert_eq!(
        (again["status"].as_str(), again["duplicate"].as_bool()),
        (Some("queued"), Some(true)),
        "{again}"
    );
    let reused = t.send(&session, "m-3", "other text").await;
    assert_eq!(reused["error"]["code"], "invalid_request", "{reused}");
    // Nothing reached the platform while it was down.
    let conv = t.conversation_by_id(&cid).await.unwrap();
    assert_eq!(ours(&conv), vec!["msg 0 before"]);

    tokio::time::sleep(back_at.saturating_duration_since(Instant::now())).await;
    // Up again, queue possibly not drained yet: the next message keeps its place.
    let after = t.send(&session, "m-5", "msg 5 after").await;
    assert!(
        after["status"] == "queued" || after["status"] == "sent",
        "{after}"
    );
    let conv = wait_texts(&t, &cid, 6, Instant::now() + DRAIN_GRACE).await;
    println!(
        "outage {} {:.0} s: queue drained {} ms after the platform came back",
        p.integration_key(),
        window.as_secs_f64(),
        back_at.elapsed().as_millis()
    );
    assert_eq!(
        ours(&conv),
        vec![
            "msg 0 before",
            "msg 1 during",
            "msg 2 during",
            "msg 3 during",
            "msg 4 during",
            "msg 5 after"
        ],
        "every message once, in the order sent"
    );
    assert_eq!(conv["duplicate_inbound_message_ids"], json!([]));
    let late = t.send(&session, "m-4", "msg 4 during").await;
    assert_eq!(
        (late["status"].as_str(), late["duplicate"].as_bool()),
        (Some("sent"), Some(true)),
        "a drained message answers sent: {late}"
    );
}

async fn a_handoff_the_platform_cannot_open_in_time_ends_clearly(p: Platform) {
    let budget = 3;
    let t = TestTenant::with_runtime(p, "live", json!({"start_retry_secs": budget})).await;
    // Down well past the budget; put back up at the end.
    down(&t, 300.0).await;
    let session = session_id();
    let started = t.start(&session).await;
    assert_eq!(started["status"], "pending", "{started}");
    assert!(started["provider_conversation_id"].is_null(), "{started}");
    let queued = t.send(&session, "m-1", "msg 1 while pending").await;
    assert_eq!(queued["status"], "queued", "{queued}");
    assert_eq!(queued["reason"], "handoff_pending", "{queued}");

    let end = t.wait_event(&session, "SESSION_END", |_| true).await;
    assert_eq!(end.data["ended_by"], "system", "{:?}", end.data);
    assert_eq!(end.data["reason"], "handoff_failed", "{:?}", end.data);
    assert_eq!(
        end.data["error_code"], "provider_unavailable",
        "{:?}",
        end.data
    );
    assert_eq!(t.types(&session), vec!["SESSION_END"]);

    down(&t, 0.0).await;
    let again = t.start(&session).await;
    assert_eq!(again["error"]["code"], "session_ended", "{again}");
    let late = t.send(&session, "m-2", "msg 2 after the end").await;
    assert_eq!(late["error"]["code"], "session_ended", "{late}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.conversations().await.len(), 0, "nothing was opened");
    assert_eq!(t.types(&session), vec!["SESSION_END"]);
}

async fn a_handoff_opened_after_a_short_outage_opens_once(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let window = outage();
    let back_at = Instant::now() + window;
    down(&t, window.as_secs_f64()).await;
    let session = session_id();
    let started = t.start(&session).await;
    assert_eq!(started["status"], "pending", "{started}");
    for i in 1..=2 {
        let r = t
            .send(&session, &format!("m-{i}"), &format!("msg {i} pending"))
            .await;
        assert_eq!(r["status"], "queued", "{r}");
    }
    let repeated = t.start(&session).await;
    assert!(
        repeated["status"] == "pending"
            || repeated["status"] == "queued"
            || repeated["error"]["code"] == "conflict",
        "{repeated}"
    );

    // The poller's next try after the window: at most its 30 s backoff away.
    tokio::time::sleep(back_at.saturating_duration_since(Instant::now())).await;
    let deadline = Instant::now() + DRAIN_GRACE;
    let opened = loop {
        let found = t
            .events(&session)
            .into_iter()
            .find(|e| e.event_type.as_str() == "POLY_AGENT_TRIGGERED_HANDOFF");
        match found {
            Some(e) => break e,
            None if Instant::now() > deadline => {
                panic!("never opened; events {:?}", t.types(&session))
            }
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let cid = opened.data["provider_conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    println!(
        "outage {} {:.0} s: handoff opened {} ms after the platform came back",
        p.integration_key(),
        window.as_secs_f64(),
        back_at.elapsed().as_millis()
    );
    let conv = wait_texts(&t, &cid, 2, Instant::now() + DRAIN_GRACE).await;
    assert_eq!(ours(&conv), vec!["msg 1 pending", "msg 2 pending"]);
    let last = t.start(&session).await;
    assert_eq!(last["provider_conversation_id"], cid.as_str(), "{last}");
    assert_eq!(
        t.conversations().await.len(),
        1,
        "one conversation on the platform"
    );
    assert_eq!(
        t.types(&session)
            .iter()
            .filter(|t| *t == "POLY_AGENT_TRIGGERED_HANDOFF")
            .count(),
        1
    );
}

macro_rules! outage {
    ($module:ident, $platform:expr) => {
        mod $module {
            use super::*;
            const P: Platform = $platform;
            #[tokio::test]
            async fn messages_queue_through_an_outage_and_arrive_once_in_order() {
                super::messages_queue_through_an_outage_and_arrive_once_in_order(P).await
            }
            #[tokio::test]
            async fn a_handoff_the_platform_cannot_open_in_time_ends_clearly() {
                super::a_handoff_the_platform_cannot_open_in_time_ends_clearly(P).await
            }
            #[tokio::test]
            async fn a_handoff_opened_after_a_short_outage_opens_once() {
                super::a_handoff_opened_after_a_short_outage_opens_once(P).await
            }
        }
    };
}

outage!(genesys, Platform::Genesys);
outage!(amazon_connect, Platform::AmazonConnect);
outage!(zendesk, Platform::Zendesk);
outage!(salesforce, Platform::Salesforce);
outage!(nice, Platform::Nice);
outage!(webex, Platform::Webex);
