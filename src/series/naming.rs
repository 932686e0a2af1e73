//! Naming schemes: the Prometheus metric name and labels of each statistic of a
//! CloudWatch data point, as three exporters that users already run name them.
//!
//! Every scheme follows the exporter's rules where they give a valid Prometheus name,
//! and then makes the result valid where the exporter would not: a metric name is
//! `[a-zA-Z_:][a-zA-Z0-9_:]*` and a label name `[a-zA-Z_][a-zA-Z0-9_]*`, any other
//! character becoming `_`. Label values are never changed. The rules per scheme, with
//! examples, are in the [module documentation of `series`](super).
//!
//! Two dimensions can sanitise to the same label name (`Instance-Id` and
//! `Instance.Id`), and a dimension can sanitise to a name the scheme itself uses
//! (`region`, `job`, `instance`, `quantile`). The scheme's own labels always keep their names.
//! The dimensions then claim theirs one at a time: first those whose names needed no
//! character replaced, then the others, each group in byte order of the CloudWatch
//! dimension name. A dimension whose label name is already taken gets the first free
//! of `<name>_2`, `<name>_3`, …. The outcome depends only on the set of dimension
//! names, so a series keeps its labels from one data point to the next, and no
//! dimension is ever dropped (dropping one would merge distinct series into one).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::event::Metric;

/// How series are named: the scheme of the exporter whose dashboards and alerts
/// should keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Naming {
    /// yet-another-cloudwatch-exporter (YACE):
    /// `aws_ec2_cpuutilization_average{dimension_InstanceId=…}`.
    #[default]
    Yace,
    /// prometheus/cloudwatch_exporter:
    /// `aws_ec2_cpuutilization_average{job="aws_ec2",instance_id=…}`.
    CloudwatchExporter,
    /// The OpenTelemetry Collector's Prometheus translation of a metric stream in
    /// OpenTelemetry format: `amazonaws_com_AWS_EC2_CPUUtilization_percent_sum`.
    Otel,
}

impl Naming {
    /// The scheme's name in the configuration.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yace => "yace",
            Self::CloudwatchExporter => "cloudwatch_exporter",
            Self::Otel => "otel",
        }
    }

    /// The names of `metric`'s series: the part shared by all its statistics is
    /// worked out here, once per data point.
    #[must_use]
    pub fn names(self, metric: &Metric) -> Names {
        let base = match self {
            Self::Yace => yace_base(&metric.namespace, &metric.metric_name),
            Self::CloudwatchExporter => cloudwatch_exporter_base(metric),
            Self::Otel => otel_base(
                &metric.namespace,
                &metric.metric_name,
                metric.unit.as_deref(),
            ),
        };
        Names { naming: self, base }
    }

    /// The labels every series of `metric` carries, sorted by name (a statistic may
    /// add one more, see [`SeriesName::label`]).
    #[must_use]
    pub fn labels(self, metric: &Metric) -> Vec<(String, String)> {
        let mut fixed: Vec<(String, String)> = Vec::with_capacity(4);
        // Names the scheme keeps for itself without setting them on every series.
        let mut reserved: &[&str] = &[];
        match self {
            Self::Yace => {
                push_some(&mut fixed, "region", metric.region.as_deref());
                push_some(&mut fixed, "account_id", metric.account_id.as_deref());
            }
            Self::CloudwatchExporter => {
                let job = safe_name(&lower(&metric.namespace));
                fixed.push(("job".to_owned(), job));
                push_some(&mut fixed, "region", metric.region.as_deref());
                push_some(&mut fixed, "account_id", metric.account_id.as_deref());
                reserved = &["instance"];
            }
            Self::Otel => {
                fixed.push(("Namespace".to_owned(), metric.namespace.clone()));
                fixed.push(("MetricName".to_owned(), metric.metric_name.clone()));
                push_some(&mut fixed, "cloud_region", metric.region.as_deref());
                push_some(&mut fixed, "cloud_account_id", metric.account_id.as_deref());
                reserved = &["quantile"];
            }
        }
        let mut taken: BTreeSet<String> = fixed.iter().map(|(name, _)| name.clone()).collect();
        taken.extend(reserved.iter().map(|name| (*name).to_owned()));

        let mut dimensions: Vec<(bool, &str, &str)> = metric
            .dimensions
            .iter()
            .map(|(name, value)| (!is_plain(name), name.as_str(), value.as_str()))
            .collect();
        // Plain names first, then byte order (the map is already in byte order, and
        // the sort is stable).
        dimensions.sort_by_key(|(replaced, _, _)| *replaced);

        let mut labels = fixed;
        for (_, name, value) in dimensions {
            let wanted = self.dimension_label(name);
            let mut label = wanted.clone();
            let mut suffix = 2_u32;
            while taken.contains(&label) {
                label = format!("{wanted}_{suffix}");
                suffix += 1;
            }
            taken.insert(label.clone());
            labels.push((label, value.to_owned()));
        }
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        labels
    }

    /// The label name of CloudWatch dimension `name`, before collisions are resolved.
    #[must_use]
    pub fn dimension_label(self, name: &str) -> String {
        match self {
            Self::Yace => {
                let mut label = String::with_capacity(name.len() + 10);
                label.push_str("dimension_");
                yace_label_to(name, &mut label);
                label
            }
            Self::CloudwatchExporter => {
                finish_label(&collapse_underscores(&plain_chars(&snake_case(name))))
            }
            Self::Otel => otel_label(name),
        }
    }
}

