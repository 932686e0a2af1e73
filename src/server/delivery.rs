//! The delivery handler: `POST` on any path of the ingest listener.
//!
//! The checks run in the order that reveals least to a stranger: shutdown, then the
//! access key, then the headers, then the body. Reading, inflating and decoding the
//! body is CPU work proportional to its size, so it runs on the blocking pool, not on
//! the threads that serve connections. The answer is 200 only after the sink has made
//! the events durable (or recognised the delivery as an already-committed retry).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header, request::Parts};
use axum::response::Response;
use http_body_util::BodyExt;

use super::AppState;
use super::contract::{
    DeliveryRequest, HEADER_ACCESS_KEY, HEADER_COMMON_ATTRIBUTES, HEADER_PROTOCOL_VERSION,
    HEADER_REQUEST_ID, HEADER_SOURCE_ARN, MAX_PATH_BYTES, PROTOCOL_VERSION, Reply, SourceArn,
    check_request_id, parse_common_attributes,
};
use super::error::{ApiError, OUTCOME_DUPLICATE, OUTCOME_OK};
use super::listener::SlowBody;
use crate::clock::now_ms;
use crate::decode::{PARALLEL_DECODE_MIN_BYTES, decode_records_in_parallel};
use crate::event::Delivery;
use crate::limits::{DecodeBudget, gunzip_capped, gzip_size_hint};
use crate::metrics::DeliveryOutcome;
use crate::routing::RequestFacts;
use crate::server::admission::Reservation;
use crate::sink::dedup::DeliveryKey;
use crate::sink::{Committed, EventLines, SinkBatch};

/// What is learnt about a delivery as it is checked, for metrics and logs.
#[derive(Debug, Default)]
struct Tally {
    stream: Option<String>,
    access_key: Option<String>,
    body_bytes: u64,
    records: u64,
}

