//! The file sink: NDJSON segment files under the data directory, the embedded default.
//!
//! # Layout
//!
//! ```text
//! DATA_DIR/
//!   events/dt=2026-11-21/hour=09/part-20261121T093012345Z-000001.ndjson         completed
//!   events/dt=2026-11-21/hour=09/_part-20261121T095501002Z-000002.ndjson.open   being written
//!   _hydrant/journal.ndjson   commit journal (recovery and the duplicate window)
//!   _hydrant/lock             held while a Hydrant process uses the directory
//! ```
//!
//! The `dt=`/`hour=` folders are Hive-style partitions of the UTC time a segment was
//! opened, so Athena, DuckDB or Spark read the tree as a partitioned table. The open
//! segment starts with `_` and ends in `.open`: query engines skip files starting with
//! `_`, and globs on `*.ndjson` see completed segments only.
//!
//! # Durability
//!
//! One writer thread owns the open segment. Requests hand it their lines over a
//! channel; it takes every batch that is waiting (a group commit), appends them, calls
//! `fdatasync` once for the whole group, then appends one journal line naming the
//! segment's new committed length and the deliveries in the group, and syncs the
//! journal. Only then are the requests answered. So fsync cost is shared by all
//! concurrent requests, and the journal always knows how much of the open segment is
//! acknowledged.
//!
//! If any step fails, the segment and the journal are cut back to their last committed
//! lengths, so a failed request leaves nothing behind that its retry would duplicate.
//! After a crash, startup cuts each open segment back to the length the journal last
//! committed (which also removes a torn last line), seals it, and reloads the window
//! of committed deliveries, so a retry of a delivery acknowledged just before the
//! crash is recognised and not written again.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use bytes::Bytes;

use super::dedup::{DedupWindow, DeliveryKey};
use super::{Committed, SinkError};
use crate::clock::{UtcTime, duration_ms, now_ms};
use crate::limits::MIB;
use crate::metrics::StorageMetrics;

/// Default size past which a segment is completed and a new one started. Large
/// enough that query engines see few files, small enough to upload or scan quickly.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 128 * MIB;

/// Default age past which a segment is completed, even if small. Matches Firehose's
/// own default buffering interval (300 s), so data becomes visible to readers of
/// completed segments about as fast as Firehose delivers it.
pub const DEFAULT_SEGMENT_MAX_AGE: Duration = Duration::from_secs(300);

/// Default time a committed delivery is remembered for duplicate detection. Firehose
/// retries a failed batch for at most 7200 s (`RetryOptions.DurationInSeconds`), so a
/// two-hour window covers every retry Firehose can make.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7200);

/// Default number of committed deliveries remembered. 100,000 keys cost about 20 MB
/// and cover two hours at ~14 deliveries per second; busier servers should raise it.
pub const DEFAULT_DEDUP_CAPACITY: usize = 100_000;

/// A group commit takes waiting batches up to this many bytes, so one fsync never
/// waits behind an unbounded amount of writing.
const GROUP_MAX_BYTES: usize = 64 * MIB as usize;

/// How often an idle writer checks whether the open segment is due for completion.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// The journal is rewritten with only what is still needed once it grows past this.
const JOURNAL_COMPACT_BYTES: u64 = 32 * MIB;

const EVENTS_DIR: &str = "events";
const DEAD_LETTER_DIR: &str = "dead_letter";
const STATE_DIR: &str = "_hydrant";
const JOURNAL_FILE: &str = "journal.ndjson";
const LOCK_FILE: &str = "lock";
const OPEN_PREFIX: &str = "_";
const OPEN_SUFFIX: &str = ".open";
const SEGMENT_EXT: &str = ".ndjson";

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
    /// Remember committed deliveries this long.
    pub dedup_window: Duration,
    /// Remember at most this many committed deliveries.
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
    /// Committed deliveries reloaded into the duplicate window.
    pub deliveries_remembered: usize,
}

enum Message {
    Commit(Batch, oneshot::Sender<Result<Committed, SinkError>>),
    Close(oneshot::Sender<()>),
}

