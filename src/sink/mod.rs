//! Sinks: where decoded events go. A sink answers a commit only once the batch is
//! durable (or acknowledged by the service behind it), because Hydrant's 200 to
//! Firehose depends on it.
//!
//! - [`file`]: NDJSON segment files under the data directory (the embedded default);
//! - [`s3`]: one object per delivery in S3 or an S3-compatible store;
//! - [`nats`]: NATS JetStream, one message per event, de-duplicated by message id;
//! - [`kafka`]: Kafka, one record per event;
//! - [`stdout`] and [`discard`]: for piping and debugging, and for benchmarks;
//! - [`fanout`]: sends a delivery's batches to their sinks with retries, a circuit
//!   breaker per sink and a per-sink window of committed deliveries;
//! - [`dedup`]: that window, and how it and the sinks' own keys keep Firehose's
//!   retries from being stored twice; [`template`]: keys, subjects, topics.

pub mod dedup;
pub mod discard;
pub mod fanout;
pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "s3")]
pub mod s3;
pub mod stdout;
pub mod template;

use std::sync::Arc;

use crate::event::Delivery;
pub use crate::event::lines::{CHUNK_BYTES, EventLines, EventMeta, LineChunk};

/// Name of the dead-letter table (`{table}` in templates).
pub const TABLE_DEAD_LETTER: &str = "dead_letter";
/// Name of the events table.
pub const TABLE_EVENTS: &str = "events";

/// What one sink receives for one delivery: the events routed to it.
#[derive(Debug, Clone)]
pub struct SinkBatch {
    /// The delivery's facts (request id, stream, path, time…).
    pub delivery: Arc<Delivery>,
    /// Identifies the delivery across Firehose's retries (source ARN + request id).
    pub dedup_key: dedup::DeliveryKey,
    /// Decoded events.
    pub events: EventLines,
    /// Records that could not be decoded.
    pub dead_letters: EventLines,
}

impl SinkBatch {
    /// Total events, dead letters included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.events.len() + self.dead_letters.len()
    }

    /// Whether the batch holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total bytes of lines.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.events.byte_len() + self.dead_letters.byte_len()
    }

    /// The two tables with their names.
    pub fn tables(&self) -> [(&'static str, &EventLines); 2] {
        [
            (TABLE_EVENTS, &self.events),
            (TABLE_DEAD_LETTER, &self.dead_letters),
        ]
    }
}

/// What a successful commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The events are durably stored.
    Written {
        /// Number of events stored.
        events: usize,
    },
    /// The delivery was already committed earlier, or is committed by an identical
    /// request that this one waited for; nothing was written again.
    Duplicate,
}

/// Why a sink could not commit a batch. Nothing of the batch counts as committed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// Writing or syncing failed; the partial write was rolled back.
    #[error("storage write failed: {0}")]
    Write(String),
    /// The sink's configuration is not one it can work with (found when it is
    /// opened; most mistakes are caught earlier, when the configuration is read).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The sink has stopped (shutdown) and takes no more batches.
    #[error("storage is closed")]
    Closed,
    /// The service behind the sink did not take the batch (down, timed out,
    /// refused); retrying may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The sink found its storage gone or damaged (a data directory deleted or
    /// replaced) and takes nothing until a health probe finds it repaired: the
    /// fan-out marks it down at once instead of retrying.
    #[error("{0}")]
    Down(String),
}

/// A configured sink. Static dispatch over the kinds, as there are few.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per configured sink, made once at startup; its size does not matter"
)]
pub enum Sink {
    /// Local NDJSON files.
    File(file::FileSink),
    /// S3 or S3-compatible object storage.
    #[cfg(feature = "s3")]
    S3(s3::S3Sink),
    /// NATS JetStream.
    #[cfg(feature = "nats")]
    Nats(nats::NatsSink),
    /// Kafka.
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaSink),
    /// Standard output.
    Stdout(stdout::StdoutSink),
    /// Counts and forgets.
    Discard(discard::DiscardSink),
}

