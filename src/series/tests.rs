use std::collections::BTreeMap;

use super::*;
use crate::event::Statistics;

fn metric(namespace: &str, metric_name: &str, dimensions: &[(&str, &str)]) -> Metric {
    Metric {
        timestamp: 1_700_000_040_000,
        metric_stream_name: Some("stream".into()),
        account_id: Some("123456789012".into()),
        region: Some("eu-west-1".into()),
        namespace: namespace.into(),
        metric_name: metric_name.into(),
        dimensions: dimensions
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        unit: None,
        value: Statistics(vec![
            ("count".into(), 7.0),
            ("sum".into(), 412.75),
            ("min".into(), 3.5),
            ("max".into(), 91.25),
        ]),
    }
}

/// The issue's example point.
fn example() -> Metric {
    let mut metric = metric("AWS/EC2", "CPUUtilization", &[("InstanceId", "i-0abc")]);
    metric.unit = Some("Percent".into());
    metric.value = Statistics(vec![
        ("max".into(), 91.25),
        ("min".into(), 3.5),
        ("sum".into(), 412.75),
        ("count".into(), 7.0),
    ]);
    metric
}

/// A statistic by its CloudWatch API name, as the tables below write them.
fn statistic(name: &str) -> Statistic<'_> {
    match name {
        "SampleCount" => Statistic::SampleCount,
        "Sum" => Statistic::Sum,
        "Minimum" => Statistic::Minimum,
        "Maximum" => Statistic::Maximum,
        "Average" => Statistic::Average,
        other => Statistic::Other(other),
    }
}

