//! The writer thread: group commits, the journal's upkeep, health probes, and
//! rebuilding the directory after it was damaged.

use std::io;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use tokio::sync::oneshot;

use super::failure::*;
use super::journal;
use super::layout::{Layout, Opening, TornDown};
use super::segment::OpenSegment;
use super::{Batch, FileSinkSettings, GROUP_MAX_BYTES, IDLE_TICK, OpenError, Recovery, TABLES};
use crate::clock::now_ms;
use crate::metrics::StorageMetrics;
use crate::sink::dedup::{Claim, SinkWindow};
use crate::sink::{Committed, SinkError};

/// Where a commit's answer goes.
pub(super) type Reply = oneshot::Sender<Result<Committed, SinkError>>;

/// What the writer thread is asked to do.
#[derive(Debug)]
pub(super) enum Message {
    /// Store a batch whose delivery the sender claimed in the sink's window (the
    /// claim is held until the batch's group is done).
    Commit(Batch, Claim, Reply),
    /// Check (or rebuild) the data directory.
    Probe(oneshot::Sender<Result<(), SinkError>>),
    /// Finish what is queued, complete the open segments, stop.
    Close(oneshot::Sender<()>),
}

/// Owns the data directory; runs on its own thread.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) settings: FileSinkSettings,
    pub(super) metrics: StorageMetrics,
    /// The sink's duplicate window, shared with the fan-out: recovery seeds it, and
    /// each group's deliveries enter it once their journal line is synced.
    pub(super) window: Arc<SinkWindow>,
    /// The directory in use; `None` after damage was found, until a probe rebuilds it.
    pub(super) layout: Option<Layout>,
    /// Why the directory is not in use, while it is not.
    down: Option<String>,
    /// What the torn-down layout left for the rebuild.
    torn_down: TornDown,
    /// Distinguishes segments opened in the same millisecond.
    sequence: u64,
}

impl Writer {
    pub(super) fn open(
        settings: FileSinkSettings,
        metrics: StorageMetrics,
    ) -> Result<(Self, Recovery), OpenError> {
        for operation in OPERATIONS {
            metrics.errors.with_label_values(&[operation]);
        }
        let window = Arc::new(SinkWindow::new(
            settings.dedup_window,
            settings.dedup_capacity,
        ));
        let (layout, recovery) = Layout::open(&settings, &window, &metrics, Opening::default())?;
        Ok((
            Self {
                settings,
                metrics,
                window,
                layout: Some(layout),
                down: None,
                torn_down: TornDown::default(),
                sequence: 0,
            },
            recovery,
        ))
    }

