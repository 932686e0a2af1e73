//! The HTTP side: the ingest listener (Firehose deliveries) and the admin listener.
//!
//! Ingest listener:
//! - `POST /<any path>`: a Firehose delivery ([`delivery`]). Each stream can have
//!   its own path; the path is kept in every event.
//! - `GET /healthz`: 200, for load balancer probes. Other methods and paths: 405
//!   with a JSON error and the methods that are allowed.
//!
//! Admin listener (loopback by default):
//! - `GET /metrics`: Prometheus text ([`crate::metrics`]).
//! - `GET /healthz`: 200 while serving; `GET /readyz`: 200 once storage is open
//!   and every sink that gates readiness is up. Other methods: 405, other paths:
//!   404, each with a JSON error.
//! - `GET <path>` of each `prometheus` sink (default `/cloudwatch/metrics`): its
//!   series, in Prometheus text or OpenMetrics ([`crate::sink::prometheus`]),
//!   streamed as they are written ([`scrape`]).
//!
//! Both listeners run the accept loop of [`listener`], which caps open connections
//! and times out clients that send slowly or not at all.

pub mod auth;
mod delivery;
pub mod error;
pub mod health;
pub mod listener;
mod scrape;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::trace::TraceLayer;

use crate::admission::InFlight;
use crate::decode::{DecodePool, DecodeSettings};
use crate::firehose::HEADER_REQUEST_ID;
use crate::ingest::Ingest;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::routing::Router as Routes;
use crate::sink::fanout::Sinks;
use crate::sink::prometheus::{Format, check_path};
use auth::{Auth, SharedAuth};
use health::Readiness;
use listener::{ConnectionSettings, Listener};

/// Longest request id kept in a log span; Firehose's are 36-character GUIDs, and a
/// client must not be able to write unbounded text into the logs.
const MAX_LOGGED_REQUEST_ID: usize = 128;

/// What the operator configured for handling deliveries.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Access keys.
    pub auth: Auth,
    /// Limits on untrusted input.
    pub limits: Limits,
    /// How records are decoded.
    pub decode: DecodeSettings,
    /// Which sinks events go to (positions in the sinks given to [`AppState::new`]).
    pub router: Routes,
}

/// Everything a request handler needs, shared by both listeners.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// What both listeners' handlers share; reached through [`AppState`]'s methods
/// from outside the server.
#[derive(Debug)]
pub struct Shared {
    auth: SharedAuth,
    limits: Limits,
    in_flight: InFlight,
    ingest: Arc<Ingest>,
    sinks: Arc<Sinks>,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    shutting_down: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Assembles the state; not ready until [`Readiness::set`] is called.
    #[must_use]
    pub fn new(settings: Settings, sinks: Arc<Sinks>, metrics: Arc<Metrics>) -> Self {
        let Settings {
            auth,
            limits,
            decode,
            router,
        } = settings;
        let gauge = metrics.in_flight_gauge(limits.max_in_flight_bytes);
        let ingest = Ingest::new(
            limits,
            decode,
            router,
            Arc::clone(&sinks),
            Arc::clone(&metrics),
            DecodePool::for_this_machine(),
        );
        Self(Arc::new(Shared {
            auth: SharedAuth::new(auth, metrics.access_keys_gauge()),
            limits,
            in_flight: InFlight::new(limits.max_in_flight_bytes, gauge),
            ingest: Arc::new(ingest),
            sinks,
            metrics,
            readiness: Readiness::default(),
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// The access keys in use, which a reload may replace.
    #[must_use]
    pub fn auth(&self) -> &SharedAuth {
        &self.0.auth
    }

    /// Limits on untrusted input.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// The in-flight byte budget.
    #[must_use]
    pub fn in_flight(&self) -> &InFlight {
        &self.0.in_flight
    }

    /// The sinks, behind their fan-out.
    #[must_use]
    pub fn sinks(&self) -> &Arc<Sinks> {
        &self.0.sinks
    }

    /// Hydrant's metrics.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    /// Readiness reported on `/readyz`.
    #[must_use]
    pub fn readiness(&self) -> &Readiness {
        &self.0.readiness
    }

    /// From now on, deliveries get 503 and `/readyz` says not ready.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.readiness.set(false);
    }

    /// Whether shutdown has begun.
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// `Allow` of the ingest listener's `/healthz`: probes `GET` (and so `HEAD`) it, and
/// a stream may deliver to it like to any other path.
const ALLOW_HEALTHZ: &str = "GET, HEAD, POST";
/// `Allow` of the admin listener's paths.
const ALLOW_ADMIN: &str = "GET, HEAD";

/// The ingest listener's routes.
pub fn ingest_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(health::live)
                .post(delivery::deliver)
                .fallback(|| async {
                    method_not_allowed(
                        ALLOW_HEALTHZ,
                        "/healthz takes GET (health checks) or POST (deliveries)",
                    )
                }),
        )
        .fallback(delivery::deliver)
        // The delivery handler logs each refused delivery once, at WARN for a 5xx
        // and at INFO for a 4xx, with its reason; the layer's own failure line
        // (an ERROR for every 503) would say the same twice, and a sink outage
        // would fill the log with errors for every Firehose retry.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_failure(()),
        )
        .with_state(state)
}

/// The admin listener's routes, with the scrape endpoint of each `prometheus`
/// sink at its path.
pub fn admin_router(state: AppState) -> Router {
    let only_get = || async { method_not_allowed(ALLOW_ADMIN, "the admin listener takes GET") };
    let mut router = Router::new();
    let mut paths: Vec<String> = Vec::new();
    for sink in state.sinks.scrape_endpoints() {
        // The configuration refuses two sinks on one path and the admin
        // listener's own paths; a set of sinks assembled by hand is held to the
        // same, as the router would panic on either.
        let path = sink.path().to_owned();
        if paths.contains(&path) || check_path(&path).is_err() {
            tracing::warn!(path = %path, "A prometheus sink's path is taken or invalid; not served.");
            continue;
        }
        let handler = move |headers: HeaderMap| {
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|value| value.to_str().ok());
            let response = scrape::respond(sink.clone(), Format::negotiate(accept));
            async move { response }
        };
        router = router.route(&path, get(handler).fallback(only_get));
        paths.push(path);
    }
    router
        .route("/metrics", get(metrics).fallback(only_get))
        .route("/healthz", get(health::live).fallback(only_get))
        .route(
            "/readyz",
            get(|State(state): State<AppState>| async move {
                health::ready(state.readiness.is_ready() && state.sinks.ready())
            })
            .fallback(only_get),
        )
        .fallback(|| async {
            delivery::reply(
                StatusCode::NOT_FOUND,
                "",
                Some("not found; the admin listener serves /metrics, /healthz and /readyz"),
            )
        })
        .with_state(state)
}

