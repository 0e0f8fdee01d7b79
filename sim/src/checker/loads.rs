//! S9 bounded loads.
//!
//! - **Cap**: loads running at once on one node never exceed its cap (`Options::max_loads`),
//!   however many callers gave up.
//! - **One load per miss across the cluster**: in a clean window (see [`super::calm`]) only a
//!   key's owner loads it; a load elsewhere is a fallback the healthy cluster did not need —
//!   unless the node was asked with `hops = 1` (a client claiming to be a peer, or a peer with
//!   another view), which it must serve without forwarding.
//! - **No wedged key**: in a clean window, a patient get of a key whose earlier load failed or
//!   panicked does not time out while no load of the key runs and no buggify stall holds a node.
//! - **A loader panic is contained**: it never takes its node down.

use std::collections::BTreeMap;

use lcache_core::member::MemberId;
use lcache_core::ring::{Ring, RingConfig};

use crate::history::{micros, Event, FailKind, LoadResult, Outcome, PeerMethod, Request};
use crate::node_host::RING_VNODES;
use crate::options::Options;

use super::calm::Calm;
use super::{Index, PointStalls, Violation};

/// Whether a load of `key` ran (on any node) at instant `at_us`.
pub(crate) fn load_running(index: &Index<'_>, key: &str, at_us: u64) -> bool {
    index.loads.iter().any(|l| {
        l.key == key && l.start_us <= at_us && l.end.is_none_or(|(_, end_us, _)| end_us >= at_us)
    })
}

/// The owner of `key` on a ring of `members`, as every node computes it.
pub(crate) fn owner(
    rings: &mut BTreeMap<Vec<String>, Ring>,
    members: &[String],
    key: &str,
) -> Option<String> {
    let ring = rings.entry(members.to_vec()).or_insert_with(|| {
        let mut ring = Ring::new(RingConfig {
            vnodes: RING_VNODES,
        });
        for m in members {
            let _ = ring.add(MemberId::new(m.as_str()), 1);
        }
        ring
    });
    ring.owner(key.as_bytes()).map(|id| id.to_string())
}

/// S9 (cap): loads running at once on a node stay within its cap.
pub(crate) fn s9_cap(index: &Index<'_>, _calm: &Calm, options: &Options) -> Option<Violation> {
    cap(index, options)
}

/// S9 (one load per miss): in a clean window only the owner loads.
pub(crate) fn s9_amplification(
    index: &Index<'_>,
    calm: &Calm,
    _options: &Options,
) -> Option<Violation> {
    amplification(index, calm)
}

/// S9 (no wedged key): no timeout after a failed load in a clean window.
pub(crate) fn s9_wedged(index: &Index<'_>, calm: &Calm, options: &Options) -> Option<Violation> {
    wedged(index, calm, options)
}

/// S9 (contained panic): a loader panic never takes its node down.
pub(crate) fn s9_panic(index: &Index<'_>, _calm: &Calm, _options: &Options) -> Option<Violation> {
    panic_escaped(index)
}

fn cap(index: &Index<'_>, options: &Options) -> Option<Violation> {
    index.loads.iter().find_map(|l| {
        (l.node_concurrent as usize > options.max_loads).then(|| Violation {
            property: "S9",
            rule: "",
            message: format!(
                "{} loads ran at once on {} (this one of {}), past its cap of {}",
                l.node_concurrent, l.node, l.key, options.max_loads
            ),
            entry: l.start,
        })
    })
}

/// Whether a load of `key` on `node` starting at `at_us` is the fallback of a fetch that failed
/// outside a clean window, held until now at most by a buggify stall before keeping its answer
/// (seed 2389: a fetch sent at start-up, before the owner listened, stalled 1 s into the clean
/// window).
fn falls_back_from_before(
    index: &Index<'_>,
    calm: &Calm,
    fetch_stalls: &PointStalls<'_>,
    (node, key, at_us): (&str, &str, u64),
) -> bool {
    const SLACK_US: u64 = 5_000;
    index.peer_calls.iter().any(|c| {
        c.node == node
            && c.key == key
            && c.method == PeerMethod::Get
            && c.failed
            && c.ret_us.is_some_and(|failed_us| {
                failed_us <= at_us
                    && !calm.clean(failed_us, failed_us)
                    && fetch_stalls.held_until(node, failed_us) + SLACK_US >= at_us
            })
    })
}

