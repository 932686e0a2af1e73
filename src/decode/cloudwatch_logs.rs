//! CloudWatch Logs subscription records.
//!
//! A subscription filter delivers each batch of log events as one JSON envelope,
//! gzip'd by CloudWatch unless the stream's decompression option already inflated it
//! (the caller inflates; this module sees JSON). One record may hold several
//! envelopes back to back (several gzip members, or JSON documents separated by
//! whitespace). Envelope fields:
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html>.
//!
//! - `DATA_MESSAGE`: one `log` event per entry of `logEvents`.
//! - `CONTROL_MESSAGE`: CloudWatch checking the destination is reachable; accepted,
//!   counted, not stored.
//!
//! Unknown fields (`policyLevel`, future ones) are ignored. Each message is looked at
//! once more: a JSON object is parsed (and marked `cloudtrail` when it is a CloudTrail
//! record), a VPC flow log line is split into its fields.
//!
//! With Firehose's *message extraction* option, records hold only the messages, one
//! per line, with no envelope: [`decode_messages`] handles that form.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{cloudtrail, vpc_flow};
use crate::event::{AwsHead, EventWriter, Facts, LogEvent, LogSource, Parsed};

const DATA_MESSAGE: &str = "DATA_MESSAGE";
const CONTROL_MESSAGE: &str = "CONTROL_MESSAGE";

/// What one record held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Log events written.
    pub events: usize,
    /// Control messages seen (and not stored).
    pub control_messages: usize,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "messageType", borrow)]
    message_type: Cow<'a, str>,
    #[serde(borrow, default)]
    owner: Option<Cow<'a, str>>,
    #[serde(rename = "logGroup", borrow, default)]
    log_group: Option<Cow<'a, str>>,
    #[serde(rename = "logStream", borrow, default)]
    log_stream: Option<Cow<'a, str>>,
    #[serde(rename = "subscriptionFilters", borrow, default)]
    subscription_filters: Vec<Cow<'a, str>>,
    #[serde(rename = "logEvents", borrow, default)]
    log_events: Vec<InputEvent<'a>>,
}

#[derive(Deserialize)]
struct InputEvent<'a> {
    /// A string of digits in practice; kept as text whatever it is, because the
    /// number does not fit in a JSON double.
    #[serde(borrow)]
    id: &'a RawValue,
    timestamp: i64,
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(rename = "extractedFields", default)]
    extracted_fields: Option<serde_json::Map<String, Value>>,
}

/// Whether a record looks like a subscription envelope: a JSON object that names
/// its `messageType` near the start, as CloudWatch writes it, or starts with its
/// `logEvents`, as a re-serialiser with sorted keys would.
#[must_use]
pub fn looks_like_envelope(bytes: &[u8]) -> bool {
    super::starts_json_object_with(bytes, b"\"messageType\"")
        || super::starts_json_object_with(bytes, b"\"logEvents\"")
}

/// Writes the log events of every envelope in `bytes`.
///
/// # Errors
///
/// A description of the first problem: not JSON, not an envelope, an unknown
/// `messageType`. The caller discards whatever this record had written.
pub fn decode(
    bytes: &[u8],
    record_index: usize,
    writer: &mut EventWriter,
    vpc_fields: Option<&[String]>,
) -> Result<Decoded, String> {
    let mut decoded = Decoded::default();
    let mut envelopes = serde_json::Deserializer::from_slice(bytes).into_iter::<Envelope<'_>>();
    let mut any = false;
    for envelope in &mut envelopes {
        let envelope =
            envelope.map_err(|error| format!("invalid CloudWatch Logs envelope: {error}"))?;
        any = true;
        match envelope.message_type.as_ref() {
            DATA_MESSAGE => {
                let head = AwsHead::new(&source(&envelope, None));
                for event in &envelope.log_events {
                    write_event(&envelope, &head, event, record_index, writer, vpc_fields);
                    decoded.events += 1;
                }
            }
            CONTROL_MESSAGE => decoded.control_messages += 1,
            other => return Err(format!("unknown CloudWatch Logs messageType {other:?}")),
        }
    }
    if !any {
        return Err("empty record: no CloudWatch Logs envelope".into());
    }
    Ok(decoded)
}

