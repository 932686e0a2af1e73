//! CloudTrail events: recognising a CloudTrail record, wherever it arrives (a
//! CloudWatch Logs message from a trail's log group, or the `detail` of an
//! EventBridge "AWS API Call via CloudTrail" event), so it can be marked
//! `format: "cloudtrail"` and routed to a security destination.
//!
//! Record fields: <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html>.

/// EventBridge's `detail-type` for CloudTrail API events.
pub const EVENTBRIDGE_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// Whether a JSON text is a CloudTrail record (an object), without building a parse
/// tree: the four fields are read as strings, everything else is skipped, so no
/// number is converted.
#[must_use]
pub fn is_cloudtrail_json(object: &str) -> bool {
    /// The fields every CloudTrail record carries (`eventVersion` names the schema
    /// version).
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(rename = "eventVersion", borrow)]
        event_version: Option<std::borrow::Cow<'a, str>>,
        #[serde(rename = "eventSource", borrow)]
        event_source: Option<std::borrow::Cow<'a, str>>,
        #[serde(rename = "eventName", borrow)]
        event_name: Option<std::borrow::Cow<'a, str>>,
        #[serde(rename = "eventTime", borrow)]
        event_time: Option<std::borrow::Cow<'a, str>>,
    }
    // Most messages are not CloudTrail: a substring check spares them the parse.
    // The probe would read an array of four strings as well: only objects count.
    if !object.trim_start().starts_with('{')
        || memchr::memmem::find(object.as_bytes(), b"\"eventVersion\"").is_none()
    {
        return false;
    }
    serde_json::from_str::<Probe<'_>>(object).is_ok_and(|probe| {
        probe.event_version.is_some()
            && probe.event_source.is_some()
            && probe.event_name.is_some()
            && probe.event_time.is_some()
    })
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
            (
                "{\"eventVersion\": \"1.08\",\n \"eventSource\": \"s3.amazonaws.com\", \"eventName\": \"GetObject\", \"eventTime\": \"2024-01-01T00:00:00Z\", \"bytes\": 1e400}",
                true,
            ),
            (
                r#"["eventVersion","s3.amazonaws.com","GetObject","2024-01-01T00:00:00Z"]"#,
                false,
            ),
        ];
        for (json, expected) in table {
            assert_eq!(is_cloudtrail_json(json), expected, "{json}");
        }
    }
}
