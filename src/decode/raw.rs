//! Raw records: a record is stored as it came, as `json`, `text` or `binary`.
//!
//! A record is `json` when it is exactly one JSON object or array (surrounding
//! whitespace, such as the trailing newline producers often add, is allowed). JSON
//! scalars are left as `text`: a record reading `42` or `true` is far more often a
//! line of text than a document. Valid UTF-8 is `text`; anything else is `binary`.

use serde_json::value::RawValue;

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
    // A line break inside the value (pretty-printed JSON) would split the NDJSON
    // line; such values are re-serialised compactly. JSON strings cannot hold raw
    // line breaks, so any found here are whitespace between tokens.
    if raw.get().bytes().any(|byte| byte == b'\n' || byte == b'\r') {
        return serde_json::from_str(raw.get())
            .ok()
            .map(RecordData::JsonValue);
    }
    Some(RecordData::Json(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RecordFormat;

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

    #[test]
    fn pretty_json_becomes_one_line() {
        match classify(b"{\n  \"a\": [1,\r\n 2]\n}", "") {
            RecordData::JsonValue(value) => assert_eq!(value, serde_json::json!({"a": [1, 2]})),
            other => panic!("expected re-serialised JSON, got {other:?}"),
        }
    }

    #[test]
    fn compact_json_is_kept_verbatim() {
        match classify(b" {\"b\":1,\"a\":2} \n", "") {
            RecordData::Json(raw) => assert_eq!(raw.get(), r#"{"b":1,"a":2}"#),
            other => panic!("expected raw JSON, got {other:?}"),
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
