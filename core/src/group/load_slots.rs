//! The node-wide cap on loader runs.
//!
//! A load holds a [`LoadPermit`] from the moment it is decided until the runtime drops the permit,
//! which it does only when the loader call has really ended (returned, failed, panicked or been
//! dropped at the load timeout) — never when the callers waiting for it give up. So however many
//! callers abandon their requests, no more than the cap of loads ever runs at once on a node.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many loads may run at once on a node, shared by all its groups.
#[derive(Debug)]
pub struct LoadSlots {
    running: AtomicUsize,
    cap: usize,
}

impl LoadSlots {
    /// Slots for at most `cap` loads at once (at least 1).
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(LoadSlots {
            running: AtomicUsize::new(0),
            cap: cap.max(1),
        })
    }

    /// A permit for one load, or `None` when `cap` loads already run.
    pub fn try_acquire(self: &Arc<Self>) -> Option<LoadPermit> {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |running| {
                (running < self.cap).then_some(running + 1)
            })
            .ok()?;
        Some(LoadPermit {
            slots: Arc::clone(self),
        })
    }

    /// Loads running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// One running load; dropping it frees the slot.
pub struct LoadPermit {
    slots: Arc<LoadSlots>,
}

impl fmt::Debug for LoadPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadPermit")
            .field("running", &self.slots.running())
            .field("cap", &self.slots.cap)
            .finish()
    }
}

impl Drop for LoadPermit {
    fn drop(&mut self) {
        let before = self.slots.running.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a permit was freed twice");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_permits_than_the_cap() {
        let slots = LoadSlots::new(2);
        let a = slots.try_acquire().unwrap();
        let b = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_none());
        assert_eq!(slots.running(), 2);
        drop(a);
        let c = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_none());
        drop((b, c));
        assert_eq!(slots.running(), 0);
        assert_eq!(LoadSlots::new(0).cap(), 1);
    }
}
