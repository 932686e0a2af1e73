//! Routing: which sinks each event goes to.
//!
//! A route matches on facts of the delivery (URL path, delivery stream, source ARN,
//! access-key name, common attributes) and of the event (kind, format, log group,
//! metric namespace, EventBridge source and detail-type), and names one or more
//! sinks. Routes are tried in order; the first that matches decides, unless it says
//! `continue`, in which case its sinks are added and the following routes are tried
//! too. An event that no route matches goes to the default sinks, or, without a
//! default, is dropped and counted — never silently lost.
//!
//! Routing is a pure function of those facts. The delivery-level half is evaluated
//! once per request ([`Router::for_request`]), so per event only the event-level
//! predicates of the remaining routes are checked.

use crate::event::lines::{EventLines, EventMeta, LineChunk};
pub use crate::event::lines::{MAX_SINKS, SinkSet};
use crate::event::{CommonAttributes, EventFormat, Kind};
use crate::glob::Glob;

/// Event kinds a route can name.
pub const KINDS: [&str; 4] = Kind::NAMES;

/// Event formats a route can name: every value the decoders write in an event's
/// `format` (docs/events.md). Log lines and records: `json`, `text`, `binary`,
/// `cloudtrail`, `eventbridge`, `vpc_flow`; dead letters: the format that was tried
/// (`cloudwatch_logs`, `cloudwatch_logs_messages`, `metric_stream_json`,
/// `metric_stream_otel`, or `metric_stream_otel07`/`metric_stream_otel10` when that
/// version is configured, `eventbridge`, `vpc_flow`), or `gzip` and `base64` when
/// the record could not even be read. Metric events have no format. A test decodes
/// one record of each and checks the list against what came out.
pub const EVENT_FORMATS: [&str; 14] = EventFormat::NAMES;

/// The facts of a delivery that routes can match, known before decoding.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// URL path.
    pub path: &'a str,
    /// Delivery stream name, from the source ARN.
    pub delivery_stream: Option<&'a str>,
    /// The source ARN.
    pub source_arn: Option<&'a str>,
    /// Name of the access key that authenticated the delivery.
    pub access_key: Option<&'a str>,
    /// The stream's common attributes.
    pub common_attributes: &'a CommonAttributes,
}

/// The facts of one event that routes can match.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFacts<'a> {
    /// `log`, `metric`, `record` or `dead_letter`.
    pub kind: &'a str,
    /// The event's `format` (`cloudtrail`, `eventbridge`, `vpc_flow`, `json`…).
    pub format: Option<&'a str>,
    /// CloudWatch Logs log group.
    pub log_group: Option<&'a str>,
    /// Metric namespace.
    pub namespace: Option<&'a str>,
    /// EventBridge `source`.
    pub source: Option<&'a str>,
    /// EventBridge `detail-type`.
    pub detail_type: Option<&'a str>,
}

/// What a route matches. Every predicate given must hold; an absent one matches
/// anything. An event-level predicate never matches an event without that fact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    /// URL path glob.
    pub path: Option<Glob>,
    /// Delivery stream name glob.
    pub delivery_stream: Option<Glob>,
    /// Source ARN glob.
    pub source_arn: Option<Glob>,
    /// Access-key name glob.
    pub access_key: Option<Glob>,
    /// Common attributes that must be present with a value matching the glob.
    pub common_attributes: Vec<(String, Glob)>,
    /// Event kinds (any of them).
    pub kinds: Vec<String>,
    /// Event formats (any of them).
    pub formats: Vec<String>,
    /// Log group glob.
    pub log_group: Option<Glob>,
    /// Metric namespace glob.
    pub namespace: Option<Glob>,
    /// EventBridge source glob.
    pub source: Option<Glob>,
    /// EventBridge detail-type glob.
    pub detail_type: Option<Glob>,
}