/// Handles a delivery on any path (any method: others than `POST` get 405).
pub(crate) async fn deliver(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if parts.method != axum::http::Method::POST {
        let mut response = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "",
            Some("deliveries are POST requests; health checks use GET /healthz"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let started = Instant::now();
    let echo_id = String::from_utf8_lossy(
        parts
            .headers
            .get(HEADER_REQUEST_ID)
            .map_or(&b""[..], HeaderValue::as_bytes),
    )
    .into_owned();
    let mut tally = Tally::default();
    let result = accept(&state, &parts, body, &mut tally).await;

    let labels = state
        .metrics
        .labels(tally.stream.as_deref(), tally.access_key.as_deref());
    let mut outcome = DeliveryOutcome {
        latency: started.elapsed(),
        body_bytes: tally.body_bytes,
        records: tally.records,
        ..DeliveryOutcome::default()
    };
    let response = match result {
        Ok(committed) => {
            outcome.outcome = match committed {
                Committed::Written { events } => {
                    outcome.events_written = events as u64;
                    OUTCOME_OK
                }
                Committed::Duplicate => OUTCOME_DUPLICATE,
            };
            tracing::debug!(
                outcome = outcome.outcome,
                records = tally.records,
                events = outcome.events_written,
                latency_ms = outcome.latency.as_secs_f64() * 1000.0,
                "Delivery stored."
            );
            reply(StatusCode::OK, &echo_id, None)
        }
        Err(error) => {
            outcome.outcome = error.outcome();
            let status = error.status();
            // One line per refused delivery: the only one, as the trace layer does
            // not log failures (see `ingest_router`). Never a key: errors hold
            // none, and the span holds the request id, method and path only.
            let cause = error.log_detail();
            if status.is_server_error() {
                tracing::warn!(%error, cause, status = status.as_u16(), "Delivery not stored; Firehose will retry.");
            } else {
                tracing::info!(%error, cause, status = status.as_u16(), "Delivery refused.");
            }
            reply(status, &echo_id, Some(&error.to_string()))
        }
    };
    state.metrics.record(&labels, &outcome);
    response
}

async fn accept(
    state: &AppState,
    parts: &Parts,
    body: Body,
    tally: &mut Tally,
) -> Result<Committed, ApiError> {
    let received_at = now_ms();
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    let headers = &parts.headers;
    let access_key_name = state
        .auth
        .check(headers.get(HEADER_ACCESS_KEY).map(HeaderValue::as_bytes))?;
    tally.access_key = access_key_name.as_deref().map(str::to_owned);

    let version = header_text(headers, &HEADER_PROTOCOL_VERSION)?.unwrap_or_default();
    if version != PROTOCOL_VERSION {
        return Err(ApiError::ProtocolVersion(version.to_owned()));
    }
    let request_id = header_text(headers, &HEADER_REQUEST_ID)?
        .filter(|id| !id.is_empty())
        .ok_or(ApiError::MissingRequestId)?;
    check_request_id(request_id).map_err(ApiError::InvalidRequestId)?;
    if parts.uri.path().len() > MAX_PATH_BYTES {
        return Err(ApiError::PathTooLong {
            limit: MAX_PATH_BYTES,
        });
    }
    // Absent only when the sender is not Firehose (curl, tests); then its facts are null.
    let source = header_text(headers, &HEADER_SOURCE_ARN)?
        .map(SourceArn::parse)
        .transpose()
        .map_err(ApiError::SourceArn)?;
    tally.stream = source.as_ref().map(|source| source.delivery_stream.clone());
    // Checked as a whole first: JSON parsing skips the text of fields it ignores.
    let common_attributes = header_text(headers, &HEADER_COMMON_ATTRIBUTES)?
        .map(|value| parse_common_attributes(value.as_bytes()))
        .transpose()
        .map_err(ApiError::CommonAttributes)?
        .unwrap_or_default();
    let gzipped = content_is_gzip(headers)?;

    let mut reservation = state.in_flight.reservation();
    let body = read_body(body, headers, state.limits.max_body_bytes, &mut reservation).await?;
    tally.body_bytes = body.len() as u64;

    // A retry of a delivery that every sink it can go to has committed already is
    // answered now: decoding it again would cost as much as the first time, and
    // count its records, dead letters and formats a second time.
    let dedup_key = DeliveryKey::new(
        source.as_ref().map(|source| source.arn.as_str()),
        request_id,
    );
    let candidates = state
        .router
        .for_request(&RequestFacts {
            path: parts.uri.path(),
            delivery_stream: source
                .as_ref()
                .map(|source| source.delivery_stream.as_str()),
            source_arn: source.as_ref().map(|source| source.arn.as_str()),
            access_key: tally.access_key.as_deref(),
            common_attributes: &common_attributes,
        })
        .candidates();
    if state.sinks.committed_everywhere(candidates, &dedup_key) {
        return Ok(Committed::Duplicate);
    }

    let delivery = Delivery {
        request_id: request_id.to_owned(),
        timestamp: 0,
        received_at,
        source_arn: source.as_ref().map(|source| source.arn.clone()),
        delivery_stream: source.as_ref().map(|source| source.delivery_stream.clone()),
        region: source.as_ref().map(|source| source.region.clone()),
        account_id: source.as_ref().map(|source| source.account_id.clone()),
        access_key_name: tally.access_key.clone(),
        path: parts.uri.path().to_owned(),
        common_attributes,
    };
    let blocking_state = state.clone();
    // One decode per core at a time: decoding is CPU work, and each decode may hold
    // an inflated record (up to max_record_inflated_bytes) outside the byte budget.
    let slot = Arc::clone(&state.decode_slots)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::ShuttingDown)?;
    // The blocking pool's threads do not inherit the request's span; carry it.
    let span = tracing::Span::current();
    let (batches, records, reservation) = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let _slot = slot;
        decode_body(&body, gzipped, delivery, &blocking_state, reservation)
    })
    .await
    .map_err(|_| ApiError::Record("decoding failed unexpectedly".into()))?;
    // Counted even when the batch is refused, so metrics show what arrived.
    tally.records = records;
    let batches = batches?;
    if batches.is_empty() {
        // Nothing to store (no records, only control messages, or all dropped).
        return Ok(Committed::Written { events: 0 });
    }
    let committed = state.sinks.deliver(batches).await?;
    drop(reservation);
    Ok(committed)
}

/// One delivery's batch for each sink its events were routed to.
type Batches = Vec<(usize, SinkBatch)>;

/// A request's reservation once decoding shares it with the [`DecodeBudget`].
type SharedReservation = Arc<std::sync::Mutex<Reservation>>;