    pub(super) fn run(mut self, receiver: &mpsc::Receiver<Message>) {
        loop {
            let first = match receiver.recv_timeout(IDLE_TICK) {
                Ok(message) => message,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.tick();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.finish(receiver);
                    return;
                }
            };
            // A group commit takes every batch waiting, up to GROUP_MAX_BYTES.
            let mut group = Vec::new();
            let mut claims = Vec::new();
            let mut probes = Vec::new();
            let mut close = None;
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Message::Commit(batch, claim, reply) => {
                        bytes += batch.byte_len();
                        group.push((batch, reply));
                        claims.push(claim);
                    }
                    Message::Probe(reply) => probes.push(reply),
                    Message::Close(reply) => {
                        close = Some(reply);
                        break;
                    }
                }
                next = if bytes < GROUP_MAX_BYTES {
                    receiver.try_recv().ok()
                } else {
                    None
                };
            }
            if !group.is_empty() {
                self.commit_group(group);
            }
            drop(claims);
            for reply in probes {
                let _ = reply.send(self.probe());
            }
            if let Some(reply) = close {
                self.finish(receiver);
                let _ = reply.send(());
                return;
            }
        }
    }

    /// Commits what is still queued, then completes the open segments.
    fn finish(&mut self, receiver: &mpsc::Receiver<Message>) {
        let mut group = Vec::new();
        let mut claims = Vec::new();
        while let Ok(message) = receiver.try_recv() {
            match message {
                Message::Commit(batch, claim, reply) => {
                    group.push((batch, reply));
                    claims.push(claim);
                }
                Message::Probe(reply) => {
                    let _ = reply.send(Err(SinkError::Closed));
                }
                Message::Close(reply) => {
                    let _ = reply.send(());
                }
            }
        }
        if !group.is_empty() {
            self.commit_group(group);
        }
        drop(claims);
        if let Some(layout) = self.layout.as_mut() {
            layout.seal_all(&self.metrics);
        }
    }

    /// Work of an idle moment: complete segments that are due, forget expired keys
    /// and the journal generations that only held those.
    fn tick(&mut self) {
        if let Some(layout) = self.layout.as_mut() {
            layout.seal_if_due(&self.settings, &self.metrics);
        }
        self.maintain_journal();
    }

    /// Writes a group of batches and answers each. Every batch's delivery was
    /// admitted by the sink's window, which lets one request per delivery through at
    /// a time, so no two batches of a group are the same delivery and none is a
    /// delivery already committed: the writer writes what it is given.
    pub(super) fn commit_group(&mut self, group: Vec<(Batch, Reply)>) {
        let started = Instant::now();
        let now = now_ms();
        let result = self.write_group(&group, now);
        match &result {
            Ok(()) => {
                // Remembered only now that the commit is durable; identical
                // deliveries waiting for these are answered with it.
                let end = self
                    .window
                    .commit(group.iter().map(|(batch, _)| (batch.dedup_key, now)));
                if let Some(layout) = self.layout.as_mut() {
                    layout.journal.note_keys(end);
                }
                self.metrics
                    .write_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.commit_deliveries.observe(group.len() as f64);
            }
            Err(error) => {
                // The failed operation was logged as an error where it failed, and
                // each delivery's answer logs a warning with this error.
                tracing::debug!(%error, deliveries = group.len(), "Storage commit failed; nothing of it is kept.");
            }
        }
        for (batch, reply) in group {
            let answer = match &result {
                Ok(()) => Ok(Committed::Written {
                    events: batch.events,
                }),
                Err(error) => Err(error.clone()),
            };
            let _ = reply.send(answer);
        }
        self.maintain_journal();
    }

    /// Writes a group: data to the open segments and synced, then one journal line
    /// synced. The directory is checked before and after: no group is acknowledged
    /// into files that a reader or a recovery would not find.
    fn write_group(&mut self, group: &[(Batch, Reply)], now: u64) -> Result<(), SinkError> {
        let Some(layout) = self.layout.as_mut() else {
            return Err(self.down_error());
        };
        if let Err(damage) = layout.check() {
            return Err(self.break_down(damage));
        }
        layout.seal_if_due(&self.settings, &self.metrics);
        let mut appended: Vec<(usize, u64)> = Vec::new();
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
            if layout.open[slot]
                .as_ref()
                .is_some_and(|segment| segment.data.dirty)
            {
                // A failed write in it could not be cut back: the journal keeps its
                // length, and completing it is retried.
                layout.seal(slot, &self.metrics);
            }
            if layout.open[slot].is_none() {
                self.sequence += 1;
                match OpenSegment::create(layout.root(), table.dir(), now, self.sequence) {
                    Ok(segment) => layout.open[slot] = Some(segment),
                    Err(error) => {
                        count_failure(&self.metrics, OPERATION_OPEN, &error);
                        layout.cut_back(&appended);
                        return Err(write_error(&error));
                    }
                }
            }
            let segment = layout.open[slot].as_mut().expect("a segment is open");
            let before = segment.data.committed;
            if let Err(error) = segment.data.append_durably(&parts) {
                count_failure(&self.metrics, OPERATION_WRITE, &error);
                layout.cut_back(&appended);
                return Err(write_error(&error));
            }
            appended.push((slot, before));
        }
        let segments: Vec<journal::SegmentLength<'_>> = appended
            .iter()
            .filter_map(|(slot, _)| layout.open[*slot].as_ref())
            .map(|segment| (segment.name.as_str(), segment.data.committed))
            .collect();
        let mut line = Vec::new();
        let written = journal::write_line(
            &mut line,
            &segments,
            now,
            group.iter().map(|(batch, _)| batch.dedup_key),
        );
        let journal_before = layout.journal.file.committed;
        if let Err(error) = written.and_then(|()| layout.journal.append(&line)) {
            // The data is synced but not acknowledged: cut it back off.
            count_failure(&self.metrics, OPERATION_JOURNAL, &error);
            layout.cut_back(&appended);
            return Err(write_error(&error));
        }
        if let Err(damage) = layout.check() {
            // Durable, but perhaps in files nobody will find: not acknowledged,
            // and cut back wherever the files are still reachable.
            layout.cut_back(&appended);
            layout.journal.file.cut_back_to(journal_before);
            return Err(self.break_down(damage));
        }
        Ok(())
    }

    /// Answers a health probe: checks the directory (and that files can still be
    /// created in it), or rebuilds it if it was found damaged earlier.
    pub(super) fn probe(&mut self) -> Result<(), SinkError> {
        let Some(layout) = &self.layout else {
            return self.rebuild();
        };
        match layout.check().and_then(|()| layout.check_writable()) {
            Ok(()) => Ok(()),
            Err(damage) => Err(self.break_down(damage)),
        }
    }

    /// Stops using a damaged directory; the next probe rebuilds it.
    fn break_down(&mut self, damage: String) -> SinkError {
        count_failure(&self.metrics, OPERATION_LAYOUT, &damage);
        if let Some(layout) = self.layout.take() {
            let torn_down = layout.tear_down(&self.metrics);
            self.torn_down.lengths.extend(torn_down.lengths);
            if torn_down.unrepaired.is_some() {
                self.torn_down.unrepaired = torn_down.unrepaired;
            }
        }
        self.down = Some(damage);
        self.down_error()
    }

    fn down_error(&self) -> SinkError {
        SinkError::Down(format!(
            "storage is down ({}); a health probe rebuilds it",
            self.down.as_deref().unwrap_or("not open")
        ))
    }

    /// Recreates the data directory after damage: its folders, the lock, a journal
    /// generation seeded with every remembered delivery, and recovers any segment
    /// found open there, as a restart would.
    fn rebuild(&mut self) -> Result<(), SinkError> {
        if let Some(journal) = self.torn_down.unrepaired.as_mut() {
            // A failed line in it must not be read as committed.
            let committed = journal.file.committed;
            journal.file.cut_back_to(committed);
            if journal.file.dirty {
                let error = "a failed journal write still cannot be cut back";
                count_failure(&self.metrics, OPERATION_REBUILD, &error);
                return Err(SinkError::Down(error.into()));
            }
            self.torn_down.unrepaired = None;
        }
        let opening = Opening {
            seed: true,
            lengths: self.torn_down.lengths.clone(),
        };
        match Layout::open(&self.settings, &self.window, &self.metrics, opening) {
            Ok((layout, recovery)) => {
                tracing::warn!(
                    data_dir = %self.settings.data_dir.display(),
                    damage = self.down.as_deref().unwrap_or_default(),
                    segments_recovered = recovery.segments_recovered,
                    bytes_truncated = recovery.bytes_truncated,
                    deliveries_remembered = recovery.deliveries_remembered,
                    "Storage rebuilt after its directory was damaged."
                );
                self.layout = Some(layout);
                self.down = None;
                self.torn_down = TornDown::default();
                Ok(())
            }
            Err(error) => {
                count_failure(&self.metrics, OPERATION_REBUILD, &error);
                Err(SinkError::Down(format!(
                    "storage cannot be rebuilt: {error}"
                )))
            }
        }
    }

    /// Starts a new journal generation when the current one is full, and deletes
    /// the generations whose keys have all been forgotten. Both are O(1) per commit
    /// amortised: no line is copied.
    fn maintain_journal(&mut self) {
        let Some(layout) = self.layout.as_mut() else {
            return;
        };
        let now = now_ms();
        if !layout.abandoned.is_empty() {
            layout.retry_abandoned();
        }
        if layout.journal.is_full() {
            let checkpoint: Vec<(String, u64)> = layout
                .checkpoint()
                .into_iter()
                .map(|(name, len)| (name.to_owned(), len))
                .collect();
            let checkpoint: Vec<journal::SegmentLength<'_>> = checkpoint
                .iter()
                .map(|(name, len)| (name.as_str(), *len))
                .collect();
            if let Err(error) = layout.journal.rotate(&checkpoint, now) {
                // The current generation keeps growing until a new one can start.
                count_failure(&self.metrics, OPERATION_ROTATE, &error);
                let next = layout.journal.next_path();
                if next.exists() {
                    // The failed start left its file behind: recovery would read
                    // its checkpoint after the newer lines of the current
                    // generation. A rebuild numbers past it and deletes it.
                    let damage = format!(
                        "a journal generation that failed to start could not be removed: {}",
                        next.display()
                    );
                    self.break_down(damage);
                    return;
                }
            }
        }
        let oldest = self.window.expire(now);
        layout.journal.forget_obsolete(oldest);
    }
}

fn write_error(error: &io::Error) -> SinkError {
    SinkError::Write(error.to_string())
}
