use super::*;
use crate::clock::now_ms;
use crate::event::Delivery;
use crate::sink::EventLines;
use crate::sink::discard::DiscardSink;
use crate::sink::file::{FileSink, FileSinkSettings};

fn batch(key: &str) -> SinkBatch {
    SinkBatch {
        delivery: Arc::new(Delivery::default()),
        dedup_key: DeliveryKey::new(None, key),
        events: EventLines::single(
            bytes::Bytes::from_static(b"{}\n"),
            vec![crate::sink::EventMeta {
                end: 3,
                kind: "record",
                ..Default::default()
            }],
        ),
        dead_letters: EventLines::default(),
    }
}

fn fast() -> FanoutSettings {
    FanoutSettings {
        backoff: Duration::from_millis(1),
        ..FanoutSettings::default()
    }
}

#[tokio::test]
async fn commits_to_every_sink_and_remembers_it_per_sink() {
    let metrics = Metrics::new(10);
    let sinks = Sinks::new(
        vec![
            ("a".into(), Sink::Discard(DiscardSink)),
            ("b".into(), Sink::Discard(DiscardSink)),
        ],
        fast(),
        &metrics,
    );
    let result = sinks.deliver(vec![(0, batch("k")), (1, batch("k"))]).await;
    assert_eq!(result, Ok(Committed::Written { events: 1 }));
    let again = sinks.deliver(vec![(0, batch("k")), (1, batch("k"))]).await;
    assert_eq!(again, Ok(Committed::Duplicate));
    let text = metrics.render();
    assert!(
        text.contains(r#"hydrant_sink_events_total{sink="a",sink_type="discard"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"hydrant_sink_duplicates_total{sink="b",sink_type="discard"} 1"#),
        "{text}"
    );
}

/// `/readyz` follows only the sinks that gate it: by default the local ones,
/// and any sink whose setting says so.
#[tokio::test]
async fn readiness_follows_only_the_sinks_that_gate_it() {
    let metrics = Metrics::new(10);
    let setup = |name: &str, gates_readiness| SinkSetup {
        name: name.into(),
        sink: Some(Sink::Discard(DiscardSink)),
        gates_readiness,
    };
    let sinks = Sinks::new(
        vec![
            setup("local", true),
            setup("backbone", false),
            SinkSetup {
                name: "unused".into(),
                sink: None,
                gates_readiness: true,
            },
        ],
        fast(),
        &metrics,
    );
    assert!(sinks.ready() && sinks.all_up());
    assert!(
        sinks.get(2).is_none(),
        "a sink no route names is not opened"
    );
    sinks.get(1).unwrap().mark_down();
    assert!(sinks.ready(), "a shared backbone down: still ready");
    assert!(!sinks.all_up());
    let result = sinks.deliver(vec![(1, batch("k"))]).await;
    assert_eq!(result, Err(FanoutError::SinkDown("backbone".into())));
    assert_eq!(
        sinks.deliver(vec![(0, batch("k"))]).await,
        Ok(Committed::Written { events: 1 }),
        "streams routed elsewhere go on"
    );
    sinks.get(0).unwrap().mark_down();
    assert!(!sinks.ready(), "its own sink down: not ready");
    assert!(!metrics.render().contains("unused"), "no series for it");

    assert!(Sink::gates_readiness_by_default("file"));
    assert!(Sink::gates_readiness_by_default("stdout"));
    for network in ["s3", "nats", "kafka"] {
        assert!(!Sink::gates_readiness_by_default(network), "{network}");
    }
}

/// A delivery counts as committed everywhere only when every candidate sink
/// has it; an empty candidate set never does.
#[tokio::test]
async fn committed_everywhere_needs_every_candidate() {
    let metrics = Metrics::new(10);
    let sinks = Sinks::new(
        vec![
            ("a".into(), Sink::Discard(DiscardSink)),
            ("b".into(), Sink::Discard(DiscardSink)),
        ],
        fast(),
        &metrics,
    );
    let key = DeliveryKey::new(None, "k");
    let both = SinkSet::of(&[0, 1]);
    assert!(!sinks.committed_everywhere(both, &key));
    sinks.deliver(vec![(0, batch("k"))]).await.unwrap();
    assert!(sinks.committed_everywhere(SinkSet::of(&[0]), &key));
    assert!(!sinks.committed_everywhere(both, &key), "b has not");
    assert!(!sinks.committed_everywhere(SinkSet::default(), &key));
    assert!(!sinks.committed_everywhere(SinkSet::of(&[5]), &key));
    sinks.deliver(vec![(1, batch("k"))]).await.unwrap();
    assert!(sinks.committed_everywhere(both, &key));
    let text = metrics.render();
    assert!(
        text.contains(r#"hydrant_sink_duplicates_total{sink="b",sink_type="discard"} 1"#),
        "{text}"
    );
}

/// Puts files where the `events` partition folders of this minute's commits
/// go, so opening a segment fails; returns them.
fn block_partition_folders(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut blocked = Vec::new();
    for at in [now_ms(), now_ms() + 60_000] {
        let time = crate::clock::UtcTime::from_ms(at);
        let folder = data_dir.join(format!(
            "events/dt={:04}-{:02}-{:02}",
            time.year, time.month, time.day
        ));
        if !blocked.contains(&folder) {
            std::fs::write(&folder, b"x").unwrap();
            blocked.push(folder);
        }
    }
    blocked
}

/// A sink that fails is retried, counted, then marked down; the delivery fails
/// fast while it is down, and goes through once a probe finds it up again. The
/// sink that had succeeded is not written again on the retry.
#[tokio::test]
async fn a_failing_sink_trips_the_breaker_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new(10);
    let file = FileSink::open(FileSinkSettings::new(dir.path()), metrics.storage.clone()).unwrap();
    let sinks = Sinks::new(
        vec![
            ("ok".into(), Sink::Discard(DiscardSink)),
            ("file".into(), Sink::File(file)),
        ],
        fast(),
        &metrics,
    );
    // Break the file sink's writes: a file stands where today's partition
    // folder goes (the data directory itself is intact, so this is a plain write
    // failure, not damage that stops the sink at once).
    let blocked = block_partition_folders(dir.path());
    let result = sinks
        .deliver(vec![(0, batch("k1")), (1, batch("k1"))])
        .await;
    assert!(
        matches!(result, Err(FanoutError::SinkFailed { ref name, .. }) if name == "file"),
        "{result:?}"
    );
    assert!(
        !sinks.get(1).unwrap().is_up(),
        "three failures mark it down"
    );
    assert!(!sinks.all_up());
    let started = Instant::now();
    let result = sinks
        .deliver(vec![(0, batch("k2")), (1, batch("k2"))])
        .await;
    assert_eq!(result, Err(FanoutError::SinkDown("file".into())));
    assert!(started.elapsed() < Duration::from_millis(50), "fails fast");

    for file in &blocked {
        std::fs::remove_file(file).unwrap();
    }
    sinks.probe_all().await;
    assert!(sinks.all_up());
    let result = sinks
        .deliver(vec![(0, batch("k1")), (1, batch("k1"))])
        .await;
    assert_eq!(result, Ok(Committed::Written { events: 1 }));
    let text = metrics.render();
    assert!(
        text.contains(r#"hydrant_sink_events_total{sink="ok",sink_type="discard"} 1"#),
        "the healthy sink got k1 once: {text}"
    );
    assert!(
        text.contains(r#"hydrant_sink_retries_total{sink="file",sink_type="file"} 2"#),
        "{text}"
    );
    sinks.close().await;
}

/// A file sink whose data directory was deleted is marked down by its first
/// refused delivery, without retries and without waiting for three failures,
/// and up again once a probe has rebuilt the directory.
#[tokio::test]
async fn a_sink_that_reports_its_storage_down_is_marked_down_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let metrics = Metrics::new(10);
    let file = FileSink::open(FileSinkSettings::new(&root), metrics.storage.clone()).unwrap();
    let sinks = Sinks::new(vec![("file".into(), Sink::File(file))], fast(), &metrics);
    std::fs::remove_dir_all(&root).unwrap();
    let result = sinks.deliver(vec![(0, batch("k1"))]).await;
    assert!(
        matches!(
            result,
            Err(FanoutError::SinkFailed {
                error: SinkError::Down(_),
                ..
            })
        ),
        "{result:?}"
    );
    assert!(!sinks.all_up(), "down after one refusal");
    let text = metrics.render();
    assert!(
        text.contains(r#"hydrant_sink_retries_total{sink="file",sink_type="file"} 0"#),
        "{text}"
    );
    sinks.probe_all().await;
    assert!(sinks.all_up());
    let result = sinks.deliver(vec![(0, batch("k1"))]).await;
    assert_eq!(result, Ok(Committed::Written { events: 1 }));
    sinks.close().await;
}

/// Identical deliveries at once to a file sink whose write fails: one is written,
/// the others wait for it in the sink's window; none is answered as a duplicate,
/// all share the failure, and the window does not remember the delivery, so
/// Firehose's retry is stored once the disk works again.
#[tokio::test]
async fn identical_deliveries_whose_write_failed_are_not_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new(10);
    let (file, release) =
        FileSink::open_held(FileSinkSettings::new(dir.path()), metrics.storage.clone());
    let sinks = Arc::new(Sinks::new(
        vec![("file".into(), Sink::File(file))],
        FanoutSettings {
            attempts: 1,
            ..fast()
        },
        &metrics,
    ));
    let blocked = block_partition_folders(dir.path());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let sinks = Arc::clone(&sinks);
            tokio::spawn(async move { sinks.deliver(vec![(0, batch("same"))]).await })
        })
        .collect();
    // Every delivery queues before the writer takes them as one group.
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.send(()).unwrap();
    for task in tasks {
        let result = task.await.unwrap();
        assert!(
            matches!(result, Err(FanoutError::SinkFailed { .. })),
            "{result:?}"
        );
    }
    for file in &blocked {
        std::fs::remove_file(file).unwrap();
    }
    sinks.probe_all().await;
    let retry = sinks.deliver(vec![(0, batch("same"))]).await;
    assert_eq!(retry, Ok(Committed::Written { events: 1 }));
    sinks.close().await;
}

