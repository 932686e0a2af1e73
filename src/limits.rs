//! Limits on untrusted input, all in one place.
//!
//! Everything a client controls that could make Hydrant use memory or CPU without
//! bound is capped here: the request body, the inflated body, the number of records
//! and the bytes held by all requests at once. This is also the only module allowed to
//! run a raw gzip decoder (`clippy.toml` bans them elsewhere), so that every inflation
//! in the program is size-capped and a gzip bomb fails with [`InflateError::TooLarge`]
//! instead of taking the process down.

#![expect(
    clippy::disallowed_types,
    reason = "the one module allowed to use raw gzip decoders; it enforces the cap"
)]

use std::io::Read;

use serde::Deserialize;

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// Default cap on the request body as received (after TLS, before any inflation).
///
/// Firehose sends at most 64 MiB of record data per request (its largest buffer
/// size). Base64 turns that into about 85.4 MiB, and the JSON around each record adds
/// up to ~120 KB for 10,000 records, so 100 MiB accepts the largest legitimate
/// delivery with room to spare (Vector's Firehose source uses the same figure).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 100 * MIB;

/// Default cap on a body after `Content-Encoding: gzip` inflation. A gzip'd body
/// inflates to the same JSON an uncompressed one would carry, so the same figure
/// applies.
pub const DEFAULT_MAX_INFLATED_BYTES: u64 = 100 * MIB;

/// The largest number of records Firehose puts in one request
/// (`FirehoseCustomHttpsEndpointRequest`, "records": 1..10000).
pub const FIREHOSE_MAX_RECORDS: usize = 10_000;

/// Default cap on records per request: the protocol maximum.
pub const DEFAULT_MAX_RECORDS: usize = FIREHOSE_MAX_RECORDS;

/// Default cap on the bytes held by all requests in flight together (bodies as
/// received plus their inflated copies). Past it, new requests get 503 at once instead
/// of queueing. 512 MiB admits two of the largest gzip'd deliveries (100 MiB body +
/// 100 MiB inflated each) or dozens of typical 1–5 MiB ones, and keeps a 1 GiB
/// container well clear of its limit.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 512 * MIB;

/// The limits in force for one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Limits {
    /// Largest request body accepted as received; larger ones get 413.
    pub max_body_bytes: u64,
    /// Largest body after gzip inflation; larger ones get 413.
    pub max_inflated_bytes: u64,
    /// Most records accepted in one request; more get 400.
    pub max_records: usize,
    /// Most bytes held by all requests in flight together; past it, 503.
    pub max_in_flight_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_inflated_bytes: DEFAULT_MAX_INFLATED_BYTES,
            max_records: DEFAULT_MAX_RECORDS,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
        }
    }
}

impl Limits {
    /// Checks that the limits can work together.
    ///
    /// # Errors
    ///
    /// A human-readable reason when a limit is zero or when the in-flight budget could
    /// never admit the largest request the other limits allow (such a request would be
    /// answered 503 forever, and Firehose would retry it until it gave up).
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 || self.max_inflated_bytes == 0 {
            return Err("max-body-bytes and max-inflated-bytes must be greater than 0".into());
        }
        if self.max_records == 0 {
            return Err("max-records must be greater than 0".into());
        }
        let largest = self.max_body_bytes.saturating_add(self.max_inflated_bytes);
        if self.max_in_flight_bytes < largest {
            return Err(format!(
                "max-in-flight-bytes ({}) must be at least max-body-bytes + max-inflated-bytes ({largest}), \
                 or the largest allowed request could never be admitted",
                self.max_in_flight_bytes
            ));
        }
        Ok(())
    }
}

/// Why a capped inflation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated data would be larger than the cap.
    #[error("inflated size exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The cap that was hit, in bytes.
        limit: u64,
    },
    /// The input is not valid gzip.
    #[error("invalid gzip data: {0}")]
    Corrupt(String),
}

