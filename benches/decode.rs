//! Decoder throughput, in MB/s of input, next to the floor: what base64 + gunzip
//! (+ a borrowed JSON parse) alone cost on the same bytes.
//!
//! Run with `cargo bench --bench decode`. The CloudWatch Logs workload is the
//! reference one of the performance targets: 500 gzip'd records of 20 JSON log lines
//! of ~150–300 bytes each, spread over 7 log groups.

#![allow(missing_docs, reason = "benchmark binary")]

use std::borrow::Cow;
use std::hint::black_box;
use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hydrant::decode::{DecodeSettings, Format, decode_records};
use hydrant::event::Delivery;
use hydrant::firehose::DeliveryRequest;
use hydrant::limits::gunzip_capped;

const LOG_GROUPS: [&str; 7] = [
    "/aws/lambda/checkout",
    "/aws/lambda/payments",
    "/aws/ecs/api",
    "/aws/ecs/worker",
    "/aws/eks/cluster/app",
    "/aws/rds/instance/db/error",
    "/aws/apigateway/access",
];

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

/// A deterministic pseudo-random sequence, so every run measures the same bytes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn cloudwatch_record(index: usize, rng: &mut Lcg) -> Vec<u8> {
    let events: Vec<serde_json::Value> = (0..20)
        .map(|n| {
            let padding = "x".repeat(60 + (rng.next() % 150) as usize);
            let message = format!(
                r#"{{"level":"info","request_id":"{:016x}","path":"/api/v1/orders/{}","status":200,"duration_ms":{},"msg":"{padding}"}}"#,
                rng.next(),
                rng.next() % 10_000,
                rng.next() % 900
            );
            serde_json::json!({"id": format!("{:056}", index * 20 + n), "timestamp": 1_763_719_200_000_u64 + n as u64, "message": message})
        })
        .collect();
    let envelope = serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": LOG_GROUPS[index % LOG_GROUPS.len()],
        "logStream": format!("2026/11/21/[$LATEST]{:032x}", index),
        "subscriptionFilters": ["to-firehose"],
        "logEvents": events,
    });
    gzip(envelope.to_string().as_bytes())
}

fn body_of(records: &[Vec<u8>]) -> Vec<u8> {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|record| serde_json::json!({"data": STANDARD.encode(record)}))
        .collect();
    serde_json::json!({"requestId": "bench", "timestamp": 1_763_719_200_000_u64, "records": records})
        .to_string()
        .into_bytes()
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path),
    )
    .expect("fixture exists")
}

fn bench_request(c: &mut Criterion, name: &str, body: &[u8], format: Format) {
    let request = DeliveryRequest::parse(body, 10_000).expect("valid body");
    let settings = DecodeSettings {
        default_format: format,
        ..DecodeSettings::default()
    };
    let delivery = Delivery {
        path: "/bench".into(),
        ..Delivery::default()
    };
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("parse+decode", |b| {
        b.iter(|| {
            let request = DeliveryRequest::parse(black_box(body), 10_000).expect("valid body");
            decode_records(&request.records, &delivery, &settings).expect("decodes")
        });
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            decode_records(black_box(&request.records), &delivery, &settings).expect("decodes")
        });
    });
    // The floor on the same bytes: base64, and gunzip where a record is gzip'd.
    group.bench_function("floor_base64+gunzip", |b| {
        b.iter(|| {
            let mut scratch = Vec::new();
            for record in &request.records {
                scratch.clear();
                STANDARD
                    .decode_vec(record.as_bytes(), &mut scratch)
                    .expect("base64");
                if hydrant::limits::is_gzip(&scratch) {
                    black_box(gunzip_capped(&scratch, 1 << 26).expect("gzip"));
                }
            }
        });
    });
    group.finish();
}

/// A request of 500 gzip'd CloudWatch Logs records, the same bytes for a given seed.
fn cloudwatch_body(seed: u64) -> Vec<u8> {
    let mut rng = Lcg(seed);
    let records: Vec<Vec<u8>> = (0..500)
        .map(|index| cloudwatch_record(index, &mut rng))
        .collect();
    body_of(&records)
}

fn cloudwatch_logs(c: &mut Criterion) {
    let body = cloudwatch_body(42);

    // base64 + gunzip alone is `cloudwatch_logs/floor_base64+gunzip`.
    let mut floor = c.benchmark_group("floor_cloudwatch_logs");
    floor.throughput(Throughput::Bytes(body.len() as u64));
    floor.bench_function("parse+base64+gunzip+json", |b| {
        #[derive(serde::Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow, rename = "logEvents")]
            log_events: Vec<Event<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Event<'a> {
            #[serde(borrow)]
            message: Cow<'a, str>,
        }
        b.iter(|| {
            let request = DeliveryRequest::parse(black_box(&body), 10_000).expect("valid body");
            let mut scratch = Vec::new();
            let mut messages = 0;
            for record in &request.records {
                scratch.clear();
                STANDARD
                    .decode_vec(record.as_bytes(), &mut scratch)
                    .expect("base64");
                let json = gunzip_capped(&scratch, 1 << 26).expect("gzip");
                let envelope: Envelope<'_> = serde_json::from_slice(&json).expect("json");
                messages += envelope
                    .log_events
                    .iter()
                    .map(|event| event.message.len())
                    .sum::<usize>();
            }
            messages
        });
    });
    floor.finish();
    bench_request(c, "cloudwatch_logs", &body, Format::Auto);
}

