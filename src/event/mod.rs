//! Events: what Hydrant makes of each record, and how they are written as NDJSON.
//!
//! Every event is one JSON object on one line. The shape is documented for users in
//! `docs/events.md`; keep the two in step. Each event carries a `firehose` object with
//! the facts of the delivery it came in. Those facts are the same for every event of a
//! request, so [`EventWriter`] serialises them once per request and splices the bytes
//! into each line instead of serialising them again per record.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub mod lines;
pub mod names;

use crate::limits::DecodeBudget;
use lines::{CHUNK_BYTES, EventLines, EventMeta, LineChunk, SinkSet};
pub use names::{EventFormat, Kind};

/// The stream's common attributes, in key order.
pub type CommonAttributes = serde_json::Map<String, serde_json::Value>;

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

/// One CloudWatch metric data point (`kind: "metric"`), from Metric Streams in JSON
/// or OpenTelemetry format. Both decoders produce exactly this shape. It reads back
/// from its own event line (other keys of the line, `kind` and `firehose`, are
/// skipped), for the sinks that work on metric values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// The data point's time as CloudWatch stamps it, ms since the epoch.
    pub timestamp: i64,
    /// The metric stream's name.
    pub metric_stream_name: Option<String>,
    /// Account the metric belongs to.
    pub account_id: Option<String>,
    /// Region the metric belongs to.
    pub region: Option<String>,
    /// CloudWatch namespace, e.g. `AWS/EC2`.
    pub namespace: String,
    /// CloudWatch metric name, e.g. `CPUUtilization`.
    pub metric_name: String,
    /// Dimension name to value.
    pub dimensions: BTreeMap<String, String>,
    /// CloudWatch unit name, e.g. `Percent`, `Bytes/Second`.
    pub unit: Option<String>,
    /// Statistics by CloudWatch name: `count`, `sum`, `min`, `max`, then extra
    /// statistics such as `p99`, `p99.9`, `TM(10%:90%)`, `IQM`.
    pub value: Statistics,
}

/// A log event (`kind: "log"`): one CloudWatch Logs log event, or one message line.
/// Written by [`EventWriter::log`].
#[derive(Debug)]
pub struct LogEvent<'a> {
    /// When the event happened, ms since the epoch (CloudWatch's timestamp; for bare
    /// message lines, which carry none, the Firehose request's timestamp).
    pub timestamp: i64,
    /// The log message as written by the application. Left out of the line when
    /// `parsed` is the very same text (see [`LogEvent::message_is_parsed`]).
    pub message: &'a str,
    /// What the message is: `text`, `json`, `cloudtrail` or `vpc_flow`.
    pub format: EventFormat,
    /// The parsed message for every format but `text`.
    pub parsed: Option<Parsed<'a>>,
    /// Where CloudWatch Logs says the event comes from: the `aws` object but for
    /// its `event_id`, which follows.
    pub aws: &'a AwsHead,
    /// CloudWatch's id of the log event as it came (a JSON string token, or a bare
    /// number); `None` for bare message lines.
    pub event_id: Option<&'a str>,
}

/// A [`LogSource`] rendered once as the start of an `aws` object, up to and
/// including `"event_id":`. All events of an envelope (up to 10,000) share it; only
/// their ids differ.
#[derive(Debug)]
pub struct AwsHead(String);

impl AwsHead {
    /// Renders `source`.
    #[must_use]
    pub fn new(source: &LogSource<'_>) -> Self {
        let mut json = serde_json::to_string(source).unwrap_or_else(|_| "{}".into());
        json.pop(); // the closing brace
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str(r#""event_id":"#);
        Self(json)
    }

    /// The source of bare message lines and direct VPC flow logs: every field `null`.
    #[must_use]
    pub fn none() -> &'static Self {
        static NONE: std::sync::LazyLock<AwsHead> =
            std::sync::LazyLock::new(|| AwsHead::new(&LogSource::default()));
        &NONE
    }
}

impl LogEvent<'_> {
    /// Whether `parsed` is written byte for byte as the message was logged, so that
    /// writing `message` as well would store the same text twice (escaped, at that).
    /// True for single-line JSON messages without surrounding whitespace — nearly
    /// every JSON log line. Storage stays lossless: whenever the two differ in any
    /// byte, `message` is written.
    #[must_use]
    pub fn message_is_parsed(&self) -> bool {
        matches!(&self.parsed, Some(Parsed::Json(raw)) if raw.get() == self.message)
    }
}

