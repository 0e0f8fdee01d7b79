//! The node's background work: following membership (re-routing every group, fencing when this
//! node finds it was out of the membership) and sweeping expired entries.

use std::sync::{Arc, Weak};
use std::time::Duration;

use lcache_core::membership::{MembershipEvent, MembershipView, RingChange};
use lcache_core::router::Router;
use lcache_discovery::Fence;
use lcache_transport::Transport;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;

/// What the node knows of the membership: the view built from discovery's events and the
/// router derived from it.
#[derive(Debug)]
pub(crate) struct Membership {
    view: MembershipView,
    router: Router,
}

impl Membership {
    pub(crate) fn new(view: MembershipView, router: Router) -> Self {
        Membership { view, router }
    }

    /// Applies one event: re-routes every group if the live set changed, and fences first if
    /// the event shows this node had been out of the membership.
    pub(crate) fn apply<T: Transport>(&mut self, runtime: &Runtime<T>, event: MembershipEvent) {
        let losses = self.view.self_losses();
        let changes = self.view.apply(event);
        if self.view.self_losses() > losses {
            tracing::warn!(node = %runtime.me.id,
                "this node was out of the membership: dropping its data before serving again");
            fence(runtime);
        }
        if !changes.is_empty() {
            runtime
                .metrics
                .ring_changes
                .fetch_add(changes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.router.apply(&changes);
            reroute(runtime, &self.router, &changes);
        }
    }

    /// Applies every event already waiting in `events`, without waiting for more: at start, so
    /// the node routes by the snapshot its discovery sent while joining before it serves.
    pub(crate) fn catch_up<T: Transport>(
        &mut self,
        runtime: &Runtime<T>,
        events: &mut mpsc::Receiver<MembershipEvent>,
    ) {
        while let Ok(event) = events.try_recv() {
            self.apply(runtime, event);
        }
    }
}

/// Applies membership events until cancelled.
///
/// When the discovery stream ends the node keeps its last view (it keeps serving).
pub(crate) async fn follow<T: Transport>(
    runtime: Arc<Runtime<T>>,
    mut membership: Membership,
    mut events: mpsc::Receiver<MembershipEvent>,
    cancel: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            event = events.recv() => event,
        };
        let Some(event) = event else {
            tracing::debug!(node = %runtime.me.id, "membership stream ended; keeping the last view");
            cancel.cancelled().await;
            return;
        };
        membership.apply(&runtime, event);
    }
}

/// Routes every group by `router` from now on, and drops connections to departed peers.
fn reroute<T: Transport>(runtime: &Runtime<T>, router: &Router, changes: &[RingChange]) {
    let router = Arc::new(router.clone());
    *runtime.router.write() = router.clone();
    for change in changes {
        match change {
            RingChange::Added(member) => {
                tracing::info!(node = %runtime.me.id, peer = %member.id, addr = %member.addr, "member joined");
            }
            RingChange::Updated(member) => {
                tracing::info!(node = %runtime.me.id, peer = %member.id, addr = %member.addr, "member changed");
                runtime.transport.forget(&member.id);
            }
            RingChange::Removed(id) => {
                tracing::info!(node = %runtime.me.id, peer = %id, "member left");
                runtime.transport.forget(id);
            }
        }
    }
    for group in runtime.groups.values() {
        let dropped = group.core.ring_changed(&router);
        if dropped > 0 {
            tracing::debug!(node = %runtime.me.id, group = %group.core.name(), dropped,
                "handed off keys after a ring change");
        }
    }
}

/// Drops everything every group holds: this node was out of the membership.
fn fence<T>(runtime: &Runtime<T>) {
    for group in runtime.groups.values() {
        group.core.fence();
    }
}

/// The fence a discovery raises when it finds this node's registration lost, before it
/// registers again (see [`Fence`]). Holds the runtime weakly, so it never keeps a stopped node
/// alive.
pub(crate) fn fence_for<T: Transport>(runtime: &Arc<Runtime<T>>) -> Fence {
    let runtime: Weak<Runtime<T>> = Arc::downgrade(runtime);
    Fence::new(move || {
        if let Some(runtime) = runtime.upgrade() {
            tracing::warn!(node = %runtime.me.id,
                "registration lost: dropping this node's data before it registers again");
            fence(&runtime);
        }
    })
}

/// Reclaims expired entries every `interval`, at most `batch` per store and shard per round.
pub(crate) async fn sweep_expired<T: Transport>(
    runtime: Arc<Runtime<T>>,
    interval: Duration,
    batch: usize,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = runtime.clock.now();
        for group in runtime.groups.values() {
            group.core.sweep(now, batch);
        }
    }
}
