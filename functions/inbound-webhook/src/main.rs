//! inbound-webhook: API Gateway HTTP API; see `handler.rs`.

mod handler;

use handoff_common::entry::init;
use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps = init().await?;
    run(service_fn(|request: Request| {
        let deps = deps.clone();
        async move { handler::handle(&deps, request).await }
    }))
    .await
}
