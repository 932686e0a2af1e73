//! Shared helpers for the integration tests: an in-process server on a temporary
//! data directory, Firehose request builders, and readers for what was stored.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]
#![allow(unreachable_pub, reason = "test helpers shared across test binaries")]
#![allow(missing_docs, reason = "test helpers")]

pub mod certs;
pub mod process;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use hydrant::app::App;
use hydrant::decode::DecodeSettings;
use hydrant::limits::Limits;
use hydrant::metrics::Metrics;
use hydrant::routing::{Router, SinkSet};
use hydrant::server::auth::{AccessKey, Auth};
use hydrant::server::{AppState, Settings, admin_router, ingest_router};
use hydrant::sink::Sink;
use hydrant::sink::fanout::FanoutSettings;
use hydrant::sink::file::{FileSink, FileSinkSettings};
use serde_json::Value;
use tower::ServiceExt;

pub const KEY_NAME: &str = "test-sender";
pub const KEY: &str = "s3cr3t-key==";
pub const SOURCE_ARN: &str = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/test-stream";

/// A server built from the library, answering through `oneshot` (no socket).
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub state: AppState,
}

impl TestServer {
    pub fn new() -> Self {
        Self::with(
            Auth::Keys(vec![AccessKey::new(KEY_NAME, KEY)]),
            Limits::default(),
        )
    }

    pub fn with(auth: Auth, limits: Limits) -> Self {
        Self::with_settings(Settings {
            auth,
            limits,
            decode: DecodeSettings::default(),
            router: Router::everything_to(SinkSet::of(&[0])),
        })
    }

    /// A server whose only sink is a file sink in a temporary directory (position 0).
    pub fn with_settings(settings: Settings) -> Self {
        Self::with_sinks(settings, |_, _| Vec::new())
    }

    /// A server with the embedded file sink at position 0 and then `more()`'s sinks,
    /// routed by `settings.router`. Retries are quick, so failure tests stay short.
    pub fn with_sinks(
        settings: Settings,
        more: impl FnOnce(&Path, &Metrics) -> Vec<(String, Sink)>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new(100));
        let file =
            FileSink::open(FileSinkSettings::new(dir.path()), metrics.storage.clone()).unwrap();
        let mut sinks = vec![("file".to_owned(), Sink::File(file))];
        sinks.extend(more(dir.path(), &metrics));
        let fanout = FanoutSettings {
            backoff: std::time::Duration::from_millis(20),
            deadline: std::time::Duration::from_secs(30),
            ..FanoutSettings::default()
        };
        // Wired by the same composition root as `main`; ready at once, as the
        // tests' sinks need no probing first.
        let app = App::new(settings, sinks, fanout, metrics);
        let state = app.state().clone();
        state.readiness().set(true);
        Self { dir, state }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = ingest_router(self.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        Reply::read(response).await
    }

    pub async fn admin(&self, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = admin_router(self.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Every stored event, open segment included.
    pub fn events(&self) -> Vec<Value> {
        stored_events(self.dir.path())
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub raw: Vec<u8>,
    pub body: Value,
}

impl Reply {
    pub async fn read(response: axum::response::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            raw,
            body,
        }
    }

    pub fn error_message(&self) -> &str {
        self.body["errorMessage"].as_str().unwrap_or_default()
    }
}

/// A request with every Firehose header set; tests remove or change what they test.
pub fn delivery(request_id: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post("/firehose")
        .header("content-type", "application/json")
        .header("x-amz-firehose-protocol-version", "1.0")
        .header("x-amz-firehose-request-id", request_id)
        .header("x-amz-firehose-source-arn", SOURCE_ARN)
        .header("x-amz-firehose-access-key", KEY)
        .header(
            "x-amz-firehose-common-attributes",
            r#"{"commonAttributes":{"env":"test"}}"#,
        )
        .body(body.into())
        .unwrap()
}

/// A request body carrying `records`, base64-encoded.
pub fn body_of(request_id: &str, records: &[&[u8]]) -> String {
    let records: Vec<Value> = records
        .iter()
        .map(|record| serde_json::json!({ "data": STANDARD.encode(record) }))
        .collect();
    serde_json::json!({ "requestId": request_id, "timestamp": 1_700_000_000_000_u64, "records": records }).to_string()
}

pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path),
    )
    .unwrap()
}

