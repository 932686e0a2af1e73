//! The whole request path after the headers: optional gzip inflation of the body,
//! the envelope, base64, and decoding of every record in `auto` and `reject` modes.
#![no_main]

use hydrant::decode::{BadRecords, DecodeSettings, decode_records};
use hydrant::event::Delivery;
use hydrant::limits::{gunzip_capped, is_gzip};
use hydrant::firehose::DeliveryRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let inflated;
    let json = if is_gzip(body) {
        match gunzip_capped(body, 1 << 20) {
            Ok(bytes) => {
                inflated = bytes;
                &inflated[..]
            }
            Err(_) => return,
        }
    } else {
        body
    };
    let Ok(request) = DeliveryRequest::parse(json, 10_000) else {
        return;
    };
    for bad_records in [BadRecords::DeadLetter, BadRecords::Reject] {
        let settings = DecodeSettings {
            bad_records,
            max_record_inflated_bytes: 1 << 20,
            ..DecodeSettings::default()
        };
        let _ = decode_records(&request.records, &Delivery::default(), &settings);
    }
});
