//! Property tests: random events are encoded the way AWS encodes them, decoded by
//! Hydrant, and must come back field for field. JSON sent by users must come back
//! token for token: the same numbers, keys and strings, as written.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hydrant::decode::{DecodeSettings, Format, decode_records};
use hydrant::event::Delivery;
use proptest::prelude::*;
use serde_json::{Value, json};

mod json_tokens;
use json_tokens::{Token, member, span, tokenize};

fn decode(records: &[Vec<u8>], format: Format) -> (Vec<Value>, usize) {
    let encoded: Vec<Cow<'_, str>> = records
        .iter()
        .map(|record| STANDARD.encode(record).into())
        .collect();
    let settings = DecodeSettings {
        default_format: format,
        ..DecodeSettings::default()
    };
    let decoded = decode_records(&encoded, &Delivery::default(), &settings).unwrap();
    let events = std::str::from_utf8(&decoded.events.concat())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (events, decoded.dead_letters.len())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_./-]{0,20}"
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![-1e12..1e12_f64, Just(0.0), Just(1.5e-300)]
}

#[derive(Debug, Clone)]
struct LogIn {
    id: String,
    timestamp: i64,
    message: String,
}

fn log_event() -> impl Strategy<Value = LogIn> {
    ("[0-9]{56}", 0..4_102_444_800_000_i64, any::<String>()).prop_map(|(id, timestamp, message)| {
        LogIn {
            id,
            timestamp,
            message,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// CloudWatch Logs: envelopes (gzip'd or not, one or two per record) round-trip.
    #[test]
    fn cloudwatch_logs_round_trip(
        group in name(),
        stream in name(),
        envelopes in prop::collection::vec(prop::collection::vec(log_event(), 0..6), 1..3),
        gzipped in any::<bool>(),
    ) {
        let mut record = Vec::new();
        for events in &envelopes {
            let envelope = json!({
                "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": group,
                "logStream": stream, "subscriptionFilters": ["f"],
                "logEvents": events.iter().map(|e| json!({"id": e.id, "timestamp": e.timestamp, "message": e.message})).collect::<Vec<_>>(),
            });
            let text = envelope.to_string();
            if gzipped { record.extend(gzip(text.as_bytes())) } else { record.extend(text.bytes()); record.push(b'\n') }
        }
        let (events, dead) = decode(&[record], Format::CloudwatchLogs);
        prop_assert_eq!(dead, 0);
        let expected: Vec<&LogIn> = envelopes.iter().flatten().collect();
        prop_assert_eq!(events.len(), expected.len());
        for (event, sent) in events.iter().zip(expected) {
            prop_assert_eq!(&event["kind"], "log");
            prop_assert_eq!(event["message"].as_str().unwrap(), sent.message.as_str());
            prop_assert_eq!(event["timestamp"].as_i64().unwrap(), sent.timestamp);
            prop_assert_eq!(event["aws"]["event_id"].as_str().unwrap(), sent.id.as_str());
            prop_assert_eq!(event["aws"]["log_group"].as_str().unwrap(), group.as_str());
            prop_assert_eq!(event["aws"]["log_stream"].as_str().unwrap(), stream.as_str());
        }
    }

    /// Metric Streams JSON: data points with every kind of statistic round-trip.
    #[test]
    fn metric_stream_json_round_trip(
        points in prop::collection::vec(
            (name(), name(), prop::collection::btree_map(name(), name(), 0..4), 0..4_102_444_800_000_i64,
             finite(), finite(), finite(), finite(), prop::collection::vec((prop::sample::select(vec!["p50", "p99", "p99.9", "TM(10%:90%)", "IQM", "WM(5%:95%)"]), finite()), 0..4)),
            1..5),
    ) {
        let mut record = String::new();
        for (namespace, metric, dimensions, timestamp, count, sum, min, max, extra) in &points {
            let mut value = serde_json::Map::new();
            for (key, v) in [("count", count), ("sum", sum), ("min", min), ("max", max)] {
                value.insert(key.into(), json!(v));
            }
            for (key, v) in extra { value.insert((*key).into(), json!(v)); }
            record.push_str(&json!({"metric_stream_name": "s", "account_id": "123456789012", "region": "eu-west-1",
                "namespace": namespace, "metric_name": metric, "dimensions": dimensions, "timestamp": timestamp,
                "value": value, "unit": "Count"}).to_string());
            record.push('\n');
        }
        let (events, dead) = decode(&[record.into_bytes()], Format::Auto);
        prop_assert_eq!(dead, 0);
        prop_assert_eq!(events.len(), points.len());
        for (event, (namespace, metric, dimensions, timestamp, count, sum, min, max, extra)) in events.iter().zip(&points) {
            prop_assert_eq!(&event["kind"], "metric");
            prop_assert_eq!(event["namespace"].as_str().unwrap(), namespace.as_str());
            prop_assert_eq!(event["metric_name"].as_str().unwrap(), metric.as_str());
            prop_assert_eq!(&event["dimensions"], &json!(dimensions));
            prop_assert_eq!(event["timestamp"].as_i64().unwrap(), *timestamp);
            for (key, v) in [("count", count), ("sum", sum), ("min", min), ("max", max)] {
                prop_assert_eq!(event["value"][key].as_f64().unwrap(), *v);
            }
            let mut last: BTreeMap<&str, f64> = BTreeMap::new();
            for (key, v) in extra { last.insert(key, *v); }
            for (key, v) in last { prop_assert_eq!(event["value"][key].as_f64().unwrap(), v); }
        }
    }

    /// Metric Streams OpenTelemetry 0.7 and 1.0, encoded by the small protobuf writer
    /// below (independent of the decoder's message types), round-trip.
    #[test]
    fn metric_stream_otel_round_trip(
        v10 in any::<bool>(),
        points in prop::collection::vec(
            (name(), name(), prop::collection::btree_map("[A-Za-z]{1,10}", name(), 0..3), 1..4_102_444_800_000_u64,
             0..1_000_000_u64, finite(), finite(), finite(), prop::sample::select(vec![0.5, 0.9, 0.99, 0.999])),
            1..4),
    ) {
        let mut record = Vec::new();
        for (namespace, metric, dimensions, millis, count, sum, min, max, quantile) in &points {
            let point = otel::summary_point(v10, namespace, metric, dimensions, millis * 1_000_000, *count, *sum, &[(0.0, *min), (*quantile, 0.25), (1.0, *max)]);
            let message = otel::request(&format!("amazonaws.com/{namespace}/{metric}"), "{Count}", &point);
            otel::varint(&mut record, message.len() as u64);
            record.extend(message);
        }
        let format = if v10 { Format::MetricStreamOtel10 } else { Format::MetricStreamOtel07 };
        let (events, dead) = decode(&[record], format);
        prop_assert_eq!(dead, 0);
        prop_assert_eq!(events.len(), points.len());
        for (event, (namespace, metric, dimensions, millis, count, sum, min, max, quantile)) in events.iter().zip(&points) {
            prop_assert_eq!(event["namespace"].as_str().unwrap(), namespace.as_str());
            prop_assert_eq!(event["metric_name"].as_str().unwrap(), metric.as_str());
            prop_assert_eq!(&event["dimensions"], &json!(dimensions));
            prop_assert_eq!(event["timestamp"].as_u64().unwrap(), *millis);
            prop_assert_eq!(event["account_id"].as_str().unwrap(), "123456789012");
            prop_assert_eq!(event["metric_stream_name"].as_str().unwrap(), "prop-stream");
            prop_assert_eq!(event["unit"].as_str().unwrap(), "Count");
            prop_assert_eq!(event["value"]["count"].as_f64().unwrap(), *count as f64);
            prop_assert_eq!(event["value"]["sum"].as_f64().unwrap(), *sum);
            prop_assert_eq!(event["value"]["min"].as_f64().unwrap(), *min);
            prop_assert_eq!(event["value"]["max"].as_f64().unwrap(), *max);
            let key = match *quantile { 0.5 => "p50", 0.9 => "p90", 0.99 => "p99", _ => "p99.9" };
            prop_assert_eq!(event["value"][key].as_f64().unwrap(), 0.25);
        }
    }

    /// EventBridge: the event is kept whole and its fields lifted.
    #[test]
    fn eventbridge_round_trip(source in name(), detail_type in "[A-Za-z ]{1,30}", detail in prop::collection::btree_map(name(), name(), 0..4)) {
        let event = json!({"version": "0", "id": "x", "detail-type": detail_type, "source": source, "account": "1",
            "time": "2024-01-01T00:00:00Z", "region": "r", "resources": [], "detail": detail});
        let (events, dead) = decode(&[event.to_string().into_bytes()], Format::Auto);
        prop_assert_eq!(dead, 0);
        prop_assert_eq!(&events[0]["data"], &event);
        prop_assert_eq!(events[0]["eventbridge"]["source"].as_str().unwrap(), source.as_str());
        prop_assert_eq!(events[0]["eventbridge"]["detail_type"].as_str().unwrap(), detail_type.as_str());
    }

    /// Raw records: whatever the bytes, the stored event gives them back.
    #[test]
    fn raw_records_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..200), text in any::<String>()) {
        for record in [bytes.clone(), text.clone().into_bytes()] {
            let (events, dead) = decode(std::slice::from_ref(&record), Format::Raw);
            prop_assert_eq!(dead, 0);
            let event = &events[0];
            let back = match event["format"].as_str().unwrap() {
                "text" => event["data"].as_str().unwrap().as_bytes().to_vec(),
                "binary" => STANDARD.decode(event["data"].as_str().unwrap()).unwrap(),
                "json" => {
                    let parsed: Value = serde_json::from_slice(&record).unwrap();
                    prop_assert_eq!(&event["data"], &parsed);
                    record.clone()
                }
                other => panic!("unexpected format {other}"),
            };
            prop_assert_eq!(back, record);
        }
    }
}

/// A minimal protobuf writer for the Metric Streams OpenTelemetry messages, written
/// from the published field numbers, independent of the decoder's types.
mod otel {
    use std::collections::BTreeMap;

    pub(super) fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
        varint(out, u64::from(field << 3 | 2));
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
        varint(out, u64::from(field << 3 | 1));
        out.extend_from_slice(&value.to_le_bytes());
    }

    fn string_kv(key: &str, value: &str) -> Vec<u8> {
        let mut kv = Vec::new();
        bytes_field(&mut kv, 1, key.as_bytes());
        bytes_field(&mut kv, 2, value.as_bytes());
        kv
    }

    /// `KeyValue{key, AnyValue{string_value}}`.
    fn key_value(key: &str, value: &str) -> Vec<u8> {
        let mut any = Vec::new();
        bytes_field(&mut any, 1, value.as_bytes());
        let mut kv = Vec::new();
        bytes_field(&mut kv, 1, key.as_bytes());
        bytes_field(&mut kv, 2, &any);
        kv
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the message's fields one to one"
    )]
    pub(super) fn summary_point(
        v10: bool,
        namespace: &str,
        metric: &str,
        dimensions: &BTreeMap<String, String>,
        time_nanos: u64,
        count: u64,
        sum: f64,
        quantiles: &[(f64, f64)],
    ) -> Vec<u8> {
        let mut point = Vec::new();
        if v10 {
            // 1.0: attributes (field 7) with a Dimensions kvlist.
            bytes_field(&mut point, 7, &key_value("Namespace", namespace));
            bytes_field(&mut point, 7, &key_value("MetricName", metric));
            let mut list = Vec::new();
            for (key, value) in dimensions {
                bytes_field(&mut list, 1, &key_value(key, value));
            }
            let mut any = Vec::new();
            bytes_field(&mut any, 6, &list);
            let mut kv = Vec::new();
            bytes_field(&mut kv, 1, b"Dimensions");
            bytes_field(&mut kv, 2, &any);
            bytes_field(&mut point, 7, &kv);
        } else {
            // 0.7: flat labels (field 1).
            bytes_field(&mut point, 1, &string_kv("Namespace", namespace));
            bytes_field(&mut point, 1, &string_kv("MetricName", metric));
            for (key, value) in dimensions {
                bytes_field(&mut point, 1, &string_kv(key, value));
            }
        }
        fixed64(
            &mut point,
            2,
            time_nanos - 60_000_000_000_u64.min(time_nanos),
        );
        fixed64(&mut point, 3, time_nanos);
        fixed64(&mut point, 4, count);
        fixed64(&mut point, 5, sum.to_bits());
        for (quantile, value) in quantiles {
            let mut q = Vec::new();
            fixed64(&mut q, 1, quantile.to_bits());
            fixed64(&mut q, 2, value.to_bits());
            bytes_field(&mut point, 6, &q);
        }
        point
    }

    /// One ExportMetricsServiceRequest with one metric holding one summary point.
    pub(super) fn request(name: &str, unit: &str, point: &[u8]) -> Vec<u8> {
        let mut summary = Vec::new();
        bytes_field(&mut summary, 1, point);
        let mut metric = Vec::new();
        bytes_field(&mut metric, 1, name.as_bytes());
        bytes_field(&mut metric, 3, unit.as_bytes());
        bytes_field(&mut metric, 11, &summary);
        let mut scope = Vec::new();
        bytes_field(&mut scope, 2, &metric);
        let mut resource = Vec::new();
        for (key, value) in [
            ("cloud.provider", "aws"),
            ("cloud.account.id", "123456789012"),
            ("cloud.region", "eu-west-1"),
            (
                "aws.exporter.arn",
                "arn:aws:cloudwatch:eu-west-1:123456789012:metric-stream/prop-stream",
            ),
        ] {
            bytes_field(&mut resource, 1, &key_value(key, value));
        }
        let mut resource_metrics = Vec::new();
        bytes_field(&mut resource_metrics, 1, &resource);
        bytes_field(&mut resource_metrics, 2, &scope);
        let mut request = Vec::new();
        bytes_field(&mut request, 1, &resource_metrics);
        request
    }
}

