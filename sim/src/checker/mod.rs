//! The property checkers: DESIGN.md's S1–S5, S7–S9 and L1–L2, plus F1 (a request is forwarded
//! at most once), read off a run's history.
//!
//! - S1 no phantom, S3 one load, S4 expiry, L1, L2: as in DESIGN.md.
//! - S2 budget: from a recount of every store's entries (key + value + overhead), not the
//!   store's own counter, which must also agree with the recount.
//! - S5 progress: every request completes within its deadline, tiny deadlines included; a
//!   patient request on a healthy path is not timed out unless a slow load of its key was still
//!   running; in a clean window (see [`calm`]) no request times out before its own deadline.
//! - S7 read-your-writes and S8 no resurrection / real-time staleness: see [`fresh`]; S8 also
//!   flags a main store holding keys its node does not own (they resurface when ownership
//!   returns).
//! - S9 bounded loads: see [`loads`].
//! - F1 forward at most once: see [`forward`].
//! - C1 counters: see [`counters`].
//!
//! Each checker returns its first violation; [`check`] reports the earliest of them (by history
//! position), so a failure shows the events that led to it, and [`check_all`] the first of
//! each property.

use std::collections::BTreeMap;
use std::fmt;

use crate::faults::FaultAction;
use crate::history::{
    micros, Entry, Event, FailKind, LoadResult, Outcome, PeerMethod, Phase, Request,
};
use crate::options::Options;

pub mod calm;
pub mod counters;
pub mod forward;
pub mod fresh;
pub mod loads;
#[cfg(test)]
mod test_support;

/// Slack on expiry comparisons: node clocks count whole milliseconds and a remaining lifetime
/// crosses the wire in milliseconds, so a value may be served up to a few ms past its expiry.
const EXPIRY_SLACK_US: u64 = 5_000;
/// Slack on a request's deadline (one simulation tick, the client's timer resolution).
const DEADLINE_SLACK_US: u64 = 50_000;
/// A timeout this much before the request's own call timeout counts as early.
const EARLY_SLACK_US: u64 = 200_000;

/// A property a run broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `S1`…`S9`, `F1`, `L1`, `L2`.
    pub property: &'static str,
    /// Which rule of the property (the checker's name), filled in by [`check_all`].
    pub rule: &'static str,
    /// What happened.
    pub message: String,
    /// Index of the history entry where it shows.
    pub entry: usize,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) violated (history entry {}): {}",
            self.property, self.rule, self.entry, self.message
        )
    }
}

/// The earliest violation in `entries`, if any.
pub fn check(entries: &[Entry], options: &Options) -> Option<Violation> {
    check_all(entries, options)
        .into_iter()
        .min_by_key(|v| v.entry)
}

/// The first violation of each rule in `entries`, in checker order (some properties have
/// several rules, e.g. S8's stale reads and foreign keys; on a tie for the earliest, the first
/// in this order is the one [`check`] reports).
pub fn check_all(entries: &[Entry], options: &Options) -> Vec<Violation> {
    let index = Index::build(entries);
    let calm = calm::Calm::build(&index, options);
    let checks: [(&str, Checker); 17] = [
        ("no-phantom", s1_no_phantom),
        ("budget", s2_budget),
        ("one-load", s3_one_load),
        ("expiry", s4_expiry),
        ("panic-contained", loads::s9_panic),
        ("load-cap", loads::s9_cap),
        ("one-load-per-miss", loads::s9_amplification),
        ("no-wedged-key", loads::s9_wedged),
        ("read-your-writes", fresh::s7_read_your_writes),
        ("foreign-keys", fresh::s8_foreign_keys),
        ("no-stale-read", fresh::s8_no_resurrection),
        ("forward-once", forward::f1_forward_once),
        ("rejected-count", counters::c1_rejected),
        ("host-failure", s5_host_error),
        ("progress", s5_progress),
        ("convergence", l1_convergence),
        ("visibility", l2_visibility),
    ];
    checks
        .iter()
        .filter_map(|(rule, check)| {
            let v = check(&index, &calm, options)?;
            Some(Violation { rule, ..v })
        })
        .collect()
}

/// One property's checker.
type Checker = fn(&Index<'_>, &calm::Calm, &Options) -> Option<Violation>;

/// One request and its response.
#[derive(Debug)]
pub(crate) struct Op<'a> {
    pub(crate) inv: usize,
    pub(crate) inv_us: u64,
    pub(crate) client: &'a str,
    pub(crate) node: &'a str,
    pub(crate) request: &'a Request,
    pub(crate) phase: Phase,
    pub(crate) conn_since_us: u64,
    pub(crate) deadline_us: u64,
    pub(crate) as_peer: bool,
    pub(crate) ret: Option<(usize, u64, &'a Outcome)>,
}

impl Op<'_> {
    /// Whether a write was acknowledged.
    pub(crate) fn acked(&self) -> bool {
        matches!(
            self.ret,
            Some((_, _, Outcome::Stored | Outcome::Deleted { .. }))
        )
    }

    /// When the response came, if it did.
    pub(crate) fn ret_us(&self) -> Option<u64> {
        self.ret.map(|(_, us, _)| us)
    }
}

