//! Hydrant's own Prometheus metrics, served on the admin listener at `GET /metrics`.
//!
//! Every metric name and label key is a constant here, written once; the README's
//! metrics table lists the same names. Label values are bounded: access-key names come
//! from the configuration, outcomes from a fixed list, and delivery stream names (which
//! come from requests) are capped by [`StreamLabels`], past which they are counted
//! under [`LABEL_VALUE_OTHER`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Deliveries answered, by outcome, delivery stream and access-key name.
pub const REQUESTS_TOTAL: &str = "hydrant_requests_total";
/// Time from receiving a delivery to answering it, by outcome and delivery stream.
pub const ACK_LATENCY_SECONDS: &str = "hydrant_ack_latency_seconds";
/// Request body bytes received (as sent, before inflation).
pub const RECEIVED_BYTES_TOTAL: &str = "hydrant_received_bytes_total";
/// Records received in well-formed deliveries.
pub const RECEIVED_RECORDS_TOTAL: &str = "hydrant_received_records_total";
/// Events durably written to storage.
pub const EVENTS_WRITTEN_TOTAL: &str = "hydrant_events_written_total";
/// Retried deliveries answered from the duplicate window without writing again.
pub const DUPLICATE_DELIVERIES_TOTAL: &str = "hydrant_duplicate_deliveries_total";
/// Bytes held by requests in flight (admission control).
pub const IN_FLIGHT_BYTES: &str = "hydrant_in_flight_bytes";
/// The in-flight byte limit, for alerting on the ratio.
pub const IN_FLIGHT_LIMIT_BYTES: &str = "hydrant_in_flight_limit_bytes";
/// Time of one storage group commit (write + fsync of data and journal).
pub const STORAGE_WRITE_SECONDS: &str = "hydrant_storage_write_seconds";
/// Deliveries that shared one group commit.
pub const STORAGE_COMMIT_DELIVERIES: &str = "hydrant_storage_commit_deliveries";
/// Storage operations that failed (write, fsync, rotation).
pub const STORAGE_ERRORS_TOTAL: &str = "hydrant_storage_errors_total";
/// Segments completed (renamed from open to final).
pub const SEGMENTS_SEALED_TOTAL: &str = "hydrant_segments_sealed_total";
/// Unacknowledged bytes cut from open segments while recovering after a crash.
pub const RECOVERY_TRUNCATED_BYTES_TOTAL: &str = "hydrant_recovery_truncated_bytes_total";
/// Records decoded, by the format they turned out to be.
pub const RECORDS_DECODED_TOTAL: &str = "hydrant_records_decoded_total";
/// Records that could not be decoded and went to the dead-letter table.
pub const DEAD_LETTER_RECORDS_TOTAL: &str = "hydrant_dead_letter_records_total";
/// CloudWatch Logs control messages received (accepted, not stored).
pub const CONTROL_MESSAGES_TOTAL: &str = "hydrant_control_messages_total";
/// Events no route matched, dropped (there is no default route).
pub const EVENTS_UNROUTED_TOTAL: &str = "hydrant_events_unrouted_total";
/// Time of one successful commit to a sink.
pub const SINK_WRITE_SECONDS: &str = "hydrant_sink_write_seconds";
/// Events committed to a sink.
pub const SINK_EVENTS_TOTAL: &str = "hydrant_sink_events_total";
/// Bytes of event lines committed to a sink.
pub const SINK_BYTES_TOTAL: &str = "hydrant_sink_bytes_total";
/// Failed commit attempts to a sink.
pub const SINK_ERRORS_TOTAL: &str = "hydrant_sink_errors_total";
/// Commit attempts to a sink that were retries.
pub const SINK_RETRIES_TOTAL: &str = "hydrant_sink_retries_total";
/// Deliveries a sink had already committed (not written again).
pub const SINK_DUPLICATES_TOTAL: &str = "hydrant_sink_duplicates_total";
/// 1 while a sink's circuit breaker lets deliveries through, 0 while it is down.
pub const SINK_UP: &str = "hydrant_sink_up";
/// Events and keys a sink changed to fit its service (split into parts, a name or
/// key replaced by its digest), by action.
pub const SINK_RESHAPED_TOTAL: &str = "hydrant_sink_reshaped_total";
/// Series a `prometheus` sink holds now, for its scrape endpoint.
pub const PROMETHEUS_SERIES: &str = "hydrant_prometheus_series";
/// New series a `prometheus` sink did not take because it held `max_series`
/// already.
pub const PROMETHEUS_SERIES_DROPPED_TOTAL: &str = "hydrant_prometheus_series_dropped_total";
/// Samples a `remote_write` sink's receiver took (answered 2xx).
pub const REMOTE_WRITE_SAMPLES_SENT_TOTAL: &str = "hydrant_remote_write_samples_sent_total";
/// Samples a `remote_write` sink's receiver refused for good (a 4xx other than 429
/// and those that mean a wrong URL or credentials, e.g. out of order): not retried.
pub const REMOTE_WRITE_SAMPLES_REJECTED_TOTAL: &str = "hydrant_remote_write_samples_rejected_total";
/// Requests a `remote_write` sink sent, by the class of the receiver's answer
/// ([`REMOTE_WRITE_STATUSES`]).
pub const REMOTE_WRITE_REQUESTS_TOTAL: &str = "hydrant_remote_write_requests_total";
/// The `status` label values of [`REMOTE_WRITE_REQUESTS_TOTAL`]: the answer's class,
/// 429 apart (it asks for a retry, other 4xx do not), and `error` for no answer
/// (connection refused or reset, timeout).
pub const REMOTE_WRITE_STATUSES: [&str; 5] = ["2xx", "4xx", "429", "5xx", "error"];
/// TLS handshakes on the ingest listener, by outcome (`ok`, `failed`, `timed_out`,
/// `acme_challenge`).
pub const TLS_HANDSHAKES_TOTAL: &str = "hydrant_tls_handshakes_total";
/// When the ingest listener's certificate expires, in seconds since the epoch
/// (only while it serves HTTPS): alert on `… - time() < 14 * 86400`.
pub const TLS_CERTIFICATE_NOT_AFTER_SECONDS: &str = "hydrant_tls_certificate_not_after_seconds";
/// ACME orders of the ingest listener's certificate, by outcome (`ok`, or
/// `failed` when it will be tried again later).
pub const ACME_ORDERS_TOTAL: &str = "hydrant_acme_orders_total";
/// The `outcome` label values of [`ACME_ORDERS_TOTAL`].
pub const ACME_ORDER_OUTCOMES: [&str; 2] = ["ok", "failed"];
/// Reloads of what is read from files (SIGHUP or a changed file), by target and
/// outcome.
pub const RELOADS_TOTAL: &str = "hydrant_reloads_total";
/// Access keys in use now (0 with `--no-auth`).
pub const ACCESS_KEYS: &str = "hydrant_access_keys";
/// Always 1; labels carry the version, the git revision and the Cargo features.
pub const BUILD_INFO: &str = "hydrant_build_info";
/// Log lines that could not be written (standard error closed, or too slow to take
/// them) and were dropped.
pub use crate::logging::LOG_LINES_DROPPED_TOTAL;

