//! Sinks: where decoded events go. A sink answers a commit only once the batch is
//! durable (or acknowledged by the service behind it), because Hydrant's 200 to
//! Firehose depends on it.
//!
//! - [`file`]: NDJSON segment files under the data directory (the embedded default);
//! - [`s3`]: one object per delivery in S3 or an S3-compatible store;
//! - [`nats`]: NATS JetStream, one message per event, de-duplicated by message id;
//! - [`kafka`]: Kafka, one record per event;
//! - [`prometheus`]: metric points as series, served to Prometheus scrapes on the
//!   admin listener (in memory);
//! - [`remote_write`]: metric points as series, sent to a Prometheus remote write
//!   receiver (Prometheus, Mimir, Thanos, VictoriaMetrics);
//! - [`stdout`] and [`discard`]: for piping and debugging, and for benchmarks;
//! - [`fanout`]: sends a delivery's batches to their sinks with retries, a circuit
//!   breaker per sink and a per-sink window of committed deliveries;
//! - [`dedup`]: that window, and how it and the sinks' own keys keep Firehose's
//!   retries from being stored twice; [`template`]: keys, subjects, topics.
//!
//! # Configuration
//!
//! Each `[[sinks]]` table is read into a [`SinkConfig`], tagged by its `type`; that
//! enum is the one list of sink types. A type's settings are a struct in the
//! type's own file, parsed there by serde and checked there, once, by its
//! [`SinkSettings`] implementation; [`SinkConfig::open`] then turns it into a
//! running [`Sink`]. The keys every type takes, `name` and `gates_readiness`, are
//! read by `config`, which also checks what involves several sinks (unique names
//! and data directories).
//!
//! Adding a sink type takes one new file under `sink/` (its settings struct with
//! `Deserialize` and `SinkSettings`, and the sink itself) and one entry in the
//! `sink_types!` list below, plus its arms in [`Sink`] and [`SinkConfig::open`]
//! (the compiler points at each).

pub mod dedup;
pub mod discard;
pub mod fanout;
pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "nats")]
pub mod nats;
pub mod prometheus;
#[cfg(feature = "remote_write")]
pub mod remote_write;
#[cfg(feature = "s3")]
pub mod s3;
pub mod stdout;
pub mod template;

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::event::Delivery;
pub use crate::event::lines::{CHUNK_BYTES, EventLines, EventMeta, LineChunk};
use crate::metrics::Metrics;

/// Name of the dead-letter table (`{table}` in templates).
pub const TABLE_DEAD_LETTER: &str = "dead_letter";
/// Name of the events table.
pub const TABLE_EVENTS: &str = "events";

/// A sink type's settings, as its `[[sinks]]` table gives them (less `name`,
/// `type` and `gates_readiness`). Implemented in each sink's file.
pub trait SinkSettings: fmt::Debug + for<'de> Deserialize<'de> {
    /// Whether the type is built into this binary ([`NotBuilt`] says no).
    const BUILT: bool = true;
    /// Keys that once took a bare number in a unit and now take a duration.
    const LEGACY_UNIT_KEYS: &'static [LegacyUnitKey] = &[];

    /// Checks what can be checked without the network: the one validation of a
    /// configured sink, run when the configuration is read.
    ///
    /// # Errors
    ///
    /// A one-line reason, naming the key.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A sink setting that used to be written as a bare number in a unit its name or
/// the documentation gave; still read, with a warning, and written better with a
/// unit under the new key.
#[derive(Debug, Clone, Copy)]
pub struct LegacyUnitKey {
    /// The key with a unit in its value, e.g. `ack_timeout = "10s"`.
    pub new: &'static str,
    /// The old key, whose value is a bare number of `unit`; when it equals `new`,
    /// a string value is the new form and an integer the old one.
    pub old: &'static str,
    /// The old key's unit.
    pub unit: LegacyUnit,
}

/// The unit of a [`LegacyUnitKey`]'s bare number.
#[derive(Debug, Clone, Copy)]
pub enum LegacyUnit {
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
}

/// The settings of a sink type left out of this build by its cargo feature: any
/// table is taken, and refused when the configuration is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotBuilt;

impl<'de> Deserialize<'de> for NotBuilt {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Self)
    }
}

impl SinkSettings for NotBuilt {
    const BUILT: bool = false;
}