/// A JSON value as text: scalars keep their exact source text.
#[derive(Debug, Clone)]
enum Json {
    Scalar(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Numbers no double holds exactly, or at all, and plain ones.
fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?",
        prop::sample::select(vec![
            "1e400",
            "-1E+400",
            "-0.0e-7",
            "-0",
            "123456789012345678901234567890",
            "18446744073709551616",
            "-9223372036854775809",
            "0.1000000000000000055511151231257827",
            "4.9e-325",
        ])
        .prop_map(String::from),
    ]
}

/// A string token: raw non-ASCII, every escape, `\u` escapes (surrogate pairs and
/// lone surrogates alike), as source text with its quotes.
fn json_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<char>()
            .prop_filter("escaped in JSON", |c| *c >= ' ' && *c != '"' && *c != '\\')
            .prop_map(String::from),
        prop::sample::select(vec![
            "\\\"",
            "\\\\",
            "\\/",
            "\\b",
            "\\f",
            "\\n",
            "\\r",
            "\\t",
            "\\u00e9",
            "\\uD83D\\uDE00",
            "\\u0000",
            "\\ud800",
            "é",
            "漢",
            "😀",
            " ",
        ])
        .prop_map(String::from),
        "\\\\u[0-9a-fA-F]{4}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
}

/// Keys: often the same few, so objects get duplicate keys.
fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["\"a\"", "\"b\"", "\"a\\u0062\""]).prop_map(String::from),
        json_string(),
    ]
}

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        json_number(),
        json_string(),
        prop::sample::select(vec!["true", "false", "null"]).prop_map(String::from),
    ]
    .prop_map(Json::Scalar);
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((json_key(), inner), 0..6).prop_map(Json::Object),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Json> {
    prop::collection::vec((json_key(), json_value()), 0..6).prop_map(Json::Object)
}

