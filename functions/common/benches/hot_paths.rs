//! Hot paths of a relayed turn, per 4 KiB message: webhook verify + parse +
//! map for each platform, client event serialisation + signing, and request
//! validation. `cargo bench -p handoff-common` prints the numbers; no timed
//! assertions anywhere.

use std::hint::black_box;

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use handoff_common::domain::{ClientEnv, IntegrationKey, SessionId, SessionState, Tenant};
use handoff_common::events::{ClientEvent, ClientEventType};
use handoff_common::providers::amazon_connect::events as connect_events;
use handoff_common::providers::genesys::{api::GenesysCredentials, webhook as genesys_webhook};
use handoff_common::providers::nice::{api::NiceCredentials, webhook as nice_webhook};
use handoff_common::providers::salesforce::events as sf_events;
use handoff_common::providers::webex::{api::WebexCredentials, webhook as webex_webhook};
use handoff_common::providers::zendesk::{api::ZendeskCredentials, webhook as zendesk_webhook};
use handoff_common::providers::WebhookRequest;
use handoff_common::request::{OutboundRelayRequest, StartHandoffRequest};
use handoff_common::service::inbound::decide;
use handoff_common::signature::{hmac_sha256, sign_client_event};
use handoff_common::store::SessionRecord;
use serde_json::json;
use std::collections::HashMap;

/// A 4 KiB message text.
fn text_4k() -> String {
    "Hi Ada, I can help with that order. ".repeat(4096 / 36 + 1)[..4096].to_owned()
}

fn session() -> SessionRecord {
    let mut s = SessionRecord::new(
        Tenant::new("acme", "support", ClientEnv::Live).unwrap(),
        SessionId::parse("conv-8f2c").unwrap(),
        IntegrationKey::Genesys,
        json!({}),
    );
    s.state = SessionState::Active;
    s.provider_data = json!({"agent": {"id": "u7", "display_name": "Sam"}});
    s
}

