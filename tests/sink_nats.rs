//! The NATS JetStream sink against a real `nats-server`: real captured deliveries in,
//! messages out field by field; an outage answered 503 and recovered without a
//! single duplicate; retries of committed or partly published deliveries stored once.
//!
//! Every test starts its own `nats-server` (JetStream on, a temporary store, a free
//! port), so tests run in parallel and never touch a server already on the machine.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::certs::Certificates;
use common::{
    KEY, KEY_NAME, SOURCE_ARN, TestServer, binary_bytes, body_of, delivery, file_lines, fixture,
};
use futures_util::StreamExt as _;
use hydrant::decode::DecodeSettings;
use hydrant::event::Delivery;
use hydrant::limits::Limits;
use hydrant::routing::{Router, SinkSet};
use hydrant::server::Settings;
use hydrant::server::auth::{AccessKey, Auth};
use hydrant::sink::dedup::DeliveryKey;
use hydrant::sink::nats::{NatsConfig, NatsSink};
use hydrant::sink::{EventLines, EventMeta, Sink, SinkBatch, SinkError};
use serde_json::Value;
use sha2::Digest as _;

/// Part headers, as the sink writes them (spelt here so the test fails rather than
/// follows if they change).
const HEADER_PART: &str = "Hydrant-Part";
const HEADER_PARTS: &str = "Hydrant-Parts";
const HEADER_EVENT_ID: &str = "Hydrant-Msg-Id";

/// The stream the tests have the sink create.
const STREAM: &str = "HYDRANT";
/// Position of the NATS sink (0 is the embedded file sink).
const NATS: usize = 1;
/// How long a started server may take to accept connections.
const SERVER_START_LIMIT: Duration = Duration::from_secs(10);
/// How long the client may take to reconnect after a restart (its reconnect delay
/// grows to 4 s while the server is down).
const RECONNECT_LIMIT: Duration = Duration::from_secs(15);

/// A `nats-server` of our own with JetStream, stopped on drop. It can be stopped
/// and started again on the same port and store directory.
struct NatsServer {
    binary: PathBuf,
    port: u16,
    store: tempfile::TempDir,
    /// A configuration file given with `-c`, for settings without a flag.
    config: Option<PathBuf>,
    child: Option<Child>,
}

impl NatsServer {
    fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that also reads `config` (nats-server's configuration syntax).
    fn start_with_config(config: &str) -> Self {
        Self::start_with(Some(config))
    }

    fn start_with(config: Option<&str>) -> Self {
        let binary = nats_server_binary();
        let port = common::free_port();
        let store = tempfile::tempdir().unwrap();
        let config = config.map(|text| {
            let path = store.path().join("nats-server.conf");
            std::fs::write(&path, text).unwrap();
            path
        });
        let mut server = Self {
            binary,
            port,
            store,
            config,
            child: None,
        };
        server.spawn();
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn tls_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.store.path().join("nats-server.log")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut command = Command::new(&self.binary);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let mut child = command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path().join("jetstream"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", self.binary.display()));
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("nats-server exited with {status}:\n{}", self.log());
            }
            if started.elapsed() > SERVER_START_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "nats-server did not listen on {address} within {SERVER_START_LIMIT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Stops the server the way an operator or orchestrator would (SIGTERM), so what
    /// it acknowledged is on disk for the restart; SIGKILL if it lingers.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `nats-server` from `PATH` or `/usr/sbin`, where Debian's package puts it. Missing
/// is a failure, not a skip: CI must run these tests.
fn nats_server_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .expect(
            "nats-server is not installed (looked in PATH and /usr/sbin); `.ci/run` installs it \
             (apt package `nats-server`): apt-get install -y nats-server",
        )
}

/// A sink on `nats` that creates the test stream; `edit` changes the rest.
async fn nats_sink(nats: &NatsServer, edit: impl FnOnce(&mut NatsConfig)) -> NatsSink {
    let mut config = NatsConfig {
        url: nats.url(),
        stream: Some(STREAM.to_owned()),
        create_stream: true,
        ack_timeout_ms: 2_000,
        ..NatsConfig::default()
    };
    edit(&mut config);
    NatsSink::connect(config).await.unwrap()
}

/// A server whose deliveries go to the sinks at `positions` (the NATS sink is
/// [`NATS`]).
fn hydrant_with(sink: NatsSink, positions: &[usize]) -> TestServer {
    let settings = Settings {
        auth: Auth::Keys(vec![AccessKey::new(KEY_NAME, KEY)]),
        limits: Limits::default(),
        decode: DecodeSettings::default(),
        router: Router::everything_to(SinkSet::of(positions)),
    };
    TestServer::with_sinks(settings, move |_, metrics| {
        vec![("bus".into(), Sink::Nats(sink.with_metrics("bus", metrics)))]
    })
}

/// One message of the stream.
#[derive(Debug)]
struct Stored {
    subject: String,
    id: String,
    payload: Value,
}

/// One message of the stream as it is: subject, headers and payload bytes.
#[derive(Debug)]
struct RawMessage {
    subject: String,
    headers: BTreeMap<String, String>,
    payload: Bytes,
}

/// Every message of the test stream, in stream order, as stored.
async fn raw_stream_messages(nats: &NatsServer) -> Vec<RawMessage> {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream(STREAM).await.unwrap();
    let count = stream.get_info().await.unwrap().state.messages;
    if count == 0 {
        return Vec::new();
    }
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..consumer::pull::Config::default()
        })
        .await
        .unwrap();
    let count = usize::try_from(count).unwrap();
    let mut batch = consumer
        .batch()
        .max_messages(count)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let mut stored = Vec::with_capacity(count);
    while let Some(message) = batch.next().await {
        let message = message.unwrap();
        let headers = message
            .headers
            .iter()
            .flat_map(|headers| headers.iter())
            .map(|(name, values)| {
                let value = values
                    .iter()
                    .map(|value| value.as_str())
                    .collect::<Vec<_>>();
                (name.to_string(), value.join(","))
            })
            .collect();
        stored.push(RawMessage {
            subject: message.subject.to_string(),
            headers,
            payload: message.payload.clone(),
        });
        if stored.len() == count {
            break;
        }
    }
    assert_eq!(stored.len(), count, "read every message back");
    stored
}

