//! Every way a delivery can fail, the HTTP status each one gets, and its outcome
//! label in metrics.
//!
//! Status choices follow how Firehose treats them
//! (<https://docs.aws.amazon.com/firehose/latest/dev/http_troubleshooting.html>):
//! every non-200 answer is retried, except 413, which Firehose treats as permanent
//! and never retries. So 413 is used only for a body over the configured size, never
//! for a transient cause; overload and shutdown get 503 so the batch comes back.

use axum::http::StatusCode;

use crate::admission::Overloaded;
use crate::decode::{DecodeError, PoolError};
use crate::firehose::EnvelopeError;
use crate::ingest::IngestError;
use crate::limits::{DecodeStop, InflateError};
use crate::sink::fanout::FanoutError;

// The outcome label values are the metrics' vocabulary (`crate::metrics`); each
// error variant names its own below.
pub use crate::metrics::{
    OUTCOME_BAD_REQUEST, OUTCOME_DUPLICATE, OUTCOME_OK, OUTCOME_OVERLOADED, OUTCOME_SHUTTING_DOWN,
    OUTCOME_STORAGE_ERROR, OUTCOME_TOO_LARGE, OUTCOME_TOO_SLOW, OUTCOME_UNAUTHORIZED, OUTCOMES,
};

/// Why a delivery was not accepted. The `Display` text is the reply's `errorMessage`:
/// it must help the sender and must never contain a secret or a local path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// No `X-Amz-Firehose-Access-Key` header while keys are required.
    #[error("missing X-Amz-Firehose-Access-Key header")]
    MissingAccessKey,
    /// The access key matches no configured key.
    #[error("invalid access key")]
    InvalidAccessKey,
    /// `X-Amz-Firehose-Protocol-Version` is absent or not `1.0`.
    #[error("unsupported X-Amz-Firehose-Protocol-Version {0:?}; expected \"1.0\"")]
    ProtocolVersion(String),
    /// No usable `X-Amz-Firehose-Request-Id` header.
    #[error("missing or unreadable X-Amz-Firehose-Request-Id header")]
    MissingRequestId,
    /// The request id is too long or holds characters ids never have.
    #[error("invalid X-Amz-Firehose-Request-Id: {0}")]
    InvalidRequestId(&'static str),
    /// The URL path is longer than any Firehose endpoint URL.
    #[error("URL path is longer than {limit} bytes")]
    PathTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body's `requestId` differs from the header's.
    #[error("body requestId does not match the X-Amz-Firehose-Request-Id header")]
    RequestIdMismatch,
    /// `X-Amz-Firehose-Source-Arn` is not a delivery stream ARN.
    #[error("invalid X-Amz-Firehose-Source-Arn: {0}")]
    SourceArn(&'static str),
    /// `X-Amz-Firehose-Common-Attributes` is not `{"commonAttributes":{...}}`.
    #[error("invalid X-Amz-Firehose-Common-Attributes: {0}")]
    CommonAttributes(String),
    /// A `Content-Encoding` other than `gzip` or `identity`.
    #[error("unsupported Content-Encoding {0:?}; Firehose sends gzip or nothing")]
    ContentEncoding(String),
    /// The body as received is over the limit.
    #[error("request body exceeds the limit of {limit} bytes; lower the stream's buffer size")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The body after gzip inflation is over the limit.
    #[error(
        "inflated request body exceeds the limit of {limit} bytes; lower the stream's buffer size"
    )]
    InflatedTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// `Content-Encoding: gzip` but the body is not valid gzip.
    #[error("request body is not valid gzip: {0}")]
    Gzip(String),
    /// The body could not be read from the connection.
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// A header Hydrant reads is not usable as sent (not UTF-8, repeated, or not
    /// the kind of value it must be), so it is neither ignored nor guessed at.
    #[error("invalid {name} header: {reason}")]
    InvalidHeader {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The body arrived too slowly (see `server::listener`); the connection is
    /// closed after the answer.
    #[error("{0}; connection closed, retry later")]
    BodyTooSlow(String),
    /// The body is not a delivery request.
    #[error("{0}")]
    Envelope(String),
    /// More records than the configured limit.
    #[error("request has more than {limit} records")]
    TooManyRecords {
        /// The limit in force.
        limit: usize,
    },
    /// A record could not be decoded.
    #[error("{0}")]
    Record(String),
    /// The records decode into more than the delivery may make.
    #[error(
        "records decode into more than the limit of {limit} bytes of events for a delivery this size; lower the stream's buffer size or raise max-decoded-bytes"
    )]
    DecodedTooLarge {
        /// The delivery's allowance in bytes.
        limit: u64,
    },
    /// Admission control: too many bytes in flight.
    #[error("server is at its in-flight limit; retry later")]
    Overloaded,
    /// The server is shutting down.
    #[error("server is shutting down; retry later")]
    ShuttingDown,
    /// A sink the delivery was routed to failed after its retries; sinks that did
    /// commit it will not be written again on Firehose's retry.
    #[error("sink {name:?} did not store the delivery; retry later")]
    SinkFailed {
        /// The sink's name.
        name: String,
        /// What the sink said: for the log only, as it may name local paths or
        /// hosts ([`ApiError::log_detail`]).
        cause: String,
    },
    /// A sink the delivery was routed to is marked down by its circuit breaker.
    #[error("sink {0:?} is unavailable; retry later")]
    SinkDown(String),
    /// The sinks did not all answer within the delivery deadline.
    #[error("sinks did not answer within {0} s; retry later")]
    SinkDeadline(u64),
}

