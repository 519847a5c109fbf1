//! API Gateway HTTP API events (payload format 2.0) in and proxy responses out,
//! shared by the HTTP functions (`inbound-webhook`, `handoff-api`).

use std::collections::HashMap;

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request};
use serde_json::{json, Value};

/// Parses an HTTP API event.
pub fn request_of(payload: Value) -> Result<Request, serde_json::Error> {
    let request: ApiGatewayV2httpRequest = serde_json::from_value(payload)?;
    Ok(LambdaRequest::ApiGatewayV2(request).into())
}

/// Lower-cased header names; repeated headers keep the first value.
pub fn headers_of(request: &Request) -> HashMap<String, String> {
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
pub fn route_path(request: &Request) -> String {
    let path = request.uri().path();
    match path.strip_prefix("/lambda-url/") {
        Some(rest) => rest
            .split_once('/')
            .map(|(_, p)| format!("/{p}"))
            .unwrap_or_default(),
        None => path.to_owned(),
    }
}

/// The raw body bytes, exactly as received (signatures are over these).
pub fn body_bytes(request: &Request) -> &[u8] {
    match request.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// A proxy response; a `null` body is an empty one (e.g. 204).
pub fn proxy_response(status: u16, body: &Value) -> Value {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    json!({
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": body,
        "isBase64Encoded": false,
        // Required by the HTTP API response shape (aws_lambda_events' `cookies` has no default).
        "cookies": [],
        "multiValueHeaders": {},
    })
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

    #[test]
    fn empty_body_for_null() {
        let r = proxy_response(204, &Value::Null);
        assert_eq!(r["body"], "");
        assert_eq!(r["statusCode"], 204);
        assert_eq!(proxy_response(200, &json!({"a": 1}))["body"], r#"{"a":1}"#);
    }
}