fn name(naming: Naming, namespace: &str, metric_name: &str, stat: &str) -> String {
    naming
        .names(&metric(namespace, metric_name, &[]))
        .series(statistic(stat))
        .name
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Real namespaces, metric names and statistics with the names YACE gives them
/// (`BuildMetricName` in `pkg/promutil/migrate.go`). The first cases are the expected
/// outputs of YACE's own tests (`TestBuildMetricName` and `TestBuildMetrics` in
/// `pkg/promutil/migrate_test.go`); the rest are derived from its rules.
#[rustfmt::skip]
const YACE_NAMES: &[(&str, &str, &str, &str)] = &[
    // YACE's own test cases.
    ("AWS/ElastiCache", "CPUUtilization", "Average", "aws_elasticache_cpuutilization_average"),
    ("/aws/sagemaker/TrainingJobs", "CPUUtilization", "Average", "aws_sagemaker_trainingjobs_cpuutilization_average"),
    ("Glue", "glue.driver.aggregate.bytesRead", "Average", "aws_glue_driver_aggregate_bytes_read_average"),
    ("Glue", "aggregate.glue.jobs.bytesRead", "Average", "aws_glue_aggregate_glue_jobs_bytes_read_average"),
    ("AWS/ElastiCache", "FreeableMemory", "Average", "aws_elasticache_freeable_memory_average"),
    ("AWS/ElastiCache", "NetworkBytesIn", "Average", "aws_elasticache_network_bytes_in_average"),
    ("AWS/ElastiCache", "NetworkBytesOut", "Average", "aws_elasticache_network_bytes_out_average"),
    ("AWS/ElastiCache", "NetworkPacketsIn", "Average", "aws_elasticache_network_packets_in_average"),
    ("AWS/ElastiCache", "NetworkPacketsOut", "Average", "aws_elasticache_network_packets_out_average"),
    ("AWS/EC2", "CPUUtilization", "Maximum", "aws_ec2_cpuutilization_maximum"),
    // EC2 and EBS.
    ("AWS/EC2", "CPUUtilization", "Average", "aws_ec2_cpuutilization_average"),
    ("AWS/EC2", "CPUUtilization", "p50", "aws_ec2_cpuutilization_p50"),
    ("AWS/EC2", "NetworkIn", "Sum", "aws_ec2_network_in_sum"),
    ("AWS/EC2", "NetworkPacketsOut", "Maximum", "aws_ec2_network_packets_out_maximum"),
    ("AWS/EC2", "DiskReadBytes", "Sum", "aws_ec2_disk_read_bytes_sum"),
    ("AWS/EC2", "CPUCreditBalance", "Minimum", "aws_ec2_cpucredit_balance_minimum"),
    ("AWS/EC2", "StatusCheckFailed_Instance", "Maximum", "aws_ec2_status_check_failed_instance_maximum"),
    ("AWS/EC2", "EBSIOBalance%", "Minimum", "aws_ec2_ebsiobalance_percent_minimum"),
    ("AWS/EC2", "EBSByteBalance%", "Average", "aws_ec2_ebsbyte_balance_percent_average"),
    ("AWS/EBS", "BurstBalance", "Average", "aws_ebs_burst_balance_average"),
    ("AWS/EBS", "VolumeReadBytes", "SampleCount", "aws_ebs_volume_read_bytes_sample_count"),
    ("AWS/EBS", "VolumeQueueLength", "p99", "aws_ebs_volume_queue_length_p99"),
    // RDS.
    ("AWS/RDS", "ReadIOPS", "Average", "aws_rds_read_iops_average"),
    ("AWS/RDS", "FreeStorageSpace", "Minimum", "aws_rds_free_storage_space_minimum"),
    ("AWS/RDS", "DatabaseConnections", "Maximum", "aws_rds_database_connections_maximum"),
    ("AWS/RDS", "ReplicaLag", "p99.9", "aws_rds_replica_lag_p99_9"),
    // Load balancers.
    ("AWS/ELB", "HTTPCode_Backend_5XX", "Sum", "aws_elb_httpcode_backend_5_xx_sum"),
    ("AWS/ELB", "HealthyHostCount", "Minimum", "aws_elb_healthy_host_count_minimum"),
    ("AWS/ELB", "SurgeQueueLength", "Maximum", "aws_elb_surge_queue_length_maximum"),
    ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", "aws_applicationelb_httpcode_target_5_xx_count_sum"),
    ("AWS/ApplicationELB", "HTTPCode_ELB_4XX_Count", "Sum", "aws_applicationelb_httpcode_elb_4_xx_count_sum"),
    ("AWS/ApplicationELB", "TargetResponseTime", "p99", "aws_applicationelb_target_response_time_p99"),
    ("AWS/ApplicationELB", "TargetResponseTime", "IQM", "aws_applicationelb_target_response_time_iqm"),
    ("AWS/ApplicationELB", "TargetResponseTime", "tm99", "aws_applicationelb_target_response_time_tm99"),
    ("AWS/ApplicationELB", "TargetResponseTime", "TC(0.005:0.030)", "aws_applicationelb_target_response_time_tc_0_005_0_030_"),
    ("AWS/ApplicationELB", "UnHealthyHostCount", "Maximum", "aws_applicationelb_un_healthy_host_count_maximum"),
    ("AWS/NetworkELB", "ActiveFlowCount_TCP", "Average", "aws_networkelb_active_flow_count_tcp_average"),
    // Lambda.
    ("AWS/Lambda", "Duration", "p99.9", "aws_lambda_duration_p99_9"),
    ("AWS/Lambda", "Duration", "TM(10%:90%)", "aws_lambda_duration_tm_10_percent_90_percent_"),
    ("AWS/Lambda", "ConcurrentExecutions", "Maximum", "aws_lambda_concurrent_executions_maximum"),
    ("AWS/Lambda", "IteratorAge", "Maximum", "aws_lambda_iterator_age_maximum"),
    ("AWS/Lambda", "Errors", "Sum", "aws_lambda_errors_sum"),
    // DynamoDB.
    ("AWS/DynamoDB", "ConsumedReadCapacityUnits", "Sum", "aws_dynamodb_consumed_read_capacity_units_sum"),
    ("AWS/DynamoDB", "SuccessfulRequestLatency", "Average", "aws_dynamodb_successful_request_latency_average"),
    ("AWS/DynamoDB", "ThrottledRequests", "SampleCount", "aws_dynamodb_throttled_requests_sample_count"),
    // Messaging and streaming.
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Average", "aws_sqs_approximate_number_of_messages_visible_average"),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", "aws_sqs_approximate_age_of_oldest_message_maximum"),
    ("AWS/SNS", "NumberOfNotificationsFailed", "Sum", "aws_sns_number_of_notifications_failed_sum"),
    ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "Maximum", "aws_kinesis_get_records_iterator_age_milliseconds_maximum"),
    ("AWS/Kinesis", "PutRecord.Success", "Average", "aws_kinesis_put_record_success_average"),
    ("AWS/Firehose", "DeliveryToS3.Success", "Average", "aws_firehose_delivery_to_s3_success_average"),
    ("AWS/Firehose", "IncomingBytes", "Sum", "aws_firehose_incoming_bytes_sum"),
    // The namespace's own word at the start of the metric name is dropped.
    ("AWS/Kafka", "KafkaDataLogsDiskUsed", "Maximum", "aws_kafka_data_logs_disk_used_maximum"),
    ("Glue", "glue.ALL.jvm.heap.usage", "Average", "aws_glue_all_jvm_heap_usage_average"),
    // Storage.
    ("AWS/S3", "BucketSizeBytes", "Average", "aws_s3_bucket_size_bytes_average"),
    ("AWS/S3", "4xxErrors", "Sum", "aws_s3_4xx_errors_sum"),
    ("AWS/EFS", "PercentIOLimit", "Maximum", "aws_efs_percent_iolimit_maximum"),
    ("AWS/EFS", "BurstCreditBalance", "Minimum", "aws_efs_burst_credit_balance_minimum"),
    ("AWS/Redshift", "PercentageDiskSpaceUsed", "Average", "aws_redshift_percentage_disk_space_used_average"),
    // Containers.
    ("AWS/ECS", "MemoryUtilization", "Average", "aws_ecs_memory_utilization_average"),
    ("ECS/ContainerInsights", "CpuUtilized", "Average", "aws_ecs_containerinsights_cpu_utilized_average"),
    ("ECS/ContainerInsights", "RunningTaskCount", "Maximum", "aws_ecs_containerinsights_running_task_count_maximum"),
    ("ContainerInsights", "node_cpu_utilization", "Average", "aws_containerinsights_node_cpu_utilization_average"),
    ("ContainerInsights", "pod_memory_utilization", "p90", "aws_containerinsights_pod_memory_utilization_p90"),
    // Caches and the edge.
    ("AWS/ElastiCache", "EngineCPUUtilization", "Maximum", "aws_elasticache_engine_cpuutilization_maximum"),
    ("AWS/ElastiCache", "CurrConnections", "Sum", "aws_elasticache_curr_connections_sum"),
    ("AWS/CloudFront", "5xxErrorRate", "Average", "aws_cloudfront_5xx_error_rate_average"),
    ("AWS/CloudFront", "BytesDownloaded", "Sum", "aws_cloudfront_bytes_downloaded_sum"),
    ("AWS/ApiGateway", "5XXError", "Sum", "aws_apigateway_5_xxerror_sum"),
    ("AWS/ApiGateway", "IntegrationLatency", "p95", "aws_apigateway_integration_latency_p95"),
    // Networking and security.
    ("AWS/NATGateway", "BytesOutToDestination", "Sum", "aws_natgateway_bytes_out_to_destination_sum"),
    ("AWS/NATGateway", "ErrorPortAllocation", "Sum", "aws_natgateway_error_port_allocation_sum"),
    ("AWS/Route53", "HealthCheckStatus", "Minimum", "aws_route53_health_check_status_minimum"),
    ("AWS/WAFV2", "BlockedRequests", "Sum", "aws_wafv2_blocked_requests_sum"),
    // Custom namespaces get `aws_` too.
    ("CWAgent", "mem_used_percent", "Average", "aws_cwagent_mem_used_percent_average"),
    ("CWAgent", "disk_used_percent", "Maximum", "aws_cwagent_disk_used_percent_maximum"),
    ("/aws/sagemaker/Endpoints", "GPUMemoryUtilization", "Maximum", "aws_sagemaker_endpoints_gpumemory_utilization_maximum"),
    ("AWS/Usage", "ResourceCount", "Maximum", "aws_usage_resource_count_maximum"),
];

