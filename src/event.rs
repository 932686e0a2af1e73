//! Events: what Hydrant makes of each record, and how they are written as NDJSON.
//!
//! Every event is one JSON object on one line. The shape is documented for users in
//! `docs/events.md`; keep the two in step. Each event carries a `firehose` object with
//! the facts of the delivery it came in. Those facts are the same for every event of a
//! request, so [`EventWriter`] serialises them once per request and splices the bytes
//! into each line instead of serialising them again per record.

use std::io::Write;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::server::contract::CommonAttributes;

/// The facts of one delivery, shared by all of its events (the `firehose` object).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delivery {
    /// The Firehose request id (stable across Firehose's retries of a batch).
    pub request_id: String,
    /// When Firehose built the request, ms since the epoch (body `timestamp`).
    pub timestamp: i64,
    /// When Hydrant received the request, ms since the epoch.
    pub received_at: u64,
    /// The `X-Amz-Firehose-Source-Arn` header, when sent.
    pub source_arn: Option<String>,
    /// Delivery stream name, from the source ARN.
    pub delivery_stream: Option<String>,
    /// AWS region, from the source ARN.
    pub region: Option<String>,
    /// AWS account id, from the source ARN.
    pub account_id: Option<String>,
    /// Name of the access key that authenticated the request (never the key itself);
    /// `None` when authentication is off.
    pub access_key_name: Option<String>,
    /// URL path the request was sent to (without the query string).
    pub path: String,
    /// The stream's common attributes (`X-Amz-Firehose-Common-Attributes`).
    pub common_attributes: CommonAttributes,
}

/// `format` of a raw record event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// The record is one JSON object or array.
    Json,
    /// The record is UTF-8 text that is not a JSON object or array.
    Text,
    /// Anything else; `data` holds the bytes in base64.
    Binary,
}

impl RecordFormat {
    /// The name written in the event's `format` field.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
            Self::Binary => "binary",
        }
    }
}

