//! Tests of the file sink: commits, segments, recovery, duplicates, and damage to
//! the data directory under a running writer.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::journal::LEGACY_JOURNAL_FILE;
use super::layout::{Layout, STATE_DIR};
use super::segment::find_open_segments;
use super::writer::Writer;
use super::*;
use crate::clock::now_ms;
use crate::metrics::Metrics;

/// The writer's open layout.
fn layout(writer: &mut Writer) -> &mut Layout {
    writer.layout.as_mut().expect("the layout is open")
}

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
        layout(&mut writer).open[slot]
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
    let segment = layout(&mut writer).open[0].as_mut().unwrap();
    segment.data.file.write_all(b"two\n").unwrap();
    layout(&mut writer)
        .journal
        .file
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
    let journal_path = layout(&mut writer).journal.path().to_owned();
    layout(&mut writer).journal.file.file =
        OpenOptions::new().read(true).open(&journal_path).unwrap();
    let (reply, answer) = oneshot::channel();
    writer.commit_group(vec![(batch("b", "two\n"), reply)]);
    assert!(matches!(answer.await.unwrap(), Err(SinkError::Write(_))));
    assert!(
        !writer.window.has_committed(&DeliveryKey::new(None, "b")),
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
        state.join(LEGACY_JOURNAL_FILE),
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

/// Makes `journal` (the writer's current generation) refuse writes, so the next
/// group fails after its data was synced.
fn break_journal(writer: &mut Writer) {
    let journal = &mut layout(writer).journal;
    let path = journal.path().to_owned();
    journal.file.file = OpenOptions::new().read(true).open(path).unwrap();
}

/// Identical deliveries while the first is being written: the sink's window lets
/// the first through and holds the copy, which is not answered "duplicate" before
/// its original is durable. If the original's write fails (its group fails), the
/// copy fails too, and neither is remembered.
#[tokio::test]
async fn identical_deliveries_in_a_failed_group_all_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _) = Writer::open(settings(dir.path()), storage_metrics()).unwrap();
    break_journal(&mut writer);
    let key = DeliveryKey::new(None, "same");
    let window = std::sync::Arc::clone(&writer.window);
    let Admission::Claimed(claim) = window.admit(key) else {
        panic!("the first delivery is claimed");
    };
    let Admission::Wait(copy) = window.admit(key) else {
        panic!("an identical delivery in flight is waited for");
    };
    let copy = tokio::spawn(copy.outcome());
    let (first, first_answer) = oneshot::channel();
    writer.commit_group(vec![(batch("same", "one\n"), first)]);
    let first_answer = first_answer.await.unwrap();
    tokio::task::yield_now().await;
    assert!(
        !copy.is_finished(),
        "the copy waits for its original's outcome"
    );
    claim.finish(&first_answer);
    assert!(matches!(first_answer, Err(SinkError::Write(_))));
    assert!(
        matches!(copy.await.unwrap(), Err(SinkError::Write(_))),
        "a copy shares its original's failure"
    );
    assert!(!writer.window.has_committed(&key));
}

/// Through the sink's queue: eight identical deliveries become one group whose
/// write fails (a file blocks the partition folder); every one of them fails, and
/// the retry, once the folder is free, is stored.
#[tokio::test]
async fn identical_concurrent_deliveries_share_a_failed_write() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, release) = FileSink::open_held(settings(dir.path()), storage_metrics());
    let sink = std::sync::Arc::new(sink);
    let blocked = block_partition_folders(dir.path());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let sink = std::sync::Arc::clone(&sink);
            tokio::spawn(async move { sink.commit(batch("dup", "x\n")).await })
        })
        .collect();
    // Let every task queue its batch before the writer starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.send(()).unwrap();
    for task in tasks {
        let answer = task.await.unwrap();
        assert!(matches!(answer, Err(SinkError::Write(_))), "{answer:?}");
    }
    for file in blocked {
        fs::remove_file(file).unwrap();
    }
    assert_eq!(
        sink.commit(batch("dup", "x\n")).await,
        Ok(Committed::Written { events: 1 })
    );
    sink.close().await;
    assert_eq!(completed_lines(dir.path()), ["x"]);
}

