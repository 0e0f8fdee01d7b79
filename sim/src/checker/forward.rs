//! F1 forward at most once, from the history of peer calls (recorded by
//! [`crate::recording::Recording`]).
//!
//! A node forwards a key only for a client that asked it for that key without claiming to be a
//! peer: every peer call from node X about key k must be explained by a client request for k
//! sent to X, not marked forwarded, that was in flight when the call was made. A request
//! forwarded to X (by a peer, or by a client sending `hops = 1`) never makes X call another
//! peer, so a second hop — a forwarding loop between two views that disagree, or a detour —
//! shows as a peer call nothing explains.
//!
//! Invalidations are not forwards: an owner sends them after every write it applies, whoever
//! asked, so they are left out.
//!
//! "In flight" allows for the client having given up already when the node started on the
//! request: [`LATE_US`] after the client's return on a healthy path, without bound when the
//! client's path to X was disturbed (a held link releases old requests late), and the longest
//! buggify stall later when the seed stalls nodes before fetches.

use lcache_node::buggify::Point;

use crate::history::PeerMethod;
use crate::options::Options;

use super::calm::Calm;
use super::{client_host, Disturbances, Index, Violation};

/// How long after a client gave up its request may still start a forward on a healthy path
/// (the request's own transit).
pub const LATE_US: u64 = 100_000;

/// F1: see the module docs.
pub(crate) fn f1_forward_once(
    index: &Index<'_>,
    _calm: &Calm,
    options: &Options,
) -> Option<Violation> {
    let disturbances = Disturbances::build(index);
    // A node stalled just before a fetch (buggify) sends it that much later.
    let late_us = if options.buggify.contains(&Point::BeforeFetch) {
        LATE_US + u64::try_from(crate::buggify::STALL_MAX.as_micros()).unwrap_or(u64::MAX)
    } else {
        LATE_US
    };
    let mut by_node_key: std::collections::BTreeMap<(&str, &str), Vec<u64>> = Default::default();
    for (id, op) in &index.ops {
        if !op.as_peer {
            by_node_key
                .entry((op.node, op.request.key()))
                .or_default()
                .push(*id);
        }
    }
    let mut forwards = index
        .peer_calls
        .iter()
        .filter(|call| call.method != PeerMethod::Invalidate);
    forwards.find_map(|call| {
        let explained = by_node_key.get(&(call.node, call.key)).is_some_and(|ids| {
            ids.iter().filter_map(|id| index.ops.get(id)).any(|op| {
                if op.inv_us > call.at_us {
                    return false;
                }
                match op.ret_us() {
                    None => true,
                    Some(ret_us) if call.at_us <= ret_us + late_us => true,
                    Some(_) => !disturbances.healthy(
                        client_host(op.client),
                        op.node,
                        op.inv_us,
                        call.at_us,
                    ),
                }
            })
        });
        (!explained).then(|| Violation {
            property: "F1",
            rule: "",
            message: format!(
                "{} called {} about {} ({:?}) with no client request for {} in flight at {}: a \
                 forwarded request was forwarded again",
                call.node, call.peer, call.key, call.method, call.key, call.node
            ),
            entry: call.at,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::test_support::at;
    use crate::history::{Entry, Event, Outcome, PeerMethod, Phase, Request};
    use crate::options::Mutation;

    fn invoke(op: u64, node: &str, key: &str, as_peer: bool) -> Event {
        Event::Invoke {
            op,
            client: "c1.0".into(),
            node: node.into(),
            request: Request::Get { key: key.into() },
            phase: Phase::Safety,
            conn_since_us: 0,
            deadline_ms: 4_500,
            as_peer,
        }
    }

    fn peer_call(node: &str, key: &str) -> Event {
        Event::PeerCall {
            node: node.into(),
            inc: 1,
            call: 0,
            peer: "n3".into(),
            method: PeerMethod::Get,
            key: key.into(),
            forwarded: true,
        }
    }

    #[test]
    fn a_forward_needs_a_client_request_in_flight() {
        let o = Options::from_seed(1, Mutation::None);
        let run = |h: &[Entry]| {
            let index = Index::build(h);
            let calm = Calm::build(&index, &o);
            f1_forward_once(&index, &calm, &o).map(|v| v.property)
        };
        let started = at(
            0,
            Event::NodeStarted {
                node: "n1".into(),
                inc: 1,
            },
        );
        let ok = [
            started.clone(),
            at(1, invoke(0, "n1", "k", false)),
            at(2, peer_call("n1", "k")),
            at(
                3,
                Event::Return {
                    op: 0,
                    outcome: Outcome::Miss,
                },
            ),
        ];
        assert_eq!(run(&ok), None);
        let other_key = [
            started.clone(),
            at(1, invoke(0, "n1", "j", false)),
            at(2, peer_call("n1", "k")),
        ];
        assert_eq!(run(&other_key), Some("F1"));
        let marked = [
            started.clone(),
            at(1, invoke(0, "n1", "k", true)),
            at(2, peer_call("n1", "k")),
        ];
        assert_eq!(run(&marked), Some("F1"));
        let long_after = [
            started,
            at(1, invoke(0, "n1", "k", false)),
            at(
                3,
                Event::Return {
                    op: 0,
                    outcome: Outcome::Miss,
                },
            ),
            at(900, peer_call("n1", "k")),
        ];
        assert_eq!(run(&long_after), Some("F1"));
    }
}
