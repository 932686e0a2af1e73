use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::event::{Delivery, EventWriter, Facts, Kind, Metric, Statistics};
use crate::metrics::Metrics;
use crate::sink::dedup::DeliveryKey;

/// The issue's data point: `AWS/EC2` `CPUUtilization` of `i-0abc`.
fn cpu(instance: &str, timestamp: i64, sum: f64) -> Metric {
    Metric {
        timestamp,
        metric_stream_name: Some("stream".into()),
        account_id: Some("123456789012".into()),
        region: Some("eu-west-1".into()),
        namespace: "AWS/EC2".into(),
        metric_name: "CPUUtilization".into(),
        dimensions: [("InstanceId".to_owned(), instance.to_owned())].into(),
        unit: Some("Percent".into()),
        value: Statistics(vec![
            ("max".into(), 91.25),
            ("min".into(), 3.5),
            ("sum".into(), sum),
            ("count".into(), 7.0),
        ]),
    }
}

fn point(namespace: &str, metric_name: &str, dimension: (&str, &str), value: f64) -> Metric {
    Metric {
        timestamp: 1_700_000_000_000,
        metric_stream_name: None,
        account_id: None,
        region: None,
        namespace: namespace.into(),
        metric_name: metric_name.into(),
        dimensions: [(dimension.0.to_owned(), dimension.1.to_owned())].into(),
        unit: None,
        value: Statistics(vec![("sum".into(), value)]),
    }
}

/// A batch of `metrics` as the decoders write them, with a log event between them
/// (which the sink skips).
fn batch(metrics: &[Metric]) -> SinkBatch {
    let delivery = Delivery {
        request_id: "r".into(),
        path: "/metrics-stream".into(),
        ..Delivery::default()
    };
    let mut writer = EventWriter::new(&delivery, 0);
    for (index, metric) in metrics.iter().enumerate() {
        writer.metric(index, metric);
        writer.event(
            index,
            Kind::Log,
            Facts::default(),
            &serde_json::json!({"message": "CPUUtilization 1"}),
        );
    }
    SinkBatch {
        delivery: Arc::new(delivery),
        dedup_key: DeliveryKey::new(None, "r"),
        events: writer.finish(),
        dead_letters: crate::sink::EventLines::default(),
    }
}

fn sink_with(config: &PrometheusConfig) -> (PrometheusSink, Metrics) {
    let metrics = Metrics::new(1);
    let sink = PrometheusSink::new(config, metrics.prometheus_sink("cw"));
    (sink, metrics)
}

fn sink() -> PrometheusSink {
    sink_with(&PrometheusConfig::default()).0
}

/// The sample lines (not comments) of a text scrape.
fn samples_of(text: &str) -> Vec<&str> {
    text.lines().filter(|line| !line.starts_with('#')).collect()
}

#[test]
fn the_issue_example_is_served_under_yace_names() {
    let sink = sink();
    sink.commit(&batch(&[cpu("i-0abc", 1_700_000_000_000, 412.75)]))
        .unwrap();
    let text = sink.render(Format::Text);
    let labels = r#"{account_id="123456789012",dimension_InstanceId="i-0abc",region="eu-west-1"}"#;
    assert_eq!(
        samples_of(&text),
        [
            format!("aws_ec2_cpuutilization_average{labels} 58.964285714285715"),
            format!("aws_ec2_cpuutilization_maximum{labels} 91.25"),
            format!("aws_ec2_cpuutilization_minimum{labels} 3.5"),
            format!("aws_ec2_cpuutilization_sample_count{labels} 7"),
            format!("aws_ec2_cpuutilization_sum{labels} 412.75"),
        ]
    );
    // Each family once, with its help and type, before its samples.
    assert!(text.starts_with(
        "# HELP aws_ec2_cpuutilization_average CloudWatch metric AWS/EC2 CPUUtilization\n\
         # TYPE aws_ec2_cpuutilization_average gauge\n\
         aws_ec2_cpuutilization_average{"
    ));
    assert_eq!(text.matches("# TYPE ").count(), 5);
    assert_eq!(sink.series(), 5);
}

