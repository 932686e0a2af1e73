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

/// Asks a running Hydrant's admin listener at `admin` whether it is ready: a
/// `GET /readyz` answered 200 within `timeout`. An unspecified address (`0.0.0.0`,
/// `::`) is asked on loopback. For container health checks, so an image needs no
/// HTTP client of its own.
#[must_use]
pub fn probe_ready(admin: std::net::SocketAddr, timeout: std::time::Duration) -> bool {
    use std::io::{Read, Write};
    let mut target = admin;
    if target.ip().is_unspecified() {
        target.set_ip(if admin.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&target, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status_line = [0u8; 12];
    stream.read_exact(&mut status_line).is_ok() && &status_line[9..12] == b"200"
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
