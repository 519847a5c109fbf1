//! Entry points of the fuzz targets in `fuzz/` and of the corpus replay test
//! below: each takes raw bytes and drives pure parsers and verifiers only (no
//! network, no AWS client), with fixed test credentials.
//!
//! Webhook targets take both paths: the input's own signature, which must be
//! refused, and the body signed with the test secret, which must be accepted so
//! the parser is reached. Besides "no panic", the asserts are the properties a
//! caller relies on (a forged signature never passes, a validated request is
//! within its limits).
//!
//! Input layout: the first line(s) are header values or names, as each entry
//! point says; the rest is the body.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine as _;
use futures_util::{FutureExt as _, StreamExt as _};
use serde_json::{json, Value};

use crate::domain::{ClientEnv, IntegrationKey, SessionId, SessionState, Tenant};
use crate::providers::nice::api::NiceCredentials;
use crate::providers::nice::webhook::{self as nice_webhook, Callback};
use crate::providers::salesforce::events as sf_events;
use crate::providers::webex::api::WebexCredentials;
use crate::providers::webex::webhook as webex_webhook;
use crate::providers::{genesys, zendesk, ProviderEvent, Registry, WebhookRequest};
use crate::request::{
    EndSessionRequest, OutboundRelayRequest, RelayAction, StartHandoffRequest, END_REASONS,
    MAX_CONTEXT_BYTES, MAX_MESSAGE_ID_LEN, MAX_TEXT_CHARS, MAX_TRANSCRIPT_ENTRIES,
};
use crate::secrets::SecretJson;
use crate::service::inbound::{classify_payload, decide, parse_webhook_path, InboundPayload};
use crate::signature::{
    hmac_sha256, secret_matches, sign_client_event, verify_client_event, verify_sha256_header,
};
use crate::store::SessionRecord;

/// A target's entry point: the fuzzer's input bytes.
pub type Entry = fn(&[u8]);

/// Every target: its name (a `fuzz/fuzz_targets/*.rs` file and a
/// `fuzz/corpus/*` folder) and its entry point.
pub const TARGETS: &[(&str, Entry)] = &[
    ("genesys_webhook", genesys_webhook),
    ("genesys_notifications", genesys_notifications),
    ("zendesk_webhook", zendesk_webhook),
    ("amazon_connect_sns", amazon_connect_sns),
    ("salesforce_sse", salesforce_sse),
    ("nice_byoc", nice_byoc),
    ("webex_webhook", webex_webhook),
    ("signature", signature),
    ("start_handoff_request", start_handoff_request),
    ("outbound_relay_request", outbound_relay_request),
    ("end_session_request", end_session_request),
    ("inbound_dispatch", inbound_dispatch),
];

/// The test tenant's webhook secret (and the one being rotated out).
pub const SECRET: &str = "fuzz-current-secret-7f3a9c1e5b2d4068";
pub const PREVIOUS_SECRET: &str = "fuzz-previous-secret-0b6e2d8f4a1c9357";
/// A fixed clock for verifiers that take one (2026-11-23T10:01:02Z).
pub const NOW_SECS: i64 = 1_795_428_062;
/// The NICE channel and BYOC client the test credentials name.
pub const NICE_CHANNEL: &str = "chat_fuzz-channel";
pub const NICE_CLIENT_ID: &str = "byoc-fuzz-client";
/// The Amazon Connect streaming topic the test credentials allow.
pub const CONNECT_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:connect-stream";
/// The Salesforce conversation the SSE target holds.
pub const SALESFORCE_CONVERSATION: &str = "5b0f4a2e-8a51-4d2b-9a43-2f1a4e0c7d11";

/// The first line of `data` and the rest (without the newline).
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    // An SdkConfig with nothing set: adapters build no client until called.
    REGISTRY.get_or_init(|| Registry::with_all(&aws_config::SdkConfig::builder().build()))
}

