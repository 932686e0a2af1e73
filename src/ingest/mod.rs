//! The ingest pipeline: what becomes of a delivery once the HTTP layer has checked
//! its headers and key and read its body.
//!
//! 1. duplicate: a retry every candidate sink has committed is answered at once;
//! 2. inflate: a gzip body, within its cap;
//! 3. envelope: the request's JSON, whose timestamp completes the [`Delivery`],
//!    built once here;
//! 4. decode: on the [`DecodePool`], each event charged to the budget as written;
//! 5. route: one batch per sink;
//! 6. fan-out: every sink commits its batch, or the delivery fails.
//!
//! [`Ingest::run`] returns a typed result, `Ok(Committed)` or an [`IngestError`]
//! saying which stage refused the delivery; `server::error` maps it to the HTTP
//! reply. Nothing here knows HTTP: the same pipeline would serve another transport.
//!
//! Memory: the body's bytes are already reserved from the in-flight budget
//! ([`crate::admission`]) when it arrives here. Inflating reserves what the gzip
//! trailer claims before it starts and the rest after; decoded events are charged
//! while they are written, within the delivery's decode allowance
//! ([`crate::limits::DecodeBudget`]); copies the routing split makes are charged
//! before the sinks get them. The reservation is released when the sinks have
//! answered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::admission::{Overloaded, Reservation};
use crate::decode::{DecodeError, DecodePool, DecodeSettings, Decoded, PoolError};
use crate::event::{CommonAttributes, Delivery};
use crate::firehose::{DeliveryRequest, EnvelopeError, SourceArn};
use crate::limits::{DecodeBudget, InflateError, Limits, gunzip_capped, gzip_size_hint};
use crate::metrics::{DeliveryRecorder, Metrics};
use crate::routing::{RequestFacts, RequestRouter, Router};
use crate::sink::dedup::DeliveryKey;
use crate::sink::fanout::{FanoutError, Sinks};
use crate::sink::{Committed, EventLines, SinkBatch};

/// What the HTTP layer learnt of a delivery from its request line and headers,
/// all of it checked.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The `X-Amz-Firehose-Request-Id` header.
    pub request_id: String,
    /// URL path (without the query string).
    pub path: String,
    /// The source ARN header, parsed; `None` when the sender is not Firehose.
    pub source: Option<SourceArn>,
    /// Name of the access key that authenticated it; `None` when keys are off.
    pub access_key_name: Option<String>,
    /// The stream's common attributes.
    pub common_attributes: CommonAttributes,
    /// Whether the body is gzip (`Content-Encoding: gzip`).
    pub gzipped: bool,
    /// When the request arrived, ms since the epoch.
    pub received_at: u64,
}

impl Arrival {
    /// The facts routes match on.
    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            path: &self.path,
            delivery_stream: self
                .source
                .as_ref()
                .map(|source| source.delivery_stream.as_str()),
            source_arn: self.source.as_ref().map(|source| source.arn.as_str()),
            access_key: self.access_key_name.as_deref(),
            common_attributes: &self.common_attributes,
        }
    }

    /// The key that identifies this delivery across Firehose's retries.
    fn key(&self) -> DeliveryKey {
        DeliveryKey::new(
            self.source.as_ref().map(|source| source.arn.as_str()),
            &self.request_id,
        )
    }

    /// The delivery's facts, complete once the envelope gave its timestamp.
    fn into_delivery(self, timestamp: i64) -> Delivery {
        let (source_arn, delivery_stream, region, account_id) = match self.source {
            Some(source) => (
                Some(source.arn),
                Some(source.delivery_stream),
                Some(source.region),
                Some(source.account_id),
            ),
            None => (None, None, None, None),
        };
        Delivery {
            request_id: self.request_id,
            timestamp,
            received_at: self.received_at,
            source_arn,
            delivery_stream,
            region,
            account_id,
            access_key_name: self.access_key_name,
            path: self.path,
            common_attributes: self.common_attributes,
        }
    }
}

