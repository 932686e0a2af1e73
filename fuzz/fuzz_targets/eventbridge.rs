//! EventBridge events.
#![no_main]

use hydrant::decode::eventbridge;
use hydrant::event::{Delivery, EventWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|record: &[u8]| {
    let mut writer = EventWriter::new(&Delivery::default(), 0);
    let _ = eventbridge::decode(record, 0, &mut writer);
});
