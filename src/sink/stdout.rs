//! The `stdout` sink: every event as an NDJSON line on standard output, for piping
//! into other tools and for debugging. A commit returns once the lines are written
//! and flushed to the pipe (not fsync'd: a pipe has no durability to offer).

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{SinkBatch, SinkError};

/// Configuration of a `stdout` sink (no options).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

impl super::SinkSettings for StdoutConfig {}

/// Writes to standard output; one delivery's lines are never interleaved with
/// another's.
#[derive(Debug)]
pub struct StdoutSink {
    out: Mutex<tokio::io::Stdout>,
}

impl StdoutSink {
    /// A sink writing to this process's standard output.
    #[must_use]
    pub fn new(_config: &StdoutConfig) -> Self {
        Self {
            out: Mutex::new(tokio::io::stdout()),
        }
    }

    /// Writes the batch's events and dead letters.
    ///
    /// # Errors
    ///
    /// [`SinkError::Unavailable`] when standard output is closed.
    pub async fn commit(&self, batch: &SinkBatch) -> Result<(), SinkError> {
        let mut out = self.out.lock().await;
        for chunk in batch
            .tables()
            .iter()
            .flat_map(|(_, lines)| lines.byte_chunks())
        {
            out.write_all(chunk)
                .await
                .map_err(|error| SinkError::Unavailable(format!("stdout: {error}")))?;
        }
        out.flush()
            .await
            .map_err(|error| SinkError::Unavailable(format!("stdout: {error}")))
    }

    /// Flushes what is buffered.
    pub async fn flush(&self) {
        let _ = self.out.lock().await.flush().await;
    }
}
