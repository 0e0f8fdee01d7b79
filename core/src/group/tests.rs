//! Example-based tests of the group state machine, one per rule of the module docs. The
//! model-based properties live in `proptests/tests/group.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::member::{Member, MemberId};
use crate::membership::RingChange;
use crate::ring::RingConfig;
use crate::store::entry_size;

/// The runtime error of these tests.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TestError {
    Refused(Refusal),
    Failed(&'static str),
}

impl From<Refusal> for TestError {
    fn from(r: Refusal) -> Self {
        TestError::Refused(r)
    }
}

type G = Group<u32, TestError>;

fn member(id: &str) -> Member {
    Member::new(id, format!("{id}:1"), 0)
}

fn router(me: &str, others: &[&str]) -> Arc<Router> {
    let mut router = Router::new(member(me), RingConfig { vnodes: 64 });
    let added: Vec<_> = others
        .iter()
        .map(|id| RingChange::Added(member(id)))
        .collect();
    router.apply(&added);
    Arc::new(router)
}

fn settings() -> GroupSettings {
    GroupSettings {
        name: "g".into(),
        budget_bytes: 64 << 10,
        policy: Policy::lru2(),
        shards: 4,
        default_ttl: None,
        hot: Some(HotSettings {
            budget_bytes: 16 << 10,
            lifetime: Duration::from_millis(1_000),
        }),
        misses: Some(MissSettings {
            budget_bytes: 4 << 10,
            ttl: Duration::from_millis(500),
        }),
        max_waiters_per_key: 8,
        has_loader: true,
        hash_seed: 7,
    }
}

struct Fixture {
    group: G,
    slots: Arc<LoadSlots>,
    /// A key node `a` (this node) owns, and one `b` owns.
    mine: Bytes,
    theirs: Bytes,
}

fn fixture_with(settings: GroupSettings, cap: usize) -> Fixture {
    let router = router("a", &["b", "c"]);
    let slots = LoadSlots::new(cap);
    // Bounded, so a router that never picks `owner` fails here instead of searching forever.
    let key = |owner: &str| {
        (0..10_000)
            .map(|i| Bytes::from(format!("key-{i}")))
            .find(|k| router.owner(k).id.as_str() == owner)
            .unwrap_or_else(|| panic!("no key owned by {owner} among 10,000"))
    };
    let (mine, theirs) = (key("a"), key("b"));
    Fixture {
        group: Group::new(settings, router, slots.clone()).unwrap(),
        slots,
        mine,
        theirs,
    }
}

