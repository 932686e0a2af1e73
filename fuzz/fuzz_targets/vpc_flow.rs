//! VPC flow log lines, default and custom field lists.
#![no_main]

use hydrant::decode::vpc_flow;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &str| {
    let _ = vpc_flow::parse(line, None);
    let fields: Vec<String> = ["version", "srcaddr", "dstport", "tcp-flags"]
        .map(String::from)
        .to_vec();
    let _ = vpc_flow::parse(line, Some(&fields));
});
