//! Raw records: a record is stored as it came, as `json`, `text` or `binary`.
//!
//! A record is `json` when it is exactly one JSON object or array (surrounding
//! whitespace, such as the trailing newline producers often add, is allowed). JSON
//! scalars are left as `text`: a record reading `42` or `true` is far more often a
//! line of text than a document. Valid UTF-8 is `text`; anything else is `binary`.
//!
//! JSON is stored exactly as sent: only when it spans lines is the whitespace between
//! its tokens removed, so that it fits on one NDJSON line ([`super::json`]).

use serde_json::value::RawValue;

use super::json;
use crate::event::RecordData;

/// Classifies one decoded record. `base64` is the record as Firehose sent it, reused
/// for `binary` data so the bytes are not encoded again.
#[must_use]
pub fn classify<'a>(bytes: &'a [u8], base64: &'a str) -> RecordData<'a> {
    if let Some(json) = as_json(bytes) {
        return json;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => RecordData::Text(text),
        Err(_) => RecordData::Binary(base64),
    }
}

fn as_json(bytes: &[u8]) -> Option<RecordData<'_>> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace())?;
    if *first != b'{' && *first != b'[' {
        return None;
    }
    let raw: &RawValue = serde_json::from_slice(bytes).ok()?;
    // Kept as sent; on one line only if it spanned lines (see `json::one_line`).
    json::one_line(raw).map(RecordData::Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Delivery, EventWriter, RecordFormat};

    #[test]
    fn classifies_records() {
        let table: &[(&str, &[u8], RecordFormat)] = &[
            ("object", br#"{"a":1}"#, RecordFormat::Json),
            ("object with newline", b"{\"a\":1}\n", RecordFormat::Json),
            ("array", b"[1,2]", RecordFormat::Json),
            ("pretty object", b"{\n  \"a\": 1\n}\n", RecordFormat::Json),
            ("scalar number", b"42", RecordFormat::Text),
            ("scalar string", br#""quoted""#, RecordFormat::Text),
            ("two objects", b"{\"a\":1}\n{\"b\":2}\n", RecordFormat::Text),
            ("broken json", br#"{"a":"#, RecordFormat::Text),
            (
                "plain text",
                "hola esto es una prueba".as_bytes(),
                RecordFormat::Text,
            ),
            ("empty", b"", RecordFormat::Text),
            (
                "gzip",
                &[0x1f, 0x8b, 0x08, 0x00, 0xff],
                RecordFormat::Binary,
            ),
        ];
        for (name, bytes, format) in table {
            assert_eq!(classify(bytes, "AAAA").format(), *format, "{name}");
        }
    }

    /// The `data` of the line `classify` makes of `bytes`, as stored.
    fn stored_data(bytes: &[u8]) -> String {
        let mut writer = EventWriter::new(&Delivery::default(), 0);
        writer.record(0, &classify(bytes, ""));
        let line = String::from_utf8(writer.finish().concat()).unwrap();
        let start = line.find(r#""data":"#).unwrap() + r#""data":"#.len();
        let end = line.rfind(r#","firehose":"#).unwrap();
        line[start..end].to_owned()
    }

    /// JSON is stored as sent; JSON spanning lines loses only the whitespace between
    /// its tokens, never a digit of a number, a duplicate key or the key order.
    #[test]
    fn json_is_stored_exactly() {
        // (record, stored data)
        let table: &[(&[u8], &str)] = &[
            (b"{\n  \"a\": [1,\r\n 2]\n}", r#"{"a":[1,2]}"#),
            (b" {\"b\":1,\"a\":2} \n", r#"{"b":1,"a":2}"#),
            (
                b"{\n \"n\": 123456789012345678901234567890,\n \"m\": 18446744073709551616\n}",
                r#"{"n":123456789012345678901234567890,"m":18446744073709551616}"#,
            ),
            (
                b"{\n \"n\": 0.1000000000000000055511151231257827\n}",
                r#"{"n":0.1000000000000000055511151231257827}"#,
            ),
            (
                b"{\n \"b\": 1,\n \"a\": 2,\n \"a\": 3\n}",
                r#"{"b":1,"a":2,"a":3}"#,
            ),
            (b"[\n 1e400,\n -0.0e-7\n]", "[1e400,-0.0e-7]"),
            (
                b"[1e400, -0.0e-7, {\"a\":1,\"a\":2}]",
                "[1e400, -0.0e-7, {\"a\":1,\"a\":2}]",
            ),
            (
                b"[\"a \\\"b\\\" \\\\\",\n \"\\u00e9 \xc3\xa9\"]",
                r#"["a \"b\" \\","\u00e9 é"]"#,
            ),
        ];
        for &(record, data) in table {
            let text = String::from_utf8_lossy(record);
            assert_eq!(classify(record, "").format(), RecordFormat::Json, "{text}");
            assert_eq!(stored_data(record), data, "{text}");
        }
    }

    #[test]
    fn binary_reuses_the_base64_text() {
        match classify(&[0xff, 0xfe], "//4=") {
            RecordData::Binary(text) => assert_eq!(text, "//4="),
            other => panic!("expected binary, got {other:?}"),
        }
    }
}
