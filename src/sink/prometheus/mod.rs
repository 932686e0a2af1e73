//! The `prometheus` sink: CloudWatch metric data points as series that Prometheus
//! scrapes from the admin listener, named as the exporters users already run name
//! them ([`crate::series`]), so that Hydrant fed by Metric Streams can replace a
//! polling exporter.
//!
//! The sink keeps the latest value of every series in memory and serves it at its
//! `path` on the admin listener, in the Prometheus text format or OpenMetrics
//! ([`Format::negotiate`]). A commit parses the batch's `metric` events, turns each
//! into its samples and stores them, then answers: nothing is written anywhere, so
//! a restart empties the sink until the streams deliver again (every minute), as a
//! restarted exporter is empty until its next poll. Events of other kinds are
//! skipped: routes decide what reaches the sink, and users route `kind = "metric"`
//! to it.
//!
//! - A series is its name and its labels. Of two points of one series, the one with
//!   the later CloudWatch timestamp is kept (the same timestamp again replaces it:
//!   CloudWatch may send a period again with late data), so a Firehose retry or a
//!   late delivery never takes a series back in time.
//! - A series not updated for `staleness` (by the time Hydrant received it) is
//!   dropped when the sink is scraped, and while commits come in.
//! - A scrape is written in pieces ([`Scrape`]), each under the lock only while it
//!   is written, and streamed: its memory is a few pieces, not its whole text.
//! - At `max_series` series, points of new series are dropped and counted in
//!   `hydrant_prometheus_series_dropped_total`; known series keep being updated.
//!   The memory the sink takes is bounded by that cap.
//! - `timestamps` puts CloudWatch's time on each sample. Off by default, as in
//!   YACE: a point arrives minutes after its period, and Prometheus refuses samples
//!   older than its head block or hides those behind its lookback window, so a
//!   scrape with timestamps would lose or hide data that is perfectly fine without.

mod exposition;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{SinkBatch, SinkError};
use crate::metrics::PrometheusRecorder;
use crate::series::{self, Filter, Naming, Patterns};
use crate::setting::HumanDuration;
pub use exposition::{CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, Format};

/// Where the admin listener serves the series unless `path` says otherwise: apart
/// from Hydrant's own `/metrics`.
pub const DEFAULT_PATH: &str = "/cloudwatch/metrics";
/// How long a series stays without an update by default. Streams send every
/// minute; ten missed periods mean the metric stopped (an instance terminated).
pub const DEFAULT_STALENESS: Duration = Duration::from_secs(600);
/// Series one sink holds at most, by default. A YACE-named EC2 or ALB series with
/// its account, region and one dimension was measured at 198 bytes allocated (its
/// label text, its value and times, its share of the maps) and 220 to 270 bytes
/// of resident memory with the allocator's overhead (docs/performance.md): a full
/// sink takes about 220–270 MB. That holds a stream of 200,000 metrics with their
/// five statistics each, more than one Prometheus target should serve (a scrape of
/// it is about 160 MB of text, streamed); a smaller machine sets a lower cap.
pub const DEFAULT_MAX_SERIES: usize = 1_000_000;
/// The admin listener's own paths, which a sink cannot take.
pub const RESERVED_PATHS: [&str; 3] = ["/metrics", "/healthz", "/readyz"];
/// How often commits drop stale series when no scrape did it (scrapes always do).
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// A `[[sinks]]` entry with `type = "prometheus"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Where the admin listener serves the series.
    #[serde(default = "default_path")]
    pub path: String,
    /// How series are named.
    #[serde(default)]
    pub naming: Naming,
    /// Namespace globs a point's namespace must match one of (empty: every one).
    #[serde(default)]
    pub include_namespaces: Vec<String>,
    /// Namespace globs whose points are left out.
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// CloudWatch metric name globs a point's metric must match one of (empty:
    /// every one).
    #[serde(default)]
    pub include_metrics: Vec<String>,
    /// CloudWatch metric name globs whose points are left out.
    #[serde(default)]
    pub exclude_metrics: Vec<String>,
    /// Whether samples carry CloudWatch's timestamp.
    #[serde(default)]
    pub timestamps: bool,
    /// How long a series stays without an update.
    #[serde(default = "default_staleness")]
    pub staleness: HumanDuration,
    /// Series held at most.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
}

