//! Configuration: command-line flags, environment variables and an optional TOML
//! file, checked into one typed [`Config`] before anything starts.
//!
//! Precedence, highest first: flag, environment variable, config file, default.
//! Access keys are the exception: keys from every source are used together (names
//! must be unique across them). Every default is a named constant next to the code
//! it governs; the `--help` text quotes them and a test keeps the two in step.
//!
//! Sizes and durations are read by [`crate::units`], everywhere. String values in
//! the TOML file may name environment variables (`${VAR}`, `${VAR:-default}`), so
//! secrets need not sit in the file; see [`interpolate`].

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{FromArgMatches as _, Parser};
use serde::Deserialize;

use crate::decode::{BadRecords, DecodeSettings, DecoderRule, FORMAT_NAMES, Format};
use crate::glob::Glob;
use crate::limits::{self, Limits};
use crate::metrics::DEFAULT_MAX_STREAM_LABELS;
use crate::routing::{EVENT_FORMATS, KINDS, MAX_SINKS, Match, Route, Router, SinkSet};
use crate::server::auth::{AccessKey, Auth, MAX_ACCESS_KEY_BYTES};
use crate::server::listener::{
    ConnectionSettings, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_ADMIN_CONNECTIONS, DEFAULT_MAX_BODY_TIME, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MIN_BODY_RATE, DEFAULT_MIN_BODY_RATE_GRACE,
};
use crate::sink::discard::DiscardConfig;
use crate::sink::fanout::{
    DEFAULT_ATTEMPTS, DEFAULT_BACKOFF, DEFAULT_DEADLINE, FanoutSettings, MAX_BACKOFF,
};
use crate::sink::file::{
    DEFAULT_DEDUP_CAPACITY, DEFAULT_DEDUP_WINDOW, DEFAULT_SEGMENT_MAX_AGE,
    DEFAULT_SEGMENT_MAX_BYTES, FileSinkSettings,
};
#[cfg(feature = "kafka")]
use crate::sink::kafka::KafkaConfig;
#[cfg(feature = "nats")]
use crate::sink::nats::NatsConfig;
#[cfg(feature = "s3")]
use crate::sink::s3::S3Config;
use crate::sink::stdout::StdoutConfig;
use crate::units::{parse_duration, parse_size};

/// Default ingest address: all interfaces, since Firehose reaches Hydrant through a
/// TLS-terminating proxy or load balancer that usually runs on another host.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default admin address: loopback only, since metrics are not for the internet.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default time deliveries in flight get to finish at shutdown. Firehose waits up to
/// 3 minutes for an answer, but orchestrators usually kill after 30 s or so, and an
/// unfinished delivery is simply retried.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// Access key names go into events and metric labels, so they are short and plain.
const MAX_KEY_NAME_CHARS: usize = 64;

/// Environment variable of access keys, `NAME=KEY` entries separated by newlines.
/// Read here rather than by clap, which would ignore it whenever `--access-key` is
/// given: keys from every source are used together.
pub const ENV_ACCESS_KEYS: &str = "HYDRANT_ACCESS_KEYS";
/// Environment variable naming an access key file, used besides `--access-key-file`.
pub const ENV_ACCESS_KEY_FILE: &str = "HYDRANT_ACCESS_KEY_FILE";

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
anything: exit 0, or 64 and the first problem.

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
struct Cli {
    #[command(flatten)]
    settings: Args,

    /// Instead of serving, ask the running Hydrant's admin listener whether it is ready (GET /readyz) and exit 0 if so, 1 if not: for container health checks. Needs only the admin address (--admin-listen, HYDRANT_ADMIN_LISTEN or admin_listen in --config)
    #[arg(long)]
    health_check: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check the configuration (the same flags, variables and file as serving) and print the sinks and routes it resolves to; binds nothing, locks nothing, connects nowhere. Exit 0 if valid, 64 if not
    Validate(Args),
}

/// The settings. Every field is optional so that the file and the defaults can fill
/// in what was not given; defaults are quoted in the help text.
#[derive(Debug, clap::Args)]
struct Args {
    /// Ingest listener address (Firehose deliveries: POST on any path; GET /healthz) [default: 0.0.0.0:8080]
    #[arg(long, env = "HYDRANT_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Admin listener address (GET /metrics, /healthz, /readyz) [default: 127.0.0.1:9464]
    #[arg(long, env = "HYDRANT_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,

    /// Directory for event segments and the commit journal [default: ./data]
    #[arg(long, env = "HYDRANT_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// An access key Firehose must send, as NAME=KEY (split at the first '='). Repeatable. Keys from every source are used together: these flags, HYDRANT_ACCESS_KEYS (entries separated by newlines), key files and the config file; names must be unique. Prefer a key file, which keeps keys out of the process list
    #[arg(long = "access-key", value_name = "NAME=KEY")]
    access_keys: Vec<String>,

    /// File of access keys, one NAME=KEY per line; blank lines and lines starting with '#' are skipped. Repeatable; HYDRANT_ACCESS_KEY_FILE and access_key_file in the config file name more, all used
    #[arg(long = "access-key-file", value_name = "FILE")]
    access_key_files: Vec<PathBuf>,

    /// Accept deliveries without an access key. Only for trusted networks and tests
    #[arg(long, env = "HYDRANT_NO_AUTH")]
    no_auth: bool,

    /// TOML configuration file (keys as in the README's configuration table)
    #[arg(long, env = "HYDRANT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Largest request body accepted, as received; larger ones get 413 [default: 100MiB]
    #[arg(long, env = "HYDRANT_MAX_BODY_BYTES", value_name = "SIZE")]
    max_body_bytes: Option<ByteSize>,

    /// Largest body after Content-Encoding: gzip inflation; larger ones get 413 [default: 100MiB]
    #[arg(long, env = "HYDRANT_MAX_INFLATED_BYTES", value_name = "SIZE")]
    max_inflated_bytes: Option<ByteSize>,

    /// Most records accepted in one delivery; more get 400 [default: 10000]
    #[arg(long, env = "HYDRANT_MAX_RECORDS", value_name = "N")]
    max_records: Option<usize>,

    /// Most bytes held by all deliveries in flight; past it new ones get 503 at once [default: 512MiB]
    #[arg(long, env = "HYDRANT_MAX_IN_FLIGHT_BYTES", value_name = "SIZE")]
    max_in_flight_bytes: Option<ByteSize>,

    /// Most bytes of events one delivery may decode into, per byte of its inflated body (but at least 64MiB); more gets 413 [default: 64]
    #[arg(long, env = "HYDRANT_MAX_DECODED_RATIO", value_name = "N")]
    max_decoded_ratio: Option<u64>,

    /// Most bytes of events one delivery may decode into, whatever its size; more gets 413 [default: 1GiB]
    #[arg(long, env = "HYDRANT_MAX_DECODED_BYTES", value_name = "SIZE")]
    max_decoded_bytes: Option<ByteSize>,
    /// Time a client has to send a complete request head (from connecting, or from the first byte of a later request); then the connection is closed [default: 10s]
    #[arg(long, env = "HYDRANT_HEADER_TIMEOUT", value_name = "DURATION")]
    header_timeout: Option<HumanDuration>,

    /// Time a keep-alive connection may stay idle between requests; keep it above the idle timeout of a load balancer in front [default: 200s]
    #[arg(long, env = "HYDRANT_IDLE_TIMEOUT", value_name = "DURATION")]
    idle_timeout: Option<HumanDuration>,

    /// Longest gap without a byte of a request body (answered 408, connection closed) or of a reply the client should be reading (connection closed) [default: 20s]
    #[arg(long, env = "HYDRANT_BODY_TIMEOUT", value_name = "DURATION")]
    body_timeout: Option<HumanDuration>,

    /// Lowest average rate of a request body, per second, after --min-body-rate-grace; slower bodies are answered 408. 0 turns the check off [default: 64KiB]
    #[arg(long, env = "HYDRANT_MIN_BODY_RATE", value_name = "SIZE")]
    min_body_rate: Option<ByteSize>,

