//! The `remote_write` sink: CloudWatch metric data points as Prometheus series,
//! sent with Prometheus remote write 1.0 to any receiver of it (Prometheus with
//! `--web.enable-remote-write-receiver`, Grafana Mimir, Thanos Receive,
//! VictoriaMetrics, Cortex), named as [`crate::series`] names them, with
//! CloudWatch's timestamps.
//!
//! **Delivery guarantee.** A commit turns the batch's `metric` events into samples,
//! groups them into series ([`wire::Series::group`]) and sends them in requests of
//! at most `max_samples_per_request` samples, one after another. A series is never
//! split over two requests, so its samples reach the receiver in time order (one
//! with more samples than that, which CloudWatch never sends in one delivery, goes
//! in a request of its own). It returns only
//! once the receiver has answered every request, so Firehose hears 200 only for
//! samples the receiver took. What each answer means
//! ([`Answer::classify`]):
//!
//! - **2xx**: taken.
//! - **429, 5xx, no answer** (connection refused or reset, timeout): the receiver
//!   may take them later. The commit fails with [`SinkError::Unavailable`]; the
//!   fan-out retries it, then opens the sink's circuit breaker, and Firehose hears
//!   503 and sends the delivery again. Requests the receiver took before are sent
//!   again then (see below).
//! - **401, 403, 404, 405, 407 and 3xx**: the receiver refuses Hydrant, not the
//!   samples (wrong credentials, a wrong URL; redirects are not followed). Dropping
//!   the samples would lose every delivery until someone noticed, so these fail
//!   the commit like a 5xx, and the health probe keeps the sink down until the
//!   receiver lets Hydrant in.
//! - **Any other 4xx** (400, 409, 413, 422…): the receiver refuses these samples
//!   and will refuse them again — out of order, a duplicate time with another
//!   value, too old, too many labels, over a tenant's limit. Sending them again
//!   would fail the delivery forever, so they are given up: counted in
//!   `hydrant_remote_write_samples_rejected_total`, logged in one line per commit,
//!   and the commit succeeds. Prometheus refuses a whole request for one such
//!   sample, so a refused request of several series is split in two and each half
//!   sent again, down to the series the receiver refuses
//!   ([`MAX_SPLIT_REQUESTS`] bounds the extra requests of one commit), and one late
//!   point does not cost the others of its request.
//!
//! **Retries of Firehose.** The fan-out's per-sink duplicate window skips a
//! delivery this sink committed already. One it committed in part, or one sent
//! again after a restart, is sent again, with the same samples. Prometheus takes
//! the latest sample of a series again silently and refuses older ones as out of
//! order (counted as rejected, as above, though it holds them); VictoriaMetrics
//! keeps one copy only with deduplication on (`-dedup.minScrapeInterval`), which
//! docs/metrics.md tells its users to set.
//!
//! **Secrets.** The bearer token, the basic auth password and the extra headers'
//! values are never logged and are redacted in the configuration's `Debug`.

pub mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::{SinkBatch, SinkError};
use crate::metrics::RemoteWriteRecorder;
use crate::series::{self, Filter, Naming, Patterns};
use crate::setting::HumanDuration;
pub use wire::Series;

/// Default bound on one request, connecting, sending and the answer together:
/// well inside the fan-out's delivery deadline, which must leave room for retries.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default samples per request: Prometheus's own `max_samples_per_send`, a size
/// every receiver takes (about 100 KB of protobuf for CloudWatch series, a
/// quarter of that after snappy).
pub const DEFAULT_MAX_SAMPLES_PER_REQUEST: usize = 2_000;
/// Largest `max_samples_per_request` taken: 100,000 samples make a request of
/// about 5 MB, over which receivers start refusing bodies (Mimir's and Amazon
/// Managed Service for Prometheus's request limits are of that order).
pub const MAX_SAMPLES_PER_REQUEST: usize = 100_000;
/// Extra requests one commit may make to find the series a receiver refuses in a
/// request it refused (see the module doc). 64 isolate one refused series in
/// requests of up to 2^32 series; when the receiver refuses most of a batch, the
/// rest of a refused request is counted as rejected without further splitting.
pub const MAX_SPLIT_REQUESTS: usize = 64;
/// The remote write protocol version sent in [`HEADER_VERSION`].
pub const PROTOCOL_VERSION: &str = "0.1.0";
/// Header naming the remote write protocol version (required by the spec).
pub const HEADER_VERSION: &str = "x-prometheus-remote-write-version";
/// Content type of a remote write 1.0 body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// Content encoding of a remote write 1.0 body.
pub const CONTENT_ENCODING: &str = "snappy";
/// Bound on a health probe (an empty write request): the prober runs every 2
/// seconds and must not pile up behind a receiver that does not answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest connection setup; a receiver that takes longer is as good as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of a refusal's body kept for the log line: receivers explain the
/// refusal there ("out of order sample", "too many labels"…).
const MAX_REASON_BYTES: usize = 512;
/// `User-Agent` of every request.
const USER_AGENT: &str = concat!("hydrant/", env!("CARGO_PKG_VERSION"));
/// Headers Hydrant sets itself, which `headers` may not name.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-encoding",
    "content-length",
    "host",
    "transfer-encoding",
    "user-agent",
    HEADER_VERSION,
];
const REDACTED: &str = "<redacted>";

