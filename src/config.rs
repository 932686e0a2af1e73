//! Configuration: command-line flags, environment variables and an optional TOML
//! file, checked into one typed [`Config`] before anything starts.
//!
//! Precedence, highest first: flag, environment variable, config file, default.
//! Access keys are the exception: keys from every source are used together (names
//! must be unique). Every default is a named constant next to the code it governs;
//! the `--help` text quotes them and a test keeps the two in step.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::decode::{BadRecords, DecodeSettings, DecoderRule, Format};
use crate::glob::Glob;
use crate::limits::{self, Limits};
use crate::metrics::DEFAULT_MAX_STREAM_LABELS;
use crate::routing::{KINDS, MAX_SINKS, Match, Route, Router, SinkSet};
use crate::server::auth::{AccessKey, Auth, MAX_ACCESS_KEY_BYTES};
use crate::sink::discard::DiscardConfig;
use crate::sink::fanout::{DEFAULT_ATTEMPTS, DEFAULT_BACKOFF, DEFAULT_DEADLINE, FanoutSettings};
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

const ABOUT: &str = "A durable receiver for Amazon Data Firehose HTTP endpoint deliveries.";
const LONG_ABOUT: &str = "\
A durable receiver for Amazon Data Firehose HTTP endpoint deliveries.

Point a Firehose stream's HTTP endpoint at Hydrant (through HTTPS on port 443, e.g. a \
load balancer or reverse proxy). Each delivery is checked, decoded and written to NDJSON \
segment files under --data-dir, and answered 200 only once it is on disk.

Every option can also be set with its environment variable or in the TOML file named by \
--config; flags win over the environment, which wins over the file. Sizes take the \
suffixes KiB, MiB, GiB (or KB, MB, GB); durations take ms, s, m, h (a bare number is \
seconds).";

/// The command line. Every field is optional so that the file and the defaults can
/// fill in what was not given; defaults are quoted in the help text.
#[derive(Debug, Parser)]
#[command(name = "hydrant", version, about = ABOUT, long_about = LONG_ABOUT)]
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

    /// An access key Firehose must send, as NAME=KEY (split at the first '='). Repeat for several keys. In the environment, separate entries with newlines. Prefer --access-key-file, which keeps keys out of the process list
    #[arg(
        long = "access-key",
        env = "HYDRANT_ACCESS_KEYS",
        value_name = "NAME=KEY",
        value_delimiter = '\n',
        hide_env_values = true
    )]
    access_keys: Vec<String>,

    /// File of access keys, one NAME=KEY per line; blank lines and lines starting with '#' are skipped
    #[arg(long, env = "HYDRANT_ACCESS_KEY_FILE", value_name = "FILE")]
    access_key_file: Option<PathBuf>,

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

    /// Fix the format of deliveries to matching URL paths, as GLOB=FORMAT (e.g. /metrics/*=metric_stream_otel10). Repeatable; the first matching rule wins
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

    /// Instead of serving, ask the running Hydrant's admin listener whether it is ready (GET /readyz) and exit 0 if so, 1 if not: for container health checks
    #[arg(long)]
    health_check: bool,

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
    storage: FileStorage,
    #[serde(default)]
    decode: FileDecode,
    /// Sinks besides the embedded file sink; each a table with `name` and `type`.
    #[serde(default)]
    sinks: Vec<toml::Table>,
    #[serde(default)]
    routes: Vec<FileRoute>,
    #[serde(default)]
    routing: FileRouting,
    #[serde(default)]
    fanout: FileFanout,
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
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
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

#[derive(Debug, Default, Deserialize)]
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
    /// Limits on untrusted input.
    pub limits: Limits,
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
    /// `--health-check`: probe the admin listener instead of serving.
    pub health_check: bool,
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

