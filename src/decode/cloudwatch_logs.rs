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
//! once more: a JSON object is kept as `parsed`, exactly as logged (and marked
//! `cloudtrail` when it is a CloudTrail record), a VPC flow log line is split into its
//! fields.
//!
//! With Firehose's *message extraction* option, records hold only the messages, one
//! per line, with no envelope: [`decode_messages`] handles that form.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{cloudtrail, json, vpc_flow};
use crate::event::{AwsHead, EventWriter, Facts, LogEvent, LogSource, Parsed};

const DATA_MESSAGE: &str = "DATA_MESSAGE";
const CONTROL_MESSAGE: &str = "CONTROL_MESSAGE";

/// Longest log group name CloudWatch Logs allows (1–512 characters,
/// `CreateLogGroup`). The name goes into every event of its envelope.
pub const MAX_LOG_GROUP_CHARS: usize = 512;
/// Longest log stream name CloudWatch Logs allows (1–512 characters,
/// `CreateLogStream`).
pub const MAX_LOG_STREAM_CHARS: usize = 512;
/// Longest subscription filter name (1–512 characters, `PutSubscriptionFilter`).
pub const MAX_FILTER_NAME_CHARS: usize = 512;
/// Most subscription filter names in one envelope. A log group has at most two
/// subscription filters and an account-level policy may add one; 8 leaves room.
pub const MAX_FILTERS: usize = 8;
/// Longest owner (a 12-digit account id) or extracted account or region accepted.
pub const MAX_ACCOUNT_OR_REGION_CHARS: usize = 64;

/// What one record held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Log events written.
    pub events: usize,
    /// Control messages seen (and not stored).
    pub control_messages: usize,
}

/// An envelope's fields but its events: what every one of its events carries.
#[derive(Default)]
struct Head<'a> {
    message_type: Option<Cow<'a, str>>,
    owner: Option<Cow<'a, str>>,
    log_group: Option<Cow<'a, str>>,
    log_stream: Option<Cow<'a, str>>,
    subscription_filters: Option<Vec<Cow<'a, str>>>,
}

impl Head<'_> {
    /// Whether every field an event carries has been read.
    fn is_complete(&self) -> bool {
        self.message_type.is_some()
            && self.owner.is_some()
            && self.log_group.is_some()
            && self.log_stream.is_some()
            && self.subscription_filters.is_some()
    }

    fn filters(&self) -> &[Cow<'_, str>] {
        self.subscription_filters.as_deref().unwrap_or_default()
    }
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
/// Events are written as they are parsed, never gathered first: a record of a few
/// megabytes can hold hundreds of thousands of tiny events, and a list of them
/// would take several times the record's size. CloudWatch writes `logEvents`
/// after the fields every event carries, so one pass does; when some of those
/// fields come after the events (an envelope re-serialised with sorted keys), the
/// events' text is kept aside (borrowed, not copied) and read once the envelope is
/// done.
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
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let invalid = |error: serde_json::Error| format!("invalid CloudWatch Logs envelope: {error}");
    let mut any = false;
    // Envelopes may follow each other, with or without whitespace between them.
    while deserializer.end().is_err() {
        any = true;
        let seed = EnvelopeSeed {
            record_index,
            writer: &mut *writer,
            vpc_fields,
        };
        match seed.deserialize(&mut deserializer) {
            Ok(Envelope::Data { events }) => decoded.events += events,
            Ok(Envelope::Control) => decoded.control_messages += 1,
            Err(error) => {
                let text = error.to_string();
                // Problems found by this module are already worded for the sender.
                return Err(match text.strip_prefix(OWN_ERROR) {
                    Some(own) => own.split(" at line ").next().unwrap_or(own).to_owned(),
                    None => invalid(error),
                });
            }
        }
        if writer.is_stopped() {
            // Past the delivery's budget nothing more is written.
            break;
        }
    }
    if !any {
        return Err("empty record: no CloudWatch Logs envelope".into());
    }
    Ok(decoded)
}

