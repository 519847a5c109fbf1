//! end-session: direct invoke from the agent runtime; logic in `handoff_common::service::end`.

use handoff_common::entry::{init, respond};
use handoff_common::service::end;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps = init().await?;
    run(service_fn(|event: LambdaEvent<Value>| {
        let deps = deps.clone();
        async move { Ok::<Value, Error>(respond(end::handle(&deps, &event.payload).await)) }
    }))
    .await
}

#[cfg(test)]
mod tests {
    /// The fixtures (also used with `cargo lambda invoke --data-file`) are valid requests.
    #[test]
    fn event_fixtures_parse() {
        for fixture in [
            include_str!("../events/user-end.json"),
            include_str!("../events/no-reason.json"),
        ] {
            let value: serde_json::Value = serde_json::from_str(fixture).unwrap();
            handoff_common::request::EndSessionRequest::parse(&value).unwrap();
        }
    }
}
