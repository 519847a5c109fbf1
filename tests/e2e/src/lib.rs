//! Harness for the end-to-end tests: the local stack (started by
//! `infra/test.sh`) is found through environment variables; each test makes
//! its own tenant with its own secrets, simulator integration and client-event
//! receiver, so tests run in parallel without seeing each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use handoff_common::events::ClientEvent;
use handoff_common::signature::{
    verify_client_event, CLIENT_EVENT_SIGNATURE_HEADER, CLIENT_EVENT_TIMESTAMP_HEADER,
};
use serde_json::{json, Value};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through infra/test.sh, which starts the local stack")
    })
}

fn random_hex(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_owned()
}

/// Client events received by one tenant's runtime endpoint.
#[derive(Default)]
pub struct Received {
    /// Every accepted POST, in arrival order (redeliveries included).
    pub deliveries: Vec<ClientEvent>,
    /// When each delivery arrived (same index as `deliveries`).
    pub arrived: Vec<Instant>,
    pub rejected: usize,
    /// Answer 503 to this many pushes (the relay must retry).
    pub fail_next: usize,
    /// Answer 503 to this share of pushes, at random (the soak's callback faults).
    pub fail_ratio: f64,
    /// Pushes answered 503 by `fail_ratio`.
    pub failed_at_random: usize,
}

type Shared = Arc<Mutex<Received>>;

