//! What a run measured: per-connection statistics merged at the end, and the report
//! (a table for people, one JSON object for scripts).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::units::human_bytes;

/// Latencies are recorded in microseconds, from 1 µs to one hour, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Counters and histograms of one connection (merged into the run's at the end).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of each answered attempt: from sending it to the end of its answer.
    pub attempt_latency: Histogram<u64>,
    /// Latency of each delivered request, retries and back-off included (open loop: from
    /// its scheduled start).
    pub end_to_end_latency: Histogram<u64>,
    /// Requests delivered (a valid 200 answer).
    pub ok: u64,
    /// Requests that failed after their last allowed attempt.
    pub failed: u64,
    /// Requests given up because the run's duration ended before their next retry.
    pub abandoned: u64,
    /// Attempts sent (first sends and retries).
    pub attempts: u64,
    /// Retries sent.
    pub retries: u64,
    /// Open loop: requests that started 10 ms or more after their scheduled time.
    pub late_sends: u64,
    /// Records in delivered requests.
    pub records: u64,
    /// Events in delivered requests.
    pub events: u64,
    /// Uncompressed body bytes of delivered requests.
    pub body_bytes: u64,
    /// Bytes of request bodies sent, all attempts, as on the wire (gzip'd with --gzip).
    pub wire_bytes: u64,
    /// Failed attempts by kind: the status code, "connect", "connection", "timeout" or
    /// "invalid_response".
    pub errors: BTreeMap<String, u64>,
    /// The first message seen for each error kind.
    pub error_samples: BTreeMap<String, String>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            attempt_latency: histogram(),
            end_to_end_latency: histogram(),
            ok: 0,
            failed: 0,
            abandoned: 0,
            attempts: 0,
            retries: 0,
            late_sends: 0,
            records: 0,
            events: 0,
            body_bytes: 0,
            wire_bytes: 0,
            errors: BTreeMap::new(),
            error_samples: BTreeMap::new(),
        }
    }
}

impl Stats {
    /// Records a failed attempt.
    pub fn error(&mut self, kind: String, message: String) {
        self.error_samples.entry(kind.clone()).or_insert(message);
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Records a latency (saturating at the histogram's bounds).
    pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        histogram.saturating_record(micros);
    }

    /// Adds another connection's statistics to these.
    pub fn merge(&mut self, other: &Stats) {
        // Both histograms have the same bounds; values were saturated into them.
        let _ = self.attempt_latency.add(&other.attempt_latency);
        let _ = self.end_to_end_latency.add(&other.end_to_end_latency);
        self.ok += other.ok;
        self.failed += other.failed;
        self.abandoned += other.abandoned;
        self.attempts += other.attempts;
        self.retries += other.retries;
        self.late_sends += other.late_sends;
        self.records += other.records;
        self.events += other.events;
        self.body_bytes += other.body_bytes;
        self.wire_bytes += other.wire_bytes;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
        for (kind, message) in &other.error_samples {
            self.error_samples
                .entry(kind.clone())
                .or_insert_with(|| message.clone());
        }
    }
}

/// The run's settings, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// Endpoint URL.
    pub url: String,
    /// Record kind.
    pub kind: &'static str,
    /// Whether bodies were gzip'd.
    pub gzip: bool,
    /// "closed" or "open" loop.
    pub mode: &'static str,
    /// Connections.
    pub concurrency: usize,
    /// Open loop rate, requests/s.
    pub rate: Option<f64>,
    /// Duration limit, seconds.
    pub duration_s: Option<f64>,
    /// Request count limit.
    pub requests_limit: Option<u64>,
    /// Unmeasured warm-up, seconds.
    pub warmup_s: f64,
    /// Distinct bodies.
    pub pool_size: usize,
    /// Mean records per request.
    pub records_per_request: f64,
    /// Events per record.
    pub events_per_record: usize,
    /// Mean uncompressed body size.
    pub body_bytes: f64,
    /// Mean body size on the wire.
    pub wire_bytes: f64,
    /// Retries allowed per request.
    pub max_retries: u32,
    /// Metric kinds: distinct series asked for (`--series`); `None` for the other kinds.
    pub series: Option<u64>,
    /// Metric kinds: distinct series the pool's data points belong to (fewer than asked
    /// when the pool holds fewer points).
    pub series_in_pool: Option<u64>,
}

