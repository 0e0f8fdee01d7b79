//! C1 counters: a node's `rejected` counter agrees with the refusals its callers saw.
//!
//! Every request a node refuses for a limit (admission, waiters per key) is answered
//! `RESOURCE_EXHAUSTED` and counted once in `rejected`. At each stats sample of a node
//! incarnation, `rejected` must be at least the number of such answers its clients and peers
//! had received well before the sample (an uncounted refusal), and at most those received
//! shortly after it plus every request whose answer nobody saw (cancelled, timed out, broken
//! connection) or that was still on its way at the sample (a refusal delayed by a slow link)
//! — more would count some refusal twice.

use crate::history::{Event, FailKind, Outcome};
use crate::options::Options;

use super::calm::Calm;
use super::{Index, Violation, RELAYED};

/// A refusal's answer reaches its caller within this much of the node counting it.
const TRANSIT_US: u64 = 100_000;

/// C1: see the module docs.
pub(crate) fn c1_rejected(index: &Index<'_>, _calm: &Calm, _: &Options) -> Option<Violation> {
    let mut started: std::collections::BTreeMap<(&str, u64), u64> = Default::default();
    for (i, entry) in index.events() {
        match &entry.event {
            Event::NodeStarted { node, inc } => {
                started.insert((node.as_str(), *inc), entry.at_us);
            }
            Event::Stats {
                node,
                inc,
                rejected,
                ..
            } => {
                let Some(&since) = started.get(&(node.as_str(), *inc)) else {
                    continue;
                };
                let at = entry.at_us;
                let (before, after, unknown) = refusals(index, node, since, at);
                if *rejected < before {
                    return Some(violation(
                        i,
                        format!(
                            "{node} (incarnation {inc}) counts {rejected} rejected requests, but \
                             its callers had received {before} refusals (RESOURCE_EXHAUSTED) by \
                             then: refusals go uncounted"
                        ),
                    ));
                }
                if *rejected > after + unknown {
                    return Some(violation(
                        i,
                        format!(
                            "{node} (incarnation {inc}) counts {rejected} rejected requests, but \
                             its callers saw {after} refusals and {unknown} requests without an \
                             answer: some refusal is counted twice"
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    None
}

fn violation(entry: usize, message: String) -> Violation {
    Violation {
        property: "C1",
        rule: "",
        message,
        entry,
    }
}

/// Refusals by `node` since `since` that callers received before `at - TRANSIT_US`, before
/// `at + TRANSIT_US`, and requests to it sent before `at` whose answer nobody saw (requests
/// answered after `since` count, whenever they were sent).
fn refusals(index: &Index<'_>, node: &str, since: u64, at: u64) -> (u64, u64, u64) {
    let (mut before, mut after, mut unknown) = (0, 0, 0);
    for op in index.ops.values() {
        // A request sent before this incarnation started may still be served by it (the client
        // kept dialling until it listened): it counts when its answer came after the start.
        let served_here = op.inv_us >= since || op.ret_us().is_some_and(|t| t >= since);
        if op.node != node || !served_here || op.inv_us > at {
            continue;
        }
        match op.ret {
            // The owner's refusal, relayed: counted by the owner (a peer call to it).
            Some((
                _,
                _,
                Outcome::Failed {
                    kind: FailKind::Overloaded,
                    message,
                },
            )) if message.contains(RELAYED) => {}
            Some((
                _,
                t,
                Outcome::Failed {
                    kind: FailKind::Overloaded,
                    ..
                },
            )) => {
                before += u64::from(t + TRANSIT_US < at);
                after += u64::from(t <= at + TRANSIT_US);
                // Answered later than a refusal normally takes (a slow link): still on its way
                // at the sample, which may have counted it.
                unknown += u64::from(t > at + TRANSIT_US);
            }
            None
            | Some((
                _,
                _,
                Outcome::Failed {
                    kind: FailKind::Timeout | FailKind::Cancelled | FailKind::Unavailable,
                    ..
                },
            )) => unknown += 1,
            Some((_, t, _)) if t > at => unknown += 1,
            _ => {}
        }
    }
    for call in &index.peer_calls {
        if call.peer != node || call.at_us < since || call.at_us > at {
            continue;
        }
        match call.ret_us {
            // The owner's refusal, relayed by the peer: counted by the owner.
            Some(_) if call.relayed => {}
            Some(t) if call.refused => {
                before += u64::from(t + TRANSIT_US < at);
                after += u64::from(t <= at + TRANSIT_US);
                unknown += u64::from(t > at + TRANSIT_US);
            }
            Some(t) if t <= at && !call.failed => {}
            _ => unknown += 1,
        }
    }
    (before, after, unknown)
}

#[cfg(test)]
mod tests {
    use crate::checker::check_all;
    use crate::checker::test_support::at;
    use crate::history::{Entry, Event, FailKind, Outcome, PeerMethod, Phase, Request};
    use crate::options::{Mutation, Options};

    fn stats(rejected: u64) -> Event {
        Event::Stats {
            node: "n1".into(),
            inc: 1,
            bytes: 0,
            budget: 100,
            stores: vec![(0, 100)],
            counted: vec![0],
            evictions: 0,
            local_fallbacks: 0,
            peer_errors: 0,
            rejected,
        }
    }

    fn refused(op: u64, ms: u64) -> [Entry; 2] {
        refused_after(op, ms, 1)
    }

    /// A request sent at `ms` and refused, the answer arriving `transit_ms` later.
    fn refused_after(op: u64, ms: u64, transit_ms: u64) -> [Entry; 2] {
        [
            at(
                ms,
                Event::Invoke {
                    op,
                    client: "c1.0".into(),
                    node: "n1".into(),
                    request: Request::Get { key: "k".into() },
                    phase: Phase::Safety,
                    conn_since_us: 0,
                    deadline_ms: 4_500,
                    as_peer: false,
                },
            ),
            at(
                ms + transit_ms,
                Event::Return {
                    op,
                    outcome: Outcome::Failed {
                        kind: FailKind::Overloaded,
                        message: "overloaded".into(),
                    },
                },
            ),
        ]
    }

    fn rules(rejected: u64) -> Vec<&'static str> {
        let o = Options::from_seed(1, Mutation::None);
        let mut h = vec![at(
            0,
            Event::NodeStarted {
                node: "n1".into(),
                inc: 1,
            },
        )];
        h.extend(refused(0, 10));
        h.extend(refused(1, 20));
        h.push(at(500, stats(rejected)));
        check_all(&h, &o)
            .into_iter()
            .filter(|v| v.property == "C1")
            .map(|v| v.rule)
            .collect()
    }

    #[test]
    fn rejected_must_count_each_refusal_once() {
        assert!(rules(2).is_empty());
        assert_eq!(rules(0), vec!["rejected-count"], "uncounted");
        assert_eq!(rules(4), vec!["rejected-count"], "counted twice");
    }

    /// n2 forwards a get to n1 at `ms`; n1 answers 5 ms later with `result`.
    fn peer_get(call: u64, ms: u64, result: &str) -> [Entry; 2] {
        [
            at(
                ms,
                Event::PeerCall {
                    node: "n2".into(),
                    inc: 1,
                    call,
                    peer: "n1".into(),
                    method: PeerMethod::Get,
                    key: "k".into(),
                    forwarded: true,
                },
            ),
            at(
                ms + 5,
                Event::PeerReturn {
                    node: "n2".into(),
                    inc: 1,
                    call,
                    result: result.into(),
                },
            ),
        ]
    }

    #[test]
    fn a_peers_relay_of_the_owners_refusal_is_counted_by_the_owner() {
        // Seeds 6030 and 6039: n2 forwarded a get to n1, which did not own the key in its view;
        // the get rode on n1's fetch of the key from the owner n3, which refused it. n1 relays
        // n3's refusal and does not count it (n3 does).
        let o = Options::from_seed(1, Mutation::None);
        let rules = |result: &str, rejected: u64| {
            let mut h = vec![at(
                0,
                Event::NodeStarted {
                    node: "n1".into(),
                    inc: 1,
                },
            )];
            h.extend(peer_get(0, 10, result));
            h.push(at(500, stats(rejected)));
            check_all(&h, &o)
                .into_iter()
                .filter(|v| v.property == "C1")
                .count()
        };
        let relayed = "peer n1 (n1:9000) out of resources: overloaded: owner `n3`: overloaded: \
                       2 requests already in flight";
        let own = "peer n1 (n1:9000) out of resources: overloaded: 2 requests already in flight";
        assert_eq!(rules(relayed, 0), 0, "the owner's refusal, relayed");
        assert_eq!(rules(own, 0), 1, "n1's own refusal, uncounted");
        assert_eq!(rules(own, 1), 0, "n1's own refusal, counted");
    }

    #[test]
    fn a_refusal_still_on_its_way_at_the_sample_may_be_counted() {
        let o = Options::from_seed(1, Mutation::None);
        let rules = |rejected: u64| {
            let mut h = vec![at(
                0,
                Event::NodeStarted {
                    node: "n1".into(),
                    inc: 1,
                },
            )];
            h.extend(refused(0, 10));
            // Sent before the sample, answered 400 ms after it (a slow link).
            h.extend(refused_after(1, 450, 450));
            h.push(at(500, stats(rejected)));
            check_all(&h, &o)
                .into_iter()
                .filter(|v| v.property == "C1")
                .count()
        };
        assert_eq!(rules(1), 0, "not counted yet");
        assert_eq!(rules(2), 0, "counted before its answer arrived");
        assert_eq!(rules(3), 1, "counted twice");
    }
}
