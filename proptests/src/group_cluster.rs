//! A small cluster of group state machines driven step by step, and the reference model of the
//! consistency rules it must obey (DESIGN.md S3, S4, S7, S8 without faults).
//!
//! Each node is a `lcache_core::group::Group`. The harness plays the runtime: it starts the loads
//! and fetches the groups ask for, but completes them in whatever order the test chooses, with
//! simulated time advancing in between, so every interleaving of loads, fetches, writes and
//! membership changes is reachable. Writes are carried out as the node runtime does: applied on
//! the owner (forwarded there if needed), every other live member invalidated, then acknowledged,
//! then the forwarding node forgets its copies.
//!
//! The model gives every value an *origin*: the step at which the write that made it was applied,
//! or at which the load that produced it started. A get invoked after a write was acknowledged
//! may only return a value whose origin is that write or later, never past its lifetime, and
//! never reporting more lifetime than it has left.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lcache_core::group::{
    FetchOutcome, Fetched, FlightRef, GetStep, Group, GroupSettings, HotSettings, LoadOutcome,
    LoadPermit, LoadSlots, MissSettings, Refusal, Reply, Work, WriteStep,
};
use lcache_core::{Member, MemberId, Policy, RingChange, RingConfig, Router, Timestamp};

/// Nodes in the cluster.
pub const NODES: usize = 3;
/// Keys `k0..k3`; `k3` does not exist in the source (its loads find nothing).
pub const KEYS: usize = 4;
/// Lifetime of hot copies.
pub const HOT_LIFETIME_MS: u64 = 100;
/// Lifetime the loader gives its values.
pub const LOADED_TTL_MS: u64 = 300;
/// How long a loader miss is remembered.
pub const MISS_TTL_MS: u64 = 80;
/// Shortest lifetime a set gives (see the test's strategy).
pub const MIN_SET_TTL_MS: u64 = 50;

/// One thing the test does.
#[derive(Debug, Clone)]
pub enum Op {
    /// A client get on a node.
    Get {
        /// Which node.
        node: usize,
        /// Which key.
        key: usize,
    },
    /// A client set on a node (lifetime in ms, or none).
    Set {
        /// Which node.
        node: usize,
        /// Which key.
        key: usize,
        /// Lifetime.
        ttl_ms: Option<u64>,
    },
    /// A client delete on a node.
    Delete {
        /// Which node.
        node: usize,
        /// Which key.
        key: usize,
    },
    /// Time passes.
    Advance(u64),
    /// One load or fetch in progress completes (which one: this index modulo how many).
    Complete(usize),
    /// A node leaves the ring (every view at once) if it is in, or comes back (fenced, as a node
    /// whose registration was lost) if it is out. At least one node always stays.
    Toggle(usize),
}

/// What the runtime waits on for a flight: a client call, or a peer's fetch (received by the
/// owner at `received_ms`).
#[derive(Debug, Clone)]
enum Waiter {
    Client(u64),
    Fetch {
        node: usize,
        flight: FlightRef,
        received_ms: u64,
    },
}

/// The harness's error type: refusals (none expected here) and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub Refusal);

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Self {
        Refused(r)
    }
}

type G = Group<Waiter, Refused>;

/// A load or fetch in progress, or an owner's answer on its way back.
#[derive(Debug)]
enum Pending {
    Load {
        node: usize,
        flight: FlightRef,
        _permit: LoadPermit,
        /// The value it will produce (named by its origin), or `None` for an absent key.
        value: Option<String>,
    },
    Answer {
        node: usize,
        flight: FlightRef,
        reply: Reply<Refused>,
    },
}

/// Where a value came from.
#[derive(Debug, Clone, Copy)]
struct Origin {
    step: u64,
    /// When it expires (ms), if ever; for a loaded value, set when the load completes.
    expires_at: Option<u64>,
}

/// A write acknowledged to a client.
#[derive(Debug, Clone, Copy)]
struct Acked {
    /// Step at which the owner applied it.
    step: u64,
    /// Step at which it was acknowledged.
    acked: u64,
}