fn fixture() -> Fixture {
    fixture_with(settings(), 16)
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn value(v: &'static str, ttl_ms: Option<u64>) -> Fetched {
    Fetched {
        value: Bytes::from_static(v.as_bytes()),
        ttl: ttl_ms.map(Duration::from_millis),
    }
}

fn start_load(step: GetStep<TestError>) -> (FlightRef, LoadPermit) {
    match step {
        GetStep::Start(Work::Load { flight, permit }) => (flight, permit),
        other => panic!("expected a load, got {other:?}"),
    }
}

fn start_fetch(step: GetStep<TestError>) -> (FlightRef, Member) {
    match step {
        GetStep::Start(Work::Fetch { flight, owner }) => (flight, owner),
        other => panic!("expected a fetch, got {other:?}"),
    }
}

/// Caller 1's load of `f.mine`, detached by a delete, with `queued` gets (forwarded, caller)
/// queued behind it; then, if `moved`, the ring gives `f.mine` to node b.
fn queued_behind_a_detached_load(
    f: &Fixture,
    queued: &[(bool, u32)],
    moved: bool,
) -> (FlightRef, LoadPermit) {
    let (first, permit) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    assert!(matches!(
        f.group.delete(&f.mine, false, at(1)),
        WriteStep::Applied { .. }
    ));
    for &(forwarded, caller) in queued {
        assert!(matches!(
            f.group.get(&f.mine, forwarded, at(2), move || caller),
            GetStep::Wait
        ));
    }
    if moved {
        let _ = f.group.ring_changed(&Arc::new(ring_where_b_owns(&f.mine)));
    }
    (first, permit)
}

/// The detached load `first` ends with "old" at 3 ms; the callers `gave_up` names are gone.
fn old_loaded(
    f: &Fixture,
    first: &FlightRef,
    gave_up: impl Fn(&u32) -> bool,
) -> Completion<u32, TestError> {
    f.group.loaded_at(
        first,
        LoadOutcome::Value(value("old", None)),
        at(3),
        at(3),
        gave_up,
    )
}

fn reply(step: GetStep<TestError>) -> Reply<TestError> {
    match step {
        GetStep::Reply(reply) => reply,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn got(step: GetStep<TestError>) -> Option<&'static str> {
    reply(step).unwrap().map(|f| {
        let text = String::from_utf8(f.value.to_vec()).unwrap();
        &*Box::leak(text.into_boxed_str())
    })
}

/// The single delivery of a completion: (waiters, value text or error).
/// What one batch of waiters got: the value's bytes, a miss or an error.
type Got = Result<Option<Bytes>, TestError>;

fn delivered(c: &Completion<u32, TestError>) -> Vec<(Vec<u32>, Got)> {
    c.deliveries
        .iter()
        .map(|d| {
            (
                d.waiters.clone(),
                d.reply.clone().map(|f| f.map(|f| f.value)),
            )
        })
        .collect()
}

fn some(v: &'static str) -> Got {
    Ok(Some(Bytes::from_static(v.as_bytes())))
}

#[test]
fn the_owner_loads_once_and_every_caller_gets_the_value() {
    let f = fixture();
    let (flight, permit) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    assert!(matches!(
        f.group.get(&f.mine, false, at(1), || 2),
        GetStep::Wait
    ));
    assert_eq!(f.slots.running(), 1);
    let done = f
        .group
        .loaded(&flight, LoadOutcome::Value(value("v1", None)), at(5));
    drop(permit);
    assert_eq!(delivered(&done), vec![(vec![1, 2], some("v1"))]);
    assert!(done.start.is_none());
    assert_eq!(got(f.group.get(&f.mine, false, at(6), || 3)), Some("v1"));
    let c = f.group.stats().counters;
    assert_eq!((c.loads, c.coalesced, c.misses, c.hits), (1, 1, 2, 1));
    assert_eq!(f.group.flights(), 0);
}

#[test]
fn a_panicking_loader_fails_every_waiter_and_never_wedges_the_key() {
    let f = fixture();
    let (flight, _permit) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    assert!(matches!(
        f.group.get(&f.mine, false, at(1), || 2),
        GetStep::Wait
    ));
    let done = f.group.loaded(
        &flight,
        LoadOutcome::Panicked(TestError::Failed("loader panicked")),
        at(2),
    );
    assert_eq!(
        delivered(&done),
        vec![(vec![1, 2], Err(TestError::Failed("loader panicked")))]
    );
    assert_eq!(f.group.flights(), 0);
    // The next get starts a fresh load instead of joining a dead flight.
    let (flight, _permit) = start_load(f.group.get(&f.mine, false, at(3), || 3));
    let c = f.group.stats().counters;
    assert_eq!((c.load_errors, c.loader_panics, c.loads), (1, 1, 2));
    // A loader that fails (without panicking) is counted as an error, not a panic.
    let failed = TestError::Failed("source down");
    let done = f
        .group
        .loaded(&flight, LoadOutcome::Failed(failed.clone()), at(4));
    assert_eq!(delivered(&done), vec![(vec![3], Err(failed))]);
    let c = f.group.stats().counters;
    assert_eq!((c.load_errors, c.loader_panics), (2, 1));
}

#[test]
fn a_write_detaches_the_load_in_flight_so_the_writer_reads_its_write() {
    let f = fixture();
    let (flight, _permit) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    let step = f.group.set(
        f.mine.clone(),
        Bytes::from_static(b"v2"),
        None,
        false,
        at(1),
    );
    match step {
        WriteStep::Applied {
            existed,
            peers,
            key,
        } => {
            assert!(!existed);
            let ids: Vec<_> = peers.iter().map(|m| m.id.as_str()).collect();
            assert_eq!(ids, ["b", "c"]);
            assert_eq!(key.as_ref(), Some(&f.mine), "the key to invalidate");
        }
        other => panic!("expected applied, got {other:?}"),
    }
    // A get after the write does not join the old load: it reads the write.
    assert_eq!(got(f.group.get(&f.mine, false, at(2), || 2)), Some("v2"));
    let done = f
        .group
        .loaded(&flight, LoadOutcome::Value(value("old", None)), at(3));
    assert_eq!(delivered(&done), vec![(vec![1], some("old"))]);
    assert_eq!(got(f.group.get(&f.mine, false, at(4), || 3)), Some("v2"));
    assert_eq!(f.group.stats().counters.superseded, 1);
}

#[test]
fn a_load_after_a_delete_waits_for_the_detached_one_then_runs() {
    let f = fixture();
    let (first, permit) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    assert!(matches!(
        f.group.delete(&f.mine, false, at(1)),
        WriteStep::Applied { .. }
    ));
    // The key's loader is still running: the next load is queued, not started (S3).
    assert!(matches!(
        f.group.get(&f.mine, false, at(2), || 2),
        GetStep::Wait
    ));
    assert!(matches!(
        f.group.get(&f.mine, false, at(2), || 3),
        GetStep::Wait
    ));
    let done = f
        .group
        .loaded(&first, LoadOutcome::Value(value("old", None)), at(3));
    drop(permit);
    assert_eq!(delivered(&done), vec![(vec![1], some("old"))]);
    let Some(Work::Load { flight: second, .. }) = done.start else {
        panic!("the queued load starts now");
    };
    let done = f
        .group
        .loaded(&second, LoadOutcome::Value(value("new", None)), at(4));
    assert_eq!(delivered(&done), vec![(vec![2, 3], some("new"))]);
    assert_eq!(got(f.group.get(&f.mine, false, at(5), || 4)), Some("new"));
}

#[test]
fn a_set_while_a_load_is_queued_answers_its_waiters_and_is_never_overwritten() {
    let f = fixture();
    let (first, permit) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    assert!(matches!(
        f.group.delete(&f.mine, false, at(1)),
        WriteStep::Applied { .. }
    ));
    // Queued behind the detached load of the key.
    assert!(matches!(
        f.group.get(&f.mine, false, at(2), || 2),
        GetStep::Wait
    ));
    assert!(matches!(
        f.group.set(
            f.mine.clone(),
            Bytes::from_static(b"set"),
            None,
            false,
            at(3)
        ),
        WriteStep::Applied { .. }
    ));
    let done = f
        .group
        .loaded(&first, LoadOutcome::Value(value("old", None)), at(4));
    drop(permit);
    // The queued caller gets the write; no load starts that could overwrite it.
    assert_eq!(
        delivered(&done),
        vec![(vec![1], some("old")), (vec![2], some("set"))]
    );
    assert!(done.start.is_none());
    assert_eq!(f.group.flights(), 0);
    assert_eq!(got(f.group.get(&f.mine, false, at(5), || 3)), Some("set"));
}

#[test]
fn a_load_reported_late_keeps_only_what_is_left_of_its_lifetime() {
    let f = fixture();
    let (flight, _permit) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    // The loader returned at 10 ms with 100 ms to live; the runtime reports it at 60 ms.
    let done = f.group.loaded_at(
        &flight,
        LoadOutcome::Value(value("v", Some(100))),
        at(10),
        at(60),
        |_| false,
    );
    assert_eq!(
        done.deliveries[0].reply.clone().unwrap().unwrap().ttl,
        Some(Duration::from_millis(50))
    );
    assert_eq!(got(f.group.get(&f.mine, false, at(105), || 2)), Some("v"));
    // Gone at 110 ms, not at 160 ms.
    start_load(f.group.get(&f.mine, false, at(111), || 3));

    // A value whose lifetime passed before it was reported is neither kept nor served: a
    // caller that joined after it expired would get a value dead before it asked. The loader
    // runs again for the flight's callers.
    let g = fixture();
    let (flight, _permit) = start_load(g.group.get(&g.mine, false, at(0), || 1));
    assert!(matches!(
        g.group.get(&g.mine, false, at(55), || 2),
        GetStep::Wait
    ));
    let done = g.group.loaded_at(
        &flight,
        LoadOutcome::Value(value("v", Some(40))),
        at(10),
        at(60),
        |_| false,
    );
    assert!(done.deliveries.is_empty());
    let Some(Work::Load { flight: again, .. }) = done.start else {
        panic!("expected a second load, got {:?}", done.start);
    };
    let done = g.group.loaded_at(
        &again,
        LoadOutcome::Value(value("w", Some(40))),
        at(70),
        at(70),
        |_| false,
    );
    assert_eq!(done.deliveries[0].waiters, vec![1, 2]);
    assert_eq!(
        done.deliveries[0].reply.clone().unwrap().unwrap().value,
        Bytes::from_static(b"w")
    );

    // A loader that itself gives a value no lifetime is answered (not kept), once.
    let h = fixture();
    let (flight, _permit) = start_load(h.group.get(&h.mine, false, at(0), || 1));
    let done = h.group.loaded_at(
        &flight,
        LoadOutcome::Value(value("v", Some(0))),
        at(10),
        at(10),
        |_| false,
    );
    assert_eq!(
        done.deliveries[0].reply.clone().unwrap().unwrap().ttl,
        Some(Duration::ZERO)
    );
    start_load(h.group.get(&h.mine, false, at(11), || 2));

    // Callers that gave up meanwhile get no second load.
    let k = fixture();
    let (flight, _permit) = start_load(k.group.get(&k.mine, false, at(0), || 1));
    let done = k.group.loaded_at(
        &flight,
        LoadOutcome::Value(value("v", Some(40))),
        at(10),
        at(60),
        |&w| w == 1,
    );
    assert!(done.deliveries.is_empty() && done.start.is_none());
    start_load(k.group.get(&k.mine, false, at(61), || 2));
}

#[test]
fn a_fetched_value_is_aged_by_the_call_and_kept_as_a_bounded_hot_copy() {
    let f = fixture();
    let (flight, owner) = start_fetch(f.group.get(&f.theirs, false, at(0), || 1));
    assert_eq!(owner.id.as_str(), "b");
    let done = f.group.fetched(
        &flight,
        FetchOutcome::Answered(Ok(Some(value("v", Some(5_000))))),
        at(100),
    );
    let reply = done.deliveries[0].reply.clone().unwrap().unwrap();
    assert_eq!(reply.ttl, Some(Duration::from_millis(4_900)));
    // Kept for the hot lifetime (1 s), shorter than what the owner has left.
    let hit = reply_value(f.group.get(&f.theirs, false, at(600), || 2));
    assert_eq!(hit.ttl, Some(Duration::from_millis(500)));
    assert!(matches!(
        f.group.get(&f.theirs, false, at(1_100), || 3),
        GetStep::Start(Work::Fetch { .. })
    ));
    // A value that expired on the way is not kept nor answered: the owner is asked again (a
    // bounded number of times), and what it holds now is the answer.
    let f = fixture();
    let (flight, _) = start_fetch(f.group.get(&f.theirs, false, at(0), || 1));
    let mut done = f.group.fetched(
        &flight,
        FetchOutcome::Answered(Ok(Some(value("v", Some(50))))),
        at(80),
    );
    for answered_at in [100, 120] {
        assert!(done.deliveries.is_empty());
        let Some(Work::Fetch { flight, .. }) = done.start else {
            panic!("the owner is asked again");
        };
        done = f.group.fetched(
            &flight,
            FetchOutcome::Answered(Ok(Some(value("v", Some(5))))),
            at(answered_at),
        );
    }
    assert_eq!(
        delivered(&done),
        vec![(vec![1], Ok(None))],
        "past the bound, a miss"
    );
    assert_eq!(tier_entries(&f.group, Tier::Hot), 0);
    assert_eq!(f.group.stats().counters.fetches, 3);
}

fn reply_value(step: GetStep<TestError>) -> Fetched {
    reply(step).unwrap().unwrap()
}

/// A client's (1) fetch of `f.theirs`, joined by caller 2 (a peer's forwarded get if
/// `forwarded`), answered with a value that expired on its way while caller 1 gave up.
fn expired_fetch_left_to_caller_2(f: &Fixture, forwarded: bool) -> Completion<u32, TestError> {
    let (flight, _) = start_fetch(f.group.get(&f.theirs, false, at(0), || 1));
    assert!(matches!(
        f.group.get(&f.theirs, forwarded, at(1), || 2),
        GetStep::Wait
    ));
    f.group.fetched_for(
        &flight,
        FetchOutcome::Answered(Ok(Some(value("v", Some(50))))),
        at(80),
        |w| *w == 1,
    )
}

#[test]
fn no_second_try_of_a_fetch_for_callers_that_gave_up() {
    let f = fixture();
    // Only caller 2 is asked for.
    let done = expired_fetch_left_to_caller_2(&f, false);
    let Some(Work::Fetch { flight, .. }) = done.start else {
        panic!("the owner is asked again for caller 2");
    };
    // Caller 2 gave up too, and the owner is now unreachable: no local load for nobody.
    let done = f.group.fetched_for(
        &flight,
        FetchOutcome::Unreachable(TestError::Failed("unreachable")),
        at(90),
        |_| true,
    );
    assert!(done.start.is_none() && done.deliveries.is_empty());
    assert_eq!(f.group.flights(), 0);
    let c = f.group.stats().counters;
    assert_eq!((c.fetches, c.fallbacks, c.loads), (2, 0, 0));
}

#[test]
fn an_invalidation_drops_the_hot_copy_and_detaches_the_fetch() {
    let f = fixture();
    let (old, _) = start_fetch(f.group.get(&f.theirs, false, at(0), || 1));
    f.group.invalidate(&f.theirs);
    let (new, _) = start_fetch(f.group.get(&f.theirs, false, at(1), || 2));
    assert_ne!(old, new);
    let done = f.group.fetched(
        &old,
        FetchOutcome::Answered(Ok(Some(value("old", None)))),
        at(2),
    );
    assert_eq!(delivered(&done), vec![(vec![1], some("old"))]);
    let done = f.group.fetched(
        &new,
        FetchOutcome::Answered(Ok(Some(value("new", None)))),
        at(3),
    );
    assert_eq!(delivered(&done), vec![(vec![2], some("new"))]);
    assert_eq!(got(f.group.get(&f.theirs, false, at(4), || 3)), Some("new"));
    f.group.invalidate(&f.theirs);
    start_fetch(f.group.get(&f.theirs, false, at(5), || 4));
    assert_eq!(f.group.stats().counters.invalidations_received, 2);
}

#[test]
fn only_an_unreachable_owner_makes_a_node_load_locally() {
    let f = fixture();
    let (flight, _) = start_fetch(f.group.get(&f.theirs, false, at(0), || 1));
    let done = f.group.fetched(
        &flight,
        FetchOutcome::Answered(Err(TestError::Failed("owner's loader failed"))),
        at(1),
    );
    assert!(done.start.is_none(), "the owner answered: no local load");
    assert_eq!(
        delivered(&done),
        vec![(vec![1], Err(TestError::Failed("owner's loader failed")))]
    );
    let (flight, _) = start_fetch(f.group.get(&f.theirs, false, at(2), || 2));
    assert!(matches!(
        f.group.get(&f.theirs, false, at(2), || 3),
        GetStep::Wait
    ));
    let done = f.group.fetched(
        &flight,
        FetchOutcome::Unreachable(TestError::Failed("connection refused")),
        at(3),
    );
    assert!(done.deliveries.is_empty());
    let Some(Work::Load { flight, .. }) = done.start else {
        panic!("an unreachable owner turns the fetch into a local load");
    };
    // A client arriving meanwhile joins the fallback load (made for clients of this node).
    assert!(matches!(
        f.group.get(&f.theirs, false, at(3), || 4),
        GetStep::Wait
    ));
    let done = f
        .group
        .loaded(&flight, LoadOutcome::Value(value("local", None)), at(4));
    assert_eq!(delivered(&done), vec![(vec![2, 3, 4], some("local"))]);
    // Kept as a hot copy only: the main store holds nothing for a key it does not own.
    assert_eq!(tier_entries(&f.group, Tier::Main), 0);
    assert_eq!(tier_entries(&f.group, Tier::Hot), 1);
    let c = f.group.stats().counters;
    assert_eq!((c.fallbacks, c.fetch_errors, c.loads), (1, 2, 1));
}

fn tier_entries(group: &G, tier: Tier) -> u64 {
    group.stats().tier(tier).map_or(0, |t| t.store.entries)
}

#[test]
fn forwarded_requests_for_keys_this_node_does_not_own_never_hop_again() {
    let f = fixture();
    let set = f.group.set(
        f.theirs.clone(),
        Bytes::from_static(b"x"),
        None,
        true,
        at(0),
    );
    assert!(matches!(set, WriteStep::NotOwner { owner } if owner.as_str() == "b"));
    assert!(matches!(
        f.group.delete(&f.theirs, true, at(0)),
        WriteStep::NotOwner { .. }
    ));
    assert!(matches!(
        f.group
            .set(f.theirs.clone(), Bytes::from_static(b"x"), None, false, at(0)),
        WriteStep::Forward { owner, write } if owner.id.as_str() == "b"
            && write.key == f.theirs && write.value == Bytes::from_static(b"x")
    ));
    // A forwarded get is served here with a local load, answered but not kept: a write on the
    // owner may already have invalidated every copy, and nothing would drop this one.
    let (flight, _) = start_load(f.group.get(&f.theirs, true, at(0), || 1));
    let done = f
        .group
        .loaded(&flight, LoadOutcome::Value(value("v", None)), at(1));
    assert_eq!(delivered(&done), vec![(vec![1], some("v"))]);
    assert_eq!(tier_entries(&f.group, Tier::Main), 0);
    assert_eq!(tier_entries(&f.group, Tier::Hot), 0);
    // A client of this node never gets such a load's value (it ignores writes on the owner):
    // it asks the owner, and the load ends for the peer alone.
    let (stray, _) = start_load(f.group.get(&f.theirs, true, at(2), || 2));
    let (fetch, owner) = start_fetch(f.group.get(&f.theirs, false, at(2), || 3));
    assert_eq!(owner.id.as_str(), "b");
    let done = f
        .group
        .loaded(&stray, LoadOutcome::Value(value("stray", None)), at(3));
    assert_eq!(delivered(&done), vec![(vec![2], some("stray"))]);
    let done = f.group.fetched(
        &fetch,
        FetchOutcome::Answered(Ok(Some(value("v2", None)))),
        at(3),
    );
    assert_eq!(delivered(&done), vec![(vec![3], some("v2"))]);
    assert_eq!(got(f.group.get(&f.theirs, true, at(4), || 4)), Some("v2"));
    let c = f.group.stats().counters;
    assert_eq!((c.not_owner, c.stray_gets, c.hot_hits), (2, 2, 1));
}

/// Seed 3163: a client's fetch, detached when this node forwarded a write of the key, came
/// back expired while a peer-marked get had started a load here (this node does not own the
/// key): asked again, the client must go to the owner, not join that load (it ignores writes
/// on the owner, the client's own included).
#[test]
fn a_client_asked_again_after_an_expired_fetch_never_joins_a_load_made_for_peers() {
    let f = fixture();
    let (fetch, _) = start_fetch(f.group.get(&f.theirs, false, at(0), || 1));
    f.group.forget(&f.theirs);
    let (stray, _) = start_load(f.group.get(&f.theirs, true, at(10), || 2));
    let done = f.group.fetched_for(
        &fetch,
        FetchOutcome::Answered(Ok(Some(value("v", Some(50))))),
        at(80),
        |_| false,
    );
    let Some(Work::Fetch { flight, owner }) = done.start else {
        panic!("the client asks the owner again, got {:?}", done.start);
    };
    assert_eq!(owner.id.as_str(), "b");
    let done = f
        .group
        .loaded(&stray, LoadOutcome::Value(value("stray", None)), at(81));
    assert_eq!(delivered(&done), vec![(vec![2], some("stray"))]);
    let done = f.group.fetched(
        &flight,
        FetchOutcome::Answered(Ok(Some(value("v2", None)))),
        at(82),
    );
    assert_eq!(delivered(&done), vec![(vec![1], some("v2"))]);
}

#[test]
fn a_ring_change_keeps_a_racing_load_out_of_the_main_store() {
    let f = fixture();
    let (flight, _) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    let _ = f.group.ring_changed(&Arc::new(ring_where_b_owns(&f.mine)));
    let done = f
        .group
        .loaded(&flight, LoadOutcome::Value(value("v", None)), at(1));
    assert_eq!(delivered(&done), vec![(vec![1], some("v"))]);
    assert_eq!(tier_entries(&f.group, Tier::Main), 0, "not kept as owner");
    assert_eq!(tier_entries(&f.group, Tier::Hot), 1, "kept as a copy");
}

#[test]
fn a_load_queued_before_a_ring_change_asks_the_new_owner_for_its_clients() {
    for (forwarded, fetches) in [(false, true), (true, false)] {
        let f = fixture();
        let (first, permit) = queued_behind_a_detached_load(&f, &[(forwarded, 2)], true);
        let done = old_loaded(&f, &first, |_| false);
        drop(permit);
        match done.start {
            Some(Work::Fetch { owner, .. }) => {
                assert!(fetches, "a peer's forwarded get never hops again");
                assert_ne!(owner.id, MemberId::new("a"));
            }
            Some(Work::Load { .. }) => assert!(!fetches, "a client's get asks the new owner"),
            None => panic!("the queued flight must go on"),
        }
    }

    // A peer's forwarded get queued first, then a client of this node joined: the client makes
    // the flight one that may ask the new owner.
    let f = fixture();
    let (first, _permit) = queued_behind_a_detached_load(&f, &[(true, 2), (false, 3)], true);
    let done = old_loaded(&f, &first, |_| false);
    assert!(
        matches!(done.start, Some(Work::Fetch { .. })),
        "a client waits on it: ask the new owner"
    );

    // The queued callers all gave up: nobody is asked for them.
    let f = fixture();
    let (first, _permit) = queued_behind_a_detached_load(&f, &[(false, 2)], true);
    let done = old_loaded(&f, &first, |&w| w == 2);
    assert!(done.start.is_none(), "no fetch for callers that gave up");
    assert_eq!(delivered(&done), vec![(vec![1], some("old"))]);
}

#[test]
fn a_peers_forwarded_get_left_alone_by_clients_that_gave_up_never_hops_again() {
    // A queued load: a client (2) queued first, then a peer's forwarded get (3) joined; the key
    // moved, and the client gave up. Only the peer's get is left: it is served here, by a load,
    // never sent on to the new owner.
    let f = fixture();
    let (first, permit) = queued_behind_a_detached_load(&f, &[(false, 2), (true, 3)], true);
    drop(permit);
    let done = old_loaded(&f, &first, |&w| w == 2);
    assert!(
        matches!(done.start, Some(Work::Load { .. })),
        "the peer's get is loaded here, not forwarded again: {:?}",
        done.start.map(|w| matches!(w, Work::Fetch { .. }))
    );

    // A fetch of a key this node does not own: a client (1) started it, a peer's forwarded get
    // (2) that took this node for the owner joined it. The answer expired on its way and the
    // client gave up: the peer's get is not sent to the owner a second time.
    let done = expired_fetch_left_to_caller_2(&fixture(), true);
    assert!(
        matches!(done.start, Some(Work::Load { .. })),
        "the peer's get is loaded here, not forwarded again: {:?}",
        done.start.map(|w| matches!(w, Work::Fetch { .. }))
    );
}

#[test]
fn a_queued_load_whose_callers_all_gave_up_never_starts() {
    let f = fixture();
    let (first, _permit) = queued_behind_a_detached_load(&f, &[(false, 2)], false);
    let done = old_loaded(&f, &first, |&w| w == 2);
    assert!(done.start.is_none(), "no load for callers that gave up");
    assert_eq!(delivered(&done), vec![(vec![1], some("old"))]);
    // The next caller starts a fresh load.
    start_load(f.group.get(&f.mine, false, at(4), || 3));
}

/// A router for node `a` in which `b` owns `key`.
fn ring_where_b_owns(key: &[u8]) -> Router {
    for n in 0.. {
        let others: Vec<String> = (0..=n).map(|i| format!("b{i}")).collect();
        let mut r = Router::new(member("a"), RingConfig { vnodes: 64 });
        let changes: Vec<_> = others
            .iter()
            .map(|id| RingChange::Added(member(id)))
            .collect();
        r.apply(&changes);
        if r.owner(key).id != MemberId::new("a") {
            return r;
        }
    }
    unreachable!()
}

#[test]
fn a_ring_change_hands_off_main_keys_and_drops_copies_of_keys_now_owned() {
    let f = fixture();
    assert!(matches!(
        f.group
            .set(f.mine.clone(), Bytes::from_static(b"m"), None, false, at(0)),
        WriteStep::Applied { .. }
    ));
    let (flight, _) = start_fetch(f.group.get(&f.theirs, false, at(0), || 1));
    f.group.fetched(
        &flight,
        FetchOutcome::Answered(Ok(Some(value("t", None)))),
        at(1),
    );
    assert_eq!(tier_entries(&f.group, Tier::Hot), 1);
    // Alone: this node owns every key now; its old main key stays, the hot copy goes.
    let alone = Arc::new(router("a", &[]));
    assert_eq!(f.group.ring_changed(&alone), 1);
    assert_eq!(got(f.group.get(&f.mine, false, at(2), || 2)), Some("m"));
    assert_eq!(tier_entries(&f.group, Tier::Hot), 0);
    // Handed to `b`: the main store lets the key go.
    assert_eq!(
        f.group.ring_changed(&Arc::new(ring_where_b_owns(&f.mine))),
        1
    );
    assert_eq!(tier_entries(&f.group, Tier::Main), 0);
}

#[test]
fn fencing_drops_everything_and_detaches_every_flight() {
    let f = fixture();
    f.group
        .set(f.mine.clone(), Bytes::from_static(b"m"), None, false, at(0));
    let (flight, _) = start_fetch(f.group.get(&f.theirs, false, at(0), || 1));
    f.group.fence();
    assert_eq!(f.group.stats().entries(), 0);
    let done = f.group.fetched(
        &flight,
        FetchOutcome::Answered(Ok(Some(value("t", None)))),
        at(1),
    );
    assert_eq!(delivered(&done), vec![(vec![1], some("t"))]);
    assert_eq!(
        f.group.stats().entries(),
        0,
        "a detached fetch keeps nothing"
    );
    start_load(f.group.get(&f.mine, false, at(2), || 2));
    assert_eq!(f.group.stats().counters.fenced, 1);
}

#[test]
fn a_loader_miss_is_remembered_until_its_ttl_or_a_write() {
    let f = fixture();
    let (flight, permit) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    f.group.loaded(&flight, LoadOutcome::Missing, at(1));
    drop(permit);
    assert_eq!(reply(f.group.get(&f.mine, false, at(100), || 2)), Ok(None));
    let c = f.group.stats().counters;
    assert_eq!((c.miss_hits, c.load_misses), (1, 1));
    // The remembered miss expires with its TTL (500 ms).
    start_load(f.group.get(&f.mine, false, at(501), || 3));
    let f = fixture();
    let (flight, _) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    f.group.loaded(&flight, LoadOutcome::Missing, at(1));
    f.group.set(
        f.mine.clone(),
        Bytes::from_static(b"now"),
        None,
        false,
        at(2),
    );
    assert_eq!(got(f.group.get(&f.mine, false, at(3), || 2)), Some("now"));
}

#[test]
fn no_more_loads_than_the_node_cap_and_no_more_waiters_than_the_key_bound() {
    let f = fixture_with(
        GroupSettings {
            max_waiters_per_key: 2,
            ..settings()
        },
        1,
    );
    let (flight, permit) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    let other = (0..10_000)
        .map(|i| Bytes::from(format!("other-{i}")))
        .find(|k| {
            matches!(
                f.group.get(k, false, at(0), || 0),
                GetStep::Reply(Err(TestError::Refused(Refusal::LoadsFull { cap: 1 })))
            )
        })
        .unwrap();
    assert!(matches!(
        f.group.get(&f.mine, false, at(0), || 2),
        GetStep::Wait
    ));
    assert_eq!(
        reply(f.group.get(&f.mine, false, at(0), || 3)),
        Err(TestError::Refused(Refusal::WaitersFull { max: 2 }))
    );
    f.group
        .loaded(&flight, LoadOutcome::Value(value("v", None)), at(1));
    drop(permit);
    assert_eq!(f.slots.running(), 0);
    start_load(f.group.get(&other, false, at(2), || 4));
    assert!(f.group.stats().counters.overloaded >= 2);
}

#[test]
fn without_a_loader_a_key_nobody_set_is_a_miss_at_once() {
    let f = fixture_with(
        GroupSettings {
            has_loader: false,
            ..settings()
        },
        4,
    );
    assert_eq!(reply(f.group.get(&f.mine, false, at(0), || 1)), Ok(None));
    assert_eq!(reply(f.group.get(&f.theirs, true, at(0), || 2)), Ok(None));
    // A non-owner still asks the owner; an unreachable owner makes it a miss.
    let (flight, _) = start_fetch(f.group.get(&f.theirs, false, at(0), || 3));
    let done = f.group.fetched(
        &flight,
        FetchOutcome::Unreachable(TestError::Failed("down")),
        at(1),
    );
    assert_eq!(delivered(&done), vec![(vec![3], Ok(None))]);
    let c = f.group.stats().counters;
    assert_eq!((c.loads, c.misses, c.fallbacks), (0, 3, 1));
    assert_eq!(f.group.stats().entries(), 0, "nothing remembered");
}

#[test]
fn ttls_resolve_against_the_group_default() {
    let f = fixture_with(
        GroupSettings {
            default_ttl: Some(Duration::from_millis(300)),
            ..settings()
        },
        4,
    );
    f.group
        .set(f.mine.clone(), Bytes::from_static(b"v"), None, false, at(0));
    assert_eq!(
        reply_value(f.group.get(&f.mine, false, at(100), || 1)).ttl,
        Some(Duration::from_millis(200))
    );
    assert!(matches!(
        f.group.get(&f.mine, false, at(300), || 2),
        GetStep::Start(Work::Load { .. })
    ));
}

#[test]
fn a_budget_is_split_over_shards_to_the_byte() {
    assert_eq!(split(10, 4).ok(), Some(vec![3, 3, 2, 2]));
    assert_eq!(split(8, 4).ok(), Some(vec![2, 2, 2, 2]));
    assert_eq!(split(7, 1).ok(), Some(vec![7]));
    for (total, shards) in [(1_000_003, 16), (4_096, 8), (17, 16)] {
        let parts = split(total, shards).unwrap_or_default();
        assert_eq!(parts.len(), shards);
        assert_eq!(parts.iter().sum::<u64>(), total, "{total} over {shards}");
        let (min, max) = (parts.iter().min(), parts.iter().max());
        assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1));
    }
    assert!(split(3, 4).is_err(), "a shard would get no budget");
}

