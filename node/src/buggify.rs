//! Named fault points inside the request path, for simulations only (FoundationDB's BUGGIFY).
//!
//! Built only with the `buggify` cargo feature, which the simulation turns on; a production
//! build has neither the points nor this module. At each point the node asks the run's
//! [`Buggify`] whether to stall there (and for how long) or to drop a message; the simulation
//! answers from its seeded rng, so a replay stalls and drops exactly the same way.

use std::fmt;
use std::time::Duration;

/// Where a fault may be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Point {
    /// Between deciding to fetch from the owner and sending the request.
    BeforeFetch,
    /// Between a loader returning and its value being kept.
    BeforeKeepLoad,
    /// Between an owner's answer arriving and the copy being kept.
    BeforeKeepFetch,
    /// Between a write arriving at its owner and being applied (a slow apply).
    BeforeApply,
    /// Between a write being applied and the invalidations being sent.
    BeforeInvalidate,
    /// An invalidation to one peer is not sent (a lost message).
    DropInvalidation,
    /// Between a forwarded write's answer and dropping this node's own copies.
    BeforeForget,
}

impl Point {
    /// Every point, for a simulation choosing which are on.
    pub const ALL: [Point; 7] = [
        Point::BeforeFetch,
        Point::BeforeKeepLoad,
        Point::BeforeKeepFetch,
        Point::BeforeApply,
        Point::BeforeInvalidate,
        Point::DropInvalidation,
        Point::BeforeForget,
    ];

    /// The point's name, for traces.
    pub fn name(self) -> &'static str {
        match self {
            Point::BeforeFetch => "before-fetch",
            Point::BeforeKeepLoad => "before-keep-load",
            Point::BeforeKeepFetch => "before-keep-fetch",
            Point::BeforeApply => "before-apply",
            Point::BeforeInvalidate => "before-invalidate",
            Point::DropInvalidation => "drop-invalidation",
            Point::BeforeForget => "before-forget",
        }
    }
}

/// The simulation's answers at fault points.
pub trait Buggify: Send + Sync + fmt::Debug + 'static {
    /// How long to stall at `point` this time, if at all.
    fn stall(&self, point: Point) -> Option<Duration>;
    /// Whether to drop the message at `point` this time.
    fn drop_message(&self, point: Point) -> bool;
}
