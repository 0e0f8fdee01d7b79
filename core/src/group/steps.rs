//! What the group state machine tells its runtime to do, and what the runtime reports back.
//!
//! The runtime calls an input ([`Group::get`](super::Group::get), [`Group::set`](super::Group::set),
//! …) and carries out the step it gets: reply, wait, start a [`Work`], send a write to the owner,
//! invalidate peers. When a [`Work`] ends it reports the outcome ([`Group::loaded`](super::Group::loaded),
//! [`Group::fetched`](super::Group::fetched)) and delivers the [`Completion`] it gets back. Nothing
//! here waits or performs IO.

use std::time::Duration;

use bytes::Bytes;

use super::flights::FlightId;
use super::load_slots::LoadPermit;
use crate::member::{Member, MemberId};
use crate::store::StoreError;

/// A value as it leaves a node: the bytes and what is left of their lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The value.
    pub value: Bytes,
    /// Remaining lifetime on the node that answered; `None` when the value does not expire.
    /// A receiver must not keep a copy longer than this.
    pub ttl: Option<Duration>,
}

/// What one get (or one flight) answers: a value, a miss (`Ok(None)`), or the runtime's error `E`.
pub type Reply<E> = Result<Option<Fetched>, E>;

/// Why the state machine itself refused a get; the runtime turns it into its error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The key already has the most callers waiting that a flight may hold.
    #[error("{max} callers already wait on this key")]
    WaitersFull {
        /// The bound per key.
        max: usize,
    },
    /// The node already runs as many loads as it may.
    #[error("{cap} loads already run on this node")]
    LoadsFull {
        /// The node's cap on loads.
        cap: usize,
    },
}

/// Names one flight, to report its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlightRef {
    pub(super) key: Bytes,
    pub(super) id: FlightId,
}

impl FlightRef {
    /// The key the flight is for.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// The flight's id (for logs).
    pub fn id(&self) -> FlightId {
        self.id
    }
}

/// Work the runtime must start now, then report with the matching input.
#[derive(Debug)]
pub enum Work {
    /// Run the group's loader for the flight's key, holding `permit` until the loader call has
    /// really ended (also past a load timeout or a panic); then call
    /// [`Group::loaded`](super::Group::loaded).
    Load {
        /// The flight.
        flight: FlightRef,
        /// The node-wide load slot this load occupies.
        permit: LoadPermit,
    },
    /// Ask `owner` for the flight's key (a forwarded get); then call
    /// [`Group::fetched`](super::Group::fetched).
    Fetch {
        /// The flight.
        flight: FlightRef,
        /// The key's owner.
        owner: Member,
    },
}

/// What to do with a get.
#[derive(Debug)]
pub enum GetStep<E> {
    /// Answer now; the waiter was not used.
    Reply(Reply<E>),
    /// The waiter was queued on a flight; wait on it (each caller with its own deadline).
    Wait,
    /// The waiter was queued on a new flight whose work must start now.
    Start(Work),
}

/// One reply for a batch of waiters.
#[derive(Debug)]
pub struct Delivery<W, E> {
    /// The waiters to answer.
    pub waiters: Vec<W>,
    /// What they all get.
    pub reply: Reply<E>,
}

/// What a finished work leads to: replies to deliver, and maybe more work to start (a load that
/// was queued behind the finished one, or a local load when the owner was unreachable).
#[derive(Debug)]
pub struct Completion<W, E> {
    /// Waiters to answer, each batch with its reply.
    pub deliveries: Vec<Delivery<W, E>>,
    /// Work to start now.
    pub start: Option<Work>,
}

impl<W, E> Default for Completion<W, E> {
    fn default() -> Self {
        Completion {
            deliveries: Vec::new(),
            start: None,
        }
    }
}

/// How a load ended, as the runtime observed it.
#[derive(Debug)]
pub enum LoadOutcome<E> {
    /// The loader produced a value; `ttl` `None` means the group's default lifetime.
    Value(Fetched),
    /// The loader says the key does not exist.
    Missing,
    /// The loader failed, timed out or returned an unusable value.
    Failed(E),
    /// The loader panicked.
    Panicked(E),
}

/// How a fetch from the owner ended, as the runtime observed it.
#[derive(Debug)]
pub enum FetchOutcome<E> {
    /// The owner answered: a value (its remaining lifetime as the owner measured it), a miss, or
    /// an error of its own (its loader failed, it is overloaded, too slow). Nothing is loaded
    /// here then: the error goes back to the callers.
    Answered(Reply<E>),
    /// The owner could not be reached (no connection, connection lost before an answer, owner
    /// not serving): the callers' flight turns into a local load. The error is what the callers
    /// get if that load cannot happen.
    Unreachable(E),
}

/// What to do with a set or delete. `W` is what the write handed over and gets back when it was
/// not applied here, to send on: a set's key and value ([`UnappliedSet`]), nothing for a delete
/// (which only lends its key). A set thus moves its key and value into the store instead of
/// copying them (a first copy of a freshly received value allocates).
#[derive(Debug)]
pub enum WriteStep<W = ()> {
    /// Applied here, the key's owner. Send an invalidation of the key to each of `peers` (every
    /// other live member) and acknowledge when those calls have completed or timed out.
    Applied {
        /// For a delete: whether the key was held; for a set: whether it replaced a value.
        existed: bool,
        /// Members to invalidate.
        peers: Vec<Member>,
        /// The key to name in the invalidations: `Some` whenever `peers` is not empty.
        key: Option<Bytes>,
    },
    /// Send the write to the key's owner (marked as forwarded). Whatever its outcome, then call
    /// [`Group::forget`](super::Group::forget) for the key and relay the owner's answer: a write
    /// is acknowledged only once an owner applied it.
    Forward {
        /// The key's owner.
        owner: Member,
        /// What the write handed over, to send to the owner.
        write: W,
    },
    /// A forwarded write for a key this node does not own: refuse it (retryable), never apply it.
    NotOwner {
        /// Who owns the key in this node's view.
        owner: MemberId,
    },
    /// The value can never fit the store (larger than a shard's budget).
    TooLarge(StoreError),
}

impl<W> WriteStep<W> {
    /// The same step with `f` applied to what a forward hands back.
    pub fn map_write<V>(self, f: impl FnOnce(W) -> V) -> WriteStep<V> {
        match self {
            WriteStep::Applied {
                existed,
                peers,
                key,
            } => WriteStep::Applied {
                existed,
                peers,
                key,
            },
            WriteStep::Forward { owner, write } => WriteStep::Forward {
                owner,
                write: f(write),
            },
            WriteStep::NotOwner { owner } => WriteStep::NotOwner { owner },
            WriteStep::TooLarge(err) => WriteStep::TooLarge(err),
        }
    }
}

/// A set's key and value, handed back because the set is not applied here (to be forwarded).
#[derive(Debug)]
pub struct UnappliedSet {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
}
