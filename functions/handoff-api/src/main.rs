//! handoff-api: authenticated HTTP reads of a handoff's context (screen-pop,
//! CRM enrichment); logic in `handoff_common::service::handoff_api`.

use handoff_common::entry::init;
use handoff_common::http_event::{headers_of, proxy_response, request_of, route_path};
use handoff_common::service::handoff_api;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps = init().await?;
    run(service_fn(|event: LambdaEvent<Value>| {
        let deps = deps.clone();
        async move {
            let request = request_of(event.payload)?;
            let answer = handoff_api::handle(
                &deps,
                request.method().as_str(),
                &route_path(&request),
                &headers_of(&request),
            )
            .await;
            Ok::<Value, Error>(proxy_response(answer.status, &answer.body))
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use handoff_common::http_event::{headers_of, request_of, route_path};
    use handoff_common::service::handoff_api::{parse_path, Lookup};

    /// The fixtures (also for `cargo lambda invoke --data-file`) are API
    /// Gateway HTTP API events this function routes.
    #[test]
    fn event_fixtures_route() {
        let by_session: serde_json::Value =
            serde_json::from_str(include_str!("../events/by-session.json")).unwrap();
        let request = request_of(by_session).unwrap();
        let (tenant, lookup) = parse_path(&route_path(&request)).unwrap();
        assert_eq!(tenant.key(), "demo/support/sandbox");
        assert!(matches!(lookup, Lookup::Session(_)));
        assert!(headers_of(&request).contains_key("x-api-key"));
        let by_conversation: serde_json::Value =
            serde_json::from_str(include_str!("../events/by-conversation.json")).unwrap();
        let request = request_of(by_conversation).unwrap();
        let (_, lookup) = parse_path(&route_path(&request)).unwrap();
        assert!(matches!(lookup, Lookup::Conversation(..)));
    }
}
