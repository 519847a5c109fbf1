//! Prints what each platform's adapter supports, as one JSON object keyed by the
//! simulator's path prefix, so the browser tests skip (and say so) exactly the
//! steps the conformance suite marks NOT SUPPORTED.

use e2e::Platform;
use serde_json::{json, Map, Value};

fn main() {
    let mut all = Map::new();
    for platform in Platform::ALL {
        let caps = platform.capabilities();
        all.insert(
            platform.sim_prefix().to_owned(),
            json!({
                "integration_key": platform.integration_key(),
                "customer_typing": caps.customer_typing,
                "agent_typing": caps.agent_typing,
                "agent_joined": caps.agent_joined,
                "agent_left": caps.agent_left,
            }),
        );
    }
    println!("{}", Value::Object(all));
}
