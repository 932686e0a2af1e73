//! The delivery handler: `POST` on any path of the ingest listener.
//!
//! The checks run in the order that reveals least to a stranger: shutdown, then the
//! access key, then the headers, then the body. Reading, inflating and decoding the
//! body is CPU work proportional to its size, so it runs on the blocking pool, not on
//! the threads that serve connections. The answer is 200 only after the sink has made
//! the events durable (or recognised the delivery as an already-committed retry).

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::AppState;
use super::error::{ApiError, OUTCOME_DUPLICATE, OUTCOME_OK};
use super::listener::SlowBody;
use crate::admission::Reservation;
use crate::clock::now_ms;
use crate::firehose::{
    HEADER_ACCESS_KEY, HEADER_COMMON_ATTRIBUTES, HEADER_PROTOCOL_VERSION, HEADER_REQUEST_ID,
    HEADER_SOURCE_ARN, MAX_PATH_BYTES, PROTOCOL_VERSION, Reply, SourceArn, check_request_id,
    parse_common_attributes,
};
use crate::ingest::Arrival;
use crate::metrics::DeliveryRecorder;
use crate::sink::Committed;

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
    let request_id = String::from_utf8_lossy(
        parts
            .headers
            .get(HEADER_REQUEST_ID)
            .map_or(&b""[..], HeaderValue::as_bytes),
    )
    .into_owned();
    let (recorder, result) = match check(&state, &parts) {
        Ok(arrival) => {
            let recorder = state.metrics.delivery(
                arrival
                    .source
                    .as_ref()
                    .map(|source| source.delivery_stream.as_str()),
                arrival.access_key_name.as_deref(),
            );
            let result = receive(&state, arrival, body, &parts.headers, &recorder).await;
            (recorder, result)
        }
        Err(refused) => (
            state
                .metrics
                .delivery(refused.stream.as_deref(), refused.access_key.as_deref()),
            Err(refused.error),
        ),
    };
    let (outcome, events) = match &result {
        Ok(Committed::Written { events }) => (OUTCOME_OK, *events as u64),
        Ok(Committed::Duplicate) => (OUTCOME_DUPLICATE, 0),
        Err(error) => (error.outcome(), 0),
    };
    recorder.answered(outcome, started.elapsed(), events);
    Answer { request_id, result }.into_response()
}

/// A delivery refused by its headers, with what is known of its sender for the
/// metrics' labels.
struct Refused {
    error: ApiError,
    stream: Option<String>,
    access_key: Option<String>,
}

/// Checks what comes before the body, in the order that reveals least to a
/// stranger: shutdown, the access key, then the headers.
fn check(state: &AppState, parts: &Parts) -> Result<Arrival, Refused> {
    let received_at = now_ms();
    let refused = |error| Refused {
        error,
        stream: None,
        access_key: None,
    };
    if state.is_shutting_down() {
        return Err(refused(ApiError::ShuttingDown));
    }
    let headers = &parts.headers;
    let access_key_name = state
        .auth
        .current()
        .check(headers.get(HEADER_ACCESS_KEY).map(HeaderValue::as_bytes))
        .map_err(refused)?
        .as_deref()
        .map(str::to_owned);
    // A refusal past the key is counted under the key, and under the stream when
    // the source ARN header is valid, whatever else is wrong.
    arrival(
        headers,
        parts.uri.path(),
        access_key_name.clone(),
        received_at,
    )
    .map_err(|error| Refused {
        error,
        stream: header_text(headers, &HEADER_SOURCE_ARN)
            .ok()
            .flatten()
            .and_then(|arn| SourceArn::parse(arn).ok())
            .map(|source| source.delivery_stream),
        access_key: access_key_name,
    })
}

/// The delivery's facts from its headers, each header checked.
fn arrival(
    headers: &HeaderMap,
    path: &str,
    access_key_name: Option<String>,
    received_at: u64,
) -> Result<Arrival, ApiError> {
    let version = header_text(headers, &HEADER_PROTOCOL_VERSION)?.unwrap_or_default();
    if version != PROTOCOL_VERSION {
        return Err(ApiError::ProtocolVersion(version.to_owned()));
    }
    let request_id = header_text(headers, &HEADER_REQUEST_ID)?
        .filter(|id| !id.is_empty())
        .ok_or(ApiError::MissingRequestId)?;
    check_request_id(request_id).map_err(ApiError::InvalidRequestId)?;
    if path.len() > MAX_PATH_BYTES {
        return Err(ApiError::PathTooLong {
            limit: MAX_PATH_BYTES,
        });
    }
    // Absent only when the sender is not Firehose (curl, tests); then its facts are null.
    let source = header_text(headers, &HEADER_SOURCE_ARN)?
        .map(SourceArn::parse)
        .transpose()
        .map_err(ApiError::SourceArn)?;
    // Checked as a whole first: JSON parsing skips the text of fields it ignores.
    let common_attributes = header_text(headers, &HEADER_COMMON_ATTRIBUTES)?
        .map(|value| parse_common_attributes(value.as_bytes()))
        .transpose()
        .map_err(ApiError::CommonAttributes)?
        .unwrap_or_default();
    Ok(Arrival {
        request_id: request_id.to_owned(),
        path: path.to_owned(),
        source,
        access_key_name,
        common_attributes,
        gzipped: content_is_gzip(headers)?,
        received_at,
    })
}

/// Reads the body within the in-flight budget and hands it to the pipeline.
async fn receive(
    state: &AppState,
    arrival: Arrival,
    body: Body,
    headers: &HeaderMap,
    recorder: &DeliveryRecorder,
) -> Result<Committed, ApiError> {
    let mut reservation = state.in_flight.reservation();
    let body = read_body(body, headers, state.limits.max_body_bytes, &mut reservation).await?;
    recorder.body_read(body.len() as u64);
    Ok(state
        .ingest
        .run(arrival, body, reservation, recorder)
        .await?)
}

/// A delivery's answer: the reply in the contract's shape, echoing the request
/// id, and the delivery's one log line.
struct Answer {
    request_id: String,
    result: Result<Committed, ApiError>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self.result {
            Ok(committed) => {
                tracing::debug!(?committed, "Delivery stored.");
                reply(StatusCode::OK, &self.request_id, None)
            }
            Err(error) => {
                let status = error.status();
                // One line per refused delivery: the only one, as the trace layer
                // does not log failures (see `ingest_router`). Never a key: errors
                // hold none, and the span holds the request id, method and path.
                let cause = error.log_detail();
                if status.is_server_error() {
                    tracing::warn!(%error, cause, status = status.as_u16(), "Delivery not stored; Firehose will retry.");
                } else {
                    tracing::info!(%error, cause, status = status.as_u16(), "Delivery refused.");
                }
                reply(status, &self.request_id, Some(&error.to_string()))
            }
        }
    }
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
