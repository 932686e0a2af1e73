//! The one parser of sizes (`64KiB`, `1.5MB`) and durations (`250ms`, `1.5h`) that
//! every setting uses, in Hydrant and in the load tester alike.
//!
//! The load tester is a separate crate; it compiles this very file
//! (`loadtest/src/units.rs` includes it with `#[path]`), so the two cannot drift
//! apart. Keep it free of anything but `std` and `humantime`. Both test suites check
//! it against one table of inputs and results, `tests/units.tsv`.
//!
//! Rules:
//! - A **size** is a number, fractions allowed, and an optional unit, any case: `B`;
//!   `KB`, `MB`, `GB`, `TB` (powers of 1000); `KiB`, `MiB`, `GiB`, `TiB` and the
//!   shorthands `K`, `M`, `G`, `T` (powers of 1024). A bare number is bytes, the
//!   only unit a count of bytes can mean. Fractions of a byte are cut off.
//! - A **duration** is read by the `humantime` crate: numbers (fractions allowed)
//!   each with a unit, e.g. `250ms`, `30s`, `5m`, `1.5h`, `1h30m`; units `ns`, `us`,
//!   `ms`, `s`, `m` (minutes), `h`, `d`, `w` and their long names. A **bare number
//!   is refused**: `250` could mean seconds or milliseconds, and guessing wrong is a
//!   thousandfold mistake. Months and years (`M`, `y`) are refused too: their
//!   length is a convention, and `M` is too easily meant as minutes.

use std::time::Duration;

/// Units a size may take, for messages.
pub const SIZE_UNITS: &str =
    "B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024; K, M, G, T too)";
/// Units a duration may take, for messages.
pub const DURATION_UNITS: &str = "ns, us, ms, s, m (minutes), h, d or w";

/// Parses a byte size (see the module documentation for the rules).
///
/// # Errors
///
/// A one-line message naming the text and the units.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(end);
    let multiplier: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown size unit {:?} in {text:?}; use {SIZE_UNITS}",
                unit.trim()
            ));
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !digits_only(whole)
        || !digits_only(fraction)
        || (number.contains('.') && fraction.is_empty())
    {
        return Err(format!(
            "invalid size {text:?}; write a number and a unit, e.g. 64KiB or 1.5MB"
        ));
    }
    let too_large = || format!("size {text:?} is too large");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    // The fraction's digits past the 30th cannot change a whole byte of any unit here.
    let fraction = &fraction[..fraction.len().min(30)];
    let fraction_bytes = if fraction.is_empty() {
        0
    } else {
        let numerator: u128 = fraction.parse().map_err(|_| too_large())?;
        numerator * multiplier / 10u128.pow(u32::try_from(fraction.len()).unwrap_or(30))
    };
    whole
        .checked_mul(multiplier)
        .and_then(|bytes| bytes.checked_add(fraction_bytes))
        .and_then(|bytes| u64::try_from(bytes).ok())
        .ok_or_else(too_large)
}

/// Parses a duration (see the module documentation for the rules).
///
/// # Errors
///
/// A one-line message naming the text and the units.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "duration {text:?} has no unit; write e.g. 250ms, 30s, 5m or 1.5h ({DURATION_UNITS})"
        ));
    }
    let duration = humantime::parse_duration(trimmed).map_err(|error| {
        format!(
            "invalid duration {text:?} ({error}); write e.g. 250ms, 30s, 5m or 1.5h ({DURATION_UNITS})"
        )
    })?;
    let calendar = trimmed.split(|c: char| !c.is_alphabetic()).find(|unit| {
        matches!(
            *unit,
            "M" | "month" | "months" | "y" | "yr" | "yrs" | "year" | "years"
        )
    });
    if let Some(unit) = calendar {
        return Err(format!(
            "duration {text:?}: months and years ({unit:?}) are not fixed lengths; use {DURATION_UNITS}"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table both crates' tests read (path relative to this file, which the load
    /// tester compiles too).
    const TABLE: &str = include_str!("../tests/units.tsv");

    /// Every row of the shared table: kind, input, expected (bytes or nanoseconds,
    /// `None` for an error).
    fn rows() -> Vec<(&'static str, &'static str, Option<u128>)> {
        TABLE
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                assert_eq!(fields.len(), 3, "bad table row {line:?}");
                let expected = match fields[2] {
                    "error" => None,
                    number => Some(number.parse().expect("a number or `error`")),
                };
                (fields[0], fields[1], expected)
            })
            .collect()
    }

    #[test]
    fn the_shared_table_holds() {
        let rows = rows();
        assert!(rows.len() > 40, "the table is read");
        for (kind, input, expected) in rows {
            let got = match kind {
                "size" => parse_size(input).map(u128::from),
                "duration" => parse_duration(input).map(|d| d.as_nanos()),
                other => panic!("unknown kind {other:?}"),
            };
            match expected {
                Some(value) => assert_eq!(got, Ok(value), "{kind} {input:?}"),
                None => assert!(got.is_err(), "{kind} {input:?} gave {got:?}"),
            }
        }
    }

    #[test]
    fn messages_name_the_units() {
        let error = parse_size("12XB").unwrap_err();
        assert!(
            error.contains("unknown size unit") && error.contains("KiB"),
            "{error}"
        );
        let error = parse_duration("250").unwrap_err();
        assert!(error.contains("no unit") && error.contains("ms"), "{error}");
        let error = parse_duration("soon").unwrap_err();
        assert!(
            error.contains("invalid duration") && error.contains("30s"),
            "{error}"
        );
        let error = parse_duration("5M").unwrap_err();
        assert!(error.contains("months"), "{error}");
        for error in [error, parse_size("").unwrap_err()] {
            assert!(!error.contains('\n'), "{error:?}");
        }
    }
}
