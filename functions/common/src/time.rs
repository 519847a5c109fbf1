//! Wall-clock helpers.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T10:01:02.123Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let dt = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&fmt).unwrap_or_default()
}

/// Parses an RFC 3339 time (any offset) to ms since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let dt =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_with_millis() {
        assert_eq!(
            super::rfc3339_ms(1_763_892_062_123),
            "2025-11-23T10:01:02.123Z"
        );
    }

    #[test]
    fn parses_what_it_formats_and_other_offsets() {
        assert_eq!(
            super::parse_rfc3339_ms("2025-11-23T10:01:02.123Z"),
            Some(1_763_892_062_123)
        );
        assert_eq!(
            super::parse_rfc3339_ms("2025-11-23T11:01:02.123+01:00"),
            Some(1_763_892_062_123)
        );
        assert_eq!(super::parse_rfc3339_ms("yesterday"), None);
    }
}
