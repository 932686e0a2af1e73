//! Metric Streams OpenTelemetry records: varint-framed protobuf, every version mode.
#![no_main]

use hydrant::decode::otel::{OtelVersion, decode, looks_like_otel};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|record: &[u8]| {
    let _ = looks_like_otel(record);
    for version in [OtelVersion::Any, OtelVersion::V07, OtelVersion::V10] {
        let mut metrics = Vec::new();
        let _ = decode(record, version, &mut metrics);
    }
});