/// Outcome label of a delivery stored now.
pub const OUTCOME_OK: &str = "ok";
/// Outcome label of a retried delivery that was already stored.
pub const OUTCOME_DUPLICATE: &str = "duplicate";
/// Outcome label of a malformed request (400).
pub const OUTCOME_BAD_REQUEST: &str = "bad_request";
/// Outcome label of a missing or wrong access key (401).
pub const OUTCOME_UNAUTHORIZED: &str = "unauthorized";
/// Outcome label of a body over a size limit (413).
pub const OUTCOME_TOO_LARGE: &str = "too_large";
/// Outcome label of a body that arrived too slowly (408).
pub const OUTCOME_TOO_SLOW: &str = "too_slow";
/// Outcome label of a delivery refused at the in-flight limit (503).
pub const OUTCOME_OVERLOADED: &str = "overloaded";
/// Outcome label of a delivery refused during shutdown (503).
pub const OUTCOME_SHUTTING_DOWN: &str = "shutting_down";
/// Outcome label of a delivery a sink did not store (503).
pub const OUTCOME_STORAGE_ERROR: &str = "storage_error";
/// Every outcome label value, for metrics that start at zero.
pub const OUTCOMES: [&str; 9] = [
    OUTCOME_OK,
    OUTCOME_DUPLICATE,
    OUTCOME_BAD_REQUEST,
    OUTCOME_UNAUTHORIZED,
    OUTCOME_TOO_LARGE,
    OUTCOME_TOO_SLOW,
    OUTCOME_OVERLOADED,
    OUTCOME_SHUTTING_DOWN,
    OUTCOME_STORAGE_ERROR,
];

/// Reload target label of the access keys.
pub const RELOAD_TARGET_ACCESS_KEYS: &str = "access_keys";
/// Reload target label of the TLS certificate and its key.
pub const RELOAD_TARGET_TLS_CERTIFICATE: &str = "tls_certificate";
/// Every reload target, for series that start at zero.
pub const RELOAD_TARGETS: [&str; 2] = [RELOAD_TARGET_ACCESS_KEYS, RELOAD_TARGET_TLS_CERTIFICATE];
/// Outcome label of a reload that was refused; what was in use stays.
pub const RELOAD_FAILED: &str = "failed";
/// Every reload outcome: taken ([`OUTCOME_OK`]) or refused.
pub const RELOAD_OUTCOMES: [&str; 2] = [OUTCOME_OK, RELOAD_FAILED];

/// Connections open now, by listener.
pub const OPEN_CONNECTIONS: &str = "hydrant_open_connections";
/// The cap on open connections, by listener, for alerting on the ratio.
pub const MAX_CONNECTIONS: &str = "hydrant_max_connections";
/// Connections closed at once because the listener was at its cap.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "hydrant_connections_refused_total";
/// Connections closed by a timeout, by listener and reason.
pub const CONNECTIONS_TIMED_OUT_TOTAL: &str = "hydrant_connections_timed_out_total";

/// Label key: how a delivery ended (one of [`OUTCOMES`]).
pub const LABEL_OUTCOME: &str = "outcome";
/// Label key: delivery stream name from the source ARN.
pub const LABEL_STREAM: &str = "delivery_stream";
/// Label key: name of the access key that authenticated the request.
pub const LABEL_ACCESS_KEY: &str = "access_key";
/// Label key: what a reload read again (one of [`RELOAD_TARGETS`]).
pub const LABEL_TARGET: &str = "target";
/// Label key: the Hydrant version.
pub const LABEL_VERSION: &str = "version";
/// Label key: the git revision Hydrant was built from (`unknown` without git).
pub const LABEL_REVISION: &str = "revision";
/// Label key: the Cargo features Hydrant was built with, comma-separated.
pub const LABEL_FEATURES: &str = "features";
/// Label key: the class of a receiver's answer ([`REMOTE_WRITE_STATUSES`]).
pub const LABEL_STATUS: &str = "status";
/// Label key: a sink's configured name (bounded by the configuration).
pub const LABEL_SINK: &str = "sink";
/// Label key: a sink's type (`file`, `s3`, `nats`, `kafka`, `prometheus`, `remote_write`, `stdout`,
/// `discard`).
/// Not plain `type`, which reads as the metric's own type in queries and clashes
/// with other exporters' labels on joins.
pub const LABEL_SINK_TYPE: &str = "sink_type";
/// Label key: a payload format (a fixed set of names, see `hydrant::decode`).
pub const LABEL_FORMAT: &str = "format";
/// Label key: what the storage was doing when it failed.
pub const LABEL_OPERATION: &str = "operation";
/// Label key: which listener (`ingest`, `admin`).
pub const LABEL_LISTENER: &str = "listener";
/// Label key: which timeout closed a connection (a fixed set, see
/// `hydrant::server::listener::TimeoutReason`).
pub const LABEL_REASON: &str = "reason";
/// Label key: what a sink changed to fit its service (a fixed set of names, see
/// `hydrant::sink::template`).
pub const LABEL_ACTION: &str = "action";

