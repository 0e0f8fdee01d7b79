//! The node as a gRPC handler: what clients and peers call.

use crate::node::Shared;
use lcache_transport::{
    CacheHandler, DeleteRequest, Fetched, GetRequest, NodeStats, ServiceError, SetRequest,
    Transport,
};
use std::sync::Arc;
use std::time::Duration;

/// Serves the `lcache.v1.Cache` API on behalf of one node.
#[derive(Debug)]
pub struct NodeService<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for NodeService<T> {
    fn clone(&self) -> Self {
        NodeService {
            shared: self.shared.clone(),
        }
    }
}

impl<T> NodeService<T> {
    pub(crate) fn new(shared: Arc<Shared<T>>) -> Self {
        NodeService { shared }
    }
}

impl<T: Transport> CacheHandler for NodeService<T> {
    async fn get(
        &self,
        req: GetRequest,
        deadline: Option<Duration>,
    ) -> Result<Option<Fetched>, ServiceError> {
        Ok(self.shared.get(req, deadline).await?)
    }

    async fn set(&self, req: SetRequest, deadline: Option<Duration>) -> Result<(), ServiceError> {
        Ok(self.shared.set(req, deadline).await?)
    }

    async fn delete(
        &self,
        req: DeleteRequest,
        deadline: Option<Duration>,
    ) -> Result<bool, ServiceError> {
        Ok(self.shared.delete(req, deadline).await?)
    }

    async fn stats(&self, group: Option<String>) -> Result<NodeStats, ServiceError> {
        Ok(self.shared.stats(group.as_deref())?)
    }
}
