//! A frequency sketch: how often each key was accessed recently, in 4-bit counters.
//!
//! A count-min sketch of depth 4 over `words` 64-bit words (16 counters of 4 bits each), with
//! periodic aging, as TinyLFU describes it. A key's 64-bit hash picks one block of 8 consecutive
//! words (64 bytes, one cache line) and, from its upper half, one counter in each of four
//! word pairs of the block (`Sketch::slots_in_block` gives the exact formula). The estimate is the
//! smallest of the four counters; an access adds one to those of the four that equal it
//! (conservative update, which keeps estimates of rare keys from being inflated by collisions),
//! up to 15.
//! [`Sketch::halve`] halves every counter, so old popularity fades.
//!
//! Counters are atomics so that hits, which hold only a shared lock on the store, can count:
//! an increment reads the key's four words and stores back those it raises, with plain (not
//! read-modify-write) atomic operations, so a hit pays no locked instruction. If another thread
//! changed one of those words in between, its change to that word is lost: a lossy count, never
//! an inflated one (a counter never exceeds 15 and only ever holds a count it held before plus at
//! most one). Single-threaded, every increment lands, so the sketch is a deterministic function of
//! the accesses.

use std::sync::atomic::{AtomicU64, Ordering};

/// Largest value of a counter.
pub const MAX_COUNT: u8 = 15;

/// Words per block (one 64-byte cache line).
const BLOCK_WORDS: usize = 8;

/// Keeps the low 3 bits of every 4-bit counter after a right shift by one.
const HALVE_MASK: u64 = 0x7777_7777_7777_7777;

/// Multiplier that spreads the upper half of a key's hash over the four counter choices.
const COUNTER_MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// One block: the cache line holding all four counters of a key.
type Block = [AtomicU64; BLOCK_WORDS];

/// Approximate access counts of keys, by 64-bit key hash.
#[derive(Debug)]
pub(crate) struct Sketch {
    blocks: Box<[Block]>,
    /// `blocks.len() - 1`; the block count is a power of two.
    block_mask: usize,
}

/// Where a key's four counters are in its block: for each, the word and the bit shift.
struct Slots {
    words: [usize; 4],
    shifts: [u32; 4],
}

impl Sketch {
    /// A sketch of `words` words, rounded up to a power of two and to at least one block; all
    /// counters zero.
    pub(crate) fn new(words: usize) -> Self {
        let blocks = words.max(BLOCK_WORDS).next_power_of_two() / BLOCK_WORDS;
        Sketch {
            blocks: (0..blocks).map(|_| Default::default()).collect(),
            block_mask: blocks - 1,
        }
    }

    /// Number of 64-bit words (each holds 16 counters).
    pub(crate) fn words(&self) -> usize {
        self.blocks.len() * BLOCK_WORDS
    }

    /// Bytes of counter memory.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.words() * std::mem::size_of::<u64>()
    }

    /// The four `(word, counter)` positions of the key with hash `hash`: block
    /// `b = hash & block_mask`; `c = ((hash >> 32) * COUNTER_MIX) >> 32` (wrapping multiply);
    /// for `i` in `0..4`, with `h = (c >> 8i) & 0xff`: word `8b + 2i + (h & 1)`, counter
    /// `(h >> 1) & 15` (bits `4 * counter ..` of the word).
    #[cfg(test)]
    pub(crate) fn slots(&self, hash: u64) -> [(usize, u32); 4] {
        let block = self.block_of(hash) * BLOCK_WORDS;
        let slots = Self::slots_in_block(hash);
        std::array::from_fn(|i| (block + slots.words[i], slots.shifts[i] / 4))
    }

    /// The index of the block of the key with hash `hash`.
    fn block_of(&self, hash: u64) -> usize {
        // Truncation keeps the low bits, which the mask selects anyway.
        hash as usize & self.block_mask
    }

    /// The positions of the key's counters inside its block: with
    /// `c = ((hash >> 32) * COUNTER_MIX) >> 32` (wrapping multiply) and `h = (c >> 8i) & 0xff`
    /// for `i` in `0..4`: word `2i + (h & 1)`, counter `(h >> 1) & 15` (bits `4 * counter ..`).
    fn slots_in_block(hash: u64) -> Slots {
        let c = (hash >> 32).wrapping_mul(COUNTER_MIX) >> 32;
        // `h & 1 <= 1` and `(h >> 1) & 15 <= 15`: the casts are exact.
        let word = |i: usize| 2 * i + ((c >> (8 * i)) & 1) as usize;
        let shift = |i: usize| 4 * ((c >> (8 * i + 1)) & 15) as u32;
        Slots {
            words: [word(0), word(1), word(2), word(3)],
            shifts: [shift(0), shift(1), shift(2), shift(3)],
        }
    }

    /// The key's block and the current values of its four words.
    fn read(&self, hash: u64) -> (&Block, Slots, [u64; 4]) {
        let block = &self.blocks[self.block_of(hash)];
        let slots = Self::slots_in_block(hash);
        let words = slots
            .words
            .map(|word| block[word % BLOCK_WORDS].load(Ordering::Relaxed));
        (block, slots, words)
    }

    /// The estimated access count of the key with hash `hash`: the smallest of its counters.
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        let (_, slots, words) = self.read(hash);
        smallest(&slots, &words)
    }

    /// Counts one access of the key with hash `hash` (conservative update): adds one to each of
    /// its counters that holds the current estimate (the minimum), unless that is [`MAX_COUNT`].
    /// Lossy only under a concurrent change of the same words (see module docs).
    pub(crate) fn increment(&self, hash: u64) {
        let (block, slots, words) = self.read(hash);
        let min = smallest(&slots, &words);
        if min >= MAX_COUNT {
            return;
        }
        for i in 0..4 {
            if count_at(words[i], slots.shifts[i]) == min {
                let raised = words[i] + (1 << slots.shifts[i]);
                block[slots.words[i] % BLOCK_WORDS].store(raised, Ordering::Relaxed);
            }
        }
    }

    /// Halves every counter (rounding down): the aging step of TinyLFU.
    pub(crate) fn halve(&mut self) {
        for word in self.blocks.iter_mut().flatten() {
            let w = word.get_mut();
            *w = (*w >> 1) & HALVE_MASK;
        }
    }
}

/// The smallest of a key's four counters.
fn smallest(slots: &Slots, words: &[u64; 4]) -> u8 {
    let counts: [u8; 4] = std::array::from_fn(|i| count_at(words[i], slots.shifts[i]));
    counts[0].min(counts[1]).min(counts[2].min(counts[3]))
}

/// The 4-bit counter at bit `shift` of `word`.
fn count_at(word: u64, shift: u32) -> u8 {
    // Masked to 4 bits: exact.
    ((word >> shift) & 0xf) as u8
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
