//! S7 read-your-writes and S8 no resurrection (with real-time staleness).
//!
//! Both judge a get `G` of key `k` that returned a value or a miss against a write `W` of `k`
//! acknowledged before `G` was sent. What `G` returned is **older than `W`** when it is:
//! - the value of a set acknowledged before `W` was sent;
//! - the value of a load that started before `W` was sent (a flight the write superseded);
//! - a miss after a set `W` that nothing explains: no later write of `k`, `W`'s lifetime not
//!   over, the cluster quiet (no restart or ownership move that could have lost `W`), and no
//!   eviction since `W` on `k`'s owner (the only store that held it while views agreed).
//!
//! A value of a load that started after `W` was sent, after a set `W`, means `W` was lost; it
//! is older than `W` unless the loss is explained the same way as a miss. A load on a node that
//! does not own `k` (a fallback) ignores the owner's copy: in a clean window it is older than
//! `W` whatever else happened; outside one it passes (the owner may have been unreachable), and
//! so does a miss such a fallback load found. Values of sets that
//! were never acknowledged (or never answered) cannot be ordered and always pass.
//!
//! - **S7**: `W` and `G` come from the same client through the same node, and views agreed
//!   from `W` to `G`: `G` returns `W` or something newer.
//! - **S8**: for every client and node, when no other write of `k` is in flight during `G`
//!   (a write that failed counts as in flight for [`IN_FLIGHT_GRACE_US`] after its failure):
//!   `G` returns `W` or something newer. Exempt: gets while views disagree (a node that lost
//!   its lease or lags behind may serve what it holds), writes acknowledged while views
//!   disagreed (two nodes may each own the key in their own view; what one acknowledged is lost
//!   when the views agree again on the other — README, Consistency), and — outside clean windows — hot
//!   copies, i.e. values returned within the hot lifetime after `W`, or after the reading node
//!   kept the copy if a load there held it past `W` (a stall before keeping it). S8 also flags a main store
//!   holding keys its node does not own (sampled): they resurface when ownership returns.

use std::collections::BTreeMap;

use crate::history::{micros, Event, FailKind, LoadResult, Outcome, PeerMethod, Request};
use crate::options::Options;

use super::calm::Calm;
use super::{lifetime_us, Index, Op, Origin, PointStalls, Violation};

/// A failed write may still be applied this long after it failed (held links, queues).
pub const IN_FLIGHT_GRACE_US: u64 = 6_000_000;
/// Slack on lifetimes (ms clocks, ms on the wire).
const SLACK_US: u64 = 5_000;
/// The buggify point that stalls a node between a fetch's answer and keeping (and delivering)
/// it (`lcache_node::buggify::Point::BeforeKeepFetch`).
const FETCH_STALL_POINT: &str = "before-keep-fetch";
/// The buggify point that stalls a node between a load's end and keeping (and delivering) it
/// (`lcache_node::buggify::Point::BeforeKeepLoad`).
const LOAD_STALL_POINT: &str = "before-keep-load";

/// Until when a write may still be applied: its acknowledgement, or [`IN_FLIGHT_GRACE_US`]
/// after its failure; `None` while it has not returned.
fn applied_until(write: &Op<'_>) -> Option<u64> {
    let ret = write.ret_us()?;
    Some(if write.acked() {
        ret
    } else {
        ret + IN_FLIGHT_GRACE_US
    })
}

/// The writes of one key, by op id.
type Writes<'i, 'a> = Vec<(u64, &'i Op<'a>)>;