/// Every message of the test stream, read with an ephemeral pull consumer; each
/// payload is one event's JSON line.
async fn stream_messages(nats: &NatsServer) -> Vec<Stored> {
    raw_stream_messages(nats)
        .await
        .into_iter()
        .map(|message| Stored {
            id: message
                .headers
                .get("Nats-Msg-Id")
                .unwrap_or_else(|| panic!("no Nats-Msg-Id on {}", message.subject))
                .clone(),
            payload: serde_json::from_slice(&message.payload)
                .unwrap_or_else(|error| panic!("{}: not one JSON event: {error}", message.subject)),
            subject: message.subject,
        })
        .collect()
}

async fn stream_count(nats: &NatsServer) -> u64 {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let stream = jetstream::new(client).get_stream(STREAM).await.unwrap();
    stream.get_info().await.unwrap().state.messages
}

/// Every message by id; fails on a duplicate id.
fn by_id(messages: Vec<Stored>) -> BTreeMap<String, Stored> {
    let mut map = BTreeMap::new();
    for message in messages {
        let id = message.id.clone();
        assert!(
            map.insert(id.clone(), message).is_none(),
            "message id {id} is stored twice"
        );
    }
    map
}

/// The `Nats-Msg-Id` of an event of a delivery from [`SOURCE_ARN`]: the delivery
/// key, the table and the two indexes.
fn event_id(request_id: &str, record_index: u32, event_index: u32) -> String {
    format!(
        "{}:events:{record_index}:{event_index}",
        delivery_key(request_id)
    )
}

/// The delivery key of a request from [`SOURCE_ARN`], as written in message ids.
fn delivery_key(request_id: &str) -> String {
    DeliveryKey::new(Some(SOURCE_ARN), request_id).to_hex()
}

fn request_id_of(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap();
    value["requestId"].as_str().unwrap().to_owned()
}

/// The records of a Firehose request body, base64-decoded and, when gzip'd, inflated.
fn records_of(body: &[u8]) -> Vec<Vec<u8>> {
    let value: Value = serde_json::from_slice(body).unwrap();
    value["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            let bytes = STANDARD.decode(record["data"].as_str().unwrap()).unwrap();
            // The captures are small; a cap of 16 MiB is only there because every
            // inflation goes through the capped helper.
            hydrant::limits::gunzip_capped(&bytes, 16 << 20).unwrap_or(bytes)
        })
        .collect()
}

/// `body` with its `requestId` replaced.
fn with_request_id(body: &[u8], request_id: &str) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(body).unwrap();
    value["requestId"] = Value::from(request_id);
    serde_json::to_vec(&value).unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

async fn deliver(server: &TestServer, request_id: &str, body: Vec<u8>) -> common::Reply {
    server.send(delivery(request_id, body)).await
}

async fn deliver_fixture(server: &TestServer, name: &str) -> (String, common::Reply) {
    let body = fixture(name);
    let request_id = request_id_of(&body);
    let reply = deliver(server, &request_id, body).await;
    (request_id, reply)
}

