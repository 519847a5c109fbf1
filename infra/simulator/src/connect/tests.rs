//! In-process scenarios: the whole server on 127.0.0.1:0, a small axum
//! receiver as the Lambda invoke URL, raw HTTP, a WebSocket client, and the
//! official `aws-sdk-connect` / `aws-sdk-connectparticipant` clients.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const WAIT: Duration = Duration::from_secs(5);
const FLOW: &str = "flow-1";
const TOPIC_PREFIX: &str = "arn:aws:sns:us-east-1:123456789012:chat-";
const CONNECT_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20261123/us-east-1/connect/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123";
const PARTICIPANT_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20261123/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123";
const JOINED: &str = "application/vnd.amazonaws.connect.event.participant.joined";
const LEFT: &str = "application/vnd.amazonaws.connect.event.participant.left";
const ENDED: &str = "application/vnd.amazonaws.connect.event.chat.ended";
const TYPING: &str = "application/vnd.amazonaws.connect.event.typing";

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// Lambda invoke URL stand-in: answers from a script of (status, body), then
/// `200 null`, and records every request body.
#[derive(Clone, Default)]
struct Lambda {
    got: Arc<Mutex<Vec<Bytes>>>,
    script: Arc<Mutex<VecDeque<(u16, &'static str)>>>,
}

impl Lambda {
    async fn start(script: &[(u16, &'static str)]) -> (String, Self) {
        let lambda = Self::default();
        lambda.script.lock().unwrap().extend(script);
        async fn invoke(State(l): State<Lambda>, body: Bytes) -> (StatusCode, &'static str) {
            l.got.lock().unwrap().push(body);
            let (status, body) = l
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or((200, "null"));
            (StatusCode::from_u16(status).unwrap(), body)
        }
        let router = axum::Router::new()
            .route(
                "/2015-03-31/functions/inbound-webhook/invocations",
                axum::routing::post(invoke),
            )
            .with_state(lambda.clone());
        let url = format!(
            "{}/2015-03-31/functions/inbound-webhook/invocations",
            serve(router).await
        );
        (url, lambda)
    }

    fn events(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect()
    }

    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.events();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} SNS deliveries, got {}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The chat item inside a Lambda SNS event.
fn item_of(event: &Value) -> Value {
    serde_json::from_str(event["Records"][0]["Sns"]["Message"].as_str().unwrap()).unwrap()
}

fn content_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| item_of(e)["ContentType"].as_str().unwrap().to_string())
        .collect()
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn error_type(&self) -> &str {
        self.headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A started chat: ids and tokens.
struct Chat {
    contact_id: String,
    participant_token: String,
    connection_token: String,
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

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    async fn connect(&self, method: reqwest::Method, path: &str, body: Value) -> Answer {
        self.send(
            method,
            &format!("/connect{path}"),
            &[("authorization", CONNECT_AUTH)],
            Some(body),
        )
        .await
    }

    async fn participant(&self, op: &str, bearer: &str, body: Value) -> Answer {
        self.send(
            reqwest::Method::POST,
            &format!("/connectparticipant/participant/{op}"),
            &[
                ("authorization", PARTICIPANT_AUTH),
                ("x-amz-bearer", bearer),
            ],
            Some(body),
        )
        .await
    }

    async fn control(&self, path: &str, body: Value) -> (u16, Value) {
        let a = self
            .send(reqwest::Method::POST, path, &[], Some(body))
            .await;
        (a.status, a.body)
    }

    async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, &[], None).await.body
    }

