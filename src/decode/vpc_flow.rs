//! VPC flow log records: space-separated fields, parsed into named fields.
//!
//! The default (version 2) format is
//! `version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status`;
//! a missing value is `-`. Custom formats choose and order fields freely and carry no
//! header, so their field list must be configured.
//! Source: <https://docs.aws.amazon.com/vpc/latest/userguide/flow-log-records.html>.

use serde_json::{Map, Value};

use super::{RecordCx, RecordError, truncate};
use crate::event::{AwsHead, EventFormat, Facts, LogEvent, Parsed};

/// The default format's fields, in order.
pub const DEFAULT_FIELDS: [&str; 14] = [
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
];

/// Fields whose values are integers; they are written as JSON numbers.
const NUMERIC_FIELDS: [&str; 14] = [
    "version",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "tcp-flags",
    "traffic-path",
    "pkt-src-aws-service-port",
    "pkt-dst-aws-service-port",
    "sublocation-id",
    "ecs-container-instance-count",
];

/// Parses one flow log line with the given field list (the default format when
/// `fields` is `None`). Returns `None` when the line does not fit: a different number
/// of values, or, for the default format, values that cannot be a version-2 record.
#[must_use]
pub fn parse(line: &str, fields: Option<&[String]>) -> Option<Map<String, Value>> {
    let values: Vec<&str> = line.split_ascii_whitespace().collect();
    let names: Vec<&str> = match fields {
        Some(fields) => fields.iter().map(String::as_str).collect(),
        None => {
            if !looks_like_default(&values) {
                return None;
            }
            DEFAULT_FIELDS.to_vec()
        }
    };
    if values.len() != names.len() {
        return None;
    }
    let mut parsed = Map::new();
    for (name, value) in names.iter().zip(values) {
        let value = if value == "-" {
            Value::Null
        } else if NUMERIC_FIELDS.contains(name)
            && let Ok(number) = value.parse::<u64>()
        {
            Value::from(number)
        } else {
            Value::from(value)
        };
        parsed.insert((*name).to_owned(), value);
    }
    Some(parsed)
}

fn looks_like_default(values: &[&str]) -> bool {
    values.len() == DEFAULT_FIELDS.len()
        && values[0] == "2"
        && matches!(values[12], "ACCEPT" | "REJECT" | "-")
        && matches!(values[13], "OK" | "NODATA" | "SKIPDATA")
}

/// VPC flow logs delivered straight to Firehose: lines of the flow log format, each
/// possibly wrapped as `{"message": "<line>"}`, written as one `log` event each
/// with the request's timestamp. Returns the number of lines.
///
/// # Errors
///
/// When the record is not UTF-8, has no line, or has a line that does not fit the
/// configured field list (the default format without one).
pub fn decode_direct(content: &[u8], cx: &mut RecordCx<'_>) -> Result<usize, RecordError> {
    let text = std::str::from_utf8(content).map_err(RecordError::FlowLogNotUtf8)?;
    let mut lines = 0;
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let unwrapped = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(object)) => object
                .get("message")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            _ => None,
        };
        let message = unwrapped.as_deref().unwrap_or(line);
        let fields = parse(message, cx.settings.vpc_fields)
            .ok_or_else(|| RecordError::NotFlowLog(truncate(message, 200).to_owned()))?;
        let log = LogEvent {
            timestamp: cx.settings.timestamp,
            message,
            format: EventFormat::VpcFlow,
            parsed: Some(Parsed::Value(serde_json::Value::Object(fields))),
            aws: AwsHead::none(),
            event_id: None,
        };
        let facts = Facts {
            format: Some(EventFormat::VpcFlow),
            ..Facts::default()
        };
        cx.writer.log(cx.index, facts, &log);
        lines += 1;
    }
    if lines == 0 {
        return Err(RecordError::NoFlowLog);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_default_format() {
        let parsed = parse(
            "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK",
            None,
        )
        .unwrap();
        assert_eq!(parsed["version"], 2);
        assert_eq!(parsed["account-id"], "123456789010");
        assert_eq!(parsed["interface-id"], "eni-1235b8ca123456789");
        assert_eq!(parsed["srcaddr"], "172.31.16.139");
        assert_eq!(parsed["dstport"], 22);
        assert_eq!(parsed["bytes"], 4249);
        assert_eq!(parsed["action"], "ACCEPT");
        assert_eq!(parsed["log-status"], "OK");
    }

    #[test]
    fn missing_values_are_null() {
        let parsed = parse(
            "2 123456789010 eni-1a2b3c4d - - - - - - - 1431280876 1431280934 - NODATA",
            None,
        )
        .unwrap();
        assert!(parsed["srcaddr"].is_null());
        assert!(parsed["action"].is_null());
        assert_eq!(parsed["log-status"], "NODATA");
    }

    #[test]
    fn other_lines_are_not_flow_logs() {
        for line in [
            "",
            "hello world",
            "3 123456789010 eni-1 1.1.1.1 2.2.2.2 1 2 6 1 1 1 1 ACCEPT OK",
            "2 123456789010 eni-1 1.1.1.1 2.2.2.2 1 2 6 1 1 1 1 ACCEPT MAYBE",
            "2 123456789010 eni-1 1.1.1.1 2.2.2.2 1 2 6 1 1 1 ACCEPT OK",
        ] {
            assert!(parse(line, None).is_none(), "{line}");
        }
    }

    #[test]
    fn custom_field_lists() {
        let fields: Vec<String> = ["vpc-id", "srcaddr", "dstport", "tcp-flags"]
            .map(String::from)
            .to_vec();
        let parsed = parse("vpc-0abc 10.0.0.1 443 19", Some(&fields)).unwrap();
        assert_eq!(parsed["vpc-id"], "vpc-0abc");
        assert_eq!(parsed["dstport"], 443);
        assert_eq!(parsed["tcp-flags"], 19);
        assert!(parse("vpc-0abc 10.0.0.1 443", Some(&fields)).is_none());
    }
}
