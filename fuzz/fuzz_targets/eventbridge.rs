//! EventBridge events.
#![no_main]

use hydrant::decode::{RecordCx, Stats, eventbridge};
use hydrant::event::{Delivery, EventWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|record: &[u8]| {
    let mut writer = EventWriter::new(&Delivery::default(), 0);
    let mut stats = Stats::default();
    let _ = eventbridge::decode(record, &mut RecordCx::new(&mut writer, &mut stats));
});
