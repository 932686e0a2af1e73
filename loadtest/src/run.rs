//! The load itself: connections, the schedule, attempts, Firehose-like retries and the
//! check of every answer against the Firehose response contract.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::header::{
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT,
};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::PartsBody;
use crate::cli::Args;
use crate::payload::{Payload, Pool, PoolSpec, build_pool};
use crate::report::{Report, Setup, Stats};
use crate::rng::{RequestId, Rng};
use crate::series::DEFAULT_SERIES;

/// Firehose's request headers.
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("x-amz-firehose-protocol-version");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-amz-firehose-request-id");
const SOURCE_ARN: HeaderName = HeaderName::from_static("x-amz-firehose-source-arn");
const ACCESS_KEY: HeaderName = HeaderName::from_static("x-amz-firehose-access-key");
const COMMON_ATTRIBUTES: HeaderName = HeaderName::from_static("x-amz-firehose-common-attributes");
/// The User-Agent seen in captures of Firehose deliveries.
const FIREHOSE_USER_AGENT: &str = "Amazon Kinesis Data Firehose Agent/1.0";

/// Firehose rejects answers of 1 MiB or more; so does this checker.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Retry delays vary by ±15% around the exponential value, like Firehose's.
const JITTER: f64 = 0.15;
/// An open-loop request starting this late counts as a late send.
const LATE: Duration = Duration::from_millis(10);

/// Firehose-like retries: the n-th retry (from 0) waits `initial × 2^n`, capped at
/// `max`, ±15%.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Largest delay (before jitter).
    pub max: Duration,
    /// Retries allowed per request.
    pub max_retries: u32,
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0 for the first), `unit` a random number
    /// in `[0, 1)` choosing the jitter.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let base = self.initial.as_secs_f64() * 2_f64.powi(retry.min(62) as i32);
        let capped = base.min(self.max.as_secs_f64());
        Duration::from_secs_f64(capped * (1.0 + JITTER * (2.0 * unit - 1.0)))
    }
}

/// A run ready to start: the payload pool is built, the headers are checked.
#[derive(Debug)]
pub struct Plan {
    setup: Setup,
    pool: Pool,
    uri: Uri,
    headers: HeaderMap,
    concurrency: usize,
    rate: Option<f64>,
    duration: Option<Duration>,
    requests: Option<u64>,
    warmup: Duration,
    timeout: Duration,
    retry: RetryPolicy,
}

impl Plan {
    /// The settings the report will show (pool sizes included).
    pub fn setup(&self) -> &Setup {
        &self.setup
    }
}

/// Checks the options and builds the payload pool (CPU work, not timed).
pub fn prepare(args: &Args) -> Result<Plan, String> {
    let uri = parse_url(&args.url)?;
    let headers = static_headers(args)?;
    if args.retry_initial.is_zero() && !args.no_retry && args.max_retries > 0 {
        return Err("--retry-initial must be above 0".into());
    }
    let series = args.series()?;
    let base_time_ms = now_ms();
    let spec = PoolSpec {
        kind: args.kind,
        records: args.records(),
        events_per_record: args.events_per_record(),
        record_size: usize::try_from(args.record_size)
            .map_err(|_| "--record-size is too large".to_string())?
            .max(1),
        request_size: args.request_size,
        gzip: args.gzip,
        pool_size: args.pool_size as usize,
        seed: args.seed,
        series: series.unwrap_or(DEFAULT_SERIES),
        base_time_ms,
    };
    let pool = build_pool(&spec)?;
    let retry = RetryPolicy {
        initial: args.retry_initial,
        max: args.retry_max.max(args.retry_initial),
        max_retries: args.retries(),
    };
    let duration = args.duration_limit();
    let setup = Setup {
        url: args.url.clone(),
        kind: args.kind.name(),
        gzip: args.gzip,
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        concurrency: args.concurrency as usize,
        rate: args.rate,
        duration_s: duration.map(|duration| duration.as_secs_f64()),
        requests_limit: args.requests,
        warmup_s: args.warmup.as_secs_f64(),
        pool_size: pool.payloads.len(),
        records_per_request: pool.mean_records(),
        events_per_record: pool.events_per_record,
        body_bytes: pool.mean_body_len(),
        wire_bytes: pool.mean_wire_len(),
        max_retries: retry.max_retries,
        series,
        series_in_pool: pool.series,
    };
    Ok(Plan {
        setup,
        pool,
        uri,
        headers,
        concurrency: args.concurrency as usize,
        rate: args.rate,
        duration,
        requests: args.requests,
        warmup: args.warmup,
        timeout: args.timeout,
        retry,
    })
}

fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|error| format!("--url {url:?}: {error}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "--url {url:?}: https is not supported; hydrant-loadtest speaks plain HTTP. Point it \
                 at the receiver's own port, or run a TLS-originating proxy locally and point it there"
            ));
        }
        _ => return Err(format!("--url {url:?}: expected an http:// URL")),
    }
    if uri.authority().is_none() {
        return Err(format!("--url {url:?}: no host"));
    }
    Ok(uri)
}

/// The headers every request carries (the request id and length are added per request).
fn static_headers(args: &Args) -> Result<HeaderMap, String> {
    let value = |name: &str, text: &str| {
        HeaderValue::from_str(text).map_err(|_| format!("{name}: not a valid HTTP header value"))
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, HeaderValue::from_static(FIREHOSE_USER_AGENT));
    headers.insert(PROTOCOL_VERSION, HeaderValue::from_static("1.0"));
    headers.insert(SOURCE_ARN, value("--source-arn", &args.source_arn)?);
    if let Some(key) = &args.access_key {
        if key.len() > 4096 {
            return Err("--access-key: Firehose keys are at most 4096 bytes".into());
        }
        headers.insert(ACCESS_KEY, value("--access-key", key)?);
    }
    if let Some(attributes) = &args.common_attributes {
        let header = common_attributes_header(attributes)?;
        headers.insert(COMMON_ATTRIBUTES, value("--common-attributes", &header)?);
    }
    if args.gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(headers)
}

/// The `X-Amz-Firehose-Common-Attributes` value for `--common-attributes`: the JSON
/// object `{"commonAttributes": {...}}` of string values, whether or not the option
/// already had the wrapper.
pub fn common_attributes_header(text: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| format!("--common-attributes is not JSON: {error}"))?;
    let mut attributes = value
        .as_object()
        .ok_or("--common-attributes must be a JSON object")?;
    if attributes.len() == 1
        && let Some(inner) = attributes.get("commonAttributes")
    {
        attributes = inner
            .as_object()
            .ok_or("--common-attributes: commonAttributes must be an object")?;
    }
    if attributes.len() > 50 {
        return Err("--common-attributes: Firehose allows at most 50 attributes".into());
    }
    if let Some((key, _)) = attributes.iter().find(|(_, value)| !value.is_string()) {
        return Err(format!(
            "--common-attributes: the value of {key:?} must be a string"
        ));
    }
    Ok(serde_json::json!({ "commonAttributes": attributes }).to_string())
}

/// What the connections share.
#[derive(Debug)]
struct Shared {
    client: Client<HttpConnector, PartsBody>,
    uri: Uri,
    headers: HeaderMap,
    pool: Pool,
    timeout: Duration,
    retry: RetryPolicy,
}

/// Runs the plan: the warm-up (if any), then the measured phase.
pub async fn execute(plan: Plan) -> Report {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(plan.timeout));
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(plan.concurrency)
        .build(connector);
    let shared = Arc::new(Shared {
        client,
        uri: plan.uri,
        headers: plan.headers,
        pool: plan.pool,
        timeout: plan.timeout,
        retry: plan.retry,
    });
    if !plan.warmup.is_zero() {
        run_phase(
            &shared,
            plan.concurrency,
            plan.rate,
            None,
            Some(plan.warmup),
        )
        .await;
    }
    let (stats, elapsed) = run_phase(
        &shared,
        plan.concurrency,
        plan.rate,
        plan.requests,
        plan.duration,
    )
    .await;
    Report::new(plan.setup, &stats, elapsed)
}

