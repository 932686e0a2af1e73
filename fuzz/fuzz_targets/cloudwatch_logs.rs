//! CloudWatch Logs envelopes (already inflated).
#![no_main]

use hydrant::decode::{RecordCx, Stats, cloudwatch_logs};
use hydrant::event::{Delivery, EventWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|record: &[u8]| {
    let mut writer = EventWriter::new(&Delivery::default(), 0);
    let mut stats = Stats::default();
    let mut cx = RecordCx::new(&mut writer, &mut stats);
    let _ = cloudwatch_logs::decode(record, &mut cx);
    let _ = cloudwatch_logs::decode_messages(record, &mut cx);
});
