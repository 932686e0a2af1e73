use super::*;
use bytes::Bytes;

#[test]
fn routing_splits_lines_per_sink_and_shares_when_uniform() {
    let attributes = CommonAttributes::new();
    let request = RequestFacts {
        path: "/",
        delivery_stream: None,
        source_arn: None,
        access_key: None,
        common_attributes: &attributes,
    };
    let lines = EventLines::single(
        Bytes::from_static(b"log1\nmetric\nlog2\n"),
        vec![
            EventMeta {
                end: 5,
                kind: "log",
                ..EventMeta::default()
            },
            EventMeta {
                end: 12,
                kind: "metric",
                ..EventMeta::default()
            },
            EventMeta {
                end: 17,
                kind: "log",
                ..EventMeta::default()
            },
        ],
    );
    let router = Router {
        routes: vec![Route {
            name: "metrics".into(),
            matcher: Match {
                kinds: vec!["metric".into()],
                ..Match::default()
            },
            sinks: SinkSet::of(&[1, 2]),
            continue_matching: false,
        }],
        default_sinks: SinkSet::of(&[0]),
    };
    let Split {
        per_sink,
        dropped,
        copied,
    } = lines.clone().route(&router.for_request(&request));
    assert_eq!(dropped, 0);
    assert_eq!(copied, 7, "the metric line is held twice, once per sink");
    let text = |lines: &EventLines| String::from_utf8(lines.concat()).unwrap();
    assert_eq!(per_sink.len(), 3);
    assert_eq!(
        (per_sink[0].0, text(&per_sink[0].1)),
        (0, "log1\nlog2\n".to_owned())
    );
    assert_eq!(
        (per_sink[1].0, text(&per_sink[1].1)),
        (1, "metric\n".to_owned())
    );
    let metric = &per_sink[2].1.chunks[0].metas[0];
    assert_eq!(metric.end, 7);
    assert!(metric.sinks.contains(2));

    let everything = Router::everything_to(SinkSet::of(&[0, 1]));
    let Split {
        per_sink, copied, ..
    } = lines.clone().route(&everything.for_request(&request));
    assert_eq!(copied, 0, "shared");
    assert_eq!(per_sink.len(), 2);
    assert_eq!(
        per_sink[0].1.chunks[0].bytes.as_ptr(),
        lines.chunks[0].bytes.as_ptr(),
        "shared, not copied"
    );

    let nowhere = Router::default();
    let Split {
        per_sink, dropped, ..
    } = lines.route(&nowhere.for_request(&request));
    assert!(per_sink.is_empty());
    assert_eq!(dropped, 3);
}

