//! The accept loop of both listeners: hyper's HTTP/1.1 connections over tokio's
//! `TcpListener`, with what `axum::serve` has no knobs for: a cap on open
//! connections and deadlines for clients that send slowly or not at all.
//!
//! Every connection is in one of three phases, and each has its own rule:
//!
//! - **head**: a request head is arriving. A new connection starts here and must
//!   deliver its first head within the header timeout; a later request on a
//!   keep-alive connection gets the header timeout from its first byte. A head still
//!   incomplete at the deadline closes the connection (without a reply: the request
//!   could not even be read).
//! - **busy**: a request is being answered. Its body must keep moving: no gap longer
//!   than the body timeout, and, after a grace period, an average of at least the
//!   minimum body rate, and all of it must arrive within the body time limit. A body
//!   that falls behind is answered `408` in the contract's shape ([`SlowBody`], mapped by the delivery handler) and the connection is
//!   closed. Once the body is in, nothing is timed: the answer may wait on the sinks
//!   for as long as the delivery deadline allows, with no byte moving either way.
//! - **idle**: between requests on a keep-alive connection; closed after the idle
//!   timeout.
//!
//! A reply the client stops reading is given up after the body timeout as well, so a
//! client cannot hold a connection by never reading.
//!
//! Past the connection cap, new connections are accepted and closed at once (so the
//! kernel's backlog does not fill with them), counted, and logged at most once per
//! [`REFUSAL_LOG_INTERVAL`], so a flood cannot flood the log.
//!
//! At shutdown a listener stops accepting, closes its idle connections and those
//! still in their TLS handshake, lets busy ones finish their request (hyper's
//! graceful shutdown), and returns once every connection has ended. Dropping the loop's future aborts the connections left.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::tls::Terminator;
use crate::metrics::{ConnectionMetrics, Metrics};

/// Default time a client has to send a complete request head. Firehose, load
/// balancers and proxies send a head (a few KiB at most) in one write, so 10 s only
/// ever cuts a client that stalls or trickles on purpose, and bounds how long such a
/// client holds a connection and hyper's header buffer.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time a keep-alive connection may sit idle between requests. It is above
/// the 180 s idle timeout the README asks of a load balancer in front of Hydrant, so
/// the balancer, which knows when it will reuse a connection, closes idle ones first:
/// AWS advises targets of an ALB to keep connections longer than the ALB does, as a
/// target that closes first races the balancer's next request on it (a 502).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(200);

/// Default longest gap without a byte of a request body (or of a reply the client
/// should be reading). Firehose sends its body in one go; on a working path a gap of
/// 20 s is far beyond TCP's retransmissions, so the sender has stalled.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(20);

/// Default lowest average rate of a request body, in bytes per second, once the
/// grace period is over. Firehose bodies are MiBs: below 64 KiB/s even a default
/// 5 MiB buffer takes 80 s, and a slower body holds a connection (and the budget its
/// bytes take) for long. A site whose link is shared by several concurrent
/// deliveries still sends each well above it.
pub const DEFAULT_MIN_BODY_RATE: u64 = 64 * 1024;

/// Default time a request body may take before the minimum rate applies, so that a
/// slow start (TCP slow start, a proxy opening its upstream connection) is not
/// mistaken for a slow sender.
pub const DEFAULT_MIN_BODY_RATE_GRACE: Duration = Duration::from_secs(10);

/// Default longest time a whole request body may take. Firehose waits 3 minutes for
/// an answer and the sinks may take up to the 60 s delivery deadline, so a body
/// still arriving after 120 s could not be answered before Firehose gives up. It
/// bounds how long a large body sent at just the minimum rate holds its budget
/// (100 MiB at 64 KiB/s would take 1,600 s).
pub const DEFAULT_MAX_BODY_TIME: Duration = Duration::from_secs(120);

