//! The data directory as the writer holds it: its folders, the lock, the journal and
//! the open segments, how it is opened and recovered, and how the writer checks
//! that the paths still lead to the files it writes.
//!
//! A directory can be changed under a running writer: deleted (`rm -rf`), moved
//! away and replaced, a segment or the journal deleted, replaced or cut by hand, its
//! permissions taken away. Open file handles keep working after their file is
//! unlinked, so writes and syncs would succeed into files no reader or recovery will
//! ever find. [`Layout::check`] compares every path with what the writer opened
//! (device and inode, and each file's committed length); the writer runs it before
//! and after each group commit, and on every health probe.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::journal::{self, Closed, Journal, SegmentLength};
use super::segment::{
    FileId, OpenSegment, completed_name, find_open_segments, open_path, recover_segment,
};
use super::{FileSinkSettings, OpenError, Recovery, TABLES};
use crate::clock::{UtcTime, duration_ms, now_ms};
use crate::metrics::StorageMetrics;
use crate::sink::dedup::SinkWindow;

/// Folder of the journal and the lock.
pub(super) const STATE_DIR: &str = "_hydrant";
const LOCK_FILE: &str = "lock";
/// Created and removed by each health probe, to learn that files can still be made.
const PROBE_FILE: &str = "probe";

/// How [`Layout::open`] treats what it finds.
#[derive(Debug, Default)]
pub(super) struct Opening {
    /// Write every remembered key into the new journal generation and delete the
    /// older ones: after the directory was damaged they may be gone or incomplete.
    pub(super) seed: bool,
    /// Committed lengths of segments the writer had open, which take precedence over
    /// what journals on disk say.
    pub(super) lengths: HashMap<String, u64>,
}

/// The open data directory.
#[derive(Debug)]
pub(super) struct Layout {
    root: PathBuf,
    /// Folders that must still be the ones opened: the root, the state folder and
    /// each table's folder.
    folders: Vec<(PathBuf, FileId)>,
    lock_path: PathBuf,
    lock_id: FileId,
    /// Held while the layout is; dropping it releases the lock.
    _lock: File,
    pub(super) journal: Journal,
    /// The open segment of each table, indexed like [`TABLES`].
    pub(super) open: [Option<OpenSegment>; TABLES.len()],
    /// Segments the writer stopped using while they were still open on disk (their
    /// completion failed, or a failed write in them could not be cut back), with
    /// their committed lengths. Every journal checkpoint names them, so a recovery
    /// never cuts them to nothing; completing them is retried.
    pub(super) abandoned: Vec<(String, u64)>,
}

