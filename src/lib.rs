//! Hydrant: a receiver for Amazon Data Firehose HTTP endpoint deliveries.
//!
//! A delivery travels through these modules, in order:
//!
//! - [`server`]: HTTP only. The ingest listener takes `POST` deliveries on any
//!   path, checks the access key ([`server::auth`]) and the headers, reads the
//!   body within the in-flight byte budget, hands it to [`ingest`] and maps the
//!   result to the reply, with statuses from one error enum ([`server::error`]).
//!   The admin listener serves metrics and health ([`server::health`]), and the
//!   series of each `prometheus` sink ([`sink::prometheus`]). Both run an
//!   accept loop ([`server::listener`]) that caps connections and times out slow
//!   clients; the ingest listener terminates TLS when configured, from files or
//!   ACME ([`server::tls`]).
//! - [`firehose`]: the protocol's model: header names, the request envelope, the
//!   reply, the source ARN and common attributes.
//! - [`admission`]: the in-flight byte budget every request reserves from.
//! - [`ingest`]: the pipeline apart from HTTP: inflate → envelope → decode (on the
//!   [`decode::DecodePool`], one slot per core) → route → fan-out, with a typed
//!   result.
//! - [`decode`]: base64 records into events, one file per payload format
//!   (CloudWatch Logs, Metric Streams JSON and OpenTelemetry, EventBridge, raw);
//!   [`glob`] matches the paths and stream names that choose a format.
//! - [`routing`]: which sinks each event goes to, and the split of a delivery's
//!   lines per sink.
//! - [`series`]: metric events as Prometheus samples, named as YACE,
//!   cloudwatch_exporter or the OpenTelemetry Collector name them, for the sinks
//!   that speak Prometheus.
//! - [`sink`]: where events go; [`sink::fanout`] commits a delivery to its sinks
//!   with retries and a breaker each; [`sink::file`] writes durable NDJSON segments
//!   and is the reason a 200 means "on disk".
//! - [`event`]: the data model: the event shapes and their NDJSON form (documented
//!   in `docs/events.md`), and the lines decoders write and sinks read
//!   ([`event::lines`]).
//! - Leaves: [`limits`] (every cap on untrusted input, and the only size-capped
//!   gunzip), [`metrics`] (Hydrant's own Prometheus metrics, a small recorder per
//!   stage), [`logging`] (log output that neither stalls nor panics when standard
//!   error is full or closed), [`clock`], [`glob`], [`units`] (every size and
//!   duration in the configuration), [`shutdown`], [`reload`] (SIGHUP and file
//!   changes that make the certificate and keys be read again), [`tls`] (the one
//!   TLS crypto backend of the ingest listener's HTTPS and every network sink's
//!   client).
//! - [`config`]: flags, environment and TOML, checked before anything starts;
//!   [`units`] reads every size and duration in them, into the value types of
//!   [`setting`]; [`app`]: the composition root that opens the sinks and wires
//!   the above together, for `main` and the tests alike.
//!
//! Dependencies point one way, down this list: `app`/`config` → `server` →
//! `ingest` → `decode`, `routing`, `sink` → `event` → the leaves (`setting`
//! among them). `firehose` and `admission` sit under `server` and `ingest`, which
//! both use them. `tests/architecture.rs` fails on any cycle between modules and
//! on a module that uses a layer above it.

pub mod admission;
pub mod app;
pub mod clock;
pub mod config;
pub mod decode;
pub mod event;
pub mod firehose;
pub mod glob;
pub mod ingest;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod routing;
pub mod series;
pub mod server;
pub mod setting;
pub mod shutdown;
pub mod sink;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod units;
