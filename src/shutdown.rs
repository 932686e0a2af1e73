//! Signals: SIGTERM (what orchestrators send) or SIGINT (Ctrl-C) stop Hydrant;
//! SIGHUP does not.

/// Resolves when the process is asked to stop.
pub async fn signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "Cannot listen for SIGINT.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!(signal = "SIGINT", "Stop requested."),
        () = terminate => tracing::info!(signal = "SIGTERM", "Stop requested."),
    }
}

/// Takes SIGHUP for the rest of the process's life (call it once, at startup).
///
/// SIGHUP's default action ends the process at once, without draining: deliveries
/// in flight lose their answer and the open segment is left for crash recovery.
/// Operators send it to ask a daemon to reload its files, and a closed terminal
/// sends it too; neither may stop Hydrant. Nothing is reloaded yet: certificates
/// and keys are read at startup, so the signal is logged and otherwise ignored.
/// Without a runtime with signal handling, or off Unix, this does nothing.
pub fn ignore_hangup() {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => {
            // The handler is installed by the call above; the task only logs.
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::warn!(
                        signal = "SIGHUP",
                        "Reload requested, but nothing is reloaded yet: the configuration, keys and certificates are read at startup. Restart Hydrant to apply changes."
                    );
                }
            });
        }
        Err(error) => tracing::error!(%error, "Cannot listen for SIGHUP."),
    }
}