    /// Time a request body may take before --min-body-rate applies [default: 10s]
    #[arg(long, env = "HYDRANT_MIN_BODY_RATE_GRACE", value_name = "DURATION")]
    min_body_rate_grace: Option<HumanDuration>,

    /// Longest time a whole request body may take to arrive; longer is answered 408 (Firehose waits 3 minutes for the answer) [default: 120s]
    #[arg(long, env = "HYDRANT_MAX_BODY_TIME", value_name = "DURATION")]
    max_body_time: Option<HumanDuration>,

    /// Most open connections on the ingest listener; past it new ones are closed at once [default: 512]
    #[arg(long, env = "HYDRANT_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,

    /// Most open connections on the admin listener [default: 16]
    #[arg(long, env = "HYDRANT_MAX_ADMIN_CONNECTIONS", value_name = "N")]
    max_admin_connections: Option<usize>,

    /// Complete a segment file once it reaches this size [default: 128MiB]
    #[arg(long, env = "HYDRANT_SEGMENT_MAX_BYTES", value_name = "SIZE")]
    segment_max_bytes: Option<ByteSize>,

    /// Complete a segment file once it is this old [default: 5m]
    #[arg(long, env = "HYDRANT_SEGMENT_MAX_AGE", value_name = "DURATION")]
    segment_max_age: Option<HumanDuration>,

    /// How long a committed delivery is remembered, so Firehose's retries of it are not stored twice [default: 2h]
    #[arg(long, env = "HYDRANT_DEDUP_WINDOW", value_name = "DURATION")]
    dedup_window: Option<HumanDuration>,

    /// Most committed deliveries remembered for duplicate detection [default: 100000]
    #[arg(long, env = "HYDRANT_DEDUP_CAPACITY", value_name = "N")]
    dedup_capacity: Option<usize>,

    /// Time deliveries in flight get to finish after SIGTERM or SIGINT [default: 25s]
    #[arg(long, env = "HYDRANT_SHUTDOWN_GRACE", value_name = "DURATION")]
    shutdown_grace: Option<HumanDuration>,

    /// Most distinct delivery stream names given their own metric label; the rest share "(other)" [default: 100]
    #[arg(long, env = "HYDRANT_MAX_STREAM_LABELS", value_name = "N")]
    max_stream_labels: Option<usize>,

    /// Format of records when no --path-format or --stream-format rule matches: auto (sniff each record), cloudwatch_logs, cloudwatch_logs_messages, metric_stream_json, metric_stream_otel07, metric_stream_otel10, eventbridge, vpc_flow or raw [default: auto]
    #[arg(long, env = "HYDRANT_FORMAT", value_name = "FORMAT")]
    format: Option<String>,

    /// Fix the format of deliveries to matching URL paths, as GLOB=FORMAT (e.g. /metrics/*=metric_stream_otel10). Repeatable; the first matching rule wins. No environment variable: rules are flags or [[decode.rules]]
    #[arg(long = "path-format", value_name = "GLOB=FORMAT")]
    path_formats: Vec<String>,

    /// Fix the format of deliveries from matching delivery streams, as GLOB=FORMAT (e.g. vpc-flows-*=vpc_flow). Repeatable; checked after --path-format rules
    #[arg(long = "stream-format", value_name = "GLOB=FORMAT")]
    stream_formats: Vec<String>,

    /// What to do with a record that cannot be decoded: dead_letter (store it with its reason under DATA_DIR/dead_letter and accept the rest) or reject (answer 400 for the whole delivery) [default: dead_letter]
    #[arg(long, env = "HYDRANT_BAD_RECORDS", value_name = "POLICY")]
    bad_records: Option<String>,

    /// Field list of custom-format VPC flow logs, space-separated (the default version-2 format needs none)
    #[arg(long, env = "HYDRANT_VPC_FLOW_FIELDS", value_name = "FIELDS")]
    vpc_flow_fields: Option<String>,

    /// Largest size one record may inflate to (gzip'd CloudWatch Logs records); larger ones are bad records [default: 16MiB]
    #[arg(long, env = "HYDRANT_MAX_RECORD_INFLATED_BYTES", value_name = "SIZE")]
    max_record_inflated_bytes: Option<ByteSize>,

    /// Longest time a delivery may wait for its sinks before it is answered 503 (Firehose waits at most 3 minutes) [default: 60s]
    #[arg(long, env = "HYDRANT_DELIVERY_DEADLINE", value_name = "DURATION")]
    delivery_deadline: Option<HumanDuration>,

    /// Attempts per sink and delivery, the first included, before the delivery is answered 503 [default: 3]
    #[arg(long, env = "HYDRANT_FANOUT_ATTEMPTS", value_name = "N")]
    fanout_attempts: Option<u32>,

    /// Wait before a sink's first retry, doubled for each further one; every wait is at most 5s [default: 250ms]
    #[arg(long, env = "HYDRANT_FANOUT_BACKOFF", value_name = "DURATION")]
    fanout_backoff: Option<HumanDuration>,

    /// Log format: text or json (the level comes from RUST_LOG, default info) [default: text]
    #[arg(long, env = "HYDRANT_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

/// The TOML file. Unknown keys are errors, so a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    access_keys: Vec<FileAccessKey>,
    access_key_file: Option<PathBuf>,
    no_auth: Option<bool>,
    shutdown_grace: Option<HumanDuration>,
    max_stream_labels: Option<usize>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    connections: FileConnections,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default)]
    decode: FileDecode,
    /// Sinks besides the embedded file sink; each a table with `name` and `type`,
    /// with its place in the file for messages.
    #[serde(default)]
    sinks: Vec<toml::Spanned<toml::Table>>,
    #[serde(default)]
    routes: Vec<FileRoute>,
    #[serde(default)]
    routing: FileRouting,
    #[serde(default)]
    fanout: FileFanout,
    /// Where each `[[sinks]]` entry starts (` line L, column C`), for messages.
    #[serde(skip)]
    sink_locations: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    name: Option<String>,
    sinks: Vec<String>,
    #[serde(rename = "continue", default)]
    continue_matching: bool,
    path: Option<String>,
    delivery_stream: Option<String>,
    source_arn: Option<String>,
    access_key: Option<String>,
    #[serde(default)]
    common_attributes: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    kind: OneOrMany,
    #[serde(default)]
    format: OneOrMany,
    log_group: Option<String>,
    namespace: Option<String>,
    source: Option<String>,
    detail_type: Option<String>,
}

/// A string or a list of strings.
#[derive(Debug, Default)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

