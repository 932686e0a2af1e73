//! Health and readiness.
//!
//! - `GET /healthz` (ingest and admin listeners): 200 while the process serves HTTP;
//!   for load balancer probes.
//! - `GET /readyz` (admin listener): 200 once storage is open and recovered and every
//!   sink is up; 503 while starting, while a sink's circuit breaker has it marked
//!   down, and once shutdown has begun, so orchestrators stop sending traffic
//!   before the listener closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

/// Whether the server is ready for deliveries.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the server ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the server is ready.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `GET /healthz`.
pub(crate) async fn live() -> impl IntoResponse {
    json_status(StatusCode::OK, "ok")
}

/// `GET /readyz`.
pub(crate) fn ready(ready: bool) -> impl IntoResponse {
    if ready {
        json_status(StatusCode::OK, "ready")
    } else {
        json_status(StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

fn json_status(status: StatusCode, text: &'static str) -> impl IntoResponse {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"status":"{text}"}}"#),
    )
}