/// The test tenant's integration secret for `key`.
pub fn credentials(key: IntegrationKey) -> SecretJson {
    SecretJson::new(match key {
        IntegrationKey::Genesys => json!({"region_domain": "mypurecloud.com",
            "client_id": "c", "client_secret": "s", "integration_id": "int-fuzz",
            "webhook_secret": SECRET, "webhook_secret_previous": PREVIOUS_SECRET}),
        IntegrationKey::Zendesk => json!({"base_url": "http://127.0.0.1:9/sc", "app_id": "a",
            "key_id": "k", "key_secret": "s",
            "webhook_secret": SECRET, "webhook_secret_previous": PREVIOUS_SECRET}),
        IntegrationKey::Nice => json!({"brand_id": 1, "channel_id": NICE_CHANNEL,
            "client_id": "c", "client_secret": "s", "access_key_id": "a", "access_key_secret": "s",
            "byoc_client_id": NICE_CLIENT_ID, "byoc_client_secret": SECRET,
            "byoc_client_secret_previous": PREVIOUS_SECRET}),
        IntegrationKey::Webex => json!({"client_id": "c", "client_secret": "s",
            "refresh_token": "r", "org_id": "o", "api_base_url": "http://127.0.0.1:9",
            "business_address": "b", "channel_name": "ch",
            "webhook_secret": SECRET, "webhook_secret_previous": PREVIOUS_SECRET}),
        IntegrationKey::AmazonConnect => json!({"instance_id": "i", "contact_flow_id": "f",
            "streaming_topic_arn": CONNECT_TOPIC}),
        IntegrationKey::Salesforce => json!({"scrt_base_url": "http://127.0.0.1:9",
            "org_id": "o", "es_developer_name": "e"}),
        _ => json!({}),
    })
}

fn nice_credentials() -> NiceCredentials {
    credentials(IntegrationKey::Nice)
        .parse("nice_integration")
        .expect("test credentials")
}

fn webex_credentials() -> WebexCredentials {
    credentials(IntegrationKey::Webex)
        .parse("webex_integration")
        .expect("test credentials")
}

fn sha256_base64(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(hmac_sha256(secret.as_bytes(), body))
    )
}