fn amplification(index: &Index<'_>, calm: &Calm) -> Option<Violation> {
    let mut views: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut rings = BTreeMap::new();
    let fetch_stalls = PointStalls::of(index, "before-keep-fetch");
    for (i, entry) in index.events() {
        match &entry.event {
            Event::View { node, members, .. } => {
                views.insert(node, members.iter().map(|(id, _)| id.clone()).collect());
            }
            Event::LoadStart { node, key, .. } => {
                let at = entry.at_us;
                if !calm.clean(at, at) {
                    continue;
                }
                let Some(members) = views.get(node.as_str()) else {
                    continue;
                };
                let Some(owner) = owner(&mut rings, members, key) else {
                    continue;
                };
                if owner == *node
                    || asked_as_peer(index, node, key, (i, at))
                    || falls_back_from_before(index, calm, &fetch_stalls, (node, key, at))
                {
                    continue;
                }
                return Some(Violation {
                    property: "S9",
                    rule: "",
                    message: format!(
                        "{node} loaded {key}, which {owner} owns, in a clean window (views agree, \
                         no fault): a fallback the healthy cluster did not need"
                    ),
                    entry: i,
                });
            }
            _ => {}
        }
    }
    None
}

/// How long after a client gave up its request may still be served: the cancellation travels
/// to the node like any message.
const GAVE_UP_SLACK_US: u64 = 100_000;

/// Hosts' clocks may differ by up to a simulation tick (each host's time advances as it runs
/// its share of a step), so an event one host records after another's may carry an earlier
/// time.
const HOST_SKEW_US: u64 = 5_000;

/// Whether `node` was serving a request for `key` marked forwarded when it recorded history
/// entry `at` (at `at_us`): from a client claiming to be a peer, or from a peer. "Sent before"
/// is by record order, not by the hosts' times (seed 5434: a peer's call stamped 1.055 s by its
/// sender, the load it caused stamped 1.052 s by the receiver).
fn asked_as_peer(index: &Index<'_>, node: &str, key: &str, (at, at_us): (usize, u64)) -> bool {
    let from_client = index.ops.values().any(|op| {
        op.as_peer
            && op.node == node
            && op.request.key() == key
            && op.inv < at
            && op.ret_us().is_none_or(|t| t + GAVE_UP_SLACK_US >= at_us)
    });
    let from_peer = index.peer_calls.iter().any(|c| {
        c.peer == node
            && c.key == key
            && c.method == PeerMethod::Get
            && c.at < at
            && c.ret_us.is_none_or(|t| t + HOST_SKEW_US >= at_us)
    });
    from_client || from_peer
}

fn wedged(index: &Index<'_>, calm: &Calm, options: &Options) -> Option<Violation> {
    let patient_us = micros(options.connect_timeout + options.call_timeout);
    let stalls = super::stalls(index);
    index.ops.iter().find_map(|(id, op)| {
        let (ret, ret_us, outcome) = op.ret?;
        let timed_out = matches!(
            outcome,
            Outcome::Failed {
                kind: FailKind::Timeout,
                ..
            }
        );
        if !timed_out
            || !matches!(op.request, Request::Get { .. })
            || op.deadline_us < patient_us
            || !calm.clean(op.inv_us, ret_us)
            // A buggify stall (a slow step on some node) is a fault, as S5 counts it: it may
            // have held the key's flight past the get's patience (seed 433).
            || stalls.iter().any(|&(s, e)| s <= ret_us && op.inv_us <= e)
        {
            return None;
        }
        let key = op.request.key();
        let failed_before = index.loads.iter().any(|l| {
            l.key == key
                && matches!(
                    l.end,
                    Some((_, end_us, LoadResult::Failed | LoadResult::Panicked)) if end_us < op.inv_us
                )
        });
        (failed_before && !load_running(index, key, ret_us)).then(|| Violation {
            property: "S9",
            rule: "",
            message: format!(
                "get {key} on {} (op {id}) timed out in a clean window with no load of {key} \
                 running, after an earlier load of {key} failed or panicked: the key is wedged",
                op.node
            ),
            entry: ret,
        })
    })
}

