//! The TinyLFU policy: W-TinyLFU over CLOCK queues with a self-tuning dead horizon, so that a
//! hit changes only atomics and neither loops, scans nor a popular set that dies hold it back.
//!
//! Caffeine's W-TinyLFU (an admission window, a segmented main space, TinyLFU admission by a
//! frequency sketch) with every LRU list replaced by a FIFO queue plus per-entry hit counts
//! (CLOCK; "lazy promotion" in the words of the S3-FIFO and SIEVE papers), and two additions
//! measured on the traces of `scripts/hit-ratio.sh` (see README):
//!
//! - **An incumbent's margin.** A candidate must beat a victim used within about one cache
//!   turnover by two counts, not one: its count has just been raised by the miss that brought it
//!   in, the victim's not yet in this round. Without it a loop slightly larger than the cache
//!   churns (LRU's worst case); with it W-TinyLFU's near-optimal loop hit ratio is kept.
//! - **A dead horizon, tuned by a ghost.** An entry idle for longer than the horizon is dead:
//!   it loses every admission duel, and a hand sweeping the protected queue hands it over to be
//!   the next victim. The horizon starts at 64 cache turnovers (nothing is dead) and is moved
//!   ARC-style by the keys that come back after leaving: a key evicted as dead that returns says
//!   the horizon is too short; a key evicted or refused for lack of room that returns says it is
//!   too long. A popular set that dies is thus evicted quickly when that pays, and kept when the
//!   workload is stationary. A key the sketch still counts is dead only once it has also been
//!   idle for longer than its count says it should be (the sample period over its count): a
//!   popular key that stops is dead at the horizon, a rarely used live key is not; only a key
//!   whose count has aged away is dead at the horizon itself.
//! - **A returning key's reuse gap.** A key that comes back while the ghost remembers it carries
//!   the time since its last use before it left; if that is shorter than the time the victim it
//!   meets has been idle, it is admitted whatever the counts say (as LIRS admits a block whose
//!   reuse distance is below the recency of its LIR bottom). A key whose popularity is rising
//!   gets in before its count catches up; a loop, whose keys come back after longer than any
//!   resident has been idle, is not churned.
//!
//! The exact rules (the reference model in `proptests` transcribes them):
//!
//! - **Clock.** Every insert has a tick `T` = hits + stored inserts before it (the store's
//!   counts). `peak` = the most entries held at once so far; the *sample*
//!   `S = `[`SAMPLE_FACTOR`]` * peak`; the *granule* `g = max(1, peak / `[`TOUCH_DIVISOR`]`)`.
//! - **Queues.** A *window* W (new keys), and a main space of *probation* P and *protected* Q,
//!   each a FIFO (head = oldest). Every entry has a hit count `h` (`0..=`[`MAX_HITS`]) and a
//!   last-use tick `seen`.
//! - **Budgets.** W may hold `budget / 100` bytes ([`WINDOW_PERCENT`]); Q may hold
//!   `(budget - budget / 100) * 90 / 100` bytes ([`PROTECTED_PERCENT`]); the store `budget`.
//! - **Idle, dead.** `idle(e) = T - seen(e)` (0 if negative). With the horizon `D` (in
//!   hundredths of `peak`, initially [`HORIZON_MAX`]) and `f` the sketch's estimate of `e`'s key,
//!   `e` is *dead* if `100 * idle(e) > D * peak` and either `f < `[`REUSE_EVIDENCE`] or
//!   `idle(e) * f > S`.
//! - **Hit.** `seen = T'` if `T' - seen >= g`, where `T'` and `g` are those of the latest
//!   insert; if `h < MAX_HITS`, `h = h + 1` and the key's sketch counters go up by one (hits
//!   beyond the policy's [`MAX_HITS`] between two of its looks at the entry are not counted in
//!   the sketch either: a hot entry's hit then writes nothing, and its counters stay where its
//!   earlier hits put them). Nothing else changes (a hit needs only a shared lock).
//! - **Insert.** First, if `T` is at least `S` past the tick at which the sketch was last
//!   halved, it is halved (aging). A replacement sets the value and `seen = T`, stays where it
//!   is, and counts as a hit does: if `h < MAX_HITS`, `h = h + 1` and the key's sketch counters
//!   go up by one. A new key is looked up in the ghost (`ghost.rs`) and its
//!   record taken out; if found, the horizon moves: with `d` and `o` the ghost's remaining
//!   records marked dead and not, a dead record raises `D` by
//!   `HORIZON_STEP * max(1, o / max(d, 1))`, any other lowers it by
//!   `HORIZON_STEP * max(1, d / max(o, 1))` (integer divisions), within
//!   `[`[`HORIZON_MIN`]`, `[`HORIZON_MAX`]`]`; and if `T - seen(record) < 2^32 - 1` the key's
//!   *reuse gap* is `T - seen(record)` (otherwise, or with no record, it has none). The key
//!   enters W's tail with `h = 0`, `seen = T`; `peak`, `g` and, if `peak` outgrew it, the
//!   sketch (which then restarts from zero) grow, and the key's sketch counters go up
//!   by one.
//! - **Window overflow.** While W is over its budget: W's head, if it is the entry just stored,
//!   or if `h > 0` while fewer than `n` such moves were made in this overflow (`n` = W's length
//!   when it started), gets `h = 0` and goes to W's tail (stop instead if it is W's only
//!   entry); else it leaves W as a *candidate*.
//! - **Eviction step.** While the store is over budget, each step first sweeps Q: up to
//!   [`SWEEP_STEPS`] times, Q's head (unless it is the entry just stored, which stops the sweep)
//!   goes to P's head if dead, else to Q's tail. Then a victim is chosen and dueled.
//! - **Victim.** P's head, if `h > 0` or it is the entry just stored, is promoted (`h = 0`, to
//!   Q's tail, then Q is brought within its budget); repeat. P's
//!   head with `h = 0` is the victim. With P empty: Q's head with `h > 0` (or the entry just
//!   stored, unless Q holds nothing else) gets `h - 1` and goes to Q's tail, repeat; with `h = 0`
//!   it is the victim. With Q empty too (or holding only the entry just stored): W's first
//!   entry that is not the entry just stored, if any.
//! - **Admission.** The oldest remaining candidate `c` meets the victim `v`; `v` is evicted if
//!   `v` is dead, or `c` has a reuse gap below `idle(v)`, or
//!   `freq(c) > min(freq(v), cap) + margin` with `idle = max(1, idle(v))`,
//!   `cap = min(15, 2 * S / idle)` (an idle victim cannot hold on to an old count) and
//!   `margin = 1` if `10 * idle < 12 * peak`, else 0, or, when
//!   `freq(c) >= `[`WARM`], with probability 1/128 from a generator seeded by the store's seed
//!   (so crafted keys cannot pin a victim, as in Caffeine). Otherwise `c` is evicted and `v`, if
//!   in P with other entries, goes to P's tail (the next candidate meets the next victim). A lone
//!   candidate or a lone victim is simply evicted. Every evicted entry goes into the ghost with
//!   its `seen` and whether it was dead; candidates that survive join P's tail in order.
//!
//! The entry just stored is never evicted by its own insert. Caffeine's hill climber (which
//! adapts the window size) was tried and lowered the hit ratio on the benchmark traces, so the
//! window is fixed (see README).

