//! Decoding: turning a delivery's base64 records into events.
//!
//! One file per payload format:
//! - [`cloudwatch_logs`]: CloudWatch Logs subscription envelopes → `log` events
//!   (and bare message lines from Firehose's message extraction);
//! - [`metric_json`], [`otel`]: CloudWatch Metric Streams (JSON, OpenTelemetry 0.7
//!   and 1.0) → `metric` events;
//! - [`eventbridge`]: EventBridge events → `record` events with lifted fields;
//! - [`cloudtrail`], [`vpc_flow`]: recognising and parsing what log messages hold;
//! - [`raw`]: anything else, as a `json`, `text` or `binary` record;
//! - [`json`]: keeping users' JSON exactly as sent, on one line.
//!
//! The format is fixed per URL path or delivery stream by [`DecoderRule`]s, or
//! sniffed (`auto`) in this order: gzip (inflated, size-capped) → CloudWatch Logs
//! envelope → Metric Streams JSON → EventBridge → OpenTelemetry → JSON → text →
//! binary. Each record is decoded whole or not at all: a record that fails leaves
//! no events behind, and goes to the dead-letter table with its reason and its
//! original data (or, with [`BadRecords::Reject`], fails the whole request).
//!
//! Every decoder takes a [`RecordCx`] (the record's index, the delivery's
//! [`RecordSettings`], the event writer and the run's [`Stats`]) and fails with a
//! [`RecordError`], whose text is the dead letter's reason. The record loop, the
//! dispatch by format and the sniffing are in `record.rs`; the split of a big
//! delivery over idle cores and the [`DecodePool`] that rations them are in
//! `parallel.rs`.

pub mod cloudtrail;
pub mod cloudwatch_logs;
mod error;
pub mod eventbridge;
pub mod json;
pub mod metric_json;
pub mod otel;
mod parallel;
pub mod raw;
mod record;
pub mod vpc_flow;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use crate::event::lines::EventLines;
use crate::event::{Delivery, EventFormat, EventWriter};
use crate::glob::Glob;
use crate::limits::DecodeBudget;

pub use error::{DecodeError, RecordError};
pub use parallel::{
    DecodePool, DecodeSlot, PARALLEL_DECODE_MIN_BYTES, PoolError, decode_records_in_parallel,
};

/// Default cap on one record's inflated size. CloudWatch Logs puts at most ~1 MiB of
/// log events in one subscription record (its `PutLogEvents` batch limit), so 16 MiB
/// leaves ample room while a gzip bomb inside a record stops there.
pub const DEFAULT_MAX_RECORD_INFLATED_BYTES: u64 = 16 * crate::limits::MIB;

/// How the records of a delivery are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Sniff each record (see the module documentation for the order).
    Auto,
    /// CloudWatch Logs subscription envelopes, gzip'd or not.
    CloudwatchLogs,
    /// Bare log messages, one per line (Firehose's message extraction).
    CloudwatchLogsMessages,
    /// Metric Streams, JSON format.
    MetricStreamJson,
    /// Metric Streams, OpenTelemetry 0.7.0 format.
    MetricStreamOtel07,
    /// Metric Streams, OpenTelemetry 1.0.0 format.
    MetricStreamOtel10,
    /// EventBridge events.
    Eventbridge,
    /// VPC flow log lines sent straight to Firehose (plain or `{"message": …}`).
    VpcFlow,
    /// Raw records, classified as json, text or binary.
    Raw,
}

impl Format {
    /// Every format, in the order configuration errors and `--help` list them.
    pub const ALL: [Self; 9] = [
        Self::Auto,
        Self::CloudwatchLogs,
        Self::CloudwatchLogsMessages,
        Self::MetricStreamJson,
        Self::MetricStreamOtel07,
        Self::MetricStreamOtel10,
        Self::Eventbridge,
        Self::VpcFlow,
        Self::Raw,
    ];

    /// The name written in configuration. A format that reads one payload format
    /// is named as the records it reads are counted and dead-lettered
    /// ([`EventFormat`]); `auto` and `raw` are configuration's own.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::CloudwatchLogs => EventFormat::CloudwatchLogs.as_str(),
            Self::CloudwatchLogsMessages => EventFormat::CloudwatchLogsMessages.as_str(),
            Self::MetricStreamJson => EventFormat::MetricStreamJson.as_str(),
            Self::MetricStreamOtel07 => EventFormat::MetricStreamOtel07.as_str(),
            Self::MetricStreamOtel10 => EventFormat::MetricStreamOtel10.as_str(),
            Self::Eventbridge => EventFormat::Eventbridge.as_str(),
            Self::VpcFlow => EventFormat::VpcFlow.as_str(),
            Self::Raw => "raw",
        }
    }
}

