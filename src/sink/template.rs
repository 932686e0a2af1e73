//! Templates for object keys, NATS subjects and Kafka topics and keys:
//! text with `{placeholder}`s filled from the delivery and the event.
//!
//! | Placeholder | Value |
//! |---|---|
//! | `{request_id}` | the Firehose request id |
//! | `{delivery_stream}`, `{account_id}`, `{region}` | from the source ARN |
//! | `{access_key}` | the access key's name |
//! | `{path}` | the URL path, without its leading `/` |
//! | `{date}`, `{hour}` | when Hydrant received the delivery, UTC: `YYYY-MM-DD`, `HH` |
//! | `{table}` | `events` or `dead_letter` |
//! | `{kind}`, `{format}` | the event's kind and format |
//! | `{log_group}`, `{namespace}`, `{source}`, `{detail_type}` | the event's log group, metric namespace, EventBridge source and detail-type |
//! | `{record_index}`, `{event_index}` | the event's record, and its position among that record's events |
//!
//! A value that is absent renders as `none`. Each sink cleans values for its medium
//! (a NATS subject cannot hold `.` or spaces inside a token, a Kafka topic only
//! `[A-Za-z0-9._-]`), see [`Template::render`]'s `clean`.

use crate::clock::UtcTime;
use crate::event::Delivery;

use super::EventMeta;

/// Rendered for an absent value.
pub const ABSENT: &str = "none";

/// Every placeholder name.
pub const PLACEHOLDERS: [&str; 16] = [
    "request_id",
    "delivery_stream",
    "account_id",
    "region",
    "access_key",
    "path",
    "date",
    "hour",
    "table",
    "kind",
    "format",
    "log_group",
    "namespace",
    "source",
    "detail_type",
    "record_index",
];

const EVENT_INDEX: &str = "event_index";

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder(String),
}

impl Template {
    /// Parses `text`.
    ///
    /// # Errors
    ///
    /// An unknown placeholder or an unclosed `{`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("template {text:?}: unclosed '{{'"))?;
            let name = &rest[open + 1..open + close];
            if !PLACEHOLDERS.contains(&name) && name != EVENT_INDEX {
                return Err(format!(
                    "template {text:?}: unknown placeholder {{{name}}}; known: {}, {EVENT_INDEX}",
                    PLACEHOLDERS.join(", ")
                ));
            }
            parts.push(Part::Placeholder(name.to_owned()));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Whether the template uses a per-event value (so one delivery may render to
    /// several values).
    #[must_use]
    pub fn is_per_event(&self) -> bool {
        self.parts.iter().any(|part| {
            matches!(part, Part::Placeholder(name) if matches!(name.as_str(),
                "kind" | "format" | "log_group" | "namespace" | "source" | "detail_type" | "record_index" | "event_index"))
        })
    }

    /// Renders the template. Values are passed through `clean` (literal text is not).
    #[must_use]
    pub fn render(
        &self,
        delivery: &Delivery,
        table: &str,
        event: Option<&EventMeta>,
        clean: impl Fn(&str) -> String,
    ) -> String {
        let mut out = String::new();
        let time = UtcTime::from_ms(delivery.received_at);
        for part in &self.parts {
            let name = match part {
                Part::Text(text) => {
                    out.push_str(text);
                    continue;
                }
                Part::Placeholder(name) => name.as_str(),
            };
            let value: Option<String> = match name {
                "request_id" => Some(delivery.request_id.clone()),
                "delivery_stream" => delivery.delivery_stream.clone(),
                "account_id" => delivery.account_id.clone(),
                "region" => delivery.region.clone(),
                "access_key" => delivery.access_key_name.clone(),
                "path" => Some(delivery.path.trim_start_matches('/').to_owned())
                    .filter(|path| !path.is_empty()),
                "date" => Some(format!(
                    "{:04}-{:02}-{:02}",
                    time.year, time.month, time.day
                )),
                "hour" => Some(format!("{:02}", time.hour)),
                "table" => Some(table.to_owned()),
                "kind" => event.map(|event| event.kind.to_owned()),
                "format" => event.and_then(|event| event.format).map(str::to_owned),
                "log_group" => event
                    .and_then(|event| event.log_group.as_deref())
                    .map(str::to_owned),
                "namespace" => event
                    .and_then(|event| event.namespace.as_deref())
                    .map(str::to_owned),
                "source" => event
                    .and_then(|event| event.source.as_deref())
                    .map(str::to_owned),
                "detail_type" => event
                    .and_then(|event| event.detail_type.as_deref())
                    .map(str::to_owned),
                "record_index" => event.map(|event| event.record_index.to_string()),
                _ => event.map(|event| event.event_index.to_string()),
            };
            out.push_str(&clean(value.as_deref().unwrap_or(ABSENT)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn delivery() -> Delivery {
        Delivery {
            request_id: "req-1".into(),
            received_at: 1_700_000_000_123,
            delivery_stream: Some("logs-prod".into()),
            account_id: Some("123456789012".into()),
            region: Some("eu-west-1".into()),
            access_key_name: Some("prod".into()),
            path: "/firehose/logs".into(),
            ..Delivery::default()
        }
    }

    #[test]
    fn renders_placeholders() {
        let event = EventMeta {
            end: 0,
            record_index: 3,
            event_index: 7,
            kind: "log",
            format: Some("json"),
            log_group: Some(Arc::from("/aws/lambda/f")),
            namespace: None,
            source: None,
            detail_type: None,
            sinks: crate::routing::SinkSet::default(),
        };
        let table = [
            (
                "{table}/dt={date}/hour={hour}/{delivery_stream}/{request_id}.ndjson.gz",
                "events/dt=2023-11-14/hour=22/logs-prod/req-1.ndjson.gz",
            ),
            ("hydrant.{kind}.{log_group}", "hydrant.log./aws/lambda/f"),
            ("{request_id}:{record_index}:{event_index}", "req-1:3:7"),
            (
                "{namespace}-{path}-{access_key}-{account_id}-{region}-{format}",
                "none-firehose/logs-prod-123456789012-eu-west-1-json",
            ),
            ("literal", "literal"),
        ];
        for (text, expected) in table {
            let template = Template::parse(text).unwrap();
            assert_eq!(
                template.render(&delivery(), "events", Some(&event), str::to_owned),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn cleaning_applies_to_values_only() {
        let template = Template::parse("hydrant.{log_group}").unwrap();
        let event = EventMeta {
            log_group: Some(Arc::from("/aws/lambda/my fn")),
            ..EventMeta::default()
        };
        let clean = |value: &str| value.replace(['.', ' ', '/'], "_");
        assert_eq!(
            template.render(&delivery(), "events", Some(&event), clean),
            "hydrant._aws_lambda_my_fn"
        );
    }

    #[test]
    fn per_event_templates_are_recognised() {
        assert!(Template::parse("a.{log_group}").unwrap().is_per_event());
        assert!(
            !Template::parse("{table}/{request_id}")
                .unwrap()
                .is_per_event()
        );
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(
            Template::parse("{nope}")
                .unwrap_err()
                .contains("unknown placeholder {nope}")
        );
        assert!(Template::parse("a.{kind").unwrap_err().contains("unclosed"));
    }
}