fn json_container() -> impl Strategy<Value = Json> {
    prop_oneof![
        json_object(),
        prop::collection::vec(json_value(), 0..6).prop_map(Json::Array),
    ]
}

/// Whitespace put between tokens: none, spaces, tabs, and line breaks of every kind.
fn json_gaps() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "", "", "", " ", "\t", "\n", "\r\n", "\r", "\n    ", " \t\r\n ",
        ]),
        1..32,
    )
}

/// Writes `value` with the whitespace of `gaps` (taken in turn) between its tokens.
fn render(value: &Json, gaps: &mut impl Iterator<Item = &'static str>, out: &mut String) {
    match value {
        Json::Scalar(text) => out.push_str(text),
        Json::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(gaps.next().unwrap_or_default());
                    out.push(',');
                }
                out.push_str(gaps.next().unwrap_or_default());
                render(item, gaps, out);
            }
            out.push_str(gaps.next().unwrap_or_default());
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            for (index, (key, item)) in members.iter().enumerate() {
                if index > 0 {
                    out.push_str(gaps.next().unwrap_or_default());
                    out.push(',');
                }
                out.push_str(gaps.next().unwrap_or_default());
                out.push_str(key);
                out.push_str(gaps.next().unwrap_or_default());
                out.push(':');
                out.push_str(gaps.next().unwrap_or_default());
                render(item, gaps, out);
            }
            out.push_str(gaps.next().unwrap_or_default());
            out.push('}');
        }
    }
}