/// Label value when a delivery has no stream name or no key name.
pub const LABEL_VALUE_NONE: &str = "(none)";
/// Label value for stream names past the cardinality cap. Parentheses cannot appear
/// in Firehose stream names, so this never collides with a real one.
pub const LABEL_VALUE_OTHER: &str = "(other)";

/// Default number of distinct delivery stream names given their own label value.
pub const DEFAULT_MAX_STREAM_LABELS: usize = 100;

/// Longest stream name given its own label value: a delivery stream name is at
/// most 64 characters, and every label value is held by every series it is in, so
/// a long one multiplies the size of every scrape.
pub const MAX_STREAM_LABEL_BYTES: usize = 64;

/// The names a decoded record is counted under in [`RECORDS_DECODED_TOTAL`]: every
/// name a decoder of `hydrant::decode` gives a record it decoded. Their series start
/// at zero, so that `absent()` and `rate()` see them before the first record.
pub const DECODED_FORMATS: [&str; 10] = [
    "cloudwatch_logs",
    "cloudwatch_logs_messages",
    "metric_stream_json",
    "metric_stream_otel",
    "eventbridge",
    "cloudtrail",
    "vpc_flow",
    "json",
    "text",
    "binary",
];

/// The names a bad record is counted under in [`DEAD_LETTER_RECORDS_TOTAL`]: the
/// format it was read as, or `gzip` and `base64` when it could not even be read.
pub const DEAD_LETTER_FORMATS: [&str; 10] = [
    "cloudwatch_logs",
    "cloudwatch_logs_messages",
    "metric_stream_json",
    "metric_stream_otel",
    "metric_stream_otel07",
    "metric_stream_otel10",
    "eventbridge",
    "vpc_flow",
    "gzip",
    "base64",
];

/// The git revision Hydrant was built from, set by `build.rs` (`unknown` when the
/// source was not a git checkout).
pub const GIT_REVISION: &str = env!("HYDRANT_GIT_REVISION");

/// The optional Cargo features this Hydrant was built with, comma-separated (empty
/// for a lean build), for [`BUILD_INFO`].
#[must_use]
pub fn build_features() -> String {
    let features = [
        ("kafka", cfg!(feature = "kafka")),
        ("nats", cfg!(feature = "nats")),
        ("remote_write", cfg!(feature = "remote_write")),
        ("s3", cfg!(feature = "s3")),
    ];
    features
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0,
];
const COMMIT_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// All of Hydrant's metrics, registered in their own registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    streams: StreamLabels,
    requests: IntCounterVec,
    ack_latency: HistogramVec,
    received_bytes: IntCounterVec,
    received_records: IntCounterVec,
    events_written: IntCounterVec,
    duplicates: IntCounterVec,
    records_decoded: IntCounterVec,
    dead_letters: IntCounterVec,
    control_messages: IntCounter,
    /// Events no route matched.
    events_unrouted: IntCounter,
    /// Per-sink commit time.
    sink_write_seconds: HistogramVec,
    /// Per-sink events.
    sink_events: IntCounterVec,
    /// Per-sink bytes.
    sink_bytes: IntCounterVec,
    /// Per-sink failed attempts.
    sink_errors: IntCounterVec,
    /// Per-sink retries.
    sink_retries: IntCounterVec,
    /// Per-sink duplicates skipped.
    sink_duplicates: IntCounterVec,
    /// Per-sink breaker state.
    sink_up: IntGaugeVec,
    /// Per-sink reshaped events and keys, by action.
    pub sink_reshaped: IntCounterVec,
    /// Series each `prometheus` sink holds.
    prometheus_series: IntGaugeVec,
    /// New series each `prometheus` sink dropped at its cap.
    prometheus_series_dropped: IntCounterVec,
    /// TLS handshakes, by outcome.
    tls_handshakes: IntCounterVec,
    /// The ingest listener's certificate's expiry, by listener (set only with TLS).
    tls_not_after: IntGaugeVec,
    /// ACME orders, by outcome.
    acme_orders: IntCounterVec,
    /// Samples each `remote_write` sink's receiver took.
    remote_write_sent: IntCounterVec,
    /// Samples each `remote_write` sink's receiver refused for good.
    remote_write_rejected: IntCounterVec,
    /// Requests each `remote_write` sink sent, by answer.
    remote_write_requests: IntCounterVec,
    /// Reloads, by target and outcome.
    reloads: IntCounterVec,
    /// Access keys in use.
    access_keys: IntGauge,
    /// Bytes held by requests in flight.
    in_flight_bytes: IntGauge,
    /// The configured in-flight limit.
    in_flight_limit_bytes: IntGauge,
    /// The storage's own metrics.
    pub storage: StorageMetrics,
    /// The listeners' connection metrics.
    pub connections: ConnectionMetrics,
}

/// Metrics of the listeners' connections.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    /// Connections open now, by listener.
    pub open: IntGaugeVec,
    /// The cap on open connections, by listener.
    pub limit: IntGaugeVec,
    /// Connections refused at the cap, by listener.
    pub refused: IntCounterVec,
    /// Connections closed by a timeout, by listener and reason.
    pub timed_out: IntCounterVec,
}

/// Metrics the file sink's writer updates.
#[derive(Debug, Clone)]
pub struct StorageMetrics {
    /// Duration of each group commit.
    pub write_seconds: Histogram,
    /// Deliveries per group commit.
    pub commit_deliveries: Histogram,
    /// Failures by operation.
    pub errors: IntCounterVec,
    /// Segments sealed.
    pub segments_sealed: IntCounter,
    /// Bytes cut during crash recovery.
    pub recovery_truncated_bytes: IntCounter,
}

/// The metrics of one sink, its labels (`sink`, `sink_type`) resolved once when
/// the fan-out takes the sink.
#[derive(Debug, Clone)]
pub struct SinkRecorder {
    write_seconds: Histogram,
    events: IntCounter,
    bytes: IntCounter,
    errors: IntCounter,
    retries: IntCounter,
    duplicates: IntCounter,
    up: IntGauge,
}

impl SinkRecorder {
    /// A commit took `seconds`; it wrote `events` events of `bytes` bytes (both 0
    /// when the sink found the delivery already stored).
    pub fn committed(&self, seconds: f64, events: u64, bytes: u64) {
        self.write_seconds.observe(seconds);
        self.events.inc_by(events);
        self.bytes.inc_by(bytes);
    }