impl Setup {
    /// Whether the records carry metric data points.
    pub fn is_metric(&self) -> bool {
        self.series.is_some()
    }
}

/// Request counts.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// Requests started (ok + failed + abandoned).
    pub sent: u64,
    /// Delivered: answered 200 with a valid body.
    pub ok: u64,
    /// Failed after their last allowed attempt.
    pub failed: u64,
    /// Given up because the run ended before their next retry.
    pub abandoned: u64,
    /// Attempts, retries included.
    pub attempts: u64,
    /// Retries.
    pub retries: u64,
    /// Open loop: requests started ≥ 10 ms behind schedule (too few connections for the
    /// rate, or a saturated client).
    pub late_sends: u64,
    /// Records in delivered requests.
    pub records: u64,
    /// Events in delivered requests.
    pub events: u64,
    /// Metric kinds: data points in delivered requests (counted from the bodies, each of
    /// which knows its points); `None` for the other kinds.
    pub points: Option<u64>,
    /// Uncompressed body bytes of delivered requests.
    pub body_bytes: u64,
    /// Request body bytes sent, all attempts, as on the wire.
    pub wire_bytes: u64,
}

/// Rates over the measured time, counting delivered requests.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Delivered requests per second.
    pub requests_per_s: f64,
    /// Records of delivered requests per second.
    pub records_per_s: f64,
    /// Events (records × events per record) of delivered requests per second.
    pub events_per_s: f64,
    /// Metric kinds: data points of delivered requests per second.
    pub points_per_s: Option<f64>,
    /// Uncompressed body MB (10^6 bytes) of delivered requests per second.
    pub body_mb_per_s: f64,
    /// Request body MB sent per second, all attempts, as on the wire.
    pub wire_mb_per_s: f64,
}

/// A latency distribution, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self {
                count: 0,
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
                mean: 0.0,
            };
        }
        Self {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

/// Both latency distributions.
#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    /// Per answered attempt: from sending it to the end of its answer.
    pub attempt: Latency,
    /// Per delivered request, retries and their back-off included; in the open loop
    /// measured from the scheduled start, so queueing behind busy connections counts.
    pub end_to_end: Latency,
}

/// The report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was run.
    pub setup: Setup,
    /// Measured time, seconds (from the start of the measured phase to the last answer).
    pub elapsed_s: f64,
    /// Request counts.
    pub requests: Counts,
    /// Rates.
    pub throughput: Throughput,
    /// Latency percentiles, microseconds.
    pub latency_us: Latencies,
    /// Failed attempts by kind (status code, "connect", "connection", "timeout",
    /// "invalid_response").
    pub errors: BTreeMap<String, u64>,
    /// First message seen for each error kind.
    pub error_samples: BTreeMap<String, String>,
}

