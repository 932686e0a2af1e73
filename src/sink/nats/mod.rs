//! The `nats` sink: every event is published as one message to NATS JetStream (or,
//! when it is too large for one, as several parts), and a commit returns only once
//! JetStream has acknowledged (stored) every message of the batch.
//!
//! **Subjects.** Each event's subject is the `subject` template rendered for that
//! event (default `hydrant.{table}.{kind}`, so `hydrant.events.log`,
//! `hydrant.events.metric`, `hydrant.dead_letter.dead_letter`…). Values put into a
//! subject are cleaned to stay one subject token: whitespace, `.`, `*` and `>` become
//! `_`, and an empty value becomes `none`. A cleaned value longer than
//! [`MAX_SUBJECT_TOKEN_BYTES`] is written `~` and the [`digest_hex`] of the value
//! instead, and a template that could still render a subject longer than
//! [`MAX_SUBJECT_BYTES`] is refused at startup: the server closes the connection
//! (and with it every other publish in flight) on a protocol line over its
//! `max_control_line`, 4 KiB by default. The payload is the event's NDJSON line
//! without its newline.
//!
//! **Exactly once in the stream.** A Firehose delivery that failed in part (some
//! messages stored, then the server went away) is retried by Firehose with the same
//! request id, and Hydrant publishes every event again. Each message therefore carries
//! a `Nats-Msg-Id` header built only from what is stable across those retries and
//! written in a fixed form, so that no two events share one: the delivery's key (32
//! hex digits for the source ARN and request id, see [`DeliveryKey`]), the table, the
//! record index and the event index, joined with `:` ([`message_id`]). JetStream
//! drops a message whose id it has already stored within the stream's duplicate
//! window and answers with a `PubAck` marked `duplicate`, so the stream keeps one
//! copy of each event (see "Message Deduplication" in the NATS docs:
//! <https://docs.nats.io/using-nats/developer/develop_jetstream/model_deep_dive#message-deduplication>).
//! The fan-out's own per-sink window ([`super::fanout`]) already skips whole
//! deliveries this sink committed; the message ids cover the deliveries it committed
//! only partly.
//!
//! **Events larger than a message.** The server refuses a message (headers and
//! payload) over its `max_payload` (1 MiB by default, advertised when the client
//! connects), and a stream refuses one over its `max_msg_size`. A Firehose record may
//! hold 1,000 KiB, which base64 makes a line of over 1.3 MB, so such an event is
//! split into parts that each fit the smaller of the two, published in order on the
//! event's own subject. Each part's payload is the next slice of the line's bytes; its
//! headers name the part ([`HEADER_PART`], from 0), the number of parts
//! ([`HEADER_PARTS`]) and the id the whole event would have had
//! ([`HEADER_EVENT_ID`]); its own `Nats-Msg-Id` is that id, the parts' size and the
//! part number, joined with `:`. The size is in the id because it follows the
//! server's limit: a retry that reaches a server with another limit slices the event
//! differently, and its parts must not be taken for the first attempt's.
//! Concatenating the payloads of one set of parts (one id before the last `:`) in
//! part order gives the line back byte for byte. Splits are counted in
//! `hydrant_sink_reshaped_total`.
//!
//! **Outages.** The client connects and reconnects in the background, so Hydrant
//! starts even when NATS is down; while it is, commits and probes fail at once with
//! [`SinkError::Unavailable`] and the fan-out's circuit breaker answers Firehose 503
//! until a probe finds the server again. Retries and the breaker live in the
//! fan-out, not here.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::response::Response;
use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, Event, ServerAddr, Subject};
use serde::Deserialize;
use tokio::time::Instant;

use bytes::Bytes;

use super::dedup::DeliveryKey;
use super::template::{
    ABSENT, RESHAPE_HASHED_NAME, RESHAPE_SPLIT, ReshapeCounter, Template, digest_hex,
};
use super::{EventMeta, LegacyUnit, LegacyUnitKey, SinkBatch, SinkError};
use crate::event::Delivery;
use crate::metrics::Metrics;