fn panic_escaped(index: &Index<'_>) -> Option<Violation> {
    let mut panicked: Vec<&str> = Vec::new();
    for (i, entry) in index.events() {
        match &entry.event {
            Event::LoadEnd {
                node,
                result: LoadResult::Panicked,
                ..
            } => panicked.push(node),
            Event::HostError(what) if !panicked.is_empty() => {
                return Some(Violation {
                    property: "S9",
                    rule: "",
                    message: format!(
                        "a loader panicked on {panicked:?} and a host failed after it: the panic \
                         was not contained ({what})"
                    ),
                    entry: i,
                });
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::checker::test_support::{at, invoke, ret, started, view};
    use std::collections::BTreeMap;

    use crate::checker::check_all;
    use crate::history::{Entry, Event, FailKind, LoadResult, Outcome, PeerMethod, Phase, Request};
    use crate::options::{Mutation, Options};

    fn cluster() -> Vec<Entry> {
        let mut h = Vec::new();
        for n in ["n1", "n2"] {
            h.push(at(0, started(n)));
            h.push(at(1, view(n, &["n1", "n2"])));
        }
        h
    }

    fn load(node: &str, key: &str, call: u64, node_concurrent: u32) -> Event {
        Event::LoadStart {
            node: node.into(),
            inc: 1,
            key: key.into(),
            concurrent: 1,
            node_concurrent,
            call,
        }
    }

    fn rules(h: &[Entry], o: &Options) -> Vec<&'static str> {
        check_all(h, o).into_iter().map(|v| v.rule).collect()
    }

    #[test]
    fn only_the_owner_loads_in_a_clean_window() {
        let o = Options::from_seed(1, Mutation::None);
        let members = vec!["n1".to_owned(), "n2".to_owned()];
        let owner = super::owner(&mut BTreeMap::new(), &members, "k").unwrap_or_default();
        let other = if owner == "n1" { "n2" } else { "n1" };
        let mut h = cluster();
        h.push(at(10, load(&owner, "k", 0, 1)));
        assert!(rules(&h, &o).is_empty());
        h.push(at(20, load(other, "k", 0, 1)));
        assert_eq!(rules(&h, &o), vec!["one-load-per-miss"]);
    }

    /// Seed 5434: a fetch routed while views disagreed, held by a stall, reached a node that does
    /// not own the key in the clean window, which served it by a load (a forwarded get never
    /// hops again). Its sender stamped the call 3 ms after the receiver stamped the load, though
    /// the call was recorded first (host clocks differ within a tick). A load recorded before
    /// any such call is still flagged.
    #[test]
    fn a_load_for_a_peers_get_recorded_after_the_call_is_excused_across_host_clocks() {
        let o = Options::from_seed(1, Mutation::None);
        let members = vec!["n1".to_owned(), "n2".to_owned()];
        let owner = super::owner(&mut BTreeMap::new(), &members, "k").unwrap_or_default();
        let other = if owner == "n1" { "n2" } else { "n1" };
        let call = at(
            1_055,
            Event::PeerCall {
                node: owner.clone(),
                inc: 1,
                call: 0,
                peer: other.into(),
                method: PeerMethod::Get,
                key: "k".into(),
                forwarded: true,
            },
        );
        // S9 alone (F1 has its own view of a forward to a non-owner).
        let s9 = |h: &[Entry]| -> Vec<&'static str> {
            check_all(h, &o)
                .into_iter()
                .filter(|v| v.property == "S9")
                .map(|v| v.rule)
                .collect()
        };
        let mut h = cluster();
        h.push(call.clone());
        h.push(at(1_052, load(other, "k", 0, 1)));
        assert!(s9(&h).is_empty(), "{:?}", s9(&h));
        let mut h = cluster();
        h.push(at(1_052, load(other, "k", 0, 1)));
        h.push(call);
        assert_eq!(s9(&h), vec!["one-load-per-miss"]);
    }

    /// Seed 2389: a non-owner's fetch failed while views still disagreed (start-up), a buggify
    /// stall held it past the start of the clean window, then the node fell back to its own
    /// load. Without the stall (a fallback decided in the clean window) it is flagged.
    #[test]
    fn a_fallback_held_by_a_stall_from_before_the_clean_window_is_excused() {
        let o = Options::from_seed(1, Mutation::None);
        let members = vec!["n1".to_owned(), "n2".to_owned()];
        let owner = super::owner(&mut BTreeMap::new(), &members, "k").unwrap_or_default();
        let other = if owner == "n1" { "n2" } else { "n1" };
        let history = |failed_ms: u64| {
            let mut h = vec![at(0, crate::checker::test_support::started("n1"))];
            h.push(at(0, crate::checker::test_support::started("n2")));
            h.push(at(
                failed_ms,
                Event::PeerCall {
                    node: other.into(),
                    inc: 1,
                    call: 0,
                    peer: owner.clone(),
                    method: crate::history::PeerMethod::Get,
                    key: "k".into(),
                    forwarded: true,
                },
            ));
            h.push(at(
                failed_ms,
                Event::PeerReturn {
                    node: other.into(),
                    inc: 1,
                    call: 0,
                    result: "unreachable: connecting failed".into(),
                },
            ));
            h.push(at(
                failed_ms,
                Event::Stalled {
                    node: other.into(),
                    inc: 1,
                    point: "before-keep-fetch".into(),
                    ms: 1_000,
                },
            ));
            for n in ["n1", "n2"] {
                h.push(at(5, view(n, &["n1", "n2"])));
            }
            h.sort_by_key(|e| e.at_us);
            h.push(at(failed_ms + 1_000, load(other, "k", 0, 1)));
            h
        };
        // Failed at 0 ms, before the views agreed: the fallback is excused.
        assert!(!rules(&history(0), &o).contains(&"one-load-per-miss"));
        // Failed at 500 ms, in the clean window: the fallback was not needed.
        assert!(rules(&history(500), &o).contains(&"one-load-per-miss"));
    }

    #[test]
    fn loads_past_the_cap_are_caught() {
        let mut o = Options::from_seed(1, Mutation::None);
        o.max_loads = 2;
        let mut h = cluster();
        let members = vec!["n1".to_owned(), "n2".to_owned()];
        let owner = super::owner(&mut BTreeMap::new(), &members, "k").unwrap_or_default();
        h.push(at(10, load(&owner, "k", 0, 2)));
        assert!(rules(&h, &o).is_empty());
        h.push(at(11, load(&owner, "k", 1, 3)));
        assert_eq!(rules(&h, &o), vec!["load-cap"]);
    }

    /// Seed 433: a failed load of `k` held by a buggify stall before it was reported, then the
    /// load queued behind it stalled the same way; a patient get waiting on both timed out.
    /// The stalls are the fault (as S5 excuses them); without one the key is wedged.
    #[test]
    fn a_timeout_after_a_failed_load_is_excused_only_while_a_stall_held_the_key() {
        let mut o = Options::from_seed(1, Mutation::None);
        o.connect_timeout = std::time::Duration::from_millis(500);
        o.call_timeout = std::time::Duration::from_secs(4);
        let history = |stall: bool| {
            let mut h = cluster();
            h.push(at(5, load("n1", "k", 0, 1)));
            h.push(at(
                10,
                Event::LoadEnd {
                    node: "n1".into(),
                    inc: 1,
                    key: "k".into(),
                    call: 0,
                    result: LoadResult::Failed,
                },
            ));
            h.push(at(
                100,
                invoke(
                    1,
                    "c1.0",
                    "n1",
                    Request::Get { key: "k".into() },
                    Phase::Safety,
                    false,
                ),
            ));
            if stall {
                h.push(at(
                    1_200,
                    Event::Stalled {
                        node: "n1".into(),
                        inc: 1,
                        point: "before-keep-load".into(),
                        ms: 1_464,
                    },
                ));
            }
            h.push(at(
                2_600,
                ret(
                    1,
                    Outcome::Failed {
                        kind: FailKind::Timeout,
                        message: "no answer within 2.5s".into(),
                    },
                ),
            ));
            h
        };
        assert!(rules(&history(false), &o).contains(&"no-wedged-key"));
        assert!(!rules(&history(true), &o).contains(&"no-wedged-key"));
    }

    #[test]
    fn an_escaped_loader_panic_is_caught() {
        let o = Options::from_seed(1, Mutation::None);
        let mut h = cluster();
        h.push(at(
            10,
            Event::LoadEnd {
                node: "n1".into(),
                inc: 1,
                key: "x".into(),
                call: 0,
                result: LoadResult::Panicked,
            },
        ));
        h.push(at(11, Event::HostError("panic: runtime shut down".into())));
        let r = rules(&h, &o);
        assert!(r.contains(&"panic-contained"), "{r:?}");
    }
}
