//! Segment files: their names, the append-only file both segments and the journal
//! are written through, and the recovery of a segment left open by a crash.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::clock::UtcTime;

/// An open segment's name starts with this: query engines skip such files.
pub(super) const OPEN_PREFIX: &str = "_";
/// An open segment's name ends with this, so `*.ndjson` globs miss it.
pub(super) const OPEN_SUFFIX: &str = ".open";
const SEGMENT_EXT: &str = ".ndjson";

/// Device and inode of a file or folder: what a path must still lead to for the
/// writer's open handles to be the files readers and recovery will find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    device: u64,
    inode: u64,
}

impl FileId {
    #[cfg(unix)]
    pub(super) fn of(metadata: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
        }
    }

    /// Without inode numbers a replaced file cannot be told from the original; the
    /// length checks still run.
    #[cfg(not(unix))]
    pub(super) fn of(_metadata: &fs::Metadata) -> Self {
        Self {
            device: 0,
            inode: 0,
        }
    }
}

/// A file that only grows by whole appends: a failed append is cut back off.
#[derive(Debug)]
pub(super) struct AppendFile {
    pub(super) file: File,
    /// Length of the durable, acknowledged prefix.
    pub(super) committed: u64,
    /// Set when cutting back a failed append itself failed: the file may hold bytes
    /// past `committed`, so nothing may be appended to it any more.
    pub(super) dirty: bool,
    /// What the file was when opened; the path must still lead here.
    id: FileId,
}

impl AppendFile {
    /// Opens `path` for appending, creating it if needed.
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        Self::from_file(OpenOptions::new().create(true).append(true).open(path)?)
    }

    /// Creates `path` for appending; fails if it exists.
    pub(super) fn create_new(path: &Path) -> io::Result<Self> {
        Self::from_file(
            OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(path)?,
        )
    }

    fn from_file(file: File) -> io::Result<Self> {
        let metadata = file.metadata()?;
        Ok(Self {
            committed: metadata.len(),
            id: FileId::of(&metadata),
            file,
            dirty: false,
        })
    }

    /// Appends and syncs `parts`; on failure cuts the file back to where it was.
    pub(super) fn append_durably(&mut self, parts: &[&[u8]]) -> io::Result<()> {
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
    pub(super) fn cut_back_to(&mut self, len: u64) {
        self.committed = len;
        match self.file.set_len(len).and_then(|()| self.file.sync_data()) {
            Ok(()) => self.dirty = false,
            Err(error) => {
                tracing::error!(%error, "Could not cut back a failed write.");
                self.dirty = true;
            }
        }
    }

    /// Checks that `path` still leads to this file and that the file holds exactly
    /// its committed bytes (unless a failed write is known to be left in it). Names
    /// what is wrong otherwise: the file was deleted, replaced, or cut or grown by
    /// someone else.
    pub(super) fn check(&self, path: &Path, what: &str) -> Result<(), String> {
        let at_path = fs::metadata(path)
            .map_err(|error| format!("the {what} {} is gone: {error}", path.display()))?;
        if FileId::of(&at_path) != self.id {
            return Err(format!("the {what} {} was replaced", path.display()));
        }
        if !self.dirty {
            let len = self
                .file
                .metadata()
                .map_err(|error| format!("the {what} {}: {error}", path.display()))?
                .len();
            if len != self.committed {
                return Err(format!(
                    "the {what} {} was changed: {len} bytes where {} were committed",
                    path.display(),
                    self.committed
                ));
            }
        }
        Ok(())
    }
}

/// A table's segment being written.
#[derive(Debug)]
pub(super) struct OpenSegment {
    /// Completed name, relative to the data directory (also the journal's key).
    pub(super) name: String,
    pub(super) data: AppendFile,
    pub(super) opened: Instant,
    pub(super) hour: (i64, u32, u32, u32),
}

impl OpenSegment {
    /// Creates a new open segment of the table in folder `table_dir`, for a commit at
    /// `now` (ms since the epoch); `sequence` tells apart segments opened in the same
    /// millisecond. The new file and its folders are synced, so a segment that holds
    /// synced data cannot lose its directory entry.
    pub(super) fn create(
        root: &Path,
        table_dir: &str,
        now: u64,
        sequence: u64,
    ) -> io::Result<Self> {
        let time = UtcTime::from_ms(now);
        let dir_rel = format!(
            "{table_dir}/dt={:04}-{:02}-{:02}/hour={:02}",
            time.year, time.month, time.day, time.hour
        );
        let file_name = format!(
            "part-{:04}{:02}{:02}T{:02}{:02}{:02}{:03}Z-{sequence:06}{SEGMENT_EXT}",
            time.year, time.month, time.day, time.hour, time.minute, time.second, time.millis,
        );
        let dir = root.join(&dir_rel);
        fs::create_dir_all(&dir)?;
        let data = AppendFile::open(&dir.join(format!("{OPEN_PREFIX}{file_name}{OPEN_SUFFIX}")))?;
        sync_dir(&dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(Self {
            name: format!("{dir_rel}/{file_name}"),
            data,
            opened: Instant::now(),
            hour: (time.year, time.month, time.day, time.hour),
        })
    }

    /// Checks that the segment is still where it was opened, as it was written.
    pub(super) fn check(&self, root: &Path) -> Result<(), String> {
        self.data
            .check(&open_path(root, &self.name), "open segment")
    }

    /// The length of the file now at the segment's path, if that is another file
    /// than the one the writer opened (the segment was replaced).
    pub(super) fn replaced_by(&self, root: &Path) -> Option<u64> {
        fs::metadata(open_path(root, &self.name))
            .ok()
            .filter(|metadata| FileId::of(metadata) != self.data.id)
            .map(|metadata| metadata.len())
    }

    /// Completes the segment: renames it to its final name (its data is already
    /// synced) and syncs the folder. An empty segment is removed instead. Returns
    /// whether a segment was completed.
    pub(super) fn seal(&self, root: &Path) -> io::Result<bool> {
        let open_path = open_path(root, &self.name);
        if self.data.committed == 0 {
            fs::remove_file(&open_path)?;
            return Ok(false);
        }
        let final_path = root.join(&self.name);
        fs::rename(&open_path, &final_path)?;
        sync_dir(final_path.parent().unwrap_or(Path::new(".")))?;
        Ok(true)
    }
}

/// Open segments anywhere below a table's folder.
pub(super) fn find_open_segments(table: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![table.to_owned()];
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
pub(super) fn completed_name(root: &Path, open: &Path) -> String {
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

/// Where the segment with completed `name` lies while it is open.
pub(super) fn open_path(root: &Path, name: &str) -> PathBuf {
    let path = root.join(name);
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{OPEN_PREFIX}{file}{OPEN_SUFFIX}"))
}

/// Cuts an open segment back to its committed length, then completes it (or removes
/// it when nothing in it was committed). Returns the number of bytes cut.
pub(super) fn recover_segment(open: &Path, committed: u64) -> io::Result<u64> {
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

/// Makes a folder's entries (files created, renamed or removed in it) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
