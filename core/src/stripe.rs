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
pub(crate) fn owned_stripe() -> Option<usize> {
    STRIPE.try_with(|stripe| stripe.0).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

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