impl Match {
    fn matches_request(&self, request: &RequestFacts<'_>) -> bool {
        glob_matches(self.path.as_ref(), Some(request.path))
            && glob_matches(self.delivery_stream.as_ref(), request.delivery_stream)
            && glob_matches(self.source_arn.as_ref(), request.source_arn)
            && glob_matches(self.access_key.as_ref(), request.access_key)
            && self.common_attributes.iter().all(|(name, glob)| {
                request
                    .common_attributes
                    .get(name)
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|value| glob.matches(value))
            })
    }

    fn matches_event(&self, event: &EventFacts<'_>) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|kind| kind == event.kind))
            && (self.formats.is_empty()
                || event
                    .format
                    .is_some_and(|format| self.formats.iter().any(|f| f == format)))
            && glob_matches(self.log_group.as_ref(), event.log_group)
            && glob_matches(self.namespace.as_ref(), event.namespace)
            && glob_matches(self.source.as_ref(), event.source)
            && glob_matches(self.detail_type.as_ref(), event.detail_type)
    }
}

fn glob_matches(glob: Option<&Glob>, value: Option<&str>) -> bool {
    glob.is_none_or(|glob| value.is_some_and(|value| glob.matches(value)))
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Name, for logs and errors.
    pub name: String,
    /// What the route matches.
    pub matcher: Match,
    /// Where matching events go.
    pub sinks: SinkSet,
    /// Keep trying the following routes after this one matched.
    pub continue_matching: bool,
}

/// The routing table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Router {
    /// Routes, in order.
    pub routes: Vec<Route>,
    /// Where events no route matched go; empty: dropped and counted.
    pub default_sinks: SinkSet,
}

impl Router {
    /// A table sending everything to `sinks`.
    #[must_use]
    pub fn everything_to(sinks: SinkSet) -> Self {
        Self {
            routes: Vec::new(),
            default_sinks: sinks,
        }
    }

    /// The routes that can apply to events of this delivery.
    #[must_use]
    pub fn for_request(&self, request: &RequestFacts<'_>) -> RequestRouter<'_> {
        RequestRouter {
            routes: self
                .routes
                .iter()
                .filter(|route| route.matcher.matches_request(request))
                .collect(),
            default_sinks: self.default_sinks,
        }
    }

    /// Every sink some route or the default sends to.
    #[must_use]
    pub fn used_sinks(&self) -> SinkSet {
        let mut used = self.default_sinks;
        for route in &self.routes {
            used.extend(route.sinks);
        }
        used
    }
}

/// The routing table narrowed to one delivery.
#[derive(Debug)]
pub struct RequestRouter<'a> {
    routes: Vec<&'a Route>,
    default_sinks: SinkSet,
}

impl RequestRouter<'_> {
    /// The sinks an event goes to; empty when it is to be dropped.
    #[must_use]
    pub fn route(&self, event: &EventFacts<'_>) -> SinkSet {
        let mut sinks = SinkSet::default();
        let mut matched = false;
        for route in &self.routes {
            if route.matcher.matches_event(event) {
                matched = true;
                sinks.extend(route.sinks);
                if !route.continue_matching {
                    return sinks;
                }
            }
        }
        if matched { sinks } else { self.default_sinks }
    }

    /// Every sink an event of this delivery may be routed to, known before
    /// decoding: the fixed answer when there is one, else every sink a remaining
    /// route names plus the default sinks. Never smaller than the set the events
    /// will really go to.
    #[must_use]
    pub fn candidates(&self) -> SinkSet {
        if let Some(fixed) = self.fixed() {
            return fixed;
        }
        let mut all = self.default_sinks;
        for route in &self.routes {
            all.extend(route.sinks);
        }
        all
    }

    /// Whether every event of this delivery goes to the same sinks whatever it is
    /// (no route with event-level predicates remains), and which.
    #[must_use]
    pub fn fixed(&self) -> Option<SinkSet> {
        let event_free = self
            .routes
            .iter()
            .all(|route| route.matcher.matches_event_always());
        if !event_free {
            return None;
        }
        Some(self.route(&EventFacts::default()))
    }
}

