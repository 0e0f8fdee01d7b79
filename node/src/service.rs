//! The node as a [`CacheHandler`]: what clients and peers call, over any front door.

use std::sync::Arc;

use lcache_transport::{
    CacheHandler, Deadline, DeleteRequest, Fetched, GetRequest, InvalidateRequest, NodeStats,
    ServiceError, SetRequest, Transport,
};

use crate::metrics::record::{Outcome, Rpc};
use crate::runtime::Runtime;
use tokio::time::Instant;

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

/// Each request is timed into the node's metrics (by RPC and outcome; a request dropped before
/// it answered counts as cancelled).
impl<T: Transport> CacheHandler for NodeService<T> {
    async fn get(
        &self,
        req: GetRequest,
        deadline: Deadline,
        arrived: Instant,
    ) -> Result<Option<Fetched>, ServiceError> {
        let timer = self.runtime.metrics.time_from(Rpc::Get, arrived);
        let result = self
            .runtime
            .get(req, deadline, timer.started())
            .await
            .map_err(Into::into);
        timer.finish(Outcome::of(&result, Option::is_none));
        result
    }

    async fn set(
        &self,
        req: SetRequest,
        deadline: Deadline,
        arrived: Instant,
    ) -> Result<(), ServiceError> {
        let timer = self.runtime.metrics.time_from(Rpc::Set, arrived);
        let result = self
            .runtime
            .set(req, deadline, timer.started())
            .await
            .map_err(Into::into);
        timer.finish(Outcome::of(&result, |_| false));
        result
    }

    async fn delete(
        &self,
        req: DeleteRequest,
        deadline: Deadline,
        arrived: Instant,
    ) -> Result<bool, ServiceError> {
        let timer = self.runtime.metrics.time_from(Rpc::Delete, arrived);
        let result = self
            .runtime
            .delete(req, deadline, timer.started())
            .await
            .map_err(Into::into);
        timer.finish(Outcome::of(&result, |_| false));
        result
    }

    async fn invalidate(&self, req: InvalidateRequest) -> Result<(), ServiceError> {
        let timer = self.runtime.metrics.time(Rpc::Invalidate);
        let result = self.runtime.invalidate(req).map_err(Into::into);
        timer.finish(Outcome::of(&result, |_| false));
        result
    }

    async fn stats(&self, group: Option<String>) -> Result<NodeStats, ServiceError> {
        let timer = self.runtime.metrics.time(Rpc::Stats);
        let result = self.runtime.stats(group.as_deref()).map_err(Into::into);
        timer.finish(Outcome::of(&result, |_| false));
        result
    }
}