/// A parsed log message.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Parsed<'a> {
    /// A JSON message, written exactly as logged: no parse tree is built, its
    /// strings are not escaped a second time, its numbers and keys are untouched.
    /// Borrowed when the message is on one line; owned when it spanned lines and had
    /// the whitespace between its tokens removed ([`crate::decode::json::one_line`]).
    Json(Cow<'a, RawValue>),
    /// VPC flow log fields by name.
    Value(serde_json::Value),
}

/// The CloudWatch Logs origin of a log event, but for its id (see [`AwsHead`]);
/// all `null` for bare message lines.
#[derive(Debug, Default, Serialize)]
pub struct LogSource<'a> {
    /// Account owning the log group (`owner`, or `@aws.account` for account-level
    /// subscriptions that extract it).
    pub account_id: Option<&'a str>,
    /// Region, when CloudWatch extracted it (`@aws.region`).
    pub region: Option<&'a str>,
    /// Log group name.
    pub log_group: Option<&'a str>,
    /// Log stream name.
    pub log_stream: Option<&'a str>,
    /// Subscription filters that matched.
    pub subscription_filters: &'a [std::borrow::Cow<'a, str>],
}

/// Statistic name to value, in the order given; serialised as a JSON object.
/// Non-finite values are written as `null` (JSON has no NaN or infinity).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Statistics(pub Vec<(String, f64)>);

impl Statistics {
    /// The value of statistic `name`, if present.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
    }
}

/// Reads the object [`Statistics`] is written as, in its order; a `null` (a value
/// that was not finite) is left out, as there is no number to give.
impl<'de> Deserialize<'de> for Statistics {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Statistics;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of statistic names to numbers")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Statistics, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((name, value)) = map.next_entry::<String, Option<f64>>()? {
                    if let Some(value) = value {
                        out.push((name, value));
                    }
                }
                Ok(Statistics(out))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl Serialize for Statistics {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
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
        EventFormat::from(self).as_str()
    }
}

impl From<RecordFormat> for EventFormat {
    fn from(format: RecordFormat) -> Self {
        match format {
            RecordFormat::Json => Self::Json,
            RecordFormat::Text => Self::Text,
            RecordFormat::Binary => Self::Binary,
        }
    }
}

/// The `data` of a raw record event.
#[derive(Debug)]
pub enum RecordData<'a> {
    /// A JSON object or array, written exactly as sent: borrowed when it is on one
    /// line; owned when it spanned lines and had the whitespace between its tokens
    /// removed ([`crate::decode::json::one_line`]).
    Json(Cow<'a, RawValue>),
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
            Self::Json(_) => RecordFormat::Json,
            Self::Text(_) => RecordFormat::Text,
            Self::Binary(_) => RecordFormat::Binary,
        }
    }
}

/// The facts of an event that routes and sink templates use, besides its kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The event's `format`.
    pub format: Option<EventFormat>,
    /// Log group of a `log` event.
    pub log_group: Option<&'a str>,
    /// Namespace of a `metric` event.
    pub namespace: Option<&'a str>,
    /// EventBridge source.
    pub source: Option<&'a str>,
    /// EventBridge detail-type.
    pub detail_type: Option<&'a str>,
}

/// Writes the events of one request as NDJSON lines into chunks of about
/// [`CHUNK_BYTES`], with one [`EventMeta`] per line; routing later splits them per
/// sink.
///
/// Every line and its metadata are counted against the delivery's
/// [`DecodeBudget`] as they are written. Once the budget stops, the line that
/// passed it is taken back and every later write does nothing, so the decoders
/// need no checks of their own; the caller learns why from the budget.
#[derive(Debug)]
pub struct EventWriter {
    budget: Arc<DecodeBudget>,
    /// `"request_id":…,…}`: the `firehose` object without its opening brace and
    /// without `record_index`, which differs per event and is written first.
    firehose_tail: Vec<u8>,
    /// Full chunks.
    sealed: Vec<LineChunk>,
    /// The chunk being written.
    lines: Vec<u8>,
    metas: Vec<EventMeta>,
    /// The last strings seen per fact, shared by consecutive events (all events of
    /// a CloudWatch envelope have the same log group), so each is allocated once.
    cache: [Option<Arc<str>>; 4],
}

impl EventWriter {
    /// Starts the events of `delivery`, reserving `capacity_hint` bytes, with no
    /// limit on what they may take.
    #[must_use]
    pub fn new(delivery: &Delivery, capacity_hint: usize) -> Self {
        Self::with_budget(delivery, capacity_hint, Arc::new(DecodeBudget::unlimited()))
    }