/// Which request to send next, and (open loop) when.
#[derive(Debug)]
struct Schedule {
    next: AtomicU64,
    limit: Option<u64>,
    start: Instant,
    deadline: Option<Instant>,
    rate: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Ticket {
    index: u64,
    /// Open loop: when the request is due.
    due: Option<Instant>,
}

impl Schedule {
    /// The next request, unless the run is over. Whichever connection is free takes the
    /// earliest request not yet taken, so in the open loop a slow connection never holds
    /// up the schedule while another is idle.
    fn take(&self) -> Option<Ticket> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|limit| index >= limit) {
            return None;
        }
        let due = self
            .rate
            .map(|rate| self.start + Duration::from_secs_f64(index as f64 / rate));
        let begins = due.unwrap_or_else(Instant::now);
        if self.deadline.is_some_and(|deadline| begins >= deadline) {
            return None;
        }
        Some(Ticket { index, due })
    }

    /// Whether a retry after `delay` would start after the end of the run.
    fn too_late_for(&self, delay: Duration) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() + delay >= deadline)
    }
}

async fn run_phase(
    shared: &Arc<Shared>,
    concurrency: usize,
    rate: Option<f64>,
    requests: Option<u64>,
    duration: Option<Duration>,
) -> (Stats, Duration) {
    let start = Instant::now();
    let schedule = Arc::new(Schedule {
        next: AtomicU64::new(0),
        limit: requests,
        start,
        deadline: duration.map(|duration| start + duration),
        rate,
    });
    let connections: Vec<_> = (0..concurrency)
        .map(|index| {
            tokio::spawn(connection(
                Arc::clone(shared),
                Arc::clone(&schedule),
                index as u64 + 1,
            ))
        })
        .collect();
    let mut stats = Stats::default();
    for connection in connections {
        if let Ok(connection_stats) = connection.await {
            stats.merge(&connection_stats);
        }
    }
    (stats, start.elapsed())
}

