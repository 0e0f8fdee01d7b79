//! The ordered record of a run: every request and response, load, membership change, fault and
//! phase, each stamped with simulated time. The checkers read it; its hash is the run's identity.
//!
//! Recording order is deterministic: turmoil steps hosts in a fixed order on one thread, each
//! host runs on a current-thread runtime with a seeded rng, and the driver records only between
//! steps. Times are simulated (turmoil's clock), never the wall clock.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use xxhash_rust::xxh3::Xxh3;

use crate::faults::FaultAction;

/// Entries kept at most; a run that records more fails (see [`History::overflowed`]).
pub const MAX_ENTRIES: usize = 4_000_000;

/// What the workload asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Read a key.
    Get {
        /// The key.
        key: String,
    },
    /// Write a key.
    Set {
        /// The key.
        key: String,
        /// A value unique to this request.
        value: String,
        /// Explicit lifetime; `None` uses the group default.
        ttl_ms: Option<u64>,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: String,
    },
}

impl Request {
    /// The key the request is about.
    pub fn key(&self) -> &str {
        match self {
            Request::Get { key } | Request::Set { key, .. } | Request::Delete { key } => key,
        }
    }
}

/// Why a request failed, as far as a client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailKind {
    /// No connection could be made to the node.
    Connect,
    /// No answer within the deadline (the client's timer, or the node said DEADLINE_EXCEEDED).
    Timeout,
    /// The node answered UNAVAILABLE, or the connection broke.
    Unavailable,
    /// The node refused for a limit (RESOURCE_EXHAUSTED).
    Overloaded,
    /// The request was judged invalid.
    Invalid,
    /// The client gave up on purpose before its deadline (cancelled mid-flight).
    Cancelled,
    /// Any other error status.
    Other,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A get returned a value.
    Value {
        /// The value.
        value: String,
        /// Remaining lifetime the node reported.
        ttl_ms: Option<u64>,
    },
    /// A get found nothing.
    Miss,
    /// A set was acknowledged.
    Stored,
    /// A delete was acknowledged.
    Deleted {
        /// Whether the owner held the key.
        existed: bool,
    },
    /// The request failed.
    Failed {
        /// The class of failure.
        kind: FailKind,
        /// What the client said (shortened).
        message: String,
    },
}

/// Which part of the run a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Random workload while faults happen.
    Safety,
    /// Data-path probes after convergence.
    Probe,
    /// The verifier's writes after convergence.
    L2Write,
    /// The verifier's reads of every written key on every live node.
    L2Read,
    /// The verifier's targeted scenarios after convergence (read sweep, slow load during a
    /// write, ownership moving away and back, read–delete–read, loader trouble, hops = 1).
    Verify,
}

/// What one loader call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadResult {
    /// A value, with its own lifetime (`None`: the group default).
    Value {
        /// The value.
        value: String,
        /// Lifetime the loader asked for.
        ttl_ms: Option<u64>,
    },
    /// The key does not exist in the source.
    Missing,
    /// The source failed.
    Failed,
    /// The loader panicked.
    Panicked,
}

