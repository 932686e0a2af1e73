//! The duplicate-delivery window: which deliveries a sink has already committed.
//!
//! Firehose resends a batch with the same request id when it did not see our 200 (a
//! timeout, a reset connection). Remembering committed ids lets the sink answer such a
//! retry with 200 without storing the batch twice. Memory is bounded two ways: entries
//! older than the window are forgotten, and past `capacity` entries the oldest go
//! first. A retry that arrives after its id was forgotten is stored again (Firehose's
//! at-least-once contract still holds; only the duplicate is not suppressed).

use std::collections::{HashSet, VecDeque};
use std::fmt;

use sha2::{Digest, Sha256};

/// Identifies one delivery across Firehose's retries: the stream that sent it (its
/// source ARN) and its request id, which Firehose keeps for every retry of a batch.
///
/// The two parts are hashed with a length in front of each, so that no two
/// different (ARN, id) pairs share a key: joining them with a separator would let
/// `deliverystream/a b` + `c` and `deliverystream/a` + `b c` collide, and the
/// second delivery would be answered "duplicate" without being stored. The first
/// 128 bits of SHA-256 are kept: a fixed 16 bytes per remembered delivery whatever
/// the id's length, and an accidental collision is out of reach (2^-128 per pair;
/// finding a second pair for a given key takes a SHA-256 second preimage).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryKey([u8; DeliveryKey::BYTES]);

impl DeliveryKey {
    /// Bytes of a key.
    pub const BYTES: usize = 16;
    /// Characters of a key in hex, its written form (journal, message ids).
    pub const HEX_LEN: usize = 2 * Self::BYTES;

    /// The key of the delivery with `request_id` from the stream `source_arn`
    /// (`None` when the sender gave no ARN: a hand-made request).
    #[must_use]
    pub fn new(source_arn: Option<&str>, request_id: &str) -> Self {
        let mut hash = Sha256::new();
        match source_arn {
            // A tag byte tells an absent ARN from an empty one.
            None => hash.update([0]),
            Some(arn) => {
                hash.update([1]);
                hash.update((arn.len() as u64).to_be_bytes());
                hash.update(arn.as_bytes());
            }
        }
        hash.update((request_id.len() as u64).to_be_bytes());
        hash.update(request_id.as_bytes());
        let digest: [u8; 32] = hash.finalize().into();
        let mut key = [0; Self::BYTES];
        key.copy_from_slice(&digest[..Self::BYTES]);
        Self(key)
    }

    /// The key a journal written before keys were hashed names: `"<ARN> <id>"`, or
    /// `"- <id>"` without an ARN. Real ARNs hold no space, so the first space ends it.
    #[must_use]
    pub fn from_legacy(text: &str) -> Self {
        match text.split_once(' ') {
            Some(("-", request_id)) => Self::new(None, request_id),
            Some((arn, request_id)) => Self::new(Some(arn), request_id),
            None => Self::new(None, text),
        }
    }

    /// Reads the hex form written by [`DeliveryKey::to_hex`] (either case).
    #[must_use]
    pub fn from_hex(text: &str) -> Option<Self> {
        fn nibble(digit: u8) -> Option<u8> {
            match digit {
                b'0'..=b'9' => Some(digit - b'0'),
                b'a'..=b'f' => Some(digit - b'a' + 10),
                b'A'..=b'F' => Some(digit - b'A' + 10),
                _ => None,
            }
        }
        if text.len() != Self::HEX_LEN {
            return None;
        }
        let mut key = [0; Self::BYTES];
        for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Self(key))
    }

    /// The key as 32 lower-case hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        let mut text = Vec::with_capacity(Self::HEX_LEN);
        self.write_hex(&mut text);
        String::from_utf8(text).expect("hex digits are ASCII")
    }

    /// Appends the key as 32 lower-case hex digits to `out` (journal lines are
    /// written this way, without a `String` per key).
    pub fn write_hex(&self, out: &mut Vec<u8>) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for byte in self.0 {
            out.push(DIGITS[usize::from(byte >> 4)]);
            out.push(DIGITS[usize::from(byte & 0x0f)]);
        }
    }
}

impl fmt::Debug for DeliveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeliveryKey({})", self.to_hex())
    }
}

impl fmt::Display for DeliveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Keys per chunk of a [`DedupWindow`]: 7/8 of 2^16, the most a hash set of 2^16
/// buckets holds, so a full chunk fills its table exactly (~43 bytes per key with
/// its queue entry). Small enough that the largest rehash the window ever does (a
/// chunk growing) takes about a millisecond; large enough that a window of 1 M keys
/// is 18 chunks, each probed once per lookup.
const CHUNK_KEYS: usize = 57_344;