fn default_path() -> String {
    DEFAULT_PATH.to_owned()
}

fn default_staleness() -> HumanDuration {
    HumanDuration(DEFAULT_STALENESS)
}

fn default_max_series() -> usize {
    DEFAULT_MAX_SERIES
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            path: default_path(),
            naming: Naming::default(),
            include_namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            include_metrics: Vec::new(),
            exclude_metrics: Vec::new(),
            timestamps: false,
            staleness: default_staleness(),
            max_series: DEFAULT_MAX_SERIES,
        }
    }
}

impl super::SinkSettings for PrometheusConfig {
    fn check(&self) -> Result<(), String> {
        check_path(&self.path)?;
        if self.staleness.0.is_zero() {
            return Err("staleness must be greater than 0".into());
        }
        if self.max_series == 0 {
            return Err("max_series must be greater than 0".into());
        }
        self.patterns().check()
    }
}

impl PrometheusConfig {
    fn patterns(&self) -> Patterns<'_> {
        Patterns {
            include_namespaces: &self.include_namespaces,
            exclude_namespaces: &self.exclude_namespaces,
            include_metrics: &self.include_metrics,
            exclude_metrics: &self.exclude_metrics,
        }
    }
}

/// Checks a scrape path: it starts with `/`, is not one of the admin listener's
/// own paths, and holds only letters, digits and `/ - _ . ~` with no empty segment
/// (nothing the router would read as a parameter or wildcard).
///
/// # Errors
///
/// A one-line reason.
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with '/'"));
    }
    if RESERVED_PATHS.contains(&path) {
        return Err(format!(
            "path {path:?} is the admin listener's own; choose another (the default is {DEFAULT_PATH:?})"
        ));
    }
    let plain = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c));
    if !plain || path.contains("//") {
        return Err(format!(
            "path {path:?} may hold only letters, digits and / - _ . ~, with no empty segment"
        ));
    }
    Ok(())
}

/// The latest point of a series.
#[derive(Debug, Clone, Copy)]
struct Point {
    value: f64,
    /// CloudWatch's time of the point, ms since the epoch.
    timestamp_ms: i64,
    /// When Hydrant received it, for staleness.
    received: Instant,
}

/// A sample named and ready to store.
#[derive(Debug)]
struct Pending {
    name: String,
    labels: String,
    value: f64,
    timestamp_ms: i64,
    /// Position of its data point's namespace and metric name, for a new family's
    /// help text.
    metric: usize,
}

/// The series of one metric name.
#[derive(Debug)]
struct Family {
    help: String,
    /// By label text ([`exposition::label_text`]), which is the series' key and
    /// what a scrape writes, kept once.
    series: BTreeMap<String, Point>,
}

/// Every series, by family name: sorted, so a scrape's output is the same for the
/// same series.
#[derive(Debug, Default)]
struct Store {
    families: BTreeMap<String, Family>,
    series: usize,
    pruned_at: Option<Instant>,
}

impl Store {
    /// Stores `point` as the latest of its series, unless the series has a later
    /// one. Returns false when it is a new series and the store is full.
    fn upsert(
        &mut self,
        name: String,
        labels: String,
        point: Point,
        help: impl FnOnce() -> String,
        max_series: usize,
    ) -> bool {
        if let Some(family) = self.families.get_mut(&name) {
            if let Some(existing) = family.series.get_mut(&labels) {
                if point.timestamp_ms >= existing.timestamp_ms {
                    *existing = point;
                }
                return true;
            }
            if self.series >= max_series {
                return false;
            }
            family.series.insert(labels, point);
        } else {
            if self.series >= max_series {
                return false;
            }
            let series = BTreeMap::from([(labels, point)]);
            let help = help();
            self.families.insert(name, Family { help, series });
        }
        self.series += 1;
        true
    }

