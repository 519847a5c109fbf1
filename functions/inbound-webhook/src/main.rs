//! inbound-webhook: API Gateway HTTP API webhooks, and SNS streaming events
//! (Amazon Connect) delivered to the same function; see `handler.rs`.

mod handler;

use handoff_common::entry::init;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps = init().await?;
    run(service_fn(|event: LambdaEvent<Value>| {
        let deps = deps.clone();
        async move { handler::dispatch(&deps, event.payload).await }
    }))
    .await
}
