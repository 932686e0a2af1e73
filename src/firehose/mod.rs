//! The Firehose HTTP endpoint delivery contract: header names, the request envelope,
//! the reply, and the parsing of the source ARN and common-attributes headers.
//!
//! Source: "HTTP endpoint delivery request and response specifications",
//! <https://docs.aws.amazon.com/firehose/latest/dev/httpdeliveryrequestresponse.html>,
//! and the troubleshooting page for what Firehose rejects in a reply,
//! <https://docs.aws.amazon.com/firehose/latest/dev/http_troubleshooting.html>.

use std::borrow::Cow;
use std::fmt;

use axum::http::HeaderName;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Protocol version of the request format; only `1.0` exists.
pub const HEADER_PROTOCOL_VERSION: HeaderName =
    HeaderName::from_static("x-amz-firehose-protocol-version");
/// Opaque id of the batch, equal to the body's `requestId`, kept across retries.
pub const HEADER_REQUEST_ID: HeaderName = HeaderName::from_static("x-amz-firehose-request-id");
/// ARN of the delivery stream that sent the request.
pub const HEADER_SOURCE_ARN: HeaderName = HeaderName::from_static("x-amz-firehose-source-arn");
/// The access key configured on the stream, copied verbatim (at most 4096 bytes).
pub const HEADER_ACCESS_KEY: HeaderName = HeaderName::from_static("x-amz-firehose-access-key");
/// `{"commonAttributes": {...}}`: the stream's configured "parameters".
pub const HEADER_COMMON_ATTRIBUTES: HeaderName =
    HeaderName::from_static("x-amz-firehose-common-attributes");

/// The only protocol version Firehose defines.
pub const PROTOCOL_VERSION: &str = "1.0";

/// Firehose accepts an `errorMessage` of at most 8192 characters.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 8192;

/// Longest request id accepted. Firehose's are GUIDs (36 characters); the id goes
/// into every event line, the logs and sink keys, so a sender must not be able to
/// make it long.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Longest URL path accepted. A Firehose HTTP endpoint URL is at most 1,000
/// characters (`HttpEndpointConfiguration.Url`); the path goes into every event line.
pub const MAX_PATH_BYTES: usize = 1024;

/// Most common attributes a stream can have (`CommonAttributes`: 0–50 items).
pub const MAX_COMMON_ATTRIBUTES: usize = 50;
/// Longest common attribute name (`AttributeName`: 1–256 characters).
pub const MAX_ATTRIBUTE_NAME_CHARS: usize = 256;
/// Longest common attribute value (`AttributeValue`: 0–1024 characters).
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 1024;

/// Longest delivery stream name (`DeliveryStreamName`: 1–64 characters of
/// `[a-zA-Z0-9_.-]`).
pub const MAX_STREAM_NAME_CHARS: usize = 64;

/// Checks a request id: 1 to [`MAX_REQUEST_ID_BYTES`] visible ASCII characters.
/// Firehose sends a GUID; anything else that is short and printable is accepted
/// from other senders. Spaces and control characters are refused: the id is
/// written into logs and keys.
///
/// # Errors
///
/// A short reason.
pub fn check_request_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("empty");
    }
    if id.len() > MAX_REQUEST_ID_BYTES {
        return Err("longer than 128 characters (Firehose sends a 36-character GUID)");
    }
    if !id.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err("not printable ASCII without spaces");
    }
    Ok(())
}

/// A delivery request body (`FirehoseCustomHttpsEndpointRequest`), borrowing from the
/// raw body. Base64 never needs JSON escapes, so records are borrowed, not copied.
#[derive(Debug, PartialEq, Eq)]
pub struct DeliveryRequest<'a> {
    /// `requestId`: must equal the `X-Amz-Firehose-Request-Id` header.
    pub request_id: Cow<'a, str>,
    /// `timestamp`: when Firehose built the request, in ms since the epoch.
    pub timestamp: i64,
    /// `records[].data`: each record's bytes in standard, padded base64.
    pub records: Vec<Cow<'a, str>>,
}

