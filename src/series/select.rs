//! Which metric points a Prometheus sink takes: the `metric` events of a batch,
//! read back into [`Metric`]s, less those its namespace and metric name globs
//! leave out.

use crate::event::lines::EventLines;
use crate::event::{Kind, Metric};
use crate::glob::Glob;

/// A sink's namespace and metric name globs. A point is taken when its namespace
/// matches one of the included namespaces (or none are given) and no excluded one,
/// and likewise its metric name.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include_namespaces: Vec<Glob>,
    exclude_namespaces: Vec<Glob>,
    include_metrics: Vec<Glob>,
    exclude_metrics: Vec<Glob>,
}

/// The four pattern lists of a sink's settings, by their keys.
#[derive(Debug, Clone, Copy)]
pub struct Patterns<'a> {
    /// `include_namespaces`.
    pub include_namespaces: &'a [String],
    /// `exclude_namespaces`.
    pub exclude_namespaces: &'a [String],
    /// `include_metrics`.
    pub include_metrics: &'a [String],
    /// `exclude_metrics`.
    pub exclude_metrics: &'a [String],
}

impl Patterns<'_> {
    /// Checks the patterns: none may be empty (an empty glob matches only an empty
    /// name, which CloudWatch never sends, so it is a mistake).
    ///
    /// # Errors
    ///
    /// A one-line reason naming the key.
    pub fn check(&self) -> Result<(), String> {
        for (key, patterns) in [
            ("include_namespaces", self.include_namespaces),
            ("exclude_namespaces", self.exclude_namespaces),
            ("include_metrics", self.include_metrics),
            ("exclude_metrics", self.exclude_metrics),
        ] {
            if patterns.iter().any(String::is_empty) {
                return Err(format!("{key}: empty pattern"));
            }
        }
        Ok(())
    }
}

impl Filter {
    /// Compiles `patterns`.
    #[must_use]
    pub fn new(patterns: Patterns<'_>) -> Self {
        let globs = |patterns: &[String]| patterns.iter().map(|p| Glob::new(p)).collect();
        Self {
            include_namespaces: globs(patterns.include_namespaces),
            exclude_namespaces: globs(patterns.exclude_namespaces),
            include_metrics: globs(patterns.include_metrics),
            exclude_metrics: globs(patterns.exclude_metrics),
        }
    }

    /// Whether points of `namespace` are taken.
    #[must_use]
    pub fn namespace(&self, namespace: &str) -> bool {
        allowed(
            &self.include_namespaces,
            &self.exclude_namespaces,
            namespace,
        )
    }

    /// Whether points of the CloudWatch metric `metric_name` are taken.
    #[must_use]
    pub fn metric(&self, metric_name: &str) -> bool {
        allowed(&self.include_metrics, &self.exclude_metrics, metric_name)
    }
}

/// Whether `text` matches one of `include` (or `include` is empty) and none of
/// `exclude`.
fn allowed(include: &[Glob], exclude: &[Glob], text: &str) -> bool {
    (include.is_empty() || include.iter().any(|glob| glob.matches(text)))
        && !exclude.iter().any(|glob| glob.matches(text))
}

/// The points a sink takes from a batch.
#[derive(Debug, Default)]
pub struct Selected {
    /// The points, in the batch's order.
    pub metrics: Vec<Metric>,
    /// `metric` lines that did not read back as a [`Metric`]. Hydrant wrote them
    /// itself, so one is a bug to report, never a reason to refuse a delivery.
    pub unreadable: usize,
}

/// The `metric` events of `events` that `filter` takes. Other kinds are skipped:
/// routes decide what reaches a sink, and users route `kind = "metric"` to it.
#[must_use]
pub fn select(events: &EventLines, filter: &Filter) -> Selected {
    let mut selected = Selected::default();
    for (meta, line) in events.iter() {
        // A line's metadata names its namespace, so most points left out are
        // never parsed.
        if meta.kind != Kind::Metric.as_str()
            || meta
                .namespace
                .as_deref()
                .is_some_and(|namespace| !filter.namespace(namespace))
        {
            continue;
        }
        let Ok(metric) = serde_json::from_slice::<Metric>(line) else {
            selected.unreadable += 1;
            continue;
        };
        let namespace_unchecked = meta.namespace.is_none();
        if (namespace_unchecked && !filter.namespace(&metric.namespace))
            || !filter.metric(&metric.metric_name)
        {
            continue;
        }
        selected.metrics.push(metric);
    }
    selected
}
