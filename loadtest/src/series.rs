//! Which series each generated metric data point belongs to (`--series N`).
//!
//! A series is one metric (namespace and name) with one set of dimension values. Series
//! are numbered `0..N`; the payload generator turns a number into a metric and its
//! dimension values, distinct numbers giving distinct series.
//!
//! The series are split among the bodies of the pool: body `b` of a pool of `P` bodies
//! starts at position `b × ⌈N / P⌉` and takes the positions after it, one per data
//! point, wrapping at N; position `p` is series `shuffle(p)`, where `shuffle` is a
//! permutation of `0..N` chosen by the seed. So one body repeats no series until it
//! has N points (as a real delivery carries each series once per period), a pool whose
//! bodies have at least ⌈N / P⌉ points each holds every series, and neighbouring
//! points fall on unrelated series, as they do in a real metric stream. (Interleaving
//! the bodies instead, point `j` of body `b` at position `b + P × j`, gives a body only
//! N / gcd(N, P) distinct series: 5 for N = 1,000 and P = 200.)

/// The series count when `--series` is not given: 64 series for each of the 10 metrics.
pub const DEFAULT_SERIES: u64 = 640;
/// The most series `--series` accepts.
pub const MAX_SERIES: u64 = 10_000_000;

/// A seeded permutation of the series numbers `0..N`.
#[derive(Debug, Clone)]
pub struct SeriesOrder {
    count: u64,
    /// Half the width of the Feistel network's domain, `0..2^(2 × half_bits)`.
    half_bits: u32,
    keys: [u64; 4],
}

impl SeriesOrder {
    /// The order of `count` series (`count` ≥ 1) for `seed`.
    pub fn new(count: u64, seed: u64) -> Self {
        let count = count.max(1);
        // The smallest even width whose domain holds 0..count: the domain is then less
        // than 4 × count, so cycle walking takes fewer than 4 steps on average.
        let bits = (u64::BITS - (count - 1).leading_zeros()).max(2);
        let half_bits = bits.div_ceil(2);
        let mut keys = [0; 4];
        for (round, key) in keys.iter_mut().enumerate() {
            *key = scramble(seed ^ 0x5E21_E500 ^ ((round as u64) << 56));
        }
        Self {
            count,
            half_bits,
            keys,
        }
    }

    /// Number of series.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The series of pool point `index`.
    pub fn series(&self, index: u64) -> u64 {
        // A permutation of the domain, applied until the value lands in 0..count ("cycle
        // walking"): restricted to 0..count this is a permutation of 0..count.
        let mut value = index % self.count;
        loop {
            value = self.feistel(value);
            if value < self.count {
                return value;
            }
        }
    }

    /// A balanced Feistel network over `0..2^(2 × half_bits)`: a bijection whatever the
    /// round function.
    fn feistel(&self, value: u64) -> u64 {
        let mask = (1_u64 << self.half_bits) - 1;
        let (mut left, mut right) = (value >> self.half_bits, value & mask);
        for key in self.keys {
            let mixed = left ^ (scramble(right ^ key) & mask);
            left = right;
            right = mixed;
        }
        (left << self.half_bits) | right
    }

    /// Where body `body` of a pool of `pool_size` bodies starts.
    fn start(&self, body: usize, pool_size: usize) -> u64 {
        let share = self.count.div_ceil(pool_size.max(1) as u64);
        (body as u64 * share) % self.count
    }

    /// The series numbers of the points of one body: body `body` of a pool of
    /// `pool_size` bodies.
    pub fn walk(&self, body: usize, pool_size: usize) -> SeriesWalk<'_> {
        SeriesWalk {
            order: self,
            next: self.start(body, pool_size),
        }
    }

    /// How many distinct series a pool holds whose bodies carry `points[b]` data points
    /// each (every point drawn from its body's [`walk`](Self::walk)).
    pub fn distinct_in_pool(&self, points: &[u64]) -> u64 {
        // The shuffle is a bijection: distinct series are distinct positions.
        let mut seen = vec![0_u64; self.count.div_ceil(64) as usize];
        let mut distinct = 0;
        for (body, &count) in points.iter().enumerate() {
            let start = self.start(body, points.len());
            for point in 0..count.min(self.count) {
                let slot = (start + point) % self.count;
                let (word, bit) = ((slot / 64) as usize, slot % 64);
                if seen[word] & (1 << bit) == 0 {
                    seen[word] |= 1 << bit;
                    distinct += 1;
                    if distinct == self.count {
                        return distinct;
                    }
                }
            }
        }
        distinct
    }
}