/// Marks an error message as this module's own (not serde's), so that it reaches
/// the dead letter as written.
const OWN_ERROR: &str = "hydrant: ";

fn own_error<E: de::Error>(message: impl std::fmt::Display) -> E {
    E::custom(format_args!("{OWN_ERROR}{message}"))
}

/// What one envelope was.
enum Envelope {
    Data { events: usize },
    Control,
}

/// Reads one envelope, writing its events.
struct EnvelopeSeed<'w, 'v> {
    record_index: usize,
    writer: &'w mut EventWriter,
    vpc_fields: Option<&'v [String]>,
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_, '_> {
    type Value = Envelope;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Envelope, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_, '_> {
    type Value = Envelope;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a CloudWatch Logs subscription envelope (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        fn text<'de, A: MapAccess<'de>>(
            map: &mut A,
            slot: &mut Option<Cow<'de, str>>,
            name: &'static str,
        ) -> Result<(), A::Error> {
            if slot.is_some() {
                return Err(de::Error::duplicate_field(name));
            }
            *slot = Some(map.next_value::<Text<'de>>()?.0);
            Ok(())
        }
        let mut head = Head::default();
        let mut events = None;
        let mut deferred: Option<&'de RawValue> = None;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match key.0.as_ref() {
                "messageType" => text(&mut map, &mut head.message_type, "messageType")?,
                "owner" => text(&mut map, &mut head.owner, "owner")?,
                "logGroup" => text(&mut map, &mut head.log_group, "logGroup")?,
                "logStream" => text(&mut map, &mut head.log_stream, "logStream")?,
                "subscriptionFilters" => {
                    if head.subscription_filters.is_some() {
                        return Err(de::Error::duplicate_field("subscriptionFilters"));
                    }
                    let filters: Vec<Text<'de>> = map.next_value()?;
                    head.subscription_filters = Some(filters.into_iter().map(|f| f.0).collect());
                }
                "logEvents" => {
                    if events.is_some() || deferred.is_some() {
                        return Err(de::Error::duplicate_field("logEvents"));
                    }
                    if head.is_complete() && is_data(&head) {
                        // CloudWatch's own order: everything the events carry is known.
                        let seed = EventsSeed::new(
                            &head,
                            self.record_index,
                            self.vpc_fields,
                            &mut *self.writer,
                        )?;
                        events = Some(map.next_value_seed(seed)?);
                    } else {
                        deferred = Some(map.next_value()?);
                    }
                }
                // Unknown fields (`policyLevel`, future ones) are ignored.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let message_type = head
            .message_type
            .as_deref()
            .ok_or_else(|| de::Error::missing_field("messageType"))?;
        match message_type {
            DATA_MESSAGE => {}
            CONTROL_MESSAGE => return Ok(Envelope::Control),
            other => {
                return Err(own_error(format_args!(
                    "unknown CloudWatch Logs messageType {other:?}"
                )));
            }
        }
        let events = match (events, deferred) {
            (Some(events), _) => events,
            (None, Some(raw)) => {
                let seed =
                    EventsSeed::new(&head, self.record_index, self.vpc_fields, &mut *self.writer)?;
                let mut inner = serde_json::Deserializer::from_str(raw.get());
                seed.deserialize(&mut inner).map_err(de::Error::custom)?
            }
            // A data message without events holds nothing to store.
            (None, None) => 0,
        };
        Ok(Envelope::Data { events })
    }
}

fn is_data(head: &Head<'_>) -> bool {
    head.message_type.as_deref() == Some(DATA_MESSAGE)
}

/// A string that borrows from the record when it holds no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// Reads an envelope's `logEvents`, writing each event as soon as it is parsed.
struct EventsSeed<'h, 'w, 'v> {
    head: &'h Head<'h>,
    aws: AwsHead,
    record_index: usize,
    vpc_fields: Option<&'v [String]>,
    writer: &'w mut EventWriter,
}