/// A `[[sinks]]` entry with `type = "remote_write"`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's remote write URL, e.g. `http://127.0.0.1:9090/api/v1/write`.
    pub url: String,
    /// Extra headers on every request, e.g. `X-Scope-OrgID` for a Mimir tenant.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// A bearer token, sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Bound on one request.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Samples one request carries at most.
    #[serde(default = "default_max_samples")]
    pub max_samples_per_request: usize,
    /// How series are named.
    #[serde(default)]
    pub naming: Naming,
    /// Namespace globs a point's namespace must match one of (empty: every one).
    #[serde(default)]
    pub include_namespaces: Vec<String>,
    /// Namespace globs whose points are left out.
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// CloudWatch metric name globs a point's metric must match one of (empty:
    /// every one).
    #[serde(default)]
    pub include_metrics: Vec<String>,
    /// CloudWatch metric name globs whose points are left out.
    #[serde(default)]
    pub exclude_metrics: Vec<String>,
}

/// `basic_auth = { username = "…", password = "…" }`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_TIMEOUT)
}

fn default_max_samples() -> usize {
    DEFAULT_MAX_SAMPLES_PER_REQUEST
}

impl fmt::Debug for RemoteWriteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may be credentials of their own (an API key header).
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|name| (name.as_str(), REDACTED))
            .collect();
        f.debug_struct("RemoteWriteConfig")
            .field("url", &self.url)
            .field("headers", &headers)
            .field("basic_auth", &self.basic_auth)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| REDACTED),
            )
            .field("timeout", &self.timeout)
            .field("max_samples_per_request", &self.max_samples_per_request)
            .field("naming", &self.naming)
            .field("include_namespaces", &self.include_namespaces)
            .field("exclude_namespaces", &self.exclude_namespaces)
            .field("include_metrics", &self.include_metrics)
            .field("exclude_metrics", &self.exclude_metrics)
            .finish()
    }
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &REDACTED)
            .finish()
    }
}

impl super::SinkSettings for RemoteWriteConfig {
    fn check(&self) -> Result<(), String> {
        self.url()?;
        self.headers()?;
        if self.timeout.0.is_zero() {
            return Err("timeout must be greater than 0".into());
        }
        if !(1..=MAX_SAMPLES_PER_REQUEST).contains(&self.max_samples_per_request) {
            return Err(format!(
                "max_samples_per_request must be from 1 to {MAX_SAMPLES_PER_REQUEST}"
            ));
        }
        self.patterns().check()
    }
}

impl RemoteWriteConfig {
    /// A configuration sending to `url`, everything else at its default.
    #[must_use]
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            headers: BTreeMap::new(),
            basic_auth: None,
            bearer_token: None,
            timeout: default_timeout(),
            max_samples_per_request: DEFAULT_MAX_SAMPLES_PER_REQUEST,
            naming: Naming::default(),
            include_namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            include_metrics: Vec::new(),
            exclude_metrics: Vec::new(),
        }
    }

    fn patterns(&self) -> Patterns<'_> {
        Patterns {
            include_namespaces: &self.include_namespaces,
            exclude_namespaces: &self.exclude_namespaces,
            include_metrics: &self.include_metrics,
            exclude_metrics: &self.exclude_metrics,
        }
    }

    fn url(&self) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(&self.url).map_err(|error| format!("url: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "url: scheme {:?} is not http or https",
                url.scheme()
            ));
        }
        if url.host().is_none() {
            return Err("url: no host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            // Kept out of the URL so that it can be logged.
            return Err("url: put credentials in basic_auth, not in the URL".into());
        }
        Ok(url)
    }

    /// Every header a request carries but for the body's own: the protocol
    /// version, authentication and the configured ones, secrets marked sensitive
    /// (kept out of the HTTP client's debug output).
    fn headers(&self) -> Result<HeaderMap, String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static(HEADER_VERSION),
            HeaderValue::from_static(PROTOCOL_VERSION),
        );
        let authorization = match (&self.basic_auth, &self.bearer_token) {
            (Some(_), Some(_)) => {
                return Err("give basic_auth or bearer_token, not both".into());
            }
            (Some(auth), None) => {
                if auth.username.is_empty() {
                    return Err("basic_auth: username is empty".into());
                }
                use base64::Engine as _;
                let pair = format!("{}:{}", auth.username, auth.password);
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Some(format!("Basic {encoded}"))
            }
            (None, Some(token)) => {
                if token.is_empty() {
                    return Err("bearer_token is empty".into());
                }
                Some(format!("Bearer {token}"))
            }
            (None, None) => None,
        };
        if let Some(value) = authorization {
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| "basic_auth or bearer_token: not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        for (name, value) in &self.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not a header name"))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(format!("headers: {name} is set by Hydrant"));
            }
            if header == header::AUTHORIZATION && headers.contains_key(header::AUTHORIZATION) {
                return Err(format!(
                    "headers: {name} is set by basic_auth or bearer_token"
                ));
            }
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| format!("headers: the value of {name} is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        Ok(headers)
    }
}

