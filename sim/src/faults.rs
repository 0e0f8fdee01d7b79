//! The fault schedule of a run, drawn from its seed before the run starts.
//!
//! Faults of each enabled kind arrive at exponential intervals during the safety phase. Each
//! takes a resource (a link, a node, the discovery host, the latency setting) for a while; two
//! faults never share a resource at once, so every fault has exactly one repair (or is repaired
//! by the heal at the end of the safety phase). At least one node is always up.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::discovery::HOST as DISCOVERY;
use crate::options::Options;
use crate::rng::component_rng;

/// One change to the simulated world.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultAction {
    /// Drop everything between two hosts, both ways.
    Partition(String, String),
    /// Undo a [`FaultAction::Partition`] or [`FaultAction::PartitionOneway`].
    Repair(String, String),
    /// Drop everything from the first host to the second.
    PartitionOneway(String, String),
    /// Hold every message between two hosts.
    Hold(String, String),
    /// Deliver the held messages and let new ones through.
    Release(String, String),
    /// Crash a node host (no goodbye: its lease has to run out).
    Crash(String),
    /// Start a crashed node host again (a new incarnation).
    Restart(String),
    /// Ask a node to leave gracefully.
    Leave(String),
    /// Ask a node to (re)join.
    Join(String),
    /// Raise one link's largest latency (both ways).
    SlowLink(String, String, Duration),
    /// Restore a slowed link's latency.
    FastLink(String, String),
    /// Raise every link's largest latency.
    LatencySpike(Duration),
    /// Restore the normal latency.
    LatencyReset,
    /// Crash the discovery host.
    DiscoveryDown,
    /// Start the discovery host again (its data survived).
    DiscoveryUp,
    /// Hold back every discovery event to one node (its view stops moving).
    StallWatch(String),
    /// Deliver the held-back events and let new ones through.
    ResumeWatch(String),
}

impl FaultAction {
    /// Whether this action starts a fault (rather than repairing one).
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            FaultAction::Partition(..)
                | FaultAction::PartitionOneway(..)
                | FaultAction::Hold(..)
                | FaultAction::SlowLink(..)
                | FaultAction::Crash(_)
                | FaultAction::Leave(_)
                | FaultAction::LatencySpike(_)
                | FaultAction::DiscoveryDown
                | FaultAction::StallWatch(_)
        )
    }

    /// The link (as a sorted pair) this action is about, if any.
    pub fn link(&self) -> Option<(&str, &str)> {
        match self {
            FaultAction::Partition(a, b)
            | FaultAction::Repair(a, b)
            | FaultAction::PartitionOneway(a, b)
            | FaultAction::Hold(a, b)
            | FaultAction::Release(a, b)
            | FaultAction::SlowLink(a, b, _)
            | FaultAction::FastLink(a, b) => Some(sorted(a, b)),
            _ => None,
        }
    }
}

impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

fn sorted<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// An action at a simulated time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// When (since the start of the run).
    pub at: Duration,
    /// What.
    pub action: FaultAction,
}

/// What a fault occupies while it lasts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Resource {
    Link(String, String),
    Node(String),
    Discovery,
    Latency,
    Watch(String),
}

/// Busy intervals per resource, and how many nodes are down when.
#[derive(Debug, Default)]
struct Calendar {
    busy: BTreeMap<Resource, Vec<(Duration, Duration)>>,
}

impl Calendar {
    fn free(&self, resource: &Resource, from: Duration, to: Duration) -> bool {
        self.busy
            .get(resource)
            .is_none_or(|spans| spans.iter().all(|&(a, b)| to <= a || b <= from))
    }

    fn take(&mut self, resource: Resource, from: Duration, to: Duration) {
        self.busy.entry(resource).or_default().push((from, to));
    }