    /// A commit failed.
    pub fn failed(&self) {
        self.errors.inc();
    }

    /// A failed commit is tried again.
    pub fn retried(&self) {
        self.retries.inc();
    }

    /// A delivery was answered as already committed.
    pub fn duplicate(&self) {
        self.duplicates.inc();
    }

    /// The sink is taken to be up (or down, by its breaker or probe).
    pub fn up(&self, up: bool) {
        self.up.set(i64::from(up));
    }
}

/// The metrics of one `prometheus` sink, its `sink` label resolved once.
#[derive(Debug, Clone)]
pub struct PrometheusRecorder {
    series: IntGauge,
    dropped: IntCounter,
}

impl PrometheusRecorder {
    /// The sink holds `count` series now.
    pub fn series(&self, count: usize) {
        self.series.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The sink dropped `count` new series at its cap.
    pub fn dropped(&self, count: u64) {
        self.dropped.inc_by(count);
    }
}

/// The outcomes of ACME orders.
#[derive(Debug, Clone)]
pub struct AcmeRecorder {
    ok: IntCounter,
    failed: IntCounter,
}

impl AcmeRecorder {
    /// An order ended with a certificate (`ok`) or failed.
    pub fn order(&self, ok: bool) {
        if ok {
            self.ok.inc();
        } else {
            self.failed.inc();
        }
    }
}

/// The metrics of the ingest listener's TLS.
#[derive(Debug, Clone)]
pub struct TlsRecorder {
    handshakes: IntCounterVec,
    not_after: IntGauge,
    reloads_ok: IntCounter,
    reloads_failed: IntCounter,
}

impl TlsRecorder {
    /// A handshake ended with `outcome` (its label value).
    pub fn handshake(&self, outcome: &str) {
        self.handshakes.with_label_values(&[outcome]).inc();
    }

    /// The certificate served now expires at `seconds` since the epoch.
    pub fn not_after(&self, seconds: i64) {
        self.not_after.set(seconds);
    }

    /// A reload of the certificate succeeded, or failed and kept the old one.
    pub fn reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.inc();
        } else {
            self.reloads_failed.inc();
        }
    }
}

/// The metrics of one `remote_write` sink, its `sink` label resolved once.
#[derive(Debug, Clone)]
pub struct RemoteWriteRecorder {
    sent: IntCounter,
    rejected: IntCounter,
    /// By [`REMOTE_WRITE_STATUSES`], in its order.
    requests: [IntCounter; 5],
}

impl RemoteWriteRecorder {
    /// The receiver took `count` samples.
    pub fn sent(&self, count: usize) {
        self.sent.inc_by(count as u64);
    }

    /// The receiver refused `count` samples for good.
    pub fn rejected(&self, count: usize) {
        self.rejected.inc_by(count as u64);
    }

    /// A request was answered with `status` (`None`: no answer).
    pub fn request(&self, status: Option<u16>) {
        let class = match status {
            Some(200..=299) => 0,
            Some(429) => 2,
            Some(400..=499) => 1,
            Some(500..=599) => 3,
            // 1xx and 3xx (redirects are not followed) count as errors: the
            // request did not get through.
            Some(_) | None => 4,
        };
        self.requests[class].inc();
    }
}

/// The metrics of one delivery, its label values resolved once: each stage
/// records what it learnt when it ends (body read, envelope parsed, answer given),
/// not through a tally carried across them.
#[derive(Debug, Clone)]
pub struct DeliveryRecorder {
    metrics: Arc<Metrics>,
    stream: String,
    access_key: String,
}

impl DeliveryRecorder {
    /// The body was read in full: `bytes` as received (before inflating).
    pub fn body_read(&self, bytes: u64) {
        self.metrics
            .received_bytes
            .with_label_values(&[&self.stream, &self.access_key])
            .inc_by(bytes);
    }

    /// The envelope was parsed and holds `records`.
    pub fn envelope_parsed(&self, records: u64) {
        if records > 0 {
            self.metrics
                .received_records
                .with_label_values(&[&self.stream, &self.access_key])
                .inc_by(records);
        }
    }

