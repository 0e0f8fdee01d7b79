//! The options of one run, drawn from its seed ("swarm testing": each seed explores another
//! cluster size, workload mix, fault mix and set of timeouts).

use std::fmt;
use std::time::Duration;

use lcache_node::buggify::Point;
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::rng::component_rng;

/// A deliberately broken test double plugged into the real runtime, to show the checkers catch
/// bugs. [`Mutation::None`] runs the real thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutation {
    /// Nothing broken.
    None,
    /// The peer transport acknowledges forwarded deletes without sending them (caught by L2).
    DropDeletes,
    /// Discovery never reports a departure (caught by L1).
    NoDepartures,
    /// The loader returns another key's value (caught by S1).
    WrongKeyLoader,
    /// The loader reports a lifetime 20 times longer than the source gave (caught by S4).
    StretchTtl,
    /// The peer transport acknowledges sets at once and sends them later (caught by S7).
    LazySets,
    /// The peer transport answers gets from a memory of old answers (caught by S8).
    StaleGets,
    /// The peer transport pretends half of the owners are unreachable (caught by S9).
    FallbackAlways,
    /// The peer transport sends gets through a third node (caught by F1).
    Detour,
    /// The probe under-reports the stores' bytes (caught by S2's recount).
    UndercountBytes,
}

impl Mutation {
    /// Every broken double.
    pub const BROKEN: [Mutation; 9] = [
        Mutation::DropDeletes,
        Mutation::NoDepartures,
        Mutation::WrongKeyLoader,
        Mutation::StretchTtl,
        Mutation::LazySets,
        Mutation::StaleGets,
        Mutation::FallbackAlways,
        Mutation::Detour,
        Mutation::UndercountBytes,
    ];

    /// The name `LCACHE_SIM_MUTATION` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::None => "none",
            Mutation::DropDeletes => "drop-deletes",
            Mutation::NoDepartures => "no-departures",
            Mutation::WrongKeyLoader => "wrong-key-loader",
            Mutation::StretchTtl => "stretch-ttl",
            Mutation::LazySets => "lazy-sets",
            Mutation::StaleGets => "stale-gets",
            Mutation::FallbackAlways => "fallback-always",
            Mutation::Detour => "detour",
            Mutation::UndercountBytes => "undercount-bytes",
        }
    }

    /// The mutation called `name`.
    pub fn from_name(name: &str) -> Option<Mutation> {
        [Mutation::None]
            .into_iter()
            .chain(Mutation::BROKEN)
            .find(|m| m.name() == name)
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How often each kind of fault is injected during the safety phase, per simulated minute
/// (0 disables the kind).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultRates {
    /// Symmetric partitions (node↔node, client↔node, node↔discovery).
    pub partition: f64,
    /// One-way partitions.
    pub oneway: f64,
    /// Links that hold messages, then deliver them all at once.
    pub hold: f64,
    /// Node crashes (turmoil `crash`), restarted later or not.
    pub crash: f64,
    /// Graceful leaves (deregister, drain), rejoining later or not.
    pub churn: f64,
    /// Latency spikes on every link.
    pub latency: f64,
    /// Discovery outages (its host crashes; its data survives, like etcd's disk).
    pub outage: f64,
    /// Lease losses: a live node cut off from discovery only, longer than its lease TTL, while
    /// it keeps serving clients and peers; then healed.
    pub lease_loss: f64,
    /// Long view disagreement: one node's discovery watch stalls (events held back) while the
    /// others' move on.
    pub watch_stall: f64,
}

/// The loader's behaviour. Workload keys (`k…`) draw it per call from these rates; the
/// verifier's trouble keys behave the same on every call (see [`crate::loader`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderOptions {
    /// Longest a normal load takes.
    pub max_latency: Duration,
    /// Share of keys (percent) the source does not have.
    pub missing_pct: u64,
    /// Share of loads (percent) that fail.
    pub error_pct: u64,
    /// Share of loads (percent) that panic.
    pub panic_pct: u64,
    /// Share of loads (percent) that are slow: longer than the peer timeout, some longer than
    /// the load timeout and the clients' deadlines.
    pub slow_pct: u64,
    /// Longest a slow load takes.
    pub slow_max: Duration,
}

/// How the workload's workers behave ("impatient clients").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkloadOptions {
    /// Share of workers (percent) whose calls have a tiny deadline.
    pub impatient_pct: u64,
    /// The tiny deadlines of impatient workers range up to this.
    pub tiny_deadline_max: Duration,
    /// Share of requests (percent) the client cancels mid-flight.
    pub cancel_pct: u64,
    /// Share of workers (percent) that send `hops = 1` themselves (as if they were a peer).
    pub as_peer_pct: u64,
    /// Bursts of concurrent gets of one hot key, per simulated minute per client host (0: none).
    pub bursts_per_minute: f64,
    /// Gets in one burst, at most.
    pub burst_max: usize,
}