/// Handle to the file sink's writer thread.
#[derive(Debug)]
pub struct FileSink {
    sender: mpsc::Sender<Message>,
    thread: Mutex<Option<JoinHandle<()>>>,
    recovery: Recovery,
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
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hydrant-file-sink".into())
            .spawn(move || writer.run(&receiver))
            .map_err(|source| OpenError::Io {
                path: PathBuf::from("<writer thread>"),
                source,
            })?;
        Ok(Self {
            sender,
            thread: Mutex::new(Some(thread)),
            recovery,
        })
    }

    /// What recovery did when the sink opened.
    #[must_use]
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Commits a delivery's batch: events to the `events` table, dead letters to the
    /// `dead_letter` table.
    ///
    /// # Errors
    ///
    /// As [`FileSink::commit`].
    pub async fn commit_batch(&self, batch: &super::SinkBatch) -> Result<Committed, SinkError> {
        self.commit(Batch {
            dedup_key: batch.dedup_key,
            lines: batch.events.byte_chunks().cloned().collect(),
            events: batch.events.len(),
            dead_letters: batch.dead_letters.byte_chunks().cloned().collect(),
        })
        .await
    }

    /// Commits a batch, resolving once it is durable (or known to be a duplicate).
    ///
    /// # Errors
    ///
    /// [`SinkError::Write`] when writing or syncing failed (nothing of the batch is
    /// kept), [`SinkError::Closed`] after [`FileSink::close`].
    pub async fn commit(&self, batch: Batch) -> Result<Committed, SinkError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Message::Commit(batch, reply))
            .map_err(|_| SinkError::Closed)?;
        answer.await.unwrap_or(Err(SinkError::Closed))
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

/// One line of the commit journal.
#[derive(Debug, Serialize, Deserialize)]
struct JournalEntry {
    /// The segments this commit appended to, with their committed lengths after it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    segments: Vec<SegmentLength>,
    /// Commit time, ms since the epoch.
    at: u64,
    /// Keys of the deliveries committed ([`DeliveryKey::to_hex`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ids: Vec<String>,
    /// Keys as journals written before keys were hashed name them (`"<ARN> <id>"`):
    /// read, never written.
    #[serde(default, skip_serializing)]
    keys: Vec<String>,
}

/// A segment (its completed name, relative to the data directory) and a length.
#[derive(Debug, Serialize, Deserialize)]
struct SegmentLength {
    name: String,
    len: u64,
}

/// A file that only grows by whole appends: a failed append is cut back off.
#[derive(Debug)]
struct AppendFile {
    file: File,
    /// Length of the durable, acknowledged prefix.
    committed: u64,
    /// Set when cutting back a failed append itself failed: the file may hold bytes
    /// past `committed`, so nothing may be appended to it any more.
    dirty: bool,
}

impl AppendFile {
    fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let committed = file.metadata()?.len();
        Ok(Self {
            file,
            committed,
            dirty: false,
        })
    }

    /// Appends and syncs `parts`; on failure cuts the file back to where it was.
    fn append_durably(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        if self.dirty {
            return Err(io::Error::other("file holds an unrepaired failed write"));
        }
        let result = parts
            .iter()
            .try_for_each(|part| self.file.write_all(part))
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.committed += parts.iter().map(|part| part.len() as u64).sum::<u64>();
                Ok(())
            }
            Err(error) => {
                self.cut_back_to(self.committed);
                Err(error)
            }
        }
    }

    /// Cuts the file back to `len` bytes, which become its committed length.
    fn cut_back_to(&mut self, len: u64) {
        self.committed = len;
        if let Err(error) = self.file.set_len(len).and_then(|()| self.file.sync_data()) {
            tracing::error!(%error, "Could not cut back a failed write.");
            self.dirty = true;
        }
    }
}

#[derive(Debug)]
struct OpenSegment {
    /// Completed name, relative to the data directory (also the journal's key).
    name: String,
    data: AppendFile,
    opened: Instant,
    hour: (i64, u32, u32, u32),
}

struct Writer {
    settings: FileSinkSettings,
    metrics: StorageMetrics,
    journal: AppendFile,
    dedup: DedupWindow,
    /// The open segment of each table, indexed like [`TABLES`].
    open: [Option<OpenSegment>; TABLES.len()],
    /// Distinguishes segments opened in the same millisecond.
    sequence: u64,
    /// Held for the writer's lifetime; dropping it releases the lock.
    _lock: File,
}

impl Writer {
    fn open(
        settings: FileSinkSettings,
        metrics: StorageMetrics,
    ) -> Result<(Self, Recovery), OpenError> {
        let root = settings.data_dir.clone();
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |source| OpenError::Io { path, source }
        };
        let state = root.join(STATE_DIR);
        fs::create_dir_all(&state).map_err(io_error(&state))?;
        for table in TABLES {
            fs::create_dir_all(root.join(table.dir())).map_err(io_error(&root))?;
        }