/// The `aws` object of an envelope's events, with what an event's extracted
/// fields say of its account and region.
fn source<'a>(
    envelope: &'a Envelope<'_>,
    extracted: Option<&'a serde_json::Map<String, Value>>,
) -> LogSource<'a> {
    let extracted = |name: &str| {
        extracted
            .and_then(|fields| fields.get(name))
            .and_then(Value::as_str)
    };
    LogSource {
        account_id: extracted("@aws.account").or(envelope.owner.as_deref()),
        region: extracted("@aws.region"),
        log_group: envelope.log_group.as_deref(),
        log_stream: envelope.log_stream.as_deref(),
        subscription_filters: &envelope.subscription_filters,
    }
}

fn write_event(
    envelope: &Envelope<'_>,
    head: &AwsHead,
    event: &InputEvent<'_>,
    record_index: usize,
    writer: &mut EventWriter,
    vpc_fields: Option<&[String]>,
) {
    // Account-level subscriptions name each event's account and region.
    let own_head = event
        .extracted_fields
        .as_ref()
        .map(|fields| AwsHead::new(&source(envelope, Some(fields))));
    let (format, parsed) = classify_message(&event.message, vpc_fields);
    let facts = Facts {
        format: Some(format),
        log_group: envelope.log_group.as_deref(),
        ..Facts::default()
    };
    let log = LogEvent {
        timestamp: event.timestamp,
        message: &event.message,
        format,
        parsed,
        aws: own_head.as_ref().unwrap_or(head),
        event_id: Some(event.id.get()),
    };
    writer.log(record_index, facts, &log);
}

/// Writes one `log` event per non-empty line of a record produced with Firehose's
/// message extraction (messages only, no envelope). Such lines carry no time of
/// their own, so they get the request's `timestamp`.
pub fn decode_messages(
    bytes: &[u8],
    record_index: usize,
    timestamp: i64,
    writer: &mut EventWriter,
    vpc_fields: Option<&[String]>,
) -> Result<usize, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|error| format!("message lines are not UTF-8: {error}"))?;
    let mut events = 0;
    for line in text.split('\n').map(|line| line.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        let (format, parsed) = classify_message(line, vpc_fields);
        let log = LogEvent {
            timestamp,
            message: line,
            format,
            parsed,
            aws: AwsHead::none(),
            event_id: None,
        };
        writer.log(
            record_index,
            Facts {
                format: Some(format),
                ..Facts::default()
            },
            &log,
        );
        events += 1;
    }
    Ok(events)
}

