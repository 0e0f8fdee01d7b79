//! The get path, carried out: ask the group, wait with the caller's own deadline, and run the
//! loads and fetches the group starts on tasks of their own.
//!
//! A load or fetch outlives the callers that caused it: it runs on its own task until the loader
//! returns (or its load timeout) or the owner answers (or the forward timeout), holding its load
//! slot all along. Each caller stops waiting at its own deadline; a later caller with a longer
//! deadline is never failed by an earlier one's.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use lcache_core::group::{
    Completion, FetchOutcome, Fetched, FlightRef, GetStep, LoadOutcome, LoadPermit, Reply, Work,
};
use lcache_core::member::Member;
use lcache_core::owned::owned;
use lcache_core::Timestamp;
use lcache_transport::{Deadline, GetRequest, Transport};
use tokio::sync::oneshot;

use crate::buggify::Point;
use crate::clock::Clock;
use crate::error::RequestError;
use crate::runtime::{GroupState, Runtime, Waiter};

impl<T: Transport> Runtime<T> {
    /// Serves a get of `key` in `group` (inputs already checked, request admitted).
    pub(crate) async fn serve_get(
        self: &Arc<Self>,
        group: &Arc<GroupState>,
        key: Bytes,
        forwarded: bool,
        now: Timestamp,
        deadline: Deadline,
    ) -> Reply<RequestError> {
        let mut receiver = None;
        let step = group.core.get(&key, forwarded, now, || {
            let (waiter, rx) = oneshot::channel();
            receiver = Some(rx);
            waiter
        });
        match step {
            GetStep::Reply(reply) => return reply,
            GetStep::Wait => {}
            GetStep::Start(work) => self.start(group, work),
        }
        let Some(receiver) = receiver else {
            return Err(RequestError::Internal(
                "the group queued a caller without its waiter".into(),
            ));
        };
        match tokio::time::timeout_at(deadline.instant(), receiver).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(RequestError::Internal(
                "the load or fetch ended without an answer".into(),
            )),
            Err(_) => Err(RequestError::DeadlineExceeded(deadline.remaining())),
        }
    }

    /// Runs `work` on a task of its own, then whatever work its completion starts.
    pub(crate) fn start(self: &Arc<Self>, group: &Arc<GroupState>, work: Work) {
        let runtime = self.clone();
        let group = group.clone();
        let stop = self.stop_works.clone();
        self.works.spawn(async move {
            let mut next = Some(work);
            while let Some(work) = next.take() {
                let mut unfinished = Unfinished::new(&group, &work, runtime.clock);
                let completion = tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    completion = runtime.perform(&group, work) => completion,
                };
                unfinished.finished();
                next = deliver(completion);
            }
        });
    }

    /// Carries out one work and reports its outcome to the group.
    async fn perform(&self, group: &GroupState, work: Work) -> Completion<Waiter, RequestError> {
        match work {
            Work::Load { flight, permit } => {
                let outcome = self.load(group, &flight, permit).await;
                let returned = self.clock.now();
                let now = self.after_stall(Point::BeforeKeepLoad, returned).await;
                let gave_up = |waiter: &Waiter| waiter.is_closed();
                group
                    .core
                    .loaded_at(&flight, outcome, returned, now, gave_up)
            }
            Work::Fetch { flight, owner } => {
                self.stall(Point::BeforeFetch).await;
                let outcome = self.fetch(group, &flight, &owner).await;
                self.stall(Point::BeforeKeepFetch).await;
                let gave_up = |waiter: &Waiter| waiter.is_closed();
                group
                    .core
                    .fetched_for(&flight, outcome, self.clock.now(), gave_up)
            }
        }
    }

    /// Runs the group's loader for the flight's key, bounded by the load timeout, with panics
    /// caught. The permit is held until the loader call has ended (or was dropped at the timeout).
    async fn load(
        &self,
        group: &GroupState,
        flight: &FlightRef,
        permit: LoadPermit,
    ) -> LoadOutcome<RequestError> {
        let _slot = permit;
        let Some(loader) = &group.loader else {
            return LoadOutcome::Missing;
        };
        let call = AssertUnwindSafe(loader.load(flight.key())).catch_unwind();
        let failure = match tokio::time::timeout(self.timeouts.load, call).await {
            Err(_) => format!("loader timed out after {:?}", self.timeouts.load),
            Ok(Err(_panic)) => {
                tracing::error!(group = %group.core.name(), "loader panicked");
                return LoadOutcome::Panicked(RequestError::loader_panicked());
            }
            Ok(Ok(Err(err))) => err.0,
            Ok(Ok(Ok(None))) => return LoadOutcome::Missing,
            Ok(Ok(Ok(Some(loaded)))) => match self.limits.check_value(&loaded.value) {
                Ok(()) => {
                    return LoadOutcome::Value(Fetched {
                        // A loader may hand out a slice of a larger buffer (an HTTP body, a
                        // database page): copy it, so a kept value owns exactly its bytes.
                        value: owned(&loaded.value),
                        ttl: loaded.ttl,
                    });
                }
                Err(err) => format!("loader returned an unusable value: {err}"),
            },
        };
        tracing::warn!(group = %group.core.name(), error = %failure, "load failed");
        LoadOutcome::Failed(RequestError::Load(failure))
    }

    /// Asks the owner for the flight's key, waiting up to the forward timeout.
    async fn fetch(
        &self,
        group: &GroupState,
        flight: &FlightRef,
        owner: &Member,
    ) -> FetchOutcome<RequestError> {
        let request = GetRequest {
            group: group.core.name().to_owned(),
            key: flight.key().clone(),
            forwarded: true,
        };
        let deadline = Deadline::after(self.timeouts.forward());
        match self.transport.get(owner, request, deadline).await {
            Ok(found) => FetchOutcome::Answered(Ok(found)),
            Err(err) if err.is_unreachable() => {
                tracing::warn!(group = %group.core.name(), owner = %owner.id, error = %err,
                    "owner unreachable, loading locally");
                FetchOutcome::Unreachable(RequestError::from_transport(owner.id.as_str(), &err))
            }
            Err(err) => {
                FetchOutcome::Answered(Err(RequestError::from_transport(owner.id.as_str(), &err)))
            }
        }
    }
}

