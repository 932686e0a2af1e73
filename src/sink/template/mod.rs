//! Templates for object keys, NATS subjects and Kafka topics and keys:
//! text with `{placeholder}`s filled from the delivery and the event.
//!
//! | Placeholder | Value |
//! |---|---|
//! | `{request_id}` | the Firehose request id |
//! | `{delivery_key}` | the delivery's key: 32 hex digits that stand for the source ARN and the request id together (see [`DeliveryKey`]) |
//! | `{delivery_stream}`, `{account_id}`, `{region}` | from the source ARN |
//! | `{access_key}` | the access key's name |
//! | `{path}` | the URL path, without its leading `/` |
//! | `{date}`, `{hour}` | when Hydrant received the delivery, UTC: `YYYY-MM-DD`, `HH` |
//! | `{table}` | `events` or `dead_letter` |
//! | `{kind}`, `{format}` | the event's kind and format |
//! | `{log_group}`, `{namespace}`, `{source}`, `{detail_type}` | the event's log group, metric namespace, EventBridge source and detail-type |
//! | `{record_index}`, `{event_index}` | the event's record, and its position among that record's events |
//!
//! A value that is absent renders as [`ABSENT`] (`none`). Each sink encodes present
//! values for its medium, see [`Template::render`]'s `clean`: NATS subject tokens
//! and Kafka topics are cleaned (lossy, they only route), while S3 object keys and
//! Kafka record keys, which identify what they name, use [`encode_key_value`], which
//! never gives two values the same text.

use prometheus::IntCounterVec;
use sha2::{Digest as _, Sha256};

use crate::clock::UtcTime;
use crate::event::Delivery;
use crate::metrics::Metrics;

use super::EventMeta;
use super::dedup::DeliveryKey;

/// Rendered for an absent value.
pub const ABSENT: &str = "none";

/// Every placeholder name.
pub const PLACEHOLDERS: [&str; 17] = [
    "request_id",
    "delivery_key",
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

/// Escape character of [`encode_key_value`]. Key templates may not hold it in
/// their text, so every `%` in a rendered key is one Hydrant wrote.
pub const KEY_ESCAPE: char = '%';
/// Hex digits of [`digest_hex`]: 128 bits of SHA-256, as in a [`DeliveryKey`].
pub const DIGEST_HEX_LEN: usize = DeliveryKey::HEX_LEN;
/// Bound on the rendered length of a placeholder whose values come from Hydrant
/// itself and have a fixed form (`{table}`, `{kind}`, `{format}`, `{date}`,
/// `{hour}`, the indexes, `{delivery_key}`): the longest of them is 32 bytes.
pub const FIXED_VALUE_MAX_BYTES: usize = 32;

/// Label value of `hydrant_sink_reshaped_total`: an event too large for one
/// message was sent as several parts.
pub const RESHAPE_SPLIT: &str = "split_event";
/// Label value of `hydrant_sink_reshaped_total`: a value too long for a subject
/// token or topic name was replaced by its digest.
pub const RESHAPE_HASHED_NAME: &str = "hashed_name";
/// Label value of `hydrant_sink_reshaped_total`: a record key or object key too
/// long (or not usable) for its service was replaced by its fixed-length form.
pub const RESHAPE_HASHED_KEY: &str = "hashed_key";

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

    /// Whether the template names the placeholder `name`.
    #[must_use]
    pub fn uses(&self, name: &str) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Placeholder(used) if used == name))
    }

    /// The template's literal text, without its placeholders.
    pub fn literal_text(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Text(text) => Some(text.as_str()),
            Part::Placeholder(_) => None,
        })
    }

    /// The longest the template can render when every value that does not have a
    /// fixed form is at most `value_max` bytes after cleaning.
    #[must_use]
    pub fn max_rendered_len(&self, value_max: usize) -> usize {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.len(),
                Part::Placeholder(name) if has_fixed_form(name) => {
                    FIXED_VALUE_MAX_BYTES.max(ABSENT.len())
                }
                Part::Placeholder(_) => value_max.max(ABSENT.len()),
            })
            .sum()
    }

    /// Renders the template for the delivery whose key is `key`. Present values are
    /// passed through `clean` (literal text is not); an absent value is written as
    /// [`ABSENT`] as it is, so a cleaning can tell it from a value `none`.
    #[must_use]
    pub fn render(
        &self,
        delivery: &Delivery,
        key: &DeliveryKey,
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
                "delivery_key" => Some(key.to_hex()),
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
            match value {
                Some(value) => out.push_str(&clean(&value)),
                None => out.push_str(ABSENT),
            }
        }
        out
    }
}

