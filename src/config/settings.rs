//! Every global setting, declared once: each struct below is both a group of
//! command-line flags (clap, with the environment variable) and a table of the
//! TOML file (serde, the field's name being the key), and `settings!` gives each
//! setting with a default its default, which the `--help` text quotes.
//!
//! Adding a setting is one field in one of these structs, with its doc comment (the
//! help text), its `#[arg]` (flag and variable) and its default; then reading the
//! value where it is used.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use super::keys::FileAccessKey;
use super::routes::{FileRoute, FileRouting};
use super::{DEFAULT_ADMIN_LISTEN, DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_SHUTDOWN_GRACE};
use super::{FileDecoderRule, LogFormat, default_addr};
use crate::decode::DecodeSettings;
use crate::limits;
use crate::metrics::DEFAULT_MAX_STREAM_LABELS;
use crate::server::listener::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_ADMIN_CONNECTIONS, DEFAULT_MAX_BODY_TIME, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MIN_BODY_RATE, DEFAULT_MIN_BODY_RATE_GRACE,
};
use crate::server::tls::DEFAULT_HANDSHAKE_TIMEOUT;
use crate::server::tls::acme::DEFAULT_ACME_DIRECTORY;
use crate::setting::{ByteSize, HumanDuration};
use crate::sink::dedup::{DEFAULT_DEDUP_CAPACITY, DEFAULT_DEDUP_WINDOW};
use crate::sink::fanout::{DEFAULT_ATTEMPTS, DEFAULT_BACKOFF, DEFAULT_DEADLINE};
use crate::sink::file::{DEFAULT_SEGMENT_MAX_AGE, DEFAULT_SEGMENT_MAX_BYTES};