/// By hand rather than `untagged`, whose error ("did not match any variant")
/// does not say what was expected.
impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(text.to_owned()))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut many = Vec::new();
                while let Some(one) = seq.next_element::<String>()? {
                    many.push(one);
                }
                Ok(OneOrMany::Many(many))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::None => Vec::new(),
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRouting {
    default_sinks: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFanout {
    attempts: Option<u32>,
    backoff: Option<HumanDuration>,
    deadline: Option<HumanDuration>,
}

/// A file sink besides the embedded one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtraFileSink {
    data_dir: PathBuf,
    segment_max_bytes: Option<ByteSize>,
    segment_max_age: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDecode {
    default_format: Option<String>,
    bad_records: Option<String>,
    vpc_flow_fields: Option<Vec<String>>,
    max_record_inflated_bytes: Option<ByteSize>,
    #[serde(default)]
    rules: Vec<FileDecoderRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDecoderRule {
    path: Option<String>,
    delivery_stream: Option<String>,
    format: String,
    vpc_flow_fields: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAccessKey {
    name: String,
    key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_body_bytes: Option<ByteSize>,
    max_inflated_bytes: Option<ByteSize>,
    max_records: Option<usize>,
    max_in_flight_bytes: Option<ByteSize>,
    max_decoded_ratio: Option<u64>,
    max_decoded_bytes: Option<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConnections {
    header_timeout: Option<HumanDuration>,
    idle_timeout: Option<HumanDuration>,
    body_timeout: Option<HumanDuration>,
    min_body_rate: Option<ByteSize>,
    min_body_rate_grace: Option<HumanDuration>,
    max_body_time: Option<HumanDuration>,
    max_connections: Option<usize>,
    max_admin_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    segment_max_bytes: Option<ByteSize>,
    segment_max_age: Option<HumanDuration>,
    dedup_window: Option<HumanDuration>,
    dedup_capacity: Option<usize>,
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

/// The checked configuration Hydrant runs with.
#[derive(Debug)]
pub struct Config {
    /// Ingest listener address.
    pub listen: SocketAddr,
    /// Admin listener address.
    pub admin_listen: SocketAddr,
    /// How deliveries are authenticated.
    pub auth: Auth,
    /// Where each access key came from, by name (for `validate`; never the secret).
    pub key_sources: Vec<(String, String)>,
    /// Limits on untrusted input.
    pub limits: Limits,
    /// Connection caps and timeouts of both listeners.
    pub connections: ConnectionSettings,
    /// The file sink's settings.
    pub storage: FileSinkSettings,
    /// How records are decoded.
    pub decode: DecodeSettings,
    /// Every sink, in order: the embedded file sink ([`EMBEDDED_SINK`]) first.
    pub sinks: Vec<SinkSpec>,
    /// Which sinks events go to.
    pub router: Router,
    /// Retries and deadline of the fan-out to sinks.
    pub fanout: FanoutSettings,
    /// Drain time at shutdown.
    pub shutdown_grace: Duration,
    /// Cardinality cap on the delivery stream label.
    pub max_stream_labels: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Things the operator should know, to log once logging is set up.
    pub warnings: Vec<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Serve with this configuration (no subcommand).
    Serve(Box<Config>),
    /// `hydrant validate`: print what this configuration resolves to and exit.
    Validate(Box<Config>),
    /// `--health-check`: probe the admin listener at this address and exit.
    HealthCheck(SocketAddr),
}

/// Why the configuration was not accepted. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--help` or `--version` was asked for: print it and exit successfully.
    #[error("{0}")]
    Display(String),
    /// The command line could not be parsed.
    #[error("{0}")]
    Usage(String),
    /// A value is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Reads one environment variable (the process environment, or a test's).
type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

impl Invocation {
    /// Parses the command line (the program name first) and the process
    /// environment, and for serving or validating checks the whole configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Display`] for `--help`/`--version`, otherwise a one-line
    /// description of the first problem found.
    pub fn from_args<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::from_args_and_env(args, &|name| std::env::var_os(name))
    }

    /// [`Self::from_args`] with the variables Hydrant reads itself (access keys, key
    /// files, `${VAR}` in the file) taken from `env`; clap still reads the others
    /// from the process environment.
    fn from_args_and_env<I, T>(args: I, env: Env<'_>) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command_for_parsing()
            .try_get_matches_from(args)
            .map_err(|error| usage_error(&error))?;
        let cli = Cli::from_arg_matches(&matches).map_err(|error| usage_error(&error))?;
        if cli.health_check {
            return health_check_address(&cli.settings, env).map(Self::HealthCheck);
        }
        match cli.command {
            Some(Command::Validate(settings)) => {
                Config::from_settings(settings, env).map(|config| Self::Validate(Box::new(config)))
            }
            None => {
                Config::from_settings(cli.settings, env).map(|config| Self::Serve(Box::new(config)))
            }
        }
    }
}

impl Cli {
    fn command_for_parsing() -> clap::Command {
        <Self as clap::CommandFactory>::command()
    }
}

/// A clap error as one line; the valid values, which clap prints on a line of their
/// own, are kept.
fn usage_error(error: &clap::Error) -> ConfigError {
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

/// The admin address for `--health-check`: from the flag or its variable, else from
/// the config file's `admin_listen`, else the default. Nothing else of the
/// configuration is needed or checked, so a container whose keys are given to the
/// server as arguments can still run the check.
fn health_check_address(settings: &Args, env: Env<'_>) -> Result<SocketAddr, ConfigError> {
    if let Some(address) = settings.admin_listen {
        return Ok(address);
    }
    let Some(path) = &settings.config else {
        return Ok(default_addr(DEFAULT_ADMIN_LISTEN));
    };
    let text = read_text(path, "config file")?;
    let document = parse_document(&text, path)?;
    let Some(item) = document.get("admin_listen") else {
        return Ok(default_addr(DEFAULT_ADMIN_LISTEN));
    };
    let where_ = |message: &str| {
        invalid(format!(
            "config file {}{}: admin_listen: {message}",
            path.display(),
            item.span()
                .map(|span| location(&text, span.start))
                .unwrap_or_default()
        ))
    };
    let written = item
        .as_str()
        .ok_or_else(|| where_("expected a string such as \"127.0.0.1:9464\""))?;
    interpolate(written, env)
        .map_err(|message| where_(&message))?
        .parse()
        .map_err(|_| where_("invalid socket address syntax"))
}

/// Where each access key came from: a label for messages and the `NAME=KEY` pairs.
#[derive(Debug, Default)]
struct KeySource {
    label: String,
    keys: Vec<(String, String)>,
}

impl Config {
    fn from_settings(settings: Args, env: Env<'_>) -> Result<Self, ConfigError> {
        let Some(path) = settings.config.clone() else {
            return Self::merge(settings, FileConfig::default(), env);
        };
        let text = read_text(&path, "config file")?;
        let (text, expansions) = expand_document(&text, &path, env)?;
        let file = toml::from_str::<FileConfig>(&text).map_err(|error| {
            let at = error
                .span()
                .map(|span| location(&text, span.start))
                .unwrap_or_default();
            invalid(format!(
                "config file {}{at}: {}",
                path.display(),
                one_line(error.message())
            ))
        });
        // Messages name values; a value that came from the environment may be a
        // secret, so it is shown as the `${VAR}` it was written as.
        file.and_then(|mut file| {
            file.sink_locations = file
                .sinks
                .iter()
                .map(|sink| location(&text, sink.span().start))
                .collect();
            Self::merge(settings, file, env)
        })
        .map_err(|error| expansions.scrub(error))
    }

    fn merge(args: Args, file: FileConfig, env: Env<'_>) -> Result<Self, ConfigError> {
        let mut warnings = Vec::new();
        let limits = Limits {
            max_body_bytes: pick(args.max_body_bytes, file.limits.max_body_bytes)
                .map_or(limits::DEFAULT_MAX_BODY_BYTES, |size| size.0),
            max_inflated_bytes: pick(args.max_inflated_bytes, file.limits.max_inflated_bytes)
                .map_or(limits::DEFAULT_MAX_INFLATED_BYTES, |size| size.0),
            max_records: pick(args.max_records, file.limits.max_records)
                .unwrap_or(limits::DEFAULT_MAX_RECORDS),
            max_in_flight_bytes: pick(args.max_in_flight_bytes, file.limits.max_in_flight_bytes)
                .map_or(limits::DEFAULT_MAX_IN_FLIGHT_BYTES, |size| size.0),
            max_decoded_ratio: pick(args.max_decoded_ratio, file.limits.max_decoded_ratio)
                .unwrap_or(limits::DEFAULT_MAX_DECODED_RATIO),
            max_decoded_bytes: pick(args.max_decoded_bytes, file.limits.max_decoded_bytes)
                .map_or(limits::DEFAULT_MAX_DECODED_BYTES, |size| size.0),
        };
        limits.validate().map_err(ConfigError::Invalid)?;
        let file_connections = file.connections;
        let connections = ConnectionSettings {
            header_timeout: pick(args.header_timeout, file_connections.header_timeout)
                .map_or(DEFAULT_HEADER_TIMEOUT, |d| d.0),
            idle_timeout: pick(args.idle_timeout, file_connections.idle_timeout)
                .map_or(DEFAULT_IDLE_TIMEOUT, |d| d.0),
            body_timeout: pick(args.body_timeout, file_connections.body_timeout)
                .map_or(DEFAULT_BODY_TIMEOUT, |d| d.0),
            min_body_rate: pick(args.min_body_rate, file_connections.min_body_rate)
                .map_or(DEFAULT_MIN_BODY_RATE, |size| size.0),
            min_body_rate_grace: pick(
                args.min_body_rate_grace,
                file_connections.min_body_rate_grace,
            )
            .map_or(DEFAULT_MIN_BODY_RATE_GRACE, |d| d.0),
            max_body_time: pick(args.max_body_time, file_connections.max_body_time)
                .map_or(DEFAULT_MAX_BODY_TIME, |d| d.0),
            max_connections: pick(args.max_connections, file_connections.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_admin_connections: pick(
                args.max_admin_connections,
                file_connections.max_admin_connections,
            )
            .unwrap_or(DEFAULT_MAX_ADMIN_CONNECTIONS),
        };
        connections.validate().map_err(ConfigError::Invalid)?;

        let mut storage = FileSinkSettings::new(
            pick(args.data_dir, file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        );
        storage.segment_max_bytes = pick(args.segment_max_bytes, file.storage.segment_max_bytes)
            .map_or(DEFAULT_SEGMENT_MAX_BYTES, |s| s.0);
        storage.segment_max_age = pick(args.segment_max_age, file.storage.segment_max_age)
            .map_or(DEFAULT_SEGMENT_MAX_AGE, |d| d.0);
        storage.dedup_window = pick(args.dedup_window, file.storage.dedup_window)
            .map_or(DEFAULT_DEDUP_WINDOW, |d| d.0);
        storage.dedup_capacity = pick(args.dedup_capacity, file.storage.dedup_capacity)
            .unwrap_or(DEFAULT_DEDUP_CAPACITY);
        if storage.segment_max_bytes == 0 || storage.segment_max_age.is_zero() {
            return Err(invalid(
                "segment-max-bytes and segment-max-age must be greater than 0",
            ));
        }

        let decode = build_decode(
            DecodeArgs {
                format: args.format,
                path_formats: args.path_formats,
                stream_formats: args.stream_formats,
                bad_records: args.bad_records,
                vpc_flow_fields: args.vpc_flow_fields,
                max_record_inflated_bytes: args.max_record_inflated_bytes,
            },
            file.decode,
        )?;
        let sinks = build_sinks(file.sinks, &file.sink_locations, &storage, &mut warnings)?;
        let router = build_router(file.routes, file.routing, &sinks)?;
        let fanout = build_fanout(
            FileFanout {
                attempts: pick(args.fanout_attempts, file.fanout.attempts),
                backoff: pick(args.fanout_backoff, file.fanout.backoff),
                deadline: pick(args.delivery_deadline, file.fanout.deadline),
            },
            &storage,
        )?;

        let mut sources = vec![KeySource {
            label: "--access-key".into(),
            keys: parse_key_entries(args.access_keys.iter().map(String::as_str), "--access-key")?,
        }];
        if let Some(entries) = env(ENV_ACCESS_KEYS) {
            let entries = entries
                .into_string()
                .map_err(|_| invalid(format!("{ENV_ACCESS_KEYS} is not valid UTF-8")))?;
            let lines = entries
                .lines()
                .map(|line| line.trim_end_matches('\r'))
                .filter(|line| !line.trim().is_empty());
            sources.push(KeySource {
                label: ENV_ACCESS_KEYS.into(),
                keys: parse_key_entries(lines, ENV_ACCESS_KEYS)?,
            });
        }
        let mut key_files: Vec<(PathBuf, &str)> = args
            .access_key_files
            .into_iter()
            .map(|path| (path, "--access-key-file"))
            .collect();
        if let Some(path) = env(ENV_ACCESS_KEY_FILE).filter(|path| !path.is_empty()) {
            key_files.push((PathBuf::from(path), ENV_ACCESS_KEY_FILE));
        }
        if let Some(path) = file.access_key_file {
            key_files.push((path, "access_key_file in the config file"));
        }
        for (index, (path, named_by)) in key_files.iter().enumerate() {
            // The same file named twice (say by the flag and by the config file) is
            // one source, not a clash of every name in it with itself.
            if key_files[..index].iter().any(|(other, _)| other == path) {
                continue;
            }
            sources.push(KeySource {
                label: format!("access key file {} ({named_by})", path.display()),
                keys: read_key_file(path, &mut warnings)?,
            });
        }
        sources.push(KeySource {
            label: "[[access_keys]] in the config file".into(),
            keys: file
                .access_keys
                .into_iter()
                .map(|entry| (entry.name, entry.key))
                .collect(),
        });
        let no_auth = args.no_auth || file.no_auth.unwrap_or(false);
        let auth = build_auth(&sources, no_auth)?;
        if auth == Auth::Disabled {
            warnings.push(
                "AUTHENTICATION IS OFF (--no-auth): anyone who can reach the ingest listener can write data".into(),
            );
        }
        let key_sources = sources
            .iter()
            .flat_map(|source| {
                source
                    .keys
                    .iter()
                    .map(|(name, _)| (name.clone(), source.label.clone()))
            })
            .collect();

        Ok(Self {
            listen: pick(args.listen, file.listen).unwrap_or_else(|| default_addr(DEFAULT_LISTEN)),
            admin_listen: pick(args.admin_listen, file.admin_listen)
                .unwrap_or_else(|| default_addr(DEFAULT_ADMIN_LISTEN)),
            auth,
            key_sources,
            limits,
            connections,
            storage,
            decode,
            sinks,
            router,
            fanout,
            shutdown_grace: pick(args.shutdown_grace, file.shutdown_grace)
                .map_or(DEFAULT_SHUTDOWN_GRACE, |d| d.0),
            max_stream_labels: pick(args.max_stream_labels, file.max_stream_labels)
                .unwrap_or(DEFAULT_MAX_STREAM_LABELS),
            log_format: pick(args.log_format, file.log_format).unwrap_or_default(),
            warnings,
        })
    }
}

/// The fan-out's settings, each from its flag, variable or `[fanout]` key.
fn build_fanout(
    given: FileFanout,
    storage: &FileSinkSettings,
) -> Result<FanoutSettings, ConfigError> {
    let fanout = FanoutSettings {
        attempts: given.attempts.unwrap_or(DEFAULT_ATTEMPTS),
        backoff: given.backoff.map_or(DEFAULT_BACKOFF, |d| d.0),
        deadline: given.deadline.map_or(DEFAULT_DEADLINE, |d| d.0),
        dedup_window: storage.dedup_window,
        dedup_capacity: storage.dedup_capacity,
    };
    if fanout.attempts == 0 {
        return Err(invalid(
            "fanout-attempts ([fanout] attempts) must be at least 1 (the first try counts)",
        ));
    }
    // Later waits double up to the cap; a first wait above it would break the
    // documented promise that no wait is longer.
    if fanout.backoff > MAX_BACKOFF {
        return Err(invalid(format!(
            "fanout-backoff ([fanout] backoff) must be at most {}, the longest wait between attempts",
            humantime::format_duration(MAX_BACKOFF)
        )));
    }
    if fanout.deadline.is_zero() || fanout.deadline >= FIREHOSE_TIMEOUT {
        return Err(invalid(format!(
            "delivery-deadline must be between 1 s and {} s (Firehose gives up after 3 minutes)",
            FIREHOSE_TIMEOUT.as_secs() - 1
        )));
    }
    Ok(fanout)
}

/// The decoding flags, gathered for [`build_decode`].
struct DecodeArgs {
    format: Option<String>,
    path_formats: Vec<String>,
    stream_formats: Vec<String>,
    bad_records: Option<String>,
    vpc_flow_fields: Option<String>,
    max_record_inflated_bytes: Option<ByteSize>,
}

fn build_decode(args: DecodeArgs, file: FileDecode) -> Result<DecodeSettings, ConfigError> {
    let format = |name: &str| name.parse::<Format>().map_err(ConfigError::Invalid);
    let mut rules = Vec::new();
    for (flag, entries, by_path) in [
        ("--path-format", &args.path_formats, true),
        ("--stream-format", &args.stream_formats, false),
    ] {
        for entry in entries {
            let (glob, name) = entry
                .rsplit_once('=')
                .ok_or_else(|| invalid(format!("{flag} {entry:?}: expected GLOB=FORMAT")))?;
            let glob = Some(Glob::new(glob));
            rules.push(DecoderRule {
                path: if by_path { glob.clone() } else { None },
                delivery_stream: if by_path { None } else { glob },
                format: format(name)?,
                vpc_flow_fields: None,
            });
        }
    }
    for rule in file.rules {
        if rule.path.is_none() && rule.delivery_stream.is_none() {
            return Err(invalid(
                "a [[decode.rules]] entry needs a path or a delivery_stream",
            ));
        }
        rules.push(DecoderRule {
            path: rule.path.as_deref().map(Glob::new),
            delivery_stream: rule.delivery_stream.as_deref().map(Glob::new),
            format: format(&rule.format)?,
            vpc_flow_fields: rule.vpc_flow_fields,
        });
    }
    let defaults = DecodeSettings::default();
    Ok(DecodeSettings {
        rules,
        default_format: pick(args.format, file.default_format)
            .map_or(Ok(defaults.default_format), |name| format(&name))?,
        bad_records: pick(args.bad_records, file.bad_records)
            .map_or(Ok(defaults.bad_records), |name| {
                name.parse::<BadRecords>().map_err(ConfigError::Invalid)
            })?,
        vpc_flow_fields: args
            .vpc_flow_fields
            .map(|fields| fields.split_whitespace().map(str::to_owned).collect())
            .or(file.vpc_flow_fields),
        max_record_inflated_bytes: pick(
            args.max_record_inflated_bytes,
            file.max_record_inflated_bytes,
        )
        .map_or(defaults.max_record_inflated_bytes, |size| size.0),
    })
}

/// Name of the embedded file sink (the one `--data-dir` configures).
pub const EMBEDDED_SINK: &str = "file";

/// Firehose abandons a request after 3 minutes without an answer.
const FIREHOSE_TIMEOUT: Duration = Duration::from_secs(180);

/// Sink types, as written in `type`.
pub const SINK_TYPES: [&str; 6] = ["file", "s3", "nats", "kafka", "stdout", "discard"];

/// A configured sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSpec {
    /// Its name, used by routes and metrics.
    pub name: String,
    /// Its type and settings.
    pub kind: SinkKind,
    /// Whether `/readyz` answers 503 while the sink is down: the `gates_readiness`
    /// key, by default as [`crate::sink::Sink::gates_readiness_by_default`] says.
    pub gates_readiness: bool,
}

/// The `[[sinks]]` key that says whether a sink gates `/readyz`; every sink type
/// takes it.
const GATES_READINESS_KEY: &str = "gates_readiness";

/// A sink's type and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// NDJSON files.
    File(FileSinkSettings),
    /// S3 or S3-compatible object storage.
    #[cfg(feature = "s3")]
    S3(S3Config),
    /// NATS JetStream.
    #[cfg(feature = "nats")]
    Nats(NatsConfig),
    /// Kafka.
    #[cfg(feature = "kafka")]
    Kafka(KafkaConfig),
    /// Standard output.
    Stdout(StdoutConfig),
    /// Discard.
    Discard(DiscardConfig),
}

impl SinkKind {
    /// The type name, as in `type`.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            #[cfg(feature = "s3")]
            Self::S3(_) => "s3",
            #[cfg(feature = "nats")]
            Self::Nats(_) => "nats",
            #[cfg(feature = "kafka")]
            Self::Kafka(_) => "kafka",
            Self::Stdout(_) => "stdout",
            Self::Discard(_) => "discard",
        }
    }
}

fn build_sinks(
    tables: Vec<toml::Spanned<toml::Table>>,
    locations: &[String],
    embedded: &FileSinkSettings,
    warnings: &mut Vec<String>,
) -> Result<Vec<SinkSpec>, ConfigError> {
    let mut sinks = vec![SinkSpec {
        name: EMBEDDED_SINK.to_owned(),
        kind: SinkKind::File(embedded.clone()),
        gates_readiness: crate::sink::Sink::gates_readiness_by_default("file"),
    }];
    for (index, spanned) in tables.into_iter().enumerate() {
        let mut table = spanned.into_inner();
        // Each message below names the sink and where its entry starts.
        let at = locations
            .get(index)
            .map(|at| format!(" ({})", at.trim_start()))
            .unwrap_or_default();
        let name = match table.remove("name") {
            Some(toml::Value::String(name)) => name,
            _ => {
                return Err(invalid(format!(
                    "[[sinks]] entry {}{at} needs a name",
                    index + 1
                )));
            }
        };
        let sink = format!("sink {name:?}{at}");
        let valid_name = !name.is_empty()
            && name.len() <= MAX_KEY_NAME_CHARS
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        if !valid_name {
            return Err(invalid(format!(
                "sink name {name:?}{at} must be 1-{MAX_KEY_NAME_CHARS} letters, digits, '-' or '_'"
            )));
        }
        if sinks.iter().any(|sink| sink.name == name) {
            return Err(invalid(format!(
                "sink name {name:?}{at} is used twice (\"{EMBEDDED_SINK}\" is the embedded file sink)"
            )));
        }
        let kind = match table.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            _ => {
                return Err(invalid(format!(
                    "{sink} needs a type: one of {}",
                    SINK_TYPES.join(", ")
                )));
            }
        };
        let gates_readiness = match table.remove(GATES_READINESS_KEY) {
            None => crate::sink::Sink::gates_readiness_by_default(&kind),
            Some(toml::Value::Boolean(gates)) => gates,
            Some(_) => {
                return Err(invalid(format!(
                    "{sink}: {GATES_READINESS_KEY} must be true or false"
                )));
            }
        };
        let fail = |error: toml::de::Error| invalid(format!("{sink}: {}", error.message()));
        normalise_units(&kind, &mut table, warnings)
            .map_err(|reason| invalid(format!("{sink}: {reason}")))?;
        let settings = toml::Value::Table(table);
        let kind = match kind.as_str() {
            "file" => {
                let extra: ExtraFileSink = settings.try_into().map_err(fail)?;
                let mut file = FileSinkSettings::new(extra.data_dir);
                file.segment_max_bytes = extra
                    .segment_max_bytes
                    .map_or(embedded.segment_max_bytes, |s| s.0);
                file.segment_max_age = extra
                    .segment_max_age
                    .map_or(embedded.segment_max_age, |d| d.0);
                file.dedup_window = embedded.dedup_window;
                file.dedup_capacity = embedded.dedup_capacity;
                if sinks.iter().any(|sink| matches!(&sink.kind, SinkKind::File(other) if other.data_dir == file.data_dir)) {
                    return Err(invalid(format!("{sink}: data_dir is used by another file sink")));
                }
                SinkKind::File(file)
            }
            #[cfg(feature = "s3")]
            "s3" => SinkKind::S3(checked(settings, &sink, S3Config::validate)?),
            #[cfg(feature = "nats")]
            "nats" => SinkKind::Nats(checked(settings, &sink, NatsConfig::validate)?),
            #[cfg(feature = "kafka")]
            "kafka" => SinkKind::Kafka(checked(settings, &sink, KafkaConfig::validate)?),
            #[cfg(not(feature = "s3"))]
            "s3" => return Err(not_built(&sink, "s3")),
            #[cfg(not(feature = "nats"))]
            "nats" => return Err(not_built(&sink, "nats")),
            #[cfg(not(feature = "kafka"))]
            "kafka" => return Err(not_built(&sink, "kafka")),
            "stdout" => SinkKind::Stdout(settings.try_into().map_err(fail)?),
            "discard" => SinkKind::Discard(settings.try_into().map_err(fail)?),
            other => {
                return Err(invalid(format!(
                    "{sink}: unknown type {other:?}; expected one of {}",
                    SINK_TYPES.join(", ")
                )));
            }
        };
        sinks.push(SinkSpec {
            name,
            kind,
            gates_readiness,
        });
    }
    if sinks.len() > MAX_SINKS {
        return Err(invalid(format!(
            "at most {MAX_SINKS} sinks can be configured"
        )));
    }
    Ok(sinks)
}

/// A sink setting that used to be written as a bare number in a unit its name or
/// the documentation gave; still read, with a warning, and written better with a
/// unit under the new key.
struct DeprecatedUnitKey {
    /// Sink type.
    sink: &'static str,
    /// The key with a unit in its value, e.g. `ack_timeout = "10s"`.
    new: &'static str,
    /// The old key, whose value is a bare number of `unit`.
    old: &'static str,
    /// The old key's unit.
    unit: OldUnit,
}

#[derive(Clone, Copy)]
enum OldUnit {
    Milliseconds,
    Seconds,
}

/// Every sink setting that took a bare number of milliseconds or seconds. When
/// `new` equals `old`, a string value is the new form and an integer the old one.
const DEPRECATED_UNIT_KEYS: [DeprecatedUnitKey; 3] = [
    DeprecatedUnitKey {
        sink: "nats",
        new: "ack_timeout",
        old: "ack_timeout_ms",
        unit: OldUnit::Milliseconds,
    },
    DeprecatedUnitKey {
        sink: "nats",
        new: "duplicate_window",
        old: "duplicate_window",
        unit: OldUnit::Seconds,
    },
    DeprecatedUnitKey {
        sink: "kafka",
        new: "timeout",
        old: "timeout_ms",
        unit: OldUnit::Milliseconds,
    },
];

/// Sink settings holding a number of bytes, which also take a size with a unit.
const SIZE_KEYS: [(&str, &str); 1] = [("kafka", "max_batch_bytes")];

/// Rewrites a sink's table so that every size and duration is read by
/// [`crate::units`]: a duration written with a unit under its new key becomes the
/// number the sink's settings hold; a bare number under an old key is kept, with a
/// deprecation warning.
fn normalise_units(
    sink: &str,
    table: &mut toml::Table,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    for key in DEPRECATED_UNIT_KEYS.iter().filter(|key| key.sink == sink) {
        let (unit_name, per_second) = match key.unit {
            OldUnit::Milliseconds => ("milliseconds", 1_000),
            OldUnit::Seconds => ("seconds", 1),
        };
        let new_value = match table.get(key.new) {
            Some(toml::Value::String(text)) => {
                Some(parse_duration(text).map_err(|reason| format!("{}: {reason}", key.new))?)
            }
            _ => None,
        };
        let old_given = table
            .get(key.old)
            .is_some_and(|value| !matches!(value, toml::Value::String(_)));
        if key.new != key.old && new_value.is_some() && old_given {
            return Err(format!(
                "give {} or the deprecated {}, not both",
                key.new, key.old
            ));
        }
        if old_given {
            warnings.push(format!(
                "sink type {sink}: {} as a number of {unit_name} is deprecated; write {} = \"…\" with a unit (e.g. \"10s\")",
                key.old, key.new
            ));
        }
        if let Some(duration) = new_value {
            let nanos_per_unit = 1_000_000_000 / per_second;
            if duration.as_nanos() % nanos_per_unit != 0 {
                return Err(format!(
                    "{}: {} is not a whole number of {unit_name}",
                    key.new,
                    humantime::format_duration(duration)
                ));
            }
            let count = i64::try_from(duration.as_nanos() / nanos_per_unit)
                .map_err(|_| format!("{}: too long", key.new))?;
            table.remove(key.new);
            table.insert(key.old.to_owned(), toml::Value::Integer(count));
        }
    }
    for (_, key) in SIZE_KEYS.iter().filter(|(owner, _)| *owner == sink) {
        if let Some(toml::Value::String(text)) = table.get(*key) {
            let bytes = parse_size(text).map_err(|reason| format!("{key}: {reason}"))?;
            let bytes = i64::try_from(bytes).map_err(|_| format!("{key}: too large"))?;
            table.insert((*key).to_owned(), toml::Value::Integer(bytes));
        }
    }
    Ok(())
}

/// A network sink's settings, parsed and checked by the sink's own `validate`.
#[allow(
    dead_code,
    reason = "unused only when every network sink feature is left out"
)]
fn checked<T: serde::de::DeserializeOwned>(
    settings: toml::Value,
    sink: &str,
    validate: fn(&T) -> Result<(), String>,
) -> Result<T, ConfigError> {
    let config: T = settings
        .try_into()
        .map_err(|error: toml::de::Error| invalid(format!("{sink}: {}", error.message())))?;
    validate(&config).map_err(|reason| invalid(format!("{sink}: {reason}")))?;
    Ok(config)
}

