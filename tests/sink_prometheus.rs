//! The `prometheus` sink through the HTTP contract: real captured Metric Streams
//! deliveries in, the admin listener's scrape endpoint out, checked series by series
//! against the stored events, by `promtool` when it is installed, and in both the
//! text format and OpenMetrics.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{KEY, KEY_NAME, TestServer, body_of, dead_letters, delivery, fixture};
use http_body_util::BodyExt;
use hydrant::decode::{DecodeSettings, Format};
use hydrant::event::Metric;
use hydrant::limits::Limits;
use hydrant::series::{Naming, samples};
use hydrant::server::auth::{AccessKey, Auth};
use hydrant::server::{Settings, admin_router};
use hydrant::sink::Sink;
use hydrant::sink::prometheus::{
    CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, PrometheusConfig, PrometheusSink,
};
use tower::ServiceExt;

/// A server with the file sink at 0 and a `prometheus` sink at 1; metric events go
/// to both (so the test can read what was decoded), everything else to the file.
fn server(config: PrometheusConfig) -> TestServer {
    server_reading(config, Format::Auto)
}

/// [`server`], reading every record as `format`.
fn server_reading(config: PrometheusConfig, format: Format) -> TestServer {
    let settings = Settings {
        auth: Auth::Keys(vec![AccessKey::new(KEY_NAME, KEY)]),
        limits: Limits::default(),
        decode: DecodeSettings {
            default_format: format,
            ..DecodeSettings::default()
        },
        router: common::metrics_also_to_sink_1(),
    };
    TestServer::with_sinks(settings, move |_, metrics| {
        let sink = PrometheusSink::new(&config, metrics.prometheus_sink("cw"));
        vec![("cw".to_owned(), Sink::Prometheus(sink))]
    })
}

