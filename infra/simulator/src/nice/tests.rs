//! In-process scenarios: the whole NICE router on 127.0.0.1:0, a small axum
//! app as the relay (token endpoint + callbacks), real HTTP clients.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Json;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// The relay side: issues `tok-N` for the right client credentials, accepts
/// callbacks carrying the latest token, answers from a status script.
#[derive(Clone, Default)]
struct Relay {
    calls: Arc<Mutex<Vec<(String, String, Value)>>>,
    issued: Arc<Mutex<u32>>,
    accepted: Arc<Mutex<Vec<(String, Value)>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Relay {
    async fn start() -> (String, Self) {
        let relay = Self::default();
        async fn token(State(r): State<Relay>, body: Bytes) -> (StatusCode, Json<Value>) {
            let form = String::from_utf8_lossy(&body).to_string();
            r.calls
                .lock()
                .unwrap()
                .push(("token".into(), String::new(), json!(form)));
            if !form.contains("client_id=relay-client")
                || !form.contains("client_secret=relay-secret")
            {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "invalid_client"})),
                );
            }
            let mut n = r.issued.lock().unwrap();
            *n += 1;
            (
                StatusCode::OK,
                Json(
                    json!({"access_token": format!("tok-{n}"), "token_type": "bearer", "expires_in": 30}),
                ),
            )
        }
        async fn callback(
            State(r): State<Relay>,
            Path(rest): Path<String>,
            headers: HeaderMap,
            Json(body): Json<Value>,
        ) -> (StatusCode, Json<Value>) {
            let auth = headers
                .get("authorization")
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_string();
            r.calls
                .lock()
                .unwrap()
                .push((rest.clone(), auth.clone(), body.clone()));
            let expected = format!("Bearer tok-{}", r.issued.lock().unwrap());
            if auth != expected {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "bad token"})),
                );
            }
            let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
            if status == 200 {
                r.accepted
                    .lock()
                    .unwrap()
                    .push((rest.clone(), body.clone()));
            }
            (
                StatusCode::from_u16(status).unwrap(),
                Json(
                    json!({"message": {"idOnExternalPlatform": format!("relay-{}", body["messageContent"]["payload"]["text"].as_str().unwrap_or("-"))}}),
                ),
            )
        }
        let router = axum::Router::new()
            .route("/hook/1.0/token", post(token))
            .route("/hook/{*rest}", post(callback))
            .with_state(relay.clone());
        (format!("{}/hook", serve(router).await), relay)
    }

    fn callbacks(&self) -> Vec<(String, String, Value)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0 != "token")
            .cloned()
            .collect()
    }

    fn texts(&self) -> Vec<String> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0.ends_with("outbound"))
            .filter_map(|c| {
                c.1["messageContent"]["payload"]["text"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    async fn wait(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:#?}",
                self.callbacks()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

struct Sim {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Sim {
    async fn start(callback: &str, channel: &str) -> Self {
        let base = serve(super::router(super::Nice::new())).await;
        let sim = Self::on(&base, callback, channel).await;
        sim
    }

    async fn on(base: &str, callback: &str, channel: &str) -> Self {
        let http = reqwest::Client::new();
        let cfg = json!({"brand_id": 1234, "channel_id": channel, "client_id": "cid", "client_secret": "csecret",
            "access_key_id": format!("ak-{channel}"), "access_key_secret": "aks", "callback_base_url": callback,
            "byoc_client_id": "relay-client", "byoc_client_secret": "relay-secret", "default_skill_id": 4001});
        let r = http
            .post(format!("{base}/sim/nice/integrations"))
            .json(&cfg)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let mut sim = Self {
            base: base.to_string(),
            http,
            token: String::new(),
        };
        sim.token = sim
            .fetch_token(&format!("ak-{channel}"), "aks")
            .await
            .unwrap();
        sim
    }

    async fn fetch_token(&self, key: &str, secret: &str) -> Result<String, u16> {
        let disc: Value = self
            .http
            .get(format!(
                "{}/nice/.well-known/openid-configuration",
                self.base
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let r = self
            .http
            .post(disc["token_endpoint"].as_str().unwrap())
            .basic_auth("cid", Some("csecret"))
            .form(&[
                ("grant_type", "password"),
                ("username", key),
                ("password", secret),
            ])
            .send()
            .await
            .unwrap();
        if !r.status().is_success() {
            return Err(r.status().as_u16());
        }
        let v: Value = r.json().await.unwrap();
        assert!(v["id_token"].as_str().unwrap().split('.').count() == 3);
        Ok(v["access_token"].as_str().unwrap().to_string())
    }

    async fn dfo(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}/nice/dfo/3.0{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn post_message(
        &self,
        channel: &str,
        thread: &str,
        id: &str,
        text: &str,
    ) -> (u16, Value) {
        self.dfo(reqwest::Method::POST, &format!("/channels/{channel}/messages"), Some(json!({
            "idOnExternalPlatform": id, "thread": {"idOnExternalPlatform": thread},
            "messageContent": {"type": "TEXT", "payload": {"text": text}},
            "direction": "inbound",
            "authorEndUserIdentity": {"idOnExternalPlatform": "u-1", "firstName": "Ada", "lastName": ""}}))).await
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/sim/nice/conversations/{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "{path}: {}",
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    async fn view(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/sim/nice/conversations/{id}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn faults(&self, body: Value) -> u16 {
        self.http
            .post(format!("{}/sim/nice/faults", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[test]
fn agent_message_ids_match_the_adapter_vector() {
    // Same vector in functions/common/src/providers/nice/webhook.rs.
    assert_eq!(
        super::agent_message_id("conv-1", Some(1001), "2026-11-23T10:01:02.123Z", "Hi Ada"),
        "out-ec7173296474b8226f4f57b1006656aa"
    );
}

#[tokio::test]
async fn access_key_token_guards_the_dfo_api() {
    let sim = Sim::start("http://127.0.0.1:9/hook", "chat_a").await;
    assert_eq!(sim.fetch_token("ak-chat_a", "wrong").await, Err(401));
    assert_eq!(sim.fetch_token("nobody", "aks").await, Err(401));
    let (s, channels) = sim.dfo(reqwest::Method::GET, "/channels", None).await;
    assert_eq!(s, 200);
    assert_eq!(channels[0]["id"], "chat_a");
    let r = sim
        .http
        .get(format!("{}/nice/dfo/3.0/channels", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let conf: Value = sim
        .http
        .get(format!(
            "{}/nice/.well-known/cxone-configuration?tenantId=tenant-1234",
            sim.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(conf["area"], "na1");
}

#[tokio::test]
async fn messages_create_a_contact_that_carries_context_and_routing() {
    let sim = Sim::start("http://127.0.0.1:9/hook", "chat_a").await;
    let (s, first) = sim
        .post_message(
            "chat_a",
            "conv-1",
            "conv-1:handoff",
            "[Handoff] Customer: broken",
        )
        .await;
    assert_eq!(s, 200, "{first}");
    let cid = first["contactId"].as_str().unwrap().to_string();
    let (_, second) = sim.post_message("chat_a", "conv-1", "m-1", "hello").await;
    assert_eq!(second["contactId"], cid.as_str());
    let (s, _) = sim
        .dfo(
            reqwest::Method::PUT,
            &format!("/contacts/{cid}/custom-fields"),
            Some(json!({"customFields": [{"ident": "customer_id", "value": "C-42"}]})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = sim
        .dfo(
            reqwest::Method::PUT,
            &format!("/contacts/{cid}/routing-queue"),
            Some(json!({"skillId": 77})),
        )
        .await;
    assert_eq!(s, 200);
    let (_, contact) = sim
        .dfo(reqwest::Method::GET, &format!("/contacts/{cid}"), None)
        .await;
    assert_eq!(
        (
            contact["status"].as_str(),
            contact["routingQueueId"].as_u64()
        ),
        (Some("new"), Some(77))
    );
    assert_eq!(contact["threadIdOnExternalPlatform"], "conv-1");
    let view = sim.view(&cid).await;
    assert_eq!(view["state"], "queued");
    assert_eq!(view["context"]["customer_id"], "C-42");
    assert_eq!(view["customer"]["display_name"], "Ada");
    assert_eq!(view["messages"].as_array().unwrap().len(), 2);
    // The same external id again is stored again, and reported.
    sim.post_message("chat_a", "conv-1", "m-1", "hello").await;
    assert_eq!(
        sim.view(&cid).await["duplicate_inbound_message_ids"],
        json!(["m-1"])
    );
    // Validation and isolation.
    let (s, _) = sim.dfo(reqwest::Method::POST, "/channels/chat_a/messages", Some(json!({
        "thread": {"idOnExternalPlatform": "conv-1"}, "messageContent": {"type": "IMAGE", "payload": {}},
        "authorEndUserIdentity": {"idOnExternalPlatform": "u-1"}}))).await;
    assert_eq!(s, 400);
    assert_eq!(
        sim.post_message("chat_other", "conv-1", "x", "hi").await.0,
        404
    );
    let (_, search) = sim
        .dfo(
            reqwest::Method::GET,
            "/contacts?status[]=new&status[]=open",
            None,
        )
        .await;
    assert_eq!(search["hits"], 1);
    assert_eq!(search["data"][0]["id"], cid.as_str());
}

#[tokio::test]
async fn search_pages_and_a_closed_thread_opens_a_new_contact() {
    let sim = Sim::start("http://127.0.0.1:9/hook", "chat_a").await;
    for i in 0..30 {
        sim.post_message("chat_a", &format!("t-{i}"), "m", "hi")
            .await;
    }
    let (_, page1) = sim
        .dfo(reqwest::Method::GET, "/contacts?status[]=new", None)
        .await;
    assert_eq!(
        (
            page1["hits"].as_u64(),
            page1["data"].as_array().unwrap().len()
        ),
        (Some(30), 25)
    );
    let token = page1["scrollToken"].as_str().unwrap();
    let (_, page2) = sim
        .dfo(
            reqwest::Method::GET,
            &format!("/contacts?status[]=new&scrollToken={token}"),
            None,
        )
        .await;
    assert_eq!(page2["data"].as_array().unwrap().len(), 5);
    assert_eq!(page2["scrollToken"], "");
    let first = page1["data"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = sim
        .dfo(
            reqwest::Method::PUT,
            &format!("/contacts/{first}/status"),
            Some(json!({"status": "closed"})),
        )
        .await;
    assert_eq!(s, 200);
    let v = sim.view(&first).await;
    assert_eq!(
        (v["state"].as_str(), v["customer_connected"].as_bool()),
        (Some("ended"), Some(false))
    );
    let (_, again) = sim.post_message("chat_a", "t-0", "m2", "back").await;
    assert_ne!(again["contactId"], first.as_str());
    assert_eq!(
        sim.dfo(
            reqwest::Method::PUT,
            &format!("/contacts/{first}/status"),
            Some(json!({"status": "bogus"}))
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn api_faults_token_expiry_and_missing_contact() {
    let sim = Sim::start("http://127.0.0.1:9/hook", "chat_a").await;
    assert_eq!(
        sim.faults(
            json!({"integration_id": "chat_a", "api_fail_next": {"status": 429, "count": 2}})
        )
        .await,
        200
    );
    assert_eq!(sim.post_message("chat_a", "c", "1", "a").await.0, 429);
    assert_eq!(sim.post_message("chat_a", "c", "1", "a").await.0, 429);
    assert_eq!(sim.post_message("chat_a", "c", "1", "a").await.0, 200);
    sim.faults(json!({"integration_id": "chat_a", "token_expired": 1}))
        .await;
    assert_eq!(sim.post_message("chat_a", "c", "2", "b").await.0, 401);
    assert_eq!(sim.post_message("chat_a", "c", "2", "b").await.0, 200);
    sim.faults(json!({"integration_id": "chat_a", "create_returns_no_contact": 1}))
        .await;
    let (_, answer) = sim.post_message("chat_a", "c", "3", "c").await;
    assert!(answer.get("contactId").is_none());
    sim.faults(json!({"integration_id": "chat_a", "expire_tokens_now": true}))
        .await;
    assert_eq!(sim.post_message("chat_a", "c", "4", "d").await.0, 401);
    assert_eq!(sim.faults(json!({"ws_silent": true})).await, 400);
    assert_eq!(sim.faults(json!({"no_such_knob": 1})).await, 400);
}

#[tokio::test]
async fn tenants_are_isolated() {
    let base = serve(super::router(super::Nice::new())).await;
    let a = Sim::on(&base, "http://127.0.0.1:9/hook", "chat_a").await;
    let b = Sim::on(&base, "http://127.0.0.1:9/hook", "chat_b").await;
    let (_, m) = a.post_message("chat_a", "conv-1", "1", "hi").await;
    let cid = m["contactId"].as_str().unwrap();
    assert_eq!(
        b.dfo(reqwest::Method::GET, &format!("/contacts/{cid}"), None)
            .await
            .0,
        404
    );
    assert_eq!(b.post_message("chat_a", "conv-1", "1", "hi").await.0, 404);
    let list: Value = a
        .http
        .get(format!(
            "{base}/sim/nice/conversations?integration_id=chat_b"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn agent_replies_reach_the_relay_with_its_token() {
    let (hook, relay) = Relay::start().await;
    let sim = Sim::start(&hook, "chat_a").await;
    let (_, m) = sim.post_message("chat_a", "conv-1", "1", "hi").await;
    let cid = m["contactId"].as_str().unwrap().to_string();
    let v = sim
        .control(&format!("{cid}/accept"), json!({"agent_name": "Sam"}))
        .await;
    assert_eq!(
        (v["state"].as_str(), v["agent"]["name"].as_str()),
        (Some("active"), Some("Sam"))
    );
    let (_, contact) = sim
        .dfo(reqwest::Method::GET, &format!("/contacts/{cid}"), None)
        .await;
    assert_eq!(contact["inboxAssigneeUser"]["nickname"], "Sam");
    assert_eq!(contact["status"], "open");
    let sent = sim
        .control(&format!("{cid}/messages"), json!({"text": "Hi Ada"}))
        .await;
    assert!(sent["id"].as_str().unwrap().starts_with("out-"));
    relay
        .wait("the outbound", |r| r.texts() == ["Hi Ada"])
        .await;
    let calls = relay.calls.lock().unwrap().clone();
    assert!(calls[0]
        .2
        .as_str()
        .unwrap()
        .contains("grant_type=client_credentials"));
    let out = &relay.callbacks()[0];
    assert_eq!(out.0, "2.0/channel/chat_a/outbound");
    assert_eq!(out.2["thread"]["idOnExternalPlatform"], "conv-1");
    assert_eq!(out.2["authorUser"]["nickname"], "Sam");
    assert_eq!(out.2["endUserRecipients"][0]["idOnExternalPlatform"], "u-1");
    // The digest the adapter computes over the same fields.
    let expected = super::agent_message_id(
        "conv-1",
        out.2["authorUser"]["id"].as_u64(),
        out.2["createdAtWithMilliseconds"].as_str().unwrap(),
        "Hi Ada",
    );
    assert_eq!(sent["id"], expected.as_str());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let v = sim.view(&cid).await;
    assert_eq!(v["deliveries"][0]["relay_message_id"], "relay-Hi Ada");
    // Agent typing goes as a sender action on the thread.
    sim.control(&format!("{cid}/typing"), json!({})).await;
    relay
        .wait("typing", |r| {
            r.callbacks().iter().any(|c| {
                c.0 == "1.0/channel/chat_a/thread/conv-1/sender-action"
                    && c.2["senderAction"]["action"] == "isTypingOn"
            })
        })
        .await;
    // The relay's customer typing shows in the view.
    let (s, _) = sim
        .dfo(
            reqwest::Method::POST,
            "/channels/chat_a/threads/conv-1/sender-actions",
            Some(json!({"action": "isTypingOn"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(sim.view(&cid).await["customer_typing"], true);
}

#[tokio::test]
async fn callback_faults_duplicate_reorder_stale_token_and_retry() {
    let (hook, relay) = Relay::start().await;
    let sim = Sim::start(&hook, "chat_a").await;
    let (_, m) = sim.post_message("chat_a", "conv-1", "1", "hi").await;
    let cid = m["contactId"].as_str().unwrap().to_string();
    sim.control(&format!("{cid}/accept"), json!({"agent_name": "Sam"}))
        .await;
    sim.faults(json!({"integration_id": "chat_a", "webhook_duplicate_next": 1, "webhook_out_of_order_next": 1})).await;
    for t in ["a1", "a2", "a3"] {
        sim.control(&format!("{cid}/messages"), json!({"text": t}))
            .await;
    }
    // a1 is held behind a2 and delivered twice.
    relay.wait("three messages", |r| r.texts().len() >= 4).await;
    assert_eq!(relay.texts(), vec!["a2", "a1", "a1", "a3"]);
    // A stale bearer is refused; CXone fetches a new token and retries once.
    sim.faults(json!({"integration_id": "chat_a", "webhook_bad_signature_next": 1}))
        .await;
    let issued = *relay.issued.lock().unwrap();
    sim.control(&format!("{cid}/messages"), json!({"text": "a4"}))
        .await;
    relay
        .wait("a4", |r| r.texts().contains(&"a4".to_string()))
        .await;
    assert_eq!(*relay.issued.lock().unwrap(), issued + 1);
    // 5xx answers are retried.
    relay.script.lock().unwrap().extend([503, 500]);
    sim.control(&format!("{cid}/messages"), json!({"text": "a5"}))
        .await;
    relay
        .wait("a5", |r| r.texts().contains(&"a5".to_string()))
        .await;
    let stats: Value = sim
        .http
        .get(format!("{}/sim/nice/stats?integration_id=chat_a", sim.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats["callback_retries"].as_u64().unwrap() >= 2, "{stats}");
}

#[tokio::test]
async fn transfer_leave_and_agent_end() {
    let sim = Sim::start("http://127.0.0.1:9/hook", "chat_a").await;
    let (_, m) = sim.post_message("chat_a", "conv-1", "1", "hi").await;
    let cid = m["contactId"].as_str().unwrap().to_string();
    sim.control(&format!("{cid}/accept"), json!({"agent_name": "Sam"}))
        .await;
    let sam = sim.view(&cid).await["agent"]["id"].clone();
    let v = sim
        .control(&format!("{cid}/transfer"), json!({"agent_name": "Kim"}))
        .await;
    assert_eq!(v["agent"]["name"], "Kim");
    assert_ne!(v["agent"]["id"], sam);
    let v = sim.control(&format!("{cid}/leave"), json!({})).await;
    assert_eq!(
        (v["state"].as_str(), v["status"].as_str()),
        (Some("queued"), Some("open"))
    );
    let (_, contact) = sim
        .dfo(reqwest::Method::GET, &format!("/contacts/{cid}"), None)
        .await;
    assert_eq!(contact["inboxAssignee"], Value::Null);
    let v = sim.control(&format!("{cid}/end"), json!({})).await;
    assert_eq!(
        (v["state"].as_str(), v["status"].as_str()),
        (Some("ended"), Some("closed"))
    );
    let page = sim
        .http
        .get(format!("{}/nice/desktop", sim.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("/sim/nice/conversations") && page.contains("id=\"transcript\""));
}
