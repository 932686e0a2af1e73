//! The composition root: opens storage, binds the listeners and serves until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::server::{self, AppState, Listeners, Settings};
use crate::sink::file::{FileSink, OpenError};

/// Why Hydrant stopped with an error. Each variant has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The data directory could not be opened or recovered.
    #[error("{0}")]
    Storage(#[from] OpenError),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address that failed.
        address: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
}

impl RunError {
    /// The process exit code for this error (sysexits.h).
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            // EX_CANTCREAT: the data directory cannot be used.
            Self::Storage(_) => 73,
            // EX_UNAVAILABLE: the address is taken or not ours.
            Self::Bind { .. } => 69,
            Self::Serve(_) => 1,
        }
    }
}

/// Runs Hydrant with a checked configuration until `shutdown` resolves.
///
/// # Errors
///
/// [`RunError`] when storage cannot be opened, a listener cannot be bound, or
/// serving fails.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new(config.max_stream_labels));
    let data_dir = config.storage.data_dir.clone();
    let storage_metrics = metrics.storage.clone();
    let sink = tokio::task::spawn_blocking(move || FileSink::open(config.storage, storage_metrics))
        .await
        .map_err(std::io::Error::other)??;
    let recovery = sink.recovery();
    tracing::info!(
        data_dir = %data_dir.display(),
        segments_recovered = recovery.segments_recovered,
        bytes_truncated = recovery.bytes_truncated,
        deliveries_remembered = recovery.deliveries_remembered,
        "Storage open."
    );
    let sink = Arc::new(sink);

    let listeners = Listeners {
        ingest: bind(config.listen).await?,
        admin: bind(config.admin_listen).await?,
    };
    tracing::info!(listener = "ingest", address = %listeners.ingest.local_addr()?, "Listening.");
    tracing::info!(listener = "admin", address = %listeners.admin.local_addr()?, "Listening.");

    let settings = Settings {
        auth: config.auth,
        limits: config.limits,
        decode: config.decode,
    };
    let state = AppState::new(settings, Arc::clone(&sink), metrics);
    state.readiness.set(true);
    server::serve(listeners, state, shutdown, config.shutdown_grace).await?;
    Ok(())
}

async fn bind(address: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| RunError::Bind { address, source })
}