fn webhooks(c: &mut Criterion) {
    let text = text_4k();
    let mut group = c.benchmark_group("webhook verify+parse+map (4 KiB)");
    group.throughput(Throughput::Bytes(4096));
    let s = session();

    let secret = "genesys-webhook-secret-0123456789";
    let creds: GenesysCredentials =
        serde_json::from_value(json!({"region_domain": "mypurecloud.com",
        "client_id": "c", "client_secret": "s", "integration_id": "i", "webhook_secret": secret}))
        .unwrap();
    let body = serde_json::to_vec(&json!({"id": "8085cbb3f778", "type": "Text", "text": text,
        "direction": "Outbound", "originatingEntity": "Human", "conversationId": "1734d888",
        "channel": {"to": {"id": "conv-8f2c", "idType": "Opaque"}, "from": {"nickname": "Sam"}}}))
    .unwrap();
    let sig = format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(hmac_sha256(secret.as_bytes(), &body))
    );
    group.bench_function("genesys", |b| {
        b.iter(|| {
            genesys_webhook::authenticate(&creds, Some(&sig), black_box(&body)).unwrap();
            let ev = genesys_webhook::parse(black_box(&body)).unwrap();
            black_box(decide(&s, &ev[0].kind, true))
        })
    });

    let zcreds: ZendeskCredentials =
        serde_json::from_value(json!({"base_url": "http://x/sc", "app_id": "a",
        "key_id": "k", "key_secret": "s", "webhook_secret": "zendesk-shared-secret"}))
        .unwrap();
    let zbody = serde_json::to_vec(&json!({"app": {"id": "a"}, "webhook": {"id": "w", "version": "v2"},
        "events": [{"id": "evt1", "type": "conversation:message", "createdAt": "2026-11-23T10:01:02.120Z",
            "payload": {"conversation": {"id": "c1", "type": "personal"},
                "message": {"id": "m1", "author": {"type": "business", "displayName": "Sam"},
                    "content": {"type": "text", "text": text}, "source": {"type": "zd:agentWorkspace"},
                    "metadata": {"__zendesk_msg.agent.id": "u7"}}}}]})).unwrap();
    group.bench_function("zendesk", |b| {
        b.iter(|| {
            zendesk_webhook::authenticate(&zcreds, Some("zendesk-shared-secret")).unwrap();
            let ev = zendesk_webhook::parse(black_box(&zbody)).unwrap();
            black_box(decide(&s, &ev[0].kind, true))
        })
    });

    let item = json!({"AbsoluteTime": "2026-11-23T10:01:02.123Z", "Id": "i-1", "Type": "MESSAGE",
        "ContentType": "text/plain", "Content": text, "ParticipantId": "u7", "DisplayName": "Sam",
        "ParticipantRole": "AGENT", "InitialContactId": "c-1", "ContactId": "c-1"});
    let sns = json!({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": item.to_string(),
        "MessageAttributes": {"MessageVisibility": {"Type": "String", "Value": "ALL"}}});
    let record = serde_json::to_vec(&sns).unwrap();
    group.bench_function("amazon_connect (SNS record)", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(&record)).unwrap();
            let ev = connect_events::parse_sns(&v).unwrap();
            black_box(decide(&s, &ev.kind, true))
        })
    });

    // NICE CXone BYOC: our own bearer token on the outbound callback.
    let ncreds: NiceCredentials = serde_json::from_value(json!({"brand_id": 1,
        "channel_id": "chat_bench", "client_id": "c", "client_secret": "s", "access_key_id": "a",
        "access_key_secret": "s", "byoc_client_id": "byoc-bench", "byoc_client_secret": "byoc-secret-0123456789"}))
    .unwrap();
    let now = 1_795_428_062;
    let nheaders = HashMap::from([(
        "authorization".to_owned(),
        format!("Bearer {}", nice_webhook::mint_token(&ncreds, now)),
    )]);
    let nbody = serde_json::to_vec(
        &json!({"brand": {"id": 1}, "thread": {"idOnExternalPlatform": "conv-8f2c"},
        "messageContent": {"type": "TEXT", "payload": {"text": text}},
        "authorUser": {"id": 55, "firstName": "Sam", "surname": "Lee", "nickname": "Sam"},
        "createdAtWithMilliseconds": "2026-11-23T10:01:02.123Z"}),
    )
    .unwrap();
    group.bench_function("nice (BYOC outbound)", |b| {
        b.iter(|| {
            let req = WebhookRequest {
                headers: &nheaders,
                body: black_box(&nbody),
                rest_path: "/2.0/channel/chat_bench/outbound",
            };
            nice_webhook::authenticate(&ncreds, &req, now).unwrap();
            let ev = nice_webhook::parse(&req).unwrap();
            black_box(decide(&s, &ev[0].kind, true))
        })
    });

    // Webex Contact Center: hex HMAC-SHA256 plus the V2 timestamp check.
    let wsecret = "webex-webhook-secret-0123456789";
    let wcreds: WebexCredentials = serde_json::from_value(json!({"client_id": "c",
        "client_secret": "s", "refresh_token": "r", "org_id": "o", "api_base_url": "http://x",
        "business_address": "b", "channel_name": "ch", "webhook_secret": wsecret}))
    .unwrap();
    let wts: i64 = 1_795_428_062_000;
    let wbody = serde_json::to_vec(&json!({"id": "ev-1", "specversion": "1.0",
        "type": "task-message:appended", "source": "/com/cisco/wxcc/asset-1", "comciscoorgid": "o",
        "comciscotimestamp": wts, "datacontenttype": "application/json",
        "data": {"taskId": "t-1", "origin": "u-1", "destination": "support@x",
            "messageDirection": "OUTBOUND", "senderType": "agent", "senderId": "ag-7",
            "channelType": "customMessaging", "channel": "ch",
            "channelParams": {"type": "text", "message": {"aliasId": "a-9", "text": text, "timestamp": 1}}}}))
    .unwrap();
    let wsig = hex::encode(hmac_sha256(wsecret.as_bytes(), &wbody));
    let wts_header = wts.to_string();
    group.bench_function("webex", |b| {
        b.iter(|| {
            webex_webhook::authenticate(
                &wcreds,
                Some(&wsig),
                Some(&wts_header),
                black_box(&wbody),
                wts,
            )
            .unwrap();
            let ev = webex_webhook::parse(black_box(&wbody)).unwrap();
            black_box(decide(&s, &ev[0].kind, true))
        })
    });

    // Salesforce MIAW: one SSE frame off the authenticated stream (the stream
    // is ours, so there is no per-event signature).
    let cid = "5b0f4a2e-8a51-4d2b-9a43-2f1a4e0c7d11";
    let payload = json!({"entryType": "Message", "id": "e-1", "abstractMessage": {
        "messageType": "StaticContentMessage", "id": "e-1",
        "staticContent": {"formatType": "Text", "text": text}}});
    let sf_data = json!({"channelPlatformKey": "k", "channelType": "embedded_messaging",
        "conversationId": cid, "conversationEntry": {"identifier": "e-1", "entryType": "Message",
            "senderDisplayName": "Sam", "sender": {"role": "Agent", "appType": "agent", "subject": "005A"},
            "entryPayload": payload.to_string(), "clientTimestamp": 1, "transcriptedTimestamp": 2,
            "relatedRecords": []}})
    .to_string();
    group.bench_function("salesforce (SSE frame)", |b| {
        b.iter(|| {
            let mut state = sf_events::EntryState::default();
            match sf_events::parse_sse(cid, "CONVERSATION_MESSAGE", black_box(&sf_data), &mut state)
            {
                sf_events::Frame::Events(ev) => black_box(decide(&s, &ev[0].kind, true)),
                _ => panic!("a message frame"),
            }
        })
    });

    group.finish();
}

