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

pub mod cloudtrail;
pub mod cloudwatch_logs;
pub mod eventbridge;
pub mod json;
pub mod metric_json;
pub mod otel;
pub mod raw;
pub mod vpc_flow;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::event::{Delivery, EventWriter, RecordData};
use crate::glob::Glob;
use std::sync::Arc;

use crate::event::lines::EventLines;
use crate::limits::{DecodeBudget, DecodeStop, gunzip_capped, is_gzip};

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

/// Every format name, as written in configuration.
pub const FORMAT_NAMES: [&str; 9] = [
    "auto",
    "cloudwatch_logs",
    "cloudwatch_logs_messages",
    "metric_stream_json",
    "metric_stream_otel07",
    "metric_stream_otel10",
    "eventbridge",
    "vpc_flow",
    "raw",
];

impl FromStr for Format {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "auto" => Self::Auto,
            "cloudwatch_logs" => Self::CloudwatchLogs,
            "cloudwatch_logs_messages" => Self::CloudwatchLogsMessages,
            "metric_stream_json" => Self::MetricStreamJson,
            "metric_stream_otel07" => Self::MetricStreamOtel07,
            "metric_stream_otel10" => Self::MetricStreamOtel10,
            "eventbridge" => Self::Eventbridge,
            "vpc_flow" => Self::VpcFlow,
            "raw" => Self::Raw,
            _ => {
                return Err(format!(
                    "unknown format {name:?}; expected one of {}",
                    FORMAT_NAMES.join(", ")
                ));
            }
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
}

/// Why a request's records were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A record could not be decoded (only with [`BadRecords::Reject`]).
    #[error("record {index}: {reason}")]
    Record {
        /// Position of the record in the request.
        index: usize,
        /// What was wrong.
        reason: String,
    },
    /// The delivery's [`DecodeBudget`] stopped decoding.
    #[error("{0}")]
    Stopped(#[from] DecodeStop),
}

/// The events of one request, as NDJSON lines ready to be routed to sinks.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One event per line, each line ending in `\n`.
    pub events: EventLines,
    /// Dead-letter entries, one per bad record.
    pub dead_letters: EventLines,
    /// The format each dead-lettered record was read as.
    pub dead_letter_formats: Vec<&'static str>,
    /// Sum of the records' decoded sizes (before any record-level inflation).
    pub record_bytes: usize,
    /// CloudWatch Logs control messages seen (accepted, not stored).
    pub control_messages: usize,
    /// Records decoded, by the format they turned out to be.
    pub formats: BTreeMap<&'static str, u64>,
}

/// A dead-letter entry (`kind: "dead_letter"`).
#[derive(Serialize)]
struct DeadLetter<'a> {
    reason: &'a str,
    format: &'static str,
    /// The record's `data` exactly as Firehose sent it (base64, or whatever was
    /// there if it was not valid base64).
    data: &'a str,
}

/// Deliveries whose records hold at least this much base64 are worth decoding on
/// several threads ([`decode_records_in_parallel`]). Firehose sends up to 64 MiB in
/// one request; decoding that on one thread would leave the other cores idle for a
/// second or more. Smaller deliveries are not split: several of them in flight
/// already keep every core busy, and each split costs a thread start.
pub const PARALLEL_DECODE_MIN_BYTES: usize = 8 * crate::limits::MIB as usize;

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

