use super::*;
use crate::event::Delivery;
use crate::sink::{EventLines, EventMeta};

fn config(text: &str) -> Result<KafkaConfig, String> {
    let config: KafkaConfig = toml::from_str(text).map_err(|error| error.to_string())?;
    config.validate()?;
    Ok(config)
}

#[test]
fn defaults_fill_everything_but_the_brokers() {
    let parsed = config(r#"brokers = ["127.0.0.1:9092"]"#).unwrap();
    assert_eq!(parsed, KafkaConfig::new(vec!["127.0.0.1:9092".into()]));
    assert_eq!(parsed.topic, "hydrant-{table}");
    assert_eq!(
        parsed.key,
        "{delivery_key}:{table}:{record_index}:{event_index}"
    );
    assert_eq!(parsed.max_batch_bytes, 768 * 1024);
    assert_eq!(parsed.compression, "none");
    assert!(parsed.create_topics);
    assert_eq!((parsed.topic_partitions, parsed.replication_factor), (1, 1));
    assert_eq!(parsed.timeout_ms, 10_000);
}

#[test]
fn configurations_are_validated() {
    // (configuration, the error mentions; empty when it is valid)
    let table = [
        (
            r#"brokers = ["a:9092"]
                topic = "logs.{log_group}"
                key = "{request_id}"
                compression = "zstd"
                create_topics = false
                topic_partitions = 6
                replication_factor = 3
                timeout_ms = 2000"#,
            "",
        ),
        (
            r#"brokers = ["a:9092"]
                compression = "lz4""#,
            "",
        ),
        ("topic = \"t\"", "missing field `brokers`"),
        ("brokers = []", "at least one broker"),
        (r#"brokers = [" "]"#, "not a host:port"),
        (
            r#"brokers = ["a:9092"]
                topic = "{nope}""#,
            "topic: template",
        ),
        (
            r#"brokers = ["a:9092"]
                topic = """#,
            "topic: the template is empty",
        ),
        (
            r#"brokers = ["a:9092"]
                key = "{request_id""#,
            "key: template",
        ),
        (
            r#"brokers = ["a:9092"]
                compression = "brotli""#,
            "compression: unknown \"brotli\"",
        ),
        (
            r#"brokers = ["a:9092"]
                topic_partitions = 0"#,
            "topic_partitions",
        ),
        (
            r#"brokers = ["a:9092"]
                replication_factor = 0"#,
            "replication_factor",
        ),
        (
            r#"brokers = ["a:9092"]
                timeout_ms = 0"#,
            "timeout_ms",
        ),
        (
            r#"brokers = ["a:9092"]
                timeout_ms = 3000000000"#,
            "timeout_ms",
        ),
        (
            r#"brokers = ["a:9092"]
                partitions = 3"#,
            "unknown field `partitions`",
        ),
        (
            r#"brokers = ["a:9092"]
                key = "{request_id}%{record_index}""#,
            "reserved",
        ),
        (
            r#"brokers = ["a:9092"]
                max_batch_bytes = 1000"#,
            "max_batch_bytes",
        ),
        (
            r#"brokers = ["a:9092"]
                max_batch_bytes = 1048576"#,
            "",
        ),
    ];
    for (text, expected) in table {
        match config(text) {
            Ok(_) => assert!(expected.is_empty(), "{text} should fail with {expected}"),
            Err(error) => {
                assert!(!expected.is_empty(), "{text} should be valid: {error}");
                assert!(error.contains(expected), "{text}: {error}");
            }
        }
    }
}

/// A TLS fixture (made by `tests/fixtures/tls/make.sh`).
fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn tls_and_sasl_settings_are_validated() {
    let (ca, cert, key, other_key) = (
        fixture("ca.pem"),
        fixture("client.pem"),
        fixture("client.key"),
        fixture("other.key"),
    );
    let missing = fixture("missing.pem");
    let not_pem = fixture("make.sh");
    // (settings after `brokers`, the error mentions; empty when valid)
    let table = [
            (format!("tls = true\ntls_ca_file = {ca:?}"), ""),
            (
                format!("tls = true\ntls_ca_file = {ca:?}\ntls_cert_file = {cert:?}\ntls_key_file = {key:?}"),
                "",
            ),
            (format!("tls_ca_file = {ca:?}"), "tls_ca_file is set but tls is off"),
            (format!("tls_cert_file = {cert:?}"), "tls_cert_file is set but tls is off"),
            (format!("tls = true\ntls_ca_file = {missing:?}"), "tls_ca_file"),
            (format!("tls = true\ntls_ca_file = {not_pem:?}"), "no PEM certificate"),
            (format!("tls = true\ntls_ca_file = {key:?}"), "no PEM certificate"),
            (format!("tls = true\ntls_cert_file = {cert:?}"), "tls_cert_file needs tls_key_file"),
            (format!("tls = true\ntls_key_file = {key:?}"), "tls_key_file needs tls_cert_file"),
            (
                format!("tls = true\ntls_cert_file = {cert:?}\ntls_key_file = {cert:?}"),
                "tls_key_file",
            ),
            (
                format!("tls = true\ntls_cert_file = {cert:?}\ntls_key_file = {other_key:?}"),
                "tls_cert_file",
            ),
            (
                format!("tls = true\ntls_cert_file = {cert:?}\ntls_key_file = {missing:?}"),
                "tls_key_file",
            ),
            (
                "sasl_mechanism = \"plain\"\nsasl_username = \"u\"\nsasl_password = \"p\"".to_owned(),
                "",
            ),
            (
                "sasl_mechanism = \"scram-sha-256\"\nsasl_username = \"u\"\nsasl_password = \"p\"".to_owned(),
                "",
            ),
            (
                "tls = true\nsasl_mechanism = \"scram-sha-512\"\nsasl_username = \"u\"\nsasl_password = \"p\"".to_owned(),
                "",
            ),
            (
                "sasl_mechanism = \"gssapi\"\nsasl_username = \"u\"\nsasl_password = \"p\"".to_owned(),
                "sasl_mechanism: unknown \"gssapi\"",
            ),
            (
                "sasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"u\"\nsasl_password = \"p\"".to_owned(),
                "",
            ),
            (
                "sasl_mechanism = \"plain\"\nsasl_password = \"p\"".to_owned(),
                "needs sasl_username",
            ),
            (
                "sasl_mechanism = \"plain\"\nsasl_username = \"u\"".to_owned(),
                "needs sasl_password",
            ),
            (
                "sasl_mechanism = \"plain\"\nsasl_username = \"u\"\nsasl_password = \"\"".to_owned(),
                "needs sasl_password",
            ),
            (
                "sasl_username = \"u\"\nsasl_password = \"p\"".to_owned(),
                "need sasl_mechanism",
            ),
            ("tls = \"yes\"".to_owned(), "invalid type"),
        ];
    for (settings, expected) in &table {
        let text = format!("brokers = [\"a:9093\"]\n{settings}");
        match config(&text) {
            Ok(_) => assert!(expected.is_empty(), "{text} should fail with {expected}"),
            Err(error) => {
                assert!(!expected.is_empty(), "{text} should be valid: {error}");
                assert!(error.contains(expected), "{text}: {error}");
                assert!(!error.contains("\"p\""), "no password in {error}");
            }
        }
    }
}

#[test]
fn tls_settings_build_a_client_configuration() {
    let mut config = KafkaConfig::new(vec!["127.0.0.1:9093".into()]);
    assert!(config.tls_config().unwrap().is_none(), "off by default");
    config.tls = true;
    // Without tls_ca_file, the host's roots: a host without any is told so.
    match config.tls_config() {
        Ok(built) => assert!(built.is_some()),
        Err(error) => assert!(error.contains("set tls_ca_file"), "{error}"),
    }
    config.tls_ca_file = Some(fixture("ca.pem").into());
    let built = config.tls_config().unwrap().expect("tls on");
    assert!(!built.client_auth_cert_resolver.has_certs());
    config.tls_cert_file = Some(fixture("client.pem").into());
    config.tls_key_file = Some(fixture("client.key").into());
    let built = config.tls_config().unwrap().expect("tls on");
    assert!(built.client_auth_cert_resolver.has_certs());
    let sasl = |mechanism: &str| {
        let mut config = KafkaConfig::new(vec!["a:9092".into()]);
        config.sasl_mechanism = Some(mechanism.into());
        config.sasl_username = Some("user".into());
        config.sasl_password = Some("hunter2".into());
        config.sasl().unwrap().unwrap().client_config()
    };
    assert!(
        matches!(sasl("plain"), SaslConfig::Plain(c) if c.username == "user" && c.password == "hunter2")
    );
    assert!(matches!(sasl("scram-sha-256"), SaslConfig::ScramSha256(_)));
    assert!(matches!(sasl("scram-sha-512"), SaslConfig::ScramSha512(_)));
}

#[tokio::test]
async fn passwords_never_show_in_debug_output() {
    let mut config = KafkaConfig::new(vec!["a:9092".into()]);
    config.sasl_mechanism = Some("scram-sha-256".into());
    config.sasl_username = Some("hydrant".into());
    config.sasl_password = Some("hunter2".into());
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains(REDACTED) && shown.contains("hydrant"),
        "{shown}"
    );
    let sink = KafkaSink::connect(config).await.unwrap();
    let shown = format!("{sink:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("scram-sha-256"), "{shown}");
}

/// One step of [`reconnects_back_off_and_failures_are_logged_sparingly`].
#[derive(Debug)]
enum Step {
    /// An attempt at this many ms: allowed (`None`) or the wait in ms.
    Attempt(Option<u64>),
    /// A failure and what it logs.
    Fail(Option<OutageLog>),
    /// A success and what it logs.
    Succeed(Option<OutageLog>),
}

#[test]
fn reconnects_back_off_and_failures_are_logged_sparingly() {
    use Step::{Attempt, Fail, Succeed};
    let down = |failures, ms| OutageLog::StillDown {
        failures,
        down_for: Duration::from_millis(ms),
    };
    let recovered = |failures, ms| OutageLog::Recovered {
        failures,
        down_for: Duration::from_millis(ms),
    };
    // (ms since the start, step)
    let table = [
        // Connected, then the connection fails: the next attempt is at once.
        (0, Attempt(None)),
        (0, Succeed(None)),
        (1_000, Fail(Some(OutageLog::Started))),
        (1_000, Attempt(None)),
        (1_010, Fail(None)),
        // Then 250 ms, 500 ms, 1 s... after the start of each attempt.
        (1_100, Attempt(Some(150))),
        (1_250, Attempt(None)),
        (1_300, Fail(None)),
        (1_700, Attempt(Some(50))),
        (1_750, Attempt(None)),
        (1_760, Fail(None)),
        (2_750, Attempt(None)),
        (2_760, Fail(None)),
        // Attempts cut short by a timeout (no failure recorded) still count.
        (4_750, Attempt(None)),
        (8_750, Attempt(None)),
        (16_750, Attempt(None)),
        (32_750, Attempt(None)),
        // A summary once 30 s have passed since the last line.
        (32_751, Fail(Some(down(6, 31_751)))),
        // Capped at 30 s.
        (62_700, Attempt(Some(50))),
        (62_750, Attempt(None)),
        (92_750, Attempt(None)),
        (92_800, Fail(Some(down(7, 91_800)))),
        (122_750, Attempt(None)),
        (122_760, Fail(None)),
        (152_749, Attempt(Some(1))),
        (152_750, Attempt(None)),
        // A success ends the outage, once, and resets the backoff.
        (153_000, Succeed(Some(recovered(8, 152_000)))),
        (153_100, Succeed(None)),
        (160_000, Fail(Some(OutageLog::Started))),
        (160_000, Attempt(None)),
        (160_100, Attempt(Some(150))),
    ];
    let start = Instant::now();
    let mut reconnect = Reconnect::default();
    for (index, (at, step)) in table.into_iter().enumerate() {
        let now = start + Duration::from_millis(at);
        match step {
            Attempt(expected) => {
                let wait = match reconnect.try_attempt(now) {
                    Ok(()) => None,
                    Err(Failure::Backoff { wait, last, .. }) => {
                        assert!(!last.is_empty() || index < 3, "step {index}");
                        Some(u64::try_from(wait.as_millis()).unwrap())
                    }
                    Err(other) => panic!("step {index}: {other}"),
                };
                assert_eq!(wait, expected, "step {index} at {at} ms");
            }
            Fail(expected) => {
                assert_eq!(reconnect.failed(now, "refused"), expected, "step {index}");
            }
            Succeed(expected) => {
                assert_eq!(reconnect.succeeded(now), expected, "step {index}");
            }
        }
    }
}

#[test]
fn the_backoff_doubles_to_its_cap() {
    let start = Instant::now();
    let mut reconnect = Reconnect::default();
    let mut now = start;
    let mut gaps = Vec::new();
    for _ in 0..12 {
        reconnect.try_attempt(now).unwrap();
        let Err(Failure::Backoff { wait, .. }) = reconnect.try_attempt(now) else {
            panic!("a second attempt at once is refused");
        };
        gaps.push(wait.as_millis());
        now += wait;
    }
    assert_eq!(
        gaps,
        [
            250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000, 30_000
        ]
    );
}

#[test]
fn topics_are_cleaned_to_legal_names() {
    let long = "a".repeat(300);
    let at_limit = "a".repeat(MAX_TOPIC_CHARS);
    let table = [
        ("hydrant-events", "hydrant-events".to_owned()),
        (
            "logs./aws/lambda/my fn",
            "logs._aws_lambda_my_fn".to_owned(),
        ),
        ("metrics.AWS/EC2:cpu", "metrics.AWS_EC2_cpu".to_owned()),
        ("été-ü", "_t_-_".to_owned()),
        ("", "_".to_owned()),
        (".", "_".to_owned()),
        ("..", "__".to_owned()),
        ("...", "...".to_owned()),
        (at_limit.as_str(), at_limit.clone()),
        (
            long.as_str(),
            format!("{}-{}", "a".repeat(216), digest_hex(long.as_bytes())),
        ),
    ];
    for (rendered, expected) in table {
        assert_eq!(clean_topic(rendered), expected, "{rendered}");
    }
    // Two long names that differ only past the cut stay two topics.
    let other = format!("{}b", "a".repeat(299));
    assert_ne!(clean_topic(&other), clean_topic(&long));
    assert_eq!(clean_topic(&other).len(), MAX_TOPIC_CHARS);
}

#[test]
fn over_long_keys_become_a_digest() {
    let fits = "k".repeat(MAX_KEY_BYTES);
    assert_eq!(
        key_or_digest(fits.clone()),
        (fits.clone().into_bytes(), false)
    );
    let long = format!("{fits}k");
    let (key, hashed) = key_or_digest(long.clone());
    assert!(hashed);
    assert_eq!(
        String::from_utf8(key).unwrap(),
        format!("%hash:{}", digest_hex(long.as_bytes()))
    );
}

#[tokio::test]
async fn records_carry_topic_key_headers_and_time() {
    let mut config = KafkaConfig::new(vec!["127.0.0.1:1".into()]);
    config.topic = "hydrant.{table}.{log_group}".into();
    let sink = KafkaSink::connect(config)
        .await
        .expect("no broker needed to build");
    let batch = SinkBatch {
        delivery: Arc::new(Delivery {
            request_id: "req-9".into(),
            received_at: 1_700_000_000_123,
            ..Delivery::default()
        }),
        dedup_key: crate::sink::dedup::DeliveryKey::new(None, "k"),
        events: EventLines::single(
            bytes::Bytes::from_static(b"{\"a\":1}\n{\"b\":2}\n"),
            vec![
                EventMeta {
                    end: 8,
                    kind: "log",
                    log_group: Some(Arc::from("/aws/lambda/f")),
                    ..EventMeta::default()
                },
                EventMeta {
                    end: 16,
                    record_index: 1,
                    event_index: 2,
                    kind: "log",
                    log_group: Some(Arc::from("/aws/lambda/f")),
                    ..EventMeta::default()
                },
            ],
        ),
        dead_letters: EventLines::single(
            bytes::Bytes::from_static(b"{\"c\":3}\n"),
            vec![EventMeta {
                end: 8,
                record_index: 2,
                kind: "dead_letter",
                ..EventMeta::default()
            }],
        ),
    };
    let by_topic = sink.records_by_topic(&batch).unwrap().by_topic;
    let topics: Vec<&str> = by_topic.keys().map(String::as_str).collect();
    assert_eq!(
        topics,
        ["hydrant.dead_letter.none", "hydrant.events._aws_lambda_f"]
    );
    let events = &by_topic["hydrant.events._aws_lambda_f"];
    assert_eq!(events.len(), 2);
    let (key, record) = &events[1];
    let expected = format!("{}:events:1:2", batch.dedup_key.to_hex());
    assert_eq!(key, expected.as_bytes());
    assert_eq!(record.key.as_deref(), Some(expected.as_bytes()));
    assert_eq!(record.value.as_deref(), Some(&b"{\"b\":2}"[..]));
    assert_eq!(record.headers[HEADER_REQUEST_ID], b"req-9");
    assert_eq!(record.headers[HEADER_TABLE], b"events");
    assert_eq!(record.timestamp.timestamp_millis(), 1_700_000_000_123);
    let (_, dead) = &by_topic["hydrant.dead_letter.none"][0];
    assert_eq!(dead.headers[HEADER_TABLE], b"dead_letter");
    assert_eq!(dead.value.as_deref(), Some(&b"{\"c\":3}"[..]));
}

/// An event over `max_batch_bytes` becomes parts that each fit a batch, keyed
/// apart for compaction yet sent to the event's partition, that put the line
/// back together; values in keys are encoded so that none merge.
#[tokio::test]
async fn large_events_become_parts_and_keys_stay_apart() {
    let mut config = KafkaConfig::new(vec!["127.0.0.1:1".into()]);
    config.max_batch_bytes = MIN_MAX_BATCH_BYTES;
    config.key = "{request_id}/{log_group}".into();
    let sink = KafkaSink::connect(config).await.unwrap();
    let line: Vec<u8> = (0..50_000_u32)
        .map(|n| b"abcdefgh"[(n % 8) as usize])
        .collect();
    let mut bytes = line.clone();
    bytes.push(b'\n');
    let batch = |request_id: &str, log_group: &str| SinkBatch {
        delivery: Arc::new(Delivery {
            request_id: request_id.into(),
            ..Delivery::default()
        }),
        dedup_key: crate::sink::dedup::DeliveryKey::new(None, request_id),
        events: EventLines::single(
            bytes::Bytes::from(bytes.clone()),
            vec![EventMeta {
                end: bytes.len(),
                kind: "log",
                log_group: Some(Arc::from(log_group)),
                ..EventMeta::default()
            }],
        ),
        dead_letters: EventLines::default(),
    };
    let records = sink.records_by_topic(&batch("a/b", "c")).unwrap().by_topic;
    let parts = &records["hydrant-events"];
    assert!(
        parts.len() > 50_000 / MIN_MAX_BATCH_BYTES,
        "{}",
        parts.len()
    );
    let mut rebuilt = Vec::new();
    for (index, (partition_key, part)) in parts.iter().enumerate() {
        assert_eq!(partition_key, b"a%2Fb/c");
        assert!(BATCH_OVERHEAD_BYTES + record_bytes(part) <= MIN_MAX_BATCH_BYTES);
        let room = parts[0].1.value.as_ref().unwrap().len();
        assert_eq!(
            part.key.as_deref(),
            Some(format!("a%2Fb/c%part:{room}:{index}").as_bytes())
        );
        assert_eq!(part.headers[HEADER_PART], index.to_string().as_bytes());
        assert_eq!(
            part.headers[HEADER_PARTS],
            parts.len().to_string().as_bytes()
        );
        assert_eq!(part.headers[HEADER_KEY], b"a%2Fb/c");
        rebuilt.extend_from_slice(part.value.as_deref().unwrap());
    }
    assert_eq!(rebuilt, line);
    let other = sink.records_by_topic(&batch("a", "b/c")).unwrap().by_topic;
    assert_eq!(other["hydrant-events"][0].0, b"a/b%2Fc");
}

#[tokio::test]
async fn a_missing_broker_fails_the_commit_and_probe_not_the_start() {
    // Port 1 on localhost: nothing listens, connections are refused at once.
    let mut config = KafkaConfig::new(vec!["127.0.0.1:1".into()]);
    config.timeout_ms = 300;
    let sink = KafkaSink::connect(config)
        .await
        .expect("starts without a broker");
    let batch = SinkBatch {
        delivery: Arc::new(Delivery::default()),
        dedup_key: crate::sink::dedup::DeliveryKey::new(None, "k"),
        events: EventLines::single(
            bytes::Bytes::from_static(b"{}\n"),
            vec![EventMeta {
                end: 3,
                kind: "record",
                ..EventMeta::default()
            }],
        ),
        dead_letters: EventLines::default(),
    };
    let error = sink.commit(&batch).await.unwrap_err();
    assert!(
        matches!(&error, SinkError::Unavailable(message) if message.contains("hydrant-events")),
        "{error:?}"
    );
    let error = sink.probe().await.unwrap_err();
    assert!(matches!(error, SinkError::Unavailable(_)), "{error:?}");
    assert!(
        sink.connection.lock().await.is_none(),
        "nothing cached after a failure"
    );
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_at_connect() {
    let error = KafkaSink::connect(KafkaConfig::new(Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SinkError::Config(message) if message.contains("brokers")),
        "{error:?}"
    );
}
