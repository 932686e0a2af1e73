//! CloudWatch Metric Streams records in OpenTelemetry 0.7.0 and 1.0.0 format.
//!
//! A metric stream configured for `opentelemetry0.7` or `opentelemetry1.0` sends each
//! Firehose record as one or more `ExportMetricsServiceRequest` protobuf messages, each
//! preceded by its length as an unsigned varint. Every summary data point becomes one
//! [`Metric`], the same shape the JSON format decoder produces, so users see one kind
//! of metric event whatever format their stream uses.
//!
//! The messages are declared here by hand (module `pb`, so no `protoc` is needed) as
//! the union of the two versions: they share every field number Metric Streams uses
//! except the data-point attributes, which are flat `labels` (field 1) in 0.7 and
//! `attributes` with a `Dimensions` key-value list (field 7) in 1.0. A decoder that
//! knows only one version silently drops the other's dimensions, because protobuf skips
//! unknown fields; so when the stream's version is configured, a point in the other
//! encoding is an error instead.
//!
//! Sources, from the CloudWatch user guide
//! (`https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/<page>.html`):
//! `CloudWatch-metric-streams-formats-opentelemetry-parse` (the length-delimited
//! framing), `...-opentelemetry-translation` and `...-opentelemetry-translation-100`
//! (attributes and the unit table for 0.7.0 and 1.0.0). Field numbers come from the
//! `opentelemetry-proto` files at tags `v0.7.0` and `v1.0.0`
//! (`collector/metrics/v1/metrics_service.proto`, `metrics/v1/metrics.proto`,
//! `common/v1/common.proto`, `resource/v1/resource.proto`).

use std::collections::BTreeMap;

use prost::Message as _;

use crate::event::{Metric, Statistics};

/// Which OpenTelemetry version a stream is configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtelVersion {
    /// Either version; each data point is read in whichever encoding it carries.
    Any,
    /// OpenTelemetry 0.7.0: dimensions are flat `labels`.
    V07,
    /// OpenTelemetry 1.0.0: dimensions are a `Dimensions` key-value list attribute.
    V10,
}

/// Why an OpenTelemetry record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OtelError {
    /// The record ends inside a message's varint length prefix.
    #[error("truncated length prefix at byte {offset}")]
    TruncatedLength {
        /// Where the prefix starts in the record.
        offset: usize,
    },
    /// A message's length prefix is not a valid varint (too long or overflowing).
    #[error("invalid length prefix at byte {offset}")]
    InvalidLength {
        /// Where the prefix starts in the record.
        offset: usize,
    },
    /// A message's length prefix claims more bytes than the record has left.
    #[error("message length {length} at byte {offset} is past the end ({remaining} bytes left)")]
    LengthPastEnd {
        /// Where the prefix starts in the record.
        offset: usize,
        /// The length the prefix claims.
        length: usize,
        /// Bytes left in the record after the prefix.
        remaining: usize,
    },
    /// A message is not a valid `ExportMetricsServiceRequest`.
    #[error("invalid protobuf in the message at byte {offset}: {reason}")]
    Protobuf {
        /// Where the message's length prefix starts in the record.
        offset: usize,
        /// What the protobuf decoder reported.
        reason: String,
    },
    /// A data point uses 0.7's flat labels on a stream configured for 1.0.
    #[error(
        "data points carry flat labels (OpenTelemetry 0.7) but the stream is configured for 1.0"
    )]
    LabelsOnV10,
    /// A data point uses 1.0's attributes on a stream configured for 0.7.
    #[error(
        "data points carry attributes (OpenTelemetry 1.0) but the stream is configured for 0.7"
    )]
    AttributesOnV07,
}

/// Whether `record` plausibly starts with a length-delimited ExportMetricsServiceRequest:
/// a valid varint length that fits within the record, followed by tag byte 0x0a (field 1,
/// length-delimited).
#[must_use]
pub fn looks_like_otel(record: &[u8]) -> bool {
    let mut rest = record;
    let Ok(length) = prost::decode_length_delimiter(&mut rest) else {
        return false;
    };
    // An empty first message would fit, but says nothing about the format.
    length > 0 && length <= rest.len() && rest.first() == Some(&0x0a)
}

/// Decodes every message of `record`, pushing one Metric per summary data point onto `out`.
///
/// With [`OtelVersion::V07`] or [`OtelVersion::V10`], a data point carrying the other
/// version's attribute encoding is an error (a 1.0 decoder fed 0.7 data would otherwise
/// silently drop every dimension). Points with neither labels nor attributes are accepted
/// by every version. Metrics that are not summaries (Metric Streams sends none) yield
/// nothing.
///
/// # Errors
///
/// [`OtelError`] for the first framing or protobuf fault, or version mismatch. On error,
/// `out` may hold metrics from earlier messages; the caller discards them.
pub fn decode(record: &[u8], version: OtelVersion, out: &mut Vec<Metric>) -> Result<(), OtelError> {
    let mut offset = 0;
    while offset < record.len() {
        let (message, next) = next_message(record, offset)?;
        let request = pb::ExportMetricsServiceRequest::decode(message).map_err(|error| {
            OtelError::Protobuf {
                offset,
                reason: error.to_string(),
            }
        })?;
        for resource_metrics in &request.resource_metrics {
            push_resource_metrics(resource_metrics, version, out)?;
        }
        offset = next;
    }
    Ok(())
}

