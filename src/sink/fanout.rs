//! Fan-out: commits each delivery's batches to the sinks its events were routed to,
//! and answers only when every one of them has acknowledged (or one has failed).
//!
//! For each sink it keeps:
//! - a **window of committed deliveries** (source ARN + request id). When Firehose
//!   retries a delivery after a partial failure, sinks that already committed it are
//!   not written again; only the ones that failed are.
//! - a **bounded retry** with exponential backoff, well inside the delivery deadline;
//! - a **circuit breaker**: after [`BREAKER_THRESHOLD`] consecutive failures, or a
//!   failed health probe, the sink is marked down and deliveries routed to it are
//!   answered 503 at once instead of waiting for timeouts. A background prober
//!   checks every sink each [`PROBE_INTERVAL`] and marks it up again once its
//!   service answers. `/readyz` is ready only while every sink that gates
//!   readiness is up ([`Sink::gates_readiness_by_default`]).
//! - its metrics (labelled by sink name).
//!
//! The whole fan-out is bounded by the delivery deadline, so Firehose always gets an
//! answer well before its 3-minute timeout.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter, IntGauge};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::dedup::{DedupWindow, DeliveryKey};
use super::{Committed, Sink, SinkBatch, SinkError};
use crate::clock::{duration_ms, now_ms};
use crate::event::lines::SinkSet;
use crate::metrics::Metrics;

/// Consecutive failed commits that mark a sink down.
pub const BREAKER_THRESHOLD: u32 = 3;
/// How often every sink's service is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Default attempts per sink and delivery (the first try included).
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Default wait before the first retry; doubled for each further retry.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two attempts (the configured first wait included).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Default time a delivery may take from the fan-out to the answer. Firehose gives up
/// on an answer after 3 minutes; 60 s leaves room for its retry to come back quickly.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// How the fan-out retries and how long it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutSettings {
    /// Attempts per sink and delivery.
    pub attempts: u32,
    /// Wait before the first retry.
    pub backoff: Duration,
    /// Bound on a whole delivery's fan-out.
    pub deadline: Duration,
    /// How long committed deliveries are remembered per sink.
    pub dedup_window: Duration,
    /// How many committed deliveries are remembered per sink.
    pub dedup_capacity: usize,
}

impl Default for FanoutSettings {
    fn default() -> Self {
        Self {
            attempts: DEFAULT_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
            deadline: DEFAULT_DEADLINE,
            dedup_window: super::file::DEFAULT_DEDUP_WINDOW,
            dedup_capacity: super::file::DEFAULT_DEDUP_CAPACITY,
        }
    }
}

/// Why a delivery's fan-out failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FanoutError {
    /// A sink is marked down by its circuit breaker.
    #[error("sink {0:?} is unavailable; retry later")]
    SinkDown(String),
    /// One or more sinks failed after their retries.
    #[error("sink {name:?} failed: {error}")]
    SinkFailed {
        /// The first failing sink.
        name: String,
        /// What it said.
        error: SinkError,
    },
    /// The deadline passed before every sink answered.
    #[error("sinks did not answer within {0:?}; retry later")]
    Deadline(Duration),
}

/// Name of a sink position that has no opened sink, in errors; routes never name
/// such a position (see [`SinkSetup::sink`]).
const NOT_OPENED: &str = "(not opened)";

/// One configured sink, as the fan-out takes it.
#[derive(Debug)]
pub struct SinkSetup {
    /// The configured name.
    pub name: String,
    /// The sink; `None` for a sink that no route names, which is not opened (a file
    /// sink would otherwise lock a data directory nothing is written to).
    pub sink: Option<Sink>,
    /// Whether `/readyz` answers 503 while this sink is down.
    pub gates_readiness: bool,
}

impl From<(String, Sink)> for SinkSetup {
    /// An opened sink that gates readiness as its type does by default.
    fn from((name, sink): (String, Sink)) -> Self {
        Self {
            gates_readiness: Sink::gates_readiness_by_default(sink.kind()),
            name,
            sink: Some(sink),
        }
    }
}

/// One sink with its name, breaker, committed window and metrics.
#[derive(Debug)]
pub struct SinkHandle {
    /// The configured name.
    pub name: String,
    /// The sink itself.
    pub sink: Sink,
    /// Whether `/readyz` answers 503 while this sink is down.
    pub gates_readiness: bool,
    up: AtomicBool,
    failures: AtomicU32,
    committed: Mutex<DedupWindow>,
    metrics: SinkMetrics,
}

#[derive(Debug, Clone)]
struct SinkMetrics {
    write_seconds: Histogram,
    events: IntCounter,
    bytes: IntCounter,
    errors: IntCounter,
    retries: IntCounter,
    duplicates: IntCounter,
    up: IntGauge,
}