fn metric_streams(c: &mut Criterion) {
    bench_request(
        c,
        "metric_stream_json",
        &fixture("telegraf/records.json"),
        Format::Auto,
    );
    bench_request(
        c,
        "metric_stream_otel07",
        &fixture("victoriametrics/firehose_metric_stream_otel07_request.json"),
        Format::Auto,
    );
    let otel10 = fixture("otel10/metric_stream_otel10.bin");
    bench_request(
        c,
        "metric_stream_otel10",
        &body_of(&vec![otel10; 100]),
        Format::MetricStreamOtel10,
    );
}

fn eventbridge_and_raw(c: &mut Criterion) {
    let event = br#"{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","detail-type":"CloudWatch Alarm State Change","source":"aws.cloudwatch","account":"111122223333","time":"2017-12-22T18:43:48Z","region":"us-west-1","resources":["arn:aws:cloudwatch:us-west-1:111122223333:alarm:cpu"],"detail":{"alarmName":"cpu","state":{"value":"ALARM","reason":"Threshold Crossed"}}}"#;
    bench_request(
        c,
        "eventbridge",
        &body_of(&vec![event.to_vec(); 500]),
        Format::Auto,
    );
    let json = br#"{"CHANGE":-0.23,"PRICE":4.8,"TICKER_SYMBOL":"NGC","SECTOR":"HEALTHCARE","note":"a raw JSON record of the sort Direct PUT producers send"}"#;
    bench_request(
        c,
        "raw_json",
        &body_of(&vec![json.to_vec(); 500]),
        Format::Auto,
    );
}

/// The other pieces of the request path: the envelope parse, base64, event
/// serialisation, and the file sink's append (write + fdatasync + journal).
fn pieces(c: &mut Criterion) {
    let body = cloudwatch_body(7);
    let request = DeliveryRequest::parse(&body, 10_000).expect("valid body");
    let mut group = c.benchmark_group("pieces");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("envelope_parse", |b| {
        b.iter(|| DeliveryRequest::parse(black_box(&body), 10_000).expect("valid body"));
    });
    group.bench_function("base64", |b| {
        b.iter(|| {
            let mut scratch = Vec::new();
            for record in &request.records {
                scratch.clear();
                STANDARD
                    .decode_vec(record.as_bytes(), &mut scratch)
                    .expect("base64");
            }
            scratch.len()
        });
    });
    group.finish();

    let delivery = Delivery {
        request_id: "0f3e2a9c-8d1b-4c7a-9e6f-5b4a3c2d1e0f".into(),
        path: "/bench".into(),
        source_arn: Some("arn:aws:firehose:eu-west-1:123456789012:deliverystream/bench".into()),
        ..Delivery::default()
    };
    let message = "an ordinary log line of about a hundred and fifty bytes, as an application would write it, with a request id 7f3a";
    let mut group = c.benchmark_group("event_serialisation");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("10k_log_events", |b| {
        b.iter(|| {
            let mut writer = hydrant::event::EventWriter::new(&delivery, 10_000 * 600);
            for index in 0..10_000 {
                let log = hydrant::event::LogEvent {
                    timestamp: 1_763_719_200_000,
                    message,
                    format: hydrant::event::EventFormat::Text,
                    parsed: None,
                    aws: hydrant::event::AwsHead::none(),
                    event_id: None,
                };
                let facts = hydrant::event::Facts {
                    format: Some(hydrant::event::EventFormat::Text),
                    log_group: Some("/aws/lambda/f"),
                    ..hydrant::event::Facts::default()
                };
                writer.log(index / 20, facts, &log);
            }
            writer.finish()
        });
    });
    group.finish();

    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let metrics = hydrant::metrics::Metrics::new(10);
    let settings = hydrant::sink::file::FileSinkSettings::new(dir.path());
    let sink =
        hydrant::sink::file::FileSink::open(settings, metrics.storage.clone()).expect("file sink");
    let lines = bytes::Bytes::from(vec![b'x'; 1 << 20]);
    let mut group = c.benchmark_group("file_sink");
    group.throughput(Throughput::Bytes(lines.len() as u64));
    group.sample_size(20);
    let mut n = 0u64;
    group.bench_function("append_1MiB_with_fsync", |b| {
        b.iter(|| {
            n += 1;
            let batch = hydrant::sink::file::Batch {
                dedup_key: hydrant::sink::dedup::DeliveryKey::new(None, &format!("bench {n}")),
                lines: vec![lines.clone()],
                events: 1,
                dead_letters: Vec::new(),
            };
            runtime.block_on(sink.commit(batch)).expect("committed")
        });
    });
    group.finish();
    runtime.block_on(sink.close());
}

criterion_group!(
    benches,
    cloudwatch_logs,
    metric_streams,
    eventbridge_and_raw,
    pieces
);
criterion_main!(benches);
