//! In-process tests of the Salesforce simulator on 127.0.0.1:0.

use super::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::json;

const TEST_KEY: &str = include_str!("test_identity_key.pem");
const TEST_JWKS: &str = include_str!("test_identity_jwks.json");
const ORG: &str = "00D5g000000abcdEAA";

struct Sim {
    base: String,
    http: reqwest::Client,
}

async fn start() -> Sim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router(Salesforce::new()))
            .await
            .unwrap()
    });
    Sim {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
    }
}

impl Sim {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut rb = self
            .http
            .request(
                method,
                format!("{}/salesforce/iamessage/api/v2{path}", self.base),
            )
            .bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send().await.unwrap()
    }

    async fn configure(&self, id: &str, extra: Value) {
        let mut body = json!({"integration_id": id, "org_id": ORG, "es_developer_name": id});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let (s, v) = self.post("/sim/salesforce/integrations", body).await;
        assert_eq!(s, 200, "{v}");
    }

    async fn anon_token(&self, esdn: &str) -> String {
        let (s, v) = self
            .post(
                "/salesforce/iamessage/api/v2/authorization/unauthenticated/access-token",
                json!({"orgId": ORG, "esDeveloperName": esdn, "capabilitiesVersion": "1", "platform": "Web"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["accessToken"].as_str().unwrap().to_owned()
    }

    async fn create(&self, token: &str, esdn: &str, cid: &str) -> u16 {
        self.api(
            reqwest::Method::POST,
            "/conversation",
            token,
            Some(json!({"conversationId": cid, "esDeveloperName": esdn,
                "routingAttributes": {"customer_id": "C-42", "reason": "refund"}})),
        )
        .await
        .status()
        .as_u16()
    }

    async fn say(&self, token: &str, esdn: &str, cid: &str, id: &str, text: &str) -> u16 {
        self.api(
            reqwest::Method::POST,
            &format!("/conversation/{cid}/message"),
            token,
            Some(
                json!({"message": {"id": id, "messageType": "StaticContentMessage",
                "staticContent": {"formatType": "Text", "text": text}},
                "esDeveloperName": esdn, "isNewMessagingSession": false}),
            ),
        )
        .await
        .status()
        .as_u16()
    }

    async fn view(&self, cid: &str) -> Value {
        self.http
            .get(format!("{}/sim/salesforce/conversations/{cid}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn sse(&self, token: &str, last: Option<&str>) -> reqwest::Response {
        let mut rb = self
            .http
            .get(format!("{}/salesforce/eventrouter/v1/sse", self.base))
            .bearer_auth(token)
            .header("X-Org-Id", &ORG[..15])
            .header("Accept", "text/event-stream");
        if let Some(l) = last {
            rb = rb.header("Last-Event-Id", l);
        }
        rb.send().await.unwrap()
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// SSE frames `(id, event, data)` read until `done` says so, the stream ends, or 5 s.
async fn frames(
    resp: &mut reqwest::Response,
    done: impl Fn(&[(String, String, String)]) -> bool,
) -> (Vec<(String, String, String)>, bool) {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut f = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    f.0 = v.into();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    f.1 = v.into();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    f.2 = v.into();
                }
            }
            if f.1 != "ping" {
                out.push(f);
            }
        }
        if done(&out) {
            return (out, false);
        }
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => buf.push_str(&String::from_utf8_lossy(&c)),
            Ok(_) => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

async fn control(sim: &Sim, cid: &str, action: &str, body: Value) -> Value {
    let (s, v) = sim
        .post(
            &format!("/sim/salesforce/conversations/{cid}/{action}"),
            body,
        )
        .await;
    assert_eq!(s, 200, "{action}: {v}");
    v
}

#[tokio::test]
async fn conversation_messages_typing_and_view() {
    let sim = start().await;
    sim.configure("t-view", json!({})).await;
    let token = sim.anon_token("t-view").await;
    let cid = uuid();
    assert_eq!(sim.create(&token, "t-view", &cid).await, 201);
    assert_eq!(
        sim.create(&token, "t-view", &cid).await,
        409,
        "duplicate id"
    );
    assert_eq!(
        sim.create(&token, "t-view", &cid.to_uppercase()).await,
        400,
        "uppercase"
    );
    assert_eq!(
        sim.create(&token, "other", &uuid()).await,
        400,
        "wrong deployment"
    );
    let m1 = uuid();
    assert_eq!(sim.say(&token, "t-view", &cid, &m1, "hello").await, 202);
    assert_eq!(
        sim.say(&token, "t-view", &cid, &m1, "hello").await,
        202,
        "accepted once"
    );
    assert_eq!(
        sim.say(&token, "t-view", &cid, "m-1", "x").await,
        400,
        "id must be a UUID"
    );
    let typing = sim
        .api(
            reqwest::Method::POST,
            &format!("/conversation/{cid}/entry"),
            &token,
            Some(json!({"entryType": "TypingStartedIndicator", "id": uuid()})),
        )
        .await;
    assert_eq!(typing.status().as_u16(), 202);
    let view = sim.view(&cid).await;
    assert_eq!(view["state"], "queued");
    assert_eq!(view["context"]["customer_id"], "C-42");
    assert_eq!(view["customer_typing"], true);
    assert_eq!(view["customer_connected"], true);
    let inbound: Vec<&Value> = view["messages"].as_array().unwrap().iter().collect();
    assert_eq!(inbound.len(), 1);
    assert_eq!(inbound[0]["id"], m1.as_str());
    assert_eq!(inbound[0]["direction"], "inbound");
    assert_eq!(view["duplicate_inbound_message_ids"], json!([]));
    // Another end user cannot see the conversation.
    let stranger = sim.anon_token("t-view").await;
    assert_eq!(sim.say(&stranger, "t-view", &cid, &uuid(), "hi").await, 404);
    // Accept, agent message: the id the control API returns is the entry's.
    control(&sim, &cid, "accept", json!({"agent_name": "Sam"})).await;
    let sent = control(&sim, &cid, "messages", json!({"text": "Hi, Sam here"})).await;
    let entries: Value = sim
        .api(
            reqwest::Method::GET,
            &format!("/conversation/{cid}/entries?limit=50&direction=FromEnd"),
            &token,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let newest = &entries["conversationEntries"][0];
    assert_eq!(newest["identifier"], sent["id"]);
    assert_eq!(
        newest["entryPayload"]["abstractMessage"]["staticContent"]["text"], "Hi, Sam here",
        "list entries carries payload objects"
    );
}

fn identity_token(sub: &str, kid: &str) -> String {
    let der = STANDARD
        .decode(
            TEST_KEY
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let now = now_ms() / 1000;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(json!({"iss": "relay", "sub": sub, "exp": now + 300}).to_string())
    );
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn subject_of(token: &str) -> String {
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    claims["sub"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn verified_tokens_need_a_signed_identity_and_keep_the_subject() {
    let sim = start().await;
    let jwks: Value = serde_json::from_str(TEST_JWKS).unwrap();
    sim.configure(
        "t-auth",
        json!({"auth_mode": "Auth", "identity_jwks": jwks, "identity_issuer": "relay"}),
    )
    .await;
    let path = "/salesforce/iamessage/api/v2/authorization/authenticated/access-token";
    let body = |tok: String| {
        json!({"orgId": ORG, "esDeveloperName": "t-auth", "capabilitiesVersion": "1",
        "platform": "Web", "authorizationType": "JWT", "customerIdentityToken": tok})
    };
    let (s1, a) = sim
        .post(path, body(identity_token("conv-1", "relay-test-1")))
        .await;
    let (s2, b) = sim
        .post(path, body(identity_token("conv-1", "relay-test-1")))
        .await;
    assert_eq!((s1, s2), (200, 200), "{a} {b}");
    let (ta, tb) = (
        a["accessToken"].as_str().unwrap(),
        b["accessToken"].as_str().unwrap(),
    );
    assert_ne!(ta, tb);
    assert_eq!(subject_of(ta), subject_of(tb), "same end user");
    assert!(subject_of(ta).ends_with("uid:conv-1"));
    let (s, _) = sim
        .post(path, body(identity_token("conv-1", "other-kid")))
        .await;
    assert_eq!(s, 401, "unknown key id");
    let mut forged = identity_token("conv-1", "relay-test-1");
    forged.push('A');
    assert_eq!(sim.post(path, body(forged)).await.0, 401);
    let (s, _) = sim
        .post(
            "/salesforce/iamessage/api/v2/authorization/unauthenticated/access-token",
            json!({"orgId": ORG, "esDeveloperName": "t-auth", "capabilitiesVersion": "1", "platform": "Web"}),
        )
        .await;
    assert_eq!(s, 400, "anonymous tokens are off for a verified deployment");
    let (s, _) = sim
        .post(
            "/salesforce/iamessage/api/v2/authorization/unauthenticated/access-token",
            json!({"orgId": "00D000000000000", "esDeveloperName": "t-auth", "capabilitiesVersion": "1", "platform": "Web"}),
        )
        .await;
    assert_eq!(s, 404, "unknown org");
}

#[tokio::test]
async fn the_stream_replays_after_last_event_id_and_drops_on_the_knob() {
    let sim = start().await;
    sim.configure("t-sse", json!({})).await;
    let token = sim.anon_token("t-sse").await;
    let cid = uuid();
    assert_eq!(sim.create(&token, "t-sse", &cid).await, 201);
    let mut stream = sim.sse(&token, None).await;
    assert_eq!(stream.status().as_u16(), 200);
    assert_eq!(
        stream.headers()["content-type"],
        "text/event-stream",
        "SSE content type"
    );
    control(&sim, &cid, "accept", json!({"agent_name": "Sam"})).await;
    let (got, _) = frames(&mut stream, |f| !f.is_empty()).await;
    assert_eq!(got[0].1, "CONVERSATION_PARTICIPANT_CHANGED");
    let data: Value = serde_json::from_str(&got[0].2).unwrap();
    assert_eq!(data["conversationId"], cid.as_str());
    assert!(
        data["conversationEntry"]["entryPayload"].is_string(),
        "payload is a JSON string on SSE"
    );
    let last = got[0].0.clone();

    sim.post(
        "/sim/salesforce/faults",
        json!({"integration_id": "t-sse", "sse_drop_next": 1}),
    )
    .await;
    let sent = control(&sim, &cid, "messages", json!({"text": "lost on the wire?"})).await;
    let (none, ended) = frames(&mut stream, |f| !f.is_empty()).await;
    assert!(none.is_empty() && ended, "dropped before writing: {none:?}");

    let mut resumed = sim.sse(&token, Some(&last)).await;
    let (replayed, _) = frames(&mut resumed, |f| !f.is_empty()).await;
    assert_eq!(replayed.len(), 1);
    let data: Value = serde_json::from_str(&replayed[0].2).unwrap();
    assert_eq!(data["conversationEntry"]["identifier"], sent["id"]);
    assert!(replayed[0].0.parse::<u64>().unwrap() > last.parse::<u64>().unwrap());

    // Duplicate and reordered delivery on the live stream.
    sim.post(
        "/sim/salesforce/faults",
        json!({"integration_id": "t-sse", "webhook_duplicate_next": 1, "webhook_out_of_order_next": 1}),
    )
    .await;
    let a = control(&sim, &cid, "messages", json!({"text": "a"})).await;
    let b = control(&sim, &cid, "messages", json!({"text": "b"})).await;
    let (got, _) = frames(&mut resumed, |f| f.len() >= 3).await;
    let ids: Vec<Value> = got
        .iter()
        .map(|f| {
            serde_json::from_str::<Value>(&f.2).unwrap()["conversationEntry"]["identifier"].clone()
        })
        .collect();
    assert_eq!(ids, vec![b["id"].clone(), b["id"].clone(), a["id"].clone()]);
    assert_eq!(got[0].0, got[1].0, "a duplicate keeps its id");
}

#[tokio::test]
async fn expired_tokens_are_refused_and_close_the_stream() {
    let sim = start().await;
    sim.configure("t-exp", json!({})).await;
    let token = sim.anon_token("t-exp").await;
    let cid = uuid();
    assert_eq!(sim.create(&token, "t-exp", &cid).await, 201);
    let mut stream = sim.sse(&token, None).await;
    let missing_org = sim
        .http
        .get(format!("{}/salesforce/eventrouter/v1/sse", sim.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing_org.status().as_u16(), 400);
    let wrong_org = sim
        .http
        .get(format!("{}/salesforce/eventrouter/v1/sse", sim.base))
        .bearer_auth(&token)
        .header("X-Org-Id", "00D000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_org.status().as_u16(), 401);

    sim.post(
        "/sim/salesforce/faults",
        json!({"integration_id": "t-exp", "expire_tokens_now": true}),
    )
    .await;
    let (got, ended) = frames(&mut stream, |f| !f.is_empty()).await;
    assert!(got[0].2.contains("Jwt is expired"), "{got:?}");
    let (_, ended_after) = frames(&mut stream, |_| false).await;
    assert!(ended || ended_after, "stream closed after the error");
    assert_eq!(sim.say(&token, "t-exp", &cid, &uuid(), "hi").await, 401);
    let cont = sim
        .api(
            reqwest::Method::GET,
            "/authorization/continuation-access-token",
            &token,
            None,
        )
        .await;
    assert_eq!(
        cont.status().as_u16(),
        401,
        "an expired token cannot be continued"
    );
    assert_eq!(sim.sse(&token, None).await.status().as_u16(), 401);
}

#[tokio::test]
async fn injected_failures_417_and_user_close() {
    let sim = start().await;
    sim.configure("t-close", json!({})).await;
    let token = sim.anon_token("t-close").await;
    let cid = uuid();
    assert_eq!(sim.create(&token, "t-close", &cid).await, 201);
    sim.post(
        "/sim/salesforce/faults",
        json!({"integration_id": "t-close", "api_fail_next": {"status": 429, "count": 1}}),
    )
    .await;
    let r = sim
        .api(
            reqwest::Method::POST,
            &format!("/conversation/{cid}/message"),
            &token,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(sim.say(&token, "t-close", &cid, &uuid(), "ok").await, 202);

    // End the session only: 417 until a new session is asked for.
    let ended = sim
        .api(
            reqwest::Method::DELETE,
            &format!("/conversation/{cid}/session?esDeveloperName=t-close"),
            &token,
            None,
        )
        .await;
    assert_eq!(ended.status().as_u16(), 204);
    assert_eq!(sim.say(&token, "t-close", &cid, &uuid(), "hi").await, 417);
    let again = sim
        .api(
            reqwest::Method::POST,
            &format!("/conversation/{cid}/message"),
            &token,
            Some(
                json!({"message": {"id": uuid(), "messageType": "StaticContentMessage",
                "staticContent": {"formatType": "Text", "text": "new session"}},
                "esDeveloperName": "t-close", "isNewMessagingSession": true}),
            ),
        )
        .await;
    assert_eq!(again.status().as_u16(), 202);

    control(&sim, &cid, "accept", json!({"agent_name": "Sam"})).await;
    let close = |token: String, cid: String| {
        let sim = &sim;
        async move {
            sim.api(
                reqwest::Method::DELETE,
                &format!("/conversation/{cid}?esDeveloperName=t-close"),
                &token,
                None,
            )
            .await
            .status()
            .as_u16()
        }
    };
    assert_eq!(close(token.clone(), cid.clone()).await, 204);
    assert_eq!(
        close(token.clone(), cid.clone()).await,
        404,
        "already closed"
    );
    let view = sim.view(&cid).await;
    assert_eq!(view["customer_connected"], false);
    assert_eq!(view["state"], "ended");
    let entries: Value = sim
        .api(
            reqwest::Method::GET,
            &format!("/conversation/{cid}/entries?entryTypeFilter=CloseConversation,SessionStatusChanged,ParticipantChanged"),
            &token,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = entries["conversationEntries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entryType"].as_str().unwrap())
        .collect();
    assert!(types.ends_with(&[
        "CloseConversation",
        "ParticipantChanged",
        "SessionStatusChanged"
    ]));
}

#[tokio::test]
async fn faults_refuse_knobs_without_meaning_and_bad_configs() {
    let sim = start().await;
    let (s, _) = sim
        .post("/sim/salesforce/faults", json!({"ws_drop_next": true}))
        .await;
    assert_eq!(s, 400);
    let (s, _) = sim
        .post("/sim/salesforce/faults", json!({"no_such_knob": 1}))
        .await;
    assert_eq!(s, 400);
    let (s, v) = sim
        .post(
            "/sim/salesforce/faults",
            json!({"sse_ping_secs": 5, "integration_id": "x", "sse_drop_next": 2}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["sse_ping_secs"], 5.0);
    assert_eq!(v["integrations"]["x"]["sse_drop_next"], 2);
    let (s, _) = sim
        .post(
            "/sim/salesforce/integrations",
            json!({"integration_id": "bad", "org_id": "123", "es_developer_name": "x"}),
        )
        .await;
    assert_eq!(s, 400);
    sim.configure("t-a", json!({})).await;
    let (s, _) = sim
        .post(
            "/sim/salesforce/integrations",
            json!({"integration_id": "t-b", "org_id": ORG, "es_developer_name": "t-a"}),
        )
        .await;
    assert_eq!(s, 409, "deployments are unique per org");
}
