//! Outbound HTTP with bounded retries: 429 (honouring `Retry-After`), 5xx and
//! transport errors are retried with exponential backoff and jitter (`backon`).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::error::{HandoffError, Result};

/// Retry budget for one logical call.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Longest `Retry-After` we wait inside one invocation.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(5),
        }
    }
}

/// Builds the shared HTTP client (once, at init).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(3))
        .pool_idle_timeout(Duration::from_secs(50))
        .build()
        .expect("HTTP client builds with static settings")
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Sends the request built by `make` until it answers something other than
/// 429/5xx or the budget is spent. The last answer is returned as is (the
/// caller maps statuses); transport errors after the budget become
/// `provider_unavailable`. `what` names the call in errors (never a URL with secrets).
pub async fn send(
    what: &str,
    policy: RetryPolicy,
    make: impl Fn() -> RequestBuilder,
) -> Result<Response> {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.attempts.saturating_sub(1))
        .with_jitter()
        .build();
    loop {
        let delay = match make().send().await {
            Ok(resp) if !retryable(resp.status()) => return Ok(resp),
            Ok(resp) => match delays.next() {
                None => return Ok(resp),
                Some(d) => retry_after(&resp)
                    .map(|w| w.min(policy.max_retry_after))
                    .unwrap_or(d),
            },
            Err(e) => match delays.next() {
                None => {
                    return Err(HandoffError::ProviderUnavailable(format!(
                        "{what}: {}",
                        e.without_url()
                    )))
                }
                Some(d) => d,
            },
        };
        tracing::debug!(call = what, delay_ms = delay.as_millis() as u64, "retrying");
        tokio::time::sleep(delay).await;
    }
}

/// A final 4xx that says there is nothing left to do (closing what the
/// platform already closed), unlike 401/403 (our credentials) and 408/429
/// (the platform was busy until the retries ran out: nothing was done).
pub fn already_done(status: StatusCode) -> bool {
    status.is_client_error()
        && !matches!(
            status,
            StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::REQUEST_TIMEOUT
                | StatusCode::TOO_MANY_REQUESTS
        )
}

/// Maps a final non-success status to an error.
pub fn status_error(what: &str, status: StatusCode, body: &str) -> HandoffError {
    // Bodies of platform errors are short JSON; cap what we keep.
    let body: String = body.chars().take(300).collect();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        HandoffError::ProviderAuth(format!("{what}: {status}"))
    } else if retryable(status) {
        HandoffError::ProviderUnavailable(format!("{what}: {status}"))
    } else {
        HandoffError::ProviderRejected(format!("{what}: {status}: {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_settled_4xx_counts_as_already_done() {
        for done in [400, 404, 409, 410, 422] {
            assert!(already_done(StatusCode::from_u16(done).unwrap()), "{done}");
        }
        // Busy until the retries ran out, our credentials, or no 4xx at all.
        for not_done in [200, 401, 403, 408, 429, 500, 503] {
            assert!(
                !already_done(StatusCode::from_u16(not_done).unwrap()),
                "{not_done}"
            );
        }
    }

    #[test]
    fn a_final_429_is_an_outage_not_a_rejection() {
        let e = status_error("close", StatusCode::TOO_MANY_REQUESTS, "");
        assert!(matches!(e, HandoffError::ProviderUnavailable(_)), "{e:?}");
    }
}