/// `GET path` on the admin listener with `accept`: status, content type, body.
async fn scrape(
    server: &TestServer,
    path: &str,
    accept: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = Request::get(path);
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let response = admin_router(server.state.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// Delivers a Firehose request body and expects 200.
async fn deliver(server: &TestServer, id: &str, body: impl Into<Body>) {
    let reply = server.send(delivery(id, body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

/// Delivers the captured request `path` under its own request id, and expects 200.
async fn deliver_fixture(server: &TestServer, path: &str) {
    let body = fixture(path);
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = parsed["requestId"].as_str().unwrap().to_owned();
    deliver(server, &id, body).await;
}

/// The sample lines of a scrape, `name{labels}` to value.
fn series_of(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// What the scrape should hold for `events` (the stored metric events): each
/// series' point with the latest CloudWatch time, named by `naming`.
fn expected_series(events: &[serde_json::Value], naming: Naming) -> BTreeMap<String, f64> {
    let mut latest: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for event in events.iter().filter(|event| event["kind"] == "metric") {
        let metric: Metric = serde_json::from_value(event.clone()).unwrap();
        for sample in samples(&metric, naming) {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(name, value)| {
                    let value = value
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    format!("{name}=\"{value}\"")
                })
                .collect();
            let key = if labels.is_empty() {
                sample.name
            } else {
                format!("{}{{{}}}", sample.name, labels.join(","))
            };
            let entry = latest
                .entry(key)
                .or_insert((sample.timestamp_ms, sample.value));
            if sample.timestamp_ms >= entry.0 {
                *entry = (sample.timestamp_ms, sample.value);
            }
        }
    }
    latest
        .into_iter()
        .map(|(key, (_, value))| (key, value))
        .collect()
}

/// `promtool check metrics` on `text`, when promtool is installed (Debian package
/// `prometheus`; `.ci/test` installs it). A text the parser refuses fails the
/// test. Lint remarks are allowed only for what the exporters' own names imply: a
/// gauge named `…_sum` or `…_count` (YACE's `_sum` and `_sample_count`, OTel's
/// summary parts as gauges), a `quantile` label on a gauge, and camel case from
/// CloudWatch's names (OTel naming, YACE's `dimension_InstanceId`).
fn promtool_accepts(text: &str) {
    if !common::installed("promtool", "--version") {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        return;
    }
    let allowed = [
        "non-histogram and non-summary metrics should not have \"_sum\" suffix",
        "non-histogram and non-summary metrics should not have \"_count\" suffix",
        "non-summary metrics should not have \"quantile\" label",
        "metric names should be written in 'snake_case' not 'camelCase'",
        "label names should be written in 'snake_case' not 'camelCase'",
    ];
    let problems: Vec<&str> = said
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| !allowed.iter().any(|remark| line.contains(remark)))
        .collect();
    assert!(
        problems.is_empty(),
        "promtool check metrics ({}):\n{said}",
        output.status
    );
}

/// The promtool check above fails on a text promtool cannot parse, so its passes
/// mean something.
#[test]
fn promtool_refuses_a_broken_exposition() {
    if !common::installed("promtool", "--version") {
        return;
    }
    let broken = "# TYPE x gauge\nx{a=\"b} 1\n";
    let refused = std::panic::catch_unwind(|| promtool_accepts(broken)).is_err();
    assert!(refused, "promtool took {broken:?}");
}

/// A real 1160-point delivery (JSON) is served as every series of its points,
/// each at the value of its latest point, and promtool reads it.
#[tokio::test]
async fn a_captured_json_stream_is_served_as_its_series() {
    let server = server(PrometheusConfig::default());
    deliver_fixture(&server, "telegraf/records.json").await;
    let events = server.events();
    assert_eq!(
        events
            .iter()
            .filter(|event| event["kind"] == "metric")
            .count(),
        1160
    );
    let (status, content_type, text) = scrape(&server, "/cloudwatch/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, CONTENT_TYPE_TEXT);
    let served = series_of(&text);
    let expected = expected_series(&events, Naming::Yace);
    // 1152 distinct metric and dimension sets (eight come twice, minutes apart),
    // five statistics each.
    assert_eq!(expected.len(), 1152 * 5);
    assert_eq!(served, expected);
    promtool_accepts(&text);

    // Hydrant's own metrics count the series.
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "hydrant_prometheus_series{{sink=\"cw\"}} {}",
            expected.len()
        )),
        "{metrics}"
    );
    assert!(metrics.contains(r#"hydrant_prometheus_series_dropped_total{sink="cw"} 0"#));
}

/// The one-point capture, by name: what a YACE dashboard queries.
#[tokio::test]
async fn a_captured_point_has_the_yace_names() {
    let server = server(PrometheusConfig::default());
    deliver_fixture(&server, "telegraf/record.json").await;
    let (_, _, text) = scrape(&server, "/cloudwatch/metrics", None).await;
    let labels = r#"{account_id="549734399709",dimension_InstanceId="i-0efc7fdf09c123428",region="us-west-2"}"#;
    let served = series_of(&text);
    for (statistic, value) in [
        ("average", 10.011_666_666_666_667),
        ("maximum", 10.011_666_666_666_667),
        ("minimum", 10.011_666_666_666_667),
        ("sum", 10.011_666_666_666_667),
        ("sample_count", 1.0),
    ] {
        let series = format!("aws_ec2_cpuutilization_{statistic}{labels}");
        assert_eq!(served.get(&series), Some(&value), "{series} in\n{text}");
    }
    assert_eq!(served.len(), 5);
    promtool_accepts(&text);
}

/// Prometheus asks for OpenMetrics first: it gets it, with the same samples and
/// `# EOF` at the end; a scraper that asks for text gets text.
#[tokio::test]
async fn openmetrics_is_served_to_who_asks_for_it() {
    let server = server(PrometheusConfig::default());
    deliver_fixture(&server, "telegraf/records.json").await;
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, content_type, openmetrics) =
        scrape(&server, "/cloudwatch/metrics", Some(prometheus_accept)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, CONTENT_TYPE_OPENMETRICS);
    assert!(openmetrics.ends_with("\n# EOF\n"));
    assert_eq!(openmetrics.matches("# EOF").count(), 1);
    let (_, content_type, text) = scrape(
        &server,
        "/cloudwatch/metrics",
        Some("text/plain;version=0.0.4"),
    )
    .await;
    assert_eq!(content_type, CONTENT_TYPE_TEXT);
    assert_eq!(series_of(&openmetrics), series_of(&text));
    assert!(!text.contains("# EOF"));
}

/// The path is the sink's; the admin listener's own paths still answer, other
/// methods get 405, and a Firehose retry changes nothing.
#[tokio::test]
async fn the_scrape_path_is_configurable() {
    let server = server(PrometheusConfig {
        path: "/cw/eu-west-1".into(),
        naming: Naming::CloudwatchExporter,
        ..PrometheusConfig::default()
    });
    deliver_fixture(&server, "telegraf/record.json").await;
    let (status, _, text) = scrape(&server, "/cw/eu-west-1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains(
            r#"aws_ec2_cpuutilization_sample_count{account_id="549734399709",instance_id="i-0efc7fdf09c123428",job="aws_ec2",region="us-west-2"} 1"#
        ),
        "{text}"
    );
    let (status, _, _) = scrape(&server, "/cloudwatch/metrics", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, metrics) = server.admin("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("hydrant_prometheus_series{sink=\"cw\"} 5"));
    let response = admin_router(server.state.clone())
        .oneshot(Request::post("/cw/eu-west-1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

    deliver_fixture(&server, "telegraf/record.json").await;
    let (_, _, again) = scrape(&server, "/cw/eu-west-1", None).await;
    assert_eq!(again, text);
}

/// The OpenTelemetry 1.0 fixture's two points, written as a JSON stream would send
/// them (`tests/fixtures/otel10/make_fixture.py` has the values).
const OTEL10_AS_JSON: &str = concat!(
    r#"{"metric_stream_name":"otel10-stream","account_id":"123456789012","region":"eu-west-1","namespace":"AWS/EC2","metric_name":"CPUUtilization","dimensions":{"InstanceId":"i-0123456789abcdef0"},"timestamp":1709294460000,"value":{"max":13.0,"min":1.5,"sum":42.5,"count":5.0,"p99":12.25,"p99.9":12.75},"unit":"Percent"}"#,
    "\n",
    r#"{"metric_stream_name":"otel10-stream","account_id":"123456789012","region":"eu-west-1","namespace":"AWS/ELB","metric_name":"EstimatedProcessedBytes","dimensions":{"LoadBalancerName":"web","AvailabilityZone":"eu-west-1a"},"timestamp":1709294460000,"value":{"max":1536.0,"min":512.0,"sum":2048.0,"count":2.0},"unit":"Bytes/Second"}"#,
    "\n"
);

/// The OpenTelemetry 0.7 fixture's three points, written as a JSON stream would
/// send them (`tests/fixtures/otel07/make_fixture.py` has the values): the 1.0
/// fixture's two under the 0.7 stream's name, and a count point whose other
/// statistics are 0, which the protobuf encoding leaves out and JSON writes.
const OTEL07_AS_JSON: &str = concat!(
    r#"{"metric_stream_name":"otel07-stream","account_id":"123456789012","region":"eu-west-1","namespace":"AWS/EC2","metric_name":"CPUUtilization","dimensions":{"InstanceId":"i-0123456789abcdef0"},"timestamp":1709294460000,"value":{"max":13.0,"min":1.5,"sum":42.5,"count":5.0,"p99":12.25,"p99.9":12.75},"unit":"Percent"}"#,
    "\n",
    r#"{"metric_stream_name":"otel07-stream","account_id":"123456789012","region":"eu-west-1","namespace":"AWS/ELB","metric_name":"EstimatedProcessedBytes","dimensions":{"LoadBalancerName":"web","AvailabilityZone":"eu-west-1a"},"timestamp":1709294460000,"value":{"max":1536.0,"min":512.0,"sum":2048.0,"count":2.0},"unit":"Bytes/Second"}"#,
    "\n",
    r#"{"metric_stream_name":"otel07-stream","account_id":"123456789012","region":"eu-west-1","namespace":"AWS/EBS","metric_name":"VolumeReadOps","dimensions":{"VolumeId":"vol-0123456789abcdef0"},"timestamp":1709294460000,"value":{"max":0.0,"min":0.0,"sum":0.0,"count":1.0},"unit":"Count"}"#,
    "\n"
);

/// An OpenTelemetry Metric Streams record and the same points as JSON lines.
struct OtelTwin {
    /// The record, under `tests/fixtures`.
    fixture: &'static str,
    /// The OpenTelemetry version it is encoded in.
    version: Format,
    /// The other version, whose decoder must refuse the record.
    other: Format,
    /// The same points from a JSON stream.
    json: &'static str,
    /// How many series the points give.
    series: usize,
}

/// The OpenTelemetry record and its JSON twin, delivered to two servers, give the
/// same scrape, byte for byte, under every naming scheme and with timestamps, and
/// promtool reads it. The record is read both as `auto` finds it and as a stream
/// configured for its version; a stream configured for the other version refuses
/// it, so the record really carries its version's encoding of the dimensions.
async fn assert_same_series_as_json(twin: &OtelTwin) {
    let record = fixture(twin.fixture);
    for naming in [Naming::Yace, Naming::CloudwatchExporter, Naming::Otel] {
        let config = PrometheusConfig {
            naming,
            timestamps: true,
            ..PrometheusConfig::default()
        };
        let json = server(config.clone());
        deliver(&json, "json", body_of("json", &[twin.json.as_bytes()])).await;
        let (_, _, from_json) = scrape(&json, "/cloudwatch/metrics", None).await;
        for format in [Format::Auto, twin.version] {
            let otel = server_reading(config.clone(), format);
            deliver(&otel, "otel", body_of("otel", &[&record])).await;
            let (_, _, from_otel) = scrape(&otel, "/cloudwatch/metrics", None).await;
            assert_eq!(
                from_otel, from_json,
                "{} read as {format:?}, {naming:?}",
                twin.fixture
            );
        }
        assert_eq!(
            series_of(&from_json).len(),
            twin.series,
            "{naming:?}:\n{from_json}"
        );
        promtool_accepts(&from_json);
    }

    let refusing = server_reading(PrometheusConfig::default(), twin.other);
    deliver(&refusing, "other", body_of("other", &[&record])).await;
    assert!(refusing.events().is_empty(), "{:?}", refusing.events());
    let dead = dead_letters(refusing.dir.path());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["format"], twin.other.as_str(), "{dead:?}");
    assert!(
        dead[0]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("but the stream is configured for")),
        "{dead:?}"
    );
}

/// The same points from a JSON stream and from an OpenTelemetry 1.0 stream give the
/// same series: a stream can switch its output format without changing a series.
#[tokio::test]
async fn json_and_opentelemetry_give_the_same_series() {
    assert_same_series_as_json(&OtelTwin {
        fixture: "otel10/metric_stream_otel10.bin",
        version: Format::MetricStreamOtel10,
        other: Format::MetricStreamOtel07,
        json: OTEL10_AS_JSON,
        // Count, sum, min, max, p99, p99.9 and the average; then four and the
        // average.
        series: 7 + 5,
    })
    .await;
}

/// The same for OpenTelemetry 0.7, whose data points carry the dimensions as flat
/// labels.
#[tokio::test]
async fn json_and_opentelemetry_07_give_the_same_series() {
    assert_same_series_as_json(&OtelTwin {
        fixture: "otel07/metric_stream_otel07.bin",
        version: Format::MetricStreamOtel07,
        other: Format::MetricStreamOtel10,
        json: OTEL07_AS_JSON,
        // As for 1.0, and count, sum, min, max and the average of the third point.
        series: 7 + 5 + 5,
    })
    .await;
}

/// A real Prometheus (Debian's `prometheus` package, which `.ci/test` installs)
/// scrapes the admin listener, and its query API returns the captured point under
/// its YACE names: what a dashboard built for YACE would query.
#[tokio::test]
async fn a_real_prometheus_scrapes_the_series_and_answers_queries() {
    if !common::installed("prometheus", "--version") {
        return;
    }
    let server = server(PrometheusConfig::default());
    deliver_fixture(&server, "telegraf/record.json").await;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_address = admin.local_addr().unwrap();
    let served = tokio::spawn(axum::serve(admin, admin_router(server.state.clone())).into_future());

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hydrant\n    \
             metrics_path: /cloudwatch/metrics\n    static_configs:\n      - targets: [\"{admin_address}\"]\n"
        ),
    )
    .unwrap();
    let prometheus_address: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={prometheus_address}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // aws_ec2_cpuutilization_average{dimension_InstanceId="i-0efc7fdf09c123428"}
    let query = "/api/v1/query?query=aws_ec2_cpuutilization_average\
                 %7Bdimension_InstanceId%3D%22i-0efc7fdf09c123428%22%7D";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let answer = loop {
        let reply =
            tokio::task::spawn_blocking(move || common::http_get(prometheus_address, query))
                .await
                .unwrap();
        if let Some((200, body)) = &reply {
            let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
            if parsed["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                break parsed;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer from Prometheus in 60 s; last: {reply:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    served.abort();

    let result = &answer["data"]["result"][0];
    let labels = &result["metric"];
    assert_eq!(
        labels["__name__"], "aws_ec2_cpuutilization_average",
        "{answer}"
    );
    assert_eq!(labels["account_id"], "549734399709", "{answer}");
    assert_eq!(labels["region"], "us-west-2", "{answer}");
    assert_eq!(labels["job"], "hydrant", "{answer}");
    let value: f64 = result["value"][1].as_str().unwrap().parse().unwrap();
    assert_eq!(value, 10.011_666_666_666_667, "{answer}");
}