impl Config {
    /// Parses and checks the configuration from command-line arguments (the
    /// program name first) and the process environment.
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
        let args = Args::try_parse_from(args).map_err(|error| match error.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                ConfigError::Display(error.render().to_string())
            }
            _ => ConfigError::Usage(first_line(&error.render().to_string())),
        })?;
        let file = match &args.config {
            Some(path) => read_config_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    fn merge(args: Args, file: FileConfig) -> Result<Self, ConfigError> {
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
        };
        limits.validate().map_err(ConfigError::Invalid)?;

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
        let sinks = build_sinks(file.sinks, &storage)?;
        let router = build_router(file.routes, file.routing, &sinks)?;
        let fanout = FanoutSettings {
            attempts: file.fanout.attempts.unwrap_or(DEFAULT_ATTEMPTS).max(1),
            backoff: file.fanout.backoff.map_or(DEFAULT_BACKOFF, |d| d.0),
            deadline: pick(args.delivery_deadline, file.fanout.deadline)
                .map_or(DEFAULT_DEADLINE, |d| d.0),
            dedup_window: storage.dedup_window,
            dedup_capacity: storage.dedup_capacity,
        };
        if fanout.deadline.is_zero() || fanout.deadline >= FIREHOSE_TIMEOUT {
            return Err(invalid(format!(
                "delivery-deadline must be between 1 s and {} s (Firehose gives up after 3 minutes)",
                FIREHOSE_TIMEOUT.as_secs() - 1
            )));
        }

        let mut keys = Vec::new();
        for entry in &args.access_keys {
            keys.push(
                parse_key_entry(entry)
                    .map_err(|reason| invalid(format!("--access-key: {reason}")))?,
            );
        }
        for entry in file.access_keys {
            keys.push((entry.name, entry.key));
        }
        if let Some(path) = pick(args.access_key_file, file.access_key_file) {
            keys.extend(read_key_file(&path, &mut warnings)?);
        }
        let no_auth = args.no_auth || file.no_auth.unwrap_or(false);
        let auth = build_auth(&keys, no_auth)?;
        if auth == Auth::Disabled {
            warnings.push(
                "AUTHENTICATION IS OFF (--no-auth): anyone who can reach the ingest listener can write data".into(),
            );
        }

        Ok(Self {
            listen: pick(args.listen, file.listen).unwrap_or_else(|| default_addr(DEFAULT_LISTEN)),
            admin_listen: pick(args.admin_listen, file.admin_listen)
                .unwrap_or_else(|| default_addr(DEFAULT_ADMIN_LISTEN)),
            auth,
            limits,
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
            health_check: args.health_check,
            warnings,
        })
    }
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

/// A configured sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSpec {
    /// Its name, used by routes and metrics.
    pub name: String,
    /// Its type and settings.
    pub kind: SinkKind,
}

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

fn build_sinks(
    tables: Vec<toml::Table>,
    embedded: &FileSinkSettings,
) -> Result<Vec<SinkSpec>, ConfigError> {
    let mut sinks = vec![SinkSpec {
        name: EMBEDDED_SINK.to_owned(),
        kind: SinkKind::File(embedded.clone()),
    }];
    for mut table in tables {
        let name = match table.remove("name") {
            Some(toml::Value::String(name)) => name,
            _ => return Err(invalid("every [[sinks]] entry needs a name")),
        };
        let valid_name = !name.is_empty()
            && name.len() <= MAX_KEY_NAME_CHARS
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        if !valid_name {
            return Err(invalid(format!(
                "sink name {name:?} must be 1-{MAX_KEY_NAME_CHARS} letters, digits, '-' or '_'"
            )));
        }
        if sinks.iter().any(|sink| sink.name == name) {
            return Err(invalid(format!(
                "sink name {name:?} is used twice (\"{EMBEDDED_SINK}\" is the embedded file sink)"
            )));
        }
        let kind = match table.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            _ => return Err(invalid(format!("sink {name:?} needs a type"))),
        };
        let settings = toml::Value::Table(table);
        let fail = |error: toml::de::Error| invalid(format!("sink {name:?}: {}", error.message()));
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
                    return Err(invalid(format!("sink {name:?}: data_dir is used by another file sink")));
                }
                SinkKind::File(file)
            }
            #[cfg(feature = "s3")]
            "s3" => SinkKind::S3(checked(settings, &name, S3Config::validate)?),
            #[cfg(feature = "nats")]
            "nats" => SinkKind::Nats(checked(settings, &name, NatsConfig::validate)?),
            #[cfg(feature = "kafka")]
            "kafka" => SinkKind::Kafka(checked(settings, &name, KafkaConfig::validate)?),
            #[cfg(not(feature = "s3"))]
            "s3" => return Err(not_built(&name, "s3")),
            #[cfg(not(feature = "nats"))]
            "nats" => return Err(not_built(&name, "nats")),
            #[cfg(not(feature = "kafka"))]
            "kafka" => return Err(not_built(&name, "kafka")),
            "stdout" => SinkKind::Stdout(settings.try_into().map_err(fail)?),
            "discard" => SinkKind::Discard(settings.try_into().map_err(fail)?),
            other => {
                return Err(invalid(format!(
                    "sink {name:?}: unknown type {other:?}; expected file, s3, nats, kafka, stdout or discard"
                )));
            }
        };
        sinks.push(SinkSpec { name, kind });
    }
    if sinks.len() > MAX_SINKS {
        return Err(invalid(format!(
            "at most {MAX_SINKS} sinks can be configured"
        )));
    }
    Ok(sinks)
}

