//! The `kafka` sink: one Kafka record per event, produced with [`rskafka`], a
//! pure-Rust client, so there is no librdkafka to build, link or configure (only
//! the lz4 and zstd codecs are C libraries, built by their crates).
//!
//! Each event becomes a record whose topic and key are rendered from templates (see
//! [`super::template`]), whose value is the event's NDJSON line (without the `\n`),
//! whose timestamp is when Hydrant received the delivery, and whose headers carry
//! `hydrant-request-id` and `hydrant-table`. Records are grouped by topic and
//! partition; the partition is chosen from the key with Kafka's own default hash
//! (murmur2), so records with the same key land where a Java producer would put
//! them, and a delivery's records keep their order within a partition. A commit
//! returns once the partition leaders have acknowledged every record.
//!
//! **Keys** identify events, so values are written into them with
//! [`encode_key_value`] (percent-encoded: two different values never give the same
//! text), and the default key starts with the delivery key, which stands for the
//! source ARN and the request id together: two streams that happen to send the same
//! request id do not share keys, which on a compacted topic would lose records. A
//! key longer than [`MAX_KEY_BYTES`] is replaced by `%hash:` and its digest.
//! **Topics** are cleaned to Kafka's characters (lossy: they only route); a name
//! longer than [`MAX_TOPIC_CHARS`] keeps its beginning and ends in `-` and the
//! digest of the rendered name, so different long names stay different topics.
//!
//! Missing topics are created (when `create_topics` is on) with the configured
//! partitions and replication factor; partition counts are learnt from the
//! cluster's metadata, once per connection (partitions added to a topic are used
//! after the next reconnect). Large deliveries are produced in several batches per
//! partition, each at most `max_batch_bytes` ([`DEFAULT_MAX_BATCH_BYTES`]) counted
//! with Kafka's per-record and per-batch overhead, in order: a broker refuses a
//! batch over its `message.max.bytes` (1 MiB by default), on every retry.
//!
//! **Events larger than a batch.** A record that alone would exceed
//! `max_batch_bytes` (a Firehose record may hold 1,000 KiB, which base64 makes a line
//! of over 1.3 MB) is produced as parts, in order, to the partition the event's key
//! chooses. Each part's value is the next slice of the line's bytes; its key is the
//! event's key followed by `%part:`, the parts' size, `:` and the part's number (so a
//! compacted topic keeps every part, and parts sliced under another
//! `max_batch_bytes` never share a key), and its headers name the part
//! ([`HEADER_PART`], from 0), the number of parts ([`HEADER_PARTS`]) and the event's
//! key ([`HEADER_KEY`]). Concatenating the values of one set of parts (one key before
//! the last `:`) in part order gives the line back byte for byte. Splits and replaced
//! keys and topics are counted in `hydrant_sink_reshaped_total`.
//!
//! Connecting is lazy: [`KafkaSink::connect`] only checks the configuration, and
//! the first commit or probe connects. A broker that is down at startup therefore
//! only marks the sink down (the fan-out's breaker and prober take it from there).
//! After any failure the connection, and the metadata learnt through it, is
//! dropped, so the next attempt reconnects and starts from fresh metadata.
//! Reconnecting backs off: while the brokers are down, probes
//! and commits fail at once between attempts, the attempts thin out to one every
//! 30 s, and the log gets one warning and then a summary every 30 s, not a line
//! per try.
//!
//! # Delivery guarantee: at least once
//!
//! Kafka has no way to recognise a delivery that was already written (this sink
//! does not use Kafka transactions or idempotent producer ids). When a commit fails
//! after some partitions acknowledged their records (a broker dies mid-commit, the
//! timeout passes), the whole delivery fails, Firehose retries it, and the records
//! that had been acknowledged are produced again. Consumers must tolerate
//! duplicates; the default key (`{delivery_key}:{table}:{record_index}:{event_index}`)
//! is unique per event, so they can recognise them. A retry of a delivery that had
//! fully committed is not written again: the fan-out remembers committed
//! deliveries per sink.

mod partition;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use self::partition::partition_for;
use super::dedup::DeliveryKey;
use super::template::{
    DIGEST_HEX_LEN, RESHAPE_HASHED_KEY, RESHAPE_HASHED_NAME, RESHAPE_SPLIT, ReshapeCounter,
    Template, check_key_template, digest_hex, encode_key_value,
};
use super::{LegacyUnit, LegacyUnitKey, SinkBatch, SinkError, SinkSettings};
use crate::metrics::Metrics;

