//! HTTP glue: raw bytes and headers in, status and JSON out.

use std::collections::HashMap;

use handoff_common::service::inbound::{handle_stream_event, handle_webhook, WebhookResponse};
use handoff_common::service::Deps;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Error, Request};
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
    let request: ApiGatewayV2httpRequest = serde_json::from_value(payload).map_err(|e| {
        tracing::error!(error = %e, ?keys, "not an HTTP API request");
        e
    })?;
    let request: Request = LambdaRequest::ApiGatewayV2(request).into();
    let WebhookResponse { status, body } = handle(deps, &request).await;
    // `null` is an empty body (e.g. 204 for NICE sender actions).
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    Ok(json!({
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": body,
        "isBase64Encoded": false,
        // Required by the HTTP API response shape (aws_lambda_events' `cookies` has no default).
        "cookies": [],
        "multiValueHeaders": {},
    }))
}

/// Lower-cased header names; repeated headers keep the first value.
fn headers_of(request: &Request) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (name, value) in request.headers() {
        if let Ok(v) = value.to_str() {
            out.entry(name.as_str().to_ascii_lowercase())
                .or_insert_with(|| v.to_owned());
        }
    }
    out
}

/// The path the route matched, without a `/lambda-url/{function}` prefix
/// (cargo lambda watch) or a stage.
fn route_path(request: &Request) -> String {
    let path = request.uri().path();
    match path.strip_prefix("/lambda-url/") {
        Some(rest) => rest
            .split_once('/')
            .map(|(_, p)| format!("/{p}"))
            .unwrap_or_default(),
        None => path.to_owned(),
    }
}

/// One webhook, on its raw bytes.
pub async fn handle(deps: &Deps, request: &Request) -> WebhookResponse {
    let body: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    handle_webhook(deps, &route_path(request), &headers_of(request), body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_watch_prefix() {
        let req = lambda_http::http::Request::builder()
            .uri("http://127.0.0.1:9000/lambda-url/inbound-webhook/webhooks/genesys/acme/support/live")
            .body(Body::Empty)
            .unwrap();
        assert_eq!(
            route_path(&Request::from(req)),
            "/webhooks/genesys/acme/support/live"
        );
        let req = lambda_http::http::Request::builder()
            .uri("https://api.example/webhooks/genesys/acme/support/live")
            .header("X-Hub-Signature-256", "sha256=abc")
            .body(Body::Empty)
            .unwrap();
        let req = Request::from(req);
        assert_eq!(route_path(&req), "/webhooks/genesys/acme/support/live");
        assert_eq!(headers_of(&req)["x-hub-signature-256"], "sha256=abc");
    }
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
            let Body::Text(body) = request.body() else {
                panic!("text body")
            };
            webhook::authenticate(
                &creds,
                headers.get(webhook::SIGNATURE_HEADER).map(String::as_str),
                body.as_bytes(),
            )
            .expect("fixture signature verifies");
            assert_eq!(webhook::parse(body.as_bytes()).unwrap().len(), 1);
            let mut tampered = body.clone().into_bytes();
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
