//! Per-group counters of the node runtime (the stores count their own hits, evictions, …).

use std::sync::atomic::{AtomicU64, Ordering};

/// Events of the request path that the stores cannot see.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Loader calls.
    pub loads: AtomicU64,
    /// Loader calls that failed or timed out.
    pub load_errors: AtomicU64,
    /// Gets forwarded to the key's owner.
    pub peer_gets: AtomicU64,
    /// Forwarded requests that failed in transport.
    pub peer_errors: AtomicU64,
    /// Gets served by the local loader because the owner was unreachable.
    pub local_fallbacks: AtomicU64,
    /// Gets that joined a load or fetch already in flight.
    pub coalesced: AtomicU64,
    /// Requests refused for a limit or overload.
    pub rejected: AtomicU64,
    /// Sets and deletes forwarded to the owner.
    pub peer_writes: AtomicU64,
    /// Requests received already forwarded by a peer.
    pub forwarded_in: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
