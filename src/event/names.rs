//! The names events carry: each event's `kind`, and the `format` values of events,
//! dead letters and the records-decoded metrics. Each name is spelled once, here;
//! decoders, routes, configuration checks and metric labels take it from
//! [`Kind::as_str`] and [`EventFormat::as_str`], so a name written to storage and a
//! name a route matches cannot drift apart.

use serde::{Serialize, Serializer};

/// An event's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A log event (CloudWatch Logs, message lines, direct VPC flow logs).
    Log,
    /// A metric data point (Metric Streams).
    Metric,
    /// A record stored as it came (EventBridge events, raw records).
    Record,
    /// A record that could not be decoded.
    DeadLetter,
}

impl Kind {
    /// Every kind, in the order configuration errors list them.
    pub const ALL: [Self; 4] = [Self::Log, Self::Metric, Self::Record, Self::DeadLetter];

    /// Every kind's name, in [`Kind::ALL`] order.
    pub const NAMES: [&'static str; 4] = {
        let mut names = [""; 4];
        let mut at = 0;
        while at < names.len() {
            names[at] = Self::ALL[at].as_str();
            at += 1;
        }
        names
    };

    /// The name written in the event's `kind` field.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Metric => "metric",
            Self::Record => "record",
            Self::DeadLetter => "dead_letter",
        }
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An event's `format`: what a log message, record or dead letter was read as. The
/// records-decoded and dead-letter metrics are labelled with the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventFormat {
    /// JSON (a log message or a raw record).
    Json,
    /// UTF-8 text.
    Text,
    /// Anything else, stored in base64.
    Binary,
    /// A CloudTrail record (log message or EventBridge event).
    Cloudtrail,
    /// An EventBridge event.
    Eventbridge,
    /// A VPC flow log line.
    VpcFlow,
    /// A CloudWatch Logs subscription envelope.
    CloudwatchLogs,
    /// Bare log message lines (Firehose's message extraction).
    CloudwatchLogsMessages,
    /// Metric Streams, JSON format.
    MetricStreamJson,
    /// Metric Streams, OpenTelemetry (either version).
    MetricStreamOtel,
    /// Metric Streams, OpenTelemetry 0.7.0 as configured.
    MetricStreamOtel07,
    /// Metric Streams, OpenTelemetry 1.0.0 as configured.
    MetricStreamOtel10,
    /// A record that looked like gzip but could not be inflated.
    Gzip,
    /// A record whose `data` was not valid base64.
    Base64,
}

impl EventFormat {
    /// Every format, in the order configuration errors list them.
    pub const ALL: [Self; 14] = [
        Self::Json,
        Self::Text,
        Self::Binary,
        Self::Cloudtrail,
        Self::Eventbridge,
        Self::VpcFlow,
        Self::CloudwatchLogs,
        Self::CloudwatchLogsMessages,
        Self::MetricStreamJson,
        Self::MetricStreamOtel,
        Self::MetricStreamOtel07,
        Self::MetricStreamOtel10,
        Self::Gzip,
        Self::Base64,
    ];

    /// Every format's name, in [`EventFormat::ALL`] order.
    pub const NAMES: [&'static str; 14] = {
        let mut names = [""; 14];
        let mut at = 0;
        while at < names.len() {
            names[at] = Self::ALL[at].as_str();
            at += 1;
        }
        names
    };

    /// The name written in the event's `format` field and in metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
            Self::Binary => "binary",
            Self::Cloudtrail => "cloudtrail",
            Self::Eventbridge => "eventbridge",
            Self::VpcFlow => "vpc_flow",
            Self::CloudwatchLogs => "cloudwatch_logs",
            Self::CloudwatchLogsMessages => "cloudwatch_logs_messages",
            Self::MetricStreamJson => "metric_stream_json",
            Self::MetricStreamOtel => "metric_stream_otel",
            Self::MetricStreamOtel07 => "metric_stream_otel07",
            Self::MetricStreamOtel10 => "metric_stream_otel10",
            Self::Gzip => "gzip",
            Self::Base64 => "base64",
        }
    }
}

impl Serialize for EventFormat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for EventFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables list every variant once, so every name is distinct and serialises
    /// as itself.
    #[test]
    fn names_are_distinct_and_serialise_as_written() {
        let kinds: std::collections::BTreeSet<_> = Kind::NAMES.into_iter().collect();
        assert_eq!(kinds.len(), Kind::ALL.len());
        let formats: std::collections::BTreeSet<_> = EventFormat::NAMES.into_iter().collect();
        assert_eq!(formats.len(), EventFormat::ALL.len());
        for kind in Kind::ALL {
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
        for format in EventFormat::ALL {
            assert_eq!(
                serde_json::to_string(&format).unwrap(),
                format!("\"{format}\"")
            );
        }
        assert_eq!(Kind::NAMES, ["log", "metric", "record", "dead_letter"]);
    }
}