/// Default topic template: one topic per table (`hydrant-events`,
/// `hydrant-dead_letter`), so dead letters never mix with decoded events.
pub const DEFAULT_TOPIC: &str = "hydrant-{table}";
/// Default key template: unique per event and stable across Firehose's retries, so
/// a consumer can recognise a duplicate produced by a retry. It starts with the
/// delivery key, not the request id, so that two streams sending the same request
/// id never share keys; the request id is in the [`HEADER_REQUEST_ID`] header.
pub const DEFAULT_KEY: &str = "{delivery_key}:{table}:{record_index}:{event_index}";
/// Default compression: none, which costs no CPU on the delivery path; `lz4` or
/// `zstd` are the cheap choices when bandwidth or broker disk matter more.
pub const DEFAULT_COMPRESSION: &str = "none";
/// Compressions accepted by `compression`.
pub const COMPRESSIONS: [&str; 5] = ["none", "gzip", "lz4", "snappy", "zstd"];
/// Default for creating missing topics: on, so a new deployment works without a
/// separate provisioning step (the broker may still refuse it).
pub const DEFAULT_CREATE_TOPICS: bool = true;
/// Default partitions of a created topic: one, the smallest that works; topics
/// that need more are better created by their owner.
pub const DEFAULT_TOPIC_PARTITIONS: i32 = 1;
/// Default replication factor of a created topic: one, which any cluster (even a
/// single development broker) accepts.
pub const DEFAULT_REPLICATION_FACTOR: i16 = 1;
/// Default bound on one commit, in milliseconds: well below the fan-out's delivery
/// deadline, so its retries still fit in it.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Longest a probe may take: the prober runs every 2 s and must not pile up.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest legal Kafka topic name.
pub const MAX_TOPIC_CHARS: usize = 249;
/// Default largest batch (record bytes before compression, Kafka's per-record and
/// per-batch overhead included) sent in one produce request. Brokers refuse a batch
/// above `message.max.bytes` (1 MiB by default, and the topic's `max.message.bytes`);
/// a quarter below it leaves room for compression codecs, which can grow data that
/// does not compress by a little.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 768 * 1024;
/// Smallest `max_batch_bytes` accepted: a part must still carry a useful slice of
/// an event beside its key and headers.
pub const MIN_MAX_BATCH_BYTES: usize = 16 * 1024;
/// Largest `max_batch_bytes` accepted: 64 MiB, far above any broker's setting (a
/// produce request's size is an `i32`, and the batch is held in memory).
pub const MAX_MAX_BATCH_BYTES: usize = 64 << 20;
/// Longest record key: 4 KiB, room for a key template with the longest log group
/// CloudWatch Logs allows (512 characters) escaped byte by byte (3 bytes each) and
/// more. A longer key is replaced by `%hash:` and its digest, so that the key, the
/// headers and a useful slice of the event always fit in a batch.
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// Starts a key that is the digest of a longer one (`%h` is no escape).
pub const HASHED_KEY_MARK: &str = "%hash:";
/// Joins an event's key and a part's number in the part's key (`%p` is no escape).
pub const PART_KEY_MARK: &str = "%part:";
/// Header naming the Firehose request a record came from.
pub const HEADER_REQUEST_ID: &str = "hydrant-request-id";
/// Header naming the table (`events` or `dead_letter`) a record belongs to.
pub const HEADER_TABLE: &str = "hydrant-table";
/// Header of a part: its position among the event's parts, from 0.
pub const HEADER_PART: &str = "hydrant-part";
/// Header of a part: how many parts the event was split into.
pub const HEADER_PARTS: &str = "hydrant-parts";
/// Header of a part: the key the whole event would have had, for putting the parts
/// together.
pub const HEADER_KEY: &str = "hydrant-key";
/// Bytes a record adds beside its key, value and header names and values, at most:
/// its length, attributes, timestamp and offset deltas, and the key, value and
/// header-count lengths, all varints (Kafka protocol, "Record" in the message
/// format). Counted so that many small records cannot add up past the limit.
const RECORD_OVERHEAD_BYTES: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
/// Bytes each header adds beside its name and value: two varint lengths.
const HEADER_OVERHEAD_BYTES: usize = 5 + 5;
/// Bytes of a record batch's own header (base offset, length, epoch, magic, CRC,
/// attributes, offsets, timestamps, producer id and epoch, sequence, count).
const BATCH_OVERHEAD_BYTES: usize = 61;
/// Longest decimal `u32`, for sizing headers that hold a count or an index.
const MAX_U32_DIGITS: usize = 10;
/// Characters of a long topic name kept before its digest: what leaves room for
/// `-` and the digest within [`MAX_TOPIC_CHARS`].
const TOPIC_KEPT_CHARS: usize = MAX_TOPIC_CHARS - 1 - DIGEST_HEX_LEN;
/// Client id the brokers see (in their logs and quotas).
const CLIENT_ID: &str = "hydrant";
/// First wait of the client's internal retries (reconnects, leader changes).
const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between the client's internal retries; the commit timeout bounds
/// the whole anyway.
const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Wait between two looks at the metadata for a topic just created, which brokers
/// publish with a small delay.
const TOPIC_VISIBLE_POLL: Duration = Duration::from_millis(100);
/// Wait before the second connection attempt of an outage (the first is made at
/// once): a broker restart or a leader move is usually over by then, so a blip
/// costs one short wait, while a broker that refuses connections is not hammered.
const RECONNECT_INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two connection attempts, reached after eight failures in
/// a row: a broker down for long is still tried twice a minute, so deliveries
/// resume within 30 s of its return (Firehose keeps retrying far longer), while
/// the attempts cost nothing noticeable on either side.
const RECONNECT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often, at most, an outage is summarised in the log after its first
/// warning: often enough that an operator tailing the log sees it is still going
/// on, rarely enough that a night-long outage is a few hundred lines, not millions.
const UNREACHABLE_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// Bound on the plain TCP connect made to each bootstrap broker before the client
/// is built: a broker that does not even accept connections fails this at once,
/// without the client's own retry loop (which logs a warning per try).
const REACHABLE_TIMEOUT: Duration = Duration::from_secs(1);
/// SASL mechanisms accepted by `sasl_mechanism`.
pub const SASL_MECHANISMS: [&str; 3] = ["plain", "scram-sha-256", "scram-sha-512"];
/// Shown instead of a secret when a configuration is printed or logged.
const REDACTED: &str = "<redacted>";

fn default_topic() -> String {
    DEFAULT_TOPIC.to_owned()
}

fn default_key() -> String {
    DEFAULT_KEY.to_owned()
}

fn default_compression() -> String {
    DEFAULT_COMPRESSION.to_owned()
}

fn default_create_topics() -> bool {
    DEFAULT_CREATE_TOPICS
}

fn default_topic_partitions() -> i32 {
    DEFAULT_TOPIC_PARTITIONS
}

