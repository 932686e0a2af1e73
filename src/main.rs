//! The `hydrant` binary: reads the configuration, starts, and stops. All the work
//! lives in the library (see `lib.rs`).

use std::process::ExitCode;

use hydrant::config::{ConfigError, Invocation, LogFormat};

/// sysexits.h EX_USAGE: the configuration is wrong.
const EX_USAGE: u8 = 64;
/// sysexits.h EX_UNAVAILABLE: a service a sink needs does not answer.
const EX_UNAVAILABLE: u8 = 69;

/// How long `--health-check` waits for the admin listener; container runtimes
/// usually allow a few seconds per check.
const HEALTH_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[expect(
    clippy::print_stdout,
    reason = "the binary prints --help and --version itself"
)]
fn main() -> ExitCode {
    let config = match Invocation::from_args(std::env::args_os()) {
        Ok(Invocation::Serve(config)) => config,
        Ok(Invocation::Validate(config)) => {
            // Nothing is bound, locked or connected: the configuration is only shown.
            for warning in &config.warnings {
                warn(warning);
            }
            // A closed standard output (`hydrant validate | head -1`) is not an error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), config.describe().as_bytes());
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Check(config)) => return check(&config),
        Ok(Invocation::HealthCheck(admin_listen)) => {
            let ready = hydrant::server::health::probe_ready(admin_listen, HEALTH_CHECK_TIMEOUT);
            return if ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Err(ConfigError::Display(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            report(&error.to_string());
            return ExitCode::from(EX_USAGE);
        }
    };
    let log = match init_logging(config.log_format) {
        Ok(log) => log,
        Err(error) => {
            report(&format!("cannot start logging: {error}"));
            return ExitCode::FAILURE;
        }
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // Before any client starts, so every TLS connection uses the same backend.
    hydrant::tls::install_crypto_provider();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            drop(log);
            report(&format!("cannot start the runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(hydrant::app::run(*config, hydrant::shutdown::signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "Hydrant stopped.");
            // The log's last lines first, then the one-line summary.
            drop(log);
            report(&error.to_string());
            ExitCode::from(error.exit_code())
        }
    }
}

/// `hydrant check`: prints the configuration, then each routed sink's answer to a
/// probe; EX_UNAVAILABLE (69) when one does not answer.
#[expect(clippy::print_stdout, reason = "the check's report is its output")]
fn check(config: &hydrant::config::Config) -> ExitCode {
    for warning in &config.warnings {
        warn(warning);
    }
    print!("{}", config.describe());
    hydrant::tls::install_crypto_provider();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            report(&format!("cannot start the runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let found = runtime.block_on(hydrant::app::check(config));
    let mut failed = 0;
    println!("sinks:");
    for sink in &found {
        match &sink.result {
            Ok(note) => println!("  {} ({}): {note}", sink.name, sink.kind),
            Err(reason) => {
                failed += 1;
                println!("  {} ({}): FAILED: {reason}", sink.name, sink.kind);
            }
        }
    }
    if failed == 0 {
        println!("Every sink answered.");
        ExitCode::SUCCESS
    } else {
        report(&format!("{failed} sink(s) did not answer"));
        ExitCode::from(EX_UNAVAILABLE)
    }
}

/// The multi-threaded runtime, with I/O, time and signals.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Writes `hydrant: error: <text>` to standard error, ignoring a closed one
/// (`eprintln!` would panic).
fn report(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "hydrant: error: {text}");
}

/// Writes `hydrant: warning: <text>` to standard error, ignoring a closed one.
fn warn(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "hydrant: warning: {text}");
}

/// Logs through [`hydrant::logging`], so a closed or full standard error neither
/// panics nor stalls the server; the guard writes the last lines at exit.
fn init_logging(format: LogFormat) -> std::io::Result<hydrant::logging::LogGuard> {
    let (writer, guard) = hydrant::logging::LogWriter::stderr()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
    Ok(guard)
}
