//! Reloading files without a restart: the TLS certificate and the access keys are
//! read again when the process gets SIGHUP and when one of their files changes.
//!
//! A change is found by polling each file's modification time, size and inode
//! every [`POLL_INTERVAL`], so it takes effect within 10 seconds, also where no
//! one sends a signal (a Kubernetes secret or a certbot renewal updates the files
//! in place or replaces them through a symlink; both change what this sees).
//! Polling is used rather than inotify: it needs no dependency, works on every
//! file system and through symlink swaps, and a few `stat` calls every 5 s cost
//! nothing.
//!
//! A reload that fails (a file half written, a key file with no key) keeps what
//! was in use, logs one line and counts the failure: what serves traffic is only
//! ever replaced by something complete and checked.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// How often watched files are checked for a change: half of the 10 seconds
/// within which a change must take effect.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// What a file looked like the last time it was checked; `None` when it could not
/// be read (missing), which is a state of its own: a file that appears again is a
/// change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl Stamp {
    fn of(path: &std::path::Path) -> Option<Self> {
        // `metadata` follows symlinks: a symlink swapped to a new target is the
        // target's change.
        let metadata = std::fs::metadata(path).ok()?;
        Some(Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&metadata),
        })
    }
}

/// A set of files and what they looked like when last seen.
#[derive(Debug, Clone)]
pub struct Files {
    paths: Vec<PathBuf>,
    stamps: Vec<Option<Stamp>>,
}

impl Files {
    /// Starts watching `paths` as they are now.
    #[must_use]
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let stamps = paths.iter().map(|path| Stamp::of(path)).collect();
        Self { paths, stamps }
    }

    /// Watches `paths` from now on, as they are now; files watched already keep
    /// what was last seen of them.
    pub fn watch(&mut self, paths: Vec<PathBuf>) {
        if paths == self.paths {
            return;
        }
        let stamps = paths
            .iter()
            .map(|path| match self.paths.iter().position(|old| old == path) {
                Some(at) => self.stamps[at],
                None => Stamp::of(path),
            })
            .collect();
        self.paths = paths;
        self.stamps = stamps;
    }

    /// Whether any file changed since the last call (or since [`Self::new`]).
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        for (path, stamp) in self.paths.iter().zip(&mut self.stamps) {
            let now = Stamp::of(path);
            if now != *stamp {
                *stamp = now;
                changed = true;
            }
        }
        changed
    }
}

/// SIGHUPs received, as a counter that changes with each one; every reloader
/// watches its own receiver.
#[derive(Debug, Clone)]
pub struct Hangups(watch::Receiver<u64>);

impl Hangups {
    /// Listens for SIGHUP for the rest of the process's life. SIGHUP's default
    /// action ends the process at once, without draining, so this also keeps a
    /// closed terminal from stopping Hydrant. Needs a runtime with signal
    /// handling; off Unix, or when the signal cannot be listened for, no SIGHUP
    /// ever arrives (the file checks still work).
    #[must_use]
    pub fn listen() -> Self {
        let (sender, receiver) = watch::channel(0_u64);
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hangups) => {
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        tracing::info!(
                            signal = "SIGHUP",
                            "Reload requested: reading the TLS certificate and the access keys again."
                        );
                        sender.send_modify(|count| *count += 1);
                    }
                });
            }
            Err(error) => tracing::error!(%error, "Cannot listen for SIGHUP."),
        }
        #[cfg(not(unix))]
        drop(sender);
        Self(receiver)
    }

    /// A sender of hangups and the [`Hangups`] it feeds, for tests.
    #[must_use]
    pub fn manual() -> (watch::Sender<u64>, Self) {
        let (sender, receiver) = watch::channel(0_u64);
        (sender, Self(receiver))
    }

    /// Resolves at the next SIGHUP; never, once no more can come.
    async fn next(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Calls `reload` on every SIGHUP and whenever one of `files` changes, checking
/// them every `interval`, until the task is aborted. `reload` does the reading,
/// the checking, the swapping, the log line and the counting; it returns the
/// files to watch from then on when they changed (a configuration file that now
/// names another key file), or `None` to keep watching the same.
pub fn spawn(
    mut files: Files,
    mut hangups: Hangups,
    interval: Duration,
    mut reload: impl FnMut() -> Option<Vec<PathBuf>> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = tokio::select! {
                () = hangups.next() => {
                    // Take the files' new state, so the next tick does not reload
                    // the same change again.
                    files.changed();
                    true
                }
                _ = ticks.tick() => files.changed(),
            };
            if due && let Some(paths) = reload() {
                files.watch(paths);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_file_is_changed_when_written_replaced_removed_or_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "one").unwrap();
        let mut files = Files::new(vec![path.clone()]);
        assert!(!files.changed(), "nothing yet");
        std::fs::write(&path, "longer").unwrap();
        assert!(files.changed(), "written in place");
        assert!(!files.changed(), "seen once");
        // Replaced by a rename, as editors and secret mounts do: a new inode.
        let next = dir.path().join("key.new");
        std::fs::write(&next, "longer").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(files.changed(), "replaced");
        std::fs::remove_file(&path).unwrap();
        assert!(files.changed(), "removed");
        assert!(!files.changed());
        std::fs::write(&path, "again").unwrap();
        assert!(files.changed(), "back");
    }

    #[tokio::test]
    async fn reloads_follow_hangups_and_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, "a").unwrap();
        let (hangup, hangups) = Hangups::manual();
        let count = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&count);
        let task = spawn(
            Files::new(vec![path.clone()]),
            hangups,
            Duration::from_millis(20),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                None
            },
        );
        let settle = || tokio::time::sleep(Duration::from_millis(120));
        settle().await;
        assert_eq!(count.load(Ordering::SeqCst), 0, "no reload without a cause");
        hangup.send_modify(|n| *n += 1);
        settle().await;
        assert_eq!(count.load(Ordering::SeqCst), 1, "a hangup");
        std::fs::write(&path, "bb").unwrap();
        settle().await;
        assert_eq!(count.load(Ordering::SeqCst), 2, "a change, once");
        task.abort();
    }

    /// A reload that names other files has those watched from then on.
    #[tokio::test]
    async fn a_reload_can_change_the_files_watched() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("a.keys"), dir.path().join("b.keys"));
        std::fs::write(&first, "a").unwrap();
        std::fs::write(&second, "b").unwrap();
        let (hangup, hangups) = Hangups::manual();
        let count = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&count);
        let next = vec![first.clone(), second.clone()];
        let task = spawn(
            Files::new(vec![first.clone()]),
            hangups,
            Duration::from_millis(20),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                Some(next.clone())
            },
        );
        let settle = || tokio::time::sleep(Duration::from_millis(120));
        std::fs::write(&second, "bb").unwrap();
        settle().await;
        assert_eq!(count.load(Ordering::SeqCst), 0, "b is not watched yet");
        hangup.send_modify(|n| *n += 1);
        settle().await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
        std::fs::write(&second, "bbb").unwrap();
        settle().await;
        assert_eq!(count.load(Ordering::SeqCst), 2, "b is watched now");
        task.abort();
    }
}