/// Puts files where the `events` partition folders of this minute's commits go,
/// so opening a segment fails; returns them.
fn block_partition_folders(root: &Path) -> Vec<PathBuf> {
    let mut blocked = Vec::new();
    for at in [now_ms(), now_ms() + 60_000] {
        let time = crate::clock::UtcTime::from_ms(at);
        let folder = root.join(format!(
            "{EVENTS_DIR}/dt={:04}-{:02}-{:02}",
            time.year, time.month, time.day
        ));
        if !blocked.contains(&folder) {
            fs::write(&folder, b"x").unwrap();
            blocked.push(folder);
        }
    }
    blocked
}

/// `rm -rf` of the data directory under a running sink: the next delivery is
/// refused (its data would only reach unlinked files), the sink is down until a
/// probe rebuilds the directory, and then deliveries are stored in the new one. The
/// rebuilt journal remembers what was acknowledged before, across a restart too.
#[tokio::test]
async fn a_deleted_data_directory_is_refused_then_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let sink = FileSink::open(settings(&root), storage_metrics()).unwrap();
    sink.commit(batch("before", "one\n")).await.unwrap();
    fs::remove_dir_all(&root).unwrap();

    let refused = sink.commit(batch("during", "two\n")).await;
    assert!(matches!(refused, Err(SinkError::Down(_))), "{refused:?}");
    assert!(!root.exists(), "nothing is written while it is down");
    assert!(matches!(
        sink.commit(batch("during", "two\n")).await,
        Err(SinkError::Down(_))
    ));

    assert_eq!(sink.probe().await, Ok(()), "the probe rebuilds it");
    assert_eq!(
        sink.commit(batch("during", "two\n")).await,
        Ok(Committed::Written { events: 1 })
    );
    assert_eq!(
        sink.commit(batch("before", "one\n")).await,
        Ok(Committed::Duplicate),
        "acknowledged before the deletion"
    );
    assert_eq!(sink.probe().await, Ok(()));
    sink.close().await;
    assert_eq!(completed_lines(&root), ["two"]);

    let reopened = FileSink::open(settings(&root), storage_metrics()).unwrap();
    assert_eq!(reopened.recovery().deliveries_remembered, 2);
    reopened.close().await;
}

/// Damage found by a probe while no delivery comes: the probe reports it and
/// stops the sink; the next probe rebuilds it.
#[tokio::test]
async fn a_probe_finds_a_deleted_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let sink = FileSink::open(settings(&root), storage_metrics()).unwrap();
    assert_eq!(sink.probe().await, Ok(()));
    fs::remove_dir_all(&root).unwrap();
    assert!(matches!(sink.probe().await, Err(SinkError::Down(_))));
    assert!(matches!(
        sink.commit(batch("k", "x\n")).await,
        Err(SinkError::Down(_))
    ));
    assert_eq!(sink.probe().await, Ok(()));
    sink.commit(batch("k", "x\n")).await.unwrap();
    sink.close().await;
    assert_eq!(completed_lines(&root), ["x"]);
}

/// What a test does to a running sink's directory, after one delivery ("one")
/// was stored in an open segment.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The directory is moved away and an empty one made in its place.
    ReplaceDataDir,
    /// The open segment is deleted.
    DeleteSegment,
    /// Another file is renamed over the open segment.
    ReplaceSegment,
    /// The open segment is cut by hand.
    TruncateSegment,
    /// The journal's current generation is cut to nothing by hand.
    TruncateJournal,
    /// The journal's current generation is deleted.
    DeleteJournal,
    /// The lock file is deleted.
    DeleteLock,
}

fn open_segment_path(root: &Path) -> PathBuf {
    find_open_segments(&root.join(EVENTS_DIR))
        .unwrap()
        .remove(0)
}

