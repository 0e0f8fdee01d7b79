//! `SingleFlight` against the naive `SingleFlightModel`: one leader per key, every waiter handed
//! back exactly once, `Full` exactly at the bound, stale ids powerless.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use lcache_core::{Begin, FlightId, SingleFlight};
use lcache_proptests::singleflight_model::{ModelBegin, SingleFlightModel};
use proptest::prelude::*;
use proptest::sample::Index;

const KEYS: u8 = 4;

/// Which flight id an operation names.
#[derive(Debug, Clone)]
enum Pick {
    /// The key's current flight (or, if it has none, the newest id ever issued).
    Current,
    /// Any id issued so far: often stale, sometimes another key's current flight.
    Any(Index),
}

#[derive(Debug, Clone)]
enum Op {
    Begin(u8),
    Complete(u8, Pick),
    Supersede(u8),
    IsSuperseded(u8, Pick),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![3 => Just(Pick::Current), 1 => any::<Index>().prop_map(Pick::Any)]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS;
    prop_oneof![
        8 => k.clone().prop_map(Op::Begin),
        4 => (k.clone(), pick()).prop_map(|(k, p)| Op::Complete(k, p)),
        1 => k.clone().prop_map(Op::Supersede),
        2 => (k, pick()).prop_map(|(k, p)| Op::IsSuperseded(k, p)),
    ]
}

/// The real and model state side by side, with the map between their flight ids.
struct Harness {
    real: SingleFlight<u8, u64>,
    model: SingleFlightModel<u8, u64>,
    /// `ids[n]` is the real id of the model's flight number `n`.
    ids: Vec<FlightId>,
    next_waiter: u64,
    /// How many times each waiter came back (through `Full` or `complete`).
    returned: BTreeMap<u64, u32>,
}

impl Harness {
    fn new(bound: usize) -> Self {
        Harness {
            real: SingleFlight::new(bound),
            model: SingleFlightModel::new(bound),
            ids: Vec::new(),
            next_waiter: 0,
            returned: BTreeMap::new(),
        }
    }

    /// The model number of the flight `pick` names for `key`, if any id was issued yet.
    fn resolve(&self, key: u8, pick: &Pick) -> Option<u64> {
        let newest = self.ids.len().checked_sub(1)? as u64;
        Some(match pick {
            Pick::Current => self.model.flight_id(&key).unwrap_or(newest),
            Pick::Any(index) => index.index(self.ids.len()) as u64,
        })
    }

    fn hand_back(&mut self, waiters: &[u64]) {
        for w in waiters {
            *self.returned.entry(*w).or_default() += 1;
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Begin(key) => {
                let waiter = self.next_waiter;
                self.next_waiter += 1;
                let had_flight = self.model.flight_id(key).is_some();
                let at_bound = self.model.waiters(key) >= self.real.max_waiters_per_key();
                let got = self.real.begin(*key, waiter);
                match (got, self.model.begin(*key, waiter)) {
                    (Begin::Lead(id), ModelBegin::Lead(n)) => {
                        prop_assert!(!had_flight);
                        prop_assert_eq!(n as usize, self.ids.len());
                        prop_assert!(!self.ids.contains(&id), "flight id {:?} reused", id);
                        // Ids grow by one per flight started (logs and traces rely on it).
                        prop_assert_eq!(id.as_u64(), n);
                        self.ids.push(id);
                    }
                    (Begin::Joined, ModelBegin::Joined) => {
                        prop_assert!(had_flight && !at_bound);
                    }
                    (Begin::Full(w), ModelBegin::Full(_)) => {
                        prop_assert!(had_flight && at_bound);
                        prop_assert_eq!(w, waiter);
                        self.hand_back(&[w]);
                    }
                    (got, want) => {
                        prop_assert!(false, "begin({}): got {:?}, model {:?}", key, got, want);
                    }
                }
            }
            Op::Complete(key, pick) => {
                let Some(n) = self.resolve(*key, pick) else {
                    return Ok(());
                };
                let got = self.real.complete(key, self.ids[n as usize]);
                prop_assert_eq!(
                    &got,
                    &self.model.complete(key, n),
                    "complete({}, #{})",
                    key,
                    n
                );
                self.hand_back(&got);
            }
            Op::Supersede(key) => {
                prop_assert_eq!(self.real.supersede(key), self.model.supersede(key));
            }
            Op::IsSuperseded(key, pick) => {
                let Some(n) = self.resolve(*key, pick) else {
                    return Ok(());
                };
                prop_assert_eq!(
                    self.real.is_superseded(key, self.ids[n as usize]),
                    self.model.is_superseded(key, n),
                    "is_superseded({}, #{})",
                    key,
                    n
                );
            }
        }
        self.check_state()
    }

    fn check_state(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.real.in_flight(), self.model.in_flight());
        for key in 0..KEYS {
            let want = self.model.flight_id(&key).map(|n| self.ids[n as usize]);
            prop_assert_eq!(self.real.flight_id(&key), want);
            prop_assert_eq!(self.real.is_in_flight(&key), want.is_some());
            prop_assert_eq!(self.real.waiters(&key), self.model.waiters(&key));
            prop_assert!(self.real.waiters(&key) <= self.real.max_waiters_per_key());
        }
        Ok(())
    }

    /// Completes every flight still in progress with its current id.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for (key, n) in self.model.current() {
            let got = self.real.complete(&key, self.ids[n as usize]);
            prop_assert_eq!(&got, &self.model.complete(&key, n));
            prop_assert!(!got.is_empty(), "a flight holds at least its leader");
            self.hand_back(&got);
        }
        prop_assert_eq!(self.real.in_flight(), 0);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn singleflight_matches_model_and_loses_no_waiter(
        bound in 0usize..5,
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let mut h = Harness::new(bound);
        prop_assert_eq!(h.real.max_waiters_per_key(), bound.max(1));
        for op in &ops {
            h.step(op)?;
        }
        h.drain()?;
        let issued: BTreeSet<u64> = (0..h.next_waiter).collect();
        let returned: BTreeSet<u64> = h.returned.keys().copied().collect();
        prop_assert_eq!(&returned, &issued, "every waiter is handed back");
        for (waiter, times) in &h.returned {
            prop_assert_eq!(*times, 1, "waiter {} handed back {} times", waiter, times);
        }
    }
}
