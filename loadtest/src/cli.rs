//! Command-line options.

use std::time::Duration;

use clap::Parser;

use crate::payload::Kind;
use crate::series::{DEFAULT_SERIES, MAX_SERIES};
use crate::units::{parse_duration, parse_size};

const ABOUT: &str = "Load generator for Amazon Data Firehose HTTP endpoint receivers.";

const LONG_ABOUT: &str = "\
Load generator for Amazon Data Firehose HTTP endpoint receivers (Hydrant or any other).

It POSTs Firehose deliveries exactly as Firehose does (headers, JSON body of base64
records, a fresh request id per delivery, retries with the same id and exponential
back-off), checks every answer against the Firehose response contract, and reports
throughput and latency percentiles. Payloads are generated before the run and not timed.

Plain HTTP only: point it at the receiver directly, or at a local TLS-originating proxy
to reach an https:// endpoint.";

const AFTER_HELP: &str = "\
Examples:
  # The reference workload (500 CloudWatch Logs records x 20 events, ~1.6 MB), 4 connections, 30 s:
  hydrant-loadtest --url http://127.0.0.1:8080/firehose --access-key demo=change-me --duration 30s

  # Open loop at 50 requests/s over 8 connections, gzip'd 4 MiB metric stream bodies:
  hydrant-loadtest --url http://127.0.0.1:8080/firehose --kind metrics-otel --request-size 4MiB \\
      --gzip --rate 50 --concurrency 8 --duration 1m --warmup 10s

  # Metric Streams JSON over 100,000 series (a pool of 64 bodies x 50 records x 100 points
  # holds 320,000 data points, so every series is sent):
  hydrant-loadtest --url http://127.0.0.1:8080/firehose --kind metrics-json --series 100000 \\
      --pool-size 64 --gzip --duration 30s

  # 1000 requests, no retries, machine-readable report:
  hydrant-loadtest --url http://127.0.0.1:8080/firehose --requests 1000 --no-retry --json

Sizes: B, KB/MB/GB (powers of 1000), KiB/MiB/GiB or K/M/G (powers of 1024), fractions
allowed; a bare number is bytes. Durations need a unit: 250ms, 30s, 5m, 1.5h, 1h30m
(ns, us, ms, s, m, h, d, w). The same rules as Hydrant's settings.

Exit status: 0 when the run completed and delivered at least one request, 1 on a usage
or setup error, 2 when no request was delivered.";

