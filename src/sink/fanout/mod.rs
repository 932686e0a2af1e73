//! Fan-out: commits each delivery's batches to the sinks its events were routed to,
//! and answers only when every one of them has acknowledged (or one has failed).
//!
//! For each sink it keeps:
//! - its **duplicate window** ([`SinkWindow`]), the one place a delivery is checked
//!   against what the sink committed or is committing, once per delivery: when
//!   Firehose retries a delivery after a partial failure, sinks that already
//!   committed it are not written again, only the ones that failed are; and an
//!   identical delivery in flight is waited for, not written twice. A file sink
//!   brings its own window, seeded by its recovery; see [`super::dedup`] for how
//!   this window and the sinks' own protections fit together;
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::dedup::{
    Admission, Claim, DEFAULT_DEDUP_CAPACITY, DEFAULT_DEDUP_WINDOW, DeliveryKey, SinkWindow,
};
use super::{Committed, Sink, SinkBatch, SinkError};
use crate::event::lines::SinkSet;
use crate::metrics::{Metrics, SinkRecorder};

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
    /// How long committed deliveries are remembered, in the window of each sink that
    /// brings none of its own (a file sink's window is its journal's, sized by the
    /// file sink's settings).
    pub dedup_window: Duration,
    /// How many committed deliveries are remembered, in the window of each sink that
    /// brings none of its own.
    pub dedup_capacity: usize,
}

impl Default for FanoutSettings {
    fn default() -> Self {
        Self {
            attempts: DEFAULT_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
            deadline: DEFAULT_DEADLINE,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            dedup_capacity: DEFAULT_DEDUP_CAPACITY,
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

/// One sink with its name, breaker, duplicate window and metrics.
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
    window: Arc<SinkWindow>,
    metrics: SinkRecorder,
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
                let sink_metrics = metrics.sink(&name, sink.kind(), sink.reshape_actions());
                let window = sink.dedup_window().unwrap_or_else(|| {
                    Arc::new(SinkWindow::new(
                        settings.dedup_window,
                        settings.dedup_capacity,
                    ))
                });
                Some(Arc::new(SinkHandle {
                    name,
                    sink,
                    gates_readiness,
                    up: AtomicBool::new(true),
                    failures: AtomicU32::new(0),
                    window,
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

    /// The opened `prometheus` sinks, whose series the admin listener serves, each
    /// at its path.
    #[must_use]
    pub fn scrape_endpoints(&self) -> Vec<super::prometheus::PrometheusSink> {
        self.opened()
            .filter_map(|handle| handle.sink.scrape_endpoint().cloned())
            .collect()
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
        if handles.is_empty()
            || !handles
                .iter()
                .all(|handle| handle.window.has_committed(key))
        {
            return false;
        }
        for handle in handles {
            handle.metrics.duplicate();
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
        // Each sink's window is asked once: committed already, being committed by an
        // identical request, or to be committed here.
        let mut routed = Vec::with_capacity(batches.len());
        for (position, batch) in batches {
            let Some(handle) = self.handles.get(position).and_then(Option::as_ref) else {
                return Err(FanoutError::SinkDown(NOT_OPENED.to_owned()));
            };
            let admission = handle.window.admit(batch.dedup_key);
            routed.push((Arc::clone(handle), batch, admission));
        }
        // Fail fast: a sink known to be down would only make Firehose wait. A sink
        // that has the delivery already, or waits for it, writes nothing now. The
        // claims taken above end as they are dropped.
        if let Some((handle, ..)) = routed.iter().find(|(handle, _, admission)| {
            matches!(admission, Admission::Claimed(_)) && !handle.is_up()
        }) {
            return Err(FanoutError::SinkDown(handle.name.clone()));
        }
        let mut tasks = JoinSet::new();
        for (handle, batch, admission) in routed {
            let settings = self.settings;
            // In the request's span, so each sink's lines name the delivery.
            tasks.spawn(
                async move {
                    let result = handle.settle(&batch, admission, settings).await;
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
        self.metrics.up(true);
    }

    fn mark_down(&self) {
        self.up.store(false, Ordering::Release);
        self.metrics.up(false);
    }

    /// Ends one delivery for this sink as its window admitted it: a duplicate at
    /// once, a copy with its original's outcome, a claim by committing.
    async fn settle(
        &self,
        batch: &SinkBatch,
        admission: Admission,
        settings: FanoutSettings,
    ) -> Result<Committed, SinkError> {
        let result = match admission {
            Admission::Duplicate => Ok(Committed::Duplicate),
            Admission::Wait(original) => original.outcome().await,
            Admission::Claimed(claim) => {
                let result = self.commit_with_retry(batch, &claim, settings).await;
                claim.finish(&result);
                result
            }
        };
        if result == Ok(Committed::Duplicate) {
            self.metrics.duplicate();
        }
        result
    }

    /// Commits a claimed delivery, retrying; the window is not asked again.
    async fn commit_with_retry(
        &self,
        batch: &SinkBatch,
        claim: &Claim,
        settings: FanoutSettings,
    ) -> Result<Committed, SinkError> {
        let mut backoff = settings.backoff;
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            match self.sink.commit(batch, claim).await {
                Ok(committed) => {
                    self.failures.store(0, Ordering::Release);
                    let (events, bytes) = match committed {
                        Committed::Written { .. } => (batch.len() as u64, batch.bytes() as u64),
                        Committed::Duplicate => (0, 0),
                    };
                    self.metrics
                        .committed(started.elapsed().as_secs_f64(), events, bytes);
                    return Ok(committed);
                }
                Err(error) => {
                    self.metrics.failed();
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
                    self.metrics.retried();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