/// Default server: a NATS server on this host, on NATS's standard port.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// Default subject template: one subject per table and event kind, so consumers can
/// subscribe to just logs or just metrics without decoding payloads.
pub const DEFAULT_SUBJECT: &str = "hydrant.{table}.{kind}";
/// Default subjects of a stream Hydrant creates: everything under the default
/// subject's prefix.
pub const DEFAULT_STREAM_SUBJECT: &str = "hydrant.>";
/// Default duplicate window of a stream Hydrant creates, in seconds (10 minutes).
/// JetStream drops a message whose `Nats-Msg-Id` it has seen within this window.
/// Firehose retries a failed delivery for up to its retry duration (default 5
/// minutes), so 10 minutes covers every retry of a delivery that was published only
/// in part.
pub const DEFAULT_DUPLICATE_WINDOW_SECS: u64 = 600;
/// Default bound on one commit, publishes and acknowledgements together, in
/// milliseconds. Well inside the fan-out's delivery deadline, so the fan-out still has
/// time to retry, yet long enough for a busy server to store a large batch.
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 10_000;

/// Bound on a probe's round trip: the prober runs every 2 seconds and must not pile
/// up behind a server that does not answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`NatsSink::connect`] waits for the first connection (and then creates
/// or checks the stream) before leaving both to the background and the first commit
/// or probe. Short, so that a NATS outage at startup delays Hydrant only a little.
const STARTUP_CONNECT_WAIT: Duration = Duration::from_secs(1);
/// How often the startup wait looks at the connection state.
const STARTUP_POLL: Duration = Duration::from_millis(10);
/// Publishes of one commit that may await their acknowledgement at once. Pipelining
/// is what makes a commit fast (one round trip for many messages, not one each); the
/// bound keeps one huge delivery from taking every acknowledgement slot of the
/// connection.
const MAX_PENDING_ACKS_PER_COMMIT: usize = 1_024;
/// Acknowledgement slots of the whole connection, shared by concurrent commits.
const MAX_PENDING_ACKS: usize = 16 * MAX_PENDING_ACKS_PER_COMMIT;
/// Wait before trying again when other commits hold every acknowledgement slot.
const ACK_SLOT_WAIT: Duration = Duration::from_millis(2);
/// Client name the server shows in its connection list.
const CLIENT_NAME: &str = "hydrant";
/// Longest subject token a value may become: 512 bytes, the longest log group name
/// CloudWatch Logs allows, so every real log group keeps a readable token. A longer
/// value is written as `~` and its digest.
pub const MAX_SUBJECT_TOKEN_BYTES: usize = 512;
/// Longest subject a template may render (checked at startup from the template's
/// text and [`MAX_SUBJECT_TOKEN_BYTES`] per value): 3 KiB, so that a publish's
/// protocol line (`HPUB`, the subject, a reply inbox of about 50 bytes and two
/// sizes) stays under nats-server's default `max_control_line` of 4 KiB, past which
/// the server drops the connection.
pub const MAX_SUBJECT_BYTES: usize = 3 * 1024;
/// Marks a subject token that is the digest of a value too long to be one.
pub const HASHED_TOKEN_MARK: char = '~';
/// Header of a part: its position among the event's parts, from 0.
pub const HEADER_PART: &str = "Hydrant-Part";
/// Header of a part: how many parts the event was split into.
pub const HEADER_PARTS: &str = "Hydrant-Parts";
/// Header of a part: the `Nats-Msg-Id` the whole event would have had, the same on
/// every part, for putting them together.
pub const HEADER_EVENT_ID: &str = "Hydrant-Msg-Id";
/// JetStream's header of a message id (set by the client's `message_id`).
const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// JetStream's header naming the expected stream (set by `expected_stream`).
const HEADER_EXPECTED_STREAM: &str = "Nats-Expected-Stream";
/// Fewest payload bytes a part must be able to carry; a server whose `max_payload`
/// leaves less beside the headers is refused as misconfigured rather than flooded
/// with tiny messages.
const MIN_PART_BYTES: usize = 512;
/// Longest decimal `u32`, for sizing headers that hold a count or an index.
const MAX_U32_DIGITS: usize = 10;

