//! The commit journal, in generations.
//!
//! Every group commit appends one line: the committed lengths of the segments it
//! wrote to and the keys of the deliveries it stored. The journal is a series of
//! files, `_hydrant/journal-<n>.ndjson`, each a *generation*. Only the newest one is
//! written to. Once it passes [`GENERATION_BYTES`] the writer starts the next one,
//! whose first line is a checkpoint of every open segment's committed length. So
//! the newest generation alone knows the open segments, and an older generation is
//! only kept for the delivery keys it holds: it is deleted as a whole once every one
//! of them has left the sink's in-memory duplicate window. No line is ever copied or
//! rewritten, so the cost per commit does not grow with the window.
//!
//! Recovery reads every generation oldest first (a journal from before generations,
//! `_hydrant/journal.ndjson`, counts as the oldest). A line that does not parse, such
//! as a torn last line after a crash, is skipped: its commit was never answered.
//!
//! Lines look like
//! `{"segments":[{"name":"events/dt=…/part-….ndjson","len":123}],"at":1700000000000,"ids":["<32 hex digits>"]}`;
//! journals written before keys were hashed name them in `keys` as `"<ARN> <id>"`,
//! which is still read.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::segment::{AppendFile, sync_dir};
use crate::limits::MIB;
use crate::sink::dedup::DeliveryKey;

/// The single journal file written before generations: read (as the oldest
/// generation) and deleted like one, never written.
pub(super) const LEGACY_JOURNAL_FILE: &str = "journal.ndjson";
/// The temporary file the single-file journal was rewritten through; one left by a
/// crash never replaced the journal, so it holds nothing needed.
const LEGACY_TEMPORARY_FILE: &str = "journal.ndjson.tmp";
const GENERATION_PREFIX: &str = "journal-";
const GENERATION_SUFFIX: &str = ".ndjson";

/// A generation is closed, and the next one started, once it holds this many bytes.
/// Starting one costs a file creation and two syncs, about what one commit costs, so
/// at ~170 bytes per single-delivery commit that cost is spread over ~25,000
/// commits; and a generation can only be deleted when all of its keys are
/// forgotten, so smaller generations free disk space sooner. A window of 1 M
/// deliveries, one per commit, is kept in about 40 of them.
pub(super) const GENERATION_BYTES: u64 = 4 * MIB;

/// One line as read: borrowed from the file's bytes where possible.
#[derive(Debug, Deserialize)]
struct Line<'a> {
    #[serde(default, borrow)]
    segments: Vec<SegmentLine<'a>>,
    at: u64,
    #[serde(default, borrow)]
    ids: Vec<Text<'a>>,
    /// Keys as journals written before keys were hashed name them.
    #[serde(default, borrow)]
    keys: Vec<Text<'a>>,
}

#[derive(Debug, Deserialize)]
struct SegmentLine<'a> {
    #[serde(borrow)]
    name: Text<'a>,
    len: u64,
}

/// A JSON string, borrowed unless it had escapes.
#[derive(Debug, Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A segment's name (relative to the data directory, as completed) and a length.
pub(super) type SegmentLength<'a> = (&'a str, u64);

