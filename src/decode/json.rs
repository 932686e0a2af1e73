//! Users' JSON, stored exactly as sent.
//!
//! A JSON record or message is kept as its text, never parsed into a value tree and
//! written back: that would round numbers a double cannot hold
//! (`123456789012345678901234567890`, `18446744073709551616`), reject others (`1e400`),
//! merge duplicate keys and reorder keys. The one change made is for NDJSON: a value
//! that spans lines (pretty-printed JSON) has the whitespace between its tokens removed,
//! byte by byte, so it fits on one line. JSON strings cannot hold raw line breaks
//! (RFC 8259, section 7: control characters must be escaped), so every line break in a
//! valid JSON text is whitespace between tokens.

use std::borrow::Cow;

use serde_json::value::RawValue;

/// `raw` on one line: itself when its text has no line break (byte for byte, spaces
/// and all), else [`minify`]d. `None` only if the minified text were not valid JSON
/// on one line, which removing the whitespace between the tokens of valid JSON cannot
/// cause; callers treat it as "not JSON" and keep the bytes some other way.
#[must_use]
pub fn one_line(raw: &RawValue) -> Option<Cow<'_, RawValue>> {
    let text = raw.get();
    if !has_line_break(text) {
        return Some(Cow::Borrowed(raw));
    }
    let minified = minify(text);
    // Both checks are for pretty-printed JSON only: a line break left over would
    // split the NDJSON line, and `from_string` parses the text again to type it.
    if has_line_break(&minified) {
        return None;
    }
    RawValue::from_string(minified).ok().map(Cow::Owned)
}

fn has_line_break(text: &str) -> bool {
    memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_some()
}

/// `json` without its insignificant whitespace: every byte is kept but space, tab, LF
/// and CR outside strings (RFC 8259, section 2), so numbers, keys, escapes and key
/// order are untouched. One pass over the bytes, copying the runs between whitespace.
///
/// Meant for valid JSON (such as a [`RawValue`]'s text). Any other input is handled
/// without panicking, but the result may then differ from the input in more than
/// whitespace meaning: `1 2` becomes `12`.
#[must_use]
pub fn minify(json: &str) -> String {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    // Start of the bytes not yet copied to `out`.
    let mut run = 0;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => at = string_end(bytes, at + 1),
            b' ' | b'\t' | b'\n' | b'\r' => {
                // `run` and `at` sit on ASCII bytes (or the end), so both are
                // character boundaries.
                out.push_str(&json[run..at]);
                at += 1;
                run = at;
            }
            _ => at += 1,
        }
    }
    out.push_str(&json[run..]);
    out
}

/// The index just past the quote closing the string whose content starts at `from`,
/// or the end of `bytes` when it is not closed.
fn string_end(bytes: &[u8], mut from: usize) -> usize {
    while let Some(rest) = bytes.get(from..) {
        match memchr::memchr2(b'"', b'\\', rest) {
            // A backslash escapes the byte after it (`\"`, `\\`; `\u` needs no care).
            Some(offset) if rest[offset] == b'\\' => from += offset + 2,
            Some(offset) => return from + offset + 1,
            None => break,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minify_removes_only_whitespace_between_tokens() {
        // (JSON, minified)
        let table: &[(&str, &str)] = &[
            ("{}", "{}"),
            (" [ 1 , 2 ] ", "[1,2]"),
            ("{\r\n\t\"a b\" :\n 1e400 }", r#"{"a b":1e400}"#),
            (
                "{\n \"n\": 123456789012345678901234567890, \"n\": -0.0e-7\n}",
                r#"{"n":123456789012345678901234567890,"n":-0.0e-7}"#,
            ),
            (
                "[ \"say \\\"hi\\\" \", \"\\\\\", \"\\\\\\\" x\" ,\"é 漢 😀\" ]",
                r#"["say \"hi\" ","\\","\\\" x","é 漢 😀"]"#,
            ),
            (
                "[\"\\u0020 \\n\" , true , null ]",
                r#"["\u0020 \n",true,null]"#,
            ),
        ];
        for &(json, minified) in table {
            assert_eq!(minify(json), minified, "{json:?}");
        }
    }

    #[test]
    fn minify_does_not_panic_on_broken_input() {
        for broken in ["\"", "\"\\", "\"abc\\\"", "{\"a\n", "\"é\\é\" x", "\\ \"\\"] {
            let _ = minify(broken);
        }
    }

    #[test]
    fn one_line_json_is_kept_byte_for_byte() {
        let raw: &RawValue =
            serde_json::from_str(r#"{ "b": 1e400, "a": 18446744073709551616, "a": 0.10 }"#)
                .unwrap();
        assert!(matches!(one_line(raw), Some(Cow::Borrowed(kept)) if std::ptr::eq(kept, raw)));
        let pretty: &RawValue =
            serde_json::from_str("{\n \"b\": 1e400,\r\n \"a\": 0.10\n}").unwrap();
        assert_eq!(one_line(pretty).unwrap().get(), r#"{"b":1e400,"a":0.10}"#);
    }
}