    /// Nodes down at some instant of `[from, to)`, at most (sum of overlapping spans).
    fn nodes_down(&self, from: Duration, to: Duration) -> usize {
        self.busy
            .iter()
            .filter(|(r, _)| matches!(r, Resource::Node(_)))
            .filter(|(_, spans)| spans.iter().any(|&(a, b)| a < to && from < b))
            .count()
    }
}

/// The run's fault schedule, sorted by time (ties keep generation order).
pub fn schedule(options: &Options) -> Vec<Scheduled> {
    let mut rng = component_rng(options.seed, "faults");
    let mut calendar = Calendar::default();
    let mut out = Vec::new();
    let start = options.warmup;
    let end = options.heal_at();
    let nodes = options.node_names();
    // Late joiners are down from the start until they join.
    for name in nodes.iter().rev().take(options.late_joiners) {
        let at = rng.random_range(start..start + options.safety / 2);
        calendar.take(Resource::Node(name.clone()), Duration::ZERO, at);
        out.push(Scheduled {
            at,
            action: FaultAction::Join(name.clone()),
        });
    }
    let rates = options.faults;
    let kinds: [(f64, Kind); 9] = [
        (rates.partition, Kind::Partition),
        (rates.oneway, Kind::Oneway),
        (rates.hold, Kind::Hold),
        (rates.crash, Kind::Crash),
        (rates.churn, Kind::Churn),
        (rates.latency, Kind::Latency),
        (rates.outage, Kind::Outage),
        (rates.lease_loss, Kind::LeaseLoss),
        (rates.watch_stall, Kind::WatchStall),
    ];
    for (per_minute, kind) in kinds {
        if per_minute <= 0.0 {
            continue;
        }
        let mut t = start;
        loop {
            let gap: f64 = -(1.0 - rng.random::<f64>()).ln() * 60.0 / per_minute;
            t += Duration::from_secs_f64(gap.min(3_600.0));
            if t >= end {
                break;
            }
            let plan = Plan {
                options,
                nodes: &nodes,
                at: t,
                end,
            };
            plan.add(kind, &mut rng, &mut calendar, &mut out);
        }
    }
    add_final_fault(options, &nodes, &mut rng, &mut calendar, &mut out);
    out.sort_by_key(|s| s.at);
    out
}

/// Most runs end their safety phase in trouble, so the heal has real work to do: a node cut off
/// from everyone, or from discovery only (its lease expires), or discovery down, from a few
/// seconds before the heal until the heal.
fn add_final_fault(
    options: &Options,
    nodes: &[String],
    rng: &mut ChaCha8Rng,
    calendar: &mut Calendar,
    out: &mut Vec<Scheduled>,
) {
    if !rng.random_bool(0.6) {
        return;
    }
    let end = options.heal_at();
    let lead = Duration::from_millis(
        rng.random_range(1_000..=options.lease_ttl.as_millis() as u64 + 2_000),
    );
    let at = end.saturating_sub(lead).max(options.warmup);
    let node = pick(rng, nodes);
    let others: Vec<String> = match rng.random_range(0..3) {
        0 => nodes
            .iter()
            .filter(|n| **n != node)
            .cloned()
            .chain([DISCOVERY.to_owned()])
            .collect(),
        1 => vec![DISCOVERY.to_owned()],
        _ => {
            if calendar.free(&Resource::Discovery, at, end) {
                calendar.take(Resource::Discovery, at, end);
                out.push(Scheduled {
                    at,
                    action: FaultAction::DiscoveryDown,
                });
            }
            return;
        }
    };
    let links: Vec<Resource> = others
        .iter()
        .map(|other| {
            let (a, b) = sorted(&node, other);
            Resource::Link(a.to_owned(), b.to_owned())
        })
        .collect();
    if !links.iter().all(|link| calendar.free(link, at, end)) {
        return;
    }
    for (link, other) in links.into_iter().zip(others) {
        calendar.take(link, at, end);
        out.push(Scheduled {
            at,
            action: FaultAction::Partition(node.clone(), other),
        });
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Partition,
    Oneway,
    Hold,
    Crash,
    Churn,
    Latency,
    Outage,
    LeaseLoss,
    WatchStall,
}

struct Plan<'a> {
    options: &'a Options,
    nodes: &'a [String],
    at: Duration,
    end: Duration,
}

