//! In-process scenarios: the whole server on 127.0.0.1:0, a small axum
//! receiver as the webhook URL, real HTTP and WebSocket clients.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SECRET: &str = "webhook-secret-0123456789";
const WAIT: Duration = Duration::from_secs(5);

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// Webhook receiver: answers from a script of statuses (then 200), records every request.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> (String, Self) {
        let receiver = Self::default();
        receiver.script.lock().unwrap().extend(script);
        async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
            r.got.lock().unwrap().push((headers, body));
            let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
            StatusCode::from_u16(status).unwrap()
        }
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        (format!("{}/hook", serve(router).await), receiver)
    }

    fn requests(&self) -> Vec<(HeaderMap, Bytes)> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, Bytes)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} webhook calls, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn body_json(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap()
}

fn independent_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn signature_of(headers: &HeaderMap) -> String {
    headers
        .get("x-hub-signature-256")
        .expect("signature header")
        .to_str()
        .unwrap()
        .to_string()
}

struct Sim {
    base: String,
    http: reqwest::Client,
}

impl Sim {
    async fn start() -> Self {
        Self {
            base: serve(crate::app()).await,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    async fn control(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn configure(&self, id: &str, webhook_url: &str, extra: Value) {
        let mut cfg = json!({
            "integration_id": id, "client_id": format!("client-{id}"),
            "client_secret": "client-secret", "webhook_url": webhook_url,
            "webhook_secret": SECRET, "webhook_headers": {"X-Tenant": id},
        });
        cfg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let (status, _) = self.control("/sim/genesys/integrations", cfg).await;
        assert_eq!(status, 200);
    }

    async fn token(&self, id: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/genesys/login/oauth/token", self.base))
            .basic_auth(format!("client-{id}"), Some("client-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["token_type"], "bearer");
        body["access_token"].as_str().unwrap().to_string()
    }

    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/genesys/api/v2{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    async fn send_inbound(&self, id: &str, token: &str, from: &str, text: &str) -> (u16, Value) {
        let body = json!({
            "channel": {"messageId": format!("m-{text}"), "from": {"id": from, "idType": "Opaque", "nickname": "Ada"},
                        "time": "2026-11-23T10:01:02.123Z",
                        "metadata": {"customAttributes": {"reason": "refund"}}},
            "text": text,
        });
        let (status, _, body) = self
            .api(
                reqwest::Method::POST,
                &format!(
                    "/conversations/messages/{id}/inbound/open/message?prefetchConversationId=true"
                ),
                token,
                Some(body),
            )
            .await;
        (status, body)
    }

    /// Configured integration with an open, accepted conversation.
    async fn accepted_conversation(&self, id: &str, webhook_url: &str) -> (String, String) {
        self.configure(id, webhook_url, json!({})).await;
        let token = self.token(id).await;
        let (status, body) = self.send_inbound(id, &token, "session-1", "hello").await;
        assert_eq!(status, 200, "{body}");
        let cid = body["conversationId"].as_str().unwrap().to_string();
        let (status, view) = self
            .control(
                &format!("/sim/genesys/conversations/{cid}/accept"),
                json!({"agent_name": "Sam"}),
            )
            .await;
        assert_eq!(status, 200, "{view}");
        (cid, token)
    }

    async fn agent_says(&self, cid: &str, text: &str) -> String {
        let (status, body) = self
            .control(
                &format!("/sim/genesys/conversations/{cid}/messages"),
                json!({"text": text}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    async fn faults(&self, update: Value) {
        let (status, body) = self.control("/sim/genesys/faults", update).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn health_and_desktop_page_are_served() {
    let sim = Sim::start().await;
    let health = sim
        .http
        .get(format!("{}/health", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    let page = sim
        .http
        .get(format!("{}/genesys/desktop", sim.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for id in [
        "id=\"conversations\"",
        "id=\"accept\"",
        "id=\"reply\"",
        "id=\"send\"",
        "id=\"end\"",
        "id=\"leave\"",
        "id=\"transcript\"",
        "id=\"context\"",
        "id=\"customer-typing\"",
        "data-conversation-id",
    ] {
        assert!(page.contains(id), "desktop page lacks {id}");
    }
}

#[tokio::test]
async fn webhook_is_retried_after_503_then_delivered_signed() {
    let (url, receiver) = Receiver::start(&[503]).await;
    let sim = Sim::start().await;
    sim.faults(json!({"webhook_retry_delay_ms": 20})).await;
    let (cid, _) = sim.accepted_conversation("retry", &url).await;
    let mid = sim.agent_says(&cid, "Hi Ada, I can help").await;

    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].1, got[1].1, "a retry resends the same bytes");
    for (headers, body) in &got {
        assert_eq!(signature_of(headers), independent_signature(body));
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-tenant"], "retry");
    }
    let msg = body_json(&got[1].1);
    assert_eq!(msg["id"], mid);
    assert_eq!(msg["type"], "Text");
    assert_eq!(msg["direction"], "Outbound");
    assert_eq!(msg["originatingEntity"], "Human");
    assert_eq!(msg["conversationId"], cid);
    assert_eq!(msg["channel"]["to"]["id"], "session-1");
    assert_eq!(msg["channel"]["from"]["nickname"], "Sam");

    tokio::time::sleep(Duration::from_millis(50)).await;
    let view = sim.get(&format!("/sim/genesys/conversations/{cid}")).await;
    let attempts: Vec<(u64, u64)> = view["webhook_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(attempts, vec![(1, 503), (2, 200)]);
    let stats = sim.get("/sim/genesys/stats?integration_id=retry").await;
    assert_eq!(stats["webhook_retries"], 1);
    assert_eq!(stats["webhook_deliveries"], 1);
    assert_eq!(receiver.requests().len(), 2, "no call after success");
}

#[tokio::test]
async fn webhook_client_error_is_not_retried() {
    let (url, receiver) = Receiver::start(&[400]).await;
    let sim = Sim::start().await;
    sim.faults(json!({"webhook_retry_delay_ms": 10})).await;
    let (cid, _) = sim.accepted_conversation("no-retry", &url).await;
    sim.agent_says(&cid, "one").await;
    sim.agent_says(&cid, "two").await;
    let got = receiver.wait_for(2).await;
    assert_eq!(body_json(&got[0].1)["text"], "one");
    assert_eq!(body_json(&got[1].1)["text"], "two");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(receiver.requests().len(), 2);
}

#[tokio::test]
async fn duplicate_next_sends_same_bytes_and_signature_twice() {
    let (url, receiver) = Receiver::start(&[]).await;
    let sim = Sim::start().await;
    let (cid, _) = sim.accepted_conversation("dup", &url).await;
    sim.faults(json!({"integration_id": "dup", "webhook_duplicate_next": 1}))
        .await;
    let first = sim.agent_says(&cid, "first").await;
    let second = sim.agent_says(&cid, "second").await;

    let got = receiver.wait_for(3).await;
    assert_eq!(got[0].1, got[1].1);
    assert_eq!(signature_of(&got[0].0), signature_of(&got[1].0));
    assert_eq!(signature_of(&got[0].0), independent_signature(&got[0].1));
    assert_eq!(body_json(&got[0].1)["id"], first);
    assert_eq!(body_json(&got[2].1)["id"], second);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(receiver.requests().len(), 3, "the knob fired exactly once");
}

#[tokio::test]
async fn out_of_order_and_bad_signature_knobs() {
    let (url, receiver) = Receiver::start(&[]).await;
    let sim = Sim::start().await;
    let (cid, _) = sim.accepted_conversation("order", &url).await;
    sim.faults(
        json!({"integration_id": "order", "webhook_out_of_order_next": 1,
                      "webhook_bad_signature_next": 1}),
    )
    .await;
    sim.agent_says(&cid, "one").await;
    sim.agent_says(&cid, "two").await;
    sim.agent_says(&cid, "three").await;
    let got = receiver.wait_for(3).await;
    let texts: Vec<Value> = got
        .iter()
        .map(|(_, b)| body_json(b)["text"].clone())
        .collect();
    assert_eq!(texts, vec![json!("two"), json!("one"), json!("three")]);
    // "one" carried the bad signature, the others are valid.
    for (headers, body) in &got {
        let valid = signature_of(headers) == independent_signature(body);
        assert_eq!(valid, body_json(body)["text"] != "one");
    }
}

#[tokio::test]
async fn tokens_expire_are_revoked_and_stay_in_their_org() {
    let sim = Sim::start().await;
    sim.configure(
        "short",
        "http://127.0.0.1:9/hook",
        json!({"token_ttl_secs": 1}),
    )
    .await;
    sim.configure("other", "http://127.0.0.1:9/hook", json!({}))
        .await;
    let short = sim.token("short").await;
    let other = sim.token("other").await;

    let (status, _) = sim.send_inbound("short", &short, "s1", "hi").await;
    assert_eq!(status, 200);
    // Another client's token does not reach this integration.
    let (status, body) = sim.send_inbound("short", &other, "s1", "hi").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not.found")));

    // Revocation of one client only.
    sim.faults(json!({"integration_id": "other", "expire_tokens_now": true}))
        .await;
    let (status, body) = sim.send_inbound("other", &other, "s1", "hi").await;
    assert_eq!(status, 401);
    assert_eq!(body["status"], 401);
    assert!(body["contextId"].is_string());
    let (status, _) = sim.send_inbound("short", &short, "s1", "again").await;
    assert_eq!(status, 200);
    let fresh = sim.token("other").await;
    assert_eq!(sim.send_inbound("other", &fresh, "s1", "hi").await.0, 200);

    // Expiry by TTL.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(sim.send_inbound("short", &short, "s1", "late").await.0, 401);

    // Bad credentials and no token.
    let resp = sim
        .http
        .post(format!("{}/genesys/login/oauth/token", sim.base))
        .basic_auth("client-short", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = sim
        .http
        .get(format!("{}/genesys/api/v2/users/x", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let stats = sim.get("/sim/genesys/stats").await;
    assert_eq!(stats["tokens_issued"], 3);
}

#[tokio::test]
async fn inbound_api_validates_and_reuses_conversations() {
    let sim = Sim::start().await;
    sim.configure("val", "http://127.0.0.1:9/hook", json!({}))
        .await;
    let token = sim.token("val").await;
    let path = "/conversations/messages/val/inbound/open/message";

    let (status, _, err) = sim
        .api(
            reqwest::Method::POST,
            path,
            &token,
            Some(json!({"channel": {"from": {"idType": "Opaque"}, "time": "2026-11-23T10:00:00Z"}, "text": "x"})),
        )
        .await;
    assert_eq!(status, 400);
    for key in [
        "message",
        "code",
        "status",
        "contextId",
        "details",
        "errors",
    ] {
        assert!(err.get(key).is_some(), "ErrorBody lacks {key}: {err}");
    }
    assert_eq!(err["code"], "bad.request");

    let (status, _, err) = sim
        .api(
            reqwest::Method::POST,
            path,
            &token,
            Some(json!("not an object")),
        )
        .await;
    assert_eq!((status, err["code"].as_str()), (400, Some("bad.request")));

    let (status, _, _) = sim
        .api(
            reqwest::Method::POST,
            "/conversations/messages/unknown/inbound/open/message",
            &token,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 404);

    // Without prefetch there is no conversationId; the same from.id threads into one conversation.
    let body = json!({"channel": {"from": {"id": "s1", "idType": "Opaque"}, "time": "2026-11-23T10:00:00Z",
                                  "messageId": "dup-1"}, "text": "first"});
    let (status, _, first) = sim
        .api(reqwest::Method::POST, path, &token, Some(body.clone()))
        .await;
    assert_eq!(status, 200);
    assert!(first.get("conversationId").is_none());
    assert_eq!(first["type"], "Text");
    let (_, second) = sim.send_inbound("val", &token, "s1", "second").await;
    let (_, third) = sim.send_inbound("val", &token, "s2", "other").await;
    assert_ne!(second["conversationId"], third["conversationId"]);
    // A relay that sends the same channel.messageId twice is visible.
    sim.api(reqwest::Method::POST, path, &token, Some(body))
        .await;

    let list = sim
        .get("/sim/genesys/conversations?integration_id=val")
        .await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let s1 = list.iter().find(|c| c["customer"]["id"] == "s1").unwrap();
    assert_eq!(s1["id"], second["conversationId"]);
    assert_eq!(s1["messages"].as_array().unwrap().len(), 3);
    assert_eq!(s1["duplicate_inbound_message_ids"], json!(["dup-1"]));
    assert_eq!(s1["custom_attributes"]["reason"], "refund");
    assert_eq!(s1["state"], "queued");

    // Typing marks the customer as typing.
    let (status, _, _) = sim
        .api(
            reqwest::Method::POST,
            "/conversations/messages/val/inbound/open/event",
            &token,
            Some(json!({"channel": {"from": {"id": "s1", "idType": "Opaque"}, "time": "2026-11-23T10:00:00Z"},
                        "events": [{"eventType": "Typing", "typing": {"type": "On"}}]})),
        )
        .await;
    assert_eq!(status, 200);
    let view = sim
        .get(&format!(
            "/sim/genesys/conversations/{}",
            s1["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(view["customer_typing"], true);
}

#[tokio::test]
async fn api_fail_next_answers_429_with_retry_after_exactly_n_times() {
    let sim = Sim::start().await;
    sim.configure("rl", "http://127.0.0.1:9/hook", json!({}))
        .await;
    let token = sim.token("rl").await;
    sim.faults(
        json!({"integration_id": "rl", "api_fail_next": {"status": 429, "count": 2},
                      "retry_after_secs": 3}),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, headers, body) = sim
            .api(
                reqwest::Method::GET,
                "/notifications/channels",
                &token,
                None,
            )
            .await;
        if status == 429 {
            assert_eq!(headers["retry-after"], "3");
            assert_eq!(body["code"], "too.many.requests");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, vec![429, 429, 200]);
    let stats = sim.get("/sim/genesys/stats?integration_id=rl").await;
    assert_eq!(stats["api_errors_injected"], 2);
    assert_eq!(stats["api_calls"], 3);
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Next JSON frame whose `topicName` is not a heartbeat.
async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time")
            .expect("socket open")
            .expect("frame ok");
        if let WsMessage::Text(text) = frame {
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["eventBody"]["message"] != "WebSocket Heartbeat" {
                return v;
            }
        }
    }
}

async fn open_channel(sim: &Sim, token: &str, topics: &[String]) -> (String, Ws) {
    let (status, _, channel) = sim
        .api(
            reqwest::Method::POST,
            "/notifications/channels",
            token,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let id = channel["id"].as_str().unwrap().to_string();
    assert!(channel["expires"].is_string());
    let body: Vec<Value> = topics.iter().map(|t| json!({"id": t})).collect();
    let (status, _, subs) = sim
        .api(
            reqwest::Method::PUT,
            &format!("/notifications/channels/{id}/subscriptions"),
            token,
            Some(json!(body)),
        )
        .await;
    assert_eq!(status, 200, "{subs}");
    assert!(subs["entities"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["state"] == "Permitted"));
    let (ws, _) = tokio_tungstenite::connect_async(channel["connectUri"].as_str().unwrap())
        .await
        .unwrap();
    (id, ws)
}

#[tokio::test]
async fn notifications_reach_subscribed_socket() {
    let sim = Sim::start().await;
    sim.faults(json!({"heartbeat_secs": 0.1})).await;
    sim.configure("ws", "http://127.0.0.1:9/hook", json!({}))
        .await;
    let token = sim.token("ws").await;
    let (_, opened) = sim.send_inbound("ws", &token, "s1", "hi").await;
    let cid = opened["conversationId"].as_str().unwrap().to_string();
    let topics: Vec<String> = ["user.start", "user.end", "customer.end"]
        .iter()
        .map(|k| format!("v2.detail.events.conversation.{cid}.{k}"))
        .collect();
    let (channel_id, mut ws) = open_channel(&sim, &token, &topics).await;

    // Heartbeat, then ping/pong.
    let heartbeat = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let heartbeat: Value = serde_json::from_str(heartbeat.to_text().unwrap()).unwrap();
    assert_eq!(
        heartbeat,
        json!({"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}})
    );
    ws.send(WsMessage::text(r#"{"message":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_event(&mut ws).await["eventBody"]["message"], "pong");

    sim.control(
        &format!("/sim/genesys/conversations/{cid}/accept"),
        json!({"agent_name": "Sam"}),
    )
    .await;
    let start = next_event(&mut ws).await;
    assert_eq!(start["topicName"], topics[0]);
    assert_eq!(start["version"], "2");
    assert!(start["metadata"]["CorrelationId"].is_string());
    let body = &start["eventBody"];
    assert_eq!(body["conversationId"], cid);
    assert_eq!(body["mediaType"], "MESSAGE");
    assert_eq!(body["messageType"], "OPEN");
    let user_id = body["userId"].as_str().unwrap();
    let (status, _, user) = sim
        .api(
            reqwest::Method::GET,
            &format!("/users/{user_id}"),
            &token,
            None,
        )
        .await;
    assert_eq!((status, user["name"].as_str()), (200, Some("Sam")));

    sim.control(
        &format!("/sim/genesys/conversations/{cid}/transfer"),
        json!({"agent_name": "Kim"}),
    )
    .await;
    let end = next_event(&mut ws).await;
    assert_eq!(end["topicName"], topics[1]);
    assert_eq!(end["eventBody"]["disconnectType"], "TRANSFER");
    assert_eq!(next_event(&mut ws).await["topicName"], topics[0]);

    // The relay ends: PATCH the customer participant.
    let (_, _, conversation) = sim
        .api(
            reqwest::Method::GET,
            &format!("/conversations/messages/{cid}"),
            &token,
            None,
        )
        .await;
    let customer = conversation["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "customer")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let patch = format!("/conversations/messages/{cid}/participants/{customer}");
    let disconnect = json!({"state": "disconnected"});
    let (status, _, _) = sim
        .api(
            reqwest::Method::PATCH,
            &patch,
            &token,
            Some(disconnect.clone()),
        )
        .await;
    assert_eq!(status, 202);
    let customer_end = next_event(&mut ws).await;
    assert_eq!(customer_end["topicName"], topics[2]);
    assert_eq!(customer_end["eventBody"]["disconnectType"], "CLIENT");
    let (status, _, _) = sim
        .api(reqwest::Method::PATCH, &patch, &token, Some(disconnect))
        .await;
    assert_eq!(status, 400, "repeating on an ended conversation fails");

    let view = sim.get(&format!("/sim/genesys/conversations/{cid}")).await;
    assert_eq!(view["state"], "ended");
    assert_eq!(view["customer_connected"], false);

    // HEAD: alive, then gone after eviction.
    let head = |id: String| {
        let sim = &sim;
        let token = token.clone();
        async move {
            sim.http
                .head(format!(
                    "{}/genesys/api/v2/notifications/channels/{id}",
                    sim.base
                ))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(head(channel_id.clone()).await, 200);
    sim.faults(json!({"integration_id": "ws", "evict_channels_now": true}))
        .await;
    assert_eq!(head(channel_id).await, 404);
    let stats = sim.get("/sim/genesys/stats?integration_id=ws").await;
    assert_eq!(stats["notifications_sent"], 4);
    assert_eq!(stats["ws_connections"], 1);
}

#[tokio::test]
async fn ws_drop_next_closes_without_close_frame() {
    let sim = Sim::start().await;
    sim.configure("drop", "http://127.0.0.1:9/hook", json!({}))
        .await;
    let token = sim.token("drop").await;
    let (_, mut ws) = open_channel(&sim, &token, &[]).await;
    // Make sure the socket is registered before the fault is set.
    ws.send(WsMessage::text(r#"{"message":"ping"}"#))
        .await
        .unwrap();
    next_event(&mut ws).await;
    sim.faults(json!({"integration_id": "drop", "ws_drop_next": true}))
        .await;
    let end = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    match end {
        Some(Err(_)) | None => {}
        Some(Ok(frame)) => panic!("expected a dropped connection, got {frame:?}"),
    }
    let faults = sim.get("/sim/genesys/faults").await;
    assert_eq!(faults["integrations"]["drop"]["ws_drop_next"], false);
}

#[tokio::test]
async fn socket_closing_announces_then_closes() {
    let sim = Sim::start().await;
    sim.configure("closing", "http://127.0.0.1:9/hook", json!({}))
        .await;
    let token = sim.token("closing").await;
    let (_, mut ws) = open_channel(&sim, &token, &[]).await;
    ws.send(WsMessage::text(r#"{"message":"ping"}"#))
        .await
        .unwrap();
    next_event(&mut ws).await;
    sim.faults(
        json!({"integration_id": "closing", "ws_socket_closing_next": true,
                      "socket_closing_grace_ms": 50}),
    )
    .await;
    assert_eq!(
        next_event(&mut ws).await["topicName"],
        "v2.system.socket_closing"
    );
    let close = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert!(matches!(close, Some(Ok(WsMessage::Close(_)))), "{close:?}");
}
