//! Connections on real sockets: the accept loop's cap and timeouts against clients
//! that send slowly or not at all, and a slow answer that must not be cut.
//!
//! Every test serves the library's `serve` on port 0 with short timeouts, and
//! speaks HTTP/1.1 by hand so it controls every byte and every pause.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{KEY, KEY_NAME, SOURCE_ARN, TestServer, body_of};
use hydrant::decode::DecodeSettings;
use hydrant::limits::Limits;
use hydrant::routing::{Router, SinkSet};
use hydrant::server::auth::{AccessKey, Auth};
use hydrant::server::listener::ConnectionSettings;
use hydrant::server::tls::{CertFiles, Certificates, HandshakeOutcome, Terminator, server_config};
use hydrant::server::{Listeners, Settings, serve};
use hydrant::sink::Sink;
use hydrant::sink::nats::{NatsConfig, NatsSink};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

/// Shutdown grace of the served server.
const GRACE: Duration = Duration::from_secs(20);
/// Longest a test waits for something the server should do within a second or so
/// (generous: the machine may be busy).
const PATIENCE: Duration = Duration::from_secs(5);

/// Settings with short timeouts, each test lengthening what it does not test.
fn quick() -> ConnectionSettings {
    ConnectionSettings {
        header_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_millis(600),
        body_timeout: Duration::from_millis(600),
        min_body_rate: 0,
        min_body_rate_grace: Duration::from_millis(600),
        max_body_time: Duration::from_millis(600),
        max_connections: 64,
        max_admin_connections: 4,
    }
}

/// A server serving on real sockets until stopped.
struct Running {
    server: TestServer,
    ingest: SocketAddr,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<()>>,
}

async fn start(server: TestServer, settings: ConnectionSettings) -> Running {
    start_with_tls(server, settings, None).await
}

/// [`start`], the ingest listener serving HTTPS with `tls` when given.
async fn start_with_tls(
    server: TestServer,
    settings: ConnectionSettings,
    tls: Option<Terminator>,
) -> Running {
    let ingest = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ingest_address, admin_address) =
        (ingest.local_addr().unwrap(), admin.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(serve(
        Listeners {
            ingest,
            admin,
            ingest_tls: tls,
        },
        server.state.clone(),
        async move {
            let _ = stopped.await;
        },
        GRACE,
        settings,
    ));
    Running {
        server,
        ingest: ingest_address,
        admin: admin_address,
        stop: Some(stop),
        served,
    }
}