fn default_replication_factor() -> i16 {
    DEFAULT_REPLICATION_FACTOR
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_max_batch_bytes() -> usize {
    DEFAULT_MAX_BATCH_BYTES
}

/// Configuration of a `kafka` sink (a `[[sinks]]` entry with `type = "kafka"`).
///
/// Its `Debug` shows the SASL password only as set or not: configuration is logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` each, e.g. `["127.0.0.1:9092"]`.
    pub brokers: Vec<String>,
    /// Topic template ([`DEFAULT_TOPIC`]); the rendered name is cleaned to Kafka's
    /// legal characters, see [`clean_topic`].
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Record key template ([`DEFAULT_KEY`]); it also chooses the partition. Its
    /// text may not hold `%`, which is left to the encoding of values.
    #[serde(default = "default_key")]
    pub key: String,
    /// `none`, `gzip`, `lz4`, `snappy` or `zstd` ([`DEFAULT_COMPRESSION`]).
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Whether missing topics are created ([`DEFAULT_CREATE_TOPICS`]).
    #[serde(default = "default_create_topics")]
    pub create_topics: bool,
    /// Partitions of a created topic ([`DEFAULT_TOPIC_PARTITIONS`]).
    #[serde(default = "default_topic_partitions")]
    pub topic_partitions: i32,
    /// Replication factor of a created topic ([`DEFAULT_REPLICATION_FACTOR`]).
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i16,
    /// Bound on one commit, connecting included, in milliseconds
    /// ([`DEFAULT_TIMEOUT_MS`]).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest batch sent in one produce request, in bytes before compression
    /// ([`DEFAULT_MAX_BATCH_BYTES`]); keep it below the brokers' `message.max.bytes`
    /// and the topics' `max.message.bytes`. Larger events are split into parts.
    #[serde(
        default = "default_max_batch_bytes",
        deserialize_with = "crate::setting::usize_size"
    )]
    pub max_batch_bytes: usize,
    /// Whether the brokers are reached over TLS (off by default, as Kafka's own
    /// listeners are).
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the certificate authorities that sign the brokers'
    /// certificates; without it, the system's trusted roots. Needs `tls`.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of Hydrant's client certificate (and its chain), for brokers that
    /// authenticate clients by certificate. Needs `tls` and `tls_key_file`.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of the private key of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// SASL authentication: one of [`SASL_MECHANISMS`] (in any case), with
    /// `sasl_username` and `sasl_password`; none by default.
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// SASL password; best given as `${VAR}` so it stays out of the file.
    #[serde(default)]
    pub sasl_password: Option<String>,
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "taken by value to be passed as map_err(invalid) on String errors"
)]
fn invalid(reason: String) -> SinkError {
    SinkError::Config(format!("kafka: {reason}"))
}

impl SinkSettings for KafkaConfig {
    const LEGACY_UNIT_KEYS: &'static [LegacyUnitKey] = &[LegacyUnitKey {
        new: "timeout",
        old: "timeout_ms",
        unit: LegacyUnit::Milliseconds,
    }];

    fn check(&self) -> Result<(), String> {
        self.validate()
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("key", &self.key)
            .field("compression", &self.compression)
            .field("create_topics", &self.create_topics)
            .field("topic_partitions", &self.topic_partitions)
            .field("replication_factor", &self.replication_factor)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field(
                "sasl_password",
                &self.sasl_password.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

impl KafkaConfig {
    /// A configuration with the given brokers and every other field at its default.
    #[must_use]
    pub fn new(brokers: Vec<String>) -> Self {
        Self {
            brokers,
            topic: default_topic(),
            key: default_key(),
            compression: default_compression(),
            create_topics: DEFAULT_CREATE_TOPICS,
            topic_partitions: DEFAULT_TOPIC_PARTITIONS,
            replication_factor: DEFAULT_REPLICATION_FACTOR,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            tls: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
        }
    }

    /// Checks what can be checked without a broker.
    ///
    /// # Errors
    ///
    /// A message naming the first invalid field.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.is_empty() {
            return Err("brokers: at least one broker (host:port) is needed".into());
        }
        if let Some(broker) = self.brokers.iter().find(|broker| broker.trim().is_empty()) {
            return Err(format!("brokers: {broker:?} is not a host:port"));
        }
        if self.topic.is_empty() {
            return Err("topic: the template is empty".into());
        }
        Template::parse(&self.topic).map_err(|error| format!("topic: {error}"))?;
        let key = Template::parse(&self.key).map_err(|error| format!("key: {error}"))?;
        check_key_template(&key, &self.key).map_err(|error| format!("key: {error}"))?;
        if !(MIN_MAX_BATCH_BYTES..=MAX_MAX_BATCH_BYTES).contains(&self.max_batch_bytes) {
            return Err(format!(
                "max_batch_bytes: {} is not between {MIN_MAX_BATCH_BYTES} and {MAX_MAX_BATCH_BYTES}",
                self.max_batch_bytes
            ));
        }
        parse_compression(&self.compression)?;
        if self.topic_partitions < 1 {
            return Err(format!(
                "topic_partitions: {} is not at least 1",
                self.topic_partitions
            ));
        }
        if self.replication_factor < 1 {
            return Err(format!(
                "replication_factor: {} is not at least 1",
                self.replication_factor
            ));
        }
        if self.timeout_ms == 0 || i32::try_from(self.timeout_ms).is_err() {
            return Err(format!(
                "timeout_ms: {} is not between 1 and {}",
                self.timeout_ms,
                i32::MAX
            ));
        }
        self.tls_config()?;
        self.sasl()?;
        Ok(())
    }

    /// The TLS settings as a rustls configuration, `None` when `tls` is off. Files
    /// are read and parsed here, so a missing or broken one is a configuration
    /// error at startup rather than a failing connection later.
    fn tls_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
        if !self.tls {
            let set = [
                ("tls_ca_file", self.tls_ca_file.is_some()),
                ("tls_cert_file", self.tls_cert_file.is_some()),
                ("tls_key_file", self.tls_key_file.is_some()),
            ];
            if let Some((name, _)) = set.iter().find(|(_, set)| *set) {
                return Err(format!("{name} is set but tls is off; add tls = true"));
            }
            return Ok(None);
        }
        let roots = match &self.tls_ca_file {
            Some(path) => ca_file_roots(path)?,
            None => system_roots()?,
        };
        // An explicit provider: the configuration does not depend on which rustls
        // crypto provider (if any) the process installed as its default.
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("tls: {error}"))?
        .with_root_certificates(roots);
        let config = match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(
                    "tls_cert_file needs tls_key_file (the certificate's private key)".into(),
                );
            }
            (None, Some(_)) => {
                return Err("tls_key_file needs tls_cert_file (the client certificate)".into());
            }
            (Some(cert_path), Some(key_path)) => {
                let chain = crate::tls::pem_certificates(cert_path)
                    .map_err(|error| format!("tls_cert_file {error}"))?;
                let key = crate::tls::pem_private_key(key_path)
                    .map_err(|error| format!("tls_key_file {error}"))?;
                builder.with_client_auth_cert(chain, key).map_err(|error| {
                    format!(
                        "tls_cert_file {} and tls_key_file {}: {error}",
                        cert_path.display(),
                        key_path.display()
                    )
                })?
            }
        };
        Ok(Some(Arc::new(config)))
    }

    /// The SASL settings, `None` when `sasl_mechanism` is not set.
    fn sasl(&self) -> Result<Option<Sasl>, String> {
        let Some(mechanism) = &self.sasl_mechanism else {
            if self.sasl_username.is_some() || self.sasl_password.is_some() {
                return Err(format!(
                    "sasl_username and sasl_password need sasl_mechanism (one of {})",
                    SASL_MECHANISMS.join(", ")
                ));
            }
            return Ok(None);
        };
        // Kafka's own settings spell them in capitals (`SCRAM-SHA-512`): both work.
        let written = mechanism;
        let mechanism = written.to_ascii_lowercase();
        if !SASL_MECHANISMS.contains(&mechanism.as_str()) {
            return Err(format!(
                "sasl_mechanism: unknown {written:?}; expected one of {}",
                SASL_MECHANISMS.join(", ")
            ));
        }
        let username = self.sasl_username.as_deref().unwrap_or_default();
        if username.is_empty() {
            return Err(format!("sasl_mechanism {mechanism:?} needs sasl_username"));
        }
        let password = self.sasl_password.as_deref().unwrap_or_default();
        if password.is_empty() {
            return Err(format!(
                "sasl_mechanism {mechanism:?} needs sasl_password (e.g. \"${{KAFKA_PASSWORD}}\")"
            ));
        }
        Ok(Some(Sasl {
            mechanism,
            username: username.to_owned(),
            password: password.to_owned(),
        }))
    }
}

