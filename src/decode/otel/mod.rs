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
mod tests {
    use super::*;

    /// Real Firehose records from a stream in OpenTelemetry 0.7.0 format (VictoriaMetrics'
    /// capture, see `tests/fixtures/SOURCES.md`).
    const V07_RECORD0: &[u8] = include_bytes!(
        "../../../tests/fixtures/victoriametrics/firehose_metric_stream_otel07_record0.bin"
    );
    const V07_RECORD1: &[u8] = include_bytes!(
        "../../../tests/fixtures/victoriametrics/firehose_metric_stream_otel07_record1.bin"
    );
    /// Two 1.0.0 messages written by the official Python classes
    /// (`tests/fixtures/otel10/make_fixture.py`).
    const V10_RECORD: &[u8] =
        include_bytes!("../../../tests/fixtures/otel10/metric_stream_otel10.bin");

    fn decoded(record: &[u8], version: OtelVersion) -> Vec<Metric> {
        let mut out = Vec::new();
        decode(record, version, &mut out).unwrap();
        out
    }

    fn stats(pairs: &[(&str, f64)]) -> Statistics {
        Statistics(pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect())
    }

    fn ebs_point(volume: &str, timestamp: i64) -> Metric {
        Metric {
            timestamp,
            metric_stream_name: Some("custom_ebs_metric".into()),
            account_id: Some("677435890598".into()),
            region: Some("us-east-1".into()),
            namespace: "AWS/EBS".into(),
            metric_name: "VolumeReadOps".into(),
            dimensions: [("VolumeId".to_owned(), volume.to_owned())].into(),
            unit: Some("Count".into()),
            // The capture's points have count 1, no sum, and quantile entries `{}` and
            // `{quantile: 1}`: proto3 dropped every zero.
            value: stats(&[("count", 1.0), ("sum", 0.0), ("min", 0.0), ("max", 0.0)]),
        }
    }

    #[test]
    fn decodes_the_real_v07_capture() {
        for version in [OtelVersion::Any, OtelVersion::V07] {
            let first = decoded(V07_RECORD0, version);
            assert_eq!(first.len(), 20, "{version:?}");
            assert_eq!(
                first[0],
                ebs_point("vol-086cfc1085408e0dc", 1_709_217_240_000)
            );
            // A series with two points: the earlier minute comes second.
            assert_eq!(
                first[14],
                ebs_point("vol-0c4410997be231340", 1_709_217_180_000)
            );
            assert!(
                first
                    .iter()
                    .all(|m| m.namespace == "AWS/EBS" && m.dimensions.len() == 1)
            );

            let second = decoded(V07_RECORD1, version);
            assert_eq!(second.len(), 32, "{version:?}");
            assert_eq!(
                second[0],
                ebs_point("vol-0d5476db7ed69ee17", 1_709_217_240_000)
            );
            assert_eq!(
                second[1],
                ebs_point("vol-04fdf4a11dd9c95e5", 1_709_217_300_000)
            );
        }
    }

    #[test]
    fn decodes_v10_from_the_official_encoder() {
        let facts = |metric: &Metric| {
            (
                metric.metric_stream_name.clone(),
                metric.account_id.clone(),
                metric.region.clone(),
                metric.timestamp,
            )
        };
        for version in [OtelVersion::Any, OtelVersion::V10] {
            let metrics = decoded(V10_RECORD, version);
            assert_eq!(metrics.len(), 2, "{version:?}");
            for metric in &metrics {
                assert_eq!(
                    facts(metric),
                    (
                        Some("otel10-stream".into()),
                        Some("123456789012".into()),
                        Some("eu-west-1".into()),
                        1_709_294_460_000
                    )
                );
            }
            let cpu = &metrics[0];
            assert_eq!(cpu.namespace, "AWS/EC2");
            assert_eq!(cpu.metric_name, "CPUUtilization");
            assert_eq!(
                cpu.dimensions,
                [("InstanceId".to_owned(), "i-0123456789abcdef0".to_owned())].into()
            );
            assert_eq!(cpu.unit.as_deref(), Some("Percent"));
            assert_eq!(
                cpu.value,
                stats(&[
                    ("count", 5.0),
                    ("sum", 42.5),
                    ("min", 1.5),
                    ("max", 13.0),
                    ("p99", 12.25),
                    ("p99.9", 12.75),
                ])
            );
            let bytes = &metrics[1];
            assert_eq!(bytes.namespace, "AWS/ELB");
            assert_eq!(bytes.metric_name, "EstimatedProcessedBytes");
            assert_eq!(
                bytes.dimensions,
                [
                    ("AvailabilityZone".to_owned(), "eu-west-1a".to_owned()),
                    ("LoadBalancerName".to_owned(), "web".to_owned()),
                ]
                .into()
            );
            assert_eq!(bytes.unit.as_deref(), Some("Bytes/Second"));
            assert_eq!(
                bytes.value,
                stats(&[
                    ("count", 2.0),
                    ("sum", 2048.0),
                    ("min", 512.0),
                    ("max", 1536.0)
                ])
            );
        }
    }