/// What a receiver's answer to one request means for its samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Taken (2xx).
    Taken,
    /// Refused for good: they will be refused again (a 4xx but those below).
    Rejected {
        /// The status.
        status: u16,
        /// The start of the receiver's explanation.
        reason: String,
    },
    /// Not taken now; sending them again may work (429, 5xx, no answer), or the
    /// receiver refuses Hydrant itself (a wrong URL or credentials, a redirect).
    Failed(String),
}

impl Answer {
    /// The meaning of an answer with `status` and `reason` (the start of its
    /// body). See the module doc for why each class is what it is.
    #[must_use]
    pub fn classify(status: u16, reason: String) -> Self {
        match status {
            200..=299 => Self::Taken,
            401 | 403 | 404 | 405 | 407 => Self::Failed(format!(
                "receiver refused Hydrant ({status}): check url and credentials: {reason}"
            )),
            429 => Self::Failed(format!("receiver is throttling (429): {reason}")),
            400..=499 => Self::Rejected { status, reason },
            300..=399 => Self::Failed(format!(
                "receiver answered a redirect ({status}), which is not followed: set url to the final address"
            )),
            _ => Self::Failed(format!("receiver failed ({status}): {reason}")),
        }
    }
}

/// A `remote_write` sink.
#[derive(Debug, Clone)]
pub struct RemoteWriteSink {
    name: String,
    client: reqwest::Client,
    url: reqwest::Url,
    naming: Naming,
    filter: Arc<Filter>,
    max_samples: usize,
    recorder: RemoteWriteRecorder,
}

/// What sending a commit's requests came to.
#[derive(Debug, Default)]
struct Tally {
    rejected: usize,
    /// The first refusal, for the log line.
    first_refusal: Option<(u16, String)>,
    /// Extra requests made to narrow refusals down.
    splits: usize,
}