fn current_generation(root: &Path) -> PathBuf {
    let state = root.join(STATE_DIR);
    let mut generations: Vec<PathBuf> = fs::read_dir(&state)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("journal-")
        })
        .collect();
    generations.sort();
    generations.pop().unwrap()
}

fn damage(root: &Path, moved: &Path, damage: Damage) {
    match damage {
        Damage::ReplaceDataDir => {
            fs::rename(root, moved).unwrap();
            fs::create_dir(root).unwrap();
        }
        Damage::DeleteSegment => fs::remove_file(open_segment_path(root)).unwrap(),
        Damage::ReplaceSegment => {
            let segment = open_segment_path(root);
            let other = root.join("other");
            fs::write(&other, "theirs\n").unwrap();
            fs::rename(&other, &segment).unwrap();
        }
        Damage::TruncateSegment => {
            let segment = OpenOptions::new()
                .write(true)
                .open(open_segment_path(root))
                .unwrap();
            segment.set_len(2).unwrap();
        }
        Damage::TruncateJournal => {
            let journal = OpenOptions::new()
                .write(true)
                .open(current_generation(root))
                .unwrap();
            journal.set_len(0).unwrap();
        }
        Damage::DeleteJournal => fs::remove_file(current_generation(root)).unwrap(),
        Damage::DeleteLock => fs::remove_file(root.join(STATE_DIR).join("lock")).unwrap(),
    }
}

/// Each kind of damage to the directory under a running sink: the next delivery
/// is refused and nothing of it is kept; a probe rebuilds the directory; then the
/// delivery is stored, the first one is still known as committed, and the
/// segments hold what they should.
#[tokio::test]
async fn every_kind_of_damage_is_refused_then_rebuilt() {
    let table = [
        // (damage, lines then found under the data directory)
        (Damage::ReplaceDataDir, vec!["two"]),
        (Damage::DeleteSegment, vec!["two"]),
        (Damage::ReplaceSegment, vec!["theirs", "two"]),
        (Damage::TruncateSegment, vec!["on", "two"]),
        (Damage::TruncateJournal, vec!["one", "two"]),
        (Damage::DeleteJournal, vec!["one", "two"]),
        (Damage::DeleteLock, vec!["one", "two"]),
    ];
    for (what, expected) in table {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let moved = dir.path().join("moved");
        let sink = FileSink::open(settings(&root), storage_metrics()).unwrap();
        sink.commit(batch("one", "one\n")).await.unwrap();
        damage(&root, &moved, what);

        let refused = sink.commit(batch("two", "two\n")).await;
        assert!(
            matches!(refused, Err(SinkError::Down(_))),
            "{what:?}: {refused:?}"
        );
        assert_eq!(sink.probe().await, Ok(()), "{what:?}: rebuilt");
        assert_eq!(
            sink.commit(batch("two", "two\n")).await,
            Ok(Committed::Written { events: 1 }),
            "{what:?}"
        );
        assert_eq!(
            sink.commit(batch("one", "one\n")).await,
            Ok(Committed::Duplicate),
            "{what:?}"
        );
        assert!(
            matches!(
                FileSink::open(settings(&root), storage_metrics()),
                Err(OpenError::Locked(_))
            ),
            "{what:?}: the rebuilt directory is locked again"
        );
        sink.close().await;
        assert_eq!(completed_lines(&root), expected, "{what:?}");
        if let Damage::ReplaceDataDir = what {
            // The moved directory keeps its open segment as it was: recovery
            // completes it when a Hydrant opens that directory.
            assert_eq!(
                fs::read_to_string(open_segment_path(&moved)).unwrap(),
                "one\n"
            );
            let sink = FileSink::open(settings(&moved), storage_metrics()).unwrap();
            sink.close().await;
            assert_eq!(completed_lines(&moved), ["one"]);
        }
    }
}