impl Plan<'_> {
    fn add(&self, kind: Kind, rng: &mut ChaCha8Rng, cal: &mut Calendar, out: &mut Vec<Scheduled>) {
        let lease_ms = self.options.lease_ttl.as_millis() as u64;
        let (min_ms, max_ms) = match kind {
            Kind::Hold => (100, 3_000),
            Kind::Latency => (500, 5_000),
            // Longer than the lease, so the node's registration expires while it serves.
            Kind::LeaseLoss => (lease_ms + 500, lease_ms + 4_000),
            Kind::WatchStall => (1_000, 8_000),
            _ => (300, 10_000),
        };
        let until = self.at + Duration::from_millis(rng.random_range(min_ms..=max_ms));
        // A quarter of crashes and leaves last until the heal (and maybe past it).
        let lasting = matches!(kind, Kind::Crash | Kind::Churn) && rng.random_bool(0.25);
        let until = if lasting || until >= self.end {
            self.end
        } else {
            until
        };
        match kind {
            Kind::Partition | Kind::Oneway | Kind::Hold => {
                self.add_link_fault(kind, until, rng, cal, out)
            }
            Kind::Crash | Kind::Churn => {
                let node = pick(rng, self.nodes);
                let resource = Resource::Node(node.clone());
                if !cal.free(&resource, self.at, until)
                    || cal.nodes_down(self.at, until) + 1 >= self.nodes.len()
                {
                    return;
                }
                cal.take(resource, self.at, until);
                let (down, up) = match kind {
                    Kind::Crash => (FaultAction::Crash(node.clone()), FaultAction::Restart(node)),
                    _ => (FaultAction::Leave(node.clone()), FaultAction::Join(node)),
                };
                self.push(out, down, (until < self.end).then_some((until, up)));
            }
            Kind::Latency if rng.random_bool(0.5) => {
                self.add_link_fault(kind, until, rng, cal, out)
            }
            Kind::Latency => {
                if !cal.free(&Resource::Latency, self.at, until) {
                    return;
                }
                cal.take(Resource::Latency, self.at, until);
                let spike = Duration::from_millis(rng.random_range(50..=400));
                let reset = (until < self.end).then_some((until, FaultAction::LatencyReset));
                self.push(out, FaultAction::LatencySpike(spike), reset);
            }
            Kind::LeaseLoss => {
                let node = pick(rng, self.nodes);
                let (a, b) = sorted(&node, DISCOVERY);
                let link = Resource::Link(a.to_owned(), b.to_owned());
                if !cal.free(&link, self.at, until) {
                    return;
                }
                cal.take(link, self.at, until);
                let repair = FaultAction::Repair(node.clone(), DISCOVERY.to_owned());
                let cut = FaultAction::Partition(node, DISCOVERY.to_owned());
                self.push(out, cut, (until < self.end).then_some((until, repair)));
            }
            Kind::WatchStall => {
                let node = pick(rng, self.nodes);
                let resource = Resource::Watch(node.clone());
                if !cal.free(&resource, self.at, until) {
                    return;
                }
                cal.take(resource, self.at, until);
                let resume = FaultAction::ResumeWatch(node.clone());
                let stall = FaultAction::StallWatch(node);
                self.push(out, stall, (until < self.end).then_some((until, resume)));
            }
            Kind::Outage => {
                if !cal.free(&Resource::Discovery, self.at, until) {
                    return;
                }
                cal.take(Resource::Discovery, self.at, until);
                let up = (until < self.end).then_some((until, FaultAction::DiscoveryUp));
                self.push(out, FaultAction::DiscoveryDown, up);
            }
        }
    }

    /// A fault on one link (partition, one-way partition, hold or slow link), or (a fifth of
    /// symmetric partitions) a node isolated from every other node and from discovery.
    fn add_link_fault(
        &self,
        kind: Kind,
        until: Duration,
        rng: &mut ChaCha8Rng,
        cal: &mut Calendar,
        out: &mut Vec<Scheduled>,
    ) {
        let links: Vec<(String, String)> =
            if matches!(kind, Kind::Partition) && rng.random_bool(0.2) {
                let node = pick(rng, self.nodes);
                self.nodes
                    .iter()
                    .filter(|n| **n != node)
                    .cloned()
                    .chain([DISCOVERY.to_owned()])
                    .map(|other| (node.clone(), other))
                    .collect()
            } else {
                vec![self.pick_link(kind, rng)]
            };
        let free = links.iter().all(|(a, b)| {
            let (a, b) = sorted(a, b);
            cal.free(&Resource::Link(a.into(), b.into()), self.at, until)
        });
        if !free {
            return;
        }
        let slow = Duration::from_millis(rng.random_range(50..=400));
        for (a, b) in links {
            let (x, y) = sorted(&a, &b);
            cal.take(Resource::Link(x.into(), y.into()), self.at, until);
            let (down, up) = match kind {
                Kind::Partition => (
                    FaultAction::Partition(a.clone(), b.clone()),
                    FaultAction::Repair(a, b),
                ),
                Kind::Oneway => (
                    FaultAction::PartitionOneway(a.clone(), b.clone()),
                    FaultAction::Repair(a, b),
                ),
                Kind::Latency => (
                    FaultAction::SlowLink(a.clone(), b.clone(), slow),
                    FaultAction::FastLink(a, b),
                ),
                _ => (
                    FaultAction::Hold(a.clone(), b.clone()),
                    FaultAction::Release(a, b),
                ),
            };
            self.push(out, down, (until < self.end).then_some((until, up)));
        }
    }

    /// Half node↔node, a quarter client↔node, a quarter node↔discovery (holds and slow links:
    /// client↔node instead of discovery).
    fn pick_link(&self, kind: Kind, rng: &mut ChaCha8Rng) -> (String, String) {
        let node = pick(rng, self.nodes);
        let roll = rng.random_range(0..4);
        let other = match roll {
            0 | 1 if self.nodes.len() > 1 => loop {
                let other = pick(rng, self.nodes);
                if other != node {
                    break other;
                }
            },
            2 => pick(rng, &self.options.client_names()),
            _ if matches!(kind, Kind::Hold | Kind::Latency) => {
                pick(rng, &self.options.client_names())
            }
            _ => DISCOVERY.to_owned(),
        };
        if rng.random_bool(0.5) {
            (node, other)
        } else {
            (other, node)
        }
    }

    fn push(
        &self,
        out: &mut Vec<Scheduled>,
        action: FaultAction,
        repair: Option<(Duration, FaultAction)>,
    ) {
        out.push(Scheduled {
            at: self.at,
            action,
        });
        if let Some((at, action)) = repair {
            out.push(Scheduled { at, action });
        }
    }
}

fn pick(rng: &mut ChaCha8Rng, names: &[String]) -> String {
    names.choose(rng).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Mutation;

    #[test]
    fn schedules_are_seeded_sorted_and_paired() {
        for seed in 0..30 {
            let options = Options::from_seed(seed, Mutation::None);
            let s = schedule(&options);
            assert_eq!(s, schedule(&options));
            assert!(s.windows(2).all(|w| w[0].at <= w[1].at));
            assert!(s.iter().all(|f| f.at < options.heal_at()));
            let faults = s.iter().filter(|f| f.action.is_fault()).count();
            let repairs = s.len() - faults;
            assert!(repairs <= faults + options.late_joiners, "seed {seed}");
        }
    }
}