/// Appends one journal line to `out`: the segments' committed lengths, the commit
/// time (ms since the epoch) and the delivery keys.
pub(super) fn write_line(
    out: &mut Vec<u8>,
    segments: &[SegmentLength<'_>],
    at: u64,
    keys: impl IntoIterator<Item = DeliveryKey>,
) -> io::Result<()> {
    out.push(b'{');
    if !segments.is_empty() {
        out.extend_from_slice(br#""segments":["#);
        for (n, (name, len)) in segments.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"name":"#);
            serde_json::to_writer(&mut *out, name).map_err(io::Error::other)?;
            out.extend_from_slice(br#","len":"#);
            out.extend_from_slice(itoa::Buffer::new().format(*len).as_bytes());
            out.push(b'}');
        }
        out.extend_from_slice(b"],");
    }
    out.extend_from_slice(br#""at":"#);
    out.extend_from_slice(itoa::Buffer::new().format(at).as_bytes());
    let mut keys = keys.into_iter().peekable();
    if keys.peek().is_some() {
        out.extend_from_slice(br#","ids":["#);
        for (n, key) in keys.enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.push(b'"');
            key.write_hex(out);
            out.push(b'"');
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

fn generation_path(state: &Path, number: u64) -> PathBuf {
    state.join(format!("{GENERATION_PREFIX}{number:06}{GENERATION_SUFFIX}"))
}

/// A generation file found on disk.
#[derive(Debug)]
pub(super) struct GenerationFile {
    /// Its number; the legacy single journal is 0.
    pub(super) number: u64,
    pub(super) path: PathBuf,
}

/// The journal's generations in `state`, oldest first. A leftover temporary file of
/// the legacy journal's rewrite is removed.
pub(super) fn list_generations(state: &Path) -> io::Result<Vec<GenerationFile>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(state)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == LEGACY_JOURNAL_FILE {
            found.push(GenerationFile {
                number: 0,
                path: entry.path(),
            });
        } else if name == LEGACY_TEMPORARY_FILE {
            fs::remove_file(entry.path())?;
        } else if let Some(number) = name
            .strip_prefix(GENERATION_PREFIX)
            .and_then(|rest| rest.strip_suffix(GENERATION_SUFFIX))
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok())
        {
            found.push(GenerationFile {
                number,
                path: entry.path(),
            });
        }
    }
    found.sort_by_key(|generation| generation.number);
    Ok(found)
}

/// Reads one generation: records each segment's last committed length in `lengths`
/// and hands every delivery key with its commit time to `key`, in file order.
pub(super) fn replay(
    path: &Path,
    lengths: &mut HashMap<String, u64>,
    mut key: impl FnMut(DeliveryKey, u64),
) -> io::Result<()> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for line in bytes.split(|byte| *byte == b'\n') {
        let Ok(entry) = serde_json::from_slice::<Line<'_>>(line) else {
            continue;
        };
        for segment in entry.segments {
            let name = segment.name.0;
            match lengths.get_mut(name.as_ref()) {
                Some(len) => *len = segment.len,
                None => {
                    lengths.insert(name.into_owned(), segment.len);
                }
            }
        }
        for id in &entry.ids {
            if let Some(parsed) = DeliveryKey::from_hex(&id.0) {
                key(parsed, entry.at);
            }
        }
        for legacy in &entry.keys {
            key(DeliveryKey::from_legacy(&legacy.0), entry.at);
        }
    }
    Ok(())
}

/// A closed generation, kept until every key in it has been forgotten.
#[derive(Debug)]
pub(super) struct Closed {
    pub(super) path: PathBuf,
    /// Window insertion position just past the last key this generation holds: it
    /// may be deleted once the sink's window forgot every key before it
    /// ([`crate::sink::dedup::DedupWindow::oldest_position`]).
    pub(super) end: u64,
}

/// The journal: the generation being written and the closed ones still needed.
#[derive(Debug)]
pub(super) struct Journal {
    state: PathBuf,
    number: u64,
    path: PathBuf,
    pub(super) file: AppendFile,
    /// As [`Closed::end`], for the generation being written.
    end: u64,
    closed: VecDeque<Closed>,
    /// Size at which the generation being written is closed: [`GENERATION_BYTES`]
    /// (tests lower it to rotate often).
    pub(super) limit: u64,
}

impl Journal {
    /// Starts generation `number` in `state`: its first line is a checkpoint of the
    /// open segments' committed lengths; with `seed` (every key the window remembers,
    /// oldest first, with its commit time), lines of those keys follow (when the
    /// older generations cannot be relied on). The file
    /// and its directory entry are synced before it is used, so a closed generation
    /// is never deleted in favour of one that a crash could lose.
    pub(super) fn start(
        state: &Path,
        number: u64,
        checkpoint: &[SegmentLength<'_>],
        at: u64,
        seed: Option<&[(DeliveryKey, u64)]>,
        end: u64,
        closed: VecDeque<Closed>,
    ) -> io::Result<Self> {
        /// Seeded keys are written this many to a line.
        const SEED_KEYS_PER_LINE: usize = 1024;
        let path = generation_path(state, number);
        let mut out = Vec::new();
        write_line(&mut out, checkpoint, at, [])?;
        if let Some(seed) = seed {
            let mut keys = seed.iter().copied().peekable();
            while let Some((first, first_at)) = keys.next() {
                let mut line = vec![first];
                while line.len() < SEED_KEYS_PER_LINE
                    && let Some((key, _)) = keys.next_if(|(_, key_at)| *key_at == first_at)
                {
                    line.push(key);
                }
                write_line(&mut out, &[], first_at, line)?;
            }
        }
        let mut file = AppendFile::create_new(&path)?;
        let written = file.append_durably(&[&out]).and_then(|()| sync_dir(state));
        if let Err(error) = written {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(error);
        }
        Ok(Self {
            state: state.to_owned(),
            number,
            path,
            file,
            end,
            closed,
            limit: GENERATION_BYTES,
        })
    }

    /// Path of the generation being written.
    #[cfg(test)]
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and syncs a line; on failure nothing of it is left (or the file is
    /// marked dirty).
    pub(super) fn append(&mut self, line: &[u8]) -> io::Result<()> {
        self.file.append_durably(&[line])
    }

    /// Notes that the keys of the last line are now remembered up to window
    /// position `end`.
    pub(super) fn note_keys(&mut self, end: u64) {
        self.end = end;
    }

    /// Whether the generation being written is due to be closed.
    pub(super) fn is_full(&self) -> bool {
        self.file.committed >= self.limit
    }

    /// Where the next generation goes.
    pub(super) fn next_path(&self) -> PathBuf {
        generation_path(&self.state, self.number + 1)
    }

    /// Closes the generation being written and starts the next, with a checkpoint.
    pub(super) fn rotate(&mut self, checkpoint: &[SegmentLength<'_>], at: u64) -> io::Result<()> {
        let next = Self::start(
            &self.state,
            self.number + 1,
            checkpoint,
            at,
            None,
            self.end,
            VecDeque::new(),
        )?;
        let previous = std::mem::replace(self, next);
        self.closed = previous.closed;
        self.limit = previous.limit;
        self.closed.push_back(Closed {
            path: previous.path,
            end: previous.end,
        });
        Ok(())
    }

    /// Deletes the closed generations whose keys have all left the window (the
    /// oldest one still remembered is at `oldest_position`). A failure is logged
    /// and retried on the next call: an extra generation only costs disk space and
    /// reading time.
    pub(super) fn forget_obsolete(&mut self, oldest_position: u64) {
        while let Some(oldest) = self.closed.front()
            && oldest.end <= oldest_position
        {
            match fs::remove_file(&oldest.path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(%error, generation = %oldest.path.display(), "Could not delete an old journal generation.");
                    return;
                }
            }
            self.closed.pop_front();
        }
    }

    /// Closed generations still kept.
    #[cfg(test)]
    pub(super) fn closed(&self) -> usize {
        self.closed.len()
    }

    /// Checks that the generation being written is still in place, as written.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.file.dirty {
            return Err(format!(
                "the journal {} holds a failed write that could not be cut back",
                self.path.display()
            ));
        }
        self.file.check(&self.path, "journal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines read back as written, names with characters JSON escapes included.
    #[test]
    fn lines_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal-000001.ndjson");
        let keys = [
            DeliveryKey::new(None, "a"),
            DeliveryKey::new(Some("arn"), "b"),
        ];
        let mut out = Vec::new();
        write_line(
            &mut out,
            &[("events/x.ndjson", 7), ("weird \"name\"", 9)],
            5,
            keys,
        )
        .unwrap();
        write_line(&mut out, &[("events/x.ndjson", 12)], 6, []).unwrap();
        out.extend_from_slice(br#"{"at":7,"keys":["arn c","- d"]}"#);
        out.extend_from_slice(b"\n{\"at\":8,\"ids\":[\"torn");
        fs::write(&path, &out).unwrap();
        let mut lengths = HashMap::new();
        let mut read = Vec::new();
        replay(&path, &mut lengths, |key, at| read.push((key, at))).unwrap();
        assert_eq!(lengths.len(), 2);
        assert_eq!(lengths["events/x.ndjson"], 12);
        assert_eq!(lengths["weird \"name\""], 9);
        assert_eq!(
            read,
            [
                (keys[0], 5),
                (keys[1], 5),
                (DeliveryKey::new(Some("arn"), "c"), 7),
                (DeliveryKey::new(None, "d"), 7)
            ]
        );
    }

    #[test]
    fn generations_are_listed_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "journal-000010.ndjson",
            "journal-000002.ndjson",
            LEGACY_JOURNAL_FILE,
            LEGACY_TEMPORARY_FILE,
            "journal-.ndjson",
            "journal-x.ndjson",
            "lock",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let numbers: Vec<u64> = list_generations(dir.path())
            .unwrap()
            .iter()
            .map(|generation| generation.number)
            .collect();
        assert_eq!(numbers, [0, 2, 10]);
        assert!(!dir.path().join(LEGACY_TEMPORARY_FILE).exists());
    }
}