impl RemoteWriteSink {
    /// A sink with `config`'s settings (checked when the configuration was read),
    /// named `name` in logs, counting with `recorder`. Nothing is sent yet: a
    /// receiver that is down holds deliveries off through the circuit breaker.
    ///
    /// # Errors
    ///
    /// [`SinkError::Config`] when the settings or the HTTP client are refused.
    pub fn open(
        name: &str,
        config: &RemoteWriteConfig,
        recorder: RemoteWriteRecorder,
    ) -> Result<Self, SinkError> {
        crate::tls::install_crypto_provider();
        let url = config.url().map_err(SinkError::Config)?;
        let headers = config.headers().map_err(SinkError::Config)?;
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(USER_AGENT)
            .timeout(config.timeout.0)
            .connect_timeout(config.timeout.0.min(CONNECT_TIMEOUT))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| SinkError::Config(format!("HTTP client: {error}")))?;
        Ok(Self {
            name: name.to_owned(),
            client,
            url,
            naming: config.naming,
            filter: Arc::new(Filter::new(config.patterns())),
            max_samples: config.max_samples_per_request,
            recorder,
        })
    }

    /// Sends the batch's metric points; returns once the receiver has answered for
    /// all of them.
    ///
    /// # Errors
    ///
    /// [`SinkError::Unavailable`] when a request got no answer, a 429 or 5xx, or
    /// an answer that refuses Hydrant itself; samples of requests answered before
    /// are taken, and are sent again with the rest when the fan-out or Firehose
    /// retries.
    pub async fn commit(&self, batch: &SinkBatch) -> Result<(), SinkError> {
        // Parsing, naming, grouping: milliseconds of CPU for a large batch, off the
        // async workers, as decoding is.
        let (filter, naming, owned) = (Arc::clone(&self.filter), self.naming, batch.clone());
        let (all, unreadable) = tokio::task::spawn_blocking(move || {
            let selected = series::select(&owned.events, &filter);
            let samples = selected
                .metrics
                .iter()
                .flat_map(|metric| series::samples(metric, naming));
            (Series::group(samples), selected.unreadable)
        })
        .await
        .map_err(|error| SinkError::Write(error.to_string()))?;
        if unreadable > 0 {
            tracing::warn!(
                sink = %self.name,
                lines = unreadable,
                "remote_write sink: metric events that do not read as metrics were skipped"
            );
        }
        let mut tally = Tally::default();
        for request in wire::requests(&all, self.max_samples) {
            self.send_narrowing(request, &mut tally).await?;
        }
        if tally.rejected > 0 {
            self.recorder.rejected(tally.rejected);
            let (status, reason) = tally.first_refusal.unwrap_or_default();
            tracing::warn!(
                sink = %self.name,
                samples = tally.rejected,
                status,
                reason = %reason,
                requests = tally.splits,
                "remote_write sink: the receiver refused samples for good; they are not sent again"
            );
        }
        Ok(())
    }

    /// Sends `series`; when the receiver refuses them for good and there is more
    /// than one series, sends each half again to find those it refuses (while the
    /// commit's split budget lasts).
    async fn send_narrowing(&self, series: &[Series], tally: &mut Tally) -> Result<(), SinkError> {
        // Depth first, without recursion: a stack of the parts still to send.
        let mut parts = vec![series];
        while let Some(part) = parts.pop() {
            match self.send(part).await? {
                Answer::Taken => self.recorder.sent(sample_count(part)),
                Answer::Rejected { status, reason } => {
                    if part.len() > 1 && tally.splits + 2 <= MAX_SPLIT_REQUESTS {
                        tally.splits += 2;
                        let (first, second) = part.split_at(part.len() / 2);
                        parts.push(second);
                        parts.push(first);
                    } else {
                        tally.rejected += sample_count(part);
                        tally.first_refusal.get_or_insert((status, reason));
                    }
                }
                Answer::Failed(reason) => return Err(SinkError::Unavailable(reason)),
            }
        }
        Ok(())
    }

    /// Sends one request of `series` and reads what the answer means.
    ///
    /// # Errors
    ///
    /// [`SinkError::Unavailable`] when there was no answer.
    async fn send(&self, series: &[Series]) -> Result<Answer, SinkError> {
        self.post(wire::body(series)).await
    }

    async fn post(&self, body: Vec<u8>) -> Result<Answer, SinkError> {
        let sent = self
            .client
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .header(header::CONTENT_ENCODING, CONTENT_ENCODING)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                self.recorder.request(None);
                return Err(SinkError::Unavailable(format!(
                    "receiver did not answer: {}",
                    describe(&error)
                )));
            }
        };
        let status = response.status().as_u16();
        self.recorder.request(Some(status));
        if response.status().is_success() {
            return Ok(Answer::Taken);
        }
        // The start of the explanation is enough; the rest is not read, and the
        // connection is closed rather than drained.
        let mut reason = Vec::new();
        while reason.len() < MAX_REASON_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => reason.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        reason.truncate(MAX_REASON_BYTES);
        let reason = String::from_utf8_lossy(&reason).trim().to_owned();
        Ok(Answer::classify(status, reason))
    }

    /// Checks that the receiver answers and lets Hydrant in, with an empty write
    /// request (which receivers take and store nothing of).
    ///
    /// # Errors
    ///
    /// [`SinkError::Unavailable`] when it does not answer within
    /// [`PROBE_TIMEOUT`], or answers as [`Answer::Failed`].
    pub async fn probe(&self) -> Result<(), SinkError> {
        let answer = tokio::time::timeout(PROBE_TIMEOUT, self.post(wire::compress(&[])))
            .await
            .map_err(|_| SinkError::Unavailable("receiver did not answer the probe".into()))??;
        match answer {
            Answer::Taken | Answer::Rejected { .. } => Ok(()),
            Answer::Failed(reason) => Err(SinkError::Unavailable(reason)),
        }
    }
}

fn sample_count(series: &[Series]) -> usize {
    series.iter().map(|one| one.samples.len()).sum()
}

/// A transport error without its URL (which is logged elsewhere) and with its
/// causes, which say what actually went wrong (refused, reset, timed out).
fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