/// A peer call's method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerMethod {
    /// A forwarded get.
    Get,
    /// A forwarded set.
    Set,
    /// A forwarded delete.
    Delete,
    /// A notice to a peer that a write was applied (sent by the owner after writes, whoever
    /// asked for them: not a forward).
    Invalidate,
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client sent a request (`op` pairs it with its [`Event::Return`]).
    Invoke {
        /// Request id, unique in the run.
        op: u64,
        /// Client host and worker.
        client: String,
        /// Node addressed.
        node: String,
        /// What was asked.
        request: Request,
        /// Phase of the run.
        phase: Phase,
        /// When the connection used was established (µs of simulated time).
        conn_since_us: u64,
        /// The request's whole deadline (connect plus call), in ms.
        deadline_ms: u64,
        /// Whether the client marked the request as forwarded by a peer (`hops = 1`).
        as_peer: bool,
    },
    /// A request ended.
    Return {
        /// Request id.
        op: u64,
        /// How it ended.
        outcome: Outcome,
    },
    /// A node incarnation started serving.
    NodeStarted {
        /// Node id.
        node: String,
        /// Incarnation.
        inc: u64,
    },
    /// A node incarnation stopped gracefully (a crash is a [`Event::Fault`]).
    NodeStopped {
        /// Node id.
        node: String,
        /// Incarnation.
        inc: u64,
        /// What the shutdown achieved.
        how: String,
    },
    /// A node's routing members changed (sampled).
    View {
        /// Node id.
        node: String,
        /// Incarnation.
        inc: u64,
        /// Members as (id, incarnation), sorted.
        members: Vec<(String, u64)>,
    },
    /// A loader call began.
    LoadStart {
        /// Node id.
        node: String,
        /// Incarnation.
        inc: u64,
        /// Key loaded.
        key: String,
        /// Calls for this key running on this node incarnation, this one included.
        concurrent: u32,
        /// Calls of any key running on this node incarnation, this one included.
        node_concurrent: u32,
        /// The loader call's number on this incarnation (pairs it with its end).
        call: u64,
    },
    /// A loader call returned.
    LoadEnd {
        /// Node id.
        node: String,
        /// Incarnation.
        inc: u64,
        /// Key loaded.
        key: String,
        /// The loader call's number.
        call: u64,
        /// What it produced.
        result: LoadResult,
    },
    /// A node called a peer (recorded by the recording transport).
    PeerCall {
        /// Calling node.
        node: String,
        /// Its incarnation.
        inc: u64,
        /// Number of the call on this incarnation (pairs it with its [`Event::PeerReturn`]).
        call: u64,
        /// Peer called.
        peer: String,
        /// Method.
        method: PeerMethod,
        /// Key.
        key: String,
        /// Whether the request was marked forwarded.
        forwarded: bool,
    },
    /// A peer call ended.
    PeerReturn {
        /// Calling node.
        node: String,
        /// Its incarnation.
        inc: u64,
        /// Number of the call.
        call: u64,
        /// `ok`, `miss` or the error (shortened).
        result: String,
    },
    /// A node's main store held keys the node does not own in its own view (sampled).
    ForeignKeys {
        /// Node id.
        node: String,
        /// Incarnation.
        inc: u64,
        /// The keys, sorted.
        keys: Vec<String>,
    },
    /// Stats of a node's group (sampled, and whenever bytes exceed the budget).
    Stats {
        /// Node id.
        node: String,
        /// Incarnation.
        inc: u64,
        /// Bytes held (main store and hot cache).
        bytes: u64,
        /// Budget (main store and hot cache).
        budget: u64,
        /// Bytes held and budget of each store: the main store, then the hot cache if any.
        stores: Vec<(u64, u64)>,
        /// Bytes of each store recounted from its listed entries (key + value + overhead),
        /// independently of the store's own counter.
        counted: Vec<u64>,
        /// Evictions so far.
        evictions: u64,
        /// Gets that fell back to a local load, so far.
        local_fallbacks: u64,
        /// Failed peer calls, so far.
        peer_errors: u64,
        /// Requests refused (limits), so far.
        rejected: u64,
    },
    /// Something the simulated discovery service did.
    Registry(String),
    /// A node's buggify point stalled a request (a slow step: excuses a timeout it caused).
    Stalled {
        /// The node that stalled.
        node: String,
        /// Its incarnation.
        inc: u64,
        /// The point's name.
        point: String,
        /// How long, in ms.
        ms: u64,
    },
    /// A node's buggify point dropped a message (a lost invalidation: a fault like a lost
    /// packet, which lets a copy outlive a write for up to its hot lifetime).
    Dropped {
        /// The node that dropped it.
        node: String,
        /// Its incarnation.
        inc: u64,
        /// The point's name.
        point: String,
    },
    /// A fault was injected or repaired (by the driver).
    Fault(FaultAction),
    /// Every fault was repaired; convergence is now demanded within `bound_ms`.
    Heal {
        /// The convergence bound.
        bound_ms: u64,
        /// Nodes expected live.
        live: Vec<String>,
    },
    /// Every live node's view equals the live set and all agree on owners.
    Converged {
        /// Time since the heal.
        after_ms: u64,
    },
    /// The views did not converge within the bound.
    ConvergenceTimeout {
        /// What differed.
        detail: String,
    },
    /// The verifier's probes of every node-to-node path.
    DataPath {
        /// Probe rounds run.
        rounds: u32,
        /// Whether the last round saw no fallback and no peer error.
        ready: bool,
    },
    /// The eviction counter of the owner of an L2 key, after its write and after its reads.
    OwnerEvictions {
        /// The key.
        key: String,
        /// Its owner.
        owner: String,
        /// The owner's evictions so far.
        evictions: u64,
    },
    /// The verifier could not get a write acknowledged after convergence.
    WriteNotAcknowledged {
        /// The key.
        key: String,
    },
    /// A host's software failed or panicked, or the run did not finish in its step budget.
    HostError(String),
}

