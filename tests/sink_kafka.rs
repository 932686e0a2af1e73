//! The `kafka` sink against a real Kafka-protocol broker: `tansu`, a
//! Kafka-compatible broker written in Rust, run on a free port with its SQLite
//! storage engine in a temporary directory, so what it acknowledged survives a
//! restart. That engine is behind a cargo feature: `.ci/run` installs the broker
//! with `cargo install tansu --locked --features dynostore,libsql` (`dynostore`
//! adds the `memory://` engine). These tests fail, rather than skip, when the
//! binary is missing or lacks the feature.
//!
//! What goes in is real captured Firehose deliveries; what is checked is what a
//! Kafka consumer reads back (fetched with rskafka from offset 0).
//!
//! tansu has no TLS listener, so the TLS test puts `stunnel` in front of it (with
//! a CA and server certificate made by the `openssl` CLI in a temporary
//! directory) and has tansu advertise stunnel's port; `.ci/run` installs stunnel.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::certs::Certificates;
use common::{TestServer, binary_bytes, body_of, delivery, file_lines, fixture};
use hydrant::routing::{Router, SinkSet};
use hydrant::server::Settings;
use hydrant::server::auth::{AccessKey, Auth};
use hydrant::sink::Sink;
use hydrant::sink::dedup::DeliveryKey;
use hydrant::sink::kafka::{
    HEADER_KEY, HEADER_PART, HEADER_PARTS, KafkaConfig, KafkaSink, partition_for,
};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::record::Record;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::Value;
use sha2::Digest as _;

/// How long tansu may take to accept connections after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on reading a topic back.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(20);
/// The sink's position: 0 is the embedded file sink.
const KAFKA_SINK: usize = 1;

/// How `.ci/run` installs the broker; quoted when it is missing or lacks a feature.
const INSTALL: &str = "cargo install tansu --locked --features dynostore,libsql";

/// A tansu broker on 127.0.0.1:`port` storing in SQLite under a temporary
/// directory, killed on drop and restartable on the same port with its data.
struct Tansu {
    port: u16,
    /// The port written in the metadata clients get (a TLS proxy's), when it is
    /// not `port`.
    advertised_port: Option<u16>,
    child: Option<Child>,
    /// Holds the database and one log per start.
    dir: tempfile::TempDir,
    starts: u32,
}

impl Tansu {
    fn start() -> Self {
        Self::start_advertising(None)
    }

    /// A broker that tells clients to connect to `advertised_port` (a proxy in
    /// front of it) rather than to its own port.
    fn start_advertising(advertised_port: Option<u16>) -> Self {
        let mut tansu = Self {
            port: common::free_port(),
            advertised_port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
            starts: 0,
        };
        tansu.spawn();
        tansu
    }

    /// `host:port` for clients.
    fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "tansu is already running");
        self.starts += 1;
        let log_path = self.dir.path().join(format!("tansu-{}.log", self.starts));
        let log = std::fs::File::create(&log_path).unwrap();
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!(
            "tcp://127.0.0.1:{}",
            self.advertised_port.unwrap_or(self.port)
        );
        let child = Command::new(tansu_binary())
            .arg("broker")
            // Relative to the working directory: `dir/tansu.db`, kept across restarts.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &advertised])
            .arg("--silent")
            // tansu also reads a `.env` in its working directory: there is none here.
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = read_log(&log_path);
                let hint = if log.contains("FeatureNotEnabled") {
                    format!("; this tansu lacks the SQLite engine, reinstall it with `{INSTALL}`")
                } else {
                    String::new()
                };
                panic!("tansu exited with {status}{hint}: {log}");
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "tansu did not accept connections on {address} within {START_TIMEOUT:?}: {}",
                read_log(&log_path)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The `tansu` binary on `PATH` or in `$HOME/.cargo/bin`.