/// A client get still waiting.
#[derive(Debug, Clone, Copy)]
struct Call {
    node: usize,
    key: usize,
    invoked_step: u64,
    invoked_ms: u64,
}

/// The cluster, the runtime's pending work and the model.
#[allow(missing_debug_implementations)]
pub struct Cluster {
    groups: Vec<G>,
    members: Vec<Member>,
    in_ring: Vec<bool>,
    slots: Arc<LoadSlots>,
    now_ms: u64,
    step: u64,
    pending: Vec<Pending>,
    calls: BTreeMap<u64, Call>,
    next_call: u64,
    origins: BTreeMap<String, Origin>,
    /// Per key, every acknowledged write in acknowledgement order.
    writes: Vec<Vec<Acked>>,
    /// Loads running per (node, key).
    running_loads: BTreeMap<(usize, usize), u32>,
    /// Step of the latest ring change (a hand-off drops values, as an eviction does).
    ring_changed_at: u64,
    /// Gets answered so far (for the tests to see they test something).
    pub answered: u64,
    /// What happened, one line per event, shown when the model breaks.
    trace: Vec<String>,
}

fn key_bytes(key: usize) -> Bytes {
    Bytes::from(format!("k{key}"))
}

fn key_index(key: &[u8]) -> usize {
    key.get(1..)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .unwrap_or(usize::MAX)
}