    #[test]
    fn refuses_the_other_versions_encoding() {
        let cases: [(&[u8], OtelVersion, OtelError); 3] = [
            (V07_RECORD0, OtelVersion::V10, OtelError::LabelsOnV10),
            (V07_RECORD1, OtelVersion::V10, OtelError::LabelsOnV10),
            (V10_RECORD, OtelVersion::V07, OtelError::AttributesOnV07),
        ];
        for (record, version, expected) in cases {
            let mut out = Vec::new();
            assert_eq!(decode(record, version, &mut out), Err(expected));
        }
        assert_eq!(
            OtelError::LabelsOnV10.to_string(),
            "data points carry flat labels (OpenTelemetry 0.7) but the stream is configured for 1.0"
        );
    }

    /// One length-delimited message holding `metric` under CloudWatch's resource.
    fn framed(metric: pb::Metric) -> Vec<u8> {
        let request = pb::ExportMetricsServiceRequest {
            resource_metrics: vec![pb::ResourceMetrics {
                resource: None,
                scope_metrics: vec![pb::ScopeMetrics {
                    metrics: vec![metric],
                }],
            }],
        };
        request.encode_length_delimited_to_vec()
    }

    #[test]
    fn points_without_dimensions_fall_back_to_the_metric_name() {
        let record = framed(pb::Metric {
            name: "amazonaws.com/AWS/ApplicationELB/RequestCount".into(),
            unit: String::new(),
            summary: Some(pb::Summary {
                data_points: vec![pb::SummaryDataPoint {
                    time_unix_nano: 1_700_000_060_999_999_999,
                    count: 3,
                    sum: 7.0,
                    ..Default::default()
                }],
            }),
            ..Default::default()
        });
        for version in [OtelVersion::Any, OtelVersion::V07, OtelVersion::V10] {
            let metrics = decoded(&record, version);
            assert_eq!(metrics.len(), 1);
            let metric = &metrics[0];
            assert_eq!(metric.namespace, "AWS/ApplicationELB");
            assert_eq!(metric.metric_name, "RequestCount");
            assert!(metric.dimensions.is_empty());
            assert_eq!(metric.timestamp, 1_700_000_060_999);
            assert_eq!(metric.unit, None);
            assert_eq!(metric.metric_stream_name, None);
            // No quantile 0 or 1 entry at all: no min or max rather than a made-up 0.
            assert_eq!(metric.value, stats(&[("count", 3.0), ("sum", 7.0)]));
        }
    }

    #[test]
    fn metrics_without_a_summary_yield_nothing() {
        let record = framed(pb::Metric {
            name: "amazonaws.com/AWS/EC2/CPUUtilization".into(),
            ..Default::default()
        });
        assert!(decoded(&record, OtelVersion::Any).is_empty());
    }