    async fn instance(&self, id: &str) {
        let (status, body) = self
            .control(
                "/sim/connect/instances",
                json!({"instance_id": id, "contact_flow_ids": [FLOW], "queue": "billing"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn topic(&self, instance: &str, url: &str) -> String {
        let arn = format!("{TOPIC_PREFIX}{instance}");
        let (status, body) = self
            .control(
                "/sim/connect/topics",
                json!({"topic_arn": arn, "lambda_invoke_url": url}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        arn
    }

    async fn faults(&self, update: Value) {
        let (status, body) = self.control("/sim/connect/faults", update).await;
        assert_eq!(status, 200, "{body}");
    }

    async fn start_chat(&self, instance: &str, extra: Value) -> Answer {
        let mut body = json!({
            "InstanceId": instance, "ContactFlowId": FLOW,
            "ParticipantDetails": {"DisplayName": "Ada"},
            "Attributes": {"session_id": "s-1", "reason": "refund"},
            "SupportedMessagingContentTypes": ["text/plain", "text/markdown"],
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        self.connect(reqwest::Method::PUT, "/contact/chat", body)
            .await
    }

    async fn stream(&self, instance: &str, contact_id: &str, arn: &str) -> Answer {
        self.connect(
            reqwest::Method::POST,
            "/contact/start-streaming",
            json!({"InstanceId": instance, "ContactId": contact_id,
                   "ChatStreamingConfiguration": {"StreamingEndpointArn": arn},
                   "ClientToken": format!("st-{arn}")}),
        )
        .await
    }

    async fn connection(&self, participant_token: &str, connect: bool) -> Answer {
        self.participant(
            "connection",
            participant_token,
            json!({"Type": ["CONNECTION_CREDENTIALS"], "ConnectParticipant": connect}),
        )
        .await
    }

    /// Instance, topic → Lambda, StartChatContact, streaming, connected customer.
    async fn streaming_chat(&self, instance: &str, lambda_url: &str) -> Chat {
        self.instance(instance).await;
        let arn = self.topic(instance, lambda_url).await;
        let started = self.start_chat(instance, json!({})).await;
        assert_eq!(started.status, 200, "{}", started.body);
        let contact_id = started.body["ContactId"].as_str().unwrap().to_string();
        let participant_token = started.body["ParticipantToken"]
            .as_str()
            .unwrap()
            .to_string();
        let s = self.stream(instance, &contact_id, &arn).await;
        assert_eq!(s.status, 200, "{}", s.body);
        let c = self.connection(&participant_token, true).await;
        assert_eq!(c.status, 200, "{}", c.body);
        Chat {
            contact_id,
            participant_token,
            connection_token: c.body["ConnectionCredentials"]["ConnectionToken"]
                .as_str()
                .unwrap()
                .to_string(),
        }
    }

    async fn say(&self, chat: &Chat, text: &str, token: &str) -> Answer {
        self.participant(
            "message",
            &chat.connection_token,
            json!({"ContentType": "text/plain", "Content": text, "ClientToken": token}),
        )
        .await
    }

    async fn agent(&self, contact_id: &str, action: &str, body: Value) -> Value {
        let (status, body) = self
            .control(
                &format!("/sim/connect/conversations/{contact_id}/{action}"),
                body,
            )
            .await;
        assert_eq!(status, 200, "{action}: {body}");
        body
    }

    async fn view(&self, contact_id: &str) -> Value {
        self.get(&format!("/sim/connect/conversations/{contact_id}"))
            .await
    }
}

fn assert_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.error_type(), code, "x-amzn-ErrorType of {}", a.body);
    assert_eq!(a.body["__type"], code);
    assert!(a.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(a.headers.contains_key("x-amzn-requestid"));
}

#[tokio::test]
async fn errors_are_encoded_as_rest_json1() {
    let sim = Sim::start().await;
    sim.instance("err").await;

    let a = sim.start_chat("nope", json!({})).await;
    assert_error(&a, 404, "ResourceNotFoundException");
    let a = sim
        .start_chat("err", json!({"ContactFlowId": "other-flow"}))
        .await;
    assert_error(&a, 404, "ResourceNotFoundException");
    let a = sim
        .start_chat("err", json!({"ParticipantDetails": {}}))
        .await;
    assert_error(&a, 400, "InvalidParameterException");
    let a = sim
        .start_chat("err", json!({"ChatDurationInMinutes": 59}))
        .await;
    assert_error(&a, 400, "InvalidParameterException");
    let a = sim
        .start_chat("err", json!({"ChatDurationInMinutes": 10_081}))
        .await;
    assert_error(&a, 400, "InvalidParameterException");
    let a = sim
        .start_chat(
            "err",
            json!({"SupportedMessagingContentTypes": ["text/markdown"]}),
        )
        .await;
    assert_error(&a, 400, "InvalidParameterException");
    let big = "x".repeat(32_768);
    let a = sim
        .start_chat("err", json!({"Attributes": {"summary": big}}))
        .await;
    assert_error(&a, 400, "InvalidParameterException");
    let ok = sim
        .start_chat("err", json!({"Attributes": {"s": "x".repeat(32_767)}}))
        .await;
    assert_eq!(ok.status, 200, "exactly 32,768 bytes is allowed");
    assert!(ok.headers.contains_key("x-amzn-requestid"));

    let a = sim
        .connect(reqwest::Method::POST, "/contact/chat", json!({}))
        .await;
    assert_error(&a, 404, "UnknownOperationException");
    let a = sim
        .connect(reqwest::Method::POST, "/contact/nothing", json!({}))
        .await;
    assert_error(&a, 404, "UnknownOperationException");
    let a = sim.participant("nothing", "t", json!({})).await;
    assert_error(&a, 404, "UnknownOperationException");

    let unsigned = sim
        .send(
            reqwest::Method::PUT,
            "/connect/contact/chat",
            &[],
            Some(json!({})),
        )
        .await;
    assert_error(&unsigned, 403, "AccessDeniedException");
    let wrong_service = sim
        .send(
            reqwest::Method::PUT,
            "/connect/contact/chat",
            &[("authorization", PARTICIPANT_AUTH)],
            Some(json!({})),
        )
        .await;
    assert_error(&wrong_service, 403, "InvalidSignatureException");
    let unknown_bearer = sim
        .send(
            reqwest::Method::POST,
            "/connectparticipant/participant/message",
            &[("authorization", PARTICIPANT_AUTH), ("x-amz-bearer", "t")],
            None,
        )
        .await;
    assert_error(&unknown_bearer, 403, "AccessDeniedException");
}

#[tokio::test]
async fn client_token_replays_start_chat_contact() {
    let sim = Sim::start().await;
    sim.instance("idem").await;
    let first = sim
        .start_chat("idem", json!({"ClientToken": "relay-session-1"}))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = sim
        .start_chat("idem", json!({"ClientToken": "relay-session-1"}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.body, first.body,
        "same token + same body = same answer"
    );
    let list = sim.get("/sim/connect/conversations?instance_id=idem").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "no second contact");
    assert_eq!(list[0]["id"], first.body["ContactId"]);
    assert_eq!(list[0]["customer"]["id"], first.body["ParticipantId"]);
    assert_eq!(list[0]["context"]["session_id"], "s-1");
    assert_eq!(list[0]["state"], "created");

    let mismatch = sim
        .start_chat(
            "idem",
            json!({"ClientToken": "relay-session-1", "ParticipantDetails": {"DisplayName": "Bob"}}),
        )
        .await;
    assert_error(&mismatch, 400, "InvalidRequestException");
    let other = sim
        .start_chat("idem", json!({"ClientToken": "relay-session-2"}))
        .await;
    assert_ne!(other.body["ContactId"], first.body["ContactId"]);
    let stats = sim.get("/sim/connect/stats?instance_id=idem").await;
    assert_eq!(stats["contacts_started"], 2);
    assert_eq!(stats["idempotent_replays"], 1);
}

#[tokio::test]
async fn connect_participant_requires_streaming() {
    let (url, _lambda) = Lambda::start(&[]).await;
    let sim = Sim::start().await;
    sim.instance("cp").await;
    let arn = sim.topic("cp", &url).await;
    let started = sim.start_chat("cp", json!({})).await;
    let cid = started.body["ContactId"].as_str().unwrap();
    let pt = started.body["ParticipantToken"].as_str().unwrap();

    let refused = sim.connection(pt, true).await;
    assert_error(&refused, 400, "ValidationException");
    assert_eq!(sim.view(cid).await["customer_connected"], false);
    let accept = sim
        .control(
            &format!("/sim/connect/conversations/{cid}/accept"),
            json!({"agent_name": "Sam"}),
        )
        .await;
    assert_eq!(accept.0, 409, "not queued before the customer connects");

    assert_eq!(sim.stream("cp", cid, &arn).await.status, 200);
    let ok = sim.connection(pt, true).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let creds = &ok.body["ConnectionCredentials"];
    assert!(creds["ConnectionToken"].as_str().is_some());
    assert!(creds["Expiry"].as_str().unwrap().ends_with('Z'));
    assert!(ok.body.get("Websocket").is_none(), "not requested");
    let view = sim.view(cid).await;
    assert_eq!(view["customer_connected"], true);
    assert_eq!(view["state"], "queued");
    assert_eq!(view["streaming"], json!([arn]));

    let unknown_topic = sim
        .stream("cp", cid, "arn:aws:sns:us-east-1:123456789012:missing")
        .await;
    assert_error(&unknown_topic, 404, "ResourceNotFoundException");
    let fifo = sim
        .stream("cp", cid, "arn:aws:sns:us-east-1:123456789012:t.fifo")
        .await;
    assert_error(&fifo, 400, "InvalidParameterException");
}

#[tokio::test]
async fn token_rules_expiry_and_renewal() {
    let (url, _lambda) = Lambda::start(&[]).await;
    let sim = Sim::start().await;
    let chat = sim.streaming_chat("tok", &url).await;
    let other = sim.streaming_chat("tok-other", &url).await;

    // Each token only opens its own door.
    let a = sim
        .participant(
            "message",
            &chat.participant_token,
            json!({"ContentType": "text/plain", "Content": "hi"}),
        )
        .await;
    assert_error(&a, 403, "AccessDeniedException");
    let a = sim.connection(&chat.connection_token, false).await;
    assert_error(&a, 403, "AccessDeniedException");
    let a = sim
        .participant(
            "message",
            "made-up",
            json!({"ContentType": "text/plain", "Content": "hi"}),
        )
        .await;
    assert_error(&a, 403, "AccessDeniedException");
    assert_eq!(sim.say(&chat, "hello", "m1").await.status, 200);

    sim.faults(json!({"integration_id": "tok", "expire_tokens_now": true}))
        .await;
    let expired = sim.say(&chat, "again", "m2").await;
    assert_error(&expired, 403, "AccessDeniedException");
    assert_eq!(
        sim.say(&other, "other tenant unaffected", "o1")
            .await
            .status,
        200
    );

    let renewed = sim.connection(&chat.participant_token, false).await;
    assert_eq!(renewed.status, 200, "ParticipantToken still works");
    let renewed = Chat {
        connection_token: renewed.body["ConnectionCredentials"]["ConnectionToken"]
            .as_str()
            .unwrap()
            .to_string(),
        ..chat
    };
    assert_eq!(sim.say(&renewed, "again", "m2").await.status, 200);

    let bye = sim
        .participant(
            "disconnect",
            &renewed.connection_token,
            json!({"ClientToken": "bye-1"}),
        )
        .await;
    assert_eq!(bye.status, 200, "{}", bye.body);
    let retry = sim
        .participant(
            "disconnect",
            &renewed.connection_token,
            json!({"ClientToken": "bye-1"}),
        )
        .await;
    assert_eq!(retry.status, 200, "same ClientToken replays the disconnect");
    let a = sim
        .participant(
            "disconnect",
            &renewed.connection_token,
            json!({"ClientToken": "bye-2"}),
        )
        .await;
    assert_error(&a, 403, "AccessDeniedException");
    let a = sim.say(&renewed, "after end", "m3").await;
    assert_error(&a, 403, "AccessDeniedException");
    let a = sim.connection(&renewed.participant_token, false).await;
    assert_error(&a, 403, "AccessDeniedException");
}

#[tokio::test]
async fn sns_delivers_lambda_events_in_order_with_attributes() {
    let (url, lambda) = Lambda::start(&[]).await;
    let sim = Sim::start().await;
    let chat = sim.streaming_chat("sns", &url).await;
    let sent = sim.say(&chat, "my parcel is broken", "relay-m1").await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.body["Id"].as_str().is_some());
    assert!(sent.body["AbsoluteTime"].as_str().unwrap().ends_with('Z'));
    sim.agent(&chat.contact_id, "accept", json!({"agent_name": "Sam"}))
        .await;
    let agent_id = sim
        .agent(
            &chat.contact_id,
            "messages",
            json!({"text": "Hi Ada, I can help"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let events = lambda.wait_for(4).await;
    assert_eq!(
        content_types(&events),
        [JOINED, "text/plain", JOINED, "text/plain"]
    );
    let arn = format!("{TOPIC_PREFIX}sns");
    for event in &events {
        let records = event["Records"].as_array().unwrap();
        assert_eq!(records.len(), 1, "one record per delivery");
        let r = &records[0];
        let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["EventSource", "EventVersion", "EventSubscriptionArn", "Sns"])
        );
        assert_eq!(r["EventSource"], "aws:sns");
        assert_eq!(r["EventVersion"], "1.0");
        assert!(r["EventSubscriptionArn"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{arn}:")));
        let sns = &r["Sns"];
        let keys: BTreeSet<&str> = sns
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "Type",
                "MessageId",
                "TopicArn",
                "Subject",
                "Message",
                "Timestamp",
                "SignatureVersion",
                "Signature",
                "SigningCertUrl",
                "UnsubscribeUrl",
                "MessageAttributes"
            ])
        );
        assert_eq!(sns["Type"], "Notification");
        assert_eq!(sns["TopicArn"], arn);
        assert_eq!(sns["Subject"], Value::Null);
        assert_eq!(sns["SignatureVersion"], "1");
        let item = item_of(event);
        let attrs = &sns["MessageAttributes"];
        for (name, expected) in [
            ("InitialContactId", item["InitialContactId"].clone()),
            ("ContactId", item["ContactId"].clone()),
            ("ParticipantRole", item["ParticipantRole"].clone()),
            ("Type", item["Type"].clone()),
            ("ContentType", item["ContentType"].clone()),
            ("InstanceId", json!("sns")),
            ("AccountId", json!("123456789012")),
            ("MessageVisibility", json!("ALL")),
        ] {
            assert_eq!(attrs[name]["Type"], "String", "{name}");
            assert_eq!(attrs[name]["Value"], expected, "{name}");
        }
        assert_eq!(item["InitialContactId"], chat.contact_id.as_str());
        assert_eq!(item["ContactId"], chat.contact_id.as_str());
        assert!(item["AbsoluteTime"].as_str().unwrap().ends_with('Z'));
    }
    let customer_echo = item_of(&events[1]);
    assert_eq!(customer_echo["Id"], sent.body["Id"]);
    assert_eq!(customer_echo["Type"], "MESSAGE");
    assert_eq!(customer_echo["ParticipantRole"], "CUSTOMER");
    assert_eq!(customer_echo["DisplayName"], "Ada");
    assert_eq!(customer_echo["Content"], "my parcel is broken");
    let joined = item_of(&events[2]);
    assert_eq!(joined["Type"], "EVENT");
    assert_eq!(joined["ParticipantRole"], "AGENT");
    assert_eq!(joined["DisplayName"], "Sam");
    let agent = item_of(&events[3]);
    assert_eq!(agent["Id"], agent_id.as_str());
    assert_eq!(agent["ParticipantRole"], "AGENT");
    assert_eq!(agent["Content"], "Hi Ada, I can help");
    assert_eq!(agent["ParticipantId"], joined["ParticipantId"]);

    let view = sim.view(&chat.contact_id).await;
    assert_eq!(view["state"], "active");
    assert_eq!(view["agent"]["name"], "Sam");
    let dirs: Vec<&str> = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(dirs, ["inbound", "outbound"]);
}

#[tokio::test]
async fn sns_retries_failures_then_keeps_order() {
    let (url, lambda) = Lambda::start(&[
        (503, ""),
        (
            200,
            r#"{"errorType":"Runtime.Handler","errorMessage":"boom"}"#,
        ),
    ])
    .await;
    let sim = Sim::start().await;
    sim.faults(json!({"sns_retry_delay_ms": 10})).await;
    let chat = sim.streaming_chat("retry", &url).await;
    sim.say(&chat, "second", "m1").await;

    let events = lambda.wait_for(4).await;
    assert_eq!(events[0], events[1], "a retry resends the same event");
    assert_eq!(events[1], events[2]);
    assert_eq!(
        content_types(&events),
        [JOINED, JOINED, JOINED, "text/plain"]
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let view = sim.view(&chat.contact_id).await;
    let attempts: Vec<(u64, u64)> = view["sns_attempts"]
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
    assert_eq!(attempts, [(1, 503), (2, 200), (3, 200), (1, 200)]);
    let stats = sim.get("/sim/connect/stats?instance_id=retry").await;
    assert_eq!(stats["sns_retries"], 2);
    assert_eq!(stats["sns_deliveries"], 2);

    sim.faults(json!({"integration_id": "retry", "sns_fail_next": 1}))
        .await;
    sim.say(&chat, "third", "m2").await;
    let events = lambda.wait_for(5).await;
    assert_eq!(item_of(&events[4])["Content"], "third");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let view = sim.view(&chat.contact_id).await;
    let last = &view["sns_attempts"].as_array().unwrap()[4..];
    assert_eq!(
        last[0]["status"], 0,
        "injected failure never reached the Lambda"
    );
    assert_eq!(last[1]["attempt"], 2);
}

#[tokio::test]
async fn duplicate_and_out_of_order_faults_apply_to_sns() {
    let (url, lambda) = Lambda::start(&[]).await;
    let sim = Sim::start().await;
    let chat = sim.streaming_chat("dup", &url).await;
    lambda.wait_for(1).await;
    sim.faults(json!({"integration_id": "dup", "webhook_duplicate_next": 1}))
        .await;
    sim.say(&chat, "one", "m1").await;
    let events = lambda.wait_for(3).await;
    assert_eq!(
        events[1], events[2],
        "the duplicate is byte-identical (same MessageId)"
    );

    sim.faults(json!({"integration_id": "dup", "webhook_out_of_order_next": 1}))
        .await;
    sim.say(&chat, "two", "m2").await;
    sim.say(&chat, "three", "m3").await;
    let events = lambda.wait_for(5).await;
    let texts: Vec<Value> = events[3..]
        .iter()
        .map(|e| item_of(e)["Content"].clone())
        .collect();
    assert_eq!(texts, [json!("three"), json!("two")]);
}

#[tokio::test]
async fn send_message_client_token_dedupes_and_content_is_checked() {
    let (url, lambda) = Lambda::start(&[]).await;
    let sim = Sim::start().await;
    let chat = sim.streaming_chat("dedupe", &url).await;
    let first = sim.say(&chat, "hello", "relay-m1").await;
    let again = sim.say(&chat, "hello", "relay-m1").await;
    assert_eq!(again.status, 200);
    assert_eq!(first.body, again.body, "same Id and AbsoluteTime");
    let mismatch = sim.say(&chat, "changed", "relay-m1").await;
    assert_error(&mismatch, 400, "ValidationException");
    let too_long = sim.say(&chat, &"x".repeat(1025), "relay-m2").await;
    assert_error(&too_long, 400, "ValidationException");
    let json_type = sim
        .participant(
            "message",
            &chat.connection_token,
            json!({"ContentType": "application/json", "Content": "{}"}),
        )
        .await;
    assert_error(&json_type, 400, "ValidationException");
    let markdown = sim
        .participant(
            "message",
            &chat.connection_token,
            json!({"ContentType": "text/markdown", "Content": "**hi**"}),
        )
        .await;
    assert_eq!(markdown.status, 200);

    lambda.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(lambda.events().len(), 3, "joined, hello once, markdown");
    let view = sim.view(&chat.contact_id).await;
    assert_eq!(view["messages"].as_array().unwrap().len(), 2);
    assert_eq!(view["duplicate_inbound_message_ids"], json!(["relay-m1"]));
}

#[tokio::test]
async fn message_status_next_fails_a_message_without_streaming_it() {
    let (url, lambda) = Lambda::start(&[]).await;
    let sim = Sim::start().await;
    let chat = sim.streaming_chat("status", &url).await;
    sim.faults(json!({"integration_id": "status", "message_status_next": "REJECTED"}))
        .await;
    let rejected = sim.say(&chat, "spam", "m1").await;
    assert_eq!(rejected.status, 200);
    assert_eq!(
        rejected.body["MessageMetadata"]["MessageProcessingStatus"],
        "REJECTED"
    );
    let fine = sim.say(&chat, "real", "m2").await;
    assert!(fine.body.get("MessageMetadata").is_none());
    let events = lambda.wait_for(2).await;
    assert_eq!(item_of(&events[1])["Content"], "real");
    let view = sim.view(&chat.contact_id).await;
    assert_eq!(view["messages"][0]["status"], "REJECTED");

    let (status, _) = sim
        .control(
            "/sim/connect/faults",
            json!({"message_status_next": "LOST"}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn transcript_pages_both_ways() {
    let (url, _lambda) = Lambda::start(&[]).await;
    let sim = Sim::start().await;
    let chat = sim.streaming_chat("transcript", &url).await;
    for k in 0..5 {
        sim.say(&chat, &format!("m{k}"), &format!("t{k}")).await;
    }
    sim.participant(
        "event",
        &chat.connection_token,
        json!({"ContentType": TYPING}),
    )
    .await;
    assert_eq!(sim.view(&chat.contact_id).await["customer_typing"], true);
    // joined + 5 messages; typing is not kept.
    let mut texts = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body =
            json!({"MaxResults": 2, "ScanDirection": "FORWARD", "SortOrder": "ASCENDING"});
        if let Some(t) = &next {
            body["NextToken"] = json!(t);
        }
        let page = sim
            .participant("transcript", &chat.connection_token, body)
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.body["InitialContactId"], chat.contact_id.as_str());
        for item in page.body["Transcript"].as_array().unwrap() {
            texts.push(item["Content"].as_str().unwrap_or("(event)").to_string());
        }
        pages += 1;
        match page.body["NextToken"].as_str() {
            Some(t) => next = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(texts, ["(event)", "m0", "m1", "m2", "m3", "m4"]);

    let latest = sim
        .participant(
            "transcript",
            &chat.connection_token,
            json!({"MaxResults": 2, "SortOrder": "DESCENDING"}),
        )
        .await;
    let contents: Vec<&str> = latest.body["Transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["m4", "m3"],
        "default BACKWARD from the most recent"
    );

    let bad = sim
        .participant(
            "transcript",
            &chat.connection_token,
            json!({"MaxResults": 101}),
        )
        .await;
    assert_error(&bad, 400, "ValidationException");
    let bad = sim
        .participant(
            "transcript",
            &chat.connection_token,
            json!({"NextToken": "garbage"}),
        )
        .await;
    assert_error(&bad, 400, "ValidationException");
}

#[tokio::test]
async fn disconnect_transfer_and_end_emit_the_documented_items() {
    let (url, lambda) = Lambda::start(&[]).await;
    let sim = Sim::start().await;
    let chat = sim.streaming_chat("life", &url).await;
    sim.agent(&chat.contact_id, "accept", json!({"agent_name": "Sam"}))
        .await;
    let view = sim
        .agent(&chat.contact_id, "transfer", json!({"agent_name": "Kim"}))
        .await;
    assert_eq!(view["agent"]["name"], "Kim");
    sim.agent(&chat.contact_id, "typing", json!({})).await;
    let bye = sim
        .participant("disconnect", &chat.connection_token, json!({}))
        .await;
    assert_eq!(bye.status, 200);

    let events = lambda.wait_for(8).await;
    assert_eq!(
        content_types(&events),
        [
            JOINED,
            JOINED,
            LEFT,
            "application/vnd.amazonaws.connect.event.transfer.succeeded",
            JOINED,
            TYPING,
            LEFT,
            ENDED,
        ]
    );
    let items: Vec<Value> = events.iter().map(item_of).collect();
    assert_eq!(items[7]["ContentType"], ENDED);
    assert!(items[7].get("ParticipantRole").is_none());
    assert!(events[7]["Records"][0]["Sns"]["MessageAttributes"]
        .get("ParticipantRole")
        .is_none());
    assert_eq!(items[6]["ParticipantRole"], "CUSTOMER");
    assert_eq!(items[2]["ContactId"], chat.contact_id.as_str());
    assert_ne!(
        items[4]["ContactId"],
        chat.contact_id.as_str(),
        "new ContactId after transfer"
    );
    for item in &items {
        assert_eq!(item["InitialContactId"], chat.contact_id.as_str());
    }
    let view = sim.view(&chat.contact_id).await;
    assert_eq!(view["state"], "ended");
    assert_eq!(view["streaming"], json!([]));
    let new_id = items[4]["ContactId"].as_str().unwrap();
    assert_eq!(sim.view(new_id).await["id"], chat.contact_id.as_str());

    // Agent-side end on another chat: participant.left AGENT then chat.ended.
    let (url2, lambda2) = Lambda::start(&[]).await;
    let chat2 = sim.streaming_chat("life2", &url2).await;
    sim.agent(&chat2.contact_id, "accept", json!({"agent_name": "Sam"}))
        .await;
    let ended = sim.agent(&chat2.contact_id, "end", json!({})).await;
    assert_eq!(ended["state"], "ended");
    let events = lambda2.wait_for(4).await;
    assert_eq!(content_types(&events), [JOINED, JOINED, LEFT, ENDED]);
    assert_eq!(item_of(&events[2])["ParticipantRole"], "AGENT");
    let stop = sim
        .connect(
            reqwest::Method::POST,
            "/contact/stop",
            json!({"InstanceId": "life2", "ContactId": chat2.contact_id}),
        )
        .await;
    assert_error(&stop, 410, "ContactNotFoundException");
}

#[tokio::test]
async fn injected_api_failures_use_service_error_names() {
    let (url, _lambda) = Lambda::start(&[]).await;
    let sim = Sim::start().await;
    let chat = sim.streaming_chat("inject", &url).await;
    sim.instance("inject-other").await;
    sim.faults(json!({"integration_id": "inject", "api_fail_next": {"status": 429, "count": 1}}))
        .await;
    let other = sim.start_chat("inject-other", json!({})).await;
    assert_eq!(other.status, 200, "scoped to the instance");
    let a = sim.say(&chat, "hi", "m1").await;
    assert_error(&a, 429, "ThrottlingException");
    assert_eq!(sim.say(&chat, "hi", "m1").await.status, 200);

    sim.faults(json!({"instance_id": "inject", "api_fail_next": {"status": 500, "count": 2}}))
        .await;
    let a = sim.say(&chat, "hi", "m2").await;
    assert_error(&a, 500, "InternalServerException");
    let a = sim.start_chat("inject", json!({})).await;
    assert_error(&a, 500, "InternalServiceException");

    for knob in [json!({"heartbeat_secs": 1}), json!({"no_such_knob": 1})] {
        let (status, body) = sim.control("/sim/connect/faults", knob).await;
        assert_eq!(status, 400, "{body}");
    }
    let snapshot = sim.get("/sim/connect/faults").await;
    assert_eq!(snapshot["sns_retry_delay_ms"], 1000);
    assert!(snapshot.get("heartbeat_secs").is_none());
}

#[tokio::test]
async fn websocket_subscribes_echoes_heartbeats_and_carries_items() {
    let sim = Sim::start().await;
    sim.instance("ws").await;
    let started = sim.start_chat("ws", json!({})).await;
    let cid = started.body["ContactId"].as_str().unwrap().to_string();
    let pt = started.body["ParticipantToken"].as_str().unwrap();
    let conn = sim
        .participant(
            "connection",
            pt,
            json!({"Type": ["WEBSOCKET", "CONNECTION_CREDENTIALS"]}),
        )
        .await;
    assert_eq!(conn.status, 200, "{}", conn.body);
    let url = conn.body["Websocket"]["Url"].as_str().unwrap().to_string();
    assert!(conn.body["Websocket"]["ConnectionExpiry"]
        .as_str()
        .is_some());
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let subscribe = json!({"topic": "aws/subscribe", "content": {"topics": ["aws/chat"]}});
    ws.send(WsMessage::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame")
            .unwrap()
            .unwrap();
        if let WsMessage::Text(t) = msg {
            frames.push(serde_json::from_str::<Value>(t.as_str()).unwrap());
        }
    }
    frames.sort_by_key(|f| f["topic"].as_str().unwrap().to_string());
    assert_eq!(frames[1]["topic"], "aws/subscribe");
    assert_eq!(frames[1]["content"]["status"], "success");
    assert_eq!(frames[0]["topic"], "aws/chat");
    let joined: Value = serde_json::from_str(frames[0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(joined["ContentType"], JOINED);
    assert_eq!(joined["ParticipantRole"], "CUSTOMER");
    assert_eq!(
        sim.view(&cid).await["state"],
        "queued",
        "the socket connected the customer"
    );

    ws.send(WsMessage::Text(
        json!({"topic": "aws/heartbeat"}).to_string().into(),
    ))
    .await
    .unwrap();
    ws.send(WsMessage::Text(
        json!({"topic": "aws/ping"}).to_string().into(),
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut accepted = false;
    while got.len() < 3 {
        if got.len() == 2 && !accepted {
            // After the heartbeat and ping replies, so the order is fixed.
            sim.agent(&cid, "accept", json!({"agent_name": "Sam"}))
                .await;
            accepted = true;
        }
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame")
            .unwrap()
            .unwrap();
        if let WsMessage::Text(t) = msg {
            got.push(serde_json::from_str::<Value>(t.as_str()).unwrap());
        }
    }
    assert_eq!(got[0], json!({"topic": "aws/heartbeat"}));
    assert_eq!(got[1]["topic"], "aws/ping");
    assert_eq!(got[1]["statusCode"], 200);
    let agent: Value = serde_json::from_str(got[2]["content"].as_str().unwrap()).unwrap();
    assert_eq!(agent["ParticipantRole"], "AGENT");

    sim.agent(&cid, "end", json!({})).await;
    let mut closed = false;
    while let Ok(Some(msg)) = tokio::time::timeout(WAIT, ws.next()).await {
        if matches!(msg, Ok(WsMessage::Close(_)) | Err(_)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the socket closes when the chat ends");
    assert!(
        tokio_tungstenite::connect_async(url.as_str())
            .await
            .is_err(),
        "a WebSocket URL opens once"
    );
}

#[tokio::test]
async fn contact_ends_when_the_customer_never_connects() {
    let (url, lambda) = Lambda::start(&[]).await;
    let sim = Sim::start().await;
    sim.instance("timeout").await;
    let arn = sim.topic("timeout", &url).await;
    sim.faults(json!({"customer_connect_timeout_secs": 1}))
        .await;
    let started = sim.start_chat("timeout", json!({})).await;
    let cid = started.body["ContactId"].as_str().unwrap();
    let pt = started.body["ParticipantToken"].as_str().unwrap();
    assert_eq!(sim.stream("timeout", cid, &arn).await.status, 200);

    let events = lambda.wait_for(1).await;
    assert_eq!(content_types(&events), [ENDED]);
    let view = sim.view(cid).await;
    assert_eq!(view["state"], "ended");
    assert_eq!(view["end_reason"], "customer_never_connected");
    let late = sim.connection(pt, true).await;
    assert_error(&late, 403, "AccessDeniedException");
}

#[tokio::test]
async fn desktop_page_is_served_with_the_shared_element_ids() {
    let sim = Sim::start().await;
    let page = sim
        .http
        .get(format!("{}/connect/desktop", sim.base))
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
        "/sim/connect/conversations",
    ] {
        assert!(page.contains(id), "desktop page lacks {id}");
    }
}

/// The official SDK clients, unmodified, against the in-process server.
#[tokio::test]
async fn official_sdk_clients_drive_a_streaming_chat() {
    use aws_sdk_connect::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_connect::types::{ChatStreamingConfiguration, ParticipantDetails};
    use aws_sdk_connectparticipant::types::{ConnectionType, ParticipantRole, ScanDirection};

    let (url, lambda) = Lambda::start(&[]).await;
    let sim = Sim::start().await;
    sim.instance("sdk").await;
    let arn = sim.topic("sdk", &url).await;
    let credentials = Credentials::new("AKIDTEST", "secret", None, None, "test");
    let connect = aws_sdk_connect::Client::from_conf(
        aws_sdk_connect::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials.clone())
            .endpoint_url(format!("{}/connect", sim.base))
            .build(),
    );
    let participant = aws_sdk_connectparticipant::Client::from_conf(
        aws_sdk_connectparticipant::config::Builder::new()
            .behavior_version(aws_sdk_connectparticipant::config::BehaviorVersion::latest())
            .region(aws_sdk_connectparticipant::config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .retry_config(aws_sdk_connectparticipant::config::retry::RetryConfig::disabled())
            .endpoint_url(format!("{}/connectparticipant", sim.base))
            .build(),
    );

    let missing = connect
        .start_chat_contact()
        .instance_id("no-such-instance")
        .contact_flow_id(FLOW)
        .participant_details(
            ParticipantDetails::builder()
                .display_name("Ada")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(missing.is_resource_not_found_exception(), "{missing:?}");

    let started = connect
        .start_chat_contact()
        .instance_id("sdk")
        .contact_flow_id(FLOW)
        .participant_details(
            ParticipantDetails::builder()
                .display_name("Ada")
                .build()
                .unwrap(),
        )
        .attributes("session_id", "s-1")
        .supported_messaging_content_types("text/plain")
        .client_token("relay-session-sdk")
        .send()
        .await
        .unwrap();
    let contact_id = started.contact_id().unwrap().to_string();
    let participant_token = started.participant_token().unwrap().to_string();
    assert!(started.participant_id().is_some());

    let streaming = connect
        .start_contact_streaming()
        .instance_id("sdk")
        .contact_id(&contact_id)
        .chat_streaming_configuration(
            ChatStreamingConfiguration::builder()
                .streaming_endpoint_arn(&arn)
                .build()
                .unwrap(),
        )
        .client_token("stream-1")
        .send()
        .await
        .unwrap();
    assert!(!streaming.streaming_id().is_empty());

    let connection = participant
        .create_participant_connection()
        .participant_token(&participant_token)
        .r#type(ConnectionType::ConnectionCredentials)
        .connect_participant(true)
        .send()
        .await
        .unwrap();
    let creds = connection.connection_credentials().unwrap();
    let connection_token = creds.connection_token().unwrap().to_string();
    assert!(creds.expiry().is_some());

    // Modeled errors reach the caller (retries are disabled on this client).
    sim.faults(json!({"integration_id": "sdk", "api_fail_next": {"status": 500, "count": 1}}))
        .await;
    let sent = participant
        .send_message()
        .connection_token(&connection_token)
        .content_type("text/plain")
        .content("hello from the SDK")
        .client_token("relay-m1")
        .send()
        .await;
    let err = sent.unwrap_err().into_service_error();
    assert!(
        err.is_internal_server_exception(),
        "{err:?} (retries disabled)"
    );
    let sent = participant
        .send_message()
        .connection_token(&connection_token)
        .content_type("text/plain")
        .content("hello from the SDK")
        .client_token("relay-m1")
        .send()
        .await
        .unwrap();
    assert!(sent.id().is_some() && sent.absolute_time().is_some());

    sim.faults(json!({"integration_id": "sdk", "api_fail_next": {"status": 429, "count": 1}}))
        .await;
    let throttled = participant
        .send_event()
        .connection_token(&connection_token)
        .content_type(TYPING)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(throttled.is_throttling_exception(), "{throttled:?}");
    let typing = participant
        .send_event()
        .connection_token(&connection_token)
        .content_type(TYPING)
        .send()
        .await
        .unwrap();
    assert!(typing.id().is_some());

    let transcript = participant
        .get_transcript()
        .connection_token(&connection_token)
        .scan_direction(ScanDirection::Forward)
        .max_results(10)
        .send()
        .await
        .unwrap();
    assert_eq!(transcript.initial_contact_id(), Some(contact_id.as_str()));
    let items = transcript.transcript();
    assert_eq!(items.len(), 2, "joined + message: {items:?}");
    assert_eq!(
        items[1].participant_role(),
        Some(&ParticipantRole::Customer)
    );
    assert_eq!(items[1].content(), Some("hello from the SDK"));
    assert_eq!(items[1].id(), sent.id());

    // The Connect client keeps the default (standard) retries: a 500 is retried,
    // and the replayed ClientToken answers the same contact.
    sim.faults(json!({"integration_id": "sdk", "api_fail_next": {"status": 500, "count": 1}}))
        .await;
    let replay = connect
        .start_chat_contact()
        .instance_id("sdk")
        .contact_flow_id(FLOW)
        .participant_details(
            ParticipantDetails::builder()
                .display_name("Ada")
                .build()
                .unwrap(),
        )
        .attributes("session_id", "s-1")
        .supported_messaging_content_types("text/plain")
        .client_token("relay-session-sdk")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.contact_id(), Some(contact_id.as_str()));

    participant
        .disconnect_participant()
        .connection_token(&connection_token)
        .send()
        .await
        .unwrap();
    let after = participant
        .send_message()
        .connection_token(&connection_token)
        .content_type("text/plain")
        .content("too late")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(after.is_access_denied_exception(), "{after:?}");

    let events = lambda.wait_for(5).await;
    assert_eq!(
        content_types(&events),
        [JOINED, "text/plain", TYPING, LEFT, ENDED]
    );
    connect
        .stop_contact_streaming()
        .instance_id("sdk")
        .contact_id(&contact_id)
        .streaming_id(streaming.streaming_id())
        .send()
        .await
        .unwrap();
}
