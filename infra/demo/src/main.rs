//! Demo agent runtime: a webchat widget with a scripted bot that hands off to a
//! live agent through the relay, and a script that plays a whole handoff.

mod bot;
mod cli;
mod relay_client;
mod script;
mod server;
mod sessions;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Logs go to stderr so `script` keeps stdout for its transcript.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    match cli.command {
        cli::Command::Serve(args) => {
            let relay = match args.relay_client() {
                Ok(relay) => relay,
                Err(err) => {
                    eprintln!("demo-runtime: cannot build the relay client: {err}");
                    return ExitCode::FAILURE;
                }
            };
            let state = server::AppState::new(relay, args.events_secret.clone());
            if let Err(err) = server::serve(args.listen, state).await {
                eprintln!("demo-runtime: cannot serve on {}: {err}", args.listen);
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        cli::Command::Script(args) => match script::run(args.config()).await {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                println!("handoff demo: FAILED: {err}");
                ExitCode::FAILURE
            }
        },
    }
}
