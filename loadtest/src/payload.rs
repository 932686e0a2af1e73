//! The payload pool: a few distinct request bodies, generated before the run (and not
//! timed), each ready to be sent with any request id (see [`crate::body`]).
//!
//! Record kinds, each shaped like what the real AWS producer hands Firehose:
//! - `cloudwatch-logs`: a gzip'd CloudWatch Logs `DATA_MESSAGE` envelope of N log events,
//!   JSON log lines of 150–300 bytes, over 7 log groups (a subscription filter's output);
//! - `metrics-json`: CloudWatch Metric Streams JSON, N newline-terminated data points;
//! - `metrics-otel`: Metric Streams OpenTelemetry 1.0, varint-length-delimited
//!   `ExportMetricsServiceRequest` messages holding N summary data points in all;
//!
//!   the data points of both metric kinds are spread evenly over `--series` series (see
//!   [`crate::series`]);
//! - `raw-json`: one plain JSON object of about `--record-size` bytes and a newline (a
//!   Direct PUT producer).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Serialize;

use crate::body::{GzipTail, PartsBody, head};
use crate::protobuf::{put_bytes, put_delimited, put_double, put_fixed64, put_message, put_string};
use crate::rng::{RequestId, Rng};
use crate::series::{MAX_SERIES, SeriesOrder, SeriesWalk, scramble};

/// Firehose sends at most this many records per request.
pub const MAX_RECORDS: usize = 10_000;
/// Firehose's largest request body (before compression).
pub const MAX_REQUEST_SIZE: u64 = 64 << 20;
/// Firehose's largest record, before base64.
pub const MAX_RECORD_BYTES: usize = 1_024_000;

/// AWS account, region and stream names used inside the generated records.
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const METRIC_STREAM: &str = "loadtest-metric-stream";

/// The kind of records in the generated requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// gzip'd CloudWatch Logs DATA_MESSAGE envelopes (subscription filter output).
    CloudwatchLogs,
    /// CloudWatch Metric Streams, JSON format (newline-delimited data points).
    MetricsJson,
    /// CloudWatch Metric Streams, OpenTelemetry 1.0 format (length-delimited protobuf).
    MetricsOtel,
    /// Plain JSON objects, one per record (Direct PUT producers).
    RawJson,
}

impl Kind {
    /// Records per request when `--records` is not given.
    pub fn default_records(self) -> usize {
        match self {
            Kind::CloudwatchLogs | Kind::RawJson => 500,
            Kind::MetricsJson | Kind::MetricsOtel => 50,
        }
    }

    /// Events (log events or data points) per record when `--events-per-record` is not
    /// given; raw JSON records are one event each.
    pub fn default_events_per_record(self) -> usize {
        match self {
            Kind::CloudwatchLogs => 20,
            Kind::MetricsJson | Kind::MetricsOtel => 100,
            Kind::RawJson => 1,
        }
    }

    /// Whether the records carry metric data points (spread over `--series` series).
    pub fn is_metric(self) -> bool {
        matches!(self, Kind::MetricsJson | Kind::MetricsOtel)
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::CloudwatchLogs => "cloudwatch-logs",
            Kind::MetricsJson => "metrics-json",
            Kind::MetricsOtel => "metrics-otel",
            Kind::RawJson => "raw-json",
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    /// Record kind.
    pub kind: Kind,
    /// Records per request (ignored when `request_size` is set).
    pub records: usize,
    /// Log events or data points per record (not for raw JSON).
    pub events_per_record: usize,
    /// Approximate record size for raw JSON.
    pub record_size: usize,
    /// Target body size: records are added until the body reaches it.
    pub request_size: Option<u64>,
    /// Pre-compress the bodies for `Content-Encoding: gzip`.
    pub gzip: bool,
    /// Number of distinct bodies.
    pub pool_size: usize,
    /// Seed of the content.
    pub seed: u64,
    /// Distinct metric series the data points are spread over (metric kinds only).
    pub series: u64,
    /// "Now" for the timestamps inside the records (ms since the epoch).
    pub base_time_ms: u64,
}

/// One pre-built body.
#[derive(Debug)]
pub struct Payload {
    /// Records in the body.
    pub records: usize,
    /// Events in the body (records × events per record): for the metric kinds, the
    /// exact number of data points it carries.
    pub events: u64,
    /// Uncompressed body length, with a 36-character id and a 13-digit timestamp.
    pub body_len: u64,
    tail: Tail,
}

#[derive(Debug)]
enum Tail {
    Plain(Bytes),
    Gzip(GzipTail),
}

impl Payload {
    /// The body for one request: `id` and `timestamp_ms` go into the body's head, the
    /// pre-built records follow without being copied.
    pub fn body(&self, id: &RequestId, timestamp_ms: u64) -> PartsBody {
        let head = Bytes::from(head(id.as_str(), timestamp_ms));
        match &self.tail {
            Tail::Plain(tail) => PartsBody::new([head, tail.clone()]),
            Tail::Gzip(tail) => PartsBody::new(tail.wrap(&head)),
        }
    }

    /// Bytes on the wire (the gzip'd size with `--gzip`).
    pub fn wire_len(&self) -> u64 {
        match &self.tail {
            Tail::Plain(_) => self.body_len,
            Tail::Gzip(tail) => {
                // gzip header, stored-block header, head, deflated tail, trailer.
                (10 + 5 + HEAD_LEN + tail.deflated_len() + 8) as u64
            }
        }
    }
}

/// Length of the body head with a 36-character id and a 13-digit timestamp.
const HEAD_LEN: usize = 88;

/// The generated pool, and the sizes actually used.
#[derive(Debug)]
pub struct Pool {
    /// The distinct bodies; requests use them in turn.
    pub payloads: Vec<Payload>,
    /// Events per record used (raised from the asked value when `--request-size` needs
    /// more than 10,000 records of the asked size).
    pub events_per_record: usize,
    /// Raw JSON record size used (raised likewise).
    pub record_size: usize,
    /// Metric kinds: the distinct series the pool's data points belong to (the asked
    /// `--series`, or fewer when the pool holds fewer points than that).
    pub series: Option<u64>,
}

impl Pool {
    /// Mean records per request.
    pub fn mean_records(&self) -> f64 {
        self.mean(|payload| payload.records as f64)
    }

    /// Mean uncompressed body size.
    pub fn mean_body_len(&self) -> f64 {
        self.mean(|payload| payload.body_len as f64)
    }

    /// Mean size on the wire.
    pub fn mean_wire_len(&self) -> f64 {
        self.mean(|payload| payload.wire_len() as f64)
    }