    /// Starts the events of `delivery`, counting them against `budget`.
    #[must_use]
    pub fn with_budget(
        delivery: &Delivery,
        capacity_hint: usize,
        budget: Arc<DecodeBudget>,
    ) -> Self {
        let object = serde_json::to_vec(delivery).unwrap_or_else(|_| b"{}".to_vec());
        Self {
            budget,
            firehose_tail: object[1..].to_vec(),
            sealed: Vec::new(),
            lines: Vec::with_capacity(capacity_hint.min(CHUNK_CAPACITY)),
            metas: Vec::new(),
            cache: Default::default(),
        }
    }

    /// Appends one `record` event.
    pub fn record(&mut self, record_index: usize, data: &RecordData<'_>) {
        if self.budget.stopped() {
            return;
        }
        let start = self.lines.len();
        let out = &mut self.lines;
        let format = EventFormat::from(data.format());
        start_line(out, Kind::Record);
        out.extend_from_slice(br#","format":""#);
        out.extend_from_slice(format.as_str().as_bytes());
        out.extend_from_slice(br#"","data":"#);
        match data {
            RecordData::Json(raw) => out.extend_from_slice(raw.get().as_bytes()),
            RecordData::Text(text) => write_json(out, text),
            RecordData::Binary(base64) => {
                // Standard base64 needs no JSON escaping.
                out.push(b'"');
                out.extend_from_slice(base64.as_bytes());
                out.push(b'"');
            }
        }
        self.end_line(
            start,
            record_index,
            Kind::Record,
            Facts {
                format: Some(format),
                ..Facts::default()
            },
        );
    }

    /// Appends one event of `kind` whose other fields are `body`'s (a struct or map
    /// that serialises as a JSON object).
    pub fn event<T: Serialize>(
        &mut self,
        record_index: usize,
        kind: Kind,
        facts: Facts<'_>,
        body: &T,
    ) {
        #[derive(Serialize)]
        struct Tagged<'a, T> {
            kind: Kind,
            #[serde(flatten)]
            body: &'a T,
        }
        if self.budget.stopped() {
            return;
        }
        let start = self.lines.len();
        if serde_json::to_writer(&mut self.lines, &Tagged { kind, body }).is_err() {
            // Only a map with non-string keys can fail; such a body is a bug.
            self.lines.truncate(start);
            return;
        }
        self.lines.pop(); // the closing brace
        self.end_line(start, record_index, kind, facts);
    }

    /// Appends one `log` event. Written by hand rather than through serde's
    /// `flatten`: this is the hottest line shape (CloudWatch Logs), and the generic
    /// path buffers and escapes more than it needs to.
    pub fn log(&mut self, record_index: usize, facts: Facts<'_>, log: &LogEvent<'_>) {
        if self.budget.stopped() {
            return;
        }
        let start = self.lines.len();
        let out = &mut self.lines;
        start_line(out, Kind::Log);
        out.extend_from_slice(br#","timestamp":"#);
        out.extend_from_slice(itoa::Buffer::new().format(log.timestamp).as_bytes());
        if !log.message_is_parsed() {
            out.extend_from_slice(br#","message":"#);
            write_json(out, log.message);
        }
        out.extend_from_slice(br#","format":""#);
        out.extend_from_slice(log.format.as_str().as_bytes());
        out.push(b'"');
        match &log.parsed {
            Some(Parsed::Json(raw)) => {
                out.extend_from_slice(br#","parsed":"#);
                out.extend_from_slice(raw.get().as_bytes());
            }
            Some(Parsed::Value(value)) => {
                out.extend_from_slice(br#","parsed":"#);
                write_json(out, value);
            }
            None => {}
        }
        out.extend_from_slice(br#","aws":"#);
        out.extend_from_slice(log.aws.0.as_bytes());
        match log.event_id {
            None => out.extend_from_slice(b"null"),
            // A JSON string token, escapes and all: valid as it is.
            Some(id) if id.starts_with('"') => out.extend_from_slice(id.as_bytes()),
            // A bare number: kept as text, digit for digit (it does not fit in a
            // double).
            Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
                out.push(b'"');
                out.extend_from_slice(id.as_bytes());
                out.push(b'"');
            }
            Some(id) => write_json(out, id),
        }
        out.push(b'}');
        self.end_line(start, record_index, Kind::Log, facts);
    }

    /// Appends one `metric` event.
    pub fn metric(&mut self, record_index: usize, metric: &Metric) {
        let facts = Facts {
            namespace: Some(&metric.namespace),
            ..Facts::default()
        };
        self.event(record_index, Kind::Metric, facts, metric);
    }

    /// Closes the line begun at `start` with the `firehose` object and records its
    /// metadata, or takes it back if the budget cannot afford it.
    fn end_line(&mut self, start: usize, record_index: usize, kind: Kind, facts: Facts<'_>) {
        // Writing into a Vec cannot fail.
        let _ = write!(
            self.lines,
            r#","firehose":{{"record_index":{record_index},"#
        );
        self.lines.extend_from_slice(&self.firehose_tail);
        self.lines.extend_from_slice(b"}\n");
        let cost = self.lines.len() - start + std::mem::size_of::<EventMeta>();
        if !self.budget.spend(cost as u64) {
            self.lines.truncate(start);
            return;
        }
        let record_index = u32::try_from(record_index).unwrap_or(u32::MAX);
        let event_index = match self.metas.last() {
            Some(last) if last.record_index == record_index => last.event_index + 1,
            _ => 0,
        };
        let [log_group, namespace, source, detail_type] = &mut self.cache;
        self.metas.push(EventMeta {
            end: self.lines.len(),
            record_index,
            event_index,
            kind: kind.as_str(),
            format: facts.format.map(EventFormat::as_str),
            log_group: shared(log_group, facts.log_group),
            namespace: shared(namespace, facts.namespace),
            source: shared(source, facts.source),
            detail_type: shared(detail_type, facts.detail_type),
            sinks: SinkSet::default(),
        });
    }

    /// Where the writer stands; with [`EventWriter::truncate`], lets a caller undo
    /// the events of a record that turned out to be bad. Called before each record,
    /// it is also where a full chunk is sealed, so a chunk holds whole records.
    pub fn mark(&mut self) -> (usize, usize) {
        if self.lines.len() >= CHUNK_BYTES {
            self.seal(CHUNK_CAPACITY);
        }
        (self.lines.len(), self.metas.len())
    }

    /// Closes the chunk being written and starts one of `capacity` bytes.
    fn seal(&mut self, capacity: usize) {
        let lines = std::mem::replace(&mut self.lines, Vec::with_capacity(capacity));
        let metas = std::mem::take(&mut self.metas);
        if !metas.is_empty() {
            self.sealed.push(LineChunk {
                bytes: lines.into(),
                metas,
            });
        }
    }

    /// Removes every event written after `mark`.
    pub fn truncate(&mut self, mark: (usize, usize)) {
        self.lines.truncate(mark.0);
        self.metas.truncate(mark.1);
    }

    /// Moves `other`'s events (written for the same delivery, of later records) to
    /// the end of this writer's, without copying them.
    pub fn append(&mut self, other: EventWriter) {
        self.seal(0);
        self.sealed.extend(other.sealed);
        self.lines = other.lines;
        self.metas = other.metas;
    }

    /// Makes room in the chunk being written for the lines (and their metadata)
    /// of `input` bytes of records, judging by what the `seen` bytes decoded so far
    /// made; at most a chunk's worth.
    pub fn reserve_scaled(&mut self, input: usize, seen: usize) {
        let lines = self.lines.len().saturating_mul(input) / seen.max(1);
        let lines = lines.min(CHUNK_CAPACITY);
        let metas = self.metas.len().saturating_mul(lines) / self.lines.len().max(1);
        self.lines.reserve(lines.saturating_sub(self.lines.len()));
        self.metas.reserve(metas.saturating_sub(self.metas.len()));
    }

    /// Whether the budget has stopped this delivery's decoding: further writes do
    /// nothing, so a decoder may as well stop reading its input.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.budget.stopped()
    }

    /// Number of events written so far.
    #[must_use]
    pub fn events(&self) -> usize {
        self.sealed
            .iter()
            .map(|chunk| chunk.metas.len())
            .sum::<usize>()
            + self.metas.len()
    }

    /// The NDJSON lines with their metadata.
    #[must_use]
    pub fn finish(mut self) -> EventLines {
        self.seal(0);
        EventLines {
            chunks: self.sealed,
        }
    }
}

/// Room made for a chunk: a full one plus the record that takes it past
/// [`CHUNK_BYTES`] (most records make well under a megabyte of lines).
const CHUNK_CAPACITY: usize = CHUNK_BYTES + CHUNK_BYTES / 4;

/// `value` as a shared string, reusing `cache` when it holds the same text.
fn shared(cache: &mut Option<Arc<str>>, value: Option<&str>) -> Option<Arc<str>> {
    let value = value?;
    match cache {
        Some(cached) if cached.as_ref() == value => Some(Arc::clone(cached)),
        _ => {
            let fresh: Arc<str> = Arc::from(value);
            *cache = Some(Arc::clone(&fresh));
            Some(fresh)
        }
    }
}

/// Opens an event's line with its `kind` member (`{"kind":"log"`), the first of
/// every line.
fn start_line(out: &mut Vec<u8>, kind: Kind) {
    out.extend_from_slice(br#"{"kind":""#);
    out.extend_from_slice(kind.as_str().as_bytes());
    out.push(b'"');
}

fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serialising a `Value` or a `str` into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests;
