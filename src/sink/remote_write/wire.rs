//! The body of a Prometheus remote write 1.0 request: a `prometheus.WriteRequest`
//! protobuf message, compressed with snappy's block format (not its framing
//! format), as the specification requires
//! (<https://prometheus.io/docs/specs/prw/remote_write_spec/>).
//!
//! ```text
//! message WriteRequest { repeated TimeSeries timeseries = 1; }
//! message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! message Label        { string name = 1; string value = 2; }
//! message Sample       { double value = 1; int64 timestamp = 2; }
//! ```
//!
//! The messages are written by hand rather than built as structs and encoded: a
//! series' labels are encoded once, and those bytes are both the key that sorts and
//! groups the batch's samples and what the request carries. The specification asks
//! that labels be sorted by name with `__name__` among them, that no name repeat,
//! and that a series' samples be in time order; [`Series::group`] gives that.

use crate::series::Sample;

/// Label name of a series' metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// One series of a request: its labels, encoded, and its samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The `TimeSeries.labels` fields, encoded, `__name__` among them.
    pub labels: Vec<u8>,
    /// `(timestamp ms, value)`, by time, one per timestamp.
    pub samples: Vec<(i64, f64)>,
}

impl Series {
    /// Groups `samples` into series: one per distinct name and labels, sorted by
    /// their encoded labels, each series' samples sorted by time. Of two samples of
    /// one series at one time, the later in `samples` is kept (CloudWatch sends a
    /// period again when late data changed it), since a receiver refuses a second,
    /// different value for a time it has.
    #[must_use]
    pub fn group(samples: impl IntoIterator<Item = Sample>) -> Vec<Self> {
        let mut keyed: Vec<(Vec<u8>, i64, f64)> = samples
            .into_iter()
            .map(|sample| (labels(&sample), sample.timestamp_ms, sample.value))
            .collect();
        // Stable: equal keys and times keep the batch's order, so the last is the
        // latest.
        keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<Self> = Vec::new();
        for (key, timestamp, value) in keyed {
            match out.last_mut() {
                Some(series) if series.labels == key => match series.samples.last_mut() {
                    Some(last) if last.0 == timestamp => last.1 = value,
                    _ => series.samples.push((timestamp, value)),
                },
                _ => out.push(Self {
                    labels: key,
                    samples: vec![(timestamp, value)],
                }),
            }
        }
        out
    }

    /// Bytes of the encoded `TimeSeries` message, without its own tag and length.
    fn encoded_len(&self) -> usize {
        self.labels.len()
            + self
                .samples
                .iter()
                .map(|&s| field_len(sample_len(s)))
                .sum::<usize>()
    }
}

/// The `TimeSeries.labels` fields of `sample`: `__name__` and its labels, sorted by
/// name (the sample's labels are sorted and never hold `__name__`).
fn labels(sample: &Sample) -> Vec<u8> {
    let at = sample
        .labels
        .partition_point(|(name, _)| name.as_str() < METRIC_NAME_LABEL);
    let (before, after) = sample.labels.split_at(at);
    let name = (METRIC_NAME_LABEL, sample.name.as_str());
    let all = before
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(std::iter::once(name))
        .chain(after.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let mut out = Vec::with_capacity(sample.name.len() + 16 * (sample.labels.len() + 1) + 64);
    for (name, value) in all {
        let label_len = field_len(name.len()) + field_len(value.len());
        put_tag(&mut out, 1, LEN);
        put_varint(&mut out, label_len as u64);
        put_bytes(&mut out, 1, name.as_bytes());
        put_bytes(&mut out, 2, value.as_bytes());
    }
    out
}

/// Splits `series` into requests of at most `max_samples` samples, each series
/// whole (one with more samples than that makes a request of its own).
#[must_use]
pub fn requests(series: &[Series], max_samples: usize) -> Vec<&[Series]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut samples = 0;
    for (at, one) in series.iter().enumerate() {
        if samples > 0 && samples + one.samples.len() > max_samples {
            out.push(&series[start..at]);
            start = at;
            samples = 0;
        }
        samples += one.samples.len();
    }
    if start < series.len() {
        out.push(&series[start..]);
    }
    out
}

/// The `WriteRequest` message of `series`, uncompressed.
#[must_use]
pub fn write_request(series: &[Series]) -> Vec<u8> {
    let total: usize = series.iter().map(|s| field_len(s.encoded_len())).sum();
    let mut out = Vec::with_capacity(total);
    for one in series {
        put_tag(&mut out, 1, LEN);
        put_varint(&mut out, one.encoded_len() as u64);
        out.extend_from_slice(&one.labels);
        for &(timestamp, value) in &one.samples {
            put_tag(&mut out, 2, LEN);
            put_varint(&mut out, sample_len((timestamp, value)) as u64);
            put_tag(&mut out, 1, FIXED64);
            out.extend_from_slice(&value.to_le_bytes());
            put_tag(&mut out, 2, VARINT);
            // int64 is written as its two's complement, ten bytes when negative.
            put_varint(&mut out, timestamp as u64);
        }
    }
    out
}

/// The request body of `series`: [`write_request`] compressed with snappy.
#[must_use]
pub fn body(series: &[Series]) -> Vec<u8> {
    compress(&write_request(series))
}

/// `message` compressed with snappy's block format.
#[must_use]
pub fn compress(message: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(message)
        .expect("a request is far below snappy's 4 GiB input limit")
}

/// Bytes of an encoded `Sample` message.
fn sample_len((timestamp, _): (i64, f64)) -> usize {
    1 + 8 + 1 + varint_len(timestamp as u64)
}

/// Bytes of a length-delimited field (tag, length, content) of `len` content bytes.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn varint_len(value: u64) -> usize {
    // 7 bits a byte; 0 takes one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_tag(out: &mut Vec<u8>, field: u8, wire_type: u8) {
    out.push((field << 3) | wire_type);
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}
