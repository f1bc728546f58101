//! Token and certificate times as signed, saturated seconds, so doctor can report a
//! value outside 1970–9999 as written instead of clamping it.
//!
//! A token's `exp` is whatever its author wrote: `u64::MAX`, `1e300`, `-1`. Every
//! conversion here saturates; printing goes through `crate::model::timestamp`, so no value can
//! panic the doctor.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::model::timestamp::{self, MAX_UNIX_SECONDS};

/// The last second RFC 3339 can write: 9999-12-31T23:59:59Z.
const LAST_PRINTABLE: i64 = MAX_UNIX_SECONDS as i64;

/// Seconds since the epoch, negative before it, saturated at the ends of `i64`.
pub fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// `secs` as RFC 3339 when it lies in 1970..=9999, else the number and the bound it passes.
pub fn rfc3339(secs: i64) -> String {
    match u64::try_from(secs) {
        Ok(s) if secs <= LAST_PRINTABLE => timestamp::rfc3339_seconds(timestamp::from_unix_seconds(s)).to_string(),
        Ok(_) => format!("{secs} s after the epoch (after 9999-12-31T23:59:59Z)"),
        Err(_) => format!("{secs} s from the epoch (before 1970-01-01T00:00:00Z)"),
    }
}

/// A NumericDate claim (RFC 7519: seconds, possibly fractional) read as whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumericDate {
    Absent,
    /// Saturated to `i64`: `u64::MAX` and `1e300` are `i64::MAX`, `-1e300` is `i64::MIN`.
    Seconds(i64),
    /// Present but not a number.
    Invalid,
}

pub fn numeric_date(value: Option<&Value>) -> NumericDate {
    let Some(value) = value else {
        return NumericDate::Absent;
    };
    let Value::Number(n) = value else {
        return NumericDate::Invalid;
    };
    let seconds = n
        .as_i64()
        .or_else(|| n.as_u64().map(|_| i64::MAX))
        // `as` saturates (and maps NaN to 0); huge integers and 1e400 arrive here as f64.
        .or_else(|| n.as_f64().map(|f| if f.is_nan() { 0 } else { f as i64 }))
        .unwrap_or_else(|| {
            if n.to_string().starts_with('-') {
                i64::MIN
            } else {
                i64::MAX
            }
        });
    NumericDate::Seconds(seconds)
}

/// Whole days from `now` to `then` (negative when past), rounded down.
pub fn days_until(then: i64, now: i64) -> i64 {
    then.saturating_sub(now).div_euclid(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn extremes_format_without_panicking() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(LAST_PRINTABLE), "9999-12-31T23:59:59Z");
        assert!(rfc3339(LAST_PRINTABLE + 1).contains("after 9999"));
        assert!(rfc3339(i64::MAX).starts_with("9223372036854775807"));
        assert!(rfc3339(-1).contains("before 1970"));
        assert!(rfc3339(i64::MIN).starts_with("-9223372036854775808"));
        assert_eq!(unix(UNIX_EPOCH), 0);
        assert_eq!(unix(UNIX_EPOCH - Duration::from_secs(5)), -5);
        assert_eq!(days_until(i64::MAX, i64::MIN), i64::MAX.div_euclid(86_400));
        assert_eq!(days_until(i64::MIN, i64::MAX), i64::MIN.div_euclid(86_400));
    }

    #[test]
    fn numeric_dates_saturate() {
        let read = |text: &str| numeric_date(Some(&serde_json::from_str::<Value>(text).unwrap()));
        assert_eq!(read("1700000000"), NumericDate::Seconds(1_700_000_000));
        assert_eq!(read("1700000000.9"), NumericDate::Seconds(1_700_000_000));
        assert_eq!(read("18446744073709551615"), NumericDate::Seconds(i64::MAX));
        assert_eq!(read("1e300"), NumericDate::Seconds(i64::MAX));
        assert_eq!(read("-1e300"), NumericDate::Seconds(i64::MIN));
        assert_eq!(read(&format!("1{}", "0".repeat(400))), NumericDate::Seconds(i64::MAX));
        assert_eq!(read(&format!("-1{}", "0".repeat(400))), NumericDate::Seconds(i64::MIN));
        assert_eq!(read("1e400"), NumericDate::Seconds(i64::MAX));
        assert_eq!(read("\"tomorrow\""), NumericDate::Invalid);
        assert_eq!(read("null"), NumericDate::Invalid);
        assert_eq!(numeric_date(None), NumericDate::Absent);
    }
}
