//! The file sink: NDJSON segment files under the data directory, the embedded default.
//!
//! # Layout
//!
//! ```text
//! DATA_DIR/
//!   events/dt=2026-11-21/hour=09/part-20261121T093012345Z-000001.ndjson         completed
//!   events/dt=2026-11-21/hour=09/_part-20261121T095501002Z-000002.ndjson.open   being written
//!   _hydrant/journal-000007.ndjson   commit journal, in generations (recovery, duplicates)
//!   _hydrant/lock                    held while a Hydrant process uses the directory
//! ```
//!
//! The `dt=`/`hour=` folders are Hive-style partitions of the UTC time a segment was
//! opened, so Athena, DuckDB or Spark read the tree as a partitioned table. The open
//! segment starts with `_` and ends in `.open`: query engines skip files starting with
//! `_`, and globs on `*.ndjson` see completed segments only.
//!
//! # Durability
//!
//! One writer thread owns the open segments. Requests hand it their lines over a
//! channel; it takes every batch that is waiting (a group commit), appends them, calls
//! `fdatasync` once for the whole group, then appends one journal line naming the
//! segments' new committed lengths and the deliveries in the group, and syncs the
//! journal. Only then are the requests answered. So fsync cost is shared by all
//! concurrent requests, and the journal always knows how much of each open segment is
//! acknowledged.
//!
//! The writer does not look for duplicates: the sink's duplicate window does, once
//! per delivery, before a batch is queued ([`crate::sink::dedup`]). The sink makes
//! that window, its recovery seeds it and the writer records each group's deliveries
//! in it once their journal line is synced, so the journal is the window's durable
//! copy. An identical delivery that arrives while the first is queued or being
//! written is never queued itself: it waits for the first, and is answered when that
//! write is durable (or fails with it).
//!
//! If any step fails, the segments and the journal are cut back to their last
//! committed lengths, so a failed request leaves nothing behind that its retry would
//! duplicate. After a crash, startup cuts each open segment back to the length the
//! journal last committed (which also removes a torn last line), seals it, and
//! seeds the sink's duplicate window with the committed deliveries the journal names,
//! so a retry of a delivery acknowledged just before the crash is recognised and not
//! written again.
//!
//! The journal is kept in generations ([`journal`]), so that forgetting old
//! deliveries never means rewriting the journal. The directory is checked before and
//! after every group commit and on every health probe ([`layout`]): if it was
//! deleted, replaced or changed by hand, the group is refused, the sink is down, and
//! the next probe rebuilds the directory.

mod failure;
mod journal;
mod layout;
mod segment;
mod writer;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::dedup::{Admission, Claim, DeliveryKey, SinkWindow};
use super::dedup::{DEFAULT_DEDUP_CAPACITY, DEFAULT_DEDUP_WINDOW};
use super::{Committed, SinkError};
use crate::limits::MIB;
use crate::metrics::StorageMetrics;
use crate::setting::{ByteSize, HumanDuration};
use writer::{Message, Writer};

/// Default size past which a segment is completed and a new one started. Large
/// enough that query engines see few files, small enough to upload or scan quickly.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 128 * MIB;

/// Default age past which a segment is completed, even if small. Matches Firehose's
/// own default buffering interval (300 s), so data becomes visible to readers of
/// completed segments about as fast as Firehose delivers it.
pub const DEFAULT_SEGMENT_MAX_AGE: Duration = Duration::from_secs(300);

/// A group commit takes waiting batches up to this many bytes, so one fsync never
/// waits behind an unbounded amount of writing.
const GROUP_MAX_BYTES: usize = 64 * MIB as usize;

/// How often an idle writer checks whether the open segment is due for completion.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// A health probe not answered within this time reports the sink unavailable: the
/// writer is stuck (a hung disk). A probe waits behind the group commit in progress,
/// which at most 64 MiB makes well under a second on a working disk, or behind a
/// rebuild, which writes every remembered key once (~40 MB for 1 M).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

const EVENTS_DIR: &str = "events";
const DEAD_LETTER_DIR: &str = "dead_letter";

/// One delivery's lines for the file sink.
#[derive(Debug)]
pub struct Batch {
    /// Identifies the delivery across Firehose's retries.
    pub dedup_key: DeliveryKey,
    /// Event lines, each ending in `\n`, in chunks of whole lines.
    pub lines: Vec<Bytes>,
    /// Number of events in `lines`.
    pub events: usize,
    /// Dead-letter lines, in chunks of whole lines.
    pub dead_letters: Vec<Bytes>,
}

impl Batch {
    /// Bytes of event lines.
    fn byte_len(&self) -> usize {
        self.lines.iter().map(Bytes::len).sum()
    }
}

