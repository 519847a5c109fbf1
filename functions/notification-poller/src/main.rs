//! notification-poller: scheduled (EventBridge); holds notification channels
//! for `POLLER_HOLD_SECONDS`, sweeps undelivered client events, expires sessions.

use handoff_common::entry::init;
use handoff_common::service::poller::{self, PollerTuning};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps = init().await?;
    let tuning = PollerTuning::from_env();
    run(service_fn(|_event: LambdaEvent<Value>| {
        let deps = deps.clone();
        async move {
            let report = poller::run(deps, tuning).await?;
            tracing::info!(?report, "poll done");
            Ok::<Value, Error>(poller::report_json(&report))
        }
    }))
    .await
}
