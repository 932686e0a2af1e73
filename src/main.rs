//! The `hydrant` binary: reads the configuration, starts, and stops. All the work
//! lives in the library (see `lib.rs`).

use std::process::ExitCode;

use hydrant::config::{Config, ConfigError, LogFormat};

/// sysexits.h EX_USAGE: the configuration is wrong.
const EX_USAGE: u8 = 64;

/// How long `--health-check` waits for the admin listener; container runtimes
/// usually allow a few seconds per check.
const HEALTH_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the binary talks to its operator before logging exists"
)]
fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args_os()) {
        Ok(config) => config,
        Err(ConfigError::Display(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("hydrant: error: {error}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if config.health_check {
        let ready = hydrant::server::health::probe_ready(config.admin_listen, HEALTH_CHECK_TIMEOUT);
        return if ready {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    init_logging(config.log_format);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hydrant: error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(hydrant::app::run(config, hydrant::shutdown::signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "Hydrant stopped.");
            eprintln!("hydrant: error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}