#[cfg(feature = "s3")]
type S3Settings = s3::S3Config;
#[cfg(not(feature = "s3"))]
type S3Settings = NotBuilt;
#[cfg(feature = "nats")]
type NatsSettings = nats::NatsConfig;
#[cfg(not(feature = "nats"))]
type NatsSettings = NotBuilt;
#[cfg(feature = "kafka")]
type KafkaSettings = kafka::KafkaConfig;
#[cfg(not(feature = "kafka"))]
type KafkaSettings = NotBuilt;
#[cfg(feature = "remote_write")]
type RemoteWriteSettings = remote_write::RemoteWriteConfig;
#[cfg(not(feature = "remote_write"))]
type RemoteWriteSettings = NotBuilt;

/// Declares [`SinkConfig`] from one list of the sink types: its variants, the type
/// names in `type`, and what is looked up by name before a table is parsed.
macro_rules! sink_types {
    ($($(#[doc = $doc:literal])* $variant:ident($settings:ty) = $name:literal,)*) => {
        /// A sink's type and settings: one `[[sinks]]` table, tagged by `type`.
        /// Every type is listed, also those left out of this build (their
        /// settings are [`NotBuilt`]), so that naming one gets a clear message.
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
        #[serde(tag = "type")]
        pub enum SinkConfig {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $name)]
                $variant($settings),
            )*
        }

        impl SinkConfig {
            /// Every type name, as written in `type`.
            pub const TYPES: &'static [&'static str] = &[$($name),*];

            /// The type name, as written in `type`.
            #[must_use]
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $name,)*
                }
            }

            /// The settings alone, for printing (secrets redacted by their `Debug`).
            #[must_use]
            pub fn settings(&self) -> &dyn fmt::Debug {
                match self {
                    $(Self::$variant(settings) => settings,)*
                }
            }

            fn check(&self) -> Result<(), String> {
                match self {
                    $(Self::$variant(settings) => settings.check(),)*
                }
            }

            /// Whether a type is built in, and its legacy keys; `None` for a name
            /// that is no type.
            fn facts(name: &str) -> Option<(bool, &'static [LegacyUnitKey])> {
                match name {
                    $($name => Some((
                        <$settings as SinkSettings>::BUILT,
                        <$settings as SinkSettings>::LEGACY_UNIT_KEYS,
                    )),)*
                    _ => None,
                }
            }
        }
    };
}

sink_types! {
    /// NDJSON segment files under a data directory.
    File(file::FileConfig) = "file",
    /// S3 or S3-compatible object storage.
    S3(S3Settings) = "s3",
    /// NATS JetStream.
    Nats(NatsSettings) = "nats",
    /// Kafka.
    Kafka(KafkaSettings) = "kafka",
    /// A Prometheus scrape endpoint on the admin listener.
    Prometheus(prometheus::PrometheusConfig) = "prometheus",
    /// A Prometheus remote write receiver.
    RemoteWrite(RemoteWriteSettings) = "remote_write",
    /// Standard output.
    Stdout(stdout::StdoutConfig) = "stdout",
    /// Counts and forgets.
    Discard(discard::DiscardConfig) = "discard",
}