/// The alloy capture holds a CloudWatch Logs control message (record 0, no events)
/// and 13 log events of one Lambda (record 1); the telegraf capture one EC2 metric.
/// Each event becomes one message on `hydrant.events.{kind}` whose payload is the
/// event's line (the same the file sink stores) and whose id names the event.
#[tokio::test]
async fn real_captures_become_one_message_per_event_field_by_field() {
    let nats = NatsServer::start();
    let server = hydrant_with(nats_sink(&nats, |_| {}).await, &[0, NATS]);

    let (logs_id, reply) = deliver_fixture(&server, "alloy/cw_logs_mixed.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    let (metric_id, reply) = deliver_fixture(&server, "telegraf/record.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());

    let messages = stream_messages(&nats).await;
    assert_eq!(messages.len(), 14, "13 log events and 1 metric");
    // The payloads are exactly the events the file sink stored.
    let mut payloads: Vec<String> = messages
        .iter()
        .map(|message| message.payload.to_string())
        .collect();
    let mut stored: Vec<String> = server.events().iter().map(Value::to_string).collect();
    payloads.sort();
    stored.sort();
    assert_eq!(payloads, stored);
    let messages = by_id(messages);

    // Logs, field by field against the capture.
    let records = records_of(&fixture("alloy/cw_logs_mixed.json"));
    let data: Value = serde_json::from_slice(&records[1]).unwrap();
    let log_events = data["logEvents"].as_array().unwrap();
    assert_eq!(log_events.len(), 13);
    for (index, expected) in log_events.iter().enumerate() {
        let id = event_id(&logs_id, 1, u32::try_from(index).unwrap());
        let message = messages
            .get(&id)
            .unwrap_or_else(|| panic!("no message {id}"));
        assert_eq!(message.subject, "hydrant.events.log", "{id}");
        let event = &message.payload;
        assert_eq!(event["kind"], "log", "{id}");
        assert_eq!(event["message"], expected["message"], "{id}");
        assert_eq!(event["timestamp"], expected["timestamp"], "{id}");
        assert_eq!(event["aws"]["event_id"], expected["id"], "{id}");
        assert_eq!(
            event["aws"]["log_group"], "/aws/lambda/logging-lambda",
            "{id}"
        );
        assert_eq!(event["aws"]["log_stream"], data["logStream"], "{id}");
        assert_eq!(event["aws"]["account_id"], "366620023056", "{id}");
        assert_eq!(event["firehose"]["request_id"], logs_id.as_str(), "{id}");
        assert_eq!(event["firehose"]["record_index"], 1, "{id}");
        assert_eq!(event["firehose"]["source_arn"], SOURCE_ARN, "{id}");
    }
    assert!(
        messages
            .values()
            .filter(|message| message.subject == "hydrant.events.log")
            .all(|message| !message.payload["message"]
                .as_str()
                .unwrap()
                .starts_with("CWL CONTROL MESSAGE")),
        "control messages are not events"
    );

    // The metric.
    let metric = &messages[&event_id(&metric_id, 0, 0)];
    assert_eq!(metric.subject, "hydrant.events.metric");
    let event = &metric.payload;
    assert_eq!(event["kind"], "metric");
    assert_eq!(event["namespace"], "AWS/EC2");
    assert_eq!(event["metric_name"], "CPUUtilization");
    assert_eq!(event["dimensions"]["InstanceId"], "i-0efc7fdf09c123428");
    assert_eq!(event["unit"], "Percent");
    assert_eq!(event["timestamp"], 1_651_679_580_000_i64);
    assert_eq!(event["value"]["max"], 10.011_666_666_666_667);
    assert_eq!(event["value"]["count"], 1.0);
    assert_eq!(
        event["metric_stream_name"],
        "grpn-sandbox-dev-cloudwatch-metric-stream"
    );
    assert_eq!(event["firehose"]["request_id"], metric_id.as_str());
}