/// `405` with a JSON error in the reply shape and the methods that `allow`.
fn method_not_allowed(allow: &'static str, message: &str) -> axum::response::Response {
    let mut response = delivery::reply(StatusCode::METHOD_NOT_ALLOWED, "", Some(message));
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
}

/// One span per request, carrying the Firehose request id (never the access key).
fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get(HEADER_REQUEST_ID)
        .map(|value| String::from_utf8_lossy(value.as_bytes()))
        .unwrap_or_default();
    let request_id: String = request_id.chars().take(MAX_LOGGED_REQUEST_ID).collect();
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    )
}

/// The listeners a server runs on.
#[derive(Debug)]
pub struct Listeners {
    /// Firehose deliveries.
    pub ingest: TcpListener,
    /// Metrics and health.
    pub admin: TcpListener,
    /// TLS on the ingest listener, when it serves HTTPS.
    pub ingest_tls: Option<tls::Terminator>,
}

/// Serves both listeners until `shutdown` resolves, then drains: deliveries in
/// flight get up to `grace` to finish, new ones get 503, and the sink is closed
/// (pending commits finished, open segment completed) before this returns.
/// `connections` caps each listener's connections and sets their timeouts.
pub async fn serve(
    listeners: Listeners,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
    connections: ConnectionSettings,
) -> std::io::Result<()> {
    let (stop, stopped) = watch::channel(false);
    for which in [Listener::Ingest, Listener::Admin] {
        listener::show_series(which, &connections, &state.metrics);
    }
    let ingest = tokio::spawn(listener::serve_listener(
        listeners.ingest,
        ingest_router(state.clone()),
        Listener::Ingest,
        connections,
        Arc::clone(&state.metrics),
        stopped.clone(),
        listeners.ingest_tls,
    ));
    let admin = tokio::spawn(listener::serve_listener(
        listeners.admin,
        admin_router(state.clone()),
        Listener::Admin,
        connections,
        Arc::clone(&state.metrics),
        stopped,
        None,
    ));

    shutdown.await;
    tracing::info!(
        grace_seconds = grace.as_secs_f64(),
        "Shutting down: draining deliveries in flight."
    );
    state.begin_shutdown();
    let _ = stop.send(true);
    let ingest_abort = ingest.abort_handle();
    match tokio::time::timeout(grace, ingest).await {
        Ok(result) => result.map_err(std::io::Error::other)?,
        Err(_) => {
            tracing::warn!(
                "Grace period over; closing connections still in flight (Firehose will retry them)."
            );
            // Dropping the accept loop aborts its connections.
            ingest_abort.abort();
        }
    }
    admin.abort();
    state.sinks.close().await;
    tracing::info!("Storage closed; shutdown complete.");
    Ok(())
}