/// How the simulated discovery misdelivers watch events to one node (percent of events; 0
/// everywhere in about half the seeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveryChaos {
    /// An event is delivered twice.
    pub duplicate_pct: u64,
    /// An event is held back and delivered after the next one.
    pub reorder_pct: u64,
    /// After a reconnection, an event of the old watch is delivered after the new snapshot.
    pub replay_pct: u64,
}

/// Everything one run is made of, all derived from its seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The run's seed.
    pub seed: u64,
    /// Broken double in use.
    pub mutation: Mutation,
    /// Cluster size (node hosts).
    pub nodes: usize,
    /// Nodes that start late, joining during the safety phase.
    pub late_joiners: usize,
    /// Client hosts.
    pub clients: usize,
    /// Concurrent workers per client host.
    pub workers: usize,
    /// Size of the key space (small, so keys collide).
    pub keys: usize,
    /// Weights of get, set and delete.
    pub mix: [u32; 3],
    /// Longest pause between two requests of a worker.
    pub think_max: Duration,
    /// Lifetimes a set may ask for (`None`: the group default).
    pub set_ttls: Vec<Option<Duration>>,
    /// Simulated time per turmoil step.
    pub tick: Duration,
    /// Fault-free start.
    pub warmup: Duration,
    /// Length of the safety phase (faults happen), after the warmup.
    pub safety: Duration,
    /// Lease TTL of the discovery registrations.
    pub lease_ttl: Duration,
    /// Largest link latency outside latency spikes.
    pub latency_max: Duration,
    /// Fault rates.
    pub faults: FaultRates,
    /// Byte budget of the group on each node.
    pub budget_bytes: u64,
    /// Hot cache: (budget, lifetime).
    pub hot: Option<(u64, Duration)>,
    /// Lifetime of values set or loaded without one.
    pub default_ttl: Option<Duration>,
    /// Loader behaviour.
    pub loader: LoaderOptions,
    /// Client connect timeout.
    pub connect_timeout: Duration,
    /// Client call timeout (sent as the request deadline).
    pub call_timeout: Duration,
    /// Node: longest a forwarded request waits for the owner.
    pub peer_timeout: Duration,
    /// Node: longest a load may take.
    pub load_timeout: Duration,
    /// Keys the verifier writes and reads after convergence.
    pub l2_keys: usize,
    /// Node: requests served at once (small in some seeds, so bursts exercise admission).
    pub max_in_flight: usize,
    /// Node: callers waiting on one key's flight, at most (small in some seeds).
    pub max_waiters_per_key: usize,
    /// Node: loads running at once, at most (S9 checks it).
    pub max_loads: usize,
    /// Impatient and misbehaving clients.
    pub workload: WorkloadOptions,
    /// Misdelivered discovery events.
    pub chaos: DiscoveryChaos,
    /// Buggify fault points of the node switched on for this seed (empty: none).
    pub buggify: Vec<Point>,
}

