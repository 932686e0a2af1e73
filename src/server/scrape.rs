//! A `prometheus` sink's scrape endpoint: its series written piece by piece on a
//! blocking thread and streamed to the scraper as they come, so that a scrape of a
//! million series neither holds the sink's lock nor takes its whole text in memory
//! (see [`crate::sink::prometheus::Scrape`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse as _;
use bytes::Bytes;
use http_body::Frame;
use tokio::sync::mpsc;

use crate::sink::prometheus::{Format, PrometheusSink};

/// Pieces written ahead of the scraper: with the one being written, a scrape holds
/// about three pieces of text at most, however many series the sink has.
const PIECES_AHEAD: usize = 2;

/// Answers a scrape of `sink` in `format` (what the `Accept` header asked for).
pub(super) fn respond(sink: PrometheusSink, format: Format) -> axum::response::Response {
    let (sender, receiver) = mpsc::channel::<Bytes>(PIECES_AHEAD);
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let mut scrape = sink.scrape(format);
        while let Some(piece) = scrape.next_piece() {
            if piece.is_empty() {
                continue;
            }
            if sender.blocking_send(Bytes::from(piece)).is_err() {
                // The scraper went away: nothing more to write.
                break;
            }
        }
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        Body::new(Pieces(receiver)),
    )
        .into_response()
}

/// The response body: the pieces as the writer sends them, ending when it is done.
struct Pieces(mpsc::Receiver<Bytes>);

impl http_body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|bytes| Ok(Frame::data(bytes))))
    }
}