/// The series numbers of one body's data points, in the order they are generated.
#[derive(Debug, Clone)]
pub struct SeriesWalk<'a> {
    order: &'a SeriesOrder,
    next: u64,
}

impl SeriesWalk<'_> {
    /// The series of the body's next data point.
    pub fn next_series(&mut self) -> u64 {
        let series = self.order.series(self.next);
        self.next = (self.next + 1) % self.order.count;
        series
    }
}

/// A bijection of `u64` that mixes the bits well (SplitMix64's finaliser, each step of
/// which is invertible), so distinct inputs always give distinct outputs.
pub fn scramble(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_order_is_a_permutation_of_the_series_numbers() {
        for count in [1, 2, 3, 7, 10, 640, 1000, 4096, 4097, 100_003] {
            let order = SeriesOrder::new(count, 42);
            let mut seen = vec![false; count as usize];
            for index in 0..count {
                let series = order.series(index);
                assert!(series < count, "{series} of {count}");
                assert!(!seen[series as usize], "{series} twice of {count}");
                seen[series as usize] = true;
            }
            // The next round of the pool goes through them all again.
            assert_eq!(order.series(count), order.series(0));
        }
    }

    #[test]
    fn the_order_depends_on_the_seed_only() {
        let first: Vec<u64> = (0..50)
            .map(|index| SeriesOrder::new(1000, 1).series(index))
            .collect();
        let again: Vec<u64> = (0..50)
            .map(|index| SeriesOrder::new(1000, 1).series(index))
            .collect();
        let other: Vec<u64> = (0..50)
            .map(|index| SeriesOrder::new(1000, 2).series(index))
            .collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
        // Shuffled, not counting up.
        assert_ne!(first, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn the_bodies_of_a_pool_share_the_series_out() {
        let order = SeriesOrder::new(1000, 7);
        let mut walks: Vec<SeriesWalk<'_>> = (0..4).map(|body| order.walk(body, 4)).collect();
        let mut series = HashSet::new();
        for _ in 0..250 {
            for walk in &mut walks {
                assert!(series.insert(walk.next_series()));
            }
        }
        assert_eq!(series.len(), 1000);
    }

    #[test]
    fn a_body_repeats_no_series_before_it_has_them_all() {
        // 200 bodies and 1,000 series: interleaving would give each body 5 series.
        for (count, pool) in [(1000, 200), (100_000, 200), (7, 3), (640, 4)] {
            let order = SeriesOrder::new(count, 11);
            for body in [0, pool / 2, pool - 1] {
                let mut walk = order.walk(body, pool);
                let series: HashSet<u64> = (0..count).map(|_| walk.next_series()).collect();
                assert_eq!(
                    series.len() as u64,
                    count,
                    "{count} series, body {body} of {pool}"
                );
            }
        }
    }

    #[test]
    fn distinct_series_of_a_pool_are_counted_exactly() {
        let order = SeriesOrder::new(1000, 9);
        for points in [
            &[10_u64, 10, 10][..],
            &[400, 400, 399],
            &[500, 500, 500],
            &[2000, 0, 3],
            &[0, 0],
        ] {
            let mut series = HashSet::new();
            for (body, &count) in points.iter().enumerate() {
                let mut walk = order.walk(body, points.len());
                for _ in 0..count {
                    series.insert(walk.next_series());
                }
            }
            assert_eq!(
                order.distinct_in_pool(points),
                series.len() as u64,
                "{points:?}"
            );
        }
    }

    #[test]
    fn scramble_is_injective_on_a_range() {
        let outputs: HashSet<u64> = (0..100_000).map(scramble).collect();
        assert_eq!(outputs.len(), 100_000);
    }
}