#[allow(
    dead_code,
    reason = "used only when a sink feature is left out of the build"
)]
fn not_built(sink: &str, kind: &str) -> ConfigError {
    invalid(format!(
        "{sink}: this Hydrant was built without the {kind} feature"
    ))
}

fn build_router(
    routes: Vec<FileRoute>,
    routing: FileRouting,
    sinks: &[SinkSpec],
) -> Result<Router, ConfigError> {
    let resolve = |names: &[String], whose: &str| -> Result<SinkSet, ConfigError> {
        let mut set = SinkSet::default();
        for name in names {
            let position = sinks
                .iter()
                .position(|sink| &sink.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = sinks.iter().map(|sink| sink.name.as_str()).collect();
                    invalid(format!(
                        "{whose} names unknown sink {name:?}; configured: {}",
                        known.join(", ")
                    ))
                })?;
            set.insert(position);
        }
        Ok(set)
    };
    let glob =
        |pattern: Option<String>, field: &str, route: &str| -> Result<Option<Glob>, ConfigError> {
            match pattern {
                Some(pattern) if pattern.is_empty() => Err(invalid(format!(
                    "route {route:?}: {field} is an empty pattern"
                ))),
                pattern => Ok(pattern.as_deref().map(Glob::new)),
            }
        };
    let mut built = Vec::with_capacity(routes.len());
    for (index, route) in routes.into_iter().enumerate() {
        let name = route.name.unwrap_or_else(|| format!("#{}", index + 1));
        if route.sinks.is_empty() {
            return Err(invalid(format!("route {name:?} names no sinks")));
        }
        let kinds = route.kind.into_vec();
        check_names(&kinds, &KINDS, "event kind")
            .map_err(|reason| invalid(format!("route {name:?}: {reason}")))?;
        let formats = route.format.into_vec();
        check_names(&formats, &EVENT_FORMATS, "event format")
            .map_err(|reason| invalid(format!("route {name:?}: {reason}")))?;
        let mut common_attributes = Vec::new();
        for (key, pattern) in route.common_attributes {
            common_attributes.push((key, Glob::new(&pattern)));
        }
        let matcher = Match {
            path: glob(route.path, "path", &name)?,
            delivery_stream: glob(route.delivery_stream, "delivery_stream", &name)?,
            source_arn: glob(route.source_arn, "source_arn", &name)?,
            access_key: glob(route.access_key, "access_key", &name)?,
            common_attributes,
            kinds,
            formats,
            log_group: glob(route.log_group, "log_group", &name)?,
            namespace: glob(route.namespace, "namespace", &name)?,
            source: glob(route.source, "source", &name)?,
            detail_type: glob(route.detail_type, "detail_type", &name)?,
        };
        built.push(Route {
            sinks: resolve(&route.sinks, &format!("route {name:?}"))?,
            name,
            matcher,
            continue_matching: route.continue_matching,
        });
    }
    let default_names = routing
        .default_sinks
        .unwrap_or_else(|| vec![EMBEDDED_SINK.to_owned()]);
    Ok(Router {
        routes: built,
        default_sinks: resolve(&default_names, "[routing] default_sinks")?,
    })
}