impl Running {
    /// The value of one metric series, e.g. `name{label="value"}` (0 when absent).
    fn metric(&self, series: &str) -> f64 {
        self.server
            .state
            .metrics()
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    fn timed_out(&self, reason: &str) -> f64 {
        self.metric(&format!(
            r#"hydrant_connections_timed_out_total{{listener="ingest",reason="{reason}"}}"#
        ))
    }

    /// Waits until `series` has `value`.
    async fn wait_for_metric(&self, series: &str, value: f64) {
        let deadline = Instant::now() + PATIENCE;
        while self.metric(series) != value {
            assert!(
                Instant::now() < deadline,
                "{series} is {}, expected {value}",
                self.metric(series)
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    async fn shut_down(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        timeout(GRACE + PATIENCE, &mut self.served)
            .await
            .expect("serve returns")
            .unwrap()
    }
}

/// A delivery's head as Firehose sends it, declaring `length` body bytes.
fn delivery_head(request_id: &str, length: usize) -> String {
    format!(
        "POST /firehose HTTP/1.1\r\nHost: hydrant\r\nContent-Type: application/json\r\n\
         X-Amz-Firehose-Protocol-Version: 1.0\r\nX-Amz-Firehose-Request-Id: {request_id}\r\n\
         X-Amz-Firehose-Source-Arn: {SOURCE_ARN}\r\nX-Amz-Firehose-Access-Key: {KEY}\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}

/// A whole delivery request carrying `records`.
fn delivery_request(request_id: &str, records: &[&[u8]]) -> Vec<u8> {
    let body = body_of(request_id, records);
    let mut request = delivery_head(request_id, body.len()).into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

/// One HTTP response as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Header lines, names lower-cased.
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn error_message(&self) -> &str {
        self.body["errorMessage"].as_str().unwrap_or_default()
    }
}

/// Reads one response (with a `Content-Length`), leaving the connection open.
async fn read_answer(stream: &mut TcpStream) -> std::io::Result<Answer> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map_or(0, |(_, value)| value.parse().unwrap());
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Ok(Answer {
        status,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

/// Sends `request` on a new connection and reads the answer.
async fn exchange(address: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    timeout(Duration::from_secs(60), read_answer(&mut stream))
        .await
        .expect("an answer")
        .unwrap()
}

/// Waits for the server to close `stream` (end of stream or reset), reading and
/// discarding anything before; `None` if it is still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = [0u8; 1024];
    loop {
        match timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut sink),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A slowloris: connections that trickle a request head one byte at a time (or
/// send nothing at all) are closed once the header timeout is over, each counted.
#[tokio::test]
async fn slow_headers_are_closed_after_the_header_timeout() {
    let settings = ConnectionSettings {
        idle_timeout: Duration::from_secs(60),
        ..quick()
    };
    let running = start(TestServer::new(), settings).await;
    let head = delivery_head("r-slowloris", 10);
    let mut clients = Vec::new();
    for n in 0..21 {
        let (address, head) = (running.ingest, head.clone());
        clients.push(tokio::spawn(async move {
            let stream = TcpStream::connect(address).await.unwrap();
            let connected = Instant::now();
            let (mut reader, mut writer) = stream.into_split();
            // One connection sends nothing; the others a byte every 50 ms, which
            // would take 20 s for the whole head.
            let trickle = tokio::spawn(async move {
                for byte in head.bytes().take(if n == 0 { 0 } else { usize::MAX }) {
                    if writer.write_all(&[byte]).await.is_err() {
                        break;
                    }
                    sleep(Duration::from_millis(50)).await;
                }
                sleep(Duration::from_secs(60)).await;
            });
            let mut sink = [0u8; 64];
            let closed = loop {
                match timeout(PATIENCE, reader.read(&mut sink)).await {
                    Err(_) => break None,
                    Ok(Ok(0) | Err(_)) => break Some(connected.elapsed()),
                    Ok(Ok(_)) => {}
                }
            };
            trickle.abort();
            closed
        }));
    }
    for client in clients {
        let closed = client.await.unwrap().expect("a slow head must be cut off");
        assert!(
            closed >= Duration::from_millis(500),
            "closed after {closed:?}, before the header timeout"
        );
    }
    running
        .wait_for_metric(
            r#"hydrant_connections_timed_out_total{listener="ingest",reason="header"}"#,
            21.0,
        )
        .await;
    running
        .wait_for_metric(r#"hydrant_open_connections{listener="ingest"}"#, 0.0)
        .await;
    // A prompt client is still served.
    let answer = exchange(running.ingest, &delivery_request("r-prompt", &[b"{}"])).await;
    assert_eq!(answer.status, 200, "{}", answer.error_message());
    running.shut_down().await.unwrap();
}

/// Log lines written while a test runs, for the tests that check a log line.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn lines_with(&self, text: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|line| line.contains(text))
            .map(str::to_owned)
            .collect()
    }
}

const LIMIT_LOG_LINE: &str = "Connection limit reached";

/// Past the cap, new connections are closed at once, counted, and logged once per
/// interval however many there are; once a connection ends, a new one is served.
/// The admin listener has its own, smaller cap.
#[test]
fn the_connection_cap_bites_is_counted_and_logged_and_frees_up() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let settings = ConnectionSettings {
            header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 3,
            max_admin_connections: 1,
            ..quick()
        };
        let running = start(TestServer::new(), settings).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(running.ingest).await.unwrap());
        }
        running
            .wait_for_metric(r#"hydrant_open_connections{listener="ingest"}"#, 3.0)
            .await;
        for _ in 0..10 {
            let mut refused = TcpStream::connect(running.ingest).await.unwrap();
            let _ = refused
                .write_all(&delivery_request("r-refused", &[b"{}"]))
                .await;
            assert!(
                closed_within(&mut refused, PATIENCE).await.is_some(),
                "a connection past the cap is closed at once"
            );
        }
        assert_eq!(
            running.metric(r#"hydrant_connections_refused_total{listener="ingest"}"#),
            10.0
        );
        assert_eq!(
            running.metric(r#"hydrant_max_connections{listener="ingest"}"#),
            3.0
        );
        let lines = logs.lines_with(LIMIT_LOG_LINE);
        assert_eq!(lines.len(), 1, "one line for the whole flood: {lines:?}");
        assert!(lines[0].contains("listener=\"ingest\"") || lines[0].contains("listener=ingest"));

        // The admin listener's own cap.
        let _admin = TcpStream::connect(running.admin).await.unwrap();
        running
            .wait_for_metric(r#"hydrant_open_connections{listener="admin"}"#, 1.0)
            .await;
        let mut refused = TcpStream::connect(running.admin).await.unwrap();
        assert!(closed_within(&mut refused, PATIENCE).await.is_some());
        assert_eq!(
            running.metric(r#"hydrant_connections_refused_total{listener="admin"}"#),
            1.0
        );
        assert_eq!(logs.lines_with(LIMIT_LOG_LINE).len(), 2);

        // One held connection ends: a new one is served again.
        drop(held.pop());
        running
            .wait_for_metric(r#"hydrant_open_connections{listener="ingest"}"#, 2.0)
            .await;
        let answer = exchange(running.ingest, &delivery_request("r-after", &[b"{}"])).await;
        assert_eq!(answer.status, 200, "{}", answer.error_message());
        drop(held);
        running.shut_down().await.unwrap();
    });
}

/// A body that stops moving is answered 408 in the contract's shape once the body
/// timeout is over, and the connection closed; a prompt body is stored.
#[tokio::test]
async fn a_stalled_body_is_answered_408_and_the_connection_closed() {
    let settings = ConnectionSettings {
        header_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_millis(800),
        max_body_time: Duration::from_secs(60),
        ..quick()
    };
    let running = start(TestServer::new(), settings).await;
    let body = body_of("r-stall", &[&[b'x'; 3000]]);
    let mut stream = TcpStream::connect(running.ingest).await.unwrap();
    stream
        .write_all(delivery_head("r-stall", body.len()).as_bytes())
        .await
        .unwrap();
    // Ten bytes, then nothing.
    stream.write_all(&body.as_bytes()[..10]).await.unwrap();
    let started = Instant::now();
    let answer = timeout(PATIENCE, read_answer(&mut stream))
        .await
        .expect("a stalled body is answered")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.body["requestId"], "r-stall");
    assert!(answer.body["timestamp"].is_u64());
    assert!(
        answer
            .error_message()
            .contains("no byte of the request body arrived for 800ms"),
        "{}",
        answer.error_message()
    );
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(closed_within(&mut stream, PATIENCE).await.is_some());
    assert_eq!(running.timed_out("body_stalled"), 1.0);
    assert_eq!(
        running.metric(
            r#"hydrant_requests_total{access_key="test-sender",delivery_stream="test-stream",outcome="too_slow"}"#
        ),
        1.0
    );

    let mut request = delivery_head("r-stall", body.len()).into_bytes();
    request.extend_from_slice(body.as_bytes());
    let answer = exchange(running.ingest, &request).await;
    assert_eq!(answer.status, 200, "{}", answer.error_message());
    assert_eq!(running.server.events().len(), 1);
    running.shut_down().await.unwrap();
}

/// A body that keeps moving, but slower than the minimum rate once the grace period
/// is over, or not in full within the body time limit, is answered 408 and the
/// connection closed; a prompt body is stored.
#[tokio::test]
async fn a_trickling_body_is_answered_408_and_the_connection_closed() {
    let patient = ConnectionSettings {
        header_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(30),
        min_body_rate: 0,
        max_body_time: Duration::from_secs(60),
        ..quick()
    };
    let table = [
        (
            "below the minimum rate",
            ConnectionSettings {
                min_body_rate: 10_000,
                min_body_rate_grace: Duration::from_millis(800),
                ..patient
            },
            "the request body arrived slower than 10000 bytes/s",
            "body_rate",
        ),
        (
            "past the body time limit",
            ConnectionSettings {
                max_body_time: Duration::from_millis(800),
                ..patient
            },
            "the request body did not arrive in full within 800ms",
            "body_time",
        ),
    ];
    for (name, settings, message, reason) in table {
        let running = start(TestServer::new(), settings).await;
        let body = body_of("r-trickle", &[&[b'x'; 3000]]);
        let stream = TcpStream::connect(running.ingest).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        writer
            .write_all(delivery_head("r-trickle", body.len()).as_bytes())
            .await
            .unwrap();
        // 20 bytes every 100 ms: 200 bytes/s, 20 s for the whole body.
        let bytes = body.clone().into_bytes();
        let trickle = tokio::spawn(async move {
            for chunk in bytes.chunks(20) {
                if writer.write_all(chunk).await.is_err() {
                    break;
                }
                sleep(Duration::from_millis(100)).await;
            }
            writer
        });
        let started = Instant::now();
        let mut received = Vec::new();
        let closed = timeout(PATIENCE, reader.read_to_end(&mut received)).await;
        trickle.abort();
        assert!(
            closed.is_ok(),
            "{name}: the connection is closed after the answer"
        );
        assert!(started.elapsed() >= Duration::from_millis(700), "{name}");
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 408 "), "{name}: {text}");
        assert!(text.contains(message), "{name}: {text}");
        assert!(
            text.contains(r#""requestId":"r-trickle""#),
            "{name}: {text}"
        );
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{name}: {text}"
        );
        for other in ["body_stalled", "body_rate", "body_time"] {
            let count = if other == reason { 1.0 } else { 0.0 };
            assert_eq!(running.timed_out(other), count, "{name}: {other}");
        }

        let mut request = delivery_head("r-trickle", body.len()).into_bytes();
        request.extend_from_slice(body.as_bytes());
        let answer = exchange(running.ingest, &request).await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.error_message());
        assert_eq!(running.server.events().len(), 1, "{name}");
        running.shut_down().await.unwrap();
    }
}

/// Senders that declare 100 MiB bodies and send them slowly hold only the bytes
/// they have sent, not what they declared: deliveries from others keep getting 200.
#[tokio::test]
async fn slow_senders_declaring_100_mib_cannot_starve_fast_senders() {
    let settings = ConnectionSettings {
        header_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(60),
        // Even senders no timeout cuts must not be able to starve the others.
        min_body_rate: 0,
        max_body_time: Duration::from_secs(60),
        ..quick()
    };
    let running = start(TestServer::new(), settings).await;
    let declared = 100 << 20;
    let mut slow = Vec::new();
    for n in 0..6 {
        let mut stream = TcpStream::connect(running.ingest).await.unwrap();
        stream
            .write_all(delivery_head(&format!("r-slow-{n}"), declared).as_bytes())
            .await
            .unwrap();
        slow.push(tokio::spawn(async move {
            let chunk = [b'{'; 1024];
            // 10 KiB/s, for as long as the test runs.
            loop {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
                sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    sleep(Duration::from_millis(500)).await;
    let held = running.metric("hydrant_in_flight_bytes");
    assert!(
        held < f64::from(1 << 20),
        "slow senders hold {held} bytes of the budget, more than they sent"
    );
    // A 13 MiB delivery: more than the 12 MiB five declared 100 MiB bodies would
    // leave of the default 512 MiB budget.
    let record = vec![b'y'; 1 << 20];
    let records: Vec<&[u8]> = std::iter::repeat_n(record.as_slice(), 10).collect();
    for n in 0..2 {
        let request_id = format!("r-fast-{n}");
        let request = delivery_request(&request_id, &records);
        assert!(request.len() > 13 << 20);
        let answer = exchange(running.ingest, &request).await;
        assert_eq!(
            answer.status,
            200,
            "{}: {}",
            request_id,
            answer.error_message()
        );
    }
    for sender in slow {
        sender.abort();
    }
    running
        .wait_for_metric("hydrant_in_flight_bytes", 0.0)
        .await;
    running.shut_down().await.unwrap();
}

/// A keep-alive connection is reused while requests keep coming, and closed once
/// it has been idle for the idle timeout.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let idle_timeout = Duration::from_millis(1500);
    let settings = ConnectionSettings {
        header_timeout: Duration::from_secs(60),
        idle_timeout,
        ..quick()
    };
    let running = start(TestServer::new(), settings).await;
    let mut stream = TcpStream::connect(running.ingest).await.unwrap();
    let mut answered = Instant::now();
    for n in 0..3 {
        if n > 0 {
            // Well within the idle timeout between requests.
            sleep(Duration::from_millis(300)).await;
        }
        stream
            .write_all(&delivery_request(&format!("r-keep-{n}"), &[b"{}"]))
            .await
            .unwrap();
        let answer = timeout(PATIENCE, read_answer(&mut stream))
            .await
            .expect("an answer")
            .unwrap();
        answered = Instant::now();
        assert_eq!(answer.status, 200, "{}", answer.error_message());
        assert_eq!(answer.header("connection"), None, "kept alive");
    }
    assert!(
        closed_within(&mut stream, PATIENCE).await.is_some(),
        "an idle connection is closed"
    );
    let idle = answered.elapsed();
    assert!(
        idle >= idle_timeout - Duration::from_millis(100),
        "closed after {idle:?} idle, before the idle timeout"
    );
    assert_eq!(running.timed_out("idle"), 1.0);
    assert_eq!(running.timed_out("header"), 0.0);
    running.shut_down().await.unwrap();
}

/// A `nats-server` of our own, stopped on drop; it can be frozen with SIGSTOP to
/// make every delivery routed to it slow.
struct Nats {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl Nats {
    fn start() -> Self {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let binary: PathBuf = std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
            .expect("nats-server is not installed (apt-get install -y nats-server)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _store: store,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server whose deliveries all go to a NATS sink on `nats` (besides the file sink).
async fn with_nats(nats: &Nats) -> TestServer {
    let sink = NatsSink::connect(NatsConfig {
        url: nats.url(),
        stream: Some("HYDRANT".to_owned()),
        create_stream: true,
        // Longer than the freeze, so the first attempt simply waits for it.
        ack_timeout_ms: 20_000,
        ..NatsConfig::default()
    })
    .await
    .unwrap();
    let settings = Settings {
        auth: Auth::Keys(vec![AccessKey::new(KEY_NAME, KEY)]),
        limits: Limits::default(),
        decode: DecodeSettings::default(),
        router: Router::everything_to(SinkSet::of(&[0, 1])),
    };
    TestServer::with_sinks(settings, move |_, _| vec![("bus".into(), Sink::Nats(sink))])
}

/// How long the NATS server is frozen: several times every timeout of [`quick`].
const FREEZE: Duration = Duration::from_secs(3);

/// Thaws `nats` after [`FREEZE`].
fn thaw_later(nats: &Nats) -> std::thread::JoinHandle<()> {
    let pid = nats.child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(FREEZE);
        let _ = Command::new("kill").args(["-CONT", &pid]).status();
    })
}

/// An answer that takes longer than every connection timeout (the sink is frozen,
/// no byte moves either way meanwhile) is not cut: the delivery gets its 200, on a
/// connection that stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_is_not_cut_by_the_connection_timeouts() {
    let nats = Nats::start();
    let settings = ConnectionSettings {
        min_body_rate: 1 << 20,
        ..quick()
    };
    let running = start(with_nats(&nats).await, settings).await;
    let mut stream = TcpStream::connect(running.ingest).await.unwrap();
    nats.signal("-STOP");
    let thaw = thaw_later(&nats);
    let started = Instant::now();
    stream
        .write_all(&delivery_request("r-slow-answer", &[br#"{"slow":true}"#]))
        .await
        .unwrap();
    let answer = timeout(Duration::from_secs(30), read_answer(&mut stream))
        .await
        .expect("an answer")
        .expect("the connection was not cut");
    thaw.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.error_message());
    assert!(
        started.elapsed() >= FREEZE - Duration::from_millis(200),
        "the answer waited for the sink"
    );
    stream
        .write_all(&delivery_request("r-after", &[b"{}"]))
        .await
        .unwrap();
    let answer = timeout(PATIENCE, read_answer(&mut stream))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(answer.status, 200, "the connection is still usable");
    for reason in [
        "header",
        "idle",
        "body_stalled",
        "body_rate",
        "body_time",
        "reply_stalled",
    ] {
        assert_eq!(running.timed_out(reason), 0.0, "{reason}");
    }
    running.shut_down().await.unwrap();
}

/// Shutdown through the accept loop: a delivery in flight finishes within the
/// grace period, an idle connection is closed, and new connections are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_delivery_in_flight_finish() {
    let nats = Nats::start();
    let settings = ConnectionSettings {
        idle_timeout: Duration::from_secs(60),
        ..quick()
    };
    let running = start(with_nats(&nats).await, settings).await;
    let mut idle = TcpStream::connect(running.ingest).await.unwrap();
    idle.write_all(&delivery_request("r-idle", &[b"{}"]))
        .await
        .unwrap();
    assert_eq!(read_answer(&mut idle).await.unwrap().status, 200);

    let mut busy = TcpStream::connect(running.ingest).await.unwrap();
    nats.signal("-STOP");
    let thaw = thaw_later(&nats);
    busy.write_all(&delivery_request("r-in-flight", &[b"{}"]))
        .await
        .unwrap();
    // In flight: its bytes are held until the frozen sink answers.
    let deadline = Instant::now() + PATIENCE;
    while running.metric("hydrant_in_flight_bytes") == 0.0 {
        assert!(
            Instant::now() < deadline,
            "the delivery never got in flight"
        );
        sleep(Duration::from_millis(20)).await;
    }
    let ingest = running.ingest;
    let state = running.server.state.clone();
    let shutting_down = tokio::spawn(running.shut_down());
    assert!(
        closed_within(&mut idle, PATIENCE).await.is_some(),
        "the idle connection is closed at once"
    );
    sleep(Duration::from_millis(100)).await;
    assert!(state.is_shutting_down());
    assert!(
        TcpStream::connect(ingest).await.is_err(),
        "no new connections once shutting down"
    );
    let answer = timeout(Duration::from_secs(30), read_answer(&mut busy))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.error_message());
    assert_eq!(answer.header("connection"), Some("close"));
    thaw.join().unwrap();
    shutting_down.await.unwrap().unwrap();
}

/// A connection that has sent nothing yet does not hold shutdown back until its
/// header or handshake timeout: it has no request to finish, so it is closed at
/// once and `serve` returns promptly, on plain HTTP and on HTTPS alike.
#[tokio::test]
async fn silent_connections_do_not_delay_shutdown() {
    let settings = ConnectionSettings {
        header_timeout: Duration::from_secs(30),
        ..quick()
    };
    for https in [false, true] {
        let server = TestServer::new();
        let tls = https.then(|| {
            let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
            let files = CertFiles {
                cert: fixtures.join("client.pem"),
                key: fixtures.join("client.key"),
            };
            let recorder = server.state.metrics().tls(
                "ingest",
                &HandshakeOutcome::ALL.map(HandshakeOutcome::label),
            );
            let certificates = Arc::new(Certificates::new(recorder.clone()));
            certificates.set(files.load().unwrap());
            let config = server_config(certificates, false).unwrap();
            Terminator::new(config, Duration::from_secs(30), recorder)
        });
        let running = start_with_tls(server, settings, tls).await;
        let mut silent = TcpStream::connect(running.ingest).await.unwrap();
        running
            .wait_for_metric(r#"hydrant_open_connections{listener="ingest"}"#, 1.0)
            .await;
        let started = Instant::now();
        running.shut_down().await.unwrap();
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "https {https}: shutdown took {took:?}"
        );
        assert!(
            closed_within(&mut silent, PATIENCE).await.is_some(),
            "https {https}: the silent connection is closed"
        );
    }
}