/// The `data` of a raw record event.
#[derive(Debug)]
pub enum RecordData<'a> {
    /// A JSON object or array whose text has no line breaks, written as it came.
    Json(&'a RawValue),
    /// A JSON object or array that had to be re-serialised to fit on one line.
    JsonValue(serde_json::Value),
    /// UTF-8 text.
    Text(&'a str),
    /// Binary data, already in standard base64 (the record's text as Firehose sent it).
    Binary(&'a str),
}

impl RecordData<'_> {
    /// The `format` this data is written with.
    #[must_use]
    pub fn format(&self) -> RecordFormat {
        match self {
            Self::Json(_) | Self::JsonValue(_) => RecordFormat::Json,
            Self::Text(_) => RecordFormat::Text,
            Self::Binary(_) => RecordFormat::Binary,
        }
    }
}

/// Writes the events of one request as NDJSON lines into one buffer.
#[derive(Debug)]
pub struct EventWriter {
    /// `"request_id":…,…}`: the `firehose` object without its opening brace and
    /// without `record_index`, which differs per event and is written first.
    firehose_tail: Vec<u8>,
    lines: Vec<u8>,
    events: usize,
}

impl EventWriter {
    /// Starts the events of `delivery`, reserving `capacity_hint` bytes.
    #[must_use]
    pub fn new(delivery: &Delivery, capacity_hint: usize) -> Self {
        let object = serde_json::to_vec(delivery).unwrap_or_else(|_| b"{}".to_vec());
        Self {
            firehose_tail: object[1..].to_vec(),
            lines: Vec::with_capacity(capacity_hint),
            events: 0,
        }
    }

    /// Appends one `record` event.
    pub fn record(&mut self, record_index: usize, data: &RecordData<'_>) {
        let out = &mut self.lines;
        out.extend_from_slice(br#"{"kind":"record","format":""#);
        out.extend_from_slice(data.format().as_str().as_bytes());
        out.extend_from_slice(br#"","data":"#);
        match data {
            RecordData::Json(raw) => out.extend_from_slice(raw.get().as_bytes()),
            RecordData::JsonValue(value) => write_json(out, value),
            RecordData::Text(text) => write_json(out, text),
            RecordData::Binary(base64) => {
                // Standard base64 needs no JSON escaping.
                out.push(b'"');
                out.extend_from_slice(base64.as_bytes());
                out.push(b'"');
            }
        }
        // Writing into a Vec cannot fail.
        let _ = write!(out, r#","firehose":{{"record_index":{record_index},"#);
        out.extend_from_slice(&self.firehose_tail);
        out.extend_from_slice(b"}\n");
        self.events += 1;
    }

    /// Number of events written so far.
    #[must_use]
    pub fn events(&self) -> usize {
        self.events
    }

    /// The NDJSON lines and how many events they hold.
    #[must_use]
    pub fn finish(self) -> (Vec<u8>, usize) {
        (self.lines, self.events)
    }
}

fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serialising a `Value` or a `str` into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        let mut common_attributes = CommonAttributes::new();
        common_attributes.insert("env".into(), "prod".into());
        Delivery {
            request_id: "req-1".into(),
            timestamp: 1_700_000_000_000,
            received_at: 1_700_000_000_500,
            source_arn: Some("arn:aws:firehose:eu-west-1:123456789012:deliverystream/s".into()),
            delivery_stream: Some("s".into()),
            region: Some("eu-west-1".into()),
            account_id: Some("123456789012".into()),
            access_key_name: Some("prod".into()),
            path: "/logs".into(),
            common_attributes,
        }
    }

    fn lines(writer: EventWriter) -> Vec<serde_json::Value> {
        let (bytes, _) = writer.finish();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.ends_with('\n'));
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn writes_one_line_per_event_with_the_firehose_object() {
        let mut writer = EventWriter::new(&delivery(), 0);
        let raw: Box<RawValue> = serde_json::from_str(r#"{"a":[1,2]}"#).unwrap();
        writer.record(0, &RecordData::Json(&raw));
        writer.record(1, &RecordData::Text("line \"one\"\nline two"));
        writer.record(2, &RecordData::Binary("AAEC"));
        writer.record(3, &RecordData::JsonValue(serde_json::json!([true])));
        assert_eq!(writer.events(), 4);
        let events = lines(writer);
        assert_eq!(events.len(), 4);
        assert_eq!(events[0]["kind"], "record");
        assert_eq!(events[0]["format"], "json");
        assert_eq!(events[0]["data"], serde_json::json!({"a": [1, 2]}));
        assert_eq!(events[1]["format"], "text");
        assert_eq!(events[1]["data"], "line \"one\"\nline two");
        assert_eq!(events[2]["format"], "binary");
        assert_eq!(events[2]["data"], "AAEC");
        assert_eq!(events[3]["data"], serde_json::json!([true]));
        for (index, event) in events.iter().enumerate() {
            let firehose = &event["firehose"];
            assert_eq!(firehose["record_index"], index);
            assert_eq!(firehose["request_id"], "req-1");
            assert_eq!(firehose["timestamp"], 1_700_000_000_000_i64);
            assert_eq!(firehose["received_at"], 1_700_000_000_500_u64);
            assert_eq!(firehose["delivery_stream"], "s");
            assert_eq!(firehose["region"], "eu-west-1");
            assert_eq!(firehose["account_id"], "123456789012");
            assert_eq!(firehose["access_key_name"], "prod");
            assert_eq!(firehose["path"], "/logs");
            assert_eq!(firehose["common_attributes"]["env"], "prod");
        }
    }

    #[test]
    fn absent_facts_are_null() {
        let mut writer = EventWriter::new(&Delivery::default(), 0);
        writer.record(0, &RecordData::Text(""));
        let event = &lines(writer)[0];
        assert!(event["firehose"]["source_arn"].is_null());
        assert!(event["firehose"]["access_key_name"].is_null());
        assert_eq!(
            event["firehose"]["common_attributes"],
            serde_json::json!({})
        );
    }
}
