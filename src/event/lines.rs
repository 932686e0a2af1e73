//! A delivery's decoded events as NDJSON lines, with what is known of each line
//! besides its bytes ([`EventMeta`]), cut into chunks of whole records
//! ([`LineChunk`]). Decoders write them ([`super::EventWriter`]), routing marks and
//! splits them per sink ([`SinkSet`]), and sinks read them.

use std::sync::Arc;

use bytes::Bytes;

/// Most sinks one Hydrant can have: sink sets are 64-bit masks.
pub const MAX_SINKS: usize = 64;

/// A set of sinks, by their position in the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SinkSet(u64);

impl SinkSet {
    /// The set of the given sink positions (each below [`MAX_SINKS`]).
    #[must_use]
    pub fn of(sinks: &[usize]) -> Self {
        let mut set = Self::default();
        for sink in sinks {
            set.insert(*sink);
        }
        set
    }

    /// Adds a sink.
    pub fn insert(&mut self, sink: usize) {
        debug_assert!(sink < MAX_SINKS);
        self.0 |= 1 << (sink % MAX_SINKS);
    }

    /// Adds every sink of `other`.
    pub fn extend(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// Whether `sink` is in the set.
    #[must_use]
    pub fn contains(self, sink: usize) -> bool {
        sink < MAX_SINKS && self.0 & (1 << sink) != 0
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The sink positions in the set, in order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_SINKS).filter(move |sink| self.contains(*sink))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
