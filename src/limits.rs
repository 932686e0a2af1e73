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
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

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

/// Default cap on what one delivery decodes into, per byte of its (inflated) body.
///
/// Events are NDJSON lines, each carrying the delivery's facts (the `firehose`
/// object, a few hundred bytes) and, for log events, their log group and stream.
/// A request of gzip'd CloudWatch Logs makes ~6 bytes of lines per byte of body on
/// typical 150–300-byte messages, ~12 on Lambda `REPORT` lines, and up to ~55 on
/// two-character messages batched 100 to an envelope (they compress to almost
/// nothing). A record of thousands of empty log events makes thousands of bytes
/// per byte; 64 leaves real traffic room and stops that. The ratio only decides
/// between [`DECODED_FLOOR_BYTES`] and `max_decoded_bytes`, for bodies of 1–16 MiB.
pub const DEFAULT_MAX_DECODED_RATIO: u64 = 64;

/// Every delivery may decode into at least this much, whatever its size: a small
/// delivery of many short records legitimately makes many times its size (each
/// line repeats the delivery's facts), and 64 MiB of lines costs little.
pub const DECODED_FLOOR_BYTES: u64 = 64 * MIB;

/// Default cap on what one delivery decodes into, however large it is. Firehose's
/// largest delivery (64 MiB of records) of typical CloudWatch Logs makes ~400 MiB
/// of lines; 1 GiB also bounds the memory of a delivery larger than the in-flight
/// budget, which runs alone.
pub const DEFAULT_MAX_DECODED_BYTES: u64 = 1024 * MIB;

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
    /// Most bytes of events one delivery may decode into, per byte of its inflated
    /// body (at least [`DECODED_FLOOR_BYTES`]); past it, 413.
    pub max_decoded_ratio: u64,
    /// Most bytes of events one delivery may decode into, whatever its size; past
    /// it, 413.
    pub max_decoded_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_inflated_bytes: DEFAULT_MAX_INFLATED_BYTES,
            max_records: DEFAULT_MAX_RECORDS,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            max_decoded_ratio: DEFAULT_MAX_DECODED_RATIO,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
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
        if self.max_decoded_ratio == 0 || self.max_decoded_bytes == 0 {
            return Err("max-decoded-ratio and max-decoded-bytes must be greater than 0".into());
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

    /// The most bytes of events a delivery whose body inflated to `body_bytes` may
    /// decode into: `max_decoded_ratio` per body byte, at least
    /// [`DECODED_FLOOR_BYTES`], at most `max_decoded_bytes`.
    #[must_use]
    pub fn decoded_allowance(&self, body_bytes: u64) -> u64 {
        self.max_decoded_ratio
            .saturating_mul(body_bytes)
            .max(DECODED_FLOOR_BYTES)
            .min(self.max_decoded_bytes)
    }
}

/// Output is charged to the in-flight budget in steps of this size, ahead of
/// being written: often enough that the budget follows the output closely, rarely
/// enough that charging costs nothing next to writing a mebibyte of lines.
const CHARGE_STEP: u64 = MIB;

/// Why decoding had to stop before the end of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeStop {
    /// The events would pass the delivery's allowance.
    #[error("decoded events exceed the limit of {limit} bytes for this delivery")]
    TooLarge {
        /// The allowance in bytes.
        limit: u64,
    },
    /// The in-flight budget cannot hold the events now.
    #[error("server is at its in-flight limit")]
    Overloaded,
}

/// Charges bytes to the in-flight budget; `false` when it cannot hold them now.
pub type Charge = Box<dyn Fn(u64) -> bool + Send + Sync>;

/// What one delivery's decoding may still produce, counted *while* it decodes.
///
/// Every event line (and its metadata) is counted as it is written. Past the
/// delivery's allowance ([`Limits::decoded_allowance`]) decoding stops with
/// [`DecodeStop::TooLarge`]; every [`CHARGE_STEP`] of output is first charged to
/// the in-flight budget, and when that fails decoding stops with
/// [`DecodeStop::Overloaded`]. So a small request that decodes into a flood of
/// lines stops at its allowance instead of filling memory, and the lines of all
/// deliveries in flight stay inside the budget at every moment, not only once
/// decoding is done. Shared by the threads that decode one delivery's runs.
pub struct DecodeBudget {
    allowance: u64,
    used: AtomicU64,
    stop: AtomicU8,
    charge: Option<Charge>,
}

const RUNNING: u8 = 0;
const TOO_LARGE: u8 = 1;
const OVERLOADED: u8 = 2;

