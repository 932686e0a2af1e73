//! The command line: the settings' flags (declared in [`super::settings`]),
//! `--health-check` and the `validate` subcommand.

use std::fmt;

use clap::Parser;
use serde::Deserialize;

use super::ConfigError;
use super::settings::{self, Settings};

const ABOUT: &str = "A durable receiver for Amazon Data Firehose HTTP endpoint deliveries.";
const LONG_ABOUT: &str = "\
A durable receiver for Amazon Data Firehose HTTP endpoint deliveries.

Point a Firehose stream's HTTP endpoint at Hydrant (through HTTPS on port 443, e.g. a \
load balancer or reverse proxy). Each delivery is checked, decoded and routed to its \
sinks (by default NDJSON segment files under --data-dir), and answered 200 only once \
every sink it was routed to has it durably: the file sink once the data is written and \
fsync'd, S3, NATS and Kafka once their service acknowledged it, stdout once written to \
the pipe.

`hydrant validate [OPTIONS]` checks the configuration and prints the sinks and routes \
it resolves to, without binding ports, locking the data directory or connecting to \
anything: exit 0, or 64 and the first problem. `hydrant check [OPTIONS]` does the same, \
then opens every routed sink and probes its service (the data directory, the S3 bucket, \
NATS, the Kafka brokers, the remote write receiver), for use before a deploy: exit 0 \
when every sink answers, 69 when one does not.

Options are flags, environment variables or keys of the TOML file named by --config; \
flags win over the environment, which wins over the file. Access keys from every \
source are used together. Sinks, routes and per-rule decode settings exist only in the \
file. Its string values may use ${VAR} or ${VAR:-default} (write $${ for a literal \
${), so secrets can stay in the environment.

Sizes: a number and B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024; \
K, M, G too), fractions allowed; a bare number is bytes. Durations need a unit: 250ms, \
30s, 5m, 1.5h, 1h30m (ns, us, ms, s, m, h, d, w); a bare number is refused.";

/// The command line: the settings, `--health-check`, or the `validate` subcommand
/// with the same settings.
#[derive(Debug, Parser)]
#[command(
    name = "hydrant",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub(super) struct Cli {
    #[command(flatten)]
    pub(super) settings: Settings,

    /// Instead of serving, ask the running Hydrant's admin listener whether it is ready (GET /readyz) and exit 0 if so, 1 if not: for container health checks. Needs only the admin address (--admin-listen, HYDRANT_ADMIN_LISTEN or admin_listen in --config)
    #[arg(long)]
    pub(super) health_check: bool,

    #[command(subcommand)]
    pub(super) command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum Command {
    /// Check the configuration (the same flags, variables and file as serving) and print the sinks and routes it resolves to; binds nothing, locks nothing, connects nowhere. Exit 0 if valid, 64 if not
    Validate(Settings),
    /// Like validate, then open every routed sink and probe its service (data directory, S3 bucket, NATS, Kafka brokers, remote write receiver) and print each one's answer; binds no port. Exit 0 if every sink answers, 64 if the configuration is invalid, 69 if a sink does not answer
    Check(Settings),
}

impl Cli {
    /// The command, with each setting's default quoted in its help from the same
    /// declaration that applies it.
    pub(super) fn command_for_parsing() -> clap::Command {
        let defaults = settings::defaults();
        let quote = |arg: clap::Arg| {
            let Some((_, default)) = defaults.iter().find(|(id, _)| arg.get_id() == *id) else {
                return arg;
            };
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {default}]"))
        };
        <Self as clap::CommandFactory>::command()
            .mut_args(quote)
            .mut_subcommand("validate", |validate| validate.mut_args(quote))
            .mut_subcommand("check", |check| check.mut_args(quote))
    }
}

/// A clap error as one line; the valid values, which clap prints on a line of their
/// own, are kept.
pub(super) fn usage_error(error: &clap::Error) -> ConfigError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            ConfigError::Display(error.render().to_string())
        }
        _ => {
            let mut line = first_line(&error.render().to_string());
            if let Some(ContextValue::Strings(values)) = error.get(ContextKind::ValidValue) {
                line.push_str(&format!("; expected one of {}", values.join(", ")));
            }
            ConfigError::Usage(line)
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}