async fn receive(
    State((secret, shared)): State<(String, Shared)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let now = handoff_common::time::now_ms() / 1000;
    let mut r = shared.lock().unwrap();
    if !verify_client_event(
        secret.as_bytes(),
        &h(CLIENT_EVENT_TIMESTAMP_HEADER),
        &h(CLIENT_EVENT_SIGNATURE_HEADER),
        &body,
        now,
        300,
    ) {
        r.rejected += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if r.fail_next > 0 {
        r.fail_next -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if r.fail_ratio > 0.0 && handoff_common::chaos::draw() < r.fail_ratio {
        r.failed_at_random += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match serde_json::from_slice::<ClientEvent>(&body) {
        Ok(ev) => {
            r.deliveries.push(ev);
            r.arrived.push(Instant::now());
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

/// A platform under test: how its simulator is configured and addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Genesys,
    AmazonConnect,
    Zendesk,
    Salesforce,
    Nice,
    Webex,
}

impl Platform {
    pub const ALL: [Platform; 6] = [
        Self::Genesys,
        Self::AmazonConnect,
        Self::Zendesk,
        Self::Salesforce,
        Self::Nice,
        Self::Webex,
    ];

    pub fn integration_key(self) -> &'static str {
        match self {
            Self::Genesys => "genesys_integration",
            Self::AmazonConnect => "amazon_connect_integration",
            Self::Zendesk => "zendesk_integration",
            Self::Salesforce => "salesforce_integration",
            Self::Nice => "nice_integration",
            Self::Webex => "webex_integration",
        }
    }

    /// The simulator's path prefix (`/sim/{prefix}/…`).
    pub fn sim_prefix(self) -> &'static str {
        match self {
            Self::Genesys => "genesys",
            Self::AmazonConnect => "connect",
            Self::Zendesk => "zendesk",
            Self::Salesforce => "salesforce",
            Self::Nice => "nice",
            Self::Webex => "webex",
        }
    }

    /// What the adapter says it supports (the suite marks the rest NOT SUPPORTED).
    pub fn capabilities(self) -> handoff_common::providers::Capabilities {
        use handoff_common::providers::{
            amazon_connect, genesys, nice, salesforce, webex, zendesk, Provider,
        };
        match self {
            Self::Genesys => genesys::Genesys::new().capabilities(),
            Self::AmazonConnect => {
                amazon_connect::AmazonConnect::new(&aws_config::SdkConfig::builder().build())
                    .capabilities()
            }
            Self::Zendesk => zendesk::Zendesk::new().capabilities(),
            Self::Salesforce => salesforce::Salesforce::new().capabilities(),
            Self::Nice => nice::Nice::new().capabilities(),
            Self::Webex => webex::Webex::new().capabilities(),
        }
    }

    /// Routing hints in the start request.
    pub fn routing(self) -> Value {
        match self {
            Self::Zendesk => json!({"group_id": "6510", "tags": "billing"}),
            _ => json!({"queue": "billing"}),
        }
    }
}

/// Prints the suite's verdict on one capability of a platform.
pub fn verdict(platform: Platform, capability: &str, supported: bool) {
    let word = if supported {
        "supported, checked"
    } else {
        "NOT SUPPORTED by the platform (checked that nothing is emitted)"
    };
    let line = format!(
        "conformance {} {capability}: {word}",
        platform.integration_key()
    );
    println!("{line}");
    // infra/test.sh collects these into one summary per provider.
    if let Ok(path) = std::env::var("CONFORMANCE_REPORT") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// A tenant of its own, wired to the simulator and a receiver.
pub struct TestTenant {
    pub platform: Platform,
    /// The simulator's id for this tenant's integration (fault scoping).
    pub scope: String,
    pub account_id: String,
    pub project_id: String,
    pub client_env: String,
    pub integration_id: String,
    pub webhook_url: String,
    pub webhook_secret: String,
    pub lambda_url: String,
    pub sim_url: String,
    pub received: Shared,
    pub http: reqwest::Client,
    /// Secret values of this tenant that must never leave Secrets Manager.
    pub canaries: Vec<String>,
    /// NICE: the client id CXone presents at our token endpoint.
    pub webhook_client_id: String,
    /// Amazon Connect: the SNS topic its contact streaming publishes to.
    pub stream_topic: String,
}

pub async fn secrets_client() -> aws_sdk_secretsmanager::Client {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_secretsmanager::Client::new(&conf)
}

pub async fn put_secret(name: &str, value: &Value) {
    let client = secrets_client().await;
    let body = value.to_string();
    if client
        .create_secret()
        .name(name)
        .secret_string(&body)
        .send()
        .await
        .is_err()
    {
        client
            .put_secret_value()
            .secret_id(name)
            .secret_string(&body)
            .send()
            .await
            .expect("put secret");
    }
}

impl TestTenant {
    /// A fresh Genesys tenant (random account id) in `client_env`.
    pub async fn new(client_env: &str) -> Self {
        Self::on(Platform::Genesys, client_env).await
    }

    /// A fresh tenant of `platform` in `client_env`.
    pub async fn on(platform: Platform, client_env: &str) -> Self {
        Self::with_runtime(platform, client_env, json!({})).await
    }

    /// A fresh tenant whose `runtime` secret also holds `extra` (tenant
    /// settings such as `start_retry_secs`).
    pub async fn with_runtime(platform: Platform, client_env: &str, extra: Value) -> Self {
        let account_id = format!("t{}", random_hex(10));
        Self::build(platform, account_id, client_env, extra).await
    }

    /// Another environment of this tenant's account and project, with
    /// credentials and a simulator integration of its own.
    pub async fn sibling(&self, client_env: &str) -> Self {
        Self::build(
            self.platform,
            self.account_id.clone(),
            client_env,
            json!({}),
        )
        .await
    }

    async fn build(platform: Platform, account_id: String, client_env: &str, extra: Value) -> Self {
        let lambda_url = env("LAMBDA_URL");
        let sim_url = env("SIM_URL");
        let project_id = "support".to_owned();
        let received: Shared = Arc::default();
        let events_secret = format!("ev-{}", random_hex(24));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let events_url = format!("http://{}/events", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/events", post(receive))
            .with_state((events_secret.clone(), received.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let integration_id = format!("int-{}", random_hex(12));
        let client_id = format!("client-{}", random_hex(12));
        let client_secret = random_hex(24);
        let webhook_secret = format!("whsec-{}", random_hex(32));
        let mut canaries = vec![
            events_secret.clone(),
            client_secret.clone(),
            webhook_secret.clone(),
        ];
        let tenant_path = format!("{account_id}/{project_id}/{client_env}");
        let webhook_url = format!(
            "{lambda_url}/lambda-url/inbound-webhook/webhooks/{}/{tenant_path}",
            match platform {
                Platform::AmazonConnect => "amazon-connect",
                p => p.sim_prefix(),
            }
        );
        let mut runtime = json!({"events_url": events_url, "events_secret": events_secret,
                    "destinations": {"billing-desk": {platform.integration_key(): platform.routing()}}});
        if let (Some(r), Some(extra)) = (runtime.as_object_mut(), extra.as_object()) {
            r.extend(extra.clone());
        }
        put_secret(&format!("chat-handoff/{tenant_path}/runtime"), &runtime).await;
        let sim = |path: &str| format!("{sim_url}/sim/{}/{path}", platform.sim_prefix());
        let register = |path: &str, body: Value| {
            let req = http.post(sim(path)).json(&body);
            async move {
                let resp = req.send().await.unwrap();
                assert!(
                    resp.status().is_success(),
                    "sim {}: {}",
                    resp.status(),
                    resp.text().await.unwrap()
                );
            }
        };
        let mut webhook_client_id = String::new();
        let mut stream_topic = String::new();
        let (scope, integration) = match platform {
            Platform::Genesys => {
                register(
                    "integrations",
                    json!({"integration_id": integration_id, "client_id": client_id,
                    "client_secret": client_secret, "webhook_url": webhook_url,
                    "webhook_secret": webhook_secret, "typing_outbound": true}),
                )
                .await;
                (
                    integration_id.clone(),
                    json!({"api_base": format!("{sim_url}/genesys"),
                    "login_base": format!("{sim_url}/genesys/login"),
                    "client_id": client_id, "client_secret": client_secret,
                    "integration_id": integration_id, "webhook_secret": webhook_secret}),
                )
            }
            Platform::AmazonConnect => {
                let instance = format!("inst-{}", random_hex(12));
                let flow = format!("flow-{}", random_hex(8));
                let topic = format!(
                    "arn:aws:sns:us-east-1:123456789012:handoff-{}",
                    random_hex(8)
                );
                stream_topic = topic.clone();
                register(
                    "instances",
                    json!({"instance_id": instance, "contact_flow_ids": [flow]}),
                )
                .await;
                register("topics", json!({"topic_arn": topic,
                    "lambda_invoke_url": format!("{lambda_url}/2015-03-31/functions/inbound-webhook/invocations")})).await;
                (
                    instance.clone(),
                    json!({"instance_id": instance, "contact_flow_id": flow,
                    "streaming_topic_arn": topic, "region": "us-east-1"}),
                )
            }
            Platform::Zendesk => {
                let app = format!("app{}", random_hex(12));
                register("integrations", json!({"app_id": app, "key_id": client_id, "key_secret": client_secret,
                    "key_scope": "integration", "integration_id": integration_id, "webhook_url": webhook_url,
                    "webhook_secret": webhook_secret, "switchboard_integration_name": "ai-relay",
                    "deliver_standby_events": true})).await;
                (
                    app.clone(),
                    json!({"base_url": format!("{sim_url}/zendesk/sc"), "app_id": app,
                    "key_id": client_id, "key_secret": client_secret, "webhook_secret": webhook_secret,
                    "field_map": {"customer_id": "900001", "reason": "900002"}}),
                )
            }
            Platform::Salesforce => {
                // A line of the identity private key stands for the whole key.
                let pem =
                    include_str!("../../../infra/simulator/src/salesforce/test_identity_key.pem");
                canaries.push(pem.lines().nth(1).unwrap_or_default().to_owned());
                let jwks: Value = serde_json::from_str(include_str!(
                    "../../../infra/simulator/src/salesforce/test_identity_jwks.json"
                ))
                .unwrap();
                register(
                    "integrations",
                    json!({"integration_id": integration_id, "org_id": "00D5g000000abcdEAA",
                    "es_developer_name": integration_id, "auth_mode": "Auth", "identity_jwks": jwks,
                    "identity_issuer": "relay"}),
                )
                .await;
                (
                    integration_id.clone(),
                    json!({"scrt_base_url": format!("{sim_url}/salesforce"),
                    "org_id": "00D5g000000abcdEAA", "es_developer_name": integration_id,
                    "auth_mode": "verified", "identity_issuer": "relay", "identity_key_id": "relay-test-1",
                    "identity_private_key_pem": include_str!(
                        "../../../infra/simulator/src/salesforce/test_identity_key.pem")}),
                )
            }
            Platform::Nice => {
                let channel = format!("chat_{}", random_hex(12));
                let (key_id, key_secret) = (format!("ak-{}", random_hex(12)), random_hex(24));
                canaries.push(key_secret.clone());
                let byoc_client = format!("byoc-{}", random_hex(12));
                webhook_client_id = byoc_client.clone();
                register(
                    "integrations",
                    json!({"brand_id": 1234, "channel_id": channel,
                    "client_id": client_id, "client_secret": client_secret,
                    "access_key_id": key_id, "access_key_secret": key_secret,
                    "callback_base_url": webhook_url, "byoc_client_id": byoc_client,
                    "byoc_client_secret": webhook_secret}),
                )
                .await;
                (
                    channel.clone(),
                    json!({"brand_id": 1234, "channel_id": channel, "environment": "na1",
                    "base_url": format!("{sim_url}/nice"), "client_id": client_id, "client_secret": client_secret,
                    "access_key_id": key_id, "access_key_secret": key_secret,
                    "byoc_client_id": byoc_client, "byoc_client_secret": webhook_secret}),
                )
            }
            Platform::Webex => {
                let refresh = format!("rt-{integration_id}");
                let address = format!("support@{integration_id}.example");
                register("integrations", json!({"org_id": integration_id, "client_id": client_id,
                    "client_secret": client_secret, "refresh_token": refresh, "business_address": address,
                    "channel_name": "ai-handoff", "webhook_url": webhook_url,
                    "webhook_secret": webhook_secret})).await;
                (
                    integration_id.clone(),
                    json!({"api_base_url": format!("{sim_url}/webex"),
                    "identity_base_url": format!("{sim_url}/webex"), "client_id": client_id,
                    "client_secret": client_secret, "refresh_token": refresh, "org_id": integration_id,
                    "business_address": address, "channel_name": "ai-handoff",
                    "webhook_secret": webhook_secret}),
                )
            }
        };
        put_secret(
            &format!("chat-handoff/{tenant_path}/{}", platform.integration_key()),
            &integration,
        )
        .await;
        Self {
            platform,
            scope,
            account_id,
            project_id,
            client_env: client_env.to_owned(),
            integration_id,
            webhook_url,
            webhook_secret,
            lambda_url,
            sim_url,
            received,
            http,
            canaries,
            webhook_client_id,
            stream_topic,
        }
    }

    pub fn tenant_json(&self) -> Value {
        json!({"account_id": self.account_id, "project_id": self.project_id, "client_env": self.client_env})
    }

    /// Direct invoke through cargo lambda watch.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Value {
        self.try_invoke(function, payload)
            .await
            .unwrap_or_else(|e| panic!("{function}: {e}"))
    }

    /// A direct invoke that may fail (a cut-short invocation answers no JSON).
    pub async fn try_invoke(&self, function: &str, payload: &Value) -> Result<Value, String> {
        let resp = self
            .http
            .post(format!(
                "{}/2015-03-31/functions/{function}/invocations",
                self.lambda_url
            ))
            .json(payload)
            .send()
            .await
            .map_err(|e| format!("invoke: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|_| format!("answered non-JSON ({status}): {text}"))
    }

    pub fn start_request(&self, session: &str) -> Value {
        json!({"tenant": self.tenant_json(), "session_id": session,
            "utterance": "No problem, I'll transfer you to a live agent now.",
            "handoff": {"text_chat": {self.platform.integration_key(): self.platform.routing()}},
            "user": {"id": "u-1", "display_name": "Ada", "channel": "webchat"},
            "transcript": [{"role": "user", "text": "my parcel arrived broken", "at": "2026-11-23T10:00:00Z"},
                           {"role": "assistant", "text": "Sorry to hear that!", "at": "2026-11-23T10:00:02Z"}],
            "context": {"customer_id": "C-42", "reason": "refund", "verified": true}})
    }

    pub async fn start(&self, session: &str) -> Value {
        self.invoke("start-handoff", &self.start_request(session))
            .await
    }

    pub async fn send(&self, session: &str, id: &str, text: &str) -> Value {
        self.invoke(
            "outbound-relay",
            &json!({"tenant": self.tenant_json(), "session_id": session,
            "message": {"id": id, "text": text}}),
        )
        .await
    }

    pub async fn end(&self, session: &str) -> Value {
        self.invoke(
            "end-session",
            &json!({"tenant": self.tenant_json(), "session_id": session,
            "reason": "USER_END_SESSION"}),
        )
        .await
    }

    /// Every conversation of this tenant in the simulator.
    pub async fn conversations(&self) -> Vec<Value> {
        let key = if self.platform == Platform::AmazonConnect {
            "instance_id"
        } else {
            "integration_id"
        };
        let list: Value = self
            .http
            .get(format!(
                "{}/sim/{}/conversations?{key}={}",
                self.sim_url,
                self.platform.sim_prefix(),
                self.scope
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list.as_array().cloned().unwrap_or_default()
    }

    /// The simulator's view of one conversation, by the platform's id.
    pub async fn conversation_by_id(&self, id: &str) -> Option<Value> {
        let resp = self
            .http
            .get(format!(
                "{}/sim/{}/conversations/{id}",
                self.sim_url,
                self.platform.sim_prefix()
            ))
            .send()
            .await
            .unwrap();
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// Waits until the simulator's conversation `id` satisfies `ok`.
    pub async fn wait_conversation_id(
        &self,
        id: &str,
        what: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = self.conversation_by_id(id).await;
            if let Some(c) = &c {
                if ok(c) {
                    return c.clone();
                }
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; conversation: {c:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The simulator's view of this session's conversation.
    pub async fn conversation(&self, session: &str) -> Option<Value> {
        let list: Value = self
            .http
            .get(format!(
                "{}/sim/genesys/conversations?integration_id={}",
                self.sim_url, self.integration_id
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list.as_array()?
            .iter()
            .find(|c| c["customer"]["id"] == session)
            .cloned()
    }

    pub async fn wait_conversation(
        &self,
        session: &str,
        what: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.conversation(session).await {
                if ok(&c) {
                    return c;
                }
                if Instant::now() > deadline {
                    panic!("timed out waiting for {what}; conversation: {c:#}");
                }
            } else if Instant::now() > deadline {
                panic!("timed out waiting for {what}: no conversation");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An agent action in the simulator's desktop API.
    pub async fn agent(&self, conversation_id: &str, action: &str, body: Value) -> Value {
        self.try_agent(conversation_id, action, body)
            .await
            .unwrap_or_else(|e| panic!("agent {action}: {e}"))
    }

    /// An agent action that may fail (the load generator counts failures).
    pub async fn try_agent(
        &self,
        conversation_id: &str,
        action: &str,
        body: Value,
    ) -> Result<Value, String> {
        let resp = self
            .http
            .post(format!(
                "{}/sim/{}/conversations/{conversation_id}/{action}",
                self.sim_url,
                self.platform.sim_prefix()
            ))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status} {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn faults(&self, knobs: Value) {
        let mut body = knobs;
        body["integration_id"] = json!(self.scope);
        let resp = self
            .http
            .post(format!(
                "{}/sim/{}/faults",
                self.sim_url,
                self.platform.sim_prefix()
            ))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "faults: {}",
            resp.text().await.unwrap()
        );
    }

    /// Distinct events of a session by seq (redeliveries folded), checking that a
    /// redelivered seq always carries the same event.
    pub fn events(&self, session: &str) -> Vec<ClientEvent> {
        let r = self.received.lock().unwrap();
        let mut by_seq: std::collections::BTreeMap<u64, ClientEvent> = Default::default();
        for ev in r.deliveries.iter().filter(|e| e.session_id == session) {
            if let Some(prev) = by_seq.get(&ev.seq) {
                assert_eq!(prev, ev, "seq {} delivered with different content", ev.seq);
            }
            by_seq.insert(ev.seq, ev.clone());
        }
        by_seq.into_values().collect()
    }

    /// Waits until an event of `kind` (matching `ok`) arrived; checks seq is gap-free from 1.
    pub async fn wait_event(
        &self,
        session: &str,
        kind: &str,
        ok: impl Fn(&ClientEvent) -> bool,
    ) -> ClientEvent {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let events = self.events(session);
            assert_gap_free(&events);
            if let Some(e) = events
                .iter()
                .find(|e| e.event_type.as_str() == kind && ok(e))
            {
                return e.clone();
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = events
                    .iter()
                    .map(|e| format!("{}:{}", e.seq, e.event_type.as_str()))
                    .collect();
                panic!("timed out waiting for {kind} on {session}; got {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn types(&self, session: &str) -> Vec<String> {
        self.events(session)
            .iter()
            .map(|e| e.event_type.as_str().to_owned())
            .collect()
    }

    /// Signs and POSTs a body to this tenant's webhook URL, as Genesys would.
    pub async fn post_webhook(
        &self,
        url: &str,
        body: &[u8],
        signature: Option<String>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("X-Hub-Signature-256", sig);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub fn sign(&self, body: &[u8]) -> String {
        use base64::Engine as _;
        format!(
            "sha256={}",
            base64::engine::general_purpose::STANDARD.encode(
                handoff_common::signature::hmac_sha256(self.webhook_secret.as_bytes(), body)
            )
        )
    }
}

/// seq runs 1..=n with no gap.
pub fn assert_gap_free(events: &[ClientEvent]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.seq,
            i as u64 + 1,
            "seq gap: {:?}",
            events.iter().map(|e| e.seq).collect::<Vec<_>>()
        );
    }
}

pub fn session_id() -> String {
    format!("conv-{}", random_hex(12))
}

/// Raw DynamoDB access for checking what was (not) written.
pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_dynamodb::Client::new(&conf)
}

/// How many items the table holds under a tenant's keys.
pub async fn items_of_tenant(tenant_key: &str) -> usize {
    let client = dynamodb().await;
    let table = env("TABLE_NAME");
    let mut n = 0;
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(&table)
            .filter_expression("begins_with(pk, :p)")
            .expression_attribute_values(
                ":p",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{tenant_key}#")),
            )
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        n += out.items().len();
        start = out.last_evaluated_key;
        if start.is_none() {
            return n;
        }
    }
}

pub type Events = HashMap<String, Vec<ClientEvent>>;

/// Every item the table holds under a tenant's keys, as text (for canary scans).
pub async fn items_text_of_tenant(tenant_key: &str) -> String {
    let client = dynamodb().await;
    let table = env("TABLE_NAME");
    let out = client
        .scan()
        .table_name(&table)
        .filter_expression("begins_with(pk, :p)")
        .expression_attribute_values(
            ":p",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{tenant_key}#")),
        )
        .send()
        .await
        .unwrap();
    format!("{:?}", out.items())
}

impl TestTenant {
    /// Ids of the agent messages the relay holds in the session's reorder window.
    pub async fn held_ids(&self, session: &str) -> Vec<String> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let out = dynamodb()
            .await
            .get_item()
            .table_name(env("TABLE_NAME"))
            .key(
                "pk",
                AttributeValue::S(format!("T#{}#S#{session}", self.tenant_key())),
            )
            .key("sk", AttributeValue::S("SESSION".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        out.item()
            .and_then(|i| i.get("held"))
            .and_then(|v| v.as_s().ok())
            .and_then(|s| serde_json::from_str::<Vec<Value>>(s).ok())
            .unwrap_or_default()
            .iter()
            .filter_map(|h| h["event"]["data"]["message_id"].as_str().map(str::to_owned))
            .collect()
    }
}

/// The functions' log (cargo lambda watch's output) of the running stack.
pub fn stack_log() -> String {
    let dir = std::env::var("STACK_LOGS")
        .unwrap_or_else(|_| format!("{}/.cache/chat-handoff/logs", env("HOME")));
    std::fs::read_to_string(format!("{dir}/lambda.log"))
        .unwrap_or_else(|e| panic!("reading {dir}/lambda.log: {e}"))
}

/// One HTTP webhook as a platform would send it.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    /// The credential header (name, value) the platform adds; content type aside.
    pub credential: Option<(String, String)>,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Platform {
    /// Whether the platform sends HTTP webhooks at all (Connect streams
    /// through SNS, Salesforce MIAW through SSE).
    pub fn has_webhooks(self) -> bool {
        !matches!(self, Self::AmazonConnect | Self::Salesforce)
    }

    /// The fault knob that drops this platform's notification channel once;
    /// `None` for platforms that hold none (webhooks, SNS, polling).
    pub fn stream_drop_fault(self) -> Option<Value> {
        match self {
            Self::Genesys => Some(json!({"ws_drop_next": true})),
            Self::Salesforce => Some(json!({"sse_drop_next": 3})),
            _ => None,
        }
    }

    /// Whether a webhook's credential is computed over its body (an HMAC),
    /// rather than a key or token that travels beside it.
    pub fn signs_body(self) -> bool {
        matches!(self, Self::Genesys | Self::Webex)
    }
}

/// A Lambda SNS event carrying one Connect chat item, as SNS delivers it.
pub fn sns_event(topic_arn: &str, message: &str) -> Value {
    json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic_arn}:sub-1"),
        "Sns": {"Type": "Notification", "MessageId": uuid::Uuid::new_v4().to_string(),
            "TopicArn": topic_arn, "Subject": null, "Message": message,
            "Timestamp": "2026-11-23T10:01:02.120Z", "SignatureVersion": "1",
            "Signature": "c2lnbmF0dXJl", "MessageAttributes": {}}}]})
}

/// Prints why a bad-input class does not apply to a platform (never silent).
pub fn not_applicable(platform: Platform, class: &str, why: &str) {
    println!(
        "bad input {} {class}: not applicable ({why})",
        platform.integration_key()
    );
}

impl TestTenant {
    /// The credential header this tenant's platform would put on `body`, made
    /// with this tenant's webhook secret; `None` where there are no webhooks.
    pub async fn webhook_credential(&self, body: &[u8]) -> Option<(String, String)> {
        Some(match self.platform {
            Platform::Genesys => ("X-Hub-Signature-256".into(), self.sign(body)),
            Platform::Webex => (
                "X-WebexCC-Signature".into(),
                hex::encode(handoff_common::signature::hmac_sha256(
                    self.webhook_secret.as_bytes(),
                    body,
                )),
            ),
            Platform::Zendesk => ("X-API-Key".into(), self.webhook_secret.clone()),
            Platform::Nice => (
                "Authorization".into(),
                format!("Bearer {}", self.nice_token().await),
            ),
            Platform::AmazonConnect | Platform::Salesforce => return None,
        })
    }

    /// A bearer token from our own CXone token endpoint, as CXone gets one.
    pub async fn nice_token(&self) -> String {
        let resp = self
            .http
            .post(format!("{}/1.0/token", self.webhook_url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.webhook_client_id.as_str()),
                ("client_secret", self.webhook_secret.as_str()),
            ])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "token: {status} {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// An agent message webhook for `session` (platform conversation `cid`),
    /// authenticated as the platform would; `None` where there are no webhooks.
    pub async fn agent_webhook(
        &self,
        session: &str,
        cid: &str,
        id: &str,
        text: &str,
    ) -> Option<Webhook> {
        // The agent the widget knows, so the message is not taken for a transfer.
        let agent_id = self
            .events(session)
            .iter()
            .rev()
            .find(|e| e.event_type.as_str() == "LIVE_AGENT_JOINED")
            .and_then(|e| e.data["agent"]["id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "agent-7".to_owned());
        let (url, body) = match self.platform {
            Platform::Genesys => (
                self.webhook_url.clone(),
                json!({"id": id, "type": "Text", "text": text, "direction": "Outbound",
                    "conversationId": cid}),
            ),
            Platform::Zendesk => (
                self.webhook_url.clone(),
                json!({"app": {"id": self.scope}, "webhook": {"id": "wh-1", "version": "v2"},
                    "events": [{"id": format!("evt-{id}"), "type": "conversation:message",
                        "createdAt": "2026-11-23T10:01:02.120Z",
                        "payload": {"conversation": {"id": cid, "type": "personal"},
                            "message": {"id": id, "author": {"type": "business", "displayName": "Sam"},
                                "content": {"type": "text", "text": text},
                                "source": {"type": "zd:agentWorkspace"},
                                "metadata": {"__zendesk_msg.agent.id": agent_id}}}}]}),
            ),
            Platform::Webex => (
                self.webhook_url.clone(),
                json!({"id": format!("ev-{id}"), "specversion": "1.0",
                    "type": "task-message:appended", "source": "/com/cisco/wxcc/asset-1",
                    "comciscoorgid": self.integration_id, "datacontenttype": "application/json",
                    "data": {"taskId": cid, "messageDirection": "OUTBOUND", "senderType": "agent",
                        "senderId": agent_id, "agentName": "Sam", "channelType": "customMessaging",
                        "channelParams": {"type": "text",
                            "message": {"aliasId": id, "text": text, "timestamp": 1}}}}),
            ),
            Platform::Nice => (
                format!("{}/2.0/channel/{}/outbound", self.webhook_url, self.scope),
                json!({"thread": {"idOnExternalPlatform": session},
                    "messageContent": {"type": "TEXT", "payload": {"text": text}},
                    "authorUser": {"id": agent_id, "firstName": "Sam", "surname": "Agent"},
                    "createdAtWithMilliseconds": format!("2026-11-23T10:01:02.120Z#{id}")}),
            ),
            Platform::AmazonConnect | Platform::Salesforce => return None,
        };
        let body = serde_json::to_vec(&body).unwrap();
        Some(Webhook {
            url,
            credential: self.webhook_credential(&body).await,
            content_type: "application/json".into(),
            body,
        })
    }

    /// POSTs a webhook; the answer's status and JSON body.
    pub async fn post(&self, w: &Webhook) -> (u16, Value) {
        let mut req = self
            .http
            .post(&w.url)
            .header("content-type", &w.content_type)
            .body(w.body.clone());
        if let Some((name, value)) = &w.credential {
            req = req.header(name, value);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `{account}/{project}/{env}`: the tenant part of table keys and URLs.
    pub fn tenant_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.account_id, self.project_id, self.client_env
        )
    }
}

impl TestTenant {
    /// Starts a handoff; the session id and the platform's conversation id.
    pub async fn handed_off(&self) -> (String, String) {
        let session = session_id();
        let started = self.start(&session).await;
        assert_eq!(started["status"], "queued", "{started}");
        assert_eq!(started["provider"], self.platform.integration_key());
        let cid = started["provider_conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        (session, cid)
    }

    /// A handoff an agent has taken, once the widget knows it.
    pub async fn accepted(&self) -> (String, String) {
        let (session, cid) = self.handed_off().await;
        self.agent(&cid, "accept", json!({"agent_name": "Sam"}))
            .await;
        if !self.platform.capabilities().agent_joined {
            self.agent(&cid, "messages", json!({"text": "Hello, Sam here"}))
                .await;
        }
        let joined = self
            .wait_event(&session, "LIVE_AGENT_JOINED", |_| true)
            .await;
        assert!(
            joined.data["agent"]["display_name"]
                .as_str()
                .unwrap_or_default()
                .contains("Sam"),
            "{:?}",
            joined.data
        );
        (session, cid)
    }

    /// Customer messages the platform holds for conversation `cid`.
    pub async fn inbound_texts(&self, cid: &str) -> Vec<String> {
        inbound_texts_of(&self.conversation_by_id(cid).await.unwrap_or(Value::Null))
    }

    /// Agent message texts the widget was sent for a session (redeliveries folded).
    pub fn agent_texts(&self, session: &str) -> Vec<String> {
        self.events(session)
            .iter()
            .filter(|e| e.event_type.as_str() == "LIVE_AGENT_MESSAGE")
            .filter_map(|e| e.data["text"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Customer messages in a simulator's view of a conversation.
pub fn inbound_texts_of(conv: &Value) -> Vec<String> {
    conv["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["direction"] == "inbound")
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect()
}