/// Default cap on open ingest connections. Each costs a file descriptor, and one
/// whose head is still arriving may hold up to hyper's ~400 KiB header buffer, so 512
/// bounds that at ~200 MiB and stays well below the common soft limit of 1,024
/// descriptors, leaving room for segment files, the journal and sink connections.
/// It is more than the in-flight budget can serve at once with typical 1–5 MiB
/// deliveries (512 MiB), so it only bites on connections that are not deliveries.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Default cap on open admin connections: a metrics scraper and a few health
/// probes need a handful.
pub const DEFAULT_MAX_ADMIN_CONNECTIONS: usize = 16;

/// Shortest time between two log lines about refused connections (or about accept
/// errors), so that a flood cannot flood the log; each line says how many happened
/// since the last one, and `hydrant_connections_refused_total` counts them all.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Pause after an accept error that is not about one connection (e.g. `EMFILE`,
/// out of file descriptors): short enough to resume quickly once a descriptor is
/// free, long enough not to spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Label value of the ingest listener.
pub const LISTENER_INGEST: &str = "ingest";
/// Label value of the admin listener.
pub const LISTENER_ADMIN: &str = "admin";

/// Connection caps and timeouts of both listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// Time to receive a complete request head.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may stay idle between requests.
    pub idle_timeout: Duration,
    /// Longest gap without a byte of a request body or of a reply being read.
    pub body_timeout: Duration,
    /// Lowest average request body rate, in bytes per second, after the grace
    /// period; 0 turns the check off.
    pub min_body_rate: u64,
    /// Time before the minimum body rate applies.
    pub min_body_rate_grace: Duration,
    /// Longest time a whole request body may take.
    pub max_body_time: Duration,
    /// Most open connections on the ingest listener.
    pub max_connections: usize,
    /// Most open connections on the admin listener.
    pub max_admin_connections: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            min_body_rate: DEFAULT_MIN_BODY_RATE,
            min_body_rate_grace: DEFAULT_MIN_BODY_RATE_GRACE,
            max_body_time: DEFAULT_MAX_BODY_TIME,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_admin_connections: DEFAULT_MAX_ADMIN_CONNECTIONS,
        }
    }
}

impl ConnectionSettings {
    /// Checks that every timeout and cap can work.
    ///
    /// # Errors
    ///
    /// A human-readable reason when a timeout or a cap is zero (a zero timeout
    /// would close every connection at once, a zero cap refuse them all).
    pub fn validate(&self) -> Result<(), String> {
        for (name, timeout) in [
            ("header-timeout", self.header_timeout),
            ("idle-timeout", self.idle_timeout),
            ("body-timeout", self.body_timeout),
            ("max-body-time", self.max_body_time),
        ] {
            if timeout.is_zero() {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.max_connections == 0 || self.max_admin_connections == 0 {
            return Err("max-connections and max-admin-connections must be greater than 0".into());
        }
        Ok(())
    }

    /// When a request body that started at `started`, last moved at `moved` and
    /// has brought `received` bytes fails unless more arrive, and why.
    fn body_deadline(
        &self,
        started: Instant,
        moved: Instant,
        received: u64,
    ) -> (Instant, SlowBody) {
        let stalled = (
            after(moved, self.body_timeout),
            SlowBody::Stalled(self.body_timeout),
        );
        let overdue = (
            after(started, self.max_body_time),
            SlowBody::Overdue(self.max_body_time),
        );
        let earliest = if overdue.0 < stalled.0 {
            overdue
        } else {
            stalled
        };
        if self.min_body_rate == 0 {
            return earliest;
        }
        // At time t after the start, `received` bytes keep the average at the
        // minimum until t = received / rate; never before the grace period ends.
        let enough_until = Duration::try_from_secs_f64(received as f64 / self.min_body_rate as f64)
            .unwrap_or(Duration::MAX)
            .max(self.min_body_rate_grace);
        let too_slow = (
            after(started, enough_until),
            SlowBody::TooSlow(self.min_body_rate),
        );
        if too_slow.0 < earliest.0 {
            too_slow
        } else {
            earliest
        }
    }
}

/// Which listener a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Firehose deliveries.
    Ingest,
    /// Metrics and health.
    Admin,
}

impl Listener {
    /// The `listener` label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Ingest => LISTENER_INGEST,
            Self::Admin => LISTENER_ADMIN,
        }
    }

    fn cap(self, settings: &ConnectionSettings) -> usize {
        match self {
            Self::Ingest => settings.max_connections,
            Self::Admin => settings.max_admin_connections,
        }
    }
}