impl Sink {
    /// The sink's type name, as in configuration.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            #[cfg(feature = "s3")]
            Self::S3(_) => "s3",
            #[cfg(feature = "nats")]
            Self::Nats(_) => "nats",
            #[cfg(feature = "kafka")]
            Self::Kafka(_) => "kafka",
            Self::Stdout(_) => "stdout",
            Self::Discard(_) => "discard",
        }
    }

    /// Whether a sink of this type takes the node out of service (`/readyz`
    /// answers 503) while its circuit breaker has it down, unless its
    /// `gates_readiness` setting says otherwise.
    ///
    /// A load balancer that takes a node out helps only when the problem is that
    /// node's own. Local sinks (`file`, `stdout`) are the node's own: another node
    /// can take its traffic. A network sink is usually a backbone that every node
    /// shares (S3, NATS, Kafka): when it is down it is down for all of them, and
    /// taking every node out would refuse even the streams routed to healthy sinks.
    /// A delivery routed to a down sink is answered 503 at once anyway, and Firehose
    /// retries it.
    #[must_use]
    pub fn gates_readiness_by_default(kind: &str) -> bool {
        matches!(kind, "file" | "stdout")
    }

    /// The `action` label values of `hydrant_sink_reshaped_total` a sink of this
    /// type can count (see [`template`]).
    #[must_use]
    pub fn reshape_actions(&self) -> &'static [&'static str] {
        match self {
            #[cfg(feature = "s3")]
            Self::S3(_) => &[template::RESHAPE_HASHED_KEY],
            #[cfg(feature = "nats")]
            Self::Nats(_) => &[template::RESHAPE_SPLIT, template::RESHAPE_HASHED_NAME],
            #[cfg(feature = "kafka")]
            Self::Kafka(_) => &[
                template::RESHAPE_SPLIT,
                template::RESHAPE_HASHED_NAME,
                template::RESHAPE_HASHED_KEY,
            ],
            _ => &[],
        }
    }

    /// The duplicate window the sink keeps itself, if it does: a file sink's, which
    /// its journal makes durable and its recovery seeded. The fan-out makes one for
    /// every other sink.
    #[must_use]
    pub fn dedup_window(&self) -> Option<Arc<dedup::SinkWindow>> {
        match self {
            Self::File(sink) => Some(Arc::clone(sink.window())),
            _ => None,
        }
    }

    /// Commits a batch whose delivery `claim` holds in this sink's window (the
    /// duplicate check is done); resolves once it is durable.
    ///
    /// # Errors
    ///
    /// [`SinkError`] when the batch was not committed; nothing of it counts.
    pub async fn commit(
        &self,
        batch: &SinkBatch,
        claim: &dedup::Claim,
    ) -> Result<Committed, SinkError> {
        match self {
            Self::File(sink) => sink.commit_claimed(batch, claim).await,
            #[cfg(feature = "s3")]
            Self::S3(sink) => sink.commit(batch).await.map(|()| written(batch)),
            #[cfg(feature = "nats")]
            Self::Nats(sink) => sink.commit(batch).await.map(|()| written(batch)),
            #[cfg(feature = "kafka")]
            Self::Kafka(sink) => sink.commit(batch).await.map(|()| written(batch)),
            Self::Stdout(sink) => sink.commit(batch).await.map(|()| written(batch)),
            Self::Discard(sink) => {
                sink.commit(batch);
                Ok(written(batch))
            }
        }
    }

    /// Checks that the service behind the sink answers, or for the file sink that
    /// its data directory is intact (rebuilding it if it was found damaged), for the
    /// circuit breaker and readiness.
    ///
    /// # Errors
    ///
    /// [`SinkError::Unavailable`] or [`SinkError::Down`] when it does not.
    pub async fn probe(&self) -> Result<(), SinkError> {
        match self {
            Self::File(sink) => sink.probe().await,
            Self::Stdout(_) | Self::Discard(_) => Ok(()),
            #[cfg(feature = "s3")]
            Self::S3(sink) => sink.probe().await,
            #[cfg(feature = "nats")]
            Self::Nats(sink) => sink.probe().await,
            #[cfg(feature = "kafka")]
            Self::Kafka(sink) => sink.probe().await,
        }
    }

    /// Finishes pending work and releases the sink.
    pub async fn close(&self) {
        match self {
            Self::File(sink) => sink.close().await,
            Self::Stdout(sink) => sink.flush().await,
            _ => {}
        }
    }
}

fn written(batch: &SinkBatch) -> Committed {
    Committed::Written {
        events: batch.len(),
    }
}
