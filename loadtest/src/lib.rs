//! hydrant-loadtest: a load generator for Amazon Data Firehose HTTP endpoint receivers.
//!
//! It sends what Firehose sends (see `docs` of the Hydrant repository for the contract):
//! `POST` requests with the `X-Amz-Firehose-*` headers and a JSON body
//! `{"requestId", "timestamp", "records": [{"data": base64}]}`, one fresh request id per
//! delivery, kept across retries; it checks each answer as Firehose would, and reports
//! throughput and latency. Nothing in it is specific to Hydrant.
//!
//! - [`payload`] generates the pool of bodies before the run (CloudWatch Logs, Metric
//!   Streams JSON and OpenTelemetry, raw JSON);
//! - [`series`] spreads the metric data points of the pool evenly over `--series`
//!   series;
//! - [`body`] turns a pool entry and a request id into a request body without copying or
//!   re-compressing the records;
//! - [`run`] drives the connections (closed or open loop), retries and validation;
//! - [`report`] gathers the statistics and renders them.

pub mod body;
pub mod cli;
pub mod payload;
pub mod protobuf;
pub mod report;
pub mod rng;
pub mod run;
pub mod series;
pub mod units;

pub use cli::Args;
pub use report::Report;
pub use run::{Plan, execute, prepare};
