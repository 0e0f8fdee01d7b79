//! The write path, carried out: the group decides where a set or delete is applied; the owner
//! applies it, invalidates every other live member and only then acknowledges; any other node
//! forwards it to the owner and relays the owner's answer.
//!
//! **Acknowledgement.** A write is acknowledged after its invalidations were delivered or timed
//! out (each within the peer timeout and the request's deadline). So without faults, a write
//! acknowledged at `t` is what every node returns for a get that starts after `t`; under faults an
//! invalidation can be lost, and a copy it missed still expires within the hot lifetime.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use lcache_core::counters::bump;
use lcache_core::group::{UnappliedSet, WriteStep};
use lcache_core::member::Member;
use lcache_core::Timestamp;
use lcache_transport::{
    Deadline, DeleteRequest, InvalidateRequest, SetRequest, Transport, TransportError,
};

use crate::buggify::Point;
use crate::error::RequestError;
use crate::runtime::{GroupState, Runtime};

/// A write on its way: what to apply locally, or to send to the owner.
enum Write {
    Set(SetRequest),
    Delete(DeleteRequest),
}

impl Write {
    fn key(&self) -> &Bytes {
        match self {
            Write::Set(r) => &r.key,
            Write::Delete(r) => &r.key,
        }
    }
}

impl<T: Transport> Runtime<T> {
    /// Serves a set (inputs already checked, request admitted).
    pub(crate) async fn serve_set(
        self: &Arc<Self>,
        group: &GroupState,
        request: SetRequest,
        now: Timestamp,
        deadline: Deadline,
    ) -> Result<(), RequestError> {
        let now = self.after_stall(Point::BeforeApply, now).await;
        let SetRequest {
            group: name,
            key,
            value,
            ttl,
            forwarded,
        } = request;
        // The key and value move into the store; a forward gets them back.
        let step = group.core.set(key, value, ttl, forwarded, now).map_write(
            |UnappliedSet { key, value }| {
                Write::Set(SetRequest {
                    group: name,
                    key,
                    value,
                    ttl,
                    forwarded,
                })
            },
        );
        match step {
            WriteStep::Applied {
                peers, key: None, ..
            } if peers.is_empty() => {
                self.stall(Point::BeforeInvalidate).await;
                Ok(())
            }
            step => Box::pin(self.carry_out(group, step, deadline))
                .await
                .map(drop),
        }
    }

    /// Serves a delete; true if the owner held the key.
    pub(crate) async fn serve_delete(
        self: &Arc<Self>,
        group: &GroupState,
        request: DeleteRequest,
        now: Timestamp,
        deadline: Deadline,
    ) -> Result<bool, RequestError> {
        let now = self.after_stall(Point::BeforeApply, now).await;
        let step = group
            .core
            .delete(&request.key, request.forwarded, now)
            .map_write(|()| Write::Delete(request));
        match step {
            WriteStep::Applied {
                existed,
                peers,
                key: None,
            } if peers.is_empty() => {
                self.stall(Point::BeforeInvalidate).await;
                Ok(existed)
            }
            step => Box::pin(self.carry_out(group, step, deadline)).await,
        }
    }

    /// Carries out what the group decided about a write when it needs more than the stall
    /// before invalidations (peers to invalidate, an owner to forward to, an error). Callers box
    /// it and finish the common write (applied here, no peer) themselves: an async function
    /// holds its arguments (twice, as rustc lays them out) and the largest future it awaits,
    /// every caller up the chain holds it again, and each moves it once; with this inline, a
    /// pipelined RESP `SET` spent about as much time copying futures as storing its value.
    async fn carry_out(
        &self,
        group: &GroupState,
        step: WriteStep<Write>,
        deadline: Deadline,
    ) -> Result<bool, RequestError> {
        match step {
            WriteStep::Applied {
                existed,
                peers,
                key,
            } => {
                debug_assert!(key.is_some() || peers.is_empty(), "peers without the key");
                self.stall(Point::BeforeInvalidate).await;
                if let Some(key) = key {
                    self.invalidate_peers(group, &key, &peers, deadline).await;
                }
                Ok(existed)
            }
            WriteStep::Forward { owner, write } => {
                self.forward(group, write, &owner, deadline).await
            }
            WriteStep::NotOwner { owner } => Err(RequestError::NotOwner {
                owner: owner.to_string(),
            }),
            WriteStep::TooLarge(err) => {
                bump(&group.core.runtime_counters().invalid);
                Err(RequestError::from_store(group.core.name(), err))
            }
        }
    }

    /// Sends `write` to the key's owner, then drops this node's copies of the key whatever the
    /// answer (the owner may have applied it even if the answer was lost).
    async fn forward(
        &self,
        group: &GroupState,
        write: Write,
        owner: &Member,
        deadline: Deadline,
    ) -> Result<bool, RequestError> {
        bump(&group.core.runtime_counters().forwarded_writes);
        let key = write.key().clone();
        // The owner needs time for its own invalidations before it acknowledges.
        let deadline = deadline.within(self.timeouts.peer.saturating_mul(2));
        let outcome: Result<bool, TransportError> = match write {
            Write::Set(request) => {
                let request = SetRequest {
                    forwarded: true,
                    ..request
                };
                self.transport
                    .set(owner, request, deadline)
                    .await
                    .map(|()| true)
            }
            Write::Delete(request) => {
                let request = DeleteRequest {
                    forwarded: true,
                    ..request
                };
                self.transport.delete(owner, request, deadline).await
            }
        };
        self.stall(Point::BeforeForget).await;
        group.core.forget(&key);
        outcome.map_err(|err| RequestError::from_transport(owner.id.as_str(), &err))
    }

    /// Tells every peer to drop its copies of `key`, all at once, each within the peer timeout
    /// and `deadline`; returns when all calls completed or timed out.
    async fn invalidate_peers(
        &self,
        group: &GroupState,
        key: &Bytes,
        peers: &[Member],
        deadline: Deadline,
    ) {
        if peers.is_empty() {
            // Nothing to send: no clock read for a deadline nobody uses.
            return;
        }
        let counters = group.core.runtime_counters();
        let deadline = deadline.within(self.timeouts.peer);
        let calls = peers.iter().map(|peer| async move {
            bump(&counters.invalidations_sent);
            if self.drops(Point::DropInvalidation) {
                bump(&counters.invalidation_failures);
                return;
            }
            let request = InvalidateRequest {
                group: group.core.name().to_owned(),
                key: key.clone(),
            };
            if let Err(err) = self.transport.invalidate(peer, request, deadline).await {
                bump(&counters.invalidation_failures);
                tracing::debug!(group = %group.core.name(), peer = %peer.id, error = %err,
                    "invalidation not delivered; the peer's copy expires with its lifetime");
            }
        });
        join_all(calls).await;
    }
}
