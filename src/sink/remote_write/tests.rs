use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use prost::Message as _;

use super::*;
use crate::event::{Delivery, EventWriter, Metric, Statistics};
use crate::metrics::Metrics;
use crate::series::Sample;
use crate::sink::SinkSettings as _;
use crate::sink::dedup::DeliveryKey;

// The remote write 1.0 messages, declared with prost to read back what the hand
// written encoder wrote.
#[derive(Clone, PartialEq, prost::Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<ProtoSample>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoSample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

fn decode_body(body: &[u8]) -> WriteRequest {
    let message = snap::raw::Decoder::new()
        .decompress_vec(body)
        .expect("snappy block format");
    WriteRequest::decode(message.as_slice()).expect("a WriteRequest")
}

fn sample(name: &str, labels: &[(&str, &str)], timestamp_ms: i64, value: f64) -> Sample {
    Sample {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        value,
        timestamp_ms,
    }
}

fn label_pairs(series: &TimeSeries) -> Vec<(&str, &str)> {
    series
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect()
}

#[test]
fn a_request_reads_back_with_sorted_labels_and_exact_values() {
    let samples = [
        sample(
            "aws_ec2_cpuutilization_sum",
            &[("InstanceId", "i-1"), ("account_id", "1"), ("region", "eu")],
            1_700_000_060_000,
            0.1 + 0.2,
        ),
        sample("up", &[], -5, f64::MIN_POSITIVE),
        sample(
            "aws_ec2_cpuutilization_sum",
            &[("InstanceId", "i-1"), ("account_id", "1"), ("region", "eu")],
            1_700_000_000_000,
            -0.0,
        ),
    ];
    let request = decode_body(&wire::body(&Series::group(samples)));
    assert_eq!(request.timeseries.len(), 2);
    let cpu = request
        .timeseries
        .iter()
        .find(|s| s.labels.len() == 4)
        .expect("the cpu series");
    // `__name__` sorts between upper-case and lower-case names, by bytes.
    assert_eq!(
        label_pairs(cpu),
        [
            ("InstanceId", "i-1"),
            ("__name__", "aws_ec2_cpuutilization_sum"),
            ("account_id", "1"),
            ("region", "eu"),
        ]
    );
    let times: Vec<i64> = cpu.samples.iter().map(|s| s.timestamp).collect();
    assert_eq!(
        times,
        [1_700_000_000_000, 1_700_000_060_000],
        "in time order"
    );
    assert_eq!(cpu.samples[0].value.to_bits(), (-0.0_f64).to_bits());
    assert_eq!(cpu.samples[1].value.to_bits(), (0.1_f64 + 0.2).to_bits());
    let up = request
        .timeseries
        .iter()
        .find(|s| s.labels.len() == 1)
        .expect("the up series");
    assert_eq!(label_pairs(up), [("__name__", "up")]);
    assert_eq!(up.samples[0].timestamp, -5, "negative times survive");
    assert_eq!(up.samples[0].value, f64::MIN_POSITIVE);
}

#[test]
fn one_series_keeps_one_sample_per_time_the_last_of_the_batch() {
    let labels = [("a", "1")];
    let grouped = Series::group([
        sample("m", &labels, 2, 1.0),
        sample("m", &labels, 1, 5.0),
        sample("m", &labels, 2, 7.0),
        sample("n", &labels, 2, 3.0),
    ]);
    assert_eq!(grouped.len(), 2);
    let m = grouped
        .iter()
        .find(|s| s.samples.len() == 2)
        .expect("series m");
    assert_eq!(m.samples, [(1, 5.0), (2, 7.0)]);
}

#[test]
fn long_texts_and_many_samples_encode_their_lengths() {
    // Lengths past one varint byte (127) and two (16,383).
    let long = "x".repeat(20_000);
    let samples = (0..300).map(|i| sample("m", &[("long", &long)], i, i as f64));
    let request = decode_body(&wire::body(&Series::group(samples)));
    assert_eq!(request.timeseries.len(), 1);
    assert_eq!(request.timeseries[0].labels[1].value, long);
    assert_eq!(request.timeseries[0].samples.len(), 300);
    assert_eq!(request.timeseries[0].samples[299].timestamp, 299);
}

