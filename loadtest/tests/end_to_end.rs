//! End to end: short bounded runs against a tiny in-process endpoint that answers like
//! Firehose expects (and fails some first attempts on purpose), checking the report's
//! counts against what the endpoint saw.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use clap::Parser as _;
use http_body_util::{BodyExt as _, Full};
use hydrant_loadtest::{Args, Report, execute, prepare};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// How the endpoint misbehaves on the first attempt of every `every`-th request.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Never.
    None,
    /// Answers 503 (with a proper JSON error body).
    Unavailable { every: u64 },
    /// Answers 200 with another request's id.
    WrongRequestId { every: u64 },
}

/// What the endpoint saw.
#[derive(Debug, Default)]
struct Seen {
    /// Attempts per request id.
    attempts: Mutex<HashMap<String, u32>>,
    /// Ids whose first attempt was failed on purpose.
    faulted: Mutex<HashSet<String>>,
    /// Distinct requests, in arrival order of their first attempt.
    arrivals: AtomicU64,
    /// Records over all attempts.
    records: AtomicU64,
    /// Newline-terminated lines in the records of the attempts answered with a valid 200
    /// (for Metric Streams JSON: the data points delivered).
    lines_delivered: AtomicU64,
    /// Bodies that came gzip'd.
    gzip_bodies: AtomicU64,
    /// Anything that does not look like a Firehose delivery.
    problems: Mutex<Vec<String>>,
}

impl Seen {
    fn problem(&self, text: String) {
        self.problems.lock().expect("lock").push(text);
    }

    fn total_attempts(&self) -> u32 {
        self.attempts.lock().expect("lock").values().sum()
    }
}

async fn start_endpoint(fault: Fault) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let seen = Arc::new(Seen::default());
    let shared = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = service_fn(move |request| handle(request, Arc::clone(&seen), fault));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, seen)
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

async fn handle(
    request: Request<Incoming>,
    seen: Arc<Seen>,
    fault: Fault,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let id = header("x-amz-firehose-request-id");
    for (name, expected) in [
        ("content-type", "application/json"),
        ("x-amz-firehose-protocol-version", "1.0"),
        ("x-amz-firehose-access-key", "demo=secret"),
        (
            "x-amz-firehose-common-attributes",
            r#"{"commonAttributes":{"env":"test"}}"#,
        ),
    ] {
        if header(name) != expected {
            seen.problem(format!("{name}: {:?}", header(name)));
        }
    }
    if !header("x-amz-firehose-source-arn").starts_with("arn:aws:firehose:") {
        seen.problem("no source ARN".into());
    }
    if request.method() != hyper::Method::POST || request.uri() != "/firehose?stream=demo" {
        seen.problem(format!("{} {}", request.method(), request.uri()));
    }
    let gzip = header("content-encoding") == "gzip";
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            seen.problem(format!("reading the body: {error}"));
            return Ok(json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({}),
            ));
        }
    };
    let body = if gzip {
        seen.gzip_bodies.fetch_add(1, Ordering::Relaxed);
        let mut plain = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .is_err()
        {
            seen.problem("bad gzip".into());
        }
        Bytes::from(plain)
    } else {
        body
    };
    let delivery: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if delivery["requestId"] != id.as_str() {
        seen.problem(format!(
            "body requestId {} vs header {id}",
            delivery["requestId"]
        ));
    }
    if !delivery["timestamp"].is_u64() {
        seen.problem("no timestamp".into());
    }
    let records = delivery["records"].as_array().cloned().unwrap_or_default();
    if records.is_empty()
        || records.iter().any(|record| {
            STANDARD
                .decode(record["data"].as_str().unwrap_or("-"))
                .is_err()
        })
    {
        seen.problem("records missing or not base64".into());
    }
    seen.records
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    let lines: u64 = records
        .iter()
        .filter_map(|record| STANDARD.decode(record["data"].as_str()?).ok())
        .map(|data| data.iter().filter(|&&byte| byte == b'\n').count() as u64)
        .sum();

    let attempt = {
        let mut attempts = seen.attempts.lock().expect("lock");
        let count = attempts.entry(id.clone()).or_default();
        *count += 1;
        *count
    };
    let arrival = if attempt == 1 {
        seen.arrivals.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        0
    };
    let ok = serde_json::json!({"requestId": id, "timestamp": 1_763_719_200_456_u64});
    let faulty = |every: u64| attempt == 1 && arrival % every == 0;
    Ok(match fault {
        Fault::Unavailable { every } if faulty(every) => {
            seen.faulted.lock().expect("lock").insert(id.clone());
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"requestId": id, "timestamp": 1_763_719_200_456_u64, "errorMessage": "busy"}),
            )
        }
        Fault::WrongRequestId { every } if faulty(every) => {
            seen.faulted.lock().expect("lock").insert(id.clone());
            json_response(
                StatusCode::OK,
                &serde_json::json!({"requestId": "someone-else", "timestamp": 1_763_719_200_456_u64}),
            )
        }
        _ => {
            seen.lines_delivered.fetch_add(lines, Ordering::Relaxed);
            json_response(StatusCode::OK, &ok)
        }
    })
}