/// Configuration of a `nats` sink (a `[[sinks]]` entry with `type = "nats"`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL, or several separated by commas (`nats://host:4222`, `tls://…`).
    pub url: String,
    /// Subject template (see [`super::template`]); rendered per event.
    pub subject: String,
    /// Stream the subjects belong to. When set, probes check that it exists and
    /// publishes are refused by any other stream (`Nats-Expected-Stream`).
    pub stream: Option<String>,
    /// Create `stream` when it does not exist (an existing stream is left as it is).
    pub create_stream: bool,
    /// Subjects of a created stream.
    pub stream_subjects: Vec<String>,
    /// Duplicate window of a created stream, in seconds.
    pub duplicate_window: u64,
    /// User name, with `password`.
    pub user: Option<String>,
    /// Password, with `user`.
    pub password: Option<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// An nkey seed (`SU…`) to sign the server's challenge with.
    pub nkey: Option<String>,
    /// A `.creds` file (user JWT and nkey seed), as `nsc` writes it.
    pub credentials_file: Option<PathBuf>,
    /// Connect with TLS even when the URL says `nats://` (a `tls://` URL always does).
    pub tls: bool,
    /// PEM file of the certificates that may sign the server's (instead of the
    /// system's roots).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients (with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Bound on one commit's publishes and acknowledgements, in milliseconds.
    pub ack_timeout_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            subject: DEFAULT_SUBJECT.to_owned(),
            stream: None,
            create_stream: false,
            stream_subjects: vec![DEFAULT_STREAM_SUBJECT.to_owned()],
            duplicate_window: DEFAULT_DUPLICATE_WINDOW_SECS,
            user: None,
            password: None,
            token: None,
            nkey: None,
            credentials_file: None,
            tls: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            ack_timeout_ms: DEFAULT_ACK_TIMEOUT_MS,
        }
    }
}

/// Secrets (password, token, credentials in the URL) are never printed, so a
/// configuration can be logged as it is.
impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |value: &Option<String>| value.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsConfig")
            .field("url", &redact_url(&self.url))
            .field("subject", &self.subject)
            .field("stream", &self.stream)
            .field("create_stream", &self.create_stream)
            .field("stream_subjects", &self.stream_subjects)
            .field("duplicate_window", &self.duplicate_window)
            .field("user", &self.user)
            .field("password", &secret(&self.password))
            .field("token", &secret(&self.token))
            .field("nkey", &secret(&self.nkey))
            .field("credentials_file", &self.credentials_file)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("ack_timeout_ms", &self.ack_timeout_ms)
            .finish()
    }
}

impl NatsConfig {
    /// Checks what can be checked without a server.
    ///
    /// # Errors
    ///
    /// What is wrong, for the configuration error message.
    pub fn validate(&self) -> Result<(), String> {
        self.servers()?;
        let template = Template::parse(&self.subject)?;
        // Values are cleaned into single tokens, so only the template's literal
        // text can make a subject invalid: render with a stand-in for every value.
        let sample = template.render(
            &Delivery::default(),
            &DeliveryKey::new(None, ""),
            "events",
            Some(&EventMeta::default()),
            |_| "x".to_owned(),
        );
        check_subject(&sample).map_err(|reason| format!("subject {:?}: {reason}", self.subject))?;
        let longest = template.max_rendered_len(MAX_SUBJECT_TOKEN_BYTES);
        if longest > MAX_SUBJECT_BYTES {
            return Err(format!(
                "subject {:?} may render {longest} bytes (values up to {MAX_SUBJECT_TOKEN_BYTES} bytes each), over the {MAX_SUBJECT_BYTES} a NATS protocol line leaves; use fewer placeholders or less text",
                self.subject
            ));
        }
        if self.ack_timeout_ms == 0 {
            return Err("ack_timeout_ms must be more than 0".into());
        }
        if self.user.is_some() != self.password.is_some() {
            return Err("user and password go together".into());
        }
        self.check_credentials()?;
        self.check_tls_files()?;
        match &self.stream {
            Some(name) => check_stream_name(name)?,
            None if self.create_stream => {
                return Err("create_stream needs a stream name (stream = \"…\")".into());
            }
            None => {}
        }
        if self.create_stream {
            if self.stream_subjects.is_empty() {
                return Err("create_stream needs stream_subjects".into());
            }
            if self
                .stream_subjects
                .iter()
                .any(|subject| subject.trim().is_empty())
            {
                return Err("stream_subjects holds an empty subject".into());
            }
            if self.duplicate_window == 0 {
                return Err("duplicate_window must be more than 0 seconds".into());
            }
        }
        Ok(())
    }

