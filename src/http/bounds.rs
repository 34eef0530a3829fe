//! The range every date from outside must fall in: date
//! arithmetic on chrono's extremes panics and PostgreSQL refuses years
//! before 4713 BC, so a date outside 1970..=9999 is answered as bad input
//! naming its field, before anything computes with it.

use chrono::{DateTime, Utc};

/// 9999-12-31T23:59:59Z, the last second of a four-digit year.
const LATEST_SECS: i64 = 253_402_300_799;

/// Whether `at` is a date the service works with: 1970-01-01 to 9999-12-31.
pub fn is_sane(at: DateTime<Utc>) -> bool {
    (0..=LATEST_SECS).contains(&at.timestamp())
}

pub const RANGE: &str = "1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_digit_years_from_1970_are_sane_and_nothing_else() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("RFC 3339").with_timezone(&Utc);
        assert!(is_sane(at("1970-01-01T00:00:00Z")));
        assert!(is_sane(at("2026-12-01T10:00:00+02:00")));
        assert!(is_sane(at("9999-12-31T23:59:59Z")));
        assert!(!is_sane(at("1969-12-31T23:59:59Z")));
        assert!(!is_sane(DateTime::<Utc>::MIN_UTC));
        assert!(!is_sane(DateTime::<Utc>::MAX_UTC));
        assert!(!is_sane(at("9999-12-31T23:59:59Z") + chrono::Duration::seconds(1)));
    }
}
