//! Wall-clock helpers: milliseconds since the epoch and UTC calendar fields.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
#[must_use]
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// A duration in whole milliseconds, saturating.
#[must_use]
pub fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A UTC calendar time, for partition and segment names.
#[derive(Debug, PartialEq, Eq)]
pub struct UtcTime {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
    /// Second, 0–59.
    pub second: u32,
    /// Millisecond, 0–999.
    pub millis: u32,
}

impl UtcTime {
    /// Converts ms since the epoch with the days-to-civil algorithm of
    /// <https://howardhinnant.github.io/date_algorithms.html#civil_from_days>.
    #[must_use]
    pub fn from_ms(ms: u64) -> Self {
        let secs = ms / 1000;
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let of_day = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // Every value below is in range by construction.
        let narrow = |value: i64| u32::try_from(value).unwrap_or(0);
        let narrow_u = |value: u64| u32::try_from(value).unwrap_or(0);
        Self {
            year,
            month: narrow(month),
            day: narrow(day),
            hour: narrow_u(of_day / 3600),
            minute: narrow_u(of_day % 3600 / 60),
            second: narrow_u(of_day % 60),
            millis: narrow_u(ms % 1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_table() {
        let table = [
            (0, (1970, 1, 1, 0, 0, 0, 0)),
            (951_782_400_000, (2000, 2, 29, 0, 0, 0, 0)),
            (1_700_000_000_123, (2023, 11, 14, 22, 13, 20, 123)),
            (4_102_444_799_999, (2099, 12, 31, 23, 59, 59, 999)),
        ];
        for (ms, (year, month, day, hour, minute, second, millis)) in table {
            assert_eq!(
                UtcTime::from_ms(ms),
                UtcTime {
                    year,
                    month,
                    day,
                    hour,
                    minute,
                    second,
                    millis
                },
                "{ms}"
            );
        }
    }
}