fn tansu_binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("tansu"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/tansu"));
    }
    candidates
        .into_iter()
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the `tansu` Kafka-compatible broker is needed by these tests and was found \
                 neither on PATH nor in $HOME/.cargo/bin; `.ci/run` installs it with `{INSTALL}`"
            )
        })
}

fn settings() -> Settings {
    Settings {
        auth: Auth::Keys(vec![AccessKey::new(common::KEY_NAME, common::KEY)]),
        router: Router::everything_to(SinkSet::of(&[KAFKA_SINK])),
        ..Settings::default()
    }
}

/// A server whose events all go to a Kafka sink (connected before it is built).
async fn server_with(config: KafkaConfig) -> TestServer {
    let sink = KafkaSink::connect(config)
        .await
        .expect("a valid configuration");
    server_routed(sink, &[KAFKA_SINK])
}

/// A server whose events go to the sinks at `positions`, the Kafka sink being
/// [`KAFKA_SINK`] (0 is the embedded file sink).
fn server_routed(sink: KafkaSink, positions: &[usize]) -> TestServer {
    let settings = Settings {
        router: Router::everything_to(SinkSet::of(positions)),
        ..settings()
    };
    TestServer::with_sinks(settings, move |_dir, metrics| {
        vec![(
            "stream".to_owned(),
            Sink::Kafka(sink.with_metrics("stream", metrics)),
        )]
    })
}

/// The default key of an event of a delivery from [`common::SOURCE_ARN`].
fn event_key(request_id: &str, record_index: u32, event_index: u32) -> String {
    let key = DeliveryKey::new(Some(common::SOURCE_ARN), request_id);
    format!("{}:events:{record_index}:{event_index}", key.to_hex())
}