fn rendered(value: &Json, gaps: &[&'static str]) -> String {
    let mut out = String::new();
    render(value, &mut gaps.iter().copied().cycle(), &mut out);
    out
}

/// The stored lines of `records` decoded as `format`, checked to be valid JSON
/// (without building a value, which would reject lone surrogates in escapes) and one
/// line each, and the number of dead letters.
fn decode_lines(records: &[Vec<u8>], format: Format) -> (Vec<String>, usize) {
    let encoded: Vec<Cow<'_, str>> = records
        .iter()
        .map(|record| STANDARD.encode(record).into())
        .collect();
    let settings = DecodeSettings {
        default_format: format,
        ..DecodeSettings::default()
    };
    let decoded = decode_records(&encoded, &Delivery::default(), &settings).unwrap();
    let text = String::from_utf8(decoded.events.concat()).unwrap();
    assert!(!text.contains('\r'), "no raw CR in stored lines: {text:?}");
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for line in &lines {
        serde_json::from_str::<serde::de::IgnoredAny>(line)
            .unwrap_or_else(|error| panic!("stored line is not JSON ({error}): {line}"));
    }
    (lines, decoded.dead_letters.len())
}

/// The exact text of the top-level member `key` of a stored line.
fn stored<'a>(line: &'a str, key: &str) -> &'a str {
    let tokens = tokenize(line).unwrap();
    span(
        line,
        member(&tokens, key).unwrap_or_else(|| panic!("no {key} in {line}")),
    )
}

