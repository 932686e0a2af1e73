//! The `s3` sink against a real S3 server: `s3s-fs`, which serves a local directory
//! over the S3 API with SigV4 authentication. Real captured deliveries go in; the
//! objects are read back over the S3 API and compared field by field with the
//! fixtures. An outage and a restart of the server check that every delivery ends up
//! stored exactly once.
//!
//! `.ci/run` installs the server with
//! `cargo install s3s-fs@0.14.1 --features binary --locked`; without it these tests
//! fail (they do not skip), so a missing server cannot pass for a green run.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::certs::{Certificates, TlsProxy};
use common::{KEY, KEY_NAME, TestServer, delivery, fixture};
use futures_util::StreamExt as _;
use hydrant::clock::UtcTime;
use hydrant::limits::{Limits, gunzip_capped, is_gzip};
use hydrant::routing::{Router, SinkSet};
use hydrant::server::auth::{AccessKey, Auth};
use hydrant::sink::Sink;
use hydrant::sink::s3::{S3Config, S3Sink};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ObjectStore as _, ObjectStoreExt as _};
use serde_json::Value;

const BUCKET: &str = "lake";
const ACCESS_KEY: &str = "hydrant-test";
const SECRET_KEY: &str = "hydrant-test-secret";
/// Position of the S3 sink (0 is the embedded file sink).
const S3: usize = 1;
/// Far above any object or record of the fixtures.
const INFLATE_CAP: u64 = 64 << 20;
/// How long the server may take to accept connections after it is started.
const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// An `s3s-fs` process serving a temporary directory on a local port; killed on drop.
struct S3Server {
    child: Option<Child>,
    port: u16,
    /// Served directory: each bucket is a sub-directory.
    root: tempfile::TempDir,
    /// The server's output, kept out of the served directory.
    logs: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server on a free port with the bucket [`BUCKET`] created.
    fn start() -> Self {
        // Ask the OS for a free port, then hand it to the server.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let mut server = Self {
            child: None,
            port,
            root,
            logs: tempfile::tempdir().unwrap(),
        };
        server.restart();
        server
    }

    /// Starts the server (again) on the same port and directory, and waits until it
    /// accepts connections.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("s3s-fs exited with {status}: {}", self.logs());
            }
            assert!(
                started.elapsed() < STARTUP_WAIT,
                "s3s-fs did not accept connections on port {} within {STARTUP_WAIT:?}: {}",
                self.port,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Kills the server; its directory stays.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn config(&self) -> S3Config {
        S3Config {
            bucket: BUCKET.into(),
            endpoint: Some(self.endpoint()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            ..S3Config::default()
        }
    }

    /// A client of our own, to read back what the sink wrote.
    fn reader(&self) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .unwrap()
    }

    fn log_path(&self) -> PathBuf {
        self.logs.path().join("s3s-fs.log")
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `s3s-fs` executable on `PATH` or in `$HOME/.cargo/bin`.
fn s3s_fs_binary() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|dir| dir.join("s3s-fs"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "s3s-fs is not installed (not on PATH nor in ~/.cargo/bin); .ci/run installs it with: \
                 cargo install s3s-fs@0.14.1 --features binary --locked"
            )
        })
}

/// A test server whose router sends everything to `sinks`, with the S3 sink at
/// position 1.
async fn hydrant_with_s3(s3: &S3Server, sinks: &[usize]) -> TestServer {
    hydrant_with_s3_config(s3.config(), sinks).await
}

/// As [`hydrant_with_s3`], with the sink configured by `config`.
async fn hydrant_with_s3_config(config: S3Config, sinks: &[usize]) -> TestServer {
    let sink = S3Sink::connect(config).await.unwrap();
    let settings = hydrant::server::Settings {
        auth: Auth::Keys(vec![AccessKey::new(KEY_NAME, KEY)]),
        limits: Limits::default(),
        decode: hydrant::decode::DecodeSettings::default(),
        router: Router::everything_to(SinkSet::of(sinks)),
    };
    TestServer::with_sinks(settings, move |_, _| vec![("lake".into(), Sink::S3(sink))])
}

