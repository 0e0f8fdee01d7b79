//! Conversions between the wire messages ([`crate::proto`]) and the domain types ([`crate::types`]),
//! and between gRPC statuses and the error enums.
//!
//! Incoming messages are validated here; nothing in this module panics on malformed input.
//! Both clients ([`crate::GrpcTransport`] and [`crate::CacheClient`]) classify statuses through
//! [`classify`], so they agree on every code.

use std::time::Duration;

use bytes::Bytes;
use lcache_core::member::MemberId;
use lcache_core::owned::owned;
use lcache_core::store::StoreStats;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::error::{ClientError, ServiceError, TransportError};
use crate::proto;
use crate::types::{
    DeleteRequest, Fetched, GetRequest, GroupCounters, GroupStats, InvalidateRequest, NodeStats,
    SetRequest, Tier, TierStats,
};

/// Longest accepted group name, in bytes (the core's limit, re-exported).
pub use lcache_core::limits::MAX_GROUP_NAME_BYTES;

/// Trailer that marks an `INVALID_ARGUMENT` status as "unknown group".
const ERROR_KIND_KEY: &str = "lcache-error";
/// Value of [`ERROR_KIND_KEY`] for an unknown group.
const UNKNOWN_GROUP: &str = "unknown-group";
/// Value of [`ERROR_KIND_KEY`] for a node that is shutting down.
const NOT_SERVING: &str = "not-serving";
/// Value of [`ERROR_KIND_KEY`] for a forwarded write refused by a node that does not own the key.
const NOT_OWNER: &str = "not-owner";
/// Value of [`ERROR_KIND_KEY`] for a loader that failed on the node.
const LOAD_FAILED: &str = "load-failed";
/// Binary trailer carrying the unknown group's name (any UTF-8).
const GROUP_KEY: &str = "lcache-group-bin";

// ---------------------------------------------------------------------------------------------
// Validation of incoming requests (server side)
// ---------------------------------------------------------------------------------------------

/// Checks a group name with the core's rules (the one owner of every limit).
fn validate_group(group: &str) -> Result<(), ServiceError> {
    lcache_core::limits::check_group_name(group)
        .map_err(|err| ServiceError::InvalidArgument(err.to_string()))
}

/// Refuses an empty key (shared by the gRPC and RESP front doors).
pub(crate) fn validate_key(group: &str, key: &[u8]) -> Result<(), ServiceError> {
    if key.is_empty() {
        return Err(ServiceError::InvalidArgument(format!(
            "key must not be empty (group {group:?})"
        )));
    }
    Ok(())
}

/// Maps the wire hop count to "forwarded": 0 from a client, 1 from a peer, anything else invalid.
fn forwarded_from_hops(group: &str, hops: u32) -> Result<bool, ServiceError> {
    match hops {
        0 => Ok(false),
        1 => Ok(true),
        n => Err(ServiceError::InvalidArgument(format!(
            "hops is {n} (group {group:?}); a request is forwarded at most once"
        ))),
    }
}

fn hops(forwarded: bool) -> u32 {
    u32::from(forwarded)
}

