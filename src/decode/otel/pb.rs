//! The protobuf messages Metric Streams sends, as the union of OpenTelemetry 0.7.0 and
//! 1.0.0. Fields Metric Streams does not use (gauges, sums, histograms, scope names,
//! exemplars) are left out; protobuf skips them when decoding.

/// `collector.metrics.v1.ExportMetricsServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ExportMetricsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub(super) resource_metrics: Vec<ResourceMetrics>,
}

/// `metrics.v1.ResourceMetrics`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ResourceMetrics {
    #[prost(message, optional, tag = "1")]
    pub(super) resource: Option<Resource>,
    /// `scope_metrics` in 1.0, `instrumentation_library_metrics` in 0.7.
    #[prost(message, repeated, tag = "2")]
    pub(super) scope_metrics: Vec<ScopeMetrics>,
}

/// `resource.v1.Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub(super) attributes: Vec<KeyValue>,
}

/// `ScopeMetrics` in 1.0, `InstrumentationLibraryMetrics` in 0.7; field 1, the
/// scope or library, is empty in Metric Streams and not declared.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ScopeMetrics {
    #[prost(message, repeated, tag = "2")]
    pub(super) metrics: Vec<Metric>,
}

/// `metrics.v1.Metric`, with only the summary among its data fields.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Metric {
    #[prost(string, tag = "1")]
    pub(super) name: String,
    #[prost(string, tag = "2")]
    pub(super) description: String,
    #[prost(string, tag = "3")]
    pub(super) unit: String,
    /// `summary` in 1.0, `double_summary` in 0.7.
    #[prost(message, optional, tag = "11")]
    pub(super) summary: Option<Summary>,
}

/// `Summary` in 1.0, `DoubleSummary` in 0.7.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub(super) data_points: Vec<SummaryDataPoint>,
}

/// `SummaryDataPoint` in 1.0, `DoubleSummaryDataPoint` in 0.7.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SummaryDataPoint {
    /// 0.7 only (reserved in 1.0).
    #[prost(message, repeated, tag = "1")]
    pub(super) labels: Vec<StringKeyValue>,
    #[prost(fixed64, tag = "2")]
    pub(super) start_time_unix_nano: u64,
    #[prost(fixed64, tag = "3")]
    pub(super) time_unix_nano: u64,
    #[prost(fixed64, tag = "4")]
    pub(super) count: u64,
    #[prost(double, tag = "5")]
    pub(super) sum: f64,
    #[prost(message, repeated, tag = "6")]
    pub(super) quantile_values: Vec<ValueAtQuantile>,
    /// 1.0 only.
    #[prost(message, repeated, tag = "7")]
    pub(super) attributes: Vec<KeyValue>,
    /// 1.0 only.
    #[prost(uint32, tag = "8")]
    pub(super) flags: u32,
}

/// `SummaryDataPoint.ValueAtQuantile`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ValueAtQuantile {
    #[prost(double, tag = "1")]
    pub(super) quantile: f64,
    #[prost(double, tag = "2")]
    pub(super) value: f64,
}

/// `common.v1.StringKeyValue` (0.7 only).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct StringKeyValue {
    #[prost(string, tag = "1")]
    pub(super) key: String,
    #[prost(string, tag = "2")]
    pub(super) value: String,
}

/// `common.v1.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct KeyValue {
    #[prost(string, tag = "1")]
    pub(super) key: String,
    #[prost(message, optional, tag = "2")]
    pub(super) value: Option<AnyValue>,
}

/// `common.v1.AnyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub(super) value: Option<Value>,
}

/// The one value an `AnyValue` holds (its `value` oneof).
#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum Value {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Array(ArrayValue),
    #[prost(message, tag = "6")]
    Kvlist(KeyValueList),
    #[prost(bytes = "vec", tag = "7")]
    Bytes(Vec<u8>),
}

/// `common.v1.ArrayValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub(super) values: Vec<AnyValue>,
}

/// `common.v1.KeyValueList`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub(super) values: Vec<KeyValue>,
}