/// Why a body could not be read as a delivery request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not JSON, or not the request shape.
    #[error("invalid request body: {0}")]
    Invalid(String),
    /// More records than the configured limit.
    #[error("request has more than {limit} records")]
    TooManyRecords {
        /// The limit in force.
        limit: usize,
    },
}

impl<'a> DeliveryRequest<'a> {
    /// Parses a request body, refusing more than `max_records` records while parsing,
    /// so an oversized array never gets allocated.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError::TooManyRecords`] past the limit, otherwise
    /// [`EnvelopeError::Invalid`] with serde's description of what is wrong.
    pub fn parse(body: &'a [u8], max_records: usize) -> Result<Self, EnvelopeError> {
        // JSON text is UTF-8 (RFC 8259 §8.1). serde_json checks the strings it
        // reads but not those of fields it skips, so the whole body is checked first
        // (cheap: the ASCII fast path covers base64), and then parsed as text.
        let text = std::str::from_utf8(body).map_err(|error| {
            EnvelopeError::Invalid(format!(
                "not UTF-8 at byte {} (JSON text must be UTF-8, RFC 8259 section 8.1)",
                error.valid_up_to()
            ))
        })?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let parsed = EnvelopeSeed { max_records }
            .deserialize(&mut deserializer)
            .and_then(|request| deserializer.end().map(|()| request));
        parsed.map_err(|error| {
            if error.to_string().starts_with(TOO_MANY_RECORDS) {
                EnvelopeError::TooManyRecords { limit: max_records }
            } else {
                EnvelopeError::Invalid(error.to_string())
            }
        })
    }
}

/// Marker that lets [`DeliveryRequest::parse`] tell the record cap from other errors.
const TOO_MANY_RECORDS: &str = "too many records";

struct EnvelopeSeed {
    max_records: usize,
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed {
    type Value = DeliveryRequest<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed {
    type Value = DeliveryRequest<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with requestId, timestamp and records")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut request_id = None;
        let mut timestamp = None;
        let mut records = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "requestId" => request_id = Some(map.next_value::<Cow<'de, str>>()?),
                "timestamp" => timestamp = Some(map.next_value::<i64>()?),
                "records" => {
                    records = Some(map.next_value_seed(RecordsSeed {
                        max_records: self.max_records,
                    })?);
                }
                // Unknown fields are tolerated: AWS may add some.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(DeliveryRequest {
            request_id: request_id.ok_or_else(|| de::Error::missing_field("requestId"))?,
            timestamp: timestamp.ok_or_else(|| de::Error::missing_field("timestamp"))?,
            records: records.ok_or_else(|| de::Error::missing_field("records"))?,
        })
    }
}

struct RecordsSeed {
    max_records: usize,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed {
    type Value = Vec<Cow<'de, str>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed {
    type Value = Vec<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of {\"data\": base64} objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        #[derive(Deserialize)]
        struct Record<'a> {
            #[serde(borrow)]
            data: Cow<'a, str>,
        }
        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max_records));
        while let Some(record) = seq.next_element::<Record<'de>>()? {
            if records.len() == self.max_records {
                return Err(de::Error::custom(TOO_MANY_RECORDS));
            }
            records.push(record.data);
        }
        Ok(records)
    }
}

/// The reply body (`FirehoseCustomHttpsEndpointResponse`). Exactly these three keys:
/// Firehose may reject unexpected fields, a missing or different `requestId`, and a
/// `timestamp` that is not a JSON number.
#[derive(Debug, Serialize)]
pub struct Reply<'a> {
    /// Echo of the request's id.
    #[serde(rename = "requestId")]
    pub request_id: &'a str,
    /// When the reply was made, in ms since the epoch.
    pub timestamp: u64,
    /// Why the delivery failed; absent on success.
    #[serde(rename = "errorMessage", skip_serializing_if = "Option::is_none")]
    pub error_message: Option<&'a str>,
}