/// The roots in a PEM CA bundle: every certificate in it, at least one.
fn ca_file_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        crate::tls::pem_certificates(path).map_err(|error| format!("tls_ca_file {error}"))?
    {
        roots.add(certificate).map_err(|error| {
            format!(
                "tls_ca_file {}: not a usable CA certificate ({error})",
                path.display()
            )
        })?;
    }
    Ok(roots)
}

/// The system's trusted roots (what `openssl` would use on this host).
fn system_roots() -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "tls: no system CA certificates found ({}); set tls_ca_file",
            if errors.is_empty() {
                "none installed".to_owned()
            } else {
                errors.join("; ")
            }
        ));
    }
    Ok(roots)
}

/// Validated SASL settings; `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
struct Sasl {
    mechanism: String,
    username: String,
    password: String,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &REDACTED)
            .finish()
    }
}

impl Sasl {
    /// The client's SASL configuration (the mechanism was validated).
    fn client_config(&self) -> SaslConfig {
        let credentials = Credentials::new(self.username.clone(), self.password.clone());
        match self.mechanism.as_str() {
            "scram-sha-256" => SaslConfig::ScramSha256(credentials),
            "scram-sha-512" => SaslConfig::ScramSha512(credentials),
            _ => SaslConfig::Plain(credentials),
        }
    }
}

fn parse_compression(name: &str) -> Result<Compression, String> {
    match name {
        "none" => Ok(Compression::NoCompression),
        "gzip" => Ok(Compression::Gzip),
        "lz4" => Ok(Compression::Lz4),
        "snappy" => Ok(Compression::Snappy),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!(
            "compression: unknown {other:?}; expected one of {}",
            COMPRESSIONS.join(", ")
        )),
    }
}

/// Makes `rendered` a legal Kafka topic name: every character outside
/// `[A-Za-z0-9._-]` becomes `_`, and the names Kafka reserves (empty, `.` and `..`)
/// become underscores. A name longer than [`MAX_TOPIC_CHARS`] keeps its first
/// characters and ends in `-` and the [`digest_hex`] of `rendered`, exactly
/// [`MAX_TOPIC_CHARS`] long, so that two long names differing only past the cut
/// stay two topics.
#[must_use]
pub fn clean_topic(rendered: &str) -> String {
    topic_or_digest(rendered).0
}

/// [`clean_topic`], and whether the name ends in a digest.
fn topic_or_digest(rendered: &str) -> (String, bool) {
    let mut topic: String = rendered
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if topic.len() > MAX_TOPIC_CHARS {
        // Every character is ASCII now, so byte offsets are character offsets.
        topic.truncate(TOPIC_KEPT_CHARS);
        topic.push('-');
        topic.push_str(&digest_hex(rendered.as_bytes()));
        return (topic, true);
    }
    if topic.is_empty() || topic == "." || topic == ".." {
        topic = topic.replace('.', "_");
        if topic.is_empty() {
            topic.push('_');
        }
    }
    (topic, false)
}

/// The record key of an event: `rendered`, or, when longer than [`MAX_KEY_BYTES`],
/// [`HASHED_KEY_MARK`] and its digest; and whether it is the digest.
fn key_or_digest(rendered: String) -> (Vec<u8>, bool) {
    if rendered.len() <= MAX_KEY_BYTES {
        return (rendered.into_bytes(), false);
    }
    let digest = format!("{HASHED_KEY_MARK}{}", digest_hex(rendered.as_bytes()));
    (digest.into_bytes(), true)
}

/// The bytes a record takes in a batch, at most (see [`RECORD_OVERHEAD_BYTES`]).
fn record_bytes(record: &Record) -> usize {
    record.approximate_size() + RECORD_OVERHEAD_BYTES + record.headers.len() * HEADER_OVERHEAD_BYTES
}

/// Why a commit or probe failed, before it becomes a [`SinkError`].
#[derive(Debug)]
enum Failure {
    /// What the client or broker said.
    Kafka(KafkaError),
    /// The topic is missing and `create_topics` is off.
    NoTopic,
    /// The metadata lists the topic without partitions.
    NoPartitions,
    /// A produce task died.
    Task(String),
    /// No bootstrap broker accepts TCP connections.
    Unreachable(String),
    /// The last connection attempt failed too recently to try again.
    Backoff {
        /// Until the next attempt may be made.
        wait: Duration,
        /// Failures in a row so far.
        failures: u64,
        /// What the last one was.
        last: String,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kafka(error) => write!(f, "{error}"),
            Self::NoTopic => f.write_str("the topic does not exist and create_topics is off"),
            Self::NoPartitions => f.write_str("the topic has no partitions"),
            Self::Task(error) => write!(f, "produce task failed: {error}"),
            Self::Unreachable(error) => f.write_str(error),
            Self::Backoff {
                wait,
                failures,
                last,
            } => write!(
                f,
                "{failures} failures in a row, next connection attempt in {} ms; last: {last}",
                wait.as_millis()
            ),
        }
    }
}

