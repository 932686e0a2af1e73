//! The value types of settings that are sizes or durations, as flags (`FromStr`)
//! and in the TOML file (`Deserialize`), both read by [`crate::units`]. A leaf, so
//! that the global settings in `config` and each sink's own settings use the same
//! types.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::units::{parse_duration, parse_size};

/// A byte size, read by [`parse_size`]. In TOML also a bare integer of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_size(text).map(ByteSize)
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size, e.g. `128MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if bytes != 0 && bytes.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", bytes >> shift);
            }
        }
        write!(f, "{bytes}B")
    }
}

/// A duration, read by [`parse_duration`]: it needs a unit, in TOML too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_duration(text).map(HumanDuration)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a number of bytes, or a string such as \"64KiB\"")
            }

            fn visit_u64<E: serde::de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(bytes))
            }

            fn visit_i64<E: serde::de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
                u64::try_from(bytes)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ByteSize, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as \"30s\"")
            }

            fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{number}s\", \"{number}ms\"… ({})",
                    crate::units::DURATION_UNITS
                )))
            }

            fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<HumanDuration, E> {
                self.visit_i64(i64::try_from(number).unwrap_or(i64::MAX))
            }

            fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{number}s\", \"{number}h\"… ({})",
                    crate::units::DURATION_UNITS
                )))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl fmt::Display for HumanDuration {
    /// In one unit, so that it reads back as written: milliseconds below a second,
    /// seconds below five minutes (timeouts read best as `120s`, not `2m`), then
    /// the largest of minutes and hours that holds it whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let duration = self.0;
        if duration.subsec_nanos() != 0 {
            if duration.subsec_nanos().is_multiple_of(1_000_000) {
                return write!(f, "{}ms", duration.as_millis());
            }
            return write!(f, "{}", humantime::format_duration(duration));
        }
        let seconds = duration.as_secs();
        if seconds >= 3600 && seconds.is_multiple_of(3600) {
            write!(f, "{}h", seconds / 3600)
        } else if seconds >= 300 && seconds.is_multiple_of(60) {
            write!(f, "{}m", seconds / 60)
        } else {
            write!(f, "{seconds}s")
        }
    }
}

/// A size as a `usize` (a count of bytes a sink holds in memory), from a bare
/// integer or a string with a unit, for `#[serde(deserialize_with)]`.
///
/// # Errors
///
/// The deserializer's error for anything that is not a size, or too large.
pub fn usize_size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let size = ByteSize::deserialize(deserializer)?;
    usize::try_from(size.0).map_err(|_| serde::de::Error::custom("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `--help` shows as a default reads back as the same value.
    #[test]
    fn shown_values_read_back() {
        for seconds in [1, 10, 25, 60, 120, 200, 300, 3600, 5400, 7200, 86_400] {
            let duration = HumanDuration(Duration::from_secs(seconds));
            assert_eq!(duration.to_string().parse(), Ok(duration), "{duration}");
        }
        for millis in [1, 250, 1500] {
            let duration = HumanDuration(Duration::from_millis(millis));
            assert_eq!(duration.to_string().parse(), Ok(duration), "{duration}");
        }
        let table = [
            (Duration::from_secs(120), "120s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_millis(250), "250ms"),
        ];
        for (duration, shown) in table {
            assert_eq!(HumanDuration(duration).to_string(), shown);
        }
        for bytes in [0, 1, 1000, 64 << 10, 100 << 20, 1 << 30] {
            let size = ByteSize(bytes);
            assert_eq!(size.to_string().parse(), Ok(size), "{size}");
        }
    }
}