struct Fresh<'i, 'a> {
    index: &'i Index<'a>,
    calm: &'i Calm,
    options: &'i Options,
    writes: BTreeMap<&'a str, Writes<'i, 'a>>,
    /// Instants (µs) a node's eviction counter was seen to grow (sampled), with the node.
    evictions: Vec<(u64, &'a str)>,
    /// Every recorded view, in order: when, whose, and the member ids.
    views: Vec<(u64, &'a str, Vec<String>)>,
    /// When a node stopped serving (crashed or stopped), in order.
    downs: Vec<(u64, &'a str)>,
    /// Buggify stalls before keeping a fetched value.
    fetch_stalls: PointStalls<'a>,
    /// Buggify stalls before keeping a loaded value.
    load_stalls: PointStalls<'a>,
    rings: std::cell::RefCell<BTreeMap<Vec<String>, lcache_core::ring::Ring>>,
}

/// A verdict on one get against one earlier write.
enum Verdict {
    Fresh,
    Older(String),
}

impl<'i, 'a> Fresh<'i, 'a> {
    fn new(index: &'i Index<'a>, calm: &'i Calm, options: &'i Options) -> Self {
        let mut writes: BTreeMap<&'a str, Writes<'i, 'a>> = BTreeMap::new();
        for (id, op) in &index.ops {
            if !matches!(op.request, Request::Get { .. }) {
                writes.entry(op.request.key()).or_default().push((*id, op));
            }
        }
        let mut evictions = Vec::new();
        let mut views = Vec::new();
        let mut downs = Vec::new();
        let mut seen: BTreeMap<(&str, u64), u64> = BTreeMap::new();
        for (_, entry) in index.events() {
            match &entry.event {
                Event::Stats {
                    node,
                    inc,
                    evictions: n,
                    ..
                } => {
                    let last = seen.insert((node.as_str(), *inc), *n).unwrap_or(0);
                    if *n > last {
                        evictions.push((entry.at_us, node.as_str()));
                    }
                }
                Event::View { node, members, .. } => {
                    views.push((
                        entry.at_us,
                        node.as_str(),
                        members.iter().map(|(id, _)| id.clone()).collect(),
                    ));
                }
                Event::Fault(crate::faults::FaultAction::Crash(node))
                | Event::NodeStopped { node, .. } => downs.push((entry.at_us, node.as_str())),
                _ => {}
            }
        }
        Fresh {
            index,
            calm,
            options,
            writes,
            evictions,
            views,
            downs,
            fetch_stalls: PointStalls::of(index, FETCH_STALL_POINT),
            load_stalls: PointStalls::of(index, LOAD_STALL_POINT),
            rings: Default::default(),
        }
    }

    /// Every get with a value or miss, with the write of its key it is judged against: of the
    /// writes `mine` accepts, the last one sent before the get, if that one was acknowledged
    /// before the get was sent (a write sent later is the stronger test: anything older than an
    /// earlier write is older than it too).
    fn judged(
        &self,
        mine: impl Fn(&Op<'_>, &Op<'_>) -> bool + Copy + 'i,
    ) -> impl Iterator<Item = (u64, &'i Op<'a>, usize, u64, u64, &'i Op<'a>)> + '_ {
        self.index.ops.iter().filter_map(move |(id, g)| {
            if g.as_peer {
                // Claims to be forwarded by a peer that routed it: the node answers from where
                // the caller sent it, without a second hop, whoever owns the key.
                return None;
            }
            let (ret, ret_us) = match (g.request, g.ret) {
                (
                    Request::Get { .. },
                    Some((ret, ret_us, Outcome::Value { .. } | Outcome::Miss)),
                ) => (ret, ret_us),
                _ => return None,
            };
            let (wid, w) = self
                .writes
                .get(g.request.key())?
                .iter()
                .filter(|(_, w)| {
                    mine(g, w) && w.acked() && w.ret.is_some_and(|(i, _, _)| i < g.inv)
                })
                .max_by_key(|(_, w)| w.inv_us)?;
            Some((*id, g, ret, ret_us, *wid, *w))
        })
    }

    /// Whether `w`'s loss by the time `until` is explained: a later write of the key, `w`'s
    /// lifetime over, an eviction anywhere since, or a cluster that was not quiet.
    fn loss_explained(&self, w: &Op<'_>, until: u64) -> bool {
        let Request::Set { key, ttl_ms, .. } = w.request else {
            return true;
        };
        // Another write replaced it (and may have expired or been deleted since): one sent
        // later, or one sent earlier that was still in flight when `w` was sent (concurrent
        // writes apply in either order).
        let replaced = self.writes.get(key.as_str()).is_some_and(|ws| {
            ws.iter().any(|(_, d)| {
                !std::ptr::eq(*d, w)
                    && d.inv_us < until
                    && (d.inv_us > w.inv_us || applied_until(d).is_none_or(|end| end > w.inv_us))
            })
        });
        let expired = lifetime_us(*ttl_ms, self.options)
            .is_some_and(|life| w.inv_us + life <= until + SLACK_US);
        if replaced || expired || !self.calm.quiet(w.inv_us, until) {
            return true;
        }
        // Quiet: views agree, so only the owner's main store held the value; only an eviction
        // there explains its loss.
        let owner = self.owner_at(key, w.inv_us);
        let pad = super::calm::VIEW_PAD_US;
        self.evictions.iter().any(|&(t, node)| {
            t + pad >= w.inv_us && t <= until + pad && owner.as_deref().is_none_or(|o| o == node)
        })
    }

    /// The latest instant a fetch of `key` by `node` that may have carried the value from before
    /// the write `w` could have answered the callers waiting on it: the answer's return, or
    /// later if the node stalled (buggify) between that answer and keeping it. Such a fetch was
    /// sent before `w` started, or answered before `w` was acknowledged (the owner had not
    /// applied it yet: seed 7883, a fetch sent while a slow write was in flight). `None`: no
    /// such fetch answered.
    fn fetch_flight_end(&self, node: &str, key: &str, w: &Op<'_>) -> Option<u64> {
        let acked_us = w.ret_us();
        self.index
            .peer_calls
            .iter()
            .filter(|c| {
                c.node == node
                    && c.key == key
                    && c.method == PeerMethod::Get
                    && !c.failed
                    && (c.at_us < w.inv_us
                        || c.ret_us
                            .is_some_and(|r| acked_us.is_some_and(|acked| r < acked)))
            })
            .filter_map(|c| Some(self.fetch_stalls.held_until(node, c.ret_us?)))
            .max()
    }

    /// When the value `g` returned became a copy held by `g`'s node, if a load there produced
    /// it: the load's end, or later if the node stalled (buggify) between the end and keeping
    /// it. A hot copy lives for the hot lifetime from then.
    fn kept_here_at(&self, g: &Op<'_>) -> Option<u64> {
        let Some((_, _, Outcome::Value { value, .. })) = g.ret else {
            return None;
        };
        match self.index.origins.get(&(g.request.key(), value.as_str()))? {
            Origin::Load { node, end_us, .. } if *node == g.node => {
                Some(self.load_stalls.held_until(node, *end_us))
            }
            _ => None,
        }
    }

    /// The owner of `key` in the last view recorded at or before `at_us` by a node still
    /// serving then (views of serving nodes agree in quiet windows, where this is used; a node
    /// that crashed after recording its view leaves an outdated one behind: seed 1800).
    fn owner_at(&self, key: &str, at_us: u64) -> Option<String> {
        let (_, _, members) = self
            .views
            .iter()
            .take_while(|(t, _, _)| *t <= at_us)
            .filter(|&&(t, node, _)| {
                !self
                    .downs
                    .iter()
                    .any(|&(down, n)| n == node && down >= t && down <= at_us)
            })
            .last()?;
        super::loads::owner(&mut self.rings.borrow_mut(), members, key)
    }

    /// Whether what `g` returned is older than the acknowledged write `w`.
    fn verdict(&self, g: &Op<'_>, ret_us: u64, w: &Op<'_>) -> Verdict {
        let key = g.request.key();
        let got = match g.ret {
            Some((_, _, Outcome::Value { value, .. })) => Some(value.as_str()),
            _ => None,
        };
        let clean = self.calm.clean(w.inv_us, ret_us);
        let owner = self.owner_at(key, w.inv_us);
        let Some(value) = got else {
            // Outside clean windows a non-owner may have fallen back to its own load (owner
            // unreachable) and found the key missing at the source.
            let fallback_miss = !clean
                && self.index.loads.iter().any(|l| {
                    l.key == key
                        && l.start_us >= w.inv_us
                        && l.start_us <= ret_us
                        && owner.as_deref().is_none_or(|o| o != l.node)
                        && matches!(l.end, Some((_, _, LoadResult::Missing)))
                });
            return if matches!(w.request, Request::Set { .. })
                && !fallback_miss
                && !self.loss_explained(w, ret_us)
            {
                Verdict::Older("a miss, and nothing explains the loss of the write".into())
            } else {
                Verdict::Fresh
            };
        };
        if let Request::Set { value: written, .. } = w.request {
            if written == value {
                return Verdict::Fresh;
            }
        }
        // The same, for a fetch that may have carried the older value (sent before the write,
        // or answered before the write was acknowledged) and that the reading node held past
        // it (a buggify stall between the answer and keeping it): whatever the value's origin.
        if !clean
            && self
                .fetch_flight_end(g.node, key, w)
                .is_some_and(|end| g.inv_us <= end && w.ret_us().is_some_and(|t| t < end))
        {
            return Verdict::Fresh;
        }
        match self.index.origins.get(&(key, value)) {
            Some(Origin::Set { op, .. }) => {
                let Some(s) = self.index.ops.get(op) else {
                    return Verdict::Fresh;
                };
                if s.acked() && s.ret.is_some_and(|(i, _, _)| i < w.inv) {
                    Verdict::Older(format!("{value:?}, written by op {op} before the write"))
                } else {
                    Verdict::Fresh
                }
            }
            // Outside clean windows an invalidation may have been lost: a node that missed it
            // lets later callers join its load of the older value until that is kept (a stall
            // before keeping it may hold the flight past the write: seed 1171).
            Some(Origin::Load {
                start_us,
                end_us,
                node,
                ..
            }) if *start_us < w.inv_us
                && !clean
                && g.inv_us <= self.load_stalls.held_until(node, *end_us)
                && w.ret_us()
                    .is_some_and(|t| t < self.load_stalls.held_until(node, *end_us)) =>
            {
                Verdict::Fresh
            }
            Some(Origin::Load { start_us, .. }) if *start_us < w.inv_us => Verdict::Older(format!(
                "{value:?}, loaded by a load that started at {:.3}s, before the write",
                *start_us as f64 / 1e6
            )),
            Some(Origin::Load { start_us, node, .. })
                if owner.as_deref().is_some_and(|o| o != *node) =>
            {
                // A fallback load on a non-owner ignores the owner's copy: in a clean window
                // nothing excuses it; outside one the owner may have been unreachable.
                if clean {
                    Verdict::Older(format!(
                        "{value:?}, loaded by {node}, which does not own {key}, in a clean \
                         window: a fallback load that ignores the write on the owner"
                    ))
                } else {
                    Verdict::Fresh
                }
            }
            Some(Origin::Load { start_us, .. }) => {
                if matches!(w.request, Request::Set { .. }) && !self.loss_explained(w, ret_us) {
                    let when = if w.ret_us().is_some_and(|t| *start_us <= t) {
                        "while the write was in flight (a flight the write superseded, or the \
                         write was lost)"
                    } else {
                        "after the write, although nothing explains the write's loss"
                    };
                    Verdict::Older(format!(
                        "{value:?}, loaded by a load that started at {:.3}s, {when}",
                        *start_us as f64 / 1e6
                    ))
                } else {
                    Verdict::Fresh
                }
            }
            None => Verdict::Fresh,
        }
    }

    /// Whether a write of `g`'s key other than `w` was in flight while `g` ran.
    fn write_in_flight(&self, g: &Op<'_>, ret_us: u64, w: &Op<'_>) -> bool {
        self.writes.get(g.request.key()).is_some_and(|ws| {
            ws.iter().any(|(_, o)| {
                if std::ptr::eq(*o, w) || o.inv_us > ret_us {
                    return false;
                }
                let settled = match o.ret {
                    None => u64::MAX,
                    Some((_, t, Outcome::Stored | Outcome::Deleted { .. })) => t,
                    Some((
                        _,
                        _,
                        Outcome::Failed {
                            kind: FailKind::Connect,
                            ..
                        },
                    )) => 0,
                    Some((_, t, _)) => t.saturating_add(IN_FLIGHT_GRACE_US),
                };
                settled >= g.inv_us
            })
        })
    }
}

fn describe(w: &Op<'_>, wid: u64) -> String {
    match w.request {
        Request::Set { value, .. } => {
            format!("set of {value:?} (op {wid}) by {} on {}", w.client, w.node)
        }
        _ => format!("delete (op {wid}) by {} on {}", w.client, w.node),
    }
}

/// S7: a client's get through the node that acknowledged its write returns that write or newer.
pub(crate) fn s7_read_your_writes(
    index: &Index<'_>,
    calm: &Calm,
    options: &Options,
) -> Option<Violation> {
    let fresh = Fresh::new(index, calm, options);
    let mut found: Option<Violation> = None;
    let same = |g: &Op<'_>, w: &Op<'_>| g.client == w.client && g.node == w.node;
    for (gid, g, ret, ret_us, wid, w) in fresh.judged(same) {
        if !calm.views_agree(w.inv_us, ret_us) {
            continue;
        }
        if found.as_ref().is_some_and(|v| v.entry <= ret) {
            continue;
        }
        // A later write of this client there that was not acknowledged makes it unjudgeable.
        let unacked_own = fresh.writes.get(g.request.key()).is_some_and(|ws| {
            ws.iter().any(|(_, o)| {
                same(g, o) && o.inv_us > w.inv_us && o.inv_us < g.inv_us && !o.acked()
            })
        });
        if unacked_own {
            continue;
        }
        if let Verdict::Older(what) = fresh.verdict(g, ret_us, w) {
            found = Some(Violation {
                property: "S7",
                rule: "",
                message: format!(
                    "{} acknowledged the {}, yet the same client's later get of {} there \
                     (op {gid}) returned {what}",
                    w.node,
                    describe(w, wid),
                    g.request.key()
                ),
                entry: ret,
            });
        }
    }
    found
}

/// S8 (foreign keys): no main store holds keys its node does not own.
pub(crate) fn s8_foreign_keys(index: &Index<'_>, _calm: &Calm, _: &Options) -> Option<Violation> {
    index.events().find_map(|(i, entry)| match &entry.event {
        Event::ForeignKeys { node, inc, keys } => Some(Violation {
            property: "S8",
            rule: "",
            message: format!(
                "the main store of {node} (incarnation {inc}) holds {keys:?}, which {node} does \
                 not own in its own view: the values resurface if ownership comes back"
            ),
            entry: i,
        }),
        _ => None,
    })
}

/// S8: no older value of a key comes back once a newer write was acknowledged (see the module
/// docs for what is exempt).
pub(crate) fn s8_no_resurrection(
    index: &Index<'_>,
    calm: &Calm,
    options: &Options,
) -> Option<Violation> {
    let fresh = Fresh::new(index, calm, options);
    let hot_us = micros(options.hot_lifetime());
    let mut stale: Option<Violation> = None;
    for (gid, g, ret, ret_us, wid, w) in fresh.judged(|_, _| true) {
        if stale.as_ref().is_some_and(|v| v.entry <= ret) {
            continue;
        }
        let pad = super::calm::VIEW_PAD_US;
        if !calm.views_agree(g.inv_us.saturating_sub(pad), ret_us)
            || !calm.views_agree(w.inv_us.saturating_sub(pad), w.ret_us().unwrap_or(ret_us))
            || fresh.write_in_flight(g, ret_us, w)
        {
            continue;
        }
        let w_ret = w.ret_us().unwrap_or(0);
        // A copy its node kept after the write (a load that started before it, held by a
        // stall past it, whose invalidation the fault lost) lives a hot lifetime from then.
        // The same for a fetch of the older value the reading node held past it (seeds 2638,
        // 7883).
        let kept = fresh
            .kept_here_at(g)
            .into_iter()
            .chain(fresh.fetch_flight_end(g.node, g.request.key(), w))
            .max();
        let copy_from = kept.map_or(w_ret, |kept| kept.max(w_ret));
        let hot_copy = options.hot.is_some()
            && g.inv_us < copy_from + hot_us + SLACK_US
            && !calm.clean(w.inv_us, ret_us);
        if hot_copy {
            continue;
        }
        if let Verdict::Older(what) = fresh.verdict(g, ret_us, w) {
            stale = Some(Violation {
                property: "S8",
                rule: "",
                message: format!(
                    "the {} was acknowledged at {:.3}s; get {} on {} (op {gid}) sent at {:.3}s, \
                     with no other write of it in flight, returned {what}{}",
                    describe(w, wid),
                    w_ret as f64 / 1e6,
                    g.request.key(),
                    g.node,
                    g.inv_us as f64 / 1e6,
                    if calm.clean(w.inv_us, ret_us) {
                        " (in a clean window: no fault excuses a stale copy)"
                    } else {
                        ""
                    }
                ),
                entry: ret,
            });
        }
    }
    stale
}

#[cfg(test)]
mod tests {
    use crate::checker::check_all;
    use crate::checker::test_support::{self, at, ret, view};
    use crate::history::{Entry, Event, Outcome, Phase, Request};
    use crate::options::{Mutation, Options};

    fn invoke(op: u64, client: &str, node: &str, request: Request) -> Event {
        test_support::invoke(op, client, node, request, Phase::Safety, false)
    }

    fn set(value: &str) -> Request {
        Request::Set {
            key: "k".into(),
            value: value.into(),
            ttl_ms: None,
        }
    }

    fn get() -> Request {
        Request::Get { key: "k".into() }
    }

    fn value(v: &str) -> Outcome {
        Outcome::Value {
            value: v.into(),
            ttl_ms: None,
        }
    }

    /// Two nodes that agree on the view from the start.
    fn cluster() -> Vec<Entry> {
        let nodes = ["n1", "n2"];
        let started = nodes.map(|n| at(0, test_support::started(n)));
        let views = nodes.map(|n| at(1, view(n, &nodes)));
        started.into_iter().chain(views).collect()
    }

    fn options(hot: bool) -> Options {
        let mut o = Options::from_seed(1, Mutation::None);
        o.default_ttl = None;
        o.hot = hot.then_some((1_000, std::time::Duration::from_millis(500)));
        o
    }

    fn rules(h: &[Entry], o: &Options) -> Vec<&'static str> {
        check_all(h, o).into_iter().map(|v| v.rule).collect()
    }

    /// A writes `old`, then `new` through n1; a later get returns `got` on `node` for `client`.
    fn history(client: &str, node: &str, got: &str) -> Vec<Entry> {
        let mut h = cluster();
        h.extend([
            at(100, invoke(0, "c1.0", "n1", set("S:k:old"))),
            at(101, ret(0, Outcome::Stored)),
            at(200, invoke(1, "c1.0", "n1", set("S:k:new"))),
            at(201, ret(1, Outcome::Stored)),
            at(300, invoke(2, client, node, get())),
            at(301, ret(2, value(got))),
        ]);
        h
    }

    #[test]
    fn s7_catches_an_older_value_for_the_writer_on_its_node() {
        let o = options(false);
        assert!(rules(&history("c1.0", "n1", "S:k:new"), &o).is_empty());
        let stale = rules(&history("c1.0", "n1", "S:k:old"), &o);
        assert!(stale.contains(&"read-your-writes"), "{stale:?}");
    }

    #[test]
    fn s8_catches_a_stale_read_anywhere_in_a_clean_window_hot_cache_or_not() {
        for hot in [false, true] {
            let o = options(hot);
            let stale = rules(&history("c2.0", "n2", "S:k:old"), &o);
            assert!(stale.contains(&"no-stale-read"), "hot {hot}: {stale:?}");
            assert!(!stale.contains(&"read-your-writes"), "another client");
        }
    }

    #[test]
    fn s8_excuses_a_hot_copy_within_its_lifetime_under_faults_only() {
        let o = options(true);
        let mut h = history("c2.0", "n2", "S:k:old");
        // A fault before the writes: not clean, so a hot copy within its lifetime is excused.
        h.insert(
            2,
            at(
                50,
                Event::Fault(crate::faults::FaultAction::Partition(
                    "n1".into(),
                    "n2".into(),
                )),
            ),
        );
        assert!(!rules(&h, &o).contains(&"no-stale-read"));
        // Past the hot lifetime it is not.
        let last = h.len() - 2;
        h[last].at_us = 900_000;
        h[last + 1].at_us = 901_000;
        assert!(rules(&h, &o).contains(&"no-stale-read"));
    }

    /// n1 (which took the new write) dropped its invalidation of n2.
    fn n1_dropped_an_invalidation_at_200_ms() -> Entry {
        at(
            200,
            Event::Dropped {
                node: "n1".into(),
                inc: 1,
                point: "drop-invalidation".into(),
            },
        )
    }

    /// n2 fetches `k` from n1 at `ms`, gets the answer 2 ms later and stalls `stall_ms` before
    /// keeping it.
    fn n2_fetches_k_and_stalls(ms: u64, stall_ms: u64) -> [Entry; 3] {
        [
            at(
                ms,
                Event::PeerCall {
                    node: "n2".into(),
                    inc: 1,
                    call: 1,
                    peer: "n1".into(),
                    method: crate::history::PeerMethod::Get,
                    key: "k".into(),
                    forwarded: true,
                },
            ),
            at(
                ms + 2,
                Event::PeerReturn {
                    node: "n2".into(),
                    inc: 1,
                    call: 1,
                    result: "ok".into(),
                },
            ),
            at(
                ms + 2,
                Event::Stalled {
                    node: "n2".into(),
                    inc: 1,
                    point: "before-keep-fetch".into(),
                    ms: stall_ms,
                },
            ),
        ]
    }

    /// `history` where n2 fetched `k` from n1 before the new write and stalled `stall_ms`
    /// between the answer and keeping it, the write's invalidation of n2 was dropped, and the
    /// get on n2 joined that fetch and got the old value when the stall ended.
    fn stalled_fetch(stall_ms: u64) -> Vec<Entry> {
        let mut h = history("c2.0", "n2", "S:k:old");
        let get_ret = h.len() - 1;
        h[get_ret].at_us = 560_000;
        h.splice(4..4, n2_fetches_k_and_stalls(150, stall_ms));
        let write = h.len() - 4;
        h.insert(write + 1, n1_dropped_an_invalidation_at_200_ms());
        h
    }

    /// Seed 7883: a slow write (200–260 ms) whose invalidation of n2 was dropped; n2 fetched `k`
    /// while it was in flight (210 ms) and got the old value before the owner applied the new
    /// one (212 ms), then stalled `stall_ms` before keeping it; a get on n2 at 300 ms, after the
    /// write was acknowledged, joined that fetch.
    fn fetch_during_a_slow_write(stall_ms: u64) -> Vec<Entry> {
        let mut h = cluster();
        h.extend([
            at(100, invoke(0, "c1.0", "n1", set("S:k:old"))),
            at(101, ret(0, Outcome::Stored)),
            at(200, invoke(1, "c1.0", "n1", set("S:k:new"))),
            n1_dropped_an_invalidation_at_200_ms(),
        ]);
        h.extend(n2_fetches_k_and_stalls(210, stall_ms));
        h.extend([
            at(260, ret(1, Outcome::Stored)),
            at(300, invoke(2, "c2.0", "n2", get())),
            at(301.max(213 + stall_ms), ret(2, value("S:k:old"))),
        ]);
        h
    }

    #[test]
    fn s8_excuses_joining_a_fetch_answered_during_a_slow_write_and_held_past_it() {
        let o = options(false);
        // The flight ended at 612 ms, after the write's ack (260) and the get's start (300).
        assert!(!rules(&fetch_during_a_slow_write(400), &o).contains(&"no-stale-read"));
        // It ended at 232 ms, before the ack: the get at 300 ms asked afresh and must see it.
        assert!(rules(&fetch_during_a_slow_write(20), &o).contains(&"no-stale-read"));
    }

    #[test]
    fn s8_excuses_joining_a_fetch_held_past_a_write_whose_invalidation_was_dropped() {
        let o = options(false);
        // The fetch's flight ended at 552 ms, after the get joined it at 300 ms.
        assert!(!rules(&stalled_fetch(400), &o).contains(&"no-stale-read"));
        // It ended at 202 ms: the get at 300 ms started its own flight and must see the write.
        assert!(rules(&stalled_fetch(50), &o).contains(&"no-stale-read"));
    }

    /// Seed 360: n2 (not the owner of `k`, which is n1 here) loaded `k` before the new write,
    /// stalled `stall_ms` before keeping the value as a hot copy, and the write's invalidation
    /// of n2 was dropped; a get on n2 some time after the write returned the hot copy.
    fn stalled_hot_load(stall_ms: u64, get_ms: u64) -> Vec<Entry> {
        let mut h = history("c2.0", "n2", "L:k:n2.1.0");
        let get = h.len() - 2;
        h[get].at_us = get_ms * 1_000;
        h[get + 1].at_us = get_ms * 1_000 + 1_000;
        h.splice(
            4..4,
            [
                at(
                    150,
                    Event::LoadStart {
                        node: "n2".into(),
                        inc: 1,
                        key: "k".into(),
                        concurrent: 1,
                        node_concurrent: 1,
                        call: 0,
                    },
                ),
                at(
                    160,
                    Event::LoadEnd {
                        node: "n2".into(),
                        inc: 1,
                        key: "k".into(),
                        call: 0,
                        result: crate::history::LoadResult::Value {
                            value: "L:k:n2.1.0".into(),
                            ttl_ms: None,
                        },
                    },
                ),
                at(
                    160,
                    Event::Stalled {
                        node: "n2".into(),
                        inc: 1,
                        point: "before-keep-load".into(),
                        ms: stall_ms,
                    },
                ),
            ],
        );
        let write = h.len() - 4;
        h.insert(write + 1, n1_dropped_an_invalidation_at_200_ms());
        h
    }

    #[test]
    fn s8_excuses_joining_a_load_held_past_a_write_whose_invalidation_was_dropped() {
        let o = options(false);
        // Seed 1171: the load's flight was kept at 560 ms; the get at 300 ms joined it.
        assert!(!rules(&stalled_hot_load(400, 300), &o).contains(&"no-stale-read"));
        // Kept at 170 ms: the get at 300 ms started its own flight and must see the write.
        assert!(rules(&stalled_hot_load(10, 300), &o).contains(&"no-stale-read"));
    }

    #[test]
    fn s8_counts_a_hot_copys_lifetime_from_when_a_stalled_load_kept_it() {
        let o = options(true);
        // The copy was kept at 560 ms and lives 500 ms: a get at 900 ms may still see it.
        assert!(!rules(&stalled_hot_load(400, 900), &o).contains(&"no-stale-read"));
        // Past its lifetime it may not.
        assert!(rules(&stalled_hot_load(400, 1_100), &o).contains(&"no-stale-read"));
        // Kept at 170 ms, before the write (201 ms): the lifetime counts from the write.
        assert!(rules(&stalled_hot_load(10, 900), &o).contains(&"no-stale-read"));
    }

    #[test]
    fn s8_counts_a_hot_copys_lifetime_from_when_a_stalled_fetch_kept_it() {
        let o = options(true);
        let read_at = |get_ms: u64| {
            let mut h = stalled_fetch(400);
            let n = h.len();
            h[n - 2].at_us = get_ms * 1_000;
            h[n - 1].at_us = get_ms * 1_000 + 1_000;
            rules(&h, &o)
        };
        // Kept at 552 ms, a hot lifetime of 500 ms: a get at 900 ms may still see the copy.
        assert!(!read_at(900).contains(&"no-stale-read"));
        assert!(read_at(1_100).contains(&"no-stale-read"));
    }

    #[test]
    fn s8_excuses_reads_while_views_disagree_and_writes_in_flight() {
        let o = options(false);
        let mut h = history("c2.0", "n2", "S:k:old");
        h.insert(
            6,
            at(
                250,
                Event::View {
                    node: "n2".into(),
                    inc: 1,
                    members: vec![("n2".into(), 1)],
                },
            ),
        );
        assert!(!rules(&h, &o).contains(&"no-stale-read"));
        let mut h = history("c2.0", "n2", "S:k:old");
        // A third write, never answered, may land at any time.
        h.insert(6, at(25, invoke(9, "c3.0", "n1", set("S:k:other"))));
        assert!(!rules(&h, &o).contains(&"no-stale-read"));
    }

    /// Seed 1800: n1 recorded a view of all three nodes, then crashed; n2 and n3 agreed on a
    /// view of the two of them. After a delete, n3 (the owner in that view) loaded the key
    /// again: a fresh load by the owner, not a fallback by a node that does not own it.
    #[test]
    fn s8_takes_the_owner_from_the_views_of_serving_nodes_only() {
        use crate::faults::FaultAction;
        use std::collections::BTreeMap;
        let o = options(false);
        let all: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        let two: Vec<String> = ["n2", "n3"].map(String::from).to_vec();
        let mut rings = BTreeMap::new();
        let key = (0..1_000)
            .map(|i| format!("k{i}"))
            .find(|k| {
                let now = crate::checker::loads::owner(&mut rings, &two, k);
                now != crate::checker::loads::owner(&mut rings, &all, k)
            })
            .expect("a key whose owner moves when n1 leaves");
        let owner = crate::checker::loads::owner(&mut rings, &two, &key).unwrap_or_default();
        let view = |node: &str, members: &[String]| Event::View {
            node: node.into(),
            inc: 1,
            members: members.iter().map(|m| (m.clone(), 1)).collect(),
        };
        let loaded = format!("L:{key}:{owner}.1.0");
        let mut h = Vec::new();
        for n in ["n1", "n2", "n3"] {
            h.push(at(0, test_support::started(n)));
            h.push(at(1, view(n, &all)));
        }
        h.extend([
            at(10, view("n2", &two)),
            at(10, view("n3", &two)),
            at(12, view("n1", &all)),
            at(15, Event::Fault(FaultAction::Crash("n1".into()))),
            at(
                20,
                Event::Heal {
                    bound_ms: 1_000,
                    live: two.clone(),
                },
            ),
            at(
                3_100,
                Event::DataPath {
                    rounds: 1,
                    ready: true,
                },
            ),
            at(
                4_000,
                invoke(0, "c1.0", "n2", Request::Delete { key: key.clone() }),
            ),
            at(4_001, ret(0, Outcome::Deleted { existed: true })),
            at(
                4_100,
                invoke(1, "c1.0", "n2", Request::Get { key: key.clone() }),
            ),
            at(
                4_101,
                Event::LoadStart {
                    node: owner.clone(),
                    inc: 1,
                    key: key.clone(),
                    concurrent: 1,
                    node_concurrent: 1,
                    call: 0,
                },
            ),
            at(
                4_102,
                Event::LoadEnd {
                    node: owner.clone(),
                    inc: 1,
                    key: key.clone(),
                    call: 0,
                    result: crate::history::LoadResult::Value {
                        value: loaded.clone(),
                        ttl_ms: None,
                    },
                },
            ),
            at(4_103, ret(1, value(&loaded))),
        ]);
        let r = rules(&h, &o);
        assert!(!r.contains(&"no-stale-read"), "{r:?}");
        assert!(!r.contains(&"read-your-writes"), "{r:?}");
    }

    #[test]
    fn s8_flags_foreign_keys() {
        let o = options(false);
        let mut h = cluster();
        h.push(at(
            50,
            Event::ForeignKeys {
                node: "n2".into(),
                inc: 1,
                keys: vec!["k".into()],
            },
        ));
        assert_eq!(rules(&h, &o), vec!["foreign-keys"]);
    }
}