/// One loader call.
#[derive(Debug)]
pub(crate) struct Load<'a> {
    pub(crate) node: &'a str,
    pub(crate) key: &'a str,
    pub(crate) start: usize,
    pub(crate) start_us: u64,
    pub(crate) node_concurrent: u32,
    pub(crate) end: Option<(usize, u64, &'a LoadResult)>,
}

/// How a node's error message names the owner whose refusal it relays.
pub(crate) const RELAYED: &str = "owner `";

/// One peer call a node made.
#[derive(Debug)]
pub(crate) struct PeerCall<'a> {
    pub(crate) at: usize,
    pub(crate) at_us: u64,
    pub(crate) node: &'a str,
    pub(crate) peer: &'a str,
    pub(crate) method: PeerMethod,
    pub(crate) key: &'a str,
    pub(crate) ret_us: Option<u64>,
    /// The peer refused it for a limit (`RESOURCE_EXHAUSTED`).
    pub(crate) refused: bool,
    /// The refusal was the owner's, relayed by the peer: a forwarded get that found a fetch of
    /// its key to the owner in flight there rode along on it (no extra call), and the owner,
    /// not the peer, counted the refusal (seeds 6030, 6039).
    pub(crate) relayed: bool,
    /// It failed (any error).
    pub(crate) failed: bool,
}

/// Where a value came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin<'a> {
    /// Written by the set `op`.
    Set { op: u64, at: usize },
    /// Produced by a load on `node` that started at `start_us` and ended at `end_us`.
    Load {
        at: usize,
        node: &'a str,
        start_us: u64,
        end_us: u64,
        ttl_ms: Option<u64>,
    },
}

impl Origin<'_> {
    fn at(self) -> usize {
        match self {
            Origin::Set { at, .. } | Origin::Load { at, .. } => at,
        }
    }
}

/// The history, indexed for the checkers.
pub(crate) struct Index<'a> {
    pub(crate) entries: &'a [Entry],
    pub(crate) ops: BTreeMap<u64, Op<'a>>,
    pub(crate) origins: BTreeMap<(&'a str, &'a str), Origin<'a>>,
    /// Loader calls in start order.
    pub(crate) loads: Vec<Load<'a>>,
    /// Peer calls in call order.
    pub(crate) peer_calls: Vec<PeerCall<'a>>,
    pub(crate) last_us: u64,
}

