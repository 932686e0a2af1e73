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

/// A delivery's lines split by the sinks their events are routed to.
#[derive(Debug, Default)]
pub struct Split {
    /// Each sink's lines, by position (the same bytes shared, not copied, when
    /// every event goes to the same sinks).
    pub per_sink: Vec<(usize, EventLines)>,
    /// Events routed nowhere, which are dropped.
    pub dropped: usize,
    /// Bytes the split's copies hold beyond the lines' own size: they are held
    /// until the sinks have them, so they count against the in-flight budget.
    pub copied: usize,
}

impl EventLines {
    /// Splits the lines by the sinks their events are routed to.
    #[must_use]
    pub fn route(mut self, router: &RequestRouter<'_>) -> Split {
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
            return Split {
                dropped,
                ..Split::default()
            };
        }
        if uniform && dropped == 0 {
            // Every sink shares the bytes; the last one takes the metadata too.
            let mut sinks: Vec<usize> = union.iter().collect();
            let last = sinks.pop().expect("the union is not empty");
            let mut shared: Vec<(usize, EventLines)> =
                sinks.into_iter().map(|sink| (sink, self.clone())).collect();
            shared.push((last, self));
            return Split {
                per_sink: shared,
                ..Split::default()
            };
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
        Split {
            copied: copies.saturating_sub(self.byte_len()),
            per_sink,
            dropped,
        }
    }
}

#[cfg(test)]
mod tests;