/// Why [`SinkConfig::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenSinkError {
    /// A file sink's data directory could not be opened or recovered.
    #[error("{0}")]
    Storage(#[from] file::OpenError),
    /// The sink could not be set up.
    #[error("{0}")]
    Sink(#[from] SinkError),
}

impl SinkConfig {
    /// Reads one `[[sinks]]` table, without the common keys (`name`,
    /// `gates_readiness`), and checks it. Deprecated keys are read with a warning
    /// added to `warnings`.
    ///
    /// # Errors
    ///
    /// A one-line reason: no or an unknown `type`, a type not built in, a key the
    /// type does not take, or a value its checks refuse.
    pub fn from_table(mut table: toml::Table, warnings: &mut Vec<String>) -> Result<Self, String> {
        let types = Self::TYPES.join(", ");
        let Some(toml::Value::String(kind)) = table.get("type") else {
            return Err(format!("needs a type: one of {types}"));
        };
        let kind = kind.clone();
        let Some((built, legacy_keys)) = Self::facts(&kind) else {
            return Err(format!("unknown type {kind:?}; expected one of {types}"));
        };
        if !built {
            return Err(format!("this Hydrant was built without the {kind} feature"));
        }
        read_legacy_units(&kind, legacy_keys, &mut table, warnings)?;
        let config: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|error: toml::de::Error| error.message().to_owned())?;
        config.check()?;
        Ok(config)
    }

    /// Whether a sink of this type gates readiness unless told
    /// ([`Sink::gates_readiness_by_default`]).
    #[must_use]
    pub fn gates_readiness_by_default(&self) -> bool {
        Sink::gates_readiness_by_default(self.kind())
    }

    /// Opens or connects the sink, whose settings [`Self::from_table`] checked. A
    /// file sink takes what it leaves out from `file_defaults`. Sinks behind a
    /// network service do not need it to be up yet: the circuit breaker holds
    /// deliveries off until it answers.
    ///
    /// # Errors
    ///
    /// [`OpenSinkError::Storage`] when a data directory cannot be used,
    /// [`SinkError::Config`] when the client refuses the settings.
    pub async fn open(
        self,
        name: &str,
        metrics: &Metrics,
        file_defaults: &file::FileSinkSettings,
    ) -> Result<Sink, OpenSinkError> {
        Ok(match self {
            Self::File(config) => {
                let settings = config.settings(file_defaults);
                let data_dir = settings.data_dir.clone();
                let storage_metrics = metrics.storage.clone();
                let sink = tokio::task::spawn_blocking(move || {
                    file::FileSink::open(settings, storage_metrics)
                })
                .await
                .map_err(|error| SinkError::Write(error.to_string()))??;
                let recovery = sink.recovery();
                tracing::info!(
                    data_dir = %data_dir.display(),
                    segments_recovered = recovery.segments_recovered,
                    bytes_truncated = recovery.bytes_truncated,
                    deliveries_remembered = recovery.deliveries_remembered,
                    "Storage open."
                );
                Sink::File(sink)
            }
            #[cfg(feature = "s3")]
            Self::S3(config) => {
                Sink::S3(s3::S3Sink::open(config).await?.with_metrics(name, metrics))
            }
            #[cfg(feature = "nats")]
            Self::Nats(config) => Sink::Nats(
                nats::NatsSink::open(config)
                    .await?
                    .with_metrics(name, metrics),
            ),
            #[cfg(feature = "kafka")]
            Self::Kafka(config) => Sink::Kafka(
                kafka::KafkaSink::open(config)
                    .await?
                    .with_metrics(name, metrics),
            ),
            #[cfg(not(feature = "s3"))]
            Self::S3(NotBuilt) => return Err(not_built("s3")),
            #[cfg(not(feature = "nats"))]
            Self::Nats(NotBuilt) => return Err(not_built("nats")),
            #[cfg(not(feature = "kafka"))]
            Self::Kafka(NotBuilt) => return Err(not_built("kafka")),
            #[cfg(feature = "remote_write")]
            Self::RemoteWrite(config) => Sink::RemoteWrite(remote_write::RemoteWriteSink::open(
                name,
                &config,
                metrics.remote_write_sink(name),
            )?),
            #[cfg(not(feature = "remote_write"))]
            Self::RemoteWrite(NotBuilt) => return Err(not_built("remote_write")),
            Self::Prometheus(config) => Sink::Prometheus(prometheus::PrometheusSink::new(
                &config,
                metrics.prometheus_sink(name),
            )),
            Self::Stdout(config) => Sink::Stdout(stdout::StdoutSink::new(&config)),
            Self::Discard(_) => Sink::Discard(discard::DiscardSink),
        })
    }
}

/// The error of opening a type left out of this build (refused already when the
/// configuration is read; this is for a configuration made by hand).
#[cfg(not(all(
    feature = "s3",
    feature = "nats",
    feature = "kafka",
    feature = "remote_write"
)))]
fn not_built(kind: &str) -> OpenSinkError {
    SinkError::Config(format!("this Hydrant was built without the {kind} feature")).into()
}