/// Milliseconds of a TTL being set: rounded up, so a positive TTL never becomes 0.
fn ttl_to_ms_ceil(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// Milliseconds of a remaining lifetime: rounded down, so a copy never outlives the original.
fn ttl_to_ms_floor(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

impl TryFrom<proto::GetRequest> for GetRequest {
    type Error = ServiceError;

    fn try_from(m: proto::GetRequest) -> Result<Self, ServiceError> {
        validate_group(&m.group)?;
        validate_key(&m.group, &m.key)?;
        let forwarded = forwarded_from_hops(&m.group, m.hops)?;
        Ok(GetRequest {
            group: m.group,
            // Keys and values are copied out of the receive buffer (`lcache_core::owned`).
            key: Bytes::copy_from_slice(&m.key),
            forwarded,
        })
    }
}

impl TryFrom<proto::SetRequest> for SetRequest {
    type Error = ServiceError;

    fn try_from(m: proto::SetRequest) -> Result<Self, ServiceError> {
        validate_group(&m.group)?;
        validate_key(&m.group, &m.key)?;
        let forwarded = forwarded_from_hops(&m.group, m.hops)?;
        let ttl = match m.ttl_ms {
            None => None,
            Some(0) => {
                return Err(ServiceError::InvalidArgument(format!(
                    "ttl_ms must be positive (group {:?}); omit it for no expiry",
                    m.group
                )))
            }
            Some(ms) => Some(Duration::from_millis(ms)),
        };
        Ok(SetRequest {
            group: m.group,
            key: Bytes::copy_from_slice(&m.key),
            value: owned(&m.value),
            ttl,
            forwarded,
        })
    }
}

impl TryFrom<proto::DeleteRequest> for DeleteRequest {
    type Error = ServiceError;

    fn try_from(m: proto::DeleteRequest) -> Result<Self, ServiceError> {
        validate_group(&m.group)?;
        validate_key(&m.group, &m.key)?;
        let forwarded = forwarded_from_hops(&m.group, m.hops)?;
        Ok(DeleteRequest {
            group: m.group,
            key: Bytes::copy_from_slice(&m.key),
            forwarded,
        })
    }
}

impl TryFrom<proto::InvalidateRequest> for InvalidateRequest {
    type Error = ServiceError;

    fn try_from(m: proto::InvalidateRequest) -> Result<Self, ServiceError> {
        validate_group(&m.group)?;
        validate_key(&m.group, &m.key)?;
        Ok(InvalidateRequest {
            group: m.group,
            key: Bytes::copy_from_slice(&m.key),
        })
    }
}

/// The group filter of a stats request: `None` for all groups.
pub(crate) fn stats_filter(m: proto::StatsRequest) -> Result<Option<String>, ServiceError> {
    if m.group.is_empty() {
        return Ok(None);
    }
    validate_group(&m.group)?;
    Ok(Some(m.group))
}

// ---------------------------------------------------------------------------------------------
// Domain -> wire (infallible)
// ---------------------------------------------------------------------------------------------

impl From<GetRequest> for proto::GetRequest {
    fn from(r: GetRequest) -> Self {
        proto::GetRequest {
            group: r.group,
            key: r.key,
            hops: hops(r.forwarded),
        }
    }
}

impl From<SetRequest> for proto::SetRequest {
    fn from(r: SetRequest) -> Self {
        proto::SetRequest {
            group: r.group,
            key: r.key,
            value: r.value,
            ttl_ms: r.ttl.map(ttl_to_ms_ceil),
            hops: hops(r.forwarded),
        }
    }
}

impl From<DeleteRequest> for proto::DeleteRequest {
    fn from(r: DeleteRequest) -> Self {
        proto::DeleteRequest {
            group: r.group,
            key: r.key,
            hops: hops(r.forwarded),
        }
    }
}

impl From<Fetched> for proto::GetResponse {
    fn from(f: Fetched) -> Self {
        proto::GetResponse {
            value: f.value,
            ttl_ms: f.ttl.map(ttl_to_ms_floor),
            held_ms: 0,
        }
    }
}

impl From<proto::GetResponse> for Fetched {
    fn from(m: proto::GetResponse) -> Self {
        Fetched {
            value: owned(&m.value),
            ttl: m.ttl_ms.map(Duration::from_millis),
        }
    }
}

/// A peer's answer as a [`crate::Transport`] reports it: the remaining lifetime as of when the
/// peer *received* the request (its answer's lifetime plus the time it held the request), so the
/// caller, aging it by its whole call, takes off only the transit.
pub(crate) fn fetched_at_receipt(m: proto::GetResponse) -> Fetched {
    let held = Duration::from_millis(m.held_ms);
    let mut fetched = Fetched::from(m);
    fetched.ttl = fetched.ttl.map(|ttl| ttl.saturating_add(held));
    fetched
}

impl From<InvalidateRequest> for proto::InvalidateRequest {
    fn from(r: InvalidateRequest) -> Self {
        proto::InvalidateRequest {
            group: r.group,
            key: r.key,
        }
    }
}

impl From<GroupStats> for proto::GroupStats {
    fn from(s: GroupStats) -> Self {
        proto::GroupStats {
            group: s.group,
            counters: s
                .counters
                .values()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            tiers: s
                .tiers
                .iter()
                .map(|t| proto::TierStats {
                    tier: t.tier.name().to_owned(),
                    budget_bytes: t.budget_bytes,
                    store: t
                        .store
                        .values()
                        .map(|(name, value)| (name.to_owned(), value))
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<proto::GroupStats> for GroupStats {
    /// Counters this version does not know (a newer peer's) are skipped; missing ones read 0.
    fn from(s: proto::GroupStats) -> Self {
        let mut counters = GroupCounters::default();
        for (name, value) in &s.counters {
            counters.set(name, *value);
        }
        let tiers = s
            .tiers
            .iter()
            .filter_map(|t| {
                let tier = Tier::from_name(&t.tier)?;
                let mut store = StoreStats::default();
                for (name, value) in &t.store {
                    store.set(name, *value);
                }
                Some(TierStats {
                    tier,
                    budget_bytes: t.budget_bytes,
                    store,
                })
            })
            .collect();
        GroupStats {
            group: s.group,
            counters,
            tiers,
        }
    }
}

impl From<NodeStats> for proto::StatsResponse {
    fn from(s: NodeStats) -> Self {
        proto::StatsResponse {
            node_id: s.node_id,
            groups: s.groups.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<proto::StatsResponse> for NodeStats {
    fn from(m: proto::StatsResponse) -> Self {
        NodeStats {
            node_id: m.node_id,
            groups: m.groups.into_iter().map(Into::into).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors <-> statuses
// ---------------------------------------------------------------------------------------------

/// The status a `Get` miss is answered with.
pub(crate) fn miss_status(group: &str) -> Status {
    Status::not_found(format!("no value for the key in group {group:?}"))
}

impl From<ServiceError> for Status {
    /// The documented mapping of [`ServiceError`] to gRPC codes.
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::InvalidArgument(m) => Status::invalid_argument(m),
            ServiceError::UnknownGroup(group) => {
                let mut md = MetadataMap::new();
                md.insert(ERROR_KIND_KEY, MetadataValue::from_static(UNKNOWN_GROUP));
                md.insert_bin(GROUP_KEY, MetadataValue::from_bytes(group.as_bytes()));
                Status::with_metadata(
                    Code::InvalidArgument,
                    format!("unknown group {group:?}"),
                    md,
                )
            }
            ServiceError::Unavailable(m) => Status::unavailable(m),
            ServiceError::NotServing(m) => unavailable_kind(NOT_SERVING, m),
            ServiceError::NotOwner(m) => unavailable_kind(NOT_OWNER, m),
            ServiceError::LoadFailed(m) => unavailable_kind(LOAD_FAILED, m),
            ServiceError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            ServiceError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ServiceError::Internal(m) => Status::internal(m),
        }
    }
}

/// `UNAVAILABLE` with an `lcache-error: kind` trailer.
fn unavailable_kind(kind: &'static str, message: String) -> Status {
    let mut md = MetadataMap::new();
    md.insert(ERROR_KIND_KEY, MetadataValue::from_static(kind));
    Status::with_metadata(Code::Unavailable, message, md)
}

/// What an error status means to a client, before the client adds whom it was talking to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection could be made, or it broke before an answer (set by the channel itself).
    Unreachable(String),
    NotServing(String),
    NotOwner(String),
    LoadFailed(String),
    Unavailable(String),
    DeadlineExceeded,
    ResourceExhausted(String),
    MessageTooLarge(String),
    UnknownGroup(String),
    InvalidArgument(String),
    NotFound(String),
    Other {
        code: Code,
        message: String,
    },
}

/// Classifies an error status (from the peer, or produced locally by tonic).
///
/// `CANCELLED` counts as a missed deadline: tonic reports its own timeouts that way, and LCache
/// never cancels a call for any other reason. `OUT_OF_RANGE` is what tonic's codec reports for a
/// message over the size limit.
pub(crate) fn classify(status: &Status) -> Failure {
    match status.code() {
        Code::Unavailable => {
            let message = with_sources(
                status.message().to_owned(),
                std::error::Error::source(status),
            );
            match error_kind(status.metadata()) {
                Some(NOT_SERVING) => Failure::NotServing(message),
                Some(NOT_OWNER) => Failure::NotOwner(message),
                Some(LOAD_FAILED) => Failure::LoadFailed(message),
                _ => Failure::Unavailable(message),
            }
        }
        Code::NotFound => Failure::NotFound(status.message().to_owned()),
        Code::DeadlineExceeded | Code::Cancelled => Failure::DeadlineExceeded,
        Code::ResourceExhausted => Failure::ResourceExhausted(status.message().to_owned()),
        Code::OutOfRange => Failure::MessageTooLarge(status.message().to_owned()),
        Code::InvalidArgument => match unknown_group(status.metadata()) {
            Some(group) => Failure::UnknownGroup(group),
            None => Failure::InvalidArgument(status.message().to_owned()),
        },
        code => Failure::Other {
            code,
            message: status.message().to_owned(),
        },
    }
}

/// An error's message followed by those of its sources (connection failures keep the useful
/// part, e.g. "connection refused", in the sources), each once.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    with_sources(err.to_string(), err.source())
}

/// `out` followed by the messages of `source` and its sources not already in it (at most 8).
fn with_sources(mut out: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut depth = 0;
    while let Some(err) = source {
        if depth == 8 {
            break;
        }
        let text = err.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        source = err.source();
        depth += 1;
    }
    out
}

/// The `lcache-error` trailer, if it is one of the kinds this version knows.
fn error_kind(md: &MetadataMap) -> Option<&'static str> {
    let kind = md.get(ERROR_KIND_KEY)?.as_bytes();
    [UNKNOWN_GROUP, NOT_SERVING, NOT_OWNER, LOAD_FAILED]
        .into_iter()
        .find(|known| known.as_bytes() == kind)
}

fn unknown_group(md: &MetadataMap) -> Option<String> {
    if error_kind(md) != Some(UNKNOWN_GROUP) {
        return None;
    }
    let group = md.get_bin(GROUP_KEY)?.to_bytes().ok()?;
    Some(String::from_utf8_lossy(&group).into_owned())
}

impl Failure {
    /// The failure as seen by a peer call.
    pub(crate) fn into_transport(
        self,
        peer: &MemberId,
        addr: &str,
        timeout: Duration,
    ) -> TransportError {
        let peer = peer.clone();
        let addr = addr.to_owned();
        match self {
            Failure::Unreachable(reason) => TransportError::Unreachable { peer, addr, reason },
            Failure::NotServing(reason) => TransportError::NotServing { peer, addr, reason },
            Failure::NotOwner(reason) => TransportError::NotOwner { peer, addr, reason },
            Failure::LoadFailed(reason) => TransportError::LoadFailed { peer, addr, reason },
            Failure::Unavailable(reason) => TransportError::Unavailable { peer, addr, reason },
            Failure::DeadlineExceeded => TransportError::DeadlineExceeded {
                peer,
                addr,
                timeout,
            },
            Failure::ResourceExhausted(message) => TransportError::ResourceExhausted {
                peer,
                addr,
                message,
            },
            Failure::MessageTooLarge(message) => TransportError::MessageTooLarge {
                peer,
                addr,
                message,
            },
            Failure::UnknownGroup(group) => TransportError::UnknownGroup { peer, addr, group },
            Failure::InvalidArgument(message) => TransportError::Rejected {
                peer,
                addr,
                code: Code::InvalidArgument,
                message,
            },
            Failure::NotFound(message) => TransportError::Rejected {
                peer,
                addr,
                code: Code::NotFound,
                message,
            },
            Failure::Other { code, message } => TransportError::Rejected {
                peer,
                addr,
                code,
                message,
            },
        }
    }

    /// The failure as seen by a [`crate::CacheClient`] call.
    pub(crate) fn into_client(self, addr: &str, timeout: Duration) -> ClientError {
        let addr = addr.to_owned();
        match self {
            Failure::Unreachable(reason)
            | Failure::NotServing(reason)
            | Failure::NotOwner(reason)
            | Failure::LoadFailed(reason)
            | Failure::Unavailable(reason) => ClientError::Unavailable { addr, reason },
            Failure::DeadlineExceeded => ClientError::DeadlineExceeded { addr, timeout },
            Failure::ResourceExhausted(message) => ClientError::ResourceExhausted { addr, message },
            Failure::MessageTooLarge(message) => ClientError::MessageTooLarge { addr, message },
            Failure::UnknownGroup(group) => ClientError::UnknownGroup { addr, group },
            Failure::InvalidArgument(message) => ClientError::InvalidArgument { addr, message },
            Failure::NotFound(message) => ClientError::Failed {
                addr,
                code: Code::NotFound,
                message,
            },
            Failure::Other { code, message } => ClientError::Failed {
                addr,
                code,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(group: &str, key: &'static [u8], hops: u32) -> proto::GetRequest {
        proto::GetRequest {
            group: group.into(),
            key: Bytes::from_static(key),
            hops,
        }
    }

    #[test]
    fn get_request_validation() {
        let ok = GetRequest::try_from(get("g", b"k", 1)).unwrap();
        assert!(ok.forwarded);
        assert!(!GetRequest::try_from(get("g", b"k", 0)).unwrap().forwarded);
        for bad in [
            get("", b"k", 0),
            get("g", b"", 0),
            get("g", b"k", 2),
            get("g", b"k", u32::MAX),
        ] {
            assert!(matches!(
                GetRequest::try_from(bad),
                Err(ServiceError::InvalidArgument(_))
            ));
        }
        let long = "x".repeat(MAX_GROUP_NAME_BYTES + 1);
        assert!(GetRequest::try_from(get(&long, b"k", 0)).is_err());
    }

    #[test]
    fn set_ttl_rounding_and_zero() {
        let req = SetRequest {
            group: "g".into(),
            key: Bytes::from_static(b"k"),
            value: Bytes::new(),
            ttl: Some(Duration::from_micros(1)),
            forwarded: false,
        };
        let wire = proto::SetRequest::from(req);
        assert_eq!(wire.ttl_ms, Some(1), "a positive ttl never becomes 0");
        let back = SetRequest::try_from(wire.clone()).unwrap();
        assert_eq!(back.ttl, Some(Duration::from_millis(1)));
        let zero = proto::SetRequest {
            ttl_ms: Some(0),
            ..wire
        };
        assert!(matches!(
            SetRequest::try_from(zero),
            Err(ServiceError::InvalidArgument(_))
        ));
    }

    #[test]
    fn fetched_ttl_rounds_down() {
        let f = Fetched {
            value: Bytes::new(),
            ttl: Some(Duration::from_micros(1999)),
        };
        assert_eq!(proto::GetResponse::from(f).ttl_ms, Some(1));
        let huge = Fetched {
            value: Bytes::new(),
            ttl: Some(Duration::MAX),
        };
        assert_eq!(proto::GetResponse::from(huge).ttl_ms, Some(u64::MAX));
    }

    #[test]
    fn stats_filter_empty_means_all() {
        assert_eq!(
            stats_filter(proto::StatsRequest {
                group: String::new()
            })
            .unwrap(),
            None
        );
        assert_eq!(
            stats_filter(proto::StatsRequest { group: "g".into() }).unwrap(),
            Some("g".into())
        );
    }

    #[test]
    fn service_errors_map_to_documented_codes() {
        let cases = [
            (
                ServiceError::InvalidArgument("x".into()),
                Code::InvalidArgument,
            ),
            (
                ServiceError::UnknownGroup("g".into()),
                Code::InvalidArgument,
            ),
            (ServiceError::Unavailable("x".into()), Code::Unavailable),
            (
                ServiceError::DeadlineExceeded("x".into()),
                Code::DeadlineExceeded,
            ),
            (
                ServiceError::ResourceExhausted("x".into()),
                Code::ResourceExhausted,
            ),
            (ServiceError::Internal("x".into()), Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
    }

    #[test]
    fn unknown_group_round_trips_through_status() {
        let status = Status::from(ServiceError::UnknownGroup("grüße".into()));
        assert!(status.message().contains("grüße"));
        assert_eq!(classify(&status), Failure::UnknownGroup("grüße".into()));
        let plain = Status::invalid_argument("bad");
        assert_eq!(classify(&plain), Failure::InvalidArgument("bad".into()));
    }

    #[test]
    fn cancelled_is_a_missed_deadline() {
        assert_eq!(
            classify(&Status::cancelled("Timeout expired")),
            Failure::DeadlineExceeded
        );
    }
}