/// `headers` plus what the platform would add to a genuine delivery of `body`.
fn signed_headers(
    key: IntegrationKey,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> HashMap<String, String> {
    let mut signed = headers.clone();
    match key {
        IntegrationKey::Genesys => {
            signed.insert(
                genesys::webhook::SIGNATURE_HEADER.into(),
                sha256_base64(SECRET, body),
            );
        }
        IntegrationKey::Zendesk => {
            signed.insert(zendesk::webhook::API_KEY_HEADER.into(), SECRET.into());
        }
        IntegrationKey::Webex => {
            signed.insert(
                webex_webhook::SIGNATURE_HEADER.into(),
                hex::encode(hmac_sha256(SECRET.as_bytes(), body)),
            );
            // An asset webhook carries no timestamp; the V2 path is its own check.
            signed.remove(webex_webhook::TIMESTAMP_HEADER);
        }
        IntegrationKey::Nice => {
            let token = nice_webhook::mint_token(&nice_credentials(), crate::time::now_ms() / 1000);
            signed.insert("authorization".into(), format!("Bearer {token}"));
        }
        _ => {}
    }
    signed
}

/// Runs every parsed event through the session state machine, in the states a
/// platform event usually meets.
fn check_events(key: IntegrationKey, events: &[ProviderEvent]) {
    let tenant = Tenant::new("acme", "support", ClientEnv::Live).expect("test tenant");
    let mut session = SessionRecord::new(
        tenant,
        SessionId::parse("conv-fuzz").expect("test session"),
        key,
        json!({}),
    );
    session.provider_conversation_id = Some("c-1".into());
    for state in [SessionState::Queued, SessionState::Active] {
        session.state = state;
        for event in events {
            let _ = decide(&session, &event.kind, true);
        }
    }
}

/// The webhook path of the service: the forged delivery (`headers` as given)
/// must be refused; the signed one is authenticated, parsed and answered.
/// Returns whether the signed delivery was accepted (`None`: refused unread).
fn webhook_both_paths(
    key: IntegrationKey,
    headers: &HashMap<String, String>,
    body: &[u8],
    rest_path: &str,
) -> Option<bool> {
    if body.len() > crate::service::inbound::MAX_WEBHOOK_BYTES {
        return None; // 413 before anything reads it
    }
    let provider = registry().get(key)?;
    let creds = credentials(key);
    let forged = WebhookRequest {
        headers,
        body,
        rest_path,
    };
    assert!(
        provider.authenticate_webhook(&creds, &forged).is_err(),
        "{key:?} accepted a webhook without the secret"
    );
    let headers = signed_headers(key, headers, body);
    let signed = WebhookRequest {
        headers: &headers,
        body,
        rest_path,
    };
    let accepted = provider.authenticate_webhook(&creds, &signed).is_ok();
    // Parsed even when refused: a parser must hold on any bytes.
    if let Ok(events) = provider.parse_webhook(&signed) {
        check_events(key, &events);
    }
    let _ = provider.webhook_response(&creds, &signed);
    Some(accepted)
}

/// Line 1: `X-Hub-Signature-256`; rest: the body.
pub fn genesys_webhook(data: &[u8]) {
    let (claim, body) = split_line(data);
    let headers = HashMap::from([(genesys::webhook::SIGNATURE_HEADER.to_owned(), text(claim))]);
    assert_ne!(
        webhook_both_paths(IntegrationKey::Genesys, &headers, body, ""),
        Some(false)
    );
    // The secret being rotated out still verifies, in either digest encoding.
    let creds = credentials(IntegrationKey::Genesys)
        .parse("genesys_integration")
        .expect("test credentials");
    let previous = format!(
        "sha256={}",
        hex::encode(hmac_sha256(PREVIOUS_SECRET.as_bytes(), body))
    );
    assert!(genesys::webhook::authenticate(&creds, Some(&previous), body).is_ok());
}

/// The notification WebSocket's frames (whole input), and the conversation
/// read on reconciliation (the same bytes as the conversation JSON).
pub fn genesys_notifications(data: &[u8]) {
    let frame = text(data);
    if let genesys::notifications::Frame::Event(event) = genesys::notifications::parse_frame(&frame)
    {
        check_events(IntegrationKey::Genesys, &[event]);
    }
    let Ok(conversation) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let tenant = Tenant::new("acme", "support", ClientEnv::Live).expect("test tenant");
    let mut session = SessionRecord::new(
        tenant,
        SessionId::parse("conv-fuzz").expect("test session"),
        IntegrationKey::Genesys,
        json!({}),
    );
    session.provider_conversation_id = Some("c-1".into());
    for state in [
        SessionState::Pending,
        SessionState::Queued,
        SessionState::Active,
    ] {
        session.state = state;
        let events = genesys::notifications::reconcile_events(&session, &conversation);
        check_events(IntegrationKey::Genesys, &events);
    }
}

/// Line 1: `X-API-Key`; rest: the body.
pub fn zendesk_webhook(data: &[u8]) {
    let (claim, body) = split_line(data);
    let headers = HashMap::from([(zendesk::webhook::API_KEY_HEADER.to_owned(), text(claim))]);
    assert_ne!(
        webhook_both_paths(IntegrationKey::Zendesk, &headers, body, ""),
        Some(false)
    );
}

/// The whole input as the `Sns` object of a record, then as its `Message`.
pub fn amazon_connect_sns(data: &[u8]) {
    let key = IntegrationKey::AmazonConnect;
    let provider = registry().get(key).expect("registered");
    let source = provider.stream().expect("a stream source");
    let creds = credentials(key);
    if let Ok(sns) = serde_json::from_slice::<Value>(data) {
        if let Ok(event) = source.parse_record(&sns) {
            check_events(key, &[event]);
        }
        let topic = sns["TopicArn"].as_str().unwrap_or_default();
        assert_eq!(source.topic_allowed(&creds, topic), topic == CONNECT_TOPIC);
    }
    for visibility in ["ALL", "AGENT"] {
        let sns = json!({"Type": "Notification", "TopicArn": CONNECT_TOPIC, "Message": text(data),
            "MessageAttributes": {"MessageVisibility": {"Type": "String", "Value": visibility}}});
        if let Ok(event) = source.parse_record(&sns) {
            check_events(key, &[event]);
        }
    }
}

/// Line 1: the SSE event name; rest: its data. Then the whole input as the
/// raw stream bytes, through the decoder the holder uses, and the data as the
/// list-entries answer read on reconciliation.
pub fn salesforce_sse(data: &[u8]) {
    let cid = SALESFORCE_CONVERSATION;
    let key = IntegrationKey::Salesforce;
    let (event, rest) = split_line(data);
    let (event, rest) = (text(event), text(rest));
    let mut state = sf_events::EntryState::default();
    // Twice: the second frame sees the state the first left.
    for _ in 0..2 {
        if let sf_events::Frame::Events(events) =
            sf_events::parse_sse(cid, &event, &rest, &mut state)
        {
            check_events(key, &events);
        }
    }
    let (a, b) = data.split_at(data.len() / 2);
    let chunks = futures_util::stream::iter([
        Ok::<_, std::convert::Infallible>(a.to_vec()),
        Ok(b.to_vec()),
    ]);
    let frames: Vec<_> = eventsource_stream::Eventsource::eventsource(chunks)
        .collect::<Vec<_>>()
        .now_or_never()
        .expect("an in-memory stream is always ready");
    for frame in frames.into_iter().flatten() {
        if let sf_events::Frame::Events(events) =
            sf_events::parse_sse(cid, &frame.event, &frame.data, &mut state)
        {
            check_events(key, &events);
        }
    }
    match serde_json::from_str::<Value>(&rest) {
        Ok(Value::Array(entries)) => {
            check_events(key, &sf_events::reconcile_entries(cid, &entries));
        }
        Ok(v) => {
            let kind = sf_events::EntryKind::from_event_name(&event);
            let events = sf_events::map_entry(cid, kind, &v["conversationEntry"], &mut state);
            check_events(key, &events);
        }
        Err(_) => {}
    }
}

/// Line 1: the path below the registered URL; line 2: `Authorization`; rest: the body.
pub fn nice_byoc(data: &[u8]) {
    let (path, rest) = split_line(data);
    let (authorization, body) = split_line(rest);
    let (path, authorization) = (text(path), text(authorization));
    let creds = nice_credentials();
    let headers = HashMap::from([("authorization".to_owned(), authorization.clone())]);
    let Some(accepted) = webhook_both_paths(IntegrationKey::Nice, &headers, body, &path) else {
        return;
    };
    let expect_accepted = match nice_webhook::route(&path) {
        Some(Callback::Outbound { channel_id } | Callback::SenderAction { channel_id, .. }) => {
            channel_id == NICE_CHANNEL
        }
        Some(Callback::LegacyOutbound { .. }) => true,
        // The token call carries client credentials, not our token.
        Some(Callback::Token) => accepted,
        None => false,
    };
    assert_eq!(accepted, expect_accepted, "NICE callback {path:?}");
    // The token call with our client credentials in `Authorization: Basic`.
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{NICE_CLIENT_ID}:{SECRET}"));
    let token_headers = HashMap::from([("authorization".to_owned(), format!("Basic {basic}"))]);
    let token_call = WebhookRequest {
        headers: &token_headers,
        body,
        rest_path: "/1.0/token",
    };
    let _ = nice_webhook::authenticate_token_request(&creds, &token_call);
    let _ = nice_webhook::token_request_fields(&headers, body);
    // Our tokens, on the fixed clock: a forged one is refused, a minted one passes.
    let presented = authorization
        .strip_prefix("Bearer ")
        .unwrap_or(&authorization);
    assert!(nice_webhook::verify_token(&creds, presented, NOW_SECS).is_err());
    let minted = nice_webhook::mint_token(&creds, NOW_SECS);
    assert!(nice_webhook::verify_token(&creds, &minted, NOW_SECS).is_ok());
    let request = WebhookRequest {
        headers: &headers,
        body,
        rest_path: &path,
    };
    let _ = nice_webhook::response(&creds, &request, NOW_SECS);
}

/// Line 1: `X-WebexCC-Signature`; line 2: `X-WebExCC-Timestamp` (empty: none); rest: the body.
pub fn webex_webhook(data: &[u8]) {
    let (claim, rest) = split_line(data);
    let (timestamp, body) = split_line(rest);
    let mut headers = HashMap::from([(webex_webhook::SIGNATURE_HEADER.to_owned(), text(claim))]);
    if !timestamp.is_empty() {
        headers.insert(webex_webhook::TIMESTAMP_HEADER.to_owned(), text(timestamp));
    }
    assert_ne!(
        webhook_both_paths(IntegrationKey::Webex, &headers, body, ""),
        Some(false)
    );
    // V2 deliveries on the fixed clock: the signed body with the input's
    // timestamp header, and with the header the body's own timestamp names.
    let creds = webex_credentials();
    let signature = hex::encode(hmac_sha256(SECRET.as_bytes(), body));
    let timestamp = text(timestamp);
    let _ = webex_webhook::authenticate(
        &creds,
        Some(&signature),
        Some(&timestamp),
        body,
        NOW_SECS * 1000,
    );
    let body_ts = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["comciscotimestamp"].as_i64());
    if let Some(ts) = body_ts {
        assert!(webex_webhook::authenticate(
            &creds,
            Some(&signature),
            Some(&ts.to_string()),
            body,
            ts
        )
        .is_ok());
    }
}