/// Inflates (if gzip), parses and decodes a body, and routes its events into one
/// batch per sink. Returns the record count separately so metrics have it even on
/// failure.
fn decode_body(
    body: &[u8],
    gzipped: bool,
    delivery: Delivery,
    state: &AppState,
    mut reservation: Reservation,
) -> (Result<Batches, ApiError>, u64, SharedReservation) {
    let inflated;
    let json: &[u8] = if gzipped {
        // Reserve what the trailer claims before inflating, the rest after.
        let limits = state.limits;
        let claimed = gzip_size_hint(body)
            .unwrap_or(0)
            .min(limits.max_inflated_bytes);
        if let Err(error) = reservation.grow(claimed) {
            return (Err(error), 0, share(reservation));
        }
        inflated = match gunzip_capped(body, limits.max_inflated_bytes) {
            Ok(inflated) => inflated,
            Err(error) => return (Err(error.into()), 0, share(reservation)),
        };
        if let Err(error) = reservation.grow((inflated.len() as u64).saturating_sub(claimed)) {
            return (Err(error), 0, share(reservation));
        }
        &inflated
    } else {
        body
    };
    let reservation = share(reservation);
    let (result, records) = decode_json(json, delivery, state, &reservation);
    (result, records, reservation)
}

fn share(reservation: Reservation) -> SharedReservation {
    Arc::new(std::sync::Mutex::new(reservation))
}

/// Parses and decodes an (inflated) body, charging its events to `reservation` as
/// they are written, then routes them.
fn decode_json(
    json: &[u8],
    mut delivery: Delivery,
    state: &AppState,
    reservation: &SharedReservation,
) -> (Result<Batches, ApiError>, u64) {
    let limits = state.limits;
    let request = match DeliveryRequest::parse(json, limits.max_records) {
        Ok(request) => request,
        Err(error) => return (Err(error.into()), 0),
    };
    let records = request.records.len() as u64;
    if request.request_id != delivery.request_id {
        return (Err(ApiError::RequestIdMismatch), records);
    }
    delivery.timestamp = request.timestamp;
    // The events are held until the sinks have them: they are charged to the
    // in-flight budget as they are written, and may not pass the delivery's
    // allowance, so a small request cannot decode into a flood.
    let charged = Arc::clone(reservation);
    let budget = Arc::new(DecodeBudget::new(
        limits.decoded_allowance(json.len() as u64),
        Box::new(move |bytes| {
            charged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .grow(bytes)
                .is_ok()
        }),
    ));
    // A big delivery also takes the decode slots that are free at this moment, one
    // more thread per slot, so that it uses idle cores while decodes stay at one
    // per core (each may hold an inflated record outside the budget).
    let encoded: usize = request.records.iter().map(|record| record.len()).sum();
    let borrowed: Vec<_> = if encoded >= PARALLEL_DECODE_MIN_BYTES {
        std::iter::from_fn(|| state.decode_slots.try_acquire().ok())
            .take(state.cores.saturating_sub(1))
            .collect()
    } else {
        Vec::new()
    };
    let threads = 1 + borrowed.len();
    let decoded =
        decode_records_in_parallel(&request.records, &delivery, &state.decode, threads, &budget);
    drop(borrowed);
    let decoded = match decoded {
        Ok(decoded) => decoded,
        Err(error) => return (Err(error.into()), records),
    };
    state.metrics.record_decoding(
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
    let (batches, copied) = route(delivery, decoded, state);
    // Lines split between sinks that take different events are copies: held too.
    let held = reservation
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .grow(copied as u64);
    (held.map(|()| batches), records)
}

/// Splits a delivery's events and dead letters into one batch per sink; also
/// returns the bytes of copies the split made.
fn route(
    delivery: Delivery,
    decoded: crate::decode::Decoded,
    state: &AppState,
) -> (Batches, usize) {
    let request = RequestFacts {
        path: &delivery.path,
        delivery_stream: delivery.delivery_stream.as_deref(),
        source_arn: delivery.source_arn.as_deref(),
        access_key: delivery.access_key_name.as_deref(),
        common_attributes: &delivery.common_attributes,
    };
    let router = state.router.for_request(&request);
    let (events, dropped_events, copied_events) = decoded.events.route(&router);
    let (dead_letters, dropped_dead, copied_dead) = decoded.dead_letters.route(&router);
    let dropped = dropped_events + dropped_dead;
    if dropped > 0 {
        state.metrics.events_unrouted.inc_by(dropped as u64);
        tracing::debug!(dropped, "Events matched no route and were dropped.");
    }
    let dedup_key = DeliveryKey::new(delivery.source_arn.as_deref(), &delivery.request_id);
    let delivery = Arc::new(delivery);
    let mut batches: Batches = Vec::new();
    let tables = events
        .into_iter()
        .map(|(sink, lines)| (sink, lines, true))
        .chain(
            dead_letters
                .into_iter()
                .map(|(sink, lines)| (sink, lines, false)),
        );
    for (sink, lines, is_events) in tables {
        let position = match batches.iter().position(|(existing, _)| *existing == sink) {
            Some(position) => position,
            None => {
                batches.push((
                    sink,
                    SinkBatch {
                        delivery: Arc::clone(&delivery),
                        dedup_key,
                        events: EventLines::default(),
                        dead_letters: EventLines::default(),
                    },
                ));
                batches.len() - 1
            }
        };
        let batch = &mut batches[position].1;
        if is_events {
            batch.events = lines;
        } else {
            batch.dead_letters = lines;
        }
    }
    (batches, copied_events + copied_dead)
}

/// Reads the body, refusing more than `max` bytes.
///
/// Bytes are reserved from the in-flight budget as they arrive, never as declared:
/// a sender that declares a large body and sends it slowly holds only what it has
/// sent, so it cannot keep others out of the budget. The buffer grows
/// geometrically (few copies) up to the declared length at most, and the budget
/// covers its whole capacity, the memory really held. A body that falls behind the
/// pace its connection requires ([`SlowBody`]) is answered 408.
async fn read_body(
    mut body: Body,
    headers: &HeaderMap,
    max: u64,
    reservation: &mut Reservation,
) -> Result<Vec<u8>, ApiError> {
    let declared = content_length(headers)?;
    if declared.is_some_and(|declared| declared > max) {
        return Err(ApiError::BodyTooLarge { limit: max });
    }
    let ceiling = declared.unwrap_or(max);
    let mut bytes = Vec::new();
    let mut reserved: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(body_error)?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        let total = bytes.len() as u64 + chunk.len() as u64;
        if total > max {
            return Err(ApiError::BodyTooLarge { limit: max });
        }
        if total > reserved {
            let target = total.max(reserved.saturating_mul(2).min(ceiling));
            reservation.grow(target - reserved)?;
            reserved = target;
            let target = usize::try_from(target).map_err(|_| ApiError::Overloaded)?;
            bytes.reserve_exact(target - bytes.len());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The `Content-Length` header, if sent. hyper refuses a malformed one on real
/// connections; a request built another way is held to the same rule.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(text) = header_text(headers, &header::CONTENT_LENGTH)? else {
        return Ok(None);
    };
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(ApiError::InvalidHeader {
            name: header::CONTENT_LENGTH.as_str().to_owned(),
            reason: "not a decimal number",
        });
    }
    // All digits and still no u64: larger than any limit.
    Ok(Some(text.parse().unwrap_or(u64::MAX)))
}