/// A network sink's settings, parsed and checked by the sink's own `validate`.
#[allow(
    dead_code,
    reason = "unused only when every network sink feature is left out"
)]
fn checked<T: serde::de::DeserializeOwned>(
    settings: toml::Value,
    name: &str,
    validate: fn(&T) -> Result<(), String>,
) -> Result<T, ConfigError> {
    let config: T = settings
        .try_into()
        .map_err(|error: toml::de::Error| invalid(format!("sink {name:?}: {}", error.message())))?;
    validate(&config).map_err(|reason| invalid(format!("sink {name:?}: {reason}")))?;
    Ok(config)
}

#[allow(
    dead_code,
    reason = "used only when a sink feature is left out of the build"
)]
fn not_built(name: &str, kind: &str) -> ConfigError {
    invalid(format!(
        "sink {name:?}: this Hydrant was built without the {kind} feature"
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
        if let Some(kind) = kinds.iter().find(|kind| !KINDS.contains(&kind.as_str())) {
            return Err(invalid(format!(
                "route {name:?}: unknown event kind {kind:?}; expected {}",
                KINDS.join(", ")
            )));
        }
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
            formats: route.format.into_vec(),
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

fn read_config_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        invalid(format!(
            "cannot read config file {}: {error}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|error| {
        let message = error.message().to_owned();
        invalid(format!("config file {}: {message}", path.display()))
    })
}

/// Splits `NAME=KEY` at the first `=`, so keys may contain `=` (base64 padding).
fn parse_key_entry(entry: &str) -> Result<(String, String), String> {
    let (name, key) = entry
        .split_once('=')
        .ok_or_else(|| "expected NAME=KEY".to_owned())?;
    Ok((name.trim().to_owned(), key.to_owned()))
}

fn read_key_file(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        invalid(format!(
            "cannot read access key file {}: {error}",
            path.display()
        ))
    })?;
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

fn build_auth(keys: &[(String, String)], no_auth: bool) -> Result<Auth, ConfigError> {
    if no_auth {
        if !keys.is_empty() {
            return Err(invalid("--no-auth cannot be combined with access keys"));
        }
        return Ok(Auth::Disabled);
    }
    if keys.is_empty() {
        return Err(invalid(
            "no access key configured: pass --access-key NAME=KEY or --access-key-file FILE (or --no-auth to accept unauthenticated deliveries)",
        ));
    }
    let mut checked: Vec<AccessKey> = Vec::with_capacity(keys.len());
    let mut secrets: Vec<&str> = Vec::with_capacity(keys.len());
    for (name, key) in keys {
        let name_ok = !name.is_empty()
            && name.chars().count() <= MAX_KEY_NAME_CHARS
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(invalid(format!(
                "access key name {name:?} must be 1-{MAX_KEY_NAME_CHARS} characters of letters, digits, '-', '_' or '.'"
            )));
        }
        if key.is_empty() || key.len() > MAX_ACCESS_KEY_BYTES {
            return Err(invalid(format!(
                "access key {name:?} must be 1-{MAX_ACCESS_KEY_BYTES} bytes long"
            )));
        }
        if checked.iter().any(|existing| existing.name() == name) {
            return Err(invalid(format!(
                "access key name {name:?} is configured twice"
            )));
        }
        if secrets.contains(&key.as_str()) {
            return Err(invalid(format!(
                "access key {name:?} has the same secret as another key; each key needs its own"
            )));
        }
        secrets.push(key);
        checked.push(AccessKey::new(name, key));
    }
    Ok(Auth::Keys(checked))
}