/// Why a connection was closed by a timeout: the `reason` label values (a fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutReason {
    /// A request head did not arrive in time.
    Header,
    /// A keep-alive connection stayed idle too long.
    Idle,
    /// A request body stopped moving.
    BodyStalled,
    /// A request body arrived slower than the minimum rate.
    BodyRate,
    /// A request body took longer than the body time limit.
    BodyTime,
    /// The client stopped reading its reply.
    ReplyStalled,
}

impl TimeoutReason {
    /// Every reason, to show each counter from the start.
    pub const ALL: [Self; 6] = [
        Self::Header,
        Self::Idle,
        Self::BodyStalled,
        Self::BodyRate,
        Self::BodyTime,
        Self::ReplyStalled,
    ];

    /// The `reason` label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Idle => "idle",
            Self::BodyStalled => "body_stalled",
            Self::BodyRate => "body_rate",
            Self::BodyTime => "body_time",
            Self::ReplyStalled => "reply_stalled",
        }
    }
}

/// The error a request body yields when its sender falls behind; the delivery
/// handler answers it `408`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlowBody {
    /// No byte arrived for this long.
    #[error("no byte of the request body arrived for {0:?}")]
    Stalled(Duration),
    /// The average rate fell below this many bytes per second.
    #[error("the request body arrived slower than {0} bytes/s")]
    TooSlow(u64),
    /// The whole body did not arrive within this time.
    #[error("the request body did not arrive in full within {0:?}")]
    Overdue(Duration),
}

impl SlowBody {
    fn reason(self) -> TimeoutReason {
        match self {
            Self::Stalled(_) => TimeoutReason::BodyStalled,
            Self::TooSlow(_) => TimeoutReason::BodyRate,
            Self::Overdue(_) => TimeoutReason::BodyTime,
        }
    }
}