/// Splits the message whose length prefix starts at `offset` off `record`; returns it
/// and the offset just past it.
fn next_message(record: &[u8], offset: usize) -> Result<(&[u8], usize), OtelError> {
    let at_prefix = record.get(offset..).unwrap_or_default();
    let mut rest = at_prefix;
    let length = prost::decode_length_delimiter(&mut rest).map_err(|_| {
        // A varint is at most 10 bytes; running out of bytes while every one still
        // says "more follows" is truncation, anything else is a malformed varint.
        if at_prefix.len() < 10 && at_prefix.iter().all(|byte| byte & 0x80 != 0) {
            OtelError::TruncatedLength { offset }
        } else {
            OtelError::InvalidLength { offset }
        }
    })?;
    let start = offset + (at_prefix.len() - rest.len());
    let message = rest.get(..length).ok_or(OtelError::LengthPastEnd {
        offset,
        length,
        remaining: rest.len(),
    })?;
    Ok((message, start + length))
}

/// The facts CloudWatch puts in the resource attributes, shared by all its points.
#[derive(Default)]
struct ResourceFacts {
    account_id: Option<String>,
    region: Option<String>,
    metric_stream_name: Option<String>,
}

impl ResourceFacts {
    fn from_resource(resource: Option<&pb::Resource>) -> Self {
        let mut facts = Self::default();
        for attribute in resource
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default()
        {
            let Some(value) = scalar_text(attribute.value.as_ref()) else {
                continue;
            };
            match attribute.key.as_str() {
                "cloud.account.id" => facts.account_id = Some(value),
                "cloud.region" => facts.region = Some(value),
                "aws.exporter.arn" => facts.metric_stream_name = stream_name(&value),
                _ => {}
            }
        }
        facts
    }
}

/// The stream name from `arn:aws:cloudwatch:<region>:<account>:metric-stream/<name>`.
fn stream_name(arn: &str) -> Option<String> {
    arn.split_once(":metric-stream/")
        .map(|(_, name)| name.to_owned())
        .filter(|name| !name.is_empty())
}

fn push_resource_metrics(
    resource_metrics: &pb::ResourceMetrics,
    version: OtelVersion,
    out: &mut Vec<Metric>,
) -> Result<(), OtelError> {
    let facts = ResourceFacts::from_resource(resource_metrics.resource.as_ref());
    for metric in resource_metrics
        .scope_metrics
        .iter()
        .flat_map(|scope| &scope.metrics)
    {
        let Some(summary) = &metric.summary else {
            continue;
        };
        let unit = cloudwatch_unit(&metric.unit);
        for point in &summary.data_points {
            out.push(to_metric(&facts, metric, unit.as_deref(), point, version)?);
        }
    }
    Ok(())
}

fn to_metric(
    facts: &ResourceFacts,
    metric: &pb::Metric,
    unit: Option<&str>,
    point: &pb::SummaryDataPoint,
    version: OtelVersion,
) -> Result<Metric, OtelError> {
    match version {
        OtelVersion::V10 if !point.labels.is_empty() => return Err(OtelError::LabelsOnV10),
        OtelVersion::V07 if !point.attributes.is_empty() => {
            return Err(OtelError::AttributesOnV07);
        }
        _ => {}
    }
    let mut namespace = None;
    let mut metric_name = None;
    let mut dimensions = BTreeMap::new();
    for label in &point.labels {
        match label.key.as_str() {
            "Namespace" => namespace = Some(label.value.clone()),
            "MetricName" => metric_name = Some(label.value.clone()),
            // 0.7 writes each dimension as a label of its own.
            _ => {
                dimensions.insert(label.key.clone(), label.value.clone());
            }
        }
    }
    for attribute in &point.attributes {
        match (
            attribute.key.as_str(),
            attribute.value.as_ref().and_then(|v| v.value.as_ref()),
        ) {
            ("Dimensions", Some(pb::Value::Kvlist(list))) => {
                for dimension in &list.values {
                    if let Some(value) = scalar_text(dimension.value.as_ref()) {
                        dimensions.insert(dimension.key.clone(), value);
                    }
                }
            }
            (key, _) => {
                let Some(value) = scalar_text(attribute.value.as_ref()) else {
                    continue;
                };
                match key {
                    "Namespace" => namespace = Some(value),
                    "MetricName" => metric_name = Some(value),
                    // Not something CloudWatch sends; kept as a dimension rather than
                    // dropped, so no data point loses what tells it apart.
                    _ => {
                        dimensions.insert(key.to_owned(), value);
                    }
                }
            }
        }
    }
    let (namespace, metric_name) = match (namespace, metric_name) {
        (Some(namespace), Some(metric_name)) => (namespace, metric_name),
        (namespace, metric_name) => {
            let (parsed_namespace, parsed_name) = split_metric_name(&metric.name);
            (
                namespace.unwrap_or_else(|| parsed_namespace.to_owned()),
                metric_name.unwrap_or_else(|| parsed_name.to_owned()),
            )
        }
    };
    Ok(Metric {
        // u64 nanoseconds / 10^6 is below 2^45, so it always fits.
        timestamp: i64::try_from(point.time_unix_nano / 1_000_000).unwrap_or(i64::MAX),
        metric_stream_name: facts.metric_stream_name.clone(),
        account_id: facts.account_id.clone(),
        region: facts.region.clone(),
        namespace,
        metric_name,
        dimensions,
        unit: unit.map(str::to_owned),
        value: statistics(point),
    })
}