/// A byte size: a number with an optional unit (`B`, `KiB`, `MiB`, `GiB`, or the
/// decimal `KB`, `MB`, `GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (number, unit) = split_unit(text);
        let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" | "k" => 1 << 10,
            "mib" | "m" => 1 << 20,
            "gib" | "g" => 1 << 30,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            _ => {
                return Err(format!(
                    "unknown size unit {unit:?} in {text:?}; use B, KiB, MiB or GiB"
                ));
            }
        };
        let number: u64 = number
            .parse()
            .map_err(|_| format!("invalid size {text:?}; expected e.g. 100MiB"))?;
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

/// A duration: a number with an optional unit (`ms`, `s`, `m`, `h`; default `s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (number, unit) = split_unit(text);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("invalid duration {text:?}; expected e.g. 30s, 5m or 2h"))?;
        let duration = match unit {
            "ms" => Duration::from_millis(number),
            "" | "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            _ => {
                return Err(format!(
                    "unknown duration unit {unit:?} in {text:?}; use ms, s, m or h"
                ));
            }
        };
        Ok(HumanDuration(duration))
    }
}

fn split_unit(text: &str) -> (&str, &str) {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    (&text[..split], text[split..].trim())
}

/// TOML accepts sizes and durations as numbers or as strings with units.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