#[test]
fn each_naming_scheme_names_the_series() {
    for (naming, expected) in [
        (
            Naming::CloudwatchExporter,
            r#"aws_ec2_cpuutilization_average{account_id="123456789012",instance_id="i-0abc",job="aws_ec2",region="eu-west-1"} 58.964285714285715"#,
        ),
        (
            Naming::Otel,
            r#"amazonaws_com_AWS_EC2_CPUUtilization_percent_average{InstanceId="i-0abc",MetricName="CPUUtilization",Namespace="AWS/EC2",cloud_account_id="123456789012",cloud_region="eu-west-1"} 58.964285714285715"#,
        ),
    ] {
        let config = PrometheusConfig {
            naming,
            ..PrometheusConfig::default()
        };
        let (sink, _) = sink_with(&config);
        sink.commit(&batch(&[cpu("i-0abc", 1, 412.75)])).unwrap();
        let text = sink.render(Format::Text);
        assert!(samples_of(&text).contains(&expected), "{naming:?}: {text}");
    }
}

/// The latest point by CloudWatch's time wins; an older one (a late delivery or a
/// retry) does not take the series back, the same time again replaces it.
#[test]
fn a_series_keeps_its_latest_point() {
    let sink = sink();
    let sum = |text: &str| -> String {
        samples_of(text)
            .iter()
            .find(|line| line.starts_with("aws_ec2_cpuutilization_sum{"))
            .map(|line| line.rsplit(' ').next().unwrap().to_owned())
            .unwrap()
    };
    sink.commit(&batch(&[cpu("i-0abc", 2_000, 10.0)])).unwrap();
    assert_eq!(sum(&sink.render(Format::Text)), "10");
    sink.commit(&batch(&[cpu("i-0abc", 3_000, 20.0)])).unwrap();
    assert_eq!(sum(&sink.render(Format::Text)), "20");
    sink.commit(&batch(&[cpu("i-0abc", 1_000, 30.0)])).unwrap();
    assert_eq!(sum(&sink.render(Format::Text)), "20", "older point ignored");
    sink.commit(&batch(&[cpu("i-0abc", 3_000, 40.0)])).unwrap();
    assert_eq!(sum(&sink.render(Format::Text)), "40", "same period again");
    // Two points of one series in one batch: the later one.
    sink.commit(&batch(&[
        cpu("i-0abc", 5_000, 50.0),
        cpu("i-0abc", 4_000, 60.0),
    ]))
    .unwrap();
    assert_eq!(sum(&sink.render(Format::Text)), "50");
    assert_eq!(sink.series(), 5, "still one series per statistic");
}

#[test]
fn timestamps_are_cloudwatch_times_when_asked_for() {
    let config = PrometheusConfig {
        timestamps: true,
        ..PrometheusConfig::default()
    };
    let (sink, _) = sink_with(&config);
    sink.commit(&batch(&[cpu("i-0abc", 1_709_294_460_123, 412.75)]))
        .unwrap();
    let text = sink.render(Format::Text);
    assert!(
        samples_of(&text)
            .iter()
            .all(|line| line.ends_with(" 1709294460123")),
        "{text}"
    );
    let openmetrics = sink.render(Format::OpenMetrics);
    assert!(
        samples_of(&openmetrics)
            .iter()
            .all(|line| line.ends_with(" 1709294460.123")),
        "{openmetrics}"
    );
    // Off by default.
    let sink = self::sink();
    sink.commit(&batch(&[cpu("i-0abc", 1_709_294_460_123, 412.75)]))
        .unwrap();
    assert!(!sink.render(Format::Text).contains("1709294460"));
}

