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
//!   breaker per sink and a per-sink record of committed deliveries;
//! - [`dedup`]: that record's bounded window; [`template`]: keys, subjects, topics.

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

use bytes::Bytes;

use crate::event::Delivery;
use crate::routing::{EventFacts, RequestRouter, SinkSet};

/// Name of the dead-letter table (`{table}` in templates).
pub const TABLE_DEAD_LETTER: &str = "dead_letter";
/// Name of the events table.
pub const TABLE_EVENTS: &str = "events";

/// What is known of one event line besides its bytes: its place in the delivery and
/// the facts templates and routes use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMeta {
    /// Offset just past the line's `\n` in its [`LineChunk::bytes`].
    pub end: usize,
    /// Position of the event's record in the request.
    pub record_index: u32,
    /// Position of the event among its record's events.
    pub event_index: u32,
    /// `log`, `metric`, `record` or `dead_letter`.
    pub kind: &'static str,
    /// The event's format, if it has one.
    pub format: Option<&'static str>,
    /// Log group of a `log` event.
    pub log_group: Option<Arc<str>>,
    /// Namespace of a `metric` event.
    pub namespace: Option<Arc<str>>,
    /// EventBridge source of a `record` event.
    pub source: Option<Arc<str>>,
    /// EventBridge detail-type of a `record` event.
    pub detail_type: Option<Arc<str>>,
    /// The sinks the event was routed to.
    pub sinks: SinkSet,
}

/// A delivery's NDJSON lines with one [`EventMeta`] per line, in chunks of whole
/// lines (see [`CHUNK_BYTES`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventLines {
    /// The chunks, in order.
    pub chunks: Vec<LineChunk>,
}

/// Lines of one chunk; [`EventMeta::end`] offsets count from the chunk's start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineChunk {
    /// The lines, each ending in `\n`.
    pub bytes: Bytes,
    /// One entry per line, in order.
    pub metas: Vec<EventMeta>,
}

/// Lines are cut into chunks of about this size (whole records' lines, so a chunk
/// may run over by one record's events). A 64 MiB delivery makes several hundred
/// MB of lines: in one buffer, that buffer is mapped fresh from the kernel for every
/// such delivery (the allocator maps anything above 32 MiB on its own and unmaps it
/// when freed), and page faults and zeroing took a quarter of the time. Chunks this
/// size are reused by the allocator from one delivery to the next.
pub const CHUNK_BYTES: usize = 4 << 20;

impl EventLines {
    /// Lines in one chunk.
    #[must_use]
    pub fn single(bytes: Bytes, metas: Vec<EventMeta>) -> Self {
        Self {
            chunks: vec![LineChunk { bytes, metas }],
        }
    }

    /// Number of events.
    #[must_use]
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|chunk| chunk.metas.len()).sum()
    }

    /// Whether there are no events.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(|chunk| chunk.metas.is_empty())
    }

    /// Bytes of all lines.
    #[must_use]
    pub fn byte_len(&self) -> usize {
        self.chunks.iter().map(|chunk| chunk.bytes.len()).sum()
    }

    /// The chunks' bytes, for writing them out in order.
    pub fn byte_chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter().map(|chunk| &chunk.bytes)
    }

    /// Every line, concatenated (a copy; for tests and small outputs).
    #[must_use]
    pub fn concat(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.byte_len());
        for chunk in self.byte_chunks() {
            all.extend_from_slice(chunk);
        }
        all
    }

    /// Each event's metadata and line (without its `\n`).
    pub fn iter(&self) -> impl Iterator<Item = (&EventMeta, &[u8])> {
        self.chunks.iter().flat_map(LineChunk::iter)
    }

    /// Each event's metadata and line (without its `\n`), sharing the chunk's bytes.
    pub fn iter_shared(&self) -> impl Iterator<Item = (&EventMeta, Bytes)> {
        self.chunks.iter().flat_map(|chunk| {
            chunk
                .iter()
                .map(|(meta, line)| (meta, chunk.bytes.slice_ref(line)))
        })
    }
}

impl LineChunk {
    /// Each event's metadata and line (without its `\n`).
    pub fn iter(&self) -> impl Iterator<Item = (&EventMeta, &[u8])> {
        let mut start = 0;
        self.metas.iter().map(move |meta| {
            let line = &self.bytes[start..meta.end.saturating_sub(1).max(start)];
            start = meta.end;
            (meta, line)
        })
    }
}