    #[test]
    fn framing_faults_are_errors() {
        let valid_then_truncated = [V07_RECORD0, &[0x80]].concat();
        let cases: Vec<(&str, Vec<u8>, OtelError)> = vec![
            (
                "lone continuation byte",
                vec![0x80],
                OtelError::TruncatedLength { offset: 0 },
            ),
            (
                "overlong varint",
                vec![
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                OtelError::InvalidLength { offset: 0 },
            ),
            (
                "length past the end",
                vec![50, 0x0a, 0x00, 0x00],
                OtelError::LengthPastEnd {
                    offset: 0,
                    length: 50,
                    remaining: 3,
                },
            ),
            (
                "valid message, then a truncated prefix",
                valid_then_truncated,
                OtelError::TruncatedLength {
                    offset: V07_RECORD0.len(),
                },
            ),
            (
                "second message runs past the end",
                [V10_RECORD, &[0x05, 0x0a]].concat(),
                OtelError::LengthPastEnd {
                    offset: V10_RECORD.len(),
                    length: 5,
                    remaining: 1,
                },
            ),
        ];
        for (name, record, expected) in cases {
            let mut out = Vec::new();
            assert_eq!(
                decode(&record, OtelVersion::Any, &mut out),
                Err(expected),
                "{name}"
            );
        }
    }

    #[test]
    fn garbage_protobuf_is_an_error() {
        // Field 1 with a length varint that never ends inside the 5-byte message.
        let record = [0x05, 0x0a, 0xff, 0xff, 0xff, 0xff];
        let mut out = Vec::new();
        match decode(&record, OtelVersion::Any, &mut out) {
            Err(OtelError::Protobuf { offset: 0, reason }) => assert!(!reason.is_empty()),
            other => panic!("expected a protobuf error, got {other:?}"),
        }
        // A wire type protobuf does not define (7).
        let record = [0x01, 0x0f];
        assert!(matches!(
            decode(&record, OtelVersion::Any, &mut out),
            Err(OtelError::Protobuf { offset: 0, .. })
        ));
    }

    #[test]
    fn deeply_nested_values_are_an_error_not_a_stack_overflow() {
        let mut value = pb::AnyValue {
            value: Some(pb::Value::String("leaf".into())),
        };
        for _ in 0..200 {
            value = pb::AnyValue {
                value: Some(pb::Value::Kvlist(pb::KeyValueList {
                    values: vec![pb::KeyValue {
                        key: "k".into(),
                        value: Some(value),
                    }],
                })),
            };
        }
        let record = framed(pb::Metric {
            name: "amazonaws.com/AWS/EC2/CPUUtilization".into(),
            summary: Some(pb::Summary {
                data_points: vec![pb::SummaryDataPoint {
                    attributes: vec![pb::KeyValue {
                        key: "Dimensions".into(),
                        value: Some(value),
                    }],
                    ..Default::default()
                }],
            }),
            ..Default::default()
        });
        let mut out = Vec::new();
        match decode(&record, OtelVersion::Any, &mut out) {
            Err(OtelError::Protobuf { offset: 0, reason }) => {
                assert!(reason.contains("recursion limit"), "{reason}");
            }
            other => panic!("expected prost's recursion limit, got {other:?}"),
        }
    }

    #[test]
    fn empty_records_and_messages_yield_nothing() {
        for record in [&[][..], &[0x00], &[0x00, 0x00]] {
            let mut out = Vec::new();
            assert_eq!(
                decode(record, OtelVersion::V10, &mut out),
                Ok(()),
                "{record:?}"
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn recognises_otel_records() {
        let cases: [(&str, &[u8], bool); 8] = [
            ("0.7 capture", V07_RECORD0, true),
            ("1.0 fixture", V10_RECORD, true),
            ("json", br#"{"a":1}"#, false),
            ("gzip magic", &[0x1f, 0x8b, 0x08, 0x00], false),
            ("lone continuation byte", &[0x80], false),
            ("empty", &[], false),
            ("empty message", &[0x00, 0x0a], false),
            ("wrong first tag", &[0x02, 0x12, 0x00], false),
        ];
        for (name, record, expected) in cases {
            assert_eq!(looks_like_otel(record), expected, "{name}");
        }
    }

    #[test]
    fn maps_ucum_units_to_cloudwatch_names() {
        let cases = [
            ("s", Some("Seconds")),
            ("us", Some("Microseconds")),
            ("ms", Some("Milliseconds")),
            ("By", Some("Bytes")),
            ("kBy", Some("Kilobytes")),
            ("MBy", Some("Megabytes")),
            ("GBy", Some("Gigabytes")),
            ("TBy", Some("Terabytes")),
            ("bit", Some("Bits")),
            ("kbit", Some("Kilobits")),
            ("MBit", Some("Megabits")),
            ("GBit", Some("Gigabits")),
            ("Tbit", Some("Terabits")),
            ("%", Some("Percent")),
            ("{Count}", Some("Count")),
            ("1", Some("None")),
            ("By/s", Some("Bytes/Second")),
            ("kBy/s", Some("Kilobytes/Second")),
            ("MBy/s", Some("Megabytes/Second")),
            ("GBy/s", Some("Gigabytes/Second")),
            ("TBy/s", Some("Terabytes/Second")),
            ("bit/s", Some("Bits/Second")),
            ("kbit/s", Some("Kilobits/Second")),
            ("MBit/s", Some("Megabits/Second")),
            ("GBit/s", Some("Gigabits/Second")),
            ("Tbit/s", Some("Terabits/Second")),
            ("{Count}/s", Some("Count/Second")),
            // Not in the table: kept as given.
            ("NoneTranslated", Some("NoneTranslated")),
            ("ms/s", Some("ms/s")),
            ("", None),
        ];
        for (ucum, expected) in cases {
            assert_eq!(cloudwatch_unit(ucum).as_deref(), expected, "{ucum:?}");
        }
    }

    #[test]
    fn names_percentiles_like_cloudwatch() {
        let cases = [
            (0.5, "p50"),
            (0.9, "p90"),
            (0.95, "p95"),
            (0.99, "p99"),
            (0.999, "p99.9"),
            (0.9999, "p99.99"),
            (0.1, "p10"),
            (0.001, "p0.1"),
        ];
        for (quantile, expected) in cases {
            assert_eq!(percentile_name(quantile), expected, "{quantile}");
        }
    }

    #[test]
    fn splits_metric_names_at_the_last_slash() {
        let cases = [
            (
                "amazonaws.com/AWS/EBS/VolumeReadOps",
                ("AWS/EBS", "VolumeReadOps"),
            ),
            ("amazonaws.com/MyApp/Latency", ("MyApp", "Latency")),
            ("amazonaws.com/Orphan", ("", "Orphan")),
            ("", ("", "")),
        ];
        for (name, expected) in cases {
            assert_eq!(split_metric_name(name), expected, "{name}");
        }
    }

    #[test]
    fn reads_the_stream_name_from_the_exporter_arn() {
        let cases = [
            (
                "arn:aws:cloudwatch:us-east-1:677435890598:metric-stream/custom_ebs_metric",
                Some("custom_ebs_metric"),
            ),
            (
                "arn:aws:cloudwatch:us-east-1:677435890598:metric-stream/",
                None,
            ),
            ("not an arn", None),
        ];
        for (arn, expected) in cases {
            assert_eq!(stream_name(arn).as_deref(), expected, "{arn}");
        }
    }
}
