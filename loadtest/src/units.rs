//! Sizes (`1MiB`, `64MiB`, `1500KB`) and durations (`30s`, `500ms`, `1.5m`) given on
//! the command line, read by the very parser Hydrant's settings use: this crate
//! compiles Hydrant's `src/units.rs` (its rules are documented there), so a size or a
//! duration means the same to both programs. Both test suites check it against the
//! shared table `tests/units.tsv` at the repository's top.

#[path = "../../src/units.rs"]
mod shared;

pub use shared::{DURATION_UNITS, SIZE_UNITS, parse_duration, parse_size};

/// Formats a byte count for people: `1.61 MB`, `64.0 MiB` style is left to the caller;
/// this uses decimal units like the throughput figures (MB = 10^6 bytes).
pub fn human_bytes(bytes: f64) -> String {
    if bytes >= 1e9 {
        format!("{:.2} GB", bytes / 1e9)
    } else if bytes >= 1e6 {
        format!("{:.2} MB", bytes / 1e6)
    } else if bytes >= 1e3 {
        format!("{:.1} kB", bytes / 1e3)
    } else {
        format!("{bytes:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1_610_000.0), "1.61 MB");
    }
}