/// Every object in the bucket: key to its gunzip'd NDJSON lines.
async fn objects(store: &AmazonS3) -> BTreeMap<String, Vec<Value>> {
    let mut listing = store.list(None);
    let mut objects = BTreeMap::new();
    while let Some(meta) = listing.next().await {
        let key = meta.unwrap().location;
        let packed = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert!(is_gzip(&packed), "{key} is not gzip'd");
        let text = String::from_utf8(gunzip_capped(&packed, INFLATE_CAP).unwrap()).unwrap();
        assert!(text.ends_with('\n'), "{key} ends mid-line");
        let lines = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        objects.insert(key.to_string(), lines);
    }
    objects
}

fn request_id_of(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap();
    value["requestId"].as_str().unwrap().to_owned()
}

/// The records of a fixture, base64-decoded and gunzip'd when they are.
fn fixture_records(name: &str) -> Vec<Vec<u8>> {
    let body: Value = serde_json::from_slice(&fixture(name)).unwrap();
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            let data = STANDARD.decode(record["data"].as_str().unwrap()).unwrap();
            if is_gzip(&data) {
                gunzip_capped(&data, INFLATE_CAP).unwrap()
            } else {
                data
            }
        })
        .collect()
}

/// Checks the default key layout of one delivery's table and returns its lines.
fn object_of<'a>(
    objects: &'a BTreeMap<String, Vec<Value>>,
    table: &str,
    request_id: &str,
) -> &'a [Value] {
    let suffix = format!("/test-stream/{request_id}.ndjson.gz");
    let found: Vec<(&String, &Vec<Value>)> = objects
        .iter()
        .filter(|(key, _)| key.starts_with(&format!("{table}/")) && key.ends_with(&suffix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {table} object for {request_id}: {:?}",
        objects.keys()
    );
    let (key, lines) = found[0];
    // The partition is the time Hydrant received the delivery, as in every event.
    let received = UtcTime::from_ms(lines[0]["firehose"]["received_at"].as_u64().unwrap());
    let expected = format!(
        "{table}/dt={:04}-{:02}-{:02}/hour={:02}{suffix}",
        received.year, received.month, received.day, received.hour
    );
    assert_eq!(key, &expected);
    lines
}