/// Rewrites a sink's table so that a duration written with a unit under its new
/// key becomes the number the sink's settings hold; a bare number under an old key
/// is kept, with a deprecation warning.
fn read_legacy_units(
    sink: &str,
    keys: &[LegacyUnitKey],
    table: &mut toml::Table,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    for key in keys {
        let (unit_name, per_second) = match key.unit {
            LegacyUnit::Milliseconds => ("milliseconds", 1_000),
            LegacyUnit::Seconds => ("seconds", 1),
        };
        let new_value = match table.get(key.new) {
            Some(toml::Value::String(text)) => Some(
                crate::units::parse_duration(text)
                    .map_err(|reason| format!("{}: {reason}", key.new))?,
            ),
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
    Ok(())
}

/// What one sink receives for one delivery: the events routed to it.
#[derive(Debug, Clone)]
pub struct SinkBatch {
    /// The delivery's facts (request id, stream, path, time…).
    pub delivery: Arc<Delivery>,
    /// Identifies the delivery across Firehose's retries (source ARN + request id).
    pub dedup_key: dedup::DeliveryKey,
    /// Decoded events.
    pub events: EventLines,
    /// Records that could not be decoded.
    pub dead_letters: EventLines,
}

impl SinkBatch {
    /// Total events, dead letters included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.events.len() + self.dead_letters.len()
    }

    /// Whether the batch holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total bytes of lines.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.events.byte_len() + self.dead_letters.byte_len()
    }

    /// The two tables with their names.
    pub fn tables(&self) -> [(&'static str, &EventLines); 2] {
        [
            (TABLE_EVENTS, &self.events),
            (TABLE_DEAD_LETTER, &self.dead_letters),
        ]
    }
}

/// What a successful commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The events are durably stored.
    Written {
        /// Number of events stored.
        events: usize,
    },
    /// The delivery was already committed earlier, or is committed by an identical
    /// request that this one waited for; nothing was written again.
    Duplicate,
}

/// Why a sink could not commit a batch. Nothing of the batch counts as committed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// Writing or syncing failed; the partial write was rolled back.
    #[error("storage write failed: {0}")]
    Write(String),
    /// The sink's configuration is not one it can work with (found when it is
    /// opened; most mistakes are caught earlier, when the configuration is read).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The sink has stopped (shutdown) and takes no more batches.
    #[error("storage is closed")]
    Closed,
    /// The service behind the sink did not take the batch (down, timed out,
    /// refused); retrying may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The sink found its storage gone or damaged (a data directory deleted or
    /// replaced) and takes nothing until a health probe finds it repaired: the
    /// fan-out marks it down at once instead of retrying.
    #[error("{0}")]
    Down(String),
}

/// A configured sink. Static dispatch over the kinds, as there are few.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per configured sink, made once at startup; its size does not matter"
)]
pub enum Sink {
    /// Local NDJSON files.
    File(file::FileSink),
    /// S3 or S3-compatible object storage.
    #[cfg(feature = "s3")]
    S3(s3::S3Sink),
    /// NATS JetStream.
    #[cfg(feature = "nats")]
    Nats(nats::NatsSink),
    /// Kafka.
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaSink),
    /// Series for Prometheus scrapes, in memory.
    Prometheus(prometheus::PrometheusSink),
    /// Series sent to a Prometheus remote write receiver.
    #[cfg(feature = "remote_write")]
    RemoteWrite(remote_write::RemoteWriteSink),
    /// Standard output.
    Stdout(stdout::StdoutSink),
    /// Counts and forgets.
    Discard(discard::DiscardSink),
}

