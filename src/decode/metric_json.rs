//! CloudWatch Metric Streams in JSON format: newline-delimited objects, one data
//! point each, every statistic kept.
//!
//! Shape: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch-metric-streams-formats-json.html>.
//! `value` holds `count`, `sum`, `min`, `max` and any additional statistics the
//! stream asks for, by their CloudWatch names (`p99`, `p99.9`, `TM(10%:90%)`, `IQM`…);
//! all of them are kept, in that order.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use super::{RecordCx, RecordError};
use crate::event::{Metric, Statistics};

/// The four statistics every data point has, written first.
const BASIC: [&str; 4] = ["count", "sum", "min", "max"];

#[derive(Deserialize)]
struct Point {
    metric_stream_name: Option<String>,
    account_id: Option<String>,
    region: Option<String>,
    namespace: String,
    metric_name: String,
    #[serde(default)]
    dimensions: BTreeMap<String, String>,
    timestamp: i64,
    value: OrderedStatistics,
    unit: Option<String>,
}

/// `value`, keeping the order of the input.
struct OrderedStatistics(Vec<(String, f64)>);

impl<'de> Deserialize<'de> for OrderedStatistics {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StatisticsVisitor;
        impl<'de> Visitor<'de> for StatisticsVisitor {
            type Value = OrderedStatistics;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of statistic names to numbers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut statistics = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, f64>()? {
                    statistics.push((name, value));
                }
                Ok(OrderedStatistics(statistics))
            }
        }
        deserializer.deserialize_map(StatisticsVisitor)
    }
}

/// Whether a record looks like Metric Streams JSON.
#[must_use]
pub fn looks_like_metric_json(bytes: &[u8]) -> bool {
    super::starts_json_object_with(bytes, b"\"metric_stream_name\"")
}

/// Writes one `metric` event per data point in `bytes`.
///
/// # Errors
///
/// A description of the first data point that is not valid Metric Streams JSON;
/// the caller discards whatever this record had written.
pub fn decode(bytes: &[u8], cx: &mut RecordCx<'_>) -> Result<usize, RecordError> {
    let mut count = 0;
    for point in serde_json::Deserializer::from_slice(bytes).into_iter::<Point>() {
        let point = point.map_err(|error| RecordError::MetricPoint {
            detail: error.to_string(),
        })?;
        cx.writer.metric(cx.index, &to_metric(point));
        count += 1;
    }
    if count == 0 {
        return Err(RecordError::NoMetricPoint);
    }
    Ok(count)
}

fn to_metric(point: Point) -> Metric {
    let mut rest = point.value.0;
    let mut ordered = Vec::with_capacity(rest.len());
    for name in BASIC {
        if let Some(position) = rest.iter().position(|(key, _)| key == name) {
            ordered.push(rest.remove(position));
        }
    }
    ordered.extend(rest);
    Metric {
        timestamp: point.timestamp,
        metric_stream_name: point.metric_stream_name,
        account_id: point.account_id,
        region: point.region,
        namespace: point.namespace,
        metric_name: point.metric_name,
        dimensions: point.dimensions,
        unit: point.unit,
        value: Statistics(ordered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::run_decoder;
    use crate::testing::{fixture, parse_lines};

    fn run(bytes: &[u8]) -> Result<Vec<serde_json::Value>, String> {
        let (result, lines) = run_decoder(0, |cx| decode(bytes, cx));
        result.map_err(|error| error.to_string())?;
        Ok(parse_lines(&lines))
    }

    #[test]
    fn decodes_a_data_point_field_by_field() {
        let events = run(&fixture("otel-contrib/cwmetricstream/single_record")).unwrap();
        assert_eq!(events.len(), 1);
        let metric = &events[0];
        assert_eq!(metric["kind"], "metric");
        assert_eq!(metric["metric_stream_name"], "MyMetricStream");
        assert_eq!(metric["account_id"], "1234567890");
        assert_eq!(metric["region"], "us-east-1");
        assert_eq!(metric["namespace"], "AWS/EC2");
        assert_eq!(metric["metric_name"], "DiskWriteOps");
        assert_eq!(
            metric["dimensions"],
            serde_json::json!({"InstanceId": "i-123456789012"})
        );
        assert_eq!(metric["timestamp"], 1_611_929_698_000_i64);
        assert_eq!(metric["unit"], "Seconds");
        assert_eq!(
            metric["value"],
            serde_json::json!({"count": 3.0, "sum": 20.0, "min": 0.0, "max": 18.0})
        );
    }

    #[test]
    fn every_extra_statistic_is_kept_in_order() {
        let events = run(&fixture(
            "otel-contrib/metricstreams-json/valid_metric_with_unsupported_stats.json",
        ))
        .unwrap();
        let value = events[0]["value"].as_object().unwrap();
        let names: Vec<&str> = value.keys().map(String::as_str).collect();
        // serde_json's map is sorted; check presence and values instead of order here,
        // and the order through Statistics below.
        for name in [
            "count",
            "sum",
            "min",
            "max",
            "p99",
            "TM(25%:75%)",
            "WM(10%:90%)",
            "TC(0.005:0.030)",
            "TS(80%:)",
            "PR(:300)",
            "IQM",
            "tm99",
            "wm98",
        ] {
            assert!(names.contains(&name), "{name} missing");
        }
        assert_eq!(value["TM(25%:75%)"], 16.43);
        assert_eq!(value["IQM"], 16.0);
        let percentiles = run(&fixture(
            "otel-contrib/metricstreams-json/valid_metric_with_percentiles.json",
        ))
        .unwrap();
        assert!(percentiles[0]["value"]["p99"].is_number());
    }

    #[test]
    fn statistics_are_ordered_basic_first() {
        let point: Point = serde_json::from_str(
            r#"{"namespace":"N","metric_name":"M","timestamp":1,"value":{"p99":9,"max":8,"IQM":7,"count":1,"min":0,"sum":5}}"#,
        )
        .unwrap();
        let names: Vec<String> = to_metric(point)
            .value
            .0
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["count", "sum", "min", "max", "p99", "IQM"]);
    }

    #[test]
    fn the_real_telegraf_capture_decodes_every_point() {
        let request: serde_json::Value =
            serde_json::from_slice(&fixture("telegraf/records.json")).unwrap();
        let mut total = 0;
        for record in request["records"].as_array().unwrap() {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(record["data"].as_str().unwrap())
                .unwrap();
            assert!(looks_like_metric_json(&bytes));
            total += run(&bytes).unwrap().len();
        }
        assert_eq!(total, 1160, "the capture holds 1160 data points");
    }

    #[test]
    fn malformed_points_are_errors() {
        for bad in [
            &b""[..],
            b"{}",
            br#"{"namespace":"N","metric_name":"M","timestamp":1,"value":{"count":"three"}}"#,
            br#"{"namespace":"N","metric_name":"M","timestamp":1,"value":{}} {"broken"#,
        ] {
            assert!(run(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