impl NumberOrText {
    fn parse<T: FromStr<Err = String>>(self) -> Result<T, String> {
        match self {
            Self::Number(number) => number.to_string().parse(),
            Self::Text(text) => text.parse(),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        NumberOrText::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        NumberOrText::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Config::from_args(std::iter::once("hydrant").chain(args.iter().copied()))
    }

    fn error(args: &[&str]) -> String {
        match parse(args) {
            Err(error) => error.to_string(),
            Ok(config) => panic!("expected an error for {args:?}, got {config:?}"),
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let config = parse(&["--access-key", "prod=secret"]).unwrap();
        assert_eq!(config.listen, default_addr(DEFAULT_LISTEN));
        assert_eq!(config.admin_listen, default_addr(DEFAULT_ADMIN_LISTEN));
        assert_eq!(config.storage, FileSinkSettings::new(DEFAULT_DATA_DIR));
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(config.max_stream_labels, DEFAULT_MAX_STREAM_LABELS);
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn access_keys_split_at_the_first_equals_sign() {
        let config = parse(&["--access-key", "prod=abc==", "--access-key", "old=x=y"]).unwrap();
        let Auth::Keys(keys) = &config.auth else {
            panic!("keys expected")
        };
        assert_eq!(
            keys,
            &[
                AccessKey::new("prod", "abc=="),
                AccessKey::new("old", "x=y")
            ]
        );
        assert_eq!(
            config.auth.check(Some(b"x=y")).unwrap().as_deref(),
            Some("old")
        );
    }

    #[test]
    fn invalid_configurations_are_refused_with_one_line() {
        let table: &[(&[&str], &str)] = &[
            (&[], "no access key configured"),
            (&["--access-key", "novalue"], "expected NAME=KEY"),
            (&["--access-key", "=secret"], "access key name"),
            (&["--access-key", "bad name=secret"], "access key name"),
            (&["--access-key", "a="], "must be 1-4096 bytes"),
            (
                &["--access-key", "a=x", "--access-key", "a=y"],
                "configured twice",
            ),
            (
                &["--access-key", "a=x", "--access-key", "b=x"],
                "same secret",
            ),
            (&["--no-auth", "--access-key", "a=x"], "cannot be combined"),
            (
                &["--no-auth", "--listen", "nowhere"],
                "invalid value 'nowhere'",
            ),
            (
                &["--no-auth", "--max-body-bytes", "12XB"],
                "unknown size unit",
            ),
            (
                &["--no-auth", "--max-records", "0"],
                "max-records must be greater than 0",
            ),
            (
                &["--no-auth", "--max-in-flight-bytes", "1MiB"],
                "max-in-flight-bytes",
            ),
            (&["--no-auth", "--segment-max-age", "0s"], "greater than 0"),
            (
                &["--no-auth", "--shutdown-grace", "soon"],
                "invalid duration",
            ),
            (&["--no-auth", "--log-format", "xml"], "invalid value 'xml'"),
            (
                &["--no-auth", "--config", "/nonexistent/hydrant.toml"],
                "cannot read config file",
            ),
            (
                &["--no-auth", "--access-key-file", "/nonexistent/keys"],
                "cannot read access key file",
            ),
            (&["--no-auth", "--bogus"], "unexpected argument"),
        ];
        for (args, expected) in table {
            let message = error(args);
            assert!(message.contains(expected), "{args:?}: {message:?}");
            assert!(
                !message.contains('\n'),
                "{args:?}: {message:?} is not one line"
            );
        }
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let message = error(&["--access-key", "a=topsecret", "--access-key", "b=topsecret"]);
        assert!(!message.contains("topsecret"), "{message}");
    }

    #[test]
    fn no_auth_warns_loudly() {
        let config = parse(&["--no-auth"]).unwrap();
        assert_eq!(config.auth, Auth::Disabled);
        assert!(config.warnings[0].contains("AUTHENTICATION IS OFF"));
    }

    #[test]
    fn key_file_and_config_file_are_read_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::write(&keys, "# comment\n\nfile-key=abc=def\r\n").unwrap();
        let toml = dir.path().join("hydrant.toml");
        let mut file = std::fs::File::create(&toml).unwrap();
        writeln!(
            file,
            r#"
listen = "127.0.0.1:7000"
data_dir = "/srv/hydrant"
access_key_file = "{}"
log_format = "json"
[[access_keys]]
name = "toml-key"
key = "t0ml"
[limits]
max_body_bytes = "8MiB"
max_inflated_bytes = 16777216
max_in_flight_bytes = "1GiB"
[storage]
segment_max_age = "1m"
dedup_capacity = 5
"#,
            keys.display()
        )
        .unwrap();
        let config = parse(&[
            "--config",
            toml.to_str().unwrap(),
            "--listen",
            "127.0.0.1:7001",
        ])
        .unwrap();
        assert_eq!(config.listen.port(), 7001, "the flag wins over the file");
        assert_eq!(config.storage.data_dir, PathBuf::from("/srv/hydrant"));
        assert_eq!(config.limits.max_body_bytes, 8 << 20);
        assert_eq!(config.limits.max_inflated_bytes, 16 << 20);
        assert_eq!(config.limits.max_in_flight_bytes, 1 << 30);
        assert_eq!(config.storage.segment_max_age, Duration::from_secs(60));
        assert_eq!(config.storage.dedup_capacity, 5);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.auth.check(Some(b"t0ml")).unwrap().as_deref(),
            Some("toml-key")
        );
        assert_eq!(
            config.auth.check(Some(b"abc=def")).unwrap().as_deref(),
            Some("file-key")
        );
    }

    /// The documented example must stay valid and its "defaults" must be the defaults.
    #[test]
    fn the_example_config_file_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/hydrant.example.toml"
        ))
        .unwrap();
        let keys = dir.path().join("keys");
        std::fs::write(&keys, "other=another-secret\n").unwrap();
        let toml = dir.path().join("hydrant.toml");
        std::fs::write(
            &toml,
            example.replace("/etc/hydrant/access-keys", keys.to_str().unwrap()),
        )
        .unwrap();
        let config = parse(&["--config", toml.to_str().unwrap()]).unwrap();
        let defaults = parse(&["--no-auth"]).unwrap();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.admin_listen, defaults.admin_listen);
        assert_eq!(config.limits, defaults.limits);
        assert_eq!(config.storage, defaults.storage);
        assert_eq!(config.shutdown_grace, defaults.shutdown_grace);
        assert_eq!(config.max_stream_labels, defaults.max_stream_labels);
        assert_eq!(config.decode.default_format, defaults.decode.default_format);
        assert_eq!(config.decode.bad_records, defaults.decode.bad_records);
        assert_eq!(
            config.decode.max_record_inflated_bytes,
            defaults.decode.max_record_inflated_bytes
        );
        assert_eq!(config.decode.rules.len(), 2);
        let names: Vec<&str> = config.sinks.iter().map(|sink| sink.name.as_str()).collect();
        assert_eq!(names, [EMBEDDED_SINK, "lake", "bus", "stream"]);
        assert_eq!(config.router.routes.len(), 3);
        assert_eq!(config.router.default_sinks, SinkSet::of(&[0]));
        assert_eq!(config.fanout, defaults.fanout);
        assert_eq!(
            config
                .auth
                .check(Some(b"another-secret"))
                .unwrap()
                .as_deref(),
            Some("other")
        );
    }

    /// Sink and route mistakes stop startup with one clear line.
    #[test]
    fn bad_sinks_and_routes_are_refused() {
        let table: &[(&str, &str)] = &[
            ("[[sinks]]\ntype = \"discard\"\n", "needs a name"),
            ("[[sinks]]\nname = \"x\"\n", "needs a type"),
            (
                "[[sinks]]\nname = \"x\"\ntype = \"ftp\"\n",
                "unknown type \"ftp\"",
            ),
            (
                "[[sinks]]\nname = \"file\"\ntype = \"discard\"\n",
                "used twice",
            ),
            (
                "[[sinks]]\nname = \"bad name\"\ntype = \"discard\"\n",
                "letters, digits",
            ),
            (
                "[[sinks]]\nname = \"x\"\ntype = \"discard\"\nextra = 1\n",
                "unknown field `extra`",
            ),
            (
                "[[sinks]]\nname = \"x\"\ntype = \"s3\"\n",
                "missing field `bucket`",
            ),
            (
                "[[routes]]\nsinks = [\"nowhere\"]\n",
                "unknown sink \"nowhere\"",
            ),
            ("[[routes]]\nsinks = []\n", "names no sinks"),
            (
                "[[routes]]\nsinks = [\"file\"]\nkind = \"trace\"\n",
                "unknown event kind",
            ),
            (
                "[[routes]]\nsinks = [\"file\"]\nlog_group = \"\"\n",
                "empty pattern",
            ),
            (
                "[[routes]]\nsinks = [\"file\"]\nlogroup = \"x\"\n",
                "unknown field `logroup`",
            ),
            (
                "[routing]\ndefault_sinks = [\"gone\"]\n",
                "unknown sink \"gone\"",
            ),
            ("[fanout]\ndeadline = \"200s\"\n", "delivery-deadline"),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (toml, expected) in table {
            let path = dir.path().join("hydrant.toml");
            std::fs::write(&path, format!("no_auth = true\n{toml}")).unwrap();
            let message = error(&["--config", path.to_str().unwrap()]);
            assert!(message.contains(expected), "{toml:?}: {message:?}");
            assert!(!message.contains('\n'), "{message:?} is not one line");
        }
    }

    #[test]
    fn routes_resolve_sink_names_to_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hydrant.toml");
        std::fs::write(
            &path,
            "no_auth = true\n[[sinks]]\nname = \"null\"\ntype = \"discard\"\n[[sinks]]\nname = \"out\"\ntype = \"stdout\"\n\
             [[routes]]\nkind = [\"metric\", \"log\"]\nsinks = [\"out\", \"null\"]\ncontinue = true\ncommon_attributes = { env = \"prod\" }\n\
             [routing]\ndefault_sinks = []\n",
        )
        .unwrap();
        let config = parse(&["--config", path.to_str().unwrap()]).unwrap();
        let route = &config.router.routes[0];
        assert_eq!(route.sinks, SinkSet::of(&[1, 2]));
        assert!(route.continue_matching);
        assert_eq!(route.matcher.kinds, ["metric", "log"]);
        assert_eq!(route.matcher.common_attributes.len(), 1);
        assert!(config.router.default_sinks.is_empty());
    }

    /// The configuration shipped with docker-compose.yml must stay valid.
    #[test]
    fn the_docker_config_file_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/hydrant.toml");
        let config = parse(&["--no-auth", "--config", path]).unwrap();
        assert_eq!(config.sinks.len(), 2);
        assert_eq!(config.router.default_sinks, SinkSet::of(&[0, 1]));
    }

    #[test]
    fn unknown_config_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("hydrant.toml");
        std::fs::write(&toml, "no_auth = true\nlisten_addr = \"x\"\n").unwrap();
        let message = error(&["--config", toml.to_str().unwrap()]);
        assert!(message.contains("unknown field `listen_addr`"), "{message}");
    }

    #[test]
    fn sizes_and_durations_parse() {
        let sizes = [
            ("0", 0),
            ("512", 512),
            ("4KiB", 4096),
            ("100MiB", 100 << 20),
            ("1GiB", 1 << 30),
            ("5MB", 5_000_000),
            ("2 mib", 2 << 20),
        ];
        for (text, bytes) in sizes {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
        for bad in ["", "MiB", "1.5MiB", "-1", "12XB", "99999999999999999999GiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
        let durations = [
            ("30", 30_000),
            ("30s", 30_000),
            ("500ms", 500),
            ("5m", 300_000),
            ("2h", 7_200_000),
        ];
        for (text, ms) in durations {
            assert_eq!(
                text.parse::<HumanDuration>(),
                Ok(HumanDuration(Duration::from_millis(ms))),
                "{text}"
            );
        }
        for bad in ["", "s", "1d", "1.5s"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
    }

    /// The help text quotes the defaults; this keeps it honest.
    #[test]
    fn help_quotes_the_real_defaults() {
        let ConfigError::Display(help) = parse(&["--help"]).unwrap_err() else {
            panic!("--help should display")
        };
        let expected = [
            format!("[default: {DEFAULT_LISTEN}]"),
            format!("[default: {DEFAULT_ADMIN_LISTEN}]"),
            format!("[default: {DEFAULT_DATA_DIR}]"),
            format!("[default: {}MiB]", limits::DEFAULT_MAX_BODY_BYTES >> 20),
            format!("[default: {}MiB]", limits::DEFAULT_MAX_INFLATED_BYTES >> 20),
            format!("[default: {}]", limits::DEFAULT_MAX_RECORDS),
            format!(
                "[default: {}MiB]",
                limits::DEFAULT_MAX_IN_FLIGHT_BYTES >> 20
            ),
            format!("[default: {}MiB]", DEFAULT_SEGMENT_MAX_BYTES >> 20),
            format!("[default: {}m]", DEFAULT_SEGMENT_MAX_AGE.as_secs() / 60),
            format!("[default: {}h]", DEFAULT_DEDUP_WINDOW.as_secs() / 3600),
            format!("[default: {DEFAULT_DEDUP_CAPACITY}]"),
            format!("[default: {}s]", DEFAULT_SHUTDOWN_GRACE.as_secs()),
            format!("[default: {DEFAULT_MAX_STREAM_LABELS}]"),
        ];
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for text in expected {
            assert!(flat.contains(&text), "--help lacks {text}");
        }
        for flag in [
            "--listen",
            "--admin-listen",
            "--data-dir",
            "--access-key",
            "--access-key-file",
            "--config",
            "--no-auth",
        ] {
            assert!(flat.contains(flag), "--help lacks {flag}");
        }
    }
}
