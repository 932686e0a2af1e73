use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::parallel::split_runs;
use super::*;
use crate::event::lines::{EventLines, EventMeta};
use crate::limits::{DecodeBudget, DecodeStop};

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
    let one = decode_records_in_parallel(&encoded, &delivery, &settings, 1, &unlimited).unwrap();
    for threads in [2, 3, 8] {
        let many = decode_records_in_parallel(&encoded, &delivery, &settings, threads, &unlimited)
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
        let error = decode_records_in_parallel(&encoded, &delivery, &reject, threads, &unlimited)
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
            decoded
                .formats
                .keys()
                .map(|format| format.as_str())
                .collect::<Vec<_>>(),
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
    let all = decode_records_in_parallel(&encoded, &delivery, &settings, 1, &unlimited).unwrap();
    let needed = unlimited.used();
    assert_eq!(all.events.len(), 3200);
    assert!(
        needed > 100 * (record.len() as u64 * 8),
        "the shape amplifies: {needed} bytes from {}",
        record.len() * 8
    );
    for threads in [1, 2] {
        let budget = Arc::new(DecodeBudget::new(needed / 3, Box::new(|_| true)));
        let result = decode_records_in_parallel(&encoded, &delivery, &settings, threads, &budget);
        assert_eq!(
            result.unwrap_err(),
            DecodeError::Stopped(DecodeStop::TooLarge { limit: needed / 3 }),
            "{threads} threads"
        );
        assert!(budget.used() < needed / 3 + 4096, "stopped early");
        let enough = Arc::new(DecodeBudget::new(needed, Box::new(|_| true)));
        let decoded =
            decode_records_in_parallel(&encoded, &delivery, &settings, threads, &enough).unwrap();
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

/// The configuration names stay as they were documented.
#[test]
fn format_names_are_the_documented_ones() {
    assert_eq!(
        FORMAT_NAMES,
        [
            "auto",
            "cloudwatch_logs",
            "cloudwatch_logs_messages",
            "metric_stream_json",
            "metric_stream_otel07",
            "metric_stream_otel10",
            "eventbridge",
            "vpc_flow",
            "raw",
        ]
    );
    for format in Format::ALL {
        assert_eq!(format.as_str().parse::<Format>(), Ok(format));
    }
}

/// The metrics' series that start at zero are exactly the formats decoding counts:
/// one record of each kind, good and bad, through every format setting, and the
/// formats counted for what came out.
#[test]
fn counted_formats_are_the_series_metrics_start() {
    use std::collections::BTreeSet;

    let vpc_line = "2 123456789012 eni-0a1b2c3d 10.0.0.1 10.0.0.2 443 49152 6 10 840 1620000000 1620000060 ACCEPT OK";
    let trail = r#"{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"GetObject","eventTime":"2024-01-01T00:00:00Z"}"#;
    let trail_event = format!(
        r#"{{"detail-type":"AWS API Call via CloudTrail","source":"aws.s3","detail":{trail}}}"#
    );
    // One `ExportMetricsServiceRequest` holding one empty `ResourceMetrics`.
    let otel: &[u8] = &[0x02, 0x0a, 0x00];
    let cases: &[(Format, &[u8])] = &[
        (Format::Auto, ENVELOPE),
        (Format::Auto, METRIC),
        (Format::Auto, EVENT),
        (Format::Auto, trail_event.as_bytes()),
        (Format::Auto, otel),
        (Format::Auto, br#"{"a":1}"#),
        (Format::Auto, b"hello"),
        (Format::Auto, &[0xff, 0x00, 0x01]),
        (Format::CloudwatchLogsMessages, b"a line"),
        (Format::VpcFlow, vpc_line.as_bytes()),
        (Format::MetricStreamOtel10, otel),
        (Format::Auto, &[0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad]),
        (Format::CloudwatchLogs, b"not an envelope"),
        (Format::CloudwatchLogsMessages, &[0xff, 0xfe]),
        (Format::MetricStreamJson, b"not metrics"),
        (Format::MetricStreamOtel07, &[0xff, 0xff, 0xff]),
        (Format::MetricStreamOtel10, &[0xff, 0xff, 0xff]),
        (Format::Auto, &[0x04, 0x0a, 0x05, 0x01, 0x02]),
        (Format::Eventbridge, b"not an event"),
        (Format::VpcFlow, b"not a flow log line"),
    ];
    let (mut counted, mut dead) = (BTreeSet::new(), BTreeSet::new());
    for (format, record) in cases {
        let settings = DecodeSettings {
            default_format: *format,
            ..DecodeSettings::default()
        };
        let decoded = decode(&[record], &settings).unwrap();
        counted.extend(decoded.formats.keys().map(|format| format.as_str()));
        dead.extend(
            decoded
                .dead_letter_formats
                .iter()
                .map(|format| format.as_str()),
        );
    }
    let records: Vec<Cow<'_, str>> = vec!["@@not base64@@".into()];
    let decoded =
        decode_records(&records, &Delivery::default(), &DecodeSettings::default()).unwrap();
    dead.extend(
        decoded
            .dead_letter_formats
            .iter()
            .map(|format| format.as_str()),
    );
    let metrics_counted: BTreeSet<&str> = crate::metrics::DECODED_FORMATS.into_iter().collect();
    let metrics_dead: BTreeSet<&str> = crate::metrics::DEAD_LETTER_FORMATS.into_iter().collect();
    assert_eq!(counted, metrics_counted);
    assert_eq!(dead, metrics_dead);
}

/// A dead letter's reason is the record error's text, which names the format
/// and the fault as the sender sees them.
#[test]
fn dead_letter_reasons_are_the_record_errors_text() {
    let table: &[(Format, &[u8], &str)] = &[
        (
            Format::CloudwatchLogs,
            br#"{"messageType":"NOPE"}"#,
            r#"unknown CloudWatch Logs messageType "NOPE""#,
        ),
        (
            Format::CloudwatchLogs,
            b"",
            "empty record: no CloudWatch Logs envelope",
        ),
        (
            Format::MetricStreamJson,
            b"",
            "empty record: no Metric Streams JSON data point",
        ),
        (
            Format::Eventbridge,
            b"[1]",
            "EventBridge event is not a JSON object",
        ),
        (
            Format::Eventbridge,
            br#"{"source":"s"}"#,
            "EventBridge event lacks source, detail-type or detail",
        ),
        (Format::VpcFlow, b" \n ", "empty record: no flow log line"),
        (
            Format::VpcFlow,
            b"two words",
            r#"not a flow log line of the configured format: "two words""#,
        ),
    ];
    for (format, record, reason) in table {
        let settings = DecodeSettings {
            default_format: *format,
            ..DecodeSettings::default()
        };
        let decoded = decode(&[record], &settings).unwrap();
        let dead = &events(&decoded.dead_letters.concat())[0];
        assert_eq!(dead["reason"], *reason, "{format:?}");
        assert_eq!(dead["format"], format.as_str(), "{format:?}");
    }
}

/// A pool lends its idle slots to a big delivery only, never the one its caller
/// holds, and takes them back when decoding ends; what it decodes is what one
/// thread decodes.
#[tokio::test]
async fn a_pool_lends_idle_slots_to_big_deliveries() {
    let pool = DecodePool::new(3);
    assert_eq!(pool.cores(), 3);
    let held = pool.slot().await.unwrap();
    let small: Vec<Cow<'_, str>> = vec![STANDARD.encode(METRIC).into()];
    assert!(pool.borrow_idle(&small).is_empty());
    let big: Vec<Cow<'_, str>> = vec!["A".repeat(PARALLEL_DECODE_MIN_BYTES / 4).into(); 4];
    let borrowed = pool.borrow_idle(&big);
    assert_eq!(borrowed.len(), 2);
    assert!(pool.borrow_idle(&big).is_empty(), "none left to lend");
    drop(borrowed);
    assert_eq!(pool.borrow_idle(&big).len(), 2, "given back");
    drop(held);
    assert_eq!(DecodePool::new(0).cores(), 1);

    let records: Vec<Cow<'_, str>> = [ENVELOPE, METRIC, EVENT, b"text"]
        .iter()
        .map(|record| STANDARD.encode(record).into())
        .collect();
    let delivery = Delivery::default();
    let settings = DecodeSettings::default();
    let budget = Arc::new(DecodeBudget::unlimited());
    let pooled = pool
        .decode(&records, &delivery, &settings, &budget)
        .unwrap();
    let alone = decode_records(&records, &delivery, &settings).unwrap();
    assert_eq!(pooled.events.concat(), alone.events.concat());
    assert_eq!(pooled.formats, alone.formats);
}

/// Work run on the pool gets the pool to borrow from, and a panic in it is
/// reported, not propagated, with its slot given back.
#[tokio::test]
async fn pool_work_runs_on_a_slot_and_a_panic_frees_it() {
    fn buggy(_: &DecodePool) -> u8 {
        panic!("decoder bug")
    }
    let pool = DecodePool::new(1);
    assert_eq!(pool.run(buggy).await, Err(PoolError::Crashed));
    let big: Vec<Cow<'_, str>> = vec!["A".repeat(PARALLEL_DECODE_MIN_BYTES).into()];
    let lent = pool.run(move |pool| pool.borrow_idle(&big).len()).await;
    assert_eq!(lent, Ok(0), "the work's own slot is not lent to it");
    let wide = DecodePool::new(3);
    let big: Vec<Cow<'_, str>> = vec!["A".repeat(PARALLEL_DECODE_MIN_BYTES).into()];
    assert_eq!(
        wide.run(move |pool| pool.borrow_idle(&big).len()).await,
        Ok(2)
    );
}