impl Report {
    /// Builds the report from the merged statistics.
    pub fn new(setup: Setup, stats: &Stats, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let rate = |value: u64| value as f64 / seconds;
        // A metric record's events are its data points.
        let points = setup.is_metric().then_some(stats.events);
        Self {
            setup,
            elapsed_s: elapsed.as_secs_f64(),
            requests: Counts {
                sent: stats.ok + stats.failed + stats.abandoned,
                ok: stats.ok,
                failed: stats.failed,
                abandoned: stats.abandoned,
                attempts: stats.attempts,
                retries: stats.retries,
                late_sends: stats.late_sends,
                records: stats.records,
                events: stats.events,
                points,
                body_bytes: stats.body_bytes,
                wire_bytes: stats.wire_bytes,
            },
            throughput: Throughput {
                requests_per_s: rate(stats.ok),
                records_per_s: rate(stats.records),
                events_per_s: rate(stats.events),
                points_per_s: points.map(rate),
                body_mb_per_s: rate(stats.body_bytes) / 1e6,
                wire_mb_per_s: rate(stats.wire_bytes) / 1e6,
            },
            latency_us: Latencies {
                attempt: Latency::of(&stats.attempt_latency),
                end_to_end: Latency::of(&stats.end_to_end_latency),
            },
            errors: stats.errors.clone(),
            error_samples: stats.error_samples.clone(),
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let setup = &self.setup;
        let mut out = String::new();
        let _ = writeln!(out, "hydrant-loadtest → {}", setup.url);
        let connections = match setup.concurrency {
            1 => "1 connection".to_string(),
            n => format!("{n} connections"),
        };
        let load = match setup.rate {
            Some(rate) => format!("open loop at {rate} requests/s over {connections}"),
            None => format!("closed loop, {connections}"),
        };
        let mut limits = Vec::new();
        if let Some(duration) = setup.duration_s {
            limits.push(format!("{duration} s"));
        }
        if let Some(requests) = setup.requests_limit {
            limits.push(format!("{requests} requests"));
        }
        let warmup = if setup.warmup_s > 0.0 {
            format!(", after {} s of warm-up", setup.warmup_s)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  load        {load}, for {}{warmup}",
            limits.join(" or ")
        );
        let _ = writeln!(
            out,
            "  payload     {}: {:.0} records × {} {}, body {}{} (pool of {})",
            setup.kind,
            setup.records_per_request,
            setup.events_per_record,
            if setup.is_metric() {
                "data points"
            } else {
                "events"
            },
            human_bytes(setup.body_bytes),
            if setup.gzip {
                format!(", gzip'd to {}", human_bytes(setup.wire_bytes))
            } else {
                String::new()
            },
            setup.pool_size,
        );
        if let (Some(series), Some(in_pool)) = (setup.series, setup.series_in_pool) {
            let _ = writeln!(
                out,
                "  series      {series} asked, {in_pool} in the pool{}",
                if in_pool < series {
                    " (too few data points in the pool: raise --pool-size or --records)"
                } else {
                    ""
                },
            );
        }
        let _ = writeln!(out);
        let requests = &self.requests;
        let _ = writeln!(
            out,
            "  requests    {} ok, {} failed, {} abandoned in {:.2} s; {} attempts, {} retries (max {} per request){}",
            requests.ok,
            requests.failed,
            requests.abandoned,
            self.elapsed_s,
            requests.attempts,
            requests.retries,
            setup.max_retries,
            if setup.rate.is_some() {
                format!(", {} late sends", requests.late_sends)
            } else {
                String::new()
            },
        );
        let throughput = &self.throughput;
        let _ = writeln!(
            out,
            "  throughput  {:.1} requests/s   {:.0} records/s   {}   {:.1} MB/s body{}",
            throughput.requests_per_s,
            throughput.records_per_s,
            match throughput.points_per_s {
                Some(points) => format!("{points:.0} data points/s"),
                None => format!("{:.0} events/s", throughput.events_per_s),
            },
            throughput.body_mb_per_s,
            if setup.gzip {
                format!("   {:.1} MB/s on the wire", throughput.wire_mb_per_s)
            } else {
                String::new()
            },
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  latency (ms)        p50        p90        p99      p99.9        max       mean    count"
        );
        for (name, latency) in [
            ("attempt", &self.latency_us.attempt),
            ("end-to-end", &self.latency_us.end_to_end),
        ] {
            let ms = |micros: u64| micros as f64 / 1000.0;
            let _ = writeln!(
                out,
                "  {name:<12} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>8}",
                ms(latency.p50),
                ms(latency.p90),
                ms(latency.p99),
                ms(latency.p999),
                ms(latency.max),
                latency.mean / 1000.0,
                latency.count,
            );
        }
        let _ = writeln!(out);
        if self.errors.is_empty() {
            let _ = writeln!(out, "  errors      none");
        } else {
            let _ = writeln!(out, "  errors (failed attempts)");
            for (kind, count) in &self.errors {
                let sample = self.error_samples.get(kind).map_or("", String::as_str);
                let _ = writeln!(out, "    {kind:<18} {count:>8}   e.g. {sample}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_add_up_and_percentiles_come_out() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for millis in 1..=100 {
            Stats::record(&mut a.attempt_latency, Duration::from_millis(millis));
        }
        Stats::record(&mut b.attempt_latency, Duration::from_secs(2));
        a.ok = 3;
        b.ok = 4;
        a.error("503".into(), "first".into());
        b.error("503".into(), "second".into());
        b.error("timeout".into(), "slow".into());
        a.merge(&b);
        assert_eq!(a.ok, 7);
        assert_eq!(a.errors["503"], 2);
        assert_eq!(a.error_samples["503"], "first");
        assert_eq!(a.errors["timeout"], 1);
        let latency = Latency::of(&a.attempt_latency);
        assert_eq!(latency.count, 101);
        assert!((50_900..=51_100).contains(&latency.p50), "{}", latency.p50);
        assert!(
            (1_999_000..=2_001_000).contains(&latency.max),
            "{}",
            latency.max
        );
    }

    #[test]
    fn report_rates_and_renderings() {
        let mut stats = Stats {
            ok: 20,
            records: 10_000,
            events: 200_000,
            body_bytes: 32_000_000,
            wire_bytes: 32_000_000,
            ..Stats::default()
        };
        Stats::record(&mut stats.end_to_end_latency, Duration::from_micros(1500));
        let setup = Setup {
            url: "http://127.0.0.1:1/".into(),
            kind: "cloudwatch-logs",
            gzip: false,
            mode: "closed",
            concurrency: 4,
            rate: None,
            duration_s: Some(2.0),
            requests_limit: None,
            warmup_s: 0.0,
            pool_size: 4,
            records_per_request: 500.0,
            events_per_record: 20,
            body_bytes: 1.6e6,
            wire_bytes: 1.6e6,
            max_retries: 3,
            series: None,
            series_in_pool: None,
        };
        let report = Report::new(setup, &stats, Duration::from_secs(2));
        assert_eq!(report.throughput.requests_per_s, 10.0);
        assert_eq!(report.throughput.events_per_s, 100_000.0);
        assert_eq!(report.throughput.body_mb_per_s, 16.0);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
        assert_eq!(json["requests"]["ok"], 20);
        assert_eq!(json["latency_us"]["end_to_end"]["max"], 1500);
        let table = report.to_table();
        assert!(table.contains("10.0 requests/s"), "{table}");
        assert!(table.contains("errors      none"), "{table}");
        assert!(table.contains("100000 events/s"), "{table}");
        assert!(!table.contains("data points") && !table.contains("series"));
        assert!(json["requests"]["points"].is_null());
        assert!(json["throughput"]["points_per_s"].is_null());

        // A metric run: its events are data points, and they get their rate.
        let metric_setup = Setup {
            kind: "metrics-json",
            series: Some(100_000),
            series_in_pool: Some(20_000),
            ..report.setup.clone()
        };
        let report = Report::new(metric_setup, &stats, Duration::from_secs(4));
        assert_eq!(report.requests.points, Some(200_000));
        assert_eq!(report.throughput.points_per_s, Some(50_000.0));
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
        assert_eq!(json["requests"]["points"], 200_000);
        assert_eq!(json["throughput"]["points_per_s"], 50_000.0);
        assert_eq!(json["setup"]["series"], 100_000);
        assert_eq!(json["setup"]["series_in_pool"], 20_000);
        let table = report.to_table();
        assert!(
            table.contains("5.0 requests/s   2500 records/s   50000 data points/s   8.0 MB/s body"),
            "{table}"
        );
        assert!(table.contains("× 20 data points"), "{table}");
        assert!(
            table.contains("series      100000 asked, 20000 in the pool (too few"),
            "{table}"
        );
    }
}