/// A table folder replaced by a file cannot be rebuilt: the sink stays down until
/// the file is gone.
#[tokio::test]
async fn a_directory_that_cannot_be_rebuilt_stays_down() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::open(settings(dir.path()), storage_metrics()).unwrap();
    let events = dir.path().join(EVENTS_DIR);
    fs::remove_dir_all(&events).unwrap();
    fs::write(&events, b"x").unwrap();
    assert!(matches!(
        sink.commit(batch("k", "x\n")).await,
        Err(SinkError::Down(_))
    ));
    assert!(matches!(sink.probe().await, Err(SinkError::Down(_))));
    assert!(matches!(sink.probe().await, Err(SinkError::Down(_))));
    fs::remove_file(&events).unwrap();
    assert_eq!(sink.probe().await, Ok(()));
    sink.commit(batch("k", "x\n")).await.unwrap();
    sink.close().await;
    assert_eq!(completed_lines(dir.path()), ["x"]);
}

/// Makes `dir` refuse new entries until the guard drops: `chmod a-w` for a normal
/// user; root ignores permissions, so for root the immutable attribute
/// (`chattr +i`), which binds root too.
struct Unwritable(PathBuf);

impl Unwritable {
    fn new(dir: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
        let guard = Self(dir.to_owned());
        if fs::File::create(dir.join("try")).is_ok() {
            let _ = fs::remove_file(dir.join("try"));
            let status = std::process::Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status();
            assert!(
                status.is_ok_and(|status| status.success())
                    && fs::File::create(dir.join("try")).is_err(),
                "cannot make {} unwritable here (root without chattr +i support)",
                dir.display()
            );
        }
        guard
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
    }
}

/// Permissions taken away: the probe finds that no file can be created (the next
/// segment or journal generation could not be), and the sink is down until they
/// are back.
#[tokio::test]
async fn a_probe_finds_a_directory_that_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::open(settings(dir.path()), storage_metrics()).unwrap();
    sink.commit(batch("one", "one\n")).await.unwrap();
    let unwritable = Unwritable::new(&dir.path().join(STATE_DIR));
    assert!(matches!(sink.probe().await, Err(SinkError::Down(_))));
    assert!(matches!(
        sink.commit(batch("two", "two\n")).await,
        Err(SinkError::Down(_))
    ));
    assert!(
        matches!(sink.probe().await, Err(SinkError::Down(_))),
        "cannot be rebuilt while unwritable"
    );
    drop(unwritable);
    assert_eq!(sink.probe().await, Ok(()));
    sink.commit(batch("two", "two\n")).await.unwrap();
    sink.close().await;
    assert_eq!(completed_lines(dir.path()), ["one", "two"]);
}

/// Names of the journal generation files, oldest first.
fn generation_files(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.join(STATE_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("journal"))
        .collect();
    names.sort();
    names
}

/// The journal rotates to a new generation when one is full, starts it with a
/// checkpoint of the open segments, and deletes an old generation once all of its
/// keys have left the window, so the files on disk stay bounded by the window.
/// After a crash, recovery reads the surviving generations: the open segment is cut
/// back to its checkpointed length and the window holds the latest keys.
#[tokio::test]
async fn the_journal_rotates_and_forgets_whole_generations() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.dedup_capacity = 3;
    let (mut writer, _) = Writer::open(settings.clone(), storage_metrics()).unwrap();
    // Every commit fills a generation.
    layout(&mut writer).journal.limit = 1;
    for n in 0..20 {
        let (reply, answer) = oneshot::channel();
        writer.commit_group(vec![(
            batch(&format!("k{n}"), &format!("line-{n}\n")),
            reply,
        )]);
        assert!(answer.await.unwrap().is_ok());
        assert!(
            generation_files(dir.path()).len() <= 5,
            "{:?}",
            generation_files(dir.path())
        );
        assert!(layout(&mut writer).journal.closed() <= 4);
    }
    assert!(
        !generation_files(dir.path()).contains(&"journal-000002.ndjson".to_owned()),
        "old generations are deleted"
    );
    // A crash, with an unacknowledged torn line in the open segment.
    layout(&mut writer).open[0]
        .as_mut()
        .unwrap()
        .data
        .file
        .write_all(b"torn")
        .unwrap();
    drop(writer);
    let sink = FileSink::open(settings, storage_metrics()).unwrap();
    assert_eq!(sink.recovery().bytes_truncated, 4);
    assert_eq!(sink.recovery().deliveries_remembered, 3);
    for n in 17..20 {
        assert_eq!(
            sink.commit(batch(&format!("k{n}"), "again\n")).await,
            Ok(Committed::Duplicate)
        );
    }
    assert_eq!(
        sink.commit(batch("k16", "line-16\n")).await,
        Ok(Committed::Written { events: 1 }),
        "forgotten by capacity"
    );
    sink.close().await;
    let lines = completed_lines(dir.path());
    assert_eq!(lines.len(), 21);
    assert_eq!(lines[19], "line-19");
}