/// Declares a struct of settings. Each `name: Type = default` field is optional
/// (`Option<Type>`, so that a flag, the file and the default can be told apart)
/// and gets a method of the same name giving its value or else its default; the
/// fields after `also` are taken as written (sections, lists, flags or keys that
/// exist on one side only).
macro_rules! settings {
    (
        $(#[$meta:meta])*
        struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                $field:ident: $type:ty $(= $default:expr)?,
            )*
        }
        also {
            $(
                $(#[$also_meta:meta])*
                $also:ident: $also_type:ty,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $(
                $(#[$field_meta])*
                pub(super) $field: Option<$type>,
            )*
            $(
                $(#[$also_meta])*
                pub(super) $also: $also_type,
            )*
        }

        impl $name {
            /// Each setting as given here, else as given in `fallback`.
            pub(super) fn or(mut self, fallback: Self) -> Self {
                $(self.$field = self.$field.or(fallback.$field);)*
                self
            }

            /// Each default, by the flag's id, as `--help` shows it.
            pub(super) fn defaults(out: &mut Vec<(&'static str, String)>) {
                $($(out.push((stringify!($field), Shown::shown(&$default)));)?)*
            }

            $($(
                pub(super) fn $field(&self) -> $type {
                    self.$field.clone().unwrap_or_else(|| $default)
                }
            )?)*
        }
    };
}

/// A default as `--help` writes it: the form a flag takes.
trait Shown {
    fn shown(&self) -> String;
}

macro_rules! shown_by_display {
    ($($type:ty),*) => {
        $(impl Shown for $type {
            fn shown(&self) -> String {
                self.to_string()
            }
        })*
    };
}

shown_by_display!(
    ByteSize,
    HumanDuration,
    SocketAddr,
    String,
    LogFormat,
    usize,
    u32,
    u64
);

impl Shown for PathBuf {
    fn shown(&self) -> String {
        self.display().to_string()
    }
}

/// Every default of every flag, by its id.
pub(super) fn defaults() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    Settings::defaults(&mut out);
    LimitsSection::defaults(&mut out);
    ConnectionsSection::defaults(&mut out);
    StorageSection::defaults(&mut out);
    DecodeSection::defaults(&mut out);
    FanoutSection::defaults(&mut out);
    TlsSection::defaults(&mut out);
    out
}

settings! {
    /// The flags, and the TOML file's top level.
    struct Settings {
        /// Ingest listener address (Firehose deliveries: POST on any path; GET /healthz)
        #[arg(long, env = "HYDRANT_LISTEN", value_name = "ADDR")]
        listen: SocketAddr = default_addr(DEFAULT_LISTEN),

        /// Admin listener address (GET /metrics, /healthz, /readyz)
        #[arg(long, env = "HYDRANT_ADMIN_LISTEN", value_name = "ADDR")]
        admin_listen: SocketAddr = default_addr(DEFAULT_ADMIN_LISTEN),

        /// Directory for event segments and the commit journal
        #[arg(long, env = "HYDRANT_DATA_DIR", value_name = "DIR")]
        data_dir: PathBuf = PathBuf::from(DEFAULT_DATA_DIR),

        /// Time deliveries in flight get to finish after SIGTERM or SIGINT
        #[arg(long, env = "HYDRANT_SHUTDOWN_GRACE", value_name = "DURATION")]
        shutdown_grace: HumanDuration = HumanDuration(DEFAULT_SHUTDOWN_GRACE),

        /// Most distinct delivery stream names given their own metric label; the rest share "(other)"
        #[arg(long, env = "HYDRANT_MAX_STREAM_LABELS", value_name = "N")]
        max_stream_labels: usize = DEFAULT_MAX_STREAM_LABELS,

        /// Log format: text or json (the level comes from RUST_LOG, default info)
        #[arg(long, env = "HYDRANT_LOG_FORMAT", value_name = "FORMAT")]
        log_format: LogFormat = LogFormat::default(),
    }
    also {
        /// An access key Firehose must send, as NAME=KEY (split at the first '='). Repeatable. Keys from every source are used together: these flags, HYDRANT_ACCESS_KEYS (entries separated by newlines), key files and the config file; names must be unique. Prefer a key file, which keeps keys out of the process list
        #[arg(long = "access-key", value_name = "NAME=KEY")]
        #[serde(skip)]
        access_key_args: Vec<String>,

        /// File of access keys, one NAME=KEY per line (blank lines and lines starting with '#' skipped), or the JSON AWS Secrets Manager keeps a Firehose key in, {"api_key": "KEY"}: one key named after the file without its extension. Repeatable; HYDRANT_ACCESS_KEY_FILE and access_key_file in the config file name more, all used. Key files and the config file are read again without a restart on SIGHUP and within 10s of a change (replace a file by renaming a complete one over it); a reload that fails or leaves no key keeps the keys in use
        #[arg(long = "access-key-file", value_name = "FILE")]
        #[serde(skip)]
        access_key_files: Vec<PathBuf>,

        /// Accept deliveries without an access key. Only for trusted networks and tests
        #[arg(long = "no-auth", env = "HYDRANT_NO_AUTH")]
        #[serde(skip)]
        no_auth_flag: bool,

        /// TOML configuration file (keys as in the README's configuration table)
        #[arg(long, env = "HYDRANT_CONFIG", value_name = "FILE")]
        #[serde(skip)]
        config: Option<PathBuf>,

        #[arg(skip)]
        #[serde(default)]
        access_keys: Vec<FileAccessKey>,

        #[arg(skip)]
        access_key_file: Option<PathBuf>,

        #[arg(skip)]
        no_auth: Option<bool>,

        #[command(flatten)]
        #[serde(default)]
        limits: LimitsSection,

        #[command(flatten)]
        #[serde(default)]
        connections: ConnectionsSection,

        #[command(flatten)]
        #[serde(default)]
        storage: StorageSection,

        #[command(flatten)]
        #[serde(default)]
        decode: DecodeSection,

        #[command(flatten)]
        #[serde(default)]
        fanout: FanoutSection,

        #[command(flatten)]
        #[serde(default)]
        tls: TlsSection,

        /// Sinks besides the embedded file sink; each a table with `name` and `type`,
        /// with its place in the file for messages.
        #[arg(skip)]
        #[serde(default)]
        sinks: Vec<toml::Spanned<toml::Table>>,

        #[arg(skip)]
        #[serde(default)]
        routes: Vec<FileRoute>,

        #[arg(skip)]
        #[serde(default)]
        routing: FileRouting,
    }
}

settings! {
    /// HTTPS on the ingest listener (`[tls]`).
    struct TlsSection {
        /// Serve HTTPS on the ingest listener with this PEM certificate chain (leaf first), with --tls-key. Read again on SIGHUP and when the file changes (checked every 5s); a file that does not load keeps the old certificate
        #[arg(long = "tls-cert", env = "HYDRANT_TLS_CERT", value_name = "FILE")]
        cert: PathBuf,

        /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1)
        #[arg(long = "tls-key", env = "HYDRANT_TLS_KEY", value_name = "FILE")]
        key: PathBuf,

        /// Time a client has to complete the TLS handshake; then the connection is closed
        #[arg(long = "tls-handshake-timeout", env = "HYDRANT_TLS_HANDSHAKE_TIMEOUT", value_name = "DURATION")]
        handshake_timeout: HumanDuration = HumanDuration(DEFAULT_HANDSHAKE_TIMEOUT),

        /// Get the ingest listener's certificate from an ACME CA (Let's Encrypt by default) for this domain name, and renew it, instead of --tls-cert/--tls-key. Repeatable (one certificate names them all; HYDRANT_ACME_DOMAINS separates them by commas). Validated by TLS-ALPN-01 on the ingest listener itself, so the name must resolve to this host and the CA must reach the listener on port 443; no wildcards (TLS-ALPN-01 cannot validate them). Until the first certificate is issued, handshakes fail
        #[arg(long = "acme-domain", env = "HYDRANT_ACME_DOMAINS", value_name = "NAME", value_delimiter = ',')]
        acme_domains: Vec<String>,

        /// Email address the ACME CA may write to about the certificates (expiry, problems); sent as mailto:. Optional
        #[arg(long = "acme-contact", env = "HYDRANT_ACME_CONTACT", value_name = "EMAIL")]
        acme_contact: String,

        /// ACME directory URL of the CA. Let's Encrypt's staging CA, for trials without its production rate limits (its certificates are not trusted by Firehose): https://acme-staging-v02.api.letsencrypt.org/directory
        #[arg(long = "acme-directory", env = "HYDRANT_ACME_DIRECTORY", value_name = "URL")]
        acme_directory: String = DEFAULT_ACME_DIRECTORY.to_owned(),

        /// Directory keeping the ACME account and the certificate and its key, so that a restart serves them without a new order; keep it on persistent storage [default: <data dir>/acme]
        #[arg(long = "acme-cache-dir", env = "HYDRANT_ACME_CACHE_DIR", value_name = "DIR")]
        acme_cache_dir: PathBuf,

        /// PEM root certificates to trust for the ACME directory's own HTTPS, for a private or test CA [default: the system's roots]
        #[arg(long = "acme-ca-file", env = "HYDRANT_ACME_CA_FILE", value_name = "FILE")]
        acme_ca_file: PathBuf,

        /// Renew the ACME certificate this long before it expires [default: when two thirds of its lifetime have passed]
        #[arg(long = "acme-renew-before", env = "HYDRANT_ACME_RENEW_BEFORE", value_name = "DURATION")]
        acme_renew_before: HumanDuration,
    }
    also {}
}

settings! {
    /// Limits on untrusted input (`[limits]`).
    struct LimitsSection {
        /// Largest request body accepted, as received; larger ones get 413
        #[arg(long, env = "HYDRANT_MAX_BODY_BYTES", value_name = "SIZE")]
        max_body_bytes: ByteSize = ByteSize(limits::DEFAULT_MAX_BODY_BYTES),

        /// Largest body after Content-Encoding: gzip inflation; larger ones get 413
        #[arg(long, env = "HYDRANT_MAX_INFLATED_BYTES", value_name = "SIZE")]
        max_inflated_bytes: ByteSize = ByteSize(limits::DEFAULT_MAX_INFLATED_BYTES),

        /// Most records accepted in one delivery; more get 400
        #[arg(long, env = "HYDRANT_MAX_RECORDS", value_name = "N")]
        max_records: usize = limits::DEFAULT_MAX_RECORDS,

        /// Most bytes held by all deliveries in flight; past it new ones get 503 at once
        #[arg(long, env = "HYDRANT_MAX_IN_FLIGHT_BYTES", value_name = "SIZE")]
        max_in_flight_bytes: ByteSize = ByteSize(limits::DEFAULT_MAX_IN_FLIGHT_BYTES),

        /// Most bytes of events one delivery may decode into, per byte of its inflated body (but at least 64MiB); more gets 413
        #[arg(long, env = "HYDRANT_MAX_DECODED_RATIO", value_name = "N")]
        max_decoded_ratio: u64 = limits::DEFAULT_MAX_DECODED_RATIO,

        /// Most bytes of events one delivery may decode into, whatever its size; more gets 413
        #[arg(long, env = "HYDRANT_MAX_DECODED_BYTES", value_name = "SIZE")]
        max_decoded_bytes: ByteSize = ByteSize(limits::DEFAULT_MAX_DECODED_BYTES),
    }
    also {}
}

settings! {
    /// Connection caps and timeouts of both listeners (`[connections]`).
    struct ConnectionsSection {
        /// Time a client has to send a complete request head (from connecting, or from the first byte of a later request); then the connection is closed
        #[arg(long, env = "HYDRANT_HEADER_TIMEOUT", value_name = "DURATION")]
        header_timeout: HumanDuration = HumanDuration(DEFAULT_HEADER_TIMEOUT),

        /// Time a keep-alive connection may stay idle between requests; keep it above the idle timeout of a load balancer in front
        #[arg(long, env = "HYDRANT_IDLE_TIMEOUT", value_name = "DURATION")]
        idle_timeout: HumanDuration = HumanDuration(DEFAULT_IDLE_TIMEOUT),

        /// Longest gap without a byte of a request body (answered 408, connection closed) or of a reply the client should be reading (connection closed)
        #[arg(long, env = "HYDRANT_BODY_TIMEOUT", value_name = "DURATION")]
        body_timeout: HumanDuration = HumanDuration(DEFAULT_BODY_TIMEOUT),

        /// Lowest average rate of a request body, per second, after --min-body-rate-grace; slower bodies are answered 408. 0 turns the check off
        #[arg(long, env = "HYDRANT_MIN_BODY_RATE", value_name = "SIZE")]
        min_body_rate: ByteSize = ByteSize(DEFAULT_MIN_BODY_RATE),

        /// Time a request body may take before --min-body-rate applies
        #[arg(long, env = "HYDRANT_MIN_BODY_RATE_GRACE", value_name = "DURATION")]
        min_body_rate_grace: HumanDuration = HumanDuration(DEFAULT_MIN_BODY_RATE_GRACE),

        /// Longest time a whole request body may take to arrive; longer is answered 408 (Firehose waits 3 minutes for the answer)
        #[arg(long, env = "HYDRANT_MAX_BODY_TIME", value_name = "DURATION")]
        max_body_time: HumanDuration = HumanDuration(DEFAULT_MAX_BODY_TIME),

        /// Most open connections on the ingest listener; past it new ones are closed at once
        #[arg(long, env = "HYDRANT_MAX_CONNECTIONS", value_name = "N")]
        max_connections: usize = DEFAULT_MAX_CONNECTIONS,

        /// Most open connections on the admin listener
        #[arg(long, env = "HYDRANT_MAX_ADMIN_CONNECTIONS", value_name = "N")]
        max_admin_connections: usize = DEFAULT_MAX_ADMIN_CONNECTIONS,
    }
    also {}
}

settings! {
    /// The file sinks' segments and the duplicate window (`[storage]`).
    struct StorageSection {
        /// Complete a segment file once it reaches this size
        #[arg(long, env = "HYDRANT_SEGMENT_MAX_BYTES", value_name = "SIZE")]
        segment_max_bytes: ByteSize = ByteSize(DEFAULT_SEGMENT_MAX_BYTES),

        /// Complete a segment file once it is this old
        #[arg(long, env = "HYDRANT_SEGMENT_MAX_AGE", value_name = "DURATION")]
        segment_max_age: HumanDuration = HumanDuration(DEFAULT_SEGMENT_MAX_AGE),

        /// How long a committed delivery is remembered, so Firehose's retries of it are not stored twice
        #[arg(long, env = "HYDRANT_DEDUP_WINDOW", value_name = "DURATION")]
        dedup_window: HumanDuration = HumanDuration(DEFAULT_DEDUP_WINDOW),

        /// Most committed deliveries remembered for duplicate detection
        #[arg(long, env = "HYDRANT_DEDUP_CAPACITY", value_name = "N")]
        dedup_capacity: usize = DEFAULT_DEDUP_CAPACITY,
    }
    also {}
}

settings! {
    /// How records are decoded (`[decode]`).
    struct DecodeSection {
        /// Format of records when no --path-format or --stream-format rule matches: auto (sniff each record), cloudwatch_logs, cloudwatch_logs_messages, metric_stream_json, metric_stream_otel07, metric_stream_otel10, eventbridge, vpc_flow or raw
        #[arg(long = "format", env = "HYDRANT_FORMAT", value_name = "FORMAT")]
        default_format: String = super::describe::format_name(DecodeSettings::default().default_format).to_owned(),

        /// What to do with a record that cannot be decoded: dead_letter (store it with its reason under DATA_DIR/dead_letter and accept the rest) or reject (answer 400 for the whole delivery)
        #[arg(long, env = "HYDRANT_BAD_RECORDS", value_name = "POLICY")]
        bad_records: String = super::describe::bad_records_name(DecodeSettings::default().bad_records).to_owned(),

        /// Field list of custom-format VPC flow logs, space-separated (the default version-2 format needs none)
        #[arg(long, env = "HYDRANT_VPC_FLOW_FIELDS", value_name = "FIELDS")]
        vpc_flow_fields: FieldList,

        /// Largest size one record may inflate to (gzip'd CloudWatch Logs records); larger ones are bad records
        #[arg(long, env = "HYDRANT_MAX_RECORD_INFLATED_BYTES", value_name = "SIZE")]
        max_record_inflated_bytes: ByteSize = ByteSize(DecodeSettings::default().max_record_inflated_bytes),
    }
    also {
        /// Fix the format of deliveries to matching URL paths, as GLOB=FORMAT (e.g. /metrics/*=metric_stream_otel10). Repeatable; the first matching rule wins. No environment variable: rules are flags or [[decode.rules]]
        #[arg(long = "path-format", value_name = "GLOB=FORMAT")]
        #[serde(skip)]
        path_formats: Vec<String>,

        /// Fix the format of deliveries from matching delivery streams, as GLOB=FORMAT (e.g. vpc-flows-*=vpc_flow). Repeatable; checked after --path-format rules
        #[arg(long = "stream-format", value_name = "GLOB=FORMAT")]
        #[serde(skip)]
        stream_formats: Vec<String>,

        #[arg(skip)]
        #[serde(default)]
        rules: Vec<FileDecoderRule>,
    }
}

settings! {
    /// Retries and deadline of the fan-out to sinks (`[fanout]`).
    struct FanoutSection {
        /// Attempts per sink and delivery, the first included, before the delivery is answered 503
        #[arg(long = "fanout-attempts", env = "HYDRANT_FANOUT_ATTEMPTS", value_name = "N")]
        attempts: u32 = DEFAULT_ATTEMPTS,

        /// Wait before a sink's first retry, doubled for each further one; every wait is at most 5s
        #[arg(long = "fanout-backoff", env = "HYDRANT_FANOUT_BACKOFF", value_name = "DURATION")]
        backoff: HumanDuration = HumanDuration(DEFAULT_BACKOFF),

        /// Longest time a delivery may wait for its sinks before it is answered 503 (Firehose waits at most 3 minutes)
        #[arg(long = "delivery-deadline", env = "HYDRANT_DELIVERY_DEADLINE", value_name = "DURATION")]
        deadline: HumanDuration = HumanDuration(DEFAULT_DEADLINE),
    }
    also {}
}

/// A list of field names: space-separated in a flag, a list of strings in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldList(pub(super) Vec<String>);

impl FromStr for FieldList {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.split_whitespace().map(str::to_owned).collect()))
    }
}

impl<'de> Deserialize<'de> for FieldList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(deserializer).map(Self)
    }
}
