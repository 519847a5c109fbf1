//! Command line of `demo-runtime`; every flag has an environment fallback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use crate::relay_client::{RelayClient, Tenant};
use crate::script::ScriptConfig;

#[derive(Parser)]
#[command(
    name = "demo-runtime",
    about = "Demo AI agent runtime with a webchat widget page"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the widget page, its API and the /events endpoint for the relay.
    Serve(ServeArgs),
    /// Play a whole Genesys handoff against a running `serve` and the simulator.
    Script(ScriptArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long, env = "DEMO_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Where `cargo lambda watch` serves the Lambda Invoke API.
    #[arg(long, env = "DEMO_LAMBDA_URL", default_value = "http://127.0.0.1:9000")]
    pub lambda_url: reqwest::Url,
    #[arg(long, env = "DEMO_ACCOUNT", default_value = "demo")]
    pub account: String,
    #[arg(long, env = "DEMO_PROJECT", default_value = "support")]
    pub project: String,
    #[arg(
        long = "env",
        env = "DEMO_ENV",
        default_value = "sandbox",
        value_parser = ["sandbox", "pre-release", "live"]
    )]
    pub client_env: String,
    /// Integration key the handoff names in `handoff.text_chat`.
    #[arg(long, env = "DEMO_PROVIDER", default_value = "genesys_integration")]
    pub provider: String,
    /// Routing hint passed as the integration's `queue`.
    #[arg(long, env = "DEMO_QUEUE", default_value = "billing")]
    pub queue: String,
    /// The tenant's runtime `events_secret`, to verify client events.
    #[arg(long, env = "DEMO_EVENTS_SECRET", hide_env_values = true, value_parser = secret)]
    pub events_secret: SecretString,
    /// Limit on one relay invocation (the first one may wait for a build).
    #[arg(long, env = "DEMO_RELAY_TIMEOUT_SECS", default_value_t = 120)]
    pub relay_timeout_secs: u64,
}

fn secret(value: &str) -> Result<SecretString, Infallible> {
    Ok(SecretString::from(value.to_owned()))
}

impl ServeArgs {
    pub fn relay_client(&self) -> Result<RelayClient, reqwest::Error> {
        RelayClient::new(
            self.lambda_url.as_str(),
            Tenant {
                account_id: self.account.clone(),
                project_id: self.project.clone(),
                client_env: self.client_env.clone(),
            },
            self.provider.clone(),
            self.queue.clone(),
            Duration::from_secs(self.relay_timeout_secs),
        )
    }
}

#[derive(Args)]
pub struct ScriptArgs {
    /// A running `demo-runtime serve`.
    #[arg(long, env = "DEMO_URL", default_value = "http://127.0.0.1:8090")]
    pub demo_url: reqwest::Url,
    /// The provider simulator.
    #[arg(long, env = "DEMO_SIM_URL")]
    pub sim_url: reqwest::Url,
    /// Limit on the whole run.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
}

impl ScriptArgs {
    pub fn config(&self) -> ScriptConfig {
        ScriptConfig {
            demo_url: self.demo_url.to_string(),
            sim_url: self.sim_url.to_string(),
            timeout: Duration::from_secs(self.timeout_secs),
        }
    }
}