    /// Drops the series not received within `staleness` before `now`.
    fn prune(&mut self, now: Instant, staleness: Duration) {
        let fresh = |point: &Point| now.saturating_duration_since(point.received) < staleness;
        let mut series = 0;
        self.families.retain(|_, family| {
            family.series.retain(|_, point| fresh(point));
            series += family.series.len();
            !family.series.is_empty()
        });
        self.series = series;
        self.pruned_at = Some(now);
    }
}

/// A `prometheus` sink; clones share its series.
#[derive(Debug, Clone)]
pub struct PrometheusSink(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    path: String,
    naming: Naming,
    filter: Filter,
    timestamps: bool,
    staleness: Duration,
    max_series: usize,
    recorder: PrometheusRecorder,
    store: Mutex<Store>,
}

impl PrometheusSink {
    /// An empty sink with `config`'s settings (checked when the configuration was
    /// read), counting its series with `recorder`.
    #[must_use]
    pub fn new(config: &PrometheusConfig, recorder: PrometheusRecorder) -> Self {
        recorder.series(0);
        Self(Arc::new(Shared {
            path: config.path.clone(),
            naming: config.naming,
            filter: Filter::new(config.patterns()),
            timestamps: config.timestamps,
            staleness: config.staleness.0,
            max_series: config.max_series,
            recorder,
            store: Mutex::new(Store::default()),
        }))
    }

    /// Where the admin listener serves the series.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// Series held now.
    #[must_use]
    pub fn series(&self) -> usize {
        self.store().series
    }

    /// Stores the batch's metric points; they are in memory, and served, once this
    /// returns.
    ///
    /// # Errors
    ///
    /// None so far: a point the sink cannot take (a full sink, a line that does not
    /// read as a metric) is counted or logged, never a reason for Firehose to send
    /// the delivery again.
    pub fn commit(&self, batch: &SinkBatch) -> Result<(), SinkError> {
        self.commit_at(batch, Instant::now());
        Ok(())
    }

    /// [`Self::commit`], received at `now`.
    pub fn commit_at(&self, batch: &SinkBatch, now: Instant) {
        let shared = &self.0;
        // Parsed and named before the lock is taken, so scrapes and other commits
        // wait only for the map updates.
        let selected = series::select(&batch.events, &shared.filter);
        if selected.unreadable > 0 {
            tracing::warn!(
                lines = selected.unreadable,
                "prometheus sink: metric events that do not read as metrics were skipped"
            );
        }
        let mut metrics: Vec<(String, String)> = Vec::with_capacity(selected.metrics.len());
        let mut pending = Vec::new();
        for metric in selected.metrics {
            for sample in series::samples(&metric, shared.naming) {
                pending.push(Pending {
                    labels: exposition::label_text(&sample.labels),
                    name: sample.name,
                    value: sample.value,
                    timestamp_ms: sample.timestamp_ms,
                    metric: metrics.len(),
                });
            }
            metrics.push((metric.namespace, metric.metric_name));
        }
        let mut store = self.store();
        if store
            .pruned_at
            .is_none_or(|at| now.saturating_duration_since(at) >= PRUNE_INTERVAL)
        {
            store.prune(now, shared.staleness);
        }
        let mut dropped = 0_u64;
        for sample in pending {
            let point = Point {
                value: sample.value,
                timestamp_ms: sample.timestamp_ms,
                received: now,
            };
            let (namespace, metric_name) = &metrics[sample.metric];
            let help = || format!("CloudWatch metric {namespace} {metric_name}");
            if !store.upsert(sample.name, sample.labels, point, help, shared.max_series) {
                dropped += 1;
            }
        }
        shared.recorder.series(store.series);
        if dropped > 0 {
            shared.recorder.dropped(dropped);
        }
    }

    /// The series in `format`, stale ones dropped first, as one text.
    #[must_use]
    pub fn render(&self, format: Format) -> String {
        self.render_at(format, Instant::now())
    }