#[test]
fn an_empty_request_is_an_empty_message() {
    assert!(decode_body(&wire::compress(&[])).timeseries.is_empty());
}

fn series_of(sizes: &[usize]) -> Vec<Series> {
    sizes
        .iter()
        .enumerate()
        .map(|(index, &size)| Series {
            labels: vec![u8::try_from(index).expect("few")],
            samples: (0..size).map(|t| (t as i64, 0.0)).collect(),
        })
        .collect()
}

#[test]
fn requests_hold_whole_series_within_the_cap() {
    let cases: [(&[usize], usize, &[usize]); 6] = [
        (&[], 10, &[]),
        (&[5], 10, &[1]),
        (&[5, 5, 5], 10, &[2, 1]),
        (&[5, 6], 10, &[1, 1]),
        // A series over the cap goes alone.
        (&[3, 12, 3], 10, &[1, 1, 1]),
        (&[1; 7], 3, &[3, 3, 1]),
    ];
    for (sizes, cap, expected) in cases {
        let series = series_of(sizes);
        let lengths: Vec<usize> = wire::requests(&series, cap)
            .iter()
            .map(|r| r.len())
            .collect();
        assert_eq!(lengths, expected, "sizes {sizes:?} cap {cap}");
    }
}

#[test]
fn every_answer_class_has_its_meaning() {
    let cases: [(u16, &str); 14] = [
        (200, "taken"),
        (204, "taken"),
        (400, "rejected"),
        (409, "rejected"),
        (413, "rejected"),
        (422, "rejected"),
        (401, "failed"),
        (403, "failed"),
        (404, "failed"),
        (405, "failed"),
        (407, "failed"),
        (429, "failed"),
        (503, "failed"),
        (308, "failed"),
    ];
    for (status, meaning) in cases {
        let answer = Answer::classify(status, "why".into());
        let got = match answer {
            Answer::Taken => "taken",
            Answer::Rejected { .. } => "rejected",
            Answer::Failed(_) => "failed",
        };
        assert_eq!(got, meaning, "status {status}");
    }
}

fn config(text: &str) -> Result<RemoteWriteConfig, String> {
    let config: RemoteWriteConfig = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    config.check()?;
    Ok(config)
}