/// `(namespace, metric name)` from `amazonaws.com/<Namespace>/<MetricName>`. The
/// namespace itself holds a `/` (`AWS/EBS`) and metric names never do, so the split is
/// at the last one.
fn split_metric_name(name: &str) -> (&str, &str) {
    let name = name.strip_prefix("amazonaws.com/").unwrap_or(name);
    name.rsplit_once('/').unwrap_or(("", name))
}

/// The point's statistics under the names the JSON format uses: `count`, `sum`, `min`
/// (quantile 0), `max` (quantile 1), then `pNN` for every other quantile in order.
fn statistics(point: &pb::SummaryDataPoint) -> Statistics {
    // Sample counts stay far below 2^53, where f64 would start rounding.
    let count = point.count as f64;
    let mut values = vec![("count".to_owned(), count), ("sum".to_owned(), point.sum)];
    // proto3 leaves zeros out, so a `{}` entry is quantile 0 with value 0: a real
    // minimum of 0, not a missing one.
    let at = |quantile: f64| {
        point
            .quantile_values
            .iter()
            .find(|entry| entry.quantile == quantile)
            .map(|entry| entry.value)
    };
    if let Some(min) = at(0.0) {
        values.push(("min".to_owned(), min));
    }
    if let Some(max) = at(1.0) {
        values.push(("max".to_owned(), max));
    }
    for entry in &point.quantile_values {
        if entry.quantile != 0.0 && entry.quantile != 1.0 {
            values.push((percentile_name(entry.quantile), entry.value));
        }
    }
    Statistics(values)
}

/// CloudWatch's name for the percentile at `quantile`: 0.99 is `p99`, 0.999 `p99.9`.
fn percentile_name(quantile: f64) -> String {
    // 0.999 * 100 is 99.89999999999999 in binary floating point; rounding to four
    // places first gives the digits a person wrote.
    let mut text = format!("{:.4}", quantile * 100.0);
    if text.contains('.') {
        let kept = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(kept);
    }
    format!("p{text}")
}

/// The CloudWatch unit name for a UCUM unit as Metric Streams writes it; units not in
/// the translation table are kept as given, and an empty unit is `None`.
fn cloudwatch_unit(ucum: &str) -> Option<String> {
    if ucum.is_empty() {
        return None;
    }
    if let Some(name) = plain_unit(ucum) {
        return Some(name.to_owned());
    }
    // CloudWatch's rate units are byte, bit and count rates per second only.
    if let Some(name) = ucum.strip_suffix("/s").and_then(plain_unit).filter(|name| {
        !matches!(
            *name,
            "Seconds" | "Microseconds" | "Milliseconds" | "Percent" | "None"
        )
    }) {
        return Some(format!("{name}/Second"));
    }
    Some(ucum.to_owned())
}

/// Translation of the non-rate units (the CloudWatch guide's table).
fn plain_unit(ucum: &str) -> Option<&'static str> {
    Some(match ucum {
        "s" => "Seconds",
        "us" => "Microseconds",
        "ms" => "Milliseconds",
        "By" => "Bytes",
        "kBy" => "Kilobytes",
        "MBy" => "Megabytes",
        "GBy" => "Gigabytes",
        "TBy" => "Terabytes",
        "bit" => "Bits",
        "kbit" => "Kilobits",
        // AWS's table writes `MBit` and `GBit`; UCUM proper is `Mbit`, `Gbit`.
        "MBit" | "Mbit" => "Megabits",
        "GBit" | "Gbit" => "Gigabits",
        "Tbit" | "TBit" => "Terabits",
        "%" => "Percent",
        "{Count}" => "Count",
        "1" => "None",
        _ => return None,
    })
}

/// The text of a scalar attribute value; `None` for lists, maps, bytes and absence.
fn scalar_text(value: Option<&pb::AnyValue>) -> Option<String> {
    use pb::Value;
    match value?.value.as_ref()? {
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Int(number) => Some(number.to_string()),
        Value::Double(number) => Some(number.to_string()),
        Value::Array(_) | Value::Kvlist(_) | Value::Bytes(_) => None,
    }
}

mod pb;

#[cfg(test)]
mod tests;
