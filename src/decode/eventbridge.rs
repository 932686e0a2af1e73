//! EventBridge events delivered by a rule with a Firehose target.
//!
//! Envelope: `version`, `id`, `detail-type`, `source`, `account`, `time`, `region`,
//! `resources`, `detail`
//! (<https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-events-structure.html>).
//! The event is kept whole as `data`, exactly as sent (on one line if it spanned
//! lines, see [`super::json`]), and its identifying fields are lifted into an
//! `eventbridge` object so routes can match on `source` and `detail_type` (alarm
//! state changes, AWS Health, CloudTrail API calls…). CloudTrail API events
//! (`detail-type` "AWS API Call via CloudTrail") are marked `format: "cloudtrail"`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{RecordCx, RecordError, cloudtrail, json};
use crate::event::{EventFormat, Facts, Kind};

/// Whether a record looks like an EventBridge event.
#[must_use]
pub fn looks_like_event(bytes: &[u8]) -> bool {
    super::starts_json_object_with(bytes, b"\"detail-type\"")
        && super::contains(bytes, b"\"source\"")
}

#[derive(Serialize)]
struct Record<'a> {
    format: EventFormat,
    /// The event as sent (see [`json::one_line`]).
    data: &'a RawValue,
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

/// The envelope members of an event, each only delimited (as the text of its
/// value), everything else skipped: no value tree is built, so no number is
/// converted. A member given twice takes its last value, as a value tree (and most
/// JSON readers) would.
#[derive(Default)]
struct Envelope<'a> {
    id: Option<&'a RawValue>,
    source: Option<&'a RawValue>,
    detail_type: Option<&'a RawValue>,
    account: Option<&'a RawValue>,
    region: Option<&'a RawValue>,
    time: Option<&'a RawValue>,
    resources: Option<&'a RawValue>,
    detail: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvelopeVisitor;

        impl<'de> Visitor<'de> for EnvelopeVisitor {
            type Value = Envelope<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an EventBridge event object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut envelope = Envelope::default();
                while let Some(Text(key)) = map.next_key()? {
                    let member = match key.as_ref() {
                        "id" => &mut envelope.id,
                        "source" => &mut envelope.source,
                        "detail-type" => &mut envelope.detail_type,
                        "account" => &mut envelope.account,
                        "region" => &mut envelope.region,
                        "time" => &mut envelope.time,
                        "resources" => &mut envelope.resources,
                        "detail" => &mut envelope.detail,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *member = Some(map.next_value()?);
                }
                Ok(envelope)
            }
        }

        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

/// A JSON string's text, borrowed from the input unless it holds escapes.
#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The string `raw` holds; `None` when it holds another kind of value.
fn text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = raw.filter(|raw| raw.get().starts_with('"'))?;
    serde_json::from_str::<Text<'_>>(raw.get())
        .ok()
        .map(|text| text.0)
}

