//! In-process scenarios: the whole server on 127.0.0.1:0, a small axum
//! receiver as the webhook target, real HTTP clients.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "zendesk-webhook-shared-secret";
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

    /// Every event of every POST, in arrival order.
    fn events(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .flat_map(|(_, b)| {
                body_json(b)["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }

    async fn wait_until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; got {:#?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_requests(&self, n: usize) -> Vec<(HeaderMap, Bytes)> {
        self.wait_until(&format!("{n} webhook calls"), |r| r.requests().len() >= n)
            .await;
        self.requests()
    }

    /// Waits for an event of this type matching `pred`; returns it.
    async fn wait_event(&self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let found = |r: &Self| {
            r.events()
                .into_iter()
                .find(|e| e["type"] == kind && pred(e))
        };
        self.wait_until(kind, |r| found(r).is_some()).await;
        found(self).unwrap()
    }

    fn types(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect()
    }
}

fn body_json(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap()
}

fn api_key_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-api-key")
        .map(|v| v.to_str().unwrap().to_string())
}

/// An HS256 JWT written out here, independent of the simulator's verifier.
fn jwt(kid: &str, secret: &str, alg: &str, payload: Value) -> String {
    let enc = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let signing_input = format!(
        "{}.{}",
        enc(&json!({"alg": alg, "typ": "JWT", "kid": kid})),
        enc(&payload)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

struct Sim {
    base: String,
    http: reqwest::Client,
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
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

    async fn view(&self, cid: &str) -> Value {
        self.get(&format!("/sim/zendesk/conversations/{cid}")).await
    }

    async fn faults(&self, update: Value) {
        let (status, body) = self.control("/sim/zendesk/faults", update).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Configures app `app` with key `key-{app}` / `secret-{app}` and integration `int-{app}`.
    async fn configure(&self, app: &str, webhook_url: &str, extra: Value) -> Value {
        let mut cfg = json!({
            "app_id": app, "key_id": format!("key-{app}"), "key_secret": format!("secret-{app}"),
            "key_scope": "integration", "integration_id": format!("int-{app}"),
            "webhook_url": webhook_url, "webhook_secret": SECRET,
            "switchboard_integration_name": "ai-relay", "deliver_standby_events": true,
        });
        cfg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let (status, body) = self.control("/sim/zendesk/integrations", cfg).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn call(
        &self,
        method: reqwest::Method,
        app: &str,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(
            method,
            format!("{}/zendesk/sc/v2/apps/{app}{path}", self.base),
        );
        req = match auth {
            Auth::None => req,
            Auth::Basic(id, secret) => req.basic_auth(id, Some(secret)),
            Auth::Bearer(token) => req.bearer_auth(token),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// A call with the app's integration key.
    async fn api(
        &self,
        method: reqwest::Method,
        app: &str,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let (id, secret) = (format!("key-{app}"), format!("secret-{app}"));
        self.call(method, app, path, Auth::Basic(&id, &secret), body)
            .await
    }

    async fn post(&self, app: &str, path: &str, body: Value) -> Reply {
        self.api(reqwest::Method::POST, app, path, Some(body)).await
    }

    async fn user_and_conversation(&self, app: &str, external_id: &str) -> String {
        let r = self
            .post(app, "/users", json!({"externalId": external_id, "profile": {"givenName": "Ada", "email": "ada@example.com"}}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = self
            .post(app, "/conversations", json!({"type": "personal", "participants": [{"userExternalId": external_id}], "displayName": "AI handoff"}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["conversation"]["id"].as_str().unwrap().to_string()
    }

    async fn say(&self, app: &str, cid: &str, author: Value, text: &str) -> String {
        let r = self
            .post(
                app,
                &format!("/conversations/{cid}/messages"),
                json!({"author": author, "content": {"type": "text", "text": text}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["messages"][0]["id"].as_str().unwrap().to_string()
    }

    async fn pass(&self, app: &str, cid: &str, target: &str, metadata: Value) -> Reply {
        self.post(
            app,
            &format!("/conversations/{cid}/passControl"),
            json!({"switchboardIntegration": target, "metadata": metadata}),
        )
        .await
    }

    /// The relay's handoff sequence (spec §5). Returns the conversation and summary ids.
    async fn handoff(&self, app: &str, external_id: &str) -> (String, String) {
        let cid = self.user_and_conversation(app, external_id).await;
        assert_eq!(
            self.pass(app, &cid, "ai-relay", json!({})).await.status,
            200
        );
        let business = json!({"type": "business", "displayName": "AI assistant"});
        let summary = self
            .say(
                app,
                &cid,
                business,
                "Handoff from AI agent. Reason: billing.",
            )
            .await;
        let user = json!({"type": "user", "userExternalId": external_id});
        self.say(app, &cid, user, "my parcel arrived broken").await;
        let r = self
            .pass(
                app,
                &cid,
                "zd-agentWorkspace",
                json!({
                    "first_message_id": summary,
                    "dataCapture.ticketField.360012345678": "billing",
                    "dataCapture.systemField.tags": "ai_handoff vip",
                    "dataCapture.systemField.group_id": "6510394394139",
                    "dataCapture.systemField.requester.name": "Ada",
                    "dataCapture.systemField.requester.email": "ada@example.com",
                }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        (cid, summary)
    }

    async fn agent(&self, cid: &str, action: &str, body: Value) -> Value {
        let (status, body) = self
            .control(&format!("/sim/zendesk/conversations/{cid}/{action}"), body)
            .await;
        assert_eq!(status, 200, "{action}: {body}");
        body
    }
}

#[tokio::test]
async fn desktop_page_has_the_shared_element_ids() {
    let sim = Sim::start().await;
    let page = sim
        .http
        .get(format!("{}/zendesk/desktop", sim.base))
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
        "/sim/zendesk/conversations",
    ] {
        assert!(page.contains(id), "desktop page lacks {id}");
    }
}

#[tokio::test]
async fn basic_and_jwt_auth_scopes_and_tenant_isolation() {
    let sim = Sim::start().await;
    let ids = sim
        .configure("a1", "http://127.0.0.1:9/hook", json!({}))
        .await;
    sim.configure("a2", "http://127.0.0.1:9/hook", json!({}))
        .await;
    // An app-scoped key for a1 next to the integration key.
    sim.configure(
        "a1",
        "http://127.0.0.1:9/hook",
        json!({"key_id": "admin-a1", "key_secret": "admin-secret", "key_scope": "app"}),
    )
    .await;
    let get = reqwest::Method::GET;

    let unauthorized =
        json!({"errors": [{"code": "unauthorized", "title": "Authorization is required"}]});
    for auth in [
        Auth::None,
        Auth::Basic("key-a1", "wrong"),
        Auth::Basic("nobody", "secret-a1"),
        // A key of another app.
        Auth::Basic("key-a2", "secret-a2"),
    ] {
        let r = sim.call(get.clone(), "a1", "/users/x", auth, None).await;
        assert_eq!((r.status, &r.body), (401, &unauthorized));
    }
    let r = sim
        .call(
            get.clone(),
            "a1",
            "/users/x",
            Auth::Basic("key-a1", "secret-a1"),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (404, Some("user_not_found"))
    );

    // Integration scope may not touch the switchboard configuration.
    let r = sim.api(get.clone(), "a1", "/switchboards", None).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let admin = Auth::Basic("admin-a1", "admin-secret");
    let r = sim
        .call(get.clone(), "a1", "/switchboards", admin, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = r.body["switchboards"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sid, ids["switchboard_id"]);
    let path = format!("/switchboards/{sid}/switchboardIntegrations");
    let r = sim.call(get.clone(), "a1", &path, admin, None).await;
    let list = r.body["switchboardIntegrations"]
        .as_array()
        .unwrap()
        .clone();
    let find = |name: &str| list.iter().find(|s| s["name"] == name).cloned().unwrap();
    assert_eq!(
        find("zd-agentWorkspace")["integrationType"],
        "zd:agentWorkspace"
    );
    assert_eq!(
        find("zd-agentWorkspace")["id"],
        ids["agent_workspace_switchboard_integration_id"]
    );
    assert_eq!(find("zd-answerBot")["integrationType"], "zd:answerBot");
    assert_eq!(
        find("ai-relay")["id"],
        ids["relay_switchboard_integration_id"]
    );
    assert_eq!(find("ai-relay")["integrationId"], "int-a1");
    assert_eq!(find("ai-relay")["deliverStandbyEvents"], true);

    let create = json!({"name": "other-bot", "integrationType": "custom-bot"});
    let r = sim.post("a1", &path, create.clone()).await;
    assert_eq!(r.status, 403);
    let r = sim
        .call(
            reqwest::Method::POST,
            "a1",
            &path,
            admin,
            Some(create.clone()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = sim
        .call(reqwest::Method::POST, "a1", &path, admin, Some(create))
        .await;
    assert_eq!(r.status, 409, "names are unique");
    let r = sim
        .call(
            reqwest::Method::POST,
            "a1",
            &path,
            admin,
            Some(json!({"name": "bad name!", "integrationType": "x"})),
        )
        .await;
    assert_eq!(r.status, 400);

    // JWT: HS256 with kid; the claimed scope never exceeds the key's.
    let token = jwt("admin-a1", "admin-secret", "HS256", json!({"scope": "app"}));
    let r = sim
        .call(
            get.clone(),
            "a1",
            "/switchboards",
            Auth::Bearer(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let token = jwt("key-a1", "secret-a1", "HS256", json!({"scope": "app"}));
    let r = sim
        .call(
            get.clone(),
            "a1",
            "/switchboards",
            Auth::Bearer(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    for token in [
        jwt("admin-a1", "other-secret", "HS256", json!({"scope": "app"})),
        jwt("admin-a1", "admin-secret", "none", json!({"scope": "app"})),
        jwt("admin-a1", "admin-secret", "HS256", json!({})),
    ] {
        let r = sim
            .call(
                get.clone(),
                "a1",
                "/switchboards",
                Auth::Bearer(&token),
                None,
            )
            .await;
        assert_eq!(r.status, 401);
    }
}

#[tokio::test]
async fn users_conflict_on_external_id_and_are_found_both_ways() {
    let sim = Sim::start().await;
    sim.configure("u", "http://127.0.0.1:9/hook", json!({}))
        .await;
    let body =
        json!({"externalId": "relay:s1", "profile": {"givenName": "Ada", "surname": "Lovelace"}});
    let r = sim.post("u", "/users", body.clone()).await;
    assert_eq!(r.status, 201);
    let user = r.body["user"].clone();
    assert_eq!(user["externalId"], "relay:s1");
    assert_eq!(user["profile"]["givenName"], "Ada");
    assert_eq!(user["id"].as_str().unwrap().len(), 24);
    let r = sim.post("u", "/users", body).await;
    assert_eq!(
        (r.status, &r.body),
        (
            409,
            &json!({"errors": [{"code": "conflict", "title": "User already exists"}]})
        )
    );
    for key in ["relay:s1", user["id"].as_str().unwrap()] {
        let r = sim
            .api(reqwest::Method::GET, "u", &format!("/users/{key}"), None)
            .await;
        assert_eq!((r.status, &r.body["user"]["id"]), (200, &user["id"]));
    }
    let r = sim.post("u", "/users", json!({"profile": {}})).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let stats = sim.get("/sim/zendesk/stats?integration_id=u").await;
    assert_eq!(stats["users_created"], 1);
}

#[tokio::test]
async fn personal_conversations_have_exactly_one_participant() {
    let sim = Sim::start().await;
    sim.configure("c", "http://127.0.0.1:9/hook", json!({}))
        .await;
    assert_eq!(
        sim.post("c", "/users", json!({"externalId": "ada"}))
            .await
            .status,
        201
    );
    assert_eq!(
        sim.post("c", "/users", json!({"externalId": "bob"}))
            .await
            .status,
        201
    );
    for participants in [
        json!([]),
        json!([{"userExternalId": "ada"}, {"userExternalId": "bob"}]),
    ] {
        let r = sim
            .post(
                "c",
                "/conversations",
                json!({"type": "personal", "participants": participants}),
            )
            .await;
        assert_eq!(
            (r.status, r.body["errors"][0]["code"].as_str()),
            (400, Some("bad_request"))
        );
    }
    let r = sim
        .post(
            "c",
            "/conversations",
            json!({"type": "personal", "participants": [{"userExternalId": "nobody"}]}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (404, Some("user_not_found"))
    );

    let create = json!({"type": "personal", "participants": [{"userExternalId": "ada"}]});
    let first = sim.post("c", "/conversations", create.clone()).await;
    assert_eq!(first.status, 201);
    let conv = &first.body["conversation"];
    assert_eq!(conv["type"], "personal");
    assert_eq!(conv["isDefault"], true);
    assert_eq!(conv["activeSwitchboardIntegration"]["name"], "zd-answerBot");
    let second = sim.post("c", "/conversations", create).await;
    assert_eq!(second.body["conversation"]["isDefault"], false);

    let list = sim
        .api(
            reqwest::Method::GET,
            "c",
            "/conversations?filter[userExternalId]=ada",
            None,
        )
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["conversations"].as_array().unwrap().len(), 2);
    assert_eq!(list.body["meta"]["hasMore"], false);
    let r = sim
        .api(reqwest::Method::GET, "c", "/conversations", None)
        .await;
    assert_eq!(r.status, 400, "a user filter is required");

    // The default conversation cannot be deleted, another one can.
    let delete = |cid: &Value| format!("/conversations/{}", cid.as_str().unwrap());
    let r = sim
        .api(reqwest::Method::DELETE, "c", &delete(&conv["id"]), None)
        .await;
    assert_eq!(r.status, 400);
    let other = &second.body["conversation"]["id"];
    let r = sim
        .api(reqwest::Method::DELETE, "c", &delete(other), None)
        .await;
    assert_eq!((r.status, &r.body), (200, &json!({})));
    let r = sim
        .api(reqwest::Method::GET, "c", &delete(other), None)
        .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (404, Some("conversation_not_found"))
    );
}

#[tokio::test]
async fn user_activity_may_only_be_conversation_read() {
    let sim = Sim::start().await;
    sim.configure("act", "http://127.0.0.1:9/hook", json!({}))
        .await;
    let cid = sim.user_and_conversation("act", "ada").await;
    let path = format!("/conversations/{cid}/activity");
    let user = json!({"type": "user", "userExternalId": "ada"});
    for (author, kind, status) in [
        (user.clone(), "typing:start", 400),
        (user.clone(), "typing:stop", 400),
        (user.clone(), "conversation:read", 200),
        (json!({"type": "business"}), "typing:start", 200),
        (json!({"type": "business"}), "conversation:read", 200),
        (json!({"type": "business"}), "typing:maybe", 400),
    ] {
        let r = sim
            .post("act", &path, json!({"author": author, "type": kind}))
            .await;
        assert_eq!(r.status, status, "{author} {kind}: {}", r.body);
        if status == 400 {
            assert_eq!(r.body["errors"][0]["code"], "bad_request");
        }
    }
}

#[tokio::test]
async fn messages_are_validated_paged_and_locked() {
    let sim = Sim::start().await;
    sim.configure("msg", "http://127.0.0.1:9/hook", json!({}))
        .await;
    let cid = sim.user_and_conversation("msg", "ada").await;
    let path = format!("/conversations/{cid}/messages");
    let user = json!({"type": "user", "userExternalId": "ada"});
    for (content, status) in [
        (json!({"type": "text", "text": "x".repeat(4097)}), 400),
        (json!({"type": "text", "text": "x".repeat(4096)}), 201),
        (json!({"type": "image"}), 400),
        (
            json!({"type": "image", "mediaUrl": "https://example.com/a.png"}),
            201,
        ),
        (
            json!({"type": "file", "mediaUrl": "https://example.com/a.pdf", "altText": "invoice"}),
            201,
        ),
        (json!({"type": "carousel"}), 400),
    ] {
        let r = sim
            .post("msg", &path, json!({"author": user, "content": content}))
            .await;
        assert_eq!(r.status, status, "{content}: {}", r.body);
    }
    let r = sim
        .post("msg", &path, json!({"author": user, "content": {"type": "text", "text": "x"}, "metadata": {"a": {"nested": 1}}}))
        .await;
    assert_eq!(r.status, 400, "metadata must be flat");
    let r = sim
        .post(
            "msg",
            &path,
            json!({"author": {"type": "agent"}, "content": {"type": "text", "text": "x"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = sim
        .post("msg", &path, json!({"author": user, "content": {"type": "text", "text": "hi"}, "metadata": {"k": "v"}}))
        .await;
    let message = &r.body["messages"][0];
    assert_eq!(message["source"]["type"], "api:conversations");
    assert_eq!(message["source"]["integrationId"], "int-msg");
    assert_eq!(message["author"]["type"], "user");
    assert_eq!(message["metadata"]["k"], "v");
    assert!(message["received"].as_str().unwrap().ends_with('Z'));

    for i in 0..101 {
        sim.say(
            "msg",
            &cid,
            json!({"type": "business"}),
            &format!("line {i}"),
        )
        .await;
    }
    // 105 messages: the newest 100 first, then the 5 before.
    let page = sim.api(reqwest::Method::GET, "msg", &path, None).await.body;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 100);
    assert_eq!(messages[99]["content"]["text"], "line 100");
    assert_eq!(page["meta"]["hasMore"], true);
    let before = page["meta"]["beforeCursor"].as_str().unwrap();
    assert!(page["links"]["prev"]
        .as_str()
        .unwrap()
        .ends_with(&format!("page[before]={before}")));
    let older = sim
        .api(
            reqwest::Method::GET,
            "msg",
            &format!("{path}?page[before]={before}"),
            None,
        )
        .await
        .body;
    assert_eq!(older["messages"].as_array().unwrap().len(), 5);
    assert_eq!(older["meta"]["hasMore"], false);

    sim.faults(json!({"integration_id": "msg", "locked_after_messages": 105}))
        .await;
    let r = sim
        .post(
            "msg",
            &path,
            json!({"author": user, "content": {"type": "text", "text": "one more"}}),
        )
        .await;
    assert_eq!(r.status, 423);
    let other = sim.user_and_conversation("msg", "bob").await;
    sim.say(
        "msg",
        &other,
        json!({"type": "business"}),
        "a fresh conversation is not locked",
    )
    .await;
}

#[tokio::test]
async fn handoff_makes_a_ticket_and_webhooks_carry_envelope_key_and_echoes() {
    let (url, receiver) = Receiver::start(&[]).await;
    let sim = Sim::start().await;
    let ids = sim.configure("ho", &url, json!({})).await;
    let (cid, summary) = sim.handoff("ho", "relay:s1").await;

    let view = sim.view(&cid).await;
    assert_eq!(view["state"], "queued");
    assert_eq!(view["integration_id"], "ho");
    assert_eq!(view["customer"]["id"], "relay:s1");
    assert_eq!(view["customer"]["display_name"], "Ada");
    assert_eq!(view["control"]["active"], "zd-agentWorkspace");
    assert_eq!(view["agent"], Value::Null);
    assert_eq!(view["customer_connected"], true);
    assert_eq!(
        view["context"]["dataCapture.ticketField.360012345678"],
        "billing"
    );
    let ticket = &view["ticket"];
    assert_eq!(ticket["status"], "open");
    assert_eq!(ticket["fields"]["360012345678"], "billing");
    assert_eq!(ticket["tags"], json!(["ai_handoff", "vip"]));
    assert_eq!(ticket["group_id"], "6510394394139");
    assert_eq!(
        ticket["requester"],
        json!({"name": "Ada", "email": "ada@example.com"})
    );
    let transcript: Vec<&str> = ticket["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        transcript,
        [
            "Handoff from AI agent. Reason: billing.",
            "my parcel arrived broken"
        ]
    );
    let directions: Vec<&str> = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(directions, ["inbound", "inbound"]);

    receiver
        .wait_until("four events", |r| r.events().len() >= 4)
        .await;
    assert_eq!(
        receiver.types(),
        [
            "switchboard:passControl",
            "conversation:message",
            "conversation:message",
            "switchboard:passControl"
        ]
    );
    for (headers, body) in receiver.requests() {
        assert_eq!(api_key_of(&headers).as_deref(), Some(SECRET));
        assert_eq!(headers["content-type"], "application/json");
        let envelope = body_json(&body);
        assert_eq!(envelope["app"]["id"], "ho");
        assert_eq!(
            envelope["webhook"],
            json!({"id": ids["webhook_id"], "version": "v2"})
        );
    }
    let events = receiver.events();
    // Our own business post comes back, with the id the 201 gave.
    let echo = &events[1];
    assert_eq!(echo["payload"]["message"]["id"], summary);
    assert_eq!(
        echo["payload"]["message"]["source"]["type"],
        "api:conversations"
    );
    assert_eq!(echo["payload"]["message"]["author"]["type"], "business");
    assert_eq!(echo["payload"]["conversation"]["id"], cid);
    assert_eq!(
        echo["payload"]["conversation"]["activeSwitchboardIntegration"]["name"],
        "ai-relay"
    );
    assert_eq!(events[2]["payload"]["message"]["author"]["type"], "user");
    let queued = &events[3];
    assert_eq!(
        queued["payload"]["conversation"]["activeSwitchboardIntegration"]["integrationType"],
        "zd:agentWorkspace"
    );
    assert_eq!(queued["payload"]["metadata"]["first_message_id"], summary);
    assert!(queued["createdAt"].as_str().unwrap().ends_with('Z'));
    let stats = sim.get("/sim/zendesk/stats?integration_id=ho").await;
    assert_eq!(stats["tickets_created"], 1);
}

#[tokio::test]
async fn agent_replies_carry_the_agent_id_and_closing_releases_control() {
    let (url, receiver) = Receiver::start(&[]).await;
    let sim = Sim::start().await;
    sim.configure("ag", &url, json!({})).await;
    let (cid, _) = sim.handoff("ag", "relay:s1").await;
    receiver
        .wait_until("handoff events", |r| r.events().len() >= 4)
        .await;

    let view = sim
        .agent(&cid, "accept", json!({"agent_name": "Sam"}))
        .await;
    assert_eq!(view["state"], "active");
    assert_eq!(view["agent"]["name"], "Sam");
    let (status, _) = sim
        .control(
            &format!("/sim/zendesk/conversations/{cid}/accept"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "accepting twice fails");

    let reply = sim
        .agent(&cid, "messages", json!({"text": "Hi Ada, I can help"}))
        .await;
    let first = receiver
        .wait_event("conversation:message", |e| {
            e["payload"]["message"]["id"] == reply["id"]
        })
        .await;
    assert_eq!(receiver.events().len(), 5, "accept sent nothing");
    let message = &first["payload"]["message"];
    assert_eq!(message["author"]["type"], "business");
    assert_eq!(message["author"]["displayName"], "Sam");
    assert!(message["author"]["avatarUrl"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    assert_eq!(message["source"]["type"], "zd:agentWorkspace");
    assert_eq!(
        message["content"],
        json!({"type": "text", "text": "Hi Ada, I can help"})
    );
    let sam = message["metadata"]["__zendesk_msg.agent.id"]
        .as_str()
        .unwrap()
        .to_string();

    sim.agent(&cid, "transfer", json!({"agent_name": "Kim"}))
        .await;
    let reply = sim
        .agent(&cid, "messages", json!({"text": "Kim here"}))
        .await;
    let second = receiver
        .wait_event("conversation:message", |e| {
            e["payload"]["message"]["id"] == reply["id"]
        })
        .await;
    let kim = second["payload"]["message"]["metadata"]["__zendesk_msg.agent.id"]
        .as_str()
        .unwrap();
    assert_ne!(kim, sam);
    assert_eq!(second["payload"]["message"]["author"]["displayName"], "Kim");

    // Typing is silent unless the knob is on.
    let typing = sim.agent(&cid, "typing", json!({})).await;
    assert_eq!(typing["sent"], false);
    sim.faults(json!({"integration_id": "ag", "agent_typing_events": true}))
        .await;
    assert_eq!(sim.agent(&cid, "typing", json!({})).await["sent"], true);
    let typing = receiver.wait_event("conversation:typing", |_| true).await;
    assert_eq!(typing["payload"]["activity"]["author"]["type"], "business");

    let view = sim.agent(&cid, "end", json!({})).await;
    assert_eq!(view["state"], "ended");
    assert_eq!(view["ticket"]["status"], "closed");
    let released = receiver
        .wait_event("switchboard:releaseControl", |_| true)
        .await;
    assert_eq!(released["payload"]["reason"], "ticketClosed");
    assert!(released["payload"]["conversation"]["activeSwitchboardIntegration"].is_null());
    let types = receiver.types();
    let closed = types.len() - 2;
    assert_eq!(
        &types[closed..],
        ["conversation:message", "switchboard:releaseControl"]
    );
    let activity = &receiver.events()[closed]["payload"]["message"];
    assert_eq!(activity["activity"]["type"], "ticket:closed");
    assert_eq!(activity["author"]["type"], "business");
    assert!(activity["metadata"]["__zendesk_msg.agent.id"].is_null());
    let view = sim.view(&cid).await;
    assert_eq!(view["control"]["active"], Value::Null);
    let (status, _) = sim
        .control(&format!("/sim/zendesk/conversations/{cid}/end"), json!({}))
        .await;
    assert_eq!(status, 409, "the ticket is closed already");
}

#[tokio::test]
async fn close_mode_pass_next_and_trigger_messages() {
    let (url, receiver) = Receiver::start(&[]).await;
    let sim = Sim::start().await;
    sim.configure("pn", &url, json!({})).await;
    sim.faults(json!({"integration_id": "pn", "close_mode": "pass_next"}))
        .await;
    let (cid, _) = sim.handoff("pn", "relay:s1").await;
    let trigger = sim
        .agent(
            &cid,
            "messages",
            json!({"text": "We reply within minutes", "bot": true}),
        )
        .await;
    let event = receiver
        .wait_event("conversation:message", |e| {
            e["payload"]["message"]["id"] == trigger["id"]
        })
        .await;
    assert_eq!(
        event["payload"]["message"]["metadata"]["__zendesk_msg.agent.id"],
        "__trigger"
    );
    assert_eq!(
        sim.view(&cid).await["state"],
        "queued",
        "a trigger is no agent"
    );

    sim.agent(
        &cid,
        "messages",
        json!({"text": "Hello", "agent_name": "Sam"}),
    )
    .await;
    let view = sim.view(&cid).await;
    assert_eq!(
        (view["state"].as_str(), view["agent"]["name"].as_str()),
        (Some("active"), Some("Sam"))
    );
    sim.agent(&cid, "end", json!({})).await;
    let passed = receiver
        .wait_event("switchboard:passControl", |e| {
            e["payload"]["reason"] == "ticketClosed"
        })
        .await;
    assert_eq!(
        passed["payload"]["conversation"]["activeSwitchboardIntegration"]["name"],
        "zd-answerBot"
    );
    assert!(!receiver
        .types()
        .contains(&"switchboard:releaseControl".to_string()));
}

#[tokio::test]
async fn user_end_pass_back_then_agent_closes() {
    let (url, receiver) = Receiver::start(&[]).await;
    let sim = Sim::start().await;
    sim.configure("ue", &url, json!({})).await;
    let (cid, _) = sim.handoff("ue", "relay:s1").await;
    sim.agent(&cid, "accept", json!({"agent_name": "Sam"}))
        .await;
    sim.say(
        "ue",
        &cid,
        json!({"type": "business"}),
        "The customer left the chat.",
    )
    .await;
    assert_eq!(
        sim.pass("ue", &cid, "ai-relay", json!({})).await.status,
        200
    );
    let view = sim.view(&cid).await;
    assert_eq!(view["state"], "ended");
    assert_eq!(view["customer_connected"], false);
    assert_eq!(view["ticket"]["status"], "open");
    assert_eq!(view["control"]["active"], "ai-relay");
    let (status, _) = sim
        .control(
            &format!("/sim/zendesk/conversations/{cid}/messages"),
            json!({"text": "hello?"}),
        )
        .await;
    assert_eq!(status, 409);
    sim.agent(&cid, "end", json!({})).await;
    receiver
        .wait_event("conversation:message", |e| {
            e["payload"]["message"]["activity"]["type"] == "ticket:closed"
        })
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!receiver
        .types()
        .contains(&"switchboard:releaseControl".to_string()));
}

#[tokio::test]
async fn webhook_is_retried_after_503_but_not_after_401() {
    let (url, receiver) = Receiver::start(&[503, 503]).await;
    let sim = Sim::start().await;
    sim.configure("retry", &url, json!({})).await;
    sim.faults(json!({"integration_id": "retry", "webhook_retry_base_ms": 20}))
        .await;
    let cid = sim.user_and_conversation("retry", "ada").await;
    sim.say("retry", &cid, json!({"type": "business"}), "one")
        .await;
    let got = receiver.wait_requests(3).await;
    assert_eq!(got[0].1, got[1].1, "a retry resends the same bytes");
    assert_eq!(got[1].1, got[2].1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(receiver.requests().len(), 3, "no call after the 200");
    let attempts: Vec<(u64, u64)> = sim.view(&cid).await["webhook_attempts"]
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
    assert_eq!(attempts, [(1, 503), (2, 503), (3, 200)]);

    let (url, receiver) = Receiver::start(&[401]).await;
    sim.configure("noretry", &url, json!({})).await;
    sim.faults(json!({"integration_id": "noretry", "webhook_retry_base_ms": 20}))
        .await;
    let cid = sim.user_and_conversation("noretry", "ada").await;
    sim.say("noretry", &cid, json!({"type": "business"}), "refused")
        .await;
    sim.say("noretry", &cid, json!({"type": "business"}), "next")
        .await;
    let got = receiver.wait_requests(2).await;
    let text =
        |b: &Bytes| body_json(b)["events"][0]["payload"]["message"]["content"]["text"].clone();
    assert_eq!(
        (text(&got[0].1), text(&got[1].1)),
        (json!("refused"), json!("next"))
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(receiver.requests().len(), 2, "401 is not retried");
    let stats = sim.get("/sim/zendesk/stats?integration_id=noretry").await;
    assert_eq!(
        (
            stats["webhook_failures"].as_u64(),
            stats["webhook_retries"].as_u64()
        ),
        (Some(1), Some(0))
    );
}

#[tokio::test]
async fn duplicate_keeps_the_event_id_and_batch_puts_events_in_one_post() {
    let (url, receiver) = Receiver::start(&[]).await;
    let sim = Sim::start().await;
    sim.configure("dup", &url, json!({})).await;
    let cid = sim.user_and_conversation("dup", "ada").await;
    sim.faults(json!({"integration_id": "dup", "webhook_duplicate_next": 1}))
        .await;
    sim.say("dup", &cid, json!({"type": "business"}), "first")
        .await;
    let got = receiver.wait_requests(2).await;
    assert_eq!(got[0].1, got[1].1, "same event, same id, new POST");
    assert_eq!(
        body_json(&got[0].1)["events"][0]["id"],
        body_json(&got[1].1)["events"][0]["id"]
    );

    sim.faults(json!({"integration_id": "dup", "webhook_batch_next": 2}))
        .await;
    sim.say("dup", &cid, json!({"type": "business"}), "second")
        .await;
    sim.say("dup", &cid, json!({"type": "business"}), "third")
        .await;
    sim.say("dup", &cid, json!({"type": "business"}), "fourth")
        .await;
    let got = receiver.wait_requests(4).await;
    let texts = |b: &Bytes| -> Vec<Value> {
        body_json(b)["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["payload"]["message"]["content"]["text"].clone())
            .collect()
    };
    assert_eq!(texts(&got[2].1), [json!("second"), json!("third")]);
    assert_eq!(texts(&got[3].1), [json!("fourth")]);
}

#[tokio::test]
async fn wrong_or_missing_key_dropped_and_reordered_events() {
    let (url, receiver) = Receiver::start(&[]).await;
    let sim = Sim::start().await;
    sim.configure("kf", &url, json!({})).await;
    let cid = sim.user_and_conversation("kf", "ada").await;
    sim.faults(
        json!({"integration_id": "kf", "webhook_bad_signature_next": 1,
                      "webhook_out_of_order_next": 1}),
    )
    .await;
    for text in ["one", "two", "three"] {
        sim.say("kf", &cid, json!({"type": "business"}), text).await;
    }
    let got = receiver.wait_requests(3).await;
    let text =
        |b: &Bytes| body_json(b)["events"][0]["payload"]["message"]["content"]["text"].clone();
    let texts: Vec<Value> = got.iter().map(|(_, b)| text(b)).collect();
    assert_eq!(texts, [json!("two"), json!("one"), json!("three")]);
    for (headers, body) in &got {
        let valid = api_key_of(headers).as_deref() == Some(SECRET);
        assert_eq!(
            valid,
            text(body) != "one",
            "only 'one' has a wrong X-API-Key"
        );
    }

    sim.faults(
        json!({"integration_id": "kf", "webhook_missing_signature_next": 1,
                      "webhook_drop_next": 1}),
    )
    .await;
    let dropped = sim
        .say("kf", &cid, json!({"type": "business"}), "never sent")
        .await;
    sim.say("kf", &cid, json!({"type": "business"}), "no key")
        .await;
    sim.say("kf", &cid, json!({"type": "business"}), "fine")
        .await;
    let got = receiver.wait_requests(5).await;
    assert_eq!(text(&got[3].1), "no key");
    assert_eq!(api_key_of(&got[3].0), None);
    assert_eq!(text(&got[4].1), "fine");
    let view = sim.view(&cid).await;
    assert!(view["webhook_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["dropped"] == true));
    // The dropped message is found only by listing messages.
    let list = sim
        .api(
            reqwest::Method::GET,
            "kf",
            &format!("/conversations/{cid}/messages"),
            None,
        )
        .await;
    assert!(list.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == dropped));
}

#[tokio::test]
async fn invalid_targets_fail_by_event_and_integration_scope_is_enforced() {
    let (url, receiver) = Receiver::start(&[]).await;
    let sim = Sim::start().await;
    sim.configure("sb", &url, json!({})).await;
    let (cid, _) = sim.handoff("sb", "relay:s1").await;
    let r = sim.pass("sb", &cid, "nobody", json!({"k": "v"})).await;
    assert_eq!((r.status, &r.body), (200, &json!({})));
    let failure = receiver
        .wait_event("switchboard:passControl:failure", |_| true)
        .await;
    assert_eq!(
        failure["payload"]["error"]["code"],
        "switchboard_invalid_target"
    );
    assert_eq!(failure["payload"]["metadata"]["k"], "v");
    assert_eq!(
        sim.view(&cid).await["control"]["active"],
        "zd-agentWorkspace"
    );
    // The Agent Workspace has no next.
    sim.pass("sb", &cid, "next", json!({})).await;
    receiver
        .wait_until("second failure", |r| {
            r.types()
                .iter()
                .filter(|t| *t == "switchboard:passControl:failure")
                .count()
                == 2
        })
        .await;

    // Not in control: an integration key may neither release nor accept.
    let release = format!("/conversations/{cid}/releaseControl");
    assert_eq!(sim.post("sb", &release, json!({})).await.status, 403);
    let accept = format!("/conversations/{cid}/acceptControl");
    assert_eq!(sim.post("sb", &accept, json!({})).await.status, 403);

    // offer → accept → release, all by the relay.
    let r = sim
        .post(
            "sb",
            &format!("/conversations/{cid}/offerControl"),
            json!({"switchboardIntegration": "ai-relay"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let offer = receiver
        .wait_event("switchboard:offerControl", |_| true)
        .await;
    assert_eq!(
        offer["payload"]["conversation"]["pendingSwitchboardIntegration"]["name"],
        "ai-relay"
    );
    assert_eq!(sim.view(&cid).await["control"]["pending"], "ai-relay");
    assert_eq!(sim.post("sb", &accept, json!({})).await.status, 200);
    let accepted = receiver
        .wait_event("switchboard:acceptControl", |_| true)
        .await;
    assert_eq!(
        accepted["payload"]["conversation"]["activeSwitchboardIntegration"]["name"],
        "ai-relay"
    );
    let view = sim.view(&cid).await;
    assert_eq!(
        (view["state"].as_str(), view["customer_connected"].as_bool()),
        (Some("ended"), Some(false))
    );
    assert_eq!(
        sim.post("sb", &release, json!({"reason": "nope"}))
            .await
            .status,
        400
    );
    assert_eq!(sim.post("sb", &release, json!({})).await.status, 200);
    receiver
        .wait_event("switchboard:releaseControl", |_| true)
        .await;

    // A second custom switchboard integration makes "custom" ambiguous.
    sim.configure(
        "sb",
        &url,
        json!({"integration_id": "int-sb-2", "key_id": "key-sb-2",
                                      "switchboard_integration_name": "second-bot"}),
    )
    .await;
    let r = sim.pass("sb", &cid, "custom", json!({})).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let big = json!({"k": "x".repeat(4100)});
    assert_eq!(
        sim.pass("sb", &cid, "ai-relay", big).await.status,
        400,
        "metadata ≤ 4 KB"
    );
}

#[tokio::test]
async fn removed_conversation_sends_conversation_remove() {
    let (url, receiver) = Receiver::start(&[]).await;
    let sim = Sim::start().await;
    sim.configure("rm", &url, json!({})).await;
    let (cid, _) = sim.handoff("rm", "relay:s1").await;
    let view = sim.agent(&cid, "remove", json!({})).await;
    assert_eq!(
        (view["deleted"].as_bool(), view["state"].as_str()),
        (Some(true), Some("ended"))
    );
    let removed = receiver.wait_event("conversation:remove", |_| true).await;
    assert_eq!(removed["payload"]["conversation"]["id"], cid);
    let r = sim
        .api(
            reqwest::Method::GET,
            "rm",
            &format!("/conversations/{cid}"),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn api_fail_next_answers_429_with_retry_after_exactly_n_times() {
    let sim = Sim::start().await;
    sim.configure("rl", "http://127.0.0.1:9/hook", json!({}))
        .await;
    sim.configure("other", "http://127.0.0.1:9/hook", json!({}))
        .await;
    sim.faults(
        json!({"integration_id": "rl", "api_fail_next": {"status": 429, "count": 2},
                      "retry_after_secs": 3}),
    )
    .await;
    assert_eq!(
        sim.post("other", "/users", json!({"externalId": "x"}))
            .await
            .status,
        201
    );
    let mut statuses = Vec::new();
    for i in 0..3 {
        let r = sim
            .post("rl", "/users", json!({"externalId": format!("u{i}")}))
            .await;
        if r.status == 429 {
            assert_eq!(r.headers["retry-after"], "3");
            assert_eq!(r.body["errors"][0]["code"], "too_many_requests");
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [429, 429, 201]);
    let stats = sim.get("/sim/zendesk/stats?integration_id=rl").await;
    assert_eq!(
        (
            stats["api_errors_injected"].as_u64(),
            stats["api_calls"].as_u64()
        ),
        (Some(2), Some(3))
    );
}

#[tokio::test]
async fn faults_take_zendesk_knobs_and_refuse_foreign_ones() {
    let sim = Sim::start().await;
    for bad in [
        json!({"ws_silent": true}),
        json!({"no_such_knob": 1}),
        json!({"close_mode": "later"}),
    ] {
        let (status, body) = sim.control("/sim/zendesk/faults", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    sim.faults(
        json!({"integration_id": "k", "close_mode": "pass_next", "webhook_batch_next": 2,
                      "webhook_duplicate_next": 1}),
    )
    .await;
    let faults = sim.get("/sim/zendesk/faults").await;
    assert_eq!(faults["close_mode"], "release");
    assert_eq!(faults["webhook_timeout_ms"], 20000);
    assert_eq!(faults["webhook_retry_base_ms"], 1000);
    assert_eq!(faults["locked_after_messages"], 30000);
    assert!(faults.get("heartbeat_secs").is_none());
    let k = &faults["integrations"]["k"];
    assert_eq!(k["close_mode"], "pass_next");
    assert_eq!(k["webhook_batch_next"], 2);
    assert_eq!(k["webhook_duplicate_next"], 1);
    sim.faults(json!({"integration_id": "k", "reset": true}))
        .await;
    let faults = sim.get("/sim/zendesk/faults").await;
    assert!(faults["integrations"]
        .get("k")
        .is_none_or(|k| k.get("close_mode").is_none()));
}
