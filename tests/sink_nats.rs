//! The NATS JetStream sink against a real `nats-server`: real captured deliveries in,
//! messages out field by field; an outage answered 503 and recovered without a
//! single duplicate; retries of committed or partly published deliveries stored once.
//!
//! Every test starts its own `nats-server` (JetStream on, a temporary store, a free
//! port), so tests run in parallel and never touch a server already on the machine.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::{KEY, KEY_NAME, SOURCE_ARN, TestServer, body_of, delivery, fixture};
use futures_util::StreamExt as _;
use hydrant::decode::DecodeSettings;
use hydrant::event::Delivery;
use hydrant::limits::Limits;
use hydrant::routing::{Router, SinkSet};
use hydrant::server::Settings;
use hydrant::server::auth::{AccessKey, Auth};
use hydrant::sink::nats::{NatsConfig, NatsSink};
use hydrant::sink::{EventLines, EventMeta, Sink, SinkBatch, SinkError};
use serde_json::Value;

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
    child: Option<Child>,
}

impl NatsServer {
    fn start() -> Self {
        let binary = nats_server_binary();
        let port = free_port();
        let store = tempfile::tempdir().unwrap();
        let mut server = Self {
            binary,
            port,
            store,
            child: None,
        };
        server.spawn();
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
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
        let mut child = Command::new(&self.binary)
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    TestServer::with_sinks(settings, move |_, _| vec![("bus".into(), Sink::Nats(sink))])
}

/// One message of the stream.
#[derive(Debug)]
struct Stored {
    subject: String,
    id: String,
    payload: Value,
}

/// Every message of the test stream, read with an ephemeral pull consumer.
async fn stream_messages(nats: &NatsServer) -> Vec<Stored> {
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
        let id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get("Nats-Msg-Id"))
            .map(|id| id.as_str().to_owned());
        stored.push(Stored {
            subject: message.subject.to_string(),
            id: id.unwrap_or_else(|| panic!("no Nats-Msg-Id on {}", message.subject)),
            payload: serde_json::from_slice(&message.payload).unwrap(),
        });
        if stored.len() == count {
            break;
        }
    }
    assert_eq!(stored.len(), count, "read every message back");
    stored
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

fn event_id(request_id: &str, record_index: u32, event_index: u32) -> String {
    format!("{SOURCE_ARN}|{request_id}|events|{record_index}|{event_index}")
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
    let nats_handle = server.state.sinks.get(NATS).unwrap();
    assert!(!nats_handle.is_up(), "the breaker is open");
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(r#"hydrant_sink_retries_total{sink="bus",type="nats"} 2"#),
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
    server.state.sinks.probe_all().await;
    assert!(!nats_handle.is_up(), "a probe does not find it either");

    nats.restart();
    let started = Instant::now();
    while !nats_handle.is_up() {
        assert!(
            started.elapsed() < RECONNECT_LIMIT,
            "the sink did not come back within {RECONNECT_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.state.sinks.probe_all().await;
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
    let many: Vec<&Stored> = messages
        .values()
        .filter(|message| message.id.contains(many_id.as_str()))
        .collect();
    assert_eq!(many.len(), 1160);
    assert!(
        many.iter()
            .all(|message| message.subject == "hydrant.events.metric")
    );
    let rest: BTreeSet<String> = messages
        .keys()
        .filter(|id| !id.contains(many_id.as_str()))
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
        metrics.contains(r#"hydrant_sink_duplicates_total{sink="bus",type="nats"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"hydrant_sink_events_total{sink="bus",type="nats"} 13"#),
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
    server.state.sinks.probe_all().await;
    let handle = server.state.sinks.get(NATS).unwrap();
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
        server.state.sinks.probe_all().await;
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
    assert_eq!(messages[0].id, "-|req-1|events|0|0");
    assert_eq!(messages[0].payload, serde_json::json!({"kind": "record"}));
}

#[test]
fn the_server_binary_is_found() {
    let binary = nats_server_binary();
    assert!(Path::new(&binary).is_file());
}
