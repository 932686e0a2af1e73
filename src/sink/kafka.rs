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
//! Missing topics are created (when `create_topics` is on) with the configured
//! partitions and replication factor; partition counts are learnt from the
//! cluster's metadata, once per connection (partitions added to a topic are used
//! after the next reconnect). Large deliveries are produced in several batches per
//! partition, each below [`MAX_BATCH_BYTES`], in order.
//!
//! Connecting is lazy: [`KafkaSink::connect`] only checks the configuration, and
//! the first commit or probe connects. A broker that is down at startup therefore
//! only marks the sink down (the fan-out's breaker and prober take it from there).
//! After any failure the connection, and the metadata learnt through it, is
//! dropped, so the next attempt reconnects and starts from fresh metadata.
//!
//! # Delivery guarantee: at least once
//!
//! Kafka has no way to recognise a delivery that was already written (this sink
//! does not use Kafka transactions or idempotent producer ids). When a commit fails
//! after some partitions acknowledged their records (a broker dies mid-commit, the
//! timeout passes), the whole delivery fails, Firehose retries it, and the records
//! that had been acknowledged are produced again. Consumers must tolerate
//! duplicates; the default key (`{request_id}:{record_index}:{event_index}`) is
//! unique per event, so they can recognise them. A retry of a delivery that had
//! fully committed is not written again: the fan-out remembers committed
//! deliveries per sink.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use super::template::Template;
use super::{SinkBatch, SinkError};

/// Default topic template: one topic per table (`hydrant-events`,
/// `hydrant-dead_letter`), so dead letters never mix with decoded events.
pub const DEFAULT_TOPIC: &str = "hydrant-{table}";
/// Default key template: unique per event and stable across Firehose's retries, so
/// a consumer can recognise a duplicate produced by a retry.
pub const DEFAULT_KEY: &str = "{request_id}:{record_index}:{event_index}";
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
/// Largest batch (uncompressed record bytes) sent in one produce request. Brokers
/// refuse batches above `message.max.bytes` (1 MiB by default); staying below it
/// before compression keeps every batch acceptable whatever the compression.
pub const MAX_BATCH_BYTES: usize = 768 * 1024;
/// Header naming the Firehose request a record came from.
pub const HEADER_REQUEST_ID: &str = "hydrant-request-id";
/// Header naming the table (`events` or `dead_letter`) a record belongs to.
pub const HEADER_TABLE: &str = "hydrant-table";
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
/// Seed of Kafka's murmur2 partitioner.
const MURMUR2_SEED: u32 = 0x9747_b28c;
/// Multiplier of murmur2.
const MURMUR2_M: u32 = 0x5bd1_e995;

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