/// Every configured sink, in configuration order (routes refer to positions).
#[derive(Debug)]
pub struct Sinks {
    /// `None` where a configured sink was not opened.
    handles: Vec<Option<Arc<SinkHandle>>>,
    settings: FanoutSettings,
}

impl Sinks {
    /// Wraps the sinks, registering their metrics: every series of an opened sink
    /// starts at zero.
    #[must_use]
    pub fn new(
        sinks: Vec<impl Into<SinkSetup>>,
        settings: FanoutSettings,
        metrics: &Metrics,
    ) -> Self {
        let handles = sinks
            .into_iter()
            .map(Into::into)
            .map(|setup: SinkSetup| {
                let SinkSetup {
                    name,
                    sink,
                    gates_readiness,
                } = setup;
                let sink = sink?;
                let labels = [name.as_str(), sink.kind()];
                for action in sink.reshape_actions() {
                    metrics
                        .sink_reshaped
                        .with_label_values(&[name.as_str(), sink.kind(), action]);
                }
                let sink_metrics = SinkMetrics {
                    write_seconds: metrics.sink_write_seconds.with_label_values(&labels),
                    events: metrics.sink_events.with_label_values(&labels),
                    bytes: metrics.sink_bytes.with_label_values(&labels),
                    errors: metrics.sink_errors.with_label_values(&labels),
                    retries: metrics.sink_retries.with_label_values(&labels),
                    duplicates: metrics.sink_duplicates.with_label_values(&labels),
                    up: metrics.sink_up.with_label_values(&labels),
                };
                sink_metrics.up.set(1);
                Some(Arc::new(SinkHandle {
                    name,
                    sink,
                    gates_readiness,
                    up: AtomicBool::new(true),
                    failures: AtomicU32::new(0),
                    committed: Mutex::new(DedupWindow::new(
                        duration_ms(settings.dedup_window),
                        settings.dedup_capacity,
                    )),
                    metrics: sink_metrics,
                }))
            })
            .collect();
        Self { handles, settings }
    }

    /// Number of configured sinks, opened or not.
    #[must_use]
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether there are no sinks.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The sink at `position`, if it was opened.
    #[must_use]
    pub fn get(&self, position: usize) -> Option<&SinkHandle> {
        self.handles.get(position)?.as_deref()
    }

    /// The opened sinks.
    fn opened(&self) -> impl Iterator<Item = &Arc<SinkHandle>> {
        self.handles.iter().flatten()
    }

    /// Whether every opened sink is up.
    #[must_use]
    pub fn all_up(&self) -> bool {
        self.opened().all(|handle| handle.is_up())
    }

    /// Whether every sink that gates readiness is up: what `/readyz` reports.
    #[must_use]
    pub fn ready(&self) -> bool {
        self.opened()
            .filter(|handle| handle.gates_readiness)
            .all(|handle| handle.is_up())
    }

    /// Whether every sink of `candidates` (a delivery's possible destinations) has
    /// committed the delivery `key` already, so that a retry can be answered
    /// without decoding it; each then counts the duplicate. False for an empty set:
    /// a delivery that goes nowhere was never committed.
    #[must_use]
    pub fn committed_everywhere(&self, candidates: SinkSet, key: &DeliveryKey) -> bool {
        let handles: Option<Vec<&SinkHandle>> = candidates
            .iter()
            .map(|position| self.get(position))
            .collect();
        let Some(handles) = handles else {
            return false;
        };
        if handles.is_empty() || !handles.iter().all(|handle| handle.has_committed(key)) {
            return false;
        }
        for handle in handles {
            handle.metrics.duplicates.inc();
        }
        true
    }

    /// Commits each `(sink position, batch)` and answers once all have.
    ///
    /// # Errors
    ///
    /// [`FanoutError`] when a sink is down, fails after its retries, or the deadline
    /// passes. Sinks that did commit remember it, so Firehose's retry of the delivery
    /// only writes to the others.
    pub async fn deliver(
        &self,
        batches: Vec<(usize, SinkBatch)>,
    ) -> Result<Committed, FanoutError> {
        // Fail fast: a sink known to be down would only make Firehose wait.
        let mut routed = Vec::with_capacity(batches.len());
        for (position, batch) in batches {
            let Some(handle) = self.handles.get(position).and_then(Option::as_ref) else {
                return Err(FanoutError::SinkDown(NOT_OPENED.to_owned()));
            };
            if !handle.is_up() && !handle.has_committed(&batch.dedup_key) {
                return Err(FanoutError::SinkDown(handle.name.clone()));
            }
            routed.push((Arc::clone(handle), batch));
        }
        let mut tasks = JoinSet::new();
        for (handle, batch) in routed {
            let settings = self.settings;
            // In the request's span, so each sink's lines name the delivery.
            tasks.spawn(
                async move {
                    let result = handle.commit_with_retry(&batch, settings).await;
                    (handle, result)
                }
                .instrument(tracing::Span::current()),
            );
        }
        let collect = async {
            let mut events = 0;
            let mut written = false;
            let mut failure = None;
            while let Some(joined) = tasks.join_next().await {
                let Ok((handle, result)) = joined else {
                    failure.get_or_insert(FanoutError::SinkFailed {
                        name: "(task)".into(),
                        error: SinkError::Unavailable("sink task failed".into()),
                    });
                    continue;
                };
                match result {
                    Ok(Committed::Written { events: count }) => {
                        written = true;
                        events = events.max(count);
                    }
                    Ok(Committed::Duplicate) => {}
                    Err(error) => {
                        failure.get_or_insert(FanoutError::SinkFailed {
                            name: handle.name.clone(),
                            error,
                        });
                    }
                }
            }
            match failure {
                Some(failure) => Err(failure),
                None if written => Ok(Committed::Written { events }),
                None => Ok(Committed::Duplicate),
            }
        };
        match tokio::time::timeout(self.settings.deadline, collect).await {
            Ok(result) => result,
            Err(_) => Err(FanoutError::Deadline(self.settings.deadline)),
        }
    }