impl<'a> Index<'a> {
    pub(crate) fn build(entries: &'a [Entry]) -> Self {
        let mut ops = BTreeMap::new();
        let mut origins = BTreeMap::new();
        let mut loads: Vec<Load<'a>> = Vec::new();
        let mut open_loads: BTreeMap<(&'a str, u64, u64), usize> = BTreeMap::new();
        let mut peer_calls: Vec<PeerCall<'a>> = Vec::new();
        let mut open_calls: BTreeMap<(&'a str, u64, u64), usize> = BTreeMap::new();
        for (i, entry) in entries.iter().enumerate() {
            match &entry.event {
                Event::Invoke {
                    op,
                    client,
                    node,
                    request,
                    phase,
                    conn_since_us,
                    deadline_ms,
                    as_peer,
                } => {
                    if let Request::Set { key, value, .. } = request {
                        origins
                            .entry((key.as_str(), value.as_str()))
                            .or_insert(Origin::Set { op: *op, at: i });
                    }
                    ops.insert(
                        *op,
                        Op {
                            inv: i,
                            inv_us: entry.at_us,
                            client,
                            node,
                            request,
                            phase: *phase,
                            conn_since_us: *conn_since_us,
                            deadline_us: deadline_ms * 1_000,
                            as_peer: *as_peer,
                            ret: None,
                        },
                    );
                }
                Event::LoadStart {
                    node,
                    inc,
                    key,
                    node_concurrent,
                    call,
                    ..
                } => {
                    open_loads.insert((node.as_str(), *inc, *call), loads.len());
                    loads.push(Load {
                        node,
                        key,
                        start: i,
                        start_us: entry.at_us,
                        node_concurrent: *node_concurrent,
                        end: None,
                    });
                }
                Event::PeerCall {
                    node,
                    inc,
                    call,
                    peer,
                    method,
                    key,
                    ..
                } => {
                    open_calls.insert((node.as_str(), *inc, *call), peer_calls.len());
                    peer_calls.push(PeerCall {
                        at: i,
                        at_us: entry.at_us,
                        node,
                        peer,
                        method: *method,
                        key,
                        ret_us: None,
                        refused: false,
                        relayed: false,
                        failed: false,
                    });
                }
                Event::PeerReturn {
                    node,
                    inc,
                    call,
                    result,
                } => {
                    if let Some(c) = open_calls.remove(&(node.as_str(), *inc, *call)) {
                        let c = &mut peer_calls[c];
                        c.ret_us = Some(entry.at_us);
                        c.refused = result.contains("out of resources");
                        c.relayed = c.refused && result.contains(RELAYED);
                        c.failed = result != "ok" && result != "miss";
                    }
                }
                Event::Return { op, outcome } => {
                    if let Some(o) = ops.get_mut(op) {
                        o.ret = Some((i, entry.at_us, outcome));
                    }
                }
                Event::LoadEnd {
                    node,
                    inc,
                    key,
                    call,
                    result,
                } => {
                    let start = open_loads.remove(&(node.as_str(), *inc, *call));
                    let start_us = start.map_or(entry.at_us, |l| loads[l].start_us);
                    if let Some(l) = start {
                        loads[l].end = Some((i, entry.at_us, result));
                    }
                    if let LoadResult::Value { value, ttl_ms } = result {
                        origins
                            .entry((key.as_str(), value.as_str()))
                            .or_insert(Origin::Load {
                                at: i,
                                node,
                                start_us,
                                end_us: entry.at_us,
                                ttl_ms: *ttl_ms,
                            });
                    }
                }
                _ => {}
            }
        }
        Index {
            entries,
            ops,
            origins,
            loads,
            peer_calls,
            last_us: entries.last().map_or(0, |e| e.at_us),
        }
    }

    /// Every get that returned a value, with the value.
    pub(crate) fn reads(&self) -> impl Iterator<Item = (u64, &Op<'a>, usize, &'a str)> + '_ {
        self.ops
            .iter()
            .filter_map(|(id, op)| match (op.request, op.ret) {
                (Request::Get { .. }, Some((ret, _, Outcome::Value { value, .. }))) => {
                    Some((*id, op, ret, value.as_str()))
                }
                _ => None,
            })
    }

    pub(crate) fn events(&self) -> impl Iterator<Item = (usize, &'a Entry)> + '_ {
        self.entries.iter().enumerate()
    }
}

/// The lifetime a value gets: its own, else the group's default.
pub(crate) fn lifetime_us(ttl_ms: Option<u64>, options: &Options) -> Option<u64> {
    ttl_ms
        .map(|ms| ms * 1_000)
        .or(options.default_ttl.map(micros))
}

/// S1: every value returned for k was written for k by a set or produced by k's loader.
fn s1_no_phantom(index: &Index<'_>, _calm: &calm::Calm, _: &Options) -> Option<Violation> {
    index.reads().find_map(|(id, op, ret, value)| {
        let key = op.request.key();
        let known = index
            .origins
            .get(&(key, value))
            .is_some_and(|origin| origin.at() < ret);
        (!known).then(|| Violation {
            property: "S1",
            rule: "",
            message: format!(
                "get {key} on {} (op {id}) returned {value:?}, which no set of {key} wrote and \
                 {key}'s loader never produced",
                op.node
            ),
            entry: ret,
        })
    })
}

/// S2: no store (main store, hot cache) holds more bytes than its budget, counted from its
/// entries (sampled every 50 ms on every node); and each store's own byte counter agrees with
/// that count (a counter that drifts would let the store overrun its budget unseen).
fn s2_budget(index: &Index<'_>, _calm: &calm::Calm, _: &Options) -> Option<Violation> {
    index.events().find_map(|(i, entry)| match &entry.event {
        Event::Stats {
            node,
            inc,
            stores,
            counted,
            ..
        } => {
            let store = ["main store", "hot cache"];
            let problem = stores.iter().zip(counted).zip(store).find_map(
                |(((bytes, budget), counted), store)| {
                    if counted > budget {
                        Some(format!(
                            "its {store} holds {counted} bytes (recounted from its entries) \
                             of a budget of {budget}"
                        ))
                    } else if counted != bytes {
                        Some(format!(
                            "its {store} says it holds {bytes} bytes, but its entries add up \
                             to {counted}"
                        ))
                    } else {
                        None
                    }
                },
            )?;
            Some(Violation {
                property: "S2",
                rule: "",
                message: format!("{node} (incarnation {inc}): {problem}"),
                entry: i,
            })
        }
        _ => None,
    })
}

/// S3: on one node incarnation, a key's loader never runs twice at once.
fn s3_one_load(index: &Index<'_>, _calm: &calm::Calm, _: &Options) -> Option<Violation> {
    index.events().find_map(|(i, entry)| match &entry.event {
        Event::LoadStart {
            node,
            inc,
            key,
            concurrent,
            ..
        } if *concurrent > 1 => Some(Violation {
            property: "S3",
            rule: "",
            message: format!(
                "{concurrent} loads of {key} running at once on {node} (incarnation {inc})"
            ),
            entry: i,
        }),
        _ => None,
    })
}

/// S4: no value is returned after its lifetime passed, nor with a remaining lifetime that
/// reaches past it (a node would keep serving it, or a client keep it, too long). A value's
/// lifetime starts when it was stored: at the latest when its set was acknowledged, or when its
/// load ended. The node measured the remaining lifetime it reports at some instant after the get
/// was sent, so sent time + reported remaining lifetime must not pass the expiry. (Unacknowledged
/// sets are skipped: they may be applied arbitrarily late, e.g. after a held link releases.)
fn s4_expiry(index: &Index<'_>, _calm: &calm::Calm, options: &Options) -> Option<Violation> {
    index.reads().find_map(|(id, op, ret, value)| {
        let key = op.request.key();
        let origin = *index.origins.get(&(key, value))?;
        let (stored_us, ttl_ms) = match origin {
            Origin::Set { op: set, .. } => {
                let set = index.ops.get(&set)?;
                let (_, ret_us, outcome) = set.ret?;
                let Request::Set { ttl_ms, .. } = set.request else {
                    return None;
                };
                if *outcome != Outcome::Stored {
                    return None;
                }
                (ret_us, *ttl_ms)
            }
            Origin::Load { end_us, ttl_ms, .. } => (end_us, ttl_ms),
        };
        let expiry = stored_us + lifetime_us(ttl_ms, options)?;
        let reported = match op.ret {
            Some((_, _, Outcome::Value { ttl_ms, .. })) => *ttl_ms,
            _ => None,
        };
        let message = if op.inv_us > expiry + EXPIRY_SLACK_US {
            format!(
                "get {key} on {} (op {id}) at {:.3}s returned {value:?}, which expired at {:.3}s",
                op.node,
                op.inv_us as f64 / 1e6,
                expiry as f64 / 1e6
            )
        } else {
            let claimed = reported.map_or(u64::MAX, |ms| op.inv_us.saturating_add(ms * 1_000));
            if claimed <= expiry + EXPIRY_SLACK_US {
                return None;
            }
            let claimed = reported.map_or("never".to_owned(), |ms| format!("{ms} ms"));
            format!(
                "get {key} on {} (op {id}) sent at {:.3}s returned {value:?} with a remaining \
                 lifetime of {claimed}, but it expires at {:.3}s",
                op.node,
                op.inv_us as f64 / 1e6,
                expiry as f64 / 1e6
            )
        };
        Some(Violation {
            property: "S4",
            rule: "",
            message,
            entry: ret,
        })
    })
}

/// Intervals (µs) during which something disturbed a client's path to a node.
#[derive(Debug, Default)]
pub(crate) struct Disturbances {
    /// Per sorted host pair: faulted intervals.
    links: BTreeMap<(String, String), Vec<(u64, u64)>>,
    /// Latency spikes.
    latency: Vec<(u64, u64)>,
    /// Per node: instants it crashed, restarted, left, joined, started or stopped.
    node_changes: BTreeMap<String, Vec<u64>>,
    /// Per node: intervals it served.
    serving: BTreeMap<String, Vec<(u64, u64)>>,
}

impl Disturbances {
    pub(crate) fn build(index: &Index<'_>) -> Self {
        let mut d = Disturbances::default();
        let mut open_links: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut open_latency: Option<u64> = None;
        let mut open_serving: BTreeMap<String, u64> = BTreeMap::new();
        let end = index.last_us;
        for (_, entry) in index.events() {
            let at = entry.at_us;
            match &entry.event {
                Event::Fault(action) => {
                    if let Some((a, b)) = action.link() {
                        let pair = (a.to_owned(), b.to_owned());
                        if action.is_fault() {
                            open_links.entry(pair).or_insert(at);
                        } else if let Some(from) = open_links.remove(&pair) {
                            d.links.entry(pair).or_default().push((from, at));
                        }
                    }
                    match action {
                        FaultAction::LatencySpike(_) => open_latency = open_latency.or(Some(at)),
                        FaultAction::LatencyReset => {
                            if let Some(from) = open_latency.take() {
                                d.latency.push((from, at));
                            }
                        }
                        FaultAction::Crash(n)
                        | FaultAction::Restart(n)
                        | FaultAction::Leave(n)
                        | FaultAction::Join(n) => {
                            d.node_changes.entry(n.clone()).or_default().push(at);
                            if matches!(action, FaultAction::Crash(_)) {
                                if let Some(from) = open_serving.remove(n) {
                                    d.serving.entry(n.clone()).or_default().push((from, at));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Event::Heal { .. } => {
                    for (pair, from) in std::mem::take(&mut open_links) {
                        d.links.entry(pair).or_default().push((from, at));
                    }
                    if let Some(from) = open_latency.take() {
                        d.latency.push((from, at));
                    }
                }
                Event::NodeStarted { node, .. } => {
                    d.node_changes.entry(node.clone()).or_default().push(at);
                    open_serving.insert(node.clone(), at);
                }
                Event::NodeStopped { node, .. } => {
                    d.node_changes.entry(node.clone()).or_default().push(at);
                    if let Some(from) = open_serving.remove(node) {
                        d.serving.entry(node.clone()).or_default().push((from, at));
                    }
                }
                _ => {}
            }
        }
        for (pair, from) in open_links {
            d.links.entry(pair).or_default().push((from, end));
        }
        if let Some(from) = open_latency {
            d.latency.push((from, end));
        }
        for (node, from) in open_serving {
            d.serving.entry(node).or_default().push((from, end));
        }
        d
    }

    /// Whether the path from `client` to `node` was undisturbed during `[from, to]` and the node
    /// served throughout.
    pub(crate) fn healthy(&self, client: &str, node: &str, from: u64, to: u64) -> bool {
        let overlaps = |spans: &[(u64, u64)]| spans.iter().any(|&(a, b)| a <= to && from <= b);
        let pair = if client <= node {
            (client.to_owned(), node.to_owned())
        } else {
            (node.to_owned(), client.to_owned())
        };
        let link_ok = !self.links.get(&pair).is_some_and(|s| overlaps(s));
        let latency_ok = !overlaps(&self.latency);
        let steady = !self
            .node_changes
            .get(node)
            .is_some_and(|t| t.iter().any(|&at| from < at && at <= to));
        let serving = self
            .serving
            .get(node)
            .is_some_and(|s| s.iter().any(|&(a, b)| a <= from && to <= b));
        link_ok && latency_ok && steady && serving
    }
}

/// S5: every request completes within its deadline (tiny ones included); a patient request
/// whose path to a serving node was healthy all along gets an answer (never a timeout) unless
/// a slow load of its key was still running when it gave up, a buggify stall overlapped it or
/// views disagreed meanwhile;
/// in a clean window no request is timed out before its own deadline (a node that fails a
/// caller early, e.g. with another caller's deadline) unless a stall overlapped it; no host
/// fails or panics.
fn s5_progress(index: &Index<'_>, calm: &calm::Calm, options: &Options) -> Option<Violation> {
    let disturbances = Disturbances::build(index);
    let stalls = stalls(index);
    let stalled = |from: u64, to: u64| stalls.iter().any(|&(s, e)| s <= to && from <= e);
    let patient_us = micros(options.connect_timeout + options.call_timeout);
    let call_us = micros(options.call_timeout);
    let late = index.ops.iter().find_map(|(id, op)| {
        let limit = op.inv_us + op.deadline_us + DEADLINE_SLACK_US;
        let key = op.request.key();
        match op.ret {
            Some((ret, ret_us, _)) if ret_us > limit => Some(Violation {
                property: "S5",
                rule: "",
                message: format!(
                    "{:?} on {} (op {id}) took {:.3}s, deadline {:.3}s",
                    op.request,
                    op.node,
                    (ret_us - op.inv_us) as f64 / 1e6,
                    op.deadline_us as f64 / 1e6
                ),
                entry: ret,
            }),
            Some((ret, ret_us, Outcome::Failed { kind, message }))
                if matches!(kind, FailKind::Timeout)
                    && op.deadline_us >= patient_us
                    && ret_us - op.inv_us + EARLY_SLACK_US < call_us
                    && calm.clean(op.inv_us, ret_us)
                    && !stalled(op.inv_us, ret_us) =>
            {
                Some(Violation {
                    property: "S5",
                    rule: "",
                    message: format!(
                        "{:?} on {} (op {id}) timed out after {:.3}s, before its own deadline \
                         of {:.3}s, in a clean window: {message}",
                        op.request,
                        op.node,
                        (ret_us - op.inv_us) as f64 / 1e6,
                        call_us as f64 / 1e6
                    ),
                    entry: ret,
                })
            }
            Some((ret, ret_us, Outcome::Failed { kind, message }))
                if matches!(kind, FailKind::Timeout)
                    && op.deadline_us >= patient_us
                    && !loads::load_running(index, key, ret_us)
                    && !stalled(op.inv_us, ret_us)
                    // A node whose view still holds a crashed owner forwards to it and waits.
                    && calm.views_agree(op.inv_us, ret_us)
                    && disturbances.healthy(
                        client_host(op.client),
                        op.node,
                        op.conn_since_us,
                        ret_us,
                    ) =>
            {
                Some(Violation {
                    property: "S5",
                    rule: "",
                    message: format!(
                        "{:?} on {} (op {id}) timed out although the path from {} was healthy, \
                         the node served throughout and no load of {key} was running: {message}",
                        op.request, op.node, op.client
                    ),
                    entry: ret,
                })
            }
            None if index.last_us > limit => Some(Violation {
                property: "S5",
                rule: "",
                message: format!("{:?} on {} (op {id}) never completed", op.request, op.node),
                entry: op.inv,
            }),
            _ => None,
        }
    });
    late
}

/// S5 (hosts): no host fails or panics.
fn s5_host_error(index: &Index<'_>, _calm: &calm::Calm, _: &Options) -> Option<Violation> {
    index.events().find_map(|(i, entry)| match &entry.event {
        Event::HostError(what) => Some(Violation {
            property: "S5",
            rule: "",
            message: format!("host failure: {what}"),
            entry: i,
        }),
        _ => None,
    })
}

/// When buggify points stalled a node (µs intervals): a timeout they overlap is excused, as
/// a latency spike's would be.
pub(crate) fn stalls(index: &Index<'_>) -> Vec<(u64, u64)> {
    index
        .events()
        .filter_map(|(_, entry)| match &entry.event {
            Event::Stalled { ms, .. } => Some((entry.at_us, entry.at_us + ms * 1_000)),
            _ => None,
        })
        .collect()
}

/// How long after a step ends a buggify stall may still start and belong to it (ms clocks).
const STALL_SLACK_US: u64 = 5_000;

/// Buggify stalls at one fault point: when each began, on which node, until when (µs).
#[derive(Debug, Default)]
pub(crate) struct PointStalls<'a>(Vec<(u64, &'a str, u64)>);

impl<'a> PointStalls<'a> {
    /// The stalls recorded at `point` (e.g. `before-keep-fetch`).
    pub(crate) fn of(index: &Index<'a>, point: &str) -> Self {
        PointStalls(
            index
                .events()
                .filter_map(|(_, entry)| match &entry.event {
                    Event::Stalled {
                        node, point: p, ms, ..
                    } if p == point => Some((entry.at_us, node.as_str(), entry.at_us + ms * 1_000)),
                    _ => None,
                })
                .collect(),
        )
    }

    /// When a step of `node` that ended at `end_us` (a load, a fetch's answer) took effect:
    /// then, or when a stall at this point that began right after it ended.
    pub(crate) fn held_until(&self, node: &str, end_us: u64) -> u64 {
        self.0
            .iter()
            .filter(|&&(at, n, _)| n == node && at >= end_us && at <= end_us + STALL_SLACK_US)
            .map(|&(_, _, until)| until)
            .fold(end_us, u64::max)
    }
}

/// The host of a client label (`c1.0` → `c1`).
pub(crate) fn client_host(label: &str) -> &str {
    label.split('.').next().unwrap_or(label)
}

/// L1: after the heal, views equal the live set within the bound (the driver records a
/// timeout when they do not).
fn l1_convergence(index: &Index<'_>, _calm: &calm::Calm, _: &Options) -> Option<Violation> {
    index.events().find_map(|(i, entry)| match &entry.event {
        Event::ConvergenceTimeout { detail } => Some(Violation {
            property: "L1",
            rule: "",
            message: format!("views did not converge within the bound: {detail}"),
            entry: i,
        }),
        _ => None,
    })
}

/// L2: after convergence, every live node returns what the last acknowledged write of a key
/// wrote (or, after a delete, a miss or a value loaded since), allowing only hot copies within
/// their lifetime, eviction of the value on its owner, a failed load, and a timeout while a
/// buggify stall held a node.
fn l2_visibility(index: &Index<'_>, _calm: &calm::Calm, options: &Options) -> Option<Violation> {
    let mut evictions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (i, entry) in index.events() {
        match &entry.event {
            Event::DataPath { ready: false, .. } => {
                return Some(Violation {
                    property: "L2",
                    rule: "",
                    message: "node-to-node paths still failed after every probe round".into(),
                    entry: i,
                })
            }
            Event::WriteNotAcknowledged { key } => {
                return Some(Violation {
                    property: "L2",
                    rule: "",
                    message: format!("no write of {key} was acknowledged after convergence"),
                    entry: i,
                })
            }
            Event::OwnerEvictions {
                key, evictions: n, ..
            } => evictions.entry(key).or_default().push(*n),
            _ => {}
        }
    }
    let mut last_write: BTreeMap<&str, (u64, &Op<'_>)> = BTreeMap::new();
    for (id, op) in &index.ops {
        if op.phase == Phase::L2Write
            && matches!(
                op.ret,
                Some((_, _, Outcome::Stored | Outcome::Deleted { .. }))
            )
        {
            last_write.insert(op.request.key(), (*id, op));
        }
    }
    let hot_lifetime_us = micros(options.hot_lifetime());
    let stalls = stalls(index);
    index.ops.iter().find_map(|(id, op)| {
        if op.phase != Phase::L2Read {
            return None;
        }
        let (ret, ret_us, outcome) = op.ret?;
        let key = op.request.key();
        let (write_id, write) = *last_write.get(key)?;
        let (write_ret, write_ret_us, _) = write.ret?;
        let evicted = evictions
            .get(key)
            .is_none_or(|n| n.len() < 2 || n.first() != n.last());
        let origin = |value: &str| index.origins.get(&(key, value)).copied();
        let loaded_since =
            |value: &str| matches!(origin(value), Some(Origin::Load { at, .. }) if at > write.inv);
        let stale_hot_copy = |value: &str| {
            options.hot.is_some()
                && op.inv_us < write_ret_us + hot_lifetime_us + EXPIRY_SLACK_US
                && origin(value).is_some_and(|o| o.at() < write_ret)
        };
        // The source failed (errors and panics are simulated): the node reports it, not a value.
        let load_failed = |message: &str| {
            message.contains("loading failed") || message.contains("loader panicked")
        };
        let ok = match (write.request, outcome) {
            (Request::Set { value, .. }, Outcome::Value { value: got, .. }) => {
                got == value || (evicted && loaded_since(got)) || stale_hot_copy(got)
            }
            (Request::Set { .. }, Outcome::Miss) => evicted,
            (Request::Set { .. }, Outcome::Failed { message, .. }) => {
                evicted && load_failed(message)
            }
            (Request::Delete { .. }, Outcome::Miss) => true,
            (Request::Delete { .. }, Outcome::Value { value: got, .. }) => {
                loaded_since(got) || stale_hot_copy(got)
            }
            (Request::Delete { .. }, Outcome::Failed { message, .. }) => load_failed(message),
            _ => false,
        };
        // Buggify stays on after convergence: a stall (a slow step on some node) may hold the
        // answer past the caller's patience, as a slow loader may (seed 1250).
        let stalled = matches!(
            outcome,
            Outcome::Failed {
                kind: FailKind::Timeout,
                ..
            }
        ) && stalls.iter().any(|&(s, e)| s <= ret_us && op.inv_us <= e);
        let ok = ok || stalled;
        (!ok).then(|| Violation {
            property: "L2",
            rule: "",
            message: format!(
                "after convergence, {:?} (op {write_id}) was acknowledged, but get {key} on {} \
                 (op {id}) returned {outcome:?}{}",
                write.request,
                op.node,
                if evicted {
                    " (the owner evicted meanwhile)"
                } else {
                    ""
                }
            ),
            entry: ret,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::test_support::{self, at, ret, started};
    use crate::options::Mutation;

    fn options() -> Options {
        let mut o = Options::from_seed(1, Mutation::None);
        o.default_ttl = None;
        o.hot = None;
        o
    }

    fn invoke(op: u64, node: &str, request: Request, phase: Phase) -> Event {
        test_support::invoke(op, "c1.0", node, request, phase, false)
    }

    fn get(key: &str) -> Request {
        Request::Get { key: key.into() }
    }

    fn set(key: &str, value: &str, ttl_ms: Option<u64>) -> Request {
        Request::Set {
            key: key.into(),
            value: value.into(),
            ttl_ms,
        }
    }

    fn value(v: &str) -> Outcome {
        Outcome::Value {
            value: v.into(),
            ttl_ms: None,
        }
    }

    fn property(entries: &[Entry], o: &Options) -> Option<&'static str> {
        check(entries, o).map(|v| v.property)
    }

    #[test]
    fn a_clean_history_passes() {
        let h = [
            at(0, started("n1")),
            at(1, invoke(0, "n1", set("k", "S:k:1", None), Phase::Safety)),
            at(2, ret(0, Outcome::Stored)),
            at(3, invoke(1, "n1", get("k"), Phase::Safety)),
            at(4, ret(1, value("S:k:1"))),
        ];
        assert_eq!(check(&h, &options()), None);
    }

    #[test]
    fn s1_catches_a_value_of_another_key() {
        let h = [
            at(0, started("n1")),
            at(1, invoke(0, "n1", set("j", "S:j:1", None), Phase::Safety)),
            at(2, ret(0, Outcome::Stored)),
            at(3, invoke(1, "n1", get("k"), Phase::Safety)),
            at(4, ret(1, value("S:j:1"))),
        ];
        assert_eq!(property(&h, &options()), Some("S1"));
    }

    #[test]
    fn s2_s3_catch_budget_and_double_loads() {
        let stats = |stores: Vec<(u64, u64)>| Event::Stats {
            node: "n1".into(),
            inc: 1,
            bytes: stores.iter().map(|s| s.0).sum(),
            budget: stores.iter().map(|s| s.1).sum(),
            counted: stores.iter().map(|s| s.0).collect(),
            stores,
            evictions: 0,
            local_fallbacks: 0,
            peer_errors: 0,
            rejected: 0,
        };
        let within = stats(vec![(100, 100), (20, 25)]);
        assert_eq!(property(&[at(0, within)], &options()), None);
        // The total is within budget, but the main store is over its own.
        let main_over = stats(vec![(101, 100), (0, 25)]);
        assert_eq!(property(&[at(0, main_over)], &options()), Some("S2"));
        let hot_over = stats(vec![(0, 100), (26, 25)]);
        assert_eq!(property(&[at(0, hot_over)], &options()), Some("S2"));
        // The store's own counter says it is within budget; its entries say otherwise.
        let Event::Stats {
            node,
            inc,
            bytes,
            budget,
            stores,
            ..
        } = stats(vec![(90, 100), (0, 25)])
        else {
            unreachable!()
        };
        let drifted = Event::Stats {
            node,
            inc,
            bytes,
            budget,
            stores,
            counted: vec![120, 0],
            evictions: 0,
            local_fallbacks: 0,
            peer_errors: 0,
            rejected: 0,
        };
        let v = check(&[at(0, drifted)], &options());
        assert_eq!(v.as_ref().map(|v| v.property), Some("S2"));
        assert!(v.is_some_and(|v| v.message.contains("120 bytes")));
        let load = Event::LoadStart {
            node: "n1".into(),
            inc: 1,
            key: "k".into(),
            concurrent: 2,
            node_concurrent: 2,
            call: 0,
        };
        assert_eq!(property(&[at(0, load)], &options()), Some("S3"));
    }

    #[test]
    fn s4_catches_a_value_served_past_its_ttl() {
        let h = |read_ms| {
            vec![
                at(0, started("n1")),
                at(
                    1,
                    invoke(0, "n1", set("k", "S:k:1", Some(100)), Phase::Safety),
                ),
                at(2, ret(0, Outcome::Stored)),
                at(read_ms, invoke(1, "n1", get("k"), Phase::Safety)),
                at(
                    read_ms + 1,
                    ret(
                        1,
                        Outcome::Value {
                            value: "S:k:1".into(),
                            ttl_ms: Some(0),
                        },
                    ),
                ),
            ]
        };
        assert_eq!(property(&h(100), &options()), None);
        assert_eq!(property(&h(200), &options()), Some("S4"));
    }

    #[test]
    fn s4_catches_a_remaining_lifetime_past_the_expiry() {
        let h = |remaining_ms: Option<u64>| {
            vec![
                at(0, started("n1")),
                at(
                    1,
                    invoke(0, "n1", set("k", "S:k:1", Some(100)), Phase::Safety),
                ),
                at(2, ret(0, Outcome::Stored)),
                at(50, invoke(1, "n1", get("k"), Phase::Safety)),
                at(
                    60,
                    ret(
                        1,
                        Outcome::Value {
                            value: "S:k:1".into(),
                            ttl_ms: remaining_ms,
                        },
                    ),
                ),
            ]
        };
        // Stored by 2 ms at the latest, for 100 ms: at most 52 ms are left when the get is sent.
        assert_eq!(property(&h(Some(45)), &options()), None);
        assert_eq!(property(&h(Some(52)), &options()), None);
        assert_eq!(property(&h(Some(90)), &options()), Some("S4"));
        assert_eq!(property(&h(None), &options()), Some("S4"));
    }

    #[test]
    fn s5_catches_late_answers_hangs_and_timeouts_on_healthy_paths() {
        let late = [
            at(0, started("n1")),
            at(1, invoke(0, "n1", get("k"), Phase::Safety)),
            at(6_000, ret(0, Outcome::Miss)),
        ];
        assert_eq!(property(&late, &options()), Some("S5"));
        let hang = [
            at(0, started("n1")),
            at(1, invoke(0, "n1", get("k"), Phase::Safety)),
            at(9_000, Event::Registry("later".into())),
        ];
        assert_eq!(property(&hang, &options()), Some("S5"));
        let timeout = Outcome::Failed {
            kind: FailKind::Timeout,
            message: "no answer".into(),
        };
        let view = Event::View {
            node: "n1".into(),
            inc: 1,
            members: vec![("n1".into(), 1)],
        };
        let healthy = [
            at(0, started("n1")),
            at(0, view.clone()),
            at(1, invoke(0, "n1", get("k"), Phase::Safety)),
            at(4_001, ret(0, timeout.clone())),
        ];
        assert_eq!(property(&healthy, &options()), Some("S5"));
        // The same while the node's view is not the cluster's (it may wait on a dead owner).
        let stale_view = [
            at(0, started("n1")),
            at(1, invoke(0, "n1", get("k"), Phase::Safety)),
            at(4_001, ret(0, timeout.clone())),
        ];
        assert_eq!(property(&stale_view, &options()), None);
        let partitioned = [
            at(0, started("n1")),
            at(0, view),
            at(
                1,
                Event::Fault(FaultAction::Partition("c1".into(), "n1".into())),
            ),
            at(1, invoke(0, "n1", get("k"), Phase::Safety)),
            at(4_001, ret(0, timeout)),
        ];
        assert_eq!(property(&partitioned, &options()), None);
    }

    #[test]
    fn l1_and_l2_catch_what_the_liveness_phase_reports() {
        let timeout = Event::ConvergenceTimeout {
            detail: "n1 routes to n2".into(),
        };
        assert_eq!(property(&[at(0, timeout)], &options()), Some("L1"));
        let evictions = |ms| {
            at(
                ms,
                Event::OwnerEvictions {
                    key: "k".into(),
                    owner: "n1".into(),
                    evictions: 0,
                },
            )
        };
        let h = |read: Outcome| {
            vec![
                at(0, started("n1")),
                at(1, invoke(0, "n1", set("k", "V:k:0", None), Phase::L2Write)),
                at(2, ret(0, Outcome::Stored)),
                at(
                    3,
                    invoke(1, "n1", Request::Delete { key: "k".into() }, Phase::L2Write),
                ),
                at(4, ret(1, Outcome::Deleted { existed: true })),
                evictions(5),
                at(6, invoke(2, "n1", get("k"), Phase::L2Read)),
                at(7, ret(2, read)),
                evictions(8),
            ]
        };
        assert_eq!(property(&h(Outcome::Miss), &options()), None);
        assert_eq!(property(&h(value("V:k:0")), &options()), Some("L2"));
    }

    /// Seed 1250: after convergence the owner's loader ran into its load timeout and a buggify
    /// stall held the failed load another second before the owner answered; the forwarding
    /// node gave up first. The stall is the fault; without one, the timeout breaks L2.
    #[test]
    fn l2_excuses_a_timeout_only_while_a_stall_held_a_node() {
        let read = |stall: bool| {
            let mut h = vec![
                at(0, started("n1")),
                at(
                    1,
                    invoke(0, "n1", Request::Delete { key: "k".into() }, Phase::L2Write),
                ),
                at(2, ret(0, Outcome::Deleted { existed: true })),
                at(10, invoke(1, "n1", get("k"), Phase::L2Read)),
            ];
            if stall {
                h.push(at(
                    1_510,
                    Event::Stalled {
                        node: "n2".into(),
                        inc: 1,
                        point: "before-keep-load".into(),
                        ms: 1_006,
                    },
                ));
            }
            h.push(at(
                2_510,
                ret(
                    1,
                    Outcome::Failed {
                        kind: FailKind::Timeout,
                        message: "no answer within 4s".into(),
                    },
                ),
            ));
            h
        };
        assert_eq!(property(&read(false), &options()), Some("L2"));
        assert_eq!(property(&read(true), &options()), None);
    }
}