/// [`decode_records`] with every event counted against `budget`, and the records
/// cut into up to `threads` contiguous runs of about equal size, decoded side by
/// side (the caller's thread and `threads - 1` scoped ones). The events come out
/// in record order all the same.
///
/// # Errors
///
/// As [`decode_records`]: the first bad record in request order, when refused;
/// [`DecodeError::Stopped`] when the budget stopped decoding.
pub fn decode_records_in_parallel(
    records: &[Cow<'_, str>],
    delivery: &Delivery,
    settings: &DecodeSettings,
    threads: usize,
    budget: &Arc<DecodeBudget>,
) -> Result<Decoded, DecodeError> {
    let runs = split_runs(records, threads);
    let mut parts = if runs.len() <= 1 {
        vec![decode_run(records, 0, delivery, settings, budget)]
    } else {
        std::thread::scope(|scope| {
            let (first, rest) = runs.split_first().expect("several runs");
            let handles: Vec<_> = rest
                .iter()
                .map(|run| {
                    let run = run.clone();
                    scope.spawn(move || {
                        decode_run(&records[run.clone()], run.start, delivery, settings, budget)
                    })
                })
                .collect();
            let mut parts = vec![decode_run(
                &records[first.clone()],
                0,
                delivery,
                settings,
                budget,
            )];
            parts.extend(handles.into_iter().map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }));
            parts
        })
    }
    .into_iter();
    // A stopped budget fails the whole delivery, whichever run met it.
    budget.check()?;
    // The runs are in record order, so the first error met is the first bad record.
    let mut whole = parts
        .next()
        .unwrap_or_else(|| Ok(Part::new(delivery, 0, budget)))?;
    for part in parts {
        let part = part?;
        whole.writer.append(part.writer);
        match (&mut whole.dead_letters, part.dead_letters) {
            (Some(mine), Some(theirs)) => mine.append(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
        let stats = part.stats;
        whole.stats.record_bytes += stats.record_bytes;
        whole.stats.control_messages += stats.control_messages;
        whole
            .stats
            .dead_letter_formats
            .extend(stats.dead_letter_formats);
        for (format, count) in stats.formats {
            *whole.stats.formats.entry(format).or_default() += count;
        }
    }
    let mut decoded = whole.stats;
    decoded.events = whole.writer.finish();
    if let Some(dead_letters) = whole.dead_letters {
        decoded.dead_letters = dead_letters.finish();
    }
    Ok(decoded)
}

/// Cuts `records` into at most `runs` contiguous ranges of about equal base64 size.
fn split_runs(records: &[Cow<'_, str>], runs: usize) -> Vec<std::ops::Range<usize>> {
    let total: usize = records.iter().map(|record| record.len()).sum();
    let runs = runs.clamp(1, records.len().max(1));
    let share = total.div_ceil(runs).max(1);
    let mut ranges = Vec::with_capacity(runs);
    let (mut start, mut bytes) = (0, 0);
    for (index, record) in records.iter().enumerate() {
        bytes += record.len();
        if bytes >= share && ranges.len() + 1 < runs {
            ranges.push(start..index + 1);
            start = index + 1;
            bytes = 0;
        }
    }
    if start < records.len() || ranges.is_empty() {
        ranges.push(start..records.len());
    }
    ranges
}

/// The events of a run of records, before they are joined to the other runs'.
#[derive(Debug)]
struct Part {
    writer: EventWriter,
    dead_letters: Option<EventWriter>,
    /// Counts only; `events` and `dead_letters` stay empty until the end.
    stats: Decoded,
}

impl Part {
    fn new(delivery: &Delivery, capacity: usize, budget: &Arc<DecodeBudget>) -> Self {
        Self {
            writer: EventWriter::with_budget(delivery, capacity, Arc::clone(budget)),
            dead_letters: None,
            stats: Decoded::default(),
        }
    }
}

/// Records decoded before the output buffer is sized for the rest of a run.
const RECORDS_BEFORE_SIZING: usize = 8;

/// Decodes `records`, the first of which is record `first` of the request.
fn decode_run(
    records: &[Cow<'_, str>],
    first: usize,
    delivery: &Delivery,
    settings: &DecodeSettings,
    budget: &Arc<DecodeBudget>,
) -> Result<Part, DecodeError> {
    let (format, vpc_fields) = settings.choose(&delivery.path, delivery.delivery_stream.as_deref());
    let encoded: usize = records.iter().map(|record| record.len()).sum();
    // Decoded records are ~3/4 of their base64; each line adds the firehose object.
    let mut part = Part::new(delivery, encoded + records.len() * 512, budget);
    let mut scratch = Vec::new();
    let context = Context {
        format,
        vpc_fields,
        max_inflated: settings.max_record_inflated_bytes,
        timestamp: delivery.timestamp,
    };
    let (writer, decoded) = (&mut part.writer, &mut part.stats);
    for (done, (index, record)) in (first..).zip(records).enumerate() {
        // Once the budget stops, nothing more is written: stop reading too.
        budget.check()?;
        if done == RECORDS_BEFORE_SIZING {
            // The events of the first records show how much the rest will make
            // (CloudWatch Logs makes ~6 bytes per byte of base64, raw JSON ~1):
            // reserving it now spares growing (and copying) the buffer repeatedly.
            let seen: usize = records[..done].iter().map(|record| record.len()).sum();
            writer.reserve_scaled(encoded + encoded / 8, seen);
        }
        scratch.clear();
        let mark = writer.mark();
        let result = match STANDARD.decode_vec(record.as_bytes(), &mut scratch) {
            Ok(()) => {
                decoded.record_bytes += scratch.len();
                decode_record(&scratch, record, index, writer, &context, decoded)
            }
            Err(error) => Err(Failure {
                format: "base64",
                reason: format!("data is not valid base64: {error}"),
            }),
        };
        match result {
            Ok(name) => *decoded.formats.entry(name).or_default() += 1,
            Err(failure) => {
                writer.truncate(mark);
                if settings.bad_records == BadRecords::Reject {
                    return Err(DecodeError::Record {
                        index,
                        reason: failure.reason,
                    });
                }
                decoded.dead_letter_formats.push(failure.format);
                let entry = DeadLetter {
                    reason: &failure.reason,
                    format: failure.format,
                    data: record,
                };
                part.dead_letters
                    .get_or_insert_with(|| {
                        EventWriter::with_budget(delivery, 0, Arc::clone(budget))
                    })
                    .event(
                        index,
                        "dead_letter",
                        crate::event::Facts {
                            format: Some(failure.format),
                            ..crate::event::Facts::default()
                        },
                        &entry,
                    );
            }
        }
    }
    budget.check()?;
    Ok(part)
}

/// What stays the same for every record of a request.
struct Context<'a> {
    format: Format,
    vpc_fields: Option<&'a [String]>,
    max_inflated: u64,
    timestamp: i64,
}

/// A record that could not be decoded: the format it was read as, and why.
struct Failure {
    format: &'static str,
    reason: String,
}

fn fail(format: &'static str) -> impl Fn(String) -> Failure {
    move |reason| Failure { format, reason }
}

/// Decodes one record, returning the name of the format it was decoded as.
fn decode_record(
    bytes: &[u8],
    base64: &str,
    index: usize,
    writer: &mut EventWriter,
    context: &Context<'_>,
    decoded: &mut Decoded,
) -> Result<&'static str, Failure> {
    let inflated;
    let content: &[u8] = if is_gzip(bytes) && context.format != Format::Raw {
        inflated = gunzip_capped(bytes, context.max_inflated).map_err(|error| Failure {
            format: "gzip",
            reason: format!("record is gzip but cannot be inflated: {error}"),
        })?;
        &inflated
    } else {
        bytes
    };
    let vpc = context.vpc_fields;
    match context.format {
        Format::Auto => decode_sniffed(content, bytes, base64, index, writer, context, decoded),
        Format::CloudwatchLogs => cloudwatch(content, index, writer, vpc, decoded),
        Format::CloudwatchLogsMessages => {
            cloudwatch_logs::decode_messages(content, index, context.timestamp, writer, vpc)
                .map_err(fail("cloudwatch_logs_messages"))?;
            Ok("cloudwatch_logs_messages")
        }
        Format::MetricStreamJson => {
            metric_json::decode(content, index, writer).map_err(fail("metric_stream_json"))?;
            Ok("metric_stream_json")
        }
        Format::MetricStreamOtel07 => metrics_otel(content, otel::OtelVersion::V07, index, writer),
        Format::MetricStreamOtel10 => metrics_otel(content, otel::OtelVersion::V10, index, writer),
        Format::Eventbridge => {
            eventbridge::decode(content, index, writer).map_err(fail("eventbridge"))
        }
        Format::VpcFlow => vpc_flow::decode_direct(content, index, context, writer),
        Format::Raw => {
            let data = raw::classify(bytes, base64);
            writer.record(index, &data);
            Ok(raw_name(&data))
        }
    }
}

/// `auto`: the first format whose signature the record has, else a raw record.
fn decode_sniffed(
    content: &[u8],
    original: &[u8],
    base64: &str,
    index: usize,
    writer: &mut EventWriter,
    context: &Context<'_>,
    decoded: &mut Decoded,
) -> Result<&'static str, Failure> {
    if cloudwatch_logs::looks_like_envelope(content) {
        return cloudwatch(content, index, writer, context.vpc_fields, decoded);
    }
    if metric_json::looks_like_metric_json(content) {
        metric_json::decode(content, index, writer).map_err(fail("metric_stream_json"))?;
        return Ok("metric_stream_json");
    }
    if eventbridge::looks_like_event(content) {
        return eventbridge::decode(content, index, writer).map_err(fail("eventbridge"));
    }
    if otel::looks_like_otel(content) {
        return metrics_otel(content, otel::OtelVersion::Any, index, writer);
    }
    let data = match raw::classify(content, base64) {
        // Binary after inflation: keep the record exactly as it was sent.
        RecordData::Binary(_) if !std::ptr::eq(content, original) => RecordData::Binary(base64),
        data => data,
    };
    let name = raw_name(&data);
    writer.record(index, &data);
    Ok(name)
}

