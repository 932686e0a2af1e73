//! The cost of serving metric streams as Prometheus series, next to what decoding
//! the same delivery costs: a real 1160-point Metric Streams JSON delivery
//! (telegraf's capture, `tests/fixtures/telegraf/records.json`) decoded, turned
//! into samples, committed to a `prometheus` sink, and encoded as the remote write
//! requests of a `remote_write` sink (grouped into series, protobuf, snappy); and
//! one scrape of a sink holding 100,000 series, in the text format and in
//! OpenMetrics.
//!
//! Run with `cargo bench --bench series`; per-point costs are in
//! docs/performance.md.

#![allow(missing_docs, reason = "benchmark binary")]

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hydrant::decode::{DecodeSettings, decode_records};
use hydrant::event::{Delivery, Metric};
use hydrant::firehose::DeliveryRequest;
use hydrant::metrics::Metrics;
use hydrant::series::{Naming, samples};
use hydrant::sink::SinkBatch;
use hydrant::sink::dedup::DeliveryKey;
use hydrant::sink::prometheus::{Format, PrometheusConfig, PrometheusSink};
use hydrant::sink::remote_write::{DEFAULT_MAX_SAMPLES_PER_REQUEST, Series, wire};

/// Series a large account's streams hold in one scrape target.
const SCRAPE_SERIES: usize = 100_000;

fn capture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/telegraf/records.json"
    ))
    .expect("the fixture is in the repository")
}

/// The capture's records decoded into a batch for a sink.
fn batch_of(body: &[u8], delivery: &Delivery) -> SinkBatch {
    let request = DeliveryRequest::parse(body, 10_000).expect("a valid capture");
    let decoded = decode_records(&request.records, delivery, &DecodeSettings::default())
        .expect("the capture decodes");
    SinkBatch {
        delivery: Arc::new(delivery.clone()),
        dedup_key: DeliveryKey::new(None, "bench"),
        events: decoded.events,
        dead_letters: decoded.dead_letters,
    }
}

/// One Metric Streams JSON data point for instance `n`: five series of its own.
fn stream_point(n: usize) -> String {
    format!(
        r#"{{"metric_stream_name":"bench","account_id":"123456789012","region":"eu-west-1","namespace":"AWS/EC2","metric_name":"CPUUtilization","dimensions":{{"InstanceId":"i-{n:017x}"}},"timestamp":1700000000000,"value":{{"max":91.25,"min":3.5,"sum":412.75,"count":7}},"unit":"Percent"}}"#
    )
}

fn series(c: &mut Criterion) {
    let body = capture();
    let delivery = Delivery::default();
    let batch = batch_of(&body, &delivery);
    let points = batch.events.len() as u64;
    let metrics: Vec<Metric> = batch
        .events
        .iter()
        .map(|(_, line)| serde_json::from_slice(line).expect("a metric line"))
        .collect();

    let mut group = c.benchmark_group("metric_stream_1160_points");
    group.throughput(Throughput::Elements(points));
    group.bench_function("decode", |b| {
        b.iter(|| black_box(batch_of(black_box(&body), &delivery)));
    });
    group.bench_function("samples_yace", |b| {
        b.iter(|| {
            for metric in &metrics {
                black_box(samples(black_box(metric), Naming::Yace));
            }
        });
    });
    let registry = Metrics::new(10);
    group.bench_function("commit_to_prometheus_sink", |b| {
        let sink = PrometheusSink::new(&PrometheusConfig::default(), registry.prometheus_sink("b"));
        b.iter(|| sink.commit(black_box(&batch)).expect("in memory"));
    });
    // What a remote_write commit does before the network: the points' samples
    // grouped into series and encoded as requests of the default size.
    group.bench_function("remote_write_requests", |b| {
        b.iter(|| {
            let all = Series::group(
                metrics
                    .iter()
                    .flat_map(|metric| samples(black_box(metric), Naming::Yace)),
            );
            for request in wire::requests(&all, DEFAULT_MAX_SAMPLES_PER_REQUEST) {
                black_box(wire::body(request));
            }
        });
    });
    group.finish();

    // A sink holding SCRAPE_SERIES series (five per point), filled once through
    // the decoder, in records of 500 points as Metric Streams sends them.
    let records: Vec<std::borrow::Cow<'_, str>> = (0..SCRAPE_SERIES / 5)
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|chunk| {
            let text: String = chunk.iter().map(|&n| stream_point(n) + "\n").collect();
            STANDARD.encode(text).into()
        })
        .collect();
    let decoded = decode_records(&records, &delivery, &DecodeSettings::default())
        .expect("generated points decode");
    let filled = PrometheusSink::new(&PrometheusConfig::default(), registry.prometheus_sink("s"));
    filled
        .commit(&SinkBatch {
            events: decoded.events,
            ..batch.clone()
        })
        .expect("in memory");
    let held = filled
        .render(Format::Text)
        .lines()
        .filter(|line| !line.starts_with('#'))
        .count();
    assert_eq!(held, SCRAPE_SERIES, "the sink holds every generated series");
    let mut group = c.benchmark_group("scrape_100k_series");
    group.throughput(Throughput::Elements(SCRAPE_SERIES as u64));
    group.sample_size(20);
    for (name, format) in [("text", Format::Text), ("openmetrics", Format::OpenMetrics)] {
        group.bench_function(name, |b| b.iter(|| black_box(filled.render(format))));
    }
    group.finish();
}

criterion_group!(benches, series);
criterion_main!(benches);
