//! The verifier's targeted scenarios, run after convergence and the L2 reads, each on keys of
//! its own (the loader's behaviour follows a key's first letter, see [`crate::loader`]):
//!
//! - **read–delete–read through one non-owner**: a non-owner reads a key (keeping a hot copy),
//!   another node deletes it, the non-owner reads again; and the same with an overwrite;
//! - **a slow load in flight during a write**: a get starts a slow load, the same client writes
//!   the key on the same node, then reads it there (read-your-writes);
//! - **a client that claims to be a peer** (`hops = 1`) writes a key on a node that does not own
//!   it, then the key is read on its owner;
//! - **the first caller's deadline**: an impatient get and a patient one of a slow key join on a
//!   non-owner; the patient one must not inherit the impatient deadline;
//! - **a burst past the load cap**: impatient gets of many slow keys owned by one node;
//! - **ownership moving away and back**: the owner of a written key is cut off from discovery
//!   until its lease expires, the key is written again elsewhere, the owner is healed and read;
//! - **loader trouble through a non-owner**: keys whose loader fails, is slow, misses or (last of
//!   all) panics, each read twice (the second read must not be wedged by the first).
//!
//! The checkers judge the outcomes (S5, S7, S8, S9); the scenarios only make them happen.

use std::time::Duration;

use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use crate::client::{Profile, Session};
use crate::discovery::HOST as DISCOVERY;
use crate::faults::FaultAction;
use crate::history::{Event, Phase, Request};
use crate::node_host::Running;

/// Lifetime of the scenarios' values (longer than any run).
const TTL_MS: u64 = 600_000;
/// Polling interval while waiting for views to change.
const POLL: Duration = Duration::from_millis(100);
/// Tiny deadline of the scenarios' impatient clients.
const TINY: Duration = Duration::from_millis(30);
/// Keys a cap burst sends at most.
const MAX_BURST: usize = 64;

/// Runs every scenario in order (the ones that disturb the cluster last).
pub(crate) async fn run(session: &mut Session, live: &[(String, Running)], rng: &mut ChaCha8Rng) {
    if live.len() < 2 {
        return;
    }
    let mut s = Scenarios { session, live, rng };
    s.read_delete_read().await;
    s.slow_load_during_write().await;
    s.peer_claiming_write().await;
    s.first_callers_deadline().await;
    s.burst_past_the_load_cap().await;
    s.loader_trouble().await;
    s.ownership_away_and_back().await;
    // Last: while the node cannot contain a loader panic, it takes its host down.
    s.panicking_loader().await;
}

struct Scenarios<'a> {
    session: &'a mut Session,
    live: &'a [(String, Running)],
    rng: &'a mut ChaCha8Rng,
}

fn get(key: &str) -> Request {
    Request::Get { key: key.into() }
}

fn set(key: &str, value: &str) -> Request {
    Request::Set {
        key: key.into(),
        value: value.into(),
        ttl_ms: Some(TTL_MS),
    }
}

fn delete(key: &str) -> Request {
    Request::Delete { key: key.into() }
}