#[test]
fn the_group_reports_its_settings_forgets_keys_and_sweeps_what_expired() {
    let mut with_ttl = settings();
    with_ttl.default_ttl = Some(Duration::from_millis(100));
    let f = fixture_with(with_ttl, 16);
    assert_eq!(f.group.name(), "g");
    assert_eq!(f.group.default_ttl(), Some(Duration::from_millis(100)));
    // The main budget over its 4 shards.
    assert_eq!(f.group.max_entry_size(), (64 << 10) / 4);
    crate::counters::bump(&f.group.runtime_counters().fenced);
    assert_eq!(f.group.stats().counters.fenced, 1);

    // Forgetting a key drops this node's copy of it.
    let _ = f
        .group
        .set(f.mine.clone(), Bytes::from_static(b"v"), None, false, at(0));
    assert_eq!(got(f.group.get(&f.mine, false, at(1), || 1)), Some("v"));
    f.group.forget(&f.mine);
    start_load(f.group.get(&f.mine, false, at(2), || 2));

    // Sweeping reclaims what expired (the group's default lifetime), and only that.
    let g = fixture_with(
        GroupSettings {
            default_ttl: Some(Duration::from_millis(100)),
            ..settings()
        },
        16,
    );
    let _ = g
        .group
        .set(g.mine.clone(), Bytes::from_static(b"v"), None, false, at(0));
    assert_eq!(g.group.sweep(at(50), 16), 0);
    assert_eq!(g.group.sweep(at(200), 16), 1);
    assert_eq!(g.group.sweep(at(300), 16), 0);
}