/// What a log message is: a JSON object (a CloudTrail record or other JSON), a VPC
/// flow log line, or plain text.
#[must_use]
pub fn classify_message<'a>(
    message: &'a str,
    vpc_fields: Option<&[String]>,
) -> (&'static str, Option<Parsed<'a>>) {
    let trimmed = message.trim();
    if trimmed.starts_with('{')
        && let Ok(raw) = serde_json::from_str::<&RawValue>(trimmed)
    {
        let format = if cloudtrail::is_cloudtrail_json(raw.get()) {
            "cloudtrail"
        } else {
            "json"
        };
        // A line break inside the object would split the NDJSON line: such
        // messages (pretty-printed JSON) are re-serialised compactly.
        let parsed = if memchr::memchr2(b'\n', b'\r', raw.get().as_bytes()).is_some() {
            serde_json::from_str(raw.get()).ok().map(Parsed::Value)
        } else {
            Some(Parsed::Json(raw))
        };
        return (format, parsed);
    }
    if let Some(fields) = vpc_flow::parse(trimmed, vpc_fields) {
        return ("vpc_flow", Some(Parsed::Value(Value::Object(fields))));
    }
    ("text", None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Delivery;
    use crate::testing::{fixture, parse_lines};

    fn run(bytes: &[u8]) -> (Result<Decoded, String>, Vec<Value>) {
        let mut writer = EventWriter::new(&Delivery::default(), 0);
        let result = decode(bytes, 0, &mut writer, None);
        let lines = writer.finish().concat();
        (result, parse_lines(&lines))
    }

    #[test]
    fn decodes_a_data_message_field_by_field() {
        let (result, events) = run(&fixture("otel-contrib/cwlog/single_record"));
        assert_eq!(
            result,
            Ok(Decoded {
                events: 1,
                control_messages: 0
            })
        );
        let event = &events[0];
        assert_eq!(event["kind"], "log");
        assert_eq!(event["timestamp"], 1_725_544_035_523_i64);
        assert_eq!(
            event["message"],
            "Hello world, here is our first log message!"
        );
        assert_eq!(event["format"], "text");
        assert!(event.get("parsed").is_none());
        assert_eq!(event["aws"]["account_id"], "123");
        assert_eq!(event["aws"]["log_group"], "test");
        assert_eq!(event["aws"]["log_stream"], "test");
        assert_eq!(
            event["aws"]["subscription_filters"],
            serde_json::json!(["test"])
        );
        assert_eq!(
            event["aws"]["event_id"], "38480917865042697267627490045603633139480491071049695232",
            "the id is kept as a string, digit for digit"
        );
        assert!(event["aws"]["region"].is_null());
    }

    /// A JSON message is stored once, as `parsed`, when that is its exact text; in
    /// every other case `message` is kept so no byte of what was logged is lost.
    #[test]
    fn json_messages_are_stored_once_unless_their_text_would_change() {
        let table: &[(&str, &str, bool)] = &[
            // (message as logged, format, `message` written)
            (r#"{"level":"info","n":1}"#, "json", false),
            (r#"{"a":"say \"hi\"","b":[1,2]}"#, "json", false),
            ("{\"level\":\"info\"}\n", "json", true),
            (" {\"a\":1}", "json", true),
            ("{\"a\":\n 1}", "json", true),
            ("{not json", "text", true),
            ("plain text", "text", true),
        ];
        for &(message, format, keeps_message) in table {
            let envelope = serde_json::json!({
                "messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g",
                "logStream": "s", "subscriptionFilters": ["f"],
                "logEvents": [{"id": "1", "timestamp": 5, "message": message}],
            });
            let (result, events) = run(envelope.to_string().as_bytes());
            assert_eq!(result.map(|decoded| decoded.events), Ok(1), "{message:?}");
            let event = &events[0];
            assert_eq!(event["format"], format, "{message:?}");
            assert_eq!(event.get("message").is_some(), keeps_message, "{message:?}");
            let text = match event.get("message") {
                Some(written) => written.as_str().unwrap().to_owned(),
                None => event["parsed"].to_string(),
            };
            assert_eq!(text, message, "the text is recoverable byte for byte");
        }
    }

    #[test]
    fn several_envelopes_in_one_record() {
        let (result, events) = run(&fixture("otel-contrib/cwlog/multiple_records"));
        assert_eq!(result.unwrap().events, events.len());
        assert!(events.len() >= 2);
        let (result, events) = run(&fixture(
            "otel-contrib/subscription-filter/multiple_json_objects.json",
        ));
        assert_eq!(result.unwrap().events, events.len());
        assert!(events.len() >= 2);
    }

    #[test]
    fn control_messages_are_counted_not_stored() {
        for name in [
            "otel-contrib/cwlog/only_control",
            "otel-contrib/subscription-filter/valid_cloudwatch_log_control.json",
        ] {
            let (result, events) = run(&fixture(name));
            assert_eq!(
                result,
                Ok(Decoded {
                    events: 0,
                    control_messages: 1
                }),
                "{name}"
            );
            assert!(events.is_empty());
        }
    }

    #[test]
    fn extracted_fields_give_account_and_region() {
        let (_, events) = run(&fixture("otel-contrib/cwlog/extracted_fields_both"));
        let aws = &events[0]["aws"];
        assert!(aws["account_id"].is_string());
        assert!(aws["region"].is_string());
    }

    #[test]
    fn cloudtrail_messages_are_parsed_and_marked() {
        let (_, events) = run(&fixture(
            "otel-contrib/cloudtraillog/cloudtrail_log_cw.json",
        ));
        assert!(!events.is_empty());
        for event in &events {
            assert_eq!(event["format"], "cloudtrail");
            assert!(event["parsed"]["eventName"].is_string());
            assert!(
                event["parsed"]["userIdentity"].is_object(),
                "parsed, not an escaped string"
            );
        }
    }

    #[test]
    fn vpc_flow_lines_are_split_into_fields() {
        let (_, events) = run(&fixture("otel-contrib/vpc-flow-log/valid_vpc_flow_cw.json"));
        assert!(!events.is_empty());
        for event in &events {
            assert_eq!(event["format"], "vpc_flow", "{event}");
            assert_eq!(event["parsed"]["version"], 2);
            assert!(event["parsed"]["interface-id"].is_string());
        }
    }

    #[test]
    fn ids_stay_strings_and_unknown_fields_are_tolerated() {
        let record = br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":[],"policyLevel":"ACCOUNT_LEVEL_POLICY","logEvents":[{"id":"36582947382759234987234987234987234987239847239847","timestamp":5,"message":"{\"a\":1}","newField":true}]}"#;
        let (result, events) = run(record);
        assert_eq!(result.unwrap().events, 1);
        assert_eq!(
            events[0]["aws"]["event_id"],
            "36582947382759234987234987234987234987239847239847"
        );
        assert_eq!(events[0]["format"], "json");
        assert_eq!(events[0]["parsed"]["a"], 1);
    }

    #[test]
    fn messages_are_classified() {
        let table: &[(&str, &str, Option<serde_json::Value>)] = &[
            ("plain words", "text", None),
            (
                r#"{"level":"warn","n":1}"#,
                "json",
                Some(serde_json::json!({"level": "warn", "n": 1})),
            ),
            (
                "{\n  \"level\": \"warn\"\n}",
                "json",
                Some(serde_json::json!({"level": "warn"})),
            ),
            (r#"{"not json"#, "text", None),
            (r#"[1,2]"#, "text", None),
        ];
        for (message, format, parsed) in table {
            let (got_format, got_parsed) = classify_message(message, None);
            assert_eq!(got_format, *format, "{message}");
            let got_parsed = got_parsed.map(|parsed| serde_json::to_value(&parsed).unwrap());
            assert_eq!(&got_parsed, parsed, "{message}");
        }
    }

    #[test]
    fn malformed_records_are_errors() {
        let table: &[&[u8]] = &[
            b"",
            b"   ",
            b"not json",
            br#"{"messageType":"SOMETHING_ELSE"}"#,
            br#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","message":"no timestamp"}]}"#,
            br#"{"messageType":"DATA_MESSAGE","logEvents":[]} trailing"#,
        ];
        for bytes in table {
            assert!(run(bytes).0.is_err(), "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn message_lines_become_log_events() {
        let mut writer = EventWriter::new(&Delivery::default(), 0);
        let count = decode_messages(
            b"first line\r\n{\"level\":\"warn\"}\n\nthird\n",
            0,
            99,
            &mut writer,
            None,
        )
        .unwrap();
        assert_eq!(count, 3);
        let lines = writer.finish().concat();
        let events = parse_lines(&lines);
        assert_eq!(events[0]["message"], "first line");
        assert_eq!(events[0]["timestamp"], 99);
        assert!(events[0]["aws"]["log_group"].is_null());
        assert_eq!(events[1]["format"], "json");
        assert_eq!(events[2]["message"], "third");
    }
}