mod ghost;
mod node;
mod queues;
mod sketch;

use super::KeyHasher;
use bytes::Bytes;
use hashbrown::HashTable;

use super::tiers::{Access, Entry};
use super::Lookup;
use crate::time::Timestamp;
use ghost::{Ghost, Record};
use node::{Link, Queue, NIL};
use queues::Queues;
use sketch::Sketch;
pub use sketch::MAX_COUNT;

/// Largest per-entry hit count.
pub const MAX_HITS: u8 = 4;

/// Sketch estimate from which a losing candidate is still admitted with probability 1/128.
pub const WARM: u8 = 6;

/// Share of the budget, in percent, for the window.
pub const WINDOW_PERCENT: u64 = 1;

/// Share of the main space (`budget - window budget`), in percent, for the protected queue.
pub const PROTECTED_PERCENT: u64 = 90;

/// The sketch is halved every `SAMPLE_FACTOR * peak` ticks.
pub const SAMPLE_FACTOR: u64 = 12;

/// The sketch never takes more than `budget / SKETCH_BUDGET_DIVISOR` bytes.
pub const SKETCH_BUDGET_DIVISOR: u64 = 16;

/// Sketch words (16 counters each) wanted per entry: two, so that fewer keys share counters
/// (measured on the traces of `scripts/hit-ratio.sh`: one word per entry lost 0.07 points on
/// average and up to 0.37 on a row).
pub const SKETCH_WORDS_PER_ENTRY: usize = 2;

/// A hit refreshes an entry's last-use tick only if it is `peak / TOUCH_DIVISOR` ticks old.
pub const TOUCH_DIVISOR: usize = 16;

/// Protected entries the sweep examines per eviction step.
pub const SWEEP_STEPS: usize = 4;