/// The command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hydrant-loadtest",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Args {
    /// Endpoint URL, plain HTTP (e.g. http://127.0.0.1:8080/firehose). Path and query are
    /// sent unchanged, as Firehose does.
    #[arg(long, value_name = "URL", help_heading = "Target")]
    pub url: String,

    /// Value of the X-Amz-Firehose-Access-Key header, sent verbatim. Left out when not
    /// given.
    #[arg(long, value_name = "KEY", help_heading = "Target")]
    pub access_key: Option<String>,

    /// Value of the X-Amz-Firehose-Source-Arn header (the delivery stream's ARN).
    #[arg(
        long,
        value_name = "ARN",
        default_value = "arn:aws:firehose:us-east-1:123456789012:deliverystream/hydrant-loadtest",
        help_heading = "Target"
    )]
    pub source_arn: String,

    /// Common attributes ("parameters" in the Firehose console), as a JSON object of
    /// string values, e.g. '{"env":"prod"}' (or already wrapped:
    /// '{"commonAttributes":{"env":"prod"}}'). Sent in X-Amz-Firehose-Common-Attributes.
    #[arg(long, value_name = "JSON", help_heading = "Target")]
    pub common_attributes: Option<String>,

    /// Timeout of one attempt, from sending to the end of the answer (Firehose waits
    /// 3 minutes). A timed-out attempt counts as a "timeout" error and is retried.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "180s", help_heading = "Target")]
    pub timeout: Duration,

    /// Kind of records: cloudwatch-logs (gzip'd CloudWatch Logs DATA_MESSAGE envelopes of
    /// JSON log lines, 7 log groups), metrics-json (Metric Streams JSON lines),
    /// metrics-otel (Metric Streams OpenTelemetry 1.0, length-delimited protobuf),
    /// raw-json (one plain JSON object per record).
    #[arg(long, value_enum, default_value_t = Kind::CloudwatchLogs, help_heading = "Payload")]
    pub kind: Kind,

    /// Records per request (1..=10000). Default: 500 for cloudwatch-logs and raw-json, 50
    /// for the metric kinds. Ignored with --request-size.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000), help_heading = "Payload")]
    pub records: Option<u32>,

    /// Log events (cloudwatch-logs) or data points (metrics-*) per record. Default: 20
    /// for cloudwatch-logs, 100 for the metric kinds. Raw JSON records are one event.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Payload")]
    pub events_per_record: Option<u32>,

    /// Approximate size of one raw-json record before base64 (e.g. 1KiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1KiB", help_heading = "Payload")]
    pub record_size: u64,

    /// Target size of the (uncompressed) request body, e.g. 1MiB or 64MiB (at most
    /// 64 MiB, Firehose's limit): records are added until the body reaches it, and made
    /// bigger (more events per record, or larger raw records) if it would otherwise take
    /// more than 10,000 records. Replaces --records.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Payload")]
    pub request_size: Option<u64>,

    /// gzip the whole request body and send Content-Encoding: gzip (a stream whose
    /// ContentEncoding is GZIP). Bodies are compressed once, before the run.
    #[arg(long, help_heading = "Payload")]
    pub gzip: bool,

    /// Metric kinds only: the number of distinct series the data points are spread over,
    /// 1..=10000000. A series is one metric (namespace and name) with one set of
    /// dimension values, i.e. one label set at a receiver that keeps series. The count
    /// is across the whole run's body pool: the pool (pool size × records × data points
    /// per record) must hold at least N points for all N series to be sent; the report
    /// shows how many it holds. Points go to the series evenly, in an order fixed by
    /// --seed. Default: 640 (64 series for each of the 10 metrics).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_SERIES), help_heading = "Payload")]
    pub series: Option<u64>,

    /// Number of distinct bodies generated before the run; requests use them in turn.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024), help_heading = "Payload")]
    pub pool_size: u32,

    /// Seed of the generated content: the same seed and options give the same records
    /// (timestamps inside them follow the clock).
    #[arg(long, value_name = "N", default_value_t = 42, help_heading = "Payload")]
    pub seed: u64,

    /// Connections (keep-alive), each with at most one request in flight.
    #[arg(short, long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000), help_heading = "Load")]
    pub concurrency: u32,

    /// Open loop: start R requests per second in all, on a fixed schedule, whichever
    /// connection is free taking the next one. Without it the load is a closed loop:
    /// each connection sends its next request as soon as the previous one is answered.
    #[arg(long, value_name = "R", value_parser = parse_rate, help_heading = "Load")]
    pub rate: Option<f64>,

    /// Run for this long (e.g. 30s, 2m); no request or retry starts after it, in-flight
    /// attempts finish. Default 10s when --requests is not given either.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Load")]
    pub duration: Option<Duration>,

    /// Send this many requests (retries not counted), then stop. With --duration too,
    /// whichever limit comes first ends the run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Load")]
    pub requests: Option<u64>,

    /// Run the same load for this long first, unmeasured (connections opened, caches and
    /// the receiver warmed up).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s", help_heading = "Load")]
    pub warmup: Duration,

    /// Tokio worker threads of the load generator. Default: the number of CPUs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024), help_heading = "Load")]
    pub threads: Option<u32>,

    /// First retry delay. Like Firehose, a failed attempt (non-200 status, invalid 200
    /// answer, connection error, timeout) is retried with the same request id after
    /// this, doubling each time, ±15% jitter.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s", help_heading = "Retries")]
    pub retry_initial: Duration,

    /// Cap of the retry delay (Firehose: 2 minutes).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "120s", help_heading = "Retries")]
    pub retry_max: Duration,

    /// Retries per request before it counts as failed (Firehose keeps trying for its
    /// retry duration, 300 s by default; a load test stays bounded).
    #[arg(long, value_name = "N", default_value_t = 3, help_heading = "Retries")]
    pub max_retries: u32,

    /// Never retry: a failed attempt fails its request.
    #[arg(long, help_heading = "Retries")]
    pub no_retry: bool,

    /// Print the report as one JSON object on stdout (for scripts) instead of a table.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
}

impl Args {
    /// Records per request (the kind's default unless given).
    pub fn records(&self) -> usize {
        self.records
            .map_or(self.kind.default_records(), |records| records as usize)
    }

    /// Events per record (the kind's default unless given).
    pub fn events_per_record(&self) -> usize {
        match self.kind {
            Kind::RawJson => 1,
            kind => self
                .events_per_record
                .map_or(kind.default_events_per_record(), |events| events as usize),
        }
    }