fn raw_name(data: &RecordData<'_>) -> &'static str {
    data.format().as_str()
}

fn cloudwatch(
    content: &[u8],
    index: usize,
    writer: &mut EventWriter,
    vpc: Option<&[String]>,
    decoded: &mut Decoded,
) -> Result<&'static str, Failure> {
    let result =
        cloudwatch_logs::decode(content, index, writer, vpc).map_err(fail("cloudwatch_logs"))?;
    decoded.control_messages += result.control_messages;
    Ok("cloudwatch_logs")
}

fn metrics_otel(
    content: &[u8],
    version: otel::OtelVersion,
    index: usize,
    writer: &mut EventWriter,
) -> Result<&'static str, Failure> {
    let mut metrics = Vec::new();
    otel::decode(content, version, &mut metrics).map_err(|error| Failure {
        // The format the record was read as: the configured one, when it is.
        format: match version {
            otel::OtelVersion::V07 => "metric_stream_otel07",
            otel::OtelVersion::V10 => "metric_stream_otel10",
            otel::OtelVersion::Any => "metric_stream_otel",
        },
        reason: error.to_string(),
    })?;
    for metric in &metrics {
        writer.metric(index, metric);
    }
    Ok("metric_stream_otel")
}

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
mod tests {
    use super::*;
    use crate::event::lines::EventMeta;