/// Why the body could not be read: too slow (408), or broken off (400).
fn body_error(error: axum::Error) -> ApiError {
    match error.into_inner().downcast::<SlowBody>() {
        Ok(slow) => ApiError::BodyTooSlow(slow.to_string()),
        Err(error) => ApiError::BodyRead(error.to_string()),
    }
}

/// Whether the body is gzip (`Content-Encoding: gzip`) or plain (absent or
/// `identity`); any other encoding is refused.
fn content_is_gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some(text) = header_text(headers, &header::CONTENT_ENCODING)? else {
        return Ok(false);
    };
    let text = text.trim();
    if text.eq_ignore_ascii_case("gzip") || text.eq_ignore_ascii_case("x-gzip") {
        Ok(true)
    } else if text.is_empty() || text.eq_ignore_ascii_case("identity") {
        Ok(false)
    } else {
        Err(ApiError::ContentEncoding(text.to_owned()))
    }
}

/// A header's value as text, `None` when it is absent. A value that is not UTF-8,
/// or a header sent more than once, is refused with a 400 naming it: treating it as
/// absent, or picking one of the copies, would act on something the sender did not
/// mean. Firehose sends each of its headers once, in ASCII.
fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |reason| ApiError::InvalidHeader {
        name: name.as_str().to_owned(),
        reason,
    };
    if values.next().is_some() {
        return Err(invalid("sent more than once"));
    }
    std::str::from_utf8(value.as_bytes())
        .map(Some)
        .map_err(|_| invalid("not valid UTF-8"))
}

/// A reply in the contract's shape, with `Content-Type` and `Content-Length`.
pub(crate) fn reply(status: StatusCode, request_id: &str, error_message: Option<&str>) -> Response {
    let body = Reply {
        request_id,
        timestamp: now_ms(),
        error_message,
    }
    .to_json();
    let length = HeaderValue::from(body.len());
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, length);
    response
}
