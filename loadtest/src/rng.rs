//! A small deterministic random number generator (SplitMix64) and the UUID-like request
//! ids. Determinism matters for the payload pool: the same `--seed` and options give the
//! same bodies, so two receivers can be measured on the same bytes.

/// SplitMix64: fast, statistically fine for test data, and seedable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator seeded from the clock and `salt`, for request ids and retry jitter.
    pub fn from_clock(salt: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        let mut rng =
            Self(nanos ^ salt.wrapping_mul(0xA076_1D64_78BD_642F) ^ u64::from(std::process::id()));
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0; the tiny modulo bias is irrelevant here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A fresh request id: a random (version 4) UUID in its 36-character text form, like
    /// the GUIDs Firehose sends.
    pub fn request_id(&mut self) -> RequestId {
        let high = self.next_u64();
        let low = self.next_u64();
        let value = (u128::from(high) << 64) | u128::from(low);
        // Version 4, variant 10xx.
        let value = (value & !(0xF_u128 << 76)) | (0x4_u128 << 76);
        let value = (value & !(0x3_u128 << 62)) | (0x2_u128 << 62);
        let hex = format!("{value:032x}");
        let mut text = [0_u8; 36];
        let mut digits = hex.bytes();
        for (index, slot) in text.iter_mut().enumerate() {
            *slot = if matches!(index, 8 | 13 | 18 | 23) {
                b'-'
            } else {
                digits.next().unwrap_or(b'0')
            };
        }
        RequestId(text)
    }
}

/// A request id: always 36 ASCII characters (`8-4-4-4-12` lowercase hex).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId([u8; 36]);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and dashes are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_look_like_uuids_and_differ() {
        let mut rng = Rng::new(7);
        let first = rng.request_id();
        let second = rng.request_id();
        assert_ne!(first, second);
        let text = first.as_str();
        assert_eq!(text.len(), 36);
        let groups: Vec<&str> = text.split('-').collect();
        assert_eq!(
            groups.iter().map(|group| group.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(
            groups
                .iter()
                .all(|group| group.bytes().all(|b| b.is_ascii_hexdigit()))
        );
        assert_eq!(&text[14..15], "4", "version nibble");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "variant");
    }

    #[test]
    fn seeded_sequences_repeat() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        assert_eq!(
            (0..5).map(|_| a.next_u64()).collect::<Vec<_>>(),
            (0..5).map(|_| b.next_u64()).collect::<Vec<_>>()
        );
        let mut c = Rng::new(1);
        for _ in 0..1000 {
            let value = c.between(150, 300);
            assert!((150..=300).contains(&value));
            let unit = c.unit();
            assert!((0.0..1.0).contains(&unit));
        }
    }
}