/// Identical deliveries at the same time: the sink's window lets one through and
/// the others wait for it, so the file writer is handed the delivery once, and
/// the copies are answered "duplicate" once it is durable.
#[tokio::test]
async fn identical_concurrent_deliveries_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new(10);
    let (file, release) =
        FileSink::open_held(FileSinkSettings::new(dir.path()), metrics.storage.clone());
    let sinks = Arc::new(Sinks::new(
        vec![
            ("file".into(), Sink::File(file)),
            ("null".into(), Sink::Discard(DiscardSink)),
        ],
        fast(),
        &metrics,
    ));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let sinks = Arc::clone(&sinks);
            tokio::spawn(async move {
                sinks
                    .deliver(vec![(0, batch("same")), (1, batch("same"))])
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.send(()).unwrap();
    let mut written = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Committed::Written { events: 1 }) => written += 1,
            Ok(Committed::Duplicate) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(written, 1);
    let text = metrics.render();
    for expected in [
        r#"hydrant_sink_events_total{sink="file",sink_type="file"} 1"#,
        r#"hydrant_sink_duplicates_total{sink="file",sink_type="file"} 7"#,
        r#"hydrant_sink_events_total{sink="null",sink_type="discard"} 1"#,
        "hydrant_storage_commit_deliveries_sum 1",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    sinks.close().await;
}
