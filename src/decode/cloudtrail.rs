//! CloudTrail events: recognising a CloudTrail record, wherever it arrives (a
//! CloudWatch Logs message from a trail's log group, or the `detail` of an
//! EventBridge "AWS API Call via CloudTrail" event), so it can be marked
//! `format: "cloudtrail"` and routed to a security destination.
//!
//! Record fields: <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html>.

use serde_json::{Map, Value};

/// EventBridge's `detail-type` for CloudTrail API events.
pub const EVENTBRIDGE_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// Fields every CloudTrail record carries (`eventVersion` names the schema version).
const REQUIRED_FIELDS: [&str; 4] = ["eventVersion", "eventSource", "eventName", "eventTime"];

/// Whether a JSON object is a CloudTrail record.
#[must_use]
pub fn is_cloudtrail(object: &Map<String, Value>) -> bool {
    REQUIRED_FIELDS
        .iter()
        .all(|field| object.get(*field).is_some_and(Value::is_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_cloudtrail_records() {
        let table = [
            (
                r#"{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"GetObject","eventTime":"2024-01-01T00:00:00Z","userIdentity":{}}"#,
                true,
            ),
            (
                r#"{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"GetObject"}"#,
                false,
            ),
            (
                r#"{"eventVersion":1,"eventSource":"x","eventName":"y","eventTime":"z"}"#,
                false,
            ),
            (r#"{"level":"info","msg":"hello"}"#, false),
        ];
        for (json, expected) in table {
            let object: Map<String, Value> = serde_json::from_str(json).unwrap();
            assert_eq!(is_cloudtrail(&object), expected, "{json}");
        }
    }
}
