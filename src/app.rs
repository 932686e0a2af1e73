//! The composition root: opens the sinks, assembles the server around them
//! ([`App::new`], which the integration tests use too), binds the listeners and
//! serves until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::reload::Hangups;
use crate::server::listener::LISTENER_INGEST;
use crate::server::tls::{
    CertificateSource, Certificates, HandshakeOutcome, Terminator, TlsSettings, server_config,
    spawn_reloader,
};
use crate::server::{self, AppState, Listeners, Settings};
use crate::sink::fanout::{FanoutSettings, SinkSetup, Sinks};
use crate::sink::file::OpenError;
use crate::sink::{OpenSinkError, SinkError};

/// Why Hydrant stopped with an error. Each variant has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A data directory could not be opened or recovered.
    #[error("{0}")]
    Storage(#[from] OpenError),
    /// A sink could not be set up.
    #[error("sink {name:?}: {error}")]
    Sink {
        /// The sink's name.
        name: String,
        /// What went wrong.
        error: SinkError,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address that failed.
        address: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The ingest listener's TLS could not be set up (the certificate files
    /// changed since the configuration was checked, and no longer load).
    #[error("tls: {0}")]
    Tls(String),
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
            // EX_USAGE, as for every configuration error: a sink refused its
            // settings, or the certificate does not load.
            Self::Sink {
                error: SinkError::Config(_),
                ..
            }
            | Self::Tls(_) => 64,
            // EX_UNAVAILABLE: the address is taken, or a sink cannot be set up.
            Self::Bind { .. } | Self::Sink { .. } => 69,
            Self::Serve(_) => 1,
        }
    }
}

/// Runs Hydrant with a checked configuration until `shutdown` resolves.
///
/// # Errors
///
/// [`RunError`] when a sink cannot be opened, a listener cannot be bound, or
/// serving fails.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let hangups = crate::reload::Hangups::listen();
    let metrics = Arc::new(Metrics::new(config.max_stream_labels));
    let (ingest_tls, _tls_reloader) = match &config.tls {
        Some(settings) => {
            let (terminator, reloader) = tls(settings, &metrics, hangups.clone())?;
            (Some(terminator), Some(AbortOnDrop(reloader)))
        }
        None => (None, None),
    };
    let used = config.router.used_sinks();
    let mut sinks = Vec::with_capacity(config.sinks.len());
    for (position, spec) in config.sinks.into_iter().enumerate() {
        if !used.contains(position) {
            // Opening it would connect to a service, or lock and recover a data
            // directory, for nothing: no event can reach it.
            tracing::info!(sink = %spec.name, "No route names this sink; it is not opened.");
            sinks.push(SinkSetup {
                name: spec.name,
                sink: None,
                gates_readiness: spec.gates_readiness,
            });
            continue;
        }
        let sink = spec
            .config
            .open(&spec.name, &metrics, &config.storage)
            .await
            .map_err(|error| match error {
                OpenSinkError::Storage(error) => RunError::Storage(error),
                OpenSinkError::Sink(error) => RunError::Sink {
                    name: spec.name.clone(),
                    error,
                },
            })?;
        tracing::info!(
            sink = %spec.name,
            kind = sink.kind(),
            gates_readiness = spec.gates_readiness,
            "Sink ready."
        );
        sinks.push(SinkSetup {
            name: spec.name,
            sink: Some(sink),
            gates_readiness: spec.gates_readiness,
        });
    }
    let settings = Settings {
        auth: config.auth,
        limits: config.limits,
        decode: config.decode,
        router: config.router,
    };
    let app = App::new(settings, sinks, config.fanout, metrics);
    // Access keys from files are read again on SIGHUP and when a file changes.
    let key_reloader = config.key_reload.map(|keys| {
        keys.spawn(
            hangups.clone(),
            app.state().auth().clone(),
            Arc::clone(app.state().metrics()),
        )
    });

    let https = ingest_tls.is_some();
    let listeners = Listeners {
        ingest: bind(config.listen).await?,
        admin: bind(config.admin_listen).await?,
        ingest_tls,
    };
    tracing::info!(listener = "ingest", address = %listeners.ingest.local_addr()?, https, "Listening.");
    tracing::info!(listener = "admin", address = %listeners.admin.local_addr()?, "Listening.");
    let served = app
        .serve(
            listeners,
            shutdown,
            config.shutdown_grace,
            config.connections,
        )
        .await;
    if let Some(reloader) = key_reloader {
        reloader.abort();
    }
    served?;
    Ok(())
}

/// How long `hydrant check` waits for a sink to open and its service to answer:
/// network clients connect in the background, so a probe is tried again until then.
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What `hydrant check` found of one sink.
#[derive(Debug)]
pub struct SinkCheck {
    /// The sink's name.
    pub name: String,
    /// Its type.
    pub kind: &'static str,
    /// `Ok` with a note, or why it cannot be used.
    pub result: Result<&'static str, String>,
}