    /// Probes every sink once, marking each up or down.
    pub async fn probe_all(&self) {
        for handle in self.opened() {
            match handle.sink.probe().await {
                Ok(()) => handle.mark_up(),
                Err(error) => {
                    if handle.is_up() {
                        tracing::warn!(sink = %handle.name, %error, "Sink probe failed; marking it down.");
                    }
                    handle.mark_down();
                }
            }
        }
    }

    /// Probes every sink each [`PROBE_INTERVAL`] until the returned task is aborted.
    #[must_use]
    pub fn spawn_prober(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let sinks = Arc::clone(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(PROBE_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                sinks.probe_all().await;
            }
        })
    }

    /// Closes every sink (pending work finished).
    pub async fn close(&self) {
        for handle in self.opened() {
            handle.sink.close().await;
        }
    }
}

impl SinkHandle {
    /// Whether the breaker lets deliveries through.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn mark_up(&self) {
        self.failures.store(0, Ordering::Release);
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!(sink = %self.name, "Sink is up again.");
        }
        self.metrics.up.set(1);
    }

    fn mark_down(&self) {
        self.up.store(false, Ordering::Release);
        self.metrics.up.set(0);
    }

    fn has_committed(&self, key: &DeliveryKey) -> bool {
        self.committed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(key, now_ms())
    }

    async fn commit_with_retry(
        &self,
        batch: &SinkBatch,
        settings: FanoutSettings,
    ) -> Result<Committed, SinkError> {
        if self.has_committed(&batch.dedup_key) {
            self.metrics.duplicates.inc();
            return Ok(Committed::Duplicate);
        }
        let mut backoff = settings.backoff;
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            match self.sink.commit(batch).await {
                Ok(committed) => {
                    self.metrics
                        .write_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.failures.store(0, Ordering::Release);
                    self.committed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(batch.dedup_key, now_ms());
                    match committed {
                        Committed::Written { .. } => {
                            self.metrics.events.inc_by(batch.len() as u64);
                            self.metrics.bytes.inc_by(batch.bytes() as u64);
                        }
                        Committed::Duplicate => self.metrics.duplicates.inc(),
                    }
                    return Ok(committed);
                }
                Err(error) => {
                    self.metrics.errors.inc();
                    let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
                    if matches!(error, SinkError::Down(_)) && self.is_up() {
                        // The sink knows it cannot take anything until it is
                        // repaired: waiting for more failures would only make
                        // Firehose wait, and /readyz should say so now.
                        tracing::warn!(sink = %self.name, %error, "Sink reports its storage down; marking it down.");
                        self.mark_down();
                    } else if failures >= BREAKER_THRESHOLD && self.is_up() {
                        tracing::warn!(sink = %self.name, %error, failures, "Sink keeps failing; marking it down.");
                        self.mark_down();
                    }
                    let final_attempt =
                        attempt >= settings.attempts || error == SinkError::Closed || !self.is_up();
                    if final_attempt {
                        // The delivery's own line (a warning, with this error) tells
                        // the operator; one line per refused delivery is enough.
                        tracing::debug!(sink = %self.name, %error, attempt, "Sink commit failed.");
                        return Err(error);
                    }
                    tracing::debug!(sink = %self.name, %error, attempt, "Sink commit failed; retrying.");
                    self.metrics.retries.inc();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let file =
            FileSink::open(FileSinkSettings::new(dir.path()), metrics.storage.clone()).unwrap();
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

    /// Identical deliveries that meet in one file-sink group whose write fails: none
    /// is answered as a duplicate, and the fan-out's window does not remember the
    /// delivery, so Firehose's retry is stored once the disk works again.
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
}
