//! One run of records, record by record: base64, gzip, the format each record is
//! read as (fixed, or sniffed for `auto`), and the dead letter of a record that
//! fails.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::{
    BadRecords, DecodeError, DecodeSettings, Format, RecordCx, RecordError, Stats, cloudwatch_logs,
    eventbridge, metric_json, otel, raw, vpc_flow,
};
use crate::event::{Delivery, EventFormat, EventWriter, Facts, Kind, RecordData};
use crate::limits::{DecodeBudget, gunzip_capped, is_gzip};

/// A dead-letter entry (`kind: "dead_letter"`).
#[derive(Serialize)]
struct DeadLetter<'a> {
    reason: &'a str,
    format: EventFormat,
    /// The record's `data` exactly as Firehose sent it (base64, or whatever was
    /// there if it was not valid base64).
    data: &'a str,
}

/// The events of a run of records, before they are joined to the other runs'.
#[derive(Debug)]
pub(super) struct Part {
    pub(super) writer: EventWriter,
    pub(super) dead_letters: Option<EventWriter>,
    pub(super) stats: Stats,
}

impl Part {
    pub(super) fn new(delivery: &Delivery, capacity: usize, budget: &Arc<DecodeBudget>) -> Self {
        Self {
            writer: EventWriter::with_budget(delivery, capacity, Arc::clone(budget)),
            dead_letters: None,
            stats: Stats::default(),
        }
    }
}

/// Records decoded before the output buffer is sized for the rest of a run.
const RECORDS_BEFORE_SIZING: usize = 8;

