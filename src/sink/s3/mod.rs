//! The `s3` sink: one object per delivery and table in Amazon S3 or an
//! S3-compatible store (MinIO, Ceph, R2…), as NDJSON, gzip'd by default.
//!
//! Why one object per delivery: an object store has no append, and a Firehose
//! delivery is already a sensible batch (up to a few MB). The key is rendered from a
//! [`Template`] that must hold `{request_id}` or `{delivery_key}` and nothing per
//! event, so the key is a pure function of the delivery: when Firehose retries a
//! delivery, the retry overwrites the same object instead of adding a second copy.
//! Together with the fan-out's window of committed deliveries this gives exactly one
//! object per delivery and table.
//!
//! Values are written into the key with [`encode_key_value`]: percent-encoded, `/`
//! included, so two different request ids never give the same key (a retry of one
//! would overwrite the other) and no value adds a folder. A key that S3 or an
//! S3-compatible store would refuse (over [`MAX_KEY_BYTES`], a segment over
//! [`MAX_SEGMENT_BYTES`], or an empty segment left by an empty value) is replaced by
//! `<prefix>/%keys-by-delivery/<table>/<delivery key>.ndjson[.gz]`, a fixed-length key no
//! rendered key can be equal to (rendered keys hold `%` only in `%XX` escapes), and
//! counted in `hydrant_sink_reshaped_total`.
//!
//! A commit returns once every `PUT` is acknowledged, which S3 only does once the
//! object is durably stored. Retries, the circuit breaker and the duplicate window
//! live in [`super::fanout`]; the client's own retries are turned off so that a
//! failing store is reported quickly and retried in one place.

use std::fmt;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore as _, PutOptions, PutPayload, RetryConfig};
use serde::Deserialize;

use super::dedup::DeliveryKey;
use super::template::{
    RESHAPE_HASHED_KEY, ReshapeCounter, Template, check_key_template, encode_key_value,
};
use super::{SinkBatch, SinkError};
use crate::event::Delivery;
use crate::metrics::Metrics;

/// Default region: the one AWS SDKs fall back to, and what S3-compatible servers
/// usually accept whatever their own setting.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default key template: Hive-style `dt=`/`hour=` partitions that Athena, Spark and
/// DuckDB prune on, the stream to keep sources apart, and the request id so that a
/// retried delivery overwrites its own object.
pub const DEFAULT_KEY_TEMPLATE: &str =
    "{table}/dt={date}/hour={hour}/{delivery_stream}/{request_id}.ndjson";
/// `compression` value: gzip every object (the default: NDJSON shrinks several
/// times, which cuts storage and transfer costs, and every query engine reads it).
pub const COMPRESSION_GZIP: &str = "gzip";
/// `compression` value: store the lines as they are.
pub const COMPRESSION_NONE: &str = "none";
/// Appended to keys of gzip'd objects, so tools recognise the encoding by name.
pub const GZIP_SUFFIX: &str = ".gz";
/// Bound on one `PUT`: generous for a delivery of a few MB on a slow link, yet well
/// inside the fan-out's deadline so a hung connection fails the attempt, not the
/// whole delivery.
pub const PUT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a health probe: probes run every couple of seconds and must not pile up.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on opening a connection: a store that cannot be reached in this time is
/// treated as down rather than waited for.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// gzip level 6: zlib's default, most of the size gain of level 9 at a fraction of
/// its CPU time.
const GZIP_LEVEL: u32 = 6;
/// Folder listed by the probe, under the prefix. Nothing is written there, so the
/// listing stays one request with an empty answer however full the bucket is.
const PROBE_FOLDER: &str = ".hydrant-probe";
/// Shown instead of credentials.
const REDACTED: &str = "<redacted>";
/// Longest object key S3 takes: 1,024 bytes of UTF-8 (S3 User Guide, "Naming
/// Amazon S3 objects").
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest segment (text between two `/`) of a key: 255 bytes, the file name limit
/// of the file systems that S3-compatible stores such as MinIO keep objects on; S3
/// itself has no such limit, but a key that only some stores take would fail
/// forever on the others.
pub const MAX_SEGMENT_BYTES: usize = 255;
/// Folder, under the prefix, of objects whose rendered key could not be used. Its
/// `%` is followed by `k`, which is no hex digit and so begins no escape of
/// [`encode_key_value`], and key templates may not hold `%`: no rendered key lies
/// under it.
pub const FALLBACK_FOLDER: &str = "%keys-by-delivery";
/// Extension of a fallback object's name (before [`GZIP_SUFFIX`]).
const FALLBACK_EXTENSION: &str = ".ndjson";
/// The longest table name, for sizing fallback keys.
const LONGEST_TABLE: &str = super::TABLE_DEAD_LETTER;