/// Every event line under `data_dir/events`, completed and open segments alike.
pub fn stored_events(data_dir: &Path) -> Vec<Value> {
    table_lines(data_dir, "events")
}

/// Every line under `data_dir/dead_letter`.
pub fn dead_letters(data_dir: &Path) -> Vec<Value> {
    table_lines(data_dir, "dead_letter")
}

/// Every complete line under `data_dir/events` as a crash (SIGKILL) left them,
/// before any restart. The open segment may end in a torn line: the kernel can stop
/// a `write` part-way when the process is killed. Such a write was never synced nor
/// acknowledged, and recovery cuts it off at the next start; here it is skipped.
pub fn stored_events_after_crash(data_dir: &Path) -> Vec<Value> {
    read_lines(data_dir, "events", true)
}

fn table_lines(data_dir: &Path, table: &str) -> Vec<Value> {
    read_lines(data_dir, table, false)
}

fn read_lines(data_dir: &Path, table: &str, torn_tail: bool) -> Vec<Value> {
    table_files(data_dir, table)
        .iter()
        .flat_map(|file| {
            let mut text = std::fs::read_to_string(file).unwrap();
            let open = file
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with(".open"));
            if torn_tail && open {
                text.truncate(text.rfind('\n').map_or(0, |end| end + 1));
            }
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{} ends mid-line",
                file.display()
            );
            text.lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// Event segment files (completed and open), sorted by path.
pub fn segment_files(data_dir: &Path) -> Vec<PathBuf> {
    table_files(data_dir, "events")
}

fn table_files(data_dir: &Path, table: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![data_dir.join(table)];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `len` bytes that are not text, the same on every call.
pub fn binary_bytes(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// The raw lines of the file sink, each without its `\n`.
pub fn file_lines(server: &TestServer) -> Vec<Vec<u8>> {
    segment_files(server.dir.path())
        .iter()
        .flat_map(|file| {
            let bytes = std::fs::read(file).unwrap();
            bytes
                .split(|byte| *byte == b'\n')
                .filter(|line| !line.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A port on loopback that was free a moment ago, for a child process to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path_and_query` on `address` over plain HTTP/1.0 (so no chunked reply and
/// no keep-alive), for the APIs of Prometheus, VictoriaMetrics and the like:
/// status and body, or `None` when nothing answers within a few seconds.
pub fn http_get(address: std::net::SocketAddr, path_and_query: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    use std::time::Duration;
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    let body = reply.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The router of a server with the file sink at 0 and one more sink at 1: metric
/// events go to both (so a test can read what was decoded beside what the other
/// sink made of it), everything else to the file.
pub fn metrics_also_to_sink_1() -> Router {
    use hydrant::routing::{Match, Route};
    Router {
        routes: vec![Route {
            name: "metrics".into(),
            matcher: Match {
                kinds: vec!["metric".into()],
                ..Match::default()
            },
            sinks: SinkSet::of(&[0, 1]),
            continue_matching: false,
        }],
        default_sinks: SinkSet::of(&[0]),
    }
}

/// Whether `program` (answering `version_flag`) is installed, for a test that
/// needs a real service. Under CI (`CI` set, as `.ci/test` sets it) a missing
/// program fails the test, since CI must run it; elsewhere the test says so on
/// standard error and its caller skips it, rather than pass in silence.
#[expect(
    clippy::print_stderr,
    reason = "a test without its program says so in its output"
)]
pub fn installed(program: &str, version_flag: &str) -> bool {
    if std::process::Command::new(program)
        .arg(version_flag)
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "`{program}` is not installed, and CI must run this test: .ci/test installs it"
    );
    eprintln!("`{program}` is not installed; test skipped (with CI set, this fails)");
    false
}