/// Real CloudWatch Logs and Metric Streams captures become one gzip'd NDJSON object
/// per delivery under the default key layout, event for event.
#[tokio::test]
async fn real_deliveries_become_one_object_each_field_by_field() {
    let s3 = S3Server::start();
    let server = hydrant_with_s3(&s3, &[S3]).await;
    let logs = fixture("alloy/cw_logs_mixed.json");
    let metrics = fixture("telegraf/records.json");
    let (logs_id, metrics_id) = (request_id_of(&logs), request_id_of(&metrics));
    for (id, body) in [(&logs_id, logs), (&metrics_id, metrics)] {
        let reply = server.send(delivery(id, body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    }
    assert!(server.events().is_empty(), "only the S3 sink is routed to");

    let objects = objects(&s3.reader()).await;
    assert_eq!(objects.len(), 2, "{:?}", objects.keys());

    // Logs: record 0 is a control message (not stored), record 1 holds 13 events.
    let stored = object_of(&objects, "events", &logs_id);
    let records = fixture_records("alloy/cw_logs_mixed.json");
    let sent: Value = serde_json::from_slice(&records[1]).unwrap();
    let sent_events = sent["logEvents"].as_array().unwrap();
    assert_eq!(stored.len(), 13);
    assert_eq!(stored.len(), sent_events.len());
    for (event, sent_event) in stored.iter().zip(sent_events) {
        assert_eq!(event["kind"], "log");
        assert_eq!(event["message"], sent_event["message"]);
        assert_eq!(event["timestamp"], sent_event["timestamp"]);
        assert_eq!(event["aws"]["event_id"], sent_event["id"]);
        assert_eq!(event["aws"]["log_group"], sent["logGroup"]);
        assert_eq!(event["aws"]["log_stream"], sent["logStream"]);
        assert_eq!(event["aws"]["account_id"], sent["owner"]);
        assert_eq!(event["firehose"]["request_id"], logs_id.as_str());
        assert_eq!(event["firehose"]["record_index"], 1);
        assert_eq!(event["firehose"]["delivery_stream"], "test-stream");
    }
    assert_eq!(stored[0]["aws"]["log_group"], "/aws/lambda/logging-lambda");
    assert!(
        stored[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("INIT_START Runtime Version: nodejs:18.v6")
    );

    // Metrics: 4 records of JSON lines, 1160 data points in order.
    let stored = object_of(&objects, "events", &metrics_id);
    let sent: Vec<(usize, Value)> = fixture_records("telegraf/records.json")
        .iter()
        .enumerate()
        .flat_map(|(index, record)| {
            String::from_utf8(record.clone())
                .unwrap()
                .lines()
                .map(|line| (index, serde_json::from_str(line).unwrap()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(stored.len(), 1160);
    assert_eq!(stored.len(), sent.len());
    for (event, (index, point)) in stored.iter().zip(&sent) {
        assert_eq!(event["kind"], "metric");
        for field in [
            "namespace",
            "metric_name",
            "timestamp",
            "dimensions",
            "unit",
            "account_id",
            "region",
            "metric_stream_name",
        ] {
            assert_eq!(event[field], point[field], "{field} of {point}");
        }
        for statistic in ["max", "min", "sum", "count"] {
            assert_eq!(
                event["value"][statistic].as_f64(),
                point["value"][statistic].as_f64(),
                "{statistic} of {point}"
            );
        }
        assert_eq!(event["firehose"]["record_index"], *index);
    }
    assert_eq!(stored[0]["namespace"], "AWS/EC2");
    assert_eq!(stored[0]["metric_name"], "DiskReadBytes");
    assert_eq!(stored[0]["dimensions"]["InstanceType"], "m5ad.2xlarge");
    assert_eq!(stored[0]["value"]["count"].as_f64(), Some(3.0));
}

/// A record that is not base64 goes to a `dead_letter/…` object, kept as sent.
#[tokio::test]
async fn dead_letters_go_to_their_own_object() {
    let s3 = S3Server::start();
    let server = hydrant_with_s3(&s3, &[S3]).await;
    let body = fixture("alloy/cw_logs_control_and_bad_records.json");
    let request_id = request_id_of(&body);
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let reply = server.send(delivery(&request_id, body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());

    let objects = objects(&s3.reader()).await;
    assert_eq!(
        objects.len(),
        1,
        "no events object for a delivery without events: {:?}",
        objects.keys()
    );
    let dead = object_of(&objects, "dead_letter", &request_id);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["kind"], "dead_letter");
    assert_eq!(dead[0]["firehose"]["record_index"], 1);
    assert_eq!(dead[0]["data"], sent["records"][1]["data"]);
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("base64"),
        "{}",
        dead[0]
    );
}

/// With the store down, deliveries are refused (503) and nothing is acknowledged;
/// once it is back, Firehose's retries of the same requests store each delivery
/// exactly once in both sinks. A retry of a delivery both sinks committed is then
/// answered without writing again.
#[tokio::test]
async fn an_outage_loses_and_duplicates_nothing() {
    let mut s3 = S3Server::start();
    let server = hydrant_with_s3(&s3, &[0, S3]).await;
    let requests: Vec<(String, Vec<u8>, usize)> = [
        ("alloy/cw_logs_mixed.json", 13),
        ("telegraf/records.json", 1160),
    ]
    .into_iter()
    .map(|(name, events)| {
        let body = fixture(name);
        (request_id_of(&body), body, events)
    })
    .collect();

    s3.stop();
    let (id, body, _) = &requests[0];
    let reply = server.send(delivery(id, body.clone())).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.error_message().contains("lake"),
        "{}",
        reply.error_message()
    );
    assert!(
        !server.state.sinks().get(S3).unwrap().is_up(),
        "the failed retries trip the breaker"
    );
    let started = Instant::now();
    let (id, body, _) = &requests[1];
    let reply = server.send(delivery(id, body.clone())).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once while the sink is down: {:?}",
        started.elapsed()
    );

    s3.restart();
    server.state.sinks().probe_all().await;
    assert!(
        server.state.sinks().get(S3).unwrap().is_up(),
        "the probe finds the store back"
    );
    for (id, body, _) in &requests {
        let reply = server.send(delivery(id, body.clone())).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    }

    let store = s3.reader();
    let stored = objects(&store).await;
    assert_eq!(stored.len(), requests.len(), "{:?}", stored.keys());
    let file_events = server.events();
    for (id, _, events) in &requests {
        assert_eq!(object_of(&stored, "events", id).len(), *events, "{id}");
        let in_file = file_events
            .iter()
            .filter(|event| event["firehose"]["request_id"] == id.as_str())
            .count();
        assert_eq!(in_file, *events, "file sink, {id}");
    }
    assert_eq!(file_events.len(), 13 + 1160);

    // Firehose retries a delivery that both sinks committed (say, the 200 was lost).
    let (id, body, _) = &requests[1];
    let reply = server.send(delivery(id, body.clone())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    assert_eq!(objects(&store).await, stored, "no object written again");
    assert_eq!(server.events().len(), file_events.len());
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(r#"hydrant_sink_duplicates_total{sink="lake",sink_type="s3"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"hydrant_sink_duplicates_total{sink="file",sink_type="file"} 2"#),
        "the first retry found the file sink done, and so did this one: {metrics}"
    );
    // The store is not even asked: with it gone, the retry is still answered 200.
    s3.stop();
    let reply = server.send(delivery(id, body.clone())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
}

/// The probe passes for a reachable bucket (the probe key never exists) and fails
/// for a missing bucket, refused credentials or a stopped server.
#[tokio::test]
async fn the_probe_checks_endpoint_credentials_and_bucket() {
    let mut s3 = S3Server::start();
    let probe =
        |config: S3Config| async move { S3Sink::connect(config).await.unwrap().probe().await };
    assert_eq!(probe(s3.config()).await, Ok(()));
    assert_eq!(
        probe(S3Config {
            prefix: "deep/er".into(),
            ..s3.config()
        })
        .await,
        Ok(())
    );
    let missing = probe(S3Config {
        bucket: "missing".into(),
        ..s3.config()
    })
    .await;
    assert!(
        matches!(&missing, Err(hydrant::sink::SinkError::Unavailable(message)) if message.contains("NoSuchBucket")),
        "{missing:?}"
    );
    let refused = probe(S3Config {
        secret_access_key: Some("wrong".into()),
        ..s3.config()
    })
    .await;
    assert!(
        matches!(refused, Err(hydrant::sink::SinkError::Unavailable(_))),
        "{refused:?}"
    );
    s3.stop();
    let down = probe(s3.config()).await;
    assert!(
        matches!(down, Err(hydrant::sink::SinkError::Unavailable(_))),
        "{down:?}"
    );
}

/// Request ids that the old key building merged (it dropped the empty segments a
/// `/` in a value made, so `x/y`, `x//y` and `/x/y` gave one key, and a retry of
/// one overwrote another's object) each get their own object, under the documented
/// encoding: values are percent-encoded, `/` included.
#[tokio::test]
async fn request_ids_that_a_lossy_cleaning_merges_keep_their_own_objects() {
    let s3 = S3Server::start();
    let server = hydrant_with_s3(&s3, &[S3]).await;
    let ids = ["x/y", "x//y", "/x/y", "x%2Fy"];
    for (n, id) in ids.iter().enumerate() {
        let record = serde_json::json!({ "n": n }).to_string();
        let body = common::body_of(id, &[record.as_bytes()]);
        let reply = server.send(delivery(id, body)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{id}: {}",
            reply.error_message()
        );
    }
    let objects = objects(&s3.reader()).await;
    assert_eq!(objects.len(), ids.len(), "{:?}", objects.keys());
    for (n, (id, encoded)) in ids
        .iter()
        .zip(["x%2Fy", "x%2F%2Fy", "%2Fx%2Fy", "x%252Fy"])
        .enumerate()
    {
        let lines = object_of(&objects, "events", encoded);
        assert_eq!(lines.len(), 1, "{id}");
        assert_eq!(lines[0]["data"]["n"], n, "{id}");
        assert_eq!(lines[0]["firehose"]["request_id"], *id);
    }
}

/// A key longer than S3 takes (1,024 bytes), or with a segment longer than a
/// file-system-backed store takes (255 bytes), used to be refused on every retry.
/// Such a delivery is written under its delivery key instead, overwritten (not
/// duplicated) by a retry, and counted.
#[tokio::test]
async fn over_long_keys_are_written_under_the_delivery_key() {
    let s3 = S3Server::start();
    let metrics = hydrant::metrics::Metrics::new(10);
    let sink = S3Sink::connect(s3.config())
        .await
        .unwrap()
        .with_metrics("lake", &metrics);
    let store = s3.reader();
    let mut expected = BTreeMap::new();
    for (n, request_id) in ["r".repeat(2_000), "s".repeat(300)].iter().enumerate() {
        let source_arn = common::SOURCE_ARN;
        let line = serde_json::json!({ "n": n }).to_string();
        let batch = hydrant::sink::SinkBatch {
            delivery: std::sync::Arc::new(hydrant::event::Delivery {
                request_id: request_id.clone(),
                source_arn: Some(source_arn.to_owned()),
                delivery_stream: Some("test-stream".into()),
                ..hydrant::event::Delivery::default()
            }),
            dedup_key: hydrant::sink::dedup::DeliveryKey::new(Some(source_arn), request_id),
            events: hydrant::sink::EventLines::single(
                format!("{line}\n").into(),
                vec![hydrant::sink::EventMeta {
                    end: line.len() + 1,
                    kind: "record",
                    ..hydrant::sink::EventMeta::default()
                }],
            ),
            dead_letters: hydrant::sink::EventLines::default(),
        };
        sink.commit(&batch)
            .await
            .expect("written under the delivery key");
        // Firehose's retry: the same object again, not a second one.
        sink.commit(&batch).await.unwrap();
        let key = format!(
            "%keys-by-delivery/events/{}.ndjson.gz",
            batch.dedup_key.to_hex()
        );
        expected.insert(key, vec![serde_json::json!({ "n": n })]);
    }
    assert_eq!(objects(&store).await, expected);
    assert!(
        metrics.render().contains(
            r#"hydrant_sink_reshaped_total{action="hashed_key",sink="lake",sink_type="s3"} 4"#
        ),
        "{}",
        metrics.render()
    );
}

/// An `https://` endpoint signed by a private CA is written to when `ca_file` names
/// that CA, and refused (503, nothing written) when it does not: the TLS client
/// uses the process's one crypto backend and the configured roots.
#[tokio::test]
async fn an_https_endpoint_is_trusted_through_ca_file() {
    let s3 = S3Server::start();
    let certificates = Certificates::new();
    let plain = SocketAddr::from((Ipv4Addr::LOCALHOST, s3.port));
    let proxy = TlsProxy::start(&certificates, plain).await;
    let https = S3Config {
        endpoint: Some(format!("https://127.0.0.1:{}", proxy.address.port())),
        ca_file: Some(certificates.path("ca.pem")),
        ..s3.config()
    };

    let untrusting = hydrant_with_s3_config(
        S3Config {
            ca_file: None,
            ..https.clone()
        },
        &[S3],
    )
    .await;
    let body = fixture("telegraf/records.json");
    let request_id = request_id_of(&body);
    let reply = untrusting.send(delivery(&request_id, body.clone())).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(objects(&s3.reader()).await.is_empty());

    let server = hydrant_with_s3_config(https, &[S3]).await;
    let reply = server.send(delivery(&request_id, body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    let stored = objects(&s3.reader()).await;
    assert_eq!(stored.len(), 1, "{:?}", stored.keys());
}
