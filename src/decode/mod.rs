//! Decoding: turning a delivery's base64 records into events.
//!
//! One file per payload format. Today every record is a raw record ([`raw`]);
//! CloudWatch Logs, Metric Streams and EventBridge decoders join it here.

pub mod raw;

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::event::{Delivery, EventWriter};

/// Why the records of a request could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A record's `data` is not standard, padded base64.
    #[error("record {index}: data is not valid base64: {reason}")]
    Base64 {
        /// Position of the record in the request.
        index: usize,
        /// What the base64 decoder reported.
        reason: String,
    },
}

/// The events of one request, as NDJSON lines ready for a sink.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One event per line, each line ending in `\n`.
    pub lines: Vec<u8>,
    /// Number of events (lines).
    pub events: usize,
    /// Sum of the records' decoded sizes.
    pub record_bytes: usize,
}

/// Decodes every record of a request into events carrying `delivery`'s facts.
///
/// # Errors
///
/// [`DecodeError::Base64`] for the first record whose data is not valid base64; the
/// whole request is then refused, so no part of it is stored.
pub fn decode_records(
    records: &[Cow<'_, str>],
    delivery: &Delivery,
) -> Result<Decoded, DecodeError> {
    let encoded: usize = records.iter().map(|record| record.len()).sum();
    // Decoded records are ~3/4 of their base64; each line adds the firehose object.
    let mut writer = EventWriter::new(delivery, encoded + records.len() * 512);
    let mut scratch = Vec::new();
    let mut record_bytes = 0;
    for (index, record) in records.iter().enumerate() {
        scratch.clear();
        STANDARD
            .decode_vec(record.as_bytes(), &mut scratch)
            .map_err(|error| DecodeError::Base64 {
                index,
                reason: error.to_string(),
            })?;
        record_bytes += scratch.len();
        writer.record(index, &raw::classify(&scratch, record));
    }
    let (lines, events) = writer.finish();
    Ok(Decoded {
        lines,
        events,
        record_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_record_in_order() {
        let records: Vec<Cow<'_, str>> = vec![
            "eyJhIjoxfQ==".into(),
            "aGk=".into(),
            "".into(),
            "/w==".into(),
        ];
        let decoded = decode_records(&records, &Delivery::default()).unwrap();
        assert_eq!(decoded.events, 4);
        assert_eq!(decoded.record_bytes, 7 + 2 + 1);
        let events: Vec<serde_json::Value> = std::str::from_utf8(&decoded.lines)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let formats: Vec<&str> = events
            .iter()
            .map(|e| e["format"].as_str().unwrap())
            .collect();
        assert_eq!(formats, ["json", "text", "text", "binary"]);
        assert_eq!(events[1]["data"], "hi");
        assert_eq!(events[3]["data"], "/w==");
        assert_eq!(events[3]["firehose"]["record_index"], 3);
    }

    #[test]
    fn refuses_bad_base64_naming_the_record() {
        for bad in ["not base64!", "aGk", "aGk=="] {
            let records: Vec<Cow<'_, str>> = vec!["aGk=".into(), bad.into()];
            match decode_records(&records, &Delivery::default()) {
                Err(DecodeError::Base64 { index, .. }) => assert_eq!(index, 1, "{bad}"),
                other => panic!("{bad}: expected a base64 error, got {other:?}"),
            }
        }
    }
}
