//! The `remote_write` sink against real receivers: a Prometheus with its remote
//! write receiver on, and VictoriaMetrics (Debian's `prometheus` and
//! `victoria-metrics` packages, which `.ci/test` installs). A real captured
//! Metric Streams delivery goes in through the HTTP contract; every sample is read
//! back through the receiver's API and compared, value and timestamp, with the
//! samples of the metric events Hydrant decoded. Also: an outage answered 503 and
//! recovered by Firehose's retry with every sample stored once, a delivery sent
//! again after a restart, and a late point that Prometheus refuses while the rest
//! of its request is kept.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{KEY, KEY_NAME, TestServer, delivery, fixture};
use hydrant::decode::DecodeSettings;
use hydrant::event::Metric;
use hydrant::limits::Limits;
use hydrant::series::{Naming, samples};
use hydrant::server::Settings;
use hydrant::server::auth::{AccessKey, Auth};
use hydrant::sink::Sink;
use hydrant::sink::remote_write::{RemoteWriteConfig, RemoteWriteSink};
use serde_json::Value;

/// Samples by series (`name{label="value",…}`, labels sorted): `(time ms, value)`
/// in time order.
type Stored = BTreeMap<String, Vec<(i64, f64)>>;

/// Which receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Prometheus,
    VictoriaMetrics,
}