    fn decode(records: &[&[u8]], settings: &DecodeSettings) -> Result<Decoded, DecodeError> {
        let encoded: Vec<Cow<'_, str>> = records
            .iter()
            .map(|record| STANDARD.encode(record).into())
            .collect();
        decode_records(&encoded, &Delivery::default(), settings)
    }

    use crate::testing::parse_lines as events;

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    const ENVELOPE: &[u8] = br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvents":[{"id":"1","timestamp":5,"message":"hi"}]}"#;
    const METRIC: &[u8] = br#"{"metric_stream_name":"s","account_id":"1","region":"r","namespace":"N","metric_name":"M","dimensions":{},"timestamp":1,"value":{"count":1,"sum":1,"min":1,"max":1},"unit":"None"}"#;
    const EVENT: &[u8] = br#"{"version":"0","id":"1","detail-type":"T","source":"aws.x","account":"1","time":"t","region":"r","resources":[],"detail":{}}"#;

    #[test]
    fn runs_are_contiguous_and_about_equal() {
        /// Record sizes, runs asked for, and the runs as (start, end) pairs.
        type Case = (&'static [usize], usize, &'static [(usize, usize)]);
        let table: &[Case] = &[
            (&[], 2, &[(0, 0)]),
            (&[10], 4, &[(0, 1)]),
            (&[10, 10, 10, 10], 1, &[(0, 4)]),
            (&[10, 10, 10, 10], 2, &[(0, 2), (2, 4)]),
            (&[10, 10, 10, 10], 3, &[(0, 2), (2, 4)]),
            (&[40, 1, 1, 1], 2, &[(0, 1), (1, 4)]),
            (&[1, 1, 1, 40], 2, &[(0, 4)]),
            (&[5, 5, 5, 5, 5, 5], 3, &[(0, 2), (2, 4), (4, 6)]),
        ];
        for &(sizes, runs, expected) in table {
            let records: Vec<Cow<'_, str>> =
                sizes.iter().map(|&size| "A".repeat(size).into()).collect();
            let found: Vec<(usize, usize)> = split_runs(&records, runs)
                .into_iter()
                .map(|run| (run.start, run.end))
                .collect();
            assert_eq!(found, expected, "{sizes:?} in {runs}");
        }
    }