/// The statistics a data point can carry, under the names the exporters give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic<'a> {
    /// CloudWatch `SampleCount`; the stream's `count`.
    SampleCount,
    /// CloudWatch `Sum`; the stream's `sum`.
    Sum,
    /// CloudWatch `Minimum`; the stream's `min`.
    Minimum,
    /// CloudWatch `Maximum`; the stream's `max`.
    Maximum,
    /// CloudWatch `Average`: not in the stream, worked out as sum / count.
    Average,
    /// Any other statistic by its CloudWatch name: `p99`, `p99.9`, `TM(10%:90%)`,
    /// `IQM`, ….
    Other(&'a str),
}

impl<'a> Statistic<'a> {
    /// The statistic a metric stream names `name` (JSON format keys, which the
    /// OpenTelemetry decoder uses too).
    #[must_use]
    pub fn from_stream(name: &'a str) -> Self {
        match name {
            "count" => Self::SampleCount,
            "sum" => Self::Sum,
            "min" => Self::Minimum,
            "max" => Self::Maximum,
            other => Self::Other(other),
        }
    }

    /// The name CloudWatch's API gives the statistic (`SampleCount`, `p99`).
    #[must_use]
    pub fn cloudwatch_name(self) -> &'a str {
        match self {
            Self::SampleCount => "SampleCount",
            Self::Sum => "Sum",
            Self::Minimum => "Minimum",
            Self::Maximum => "Maximum",
            Self::Average => "Average",
            Self::Other(name) => name,
        }
    }
}

/// The names of one data point's series under one scheme (see [`Naming::names`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    naming: Naming,
    /// The name without the statistic, already valid.
    base: String,
}

/// The name of one statistic's series, and the label that tells it apart from the
/// point's other statistics when the name alone does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesName {
    /// The metric name.
    pub name: String,
    /// One more label for this statistic only: `quantile` under [`Naming::Otel`].
    pub label: Option<(&'static str, String)>,
}

impl Names {
    /// The series of `statistic`.
    #[must_use]
    pub fn series(&self, statistic: Statistic<'_>) -> SeriesName {
        let mut name = self.base.clone();
        let mut label = None;
        match self.naming {
            Naming::Yace => {
                name.push('_');
                yace_string_to(statistic.cloudwatch_name(), &mut name);
            }
            Naming::CloudwatchExporter => {
                name.push('_');
                match statistic {
                    Statistic::SampleCount => name.push_str("sample_count"),
                    Statistic::Other(other) => name.push_str(&safe_name(&snake_case(other))),
                    named => name.push_str(&lower(named.cloudwatch_name())),
                }
            }
            Naming::Otel => match statistic {
                Statistic::Minimum => label = Some(("quantile", "0".to_owned())),
                Statistic::Maximum => label = Some(("quantile", "1".to_owned())),
                Statistic::SampleCount => name.push_str("_count"),
                Statistic::Sum => name.push_str("_sum"),
                Statistic::Average => name.push_str("_average"),
                Statistic::Other(other) => match percentile_quantile(other) {
                    Some(quantile) => label = Some(("quantile", quantile)),
                    None => {
                        for token in otel_tokens(other, true) {
                            name.push('_');
                            name.push_str(&token);
                        }
                    }
                },
            },
        }
        SeriesName {
            name: finish_name(&name),
            label,
        }
    }
}

fn push_some(labels: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        labels.push((name.to_owned(), value.to_owned()));
    }
}

