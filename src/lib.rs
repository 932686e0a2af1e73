//! Hydrant: a receiver for Amazon Data Firehose HTTP endpoint deliveries.
//!
//! A delivery travels through these modules, in order:
//!
//! - [`server`]: the HTTP contract. The ingest listener takes `POST` deliveries on
//!   any path ([`server::contract`] holds the protocol's headers and shapes), checks
//!   the access key ([`server::auth`]), admits the request against the in-flight
//!   byte budget ([`server::admission`]) and answers in Firehose's JSON shape,
//!   with statuses from one error enum ([`server::error`]). The admin listener
//!   serves metrics and health ([`server::health`]). Both run an accept loop
//!   ([`server::listener`]) that caps connections and times out slow clients.
//! - [`limits`]: every cap on untrusted input, and the only size-capped gunzip.
//! - [`decode`]: base64 records into events, one file per payload format
//!   (CloudWatch Logs, Metric Streams JSON and OpenTelemetry, EventBridge, raw);
//!   [`glob`] matches the paths and stream names that choose a format.
//! - [`routing`]: which sinks each event goes to, and the split of a delivery's
//!   lines per sink.
//! - [`event`]: the data model: the event shapes and their NDJSON form (documented
//!   in `docs/events.md`), and the lines decoders write and sinks read
//!   ([`event::lines`]).
//! - [`sink`]: where events go; [`sink::file`] writes durable NDJSON segments and is
//!   the reason a 200 means "on disk".
//! - [`metrics`]: Hydrant's own Prometheus metrics; [`logging`]: log output that
//!   neither stalls nor panics when standard error is full or closed.
//! - [`config`]: flags, environment and TOML, checked before anything starts;
//!   [`units`] reads every size and duration in them, into the value types of
//!   [`setting`].
//! - [`app`]: the composition root that wires the above together; [`shutdown`]
//!   tells it when to stop; [`clock`] holds wall-clock helpers; [`tls`] picks the
//!   one TLS crypto backend every network sink's client uses.
//!
//! Dependencies point one way, down this list's layers: `app`/`config` → `server` →
//! `decode`, `routing`, `sink` → `event` → the leaves (`limits`, `metrics`,
//! `logging`, `clock`, `glob`, `units`, `setting`). `tests/architecture.rs` fails on any cycle
//! between modules and on a leaf that uses a stage above it.

pub mod app;
pub mod clock;
pub mod config;
pub mod decode;
pub mod event;
pub mod glob;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod routing;
pub mod server;
pub mod setting;
pub mod shutdown;
pub mod sink;
#[cfg(test)]
mod testing;
#[cfg(any(feature = "s3", feature = "nats", feature = "kafka"))]
pub mod tls;
pub mod units;