/// Configuration of an `s3` sink.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Bucket the objects are written to (required).
    pub bucket: String,
    /// Key prefix, e.g. `firehose/prod`; a `/` separates it from the rendered key.
    /// Empty: objects at the top of the bucket.
    #[serde(default)]
    pub prefix: String,
    /// Endpoint of an S3-compatible server, e.g. `http://minio:9000`. `http://`
    /// allows plain HTTP. Absent: AWS's endpoint for the region (or `AWS_ENDPOINT`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region the requests are signed for.
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id. With `secret_access_key`; when both are absent, credentials
    /// come from the environment (`AWS_ACCESS_KEY_ID`…, web identity, ECS task role
    /// or instance profile).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key, with `access_key_id`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Template of object keys (see [`super::template`]); must contain
    /// `{request_id}` or `{delivery_key}`, no per-event placeholder and no `%`.
    /// The prefix is put in front and [`GZIP_SUFFIX`] appended when compressed.
    #[serde(default = "default_key_template")]
    pub key_template: String,
    /// [`COMPRESSION_GZIP`] or [`COMPRESSION_NONE`].
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Address the bucket as `https://bucket.host/key` instead of
    /// `https://host/bucket/key`. Off by default: path style works with every
    /// S3-compatible server and with AWS.
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// PEM file of the certificates that may sign an `https://` endpoint's (added
    /// to the system's roots), for a private S3-compatible server.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_region() -> String {
    DEFAULT_REGION.to_owned()
}

fn default_key_template() -> String {
    DEFAULT_KEY_TEMPLATE.to_owned()
}

fn default_compression() -> String {
    COMPRESSION_GZIP.to_owned()
}

impl Default for S3Config {
    /// Every default, with an empty bucket that must still be set.
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: None,
            region: default_region(),
            access_key_id: None,
            secret_access_key: None,
            key_template: default_key_template(),
            compression: default_compression(),
            virtual_hosted_style: false,
            ca_file: None,
        }
    }
}

impl fmt::Debug for S3Config {
    /// Credentials are shown only as set or not: configuration is logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "access_key_id",
                &self.access_key_id.as_ref().map(|_| REDACTED),
            )
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| REDACTED),
            )
            .field("key_template", &self.key_template)
            .field("compression", &self.compression)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl S3Config {
    /// Checks what can be checked without the network.
    ///
    /// # Errors
    ///
    /// A one-line reason: empty bucket, bad key template (unparsable, per event,
    /// without `{request_id}` or `{delivery_key}`, holding `%`, or making keys S3
    /// refuses), a prefix too long, unknown compression, half-given credentials or
    /// an endpoint that is not an `http(s)://` URL.
    pub fn validate(&self) -> Result<(), String> {
        if self.bucket.trim().is_empty() {
            return Err("s3: bucket must be set".into());
        }
        if self.region.trim().is_empty() {
            return Err("s3: region must not be empty".into());
        }
        KeyLayout::new(self)?;
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!(
                "s3: endpoint {endpoint:?} must start with http:// or https://"
            ));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err("s3: access_key_id and secret_access_key must be given together (or both left out to use the environment)".into());
        }
        if let Some(path) = &self.ca_file {
            crate::tls::pem_certificates(path).map_err(|error| format!("s3: ca_file {error}"))?;
        }
        Ok(())
    }
}

/// A configuration error of the sink for `config`'s bucket.
fn invalid(config: &S3Config, reason: &str) -> SinkError {
    SinkError::Config(format!("s3 bucket {:?}: {reason}", config.bucket))
}