/// Checks that every name is one of `valid`; the message lists them.
fn check_names(names: &[String], valid: &[&str], what: &str) -> Result<(), String> {
    match names.iter().find(|name| !valid.contains(&name.as_str())) {
        Some(name) => Err(format!(
            "unknown {what} {name:?}; expected one of {}",
            valid.join(", ")
        )),
        None => Ok(()),
    }
}

fn pick<T>(flag: Option<T>, file: Option<T>) -> Option<T> {
    flag.or(file)
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

fn default_addr(text: &str) -> SocketAddr {
    text.parse().expect("default addresses are valid")
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

/// Joins a message's lines, so every error stays one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// ` line L, column C` of a byte offset in `text` (both from 1).
fn location(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    format!(" line {line}, column {column}")
}

fn read_text(path: &Path, what: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|error| invalid(format!("cannot read {what} {}: {error}", path.display())))
}

/// Parses the file's TOML, keeping where each value is; a syntax error names its line
/// and column.
fn parse_document(text: &str, path: &Path) -> Result<toml_edit::ImDocument<String>, ConfigError> {
    toml_edit::ImDocument::parse(text.to_owned()).map_err(|error| {
        let at = error
            .span()
            .map(|span| location(text, span.start))
            .unwrap_or_default();
        invalid(format!(
            "config file {}{at}: {}",
            path.display(),
            one_line(error.message())
        ))
    })
}

/// Values the file took from the environment, so messages can show them as written.
#[derive(Debug, Default)]
struct Expansions(Vec<(String, String)>);

/// Expanded values shorter than this are left in messages: too short to be a
/// secret, and replacing them would garble the message around them.
const MIN_SCRUBBED_CHARS: usize = 4;

impl Expansions {
    /// The error with every expanded value written back as the `${VAR}` text it
    /// came from.
    fn scrub(&self, error: ConfigError) -> ConfigError {
        match error {
            ConfigError::Invalid(mut message) => {
                for (expanded, written) in &self.0 {
                    if expanded.chars().count() >= MIN_SCRUBBED_CHARS {
                        message = message.replace(expanded.as_str(), written);
                    }
                }
                ConfigError::Invalid(message)
            }
            other => other,
        }
    }
}

/// Expands `${VAR}` in every string value of the file (not in keys or comments)
/// and gives the text back with those values rewritten, so that the file is then
/// read with positions intact for messages. A value spanning lines keeps its line
/// count (a multi-line string whose lines end in `\`), so later line numbers hold.
fn expand_document(
    text: &str,
    path: &Path,
    env: Env<'_>,
) -> Result<(String, Expansions), ConfigError> {
    let document = parse_document(text, path)?;
    let mut strings = Vec::new();
    collect_strings(document.as_item(), &mut strings);
    let mut replacements = Vec::new();
    let mut expansions = Expansions::default();
    for (value, span) in strings {
        if !value.contains('$') {
            continue;
        }
        let written = &text[span.clone()];
        let expanded = interpolate(value, env).map_err(|reason| {
            invalid(format!(
                "config file {}{}: {reason}",
                path.display(),
                location(text, span.start)
            ))
        })?;
        // Only values that took something from the environment can hide a secret.
        if expanded != value.replace("$${", "${") {
            expansions.0.push((expanded.clone(), value.to_owned()));
        }
        replacements.push((
            span.clone(),
            toml_string(&expanded, written.matches('\n').count()),
        ));
    }
    replacements.sort_by_key(|(span, _)| span.start);
    let mut rewritten = String::with_capacity(text.len());
    let mut done = 0;
    for (span, literal) in replacements {
        rewritten.push_str(&text[done..span.start]);
        rewritten.push_str(&literal);
        done = span.end;
    }
    rewritten.push_str(&text[done..]);
    Ok((rewritten, expansions))
}

/// Every string value under `item`, with its place in the text.
fn collect_strings<'a>(
    item: &'a toml_edit::Item,
    out: &mut Vec<(&'a str, std::ops::Range<usize>)>,
) {
    match item {
        toml_edit::Item::Value(value) => collect_value_strings(value, out),
        toml_edit::Item::Table(table) => {
            for (_, item) in table {
                collect_strings(item, out);
            }
        }
        toml_edit::Item::ArrayOfTables(tables) => {
            for table in tables {
                for (_, item) in table {
                    collect_strings(item, out);
                }
            }
        }
        toml_edit::Item::None => {}
    }
}

fn collect_value_strings<'a>(
    value: &'a toml_edit::Value,
    out: &mut Vec<(&'a str, std::ops::Range<usize>)>,
) {
    match value {
        toml_edit::Value::String(string) => {
            if let Some(span) = value.span() {
                out.push((string.value().as_str(), span));
            }
        }
        toml_edit::Value::Array(array) => {
            for value in array {
                collect_value_strings(value, out);
            }
        }
        toml_edit::Value::InlineTable(table) => {
            for (_, value) in table {
                collect_value_strings(value, out);
            }
        }
        _ => {}
    }
}

/// `value` as a TOML basic string; with `lines` > 0 a multi-line one spanning that
/// many more lines, which a line-ending backslash keeps out of the value.
fn toml_string(value: &str, lines: usize) -> String {
    let quote = if lines == 0 { "\"" } else { "\"\"\"" };
    let mut out = String::with_capacity(value.len() + 8);
    out.push_str(quote);
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    if lines > 0 {
        out.push('\\');
        out.push_str(&"\n".repeat(lines));
    }
    out.push_str(quote);
    out
}

/// Expands `${VAR}` and `${VAR:-default}` (the default when `VAR` is unset or
/// empty, as in a shell) in one string; `$${` is a literal `${` and any other `$`
/// stays as it is. A variable that is unset and has no default is an error naming
/// it. The expanded text is never logged or shown.
///
/// # Errors
///
/// A one-line reason: an unset variable, an unclosed `${`, a bad name.
fn interpolate(text: &str, env: Env<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(body) = tail.strip_prefix("${") else {
            out.push('$');
            rest = &tail[1..];
            continue;
        };
        let end = body
            .find('}')
            .ok_or_else(|| "a ${ is not closed by }; write $${ for a literal ${".to_owned())?;
        let inner = &body[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let valid_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!(
                "${{{name}}}: a variable name is letters, digits and _, not starting with a digit"
            ));
        }
        let value = env(name).filter(|value| !(value.is_empty() && default.is_some()));
        match (value, default) {
            (Some(value), _) => out.push_str(
                &value
                    .into_string()
                    .map_err(|_| format!("environment variable {name} is not valid UTF-8"))?,
            ),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (named by ${{{name}}}; ${{{name}:-default}} gives a default)"
                ));
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits `NAME=KEY` at the first `=`, so keys may contain `=` (base64 padding).
fn parse_key_entry(entry: &str) -> Result<(String, String), String> {
    let (name, key) = entry
        .split_once('=')
        .ok_or_else(|| "expected NAME=KEY".to_owned())?;
    Ok((name.trim().to_owned(), key.to_owned()))
}

