//! Why decoding failed: [`RecordError`] for one record (its `Display` text is the
//! dead letter's `reason`, or the 400 reply's message with `bad_records = "reject"`),
//! and [`DecodeError`] for a whole request.

use crate::limits::{DecodeStop, InflateError};

use super::otel::OtelError;

/// Why a record could not be decoded. Every decoder returns this; the texts are
/// what senders read in dead letters and replies, so they name the format and the
/// fault in the sender's terms. A JSON parser's own report is kept as its text
/// (`detail`), with the line and column it gives.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// The record's `data` is not base64.
    #[error("data is not valid base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// The record starts like gzip but does not inflate (or inflates past the cap).
    #[error("record is gzip but cannot be inflated: {0}")]
    Gzip(#[source] InflateError),

    /// Not a CloudWatch Logs subscription envelope (not JSON, a field missing or of
    /// the wrong type).
    #[error("invalid CloudWatch Logs envelope: {detail}")]
    Envelope {
        /// The JSON parser's report.
        detail: String,
    },
    /// An envelope whose `messageType` is neither data nor control.
    #[error("unknown CloudWatch Logs messageType {0:?}")]
    UnknownMessageType(String),
    /// An envelope naming a log group, stream, owner or filter longer than
    /// CloudWatch Logs allows.
    #[error("{what} is longer than {max} characters, the CloudWatch Logs limit")]
    NameTooLong {
        /// Which name.
        what: &'static str,
        /// The limit, in characters.
        max: usize,
    },
    /// An envelope naming more subscription filters than CloudWatch Logs can.
    #[error("more than {max} subscriptionFilters ({count})")]
    TooManyFilters {
        /// Filters named.
        count: usize,
        /// The most accepted.
        max: usize,
    },
    /// A record without any envelope.
    #[error("empty record: no CloudWatch Logs envelope")]
    NoEnvelope,
    /// Message lines (Firehose's message extraction) that are not UTF-8.
    #[error("message lines are not UTF-8: {0}")]
    MessagesNotUtf8(#[source] std::str::Utf8Error),

    /// A Metric Streams JSON data point that does not parse.
    #[error("invalid Metric Streams JSON data point: {detail}")]
    MetricPoint {
        /// The JSON parser's report.
        detail: String,
    },
    /// A record without any Metric Streams JSON data point.
    #[error("empty record: no Metric Streams JSON data point")]
    NoMetricPoint,
    /// An OpenTelemetry record's framing, protobuf or version is wrong.
    #[error(transparent)]
    Otel(#[from] OtelError),

    /// An EventBridge event that is not JSON.
    #[error("invalid EventBridge event: {detail}")]
    Event {
        /// The JSON parser's report.
        detail: String,
    },
    /// An EventBridge event that is JSON but not an object.
    #[error("EventBridge event is not a JSON object")]
    EventNotObject,
    /// An EventBridge event without a string `source` or `detail-type`, or without
    /// `detail`.
    #[error("EventBridge event lacks source, detail-type or detail")]
    EventIncomplete,
    /// An EventBridge event whose whitespace could not be taken out.
    #[error("EventBridge event cannot be put on one line")]
    EventNotOneLine,

    /// A direct VPC flow log record that is not UTF-8.
    #[error("flow log record is not UTF-8: {0}")]
    FlowLogNotUtf8(#[source] std::str::Utf8Error),
    /// A line that does not fit the flow log format (the line's start, quoted).
    #[error("not a flow log line of the configured format: {0:?}")]
    NotFlowLog(String),
    /// A direct VPC flow log record without any line.
    #[error("empty record: no flow log line")]
    NoFlowLog,
}

/// Why a request's records were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A record could not be decoded (only with [`super::BadRecords::Reject`]).
    #[error("record {index}: {reason}")]
    Record {
        /// Position of the record in the request.
        index: usize,
        /// What was wrong.
        #[source]
        reason: RecordError,
    },
    /// The delivery's [`crate::limits::DecodeBudget`] stopped decoding.
    #[error("{0}")]
    Stopped(#[from] DecodeStop),
}
