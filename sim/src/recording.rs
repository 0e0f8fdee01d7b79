//! A [`Transport`] wrapper that records every peer call a node makes, and how it ended, in the
//! history: the checkers read forward-at-most-once and the origin of non-owner loads off it.
//!
//! Node-facing code, kept small: when the node's transport API changes, this file,
//! `node_host.rs` and `doubles.rs` are what moves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use lcache_core::member::{Member, MemberId};
use lcache_transport::{
    Deadline, DeleteRequest, Fetched, GetRequest, InvalidateRequest, SetRequest, Transport,
    TransportError,
};

use crate::history::{Event, History, PeerMethod};

/// Longest error text kept in a [`Event::PeerReturn`].
const MAX_RESULT: usize = 120;

/// Records each call of the wrapped transport as [`Event::PeerCall`] and [`Event::PeerReturn`].
#[derive(Debug)]
pub struct Recording<T> {
    inner: T,
    node: String,
    inc: u64,
    history: History,
    calls: Arc<AtomicU64>,
}

impl<T> Recording<T> {
    /// Wraps `inner`, the transport of `node`'s incarnation `inc`.
    pub fn new(inner: T, node: &str, inc: u64, history: History) -> Self {
        Recording {
            inner,
            node: node.to_owned(),
            inc,
            history,
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

    fn start(&self, peer: &Member, method: PeerMethod, key: &Bytes, forwarded: bool) -> u64 {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        self.history.record(Event::PeerCall {
            node: self.node.clone(),
            inc: self.inc,
            call,
            peer: peer.id.to_string(),
            method,
            key: String::from_utf8_lossy(key).into_owned(),
            forwarded,
        });
        call
    }

    fn end<R>(&self, call: u64, result: &Result<R, TransportError>, ok: impl Fn(&R) -> &str) {
        let result = match result {
            Ok(r) => ok(r).to_owned(),
            Err(err) => {
                let mut text = err.to_string();
                if text.len() > MAX_RESULT {
                    let mut cut = MAX_RESULT;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                }
                text
            }
        };
        self.history.record(Event::PeerReturn {
            node: self.node.clone(),
            inc: self.inc,
            call,
            result,
        });
    }
}

impl<T: Transport> Transport for Recording<T> {
    async fn get(
        &self,
        peer: &Member,
        req: GetRequest,
        deadline: Deadline,
    ) -> Result<Option<Fetched>, TransportError> {
        let call = self.start(peer, PeerMethod::Get, &req.key, req.forwarded);
        let result = self.inner.get(peer, req, deadline).await;
        self.end(call, &result, |f| if f.is_some() { "ok" } else { "miss" });
        result
    }

    async fn set(
        &self,
        peer: &Member,
        req: SetRequest,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        let call = self.start(peer, PeerMethod::Set, &req.key, req.forwarded);
        let result = self.inner.set(peer, req, deadline).await;
        self.end(call, &result, |()| "ok");
        result
    }

    async fn delete(
        &self,
        peer: &Member,
        req: DeleteRequest,
        deadline: Deadline,
    ) -> Result<bool, TransportError> {
        let call = self.start(peer, PeerMethod::Delete, &req.key, req.forwarded);
        let result = self.inner.delete(peer, req, deadline).await;
        self.end(call, &result, |_| "ok");
        result
    }

    async fn invalidate(
        &self,
        peer: &Member,
        req: InvalidateRequest,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        let call = self.start(peer, PeerMethod::Invalidate, &req.key, false);
        let result = self.inner.invalidate(peer, req, deadline).await;
        self.end(call, &result, |()| "ok");
        result
    }

    fn forget(&self, peer: &MemberId) {
        self.inner.forget(peer);
    }
}
