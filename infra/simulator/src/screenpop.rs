//! Screen-pop for the agent desktops: the platform side of the relay's
//! handoff API. A real desktop calls it through the platform (a Genesys data
//! action, a Salesforce named credential, a Connect flow Lambda) that holds the
//! tenant's API key, so the key never reaches the browser; here the simulator
//! plays that part.
//!
//! `POST /sim/screenpop/sources` `{"base_url", "api_key"}` registers a tenant's
//! handoff API (`…/handoffs/{account}/{project}/{env}`); the desktop page asks
//! `GET /sim/screenpop/{sim_prefix}/{conversation_id}` and gets the first
//! source's answer for that conversation.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

const SCRIPT: &str = include_str!("../assets/screenpop.js");

#[derive(Debug, Clone, Deserialize)]
struct Source {
    base_url: String,
    api_key: String,
}

#[derive(Clone, Default)]
struct ScreenPop {
    sources: Arc<Mutex<Vec<Source>>>,
    http: Option<reqwest::Client>,
}

/// The relay's `{provider}` path name for a simulator prefix.
pub fn relay_provider(sim_prefix: &str) -> Option<&'static str> {
    Some(match sim_prefix {
        "genesys" => "genesys",
        "connect" => "amazon-connect",
        "zendesk" => "zendesk",
        "salesforce" => "salesforce",
        "nice" => "nice",
        "webex" => "webex",
        _ => return None,
    })
}

pub fn router() -> Router {
    let state = ScreenPop {
        sources: Default::default(),
        http: Some(crate::delivery::client()),
    };
    Router::new()
        .route("/sim/screenpop/sources", post(add_source))
        .route("/sim/screenpop/{prefix}/{conversation_id}", get(lookup))
        .route("/sim/assets/screenpop.js", get(script))
        .with_state(state)
}

async fn script() -> Response {
    ([("content-type", "text/javascript; charset=utf-8")], SCRIPT).into_response()
}

async fn add_source(State(s): State<ScreenPop>, Json(source): Json<Source>) -> Response {
    if !source.base_url.starts_with("http") || source.api_key.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "base_url (http…) and api_key are required"})),
        )
            .into_response();
    }
    let mut sources = s.sources.lock().expect("sources lock");
    sources.retain(|x| x.base_url != source.base_url);
    sources.push(source);
    StatusCode::NO_CONTENT.into_response()
}

async fn lookup(
    State(s): State<ScreenPop>,
    Path((prefix, conversation_id)): Path<(String, String)>,
) -> Response {
    let Some(provider) = relay_provider(&prefix) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "unknown provider"})),
        )
            .into_response();
    };
    let sources = s.sources.lock().expect("sources lock").clone();
    let http = s.http.clone().unwrap_or_default();
    let mut last = json!({"error": "no handoff API knows this conversation"});
    for source in sources {
        let url = format!(
            "{}/conversations/{provider}/{}",
            source.base_url.trim_end_matches('/'),
            urlencode(&conversation_id)
        );
        match http
            .get(&url)
            .header("x-api-key", &source.api_key)
            .send()
            .await
        {
            Ok(resp) if resp.status().is_success() => {
                if let Ok(body) = resp.json::<Value>().await {
                    return Json(body).into_response();
                }
            }
            Ok(resp) => {
                last = json!({"error": format!("handoff API answered {}", resp.status())});
            }
            Err(e) => last = json!({"error": format!("handoff API unreachable: {e}")}),
        }
    }
    (StatusCode::NOT_FOUND, Json(last)).into_response()
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_map_to_relay_paths() {
        assert_eq!(relay_provider("connect"), Some("amazon-connect"));
        assert_eq!(relay_provider("genesys"), Some("genesys"));
        assert_eq!(relay_provider("five9"), None);
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