/// [`EVENT_FORMATS`] is exactly what the decoders write: one record of each
/// kind, good and bad, through every format setting, and the formats of the
/// events and dead letters that come out.
#[test]
fn event_formats_are_what_the_decoders_write() {
    use std::borrow::Cow;
    use std::collections::BTreeSet;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use crate::decode::{DecodeSettings, Format, decode_records};
    use crate::event::Delivery;

    let vpc_line = "2 123456789012 eni-0a1b2c3d 10.0.0.1 10.0.0.2 443 49152 6 10 840 1620000000 1620000060 ACCEPT OK";
    let envelope = serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g", "logStream": "s",
        "subscriptionFilters": ["f"],
        "logEvents": [
            {"id": "1", "timestamp": 1, "message": "plain words"},
            {"id": "2", "timestamp": 1, "message": "{\"a\":1}"},
            {"id": "3", "timestamp": 1, "message": "{\"eventVersion\":\"1.08\",\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"GetObject\",\"awsRegion\":\"us-east-1\",\"eventTime\":\"2024-01-01T00:00:00Z\"}"},
            {"id": "4", "timestamp": 1, "message": vpc_line},
        ],
    })
    .to_string();
    let event = |detail_type: &str| {
        serde_json::json!({
            "version": "0", "id": "1", "detail-type": detail_type, "source": "aws.x",
            "account": "1", "time": "t", "region": "r", "resources": [], "detail": {},
        })
        .to_string()
    };
    let b64 = |bytes: &[u8]| STANDARD.encode(bytes);
    let cases: Vec<(Format, String)> = vec![
        (Format::Auto, b64(br#"{"a":1}"#)),
        (Format::Auto, b64(b"hello")),
        (Format::Auto, b64(&[0xff, 0x00, 0x01])),
        (Format::Auto, b64(event("Some Change").as_bytes())),
        (
            Format::Auto,
            b64(event(crate::decode::cloudtrail::EVENTBRIDGE_DETAIL_TYPE).as_bytes()),
        ),
        (Format::Auto, b64(envelope.as_bytes())),
        (Format::VpcFlow, b64(vpc_line.as_bytes())),
        (Format::Auto, "@@not base64@@".to_owned()),
        (Format::Auto, b64(&[0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad])),
        (Format::CloudwatchLogs, b64(b"not an envelope")),
        (Format::CloudwatchLogsMessages, b64(&[0xff, 0xfe])),
        (Format::MetricStreamJson, b64(b"not metrics")),
        (Format::MetricStreamOtel07, b64(&[0xff, 0xff, 0xff])),
        (Format::MetricStreamOtel10, b64(&[0xff, 0xff, 0xff])),
        // Looks like OpenTelemetry (a length, then field 1), but field 1 runs
        // past the end.
        (Format::Auto, b64(&[0x04, 0x0a, 0x05, 0x01, 0x02])),
        (Format::Eventbridge, b64(b"not an event")),
        (Format::VpcFlow, b64(b"not a flow log line")),
    ];
    let mut seen = BTreeSet::new();
    for (format, record) in cases {
        let settings = DecodeSettings {
            default_format: format,
            ..DecodeSettings::default()
        };
        let decoded = decode_records(
            &[Cow::Owned(record.clone())],
            &Delivery::default(),
            &settings,
        )
        .unwrap();
        for (meta, _) in decoded.events.iter().chain(decoded.dead_letters.iter()) {
            if let Some(format) = meta.format {
                seen.insert(format);
            }
        }
    }
    let listed: BTreeSet<&str> = EVENT_FORMATS.into_iter().collect();
    assert_eq!(seen, listed);
}

const FILE: usize = 0;
const S3: usize = 1;
const NATS: usize = 2;
const SECURITY: usize = 3;

fn route(name: &str, matcher: Match, sinks: &[usize], continue_matching: bool) -> Route {
    Route {
        name: name.into(),
        matcher,
        sinks: SinkSet::of(sinks),
        continue_matching,
    }
}

fn router() -> Router {
    Router {
        routes: vec![
            route(
                "cloudtrail to security, and keep going",
                Match {
                    formats: vec!["cloudtrail".into()],
                    ..Match::default()
                },
                &[SECURITY],
                true,
            ),
            route(
                "metrics from the metrics path",
                Match {
                    path: Some(Glob::new("/metrics/*")),
                    kinds: vec!["metric".into()],
                    ..Match::default()
                },
                &[NATS],
                false,
            ),
            route(
                "lambda logs of prod",
                Match {
                    log_group: Some(Glob::new("/aws/lambda/*")),
                    common_attributes: vec![("env".into(), Glob::new("prod"))],
                    ..Match::default()
                },
                &[S3, FILE],
                false,
            ),
            route(
                "alarms",
                Match {
                    source: Some(Glob::new("aws.cloudwatch")),
                    detail_type: Some(Glob::new("*Alarm State Change")),
                    ..Match::default()
                },
                &[NATS],
                false,
            ),
            route(
                "partner key",
                Match {
                    access_key: Some(Glob::new("partner-*")),
                    delivery_stream: Some(Glob::new("shared-*")),
                    ..Match::default()
                },
                &[S3],
                false,
            ),
        ],
        default_sinks: SinkSet::of(&[FILE]),
    }
}

/// One row per case: delivery facts, event facts, expected sinks.
#[test]
fn routing_table() {
    let prod: CommonAttributes = [("env".to_owned(), "prod".into())].into_iter().collect();
    let dev: CommonAttributes = [("env".to_owned(), "dev".into())].into_iter().collect();
    let request = |path, stream, key, attributes| RequestFacts {
        path,
        delivery_stream: stream,
        source_arn: None,
        access_key: key,
        common_attributes: attributes,
    };
    let log = |group, format| EventFacts {
        kind: "log",
        format: Some(format),
        log_group: Some(group),
        ..EventFacts::default()
    };
    let metric = EventFacts {
        kind: "metric",
        namespace: Some("AWS/EC2"),
        ..EventFacts::default()
    };
    let alarm = EventFacts {
        kind: "record",
        format: Some("eventbridge"),
        source: Some("aws.cloudwatch"),
        detail_type: Some("CloudWatch Alarm State Change"),
        ..EventFacts::default()
    };
    let table: Vec<(&str, RequestFacts<'_>, EventFacts<'_>, &[usize])> = vec![
        (
            "metric on metrics path",
            request("/metrics/x", None, None, &dev),
            metric,
            &[NATS],
        ),
        (
            "metric elsewhere: default",
            request("/logs", None, None, &dev),
            metric,
            &[FILE],
        ),
        (
            "prod lambda log",
            request("/logs", None, None, &prod),
            log("/aws/lambda/f", "text"),
            &[S3, FILE],
        ),
        (
            "dev lambda log: default",
            request("/logs", None, None, &dev),
            log("/aws/lambda/f", "text"),
            &[FILE],
        ),
        (
            "prod cloudtrail in lambda group: both",
            request("/logs", None, None, &prod),
            log("/aws/lambda/f", "cloudtrail"),
            &[SECURITY, S3, FILE],
        ),
        (
            "cloudtrail elsewhere: security + default",
            request("/logs", None, None, &dev),
            log("/trail", "cloudtrail"),
            &[SECURITY],
        ),
        (
            "alarm",
            request("/events", None, None, &dev),
            alarm,
            &[NATS],
        ),
        (
            "partner on shared stream",
            request("/p", Some("shared-1"), Some("partner-a"), &dev),
            EventFacts {
                kind: "record",
                ..EventFacts::default()
            },
            &[S3],
        ),
        (
            "partner elsewhere",
            request("/p", Some("own"), Some("partner-a"), &dev),
            EventFacts {
                kind: "record",
                ..EventFacts::default()
            },
            &[FILE],
        ),
        (
            "event without the fact never matches its predicate",
            request("/logs", None, None, &prod),
            EventFacts {
                kind: "log",
                ..EventFacts::default()
            },
            &[FILE],
        ),
    ];
    let router = router();
    for (name, request, event, expected) in table {
        let routes = router.for_request(&request);
        assert_eq!(routes.route(&event), SinkSet::of(expected), "{name}");
        let mut covered = routes.candidates();
        covered.extend(SinkSet::of(expected));
        assert_eq!(covered, routes.candidates(), "{name}: candidates cover it");
    }
    let partner = router.for_request(&request("/p", Some("shared-1"), Some("partner-a"), &dev));
    assert_eq!(
        partner.candidates(),
        SinkSet::of(&[SECURITY, NATS, S3, FILE]),
        "event-level routes remain: all they name, and the default"
    );
}

#[test]
fn without_a_default_unmatched_events_are_dropped() {
    let router = Router {
        routes: vec![route(
            "metrics",
            Match {
                kinds: vec!["metric".into()],
                ..Match::default()
            },
            &[NATS],
            false,
        )],
        default_sinks: SinkSet::default(),
    };
    let attributes = CommonAttributes::new();
    let request = RequestFacts {
        path: "/",
        delivery_stream: None,
        source_arn: None,
        access_key: None,
        common_attributes: &attributes,
    };
    let routes = router.for_request(&request);
    assert!(
        routes
            .route(&EventFacts {
                kind: "log",
                ..EventFacts::default()
            })
            .is_empty()
    );
    assert_eq!(
        routes.route(&EventFacts {
            kind: "metric",
            ..EventFacts::default()
        }),
        SinkSet::of(&[NATS])
    );
    assert_eq!(routes.fixed(), None);
}

#[test]
fn request_only_routes_give_a_fixed_answer() {
    let router = Router {
        routes: vec![route(
            "by path",
            Match {
                path: Some(Glob::new("/a")),
                ..Match::default()
            },
            &[S3],
            false,
        )],
        default_sinks: SinkSet::of(&[FILE]),
    };
    let attributes = CommonAttributes::new();
    let facts = |path| RequestFacts {
        path,
        delivery_stream: None,
        source_arn: None,
        access_key: None,
        common_attributes: &attributes,
    };
    assert_eq!(
        router.for_request(&facts("/a")).fixed(),
        Some(SinkSet::of(&[S3]))
    );
    assert_eq!(
        router.for_request(&facts("/b")).fixed(),
        Some(SinkSet::of(&[FILE]))
    );
    assert_eq!(
        router.for_request(&facts("/a")).candidates(),
        SinkSet::of(&[S3]),
        "a fixed answer is exact"
    );
    assert_eq!(router.used_sinks(), SinkSet::of(&[S3, FILE]));
}

#[test]
fn sink_sets() {
    let mut set = SinkSet::of(&[0, 5, 63]);
    assert!(set.contains(5) && set.contains(63) && !set.contains(6));
    set.insert(6);
    assert_eq!(set.iter().collect::<Vec<_>>(), [0, 5, 6, 63]);
    assert!(SinkSet::default().is_empty());
    assert!(!SinkSet::default().contains(64));
}