/// A receiver running as a child process, killed when dropped.
struct Receiver {
    flavor: Flavor,
    address: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Receiver {
    /// Whether the receiver's program is installed.
    fn installed(flavor: Flavor) -> bool {
        let (program, flag) = match flavor {
            Flavor::Prometheus => ("prometheus", "--version"),
            Flavor::VictoriaMetrics => ("victoria-metrics", "-version"),
        };
        common::installed(program, flag)
    }

    /// A receiver of `flavor` on a free port, started and answering.
    async fn start(flavor: Flavor) -> Self {
        let address = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap();
        let mut receiver = Self {
            flavor,
            address,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        receiver.restart().await;
        receiver
    }

    /// Starts the program (again, on the same port and data).
    async fn restart(&mut self) {
        let data = self.dir.path().join("data");
        let mut command = match self.flavor {
            Flavor::Prometheus => {
                let config = self.dir.path().join("prometheus.yml");
                std::fs::write(&config, "global: {}\n").unwrap();
                let mut command = Command::new("prometheus");
                command
                    .arg(format!("--config.file={}", config.display()))
                    .arg(format!("--storage.tsdb.path={}", data.display()))
                    .arg(format!("--web.listen-address={}", self.address))
                    .arg("--web.enable-remote-write-receiver");
                command
            }
            Flavor::VictoriaMetrics => {
                let mut command = Command::new("victoria-metrics");
                // As docs/metrics.md advises: without deduplication,
                // VictoriaMetrics keeps a sample sent twice twice.
                command
                    .arg(format!("-storageDataPath={}", data.display()))
                    .arg(format!("-httpListenAddr={}", self.address))
                    .arg("-dedup.minScrapeInterval=1ms");
                command
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let ready = match self.flavor {
            Flavor::Prometheus => "/-/ready",
            Flavor::VictoriaMetrics => "/health",
        };
        let answered = poll(Duration::from_secs(60), || async {
            matches!(get(self.address, ready).await, Some((200, _)))
        })
        .await;
        assert!(answered, "{:?} did not become ready", self.flavor);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.address)
    }

    /// Every sample of every `aws_` series the receiver holds, raw.
    async fn stored(&self) -> Stored {
        let mut stored = Stored::new();
        match self.flavor {
            Flavor::Prometheus => {
                // A range selector in an instant query answers the raw samples.
                let query = "/api/v1/query?query=%7B__name__%3D~%22aws_.%2A%22%7D%5B1d%5D";
                let Some((200, body)) = get(self.address, query).await else {
                    return stored;
                };
                let parsed: Value = serde_json::from_str(&body).unwrap();
                for series in parsed["data"]["result"].as_array().unwrap() {
                    let points = series["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|pair| {
                            let seconds = pair[0].as_f64().unwrap();
                            let value: f64 = pair[1].as_str().unwrap().parse().unwrap();
                            ((seconds * 1000.0).round() as i64, value)
                        })
                        .collect();
                    stored.insert(series_key(&series["metric"]), points);
                }
            }
            Flavor::VictoriaMetrics => {
                // New samples are searchable after VictoriaMetrics flushes them.
                let _ = get(self.address, "/internal/force_flush").await;
                let query = "/api/v1/export?match%5B%5D=%7B__name__%3D~%22aws_.%2A%22%7D";
                let Some((200, body)) = get(self.address, query).await else {
                    return stored;
                };
                for line in body.lines().filter(|line| !line.is_empty()) {
                    let series: Value = serde_json::from_str(line).unwrap();
                    let times = series["timestamps"].as_array().unwrap();
                    let values = series["values"].as_array().unwrap();
                    let points = times
                        .iter()
                        .zip(values)
                        .map(|(time, value)| (time.as_i64().unwrap(), value.as_f64().unwrap()))
                        .collect();
                    stored
                        .entry(series_key(&series["metric"]))
                        .or_default()
                        .extend::<Vec<_>>(points);
                }
                for points in stored.values_mut() {
                    points.sort_by_key(|point| point.0);
                }
            }
        }
        stored
    }

    /// [`Self::stored`] once it holds `expected`'s series, or after 60 s.
    async fn stored_when_complete(&self, expected: &Stored) -> Stored {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stored = self.stored().await;
            let complete = expected
                .iter()
                .all(|(key, points)| stored.get(key).is_some_and(|s| s.len() >= points.len()));
            if complete || Instant::now() > deadline {
                return stored;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `name{label="value",…}` of a series' labels as a receiver's API gives them.
fn series_key(metric: &Value) -> String {
    let labels = metric.as_object().unwrap();
    let name = labels["__name__"].as_str().unwrap();
    let rest: BTreeMap<&str, &str> = labels
        .iter()
        .filter(|(label, _)| label.as_str() != "__name__")
        .map(|(label, value)| (label.as_str(), value.as_str().unwrap()))
        .collect();
    let rest: Vec<String> = rest
        .iter()
        .map(|(label, value)| format!("{label}=\"{value}\""))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}

/// What the receiver should hold for `events` (the metric events Hydrant stored in
/// its file sink): every sample under its YACE name, one per series and time.
fn expected(events: &[Value]) -> Stored {
    let mut by_time: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for event in events.iter().filter(|event| event["kind"] == "metric") {
        let metric: Metric = serde_json::from_value(event.clone()).unwrap();
        for sample in samples(&metric, Naming::Yace) {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(label, value)| format!("{label}=\"{value}\""))
                .collect();
            let key = format!("{}{{{}}}", sample.name, labels.join(","));
            by_time
                .entry(key)
                .or_default()
                .insert(sample.timestamp_ms, sample.value);
        }
    }
    by_time
        .into_iter()
        .map(|(key, points)| (key, points.into_iter().collect()))
        .collect()
}

/// Asserts that `stored` holds exactly the series of `expected`, each with exactly
/// its samples: the same times, and each value the same float (VictoriaMetrics
/// keeps 12 significant decimal digits of a value, by its design, so its values
/// are compared to that precision).
fn assert_holds_exactly(flavor: Flavor, stored: &Stored, expected: &Stored) {
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .collect();
    let extra: Vec<&String> = stored
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "{} series missing: {missing:?}",
        missing.len()
    );
    assert!(
        extra.is_empty(),
        "{} series not sent: {extra:?}",
        extra.len()
    );
    for (key, points) in expected {
        let got = &stored[key];
        let times: Vec<i64> = got.iter().map(|point| point.0).collect();
        let want: Vec<i64> = points.iter().map(|point| point.0).collect();
        assert_eq!(times, want, "{key}: each sample once, at its time");
        for (&(time, value), &(_, got_value)) in points.iter().zip(got) {
            match flavor {
                Flavor::Prometheus => {
                    assert_eq!(got_value.to_bits(), value.to_bits(), "{key} at {time}");
                }
                Flavor::VictoriaMetrics => {
                    let tolerance = value.abs() * 1e-11;
                    assert!(
                        (got_value - value).abs() <= tolerance,
                        "{key} at {time}: {got_value} vs {value}"
                    );
                }
            }
        }
    }
}

/// `GET path_and_query` over plain HTTP/1.0, off the async workers.
async fn get(address: SocketAddr, path_and_query: &str) -> Option<(u16, String)> {
    let path_and_query = path_and_query.to_owned();
    tokio::task::spawn_blocking(move || common::http_get(address, &path_and_query))
        .await
        .unwrap()
}

/// Polls `check` every 250 ms until it holds or `limit` passes.
async fn poll<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// telegraf's captured 1160-point JSON delivery (`telegraf/records.json`), each
/// point's time moved so that the latest is `end_ms` and the spacing is kept:
/// receivers refuse samples as old as the capture. Returns its request id and
/// body.
fn capture_ending_at(end_ms: i64) -> (String, Vec<u8>) {
    let mut request: Value = serde_json::from_slice(&fixture("telegraf/records.json")).unwrap();
    let mut lines: Vec<Vec<Value>> = Vec::new();
    for record in request["records"].as_array().unwrap() {
        let data = STANDARD.decode(record["data"].as_str().unwrap()).unwrap();
        let points = String::from_utf8(data)
            .unwrap()
            .lines()
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        lines.push(points);
    }
    let latest = lines
        .iter()
        .flatten()
        .map(|point| point["timestamp"].as_i64().unwrap())
        .max()
        .unwrap();
    for (record, points) in request["records"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(lines)
    {
        let mut data = String::new();
        for mut point in points {
            let time = point["timestamp"].as_i64().unwrap();
            point["timestamp"] = Value::from(end_ms - (latest - time));
            data.push_str(&point.to_string());
            data.push('\n');
        }
        record["data"] = Value::from(STANDARD.encode(data));
    }
    let id = request["requestId"].as_str().unwrap().to_owned();
    (id, serde_json::to_vec(&request).unwrap())
}

/// A server with the file sink at 0 (to read what was decoded) and a
/// `remote_write` sink to `url` at 1; metric events go to both.
fn server(url: &str) -> TestServer {
    let settings = Settings {
        auth: Auth::Keys(vec![AccessKey::new(KEY_NAME, KEY)]),
        limits: Limits::default(),
        decode: DecodeSettings::default(),
        router: common::metrics_also_to_sink_1(),
    };
    let config = RemoteWriteConfig::new(url);
    TestServer::with_sinks(settings, move |_, metrics| {
        let sink = RemoteWriteSink::open("rw", &config, metrics.remote_write_sink("rw")).unwrap();
        vec![("rw".to_owned(), Sink::RemoteWrite(sink))]
    })
}

async fn send(server: &TestServer, id: &str, body: &[u8]) -> StatusCode {
    server.send(delivery(id, body.to_vec())).await.status
}

/// The line of `name` in Hydrant's own metrics.
fn own_metric(server: &TestServer, name: &str) -> String {
    server
        .state
        .metrics()
        .render()
        .lines()
        .find(|line| line.starts_with(name))
        .unwrap_or_default()
        .to_owned()
}

/// Whether the receiver is missing (see [`common::installed`]).
fn missing(flavor: Flavor) -> bool {
    !Receiver::installed(flavor)
}

/// Every sample of the capture, read back from the receiver, equals the sample
/// Hydrant made of the stored point: value for value, millisecond for millisecond.
async fn the_capture_reads_back_point_by_point(flavor: Flavor) {
    if missing(flavor) {
        return;
    }
    let receiver = Receiver::start(flavor).await;
    let server = server(&receiver.write_url());
    let (id, body) = capture_ending_at(now_ms() - 120_000);
    assert_eq!(send(&server, &id, &body).await, StatusCode::OK);

    let expected = expected(&server.events());
    assert!(expected.len() > 1_000, "{} series", expected.len());
    let stored = receiver.stored_when_complete(&expected).await;
    assert_holds_exactly(flavor, &stored, &expected);
    let samples: usize = expected.values().map(Vec::len).sum();
    assert_eq!(
        own_metric(&server, "hydrant_remote_write_samples_sent_total"),
        format!("hydrant_remote_write_samples_sent_total{{sink=\"rw\"}} {samples}")
    );
    assert_eq!(
        own_metric(&server, "hydrant_remote_write_samples_rejected_total"),
        "hydrant_remote_write_samples_rejected_total{sink=\"rw\"} 0"
    );
}

#[tokio::test]
async fn prometheus_holds_every_sample_of_a_captured_stream() {
    the_capture_reads_back_point_by_point(Flavor::Prometheus).await;
}

#[tokio::test]
async fn victoria_metrics_holds_every_sample_of_a_captured_stream() {
    the_capture_reads_back_point_by_point(Flavor::VictoriaMetrics).await;
}

/// The receiver is down: the delivery is answered 503 (after the fan-out's
/// retries, then at once while the breaker is open). It comes back; Firehose's
/// retry of the same delivery is answered 200 and every sample is stored once.
async fn an_outage_is_503_then_the_retry_stores_each_sample_once(flavor: Flavor) {
    if missing(flavor) {
        return;
    }
    let mut receiver = Receiver::start(flavor).await;
    receiver.stop();
    let server = server(&receiver.write_url());
    let (id, body) = capture_ending_at(now_ms() - 120_000);
    assert_eq!(
        send(&server, &id, &body).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The breaker opened after the failed attempts: now 503 without trying.
    let handle = server.state.sinks().get(1).unwrap();
    assert!(!handle.is_up(), "the breaker is open");
    let started = Instant::now();
    assert_eq!(
        send(&server, &id, &body).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(started.elapsed() < Duration::from_millis(500), "fails fast");
    server.state.sinks().probe_all().await;
    assert!(!handle.is_up(), "a probe does not find it either");

    receiver.restart().await;
    server.state.sinks().probe_all().await;
    assert!(handle.is_up(), "a probe finds it back");
    assert_eq!(send(&server, &id, &body).await, StatusCode::OK);
    // And again, as Firehose may when our 200 was lost: not sent twice.
    assert_eq!(send(&server, &id, &body).await, StatusCode::OK);

    let expected = expected(&server.events());
    let stored = receiver.stored_when_complete(&expected).await;
    assert_holds_exactly(flavor, &stored, &expected);
}

#[tokio::test]
async fn prometheus_outage_then_retry() {
    an_outage_is_503_then_the_retry_stores_each_sample_once(Flavor::Prometheus).await;
}

#[tokio::test]
async fn victoria_metrics_outage_then_retry() {
    an_outage_is_503_then_the_retry_stores_each_sample_once(Flavor::VictoriaMetrics).await;
}

/// Hydrant restarts (its duplicate window is gone) and Firehose sends a delivery
/// that was written already: the delivery is answered 200 and each sample is
/// there once. Prometheus takes again the latest sample of each series silently
/// and refuses the older ones as out of order (they are counted as rejected,
/// though it holds them); VictoriaMetrics keeps one sample per series and time.
/// Nothing is stored twice and nothing fails forever.
async fn a_delivery_written_before_a_restart_is_taken_again_once(flavor: Flavor) {
    if missing(flavor) {
        return;
    }
    let receiver = Receiver::start(flavor).await;
    let (id, body) = capture_ending_at(now_ms() - 120_000);
    let first = server(&receiver.write_url());
    assert_eq!(send(&first, &id, &body).await, StatusCode::OK);
    let expected = expected(&first.events());
    drop(first);

    let restarted = server(&receiver.write_url());
    assert_eq!(send(&restarted, &id, &body).await, StatusCode::OK);
    let stored = receiver.stored_when_complete(&expected).await;
    assert_holds_exactly(flavor, &stored, &expected);
}

#[tokio::test]
async fn prometheus_retry_after_a_restart() {
    a_delivery_written_before_a_restart_is_taken_again_once(Flavor::Prometheus).await;
}

#[tokio::test]
async fn victoria_metrics_retry_after_a_restart() {
    a_delivery_written_before_a_restart_is_taken_again_once(Flavor::VictoriaMetrics).await;
}

/// One metric stream point for `instance` at `time_ms`: sum, count and their
/// average, three series.
fn point_line(instance: &str, time_ms: i64) -> String {
    format!(
        r#"{{"metric_stream_name":"s","account_id":"123456789012","region":"eu-west-1","namespace":"AWS/EC2","metric_name":"NetworkIn","dimensions":{{"InstanceId":"{instance}"}},"timestamp":{time_ms},"value":{{"sum":100.0,"count":4.0}},"unit":"Bytes"}}"#
    )
}

fn body_of_lines(id: &str, lines: &[String]) -> Vec<u8> {
    let data = lines
        .iter()
        .map(|line| format!("{line}\n"))
        .collect::<String>();
    common::body_of(id, &[data.as_bytes()]).into_bytes()
}

/// A point older than the series' latest is out of order for Prometheus, which
/// then refuses its whole request. The sink narrows the refusal down: the late
/// point's three samples are counted as rejected and the other points of the
/// request are stored; the delivery is answered 200.
#[tokio::test]
async fn a_late_point_is_rejected_alone_and_the_rest_of_its_request_is_kept() {
    if missing(Flavor::Prometheus) {
        return;
    }
    let receiver = Receiver::start(Flavor::Prometheus).await;
    let server = server(&receiver.write_url());
    let now = now_ms() - 60_000;
    let first = body_of_lines("first", &[point_line("i-late", now)]);
    assert_eq!(send(&server, "first", &first).await, StatusCode::OK);

    let mut lines: Vec<String> = (0..50)
        .map(|n| point_line(&format!("i-{n:03}"), now))
        .collect();
    lines.insert(20, point_line("i-late", now - 60_000));
    let second = body_of_lines("second", &lines);
    assert_eq!(send(&server, "second", &second).await, StatusCode::OK);
    assert_eq!(
        own_metric(&server, "hydrant_remote_write_samples_rejected_total"),
        "hydrant_remote_write_samples_rejected_total{sink=\"rw\"} 3"
    );
    assert_eq!(
        own_metric(&server, "hydrant_remote_write_samples_sent_total"),
        format!(
            "hydrant_remote_write_samples_sent_total{{sink=\"rw\"}} {}",
            3 + 50 * 3
        )
    );
    let mut want = Stored::new();
    for n in 0..50 {
        let labels = format!(
            "{{account_id=\"123456789012\",dimension_InstanceId=\"i-{n:03}\",region=\"eu-west-1\"}}"
        );
        for (statistic, value) in [("sum", 100.0), ("sample_count", 4.0), ("average", 25.0)] {
            want.insert(
                format!("aws_ec2_network_in_{statistic}{labels}"),
                vec![(now, value)],
            );
        }
    }
    let stored = receiver.stored_when_complete(&want).await;
    for (key, points) in &want {
        assert_eq!(stored.get(key), Some(points), "{key}");
    }
    let late = "aws_ec2_network_in_sum{account_id=\"123456789012\",dimension_InstanceId=\"i-late\",region=\"eu-west-1\"}";
    assert_eq!(
        stored[late],
        [(now, 100.0)],
        "only the first, in-order point"
    );
}