/// Whether two JSON texts hold the same tokens, numbers and strings as written.
fn same_tokens(stored: &str, sent: &str) -> Result<(), String> {
    let (stored_tokens, sent_tokens) = (tokenize(stored)?, tokenize(sent)?);
    if stored_tokens == sent_tokens {
        return Ok(());
    }
    let first_difference = stored_tokens
        .iter()
        .zip(&sent_tokens)
        .position(|(a, b)| a != b)
        .unwrap_or(stored_tokens.len().min(sent_tokens.len()));
    let around = |tokens: &[Token<'_>]| {
        let from = first_difference.saturating_sub(2);
        tokens[from..tokens.len().min(first_difference + 3)]
            .iter()
            .map(|token| token.text.to_owned())
            .collect::<Vec<_>>()
    };
    Err(format!(
        "token {first_difference} differs: stored {:?}, sent {:?}\nstored: {stored}\nsent:   {sent:?}",
        around(&stored_tokens),
        around(&sent_tokens)
    ))
}

/// Whether `text` spans lines, which is what makes Hydrant remove its whitespace.
fn spans_lines(text: &str) -> bool {
    text.contains(['\n', '\r'])
}

/// Sends `record` as a raw record; checks the stored `data` keeps every token and,
/// when the record was on one line, every byte. Returns the stored `data`.
fn check_raw_record(record: &str) -> Result<String, String> {
    let (lines, dead) = decode_lines(&[record.as_bytes().to_vec()], Format::Raw);
    if dead != 0 || lines.len() != 1 {
        return Err(format!("{dead} dead letters, {} lines", lines.len()));
    }
    if stored(&lines[0], "format") != "\"json\"" {
        return Err(format!("not stored as JSON: {}", lines[0]));
    }
    let data = stored(&lines[0], "data");
    same_tokens(data, record)?;
    let sent = record.trim_matches([' ', '\t', '\n', '\r']);
    if !spans_lines(sent) && data != sent {
        return Err(format!("one-line JSON changed: {data} for {sent}"));
    }
    Ok(data.to_owned())
}