    /// Series of the metric kinds (the default unless given); an error for the other
    /// kinds when given, as they have no series.
    pub fn series(&self) -> Result<Option<u64>, String> {
        match (self.kind.is_metric(), self.series) {
            (true, series) => Ok(Some(series.unwrap_or(DEFAULT_SERIES))),
            (false, None) => Ok(None),
            (false, Some(_)) => Err(format!(
                "--series applies to the metric kinds (metrics-json, metrics-otel), not to --kind {}",
                self.kind.name()
            )),
        }
    }

    /// Retries allowed per request.
    pub fn retries(&self) -> u32 {
        if self.no_retry { 0 } else { self.max_retries }
    }

    /// The run's duration limit: the one given, or 10 s when neither limit is.
    pub fn duration_limit(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (None, None) => Some(Duration::from_secs(10)),
            (duration, _) => duration,
        }
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of requests per second"))?;
    if rate.is_finite() && rate > 0.0 && rate <= 1e6 {
        Ok(rate)
    } else {
        Err("the rate must be above 0 and at most 1,000,000 requests/s".into())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec!["hydrant-loadtest", "--url", "http://127.0.0.1:1/firehose"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    /// Every option that takes a size or a duration reads it as Hydrant does: the
    /// shared table, through the command line.
    #[test]
    fn sizes_and_durations_follow_the_shared_table() {
        const TABLE: &str = include_str!("../../tests/units.tsv");
        let mut checked = 0;
        for line in TABLE
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
        {
            let fields: Vec<&str> = line.split('\t').collect();
            let (kind, input, expected) = (fields[0], fields[1], fields[2]);
            let expected: Option<u128> = expected.parse().ok();
            let got = match kind {
                "size" => parse(&["--record-size", input]).map(|args| u128::from(args.record_size)),
                _ => parse(&["--retry-initial", input]).map(|args| args.retry_initial.as_nanos()),
            };
            match expected {
                Some(value) => assert_eq!(got.ok(), Some(value), "{kind} {input:?}"),
                None => assert!(got.is_err(), "{kind} {input:?}"),
            }
            checked += 1;
        }
        assert!(checked > 40);
    }

    #[test]
    fn command_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_reference_workload() {
        let args = parse(&[]).expect("parses");
        assert_eq!(args.kind, Kind::CloudwatchLogs);
        assert_eq!(args.records(), 500);
        assert_eq!(args.events_per_record(), 20);
        assert_eq!(args.concurrency, 4);
        assert_eq!(args.duration_limit(), Some(Duration::from_secs(10)));
        assert_eq!(args.retries(), 3);
        assert_eq!(args.retry_initial, Duration::from_secs(1));
        assert!(!args.gzip && args.rate.is_none());
    }

    #[test]
    fn series_belong_to_the_metric_kinds() {
        let series = |extra: &[&str]| parse(extra).expect("parses").series();
        assert_eq!(series(&["--kind", "metrics-json"]), Ok(Some(640)));
        assert_eq!(
            series(&["--kind", "metrics-otel", "--series", "10000000"]),
            Ok(Some(10_000_000))
        );
        assert_eq!(series(&[]), Ok(None));
        assert_eq!(series(&["--kind", "raw-json"]), Ok(None));
        for kind in ["raw-json", "cloudwatch-logs"] {
            let error = series(&["--kind", kind, "--series", "5"]).expect_err("refused");
            assert!(error.contains(kind), "{error}");
        }
        assert!(parse(&["--kind", "metrics-json", "--series", "0"]).is_err());
        assert!(parse(&["--kind", "metrics-json", "--series", "10000001"]).is_err());
    }

    #[test]
    fn options_parse() {
        let args = parse(&[
            "--kind",
            "metrics-otel",
            "--request-size",
            "64MiB",
            "--gzip",
            "--rate",
            "12.5",
            "--requests",
            "100",
            "--warmup",
            "2s",
            "--no-retry",
            "-c",
            "8",
        ])
        .expect("parses");
        assert_eq!(args.kind, Kind::MetricsOtel);
        assert_eq!(args.request_size, Some(64 << 20));
        assert_eq!(args.rate, Some(12.5));
        assert_eq!(args.requests, Some(100));
        assert_eq!(args.duration_limit(), None);
        assert_eq!(args.warmup, Duration::from_secs(2));
        assert_eq!(args.retries(), 0);
        assert_eq!(args.concurrency, 8);
        assert_eq!(args.events_per_record(), 100);
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--records", "10001"]).is_err());
        assert!(parse(&["--concurrency", "0"]).is_err());
        assert!(parse(&["--duration", "ten"]).is_err());
        assert!(
            Args::try_parse_from(["hydrant-loadtest"]).is_err(),
            "--url is required"
        );
    }
}