    /// At most one way to authenticate, and a seed or `.creds` file that parses:
    /// the client would otherwise fail inside its connection task, where the only
    /// sign is a sink that never becomes ready.
    fn check_credentials(&self) -> Result<(), String> {
        let ways = [
            self.user.is_some(),
            self.token.is_some(),
            self.nkey.is_some(),
            self.credentials_file.is_some(),
        ];
        if ways.iter().filter(|&&way| way).count() > 1 {
            return Err("choose one of user/password, token, nkey and credentials_file".into());
        }
        if let Some(seed) = &self.nkey {
            // The seed itself is never printed.
            nkeys::KeyPair::from_seed(seed.trim())
                .map_err(|_| "nkey is not an nkey seed (it starts with SU)".to_owned())?;
        }
        if let Some(path) = &self.credentials_file {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("credentials_file {}: {error}", path.display()))?;
            ConnectOptions::new()
                .credentials(&text)
                .map_err(|error| format!("credentials_file {}: {error}", path.display()))?;
        }
        Ok(())
    }

    /// The TLS files exist and hold what they should, so a typo is a configuration
    /// error at startup rather than a handshake that fails on every reconnect.
    fn check_tls_files(&self) -> Result<(), String> {
        if let Some(path) = &self.tls_ca_file {
            crate::tls::pem_certificates(path).map_err(|error| format!("tls_ca_file {error}"))?;
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => {
                crate::tls::pem_certificates(cert)
                    .map_err(|error| format!("tls_cert_file {error}"))?;
                crate::tls::pem_private_key(key)
                    .map(drop)
                    .map_err(|error| format!("tls_key_file {error}"))?;
            }
            (None, None) => {}
            _ => return Err("tls_cert_file and tls_key_file go together".into()),
        }
        Ok(())
    }

    /// Whether the client must use TLS: asked for, or implied by a CA or client
    /// certificate (which would otherwise be silently unused on a `nats://` URL).
    fn wants_tls(&self) -> bool {
        self.tls || self.tls_ca_file.is_some() || self.tls_cert_file.is_some()
    }

    /// The server addresses in `url`.
    fn servers(&self) -> Result<Vec<ServerAddr>, String> {
        let servers = self
            .url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                url.parse::<ServerAddr>()
                    .map_err(|error| format!("url {:?}: {error}", redact_url(url)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if servers.is_empty() {
            return Err("url is empty".into());
        }
        Ok(servers)
    }

    fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "taken by value to be passed as map_err(invalid) on String errors"
)]
fn invalid(reason: String) -> SinkError {
    SinkError::Config(format!("nats: {reason}"))
}

impl super::SinkSettings for NatsConfig {
    const LEGACY_UNIT_KEYS: &'static [LegacyUnitKey] = &[
        LegacyUnitKey {
            new: "ack_timeout",
            old: "ack_timeout_ms",
            unit: LegacyUnit::Milliseconds,
        },
        LegacyUnitKey {
            new: "duplicate_window",
            old: "duplicate_window",
            unit: LegacyUnit::Seconds,
        },
    ];

    fn check(&self) -> Result<(), String> {
        self.validate()
    }
}

/// Publishes batches to NATS JetStream (see the module documentation).
pub struct NatsSink {
    config: NatsConfig,
    subject: Template,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// `host:port` of each server, for logs and errors (never credentials).
    servers: Arc<str>,
    /// Whether the configured stream is known to exist (created or found), so
    /// commits need not ask again.
    stream_ready: AtomicBool,
    /// The configured stream's `max_msg_size` as last read, `usize::MAX` when it has
    /// none (or no stream is configured).
    stream_max_message: AtomicUsize,
    /// Counts split events and hashed subject tokens.
    reshaped: ReshapeCounter,
}

impl fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("servers", &self.servers)
            .field("subject", &self.config.subject)
            .field("stream", &self.config.stream)
            .finish_non_exhaustive()
    }
}

/// A publish awaiting its acknowledgement.
struct PendingAck {
    subject: Subject,
    ack: PublishAckFuture,
}

impl NatsSink {
    /// Starts the client, waits a moment for it to connect and, when configured,
    /// creates or checks the stream. A server that is down is not an error:
    /// the client keeps connecting in the background, and the stream is created by
    /// the first commit or probe that reaches it.
    ///
    /// # Errors
    ///
    /// [`SinkError::Config`] when the configuration is invalid.
    pub async fn connect(config: NatsConfig) -> Result<Self, SinkError> {
        config.validate().map_err(invalid)?;
        Self::open(config).await
    }