/// Accepts and serves connections on `listener` with `router` until `stop` turns
/// true (or its sender is dropped), then drains: idle connections are closed, busy
/// ones finish their request, and this returns when every connection has ended.
pub(crate) async fn serve_listener(
    listener: TcpListener,
    router: axum::Router,
    which: Listener,
    settings: ConnectionSettings,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    tls: Option<Terminator>,
) {
    let cap = which.cap(&settings);
    let label = which.label();
    let gauges = &metrics.connections;
    show_series(which, &settings, &metrics);
    let refused = gauges.refused.with_label_values(&[label]);
    let slots = Arc::new(Semaphore::new(cap));
    let mut connections = JoinSet::new();
    let mut refusals = Throttle::new(REFUSAL_LOG_INTERVAL);
    let mut accept_errors = Throttle::new(REFUSAL_LOG_INTERVAL);
    loop {
        let accepted = tokio::select! {
            () = stopped(&mut stop) => break,
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                if let Some(count) = accept_errors.tick() {
                    tracing::error!(listener = label, %error, errors = count, "Cannot accept connections.");
                }
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Closed at once: the client sees the connection end and retries later.
            drop(stream);
            refused.inc();
            if let Some(count) = refusals.tick() {
                tracing::warn!(
                    listener = label,
                    max_connections = cap,
                    refused = count,
                    "Connection limit reached; closing new connections at once."
                );
            }
            continue;
        };
        let connection = Arc::new(Connection::new(which, settings, gauges.clone()));
        let open = OpenConnection::new(gauges.open.with_label_values(&[label]));
        let (router, mut stop, tls) = (router.clone(), stop.clone(), tls.clone());
        connections.spawn(async move {
            let Some(tls) = tls else {
                serve_connection(stream, connection, router, stop, (slot, open)).await;
                return;
            };
            // The handshake holds the slot, within its own timeout; the head's
            // deadline then runs from its end. At shutdown a connection still in
            // its handshake has no request to finish, and is closed at once.
            let accepted = tokio::select! {
                accepted = tls.accept(stream) => accepted,
                () = stopped(&mut stop) => None,
            };
            if let Some(stream) = accepted {
                connection.set_phase(Phase::Head {
                    since: Instant::now(),
                });
                serve_connection(stream, connection, router, stop, (slot, open)).await;
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Shows the listener's connection series from now on, at zero (its cap at its
/// value), before it accepts anything: called by the server before it spawns the
/// listeners, so that a scrape right after startup finds them all.
pub(crate) fn show_series(which: Listener, settings: &ConnectionSettings, metrics: &Metrics) {
    let label = which.label();
    let gauges = &metrics.connections;
    gauges
        .limit
        .with_label_values(&[label])
        .set(i64::try_from(which.cap(settings)).unwrap_or(i64::MAX));
    gauges.open.with_label_values(&[label]);
    gauges.refused.with_label_values(&[label]);
    for reason in TimeoutReason::ALL {
        gauges.timed_out.with_label_values(&[label, reason.label()]);
    }
}

/// Serves one connection (plain TCP or TLS) until it ends, or until `stop` and
/// then the end of the request it is busy with. `_held` is its slot under the cap
/// and its place in the open connections gauge, given back when it ends.
async fn serve_connection<S>(
    stream: S,
    connection: Arc<Connection>,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
    _held: (OwnedSemaphorePermit, OpenConnection),
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&connection)));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        handle(router.clone(), Arc::clone(&connection), request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The phases above replace hyper's own header timer, which would also cut idle
    // keep-alive connections at the (much shorter) header timeout.
    builder.header_read_timeout(None);
    let served = builder.serve_connection(io, service);
    let mut served = std::pin::pin!(served);
    let result = tokio::select! {
        result = served.as_mut() => result,
        () = stopped(&mut stop) => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "Connection ended with an error.");
    }
}

/// Resolves once `stop` turns true, or its sender is gone (the server is going away).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Runs one request through the router, marking the connection busy meanwhile.
async fn handle(
    mut router: axum::Router,
    connection: Arc<Connection>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    connection.set_phase(Phase::Busy);
    let paced = Arc::clone(&connection);
    let request = request.map(|body| Body::new(PacedBody::new(body, paced)));
    std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut router, cx)).await?;
    let mut response = router.call(request).await?;
    connection.set_phase(Phase::Idle {
        since: Instant::now(),
    });
    if connection.close_after_reply.load(Ordering::Acquire) {
        // The rest of the slow body is never read, so the connection cannot be
        // reused; say so (hyper closes it after the reply).
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// Where a connection is in its life; see the module documentation.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A request head is arriving, since this instant.
    Head { since: Instant },
    /// A request is being answered.
    Busy,
    /// Waiting for the next request, since this instant.
    Idle { since: Instant },
}

/// What the parts of one connection share.
#[derive(Debug)]
struct Connection {
    which: Listener,
    settings: ConnectionSettings,
    metrics: ConnectionMetrics,
    phase: Mutex<Phase>,
    /// A request body fell behind: its reply closes the connection.
    close_after_reply: AtomicBool,
    /// A timeout has been counted for this connection (it is counted once).
    timed_out: AtomicBool,
}

impl Connection {
    fn new(which: Listener, settings: ConnectionSettings, metrics: ConnectionMetrics) -> Self {
        Self {
            which,
            settings,
            metrics,
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
            }),
            close_after_reply: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }

    /// Bytes arrived: on an idle connection, they start the next request's head.
    fn bytes_arrived(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                since: Instant::now(),
            };
        }
    }

    /// The deadline for the next byte to arrive, if the phase has one.
    fn read_deadline(&self) -> Option<(Instant, TimeoutReason)> {
        match self.phase() {
            Phase::Head { since } => Some((
                after(since, self.settings.header_timeout),
                TimeoutReason::Header,
            )),
            Phase::Idle { since } => Some((
                after(since, self.settings.idle_timeout),
                TimeoutReason::Idle,
            )),
            // The body keeps its own pace (PacedBody); the answer is not timed.
            Phase::Busy => None,
        }
    }

    /// Counts and logs a timeout; the error ends the connection when returned from
    /// its I/O.
    fn time_out(&self, reason: TimeoutReason) -> io::Error {
        if !self.timed_out.swap(true, Ordering::AcqRel) {
            self.metrics
                .timed_out
                .with_label_values(&[self.which.label(), reason.label()])
                .inc();
            tracing::debug!(
                listener = self.which.label(),
                reason = reason.label(),
                "Closing a connection that timed out."
            );
        }
        io::Error::new(io::ErrorKind::TimedOut, reason.label())
    }
}