/// Every format name, as written in configuration.
pub const FORMAT_NAMES: [&str; 9] = {
    let mut names = [""; 9];
    let mut at = 0;
    while at < names.len() {
        names[at] = Format::ALL[at].as_str();
        at += 1;
    }
    names
};

impl FromStr for Format {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|format| format.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "unknown format {name:?}; expected one of {}",
                    FORMAT_NAMES.join(", ")
                )
            })
    }
}

/// What to do with a record that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadRecords {
    /// Store it in the dead-letter table with its reason; store and acknowledge the
    /// rest of the request.
    #[default]
    DeadLetter,
    /// Refuse the whole request with 400; nothing of it is stored.
    Reject,
}

impl FromStr for BadRecords {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "dead_letter" => Ok(Self::DeadLetter),
            "reject" => Ok(Self::Reject),
            _ => Err(format!(
                "unknown bad-record policy {name:?}; expected dead_letter or reject"
            )),
        }
    }
}

/// Fixes the format for deliveries to matching paths and/or streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderRule {
    /// Matches the URL path (glob); any path when `None`.
    pub path: Option<Glob>,
    /// Matches the delivery stream name from the source ARN (glob); any when `None`.
    pub delivery_stream: Option<Glob>,
    /// The format to use.
    pub format: Format,
    /// Field list of custom-format VPC flow logs for these deliveries.
    pub vpc_flow_fields: Option<Vec<String>>,
}

/// How deliveries are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeSettings {
    /// Rules, first match wins.
    pub rules: Vec<DecoderRule>,
    /// Format when no rule matches.
    pub default_format: Format,
    /// What to do with bad records.
    pub bad_records: BadRecords,
    /// Field list of custom-format VPC flow logs when no rule gives one (the default
    /// version-2 format is recognised without it).
    pub vpc_flow_fields: Option<Vec<String>>,
    /// Cap on one record's inflated size.
    pub max_record_inflated_bytes: u64,
}

impl Default for DecodeSettings {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default_format: Format::Auto,
            bad_records: BadRecords::default(),
            vpc_flow_fields: None,
            max_record_inflated_bytes: DEFAULT_MAX_RECORD_INFLATED_BYTES,
        }
    }
}

impl DecodeSettings {
    /// The format and VPC field list for a delivery to `path` from `stream`.
    #[must_use]
    pub fn choose(&self, path: &str, stream: Option<&str>) -> (Format, Option<&[String]>) {
        let rule = self.rules.iter().find(|rule| {
            rule.path.as_ref().is_none_or(|glob| glob.matches(path))
                && rule
                    .delivery_stream
                    .as_ref()
                    .is_none_or(|glob| stream.is_some_and(|stream| glob.matches(stream)))
        });
        match rule {
            Some(rule) => (
                rule.format,
                rule.vpc_flow_fields
                    .as_deref()
                    .or(self.vpc_flow_fields.as_deref()),
            ),
            None => (self.default_format, self.vpc_flow_fields.as_deref()),
        }
    }

    /// What every record of `delivery` is read with.
    #[must_use]
    pub fn for_delivery<'a>(&'a self, delivery: &Delivery) -> RecordSettings<'a> {
        let (format, vpc_fields) = self.choose(&delivery.path, delivery.delivery_stream.as_deref());
        RecordSettings {
            format,
            vpc_fields,
            max_inflated: self.max_record_inflated_bytes,
            timestamp: delivery.timestamp,
        }
    }
}

/// What stays the same for every record of a delivery.
#[derive(Debug, Clone, Copy)]
pub struct RecordSettings<'a> {
    /// The format its records are read as.
    pub format: Format,
    /// Field list of custom-format VPC flow logs (the default format without it).
    pub vpc_fields: Option<&'a [String]>,
    /// Cap on one record's inflated size.
    pub max_inflated: u64,
    /// The request's timestamp: the time of events that carry none of their own.
    pub timestamp: i64,
}

impl Default for RecordSettings<'_> {
    fn default() -> Self {
        Self {
            format: Format::Auto,
            vpc_fields: None,
            max_inflated: DEFAULT_MAX_RECORD_INFLATED_BYTES,
            timestamp: 0,
        }
    }
}