    /// The delivery was answered with `outcome` after `latency`, having written
    /// `events_written` events (0 for duplicates and failures).
    pub fn answered(&self, outcome: &'static str, latency: Duration, events_written: u64) {
        let (stream, key) = (self.stream.as_str(), self.access_key.as_str());
        let metrics = &self.metrics;
        metrics
            .requests
            .with_label_values(&[outcome, stream, key])
            .inc();
        metrics
            .ack_latency
            .with_label_values(&[outcome, stream])
            .observe(latency.as_secs_f64());
        if events_written > 0 {
            metrics
                .events_written
                .with_label_values(&[stream, key])
                .inc_by(events_written);
        }
        if outcome == OUTCOME_DUPLICATE {
            metrics.duplicates.with_label_values(&[stream, key]).inc();
        }
    }
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    ///
    /// Only if a metric definition here is invalid, which the unit tests rule out.
    #[must_use]
    pub fn new(max_stream_labels: usize) -> Self {
        let registry = Registry::new();
        let delivery_labels = &[LABEL_OUTCOME, LABEL_STREAM, LABEL_ACCESS_KEY];
        let stream_labels = &[LABEL_STREAM, LABEL_ACCESS_KEY];
        let requests = IntCounterVec::new(
            Opts::new(REQUESTS_TOTAL, "Deliveries answered, by outcome."),
            delivery_labels,
        )
        .expect("valid metric");
        let ack_latency = HistogramVec::new(
            HistogramOpts::new(
                ACK_LATENCY_SECONDS,
                "Time from receiving a delivery to answering it.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &[LABEL_OUTCOME, LABEL_STREAM],
        )
        .expect("valid metric");
        let counter = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), stream_labels).expect("valid metric")
        };
        let received_bytes = counter(
            RECEIVED_BYTES_TOTAL,
            "Request body bytes received, before inflation.",
        );
        let received_records = counter(
            RECEIVED_RECORDS_TOTAL,
            "Records received in well-formed deliveries.",
        );
        let events_written = counter(EVENTS_WRITTEN_TOTAL, "Events durably written to storage.");
        let duplicates = counter(
            DUPLICATE_DELIVERIES_TOTAL,
            "Retried deliveries answered from the duplicate window without writing again.",
        );
        let records_decoded = IntCounterVec::new(
            Opts::new(
                RECORDS_DECODED_TOTAL,
                "Records decoded, by the format they turned out to be.",
            ),
            &[LABEL_FORMAT],
        )
        .expect("valid metric");
        let dead_letters = IntCounterVec::new(
            Opts::new(
                DEAD_LETTER_RECORDS_TOTAL,
                "Records that could not be decoded, by the format tried.",
            ),
            &[LABEL_FORMAT],
        )
        .expect("valid metric");
        let control_messages = IntCounter::new(
            CONTROL_MESSAGES_TOTAL,
            "CloudWatch Logs control messages received (accepted, not stored).",
        )
        .expect("valid metric");
        let events_unrouted =
            IntCounter::new(EVENTS_UNROUTED_TOTAL, "Events no route matched, dropped.")
                .expect("valid metric");
        let sink_labels = &[LABEL_SINK, LABEL_SINK_TYPE];
        let sink_counter = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), sink_labels).expect("valid metric")
        };
        let sink_write_seconds = HistogramVec::new(
            HistogramOpts::new(
                SINK_WRITE_SECONDS,
                "Time of one successful commit to a sink.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            sink_labels,
        )
        .expect("valid metric");
        let sink_events = sink_counter(SINK_EVENTS_TOTAL, "Events committed to a sink.");
        let sink_bytes = sink_counter(
            SINK_BYTES_TOTAL,
            "Bytes of event lines committed to a sink.",
        );
        let sink_errors = sink_counter(SINK_ERRORS_TOTAL, "Failed commit attempts to a sink.");
        let sink_retries = sink_counter(
            SINK_RETRIES_TOTAL,
            "Commit attempts to a sink that were retries.",
        );
        let sink_duplicates = sink_counter(
            SINK_DUPLICATES_TOTAL,
            "Deliveries a sink had already committed.",
        );
        let sink_up = IntGaugeVec::new(
            Opts::new(
                SINK_UP,
                "1 while a sink's circuit breaker lets deliveries through.",
            ),
            sink_labels,
        )
        .expect("valid metric");
        let sink_reshaped = IntCounterVec::new(
            Opts::new(
                SINK_RESHAPED_TOTAL,
                "Events and keys a sink changed to fit its service, by action.",
            ),
            &[LABEL_SINK, LABEL_SINK_TYPE, LABEL_ACTION],
        )
        .expect("valid metric");
        let in_flight_bytes = IntGauge::new(IN_FLIGHT_BYTES, "Bytes held by requests in flight.")
            .expect("valid metric");
        let in_flight_limit_bytes = IntGauge::new(
            IN_FLIGHT_LIMIT_BYTES,
            "Limit on bytes held by requests in flight.",
        )
        .expect("valid metric");
        let storage = StorageMetrics {
            write_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    STORAGE_WRITE_SECONDS,
                    "Duration of one storage group commit (write and fsync).",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            commit_deliveries: Histogram::with_opts(
                HistogramOpts::new(
                    STORAGE_COMMIT_DELIVERIES,
                    "Deliveries that shared one group commit.",
                )
                .buckets(COMMIT_SIZE_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            errors: IntCounterVec::new(
                Opts::new(STORAGE_ERRORS_TOTAL, "Storage operations that failed."),
                &[LABEL_OPERATION],
            )
            .expect("valid metric"),
            segments_sealed: IntCounter::new(SEGMENTS_SEALED_TOTAL, "Segments completed.")
                .expect("valid metric"),
            recovery_truncated_bytes: IntCounter::new(
                RECOVERY_TRUNCATED_BYTES_TOTAL,
                "Unacknowledged bytes cut from open segments during crash recovery.",
            )
            .expect("valid metric"),
        };
        let connections = ConnectionMetrics {
            open: IntGaugeVec::new(
                Opts::new(OPEN_CONNECTIONS, "Connections open now."),
                &[LABEL_LISTENER],
            )
            .expect("valid metric"),
            limit: IntGaugeVec::new(
                Opts::new(MAX_CONNECTIONS, "The cap on open connections."),
                &[LABEL_LISTENER],
            )
            .expect("valid metric"),
            refused: IntCounterVec::new(
                Opts::new(
                    CONNECTIONS_REFUSED_TOTAL,
                    "Connections closed at once because the listener was at its cap.",
                ),
                &[LABEL_LISTENER],
            )
            .expect("valid metric"),
            timed_out: IntCounterVec::new(
                Opts::new(
                    CONNECTIONS_TIMED_OUT_TOTAL,
                    "Connections closed by a timeout, by reason.",
                ),
                &[LABEL_LISTENER, LABEL_REASON],
            )
            .expect("valid metric"),
        };
        let prometheus_series = IntGaugeVec::new(
            Opts::new(
                PROMETHEUS_SERIES,
                "Series a prometheus sink holds for its scrape endpoint.",
            ),
            &[LABEL_SINK],
        )
        .expect("valid metric");
        let prometheus_series_dropped = IntCounterVec::new(
            Opts::new(
                PROMETHEUS_SERIES_DROPPED_TOTAL,
                "New series a prometheus sink dropped because it held max_series already.",
            ),
            &[LABEL_SINK],
        )
        .expect("valid metric");
        let tls_handshakes = IntCounterVec::new(
            Opts::new(
                TLS_HANDSHAKES_TOTAL,
                "TLS handshakes on the ingest listener, by outcome.",
            ),
            &[LABEL_OUTCOME],
        )
        .expect("valid metric");
        let tls_not_after = IntGaugeVec::new(
            Opts::new(
                TLS_CERTIFICATE_NOT_AFTER_SECONDS,
                "When the certificate a listener serves expires, in seconds since the epoch.",
            ),
            &[LABEL_LISTENER],
        )
        .expect("valid metric");
        let acme_orders = IntCounterVec::new(
            Opts::new(
                ACME_ORDERS_TOTAL,
                "ACME orders of the ingest listener's certificate, by outcome.",
            ),
            &[LABEL_OUTCOME],
        )
        .expect("valid metric");
        let remote_write_sent = IntCounterVec::new(
            Opts::new(
                REMOTE_WRITE_SAMPLES_SENT_TOTAL,
                "Samples a remote_write sink's receiver took.",
            ),
            &[LABEL_SINK],
        )
        .expect("valid metric");
        let remote_write_rejected = IntCounterVec::new(
            Opts::new(
                REMOTE_WRITE_SAMPLES_REJECTED_TOTAL,
                "Samples a remote_write sink's receiver refused for good (not retried).",
            ),
            &[LABEL_SINK],
        )
        .expect("valid metric");
        let remote_write_requests = IntCounterVec::new(
            Opts::new(
                REMOTE_WRITE_REQUESTS_TOTAL,
                "Requests a remote_write sink sent, by the class of the receiver's answer.",
            ),
            &[LABEL_SINK, LABEL_STATUS],
        )
        .expect("valid metric");
        let reloads = IntCounterVec::new(
            Opts::new(
                RELOADS_TOTAL,
                "Reloads of files read at startup (on SIGHUP or a change), by what was read and outcome.",
            ),
            &[LABEL_TARGET, LABEL_OUTCOME],
        )
        .expect("valid metric");
        let access_keys = IntGauge::new(ACCESS_KEYS, "Access keys in use.").expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(BUILD_INFO, "Hydrant build information."),
            &[LABEL_VERSION, LABEL_REVISION, LABEL_FEATURES],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), GIT_REVISION, &build_features()])
            .set(1);

        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(requests.clone()),
            Box::new(ack_latency.clone()),
            Box::new(received_bytes.clone()),
            Box::new(received_records.clone()),
            Box::new(events_written.clone()),
            Box::new(duplicates.clone()),
            Box::new(records_decoded.clone()),
            Box::new(dead_letters.clone()),
            Box::new(control_messages.clone()),
            Box::new(events_unrouted.clone()),
            Box::new(sink_write_seconds.clone()),
            Box::new(sink_events.clone()),
            Box::new(sink_bytes.clone()),
            Box::new(sink_errors.clone()),
            Box::new(sink_retries.clone()),
            Box::new(sink_duplicates.clone()),
            Box::new(sink_up.clone()),
            Box::new(sink_reshaped.clone()),
            Box::new(prometheus_series.clone()),
            Box::new(prometheus_series_dropped.clone()),
            Box::new(tls_handshakes.clone()),
            Box::new(tls_not_after.clone()),
            Box::new(acme_orders.clone()),
            Box::new(remote_write_sent.clone()),
            Box::new(remote_write_rejected.clone()),
            Box::new(remote_write_requests.clone()),
            Box::new(reloads.clone()),
            Box::new(access_keys.clone()),
            Box::new(in_flight_bytes.clone()),
            Box::new(in_flight_limit_bytes.clone()),
            Box::new(storage.write_seconds.clone()),
            Box::new(storage.commit_deliveries.clone()),
            Box::new(storage.errors.clone()),
            Box::new(storage.segments_sealed.clone()),
            Box::new(storage.recovery_truncated_bytes.clone()),
            Box::new(connections.open.clone()),
            Box::new(connections.limit.clone()),
            Box::new(connections.refused.clone()),
            Box::new(connections.timed_out.clone()),
            Box::new(build_info),
            Box::new(crate::logging::dropped_lines().clone()),
        ];
        for collector in collectors {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        // CPU time, resident memory, open and maximum file descriptors, threads and
        // start time, under the `process_` names every exporter uses (read from
        // /proc, so Linux only).
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("metric names are unique");

        // Every series whose labels are known now starts at zero, so that alerts on
        // `absent()` or `rate()` see it before its first event. Delivery streams and
        // key names come with requests: their series start under `(none)`.
        for outcome in OUTCOMES {
            requests.with_label_values(&[outcome, LABEL_VALUE_NONE, LABEL_VALUE_NONE]);
            ack_latency.with_label_values(&[outcome, LABEL_VALUE_NONE]);
        }
        for counter in [
            &received_bytes,
            &received_records,
            &events_written,
            &duplicates,
        ] {
            counter.with_label_values(&[LABEL_VALUE_NONE, LABEL_VALUE_NONE]);
        }
        for format in DECODED_FORMATS {
            records_decoded.with_label_values(&[format]);
        }
        for format in DEAD_LETTER_FORMATS {
            dead_letters.with_label_values(&[format]);
        }
        for target in RELOAD_TARGETS {
            for outcome in RELOAD_OUTCOMES {
                reloads.with_label_values(&[target, outcome]);
            }
        }
        Self {
            registry,
            streams: StreamLabels::new(max_stream_labels),
            requests,
            ack_latency,
            received_bytes,
            received_records,
            events_written,
            duplicates,
            records_decoded,
            dead_letters,
            control_messages,
            events_unrouted,
            sink_write_seconds,
            sink_events,
            sink_bytes,
            sink_errors,
            sink_retries,
            sink_duplicates,
            sink_up,
            sink_reshaped,
            prometheus_series,
            prometheus_series_dropped,
            tls_handshakes,
            tls_not_after,
            acme_orders,
            remote_write_sent,
            remote_write_rejected,
            remote_write_requests,
            reloads,
            access_keys,
            in_flight_bytes,
            in_flight_limit_bytes,
            storage,
            connections,
        }
    }

    /// The recorder of the sink `name` of type `kind`, every series at zero (and
    /// `sink_up` at 1) from now on; `reshape_actions` are the ways the sink may
    /// reshape events, each counted from zero too.
    #[must_use]
    pub fn sink(&self, name: &str, kind: &str, reshape_actions: &[&str]) -> SinkRecorder {
        for action in reshape_actions {
            self.sink_reshaped.with_label_values(&[name, kind, action]);
        }
        let labels = [name, kind];
        let recorder = SinkRecorder {
            write_seconds: self.sink_write_seconds.with_label_values(&labels),
            events: self.sink_events.with_label_values(&labels),
            bytes: self.sink_bytes.with_label_values(&labels),
            errors: self.sink_errors.with_label_values(&labels),
            retries: self.sink_retries.with_label_values(&labels),
            duplicates: self.sink_duplicates.with_label_values(&labels),
            up: self.sink_up.with_label_values(&labels),
        };
        recorder.up(true);
        recorder
    }

    /// The recorder of the `prometheus` sink `name`, its series at zero from now on.
    #[must_use]
    pub fn prometheus_sink(&self, name: &str) -> PrometheusRecorder {
        PrometheusRecorder {
            series: self.prometheus_series.with_label_values(&[name]),
            dropped: self.prometheus_series_dropped.with_label_values(&[name]),
        }
    }

    /// The recorder of a listener's TLS (`listener` its label value), each of
    /// `handshake_outcomes` and the certificate reloads at zero from now on.
    #[must_use]
    pub fn tls(&self, listener: &str, handshake_outcomes: &[&str]) -> TlsRecorder {
        for outcome in handshake_outcomes {
            self.tls_handshakes.with_label_values(&[outcome]);
        }
        let reload = |outcome| {
            self.reloads
                .with_label_values(&[RELOAD_TARGET_TLS_CERTIFICATE, outcome])
        };
        TlsRecorder {
            handshakes: self.tls_handshakes.clone(),
            not_after: self.tls_not_after.with_label_values(&[listener]),
            reloads_ok: reload(OUTCOME_OK),
            reloads_failed: reload(RELOAD_FAILED),
        }
    }

    /// The counter of ACME orders by outcome, every outcome at zero from now on.
    #[must_use]
    pub fn acme(&self) -> AcmeRecorder {
        let [ok, failed] =
            ACME_ORDER_OUTCOMES.map(|outcome| self.acme_orders.with_label_values(&[outcome]));
        AcmeRecorder { ok, failed }
    }

    /// The recorder of the `remote_write` sink `name`, every series at zero from
    /// now on.
    #[must_use]
    pub fn remote_write_sink(&self, name: &str) -> RemoteWriteRecorder {
        let requests = REMOTE_WRITE_STATUSES.map(|status| {
            self.remote_write_requests
                .with_label_values(&[name, status])
        });
        RemoteWriteRecorder {
            sent: self.remote_write_sent.with_label_values(&[name]),
            rejected: self.remote_write_rejected.with_label_values(&[name]),
            requests,
        }
    }

    /// The recorder of one delivery from `stream` (by its source ARN) sent with
    /// the access key named `access_key`; either is `none` when not known.
    #[must_use]
    pub fn delivery(
        self: &Arc<Self>,
        stream: Option<&str>,
        access_key: Option<&str>,
    ) -> DeliveryRecorder {
        DeliveryRecorder {
            metrics: Arc::clone(self),
            stream: self.streams.value(stream),
            access_key: access_key.unwrap_or(LABEL_VALUE_NONE).to_owned(),
        }
    }

    /// Records what decoding a request found: records decoded per format, one dead
    /// letter per entry of `dead_letter_formats`, and the control messages skipped.
    pub fn record_decoding<'a>(
        &self,
        formats: impl IntoIterator<Item = (&'a str, u64)>,
        dead_letter_formats: impl IntoIterator<Item = &'a str>,
        control_messages: u64,
    ) {
        for (format, count) in formats {
            self.records_decoded
                .with_label_values(&[format])
                .inc_by(count);
        }
        for format in dead_letter_formats {
            self.dead_letters.with_label_values(&[format]).inc();
        }
        self.control_messages.inc_by(control_messages);
    }

    /// The gauge of bytes held by requests in flight, for a budget of
    /// `limit_bytes` (exposed beside it, so alerts can compare the two).
    #[must_use]
    pub fn in_flight_gauge(&self, limit_bytes: u64) -> IntGauge {
        self.in_flight_limit_bytes
            .set(i64::try_from(limit_bytes).unwrap_or(i64::MAX));
        self.in_flight_bytes.clone()
    }

    /// Counts a reload of `target` (one of [`RELOAD_TARGETS`]): taken when `ok`,
    /// else refused, what was in use kept.
    pub fn record_reload(&self, target: &str, ok: bool) {
        let outcome = if ok { OUTCOME_OK } else { RELOAD_FAILED };
        self.reloads.with_label_values(&[target, outcome]).inc();
    }

    /// The gauge of access keys in use.
    #[must_use]
    pub fn access_keys_gauge(&self) -> IntGauge {
        self.access_keys.clone()
    }

    /// Records events (and dead letters) that matched no route and were dropped.
    pub fn record_unrouted(&self, events: u64) {
        self.events_unrouted.inc_by(events);
    }

    /// The Prometheus text exposition of every metric.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding gathered families into a Vec only fails on invalid metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Caps the number of distinct delivery stream label values.
