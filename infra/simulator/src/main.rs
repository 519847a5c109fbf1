//! `provider-sim`: local simulators of the contact-centre platforms, one path
//! prefix per provider (`/genesys/...` for the real API, `/sim/genesys/...`
//! for configuration, control and fault knobs).

mod connect;
mod delivery;
mod desktop_page;
mod faults;
mod genesys;
mod nice;
mod salesforce;
mod screenpop;
mod webex;
mod zendesk;

use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;

const DEFAULT_LISTEN: &str = "127.0.0.1:8900";
const USAGE: &str = "usage: provider-sim [--listen HOST:PORT]";

/// The whole server: health plus every provider.
fn app() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(genesys::router(genesys::Genesys::new()))
        .merge(salesforce::router(salesforce::Salesforce::new()))
        .merge(connect::router(connect::Connect::new()))
        .merge(zendesk::router(zendesk::Zendesk::new()))
        .merge(nice::router(nice::Nice::new()))
        .merge(webex::router(webex::Webex::new()))
        .merge(screenpop::router())
}

fn listen_addr() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut listen = DEFAULT_LISTEN.to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs HOST:PORT")?,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => match other.strip_prefix("--listen=") {
                Some(value) => listen = value.to_string(),
                None => return Err(format!("unknown argument {other}\n{USAGE}")),
            },
        }
    }
    listen
        .parse()
        .map_err(|e| format!("--listen {listen}: {e}"))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = match listen_addr() {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    tracing::info!(%addr, "provider-sim listening; Genesys desktop at /genesys/desktop");
    if let Err(e) = axum::serve(listener, app()).await {
        tracing::error!(error = %e, "server stopped");
        std::process::exit(1);
    }
}
