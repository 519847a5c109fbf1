//! Lambda glue: an SNS event or an HTTP API request in, status and JSON out.

use handoff_common::http_event::proxy_response;
use handoff_common::service::inbound::{
    classify_payload, handle_stream_event, handle_webhook, HttpWebhook, InboundPayload,
    WebhookResponse,
};
use handoff_common::service::Deps;
use lambda_http::Error;
use serde_json::{json, Value};

/// SNS events (`Records`) go to the stream handler; anything else is an HTTP
/// API request (payload format 2.0) answered with a proxy response.
pub async fn dispatch(deps: &Deps, payload: Value) -> Result<Value, Error> {
    let keys: Vec<String> = payload
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let request = match classify_payload(payload) {
        Ok(InboundPayload::Stream(event)) => {
            // An error makes Lambda (and SNS) deliver again; duplicates are deduplicated.
            let report = handle_stream_event(deps, &event).await?;
            return Ok(json!({"ok": true, "report": report}));
        }
        Ok(InboundPayload::Http(request)) => request,
        Err(e) => {
            tracing::error!(error = %e, ?keys, "not an HTTP API request");
            return Err(e.into());
        }
    };
    let WebhookResponse { status, body } = handle(deps, &request).await;
    Ok(proxy_response(status, &body))
}

/// One webhook, on its raw bytes.
pub async fn handle(deps: &Deps, request: &HttpWebhook) -> WebhookResponse {
    handle_webhook(deps, &request.path, &request.headers, &request.body).await
}

#[cfg(test)]
mod fixture_tests {
    use super::*;
    use handoff_common::providers::genesys::{api::GenesysCredentials, webhook};

    fn http(fixture: &str) -> HttpWebhook {
        match classify_payload(serde_json::from_str(fixture).unwrap()).unwrap() {
            InboundPayload::Http(request) => request,
            other => panic!("not an HTTP request: {other:?}"),
        }
    }

    /// API Gateway v2 fixtures reach the handler with the exact bytes Genesys signed.
    #[test]
    fn api_gateway_fixtures_verify_and_parse() {
        let creds: GenesysCredentials = serde_json::from_value(serde_json::json!({
            "region_domain": "mypurecloud.com", "client_id": "c", "client_secret": "s",
            "integration_id": "int-demo", "webhook_secret": "fixture-webhook-secret-0123"}))
        .unwrap();
        for fixture in [
            include_str!("../events/genesys-agent-text.json"),
            include_str!("../events/genesys-typing.json"),
        ] {
            let request = http(fixture);
            assert_eq!(request.path, "/webhooks/genesys/demo/support/sandbox");
            let signature = request
                .headers
                .get(webhook::SIGNATURE_HEADER)
                .map(String::as_str);
            webhook::authenticate(&creds, signature, &request.body)
                .expect("fixture signature verifies");
            assert_eq!(webhook::parse(&request.body).unwrap().len(), 1);
            let mut tampered = request.body.clone();
            tampered[10] ^= 1;
            assert!(webhook::authenticate(&creds, signature, &tampered).is_err());
        }
    }

    #[test]
    fn strips_the_watch_prefix() {
        let mut fixture: Value =
            serde_json::from_str(include_str!("../events/genesys-typing.json")).unwrap();
        fixture["rawPath"] =
            json!("/lambda-url/inbound-webhook/webhooks/genesys/acme/support/live");
        let request = http(&fixture.to_string());
        assert_eq!(request.path, "/webhooks/genesys/acme/support/live");
    }
}
