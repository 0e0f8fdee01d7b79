//! The node as a [`CacheHandler`]: what clients and peers call, over any front door.

use std::sync::Arc;

use lcache_transport::{
    CacheHandler, Deadline, DeleteRequest, Fetched, GetRequest, InvalidateRequest, NodeStats,
    ServiceError, SetRequest, Transport,
};

use std::time::Duration;

use lcache_transport::observe::{Outcome, Rpc};
use tokio::time::Instant;

use crate::runtime::Runtime;

/// Serves the `lcache.v1.Cache` API on behalf of one node.
#[derive(Debug)]
pub struct NodeService<T> {
    runtime: Arc<Runtime<T>>,
}

impl<T> Clone for NodeService<T> {
    fn clone(&self) -> Self {
        NodeService {
            runtime: self.runtime.clone(),
        }
    }
}

impl<T> NodeService<T> {
    pub(crate) fn new(runtime: Arc<Runtime<T>>) -> Self {
        NodeService { runtime }
    }
}

/// The front doors time each request and report it through [`CacheHandler::observe`] into the
/// node's metrics (by RPC and outcome).
impl<T: Transport> CacheHandler for NodeService<T> {
    async fn get(
        &self,
        req: GetRequest,
        deadline: Deadline,
        arrived: Instant,
    ) -> Result<Option<Fetched>, ServiceError> {
        self.runtime
            .get(req, deadline, arrived)
            .await
            .map_err(Into::into)
    }

    async fn set(
        &self,
        req: SetRequest,
        deadline: Deadline,
        arrived: Instant,
    ) -> Result<(), ServiceError> {
        self.runtime
            .set(req, deadline, arrived)
            .await
            .map_err(Into::into)
    }

    async fn delete(
        &self,
        req: DeleteRequest,
        deadline: Deadline,
        arrived: Instant,
    ) -> Result<bool, ServiceError> {
        self.runtime
            .delete(req, deadline, arrived)
            .await
            .map_err(Into::into)
    }

    async fn invalidate(&self, req: InvalidateRequest) -> Result<(), ServiceError> {
        self.runtime.invalidate(req).map_err(Into::into)
    }

    async fn stats(&self, group: Option<String>) -> Result<NodeStats, ServiceError> {
        self.runtime.stats(group.as_deref()).map_err(Into::into)
    }

    fn observe(&self, rpc: Rpc, outcome: Outcome, elapsed: Duration, count: u64) {
        self.runtime
            .metrics
            .requests(rpc, outcome)
            .observe_many(elapsed, count);
    }
}