impl EventLines {
    /// Splits the lines by the sinks their events are routed to. Returns each sink's
    /// lines (the same bytes shared, not copied, when every event goes to the same
    /// sinks), the number of events routed nowhere, which are dropped, and how many
    /// bytes the split copies hold beyond the lines' own size (they are held until
    /// the sinks have them).
    #[must_use]
    pub fn route(mut self, router: &RequestRouter<'_>) -> (Vec<(usize, EventLines)>, usize, usize) {
        let fixed = router.fixed();
        let mut union = SinkSet::default();
        let mut uniform = true;
        let mut dropped = 0;
        for meta in self
            .chunks
            .iter_mut()
            .flat_map(|chunk| chunk.metas.iter_mut())
        {
            meta.sinks = match fixed {
                Some(sinks) => sinks,
                None => router.route(&EventFacts {
                    kind: meta.kind,
                    format: meta.format,
                    log_group: meta.log_group.as_deref(),
                    namespace: meta.namespace.as_deref(),
                    source: meta.source.as_deref(),
                    detail_type: meta.detail_type.as_deref(),
                }),
            };
            uniform &= union.is_empty() || meta.sinks == union;
            union.extend(meta.sinks);
            dropped += usize::from(meta.sinks.is_empty());
        }
        if self.is_empty() || union.is_empty() {
            return (Vec::new(), dropped, 0);
        }
        if uniform && dropped == 0 {
            // Every sink shares the bytes; the last one takes the metadata too.
            let mut sinks: Vec<usize> = union.iter().collect();
            let last = sinks.pop().expect("the union is not empty");
            let mut shared: Vec<(usize, EventLines)> =
                sinks.into_iter().map(|sink| (sink, self.clone())).collect();
            shared.push((last, self));
            return (shared, 0, 0);
        }
        let per_sink: Vec<(usize, EventLines)> = union
            .iter()
            .map(|sink| {
                let chunks = self
                    .chunks
                    .iter()
                    .map(|chunk| {
                        let mut bytes = Vec::new();
                        let mut metas = Vec::new();
                        for (meta, line) in chunk.iter() {
                            if meta.sinks.contains(sink) {
                                bytes.extend_from_slice(line);
                                bytes.push(b'\n');
                                metas.push(EventMeta {
                                    end: bytes.len(),
                                    ..meta.clone()
                                });
                            }
                        }
                        LineChunk {
                            bytes: bytes.into(),
                            metas,
                        }
                    })
                    .filter(|chunk| !chunk.metas.is_empty())
                    .collect();
                (sink, EventLines { chunks })
            })
            .collect();
        let copies: usize = per_sink.iter().map(|(_, lines)| lines.byte_len()).sum();
        (per_sink, dropped, copies.saturating_sub(self.byte_len()))
    }
}

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

    /// Commits a batch; resolves once it is durable.
    ///
    /// # Errors
    ///
    /// [`SinkError`] when the batch was not committed; nothing of it counts.
    pub async fn commit(&self, batch: &SinkBatch) -> Result<Committed, SinkError> {
        match self {
            Self::File(sink) => sink.commit_batch(batch).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_splits_lines_per_sink_and_shares_when_uniform() {
        use crate::routing::{Match, RequestFacts, Route, Router};
        let attributes = crate::server::contract::CommonAttributes::new();
        let request = RequestFacts {
            path: "/",
            delivery_stream: None,
            source_arn: None,
            access_key: None,
            common_attributes: &attributes,
        };
        let lines = EventLines::single(
            Bytes::from_static(b"log1\nmetric\nlog2\n"),
            vec![
                EventMeta {
                    end: 5,
                    kind: "log",
                    ..EventMeta::default()
                },
                EventMeta {
                    end: 12,
                    kind: "metric",
                    ..EventMeta::default()
                },
                EventMeta {
                    end: 17,
                    kind: "log",
                    ..EventMeta::default()
                },
            ],
        );
        let router = Router {
            routes: vec![Route {
                name: "metrics".into(),
                matcher: Match {
                    kinds: vec!["metric".into()],
                    ..Match::default()
                },
                sinks: SinkSet::of(&[1, 2]),
                continue_matching: false,
            }],
            default_sinks: SinkSet::of(&[0]),
        };
        let (per_sink, dropped, copied) = lines.clone().route(&router.for_request(&request));
        assert_eq!(dropped, 0);
        assert_eq!(copied, 7, "the metric line is held twice, once per sink");
        let text = |lines: &EventLines| String::from_utf8(lines.concat()).unwrap();
        assert_eq!(per_sink.len(), 3);
        assert_eq!(
            (per_sink[0].0, text(&per_sink[0].1)),
            (0, "log1\nlog2\n".to_owned())
        );
        assert_eq!(
            (per_sink[1].0, text(&per_sink[1].1)),
            (1, "metric\n".to_owned())
        );
        let metric = &per_sink[2].1.chunks[0].metas[0];
        assert_eq!(metric.end, 7);
        assert!(metric.sinks.contains(2));

        let everything = Router::everything_to(SinkSet::of(&[0, 1]));
        let (per_sink, _, copied) = lines.clone().route(&everything.for_request(&request));
        assert_eq!(copied, 0, "shared");
        assert_eq!(per_sink.len(), 2);
        assert_eq!(
            per_sink[0].1.chunks[0].bytes.as_ptr(),
            lines.chunks[0].bytes.as_ptr(),
            "shared, not copied"
        );

        let nowhere = Router::default();
        let (per_sink, dropped, _) = lines.route(&nowhere.for_request(&request));
        assert!(per_sink.is_empty());
        assert_eq!(dropped, 3);
    }

    #[test]
    fn event_lines_iterate_without_newlines() {
        let chunk = |text: &'static [u8], ends: &[usize]| LineChunk {
            bytes: Bytes::from_static(text),
            metas: ends
                .iter()
                .map(|&end| EventMeta {
                    end,
                    ..EventMeta::default()
                })
                .collect(),
        };
        let lines = EventLines {
            chunks: vec![
                chunk(b"{\"a\":1}\n\n{\"b\":2}\n", &[8, 9, 17]),
                chunk(b"c\n", &[2]),
            ],
        };
        let collected: Vec<&[u8]> = lines.iter().map(|(_, line)| line).collect();
        assert_eq!(collected, [&b"{\"a\":1}"[..], b"", b"{\"b\":2}", b"c"]);
        let shared: Vec<Bytes> = lines.iter_shared().map(|(_, line)| line).collect();
        assert_eq!(shared, collected);
        assert_eq!((lines.len(), lines.byte_len()), (4, 19));
        assert_eq!(lines.concat(), b"{\"a\":1}\n\n{\"b\":2}\nc\n");
    }
}