async fn run(address: SocketAddr, extra: &[&str]) -> Report {
    let url = format!("http://{address}/firehose?stream=demo");
    let mut argv = vec![
        "hydrant-loadtest",
        "--url",
        &url,
        "--access-key",
        "demo=secret",
        "--common-attributes",
        r#"{"env":"test"}"#,
    ];
    argv.extend_from_slice(extra);
    let args = Args::try_parse_from(argv).expect("arguments parse");
    let plan = prepare(&args).expect("plan");
    tokio::time::timeout(Duration::from_secs(60), execute(plan))
        .await
        .expect("the run ends by itself")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_with_the_same_request_id() {
    let (address, seen) = start_endpoint(Fault::Unavailable { every: 3 }).await;
    let report = run(
        address,
        &[
            "--requests",
            "30",
            "--concurrency",
            "4",
            "--records",
            "20",
            "--events-per-record",
            "5",
            "--pool-size",
            "3",
            "--retry-initial",
            "10ms",
        ],
    )
    .await;

    let requests = &report.requests;
    assert_eq!(requests.sent, 30);
    assert_eq!(requests.ok, 30, "{report:#?}");
    assert_eq!((requests.failed, requests.abandoned), (0, 0));
    assert_eq!(requests.retries, 10);
    assert_eq!(requests.attempts, 40);
    assert_eq!(requests.records, 30 * 20);
    assert_eq!(requests.events, 30 * 20 * 5);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors["503"], 10);
    assert!(
        report.error_samples["503"].contains("busy"),
        "{:?}",
        report.error_samples
    );
    assert_eq!(report.latency_us.attempt.count, 40);
    assert_eq!(report.latency_us.end_to_end.count, 30);
    // Each retry waited ≥ 8.5 ms (10 ms − 15%): the slowest delivery shows it.
    assert!(report.latency_us.end_to_end.max >= 8_500);
    assert!(report.throughput.requests_per_s > 0.0);

    // The endpoint's view: 30 distinct ids; exactly the 10 faulted ones came twice, with
    // the same id in the header and the body both times.
    let problems = seen.problems.lock().expect("lock").clone();
    assert!(problems.is_empty(), "{problems:?}");
    let attempts = seen.attempts.lock().expect("lock").clone();
    let faulted = seen.faulted.lock().expect("lock").clone();
    assert_eq!(attempts.len(), 30);
    assert_eq!(faulted.len(), 10);
    for (id, count) in &attempts {
        assert_eq!(*count, if faulted.contains(id) { 2 } else { 1 }, "{id}");
    }
    assert_eq!(seen.records.load(Ordering::Relaxed), 40 * 20);
    assert_eq!(seen.gzip_bodies.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_answers_count_as_errors_and_gzip_bodies_inflate() {
    let (address, seen) = start_endpoint(Fault::WrongRequestId { every: 4 }).await;
    let report = run(
        address,
        &[
            "--kind",
            "metrics-otel",
            "--records",
            "5",
            "--events-per-record",
            "12",
            "--gzip",
            "--requests",
            "20",
            "--concurrency",
            "2",
            "--no-retry",
        ],
    )
    .await;

    let requests = &report.requests;
    assert_eq!(requests.ok, 15, "{report:#?}");
    assert_eq!(requests.failed, 5);
    assert_eq!((requests.retries, requests.attempts), (0, 20));
    assert_eq!(report.errors["invalid_response"], 5);
    assert!(report.error_samples["invalid_response"].contains("does not match"));
    assert!(report.setup.gzip && report.setup.wire_bytes < report.setup.body_bytes);
    assert_eq!(requests.events, 15 * 5 * 12);
    assert!(requests.wire_bytes < requests.body_bytes * 20 / 15);

    let problems = seen.problems.lock().expect("lock").clone();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(seen.gzip_bodies.load(Ordering::Relaxed), 20);
    assert_eq!(seen.total_attempts(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_points_of_delivered_requests_are_counted_exactly() {
    let (address, seen) = start_endpoint(Fault::WrongRequestId { every: 4 }).await;
    let report = run(
        address,
        &[
            "--kind",
            "metrics-json",
            "--series",
            "2000",
            // Bodies of different point counts: the last record of each is cut down.
            "--request-size",
            "150KiB",
            "--events-per-record",
            "33",
            "--pool-size",
            "3",
            "--requests",
            "20",
            "--concurrency",
            "2",
            "--no-retry",
        ],
    )
    .await;

    let requests = &report.requests;
    assert_eq!((requests.ok, requests.failed), (15, 5), "{report:#?}");
    let delivered = seen.lines_delivered.load(Ordering::Relaxed);
    assert!(delivered > 0);
    assert_eq!(requests.points, Some(delivered));
    assert_eq!(requests.events, delivered);
    let per_second = report.throughput.points_per_s.expect("points/s");
    assert!((per_second - delivered as f64 / report.elapsed_s).abs() < 1e-6 * per_second);
    assert_eq!(report.setup.series, Some(2000));
    let in_pool = report.setup.series_in_pool.expect("series in the pool");
    assert!((1..=2000).contains(&in_pool), "{in_pool}");

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
    assert_eq!(json["requests"]["points"], delivered);
    assert!(json["throughput"]["points_per_s"].as_f64().expect("number") > 0.0);
    let table = report.to_table();
    assert!(table.contains(" data points/s"), "{table}");
    assert!(table.contains("2000 asked"), "{table}");
    let problems = seen.problems.lock().expect("lock").clone();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_loop_keeps_to_its_rate_and_duration() {
    let (address, seen) = start_endpoint(Fault::None).await;
    let report = run(
        address,
        &[
            "--kind",
            "raw-json",
            "--records",
            "10",
            "--record-size",
            "300",
            "--rate",
            "40",
            "--duration",
            "1s",
            "--concurrency",
            "2",
        ],
    )
    .await;

    let requests = &report.requests;
    // Requests due at 0, 25, 50 … 975 ms: never more than 40.
    assert!(requests.sent <= 40, "{report:#?}");
    assert!(requests.ok >= 10, "{report:#?}");
    assert_eq!(requests.ok, requests.sent);
    assert!(report.errors.is_empty());
    assert!(report.elapsed_s < 10.0);
    assert_eq!(report.setup.mode, "open");
    assert_eq!(u64::from(seen.total_attempts()), requests.attempts);
    // Raw JSON records have no data points and no series.
    assert_eq!(
        (requests.points, report.throughput.points_per_s),
        (None, None)
    );
    assert_eq!(report.setup.series, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_connect_errors() {
    // A port that was just free: nothing listens there.
    let address = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("address")
    };
    let report = run(
        address,
        &[
            "--kind",
            "raw-json",
            "--records",
            "2",
            "--requests",
            "3",
            "--concurrency",
            "1",
            "--no-retry",
        ],
    )
    .await;
    assert_eq!(report.requests.ok, 0);
    assert_eq!(report.requests.failed, 3);
    assert_eq!(report.errors["connect"], 3, "{:?}", report.errors);
    assert_eq!(report.latency_us.attempt.count, 0);
}