impl super::SinkSettings for S3Config {
    fn check(&self) -> Result<(), String> {
        self.validate()
    }
}

/// How a delivery's objects are named and encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyLayout {
    /// The prefix without surrounding `/`s.
    prefix: String,
    template: Template,
    gzip: bool,
}

impl KeyLayout {
    fn new(config: &S3Config) -> Result<Self, String> {
        // A leading `/` separates the template from the prefix, which `join` does
        // already: S3 keys have no empty first segment.
        let template = Template::parse(config.key_template.trim_start_matches('/'))
            .map_err(|error| format!("s3: key_template: {error}"))?;
        if template.is_per_event() {
            return Err(format!(
                "s3: key_template {:?} uses a per-event placeholder; one object is written per delivery and table",
                config.key_template
            ));
        }
        if !template.uses("request_id") && !template.uses("delivery_key") {
            return Err(format!(
                "s3: key_template {:?} must contain {{request_id}} or {{delivery_key}}, so that a retried delivery overwrites its object",
                config.key_template
            ));
        }
        check_key_template(&template, &config.key_template)
            .map_err(|error| format!("s3: key_template: {error}"))?;
        let gzip = match config.compression.as_str() {
            COMPRESSION_GZIP => true,
            COMPRESSION_NONE => false,
            other => {
                return Err(format!(
                    "s3: unknown compression {other:?}; expected {COMPRESSION_GZIP:?} or {COMPRESSION_NONE:?}"
                ));
            }
        };
        let layout = Self {
            prefix: config.prefix.trim_matches('/').to_owned(),
            template,
            gzip,
        };
        // The fallback must always be usable, and ordinary values must give
        // usable keys: otherwise every delivery would take the fallback.
        let sample_key = DeliveryKey::new(None, "");
        let fallback = layout.fallback_key(&sample_key, LONGEST_TABLE);
        check_key(&fallback).map_err(|reason| {
            format!(
                "s3: prefix {:?} leaves no usable key: {reason}",
                config.prefix
            )
        })?;
        let sample = layout.join(&layout.template.render(
            &Delivery::default(),
            &sample_key,
            LONGEST_TABLE,
            None,
            |_| "x".to_owned(),
        ));
        check_key(&sample).map_err(|reason| {
            format!(
                "s3: key_template {:?} with prefix {:?} makes keys S3 refuses: {reason}",
                config.key_template, config.prefix
            )
        })?;
        Ok(layout)
    }

    /// The object key of `table`'s lines of the delivery, and whether it is the
    /// fallback key because the rendered one could not be used.
    fn key(&self, delivery: &Delivery, delivery_key: &DeliveryKey, table: &str) -> (Path, bool) {
        let rendered = self
            .template
            .render(delivery, delivery_key, table, None, encode_key_value);
        let key = self.join(&rendered);
        match check_key(&key) {
            Ok(()) => (path_of(&key), false),
            Err(_) => (path_of(&self.fallback_key(delivery_key, table)), true),
        }
    }

    /// The prefix, `rendered` and the suffix.
    fn join(&self, rendered: &str) -> String {
        let suffix = if self.gzip { GZIP_SUFFIX } else { "" };
        if self.prefix.is_empty() {
            format!("{rendered}{suffix}")
        } else {
            format!("{}/{rendered}{suffix}", self.prefix)
        }
    }

    /// The key of a delivery's table whose rendered key could not be used.
    fn fallback_key(&self, delivery_key: &DeliveryKey, table: &str) -> String {
        self.join(&format!(
            "{FALLBACK_FOLDER}/{table}/{}{FALLBACK_EXTENSION}",
            delivery_key.to_hex()
        ))
    }

    fn probe_folder(&self) -> Path {
        if self.prefix.is_empty() {
            Path::from(PROBE_FOLDER)
        } else {
            Path::from(format!("{}/{PROBE_FOLDER}", self.prefix))
        }
    }

    fn content_type(&self) -> &'static str {
        if self.gzip {
            "application/gzip"
        } else {
            "application/x-ndjson"
        }
    }
}