/// Decodes `records`, the first of which is record `first` of the request.
pub(super) fn decode_run(
    records: &[Cow<'_, str>],
    first: usize,
    delivery: &Delivery,
    settings: &DecodeSettings,
    budget: &Arc<DecodeBudget>,
) -> Result<Part, DecodeError> {
    let encoded: usize = records.iter().map(|record| record.len()).sum();
    // Decoded records are ~3/4 of their base64; each line adds the firehose object.
    let mut part = Part::new(delivery, encoded + records.len() * 512, budget);
    let mut scratch = Vec::new();
    let mut cx = RecordCx {
        index: first,
        settings: settings.for_delivery(delivery),
        writer: &mut part.writer,
        stats: &mut part.stats,
    };
    for (done, (index, record)) in (first..).zip(records).enumerate() {
        // Once the budget stops, nothing more is written: stop reading too.
        budget.check()?;
        if done == RECORDS_BEFORE_SIZING {
            // The events of the first records show how much the rest will make
            // (CloudWatch Logs makes ~6 bytes per byte of base64, raw JSON ~1):
            // reserving it now spares growing (and copying) the buffer repeatedly.
            let seen: usize = records[..done].iter().map(|record| record.len()).sum();
            cx.writer.reserve_scaled(encoded + encoded / 8, seen);
        }
        cx.index = index;
        scratch.clear();
        let mark = cx.writer.mark();
        let result = match STANDARD.decode_vec(record.as_bytes(), &mut scratch) {
            Ok(()) => {
                cx.stats.record_bytes += scratch.len();
                decode_record(&mut cx, &scratch, record)
            }
            Err(error) => Err(Failure {
                format: EventFormat::Base64,
                error: RecordError::Base64(error),
            }),
        };
        match result {
            Ok(format) => *cx.stats.formats.entry(format).or_default() += 1,
            Err(failure) => {
                cx.writer.truncate(mark);
                if settings.bad_records == BadRecords::Reject {
                    return Err(DecodeError::Record {
                        index,
                        reason: failure.error,
                    });
                }
                cx.stats.dead_letter_formats.push(failure.format);
                let reason = failure.error.to_string();
                let entry = DeadLetter {
                    reason: &reason,
                    format: failure.format,
                    data: record,
                };
                part.dead_letters
                    .get_or_insert_with(|| {
                        EventWriter::with_budget(delivery, 0, Arc::clone(budget))
                    })
                    .event(
                        index,
                        Kind::DeadLetter,
                        Facts {
                            format: Some(failure.format),
                            ..Facts::default()
                        },
                        &entry,
                    );
            }
        }
    }
    budget.check()?;
    Ok(part)
}

/// A record that could not be decoded: the format it was read as, and why.
struct Failure {
    format: EventFormat,
    error: RecordError,
}

/// Pairs a decoder's error with the format the record was read as.
fn tried(format: EventFormat) -> impl Fn(RecordError) -> Failure {
    move |error| Failure { format, error }
}

/// Decodes one record (`bytes`, sent as `base64`), returning the format it was
/// decoded as.
fn decode_record(
    cx: &mut RecordCx<'_>,
    bytes: &[u8],
    base64: &str,
) -> Result<EventFormat, Failure> {
    let format = cx.settings.format;
    let inflated;
    let content: &[u8] = if is_gzip(bytes) && format != Format::Raw {
        inflated = gunzip_capped(bytes, cx.settings.max_inflated)
            .map_err(|error| tried(EventFormat::Gzip)(RecordError::Gzip(error)))?;
        &inflated
    } else {
        bytes
    };
    match format {
        Format::Auto => decode_sniffed(cx, content, bytes, base64),
        Format::CloudwatchLogs => cloudwatch(cx, content),
        Format::CloudwatchLogsMessages => {
            let read_as = EventFormat::CloudwatchLogsMessages;
            cloudwatch_logs::decode_messages(content, cx).map_err(tried(read_as))?;
            Ok(read_as)
        }
        Format::MetricStreamJson => metrics_json(cx, content),
        Format::MetricStreamOtel07 => metrics_otel(cx, content, otel::OtelVersion::V07),
        Format::MetricStreamOtel10 => metrics_otel(cx, content, otel::OtelVersion::V10),
        Format::Eventbridge => {
            eventbridge::decode(content, cx).map_err(tried(EventFormat::Eventbridge))
        }
        Format::VpcFlow => {
            vpc_flow::decode_direct(content, cx).map_err(tried(EventFormat::VpcFlow))?;
            Ok(EventFormat::VpcFlow)
        }
        Format::Raw => {
            let data = raw::classify(bytes, base64);
            cx.writer.record(cx.index, &data);
            Ok(data.format().into())
        }
    }
}

/// `auto`: the first format whose signature the record has, else a raw record.
/// `content` is the record after inflation, `original` as it was sent.
fn decode_sniffed(
    cx: &mut RecordCx<'_>,
    content: &[u8],
    original: &[u8],
    base64: &str,
) -> Result<EventFormat, Failure> {
    if cloudwatch_logs::looks_like_envelope(content) {
        return cloudwatch(cx, content);
    }
    if metric_json::looks_like_metric_json(content) {
        return metrics_json(cx, content);
    }
    if eventbridge::looks_like_event(content) {
        return eventbridge::decode(content, cx).map_err(tried(EventFormat::Eventbridge));
    }
    if otel::looks_like_otel(content) {
        return metrics_otel(cx, content, otel::OtelVersion::Any);
    }
    let data = match raw::classify(content, base64) {
        // Binary after inflation: keep the record exactly as it was sent.
        RecordData::Binary(_) if !std::ptr::eq(content, original) => RecordData::Binary(base64),
        data => data,
    };
    cx.writer.record(cx.index, &data);
    Ok(data.format().into())
}

fn cloudwatch(cx: &mut RecordCx<'_>, content: &[u8]) -> Result<EventFormat, Failure> {
    let read_as = EventFormat::CloudwatchLogs;
    cloudwatch_logs::decode(content, cx).map_err(tried(read_as))?;
    Ok(read_as)
}

fn metrics_json(cx: &mut RecordCx<'_>, content: &[u8]) -> Result<EventFormat, Failure> {
    let read_as = EventFormat::MetricStreamJson;
    metric_json::decode(content, cx).map_err(tried(read_as))?;
    Ok(read_as)
}

fn metrics_otel(
    cx: &mut RecordCx<'_>,
    content: &[u8],
    version: otel::OtelVersion,
) -> Result<EventFormat, Failure> {
    // The format the record was read as: the configured version, when there is one.
    let read_as = match version {
        otel::OtelVersion::V07 => EventFormat::MetricStreamOtel07,
        otel::OtelVersion::V10 => EventFormat::MetricStreamOtel10,
        otel::OtelVersion::Any => EventFormat::MetricStreamOtel,
    };
    let mut metrics = Vec::new();
    otel::decode(content, version, &mut metrics).map_err(|error| tried(read_as)(error.into()))?;
    for metric in &metrics {
        cx.writer.metric(cx.index, metric);
    }
    Ok(EventFormat::MetricStreamOtel)
}