#[test]
fn a_write_reports_whether_the_owner_held_a_valid_value() {
    let f = fixture();
    let existed = |step: WriteStep<UnappliedSet>| match step {
        WriteStep::Applied { existed, .. } => existed,
        other => panic!("expected applied, got {other:?}"),
    };
    let set = |v: &'static str, ttl_ms: Option<u64>, now: u64| {
        let ttl = ttl_ms.map(Duration::from_millis);
        f.group.set(
            f.mine.clone(),
            Bytes::from_static(v.as_bytes()),
            ttl,
            false,
            at(now),
        )
    };
    assert!(!existed(set("v1", Some(10), 0)), "nothing was held");
    assert!(existed(set("v2", Some(10), 5)), "v1 was valid until 10");
    assert!(!existed(set("v3", None, 15)), "v2 expired at 15");
    let deleted = |now| {
        f.group
            .delete(&f.mine, false, at(now))
            .map_write(|()| unreachable!())
    };
    assert!(existed(deleted(20)));
    assert!(!existed(deleted(21)));
}

#[test]
fn a_write_too_large_for_its_shard_is_refused_and_changes_nothing() {
    let f = fixture();
    // settings(): 64 KiB over 4 shards.
    let shard_budget = settings().budget_bytes / 4;
    let fits = usize::try_from(shard_budget - entry_size(f.mine.len(), 0)).unwrap();
    let set = |len: usize| {
        f.group.set(
            f.mine.clone(),
            Bytes::from(vec![b'x'; len]),
            None,
            false,
            at(0),
        )
    };
    assert!(matches!(set(3), WriteStep::Applied { existed: false, .. }));
    assert!(matches!(
        set(fits + 1),
        WriteStep::TooLarge(StoreError::EntryTooLarge { .. })
    ));
    assert_eq!(
        got(f.group.get(&f.mine, false, at(1), || 1)),
        Some("xxx"),
        "the refused write changed nothing"
    );
    assert!(
        matches!(set(fits), WriteStep::Applied { existed: true, .. }),
        "an entry of exactly the shard's budget fits"
    );
    assert_eq!(
        f.group.stats().counters.writes,
        2,
        "the refused write is not counted"
    );
}

