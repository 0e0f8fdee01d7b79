//! The stable hash functions of LCache.
//!
//! Placement must agree across processes, machines and versions, so every hash that decides where
//! a key lives is XXH3-64 (a published, frozen algorithm) with a fixed, documented seed per purpose.
//! Separate seeds keep the ring position and the shard choice of a key independent of each other.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seed for positions on the consistent-hash ring (keys and virtual nodes alike).
pub const RING_SEED: u64 = 0x4c43_6163_6865_5231; // "LCacheR1"
/// Seed for choosing the shard (lock) of a key inside a group ([`crate::group`]); a
/// [`crate::sharded::ShardedStore`] picks its shard from the store's own key hash instead.
pub const SHARD_SEED: u64 = 0x4c43_6163_6865_5331; // "LCacheS1"

/// Position of `bytes` on the ring: XXH3-64 with [`RING_SEED`].
pub fn ring_hash(bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, RING_SEED)
}

/// Hash used to pick a key's shard: XXH3-64 with [`SHARD_SEED`].
pub fn shard_hash(bytes: &[u8]) -> u64 {
    shard_hash_seeded(bytes, 0)
}

/// [`shard_hash`] mixed with a per-process `seed`, so clients cannot aim crafted keys at one
/// shard. Placement inside one process is all a shard choice decides, so it need not be stable
/// across processes; `seed = 0` gives [`shard_hash`].
pub fn shard_hash_seeded(bytes: &[u8], seed: u64) -> u64 {
    xxh3_64_with_seed(bytes, SHARD_SEED ^ seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_frozen() {
        // Golden values: if any of these changes, every cluster would reshuffle its keys on upgrade.
        assert_eq!(ring_hash(b""), 0x85ac_c70c_d038_6fd7);
        assert_eq!(ring_hash(b"lcache"), 0x2a3f_7108_5638_61b6);
        assert_eq!(shard_hash(b"lcache"), 0xe907_2d38_bb1e_68bc);
    }
}