/// One connection's loop: take a request, send it (retrying as Firehose would), repeat.
async fn connection(shared: Arc<Shared>, schedule: Arc<Schedule>, salt: u64) -> Stats {
    let mut stats = Stats::default();
    let mut rng = Rng::from_clock(salt);
    let pool = &shared.pool.payloads;
    while let Some(ticket) = schedule.take() {
        let started = match ticket.due {
            Some(due) => {
                tokio::time::sleep_until(due.into()).await;
                if due.elapsed() >= LATE {
                    stats.late_sends += 1;
                }
                due
            }
            None => Instant::now(),
        };
        let payload = &pool[(ticket.index % pool.len() as u64) as usize];
        // A fresh id per request; every retry of it reuses the id and the body.
        let id = rng.request_id();
        let timestamp = now_ms();
        let mut retry = 0;
        loop {
            stats.attempts += 1;
            stats.wire_bytes += payload.wire_len();
            let sent = Instant::now();
            let outcome = attempt(&shared, payload, &id, timestamp).await;
            let answered = match &outcome {
                Ok(()) => true,
                Err(failure) => failure.answered(),
            };
            if answered {
                Stats::record(&mut stats.attempt_latency, sent.elapsed());
            }
            match outcome {
                Ok(()) => {
                    Stats::record(&mut stats.end_to_end_latency, started.elapsed());
                    stats.ok += 1;
                    stats.records += payload.records as u64;
                    stats.events += payload.events;
                    stats.body_bytes += payload.body_len;
                    break;
                }
                Err(failure) => {
                    stats.error(failure.kind(), failure.message());
                    if retry >= shared.retry.max_retries {
                        stats.failed += 1;
                        break;
                    }
                    let delay = shared.retry.delay(retry, rng.unit());
                    if schedule.too_late_for(delay) {
                        stats.abandoned += 1;
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    retry += 1;
                    stats.retries += 1;
                }
            }
        }
    }
    stats
}

/// Why an attempt failed.
#[derive(Debug)]
enum Failure {
    /// Answered with a status other than 200.
    Status(StatusCode, String),
    /// Answered 200, but not as the Firehose contract requires.
    Invalid(String),
    /// The connection could not be opened.
    Connect(String),
    /// The connection failed while sending or receiving.
    Connection(String),
    /// No complete answer within `--timeout`.
    Timeout,
}

impl Failure {
    fn answered(&self) -> bool {
        matches!(self, Failure::Status(..) | Failure::Invalid(_))
    }

    fn kind(&self) -> String {
        match self {
            Failure::Status(status, _) => status.as_u16().to_string(),
            Failure::Invalid(_) => "invalid_response".into(),
            Failure::Connect(_) => "connect".into(),
            Failure::Connection(_) => "connection".into(),
            Failure::Timeout => "timeout".into(),
        }
    }

    fn message(self) -> String {
        match self {
            Failure::Status(status, body) => format!("{status}: {body}"),
            Failure::Invalid(message)
            | Failure::Connect(message)
            | Failure::Connection(message) => message,
            Failure::Timeout => "no complete answer within --timeout".into(),
        }
    }
}

/// One attempt: send the body with `id`, read the whole answer, check it.
async fn attempt(
    shared: &Shared,
    payload: &Payload,
    id: &RequestId,
    timestamp: u64,
) -> Result<(), Failure> {
    let body = payload.body(id, timestamp);
    let length = body.len();
    let mut request = Request::new(body);
    *request.method_mut() = Method::POST;
    *request.uri_mut() = shared.uri.clone();
    let headers = request.headers_mut();
    headers.clone_from(&shared.headers);
    headers.insert(
        REQUEST_ID,
        HeaderValue::from_str(id.as_str()).unwrap_or_else(|_| HeaderValue::from_static("invalid")),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    let exchange = async {
        let response = shared.client.request(request).await.map_err(|error| {
            let message = error_chain(&error);
            if error.is_connect() {
                Failure::Connect(message)
            } else {
                Failure::Connection(message)
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|error| {
                if error.downcast_ref::<LengthLimitError>().is_some() {
                    Failure::Invalid("answer body of 1 MiB or more".into())
                } else {
                    Failure::Connection(format!("reading the answer: {error}"))
                }
            })?
            .to_bytes();
        if parts.status != StatusCode::OK {
            return Err(Failure::Status(parts.status, snippet(&body)));
        }
        validate_answer(&parts.headers, &body, id.as_str()).map_err(Failure::Invalid)
    };
    tokio::time::timeout(shared.timeout, exchange)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

/// Checks a 200 answer as Firehose does: `Content-Type: application/json`, no
/// `Content-Encoding`, a JSON body whose `requestId` is the request's id and whose
/// `timestamp` is a number.
pub fn validate_answer(headers: &HeaderMap, body: &[u8], id: &str) -> Result<(), String> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .ok_or("no Content-Type header")?
        .to_str()
        .map_err(|_| "unreadable Content-Type header")?;
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(format!(
            "Content-Type is {content_type:?}, not application/json"
        ));
    }
    if let Some(encoding) = headers.get(CONTENT_ENCODING)
        && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(format!(
            "the answer has Content-Encoding {encoding:?}; Firehose wants none"
        ));
    }
    let answer: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| format!("the body is not JSON ({error}): {}", snippet(body)))?;
    match answer.get("requestId") {
        Some(serde_json::Value::String(answered)) if answered == id => {}
        Some(serde_json::Value::String(answered)) => {
            return Err(format!(
                "requestId {answered:?} does not match the request's {id:?}"
            ));
        }
        Some(other) => return Err(format!("requestId is not a string: {other}")),
        None => return Err(format!("no requestId in {}", snippet(body))),
    }
    match answer.get("timestamp") {
        Some(serde_json::Value::Number(_)) => Ok(()),
        Some(other) => Err(format!("timestamp is not a number: {other}")),
        None => Err(format!("no timestamp in {}", snippet(body))),
    }
}

/// The start of a body, for error messages.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let text = text.trim();
    if body.len() > MAX {
        format!("{text}…")
    } else {
        text.to_string()
    }
}