impl ApiError {
    /// The HTTP status this failure is answered with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingAccessKey | Self::InvalidAccessKey => StatusCode::UNAUTHORIZED,
            Self::ProtocolVersion(_)
            | Self::MissingRequestId
            | Self::InvalidRequestId(_)
            | Self::PathTooLong { .. }
            | Self::RequestIdMismatch
            | Self::SourceArn(_)
            | Self::CommonAttributes(_)
            | Self::ContentEncoding(_)
            | Self::Gzip(_)
            | Self::BodyRead(_)
            | Self::InvalidHeader { .. }
            | Self::Envelope(_)
            | Self::TooManyRecords { .. }
            | Self::Record(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. }
            | Self::InflatedTooLarge { .. }
            | Self::DecodedTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            // Firehose retries every status but 413, so a slow body comes back.
            Self::BodyTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded
            | Self::ShuttingDown
            | Self::SinkFailed { .. }
            | Self::SinkDown(_)
            | Self::SinkDeadline(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `outcome` label value of this failure in metrics (a fixed set).
    #[must_use]
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::MissingAccessKey | Self::InvalidAccessKey => OUTCOME_UNAUTHORIZED,
            Self::BodyTooLarge { .. }
            | Self::InflatedTooLarge { .. }
            | Self::DecodedTooLarge { .. } => OUTCOME_TOO_LARGE,
            Self::Overloaded => OUTCOME_OVERLOADED,
            Self::BodyTooSlow(_) => OUTCOME_TOO_SLOW,
            Self::ShuttingDown => OUTCOME_SHUTTING_DOWN,
            Self::SinkFailed { .. } | Self::SinkDown(_) | Self::SinkDeadline(_) => {
                OUTCOME_STORAGE_ERROR
            }
            _ => OUTCOME_BAD_REQUEST,
        }
    }

    /// What the log line of this failure adds to its `Display` text: the failing
    /// sink's own error, which the sender must not see (it may name local paths or
    /// hosts) but the operator needs.
    #[must_use]
    pub fn log_detail(&self) -> Option<&str> {
        match self {
            Self::SinkFailed { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

impl From<Overloaded> for ApiError {
    fn from(Overloaded: Overloaded) -> Self {
        Self::Overloaded
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::Overloaded(error) => error.into(),
            IngestError::Inflate(error) => error.into(),
            IngestError::Envelope(error) => error.into(),
            IngestError::RequestIdMismatch => Self::RequestIdMismatch,
            IngestError::Decode(error) => error.into(),
            IngestError::Pool(PoolError::Closed) => Self::ShuttingDown,
            // A decoder bug: the delivery is answered 400 rather than retried
            // forever into the same panic.
            IngestError::Pool(PoolError::Crashed) => Self::Record(error.to_string()),
            IngestError::Fanout(error) => error.into(),
        }
    }
}

impl From<InflateError> for ApiError {
    fn from(error: InflateError) -> Self {
        match error {
            InflateError::TooLarge { limit } => Self::InflatedTooLarge { limit },
            InflateError::Corrupt(reason) => Self::Gzip(reason),
        }
    }
}

impl From<EnvelopeError> for ApiError {
    fn from(error: EnvelopeError) -> Self {
        match error {
            EnvelopeError::TooManyRecords { limit } => Self::TooManyRecords { limit },
            EnvelopeError::Invalid(_) => Self::Envelope(error.to_string()),
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::Record { .. } => Self::Record(error.to_string()),
            DecodeError::Stopped(DecodeStop::TooLarge { limit }) => Self::DecodedTooLarge { limit },
            DecodeError::Stopped(DecodeStop::Overloaded) => Self::Overloaded,
        }
    }
}

impl From<FanoutError> for ApiError {
    fn from(error: FanoutError) -> Self {
        // The sink's own error may name local paths or hosts: it goes to the log,
        // and the sender learns which sink failed.
        match error {
            FanoutError::SinkDown(name) => Self::SinkDown(name),
            FanoutError::SinkFailed { name, error } => Self::SinkFailed {
                name,
                cause: error.to_string(),
            },
            FanoutError::Deadline(deadline) => Self::SinkDeadline(deadline.as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per variant: the status Firehose sees and the metrics outcome.
    #[test]
    fn every_variant_has_its_status_and_outcome() {
        let table: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::MissingAccessKey, 401, "unauthorized"),
            (ApiError::InvalidAccessKey, 401, "unauthorized"),
            (ApiError::ProtocolVersion("2.0".into()), 400, "bad_request"),
            (ApiError::MissingRequestId, 400, "bad_request"),
            (ApiError::InvalidRequestId("empty"), 400, "bad_request"),
            (ApiError::PathTooLong { limit: 1 }, 400, "bad_request"),
            (ApiError::DecodedTooLarge { limit: 1 }, 413, "too_large"),
            (ApiError::RequestIdMismatch, 400, "bad_request"),
            (ApiError::SourceArn("not an ARN"), 400, "bad_request"),
            (ApiError::CommonAttributes("x".into()), 400, "bad_request"),
            (ApiError::ContentEncoding("br".into()), 400, "bad_request"),
            (ApiError::BodyTooLarge { limit: 1 }, 413, "too_large"),
            (ApiError::InflatedTooLarge { limit: 1 }, 413, "too_large"),
            (ApiError::Gzip("x".into()), 400, "bad_request"),
            (ApiError::BodyRead("x".into()), 400, "bad_request"),
            (
                ApiError::InvalidHeader {
                    name: "content-length".into(),
                    reason: "not a number",
                },
                400,
                "bad_request",
            ),
            (ApiError::BodyTooSlow("x".into()), 408, "too_slow"),
            (ApiError::Envelope("x".into()), 400, "bad_request"),
            (ApiError::TooManyRecords { limit: 1 }, 400, "bad_request"),
            (ApiError::Record("x".into()), 400, "bad_request"),
            (ApiError::Overloaded, 503, "overloaded"),
            (ApiError::ShuttingDown, 503, "shutting_down"),
            (
                ApiError::SinkFailed {
                    name: "s3".into(),
                    cause: "x".into(),
                },
                503,
                "storage_error",
            ),
            (ApiError::SinkDown("nats".into()), 503, "storage_error"),
            (ApiError::SinkDeadline(60), 503, "storage_error"),
        ];
        for (error, status, outcome) in table {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.outcome(), outcome, "{error:?}");
            assert!(OUTCOMES.contains(&outcome), "{outcome} starts at zero");
        }
    }

    #[test]
    fn conversions_keep_the_status_class() {
        assert_eq!(
            ApiError::from(InflateError::TooLarge { limit: 5 }).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ApiError::from(InflateError::Corrupt("x".into())).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::from(EnvelopeError::TooManyRecords { limit: 2 }),
            ApiError::TooManyRecords { limit: 2 }
        );
        assert_eq!(
            ApiError::from(DecodeError::Stopped(DecodeStop::TooLarge { limit: 9 })),
            ApiError::DecodedTooLarge { limit: 9 }
        );
        assert_eq!(
            ApiError::from(DecodeError::Stopped(DecodeStop::Overloaded)),
            ApiError::Overloaded
        );
        assert_eq!(
            ApiError::from(DecodeError::Record {
                index: 3,
                reason: crate::decode::RecordError::NoEnvelope
            })
            .status(),
            StatusCode::BAD_REQUEST
        );
        let failed = FanoutError::SinkFailed {
            name: "file".into(),
            error: crate::sink::SinkError::Write("disk".into()),
        };
        let converted = ApiError::from(failed);
        assert!(
            matches!(&converted, ApiError::SinkFailed { name, .. } if name == "file"),
            "{converted:?}"
        );
        assert_eq!(
            converted.log_detail(),
            Some("storage write failed: disk"),
            "the log keeps what the sink said"
        );
        assert_eq!(
            ApiError::from(FanoutError::Deadline(std::time::Duration::from_secs(60))).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn storage_messages_do_not_leak_local_details() {
        let message = ApiError::from(FanoutError::SinkFailed {
            name: "file".into(),
            error: crate::sink::SinkError::Write("/var/lib/hydrant: No space left".into()),
        })
        .to_string();
        assert!(!message.contains("/var/lib"));
        assert_eq!(
            OUTCOMES.len(),
            OUTCOMES
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
        );
    }
}