impl From<KafkaError> for Failure {
    fn from(error: KafkaError) -> Self {
        Self::Kafka(error)
    }
}

/// What the log should say about a failure or a recovery, as decided by
/// [`Reconnect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutageLog {
    /// The first failure of an outage: a warning.
    Started,
    /// A reminder that the outage goes on: `failures` so far, over `down_for`.
    StillDown { failures: u64, down_for: Duration },
    /// The outage is over after `failures` failures over `down_for`.
    Recovered { failures: u64, down_for: Duration },
}

/// An outage in progress: since when, how many failures, when last logged, the
/// last failure's reason.
#[derive(Debug, Clone)]
struct Outage {
    since: Instant,
    failures: u64,
    logged_at: Instant,
    last: String,
}

/// When the next connection attempt may be made and what the log should say
/// about failures; pure (the caller passes the time), so it is tested alone.
///
/// Each attempt pushes the next one back by the current backoff, which doubles
/// from [`RECONNECT_INITIAL_BACKOFF`] to [`RECONNECT_MAX_BACKOFF`]; a success
/// resets it. The delay is set when the attempt starts, not when it fails, so an
/// attempt cut short by a timeout still counts. The first attempt after a success
/// is made at once, since one failure may just be a leader moving.
#[derive(Debug)]
struct Reconnect {
    /// Added to the time of the next attempt.
    backoff: Duration,
    /// No attempt before this; `None` when one may be made now.
    next_attempt: Option<Instant>,
    outage: Option<Outage>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            backoff: RECONNECT_INITIAL_BACKOFF,
            next_attempt: None,
            outage: None,
        }
    }
}

impl Reconnect {
    /// Whether a connection attempt may start `now`: if so, the next one is pushed
    /// back; if not, why not ([`Failure::Backoff`]).
    fn try_attempt(&mut self, now: Instant) -> Result<(), Failure> {
        if let Some(next) = self.next_attempt
            && now < next
        {
            let (failures, last) = self
                .outage
                .as_ref()
                .map(|outage| (outage.failures, outage.last.clone()))
                .unwrap_or_default();
            return Err(Failure::Backoff {
                wait: next - now,
                failures,
                last,
            });
        }
        self.next_attempt = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(RECONNECT_MAX_BACKOFF);
        Ok(())
    }

    /// Records a failed attempt (or a failure of the connection) and its reason;
    /// what to log, if anything.
    fn failed(&mut self, now: Instant, reason: &str) -> Option<OutageLog> {
        let Some(outage) = &mut self.outage else {
            self.outage = Some(Outage {
                since: now,
                failures: 1,
                logged_at: now,
                last: reason.to_owned(),
            });
            return Some(OutageLog::Started);
        };
        outage.failures += 1;
        reason.clone_into(&mut outage.last);
        if now.duration_since(outage.logged_at) < UNREACHABLE_LOG_INTERVAL {
            return None;
        }
        outage.logged_at = now;
        Some(OutageLog::StillDown {
            failures: outage.failures,
            down_for: now.duration_since(outage.since),
        })
    }

    /// Records a success: the backoff starts over; what to log, if this ends an
    /// outage.
    fn succeeded(&mut self, now: Instant) -> Option<OutageLog> {
        self.backoff = RECONNECT_INITIAL_BACKOFF;
        self.next_attempt = None;
        self.outage.take().map(|outage| OutageLog::Recovered {
            failures: outage.failures,
            down_for: now.duration_since(outage.since),
        })
    }
}

/// A connected client and what was learnt through it; rebuilt from scratch after a
/// connection failure.
#[derive(Debug)]
struct Connection {
    client: Client,
    /// Partition count per topic.
    partition_counts: std::sync::Mutex<HashMap<String, i32>>,
    /// One client per partition written to (each keeps a connection to the
    /// partition's leader).
    partitions: std::sync::Mutex<HashMap<(String, i32), Arc<PartitionClient>>>,
}

impl Connection {
    async fn partition_client(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<PartitionClient>, KafkaError> {
        let key = (topic.to_owned(), partition);
        let cached = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(client) = cached {
            return Ok(client);
        }
        // A topic just created may take a moment to have a leader: retry "unknown
        // topic" (bounded by the client's backoff deadline and the commit timeout).
        let client = Arc::new(
            self.client
                .partition_client(topic, partition, UnknownTopicHandling::Retry)
                .await?,
        );
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&client));
        Ok(client)
    }
}

/// Records bound for one partition, in delivery order.
type PartitionRecords = Vec<Record>;

/// Produces every event of a batch as a Kafka record, see the [module](self) docs.
#[derive(Debug)]
pub struct KafkaSink {
    brokers: Vec<String>,
    topic: Template,
    key: Template,
    compression: Compression,
    create_topics: bool,
    topic_partitions: i32,
    replication_factor: i16,
    timeout: Duration,
    max_batch_bytes: usize,
    /// TLS to the brokers, when configured.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// SASL authentication, when configured.
    sasl: Option<Sasl>,
    /// The client once connected; `None` before the first use and after a
    /// connection failure.
    connection: Mutex<Option<Arc<Connection>>>,
    /// Pacing of connection attempts and of the log lines about failures; only
    /// held briefly, never across an await.
    reconnect: std::sync::Mutex<Reconnect>,
    /// Counts split events and replaced keys and topic names.
    reshaped: ReshapeCounter,
}

/// A record with the key that chooses its partition (a part's own key differs:
/// its parts all go where the event's key sends them).
type KeyedRecord = (Vec<u8>, Record);

