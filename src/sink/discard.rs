//! The `discard` sink: accepts everything and keeps nothing. For benchmarks (it
//! measures Hydrant without a storage cost) and for dropping what a route selects.

use serde::Deserialize;

use super::SinkBatch;

/// Configuration of a `discard` sink (no options).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiscardConfig {}

impl super::SinkSettings for DiscardConfig {}

/// Counts are kept by the fan-out's per-sink metrics; nothing else happens.
#[derive(Debug, Default)]
pub struct DiscardSink;

impl DiscardSink {
    /// Takes the batch and forgets it.
    pub fn commit(&self, _batch: &SinkBatch) {}
}
