//! In-process scenarios: the whole server on 127.0.0.1:0, a small axum
//! receiver as the webhook target, real HTTP clients.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "webex-webhook-secret-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(5);

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

impl Receiver {
    async fn start() -> (String, Self) {
        let r = Self::default();
        async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
            r.got.lock().unwrap().push((headers, body));
            StatusCode::OK
        }
        let router = axum::Router::new()
            .route("/hooks/webex", axum::routing::post(receive))
            .with_state(r.clone());
        (format!("{}/hooks/webex", serve(router).await), r)
    }

    fn all(&self) -> Vec<(HeaderMap, Value)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(h, b)| (h.clone(), serde_json::from_slice(b).unwrap()))
            .collect()
    }

    fn raw(&self) -> Vec<(HeaderMap, Bytes)> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize, kind: &str) -> Vec<(HeaderMap, Value)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found: Vec<_> = self
                .all()
                .into_iter()
                .filter(|(_, e)| e["type"] == kind)
                .collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {n} {kind}; got {:?}",
                self.types()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn types(&self) -> Vec<String> {
        self.all()
            .iter()
            .map(|(_, e)| e["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }
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

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
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

    async fn configure(&self, org: &str, url: &str) {
        let (status, body) = self
            .post(
                "/sim/webex/integrations",
                None,
                json!({"org_id": org, "client_id": format!("cid-{org}"), "client_secret": "cs",
                "refresh_token": format!("rt-{org}"), "business_address": format!("support@{org}.example"),
                "channel_name": "ai-handoff", "webhook_url": url, "webhook_secret": SECRET}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn token_with(&self, org: &str, refresh: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/webex/v1/access_token", self.base))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", &format!("cid-{org}")),
                ("client_secret", "cs"),
                ("refresh_token", refresh),
            ])
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    async fn token(&self, org: &str) -> String {
        let (status, body) = self.token_with(org, &format!("rt-{org}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["expires_in"], 1_209_600);
        body["access_token"].as_str().unwrap().to_string()
    }

    async fn create(&self, org: &str, token: &str, origin: &str) -> (u16, Value) {
        self.post(
            "/webex/v2/tasks",
            Some(token),
            json!({"origin": {"id": origin, "name": "Ada"},
                "destination": {"id": format!("support@{org}.example"), "type": "businessAddress"},
                "channelType": "customMessaging", "channel": "ai-handoff",
                "globalVariables": {"customer_id": "C-42", "reason": "refund"},
                "channelParams": {"type": "text", "message": {"aliasId": format!("a-{origin}"),
                    "text": "[Handoff]\nCustomer: hi", "timestamp": 1_779_785_508_649_i64}}}),
        )
        .await
    }

    async fn faults(&self, body: Value) {
        let (status, b) = self.post("/sim/webex/faults", None, body).await;
        assert_eq!(status, 200, "{b}");
    }
}

fn signed_ok(headers: &HeaderMap, body: &[u8]) -> bool {
    headers
        .get("x-webexcc-signature")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s == super::emit::sign(SECRET, body))
}

fn append_body(alias: &str, text: &str) -> Value {
    json!({"mediaType": "customMessaging", "channelParams": {"type": "text",
        "message": {"aliasId": alias, "text": text, "timestamp": 1_779_785_508_650_i64}}})
}

#[tokio::test]
async fn task_lifecycle_is_signed_and_visible() {
    let sim = Sim::start().await;
    let (url, rx) = Receiver::start().await;
    sim.configure("org-a", &url).await;
    let token = sim.token("org-a").await;
    let (status, created) = sim.create("org-a", &token, "conv-1").await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["meta"]["orgId"], "org-a");
    let task = created["data"]["id"].as_str().unwrap().to_string();
    rx.wait_for(1, "task:parked").await;
    assert_eq!(rx.types(), vec!["task:new", "task:parked"]);
    for (headers, body) in rx.raw() {
        assert!(signed_ok(&headers, &body), "hex HMAC of the raw body");
        let env: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            headers["x-webexcc-timestamp"].to_str().unwrap(),
            env["comciscotimestamp"].to_string(),
            "V2 timestamp equals the body's"
        );
        assert_eq!(env["specversion"], "1.0");
        assert_eq!(env["data"]["taskId"], task.as_str());
    }
    let view = sim.get(&format!("/sim/webex/conversations/{task}")).await;
    assert_eq!(view["state"], "queued");
    assert_eq!(view["integration_id"], "org-a");
    assert_eq!(view["context"]["customer_id"], "C-42");
    assert_eq!(view["messages"][0]["direction"], "inbound");
    assert!(view["messages"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Customer: hi"));

    let (s, _) = sim
        .post(
            &format!("/sim/webex/conversations/{task}/accept"),
            None,
            json!({"agent_name": "Sam"}),
        )
        .await;
    assert_eq!(s, 200);
    let connected = rx.wait_for(1, "task:connected").await;
    assert_eq!(connected[0].1["data"]["agentName"], "Sam");
    assert!(rx.types().contains(&"task:connect".to_string()));

    let (s, sent) = sim
        .post(
            &format!("/sim/webex/conversations/{task}/messages"),
            None,
            json!({"text": "Hello Ada"}),
        )
        .await;
    assert_eq!(s, 200);
    let msg = rx.wait_for(1, "task-message:appended").await;
    let (headers, env) = &msg[0];
    assert_eq!(headers["x-webexcc-webhook-version"], "task-message:1.0.0");
    assert!(
        headers.get("x-webexcc-timestamp").is_none(),
        "asset webhook"
    );
    assert_eq!(env["data"]["messageDirection"], "OUTBOUND");
    assert_eq!(env["data"]["senderType"], "agent");
    assert_eq!(env["data"]["senderId"], connected[0].1["data"]["agentId"]);
    assert_eq!(
        env["data"]["channelParams"]["message"]["aliasId"],
        sent["id"]
    );

    let (s, typing) = sim
        .post(
            &format!("/sim/webex/conversations/{task}/typing"),
            None,
            json!({}),
        )
        .await;
    assert_eq!((s, &typing["sent"]), (200, &json!(false)));

    let (s, appended) = sim
        .post(
            &format!("/webex/v2/tasks/{task}/messages"),
            Some(&token),
            append_body("m-1", "message 1"),
        )
        .await;
    assert_eq!(s, 202, "{appended}");
    assert_eq!(appended["data"]["id"], "m-1");
    let echoes = rx.wait_for(2, "task-message:appended").await;
    assert_eq!(echoes[1].1["data"]["messageDirection"], "INBOUND");
    let (s, _) = sim
        .post(
            &format!("/webex/v2/tasks/{task}/messages"),
            Some(&token),
            append_body("m-1", "message 1"),
        )
        .await;
    assert_eq!(s, 202, "a repeated aliasId is recorded, not appended");

    let (s, _) = sim
        .post(
            &format!("/webex/v1/tasks/{task}/end"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(s, 202);
    let ended = rx.wait_for(1, "task:ended").await;
    assert_eq!(ended[0].1["data"]["terminatingParty"], "Customer");
    let view = sim.get(&format!("/sim/webex/conversations/{task}")).await;
    assert_eq!(view["state"], "ended");
    assert_eq!(view["customer_connected"], false);
    assert_eq!(view["duplicate_inbound_message_ids"], json!(["m-1"]));
    let (s, _) = sim
        .post(
            &format!("/webex/v2/tasks/{task}/end"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn transfer_leave_and_agent_end() {
    let sim = Sim::start().await;
    let (url, rx) = Receiver::start().await;
    sim.configure("org-t", &url).await;
    let token = sim.token("org-t").await;
    let task = sim.create("org-t", &token, "conv-t").await.1["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let act = |a: &'static str, body: Value| {
        let path = format!("/sim/webex/conversations/{task}/{a}");
        let sim = &sim;
        async move { sim.post(&path, None, body).await.0 }
    };
    assert_eq!(
        act("messages", json!({"text": "x"})).await,
        409,
        "accept first"
    );
    assert_eq!(
        act("messages", json!({"text": "menu", "bot": true})).await,
        200
    );
    let flow = rx.wait_for(1, "task-message:appended").await;
    assert_eq!(flow[0].1["data"]["senderType"], "system");
    assert!(flow[0].1["data"].get("senderId").is_none());
    assert_eq!(act("accept", json!({"agent_name": "Sam"})).await, 200);
    assert_eq!(act("transfer", json!({"agent_name": "Kim"})).await, 200);
    let connected = rx.wait_for(2, "task:connected").await;
    assert_eq!(connected[1].1["data"]["agentName"], "Kim");
    assert_ne!(
        connected[0].1["data"]["agentId"],
        connected[1].1["data"]["agentId"]
    );
    assert_eq!(act("leave", json!({})).await, 200);
    rx.wait_for(2, "task:parked").await;
    assert_eq!(act("accept", json!({"agent_name": "Sam"})).await, 200);
    assert_eq!(act("end", json!({})).await, 200);
    let ended = rx.wait_for(1, "task:ended").await;
    assert_eq!(ended[0].1["data"]["terminatingParty"], "Agent");
    assert_eq!(act("accept", json!({})).await, 409);
}

#[tokio::test]
async fn tokens_expire_rotate_and_are_per_org() {
    let sim = Sim::start().await;
    let (url, _rx) = Receiver::start().await;
    sim.configure("org-k", &url).await;
    sim.configure("org-l", &url.replace("webex", "webex-l"))
        .await;
    let token = sim.token("org-k").await;
    let (s, created) = sim.create("org-k", &token, "conv-k").await;
    assert_eq!(s, 201);
    let task = created["data"]["id"].as_str().unwrap().to_string();
    // Another org's token does not see this task.
    let other = sim.token("org-l").await;
    let (s, _) = sim
        .post(
            &format!("/webex/v2/tasks/{task}/messages"),
            Some(&other),
            append_body("x", "x"),
        )
        .await;
    assert_eq!(s, 404);
    sim.faults(json!({"integration_id": "org-k", "expire_tokens_now": true}))
        .await;
    let (s, body) = sim.create("org-k", &token, "conv-k2").await;
    assert_eq!((s, body["message"].as_str()), (401, Some("Invalid Token")));
    let (s, _) = sim
        .post(
            &format!("/webex/v2/tasks/{task}/messages"),
            Some(&other),
            append_body("y", "y"),
        )
        .await;
    assert_eq!(s, 404, "org-l's token survived the scoped expiry");
    // Rotation: the new refresh token works, the old one is revoked.
    sim.faults(json!({"integration_id": "org-k", "rotate_refresh": true}))
        .await;
    let (s, body) = sim.token_with("org-k", "rt-org-k").await;
    assert_eq!(s, 200);
    let rotated = body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rotated, "rt-org-k");
    assert_eq!(sim.token_with("org-k", "rt-org-k").await.0, 400);
    let (s, body) = sim.token_with("org-k", &rotated).await;
    assert_eq!(s, 200);
    let newest = body["refresh_token"].as_str().unwrap().to_string();
    let (s, _) = sim.token_with("org-l", &newest).await;
    assert_eq!(s, 401, "another org's client");
}

#[tokio::test]
async fn validation_and_async_failures() {
    let sim = Sim::start().await;
    let (url, rx) = Receiver::start().await;
    sim.configure("org-v", &url).await;
    let token = sim.token("org-v").await;
    let mut bad = json!({"origin": {"id": "c"}, "destination": {"id": "support@org-v.example", "type": "businessAddress"},
        "channelType": "chat", "channel": "ai-handoff",
        "channelParams": {"type": "text", "message": {"aliasId": "a", "text": "hi", "timestamp": 1}}});
    assert_eq!(
        sim.post("/webex/v2/tasks", Some(&token), bad.clone())
            .await
            .0,
        400
    );
    bad["channelType"] = json!("customMessaging");
    bad["channelParams"]["message"]
        .as_object_mut()
        .unwrap()
        .remove("aliasId");
    assert_eq!(
        sim.post("/webex/v2/tasks", Some(&token), bad.clone())
            .await
            .0,
        400
    );
    assert_eq!(sim.post("/webex/v3/tasks", Some(&token), bad).await.0, 404);
    assert_eq!(sim.post("/webex/v2/tasks", None, json!({})).await.0, 401);
    // Unknown destination: accepted, then task:failed.
    let (s, _) = sim
        .post(
            "/webex/v2/tasks",
            Some(&token),
            json!({"origin": {"id": "c"}, "destination": {"id": "nobody@x", "type": "businessAddress"},
            "channelType": "customMessaging", "channel": "ai-handoff",
            "channelParams": {"type": "text", "message": {"aliasId": "a", "text": "hi", "timestamp": 1}}}),
        )
        .await;
    assert_eq!(s, 201);
    let failed = rx.wait_for(1, "task:failed").await;
    assert_eq!(failed[0].1["data"]["reason"], "CHANNEL_ASSET_UNDEFINED");
    // Same first message again = the same task; another one while open = already open.
    let first = sim.create("org-v", &token, "conv-v").await.1;
    let again = sim.create("org-v", &token, "conv-v").await.1;
    assert_eq!(first["data"]["id"], again["data"]["id"]);
    let other = json!({"origin": {"id": "conv-v"},
        "destination": {"id": "support@org-v.example", "type": "businessAddress"},
        "channelType": "customMessaging", "channel": "ai-handoff",
        "channelParams": {"type": "text", "message": {"aliasId": "another", "text": "hi", "timestamp": 1}}});
    assert_eq!(
        sim.post("/webex/v2/tasks", Some(&token), other).await.0,
        201
    );
    let failed = rx.wait_for(2, "task:failed").await;
    assert_eq!(failed[1].1["data"]["reason"], "CONVERSATION_ALREADY_OPEN");
    // append_fail_next: accepted, then append-failed.
    let task = first["data"]["id"].as_str().unwrap();
    sim.faults(json!({"integration_id": "org-v", "append_fail_next": 1}))
        .await;
    let (s, _) = sim
        .post(
            &format!("/webex/v2/tasks/{task}/messages"),
            Some(&token),
            append_body("m-9", "x"),
        )
        .await;
    assert_eq!(s, 202);
    let af = rx.wait_for(1, "task-message:append-failed").await;
    assert_eq!(af[0].1["data"]["reason"], "INVALID_CONTENT");
    // Subscriptions: secret length and URL rules.
    let sub = |secret: &str, url: &str| {
        json!({"name": "s", "eventTypes": ["task:new"], "destinationUrl": url,
            "secret": secret, "resourceVersion": "task:1.0.0"})
    };
    let u = format!("{url}/x");
    assert_eq!(
        sim.post("/webex/v1/subscriptions", Some(&token), sub("short", &u))
            .await
            .0,
        400
    );
    assert_eq!(
        sim.post(
            "/webex/v1/subscriptions",
            Some(&token),
            sub(SECRET, &format!("{u}?q=1"))
        )
        .await
        .0,
        400
    );
    let (s, created) = sim
        .post("/webex/v1/subscriptions", Some(&token), sub(SECRET, &u))
        .await;
    assert_eq!(s, 201, "{created}");
    assert!(created.get("secret").is_none());
    let listed = sim
        .http
        .get(format!("{}/webex/v1/subscriptions", sim.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "v1 and v2 are separate"
    );
}

#[tokio::test]
async fn webhook_faults_duplicate_reorder_and_bad_signature() {
    let sim = Sim::start().await;
    let (url, rx) = Receiver::start().await;
    sim.configure("org-f", &url).await;
    let token = sim.token("org-f").await;
    let task = sim.create("org-f", &token, "conv-f").await.1["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    rx.wait_for(1, "task:parked").await;
    sim.post(
        &format!("/sim/webex/conversations/{task}/accept"),
        None,
        json!({"agent_name": "Sam"}),
    )
    .await;
    rx.wait_for(1, "task:connected").await;
    sim.faults(
        json!({"integration_id": "org-f", "webhook_duplicate_next": 1,
        "webhook_out_of_order_next": 1}),
    )
    .await;
    let mut ids = Vec::new();
    for i in 1..=3 {
        let (_, sent) = sim
            .post(
                &format!("/sim/webex/conversations/{task}/messages"),
                None,
                json!({"text": format!("agent {i}")}),
            )
            .await;
        ids.push(sent["id"].as_str().unwrap().to_string());
    }
    let got = rx.wait_for(4, "task-message:appended").await;
    let order: Vec<String> = got
        .iter()
        .map(|(_, e)| {
            e["data"]["channelParams"]["message"]["aliasId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        order.iter().filter(|a| **a == ids[0]).count(),
        2,
        "{order:?}"
    );
    assert_ne!(order[0], ids[0], "the first one was held back: {order:?}");
    sim.faults(json!({"integration_id": "org-f", "webhook_bad_signature_next": 1}))
        .await;
    sim.post(
        &format!("/sim/webex/conversations/{task}/end"),
        None,
        json!({}),
    )
    .await;
    rx.wait_for(1, "task:ended").await;
    let (headers, body) = rx.raw().pop().unwrap();
    assert!(!signed_ok(&headers, &body));
    let snapshot = sim.get("/sim/webex/faults").await;
    assert_eq!(
        snapshot["integrations"]["org-f"]["webhook_bad_signature_next"],
        0
    );
    assert_eq!(
        sim.post("/sim/webex/faults", None, json!({"ws_silent": true}))
            .await
            .0,
        400
    );
    let stats = sim.get("/sim/webex/stats?integration_id=org-f").await;
    assert_eq!(stats["tasks_created"], 1);
    assert_eq!(stats["agent_messages"], 3);
}

#[tokio::test]
async fn desktop_page_has_the_shared_element_ids() {
    let sim = Sim::start().await;
    let page = sim
        .http
        .get(format!("{}/webex/desktop", sim.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for id in [
        "conversations",
        "detail",
        "transcript",
        "reply",
        "send",
        "accept",
        "leave",
        "transfer",
        "transfer-to",
        "end",
        "agent-name",
        "context",
        "customer-typing",
        "bot",
        "state",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(page.contains("/sim/webex/conversations"));
}