/// The hash index starts with room for `max_entries / INDEX_PRESIZE_DIVISOR` entries (the
/// store's budget over four times the smallest entry charge) and doubles beyond. Sized for
/// `max_entries`, it was sparse (38 % full in `cargo bench -p lcache-core --bench throughput`,
/// whose entries are charged 492 bytes), so hot keys' slots spread over twice the cache lines;
/// grown, it is 44-88 % full. Growing costs a pause under the shard's write lock proportional to
/// its entries (165 ms in a one-off timing when a store passed two million), as it always did past
/// [`super::PREALLOCATED_ENTRIES_MAX`].
pub const INDEX_PRESIZE_DIVISOR: usize = 4;

/// Largest (and first) dead horizon, in hundredths of `peak`: 64 turnovers.
pub const HORIZON_MAX: u64 = 6_400;

/// Smallest dead horizon, in hundredths of `peak`: 3 turnovers.
pub const HORIZON_MIN: u64 = 300;

/// How far one returning key moves the dead horizon, in hundredths of `peak`.
pub const HORIZON_STEP: u64 = 15;

/// A victim idle for less than `RECENT_TENTHS / 10` turnovers keeps a one-count margin.
pub const RECENT_TENTHS: u64 = 12;

/// From this sketch estimate up, an entry past the dead horizon is dead only once it has also
/// been idle for longer than the sample period over its estimate (its own expected time between
/// accesses, or more). At 1, only an entry whose count has aged away entirely is dead at the
/// horizon itself: a key seen once in the last sample or two may be a rarely used live one (in
/// the `shift` trace, most entries killed at the horizon with an estimate of 1 were among the
/// ten thousand most popular keys, and the slots they freed went to one-off keys).
pub const REUSE_EVIDENCE: u8 = 1;

/// `percent` % of `bytes`, rounded down, without overflow.
pub fn percent_of(bytes: u64, percent: u64) -> u64 {
    bytes / 100 * percent + bytes % 100 * percent / 100
}

/// Words of the sketch for a store of `budget` bytes that has held at most `peak` entries:
/// [`SKETCH_WORDS_PER_ENTRY`] per entry rounded up to a power of two, at most the largest power
/// of two that keeps the sketch within `budget / SKETCH_BUDGET_DIVISOR` bytes, at least 8.
pub fn sketch_words(budget: u64, peak: usize) -> usize {
    let cap = (budget / SKETCH_BUDGET_DIVISOR / 8).max(1);
    let cap = usize::try_from(1u64 << cap.ilog2()).unwrap_or(usize::MAX);
    SKETCH_WORDS_PER_ENTRY
        .saturating_mul(peak.max(1))
        .next_power_of_two()
        .min(cap)
        .max(8)
}

/// Records the ghost keeps for a store that has held at most `peak` entries: the largest power
/// of two not above `peak` (at least 1).
pub fn ghost_capacity(peak: usize) -> usize {
    let peak = peak.max(1);
    1 << peak.ilog2()
}

/// A splitmix64 generator: the policy's only randomness, seeded by the store's seed.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// State of the TinyLFU policy: entries, queues, sketch and ghost.
#[derive(Debug)]
pub(super) struct TinyLfu {
    queues: Queues,
    index: HashTable<Link>,
    hasher: KeyHasher,
    /// Bytes of all entries (queues and pending candidates).
    bytes: u64,
    budget: u64,
    window_budget: u64,
    protected_budget: u64,
    sketch: Sketch,
    ghost: Ghost,
    rng: SplitMix,
    /// Most entries held at once so far.
    peak: usize,
    /// Tick at which the sketch was last halved.
    aged_at: u64,
    /// Stored inserts so far (the other part of the tick).
    inserts: u64,
    /// The tick `T` of the current (or last) insert.
    tick: u64,
    /// `max(1, peak / TOUCH_DIVISOR)`.
    granule: u64,
    /// The dead horizon `D`, in hundredths of `peak`.
    horizon: u64,
    /// Scratch space of [`TinyLfu::evict`] (kept to avoid an allocation per insert).
    candidates: Vec<usize>,
}

impl TinyLfu {
    /// An empty policy for a store of `budget` bytes whose hashes and generator derive from
    /// `seed`, with room for `max_entries` entries made up front.
    pub(super) fn new(budget: u64, seed: u64, max_entries: usize) -> Self {
        let window_budget = percent_of(budget, WINDOW_PERCENT);
        TinyLfu {
            queues: Queues::new(max_entries),
            index: HashTable::with_capacity(max_entries / INDEX_PRESIZE_DIVISOR),
            hasher: KeyHasher::new(seed),
            bytes: 0,
            budget,
            window_budget,
            protected_budget: percent_of(budget - window_budget, PROTECTED_PERCENT),
            sketch: Sketch::new(sketch_words(budget, 0)),
            ghost: Ghost::default(),
            rng: SplitMix(seed),
            peak: 0,
            aged_at: 0,
            inserts: 0,
            tick: 0,
            granule: 1,
            horizon: HORIZON_MAX,
            candidates: Vec::new(),
        }
    }