/// Settings of the file sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkSettings {
    /// Root of the layout above.
    pub data_dir: PathBuf,
    /// Complete a segment once it reaches this size.
    pub segment_max_bytes: u64,
    /// Complete a segment once it is this old.
    pub segment_max_age: Duration,
    /// Remember committed deliveries this long (the sink's duplicate window).
    pub dedup_window: Duration,
    /// Remember at most this many committed deliveries (the sink's duplicate window).
    pub dedup_capacity: usize,
}

impl FileSinkSettings {
    /// Default settings rooted at `data_dir`.
    #[must_use]
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            segment_max_age: DEFAULT_SEGMENT_MAX_AGE,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            dedup_capacity: DEFAULT_DEDUP_CAPACITY,
        }
    }
}

impl FileSinkSettings {
    /// Checks the settings a file sink cannot work without.
    ///
    /// # Errors
    ///
    /// A segment limit of 0, which would complete a segment on every write.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_max_bytes == 0 || self.segment_max_age.is_zero() {
            return Err("segment-max-bytes and segment-max-age must be greater than 0".into());
        }
        Ok(())
    }
}

/// A `[[sinks]]` entry with `type = "file"`: a file sink besides the embedded one.
/// The segment limits it leaves out, and the duplicate window that is one setting
/// for every file sink, are the embedded sink's ([`FileConfig::settings`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Root of this sink's layout; no two file sinks may share one.
    pub data_dir: PathBuf,
    /// Complete a segment once it reaches this size.
    pub segment_max_bytes: Option<ByteSize>,
    /// Complete a segment once it is this old.
    pub segment_max_age: Option<HumanDuration>,
}

impl FileConfig {
    /// The embedded file sink's configuration: everything from `shared`.
    #[must_use]
    pub fn embedded(shared: &FileSinkSettings) -> Self {
        Self {
            data_dir: shared.data_dir.clone(),
            segment_max_bytes: None,
            segment_max_age: None,
        }
    }

    /// The sink's settings, with what it leaves out taken from `shared` (the
    /// embedded sink's, which flags and `[storage]` set).
    #[must_use]
    pub fn settings(&self, shared: &FileSinkSettings) -> FileSinkSettings {
        FileSinkSettings {
            data_dir: self.data_dir.clone(),
            segment_max_bytes: self
                .segment_max_bytes
                .map_or(shared.segment_max_bytes, |size| size.0),
            segment_max_age: self
                .segment_max_age
                .map_or(shared.segment_max_age, |age| age.0),
            dedup_window: shared.dedup_window,
            dedup_capacity: shared.dedup_capacity,
        }
    }
}

impl super::SinkSettings for FileConfig {
    fn check(&self) -> Result<(), String> {
        let zero = self.segment_max_bytes.is_some_and(|size| size.0 == 0)
            || self.segment_max_age.is_some_and(|age| age.0.is_zero());
        if zero {
            return Err("segment_max_bytes and segment_max_age must be greater than 0".into());
        }
        Ok(())
    }
}

/// Why the file sink could not open its data directory.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds the directory's lock.
    #[error("data directory {0} is in use by another Hydrant process")]
    Locked(PathBuf),
    /// The directory could not be created, read or recovered.
    #[error("cannot use data directory {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// What crash recovery found when the sink opened.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Open segments found and completed.
    pub segments_recovered: usize,
    /// Bytes of unacknowledged data cut from them.
    pub bytes_truncated: u64,
    /// Committed deliveries the journal seeded the duplicate window with.
    pub deliveries_remembered: usize,
}

/// Handle to the file sink's writer thread.
#[derive(Debug)]
pub struct FileSink {
    sender: mpsc::Sender<Message>,
    thread: Mutex<Option<JoinHandle<()>>>,
    recovery: Recovery,
    /// The sink's duplicate window, which the fan-out uses as this sink's.
    window: Arc<SinkWindow>,
}

impl FileSink {
    /// Locks and recovers the data directory, then starts the writer thread.
    ///
    /// # Errors
    ///
    /// [`OpenError`] when the directory is locked by another process, cannot be
    /// created, or recovery cannot read or repair it.
    pub fn open(settings: FileSinkSettings, metrics: StorageMetrics) -> Result<Self, OpenError> {
        let (writer, recovery) = Writer::open(settings, metrics)?;
        Self::start(writer, recovery, None)
    }

    /// Opens the sink with its writer held until the returned sender sends (or is
    /// dropped): messages sent meanwhile queue up and become one group commit.
    #[cfg(test)]
    pub(crate) fn open_held(
        settings: FileSinkSettings,
        metrics: StorageMetrics,
    ) -> (Self, mpsc::Sender<()>) {
        let (writer, recovery) = Writer::open(settings, metrics).unwrap();
        let (release, held) = mpsc::channel();
        (Self::start(writer, recovery, Some(held)).unwrap(), release)
    }

