//! A frequency sketch: how often each key was accessed recently, in 4-bit counters.
//!
//! A count-min sketch of depth 4 over `words` 64-bit words (16 counters of 4 bits each), with
//! periodic aging, as TinyLFU describes it. A key's 64-bit hash picks one block of 8 consecutive
//! words (64 bytes, one cache line) and, from its upper half, one counter in each of four
//! word pairs of the block ([`Sketch::slots`] gives the exact formula). The estimate is the
//! smallest of the four counters; an access adds one to those of the four that equal it
//! (conservative update, which keeps estimates of rare keys from being inflated by collisions),
//! up to 15.
//! [`Sketch::halve`] halves every counter, so old popularity fades.
//!
//! Counters are atomics so that hits, which hold only a shared lock on the store, can count:
//! an increment reads a word and compare-exchanges it once; if another thread changed the word
//! in between, that one increment is dropped (a lossy count, never a wrong one: a counter never
//! exceeds 15 and never changes a neighbour). Single-threaded, every increment lands, so the
//! sketch is a deterministic function of the accesses.

use std::sync::atomic::{AtomicU64, Ordering};

/// Largest value of a counter.
pub const MAX_COUNT: u8 = 15;

/// Words per block (one 64-byte cache line).
const BLOCK_WORDS: usize = 8;

/// Keeps the low 3 bits of every 4-bit counter after a right shift by one.
const HALVE_MASK: u64 = 0x7777_7777_7777_7777;

/// Multiplier that spreads the upper half of a key's hash over the four counter choices.
const COUNTER_MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// Approximate access counts of keys, by 64-bit key hash.
#[derive(Debug)]
pub(crate) struct Sketch {
    words: Box<[AtomicU64]>,
    /// `words.len() / BLOCK_WORDS - 1`; the block count is a power of two.
    block_mask: usize,
}

impl Sketch {
    /// A sketch of `words` words, rounded up to a power of two and to at least one block; all
    /// counters zero.
    pub(crate) fn new(words: usize) -> Self {
        let words = words.max(BLOCK_WORDS).next_power_of_two();
        Sketch {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            block_mask: words / BLOCK_WORDS - 1,
        }
    }

    /// Number of 64-bit words (each holds 16 counters).
    pub(crate) fn words(&self) -> usize {
        self.words.len()
    }

    /// Bytes of counter memory.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.words.len() * std::mem::size_of::<u64>()
    }

    /// The four `(word, counter)` positions of the key with hash `hash`: block
    /// `b = hash & block_mask`; `c = ((hash >> 32) * COUNTER_MIX) >> 32` (wrapping multiply);
    /// for `i` in `0..4`, with `h = (c >> 8i) & 0xff`: word `8b + 2i + (h & 1)`, counter
    /// `(h >> 1) & 15` (bits `4 * counter ..` of the word).
    pub(crate) fn slots(&self, hash: u64) -> [(usize, u32); 4] {
        // Truncation keeps the low bits, which the mask selects anyway.
        let block = (hash as usize & self.block_mask) * BLOCK_WORDS;
        let c = (hash >> 32).wrapping_mul(COUNTER_MIX) >> 32;
        std::array::from_fn(|i| {
            let h = (c >> (8 * i)) & 0xff;
            // `h & 1 <= 1` and `(h >> 1) & 15 <= 15`: the casts are exact.
            (block + 2 * i + (h & 1) as usize, ((h >> 1) & 15) as u32)
        })
    }

    /// The estimated access count of the key with hash `hash`: the smallest of its counters.
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        self.slots(hash)
            .iter()
            .map(|&(word, counter)| count_in(self.words[word].load(Ordering::Relaxed), counter))
            .min()
            .unwrap_or(0)
    }

    /// Counts one access of the key with hash `hash` (conservative update): adds one to each of
    /// its counters that holds the current estimate (the minimum), unless that is [`MAX_COUNT`].
    /// Lossy only under a concurrent change of the same word (see module docs).
    pub(crate) fn increment(&self, hash: u64) {
        let slots = self.slots(hash);
        let words = slots.map(|(word, _)| self.words[word].load(Ordering::Relaxed));
        let counts: [u8; 4] = std::array::from_fn(|i| count_in(words[i], slots[i].1));
        let min = counts.iter().copied().min().unwrap_or(0);
        if min >= MAX_COUNT {
            return;
        }
        for i in 0..4 {
            if counts[i] == min {
                let _ = self.words[slots[i].0].compare_exchange(
                    words[i],
                    words[i] + (1 << (4 * slots[i].1)),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Halves every counter (rounding down): the aging step of TinyLFU.
    pub(crate) fn halve(&mut self) {
        for word in self.words.iter_mut() {
            let w = word.get_mut();
            *w = (*w >> 1) & HALVE_MASK;
        }
    }
}

/// Counter number `counter` (0..16) of `word`.
fn count_in(word: u64, counter: u32) -> u8 {
    // Masked to 4 bits: exact.
    ((word >> (4 * counter)) & 0xf) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_fifteen_and_halves() {
        let mut sketch = Sketch::new(64);
        assert_eq!(sketch.words(), 64);
        let key = 0x1234_5678_9abc_def0;
        assert_eq!(sketch.frequency(key), 0);
        for expected in 1..=20u8 {
            sketch.increment(key);
            assert_eq!(sketch.frequency(key), expected.min(MAX_COUNT));
        }
        sketch.halve();
        assert_eq!(sketch.frequency(key), 7);
        sketch.halve();
        sketch.halve();
        sketch.halve();
        assert_eq!(sketch.frequency(key), 0);
    }

    #[test]
    fn slots_stay_in_one_block_and_pairs() {
        let sketch = Sketch::new(1000);
        assert_eq!(sketch.words(), 1024);
        assert_eq!(sketch.memory_bytes(), 8 * 1024);
        for hash in [0u64, 1, u64::MAX, 0xdead_beef_0000_0001, 1 << 40] {
            let slots = sketch.slots(hash);
            let block = (hash as usize & (1024 / 8 - 1)) * 8;
            for (i, &(word, counter)) in slots.iter().enumerate() {
                assert!(
                    word == block + 2 * i || word == block + 2 * i + 1,
                    "{hash:#x}"
                );
                assert!(counter < 16);
            }
        }
        assert_eq!(Sketch::new(0).words(), 8, "at least one block");
    }

    #[test]
    fn keys_rarely_share_all_counters() {
        let sketch = Sketch::new(1024);
        // Keys with distinct hashes: a counter of one barely moves another's estimate.
        let hashes: Vec<u64> = (0..512u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i << 17))
            .collect();
        sketch.increment(hashes[0]);
        let disturbed = hashes[1..]
            .iter()
            .filter(|&&h| sketch.frequency(h) > 0)
            .count();
        assert!(disturbed <= 2, "{disturbed} keys share all four counters");
    }
}