/// The first two bytes of every gzip member (RFC 1952 §2.3.1).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `bytes` starts like a gzip stream.
#[must_use]
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// The inflated size a gzip stream claims in its trailer (ISIZE, RFC 1952 §2.3.1:
/// the size modulo 2^32 of the last member). Untrusted: use it only to size a
/// buffer or a reservation, never as a limit.
#[must_use]
pub fn gzip_size_hint(bytes: &[u8]) -> Option<u64> {
    let tail: [u8; 4] = bytes.get(bytes.len().checked_sub(4)?..)?.try_into().ok()?;
    Some(u64::from(u32::from_le_bytes(tail)))
}

/// Inflates a gzip stream (one or more members, RFC 1952 §2.2) into a new buffer,
/// failing as soon as the output would pass `limit` bytes.
///
/// # Errors
///
/// [`InflateError::TooLarge`] once more than `limit` bytes come out (reading stops
/// there, so a bomb costs at most `limit` bytes of memory), and
/// [`InflateError::Corrupt`] for data that is not gzip or is truncated.
pub fn gunzip_capped(input: &[u8], limit: u64) -> Result<Vec<u8>, InflateError> {
    // Trust the trailer only as far as the cap; a liar just causes reallocations.
    let hint = gzip_size_hint(input).unwrap_or(0).min(limit);
    let mut out = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    let mut decoder = flate2::read::MultiGzDecoder::new(input).take(limit.saturating_add(1));
    decoder
        .read_to_end(&mut out)
        .map_err(|error| InflateError::Corrupt(error.to_string()))?;
    if out.len() as u64 > limit {
        return Err(InflateError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn inflates_within_the_cap() {
        let data = b"hello firehose".repeat(100);
        assert_eq!(gunzip_capped(&gzip(&data), 1400).unwrap(), data);
    }

    #[test]
    fn inflates_several_members_back_to_back() {
        let mut stream = gzip(b"first ");
        stream.extend(gzip(b"second"));
        assert_eq!(gunzip_capped(&stream, 100).unwrap(), b"first second");
    }

    #[test]
    fn stops_a_bomb_at_the_cap() {
        // 64 MiB of zeros compresses to ~64 KiB; a 1 MiB cap must stop it.
        let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
        assert!(bomb.len() < 128 * 1024);
        assert_eq!(
            gunzip_capped(&bomb, MIB),
            Err(InflateError::TooLarge { limit: MIB })
        );
    }

    #[test]
    fn exactly_the_cap_is_allowed() {
        let data = vec![7u8; 4096];
        assert_eq!(gunzip_capped(&gzip(&data), 4096).unwrap().len(), 4096);
        assert!(gunzip_capped(&gzip(&data), 4095).is_err());
    }

    #[test]
    fn rejects_corrupt_and_truncated_input() {
        let table: &[(&str, Vec<u8>)] = &[
            ("not gzip", b"plain text".to_vec()),
            ("truncated", gzip(b"some data here")[..12].to_vec()),
            ("bad magic", vec![0x1f, 0x8c, 0, 0]),
        ];
        for (name, input) in table {
            assert!(
                matches!(gunzip_capped(input, 1024), Err(InflateError::Corrupt(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn size_hint_reads_the_trailer() {
        assert_eq!(gzip_size_hint(&gzip(&[1u8; 300])), Some(300));
        assert_eq!(gzip_size_hint(&[1, 2]), None);
    }

    #[test]
    fn validate_rejects_unworkable_limits() {
        let ok = Limits::default();
        assert!(ok.validate().is_ok());
        let table = [
            Limits {
                max_body_bytes: 0,
                ..ok
            },
            Limits {
                max_records: 0,
                ..ok
            },
            Limits {
                max_in_flight_bytes: ok.max_body_bytes,
                ..ok
            },
        ];
        for limits in table {
            assert!(limits.validate().is_err(), "{limits:?}");
        }
    }
}