/// Whether `name` is made only of characters every label name may hold, so that no
/// scheme has to replace any of them.
fn is_plain(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Lower case, character by character (as Go's `strings.ToLower` and Java's
/// `toLowerCase` do for the ASCII names CloudWatch allows).
fn lower(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

/// A valid metric name: characters outside `[a-zA-Z0-9_:]` become `_`, and a name
/// starting with a digit (or empty) gets a leading `_`.
fn finish_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// A valid label name: as [`finish_name`] without the colon.
fn finish_label(name: &str) -> String {
    finish_name(&name.replace(':', "_"))
}

/// Characters outside `[a-zA-Z0-9_]` become `_`.
fn plain_chars(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// yet-another-cloudwatch-exporter

/// YACE's conversion of a name into Prometheus style: the separator characters
/// become `_`, `%` becomes `_percent`, an upper-case letter that follows a lower-case
/// letter or a digit in the original text gets a `_` before it, and everything is
/// lower case. Other characters are kept, which [`finish_name`] fixes afterwards.
fn yace_string_to(text: &str, out: &mut String) {
    let mut previous: Option<char> = None;
    for c in text.chars() {
        match c {
            ' ' | ',' | '\t' | '/' | '\\' | '.' | '-' | ':' | '=' | '@' | '<' | '>' | '(' | ')'
            | '\u{201C}' => out.push('_'),
            '%' => out.push_str("_percent"),
            _ => {
                if c.is_uppercase() && previous.is_some_and(|p| p.is_lowercase() || p.is_numeric())
                {
                    out.push('_');
                }
                out.extend(c.to_lowercase());
            }
        }
        previous = Some(c);
    }
}

fn yace_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    yace_string_to(text, &mut out);
    out
}

/// `aws_<namespace>_<metric name>` by YACE's rules (see the module documentation of
/// `series`), valid.
fn yace_base(namespace: &str, metric_name: &str) -> String {
    let namespace = namespace.strip_prefix('/').unwrap_or(namespace);
    let namespace = yace_string(&lower(namespace));
    let metric = yace_string(metric_name);
    // A metric name that repeats a word of the namespace at its start loses it
    // (`Glue` + `glue.driver.…`). YACE compares the words in order, each against the
    // name from where the previous match would end, but measures that end from the
    // start of the name; the result is reproduced as is, quirks included.
    let metric = metric.as_bytes();
    let mut skip = 0;
    for part in namespace.split('_') {
        if metric[skip..].starts_with(part.as_bytes()) {
            skip = part.len();
        }
    }
    let rest = &metric[skip..];
    let rest = rest.strip_prefix(b"_").unwrap_or(rest);

    let mut base = String::with_capacity(4 + namespace.len() + 1 + rest.len());
    if !namespace.starts_with("aws") {
        base.push_str("aws_");
    }
    base.push_str(&namespace);
    base.push('_');
    // Cutting at a byte count can split a character of a non-ASCII name; the pieces
    // become `_` like any other character a metric name cannot hold.
    base.push_str(&String::from_utf8_lossy(rest));
    finish_name(&base)
}

/// YACE's label form of a dimension name (its default, without `labelsSnakeCase`):
/// the separator characters become `_`, `%` becomes `_percent`, case is kept.
/// Where YACE then drops a dimension whose name is still not a valid label name, the
/// remaining characters become `_` here instead.
fn yace_label_to(name: &str, out: &mut String) {
    for c in name.chars() {
        match c {
            '%' => out.push_str("_percent"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => out.push('_'),
        }
    }
}

// ---------------------------------------------------------------------------------
// prometheus/cloudwatch_exporter

/// cloudwatch_exporter's snake case: `_` between a lower-case ASCII letter or digit
/// and the upper-case ASCII letter after it, then lower case.
fn snake_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut previous: Option<char> = None;
    for c in text.chars() {
        if c.is_ascii_uppercase()
            && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            out.push('_');
        }
        out.extend(c.to_lowercase());
        previous = Some(c);
    }
    out
}

/// Runs of `_` become one.
fn collapse_underscores(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out
}

/// cloudwatch_exporter's metric-name cleaning: characters outside `[a-zA-Z0-9:_]`
/// become `_`, then runs of `_` become one.
fn safe_name(text: &str) -> String {
    let replaced: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    collapse_underscores(&replaced)
}

/// DynamoDB metrics that cloudwatch_exporter names `…_index_…` when the rule asks
/// for the `GlobalSecondaryIndexName` dimension, so that the index's series do not
/// mix with the table's under the same name.
const DYNAMODB_INDEX_METRICS: [&str; 6] = [
    "ConsumedReadCapacityUnits",
    "ConsumedWriteCapacityUnits",
    "ProvisionedReadCapacityUnits",
    "ProvisionedWriteCapacityUnits",
    "ReadThrottleEvents",
    "WriteThrottleEvents",
];

fn cloudwatch_exporter_base(metric: &Metric) -> String {
    let mut base = safe_name(&format!(
        "{}_{}",
        lower(&metric.namespace),
        snake_case(&metric.metric_name)
    ));
    if metric.namespace == "AWS/DynamoDB"
        && metric.dimensions.contains_key("GlobalSecondaryIndexName")
        && DYNAMODB_INDEX_METRICS.contains(&metric.metric_name.as_str())
    {
        base.push_str("_index");
    }
    finish_name(&base)
}

// ---------------------------------------------------------------------------------
// OpenTelemetry Collector

/// The words of `text`: runs of ASCII letters and digits. With `percent`, a `%` is a
/// word of its own, `percent`, so that `TM(10%:90%)` and `TM(10:90)` stay apart.
fn otel_tokens(text: &str, percent: bool) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            current.push(c);
            continue;
        }
        if !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
        }
        if percent && c == '%' {
            tokens.push("percent".to_owned());
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// The UCUM unit a metric stream in OpenTelemetry format gives for CloudWatch unit
/// `unit` (the inverse of the OpenTelemetry decoder's table; rates are `…/s`).
fn ucum_unit(unit: &str) -> String {
    let plain = |unit: &str| -> Option<&'static str> {
        Some(match unit {
            "Seconds" => "s",
            "Microseconds" => "us",
            "Milliseconds" => "ms",
            "Bytes" => "By",
            "Kilobytes" => "kBy",
            "Megabytes" => "MBy",
            "Gigabytes" => "GBy",
            "Terabytes" => "TBy",
            "Bits" => "bit",
            "Kilobits" => "kbit",
            "Megabits" => "MBit",
            "Gigabits" => "GBit",
            "Terabits" => "Tbit",
            "Percent" => "%",
            "Count" => "{Count}",
            "None" => "1",
            _ => return None,
        })
    };
    if let Some(ucum) = plain(unit) {
        return ucum.to_owned();
    }
    if let Some(ucum) = unit.strip_suffix("/Second").and_then(plain) {
        return format!("{ucum}/s");
    }
    unit.to_owned()
}

