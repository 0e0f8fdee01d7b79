//! An event counter that threads holding only a shared lock can raise without contending and
//! without a locked instruction.
//!
//! One cache-line-aligned cell per stripe, and the value is the sum of the cells. A thread owns
//! one stripe for as long as it lives (taken from a process-wide pool at its first increment and
//! given back when it exits), so it is the only writer of that stripe's cell in every counter and
//! can raise it with a plain load and store: on x86 an atomic read-modify-write is a full barrier
//! that waits for the lookup's outstanding cache misses, which made the hit counter the single
//! most expensive step of a store hit (`cargo bench -p lcache-core --bench throughput`). Threads
//! beyond [`OWNED_STRIPES`] at once, and a thread whose stripe was already given back (while its
//! other thread-locals are destroyed), share one last cell raised with an atomic addition. So the
//! count is exact whatever the number of threads, and no two threads with a stripe of their own
//! write the same cache line. Which stripe a thread uses changes no value anyone can read.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Stripes a thread can own; the cell after them is shared by every other thread.
const OWNED_STRIPES: usize = 8;

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

/// The stripes threads can own: how many were ever handed out, and those given back since.
struct StripePool {
    handed_out: usize,
    returned: Vec<usize>,
}

/// The process-wide pool of stripes.
static POOL: Mutex<StripePool> = Mutex::new(StripePool {
    handed_out: 0,
    returned: Vec::new(),
});

/// A stripe owned by the current thread until it exits (`None`: the pool was empty).
struct OwnedStripe(Option<usize>);

impl OwnedStripe {
    fn take() -> Self {
        let mut pool = POOL.lock();
        if let Some(stripe) = pool.returned.pop() {
            return OwnedStripe(Some(stripe));
        }
        if pool.handed_out < OWNED_STRIPES {
            pool.handed_out += 1;
            return OwnedStripe(Some(pool.handed_out - 1));
        }
        OwnedStripe(None)
    }
}

impl Drop for OwnedStripe {
    fn drop(&mut self) {
        if let Some(stripe) = self.0.take() {
            POOL.lock().returned.push(stripe);
        }
    }
}

thread_local! {
    static STRIPE: OwnedStripe = OwnedStripe::take();
}

/// The stripe this thread owns, if it has one.
fn owned_stripe() -> Option<usize> {
    STRIPE.try_with(|stripe| stripe.0).ok().flatten()
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

    #[test]
    fn a_stripe_is_owned_by_one_living_thread_at_a_time() {
        let owners: Mutex<Vec<usize>> = Mutex::new(Vec::new());
        let barrier = std::sync::Barrier::new(OWNED_STRIPES);
        std::thread::scope(|scope| {
            for _ in 0..OWNED_STRIPES {
                scope.spawn(|| {
                    if let Some(stripe) = owned_stripe() {
                        owners.lock().push(stripe);
                    }
                    // Every thread holds its stripe until all have taken theirs.
                    barrier.wait();
                });
            }
        });
        let mut owners = owners.into_inner();
        let taken = owners.len();
        owners.sort_unstable();
        owners.dedup();
        assert_eq!(owners.len(), taken, "two living threads shared a stripe");
    }
}