/// A batch's records by topic, and how many of each reshaping they needed.
#[derive(Debug)]
struct TopicRecords {
    by_topic: BTreeMap<String, Vec<KeyedRecord>>,
    reshaped: [(&'static str, u64); 3],
}

impl KafkaSink {
    /// Builds the sink. Nothing is connected yet (see the [module](self) docs), so
    /// a broker that is down does not stop Hydrant from starting.
    ///
    /// # Errors
    ///
    /// [`SinkError::Config`] when the configuration is invalid.
    pub async fn connect(config: KafkaConfig) -> Result<Self, SinkError> {
        config.validate().map_err(invalid)?;
        Self::open(config).await
    }

    /// [`Self::connect`] for settings already checked (by [`KafkaConfig::validate`],
    /// when the configuration was read).
    ///
    /// # Errors
    ///
    /// [`SinkError::Config`] when the settings cannot be turned into a client's.
    #[allow(
        clippy::unused_async,
        reason = "every sink connects asynchronously; this one defers it"
    )]
    pub async fn open(config: KafkaConfig) -> Result<Self, SinkError> {
        let topic = Template::parse(&config.topic).map_err(invalid)?;
        let key = Template::parse(&config.key).map_err(invalid)?;
        let compression = parse_compression(&config.compression).map_err(invalid)?;
        let tls = config.tls_config().map_err(invalid)?;
        let sasl = config.sasl().map_err(invalid)?;
        tracing::info!(
            brokers = ?config.brokers,
            topic = %config.topic,
            compression = %config.compression,
            tls = config.tls,
            sasl = config.sasl_mechanism.as_deref().unwrap_or("none"),
            "Kafka sink configured; connecting on first use."
        );
        Ok(Self {
            brokers: config.brokers,
            topic,
            key,
            compression,
            create_topics: config.create_topics,
            topic_partitions: config.topic_partitions,
            replication_factor: config.replication_factor,
            timeout: Duration::from_millis(config.timeout_ms),
            max_batch_bytes: config.max_batch_bytes,
            tls,
            sasl,
            connection: Mutex::new(None),
            reconnect: std::sync::Mutex::default(),
            reshaped: ReshapeCounter::default(),
        })
    }

    /// Counts this sink's split events and replaced keys and topics in `metrics`,
    /// under the sink's configured `name`.
    #[must_use]
    pub fn with_metrics(mut self, name: &str, metrics: &Metrics) -> Self {
        self.reshaped = ReshapeCounter::new(metrics, name, "kafka");
        self
    }