impl std::fmt::Debug for DecodeBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeBudget")
            .field("allowance", &self.allowance)
            .field("used", &self.used())
            .field("stop", &self.check().err())
            .finish_non_exhaustive()
    }
}

impl DecodeBudget {
    /// A budget of `allowance` bytes, charging the in-flight budget through
    /// `charge`.
    #[must_use]
    pub fn new(allowance: u64, charge: Charge) -> Self {
        Self {
            allowance,
            used: AtomicU64::new(0),
            stop: AtomicU8::new(RUNNING),
            charge: Some(charge),
        }
    }

    /// A budget that never stops decoding (tests, benchmarks, fuzzing).
    #[must_use]
    pub fn unlimited() -> Self {
        Self {
            allowance: u64::MAX,
            used: AtomicU64::new(0),
            stop: AtomicU8::new(RUNNING),
            charge: None,
        }
    }

    /// Counts `bytes` more output. Returns `false` once decoding must stop; the
    /// bytes that made it stop are not to be kept.
    pub fn spend(&self, bytes: u64) -> bool {
        if self.stop.load(Ordering::Relaxed) != RUNNING {
            return false;
        }
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        let after = before.saturating_add(bytes);
        if after > self.allowance {
            self.stop.store(TOO_LARGE, Ordering::Relaxed);
            return false;
        }
        let steps = after.div_ceil(CHARGE_STEP) - before.div_ceil(CHARGE_STEP);
        if steps > 0
            && let Some(charge) = &self.charge
            && !charge(steps * CHARGE_STEP)
        {
            self.stop.store(OVERLOADED, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Whether decoding has been stopped.
    #[must_use]
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) != RUNNING
    }

    /// Why decoding stopped, if it did.
    ///
    /// # Errors
    ///
    /// The [`DecodeStop`] that stopped it.
    pub fn check(&self) -> Result<(), DecodeStop> {
        match self.stop.load(Ordering::Relaxed) {
            TOO_LARGE => Err(DecodeStop::TooLarge {
                limit: self.allowance,
            }),
            OVERLOADED => Err(DecodeStop::Overloaded),
            _ => Ok(()),
        }
    }

    /// Bytes counted so far.
    #[must_use]
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
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
    fn the_allowance_scales_with_the_body_between_a_floor_and_a_cap() {
        let limits = Limits {
            max_decoded_ratio: 10,
            max_decoded_bytes: 1000 * MIB,
            ..Limits::default()
        };
        let table = [
            (0, DECODED_FLOOR_BYTES),
            (MIB, DECODED_FLOOR_BYTES),
            (20 * MIB, 200 * MIB),
            (500 * MIB, 1000 * MIB),
            (u64::MAX, 1000 * MIB),
        ];
        for (body, allowance) in table {
            assert_eq!(limits.decoded_allowance(body), allowance, "{body}");
        }
    }

    #[test]
    fn a_budget_stops_past_its_allowance_and_charges_ahead_in_steps() {
        let charged = std::sync::Arc::new(AtomicU64::new(0));
        let counter = std::sync::Arc::clone(&charged);
        let budget = DecodeBudget::new(
            3 * MIB,
            Box::new(move |bytes| {
                counter.fetch_add(bytes, Ordering::Relaxed);
                true
            }),
        );
        assert!(budget.spend(1));
        assert_eq!(charged.load(Ordering::Relaxed), MIB, "charged ahead");
        assert!(budget.spend(MIB - 1));
        assert_eq!(charged.load(Ordering::Relaxed), MIB);
        assert!(budget.spend(2 * MIB));
        assert_eq!(charged.load(Ordering::Relaxed), 3 * MIB);
        assert_eq!(budget.check(), Ok(()));
        assert!(!budget.spend(1), "one byte past the allowance");
        assert_eq!(budget.check(), Err(DecodeStop::TooLarge { limit: 3 * MIB }));
        assert!(!budget.spend(0), "stays stopped");

        let held = AtomicU64::new(0);
        let refused = DecodeBudget::new(
            u64::MAX,
            Box::new(move |bytes| held.fetch_add(bytes, Ordering::Relaxed) + bytes <= MIB),
        );
        assert!(refused.spend(MIB));
        assert!(!refused.spend(1));
        assert_eq!(refused.check(), Err(DecodeStop::Overloaded));
        assert!(DecodeBudget::unlimited().spend(u64::MAX / 2));
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
            Limits {
                max_decoded_ratio: 0,
                ..ok
            },
            Limits {
                max_decoded_bytes: 0,
                ..ok
            },
        ];
        for limits in table {
            assert!(limits.validate().is_err(), "{limits:?}");
        }
    }
}