    /// The 64-bit hash of `key`, used by the index, the sketch and the ghost.
    pub(super) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash(key)
    }

    #[inline]
    fn find(&self, key: &[u8], hash: u64) -> Option<usize> {
        let queues = &self.queues;
        self.index
            .find(hash, |&i| queues.has_key(i.index(), key))
            .map(|&i| i.index())
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.queues.len()
    }

    /// Bytes of all entries.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes the policy keeps besides the entries: the sketch and the ghost.
    pub(super) fn overhead_bytes(&self) -> usize {
        self.sketch.memory_bytes() + self.ghost.memory_bytes()
    }

    /// The valid value under `key` at `now`, without any effect.
    pub(super) fn peek(&self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        let i = self.find(key, self.hash(key))?;
        let node = self.queues.node(i);
        (!node.is_expired(now)).then(|| Lookup {
            value: node.value().clone(),
            expires_at: node.expires_at(),
        })
    }

    /// A read of `key` at `now`, under a shared lock: a valid entry records a hit; an expired one
    /// is reported and left in place. The caller counts the hit or miss.
    pub(super) fn access(&self, key: &[u8], now: Timestamp) -> Access {
        self.access_hashed(key, self.hash(key), now)
    }

    /// [`TinyLfu::access`] with the key's hash ([`TinyLfu::hash`]) already known.
    #[inline]
    pub(super) fn access_hashed(&self, key: &[u8], hash: u64, now: Timestamp) -> Access {
        debug_assert_eq!(hash, self.hash(key), "the hash of this store's KeyHasher");
        let Some(i) = self.find(key, hash) else {
            return Access::Missing;
        };
        let node = self.queues.node(i);
        if node.is_expired(now) {
            return Access::Expired;
        }
        if node.record_hit(self.tick, self.granule) {
            self.sketch.increment(hash);
        }
        Access::Hit {
            value: node.value().clone(),
            expires_at: node.expires_at(),
        }
    }

    /// Stores `entry` under `key` (see the module docs) given the store's hit count, and returns
    /// the entry's index (for [`TinyLfu::evict`]) and the entry it replaced.
    pub(super) fn insert(
        &mut self,
        key: Bytes,
        hash: u64,
        entry: Entry,
        hits: u64,
    ) -> (usize, Option<Entry>) {
        debug_assert_eq!(hash, self.hash(&key), "the hash of this store's KeyHasher");
        let tick = hits + self.inserts;
        self.tick = tick;
        if tick - self.aged_at >= self.sample() {
            self.sketch.halve();
            self.aged_at = tick;
        }
        self.inserts += 1;
        if let Some(i) = self.find(&key, hash) {
            let new_size = entry.size;
            let old = self.queues.resize(i, entry);
            self.bytes = self.bytes - old.size + new_size;
            let node = self.queues.node_mut(i);
            if node.record_replacement(tick) {
                self.sketch.increment(hash);
            }
            return (i, Some(old));
        }
        let returned = self.ghost.take(hash);
        if let Some(record) = returned {
            self.adapt_horizon(record.dead);
        }
        let size = entry.size;
        let (node, mut meta) = node::Node::new(hash, key, entry, tick);
        if let Some(record) = returned {
            meta.set_reuse_gap(tick.saturating_sub(record.seen));
        }
        let i = self.queues.insert(node, meta);
        let queues = &self.queues;
        self.index
            .insert_unique(hash, Link::to(i), |&j| queues.meta(j.index()).hash);
        self.bytes += size;
        self.queues.push_tail(Queue::Window, i);
        if self.len() > self.peak {
            self.peak = self.len();
            self.granule = (self.peak / TOUCH_DIVISOR).max(1) as u64;
            let words = sketch_words(self.budget, self.peak);
            if words > self.sketch.words() {
                self.sketch = Sketch::new(words);
            }
        }
        self.sketch.increment(hash);
        (i, None)
    }

    /// Removes the entry under `key`.
    pub(super) fn remove(&mut self, key: &[u8]) -> Option<(Bytes, Entry)> {
        let i = self.find(key, self.hash(key))?;
        Some(self.take(i))
    }

    /// Evicts until the store fits its budget, never the entry `keep` (the one just stored).
    /// Calls `evicted` with each evicted entry, in order.
    pub(super) fn evict(&mut self, keep: usize, mut evicted: impl FnMut(Bytes, Entry)) {
        if self.bytes <= self.budget && self.queues.window.bytes <= self.window_budget {
            // Nothing to move and nothing to evict: the common case of a replacement.
            return;
        }
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        self.drain_window(keep, &mut candidates);
        let mut next = 0;
        while self.bytes > self.budget {
            self.sweep_protected(keep);
            let victim = self.select_victim(keep);
            let loser = match (candidates.get(next).copied(), victim) {
                (None, None) => break,
                (Some(c), None) => {
                    next += 1;
                    c
                }
                (None, Some(v)) => v,
                (Some(c), Some(v)) => {
                    if self.admit(c, v) {
                        v
                    } else {
                        next += 1;
                        let probation = &self.queues.probation;
                        if self.queues.node(v).queue == Queue::Probation && probation.len > 1 {
                            self.queues.move_to_tail(Queue::Probation, v);
                        }
                        c
                    }
                }
            };
            self.depart(loser);
            let (key, entry) = self.take(loser);
            evicted(key, entry);
        }
        for &c in &candidates[next..] {
            self.queues.push_tail(Queue::Probation, c);
        }
        self.candidates = candidates;
    }

    /// Every key, window then probation then protected, each from head to tail.
    pub(super) fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.queues.all().map(move |i| &self.queues.meta(i).key)
    }

    /// Every entry, in the order of [`TinyLfu::keys`].
    pub(super) fn entries(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.queues
            .all()
            .map(move |i| (&self.queues.meta(i).key, self.queues.node(i).value()))
    }

    /// Drops every entry; the sketch, the ghost, the horizon, `peak` and the clock are kept.
    pub(super) fn clear(&mut self) {
        self.queues.clear();
        self.index.clear();
        self.bytes = 0;
    }

    /// Moves entries out of the window while it is over budget into `candidates`, oldest first.
    /// See the module docs.
    fn drain_window(&mut self, keep: usize, candidates: &mut Vec<usize>) {
        let mut chances = self.queues.window.len;
        while self.queues.window.bytes > self.window_budget && self.queues.window.head != NIL {
            let head = self.queues.window.head;
            if head == keep || (chances > 0 && self.queues.node(head).hits() > 0) {
                if self.queues.window.len == 1 {
                    break;
                }
                chances = chances.saturating_sub(1);
                self.queues.node_mut(head).set_hits(0);
                self.queues.move_to_tail(Queue::Window, head);
                continue;
            }
            self.queues.unlink(head);
            self.queues.push_tail(Queue::Candidate, head);
            candidates.push(head);
        }
    }

    /// Up to [`SWEEP_STEPS`] protected entries from Q's head: dead ones go to P's head (the next
    /// victims), the others to Q's tail. Stops at `keep`.
    fn sweep_protected(&mut self, keep: usize) {
        for _ in 0..SWEEP_STEPS {
            let head = self.queues.protected.head;
            if head == NIL || head == keep {
                return;
            }
            self.queues.unlink(head);
            if self.is_dead(head) {
                self.queues.push_head(Queue::Probation, head);
            } else {
                self.queues.push_tail(Queue::Protected, head);
            }
        }
    }

    /// The next capacity victim (still queued), never `keep`: see the module docs.
    fn select_victim(&mut self, keep: usize) -> Option<usize> {
        // Every pass promotes an entry out of P or lowers a hit count in Q, so the loop ends.
        loop {
            let head = self.queues.probation.head;
            if head != NIL {
                if head == keep || self.queues.node(head).hits() > 0 {
                    self.queues.node_mut(head).set_hits(0);
                    self.queues.move_to_tail(Queue::Protected, head);
                    self.demote_protected(keep);
                    continue;
                }
                return Some(head);
            }
            let head = self.queues.protected.head;
            let only_keep = self.queues.protected.len == 1 && head == keep;
            if head != NIL && !only_keep {
                let hits = self.queues.node(head).hits();
                if head != keep && hits == 0 {
                    return Some(head);
                }
                self.queues.node_mut(head).set_hits(hits.saturating_sub(1));
                self.queues.move_to_tail(Queue::Protected, head);
                continue;
            }
            let head = self.queues.window.head;
            if head != keep {
                return (head != NIL).then_some(head);
            }
            let next = self.queues.meta(head).next();
            return (next != NIL).then_some(next);
        }
    }

    /// While Q is over its budget, its head is demoted to P's tail, or, if `h > 0` or it is
    /// `keep`, goes to Q's tail with `h - 1` (stopping if `keep` is Q's only entry).
    fn demote_protected(&mut self, keep: usize) {
        while self.queues.protected.bytes > self.protected_budget
            && self.queues.protected.head != NIL
        {
            let head = self.queues.protected.head;
            let hits = self.queues.node(head).hits();
            if hits > 0 || head == keep {
                self.queues.node_mut(head).set_hits(hits.saturating_sub(1));
                self.queues.move_to_tail(Queue::Protected, head);
                if head == keep && self.queues.protected.len == 1 {
                    break;
                }
            } else {
                self.queues.move_to_tail(Queue::Probation, head);
            }
        }
    }

    /// Ticks since entry `i` was last used.
    fn idle(&self, i: usize) -> u64 {
        self.tick.saturating_sub(self.queues.node(i).seen())
    }

    /// Whether entry `i` is dead: idle beyond the dead horizon and, if the sketch still counts
    /// its key (an estimate of at least [`REUSE_EVIDENCE`]), for longer than the sample period
    /// over that estimate (see the module docs).
    fn is_dead(&self, i: usize) -> bool {
        let idle = self.idle(i);
        if idle.saturating_mul(100) <= self.horizon.saturating_mul(self.peak as u64) {
            return false;
        }
        let estimate = self.sketch.frequency(self.queues.meta(i).hash);
        estimate < REUSE_EVIDENCE || idle.saturating_mul(u64::from(estimate)) > self.sample()
    }

    /// The sample period `S` in ticks: the sketch is halved every `S` ticks.
    fn sample(&self) -> u64 {
        SAMPLE_FACTOR * self.peak.max(1) as u64
    }

    /// Moves the dead horizon after a key that had left came back (see the module docs).
    fn adapt_horizon(&mut self, was_dead: bool) {
        let (dead, other) = self.ghost.counts();
        if was_dead {
            let step = HORIZON_STEP * (other / dead.max(1)).max(1);
            self.horizon = (self.horizon + step).min(HORIZON_MAX);
        } else {
            let step = HORIZON_STEP * (dead / other.max(1)).max(1);
            self.horizon = self.horizon.saturating_sub(step).max(HORIZON_MIN);
        }
    }

    /// Whether candidate `c` is admitted over victim `v` (see the module docs).
    fn admit(&mut self, c: usize, v: usize) -> bool {
        if self.is_dead(v) {
            return true;
        }
        if self
            .queues
            .meta(c)
            .reuse_gap()
            .is_some_and(|gap| gap < self.idle(v))
        {
            return true;
        }
        let candidate = self.sketch.frequency(self.queues.meta(c).hash);
        let victim = self.sketch.frequency(self.queues.meta(v).hash);
        let idle = self.idle(v).max(1);
        let peak = self.peak.max(1) as u64;
        let cap = 2 * SAMPLE_FACTOR * peak / idle;
        let victim = victim.min(u8::try_from(cap).unwrap_or(MAX_COUNT));
        let margin = u8::from(10 * idle < RECENT_TENTHS * peak);
        if candidate > victim + margin {
            return true;
        }
        candidate >= WARM && self.rng.next_u64() & 127 == 0
    }

    /// Records the departure of entry `i` in the ghost.
    fn depart(&mut self, i: usize) {
        let record = Record {
            hash: self.queues.meta(i).hash,
            seen: self.queues.node(i).seen(),
            dead: self.is_dead(i),
        };
        self.ghost.push(record, ghost_capacity(self.peak));
    }

    /// Unlinks entry `i` (from its queue, if any) and drops it from the index.
    fn take(&mut self, i: usize) -> (Bytes, Entry) {
        self.queues.unlink(i);
        let (node, meta) = self.queues.remove(i);
        let link = Link::to(i);
        if let Ok(slot) = self.index.find_entry(meta.hash, |&j| j == link) {
            slot.remove();
        }
        let (key, entry) = node.into_parts(meta);
        self.bytes -= entry.size;
        (key, entry)
    }

    /// Checks links, byte counts and the index (tests only); returns every entry.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) -> Vec<(Bytes, Entry)> {
        let mut all = Vec::new();
        let mut total = 0;
        for queue in [Queue::Window, Queue::Probation, Queue::Protected] {
            let Some(&list) = self.queues.list(queue) else {
                continue;
            };
            let (mut len, mut bytes, mut prev) = (0, 0, NIL);
            for i in self.queues.iter(list) {
                let (node, meta) = (self.queues.node(i), self.queues.meta(i));
                assert_eq!(node.queue, queue, "node in the wrong list");
                assert_eq!(meta.prev(), prev, "broken back link");
                assert!(node.hits() <= MAX_HITS);
                assert!(node.seen() <= self.tick, "last use in the future");
                assert_eq!(self.find(&meta.key, meta.hash), Some(i), "index disagrees");
                assert_eq!(meta.hash, self.hash(&meta.key));
                len += 1;
                bytes += node.size(meta);
                prev = i;
                all.push((meta.key.clone(), node.entry(meta)));
            }
            assert_eq!(list.tail, prev, "tail is not the last node");
            assert_eq!((list.len, list.bytes), (len, bytes), "list counts");
            total += bytes;
        }
        assert_eq!(all.len(), self.len(), "a node outside every list");
        assert!(
            self.queues.vacant_metas_hold_nothing(),
            "a removed entry's key is still held"
        );
        assert_eq!(self.index.len(), self.len());
        assert_eq!(total, self.bytes);
        assert!(self.peak >= self.len());
        assert!((HORIZON_MIN..=HORIZON_MAX).contains(&self.horizon));
        let cap = usize::try_from(self.budget / SKETCH_BUDGET_DIVISOR).unwrap_or(usize::MAX);
        assert!(
            self.sketch.memory_bytes() <= cap.max(64),
            "sketch over its bound"
        );
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of every entry in these tests (each value is padded to it).
    const SIZE: u64 = crate::store::ENTRY_OVERHEAD + 64;

    /// The property tests' reference model shares `percent_of` and `SplitMix` with the policy,
    /// so they are checked here against independent answers: exact wide arithmetic, and the
    /// published output of splitmix64 from seed 0 (Vigna's reference implementation).
    #[test]
    fn percent_of_is_the_exact_rounded_down_share() {
        let sizes = [
            0,
            1,
            99,
            100,
            101,
            12_345,
            1 << 40,
            u64::MAX / 100,
            u64::MAX - 1,
            u64::MAX,
        ];
        for bytes in sizes {
            for percent in [0, 1, 10, 33, 50, 80, 99, 100] {
                let exact = u128::from(bytes) * u128::from(percent) / 100;
                assert_eq!(
                    u128::from(percent_of(bytes, percent)),
                    exact,
                    "{percent}% of {bytes}"
                );
            }
        }
    }

    #[test]
    fn splitmix_gives_the_reference_sequence() {
        let mut rng = SplitMix(0);
        let got: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            [
                0xe220_a839_7b1d_cdaf,
                0x6e78_9e6a_a1b9_65f4,
                0x06c4_5d18_8009_454f
            ]
        );
    }

    /// A policy with room for `entries` entries, and the store's hit count.
    struct Harness {
        lfu: TinyLfu,
        hits: u64,
    }

    impl Harness {
        fn new(entries: u64) -> Self {
            let lfu = TinyLfu::new(entries * SIZE, 7, 2 * entries as usize);
            Harness { lfu, hits: 0 }
        }

        /// Requests `key` with demand fill, as the store does; returns whether it hit.
        fn request(&mut self, key: &str) -> bool {
            let now = Timestamp::from_millis(0);
            if let Access::Hit { .. } = self.lfu.access(key.as_bytes(), now) {
                self.hits += 1;
                return true;
            }
            let padding = usize::try_from(SIZE - crate::store::ENTRY_OVERHEAD).unwrap_or(0);
            let value = Bytes::from(vec![0; padding - key.len()]);
            let entry = Entry {
                size: crate::store::entry_size(key.len(), value.len()),
                value,
                expires_at: None,
                seq: 0,
            };
            let key = Bytes::copy_from_slice(key.as_bytes());
            let hash = self.lfu.hash(&key);
            let (i, _) = self.lfu.insert(key, hash, entry, self.hits);
            self.lfu.evict(i, |_, _| {});
            self.lfu.check_invariants();
            false
        }
    }

    /// A loop 1.4 times the policy's size with one more key, `old`, requested three times per
    /// round (more often than the loop's keys), then a one-pass scan of ten times the policy's
    /// size; with `pin_horizon` the dead horizon is held at its ceiling. Returns the horizon after
    /// the loop and whether `old` outlived the scan.
    fn loop_then_popular_key_then_scan(pin_horizon: bool) -> (u64, bool) {
        let mut h = Harness::new(50);
        let mut old_hits = 0;
        for _ in 0..30 {
            for _ in 0..3 {
                old_hits += u32::from(h.request("old"));
            }
            for i in 0..70 {
                h.request(&format!("loop{i}"));
                if pin_horizon {
                    h.lfu.horizon = HORIZON_MAX;
                }
            }
        }
        assert!(
            old_hits >= 80,
            "old was not kept during the loop: {old_hits} hits"
        );
        let horizon = h.lfu.horizon;
        for i in 0..500 {
            h.request(&format!("scan{i}"));
            if pin_horizon {
                h.lfu.horizon = HORIZON_MAX;
            }
        }
        (horizon, h.lfu.peek(b"old", Timestamp::ZERO).is_some())
    }

    #[test]
    fn a_key_that_comes_back_sooner_than_the_victim_was_used_is_admitted_despite_its_count() {
        let mut h = Harness::new(100);
        for _ in 0..3 {
            for i in 0..100 {
                h.request(&format!("k{i}"));
            }
        }
        // Requested once, `fresh` loses its duel to a resident with a higher count.
        h.request("fresh");
        h.request("other");
        assert!(
            h.lfu.peek(b"fresh", Timestamp::ZERO).is_none(),
            "a one-off key was admitted"
        );
        // It comes back two ticks after its last use, when every resident has been idle for
        // far longer: its reuse gap admits it although its count (2) is still the lower.
        h.request("fresh");
        let i = h
            .lfu
            .find(b"fresh", h.lfu.hash(b"fresh"))
            .expect("just stored");
        assert_eq!(h.lfu.queues.meta(i).reuse_gap(), Some(2));
        h.request("other2");
        assert!(
            h.lfu.peek(b"fresh", Timestamp::ZERO).is_some(),
            "the returning key was refused"
        );
        // A key that comes back after longer than the victims have been idle is not helped.
        h.request("late");
        h.request("other3");
        assert!(h.lfu.peek(b"late", Timestamp::ZERO).is_none());
        for i in 0..100 {
            h.request(&format!("k{i}"));
        }
        h.request("late");
        h.request("other4");
        assert!(
            h.lfu.peek(b"late", Timestamp::ZERO).is_none(),
            "a long reuse gap was admitted"
        );
    }

    #[test]
    fn an_entry_the_sketch_still_counts_is_dead_only_once_idle_beyond_its_expected_reuse() {
        let mut h = Harness::new(50);
        for i in 0..50 {
            h.request(&format!("k{i}"));
        }
        assert_eq!(h.lfu.peak, 50);
        h.lfu.horizon = HORIZON_MIN; // 150 ticks
        let sample = h.lfu.sample(); // 600 ticks
        let hash = h.lfu.hash(b"k0");
        let i = h.lfu.find(b"k0", hash).expect("stored");
        let seen = h.lfu.queues.node(i).seen();
        // No count left (as after the sketch aged it away): dead as soon as past the horizon.
        // The sketch restarts when the peak grows, so its counts are set here.
        h.lfu.sketch = Sketch::new(h.lfu.sketch.words());
        assert_eq!(h.lfu.sketch.frequency(hash), 0);
        h.lfu.tick = seen + 150;
        assert!(!h.lfu.is_dead(i), "within the horizon");
        h.lfu.tick = seen + 151;
        assert!(
            h.lfu.is_dead(i),
            "a key with no count is dead past the horizon"
        );
        // Seen once: expected back within S = 600 ticks, so dead only after that.
        h.lfu.sketch.increment(hash);
        assert_eq!(h.lfu.sketch.frequency(hash), 1);
        assert!(!h.lfu.is_dead(i), "a key seen once died at the horizon");
        h.lfu.tick = seen + sample;
        assert!(!h.lfu.is_dead(i));
        h.lfu.tick = seen + sample + 1;
        assert!(
            h.lfu.is_dead(i),
            "a key seen once outlived its expected reuse"
        );
        // Seen twice: expected back within S / 2 = 300 ticks.
        h.lfu.sketch.increment(hash);
        h.lfu.tick = seen + sample / 2;
        assert!(!h.lfu.is_dead(i));
        h.lfu.tick = seen + sample / 2 + 1;
        assert!(h.lfu.is_dead(i));
    }

    #[test]
    fn keys_that_come_back_lower_the_horizon_then_a_dead_popular_key_is_evicted() {
        // The loop's keys are evicted for room and come back: the horizon falls to its floor (3
        // turnovers). `old`, idle for 10 turnovers during the scan, is then dead: the sweep
        // hands it over and a scanned key (count 1) takes its place despite its count.
        let (horizon, held) = loop_then_popular_key_then_scan(false);
        assert_eq!(horizon, HORIZON_MIN);
        assert!(!held, "a dead popular key held on");
        // The same requests with the horizon held at 64 turnovers keep it: its count wins every
        // duel against the scan.
        let (horizon, held) = loop_then_popular_key_then_scan(true);
        assert_eq!(horizon, HORIZON_MAX);
        assert!(held, "the control lost the popular key too");
    }
}
