//! The node as a [`CacheHandler`]: what clients and peers call, over any front door.

use std::sync::Arc;

use lcache_transport::{
    CacheHandler, Deadline, DeleteRequest, Fetched, GetRequest, InvalidateRequest, NodeStats,
    ServiceError, SetRequest, Transport,
};

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

impl<T: Transport> CacheHandler for NodeService<T> {
    async fn get(
        &self,
        req: GetRequest,
        deadline: Deadline,
    ) -> Result<Option<Fetched>, ServiceError> {
        Ok(self.runtime.get(req, deadline).await?)
    }

    async fn set(&self, req: SetRequest, deadline: Deadline) -> Result<(), ServiceError> {
        Ok(self.runtime.set(req, deadline).await?)
    }

    async fn delete(&self, req: DeleteRequest, deadline: Deadline) -> Result<bool, ServiceError> {
        Ok(self.runtime.delete(req, deadline).await?)
    }

    async fn invalidate(&self, req: InvalidateRequest) -> Result<(), ServiceError> {
        Ok(self.runtime.invalidate(req)?)
    }

    async fn stats(&self, group: Option<String>) -> Result<NodeStats, ServiceError> {
        Ok(self.runtime.stats(group.as_deref())?)
    }
}