/// A connection's stream (TCP, or TLS over it) that enforces the head, idle and
/// reply deadlines of its connection's phase, by failing the read or write that
/// waits past them.
#[derive(Debug)]
struct Watched<S> {
    stream: S,
    connection: Arc<Connection>,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    /// Since when writes have been blocked (the client is not reading).
    write_blocked_since: Option<Instant>,
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    fn new(stream: S, connection: Arc<Connection>) -> Self {
        Self {
            stream,
            connection,
            read_timer: None,
            write_timer: None,
            write_blocked_since: None,
        }
    }

    /// Passes a write's outcome on, failing it once writes have been blocked for
    /// longer than the body timeout.
    ///
    /// A write that goes through also arms the read deadline of the phase: the last
    /// write of a reply is where a busy connection turns idle, and hyper may not read
    /// again before the client sends something, so the read side alone would never
    /// see the idle deadline. The timer wakes the connection, whose next read fails.
    fn after_write<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.write_blocked_since = None;
            if let Some((deadline, _)) = self.connection.read_deadline() {
                let _ = expired(&mut self.read_timer, deadline, cx);
            }
            return result;
        }
        let since = *self.write_blocked_since.get_or_insert_with(Instant::now);
        let deadline = after(since, self.connection.settings.body_timeout);
        if expired(&mut self.write_timer, deadline, cx) {
            return Poll::Ready(Err(self.connection.time_out(TimeoutReason::ReplyStalled)));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.connection.bytes_arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.connection.read_deadline() {
                Some((deadline, reason)) if expired(&mut this.read_timer, deadline, cx) => {
                    Poll::Ready(Err(this.connection.time_out(reason)))
                }
                _ => Poll::Pending,
            },
            failed @ Poll::Ready(Err(_)) => failed,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, data);
        this.after_write(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, data);
        this.after_write(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        this.after_write(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A request body that fails with [`SlowBody`] when its sender falls behind the
/// body timeout or the minimum rate. The clock starts when the handler first asks
/// for the body.
#[derive(Debug)]
struct PacedBody {
    inner: Incoming,
    connection: Arc<Connection>,
    timer: Option<Pin<Box<Sleep>>>,
    /// When the body was first polled, and when a byte last arrived.
    started: Option<(Instant, Instant)>,
    received: u64,
    failed: bool,
}

impl PacedBody {
    fn new(inner: Incoming, connection: Arc<Connection>) -> Self {
        Self {
            inner,
            connection,
            timer: None,
            started: None,
            received: 0,
            failed: false,
        }
    }
}

impl hyper::body::Body for PacedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        let now = Instant::now();
        let (started, moved) = *this.started.get_or_insert((now, now));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref().filter(|data| !data.is_empty()) {
                    this.received += data.len() as u64;
                    this.started = Some((started, now));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let (deadline, slow) =
                    this.connection
                        .settings
                        .body_deadline(started, moved, this.received);
                if !expired(&mut this.timer, deadline, cx) {
                    return Poll::Pending;
                }
                this.failed = true;
                this.connection
                    .close_after_reply
                    .store(true, Ordering::Release);
                let _ = this.connection.time_out(slow.reason());
                Poll::Ready(Some(Err(Box::new(slow))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `duration` after `instant`; a timeout configured too large to add means never
/// (a year is as good as never for a connection).
fn after(instant: Instant, duration: Duration) -> Instant {
    instant
        .checked_add(duration)
        .unwrap_or_else(|| instant + NEVER)
}

/// Stands for a deadline that cannot be represented.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// Whether `deadline` has passed; if not, `timer` wakes the task when it does.
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    if Instant::now() >= deadline {
        return true;
    }
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if timer.deadline() != deadline {
        timer.as_mut().reset(deadline);
    }
    timer.as_mut().poll(cx).is_ready()
}

/// Errors of one connection, not of the listener (axum::serve skips them too).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Lets an event be logged at most once per interval, counting the ones between.
#[derive(Debug)]
struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    since_last: u64,
}

impl Throttle {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            since_last: 0,
        }
    }

    /// Records an event; returns how many happened since the last logged one
    /// (this one included) when it may be logged now.
    fn tick(&mut self) -> Option<u64> {
        self.since_last += 1;
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + self.interval) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since_last))
    }
}

