//! `timestamp`: wall-clock times to and from numbers and RFC 3339 text, checked and clamped,
//! so that no time from a file, a certificate, a peer or the clock can panic.
//!
//! Every time that enters from outside is clamped to `[UNIX_EPOCH, latest()]`, the range
//! RFC 3339's four-digit years can write; formatting clamps again, so a time computed
//! from the clock (`now + delay`) cannot overflow the text either. `SystemTime + Duration`
//! panics on overflow and `humantime::format_rfc3339*` fails past year 9999 (a panic in
//! `to_string`): code outside this module uses neither on a time it did not make itself.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use humantime::Rfc3339Timestamp;

/// 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
pub const MAX_UNIX_SECONDS: u64 = 253_402_300_799;

/// The latest time this crate keeps or writes: 9999-12-31T23:59:59Z.
pub fn latest() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(MAX_UNIX_SECONDS)
}

/// `t` moved into `[UNIX_EPOCH, latest()]`.
pub fn clamp(t: SystemTime) -> SystemTime {
    t.clamp(UNIX_EPOCH, latest())
}

/// Unix seconds from a file or a peer, clamped.
pub fn from_unix_seconds(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.min(MAX_UNIX_SECONDS))
}

/// Unix milliseconds from a file or a peer, clamped.
pub fn from_unix_millis(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis.min(MAX_UNIX_SECONDS * 1000))
}

/// Signed Unix seconds (X.509 validity, JWT `iat`); before 1970 counts as 1970.
pub fn from_unix_seconds_signed(secs: i64) -> SystemTime {
    from_unix_seconds(u64::try_from(secs).unwrap_or(0))
}

/// Fractional Unix seconds (JSON numbers such as a JWT `exp`): NaN and negative values
/// count as 1970, infinities and huge values as `latest()`.
pub fn from_unix_seconds_f64(secs: f64) -> SystemTime {
    if secs.is_nan() || secs <= 0.0 {
        return UNIX_EPOCH;
    }
    if secs >= MAX_UNIX_SECONDS as f64 {
        return latest();
    }
    Duration::try_from_secs_f64(secs).map_or(latest(), |d| clamp(UNIX_EPOCH + d))
}

/// Whole Unix seconds; 0 before 1970.
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Unix milliseconds; 0 before 1970, `u64::MAX` past the year 584 million.
pub fn unix_millis(t: SystemTime) -> u64 {
    let millis = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    u64::try_from(millis).unwrap_or(u64::MAX)
}

/// Fractional Unix seconds, for metrics; 0 before 1970.
pub fn unix_seconds_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// `t + d`, `latest()` at the most.
pub fn add(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d).map_or(latest(), |sum| sum.min(latest()))
}

/// `t - d`, `UNIX_EPOCH` at the least.
pub fn sub(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_sub(d)
        .map_or(UNIX_EPOCH, |difference| difference.max(UNIX_EPOCH))
}

/// `2025-01-31T12:00:00Z`, clamped; displays without allocating.
pub fn rfc3339_seconds(t: SystemTime) -> Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(clamp(t))
}

/// `2025-01-31T12:00:00.123456Z`, clamped; displays without allocating.
pub fn rfc3339_micros(t: SystemTime) -> Rfc3339Timestamp {
    humantime::format_rfc3339_micros(clamp(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Well-formed `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` that parses back.
    fn assert_well_formed(text: &str) {
        let bytes = text.as_bytes();
        assert!(text.len() == 20 || text.len() == 27, "{text}");
        for (i, b) in bytes.iter().enumerate() {
            let expected_digit = !matches!(i, 4 | 7 | 10 | 13 | 16 | 19) && i + 1 != bytes.len();
            assert_eq!(b.is_ascii_digit(), expected_digit, "{text} at {i}");
        }
        assert!(text.ends_with('Z'));
        humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    }

    #[test]
    fn the_ends_of_the_range() {
        assert_eq!(rfc3339_seconds(UNIX_EPOCH).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_seconds(latest()).to_string(), "9999-12-31T23:59:59Z");
        assert_eq!(from_unix_seconds(u64::MAX), latest());
        assert_eq!(from_unix_millis(u64::MAX), latest());
        assert_eq!(from_unix_seconds(MAX_UNIX_SECONDS + 1), latest(), "year 10000");
        assert_eq!(from_unix_seconds_signed(i64::MIN), UNIX_EPOCH);
        assert_eq!(from_unix_seconds_f64(f64::NAN), UNIX_EPOCH);
        assert_eq!(from_unix_seconds_f64(f64::INFINITY), latest());
        assert_eq!(from_unix_seconds_f64(f64::NEG_INFINITY), UNIX_EPOCH);
        assert_eq!(add(latest(), Duration::MAX), latest());
        assert_eq!(sub(UNIX_EPOCH, Duration::MAX), UNIX_EPOCH);
        // Past year 9999 humantime itself fails; ours writes the last second instead.
        let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert_eq!(rfc3339_micros(far).to_string(), "9999-12-31T23:59:59.000000Z");
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339_seconds(before).to_string(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn ordinary_times_are_exact() {
        let t = from_unix_millis(1_700_000_000_123);
        assert_eq!(unix_millis(t), 1_700_000_000_123);
        assert_eq!(unix_seconds(t), 1_700_000_000);
        assert_eq!(rfc3339_micros(t).to_string(), "2023-11-14T22:13:20.123000Z");
        assert_eq!(from_unix_seconds_f64(1.5), UNIX_EPOCH + Duration::from_millis(1500));
        assert_eq!(from_unix_seconds_signed(86400), UNIX_EPOCH + Duration::from_secs(86400));
    }

    /// Any `SystemTime` the platform can hold, including before 1970.
    fn any_system_time() -> impl Strategy<Value = SystemTime> {
        (any::<i64>(), 0u32..1_000_000_000).prop_map(|(secs, nanos)| {
            let d = Duration::new(secs.unsigned_abs(), nanos);
            let t = if secs >= 0 {
                UNIX_EPOCH.checked_add(d)
            } else {
                UNIX_EPOCH.checked_sub(d)
            };
            t.unwrap_or(UNIX_EPOCH)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_number_is_a_time_in_range(secs in any::<u64>(), signed in any::<i64>(), float in any::<f64>()) {
            for t in [
                from_unix_seconds(secs),
                from_unix_millis(secs),
                from_unix_seconds_signed(signed),
                from_unix_seconds_f64(float),
                from_unix_seconds_f64(f64::from_bits(secs)),
            ] {
                prop_assert!(UNIX_EPOCH <= t && t <= latest());
                assert_well_formed(&rfc3339_seconds(t).to_string());
                assert_well_formed(&rfc3339_micros(t).to_string());
            }
            if secs <= MAX_UNIX_SECONDS {
                prop_assert_eq!(unix_seconds(from_unix_seconds(secs)), secs);
            }
        }

        #[test]
        fn any_time_formats_and_moves_without_panicking(t in any_system_time(), secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            assert_well_formed(&rfc3339_seconds(t).to_string());
            assert_well_formed(&rfc3339_micros(t).to_string());
            let d = Duration::new(secs, nanos);
            prop_assert!(add(t, d) <= latest());
            prop_assert!(sub(t, d) >= UNIX_EPOCH);
            assert_well_formed(&rfc3339_seconds(add(t, d)).to_string());
            let _ = (unix_seconds(t), unix_millis(t), unix_seconds_f64(t));
        }
    }
}