impl Layout {
    /// Creates the folders, takes the lock, seeds the sink's duplicate `window` with
    /// the deliveries the journal names, recovers segments left open (cutting each
    /// back to its committed length) and starts a new journal generation.
    ///
    /// The window is shared with the fan-out, which may use it meanwhile (during a
    /// rebuild): it is locked only to take each generation's keys, never while a
    /// file is read or written.
    pub(super) fn open(
        settings: &FileSinkSettings,
        window: &SinkWindow,
        metrics: &StorageMetrics,
        opening: Opening,
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
        let lock_id = FileId::of(&lock.metadata().map_err(io_error(&lock_path))?);

        let now = now_ms();
        let window_ms = duration_ms(settings.dedup_window);
        let mut lengths = HashMap::new();
        let mut closed = VecDeque::new();
        let generations = journal::list_generations(&state).map_err(io_error(&state))?;
        let next_number = generations.last().map_or(1, |last| last.number + 1);
        for generation in generations {
            let mut keys = Vec::new();
            journal::replay(&generation.path, &mut lengths, |key, at| {
                if now.saturating_sub(at) <= window_ms {
                    keys.push((key, at));
                }
            })
            .map_err(io_error(&generation.path))?;
            let end = window.commit(keys);
            closed.push_back(Closed {
                path: generation.path,
                end: if opening.seed { 0 } else { end },
            });
        }
        lengths.extend(opening.lengths);

        let mut recovery = Recovery::default();
        let mut open_segments = Vec::new();
        for table in TABLES {
            open_segments
                .extend(find_open_segments(&root.join(table.dir())).map_err(io_error(&root))?);
        }
        for open in open_segments {
            let name = completed_name(&root, &open);
            let committed = lengths.get(&name).copied().unwrap_or(0);
            let cut = recover_segment(&open, committed).map_err(io_error(&open))?;
            recovery.segments_recovered += 1;
            recovery.bytes_truncated += cut;
        }
        metrics
            .recovery_truncated_bytes
            .inc_by(recovery.bytes_truncated);
        recovery.deliveries_remembered = window.len();

        // Every segment is completed now, so the new generation's checkpoint names
        // none, and no older generation is needed for segment lengths any more.
        let (seed, end) = if opening.seed {
            let (keys, end) = window.snapshot();
            (Some(keys), end)
        } else {
            (None, window.inserted())
        };
        let mut journal =
            Journal::start(&state, next_number, &[], now, seed.as_deref(), end, closed)
                .map_err(io_error(&state))?;
        journal.forget_obsolete(window.expire(now));

        let mut folders = Vec::new();
        for folder in [root.clone(), state]
            .into_iter()
            .chain(TABLES.iter().map(|table| root.join(table.dir())))
        {
            let metadata = fs::metadata(&folder).map_err(io_error(&folder))?;
            folders.push((folder, FileId::of(&metadata)));
        }
        Ok((
            Self {
                root,
                folders,
                lock_path,
                lock_id,
                _lock: lock,
                journal,
                open: [None, None],
                abandoned: Vec::new(),
            },
            recovery,
        ))
    }

    /// The data directory.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Checks that every path still leads to what the writer holds open: the
    /// folders, the lock, the journal generation and the open segments, each file
    /// with exactly its committed bytes. Names the first thing found wrong.
    pub(super) fn check(&self) -> Result<(), String> {
        for (folder, id) in &self.folders {
            let metadata = fs::metadata(folder)
                .map_err(|error| format!("the folder {} is gone: {error}", folder.display()))?;
            if !metadata.is_dir() || FileId::of(&metadata) != *id {
                return Err(format!("the folder {} was replaced", folder.display()));
            }
        }
        let lock = fs::metadata(&self.lock_path)
            .map_err(|error| format!("the lock {} is gone: {error}", self.lock_path.display()))?;
        if FileId::of(&lock) != self.lock_id {
            return Err(format!(
                "the lock {} was replaced",
                self.lock_path.display()
            ));
        }
        self.journal.check()?;
        for segment in self.open.iter().flatten() {
            if !segment.data.dirty {
                segment.check(&self.root)?;
            }
        }
        Ok(())
    }

    /// Checks that a file can still be created next to the journal (permissions,
    /// a read-only or immutable file system), as the next segment or journal
    /// generation will need.
    pub(super) fn check_writable(&self) -> Result<(), String> {
        let path = self.lock_path.with_file_name(PROBE_FILE);
        File::create(&path)
            .and_then(|_| fs::remove_file(&path))
            .map_err(|error| format!("cannot create files in {}: {error}", self.root.display()))
    }