    /// [`Self::connect`] for settings already checked (by [`NatsConfig::validate`],
    /// when the configuration was read).
    ///
    /// # Errors
    ///
    /// [`SinkError::Config`] when the client refuses the configuration.
    pub async fn open(config: NatsConfig) -> Result<Self, SinkError> {
        crate::tls::install_crypto_provider();
        let subject = Template::parse(&config.subject).map_err(invalid)?;
        let addresses = config.servers().map_err(invalid)?;
        let servers: Arc<str> = addresses
            .iter()
            .map(|address| format!("{}:{}", address.host(), address.port()))
            .collect::<Vec<_>>()
            .join(",")
            .into();

        let events_servers = Arc::clone(&servers);
        let mut options = ConnectOptions::new()
            .name(CLIENT_NAME)
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let servers = Arc::clone(&events_servers);
                async move { log_event(&servers, &event) }
            });
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if let Some(seed) = &config.nkey {
            options = options.nkey(seed.trim().to_owned());
        }
        if let Some(path) = &config.credentials_file {
            options = options.credentials_file(path).await.map_err(|error| {
                invalid(format!("credentials_file {}: {error}", path.display()))
            })?;
        }
        if config.wants_tls() {
            options = options.require_tls(true);
        }
        if let Some(path) = &config.tls_ca_file {
            options = options.add_root_certificates(path.clone());
        }
        if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let client = options
            .connect(addresses)
            .await
            .map_err(|error| invalid(error.to_string()))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(config.ack_timeout())
            // Acknowledgements of a failed commit are dropped unawaited; they give
            // their slot back within the same bound.
            .ack_timeout(config.ack_timeout())
            .max_ack_inflight(MAX_PENDING_ACKS)
            // Fail instead of waiting for a slot: a commit then awaits its own
            // oldest acknowledgement, which frees one (see `publish_all`).
            .backpressure_on_inflight(false)
            .build(client.clone());
        let sink = Self {
            config,
            subject,
            client,
            jetstream,
            servers,
            stream_ready: AtomicBool::new(false),
            stream_max_message: AtomicUsize::new(usize::MAX),
            reshaped: ReshapeCounter::default(),
        };
        // Wait a moment for the first connection, so that the first readiness probe
        // does not find a sink that is merely still connecting.
        if !sink.wait_connected(STARTUP_CONNECT_WAIT).await {
            tracing::warn!(servers = %sink.servers, "NATS is not reachable yet; connecting in the background.");
            return Ok(sink);
        }
        if let Some(stream) = &sink.config.stream {
            match tokio::time::timeout(PROBE_TIMEOUT, sink.ensure_stream()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(servers = %sink.servers, %stream, %error, "NATS stream is not ready; commits fail until it is.");
                }
                Err(_) => {
                    tracing::warn!(servers = %sink.servers, %stream, "NATS did not answer about the stream; asking again on the first commit.");
                }
            }
        }
        Ok(sink)
    }

    /// Counts this sink's split events and hashed subject tokens in `metrics`, under
    /// the sink's configured `name`.
    #[must_use]
    pub fn with_metrics(mut self, name: &str, metrics: &Metrics) -> Self {
        self.reshaped = ReshapeCounter::new(metrics, name, "nats");
        self
    }

    /// Publishes every event and dead letter of the batch and waits until JetStream
    /// has stored each one (a message JetStream reports as a duplicate was stored
    /// earlier, which is as good).
    ///
    /// # Errors
    ///
    /// [`SinkError::Unavailable`] when the server is unreachable, refuses a message or
    /// does not acknowledge them all within `ack_timeout_ms`; [`SinkError::Write`]
    /// when an event is larger than the server accepts. Messages already stored stay
    /// stored; the `Nats-Msg-Id` header keeps Firehose's retry from storing them
    /// twice.
    pub async fn commit(&self, batch: &SinkBatch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Fail fast while disconnected: publishes would only queue in the client
        // until the timeout, and reach the server after we had answered.
        self.require_connected()?;
        // One bound for the whole commit, stream check included.
        let started = Instant::now();
        let deadline = started + self.config.ack_timeout();
        if self.config.stream.is_some() && !self.stream_ready.load(Ordering::Acquire) {
            tokio::time::timeout_at(deadline, self.ensure_stream())
                .await
                .map_err(|_| self.unavailable("no answer about the stream"))??;
        }
        let duplicates = self.publish_all(batch, deadline).await?;
        tracing::debug!(
            servers = %self.servers,
            request_id = %batch.delivery.request_id,
            messages = batch.len(),
            duplicates,
            elapsed_ms = started.elapsed().as_millis(),
            "Batch stored in NATS JetStream."
        );
        Ok(())
    }

    /// Checks within 2 seconds that the server answers: that the stream exists when
    /// one is configured (creating it when `create_stream` is set), else that the
    /// account has JetStream.
    ///
    /// # Errors
    ///
    /// [`SinkError::Unavailable`] when it does not.
    pub async fn probe(&self) -> Result<(), SinkError> {
        self.require_connected()?;
        let round_trip = async {
            if self.config.stream.is_some() {
                self.ensure_stream().await
            } else {
                self.account_info().await
            }
        };
        tokio::time::timeout(PROBE_TIMEOUT, round_trip)
            .await
            .map_err(|_| self.unavailable(format!("no answer within {PROBE_TIMEOUT:?}")))?
    }

    /// Publishes the batch with pipelining: every message is sent before its
    /// acknowledgement is awaited, up to [`MAX_PENDING_ACKS_PER_COMMIT`] at a time.
    /// An event too large for one message is sent as parts (see the module
    /// documentation). Returns how many messages JetStream reported as duplicates.
    async fn publish_all(&self, batch: &SinkBatch, deadline: Instant) -> Result<usize, SinkError> {
        let mut pending: VecDeque<PendingAck> = VecDeque::new();
        let mut duplicates = 0;
        let mut split = 0;
        let hashed = Cell::new(0);
        let limit = self.message_limit();
        for (table, lines) in batch.tables() {
            for (meta, payload) in lines.iter_shared() {
                let subject = Subject::from(self.subject_of(batch, table, meta, &hashed));
                let id = message_id(&batch.dedup_key, table, meta);
                let whole = headers_wire_len(&self.base_headers(&id));
                if whole.saturating_add(payload.len()) <= limit {
                    let make = || self.message(payload.clone(), &id);
                    duplicates += self.send(&subject, make, &mut pending, deadline).await?;
                    continue;
                }
                let part_bytes = self.part_bytes(&id, limit, &subject)?;
                let count = payload.len().div_ceil(part_bytes);
                split += 1;
                for (index, start) in (0..payload.len()).step_by(part_bytes).enumerate() {
                    let slice = payload.slice(start..(start + part_bytes).min(payload.len()));
                    let part_id = format!("{id}:{part_bytes}:{index}");
                    let make = || {
                        self.message(slice.clone(), &part_id)
                            .header(HEADER_PART, index.to_string())
                            .header(HEADER_PARTS, count.to_string())
                            .header(HEADER_EVENT_ID, id.as_str())
                    };
                    duplicates += self.send(&subject, make, &mut pending, deadline).await?;
                }
            }
        }
        while let Some(oldest) = pending.pop_front() {
            duplicates += usize::from(self.await_ack(oldest, deadline).await?);
        }
        self.reshaped.add(RESHAPE_SPLIT, split);
        self.reshaped.add(RESHAPE_HASHED_NAME, hashed.get());
        Ok(duplicates)
    }

    /// The event's subject, with over-long values replaced by their digest (counted
    /// in `hashed`).
    fn subject_of(
        &self,
        batch: &SinkBatch,
        table: &str,
        meta: &EventMeta,
        hashed: &Cell<u64>,
    ) -> String {
        self.subject.render(
            &batch.delivery,
            &batch.dedup_key,
            table,
            Some(meta),
            |value| {
                let (token, digest) = token_or_digest(value);
                hashed.set(hashed.get() + u64::from(digest));
                token
            },
        )
    }

    /// The largest message (headers and payload) the server and the stream take.
    fn message_limit(&self) -> usize {
        self.client
            .max_payload()
            .min(self.stream_max_message.load(Ordering::Acquire))
    }

    /// Payload bytes of each part of the event `id`, so that a part with its
    /// headers fits in `limit`.
    fn part_bytes(&self, id: &str, limit: usize, subject: &Subject) -> Result<usize, SinkError> {
        let mut headers = self.base_headers(id);
        // The largest a part's headers can be: its id and the numbers at their
        // longest.
        let longest_number = "9".repeat(MAX_U32_DIGITS);
        let longest_part_id = format!("{id}:{longest_number}:{longest_number}");
        headers[0].1 = &longest_part_id;
        headers.extend([
            (HEADER_PART, longest_number.as_str()),
            (HEADER_PARTS, longest_number.as_str()),
            (HEADER_EVENT_ID, id),
        ]);
        let room = limit.saturating_sub(headers_wire_len(&headers));
        if room < MIN_PART_BYTES {
            // Retrying cannot help: the server's limit leaves no room for data.
            return Err(SinkError::Write(format!(
                "nats {}: subject {subject}: the server takes messages of at most {limit} bytes, too few to carry an event in parts",
                self.servers
            )));
        }
        Ok(room)
    }

    /// The headers every message of the event `id` carries, as name and value.
    fn base_headers<'a>(&'a self, id: &'a str) -> Vec<(&'static str, &'a str)> {
        let mut headers = vec![(HEADER_MSG_ID, id)];
        if let Some(stream) = &self.config.stream {
            headers.push((HEADER_EXPECTED_STREAM, stream.as_str()));
        }
        headers
    }

    /// A message with `payload`, the id `id` and the expected stream.
    fn message(&self, payload: Bytes, id: &str) -> PublishMessage {
        let mut message = PublishMessage::build().payload(payload).message_id(id);
        if let Some(stream) = &self.config.stream {
            message = message.expected_stream(stream);
        }
        message
    }

    /// Sends one message (`make` builds it again when it must be retried) and
    /// queues its acknowledgement; returns how many duplicates the acknowledgements
    /// awaited to free a slot reported.
    async fn send(
        &self,
        subject: &Subject,
        make: impl Fn() -> PublishMessage,
        pending: &mut VecDeque<PendingAck>,
        deadline: Instant,
    ) -> Result<usize, SinkError> {
        let mut duplicates = 0;
        if pending.len() >= MAX_PENDING_ACKS_PER_COMMIT
            && let Some(oldest) = pending.pop_front()
        {
            duplicates += usize::from(self.await_ack(oldest, deadline).await?);
        }
        loop {
            let sent = tokio::time::timeout_at(
                deadline,
                self.jetstream.send_publish(subject.clone(), make()),
            )
            .await
            .map_err(|_| self.unavailable(format!("subject {subject}: not sent in time")))?;
            match sent {
                Ok(ack) => {
                    pending.push_back(PendingAck {
                        subject: subject.clone(),
                        ack,
                    });
                    return Ok(duplicates);
                }
                Err(error) if error.kind() == PublishErrorKind::MaxAckPending => {
                    // Other commits hold every slot: free one of ours, or wait for
                    // theirs.
                    match pending.pop_front() {
                        Some(oldest) => {
                            duplicates += usize::from(self.await_ack(oldest, deadline).await?);
                        }
                        None if Instant::now() + ACK_SLOT_WAIT < deadline => {
                            tokio::time::sleep(ACK_SLOT_WAIT).await;
                        }
                        None => {
                            return Err(
                                self.unavailable(format!("subject {subject}: not sent in time"))
                            );
                        }
                    }
                }
                Err(error) => {
                    // Including a payload over the limit, which can only happen
                    // when the limit shrank under us (a reconnect to another
                    // server): the retry splits by the new one.
                    return Err(self.unavailable(format!("subject {subject}: {error}")));
                }
            }
        }
    }

    /// Waits for one acknowledgement; returns whether it reports a duplicate.
    async fn await_ack(&self, pending: PendingAck, deadline: Instant) -> Result<bool, SinkError> {
        let PendingAck { subject, ack } = pending;
        match tokio::time::timeout_at(deadline, ack).await {
            Ok(Ok(ack)) => Ok(ack.duplicate),
            Ok(Err(error)) => {
                // Perhaps the stream was deleted, or its limits changed: read it
                // (or create it) again before the next commit.
                self.stream_ready.store(false, Ordering::Release);
                Err(self.unavailable(format!("subject {subject}: {error}")))
            }
            Err(_) => Err(self.unavailable(format!(
                "subject {subject}: not acknowledged within {} ms",
                self.config.ack_timeout_ms
            ))),
        }
    }

    /// Asks for the account's JetStream information (`$JS.API.INFO`). The answer is
    /// read as plain JSON rather than async-nats's typed `Account`, whose newer
    /// fields older servers (2.9) do not send: only "answered without an error"
    /// matters here.
    async fn account_info(&self) -> Result<(), SinkError> {
        let answer: Response<serde_json::Value> = self
            .jetstream
            .request("INFO", &serde_json::json!({}))
            .await
            .map_err(|error| self.unavailable(format!("JetStream account info: {error}")))?;
        match answer {
            Response::Ok(_) => Ok(()),
            Response::Err { error } => {
                Err(self.unavailable(format!("JetStream account info: {error}")))
            }
        }
    }

    /// Creates the configured stream if asked to and it is missing, or checks that it
    /// exists.
    async fn ensure_stream(&self) -> Result<(), SinkError> {
        let Some(name) = &self.config.stream else {
            return Ok(());
        };
        let found = if self.config.create_stream {
            let config = stream::Config {
                name: name.clone(),
                subjects: self.config.stream_subjects.clone(),
                duplicate_window: Duration::from_secs(self.config.duplicate_window),
                ..stream::Config::default()
            };
            self.jetstream
                .get_or_create_stream(config)
                .await
                .map_err(|error| self.unavailable(format!("stream {name}: {error}")))
        } else {
            self.jetstream
                .get_stream(name)
                .await
                .map_err(|error| self.unavailable(format!("stream {name}: {error}")))
        };
        let found = found.map(|stream| {
            // `max_msg_size` is -1 (or 0) when the stream sets no limit.
            let limit = usize::try_from(stream.cached_info().config.max_message_size)
                .ok()
                .filter(|limit| *limit > 0)
                .unwrap_or(usize::MAX);
            self.stream_max_message.store(limit, Ordering::Release);
        });
        if found.is_ok() && !self.stream_ready.swap(true, Ordering::AcqRel) {
            tracing::info!(servers = %self.servers, stream = %name, "NATS stream is ready.");
        }
        found
    }

    fn require_connected(&self) -> Result<(), SinkError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            State::Pending => Err(self.unavailable("not connected yet")),
            State::Disconnected => Err(self.unavailable("disconnected; reconnecting")),
        }
    }

    /// Waits up to `limit` for the client to connect; returns whether it did.
    async fn wait_connected(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.client.connection_state() == State::Connected {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(STARTUP_POLL).await;
        }
    }

    fn unavailable(&self, what: impl fmt::Display) -> SinkError {
        SinkError::Unavailable(format!("nats {}: {what}", self.servers))
    }
}