    /// [`Self::render`] at `now`.
    #[must_use]
    pub fn render_at(&self, format: Format, now: Instant) -> String {
        let mut scrape = self.scrape_at(format, now);
        let mut out = String::new();
        while let Some(piece) = scrape.next_piece() {
            out.push_str(&piece);
        }
        out
    }

    /// A scrape in `format` that is written piece by piece ([`Scrape`]), stale
    /// series dropped first.
    #[must_use]
    pub fn scrape(&self, format: Format) -> Scrape {
        self.scrape_at(format, Instant::now())
    }

    /// [`Self::scrape`] at `now`.
    #[must_use]
    pub fn scrape_at(&self, format: Format, now: Instant) -> Scrape {
        let mut store = self.store();
        store.prune(now, self.0.staleness);
        self.0.recorder.series(store.series);
        drop(store);
        Scrape {
            sink: self.clone(),
            format,
            next: Next::Start,
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.0.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a [`Scrape`] goes on from.
#[derive(Debug)]
enum Next {
    /// The first family.
    Start,
    /// After the series `labels` of the family `family`.
    After { family: String, labels: String },
    /// Nothing left.
    Done,
}

/// A scrape written in pieces of about [`SCRAPE_PIECE_BYTES`], each under the
/// store's lock for only as long as it takes to write it: memory for a scrape stays
/// at a few pieces whatever the series count (a million series are some 130 MB of
/// text), and commits go on between pieces instead of waiting for the whole scrape.
/// Families and their series come in order, so the pieces join into one valid
/// exposition; a series committed or dropped while the scrape runs is in it or not
/// depending on where the scrape is, as in any scrape of a live target.
#[derive(Debug)]
pub struct Scrape {
    sink: PrometheusSink,
    format: Format,
    next: Next,
}

/// Bytes of text a [`Scrape`] piece holds, about: large enough that the lock is
/// taken rarely (a piece is about 2,000 series), small enough to be a few
/// milliseconds under it.
pub const SCRAPE_PIECE_BYTES: usize = 256 * 1024;

impl Scrape {
    /// The next piece of the exposition, or `None` when it is all written.
    pub fn next_piece(&mut self) -> Option<String> {
        use std::ops::Bound;
        let (family_bound, mut after_labels) = match std::mem::replace(&mut self.next, Next::Done) {
            Next::Start => (Bound::Unbounded, None),
            Next::After { family, labels } => (Bound::Included(family), Some(labels)),
            Next::Done => return None,
        };
        let shared = &self.sink.0;
        let mut out = String::with_capacity(SCRAPE_PIECE_BYTES + 4096);
        let store = self.sink.store();
        let families = store
            .families
            .range::<String, _>((family_bound.as_ref(), Bound::Unbounded));
        for (name, family) in families {
            let series = match after_labels.take() {
                // Going on inside the family the last piece stopped in: its
                // header is written already. (Were the family dropped and made
                // again in between, its header is still the one written.)
                Some(labels) if family_bound_is(&family_bound, name) => family
                    .series
                    .range::<String, _>((Bound::Excluded(&labels), Bound::Unbounded)),
                _ => {
                    exposition::family(&mut out, self.format, name, &family.help);
                    family.series.range::<String, _>(..)
                }
            };
            for (labels, point) in series {
                let timestamp = shared.timestamps.then_some(point.timestamp_ms);
                exposition::sample(&mut out, self.format, name, labels, point.value, timestamp);
                if out.len() >= SCRAPE_PIECE_BYTES {
                    self.next = Next::After {
                        family: name.clone(),
                        labels: labels.clone(),
                    };
                    return Some(out);
                }
            }
        }
        drop(store);
        exposition::finish(&mut out, self.format);
        Some(out)
    }
}

/// Whether `bound` is the family `name` (the family a piece stopped in).
fn family_bound_is(bound: &std::ops::Bound<String>, name: &str) -> bool {
    matches!(bound, std::ops::Bound::Included(family) if family == name)
}

#[cfg(test)]
mod tests;
