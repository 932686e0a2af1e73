//! One record through every format: the first byte picks the format, the rest is
//! the record. Every decoder must return an error, never panic or hang, and every
//! line it writes must be valid JSON on one line.
#![no_main]

use std::borrow::Cow;

use base64::Engine as _;
use hydrant::decode::{DecodeSettings, FORMAT_NAMES, Format, decode_records};
use hydrant::event::Delivery;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((selector, record)) = input.split_first() else {
        return;
    };
    let name = FORMAT_NAMES[usize::from(*selector) % FORMAT_NAMES.len()];
    let format: Format = name.parse().expect("listed formats parse");
    let settings = DecodeSettings {
        default_format: format,
        max_record_inflated_bytes: 1 << 20,
        ..DecodeSettings::default()
    };
    let records = [Cow::Owned(
        base64::engine::general_purpose::STANDARD.encode(record),
    )];
    let decoded = decode_records(&records, &Delivery::default(), &settings)
        .expect("dead-letter mode never fails");
    for (_, line) in decoded.events.iter().chain(decoded.dead_letters.iter()) {
        // Checked as JSON text, not as a value: stored JSON keeps numbers no double
        // holds (`1e400`), which a value tree would refuse.
        serde_json::from_slice::<&serde_json::value::RawValue>(line).expect("every line is JSON");
        assert!(
            !line.iter().any(|byte| matches!(byte, b'\n' | b'\r')),
            "every event is one line"
        );
    }
});
