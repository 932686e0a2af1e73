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

use super::{RecordCx, RecordError, cloudtrail, json, vpc_flow};
use crate::event::{AwsHead, EventFormat, Facts, LogEvent, LogSource, Parsed};

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
pub struct Envelopes {
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

/// Writes the log events of every envelope in `bytes`, and counts its control
/// messages in the context's stats once the whole record has decoded.
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
/// The first problem: not JSON, not an envelope, an unknown `messageType`, names
/// past CloudWatch's limits. The caller discards whatever this record had written.
pub fn decode(bytes: &[u8], cx: &mut RecordCx<'_>) -> Result<Envelopes, RecordError> {
    let mut decoded = Envelopes::default();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let mut refused = None;
    let mut any = false;
    // Envelopes may follow each other, with or without whitespace between them.
    while deserializer.end().is_err() {
        any = true;
        let seed = EnvelopeSeed {
            cx: &mut *cx,
            refused: &mut refused,
        };
        match seed.deserialize(&mut deserializer) {
            Ok(Envelope::Data { events }) => decoded.events += events,
            Ok(Envelope::Control) => decoded.control_messages += 1,
            Err(error) => {
                // A refusal of this module's own stopped the parse: it is the reason.
                return Err(refused.unwrap_or_else(|| RecordError::Envelope {
                    detail: error.to_string(),
                }));
            }
        }
        if cx.writer.is_stopped() {
            // Past the delivery's budget nothing more is written.
            break;
        }
    }
    if !any {
        return Err(RecordError::NoEnvelope);
    }
    cx.stats.control_messages += decoded.control_messages;
    Ok(decoded)
}

/// Stops the parse for `refusal`, which is kept in `slot` for [`decode`] to
/// return: serde's errors carry text only.
fn refuse<E: de::Error>(slot: &mut Option<RecordError>, refusal: RecordError) -> E {
    let error = E::custom(&refusal);
    *slot = Some(refusal);
    error
}

/// What one envelope was.
enum Envelope {
    Data { events: usize },
    Control,
}

/// Reads one envelope, writing its events.
struct EnvelopeSeed<'c, 'a> {
    cx: &'c mut RecordCx<'a>,
    /// Where a refusal of this module's own is kept.
    refused: &'c mut Option<RecordError>,
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
                        let seed = EventsSeed::new(&head, &mut *self.cx, &mut *self.refused)?;
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
                let refusal = RecordError::UnknownMessageType(other.to_owned());
                return Err(refuse(self.refused, refusal));
            }
        }
        let events = match (events, deferred) {
            (Some(events), _) => events,
            (None, Some(raw)) => {
                let seed = EventsSeed::new(&head, &mut *self.cx, &mut *self.refused)?;
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
struct EventsSeed<'h, 'c, 'a> {
    head: &'h Head<'h>,
    aws: AwsHead,
    cx: &'c mut RecordCx<'a>,
}

impl<'h, 'c, 'a> EventsSeed<'h, 'c, 'a> {
    fn new<E: de::Error>(
        head: &'h Head<'h>,
        cx: &'c mut RecordCx<'a>,
        refused: &mut Option<RecordError>,
    ) -> Result<Self, E> {
        check_sizes(head).map_err(|refusal| refuse(refused, refusal))?;
        Ok(Self {
            aws: AwsHead::new(&source(head, None)),
            head,
            cx,
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
            if self.cx.writer.is_stopped() {
                // Past the delivery's budget nothing more is written; the rest is
                // still read, so the record stays valid JSON to the end.
                continue;
            }
            write_event(self.head, &self.aws, &event, self.cx);
            count += 1;
        }
        Ok(count)
    }
}

/// Refuses an envelope whose names are longer than CloudWatch Logs allows: each is
/// copied into every one of its events, so a short record with a huge name and many
/// empty events would otherwise decode into gigabytes.
fn check_sizes(head: &Head<'_>) -> Result<(), RecordError> {
    let too_long = |what: &'static str, text: Option<&str>, max: usize| match text {
        Some(text) if text.chars().count() > max => Err(RecordError::NameTooLong { what, max }),
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
        return Err(RecordError::TooManyFilters {
            count: filters.len(),
            max: MAX_FILTERS,
        });
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

fn write_event(head: &Head<'_>, aws: &AwsHead, event: &InputEvent<'_>, cx: &mut RecordCx<'_>) {
    // Account-level subscriptions name each event's account and region.
    let own_head = event
        .extracted_fields
        .as_ref()
        .map(|fields| AwsHead::new(&source(head, Some(fields))));
    let (format, parsed) = classify_message(&event.message, cx.settings.vpc_fields);
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
    cx.writer.log(cx.index, facts, &log);
}

/// Writes one `log` event per non-empty line of a record produced with Firehose's
/// message extraction (messages only, no envelope). Such lines carry no time of
/// their own, so they get the request's `timestamp`.
///
/// # Errors
///
/// When the record is not UTF-8.
pub fn decode_messages(bytes: &[u8], cx: &mut RecordCx<'_>) -> Result<usize, RecordError> {
    let text = std::str::from_utf8(bytes).map_err(RecordError::MessagesNotUtf8)?;
    let mut events = 0;
    for line in text.split('\n').map(|line| line.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        let (format, parsed) = classify_message(line, cx.settings.vpc_fields);
        let log = LogEvent {
            timestamp: cx.settings.timestamp,
            message: line,
            format,
            parsed,
            aws: AwsHead::none(),
            event_id: None,
        };
        cx.writer.log(
            cx.index,
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
) -> (EventFormat, Option<Parsed<'a>>) {
    let trimmed = message.trim();
    if trimmed.starts_with('{')
        && let Ok(raw) = serde_json::from_str::<&RawValue>(trimmed)
        // Kept as logged; on one line only if it spanned lines (pretty-printed
        // JSON), which also keeps `message` (see `LogEvent::message_is_parsed`).
        && let Some(parsed) = json::one_line(raw)
    {
        let format = if cloudtrail::is_cloudtrail_json(raw.get()) {
            EventFormat::Cloudtrail
        } else {
            EventFormat::Json
        };
        return (format, Some(Parsed::Json(parsed)));
    }
    if let Some(fields) = vpc_flow::parse(trimmed, vpc_fields) {
        return (
            EventFormat::VpcFlow,
            Some(Parsed::Value(Value::Object(fields))),
        );
    }
    (EventFormat::Text, None)
}

#[cfg(test)]
mod tests;
