//! Tracing set up once per process: JSON lines in the cloud (`LOG_FORMAT=json`),
//! compact text locally. Secrets are never passed to a log macro; the types that
//! hold them print `<redacted>`.
//!
//! `RUST_LOG` takes the usual `level` / `target=level,...` form, parsed as a
//! `Targets` filter (no regex engine in the binaries); unparsable means `info`.

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// The filter `RUST_LOG` names, or `info`.
pub fn filter_from(value: Option<&str>) -> Targets {
    value
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO))
}

pub fn init() {
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref());
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time();
    let layer = if json {
        layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed()
    } else {
        layer.compact().boxed()
    };
    // `try_init` so tests or a second call do not panic.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn rust_log_levels_and_targets_are_honoured() {
        let f = filter_from(Some("warn,handoff_common=debug"));
        assert!(f.would_enable("handoff_common::store", &Level::DEBUG));
        assert!(!f.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(f.would_enable("aws_smithy_runtime", &Level::WARN));
    }

    #[test]
    fn missing_or_unparsable_rust_log_means_info() {
        for v in [None, Some("not a = filter = at all")] {
            let f = filter_from(v);
            assert!(f.would_enable("anything", &Level::INFO), "{v:?}");
            assert!(!f.would_enable("anything", &Level::DEBUG), "{v:?}");
        }
        assert_eq!(
            filter_from(Some("error")).default_level(),
            Some(LevelFilter::ERROR)
        );
    }
}