/// The Prometheus word for a UCUM unit, as the collector's translator has it; units
/// it does not know are kept as they are.
fn prometheus_unit(ucum: &str) -> &str {
    match ucum {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The word after `per` for a UCUM denominator.
fn prometheus_per_unit(ucum: &str) -> &str {
    match ucum {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// `amazonaws.com/<namespace>/<metric>` (the stream's OpenTelemetry metric name)
/// split into words and joined with `_`, then the unit's words unless the name has
/// them already.
fn otel_base(namespace: &str, metric_name: &str, unit: Option<&str>) -> String {
    let mut tokens = vec!["amazonaws".to_owned(), "com".to_owned()];
    tokens.extend(otel_tokens(namespace, false));
    tokens.extend(otel_tokens(metric_name, false));
    if let Some(unit) = unit {
        let ucum = ucum_unit(unit);
        let (main, per) = match ucum.split_once('/') {
            Some((main, per)) => (main.trim(), Some(per.trim())),
            None => (ucum.trim(), None),
        };
        if !main.is_empty() && !main.contains(['{', '}']) {
            let word = otel_tokens(prometheus_unit(main), false).join("_");
            if !word.is_empty() && !tokens.contains(&word) {
                tokens.push(word);
            }
        }
        if let Some(per) = per.filter(|per| !per.is_empty() && !per.contains(['{', '}'])) {
            let word = otel_tokens(prometheus_per_unit(per), false).join("_");
            if !word.is_empty() && !tokens.contains(&word) {
                tokens.push("per".to_owned());
                tokens.push(word);
            }
        }
    }
    finish_name(&tokens.join("_"))
}

/// The collector's label form of an attribute name: characters other than ASCII
/// letters, digits and `_` become `_`; a name starting with a digit gets `key_`
/// before it, one starting with `_` gets `key` (which also keeps it out of the `__`
/// names Prometheus reserves).
fn otel_label(name: &str) -> String {
    let label = plain_chars(name);
    match label.chars().next() {
        None => "key".to_owned(),
        Some(c) if c.is_ascii_digit() => format!("key_{label}"),
        Some('_') => format!("key{label}"),
        Some(_) => label,
    }
}

/// The quantile of percentile statistic `pNN` or `pNN.N…` strictly between 0 and
/// 100, as a decimal (`p99` → `0.99`, `p99.9` → `0.999`, `p5` → `0.05`), worked out
/// on the digits so no rounding creeps in. `None` for other statistics, and for `p0`
/// and `p100`, whose quantiles would be those of the minimum and maximum.
fn percentile_quantile(statistic: &str) -> Option<String> {
    let number = statistic.strip_prefix('p')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |text: &str| text.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 2 || !digits(whole) || !digits(fraction) {
        return None;
    }
    if number.ends_with('.') {
        return None;
    }
    let mut quantile = format!("0.{whole:0>2}{fraction}");
    while quantile.ends_with('0') {
        quantile.pop();
    }
    if quantile.ends_with('.') {
        // Every digit was zero: p0, p00, p0.0.
        return None;
    }
    Some(quantile)
}
