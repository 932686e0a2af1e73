//! Request bodies assembled from parts, so that a fresh request id costs no copy of the
//! records and no re-serialisation or re-compression.
//!
//! A Firehose body is `{"requestId":"…","timestamp":…,"records":[…]}`. Only the short
//! head (`{"requestId":"<id>","timestamp":<ms>,"records":`) changes from one request to
//! the next; the records array and the closing brace (the *tail*) are built once per
//! pool entry and shared (`Bytes` is reference-counted). A request body is then the list
//! `[head, tail]`, written to the socket as is (hyper uses vectored writes).
//!
//! With `--gzip` the whole body must be one gzip stream containing the id, and
//! re-compressing megabytes per request would make the load generator, not the
//! receiver, the bottleneck. Instead the tail is deflated once, up front, as a raw
//! deflate stream of its own (no back-references before its start), and each request
//! gets a new gzip member assembled around it:
//!
//! ```text
//! gzip header (10 bytes)
//! stored deflate block, not final: 00, LEN, NLEN, head bytes   <- per request
//! pre-compressed deflate stream of the tail, ending in the final block   <- shared
//! gzip trailer: CRC-32 of head+tail, length of head+tail       <- per request
//! ```
//!
//! A stored block starts on a byte boundary and ends on one, so the pre-compressed
//! blocks can follow it unchanged; the trailer's CRC combines the head's CRC (≈100
//! bytes to hash) with the tail's, computed once (`crc32_combine`). The result is a
//! single, ordinary gzip member that any gunzip accepts, and per request the client does
//! ~100 bytes of work whatever the body size.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::Crc;
use hyper::body::{Body, Frame, SizeHint};

/// The gzip member header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1F, 0x8B, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xFF];

/// The part of a body that changes per request.
pub fn head(request_id: &str, timestamp_ms: u64) -> String {
    format!(r#"{{"requestId":"{request_id}","timestamp":{timestamp_ms},"records":"#)
}

/// A tail deflated once, ready to be wrapped into per-request gzip members.
#[derive(Debug)]
pub struct GzipTail {
    /// Raw deflate stream of the tail, ending with a final block.
    deflated: Bytes,
    /// CRC-32 (and length) of the uncompressed tail.
    crc: Crc,
}

impl GzipTail {
    /// Deflates `tail` (zlib level 6, the usual gzip default).
    pub fn new(tail: &[u8]) -> Self {
        use std::io::Write as _;
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        // Writing into a Vec cannot fail.
        let deflated = encoder
            .write_all(tail)
            .and_then(|()| encoder.finish())
            .unwrap_or_default();
        let mut crc = Crc::new();
        crc.update(tail);
        Self {
            deflated: Bytes::from(deflated),
            crc,
        }
    }

    /// Size of the compressed tail.
    pub fn deflated_len(&self) -> usize {
        self.deflated.len()
    }

    /// The three parts of a gzip body whose content is `head` followed by the tail.
    pub fn wrap(&self, head: &[u8]) -> [Bytes; 3] {
        // One stored block holds at most 65,535 bytes; heads are ~100.
        let len = u16::try_from(head.len()).unwrap_or(u16::MAX);
        let head = &head[..usize::from(len)];
        let mut first = Vec::with_capacity(GZIP_HEADER.len() + 5 + head.len());
        first.extend_from_slice(&GZIP_HEADER);
        first.push(0x00); // BFINAL = 0, BTYPE = 00 (stored), padding to the byte boundary.
        first.extend_from_slice(&len.to_le_bytes());
        first.extend_from_slice(&(!len).to_le_bytes());
        first.extend_from_slice(head);

        let mut crc = Crc::new();
        crc.update(head);
        crc.combine(&self.crc);
        // ISIZE is the length modulo 2^32; `amount` is exactly that.
        let mut trailer = Vec::with_capacity(8);
        trailer.extend_from_slice(&crc.sum().to_le_bytes());
        trailer.extend_from_slice(&crc.amount().to_le_bytes());
        [
            Bytes::from(first),
            self.deflated.clone(),
            Bytes::from(trailer),
        ]
    }
}

/// An HTTP body made of a few shared buffers, sent one after the other.
#[derive(Debug, Default)]
pub struct PartsBody {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl PartsBody {
    /// A body that is the concatenation of `parts`.
    pub fn new(parts: impl IntoIterator<Item = Bytes>) -> Self {
        let parts: VecDeque<Bytes> = parts.into_iter().filter(|part| !part.is_empty()).collect();
        let remaining = parts.iter().map(|part| part.len() as u64).sum();
        Self { parts, remaining }
    }

    /// Total length in bytes (what `Content-Length` says).
    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The body as one contiguous buffer (for tests and debugging; copies).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.remaining).unwrap_or(0));
        for part in &self.parts {
            out.extend_from_slice(part);
        }
        out
    }
}

impl Body for PartsBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.parts.pop_front().map(|part| {
            this.remaining -= part.len() as u64;
            Ok(Frame::data(part))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        // A single-member decoder: the body must be exactly one gzip member.
        let mut decoder = flate2::read::GzDecoder::new(data);
        let mut out = Vec::new();
        decoder.read_to_end(&mut out).expect("valid gzip");
        out
    }

    #[test]
    fn gzip_wrapping_yields_one_valid_member_per_head() {
        let tail: Vec<u8> = (0..200_000_u32)
            .flat_map(|n| format!("{{\"data\":\"{n:x}\"}},").into_bytes())
            .chain(*b"]}")
            .collect();
        let gzip_tail = GzipTail::new(&tail);
        assert!(gzip_tail.deflated_len() < tail.len() / 3);
        for (id, ts) in [
            ("aaaa-1", 1_u64),
            ("another-id-of-other-length", 1_763_719_200_000),
        ] {
            let head = head(id, ts);
            let body = PartsBody::new(gzip_tail.wrap(head.as_bytes())).to_vec();
            let plain = gunzip(&body);
            assert_eq!(&plain[..head.len()], head.as_bytes());
            assert_eq!(&plain[head.len()..], &tail[..]);
        }
    }

    #[test]
    fn parts_body_reports_its_exact_length() {
        let body = PartsBody::new([
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
        ]);
        assert_eq!(body.len(), 5);
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.to_vec(), b"abcde");
        assert!(!body.is_end_stream());
        assert!(PartsBody::new([]).is_end_stream());
    }
}