/// Why the pipeline did not store a delivery; each stage has its variant.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The in-flight budget cannot hold the inflated body or its events now.
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    /// The gzip body is corrupt or inflates past its cap.
    #[error(transparent)]
    Inflate(#[from] InflateError),
    /// The body is not a Firehose request envelope.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The body's `requestId` is not the header's.
    #[error("the body's requestId differs from the request id header")]
    RequestIdMismatch,
    /// A record could not be decoded, or decoding stopped at a limit.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The decode pool is closed (shutdown) or the decode panicked.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A sink did not commit the delivery.
    #[error(transparent)]
    Fanout(#[from] FanoutError),
}

/// One delivery's batch for each sink its events were routed to, by position.
type Batches = Vec<(usize, SinkBatch)>;

/// The pipeline and what it needs: settings, routes, sinks, the decode pool.
#[derive(Debug)]
pub struct Ingest {
    limits: Limits,
    decode: DecodeSettings,
    router: Router,
    sinks: Arc<Sinks>,
    metrics: Arc<Metrics>,
    pool: DecodePool,
}

impl Ingest {
    /// The pipeline over `sinks`, which `router`'s positions index.
    #[must_use]
    pub fn new(
        limits: Limits,
        decode: DecodeSettings,
        router: Router,
        sinks: Arc<Sinks>,
        metrics: Arc<Metrics>,
        pool: DecodePool,
    ) -> Self {
        Self {
            limits,
            decode,
            router,
            sinks,
            metrics,
            pool,
        }
    }

    /// Stores one delivery: `body` as received, its bytes held by `reservation`.
    /// `Ok` only once every sink its events go to has committed them, or all of
    /// them had committed this delivery before (a retry).
    ///
    /// # Errors
    ///
    /// [`IngestError`]: the stage that refused the delivery; nothing of it counts
    /// as stored, and Firehose's retry starts over (sinks that did commit it answer
    /// the retry as a duplicate).
    pub async fn run(
        self: &Arc<Self>,
        arrival: Arrival,
        body: Vec<u8>,
        reservation: Reservation,
        recorder: &DeliveryRecorder,
    ) -> Result<Committed, IngestError> {
        // A retry that every sink it can go to has committed already is answered
        // now: decoding it again would cost as much as the first time, and count
        // its records, dead letters and formats a second time.
        let key = arrival.key();
        let candidates = self.router.for_request(&arrival.facts()).candidates();
        if self.sinks.committed_everywhere(candidates, &key) {
            return Ok(Committed::Duplicate);
        }
        // Decoding shares the reservation with the events' budget; it is released
        // when this function returns, after the sinks answered.
        let reservation = Arc::new(Mutex::new(reservation));
        let prepared = {
            let this = Arc::clone(self);
            let reservation = Arc::clone(&reservation);
            let recorder = recorder.clone();
            self.pool
                .run(move |pool| this.prepare(&body, arrival, key, &reservation, pool, &recorder))
                .await??
        };
        if prepared.is_empty() {
            // Nothing to store: no records, only control messages, or all unrouted.
            return Ok(Committed::Written { events: 0 });
        }
        let committed = self.sinks.deliver(prepared).await?;
        drop(reservation);
        Ok(committed)
    }

    /// Inflate, envelope, decode and route, on a decode slot.
    fn prepare(
        &self,
        body: &[u8],
        arrival: Arrival,
        key: DeliveryKey,
        reservation: &Arc<Mutex<Reservation>>,
        pool: &DecodePool,
        recorder: &DeliveryRecorder,
    ) -> Result<Batches, IngestError> {
        let inflated;
        let json: &[u8] = if arrival.gzipped {
            inflated = self.inflate(body, reservation)?;
            &inflated
        } else {
            body
        };
        let request = DeliveryRequest::parse(json, self.limits.max_records)?;
        recorder.envelope_parsed(request.records.len() as u64);
        if request.request_id != arrival.request_id {
            return Err(IngestError::RequestIdMismatch);
        }
        // Which routes apply is known from the arrival; the events are split by
        // them once decoded.
        let router = self.router.for_request(&arrival.facts());
        let delivery = arrival.into_delivery(request.timestamp);

        // The events are held until the sinks have them: they are charged to the
        // in-flight budget as they are written, and may not pass the delivery's
        // allowance, so a small request cannot decode into a flood.
        let charged = Arc::clone(reservation);
        let budget = Arc::new(DecodeBudget::new(
            self.limits.decoded_allowance(json.len() as u64),
            Box::new(move |bytes| hold(&charged, bytes).is_ok()),
        ));
        let decoded = pool.decode(&request.records, &delivery, &self.decode, &budget)?;
        self.metrics.record_decoding(
            decoded
                .formats
                .iter()
                .map(|(format, count)| (format.as_str(), *count)),
            decoded
                .dead_letter_formats
                .iter()
                .map(|format| format.as_str()),
            decoded.control_messages as u64,
        );
        let (batches, copied) = self.route(&router, delivery, key, decoded);
        // Lines split between sinks that take different events are copies: held too.
        hold(reservation, copied as u64)?;
        Ok(batches)
    }

    /// Inflates a gzip body: reserves what its trailer claims first, the rest after.
    fn inflate(
        &self,
        body: &[u8],
        reservation: &Arc<Mutex<Reservation>>,
    ) -> Result<Vec<u8>, IngestError> {
        let cap = self.limits.max_inflated_bytes;
        let claimed = gzip_size_hint(body).unwrap_or(0).min(cap);
        hold(reservation, claimed)?;
        let inflated = gunzip_capped(body, cap)?;
        hold(reservation, (inflated.len() as u64).saturating_sub(claimed))?;
        Ok(inflated)
    }

    /// Splits a delivery's events and dead letters into one batch per sink; also
    /// returns the bytes of copies the split made.
    fn route(
        &self,
        router: &RequestRouter<'_>,
        delivery: Delivery,
        key: DeliveryKey,
        decoded: Decoded,
    ) -> (Batches, usize) {
        let events = decoded.events.route(router);
        let dead_letters = decoded.dead_letters.route(router);
        let dropped = events.dropped + dead_letters.dropped;
        if dropped > 0 {
            self.metrics.record_unrouted(dropped as u64);
            tracing::debug!(dropped, "Events matched no route and were dropped.");
        }
        let delivery = Arc::new(delivery);
        let mut batches: BTreeMap<usize, SinkBatch> = BTreeMap::new();
        let empty = || SinkBatch {
            delivery: Arc::clone(&delivery),
            dedup_key: key,
            events: EventLines::default(),
            dead_letters: EventLines::default(),
        };
        for (sink, lines) in events.per_sink {
            batches.entry(sink).or_insert_with(empty).events = lines;
        }
        for (sink, lines) in dead_letters.per_sink {
            batches.entry(sink).or_insert_with(empty).dead_letters = lines;
        }
        let copied = events.copied + dead_letters.copied;
        (batches.into_iter().collect(), copied)
    }
}

/// Reserves `bytes` more from a reservation that decoding shares.
fn hold(reservation: &Mutex<Reservation>, bytes: u64) -> Result<(), Overloaded> {
    reservation
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .grow(bytes)
}