        let lock_path = state.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(OpenError::Locked(root)),
            Err(fs::TryLockError::Error(source)) => {
                return Err(OpenError::Io {
                    path: lock_path,
                    source,
                });
            }
        }

        let journal_path = state.join(JOURNAL_FILE);
        let journal = read_journal(&journal_path).map_err(io_error(&journal_path))?;
        let now = now_ms();
        let mut dedup =
            DedupWindow::new(duration_ms(settings.dedup_window), settings.dedup_capacity);
        for (key, at) in journal.keys {
            if now.saturating_sub(at) <= duration_ms(settings.dedup_window) {
                dedup.insert(key, at);
            }
        }

        let mut recovery = Recovery::default();
        let mut open_segments = Vec::new();
        for table in TABLES {
            open_segments
                .extend(find_open_segments(&root.join(table.dir())).map_err(io_error(&root))?);
        }
        for open in open_segments {
            let name = completed_name(&root, &open);
            let committed = journal.committed_lengths.get(&name).copied().unwrap_or(0);
            let cut = recover_segment(&open, committed).map_err(io_error(&open))?;
            recovery.segments_recovered += 1;
            recovery.bytes_truncated += cut;
        }
        metrics
            .recovery_truncated_bytes
            .inc_by(recovery.bytes_truncated);
        recovery.deliveries_remembered = dedup.len();

        let mut writer = Self {
            journal: AppendFile::open(&journal_path).map_err(io_error(&journal_path))?,
            settings,
            metrics,
            dedup,
            open: [None, None],
            sequence: 0,
            _lock: lock,
        };
        // Start from a journal holding only what is still needed.
        writer.compact_journal().map_err(io_error(&journal_path))?;
        Ok((writer, recovery))
    }

    fn run(mut self, receiver: &mpsc::Receiver<Message>) {
        loop {
            match receiver.recv_timeout(IDLE_TICK) {
                Ok(Message::Commit(batch, reply)) => {
                    let mut group = vec![(batch, reply)];
                    let mut bytes = group[0].0.byte_len();
                    let mut close = None;
                    while bytes < GROUP_MAX_BYTES {
                        match receiver.try_recv() {
                            Ok(Message::Commit(batch, reply)) => {
                                bytes += batch.byte_len();
                                group.push((batch, reply));
                            }
                            Ok(Message::Close(reply)) => {
                                close = Some(reply);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_group(group);
                    if let Some(reply) = close {
                        self.finish(receiver);
                        let _ = reply.send(());
                        return;
                    }
                }
                Ok(Message::Close(reply)) => {
                    self.finish(receiver);
                    let _ = reply.send(());
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => self.seal_if_due(),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.finish(receiver);
                    return;
                }
            }
        }
    }

    /// Commits what is still queued, then completes the open segment.
    fn finish(&mut self, receiver: &mpsc::Receiver<Message>) {
        let mut group = Vec::new();
        while let Ok(message) = receiver.try_recv() {
            match message {
                Message::Commit(batch, reply) => group.push((batch, reply)),
                Message::Close(reply) => {
                    let _ = reply.send(());
                }
            }
        }
        if !group.is_empty() {
            self.commit_group(group);
        }
        self.seal_all();
    }

    fn commit_group(&mut self, group: Vec<(Batch, oneshot::Sender<Result<Committed, SinkError>>)>) {
        let started = Instant::now();
        let now = now_ms();
        let mut to_write = Vec::with_capacity(group.len());
        for (batch, reply) in group {
            let seen_in_group = to_write
                .iter()
                .any(|(b, _): &(Batch, _)| b.dedup_key == batch.dedup_key);
            if seen_in_group || self.dedup.contains(&batch.dedup_key, now) {
                let _ = reply.send(Ok(Committed::Duplicate));
            } else {
                to_write.push((batch, reply));
            }
        }
        if to_write.is_empty() {
            return;
        }
        let result = self.write_group(&to_write, now);
        if let Err(error) = &result {
            tracing::error!(%error, deliveries = to_write.len(), "Storage commit failed; nothing of it is kept.");
        } else {
            for (batch, _) in &to_write {
                self.dedup.insert(batch.dedup_key, now);
            }
            self.metrics
                .write_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics
                .commit_deliveries
                .observe(to_write.len() as f64);
        }
        for (batch, reply) in to_write {
            let answer = match &result {
                Ok(()) => Ok(Committed::Written {
                    events: batch.events,
                }),
                Err(error) => Err(SinkError::Write(error.to_string())),
            };
            let _ = reply.send(answer);
        }
        if self.journal.committed > JOURNAL_COMPACT_BYTES
            && let Err(error) = self.compact_journal()
        {
            self.fail("compact", &error);
        }
    }

    fn write_group(
        &mut self,
        group: &[(Batch, oneshot::Sender<Result<Committed, SinkError>>)],
        now: u64,
    ) -> io::Result<()> {
        if self.journal.dirty {
            // A failed journal append could not be cut back: start a clean journal.
            self.compact_journal()
                .inspect_err(|error| self.fail("compact", error))?;
        }
        self.seal_if_due();
        let mut appended: Vec<(usize, u64)> = Vec::new();
        let mut segments = Vec::new();
        for (slot, table) in TABLES.into_iter().enumerate() {
            let parts: Vec<&[u8]> = group
                .iter()
                .flat_map(|(batch, _)| table.lines(batch))
                .map(|chunk| &chunk[..])
                .filter(|chunk| !chunk.is_empty())
                .collect();
            if parts.is_empty() {
                continue;
            }
            if let Err(error) = self.append_to(slot, table, &parts, now, &mut appended) {
                self.cut_back(&appended);
                return Err(error);
            }
            let segment = self.open[slot]
                .as_ref()
                .expect("appended to an open segment");
            segments.push(SegmentLength {
                name: segment.name.clone(),
                len: segment.data.committed,
            });
        }
        let entry = JournalEntry {
            segments,
            at: now,
            ids: group
                .iter()
                .map(|(batch, _)| batch.dedup_key.to_hex())
                .collect(),
            keys: Vec::new(),
        };
        let mut line = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        line.push(b'\n');
        if let Err(error) = self.journal.append_durably(&[&line]) {
            // The data is synced but not acknowledged: cut it back off.
            self.cut_back(&appended);
            self.fail("journal", &error);
            return Err(error);
        }
        Ok(())
    }

    /// Appends and syncs `parts` to `table`'s open segment (opening one if needed),
    /// noting in `appended` where it stood before.
    fn append_to(
        &mut self,
        slot: usize,
        table: Table,
        parts: &[&[u8]],
        now: u64,
        appended: &mut Vec<(usize, u64)>,
    ) -> io::Result<()> {
        if self.open[slot]
            .as_ref()
            .is_some_and(|segment| segment.data.dirty)
        {
            // Recovery at the next start cuts it back using the journal.
            self.open[slot] = None;
        }
        if self.open[slot].is_none() {
            let segment = self
                .open_segment(table, now)
                .inspect_err(|error| self.fail("open", error))?;
            self.open[slot] = Some(segment);
        }
        let segment = self.open[slot].as_mut().expect("a segment is open");
        let before = segment.data.committed;
        if let Err(error) = segment.data.append_durably(parts) {
            self.fail("write", &error);
            return Err(error);
        }
        appended.push((slot, before));
        Ok(())
    }

    /// Cuts the segments appended to by a failed group back to where they stood.
    fn cut_back(&mut self, appended: &[(usize, u64)]) {
        for (slot, before) in appended {
            if let Some(segment) = self.open[*slot].as_mut() {
                segment.data.cut_back_to(*before);
            }
        }
    }

    fn fail(&self, operation: &str, error: &io::Error) {
        self.metrics.errors.with_label_values(&[operation]).inc();
        tracing::error!(%error, operation, "Storage operation failed.");
    }

    fn open_segment(&mut self, table: Table, now: u64) -> io::Result<OpenSegment> {
        let time = UtcTime::from_ms(now);
        self.sequence += 1;
        let dir_rel = format!(
            "{}/dt={:04}-{:02}-{:02}/hour={:02}",
            table.dir(),
            time.year,
            time.month,
            time.day,
            time.hour
        );
        let file_name = format!(
            "part-{:04}{:02}{:02}T{:02}{:02}{:02}{:03}Z-{:06}{SEGMENT_EXT}",
            time.year,
            time.month,
            time.day,
            time.hour,
            time.minute,
            time.second,
            time.millis,
            self.sequence
        );
        let dir = self.settings.data_dir.join(&dir_rel);
        fs::create_dir_all(&dir)?;
        let data = AppendFile::open(&dir.join(format!("{OPEN_PREFIX}{file_name}{OPEN_SUFFIX}")))?;
        // Make the new directory entries durable, so a synced segment cannot vanish.
        sync_dir(&dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(OpenSegment {
            name: format!("{dir_rel}/{file_name}"),
            data,
            opened: Instant::now(),
            hour: (time.year, time.month, time.day, time.hour),
        })
    }

    fn seal_if_due(&mut self) {
        let now = UtcTime::from_ms(now_ms());
        for slot in 0..TABLES.len() {
            let Some(segment) = &self.open[slot] else {
                continue;
            };
            let due = segment.data.committed >= self.settings.segment_max_bytes
                || segment.opened.elapsed() >= self.settings.segment_max_age
                || segment.hour != (now.year, now.month, now.day, now.hour);
            if due {
                self.seal(slot);
            }
        }
    }

    fn seal_all(&mut self) {
        for slot in 0..TABLES.len() {
            self.seal(slot);
        }
    }

    /// Completes a table's open segment: renames it to its final name (its data is
    /// already synced) and syncs the directory. An empty segment is removed.
    fn seal(&mut self, slot: usize) {
        let Some(segment) = self.open[slot].take() else {
            return;
        };
        let open_path = open_path(&self.settings.data_dir, &segment.name);
        let result = if segment.data.committed == 0 {
            fs::remove_file(&open_path)
        } else {
            let final_path = self.settings.data_dir.join(&segment.name);
            fs::rename(&open_path, &final_path)
                .and_then(|()| sync_dir(final_path.parent().unwrap_or(Path::new("."))))
        };
        match result {
            Ok(()) if segment.data.committed > 0 => self.metrics.segments_sealed.inc(),
            Ok(()) => {}
            // The segment stays open on disk and is completed by the next startup.
            Err(error) => self.fail("seal", &error),
        }
    }

    /// Rewrites the journal with only the open segments' lengths and the duplicate
    /// window, via a temporary file and an atomic rename.
    fn compact_journal(&mut self) -> io::Result<()> {
        let state = self.settings.data_dir.join(STATE_DIR);
        let temporary = state.join(format!("{JOURNAL_FILE}.tmp"));
        let mut out = Vec::new();
        for (key, at) in self.dedup.iter() {
            write_entry(
                &mut out,
                &JournalEntry {
                    segments: Vec::new(),
                    at,
                    ids: vec![key.to_hex()],
                    keys: Vec::new(),
                },
            )?;
        }
        let segments: Vec<SegmentLength> = self
            .open
            .iter()
            .flatten()
            .map(|segment| SegmentLength {
                name: segment.name.clone(),
                len: segment.data.committed,
            })
            .collect();
        if !segments.is_empty() {
            let entry = JournalEntry {
                segments,
                at: now_ms(),
                ids: Vec::new(),
                keys: Vec::new(),
            };
            write_entry(&mut out, &entry)?;
        }
        let mut file = File::create(&temporary)?;
        file.write_all(&out)?;
        file.sync_all()?;
        let journal_path = state.join(JOURNAL_FILE);
        fs::rename(&temporary, &journal_path)?;
        sync_dir(&state)?;
        self.journal = AppendFile::open(&journal_path)?;
        Ok(())
    }
}

fn write_entry(out: &mut Vec<u8>, entry: &JournalEntry) -> io::Result<()> {
    serde_json::to_writer(&mut *out, entry).map_err(io::Error::other)?;
    out.push(b'\n');
    Ok(())
}

/// What the journal says: the last committed length of each segment it names, and
/// every remembered delivery key with its commit time.
#[derive(Debug, Default)]
struct JournalState {
    committed_lengths: HashMap<String, u64>,
    keys: Vec<(DeliveryKey, u64)>,
}

/// Reads the journal. A line that does not parse (a torn
/// last line after a crash) is skipped: its commit was never acknowledged.
fn read_journal(path: &Path) -> io::Result<JournalState> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    let mut state = JournalState::default();
    for line in bytes.split(|byte| *byte == b'\n') {
        let Ok(entry) = serde_json::from_slice::<JournalEntry>(line) else {
            continue;
        };
        for segment in entry.segments {
            state.committed_lengths.insert(segment.name, segment.len);
        }
        state.keys.extend(
            entry
                .ids
                .iter()
                .filter_map(|id| DeliveryKey::from_hex(id))
                .map(|key| (key, entry.at)),
        );
        state.keys.extend(
            entry
                .keys
                .iter()
                .map(|legacy| (DeliveryKey::from_legacy(legacy), entry.at)),
        );
    }
    Ok(state)
}

/// Open segments anywhere below a table's folder.
fn find_open_segments(events: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![events.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if let Some(name) = path.file_name().and_then(|name| name.to_str())
                && name.starts_with(OPEN_PREFIX)
                && name.ends_with(OPEN_SUFFIX)
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The journal's name for an open segment: its completed path relative to `root`.
fn completed_name(root: &Path, open: &Path) -> String {
    let relative = open.strip_prefix(root).unwrap_or(open);
    let parent = relative
        .parent()
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default();
    let file = relative
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = file
        .strip_prefix(OPEN_PREFIX)
        .and_then(|f| f.strip_suffix(OPEN_SUFFIX))
        .unwrap_or(&file)
        .to_owned();
    format!("{parent}/{file}")
}

fn open_path(root: &Path, name: &str) -> PathBuf {
    let path = root.join(name);
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{OPEN_PREFIX}{file}{OPEN_SUFFIX}"))
}

/// Cuts an open segment back to its committed length, then completes it (or removes
/// it when nothing in it was committed). Returns the number of bytes cut.
fn recover_segment(open: &Path, committed: u64) -> io::Result<u64> {
    let file = OpenOptions::new().write(true).open(open)?;
    let len = file.metadata()?.len();
    let keep = committed.min(len);
    if committed > len {
        tracing::error!(
            segment = %open.display(), committed, len,
            "Segment is shorter than its journal says; keeping what is there."
        );
    }
    if keep < len {
        file.set_len(keep)?;
        file.sync_all()?;
    }
    let dir = open.parent().unwrap_or(Path::new("."));
    if keep == 0 {
        fs::remove_file(open)?;
    } else {
        let name = open
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let final_name = name
            .strip_prefix(OPEN_PREFIX)
            .and_then(|n| n.strip_suffix(OPEN_SUFFIX))
            .unwrap_or(name);
        fs::rename(open, dir.join(final_name))?;
    }
    sync_dir(dir)?;
    tracing::info!(segment = %open.display(), kept = keep, cut = len - keep, "Recovered open segment.");
    Ok(len - keep)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn settings(dir: &Path) -> FileSinkSettings {
        FileSinkSettings::new(dir)
    }

    fn storage_metrics() -> StorageMetrics {
        Metrics::new(10).storage
    }

    fn batch(key: &str, lines: &str) -> Batch {
        Batch {
            dedup_key: DeliveryKey::new(None, key),
            lines: vec![Bytes::from(lines.as_bytes().to_vec())],
            events: lines.lines().count(),
            dead_letters: Vec::new(),
        }
    }

    /// Every line of every completed segment, in file order.
    fn completed_lines(root: &Path) -> Vec<String> {
        let mut files = find_completed(&root.join(EVENTS_DIR));
        files.sort();
        files
            .iter()
            .flat_map(|file| {
                fs::read_to_string(file)
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn commits_seals_on_close_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::open(settings(dir.path()), storage_metrics()).unwrap();
        let first = sink
            .commit(batch("k1", "{\"n\":1}\n{\"n\":2}\n"))
            .await
            .unwrap();
        assert_eq!(first, Committed::Written { events: 2 });
        sink.commit(batch("k2", "{\"n\":3}\n")).await.unwrap();
        sink.close().await;
        assert_eq!(
            completed_lines(dir.path()),
            [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]
        );
        assert!(
            find_open_segments(&dir.path().join(EVENTS_DIR))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            sink.commit(batch("k3", "x\n")).await,
            Err(SinkError::Closed)
        );
    }

    #[tokio::test]
    async fn segments_use_hive_partitions_and_open_names() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::open(settings(dir.path()), storage_metrics()).unwrap();
        sink.commit(batch("k1", "a\n")).await.unwrap();
        let open = find_open_segments(&dir.path().join(EVENTS_DIR)).unwrap();
        assert_eq!(open.len(), 1);
        let relative = open[0]
            .strip_prefix(dir.path())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = relative.split('/').collect();
        assert_eq!(parts[0], "events");
        assert!(
            parts[1].starts_with("dt=") && parts[1].len() == "dt=2026-11-21".len(),
            "{relative}"
        );
        assert!(
            parts[2].starts_with("hour=") && parts[2].len() == "hour=09".len(),
            "{relative}"
        );
        assert!(
            parts[3].starts_with("_part-") && parts[3].ends_with(".ndjson.open"),
            "{relative}"
        );
        sink.close().await;
    }

    #[tokio::test]
    async fn dead_letters_get_their_own_table_and_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, _) = Writer::open(settings(dir.path()), storage_metrics()).unwrap();
        let mut with_dead = batch("k1", "good\n");
        with_dead.dead_letters = vec![Bytes::from_static(b"bad\n")];
        let (reply, answer) = oneshot::channel();
        writer.commit_group(vec![(with_dead, reply)]);
        assert_eq!(answer.await.unwrap(), Ok(Committed::Written { events: 1 }));
        // Unacknowledged bytes in both open segments, then a crash.
        for slot in 0..TABLES.len() {
            writer.open[slot]
                .as_mut()
                .unwrap()
                .data
                .file
                .write_all(b"torn")
                .unwrap();
        }
        drop(writer);
        let sink = FileSink::open(settings(dir.path()), storage_metrics()).unwrap();
        assert_eq!(sink.recovery().segments_recovered, 2);
        assert_eq!(sink.recovery().bytes_truncated, 8);
        sink.close().await;
        assert_eq!(completed_lines(dir.path()), ["good"]);
        let dead: Vec<_> = find_completed(&dir.path().join(DEAD_LETTER_DIR));
        assert_eq!(dead.len(), 1);
        assert_eq!(fs::read_to_string(&dead[0]).unwrap(), "bad\n");
    }

    fn find_completed(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_owned()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|ext| ext == "ndjson") {
                    found.push(path);
                }
            }
        }
        found
    }

    #[tokio::test]
    async fn a_retried_delivery_is_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::open(settings(dir.path()), storage_metrics()).unwrap();
        sink.commit(batch("same", "one\n")).await.unwrap();
        assert_eq!(
            sink.commit(batch("same", "one\n")).await,
            Ok(Committed::Duplicate)
        );
        sink.close().await;
        assert_eq!(completed_lines(dir.path()), ["one"]);
    }

    #[tokio::test]
    async fn concurrent_duplicates_in_one_group_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let sink =
            std::sync::Arc::new(FileSink::open(settings(dir.path()), storage_metrics()).unwrap());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let sink = std::sync::Arc::clone(&sink);
                tokio::spawn(async move { sink.commit(batch("dup", "x\n")).await.unwrap() })
            })
            .collect();
        let mut written = 0;
        for task in tasks {
            if matches!(task.await.unwrap(), Committed::Written { .. }) {
                written += 1;
            }
        }
        assert_eq!(written, 1);
        sink.close().await;
        assert_eq!(completed_lines(dir.path()), ["x"]);
    }

    #[tokio::test]
    async fn rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(dir.path());
        settings.segment_max_bytes = 10;
        let sink = FileSink::open(settings, storage_metrics()).unwrap();
        for n in 0..5 {
            sink.commit(batch(&format!("k{n}"), &format!("line-{n:05}\n")))
                .await
                .unwrap();
        }
        sink.close().await;
        let lines = completed_lines(dir.path());
        assert_eq!(lines.len(), 5);
        let sealed = fs::read_dir(dir.path().join(EVENTS_DIR))
            .unwrap()
            .flat_map(|dt| fs::read_dir(dt.unwrap().path()).unwrap())
            .flat_map(|hour| fs::read_dir(hour.unwrap().path()).unwrap())
            .count();
        assert_eq!(sealed, 5, "each 11-byte commit fills a 10-byte segment");
    }

    #[tokio::test]
    async fn rotates_by_age_when_idle() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(dir.path());
        settings.segment_max_age = Duration::from_millis(10);
        let sink = FileSink::open(settings, storage_metrics()).unwrap();
        sink.commit(batch("k", "a\n")).await.unwrap();
        // The idle writer checks once per IDLE_TICK.
        tokio::time::sleep(IDLE_TICK * 2 + Duration::from_millis(200)).await;
        assert!(
            find_open_segments(&dir.path().join(EVENTS_DIR))
                .unwrap()
                .is_empty()
        );
        assert_eq!(completed_lines(dir.path()), ["a"]);
        sink.close().await;
    }

    #[tokio::test]
    async fn a_second_process_cannot_use_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::open(settings(dir.path()), storage_metrics()).unwrap();
        assert!(matches!(
            FileSink::open(settings(dir.path()), storage_metrics()),
            Err(OpenError::Locked(_))
        ));
        sink.close().await;
    }

    /// Simulates a crash: the writer stops without sealing, after unacknowledged
    /// bytes (a torn line) reached the open segment.
    #[tokio::test]
    async fn recovery_cuts_unacknowledged_bytes_and_remembers_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, _) = Writer::open(settings(dir.path()), storage_metrics()).unwrap();
        let (reply, answer) = oneshot::channel();
        writer.commit_group(vec![(batch("acked", "{\"n\":1}\n"), reply)]);
        assert_eq!(answer.await.unwrap(), Ok(Committed::Written { events: 1 }));
        let open = find_open_segments(&dir.path().join(EVENTS_DIR))
            .unwrap()
            .remove(0);
        let mut file = OpenOptions::new().append(true).open(&open).unwrap();
        file.write_all(b"{\"n\":2}\n{\"n\":").unwrap();
        drop(writer);

        let sink = FileSink::open(settings(dir.path()), storage_metrics()).unwrap();
        assert_eq!(
            sink.recovery(),
            &Recovery {
                segments_recovered: 1,
                bytes_truncated: 13,
                deliveries_remembered: 1
            }
        );
        assert_eq!(
            sink.commit(batch("acked", "{\"n\":1}\n")).await,
            Ok(Committed::Duplicate)
        );
        sink.close().await;
        assert_eq!(completed_lines(dir.path()), [r#"{"n":1}"#]);
    }

    #[tokio::test]
    async fn recovery_ignores_a_torn_journal_line() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, _) = Writer::open(settings(dir.path()), storage_metrics()).unwrap();
        let (reply, _answer) = oneshot::channel();
        writer.commit_group(vec![(batch("a", "one\n"), reply)]);
        // A second group whose journal line was torn by the crash: not acknowledged.
        let segment = writer.open[0].as_mut().unwrap();
        segment.data.file.write_all(b"two\n").unwrap();
        writer
            .journal
            .file
            .write_all(br#"{"segment":"x","len":8,"at":1,"ke"#)
            .unwrap();
        drop(writer);

        let sink = FileSink::open(settings(dir.path()), storage_metrics()).unwrap();
        assert_eq!(sink.recovery().bytes_truncated, 4);
        sink.close().await;
        assert_eq!(completed_lines(dir.path()), ["one"]);
    }

    #[tokio::test]
    async fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, _) = Writer::open(settings(dir.path()), storage_metrics()).unwrap();
        let (reply, _answer) = oneshot::channel();
        writer.commit_group(vec![(batch("a", "one\n"), reply)]);
        // Make the journal unwritable, so the next commit fails after its data sync.
        let journal_path = dir.path().join(STATE_DIR).join(JOURNAL_FILE);
        writer.journal.file = OpenOptions::new().read(true).open(&journal_path).unwrap();
        let (reply, answer) = oneshot::channel();
        writer.commit_group(vec![(batch("b", "two\n"), reply)]);
        assert!(matches!(answer.await.unwrap(), Err(SinkError::Write(_))));
        assert!(
            !writer
                .dedup
                .contains(&DeliveryKey::new(None, "b"), now_ms()),
            "a failed delivery is not remembered"
        );
        let open = find_open_segments(&dir.path().join(EVENTS_DIR))
            .unwrap()
            .remove(0);
        assert_eq!(fs::read_to_string(open).unwrap(), "one\n");
    }

    /// A journal written before keys were hashed (`"<ARN> <id>"` in `keys`) still
    /// makes a retry of its deliveries a duplicate.
    #[tokio::test]
    async fn reads_journals_written_with_the_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(STATE_DIR);
        fs::create_dir_all(&state).unwrap();
        let arn = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/old";
        fs::write(
            state.join(JOURNAL_FILE),
            format!(
                "{{\"at\":{},\"keys\":[\"{arn} r-1\",\"- r-2\"]}}\n",
                now_ms()
            ),
        )
        .unwrap();
        let sink = FileSink::open(settings(dir.path()), storage_metrics()).unwrap();
        assert_eq!(sink.recovery().deliveries_remembered, 2);
        for key in [
            DeliveryKey::new(Some(arn), "r-1"),
            DeliveryKey::new(None, "r-2"),
        ] {
            let mut again = batch("unused", "x\n");
            again.dedup_key = key;
            assert_eq!(sink.commit(again).await, Ok(Committed::Duplicate));
        }
        sink.close().await;
    }
}