#[test]
fn yace_names_real_metrics_as_yace_does() {
    assert!(YACE_NAMES.len() >= 50, "{} cases", YACE_NAMES.len());
    let mut wrong = Vec::new();
    for (namespace, metric_name, stat, expected) in YACE_NAMES {
        let got = name(Naming::Yace, namespace, metric_name, stat);
        if got != *expected {
            wrong.push(format!(
                "{namespace} {metric_name} {stat}: {got}, not {expected}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The stream's statistic names map to the YACE statistics they are.
#[test]
fn stream_statistics_are_cloudwatch_statistics() {
    let names = Naming::Yace.names(&metric("AWS/EC2", "NetworkIn", &[]));
    let cases = [
        ("count", "aws_ec2_network_in_sample_count"),
        ("sum", "aws_ec2_network_in_sum"),
        ("min", "aws_ec2_network_in_minimum"),
        ("max", "aws_ec2_network_in_maximum"),
        ("p99.99", "aws_ec2_network_in_p99_99"),
        (
            "WM(10%:90%)",
            "aws_ec2_network_in_wm_10_percent_90_percent_",
        ),
        ("PR(:300)", "aws_ec2_network_in_pr__300_"),
    ];
    for (stream_name, expected) in cases {
        let series = names.series(Statistic::from_stream(stream_name));
        assert_eq!(series.name, expected, "{stream_name}");
        assert_eq!(series.label, None);
    }
    assert_eq!(
        Statistic::from_stream("count").cloudwatch_name(),
        "SampleCount"
    );
    assert_eq!(Statistic::from_stream("p99").cloudwatch_name(), "p99");
}

/// Where YACE would keep a character Prometheus cannot take, Hydrant writes `_`.
#[test]
fn yace_names_are_always_valid() {
    let cases = [
        (
            "AWS/EC2",
            "Requests[2xx]",
            "Sum",
            "aws_ec2_requests_2xx__sum",
        ),
        (
            "My#App",
            "Queue+Depth",
            "Average",
            "aws_my_app_queue_depth_average",
        ),
        ("AWS/EC2", "Latenz\u{e9}", "Sum", "aws_ec2_latenz__sum"),
        ("AWS/EC2", "It's", "Sum", "aws_ec2_it_s_sum"),
    ];
    for (namespace, metric_name, stat, expected) in cases {
        let got = name(Naming::Yace, namespace, metric_name, stat);
        assert_eq!(got, expected, "{metric_name}");
        assert!(is_metric_name(&got), "{got}");
    }
    // A namespace that already starts with `aws` gets no second one.
    assert_eq!(
        name(Naming::Yace, "AWSCustom/Jobs", "Runs", "Sum"),
        "awscustom_jobs_runs_sum"
    );
}

#[test]
fn yace_labels_are_dimensions_region_and_account() {
    let metric = metric(
        "AWS/SNS",
        "NumberOfMessagesPublished",
        &[
            ("TopicName", "orders"),
            ("Global.Topic.Count", "a"),
            ("Status.Check.Failed_Instance", "b"),
            ("IHaveA%Sign", "c"),
            ("labelName", "d e/f"),
        ],
    );
    assert_eq!(
        Naming::Yace.labels(&metric),
        labels(&[
            ("account_id", "123456789012"),
            // YACE's own sanitising cases (TestSanitize in prometheus_test.go).
            ("dimension_Global_Topic_Count", "a"),
            ("dimension_IHaveA_percentSign", "c"),
            ("dimension_Status_Check_Failed_Instance", "b"),
            ("dimension_TopicName", "orders"),
            // Values are never changed.
            ("dimension_labelName", "d e/f"),
            ("region", "eu-west-1"),
        ])
    );
}

/// YACE drops a dimension whose name stays an invalid label (it starts with a digit
/// or holds `$`); Hydrant keeps it, so no two series merge.
#[test]
fn yace_keeps_dimensions_yace_would_drop() {
    let metric = metric("Custom", "M", &[("1stLabel", "x"), ("invalidChars@$", "y")]);
    let got = Naming::Yace.labels(&metric);
    assert!(
        got.contains(&("dimension_1stLabel".into(), "x".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("dimension_invalidChars__".into(), "y".into())),
        "{got:?}"
    );
}

#[test]
fn missing_region_and_account_are_no_labels() {
    let mut metric = metric("AWS/EC2", "CPUUtilization", &[]);
    metric.region = None;
    metric.account_id = None;
    assert!(Naming::Yace.labels(&metric).is_empty());
    assert_eq!(
        Naming::CloudwatchExporter.labels(&metric),
        labels(&[("job", "aws_ec2")])
    );
    assert_eq!(
        Naming::Otel.labels(&metric),
        labels(&[("MetricName", "CPUUtilization"), ("Namespace", "AWS/EC2")])
    );
}

/// Dimensions that clean up to one label name are told apart the same way whatever
/// order they come in: names that needed no change first, then byte order.
#[test]
fn colliding_label_names_are_resolved_deterministically() {
    let dimensions = [
        ("Instance-Id", "dash"),
        ("Instance.Id", "dot"),
        ("Instance_Id", "plain"),
        ("Instance_Id_2", "plain two"),
    ];
    let metric = metric("AWS/EC2", "CPUUtilization", &dimensions);
    let got = Naming::Yace.labels(&metric);
    assert_eq!(
        got,
        labels(&[
            ("account_id", "123456789012"),
            ("dimension_Instance_Id", "plain"),
            ("dimension_Instance_Id_2", "plain two"),
            ("dimension_Instance_Id_3", "dash"),
            ("dimension_Instance_Id_4", "dot"),
            ("region", "eu-west-1"),
        ])
    );
    // The same set of dimensions always gives the same labels.
    let mut reversed = metric.clone();
    reversed.dimensions = dimensions
        .iter()
        .rev()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    assert_eq!(Naming::Yace.labels(&reversed), got);

    // The scheme's own labels keep their names.
    let metric = self::metric(
        "AWS/EC2",
        "CPUUtilization",
        &[("Region", "dimension"), ("Job", "j"), ("instance", "i")],
    );
    assert_eq!(
        Naming::CloudwatchExporter.labels(&metric),
        labels(&[
            ("account_id", "123456789012"),
            ("instance_2", "i"),
            ("job", "aws_ec2"),
            ("job_2", "j"),
            ("region", "eu-west-1"),
            ("region_2", "dimension"),
        ])
    );
    let metric = self::metric("AWS/EC2", "CPUUtilization", &[("quantile", "q")]);
    let samples = samples(&metric, Naming::Otel);
    let max = samples
        .iter()
        .find(|sample| sample.value == 91.25)
        .expect("the maximum");
    assert!(max.labels.contains(&("quantile".into(), "1".into())));
    assert!(max.labels.contains(&("quantile_2".into(), "q".into())));
}

/// prometheus/cloudwatch_exporter's names (`CloudWatchCollector.java`: snake case,
/// `safeName`, the statistic suffixes), the first from its README.
#[test]
fn cloudwatch_exporter_names() {
    #[rustfmt::skip]
    let cases = [
        ("AWS/ELB", "RequestCount", "Sum", "aws_elb_request_count_sum"),
        ("AWS/EC2", "CPUUtilization", "Average", "aws_ec2_cpuutilization_average"),
        ("AWS/EC2", "NetworkIn", "Sum", "aws_ec2_network_in_sum"),
        ("AWS/EC2", "EBSIOBalance%", "Minimum", "aws_ec2_ebsiobalance__minimum"),
        ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", "aws_applicationelb_httpcode_target_5_xx_count_sum"),
        ("AWS/ApiGateway", "5XXError", "SampleCount", "aws_apigateway_5_xxerror_sample_count"),
        ("AWS/Lambda", "Duration", "p99.9", "aws_lambda_duration_p99_9"),
        ("AWS/Lambda", "Duration", "TM(10%:90%)", "aws_lambda_duration_tm_10_:90_"),
        ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "Maximum", "aws_kinesis_get_records_iterator_age_milliseconds_maximum"),
        ("CWAgent", "mem_used_percent", "Average", "cwagent_mem_used_percent_average"),
        ("Glue", "glue.driver.aggregate.bytesRead", "Sum", "glue_glue_driver_aggregate_bytes_read_sum"),
        ("ECS/ContainerInsights", "CpuUtilized", "Average", "ecs_containerinsights_cpu_utilized_average"),
        ("/aws/sagemaker/TrainingJobs", "CPUUtilization", "Average", "_aws_sagemaker_trainingjobs_cpuutilization_average"),
        ("AWS/Kafka", "KafkaDataLogsDiskUsed", "Maximum", "aws_kafka_kafka_data_logs_disk_used_maximum"),
    ];
    for (namespace, metric_name, stat, expected) in cases {
        let got = name(Naming::CloudwatchExporter, namespace, metric_name, stat);
        assert_eq!(got, expected, "{namespace} {metric_name} {stat}");
        assert!(is_metric_name(&got), "{got}");
    }
}

#[test]
fn cloudwatch_exporter_labels_and_dynamodb_index_names() {
    let metric = metric(
        "AWS/ELB",
        "RequestCount",
        &[
            ("LoadBalancerName", "mylb"),
            ("AvailabilityZone", "eu-west-1c"),
        ],
    );
    assert_eq!(
        Naming::CloudwatchExporter.labels(&metric),
        labels(&[
            ("account_id", "123456789012"),
            ("availability_zone", "eu-west-1c"),
            ("job", "aws_elb"),
            ("load_balancer_name", "mylb"),
            ("region", "eu-west-1"),
        ])
    );
    let index = self::metric(
        "AWS/DynamoDB",
        "ConsumedReadCapacityUnits",
        &[("TableName", "t"), ("GlobalSecondaryIndexName", "i")],
    );
    let table = self::metric(
        "AWS/DynamoDB",
        "ConsumedReadCapacityUnits",
        &[("TableName", "t")],
    );
    let sum = |metric: &Metric| {
        Naming::CloudwatchExporter
            .names(metric)
            .series(Statistic::Sum)
            .name
    };
    assert_eq!(
        sum(&index),
        "aws_dynamodb_consumed_read_capacity_units_index_sum"
    );
    assert_eq!(sum(&table), "aws_dynamodb_consumed_read_capacity_units_sum");
    // Only the metrics the exporter lists; YACE never does this.
    let latency = self::metric(
        "AWS/DynamoDB",
        "SuccessfulRequestLatency",
        &[("TableName", "t"), ("GlobalSecondaryIndexName", "i")],
    );
    assert_eq!(sum(&latency), "aws_dynamodb_successful_request_latency_sum");
    assert_eq!(
        Naming::Yace.names(&index).series(Statistic::Sum).name,
        "aws_dynamodb_consumed_read_capacity_units_sum"
    );
    assert_eq!(
        Naming::CloudwatchExporter.labels(&index)[1],
        ("global_secondary_index_name".to_owned(), "i".to_owned())
    );
}

/// Namespace, metric name, unit, statistic, expected name, expected quantile.
type OtelCase<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a str,
    &'a str,
    Option<&'a str>,
);

/// The collector's names: `amazonaws.com/<namespace>/<metric>` in words, the unit's
/// word, a summary's quantiles, `_sum` and `_count`.
#[test]
fn otel_names() {
    #[rustfmt::skip]
    let cases: &[OtelCase<'_>] = &[
        ("AWS/EC2", "CPUUtilization", Some("Percent"), "Minimum", "amazonaws_com_AWS_EC2_CPUUtilization_percent", Some("0")),
        ("AWS/EC2", "CPUUtilization", Some("Percent"), "Maximum", "amazonaws_com_AWS_EC2_CPUUtilization_percent", Some("1")),
        ("AWS/EC2", "NetworkIn", Some("Bytes"), "Sum", "amazonaws_com_AWS_EC2_NetworkIn_bytes_sum", None),
        ("AWS/EC2", "NetworkIn", Some("Bytes/Second"), "Sum", "amazonaws_com_AWS_EC2_NetworkIn_bytes_per_second_sum", None),
        ("AWS/ApplicationELB", "RequestCount", Some("Count"), "SampleCount", "amazonaws_com_AWS_ApplicationELB_RequestCount_count", None),
        ("AWS/ApplicationELB", "RequestCount", Some("Count/Second"), "Sum", "amazonaws_com_AWS_ApplicationELB_RequestCount_per_second_sum", None),
        ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", Some("Count"), "Sum", "amazonaws_com_AWS_ApplicationELB_HTTPCode_Target_5XX_Count_sum", None),
        ("AWS/Lambda", "Duration", Some("Milliseconds"), "p99.9", "amazonaws_com_AWS_Lambda_Duration_milliseconds", Some("0.999")),
        ("AWS/Lambda", "Duration", Some("Milliseconds"), "p99", "amazonaws_com_AWS_Lambda_Duration_milliseconds", Some("0.99")),
        ("AWS/Lambda", "Duration", Some("Milliseconds"), "p50", "amazonaws_com_AWS_Lambda_Duration_milliseconds", Some("0.5")),
        ("AWS/Lambda", "Duration", Some("Milliseconds"), "p5", "amazonaws_com_AWS_Lambda_Duration_milliseconds", Some("0.05")),
        ("AWS/Lambda", "Duration", Some("Milliseconds"), "p0.1", "amazonaws_com_AWS_Lambda_Duration_milliseconds", Some("0.001")),
        ("AWS/Lambda", "Duration", Some("Milliseconds"), "p99.99", "amazonaws_com_AWS_Lambda_Duration_milliseconds", Some("0.9999")),
        ("AWS/Lambda", "Duration", Some("Milliseconds"), "p100", "amazonaws_com_AWS_Lambda_Duration_milliseconds_p100", None),
        ("AWS/Lambda", "Duration", Some("Milliseconds"), "p0", "amazonaws_com_AWS_Lambda_Duration_milliseconds_p0", None),
        ("AWS/Lambda", "Duration", Some("Milliseconds"), "TM(10%:90%)", "amazonaws_com_AWS_Lambda_Duration_milliseconds_TM_10_percent_90_percent", None),
        ("AWS/Lambda", "Duration", Some("Milliseconds"), "TM(10:90)", "amazonaws_com_AWS_Lambda_Duration_milliseconds_TM_10_90", None),
        ("AWS/Lambda", "Duration", Some("Milliseconds"), "IQM", "amazonaws_com_AWS_Lambda_Duration_milliseconds_IQM", None),
        ("AWS/Lambda", "Duration", Some("Milliseconds"), "Average", "amazonaws_com_AWS_Lambda_Duration_milliseconds_average", None),
        // The unit's word is not repeated.
        ("CWAgent", "mem_used_percent", Some("Percent"), "Sum", "amazonaws_com_CWAgent_mem_used_percent_sum", None),
        ("Glue", "glue.driver.aggregate.bytesRead", Some("Bytes"), "Sum", "amazonaws_com_Glue_glue_driver_aggregate_bytesRead_bytes_sum", None),
        ("ECS/ContainerInsights", "CpuUtilized", Some("None"), "Sum", "amazonaws_com_ECS_ContainerInsights_CpuUtilized_sum", None),
        ("ECS/ContainerInsights", "CpuUtilized", None, "Sum", "amazonaws_com_ECS_ContainerInsights_CpuUtilized_sum", None),
        ("AWS/EC2", "EBSIOBalance%", Some("Percent"), "Sum", "amazonaws_com_AWS_EC2_EBSIOBalance_percent_sum", None),
        ("AWS/S3", "BucketSizeBytes", Some("Kilobytes"), "Sum", "amazonaws_com_AWS_S3_BucketSizeBytes_kBy_sum", None),
        ("AWS/ApiGateway", "5XXError", Some("Count"), "Sum", "amazonaws_com_AWS_ApiGateway_5XXError_sum", None),
    ];
    for (namespace, metric_name, unit, stat, expected, quantile) in cases {
        let mut metric = metric(namespace, metric_name, &[]);
        metric.unit = unit.map(str::to_owned);
        let series = Naming::Otel.names(&metric).series(statistic(stat));
        assert_eq!(series.name, *expected, "{namespace} {metric_name} {stat}");
        assert_eq!(
            series.label,
            quantile.map(|q| ("quantile", q.to_owned())),
            "{namespace} {metric_name} {stat}"
        );
        assert!(is_metric_name(&series.name), "{}", series.name);
    }
}

#[test]
fn otel_labels() {
    let metric = metric(
        "AWS/EC2",
        "CPUUtilization",
        &[
            ("InstanceId", "i-0abc"),
            ("5xx", "a"),
            ("_private", "b"),
            ("Auto Scaling.Group", "c"),
        ],
    );
    assert_eq!(
        Naming::Otel.labels(&metric),
        labels(&[
            ("Auto_Scaling_Group", "c"),
            ("InstanceId", "i-0abc"),
            ("MetricName", "CPUUtilization"),
            ("Namespace", "AWS/EC2"),
            ("cloud_account_id", "123456789012"),
            ("cloud_region", "eu-west-1"),
            ("key_5xx", "a"),
            ("key_private", "b"),
        ])
    );
}

/// The issue's example, to the last digit.
#[test]
fn the_issue_example_as_yace_names_it() {
    let point = example();
    let got = samples(&point, Naming::Yace);
    let expected_labels = labels(&[
        ("account_id", "123456789012"),
        ("dimension_InstanceId", "i-0abc"),
        ("region", "eu-west-1"),
    ]);
    let expected = [
        ("aws_ec2_cpuutilization_maximum", 91.25_f64),
        ("aws_ec2_cpuutilization_minimum", 3.5),
        ("aws_ec2_cpuutilization_sum", 412.75),
        ("aws_ec2_cpuutilization_sample_count", 7.0),
        ("aws_ec2_cpuutilization_average", 58.964_285_714_285_715),
    ];
    assert_eq!(got.len(), expected.len());
    for (sample, (name, value)) in got.iter().zip(expected) {
        assert_eq!(sample.name, name);
        assert_eq!(sample.value.to_bits(), value.to_bits(), "{name}");
        assert_eq!(sample.labels, expected_labels);
        assert_eq!(sample.timestamp_ms, 1_700_000_040_000);
    }
    // As the exposition format prints it.
    let average = &got[4];
    let rendered = format!(
        "{}{{{}}} {}",
        average.name,
        average
            .labels
            .iter()
            .map(|(name, value)| format!("{name}=\"{value}\""))
            .collect::<Vec<_>>()
            .join(","),
        average.value
    );
    assert_eq!(
        rendered,
        r#"aws_ec2_cpuutilization_average{account_id="123456789012",dimension_InstanceId="i-0abc",region="eu-west-1"} 58.964285714285715"#
    );
}

#[test]
fn the_issue_example_in_the_other_schemes() {
    let point = example();
    let got = samples(&point, Naming::CloudwatchExporter);
    let names: Vec<&str> = got.iter().map(|sample| sample.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "aws_ec2_cpuutilization_maximum",
            "aws_ec2_cpuutilization_minimum",
            "aws_ec2_cpuutilization_sum",
            "aws_ec2_cpuutilization_sample_count",
            "aws_ec2_cpuutilization_average",
        ]
    );
    assert_eq!(
        got[4].labels,
        labels(&[
            ("account_id", "123456789012"),
            ("instance_id", "i-0abc"),
            ("job", "aws_ec2"),
            ("region", "eu-west-1"),
        ])
    );

    let got = samples(&point, Naming::Otel);
    let base = "amazonaws_com_AWS_EC2_CPUUtilization_percent";
    let common = [
        ("InstanceId", "i-0abc"),
        ("MetricName", "CPUUtilization"),
        ("Namespace", "AWS/EC2"),
        ("cloud_account_id", "123456789012"),
        ("cloud_region", "eu-west-1"),
    ];
    let with_quantile = |quantile: &'static str| {
        let mut pairs = common.to_vec();
        pairs.push(("quantile", quantile));
        labels(&pairs)
    };
    let expected = vec![
        Sample {
            name: base.into(),
            labels: with_quantile("1"),
            value: 91.25,
            timestamp_ms: 1_700_000_040_000,
        },
        Sample {
            name: base.into(),
            labels: with_quantile("0"),
            value: 3.5,
            timestamp_ms: 1_700_000_040_000,
        },
        Sample {
            name: format!("{base}_sum"),
            labels: labels(&common),
            value: 412.75,
            timestamp_ms: 1_700_000_040_000,
        },
        Sample {
            name: format!("{base}_count"),
            labels: labels(&common),
            value: 7.0,
            timestamp_ms: 1_700_000_040_000,
        },
        Sample {
            name: format!("{base}_average"),
            labels: labels(&common),
            value: 412.75 / 7.0,
            timestamp_ms: 1_700_000_040_000,
        },
    ];
    assert_eq!(got, expected);
}

#[test]
fn every_statistic_becomes_a_series_and_average_needs_a_count() {
    let mut point = example();
    point.value.0.push(("p99".into(), 90.0));
    point.value.0.push(("p99.9".into(), 91.0));
    point.value.0.push(("TM(10%:90%)".into(), 50.0));
    point.value.0.push(("IQM".into(), 49.0));
    let got = samples(&point, Naming::Yace);
    let names: Vec<&str> = got.iter().map(|sample| sample.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "aws_ec2_cpuutilization_maximum",
            "aws_ec2_cpuutilization_minimum",
            "aws_ec2_cpuutilization_sum",
            "aws_ec2_cpuutilization_sample_count",
            "aws_ec2_cpuutilization_p99",
            "aws_ec2_cpuutilization_p99_9",
            "aws_ec2_cpuutilization_tm_10_percent_90_percent_",
            "aws_ec2_cpuutilization_iqm",
            "aws_ec2_cpuutilization_average",
        ]
    );
    let values: Vec<f64> = got.iter().map(|sample| sample.value).collect();
    assert_eq!(values[4..8], [90.0, 91.0, 50.0, 49.0]);

    // A count of 0: no average (and no division by zero), the rest stays.
    let mut empty = example();
    empty.value = Statistics(vec![
        ("count".into(), 0.0),
        ("sum".into(), 0.0),
        ("min".into(), 0.0),
        ("max".into(), 0.0),
    ]);
    for naming in [Naming::Yace, Naming::CloudwatchExporter, Naming::Otel] {
        let got = samples(&empty, naming);
        assert_eq!(got.len(), 4, "{naming:?}");
        assert!(
            got.iter().all(|sample| !sample.name.ends_with("_average")),
            "{naming:?}"
        );
        assert!(got.iter().all(|sample| sample.value == 0.0));
    }

    // Without a sum (or a count) there is no average either.
    let mut no_sum = example();
    no_sum.value.0.retain(|(name, _)| name != "sum");
    let got = samples(&no_sum, Naming::Yace);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|sample| !sample.name.ends_with("_average")));
    let mut no_count = example();
    no_count.value.0.retain(|(name, _)| name != "count");
    assert_eq!(samples(&no_count, Naming::Yace).len(), 3);
}