impl Reply<'_> {
    /// The reply as JSON bytes, with the error message cut to Firehose's maximum.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        let message = self.error_message.map(|message| {
            match message.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
                Some((cut, _)) => &message[..cut],
                None => message,
            }
        });
        let reply = Reply {
            error_message: message,
            ..*self
        };
        serde_json::to_vec(&reply).unwrap_or_default()
    }
}

/// What the `X-Amz-Firehose-Source-Arn` header tells about the sender, e.g.
/// `arn:aws:firehose:us-east-1:123456789012:deliverystream/my-stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceArn {
    /// The whole ARN as sent.
    pub arn: String,
    /// AWS region, e.g. `us-east-1`.
    pub region: String,
    /// 12-digit AWS account id.
    pub account_id: String,
    /// Name of the delivery stream.
    pub delivery_stream: String,
}

impl SourceArn {
    /// Parses a Firehose delivery stream ARN
    /// (`arn:PARTITION:firehose:REGION:ACCOUNT:deliverystream/NAME`).
    ///
    /// # Errors
    ///
    /// A short reason when the text is not a delivery stream ARN.
    pub fn parse(arn: &str) -> Result<Self, &'static str> {
        let mut parts = arn.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return Err("not an ARN");
        };
        if partition.is_empty() || service != "firehose" {
            return Err("not a Firehose ARN");
        }
        let Some(name) = resource.strip_prefix("deliverystream/") else {
            return Err("not a delivery stream ARN");
        };
        if name.is_empty() || region.is_empty() || account.is_empty() {
            return Err("incomplete delivery stream ARN");
        }
        // Each part goes into every event line and into metric labels and sink keys:
        // they are held to the shapes AWS gives them, which also bounds their length.
        let plain = |text: &str, max: usize| {
            text.len() <= max
                && text
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        };
        if !plain(partition, 32) {
            return Err("partition is not an AWS partition name");
        }
        if !plain(region, 32) {
            return Err("region is not an AWS region name");
        }
        if account.len() != 12 || !account.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err("account is not a 12-digit AWS account id");
        }
        if name.len() > MAX_STREAM_NAME_CHARS
            || !name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
        {
            return Err("delivery stream name is not 1-64 characters of [a-zA-Z0-9_.-]");
        }
        Ok(Self {
            arn: arn.to_owned(),
            region: region.to_owned(),
            account_id: account.to_owned(),
            delivery_stream: name.to_owned(),
        })
    }
}

pub use crate::event::CommonAttributes;

/// Parses the `X-Amz-Firehose-Common-Attributes` header:
/// `{"commonAttributes": {"name": "value", ...}}` with string values.
///
/// # Errors
///
/// A human-readable reason when the header is not that shape.
pub fn parse_common_attributes(header: &[u8]) -> Result<CommonAttributes, String> {
    #[derive(Deserialize)]
    struct Wrapper {
        #[serde(rename = "commonAttributes")]
        common_attributes: serde_json::Map<String, serde_json::Value>,
    }
    let wrapper: Wrapper = serde_json::from_slice(header).map_err(|error| error.to_string())?;
    let attributes = wrapper.common_attributes;
    // Firehose's own limits: the attributes go into every event line, so a sender
    // must not be able to make them large.
    if attributes.len() > MAX_COMMON_ATTRIBUTES {
        return Err(format!(
            "more than {MAX_COMMON_ATTRIBUTES} attributes ({})",
            attributes.len()
        ));
    }
    for (key, value) in &attributes {
        let name_chars = key.chars().count();
        if name_chars == 0 || name_chars > MAX_ATTRIBUTE_NAME_CHARS {
            return Err(format!(
                "attribute names must be 1-{MAX_ATTRIBUTE_NAME_CHARS} characters; one has {name_chars}"
            ));
        }
        let Some(value) = value.as_str() else {
            return Err(format!("attribute {key:?} is not a string"));
        };
        if value.chars().count() > MAX_ATTRIBUTE_VALUE_CHARS {
            return Err(format!(
                "attribute {key:?} is longer than {MAX_ATTRIBUTE_VALUE_CHARS} characters"
            ));
        }
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests;