fn client_events(c: &mut Criterion) {
    let event = ClientEvent {
        session_id: "conv-8f2c".into(),
        seq: 7,
        event_type: ClientEventType::LiveAgentMessage,
        at: "2026-11-23T10:01:02.123Z".into(),
        data: json!({"message_id": "m1", "text": text_4k(), "agent": {"display_name": "Sam"}}),
    };
    let mut group = c.benchmark_group("client event (4 KiB)");
    group.throughput(Throughput::Bytes(4096));
    group.bench_function("serialise + sign", |b| {
        b.iter(|| {
            let body = serde_json::to_vec(black_box(&event)).unwrap();
            black_box(sign_client_event(b"events-secret", 1_795_428_062, &body))
        })
    });
    group.finish();
}

fn requests(c: &mut Criterion) {
    let relay = json!({"tenant": {"account_id": "acme", "project_id": "support", "client_env": "live"},
        "session_id": "conv-8f2c", "message": {"id": "m-17", "text": text_4k()}});
    let start = json!({"tenant": {"account_id": "acme", "project_id": "support", "client_env": "live"},
        "session_id": "conv-8f2c", "utterance": "No problem, I'll transfer you to a live agent now.",
        "handoff": {"text_chat": {"genesys_integration": {"queue": "billing"}}},
        "user": {"id": "u-1", "display_name": "Ada", "channel": "webchat"},
        "transcript": (0..20).map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "text": "x".repeat(200)})).collect::<Vec<_>>(),
        "context": {"customer_id": "C-42", "reason": "refund", "verified": true}});
    let mut group = c.benchmark_group("request validation");
    group.throughput(Throughput::Bytes(4096));
    group.bench_function("outbound-relay message (4 KiB)", |b| {
        b.iter(|| black_box(OutboundRelayRequest::parse(black_box(&relay)).unwrap()))
    });
    group.bench_function("start-handoff (20-line transcript)", |b| {
        b.iter(|| black_box(StartHandoffRequest::parse(black_box(&start)).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, webhooks, client_events, requests);
criterion_main!(benches);