/// An error and its sources, `a: b: c`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(content_type) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        headers
    }

    #[test]
    fn answers_are_checked_like_firehose_does() {
        let id = "6a7e8feb-b491-4cf7-a9f1-bf3703467718";
        let good =
            br#"{"requestId":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","timestamp":1763719200456}"#;
        assert_eq!(
            validate_answer(&headers(Some("application/json")), good, id),
            Ok(())
        );
        assert_eq!(
            validate_answer(&headers(Some("application/json; charset=utf-8")), good, id),
            Ok(())
        );
        assert!(validate_answer(&headers(None), good, id).is_err());
        assert!(validate_answer(&headers(Some("text/plain")), good, id).is_err());
        let mut gzipped = headers(Some("application/json"));
        gzipped.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(validate_answer(&gzipped, good, id).is_err());
        let json = headers(Some("application/json"));
        for bad in [
            &br#"{"requestId":"other","timestamp":1}"#[..],
            br#"{"requestId":null,"timestamp":1}"#,
            br#"{"timestamp":1}"#,
            br#"{"requestId":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","timestamp":"1"}"#,
            br#"{"requestId":"6a7e8feb-b491-4cf7-a9f1-bf3703467718"}"#,
            b"OK",
            b"",
        ] {
            assert!(
                validate_answer(&json, bad, id).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn retry_delays_double_with_jitter_and_a_cap() {
        let policy = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(120),
            max_retries: 20,
        };
        assert_eq!(policy.delay(0, 0.5), Duration::from_secs(1));
        assert_eq!(policy.delay(3, 0.5), Duration::from_secs(8));
        assert_eq!(policy.delay(10, 0.5), Duration::from_secs(120));
        assert_eq!(policy.delay(1, 0.0), Duration::from_secs_f64(1.7));
        assert!(policy.delay(1, 0.999_999) < Duration::from_secs_f64(2.3));
        assert!(policy.delay(1, 0.999_999) > Duration::from_secs_f64(2.29));
        assert_eq!(policy.delay(u32::MAX, 0.5), Duration::from_secs(120));
    }

    #[test]
    fn common_attributes_are_wrapped_once() {
        let expected = r#"{"commonAttributes":{"env":"prod","team":"obs"}}"#;
        assert_eq!(
            common_attributes_header(r#"{"env":"prod","team":"obs"}"#).as_deref(),
            Ok(expected)
        );
        assert_eq!(
            common_attributes_header(r#"{"commonAttributes":{"env":"prod","team":"obs"}}"#)
                .as_deref(),
            Ok(expected)
        );
        assert!(common_attributes_header(r#"{"env":1}"#).is_err());
        assert!(common_attributes_header("[]").is_err());
        assert!(common_attributes_header("nope").is_err());
    }

    #[test]
    fn urls_must_be_plain_http() {
        assert!(parse_url("http://127.0.0.1:8080/firehose?x=1").is_ok());
        assert!(parse_url("https://example.com/").is_err());
        assert!(parse_url("/firehose").is_err());
        assert!(parse_url("ftp://host/").is_err());
    }

    #[test]
    fn the_schedule_stops_at_its_limits() {
        let start = Instant::now();
        let bounded = Schedule {
            next: AtomicU64::new(0),
            limit: Some(3),
            start,
            deadline: None,
            rate: None,
        };
        assert_eq!(std::iter::from_fn(|| bounded.take()).count(), 3);
        // Open loop at 10/s for 1 s: requests 0..=9 are due before the deadline.
        let timed = Schedule {
            next: AtomicU64::new(0),
            limit: None,
            start,
            deadline: Some(start + Duration::from_secs(1)),
            rate: Some(10.0),
        };
        let tickets: Vec<Ticket> = std::iter::from_fn(|| timed.take()).collect();
        assert_eq!(tickets.len(), 10);
        assert_eq!(tickets[4].due, Some(start + Duration::from_millis(400)));
    }
}
