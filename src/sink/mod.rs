//! Sinks: where decoded events go. A sink answers a commit only once the batch is
//! durable, because Hydrant's 200 to Firehose depends on it.
//!
//! - [`file`]: NDJSON segment files under the data directory (the embedded default).
//! - [`dedup`]: the window of committed deliveries each sink keeps, so that
//!   Firehose's retries of a committed batch are not stored twice.

pub mod dedup;
pub mod file;

/// One delivery's events, ready to commit.
#[derive(Debug)]
pub struct Batch {
    /// Identifies the delivery across Firehose's retries (source ARN + request id).
    pub dedup_key: String,
    /// NDJSON lines, each ending in `\n`.
    pub lines: Vec<u8>,
    /// Number of events (lines) in `lines`.
    pub events: usize,
    /// Dead-letter entries (records that could not be decoded), as NDJSON lines.
    pub dead_letters: Vec<u8>,
}

/// What a successful commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The events are durably stored.
    Written {
        /// Number of events stored.
        events: usize,
    },
    /// The delivery was already committed earlier; nothing was written again.
    Duplicate,
}

/// Why a sink could not commit a batch. Nothing of the batch counts as committed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// Writing or syncing failed; the partial write was rolled back.
    #[error("storage write failed: {0}")]
    Write(String),
    /// The sink has stopped (shutdown) and takes no more batches.
    #[error("storage is closed")]
    Closed,
}