/// Counts a connection in the open-connections gauge while it lives (also when
/// its task is aborted).
#[derive(Debug)]
struct OpenConnection(IntGauge);

impl OpenConnection {
    fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_deadline_is_the_earlier_of_stall_and_rate() {
        let settings = ConnectionSettings {
            body_timeout: Duration::from_secs(20),
            min_body_rate: 1000,
            min_body_rate_grace: Duration::from_secs(10),
            max_body_time: Duration::from_secs(120),
            ..ConnectionSettings::default()
        };
        let start = Instant::now();
        let table = [
            // (received, last byte after, deadline after, why)
            (0, 0, 10, SlowBody::TooSlow(1000)),
            (5_000, 9, 10, SlowBody::TooSlow(1000)),
            (15_000, 12, 15, SlowBody::TooSlow(1000)),
            (100_000, 30, 50, SlowBody::Stalled(Duration::from_secs(20))),
            (
                1_000_000,
                110,
                120,
                SlowBody::Overdue(Duration::from_secs(120)),
            ),
        ];
        for (received, moved, after, why) in table {
            let (deadline, slow) =
                settings.body_deadline(start, start + Duration::from_secs(moved), received);
            assert_eq!(
                (deadline - start, slow),
                (Duration::from_secs(after), why),
                "{received}"
            );
        }
        let no_rate = ConnectionSettings {
            min_body_rate: 0,
            ..settings
        };
        assert_eq!(
            no_rate.body_deadline(start, start, 0).1,
            SlowBody::Stalled(Duration::from_secs(20))
        );
    }

    #[test]
    fn timeouts_too_large_to_add_mean_never_and_do_not_panic() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::MAX), now + NEVER);
        let settings = ConnectionSettings {
            body_timeout: Duration::MAX,
            max_body_time: Duration::MAX,
            min_body_rate: 1,
            ..ConnectionSettings::default()
        };
        assert!(settings.body_deadline(now, now, u64::MAX).0 >= now + NEVER);
    }

    #[test]
    fn the_throttle_logs_once_per_interval_and_counts_the_rest() {
        let mut throttle = Throttle::new(Duration::from_millis(200));
        assert_eq!(throttle.tick(), Some(1));
        for _ in 0..99 {
            assert_eq!(throttle.tick(), None);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(throttle.tick(), Some(100));
    }

    #[test]
    fn zero_timeouts_and_caps_are_refused() {
        assert!(ConnectionSettings::default().validate().is_ok());
        let table = [
            ConnectionSettings {
                header_timeout: Duration::ZERO,
                ..ConnectionSettings::default()
            },
            ConnectionSettings {
                idle_timeout: Duration::ZERO,
                ..ConnectionSettings::default()
            },
            ConnectionSettings {
                body_timeout: Duration::ZERO,
                ..ConnectionSettings::default()
            },
            ConnectionSettings {
                max_body_time: Duration::ZERO,
                ..ConnectionSettings::default()
            },
            ConnectionSettings {
                max_connections: 0,
                ..ConnectionSettings::default()
            },
            ConnectionSettings {
                max_admin_connections: 0,
                ..ConnectionSettings::default()
            },
        ];
        for settings in table {
            assert!(settings.validate().is_err(), "{settings:?}");
        }
    }
}
