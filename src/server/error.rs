//! Every way a delivery can fail, the HTTP status each one gets, and its outcome
//! label in metrics.
//!
//! Status choices follow how Firehose treats them
//! (<https://docs.aws.amazon.com/firehose/latest/dev/http_troubleshooting.html>):
//! every non-200 answer is retried, except 413, which Firehose treats as permanent
//! and never retries. So 413 is used only for a body over the configured size, never
//! for a transient cause; overload and shutdown get 503 so the batch comes back.

use axum::http::StatusCode;

use crate::decode::DecodeError;
use crate::limits::InflateError;
use crate::server::contract::EnvelopeError;
use crate::sink::fanout::FanoutError;

/// Outcome label of a delivery stored now.
pub const OUTCOME_OK: &str = "ok";
/// Outcome label of a retried delivery that was already stored.
pub const OUTCOME_DUPLICATE: &str = "duplicate";

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
    /// Admission control: too many bytes in flight.
    #[error("server is at its in-flight limit; retry later")]
    Overloaded,
    /// The server is shutting down.
    #[error("server is shutting down; retry later")]
    ShuttingDown,
    /// A sink the delivery was routed to failed after its retries; sinks that did
    /// commit it will not be written again on Firehose's retry.
    #[error("sink {0:?} did not store the delivery; retry later")]
    SinkFailed(String),
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
            | Self::RequestIdMismatch
            | Self::SourceArn(_)
            | Self::CommonAttributes(_)
            | Self::ContentEncoding(_)
            | Self::Gzip(_)
            | Self::BodyRead(_)
            | Self::Envelope(_)
            | Self::TooManyRecords { .. }
            | Self::Record(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } | Self::InflatedTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Overloaded
            | Self::ShuttingDown
            | Self::SinkFailed(_)
            | Self::SinkDown(_)
            | Self::SinkDeadline(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `outcome` label value of this failure in metrics (a fixed set).
    #[must_use]
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::MissingAccessKey | Self::InvalidAccessKey => "unauthorized",
            Self::BodyTooLarge { .. } | Self::InflatedTooLarge { .. } => "too_large",
            Self::Overloaded => "overloaded",
            Self::ShuttingDown => "shutting_down",
            Self::SinkFailed(_) | Self::SinkDown(_) | Self::SinkDeadline(_) => "storage_error",
            _ => "bad_request",
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
        Self::Record(error.to_string())
    }
}

impl From<FanoutError> for ApiError {
    fn from(error: FanoutError) -> Self {
        // The sink's own error may name local paths or hosts: it goes to the log,
        // and the sender learns which sink failed.
        match error {
            FanoutError::SinkDown(name) => Self::SinkDown(name),
            FanoutError::SinkFailed { name, .. } => Self::SinkFailed(name),
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
            (ApiError::RequestIdMismatch, 400, "bad_request"),
            (ApiError::SourceArn("not an ARN"), 400, "bad_request"),
            (ApiError::CommonAttributes("x".into()), 400, "bad_request"),
            (ApiError::ContentEncoding("br".into()), 400, "bad_request"),
            (ApiError::BodyTooLarge { limit: 1 }, 413, "too_large"),
            (ApiError::InflatedTooLarge { limit: 1 }, 413, "too_large"),
            (ApiError::Gzip("x".into()), 400, "bad_request"),
            (ApiError::BodyRead("x".into()), 400, "bad_request"),
            (ApiError::Envelope("x".into()), 400, "bad_request"),
            (ApiError::TooManyRecords { limit: 1 }, 400, "bad_request"),
            (ApiError::Record("x".into()), 400, "bad_request"),
            (ApiError::Overloaded, 503, "overloaded"),
            (ApiError::ShuttingDown, 503, "shutting_down"),
            (ApiError::SinkFailed("s3".into()), 503, "storage_error"),
            (ApiError::SinkDown("nats".into()), 503, "storage_error"),
            (ApiError::SinkDeadline(60), 503, "storage_error"),
        ];
        for (error, status, outcome) in table {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.outcome(), outcome, "{error:?}");
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
        let failed = FanoutError::SinkFailed {
            name: "file".into(),
            error: crate::sink::SinkError::Write("disk".into()),
        };
        assert_eq!(ApiError::from(failed), ApiError::SinkFailed("file".into()));
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
    }
}
