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
//!   service answers. `/readyz` is ready only while every sink is up.
//! - its metrics (labelled by sink name).
//!
//! The whole fan-out is bounded by the delivery deadline, so Firehose always gets an
//! answer well before its 3-minute timeout.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter, IntGauge};
use tokio::task::JoinSet;

use super::dedup::{DedupWindow, DeliveryKey};
use super::{Committed, Sink, SinkBatch, SinkError};
use crate::clock::{duration_ms, now_ms};
use crate::metrics::Metrics;

/// Consecutive failed commits that mark a sink down.
pub const BREAKER_THRESHOLD: u32 = 3;
/// How often every sink's service is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Default attempts per sink and delivery (the first try included).
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Default wait before the first retry; doubled for each further retry.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
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

/// One sink with its name, breaker, committed window and metrics.
#[derive(Debug)]
pub struct SinkHandle {
    /// The configured name.
    pub name: String,
    /// The sink itself.
    pub sink: Sink,
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
    handles: Vec<Arc<SinkHandle>>,
    settings: FanoutSettings,
}

impl Sinks {
    /// Wraps the sinks, registering their metrics.
    #[must_use]
    pub fn new(sinks: Vec<(String, Sink)>, settings: FanoutSettings, metrics: &Metrics) -> Self {
        let handles = sinks
            .into_iter()
            .map(|(name, sink)| {
                let labels = [name.as_str(), sink.kind()];
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
                Arc::new(SinkHandle {
                    name,
                    sink,
                    up: AtomicBool::new(true),
                    failures: AtomicU32::new(0),
                    committed: Mutex::new(DedupWindow::new(
                        duration_ms(settings.dedup_window),
                        settings.dedup_capacity,
                    )),
                    metrics: sink_metrics,
                })
            })
            .collect();
        Self { handles, settings }
    }

    /// Number of sinks.
    #[must_use]
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether there are no sinks.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The sink at `position`.
    #[must_use]
    pub fn get(&self, position: usize) -> Option<&SinkHandle> {
        self.handles.get(position).map(AsRef::as_ref)
    }

    /// Whether every sink is up.
    #[must_use]
    pub fn all_up(&self) -> bool {
        self.handles.iter().all(|handle| handle.is_up())
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
        for (position, batch) in &batches {
            let handle = &self.handles[*position];
            if !handle.is_up() && !handle.has_committed(&batch.dedup_key) {
                return Err(FanoutError::SinkDown(handle.name.clone()));
            }
        }
        let mut tasks = JoinSet::new();
        for (position, batch) in batches {
            let handle = Arc::clone(&self.handles[position]);
            let settings = self.settings;
            tasks.spawn(async move {
                let result = handle.commit_with_retry(&batch, settings).await;
                (handle, result)
            });
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
        for handle in &self.handles {
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
        for handle in &self.handles {
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
                    if failures >= BREAKER_THRESHOLD && self.is_up() {
                        tracing::warn!(sink = %self.name, %error, failures, "Sink keeps failing; marking it down.");
                        self.mark_down();
                    }
                    let final_attempt =
                        attempt >= settings.attempts || error == SinkError::Closed || !self.is_up();
                    if final_attempt {
                        tracing::warn!(sink = %self.name, %error, attempt, "Sink commit failed.");
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
            text.contains(r#"hydrant_sink_events_total{sink="a",type="discard"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"hydrant_sink_duplicates_total{sink="b",type="discard"} 1"#),
            "{text}"
        );
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
        // Break the file sink: a file stands where its partition folders go.
        let events = dir.path().join("events");
        std::fs::remove_dir_all(&events).unwrap();
        std::fs::write(&events, b"x").unwrap();
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

        std::fs::remove_file(&events).unwrap();
        sinks.probe_all().await;
        assert!(sinks.all_up());
        let result = sinks
            .deliver(vec![(0, batch("k1")), (1, batch("k1"))])
            .await;
        assert_eq!(result, Ok(Committed::Written { events: 1 }));
        let text = metrics.render();
        assert!(
            text.contains(r#"hydrant_sink_events_total{sink="ok",type="discard"} 1"#),
            "the healthy sink got k1 once: {text}"
        );
        assert!(
            text.contains(r#"hydrant_sink_retries_total{sink="file",type="file"} 2"#),
            "{text}"
        );
        sinks.close().await;
    }
}