#[test]
fn a_loaded_value_without_a_lifetime_takes_the_groups_default_ttl() {
    let f = fixture_with(
        GroupSettings {
            default_ttl: Some(Duration::from_millis(100)),
            ..settings()
        },
        16,
    );
    let (flight, _permit) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    let done = f
        .group
        .loaded(&flight, LoadOutcome::Value(value("v", None)), at(10));
    assert_eq!(delivered(&done), vec![(vec![1], some("v"))]);
    assert_eq!(got(f.group.get(&f.mine, false, at(109), || 2)), Some("v"));
    // 100 ms after the load returned (at 10) it expired: the next get loads again.
    start_load(f.group.get(&f.mine, false, at(110), || 3));
}

#[test]
fn a_load_that_keeps_expiring_before_it_is_reported_runs_again_twice_then_answers_a_miss() {
    let f = fixture();
    let (mut flight, _permit) = start_load(f.group.get(&f.mine, false, at(0), || 1));
    let late_load = |flight: &FlightRef, ms: u64| {
        // Returned at `ms` with 10 ms to live, reported 50 ms later: expired on its way.
        f.group.loaded_at(
            flight,
            LoadOutcome::Value(value("v", Some(10))),
            at(ms),
            at(ms + 50),
            |_| false,
        )
    };
    for round in 0..2u64 {
        let done = late_load(&flight, 50 * round);
        assert!(done.deliveries.is_empty(), "round {round}: asked again");
        let Some(Work::Load { flight: again, .. }) = done.start else {
            panic!(
                "round {round}: expected the loader to run again, got {:?}",
                done.start
            );
        };
        flight = again;
    }
    // The third expired answer is not asked again: the caller gets a miss, not a dead value.
    let done = late_load(&flight, 100);
    assert!(done.start.is_none());
    assert_eq!(delivered(&done), vec![(vec![1], Ok(None))]);
}

#[test]
fn a_fallback_load_for_this_nodes_clients_that_expired_on_its_way_is_asked_again() {
    let f = fixture();
    let (flight, _) = start_fetch(f.group.get(&f.theirs, false, at(0), || 1));
    let done = f.group.fetched(
        &flight,
        FetchOutcome::Unreachable(TestError::Failed("connection refused")),
        at(1),
    );
    let Some(Work::Load { flight, .. }) = done.start else {
        panic!("an unreachable owner turns the fetch into a local load");
    };
    let done = f.group.loaded_at(
        &flight,
        LoadOutcome::Value(value("v", Some(10))),
        at(2),
        at(52),
        |_| false,
    );
    assert!(
        done.deliveries.is_empty() && done.start.is_some(),
        "a client's fallback on a node that does not own the key asks again: {done:?}"
    );
}
