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
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_borrowing_its_records() {
        let body = br#"{"requestId":"ed4acda5","timestamp":1578090901599,"records":[{"data":"aGVsbG8="},{"data":""}],"extra":[1]}"#;
        let request = DeliveryRequest::parse(body, 10).unwrap();
        assert_eq!(request.request_id, "ed4acda5");
        assert_eq!(request.timestamp, 1_578_090_901_599);
        assert_eq!(request.records, ["aGVsbG8=", ""]);
        assert!(matches!(request.records[0], Cow::Borrowed(_)));
    }

    #[test]
    fn rejects_malformed_envelopes() {
        let table: &[(&str, &[u8])] = &[
            ("not json", b"hello"),
            ("array", b"[]"),
            ("missing requestId", br#"{"timestamp":1,"records":[]}"#),
            ("missing timestamp", br#"{"requestId":"a","records":[]}"#),
            ("missing records", br#"{"requestId":"a","timestamp":1}"#),
            (
                "string timestamp",
                br#"{"requestId":"a","timestamp":"1","records":[]}"#,
            ),
            (
                "record without data",
                br#"{"requestId":"a","timestamp":1,"records":[{}]}"#,
            ),
            (
                "data not a string",
                br#"{"requestId":"a","timestamp":1,"records":[{"data":1}]}"#,
            ),
            (
                "trailing garbage",
                br#"{"requestId":"a","timestamp":1,"records":[]} x"#,
            ),
            (
                "not UTF-8 in an ignored field",
                b"{\"requestId\":\"a\",\"timestamp\":1,\"records\":[],\"x\":\"\xff\"}",
            ),
        ];
        for (name, body) in table {
            assert!(
                matches!(
                    DeliveryRequest::parse(body, 10),
                    Err(EnvelopeError::Invalid(_))
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn enforces_the_record_cap_while_parsing() {
        let body =
            br#"{"requestId":"a","timestamp":1,"records":[{"data":""},{"data":""},{"data":""}]}"#;
        assert_eq!(DeliveryRequest::parse(body, 3).unwrap().records.len(), 3);
        assert_eq!(
            DeliveryRequest::parse(body, 2),
            Err(EnvelopeError::TooManyRecords { limit: 2 })
        );
    }

    #[test]
    fn reply_has_exactly_the_contract_keys() {
        let ok = Reply {
            request_id: "r-1",
            timestamp: 1_700_000_000_123,
            error_message: None,
        };
        assert_eq!(
            String::from_utf8(ok.to_json()).unwrap(),
            r#"{"requestId":"r-1","timestamp":1700000000123}"#
        );
        let failed = Reply {
            error_message: Some("bad"),
            ..ok
        };
        assert_eq!(
            String::from_utf8(failed.to_json()).unwrap(),
            r#"{"requestId":"r-1","timestamp":1700000000123,"errorMessage":"bad"}"#
        );
    }

    #[test]
    fn reply_cuts_long_messages_at_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_MESSAGE_CHARS + 10);
        let json = Reply {
            request_id: "r",
            timestamp: 1,
            error_message: Some(&long),
        }
        .to_json();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value["errorMessage"].as_str().unwrap().chars().count(),
            MAX_ERROR_MESSAGE_CHARS
        );
    }

    #[test]
    fn parses_source_arns() {
        let arn =
            SourceArn::parse("arn:aws:firehose:us-east-1:123456789012:deliverystream/logs-prod")
                .unwrap();
        assert_eq!(
            (
                arn.region.as_str(),
                arn.account_id.as_str(),
                arn.delivery_stream.as_str()
            ),
            ("us-east-1", "123456789012", "logs-prod")
        );
        let china =
            SourceArn::parse("arn:aws-cn:firehose:cn-north-1:123456789012:deliverystream/a")
                .unwrap();
        assert_eq!(china.region, "cn-north-1");
        let longest = format!(
            "arn:aws-us-gov:firehose:us-gov-west-1:123456789012:deliverystream/{}",
            "a.b_c-9".repeat(10).get(..64).unwrap()
        );
        assert_eq!(
            SourceArn::parse(&longest).unwrap().delivery_stream.len(),
            64
        );
        for bad in [
            "",
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/colX b",
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/a|b",
            &format!(
                "arn:aws:firehose:us-east-1:123456789012:deliverystream/{}",
                "s".repeat(65)
            ),
            "arn:aws:firehose:us-east-1:12345678901:deliverystream/x",
            "arn:aws:firehose:us-east-1:1234567890123:deliverystream/x",
            "arn:aws:firehose:US EAST:123456789012:deliverystream/x",
            "arn:aws:s3:::bucket",
            "arn:aws:firehose:us-east-1:123456789012:stream/x",
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/",
            "arn:aws:firehose::123456789012:deliverystream/x",
            "nonsense",
        ] {
            assert!(SourceArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_common_attributes() {
        let attributes =
            parse_common_attributes(br#"{"commonAttributes":{"env":"prod","team":""}}"#).unwrap();
        assert_eq!(attributes["env"], "prod");
        assert_eq!(attributes["team"], "");
        for bad in [
            &br#"{"env":"prod"}"#[..],
            br#"{"commonAttributes":{"n":1}}"#,
            br#"{"commonAttributes":[]}"#,
            b"not json",
            br#"{"commonAttributes":{"":"empty name"}}"#,
        ] {
            assert!(parse_common_attributes(bad).is_err());
        }
        let many = |count: usize, name_len: usize, value_len: usize| {
            let attributes: serde_json::Map<String, serde_json::Value> = (0..count)
                .map(|n| {
                    let name = format!("{n:0>name_len$}");
                    (name, "v".repeat(value_len).into())
                })
                .collect();
            serde_json::json!({ "commonAttributes": attributes }).to_string()
        };
        // At Firehose's limits: accepted; one past any of them: refused.
        assert_eq!(
            parse_common_attributes(many(50, 256, 1024).as_bytes())
                .unwrap()
                .len(),
            50
        );
        for (count, name, value) in [(51, 3, 1), (1, 257, 1), (1, 3, 1025)] {
            let error = parse_common_attributes(many(count, name, value).as_bytes()).unwrap_err();
            assert!(!error.is_empty(), "{count} {name} {value}");
        }
    }

    #[test]
    fn request_ids_are_short_printable_ascii() {
        let guid = "6a7e8feb-b491-4cf7-a9f1-bf3703467718";
        assert_eq!(check_request_id(guid), Ok(()));
        assert_eq!(check_request_id(&"x".repeat(MAX_REQUEST_ID_BYTES)), Ok(()));
        for bad in [
            String::new(),
            "x".repeat(MAX_REQUEST_ID_BYTES + 1),
            "b c".into(),
            "tab\there".into(),
            "é".into(),
        ] {
            assert!(check_request_id(&bad).is_err(), "{bad:?}");
        }
    }
}
