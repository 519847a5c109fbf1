//! HTTP glue: raw bytes and headers in, status and JSON out.

use handoff_common::http_event::{body_bytes, headers_of, proxy_response, request_of, route_path};
use handoff_common::service::inbound::{handle_stream_event, handle_webhook, WebhookResponse};
use handoff_common::service::Deps;
use lambda_http::{Error, Request};
use serde_json::{json, Value};

/// SNS events (`Records`) go to the stream handler; anything else is an HTTP
/// API request (payload format 2.0) answered with a proxy response.
pub async fn dispatch(deps: &Deps, payload: Value) -> Result<Value, Error> {
    if payload.get("Records").is_some() {
        // An error makes Lambda (and SNS) deliver again; duplicates are deduplicated.
        let report = handle_stream_event(deps, &payload).await?;
        return Ok(json!({"ok": true, "report": report}));
    }
    let keys: Vec<String> = payload
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let request = request_of(payload).map_err(|e| {
        tracing::error!(error = %e, ?keys, "not an HTTP API request");
        e
    })?;
    let WebhookResponse { status, body } = handle(deps, &request).await;
    Ok(proxy_response(status, &body))
}

/// One webhook, on its raw bytes.
pub async fn handle(deps: &Deps, request: &Request) -> WebhookResponse {
    handle_webhook(
        deps,
        &route_path(request),
        &headers_of(request),
        body_bytes(request),
    )
    .await
}

#[cfg(test)]
mod fixture_tests {
    use super::*;
    use handoff_common::providers::genesys::{api::GenesysCredentials, webhook};

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
            let request = lambda_http::request::from_str(fixture).unwrap();
            assert_eq!(
                route_path(&request),
                "/webhooks/genesys/demo/support/sandbox"
            );
            let headers = headers_of(&request);
            let body = body_bytes(&request).to_vec();
            webhook::authenticate(
                &creds,
                headers.get(webhook::SIGNATURE_HEADER).map(String::as_str),
                &body,
            )
            .expect("fixture signature verifies");
            assert_eq!(webhook::parse(&body).unwrap().len(), 1);
            let mut tampered = body.clone();
            tampered[10] ^= 1;
            assert!(webhook::authenticate(
                &creds,
                headers.get(webhook::SIGNATURE_HEADER).map(String::as_str),
                &tampered
            )
            .is_err());
        }
    }
}