    /// What a journal checkpoint names: every segment still open on disk, with its
    /// committed length.
    pub(super) fn checkpoint(&self) -> Vec<SegmentLength<'_>> {
        self.open
            .iter()
            .flatten()
            .map(|segment| (segment.name.as_str(), segment.data.committed))
            .chain(
                self.abandoned
                    .iter()
                    .map(|(name, len)| (name.as_str(), *len)),
            )
            .collect()
    }

    /// Completes the open segments that are due: full, old, or of a past hour.
    pub(super) fn seal_if_due(&mut self, settings: &FileSinkSettings, metrics: &StorageMetrics) {
        let now = UtcTime::from_ms(now_ms());
        for slot in 0..TABLES.len() {
            let Some(segment) = &self.open[slot] else {
                continue;
            };
            let due = segment.data.committed >= settings.segment_max_bytes
                || segment.opened.elapsed() >= settings.segment_max_age
                || segment.hour != (now.year, now.month, now.day, now.hour);
            if due {
                self.seal(slot, metrics);
            }
        }
    }

    /// Completes every open segment.
    pub(super) fn seal_all(&mut self, metrics: &StorageMetrics) {
        for slot in 0..TABLES.len() {
            self.seal(slot, metrics);
        }
    }

    /// Completes a table's open segment. If that fails, the segment stays open on
    /// disk and is remembered as abandoned, so the journal keeps its length.
    pub(super) fn seal(&mut self, slot: usize, metrics: &StorageMetrics) {
        let Some(segment) = self.open[slot].take() else {
            return;
        };
        if segment.data.dirty {
            self.abandon(&segment);
            return;
        }
        match segment.seal(&self.root) {
            Ok(true) => metrics.segments_sealed.inc(),
            Ok(false) => {}
            Err(error) => {
                super::failure::count_failure(metrics, super::failure::OPERATION_SEAL, &error);
                self.abandon(&segment);
            }
        }
    }

    fn abandon(&mut self, segment: &OpenSegment) {
        self.abandoned
            .push((segment.name.clone(), segment.data.committed));
    }

    /// Retries completing abandoned segments (cut back to their committed length).
    pub(super) fn retry_abandoned(&mut self) {
        let root = &self.root;
        self.abandoned.retain(|(name, len)| {
            let path = open_path(root, name);
            match recover_segment(&path, *len) {
                Ok(_) => false,
                Err(error) if error.kind() == io::ErrorKind::NotFound => false,
                Err(_) => true,
            }
        });
    }

    /// Cuts the segments appended to by a failed group back to where they stood.
    pub(super) fn cut_back(&mut self, appended: &[(usize, u64)]) {
        for (slot, before) in appended {
            if let Some(segment) = self.open[*slot].as_mut() {
                segment.data.cut_back_to(*before);
            }
        }
    }

    /// Stops using the directory after damage was found: completes the open
    /// segments that are still intact (so no recovery can cut them), and releases
    /// the lock. Returns what a rebuild needs: the committed lengths of segments
    /// that could not be completed, and the journal if a failed write in it could
    /// not be cut back (it must be, before anything reads the directory again).
    pub(super) fn tear_down(mut self, metrics: &StorageMetrics) -> TornDown {
        let mut lengths: HashMap<String, u64> = HashMap::new();
        for slot in 0..TABLES.len() {
            let Some(segment) = self.open[slot].take() else {
                continue;
            };
            if !segment.data.dirty && segment.check(&self.root).is_ok() {
                match segment.seal(&self.root) {
                    Ok(true) => {
                        metrics.segments_sealed.inc();
                        continue;
                    }
                    Ok(false) => continue,
                    Err(_) => {}
                }
            }
            let len = match segment.replaced_by(&self.root) {
                // Someone else's file stands there now: it is not the writer's to
                // cut, so it is kept whole and completed.
                Some(theirs) => theirs,
                // The writer's own file, or nothing: cut back to what was committed,
                // as a restart after a crash would.
                None => segment.data.committed,
            };
            lengths.insert(segment.name.clone(), len);
        }
        lengths.extend(self.abandoned.drain(..));
        if self.journal.file.dirty {
            let committed = self.journal.file.committed;
            self.journal.file.cut_back_to(committed);
        }
        let unrepaired = if self.journal.file.dirty {
            Some(self.journal)
        } else {
            None
        };
        TornDown {
            lengths,
            unrepaired,
        }
    }
}

/// What [`Layout::tear_down`] hands to the next [`Layout::open`].
#[derive(Debug, Default)]
pub(super) struct TornDown {
    pub(super) lengths: HashMap<String, u64>,
    pub(super) unrepaired: Option<Journal>,
}