/// Line 1: a signature header; line 2: a timestamp header; rest: the body.
pub fn signature(data: &[u8]) {
    let (claim, rest) = split_line(data);
    let (timestamp, body) = split_line(rest);
    let (claim, timestamp) = (text(claim), text(timestamp));
    let secrets = [SECRET.as_bytes(), PREVIOUS_SECRET.as_bytes()];
    assert!(!verify_sha256_header(&claim, body, secrets));
    assert!(!secret_matches(claim.as_bytes(), secrets));
    assert!(!verify_client_event(
        SECRET.as_bytes(),
        &timestamp,
        &claim,
        body,
        NOW_SECS,
        300
    ));
    let genuine = sha256_base64(PREVIOUS_SECRET, body);
    assert!(verify_sha256_header(&genuine, body, secrets));
    assert!(!verify_sha256_header(&genuine, body, [SECRET.as_bytes()]));
    let unpadded = genuine.trim_end_matches('=');
    assert!(verify_sha256_header(unpadded, body, secrets));
    if let Ok(ts) = timestamp.trim().parse::<i64>() {
        let signed = sign_client_event(SECRET.as_bytes(), ts, body);
        assert!(verify_client_event(
            SECRET.as_bytes(),
            &timestamp,
            &signed,
            body,
            ts,
            300
        ));
    }
}