/// The EventBridge event around `detail`, with `gaps` between its tokens.
fn eventbridge_event(detail: &Json, gaps: &[&'static str]) -> String {
    let field =
        |name: &str, value: &str| (format!("\"{name}\""), Json::Scalar(format!("\"{value}\"")));
    let event = Json::Object(vec![
        field("version", "0"),
        field("id", "6a7e8feb-b491-4cf7-a9f1-bf3703467718"),
        field("detail-type", "Order Placed"),
        field("source", "com.example.orders"),
        field("account", "111122223333"),
        field("time", "2024-01-01T00:00:00Z"),
        field("region", "eu-west-1"),
        (
            "\"resources\"".into(),
            Json::Array(vec![Json::Scalar("\"arn:aws:x\"".into())]),
        ),
        ("\"detail\"".into(), detail.clone()),
    ]);
    rendered(&event, gaps)
}

/// Sends `event` as an EventBridge record; checks `data` keeps every token of the
/// event (every byte when it was on one line), `detail` those of `detail`, and the
/// lifted fields. Returns the stored `data`.
fn check_eventbridge(event: &str, detail: &str) -> Result<String, String> {
    let (lines, dead) = decode_lines(&[event.as_bytes().to_vec()], Format::Eventbridge);
    if dead != 0 || lines.len() != 1 {
        return Err(format!("{dead} dead letters, {} lines", lines.len()));
    }
    let line = &lines[0];
    let data = stored(line, "data");
    same_tokens(data, event)?;
    if !spans_lines(event) && data != event {
        return Err(format!("one-line event changed: {data} for {event}"));
    }
    let data_tokens = tokenize(data)?;
    let stored_detail = span(data, member(&data_tokens, "detail").ok_or("no detail")?);
    same_tokens(stored_detail, detail)?;
    let lifted = stored(line, "eventbridge");
    let expected = r#"{"id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","source":"com.example.orders","detail_type":"Order Placed","account":"111122223333","region":"eu-west-1","time":"2024-01-01T00:00:00Z","resources":["arn:aws:x"]}"#;
    if lifted != expected || stored(line, "format") != "\"eventbridge\"" {
        return Err(format!("lifted fields changed: {line}"));
    }
    Ok(data.to_owned())
}

/// Sends `message` as a CloudWatch Logs message; checks `parsed` keeps every token
/// (every byte when the message is one line of JSON and nothing else), and that the
/// logged text is there byte for byte, as `message` or as `parsed`. Returns the
/// stored `parsed`.
fn check_log_message(message: &str) -> Result<String, String> {
    let envelope = json!({
        "messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "g",
        "logStream": "s", "subscriptionFilters": ["f"],
        "logEvents": [{"id": "1", "timestamp": 5, "message": message}],
    });
    let (lines, dead) = decode_lines(&[envelope.to_string().into_bytes()], Format::CloudwatchLogs);
    if dead != 0 || lines.len() != 1 {
        return Err(format!("{dead} dead letters, {} lines", lines.len()));
    }
    let line = &lines[0];
    if stored(line, "format") != "\"json\"" {
        return Err(format!("not parsed as JSON: {line}"));
    }
    let parsed = stored(line, "parsed");
    same_tokens(parsed, message)?;
    let tokens = tokenize(line)?;
    match member(&tokens, "message") {
        Some(text) => {
            let logged: String =
                serde_json::from_str(span(line, text)).map_err(|error| error.to_string())?;
            if logged != message {
                return Err(format!("message changed: {logged:?} for {message:?}"));
            }
            if parsed == message {
                return Err("message written twice".into());
            }
        }
        None if parsed != message => {
            return Err(format!("message dropped though parsed differs: {line}"));
        }
        None => {}
    }
    Ok(parsed.to_owned())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any JSON, with any whitespace between its tokens, comes back token for token
    /// whether it is sent as a raw record, as an EventBridge event's `detail`, or as
    /// a CloudWatch Logs message; one-line JSON comes back byte for byte.
    #[test]
    fn json_is_stored_as_sent(
        container in json_container(),
        object in json_object(),
        detail in json_value(),
        gaps in json_gaps(),
        around in prop::sample::select(vec![("", ""), ("", "\n"), (" ", "\r\n"), ("\n", "\n\n")]),
    ) {
        let record = format!("{}{}{}", around.0, rendered(&container, &gaps), around.1);
        check_raw_record(&record).map_err(TestCaseError::fail)?;

        let detail_text = rendered(&detail, &gaps);
        let event = eventbridge_event(&detail, &gaps);
        check_eventbridge(&event, &detail_text).map_err(TestCaseError::fail)?;

        let message = format!("{}{}{}", around.0, rendered(&object, &gaps), around.1);
        check_log_message(&message).map_err(TestCaseError::fail)?;
    }
}

/// Numbers no double holds, duplicate keys and key order survive every path, on one
/// line or several: each case is stored exactly as the minified text.
#[test]
fn json_regressions_are_stored_exactly() {
    // (JSON as sent, as stored)
    let table: &[(&str, &str)] = &[
        (
            "{\n  \"n\": 123456789012345678901234567890\n}",
            r#"{"n":123456789012345678901234567890}"#,
        ),
        (
            "{\n  \"n\": 18446744073709551616\n}",
            r#"{"n":18446744073709551616}"#,
        ),
        (
            "{\n  \"n\": 0.1000000000000000055511151231257827\n}",
            r#"{"n":0.1000000000000000055511151231257827}"#,
        ),
        ("{\n \"a\": 1,\n \"a\": 2\n}", r#"{"a":1,"a":2}"#),
        ("{\n \"b\": 1,\n \"a\": 2\n}", r#"{"b":1,"a":2}"#),
        ("{\n  \"n\": 1e400\n}", r#"{"n":1e400}"#),
        ("{\"n\": 1e400}", r#"{"n": 1e400}"#),
        ("{\r\n\t\"n\":\t-0.0e-7\r}", r#"{"n":-0.0e-7}"#),
        (
            "[\n \"say \\\"hi\\\" \\\\ \\u00e9 é\",\n  {\"k\" : \"a b\"}\n]",
            r#"["say \"hi\" \\ \u00e9 é",{"k":"a b"}]"#,
        ),
        (
            r#"{"n":123456789012345678901234567890,"m":18446744073709551616,"a":1,"a":2}"#,
            r#"{"n":123456789012345678901234567890,"m":18446744073709551616,"a":1,"a":2}"#,
        ),
    ];
    for &(sent, expected) in table {
        assert_eq!(
            check_raw_record(sent).unwrap_or_else(|error| panic!("raw {sent:?}: {error}")),
            expected,
            "raw record {sent:?}"
        );
        // Log messages are parsed when they are objects.
        if sent.starts_with('{') {
            assert_eq!(
                check_log_message(sent).unwrap_or_else(|error| panic!("message {sent:?}: {error}")),
                expected,
                "log message {sent:?}"
            );
        }
        // The event is minified as a whole when any of it spans lines: on one line
        // around the detail, the stored detail is the expected text; pretty-printed,
        // its tokens are checked.
        let detail = Json::Scalar(sent.to_owned());
        for gaps in [&[""][..], &["\n  "][..]] {
            let event = eventbridge_event(&detail, gaps);
            let data = check_eventbridge(&event, sent)
                .unwrap_or_else(|error| panic!("event {event:?}: {error}"));
            if gaps == [""] {
                let data_tokens = tokenize(&data).unwrap();
                let stored_detail = span(&data, member(&data_tokens, "detail").unwrap());
                assert_eq!(stored_detail, expected, "EventBridge detail {event:?}");
            }
        }
    }
}
