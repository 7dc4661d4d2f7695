//! Time as the system stores it: milliseconds since the Unix epoch, UTC.
//!
//! Both databases store timestamps as BIGINT milliseconds, so comparisons and
//! arithmetic are identical in SQLite and PostgreSQL; RFC 3339 text exists only at
//! the HTTP edge.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The current time in milliseconds.
pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

/// A duration as milliseconds, saturating instead of overflowing.
pub fn duration_ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-29T12:00:00.000Z`.
pub fn rfc3339(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One calendar month after `ms` (UTC), the day clamped to the month's end: a request
/// received on 31 January is due on the last day of February.
pub fn one_month_after(ms: Millis) -> Millis {
    chrono::DateTime::from_timestamp_millis(ms)
        .and_then(|t| t.checked_add_months(chrono::Months::new(1)))
        .map_or(ms + 30 * 86_400_000, |t| t.timestamp_millis())
}

/// Parses RFC 3339 text (any offset) into milliseconds; `None` when it is not RFC 3339.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).ok().map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_with_any_offset() {
        assert_eq!(parse_rfc3339("2026-11-18T11:06:40.123Z"), Some(1_795_000_000_123));
        assert_eq!(parse_rfc3339("2026-11-18T12:06:40.123+01:00"), Some(1_795_000_000_123));
        assert_eq!(parse_rfc3339("tomorrow"), None);
    }

    #[test]
    fn a_month_after_the_31st_is_the_months_last_day() {
        let jan_31 = parse_rfc3339("2027-01-31T10:00:00Z").expect("time");
        assert_eq!(rfc3339(one_month_after(jan_31)), "2027-02-28T10:00:00.000Z");
        let mar_15 = parse_rfc3339("2027-03-15T00:00:00Z").expect("time");
        assert_eq!(rfc3339(one_month_after(mar_15)), "2027-04-15T00:00:00.000Z");
    }

    #[test]
    fn formats_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }
}