/// Whether S3 and S3-compatible stores take `key` as it is: at most
/// [`MAX_KEY_BYTES`], segments of 1 to [`MAX_SEGMENT_BYTES`] bytes that are not `.`
/// or `..`, and no control characters.
fn check_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "{} bytes, over the {MAX_KEY_BYTES} S3 takes",
            key.len()
        ));
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!("an empty, '.' or '..' segment in {key:?}"));
        }
        if segment.len() > MAX_SEGMENT_BYTES {
            return Err(format!(
                "a segment of {} bytes, over {MAX_SEGMENT_BYTES}",
                segment.len()
            ));
        }
        if segment.chars().any(char::is_control) {
            return Err(format!("a control character in {key:?}"));
        }
    }
    Ok(())
}

/// A key that [`check_key`] accepted, taken as it is: `Path`'s conversion from
/// text would escape `%` a second time. `check_key` rules out everything
/// `Path::parse` refuses, so the conversion is only a fallback that cannot happen.
fn path_of(key: &str) -> Path {
    Path::parse(key).unwrap_or_else(|_| Path::from(key))
}

/// Writes each delivery's events and dead letters as objects.
pub struct S3Sink {
    store: AmazonS3,
    bucket: String,
    layout: KeyLayout,
    /// Counts fallback keys.
    reshaped: ReshapeCounter,
}

impl fmt::Debug for S3Sink {
    /// Written by hand: the client's own `Debug` would show the access key id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Sink")
            .field("bucket", &self.bucket)
            .field("prefix", &self.layout.prefix)
            .field("gzip", &self.layout.gzip)
            .finish_non_exhaustive()
    }
}

impl S3Sink {
    /// Builds the client. Nothing is sent: a store that is down at startup is found
    /// by the first probe or commit, and handled by the fan-out's breaker.
    ///
    /// # Errors
    ///
    /// [`SinkError::Config`] for a configuration the client does not accept.
    pub async fn connect(config: S3Config) -> Result<Self, SinkError> {
        config
            .validate()
            .map_err(|reason| invalid(&config, &reason))?;
        Self::open(config).await
    }