/// Whatever the input, every name and label name is valid, labels are sorted and
/// unique, and values are kept byte for byte.
#[test]
fn names_and_labels_are_always_valid_and_sorted() {
    let odd = [
        "",
        "_",
        "__x",
        "9lives",
        "a b",
        "é",
        "Ω%",
        "“quoted”",
        "x:y",
        "[0]",
        "-",
        "%",
    ];
    for naming in [Naming::Yace, Naming::CloudwatchExporter, Naming::Otel] {
        for text in odd {
            let mut point = metric(text, text, &[]);
            point.dimensions = odd
                .iter()
                .map(|name| ((*name).to_owned(), format!("value of {name}")))
                .collect();
            point.unit = Some(text.to_owned());
            point.value.0.push((text.to_owned(), 1.0));
            for sample in samples(&point, naming) {
                assert!(is_metric_name(&sample.name), "{naming:?} {:?}", sample.name);
                for pair in sample.labels.windows(2) {
                    assert!(pair[0].0 < pair[1].0, "{naming:?} {:?}", sample.labels);
                }
                for (name, _) in &sample.labels {
                    assert!(is_label_name(name), "{naming:?} {name:?}");
                }
                for name in odd {
                    let value = format!("value of {name}");
                    assert_eq!(
                        sample.labels.iter().filter(|(_, v)| *v == value).count(),
                        1,
                        "{naming:?}: dimension {name:?} in {:?}",
                        sample.labels
                    );
                }
            }
        }
    }
}

#[test]
fn naming_reads_from_configuration() {
    #[derive(serde::Deserialize)]
    struct Sink {
        #[serde(default)]
        naming: Naming,
    }
    let parse = |text: &str| toml::from_str::<Sink>(text).map(|sink| sink.naming);
    assert_eq!(parse("").unwrap(), Naming::Yace);
    assert_eq!(parse(r#"naming = "yace""#).unwrap(), Naming::Yace);
    assert_eq!(
        parse(r#"naming = "cloudwatch_exporter""#).unwrap(),
        Naming::CloudwatchExporter
    );
    assert_eq!(parse(r#"naming = "otel""#).unwrap(), Naming::Otel);
    assert!(parse(r#"naming = "YACE""#).is_err());
    for naming in [Naming::Yace, Naming::CloudwatchExporter, Naming::Otel] {
        let text = format!("naming = \"{}\"", naming.as_str());
        assert_eq!(parse(&text).unwrap(), naming);
    }
}
