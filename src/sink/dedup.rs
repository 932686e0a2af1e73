//! The duplicate-delivery window: which deliveries a sink has already committed.
//!
//! Firehose resends a batch with the same request id when it did not see our 200 (a
//! timeout, a reset connection). Remembering committed ids lets the sink answer such a
//! retry with 200 without storing the batch twice. Memory is bounded two ways: entries
//! older than the window are forgotten, and past `capacity` entries the oldest go
//! first. A retry that arrives after its id was forgotten is stored again (Firehose's
//! at-least-once contract still holds; only the duplicate is not suppressed).

use std::collections::{HashMap, VecDeque};
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

    /// Reads the hex form written by [`DeliveryKey::to_hex`].
    #[must_use]
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != Self::HEX_LEN {
            return None;
        }
        let mut key = [0; Self::BYTES];
        for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(key))
    }

    /// The key as 32 lower-case hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        let mut text = String::with_capacity(Self::HEX_LEN);
        for byte in self.0 {
            let _ = write!(text, "{byte:02x}");
        }
        text
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

/// Committed delivery keys with the time they were committed.
#[derive(Debug)]
pub struct DedupWindow {
    committed: HashMap<DeliveryKey, u64>,
    /// Keys in commit order, for eviction.
    order: VecDeque<(u64, DeliveryKey)>,
    window_ms: u64,
    capacity: usize,
}

impl DedupWindow {
    /// A window remembering keys for `window_ms` milliseconds, at most `capacity` keys.
    #[must_use]
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        Self {
            committed: HashMap::new(),
            order: VecDeque::new(),
            window_ms,
            capacity,
        }
    }

    /// Whether `key` was committed within the window before `now_ms`.
    pub fn contains(&mut self, key: &DeliveryKey, now_ms: u64) -> bool {
        self.evict(now_ms);
        self.committed.contains_key(key)
    }

    /// Records `key` as committed at `at_ms`.
    pub fn insert(&mut self, key: DeliveryKey, at_ms: u64) {
        if self.capacity == 0 || self.committed.contains_key(&key) {
            return;
        }
        self.committed.insert(key, at_ms);
        self.order.push_back((at_ms, key));
        while self.order.len() > self.capacity {
            self.pop_oldest();
        }
    }

    /// Number of keys remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.committed.len()
    }

    /// Whether no key is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.committed.is_empty()
    }

    /// The remembered keys with their commit times, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (DeliveryKey, u64)> + '_ {
        self.order.iter().map(|(at, key)| (*key, *at))
    }

    fn evict(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.window_ms);
        while self.order.front().is_some_and(|(at, _)| *at < horizon) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.committed.remove(&key);
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
        for bad in ["", "xyz", &"g".repeat(32), &key.to_hex()[1..]] {
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
