//! The simulation's answers at the node's buggify points ([`lcache_node::buggify`]): stalls and
//! dropped invalidations drawn from the run's seed, so a replay stalls and drops the same way.

use std::time::Duration;

use lcache_node::buggify::{Buggify, Point};

use crate::history::{Event, History};
use parking_lot::Mutex;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Chance that a switched-on stall point stalls when reached.
const STALL_CHANCE: f64 = 0.1;
/// Longest stall: past the peer timeout and most hot lifetimes, so a stall can outlive the
/// ownership, the copy's lifetime or the write it raced.
pub const STALL_MAX: Duration = Duration::from_millis(1_500);
/// Chance that a switched-on drop point drops its message.
const DROP_CHANCE: f64 = 0.2;

/// Seeded fault choices for one node incarnation.
#[derive(Debug)]
pub struct SimBuggify {
    on: Vec<Point>,
    rng: Mutex<ChaCha8Rng>,
    /// Where dropped messages are recorded (the checkers count them as faults).
    history: History,
    node: String,
    inc: u64,
}

impl SimBuggify {
    /// Faults at the points `on` of incarnation `inc` of `node`, drawn from `rng`; dropped
    /// messages are recorded in `history`.
    pub fn new(on: Vec<Point>, rng: ChaCha8Rng, history: History, node: &str, inc: u64) -> Self {
        SimBuggify {
            on,
            rng: Mutex::new(rng),
            history,
            node: node.to_owned(),
            inc,
        }
    }
}

impl Buggify for SimBuggify {
    fn stall(&self, point: Point) -> Option<Duration> {
        if !self.on.contains(&point) {
            return None;
        }
        let mut rng = self.rng.lock();
        let max = u64::try_from(STALL_MAX.as_millis()).unwrap_or(u64::MAX);
        let ms = rng
            .random_bool(STALL_CHANCE)
            .then(|| rng.random_range(1..=max))?;
        drop(rng);
        self.history.record(Event::Stalled {
            node: self.node.clone(),
            inc: self.inc,
            point: point.name().to_owned(),
            ms,
        });
        Some(Duration::from_millis(ms))
    }

    fn drop_message(&self, point: Point) -> bool {
        let dropped = self.on.contains(&point) && self.rng.lock().random_bool(DROP_CHANCE);
        if dropped {
            self.history.record(Event::Dropped {
                node: self.node.clone(),
                inc: self.inc,
                point: point.name().to_owned(),
            });
        }
        dropped
    }
}