/// A per-event subject: each log group's value is cleaned into one subject token
/// (`.` and spaces become `_`), and an event without a log group goes to `none`.
#[tokio::test]
async fn a_per_event_subject_is_cleaned_into_tokens() {
    let nats = NatsServer::start();
    let sink = nats_sink(&nats, |config| {
        config.subject = "hydrant.logs.{log_group}".into()
    })
    .await;
    let server = hydrant_with(sink, &[NATS]);

    let logs = serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": "/ecs/my.app prod",
        "logStream": "web/1",
        "subscriptionFilters": ["all"],
        "logEvents": [
            {"id": "1", "timestamp": 1_700_000_000_000_i64, "message": "hello"},
            {"id": "2", "timestamp": 1_700_000_000_001_i64, "message": "world"},
        ],
    });
    let metric = records_of(&fixture("telegraf/record.json")).remove(0);
    let request_id = "5b3d0a3e-0000-4000-8000-000000000001";
    let body = body_of(request_id, &[&gzip(logs.to_string().as_bytes()), &metric]);
    let reply = deliver(&server, request_id, body.into_bytes()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());

    let messages = by_id(stream_messages(&nats).await);
    assert_eq!(messages.len(), 3);
    for (index, text) in ["hello", "world"].into_iter().enumerate() {
        let message = &messages[&event_id(request_id, 0, u32::try_from(index).unwrap())];
        assert_eq!(message.subject, "hydrant.logs./ecs/my_app_prod");
        assert_eq!(message.payload["message"], text);
        assert_eq!(
            message.payload["aws"]["log_group"], "/ecs/my.app prod",
            "the payload keeps the value as it is"
        );
    }
    let metric = &messages[&event_id(request_id, 1, 0)];
    assert_eq!(metric.subject, "hydrant.logs.none");
    assert_eq!(metric.payload["metric_name"], "CPUUtilization");
}

/// NATS goes away: deliveries get 503 (the first after the fan-out's retries, then at
/// once from the open breaker) and nothing is acknowledged. Once it is back and a
/// probe finds it, Firehose's retries of the same requests are stored, each event
/// exactly once, and the delivery committed before the outage is not stored again.
#[tokio::test]
async fn an_outage_answers_503_then_the_retries_store_each_event_once() {
    let mut nats = NatsServer::start();
    let server = hydrant_with(nats_sink(&nats, |_| {}).await, &[NATS]);
    let (before_id, reply) = deliver_fixture(&server, "telegraf/record.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());

    nats.stop();
    let (logs_id, reply) = deliver_fixture(&server, "alloy/cw_logs_mixed.json").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.error_message().contains("bus"),
        "{}",
        reply.error_message()
    );
    let nats_handle = server.state.sinks().get(NATS).unwrap();
    assert!(!nats_handle.is_up(), "the breaker is open");
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(r#"hydrant_sink_retries_total{sink="bus",sink_type="nats"} 2"#),
        "{metrics}"
    );
    let started = Instant::now();
    // The captures of `record.json` and `records.json` share a request id; give this
    // one its own, as Firehose would.
    let many_id = "0c4b6c1e-7d35-4a43-9a1e-3f1f5e1c0002".to_owned();
    let many_body = with_request_id(&fixture("telegraf/records.json"), &many_id);
    let reply = deliver(&server, &many_id, many_body).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "fails fast: {:?}",
        started.elapsed()
    );
    server.state.sinks().probe_all().await;
    assert!(!nats_handle.is_up(), "a probe does not find it either");

    nats.restart();
    let started = Instant::now();
    while !nats_handle.is_up() {
        assert!(
            started.elapsed() < RECONNECT_LIMIT,
            "the sink did not come back within {RECONNECT_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.state.sinks().probe_all().await;
    }

    // Firehose retries with the same request ids.
    for (request_id, name) in [
        (&logs_id, "alloy/cw_logs_mixed.json"),
        (&many_id, "telegraf/records.json"),
        (&before_id, "telegraf/record.json"),
    ] {
        let body = with_request_id(&fixture(name), request_id);
        let reply = deliver(&server, request_id, body).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{name}: {}",
            reply.error_message()
        );
    }
    let messages = by_id(stream_messages(&nats).await);
    assert_eq!(messages.len(), 1 + 13 + 1160, "each event exactly once");
    let mut expected: BTreeSet<String> =
        (0..13).map(|event| event_id(&logs_id, 1, event)).collect();
    expected.insert(event_id(&before_id, 0, 0));
    let many_key = delivery_key(&many_id);
    let many: Vec<&Stored> = messages
        .values()
        .filter(|message| message.id.starts_with(&many_key))
        .collect();
    assert_eq!(many.len(), 1160);
    assert!(
        many.iter()
            .all(|message| message.subject == "hydrant.events.metric")
    );
    let rest: BTreeSet<String> = messages
        .keys()
        .filter(|id| !id.starts_with(&many_key))
        .cloned()
        .collect();
    assert_eq!(rest, expected);
}

