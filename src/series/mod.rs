//! Series: CloudWatch metric data points as Prometheus samples, named the way the
//! exporters users already run name them, for the sinks that speak Prometheus.
//!
//! [`samples`] turns one [`Metric`] into one [`Sample`] per statistic: `min`, `max`,
//! `sum` and `count` as the stream sends them, every extra statistic (`p99`,
//! `p99.9`, `TM(10%:90%)`, `IQM`, …), and the average, worked out as sum / count and
//! left out when the count is 0 (CloudWatch streams no average of its own). Points
//! decoded from the JSON and the OpenTelemetry formats carry the same statistics
//! under the same names, so switching a stream's format changes no series. Every
//! sample is a gauge; it carries CloudWatch's timestamp, and the sink decides whether
//! to expose it.
//!
//! The [`Naming`] scheme decides the names and labels. Each follows its exporter's
//! rules, then makes the result a valid Prometheus name where the exporter would not
//! (see [`naming`], which also says how two dimensions that clean up to one label name
//! are told apart). Label values are never changed. The examples below are one JSON
//! data point, `AWS/EC2` `CPUUtilization` with dimension `InstanceId=i-0abc`, region
//! `eu-west-1`, account `123456789012`, unit `Percent` and value
//! `{"max":91.25,"min":3.5,"sum":412.75,"count":7}`.
//!
//! # `yace` (the default)
//!
//! The names of yet-another-cloudwatch-exporter, so that its dashboards and alerts
//! keep working:
//!
//! ```text
//! aws_ec2_cpuutilization_average{account_id="123456789012",dimension_InstanceId="i-0abc",region="eu-west-1"} 58.964285714285715
//! aws_ec2_cpuutilization_maximum{…} 91.25
//! aws_ec2_cpuutilization_minimum{…} 3.5
//! aws_ec2_cpuutilization_sum{…} 412.75
//! aws_ec2_cpuutilization_sample_count{…} 7
//! ```
//!
//! The name is `<namespace>_<metric>_<statistic>`:
//!
//! - A text is put in Prometheus style by one rule: space, `,`, tab, `/`, `\`, `.`,
//!   `-`, `:`, `=`, `@`, `<`, `>`, `(`, `)` and `“` become `_`; `%` becomes
//!   `_percent`; an upper-case letter that follows a lower-case letter or a digit gets
//!   a `_` before it; everything is lower case. So `NetworkIn` is `network_in`,
//!   `CPUUtilization` is `cpuutilization`, `HTTPCode_Target_5XX_Count` is
//!   `httpcode_target_5_xx_count` and `EBSIOBalance%` is `ebsiobalance_percent`.
//! - The namespace loses one leading `/`, is lower-cased and then put in that style;
//!   unless it then starts with `aws` it gets `aws_` before it: `AWS/EC2` is
//!   `aws_ec2`, `CWAgent` is `aws_cwagent`, `/aws/sagemaker/TrainingJobs` is
//!   `aws_sagemaker_trainingjobs`.
//! - A metric name (in that style) that starts with a word of the namespace loses
//!   that word: `Glue` `glue.driver.aggregate.bytesRead` is
//!   `aws_glue_driver_aggregate_bytes_read`, `AWS/Kafka` `KafkaDataLogsDiskUsed` is
//!   `aws_kafka_data_logs_disk_used`.
//! - The statistic is CloudWatch's name in that style: `average`, `sum`, `minimum`,
//!   `maximum`, `sample_count`, `p99`, `p99_9`, `tm_10_percent_90_percent_` for
//!   `TM(10%:90%)`, `iqm`.
//!
//! Labels: `dimension_<Name>` per dimension, the name's case kept, the characters of
//! the first rule above that become `_` and `%` becoming `_percent`
//! (`dimension_InstanceId`); then `region` and `account_id`. YACE's `name` label
//! (the resource's ARN from the tagging API, `global` when it found none, or the
//! name of a static or custom-namespace job) and its `tag_*`, `custom_tag_*` and
//! `account_alias` labels have no counterpart in a stream and are not set. Where YACE keeps a character Prometheus names cannot hold (`#`, `[`, a
//! letter outside ASCII), or drops a dimension whose label name is still invalid
//! (one starting with a digit), Hydrant writes `_` for that character and keeps the
//! dimension.
//!
//! # `cloudwatch_exporter`
//!
//! The names of prometheus/cloudwatch_exporter:
//!
//! ```text
//! aws_ec2_cpuutilization_average{account_id="123456789012",instance_id="i-0abc",job="aws_ec2",region="eu-west-1"} 58.964285714285715
//! aws_ec2_cpuutilization_maximum{…} 91.25
//! aws_ec2_cpuutilization_minimum{…} 3.5
//! aws_ec2_cpuutilization_sum{…} 412.75
//! aws_ec2_cpuutilization_sample_count{…} 7
//! ```
//!
//! The name is the lower-cased namespace, `_`, the metric name in snake case (a `_`
//! between a lower-case letter or digit and the upper-case letter after it, then
//! lower case), with every character outside `[a-zA-Z0-9:_]` made `_` and runs of `_`
//! made one; no `aws_` is added (`CWAgent` `mem_used_percent` is
//! `cwagent_mem_used_percent_sum`). Then `_sum`, `_sample_count`, `_minimum`,
//! `_maximum`, `_average`, or `_` and an extra statistic cleaned the same way (`p99`,
//! `p99_9`, `tm_10_:90_` for `TM(10%:90%)`). DynamoDB's capacity and throttle
//! metrics of a global secondary index get `_index` after the metric name, as the
//! exporter names them, so they do not mix with the table's.
//!
//! Labels: each dimension in snake case, characters outside `[a-zA-Z0-9_]` made `_`
//! and runs of `_` made one, a `_` before a leading digit (`instance_id`,
//! `load_balancer_name`), and `job`, the cleaned namespace
//! (`aws_ec2`), as the exporter sets it. A scrape by Prometheus renames `job` to
//! `exported_job` unless the scrape config has `honor_labels: true`, exactly as for
//! the exporter. The exporter's `instance=""` is not set, an empty label being no
//! label in Prometheus, but the name is kept free: a dimension `Instance` becomes
//! `instance_2` rather than pass for the scrape target's `instance`. Hydrant adds `region` and `account_id`, which the exporter (one
//! process per account and region) has no need for: one stream can carry many
//! accounts, and without them their series would collide. The `HELP` text and the
//! `aws_resource_info` series of tagged resources are not produced.
//!
//! # `otel`
//!
//! What the OpenTelemetry Collector makes of a stream in OpenTelemetry format
//! (`awsfirehosereceiver`, then the Prometheus exporter with its default suffixes and
//! resource attributes turned into labels):
//!
//! ```text
//! amazonaws_com_AWS_EC2_CPUUtilization_percent{InstanceId="i-0abc",MetricName="CPUUtilization",Namespace="AWS/EC2",cloud_account_id="123456789012",cloud_region="eu-west-1",quantile="0"} 3.5
//! amazonaws_com_AWS_EC2_CPUUtilization_percent{…,quantile="1"} 91.25
//! amazonaws_com_AWS_EC2_CPUUtilization_percent_sum{…} 412.75
//! amazonaws_com_AWS_EC2_CPUUtilization_percent_count{…} 7
//! amazonaws_com_AWS_EC2_CPUUtilization_percent_average{…} 58.964285714285715
//! ```
//!
//! CloudWatch names the metric `amazonaws.com/<namespace>/<metric>`; the translator
//! splits that into its runs of letters and digits, joins them with `_`, case kept,
//! and appends the unit as a word (from the stream's UCUM unit: `%` is `percent`,
//! `By` `bytes`, `s` `seconds`, `By/s` `bytes_per_second`, `{Count}` nothing,
//! `{Count}/s` `per_second`, `1` nothing; others as they are) unless the name has that
//! word already. A JSON point's CloudWatch unit (`Percent`) counts as the UCUM unit
//! the OpenTelemetry format gives it (`%`). Letters outside ASCII, which the collector
//! keeps, separate words here, so that every name is valid for every Prometheus. The
//! point is an OpenTelemetry summary: the minimum and maximum are
//! quantiles 0 and 1, each percentile `pNN` is quantile `0.NN`, and the sum and count
//! are `_sum` and `_count` (`p0` and `p100` would repeat quantiles 0 and 1, and are
//! named `_p0` and `_p100` instead). The collector has no average; Hydrant adds
//! `_average` so every scheme has one. Statistics that are not percentiles (the
//! OpenTelemetry formats cannot carry them) become `_` and their words, `%` as
//! `percent`: `_TM_10_percent_90_percent`, `_IQM`.
//!
//! Labels: `Namespace` and `MetricName` (which CloudWatch sets on every OpenTelemetry
//! data point), each dimension with characters outside `[a-zA-Z0-9_]` made `_` (a
//! name starting with a digit gets `key_` before it, one starting with `_` gets
//! `key`), the resource's `cloud_region` and `cloud_account_id`, and `quantile` for
//! the summary's quantiles. Dimensions are labels of their own, as in OpenTelemetry
//! 0.7; 1.0 nests them in one `Dimensions` attribute, which the collector would turn
//! into one label of JSON text, useless for queries. `cloud_provider="aws"`, the
//! same on every series, and `aws_exporter_arn`, which the point does not keep, are
//! not set.