/// Journal files are never rewritten: a journal from before generations and the
/// generations already written keep their bytes (and inode) through a restart and
/// further commits, until every key in them is forgotten and they are deleted.
#[tokio::test]
async fn journal_files_are_never_rewritten() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(STATE_DIR);
    fs::create_dir_all(&state).unwrap();
    let legacy = state.join(LEGACY_JOURNAL_FILE);
    let key = DeliveryKey::new(None, "old");
    fs::write(
        &legacy,
        format!("{{\"at\":{},\"ids\":[\"{}\"]}}\n", now_ms(), key.to_hex()),
    )
    .unwrap();
    let before = (
        fs::read(&legacy).unwrap(),
        fs::metadata(&legacy).unwrap().ino(),
    );
    let mut settings = settings(dir.path());
    settings.dedup_capacity = 4;
    let sink = FileSink::open(settings.clone(), storage_metrics()).unwrap();
    for n in 0..2 {
        sink.commit(batch(&format!("k{n}"), "x\n")).await.unwrap();
    }
    sink.close().await;
    let sink = FileSink::open(settings, storage_metrics()).unwrap();
    sink.commit(batch("k2", "x\n")).await.unwrap();
    assert_eq!(
        (
            fs::read(&legacy).unwrap(),
            fs::metadata(&legacy).unwrap().ino()
        ),
        before,
        "the old journal is read, never rewritten"
    );
    let mut again = batch("unused", "x\n");
    again.dedup_key = key;
    assert_eq!(sink.commit(again).await, Ok(Committed::Duplicate));
    // One more key pushes "old" out of the window of 4: its file goes (after the
    // reply; closing waits for the writer).
    sink.commit(batch("k3", "x\n")).await.unwrap();
    sink.close().await;
    assert!(!legacy.exists(), "{:?}", generation_files(dir.path()));
}

/// A journal generation that fails to start and cannot be cleaned up (here a
/// folder stands at its path) would be read after the current one by a recovery:
/// the sink goes down rather than keep writing, and the rebuild numbers its new
/// generation past it.
#[tokio::test]
async fn a_generation_left_behind_by_a_failed_start_stops_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _) = Writer::open(settings(dir.path()), storage_metrics()).unwrap();
    layout(&mut writer).journal.limit = 1;
    let blocker = layout(&mut writer).journal.next_path();
    fs::create_dir(&blocker).unwrap();
    let (reply, answer) = oneshot::channel();
    writer.commit_group(vec![(batch("one", "one\n"), reply)]);
    assert_eq!(answer.await.unwrap(), Ok(Committed::Written { events: 1 }));
    assert!(writer.layout.is_none(), "stopped after the failed start");
    let (reply, answer) = oneshot::channel();
    writer.commit_group(vec![(batch("two", "two\n"), reply)]);
    assert!(matches!(answer.await.unwrap(), Err(SinkError::Down(_))));

    fs::remove_dir(&blocker).unwrap();
    assert_eq!(writer.probe(), Ok(()));
    let (reply, answer) = oneshot::channel();
    writer.commit_group(vec![(batch("two", "two\n"), reply)]);
    assert_eq!(answer.await.unwrap(), Ok(Committed::Written { events: 1 }));
    writer.layout.as_mut().unwrap().seal_all(&writer.metrics);
    assert_eq!(completed_lines(dir.path()), ["one", "two"]);
}