fn parse_key_entries<'a>(
    entries: impl Iterator<Item = &'a str>,
    source: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    entries
        .map(|entry| {
            parse_key_entry(entry).map_err(|reason| invalid(format!("{source}: {reason}")))
        })
        .collect()
}

fn read_key_file(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let text = read_text(path, "access key file")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            warnings.push(format!(
                "access key file {} can be read by other users; chmod 600 it",
                path.display()
            ));
        }
    }
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        keys.push(parse_key_entry(line).map_err(|reason| {
            invalid(format!(
                "access key file {} line {}: {reason}",
                path.display(),
                number + 1
            ))
        })?);
    }
    Ok(keys)
}

/// Checks the keys of every source together: names unique across all of them
/// (a clash names both sources), secrets unique, no keys with `--no-auth`.
fn build_auth(sources: &[KeySource], no_auth: bool) -> Result<Auth, ConfigError> {
    let given: Vec<&str> = sources
        .iter()
        .filter(|source| !source.keys.is_empty())
        .map(|source| source.label.as_str())
        .collect();
    if no_auth {
        if !given.is_empty() {
            return Err(invalid(format!(
                "--no-auth cannot be combined with access keys (given by {})",
                given.join(", ")
            )));
        }
        return Ok(Auth::Disabled);
    }
    if given.is_empty() {
        return Err(invalid(format!(
            "no access key configured: pass --access-key NAME=KEY, {ENV_ACCESS_KEYS} or --access-key-file FILE (or --no-auth to accept unauthenticated deliveries)"
        )));
    }
    let mut checked: Vec<(AccessKey, &str)> = Vec::new();
    let mut secrets: Vec<(&str, &str)> = Vec::new();
    for source in sources {
        for (name, key) in &source.keys {
            let name_ok = !name.is_empty()
                && name.chars().count() <= MAX_KEY_NAME_CHARS
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !name_ok {
                return Err(invalid(format!(
                    "access key name {name:?} ({}) must be 1-{MAX_KEY_NAME_CHARS} characters of letters, digits, '-', '_' or '.'",
                    source.label
                )));
            }
            if key.is_empty() || key.len() > MAX_ACCESS_KEY_BYTES {
                return Err(invalid(format!(
                    "access key {name:?} ({}) must be 1-{MAX_ACCESS_KEY_BYTES} bytes long",
                    source.label
                )));
            }
            if let Some((_, first)) = checked.iter().find(|(existing, _)| existing.name() == name) {
                return Err(invalid(if *first == source.label {
                    format!(
                        "access key name {name:?} is configured twice by {}",
                        source.label
                    )
                } else {
                    format!(
                        "access key name {name:?} is configured twice: by {first} and by {}",
                        source.label
                    )
                }));
            }
            if let Some((_, other)) = secrets.iter().find(|(secret, _)| *secret == key) {
                return Err(invalid(format!(
                    "access key {name:?} has the same secret as {other:?}; each key needs its own"
                )));
            }
            secrets.push((key, name));
            checked.push((AccessKey::new(name, key), &source.label));
        }
    }
    Ok(Auth::Keys(
        checked.into_iter().map(|(key, _)| key).collect(),
    ))
}