#[derive(Debug)]
pub struct StreamLabels {
    cap: usize,
    seen: Mutex<HashSet<String>>,
}

impl StreamLabels {
    /// Gives at most `cap` stream names their own value.
    #[must_use]
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// The label value for `stream`: its name while under the cap (or already seen),
    /// [`LABEL_VALUE_OTHER`] past it or when the name is longer than any real stream
    /// name ([`MAX_STREAM_LABEL_BYTES`]), [`LABEL_VALUE_NONE`] when there is none.
    pub fn value(&self, stream: Option<&str>) -> String {
        let Some(stream) = stream else {
            return LABEL_VALUE_NONE.to_owned();
        };
        if stream.len() > MAX_STREAM_LABEL_BYTES {
            return LABEL_VALUE_OTHER.to_owned();
        }
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(stream) {
            return stream.to_owned();
        }
        if seen.len() < self.cap {
            seen.insert(stream.to_owned());
            return stream.to_owned();
        }
        LABEL_VALUE_OTHER.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_with_its_name() {
        let metrics = Arc::new(Metrics::new(10));
        let delivery = metrics.delivery(Some("stream-a"), Some("prod"));
        delivery.body_read(100);
        delivery.envelope_parsed(2);
        delivery.answered("ok", Duration::from_millis(3), 2);
        delivery.answered(OUTCOME_DUPLICATE, Duration::ZERO, 0);
        metrics.storage.errors.with_label_values(&["write"]).inc();
        metrics.record_decoding([("cloudwatch_logs", 2)], ["gzip"], 1);
        let sink = ["s", "file"];
        metrics
            .sink_write_seconds
            .with_label_values(&sink)
            .observe(0.1);
        for counter in [
            &metrics.sink_events,
            &metrics.sink_bytes,
            &metrics.sink_errors,
            &metrics.sink_retries,
            &metrics.sink_duplicates,
        ] {
            counter.with_label_values(&sink).inc();
        }
        metrics.sink_up.with_label_values(&sink).set(1);
        metrics.record_unrouted(1);
        let prometheus = metrics.prometheus_sink("cw");
        prometheus.series(3);
        prometheus.dropped(2);
        let connections = &metrics.connections;
        connections.open.with_label_values(&["ingest"]).inc();
        connections.limit.with_label_values(&["ingest"]).set(2);
        connections.refused.with_label_values(&["ingest"]).inc();
        connections
            .timed_out
            .with_label_values(&["ingest", "idle"])
            .inc();
        let text = metrics.render();
        for name in [
            REQUESTS_TOTAL,
            ACK_LATENCY_SECONDS,
            RECEIVED_BYTES_TOTAL,
            RECEIVED_RECORDS_TOTAL,
            EVENTS_WRITTEN_TOTAL,
            DUPLICATE_DELIVERIES_TOTAL,
            IN_FLIGHT_BYTES,
            IN_FLIGHT_LIMIT_BYTES,
            STORAGE_WRITE_SECONDS,
            STORAGE_COMMIT_DELIVERIES,
            STORAGE_ERRORS_TOTAL,
            SEGMENTS_SEALED_TOTAL,
            RECOVERY_TRUNCATED_BYTES_TOTAL,
            RECORDS_DECODED_TOTAL,
            DEAD_LETTER_RECORDS_TOTAL,
            CONTROL_MESSAGES_TOTAL,
            EVENTS_UNROUTED_TOTAL,
            SINK_WRITE_SECONDS,
            SINK_EVENTS_TOTAL,
            SINK_BYTES_TOTAL,
            SINK_ERRORS_TOTAL,
            SINK_RETRIES_TOTAL,
            SINK_DUPLICATES_TOTAL,
            SINK_UP,
            PROMETHEUS_SERIES,
            PROMETHEUS_SERIES_DROPPED_TOTAL,
            RELOADS_TOTAL,
            ACCESS_KEYS,
            BUILD_INFO,
            OPEN_CONNECTIONS,
            MAX_CONNECTIONS,
            CONNECTIONS_REFUSED_TOTAL,
            CONNECTIONS_TIMED_OUT_TOTAL,
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
        }
        assert!(text.contains(
            r#"hydrant_requests_total{access_key="prod",delivery_stream="stream-a",outcome="ok"} 1"#
        ));
        assert!(text.contains(
            r#"hydrant_events_written_total{access_key="prod",delivery_stream="stream-a"} 2"#
        ));
        assert!(text.contains(r#"hydrant_prometheus_series{sink="cw"} 3"#));
        assert!(text.contains(r#"hydrant_prometheus_series_dropped_total{sink="cw"} 2"#));
        assert!(text.contains(
            r#"hydrant_duplicate_deliveries_total{access_key="prod",delivery_stream="stream-a"} 1"#
        ));
    }

    /// The format lists that start at zero hold every name a decoder gives: those
    /// written in the decoders' `Ok("…")`, `fail("…")` and `format: "…"`, the
    /// EventBridge decoder's and the raw record formats.
    #[test]
    fn every_decoded_and_dead_letter_format_starts_at_zero() {
        // That these are every format a decoder names is checked by decoding a
        // record of each (`decode::tests`); here, that each series exists at 0.
        let metrics = Metrics::new(1);
        let text = metrics.render();
        for format in DECODED_FORMATS {
            assert!(
                text.contains(&format!("{RECORDS_DECODED_TOTAL}{{format=\"{format}\"}} 0")),
                "{format}"
            );
        }
        for format in DEAD_LETTER_FORMATS {
            assert!(
                text.contains(&format!(
                    "{DEAD_LETTER_RECORDS_TOTAL}{{format=\"{format}\"}} 0"
                )),
                "{format}"
            );
        }
    }

    #[test]
    fn reloads_of_every_target_start_at_zero_and_count() {
        let metrics = Metrics::new(1);
        for target in RELOAD_TARGETS {
            for outcome in RELOAD_OUTCOMES {
                let series = format!(
                    "{RELOADS_TOTAL}{{{LABEL_OUTCOME}=\"{outcome}\",{LABEL_TARGET}=\"{target}\"}} 0"
                );
                assert!(metrics.render().contains(&series), "{series}");
            }
        }
        metrics.record_reload(RELOAD_TARGET_ACCESS_KEYS, false);
        metrics.record_reload(RELOAD_TARGET_ACCESS_KEYS, true);
        metrics.record_reload(RELOAD_TARGET_ACCESS_KEYS, true);
        metrics.access_keys_gauge().set(3);
        let text = metrics.render();
        assert!(text.contains(r#"hydrant_reloads_total{outcome="ok",target="access_keys"} 2"#));
        assert!(text.contains(r#"hydrant_reloads_total{outcome="failed",target="access_keys"} 1"#));
        assert!(text.contains(r#"hydrant_reloads_total{outcome="ok",target="tls_certificate"} 0"#));
        assert!(text.contains("hydrant_access_keys 3"));
    }

    #[test]
    fn stream_labels_are_capped() {
        let labels = StreamLabels::new(2);
        assert_eq!(labels.value(Some("a")), "a");
        assert_eq!(labels.value(Some("b")), "b");
        assert_eq!(labels.value(Some("c")), LABEL_VALUE_OTHER);
        assert_eq!(labels.value(Some("a")), "a");
        assert_eq!(labels.value(None), LABEL_VALUE_NONE);
        let long = StreamLabels::new(10);
        let name = "s".repeat(MAX_STREAM_LABEL_BYTES);
        assert_eq!(long.value(Some(&name)), name);
        assert_eq!(
            long.value(Some(&"s".repeat(60_000))),
            LABEL_VALUE_OTHER,
            "a long name takes no label of its own"
        );
    }
}