/// The whole input as the Lambda's JSON payload.
pub fn start_handoff_request(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match StartHandoffRequest::parse(&value) {
        Ok(req) => {
            if let Some(u) = &req.utterance {
                assert!(u.chars().count() <= MAX_TEXT_CHARS);
            }
            assert!(req.transcript.len() <= MAX_TRANSCRIPT_ENTRIES);
            assert!(serde_json::to_vec(&req.context).unwrap().len() <= MAX_CONTEXT_BYTES);
        }
        Err(e) => {
            let _ = e.to_response();
        }
    }
}

/// The whole input as the Lambda's JSON payload.
pub fn outbound_relay_request(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match OutboundRelayRequest::parse(&value) {
        Ok(req) => {
            if let RelayAction::Message(m) = &req.action {
                assert!(!m.id.is_empty() && m.id.len() <= MAX_MESSAGE_ID_LEN);
                assert!(!m.text.trim().is_empty() && m.text.chars().count() <= MAX_TEXT_CHARS);
            }
        }
        Err(e) => {
            let _ = e.to_response();
        }
    }
}

/// The whole input as the Lambda's JSON payload.
pub fn end_session_request(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match EndSessionRequest::parse(&value) {
        Ok(req) => assert!(END_REASONS.contains(&req.reason.as_str())),
        Err(e) => {
            let _ = e.to_response();
        }
    }
}

/// The whole input as the webhook function's Lambda payload: an SNS event or
/// an HTTP API request, classified and routed as the function does, up to the
/// store (which needs the network).
pub fn inbound_dispatch(data: &[u8]) {
    let Ok(payload) = serde_json::from_slice::<Value>(data) else {
        return; // the runtime refuses it before the function runs
    };
    match classify_payload(payload) {
        Err(e) => {
            let _ = e.to_response();
        }
        Ok(InboundPayload::Stream(event)) => {
            let Some(records) = event["Records"].as_array() else {
                return;
            };
            let registry = registry();
            for record in records {
                let sns = &record["Sns"];
                for key in registry.keys() {
                    let provider = registry.get(key).expect("listed");
                    let Some(source) = provider.stream() else {
                        continue;
                    };
                    if let Ok(event) = source.parse_record(sns) {
                        let topic = sns["TopicArn"].as_str().unwrap_or_default();
                        let _ = source.topic_allowed(&credentials(key), topic);
                        check_events(key, &[event]);
                    }
                }
            }
        }
        Ok(InboundPayload::Http(request)) => {
            let Some((key, _tenant, rest)) = parse_webhook_path(&request.path) else {
                return; // 404
            };
            webhook_both_paths(key, &request.headers, &request.body, &rest);
        }
    }
}

#[cfg(test)]
mod corpus_tests {
    use std::path::{Path, PathBuf};

    use super::TARGETS;

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
    }

    fn names_in(dir: &Path, strip: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|n| n.strip_suffix(strip).map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    /// Replays every committed corpus file through its entry point, so CI
    /// guards the corpora without building the instrumented fuzzers.
    #[test]
    fn every_corpus_file_replays_without_panic() {
        let root = fuzz_dir().join("corpus");
        for (name, entry) in TARGETS {
            let dir = root.join(name);
            let files = names_in(&dir, "");
            assert!(!files.is_empty(), "{name} has no seed corpus");
            for file in files {
                let data = std::fs::read(dir.join(&file)).unwrap();
                entry(&data);
            }
        }
    }

    #[test]
    fn targets_corpora_and_entry_points_match() {
        let mut listed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(names_in(&fuzz_dir().join("fuzz_targets"), ".rs"), listed);
        assert_eq!(names_in(&fuzz_dir().join("corpus"), ""), listed);
    }
}