/// Opens every sink a route names and probes its service, as serving would
/// before taking traffic, within [`CHECK_TIMEOUT`] each: for `hydrant check`,
/// before a deploy. A file sink whose data directory a running Hydrant holds is
/// reported as such, not opened.
pub async fn check(config: &Config) -> Vec<SinkCheck> {
    let metrics = Metrics::new(config.max_stream_labels);
    let used = config.router.used_sinks();
    let mut found = Vec::new();
    for (position, spec) in config.sinks.iter().enumerate() {
        if !used.contains(position) {
            continue;
        }
        let kind = spec.config.kind();
        let opened = tokio::time::timeout(
            CHECK_TIMEOUT,
            spec.config
                .clone()
                .open(&spec.name, &metrics, &config.storage),
        )
        .await;
        let result = match opened {
            Err(_) => Err(format!("not opened within {CHECK_TIMEOUT:?}")),
            Ok(Err(OpenSinkError::Storage(OpenError::Locked(_)))) => {
                Ok("in use by a running Hydrant (that one holds it; not opened)")
            }
            Ok(Err(error)) => Err(error.to_string()),
            Ok(Ok(sink)) => {
                let probed = probe_until(&sink, CHECK_TIMEOUT).await;
                sink.close().await;
                probed.map(|()| "ok")
            }
        };
        found.push(SinkCheck {
            name: spec.name.clone(),
            kind,
            result,
        });
    }
    found
}

/// Probes `sink` until it answers or `limit` passes: the last failure.
async fn probe_until(sink: &crate::sink::Sink, limit: std::time::Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match sink.probe().await {
            Ok(()) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= deadline => return Err(error.to_string()),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// Hydrant assembled around its sinks, ready to serve.
#[derive(Debug)]
pub struct App {
    state: AppState,
    sinks: Arc<Sinks>,
}

impl App {
    /// Wires the delivery pipeline, the fan-out and the handlers' state around
    /// `sinks` (opened, or left unopened when no route names them), which
    /// `settings.router`'s positions index.
    #[must_use]
    pub fn new(
        settings: Settings,
        sinks: Vec<impl Into<SinkSetup>>,
        fanout: FanoutSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let sinks = Arc::new(Sinks::new(sinks, fanout, &metrics));
        let state = AppState::new(settings, Arc::clone(&sinks), metrics);
        Self { state, sinks }
    }

    /// The state both listeners' handlers share (for `oneshot` tests).
    #[must_use]
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Learns which sinks' services answer, keeps checking them in the background,
    /// declares itself ready and serves until `shutdown` resolves, then drains.
    ///
    /// # Errors
    ///
    /// When an accept loop fails.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
        grace: std::time::Duration,
        connections: crate::server::listener::ConnectionSettings,
    ) -> std::io::Result<()> {
        // Learn which sinks' services answer before taking traffic, then keep checking.
        self.sinks.probe_all().await;
        let prober = self.sinks.spawn_prober();
        self.state.readiness().set(true);
        let served = server::serve(listeners, self.state, shutdown, grace, connections).await;
        prober.abort();
        served
    }
}

/// The ingest listener's TLS: its certificate loaded and served, and a task that
/// reads it again on SIGHUP and when its files change, or (ACME) that orders it
/// when there is none in the cache and renews it.
fn tls(
    settings: &TlsSettings,
    metrics: &Metrics,
    hangups: Hangups,
) -> Result<(Terminator, tokio::task::JoinHandle<()>), RunError> {
    let recorder = metrics.tls(
        LISTENER_INGEST,
        &HandshakeOutcome::ALL.map(HandshakeOutcome::label),
    );
    let certificates = Arc::new(Certificates::new(recorder.clone()));
    let reloader = match &settings.certificate {
        CertificateSource::Files(files) => {
            certificates.set(files.load().map_err(RunError::Tls)?);
            spawn_reloader(
                files.clone(),
                Arc::clone(&certificates),
                hangups,
                crate::reload::POLL_INTERVAL,
            )
        }
        CertificateSource::Acme(acme) => {
            // Only the cache is read here; the account and any order are the
            // background task's, so startup never waits for the CA.
            let cached = crate::server::tls::acme::load_cache(acme);
            match &cached {
                Some(issued) => {
                    tracing::info!(
                        domains = acme.domains.join(","),
                        not_after = issued.not_after,
                        "Serving the cached ACME certificate."
                    );
                    certificates.set(issued.loaded.clone());
                }
                None => tracing::warn!(
                    domains = acme.domains.join(","),
                    directory = acme.directory,
                    "No certificate yet: obtaining one from the ACME CA in the background; TLS handshakes fail until it is issued."
                ),
            }
            crate::server::tls::acme::spawn(
                acme.clone(),
                Arc::clone(&certificates),
                metrics.acme(),
                cached,
            )
        }
    };
    let acme = matches!(settings.certificate, CertificateSource::Acme(_));
    let config = server_config(certificates, acme).map_err(RunError::Tls)?;
    Ok((
        Terminator::new(config, settings.handshake_timeout, recorder),
        reloader,
    ))
}

/// Aborts a background task when dropped (when `run` returns).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| RunError::Bind { address, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each way Hydrant can fail to run has its exit code (sysexits.h), one row each.
    #[test]
    fn each_run_error_has_its_exit_code() {
        let io = || std::io::Error::other("x");
        let sink = |error: SinkError| RunError::Sink {
            name: "bus".into(),
            error,
        };
        let table: [(RunError, u8); 7] = [
            (RunError::Storage(OpenError::Locked("/data".into())), 73),
            (sink(SinkError::Config("bad url".into())), 64),
            (sink(SinkError::Unavailable("down".into())), 69),
            (sink(SinkError::Write("disk".into())), 69),
            (
                RunError::Bind {
                    address: SocketAddr::from(([127, 0, 0, 1], 8080)),
                    source: io(),
                },
                69,
            ),
            (
                RunError::Tls("cert.pem: no PEM certificate in it".into()),
                64,
            ),
            (RunError::Serve(io()), 1),
        ];
        for (error, code) in table {
            assert_eq!(error.exit_code(), code, "{error}");
        }
    }
}