/// Whether the placeholder's values come from Hydrant in a fixed, short form.
fn has_fixed_form(name: &str) -> bool {
    matches!(
        name,
        "delivery_key" | "date" | "hour" | "table" | "kind" | "format" | "record_index"
    ) || name == EVENT_INDEX
}

/// Encodes a value for a key (an S3 object key, a Kafka record key) so that no two
/// values give the same text and the text holds no `/`:
///
/// - the bytes `A`–`Z`, `a`–`z`, `0`–`9`, `-`, `_` and `.` are kept, every other
///   byte of the value's UTF-8 is written `%XX` (upper-case hex), `%` itself too;
/// - a value that is `.` or `..` (a relative path segment) has its dots written
///   `%2E`, and a value that is [`ABSENT`] has its first letter written `%6E`, so it
///   differs from an absent value.
///
/// Decoding every `%XX` gives the value back, which is why the encoding is
/// injective. Request ids, stream names, dates and the other usual values consist
/// of kept bytes and read as they are.
#[must_use]
pub fn encode_key_value(value: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(value.len());
    let escape_all = value == "." || value == "..";
    for (position, byte) in value.bytes().enumerate() {
        let kept = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.');
        let forced = escape_all || (position == 0 && value == ABSENT);
        if kept && !forced {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "{KEY_ESCAPE}{byte:02X}");
        }
    }
    out
}

/// Checks that a key template's text leaves [`KEY_ESCAPE`] to the encoding.
///
/// # Errors
///
/// A reason naming the template when its text holds `%`.
pub fn check_key_template(template: &Template, text: &str) -> Result<(), String> {
    if template
        .literal_text()
        .any(|literal| literal.contains(KEY_ESCAPE))
    {
        return Err(format!(
            "template {text:?}: '{KEY_ESCAPE}' is reserved for the encoding of values and may not appear in the text"
        ));
    }
    Ok(())
}

/// The first 128 bits of the SHA-256 of `bytes`, as [`DIGEST_HEX_LEN`] lower-case
/// hex digits: a fixed-length stand-in for a value too long to use as it is.
#[must_use]
pub fn digest_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(DIGEST_HEX_LEN);
    for byte in &digest[..DIGEST_HEX_LEN / 2] {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Counts what a sink changed so that data fits its service (an event split into
/// parts, a name or key replaced by its digest), in `hydrant_sink_reshaped_total`
/// labelled with the sink, its type and a fixed action name. A counter made with
/// [`ReshapeCounter::default`] counts nothing (a sink used without metrics).
#[derive(Debug, Clone, Default)]
pub struct ReshapeCounter {
    counter: Option<(IntCounterVec, String, &'static str)>,
}

impl ReshapeCounter {
    /// A counter for the sink `name` of type `kind`.
    #[must_use]
    pub fn new(metrics: &Metrics, name: &str, kind: &'static str) -> Self {
        Self {
            counter: Some((metrics.sink_reshaped.clone(), name.to_owned(), kind)),
        }
    }

    /// Adds `count` to `action` (one of the `RESHAPE_*` names).
    pub fn add(&self, action: &'static str, count: u64) {
        if count == 0 {
            return;
        }
        if let Some((counter, name, kind)) = &self.counter {
            counter
                .with_label_values(&[name.as_str(), kind, action])
                .inc_by(count);
        }
    }
}

#[cfg(test)]
mod tests;
