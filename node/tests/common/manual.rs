//! [`ManualDiscovery`]: a discovery the test drives, to change membership at chosen moments.

use lcache_core::member::{Member, MemberId};
use lcache_core::membership::MembershipEvent;
use lcache_discovery::{Discovery, DiscoveryError, Fence};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Reports `initial` (and the joining node) as a snapshot at revision 1 on join; afterwards,
/// the test sends events with [`ManualDiscovery::send`] and raises the fence with
/// [`ManualDiscovery::lose_registration`].
#[derive(Clone)]
pub struct ManualDiscovery {
    initial: Vec<Member>,
    joined: Arc<Mutex<Option<Joined>>>,
}

/// What the node handed over when it joined.
type Joined = (mpsc::Sender<MembershipEvent>, Fence);

impl ManualDiscovery {
    pub fn new(initial: Vec<Member>) -> Self {
        ManualDiscovery {
            initial,
            joined: Arc::new(Mutex::new(None)),
        }
    }

    fn joined(&self) -> Joined {
        self.joined
            .lock()
            .unwrap()
            .clone()
            .expect("the node joined")
    }

    /// Delivers `event` to the node (and returns once it is queued).
    pub async fn send(&self, event: MembershipEvent) {
        let (events, _) = self.joined();
        events.send(event).await.expect("the node listens");
    }

    /// `id` left, as of `revision`.
    pub async fn down(&self, revision: u64, id: &str) {
        self.send(MembershipEvent::Down {
            revision,
            id: MemberId::new(id),
        })
        .await;
    }

    /// `member` is live, as of `revision`.
    pub async fn up(&self, revision: u64, member: Member) {
        self.send(MembershipEvent::Up { revision, member }).await;
    }

    /// What a real discovery does when the node's lease was lost: raise the fence (before it
    /// would register the node again).
    pub fn lose_registration(&self) {
        let (_, fence) = self.joined();
        fence.raise();
    }
}

impl Discovery for ManualDiscovery {
    async fn join(
        &self,
        me: Member,
        events: mpsc::Sender<MembershipEvent>,
        fence: Fence,
    ) -> Result<(), DiscoveryError> {
        let mut members: Vec<Member> = self
            .initial
            .iter()
            .filter(|m| m.id != me.id)
            .cloned()
            .collect();
        members.push(me);
        events
            .send(MembershipEvent::Snapshot {
                revision: 1,
                members,
            })
            .await
            .map_err(|_| DiscoveryError::Closed)?;
        *self.joined.lock().unwrap() = Some((events, fence));
        Ok(())
    }

    async fn leave(&self) -> Result<(), DiscoveryError> {
        Ok(())
    }
}