/// Committed delivery keys with the time they were committed.
///
/// Keys are kept in insertion order and leave only from the oldest end (by age or
/// capacity), so the keys remembered are always a contiguous run of insertion
/// positions: [`DedupWindow::oldest_position`] up to [`DedupWindow::inserted`]. The
/// file sink's journal uses those positions to know when every key of an old journal
/// generation has been forgotten.
///
/// The keys are held in chunks of [`CHUNK_KEYS`], oldest first. New keys go into the
/// newest chunk only and forgotten keys leave the oldest only, so a chunk stops
/// growing once it is full and is dropped whole once empty. One big hash set under
/// the same churn fills up with deleted slots and, every so many commits, rebuilds
/// its whole table: at 1.8 M keys that took 100 ms on the writer thread.
#[derive(Debug)]
pub struct DedupWindow {
    chunks: VecDeque<Chunk>,
    /// Keys remembered.
    len: usize,
    window_ms: u64,
    capacity: usize,
    /// Keys inserted since the window was made (the position the next key gets).
    inserted: u64,
}

/// Consecutively inserted keys.
#[derive(Debug, Default)]
struct Chunk {
    /// The keys still remembered, for lookups.
    keys: HashSet<DeliveryKey>,
    /// Every key inserted into the chunk with its commit time, in insertion order.
    order: Vec<(u64, DeliveryKey)>,
    /// How many of `order` (from its start) are forgotten.
    forgotten: usize,
}