    fn mean(&self, value: impl Fn(&Payload) -> f64) -> f64 {
        if self.payloads.is_empty() {
            return 0.0;
        }
        self.payloads.iter().map(value).sum::<f64>() / self.payloads.len() as f64
    }
}

/// Generates the pool, one thread per body.
pub fn build_pool(spec: &PoolSpec) -> Result<Pool, String> {
    let mut spec = spec.clone();
    if spec.pool_size == 0 {
        return Err("--pool-size must be at least 1".into());
    }
    if spec.kind == Kind::RawJson {
        spec.events_per_record = 1;
    }
    if spec.events_per_record == 0 {
        return Err("--events-per-record must be at least 1".into());
    }
    if spec.kind.is_metric() && !(1..=MAX_SERIES).contains(&spec.series) {
        return Err(format!("--series must be within 1..={MAX_SERIES}"));
    }
    let order = SeriesOrder::new(spec.series, spec.seed);
    if let Some(target) = spec.request_size {
        if target > MAX_REQUEST_SIZE {
            return Err(format!(
                "--request-size {target} is over Firehose's 64 MiB limit ({MAX_REQUEST_SIZE} bytes)"
            ));
        }
        scale_for_request_size(&mut spec, target)?;
    } else if !(1..=MAX_RECORDS).contains(&spec.records) {
        return Err(format!(
            "--records must be within 1..={MAX_RECORDS} (Firehose's limit)"
        ));
    }
    let payloads = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.pool_size)
            .map(|index| {
                let (spec, order) = (&spec, &order);
                scope.spawn(move || {
                    build_payload(spec, index, &mut order.walk(index, spec.pool_size))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .map_err(|_| "payload generation panicked".to_string())
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let series = spec.kind.is_metric().then(|| {
        let points: Vec<u64> = payloads.iter().map(|payload| payload.events).collect();
        order.distinct_in_pool(&points)
    });
    Ok(Pool {
        payloads,
        events_per_record: spec.events_per_record,
        record_size: spec.record_size,
        series,
    })
}

/// When the target body would need more than 10,000 records of the asked size, makes the
/// records bigger (more events per record, or a larger raw record) so it fits. Record
/// size is not proportional to the event count (an envelope has a fixed part), so the
/// size is probed again after each change.
fn scale_for_request_size(spec: &mut PoolSpec, target: u64) -> Result<(), String> {
    // Leave 10% headroom under the record limit for the spread between records.
    let budget = MAX_RECORDS as f64 * 0.9;
    for _ in 0..8 {
        let per_record = probe_entry_len(spec);
        let needed = target as f64 / per_record;
        if needed <= budget {
            return Ok(());
        }
        let wanted = target as f64 / budget;
        if wanted * 0.75 > MAX_RECORD_BYTES as f64 {
            return Err("--request-size cannot be reached within Firehose's record limits".into());
        }
        match spec.kind {
            // Base64 makes 3 bytes 4, and each entry has 12 bytes of JSON around it.
            Kind::RawJson => spec.record_size = ((wanted - 12.0) * 0.75).ceil() as usize,
            _ => {
                let factor = (needed / budget).max(1.05);
                spec.events_per_record = (spec.events_per_record as f64 * factor).ceil() as usize;
            }
        }
    }
    Ok(())
}

/// Mean length of a records entry (`{"data":"…"},`) for the spec, from a few samples.
fn probe_entry_len(spec: &PoolSpec) -> f64 {
    const PROBE: usize = 16;
    let mut rng = Rng::new(spec.seed ^ 0x5EED);
    let order = SeriesOrder::new(spec.series, spec.seed);
    let mut walk = order.walk(0, 1);
    let mut record = Vec::new();
    let mut total = 0_usize;
    for index in 0..PROBE {
        record.clear();
        generate_record(spec, &mut rng, &mut walk, index, &mut record);
        total += entry_len(record.len());
    }
    total as f64 / PROBE as f64
}

/// Length of `{"data":"<base64>"},` for a record of `len` bytes.
fn entry_len(len: usize) -> usize {
    len.div_ceil(3) * 4 + 12
}

/// Builds pool entry `index`, its data points (metric kinds) on the series of `walk`.
fn build_payload(spec: &PoolSpec, index: usize, walk: &mut SeriesWalk<'_>) -> Payload {
    let mut rng = Rng::new(
        spec.seed
            .wrapping_add((index as u64).wrapping_mul(0x9E37_79B9)),
    );
    let mut tail = Vec::with_capacity(
        spec.request_size
            .map_or(spec.records * 1024, |size| size as usize + (1 << 20)),
    );
    tail.push(b'[');
    let mut record = Vec::new();
    let mut records = 0;
    let mut events = 0_u64;
    let mut last = false;
    loop {
        let full = match spec.request_size {
            // Stop once the body has reached the target (or the record limit).
            Some(target) => {
                last || records > 0 && (HEAD_LEN + tail.len() + 2) as u64 >= target
                    || records == MAX_RECORDS
            }
            None => records == spec.records,
        };
        if full {
            break;
        }
        record.clear();
        let mut record_spec = std::borrow::Cow::Borrowed(spec);
        if let Some(target) = spec.request_size
            && records > 0
        {
            // When a whole record would overshoot the target, the last one is cut down
            // to the room left, so the body lands close to the target.
            let room = target as f64 - (HEAD_LEN + tail.len() + 3) as f64;
            let mean = (tail.len() - 1) as f64 / records as f64;
            if mean > room {
                let share = (room / mean).max(0.0);
                let trimmed = record_spec.to_mut();
                trimmed.events_per_record =
                    ((spec.events_per_record as f64 * share).round() as usize).max(1);
                trimmed.record_size = (((room - 12.0) * 0.75).max(1.0)) as usize;
                last = true;
            }
        }
        events += generate_record(&record_spec, &mut rng, walk, records, &mut record) as u64;
        if records > 0 {
            tail.push(b',');
        }
        tail.extend_from_slice(br#"{"data":""#);
        let start = tail.len();
        tail.resize(start + record.len().div_ceil(3) * 4, 0);
        let written = STANDARD
            .encode_slice(&record, &mut tail[start..])
            .unwrap_or_default();
        tail.truncate(start + written);
        tail.extend_from_slice(br#""}"#);
        records += 1;
    }
    tail.extend_from_slice(b"]}");
    let body_len = (HEAD_LEN + tail.len()) as u64;
    let tail = if spec.gzip {
        Tail::Gzip(GzipTail::new(&tail))
    } else {
        Tail::Plain(Bytes::from(tail))
    };
    Payload {
        records,
        events,
        body_len,
        tail,
    }
}

/// Appends one record of the spec's kind to `out`; returns its number of events (data
/// points for the metric kinds, each on the next series of `walk`).
fn generate_record(
    spec: &PoolSpec,
    rng: &mut Rng,
    walk: &mut SeriesWalk<'_>,
    index: usize,
    out: &mut Vec<u8>,
) -> usize {
    match spec.kind {
        Kind::CloudwatchLogs => {
            cloudwatch_record(rng, spec.events_per_record, spec.base_time_ms, out);
            spec.events_per_record
        }
        Kind::MetricsJson => {
            for _ in 0..spec.events_per_record {
                metric_json_line(
                    &metric_point(rng, walk.next_series(), spec.base_time_ms),
                    out,
                );
            }
            spec.events_per_record
        }
        Kind::MetricsOtel => {
            otel_record(rng, walk, spec.events_per_record, spec.base_time_ms, out);
            spec.events_per_record
        }
        Kind::RawJson => {
            raw_json_record(rng, index, spec.record_size, spec.base_time_ms, out);
            1
        }
    }
}

// ---------------------------------------------------------------------------------
// CloudWatch Logs

/// Log groups and the service name their lines carry.
const LOG_GROUPS: [(&str, &str); 7] = [
    ("/aws/lambda/checkout-api", "checkout"),
    ("/aws/lambda/payment-processor", "payments"),
    ("/aws/ecs/orders-service", "orders"),
    ("/aws/ecs/inventory-worker", "inventory"),
    ("/aws/eks/prod-cluster/ingress", "ingress"),
    ("/aws/apigateway/public-api", "gateway"),
    ("/aws/rds/instance/users-db/postgresql", "users-db"),
];

const INFO_MESSAGES: [&str; 6] = [
    "request completed",
    "order created",
    "cache refreshed",
    "payment authorised",
    "session renewed",
    "batch committed",
];
const WARN_MESSAGES: [&str; 3] = [
    "slow upstream response",
    "retrying after throttling",
    "connection pool near capacity",
];
const ERROR_MESSAGES: [&str; 3] = [
    "upstream timed out",
    "payment declined by issuer",
    "failed to acquire lease",
];
const RESOURCES: [&str; 6] = [
    "orders", "carts", "users", "payments", "products", "invoices",
];
const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
const TOKEN_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const WORDS: [&str; 24] = [
    "upstream",
    "latency",
    "cache",
    "shard",
    "replica",
    "token",
    "queue",
    "batch",
    "commit",
    "session",
    "tenant",
    "region",
    "partition",
    "lease",
    "snapshot",
    "handler",
    "retry",
    "budget",
    "quota",
    "deadline",
    "buffer",
    "schema",
    "cursor",
    "ledger",
];

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogsEnvelope<'a> {
    message_type: &'a str,
    owner: &'a str,
    log_group: &'a str,
    log_stream: &'a str,
    subscription_filters: [&'a str; 1],
    log_events: Vec<LogEvent>,
}

#[derive(Serialize)]
struct LogEvent {
    id: String,
    timestamp: u64,
    message: String,
}

/// One gzip'd `DATA_MESSAGE` with `events` log events of one log group and stream.
fn cloudwatch_record(rng: &mut Rng, events: usize, base_time_ms: u64, out: &mut Vec<u8>) {
    let (log_group, service) = *rng.pick(&LOG_GROUPS);
    let (year, month, day) = civil_date(base_time_ms);
    let log_stream = format!(
        "{year:04}/{month:02}/{day:02}/[$LATEST]{:016x}{:016x}",
        rng.next_u64(),
        rng.next_u64()
    );
    let mut timestamp = base_time_ms.saturating_sub(rng.below(60_000));
    // CloudWatch event ids are 56 decimal digits; the events of one record share most
    // of them and end in consecutive numbers.
    let id_prefix = format!("{:020}{:020}", rng.next_u64(), rng.next_u64());
    let id_sequence = rng.below(1 << 50);
    let log_events = (0..events)
        .map(|n| {
            timestamp += rng.below(40);
            let mut message = String::with_capacity(320);
            log_line(rng, service, timestamp, &mut message);
            LogEvent {
                id: format!("{id_prefix}{:016}", id_sequence + n as u64),
                timestamp,
                message,
            }
        })
        .collect();
    let envelope = LogsEnvelope {
        message_type: "DATA_MESSAGE",
        owner: ACCOUNT,
        log_group,
        log_stream: &log_stream,
        subscription_filters: ["to-firehose"],
        log_events,
    };
    let json = serde_json::to_vec(&envelope).unwrap_or_default();
    // CloudWatch compresses subscription data with gzip level 6.
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
    // Writing into a Vec cannot fail.
    let _ = encoder
        .write_all(&json)
        .and_then(|()| encoder.finish().map(drop));
}

/// A JSON log line of 150–300 bytes, as an application would print it.
fn log_line(rng: &mut Rng, service: &str, timestamp: u64, out: &mut String) {
    let target = rng.between(150, 300) as usize;
    let (level, message) = match rng.below(100) {
        0..=79 => ("info", *rng.pick(&INFO_MESSAGES)),
        80..=91 => ("warn", *rng.pick(&WARN_MESSAGES)),
        92..=97 => ("error", *rng.pick(&ERROR_MESSAGES)),
        _ => ("debug", *rng.pick(&INFO_MESSAGES)),
    };
    let _ = write!(
        out,
        r#"{{"ts":{timestamp},"level":"{level}","service":"{service}","msg":"{message}""#
    );
    let status = match level {
        "error" => *rng.pick(&[500_u16, 502, 503, 504]),
        "warn" => *rng.pick(&[200_u16, 429, 404]),
        _ => *rng.pick(&[200_u16, 200, 200, 201, 204]),
    };
    let mut field = String::with_capacity(64);
    for kind in 0..6 {
        field.clear();
        let _ = match kind {
            0 => write!(
                field,
                r#","trace_id":"{:016x}{:016x}","span_id":"{:016x}""#,
                rng.next_u64(),
                rng.next_u64(),
                rng.next_u64()
            ),
            1 => write!(
                field,
                r#","method":"{}","path":"/api/v2/{}/{}""#,
                rng.pick(&METHODS),
                rng.pick(&RESOURCES),
                rng.below(100_000)
            ),
            2 => write!(
                field,
                r#","status":{status},"duration_ms":{}"#,
                rng.between(1, 1500)
            ),
            3 => write!(
                field,
                r#","host":"ip-10-0-{}-{}.ec2.internal""#,
                rng.below(16),
                rng.below(256)
            ),
            4 => write!(field, r#","user_id":"u-{}""#, rng.below(1_000_000)),
            _ => write!(field, r#","bytes":{}"#, rng.below(65_536)),
        };
        // Trace ids in half the lines, other fields in a fifth; keep room for at least
        // `,"detail":"x"}`, the free text that fills the line up to its length.
        if out.len() + field.len() + 15 > target {
            break;
        }
        if rng.below(if kind == 0 { 2 } else { 5 }) == 0 {
            out.push_str(&field);
        }
    }
    if out.len() + 15 <= target {
        out.push_str(r#","detail":""#);
        let mut token = String::with_capacity(24);
        while out.len() + 2 < target {
            // Words, key=value pairs and ids, so the lines compress like real ones do.
            token.clear();
            if !out.ends_with('"') {
                token.push(' ');
            }
            let _ = match rng.below(8) {
                0 => write!(token, "{}", rng.pick(&WORDS)),
                1 => write!(token, "{}={}", rng.pick(&WORDS), rng.below(10_000_000)),
                2 => write!(token, "{:08x}", rng.next_u64() as u32),
                _ => {
                    // An opaque token, like a session or an object key.
                    let bits = rng.next_u64();
                    for shift in (0..60).step_by(6) {
                        token.push(char::from(TOKEN_CHARS[((bits >> shift) & 63) as usize]));
                    }
                    Ok(())
                }
            };
            let room = target - 2 - out.len();
            out.push_str(&token[..token.len().min(room)]);
        }
        out.push('"');
    }
    out.push('}');
}

/// Year, month and day (UTC) of a time in ms since the epoch.
fn civil_date(ms: u64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let days = (ms / 86_400_000) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------
// Metric Streams

/// A CloudWatch metric: namespace, name, CloudWatch unit, UCUM unit, dimension names.
struct MetricDef {
    namespace: &'static str,
    name: &'static str,
    unit: &'static str,
    ucum: &'static str,
    dimensions: &'static [&'static str],
}

const METRICS: [MetricDef; 10] = [
    MetricDef {
        namespace: "AWS/EC2",
        name: "CPUUtilization",
        unit: "Percent",
        ucum: "%",
        dimensions: &["InstanceId"],
    },
    MetricDef {
        namespace: "AWS/EC2",
        name: "NetworkIn",
        unit: "Bytes",
        ucum: "By",
        dimensions: &["InstanceId"],
    },
    MetricDef {
        namespace: "AWS/EC2",
        name: "DiskReadOps",
        unit: "Count",
        ucum: "{Count}",
        dimensions: &["InstanceId", "InstanceType"],
    },
    MetricDef {
        namespace: "AWS/Lambda",
        name: "Duration",
        unit: "Milliseconds",
        ucum: "ms",
        dimensions: &["FunctionName"],
    },
    MetricDef {
        namespace: "AWS/Lambda",
        name: "Invocations",
        unit: "Count",
        ucum: "{Count}",
        dimensions: &["FunctionName", "Resource"],
    },
    MetricDef {
        namespace: "AWS/ApplicationELB",
        name: "TargetResponseTime",
        unit: "Seconds",
        ucum: "s",
        dimensions: &["LoadBalancer", "TargetGroup"],
    },
    MetricDef {
        namespace: "AWS/ApplicationELB",
        name: "RequestCount",
        unit: "Count",
        ucum: "{Count}",
        dimensions: &["LoadBalancer"],
    },
    MetricDef {
        namespace: "AWS/RDS",
        name: "FreeableMemory",
        unit: "Bytes",
        ucum: "By",
        dimensions: &["DBInstanceIdentifier"],
    },
    MetricDef {
        namespace: "AWS/SQS",
        name: "ApproximateNumberOfMessagesVisible",
        unit: "Count",
        ucum: "{Count}",
        dimensions: &["QueueName"],
    },
    MetricDef {
        namespace: "AWS/DynamoDB",
        name: "ConsumedReadCapacityUnits",
        unit: "Count",
        ucum: "{Count}",
        dimensions: &["TableName", "Operation"],
    },
];

/// One data point of one series.
struct MetricPoint {
    def: &'static MetricDef,
    dimensions: Vec<(&'static str, String)>,
    /// End of the one-minute period, ms since the epoch.
    timestamp_ms: u64,
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
}

/// A data point of series number `series`: metric `series mod 10` of [`METRICS`], with
/// dimension values made from `series / 10`, so that distinct numbers are distinct
/// series (the default 640 series are 64 for each metric).
fn metric_point(rng: &mut Rng, series: u64, base_time_ms: u64) -> MetricPoint {
    let def = &METRICS[(series % METRICS.len() as u64) as usize];
    let instance = series / METRICS.len() as u64;
    let dimensions = def
        .dimensions
        .iter()
        .map(|&name| (name, dimension_value(name, instance)))
        .collect();
    let minute = base_time_ms / 60_000 * 60_000;
    let timestamp_ms = minute.saturating_sub(60_000 * rng.below(3));
    let count = match def.unit {
        "Count" => rng.between(1, 60) as f64,
        _ => rng.between(1, 5) as f64,
    };
    let scale = match def.unit {
        "Percent" => 100.0,
        "Bytes" => 4e9,
        "Milliseconds" => 2000.0,
        "Seconds" => 2.0,
        _ => 500.0,
    };
    let (a, b) = (rng.unit() * scale, rng.unit() * scale);
    let (min, max) = if a <= b { (a, b) } else { (b, a) };
    let mean = min + (max - min) * rng.unit();
    MetricPoint {
        def,
        dimensions,
        timestamp_ms,
        count,
        sum: mean * count,
        min,
        max,
    }
}

/// The value of dimension `name` for the `instance`-th series of a metric. Every metric
/// has a dimension whose value is a one-to-one function of `instance` (it holds the
/// number, or a bijective scramble of it), so distinct instances never share a label
/// set; the other dimensions vary the way they would in an account (a few instance
/// types, four operations per table).
fn dimension_value(name: &str, instance: u64) -> String {
    let hash = scramble(instance);
    match name {
        "InstanceId" => format!("i-{hash:017x}"),
        "InstanceType" => {
            ["m5.large", "c6g.xlarge", "r6i.2xlarge", "t3.medium"][(hash % 4) as usize].into()
        }
        "FunctionName" => format!("{}-handler-{instance}", RESOURCES[(instance % 6) as usize]),
        "Resource" => format!(
            "{}-handler-{instance}:live",
            RESOURCES[(instance % 6) as usize]
        ),
        "LoadBalancer" => format!("app/web-{instance}/{hash:016x}"),
        "TargetGroup" => format!("targetgroup/api-{instance}/{:016x}", hash.rotate_left(17)),
        "DBInstanceIdentifier" => format!("users-db-{instance}"),
        "QueueName" => format!("jobs-{instance}"),
        // Four operations on each table: (table, operation) is one-to-one with instance.
        "TableName" => format!(
            "{}-table-{}",
            RESOURCES[(instance / 4 % 6) as usize],
            instance / 4
        ),
        "Operation" => ["GetItem", "Query", "Scan", "BatchGetItem"][(instance % 4) as usize].into(),
        _ => format!("value-{instance}"),
    }
}

#[derive(Serialize)]
struct JsonPoint<'a> {
    metric_stream_name: &'a str,
    account_id: &'a str,
    region: &'a str,
    namespace: &'a str,
    metric_name: &'a str,
    dimensions: BTreeMap<&'a str, &'a str>,
    timestamp: u64,
    value: JsonStats,
    unit: &'a str,
}

#[derive(Serialize)]
struct JsonStats {
    max: f64,
    min: f64,
    sum: f64,
    count: f64,
}

/// One Metric Streams JSON line, newline-terminated.
fn metric_json_line(point: &MetricPoint, out: &mut Vec<u8>) {
    let line = JsonPoint {
        metric_stream_name: METRIC_STREAM,
        account_id: ACCOUNT,
        region: REGION,
        namespace: point.def.namespace,
        metric_name: point.def.name,
        dimensions: point
            .dimensions
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect(),
        timestamp: point.timestamp_ms,
        value: JsonStats {
            max: point.max,
            min: point.min,
            sum: point.sum,
            count: point.count,
        },
        unit: point.def.unit,
    };
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}

/// Data points per `ExportMetricsServiceRequest` message: a record holds several
/// messages, so receivers have to handle the length-delimited framing for real.
const POINTS_PER_MESSAGE: usize = 10;

/// One OpenTelemetry 1.0 record: `points` data points in length-delimited messages.
fn otel_record(
    rng: &mut Rng,
    walk: &mut SeriesWalk<'_>,
    points: usize,
    base_time_ms: u64,
    out: &mut Vec<u8>,
) {
    let mut remaining = points;
    let mut message = Vec::new();
    while remaining > 0 {
        let batch = remaining.min(POINTS_PER_MESSAGE);
        remaining -= batch;
        let batch: Vec<MetricPoint> = (0..batch)
            .map(|_| metric_point(rng, walk.next_series(), base_time_ms))
            .collect();
        message.clear();
        // ExportMetricsServiceRequest.resource_metrics = 1
        put_message(&mut message, 1, |resource_metrics| {
            // ResourceMetrics.resource = 1: Resource.attributes = 1
            put_message(resource_metrics, 1, |resource| {
                let exporter =
                    format!("arn:aws:cloudwatch:{REGION}:{ACCOUNT}:metric-stream/{METRIC_STREAM}");
                for (key, value) in [
                    ("cloud.provider", "aws"),
                    ("cloud.account.id", ACCOUNT),
                    ("cloud.region", REGION),
                    ("aws.exporter.arn", exporter.as_str()),
                ] {
                    put_message(resource, 1, |kv| key_value_string(kv, key, value));
                }
            });
            // ResourceMetrics.scope_metrics = 2 (scope left empty, as CloudWatch does)
            put_message(resource_metrics, 2, |scope_metrics| {
                for point in &batch {
                    // ScopeMetrics.metrics = 2
                    put_message(scope_metrics, 2, |metric| otel_metric(metric, point));
                }
            });
        });
        put_delimited(out, &message);
    }
}

/// A `Metric` with one summary data point.
fn otel_metric(metric: &mut Vec<u8>, point: &MetricPoint) {
    let name = format!("amazonaws.com/{}/{}", point.def.namespace, point.def.name);
    put_string(metric, 1, &name); // Metric.name
    put_string(metric, 3, point.def.ucum); // Metric.unit
    put_message(metric, 11, |summary| {
        // Summary.data_points = 1
        put_message(summary, 1, |data_point| {
            let end_ns = point.timestamp_ms * 1_000_000;
            put_fixed64(data_point, 2, end_ns - 60_000_000_000); // start_time_unix_nano
            put_fixed64(data_point, 3, end_ns); // time_unix_nano
            put_fixed64(data_point, 4, point.count as u64); // count
            put_double(data_point, 5, point.sum); // sum
            for (quantile, value) in [(0.0, point.min), (1.0, point.max)] {
                // quantile_values = 6: ValueAtQuantile{quantile = 1, value = 2}
                put_message(data_point, 6, |at| {
                    put_double(at, 1, quantile);
                    put_double(at, 2, value);
                });
            }
            // attributes = 7: Namespace, MetricName, Dimensions (kvlist)
            put_message(data_point, 7, |kv| {
                key_value_string(kv, "Namespace", point.def.namespace)
            });
            put_message(data_point, 7, |kv| {
                key_value_string(kv, "MetricName", point.def.name)
            });
            put_message(data_point, 7, |kv| {
                put_string(kv, 1, "Dimensions");
                // AnyValue.kvlist_value = 6: KeyValueList.values = 1
                put_message(kv, 2, |any| {
                    put_message(any, 6, |list| {
                        for (name, value) in &point.dimensions {
                            put_message(list, 1, |entry| key_value_string(entry, name, value));
                        }
                    });
                });
            });
        });
    });
}

/// A `KeyValue{key = 1, value = 2: AnyValue{string_value = 1}}`.
fn key_value_string(kv: &mut Vec<u8>, key: &str, value: &str) {
    put_string(kv, 1, key);
    put_message(kv, 2, |any| put_bytes(any, 1, value.as_bytes()));
}

// ---------------------------------------------------------------------------------
// Raw JSON

const ACTIONS: [&str; 5] = ["page_view", "click", "add_to_cart", "checkout", "search"];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];

/// A JSON object of about `size` bytes, newline-terminated.
fn raw_json_record(rng: &mut Rng, index: usize, size: usize, base_time_ms: u64, out: &mut Vec<u8>) {
    let mut text = String::with_capacity(size + 64);
    let _ = write!(
        text,
        r#"{{"event_id":"{:016x}-{index}","ts":{},"user":"u-{}","action":"{}","page":"/{}/{}","device":"{}","session":"{:016x}","pad":""#,
        rng.next_u64(),
        base_time_ms.saturating_sub(rng.below(60_000)),
        rng.below(1_000_000),
        rng.pick(&ACTIONS),
        rng.pick(&RESOURCES),
        rng.below(10_000),
        rng.pick(&DEVICES),
        rng.next_u64(),
    );
    // `"}` and the newline close the record.
    while text.len() + 3 < size {
        let word = rng.pick(&WORDS);
        let room = size - 3 - text.len();
        if !text.ends_with('"') {
            text.push(' ');
        }
        text.push_str(&word[..word.len().min(room.saturating_sub(1).max(1))]);
    }
    text.push_str("\"}\n");
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};
    use std::io::Read as _;

    use super::*;
    use crate::protobuf::reader::{all, delimited, fields, one};

    fn spec(kind: Kind) -> PoolSpec {
        PoolSpec {
            kind,
            records: kind.default_records(),
            events_per_record: kind.default_events_per_record(),
            record_size: 1024,
            request_size: None,
            gzip: false,
            pool_size: 2,
            seed: 42,
            series: crate::series::DEFAULT_SERIES,
            base_time_ms: 1_763_719_200_000,
        }
    }

    /// A series as a receiver tells them apart: namespace, metric name, dimensions.
    type SeriesKey = (String, String, Vec<(String, String)>);

    /// The series of every data point in a body, decoded from its records: JSON lines
    /// with serde_json, OpenTelemetry messages with the protobuf reader.
    fn points_of(kind: Kind, body: &serde_json::Value) -> Vec<SeriesKey> {
        let mut points = Vec::new();
        for record in records(body) {
            match kind {
                Kind::MetricsJson => {
                    let text = std::str::from_utf8(&record).expect("UTF-8");
                    for line in text.lines() {
                        let point: serde_json::Value =
                            serde_json::from_str(line).expect("JSON line");
                        let text =
                            |value: &serde_json::Value| value.as_str().expect("string").to_string();
                        let dimensions = point["dimensions"]
                            .as_object()
                            .expect("dimensions")
                            .iter()
                            .map(|(name, value)| (name.clone(), text(value)))
                            .collect();
                        points.push((
                            text(&point["namespace"]),
                            text(&point["metric_name"]),
                            dimensions,
                        ));
                    }
                }
                Kind::MetricsOtel => {
                    for message in delimited(&record) {
                        let request = fields(message);
                        let resource_metrics = fields(one(&request, 1).bytes());
                        let scope_metrics = fields(one(&resource_metrics, 2).bytes());
                        for metric in all(&scope_metrics, 2) {
                            let metric = fields(metric.bytes());
                            let summary = fields(one(&metric, 11).bytes());
                            for point in all(&summary, 1) {
                                let attributes = all(&fields(point.bytes()), 7);
                                let value = |index: usize| {
                                    let kv = fields(attributes[index].bytes());
                                    fields(one(&kv, 2).bytes())
                                };
                                let list = fields(one(&value(2), 6).bytes());
                                let dimensions = all(&list, 1)
                                    .into_iter()
                                    .map(|entry| {
                                        let entry = fields(entry.bytes());
                                        let any = fields(one(&entry, 2).bytes());
                                        (
                                            one(&entry, 1).text().to_string(),
                                            one(&any, 1).text().to_string(),
                                        )
                                    })
                                    .collect();
                                points.push((
                                    one(&value(0), 1).text().to_string(),
                                    one(&value(1), 1).text().to_string(),
                                    dimensions,
                                ));
                            }
                        }
                    }
                }
                other => panic!("{other:?} has no data points"),
            }
        }
        points
    }

    /// The distinct series of a whole pool, and its data points.
    fn series_of_pool(spec: &PoolSpec) -> (Pool, BTreeSet<SeriesKey>, u64) {
        let pool = build_pool(spec).expect("pool");
        let mut series = BTreeSet::new();
        let mut points = 0;
        let mut id_rng = Rng::new(11);
        for payload in &pool.payloads {
            let body = parsed_body(payload, &id_rng.request_id(), spec.gzip);
            let decoded = points_of(spec.kind, &body);
            // Each body knows exactly how many data points it carries.
            assert_eq!(decoded.len() as u64, payload.events);
            points += decoded.len() as u64;
            series.extend(decoded);
        }
        (pool, series, points)
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    /// The body of `payload` sent with `id`, parsed; checks the head.
    fn parsed_body(payload: &Payload, id: &RequestId, gzip: bool) -> serde_json::Value {
        let bytes = payload.body(id, 1_763_719_234_567).to_vec();
        let bytes = if gzip { gunzip(&bytes) } else { bytes };
        assert_eq!(bytes.len() as u64, payload.body_len);
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("body is JSON");
        assert_eq!(body["requestId"], id.as_str());
        assert_eq!(body["timestamp"], 1_763_719_234_567_u64);
        body
    }

    /// The decoded records of a body.
    fn records(body: &serde_json::Value) -> Vec<Vec<u8>> {
        body["records"]
            .as_array()
            .expect("records array")
            .iter()
            .map(|record| {
                let keys: Vec<&String> = record.as_object().expect("object").keys().collect();
                assert_eq!(keys, ["data"]);
                STANDARD
                    .decode(record["data"].as_str().expect("data string"))
                    .expect("base64")
            })
            .collect()
    }

    #[test]
    fn cloudwatch_records_are_gzipped_data_messages() {
        let pool = build_pool(&spec(Kind::CloudwatchLogs)).expect("pool");
        assert_eq!(pool.payloads.len(), 2);
        let mut groups = std::collections::BTreeSet::new();
        let mut id_rng = Rng::new(1);
        for payload in &pool.payloads {
            assert_eq!(payload.records, 500);
            assert_eq!(payload.events, 10_000);
            // The reference workload's body is about 1.6 MB.
            assert!(
                (1_450_000..1_750_000).contains(&payload.body_len),
                "body of {} bytes",
                payload.body_len
            );
            let body = parsed_body(payload, &id_rng.request_id(), false);
            let records = records(&body);
            assert_eq!(records.len(), 500);
            for record in &records {
                assert_eq!(&record[..2], [0x1F, 0x8B], "gzip magic");
                let envelope: serde_json::Value =
                    serde_json::from_slice(&gunzip(record)).expect("envelope JSON");
                assert_eq!(envelope["messageType"], "DATA_MESSAGE");
                assert_eq!(envelope["owner"], ACCOUNT);
                assert_eq!(envelope["subscriptionFilters"][0], "to-firehose");
                assert!(
                    envelope["logStream"]
                        .as_str()
                        .expect("stream")
                        .starts_with("2025/11/21/")
                );
                groups.insert(envelope["logGroup"].as_str().expect("group").to_string());
                let events = envelope["logEvents"].as_array().expect("events");
                assert_eq!(events.len(), 20);
                for event in events {
                    let id = event["id"].as_str().expect("id");
                    assert_eq!(id.len(), 56);
                    assert!(id.bytes().all(|b| b.is_ascii_digit()));
                    assert!(event["timestamp"].is_u64());
                    let message = event["message"].as_str().expect("message");
                    assert!(
                        (150..=300).contains(&message.len()),
                        "{} bytes: {message}",
                        message.len()
                    );
                    let line: serde_json::Value =
                        serde_json::from_str(message).expect("log line is JSON");
                    assert!(line["level"].is_string() && line["msg"].is_string());
                }
            }
        }
        assert_eq!(groups.len(), 7, "{groups:?}");
    }

    #[test]
    fn asked_event_counts_are_honoured() {
        let mut spec = spec(Kind::CloudwatchLogs);
        spec.records = 3;
        spec.events_per_record = 7;
        spec.pool_size = 1;
        let pool = build_pool(&spec).expect("pool");
        let body = parsed_body(&pool.payloads[0], &Rng::new(3).request_id(), false);
        for record in records(&body) {
            let envelope: serde_json::Value =
                serde_json::from_slice(&gunzip(&record)).expect("JSON");
            assert_eq!(envelope["logEvents"].as_array().expect("events").len(), 7);
        }
        assert_eq!(pool.payloads[0].events, 21);
    }

    #[test]
    fn metric_json_lines_parse() {
        let mut spec = spec(Kind::MetricsJson);
        spec.records = 5;
        spec.events_per_record = 30;
        let pool = build_pool(&spec).expect("pool");
        let body = parsed_body(&pool.payloads[1], &Rng::new(4).request_id(), false);
        let records = records(&body);
        assert_eq!(records.len(), 5);
        for record in records {
            let text = std::str::from_utf8(&record).expect("UTF-8");
            assert!(text.ends_with('\n'));
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 30);
            for line in lines {
                let point: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                assert_eq!(point["metric_stream_name"], METRIC_STREAM);
                assert_eq!(point["account_id"], ACCOUNT);
                assert!(
                    point["namespace"]
                        .as_str()
                        .expect("namespace")
                        .starts_with("AWS/")
                );
                assert!(point["dimensions"].is_object());
                assert_eq!(point["timestamp"].as_u64().expect("timestamp") % 60_000, 0);
                let value = &point["value"];
                for stat in ["max", "min", "sum", "count"] {
                    assert!(value[stat].is_f64(), "{stat} in {line}");
                }
                assert!(value["min"].as_f64() <= value["max"].as_f64());
            }
        }
    }

    #[test]
    fn otel_records_are_length_delimited_export_requests() {
        let mut spec = spec(Kind::MetricsOtel);
        spec.records = 4;
        spec.events_per_record = 25;
        let pool = build_pool(&spec).expect("pool");
        assert_eq!(pool.payloads[0].events, 100);
        let body = parsed_body(&pool.payloads[0], &Rng::new(5).request_id(), false);
        for record in records(&body) {
            let messages = delimited(&record);
            // 25 points at 10 per message.
            assert_eq!(messages.len(), 3);
            let mut points = 0;
            for message in messages {
                let request = fields(message);
                let resource_metrics = fields(one(&request, 1).bytes());
                let resource = fields(one(&resource_metrics, 1).bytes());
                let attributes: BTreeMap<&str, &str> = all(&resource, 1)
                    .into_iter()
                    .map(|kv| {
                        let kv = fields(kv.bytes());
                        let value = fields(one(&kv, 2).bytes());
                        (one(&kv, 1).text(), one(&value, 1).text())
                    })
                    .collect();
                assert_eq!(attributes["cloud.account.id"], ACCOUNT);
                assert_eq!(attributes["cloud.region"], REGION);
                assert!(attributes["aws.exporter.arn"].starts_with("arn:aws:cloudwatch:"));
                let scope_metrics = fields(one(&resource_metrics, 2).bytes());
                for metric in all(&scope_metrics, 2) {
                    let metric = fields(metric.bytes());
                    let name = one(&metric, 1).text();
                    assert!(name.starts_with("amazonaws.com/AWS/"), "{name}");
                    assert!(!one(&metric, 3).text().is_empty(), "unit");
                    let summary = fields(one(&metric, 11).bytes());
                    for point in all(&summary, 1) {
                        points += 1;
                        let point = fields(point.bytes());
                        let start = one(&point, 2).fixed64();
                        let end = one(&point, 3).fixed64();
                        assert_eq!(end - start, 60_000_000_000);
                        assert!(one(&point, 4).fixed64() >= 1, "count");
                        assert!(one(&point, 5).double() > 0.0, "sum");
                        assert_eq!(all(&point, 6).len(), 2, "min and max quantiles");
                        let attributes = all(&point, 7);
                        assert_eq!(attributes.len(), 3);
                        let keys: Vec<&str> = attributes
                            .iter()
                            .map(|kv| one(&fields(kv.bytes()), 1).text())
                            .collect();
                        assert_eq!(keys, ["Namespace", "MetricName", "Dimensions"]);
                        let dimensions = fields(attributes[2].bytes());
                        let any = fields(one(&dimensions, 2).bytes());
                        let list = fields(one(&any, 6).bytes());
                        assert!(!all(&list, 1).is_empty(), "at least one dimension");
                        let namespace = fields(attributes[0].bytes());
                        let namespace = fields(one(&namespace, 2).bytes());
                        assert!(name.contains(one(&namespace, 1).text()));
                    }
                }
            }
            assert_eq!(points, 25);
        }
    }

    #[test]
    fn raw_json_records_have_about_the_asked_size() {
        let mut spec = spec(Kind::RawJson);
        spec.records = 20;
        spec.record_size = 700;
        let pool = build_pool(&spec).expect("pool");
        let body = parsed_body(&pool.payloads[0], &Rng::new(6).request_id(), false);
        for record in records(&body) {
            assert!(
                (690..=710).contains(&record.len()),
                "{} bytes",
                record.len()
            );
            assert!(record.ends_with(b"\n"));
            let _: serde_json::Value = serde_json::from_slice(&record).expect("JSON");
        }
        assert_eq!(pool.payloads[0].events, 20);
    }

    #[test]
    fn request_size_is_reached_within_five_percent() {
        for kind in [
            Kind::CloudwatchLogs,
            Kind::MetricsJson,
            Kind::MetricsOtel,
            Kind::RawJson,
        ] {
            for target in [256_u64 << 10, 1 << 20] {
                let mut spec = spec(kind);
                spec.request_size = Some(target);
                spec.pool_size = 1;
                let pool = build_pool(&spec).expect("pool");
                let payload = &pool.payloads[0];
                let error = (payload.body_len as f64 - target as f64).abs() / target as f64;
                assert!(
                    error < 0.05,
                    "{kind:?}: {} bytes for {target}",
                    payload.body_len
                );
                let body = parsed_body(payload, &Rng::new(8).request_id(), false);
                assert_eq!(records(&body).len(), payload.records);
            }
        }
    }

    #[test]
    fn request_size_beyond_ten_thousand_records_grows_the_records() {
        let mut spec = spec(Kind::RawJson);
        spec.record_size = 100;
        spec.request_size = Some(4 << 20);
        spec.pool_size = 1;
        let pool = build_pool(&spec).expect("pool");
        let payload = &pool.payloads[0];
        assert!(payload.records <= MAX_RECORDS);
        assert!(pool.record_size > 100);
        let error = (payload.body_len as f64 - (4 << 20) as f64).abs() / (4 << 20) as f64;
        assert!(error < 0.05, "{} bytes", payload.body_len);
        spec.request_size = Some(MAX_REQUEST_SIZE + 1);
        assert!(build_pool(&spec).is_err());
    }

    #[test]
    fn ids_are_patched_into_plain_and_gzip_bodies_alike() {
        let mut plain_spec = spec(Kind::CloudwatchLogs);
        plain_spec.records = 50;
        plain_spec.pool_size = 1;
        let mut gzip_spec = plain_spec.clone();
        gzip_spec.gzip = true;
        let plain = build_pool(&plain_spec).expect("pool");
        let gzip = build_pool(&gzip_spec).expect("pool");
        let mut rng = Rng::new(9);
        let (first, second) = (rng.request_id(), rng.request_id());
        let plain_body = parsed_body(&plain.payloads[0], &first, false);
        assert_eq!(plain_body, parsed_body(&gzip.payloads[0], &first, true));
        let again = parsed_body(&gzip.payloads[0], &second, true);
        assert_eq!(again["records"], plain_body["records"]);
        // The wire length is what the body really is.
        let wire = gzip.payloads[0].body(&first, 1_763_719_234_567).len();
        assert_eq!(wire, gzip.payloads[0].wire_len());
        assert!(wire < plain.payloads[0].body_len);
        assert_eq!(plain.payloads[0].wire_len(), plain.payloads[0].body_len);
    }

    #[test]
    fn n_series_are_n_distinct_label_sets() {
        // 100,000 series over a pool of exactly 100,000 data points: each appears once.
        for (series, records, points_per_record) in [
            (1, 5, 20),
            (7, 5, 20),
            (640, 10, 100),
            (5000, 20, 100),
            (100_000, 250, 100),
        ] {
            let mut spec = spec(Kind::MetricsJson);
            spec.series = series;
            spec.records = records;
            spec.events_per_record = points_per_record;
            spec.pool_size = 4;
            let (pool, distinct, points) = series_of_pool(&spec);
            assert!(points >= series);
            assert_eq!(distinct.len() as u64, series, "--series {series}");
            assert_eq!(pool.series, Some(series));
        }
    }

    #[test]
    fn otel_points_spread_over_the_series_too() {
        let mut spec = spec(Kind::MetricsOtel);
        spec.series = 3000;
        spec.records = 40;
        spec.events_per_record = 25;
        spec.pool_size = 3;
        spec.gzip = true;
        let (pool, distinct, points) = series_of_pool(&spec);
        assert_eq!(points, 3000);
        assert_eq!(distinct.len(), 3000);
        assert_eq!(pool.series, Some(3000));
    }

    #[test]
    fn a_small_pool_holds_as_many_series_as_points() {
        let mut spec = spec(Kind::MetricsJson);
        spec.series = 1_000_000;
        spec.records = 10;
        spec.events_per_record = 100;
        let (pool, distinct, points) = series_of_pool(&spec);
        assert_eq!(points, 2000);
        assert_eq!(distinct.len(), 2000);
        assert_eq!(pool.series, Some(2000));
    }

    #[test]
    fn points_spread_evenly_over_the_series() {
        let mut spec = spec(Kind::MetricsJson);
        spec.series = 300;
        spec.records = 10;
        spec.events_per_record = 100;
        spec.pool_size = 3;
        let pool = build_pool(&spec).expect("pool");
        let mut counts: BTreeMap<SeriesKey, u32> = BTreeMap::new();
        for payload in &pool.payloads {
            let body = parsed_body(payload, &Rng::new(12).request_id(), false);
            for point in points_of(Kind::MetricsJson, &body) {
                *counts.entry(point).or_default() += 1;
            }
        }
        // 3000 points over 300 series: 10 each.
        assert_eq!(counts.len(), 300);
        assert!(counts.values().all(|&count| count == 10), "{counts:?}");
    }

    #[test]
    fn the_seed_fixes_which_series_each_point_has() {
        let mut spec = spec(Kind::MetricsJson);
        spec.series = 50_000;
        spec.records = 2;
        spec.events_per_record = 50;
        let series = |spec: &PoolSpec| {
            let pool = build_pool(spec).expect("pool");
            let body = parsed_body(&pool.payloads[1], &Rng::new(13).request_id(), false);
            points_of(spec.kind, &body)
        };
        let first = series(&spec);
        assert_eq!(first, series(&spec));
        spec.seed = 43;
        assert_ne!(first, series(&spec));
    }

    #[test]
    fn series_numbers_map_to_distinct_label_sets_up_to_the_maximum() {
        // Per metric, instance numbers near both ends of the range of --series 10000000.
        let top = crate::series::MAX_SERIES / METRICS.len() as u64;
        for def in &METRICS {
            let mut seen = HashSet::new();
            for instance in (0..60_000).chain(top - 20_000..top) {
                let labels: Vec<String> = def
                    .dimensions
                    .iter()
                    .map(|name| dimension_value(name, instance))
                    .collect();
                assert!(seen.insert(labels), "{} {instance}", def.name);
            }
        }
        let names: HashSet<(&str, &str)> = METRICS
            .iter()
            .map(|def| (def.namespace, def.name))
            .collect();
        assert_eq!(names.len(), METRICS.len());
    }

    #[test]
    fn data_points_are_counted_exactly_in_cut_bodies() {
        // With --request-size the last record of a body is cut down: the count follows.
        for kind in [Kind::MetricsJson, Kind::MetricsOtel] {
            let mut spec = spec(kind);
            spec.request_size = Some(300_000);
            spec.events_per_record = 37;
            spec.pool_size = 3;
            let (pool, _, points) = series_of_pool(&spec);
            let total: u64 = pool.payloads.iter().map(|payload| payload.events).sum();
            assert_eq!(points, total);
            assert!(
                pool.payloads.iter().any(|payload| payload.events % 37 != 0),
                "{kind:?}: some body ends in a cut record"
            );
        }
    }

    #[test]
    fn series_out_of_range_are_refused() {
        let mut spec = spec(Kind::MetricsJson);
        spec.series = 0;
        assert!(build_pool(&spec).is_err());
        spec.series = crate::series::MAX_SERIES + 1;
        assert!(build_pool(&spec).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(1_763_719_200_000), (2025, 11, 21));
        assert_eq!(civil_date(951_782_400_000), (2000, 2, 29));
    }
}