impl Match {
    fn matches_event_always(&self) -> bool {
        self.kinds.is_empty()
            && self.formats.is_empty()
            && self.log_group.is_none()
            && self.namespace.is_none()
            && self.source.is_none()
            && self.detail_type.is_none()
    }
}

impl EventLines {
    /// Splits the lines by the sinks their events are routed to. Returns each sink's
    /// lines (the same bytes shared, not copied, when every event goes to the same
    /// sinks), the number of events routed nowhere, which are dropped, and how many
    /// bytes the split copies hold beyond the lines' own size (they are held until
    /// the sinks have them).
    #[must_use]
    pub fn route(mut self, router: &RequestRouter<'_>) -> (Vec<(usize, EventLines)>, usize, usize) {
        let fixed = router.fixed();
        let mut union = SinkSet::default();
        let mut uniform = true;
        let mut dropped = 0;
        for meta in self
            .chunks
            .iter_mut()
            .flat_map(|chunk| chunk.metas.iter_mut())
        {
            meta.sinks = match fixed {
                Some(sinks) => sinks,
                None => router.route(&EventFacts {
                    kind: meta.kind,
                    format: meta.format,
                    log_group: meta.log_group.as_deref(),
                    namespace: meta.namespace.as_deref(),
                    source: meta.source.as_deref(),
                    detail_type: meta.detail_type.as_deref(),
                }),
            };
            uniform &= union.is_empty() || meta.sinks == union;
            union.extend(meta.sinks);
            dropped += usize::from(meta.sinks.is_empty());
        }
        if self.is_empty() || union.is_empty() {
            return (Vec::new(), dropped, 0);
        }
        if uniform && dropped == 0 {
            // Every sink shares the bytes; the last one takes the metadata too.
            let mut sinks: Vec<usize> = union.iter().collect();
            let last = sinks.pop().expect("the union is not empty");
            let mut shared: Vec<(usize, EventLines)> =
                sinks.into_iter().map(|sink| (sink, self.clone())).collect();
            shared.push((last, self));
            return (shared, 0, 0);
        }
        let per_sink: Vec<(usize, EventLines)> = union
            .iter()
            .map(|sink| {
                let chunks = self
                    .chunks
                    .iter()
                    .map(|chunk| {
                        let mut bytes = Vec::new();
                        let mut metas = Vec::new();
                        for (meta, line) in chunk.iter() {
                            if meta.sinks.contains(sink) {
                                bytes.extend_from_slice(line);
                                bytes.push(b'\n');
                                metas.push(EventMeta {
                                    end: bytes.len(),
                                    ..meta.clone()
                                });
                            }
                        }
                        LineChunk {
                            bytes: bytes.into(),
                            metas,
                        }
                    })
                    .filter(|chunk| !chunk.metas.is_empty())
                    .collect();
                (sink, EventLines { chunks })
            })
            .collect();
        let copies: usize = per_sink.iter().map(|(_, lines)| lines.byte_len()).sum();
        (per_sink, dropped, copies.saturating_sub(self.byte_len()))
    }
}

#[cfg(test)]
mod tests {
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
        let (per_sink, dropped, copied) = lines.clone().route(&router.for_request(&request));
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
        let (per_sink, _, copied) = lines.clone().route(&everything.for_request(&request));
        assert_eq!(copied, 0, "shared");
        assert_eq!(per_sink.len(), 2);
        assert_eq!(
            per_sink[0].1.chunks[0].bytes.as_ptr(),
            lines.chunks[0].bytes.as_ptr(),
            "shared, not copied"
        );

        let nowhere = Router::default();
        let (per_sink, dropped, _) = lines.route(&nowhere.for_request(&request));
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
}
