//! Helpers shared by the unit tests.

use serde_json::Value;

/// A file under `tests/fixtures/`.
pub(crate) fn fixture(path: &str) -> Vec<u8> {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|error| panic!("{}: {error}", full.display()))
}

/// NDJSON lines parsed, one value per line.
pub(crate) fn parse_lines(lines: &[u8]) -> Vec<Value> {
    std::str::from_utf8(lines)
        .expect("lines are UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}