/// A delivery JetStream stored in part (as when the connection broke between two
/// publishes) is completed by Firehose's retry without a second copy of what was
/// already stored: JetStream keeps the first message of each id.
#[tokio::test]
async fn a_partly_published_delivery_is_completed_without_copies() {
    let nats = NatsServer::start();
    let server = hydrant_with(nats_sink(&nats, |_| {}).await, &[NATS]);
    let body = fixture("alloy/cw_logs_mixed.json");
    let request_id = request_id_of(&body);

    // The part that made it: the first 5 of the 13 events, marked so the copy kept
    // can be told apart.
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    for event in 0..5 {
        let message = jetstream::message::PublishMessage::build()
            .payload(serde_json::json!({ "partial": event }).to_string().into())
            .message_id(event_id(&request_id, 1, event));
        let ack = js
            .send_publish("hydrant.events.log", message)
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(!ack.duplicate);
    }
    assert_eq!(stream_count(&nats).await, 5);

    let reply = deliver(&server, &request_id, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    let messages = by_id(stream_messages(&nats).await);
    assert_eq!(messages.len(), 13, "one copy of each event");
    for event in 0..13 {
        let message = &messages[&event_id(&request_id, 1, event)];
        if event < 5 {
            assert_eq!(
                message.payload,
                serde_json::json!({ "partial": event }),
                "the first copy is kept"
            );
        } else {
            assert_eq!(message.payload["kind"], "log");
        }
    }
}

/// Firehose retrying a delivery this sink already committed (its answer was lost) is
/// answered 200 from the fan-out's committed window, without publishing again.
#[tokio::test]
async fn a_retry_of_a_committed_delivery_is_not_published_again() {
    let nats = NatsServer::start();
    let server = hydrant_with(nats_sink(&nats, |_| {}).await, &[NATS]);
    let (request_id, reply) = deliver_fixture(&server, "alloy/cw_logs_mixed.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    assert_eq!(stream_count(&nats).await, 13);

    let reply = deliver(&server, &request_id, fixture("alloy/cw_logs_mixed.json")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(r#"hydrant_sink_duplicates_total{sink="bus",sink_type="nats"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"hydrant_sink_events_total{sink="bus",sink_type="nats"} 13"#),
        "{metrics}"
    );
    assert_eq!(stream_count(&nats).await, 13, "nothing published again");
}

/// The server may be down when Hydrant starts: the sink connects in the background,
/// is reported down, and creates its stream once the server is there.
#[tokio::test]
async fn a_server_down_at_startup_is_waited_for() {
    let mut nats = NatsServer::start();
    nats.stop();
    let server = hydrant_with(nats_sink(&nats, |_| {}).await, &[NATS]);
    server.state.sinks().probe_all().await;
    let handle = server.state.sinks().get(NATS).unwrap();
    assert!(!handle.is_up());
    let (request_id, reply) = deliver_fixture(&server, "telegraf/record.json").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);

    nats.spawn();
    let started = Instant::now();
    while !handle.is_up() {
        assert!(
            started.elapsed() < RECONNECT_LIMIT,
            "the sink did not come up within {RECONNECT_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.state.sinks().probe_all().await;
    }
    let reply = deliver(&server, &request_id, fixture("telegraf/record.json")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    let messages = stream_messages(&nats).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, event_id(&request_id, 0, 0));
}

/// Without a stream name the sink publishes to whichever stream holds the subject
/// and probes the JetStream account; a subject no stream holds is refused with an
/// error naming it.
#[tokio::test]
async fn without_a_stream_name_the_subjects_stream_is_used() {
    let nats = NatsServer::start();
    let _creator = nats_sink(&nats, |_| {}).await;
    let sink = nats_sink(&nats, |config| {
        config.stream = None;
        config.create_stream = false;
    })
    .await;
    sink.probe().await.expect("connected and JetStream answers");
    let lost = nats_sink(&nats, |config| {
        config.stream = None;
        config.create_stream = false;
        config.subject = "nowhere.{kind}".into();
    })
    .await;
    let batch = SinkBatch {
        delivery: Arc::new(Delivery {
            request_id: "req-1".into(),
            ..Delivery::default()
        }),
        dedup_key: hydrant::sink::dedup::DeliveryKey::new(None, "req-1"),
        events: EventLines::single(
            Bytes::from_static(b"{\"kind\":\"record\"}\n"),
            vec![EventMeta {
                end: 18,
                kind: "record",
                ..EventMeta::default()
            }],
        ),
        dead_letters: EventLines::default(),
    };
    let error = lost.commit(&batch).await.unwrap_err();
    assert!(
        matches!(&error, SinkError::Unavailable(reason) if reason.contains("nowhere.record")),
        "{error:?}"
    );

    sink.commit(&batch).await.unwrap();
    let messages = stream_messages(&nats).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].subject, "hydrant.events.record");
    assert_eq!(
        messages[0].id,
        format!("{}:events:0:0", DeliveryKey::new(None, "req-1").to_hex())
    );
    assert_eq!(messages[0].payload, serde_json::json!({"kind": "record"}));
}

/// `max_payload` of the server in the split test: small, so that an ordinary record
/// is over it (the default is 1 MiB, which a 900 KiB binary record passes once
/// base64'd into its event line).
const SMALL_MAX_PAYLOAD: usize = 16 * 1024;

/// An event larger than the server's `max_payload` used to be refused on every
/// retry, blocking its delivery stream for good. It is now stored as parts that
/// each fit, on the event's subject, which a consumer puts back together byte for
/// byte; the other event of the delivery is stored as it is, and the delivery is
/// answered 200. A retry (another node, whose window does not know the delivery)
/// stores no second copy of any part.
#[tokio::test]
async fn an_event_over_max_payload_is_stored_in_parts() {
    let nats = NatsServer::start_with_config(&format!("max_payload: {SMALL_MAX_PAYLOAD}\n"));
    let server = hydrant_with(nats_sink(&nats, |_| {}).await, &[0, NATS]);
    let big = binary_bytes(40 * 1024);
    let request_id = "8d0e9a52-0000-4000-8000-00000000b16e";
    let body = body_of(request_id, &[&big, br#"{"n":1}"#]);
    let reply = deliver(&server, request_id, body.clone().into_bytes()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());

    let messages = raw_stream_messages(&nats).await;
    let (parts, whole): (Vec<&RawMessage>, Vec<&RawMessage>) = messages
        .iter()
        .partition(|message| message.headers.contains_key(HEADER_PARTS));
    assert_eq!(whole.len(), 1, "{messages:?}");
    assert_eq!(whole[0].headers["Nats-Msg-Id"], event_id(request_id, 1, 0));
    let small: Value = serde_json::from_slice(&whole[0].payload).unwrap();
    assert_eq!(small["data"], serde_json::json!({"n": 1}));

    // Put the big event back together from its parts, in part order.
    let lines = file_lines(&server);
    assert_eq!(lines.len(), 2);
    let original = lines
        .iter()
        .find(|line| line.len() > SMALL_MAX_PAYLOAD)
        .expect("the big event's line in the file sink");
    let count: usize = parts[0].headers[HEADER_PARTS].parse().unwrap();
    assert!(count > original.len() / SMALL_MAX_PAYLOAD, "{count}");
    assert_eq!(parts.len(), count);
    let mut ordered: Vec<(usize, &RawMessage)> = parts
        .iter()
        .map(|part| (part.headers[HEADER_PART].parse().unwrap(), *part))
        .collect();
    ordered.sort_by_key(|(index, _)| *index);
    let mut rebuilt = Vec::new();
    for (expected, (index, part)) in ordered.iter().enumerate() {
        assert_eq!(*index, expected, "parts 0..{count}");
        assert_eq!(part.subject, "hydrant.events.record");
        assert_eq!(part.headers[HEADER_PARTS], count.to_string());
        assert_eq!(part.headers[HEADER_EVENT_ID], event_id(request_id, 0, 0));
        let part_bytes = ordered[0].1.payload.len();
        assert_eq!(
            part.headers["Nats-Msg-Id"],
            format!("{}:{part_bytes}:{index}", event_id(request_id, 0, 0))
        );
        assert!(part.payload.len() < SMALL_MAX_PAYLOAD);
        rebuilt.extend_from_slice(&part.payload);
    }
    assert_eq!(&rebuilt, original, "byte for byte");
    let event: Value = serde_json::from_slice(&rebuilt).unwrap();
    assert_eq!(event["format"], "binary");
    assert_eq!(
        STANDARD.decode(event["data"].as_str().unwrap()).unwrap(),
        big
    );
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(
            r#"hydrant_sink_reshaped_total{action="split_event",sink="bus",sink_type="nats"} 1"#
        ),
        "{metrics}"
    );

    let other_node = hydrant_with(nats_sink(&nats, |_| {}).await, &[NATS]);
    let reply = deliver(&other_node, request_id, body.into_bytes()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    assert_eq!(
        stream_count(&nats).await,
        u64::try_from(messages.len()).unwrap(),
        "no part stored twice"
    );
}

/// A stream may take smaller messages than the server (`max_msg_size`), and
/// refused every retry of a larger event. The sink reads the stream's limit and
/// splits by the smaller of the two.
#[tokio::test]
async fn a_streams_own_message_limit_is_respected() {
    const STREAM_LIMIT: i32 = 8 * 1024;
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.create_stream(jetstream::stream::Config {
        name: STREAM.to_owned(),
        subjects: vec!["hydrant.>".to_owned()],
        max_message_size: STREAM_LIMIT,
        ..jetstream::stream::Config::default()
    })
    .await
    .unwrap();
    let sink = nats_sink(&nats, |config| config.create_stream = false).await;
    let line = serde_json::json!({ "data": "x".repeat(20_000) }).to_string();
    sink.commit(&log_batch(None, "req-limit", "g", line.as_bytes()))
        .await
        .expect("stored in parts");
    let parts = raw_stream_messages(&nats).await;
    assert_eq!(parts.len(), 3, "{parts:?}");
    let mut rebuilt = Vec::new();
    for part in &parts {
        assert!(part.payload.len() < usize::try_from(STREAM_LIMIT).unwrap());
        assert_eq!(part.headers[HEADER_PARTS], "3");
        rebuilt.extend_from_slice(&part.payload);
    }
    assert_eq!(rebuilt, line.as_bytes());
}

/// One event of `log_group` for the request `request_id`.
fn log_batch(
    source_arn: Option<&str>,
    request_id: &str,
    log_group: &str,
    line: &[u8],
) -> SinkBatch {
    let mut lines = line.to_vec();
    lines.push(b'\n');
    SinkBatch {
        delivery: Arc::new(Delivery {
            request_id: request_id.into(),
            source_arn: source_arn.map(str::to_owned),
            ..Delivery::default()
        }),
        dedup_key: DeliveryKey::new(source_arn, request_id),
        events: EventLines::single(
            Bytes::from(lines.clone()),
            vec![EventMeta {
                end: lines.len(),
                kind: "log",
                log_group: Some(Arc::from(log_group)),
                ..EventMeta::default()
            }],
        ),
        dead_letters: EventLines::default(),
    }
}

/// A log group of 5,000 characters in a per-event subject used to make a protocol
/// line longer than the server accepts (`maximum control line exceeded`), and the
/// server closed the connection under every delivery in flight on it. The token
/// is now a digest of the value; both deliveries, committed together on one
/// connection, are stored.
#[tokio::test]
async fn a_huge_log_group_in_the_subject_keeps_the_connection() {
    let nats = NatsServer::start();
    let metrics = hydrant::metrics::Metrics::new(10);
    let sink = nats_sink(&nats, |config| {
        config.subject = "hydrant.logs.{log_group}".into();
    })
    .await
    .with_metrics("bus", &metrics);
    let huge = format!("/aws/lambda/{}", "x".repeat(5_000));
    let huge_batch = log_batch(None, "req-huge", &huge, br#"{"n":"huge"}"#);
    let normal_batch = log_batch(None, "req-normal", "/aws/lambda/f", br#"{"n":"normal"}"#);
    let (huge_result, normal_result) =
        tokio::join!(sink.commit(&huge_batch), sink.commit(&normal_batch));
    huge_result.expect("the huge log group's delivery");
    normal_result.expect("the delivery beside it");
    sink.commit(&log_batch(
        None,
        "req-after",
        "/aws/lambda/g",
        br#"{"n":"after"}"#,
    ))
    .await
    .expect("and the one after");

    let subjects: BTreeMap<String, String> = stream_messages(&nats)
        .await
        .into_iter()
        .map(|message| {
            (
                message.payload["n"].as_str().unwrap().to_owned(),
                message.subject,
            )
        })
        .collect();
    let digest: String = sha2::Sha256::digest(huge.as_bytes())[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(subjects["huge"], format!("hydrant.logs.~{digest}"));
    assert_eq!(subjects["normal"], "hydrant.logs./aws/lambda/f");
    assert_eq!(subjects["after"], "hydrant.logs./aws/lambda/g");
    assert!(
        !nats.log().contains("control line"),
        "the server saw no over-long line: {}",
        nats.log()
    );
    assert!(
        metrics.render().contains(
            r#"hydrant_sink_reshaped_total{action="hashed_name",sink="bus",sink_type="nats"} 1"#
        ),
        "{}",
        metrics.render()
    );
}

/// Two different deliveries whose ids were the same once joined with `|` (the
/// source ARN may hold a `|`, so `…/nidX|y` + `z` met `…/nidX` + `y|z`): JetStream
/// took the second for a retry of the first and dropped it. Both are stored.
#[tokio::test]
async fn ids_that_a_joining_bar_would_merge_are_both_stored() {
    let nats = NatsServer::start();
    let sink = nats_sink(&nats, |_| {}).await;
    let arn = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/nidX";
    let bar_arn = format!("{arn}|y");
    let deliveries = [
        (Some(bar_arn.as_str()), "z", "first"),
        (Some(arn), "y|z", "second"),
        (None, "-|z", "third"),
        (Some("-"), "z", "fourth"),
    ];
    for (source_arn, request_id, n) in deliveries {
        let line = serde_json::json!({ "n": n }).to_string();
        sink.commit(&log_batch(source_arn, request_id, "g", line.as_bytes()))
            .await
            .unwrap();
    }
    let stored: BTreeSet<String> = stream_messages(&nats)
        .await
        .into_iter()
        .map(|message| message.payload["n"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        stored,
        BTreeSet::from(["first", "second", "third", "fourth"].map(str::to_owned))
    );
}

#[test]
fn the_server_binary_is_found() {
    let binary = nats_server_binary();
    assert!(Path::new(&binary).is_file());
}

/// nats-server's `tls` block: the test server certificate, and clients must show a
/// certificate the test CA signed.
fn tls_server_config(certificates: &Certificates) -> String {
    format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n}}\n",
        certificates.path("server.pem"),
        certificates.path("server.key"),
        certificates.path("ca.pem"),
    )
}

/// A change to a sink's configuration, for tables of cases.
type ConfigEdit = fn(&mut NatsConfig);

/// How many messages the test stream holds, asked over TLS with the client
/// certificate.
async fn tls_stream_count(nats: &NatsServer, certificates: &Certificates) -> u64 {
    let client = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(certificates.path("ca.pem"))
        .add_client_certificate(
            certificates.path("client.pem"),
            certificates.path("client.key"),
        )
        .connect(nats.tls_url())
        .await
        .unwrap();
    let stream = jetstream::new(client).get_stream(STREAM).await.unwrap();
    stream.get_info().await.unwrap().state.messages
}

/// A NATS server that requires TLS and client certificates is reached with the
/// configured CA and certificate; without the CA (system roots only) or without a
/// client certificate the sink is down and Hydrant answers 503, never panics.
#[tokio::test]
async fn a_tls_server_is_reached_with_the_configured_ca_and_client_certificate() {
    let certificates = Certificates::new();
    let nats = NatsServer::start_with_config(&tls_server_config(&certificates));
    let tls = |config: &mut NatsConfig| {
        config.url = nats.tls_url();
        config.tls_ca_file = Some(certificates.path("ca.pem"));
        config.tls_cert_file = Some(certificates.path("client.pem"));
        config.tls_key_file = Some(certificates.path("client.key"));
    };
    let server = hydrant_with(nats_sink(&nats, tls).await, &[NATS]);
    server.state.sinks().probe_all().await;
    assert!(
        server.state.sinks().get(NATS).unwrap().is_up(),
        "{}",
        nats.log()
    );
    let (_, reply) = deliver_fixture(&server, "telegraf/record.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    assert_eq!(tls_stream_count(&nats, &certificates).await, 1);

    let refused: [(&str, ConfigEdit); 2] = [
        ("system roots only", |config| config.tls_ca_file = None),
        ("no client certificate", |config| {
            config.tls_cert_file = None;
            config.tls_key_file = None;
        }),
    ];
    for (case, change) in refused {
        let sink = nats_sink(&nats, |config| {
            tls(config);
            change(config);
        })
        .await;
        let server = hydrant_with(sink, &[NATS]);
        server.state.sinks().probe_all().await;
        assert!(!server.state.sinks().get(NATS).unwrap().is_up(), "{case}");
        let (_, reply) = deliver_fixture(&server, "telegraf/record.json").await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{case}");
    }
    assert_eq!(tls_stream_count(&nats, &certificates).await, 1);
}

/// A server that knows users by nkey lets in the sink holding the seed, and not
/// one holding another seed.
#[tokio::test]
async fn an_nkey_user_is_let_in_and_another_seed_is_not() {
    let user = nkeys::KeyPair::new_user();
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{\n  users = [ {{ nkey: {:?} }} ]\n}}\n",
        user.public_key()
    ));
    let seed = user.seed().unwrap();
    let server = hydrant_with(
        nats_sink(&nats, |config| config.nkey = Some(seed)).await,
        &[NATS],
    );
    server.state.sinks().probe_all().await;
    assert!(
        server.state.sinks().get(NATS).unwrap().is_up(),
        "{}",
        nats.log()
    );
    let (_, reply) = deliver_fixture(&server, "telegraf/record.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());

    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    let server = hydrant_with(
        nats_sink(&nats, |config| config.nkey = Some(stranger)).await,
        &[NATS],
    );
    server.state.sinks().probe_all().await;
    assert!(!server.state.sinks().get(NATS).unwrap().is_up());
    let (_, reply) = deliver_fixture(&server, "telegraf/record.json").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}