    /// Produces the batch's events and dead letters, one record each, and returns
    /// once every partition leader acknowledged them.
    ///
    /// # Errors
    ///
    /// [`SinkError::Unavailable`] naming the topic when a broker cannot be reached,
    /// refuses the records or does not acknowledge them within `timeout_ms`. Some
    /// partitions may have taken their records: a retry duplicates them (at least
    /// once, see the [module](self) docs).
    pub async fn commit(&self, batch: &SinkBatch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let TopicRecords { by_topic, reshaped } = self.records_by_topic(batch)?;
        let topics: Vec<&str> = by_topic.keys().map(String::as_str).collect();
        let topics = topics.join(", ");
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.produce(by_topic)).await;
        match outcome {
            Ok(Ok(())) => {
                self.succeeded();
                for (action, count) in reshaped {
                    self.reshaped.add(action, count);
                }
                tracing::debug!(
                    request_id = %batch.delivery.request_id,
                    records = batch.len(),
                    %topics,
                    elapsed_ms = started.elapsed().as_millis(),
                    "Kafka records acknowledged."
                );
                Ok(())
            }
            Ok(Err((topic, failure))) => {
                self.failed(&failure).await;
                Err(SinkError::Unavailable(format!(
                    "kafka topic {topic:?}: {failure}"
                )))
            }
            Err(_) => {
                self.disconnect("commit timed out").await;
                Err(SinkError::Unavailable(format!(
                    "kafka topics {topics}: not acknowledged within {} ms",
                    self.timeout.as_millis()
                )))
            }
        }
    }

    /// Checks that a broker answers a metadata request, within [`PROBE_TIMEOUT`]
    /// (connecting first if needed).
    ///
    /// # Errors
    ///
    /// [`SinkError::Unavailable`] when none does.
    pub async fn probe(&self) -> Result<(), SinkError> {
        let bound = PROBE_TIMEOUT.min(self.timeout);
        let attempt = async {
            let connection = self.connection().await?;
            connection.client.list_topics().await?;
            Ok::<(), Failure>(())
        };
        let brokers = self.brokers.join(",");
        match tokio::time::timeout(bound, attempt).await {
            Ok(Ok(())) => {
                self.succeeded();
                Ok(())
            }
            Ok(Err(error)) => {
                self.failed(&error).await;
                Err(SinkError::Unavailable(format!(
                    "kafka brokers {brokers}: {error}"
                )))
            }
            Err(_) => {
                self.disconnect("probe timed out").await;
                Err(SinkError::Unavailable(format!(
                    "kafka brokers {brokers}: no metadata within {} ms",
                    bound.as_millis()
                )))
            }
        }
    }

    /// Every event of both tables as a record (or as parts, when too large for a
    /// batch), grouped by cleaned topic name, each with the key that chooses its
    /// partition; and what had to be reshaped, counted once the commit succeeds.
    ///
    /// # Errors
    ///
    /// [`SinkError::Write`] when `max_batch_bytes` leaves too little room beside a
    /// record's key and headers to carry parts of an event.
    fn records_by_topic(&self, batch: &SinkBatch) -> Result<TopicRecords, SinkError> {
        let delivery = &batch.delivery;
        let timestamp = i64::try_from(delivery.received_at)
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_default();
        let mut by_topic: BTreeMap<String, Vec<KeyedRecord>> = BTreeMap::new();
        let (mut hashed_names, mut hashed_keys, mut split) = (0, 0, 0);
        for (table, lines) in batch.tables() {
            for (meta, line) in lines.iter() {
                let (topic, hashed) = topic_or_digest(&self.topic.render(
                    delivery,
                    &batch.dedup_key,
                    table,
                    Some(meta),
                    str::to_owned,
                ));
                hashed_names += u64::from(hashed);
                let (key, hashed) = key_or_digest(self.key.render(
                    delivery,
                    &batch.dedup_key,
                    table,
                    Some(meta),
                    encode_key_value,
                ));
                hashed_keys += u64::from(hashed);
                let headers = BTreeMap::from([
                    (
                        HEADER_REQUEST_ID.to_owned(),
                        delivery.request_id.as_bytes().to_vec(),
                    ),
                    (HEADER_TABLE.to_owned(), table.as_bytes().to_vec()),
                ]);
                let record = Record {
                    key: Some(key.clone()),
                    value: Some(line.to_vec()),
                    headers,
                    timestamp,
                };
                let records = by_topic.entry(topic).or_default();
                if BATCH_OVERHEAD_BYTES + record_bytes(&record) <= self.max_batch_bytes {
                    records.push((key, record));
                } else {
                    split += 1;
                    records.extend(self.parts(&key, record, &batch.dedup_key)?);
                }
            }
        }
        Ok(TopicRecords {
            by_topic,
            reshaped: [
                (RESHAPE_HASHED_NAME, hashed_names),
                (RESHAPE_HASHED_KEY, hashed_keys),
                (RESHAPE_SPLIT, split),
            ],
        })
    }

    /// `record` (keyed `key`) as parts that each fit a batch alone, in order, all
    /// keyed for the event's partition (see the [module](self) docs).
    fn parts(
        &self,
        key: &[u8],
        record: Record,
        delivery_key: &DeliveryKey,
    ) -> Result<Vec<KeyedRecord>, SinkError> {
        let Record {
            value,
            mut headers,
            timestamp,
            ..
        } = record;
        let value = value.unwrap_or_default();
        // The largest a part's key and headers can be: both numbers at their
        // longest.
        let longest_number = "9".repeat(MAX_U32_DIGITS).into_bytes();
        let mut part_key = key.to_vec();
        part_key.extend_from_slice(PART_KEY_MARK.as_bytes());
        headers.insert(HEADER_PART.to_owned(), longest_number.clone());
        headers.insert(HEADER_PARTS.to_owned(), longest_number.clone());
        headers.insert(HEADER_KEY.to_owned(), key.to_vec());
        let largest = Record {
            key: Some([part_key.as_slice(), &longest_number, b":", &longest_number].concat()),
            value: None,
            headers: headers.clone(),
            timestamp,
        };
        let room = self
            .max_batch_bytes
            .saturating_sub(BATCH_OVERHEAD_BYTES + record_bytes(&largest));
        if room < MIN_MAX_BATCH_BYTES / 2 {
            // Retrying cannot help: the limit leaves no room beside the headers.
            return Err(SinkError::Write(format!(
                "kafka: delivery {delivery_key}: max_batch_bytes {} leaves {room} bytes for an event's parts beside a key of {} and headers of {} bytes",
                self.max_batch_bytes,
                key.len(),
                largest.approximate_size() - largest.key.as_ref().map_or(0, Vec::len)
            )));
        }
        let count = value.len().div_ceil(room);
        let count_text = count.to_string().into_bytes();
        part_key.extend_from_slice(format!("{room}:").as_bytes());
        let parts = value
            .chunks(room)
            .enumerate()
            .map(|(index, slice)| {
                let number = index.to_string().into_bytes();
                let mut headers = headers.clone();
                headers.insert(HEADER_PART.to_owned(), number.clone());
                headers.insert(HEADER_PARTS.to_owned(), count_text.clone());
                let part = Record {
                    key: Some([part_key.as_slice(), &number].concat()),
                    value: Some(slice.to_vec()),
                    headers,
                    timestamp,
                };
                (key.to_vec(), part)
            })
            .collect();
        Ok(parts)
    }

    /// Learns each topic's partitions (creating missing topics), splits its
    /// records by partition and produces every partition's records concurrently.
    async fn produce(
        &self,
        by_topic: BTreeMap<String, Vec<KeyedRecord>>,
    ) -> Result<(), (String, Failure)> {
        let first_topic = by_topic.keys().next().cloned().unwrap_or_default();
        let connection = self
            .connection()
            .await
            .map_err(|failure| (first_topic, failure))?;
        let mut groups: BTreeMap<(String, i32), PartitionRecords> = BTreeMap::new();
        for (topic, records) in by_topic {
            let partitions = match self.partition_count(&connection, &topic).await {
                Ok(partitions) => partitions,
                Err(failure) => return Err((topic, failure)),
            };
            for (key, record) in records {
                let partition = partition_for(&key, partitions);
                groups
                    .entry((topic.clone(), partition))
                    .or_default()
                    .push(record);
            }
        }
        let mut tasks = JoinSet::new();
        for ((topic, partition), records) in groups {
            let connection = Arc::clone(&connection);
            let compression = self.compression;
            let max_batch_bytes = self.max_batch_bytes;
            tasks.spawn(async move {
                let result = produce_partition(
                    &connection,
                    &topic,
                    partition,
                    records,
                    compression,
                    max_batch_bytes,
                )
                .await;
                (topic, partition, result)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let (topic, partition, result) =
                joined.map_err(|error| (String::new(), Failure::Task(error.to_string())))?;
            match result {
                Ok(records) => {
                    tracing::trace!(%topic, partition, records, "Kafka partition acknowledged.");
                }
                // Dropping `tasks` aborts the other partitions' produces.
                Err(error) => return Err((format!("{topic}/{partition}"), Failure::Kafka(error))),
            }
        }
        Ok(())
    }

    /// The topic's partition count, from the cache or the cluster's metadata;
    /// creates the topic when it is missing and `create_topics` is on.
    async fn partition_count(&self, connection: &Connection, topic: &str) -> Result<i32, Failure> {
        let cached = connection
            .partition_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .copied();
        if let Some(count) = cached {
            return Ok(count);
        }
        let mut count = listed_partitions(&connection.client, topic).await?;
        if count.is_none() {
            if !self.create_topics {
                return Err(Failure::NoTopic);
            }
            self.create_topic(connection, topic).await?;
            // The broker may publish the new topic a moment later; the commit
            // timeout bounds this wait.
            loop {
                count = listed_partitions(&connection.client, topic).await?;
                if count.is_some() {
                    break;
                }
                tokio::time::sleep(TOPIC_VISIBLE_POLL).await;
            }
        }
        let count = count.unwrap_or_default();
        if count < 1 {
            return Err(Failure::NoPartitions);
        }
        connection
            .partition_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_owned(), count);
        Ok(count)
    }

    async fn create_topic(&self, connection: &Connection, topic: &str) -> Result<(), Failure> {
        let timeout_ms = i32::try_from(self.timeout.as_millis()).unwrap_or(i32::MAX);
        let created = connection
            .client
            .controller_client()?
            .create_topic(
                topic,
                self.topic_partitions,
                self.replication_factor,
                timeout_ms,
            )
            .await;
        match created {
            Ok(()) => {
                tracing::info!(
                    %topic,
                    partitions = self.topic_partitions,
                    replication_factor = self.replication_factor,
                    "Created Kafka topic."
                );
                Ok(())
            }
            // Another producer (or another Hydrant) created it first.
            Err(KafkaError::ServerError {
                protocol_error: ProtocolError::TopicAlreadyExists,
                ..
            }) => Ok(()),
            Err(error) => Err(Failure::Kafka(error)),
        }
    }

    /// The connected client, connecting if there is none and [`Reconnect`] allows
    /// an attempt now. Concurrent callers wait for the same connection attempt
    /// rather than each starting one.
    async fn connection(&self) -> Result<Arc<Connection>, Failure> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(Arc::clone(connection));
        }
        self.reconnect
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_attempt(Instant::now())?;
        tracing::debug!(brokers = ?self.brokers, "Connecting to Kafka.");
        self.reachable().await?;
        let backoff = BackoffConfig {
            init_backoff: RETRY_INITIAL_BACKOFF,
            max_backoff: RETRY_MAX_BACKOFF,
            base: 2.0,
            deadline: Some(self.timeout),
        };
        let mut builder = ClientBuilder::new(self.brokers.clone())
            .client_id(CLIENT_ID)
            .backoff_config(backoff);
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(Arc::clone(tls));
        }
        if let Some(sasl) = &self.sasl {
            builder = builder.sasl_config(sasl.client_config());
        }
        let client = builder.build().await?;
        let quiet = self
            .reconnect
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .outage
            .is_none();
        if quiet {
            tracing::info!(brokers = ?self.brokers, "Connected to Kafka.");
        } else {
            // The outage's end is logged once a request succeeds through it.
            tracing::debug!(brokers = ?self.brokers, "Connected to Kafka.");
        }
        let connection = Arc::new(Connection {
            client,
            partition_counts: std::sync::Mutex::default(),
            partitions: std::sync::Mutex::default(),
        });
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// Checks that some bootstrap broker accepts a TCP connection, each within
    /// [`REACHABLE_TIMEOUT`]. The client would retry (and log a warning per try)
    /// until its deadline; this fails a down cluster with one quiet attempt.
    async fn reachable(&self) -> Result<(), Failure> {
        let mut errors = Vec::new();
        for broker in &self.brokers {
            match tokio::time::timeout(REACHABLE_TIMEOUT, tokio::net::TcpStream::connect(broker))
                .await
            {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(error)) => errors.push(format!("{broker}: {error}")),
                Err(_) => errors.push(format!(
                    "{broker}: no connection within {} ms",
                    REACHABLE_TIMEOUT.as_millis()
                )),
            }
        }
        Err(Failure::Unreachable(errors.join("; ")))
    }

    /// Records a commit's or probe's success: the backoff starts over, and an
    /// outage that ends is logged once.
    fn succeeded(&self) {
        let log = self
            .reconnect
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .succeeded(Instant::now());
        if let Some(OutageLog::Recovered { failures, down_for }) = log {
            let down_for = humantime::format_duration(whole_seconds(down_for));
            tracing::info!(
                brokers = ?self.brokers,
                failures,
                %down_for,
                "Kafka reachable again after {failures} failures over {down_for}."
            );
        }
    }

    /// Handles a commit's or probe's failure: drops the connection, unless the
    /// failure was only a refusal to reconnect yet (which is no new attempt).
    async fn failed(&self, failure: &Failure) {
        if !matches!(failure, Failure::Backoff { .. }) {
            self.disconnect(&failure.to_string()).await;
        }
    }

    /// Drops the cached connection so the next attempt reconnects, and logs the
    /// failure as [`Reconnect`] decides: a warning when an outage starts, then a
    /// summary at most every [`UNREACHABLE_LOG_INTERVAL`].
    async fn disconnect(&self, reason: &str) {
        let dropped = self.connection.lock().await.take().is_some();
        let log = self
            .reconnect
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed(Instant::now(), reason);
        match log {
            Some(OutageLog::Started) => tracing::warn!(
                brokers = ?self.brokers,
                %reason,
                dropped,
                "Kafka failed; reconnecting with a growing backoff (at most every {}s), further failures summarised every {}s.",
                RECONNECT_MAX_BACKOFF.as_secs(),
                UNREACHABLE_LOG_INTERVAL.as_secs()
            ),
            Some(OutageLog::StillDown { failures, down_for }) => {
                let down_for = humantime::format_duration(whole_seconds(down_for));
                tracing::warn!(
                    brokers = ?self.brokers,
                    %reason,
                    failures,
                    %down_for,
                    "Kafka still unreachable: {failures} failures in a row over {down_for}."
                );
            }
            Some(OutageLog::Recovered { .. }) | None => {}
        }
    }
}