/// Configuration of a `kafka` sink (a `[[sinks]]` entry with `type = "kafka"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` each, e.g. `["127.0.0.1:9092"]`.
    pub brokers: Vec<String>,
    /// Topic template ([`DEFAULT_TOPIC`]); the rendered name is cleaned to Kafka's
    /// legal characters, see [`clean_topic`].
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Record key template ([`DEFAULT_KEY`]); it also chooses the partition.
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
        Template::parse(&self.key).map_err(|error| format!("key: {error}"))?;
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
        Ok(())
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
/// `[A-Za-z0-9._-]` becomes `_`, the name is cut at [`MAX_TOPIC_CHARS`], and the
/// names Kafka reserves (empty, `.` and `..`) become underscores.
#[must_use]
pub fn clean_topic(rendered: &str) -> String {
    let mut topic: String = rendered
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_TOPIC_CHARS)
        .collect();
    if topic.is_empty() || topic == "." || topic == ".." {
        topic = topic.replace('.', "_");
        if topic.is_empty() {
            topic.push('_');
        }
    }
    topic
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`).
fn murmur2(data: &[u8]) -> u32 {
    // Kafka mixes in the length as a Java int, i.e. modulo 2^32.
    let mut hash = MURMUR2_SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(MURMUR2_M);
        k ^= k >> 24;
        k = k.wrapping_mul(MURMUR2_M);
        hash = hash.wrapping_mul(MURMUR2_M);
        hash ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (shift, byte) in tail.iter().enumerate().rev() {
            hash ^= u32::from(*byte) << (8 * shift);
        }
        hash = hash.wrapping_mul(MURMUR2_M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(MURMUR2_M);
    hash ^= hash >> 15;
    hash
}

/// The partition of `key` in a topic of `partitions` partitions, as Kafka's
/// default partitioner chooses it for keyed records: murmur2 of the key, made
/// positive, modulo the partition count. The same key always gives the same
/// partition while the count stays the same.
#[must_use]
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    let Ok(count) = u32::try_from(partitions) else {
        return 0;
    };
    if count == 0 {
        return 0;
    }
    let partition = (murmur2(key) & 0x7fff_ffff) % count;
    // Below `partitions`, which is an i32.
    i32::try_from(partition).unwrap_or(0)
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
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kafka(error) => write!(f, "{error}"),
            Self::NoTopic => f.write_str("the topic does not exist and create_topics is off"),
            Self::NoPartitions => f.write_str("the topic has no partitions"),
            Self::Task(error) => write!(f, "produce task failed: {error}"),
        }
    }
}

impl From<KafkaError> for Failure {
    fn from(error: KafkaError) -> Self {
        Self::Kafka(error)
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
    /// The client once connected; `None` before the first use and after a
    /// connection failure.
    connection: Mutex<Option<Arc<Connection>>>,
}

impl KafkaSink {
    /// Builds the sink. Nothing is connected yet (see the [module](self) docs), so
    /// a broker that is down does not stop Hydrant from starting.
    ///
    /// # Errors
    ///
    /// [`SinkError::Write`] when the configuration is invalid.
    #[allow(
        clippy::unused_async,
        reason = "every sink connects asynchronously; this one defers it"
    )]
    pub async fn connect(config: KafkaConfig) -> Result<Self, SinkError> {
        let invalid =
            |reason: String| SinkError::Write(format!("kafka sink configuration: {reason}"));
        config.validate().map_err(invalid)?;
        let topic = Template::parse(&config.topic).map_err(invalid)?;
        let key = Template::parse(&config.key).map_err(invalid)?;
        let compression = parse_compression(&config.compression).map_err(invalid)?;
        tracing::info!(
            brokers = ?config.brokers,
            topic = %config.topic,
            compression = %config.compression,
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
            connection: Mutex::new(None),
        })
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
        let by_topic = self.records_by_topic(batch);
        let topics: Vec<&str> = by_topic.keys().map(String::as_str).collect();
        let topics = topics.join(", ");
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.produce(by_topic)).await;
        match outcome {
            Ok(Ok(())) => {
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
                self.disconnect(&failure.to_string()).await;
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
            Ok::<(), KafkaError>(())
        };
        let brokers = self.brokers.join(",");
        match tokio::time::timeout(bound, attempt).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.disconnect(&error.to_string()).await;
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

    /// Every event of both tables as a record, grouped by cleaned topic name.
    fn records_by_topic(&self, batch: &SinkBatch) -> BTreeMap<String, Vec<(Vec<u8>, Record)>> {
        let delivery = &batch.delivery;
        let timestamp = i64::try_from(delivery.received_at)
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_default();
        let mut by_topic: BTreeMap<String, Vec<(Vec<u8>, Record)>> = BTreeMap::new();
        for (table, lines) in batch.tables() {
            for (meta, line) in lines.iter() {
                let topic = clean_topic(&self.topic.render(
                    delivery,
                    table,
                    Some(meta),
                    str::to_owned,
                ));
                let key = self
                    .key
                    .render(delivery, table, Some(meta), str::to_owned)
                    .into_bytes();
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
                by_topic.entry(topic).or_default().push((key, record));
            }
        }
        by_topic
    }

    /// Learns each topic's partitions (creating missing topics), splits its
    /// records by partition and produces every partition's records concurrently.
    async fn produce(
        &self,
        by_topic: BTreeMap<String, Vec<(Vec<u8>, Record)>>,
    ) -> Result<(), (String, Failure)> {
        let first_topic = by_topic.keys().next().cloned().unwrap_or_default();
        let connection = self
            .connection()
            .await
            .map_err(|error| (first_topic, Failure::Kafka(error)))?;
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
            tasks.spawn(async move {
                let result =
                    produce_partition(&connection, &topic, partition, records, compression).await;
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

    /// The connected client, connecting if there is none. Concurrent callers wait
    /// for the same connection attempt rather than each starting one.
    async fn connection(&self) -> Result<Arc<Connection>, KafkaError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(Arc::clone(connection));
        }
        let backoff = BackoffConfig {
            init_backoff: RETRY_INITIAL_BACKOFF,
            max_backoff: RETRY_MAX_BACKOFF,
            base: 2.0,
            deadline: Some(self.timeout),
        };
        let client = ClientBuilder::new(self.brokers.clone())
            .client_id(CLIENT_ID)
            .backoff_config(backoff)
            .build()
            .await?;
        tracing::info!(brokers = ?self.brokers, "Connected to Kafka.");
        let connection = Arc::new(Connection {
            client,
            partition_counts: std::sync::Mutex::default(),
            partitions: std::sync::Mutex::default(),
        });
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// Drops the cached connection so the next attempt reconnects.
    async fn disconnect(&self, reason: &str) {
        if self.connection.lock().await.take().is_some() {
            tracing::warn!(brokers = ?self.brokers, %reason, "Dropping the Kafka connection; the next attempt reconnects.");
        }
    }
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
/// [`MAX_BATCH_BYTES`]; returns how many records were acknowledged.
async fn produce_partition(
    connection: &Connection,
    topic: &str,
    partition: i32,
    records: PartitionRecords,
    compression: Compression,
) -> Result<usize, KafkaError> {
    let client = connection.partition_client(topic, partition).await?;
    let total = records.len();
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0;
    for record in records {
        let size = record.approximate_size();
        if !chunk.is_empty() && chunk_bytes + size > MAX_BATCH_BYTES {
            client
                .produce(std::mem::take(&mut chunk), compression)
                .await?;
            chunk_bytes = 0;
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
mod tests {
    use super::*;
    use crate::event::Delivery;
    use crate::sink::{EventLines, EventMeta};

    fn config(text: &str) -> Result<KafkaConfig, String> {
        let config: KafkaConfig = toml::from_str(text).map_err(|error| error.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_fill_everything_but_the_brokers() {
        let parsed = config(r#"brokers = ["127.0.0.1:9092"]"#).unwrap();
        assert_eq!(parsed, KafkaConfig::new(vec!["127.0.0.1:9092".into()]));
        assert_eq!(parsed.topic, "hydrant-{table}");
        assert_eq!(parsed.key, "{request_id}:{record_index}:{event_index}");
        assert_eq!(parsed.compression, "none");
        assert!(parsed.create_topics);
        assert_eq!((parsed.topic_partitions, parsed.replication_factor), (1, 1));
        assert_eq!(parsed.timeout_ms, 10_000);
    }

    #[test]
    fn configurations_are_validated() {
        // (configuration, the error mentions; empty when it is valid)
        let table = [
            (
                r#"brokers = ["a:9092"]
                topic = "logs.{log_group}"
                key = "{request_id}"
                compression = "zstd"
                create_topics = false
                topic_partitions = 6
                replication_factor = 3
                timeout_ms = 2000"#,
                "",
            ),
            (
                r#"brokers = ["a:9092"]
                compression = "lz4""#,
                "",
            ),
            ("topic = \"t\"", "missing field `brokers`"),
            ("brokers = []", "at least one broker"),
            (r#"brokers = [" "]"#, "not a host:port"),
            (
                r#"brokers = ["a:9092"]
                topic = "{nope}""#,
                "topic: template",
            ),
            (
                r#"brokers = ["a:9092"]
                topic = """#,
                "topic: the template is empty",
            ),
            (
                r#"brokers = ["a:9092"]
                key = "{request_id""#,
                "key: template",
            ),
            (
                r#"brokers = ["a:9092"]
                compression = "brotli""#,
                "compression: unknown \"brotli\"",
            ),
            (
                r#"brokers = ["a:9092"]
                topic_partitions = 0"#,
                "topic_partitions",
            ),
            (
                r#"brokers = ["a:9092"]
                replication_factor = 0"#,
                "replication_factor",
            ),
            (
                r#"brokers = ["a:9092"]
                timeout_ms = 0"#,
                "timeout_ms",
            ),
            (
                r#"brokers = ["a:9092"]
                timeout_ms = 3000000000"#,
                "timeout_ms",
            ),
            (
                r#"brokers = ["a:9092"]
                partitions = 3"#,
                "unknown field `partitions`",
            ),
        ];
        for (text, expected) in table {
            match config(text) {
                Ok(_) => assert!(expected.is_empty(), "{text} should fail with {expected}"),
                Err(error) => {
                    assert!(!expected.is_empty(), "{text} should be valid: {error}");
                    assert!(error.contains(expected), "{text}: {error}");
                }
            }
        }
    }

    #[test]
    fn topics_are_cleaned_to_legal_names() {
        let long = "a".repeat(300);
        let table = [
            ("hydrant-events", "hydrant-events".to_owned()),
            (
                "logs./aws/lambda/my fn",
                "logs._aws_lambda_my_fn".to_owned(),
            ),
            ("metrics.AWS/EC2:cpu", "metrics.AWS_EC2_cpu".to_owned()),
            ("été-ü", "_t_-_".to_owned()),
            ("", "_".to_owned()),
            (".", "_".to_owned()),
            ("..", "__".to_owned()),
            ("...", "...".to_owned()),
            (long.as_str(), "a".repeat(249)),
        ];
        for (rendered, expected) in table {
            assert_eq!(clean_topic(rendered), expected, "{rendered}");
        }
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's own test vectors (UtilsTest.testMurmur2), as Java ints.
        let table: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in table {
            assert_eq!(
                murmur2(data).cast_signed(),
                expected,
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn partition_choice_is_stable_and_in_range() {
        assert_eq!(partition_for(b"req-1:0:0", 1), 0);
        for partitions in [1, 2, 3, 7, 12] {
            for index in 0..50 {
                let key = format!("req-1:{index}:0");
                let partition = partition_for(key.as_bytes(), partitions);
                assert!((0..partitions).contains(&partition));
                assert_eq!(
                    partition,
                    partition_for(key.as_bytes(), partitions),
                    "same key, same partition"
                );
            }
        }
        // Pinned values: a change of hash would move records between partitions.
        assert_eq!(
            partition_for(b"foobar", 12),
            ((-790_332_482_i32 & 0x7fff_ffff) % 12)
        );
        assert_eq!(partition_for(b"abc", 7), 479_470_107 % 7);
        // Keys spread over the partitions.
        let used: std::collections::BTreeSet<i32> = (0..100)
            .map(|index| partition_for(format!("req:{index}:0").as_bytes(), 4))
            .collect();
        assert_eq!(used.len(), 4);
        assert_eq!(partition_for(b"x", 0), 0, "no partitions: no panic");
    }

    #[tokio::test]
    async fn records_carry_topic_key_headers_and_time() {
        let mut config = KafkaConfig::new(vec!["127.0.0.1:1".into()]);
        config.topic = "hydrant.{table}.{log_group}".into();
        let sink = KafkaSink::connect(config)
            .await
            .expect("no broker needed to build");
        let batch = SinkBatch {
            delivery: Arc::new(Delivery {
                request_id: "req-9".into(),
                received_at: 1_700_000_000_123,
                ..Delivery::default()
            }),
            dedup_key: crate::sink::dedup::DeliveryKey::new(None, "k"),
            events: EventLines::single(
                bytes::Bytes::from_static(b"{\"a\":1}\n{\"b\":2}\n"),
                vec![
                    EventMeta {
                        end: 8,
                        kind: "log",
                        log_group: Some(Arc::from("/aws/lambda/f")),
                        ..EventMeta::default()
                    },
                    EventMeta {
                        end: 16,
                        record_index: 1,
                        event_index: 2,
                        kind: "log",
                        log_group: Some(Arc::from("/aws/lambda/f")),
                        ..EventMeta::default()
                    },
                ],
            ),
            dead_letters: EventLines::single(
                bytes::Bytes::from_static(b"{\"c\":3}\n"),
                vec![EventMeta {
                    end: 8,
                    record_index: 2,
                    kind: "dead_letter",
                    ..EventMeta::default()
                }],
            ),
        };
        let by_topic = sink.records_by_topic(&batch);
        let topics: Vec<&str> = by_topic.keys().map(String::as_str).collect();
        assert_eq!(
            topics,
            ["hydrant.dead_letter.none", "hydrant.events._aws_lambda_f"]
        );
        let events = &by_topic["hydrant.events._aws_lambda_f"];
        assert_eq!(events.len(), 2);
        let (key, record) = &events[1];
        assert_eq!(key, b"req-9:1:2");
        assert_eq!(record.key.as_deref(), Some(&b"req-9:1:2"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"{\"b\":2}"[..]));
        assert_eq!(record.headers[HEADER_REQUEST_ID], b"req-9");
        assert_eq!(record.headers[HEADER_TABLE], b"events");
        assert_eq!(record.timestamp.timestamp_millis(), 1_700_000_000_123);
        let (_, dead) = &by_topic["hydrant.dead_letter.none"][0];
        assert_eq!(dead.headers[HEADER_TABLE], b"dead_letter");
        assert_eq!(dead.value.as_deref(), Some(&b"{\"c\":3}"[..]));
    }

    #[tokio::test]
    async fn a_missing_broker_fails_the_commit_and_probe_not_the_start() {
        // Port 1 on localhost: nothing listens, connections are refused at once.
        let mut config = KafkaConfig::new(vec!["127.0.0.1:1".into()]);
        config.timeout_ms = 300;
        let sink = KafkaSink::connect(config)
            .await
            .expect("starts without a broker");
        let batch = SinkBatch {
            delivery: Arc::new(Delivery::default()),
            dedup_key: crate::sink::dedup::DeliveryKey::new(None, "k"),
            events: EventLines::single(
                bytes::Bytes::from_static(b"{}\n"),
                vec![EventMeta {
                    end: 3,
                    kind: "record",
                    ..EventMeta::default()
                }],
            ),
            dead_letters: EventLines::default(),
        };
        let error = sink.commit(&batch).await.unwrap_err();
        assert!(
            matches!(&error, SinkError::Unavailable(message) if message.contains("hydrant-events")),
            "{error:?}"
        );
        let error = sink.probe().await.unwrap_err();
        assert!(matches!(error, SinkError::Unavailable(_)), "{error:?}");
        assert!(
            sink.connection.lock().await.is_none(),
            "nothing cached after a failure"
        );
    }

    #[tokio::test]
    async fn an_invalid_configuration_is_refused_at_connect() {
        let error = KafkaSink::connect(KafkaConfig::new(Vec::new()))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, SinkError::Write(message) if message.contains("brokers")),
            "{error:?}"
        );
    }
}
