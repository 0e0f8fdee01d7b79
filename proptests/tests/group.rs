//! The group state machine against the consistency rules (S3, S4, S7, S8 of DESIGN.md): a small
//! cluster driven through random interleavings of gets, writes, load and fetch completions, time
//! and membership changes (see `lcache_proptests::group_cluster`).

use lcache_proptests::group_cluster::{Cluster, Op, KEYS, NODES};
use proptest::prelude::*;

fn op(membership: bool) -> impl Strategy<Value = Op> {
    let node = 0..NODES;
    let key = 0..KEYS;
    let ttl = prop_oneof![Just(None), Just(Some(50u64)), Just(Some(500u64))];
    let toggle_weight = if membership { 1 } else { 0 };
    prop_oneof![
        6 => (node.clone(), key.clone()).prop_map(|(node, key)| Op::Get { node, key }),
        3 => (node.clone(), key.clone(), ttl).prop_map(|(node, key, ttl_ms)| Op::Set { node, key, ttl_ms }),
        2 => (node.clone(), key).prop_map(|(node, key)| Op::Delete { node, key }),
        3 => (0u64..120).prop_map(Op::Advance),
        8 => any::<usize>().prop_map(Op::Complete),
        toggle_weight => node.prop_map(Op::Toggle),
    ]
}

fn run(ops: &[Op]) -> Result<u64, TestCaseError> {
    let mut cluster = Cluster::new();
    for (i, op) in ops.iter().enumerate() {
        if let Err(broken) = cluster.apply(op) {
            return Err(TestCaseError::fail(format!(
                "step {i} ({op:?}): {broken}\ntrace:\n{}",
                cluster.trace()
            )));
        }
    }
    cluster.drain().map_err(|broken| {
        TestCaseError::fail(format!("draining: {broken}\ntrace:\n{}", cluster.trace()))
    })?;
    Ok(cluster.answered)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Without faults: every get invoked after a write was acknowledged returns that write or a
    /// newer value (read-your-writes, on every node; no resurrection), never an expired value
    /// nor more lifetime than is left, and a key's loader never runs twice at once on a node.
    #[test]
    fn every_node_returns_the_last_acknowledged_write_or_newer(
        ops in prop::collection::vec(op(false), 1..120)
    ) {
        run(&ops)?;
    }

    /// The same while nodes leave the ring and come back (fenced, as after a lost lease): an
    /// overwritten value never comes back when ownership moves away and back.
    #[test]
    fn membership_changes_never_bring_an_overwritten_value_back(
        ops in prop::collection::vec(op(true), 1..160)
    ) {
        run(&ops)?;
    }
}

/// The harness answers gets (a property that checks nothing would pass vacuously).
#[test]
fn the_harness_exercises_gets_loads_and_fetches() {
    let ops: Vec<Op> = (0..KEYS)
        .flat_map(|key| {
            (0..NODES).flat_map(move |node| {
                [
                    Op::Get { node, key },
                    Op::Complete(0),
                    Op::Complete(0),
                    Op::Complete(0),
                ]
            })
        })
        .collect();
    let answered = run(&ops).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answered, (KEYS * NODES) as u64);
}
