//! Just enough protobuf encoding to write Metric Streams' OpenTelemetry 1.0 records:
//! varints, tags, fixed64/double fields and length-delimited (nested) fields.
//!
//! proto3 leaves out fields holding their default value (0, 0.0, empty); the writers
//! of scalar fields here do the same, like CloudWatch's real encoder does.

/// Wire type of varint fields.
pub const VARINT: u8 = 0;
/// Wire type of fixed64 and double fields.
pub const FIXED64: u8 = 1;
/// Wire type of length-delimited fields (strings, bytes, nested messages).
pub const LEN: u8 = 2;

/// Appends `value` as a base-128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a field tag.
pub fn put_tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

/// Appends a length-delimited field (always written, even when empty: used for
/// nested messages, whose presence matters).
pub fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a string field, left out when empty.
pub fn put_string(out: &mut Vec<u8>, field: u32, text: &str) {
    if !text.is_empty() {
        put_bytes(out, field, text.as_bytes());
    }
}

/// Appends a fixed64 field, left out when 0.
pub fn put_fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        put_tag(out, field, FIXED64);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Appends a double field, left out when 0.0.
pub fn put_double(out: &mut Vec<u8>, field: u32, value: f64) {
    if value != 0.0 {
        put_tag(out, field, FIXED64);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Appends a nested message field whose content `build` writes.
pub fn put_message(out: &mut Vec<u8>, field: u32, build: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    build(&mut inner);
    put_bytes(out, field, &inner);
}

/// Appends `message` prefixed by its length as a varint: the framing of Metric Streams'
/// OpenTelemetry records (Java's `writeDelimitedTo`).
pub fn put_delimited(out: &mut Vec<u8>, message: &[u8]) {
    put_varint(out, message.len() as u64);
    out.extend_from_slice(message);
}

/// A minimal protobuf reader, for the tests' checks of what the encoder wrote.
#[cfg(test)]
pub(crate) mod reader {
    /// One decoded field value.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub(crate) enum Value<'a> {
        Varint(u64),
        Fixed64(u64),
        Bytes(&'a [u8]),
        Fixed32(u32),
    }

    impl<'a> Value<'a> {
        pub(crate) fn bytes(self) -> &'a [u8] {
            match self {
                Value::Bytes(bytes) => bytes,
                other => panic!("expected a length-delimited field, got {other:?}"),
            }
        }

        pub(crate) fn text(self) -> &'a str {
            std::str::from_utf8(self.bytes()).expect("UTF-8 string field")
        }

        pub(crate) fn fixed64(self) -> u64 {
            match self {
                Value::Fixed64(value) => value,
                other => panic!("expected a fixed64 field, got {other:?}"),
            }
        }

        pub(crate) fn double(self) -> f64 {
            f64::from_bits(self.fixed64())
        }
    }

    /// Reads a varint at `*pos`, advancing it; `None` when truncated or over 10 bytes.
    pub(crate) fn varint(data: &[u8], pos: &mut usize) -> Option<u64> {
        let mut value = 0_u64;
        for shift in (0..70).step_by(7) {
            let byte = *data.get(*pos)?;
            *pos += 1;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// All fields of one message, in order; panics on malformed input.
    pub(crate) fn fields(data: &[u8]) -> Vec<(u32, Value<'_>)> {
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < data.len() {
            let tag = varint(data, &mut pos).expect("tag");
            let field = u32::try_from(tag >> 3).expect("field number");
            assert!(field > 0, "field number 0");
            let value = match tag & 7 {
                0 => Value::Varint(varint(data, &mut pos).expect("varint")),
                1 => {
                    let bytes = data.get(pos..pos + 8).expect("fixed64 in bounds");
                    pos += 8;
                    Value::Fixed64(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
                }
                2 => {
                    let len = usize::try_from(varint(data, &mut pos).expect("length"))
                        .expect("length fits");
                    let bytes = data.get(pos..pos + len).expect("length in bounds");
                    pos += len;
                    Value::Bytes(bytes)
                }
                5 => {
                    let bytes = data.get(pos..pos + 4).expect("fixed32 in bounds");
                    pos += 4;
                    Value::Fixed32(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
                }
                other => panic!("unsupported wire type {other}"),
            };
            out.push((field, value));
        }
        out
    }

    /// The values of field `number`, in order.
    pub(crate) fn all<'a>(fields: &[(u32, Value<'a>)], number: u32) -> Vec<Value<'a>> {
        fields
            .iter()
            .filter(|(field, _)| *field == number)
            .map(|(_, value)| *value)
            .collect()
    }

    /// The single value of field `number`.
    pub(crate) fn one<'a>(fields: &[(u32, Value<'a>)], number: u32) -> Value<'a> {
        let values = all(fields, number);
        assert_eq!(values.len(), 1, "field {number} once in {fields:?}");
        values[0]
    }

    /// Splits a record into its varint-length-delimited messages, checking the framing
    /// covers the record exactly.
    pub(crate) fn delimited(record: &[u8]) -> Vec<&[u8]> {
        let mut pos = 0;
        let mut messages = Vec::new();
        while pos < record.len() {
            let len = usize::try_from(varint(record, &mut pos).expect("length prefix"))
                .expect("length fits");
            let message = record
                .get(pos..pos + len)
                .expect("message within the record");
            pos += len;
            messages.push(message);
        }
        assert_eq!(pos, record.len());
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::reader::{Value, fields, varint};
    use super::*;

    #[test]
    fn varints_round_trip() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut pos = 0;
            assert_eq!(varint(&out, &mut pos), Some(value));
            assert_eq!(pos, out.len());
        }
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xAC, 0x02]);
        assert_eq!(varint(&[0x80], &mut 0), None, "truncated varint");
    }

    #[test]
    fn fields_and_defaults() {
        let mut out = Vec::new();
        put_string(&mut out, 1, "name");
        put_string(&mut out, 2, "");
        put_fixed64(&mut out, 3, 0);
        put_fixed64(&mut out, 4, 7);
        put_double(&mut out, 5, 0.0);
        put_double(&mut out, 6, 1.5);
        put_message(&mut out, 7, |inner| put_string(inner, 1, "x"));
        put_message(&mut out, 8, |_| {});
        assert_eq!(
            fields(&out),
            [
                (1, Value::Bytes(b"name")),
                (4, Value::Fixed64(7)),
                (6, Value::Fixed64(1.5_f64.to_bits())),
                (7, Value::Bytes(&[0x0A, 0x01, b'x'])),
                (8, Value::Bytes(&[])),
            ]
        );
    }
}