    /// [`Self::connect`] for settings already checked (by [`S3Config::validate`],
    /// when the configuration was read).
    ///
    /// # Errors
    ///
    /// [`SinkError::Config`] for a configuration the client does not accept.
    #[expect(
        clippy::unused_async,
        reason = "async like the other sinks' connect, which do talk to their service"
    )]
    pub async fn open(config: S3Config) -> Result<Self, SinkError> {
        let invalid = |reason: String| invalid(&config, &reason);
        crate::tls::install_crypto_provider();
        let layout = KeyLayout::new(&config).map_err(invalid)?;
        let mut client_options = object_store::ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(PUT_TIMEOUT);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|error| invalid(format!("ca_file {}: {error}", path.display())))?;
            let certificates = object_store::Certificate::from_pem_bundle(&pem)
                .map_err(|error| invalid(format!("ca_file {}: {error}", path.display())))?;
            for certificate in certificates {
                client_options = client_options.with_root_certificate(certificate);
            }
        }
        // Keys from the configuration are used alone: mixing them with a session
        // token or role from the environment would sign with the wrong identity.
        let builder = match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => AmazonS3Builder::new()
                .with_access_key_id(id)
                .with_secret_access_key(secret),
            _ => AmazonS3Builder::from_env(),
        };
        let mut builder = builder
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(config.virtual_hosted_style)
            .with_client_options(client_options)
            // One attempt per call: the fan-out retries with its own backoff and
            // counts failures for the breaker; retrying here too would multiply the
            // wait and hide an outage from the breaker.
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder
            .build()
            .map_err(|error| invalid(error.to_string()))?;
        Ok(Self {
            store,
            bucket: config.bucket,
            layout,
            reshaped: ReshapeCounter::default(),
        })
    }

    /// Counts this sink's fallback keys in `metrics`, under the sink's configured
    /// `name`.
    #[must_use]
    pub fn with_metrics(mut self, name: &str, metrics: &Metrics) -> Self {
        self.reshaped = ReshapeCounter::new(metrics, name, "s3");
        self
    }

    /// Writes one object per table that has lines, and returns once S3 has
    /// acknowledged each.
    ///
    /// # Errors
    ///
    /// [`SinkError::Unavailable`] when the store refuses, fails or does not answer
    /// in [`PUT_TIMEOUT`]; [`SinkError::Write`] when compressing fails.
    pub async fn commit(&self, batch: &SinkBatch) -> Result<(), SinkError> {
        for (table, lines) in batch.tables() {
            if lines.is_empty() {
                continue;
            }
            let (key, fallback) = self.layout.key(&batch.delivery, &batch.dedup_key, table);
            if fallback {
                self.reshaped.add(RESHAPE_HASHED_KEY, 1);
                tracing::warn!(
                    sink = "s3",
                    bucket = %self.bucket,
                    %key,
                    request_id_bytes = batch.delivery.request_id.len(),
                    "The rendered object key cannot be used (too long or an empty segment); writing under the delivery key."
                );
            }
            let chunks: Vec<Bytes> = lines.byte_chunks().cloned().collect();
            let body = if self.layout.gzip {
                // Compressing megabytes is CPU work: keep it off the async workers.
                tokio::task::spawn_blocking(move || gzip(&chunks))
                    .await
                    .map_err(|error| {
                        SinkError::Write(format!("s3: compression task failed: {error}"))
                    })?
                    .map_err(|error| SinkError::Write(format!("s3: gzip: {error}")))?
                    .into()
            } else {
                PutPayload::from_iter(chunks)
            };
            self.put(&key, body).await?;
        }
        Ok(())
    }

    async fn put(&self, key: &Path, body: PutPayload) -> Result<(), SinkError> {
        let size = body.content_length();
        let options = PutOptions::from(Attributes::from_iter([(
            Attribute::ContentType,
            self.layout.content_type(),
        )]));
        let put = self.store.put_opts(key, body, options);
        match tokio::time::timeout(PUT_TIMEOUT, put).await {
            Ok(Ok(_)) => {
                tracing::debug!(sink = "s3", bucket = %self.bucket, %key, size, "Object written.");
                Ok(())
            }
            Ok(Err(error)) => Err(SinkError::Unavailable(format!(
                "s3 put s3://{}/{key} failed: {error}",
                self.bucket
            ))),
            Err(_) => Err(SinkError::Unavailable(format!(
                "s3 put s3://{}/{key} timed out after {PUT_TIMEOUT:?}",
                self.bucket
            ))),
        }
    }

    /// Lists a folder under the prefix that is never written. An empty answer
    /// proves that the endpoint answers, the credentials are accepted and the
    /// bucket exists (S3 answers `NoSuchBucket` otherwise), in one small request
    /// and without needing read access to the objects.
    ///
    /// # Errors
    ///
    /// [`SinkError::Unavailable`] when the store does not answer in
    /// [`PROBE_TIMEOUT`], the bucket is missing, or the request is refused.
    pub async fn probe(&self) -> Result<(), SinkError> {
        let folder = self.layout.probe_folder();
        match tokio::time::timeout(PROBE_TIMEOUT, self.store.list_with_delimiter(Some(&folder)))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(SinkError::Unavailable(format!(
                "s3 bucket {:?}: {error}",
                self.bucket
            ))),
            Err(_) => Err(SinkError::Unavailable(format!(
                "s3 bucket {:?} did not answer within {PROBE_TIMEOUT:?}",
                self.bucket
            ))),
        }
    }
}

/// `data` gzip'd at [`GZIP_LEVEL`].
fn gzip(chunks: &[Bytes]) -> std::io::Result<Bytes> {
    let size: usize = chunks.iter().map(Bytes::len).sum();
    // NDJSON usually shrinks to well under a quarter of its size.
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(size / 4),
        flate2::Compression::new(GZIP_LEVEL),
    );
    for chunk in chunks {
        encoder.write_all(chunk)?;
    }
    Ok(Bytes::from(encoder.finish()?))
}

#[cfg(test)]
mod tests;
