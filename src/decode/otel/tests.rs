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
const V10_RECORD: &[u8] = include_bytes!("../../../tests/fixtures/otel10/metric_stream_otel10.bin");

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