/// What decoding a run of records counted, besides the events it wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Sum of the records' decoded sizes (before any record-level inflation).
    pub record_bytes: usize,
    /// CloudWatch Logs control messages seen (accepted, not stored).
    pub control_messages: usize,
    /// Records decoded, by the format they turned out to be.
    pub formats: BTreeMap<EventFormat, u64>,
    /// The format each dead-lettered record was read as, in record order.
    pub dead_letter_formats: Vec<EventFormat>,
}

impl Stats {
    /// Adds `other`'s counts (of later records) to these.
    pub fn add(&mut self, other: Self) {
        self.record_bytes += other.record_bytes;
        self.control_messages += other.control_messages;
        self.dead_letter_formats.extend(other.dead_letter_formats);
        for (format, count) in other.formats {
            *self.formats.entry(format).or_default() += count;
        }
    }
}

/// One record being decoded: where it is in the request, what it is read with,
/// where its events go and what is counted. Every decoder takes one.
#[derive(Debug)]
pub struct RecordCx<'a> {
    /// Position of the record in the request.
    pub index: usize,
    /// What the delivery's records are read with.
    pub settings: RecordSettings<'a>,
    /// The delivery's events.
    pub writer: &'a mut EventWriter,
    /// The run's counts.
    pub stats: &'a mut Stats,
}

impl<'a> RecordCx<'a> {
    /// Record 0 of a delivery read with [`RecordSettings::default`].
    pub fn new(writer: &'a mut EventWriter, stats: &'a mut Stats) -> Self {
        Self {
            index: 0,
            settings: RecordSettings::default(),
            writer,
            stats,
        }
    }
}

/// The events of one request, as NDJSON lines ready to be routed to sinks.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One event per line, each line ending in `\n`.
    pub events: EventLines,
    /// Dead-letter entries, one per bad record.
    pub dead_letters: EventLines,
    /// The format each dead-lettered record was read as.
    pub dead_letter_formats: Vec<EventFormat>,
    /// Sum of the records' decoded sizes (before any record-level inflation).
    pub record_bytes: usize,
    /// CloudWatch Logs control messages seen (accepted, not stored).
    pub control_messages: usize,
    /// Records decoded, by the format they turned out to be.
    pub formats: BTreeMap<EventFormat, u64>,
}

impl Decoded {
    fn new(events: EventLines, dead_letters: EventLines, stats: Stats) -> Self {
        let Stats {
            record_bytes,
            control_messages,
            formats,
            dead_letter_formats,
        } = stats;
        Self {
            events,
            dead_letters,
            dead_letter_formats,
            record_bytes,
            control_messages,
            formats,
        }
    }
}

/// Decodes every record of a request into events carrying `delivery`'s facts, on
/// the calling thread.
///
/// # Errors
///
/// With [`BadRecords::Reject`], [`DecodeError::Record`] for the first record that
/// cannot be decoded; nothing of the request is kept.
pub fn decode_records(
    records: &[Cow<'_, str>],
    delivery: &Delivery,
    settings: &DecodeSettings,
) -> Result<Decoded, DecodeError> {
    let budget = Arc::new(DecodeBudget::unlimited());
    decode_records_in_parallel(records, delivery, settings, 1, &budget)
}

/// Runs `decode` as record `index` of a delivery read with default settings;
/// returns its result and the lines it wrote.
#[cfg(test)]
pub(crate) fn run_decoder<T>(
    index: usize,
    decode: impl FnOnce(&mut RecordCx<'_>) -> T,
) -> (T, Vec<u8>) {
    let mut writer = EventWriter::new(&Delivery::default(), 0);
    let mut stats = Stats::default();
    let mut cx = RecordCx::new(&mut writer, &mut stats);
    cx.index = index;
    let result = decode(&mut cx);
    (result, writer.finish().concat())
}

/// At most `max` characters of `text`, for quoting input in an error.
fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// Whether `bytes` is a JSON object (after leading whitespace) whose first KiB
/// contains `needle`: a cheap signature check before a real parse.
pub(crate) fn starts_json_object_with(bytes: &[u8], needle: &[u8]) -> bool {
    let start = bytes.iter().position(|byte| !byte.is_ascii_whitespace());
    start.is_some_and(|start| bytes[start] == b'{')
        && contains(&bytes[..bytes.len().min(1024)], needle)
}

/// Whether `needle` occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests;