impl Options {
    /// The options of the run of `seed` with `mutation`.
    pub fn from_seed(seed: u64, mutation: Mutation) -> Options {
        let mut rng = component_rng(seed, "options");
        let nodes = rng.random_range(3..=7);
        let keys = rng.random_range(4..=20);
        let mut rate = |max: f64| {
            if rng.random_bool(0.7) {
                rng.random_range(0.5..max)
            } else {
                0.0
            }
        };
        let faults = FaultRates {
            partition: rate(10.0),
            oneway: rate(6.0),
            hold: rate(5.0),
            crash: rate(4.0),
            churn: rate(4.0),
            latency: rate(3.0),
            outage: rate(2.0),
            lease_loss: rate(3.0),
            watch_stall: rate(4.0),
        };
        let hot_lifetime = Duration::from_millis(rng.random_range(300..=2_000));
        let budget_bytes = rng.random_range(1_500..=12_000);
        let peer_timeout = Duration::from_millis(1_000);
        let load_timeout = Duration::from_millis(1_500);
        let call_timeout = Duration::from_secs(4);
        let small_caps = rng.random_bool(0.3);
        let max_in_flight = if small_caps {
            rng.random_range(2..=12)
        } else {
            10_000
        };
        let max_loads = if small_caps {
            rng.random_range(2..=max_in_flight)
        } else {
            max_in_flight
        };
        let max_waiters_per_key = if rng.random_bool(0.3) {
            rng.random_range(1..=6)
        } else {
            10_000
        };
        let mut pct = |p: f64, max: u64| {
            if rng.random_bool(p) {
                rng.random_range(1..=max)
            } else {
                0
            }
        };
        let loader = LoaderOptions {
            max_latency: Duration::ZERO,
            missing_pct: 0,
            error_pct: pct(0.6, 15),
            panic_pct: pct(0.3, 5),
            slow_pct: pct(0.4, 10),
            slow_max: call_timeout + Duration::from_secs(1),
        };
        let workload = WorkloadOptions {
            impatient_pct: pct(0.5, 50),
            tiny_deadline_max: Duration::ZERO,
            cancel_pct: pct(0.4, 15),
            as_peer_pct: pct(0.3, 30),
            bursts_per_minute: 0.0,
            burst_max: 0,
        };
        let chaos = if rng.random_bool(0.5) {
            DiscoveryChaos {
                duplicate_pct: rng.random_range(0..=20),
                reorder_pct: rng.random_range(0..=20),
                replay_pct: rng.random_range(0..=50),
            }
        } else {
            DiscoveryChaos {
                duplicate_pct: 0,
                reorder_pct: 0,
                replay_pct: 0,
            }
        };
        let buggify = {
            let mut rng = component_rng(seed, "buggify");
            Point::ALL
                .into_iter()
                .filter(|_| rng.random_bool(0.25))
                .collect()
        };
        Options {
            seed,
            mutation,
            nodes,
            late_joiners: rng.random_range(0..=1),
            clients: rng.random_range(1..=3),
            workers: rng.random_range(2..=4),
            keys,
            mix: [
                rng.random_range(2..=8),
                rng.random_range(1..=4),
                rng.random_range(0..=2),
            ],
            think_max: Duration::from_millis(rng.random_range(10..=150)),
            set_ttls: vec![
                None,
                Some(Duration::from_millis(rng.random_range(200..=1_500))),
                Some(Duration::from_secs(rng.random_range(3..=30))),
            ],
            tick: Duration::from_millis(*[3, 3, 4, 4].choose(&mut rng).unwrap_or(&2)),
            warmup: Duration::from_secs(2),
            safety: Duration::from_secs(rng.random_range(20..=40)),
            lease_ttl: Duration::from_millis(rng.random_range(2_000..=5_000)),
            latency_max: Duration::from_millis(rng.random_range(1..=20)),
            faults,
            budget_bytes,
            hot: rng
                .random_bool(0.7)
                .then_some((budget_bytes / 4, hot_lifetime)),
            default_ttl: rng
                .random_bool(0.5)
                .then(|| Duration::from_millis(rng.random_range(500..=10_000))),
            loader: LoaderOptions {
                max_latency: Duration::from_millis(rng.random_range(1..=200)),
                missing_pct: rng.random_range(0..=20),
                ..loader
            },
            connect_timeout: Duration::from_millis(500),
            call_timeout,
            peer_timeout,
            load_timeout,
            l2_keys: keys.min(6),
            max_in_flight,
            max_waiters_per_key,
            max_loads,
            workload: WorkloadOptions {
                tiny_deadline_max: Duration::from_millis(rng.random_range(5..=80)),
                bursts_per_minute: if rng.random_bool(0.6) {
                    rng.random_range(2.0..30.0)
                } else {
                    0.0
                },
                burst_max: rng.random_range(4..=40),
                ..workload
            },
            chaos,
            buggify,
        }
    }

    /// Node names, `n1` to `nN`.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }

    /// Client host names, `c1` to `cK`.
    pub fn client_names(&self) -> Vec<String> {
        (1..=self.clients).map(|i| format!("c{i}")).collect()
    }

    /// The workload's keys.
    pub fn key_names(&self) -> Vec<String> {
        (0..self.keys).map(key_name).collect()
    }

    /// When the safety phase ends and everything heals.
    pub fn heal_at(&self) -> Duration {
        self.warmup + self.safety
    }

    /// How long after the heal every live node's view must equal the live set: a lease TTL (a
    /// crashed member's lease runs out), a watch idle timeout and a reconnect (a watcher stuck
    /// on a dead connection notices and re-reads a snapshot), a keepalive round and a request
    /// timeout (a member whose lease expired re-registers), plus margin.
    pub fn convergence_bound(&self) -> Duration {
        self.lease_ttl
            + crate::discovery::WATCH_IDLE_TIMEOUT
            + crate::discovery::MAX_BACKOFF
            + self.lease_ttl / 3
            + crate::discovery::REQUEST_TIMEOUT
            + Duration::from_secs(2)
    }

    /// The hot copy lifetime (zero without a hot cache).
    pub fn hot_lifetime(&self) -> Duration {
        self.hot.map_or(Duration::ZERO, |(_, lifetime)| lifetime)
    }
}

/// Name of key `i` of the workload.
pub fn key_name(i: usize) -> String {
    format!("k{i:02}")
}

/// Index of a workload key name (`k07` → 7).
pub fn key_index(key: &str) -> Option<usize> {
    key.strip_prefix('k')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_derive_from_the_seed() {
        let a = Options::from_seed(9, Mutation::None);
        assert_eq!(a, Options::from_seed(9, Mutation::None));
        assert!((3..=7).contains(&a.nodes));
        let differs = (0..20).any(|s| Options::from_seed(s, Mutation::None).nodes != a.nodes);
        assert!(differs);
    }

    #[test]
    fn mutation_names_round_trip() {
        for m in [Mutation::None].into_iter().chain(Mutation::BROKEN) {
            assert_eq!(Mutation::from_name(m.name()), Some(m));
        }
        assert_eq!(key_index(&key_name(7)), Some(7));
    }
}
