//! `config-check ACCOUNT/PROJECT/ENV`: reads the tenant's secrets with the
//! caller's AWS credentials (or the local stack's endpoints), checks each
//! configured integration against its platform, prints a report, and exits 1
//! if anything failed. Logic in `handoff_common::service::config_check`.

use std::process::ExitCode;
use std::time::Duration;

use handoff_common::config::Config;
use handoff_common::domain::Tenant;
use handoff_common::service::{config_check, Deps};

#[tokio::main]
async fn main() -> ExitCode {
    let Some(arg) = std::env::args().nth(1).filter(|a| !a.starts_with('-')) else {
        eprintln!("usage: config-check ACCOUNT_ID/PROJECT_ID/CLIENT_ENV");
        return ExitCode::from(2);
    };
    let tenant = match Tenant::from_key(&arg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("config-check: {arg:?} is not a tenant: {e}");
            return ExitCode::from(2);
        }
    };
    let config = Config {
        // The table is not read; the name only satisfies the shared setup.
        table_name: std::env::var("TABLE_NAME").unwrap_or_else(|_| "unused".into()),
        secret_prefix: std::env::var("SECRET_PREFIX").unwrap_or_else(|_| "chat-handoff".into()),
        secret_ttl: Duration::from_secs(60),
        http_timeout: Duration::from_secs(10),
    };
    let deps = Deps::from_env(&config).await;
    let report = config_check::run(&deps, &tenant).await;
    println!("{report}");
    if report.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
