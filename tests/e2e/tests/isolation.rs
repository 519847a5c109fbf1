//! Environments of one account never serve each other: a handoff opens on
//! its own environment's integration, sessions are not visible across
//! environments, and one environment's webhook credentials (or Connect
//! topic) are refused on another's route. Checked for every platform.

use std::time::Duration;

use e2e::{items_of_tenant, items_text_of_tenant, sns_event, Platform, TestTenant};
use serde_json::json;

async fn credentials_of_one_environment_never_serve_another(p: Platform) {
    let live = TestTenant::on(p, "live").await;
    let sandbox = live.sibling("sandbox").await;
    assert_eq!(live.account_id, sandbox.account_id);

    // The sandbox handoff opens on the sandbox integration only.
    let (session, cid) = sandbox.accepted().await;
    assert_eq!(sandbox.conversations().await.len(), 1);
    assert!(
        live.conversations().await.is_empty(),
        "a sandbox handoff opened on the live integration"
    );
    assert_eq!(items_of_tenant(&live.tenant_key()).await, 0);

    // Live cannot reach the sandbox session, by id or by ending it.
    let texts = sandbox.inbound_texts(&cid).await;
    for answer in [
        live.send(&session, "m-1", "hello from live").await,
        live.end(&session).await,
    ] {
        assert_eq!(answer["error"]["code"], "session_not_found", "{answer}");
    }
    assert_eq!(sandbox.inbound_texts(&cid).await, texts);

    // Live's webhook credentials (or topic) do not speak for sandbox.
    let before = sandbox.events(&session).len();
    if p.has_webhooks() {
        let w = sandbox
            .agent_webhook(&session, &cid, "iso-1", "forged with live's secret")
            .await
            .unwrap();
        let forged = e2e::Webhook {
            credential: live.webhook_credential(&w.body).await,
            ..w.clone()
        };
        let (status, answer) = sandbox.post(&forged).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (401, Some("unauthenticated")),
            "{answer}"
        );
        let (status, answer) = sandbox.post(&w).await;
        assert!((200..300).contains(&status), "{status} {answer}");
        sandbox
            .wait_event(&session, "LIVE_AGENT_MESSAGE", |e| {
                e.data["text"] == "forged with live's secret"
            })
            .await;
    } else if p == Platform::AmazonConnect {
        let item = json!({"Id": "iso-1", "InitialContactId": cid, "ContactId": cid,
            "Type": "MESSAGE", "ContentType": "text/plain", "ParticipantRole": "AGENT",
            "DisplayName": "Sam", "Content": "from live's topic"})
        .to_string();
        let answer = sandbox
            .invoke("inbound-webhook", &sns_event(&live.stream_topic, &item))
            .await;
        assert_eq!(answer["report"]["rejected"], 1, "{answer}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(sandbox.events(&session).len(), before);
    }

    // Nothing of one environment's secrets is stored under the other's keys.
    let stored = items_text_of_tenant(&sandbox.tenant_key()).await;
    for canary in &live.canaries {
        assert!(
            !stored.contains(canary.as_str()),
            "live secret in sandbox items"
        );
    }
}

macro_rules! isolation {
    ($module:ident, $platform:expr) => {
        #[tokio::test]
        async fn $module() {
            credentials_of_one_environment_never_serve_another($platform).await
        }
    };
}

isolation!(genesys, Platform::Genesys);
isolation!(amazon_connect, Platform::AmazonConnect);
isolation!(zendesk, Platform::Zendesk);
isolation!(salesforce, Platform::Salesforce);
isolation!(nice, Platform::Nice);
isolation!(webex, Platform::Webex);
