//! CloudWatch Logs envelopes (already inflated).
#![no_main]

use hydrant::decode::cloudwatch_logs;
use hydrant::event::{Delivery, EventWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|record: &[u8]| {
    let mut writer = EventWriter::new(&Delivery::default(), 0);
    let _ = cloudwatch_logs::decode(record, 0, &mut writer, None);
    let _ = cloudwatch_logs::decode_messages(record, 0, 0, &mut writer, None);
});
