//! An event counter that threads holding only a shared lock can raise without contending and
//! without a locked instruction.
//!
//! One cache-line-aligned cell per [stripe](crate::stripe), and the value is the sum of the
//! cells. A thread with a stripe of its own is the only writer of that stripe's cell and raises it
//! with a plain load and store: on x86 an atomic read-modify-write is a full barrier that waits
//! for the lookup's outstanding cache misses, which made the hit counter the single most
//! expensive step of a store hit (`cargo bench -p lcache-core --bench throughput`). Other threads
//! share one last cell raised with an atomic addition. So the count is exact whatever the number
//! of threads, and no two threads with a stripe of their own write the same cache line.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::stripe::{owned_stripe, OWNED_STRIPES};

/// One stripe, alone on its cache line.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Cell(AtomicU64);

/// A sum of per-thread-stripe counts.
#[derive(Debug, Default)]
pub(super) struct StripedCounter {
    /// `OWNED_STRIPES` owned cells, then the shared one.
    cells: [Cell; OWNED_STRIPES + 1],
}

impl StripedCounter {
    /// Adds one, from a thread holding shared access.
    pub(super) fn increment(&self) {
        match owned_stripe() {
            Some(stripe) => {
                // This thread is the only writer of its owned cell (see the module docs).
                let cell = &self.cells[stripe].0;
                cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            None => {
                self.cells[OWNED_STRIPES].0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Adds one, with exclusive access (no atomic operation needed).
    pub(super) fn increment_mut(&mut self) {
        *self.cells[OWNED_STRIPES].0.get_mut() += 1;
    }

    /// The count: the sum of the stripes (exact once concurrent increments have finished).
    pub(super) fn get(&self) -> u64 {
        self.cells
            .iter()
            .map(|cell| cell.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
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

    #[test]
    fn more_threads_than_stripes_and_threads_that_come_and_go_count_exactly() {
        let counter = StripedCounter::default();
        // Three waves of 3 * OWNED_STRIPES threads at once: most waves have threads without a
        // stripe of their own (the shared cell), and each wave reuses stripes of the last.
        for _ in 0..3 {
            std::thread::scope(|scope| {
                for _ in 0..3 * OWNED_STRIPES {
                    scope.spawn(|| (0..2_000).for_each(|_| counter.increment()));
                }
            });
        }
        assert_eq!(counter.get(), 3 * 3 * OWNED_STRIPES as u64 * 2_000);
    }
}