#[test]
fn settings_are_checked_with_a_reason_naming_the_key() {
    let url = r#"url = "http://127.0.0.1:9090/api/v1/write""#;
    let cases = [
        (url.to_owned(), None),
        (
            format!("{url}\nbearer_token = \"t\"\nheaders = {{ X-Scope-OrgID = \"a\" }}"),
            None,
        ),
        (r#"url = "ftp://h/""#.into(), Some("not http or https")),
        (r#"url = "not a url""#.into(), Some("url:")),
        (
            r#"url = "https://u:p@h/api/v1/write""#.into(),
            Some("put credentials in basic_auth"),
        ),
        (
            format!(
                "{url}\nbearer_token = \"t\"\nbasic_auth = {{ username = \"u\", password = \"p\" }}"
            ),
            Some("not both"),
        ),
        (
            format!("{url}\nbearer_token = \"\""),
            Some("bearer_token is empty"),
        ),
        (
            format!("{url}\nbasic_auth = {{ username = \"\", password = \"p\" }}"),
            Some("username is empty"),
        ),
        (
            format!("{url}\nheaders = {{ Content-Encoding = \"gzip\" }}"),
            Some("set by Hydrant"),
        ),
        (
            format!("{url}\nheaders = {{ \"bad header\" = \"x\" }}"),
            Some("not a header name"),
        ),
        (
            format!("{url}\nheaders = {{ X-A = \"line\\nbreak\" }}"),
            Some("not a valid header value"),
        ),
        (
            format!("{url}\nbearer_token = \"t\"\nheaders = {{ Authorization = \"x\" }}"),
            Some("set by basic_auth or bearer_token"),
        ),
        (format!("{url}\ntimeout = \"0s\""), Some("timeout")),
        (
            format!("{url}\nmax_samples_per_request = 0"),
            Some("max_samples_per_request"),
        ),
        (
            format!("{url}\nmax_samples_per_request = 100001"),
            Some("max_samples_per_request"),
        ),
        (
            format!("{url}\ninclude_metrics = [\"\"]"),
            Some("include_metrics: empty pattern"),
        ),
        (format!("{url}\nnaming = \"nope\""), Some("unknown variant")),
        (format!("{url}\nsurprise = 1"), Some("unknown field")),
    ];
    for (text, expected) in cases {
        match (config(&text), expected) {
            (Ok(_), None) => {}
            (Err(reason), Some(part)) => {
                assert!(reason.contains(part), "{text:?}: {reason:?} lacks {part:?}");
            }
            (got, _) => panic!("{text:?}: got {got:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let config = config(
        r#"
        url = "https://mimir.example/api/v1/push"
        basic_auth = { username = "tenant", password = "hunter2" }
        headers = { X-Api-Key = "key-123" }
        "#,
    )
    .expect("valid");
    let text = format!("{config:?}");
    assert!(
        !text.contains("hunter2") && !text.contains("key-123"),
        "{text}"
    );
    assert!(
        text.contains("tenant") && text.contains("X-Api-Key"),
        "{text}"
    );
    let token = RemoteWriteConfig {
        bearer_token: Some("s3cr3t".into()),
        ..RemoteWriteConfig::new("http://h/")
    };
    assert!(!format!("{token:?}").contains("s3cr3t"));
}

/// What the scripted receiver saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    headers: axum::http::HeaderMap,
    request: WriteRequest,
}

/// A receiver that refuses (400) every request holding a series named
/// `refuse`, answers `status` to the others, and keeps what it saw.
async fn receiver(refuse: &'static str, status: StatusCode) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let kept = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let kept = Arc::clone(&kept);
                async move {
                    let request = decode_body(&body);
                    let refused = request.timeseries.iter().any(|series| {
                        series
                            .labels
                            .iter()
                            .any(|l| l.name == "__name__" && l.value.starts_with(refuse))
                    });
                    kept.lock().expect("lock").push(Seen { headers, request });
                    if refused {
                        (StatusCode::BAD_REQUEST, "out of order sample")
                    } else {
                        (status, "")
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/api/v1/write"), seen)
}

/// A metric data point with `sum` and `count` (three samples: sum, count,
/// average under `yace`).
fn point(namespace: &str, metric_name: &str, instance: &str, timestamp: i64) -> Metric {
    Metric {
        timestamp,
        metric_stream_name: None,
        account_id: Some("123456789012".into()),
        region: Some("eu-west-1".into()),
        namespace: namespace.into(),
        metric_name: metric_name.into(),
        dimensions: [("InstanceId".to_owned(), instance.to_owned())].into(),
        unit: None,
        value: Statistics(vec![("sum".into(), 10.0), ("count".into(), 4.0)]),
    }
}

fn batch(metrics: &[Metric]) -> SinkBatch {
    let delivery = Delivery {
        request_id: "r".into(),
        ..Delivery::default()
    };
    let mut writer = EventWriter::new(&delivery, 0);
    for (index, metric) in metrics.iter().enumerate() {
        writer.metric(index, metric);
    }
    SinkBatch {
        delivery: Arc::new(delivery),
        dedup_key: DeliveryKey::new(None, "r"),
        events: writer.finish(),
        dead_letters: crate::sink::EventLines::default(),
    }
}

fn sink(config: &RemoteWriteConfig) -> (RemoteWriteSink, Metrics) {
    let metrics = Metrics::new(1);
    let sink = RemoteWriteSink::open("rw", config, metrics.remote_write_sink("rw")).expect("opens");
    (sink, metrics)
}

fn counter(metrics: &Metrics, name: &str) -> String {
    metrics
        .render()
        .lines()
        .find(|line| line.starts_with(name))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_commit_sends_every_sample_with_the_protocol_headers() {
    let (url, seen) = receiver("never", StatusCode::NO_CONTENT).await;
    let config = RemoteWriteConfig {
        bearer_token: Some("tok".into()),
        headers: [("X-Scope-OrgID".to_owned(), "team-a".to_owned())].into(),
        max_samples_per_request: 7,
        ..RemoteWriteConfig::new(&url)
    };
    let (sink, metrics) = sink(&config);
    let points: Vec<Metric> = (0..5)
        .map(|i| point("AWS/EC2", "NetworkIn", &format!("i-{i}"), 60_000))
        .collect();
    sink.commit(&batch(&points)).await.expect("taken");
    let seen = seen.lock().expect("lock").clone();
    // 15 samples, 3 per instance and statistic series of one sample each; at 7 a
    // request: 7, 7, 1.
    let sizes: Vec<usize> = seen
        .iter()
        .map(|s| s.request.timeseries.iter().map(|t| t.samples.len()).sum())
        .collect();
    assert_eq!(sizes, [7, 7, 1]);
    let headers = &seen[0].headers;
    assert_eq!(headers["content-encoding"], "snappy");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["x-prometheus-remote-write-version"], "0.1.0");
    assert_eq!(headers["authorization"], "Bearer tok");
    assert_eq!(headers["x-scope-orgid"], "team-a");
    assert!(
        headers["user-agent"]
            .to_str()
            .expect("ascii")
            .starts_with("hydrant/")
    );
    assert_eq!(
        counter(&metrics, "hydrant_remote_write_samples_sent_total"),
        r#"hydrant_remote_write_samples_sent_total{sink="rw"} 15"#
    );
    assert_eq!(
        counter(
            &metrics,
            r#"hydrant_remote_write_requests_total{sink="rw",status="2xx"}"#
        ),
        r#"hydrant_remote_write_requests_total{sink="rw",status="2xx"} 3"#
    );
}

#[tokio::test]
async fn a_refused_series_is_narrowed_down_and_the_rest_is_taken() {
    // The receiver refuses any request holding the Lambda series, as Prometheus
    // refuses a whole request for one out-of-order sample.
    let (url, seen) = receiver("aws_lambda", StatusCode::NO_CONTENT).await;
    let (sink, metrics) = sink(&RemoteWriteConfig::new(&url));
    let mut points: Vec<Metric> = (0..40)
        .map(|i| point("AWS/EC2", "NetworkIn", &format!("i-{i}"), 60_000))
        .collect();
    points.insert(17, point("AWS/Lambda", "Errors", "x", 60_000));
    sink.commit(&batch(&points))
        .await
        .expect("refusals are not failures");
    assert_eq!(
        counter(&metrics, "hydrant_remote_write_samples_rejected_total"),
        r#"hydrant_remote_write_samples_rejected_total{sink="rw"} 3"#,
        "exactly the Lambda point's three samples"
    );
    assert_eq!(
        counter(&metrics, "hydrant_remote_write_samples_sent_total"),
        r#"hydrant_remote_write_samples_sent_total{sink="rw"} 120"#
    );
    let requests = seen.lock().expect("lock").len();
    assert!(requests <= 1 + MAX_SPLIT_REQUESTS, "{requests} requests");
}

#[tokio::test]
async fn splitting_stops_at_its_budget_and_counts_the_rest() {
    // Everything is refused: the commit stops narrowing after its budget.
    let (url, seen) = receiver("aws_", StatusCode::NO_CONTENT).await;
    let (sink, metrics) = sink(&RemoteWriteConfig::new(&url));
    let points: Vec<Metric> = (0..300)
        .map(|i| point("AWS/EC2", "NetworkIn", &format!("i-{i}"), 60_000))
        .collect();
    sink.commit(&batch(&points))
        .await
        .expect("refusals are not failures");
    assert_eq!(seen.lock().expect("lock").len(), 1 + MAX_SPLIT_REQUESTS);
    assert_eq!(
        counter(&metrics, "hydrant_remote_write_samples_rejected_total"),
        r#"hydrant_remote_write_samples_rejected_total{sink="rw"} 900"#
    );
}

#[tokio::test]
async fn throttling_server_errors_and_wrong_credentials_fail_the_commit() {
    for status in [
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::UNAUTHORIZED,
        StatusCode::NOT_FOUND,
    ] {
        let (url, _) = receiver("never", status).await;
        let (sink, metrics) = sink(&RemoteWriteConfig::new(&url));
        let error = sink
            .commit(&batch(&[point("AWS/EC2", "NetworkIn", "i-1", 60_000)]))
            .await
            .expect_err("not taken");
        assert!(
            matches!(error, SinkError::Unavailable(_)),
            "{status}: {error:?}"
        );
        assert!(error.to_string().contains(status.as_str()), "{error}");
        assert_eq!(
            counter(&metrics, "hydrant_remote_write_samples_rejected_total"),
            r#"hydrant_remote_write_samples_rejected_total{sink="rw"} 0"#
        );
        // The probe agrees with the commit.
        assert!(sink.probe().await.is_err(), "{status}");
    }
}

#[tokio::test]
async fn no_receiver_fails_the_commit_and_the_probe() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/api/v1/write",
        listener.local_addr().expect("address")
    );
    drop(listener);
    let (sink, metrics) = sink(&RemoteWriteConfig::new(&url));
    let error = sink
        .commit(&batch(&[point("AWS/EC2", "NetworkIn", "i-1", 60_000)]))
        .await
        .expect_err("nobody listens");
    assert!(error.to_string().contains("could not connect"), "{error}");
    assert!(sink.probe().await.is_err());
    assert_eq!(
        counter(
            &metrics,
            r#"hydrant_remote_write_requests_total{sink="rw",status="error"}"#
        ),
        r#"hydrant_remote_write_requests_total{sink="rw",status="error"} 2"#
    );
}

#[tokio::test]
async fn the_probe_is_an_empty_write_and_a_batch_without_metrics_sends_nothing() {
    let (url, seen) = receiver("never", StatusCode::NO_CONTENT).await;
    let (sink, _) = sink(&RemoteWriteConfig::new(&url));
    sink.probe().await.expect("up");
    sink.commit(&batch(&[])).await.expect("nothing to send");
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 1, "only the probe");
    assert!(seen[0].request.timeseries.is_empty());
}

#[tokio::test]
async fn filters_leave_points_out() {
    let (url, seen) = receiver("never", StatusCode::NO_CONTENT).await;
    let config = RemoteWriteConfig {
        include_namespaces: vec!["AWS/*".into()],
        exclude_metrics: vec!["*Out".into()],
        ..RemoteWriteConfig::new(&url)
    };
    let (sink, _) = sink(&config);
    let points = [
        point("AWS/EC2", "NetworkIn", "i-1", 60_000),
        point("AWS/EC2", "NetworkOut", "i-1", 60_000),
        point("CWAgent", "NetworkIn", "i-1", 60_000),
    ];
    sink.commit(&batch(&points)).await.expect("taken");
    let seen = seen.lock().expect("lock");
    let mut names: Vec<&str> = seen[0]
        .request
        .timeseries
        .iter()
        .flat_map(|s| &s.labels)
        .filter(|l| l.name == "__name__")
        .map(|l| l.value.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "aws_ec2_network_in_average",
            "aws_ec2_network_in_sample_count",
            "aws_ec2_network_in_sum",
        ]
    );
}