impl<'h, 'w, 'v> EventsSeed<'h, 'w, 'v> {
    fn new<E: de::Error>(
        head: &'h Head<'h>,
        record_index: usize,
        vpc_fields: Option<&'v [String]>,
        writer: &'w mut EventWriter,
    ) -> Result<Self, E> {
        check_sizes(head).map_err(own_error)?;
        Ok(Self {
            aws: AwsHead::new(&source(head, None)),
            head,
            record_index,
            vpc_fields,
            writer,
        })
    }
}

impl<'de> DeserializeSeed<'de> for EventsSeed<'_, '_, '_> {
    type Value = usize;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventsSeed<'_, '_, '_> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of log events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while let Some(event) = seq.next_element::<InputEvent<'de>>()? {
            if self.writer.is_stopped() {
                // Past the delivery's budget nothing more is written; the rest is
                // still read, so the record stays valid JSON to the end.
                continue;
            }
            write_event(
                self.head,
                &self.aws,
                &event,
                self.record_index,
                self.writer,
                self.vpc_fields,
            );
            count += 1;
        }
        Ok(count)
    }
}

/// Refuses an envelope whose names are longer than CloudWatch Logs allows: each is
/// copied into every one of its events, so a short record with a huge name and many
/// empty events would otherwise decode into gigabytes.
fn check_sizes(head: &Head<'_>) -> Result<(), String> {
    let too_long = |what: &str, text: Option<&str>, max: usize| match text {
        Some(text) if text.chars().count() > max => Err(format!(
            "{what} is longer than {max} characters, the CloudWatch Logs limit"
        )),
        _ => Ok(()),
    };
    too_long("logGroup", head.log_group.as_deref(), MAX_LOG_GROUP_CHARS)?;
    too_long(
        "logStream",
        head.log_stream.as_deref(),
        MAX_LOG_STREAM_CHARS,
    )?;
    too_long("owner", head.owner.as_deref(), MAX_ACCOUNT_OR_REGION_CHARS)?;
    let filters = head.filters();
    if filters.len() > MAX_FILTERS {
        return Err(format!(
            "more than {MAX_FILTERS} subscriptionFilters ({})",
            filters.len()
        ));
    }
    for filter in filters {
        too_long(
            "a subscription filter name",
            Some(filter),
            MAX_FILTER_NAME_CHARS,
        )?;
    }
    Ok(())
}

/// The `aws` object of an envelope's events, with what an event's extracted
/// fields say of its account and region.
fn source<'a>(
    head: &'a Head<'_>,
    extracted: Option<&'a serde_json::Map<String, Value>>,
) -> LogSource<'a> {
    // An extracted value longer than an account id or region name is not one.
    let extracted = |name: &str| {
        extracted
            .and_then(|fields| fields.get(name))
            .and_then(Value::as_str)
            .filter(|value| value.len() <= MAX_ACCOUNT_OR_REGION_CHARS)
    };
    LogSource {
        account_id: extracted("@aws.account").or(head.owner.as_deref()),
        region: extracted("@aws.region"),
        log_group: head.log_group.as_deref(),
        log_stream: head.log_stream.as_deref(),
        subscription_filters: head.filters(),
    }
}

