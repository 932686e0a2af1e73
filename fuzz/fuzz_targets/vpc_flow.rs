//! VPC flow log lines, default and custom field lists, and records of them sent
//! straight to Firehose.
#![no_main]

use hydrant::decode::{RecordCx, Stats, vpc_flow};
use hydrant::event::{Delivery, EventWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &str| {
    let _ = vpc_flow::parse(line, None);
    let fields: Vec<String> = ["version", "srcaddr", "dstport", "tcp-flags"]
        .map(String::from)
        .to_vec();
    let _ = vpc_flow::parse(line, Some(&fields));
    let mut writer = EventWriter::new(&Delivery::default(), 0);
    let mut stats = Stats::default();
    let _ = vpc_flow::decode_direct(line.as_bytes(), &mut RecordCx::new(&mut writer, &mut stats));
});
