//! What a group reports: its counters (declared once, here) and the state of each store tier.

use crate::store::StoreStats;

crate::counters! {
    /// Events of one group on one node since it started. Each counter is bumped in exactly one
    /// place, by what its doc says.
    pub struct GroupCounters / AtomicGroupCounters {
        /// Gets answered from this node's main store (keys it owns).
        hits,
        /// Gets answered from a hot copy of a value another node owns.
        hot_hits,
        /// Gets answered "not found" from a remembered loader miss (penetration protection).
        miss_hits,
        /// Gets that found nothing usable on this node and went on to a load or a fetch.
        misses,
        /// Gets that joined a load or fetch already in flight for their key.
        coalesced,
        /// Loader runs started on this node.
        loads,
        /// Loader runs that found no value for their key.
        load_misses,
        /// Loader runs that failed: an error, a timeout, an unusable value or a panic.
        load_errors,
        /// Loader runs that panicked (also counted in `load_errors`).
        loader_panics,
        /// Gets sent to the key's owner.
        fetches,
        /// Gets sent to the key's owner that ended in an error, the owner's or the path's.
        fetch_errors,
        /// Loads run on this node because the key's owner could not be reached.
        fallbacks,
        /// Forwarded gets for keys this node does not own, served here without forwarding.
        stray_gets,
        /// Sets and deletes applied on this node as the key's owner.
        writes,
        /// Sets and deletes sent to the key's owner.
        forwarded_writes,
        /// Forwarded writes refused because this node does not own the key.
        not_owner,
        /// Invalidations sent to peers after a write applied here.
        invalidations_sent,
        /// Invalidations that did not reach their peer in time.
        invalidation_failures,
        /// Invalidations received (each drops this node's copies of one key).
        invalidations_received,
        /// Loads and fetches whose result was not kept: a write, a ring change or a fencing
        /// happened while they ran.
        superseded,
        /// Requests refused because a bound was reached: requests in flight, callers waiting on
        /// one key, loads running on the node. One per refused caller (when a flight's start is
        /// refused, each of its waiters counts).
        overloaded,
        /// Requests refused as invalid: an empty or oversized key or value, a zero TTL.
        invalid,
        /// Requests received from a peer (forwarded once).
        forwarded_in,
        /// Times this node dropped all its data of the group after learning it had been out of
        /// the membership.
        fenced,
    }
}

/// The stores a group keeps, each with its own byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Values of keys this node owns.
    Main,
    /// Bounded-lifetime copies of values other nodes own.
    Hot,
    /// Remembered loader misses (keys only).
    Misses,
}

impl Tier {
    /// Every tier, in report order.
    pub const ALL: [Tier; 3] = [Tier::Main, Tier::Hot, Tier::Misses];

    /// The tier's name in reports (`main`, `hot`, `misses`).
    pub fn name(self) -> &'static str {
        match self {
            Tier::Main => "main",
            Tier::Hot => "hot",
            Tier::Misses => "misses",
        }
    }

    /// The tier called `name`.
    pub fn from_name(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One store tier of a group: its budget and its store's own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierStats {
    /// Which tier.
    pub tier: Tier,
    /// Its byte budget.
    pub budget_bytes: u64,
    /// Its store's counters, bytes and entries.
    pub store: StoreStats,
}

/// Everything one group reports on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// The group's name.
    pub group: String,
    /// Event counters.
    pub counters: GroupCounters,
    /// The tiers the group has (main always; hot and misses when enabled), in [`Tier::ALL`] order.
    pub tiers: Vec<TierStats>,
}

impl GroupStats {
    /// The stats of `tier`, if the group has it.
    pub fn tier(&self, tier: Tier) -> Option<&TierStats> {
        self.tiers.iter().find(|t| t.tier == tier)
    }

    /// Bytes held over all tiers.
    pub fn bytes(&self) -> u64 {
        self.tiers.iter().map(|t| t.store.bytes).sum()
    }

    /// Byte budget over all tiers.
    pub fn budget_bytes(&self) -> u64 {
        self.tiers.iter().map(|t| t.budget_bytes).sum()
    }

    /// Entries held over all tiers.
    pub fn entries(&self) -> u64 {
        self.tiers.iter().map(|t| t.store.entries).sum()
    }

    /// Capacity evictions over all tiers.
    pub fn evictions(&self) -> u64 {
        self.tiers.iter().map(|t| t.store.evictions).sum()
    }
}

/// Stats of one node: its id and one [`GroupStats`] per group, ordered by group name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Id of the node that answered.
    pub node_id: String,
    /// One entry per group.
    pub groups: Vec<GroupStats>,
}