/// The strings of the array `raw` holds, other elements skipped; none when it holds
/// another kind of value.
fn texts(raw: Option<&RawValue>) -> Vec<Cow<'_, str>> {
    raw.filter(|raw| raw.get().starts_with('['))
        .and_then(|raw| serde_json::from_str::<Vec<&RawValue>>(raw.get()).ok())
        .map(|items| {
            items
                .into_iter()
                .filter_map(|item| text(Some(item)))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the event in `bytes` as a `record` event with its fields lifted.
///
/// The event is stored exactly as sent (on one line if it spanned lines): it is
/// never rebuilt from a value tree, so its numbers, keys and key order are kept,
/// and numbers no double holds (`1e400`) are no reason to refuse it.
///
/// # Errors
///
/// When `bytes` is not one JSON object with string `source` and `detail-type` and a
/// `detail` member.
pub fn decode(bytes: &[u8], cx: &mut RecordCx<'_>) -> Result<EventFormat, RecordError> {
    let invalid = |error: serde_json::Error| RecordError::Event {
        detail: error.to_string(),
    };
    // Two passes, neither building a tree: the first checks the whole event (UTF-8
    // included) and delimits it, the second reads the envelope from its text.
    let raw: &RawValue = serde_json::from_slice(bytes).map_err(invalid)?;
    if !raw.get().starts_with('{') {
        return Err(RecordError::EventNotObject);
    }
    let envelope: Envelope<'_> = serde_json::from_str(raw.get()).map_err(invalid)?;
    let (source, detail_type) = (text(envelope.source), text(envelope.detail_type));
    let (Some(source), Some(detail_type), Some(detail)) =
        (source.as_deref(), detail_type.as_deref(), envelope.detail)
    else {
        return Err(RecordError::EventIncomplete);
    };
    let is_cloudtrail = detail_type == cloudtrail::EVENTBRIDGE_DETAIL_TYPE
        || cloudtrail::is_cloudtrail_json(detail.get());
    let format = if is_cloudtrail {
        EventFormat::Cloudtrail
    } else {
        EventFormat::Eventbridge
    };
    let data = json::one_line(raw).ok_or(RecordError::EventNotOneLine)?;
    let (id, account, region, time) = (
        text(envelope.id),
        text(envelope.account),
        text(envelope.region),
        text(envelope.time),
    );
    let resources = texts(envelope.resources);
    let record = Record {
        format,
        data: &data,
        eventbridge: Lifted {
            id: id.as_deref(),
            source,
            detail_type,
            account: account.as_deref(),
            region: region.as_deref(),
            time: time.as_deref(),
            resources: resources.iter().map(AsRef::as_ref).collect(),
        },
    };
    let facts = Facts {
        format: Some(format),
        source: Some(source),
        detail_type: Some(detail_type),
        ..Facts::default()
    };
    cx.writer.event(cx.index, Kind::Record, facts, &record);
    Ok(format)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::decode::run_decoder;

    fn run(bytes: &[u8]) -> Result<(String, Value), String> {
        let (format, lines) = run_decoder(3, |cx| decode(bytes, cx));
        let format = format.map_err(|error| error.to_string())?;
        Ok((
            format.as_str().to_owned(),
            serde_json::from_slice(&lines).unwrap(),
        ))
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
        // Recognised by its `detail` too, which must be an object.
        let trail = r#"{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"PutObject","eventTime":"2024-01-01T00:00:00Z","n":1e400}"#;
        let array = r#"["eventVersion","s3.amazonaws.com","PutObject","2024-01-01T00:00:00Z"]"#;
        for (detail, format) in [(trail, "cloudtrail"), (array, "eventbridge")] {
            let event = format!(
                r#"{{"detail-type":"Object Created","source":"aws.s3","detail":{detail}}}"#
            );
            let (result, _) = run_decoder(0, |cx| decode(event.as_bytes(), cx));
            assert_eq!(result.map(EventFormat::as_str), Ok(format), "{detail}");
        }
    }

    /// The stored line of `event`, and its `data` as written.
    fn stored(event: &[u8]) -> (String, String) {
        let (result, lines) = run_decoder(0, |cx| decode(event, cx));
        result.unwrap();
        let line = String::from_utf8(lines).unwrap();
        let start = line.find(r#""data":"#).unwrap() + r#""data":"#.len();
        let end = line.rfind(r#","eventbridge":"#).unwrap();
        let data = line[start..end].to_owned();
        (line, data)
    }

    /// The event is stored as sent, never rebuilt: numbers no double holds, key
    /// order and duplicate keys are kept, and JSON spanning lines only loses the
    /// whitespace between its tokens.
    #[test]
    fn events_are_stored_exactly() {
        // (event as sent, `data` as stored)
        let table: &[(&str, &str)] = &[
            (
                r#"{"source":"s","detail-type":"t","detail":{"n":123456789012345678901234567890,"m":18446744073709551616}}"#,
                r#"{"source":"s","detail-type":"t","detail":{"n":123456789012345678901234567890,"m":18446744073709551616}}"#,
            ),
            (
                r#"{"source":"s", "detail-type":"t", "detail":{"x": 1e400, "b":1, "a":2, "a":3, "f":0.1000000000000000055511151231257827}}"#,
                r#"{"source":"s", "detail-type":"t", "detail":{"x": 1e400, "b":1, "a":2, "a":3, "f":0.1000000000000000055511151231257827}}"#,
            ),
            (
                "{\n  \"source\": \"s\",\r\n  \"detail-type\": \"t\",\n  \"detail\": {\n    \"n\": -0.0e-7,\n    \"s\": \"a \\\" b\"\n  }\n}\n",
                r#"{"source":"s","detail-type":"t","detail":{"n":-0.0e-7,"s":"a \" b"}}"#,
            ),
        ];
        for &(event, data) in table {
            let (line, stored_data) = stored(event.as_bytes());
            assert_eq!(stored_data, data, "{event}");
            assert!(line.ends_with("}\n") && !line.trim_end().contains(['\n', '\r']));
        }
    }

    /// The lifted fields are read from the event's text: escapes decoded, fields of
    /// another type absent, the last of duplicate fields taken.
    #[test]
    fn lifted_fields_tolerate_odd_events() {
        let event = br#"{"source":"first","id":7,"source":"a\"b","detail-type":"t\u00e9","account":null,"region":["r"],"time":{"t":1},"resources":["x",1,"y\\z",null],"detail":[1]}"#;
        let (_, written) = run(event).unwrap();
        let lifted = &written["eventbridge"];
        assert_eq!(lifted["source"], "a\"b");
        assert_eq!(lifted["detail_type"], "té");
        assert!(lifted["id"].is_null() && lifted["account"].is_null());
        assert!(lifted["region"].is_null() && lifted["time"].is_null());
        assert_eq!(lifted["resources"], serde_json::json!(["x", "y\\z"]));
        let (_, written) =
            run(br#"{"source":"s","detail-type":"t","resources":"r","detail":{}}"#).unwrap();
        assert_eq!(written["eventbridge"]["resources"], serde_json::json!([]));
    }

    #[test]
    fn non_events_are_errors() {
        for bad in [
            &b"[]"[..],
            br#"{"source":"x","detail-type":"y"}"#,
            br#"{"detail-type":1,"source":"x","detail":{}}"#,
            br#"{"detail-type":"y","source":"x","detail":{}} {}"#,
            br#"{"detail-type":"y","source":"x","detail":{"a":tru}}"#,
            b"{",
        ] {
            assert!(run(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