fn log_event(servers: &str, event: &Event) {
    match event {
        Event::Connected => tracing::info!(%servers, "Connected to NATS."),
        Event::Disconnected => {
            tracing::warn!(%servers, "Lost the NATS connection; reconnecting in the background.")
        }
        Event::SlowConsumer(_) => {}
        other => tracing::warn!(%servers, event = %other, "NATS connection event."),
    }
}

/// Makes a value one subject token: whitespace (which would split the protocol
/// line), `.` (the token separator) and `*`, `>` (wildcards) become `_`, and an empty
/// value becomes `none`.
#[must_use]
pub fn clean_token(value: &str) -> String {
    if value.is_empty() {
        return ABSENT.to_owned();
    }
    value
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// A value as one subject token: [`clean_token`], or, when that is longer than
/// [`MAX_SUBJECT_TOKEN_BYTES`], [`HASHED_TOKEN_MARK`] and the value's
/// [`digest_hex`] (33 bytes).
#[must_use]
pub fn subject_token(value: &str) -> String {
    token_or_digest(value).0
}

/// [`subject_token`], and whether it is a digest.
fn token_or_digest(value: &str) -> (String, bool) {
    let token = clean_token(value);
    if token.len() <= MAX_SUBJECT_TOKEN_BYTES {
        return (token, false);
    }
    let digest = format!("{HASHED_TOKEN_MARK}{}", digest_hex(value.as_bytes()));
    (digest, true)
}

/// The `Nats-Msg-Id` of an event: the same for every retry of its delivery and
/// different for every other event. Every field has a fixed form (32 hex digits,
/// a table name of letters and `_`, two decimal numbers), so the `:`s between them
/// cannot be confused with the fields' own text.
#[must_use]
pub fn message_id(key: &DeliveryKey, table: &str, meta: &EventMeta) -> String {
    format!(
        "{}:{table}:{}:{}",
        key.to_hex(),
        meta.record_index,
        meta.event_index
    )
}

/// Bytes the headers take on the wire, as the client writes them: `NATS/1.0`,
/// one `Name: value` line each, and an empty line.
fn headers_wire_len(headers: &[(&str, &str)]) -> usize {
    const LINE_END: usize = 2;
    let version = "NATS/1.0".len() + LINE_END;
    let lines: usize = headers
        .iter()
        .map(|(name, value)| name.len() + ": ".len() + value.len() + LINE_END)
        .sum();
    version + lines + LINE_END
}

/// Whether `subject` is one a message can be published to: non-empty tokens, no
/// whitespace, no wildcard.
fn check_subject(subject: &str) -> Result<(), String> {
    for token in subject.split('.') {
        if token.is_empty() {
            return Err("an empty token (leading, trailing or double '.')".into());
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("whitespace".into());
        }
        if token == "*" || token == ">" {
            return Err("a wildcard; messages are published to one subject".into());
        }
    }
    Ok(())
}

/// Stream names cannot hold whitespace, `.`, wildcards or path separators (the
/// server uses the name as a directory name).
fn check_stream_name(name: &str) -> Result<(), String> {
    let bad =
        |c: char| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\');
    if name.is_empty() || name.chars().any(bad) {
        return Err(format!(
            "stream name {name:?} must be non-empty, without whitespace, '.', '*', '>', '/' or '\\'"
        ));
    }
    Ok(())
}

/// `url` with any user name, password or token taken out of it, for logs.
fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|server| match (server.find("://"), server.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://<redacted>@{}", &server[..scheme], &server[at + 1..])
            }
            (None, Some(at)) => format!("<redacted>@{}", &server[at + 1..]),
            _ => server.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;
