//! The JSON minifier: for any valid JSON text, the minified text must be valid JSON
//! on one line, with no whitespace between tokens, holding the same tokens (numbers
//! and strings as written). On any other input it must not panic.
#![no_main]

use hydrant::decode::json::{minify, one_line};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

#[path = "../../tests/json_tokens/mod.rs"]
#[allow(
    dead_code,
    reason = "shared with the property tests, which use all of it"
)]
mod json_tokens;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let minified = minify(text);
    let Ok(raw) = serde_json::from_str::<&RawValue>(text) else {
        return;
    };
    serde_json::from_str::<&RawValue>(&minified).expect("minified JSON is JSON");
    assert_eq!(
        json_tokens::tokenize(&minified).expect("minified JSON tokenizes"),
        json_tokens::tokenize(text).expect("JSON tokenizes"),
        "same tokens"
    );
    let rebuilt: String = json_tokens::tokenize(&minified)
        .expect("minified JSON tokenizes")
        .iter()
        .map(|token| token.text)
        .collect();
    assert_eq!(minified, rebuilt, "no whitespace between tokens");
    let line = one_line(raw).expect("valid JSON fits on one line");
    assert!(!line.get().contains(['\n', '\r']), "one line");
    if !text.contains(['\n', '\r']) {
        assert_eq!(line.get(), raw.get(), "one-line JSON is kept as it is");
    }
});
