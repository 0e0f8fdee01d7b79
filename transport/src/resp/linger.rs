//! Whether a connection that has just answered keeps its worker thread awake for a few turns
//! before waiting for its next request.
//!
//! A worker with nothing left to run blocks in the kernel, and the next request that arrives
//! must wake it: on a virtual machine an inter-processor interrupt that the *client* pays for,
//! and a round trip that waits for the wake-up. When several clients each send one request at a
//! time this happens for every few requests. If the connection instead yields to the runtime a
//! few times, the worker polls its sockets without blocking and finds the next requests already
//! there. That only pays while other connections are being answered too: a lone client's next
//! request is a whole round trip away, so a connection lingers only if others were answered
//! since its own previous answer, and a lone connection never does (it costs nothing extra).
//! The price is CPU: each turn the worker has nothing else to do costs a non-blocking poll.
//!
//! Only a runtime with one worker thread lingers. With several, an idle worker waits for the
//! sockets blocked in the kernel whatever the others do, so a lingering worker saves no wake-up
//! and only takes a CPU from whatever else runs there (measured: with two workers beside
//! `redis-benchmark` on two CPUs, lingering cost up to a quarter of the throughput).

/// The turns a connection may linger on a runtime with `workers` worker threads, when
/// `configured` are allowed: none unless there is one worker.
pub(crate) fn turns_for(configured: u32, workers: usize) -> u32 {
    if workers == 1 {
        configured
    } else {
        0
    }
}

/// Decides, from the front door's count of answered requests, when a connection lingers.
#[derive(Debug, Clone)]
pub(crate) struct Linger {
    /// Most turns taken after one answer (0: never linger).
    max_turns: u32,
    /// The count of answered requests just after this connection's previous answer.
    after_previous_answer: u64,
    /// Turns still due after the current answer.
    turns_left: u32,
}

impl Linger {
    /// A connection that may linger up to `max_turns` turns, opened when the front door had
    /// answered `answered` requests.
    pub(crate) fn new(max_turns: u32, answered: u64) -> Self {
        Linger {
            max_turns,
            after_previous_answer: answered,
            turns_left: 0,
        }
    }

    /// This connection has answered `own` requests, and the front door `answered` in all (its
    /// own included): it lingers if other connections answered since its previous answer.
    pub(crate) fn answered(&mut self, own: u64, answered: u64) {
        let others = answered.wrapping_sub(own) != self.after_previous_answer;
        self.after_previous_answer = answered;
        self.turns_left = if others { self.max_turns } else { 0 };
    }

    /// Whether another turn is due before the connection waits.
    pub(crate) fn lingering(&self) -> bool {
        self.turns_left > 0
    }

    /// One turn was taken.
    pub(crate) fn turn_taken(&mut self) {
        self.turns_left = self.turns_left.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Turns taken after an answer.
    fn turns(linger: &mut Linger) -> u32 {
        let mut taken = 0;
        while linger.lingering() {
            taken += 1;
            linger.turn_taken();
        }
        taken
    }

    #[test]
    fn a_lone_connection_never_lingers() {
        let mut linger = Linger::new(8, 100);
        let mut answered = 100;
        for batch in 1..=5u64 {
            // Only this connection answers: the count moves by its own answers alone.
            answered += batch;
            linger.answered(batch, answered);
            assert_eq!(turns(&mut linger), 0, "batch {batch}");
        }
    }

    #[test]
    fn lingers_max_turns_when_others_were_answered_since_its_previous_answer() {
        let mut linger = Linger::new(8, 0);
        // Ten requests of other connections were answered before this one's first answer.
        linger.answered(1, 11);
        assert_eq!(turns(&mut linger), 8);
        // Two more elsewhere, then this one answers three.
        linger.answered(3, 16);
        assert_eq!(turns(&mut linger), 8);
        // Then only this one.
        linger.answered(1, 17);
        assert_eq!(turns(&mut linger), 0);
    }

    #[test]
    fn only_a_single_worker_runtime_lingers() {
        assert_eq!(turns_for(8, 1), 8);
        assert_eq!(turns_for(8, 2), 0);
        assert_eq!(turns_for(8, 16), 0);
        assert_eq!(turns_for(0, 1), 0);
    }

    #[test]
    fn zero_max_turns_never_lingers() {
        let mut linger = Linger::new(0, 0);
        linger.answered(1, 1_000);
        assert!(!linger.lingering());
    }

    #[test]
    fn the_count_may_wrap() {
        let mut linger = Linger::new(3, u64::MAX - 1);
        linger.answered(2, 0);
        assert!(
            !linger.lingering(),
            "u64::MAX - 1 + 2 wraps to 0: only its own"
        );
        linger.answered(1, 5);
        assert_eq!(turns(&mut linger), 3);
    }
}
