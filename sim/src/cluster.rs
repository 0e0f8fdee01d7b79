//! The driver's view of the node hosts, shared with the clients (which use it only to learn
//! that a node restarted, as a real client would from a closed connection, and to find the
//! live nodes after convergence).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::node_host::{NodeCtl, Running};

/// Every node host of the run, by name.
#[derive(Debug, Default)]
pub struct Cluster {
    nodes: BTreeMap<String, Arc<NodeCtl>>,
}

impl Cluster {
    /// A cluster of these node hosts.
    pub fn new(nodes: impl IntoIterator<Item = Arc<NodeCtl>>) -> Self {
        Cluster {
            nodes: nodes
                .into_iter()
                .map(|ctl| (ctl.name().to_owned(), ctl))
                .collect(),
        }
    }

    /// The handle of node `name`.
    pub fn ctl(&self, name: &str) -> Option<&Arc<NodeCtl>> {
        self.nodes.get(name)
    }

    /// Every node handle, by name.
    pub fn ctls(&self) -> impl Iterator<Item = &Arc<NodeCtl>> {
        self.nodes.values()
    }

    /// The nodes serving now, by name.
    pub fn live(&self) -> Vec<(String, Running)> {
        self.nodes
            .iter()
            .filter_map(|(name, ctl)| ctl.running().map(|r| (name.clone(), r)))
            .collect()
    }
}