/// `duration` without its fraction of a second, for the log.
fn whole_seconds(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs())
}

/// The topic's partition count per a fresh metadata request, `None` if the cluster
/// does not list it.
async fn listed_partitions(client: &Client, topic: &str) -> Result<Option<i32>, KafkaError> {
    let topics = client.list_topics().await?;
    Ok(topics
        .iter()
        .find(|listed| listed.name == topic)
        .map(|listed| i32::try_from(listed.partitions.len()).unwrap_or(i32::MAX)))
}

/// Produces one partition's records, in order, in batches of at most
/// `max_batch_bytes` (overhead included, see [`record_bytes`]); returns how many
/// records were acknowledged.
async fn produce_partition(
    connection: &Connection,
    topic: &str,
    partition: i32,
    records: PartitionRecords,
    compression: Compression,
    max_batch_bytes: usize,
) -> Result<usize, KafkaError> {
    let client = connection.partition_client(topic, partition).await?;
    let total = records.len();
    let mut chunk = Vec::new();
    let mut chunk_bytes = BATCH_OVERHEAD_BYTES;
    for record in records {
        let size = record_bytes(&record);
        if !chunk.is_empty() && chunk_bytes + size > max_batch_bytes {
            client
                .produce(std::mem::take(&mut chunk), compression)
                .await?;
            chunk_bytes = BATCH_OVERHEAD_BYTES;
        }
        chunk_bytes += size;
        chunk.push(record);
    }
    if !chunk.is_empty() {
        client.produce(chunk, compression).await?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
