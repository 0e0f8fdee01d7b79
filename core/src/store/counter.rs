//! An event counter that threads holding only a shared lock can raise without contending.
//!
//! One cache-line-aligned cell per stripe; a thread always raises the same stripe (assigned round
//! robin at its first use), and the value is the sum of the stripes. With fewer threads than
//! stripes, no two threads write the same cache line, so a hot store's hit counter does not
//! bounce between cores. Which stripe a thread uses changes no value anyone can read.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Number of stripes.
const STRIPES: usize = 8;

/// One stripe, alone on its cache line.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Cell(AtomicU64);

/// A sum of per-thread-stripe counts.
#[derive(Debug, Default)]
pub(super) struct StripedCounter {
    cells: [Cell; STRIPES],
}

impl StripedCounter {
    /// Adds one, from a thread holding shared access.
    pub(super) fn increment(&self) {
        self.cells[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one, with exclusive access (no atomic operation needed).
    pub(super) fn increment_mut(&mut self) {
        *self.cells[0].0.get_mut() += 1;
    }

    /// The count: the sum of the stripes (exact once concurrent increments have finished).
    pub(super) fn get(&self) -> u64 {
        self.cells
            .iter()
            .map(|cell| cell.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// This thread's stripe.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_increments_from_every_thread() {
        let mut counter = StripedCounter::default();
        counter.increment_mut();
        std::thread::scope(|scope| {
            for _ in 0..5 {
                scope.spawn(|| (0..1_000).for_each(|_| counter.increment()));
            }
        });
        counter.increment();
        assert_eq!(counter.get(), 5_002);
        assert_eq!(std::mem::align_of::<Cell>(), 64);
    }
}