/// A series not received for `staleness` is gone at the next scrape; one updated
/// in time stays.
#[test]
fn stale_series_disappear() {
    let config = PrometheusConfig {
        staleness: HumanDuration(Duration::from_secs(600)),
        ..PrometheusConfig::default()
    };
    let (sink, metrics) = sink_with(&config);
    let start = Instant::now();
    sink.commit_at(&batch(&[cpu("i-old", 1, 1.0)]), start);
    sink.commit_at(
        &batch(&[cpu("i-new", 1, 1.0)]),
        start + Duration::from_secs(300),
    );
    let at = |seconds| start + Duration::from_secs(seconds);
    assert_eq!(samples_of(&sink.render_at(Format::Text, at(599))).len(), 10);
    let text = sink.render_at(Format::Text, at(600));
    assert_eq!(samples_of(&text).len(), 5, "{text}");
    assert!(!text.contains("i-old") && text.contains("i-new"));
    assert!(
        metrics
            .render()
            .contains(r#"hydrant_prometheus_series{sink="cw"} 5"#)
    );
    // An update keeps a series fresh.
    sink.commit_at(&batch(&[cpu("i-new", 2, 1.0)]), at(850));
    assert_eq!(
        samples_of(&sink.render_at(Format::Text, at(1_300))).len(),
        5
    );
    let empty = sink.render_at(Format::Text, at(1_450));
    assert_eq!(empty, "", "every family is gone with its series");
    assert_eq!(sink.series(), 0);
}

/// Stale series are dropped by commits too, so a sink nobody scrapes stays
/// bounded by what is fresh.
#[test]
fn commits_drop_stale_series_as_well() {
    let config = PrometheusConfig {
        staleness: HumanDuration(Duration::from_secs(60)),
        ..PrometheusConfig::default()
    };
    let (sink, _) = sink_with(&config);
    let start = Instant::now();
    sink.commit_at(&batch(&[cpu("i-1", 1, 1.0)]), start);
    sink.commit_at(
        &batch(&[cpu("i-2", 1, 1.0)]),
        start + Duration::from_secs(120),
    );
    assert_eq!(sink.series(), 5);
}

/// Past `max_series` new series are dropped and counted, while the series held
/// keep being updated; once some go stale, new ones fit again.
#[test]
fn the_series_cap_holds_and_counts_what_it_drops() {
    let config = PrometheusConfig {
        max_series: 7,
        staleness: HumanDuration(Duration::from_secs(60)),
        ..PrometheusConfig::default()
    };
    let (sink, metrics) = sink_with(&config);
    let start = Instant::now();
    sink.commit_at(&batch(&[cpu("i-1", 1, 1.0), cpu("i-2", 1, 1.0)]), start);
    assert_eq!(sink.series(), 7);
    let exposed = metrics.render();
    assert!(exposed.contains(r#"hydrant_prometheus_series{sink="cw"} 7"#));
    assert!(exposed.contains(r#"hydrant_prometheus_series_dropped_total{sink="cw"} 3"#));
    // Known series are updated at the cap; new ones are still dropped.
    sink.commit_at(
        &batch(&[cpu("i-1", 2, 70.0), cpu("i-3", 2, 1.0)]),
        start + Duration::from_secs(1),
    );
    let text = sink.render_at(Format::Text, start + Duration::from_secs(1));
    assert!(text.contains(r#"aws_ec2_cpuutilization_sum{account_id="123456789012",dimension_InstanceId="i-1",region="eu-west-1"} 70"#));
    assert!(!text.contains("i-3"));
    assert!(
        metrics
            .render()
            .contains(r#"hydrant_prometheus_series_dropped_total{sink="cw"} 8"#)
    );
    // Once i-2's series are stale (i-1's were updated since), i-3's fit.
    let later = start + Duration::from_millis(60_500);
    sink.commit_at(&batch(&[cpu("i-1", 3, 1.0), cpu("i-3", 3, 1.0)]), later);
    assert_eq!(sink.series(), 7);
    let text = sink.render_at(Format::Text, later);
    assert!(text.contains("i-3") && !text.contains("i-2"), "{text}");
}

#[test]
fn include_and_exclude_pick_namespaces_and_metrics() {
    let points = [
        point("AWS/EC2", "CPUUtilization", ("InstanceId", "a"), 1.0),
        point("AWS/EC2", "NetworkIn", ("InstanceId", "a"), 2.0),
        point("AWS/EBS", "VolumeReadOps", ("VolumeId", "v"), 3.0),
        point("AWS/ELB", "RequestCount", ("LoadBalancerName", "l"), 4.0),
        point("CWAgent", "mem_used_percent", ("host", "h"), 5.0),
    ];
    let families = |config: PrometheusConfig| -> Vec<String> {
        let (sink, _) = sink_with(&config);
        sink.commit(&batch(&points)).unwrap();
        samples_of(&sink.render(Format::Text))
            .iter()
            .map(|line| line.split('{').next().unwrap().to_owned())
            .collect()
    };
    let patterns = |list: &[&str]| list.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
    assert_eq!(families(PrometheusConfig::default()).len(), 5);
    assert_eq!(
        families(PrometheusConfig {
            include_namespaces: patterns(&["AWS/E?2", "CWAgent"]),
            ..PrometheusConfig::default()
        }),
        [
            "aws_cwagent_mem_used_percent_sum",
            "aws_ec2_cpuutilization_sum",
            "aws_ec2_network_in_sum"
        ]
    );
    assert_eq!(
        families(PrometheusConfig {
            include_namespaces: patterns(&["AWS/*"]),
            exclude_namespaces: patterns(&["AWS/EB*"]),
            exclude_metrics: patterns(&["Network*"]),
            ..PrometheusConfig::default()
        }),
        ["aws_ec2_cpuutilization_sum", "aws_elb_request_count_sum"]
    );
    assert_eq!(
        families(PrometheusConfig {
            include_metrics: patterns(&["*Ops", "*Count"]),
            ..PrometheusConfig::default()
        }),
        ["aws_ebs_volume_read_ops_sum", "aws_elb_request_count_sum"]
    );
}

/// Label values are written with the exposition's escapes: backslash, double quote
/// and line feed; the help text's own escapes differ by format.
#[test]
fn label_values_and_help_are_escaped() {
    let sink = sink();
    let mut metric = point(
        "Custom\\App",
        "Odd\nName",
        ("Path", "C:\\dir \"quoted\"\nnext"),
        1.0,
    );
    metric.timestamp = 1;
    sink.commit(&batch(&[metric])).unwrap();
    let text = sink.render(Format::Text);
    assert!(
        text.contains(r#"{dimension_Path="C:\\dir \"quoted\"\nnext"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            "# HELP aws_custom_app_odd_name_sum CloudWatch metric Custom\\\\App Odd\\nName\n"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3, "no raw line feed gets through");
    let openmetrics = sink.render(Format::OpenMetrics);
    assert!(openmetrics.contains(r#"{dimension_Path="C:\\dir \"quoted\"\nnext"} 1"#));
    let labels = exposition::label_text(&[("a".into(), "\"\\\n".into())]);
    assert_eq!(labels, r#"{a="\"\\\n"}"#);
    let mut out = String::new();
    exposition::family(&mut out, Format::OpenMetrics, "x", "say \"hi\"\\");
    assert_eq!(out, "# HELP x say \\\"hi\\\"\\\\\n# TYPE x gauge\n");
    let mut out = String::new();
    exposition::family(&mut out, Format::Text, "x", "say \"hi\"\\");
    assert_eq!(out, "# HELP x say \"hi\"\\\\\n# TYPE x gauge\n");
}

/// OpenMetrics ends with `# EOF`, also when empty; the text format has no end
/// marker. Families come sorted, and the same series give the same bytes.
#[test]
fn openmetrics_and_text_differ_only_where_the_formats_do() {
    let sink = sink();
    assert_eq!(sink.render(Format::Text), "");
    assert_eq!(sink.render(Format::OpenMetrics), "# EOF\n");
    sink.commit(&batch(&[
        point("AWS/SQS", "NumberOfMessagesSent", ("QueueName", "q"), 1.0),
        cpu("i-b", 1, 2.0),
        cpu("i-a", 1, 3.0),
    ]))
    .unwrap();
    let text = sink.render(Format::Text);
    let openmetrics = sink.render(Format::OpenMetrics);
    assert!(openmetrics.ends_with("\n# EOF\n"));
    assert_eq!(openmetrics.strip_suffix("# EOF\n").unwrap(), text);
    let families: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .collect();
    let mut sorted = families.clone();
    sorted.sort_unstable();
    assert_eq!(families, sorted);
    assert_eq!(
        families.last(),
        Some(&"aws_sqs_number_of_messages_sent_sum gauge")
    );
    let average: Vec<&str> = samples_of(&text)
        .into_iter()
        .filter(|line| line.starts_with("aws_ec2_cpuutilization_average"))
        .collect();
    assert!(average[0].contains("i-a") && average[1].contains("i-b"));
    // The same points again, in another order, give the same bytes.
    let again = self::sink();
    again
        .commit(&batch(&[
            cpu("i-a", 1, 3.0),
            cpu("i-b", 1, 2.0),
            point("AWS/SQS", "NumberOfMessagesSent", ("QueueName", "q"), 1.0),
        ]))
        .unwrap();
    assert_eq!(again.render(Format::Text), text);
}

#[test]
fn the_accept_header_chooses_the_format() {
    let prometheus_default = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for (accept, expected) in [
        (None, Format::Text),
        (Some(""), Format::Text),
        (Some("*/*"), Format::Text),
        (Some("text/plain"), Format::Text),
        (Some("text/plain;version=0.0.4"), Format::Text),
        (Some(prometheus_default), Format::OpenMetrics),
        (Some("application/openmetrics-text"), Format::OpenMetrics),
        (
            Some("Application/OpenMetrics-Text; version=\"1.0.0\""),
            Format::OpenMetrics,
        ),
        (
            Some("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"),
            Format::Text,
        ),
        (
            Some("application/openmetrics-text;q=0,text/plain;q=0.1"),
            Format::Text,
        ),
        (
            Some("application/openmetrics-text;version=2.0.0"),
            Format::Text,
        ),
        (
            Some("application/openmetrics-text;q=0.2,*/*;q=0.1"),
            Format::OpenMetrics,
        ),
        (Some("application/json"), Format::Text),
    ] {
        assert_eq!(Format::negotiate(accept), expected, "{accept:?}");
    }
    assert_eq!(Format::Text.content_type(), CONTENT_TYPE_TEXT);
    assert_eq!(
        Format::OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
}

#[test]
fn values_are_written_as_scrapers_read_them() {
    let cases = [
        (7.0, "7"),
        (58.964_285_714_285_715, "58.964285714285715"),
        (-0.5, "-0.5"),
        (0.0, "0"),
        (1e-300, "1e-300"),
        (1.5e20, "1.5e20"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
    ];
    for (value, expected) in cases {
        let mut out = String::new();
        exposition::sample(&mut out, Format::Text, "x", "", value, None);
        assert_eq!(out, format!("x {expected}\n"));
        let parsed: f64 = expected.replace("Inf", "inf").parse().unwrap();
        assert!(
            parsed.to_bits() == value.to_bits() || (value.is_nan() && parsed.is_nan()),
            "{value} round trips"
        );
    }
}

/// Events of other kinds, and metric lines that do not read as metrics, are
/// skipped; the commit still succeeds.
#[test]
fn other_events_are_skipped() {
    let sink = sink();
    let mut events = batch(&[]);
    let line = b"{\"kind\":\"metric\",\"namespace\":\"AWS/EC2\"}\n";
    events.events = crate::sink::EventLines::single(
        bytes::Bytes::from_static(line),
        vec![crate::sink::EventMeta {
            end: line.len(),
            kind: "metric",
            ..Default::default()
        }],
    );
    sink.commit(&events).unwrap();
    sink.commit(&batch(&[])).unwrap();
    assert_eq!(sink.series(), 0);
    assert_eq!(sink.render(Format::Text), "");
}

#[test]
fn paths_are_checked() {
    assert!(check_path(DEFAULT_PATH).is_ok());
    assert!(check_path("/cw/eu-west-1_v2.metrics").is_ok());
    for path in [
        "", "metrics", "/metrics", "/healthz", "/readyz", "/a//b", "/a b", "/a/{b}", "/a/*b",
        "/a/:b", "/a?b",
    ] {
        assert!(check_path(path).is_err(), "{path:?}");
    }
}

/// Checks that `text` is one exposition: each family's `# TYPE` once, and every
/// sample inside its own family's block. Returns the families and the samples.
fn check_exposition(text: &str) -> (usize, usize) {
    let mut families = std::collections::HashSet::new();
    let mut current: Option<&str> = None;
    let mut samples = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().expect("a name");
            assert!(families.insert(name), "{name} has two blocks");
            current = Some(name);
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().expect("a name");
            assert_eq!(Some(name), current, "sample outside its family: {line}");
            samples += 1;
        }
    }
    (families.len(), samples)
}

fn many(instances: usize, timestamp: i64) -> SinkBatch {
    let points: Vec<Metric> = (0..instances)
        .map(|n| cpu(&format!("i-{n:06}"), timestamp, 1.0))
        .collect();
    batch(&points)
}

/// A large scrape comes in pieces of about `SCRAPE_PIECE_BYTES`, which join into
/// the one exposition: every series once, each family in one block.
#[test]
fn a_large_scrape_comes_in_bounded_pieces_that_join_into_one_exposition() {
    let sink = sink();
    sink.commit(&many(5_000, 1)).expect("in memory");
    for format in [Format::Text, Format::OpenMetrics] {
        let mut scrape = sink.scrape(format);
        let mut pieces = Vec::new();
        while let Some(piece) = scrape.next_piece() {
            pieces.push(piece);
        }
        assert!(pieces.len() > 5, "{} pieces", pieces.len());
        for piece in &pieces {
            // A piece stops at the first sample past the size.
            assert!(piece.len() < SCRAPE_PIECE_BYTES + 1_024, "{}", piece.len());
        }
        let text = pieces.concat();
        assert_eq!(check_exposition(&text), (5, 25_000));
        assert_eq!(text, sink.render(format));
        assert_eq!(text.ends_with("# EOF\n"), format == Format::OpenMetrics);
    }
}

/// Commits go on while a scrape is written: series committed behind the scrape's
/// place are left for the next scrape, those ahead of it are in this one, and the
/// result is still one valid exposition, also when the family the scrape stopped in
/// went stale in between.
#[test]
fn commits_between_pieces_keep_the_exposition_valid() {
    let config = PrometheusConfig {
        staleness: HumanDuration(Duration::from_secs(60)),
        ..PrometheusConfig::default()
    };
    let (sink, _) = sink_with(&config);
    let start = Instant::now();
    sink.commit_at(&many(5_000, 1), start);
    let mut scrape = sink.scrape_at(Format::Text, start);
    let first = scrape.next_piece().expect("a first piece");
    // Behind (i-000000 sorts first in every family) and ahead (i-999999 last).
    sink.commit_at(&batch(&[cpu("i-999999", 2, 1.0)]), start);
    sink.commit_at(&batch(&[cpu("i-!", 2, 1.0)]), start);
    let mut text = first;
    while let Some(piece) = scrape.next_piece() {
        text.push_str(&piece);
    }
    let (families, samples) = check_exposition(&text);
    assert_eq!(families, 5);
    assert!(
        text.contains("i-999999"),
        "a series ahead of the scrape is in it"
    );
    // A family is some 650 KB of text here, so the first piece stopped inside the
    // first family: `i-!`, which sorts before `i-0…`, is behind the scrape there
    // and ahead of it in the four other families.
    assert_eq!(samples, 25_000 + 5 + 4);

    // The family the scrape stopped in goes stale, a new series comes in its place.
    let mut scrape = sink.scrape_at(Format::Text, start);
    let first = scrape.next_piece().expect("a first piece");
    let later = start + Duration::from_secs(120);
    sink.commit_at(&batch(&[cpu("i-fresh", 3, 1.0)]), later);
    let mut text = first.clone();
    while let Some(piece) = scrape.next_piece() {
        text.push_str(&piece);
    }
    check_exposition(&text);
    assert!(text.len() > first.len(), "the scrape went on");
}