    fn start(
        writer: Writer,
        recovery: Recovery,
        held: Option<mpsc::Receiver<()>>,
    ) -> Result<Self, OpenError> {
        let window = Arc::clone(&writer.window);
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hydrant-file-sink".into())
            .spawn(move || {
                if let Some(held) = held {
                    let _ = held.recv();
                }
                writer.run(&receiver);
            })
            .map_err(|source| OpenError::Io {
                path: PathBuf::from("<writer thread>"),
                source,
            })?;
        Ok(Self {
            sender,
            thread: Mutex::new(Some(thread)),
            recovery,
            window,
        })
    }

    /// What recovery did when the sink opened.
    #[must_use]
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The sink's duplicate window: seeded by recovery, kept by the writer.
    #[must_use]
    pub fn window(&self) -> &Arc<SinkWindow> {
        &self.window
    }

    /// Commits a delivery's batch whose `claim` the fan-out took in this sink's
    /// window: events to the `events` table, dead letters to the `dead_letter` table.
    ///
    /// # Errors
    ///
    /// As [`FileSink::commit`].
    pub async fn commit_claimed(
        &self,
        batch: &super::SinkBatch,
        claim: &Claim,
    ) -> Result<Committed, SinkError> {
        let batch = Batch {
            dedup_key: batch.dedup_key,
            lines: batch.events.byte_chunks().cloned().collect(),
            events: batch.events.len(),
            dead_letters: batch.dead_letters.byte_chunks().cloned().collect(),
        };
        self.write(batch, claim.clone()).await
    }

    /// Commits a batch on its own (without the fan-out), resolving once it is
    /// durable, or once it is known to be a duplicate of a delivery that is: the
    /// batch meets the sink's duplicate window here, as it would in the fan-out.
    ///
    /// # Errors
    ///
    /// [`SinkError::Write`] when writing or syncing failed (nothing of the batch is
    /// kept), [`SinkError::Down`] when the data directory was found damaged (the sink
    /// takes nothing until a [`FileSink::probe`] rebuilds it), [`SinkError::Closed`]
    /// after [`FileSink::close`]; an identical delivery this one waited for fails it
    /// with that delivery's error.
    pub async fn commit(&self, batch: Batch) -> Result<Committed, SinkError> {
        match self.window.admit(batch.dedup_key) {
            Admission::Duplicate => Ok(Committed::Duplicate),
            Admission::Wait(original) => original.outcome().await,
            Admission::Claimed(claim) => {
                let result = self.write(batch, claim.clone()).await;
                claim.finish(&result);
                result
            }
        }
    }

    /// Hands a batch to the writer, with a clone of its claim that the writer keeps
    /// until the batch's group is done: a request dropped meanwhile does not free
    /// the delivery for a retry that the queued write could still make a duplicate.
    async fn write(&self, batch: Batch, claim: Claim) -> Result<Committed, SinkError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Message::Commit(batch, claim, reply))
            .map_err(|_| SinkError::Closed)?;
        answer.await.unwrap_or(Err(SinkError::Closed))
    }

    /// Checks the data directory: every folder, the lock, the journal and the open
    /// segments are still where and what the writer opened, and files can still be
    /// created. Damage found here stops the sink (as it does during a commit); once
    /// stopped, a probe rebuilds the directory and succeeds if it could.
    ///
    /// # Errors
    ///
    /// [`SinkError::Down`] while the directory is damaged or cannot be rebuilt,
    /// [`SinkError::Unavailable`] when the writer does not answer within
    /// [`PROBE_TIMEOUT`], [`SinkError::Closed`] after [`FileSink::close`].
    pub async fn probe(&self) -> Result<(), SinkError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Message::Probe(reply))
            .map_err(|_| SinkError::Closed)?;
        match tokio::time::timeout(PROBE_TIMEOUT, answer).await {
            Ok(answer) => answer.unwrap_or(Err(SinkError::Closed)),
            Err(_) => Err(SinkError::Unavailable(format!(
                "the storage writer did not answer a probe within {PROBE_TIMEOUT:?}"
            ))),
        }
    }

    /// Finishes pending commits, completes the open segment and stops the writer.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.sender.send(Message::Close(reply)).is_ok() {
            let _ = done.await;
        }
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// The tables a batch writes to, each with its own folder and open segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    /// Decoded events.
    Events,
    /// Records that could not be decoded, with their reasons.
    DeadLetter,
}

const TABLES: [Table; 2] = [Table::Events, Table::DeadLetter];

impl Table {
    fn dir(self) -> &'static str {
        match self {
            Self::Events => EVENTS_DIR,
            Self::DeadLetter => DEAD_LETTER_DIR,
        }
    }

    fn lines(self, batch: &Batch) -> &[Bytes] {
        match self {
            Self::Events => &batch.lines,
            Self::DeadLetter => &batch.dead_letters,
        }
    }
}

#[cfg(test)]
mod tests;