impl DedupWindow {
    /// A window remembering keys for `window_ms` milliseconds, at most `capacity` keys.
    #[must_use]
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            len: 0,
            window_ms,
            capacity,
            inserted: 0,
        }
    }

    /// Whether `key` was committed within the window before `now_ms`.
    pub fn contains(&mut self, key: &DeliveryKey, now_ms: u64) -> bool {
        self.expire(now_ms);
        self.remembers(key)
    }

    /// Whether `key` is remembered (newest chunks first: retries are mostly recent).
    fn remembers(&self, key: &DeliveryKey) -> bool {
        self.chunks
            .iter()
            .rev()
            .any(|chunk| chunk.keys.contains(key))
    }

    /// Records `key` as committed at `at_ms`. Returns whether it is new (a key
    /// already remembered keeps its place and time).
    pub fn insert(&mut self, key: DeliveryKey, at_ms: u64) -> bool {
        if self.capacity == 0 || self.remembers(&key) {
            return false;
        }
        let chunk_keys = CHUNK_KEYS.min(self.capacity);
        if self
            .chunks
            .back()
            .is_none_or(|chunk| chunk.order.len() >= chunk_keys)
        {
            if let Some(full) = self.chunks.back_mut() {
                full.order.shrink_to_fit();
            }
            self.chunks.push_back(Chunk::default());
        }
        let chunk = self.chunks.back_mut().expect("a chunk was just made");
        chunk.keys.insert(key);
        chunk.order.push((at_ms, key));
        self.len += 1;
        self.inserted += 1;
        while self.len > self.capacity {
            self.pop_oldest();
        }
        true
    }

    /// Forgets the keys committed more than the window before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.window_ms);
        while self
            .chunks
            .front()
            .and_then(|chunk| chunk.order.get(chunk.forgotten))
            .is_some_and(|(at, _)| *at < horizon)
        {
            self.pop_oldest();
        }
    }

    /// Number of keys remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of keys ever inserted: the insertion position the next new key gets.
    #[must_use]
    pub fn inserted(&self) -> u64 {
        self.inserted
    }

    /// Insertion position of the oldest key still remembered ([`Self::inserted`]
    /// when none is): every key inserted before it has been forgotten.
    #[must_use]
    pub fn oldest_position(&self) -> u64 {
        self.inserted - self.len as u64
    }

    /// The remembered keys with their commit times, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (DeliveryKey, u64)> + '_ {
        self.chunks
            .iter()
            .flat_map(|chunk| &chunk.order[chunk.forgotten..])
            .map(|(at, key)| (*key, *at))
    }

    fn pop_oldest(&mut self) {
        let Some(chunk) = self.chunks.front_mut() else {
            return;
        };
        if let Some((_, key)) = chunk.order.get(chunk.forgotten) {
            chunk.keys.remove(key);
            chunk.forgotten += 1;
            self.len -= 1;
        }
        if chunk.forgotten >= chunk.order.len() {
            self.chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> DeliveryKey {
        DeliveryKey::new(None, name)
    }

    #[test]
    fn remembers_within_the_window_and_forgets_after() {
        let mut window = DedupWindow::new(1_000, 10);
        window.insert(k("a"), 5_000);
        assert!(window.contains(&k("a"), 5_500));
        assert!(window.contains(&k("a"), 6_000));
        assert!(!window.contains(&k("a"), 6_001));
        assert!(window.is_empty());
    }

    #[test]
    fn capacity_evicts_the_oldest() {
        let mut window = DedupWindow::new(u64::MAX, 2);
        window.insert(k("a"), 1);
        window.insert(k("b"), 2);
        window.insert(k("c"), 3);
        assert_eq!(window.len(), 2);
        assert!(!window.contains(&k("a"), 3));
        assert!(window.contains(&k("b"), 3));
        assert!(window.contains(&k("c"), 3));
    }

    #[test]
    fn inserting_twice_keeps_one_entry() {
        let mut window = DedupWindow::new(u64::MAX, 2);
        window.insert(k("a"), 1);
        window.insert(k("a"), 2);
        window.insert(k("b"), 3);
        assert!(window.contains(&k("a"), 3) && window.contains(&k("b"), 3));
        assert_eq!(
            window.iter().collect::<Vec<_>>(),
            [(k("a"), 1), (k("b"), 3)]
        );
    }

    /// The remembered keys are always the insertion positions from
    /// `oldest_position` to `inserted`, whether keys leave by age or capacity.
    #[test]
    fn positions_track_what_is_forgotten() {
        let mut window = DedupWindow::new(1_000, 3);
        assert_eq!((window.oldest_position(), window.inserted()), (0, 0));
        assert!(window.insert(k("a"), 10));
        assert!(window.insert(k("b"), 20));
        assert!(!window.insert(k("a"), 30), "already remembered");
        assert_eq!((window.oldest_position(), window.inserted()), (0, 2));
        window.insert(k("c"), 2_000);
        window.insert(k("d"), 2_000);
        assert_eq!((window.oldest_position(), window.inserted()), (1, 4));
        window.expire(2_500);
        assert_eq!((window.oldest_position(), window.inserted()), (2, 4));
        window.expire(10_000);
        assert!(window.is_empty());
        assert_eq!((window.oldest_position(), window.inserted()), (4, 4));
    }

    /// Across chunk boundaries, by age and by capacity: exactly the newest keys are
    /// remembered, in order, and forgotten chunks are dropped.
    #[test]
    fn keys_span_chunks() {
        let capacity = 2 * CHUNK_KEYS + 10;
        let mut window = DedupWindow::new(1_000, capacity);
        let total = 3 * CHUNK_KEYS;
        for n in 0..total {
            assert!(window.insert(k(&n.to_string()), n as u64));
        }
        assert_eq!(window.len(), capacity);
        assert_eq!(window.oldest_position(), (total - capacity) as u64);
        for n in [0, total - capacity - 1] {
            assert!(!window.remembers(&k(&n.to_string())), "{n}");
        }
        for n in [total - capacity, CHUNK_KEYS, total - 1] {
            assert!(window.remembers(&k(&n.to_string())), "{n}");
        }
        let first = window.iter().next().unwrap();
        assert_eq!(
            first,
            (
                k(&(total - capacity).to_string()),
                (total - capacity) as u64
            )
        );
        assert_eq!(window.iter().count(), capacity);
        assert!(window.chunks.len() <= 3);
        // Expire all but the last 500 by age.
        window.expire(total as u64 - 500 + 1_000);
        assert_eq!(window.len(), 500);
        assert_eq!(window.chunks.len(), 1);
        assert!(!window.remembers(&k(&(total - 501).to_string())));
        assert!(window.remembers(&k(&(total - 500).to_string())));
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut window = DedupWindow::new(u64::MAX, 0);
        window.insert(k("a"), 1);
        assert!(!window.contains(&k("a"), 1));
    }

    /// Every pair of (ARN, id) that a separator-joined key would confuse gets its
    /// own key; the hex form reads back; old journal keys map to the same key.
    #[test]
    fn keys_are_unambiguous_and_read_back() {
        let arn = "arn:aws:firehose:us-east-1:123456789012:deliverystream/colX";
        /// An (ARN, request id) pair.
        type Pair<'a> = (Option<&'a str>, &'a str);
        let table: &[(Pair<'_>, Pair<'_>)] = &[
            ((Some("a b"), "c"), (Some("a"), "b c")),
            ((Some("nid|y"), "z"), (Some("nid"), "y|z")),
            ((None, "x"), (Some(""), "x")),
            ((None, "x"), (Some("-"), "x")),
            ((Some("ab"), ""), (Some("a"), "b")),
            ((Some(arn), "1"), (Some(arn), "01")),
        ];
        for (left, right) in table {
            assert_ne!(
                DeliveryKey::new(left.0, left.1),
                DeliveryKey::new(right.0, right.1),
                "{left:?} vs {right:?}"
            );
        }
        let key = DeliveryKey::new(Some(arn), "6a7e8feb-b491-4cf7-a9f1-bf3703467718");
        assert_eq!(
            key,
            DeliveryKey::new(Some(arn), "6a7e8feb-b491-4cf7-a9f1-bf3703467718")
        );
        assert_eq!(key.to_hex().len(), DeliveryKey::HEX_LEN);
        assert_eq!(DeliveryKey::from_hex(&key.to_hex()), Some(key));
        assert_eq!(
            DeliveryKey::from_hex(&key.to_hex().to_uppercase()),
            Some(key)
        );
        for bad in [
            "",
            "xyz",
            &"g".repeat(32),
            &key.to_hex()[1..],
            &format!("+{}", &key.to_hex()[1..]),
        ] {
            assert_eq!(DeliveryKey::from_hex(bad), None, "{bad}");
        }
        assert_eq!(
            DeliveryKey::from_legacy(&format!("{arn} r-1")),
            DeliveryKey::new(Some(arn), "r-1")
        );
        assert_eq!(
            DeliveryKey::from_legacy("- r 2"),
            DeliveryKey::new(None, "r 2")
        );
    }
}