/// Answers every waiter of `completion`; returns the work it starts, if any.
fn deliver(completion: Completion<Waiter, RequestError>) -> Option<Work> {
    for delivery in completion.deliveries {
        for waiter in delivery.waiters {
            // A waiter that gave up has dropped its receiver; nothing to do for it.
            let _ = waiter.send(delivery.reply.clone());
        }
    }
    completion.start
}

/// Reports a work that never finished (its task was stopped) as failed, so its flight does not
/// stay in the group for good and its waiters are answered.
struct Unfinished<'a> {
    group: &'a GroupState,
    clock: Clock,
    work: Option<(FlightRef, bool)>,
}

impl<'a> Unfinished<'a> {
    fn new(group: &'a GroupState, work: &Work, clock: Clock) -> Self {
        Unfinished {
            group,
            clock,
            work: Some(describe(work)),
        }
    }

    fn finished(&mut self) {
        self.work = None;
    }
}

/// The flight of `work`, and whether it is a load.
fn describe(work: &Work) -> (FlightRef, bool) {
    match work {
        Work::Load { flight, .. } => (flight.clone(), true),
        Work::Fetch { flight, .. } => (flight.clone(), false),
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        let mut next = self.work.take();
        while let Some((flight, is_load)) = next.take() {
            let abandoned = RequestError::ShuttingDown;
            let now = self.clock.now();
            let completion = if is_load {
                self.group
                    .core
                    .loaded(&flight, LoadOutcome::Failed(abandoned), now)
            } else {
                self.group
                    .core
                    .fetched(&flight, FetchOutcome::Answered(Err(abandoned)), now)
            };
            // The node is stopping: work the completion would start fails the same way.
            next = deliver(completion).as_ref().map(describe);
        }
    }
}