impl Sink {
    /// The sink's type name, as in configuration.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            #[cfg(feature = "s3")]
            Self::S3(_) => "s3",
            #[cfg(feature = "nats")]
            Self::Nats(_) => "nats",
            #[cfg(feature = "kafka")]
            Self::Kafka(_) => "kafka",
            Self::Prometheus(_) => "prometheus",
            #[cfg(feature = "remote_write")]
            Self::RemoteWrite(_) => "remote_write",
            Self::Stdout(_) => "stdout",
            Self::Discard(_) => "discard",
        }
    }

    /// Whether a sink of this type takes the node out of service (`/readyz`
    /// answers 503) while its circuit breaker has it down, unless its
    /// `gates_readiness` setting says otherwise.
    ///
    /// A load balancer that takes a node out helps only when the problem is that
    /// node's own. Local sinks (`file`, `stdout`) are the node's own: another node
    /// can take its traffic. A network sink is usually a backbone that every node
    /// shares (S3, NATS, Kafka): when it is down it is down for all of them, and
    /// taking every node out would refuse even the streams routed to healthy sinks.
    /// A delivery routed to a down sink is answered 503 at once anyway, and Firehose
    /// retries it.
    #[must_use]
    pub fn gates_readiness_by_default(kind: &str) -> bool {
        matches!(kind, "file" | "stdout")
    }

    /// The `action` label values of `hydrant_sink_reshaped_total` a sink of this
    /// type can count (see [`template`]).
    #[must_use]
    pub fn reshape_actions(&self) -> &'static [&'static str] {
        match self {
            #[cfg(feature = "s3")]
            Self::S3(_) => &[template::RESHAPE_HASHED_KEY],
            #[cfg(feature = "nats")]
            Self::Nats(_) => &[template::RESHAPE_SPLIT, template::RESHAPE_HASHED_NAME],
            #[cfg(feature = "kafka")]
            Self::Kafka(_) => &[
                template::RESHAPE_SPLIT,
                template::RESHAPE_HASHED_NAME,
                template::RESHAPE_HASHED_KEY,
            ],
            _ => &[],
        }
    }

    /// The `prometheus` sink behind this one, whose series the admin listener
    /// serves at its path.
    #[must_use]
    pub fn scrape_endpoint(&self) -> Option<&prometheus::PrometheusSink> {
        match self {
            Self::Prometheus(sink) => Some(sink),
            _ => None,
        }
    }

    /// The duplicate window the sink keeps itself, if it does: a file sink's, which
    /// its journal makes durable and its recovery seeded. The fan-out makes one for
    /// every other sink.
    #[must_use]
    pub fn dedup_window(&self) -> Option<Arc<dedup::SinkWindow>> {
        match self {
            Self::File(sink) => Some(Arc::clone(sink.window())),
            _ => None,
        }
    }

    /// Commits a batch whose delivery `claim` holds in this sink's window (the
    /// duplicate check is done); resolves once it is durable.
    ///
    /// # Errors
    ///
    /// [`SinkError`] when the batch was not committed; nothing of it counts.
    pub async fn commit(
        &self,
        batch: &SinkBatch,
        claim: &dedup::Claim,
    ) -> Result<Committed, SinkError> {
        match self {
            Self::File(sink) => sink.commit_claimed(batch, claim).await,
            #[cfg(feature = "s3")]
            Self::S3(sink) => sink.commit(batch).await.map(|()| written(batch)),
            #[cfg(feature = "nats")]
            Self::Nats(sink) => sink.commit(batch).await.map(|()| written(batch)),
            #[cfg(feature = "kafka")]
            Self::Kafka(sink) => sink.commit(batch).await.map(|()| written(batch)),
            Self::Prometheus(sink) => {
                // Parsing and naming a large batch is milliseconds of CPU: off the
                // async workers, as decoding is.
                let (sink, shared) = (sink.clone(), batch.clone());
                tokio::task::spawn_blocking(move || sink.commit(&shared))
                    .await
                    .map_err(|error| SinkError::Write(error.to_string()))??;
                Ok(written(batch))
            }
            #[cfg(feature = "remote_write")]
            Self::RemoteWrite(sink) => sink.commit(batch).await.map(|()| written(batch)),
            Self::Stdout(sink) => sink.commit(batch).await.map(|()| written(batch)),
            Self::Discard(sink) => {
                sink.commit(batch);
                Ok(written(batch))
            }
        }
    }

    /// Checks that the service behind the sink answers, or for the file sink that
    /// its data directory is intact (rebuilding it if it was found damaged), for the
    /// circuit breaker and readiness.
    ///
    /// # Errors
    ///
    /// [`SinkError::Unavailable`] or [`SinkError::Down`] when it does not.
    pub async fn probe(&self) -> Result<(), SinkError> {
        match self {
            Self::File(sink) => sink.probe().await,
            Self::Prometheus(_) | Self::Stdout(_) | Self::Discard(_) => Ok(()),
            #[cfg(feature = "s3")]
            Self::S3(sink) => sink.probe().await,
            #[cfg(feature = "nats")]
            Self::Nats(sink) => sink.probe().await,
            #[cfg(feature = "kafka")]
            Self::Kafka(sink) => sink.probe().await,
            #[cfg(feature = "remote_write")]
            Self::RemoteWrite(sink) => sink.probe().await,
        }
    }

    /// Finishes pending work and releases the sink.
    pub async fn close(&self) {
        match self {
            Self::File(sink) => sink.close().await,
            Self::Stdout(sink) => sink.flush().await,
            _ => {}
        }
    }
}

fn written(batch: &SinkBatch) -> Committed {
    Committed::Written {
        events: batch.len(),
    }
}

#[cfg(test)]
mod tests;