fn settings(hash_seed: u64) -> GroupSettings {
    GroupSettings {
        name: "g".into(),
        budget_bytes: 1 << 20,
        policy: Policy::lru2(),
        shards: 2,
        default_ttl: None,
        hot: Some(HotSettings {
            budget_bytes: 1 << 18,
            lifetime: Duration::from_millis(HOT_LIFETIME_MS),
        }),
        misses: Some(MissSettings {
            budget_bytes: 1 << 16,
            ttl: Duration::from_millis(MISS_TTL_MS),
        }),
        max_waiters_per_key: 1_000,
        has_loader: true,
        hash_seed,
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Cluster {
    /// Three nodes, all in the ring.
    pub fn new() -> Self {
        let members: Vec<Member> = (0..NODES)
            .map(|i| Member::new(format!("n{i}"), format!("n{i}:1"), 0))
            .collect();
        let slots = LoadSlots::new(1_000);
        let mut cluster = Cluster {
            groups: Vec::new(),
            in_ring: vec![true; NODES],
            members,
            slots,
            now_ms: 0,
            step: 0,
            pending: Vec::new(),
            calls: BTreeMap::new(),
            next_call: 0,
            origins: BTreeMap::new(),
            writes: vec![Vec::new(); KEYS],
            running_loads: BTreeMap::new(),
            ring_changed_at: 0,
            answered: 0,
            trace: Vec::new(),
        };
        for i in 0..NODES {
            let router = Arc::new(cluster.router_of(i));
            let group = G::new(settings(i as u64), router, cluster.slots.clone())
                .unwrap_or_else(|e| panic!("valid settings: {e}"));
            cluster.groups.push(group);
        }
        cluster
    }

    /// Node `i`'s router: itself plus every other node in the ring.
    fn router_of(&self, i: usize) -> Router {
        let mut router = Router::new(self.members[i].clone(), RingConfig { vnodes: 16 });
        let others: Vec<RingChange> = (0..NODES)
            .filter(|&j| j != i && self.in_ring[j])
            .map(|j| RingChange::Added(self.members[j].clone()))
            .collect();
        router.apply(&others);
        router
    }

    fn node_of(&self, id: &MemberId) -> usize {
        self.members
            .iter()
            .position(|m| m.id == *id)
            .unwrap_or_else(|| panic!("unknown member {id}"))
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now_ms)
    }

    fn note(&mut self, line: String) {
        self.trace
            .push(format!("[step {} @{}ms] {line}", self.step, self.now_ms));
    }

    /// The trace of the run so far.
    pub fn trace(&self) -> String {
        self.trace.join("\n")
    }

    /// Carries out `op`; `Err` with a description when the model is broken.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        self.step += 1;
        self.note(format!("{op:?}"));
        match *op {
            Op::Get { node, key } => self.get(node % NODES, key % KEYS),
            Op::Set { node, key, ttl_ms } => self.write(node % NODES, key % KEYS, Some(ttl_ms)),
            Op::Delete { node, key } => self.write(node % NODES, key % KEYS, None),
            Op::Advance(ms) => {
                self.now_ms += ms;
                Ok(())
            }
            Op::Complete(i) => self.complete(i),
            Op::Toggle(node) => {
                self.toggle(node % NODES);
                Ok(())
            }
        }
    }

    /// Completes every pending load and fetch (in order), so every call is answered.
    pub fn drain(&mut self) -> Result<(), String> {
        let mut rounds = 0;
        while !self.pending.is_empty() {
            rounds += 1;
            if rounds > 10_000 {
                return Err("pending work never drains".into());
            }
            self.step += 1;
            self.complete(0)?;
        }
        if let Some((id, call)) = self.calls.iter().next() {
            return Err(format!("call {id} ({call:?}) was never answered"));
        }
        Ok(())
    }

    fn get(&mut self, node: usize, key: usize) -> Result<(), String> {
        if !self.in_ring[node] {
            return Ok(());
        }
        let id = self.next_call;
        self.next_call += 1;
        self.calls.insert(
            id,
            Call {
                node,
                key,
                invoked_step: self.step,
                invoked_ms: self.now_ms,
            },
        );
        let step = self.groups[node].get(&key_bytes(key), false, self.now(), || Waiter::Client(id));
        self.on_get_step(node, step, Waiter::Client(id))
    }

    fn on_get_step(
        &mut self,
        node: usize,
        step: GetStep<Refused>,
        waiter: Waiter,
    ) -> Result<(), String> {
        self.note(format!("  n{node} get for {waiter:?} -> {step:?}"));
        match step {
            GetStep::Reply(reply) => self.deliver(waiter, reply),
            GetStep::Wait => Ok(()),
            GetStep::Start(work) => self.start(node, work),
        }
    }

    /// Starts `work` on `node`.
    fn start(&mut self, node: usize, work: Work) -> Result<(), String> {
        match work {
            Work::Load { flight, permit } => {
                let key = key_index(flight.key());
                let running = self.running_loads.entry((node, key)).or_insert(0);
                *running += 1;
                if *running > 1 {
                    return Err(format!("S3: two loads of k{key} run at once on n{node}"));
                }
                let value = (key != KEYS - 1).then(|| format!("L{}", self.step));
                if let Some(value) = &value {
                    self.origins.insert(
                        value.clone(),
                        Origin {
                            step: self.step,
                            expires_at: None,
                        },
                    );
                }
                self.pending.push(Pending::Load {
                    node,
                    flight,
                    _permit: permit,
                    value,
                });
                Ok(())
            }
            Work::Fetch { flight, owner } => {
                // The request reaches the owner now; its answer travels back later.
                let owner = self.node_of(&owner.id);
                let waiter = Waiter::Fetch {
                    node,
                    flight: flight.clone(),
                    received_ms: self.now_ms,
                };
                let step =
                    self.groups[owner].get(flight.key(), true, self.now(), || waiter.clone());
                self.on_get_step(owner, step, waiter)
            }
        }
    }

    /// Completes pending work `i` (modulo the count).
    fn complete(&mut self, i: usize) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = self.pending.remove(i % self.pending.len());
        self.note(format!("  complete {pending:?}"));
        let now = self.now();
        let completion = match pending {
            Pending::Load {
                node,
                flight,
                _permit,
                value,
            } => {
                let key = key_index(flight.key());
                if let Some(running) = self.running_loads.get_mut(&(node, key)) {
                    *running -= 1;
                }
                let outcome = match value {
                    Some(value) => {
                        if let Some(origin) = self.origins.get_mut(&value) {
                            origin.expires_at = Some(self.now_ms + LOADED_TTL_MS);
                        }
                        LoadOutcome::Value(Fetched {
                            value: Bytes::from(value),
                            ttl: Some(Duration::from_millis(LOADED_TTL_MS)),
                        })
                    }
                    None => LoadOutcome::Missing,
                };
                let completion = self.groups[node].loaded(&flight, outcome, now);
                (node, completion)
            }
            Pending::Answer {
                node,
                flight,
                reply,
            } => {
                let outcome = FetchOutcome::Answered(reply);
                (node, self.groups[node].fetched(&flight, outcome, now))
            }
        };
        let (node, completion) = completion;
        for delivery in completion.deliveries {
            for waiter in delivery.waiters {
                self.deliver(waiter, delivery.reply.clone())?;
            }
        }
        if let Some(work) = completion.start {
            self.start(node, work)?;
        }
        Ok(())
    }

    fn deliver(&mut self, waiter: Waiter, reply: Reply<Refused>) -> Result<(), String> {
        self.note(format!("  deliver {reply:?} to {waiter:?}"));
        match waiter {
            Waiter::Fetch {
                node,
                flight,
                received_ms,
            } => {
                // As the transport reports it: the lifetime left when the owner received the
                // request (its answer's plus the time it held the request).
                let held = Duration::from_millis(self.now_ms - received_ms);
                let reply = reply.map(|found| {
                    found.map(|f| Fetched {
                        ttl: f.ttl.map(|ttl| ttl + held),
                        ..f
                    })
                });
                self.pending.push(Pending::Answer {
                    node,
                    flight,
                    reply,
                });
                Ok(())
            }
            Waiter::Client(id) => {
                let call = self
                    .calls
                    .remove(&id)
                    .ok_or_else(|| format!("call {id} answered twice"))?;
                self.answered += 1;
                self.check(id, call, reply)
            }
        }
    }

    /// The model: what a get invoked as `call` may return.
    fn check(&self, id: u64, call: Call, reply: Reply<Refused>) -> Result<(), String> {
        let reply = reply.map_err(|e| format!("call {id}: unexpected error {e:?}"))?;
        let latest = self.writes[call.key]
            .iter()
            .rev()
            .find(|w| w.acked < call.invoked_step)
            .copied();
        let Some(found) = reply else {
            // A miss: for the key the source lacks, if the last write before the get was a
            // delete or a set whose value had expired by the answer; for any key, if the value
            // expired on its way from the owner on every ask. An answer is expired on arrival only
            // once the owner's value expired, so each ask after the first finds a newer value,
            // with at least a short set's lifetime to outlast on its way.
            let waited = self.now_ms - call.invoked_ms;
            if waited >= 2 * MIN_SET_TTL_MS {
                return Ok(());
            }
            // A ring change since the last write hands keys over without their values (as an
            // eviction would drop them): a miss is allowed then too (S7's "explained by eviction").
            if latest.is_none_or(|w| w.acked < self.ring_changed_at) && self.ring_changed_at > 0 {
                return Ok(());
            }
            if call.key != KEYS - 1 {
                return Err(format!(
                    "call {id} (get k{} on n{} at {} ms): a miss for a key the source has",
                    call.key, call.node, call.invoked_ms
                ));
            }
            if let Some(latest) = latest {
                let live_set = self
                    .origins
                    .get(&format!("S{}", latest.step))
                    .is_some_and(|o| o.expires_at.is_none_or(|at| at > self.now_ms));
                if live_set {
                    return Err(format!(
                        "call {id} (get k{} at step {}): a miss after the set of step {} (S7)",
                        call.key, call.invoked_step, latest.step
                    ));
                }
            }
            return Ok(());
        };
        let value = String::from_utf8_lossy(&found.value).into_owned();
        let origin =
            self.origins.get(&value).copied().ok_or_else(|| {
                format!("call {id}: returned {value:?}, which nothing produced (S1)")
            })?;
        if let Some(latest) = latest {
            if origin.step < latest.step {
                return Err(format!(
                    "call {id} (get k{} invoked at step {}): returned {value:?} from step {}, \
                     older than the write applied at step {} and acknowledged at step {} (S7/S8)",
                    call.key, call.invoked_step, origin.step, latest.step, latest.acked
                ));
            }
        }
        if let Some(expires_at) = origin.expires_at {
            if expires_at <= call.invoked_ms {
                return Err(format!(
                    "call {id}: returned {value:?} at {} ms, expired at {expires_at} ms (S4)",
                    call.invoked_ms
                ));
            }
            let claimed = found
                .ttl
                .map_or(u64::MAX, |ttl| call.invoked_ms + ttl.as_millis() as u64);
            if claimed > expires_at {
                return Err(format!(
                    "call {id}: {value:?} reported to live until {claimed} ms, but it expires \
                     at {expires_at} ms (S4)"
                ));
            }
        }
        Ok(())
    }

    /// A set (`Some(ttl)`) or delete (`None`) through `node`, carried out as the runtime does.
    fn write(&mut self, node: usize, key: usize, set: Option<Option<u64>>) -> Result<(), String> {
        if !self.in_ring[node] {
            return Ok(());
        }
        let value = format!("S{}", self.step);
        let ttl = set.flatten().map(Duration::from_millis);
        let step = self.write_on(node, key, &value, set.is_some(), ttl, false);
        self.note(format!("  n{node} write {value} -> {step:?}"));
        let owner = match step {
            WriteStep::Applied { peers, .. } => {
                self.applied(key, &value, set, peers);
                None
            }
            WriteStep::Forward { owner, .. } => Some(self.node_of(&owner.id)),
            WriteStep::NotOwner { owner } => {
                return Err(format!("a client write was refused: owner {owner}"))
            }
            WriteStep::TooLarge(err) => return Err(format!("too large: {err}")),
        };
        if let Some(owner) = owner {
            let step = self.write_on(owner, key, &value, set.is_some(), ttl, true);
            self.note(format!("  owner n{owner} write {value} -> {step:?}"));
            match step {
                WriteStep::Applied { peers, .. } => self.applied(key, &value, set, peers),
                other => return Err(format!("the owner did not apply the write: {other:?}")),
            }
            self.groups[node].forget(&key_bytes(key));
        }
        let applied = self.step;
        self.writes[key].push(Acked {
            step: applied,
            acked: applied,
        });
        Ok(())
    }

    fn write_on(
        &self,
        node: usize,
        key: usize,
        value: &str,
        is_set: bool,
        ttl: Option<Duration>,
        forwarded: bool,
    ) -> WriteStep {
        let k = key_bytes(key);
        if is_set {
            // What a forward hands back is not needed: the model sends the owner its own copy.
            self.groups[node]
                .set(k, Bytes::from(value.to_owned()), ttl, forwarded, self.now())
                .map_write(drop)
        } else {
            self.groups[node].delete(&k, forwarded, self.now())
        }
    }

    /// Records what an owner applied and invalidates every other live member.
    fn applied(&mut self, key: usize, value: &str, set: Option<Option<u64>>, peers: Vec<Member>) {
        if let Some(ttl) = set {
            self.origins.insert(
                value.to_owned(),
                Origin {
                    step: self.step,
                    expires_at: ttl.map(|t| self.now_ms + t),
                },
            );
        }
        for peer in peers {
            let peer = self.node_of(&peer.id);
            self.groups[peer].invalidate(&key_bytes(key));
        }
    }

    /// Takes `node` out of every view, or puts it back fenced.
    fn toggle(&mut self, node: usize) {
        if self.in_ring[node] && self.in_ring.iter().filter(|&&b| b).count() == 1 {
            return;
        }
        self.in_ring[node] = !self.in_ring[node];
        self.ring_changed_at = self.step;
        if self.in_ring[node] {
            // Back after its registration was lost: it fences before it serves again.
            self.groups[node].fence();
        }
        for i in 0..NODES {
            let router = Arc::new(self.router_of(i));
            self.groups[i].ring_changed(&router);
        }
    }
}