use crate::event::Metric;

pub mod naming;
mod select;

pub use naming::{Naming, Statistic};
pub use select::{Filter, Patterns, Selected, select};

/// One Prometheus sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// Label names and values, sorted by name, names unique.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// The data point's time as CloudWatch stamps it, ms since the epoch.
    pub timestamp_ms: i64,
}

/// The samples of every statistic of `metric`, named by `naming`: the point's
/// statistics in their order, then the average when there is one.
#[must_use]
pub fn samples(metric: &Metric, naming: Naming) -> Vec<Sample> {
    let names = naming.names(metric);
    let labels = naming.labels(metric);
    let average = average(metric);
    let mut out = Vec::with_capacity(metric.value.0.len() + 1);
    let statistics = metric
        .value
        .0
        .iter()
        .map(|(name, value)| (Statistic::from_stream(name), *value))
        .chain(average.map(|value| (Statistic::Average, value)));
    for (statistic, value) in statistics {
        let series = names.series(statistic);
        let mut labels = labels.clone();
        if let Some((name, label_value)) = series.label {
            // The scheme keeps this name out of the dimensions' way, so it is new.
            let at = labels.partition_point(|(existing, _)| existing.as_str() < name);
            labels.insert(at, (name.to_owned(), label_value));
        }
        out.push(Sample {
            name: series.name,
            labels,
            value,
            timestamp_ms: metric.timestamp,
        });
    }
    out
}

/// Sum / count, when the point has both and the count is above 0.
fn average(metric: &Metric) -> Option<f64> {
    let count = metric.value.get("count")?;
    let sum = metric.value.get("sum")?;
    (count > 0.0).then(|| sum / count)
}

#[cfg(test)]
mod tests;