    /// Decoding side by side gives exactly what one thread gives: the same lines in
    /// the same order, record indexes, dead letters, counts, and the same first
    /// error when bad records are refused.
    #[test]
    fn decoding_in_runs_matches_decoding_in_one() {
        let gzipped = gzip(ENVELOPE);
        let mut records: Vec<&[u8]> = Vec::new();
        for index in 0..23 {
            records.push(match index % 5 {
                0 => &gzipped,
                1 => METRIC,
                2 => EVENT,
                3 => b"\x1f\x8b not really gzip",
                _ => b"plain text",
            });
        }
        let encoded: Vec<Cow<'_, str>> = records
            .iter()
            .map(|record| STANDARD.encode(record).into())
            .collect();
        let delivery = Delivery {
            request_id: "r".into(),
            ..Delivery::default()
        };
        let settings = DecodeSettings::default();
        let unlimited = Arc::new(DecodeBudget::unlimited());
        let one =
            decode_records_in_parallel(&encoded, &delivery, &settings, 1, &unlimited).unwrap();
        for threads in [2, 3, 8] {
            let many =
                decode_records_in_parallel(&encoded, &delivery, &settings, threads, &unlimited)
                    .unwrap();
            // The chunks may be cut elsewhere; the lines and their facts are the same.
            let flat = |lines: &EventLines| {
                let metas: Vec<_> = lines
                    .iter()
                    .map(|(meta, line)| {
                        (
                            line.to_vec(),
                            EventMeta {
                                end: 0,
                                ..meta.clone()
                            },
                        )
                    })
                    .collect();
                (lines.concat(), metas)
            };
            assert_eq!(flat(&many.events), flat(&one.events), "{threads} threads");
            assert_eq!(
                flat(&many.dead_letters),
                flat(&one.dead_letters),
                "{threads} threads"
            );
            assert_eq!(many.dead_letter_formats, one.dead_letter_formats);
            assert_eq!(many.formats, one.formats);
            assert_eq!(many.record_bytes, one.record_bytes);
        }
        assert_eq!(one.dead_letters.len(), 4, "the fake gzip records");
        let lines = events(&one.events.concat());
        let indexes: Vec<u64> = lines
            .iter()
            .map(|line| line["firehose"]["record_index"].as_u64().unwrap())
            .collect();
        assert!(indexes.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(indexes.len(), 19);

        let reject = DecodeSettings {
            bad_records: BadRecords::Reject,
            ..DecodeSettings::default()
        };
        for threads in [1, 2, 3] {
            let error =
                decode_records_in_parallel(&encoded, &delivery, &reject, threads, &unlimited)
                    .unwrap_err();
            assert!(
                matches!(error, DecodeError::Record { index: 3, .. }),
                "{threads} threads: {error:?}"
            );
        }
    }

    /// The documented sniffing order, one row per format.
    #[test]
    fn auto_sniffs_in_the_documented_order() {
        let gzipped_envelope = gzip(ENVELOPE);
        let table: &[(&str, &[u8], &str, &str)] = &[
            (
                "gzip'd envelope",
                &gzipped_envelope,
                "cloudwatch_logs",
                "log",
            ),
            ("plain envelope", ENVELOPE, "cloudwatch_logs", "log"),
            ("metric json", METRIC, "metric_stream_json", "metric"),
            ("eventbridge", EVENT, "eventbridge", "record"),
            ("json", br#"{"a":1}"#, "json", "record"),
            ("text", b"hello", "text", "record"),
            ("binary", &[0xff, 0x00, 0x01], "binary", "record"),
        ];
        for (name, record, format, kind) in table {
            let decoded = decode(&[record], &DecodeSettings::default()).unwrap();
            assert_eq!(
                decoded.formats.keys().copied().collect::<Vec<_>>(),
                [*format],
                "{name}"
            );
            assert_eq!(events(&decoded.events.concat())[0]["kind"], *kind, "{name}");
        }
    }

    #[test]
    fn gzip_of_plain_data_is_stored_inflated_and_gzip_of_binary_as_sent() {
        let decoded = decode(&[&gzip(b"plain text")], &DecodeSettings::default()).unwrap();
        assert_eq!(events(&decoded.events.concat())[0]["data"], "plain text");
        let binary = gzip(&[0xff, 0xfe, 0x00]);
        let decoded = decode(&[&binary], &DecodeSettings::default()).unwrap();
        assert_eq!(
            events(&decoded.events.concat())[0]["data"],
            STANDARD.encode(&binary)
        );
    }

    /// A delivery of tiny records whose lines outgrow the budget stops with the
    /// budget's reason, on one thread or several; within the budget it decodes.
    #[test]
    fn decoding_stops_at_the_budget() {
        let envelope = serde_json::json!({
            "messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g".repeat(500),
            "logStream": "s", "subscriptionFilters": [],
            "logEvents": vec![serde_json::json!({"id": "1", "timestamp": 1, "message": ""}); 400],
        })
        .to_string();
        let record = gzip(envelope.as_bytes());
        let encoded: Vec<Cow<'_, str>> =
            std::iter::repeat_n(STANDARD.encode(&record).into(), 8).collect();
        let delivery = Delivery::default();
        let settings = DecodeSettings::default();
        let unlimited = Arc::new(DecodeBudget::unlimited());
        let all =
            decode_records_in_parallel(&encoded, &delivery, &settings, 1, &unlimited).unwrap();
        let needed = unlimited.used();
        assert_eq!(all.events.len(), 3200);
        assert!(
            needed > 100 * (record.len() as u64 * 8),
            "the shape amplifies: {needed} bytes from {}",
            record.len() * 8
        );
        for threads in [1, 2] {
            let budget = Arc::new(DecodeBudget::new(needed / 3, Box::new(|_| true)));
            let result =
                decode_records_in_parallel(&encoded, &delivery, &settings, threads, &budget);
            assert_eq!(
                result.unwrap_err(),
                DecodeError::Stopped(DecodeStop::TooLarge { limit: needed / 3 }),
                "{threads} threads"
            );
            assert!(budget.used() < needed / 3 + 4096, "stopped early");
            let enough = Arc::new(DecodeBudget::new(needed, Box::new(|_| true)));
            let decoded =
                decode_records_in_parallel(&encoded, &delivery, &settings, threads, &enough)
                    .unwrap();
            assert_eq!(decoded.events.concat(), all.events.concat());
        }
        let busy = Arc::new(DecodeBudget::new(u64::MAX, Box::new(|_| false)));
        assert_eq!(
            decode_records_in_parallel(&encoded, &delivery, &settings, 1, &busy).unwrap_err(),
            DecodeError::Stopped(DecodeStop::Overloaded)
        );
    }

    #[test]
    fn a_bad_record_goes_to_the_dead_letters_and_the_rest_is_kept() {
        let broken_envelope = br#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1"}]}"#;
        let decoded = decode(
            &[ENVELOPE, broken_envelope, METRIC],
            &DecodeSettings::default(),
        )
        .unwrap();
        assert_eq!(decoded.events.len(), 2);
        assert_eq!(decoded.dead_letters.len(), 1);
        let dead = &events(&decoded.dead_letters.concat())[0];
        assert_eq!(dead["kind"], "dead_letter");
        assert_eq!(dead["format"], "cloudwatch_logs");
        assert!(
            dead["reason"].as_str().unwrap().contains("timestamp"),
            "{dead}"
        );
        assert_eq!(
            STANDARD.decode(dead["data"].as_str().unwrap()).unwrap(),
            broken_envelope
        );
        assert_eq!(dead["firehose"]["record_index"], 1);
    }

    #[test]
    fn reject_refuses_the_whole_request() {
        let settings = DecodeSettings {
            bad_records: BadRecords::Reject,
            ..DecodeSettings::default()
        };
        let result = decode(&[ENVELOPE, br#"{"messageType":"NOPE"}"#], &settings);
        assert!(
            matches!(result, Err(DecodeError::Record { index: 1, .. })),
            "{result:?}"
        );
    }

    #[test]
    fn invalid_base64_is_a_bad_record_kept_as_received() {
        let records: Vec<Cow<'_, str>> = vec![STANDARD.encode(b"ok").into(), "H4sIAAAA%%%".into()];
        let decoded =
            decode_records(&records, &Delivery::default(), &DecodeSettings::default()).unwrap();
        assert_eq!(decoded.events.len(), 1);
        let dead = &events(&decoded.dead_letters.concat())[0];
        assert_eq!(dead["format"], "base64");
        assert_eq!(dead["data"], "H4sIAAAA%%%");
    }

    #[test]
    fn a_gzip_bomb_in_a_record_stops_at_the_cap() {
        let bomb = gzip(&vec![b'a'; 4 * 1024 * 1024]);
        let settings = DecodeSettings {
            max_record_inflated_bytes: 1024 * 1024,
            ..DecodeSettings::default()
        };
        let decoded = decode(&[&bomb, b"fine"], &settings).unwrap();
        assert_eq!(decoded.events.len(), 1);
        let dead = &events(&decoded.dead_letters.concat())[0];
        assert!(
            dead["reason"]
                .as_str()
                .unwrap()
                .contains("exceeds the limit"),
            "{dead}"
        );
    }

    #[test]
    fn a_forced_format_that_does_not_match_is_a_clear_record_error() {
        let table: &[(Format, &[u8], &str)] = &[
            (Format::CloudwatchLogs, METRIC, "CloudWatch Logs"),
            (Format::MetricStreamJson, ENVELOPE, "Metric Streams JSON"),
            (Format::Eventbridge, b"text", "EventBridge"),
            (Format::VpcFlow, b"hello world", "flow log"),
        ];
        for (format, record, expected) in table {
            let settings = DecodeSettings {
                default_format: *format,
                ..DecodeSettings::default()
            };
            let decoded = decode(&[record], &settings).unwrap();
            assert_eq!(decoded.events.len(), 0, "{format:?}");
            let dead = &events(&decoded.dead_letters.concat())[0];
            assert!(
                dead["reason"].as_str().unwrap().contains(expected),
                "{format:?}: {dead}"
            );
        }
    }

    #[test]
    fn rules_choose_by_path_then_stream() {
        let settings = DecodeSettings {
            rules: vec![
                DecoderRule {
                    path: Some(Glob::new("/metrics/*")),
                    delivery_stream: None,
                    format: Format::MetricStreamJson,
                    vpc_flow_fields: None,
                },
                DecoderRule {
                    path: None,
                    delivery_stream: Some(Glob::new("flows-*")),
                    format: Format::VpcFlow,
                    vpc_flow_fields: Some(vec!["srcaddr".into()]),
                },
            ],
            ..DecodeSettings::default()
        };
        assert_eq!(
            settings.choose("/metrics/prod", Some("x")).0,
            Format::MetricStreamJson
        );
        let (format, fields) = settings.choose("/other", Some("flows-eu"));
        assert_eq!(
            (format, fields.map(<[String]>::len)),
            (Format::VpcFlow, Some(1))
        );
        assert_eq!(settings.choose("/other", None).0, Format::Auto);
    }

    #[test]
    fn vpc_flow_direct_plain_and_wrapped() {
        let settings = DecodeSettings {
            default_format: Format::VpcFlow,
            ..DecodeSettings::default()
        };
        let line = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";
        let wrapped = format!("{{\"message\":\"{line}\"}}\n");
        let decoded = decode(&[line.as_bytes(), wrapped.as_bytes()], &settings).unwrap();
        let written = events(&decoded.events.concat());
        assert_eq!(written.len(), 2);
        for event in &written {
            assert_eq!(event["kind"], "log");
            assert_eq!(event["format"], "vpc_flow");
            assert_eq!(event["parsed"]["dstport"], 22);
        }
    }

    #[test]
    fn format_names_round_trip() {
        for name in FORMAT_NAMES {
            assert!(name.parse::<Format>().is_ok(), "{name}");
        }
        assert!(
            "csv"
                .parse::<Format>()
                .unwrap_err()
                .contains("expected one of")
        );
    }
}
