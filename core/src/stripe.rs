//! Stripes of per-thread state: a thread owns one stripe for as long as it lives, so it is the
//! only writer of that stripe's cells and may update them with plain loads and stores instead of
//! atomic read-modify-writes (on x86 a full barrier, which waits for every outstanding cache
//! miss of the code before it).
//!
//! A thread takes a stripe from a process-wide pool the first time it asks and gives it back
//! when it exits. Threads beyond [`OWNED_STRIPES`] at once, and a thread whose stripe was
//! already given back (while its other thread-locals are destroyed), have none: their updates go
//! to a shared cell with atomic operations. Which stripe a thread owns changes no value anyone
//! can read, only which cache line it writes.

use parking_lot::Mutex;

/// Stripes threads can own at once.
pub(crate) const OWNED_STRIPES: usize = 8;

/// The stripes threads can own: how many were ever handed out, and those given back since.
#[derive(Debug)]
struct StripePool {
    capacity: usize,
    handed_out: usize,
    returned: Vec<usize>,
}

impl StripePool {
    /// A pool of stripes `0..capacity`, none handed out.
    const fn new(capacity: usize) -> Self {
        StripePool {
            capacity,
            handed_out: 0,
            returned: Vec::new(),
        }
    }

    /// A stripe no one owns, if there is one: one given back, else the next never handed out.
    fn take(&mut self) -> Option<usize> {
        if let Some(stripe) = self.returned.pop() {
            return Some(stripe);
        }
        if self.handed_out < self.capacity {
            self.handed_out += 1;
            return Some(self.handed_out - 1);
        }
        None
    }

    /// `stripe`, taken from this pool, is free again.
    fn give_back(&mut self, stripe: usize) {
        debug_assert!(stripe < self.handed_out && !self.returned.contains(&stripe));
        self.returned.push(stripe);
    }
}

/// The process-wide pool of stripes.
static POOL: Mutex<StripePool> = Mutex::new(StripePool::new(OWNED_STRIPES));

/// A stripe owned by the current thread until it exits (`None`: the pool was empty).
struct OwnedStripe(Option<usize>);

impl Drop for OwnedStripe {
    fn drop(&mut self) {
        if let Some(stripe) = self.0.take() {
            POOL.lock().give_back(stripe);
        }
    }
}

thread_local! {
    static STRIPE: OwnedStripe = OwnedStripe(POOL.lock().take());
}

/// The stripe this thread owns, if it has one.
pub(crate) fn owned_stripe() -> Option<usize> {
    STRIPE.try_with(|stripe| stripe.0).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_hands_out_each_stripe_once_until_it_is_given_back() {
        let mut pool = StripePool::new(3);
        let taken: Vec<_> = (0..3).map(|_| pool.take()).collect();
        assert_eq!(taken, [Some(0), Some(1), Some(2)]);
        assert_eq!(pool.take(), None, "every stripe is owned");
        pool.give_back(1);
        assert_eq!(
            pool.take(),
            Some(1),
            "a stripe given back is handed out again"
        );
        assert_eq!(pool.take(), None);
        pool.give_back(2);
        pool.give_back(0);
        let mut again = [pool.take(), pool.take()];
        again.sort_unstable();
        assert_eq!(again, [Some(0), Some(2)]);
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn threads_that_come_and_go_each_get_a_stripe() {
        // More threads one after another than there are stripes: each gets one only if those
        // before gave theirs back when they exited. Other tests' threads may hold every stripe
        // for a moment, so each asks again from a fresh thread, a bounded number of times.
        for _ in 0..3 * OWNED_STRIPES {
            let got = (0..1_000).any(|_| {
                std::thread::spawn(owned_stripe)
                    .join()
                    .ok()
                    .flatten()
                    .is_some()
            });
            assert!(
                got,
                "no stripe for a new thread: stripes are not given back"
            );
        }
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
        assert!(owners.iter().all(|&stripe| stripe < OWNED_STRIPES));
    }
}
