//! When the cluster was calm, read off the history: which stricter rules apply when.
//!
//! - **Views agree** at an instant when every serving node has recorded a view of its current
//!   incarnation, all those views are equal, and they equal the set of serving nodes. Views are
//!   sampled every 50 ms, so a disagreement is taken to start [`VIEW_PAD_US`] before it was
//!   recorded.
//! - **Quiet**: views agree, and no fault is active — no faulted link (the driver's or the
//!   verifier's), latency spike, discovery outage, stalled watch, node down, join or restart,
//!   message dropped at a buggify point —
//!   within [`SETTLE_US`] after it ended (time to re-register, notice broken connections and
//!   redial).
//! - **Clean**: quiet, and either before the first fault of the run or after the verifier found
//!   every node-to-node path working again. A partition can leave an HTTP/2 connection broken
//!   until its next use (turmoil's TCP does not retransmit what a partition dropped), so a quiet
//!   window in the middle of the fault phase may still see a peer call fail on a stale
//!   connection; only clean windows are held to "no fallback, no early timeout, no stale copy".

use std::collections::BTreeMap;

use crate::faults::FaultAction;
use crate::history::Event;
use crate::options::Options;

use super::Index;

/// Each serving node's last recorded view: its incarnation and members.
type Views<'a> = BTreeMap<&'a str, (u64, &'a [(String, u64)])>;

/// How long after a fault ends the cluster counts as still disturbed.
pub const SETTLE_US: u64 = 3_000_000;
/// How much earlier than recorded a view change may have happened (one sampling interval and
/// a tick).
pub const VIEW_PAD_US: u64 = 60_000;

/// Calm windows of one run.
#[derive(Debug, Default)]
pub struct Calm {
    /// Intervals (µs) during which views did not agree (padded), sorted.
    disagree: Vec<(u64, u64)>,
    /// Intervals (µs) during which a fault was active or settling, sorted by start.
    faults: Vec<(u64, u64)>,
    /// The first fault's start; the data path's readiness after the heal, if it was reached.
    first_fault_us: u64,
    ready_us: Option<u64>,
}

impl Calm {
    /// The calm windows of the history behind `index`.
    pub(crate) fn build(index: &Index<'_>, _options: &Options) -> Self {
        let mut calm = Calm {
            first_fault_us: u64::MAX,
            ..Calm::default()
        };
        let mut open: BTreeMap<String, u64> = BTreeMap::new();
        let mut serving: BTreeMap<&str, u64> = BTreeMap::new();
        let mut views: Views<'_> = BTreeMap::new();
        let mut disagree_since: Option<u64> = Some(0);
        for (_, entry) in index.events() {
            let at = entry.at_us;
            match &entry.event {
                Event::Fault(action) => {
                    calm.fault(action, at, &mut open);
                    if let FaultAction::Crash(n) = action {
                        serving.remove(n.as_str());
                    }
                }
                Event::Heal { .. } => {
                    for (_, from) in std::mem::take(&mut open) {
                        calm.faults.push((from, at + SETTLE_US));
                    }
                }
                Event::DataPath { ready: true, .. } => calm.ready_us = Some(at),
                // A lost invalidation disturbs the cluster like a lost packet, briefly.
                Event::Dropped { .. } => {
                    calm.faults.push((at, at + SETTLE_US));
                    continue;
                }
                Event::NodeStarted { node, inc } => {
                    serving.insert(node, *inc);
                }
                Event::NodeStopped { node, .. } => {
                    serving.remove(node.as_str());
                }
                Event::View { node, inc, members } => {
                    views.insert(node, (*inc, members.as_slice()));
                }
                _ => continue,
            }
            let agree = agree(&serving, &views);
            match (agree, disagree_since) {
                (true, Some(from)) => {
                    calm.disagree.push((from, at));
                    disagree_since = None;
                }
                (false, None) => disagree_since = Some(at.saturating_sub(VIEW_PAD_US)),
                _ => {}
            }
        }
        for (_, from) in open {
            calm.faults.push((from, u64::MAX));
        }
        if let Some(from) = disagree_since {
            calm.disagree.push((from, u64::MAX));
        }
        calm.faults.sort_unstable();
        calm
    }

    fn fault(&mut self, action: &FaultAction, at: u64, open: &mut BTreeMap<String, u64>) {
        let resource = match action {
            FaultAction::Partition(a, b)
            | FaultAction::Repair(a, b)
            | FaultAction::PartitionOneway(a, b)
            | FaultAction::Hold(a, b)
            | FaultAction::Release(a, b)
            | FaultAction::SlowLink(a, b, _)
            | FaultAction::FastLink(a, b) => {
                let (a, b) = if a <= b { (a, b) } else { (b, a) };
                format!("link {a} {b}")
            }
            FaultAction::Crash(n)
            | FaultAction::Restart(n)
            | FaultAction::Leave(n)
            | FaultAction::Join(n) => format!("node {n}"),
            FaultAction::LatencySpike(_) | FaultAction::LatencyReset => "latency".into(),
            FaultAction::DiscoveryDown | FaultAction::DiscoveryUp => "discovery".into(),
            FaultAction::StallWatch(n) | FaultAction::ResumeWatch(n) => format!("watch {n}"),
        };
        self.first_fault_us = self.first_fault_us.min(at);
        if action.is_fault() {
            open.entry(resource).or_insert(at);
        } else {
            // A repair (or a join or restart, which may also end nothing) settles from now.
            let from = open.remove(&resource).unwrap_or(at);
            self.faults.push((from, at + SETTLE_US));
        }
    }

    /// Whether views agreed throughout `[from, to]`.
    pub fn views_agree(&self, from: u64, to: u64) -> bool {
        !overlaps(&self.disagree, from, to)
    }

    /// Whether `[from, to]` was quiet: views agreed and no fault was active or settling.
    pub fn quiet(&self, from: u64, to: u64) -> bool {
        self.views_agree(from, to) && !overlaps(&self.faults, from, to)
    }

    /// Whether `[from, to]` was clean: quiet, and before the first fault or after the data
    /// path was found working after the heal (the verifier's own disturbance afterwards cuts a
    /// node off from discovery only, which breaks no connection; it counts as a fault while it
    /// lasts and settles).
    pub fn clean(&self, from: u64, to: u64) -> bool {
        let phase = to < self.first_fault_us || self.ready_us.is_some_and(|ready| from >= ready);
        phase && self.quiet(from, to)
    }
}

/// Whether every serving node recorded a view of its incarnation, all equal to the serving set.
fn agree(serving: &BTreeMap<&str, u64>, views: &Views<'_>) -> bool {
    let want: Vec<(String, u64)> = serving
        .iter()
        .map(|(n, inc)| ((*n).to_owned(), *inc))
        .collect();
    serving.iter().all(|(node, inc)| {
        views
            .get(node)
            .is_some_and(|(seen, members)| seen == inc && *members == want.as_slice())
    })
}

fn overlaps(spans: &[(u64, u64)], from: u64, to: u64) -> bool {
    spans.iter().any(|&(a, b)| a <= to && from <= b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::test_support::{at, started, view};
    use crate::options::Mutation;

    #[test]
    fn views_faults_and_the_data_path_decide_calm() {
        let o = Options::from_seed(1, Mutation::None);
        let h = [
            at(0, started("n1")),
            at(0, started("n2")),
            at(10, view("n1", &["n1", "n2"])),
            at(20, view("n2", &["n1", "n2"])),
            at(5_000, Event::Fault(FaultAction::StallWatch("n2".into()))),
            at(6_000, Event::Fault(FaultAction::ResumeWatch("n2".into()))),
            at(7_000, view("n2", &["n2"])),
            at(8_000, view("n2", &["n1", "n2"])),
            at(
                20_000,
                Event::Heal {
                    bound_ms: 1,
                    live: vec![],
                },
            ),
            at(
                21_000,
                Event::DataPath {
                    rounds: 1,
                    ready: true,
                },
            ),
            at(30_000, Event::Registry("end".into())),
        ];
        let index = Index::build(&h);
        let calm = Calm::build(&index, &o);
        let s = |ms: u64| ms * 1_000;
        assert!(!calm.views_agree(s(5), s(15)), "n2 had no view yet");
        assert!(calm.clean(s(100), s(4_000)));
        assert!(!calm.quiet(s(5_500), s(5_600)), "a stalled watch");
        assert!(!calm.quiet(s(8_100), s(8_200)), "settling after the stall");
        assert!(!calm.views_agree(s(7_500), s(7_600)));
        assert!(calm.quiet(s(9_500), s(9_600)));
        assert!(
            !calm.clean(s(9_500), s(9_600)),
            "mid fault phase: not clean"
        );
        assert!(
            calm.clean(s(23_100), s(24_000)),
            "after the data path is ready"
        );
    }
}