fn request_id_of(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap();
    value["requestId"].as_str().unwrap().to_owned()
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// One record read back, with where it was.
#[derive(Debug)]
struct Consumed {
    partition: i32,
    offset: i64,
    key: String,
    /// The value as JSON (`null` for a part of an event, which is not JSON alone).
    value: Value,
    raw_value: Vec<u8>,
    headers: BTreeMap<String, String>,
    timestamp_ms: i64,
}

impl Consumed {
    fn from_record(partition: i32, offset: i64, record: Record) -> Self {
        Self {
            partition,
            offset,
            key: String::from_utf8(record.key.expect("a key")).unwrap(),
            value: serde_json::from_slice(record.value.as_deref().expect("a value"))
                .unwrap_or(Value::Null),
            raw_value: record.value.unwrap_or_default(),
            headers: record
                .headers
                .into_iter()
                .map(|(name, value)| (name, String::from_utf8(value).unwrap()))
                .collect(),
            timestamp_ms: record.timestamp.timestamp_millis(),
        }
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
fn wait_for_port(port: u16, what: &str) {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        assert!(
            started.elapsed() < START_TIMEOUT,
            "{what} did not accept connections on {address} within {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The topics the broker lists, internal ones aside.
async fn topics(broker: &str) -> BTreeMap<String, usize> {
    let client = ClientBuilder::new(vec![broker.to_owned()])
        .build()
        .await
        .unwrap();
    client
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|topic| (topic.name, topic.partitions.len()))
        .collect()
}

/// Every record of every partition of `topic`, from offset 0 to the high
/// watermark, by partition then offset.
async fn consume(broker: &str, topic: &str) -> Vec<Consumed> {
    consume_over(broker, topic, None).await
}

/// [`consume`], over TLS when `tls` is given.
async fn consume_over(
    broker: &str,
    topic: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Vec<Consumed> {
    let read = async {
        let mut builder = ClientBuilder::new(vec![broker.to_owned()]);
        if let Some(tls) = tls {
            builder = builder.tls_config(tls);
        }
        let client = builder.build().await.unwrap();
        let listed = client.list_topics().await.unwrap();
        let partitions = listed
            .into_iter()
            .find(|listed| listed.name == topic)
            .unwrap_or_else(|| panic!("topic {topic:?} exists"))
            .partitions;
        let mut consumed = Vec::new();
        for partition in partitions {
            let reader = client
                .partition_client(topic, partition, UnknownTopicHandling::Retry)
                .await
                .unwrap();
            let mut offset = 0;
            loop {
                let (records, high_watermark) = reader
                    .fetch_records(offset, 1..8_000_000, 100)
                    .await
                    .unwrap();
                for record in records {
                    if record.offset >= offset {
                        offset = record.offset + 1;
                        consumed.push(Consumed::from_record(
                            partition,
                            record.offset,
                            record.record,
                        ));
                    }
                }
                if offset >= high_watermark {
                    break;
                }
            }
        }
        consumed
    };
    tokio::time::timeout(CONSUME_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| panic!("reading {topic:?} back took over {CONSUME_TIMEOUT:?}"))
}

/// The decoded JSON of every record of a fixture (CloudWatch Logs records are
/// gzipped).
fn fixture_records(body: &[u8]) -> Vec<Value> {
    let body: Value = serde_json::from_slice(body).unwrap();
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            let bytes = STANDARD.decode(record["data"].as_str().unwrap()).unwrap();
            let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
                hydrant::limits::gunzip_capped(&bytes, 1 << 20).unwrap()
            } else {
                bytes
            };
            serde_json::from_slice(&bytes).unwrap()
        })
        .collect()
}

/// Real captures in, records out, checked field by field: topics rendered per
/// event kind and metric namespace and cleaned (`AWS/EC2` → `AWS_EC2`), keys,
/// headers, timestamps, partitions chosen from the keys, compressed batches
/// (gzip) read back intact.
#[tokio::test]
async fn real_captures_become_kafka_records_field_by_field() {
    let tansu = Tansu::start();
    let mut config = KafkaConfig::new(vec![tansu.broker()]);
    config.topic = "hydrant.{table}.{kind}.{namespace}".into();
    config.compression = "gzip".into();
    config.topic_partitions = 3;
    let server = server_with(config).await;

    let logs = fixture("alloy/cw_logs_mixed.json");
    let metrics = fixture("telegraf/record.json");
    let (logs_id, metrics_id) = (request_id_of(&logs), request_id_of(&metrics));
    let before = now_ms();
    for (request_id, body) in [(&logs_id, logs.clone()), (&metrics_id, metrics.clone())] {
        let reply = server.send(delivery(request_id, body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    }
    let after = now_ms();

    let listed = topics(&tansu.broker()).await;
    assert_eq!(
        listed.get("hydrant.events.log.none"),
        Some(&3),
        "{listed:?}"
    );
    assert_eq!(
        listed.get("hydrant.events.metric.AWS_EC2"),
        Some(&3),
        "{listed:?}"
    );
    assert!(
        !listed.keys().any(|topic| topic.contains("dead_letter")),
        "no dead letters, no topic: {listed:?}"
    );

    // CloudWatch Logs: record 0 is a control message (no events), record 1 holds
    // 13 log events.
    let sent = fixture_records(&logs);
    let log_events = sent[1]["logEvents"].as_array().unwrap();
    assert_eq!(log_events.len(), 13);
    let consumed = consume(&tansu.broker(), "hydrant.events.log.none").await;
    assert_eq!(consumed.len(), 13, "{consumed:?}");
    let by_key: BTreeMap<&str, &Consumed> = consumed
        .iter()
        .map(|record| (record.key.as_str(), record))
        .collect();
    assert_eq!(by_key.len(), 13, "keys are unique");
    for (index, sent_event) in log_events.iter().enumerate() {
        let key = event_key(&logs_id, 1, u32::try_from(index).unwrap());
        let record = by_key
            .get(key.as_str())
            .unwrap_or_else(|| panic!("{key} in {by_key:?}"));
        assert_eq!(record.partition, partition_for(key.as_bytes(), 3), "{key}");
        assert_eq!(record.headers["hydrant-request-id"], logs_id);
        assert_eq!(record.headers["hydrant-table"], "events");
        assert_eq!(record.headers.len(), 2);
        assert!(
            (before..=after).contains(&record.timestamp_ms),
            "received_at: {record:?}"
        );
        let event = &record.value;
        assert_eq!(event["kind"], "log");
        assert_eq!(event["message"], sent_event["message"], "{key}");
        assert_eq!(event["timestamp"], sent_event["timestamp"], "{key}");
        assert_eq!(event["aws"]["event_id"], sent_event["id"], "{key}");
        assert_eq!(event["aws"]["log_group"], "/aws/lambda/logging-lambda");
        assert_eq!(event["aws"]["log_group"], sent[1]["logGroup"]);
        assert_eq!(event["aws"]["log_stream"], sent[1]["logStream"]);
        assert_eq!(event["aws"]["account_id"], sent[1]["owner"]);
        assert_eq!(event["firehose"]["request_id"], logs_id.as_str());
        assert_eq!(event["firehose"]["record_index"], 1);
        assert_eq!(event["firehose"]["delivery_stream"], "test-stream");
    }
    // Within a partition, records keep the delivery's order.
    for partition in 0..3 {
        let indexes: Vec<u64> = consumed
            .iter()
            .filter(|record| record.partition == partition)
            .map(|record| record.key.rsplit(':').next().unwrap().parse().unwrap())
            .collect();
        assert!(indexes.is_sorted(), "partition {partition}: {indexes:?}");
    }
    assert!(
        consumed
            .iter()
            .map(|record| record.partition)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1,
        "13 keys spread over more than one of 3 partitions"
    );

    // Metric Streams (JSON): one data point.
    let sent = &fixture_records(&metrics)[0];
    let consumed = consume(&tansu.broker(), "hydrant.events.metric.AWS_EC2").await;
    assert_eq!(consumed.len(), 1, "{consumed:?}");
    let record = &consumed[0];
    let key = event_key(&metrics_id, 0, 0);
    assert_eq!(record.key, key);
    assert_eq!(record.partition, partition_for(key.as_bytes(), 3));
    assert_eq!(record.offset, 0);
    assert_eq!(record.headers["hydrant-request-id"], metrics_id);
    assert_eq!(record.headers["hydrant-table"], "events");
    let event = &record.value;
    assert_eq!(event["kind"], "metric");
    assert_eq!(event["namespace"], "AWS/EC2");
    assert_eq!(event["metric_name"], "CPUUtilization");
    assert_eq!(event["metric_name"], sent["metric_name"]);
    assert_eq!(event["dimensions"]["InstanceId"], "i-0efc7fdf09c123428");
    assert_eq!(event["timestamp"], sent["timestamp"]);
    assert_eq!(event["unit"], "Percent");
    assert_eq!(event["value"]["max"], 10.011_666_666_666_667);
    assert_eq!(event["value"]["max"], sent["value"]["max"]);
    assert_eq!(event["value"]["count"], 1.0);
    assert_eq!(event["firehose"]["request_id"], metrics_id.as_str());
}

/// The broker dies mid-test: deliveries get 503, first after the sink's retries,
/// then at once while the breaker holds the sink down; once the broker is back
/// and a probe finds it, Firehose's retries of the same requests succeed.
///
/// The broker keeps its data across the restart (SQLite storage), so nothing
/// acknowledged before the outage may be missing afterwards. Kafka through this
/// sink is at least once: a retry after a partial produce may write records
/// twice, so the retried deliveries are only required to be there at least once.
#[tokio::test]
async fn a_broker_outage_answers_503_then_recovers() {
    let mut tansu = Tansu::start();
    let mut config = KafkaConfig::new(vec![tansu.broker()]);
    config.timeout_ms = 1_000;
    config.compression = "lz4".into();
    let server = server_with(config).await;
    let sink = || server.state.sinks().get(KAFKA_SINK).unwrap();

    let first = body_of("outage-0", &[br#"{"n":0}"#]);
    let reply = server.send(delivery("outage-0", first)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    assert_eq!(consume(&tansu.broker(), "hydrant-events").await.len(), 1);

    tansu.kill();
    let started = Instant::now();
    let reply = server
        .send(delivery("outage-1", body_of("outage-1", &[br#"{"n":1}"#])))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.body
    );
    assert!(
        reply.error_message().contains("stream"),
        "{}",
        reply.error_message()
    );
    assert!(!sink().is_up(), "three failed attempts trip the breaker");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded: {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let reply = server
        .send(delivery(
            "outage-2",
            body_of("outage-2", &[br#"{"n":2}"#, br#"{"n":3}"#]),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the breaker answers at once: {:?}",
        started.elapsed()
    );
    server.state.sinks().probe_all().await;
    assert!(
        !sink().is_up(),
        "a probe of a dead broker keeps the sink down"
    );
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(r#"hydrant_sink_up{sink="stream",sink_type="kafka"} 0"#),
        "{metrics}"
    );

    tansu.restart();
    let recovered = Instant::now();
    while !sink().is_up() {
        assert!(
            recovered.elapsed() < Duration::from_secs(15),
            "the sink never came back up"
        );
        server.state.sinks().probe_all().await;
        if !sink().is_up() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let retries: [(&str, Vec<&[u8]>); 2] = [
        ("outage-1", vec![br#"{"n":1}"#]),
        ("outage-2", vec![br#"{"n":2}"#, br#"{"n":3}"#]),
    ];
    for (request_id, records) in retries {
        let reply = server
            .send(delivery(request_id, body_of(request_id, &records)))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{request_id}: {}",
            reply.error_message()
        );
    }
    let consumed = consume(&tansu.broker(), "hydrant-events").await;
    for (key, n) in [
        (event_key("outage-1", 0, 0), 1),
        (event_key("outage-2", 0, 0), 2),
        (event_key("outage-2", 1, 0), 3),
    ] {
        let copies: Vec<&Consumed> = consumed.iter().filter(|record| record.key == key).collect();
        assert!(
            !copies.is_empty(),
            "{key} is there at least once: {consumed:?}"
        );
        assert!(
            copies.iter().all(|record| record.value["data"]["n"] == n),
            "{copies:?}"
        );
    }
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(r#"hydrant_sink_up{sink="stream",sink_type="kafka"} 1"#),
        "{metrics}"
    );
}

/// Firehose retries a delivery Hydrant already answered 200 for: the answer is 200
/// again and nothing is produced twice.
#[tokio::test]
async fn a_retried_committed_delivery_is_not_produced_again() {
    let tansu = Tansu::start();
    let server = server_with(KafkaConfig::new(vec![tansu.broker()])).await;
    let body = fixture("telegraf/record.json");
    let request_id = request_id_of(&body);

    let reply = server.send(delivery(&request_id, body.clone())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    let consumed = consume(&tansu.broker(), "hydrant-events").await;
    assert_eq!(consumed.len(), 1);
    assert_eq!(consumed[0].key, event_key(&request_id, 0, 0));

    let reply = server.send(delivery(&request_id, body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(r#"hydrant_sink_duplicates_total{sink="stream",sink_type="kafka"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"hydrant_sink_events_total{sink="stream",sink_type="kafka"} 1"#),
        "{metrics}"
    );
    assert_eq!(
        consume(&tansu.broker(), "hydrant-events").await.len(),
        1,
        "not produced again"
    );
}

/// A 900 KiB binary record (Firehose takes records up to 1,000 KiB) makes an event
/// line of about 1.2 MB, over a broker's default `message.max.bytes` of 1 MiB: a
/// broker that enforces it refused the batch on every retry. The event is produced
/// as parts that each fit `max_batch_bytes`, all on the partition of the event's
/// key, and put back together byte for byte; the other event is produced as it is.
#[tokio::test]
async fn an_event_over_the_batch_limit_is_produced_in_parts() {
    let tansu = Tansu::start();
    let mut config = KafkaConfig::new(vec![tansu.broker()]);
    config.topic_partitions = 3;
    let max_batch_bytes = config.max_batch_bytes;
    let sink = KafkaSink::connect(config).await.unwrap();
    let server = server_routed(sink, &[0, KAFKA_SINK]);
    let big = binary_bytes(900 * 1024);
    let request_id = "c0ffee00-0000-4000-8000-000000000900";
    let body = body_of(request_id, &[&big, br#"{"n":1}"#]);
    let reply = server.send(delivery(request_id, body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());

    let consumed = consume(&tansu.broker(), "hydrant-events").await;
    let (parts, whole): (Vec<&Consumed>, Vec<&Consumed>) = consumed
        .iter()
        .partition(|record| record.headers.contains_key(HEADER_PARTS));
    assert_eq!(whole.len(), 1, "{whole:?}");
    assert_eq!(whole[0].key, event_key(request_id, 1, 0));
    assert_eq!(whole[0].value["data"], serde_json::json!({"n": 1}));

    let event_key = event_key(request_id, 0, 0);
    let partition = partition_for(event_key.as_bytes(), 3);
    let count: usize = parts[0].headers[HEADER_PARTS].parse().unwrap();
    assert_eq!(parts.len(), count);
    assert!(count >= 2, "{count}");
    let mut rebuilt = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        // One partition, in order.
        assert_eq!(part.partition, partition);
        assert_eq!(part.headers[HEADER_PART], index.to_string());
        assert_eq!(part.headers[HEADER_PARTS], count.to_string());
        assert_eq!(part.headers[HEADER_KEY], event_key);
        let part_bytes = parts[0].raw_value.len();
        assert_eq!(part.key, format!("{event_key}%part:{part_bytes}:{index}"));
        assert!(part.raw_value.len() < max_batch_bytes);
        rebuilt.extend_from_slice(&part.raw_value);
    }
    let lines = file_lines(&server);
    let original = lines
        .iter()
        .find(|line| line.len() > max_batch_bytes)
        .expect("the big event's line in the file sink");
    assert_eq!(&rebuilt, original, "byte for byte");
    let event: Value = serde_json::from_slice(&rebuilt).unwrap();
    assert_eq!(
        STANDARD.decode(event["data"].as_str().unwrap()).unwrap(),
        big
    );
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(
            r#"hydrant_sink_reshaped_total{action="split_event",sink="stream",sink_type="kafka"} 1"#
        ),
        "{metrics}"
    );
}

/// `delivery` with another source ARN.
fn from_stream(
    request: axum::http::Request<axum::body::Body>,
    source_arn: &str,
) -> axum::http::Request<axum::body::Body> {
    let mut request = request;
    request.headers_mut().insert(
        "x-amz-firehose-source-arn",
        axum::http::HeaderValue::from_str(source_arn).unwrap(),
    );
    request
}

/// Two streams that send the same request id used to share record keys (the
/// default key was the request id and the positions), so a compacted topic kept
/// only one of the two events. The default key now starts with the delivery key,
/// which stands for the source ARN and the request id together.
#[tokio::test]
async fn two_streams_with_one_request_id_get_different_keys() {
    let tansu = Tansu::start();
    let server = server_with(KafkaConfig::new(vec![tansu.broker()])).await;
    let request_id = "5ame1d00-0000-4000-8000-000000000002";
    let arns = [
        "arn:aws:firehose:eu-west-1:123456789012:deliverystream/left",
        "arn:aws:firehose:eu-west-1:123456789012:deliverystream/right",
    ];
    for (n, arn) in arns.iter().enumerate() {
        let record = serde_json::json!({ "n": n }).to_string();
        let body = body_of(request_id, &[record.as_bytes()]);
        let reply = server
            .send(from_stream(delivery(request_id, body), arn))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    }
    let consumed = consume(&tansu.broker(), "hydrant-events").await;
    let by_key: BTreeMap<&str, &Consumed> = consumed
        .iter()
        .map(|record| (record.key.as_str(), record))
        .collect();
    assert_eq!(by_key.len(), 2, "{consumed:?}");
    for (n, arn) in arns.iter().enumerate() {
        let key = format!(
            "{}:events:0:0",
            DeliveryKey::new(Some(arn), request_id).to_hex()
        );
        assert_eq!(by_key[key.as_str()].value["data"]["n"], n, "{key}");
        assert_eq!(
            by_key[key.as_str()].headers["hydrant-request-id"],
            request_id
        );
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Topic names longer than Kafka's 249 characters used to be cut, so two log groups
/// that differ only past the cut shared one topic. The name now keeps its start and
/// ends in a digest of the whole rendered name.
#[tokio::test]
async fn long_topic_names_stay_apart() {
    let tansu = Tansu::start();
    let mut config = KafkaConfig::new(vec![tansu.broker()]);
    config.topic = "hydrant.{log_group}".into();
    let server = server_with(config).await;
    let stem = format!("/aws/lambda/{}", "f".repeat(250));
    let groups = [format!("{stem}-one"), format!("{stem}-two")];
    for (n, group) in groups.iter().enumerate() {
        let request_id = format!("10ng7091-0000-4000-8000-00000000000{n}");
        let logs = serde_json::json!({
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": group,
            "logStream": "s",
            "subscriptionFilters": ["all"],
            "logEvents": [{"id": "1", "timestamp": 1_700_000_000_000_i64, "message": group}],
        });
        let body = body_of(&request_id, &[&gzip(logs.to_string().as_bytes())]);
        let reply = server.send(delivery(&request_id, body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    }
    let listed = topics(&tansu.broker()).await;
    for group in &groups {
        let rendered = format!("hydrant.{group}");
        let digest: String = sha2::Sha256::digest(rendered.as_bytes())[..16]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let cleaned = rendered.replace('/', "_");
        let topic = format!("{}-{digest}", &cleaned[..216]);
        assert_eq!(topic.len(), 249);
        assert!(listed.contains_key(&topic), "{topic} in {listed:?}");
        let consumed = consume(&tansu.broker(), &topic).await;
        assert_eq!(consumed.len(), 1);
        assert_eq!(consumed[0].value["message"], group.as_str());
    }
}

/// Every JSON log line of this test process at WARN and above, and Hydrant's own
/// at DEBUG and above. Installed once, as the global subscriber (tests run on
/// several threads); tests pick their lines out by the broker address they use.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    Arc::clone(LOGS.get_or_init(|| {
        #[derive(Clone)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(Arc::clone(&logs));
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter("warn,hydrant=debug")
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    }))
}

/// The captured log lines that mention `needle`.
fn log_lines_with(logs: &Mutex<Vec<u8>>, needle: &str) -> Vec<Value> {
    String::from_utf8(logs.lock().unwrap().clone())
        .unwrap()
        .lines()
        .filter(|line| line.contains(needle))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// With nothing listening on the broker's port, probes as fast as a test can send
/// them (far more often than the fan-out's 2 s) make only a handful of connection
/// attempts (the backoff: at 0, 0.25, 0.75, 1.75 and 3.75 s) and one warning; the
/// client's own retry loop, which logs a warning per try, is never entered.
#[tokio::test]
async fn a_down_broker_is_retried_with_a_backoff_and_logged_once() {
    const RUN: Duration = Duration::from_secs(5);
    let logs = captured_logs();
    let broker = format!("127.0.0.1:{}", common::free_port());
    let sink = KafkaSink::connect(KafkaConfig::new(vec![broker.clone()]))
        .await
        .unwrap();
    let started = Instant::now();
    let mut probes = 0;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < RUN {
        let probe = Instant::now();
        let error = sink.probe().await.unwrap_err();
        slowest = slowest.max(probe.elapsed());
        assert!(error.to_string().contains(&broker), "{error}");
        probes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = log_lines_with(&logs, &broker);
    let count =
        |predicate: &dyn Fn(&Value) -> bool| lines.iter().filter(|line| predicate(line)).count();
    let attempts = count(&|line| line["message"] == "Connecting to Kafka.");
    let warnings = count(&|line| line["level"] == "WARN");
    let errors = count(&|line| line["level"] == "ERROR");
    assert!(
        probes >= 100,
        "probes in backoff fail at once: {probes}, slowest {slowest:?}"
    );
    assert!(
        (4..=6).contains(&attempts),
        "{attempts} attempts: {lines:#?}"
    );
    assert_eq!(warnings, 1, "{lines:#?}");
    assert_eq!(errors, 0, "{lines:#?}");
    let warning = lines.iter().find(|line| line["level"] == "WARN").unwrap();
    assert!(
        warning["reason"].as_str().unwrap().contains("refused"),
        "{warning}"
    );
    // Beside them only the line saying the sink is configured.
    assert_eq!(
        lines.len(),
        1 + attempts + warnings,
        "nothing else: {lines:#?}"
    );
}

/// A rustls client configuration trusting the test CA, for reading back.
fn client_config(certificates: &Certificates) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(certificates.path("ca.pem")).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// `stunnel` accepting TLS on 127.0.0.1:`port` and passing the plain bytes on to
/// 127.0.0.1:`upstream`; killed on drop.
struct Stunnel {
    child: Child,
}

impl Stunnel {
    fn start(pki: &Certificates, port: u16, upstream: u16) -> Self {
        let config = pki.path("stunnel.conf");
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\noutput = {}\n\n[kafka]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{upstream}\ncert = {}\nkey = {}\n",
                pki.path("stunnel.log").display(),
                pki.path("server.pem").display(),
                pki.path("server.key").display(),
            ),
        )
        .unwrap();
        let child = Command::new("stunnel")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel is installed (Debian package stunnel4; `.ci/run` installs it)");
        wait_for_port(port, "stunnel");
        Self { child }
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TLS end to end: a sink trusting the test CA produces through stunnel (the
/// broker advertises stunnel's port, so every connection the client makes is
/// TLS) and the records are read back over TLS; a sink trusting another CA, or
/// speaking plain Kafka to the TLS port, fails its probe.
#[tokio::test]
async fn tls_brokers_are_reached_with_the_configured_ca() {
    let pki = Certificates::new();
    let tls_port = common::free_port();
    let tansu = Tansu::start_advertising(Some(tls_port));
    let _stunnel = Stunnel::start(&pki, tls_port, tansu.port);
    let broker = format!("127.0.0.1:{tls_port}");

    let mut config = KafkaConfig::new(vec![broker.clone()]);
    config.tls = true;
    config.tls_ca_file = Some(pki.path("ca.pem"));
    let sink = KafkaSink::connect(config).await.unwrap();
    sink.probe().await.expect("a probe over TLS");
    let server = server_routed(sink, &[KAFKA_SINK]);
    let reply = server
        .send(delivery(
            "tls-0",
            body_of("tls-0", &[br#"{"n":0}"#, br#"{"n":1}"#]),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    let consumed = consume_over(&broker, "hydrant-events", Some(client_config(&pki))).await;
    let values: Vec<&Value> = consumed
        .iter()
        .map(|record| &record.value["data"]["n"])
        .collect();
    assert_eq!(values, [0, 1], "{consumed:?}");

    // The repository's test CA did not sign stunnel's certificate.
    let mut config = KafkaConfig::new(vec![broker.clone()]);
    config.tls = true;
    config.tls_ca_file =
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem"));
    config.timeout_ms = 1_000;
    let sink = KafkaSink::connect(config).await.unwrap();
    let error = sink.probe().await.unwrap_err();
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );
    let mut config = KafkaConfig::new(vec![broker]);
    config.timeout_ms = 1_000;
    let sink = KafkaSink::connect(config).await.unwrap();
    let error = sink.probe().await.unwrap_err();
    assert!(error.to_string().contains("127.0.0.1"), "{error}");
}