impl Scenarios<'_> {
    /// The owner of `key` in the first live node's view (views agree after convergence).
    fn owner(&self, key: &str) -> String {
        self.live
            .first()
            .map(|(_, r)| r.probe.owner(key.as_bytes()).id.to_string())
            .unwrap_or_default()
    }

    /// A live node other than every one in `not`, if any.
    fn other(&mut self, not: &[&str]) -> Option<String> {
        let candidates: Vec<&String> = self
            .live
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !not.contains(&n.as_str()))
            .collect();
        candidates.choose(self.rng).map(|n| (*n).clone())
    }

    async fn perform(&mut self, node: &str, request: Request) {
        self.session.perform(node, request, Phase::Verify).await;
    }

    /// A session of the verifier's with another profile.
    fn session_with(&self, label: &str, profile: Profile) -> Session {
        Session::new(label.to_owned(), self.session.ctx.clone()).with_profile(profile)
    }

    async fn read_delete_read(&mut self) {
        for (key, overwrite) in [("v-rdr", false), ("v-rwr", true)] {
            let owner = self.owner(key);
            let Some(reader) = self.other(&[&owner]) else {
                return;
            };
            let writer = self.other(&[&reader]).unwrap_or(owner.clone());
            self.perform(&owner, set(key, &format!("W:{key}:old")))
                .await;
            self.perform(&reader, get(key)).await;
            if overwrite {
                self.perform(&writer, set(key, &format!("W:{key}:new")))
                    .await;
            } else {
                self.perform(&writer, delete(key)).await;
            }
            self.perform(&reader, get(key)).await;
        }
    }

    async fn slow_load_during_write(&mut self) {
        for key in ["s-wr1", "s-wr2"] {
            let owner = self.owner(key);
            let node = if key.ends_with('1') {
                self.other(&[&owner]).unwrap_or(owner)
            } else {
                owner
            };
            let slow = self.session.spawn(&node, get(key), Phase::Verify).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.perform(&node, set(key, &format!("W:{key}"))).await;
            self.perform(&node, get(key)).await;
            let _ = slow.await;
        }
    }

    async fn peer_claiming_write(&mut self) {
        let key = "v-hop";
        let owner = self.owner(key);
        let Some(other) = self.other(&[&owner]) else {
            return;
        };
        let profile = Profile {
            call_timeout: self.session.ctx.options.call_timeout,
            as_peer: true,
        };
        let mut peer = self.session_with("verifier.peer", profile);
        peer.perform(&other, set(key, &format!("W:{key}")), Phase::Verify)
            .await;
        self.perform(&owner, get(key)).await;
        self.perform(&other, get(key)).await;
    }

    async fn first_callers_deadline(&mut self) {
        let key = "s-dl";
        let owner = self.owner(key);
        let Some(node) = self.other(&[&owner]) else {
            return;
        };
        let profile = Profile {
            call_timeout: TINY,
            as_peer: false,
        };
        let mut hasty = self.session_with("verifier.hasty", profile);
        let first = hasty.spawn(&node, get(key), Phase::Verify).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.perform(&node, get(key)).await;
        let _ = first.await;
    }

    async fn ownership_away_and_back(&mut self) {
        let key = "v-own";
        let owner = self.owner(key);
        let Some(writer) = self.other(&[&owner]) else {
            return;
        };
        let Some(ctl) = self.session.ctx.cluster.ctl(&owner).cloned() else {
            return;
        };
        let o = self.session.ctx.options.clone();
        self.perform(&owner, set(key, &format!("W:{key}:before")))
            .await;
        let history = self.session.ctx.history.clone();
        history.record(Event::Fault(FaultAction::Partition(
            owner.clone(),
            DISCOVERY.to_owned(),
        )));
        ctl.cut_discovery(true);
        let bound = o.lease_ttl + Duration::from_secs(6);
        let gone = self
            .wait_views(bound, |node, members| {
                node == owner || !members.contains(&owner)
            })
            .await;
        if gone {
            self.perform(&writer, set(key, &format!("W:{key}:during")))
                .await;
        }
        ctl.cut_discovery(false);
        history.record(Event::Fault(FaultAction::Repair(
            owner.clone(),
            DISCOVERY.to_owned(),
        )));
        let back = self
            .wait_views(bound, |_, members| members.contains(&owner))
            .await;
        if gone && back {
            tokio::time::sleep(o.hot_lifetime() + Duration::from_millis(300)).await;
            self.perform(&owner, get(key)).await;
            self.perform(&writer, get(key)).await;
        }
    }

    /// Waits (at most `bound`) until every live node's members satisfy `want(node, members)`;
    /// true if they did.
    async fn wait_views(&self, bound: Duration, want: impl Fn(&str, &[String]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        while tokio::time::Instant::now() < deadline {
            let all = self.live.iter().all(|(node, r)| {
                let members: Vec<String> =
                    r.probe.members().iter().map(|m| m.id.to_string()).collect();
                want(node, &members)
            });
            if all {
                // Past the monitors' sampling, so the history shows the views too.
                tokio::time::sleep(POLL * 2).await;
                return true;
            }
            tokio::time::sleep(POLL).await;
        }
        false
    }

    async fn burst_past_the_load_cap(&mut self) {
        let o = self.session.ctx.options.clone();
        let want = (o.max_loads * 3).min(MAX_BURST);
        if want >= MAX_BURST {
            return;
        }
        let Some(node) = self.live.first().map(|(n, _)| n.clone()) else {
            return;
        };
        let keys: Vec<String> = (0..10_000)
            .map(|i| format!("s-cap{i}"))
            .filter(|k| self.owner(k) == node)
            .take(want)
            .collect();
        let profile = Profile {
            call_timeout: TINY,
            as_peer: false,
        };
        let mut hasty = self.session_with("verifier.burst", profile);
        let mut calls = Vec::with_capacity(keys.len());
        for key in &keys {
            calls.push(hasty.spawn(&node, get(key), Phase::Verify).await);
        }
        for call in calls {
            let _ = call.await;
        }
        // Let the abandoned loads end before the next scenario.
        tokio::time::sleep(o.load_timeout).await;
    }

    async fn loader_trouble(&mut self) {
        for key in ["e-bad", "m-none", "s-slow"] {
            let owner = self.owner(key);
            let node = self.other(&[&owner]).unwrap_or(owner);
            self.perform(&node, get(key)).await;
            self.perform(&node, get(key)).await;
        }
    }

    async fn panicking_loader(&mut self) {
        for key in ["x-boom"] {
            let owner = self.owner(key);
            let node = self.other(&[&owner]).unwrap_or(owner);
            self.perform(&node, get(key)).await;
            self.perform(&node, get(key)).await;
        }
    }
}