/// What [`History::invoke`] records about a request being sent.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// Client host and worker.
    pub client: &'a str,
    /// Node addressed.
    pub node: &'a str,
    /// What is asked.
    pub request: Request,
    /// Phase of the run.
    pub phase: Phase,
    /// When the connection used was established.
    pub conn_since: Duration,
    /// The request's whole deadline (connect plus call).
    pub deadline: Duration,
    /// Whether the client marks it as forwarded by a peer (`hops = 1`).
    pub as_peer: bool,
}

/// One recorded event and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Simulated time, in microseconds since the run started.
    pub at_us: u64,
    /// What happened.
    pub event: Event,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>9.3}s  {:?}", self.at_us as f64 / 1e6, self.event)
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: Vec<Entry>,
    next_op: u64,
    driver_now_us: u64,
    overflowed: bool,
}

/// The shared, append-only history of one run. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Sets the time the driver (outside any host) records at.
    pub fn set_driver_time(&self, now: Duration) {
        self.inner.lock().driver_now_us = micros(now);
    }

    /// Records `event` now: the current host's simulated time, or the driver's.
    pub fn record(&self, event: Event) {
        let host_now = turmoil::sim_elapsed();
        let mut inner = self.inner.lock();
        let at_us = host_now.map_or(inner.driver_now_us, micros);
        push(&mut inner, Entry { at_us, event });
    }

    /// Records an [`Event::Invoke`] with a fresh op id, which it returns.
    pub fn invoke(&self, call: Invocation<'_>) -> u64 {
        let host_now = turmoil::sim_elapsed();
        let mut inner = self.inner.lock();
        let at_us = host_now.map_or(inner.driver_now_us, micros);
        let op = inner.next_op;
        inner.next_op += 1;
        let event = Event::Invoke {
            op,
            client: call.client.to_owned(),
            node: call.node.to_owned(),
            request: call.request,
            phase: call.phase,
            conn_since_us: micros(call.conn_since),
            deadline_ms: millis(call.deadline),
            as_peer: call.as_peer,
        };
        push(&mut inner, Entry { at_us, event });
        op
    }

    /// A copy of every entry, in order.
    pub fn entries(&self) -> Vec<Entry> {
        self.inner.lock().entries.clone()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether entries were dropped past [`MAX_ENTRIES`].
    pub fn overflowed(&self) -> bool {
        self.inner.lock().overflowed
    }

    /// XXH3-64 over every entry (time and event), in order: equal for two runs exactly when they
    /// recorded the same thing at the same simulated times.
    pub fn trace_hash(&self) -> u64 {
        trace_hash(&self.inner.lock().entries)
    }
}

/// XXH3-64 over `entries`, in order (each as `at_us|{event:?}` and a newline, formatted
/// straight into the hasher).
pub fn trace_hash(entries: &[Entry]) -> u64 {
    use std::fmt::Write as _;
    struct Hashing(Xxh3);
    impl fmt::Write for Hashing {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.update(s.as_bytes());
            Ok(())
        }
    }
    let mut hasher = Hashing(Xxh3::new());
    for entry in entries {
        // Writing into a hasher cannot fail.
        let _ = writeln!(hasher, "{}|{:?}", entry.at_us, entry.event);
    }
    hasher.0.digest()
}

fn push(inner: &mut Inner, entry: Entry) {
    if inner.entries.len() >= MAX_ENTRIES {
        inner.overflowed = true;
        return;
    }
    inner.entries.push(entry);
}

/// The current host's simulated time since the run started (zero outside a host).
pub fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// A duration in whole microseconds (saturating).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A duration in whole milliseconds (saturating).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_with_driver_time_outside_hosts() {
        let h = History::new();
        h.set_driver_time(Duration::from_millis(5));
        h.record(Event::Registry("a".into()));
        let call = || Invocation {
            client: "c",
            node: "n",
            request: Request::Get { key: "k".into() },
            phase: Phase::Safety,
            conn_since: Duration::ZERO,
            deadline: Duration::from_secs(1),
            as_peer: false,
        };
        let op = h.invoke(call());
        assert_eq!(op, 0);
        let entries = h.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].at_us, 5_000);
        let same = History::new();
        same.set_driver_time(Duration::from_millis(5));
        same.record(Event::Registry("a".into()));
        same.invoke(call());
        assert_eq!(h.trace_hash(), same.trace_hash());
        same.record(Event::Registry("b".into()));
        assert_ne!(h.trace_hash(), same.trace_hash());
    }
}
