//! Kafka's default partitioner for keyed records, so a record lands on the
//! partition a Java producer would choose for the same key: murmur2 (the Java
//! client's `Utils.murmur2`) of the key, made positive, modulo the partition count.

/// Seed of Kafka's murmur2 partitioner.
const MURMUR2_SEED: u32 = 0x9747_b28c;
/// Multiplier of murmur2.
const MURMUR2_M: u32 = 0x5bd1_e995;

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`).
fn murmur2(data: &[u8]) -> u32 {
    // Kafka mixes in the length as a Java int, i.e. modulo 2^32.
    let mut hash = MURMUR2_SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(MURMUR2_M);
        k ^= k >> 24;
        k = k.wrapping_mul(MURMUR2_M);
        hash = hash.wrapping_mul(MURMUR2_M);
        hash ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (shift, byte) in tail.iter().enumerate().rev() {
            hash ^= u32::from(*byte) << (8 * shift);
        }
        hash = hash.wrapping_mul(MURMUR2_M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(MURMUR2_M);
    hash ^= hash >> 15;
    hash
}

/// The partition of `key` in a topic of `partitions` partitions, as Kafka's
/// default partitioner chooses it for keyed records: murmur2 of the key, made
/// positive, modulo the partition count. The same key always gives the same
/// partition while the count stays the same.
#[must_use]
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    let Ok(count) = u32::try_from(partitions) else {
        return 0;
    };
    if count == 0 {
        return 0;
    }
    let partition = (murmur2(key) & 0x7fff_ffff) % count;
    // Below `partitions`, which is an i32.
    i32::try_from(partition).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's own test vectors (UtilsTest.testMurmur2), as Java ints.
        let table: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in table {
            assert_eq!(
                murmur2(data).cast_signed(),
                expected,
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn partition_choice_is_stable_and_in_range() {
        assert_eq!(partition_for(b"req-1:0:0", 1), 0);
        for partitions in [1, 2, 3, 7, 12] {
            for index in 0..50 {
                let key = format!("req-1:{index}:0");
                let partition = partition_for(key.as_bytes(), partitions);
                assert!((0..partitions).contains(&partition));
                assert_eq!(
                    partition,
                    partition_for(key.as_bytes(), partitions),
                    "same key, same partition"
                );
            }
        }
        // Pinned values: a change of hash would move records between partitions.
        assert_eq!(
            partition_for(b"foobar", 12),
            ((-790_332_482_i32 & 0x7fff_ffff) % 12)
        );
        assert_eq!(partition_for(b"abc", 7), 479_470_107 % 7);
        // Keys spread over the partitions.
        let used: std::collections::BTreeSet<i32> = (0..100)
            .map(|index| partition_for(format!("req:{index}:0").as_bytes(), 4))
            .collect();
        assert_eq!(used.len(), 4);
        assert_eq!(partition_for(b"x", 0), 0, "no partitions: no panic");
    }
}
