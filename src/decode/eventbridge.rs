//! EventBridge events delivered by a rule with a Firehose target.
//!
//! Envelope: `version`, `id`, `detail-type`, `source`, `account`, `time`, `region`,
//! `resources`, `detail`
//! (<https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-events-structure.html>).
//! The event is kept whole as `data`, and its identifying fields are lifted into an
//! `eventbridge` object so routes can match on `source` and `detail_type` (alarm
//! state changes, AWS Health, CloudTrail API calls…). CloudTrail API events
//! (`detail-type` "AWS API Call via CloudTrail") are marked `format: "cloudtrail"`.

use serde::Serialize;
use serde_json::Value;

use super::cloudtrail;
use crate::event::{EventWriter, Facts};

/// Whether a record looks like an EventBridge event.
#[must_use]
pub fn looks_like_event(bytes: &[u8]) -> bool {
    super::starts_json_object_with(bytes, b"\"detail-type\"")
        && super::contains(bytes, b"\"source\"")
}

#[derive(Serialize)]
struct Record<'a> {
    format: &'static str,
    data: &'a Value,
    eventbridge: Lifted<'a>,
}

#[derive(Serialize)]
struct Lifted<'a> {
    id: Option<&'a str>,
    source: &'a str,
    detail_type: &'a str,
    account: Option<&'a str>,
    region: Option<&'a str>,
    time: Option<&'a str>,
    resources: Vec<&'a str>,
}

/// Writes the event in `bytes` as a `record` event with its fields lifted.
///
/// # Errors
///
/// When `bytes` is not one JSON object with string `source` and `detail-type` and a
/// `detail` member.
pub fn decode(
    bytes: &[u8],
    record_index: usize,
    writer: &mut EventWriter,
) -> Result<&'static str, String> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|error| format!("invalid EventBridge event: {error}"))?;
    let object = value
        .as_object()
        .ok_or("EventBridge event is not a JSON object")?;
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    let (Some(source), Some(detail_type), Some(detail)) =
        (text("source"), text("detail-type"), object.get("detail"))
    else {
        return Err("EventBridge event lacks source, detail-type or detail".into());
    };
    let is_cloudtrail = detail_type == cloudtrail::EVENTBRIDGE_DETAIL_TYPE
        || detail.as_object().is_some_and(cloudtrail::is_cloudtrail);
    let format = if is_cloudtrail {
        "cloudtrail"
    } else {
        "eventbridge"
    };
    let record = Record {
        format,
        data: &value,
        eventbridge: Lifted {
            id: text("id"),
            source,
            detail_type,
            account: text("account"),
            region: text("region"),
            time: text("time"),
            resources: object
                .get("resources")
                .and_then(Value::as_array)
                .map(|resources| resources.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default(),
        },
    };
    let facts = Facts {
        format: Some(format),
        source: Some(source),
        detail_type: Some(detail_type),
        ..Facts::default()
    };
    writer.event(record_index, "record", facts, &record);
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Delivery;

    fn run(bytes: &[u8]) -> Result<(String, Value), String> {
        let mut writer = EventWriter::new(&Delivery::default(), 0);
        let format = decode(bytes, 3, &mut writer)?;
        let lines = writer.finish().concat();
        Ok((format.to_owned(), serde_json::from_slice(&lines).unwrap()))
    }

    #[test]
    fn lifts_the_identifying_fields() {
        let event = br#"{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","detail-type":"CloudWatch Alarm State Change","source":"aws.cloudwatch","account":"111122223333","time":"2017-12-22T18:43:48Z","region":"us-west-1","resources":["arn:aws:cloudwatch:us-west-1:111122223333:alarm:cpu"],"detail":{"state":{"value":"ALARM"}}}"#;
        assert!(looks_like_event(event));
        let (format, written) = run(event).unwrap();
        assert_eq!(format, "eventbridge");
        assert_eq!(written["kind"], "record");
        assert_eq!(written["format"], "eventbridge");
        assert_eq!(written["data"]["detail"]["state"]["value"], "ALARM");
        let lifted = &written["eventbridge"];
        assert_eq!(lifted["source"], "aws.cloudwatch");
        assert_eq!(lifted["detail_type"], "CloudWatch Alarm State Change");
        assert_eq!(lifted["id"], "6a7e8feb-b491-4cf7-a9f1-bf3703467718");
        assert_eq!(lifted["account"], "111122223333");
        assert_eq!(lifted["region"], "us-west-1");
        assert_eq!(lifted["time"], "2017-12-22T18:43:48Z");
        assert_eq!(
            lifted["resources"][0],
            "arn:aws:cloudwatch:us-west-1:111122223333:alarm:cpu"
        );
        assert_eq!(written["firehose"]["record_index"], 3);
    }

    #[test]
    fn cloudtrail_api_calls_are_marked() {
        let event = br#"{"version":"0","id":"1","detail-type":"AWS API Call via CloudTrail","source":"aws.s3","account":"1","time":"t","region":"r","resources":[],"detail":{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"PutObject","eventTime":"2024-01-01T00:00:00Z"}}"#;
        let (format, written) = run(event).unwrap();
        assert_eq!(format, "cloudtrail");
        assert_eq!(written["format"], "cloudtrail");
        assert_eq!(written["data"]["detail"]["eventName"], "PutObject");
    }

    #[test]
    fn non_events_are_errors() {
        for bad in [
            &b"[]"[..],
            br#"{"source":"x","detail-type":"y"}"#,
            br#"{"detail-type":1,"source":"x","detail":{}}"#,
            b"{",
        ] {
            assert!(run(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