fn write_event(
    head: &Head<'_>,
    aws: &AwsHead,
    event: &InputEvent<'_>,
    record_index: usize,
    writer: &mut EventWriter,
    vpc_fields: Option<&[String]>,
) {
    // Account-level subscriptions name each event's account and region.
    let own_head = event
        .extracted_fields
        .as_ref()
        .map(|fields| AwsHead::new(&source(head, Some(fields))));
    let (format, parsed) = classify_message(&event.message, vpc_fields);
    let facts = Facts {
        format: Some(format),
        log_group: head.log_group.as_deref(),
        ..Facts::default()
    };
    let log = LogEvent {
        timestamp: event.timestamp,
        message: &event.message,
        format,
        parsed,
        aws: own_head.as_ref().unwrap_or(aws),
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
        // Kept as logged; on one line only if it spanned lines (pretty-printed
        // JSON), which also keeps `message` (see `LogEvent::message_is_parsed`).
        && let Some(parsed) = json::one_line(raw)
    {
        let format = if cloudtrail::is_cloudtrail_json(raw.get()) {
            "cloudtrail"
        } else {
            "json"
        };
        return (format, Some(Parsed::Json(parsed)));
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

    /// Names past CloudWatch's limits make the record bad; at the limits it decodes.
    #[test]
    fn envelope_names_are_held_to_cloudwatch_limits() {
        let envelope = |group: &str, stream: &str, filters: Vec<String>| {
            serde_json::json!({
                "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": group,
                "logStream": stream, "subscriptionFilters": filters,
                "logEvents": [{"id": "1", "timestamp": 1, "message": ""}],
            })
            .to_string()
        };
        let at_limit = envelope(
            &"g".repeat(MAX_LOG_GROUP_CHARS),
            &"é".repeat(MAX_LOG_STREAM_CHARS),
            vec!["f".repeat(MAX_FILTER_NAME_CHARS); MAX_FILTERS],
        );
        assert_eq!(run(at_limit.as_bytes()).0.map(|d| d.events), Ok(1));
        let table = [
            (
                "logGroup",
                envelope(&"g".repeat(MAX_LOG_GROUP_CHARS + 1), "s", vec![]),
            ),
            (
                "logStream",
                envelope("g", &"s".repeat(MAX_LOG_STREAM_CHARS + 1), vec![]),
            ),
            (
                "subscriptionFilters",
                envelope("g", "s", vec!["f".into(); MAX_FILTERS + 1]),
            ),
            (
                "subscription filter name",
                envelope("g", "s", vec!["f".repeat(MAX_FILTER_NAME_CHARS + 1)]),
            ),
        ];
        for (what, record) in table {
            let (result, events) = run(record.as_bytes());
            let error = result.unwrap_err();
            assert!(error.contains(what), "{what}: {error}");
            assert!(events.is_empty());
        }
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

    /// The same envelope gives the same lines whatever the order of its fields:
    /// CloudWatch's (events last, written as they are parsed) or sorted keys
    /// (events first, read once the envelope is done); back to back or not.
    #[test]
    fn field_order_does_not_change_the_events() {
        let input = r#"[{"id":"1","timestamp":5,"message":"one"},{"id":"2","timestamp":6,"message":"{\"a\":1}","extractedFields":{"@aws.region":"eu-west-1"}}]"#;
        let head = [
            r#""messageType":"DATA_MESSAGE""#,
            r#""owner":"123456789012""#,
            r#""logGroup":"/aws/lambda/a""#,
            r#""logStream":"s""#,
            r#""subscriptionFilters":["f"]"#,
        ]
        .join(",");
        let cloudwatch = format!(r#"{{{head},"logEvents":{input},"policyLevel":"x"}}"#);
        let sorted = format!(
            r#"{{"logEvents":{input},"logGroup":"/aws/lambda/a","logStream":"s","messageType":"DATA_MESSAGE","owner":"123456789012","subscriptionFilters":["f"]}}"#
        );
        let middle = format!(
            r#"{{"messageType":"DATA_MESSAGE","owner":"123456789012","logEvents":{input},"logGroup":"/aws/lambda/a","logStream":"s","subscriptionFilters":["f"]}}"#
        );
        let (result, expected) = run(cloudwatch.as_bytes());
        assert_eq!(result.unwrap().events, 2);
        assert_eq!(expected[1]["aws"]["region"], "eu-west-1");
        assert_eq!(expected[0]["aws"]["log_group"], "/aws/lambda/a");
        for other in [&sorted, &middle] {
            let (result, events) = run(other.as_bytes());
            assert_eq!(result.unwrap().events, 2);
            assert_eq!(events, expected, "{other}");
        }
        let (result, events) = run(format!("{cloudwatch}{sorted}\n{middle}").as_bytes());
        assert_eq!(result.unwrap().events, 6);
        assert_eq!(events[4], expected[0]);
        // A field given twice is an error, as it was.
        let twice = format!(r#"{{{head},"logGroup":"again","logEvents":{input}}}"#);
        assert!(
            run(twice.as_bytes())
                .0
                .unwrap_err()
                .contains("duplicate field")
        );
        // A name past its limit is reported in either order.
        let long = format!(
            r#"{{"logEvents":{input},"logGroup":"{}","messageType":"DATA_MESSAGE"}}"#,
            "g".repeat(MAX_LOG_GROUP_CHARS + 1)
        );
        let error = run(long.as_bytes()).0.unwrap_err();
        assert!(error.starts_with("logGroup is longer than 512"), "{error}");
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

    /// Each message's format and `parsed`, as written: JSON exactly as logged (on
    /// one line if it spanned lines), never rebuilt from a value tree.
    #[test]
    fn messages_are_classified() {
        // (message, format, `parsed` as written)
        let table: &[(&str, &str, Option<&str>)] = &[
            ("plain words", "text", None),
            (
                r#"{"level":"warn","n":1}"#,
                "json",
                Some(r#"{"level":"warn","n":1}"#),
            ),
            (
                "{\n  \"level\": \"warn\"\n}",
                "json",
                Some(r#"{"level":"warn"}"#),
            ),
            (
                "{\n \"n\": 123456789012345678901234567890,\n \"m\": 18446744073709551616\n}",
                "json",
                Some(r#"{"n":123456789012345678901234567890,"m":18446744073709551616}"#),
            ),
            (
                "{\r\n\t\"x\": 0.1000000000000000055511151231257827,\r\n\t\"b\": 1e400,\r\n\t\"b\": -0.0e-7\r\n}",
                "json",
                Some(r#"{"x":0.1000000000000000055511151231257827,"b":1e400,"b":-0.0e-7}"#),
            ),
            (
                r#" {"b": 1e400, "a": 2, "a": 3} "#,
                "json",
                Some(r#"{"b": 1e400, "a": 2, "a": 3}"#),
            ),
            (
                "{\"eventVersion\": \"1.08\",\n \"eventSource\": \"s3.amazonaws.com\",\n \"eventName\": \"GetObject\",\n \"eventTime\": \"2024-01-01T00:00:00Z\", \"n\": 1e400}",
                "cloudtrail",
                Some(
                    r#"{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"GetObject","eventTime":"2024-01-01T00:00:00Z","n":1e400}"#,
                ),
            ),
            (r#"{"not json"#, "text", None),
            (r#"[1,2]"#, "text", None),
        ];
        for &(message, format, parsed) in table {
            let (got_format, got_parsed) = classify_message(message, None);
            assert_eq!(got_format, format, "{message}");
            let mut writer = EventWriter::new(&Delivery::default(), 0);
            let log = LogEvent {
                timestamp: 0,
                message,
                format: got_format,
                parsed: got_parsed,
                aws: AwsHead::none(),
                event_id: None,
            };
            let keeps_message = !log.message_is_parsed();
            writer.log(0, Facts::default(), &log);
            let line = String::from_utf8(writer.finish().concat()).unwrap();
            let written = line.find(r#","parsed":"#).map(|start| {
                let start = start + r#","parsed":"#.len();
                &line[start..line.rfind(r#","aws":"#).unwrap()]
            });
            assert_eq!(written, parsed, "{message}");
            assert_eq!(
                keeps_message,
                parsed != Some(message),
                "`message` is kept unless `parsed` is its exact text: {message}"
            );
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