/// A byte size, read by [`parse_size`]. In TOML also a bare integer of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_size(text).map(ByteSize)
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size, e.g. `128MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if bytes != 0 && bytes.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", bytes >> shift);
            }
        }
        write!(f, "{bytes}B")
    }
}

/// A duration, read by [`parse_duration`]: it needs a unit, in TOML too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_duration(text).map(HumanDuration)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a number of bytes, or a string such as \"64KiB\"")
            }

            fn visit_u64<E: serde::de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(bytes))
            }

            fn visit_i64<E: serde::de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
                u64::try_from(bytes)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ByteSize, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as \"30s\"")
            }

            fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{number}s\", \"{number}ms\"… ({})",
                    crate::units::DURATION_UNITS
                )))
            }

            fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<HumanDuration, E> {
                self.visit_i64(i64::try_from(number).unwrap_or(i64::MAX))
            }

            fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{number}s\", \"{number}h\"… ({})",
                    crate::units::DURATION_UNITS
                )))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

impl Config {
    /// What `hydrant validate` prints: the resolved listeners, keys (names and
    /// where they came from, never the secrets), decoding, sinks with their type and
    /// settings (secrets redacted by each sink's `Debug`), routes in order and the
    /// default route.
    #[must_use]
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let duration = |d: Duration| humantime::format_duration(d).to_string();
        let _ = writeln!(out, "The configuration is valid.");
        let _ = writeln!(out, "listen {}, admin {}", self.listen, self.admin_listen);
        match &self.auth {
            Auth::Disabled => {
                let _ = writeln!(out, "access keys: none, authentication is OFF (--no-auth)");
            }
            Auth::Keys(_) => {
                let _ = writeln!(out, "access keys:");
                for (name, source) in &self.key_sources {
                    let _ = writeln!(out, "  {name} (from {source})");
                }
            }
        }
        let decode = &self.decode;
        let bad_records = match decode.bad_records {
            BadRecords::DeadLetter => "dead_letter",
            BadRecords::Reject => "reject",
        };
        let _ = writeln!(
            out,
            "decoding: default format {}, bad records {bad_records}, {} rule(s)",
            format_name(decode.default_format),
            decode.rules.len()
        );
        for rule in &decode.rules {
            let mut facts = Vec::new();
            if let Some(path) = &rule.path {
                facts.push(format!("path {path}"));
            }
            if let Some(stream) = &rule.delivery_stream {
                facts.push(format!("delivery_stream {stream}"));
            }
            let _ = writeln!(
                out,
                "  {} -> {}",
                facts.join(", "),
                format_name(rule.format)
            );
        }
        let _ = writeln!(out, "sinks:");
        for sink in &self.sinks {
            let settings = match &sink.kind {
                SinkKind::File(file) => format!(
                    "data_dir {}, segment_max_bytes {}, segment_max_age {}, dedup_window {}, dedup_capacity {}",
                    file.data_dir.display(),
                    ByteSize(file.segment_max_bytes),
                    duration(file.segment_max_age),
                    duration(file.dedup_window),
                    file.dedup_capacity
                ),
                #[cfg(feature = "s3")]
                SinkKind::S3(config) => format!("{config:?}"),
                #[cfg(feature = "nats")]
                SinkKind::Nats(config) => format!("{config:?}"),
                #[cfg(feature = "kafka")]
                SinkKind::Kafka(config) => format!("{config:?}"),
                SinkKind::Stdout(config) => format!("{config:?}"),
                SinkKind::Discard(config) => format!("{config:?}"),
            };
            let _ = writeln!(
                out,
                "  {} (type {}): {settings}",
                sink.name,
                sink.kind.type_name()
            );
        }
        let names = |set: SinkSet| -> String {
            let names: Vec<&str> = self
                .sinks
                .iter()
                .enumerate()
                .filter(|(position, _)| set.contains(*position))
                .map(|(_, sink)| sink.name.as_str())
                .collect();
            if names.is_empty() {
                "(nowhere: dropped and counted)".to_owned()
            } else {
                names.join(", ")
            }
        };
        let _ = writeln!(
            out,
            "routes, in order (the first match decides, unless it continues):"
        );
        if self.router.routes.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        for (index, route) in self.router.routes.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. {:?}: {} -> {}{}",
                index + 1,
                route.name,
                describe_match(&route.matcher),
                names(route.sinks),
                if route.continue_matching {
                    ", then continue"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            out,
            "default route (events no route takes): -> {}",
            names(self.router.default_sinks)
        );
        let fanout = &self.fanout;
        let _ = writeln!(
            out,
            "fanout: attempts {}, backoff {}, deadline {}",
            fanout.attempts,
            duration(fanout.backoff),
            duration(fanout.deadline)
        );
        out
    }
}

/// A format's name as configured.
fn format_name(format: Format) -> &'static str {
    FORMAT_NAMES
        .into_iter()
        .find(|name| name.parse() == Ok(format))
        .unwrap_or("?")
}

/// A route's match, as `key value` pairs.
fn describe_match(matcher: &Match) -> String {
    let mut facts = Vec::new();
    let globs = [
        ("path", &matcher.path),
        ("delivery_stream", &matcher.delivery_stream),
        ("source_arn", &matcher.source_arn),
        ("access_key", &matcher.access_key),
        ("log_group", &matcher.log_group),
        ("namespace", &matcher.namespace),
        ("source", &matcher.source),
        ("detail_type", &matcher.detail_type),
    ];
    for (key, glob) in globs {
        if let Some(glob) = glob {
            facts.push(format!("{key} {glob}"));
        }
    }
    for (attribute, glob) in &matcher.common_attributes {
        facts.push(format!("common_attributes.{attribute} {glob}"));
    }
    if !matcher.kinds.is_empty() {
        facts.push(format!("kind {}", matcher.kinds.join("|")));
    }
    if !matcher.formats.is_empty() {
        facts.push(format!("format {}", matcher.formats.join("|")));
    }
    if facts.is_empty() {
        "every event".to_owned()
    } else {
        facts.join(", ")
    }
}

#[cfg(test)]
mod tests;
