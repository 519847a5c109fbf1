//! Operator-facing parts against the real stack: the handoff (screen-pop) API
//! for every platform, the simulators' screen-pop panel source, EMF metrics
//! in the functions' output, and the config-check command.

use e2e::{put_secret, session_id, stack_log, Platform, TestTenant};
use serde_json::{json, Value};

const ALL: [Platform; 6] = [
    Platform::Genesys,
    Platform::AmazonConnect,
    Platform::Zendesk,
    Platform::Salesforce,
    Platform::Nice,
    Platform::Webex,
];

fn relay_path_name(p: Platform) -> &'static str {
    handoff_common::domain::IntegrationKey::parse(p.integration_key())
        .unwrap()
        .path_name()
}

fn tenant_path(t: &TestTenant) -> String {
    format!("{}/{}/{}", t.account_id, t.project_id, t.client_env)
}

/// Gives the tenant a handoff API key; returns it.
async fn with_api_key(t: &TestTenant) -> String {
    let key = format!("hk-{}", session_id());
    put_secret(
        &format!("chat-handoff/{}/handoff_api", tenant_path(t)),
        &json!({"api_key": key}),
    )
    .await;
    key
}

async fn get(t: &TestTenant, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = t
        .http
        .get(format!("{}/lambda-url/handoff-api{path}", t.lambda_url));
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn handoff_api_returns_the_context(p: Platform) {
    let t = TestTenant::on(p, "live").await;
    let key = with_api_key(&t).await;
    let (session, cid) = t.handed_off().await;
    let base = format!("/handoffs/{}", tenant_path(&t));

    let (status, by_session) = get(&t, &format!("{base}/sessions/{session}"), Some(&key)).await;
    assert_eq!(status, 200, "{by_session}");
    assert_eq!(by_session["session_id"], session.as_str());
    assert_eq!(by_session["provider"], p.integration_key());
    assert_eq!(by_session["provider_conversation_id"], cid.as_str());
    assert_eq!(by_session["customer"]["customer_id"], "C-42");
    assert_eq!(by_session["customer"]["verified"], true);
    assert_eq!(by_session["reason"], "refund");
    assert_eq!(by_session["state"], "queued");
    assert_eq!(
        by_session["transcript"][0]["text"],
        "my parcel arrived broken"
    );
    assert_eq!(by_session["routing"], p.routing());
    assert!(by_session["timestamps"]["agent_joined_at"].is_null());

    let conv_path = format!("{base}/conversations/{}/{cid}", relay_path_name(p));
    let (status, by_conv) = get(&t, &conv_path, Some(&key)).await;
    assert_eq!(status, 200, "{by_conv}");
    assert_eq!(by_conv["session_id"], session.as_str());

    // The agent joins: state and join time follow.
    t.agent(&cid, "accept", json!({"agent_name": "Sam"})).await;
    if !p.capabilities().agent_joined {
        t.agent(&cid, "messages", json!({"text": "Hello, Sam here"}))
            .await;
    }
    t.wait_event(&session, "LIVE_AGENT_JOINED", |_| true).await;
    let (_, after) = get(&t, &format!("{base}/sessions/{session}"), Some(&key)).await;
    assert_eq!(after["state"], "active", "{after}");
    assert!(
        after["timestamps"]["agent_joined_at"].is_string(),
        "{after}"
    );
    assert!(after["agent"]["display_name"]
        .as_str()
        .unwrap_or_default()
        .contains("Sam"));

    // The simulator's desktop gets the same view through its screen-pop source.
    let resp = t
        .http
        .post(format!("{}/sim/screenpop/sources", t.sim_url))
        .json(
            &json!({"base_url": format!("{}/lambda-url/handoff-api{base}", t.lambda_url),
                      "api_key": key}),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let pop: Value = t
        .http
        .get(format!(
            "{}/sim/screenpop/{}/{cid}",
            t.sim_url,
            p.sim_prefix()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pop["session_id"], session.as_str(), "{pop}");
    assert_eq!(pop["customer"]["customer_id"], "C-42");
}

#[tokio::test]
async fn handoff_api_refuses_wrong_keys_methods_and_other_tenants() {
    let a = TestTenant::on(Platform::Genesys, "live").await;
    let b = TestTenant::on(Platform::Genesys, "live").await;
    let key_a = with_api_key(&a).await;
    let key_b = with_api_key(&b).await;
    let (session_b, _) = b.handed_off().await;
    let (session_a, _) = a.handed_off().await;
    let path_a = format!("/handoffs/{}/sessions/{session_a}", tenant_path(&a));

    assert_eq!(get(&a, &path_a, None).await.0, 401);
    assert_eq!(
        get(&a, &path_a, Some("wrong-key-0123456789abcdef")).await.0,
        401
    );
    assert_eq!(
        get(&a, &path_a, Some(&key_a[..key_a.len() - 1])).await.0,
        401
    );
    // B's key does not open A's handoffs, and A's path does not reach B's session.
    let (status, body) = get(&a, &path_a, Some(&key_b)).await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.to_string().contains("C-42"));
    let other = format!("/handoffs/{}/sessions/{session_b}", tenant_path(&a));
    let (status, body) = get(&a, &other, Some(&key_a)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "session_not_found");
    // Same tenant, another environment: its own secret, none configured -> 401.
    let staging = format!(
        "/handoffs/{}/{}/sandbox/sessions/{session_a}",
        a.account_id, a.project_id
    );
    assert_eq!(get(&a, &staging, Some(&key_a)).await.0, 401);
    // Unknown routes and methods.
    let (status, _) = get(&a, "/handoffs/x", Some(&key_a)).await;
    assert_eq!(status, 404);
    let resp = a
        .http
        .post(format!("{}/lambda-url/handoff-api{path_a}", a.lambda_url))
        .header("x-api-key", &key_a)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    // Bearer works as well as X-Api-Key.
    let resp = a
        .http
        .get(format!("{}/lambda-url/handoff-api{path_a}", a.lambda_url))
        .bearer_auth(&key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // A key never shows up in the functions' output.
    assert!(!stack_log().contains(&key_a));
}

/// The EMF lines of one metric for one tenant in the functions' output.
fn metric_lines(metric: &str, tenant: &str) -> Vec<Value> {
    stack_log()
        .lines()
        .filter(|l| l.contains("\"_aws\""))
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get(metric).is_some() && v["tenant"] == tenant)
        .collect()
}

#[tokio::test]
async fn metrics_are_emitted_in_embedded_metric_format() {
    let t = TestTenant::on(Platform::Genesys, "live").await;
    let (session, cid) = t.handed_off().await;
    t.agent(&cid, "accept", json!({"agent_name": "Sam"})).await;
    t.wait_event(&session, "LIVE_AGENT_JOINED", |_| true).await;
    for (i, text) in ["one", "two"].iter().enumerate() {
        let r = t.send(&session, &format!("m-{i}"), text).await;
        assert_eq!(r["status"], "sent", "{r}");
    }
    // A duplicate is not relayed twice, so not counted twice.
    t.send(&session, "m-0", "one").await;
    t.agent(&cid, "messages", json!({"text": "hello from Sam"}))
        .await;
    t.wait_event(&session, "LIVE_AGENT_MESSAGE", |_| true).await;
    // A forged webhook is rejected and counted by reason.
    let resp = t
        .post_webhook(&t.webhook_url, br#"{"id":"x"}"#, Some("sha256=AAAA".into()))
        .await;
    assert_eq!(resp.0, 401);

    let tenant = tenant_path(&t);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let started = metric_lines("HandoffsStarted", &tenant);
        let to_agent: Vec<Value> = metric_lines("MessagesRelayed", &tenant)
            .into_iter()
            .filter(|v| v["direction"] == "to_agent")
            .collect();
        let to_customer = metric_lines("MessagesRelayed", &tenant)
            .into_iter()
            .filter(|v| v["direction"] == "to_customer")
            .count();
        let joined = metric_lines("TimeToAgentJoin", &tenant);
        let rejects = metric_lines("WebhookRejects", &tenant);
        let done = started.len() == 1
            && to_agent.len() == 2
            && to_customer >= 1
            && joined.len() == 1
            && rejects.len() == 1;
        if done {
            let s = &started[0];
            assert_eq!(s["provider"], "genesys_integration");
            assert_eq!(s["session"], session.as_str());
            assert_eq!(
                s["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                json!([["provider"]])
            );
            assert_eq!(
                joined[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
                "Milliseconds"
            );
            assert!(joined[0]["TimeToAgentJoin"].as_f64().unwrap() >= 0.0);
            assert_eq!(rejects[0]["reason"], "unauthenticated");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics: started {} to_agent {} to_customer {to_customer} joined {} rejects {}",
            started.len(),
            to_agent.len(),
            joined.len(),
            rejects.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn config_check(tenant: &str) -> (i32, String) {
    let target = std::env::var("CARGO_TARGET_DIR").expect("CARGO_TARGET_DIR (set by infra/lib.sh)");
    let out = std::process::Command::new(format!("{target}/debug/config-check"))
        .arg(tenant)
        .output()
        .expect("config-check binary (cargo build --workspace --bins)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn config_check_reports_each_integration() {
    for p in ALL {
        let t = TestTenant::on(p, "live").await;
        with_api_key(&t).await;
        let (code, report) = config_check(&tenant_path(&t));
        println!("{report}");
        assert_eq!(code, 0, "{report}");
        let line = report
            .lines()
            .find(|l| l.trim_start().starts_with(p.integration_key()))
            .unwrap_or_else(|| panic!("no line for {p:?}: {report}"));
        assert!(line.contains(" OK "), "{line}");
        assert!(report.contains("runtime"), "{report}");
        assert!(report
            .lines()
            .any(|l| l.contains("handoff_api") && l.contains(" OK ")));
        for canary in &t.canaries {
            assert!(
                !report.contains(canary.as_str()),
                "a secret reached the report"
            );
        }
    }
}

#[tokio::test]
async fn config_check_fails_on_bad_credentials_and_names_them() {
    let t = TestTenant::on(Platform::Genesys, "live").await;
    let name = format!("chat-handoff/{}/genesys_integration", tenant_path(&t));
    let client = e2e::secrets_client().await;
    let current: Value = serde_json::from_str(
        &client
            .get_secret_value()
            .secret_id(&name)
            .send()
            .await
            .unwrap()
            .secret_string
            .unwrap(),
    )
    .unwrap();
    let mut wrong = current.clone();
    wrong["client_secret"] = json!("not-the-secret-0123456789");
    put_secret(&name, &wrong).await;
    let (code, report) = config_check(&tenant_path(&t));
    println!("{report}");
    assert_eq!(code, 1, "{report}");
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with("genesys_integration"))
        .unwrap();
    assert!(
        line.contains("FAILED") && line.contains("provider_auth_failed"),
        "{line}"
    );
    assert!(!report.contains("not-the-secret-0123456789"));
    // A malformed secret is named as such.
    put_secret(&name, &json!({"client_id": "only"})).await;
    let (code, report) = config_check(&tenant_path(&t));
    assert_eq!(code, 1);
    assert!(report.contains("malformed"), "{report}");
    let (code, report) = config_check("not a tenant");
    assert_eq!(code, 2, "{report}");
}

macro_rules! per_platform {
    ($($module:ident => $platform:expr),* $(,)?) => {
        $(mod $module {
            #[tokio::test]
            async fn handoff_api_returns_the_context() {
                super::handoff_api_returns_the_context($platform).await
            }
        })*
    };
}

per_platform!(
    genesys => e2e::Platform::Genesys,
    amazon_connect => e2e::Platform::AmazonConnect,
    zendesk => e2e::Platform::Zendesk,
    salesforce => e2e::Platform::Salesforce,
    nice => e2e::Platform::Nice,
    webex => e2e::Platform::Webex,
);
